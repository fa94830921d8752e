/* op_reduce.c — reductions over any set of dims. Every reduction brings its
   input into one layout, [outer, n] with the reduced dims last and contiguous,
   then reduces each row; float32 accumulates in double. */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>

kdx_status kdx__dims_mask(const char *fname, int ndim, const int *dims, int ndims, unsigned *mask)
{
    unsigned m = 0;
    if (ndims == 0) {
        *mask = ndim ? (1u << ndim) - 1 : 0;
        return KDX_OK;
    }
    if (!dims) return kdx_fail(KDX_EINVAL, "%s: dims is NULL", fname);
    for (int i = 0; i < ndims; i++) {
        int d;
        KDX_TRY(kdx__dim(fname, ndim, dims[i], &d));
        if (ndim == 0) continue;
        if (m & (1u << d)) return kdx_fail(KDX_EINVAL, "%s: dim %d appears more than once", fname, d);
        m |= 1u << d;
    }
    *mask = m;
    return KDX_OK;
}

int kdx__reduced_shape(int ndim, const int64_t *shape, unsigned mask, int keepdim, int64_t *out)
{
    int n = 0;
    for (int i = 0; i < ndim; i++) {
        if (mask & (1u << i)) {
            if (keepdim) out[n++] = 1;
        } else {
            out[n++] = shape[i];
        }
    }
    return n;
}

kdx_status kdx__reduce_layout(const char *fname, const kdx_tensor *x, unsigned mask, kdx_tensor **xt, int64_t *outer,
                              int64_t *n)
{
    int perm[KDX_MAX_DIMS], k = 0;
    int64_t o = 1, r = 1;
    for (int i = 0; i < x->ndim; i++)
        if (!(mask & (1u << i))) perm[k++] = i, o *= x->shape[i];
    for (int i = 0; i < x->ndim; i++)
        if (mask & (1u << i)) perm[k++] = i, r *= x->shape[i];
    kdx_tensor *p;
    KDX_TRY(kdx_permute(x, perm, x->ndim, &p));
    kdx_status s = kdx_contiguous(p, xt);
    kdx_tensor_release(p);
    if (s != KDX_OK) return kdx_fail(s, "%s: %s", fname, kdx_last_error());
    *outer = o;
    *n = r;
    return KDX_OK;
}

/* ---- sum, mean, prod, logsumexp, amax, amin, norms ---- */

typedef struct {
    kdx_redop op;
    const char *in;
    char *out;
    int64_t n;
    kdx_dtype dt;
} reduce_job;

/* One row of n values as doubles; float and double rows share this code. */
#define ROW_REDUCE(T)                                                                     \
    static double row_##T(kdx_redop op, const T *x, int64_t n)                            \
    {                                                                                     \
        double acc = 0;                                                                   \
        switch (op) {                                                                     \
        case KDX_RED_SUM:                                                                 \
        case KDX_RED_MEAN:                                                                \
            for (int64_t i = 0; i < n; i++) acc += x[i];                                  \
            return op == KDX_RED_MEAN ? acc / (double)n : acc;                            \
        case KDX_RED_PROD:                                                                \
            acc = 1;                                                                      \
            for (int64_t i = 0; i < n; i++) acc *= x[i];                                  \
            return acc;                                                                   \
        case KDX_RED_AMAX:                                                                \
        case KDX_RED_AMIN: {                                                              \
            double m = x[0];                                                              \
            for (int64_t i = 1; i < n && m == m; i++) {                                   \
                double v = x[i];                                                          \
                if (v != v || (op == KDX_RED_AMAX ? v > m : v < m)) m = v;                \
            }                                                                             \
            return m;                                                                     \
        }                                                                                 \
        case KDX_RED_LOGSUMEXP: {                                                         \
            double m = -INFINITY;                                                         \
            for (int64_t i = 0; i < n; i++) if (x[i] > m || x[i] != x[i]) m = x[i];      \
            if (isinf(m) || m != m) return m;                                             \
            for (int64_t i = 0; i < n; i++) acc += exp((double)x[i] - m);                 \
            return m + log(acc);                                                          \
        }                                                                                 \
        case KDX_RED_NORM1:                                                               \
            for (int64_t i = 0; i < n; i++) acc += fabs((double)x[i]);                    \
            return acc;                                                                   \
        case KDX_RED_NORM2:                                                               \
            for (int64_t i = 0; i < n; i++) acc += (double)x[i] * (double)x[i];           \
            return sqrt(acc);                                                             \
        case KDX_RED_NORMINF:                                                             \
            for (int64_t i = 0; i < n; i++) {                                             \
                double v = fabs((double)x[i]);                                            \
                if (v > acc || v != v) acc = v;                                           \
            }                                                                             \
            return acc;                                                                   \
        case KDX_RED_COUNT: break;                                                        \
        }                                                                                 \
        return 0;                                                                         \
    }

