/* slic.c — SLIC superpixels (Achanta et al., "SLIC superpixels compared to
 * state-of-the-art superpixel methods", TPAMI 2012), the segmentation LIME
 * uses for images here.
 *
 * Follows scikit-image's slic (skimage/segmentation/slic_superpixels.py,
 * _slic.pyx) where it is defined: 3-channel images in [0, 1] are clustered in
 * CIELAB (D65, as rgb2lab), others on their raw channels; optional Gaussian
 * smoothing (reflect border) of the clustering features; centres on
 * regular_grid's grid of about n_segments points (step sqrt(HW / n), offset
 * step / 2); each centre searches a window of 2 steps either side; the
 * distance is (ds / step)^2 + (dc / compactness)^2; at most max_iter
 * assignment/update rounds, stopping early when nothing moves; then the
 * connectivity pass of _enforce_label_connectivity_cython (4-neighbours,
 * components grown breadth-first up to 3x the mean segment size, those below
 * 0.5x merged into the component met last). Differences: a centre starts
 * with the colour of its grid pixel (as in the paper) and a pixel no window
 * reaches keeps its previous label; labels are renumbered 0.. per image. */
#include "kdx_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

static double srgb_linear(double c)
{
    return c > 0.04045 ? pow((c + 0.055) / 1.055, 2.4) : c / 12.92;
}

static double lab_f(double t)
{
    return t > 0.008856 ? cbrt(t) : 7.787 * t + 16.0 / 116.0;
}

/* rgb [3] in [0, 1] -> CIELAB [3] (D65 white, 2-degree observer). */
static void rgb2lab(double r, double g, double b, double *lab)
{
    r = srgb_linear(r), g = srgb_linear(g), b = srgb_linear(b);
    double X = (0.412453 * r + 0.357580 * g + 0.180423 * b) / 0.95047;
    double Y = 0.212671 * r + 0.715160 * g + 0.072169 * b;
    double Z = (0.019334 * r + 0.119193 * g + 0.950227 * b) / 1.08883;
    double fx = lab_f(X), fy = lab_f(Y), fz = lab_f(Z);
    lab[0] = 116 * fy - 16, lab[1] = 500 * (fx - fy), lab[2] = 200 * (fy - fz);
}

/* Separable Gaussian blur of F [H*W, C] in place (tmp the same size),
   scipy's "reflect" border (d c b a | a b c d), truncated at 4 sigma. */
static kdx_status blur(double *F, double *tmp, int64_t H, int64_t W, int64_t C, double sigma)
{
    int64_t rad = (int64_t)(4 * sigma + 0.5);
    double *k = kdx__malloc((size_t)(2 * rad + 1) * sizeof(double)), sum = 0;
    if (!k) return kdx_fail(KDX_ENOMEM, "slic: out of memory");
    for (int64_t t = -rad; t <= rad; t++) sum += k[t + rad] = exp(-0.5 * (double)(t * t) / (sigma * sigma));
    for (int64_t t = 0; t <= 2 * rad; t++) k[t] /= sum;
    for (int pass = 0; pass < 2; pass++) {
        int64_t len = pass ? H : W;
        for (int64_t p = 0; p < H * W; p++) {
            int64_t y = p / W, xx = p % W, at = pass ? y : xx;
            for (int64_t c = 0; c < C; c++) {
                double v = 0;
                for (int64_t t = -rad; t <= rad; t++) {
                    int64_t q = at + t;
                    while (q < 0 || q >= len) q = q < 0 ? -q - 1 : 2 * len - q - 1;
                    v += k[t + rad] * F[(pass ? q * W + xx : y * W + q) * C + c];
                }
                tmp[p * C + c] = v;
            }
        }
        memcpy(F, tmp, (size_t)(H * W * C) * sizeof(double));
    }
    kdx__free(k, (size_t)(2 * rad + 1) * sizeof(double));
    return KDX_OK;
}

/* skimage's regular_grid for a [1, H, W] volume: start and step per axis. */
static void grid(int64_t H, int64_t W, int64_t n, int64_t *sy, int64_t *dy, int64_t *sx, int64_t *dx)
{
    if (H * W <= n) {
        *sy = *sx = 0, *dy = *dx = 1;
        return;
    }
    double st[2], step = sqrt((double)(H * W) / (double)n);
    int small = H <= W ? 0 : 1; /* the shorter axis */
    st[0] = st[1] = step;
    if ((double)(small == 0 ? H : W) < step) {
        st[small] = (double)(small == 0 ? H : W);
        st[1 - small] = (double)(small == 0 ? W : H) / (double)n;
    }
    *sy = (int64_t)floor(st[0] / 2), *dy = (int64_t)nearbyint(st[0]);
    *sx = (int64_t)floor(st[1] / 2), *dx = (int64_t)nearbyint(st[1]);
    if (*dy < 1) *dy = 1;
    if (*dx < 1) *dx = 1;
}

/* skimage's _enforce_label_connectivity_cython on one image: lab [HW] in,
   out [HW] 0-based consecutive; q a [HW] queue. Returns the label count. */
