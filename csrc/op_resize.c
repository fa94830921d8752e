/* op_resize.c — interpolate (nearest, bilinear) and pad (constant, reflect,
   replicate) on the spatial dims, as torch.nn.functional does, with their
   gradients. Both ops are linear; each has an adjoint kernel that adds every
   output's gradient back to the inputs it read, recorded as an op whose own
   gradient is the forward again (constant padding's adjoint is padding by
   the opposite amounts). */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>

/* ==== interpolate ================================================================== */

/* PyTorch's legacy 'nearest' source index, in float arithmetic as it does;
   sf > 0 is a user's scale factor, whose inverse is the source step. */
static int64_t nearest_src(int64_t o, int64_t in, int64_t out, double sf)
{
    if (out == in) return o;
    if (out == 2 * in) return o >> 1;
    float scale = sf > 0 ? (float)(1.0 / sf) : (float)in / (float)out;
    return kdx__min64((int64_t)floorf((float)o * scale), in - 1);
}

/* Bilinear taps along one axis: i0/i1 and weights l0/l1 per output index,
   with PyTorch's source index (align_corners, else half-pixel clamped at 0)
   computed in T, its opmath type. */
#define DEF_LINEAR_AXIS(T, S)                                                                \
    static void linear_axis_##S(int64_t in, int64_t out, int align, double sf, int64_t *i0,   \
                                int64_t *i1, double *l0, double *l1)                         \
    {                                                                                        \
        T scale = align ? (out > 1 ? (T)(in - 1) / (T)(out - 1) : (T)0)                      \
                        : sf > 0 ? (T)(1.0 / sf) : (T)in / (T)out;                           \
        for (int64_t o = 0; o < out; o++) {                                                  \
            if (in == out) {                                                                 \
                i0[o] = i1[o] = o, l0[o] = 1, l1[o] = 0;                                     \
                continue;                                                                    \
            }                                                                                \
            T src = align ? scale * (T)o : scale * ((T)o + (T)0.5) - (T)0.5;                 \
            if (src < 0) src = 0;                                                            \
            i0[o] = kdx__min64((int64_t)floor((double)src), in - 1);                              \
            T lam = src - (T)i0[o];                                                          \
            lam = lam < 0 ? 0 : lam > 1 ? 1 : lam;                                           \
            i1[o] = i0[o] + (i0[o] < in - 1 ? 1 : 0);                                        \
            l1[o] = lam;                                                                     \
            l0[o] = (T)1 - lam;                                                              \
        }                                                                                    \
    }
DEF_LINEAR_AXIS(float, f32)
DEF_LINEAR_AXIS(double, f64)

/* Per-axis taps; for nearest only i0 is used. One allocation holds them all. */
typedef struct interp_taps {
    int64_t *hi0, *hi1, *wi0, *wi1;
    double *hl0, *hl1, *wl0, *wl1;
} interp_taps;

#define DEF_INTERP_PLANE(T, S)                                                               \
    static void interp_plane_##S(const T *in, T *out, int64_t W, int64_t OH, int64_t OW,     \
                                 const interp_taps *t, int bilinear)                         \
    {                                                                                        \
        for (int64_t oh = 0; oh < OH; oh++) {                                                \
            const T *r0 = in + t->hi0[oh] * W;                                               \
            T *dst = out + oh * OW;                                                          \
            if (!bilinear) {                                                                 \
                for (int64_t ow = 0; ow < OW; ow++) dst[ow] = r0[t->wi0[ow]];                 \
                continue;                                                                    \
            }                                                                                \
            const T *r1 = in + t->hi1[oh] * W;                                               \
            T a0 = (T)t->hl0[oh], a1 = (T)t->hl1[oh];                                        \
            for (int64_t ow = 0; ow < OW; ow++) {                                            \
                T b0 = (T)t->wl0[ow], b1 = (T)t->wl1[ow];                                    \
                int64_t c0 = t->wi0[ow], c1 = t->wi1[ow];                                    \
                dst[ow] = a0 * (b0 * r0[c0] + b1 * r0[c1]) + a1 * (b0 * r1[c0] + b1 * r1[c1]); \
            }                                                                                \
        }                                                                                    \
    }
DEF_INTERP_PLANE(float, f32)
DEF_INTERP_PLANE(double, f64)

