/* op_augment.c — data augmentation on a batch x [N,C,H,W] (or one image
   [C,H,W], a batch of one): random crop of a padded image, horizontal flip,
   affine warp (rotation about the centre, translation, scale; bilinear, as
   torchvision's RandomAffine), Gaussian noise, random erasing (torchvision's
   RandomErasing) and per-channel normalisation.

   Every random op first draws all samples' parameters from the generator,
   serially and in sample order, and only then applies them in parallel, so a
   seed gives the same batch at any thread count. Noise and random erasing
   values come from one generator per sample, seeded from the main one in that
   serial pass. Each random op has a twin that takes the parameters (offsets,
   flip mask, affine parameters, boxes) instead of drawing them; the random op
   draws them and calls the twin's kernel.

   These ops run on data, not inside a model: they are not differentiable and
   refuse an x that requires grad while grad mode is on (under no_grad the
   result simply has no graph). */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>

/* ==== shared ======================================================================== */

/* A batch's sizes; [C,H,W] counts as N = 1. */
typedef struct aug_dims {
    int64_t N, C, H, W;
} aug_dims;

static kdx_status aug_check(const char *fname, const kdx_tensor *x, kdx_tensor **out, aug_dims *d)
{
    KDX_TRY(kdx__check_planes(fname, x));
    if (!out) return kdx_fail(KDX_EINVAL, "%s: out is NULL", fname);
    if (kdx_grad_enabled() && kdx_tensor_requires_grad(x))
        return kdx_fail(KDX_ESTATE,
                        "%s: x requires grad, but augmentations are not differentiable; detach x or turn grad "
                        "mode off", fname);
    int nd = x->ndim;
    d->N = nd == 4 ? x->shape[0] : 1;
    d->C = x->shape[nd - 3], d->H = x->shape[nd - 2], d->W = x->shape[nd - 1];
    return KDX_OK;
}

/* Per-sample parameters: N rows of k doubles, in one engine block. */
typedef struct aug_params {
    double *v;
    size_t bytes;
} aug_params;

static kdx_status params_alloc(const char *fname, int64_t n, int k, aug_params *p)
{
    p->bytes = (size_t)(n * k + 1) * sizeof(double);
    p->v = kdx__malloc(p->bytes);
    return p->v ? KDX_OK : kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
}

static void params_free(aug_params *p) { kdx__free(p->v, p->bytes); }

/* Reads t, which must be [n] (k == 0) or [n,k] (int64 when need_int), into p. */
static kdx_status params_read(const char *fname, const char *arg, const kdx_tensor *t, int64_t n, int k,
                              int need_int, aug_params *p)
{
    KDX_TRY(kdx__arg(fname, arg, t));
    if (k == 0 ? t->ndim != 1 || t->shape[0] != n : t->ndim != 2 || t->shape[0] != n || t->shape[1] != k) {
        if (k == 0) return kdx_fail(KDX_ESHAPE, "%s: %s must be [%lld], got %s", fname, arg, (long long)n, kdx__shp(t));
        return kdx_fail(KDX_ESHAPE, "%s: %s must be [%lld,%d], got %s", fname, arg, (long long)n, k, kdx__shp(t));
    }
    if (need_int && t->dtype != KDX_DTYPE_I64)
        return kdx_fail(KDX_EDTYPE, "%s: %s must be int64, got %s", fname, arg, kdx_dtype_name(t->dtype));
    KDX_TRY(params_alloc(fname, n, k ? k : 1, p));
    kdx_tensor *t64 = NULL, *tc = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = kdx_to(t, KDX_DTYPE_F64, &t64);
    if (s == KDX_OK) s = kdx_contiguous(t64, &tc);
    kdx__grad_restore(was);
    if (s == KDX_OK) memcpy(p->v, kdx__base(tc), (size_t)(n * (k ? k : 1)) * sizeof(double));
    KDX_RELEASE(t64, tc);
    if (s != KDX_OK) params_free(p);
    return s;
}

/* A new [n] (k == 0) or [n,k] tensor of dtype dt holding p. */
static kdx_status params_export(const char *fname, const aug_params *p, int64_t n, int k, kdx_dtype dt,
                                kdx_tensor **out)
{
    int64_t shape[2] = {n, k};
    KDX_TRY(kdx__new(fname, dt, k ? 2 : 1, shape, out));
    int64_t m = n * (k ? k : 1);
    if (dt == KDX_DTYPE_I64)
        for (int64_t i = 0; i < m; i++) ((int64_t *)kdx__base(*out))[i] = (int64_t)p->v[i];
    else
        memcpy(kdx__base(*out), p->v, (size_t)m * sizeof(double));
    return KDX_OK;
}

/* A contiguous x and a new output of x's dtype with its last two dims set to oh x ow. */
static kdx_status aug_buffers(const char *fname, const kdx_tensor *x, int64_t oh, int64_t ow, kdx_tensor **xc,
                              kdx_tensor **y)
{
    int64_t shape[4];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[x->ndim - 2] = oh, shape[x->ndim - 1] = ow;
    *xc = *y = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = kdx_contiguous(x, xc);
    kdx__grad_restore(was);
    if (s == KDX_OK) s = kdx__new_raw(fname, x->dtype, x->ndim, shape, y);
    if (s != KDX_OK) {
        KDX_RELEASE(*xc, *y);
        *xc = *y = NULL;
    }
    return s;
}

