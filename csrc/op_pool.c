/* op_pool.c — max, average and adaptive-average pooling on NCHW tensors,
   with PyTorch's output-size, padding and divisor rules, and their
   gradients. Max pooling's gradient scatters g to the saved argmax
   positions with scatter_add. The average poolings are linear: each has an
   adjoint kernel that spreads g back over its windows, recorded as an op
   whose own gradient is the pooling again, so every order of derivative
   stays in the pair. */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>

/* ==== pooling ====================================================================== */

typedef struct pool_geom {
    int64_t H, W, OH, OW;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    int count_include_pad;
} pool_geom;

kdx_pool_opts kdx_pool_opts_default(int64_t kh, int64_t kw)
{
    kdx_pool_opts o = {{kh, kw}, {kh, kw}, {0, 0}, {1, 1}, 0, 1};
    return o;
}

/* PyTorch's pooling_output_shape: floor or ceil division, and in ceil mode
   the last window must start inside the input or its left padding. */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t p, int64_t s, int64_t d, int ceil_mode)
{
    int64_t num = in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
    int64_t o = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
    if (ceil_mode && o > 0 && (o - 1) * s >= in + p) o--;
    return o;
}


/* The geometry of pooling H x W planes with o (checked); x names the input in messages. */
static kdx_status pool_geom_of(const char *fname, const kdx_tensor *x, int64_t H, int64_t W, const kdx_pool_opts *o,
                               int is_avg, pool_geom *g)
{
    if (!o) return kdx_fail(KDX_EINVAL, "%s: options are NULL", fname);
    KDX_TRY(kdx__check_pair(fname, "kernel", o->kernel, 1));
    KDX_TRY(kdx__check_pair(fname, "stride", o->stride, 1));
    KDX_TRY(kdx__check_pair(fname, "padding", o->padding, 0));
    KDX_TRY(kdx__check_pair(fname, "dilation", o->dilation, 1));
    if (is_avg && (o->dilation[0] != 1 || o->dilation[1] != 1))
        return kdx_fail(KDX_EINVAL, "%s: dilation must be 1, got (%lld,%lld)", fname, (long long)o->dilation[0],
                        (long long)o->dilation[1]);
    if (o->padding[0] > o->kernel[0] / 2 || o->padding[1] > o->kernel[1] / 2)
        return kdx_fail(KDX_EINVAL, "%s: padding (%lld,%lld) must be at most half the kernel size (%lld,%lld)", fname,
                        (long long)o->padding[0], (long long)o->padding[1], (long long)o->kernel[0],
                        (long long)o->kernel[1]);
    pool_geom p = {H, W, 0, 0, o->kernel[0], o->kernel[1], o->stride[0], o->stride[1], o->padding[0],
                   o->padding[1], o->dilation[0], o->dilation[1], o->count_include_pad};
    p.OH = pool_out_size(H, p.kh, p.ph, p.sh, p.dh, o->ceil_mode);
    p.OW = pool_out_size(W, p.kw, p.pw, p.sw, p.dw, o->ceil_mode);
    if (p.OH < 1 || p.OW < 1)
        return kdx_fail(KDX_ESHAPE, "%s: output size %lldx%lld is too small: x %s, kernel (%lld,%lld), padding (%lld,%lld)",
                        fname, (long long)p.OH, (long long)p.OW, kdx__shp(x), (long long)p.kh, (long long)p.kw,
                        (long long)p.ph, (long long)p.pw);
    *g = p;
    return KDX_OK;
}

static kdx_status pool_setup(const char *fname, const kdx_tensor *x, const kdx_pool_opts *o, int is_avg,
                             pool_geom *g)
{
    KDX_TRY(kdx__check_planes(fname, x));
    return pool_geom_of(fname, x, x->shape[x->ndim - 2], x->shape[x->ndim - 1], o, is_avg, g);
}

/* Max over each window; padding counts as -inf, NaN wins (the last NaN seen),
   and the index is the flat position h*W+w in the input plane, as PyTorch. */
