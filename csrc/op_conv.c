/* op_conv.c — conv2d on NCHW tensors by im2col + GEMM, one sample at a
   time: a sample's column matrix is small enough to stay in cache, and its
   GEMM writes straight into the output. The batch is spread over the
   engine's threads. The gradient is built from unfold, fold and matmul
   (op_unfold.c) when it must itself be differentiable, and from the same
   per-sample im2col/col2im and GEMMs otherwise. Semantics follow
   torch.nn.functional.conv2d. */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>

/* ==== conv2d ======================================================================= */

/* dst[l] += b for a row of n values. */
#define DEF_ADD_BIAS(T, S)                                               \
    static void add_bias_##S(T *dst, int64_t n, double b)                \
    {                                                                    \
        T tb = (T)b;                                                     \
        for (int64_t l = 0; l < n; l++) dst[l] += tb;                    \
    }
DEF_ADD_BIAS(float, f32)
DEF_ADD_BIAS(double, f64)

typedef struct conv_job {
    const char *x, *w, *bias;
    char *y;
    const kdx_conv_geom *g;
    int64_t O, groups;
    bool direct; /* 1x1, stride 1, no padding: the input is its own column matrix */
    kdx_dtype dt;
    atomic_bool failed; /* a worker could not get its column buffer */
} conv_job;

/* y[n] = W conv x[n] + bias for one sample, with col as scratch. Each GEMM
   writes straight into the sample's [O, OH*OW] block of y. */
static void conv_sample(const conv_job *j, int64_t n, char *col, char *xp)
{
    const kdx_conv_geom *g = j->g;
    size_t es = kdx_dtype_size(j->dt);
    int64_t L = g->OH * g->OW, Og = j->O / j->groups, K = g->C / j->groups * g->kh * g->kw;
    const char *xs = j->x + (size_t)(n * g->C * g->H * g->W) * es;
    char *ys = j->y + (size_t)(n * j->O * L) * es;
    const char *cm = xs;
    if (!j->direct) {
        kdx__im2col(xs, g, j->dt, xp, col);
        cm = col;
    }
    for (int64_t gi = 0; gi < j->groups; gi++) {
        const char *wg = j->w + (size_t)(gi * Og * K) * es, *cg = cm + (size_t)(gi * K * L) * es;
        char *yg = ys + (size_t)(gi * Og * L) * es;
        if (j->dt == KDX_DTYPE_F32)
            kdx__sgemm(false, false, Og, L, K, 1.0f, (const float *)wg, K, (const float *)cg, L, 0.0f, (float *)yg, L);
        else
            kdx__dgemm(false, false, Og, L, K, 1.0, (const double *)wg, K, (const double *)cg, L, 0.0, (double *)yg, L);
    }
    for (int64_t o = 0; j->bias && o < j->O; o++) {
        if (j->dt == KDX_DTYPE_F32) add_bias_f32((float *)ys + o * L, L, ((const float *)j->bias)[o]);
        else add_bias_f64((double *)ys + o * L, L, ((const double *)j->bias)[o]);
    }
}

/* Samples [lo, hi) with one column buffer of their own. Run over the batch
   in parallel, each worker's GEMMs stay on its thread (small products run
   best that way); run on one sample, im2col and the GEMM split themselves. */
static void conv_range(void *ud, int64_t lo, int64_t hi)
{
    conv_job *j = ud;
    const kdx_conv_geom *g = j->g;
    size_t es = kdx_dtype_size(j->dt);
    size_t colbytes = j->direct ? 0 : (size_t)(g->C * g->kh * g->kw * g->OH * g->OW) * es;
    /* The padded copy pays off when the column stride is 1 (see im2col). */
    size_t padbytes = j->direct || g->sw != 1 ? 0 : (size_t)(g->C * (g->H + 2 * g->ph) * (g->W + 2 * g->pw)) * es;
    char *col = colbytes ? kdx__malloc_raw(colbytes + padbytes) : NULL;
    if (colbytes && !col) {
        atomic_store(&j->failed, true);
        return;
    }
    char *xp = padbytes ? col + colbytes : NULL;
    if (xp) memset(xp, 0, padbytes); /* the border; the interior is rewritten per sample */
    for (int64_t n = lo; n < hi; n++) conv_sample(j, n, col, xp);
    kdx__free(col, colbytes + padbytes);
}