/* value as x's element type, in the low bytes of a word. */
static uint64_t fill_bits(kdx_dtype dt, double value)
{
    uint64_t bits = 0;
    if (dt == KDX_DTYPE_F32) {
        float f = (float)value;
        memcpy(&bits, &f, sizeof f);
    } else {
        memcpy(&bits, &value, sizeof value);
    }
    return bits;
}

/* One generator per sample (NULL where it draws none), freed together. */
static void gens_free(kdx_generator **gens, int64_t n)
{
    if (!gens) return;
    for (int64_t i = 0; i < n; i++) kdx_generator_free(gens[i]);
    kdx__free(gens, (size_t)(n + 1) * sizeof *gens);
}

static kdx_status gens_alloc(const char *fname, int64_t n, kdx_generator ***gens)
{
    *gens = kdx__malloc((size_t)(n + 1) * sizeof **gens);
    return *gens ? KDX_OK : kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
}

/* gens[i] = a generator seeded with g's next output. */
static kdx_status gens_draw(const char *fname, kdx_generator *g, kdx_generator **gens, int64_t i)
{
    if (kdx_generator_new(kdx_generator_next(g), &gens[i]) != KDX_OK)
        return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    return KDX_OK;
}

static int finite2(const double v[2]) { return isfinite(v[0]) && isfinite(v[1]); }

/* ==== crop of a padded image ========================================================= */

typedef struct crop_job {
    const char *x;
    char *y;
    aug_dims d;
    int64_t ph, pw, oh, ow;
    const double *off; /* per sample: top, left in the padded image */
    size_t es;
    uint64_t fill;
} crop_job;

static void put_fill(const crop_job *j, char *dst, int64_t a, int64_t b)
{
    if (j->es == sizeof(float)) {
        float v;
        memcpy(&v, &j->fill, sizeof v);
        for (int64_t o = a; o < b; o++) ((float *)dst)[o] = v;
    } else {
        double v;
        memcpy(&v, &j->fill, sizeof v);
        for (int64_t o = a; o < b; o++) ((double *)dst)[o] = v;
    }
}

static void crop_range(void *ud, int64_t lo, int64_t hi)
{
    const crop_job *j = ud;
    const aug_dims *d = &j->d;
    size_t es = j->es;
    for (int64_t p = lo; p < hi; p++) {
        int64_t n = p / d->C;
        /* the source pixel of output (0, 0); negative inside the padding */
        int64_t top = (int64_t)j->off[2 * n] - j->ph, left = (int64_t)j->off[2 * n + 1] - j->pw;
        const char *src = j->x + (size_t)(p * d->H * d->W) * es;
        char *dst = j->y + (size_t)(p * j->oh * j->ow) * es;
        /* output columns [a, b) read source columns [a + left, b + left) */
        int64_t a = kdx__max64(0, kdx__min64(-left, j->ow)), b = kdx__max64(a, kdx__min64(d->W - left, j->ow));
        for (int64_t i = 0; i < j->oh; i++, dst += (size_t)j->ow * es) {
            int64_t r = top + i;
            if (r < 0 || r >= d->H) {
                put_fill(j, dst, 0, j->ow);
                continue;
            }
            put_fill(j, dst, 0, a);
            if (b > a) memcpy(dst + (size_t)a * es, src + (size_t)(r * d->W + a + left) * es, (size_t)(b - a) * es);
            put_fill(j, dst, b, j->ow);
        }
    }
}

/* Padded sizes and the output size (size NULL or 0: the input's). */
static kdx_status crop_geom(const char *fname, const aug_dims *d, const int64_t pad[2], const int64_t size[2],
                            double fill, int64_t *ph, int64_t *pw, int64_t *oh, int64_t *ow)
{
    *ph = pad ? pad[0] : 0, *pw = pad ? pad[1] : 0;
    if (*ph < 0 || *pw < 0 || *ph > KDX_OPT_MAX || *pw > KDX_OPT_MAX)
        return kdx_fail(KDX_EINVAL, "%s: padding must be >= 0, got (%lld,%lld)", fname, (long long)*ph,
                        (long long)*pw);
    *oh = size && size[0] ? size[0] : d->H, *ow = size && size[1] ? size[1] : d->W;
    int64_t hp = d->H + 2 * *ph, wp = d->W + 2 * *pw;
    if (*oh < 1 || *ow < 1 || *oh > hp || *ow > wp)
        return kdx_fail(KDX_ESHAPE, "%s: crop size %lldx%lld must lie in 1x1..%lldx%lld (the padded image)", fname,
                        (long long)*oh, (long long)*ow, (long long)hp, (long long)wp);
    if (!isfinite(fill)) return kdx_fail(KDX_EINVAL, "%s: fill must be finite, got %g", fname, fill);
    return KDX_OK;
}

