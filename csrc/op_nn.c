/* op_nn.c — per-element neural-network kernels: softmax, log_softmax,
   dropout, batch_norm, layer_norm, embedding, each with its gradient.

   Each typed inner loop is stamped for float (f32) and double (f64) by a
   short DEF_* macro; shape checks, index math and threading stay in plain
   functions. Sums of float32 data are accumulated in double. The gradients
   are written with the public (recording) ops, so they can be
   differentiated again; where a formula needs an output or a statistic it
   recomputes it from the saved input under create_graph. */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>


/* An optional [C]-shaped parameter (weight, bias, running stats) matching x's dtype. */
static kdx_status check_vec(const char *fname, const char *arg, const kdx_tensor *t, kdx_dtype dt, int64_t c)
{
    if (!t) return KDX_OK;
    KDX_TRY(kdx__check_float(fname, arg, t));
    if (t->dtype != dt)
        return kdx_fail(KDX_EDTYPE, "%s: %s is %s but input is %s", fname, arg, kdx_dtype_name(t->dtype),
                        kdx_dtype_name(dt));
    if (t->ndim != 1 || t->shape[0] != c)
        return kdx_fail(KDX_ESHAPE, "%s: %s must have shape [%lld], got %s", fname, arg, (long long)c,
                        kdx__shp(t));
    return KDX_OK;
}

/* Element i of a 1-D float tensor (any stride), and its setter. */
static double vec_get(const kdx_tensor *t, int64_t i)
{
    const char *p = kdx__base(t);
    if (t->dtype == KDX_DTYPE_F32) return ((const float *)p)[i * t->stride[0]];
    return ((const double *)p)[i * t->stride[0]];
}

static void vec_set(kdx_tensor *t, int64_t i, double v)
{
    char *p = kdx__base(t);
    if (t->dtype == KDX_DTYPE_F32) ((float *)p)[i * t->stride[0]] = (float)v;
    else ((double *)p)[i * t->stride[0]] = v;
}

/* ==== softmax / log_softmax ================================================== */

/* One line of n elements st apart: y = softmax(x) (or log_softmax when lg).
   The max is subtracted first, so logits of +-1e4 neither overflow nor
   vanish; the denominator is summed in double. */
#define DEF_SOFTMAX_LINE(T, S)                                                           \
    static void softmax_line_##S(const T *x, T *y, int64_t n, int64_t st, int lg)        \
    {                                                                                    \
        double m = x[0], s = 0;                                                          \
        for (int64_t k = 1; k < n; k++)                                                  \
            if (x[k * st] > m) m = x[k * st];                                            \
        if (lg) {                                                                        \
            for (int64_t k = 0; k < n; k++) s += exp((double)x[k * st] - m);             \
            double ls = log(s);                                                          \
            for (int64_t k = 0; k < n; k++) y[k * st] = (T)((double)x[k * st] - m - ls); \
            return;                                                                      \
        }                                                                                \
        for (int64_t k = 0; k < n; k++) {                                                \
            double e = exp((double)x[k * st] - m);                                       \
            y[k * st] = (T)e;                                                            \
            s += e;                                                                      \
        }                                                                                \
        double r = 1.0 / s;                                                              \
        for (int64_t k = 0; k < n; k++) y[k * st] = (T)((double)y[k * st] * r);          \
    }
DEF_SOFTMAX_LINE(float, f32)
DEF_SOFTMAX_LINE(double, f64)

typedef struct softmax_job {
    const char *x;
    char *y;
    int64_t n, inner; /* line length; stride between a line's elements */
    int lg;
    kdx_dtype dt;
} softmax_job;

static void softmax_range(void *ud, int64_t lo, int64_t hi)
{
    const softmax_job *j = ud;
    for (int64_t l = lo; l < hi; l++) {
        int64_t off = (l / j->inner) * j->n * j->inner + l % j->inner;
        if (j->dt == KDX_DTYPE_F32)
            softmax_line_f32((const float *)j->x + off, (float *)j->y + off, j->n, j->inner, j->lg);
        else
            softmax_line_f64((const double *)j->x + off, (double *)j->y + off, j->n, j->inner, j->lg);
    }
}

