/* attr_noise.c — attributions averaged over random draws: the noise tunnel
 * (SmoothGrad, SmoothGrad squared, VarGrad) over any attribution method, and
 * GradientShap (expected gradients).
 *
 * Both build the perturbed rows in C, in chunks of at most batch_size rows,
 * and fold each chunk's attributions into per-sample sums with index_add_.
 * Random numbers come from a local generator seeded by the caller, drawn in
 * row order (row r = copy r % samples of sample r / samples), so a result
 * depends on the seed only, not on batch_size. */
#include "kdx_internal.h"

#include <math.h>

/* A tensor [n, 1, ...] (ndim dims) of dtype dt holding v[0..n-1], to scale rows. */
static kdx_status row_column(const char *fname, kdx_dtype dt, int ndim, int64_t n, const double *v, kdx_tensor **out)
{
    int64_t shape[KDX_MAX_DIMS];
    shape[0] = n;
    for (int d = 1; d < ndim; d++) shape[d] = 1;
    kdx_tensor *t;
    KDX_TRY(kdx__new(fname, dt, ndim, shape, &t));
    for (int64_t r = 0; r < n; r++) {
        int64_t at[KDX_MAX_DIMS] = {0};
        at[0] = r;
        kdx_tensor_set(t, at, v[r]);
    }
    *out = t;
    return KDX_OK;
}

/* ids[r] = (lo + r) / samples for r < n: the sample of each row of a chunk. */
static kdx_status chunk_ids(int64_t lo, int64_t n, int samples, kdx_tensor **out)
{
    kdx_tensor *ids;
    KDX_TRY(kdx_empty(KDX_DTYPE_I64, 1, &n, &ids));
    int64_t *p = (int64_t *)kdx__base(ids);
    for (int64_t r = 0; r < n; r++) p[r] = (lo + r) / samples;
    *out = ids;
    return KDX_OK;
}

/* Per-sample noise scale: stdev, or stdev * (max - min) of each sample. */
static kdx_status noise_scales(const kdx_tensor *x, double stdev, int absolute, double *sig)
{
    int64_t N = x->shape[0], per = kdx_tensor_numel(x) / N;
    if (absolute) {
        for (int64_t i = 0; i < N; i++) sig[i] = stdev;
        return KDX_OK;
    }
    kdx_tensor *flat = NULL, *hi = NULL, *lo = NULL;
    int64_t fs[2] = {N, per};
    int one = 1;
    kdx_status s = kdx_reshape(x, 2, fs, &flat);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_AMAX, flat, &one, 1, 0, &hi);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_AMIN, flat, &one, 1, 0, &lo);
    for (int64_t i = 0; i < N && s == KDX_OK; i++) {
        double a, b;
        kdx_tensor_get(hi, &i, &a);
        kdx_tensor_get(lo, &i, &b);
        sig[i] = stdev * (a - b);
    }
    KDX_RELEASE(flat, hi, lo);
    return s;
}

/* ---- noise tunnel ---- */