static kdx_status crop_apply(const char *fname, const kdx_tensor *x, const aug_dims *d, int64_t ph, int64_t pw,
                             int64_t oh, int64_t ow, const double *off, double fill, kdx_tensor **out)
{
    kdx_tensor *xc, *y;
    KDX_TRY(aug_buffers(fname, x, oh, ow, &xc, &y));
    crop_job j = {kdx__base(xc), kdx__base(y), *d, ph, pw, oh, ow, off, kdx_dtype_size(x->dtype),
                  fill_bits(x->dtype, fill)};
    kdx__parallel_for(d->N * d->C, kdx__grain(oh * ow), crop_range, &j);
    kdx_tensor_release(xc);
    *out = y;
    return KDX_OK;
}

kdx_status kdx_augment_crop(const kdx_tensor *x, const kdx_tensor *offsets, const int64_t pad[2],
                            const int64_t size[2], double fill, kdx_tensor **out)
{
    const char *const fname = "crop";
    aug_dims d;
    int64_t ph, pw, oh, ow;
    KDX_TRY(aug_check(fname, x, out, &d));
    KDX_TRY(crop_geom(fname, &d, pad, size, fill, &ph, &pw, &oh, &ow));
    aug_params p = {NULL, 0};
    KDX_TRY(params_read(fname, "offsets", offsets, d.N, 2, 1, &p));
    for (int64_t n = 0; n < d.N; n++) {
        double t = p.v[2 * n], l = p.v[2 * n + 1];
        int64_t tmax = d.H + 2 * ph - oh, lmax = d.W + 2 * pw - ow;
        if (t < 0 || l < 0 || t > (double)tmax || l > (double)lmax) {
            params_free(&p);
            return kdx_fail(KDX_EINDEX, "%s: offsets (%g,%g) lie outside (0,0)..(%lld,%lld)", fname, t, l,
                            (long long)tmax, (long long)lmax);
        }
    }
    kdx_status s = crop_apply(fname, x, &d, ph, pw, oh, ow, p.v, fill, out);
    params_free(&p);
    return s;
}

kdx_status kdx_augment_random_crop(const kdx_tensor *x, const int64_t pad[2], const int64_t size[2], double fill,
                                   kdx_generator *g, kdx_tensor **out, kdx_tensor **offsets)
{
    const char *const fname = "random_crop";
    aug_dims d;
    int64_t ph, pw, oh, ow;
    KDX_TRY(aug_check(fname, x, out, &d));
    KDX_TRY(crop_geom(fname, &d, pad, size, fill, &ph, &pw, &oh, &ow));
    if (!g) g = kdx_default_generator();
    aug_params p = {NULL, 0};
    KDX_TRY(params_alloc(fname, d.N, 2, &p));
    for (int64_t n = 0; n < d.N; n++) {
        p.v[2 * n] = (double)kdx_generator_below(g, (uint64_t)(d.H + 2 * ph - oh + 1));
        p.v[2 * n + 1] = (double)kdx_generator_below(g, (uint64_t)(d.W + 2 * pw - ow + 1));
    }
    kdx_status s = crop_apply(fname, x, &d, ph, pw, oh, ow, p.v, fill, out);
    if (s == KDX_OK && offsets && (s = params_export(fname, &p, d.N, 2, KDX_DTYPE_I64, offsets)) != KDX_OK) {
        kdx_tensor_release(*out);
        *out = NULL;
    }
    params_free(&p);
    return s;
}

/* ==== horizontal flip =================================================================== */

typedef struct flip_job {
    const char *x;
    char *y;
    aug_dims d;
    const double *mask; /* NULL: flip all */
    kdx_dtype dt;
} flip_job;

#define DEF_FLIP_PLANE(T, S)                                                 \
    static void flip_plane_##S(const T *x, T *y, int64_t H, int64_t W)       \
    {                                                                        \
        for (int64_t i = 0; i < H; i++, x += W, y += W)                      \
            for (int64_t k = 0; k < W; k++) y[k] = x[W - 1 - k];             \
    }
DEF_FLIP_PLANE(float, f32)
DEF_FLIP_PLANE(double, f64)

static void flip_range(void *ud, int64_t lo, int64_t hi)
{
    const flip_job *j = ud;
    const aug_dims *d = &j->d;
    size_t es = kdx_dtype_size(j->dt), plane = (size_t)(d->H * d->W);
    for (int64_t p = lo; p < hi; p++) {
        const char *src = j->x + (size_t)p * plane * es;
        char *dst = j->y + (size_t)p * plane * es;
        if (j->mask && j->mask[p / d->C] == 0) memcpy(dst, src, plane * es);
        else if (j->dt == KDX_DTYPE_F32) flip_plane_f32((const float *)src, (float *)dst, d->H, d->W);
        else flip_plane_f64((const double *)src, (double *)dst, d->H, d->W);
    }
}

static kdx_status flip_apply(const char *fname, const kdx_tensor *x, const aug_dims *d, const double *mask,
                             kdx_tensor **out)
{
    kdx_tensor *xc, *y;
    KDX_TRY(aug_buffers(fname, x, d->H, d->W, &xc, &y));
    flip_job j = {kdx__base(xc), kdx__base(y), *d, mask, x->dtype};
    kdx__parallel_for(d->N * d->C, kdx__grain(d->H * d->W), flip_range, &j);
    kdx_tensor_release(xc);
    *out = y;
    return KDX_OK;
}