#define DEF_MAXPOOL_PLANE(T, S)                                                             \
    static void maxpool_plane_##S(const T *in, T *out, int64_t *idx, const pool_geom *g)    \
    {                                                                                       \
        for (int64_t oh = 0; oh < g->OH; oh++)                                              \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                        \
                int64_t h0 = oh * g->sh - g->ph, w0 = ow * g->sw - g->pw;                   \
                int64_t h1 = kdx__min64(h0 + (g->kh - 1) * g->dh + 1, g->H);                     \
                int64_t w1 = kdx__min64(w0 + (g->kw - 1) * g->dw + 1, g->W);                     \
                if (h0 < 0) h0 += (-h0 + g->dh - 1) / g->dh * g->dh;                        \
                if (w0 < 0) w0 += (-w0 + g->dw - 1) / g->dw * g->dw;                        \
                T best = (T)-INFINITY;                                                      \
                int64_t bi = h0 * g->W + w0;                                                \
                for (int64_t h = h0; h < h1; h += g->dh)                                    \
                    for (int64_t w = w0; w < w1; w += g->dw) {                              \
                        T v = in[h * g->W + w];                                             \
                        int take = (v > best) | (v != v);                                   \
                        best = take ? v : best;                                             \
                        bi = take ? h * g->W + w : bi;                                      \
                    }                                                                       \
                out[oh * g->OW + ow] = best;                                                \
                if (idx) idx[oh * g->OW + ow] = bi;                                         \
            }                                                                               \
    }
DEF_MAXPOOL_PLANE(float, f32)
DEF_MAXPOOL_PLANE(double, f64)

/* The common 2x2, stride 2 window with no padding or dilation, unrolled: the
   general loop above spends most of its time on window bookkeeping. Same
   choice on ties (the first) and NaN (the last NaN) as the general loop. */
#define DEF_MAXPOOL_2X2(T, S)                                                                \
    static void maxpool_2x2_##S(const T *in, T *out, int64_t *idx, const pool_geom *g)       \
    {                                                                                        \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                             \
            const T *r0 = in + 2 * oh * g->W, *r1 = r0 + g->W;                               \
            T *o = out + oh * g->OW;                                                         \
            int64_t base = 2 * oh * g->W;                                                    \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                         \
                int64_t w = 2 * ow;                                                          \
                T v[4] = {r0[w], r0[w + 1], r1[w], r1[w + 1]};                               \
                int64_t at[4] = {base + w, base + w + 1, base + g->W + w, base + g->W + w + 1}; \
                T best = v[0];                                                               \
                int k = 0;                                                                   \
                for (int i = 1; i < 4; i++) { /* branch-free: random data defeats prediction */ \
                    int take = (v[i] > best) | (v[i] != v[i]);                               \
                    best = take ? v[i] : best;                                               \
                    k = take ? i : k;                                                        \
                }                                                                            \
                o[ow] = best;                                                                \
                if (idx) idx[oh * g->OW + ow] = at[k];                                       \
            }                                                                                \
        }                                                                                    \
    }
DEF_MAXPOOL_2X2(float, f32)
DEF_MAXPOOL_2X2(double, f64)

static bool is_plain_2x2(const pool_geom *g)
{
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 && g->dh == 1 &&
           g->dw == 1 && 2 * g->OH <= g->H && 2 * g->OW <= g->W;
}

/* Window (oh, ow) of an average pool clipped to the input, [h0,h1) x [w0,w1),
   and its divisor: the window clipped to the padded input (count_include_pad)
   or to the input itself. False for a window wholly in the padding. */