/* Attributions of one chunk of noisy rows, checked to have the rows' shape. */
static kdx_status tunnel_chunk(const kdx_attr_method *am, const kdx_tensor *x, const kdx_tensor *ids,
                               const double *sig, kdx_generator *gen, kdx_tensor **attr)
{
    const char *fname = "noise_tunnel";
    int64_t n = ids->shape[0];
    double *col = kdx__malloc_raw((size_t)n * sizeof(double));
    if (!col) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    const int64_t *id = (const int64_t *)kdx__base(ids);
    for (int64_t r = 0; r < n; r++) col[r] = sig[id[r]];
    kdx_tensor *xb = NULL, *z = NULL, *sc = NULL, *zs = NULL, *xn = NULL, *a = NULL;
    kdx_status s = kdx_index_select(x, 0, ids, &xb);
    if (s == KDX_OK) s = kdx_empty(x->dtype, x->ndim, xb->shape, &z);
    if (s == KDX_OK) s = kdx_normal_(z, gen, 0, 1);
    if (s == KDX_OK) s = row_column(fname, x->dtype, x->ndim, n, col, &sc);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, z, sc, &zs);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_ADD, xb, zs, &xn);
    if (s == KDX_OK) s = am->attribute(am->ud, xn, ids, &a);
    if (s == KDX_OK && !a) s = kdx_fail(KDX_ESTATE, "%s: the method returned no tensor", fname);
    if (s == KDX_OK && !kdx__same_shape(a, xn))
        s = kdx_fail(KDX_ESHAPE, "%s: the method returned %s for inputs %s", fname, kdx__shp(a), kdx__shp(xn));
    if (s == KDX_OK) {
        kdx_tensor *d = NULL;
        s = kdx_detach(a, &d); /* the method may hand back a tensor in a graph */
        kdx_tensor_release(a);
        a = d;
    }
    kdx__free(col, (size_t)n * sizeof(double));
    KDX_RELEASE(xb, z, sc, zs, xn);
    if (s != KDX_OK) {
        kdx_tensor_release(a);
        return s;
    }
    *attr = a;
    return KDX_OK;
}

kdx_status kdx_attr_noise_tunnel(const kdx_attr_method *am, const kdx_tensor *x, kdx_nt_type type, int samples,
                                 double stdev, int absolute, uint64_t seed, int64_t batch_size, kdx_tensor **out)
{
    const char *fname = "noise_tunnel";
    if (!am || !am->attribute) return kdx_fail(KDX_EINVAL, "%s: method is NULL", fname);
    KDX_TRY(kdx__check_float(fname, "x", x));
    if (x->ndim < 1 || x->shape[0] < 1) return kdx_fail(KDX_ESHAPE, "%s: x must be a batch [N, ...], got %s", fname, kdx__shp(x));
    if (batch_size < 1) return kdx_fail(KDX_EINVAL, "%s: batch_size must be >= 1, got %lld", fname, (long long)batch_size);
    if (samples < 1) return kdx_fail(KDX_EINVAL, "%s: samples must be >= 1, got %d", fname, samples);
    if (!(stdev >= 0) || isinf(stdev)) return kdx_fail(KDX_EINVAL, "%s: stdev must be a finite number >= 0, got %g", fname, stdev);
    if (type != KDX_NT_SMOOTHGRAD && type != KDX_NT_SMOOTHGRAD_SQ && type != KDX_NT_VARGRAD)
        return kdx_fail(KDX_EINVAL, "%s: unknown nt_type %d", fname, (int)type);
    int64_t N = x->shape[0];
    if (N > INT64_MAX / samples) return kdx_fail(KDX_EINVAL, "%s: %lld samples x %d copies overflow", fname, (long long)N, samples);
    double *sig = kdx__malloc_raw((size_t)N * sizeof(double));
    if (!sig) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    kdx_generator *gen = NULL;
    kdx_tensor *sum = NULL, *sq = NULL, *res = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = noise_scales(x, stdev, absolute, sig);
    if (s == KDX_OK) s = kdx_generator_new(seed, &gen);
    if (s == KDX_OK) s = kdx_zeros(x->dtype, x->ndim, x->shape, &sum);
    if (s == KDX_OK && type != KDX_NT_SMOOTHGRAD) s = kdx_zeros(x->dtype, x->ndim, x->shape, &sq);
    int64_t total = N * samples;
    for (int64_t lo = 0; lo < total && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, total - lo);
        kdx_tensor *ids = NULL, *a = NULL, *a2 = NULL;
        s = chunk_ids(lo, n, samples, &ids);
        kdx__grad_restore(was); /* the method decides about recording itself */
        if (s == KDX_OK) s = tunnel_chunk(am, x, ids, sig, gen, &a);
        kdx__grad_pause();
        if (s == KDX_OK && a->dtype != x->dtype) {
            kdx_tensor *c = NULL;
            s = kdx_to(a, x->dtype, &c);
            kdx_tensor_release(a);
            a = c;
        }
        if (s == KDX_OK && type == KDX_NT_SMOOTHGRAD) s = kdx_index_add_(sum, 0, ids, a, 1);
        if (s == KDX_OK && type == KDX_NT_VARGRAD) s = kdx_index_add_(sum, 0, ids, a, 1);
        if (s == KDX_OK && type != KDX_NT_SMOOTHGRAD) s = kdx_binary(KDX_BIN_MUL, a, a, &a2);
        if (s == KDX_OK && type != KDX_NT_SMOOTHGRAD) s = kdx_index_add_(sq, 0, ids, a2, 1);
        KDX_RELEASE(ids, a, a2);
    }
    /* smoothgrad: E[A]; smoothgrad_sq: E[A^2]; vargrad: E[A^2] - E[A]^2 (as Captum). */
    if (s == KDX_OK && type == KDX_NT_SMOOTHGRAD) s = kdx_binary_scalar(KDX_BIN_DIV, sum, samples, 0, &res);
    if (s == KDX_OK && type == KDX_NT_SMOOTHGRAD_SQ) s = kdx_binary_scalar(KDX_BIN_DIV, sq, samples, 0, &res);
    if (s == KDX_OK && type == KDX_NT_VARGRAD) {
        kdx_tensor *m = NULL, *m2 = NULL, *e2 = NULL;
        s = kdx_binary_scalar(KDX_BIN_DIV, sum, samples, 0, &m);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, m, m, &m2);
        if (s == KDX_OK) s = kdx_binary_scalar(KDX_BIN_DIV, sq, samples, 0, &e2);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, e2, m2, &res);
        KDX_RELEASE(m, m2, e2);
    }
    kdx__grad_restore(was);
    kdx_generator_free(gen);
    kdx__free(sig, (size_t)N * sizeof(double));
    KDX_RELEASE(sum, sq);
    if (s != KDX_OK) {
        kdx_tensor_release(res);
        return s;
    }
    *out = res;
    return KDX_OK;
}