ROW_REDUCE(float)
ROW_REDUCE(double)

static int64_t row_int64(kdx_redop op, const int64_t *x, int64_t n)
{
    uint64_t acc = op == KDX_RED_PROD ? 1 : 0; /* unsigned: wraps like PyTorch, no UB */
    int64_t m = n ? x[0] : 0;
    for (int64_t i = 0; i < n; i++) {
        switch (op) {
        case KDX_RED_SUM: acc += (uint64_t)x[i]; break;
        case KDX_RED_PROD: acc *= (uint64_t)x[i]; break;
        case KDX_RED_AMAX: if (x[i] > m) m = x[i]; break;
        case KDX_RED_AMIN: if (x[i] < m) m = x[i]; break;
        default: break;
        }
    }
    return op == KDX_RED_AMAX || op == KDX_RED_AMIN ? m : (int64_t)acc;
}

static void reduce_rows(void *ud, int64_t lo, int64_t hi)
{
    const reduce_job *j = ud;
    for (int64_t r = lo; r < hi; r++) {
        switch (j->dt) {
        case KDX_DTYPE_F32: ((float *)j->out)[r] = (float)row_float(j->op, (const float *)j->in + r * j->n, j->n); break;
        case KDX_DTYPE_F64: ((double *)j->out)[r] = row_double(j->op, (const double *)j->in + r * j->n, j->n); break;
        case KDX_DTYPE_I64: ((int64_t *)j->out)[r] = row_int64(j->op, (const int64_t *)j->in + r * j->n, j->n); break;
        }
    }
}

static const char *const redop_names[KDX_RED_COUNT] = {
    "sum", "mean", "prod", "logsumexp", "amax", "amin", "norm", "norm", "norm",
};

/* The common start of a row reduction: x converted to dt and laid out as
   [outer, n] with the reduced dims last (*xt), and the output *y with the
   reduced shape. On failure nothing is held. */
static kdx_status reduce_setup(const char *name, const kdx_tensor *x, const int *dims, int ndims, int keepdim,
                               kdx_dtype dt, kdx_tensor **xt, int64_t *outer, int64_t *n, kdx_tensor **y)
{
    unsigned mask;
    KDX_TRY(kdx__dims_mask(name, x->ndim, dims, ndims, &mask));
    int64_t shape[KDX_MAX_DIMS];
    int nd = kdx__reduced_shape(x->ndim, x->shape, mask, keepdim, shape);
    kdx_tensor *xc;
    KDX_TRY(kdx_to(x, dt, &xc));
    kdx_status s = kdx__reduce_layout(name, xc, mask, xt, outer, n);
    kdx_tensor_release(xc);
    if (s != KDX_OK) return s;
    s = kdx__new_raw(name, dt, nd, shape, y); /* every row is written */
    if (s != KDX_OK) kdx_tensor_release(*xt);
    return s;
}

/* Rows per parallel task: about 16k elements each. */
static int64_t rows_grain(int64_t n) { return n > 0 ? 1 + 16384 / n : 16384; }

