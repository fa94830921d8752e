/* attr_shap.c — KernelSHAP (Lundberg & Lee 2017) with one fixed baseline:
 * "baseline Shapley" values of the features (or feature groups) of each
 * sample, fitted by weighted least squares over coalitions z with the Shapley
 * kernel pi(z) = (M-1) / (C(M,|z|) |z| (M-|z|)).
 *
 * As shap's KernelExplainer (shap/explainers/_kernel.py, `sample` and
 * `solve`): features whose elements equal the baseline are not varied (they
 * get 0); the empty and full coalitions are not regression rows but
 * constraints — f(baseline) is subtracted from every output and the
 * efficiency sum(phi) = f(x) - f(baseline) is imposed exactly (shap eliminates
 * the last variable; linreg.c borders the normal equations with the
 * constraint row, the same solution). When the budget covers all 2^M - 2
 * coalitions they are enumerated with their kernel weights (the exact
 * Shapley values); otherwise shap's scheme: subset sizes are enumerated
 * whole, smallest first and paired with their complements, while the budget
 * allows, and the rest is sampled by size with paired complements, repeats
 * adding weight, the random part scaled to the kernel weight left over. */
#include "attr_surrogate.h"

#include <math.h>
#include <string.h>

/* The coalitions of one sample: rows of M bytes (1 = feature present). */
typedef struct coalitions {
    unsigned char *Z;
    double *w;
    int64_t n, cap, M;
    int64_t *slot; /* hash table of row indices (-1 empty), hmask + 1 slots */
    uint64_t hmask;
} coalitions;

static double binom(int64_t n, int64_t k)
{
    double r = 1;
    for (int64_t i = 1; i <= k; i++) r = r * (double)(n - k + i) / (double)i;
    return r;
}

static uint64_t hash_row(const unsigned char *z, int64_t M)
{
    uint64_t h = 1469598103934665603ull;
    for (int64_t j = 0; j < M; j++) h = (h ^ z[j]) * 1099511628211ull;
    return h;
}

/* Index of row z in the set, or -1; with add, inserts it (weight w) when new. */
static int64_t find_or_add(coalitions *c, const unsigned char *z, double w, int add)
{
    uint64_t h = hash_row(z, c->M) & c->hmask;
    while (c->slot[h] >= 0) {
        if (memcmp(c->Z + c->slot[h] * c->M, z, (size_t)c->M) == 0) return c->slot[h];
        h = (h + 1) & c->hmask;
    }
    if (!add || c->n >= c->cap) return -1;
    memcpy(c->Z + c->n * c->M, z, (size_t)c->M);
    c->w[c->n] = w;
    c->slot[h] = c->n;
    return c->n++;
}

static void add_row(coalitions *c, const unsigned char *z, double w)
{
    int64_t n0 = c->n, r = find_or_add(c, z, w, 1);
    if (r >= 0 && c->n == n0) c->w[r] += w; /* seen before: more weight */
}

/* All 2^M - 2 proper coalitions with their Shapley kernel weights. */
static void enumerate_all(coalitions *c)
{
    int64_t M = c->M;
    unsigned char *z = c->Z;
    for (uint64_t bits = 1; bits + 1 < (1ull << M); bits++) {
        int64_t s = 0;
        for (int64_t j = 0; j < M; j++) s += z[j] = (bits >> j) & 1;
        c->w[c->n] = (double)(M - 1) / (binom(M, s) * (double)s * (double)(M - s));
        c->n++;
        z += M;
    }
}

/* shap's size weights: wv[s] for s = 1..M/2, the kernel mass of sizes s and
   M - s (doubled for paired sizes), normalised to sum to 1. */