static bool avg_window(const pool_geom *g, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1,
                       int64_t *div)
{
    int64_t a = oh * g->sh - g->ph, b = ow * g->sw - g->pw;
    int64_t c = kdx__min64(a + g->kh, g->H + g->ph), d = kdx__min64(b + g->kw, g->W + g->pw);
    int64_t padded = (c - a) * (d - b);
    *h0 = kdx__max64(a, 0), *w0 = kdx__max64(b, 0);
    *h1 = kdx__min64(c, g->H), *w1 = kdx__min64(d, g->W);
    *div = g->count_include_pad ? padded : (*h1 - *h0) * (*w1 - *w0);
    return *h0 < *h1 && *w0 < *w1;
}

/* Mean over each window; a window wholly in the padding gives 0, as PyTorch. */
#define DEF_AVGPOOL_PLANE(T, S)                                                             \
    static void avgpool_plane_##S(const T *in, T *out, const pool_geom *g)                  \
    {                                                                                       \
        for (int64_t oh = 0; oh < g->OH; oh++)                                              \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                        \
                int64_t h0, h1, w0, w1, div;                                                \
                double s = 0;                                                               \
                if (!avg_window(g, oh, ow, &h0, &h1, &w0, &w1, &div)) {                     \
                    out[oh * g->OW + ow] = 0;                                               \
                    continue;                                                               \
                }                                                                           \
                for (int64_t h = h0; h < h1; h++)                                           \
                    for (int64_t w = w0; w < w1; w++) s += in[h * g->W + w];                \
                out[oh * g->OW + ow] = (T)(s / (double)div);                                \
            }                                                                               \
    }
DEF_AVGPOOL_PLANE(float, f32)
DEF_AVGPOOL_PLANE(double, f64)

/* The adjoint: each output's gradient, divided as the forward divided, is
   added to every input its window covered (gx zeroed by the caller). */
#define DEF_AVGPOOL_ADJOINT(T, S)                                                           \
    static void avgpool_adjoint_##S(const T *gy, T *gx, const pool_geom *g)                 \
    {                                                                                       \
        for (int64_t oh = 0; oh < g->OH; oh++)                                              \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                        \
                int64_t h0, h1, w0, w1, div;                                                \
                if (!avg_window(g, oh, ow, &h0, &h1, &w0, &w1, &div)) continue;             \
                T v = (T)((double)gy[oh * g->OW + ow] / (double)div);                       \
                for (int64_t h = h0; h < h1; h++)                                           \
                    for (int64_t w = w0; w < w1; w++) gx[h * g->W + w] += v;                \
            }                                                                               \
    }
DEF_AVGPOOL_ADJOINT(float, f32)
DEF_AVGPOOL_ADJOINT(double, f64)

/* Adaptive bins: [floor(i*in/out), ceil((i+1)*in/out)), in overflow-safe form. */
static int64_t bin_start(int64_t i, int64_t out, int64_t in) { return (i / out) * in + ((i % out) * in) / out; }
static int64_t bin_end(int64_t i, int64_t out, int64_t in) { return 1 + ((i + 1) * in - 1) / out; }

#define DEF_ADAPTIVE_PLANE(T, S)                                                            \
    static void adaptive_plane_##S(const T *in, T *out, const pool_geom *g)                 \
    {                                                                                       \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                            \
            int64_t h0 = bin_start(oh, g->OH, g->H), h1 = bin_end(oh, g->OH, g->H);         \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                        \
                int64_t w0 = bin_start(ow, g->OW, g->W), w1 = bin_end(ow, g->OW, g->W);     \
                double s = 0;                                                               \
                for (int64_t h = h0; h < h1; h++)                                           \
                    for (int64_t w = w0; w < w1; w++) s += in[h * g->W + w];                \
                out[oh * g->OW + ow] = (T)(s / (double)((h1 - h0) * (w1 - w0)));            \
            }                                                                               \
        }                                                                                   \
    }
DEF_ADAPTIVE_PLANE(float, f32)
DEF_ADAPTIVE_PLANE(double, f64)