/* The adjoint: gy [OH, OW] added into gx [H, W] (zeroed) with the same taps. */
#define DEF_INTERP_ADJOINT(T, S)                                                             \
    static void interp_adjoint_##S(const T *gy, T *gx, int64_t W, int64_t OH, int64_t OW,    \
                                   const interp_taps *t, int bilinear)                       \
    {                                                                                        \
        for (int64_t oh = 0; oh < OH; oh++) {                                                \
            T *r0 = gx + t->hi0[oh] * W;                                                     \
            const T *src = gy + oh * OW;                                                     \
            if (!bilinear) {                                                                 \
                for (int64_t ow = 0; ow < OW; ow++) r0[t->wi0[ow]] += src[ow];               \
                continue;                                                                    \
            }                                                                                \
            T *r1 = gx + t->hi1[oh] * W;                                                     \
            T a0 = (T)t->hl0[oh], a1 = (T)t->hl1[oh];                                        \
            for (int64_t ow = 0; ow < OW; ow++) {                                            \
                T b0 = (T)t->wl0[ow], b1 = (T)t->wl1[ow], v = src[ow];                       \
                int64_t c0 = t->wi0[ow], c1 = t->wi1[ow];                                    \
                r0[c0] += a0 * b0 * v;                                                       \
                r0[c1] += a0 * b1 * v;                                                       \
                r1[c0] += a1 * b0 * v;                                                       \
                r1[c1] += a1 * b1 * v;                                                       \
            }                                                                                \
        }                                                                                    \
    }
DEF_INTERP_ADJOINT(float, f32)
DEF_INTERP_ADJOINT(double, f64)

typedef struct interp_job {
    const char *x;
    char *y;
    int64_t H, W, OH, OW;
    const interp_taps *t;
    int bilinear, adjoint; /* adjoint: x holds OH x OW planes, y H x W ones */
    kdx_dtype dt;
} interp_job;

static void interp_range(void *ud, int64_t lo, int64_t hi)
{
    const interp_job *j = ud;
    size_t es = kdx_dtype_size(j->dt);
    int64_t big = j->H * j->W, small = j->OH * j->OW;
    for (int64_t p = lo; p < hi; p++) {
        const char *in = j->x + (size_t)(p * (j->adjoint ? small : big)) * es;
        char *out = j->y + (size_t)(p * (j->adjoint ? big : small)) * es;
        if (j->adjoint && j->dt == KDX_DTYPE_F32)
            interp_adjoint_f32((const float *)in, (float *)out, j->W, j->OH, j->OW, j->t, j->bilinear);
        else if (j->adjoint)
            interp_adjoint_f64((const double *)in, (double *)out, j->W, j->OH, j->OW, j->t, j->bilinear);
        else if (j->dt == KDX_DTYPE_F32)
            interp_plane_f32((const float *)in, (float *)out, j->W, j->OH, j->OW, j->t, j->bilinear);
        else
            interp_plane_f64((const double *)in, (double *)out, j->W, j->OH, j->OW, j->t, j->bilinear);
    }
}

/* Fills the taps of both axes (they live in one block of 4*(OH+OW) words). */
static void interp_build_taps(interp_taps *t, void *block, int64_t H, int64_t W, int64_t OH, int64_t OW,
                              int bilinear, int align, double sh, double sw, kdx_dtype dt)
{
    int64_t *iv = block;
    double *dv = (double *)(iv + 2 * (OH + OW));
    t->hi0 = iv, t->hi1 = iv + OH, t->wi0 = iv + 2 * OH, t->wi1 = iv + 2 * OH + OW;
    t->hl0 = dv, t->hl1 = dv + OH, t->wl0 = dv + 2 * OH, t->wl1 = dv + 2 * OH + OW;
    if (!bilinear) {
        for (int64_t o = 0; o < OH; o++) t->hi0[o] = nearest_src(o, H, OH, sh);
        for (int64_t o = 0; o < OW; o++) t->wi0[o] = nearest_src(o, W, OW, sw);
    } else if (dt == KDX_DTYPE_F32) {
        linear_axis_f32(H, OH, align, sh, t->hi0, t->hi1, t->hl0, t->hl1);
        linear_axis_f32(W, OW, align, sw, t->wi0, t->wi1, t->wl0, t->wl1);
    } else {
        linear_axis_f64(H, OH, align, sh, t->hi0, t->hi1, t->hl0, t->hl1);
        linear_axis_f64(W, OW, align, sw, t->wi0, t->wi1, t->wl0, t->wl1);
    }
}

