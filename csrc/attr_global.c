/* attr_global.c — global explanations of a model on tabular data X [N, M]:
 * permutation importance (as sklearn.inspection.permutation_importance),
 * partial dependence and ICE curves (as sklearn's partial_dependence with
 * method="brute"), and Friedman's H-statistic for feature pairs.
 *
 * The model sees the permuted or grid rows in chunks of at most batch_size
 * rows: kdx__attr_eval_rows (one selected output per row) or
 * kdx__attr_eval_full (whole output rows, for scores). */
#include "kdx_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static kdx_status check_table(const char *fname, const kdx_model *m, const kdx_tensor *X, int64_t batch_size)
{
    KDX_TRY(kdx__attr_check(fname, m, X, batch_size));
    if (X->ndim != 2) return kdx_fail(KDX_ESHAPE, "%s: X must be a table [N, features], got %s", fname, kdx__shp(X));
    return KDX_OK;
}

static double at2(const kdx_tensor *X, int64_t i, int64_t j)
{
    const char *p = kdx__base(X) + (size_t)(i * X->shape[1] + j) * kdx_dtype_size(X->dtype);
    return X->dtype == KDX_DTYPE_F64 ? *(const double *)p : *(const float *)p;
}

static void set_el(char *row, kdx_dtype dt, int64_t j, double v)
{
    if (dt == KDX_DTYPE_F64) ((double *)row)[j] = v;
    else ((float *)row)[j] = (float)v;
}

/* ---- scores ---- */

kdx_status kdx_explain_score(kdx_score_kind kind, const kdx_tensor *out, const kdx_tensor *y, double *score)
{
    const char *fname = "score";
    if (!out || !y) return kdx_fail(KDX_EINVAL, "%s: outputs or labels are NULL", fname);
    int64_t N = out->ndim >= 1 ? out->shape[0] : 0;
    if (N < 1 || kdx_tensor_numel(y) != N)
        return kdx_fail(KDX_ESHAPE, "%s: %lld labels for outputs %s", fname, (long long)kdx_tensor_numel(y), kdx__shp(out));
    kdx_tensor *o = NULL, *l = NULL;
    KDX_TRY(kdx_to(out, KDX_DTYPE_F64, &o)); /* kdx_to gives a contiguous copy */
    kdx_status s = kdx_to(y, KDX_DTYPE_F64, &l);
    const double *a = s == KDX_OK ? (const double *)kdx__base(o) : NULL, *lab = s == KDX_OK ? (const double *)kdx__base(l) : NULL;
    int64_t C = out->ndim == 2 ? out->shape[1] : 1;
    double acc = 0;
    if (s == KDX_OK && kind != KDX_SCORE_NEG_MSE && (out->ndim != 2 || y->dtype != KDX_DTYPE_I64))
        s = kdx_fail(KDX_EINVAL, "%s: accuracy and neg_log_loss need outputs [N, classes] and int64 labels", fname);
    if (s == KDX_OK && kind == KDX_SCORE_NEG_MSE && C != 1)
        s = kdx_fail(KDX_ESHAPE, "%s: neg_mean_squared_error needs outputs [N], got %s", fname, kdx__shp(out));
    for (int64_t i = 0; i < N && s == KDX_OK; i++) {
        const double *r = a + i * C;
        int64_t c = (int64_t)lab[i];
        if (kind != KDX_SCORE_NEG_MSE && (c < 0 || c >= C)) {
            s = kdx_fail(KDX_EINVAL, "%s: label %lld out of range [1, %lld]", fname, (long long)c + 1, (long long)C);
            break;
        }
        if (kind == KDX_SCORE_NEG_MSE) {
            acc -= (r[0] - lab[i]) * (r[0] - lab[i]);
        } else if (kind == KDX_SCORE_ACCURACY) {
            int64_t best = 0;
            for (int64_t k = 1; k < C; k++)
                if (r[k] > r[best]) best = k; /* first maximum, as argmax */
            acc += best == c;
        } else { /* outputs are logits: log p_c = r_c - logsumexp(r) */
            double mx = r[0], z = 0;
            for (int64_t k = 1; k < C; k++) mx = r[k] > mx ? r[k] : mx;
            for (int64_t k = 0; k < C; k++) z += exp(r[k] - mx);
            acc += r[c] - mx - log(z);
        }
    }
    if (s == KDX_OK) *score = acc / N;
    KDX_RELEASE(o, l);
    return s;
}