/* ---- GradientShap ---- */

/* mean over the baselines of the model's raw outputs ([C] or a 0-d value), in chunks. */
static kdx_status baseline_mean_output(const char *fname, const kdx_model *m, const kdx_tensor *base,
                                       int64_t batch_size, kdx_tensor **out)
{
    int64_t B = base->shape[0];
    kdx_tensor *acc = NULL;
    kdx_status s = KDX_OK;
    int was = kdx_set_grad_enabled(0);
    int zero = 0;
    for (int64_t lo = 0; lo < B && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, B - lo);
        kdx_tensor *b = NULL, *y = NULL, *part = NULL, *t = NULL;
        s = kdx_narrow(base, 0, lo, n, &b);
        if (s == KDX_OK) s = kdx__attr_call(fname, m, b, &y);
        if (s == KDX_OK && y->ndim > 2) s = kdx_fail(KDX_ESHAPE, "%s: the model must return [N] or [N, classes], got %s", fname, kdx__shp(y));
        if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, y, &zero, 1, 0, &part);
        if (s == KDX_OK && acc && !kdx__same_shape(acc, part))
            s = kdx_fail(KDX_ESHAPE, "%s: the model returned %s, then %s", fname, kdx__shp(acc), kdx__shp(part));
        if (s == KDX_OK && acc) s = kdx_binary(KDX_BIN_ADD, acc, part, &t);
        else if (s == KDX_OK) t = kdx_tensor_retain(part);
        kdx_tensor_release(acc);
        acc = t;
        KDX_RELEASE(b, y, part);
    }
    kdx_set_grad_enabled(was);
    if (s == KDX_OK) s = kdx_binary_scalar(KDX_BIN_DIV, acc, (double)B, 0, out);
    kdx_tensor_release(acc);
    return s;
}