static kdx_status softmax_impl(const char *fname, const kdx_tensor *x, int dim, int lg, kdx_tensor **out)
{
    KDX_TRY(kdx__check_float(fname, "x", x));
    if (!out) return kdx_fail(KDX_EINVAL, "%s: out is NULL", fname);
    int d;
    KDX_TRY(kdx__dim(fname, x->ndim, dim, &d));
    kdx_tensor *xc, *y;
    KDX_TRY(kdx_contiguous(x, &xc));
    kdx_status s = kdx__new(fname, x->dtype, x->ndim, x->shape, &y);
    if (s != KDX_OK) {
        kdx_tensor_release(xc);
        return s;
    }
    /* View x as [outer, n, inner] around dim d (a 0-d tensor is one line of 1). */
    softmax_job j = {kdx__base(xc), kdx__base(y), 1, 1, lg, x->dtype};
    int64_t outer = 1;
    for (int i = 0; i < x->ndim; i++) {
        if (i < d) outer *= x->shape[i];
        else if (i == d) j.n = x->shape[i];
        else j.inner *= x->shape[i];
    }
    if (j.n > 0 && outer * j.inner > 0)
        kdx__parallel_for(outer * j.inner, kdx__grain(j.n), softmax_range, &j);
    kdx_tensor_release(xc);
    *out = y;
    return KDX_OK;
}

/* softmax: y (g - sum(g y)); log_softmax: g - exp(y) sum(g), along dim ip[0].
   Under create_graph y is recomputed from x, so that it is a function of x
   in the graph; otherwise the saved (detached) output serves. */
static kdx_status softmax_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_tensor *x, *y;
    KDX_TRY(kdx__saved(n, 0, &x));
    int d = (int)n->ip[0], lg = (int)n->ip[1], nd = x->ndim ? 1 : 0;
    kdx_scope S = KDX_SCOPE;
    if (kdx_grad_enabled()) KDX_KEEP(&S, y, (lg ? kdx_log_softmax : kdx_softmax)(x, d, &kdx_o_));
    else KDX_TRY(kdx__saved(n, 1, &y));
    kdx_tensor *r;
    if (lg)
        r = E_bin(&S, KDX_BIN_SUB, g, E_bin(&S, KDX_BIN_MUL, E_un(&S, KDX_UN_EXP, y, 0, 0), E_sum(&S, g, &d, nd, 1)));
    else
        r = E_bin(&S, KDX_BIN_MUL, y, E_bin(&S, KDX_BIN_SUB, g, E_sum(&S, E_bin(&S, KDX_BIN_MUL, g, y), &d, nd, 1)));
    return kdx__scope_end(&S, r, &gin[0]);
}

static kdx_status softmax_rec(const char *fname, const kdx_tensor *x, int dim, int lg, kdx_tensor **out)
{
    bool was = kdx__grad_pause();
    kdx_status s = softmax_impl(fname, x, dim, lg, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !kdx__needs_node(1, &x)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record(fname, softmax_backward, 1, &x, out, &n));
    int d = 0;
    kdx__dim(fname, x->ndim, dim, &d);
    n->ip[0] = d, n->ip[1] = lg;
    kdx__save(n, 0, x);
    s = kdx__save_detached(n, 1, *out);
    if (s != KDX_OK) { /* the output goes, and with it the node, which holds x */
        kdx_tensor_release(*out);
        *out = NULL;
    }
    return s;
}

kdx_status kdx_softmax(const kdx_tensor *x, int dim, kdx_tensor **out)
{
    return softmax_rec("softmax", x, dim, 0, out);
}

kdx_status kdx_log_softmax(const kdx_tensor *x, int dim, kdx_tensor **out)
{
    return softmax_rec("log_softmax", x, dim, 1, out);
}

/* ==== dropout =================================================================== */

/* Draws the scaled keep-mask serially (one generator, so the numbers do not
   depend on the thread count): 1/(1-p) with probability 1-p, else 0. */
#define DEF_DROPOUT(T, S)                                                                  \
    static void dropout_##S(const T *x, T *y, T *m, int64_t n, double p, kdx_generator *g) \
    {                                                                                      \
        T scale = p < 1 ? (T)1 / (T)(1.0 - p) : (T)0;                                      \
        for (int64_t i = 0; i < n; i++) {                                                  \
            T k;                                                                           \
            if (p == 0) k = 1;                                                             \
            else if (p == 1) k = 0;                                                        \
            else k = kdx_generator_uniform(g) < 1.0 - p ? scale : 0;                       \
            m[i] = k;                                                                      \
            y[i] = x[i] * k;                                                               \
        }                                                                                  \
    }
DEF_DROPOUT(float, f32)
DEF_DROPOUT(double, f64)