static void size_weights(int64_t M, double *wv)
{
    int64_t nsub = M / 2, npaired = (M - 1) / 2; /* ceil((M-1)/2), floor((M-1)/2) */
    double tot = 0;
    for (int64_t s = 1; s <= nsub; s++) {
        wv[s] = (double)(M - 1) / ((double)s * (double)(M - s)) * (s <= npaired ? 2 : 1);
        tot += wv[s];
    }
    for (int64_t s = 1; s <= nsub; s++) wv[s] /= tot;
}

/* Adds every subset of size s (and its complement when paired) with weight w,
   in lexicographic order. */
static void add_size(coalitions *c, int64_t s, int paired, double w, unsigned char *z, int64_t *idx)
{
    int64_t M = c->M;
    for (int64_t k = 0; k < s; k++) idx[k] = k;
    for (;;) {
        memset(z, 0, (size_t)M);
        for (int64_t k = 0; k < s; k++) z[idx[k]] = 1;
        add_row(c, z, w);
        if (paired) {
            for (int64_t j = 0; j < M; j++) z[j] ^= 1;
            add_row(c, z, w);
        }
        int64_t k = s - 1;
        while (k >= 0 && idx[k] == M - s + k) k--;
        if (k < 0) return;
        idx[k]++;
        for (int64_t l = k + 1; l < s; l++) idx[l] = idx[l - 1] + 1;
    }
}

/* Whole subset sizes, smallest first, while the budget ns allows (shap's
   test: budget x remaining weight share >= the number of subsets). Returns
   how many sizes were enumerated. */
static int64_t enumerate_sizes(coalitions *c, int64_t ns, const double *wv, unsigned char *z, int64_t *idx)
{
    int64_t M = c->M, nsub = M / 2, npaired = (M - 1) / 2, nfull = 0;
    double left = (double)ns, remsum = 1;
    for (int64_t s = 1; s <= nsub; s++) {
        double nsubsets = binom(M, s) * (s <= npaired ? 2 : 1), rem = wv[s] / remsum;
        if (!(left * rem / nsubsets >= 1 - 1e-8)) break;
        nfull++, left -= nsubsets, remsum -= wv[s];
        add_size(c, s, s <= npaired, wv[s] / binom(M, s) / (s <= npaired ? 2 : 1), z, idx);
    }
    return nfull;
}

/* The rest of the budget, sampled: a size > nfull drawn by its weight (halved
   for paired sizes when each draw adds two rows), a uniform subset of that
   size, and its complement (paired) or, unpaired, the subset or its
   complement with probability 1/2. Repeats add weight; the sampled rows are
   then scaled to the kernel weight the enumerated sizes left over. */
static void sample_rest(coalitions *c, int64_t ns, int64_t nfull, int paired, kdx_generator *gen, const double *wv,
                        unsigned char *z, int64_t *idx)
{
    int64_t M = c->M, nsub = M / 2, npaired = (M - 1) / 2, nfixed = c->n, left = ns - c->n;
    double rtot = 0, weight_left = 0;
    if (M < 2) return; /* (callers have M >= 2; this tells the compiler) */
    for (int64_t s = nfull + 1; s <= nsub; s++) {
        weight_left += wv[s];
        rtot += wv[s] / (paired && s <= npaired ? 2 : 1);
    }
    for (int64_t d = 0; d < 4 * (ns - nfixed) && left > 0; d++) {
        double u = kdx_generator_uniform(gen) * rtot, acc = 0;
        int64_t s = nfull + 1;
        for (; s < nsub; s++) {
            acc += wv[s] / (paired && s <= npaired ? 2 : 1);
            if (u < acc) break;
        }
        for (int64_t j = 0; j < M; j++) idx[j] = j;
        memset(z, 0, (size_t)M);
        for (int64_t k = 0; k < s; k++) { /* the first s of a random permutation */
            int64_t r = k + (int64_t)kdx_generator_below(gen, (uint64_t)(M - k));
            int64_t t = idx[k];
            idx[k] = idx[r], idx[r] = t;
            z[idx[k]] = 1;
        }
        if (!paired && s <= npaired && kdx_generator_below(gen, 2))
            for (int64_t j = 0; j < M; j++) z[j] ^= 1;
        int64_t n0 = c->n;
        add_row(c, z, 1);
        left -= c->n - n0;
        if (paired && s <= npaired) {
            for (int64_t j = 0; j < M; j++) z[j] ^= 1;
            n0 = c->n;
            int64_t r = find_or_add(c, z, 1, left > 0);
            if (c->n > n0) left--;
            else if (r >= 0) c->w[r] += 1; /* its complement was seen: more weight */
        }
    }
    double sum = 0;
    for (int64_t r = nfixed; r < c->n; r++) sum += c->w[r];
    for (int64_t r = nfixed; r < c->n; r++) c->w[r] *= weight_left / sum;
}