/* ---- permutation importance ---- */

typedef struct permuted {
    const kdx_tensor *X;
    const int64_t *perm;
    int64_t j;
    size_t rb;
} permuted;

/* Row r of X with column j taken from row perm[r]. */
static kdx_status permuted_fill(void *ud, int64_t r, char *dst, int64_t *sample)
{
    const permuted *p = ud;
    memcpy(dst, kdx__base(p->X) + (size_t)r * p->rb, p->rb);
    if (p->perm) set_el(dst, p->X->dtype, p->j, at2(p->X, p->perm[r], p->j));
    *sample = r;
    return KDX_OK;
}

static kdx_status score_rows(const char *fname, const kdx_model *m, permuted *p, kdx_score_fn score, void *ud,
                             int64_t batch_size, double *value)
{
    kdx_tensor *y = NULL;
    KDX_TRY(kdx__attr_eval_full(fname, m, p->X, p->X->shape[0], permuted_fill, p, batch_size, &y));
    kdx_status s = score(ud, y, value);
    kdx_tensor_release(y);
    return s;
}

kdx_status kdx_explain_permutation_importance(const kdx_model *m, const kdx_tensor *X, kdx_score_fn score, void *ud,
                                              const int64_t *features, int64_t nfeatures, int repeats,
                                              kdx_generator *gen, int64_t batch_size, kdx_tensor **importances,
                                              double *baseline)
{
    const char *fname = "permutation_importance";
    KDX_TRY(check_table(fname, m, X, batch_size));
    if (!score) return kdx_fail(KDX_EINVAL, "%s: score is NULL", fname);
    if (repeats < 1 || repeats > 100000) return kdx_fail(KDX_EINVAL, "%s: repeats must be in [1, 100000], got %d", fname, repeats);
    int64_t N = X->shape[0], M = X->shape[1], nf = features ? nfeatures : M;
    for (int64_t f = 0; features && f < nf; f++)
        if (features[f] < 0 || features[f] >= M)
            return kdx_fail(KDX_EINVAL, "%s: feature %lld out of range [1, %lld]", fname, (long long)features[f] + 1, (long long)M);
    if (nf < 1) return kdx_fail(KDX_EINVAL, "%s: no features to permute", fname);
    if (!gen) gen = kdx_default_generator();
    /* Feature j's shuffles come from its own stream, seeded from (base, j):
       the result for a feature does not depend on which other features are
       permuted, nor in what order, so the features can be split across
       processes (kdx.dist) and still give the one-process numbers. */
    uint64_t base_seed = kdx_generator_next(gen);
    kdx_generator *fgen = NULL;
    kdx_tensor *xc = NULL, *imp = NULL;
    int64_t shape[2] = {nf, repeats};
    int64_t *perm = kdx__malloc((size_t)N * sizeof(int64_t));
    kdx_status s = perm ? KDX_OK : kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    if (s == KDX_OK) s = kdx_generator_new(base_seed, &fgen);
    if (s == KDX_OK) s = kdx_contiguous(X, &xc);
    if (s == KDX_OK) s = kdx__new(fname, KDX_DTYPE_F64, 2, shape, &imp);
    permuted p = {xc, NULL, 0, (size_t)M * kdx_dtype_size(X->dtype)};
    double base = 0;
    if (s == KDX_OK) s = score_rows(fname, m, &p, score, ud, batch_size, &base);
    for (int64_t f = 0; f < nf && s == KDX_OK; f++) {
        p.j = features ? features[f] : f;
        kdx_generator_seed(fgen, base_seed + (uint64_t)p.j); /* the seeding is a splitmix64 of base + j */
        for (int k = 0; k < repeats && s == KDX_OK; k++) {
            for (int64_t t = 0; t < N; t++) perm[t] = t;
            for (int64_t t = N - 1; t > 0; t--) {
                int64_t j = (int64_t)kdx_generator_below(fgen, (uint64_t)t + 1), tmp = perm[t];
                perm[t] = perm[j], perm[j] = tmp;
            }
            double v = 0;
            p.perm = perm;
            s = score_rows(fname, m, &p, score, ud, batch_size, &v);
            ((double *)kdx__base(imp))[f * repeats + k] = base - v;
        }
    }
    kdx_generator_free(fgen);
    if (perm) kdx__free(perm, (size_t)N * sizeof(int64_t));
    kdx_tensor_release(xc);
    if (s != KDX_OK) {
        kdx_tensor_release(imp);
        return s;
    }
    *importances = imp;
    if (baseline) *baseline = base;
    return KDX_OK;
}

