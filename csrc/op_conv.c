/* op_conv.c — conv2d on NCHW tensors (forward) by im2col + GEMM, one sample
   at a time: a sample's column matrix is small enough to stay in cache, and
   its GEMM writes straight into the output. The batch is spread over the
   engine's threads. im2col is its own function so a backward (col2im) can
   pair with it. Semantics follow torch.nn.functional.conv2d. */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>


/* ==== conv2d ======================================================================= */

typedef struct conv_geom {
    int64_t C, H, W;        /* input channels and plane */
    int64_t kh, kw, OH, OW; /* kernel and output plane */
    int64_t sh, sw, ph, pw, dh, dw;
} conv_geom;

/* The output columns [lo, hi) whose tap ow*s + off falls inside [0, w). */
static void tap_range(int64_t off, int64_t s, int64_t w, int64_t ow, int64_t *lo, int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = w - off <= 0 ? 0 : (w - off + s - 1) / s;
    *lo = kdx__min64(a, ow);
    *hi = kdx__max64(*lo, kdx__min64(b, ow));
}

/* One row of the column matrix: tap (i, j) of one input plane, OH*OW values,
   zero where the tap falls into the padding. */
#define DEF_IM2COL_ROW(T, S)                                                               \
    static void im2col_row_##S(const T *plane, T *dst, const conv_geom *g, int64_t i, int64_t j) \
    {                                                                                      \
        int64_t off = j * g->dw - g->pw, lo, hi;                                           \
        tap_range(off, g->sw, g->W, g->OW, &lo, &hi);                                      \
        for (int64_t oh = 0; oh < g->OH; oh++, dst += g->OW) {                             \
            int64_t ih = oh * g->sh - g->ph + i * g->dh, ow = 0;                           \
            if (ih < 0 || ih >= g->H) {                                                    \
                for (; ow < g->OW; ow++) dst[ow] = 0;                                      \
                continue;                                                                  \
            }                                                                              \
            const T *row = plane + ih * g->W;                                              \
            for (; ow < lo; ow++) dst[ow] = 0;                                             \
            if (g->sw == 1) { /* a plain loop: rows are short, a memcpy call costs more */ \
                const T *src = row + off;                                                  \
                for (; ow < hi; ow++) dst[ow] = src[ow];                                   \
            }                                                                              \
            for (; ow < hi; ow++) dst[ow] = row[ow * g->sw + off];                         \
            for (; ow < g->OW; ow++) dst[ow] = 0;                                          \
        }                                                                                  \
    }
DEF_IM2COL_ROW(float, f32)
DEF_IM2COL_ROW(double, f64)

/* The same row from a zero-padded plane [Hp, Wp] when the column stride is 1:
   every output row is one contiguous run, with no bounds to test. */
#define DEF_IM2COL_ROW_PADDED(T, S)                                                              \
    static void im2col_row_padded_##S(const T *restrict plane, T *restrict dst, const conv_geom *g, \
                                      int64_t Wp, int64_t i, int64_t j)                          \
    {                                                                                            \
        const T *src = plane + i * g->dh * Wp + j * g->dw;                                       \
        for (int64_t oh = 0; oh < g->OH; oh++, dst += g->OW, src += g->sh * Wp)                  \
            for (int64_t ow = 0; ow < g->OW; ow++) dst[ow] = src[ow];                            \
    }
DEF_IM2COL_ROW_PADDED(float, f32)
DEF_IM2COL_ROW_PADDED(double, f64)

/* dst[l] += b for a row of n values. */
#define DEF_ADD_BIAS(T, S)                                               \
    static void add_bias_##S(T *dst, int64_t n, double b)                \
    {                                                                    \
        T tb = (T)b;                                                     \
        for (int64_t l = 0; l < n; l++) dst[l] += tb;                    \
    }
DEF_ADD_BIAS(float, f32)
DEF_ADD_BIAS(double, f64)

typedef struct im2col_job {
    const char *x; /* one sample [C, H, W], or [C, Hp, Wp] zero-padded when padded */
    char *col;     /* [C*kh*kw, OH*OW] */
    const conv_geom *g;
    kdx_dtype dt;
    bool padded;
} im2col_job;