#define DEF_ADAPTIVE_ADJOINT(T, S)                                                          \
    static void adaptive_adjoint_##S(const T *gy, T *gx, const pool_geom *g)                \
    {                                                                                       \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                            \
            int64_t h0 = bin_start(oh, g->OH, g->H), h1 = bin_end(oh, g->OH, g->H);         \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                        \
                int64_t w0 = bin_start(ow, g->OW, g->W), w1 = bin_end(ow, g->OW, g->W);     \
                T v = (T)((double)gy[oh * g->OW + ow] / (double)((h1 - h0) * (w1 - w0)));   \
                for (int64_t h = h0; h < h1; h++)                                           \
                    for (int64_t w = w0; w < w1; w++) gx[h * g->W + w] += v;                \
            }                                                                               \
        }                                                                                   \
    }
DEF_ADAPTIVE_ADJOINT(float, f32)
DEF_ADAPTIVE_ADJOINT(double, f64)

/* The adjoints read planes of OH x OW and write planes of H x W. */
typedef enum plane_op { PLANE_MAX, PLANE_AVG, PLANE_ADAPTIVE, PLANE_AVG_ADJOINT, PLANE_ADAPTIVE_ADJOINT } plane_op;

static bool is_adjoint(plane_op op) { return op == PLANE_AVG_ADJOINT || op == PLANE_ADAPTIVE_ADJOINT; }

typedef struct pool_job {
    plane_op op;
    const char *x;
    char *y;
    int64_t *idx;
    const pool_geom *g;
    kdx_dtype dt;
} pool_job;

static void pool_range(void *ud, int64_t lo, int64_t hi)
{
    const pool_job *j = ud;
    const pool_geom *g = j->g;
    size_t es = kdx_dtype_size(j->dt);
    int64_t big = g->H * g->W, small = g->OH * g->OW;
    int64_t isz = is_adjoint(j->op) ? small : big, osz = is_adjoint(j->op) ? big : small;
    for (int64_t p = lo; p < hi; p++) {
        const char *in = j->x + (size_t)(p * isz) * es;
        char *out = j->y + (size_t)(p * osz) * es;
        int64_t *ix = j->idx ? j->idx + p * g->OH * g->OW : NULL;
        bool f = j->dt == KDX_DTYPE_F32;
        switch (j->op) {
        case PLANE_MAX:
            if (is_plain_2x2(g)) {
                if (f) maxpool_2x2_f32((const float *)in, (float *)out, ix, g);
                else maxpool_2x2_f64((const double *)in, (double *)out, ix, g);
            } else if (f) {
                maxpool_plane_f32((const float *)in, (float *)out, ix, g);
            } else {
                maxpool_plane_f64((const double *)in, (double *)out, ix, g);
            }
            break;
        case PLANE_AVG:
            if (f) avgpool_plane_f32((const float *)in, (float *)out, g);
            else avgpool_plane_f64((const double *)in, (double *)out, g);
            break;
        case PLANE_ADAPTIVE:
            if (f) adaptive_plane_f32((const float *)in, (float *)out, g);
            else adaptive_plane_f64((const double *)in, (double *)out, g);
            break;
        case PLANE_AVG_ADJOINT:
            if (f) avgpool_adjoint_f32((const float *)in, (float *)out, g);
            else avgpool_adjoint_f64((const double *)in, (double *)out, g);
            break;
        case PLANE_ADAPTIVE_ADJOINT:
            if (f) adaptive_adjoint_f32((const float *)in, (float *)out, g);
            else adaptive_adjoint_f64((const double *)in, (double *)out, g);
            break;
        }
    }
}

/* Runs op over every plane of x into new tensors of x's leading shape and
   g's output plane, or its input plane for an adjoint (indices too when
   asked for). */