static kdx_status dropout_fwd(const kdx_tensor *x, double p, kdx_generator *g, kdx_tensor **out, kdx_tensor **mask)
{
    const char *const fname = "dropout";
    KDX_TRY(kdx__check_float(fname, "x", x));
    if (!out) return kdx_fail(KDX_EINVAL, "dropout: out is NULL");
    if (!(p >= 0 && p <= 1)) return kdx_fail(KDX_EINVAL, "dropout: p must be in [0, 1], got %g", p);
    if (!g) g = kdx_default_generator();
    kdx_tensor *xc = NULL, *y = NULL, *m = NULL;
    kdx_status s;
    if ((s = kdx_contiguous(x, &xc)) != KDX_OK || (s = kdx__new(fname, x->dtype, x->ndim, x->shape, &y)) != KDX_OK ||
        (s = kdx__new(fname, x->dtype, x->ndim, x->shape, &m)) != KDX_OK) {
        KDX_RELEASE(xc, y, m);
        return s;
    }
    int64_t n = kdx__numel(x->ndim, x->shape);
    if (x->dtype == KDX_DTYPE_F32)
        dropout_f32((const float *)kdx__base(xc), (float *)kdx__base(y), (float *)kdx__base(m), n, p, g);
    else
        dropout_f64((const double *)kdx__base(xc), (double *)kdx__base(y), (double *)kdx__base(m), n, p, g);
    kdx_tensor_release(xc);
    *out = y;
    *mask = m;
    return KDX_OK;
}

/* x's gradient is g times the same scaled mask. */
static kdx_status dropout_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_tensor *m;
    KDX_TRY(kdx__saved(n, 0, &m));
    return kdx_binary(KDX_BIN_MUL, g, m, &gin[0]);
}

kdx_status kdx_dropout(const kdx_tensor *x, double p, kdx_generator *g, kdx_tensor **out, kdx_tensor **mask)
{
    kdx_tensor *m = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = dropout_fwd(x, p, g, out, &m);
    kdx__grad_restore(was);
    if (s == KDX_OK && kdx__needs_node(1, &x)) {
        kdx_node *n;
        s = kdx__record("dropout", dropout_backward, 1, &x, out, &n);
        if (s == KDX_OK) kdx__save(n, 0, m);
    }
    if (s == KDX_OK && mask) *mask = m;
    else kdx_tensor_release(m);
    return s;
}

/* ==== batch_norm ================================================================== */

/* Sum of a run, and the sum of squared deviations from mean (double accumulators). */
#define DEF_RUN_STATS(T, S)                                                            \
    static double run_sum_##S(const T *p, int64_t n)                                   \
    {                                                                                  \
        double s = 0;                                                                  \
        for (int64_t i = 0; i < n; i++) s += p[i];                                     \
        return s;                                                                      \
    }                                                                                  \
    static double run_sqdev_##S(const T *p, int64_t n, double mean)                    \
    {                                                                                  \
        double s = 0;                                                                  \
        for (int64_t i = 0; i < n; i++) s += ((double)p[i] - mean) * ((double)p[i] - mean); \
        return s;                                                                      \
    }                                                                                  \
    /* y = x * a + b over a run (the normalisation folded into one multiply-add). */   \
    static void run_affine_##S(const T *x, T *y, int64_t n, double a, double b)        \
    {                                                                                  \
        T ta = (T)a, tb = (T)b;                                                        \
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * ta + tb;                         \
    }
DEF_RUN_STATS(float, f32)
DEF_RUN_STATS(double, f64)

/* x viewed as [N, C, S]; row r = n*C + c is S contiguous elements. */
typedef struct bn_job {
    const char *x;
    char *y;
    int64_t C, S;
    kdx_dtype dt;
    const double *mean; /* [C] (sqdev pass) */
    double *part;       /* [N*C] per-row partial sums */
    const double *a, *b; /* [C] scale and shift (affine pass) */
} bn_job;

static void bn_sum_range(void *ud, int64_t lo, int64_t hi)
{
    bn_job *j = ud;
    for (int64_t r = lo; r < hi; r++) {
        const char *p = j->x + (size_t)(r * j->S) * kdx_dtype_size(j->dt);
        j->part[r] = j->dt == KDX_DTYPE_F32 ? run_sum_f32((const float *)p, j->S) : run_sum_f64((const double *)p, j->S);
    }
}

static void bn_sqdev_range(void *ud, int64_t lo, int64_t hi)
{
    bn_job *j = ud;
    for (int64_t r = lo; r < hi; r++) {
        const char *p = j->x + (size_t)(r * j->S) * kdx_dtype_size(j->dt);
        double m = j->mean[r % j->C];
        j->part[r] = j->dt == KDX_DTYPE_F32 ? run_sqdev_f32((const float *)p, j->S, m)
                                            : run_sqdev_f64((const double *)p, j->S, m);
    }
}