static void im2col_range(void *ud, int64_t lo, int64_t hi)
{
    const im2col_job *j = ud;
    const conv_geom *g = j->g;
    int64_t L = g->OH * g->OW;
    size_t es = kdx_dtype_size(j->dt);
    for (int64_t r = lo; r < hi; r++) {
        int64_t c = r / (g->kh * g->kw), i = (r / g->kw) % g->kh, k = r % g->kw;
        char *dst = j->col + (size_t)(r * L) * es;
        if (j->padded) {
            int64_t Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw;
            const char *plane = j->x + (size_t)(c * Hp * Wp) * es;
            if (j->dt == KDX_DTYPE_F32) im2col_row_padded_f32((const float *)plane, (float *)dst, g, Wp, i, k);
            else im2col_row_padded_f64((const double *)plane, (double *)dst, g, Wp, i, k);
            continue;
        }
        const char *plane = j->x + (size_t)(c * g->H * g->W) * es;
        if (j->dt == KDX_DTYPE_F32) im2col_row_f32((const float *)plane, (float *)dst, g, i, k);
        else im2col_row_f64((const double *)plane, (double *)dst, g, i, k);
    }
}

/* Copies one sample [C, H, W] into a zero-padded [C, Hp, Wp] (xp, whose
   border is already zero and stays so). */
static void pad_sample(const char *x, const conv_geom *g, kdx_dtype dt, char *xp)
{
    size_t es = kdx_dtype_size(dt);
    int64_t Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw;
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t h = 0; h < g->H; h++)
            memcpy(xp + (size_t)((c * Hp + h + g->ph) * Wp + g->pw) * es, x + (size_t)((c * g->H + h) * g->W) * es,
                   (size_t)g->W * es);
}

/* Unfolds one sample x [C, H, W] into col [C*kh*kw, OH*OW]: row (c, i, j),
   column oh*OW + ow. col2im is its adjoint. With a padded buffer xp (column
   stride 1 only) the sample is first copied into it, so that each row of col
   is a run of plain copies; xp NULL uses the bounds-testing path. */
static void im2col(const char *x, const conv_geom *g, kdx_dtype dt, char *xp, char *col)
{
    if (xp) pad_sample(x, g, dt, xp);
    im2col_job j = {xp ? xp : x, col, g, dt, xp != NULL};
    kdx__parallel_for(g->C * g->kh * g->kw, kdx__grain(g->OH * g->OW), im2col_range, &j);
}

typedef struct conv_job {
    const char *x, *w, *bias;
    char *y;
    const conv_geom *g;
    int64_t O, groups;
    bool direct; /* 1x1, stride 1, no padding: the input is its own column matrix */
    kdx_dtype dt;
    atomic_bool failed; /* a worker could not get its column buffer */
} conv_job;

/* y[n] = W conv x[n] + bias for one sample, with col as scratch. Each GEMM
   writes straight into the sample's [O, OH*OW] block of y. */
static void conv_sample(const conv_job *j, int64_t n, char *col, char *xp)
{
    const conv_geom *g = j->g;
    size_t es = kdx_dtype_size(j->dt);
    int64_t L = g->OH * g->OW, Og = j->O / j->groups, K = g->C / j->groups * g->kh * g->kw;
    const char *xs = j->x + (size_t)(n * g->C * g->H * g->W) * es;
    char *ys = j->y + (size_t)(n * j->O * L) * es;
    const char *cm = xs;
    if (!j->direct) {
        im2col(xs, g, j->dt, xp, col);
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
    const conv_geom *g = j->g;
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

kdx_status kdx_conv2d(const kdx_tensor *x, const kdx_tensor *w, const kdx_tensor *bias, const kdx_conv_opts *o,
                      kdx_tensor **out)
{
    const char *const fname = "conv2d";
    kdx_conv_opts def = kdx_conv_opts_default();
    if (!o) o = &def;
    KDX_TRY(conv_check(x, w, bias, o));
    if (!out) return kdx_fail(KDX_EINVAL, "conv2d: out is NULL");
    int64_t N = x->shape[0], O = w->shape[0];
    conv_geom g = {x->shape[1], x->shape[2], x->shape[3], w->shape[2], w->shape[3], 0, 0,
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