/* sum(attr_i) - (f(x_i) - mean_b f_target_i(b)) per sample. */
static kdx_status shap_delta(const char *fname, const kdx_model *m, const kdx_tensor *x, const kdx_tensor *base,
                             const kdx_tensor *target, const kdx_tensor *attr, int64_t batch_size, kdx_tensor **out)
{
    int64_t N = x->shape[0], per = kdx_tensor_numel(x) / N;
    kdx_tensor *fx = NULL, *ybar = NULL, *yrep = NULL, *fb = NULL, *flat = NULL, *sums = NULL, *gap = NULL;
    kdx_status s = KDX_OK;
    /* f(x) in chunks too: the model never sees more than batch_size rows */
    kdx_tensor *parts = NULL;
    s = kdx_empty(x->dtype, 1, &N, &parts);
    for (int64_t lo = 0; lo < N && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, N - lo);
        kdx_tensor *xb = NULL, *v = NULL, *dst = NULL;
        s = kdx_narrow(x, 0, lo, n, &xb);
        if (s == KDX_OK) s = kdx__attr_outputs(fname, m, xb, target, lo, &v);
        if (s == KDX_OK) s = kdx_narrow(parts, 0, lo, n, &dst);
        if (s == KDX_OK) s = kdx_copy_(dst, v);
        KDX_RELEASE(xb, v, dst);
    }
    if (s == KDX_OK) fx = kdx_tensor_retain(parts);
    kdx_tensor_release(parts);
    if (s == KDX_OK) s = baseline_mean_output(fname, m, base, batch_size, &ybar);
    if (s == KDX_OK) {
        /* one row of mean outputs per sample, so the target picks each sample's class */
        int64_t shape[2] = {N, ybar->ndim ? ybar->shape[0] : 1};
        kdx_tensor *row = NULL;
        int64_t rs[2] = {1, shape[1]};
        s = kdx_reshape(ybar, 2, rs, &row);
        if (s == KDX_OK) s = kdx_expand(row, 2, shape, &yrep);
        kdx_tensor_release(row);
    }
    if (s == KDX_OK) s = kdx__select_target(fname, yrep, target, 0, &fb);
    int64_t fs[2] = {N, per};
    int one = 1;
    if (s == KDX_OK) s = kdx_reshape(attr, 2, fs, &flat);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, flat, &one, 1, 0, &sums);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, fx, fb, &gap);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, sums, gap, out);
    KDX_RELEASE(fx, ybar, yrep, fb, flat, sums, gap);
    return s;
}

/* Adds the draws lo..lo+n-1 into acc: grad f(b + alpha (x~ - b)) * (x~ - b) / samples
   for each row's sample, baseline row pick[r] and alpha al[r]. */
static kdx_status shap_chunk(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *base, const kdx_tensor *pick,
                             const double *al, const kdx_tensor *target, int samples, double stdev,
                             kdx_generator *gen, int64_t lo, int64_t n, kdx_tensor *acc)
{
    const char *fname = "gradient_shap";
    kdx_tensor *ids = NULL, *bid = NULL, *xb = NULL, *z = NULL, *xn = NULL, *b = NULL, *diff = NULL;
    kdx_tensor *ac = NULL, *step = NULL, *pts = NULL, *tg = NULL, *g = NULL, *a = NULL;
    kdx_status s = chunk_ids(lo, n, samples, &ids);
    if (s == KDX_OK) s = kdx_narrow(pick, 0, lo, n, &bid);
    if (s == KDX_OK) s = kdx_index_select(x, 0, ids, &xb);
    if (s == KDX_OK && stdev > 0) {
        s = kdx_empty(x->dtype, x->ndim, xb->shape, &z);
        if (s == KDX_OK) s = kdx_normal_(z, gen, 0, stdev);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_ADD, xb, z, &xn);
    } else if (s == KDX_OK) {
        xn = kdx_tensor_retain(xb);
    }
    if (s == KDX_OK) s = kdx_index_select(base, 0, bid, &b);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, xn, b, &diff);
    if (s == KDX_OK) s = row_column(fname, x->dtype, x->ndim, n, al + lo, &ac);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, diff, ac, &step);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_ADD, b, step, &pts);
    if (s == KDX_OK) s = kdx__attr_row_targets(fname, target, x->shape[0], ids, &tg);
    if (s == KDX_OK) s = kdx__attr_grad(fname, m, pts, tg, 0, &g, NULL);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, g, diff, &a);
    if (s == KDX_OK) s = kdx_index_add_(acc, 0, ids, a, 1.0 / samples);
    KDX_RELEASE(ids, bid, xb, z, xn, b, diff);
    KDX_RELEASE(ac, step, pts, tg, g, a);
    return s;
}