/* ---- partial dependence ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The grid of column j as sklearn's _grid_from_X: its unique values if fewer
   than G, else G points evenly from the plo to the phi quantile (scipy's
   mquantiles, alphap = betap = 0.4), as numpy's linspace. */
static kdx_status pd_grid(const char *fname, const kdx_tensor *X, int64_t j, int64_t G, double plo, double phi,
                          kdx_tensor **out)
{
    int64_t N = X->shape[0], nu = 0;
    double *v = kdx__malloc((size_t)N * sizeof(double));
    if (!v) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    for (int64_t i = 0; i < N; i++) v[i] = at2(X, i, j);
    qsort(v, (size_t)N, sizeof(double), cmp_double);
    for (int64_t i = 0; i < N; i++)
        if (i == 0 || v[i] != v[nu - 1]) v[nu++] = v[i];
    kdx_status s = KDX_OK;
    int64_t n = nu < G ? nu : G;
    if (s == KDX_OK) s = kdx__new(fname, KDX_DTYPE_F64, 1, &n, out);
    double *g = s == KDX_OK ? (double *)kdx__base(*out) : NULL;
    if (s == KDX_OK && nu < G) {
        memcpy(g, v, (size_t)nu * sizeof(double));
    } else if (s == KDX_OK) {
        for (int64_t i = 0; i < N; i++) v[i] = at2(X, i, j); /* the sorted sample, with repeats */
        qsort(v, (size_t)N, sizeof(double), cmp_double);
        double q[2], pr[2] = {plo, phi};
        for (int t = 0; t < 2; t++) {
            double aleph = N * pr[t] + 0.4 + pr[t] * 0.2;
            double kc = aleph < 1 ? 1 : aleph > N - 1 ? N - 1 : aleph;
            int64_t k = (int64_t)floor(kc);
            double gam = aleph - k < 0 ? 0 : aleph - k > 1 ? 1 : aleph - k;
            q[t] = (1 - gam) * v[k - 1] + gam * v[k];
        }
        if (fabs(q[1] - q[0]) <= 1e-8 + 1e-5 * fabs(q[0])) {
            s = kdx_fail(KDX_EINVAL, "%s: the percentiles of feature %lld are too close to build a grid", fname,
                         (long long)j + 1);
        } else {
            double step = (q[1] - q[0]) / (double)(G - 1);
            for (int64_t t = 0; t < G; t++) g[t] = (double)t * step + q[0];
            g[G - 1] = q[1];
        }
    }
    kdx__free(v, (size_t)N * sizeof(double));
    return s;
}

typedef struct gridded {
    const kdx_tensor *X;
    int nf;
    int64_t j[2], n[2], N, B; /* features, grid sizes, samples, background rows */
    const double *g[2];
    const int64_t *rows;      /* background rows (NULL: 0..N-1) */
    const int64_t *pts;       /* H: grid points are these rows' own values (NULL: the grids) */
    size_t rb;
} gridded;