static kdx_status pool_run(const char *fname, plane_op op, const kdx_tensor *x, const pool_geom *g,
                           kdx_tensor **out, kdx_tensor **indices)
{
    int64_t shape[4];
    int nd = x->ndim;
    memcpy(shape, x->shape, (size_t)nd * sizeof *shape);
    shape[nd - 2] = is_adjoint(op) ? g->H : g->OH;
    shape[nd - 1] = is_adjoint(op) ? g->W : g->OW;
    kdx_tensor *xc = NULL, *y = NULL, *ix = NULL;
    kdx_status s = kdx_contiguous(x, &xc);
    if (s == KDX_OK) s = kdx__new(fname, x->dtype, nd, shape, &y);
    if (s == KDX_OK && indices) s = kdx__new(fname, KDX_DTYPE_I64, nd, shape, &ix);
    if (s != KDX_OK) {
        KDX_RELEASE(xc, y, ix);
        return s;
    }
    int64_t planes = kdx__numel(nd - 2, x->shape);
    pool_job j = {op, kdx__base(xc), kdx__base(y), ix ? (int64_t *)kdx__base(ix) : NULL, g, x->dtype};
    kdx__parallel_for(planes, kdx__grain(kdx__max64(g->OH * g->OW, g->H * g->W) * 4), pool_range, &j);
    kdx_tensor_release(xc);
    *out = y;
    if (indices) *indices = ix;
    return KDX_OK;
}

static kdx_status max_pool2d_fwd(const kdx_tensor *x, const kdx_pool_opts *o, kdx_tensor **out, kdx_tensor **indices)
{
    pool_geom g;
    KDX_TRY(pool_setup("max_pool2d", x, o, 0, &g));
    if (!out) return kdx_fail(KDX_EINVAL, "max_pool2d: out is NULL");
    return pool_run("max_pool2d", PLANE_MAX, x, &g, out, indices);
}

static kdx_status avg_pool2d_fwd(const kdx_tensor *x, const kdx_pool_opts *o, kdx_tensor **out)
{
    pool_geom g;
    KDX_TRY(pool_setup("avg_pool2d", x, o, 1, &g));
    if (!out) return kdx_fail(KDX_EINVAL, "avg_pool2d: out is NULL");
    return pool_run("avg_pool2d", PLANE_AVG, x, &g, out, NULL);
}

static kdx_status adaptive_check(const char *fname, int64_t oh, int64_t ow)
{
    if (oh < 1 || ow < 1 || oh > KDX_OPT_MAX || ow > KDX_OPT_MAX)
        return kdx_fail(KDX_EINVAL, "%s: output size must be >= 1, got %lldx%lld", fname, (long long)oh,
                        (long long)ow);
    return KDX_OK;
}