static kdx_status interp_check(const char *fname, const kdx_tensor *x, int64_t oh, int64_t ow, kdx_interp_mode mode,
                               int align_corners, double scale_h, double scale_w, kdx_tensor **out)
{
    KDX_TRY(kdx__check_planes(fname, x));
    if (!out) return kdx_fail(KDX_EINVAL, "%s: out is NULL", fname);
    if (mode != KDX_INTERP_NEAREST && mode != KDX_INTERP_BILINEAR)
        return kdx_fail(KDX_EINVAL, "%s: unknown mode %d", fname, (int)mode);
    if (mode == KDX_INTERP_NEAREST && align_corners)
        return kdx_fail(KDX_EINVAL, "%s: align_corners can only be set with mode bilinear", fname);
    if (!(scale_h >= 0 && scale_w >= 0) || isinf(scale_h) || isinf(scale_w))
        return kdx_fail(KDX_EINVAL, "%s: scale factors must be finite and >= 0, got %g and %g", fname, scale_h,
                        scale_w);
    if (oh < 1 || ow < 1 || oh > KDX_OPT_MAX || ow > KDX_OPT_MAX)
        return kdx_fail(KDX_EINVAL, "%s: output size must be >= 1, got %lldx%lld", fname, (long long)oh,
                        (long long)ow);
    return KDX_OK;
}

/* Resizes x's H x W planes to OH x OW, or (adjoint) adds x's OH x OW planes
   back into H x W ones; H, W, OH, OW are the forward's sizes. */
static kdx_status interp_run(const char *fname, const kdx_tensor *x, int adjoint, int64_t H, int64_t W, int64_t oh,
                             int64_t ow, kdx_interp_mode mode, int align_corners, double scale_h, double scale_w,
                             kdx_tensor **out)
{
    int nd = x->ndim;
    int64_t shape[4];
    memcpy(shape, x->shape, (size_t)nd * sizeof *shape);
    shape[nd - 2] = adjoint ? H : oh;
    shape[nd - 1] = adjoint ? W : ow;
    size_t tbytes = (size_t)(oh + ow) * 2 * (sizeof(int64_t) + sizeof(double));
    void *block = kdx__malloc(tbytes);
    if (!block) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    kdx_tensor *xc = NULL, *y = NULL;
    kdx_status s = kdx_contiguous(x, &xc);
    if (s == KDX_OK) s = kdx__new(fname, x->dtype, nd, shape, &y);
    if (s != KDX_OK) {
        kdx__free(block, tbytes);
        KDX_RELEASE(xc, y);
        return s;
    }
    interp_taps t;
    int bilinear = mode == KDX_INTERP_BILINEAR;
    interp_build_taps(&t, block, H, W, oh, ow, bilinear, align_corners, scale_h, scale_w, x->dtype);
    interp_job j = {kdx__base(xc), kdx__base(y), H, W, oh, ow, &t, bilinear, adjoint, x->dtype};
    /* each plane belongs to one task, so the adjoint's sums need no locks */
    kdx__parallel_for(kdx__numel(nd - 2, x->shape), kdx__grain(oh * ow * (bilinear ? 4 : 1)), interp_range, &j);
    kdx__free(block, tbytes);
    kdx_tensor_release(xc);
    *out = y;
    return KDX_OK;
}

static kdx_status interp_adjoint(const kdx_tensor *g, int64_t H, int64_t W, kdx_interp_mode mode, int align,
                                 double sh, double sw, kdx_tensor **out);

/* Node parameters: ip[0] mode, ip[1] align_corners, p[0..1] scale factors. */
static kdx_status interp_record(const char *name, kdx_backward_fn bw, const kdx_tensor *x, kdx_interp_mode mode,
                                int align, double sh, double sw, kdx_status s, kdx_tensor **out)
{
    if (s != KDX_OK || !kdx__needs_node(1, &x)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record(name, bw, 1, &x, out, &n));
    n->ip[0] = mode, n->ip[1] = align;
    n->p[0] = sh, n->p[1] = sw;
    return KDX_OK;
}