static void bn_affine_range(void *ud, int64_t lo, int64_t hi)
{
    bn_job *j = ud;
    for (int64_t r = lo; r < hi; r++) {
        size_t off = (size_t)(r * j->S) * kdx_dtype_size(j->dt);
        int64_t c = r % j->C;
        if (j->dt == KDX_DTYPE_F32)
            run_affine_f32((const float *)(j->x + off), (float *)(j->y + off), j->S, j->a[c], j->b[c]);
        else
            run_affine_f64((const double *)(j->x + off), (double *)(j->y + off), j->S, j->a[c], j->b[c]);
    }
}

/* Per-channel mean and biased variance of x [N, C, S] (two passes, fixed
   summation order, so the result does not depend on the thread count). */
static void bn_batch_stats(bn_job *j, int64_t N, double *mean, double *var)
{
    int64_t C = j->C, M = N * j->S;
    kdx__parallel_for(N * C, kdx__grain(j->S), bn_sum_range, j);
    for (int64_t c = 0; c < C; c++) {
        double s = 0;
        for (int64_t n = 0; n < N; n++) s += j->part[n * C + c];
        mean[c] = s / (double)M;
    }
    j->mean = mean;
    kdx__parallel_for(N * C, kdx__grain(j->S), bn_sqdev_range, j);
    for (int64_t c = 0; c < C; c++) {
        double s = 0;
        for (int64_t n = 0; n < N; n++) s += j->part[n * C + c];
        var[c] = s / (double)M;
    }
}

kdx_status kdx__bn_check(const kdx_tensor *x, const kdx_tensor *rm, const kdx_tensor *rv, const kdx_tensor *w,
                         const kdx_tensor *b, int training, double momentum, double eps)
{
    const char *const fname = "batch_norm";
    KDX_TRY(kdx__check_float(fname, "x", x));
    if (x->ndim < 2)
        return kdx_fail(KDX_ESHAPE, "batch_norm: x must be [N,C] or [N,C,...], got %s", kdx__shp(x));
    int64_t C = x->shape[1];
    KDX_TRY(check_vec(fname, "running_mean", rm, x->dtype, C));
    KDX_TRY(check_vec(fname, "running_var", rv, x->dtype, C));
    KDX_TRY(check_vec(fname, "weight", w, x->dtype, C));
    KDX_TRY(check_vec(fname, "bias", b, x->dtype, C));
    if (!rm != !rv) return kdx_fail(KDX_EINVAL, "batch_norm: give both running_mean and running_var, or neither");
    if (!training && !rm)
        return kdx_fail(KDX_EINVAL, "batch_norm: running_mean and running_var are required when not training");
    if (!(eps >= 0) || !isfinite(eps)) return kdx_fail(KDX_EINVAL, "batch_norm: eps must be >= 0, got %g", eps);
    if (training && !(momentum >= 0 && momentum <= 1))
        return kdx_fail(KDX_EINVAL, "batch_norm: momentum must be in [0, 1], got %g", momentum);
    if (training == 1 && kdx__numel(x->ndim, x->shape) / (C > 0 ? C : 1) <= 1)
        return kdx_fail(KDX_ESHAPE, "batch_norm: expected more than 1 value per channel when training, got x of shape %s",
                        kdx__shp(x));
    return KDX_OK;
}