static kdx_status reduce_fwd(kdx_redop op, const kdx_tensor *x, const int *dims, int ndims, int keepdim,
                             kdx_tensor **out)
{
    if ((unsigned)op >= KDX_RED_COUNT) return kdx_fail(KDX_EINVAL, "reduce: unknown op %d", (int)op);
    const char *name = redop_names[op];
    KDX_TRY(kdx__arg(name, "input", x));
    bool int_ok = op == KDX_RED_SUM || op == KDX_RED_PROD || op == KDX_RED_AMAX || op == KDX_RED_AMIN;
    kdx_dtype dt = x->dtype == KDX_DTYPE_I64 && !int_ok ? KDX_DTYPE_F32 : x->dtype;
    kdx_tensor *xt, *y;
    int64_t outer, n;
    KDX_TRY(reduce_setup(name, x, dims, ndims, keepdim, dt, &xt, &outer, &n, &y));
    if (n == 0 && (op == KDX_RED_AMAX || op == KDX_RED_AMIN || op == KDX_RED_NORMINF) && outer > 0) {
        KDX_RELEASE(xt, y);
        return kdx_fail(KDX_ESHAPE, "%s: cannot reduce over zero elements (input %s)", name, kdx__shp(x));
    }
    reduce_job j = {op, kdx__base(xt), kdx__base(y), n, dt};
    kdx__parallel_for(outer, rows_grain(n), reduce_rows, &j);
    kdx_tensor_release(xt);
    *out = y;
    return KDX_OK;
}

/* ---- var, std ---- */

typedef struct {
    const char *in;
    char *out;
    int64_t n;
    double correction;
    bool take_sqrt;
    kdx_dtype dt;
} var_job;

static void var_rows(void *ud, int64_t lo, int64_t hi)
{
    const var_job *j = ud;
    for (int64_t r = lo; r < hi; r++) {
        double mean = 0, ss = 0;
        for (int64_t i = 0; i < j->n; i++)
            mean += j->dt == KDX_DTYPE_F32 ? ((const float *)j->in)[r * j->n + i] : ((const double *)j->in)[r * j->n + i];
        mean /= (double)j->n;
        for (int64_t i = 0; i < j->n; i++) {
            double v = j->dt == KDX_DTYPE_F32 ? ((const float *)j->in)[r * j->n + i] : ((const double *)j->in)[r * j->n + i];
            ss += (v - mean) * (v - mean);
        }
        double denom = (double)j->n - j->correction;
        double var = denom > 0 ? ss / denom : NAN;
        double v = j->take_sqrt ? sqrt(var) : var;
        if (j->dt == KDX_DTYPE_F32) ((float *)j->out)[r] = (float)v;
        else ((double *)j->out)[r] = v;
    }
}

static kdx_status var_std(const char *name, bool take_sqrt, const kdx_tensor *x, const int *dims, int ndims,
                          double correction, int keepdim, kdx_tensor **out)
{
    KDX_TRY(kdx__arg(name, "input", x));
    if (!(correction >= 0)) return kdx_fail(KDX_EINVAL, "%s: correction must be >= 0, got %g", name, correction);
    kdx_dtype dt = x->dtype == KDX_DTYPE_I64 ? KDX_DTYPE_F32 : x->dtype;
    kdx_tensor *xt, *y;
    int64_t outer, n;
    KDX_TRY(reduce_setup(name, x, dims, ndims, keepdim, dt, &xt, &outer, &n, &y));
    var_job j = {kdx__base(xt), kdx__base(y), n, correction, take_sqrt, dt};
    kdx__parallel_for(outer, rows_grain(n), var_rows, &j);
    kdx_tensor_release(xt);
    *out = y;
    return KDX_OK;
}

/* ---- gradients of reductions ----
 * The output's gradient is brought back to the input's shape by reshaping it
 * to the keepdim shape and expanding; ip[0] holds the dims mask, ip[1]
 * keepdim. */

