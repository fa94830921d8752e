/* attr_similarity.c — model-free measures of attributions, per sample:
 * sparseness (Gini index) and complexity (entropy) of one, and how alike
 * two are: Spearman (average ranks for ties), Pearson, Kendall tau-b
 * (Knight's O(n log n) count), top-k overlap of |a|, cosine, and SSIM on
 * 2-D maps (Wang et al. 2004: Gaussian window sigma 1.5 truncated at
 * radius 5, i.e. 11x11).
 * Each works on the flattened float64 rows of one sample; a quantity that
 * is undefined (a constant row for a correlation, a zero row for cosine)
 * gives NaN, as scipy does. */
#include "attr_metrics.h"

#include <math.h>
#include <string.h>

kdx_status kdx__f64(const kdx_tensor *t, kdx_tensor **out)
{
    kdx_tensor *a = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = kdx_to(t, KDX_DTYPE_F64, &a);
    if (s == KDX_OK) s = kdx_contiguous(a, out);
    kdx__grad_restore(was);
    kdx_tensor_release(a);
    return s;
}

/* ---- sorting (an index merge sort: stable, no recursion limit issues) ---- */

typedef struct {
    const double *key, *key2; /* key2 (may be NULL) breaks ties of key */
    int desc;                 /* descending by key */
} order;

static int before(const order *o, int64_t i, int64_t j)
{
    double a = o->key[i], b = o->key[j];
    if (a != b) return o->desc ? a > b : a < b;
    if (o->key2 && o->key2[i] != o->key2[j]) return o->key2[i] < o->key2[j];
    return 0;
}

/* Sorts idx[0..n) (stable); tmp has room for n. */
static void sort_idx(const order *o, int64_t *idx, int64_t *tmp, int64_t n)
{
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = kdx__min64(lo + w, n), hi = kdx__min64(lo + 2 * w, n), i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = before(o, idx[j], idx[i]) ? idx[j++] : idx[i++];
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
}

void kdx__argsort(const double *v, int64_t n, int desc, int64_t *idx, int64_t *tmp)
{
    order o = {v, NULL, desc};
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    sort_idx(&o, idx, tmp, n);
}

/* ---- the kernels ---- */

static double pearson(const double *a, const double *b, int64_t n)
{
    double ma = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) ma += a[i], mb += b[i];
    ma /= (double)n, mb /= (double)n;
    double sab = 0, saa = 0, sbb = 0;
    for (int64_t i = 0; i < n; i++) {
        double u = a[i] - ma, v = b[i] - mb;
        sab += u * v, saa += u * u, sbb += v * v;
    }
    if (saa == 0 || sbb == 0) return NAN;
    double r = sab / sqrt(saa * sbb);
    return r > 1 ? 1 : r < -1 ? -1 : r;
}

/* Ranks 1..n of v, ties sharing their average rank. */
static void ranks(const double *v, int64_t n, double *r, int64_t *idx, int64_t *tmp)
{
    kdx__argsort(v, n, 0, idx, tmp);
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j + 1 < n && v[idx[j + 1]] == v[idx[i]]) j++;
        double avg = (double)(i + j) / 2 + 1;
        for (int64_t k = i; k <= j; k++) r[idx[k]] = avg;
        i = j + 1;
    }
}

/* Pairs within runs of equal values of v along idx: sum t(t-1)/2. */
static double tied_pairs(const double *v, const double *v2, const int64_t *idx, int64_t n)
{
    double t = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j + 1 < n && v[idx[j + 1]] == v[idx[i]] && (!v2 || v2[idx[j + 1]] == v2[idx[i]])) j++;
        double c = (double)(j - i + 1);
        t += c * (c - 1) / 2;
        i = j + 1;
    }
    return t;
}

/* Kendall tau-b as scipy.stats.kendalltau: sort by (a, b), count the strict
   inversions of b by merge sort (the discordant pairs), and correct for ties. */
static double kendall(const double *a, const double *b, int64_t n, int64_t *idx, int64_t *tmp)
{
    order o = {a, b, 0};
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    sort_idx(&o, idx, tmp, n);
    double xtie = tied_pairs(a, NULL, idx, n), ntie = tied_pairs(a, b, idx, n);
    double dis = 0;
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = kdx__min64(lo + w, n), hi = kdx__min64(lo + 2 * w, n), i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                if (b[idx[j]] < b[idx[i]]) {
                    dis += (double)(mid - i); /* idx[j] is below every remaining left element */
                    tmp[k++] = idx[j++];
                } else {
                    tmp[k++] = idx[i++];
                }
            }
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
    double ytie = tied_pairs(b, NULL, idx, n); /* idx is now sorted by b */
    double tot = (double)n * (double)(n - 1) / 2;
    if (tot - xtie <= 0 || tot - ytie <= 0) return NAN;
    double tau = (tot - xtie - ytie + ntie - 2 * dis) / sqrt(tot - xtie) / sqrt(tot - ytie);
    return tau > 1 ? 1 : tau < -1 ? -1 : tau;
}

