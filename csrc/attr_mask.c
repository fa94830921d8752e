/* attr_mask.c — what the perturbation methods share: feature groups (a
 * feature mask), the baseline that replaces an absent feature, rows mixed from
 * the two, and the loop that runs many perturbed rows through the model in
 * chunks of at most batch_size rows.
 *
 * A perturbation method thinks in rows: "row r is sample i with features S
 * present". It hands kdx__attr_eval_rows a fill function that writes row r;
 * the chunking, the per-row targets and the model calls happen here, once,
 * so every method has the same memory bound. */
#include "kdx_internal.h"

#include <string.h>

/* ---- feature groups ---- */

kdx_status kdx__attr_groups(const char *fname, const kdx_tensor *x, const kdx_tensor *mask, kdx__groups *g)
{
    memset(g, 0, sizeof *g);
    int64_t N = x->shape[0], per = kdx_tensor_numel(x) / N;
    g->N = N, g->per = per;
    int64_t shape[KDX_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    kdx_tensor *m = NULL, *full = NULL;
    kdx_status s = KDX_OK;
    if (mask) {
        if (mask->dtype != KDX_DTYPE_I64) return kdx_fail(KDX_EDTYPE, "%s: feature_mask must hold int64 group ids", fname);
        /* [sample shape] or [N or 1, sample shape], broadcast over the rest */
        if (mask->ndim == x->ndim - 1) s = kdx_unsqueeze(mask, 0, &m);
        else if (mask->ndim == x->ndim) m = kdx_tensor_retain((kdx_tensor *)mask);
        else
            return kdx_fail(KDX_ESHAPE, "%s: feature_mask %s does not fit x %s (give one sample's shape or x's)", fname,
                            kdx__shp(mask), kdx__shp(x));
        g->per_sample = s == KDX_OK && m->shape[0] != 1;
        shape[0] = g->per_sample ? N : 1;
        if (s == KDX_OK) s = kdx__new_raw(fname, KDX_DTYPE_I64, x->ndim, shape, &full);
        if (s == KDX_OK && kdx_copy_(full, m) != KDX_OK)
            s = kdx_fail(KDX_ESHAPE, "%s: feature_mask %s does not broadcast to x %s", fname, kdx__shp(mask), kdx__shp(x));
        kdx_tensor_release(m);
        if (s != KDX_OK) {
            kdx_tensor_release(full);
            return s;
        }
    }
    int64_t rows = g->per_sample ? N : 1;
    size_t bytes = ((size_t)rows * (size_t)per + (size_t)N) * sizeof(int64_t);
    int64_t *mem = kdx__malloc_raw(bytes);
    if (!mem) {
        kdx_tensor_release(full);
        return kdx_fail(KDX_ENOMEM, "%s: out of memory for the feature groups", fname);
    }
    g->ids = mem, g->nfeat = mem + rows * per, g->bytes = bytes;
    if (full) {
        memcpy(mem, kdx__base(full), (size_t)rows * (size_t)per * sizeof(int64_t));
        kdx_tensor_release(full);
    } else {
        for (int64_t e = 0; e < per; e++) mem[e] = e; /* each element its own feature */
    }
    for (int64_t r = 0; r < rows; r++) {
        int64_t top = -1;
        for (int64_t e = 0; e < per; e++) {
            int64_t id = mem[r * per + e];
            if (id < 0) {
                kdx__attr_groups_free(g);
                return kdx_fail(KDX_EINVAL, "%s: feature_mask ids must be >= 1, got %lld", fname, (long long)id + 1);
            }
            if (id > top) top = id;
        }
        if (g->per_sample) g->nfeat[r] = top + 1;
        else
            for (int64_t i = 0; i < N; i++) g->nfeat[i] = top + 1;
    }
    for (int64_t i = 0; i < N; i++) g->max_feat = kdx__max64(g->max_feat, g->nfeat[i]);
    return KDX_OK;
}

void kdx__attr_groups_free(kdx__groups *g)
{
    if (g->ids) kdx__free((void *)g->ids, g->bytes);
    memset(g, 0, sizeof *g);
}

/* ---- baseline and mixed rows ---- */

kdx_status kdx__attr_baseline(const char *fname, const kdx_tensor *x, const kdx_tensor *baseline, kdx_tensor **out)
{
    kdx_tensor *b = NULL;
    if (!baseline) return kdx_zeros(x->dtype, x->ndim, x->shape, out);
    KDX_TRY(kdx__new_raw(fname, x->dtype, x->ndim, x->shape, &b));
    if (kdx_copy_(b, baseline) != KDX_OK) {
        kdx_tensor_release(b);
        return kdx_fail(KDX_ESHAPE, "%s: baseline %s does not broadcast to x %s", fname, kdx__shp(baseline), kdx__shp(x));
    }
    *out = b;
    return KDX_OK;
}

void kdx__attr_mix_row(const kdx__groups *g, int64_t i, const unsigned char *present, const char *x, const char *base,
                       char *dst, kdx_dtype dt)
{
    const int64_t *ids = kdx__groups_of(g, i);
    if (dt == KDX_DTYPE_F64) {
        const double *a = (const double *)x, *b = (const double *)base;
        double *d = (double *)dst;
        for (int64_t e = 0; e < g->per; e++) d[e] = present[ids[e]] ? a[e] : b[e];
    } else {
        const float *a = (const float *)x, *b = (const float *)base;
        float *d = (float *)dst;
        for (int64_t e = 0; e < g->per; e++) d[e] = present[ids[e]] ? a[e] : b[e];
    }
}

/* ---- running perturbed rows ---- */

kdx_status kdx__attr_eval_rows(const char *fname, const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                               int64_t R, kdx__row_fill fill, void *ud, int64_t batch_size, double *out)
{
    int64_t N = x->shape[0], per = kdx_tensor_numel(x) / N;
    size_t row_bytes = (size_t)per * kdx_dtype_size(x->dtype);
    int64_t shape[KDX_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    kdx_status s = KDX_OK;
    for (int64_t lo = 0; lo < R && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, R - lo);
        shape[0] = n;
        kdx_tensor *chunk = NULL, *ids = NULL, *tg = NULL, *y = NULL, *y64 = NULL;
        s = kdx__new_raw(fname, x->dtype, x->ndim, shape, &chunk);
        if (s == KDX_OK) s = kdx_empty(KDX_DTYPE_I64, 1, &n, &ids);
        for (int64_t r = 0; r < n && s == KDX_OK; r++) {
            int64_t sample = 0;
            s = fill(ud, lo + r, kdx__base(chunk) + (size_t)r * row_bytes, &sample);
            if (s == KDX_OK && (sample < 0 || sample >= N))
                s = kdx_fail(KDX_ESTATE, "%s: row %lld claims sample %lld of %lld", fname, (long long)(lo + r),
                             (long long)sample, (long long)N);
            if (s == KDX_OK) ((int64_t *)kdx__base(ids))[r] = sample;
        }
        if (s == KDX_OK) s = kdx__attr_row_targets(fname, target, N, ids, &tg);
        if (s == KDX_OK) s = kdx__attr_outputs(fname, m, chunk, tg, 0, &y);
        if (s == KDX_OK) s = kdx_to(y, KDX_DTYPE_F64, &y64);
        if (s == KDX_OK) {
            kdx_tensor *c = NULL;
            s = kdx_contiguous(y64, &c);
            if (s == KDX_OK) memcpy(out + lo, kdx__base(c), (size_t)n * sizeof(double));
            kdx_tensor_release(c);
        }
        KDX_RELEASE(chunk, ids, tg, y, y64);
    }
    return s;
}