kdx_status kdx_augment_hflip(const kdx_tensor *x, const kdx_tensor *mask, kdx_tensor **out)
{
    const char *const fname = "hflip";
    aug_dims d;
    KDX_TRY(aug_check(fname, x, out, &d));
    if (!mask) return flip_apply(fname, x, &d, NULL, out);
    aug_params p = {NULL, 0};
    KDX_TRY(params_read(fname, "mask", mask, d.N, 0, 0, &p));
    kdx_status s = flip_apply(fname, x, &d, p.v, out);
    params_free(&p);
    return s;
}

kdx_status kdx_augment_random_hflip(const kdx_tensor *x, double prob, kdx_generator *g, kdx_tensor **out,
                                    kdx_tensor **mask)
{
    const char *const fname = "random_hflip";
    aug_dims d;
    KDX_TRY(aug_check(fname, x, out, &d));
    if (!(prob >= 0 && prob <= 1)) return kdx_fail(KDX_EINVAL, "%s: p must be in [0, 1], got %g", fname, prob);
    if (!g) g = kdx_default_generator();
    aug_params p = {NULL, 0};
    KDX_TRY(params_alloc(fname, d.N, 1, &p));
    for (int64_t n = 0; n < d.N; n++) p.v[n] = kdx_generator_uniform(g) < prob;
    kdx_status s = flip_apply(fname, x, &d, p.v, out);
    if (s == KDX_OK && mask && (s = params_export(fname, &p, d.N, 0, KDX_DTYPE_I64, mask)) != KDX_OK) {
        kdx_tensor_release(*out);
        *out = NULL;
    }
    params_free(&p);
    return s;
}

/* ==== affine warp ======================================================================= */

/* Parameters per sample: angle (degrees, clockwise on screen), tx, ty
   (pixels; right and down), scale. As torchvision's F.affine on tensors, the
   output pixel at (i, j) samples the input at the inverse map of its offset
   from the centre ((H-1)/2, (W-1)/2) (rotation and scale about the centre,
   then translation). m receives that map in pixel indices:
   source col = m[0]*j + m[1]*i + m[2], source row = m[3]*j + m[4]*i + m[5]. */
static void affine_inverse(const double *prm, int64_t H, int64_t W, double *m)
{
    double rad = prm[0] * (3.14159265358979323846 / 180.0), tx = prm[1], ty = prm[2], sc = prm[3];
    double c = cos(rad), s = sin(rad), cx = (double)(W - 1) * 0.5, cy = (double)(H - 1) * 0.5;
    double a = c / sc, b = s / sc, cc = -s / sc, dd = c / sc;
    double e = a * -tx + b * -ty, f = cc * -tx + dd * -ty; /* in coordinates about the centre */
    m[0] = a, m[1] = b, m[2] = e + cx - a * cx - b * cy;
    m[3] = cc, m[4] = dd, m[5] = f + cy - cc * cx - dd * cy;
}

typedef struct affine_job {
    const char *x;
    char *y;
    aug_dims d;
    const double *m; /* 6 per sample, from affine_inverse */
    double fill;
    kdx_dtype dt;
} affine_job;

/* One output row i of sample planes x -> y (all C channels). Bilinear with
   zero padding, then torchvision's fill blend: the taps' in-bounds weight w
   gives out = sampled * w + (1 - w) * fill. */