/* The pair's gradients, sizes taken from the node's input: interpolate's is
   the adjoint back to H x W, the adjoint's is interpolate to OH x OW. */
static kdx_status interp_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    const kdx_edge *e = &n->next[0];
    return interp_adjoint(g, e->shape[e->ndim - 2], e->shape[e->ndim - 1], (kdx_interp_mode)n->ip[0], (int)n->ip[1],
                          n->p[0], n->p[1], &gin[0]);
}

static kdx_status interp_adjoint_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    const kdx_edge *e = &n->next[0];
    return kdx_interpolate(g, e->shape[e->ndim - 2], e->shape[e->ndim - 1], (kdx_interp_mode)n->ip[0], (int)n->ip[1],
                           n->p[0], n->p[1], &gin[0]);
}

/* g [..., OH, OW] added back into [..., H, W] through the taps that
   interpolating H x W to OH x OW used. */
static kdx_status interp_adjoint(const kdx_tensor *g, int64_t H, int64_t W, kdx_interp_mode mode, int align,
                                 double sh, double sw, kdx_tensor **out)
{
    const char *const fname = "interpolate_backward";
    KDX_TRY(interp_check(fname, g, H, W, mode, align, sh, sw, out));
    bool was = kdx__grad_pause();
    kdx_status s = interp_run(fname, g, 1, H, W, g->shape[g->ndim - 2], g->shape[g->ndim - 1], mode, align, sh, sw,
                              out);
    kdx__grad_restore(was);
    return interp_record(fname, interp_adjoint_backward, g, mode, align, sh, sw, s, out);
}

kdx_status kdx_interpolate(const kdx_tensor *x, int64_t oh, int64_t ow, kdx_interp_mode mode, int align_corners,
                           double scale_h, double scale_w, kdx_tensor **out)
{
    const char *const fname = "interpolate";
    KDX_TRY(interp_check(fname, x, oh, ow, mode, align_corners, scale_h, scale_w, out));
    bool was = kdx__grad_pause();
    kdx_status s = interp_run(fname, x, 0, x->shape[x->ndim - 2], x->shape[x->ndim - 1], oh, ow, mode, align_corners,
                              scale_h, scale_w, out);
    kdx__grad_restore(was);
    return interp_record(fname, interp_backward, x, mode, align_corners, scale_h, scale_w, s, out);
}

/* ==== pad ============================================================================ */

/* Source coordinate of output coordinate o along a dim of size n padded by lo
   on the left; -1 for a constant-filled position. */
static int64_t pad_src(int64_t o, int64_t lo, int64_t n, kdx_pad_mode mode)
{
    int64_t i = o - lo;
    if (i >= 0 && i < n) return i;
    switch (mode) {
    case KDX_PAD_REFLECT: return i < 0 ? -i : 2 * (n - 1) - i;
    case KDX_PAD_REPLICATE: return i < 0 ? 0 : n - 1;
    default: return -1;
    }
}

typedef struct pad_job {
    const char *x;
    char *y;
    int nd;
    const int64_t *ishape, *oshape, *lo; /* lo[d]: left pad of dim d (0 if unpadded) */
    kdx_pad_mode mode;
    size_t es;
    uint64_t fill; /* the constant's bits, in the low es bytes */
} pad_job;

/* Output element o of a last-dim row: the fill constant or a source element. */
static void pad_put(const pad_job *j, char *dst, const char *src, int64_t o, int64_t in_last)
{
    int64_t i = src ? pad_src(o, j->lo[j->nd - 1], in_last, j->mode) : -1;
    if (i < 0) memcpy(dst + (size_t)o * j->es, &j->fill, j->es);
    else memcpy(dst + (size_t)o * j->es, src + (size_t)i * j->es, j->es);
}