static kdx_status batch_norm_fwd(const kdx_tensor *x, kdx_tensor *running_mean, kdx_tensor *running_var,
                                 const kdx_tensor *weight, const kdx_tensor *bias, int training, double momentum,
                                 double eps, kdx_tensor **out, kdx_tensor **save_mean, kdx_tensor **save_invstd)
{
    const char *const fname = "batch_norm";
    KDX_TRY(kdx__bn_check(x, running_mean, running_var, weight, bias, training, momentum, eps));
    if (!out) return kdx_fail(KDX_EINVAL, "batch_norm: out is NULL");
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int i = 2; i < x->ndim; i++) S *= x->shape[i];
    int64_t M = N * S;

    kdx_tensor *xc = NULL, *y = NULL, *sm = NULL, *si = NULL;
    size_t cbytes = (size_t)(C > 0 ? C : 1) * sizeof(double);
    size_t pbytes = training ? (size_t)(N * C > 0 ? N * C : 1) * sizeof(double) : 0;
    double *st = kdx__malloc(4 * cbytes), *part = training ? kdx__malloc(pbytes) : NULL;
    kdx_status s = KDX_OK;
    if (!st || (training && !part)) s = kdx_fail(KDX_ENOMEM, "batch_norm: out of memory");
    if (s == KDX_OK) s = kdx_contiguous(x, &xc);
    if (s == KDX_OK) s = kdx__new(fname, x->dtype, x->ndim, x->shape, &y);
    if (s == KDX_OK) s = kdx__new(fname, x->dtype, 1, &C, &sm);
    if (s == KDX_OK) s = kdx__new(fname, x->dtype, 1, &C, &si);
    if (s != KDX_OK) {
        KDX_RELEASE(xc, y, sm, si);
        if (st) kdx__free(st, 4 * cbytes);
        if (part) kdx__free(part, pbytes);
        return s;
    }
    double *mean = st, *var = st + C, *a = st + 2 * C, *b = st + 3 * C;
    bn_job j = {kdx__base(xc), kdx__base(y), C, S, x->dtype, NULL, part, a, b};
    if (training) bn_batch_stats(&j, N, mean, var);
    for (int64_t c = 0; c < C; c++) {
        double mu = training ? mean[c] : vec_get(running_mean, c);
        double v = training ? var[c] : vec_get(running_var, c);
        double invstd = 1.0 / sqrt(v + eps);
        a[c] = invstd * (weight ? vec_get(weight, c) : 1.0);
        b[c] = (bias ? vec_get(bias, c) : 0.0) - mu * a[c];
        vec_set(sm, c, mu);
        vec_set(si, c, invstd);
    }
    kdx__parallel_for(N * C, kdx__grain(S), bn_affine_range, &j);
    /* Running statistics change last, once nothing can fail any more. */
    if (training && running_mean) {
        double unbias = (double)M / (double)(M - 1);
        for (int64_t c = 0; c < C; c++) {
            vec_set(running_mean, c, (1 - momentum) * vec_get(running_mean, c) + momentum * mean[c]);
            vec_set(running_var, c, (1 - momentum) * vec_get(running_var, c) + momentum * var[c] * unbias);
        }
        kdx__bump(running_mean);
        kdx__bump(running_var);
    }
    kdx__free(st, 4 * cbytes);
    if (part) kdx__free(part, pbytes);
    kdx_tensor_release(xc);
    *out = y;
    *save_mean = sm;
    *save_invstd = si;
    return KDX_OK;
}

/* ---- gradients of the normalisations ---- */

static kdx_tensor *E_mean(kdx_scope *S, const kdx_tensor *x, const int *dims, int nd)
{
    kdx_tensor *r;
    KDX_KEEP(S, r, kdx_reduce(KDX_RED_MEAN, x, dims, nd, 1, &kdx_o_));
    return r;
}

/* xhat = (x - mean) * rstd over dims, rstd = 1/sqrt(biased var + eps), both
   with the graph of x. */
static kdx_tensor *E_normalized(kdx_scope *S, const kdx_tensor *x, const int *dims, int nd, double eps,
                                kdx_tensor **rstd)
{
    kdx_tensor *var;
    KDX_KEEP(S, var, kdx_var(x, dims, nd, 0, 1, &kdx_o_));
    *rstd = E_un(S, KDX_UN_RSQRT, E_bins(S, KDX_BIN_ADD, var, eps), 0, 0);
    return E_bin(S, KDX_BIN_MUL, E_bin(S, KDX_BIN_SUB, x, E_mean(S, x, dims, nd)), *rstd);
}

/* d x of y = xhat * w + b when the statistics come from x itself:
   rstd * (gh - mean(gh) - xhat * mean(gh * xhat)), gh = g * w (w may be NULL). */
static kdx_tensor *E_norm_grad_x(kdx_scope *S, const kdx_tensor *g, const kdx_tensor *xhat, const kdx_tensor *rstd,
                                 const kdx_tensor *w, const int *dims, int nd)
{
    const kdx_tensor *gh = w ? E_bin(S, KDX_BIN_MUL, g, w) : g;
    kdx_tensor *t = E_bin(S, KDX_BIN_SUB, gh, E_mean(S, gh, dims, nd));
    t = E_bin(S, KDX_BIN_SUB, t, E_bin(S, KDX_BIN_MUL, xhat, E_mean(S, E_bin(S, KDX_BIN_MUL, gh, xhat), dims, nd)));
    return E_bin(S, KDX_BIN_MUL, t, rstd);
}

/* Hands the scope's results to gin (those that are set) and frees the scope. */
static kdx_status hand_out(kdx_scope *S, int nin, kdx_tensor *const *r, kdx_tensor **gin)
{
    for (int i = 0; i < nin && S->s == KDX_OK; i++) gin[i] = r[i] ? kdx_tensor_retain(r[i]) : NULL;
    return kdx__scope_free(S);
}

/* Saved: x, weight (ip[1] tells whether there is one), and the statistics
   the forward used, [C]. In training, under create_graph, the statistics are
   recomputed from x so that they carry x's graph; otherwise the saved ones
   serve (in eval they are the running statistics, constants here). */
