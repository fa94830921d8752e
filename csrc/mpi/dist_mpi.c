/* kdx.dist's collectives over MPI (see dist_mpi.h). No Lua here. */
#include "dist_mpi.h"

#include <dlfcn.h>
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- data-parallel gradient averaging (see dist_mpi.h) ---- */

struct kdx_dist_reducer {
    int n, nb;                /* parameters, buckets */
    kdx_tensor **params;      /* retained */
    kdx_dtype dtype;
    int *bucket_of;           /* parameter -> bucket */
    int64_t *offset;          /* parameter -> first element in its bucket */
    int *size_of;             /* bucket -> number of parameters */
    kdx_tensor **buf;         /* bucket -> flat contiguous buffer */
    MPI_Request *req;         /* bucket -> request of a bucket sent during backward */
    int *ready;               /* bucket -> parameters packed this step */
    unsigned char *packed;    /* parameter -> packed this step */
    double *stats;            /* n flags, rows, extras (grown in finish) */
    int stats_cap;
    int launched, early;      /* buckets started (in order); started during backward */
    int cursor;               /* the parameter the hook found last */
    double rows;
    kdx_status err;           /* the first failure while packing */
};

static void reducer_wait(kdx_dist_reducer *r)
{
    if (r->launched > 0 && ready()) MPI_Waitall(r->launched, r->req, MPI_STATUSES_IGNORE);
    r->launched = 0;
}

void kdx_dist_reducer_free(kdx_dist_reducer *r)
{
    if (!r) return;
    reducer_wait(r);
    for (int i = 0; i < r->n && r->params; i++) kdx_tensor_release(r->params[i]);
    for (int b = 0; b < r->nb && r->buf; b++) kdx_tensor_release(r->buf[b]);
    free(r->params), free(r->bucket_of), free(r->offset), free(r->size_of), free(r->buf), free(r->req);
    free(r->ready), free(r->packed), free(r->stats);
    free(r);
}

kdx_status kdx_dist_reducer_new(kdx_tensor *const *params, int n, int64_t bucket_bytes, kdx_dist_reducer **out)
{
    const char *fn = "dist_reducer";
    if (n < 0 || (n > 0 && !params)) return kdx_fail(KDX_EINVAL, "%s: bad parameter list", fn);
    if (bucket_bytes < 1) return kdx_fail(KDX_EINVAL, "%s: bucket_bytes must be positive, got %lld", fn, (long long)bucket_bytes);
    kdx_dtype dt = n > 0 ? kdx_tensor_dtype(params[0]) : KDX_DTYPE_F32;
    for (int i = 0; i < n; i++)
        if (kdx_tensor_dtype(params[i]) != dt || (dt != KDX_DTYPE_F32 && dt != KDX_DTYPE_F64))
            return kdx_fail(KDX_EDTYPE, "%s: every parameter must be float32, or every one float64 (parameter %d)", fn, i + 1);
    kdx_dist_reducer *r = calloc(1, sizeof *r);
    if (!r) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fn);
    r->n = n, r->dtype = dt;
    size_t m = (size_t)n + 1;
    r->params = calloc(m, sizeof *r->params), r->bucket_of = calloc(m, sizeof *r->bucket_of);
    r->offset = calloc(m, sizeof *r->offset), r->size_of = calloc(m, sizeof *r->size_of);
    r->buf = calloc(m, sizeof *r->buf), r->req = calloc(m + 1, sizeof *r->req);
    r->ready = calloc(m, sizeof *r->ready), r->packed = calloc(m, 1);
    kdx_status s = KDX_OK;
    if (!r->params || !r->bucket_of || !r->offset || !r->size_of || !r->buf || !r->req || !r->ready || !r->packed)
        s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fn);
    /* buckets from the last parameter back: backward finishes those first */
    int64_t esize = dt == KDX_DTYPE_F64 ? 8 : 4, fill = 0;
    for (int i = n - 1; i >= 0 && s == KDX_OK; i--) {
        int64_t k = kdx_tensor_numel(params[i]);
        if (r->nb == 0 || (fill > 0 && (fill + k) * esize > bucket_bytes)) r->nb++, fill = 0;
        if (fill + k > INT_MAX) s = kdx_fail(KDX_ESHAPE, "%s: a bucket of more than 2^31 - 1 elements", fn);
        r->params[i] = kdx_tensor_retain(params[i]);
        r->bucket_of[i] = r->nb - 1, r->offset[i] = fill, r->size_of[r->nb - 1]++;
        fill += k;
    }
    /* each bucket's length: the end of its last-packed (lowest-index) parameter */
    for (int b = 0; b < r->nb && s == KDX_OK; b++) {
        int64_t len = 0;
        for (int i = 0; i < n; i++)
            if (r->bucket_of[i] == b && r->offset[i] + kdx_tensor_numel(params[i]) > len)
                len = r->offset[i] + kdx_tensor_numel(params[i]);
        s = kdx_empty(dt, 1, &len, &r->buf[b]);
    }
    for (int b = 0; b <= r->nb; b++) r->req[b] = MPI_REQUEST_NULL;
    /* room for the statistics of a typical step, so that finish does not
       allocate after buckets may have been sent */
    r->stats_cap = n + 1 + 32;
    if (s == KDX_OK && !(r->stats = calloc((size_t)r->stats_cap, sizeof *r->stats)))
        s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fn);
    if (s != KDX_OK) {
        kdx_dist_reducer_free(r);
        return s;
    }
    *out = r;
    return KDX_OK;
}