static kdx_status adaptive_avg_pool2d_fwd(const kdx_tensor *x, int64_t oh, int64_t ow, kdx_tensor **out)
{
    const char *const fname = "adaptive_avg_pool2d";
    KDX_TRY(kdx__check_planes(fname, x));
    if (!out) return kdx_fail(KDX_EINVAL, "adaptive_avg_pool2d: out is NULL");
    KDX_TRY(adaptive_check(fname, oh, ow));
    pool_geom g = {x->shape[x->ndim - 2], x->shape[x->ndim - 1], oh, ow, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    return pool_run(fname, PLANE_ADAPTIVE, x, &g, out, NULL);
}

/* ==== gradients ==================================================================== */

/* Pooling options in a node's ip[0..9]. */
static void opts_to_ip(kdx_node *n, const kdx_pool_opts *o)
{
    int64_t v[10] = {o->kernel[0], o->kernel[1], o->stride[0],   o->stride[1], o->padding[0],
                     o->padding[1], o->dilation[0], o->dilation[1], o->ceil_mode, o->count_include_pad};
    memcpy(n->ip, v, sizeof v);
}

static kdx_pool_opts opts_from_ip(const kdx_node *n)
{
    kdx_pool_opts o = {{n->ip[0], n->ip[1]}, {n->ip[2], n->ip[3]}, {n->ip[4], n->ip[5]}, {n->ip[6], n->ip[7]},
                       (int)n->ip[8], (int)n->ip[9]};
    return o;
}

/* Size of plane dim k (0: height, 1: width) of a node's first input. */
static int64_t in_plane(const kdx_node *n, int k) { return n->next[0].shape[n->next[0].ndim - 2 + k]; }

/* Records op (when its input requires grad) with the options in ip. */
static kdx_status record_pool(const char *name, kdx_backward_fn bw, const kdx_tensor *x, const kdx_pool_opts *o,
                              kdx_status s, kdx_tensor **out)
{
    if (s != KDX_OK || !kdx__needs_node(1, &x)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record(name, bw, 1, &x, out, &n));
    if (o) opts_to_ip(n, o);
    return KDX_OK;
}

/* max_pool2d: g goes to the argmax of each window. On planes flattened to
   [P, H*W] that is a scatter_add of g [P, OH*OW] at the saved indices, whose
   gradient (a gather) carries the higher orders. */
static kdx_status max_pool2d_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_tensor *idx;
    KDX_TRY(kdx__saved(n, 0, &idx));
    const kdx_edge *e = &n->next[0];
    int64_t HW = in_plane(n, 0) * in_plane(n, 1), OHW = g->shape[g->ndim - 2] * g->shape[g->ndim - 1];
    int64_t P = kdx__numel(e->ndim - 2, e->shape), zs[2] = {P, HW}, gs[2] = {P, OHW};
    kdx_scope S = KDX_SCOPE;
    if (kdx__backward_rule() == KDX__RULE_RESCALE) { /* DeepLift: rescale g before routing it */
        kdx_tensor *u;
        if (!n->saved[1]) return kdx_fail(KDX_ESTATE, "deeplift: max_pool2d was recorded outside the DeepLift pass");
        KDX_TRY(kdx__saved(n, 1, &u));
        kdx_tensor *scaled = NULL;
        KDX_KEEP(&S, scaled, kdx__rescale_maxpool(u, idx, g, &kdx_o_));
        if (!scaled) return kdx__scope_free(&S);
        g = scaled;
    }
    kdx_tensor *r, *z = E_zeros(&S, g->dtype, 2, zs);
    if (kdx_grad_enabled()) {
        KDX_KEEP(&S, r, kdx_scatter_add(z, 1, E_reshape(&S, idx, 2, gs), E_reshape(&S, g, 2, gs), &kdx_o_));
    } else if (z) { /* nothing records: add into the fresh zeros in place, no copy */
        kdx_tensor *ig = E_reshape(&S, idx, 2, gs), *gg = E_reshape(&S, g, 2, gs);
        if (ig && gg && (S.s = kdx_scatter_add_(z, 1, ig, gg)) == KDX_OK) r = z;
        else r = NULL;
    } else {
        r = NULL;
    }
    return kdx__scope_end(&S, E_reshape(&S, r, e->ndim, e->shape), &gin[0]);
}

kdx_status kdx_max_pool2d(const kdx_tensor *x, const kdx_pool_opts *o, kdx_tensor **out, kdx_tensor **indices)
{
    bool rec = kdx__needs_node(1, &x);
    kdx_tensor *ix = NULL, *mine = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = max_pool2d_fwd(x, o, out, rec || indices ? &ix : NULL);
    /* The caller gets a copy of the indices: it may change its own (make them
       1-based, say) without touching the ones the gradient needs. */
    if (s == KDX_OK && rec && indices && (s = kdx_clone(ix, &mine)) != KDX_OK) {
        kdx_tensor_release(*out);
        *out = NULL;
    }
    kdx__grad_restore(was);
    if (s == KDX_OK && rec) {
        kdx_node *n;
        s = kdx__record("max_pool2d", max_pool2d_backward, 1, &x, out, &n);
        if (s == KDX_OK) kdx__save(n, 0, ix);
        if (s == KDX_OK && kdx__rule_saving()) kdx__save(n, 1, x); /* DeepLift's rule reads the input */
    } else if (s == KDX_OK && ix) {
        mine = kdx_tensor_retain(ix);
    }
    if (s == KDX_OK && indices) *indices = kdx_tensor_retain(mine);
    KDX_RELEASE(ix, mine);
    return s;
}