static double cosine(const double *a, const double *b, int64_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
    if (aa == 0 || bb == 0) return NAN;
    return ab / sqrt(aa * bb);
}

/* |top-k of |a|| intersected with |top-k of |b|| over k; ties go to the lower index. */
static double topk(const double *a, const double *b, int64_t n, int64_t k, double *abs_, int64_t *idx, int64_t *tmp,
                   unsigned char *mark)
{
    memset(mark, 0, (size_t)n);
    for (int64_t i = 0; i < n; i++) abs_[i] = fabs(a[i]);
    kdx__argsort(abs_, n, 1, idx, tmp);
    for (int64_t i = 0; i < k; i++) mark[idx[i]] = 1;
    for (int64_t i = 0; i < n; i++) abs_[i] = fabs(b[i]);
    kdx__argsort(abs_, n, 1, idx, tmp);
    int64_t both = 0;
    for (int64_t i = 0; i < k; i++) both += mark[idx[i]];
    return (double)both / (double)k;
}

/* ---- SSIM ---- */

#define SSIM_R 5 /* radius: int(3.5 * 1.5 + 0.5), scipy's truncate=3.5 as skimage sets it */

/* Separable Gaussian filter with scipy.ndimage's "reflect" edges (d c b a | a b c d). */
static void gauss2(const double *in, int64_t H, int64_t W, const double *k, double *tmp, double *out)
{
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++) {
            double s = 0;
            for (int t = -SSIM_R; t <= SSIM_R; t++) {
                int64_t jj = j + t;
                jj = jj < 0 ? -jj - 1 : jj >= W ? 2 * W - jj - 1 : jj;
                s += k[t + SSIM_R] * in[i * W + jj];
            }
            tmp[i * W + j] = s;
        }
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++) {
            double s = 0;
            for (int t = -SSIM_R; t <= SSIM_R; t++) {
                int64_t ii = i + t;
                ii = ii < 0 ? -ii - 1 : ii >= H ? 2 * H - ii - 1 : ii;
                s += k[t + SSIM_R] * tmp[ii * W + j];
            }
            out[i * W + j] = s;
        }
}

/* Mean SSIM over the pixels at least SSIM_R from the border (skimage crops
   there), with population (co)variances as in Wang et al.; buf holds 7*H*W. */
static double ssim(const double *a, const double *b, int64_t H, int64_t W, double L, double *buf)
{
    int64_t n = H * W;
    if (L <= 0) {
        double lo = a[0], hi = a[0];
        for (int64_t i = 0; i < n; i++) {
            lo = fmin(lo, fmin(a[i], b[i]));
            hi = fmax(hi, fmax(a[i], b[i]));
        }
        L = hi - lo > 0 ? hi - lo : 1; /* two equal constant maps: any range gives 1 */
    }
    double k[2 * SSIM_R + 1], ks = 0;
    for (int t = -SSIM_R; t <= SSIM_R; t++) ks += k[t + SSIM_R] = exp(-0.5 * t * t / (1.5 * 1.5));
    for (int t = 0; t < 2 * SSIM_R + 1; t++) k[t] /= ks;
    double *ua = buf, *ub = buf + n, *uaa = buf + 2 * n, *ubb = buf + 3 * n, *uab = buf + 4 * n, *tmp = buf + 5 * n,
           *prod = buf + 6 * n;
    gauss2(a, H, W, k, tmp, ua);
    gauss2(b, H, W, k, tmp, ub);
    for (int64_t i = 0; i < n; i++) prod[i] = a[i] * a[i];
    gauss2(prod, H, W, k, tmp, uaa);
    for (int64_t i = 0; i < n; i++) prod[i] = b[i] * b[i];
    gauss2(prod, H, W, k, tmp, ubb);
    for (int64_t i = 0; i < n; i++) prod[i] = a[i] * b[i];
    gauss2(prod, H, W, k, tmp, uab);
    double C1 = (0.01 * L) * (0.01 * L), C2 = (0.03 * L) * (0.03 * L), sum = 0;
    for (int64_t i = SSIM_R; i < H - SSIM_R; i++)
        for (int64_t j = SSIM_R; j < W - SSIM_R; j++) {
            int64_t p = i * W + j;
            double va = uaa[p] - ua[p] * ua[p], vb = ubb[p] - ub[p] * ub[p], vab = uab[p] - ua[p] * ub[p];
            sum += (2 * ua[p] * ub[p] + C1) * (2 * vab + C2) /
                   ((ua[p] * ua[p] + ub[p] * ub[p] + C1) * (va + vb + C2));
        }
    return sum / (double)((H - 2 * SSIM_R) * (W - 2 * SSIM_R));
}