static void coalitions_free(coalitions *c)
{
    if (c->Z) kdx__free(c->Z, (size_t)c->cap * (size_t)c->M);
    if (c->w) kdx__free(c->w, (size_t)c->cap * sizeof(double));
    if (c->slot) kdx__free(c->slot, (size_t)(c->hmask + 1) * sizeof(int64_t));
    memset(c, 0, sizeof *c);
}

/* The coalitions of Mv >= 2 varied features for a budget of `samples`
   (0: automatic): all of them (exact) or shap's scheme. z, idx [Mv] and
   wv [Mv / 2 + 1] are scratch. */
static kdx_status coalitions_make(const char *fname, int64_t Mv, int64_t samples, int paired, kdx_generator *gen,
                                  coalitions *c, unsigned char *z, int64_t *idx, double *wv)
{
    int64_t all = Mv <= 30 ? (int64_t)((1ull << Mv) - 2) : INT64_MAX;
    int exact = samples == 0 ? Mv <= 12 : samples >= all;
    int64_t ns = exact ? all : samples ? samples : kdx__min64(2 * Mv + 2048, all);
    if ((uint64_t)ns > SIZE_MAX / 16 / (uint64_t)Mv)
        return kdx_fail(KDX_EINVAL, "%s: %lld coalitions of %lld features are too many", fname, (long long)ns,
                        (long long)Mv);
    uint64_t hs = 1;
    while (!exact && hs < 2 * (uint64_t)ns + 2) hs <<= 1; /* a hash table at most half full */
    c->M = Mv, c->cap = ns, c->hmask = hs - 1;
    c->Z = kdx__malloc((size_t)ns * (size_t)Mv);
    c->w = kdx__malloc((size_t)ns * sizeof(double));
    c->slot = exact ? NULL : kdx__malloc_raw((size_t)hs * sizeof(int64_t));
    if (!c->Z || !c->w || (!exact && !c->slot)) {
        coalitions_free(c);
        return kdx_fail(KDX_ENOMEM, "%s: out of memory for %lld coalitions", fname, (long long)ns);
    }
    if (exact) {
        enumerate_all(c);
        return KDX_OK;
    }
    for (uint64_t h = 0; h < hs; h++) c->slot[h] = -1;
    size_weights(Mv, wv);
    int64_t nfull = enumerate_sizes(c, ns, wv, z, idx);
    if (nfull < Mv / 2) sample_rest(c, ns, nfull, paired, gen, wv, z, idx);
    return KDX_OK;
}

/* ---- one sample ---- */

typedef struct shap_fill {
    const kdx__groups *g;
    int64_t i, M, Mv;
    const int64_t *vary;       /* [Mv] the varied features */
    const unsigned char *Z;    /* [rows, Mv] after the two end rows */
    unsigned char *present;    /* [M] */
    const char *x, *base;
    kdx_dtype dt;
} shap_fill;

static kdx_status fill_row(void *ud, int64_t r, char *dst, int64_t *sample)
{
    shap_fill *f = ud;
    memset(f->present, r == 0, (size_t)f->M); /* row 0 the full coalition, row 1 the empty one */
    if (r >= 2)
        for (int64_t k = 0; k < f->Mv; k++) f->present[f->vary[k]] = f->Z[(r - 2) * f->Mv + k];
    kdx__attr_mix_row(f->g, f->i, f->present, f->x, f->base, dst, f->dt);
    *sample = f->i;
    return KDX_OK;
}