kdx_status kdx_dist_reducer_begin(kdx_dist_reducer *r, double rows)
{
    if (!(rows >= 0)) return kdx_fail(KDX_EINVAL, "dist_reducer: rows must be >= 0, got %g", rows);
    reducer_wait(r); /* a step abandoned before finish */
    r->rows = rows, r->err = KDX_OK, r->early = 0, r->cursor = r->n;
    memset(r->packed, 0, (size_t)r->n + 1);
    memset(r->ready, 0, ((size_t)r->n + 1) * sizeof *r->ready);
    return KDX_OK;
}

/* Copies rows * (parameter i's gradient, or zeros) into its bucket. A failure
   (no memory for a contiguous copy) is recorded and zeros are sent, so the
   ranks' collectives still match. */
static void pack(kdx_dist_reducer *r, int i)
{
    kdx_tensor *p = r->params[i], *g = kdx_tensor_grad(p), *c = NULL;
    int64_t k = kdx_tensor_numel(p);
    if (g && (kdx_tensor_numel(g) != k || kdx_tensor_dtype(g) != r->dtype)) {
        if (r->err == KDX_OK) r->err = kdx_fail(KDX_ESHAPE, "dist_reducer: parameter %d's gradient does not match it", i + 1);
        g = NULL;
    }
    if (g && kdx_contiguous(g, &c) != KDX_OK) {
        if (r->err == KDX_OK) r->err = KDX_ENOMEM;
        g = NULL, c = NULL;
    }
    double w = r->rows;
    if (r->dtype == KDX_DTYPE_F32) {
        float *dst = (float *)kdx_tensor_data(r->buf[r->bucket_of[i]]) + r->offset[i];
        const float *src = c ? kdx_tensor_data(c) : NULL;
        for (int64_t j = 0; j < k; j++) dst[j] = src ? (float)(src[j] * w) : 0.0f;
    } else {
        double *dst = (double *)kdx_tensor_data(r->buf[r->bucket_of[i]]) + r->offset[i];
        const double *src = c ? kdx_tensor_data(c) : NULL;
        for (int64_t j = 0; j < k; j++) dst[j] = src ? src[j] * w : 0.0;
    }
    kdx_tensor_release(c);
    r->packed[i] = 1;
    r->ready[r->bucket_of[i]]++;
}

/* Starts every complete bucket whose predecessors have started. */
static void launch_ready(kdx_dist_reducer *r)
{
    MPI_Datatype ty = r->dtype == KDX_DTYPE_F64 ? MPI_DOUBLE : MPI_FLOAT;
    while (r->launched < r->nb && r->ready[r->launched] == r->size_of[r->launched]) {
        int b = r->launched;
        kdx_status s = mpi_check(MPI_Iallreduce(MPI_IN_PLACE, kdx_tensor_data(r->buf[b]), (int)kdx_tensor_numel(r->buf[b]),
                                                ty, MPI_SUM, MPI_COMM_WORLD, &r->req[b]),
                                 "dist_reducer");
        if (s != KDX_OK) {
            if (r->err == KDX_OK) r->err = s;
            r->req[b] = MPI_REQUEST_NULL;
        }
        r->launched++;
    }
}

static void on_ready(void *ud, kdx_tensor *leaf)
{
    kdx_dist_reducer *r = ud;
    if (!leaf) {
        /* the graph is known: parameters it does not reach get no gradient
           in this pass, so their buckets need not wait for them */
        for (int i = 0; i < r->n; i++)
            if (!r->packed[i] && !kdx_backward_reaches(r->params[i])) pack(r, i);
    }
    /* backward reaches the parameters roughly last to first: search from
       just below the last one found, wrapping round, so a step costs about
       one comparison per parameter rather than n */
    for (int k = 0; leaf && k < r->n; k++) {
        int i = ((r->cursor - 1 - k) % r->n + r->n) % r->n;
        if (r->params[i] == leaf) {
            if (!r->packed[i]) pack(r, i);
            r->cursor = i;
            break;
        }
    }
    launch_ready(r);
    r->early = r->launched;
    /* MPI moves non-blocking collectives on inside MPI calls: give it one */
    if (r->launched > 0) {
        int flag;
        MPI_Testall(r->launched, r->req, &flag, MPI_STATUSES_IGNORE);
    }
}