kdx_status kdx__sim_rows(const char *fname, kdx_sim_kind kind, const double *a, const double *b, int64_t N,
                         int64_t d, int64_t H, int64_t W, double param, double *out)
{
    if (d < 1) return kdx_fail(KDX_ESHAPE, "%s: attributions have no elements", fname);
    if (kind == KDX_SIM_SSIM && (H < 2 * SSIM_R + 1 || W < 2 * SSIM_R + 1))
        return kdx_fail(KDX_ESHAPE, "%s: ssim needs maps of at least 11x11 (the Gaussian window), got %lldx%lld", fname,
                        (long long)H, (long long)W);
    int64_t k = 0;
    if (kind == KDX_SIM_TOPK) {
        if (!(param > 0)) return kdx_fail(KDX_EINVAL, "%s: k must be a count >= 1 or a fraction in (0, 1), got %g", fname, param);
        k = param >= 1 ? (int64_t)fmin(param, (double)d) : kdx__max64(1, (int64_t)floor(param * (double)d + 0.5));
        if (param >= 1 && param != floor(param))
            return kdx_fail(KDX_EINVAL, "%s: k must be a count >= 1 or a fraction in (0, 1), got %g", fname, param);
    }
    if ((uint64_t)d > SIZE_MAX / (7 * sizeof(double) + 2 * sizeof(int64_t) + 1))
        return kdx_fail(KDX_ENOMEM, "%s: attributions too large", fname);
    size_t nb = (size_t)d * (7 * sizeof(double) + 2 * sizeof(int64_t) + 1);
    char *mem = kdx__malloc_raw(nb);
    if (!mem) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    double *ra = (double *)mem, *rb = ra + d, *buf = ra; /* buf (7d) overlaps ra/rb: never both used */
    int64_t *idx = (int64_t *)(mem + (size_t)d * 7 * sizeof(double)), *tmp = idx + d;
    unsigned char *mark = (unsigned char *)(tmp + d);
    for (int64_t i = 0; i < N; i++) {
        const double *x = a + i * d, *y = b + i * d;
        switch (kind) {
        case KDX_SIM_PEARSON: out[i] = pearson(x, y, d); break;
        case KDX_SIM_SPEARMAN:
            ranks(x, d, ra, idx, tmp);
            ranks(y, d, rb, idx, tmp);
            out[i] = pearson(ra, rb, d);
            break;
        case KDX_SIM_KENDALL: out[i] = kendall(x, y, d, idx, tmp); break;
        case KDX_SIM_TOPK: out[i] = topk(x, y, d, k, ra, idx, tmp, mark); break;
        case KDX_SIM_COSINE: out[i] = cosine(x, y, d); break;
        case KDX_SIM_SSIM: out[i] = ssim(x, y, H, W, param, buf); break;
        default: kdx__free(mem, nb); return kdx_fail(KDX_EINVAL, "%s: unknown similarity %d", fname, (int)kind);
        }
    }
    kdx__free(mem, nb);
    return KDX_OK;
}