/* Row r = (grid point p, background row l): row l with the features set to p. */
static kdx_status grid_fill(void *ud, int64_t r, char *dst, int64_t *sample)
{
    const gridded *d = ud;
    int64_t p = r / d->B, l = r % d->B, src = d->rows ? d->rows[l] : l;
    memcpy(dst, kdx__base(d->X) + (size_t)src * d->rb, d->rb);
    for (int t = 0; t < d->nf; t++) {
        double v;
        if (d->pts) v = at2(d->X, d->pts[p], d->j[t]);
        else v = d->g[t][t == 0 && d->nf == 2 ? p / d->n[1] : p % d->n[t]];
        set_el(dst, d->X->dtype, d->j[t], v);
    }
    *sample = src;
    return KDX_OK;
}

static kdx_status check_grid_args(const char *fname, const kdx_tensor *X, int64_t grid_resolution, double plo, double phi)
{
    if (grid_resolution < 2 || grid_resolution > 1000000)
        return kdx_fail(KDX_EINVAL, "%s: grid_resolution must be in [2, 1000000], got %lld", fname, (long long)grid_resolution);
    if (!(plo >= 0 && plo < phi && phi <= 1))
        return kdx_fail(KDX_EINVAL, "%s: percentiles must satisfy 0 <= lo < hi <= 1, got {%g, %g}", fname, plo, phi);
    if (X->shape[0] < 1) return kdx_fail(KDX_ESHAPE, "%s: X has no rows", fname);
    return KDX_OK;
}

kdx_status kdx_explain_pd_grid(const kdx_tensor *X, int64_t j, int64_t grid_resolution, double plo, double phi,
                               kdx_tensor **out)
{
    const char *fname = "partial_dependence";
    if (!X || !out) return kdx_fail(KDX_EINVAL, "%s: X or out is NULL", fname);
    if (X->ndim != 2 || (X->dtype != KDX_DTYPE_F32 && X->dtype != KDX_DTYPE_F64))
        return kdx_fail(KDX_ESHAPE, "%s: X must be a float table [N, features], got %s", fname, kdx__shp(X));
    if (j < 0 || j >= X->shape[1])
        return kdx_fail(KDX_EINVAL, "%s: feature %lld out of range [1, %lld]", fname, (long long)j + 1, (long long)X->shape[1]);
    KDX_TRY(check_grid_args(fname, X, grid_resolution, plo, phi));
    kdx_tensor *xc = NULL;
    KDX_TRY(kdx_contiguous(X, &xc));
    kdx_status s = pd_grid(fname, xc, j, grid_resolution, plo, phi, out);
    kdx_tensor_release(xc);
    return s;
}

/* A user's grid: a contiguous float64 copy of a 1-d, non-empty, finite tensor. */
static kdx_status given_grid(const char *fname, const kdx_tensor *g, int t, kdx_tensor **out)
{
    if (g->ndim != 1 || g->shape[0] < 1 || g->shape[0] > 1000000)
        return kdx_fail(KDX_ESHAPE, "%s: grid[%d] must be 1-d with 1 to 1000000 values, got %s", fname, t + 1, kdx__shp(g));
    kdx_tensor *c = NULL;
    KDX_TRY(kdx_to(g, KDX_DTYPE_F64, &c)); /* a contiguous copy */
    const double *v = (const double *)kdx__base(c);
    for (int64_t i = 0; i < g->shape[0]; i++)
        if (!isfinite(v[i])) {
            kdx_tensor_release(c);
            return kdx_fail(KDX_EINVAL, "%s: grid[%d] holds a non-finite value", fname, t + 1);
        }
    *out = c;
    return KDX_OK;
}