#define DEF_AFFINE_ROW(T, S)                                                                           \
    static void affine_row_##S(const T *x, T *y, const aug_dims *d, const double *m, int64_t i,        \
                               double fill)                                                            \
    {                                                                                                  \
        int64_t H = d->H, W = d->W, plane = H * W;                                                     \
        for (int64_t k = 0; k < W; k++) {                                                              \
            double xs = m[0] * (double)k + m[1] * (double)i + m[2];                                    \
            double ys = m[3] * (double)k + m[4] * (double)i + m[5];                                    \
            T *dst = y + i * W + k;                                                                    \
            if (!(xs > -1 && xs < (double)W && ys > -1 && ys < (double)H)) { /* no tap inside */       \
                for (int64_t c = 0; c < d->C; c++) dst[c * plane] = (T)fill;                           \
                continue;                                                                              \
            }                                                                                          \
            double fx = floor(xs), fy = floor(ys), wx = xs - fx, wy = ys - fy;                         \
            int64_t x0 = (int64_t)fx, y0 = (int64_t)fy;                                                \
            double w[4] = {(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx};                \
            int64_t at[4] = {y0 * W + x0, y0 * W + x0 + 1, (y0 + 1) * W + x0, (y0 + 1) * W + x0 + 1}; \
            bool in[4] = {y0 >= 0 && x0 >= 0, y0 >= 0 && x0 + 1 < W, y0 + 1 < H && x0 >= 0,           \
                          y0 + 1 < H && x0 + 1 < W};                                                   \
            double mass = 0;                                                                           \
            for (int t = 0; t < 4; t++)                                                                \
                if (in[t]) mass += w[t];                                                               \
            for (int64_t c = 0; c < d->C; c++) {                                                       \
                const T *src = x + c * plane;                                                          \
                double v = 0;                                                                          \
                for (int t = 0; t < 4; t++)                                                            \
                    if (in[t]) v += w[t] * (double)src[at[t]];                                         \
                dst[c * plane] = (T)(v * mass + (1 - mass) * fill);                                    \
            }                                                                                          \
        }                                                                                              \
    }
DEF_AFFINE_ROW(float, f32)
DEF_AFFINE_ROW(double, f64)

static void affine_range(void *ud, int64_t lo, int64_t hi)
{
    const affine_job *j = ud;
    const aug_dims *d = &j->d;
    size_t es = kdx_dtype_size(j->dt), sample = (size_t)(d->C * d->H * d->W) * es;
    for (int64_t r = lo; r < hi; r++) {
        int64_t n = r / d->H, i = r % d->H;
        const char *src = j->x + (size_t)n * sample;
        char *dst = j->y + (size_t)n * sample;
        if (j->dt == KDX_DTYPE_F32) affine_row_f32((const float *)src, (float *)dst, d, j->m + 6 * n, i, j->fill);
        else affine_row_f64((const double *)src, (double *)dst, d, j->m + 6 * n, i, j->fill);
    }
}

/* prm: 4 per sample (angle, tx, ty, scale), already checked. */
static kdx_status affine_apply(const char *fname, const kdx_tensor *x, const aug_dims *d, const double *prm,
                               double fill, kdx_tensor **out)
{
    aug_params m = {NULL, 0};
    KDX_TRY(params_alloc(fname, d->N, 6, &m));
    for (int64_t n = 0; n < d->N; n++) affine_inverse(prm + 4 * n, d->H, d->W, m.v + 6 * n);
    kdx_tensor *xc, *y;
    kdx_status s = aug_buffers(fname, x, d->H, d->W, &xc, &y);
    if (s == KDX_OK) {
        affine_job j = {kdx__base(xc), kdx__base(y), *d, m.v, fill, x->dtype};
        kdx__parallel_for(d->N * d->H, kdx__grain(d->W * d->C * 4), affine_range, &j);
        kdx_tensor_release(xc);
        *out = y;
    }
    params_free(&m);
    return s;
}

kdx_affine_opts kdx_affine_opts_default(void)
{
    kdx_affine_opts o = {{0, 0}, {0, 0}, {1, 1}, 0};
    return o;
}

kdx_status kdx_augment_affine(const kdx_tensor *x, const kdx_tensor *params, double fill, kdx_tensor **out)
{
    const char *const fname = "affine";
    aug_dims d;
    KDX_TRY(aug_check(fname, x, out, &d));
    if (!isfinite(fill)) return kdx_fail(KDX_EINVAL, "%s: fill must be finite, got %g", fname, fill);
    aug_params p = {NULL, 0};
    KDX_TRY(params_read(fname, "params", params, d.N, 4, 0, &p));
    for (int64_t n = 0; n < d.N; n++) {
        const double *q = p.v + 4 * n;
        if (!(isfinite(q[0]) && isfinite(q[1]) && isfinite(q[2]) && q[3] > 0 && isfinite(q[3]))) {
            kdx_status s = kdx_fail(KDX_EINVAL, "%s: params (%g,%g,%g,%g) must be finite with scale > 0", fname,
                                    q[0], q[1], q[2], q[3]);
            params_free(&p);
            return s;
        }
    }
    kdx_status s = affine_apply(fname, x, &d, p.v, fill, out);
    params_free(&p);
    return s;
}

static kdx_status affine_opts_check(const char *fname, const kdx_affine_opts *o)
{
    if (!finite2(o->degrees) || o->degrees[0] > o->degrees[1])
        return kdx_fail(KDX_EINVAL, "%s: degrees must be a finite range lo <= hi, got (%g,%g)", fname, o->degrees[0],
                        o->degrees[1]);
    for (int k = 0; k < 2; k++)
        if (!(o->translate[k] >= 0 && o->translate[k] <= 1))
            return kdx_fail(KDX_EINVAL, "%s: translate fractions must be in [0, 1], got (%g,%g)", fname,
                            o->translate[0], o->translate[1]);
    if (!finite2(o->scale) || !(o->scale[0] > 0) || o->scale[0] > o->scale[1])
        return kdx_fail(KDX_EINVAL, "%s: scale must be a range 0 < lo <= hi, got (%g,%g)", fname, o->scale[0],
                        o->scale[1]);
    if (!isfinite(o->fill)) return kdx_fail(KDX_EINVAL, "%s: fill must be finite, got %g", fname, o->fill);
    return KDX_OK;
}

/* A uniform draw in [lo, hi), as torch's uniform_. */
static double draw_uniform(kdx_generator *g, double lo, double hi) { return lo + (hi - lo) * kdx_generator_uniform(g); }

kdx_status kdx_augment_random_affine(const kdx_tensor *x, const kdx_affine_opts *o, kdx_generator *g,
                                     kdx_tensor **out, kdx_tensor **params)
{
    const char *const fname = "random_affine";
    aug_dims d;
    KDX_TRY(aug_check(fname, x, out, &d));
    kdx_affine_opts def = kdx_affine_opts_default();
    if (!o) o = &def;
    KDX_TRY(affine_opts_check(fname, o));
    if (!g) g = kdx_default_generator();
    aug_params p = {NULL, 0};
    KDX_TRY(params_alloc(fname, d.N, 4, &p));
    double mx = o->translate[0] * (double)d.W, my = o->translate[1] * (double)d.H;
    for (int64_t n = 0; n < d.N; n++) {
        double *q = p.v + 4 * n;
        q[0] = draw_uniform(g, o->degrees[0], o->degrees[1]);
        /* whole pixels, rounded half to even as Python's round; + 0.0 turns -0 into 0 */
        q[1] = nearbyint(draw_uniform(g, -mx, mx)) + 0.0;
        q[2] = nearbyint(draw_uniform(g, -my, my)) + 0.0;
        q[3] = draw_uniform(g, o->scale[0], o->scale[1]);
    }
    kdx_status s = affine_apply(fname, x, &d, p.v, o->fill, out);
    if (s == KDX_OK && params && (s = params_export(fname, &p, d.N, 4, KDX_DTYPE_F64, params)) != KDX_OK) {
        kdx_tensor_release(*out);
        *out = NULL;
    }
    params_free(&p);
    return s;
}

/* ==== Gaussian noise ===================================================================== */

typedef struct noise_job {
    const char *x;
    char *y;
    int64_t per; /* elements per sample */
    kdx_generator **gens;
    double std;
    kdx_dtype dt;
} noise_job;

#define DEF_NOISE(T, S)                                                                     \
    static void noise_##S(const T *x, T *y, int64_t n, double std, kdx_generator *g)        \
    {                                                                                       \
        for (int64_t i = 0; i < n; i++) y[i] = (T)((double)x[i] + std * kdx_generator_normal(g)); \
    }
DEF_NOISE(float, f32)
DEF_NOISE(double, f64)

static void noise_range(void *ud, int64_t lo, int64_t hi)
{
    const noise_job *j = ud;
    size_t bytes = (size_t)j->per * kdx_dtype_size(j->dt);
    for (int64_t n = lo; n < hi; n++) {
        const char *src = j->x + (size_t)n * bytes;
        char *dst = j->y + (size_t)n * bytes;
        if (j->dt == KDX_DTYPE_F32) noise_f32((const float *)src, (float *)dst, j->per, j->std, j->gens[n]);
        else noise_f64((const double *)src, (double *)dst, j->per, j->std, j->gens[n]);
    }
}

kdx_status kdx_augment_noise(const kdx_tensor *x, double std, kdx_generator *g, kdx_tensor **out)
{
    const char *const fname = "noise";
    aug_dims d;
    KDX_TRY(aug_check(fname, x, out, &d));
    if (!(std >= 0) || !isfinite(std))
        return kdx_fail(KDX_EINVAL, "%s: std must be finite and >= 0, got %g", fname, std);
    if (!g) g = kdx_default_generator();
    kdx_generator **gens;
    KDX_TRY(gens_alloc(fname, d.N, &gens));
    kdx_status s = KDX_OK;
    for (int64_t n = 0; n < d.N && s == KDX_OK; n++) s = gens_draw(fname, g, gens, n);
    kdx_tensor *xc = NULL, *y = NULL;
    if (s == KDX_OK) s = aug_buffers(fname, x, d.H, d.W, &xc, &y);
    if (s == KDX_OK) {
        noise_job j = {kdx__base(xc), kdx__base(y), d.C * d.H * d.W, gens, std, x->dtype};
        kdx__parallel_for(d.N, kdx__grain(d.C * d.H * d.W * 8), noise_range, &j);
        kdx_tensor_release(xc);
        *out = y;
    }
    gens_free(gens, d.N);
    return s;
}

/* ==== erasing ============================================================================ */

typedef struct erase_job {
    char *y;
    aug_dims d;
    const double *box;    /* per sample: top, left, h, w (h or w 0: nothing) */
    kdx_generator **gens; /* random values: one generator per erased sample */
    const double *value;  /* else 1 or C values */
    int nvalue;
    kdx_dtype dt;
} erase_job;

#define DEF_ERASE(T, S)                                                                           \
    static void erase_##S(T *y, const erase_job *j, const double *b, kdx_generator *g)           \
    {                                                                                             \
        int64_t top = (int64_t)b[0], left = (int64_t)b[1], h = (int64_t)b[2], w = (int64_t)b[3]; \
        for (int64_t c = 0; c < j->d.C; c++) {                                                    \
            T v = g ? (T)0 : (T)j->value[j->nvalue > 1 ? c : 0];                                  \
            T *p = y + c * j->d.H * j->d.W + top * j->d.W + left;                                 \
            for (int64_t i = 0; i < h; i++, p += j->d.W)                                          \
                for (int64_t k = 0; k < w; k++) p[k] = g ? (T)kdx_generator_normal(g) : v;        \
        }                                                                                         \
    }
DEF_ERASE(float, f32)
DEF_ERASE(double, f64)

static void erase_range(void *ud, int64_t lo, int64_t hi)
{
    const erase_job *j = ud;
    size_t sample = (size_t)(j->d.C * j->d.H * j->d.W) * kdx_dtype_size(j->dt);
    for (int64_t n = lo; n < hi; n++) {
        const double *b = j->box + 4 * n;
        if (b[2] == 0 || b[3] == 0) continue;
        kdx_generator *g = j->gens ? j->gens[n] : NULL;
        if (j->dt == KDX_DTYPE_F32) erase_f32((float *)(j->y + (size_t)n * sample), j, b, g);
        else erase_f64((double *)(j->y + (size_t)n * sample), j, b, g);
    }
}

static kdx_status erase_value_check(const char *fname, const aug_dims *d, const double *value, int nvalue)
{
    if (nvalue == 0) return KDX_OK;
    if (!value || (nvalue != 1 && nvalue != d->C))
        return kdx_fail(KDX_EINVAL, "%s: value must hold 1 or %lld (channels) numbers, got %d", fname,
                        (long long)d->C, nvalue);
    for (int i = 0; i < nvalue; i++)
        if (!isfinite(value[i])) return kdx_fail(KDX_EINVAL, "%s: value must be finite, got %g", fname, value[i]);
    return KDX_OK;
}

/* box: 4 per sample, checked; gens: NULL unless nvalue == 0. Consumes gens. */
static kdx_status erase_apply(const kdx_tensor *x, const aug_dims *d, const double *box, kdx_generator **gens,
                              const double *value, int nvalue, kdx_tensor **out)
{
    kdx_tensor *y = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = kdx_clone(x, &y);
    kdx__grad_restore(was);
    if (s == KDX_OK) {
        erase_job j = {kdx__base(y), *d, box, gens, value, nvalue, x->dtype};
        kdx__parallel_for(d->N, kdx__grain(d->C * d->H * d->W / 4), erase_range, &j);
        *out = y;
    }
    gens_free(gens, d->N);
    return s;
}

kdx_status kdx_augment_erase(const kdx_tensor *x, const kdx_tensor *boxes, const double *value, int nvalue,
                             kdx_generator *g, kdx_tensor **out)
{
    const char *const fname = "erase";
    aug_dims d;
    KDX_TRY(aug_check(fname, x, out, &d));
    KDX_TRY(erase_value_check(fname, &d, value, nvalue));
    aug_params p = {NULL, 0};
    KDX_TRY(params_read(fname, "boxes", boxes, d.N, 4, 1, &p));
    kdx_status s = KDX_OK;
    for (int64_t n = 0; n < d.N && s == KDX_OK; n++) {
        const double *b = p.v + 4 * n;
        if (b[0] < 0 || b[1] < 0 || b[2] < 0 || b[3] < 0 || b[0] + b[2] > (double)d.H || b[1] + b[3] > (double)d.W)
            s = kdx_fail(KDX_EINDEX, "%s: box (%g,%g,%g,%g) does not fit a %lldx%lld image", fname, b[0], b[1],
                         b[2], b[3], (long long)d.H, (long long)d.W);
    }
    kdx_generator **gens = NULL;
    if (s == KDX_OK && nvalue == 0) {
        if (!g) g = kdx_default_generator();
        s = gens_alloc(fname, d.N, &gens);
        for (int64_t n = 0; n < d.N && s == KDX_OK; n++)
            if (p.v[4 * n + 2] > 0 && p.v[4 * n + 3] > 0) s = gens_draw(fname, g, gens, n);
    }
    if (s == KDX_OK) s = erase_apply(x, &d, p.v, gens, value, nvalue, out);
    else gens_free(gens, d.N);
    params_free(&p);
    return s;
}

kdx_erase_opts kdx_erase_opts_default(void)
{
    static const double zero = 0;
    kdx_erase_opts o = {0.5, {0.02, 0.33}, {0.3, 3.3}, &zero, 1};
    return o;
}

static kdx_status erase_opts_check(const char *fname, const aug_dims *d, const kdx_erase_opts *o)
{
    if (!(o->p >= 0 && o->p <= 1)) return kdx_fail(KDX_EINVAL, "%s: p must be in [0, 1], got %g", fname, o->p);
    if (!(o->scale[0] >= 0 && o->scale[0] <= o->scale[1] && o->scale[1] <= 1))
        return kdx_fail(KDX_EINVAL, "%s: scale must be a range 0 <= lo <= hi <= 1, got (%g,%g)", fname, o->scale[0],
                        o->scale[1]);
    if (!(o->ratio[0] > 0 && o->ratio[0] <= o->ratio[1] && isfinite(o->ratio[1])))
        return kdx_fail(KDX_EINVAL, "%s: ratio must be a range 0 < lo <= hi, got (%g,%g)", fname, o->ratio[0],
                        o->ratio[1]);
    return erase_value_check(fname, d, o->value, o->nvalue);
}

/* torchvision's RandomErasing.get_params for one sample: up to 10 tries at a
   rectangle of a random area fraction and log-uniform aspect ratio h/w that
   fits strictly inside; b = {0,0,0,0} when the coin says no or all tries fail. */
static void erase_draw(kdx_generator *g, const aug_dims *d, const kdx_erase_opts *o, double *b)
{
    b[0] = b[1] = b[2] = b[3] = 0;
    if (!(kdx_generator_uniform(g) < o->p)) return;
    double area = (double)(d->H * d->W), lr0 = log(o->ratio[0]), lr1 = log(o->ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double erase_area = area * draw_uniform(g, o->scale[0], o->scale[1]);
        double aspect = exp(draw_uniform(g, lr0, lr1));
        double h = nearbyint(sqrt(erase_area * aspect)), w = nearbyint(sqrt(erase_area / aspect));
        if (!(h < (double)d->H && w < (double)d->W)) continue;
        b[0] = (double)kdx_generator_below(g, (uint64_t)((double)d->H - h + 1));
        b[1] = (double)kdx_generator_below(g, (uint64_t)((double)d->W - w + 1));
        b[2] = h, b[3] = w;
        if (h == 0 || w == 0) b[0] = b[1] = b[2] = b[3] = 0; /* an empty box erases nothing */
        return;
    }
}

kdx_status kdx_augment_random_erase(const kdx_tensor *x, const kdx_erase_opts *o, kdx_generator *g,
                                    kdx_tensor **out, kdx_tensor **boxes)
{
    const char *const fname = "random_erasing";
    aug_dims d;
    KDX_TRY(aug_check(fname, x, out, &d));
    kdx_erase_opts def = kdx_erase_opts_default();
    if (!o) o = &def;
    KDX_TRY(erase_opts_check(fname, &d, o));
    if (!g) g = kdx_default_generator();
    aug_params p = {NULL, 0};
    KDX_TRY(params_alloc(fname, d.N, 4, &p));
    kdx_generator **gens = NULL;
    kdx_status s = o->nvalue == 0 ? gens_alloc(fname, d.N, &gens) : KDX_OK;
    for (int64_t n = 0; n < d.N && s == KDX_OK; n++) {
        double *b = p.v + 4 * n;
        erase_draw(g, &d, o, b);
        if (gens && b[2] > 0 && b[3] > 0) s = gens_draw(fname, g, gens, n);
    }
    if (s == KDX_OK) s = erase_apply(x, &d, p.v, gens, o->value, o->nvalue, out);
    else gens_free(gens, d.N);
    if (s == KDX_OK && boxes && (s = params_export(fname, &p, d.N, 4, KDX_DTYPE_I64, boxes)) != KDX_OK) {
        kdx_tensor_release(*out);
        *out = NULL;
    }
    params_free(&p);
    return s;
}

/* ==== normalise ========================================================================== */

typedef struct norm_job {
    const char *x;
    char *y;
    aug_dims d;
    const double *mean, *std;
    int n; /* 1 or C */
    kdx_dtype dt;
} norm_job;

/* (x - mean) / std in the element type, as torchvision's sub_ then div_. */
#define DEF_NORM_PLANE(T, S)                                                      \
    static void norm_plane_##S(const T *x, T *y, int64_t n, double mean, double std) \
    {                                                                             \
        T m = (T)mean, s = (T)std;                                                \
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] - m) / s;                    \
    }
