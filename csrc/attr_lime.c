/* attr_lime.c — LIME (Ribeiro et al. 2016) on binary interpretable features:
 * a feature present takes x's values, absent the baseline's (LIME's image
 * explainer with hide_color; Captum's Lime). Per input, as lime_base.py's
 * explain_instance_with_data: `samples` binary vectors, the first all ones
 * (x itself), the rest Bernoulli(0.5) (lime_image's data_labels); the
 * distance of each to all-ones, euclidean or cosine; kernel
 * sqrt(exp(-d^2 / width^2)); feature selection (lime_base.feature_selection:
 * "highest_weights" = the largest |coef| of a Ridge(alpha=0.01) on all
 * features, "forward_selection" = greedy by the R^2 of an unpenalised fit,
 * "auto" = forward for <= 6 features); then Ridge(alpha, fit_intercept=True)
 * with the kernel as sample weights on the selected features, its weighted R^2
 * (sklearn's score) and its prediction at x. */
#include "attr_surrogate.h"

#include <math.h>
#include <string.h>

typedef struct lime_fill {
    const kdx__groups *g;
    int64_t i, M;
    const unsigned char *Z; /* [S, M] */
    const char *x, *base;
    kdx_dtype dt;
} lime_fill;

static kdx_status fill_row(void *ud, int64_t r, char *dst, int64_t *sample)
{
    lime_fill *f = ud;
    kdx__attr_mix_row(f->g, f->i, f->Z + r * f->M, f->x, f->base, dst, f->dt);
    *sample = f->i;
    return KDX_OK;
}

/* The K features to fit (cols[0..*K-1]), chosen as lime_base.feature_selection. */
static kdx_status select_features(const char *fname, const double *X, int64_t S, int64_t M, const double *y,
                                  const double *w, const kdx_lime_opts *o, int64_t *cols, int64_t *K, double *beta)
{
    int64_t k = o->num_features;
    kdx_lime_selection sel = o->selection;
    if (sel == KDX_LIME_SELECT_AUTO) sel = k <= 6 ? KDX_LIME_SELECT_FORWARD : KDX_LIME_SELECT_HIGHEST_WEIGHTS;
    if (k <= 0 || k > M || sel == KDX_LIME_SELECT_NONE) k = M;
    *K = k;
    if (k == M) {
        for (int64_t j = 0; j < M; j++) cols[j] = j;
        return KDX_OK;
    }
    if (sel == KDX_LIME_SELECT_HIGHEST_WEIGHTS) {
        kdx__linreg_opts ro = {0.01, 1, NULL, 0};
        KDX_TRY(kdx__linreg(fname, X, S, M, NULL, M, y, w, &ro, beta, NULL, NULL));
        /* |coef * x0| with x0 all ones, largest first; ties keep the lower
           index (Python's stable sort) */
        for (int64_t n = 0; n < k; n++) {
            int64_t best = -1;
            for (int64_t j = 0; j < M; j++) {
                int used = 0;
                for (int64_t t = 0; t < n && !used; t++) used = cols[t] == j;
                if (!used && (best < 0 || fabs(beta[j]) > fabs(beta[best]))) best = j;
            }
            cols[n] = best;
        }
        return KDX_OK;
    }
    kdx__linreg_opts ro = {0, 1, NULL, 0};
    for (int64_t n = 0; n < k; n++) {
        double best_score = -1e8;
        int64_t best = -1;
        for (int64_t j = 0; j < M; j++) {
            int used = 0;
            for (int64_t t = 0; t < n && !used; t++) used = cols[t] == j;
            if (used) continue;
            cols[n] = j;
            double r2 = 0;
            /* a singular candidate (a column that never varies) just loses */
            if (kdx__linreg(fname, X, S, M, cols, n + 1, y, w, &ro, beta, NULL, &r2) != KDX_OK) continue;
            if (best < 0 || r2 > best_score) best_score = r2, best = j;
        }
        if (best < 0) return kdx_fail(KDX_ESTATE, "%s: forward selection found no feature that can be fitted", fname);
        cols[n] = best;
    }
    return KDX_OK;
}

typedef struct lime_job {
    const kdx_model *m;
    const kdx_tensor *x, *target;
    const kdx__groups *g;
    const char *xd, *bd;
    size_t row_bytes;
    const kdx_lime_opts *o;
    int64_t batch_size;
    kdx_generator *gen;
} lime_job;