/* g (of the reduced shape) as a tensor broadcastable against x. */
static kdx_tensor *unreduce(kdx_scope *S, const kdx_tensor *g, const kdx_tensor *x, unsigned mask)
{
    int64_t shape[KDX_MAX_DIMS];
    int nd = kdx__reduced_shape(x->ndim, x->shape, mask, 1, shape);
    return E_expand(S, E_reshape(S, g, nd, shape), x->ndim, x->shape);
}

/* Number of elements reduced by mask. */
static double reduced_count(const kdx_tensor *x, unsigned mask)
{
    double n = 1;
    for (int i = 0; i < x->ndim; i++)
        if (mask & (1u << i)) n *= (double)x->shape[i];
    return n;
}

static int mask_dims(unsigned mask, int ndim, int *dims)
{
    int n = 0;
    for (int i = 0; i < ndim; i++)
        if (mask & (1u << i)) dims[n++] = i;
    return n;
}

/* The reduction of n's kind recomputed from x (recorded under create_graph). */
static kdx_tensor *reduce_again(kdx_scope *S, kdx_redop op, const kdx_tensor *x, unsigned mask)
{
    int dims[KDX_MAX_DIMS], nd = mask_dims(mask, x->ndim, dims);
    kdx_tensor *r;
    if (!x) return NULL;
    KDX_KEEP(S, r, nd ? kdx_reduce(op, x, dims, nd, 1, &kdx_o_) : kdx_reduce(op, x, NULL, 0, 1, &kdx_o_));
    return r;
}

/* g spread over the positions of x equal to y (the extremum), split among ties. */
static kdx_tensor *to_extremum(kdx_scope *S, const kdx_tensor *g, const kdx_tensor *x, const kdx_tensor *y,
                               unsigned mask)
{
    int dims[KDX_MAX_DIMS], nd = mask_dims(mask, x->ndim, dims);
    kdx_tensor *hit = E_bin(S, KDX_BIN_EQ, x, y);
    kdx_tensor *count = nd ? E_sum(S, hit, dims, nd, 1) : E_sum(S, hit, NULL, 0, 1);
    return E_bin(S, KDX_BIN_DIV, E_bin(S, KDX_BIN_MUL, unreduce(S, g, x, mask), hit), count);
}