static kdx_status batch_norm_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    kdx_tensor *x, *w = NULL, *sm, *si;
    KDX_TRY(kdx__saved(n, 0, &x));
    if (n->ip[1]) KDX_TRY(kdx__saved(n, 1, &w));
    KDX_TRY(kdx__saved(n, 2, &sm));
    KDX_TRY(kdx__saved(n, 3, &si));
    bool training = n->ip[0] != 0;
    if (training && !kdx_grad_enabled() && g->dtype == x->dtype) {
        /* a plain backward: one fused pass instead of a dozen tensor ops */
        int64_t M = kdx__numel(x->ndim, x->shape) / (x->shape[1] > 0 ? x->shape[1] : 1);
        return kdx__bn_grad(x, w, sm, si, g, (double)M, 1.0, NULL, want, gin);
    }
    int dims[KDX_MAX_DIMS], nd = 0;
    int64_t cshape[KDX_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        cshape[i] = i == 1 ? x->shape[1] : 1;
        if (i != 1) dims[nd++] = i;
    }
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *wc = w ? E_reshape(&S, w, x->ndim, cshape) : NULL, *rstd, *xhat, *r[3] = {NULL, NULL, NULL};
    if (training && kdx_grad_enabled()) {
        xhat = E_normalized(&S, x, dims, nd, n->p[0], &rstd);
    } else {
        rstd = E_reshape(&S, si, x->ndim, cshape);
        xhat = E_bin(&S, KDX_BIN_MUL, E_bin(&S, KDX_BIN_SUB, x, E_reshape(&S, sm, x->ndim, cshape)), rstd);
    }
    if (want[0])
        r[0] = training ? E_norm_grad_x(&S, g, xhat, rstd, wc, dims, nd)
                        : E_bin(&S, KDX_BIN_MUL, g, wc ? E_bin(&S, KDX_BIN_MUL, wc, rstd) : rstd);
    if (want[1]) r[1] = E_sum(&S, E_bin(&S, KDX_BIN_MUL, g, xhat), dims, nd, 0);
    if (want[2]) r[2] = E_sum(&S, g, dims, nd, 0);
    return hand_out(&S, 3, r, gin);
}

kdx_status kdx_batch_norm(const kdx_tensor *x, kdx_tensor *running_mean, kdx_tensor *running_var,
                          const kdx_tensor *weight, const kdx_tensor *bias, int training, double momentum,
                          double eps, kdx_tensor **out, kdx_tensor **save_mean, kdx_tensor **save_invstd)
{
    const kdx_tensor *ins[3] = {x, weight, bias};
    kdx_tensor *sm = NULL, *si = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = batch_norm_fwd(x, running_mean, running_var, weight, bias, training, momentum, eps, out, &sm, &si);
    kdx__grad_restore(was);
    if (s == KDX_OK && kdx__needs_node(3, ins)) {
        kdx_node *n;
        s = kdx__record("batch_norm", batch_norm_backward, 3, ins, out, &n);
        if (s == KDX_OK) {
            n->ip[0] = training != 0, n->ip[1] = weight != NULL;
            n->p[0] = eps;
            kdx__save(n, 0, x);
            if (weight) kdx__save(n, 1, weight);
            kdx__save(n, 2, sm);
            kdx__save(n, 3, si);
        }
    }
    if (s == KDX_OK && save_mean) *save_mean = sm;
    else kdx_tensor_release(sm);
    if (s == KDX_OK && save_invstd) *save_invstd = si;
    else kdx_tensor_release(si);
    return s;
}

/* ==== layer_norm ================================================================== */