DEF_NORM_PLANE(float, f32)
DEF_NORM_PLANE(double, f64)

static void norm_range(void *ud, int64_t lo, int64_t hi)
{
    const norm_job *j = ud;
    int64_t plane = j->d.H * j->d.W;
    size_t bytes = (size_t)plane * kdx_dtype_size(j->dt);
    for (int64_t p = lo; p < hi; p++) {
        int c = j->n > 1 ? (int)(p % j->d.C) : 0;
        const char *src = j->x + (size_t)p * bytes;
        char *dst = j->y + (size_t)p * bytes;
        if (j->dt == KDX_DTYPE_F32) norm_plane_f32((const float *)src, (float *)dst, plane, j->mean[c], j->std[c]);
        else norm_plane_f64((const double *)src, (double *)dst, plane, j->mean[c], j->std[c]);
    }
}

kdx_status kdx_augment_normalize(const kdx_tensor *x, const double *mean, const double *std, int n,
                                 kdx_tensor **out)
{
    const char *const fname = "normalize";
    aug_dims d;
    KDX_TRY(aug_check(fname, x, out, &d));
    if (!mean || !std || (n != 1 && n != d.C))
        return kdx_fail(KDX_EINVAL, "%s: mean and std must hold 1 or %lld (channels) numbers, got %d", fname,
                        (long long)d.C, n);
    for (int i = 0; i < n; i++)
        if (!isfinite(mean[i]) || !isfinite(std[i]) || std[i] == 0)
            return kdx_fail(KDX_EINVAL, "%s: mean must be finite and std finite and nonzero, got %g and %g at %d",
                            fname, mean[i], std[i], i);
    kdx_tensor *xc, *y;
    KDX_TRY(aug_buffers(fname, x, d.H, d.W, &xc, &y));
    norm_job j = {kdx__base(xc), kdx__base(y), d, mean, std, n, x->dtype};
    kdx__parallel_for(d.N * d.C, kdx__grain(d.H * d.W), norm_range, &j);
    kdx_tensor_release(xc);
    *out = y;
    return KDX_OK;
}