static kdx_status reduce_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_tensor *x;
    KDX_TRY(kdx__saved(n, 0, &x));
    kdx_redop op = (kdx_redop)n->ip[2];
    unsigned mask = (unsigned)n->ip[0];
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *ge = unreduce(&S, g, x, mask), *r = NULL;
    switch (op) {
    case KDX_RED_SUM: r = ge; break;
    case KDX_RED_MEAN: r = E_bins(&S, KDX_BIN_DIV, ge, reduced_count(x, mask)); break;
    case KDX_RED_PROD: {
        /* The product of the others, exact with zeros, and written so that
           its own graph (create_graph) gives exact second derivatives too.
           With pnz the product of the non-zeros, Z the product of the zero
           entries (1 if none) and m their count:
             x != 0:  pnz / x * Z           (P / x when m = 0, else 0)
             x == 0:  pnz * [m = 1] + pnz * [m = 2] * (the other zero entry)
           Z and the other zero entry (their sum minus this one) carry the
           graph of the zero entries, so d(others)/d(a zero entry) is right
           where it is not 0; for m >= 3 every second derivative is 0. */
        int dims[KDX_MAX_DIMS], nd = mask_dims(mask, x->ndim, dims);
        kdx_tensor *zero = E_mask(&S, KDX_BIN_EQ, x, 0), *zr = E_zeros(&S, x->dtype, 0, NULL);
        kdx_tensor *one = E_bins(&S, KDX_BIN_ADD, zr, 1);
        kdx_tensor *nz = E_where(&S, zero, one, x);
        kdx_tensor *pnz = reduce_again(&S, KDX_RED_PROD, nz, mask);
        kdx_tensor *Z = reduce_again(&S, KDX_RED_PROD, E_where(&S, zero, x, one), mask);
        kdx_tensor *zx = E_where(&S, zero, x, zr);
        kdx_tensor *zsum = nd ? E_sum(&S, zx, dims, nd, 1) : E_sum(&S, zx, NULL, 0, 1);
        kdx_tensor *zeros = nd ? E_sum(&S, zero, dims, nd, 1) : E_sum(&S, zero, NULL, 0, 1);
        kdx_tensor *single = E_mask(&S, KDX_BIN_EQ, zeros, 1), *two = E_mask(&S, KDX_BIN_EQ, zeros, 2);
        kdx_tensor *at_zero = E_bin(&S, KDX_BIN_MUL, pnz,
                                    E_bin(&S, KDX_BIN_ADD, single, E_bin(&S, KDX_BIN_MUL, two, E_bin(&S, KDX_BIN_SUB, zsum, x))));
        kdx_tensor *others = E_where(&S, zero, at_zero, E_bin(&S, KDX_BIN_MUL, E_bin(&S, KDX_BIN_DIV, pnz, nz), Z));
        r = E_bin(&S, KDX_BIN_MUL, ge, others);
        break;
    }
    case KDX_RED_LOGSUMEXP: /* g softmax(x) */
        r = E_bin(&S, KDX_BIN_MUL, ge, E_un(&S, KDX_UN_EXP, E_bin(&S, KDX_BIN_SUB, x, reduce_again(&S, op, x, mask)), 0, 0));
        break;
    case KDX_RED_AMAX:
    case KDX_RED_AMIN: r = to_extremum(&S, g, x, reduce_again(&S, op, x, mask), mask); break;
    case KDX_RED_NORM1: r = E_bin(&S, KDX_BIN_MUL, ge, E_un(&S, KDX_UN_SIGN, x, 0, 0)); break;
    case KDX_RED_NORM2: { /* g x / |x|, 0 where |x| = 0 */
        kdx_tensor *nrm = reduce_again(&S, op, x, mask);
        kdx_tensor *safe = E_where(&S, E_mask(&S, KDX_BIN_EQ, nrm, 0), E_bins(&S, KDX_BIN_ADD, nrm, 1), nrm);
        r = E_bin(&S, KDX_BIN_MUL, ge, E_bin(&S, KDX_BIN_DIV, x, safe));
        break;
    }
    case KDX_RED_NORMINF: {
        kdx_tensor *ax = E_un(&S, KDX_UN_ABS, x, 0, 0);
        r = E_bin(&S, KDX_BIN_MUL, to_extremum(&S, g, ax, reduce_again(&S, KDX_RED_AMAX, ax, mask), mask),
                  E_un(&S, KDX_UN_SIGN, x, 0, 0));
        break;
    }
    default: break;
    }
    return kdx__scope_end(&S, r, &gin[0]);
}

/* Records a reduction of x over dims (already checked by its forward). */
static kdx_status record_reduce(const char *name, kdx_backward_fn bw, int code, const kdx_tensor *x, const int *dims,
                                int ndims, int keepdim, kdx_tensor **out, kdx_node **node)
{
    const kdx_tensor *ins[1] = {x};
    unsigned mask;
    KDX_TRY(kdx__dims_mask(name, x->ndim, dims, ndims, &mask));
    kdx_node *n;
    KDX_TRY(kdx__record(name, bw, 1, ins, out, &n));
    n->ip[0] = mask, n->ip[1] = keepdim, n->ip[2] = code;
    kdx__save(n, 0, x);
    if (node) *node = n;
    return KDX_OK;
}

kdx_status kdx_reduce(kdx_redop op, const kdx_tensor *x, const int *dims, int ndims, int keepdim, kdx_tensor **out)
{
    const kdx_tensor *ins[1] = {x};
    bool rec = x && (unsigned)op < KDX_RED_COUNT && kdx__needs_node(1, ins);
    bool was = kdx__grad_pause();
    kdx_status s = reduce_fwd(op, x, dims, ndims, keepdim, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !rec) return s;
    return record_reduce(redop_names[op], reduce_backward, op, x, dims, ndims, keepdim, out, NULL);
}