kdx_status kdx_attr_similarity(kdx_sim_kind kind, const kdx_tensor *a, const kdx_tensor *b, double param,
                               kdx_tensor **out)
{
    static const char *names[] = {"spearman", "pearson", "kendall", "topk_overlap", "cosine", "ssim"};
    const char *fname = (unsigned)kind < 6 ? names[kind] : "similarity";
    KDX_TRY(kdx__check_float(fname, "a", a));
    KDX_TRY(kdx__check_float(fname, "b", b));
    if (!kdx__same_shape(a, b))
        return kdx_fail(KDX_ESHAPE, "%s: a %s and b %s must have the same shape", fname, kdx__shp(a), kdx__shp(b));
    if (a->ndim < 2 || a->shape[0] < 1)
        return kdx_fail(KDX_ESHAPE, "%s: attributions must be a batch [N, ...], got %s", fname, kdx__shp(a));
    int64_t N = a->shape[0], d = kdx_tensor_numel(a) / N, H = 0, W = 0;
    if (kind == KDX_SIM_SSIM) {
        if (!(a->ndim == 3 || (a->ndim == 4 && a->shape[1] == 1)))
            return kdx_fail(KDX_ESHAPE, "%s: maps must be [N, H, W] or [N, 1, H, W], got %s", fname, kdx__shp(a));
        H = a->shape[a->ndim - 2], W = a->shape[a->ndim - 1];
    }
    kdx_tensor *ad = NULL, *bd = NULL, *r = NULL;
    kdx_status s = kdx__f64(a, &ad);
    if (s == KDX_OK) s = kdx__f64(b, &bd);
    if (s == KDX_OK) s = kdx__new_raw(fname, KDX_DTYPE_F64, 1, &N, &r);
    if (s == KDX_OK)
        s = kdx__sim_rows(fname, kind, kdx_tensor_data(ad), kdx_tensor_data(bd), N, d, H, W, param, kdx_tensor_data(r));
    KDX_RELEASE(ad, bd);
    if (s != KDX_OK) {
        kdx_tensor_release(r);
        return s;
    }
    *out = r;
    return KDX_OK;
}

/* ---- sparseness and complexity (no model) ---- */

static kdx_status per_sample(const char *fname, const kdx_tensor *attr, kdx_tensor **ad, kdx_tensor **r, int64_t *N,
                             int64_t *d)
{
    KDX_TRY(kdx__check_float(fname, "attr", attr));
    if (attr->ndim < 1 || attr->shape[0] < 1 || kdx_tensor_numel(attr) < 1)
        return kdx_fail(KDX_ESHAPE, "%s: attr must be a non-empty batch [N, ...], got %s", fname, kdx__shp(attr));
    *N = attr->shape[0], *d = kdx_tensor_numel(attr) / *N;
    KDX_TRY(kdx__f64(attr, ad));
    kdx_status s = kdx__new(fname, KDX_DTYPE_F64, 1, N, r);
    if (s != KDX_OK) {
        kdx_tensor_release(*ad);
        *ad = NULL;
    }
    return s;
}

kdx_status kdx_metric_sparseness(const kdx_tensor *attr, int abs_value, int normalise, kdx_tensor **out)
{
    const char *fname = "sparseness";
    kdx_tensor *ad = NULL, *r = NULL;
    int64_t N, d;
    KDX_TRY(per_sample(fname, attr, &ad, &r, &N, &d));
    size_t nb = (size_t)d * (sizeof(double) + 2 * sizeof(int64_t));
    double *v = kdx__malloc_raw(nb), *res = kdx_tensor_data(r);
    if (!v) {
        KDX_RELEASE(ad, r);
        return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    }
    int64_t *idx = (int64_t *)(v + d), *tmp = idx + d;
    const double *a = kdx_tensor_data(ad);
    for (int64_t i = 0; i < N; i++) {
        double mx = 0, sum = 0, num = 0;
        for (int64_t j = 0; j < d; j++) mx = fmax(mx, fabs(a[i * d + j]));
        for (int64_t j = 0; j < d; j++) {
            double t = normalise && mx > 0 ? a[i * d + j] / mx : a[i * d + j];
            v[j] = (abs_value ? fabs(t) : t) + 1e-7; /* Quantus' 1e-7 keeps a zero map defined */
        }
        kdx__argsort(v, d, 0, idx, tmp);
        for (int64_t j = 0; j < d; j++) {
            double x = v[idx[j]];
            num += (double)(2 * (j + 1) - d - 1) * x;
            sum += x;
        }
        res[i] = num / ((double)d * sum);
    }
    kdx__free(v, nb);
    kdx_tensor_release(ad);
    *out = r;
    return KDX_OK;
}

kdx_status kdx_metric_complexity(const kdx_tensor *attr, kdx_tensor **out)
{
    kdx_tensor *ad = NULL, *r = NULL;
    int64_t N, d;
    KDX_TRY(per_sample("complexity", attr, &ad, &r, &N, &d));
    const double *a = kdx_tensor_data(ad);
    double *res = kdx_tensor_data(r);
    for (int64_t i = 0; i < N; i++) {
        double sum = 0, h = 0;
        for (int64_t j = 0; j < d; j++) sum += fabs(a[i * d + j]);
        for (int64_t j = 0; sum > 0 && j < d; j++) {
            double p = fabs(a[i * d + j]) / sum;
            if (p > 0) h -= p * log(p);
        }
        res[i] = h;
    }
    kdx_tensor_release(ad);
    *out = r;
    return KDX_OK;
}
