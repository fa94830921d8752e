/* op_unfold.c — unfold (im2col over a batch) and fold (col2im, its adjoint),
   as torch.nn.functional.unfold/fold. The two are a pair of differentiable
   ops whose gradients are each other, so conv2d's backward, written with
   them and matmul, can be differentiated again. conv2d calls the per-sample
   kdx__im2col and kdx__col2im directly where nothing is recorded. */
#include "kdx_internal.h"

#include <string.h>

/* ==== im2col ======================================================================= */

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
    static void im2col_row_##S(const T *plane, T *dst, const kdx_conv_geom *g, int64_t i, int64_t j) \
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
    static void im2col_row_padded_##S(const T *restrict plane, T *restrict dst, const kdx_conv_geom *g, \
                                      int64_t Wp, int64_t i, int64_t j)                          \
    {                                                                                            \
        const T *src = plane + i * g->dh * Wp + j * g->dw;                                       \
        for (int64_t oh = 0; oh < g->OH; oh++, dst += g->OW, src += g->sh * Wp)                  \
            for (int64_t ow = 0; ow < g->OW; ow++) dst[ow] = src[ow];                            \
    }
DEF_IM2COL_ROW_PADDED(float, f32)
DEF_IM2COL_ROW_PADDED(double, f64)

typedef struct im2col_job {
    const char *x; /* one sample [C, H, W], or [C, Hp, Wp] zero-padded when padded */
    char *col;     /* [C*kh*kw, OH*OW] */
    const kdx_conv_geom *g;
    kdx_dtype dt;
    bool padded;
} im2col_job;