static void pad_range(void *ud, int64_t lo, int64_t hi)
{
    const pad_job *j = ud;
    int nd = j->nd;
    int64_t in_last = j->ishape[nd - 1], out_last = j->oshape[nd - 1], lo_last = j->lo[nd - 1];
    /* Output columns [a, b) copy one contiguous run of the source row. */
    int64_t a = kdx__max64(0, kdx__min64(lo_last, out_last)), b = kdx__max64(a, kdx__min64(lo_last + in_last, out_last));
    for (int64_t r = lo; r < hi; r++) {
        /* Source row of output row r (its coordinates in dims 0..nd-2). */
        int64_t rem = r, src_row = 0, mul = 1;
        bool filled = false;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t o = rem % j->oshape[d], i = pad_src(o, j->lo[d], j->ishape[d], j->mode);
            rem /= j->oshape[d];
            if (i < 0) filled = true;
            src_row += i * mul;
            mul *= j->ishape[d];
        }
        char *dst = j->y + (size_t)(r * out_last) * j->es;
        const char *src = filled ? NULL : j->x + (size_t)(src_row * in_last) * j->es;
        if (!src) {
            for (int64_t o = 0; o < out_last; o++) pad_put(j, dst, NULL, o, in_last);
            continue;
        }
        for (int64_t o = 0; o < a; o++) pad_put(j, dst, src, o, in_last);
        if (b > a) memcpy(dst + (size_t)a * j->es, src + (size_t)(a - lo_last) * j->es, (size_t)(b - a) * j->es);
        for (int64_t o = b; o < out_last; o++) pad_put(j, dst, src, o, in_last);
    }
}

/* Output shape and left pads of padding a tensor of shape by pads. */
static void pad_geom(int nd, const int64_t *shape, const int64_t *pads, int npads, int64_t *oshape, int64_t *lo)
{
    for (int d = 0; d < nd; d++) {
        oshape[d] = shape[d];
        lo[d] = 0;
    }
    for (int k = 0; k < npads / 2; k++) {
        int d = nd - 1 - k;
        oshape[d] = shape[d] + pads[2 * k] + pads[2 * k + 1];
        lo[d] = pads[2 * k];
    }
}

static kdx_status pad_check(const kdx_tensor *x, const int64_t *pads, int npads, kdx_pad_mode mode, double value,
                            int64_t *oshape, int64_t *lo)
{
    KDX_TRY(kdx__arg("pad", "x", x));
    if (mode != KDX_PAD_CONSTANT && mode != KDX_PAD_REFLECT && mode != KDX_PAD_REPLICATE)
        return kdx_fail(KDX_EINVAL, "pad: unknown mode %d", (int)mode);
    if (npads < 0 || npads % 2 != 0 || (npads > 0 && !pads))
        return kdx_fail(KDX_EINVAL, "pad: pads must be a list of an even number of sizes, got %d", npads);
    if (npads / 2 > x->ndim)
        return kdx_fail(KDX_ESHAPE, "pad: %d pads pad %d dims but x %s has only %d", npads, npads / 2, kdx__shp(x),
                        x->ndim);
    if (mode == KDX_PAD_CONSTANT && x->dtype == KDX_DTYPE_I64 && !(value >= -9.2e18 && value <= 9.2e18))
        return kdx_fail(KDX_EINVAL, "pad: value %g does not fit int64 x", value);
    static const char *const names[] = {"constant", "reflect", "replicate"};
    for (int k = 0; k < npads / 2; k++) {
        int d = x->ndim - 1 - k;
        int64_t a = pads[2 * k], b = pads[2 * k + 1], n = x->shape[d];
        if (a < -KDX_OPT_MAX || a > KDX_OPT_MAX || b < -KDX_OPT_MAX || b > KDX_OPT_MAX)
            return kdx_fail(KDX_EINVAL, "pad: pads (%lld,%lld) are too large", (long long)a, (long long)b);
        if (mode == KDX_PAD_REFLECT && (a >= n || b >= n))
            return kdx_fail(KDX_ESHAPE, "pad: reflect pads (%lld,%lld) must be smaller than the padded size %lld (x %s)",
                            (long long)a, (long long)b, (long long)n, kdx__shp(x));
        if (mode != KDX_PAD_CONSTANT && n < 1)
            return kdx_fail(KDX_ESHAPE, "pad: %s mode needs non-empty padded dims, x is %s", names[mode], kdx__shp(x));
        if (n + a + b < (mode == KDX_PAD_CONSTANT ? 0 : 1))
            return kdx_fail(KDX_ESHAPE, "pad: size %lld of x %s with pads (%lld,%lld) gives size %lld",
                            (long long)n, kdx__shp(x), (long long)a, (long long)b, (long long)(n + a + b));
    }
    pad_geom(x->ndim, x->shape, pads, npads, oshape, lo);
    return KDX_OK;
}