static int64_t connect(const int64_t *lab, int64_t *out, int64_t *q, int64_t H, int64_t W, int64_t min_size,
                       int64_t max_size)
{
    int64_t HW = H * W, next = 0;
    for (int64_t p = 0; p < HW; p++) out[p] = -1;
    for (int64_t p0 = 0; p0 < HW; p0++) {
        if (out[p0] >= 0) continue;
        int64_t label = lab[p0], adjacent = -1, size = 1, head = 0;
        out[p0] = next, q[0] = p0;
        while (head < size && size < max_size) {
            int64_t p = q[head++], y = p / W, x = p % W;
            const int64_t nb[4][2] = {{y - 1, x}, {y + 1, x}, {y, x - 1}, {y, x + 1}};
            for (int k = 0; k < 4; k++) {
                int64_t ny = nb[k][0], nx = nb[k][1];
                if (ny < 0 || ny >= H || nx < 0 || nx >= W) continue;
                int64_t r = ny * W + nx;
                if (lab[r] == label && out[r] < 0) {
                    out[r] = next, q[size++] = r;
                    if (size >= max_size) break;
                } else if (out[r] >= 0 && out[r] != next) {
                    adjacent = out[r];
                }
            }
        }
        if (size < min_size && adjacent >= 0) { /* too small: joins a neighbour, as in the paper */
            for (int64_t t = 0; t < size; t++) out[q[t]] = adjacent;
        } else {
            next++;
        }
    }
    return next;
}

typedef struct slic_work {
    double *F, *tmp, *dist, *cen, *acc;
    int64_t *lab, *out, *queue;
} slic_work;

/* One assignment round: each centre claims the pixels of its 2-step window
   that are nearer to it than to any centre so far. Returns whether a label changed. */
static int assign(slic_work *w, int64_t K, int64_t D, int64_t CF, int64_t H, int64_t W, int64_t dy, int64_t dx,
                  double compactness)
{
    double step = (double)kdx__max64(dy, dx), ss = 1.0 / (step * step);
    int change = 0;
    for (int64_t p = 0; p < H * W; p++) w->dist[p] = DBL_MAX;
    for (int64_t k = 0; k < K; k++) {
        const double *c = w->cen + k * D;
        int64_t cy = (int64_t)c[0], cx = (int64_t)c[1];
        int64_t y0 = kdx__max64(cy - 2 * dy, 0), y1 = kdx__min64(cy + 2 * dy + 1, H);
        int64_t x0 = kdx__max64(cx - 2 * dx, 0), x1 = kdx__min64(cx + 2 * dx + 1, W);
        for (int64_t y = y0; y < y1; y++)
            for (int64_t x = x0; x < x1; x++) {
                int64_t p = y * W + x;
                double d = (((double)y - c[0]) * ((double)y - c[0]) + ((double)x - c[1]) * ((double)x - c[1])) * ss;
                for (int64_t q = 0; q < CF; q++) {
                    double e = w->F[p * CF + q] / compactness - c[2 + q];
                    d += e * e;
                }
                if (d < w->dist[p]) {
                    if (w->lab[p] != k) change = 1;
                    w->lab[p] = k, w->dist[p] = d;
                }
            }
    }
    return change;
}

/* Moves each centre to the mean (y, x, colour) of its pixels (an empty one stays). */
static void update(slic_work *w, int64_t K, int64_t D, int64_t CF, int64_t HW, int64_t W, double compactness)
{
    memset(w->acc, 0, (size_t)(K * (D + 1)) * sizeof(double));
    for (int64_t p = 0; p < HW; p++) {
        if (w->lab[p] < 0) continue;
        double *a = w->acc + w->lab[p] * (D + 1);
        a[0] += (double)(p / W), a[1] += (double)(p % W), a[D] += 1;
        for (int64_t q = 0; q < CF; q++) a[2 + q] += w->F[p * CF + q] / compactness;
    }
    for (int64_t k = 0; k < K; k++) {
        const double *a = w->acc + k * (D + 1);
        if (a[D] > 0)
            for (int64_t q = 0; q < D; q++) w->cen[k * D + q] = a[q] / a[D];
    }
}