static kdx_status conv_check(const kdx_tensor *x, const kdx_tensor *w, const kdx_tensor *bias,
                             const kdx_conv_opts *o)
{
    const char *const fname = "conv2d";
    KDX_TRY(kdx__check_float(fname, "x", x));
    KDX_TRY(kdx__check_float(fname, "weight", w));
    if (w->dtype != x->dtype)
        return kdx_fail(KDX_EDTYPE, "conv2d: weight is %s but x is %s", kdx_dtype_name(w->dtype),
                        kdx_dtype_name(x->dtype));
    if (x->ndim != 4) return kdx_fail(KDX_ESHAPE, "conv2d: x must be 4-D [N,C,H,W], got %s", kdx__shp(x));
    if (w->ndim != 4)
        return kdx_fail(KDX_ESHAPE, "conv2d: weight must be 4-D [O,C/groups,kh,kw], got %s", kdx__shp(w));
    if (x->shape[1] < 1 || x->shape[2] < 1 || x->shape[3] < 1)
        return kdx_fail(KDX_ESHAPE, "conv2d: x %s has an empty channel or spatial dim", kdx__shp(x));
    if (w->shape[1] < 1 || w->shape[2] < 1 || w->shape[3] < 1)
        return kdx_fail(KDX_ESHAPE, "conv2d: weight %s has an empty input-channel or kernel dim", kdx__shp(w));
    KDX_TRY(kdx__check_pair(fname, "stride", o->stride, 1));
    KDX_TRY(kdx__check_pair(fname, "padding", o->padding, 0));
    KDX_TRY(kdx__check_pair(fname, "dilation", o->dilation, 1));
    if (o->groups < 1 || o->groups > KDX_OPT_MAX)
        return kdx_fail(KDX_EINVAL, "conv2d: groups must be >= 1, got %lld", (long long)o->groups);
    if (w->shape[1] * o->groups != x->shape[1])
        return kdx_fail(KDX_ESHAPE, "conv2d: weight %s with groups=%lld expects %lld input channels, but x %s has %lld",
                        kdx__shp(w), (long long)o->groups, (long long)(w->shape[1] * o->groups), kdx__shp(x),
                        (long long)x->shape[1]);
    if (w->shape[0] % o->groups != 0)
        return kdx_fail(KDX_ESHAPE, "conv2d: weight %s has %lld output channels, not divisible by groups=%lld",
                        kdx__shp(w), (long long)w->shape[0], (long long)o->groups);
    if (bias) {
        KDX_TRY(kdx__check_float(fname, "bias", bias));
        if (bias->dtype != x->dtype)
            return kdx_fail(KDX_EDTYPE, "conv2d: bias is %s but x is %s", kdx_dtype_name(bias->dtype),
                            kdx_dtype_name(x->dtype));
        if (bias->ndim != 1 || bias->shape[0] != w->shape[0])
            return kdx_fail(KDX_ESHAPE, "conv2d: bias must have shape [%lld], got %s", (long long)w->shape[0],
                            kdx__shp(bias));
    }
    for (int a = 0; a < 2; a++) {
        int64_t in = x->shape[2 + a] + 2 * o->padding[a], k = w->shape[2 + a];
        /* dilation*(k-1)+1 > in, written so that it cannot overflow */
        if (k - 1 > (in - 1) / o->dilation[a])
            return kdx_fail(KDX_ESHAPE,
                            "conv2d: padded input %s (padding (%lld,%lld)) is smaller than the kernel of weight %s "
                            "(dilation (%lld,%lld))",
                            kdx__shp(x), (long long)o->padding[0], (long long)o->padding[1], kdx__shp(w),
                            (long long)o->dilation[0], (long long)o->dilation[1]);
    }
    return KDX_OK;
}