/* One row of m elements: y = (x - mean) * rstd * w + b, w/b optional. */
#define DEF_LN_ROW(T, S)                                                                     \
    static void ln_row_##S(const T *x, T *y, int64_t m, const T *w, const T *b, double eps)  \
    {                                                                                        \
        double mean = run_sum_##S(x, m) / (double)m;                                          \
        double rstd = 1.0 / sqrt(run_sqdev_##S(x, m, mean) / (double)m + eps);               \
        for (int64_t k = 0; k < m; k++) {                                                    \
            double v = ((double)x[k] - mean) * rstd;                                         \
            if (w) v *= (double)w[k];                                                        \
            if (b) v += (double)b[k];                                                        \
            y[k] = (T)v;                                                                     \
        }                                                                                    \
    }
DEF_LN_ROW(float, f32)
DEF_LN_ROW(double, f64)

typedef struct ln_job {
    const char *x, *w, *b;
    char *y;
    int64_t m;
    double eps;
    kdx_dtype dt;
} ln_job;

static void ln_range(void *ud, int64_t lo, int64_t hi)
{
    const ln_job *j = ud;
    for (int64_t r = lo; r < hi; r++) {
        size_t off = (size_t)(r * j->m) * kdx_dtype_size(j->dt);
        if (j->dt == KDX_DTYPE_F32)
            ln_row_f32((const float *)(j->x + off), (float *)(j->y + off), j->m, (const float *)j->w,
                       (const float *)j->b, j->eps);
        else
            ln_row_f64((const double *)(j->x + off), (double *)(j->y + off), j->m, (const double *)j->w,
                       (const double *)j->b, j->eps);
    }
}

static kdx_status ln_check_param(const char *arg, const kdx_tensor *p, const kdx_tensor *x, int nnorm)
{
    const char *const fname = "layer_norm";
    if (!p) return KDX_OK;
    KDX_TRY(kdx__check_float(fname, arg, p));
    if (p->dtype != x->dtype)
        return kdx_fail(KDX_EDTYPE, "layer_norm: %s is %s but x is %s", arg, kdx_dtype_name(p->dtype),
                        kdx_dtype_name(x->dtype));
    int ok = p->ndim == nnorm;
    for (int i = 0; ok && i < nnorm; i++) ok = p->shape[i] == x->shape[x->ndim - nnorm + i];
    if (!ok) {
        char want[96];
        kdx_shape_str(nnorm, x->shape + x->ndim - nnorm, want, sizeof want);
        return kdx_fail(KDX_ESHAPE, "layer_norm: %s must have shape %s (the last %d dims of x), got %s", arg, want,
                        nnorm, kdx__shp(p));
    }
    return KDX_OK;
}

static kdx_status layer_norm_fwd(const kdx_tensor *x, int nnorm, const kdx_tensor *weight, const kdx_tensor *bias,
                                 double eps, kdx_tensor **out)
{
    const char *const fname = "layer_norm";
    KDX_TRY(kdx__check_float(fname, "x", x));
    if (!out) return kdx_fail(KDX_EINVAL, "layer_norm: out is NULL");
    if (nnorm < 1 || nnorm > x->ndim)
        return kdx_fail(KDX_EINVAL, "layer_norm: nnorm must be between 1 and %d for x of shape %s, got %d",
                        x->ndim, kdx__shp(x), nnorm);
    if (!(eps >= 0) || !isfinite(eps)) return kdx_fail(KDX_EINVAL, "layer_norm: eps must be >= 0, got %g", eps);
    KDX_TRY(ln_check_param("weight", weight, x, nnorm));
    KDX_TRY(ln_check_param("bias", bias, x, nnorm));
    int64_t m = 1, rows = 1;
    for (int i = 0; i < x->ndim; i++) {
        if (i < x->ndim - nnorm) rows *= x->shape[i];
        else m *= x->shape[i];
    }
    kdx_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL;
    kdx_status s = kdx_contiguous(x, &xc);
    if (s == KDX_OK && weight) s = kdx_contiguous(weight, &wc);
    if (s == KDX_OK && bias) s = kdx_contiguous(bias, &bc);
    if (s == KDX_OK) s = kdx__new(fname, x->dtype, x->ndim, x->shape, &y);
    if (s != KDX_OK) {
        KDX_RELEASE(xc, wc, bc, y);
        return s;
    }
    ln_job j = {kdx__base(xc), wc ? kdx__base(wc) : NULL, bc ? kdx__base(bc) : NULL, kdx__base(y), m, eps,
                x->dtype};
    if (m > 0) kdx__parallel_for(rows, kdx__grain(m), ln_range, &j);
    KDX_RELEASE(xc, wc, bc);
    *out = y;
    return KDX_OK;
}

/* Over the last ip[0] dims; weight's and bias's gradients are taken at x's
   shape and summed over the leading dims by the engine. */
static kdx_status layer_norm_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    kdx_tensor *x, *w = NULL;
    KDX_TRY(kdx__saved(n, 0, &x));
    if (n->ip[1]) KDX_TRY(kdx__saved(n, 1, &w));
    int nd = (int)n->ip[0], dims[KDX_MAX_DIMS];
    for (int i = 0; i < nd; i++) dims[i] = x->ndim - nd + i;
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *rstd, *xhat = E_normalized(&S, x, dims, nd, n->p[0], &rstd), *r[3] = {NULL, NULL, NULL};
    if (want[0]) r[0] = E_norm_grad_x(&S, g, xhat, rstd, w, dims, nd);
    if (want[1]) r[1] = E_bin(&S, KDX_BIN_MUL, g, xhat);
    if (want[2]) r[2] = g;
    return hand_out(&S, 3, r, gin);
}