/* var: g 2 (x - mean) / (n - c); std: g (x - mean) / ((n - c) std). */
static kdx_status var_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_tensor *x;
    KDX_TRY(kdx__saved(n, 0, &x));
    unsigned mask = (unsigned)n->ip[0];
    bool is_std = n->ip[2] != 0;
    double denom = reduced_count(x, mask) - n->p[0];
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *d = E_bin(&S, KDX_BIN_SUB, x, reduce_again(&S, KDX_RED_MEAN, x, mask));
    kdx_tensor *ge = unreduce(&S, g, x, mask), *r;
    if (!is_std) {
        r = E_bins(&S, KDX_BIN_MUL, E_bin(&S, KDX_BIN_MUL, ge, d), 2 / denom);
    } else {
        int dims[KDX_MAX_DIMS], nd = mask_dims(mask, x->ndim, dims);
        kdx_tensor *sd;
        KDX_KEEP(&S, sd, nd ? kdx_std(x, dims, nd, n->p[0], 1, &kdx_o_) : kdx_std(x, NULL, 0, n->p[0], 1, &kdx_o_));
        r = E_bin(&S, KDX_BIN_DIV, E_bins(&S, KDX_BIN_MUL, E_bin(&S, KDX_BIN_MUL, ge, d), 1 / denom), sd);
    }
    return kdx__scope_end(&S, r, &gin[0]);
}

static kdx_status var_std_rec(const char *name, bool take_sqrt, const kdx_tensor *x, const int *dims, int ndims,
                              double correction, int keepdim, kdx_tensor **out)
{
    const kdx_tensor *ins[1] = {x};
    bool rec = x && kdx__needs_node(1, ins);
    bool was = kdx__grad_pause();
    kdx_status s = var_std(name, take_sqrt, x, dims, ndims, correction, keepdim, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !rec) return s;
    kdx_node *n;
    KDX_TRY(record_reduce(name, var_backward, take_sqrt, x, dims, ndims, keepdim, out, &n));
    n->p[0] = correction;
    return KDX_OK;
}

kdx_status kdx_var(const kdx_tensor *x, const int *dims, int ndims, double correction, int keepdim, kdx_tensor **out)
{
    return var_std_rec("var", false, x, dims, ndims, correction, keepdim, out);
}

kdx_status kdx_std(const kdx_tensor *x, const int *dims, int ndims, double correction, int keepdim, kdx_tensor **out)
{
    return var_std_rec("std", true, x, dims, ndims, correction, keepdim, out);
}

/* ---- max/min with indices, argmax/argmin ---- */

/* Index of the first max (want_max) or min of a row; the first NaN wins. */
static int64_t row_arg(kdx_dtype dt, const char *base, int64_t n, bool want_max)
{
    int64_t best = 0;
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = dt == KDX_DTYPE_F32 ? ((const float *)base)[i]
                 : dt == KDX_DTYPE_F64 ? ((const double *)base)[i]
                                       : (double)((const int64_t *)base)[i];
        if (i == 0) {
            m = v;
            if (v != v) return 0;
            continue;
        }
        if (v != v) return i;
        if (dt == KDX_DTYPE_I64) {
            /* Compare int64 exactly: doubles lose precision past 2^53. */
            int64_t a = ((const int64_t *)base)[i], b = ((const int64_t *)base)[best];
            if (want_max ? a > b : a < b) best = i;
        } else if (want_max ? v > m : v < m) {
            m = v, best = i;
        }
    }
    return best;
}