static kdx_status pad_fwd(const kdx_tensor *x, const int64_t *pads, int npads, kdx_pad_mode mode, double value,
                          kdx_tensor **out)
{
    int64_t oshape[KDX_MAX_DIMS], lo[KDX_MAX_DIMS];
    KDX_TRY(pad_check(x, pads, npads, mode, value, oshape, lo));
    if (!out) return kdx_fail(KDX_EINVAL, "pad: out is NULL");
    if (npads == 0) return kdx_clone(x, out);
    kdx_tensor *xc = NULL, *y = NULL;
    kdx_status s = kdx_contiguous(x, &xc);
    if (s == KDX_OK) s = kdx__new("pad", x->dtype, x->ndim, oshape, &y);
    if (s != KDX_OK) {
        KDX_RELEASE(xc, y);
        return s;
    }
    pad_job j = {kdx__base(xc), kdx__base(y), x->ndim, x->shape, oshape, lo, mode, kdx_dtype_size(x->dtype), 0};
    if (x->dtype == KDX_DTYPE_F32) {
        float f = (float)value;
        memcpy(&j.fill, &f, sizeof f);
    } else if (x->dtype == KDX_DTYPE_F64) {
        memcpy(&j.fill, &value, sizeof value);
    } else {
        int64_t v = (int64_t)value;
        memcpy(&j.fill, &v, sizeof v);
    }
    int64_t out_last = oshape[x->ndim - 1];
    if (out_last > 0) {
        int64_t rows = kdx__numel(x->ndim, oshape) / out_last;
        kdx__parallel_for(rows, kdx__grain(out_last), pad_range, &j);
    }
    kdx_tensor_release(xc);
    *out = y;
    return KDX_OK;
}

/* Reflect and replicate padding's adjoint: every output's gradient added to
   the input element it copied. Blocks of the unpadded leading dims are
   independent, so they are spread over the threads; within a block rows
   share sources and are summed in order. */
#define DEF_PAD_ADJOINT(T, S)                                                                 \
    static void pad_adjoint_block_##S(const pad_job *j, const T *gy, T *gx, int npad)        \
    {                                                                                         \
        int nd = j->nd, first = nd - npad; /* the padded dims are first..nd-1 */              \
        int64_t in_last = j->ishape[nd - 1], out_last = j->oshape[nd - 1];                     \
        int64_t rows = kdx__numel(npad - 1, j->oshape + first);                               \
        for (int64_t r = 0; r < rows; r++, gy += out_last) {                                  \
            int64_t rem = r, src_row = 0, mul = 1;                                            \
            for (int d = nd - 2; d >= first; d--) {                                           \
                src_row += pad_src(rem % j->oshape[d], j->lo[d], j->ishape[d], j->mode) * mul; \
                rem /= j->oshape[d];                                                          \
                mul *= j->ishape[d];                                                          \
            }                                                                                 \
            T *dst = gx + src_row * in_last;                                                  \
            for (int64_t o = 0; o < out_last; o++)                                            \
                dst[pad_src(o, j->lo[nd - 1], in_last, j->mode)] += gy[o];                    \
        }                                                                                     \
    }
DEF_PAD_ADJOINT(float, f32)
DEF_PAD_ADJOINT(double, f64)

typedef struct pad_adjoint_job {
    const pad_job *p;
    int npad; /* padded (trailing) dims */
    int64_t in_block, out_block;
} pad_adjoint_job;

static void pad_adjoint_range(void *ud, int64_t lo, int64_t hi)
{
    const pad_adjoint_job *a = ud;
    const pad_job *j = a->p;
    for (int64_t b = lo; b < hi; b++) {
        const char *gy = j->x + (size_t)(b * a->out_block) * j->es;
        char *gx = j->y + (size_t)(b * a->in_block) * j->es;
        if (j->es == sizeof(float)) pad_adjoint_block_f32(j, (const float *)gy, (float *)gx, a->npad);
        else pad_adjoint_block_f64(j, (const double *)gy, (double *)gx, a->npad);
    }
}