/* coef[M] (0 where not selected) and info[3] of sample i. */
static kdx_status explain_one(const lime_job *J, int64_t i, double *coef, double *info)
{
    const char *fname = "lime";
    int64_t M = J->g->nfeat[i], S = J->o->samples;
    if ((size_t)S > SIZE_MAX / 16 / (size_t)M) return kdx_fail(KDX_EINVAL, "%s: %lld samples are too many", fname, (long long)S);
    size_t zb = (size_t)S * (size_t)M, db = ((size_t)S * (size_t)M + 3 * (size_t)S + 2 * (size_t)M) * sizeof(double),
           cb = (size_t)M * sizeof(int64_t);
    unsigned char *Z = kdx__malloc(zb);
    double *X = kdx__malloc(db);
    int64_t *cols = kdx__malloc(cb);
    kdx_status s = KDX_OK;
    if (!Z || !X || !cols) s = kdx_fail(KDX_ENOMEM, "%s: out of memory for %lld samples of %lld features", fname,
                                        (long long)S, (long long)M);
    if (s == KDX_OK) {
        double *y = X + (size_t)S * (size_t)M, *w = y + S, *beta = w + S;
        memset(Z, 1, (size_t)M); /* sample 0: x itself */
        for (int64_t r = 1; r < S; r++) {
            uint64_t bits = 0;
            for (int64_t j = 0; j < M; j++) {
                if (j % 64 == 0) bits = kdx_generator_next(J->gen);
                Z[r * M + j] = (unsigned char)(bits & 1), bits >>= 1;
            }
        }
        lime_fill f = {J->g, i, M, Z, J->xd + (size_t)i * J->row_bytes, J->bd + (size_t)i * J->row_bytes, J->x->dtype};
        s = kdx__attr_eval_rows(fname, J->m, J->x, J->target, S, fill_row, &f, J->batch_size, y);
        double width = J->o->kernel_width > 0 ? J->o->kernel_width : 0.75 * sqrt((double)M);
        for (int64_t r = 0; r < S && s == KDX_OK; r++) {
            int64_t on = 0;
            for (int64_t j = 0; j < M; j++) on += X[r * M + j] = Z[r * M + j];
            /* distance to all ones: euclidean sqrt(#off); cosine 1 - on / sqrt(on M), 1 for the zero vector */
            double d = J->o->distance == KDX_LIME_EUCLIDEAN ? sqrt((double)(M - on))
                                                            : on ? 1 - sqrt((double)on / (double)M) : 1;
            w[r] = sqrt(exp(-d * d / (width * width)));
        }
        int64_t K = 0;
        if (s == KDX_OK) s = select_features(fname, X, S, M, y, w, J->o, cols, &K, beta);
        kdx__linreg_opts ro = {J->o->alpha, 1, NULL, 0};
        if (s == KDX_OK) s = kdx__linreg(fname, X, S, M, cols, K, y, w, &ro, beta, &info[0], &info[1]);
        if (s == KDX_OK) {
            memset(coef, 0, (size_t)M * sizeof(double));
            info[2] = info[0];
            for (int64_t k = 0; k < K; k++) coef[cols[k]] = beta[k], info[2] += beta[k]; /* x0 is all ones */
        }
    }
    if (Z) kdx__free(Z, zb);
    if (X) kdx__free(X, db);
    if (cols) kdx__free(cols, cb);
    return s;
}

kdx_status kdx_attr_lime(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *baseline, const kdx_tensor *mask,
                         const kdx_tensor *target, const kdx_lime_opts *o, kdx_generator *gen, int64_t batch_size,
                         kdx_tensor **out, kdx_tensor **info)
{
    const char *fname = "lime";
    KDX_TRY(kdx__attr_check(fname, m, x, batch_size));
    if (o->samples < 2) return kdx_fail(KDX_EINVAL, "%s: samples must be >= 2, got %lld", fname, (long long)o->samples);
    if (!(o->alpha >= 0)) return kdx_fail(KDX_EINVAL, "%s: alpha must be >= 0, got %g", fname, o->alpha);
    if (!(o->kernel_width >= 0) || !isfinite(o->kernel_width))
        return kdx_fail(KDX_EINVAL, "%s: kernel_width must be > 0, got %g", fname, o->kernel_width);
    if (o->num_features < 0)
        return kdx_fail(KDX_EINVAL, "%s: num_features must be >= 1, got %lld", fname, (long long)o->num_features);
    kdx__groups g;
    KDX_TRY(kdx__attr_groups(fname, x, mask, &g));
    kdx_tensor *xc = NULL, *base = NULL, *attr = NULL, *inf = NULL;
    double *coef = NULL;
    int64_t N = x->shape[0], three[2] = {N, 3};
    kdx_status s = kdx_contiguous(x, &xc);
    if (s == KDX_OK) s = kdx__attr_baseline(fname, x, baseline, &base);
    if (s == KDX_OK) s = kdx__new_raw(fname, x->dtype, x->ndim, x->shape, &attr);
    if (s == KDX_OK) s = kdx__new_raw(fname, KDX_DTYPE_F64, 2, three, &inf);
    if (s == KDX_OK && !(coef = kdx__malloc((size_t)g.max_feat * sizeof(double))))
        s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    lime_job J = {m, x, target, &g, s == KDX_OK ? kdx__base(xc) : NULL, s == KDX_OK ? kdx__base(base) : NULL,
                  (size_t)g.per * kdx_dtype_size(x->dtype), o, batch_size, gen ? gen : kdx_default_generator()};
    for (int64_t i = 0; i < N && s == KDX_OK; i++) {
        s = explain_one(&J, i, coef, (double *)kdx__base(inf) + 3 * i);
        if (s == KDX_OK) kdx__attr_spread(&g, i, coef, attr);
    }
    if (coef) kdx__free(coef, (size_t)g.max_feat * sizeof(double));
    kdx__attr_groups_free(&g);
    if (s == KDX_OK) {
        *out = kdx_tensor_retain(attr);
        if (info) *info = kdx_tensor_retain(inf);
    }
    KDX_RELEASE(xc, base, attr, inf);
    return s;
}