typedef struct shap_job {
    const kdx_model *m;
    const kdx_tensor *x, *target;
    const kdx__groups *g;
    const char *xd, *bd;
    size_t row_bytes;
    int64_t samples, batch_size;
    int paired;
    kdx_generator *gen;
} shap_job;

/* The constrained fit: phi[vary[k]] from the coalitions' outputs y[0..n-1]
   (relative to f(baseline)) with sum(phi) = gain. */
static kdx_status fit_phi(const char *fname, const coalitions *c, const double *y, double gain, const int64_t *vary,
                          double *phi)
{
    int64_t n = c->n, Mv = c->M;
    size_t bytes = ((size_t)n * (size_t)Mv + 2 * (size_t)Mv) * sizeof(double);
    double *X = kdx__malloc(bytes);
    if (!X) return kdx_fail(KDX_ENOMEM, "%s: out of memory for the regression", fname);
    double *beta = X + (size_t)n * (size_t)Mv, *ones = beta + Mv;
    for (int64_t r = 0; r < n * Mv; r++) X[r] = c->Z[r];
    for (int64_t k = 0; k < Mv; k++) ones[k] = 1;
    kdx__linreg_opts o = {0, 0, ones, gain};
    kdx_status s = kdx__linreg(fname, X, n, Mv, NULL, Mv, y, c->w, &o, beta, NULL, NULL);
    for (int64_t k = 0; k < Mv && s == KDX_OK; k++) phi[vary[k]] = beta[k];
    kdx__free(X, bytes);
    return s;
}

/* phi[M] of sample i; fx, f0 the model at x and at the baseline. */
static kdx_status explain_one(const shap_job *J, int64_t i, double *phi, double *fx, double *f0)
{
    const char *fname = "kernel_shap";
    const kdx__groups *g = J->g;
    int64_t M = g->nfeat[i], per = g->per, Mv = 0;
    const int64_t *ids = kdx__groups_of(g, i);
    const char *x = J->xd + (size_t)i * J->row_bytes, *b = J->bd + (size_t)i * J->row_bytes;
    size_t esz = J->row_bytes / (size_t)per;
    /* vary, idx [M] int64; wv [M + 1] double; present, z [M] bytes */
    size_t bytes = (size_t)M * (2 * sizeof(int64_t) + 2) + (size_t)(M + 1) * sizeof(double);
    char *mem = kdx__malloc(bytes);
    if (!mem) return kdx_fail(KDX_ENOMEM, "%s: out of memory for %lld features", fname, (long long)M);
    int64_t *vary = (int64_t *)(void *)mem, *idx = vary + M;
    double *wv = (double *)(void *)(idx + M), *y = NULL;
    unsigned char *present = (unsigned char *)(wv + M + 1), *z = present + M;
    /* features that differ from the baseline somewhere are varied; the rest get 0 */
    for (int64_t e = 0; e < per; e++)
        if (memcmp(x + (size_t)e * esz, b + (size_t)e * esz, esz) != 0) present[ids[e]] = 1;
    for (int64_t j = 0; j < M; j++)
        if (present[j]) vary[Mv++] = j;
    coalitions c = {0};
    kdx_status s = Mv >= 2 ? coalitions_make(fname, Mv, J->samples, J->paired, J->gen, &c, z, idx, wv) : KDX_OK;
    if (s == KDX_OK && !(y = kdx__malloc((size_t)(c.n + 2) * sizeof(double))))
        s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    if (s == KDX_OK) { /* rows: x, the baseline, then the coalitions */
        shap_fill f = {g, i, M, Mv, vary, c.Z, present, x, b, J->x->dtype};
        s = kdx__attr_eval_rows(fname, J->m, J->x, J->target, c.n + 2, fill_row, &f, J->batch_size, y);
    }
    if (s == KDX_OK) {
        *fx = y[0], *f0 = y[1];
        memset(phi, 0, (size_t)M * sizeof(double));
        if (Mv == 1) phi[vary[0]] = y[0] - y[1];
        for (int64_t r = 0; r < c.n; r++) y[r + 2] -= y[1];
        if (Mv >= 2) s = fit_phi(fname, &c, y + 2, y[0] - y[1], vary, phi);
    }
    if (y) kdx__free(y, (size_t)(c.n + 2) * sizeof(double));
    coalitions_free(&c);
    kdx__free(mem, bytes);
    return s;
}

