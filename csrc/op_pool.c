/* op_pool.c — max, average and adaptive-average pooling on NCHW tensors
   (forward), with PyTorch's output-size, padding and divisor rules. The
   per-plane kernels are separate functions so a backward (argmax scatter)
   can pair with them. */
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


static kdx_status pool_setup(const char *fname, const kdx_tensor *x, const kdx_pool_opts *o, int is_avg,
                             pool_geom *g)
{
    KDX_TRY(kdx__check_planes(fname, x));
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
    int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1];
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
                        if (v > best || isnan(v)) {                                         \
                            best = v;                                                       \
                            bi = h * g->W + w;                                              \
                        }                                                                   \
                    }                                                                       \
                out[oh * g->OW + ow] = best;                                                \
                if (idx) idx[oh * g->OW + ow] = bi;                                         \
            }                                                                               \
    }
DEF_MAXPOOL_PLANE(float, f32)
DEF_MAXPOOL_PLANE(double, f64)

/* Mean over each window. The divisor is the window clipped to the padded
   input (count_include_pad) or to the input itself; a window wholly in the
   padding gives 0, as PyTorch. */
#define DEF_AVGPOOL_PLANE(T, S)                                                             \
    static void avgpool_plane_##S(const T *in, T *out, const pool_geom *g)                  \
    {                                                                                       \
        for (int64_t oh = 0; oh < g->OH; oh++)                                              \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                        \
                int64_t h0 = oh * g->sh - g->ph, w0 = ow * g->sw - g->pw;                   \
                int64_t h1 = kdx__min64(h0 + g->kh, g->H + g->ph), w1 = kdx__min64(w0 + g->kw, g->W + g->pw); \
                int64_t padded = (h1 - h0) * (w1 - w0);                                     \
                h0 = kdx__max64(h0, 0), w0 = kdx__max64(w0, 0);                                       \
                h1 = kdx__min64(h1, g->H), w1 = kdx__min64(w1, g->W);                                 \
                if (h0 >= h1 || w0 >= w1) {                                                 \
                    out[oh * g->OW + ow] = 0;                                               \
                    continue;                                                               \
                }                                                                           \
                double s = 0;                                                               \
                for (int64_t h = h0; h < h1; h++)                                           \
                    for (int64_t w = w0; w < w1; w++) s += in[h * g->W + w];                \
                int64_t div = g->count_include_pad ? padded : (h1 - h0) * (w1 - w0);        \
                out[oh * g->OW + ow] = (T)(s / (double)div);                                \
            }                                                                               \
    }
DEF_AVGPOOL_PLANE(float, f32)
DEF_AVGPOOL_PLANE(double, f64)

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

typedef enum plane_op { PLANE_MAX, PLANE_AVG, PLANE_ADAPTIVE } plane_op;

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
    for (int64_t p = lo; p < hi; p++) {
        const char *in = j->x + (size_t)(p * g->H * g->W) * es;
        char *out = j->y + (size_t)(p * g->OH * g->OW) * es;
        int64_t *ix = j->idx ? j->idx + p * g->OH * g->OW : NULL;
        bool f = j->dt == KDX_DTYPE_F32;
        switch (j->op) {
        case PLANE_MAX:
            if (f) maxpool_plane_f32((const float *)in, (float *)out, ix, g);
            else maxpool_plane_f64((const double *)in, (double *)out, ix, g);
            break;
        case PLANE_AVG:
            if (f) avgpool_plane_f32((const float *)in, (float *)out, g);
            else avgpool_plane_f64((const double *)in, (double *)out, g);
            break;
        case PLANE_ADAPTIVE:
            if (f) adaptive_plane_f32((const float *)in, (float *)out, g);
            else adaptive_plane_f64((const double *)in, (double *)out, g);
            break;
        }
    }
}

/* Runs op over every plane of x into new tensors of x's leading shape and
   g's output plane (indices too when want_idx). */
static kdx_status pool_run(const char *fname, plane_op op, const kdx_tensor *x, const pool_geom *g,
                           kdx_tensor **out, kdx_tensor **indices)
{
    int64_t shape[4];
    int nd = x->ndim;
    memcpy(shape, x->shape, (size_t)nd * sizeof *shape);
    shape[nd - 2] = g->OH;
    shape[nd - 1] = g->OW;
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
    kdx__parallel_for(planes, kdx__grain(g->OH * g->OW * 4), pool_range, &j);
    kdx_tensor_release(xc);
    *out = y;
    if (indices) *indices = ix;
    return KDX_OK;
}

kdx_status kdx_max_pool2d(const kdx_tensor *x, const kdx_pool_opts *o, kdx_tensor **out, kdx_tensor **indices)
{
    pool_geom g;
    KDX_TRY(pool_setup("max_pool2d", x, o, 0, &g));
    if (!out) return kdx_fail(KDX_EINVAL, "max_pool2d: out is NULL");
    return pool_run("max_pool2d", PLANE_MAX, x, &g, out, indices);
}

kdx_status kdx_avg_pool2d(const kdx_tensor *x, const kdx_pool_opts *o, kdx_tensor **out)
{
    pool_geom g;
    KDX_TRY(pool_setup("avg_pool2d", x, o, 1, &g));
    if (!out) return kdx_fail(KDX_EINVAL, "avg_pool2d: out is NULL");
    return pool_run("avg_pool2d", PLANE_AVG, x, &g, out, NULL);
}

kdx_status kdx_adaptive_avg_pool2d(const kdx_tensor *x, int64_t oh, int64_t ow, kdx_tensor **out)
{
    const char *const fname = "adaptive_avg_pool2d";
    KDX_TRY(kdx__check_planes(fname, x));
    if (!out) return kdx_fail(KDX_EINVAL, "adaptive_avg_pool2d: out is NULL");
    if (oh < 1 || ow < 1 || oh > KDX_OPT_MAX || ow > KDX_OPT_MAX)
        return kdx_fail(KDX_EINVAL, "adaptive_avg_pool2d: output size must be >= 1, got %lldx%lld", (long long)oh,
                        (long long)ow);
    pool_geom g = {x->shape[x->ndim - 2], x->shape[x->ndim - 1], oh, ow, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    return pool_run(fname, PLANE_ADAPTIVE, x, &g, out, NULL);
}