kdx_status kdx_attr_gradient_shap(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *baselines,
                                  const kdx_tensor *target, int samples, double stdev, uint64_t seed,
                                  int64_t batch_size, kdx_tensor **out, kdx_tensor **delta)
{
    const char *fname = "gradient_shap";
    KDX_TRY(kdx__attr_check(fname, m, x, batch_size));
    KDX_TRY(kdx__check_float(fname, "baselines", baselines));
    if (baselines->ndim != x->ndim || baselines->shape[0] < 1)
        return kdx_fail(KDX_ESHAPE, "%s: baselines must be [B, ...] with B >= 1 and x's sample shape, got %s for x %s",
                        fname, kdx__shp(baselines), kdx__shp(x));
    for (int d = 1; d < x->ndim; d++)
        if (baselines->shape[d] != x->shape[d])
            return kdx_fail(KDX_ESHAPE, "%s: baselines %s do not match x %s", fname, kdx__shp(baselines), kdx__shp(x));
    if (samples < 1) return kdx_fail(KDX_EINVAL, "%s: samples must be >= 1, got %d", fname, samples);
    if (!(stdev >= 0) || isinf(stdev)) return kdx_fail(KDX_EINVAL, "%s: stdev must be a finite number >= 0, got %g", fname, stdev);
    int64_t N = x->shape[0], B = baselines->shape[0];
    if (N > INT64_MAX / samples) return kdx_fail(KDX_EINVAL, "%s: %lld samples x %d draws overflow", fname, (long long)N, samples);
    int64_t total = N * samples;
    kdx_generator *gen = NULL;
    kdx_tensor *base = NULL, *pick = NULL, *alpha = NULL, *acc = NULL, *attr = NULL, *dl = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = kdx_to(baselines, x->dtype, &base);
    /* All baseline rows first, then all alphas, then the noise chunk by chunk:
       the same stream whatever batch_size is. */
    if (s == KDX_OK) s = kdx_generator_new(seed, &gen);
    if (s == KDX_OK) s = kdx_randint(gen, 0, B, KDX_DTYPE_I64, 1, &total, &pick);
    if (s == KDX_OK) s = kdx_rand(gen, KDX_DTYPE_F64, 1, &total, &alpha);
    if (s == KDX_OK) s = kdx_zeros(x->dtype, x->ndim, x->shape, &acc);
    const double *al = s == KDX_OK ? (const double *)kdx__base(alpha) : NULL;
    for (int64_t lo = 0; lo < total && s == KDX_OK; lo += batch_size)
        s = shap_chunk(m, x, base, pick, al, target, samples, stdev, gen, lo, kdx__min64(batch_size, total - lo), acc);
    if (s == KDX_OK) attr = kdx_tensor_retain(acc);
    if (s == KDX_OK && delta) s = shap_delta(fname, m, x, base, target, attr, batch_size, &dl);
    kdx__grad_restore(was);
    kdx_generator_free(gen);
    KDX_RELEASE(base, pick, alpha, acc);
    if (s != KDX_OK) {
        KDX_RELEASE(attr, dl);
        return s;
    }
    *out = attr;
    if (delta) *delta = dl;
    return KDX_OK;
}