void kdx__attr_spread(const kdx__groups *g, int64_t i, const double *phi, kdx_tensor *attr)
{
    const int64_t *ids = kdx__groups_of(g, i);
    if (attr->dtype == KDX_DTYPE_F64) {
        double *d = (double *)kdx__base(attr) + i * g->per;
        for (int64_t e = 0; e < g->per; e++) d[e] = phi[ids[e]];
    } else {
        float *d = (float *)kdx__base(attr) + i * g->per;
        for (int64_t e = 0; e < g->per; e++) d[e] = (float)phi[ids[e]];
    }
}

kdx_status kdx_attr_kernel_shap(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *baseline,
                                const kdx_tensor *mask, const kdx_tensor *target, int64_t samples, int paired,
                                kdx_generator *gen, int64_t batch_size, kdx_tensor **out, kdx_tensor **info)
{
    const char *fname = "kernel_shap";
    KDX_TRY(kdx__attr_check(fname, m, x, batch_size));
    if (samples < 0) return kdx_fail(KDX_EINVAL, "%s: samples must be >= 0 (0: automatic), got %lld", fname, (long long)samples);
    kdx__groups g;
    KDX_TRY(kdx__attr_groups(fname, x, mask, &g));
    kdx_tensor *xc = NULL, *base = NULL, *attr = NULL, *inf = NULL;
    double *phi = NULL;
    int64_t N = x->shape[0], three[2] = {N, 3};
    kdx_status s = kdx_contiguous(x, &xc);
    if (s == KDX_OK) s = kdx__attr_baseline(fname, x, baseline, &base);
    if (s == KDX_OK) s = kdx__new_raw(fname, x->dtype, x->ndim, x->shape, &attr);
    if (s == KDX_OK) s = kdx__new_raw(fname, KDX_DTYPE_F64, 2, three, &inf);
    if (s == KDX_OK && !(phi = kdx__malloc((size_t)g.max_feat * sizeof(double))))
        s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    shap_job J = {m, x, target, &g, s == KDX_OK ? kdx__base(xc) : NULL, s == KDX_OK ? kdx__base(base) : NULL,
                  (size_t)g.per * kdx_dtype_size(x->dtype), samples, batch_size, paired,
                  gen ? gen : kdx_default_generator()};
    for (int64_t i = 0; i < N && s == KDX_OK; i++) {
        double fx = 0, f0 = 0, sum = 0;
        s = explain_one(&J, i, phi, &fx, &f0);
        if (s != KDX_OK) break;
        kdx__attr_spread(&g, i, phi, attr);
        for (int64_t j = 0; j < g.nfeat[i]; j++) sum += phi[j];
        double *row = (double *)kdx__base(inf) + 3 * i;
        row[0] = f0, row[1] = fx, row[2] = sum - (fx - f0);
    }
    if (phi) kdx__free(phi, (size_t)g.max_feat * sizeof(double));
    kdx__attr_groups_free(&g);
    if (s == KDX_OK) {
        *out = kdx_tensor_retain(attr);
        if (info) *info = kdx_tensor_retain(inf);
    }
    KDX_RELEASE(xc, base, attr, inf);
    return s;
}