static kdx_status arg_reduce(const char *name, bool want_max, const kdx_tensor *x, unsigned mask, int keepdim,
                             kdx_tensor **values, kdx_tensor **indices)
{
    int64_t shape[KDX_MAX_DIMS];
    int nd = kdx__reduced_shape(x->ndim, x->shape, mask, keepdim, shape);
    kdx_tensor *xt, *v = NULL, *ix = NULL;
    int64_t outer, n;
    KDX_TRY(kdx__reduce_layout(name, x, mask, &xt, &outer, &n));
    if (n == 0 && outer > 0) {
        kdx_tensor_release(xt);
        return kdx_fail(KDX_ESHAPE, "%s: cannot reduce over an empty dim (input %s)", name, kdx__shp(x));
    }
    kdx_status s = kdx__new(name, KDX_DTYPE_I64, nd, shape, &ix);
    if (s == KDX_OK && values) s = kdx__new(name, x->dtype, nd, shape, &v);
    if (s == KDX_OK) {
        size_t es = kdx_dtype_size(x->dtype);
        for (int64_t r = 0; r < outer; r++) {
            const char *row = kdx__base(xt) + (size_t)(r * n) * es;
            int64_t k = row_arg(x->dtype, row, n, want_max);
            ((int64_t *)kdx__base(ix))[r] = k;
            if (v) memcpy(kdx__base(v) + (size_t)r * es, row + (size_t)k * es, es);
        }
        if (values) *values = v;
        if (indices) *indices = ix;
        else kdx_tensor_release(ix);
    } else {
        KDX_RELEASE(v, ix);
    }
    kdx_tensor_release(xt);
    return s;
}

static kdx_status max_min(const char *name, bool want_max, const kdx_tensor *x, int dim, int keepdim,
                          kdx_tensor **values, kdx_tensor **indices)
{
    KDX_TRY(kdx__arg(name, "input", x));
    int d;
    KDX_TRY(kdx__dim(name, x->ndim, dim, &d));
    unsigned mask = x->ndim ? 1u << d : 0;
    return arg_reduce(name, want_max, x, mask, keepdim, values, indices);
}

/* The gradient goes to the position each index names (ties: the first). */
static kdx_status max_min_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_tensor *x, *idx;
    KDX_TRY(kdx__saved(n, 0, &x));
    KDX_TRY(kdx__saved(n, 1, &idx));
    unsigned mask = (unsigned)n->ip[0];
    int d = (int)n->ip[3];
    kdx_scope S = KDX_SCOPE;
    /* positions 0..size-1 along d, shaped to broadcast against x */
    int64_t shape[KDX_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = i == d ? x->shape[d] : 1;
    kdx_tensor *pos;
    KDX_KEEP(&S, pos, kdx_arange(0, (double)(x->ndim ? x->shape[d] : 1), 1, KDX_DTYPE_I64, &kdx_o_));
    pos = E_reshape(&S, pos, x->ndim, shape);
    int64_t kshape[KDX_MAX_DIMS];
    int knd = kdx__reduced_shape(x->ndim, x->shape, mask, 1, kshape);
    kdx_tensor *hit = E_bin(&S, KDX_BIN_EQ, pos, E_reshape(&S, idx, knd, kshape));
    kdx_tensor *r = E_bin(&S, KDX_BIN_MUL, unreduce(&S, g, x, mask), hit); /* int 0/1 promotes to g's dtype */
    return kdx__scope_end(&S, r, &gin[0]);
}

static kdx_status max_min_rec(const char *name, bool want_max, const kdx_tensor *x, int dim, int keepdim,
                              kdx_tensor **values, kdx_tensor **indices)
{
    const kdx_tensor *ins[1] = {x};
    bool rec = x && values && kdx__needs_node(1, ins);
    kdx_tensor *ix = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = max_min(name, want_max, x, dim, keepdim, values, rec || indices ? &ix : NULL);
    kdx__grad_restore(was);
    if (s != KDX_OK) return s;
    if (rec) {
        int d = 0;
        kdx__dim(name, x->ndim, dim, &d);
        kdx_node *n;
        s = record_reduce(name, max_min_backward, 0, x, &d, x->ndim ? 1 : 0, keepdim, values, &n);
        if (s == KDX_OK) {
            n->ip[3] = d;
            kdx__save(n, 1, ix);
        }
    }
    if (s == KDX_OK && indices) *indices = ix;
    else kdx_tensor_release(ix);
    return s;
}