static kdx_status slic_one(const float *f32, const double *f64, int64_t C, int64_t H, int64_t W, int64_t n_segments,
                           double compactness, int max_iter, double sigma, slic_work *w, int64_t *labels)
{
    int64_t HW = H * W, CF = C == 3 ? 3 : C, D = 2 + CF;
    for (int64_t p = 0; p < HW; p++) {
        double v[3];
        if (C == 3) {
            for (int c = 0; c < 3; c++) v[c] = f32 ? f32[c * HW + p] : f64[c * HW + p];
            rgb2lab(v[0], v[1], v[2], w->F + p * 3);
        } else {
            for (int64_t c = 0; c < C; c++) w->F[p * C + c] = f32 ? f32[c * HW + p] : f64[c * HW + p];
        }
    }
    if (sigma > 0) KDX_TRY(blur(w->F, w->tmp, H, W, CF, sigma));
    int64_t sy, dy, sx, dx, K = 0;
    grid(H, W, n_segments, &sy, &dy, &sx, &dx);
    for (int64_t y = sy; y < H; y += dy)
        for (int64_t x = sx; x < W; x += dx) {
            double *c = w->cen + K * D;
            c[0] = (double)y, c[1] = (double)x;
            for (int64_t k = 0; k < CF; k++) c[2 + k] = w->F[(y * W + x) * CF + k] / compactness;
            K++;
        }
    for (int64_t p = 0; p < HW; p++) w->lab[p] = -1;
    for (int it = 0; it < max_iter; it++) {
        if (!assign(w, K, D, CF, H, W, dy, dx, compactness)) break; /* nothing moved */
        update(w, K, D, CF, HW, W, compactness);
    }
    for (int64_t p = 0; p < HW; p++) /* no window reached it: the nearest centre in the plane */
        if (w->lab[p] < 0) {
            double best = DBL_MAX;
            for (int64_t k = 0; k < K; k++) {
                double ey = (double)(p / W) - w->cen[k * D], ex = (double)(p % W) - w->cen[k * D + 1];
                if (ey * ey + ex * ex < best) best = ey * ey + ex * ex, w->lab[p] = k;
            }
        }
    double size = (double)HW / (double)K;
    connect(w->lab, labels, w->queue, H, W, (int64_t)(0.5 * size), (int64_t)(3 * size));
    return KDX_OK;
}

kdx_status kdx_slic(const kdx_tensor *images, int64_t n_segments, double compactness, int max_iter, double sigma,
                    kdx_tensor **out)
{
    const char *fname = "slic";
    KDX_TRY(kdx__check_float(fname, "images", images));
    if (images->ndim != 4 || kdx_tensor_numel(images) == 0)
        return kdx_fail(KDX_ESHAPE, "%s: images must be [N, C, H, W] (or [C, H, W]), got %s", fname, kdx__shp(images));
    if (n_segments < 1) return kdx_fail(KDX_EINVAL, "%s: n_segments must be >= 1, got %lld", fname, (long long)n_segments);
    if (!(compactness > 0) || !isfinite(compactness))
        return kdx_fail(KDX_EINVAL, "%s: compactness must be > 0, got %g", fname, compactness);
    if (max_iter < 1) return kdx_fail(KDX_EINVAL, "%s: max_iter must be >= 1, got %d", fname, max_iter);
    if (!(sigma >= 0) || sigma > 1e4) return kdx_fail(KDX_EINVAL, "%s: sigma must be >= 0, got %g", fname, sigma);
    int64_t N = images->shape[0], C = images->shape[1], H = images->shape[2], W = images->shape[3], HW = H * W;
    int64_t sy, dy, sx, dx;
    grid(H, W, n_segments, &sy, &dy, &sx, &dx);
    int64_t K = ((H - sy + dy - 1) / dy) * ((W - sx + dx - 1) / dx); /* the grid's centres */
    kdx_tensor *xc = NULL, *lab = NULL;
    int64_t shape[3] = {N, H, W};
    KDX_TRY(kdx_contiguous(images, &xc));
    kdx_status s = kdx__new_raw(fname, KDX_DTYPE_I64, 3, shape, &lab);
    /* F, tmp [HW * C]; dist [HW]; cen [K * (2 + C)]; acc [K * (3 + C)] */
    size_t nd = (size_t)HW * (size_t)(2 * C + 1) + (size_t)K * (size_t)(5 + 2 * C), ni = (size_t)HW * 3;
    slic_work w = {0};
    double *dm = NULL;
    int64_t *im = NULL;
    if (s == KDX_OK) {
        dm = kdx__malloc(nd * sizeof(double)), im = kdx__malloc(ni * sizeof(int64_t));
        if (!dm || !im) s = kdx_fail(KDX_ENOMEM, "%s: out of memory for %lldx%lld images", fname, (long long)H, (long long)W);
    }
    if (s == KDX_OK) {
        w.F = dm, w.tmp = w.F + HW * C, w.dist = w.tmp + HW * C, w.cen = w.dist + HW, w.acc = w.cen + K * (2 + C);
        w.lab = im, w.out = im + HW, w.queue = im + 2 * HW;
    }
    for (int64_t i = 0; i < N && s == KDX_OK; i++) {
        const float *f32 = images->dtype == KDX_DTYPE_F32 ? (const float *)kdx__base(xc) + i * C * HW : NULL;
        const double *f64 = images->dtype == KDX_DTYPE_F64 ? (const double *)kdx__base(xc) + i * C * HW : NULL;
        s = slic_one(f32, f64, C, H, W, n_segments, compactness, max_iter, sigma, &w, (int64_t *)kdx__base(lab) + i * HW);
    }
    if (dm) kdx__free(dm, nd * sizeof(double));
    if (im) kdx__free(im, ni * sizeof(int64_t));
    if (s == KDX_OK) *out = kdx_tensor_retain(lab);
    KDX_RELEASE(xc, lab);
    return s;
}