kdx_status kdx_dist_reducer_backward(kdx_dist_reducer *r, kdx_tensor *loss)
{
    kdx_status s = need_ready("dist_reducer");
    if (s != KDX_OK) return s;
    return kdx_backward_hooked(loss, NULL, 0, on_ready, r);
}

kdx_status kdx_dist_reducer_finish(kdx_dist_reducer *r, const double *extra, int nextra, double *total, double *sums)
{
    const char *fn = "dist_reducer";
    kdx_status s = need_ready(fn);
    if (s != KDX_OK) return s;
    if (nextra < 0 || nextra > 1000000) return kdx_fail(KDX_EINVAL, "%s: bad count of extra numbers %d", fn, nextra);
    int ns = r->n + 1 + nextra;
    if (ns > r->stats_cap) {
        double *bigger = realloc(r->stats, (size_t)ns * sizeof *bigger);
        if (!bigger) {
            reducer_wait(r);
            return kdx_fail(KDX_ENOMEM, "%s: out of memory", fn);
        }
        r->stats = bigger, r->stats_cap = ns;
    }
    for (int i = 0; i < r->n; i++) {
        if (!r->packed[i]) pack(r, i);
        r->stats[i] = kdx_tensor_grad(r->params[i]) ? 1 : 0;
    }
    r->stats[r->n] = r->rows;
    for (int k = 0; k < nextra; k++) r->stats[r->n + 1 + k] = extra[k];
    /* What backward did not send goes now, non-blocking too: MPI does not
       match a blocking collective with another rank's non-blocking one, and
       which buckets went early differs between ranks. */
    launch_ready(r);
    s = mpi_check(MPI_Waitall(r->launched, r->req, MPI_STATUSES_IGNORE), fn);
    r->launched = 0;
    kdx_status e = mpi_check(MPI_Allreduce(MPI_IN_PLACE, r->stats, ns, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), fn);
    if (s == KDX_OK) s = e;
    if (s == KDX_OK) s = r->err;
    if (s != KDX_OK) return s;
    double rows = r->stats[r->n];
    *total = rows;
    for (int k = 0; k < nextra; k++) sums[k] = r->stats[r->n + 1 + k];
    for (int i = 0; i < r->n && s == KDX_OK; i++) {
        kdx_tensor *p = r->params[i];
        if (!(r->stats[i] > 0 && rows > 0)) {
            kdx_tensor_set_grad(p, NULL);
            continue;
        }
        kdx_tensor *g = kdx_tensor_grad(p), *fresh = NULL;
        int64_t k = kdx_tensor_numel(p);
        /* in place when the gradient is a plain contiguous tensor of p's size */
        if (!(g && kdx_tensor_is_contiguous(g) && kdx_tensor_numel(g) == k && kdx_tensor_dtype(g) == r->dtype &&
              !kdx_tensor_requires_grad(g))) {
            s = kdx_empty(r->dtype, kdx_tensor_ndim(p), kdx_tensor_shape(p), &fresh);
            if (s != KDX_OK) break;
            g = fresh;
        }
        double inv = 1.0 / rows;
        if (r->dtype == KDX_DTYPE_F32) {
            const float *src = (const float *)kdx_tensor_data(r->buf[r->bucket_of[i]]) + r->offset[i];
            float *dst = kdx_tensor_data(g);
            for (int64_t j = 0; j < k; j++) dst[j] = (float)(src[j] * inv);
        } else {
            const double *src = (const double *)kdx_tensor_data(r->buf[r->bucket_of[i]]) + r->offset[i];
            double *dst = kdx_tensor_data(g);
            for (int64_t j = 0; j < k; j++) dst[j] = src[j] * inv;
        }
        if (fresh) {
            kdx_tensor_set_grad(p, fresh);
            kdx_tensor_release(fresh);
        }
    }
    return s;
}

void kdx_dist_reducer_counts(const kdx_dist_reducer *r, int *buckets, int *early)
{
    *buckets = r->nb, *early = r->early;
}

/* ---- sums for SyncBatchNorm ---- */

static kdx_status sum_doubles(void *ud, double *v, int64_t n)
{
    (void)ud;
    const char *fn = "dist_sum";
    kdx_status s = need_ready(fn);
    if (s != KDX_OK) return s;
    if (n < 0 || n > INT_MAX) return kdx_fail(KDX_ESHAPE, "%s: %lld numbers is more than one MPI message holds", fn, (long long)n);
    return mpi_check(MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), fn);
}

const kdx_sum *kdx_dist_sum(void)
{
    static const kdx_sum sum = {sum_doubles, NULL};
    return &sum;
}