kdx_status kdx_max(const kdx_tensor *x, int dim, int keepdim, kdx_tensor **values, kdx_tensor **indices)
{
    return max_min_rec("max", true, x, dim, keepdim, values, indices);
}

kdx_status kdx_min(const kdx_tensor *x, int dim, int keepdim, kdx_tensor **values, kdx_tensor **indices)
{
    return max_min_rec("min", false, x, dim, keepdim, values, indices);
}

static kdx_status argmaxmin(const char *name, bool want_max, const kdx_tensor *x, int dim, int all, int keepdim,
                            kdx_tensor **out)
{
    KDX_TRY(kdx__arg(name, "input", x));
    if (!all) return max_min(name, want_max, x, dim, keepdim, NULL, out);
    unsigned mask = x->ndim ? (1u << x->ndim) - 1 : 0;
    return arg_reduce(name, want_max, x, mask, keepdim, NULL, out);
}

kdx_status kdx_argmax(const kdx_tensor *x, int dim, int all, int keepdim, kdx_tensor **out)
{
    return argmaxmin("argmax", true, x, dim, all, keepdim, out);
}

kdx_status kdx_argmin(const kdx_tensor *x, int dim, int all, int keepdim, kdx_tensor **out)
{
    return argmaxmin("argmin", false, x, dim, all, keepdim, out);
}

/* ---- cumsum ---- */

static kdx_status cumsum_fwd(const kdx_tensor *x, int dim, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("cumsum", "input", x));
    int d;
    KDX_TRY(kdx__dim("cumsum", x->ndim, dim, &d));
    kdx_tensor *y;
    KDX_TRY(kdx_clone(x, &y)); /* contiguous: dim d has stride inner, rows of length size */
    if (x->ndim == 0) {
        *out = y;
        return KDX_OK;
    }
    int64_t size = x->shape[d], inner = 1, outer = 1;
    for (int i = d + 1; i < x->ndim; i++) inner *= x->shape[i];
    for (int i = 0; i < d; i++) outer *= x->shape[i];
    char *base = kdx__base(y);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t at = o * size * inner + in;
            switch (y->dtype) {
            case KDX_DTYPE_F32: {
                float *p = (float *)base + at;
                double acc = 0;
                for (int64_t i = 0; i < size; i++) acc += p[i * inner], p[i * inner] = (float)acc;
                break;
            }
            case KDX_DTYPE_F64: {
                double *p = (double *)base + at, acc = 0;
                for (int64_t i = 0; i < size; i++) acc += p[i * inner], p[i * inner] = acc;
                break;
            }
            case KDX_DTYPE_I64: {
                int64_t *p = (int64_t *)base + at;
                uint64_t acc = 0;
                for (int64_t i = 0; i < size; i++) acc += (uint64_t)p[i * inner], p[i * inner] = (int64_t)acc;
                break;
            }
            }
        }
    *out = y;
    return KDX_OK;
}

/* d cumsum / dx: the reversed cumulative sum, sum(g) - cumsum(g) + g. */
static kdx_status cumsum_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    int d = (int)n->ip[0];
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *c;
    KDX_KEEP(&S, c, kdx_cumsum(g, d, &kdx_o_));
    kdx_tensor *r = g->ndim ? E_bin(&S, KDX_BIN_ADD, E_bin(&S, KDX_BIN_SUB, E_sum(&S, g, &d, 1, 1), c), g) : g;
    return kdx__scope_end(&S, r, &gin[0]);
}

kdx_status kdx_cumsum(const kdx_tensor *x, int dim, kdx_tensor **out)
{
    const kdx_tensor *ins[1] = {x};
    bool rec = x && kdx__needs_node(1, ins);
    bool was = kdx__grad_pause();
    kdx_status s = cumsum_fwd(x, dim, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !rec) return s;
    int d = 0;
    kdx__dim("cumsum", x->ndim, dim, &d);
    kdx_node *n;
    KDX_TRY(kdx__record("cumsum", cumsum_backward, 1, ins, out, &n));
    n->ip[0] = d;
    return KDX_OK;
}