static void im2col_range(void *ud, int64_t lo, int64_t hi)
{
    const im2col_job *j = ud;
    const kdx_conv_geom *g = j->g;
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
static void pad_sample(const char *x, const kdx_conv_geom *g, kdx_dtype dt, char *xp)
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
void kdx__im2col(const char *x, const kdx_conv_geom *g, kdx_dtype dt, char *xp, char *col)
{
    if (xp) pad_sample(x, g, dt, xp);
    im2col_job j = {xp ? xp : x, col, g, dt, xp != NULL};
    kdx__parallel_for(g->C * g->kh * g->kw, kdx__grain(g->OH * g->OW), im2col_range, &j);
}
/* ==== col2im: the adjoint ================================================================ */

/* Adds the kh*kw rows of one plane's columns (col [kh*kw, OH*OW]) back into
   the plane [H, W], which the caller has zeroed: every tap adds to the input
   element it read. */
#define DEF_COL2IM_PLANE(T, S)                                                             \
    static void col2im_plane_##S(const T *col, T *plane, const kdx_conv_geom *g)           \
    {                                                                                      \
        for (int64_t i = 0; i < g->kh; i++)                                                \
            for (int64_t j = 0; j < g->kw; j++, col += g->OH * g->OW) {                    \
                int64_t off = j * g->dw - g->pw, lo, hi;                                   \
                tap_range(off, g->sw, g->W, g->OW, &lo, &hi);                              \
                for (int64_t oh = 0; oh < g->OH; oh++) {                                   \
                    int64_t ih = oh * g->sh - g->ph + i * g->dh;                           \
                    if (ih < 0 || ih >= g->H) continue;                                    \
                    T *row = plane + ih * g->W;                                            \
                    const T *src = col + oh * g->OW;                                       \
                    for (int64_t ow = lo; ow < hi; ow++) row[ow * g->sw + off] += src[ow]; \
                }                                                                          \
            }                                                                              \
    }
DEF_COL2IM_PLANE(float, f32)
DEF_COL2IM_PLANE(double, f64)

/* ==== unfold, fold ======================================================================= */

typedef struct fold_job {
    const char *src;
    char *dst;
    const kdx_conv_geom *g;
    kdx_dtype dt;
} fold_job;

/* unfold: column rows [lo, hi) of the whole batch. Row r = (n*C + c)*kh*kw +
   i*kw + j reads plane n*C + c, and sits at r*L in the [N, C*kh*kw, L] output. */
static void unfold_range(void *ud, int64_t lo, int64_t hi)
{
    const fold_job *j = ud;
    const kdx_conv_geom *g = j->g;
    size_t es = kdx_dtype_size(j->dt);
    int64_t kk = g->kh * g->kw, L = g->OH * g->OW;
    for (int64_t r = lo; r < hi; r++) {
        const char *plane = j->src + (size_t)(r / kk * g->H * g->W) * es;
        char *dst = j->dst + (size_t)(r * L) * es;
        int64_t i = r % kk / g->kw, k = r % g->kw;
        if (j->dt == KDX_DTYPE_F32) im2col_row_f32((const float *)plane, (float *)dst, g, i, k);
        else im2col_row_f64((const double *)plane, (double *)dst, g, i, k);
    }
}

/* fold: planes [lo, hi) of the [N, C, H, W] output, each from its kh*kw rows. */
static void fold_range(void *ud, int64_t lo, int64_t hi)
{
    const fold_job *j = ud;
    const kdx_conv_geom *g = j->g;
    size_t es = kdx_dtype_size(j->dt);
    int64_t kk = g->kh * g->kw, L = g->OH * g->OW;
    for (int64_t p = lo; p < hi; p++) {
        const char *col = j->src + (size_t)(p * kk * L) * es;
        char *plane = j->dst + (size_t)(p * g->H * g->W) * es;
        if (j->dt == KDX_DTYPE_F32) col2im_plane_f32((const float *)col, (float *)plane, g);
        else col2im_plane_f64((const double *)col, (double *)plane, g);
    }
}

void kdx__col2im(const char *col, const kdx_conv_geom *g, kdx_dtype dt, char *x)
{
    fold_job j = {col, x, g, dt};
    kdx__parallel_for(g->C, kdx__grain(g->kh * g->kw * g->OH * g->OW), fold_range, &j);
}

/* The window geometry of a kh x kw kernel over H x W planes under o, checked
   as conv2d checks it. */
static kdx_status window_geom(const char *fname, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
                              const kdx_conv_opts *o, kdx_conv_geom *g)
{
    int64_t k[2] = {kh, kw};
    KDX_TRY(kdx__check_pair(fname, "kernel", k, 1));
    KDX_TRY(kdx__check_pair(fname, "stride", o->stride, 1));
    KDX_TRY(kdx__check_pair(fname, "padding", o->padding, 0));
    KDX_TRY(kdx__check_pair(fname, "dilation", o->dilation, 1));
    int64_t in[2] = {H, W};
    for (int a = 0; a < 2; a++) {
        if (in[a] < 1 || in[a] > KDX_OPT_MAX)
            return kdx_fail(KDX_ESHAPE, "%s: spatial size %lld must be between 1 and %lld", fname, (long long)in[a],
                            (long long)KDX_OPT_MAX);
        /* dilation*(k-1)+1 > padded size, written so that it cannot overflow */
        if (k[a] - 1 > (in[a] + 2 * o->padding[a] - 1) / o->dilation[a])
            return kdx_fail(KDX_ESHAPE,
                            "%s: kernel %lldx%lld (dilation (%lld,%lld)) is larger than the padded input %lldx%lld "
                            "(padding (%lld,%lld))",
                            fname, (long long)kh, (long long)kw, (long long)o->dilation[0], (long long)o->dilation[1],
                            (long long)H, (long long)W, (long long)o->padding[0], (long long)o->padding[1]);
    }
    kdx_conv_geom r = {C, H, W, kh, kw, 0, 0, o->stride[0], o->stride[1], o->padding[0], o->padding[1],
                       o->dilation[0], o->dilation[1]};
    r.OH = (H + 2 * r.ph - r.dh * (kh - 1) - 1) / r.sh + 1;
    r.OW = (W + 2 * r.pw - r.dw * (kw - 1) - 1) / r.sw + 1;
    /* the sizes are at most 2^30 (and OH, OW 3*2^30), but their products may not fit */
    int64_t rows_per_c = kh * kw;
    if (r.OH > INT64_MAX / 8 / r.OW || r.OH * r.OW > INT64_MAX / 8 / rows_per_c / (C > 0 ? C : 1))
        return kdx_fail(KDX_ENOMEM, "%s: the column matrix would be too large", fname);
    *g = r;
    return KDX_OK;
}

/* Runs unfold (to_cols) or fold of the contiguous src into a new tensor of shape. */
static kdx_status fold_run(const char *fname, bool to_cols, const kdx_tensor *src, const kdx_conv_geom *g, int nd,
                           const int64_t *shape, kdx_tensor **out)
{
    kdx_tensor *sc = NULL, *y = NULL;
    kdx_status s = kdx_contiguous(src, &sc);
    /* unfold writes every element; fold adds into zeros */
    if (s == KDX_OK && to_cols) s = kdx__new_raw(fname, src->dtype, nd, shape, &y);
    else if (s == KDX_OK) s = kdx__new(fname, src->dtype, nd, shape, &y);
    if (s != KDX_OK) {
        KDX_RELEASE(sc, y);
        return s;
    }
    fold_job j = {kdx__base(sc), kdx__base(y), g, src->dtype};
    int64_t N = shape[0], kk = g->kh * g->kw, L = g->OH * g->OW;
    if (to_cols) kdx__parallel_for(N * g->C * kk, kdx__grain(L), unfold_range, &j);
    else kdx__parallel_for(N * g->C, kdx__grain(kk * L), fold_range, &j);
    kdx_tensor_release(sc);
    *out = y;
    return KDX_OK;
}

static kdx_status unfold_fwd(const kdx_tensor *x, int64_t kh, int64_t kw, const kdx_conv_opts *o, kdx_tensor **out)
{
    const char *const fname = "unfold";
    KDX_TRY(kdx__check_float(fname, "x", x));
    if (!out) return kdx_fail(KDX_EINVAL, "unfold: out is NULL");
    if (x->ndim != 4) return kdx_fail(KDX_ESHAPE, "unfold: x must be 4-D [N,C,H,W], got %s", kdx__shp(x));
    if (x->shape[1] < 1) return kdx_fail(KDX_ESHAPE, "unfold: x %s has no channels", kdx__shp(x));
    kdx_conv_geom g;
    KDX_TRY(window_geom(fname, x->shape[1], x->shape[2], x->shape[3], kh, kw, o, &g));
    int64_t shape[3] = {x->shape[0], g.C * kh * kw, g.OH * g.OW};
    return fold_run(fname, true, x, &g, 3, shape, out);
}

static kdx_status fold_fwd(const kdx_tensor *col, int64_t oh, int64_t ow, int64_t kh, int64_t kw,
                           const kdx_conv_opts *o, kdx_tensor **out)
{
    const char *const fname = "fold";
    KDX_TRY(kdx__check_float(fname, "col", col));
    if (!out) return kdx_fail(KDX_EINVAL, "fold: out is NULL");
    if (col->ndim != 3) return kdx_fail(KDX_ESHAPE, "fold: col must be 3-D [N, C*kh*kw, L], got %s", kdx__shp(col));
    int64_t k[2] = {kh, kw};
    KDX_TRY(kdx__check_pair(fname, "kernel", k, 1));
    if (col->shape[1] < 1 || col->shape[1] % (kh * kw) != 0)
        return kdx_fail(KDX_ESHAPE, "fold: col %s: dim 2 must be a positive multiple of kh*kw = %lld", kdx__shp(col),
                        (long long)(kh * kw));
    kdx_conv_geom g;
    KDX_TRY(window_geom(fname, col->shape[1] / (kh * kw), oh, ow, kh, kw, o, &g));
    if (g.OH * g.OW != col->shape[2])
        return kdx_fail(KDX_ESHAPE, "fold: col %s has %lld blocks but an output of %lldx%lld holds %lldx%lld = %lld",
                        kdx__shp(col), (long long)col->shape[2], (long long)oh, (long long)ow, (long long)g.OH,
                        (long long)g.OW, (long long)(g.OH * g.OW));
    int64_t shape[4] = {col->shape[0], g.C, oh, ow};
    return fold_run(fname, false, col, &g, 4, shape, out);
}

/* Node parameters: ip[0..1] kernel, ip[2..7] stride, padding, dilation. */
static void window_to_ip(kdx_node *n, int64_t kh, int64_t kw, const kdx_conv_opts *o)
{
    int64_t v[8] = {kh, kw, o->stride[0], o->stride[1], o->padding[0], o->padding[1], o->dilation[0], o->dilation[1]};
    memcpy(n->ip, v, sizeof v);
}

static kdx_conv_opts window_from_ip(const kdx_node *n)
{
    kdx_conv_opts o = {{n->ip[2], n->ip[3]}, {n->ip[4], n->ip[5]}, {n->ip[6], n->ip[7]}, 1};
    return o;
}

/* unfold's gradient folds g back into x's plane; fold's unfolds it. */
static kdx_status unfold_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_conv_opts o = window_from_ip(n);
    const kdx_edge *e = &n->next[0];
    return kdx_fold(g, e->shape[2], e->shape[3], n->ip[0], n->ip[1], &o, &gin[0]);
}