kdx_status kdx_layer_norm(const kdx_tensor *x, int nnorm, const kdx_tensor *weight, const kdx_tensor *bias,
                          double eps, kdx_tensor **out)
{
    const kdx_tensor *ins[3] = {x, weight, bias};
    bool was = kdx__grad_pause();
    kdx_status s = layer_norm_fwd(x, nnorm, weight, bias, eps, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !kdx__needs_node(3, ins)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record("layer_norm", layer_norm_backward, 3, ins, out, &n));
    n->ip[0] = nnorm, n->ip[1] = weight != NULL;
    n->p[0] = eps;
    kdx__save(n, 0, x);
    if (weight) kdx__save(n, 1, weight);
    return KDX_OK;
}

/* ==== embedding ===================================================================== */

typedef struct emb_job {
    const int64_t *idx;
    const char *w;
    char *y;
    size_t row_bytes;
} emb_job;

static void emb_range(void *ud, int64_t lo, int64_t hi)
{
    const emb_job *j = ud;
    for (int64_t i = lo; i < hi; i++)
        memcpy(j->y + (size_t)i * j->row_bytes, j->w + (size_t)j->idx[i] * j->row_bytes, j->row_bytes);
}

static kdx_status embedding_fwd(const kdx_tensor *weight, const kdx_tensor *idx, kdx_tensor **out)
{
    const char *const fname = "embedding";
    KDX_TRY(kdx__check_float(fname, "weight", weight));
    KDX_TRY(kdx__arg(fname, "idx", idx));
    if (!out) return kdx_fail(KDX_EINVAL, "embedding: out is NULL");
    if (weight->ndim != 2) return kdx_fail(KDX_ESHAPE, "embedding: weight must be 2-D [V,D], got %s", kdx__shp(weight));
    if (idx->dtype != KDX_DTYPE_I64)
        return kdx_fail(KDX_EDTYPE, "embedding: idx must be int64, got %s", kdx_dtype_name(idx->dtype));
    if (idx->ndim + 1 > KDX_MAX_DIMS)
        return kdx_fail(KDX_ESHAPE, "embedding: idx of shape %s has too many dims (at most %d)", kdx__shp(idx),
                        KDX_MAX_DIMS - 1);
    int64_t V = weight->shape[0], D = weight->shape[1];
    kdx_tensor *ic = NULL, *wc = NULL, *y = NULL;
    KDX_TRY(kdx_contiguous(idx, &ic));
    const int64_t *iv = (const int64_t *)kdx__base(ic);
    int64_t n = kdx__numel(idx->ndim, idx->shape);
    for (int64_t i = 0; i < n; i++) {
        if (iv[i] < 0 || iv[i] >= V) {
            kdx_status s = kdx_fail(KDX_EINDEX, "embedding: index %lld (at flat position %lld of idx) is out of range "
                                    "for weight with %lld rows",
                                    (long long)iv[i], (long long)i, (long long)V);
            kdx_tensor_release(ic);
            return s;
        }
    }
    int64_t shape[KDX_MAX_DIMS];
    memcpy(shape, idx->shape, (size_t)idx->ndim * sizeof *shape);
    shape[idx->ndim] = D;
    kdx_status s = kdx_contiguous(weight, &wc);
    if (s == KDX_OK) s = kdx__new(fname, weight->dtype, idx->ndim + 1, shape, &y);
    if (s != KDX_OK) {
        KDX_RELEASE(ic, wc, y);
        return s;
    }
    emb_job j = {iv, kdx__base(wc), kdx__base(y), (size_t)D * kdx_dtype_size(weight->dtype)};
    if (D > 0) kdx__parallel_for(n, kdx__grain(D), emb_range, &j);
    KDX_RELEASE(ic, wc);
    *out = y;
    return KDX_OK;
}

/* Each row of g adds into the weight row its index picked: index_add into
   zeros [V, D] (whose own gradient, index_select, keeps higher orders). */
static kdx_status embedding_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_tensor *idx;
    KDX_TRY(kdx__saved(n, 0, &idx));
    const kdx_edge *e = &n->next[0];
    int64_t count = kdx__numel(idx->ndim, idx->shape), gshape[2] = {count, e->shape[1]};
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *z = E_zeros(&S, g->dtype, 2, e->shape), *r;
    kdx_tensor *flat = E_reshape(&S, idx, 1, &count), *rows = E_reshape(&S, g, 2, gshape);
    KDX_KEEP(&S, r, kdx_index_add(z, 0, flat, rows, 1, &kdx_o_));
    return kdx__scope_end(&S, r, &gin[0]);
}

kdx_status kdx_embedding(const kdx_tensor *weight, const kdx_tensor *idx, kdx_tensor **out)
{
    bool was = kdx__grad_pause();
    kdx_status s = embedding_fwd(weight, idx, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !kdx__needs_node(1, &weight)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record("embedding", embedding_backward, 1, &weight, out, &n));
    kdx__save(n, 0, idx);
    return KDX_OK;
}