/* avg_pool2d's adjoint: g [..., OH, OW] spread back over [..., H, W]. */
static kdx_status avg_pool2d_adjoint(const kdx_tensor *g, const kdx_pool_opts *o, int64_t H, int64_t W,
                                     kdx_tensor **out);

/* Both directions of the pair: each one's gradient is the other. */
static kdx_status avg_pool2d_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_pool_opts o = opts_from_ip(n);
    return avg_pool2d_adjoint(g, &o, in_plane(n, 0), in_plane(n, 1), &gin[0]);
}

static kdx_status avg_pool2d_adjoint_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_pool_opts o = opts_from_ip(n);
    return kdx_avg_pool2d(g, &o, &gin[0]);
}

static kdx_status avg_pool2d_adjoint(const kdx_tensor *g, const kdx_pool_opts *o, int64_t H, int64_t W,
                                     kdx_tensor **out)
{
    const char *const fname = "avg_pool2d_backward";
    pool_geom pg;
    KDX_TRY(kdx__check_planes(fname, g));
    KDX_TRY(pool_geom_of(fname, g, H, W, o, 1, &pg));
    if (g->shape[g->ndim - 2] != pg.OH || g->shape[g->ndim - 1] != pg.OW)
        return kdx_fail(KDX_ESHAPE, "%s: gradient %s does not match the %lldx%lld output", fname, kdx__shp(g),
                        (long long)pg.OH, (long long)pg.OW);
    bool was = kdx__grad_pause();
    kdx_status s = pool_run(fname, PLANE_AVG_ADJOINT, g, &pg, out, NULL);
    kdx__grad_restore(was);
    return record_pool(fname, avg_pool2d_adjoint_backward, g, o, s, out);
}

kdx_status kdx_avg_pool2d(const kdx_tensor *x, const kdx_pool_opts *o, kdx_tensor **out)
{
    bool was = kdx__grad_pause();
    kdx_status s = avg_pool2d_fwd(x, o, out);
    kdx__grad_restore(was);
    return record_pool("avg_pool2d", avg_pool2d_backward, x, o, s, out);
}

/* adaptive_avg_pool2d and its adjoint, as avg_pool2d's pair; the sizes come
   from the node's input (H x W for the pooling, OH x OW for the adjoint). */
static kdx_status adaptive_adjoint(const kdx_tensor *g, int64_t H, int64_t W, kdx_tensor **out);

static kdx_status adaptive_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    return adaptive_adjoint(g, in_plane(n, 0), in_plane(n, 1), &gin[0]);
}

static kdx_status adaptive_adjoint_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    return kdx_adaptive_avg_pool2d(g, in_plane(n, 0), in_plane(n, 1), &gin[0]);
}

static kdx_status adaptive_adjoint(const kdx_tensor *g, int64_t H, int64_t W, kdx_tensor **out)
{
    const char *const fname = "adaptive_avg_pool2d_backward";
    KDX_TRY(kdx__check_planes(fname, g));
    KDX_TRY(adaptive_check(fname, H, W));
    pool_geom pg = {H, W, g->shape[g->ndim - 2], g->shape[g->ndim - 1], 0, 0, 0, 0, 0, 0, 0, 0, 0};
    bool was = kdx__grad_pause();
    kdx_status s = pool_run(fname, PLANE_ADAPTIVE_ADJOINT, g, &pg, out, NULL);
    kdx__grad_restore(was);
    return record_pool(fname, adaptive_adjoint_backward, g, NULL, s, out);
}

kdx_status kdx_adaptive_avg_pool2d(const kdx_tensor *x, int64_t oh, int64_t ow, kdx_tensor **out)
{
    bool was = kdx__grad_pause();
    kdx_status s = adaptive_avg_pool2d_fwd(x, oh, ow, out);
    kdx__grad_restore(was);
    return record_pool("adaptive_avg_pool2d", adaptive_backward, x, NULL, s, out);
}