static kdx_status pad_adjoint(const kdx_tensor *g, const int64_t *pads, int npads, kdx_pad_mode mode, int nd,
                              const int64_t *ishape, kdx_tensor **out);

/* Node parameters: ip[0..] the pads, p[0] their count, p[1] the mode. */
static kdx_status pad_record(const char *name, kdx_backward_fn bw, const kdx_tensor *x, const int64_t *pads,
                             int npads, kdx_pad_mode mode, kdx_tensor **out)
{
    kdx_node *n;
    KDX_TRY(kdx__record(name, bw, 1, &x, out, &n));
    for (int i = 0; i < npads; i++) n->ip[i] = pads[i];
    n->p[0] = npads, n->p[1] = mode;
    return KDX_OK;
}

/* The pair's gradients: pad's is the adjoint back to x's shape, the
   adjoint's is pad again. */
static kdx_status pad_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    return pad_adjoint(g, n->ip, (int)n->p[0], (kdx_pad_mode)n->p[1], n->next[0].ndim, n->next[0].shape, &gin[0]);
}

static kdx_status pad_adjoint_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    return kdx_pad(g, n->ip, (int)n->p[0], (kdx_pad_mode)n->p[1], 0, &gin[0]);
}

/* g, of the padded shape, summed back into ishape. */
static kdx_status pad_adjoint(const kdx_tensor *g, const int64_t *pads, int npads, kdx_pad_mode mode, int nd,
                              const int64_t *ishape, kdx_tensor **out)
{
    const char *const fname = "pad_backward";
    int64_t oshape[KDX_MAX_DIMS], lo[KDX_MAX_DIMS];
    pad_geom(nd, ishape, pads, npads, oshape, lo);
    KDX_TRY(kdx__check_float(fname, "gradient", g));
    if (g->ndim != nd || memcmp(g->shape, oshape, (size_t)nd * sizeof *oshape))
        return kdx_fail(KDX_ESHAPE, "%s: gradient %s does not have the padded shape", fname, kdx__shp(g));
    kdx_tensor *gc = NULL, *y = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = kdx_contiguous(g, &gc);
    kdx__grad_restore(was);
    if (s == KDX_OK) s = kdx__new(fname, g->dtype, nd, ishape, &y);
    if (s != KDX_OK) {
        KDX_RELEASE(gc, y);
        return s;
    }
    pad_job j = {kdx__base(gc), kdx__base(y), nd, ishape, oshape, lo, mode, kdx_dtype_size(g->dtype), 0};
    int npad = npads / 2;
    pad_adjoint_job a = {&j, npad, kdx__numel(npad, ishape + nd - npad), kdx__numel(npad, oshape + nd - npad)};
    if (a.in_block > 0 && a.out_block > 0)
        kdx__parallel_for(kdx__numel(nd - npad, ishape), kdx__grain(a.out_block), pad_adjoint_range, &a);
    kdx_tensor_release(gc);
    *out = y;
    if (!kdx__needs_node(1, &g)) return KDX_OK;
    return pad_record(fname, pad_adjoint_backward, g, pads, npads, mode, out);
}

/* Constant padding is linear and its adjoint is padding by the opposite
   amounts (cropping what was added). ip holds the pads, p[0] their count. */
static kdx_status pad_constant_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    int np = (int)n->p[0];
    int64_t neg[2 * KDX_MAX_DIMS];
    for (int i = 0; i < np; i++) neg[i] = -n->ip[i];
    return kdx_pad(g, neg, np, KDX_PAD_CONSTANT, 0, &gin[0]);
}

kdx_status kdx_pad(const kdx_tensor *x, const int64_t *pads, int npads, kdx_pad_mode mode, double value,
                   kdx_tensor **out)
{
    bool was = kdx__grad_pause();
    kdx_status s = pad_fwd(x, pads, npads, mode, value, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !kdx__needs_node(1, &x)) return s;
    /* no pads: a copy, whose gradient is the constant case's (a copy back) */
    bool linear_copy = mode == KDX_PAD_CONSTANT || npads == 0;
    return pad_record("pad", linear_copy ? pad_constant_backward : pad_backward, x, pads, npads, mode, out);
}