kdx_conv_opts kdx_conv_opts_default(void)
{
    kdx_conv_opts o = {{1, 1}, {0, 0}, {1, 1}, 1};
    return o;
}

static kdx_status conv2d_fwd(const kdx_tensor *x, const kdx_tensor *w, const kdx_tensor *bias, const kdx_conv_opts *o,
                             kdx_tensor **out)
{
    const char *const fname = "conv2d";
    KDX_TRY(conv_check(x, w, bias, o));
    if (!out) return kdx_fail(KDX_EINVAL, "conv2d: out is NULL");
    int64_t N = x->shape[0], O = w->shape[0];
    kdx_conv_geom g = {x->shape[1], x->shape[2], x->shape[3], w->shape[2], w->shape[3], 0, 0,
                   o->stride[0], o->stride[1], o->padding[0], o->padding[1], o->dilation[0], o->dilation[1]};
    g.OH = (g.H + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
    g.OW = (g.W + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
    int64_t oshape[4] = {N, O, g.OH, g.OW};
    kdx_tensor *y;
    KDX_TRY(kdx__new_raw(fname, x->dtype, 4, oshape, &y)); /* every element is written by a GEMM */
    if (kdx__numel(4, oshape) == 0) {
        *out = y;
        return KDX_OK;
    }
    int64_t L = g.OH * g.OW, KC = g.C * g.kh * g.kw;
    if (L > INT64_MAX / 8 / KC) {
        kdx_tensor_release(y);
        return kdx_fail(KDX_ENOMEM, "conv2d: column matrix for x %s and weight %s is too large", kdx__shp(x),
                        kdx__shp(w));
    }
    kdx_tensor *xc = NULL, *wc = NULL, *bc = NULL;
    kdx_status s = kdx_contiguous(x, &xc);
    if (s == KDX_OK) s = kdx_contiguous(w, &wc);
    if (s == KDX_OK && bias) s = kdx_contiguous(bias, &bc);
    if (s == KDX_OK) {
        bool direct = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
        conv_job j = {kdx__base(xc), kdx__base(wc), bc ? kdx__base(bc) : NULL, kdx__base(y), &g, O, o->groups,
                      direct, x->dtype, false};
        /* One sample per task when the batch can keep every thread busy. */
        int64_t per_task = N >= kdx_get_num_threads() ? 1 : N;
        kdx__parallel_for(N, per_task, conv_range, &j);
        if (atomic_load(&j.failed))
            s = kdx_fail(KDX_ENOMEM, "conv2d: out of memory for the column matrix of x %s and weight %s",
                         kdx__shp(x), kdx__shp(w));
    }
    KDX_RELEASE(xc, wc, bc);
    if (s != KDX_OK) {
        kdx_tensor_release(y);
        return s;
    }
    *out = y;
    return KDX_OK;
}

/* ---- gradient ----
 * With G groups, K = C/G*kh*kw and L = OH*OW, per group:
 *   d weight = sum over the batch of g [Og, L] @ unfold(x)^T [L, K],
 *   d x      = fold(W^T [K, Og] @ g [Og, L]),   d bias = g summed over N, H, W.
 * Under create_graph these are written with unfold, fold and matmul, which
 * record themselves, so second derivatives follow. A plain backward pass
 * computes the same products one sample at a time instead, keeping the
 * column matrix in a scratch buffer rather than in batch-sized tensors. */

static kdx_status conv_grads_recorded(const kdx_tensor *x, const kdx_tensor *w, const kdx_tensor *g,
                                      const kdx_conv_opts *o, const bool *want, kdx_tensor **gx, kdx_tensor **gw)
{
    int64_t N = x->shape[0], C = x->shape[1], O = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    int64_t G = o->groups, Og = O / G, K = C / G * kh * kw, L = g->shape[2] * g->shape[3];
    kdx_scope S = KDX_SCOPE;
    int64_t gsh[4] = {N, G, Og, L};
    kdx_tensor *gr = E_reshape(&S, g, 4, gsh), *dx = NULL, *dw = NULL;
    if (want[0]) {
        int64_t wsh[3] = {G, Og, K}, csh[3] = {N, C * kh * kw, L};
        kdx_tensor *wt = E_tr(&S, E_reshape(&S, w, 3, wsh), -1, -2);           /* [G, K, Og] */
        kdx_tensor *cols = E_reshape(&S, E_mm(&S, wt, gr), 3, csh);            /* [N, G, K, L] */
        KDX_KEEP(&S, dx, kdx_fold(cols, x->shape[2], x->shape[3], kh, kw, o, &kdx_o_));
    }
    if (want[1]) {
        /* per sample [Og, L] @ [L, K] (a transposed view: no copy), summed over the batch */
        int64_t ush[4] = {N, G, K, L};
        static const int batch[1] = {0};
        kdx_tensor *u;
        KDX_KEEP(&S, u, kdx_unfold(x, kh, kw, o, &kdx_o_));
        kdx_tensor *per = E_mm(&S, gr, E_tr(&S, E_reshape(&S, u, 4, ush), -1, -2)); /* [N, G, Og, K] */
        dw = E_reshape(&S, E_sum(&S, per, batch, 1, 0), w->ndim, w->shape);
    }
    if (S.s == KDX_OK) {
        *gx = dx ? kdx_tensor_retain(dx) : NULL;
        *gw = dw ? kdx_tensor_retain(dw) : NULL;
    }
    return kdx__scope_free(&S);
}

/* c = op(a) op(b) + beta c in x's dtype (row-major, see kdx__sgemm). */
static void gemm(kdx_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const char *a, int64_t lda,
                 const char *b, int64_t ldb, double beta, char *c, int64_t ldc)
{
    if (dt == KDX_DTYPE_F32)
        kdx__sgemm(ta, tb, m, n, k, 1.0f, (const float *)a, lda, (const float *)b, ldb, (float)beta, (float *)c, ldc);
    else
        kdx__dgemm(ta, tb, m, n, k, 1.0, (const double *)a, lda, (const double *)b, ldb, beta, (double *)c, ldc);
}

static kdx_status conv_grads_direct(const kdx_tensor *x, const kdx_tensor *w, const kdx_tensor *g, int64_t G,
                                    const kdx_conv_geom *geo, const bool *want, kdx_tensor **gx, kdx_tensor **gw)
{
    const char *const fname = "conv2d";
    kdx_dtype dt = x->dtype;
    int64_t N = x->shape[0], O = w->shape[0], Og = O / G, K = geo->C / G * geo->kh * geo->kw;
    int64_t L = geo->OH * geo->OW, CHW = geo->C * geo->H * geo->W;
    size_t es = kdx_dtype_size(dt), colbytes = (size_t)(G * K * L) * es;
    kdx_tensor *xc = NULL, *wc = NULL, *gc = NULL, *dx = NULL, *dw = NULL;
    char *col = colbytes ? kdx__malloc_raw(colbytes) : NULL;
    kdx_status s = colbytes && !col ? kdx_fail(KDX_ENOMEM, "conv2d: out of memory for the backward pass") : KDX_OK;
    if (s == KDX_OK) s = kdx_contiguous(g, &gc);
    if (s == KDX_OK && want[0]) s = kdx_contiguous(w, &wc);
    if (s == KDX_OK && want[0]) s = kdx__new(fname, dt, 4, x->shape, &dx);
    if (s == KDX_OK && want[1]) s = kdx_contiguous(x, &xc);
    if (s == KDX_OK && want[1]) s = kdx__new(fname, dt, 4, w->shape, &dw);
    for (int64_t n = 0; s == KDX_OK && col && n < N; n++) {
        const char *gn = kdx__base(gc) + (size_t)(n * O * L) * es;
        if (want[1]) {
            kdx__im2col(kdx__base(xc) + (size_t)(n * CHW) * es, geo, dt, NULL, col);
            for (int64_t gi = 0; gi < G; gi++)
                gemm(dt, false, true, Og, K, L, gn + (size_t)(gi * Og * L) * es, L, col + (size_t)(gi * K * L) * es, L,
                     1, kdx__base(dw) + (size_t)(gi * Og * K) * es, K);
        }
        if (want[0]) {
            for (int64_t gi = 0; gi < G; gi++)
                gemm(dt, true, false, K, L, Og, kdx__base(wc) + (size_t)(gi * Og * K) * es, K,
                     gn + (size_t)(gi * Og * L) * es, L, 0, col + (size_t)(gi * K * L) * es, L);
            kdx__col2im(col, geo, dt, kdx__base(dx) + (size_t)(n * CHW) * es);
        }
    }
    kdx__free(col, colbytes);
    KDX_RELEASE(xc, wc, gc);
    if (s != KDX_OK) {
        KDX_RELEASE(dx, dw);
        return s;
    }
    *gx = dx, *gw = dw;
    return KDX_OK;
}

static kdx_status conv2d_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    kdx_tensor *x, *w;
    KDX_TRY(kdx__saved(n, 0, &x));
    KDX_TRY(kdx__saved(n, 1, &w));
    kdx_conv_opts o = {{n->ip[0], n->ip[1]}, {n->ip[2], n->ip[3]}, {n->ip[4], n->ip[5]}, n->ip[6]};
    if (want[0] || want[1]) {
        if (kdx_grad_enabled() || g->dtype != x->dtype) {
            KDX_TRY(conv_grads_recorded(x, w, g, &o, want, &gin[0], &gin[1]));
        } else {
            kdx_conv_geom geo = {x->shape[1], x->shape[2], x->shape[3], w->shape[2], w->shape[3], g->shape[2],
                                 g->shape[3], o.stride[0], o.stride[1], o.padding[0], o.padding[1], o.dilation[0],
                                 o.dilation[1]};
            KDX_TRY(conv_grads_direct(x, w, g, o.groups, &geo, want, &gin[0], &gin[1]));
        }
    }
    if (!want[2]) return KDX_OK;
    /* H, W first: they are the trailing dims, so no reordering copy; then N. */
    static const int hw[2] = {2, 3}, n0[1] = {0};
    kdx_tensor *per;
    KDX_TRY(kdx_reduce(KDX_RED_SUM, g, hw, 2, 0, &per));
    kdx_status s = kdx_reduce(KDX_RED_SUM, per, n0, 1, 0, &gin[2]);
    kdx_tensor_release(per);
    return s;
}

kdx_status kdx_conv2d(const kdx_tensor *x, const kdx_tensor *w, const kdx_tensor *bias, const kdx_conv_opts *o,
                      kdx_tensor **out)
{
    kdx_conv_opts def = kdx_conv_opts_default();
    if (!o) o = &def;
    const kdx_tensor *ins[3] = {x, w, bias};
    bool was = kdx__grad_pause();
    kdx_status s = conv2d_fwd(x, w, bias, o, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !kdx__needs_node(3, ins)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record("conv2d", conv2d_backward, 3, ins, out, &n));
    int64_t ip[7] = {o->stride[0], o->stride[1], o->padding[0], o->padding[1], o->dilation[0], o->dilation[1],
                     o->groups};
    memcpy(n->ip, ip, sizeof ip);
    kdx__save(n, 0, x);
    kdx__save(n, 1, w);
    return KDX_OK;
}