static kdx_status fold_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_conv_opts o = window_from_ip(n);
    return kdx_unfold(g, n->ip[0], n->ip[1], &o, &gin[0]);
}

kdx_status kdx_unfold(const kdx_tensor *x, int64_t kh, int64_t kw, const kdx_conv_opts *o, kdx_tensor **out)
{
    kdx_conv_opts def = kdx_conv_opts_default();
    if (!o) o = &def;
    bool was = kdx__grad_pause();
    kdx_status s = unfold_fwd(x, kh, kw, o, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !kdx__needs_node(1, &x)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record("unfold", unfold_backward, 1, &x, out, &n));
    window_to_ip(n, kh, kw, o);
    return KDX_OK;
}

kdx_status kdx_fold(const kdx_tensor *col, int64_t oh, int64_t ow, int64_t kh, int64_t kw, const kdx_conv_opts *o,
                    kdx_tensor **out)
{
    kdx_conv_opts def = kdx_conv_opts_default();
    if (!o) o = &def;
    bool was = kdx__grad_pause();
    kdx_status s = fold_fwd(col, oh, ow, kh, kw, o, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !kdx__needs_node(1, &col)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record("fold", fold_backward, 1, &col, out, &n));
    window_to_ip(n, kh, kw, o);
    return KDX_OK;
}