kdx_status kdx_explain_partial_dependence(const kdx_model *m, const kdx_tensor *X, const int64_t *features, int nf,
                                          int64_t grid_resolution, double plo, double phi,
                                          const kdx_tensor *const *grid_in, const kdx_tensor *target,
                                          int64_t batch_size, kdx_tensor **grids, kdx_tensor **average,
                                          kdx_tensor **individual)
{
    const char *fname = "partial_dependence";
    KDX_TRY(check_table(fname, m, X, batch_size));
    if (nf != 1 && nf != 2) return kdx_fail(KDX_EINVAL, "%s: give one feature or a pair, got %d", fname, nf);
    for (int t = 0; t < nf; t++)
        if (features[t] < 0 || features[t] >= X->shape[1])
            return kdx_fail(KDX_EINVAL, "%s: feature %lld out of range [1, %lld]", fname, (long long)features[t] + 1,
                            (long long)X->shape[1]);
    KDX_TRY(check_grid_args(fname, X, grid_resolution, plo, phi));
    int64_t N = X->shape[0], P = 1;
    kdx_tensor *xc = NULL, *g[2] = {NULL, NULL}, *avg = NULL, *ind = NULL;
    gridded d = {0};
    kdx_status s = kdx_contiguous(X, &xc);
    for (int t = 0; t < nf && s == KDX_OK; t++) {
        if (grid_in && grid_in[t]) s = given_grid(fname, grid_in[t], t, &g[t]);
        else s = pd_grid(fname, xc, features[t], grid_resolution, plo, phi, &g[t]);
        if (s == KDX_OK) d.n[t] = g[t]->shape[0], d.g[t] = (const double *)kdx__base(g[t]), d.j[t] = features[t], P *= d.n[t];
    }
    d.X = xc, d.nf = nf, d.N = N, d.B = N, d.rb = (size_t)X->shape[1] * kdx_dtype_size(X->dtype);
    int64_t ishape[3] = {N, d.n[0], d.n[1]}, R = P * N;
    if (s == KDX_OK && (P > ((int64_t)1 << 30) / N))
        s = kdx_fail(KDX_EINVAL, "%s: %lld grid points x %lld samples is too many rows", fname, (long long)P, (long long)N);
    if (s == KDX_OK) s = kdx__new(fname, KDX_DTYPE_F64, 1 + nf, ishape, &ind);
    if (s == KDX_OK) s = kdx__new(fname, KDX_DTYPE_F64, nf, ishape + 1, &avg);
    double *y = s == KDX_OK ? kdx__malloc((size_t)R * sizeof(double)) : NULL;
    if (s == KDX_OK && !y) s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    if (s == KDX_OK) s = kdx__attr_eval_rows(fname, m, xc, target, R, grid_fill, &d, batch_size, y);
    for (int64_t p = 0; p < P && s == KDX_OK; p++) {
        double sum = 0;
        for (int64_t i = 0; i < N; i++) sum += y[p * N + i], ((double *)kdx__base(ind))[i * P + p] = y[p * N + i];
        ((double *)kdx__base(avg))[p] = sum / N;
    }
    if (y) kdx__free(y, (size_t)R * sizeof(double));
    kdx_tensor_release(xc);
    if (s != KDX_OK) {
        KDX_RELEASE(g[0], g[1], avg, ind);
        return s;
    }
    grids[0] = g[0], grids[1] = g[1], *average = avg, *individual = ind;
    return KDX_OK;
}

/* ---- Friedman's H-statistic ---- */

/* Centred partial dependence of features j (nf = 1) or (j, k) at the data
   points rows[0..n-1], averaged over the same rows: pd[n]. */
static kdx_status centred_pd(const char *fname, const kdx_model *m, const kdx_tensor *target, int64_t batch_size,
                             gridded *d, double *y, double *pd)
{
    int64_t n = d->B;
    KDX_TRY(kdx__attr_eval_rows(fname, m, d->X, target, n * n, grid_fill, d, batch_size, y));
    double mean = 0;
    for (int64_t p = 0; p < n; p++) {
        double sum = 0;
        for (int64_t l = 0; l < n; l++) sum += y[p * n + l];
        pd[p] = sum / n, mean += pd[p] / n;
    }
    for (int64_t p = 0; p < n; p++) pd[p] -= mean;
    return KDX_OK;
}

