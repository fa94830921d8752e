/* kdx.dist's collectives over MPI (see dist_mpi.h). No Lua here. */
#include "dist_mpi.h"

#include <dlfcn.h>
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

static int we_initialised = 0;

static int ready(void)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

static kdx_status need_ready(const char *fname)
{
    if (!ready()) return kdx_fail(KDX_ESTATE, "%s: MPI is not initialised (call kdx.dist.init())", fname);
    return KDX_OK;
}

static kdx_status mpi_check(int rc, const char *fname)
{
    if (rc == MPI_SUCCESS) return KDX_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return kdx_fail(KDX_ESTATE, "%s: MPI error: %s", fname, msg);
}

kdx_status kdx_dist_init(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return kdx_fail(KDX_ESTATE, "dist_init: MPI was already finalised");
    if (ready()) return KDX_OK;
    /* Lua loads C modules with RTLD_LOCAL; Open MPI's plugins look up libmpi's
       symbols globally, so promote the already-loaded libmpi to RTLD_GLOBAL. */
    if (!dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
        (void)dlopen("libmpi.so", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    kdx_status s = mpi_check(MPI_Init(NULL, NULL), "dist_init");
    if (s != KDX_OK) return s;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    we_initialised = 1;
    return KDX_OK;
}

kdx_status kdx_dist_finalize(void)
{
    if (!we_initialised || !ready()) return KDX_OK;
    return mpi_check(MPI_Finalize(), "dist_finalize");
}

int kdx_dist_rank(void)
{
    int r = 0;
    if (ready()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int kdx_dist_size(void)
{
    int n = 1;
    if (ready()) MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

kdx_status kdx_dist_barrier(void)
{
    kdx_status s = need_ready("dist_barrier");
    if (s != KDX_OK) return s;
    return mpi_check(MPI_Barrier(MPI_COMM_WORLD), "dist_barrier");
}

static MPI_Datatype mpi_type(kdx_dtype dt)
{
    switch (dt) {
    case KDX_DTYPE_F32: return MPI_FLOAT;
    case KDX_DTYPE_F64: return MPI_DOUBLE;
    default: return MPI_INT64_T;
    }
}

/* MPI counts are int: one tensor must fit. */
static kdx_status count_of(const kdx_tensor *t, const char *fname, int *out)
{
    int64_t n = kdx_tensor_numel(t);
    if (n > INT_MAX) return kdx_fail(KDX_ESHAPE, "%s: %lld elements is more than one MPI message holds", fname, (long long)n);
    *out = (int)n;
    return KDX_OK;
}

/* buf *= 1/size, for the mean. */
static void scale_mean(kdx_tensor *buf, int n)
{
    double k = 1.0 / kdx_dist_size();
    if (kdx_tensor_dtype(buf) == KDX_DTYPE_F32) {
        float *p = kdx_tensor_data(buf);
        for (int i = 0; i < n; i++) p[i] = (float)(p[i] * k);
    } else {
        double *p = kdx_tensor_data(buf);
        for (int i = 0; i < n; i++) p[i] *= k;
    }
}

kdx_status kdx_dist_allreduce(kdx_tensor *t, kdx_dist_op op)
{
    const char *fn = "dist_allreduce";
    kdx_status s = need_ready(fn);
    if (s != KDX_OK) return s;
    kdx_dtype dt = kdx_tensor_dtype(t);
    if (dt != KDX_DTYPE_F32 && dt != KDX_DTYPE_F64)
        return kdx_fail(KDX_EDTYPE, "%s: the tensor must be float32 or float64", fn);
    int n = 0;
    if ((s = count_of(t, fn, &n)) != KDX_OK) return s;
    MPI_Op mop = op == KDX_DIST_MAX ? MPI_MAX : op == KDX_DIST_MIN ? MPI_MIN : MPI_SUM;
    kdx_tensor *buf = NULL;
    if ((s = kdx_contiguous(t, &buf)) != KDX_OK) return s; /* t itself when contiguous: no copy */
    s = mpi_check(MPI_Allreduce(MPI_IN_PLACE, kdx_tensor_data(buf), n, mpi_type(dt), mop, MPI_COMM_WORLD), fn);
    if (s == KDX_OK && op == KDX_DIST_MEAN) scale_mean(buf, n);
    if (s == KDX_OK && buf != t) s = kdx_copy_(t, buf);
    kdx_tensor_release(buf);
    return s;
}

kdx_status kdx_dist_allreduce_many(kdx_tensor *const *ts, int n, kdx_dist_op op)
{
    const char *fn = "dist_allreduce_many";
    kdx_status s = need_ready(fn);
    if (s != KDX_OK) return s;
    if (n < 0) return kdx_fail(KDX_EINVAL, "%s: negative count %d", fn, n);
    int *counts = calloc((size_t)n + 1, sizeof(int));
    MPI_Request *req = calloc((size_t)n + 1, sizeof(MPI_Request));
    if (!counts || !req) s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fn);
    for (int i = 0; i < n && s == KDX_OK; i++) {
        kdx_dtype dt = kdx_tensor_dtype(ts[i]);
        if (dt != KDX_DTYPE_F32 && dt != KDX_DTYPE_F64)
            s = kdx_fail(KDX_EDTYPE, "%s: tensor %d must be float32 or float64", fn, i + 1);
        else if (!kdx_tensor_is_contiguous(ts[i]))
            s = kdx_fail(KDX_EINVAL, "%s: tensor %d must be contiguous", fn, i + 1);
        else
            s = count_of(ts[i], fn, &counts[i]);
    }
    MPI_Op mop = op == KDX_DIST_MAX ? MPI_MAX : op == KDX_DIST_MIN ? MPI_MIN : MPI_SUM;
    int started = 0;
    for (; started < n && s == KDX_OK; started++)
        s = mpi_check(MPI_Iallreduce(MPI_IN_PLACE, kdx_tensor_data(ts[started]), counts[started],
                                     mpi_type(kdx_tensor_dtype(ts[started])), mop, MPI_COMM_WORLD, &req[started]),
                      fn);
    if (s != KDX_OK && started > 0) started--; /* the failed one holds no request */
    /* every started reduction is waited for, also after a failure: the
       buffers must not be released while MPI still writes into them */
    kdx_status w = started > 0 ? mpi_check(MPI_Waitall(started, req, MPI_STATUSES_IGNORE), fn) : KDX_OK;
    if (s == KDX_OK) s = w;
    for (int i = 0; i < n && s == KDX_OK && op == KDX_DIST_MEAN; i++) scale_mean(ts[i], counts[i]);
    free(counts);
    free(req);
    return s;
}

kdx_status kdx_dist_broadcast(kdx_tensor *t, int root)
{
    const char *fn = "dist_broadcast";
    kdx_status s = need_ready(fn);
    if (s != KDX_OK) return s;
    if (root < 0 || root >= kdx_dist_size())
        return kdx_fail(KDX_EINDEX, "%s: root %d is not a rank (0..%d)", fn, root, kdx_dist_size() - 1);
    int n = 0;
    if ((s = count_of(t, fn, &n)) != KDX_OK) return s;
    kdx_tensor *buf = NULL;
    if ((s = kdx_contiguous(t, &buf)) != KDX_OK) return s;
    s = mpi_check(MPI_Bcast(kdx_tensor_data(buf), n, mpi_type(kdx_tensor_dtype(t)), root, MPI_COMM_WORLD), fn);
    if (s == KDX_OK && buf != t) s = kdx_copy_(t, buf);
    kdx_tensor_release(buf);
    return s;
}

kdx_status kdx_dist_allgather(const kdx_tensor *t, kdx_tensor **out)
{
    const char *fn = "dist_allgather";
    *out = NULL;
    kdx_status s = need_ready(fn);
    if (s != KDX_OK) return s;
    int nd = kdx_tensor_ndim(t);
    if (nd < 1) return kdx_fail(KDX_ESHAPE, "%s: the tensor needs at least one dim", fn);
    int n = 0;
    if ((s = count_of(t, fn, &n)) != KDX_OK) return s;
    int size = kdx_dist_size();
    const int64_t *shape = kdx_tensor_shape(t);
    int64_t row = n / (shape[0] > 0 ? shape[0] : 1);
    if (shape[0] == 0) { row = 1; for (int d = 1; d < nd; d++) row *= shape[d]; }
    /* Every rank's first dim, row size and dtype, to check and to place. */
    long long mine[3] = {(long long)shape[0], (long long)row, (long long)kdx_tensor_dtype(t)};
    long long *all = calloc((size_t)size * 3, sizeof *all);
    int *counts = calloc((size_t)size, sizeof *counts), *displs = calloc((size_t)size, sizeof *displs);
    kdx_tensor *buf = NULL, *res = NULL;
    int64_t *rshape = calloc((size_t)nd, sizeof *rshape);
    if (!all || !counts || !displs || !rshape) { s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fn); goto done; }
    if ((s = mpi_check(MPI_Allgather(mine, 3, MPI_LONG_LONG, all, 3, MPI_LONG_LONG, MPI_COMM_WORLD), fn)) != KDX_OK) goto done;
    int64_t total = 0;
    for (int r = 0; r < size; r++) {
        if (all[3 * r + 1] != row || all[3 * r + 2] != mine[2]) {
            s = kdx_fail(KDX_ESHAPE, "%s: rank %d's tensor differs in dtype or in the dims after the first", fn, r);
            goto done;
        }
        int64_t c = all[3 * r] * row;
        if (total + c > INT_MAX) { s = kdx_fail(KDX_ESHAPE, "%s: the result is more than one MPI message holds", fn); goto done; }
        displs[r] = (int)total;
        counts[r] = (int)c;
        total += c;
    }
    for (int d = 0; d < nd; d++) rshape[d] = shape[d];
    rshape[0] = 0;
    for (int r = 0; r < size; r++) rshape[0] += all[3 * r];
    if ((s = kdx_empty(kdx_tensor_dtype(t), nd, rshape, &res)) != KDX_OK) goto done;
    if ((s = kdx_contiguous(t, &buf)) != KDX_OK) goto done;
    MPI_Datatype ty = mpi_type(kdx_tensor_dtype(t));
    s = mpi_check(MPI_Allgatherv(kdx_tensor_data(buf), n, ty, kdx_tensor_data(res), counts, displs, ty, MPI_COMM_WORLD), fn);
done:
    if (s == KDX_OK) { *out = res; res = NULL; }
    kdx_tensor_release(res);
    kdx_tensor_release(buf);
    free(all); free(counts); free(displs); free(rshape);
    return s;
}