kdx_status kdx_explain_h_statistic(const kdx_model *m, const kdx_tensor *X, const int64_t *pairs, int64_t npairs,
                                   int64_t samples, kdx_generator *gen, const kdx_tensor *target, int64_t batch_size,
                                   kdx_tensor **out)
{
    const char *fname = "h_statistic";
    KDX_TRY(check_table(fname, m, X, batch_size));
    int64_t N = X->shape[0], M = X->shape[1];
    if (npairs < 1 || !pairs) return kdx_fail(KDX_EINVAL, "%s: no feature pairs", fname);
    for (int64_t q = 0; q < 2 * npairs; q++)
        if (pairs[q] < 0 || pairs[q] >= M || (q % 2 && pairs[q] == pairs[q - 1]))
            return kdx_fail(KDX_EINVAL, "%s: pair %lld must name two different features in [1, %lld]", fname,
                            (long long)q / 2 + 1, (long long)M);
    if (samples < 2 || samples > 46340) return kdx_fail(KDX_EINVAL, "%s: samples must be in [2, 46340], got %lld", fname, (long long)samples);
    if (!gen) gen = kdx_default_generator();
    int64_t n = kdx__min64(N, samples);
    size_t bytes = (size_t)N * sizeof(int64_t) + (size_t)n * n * sizeof(double) + (size_t)(1 + M) * n * sizeof(double);
    char *mem = kdx__malloc(bytes);
    if (!mem) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    double *y = (double *)mem, *pjk = y + n * n, *cache = pjk + n; /* cache: one-feature PDs [M, n] */
    int64_t *rows = (int64_t *)(cache + M * n);
    for (int64_t t = 0; t < N; t++) rows[t] = t;
    for (int64_t t = 0; t < n && n < N; t++) { /* a uniform subset without replacement */
        int64_t j = t + (int64_t)kdx_generator_below(gen, (uint64_t)(N - t)), tmp = rows[t];
        rows[t] = rows[j], rows[j] = tmp;
    }
    kdx_tensor *xc = NULL, *res = NULL;
    kdx_status s = kdx_contiguous(X, &xc);
    if (s == KDX_OK) s = kdx__new(fname, KDX_DTYPE_F64, 1, &npairs, &res);
    gridded d = {0};
    d.X = xc, d.N = N, d.B = n, d.rows = rows, d.pts = rows, d.rb = (size_t)M * kdx_dtype_size(X->dtype);
    /* One-feature PDs are shared between pairs: computed once per feature (a NaN marks "not yet"). */
    for (int64_t f = 0; f < M; f++) cache[f * n] = NAN;
    for (int64_t q = 0; q < npairs && s == KDX_OK; q++) {
        int64_t jj[2] = {pairs[2 * q], pairs[2 * q + 1]};
        for (int t = 0; t < 2 && s == KDX_OK; t++) {
            double *c = cache + jj[t] * n;
            if (c[0] == c[0]) continue;
            d.nf = 1, d.j[0] = jj[t];
            s = centred_pd(fname, m, target, batch_size, &d, y, c);
        }
        d.nf = 2, d.j[0] = jj[0], d.j[1] = jj[1];
        if (s == KDX_OK) s = centred_pd(fname, m, target, batch_size, &d, y, pjk);
        double num = 0, den = 0;
        for (int64_t p = 0; p < n && s == KDX_OK; p++) {
            double r = pjk[p] - cache[jj[0] * n + p] - cache[jj[1] * n + p];
            num += r * r, den += pjk[p] * pjk[p];
        }
        if (s == KDX_OK) ((double *)kdx__base(res))[q] = den > 0 ? num / den : 0;
    }
    kdx__free(mem, bytes);
    kdx_tensor_release(xc);
    if (s != KDX_OK) {
        kdx_tensor_release(res);
        return s;
    }
    *out = res;
    return KDX_OK;
}
