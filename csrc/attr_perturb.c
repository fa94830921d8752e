/* attr_perturb.c — attributions by perturbing the input: occlusion, feature
 * ablation, Shapley value sampling and pairwise Shapley interaction indices,
 * plus kdx__attr_eval_full (full output rows of perturbed rows, for the
 * global methods whose score needs the whole output).
 *
 * Every method describes its perturbed rows by a fill function and hands them
 * to kdx__attr_eval_rows (attr_mask.c), which runs them through the model at
 * most batch_size rows per call. Values are accumulated in double. */
#include "kdx_internal.h"

#include <string.h>

/* Rows beyond this are refused: the per-row doubles alone would take 8 GiB. */
#define MAX_ROWS ((int64_t)1 << 30)

static kdx_status total_rows(const char *fname, int64_t a, int64_t b, int64_t add, int64_t *out)
{
    if (a < 0 || b < 0 || (b && a > (MAX_ROWS - add) / b))
        return kdx_fail(KDX_EINVAL, "%s: %lld x %lld perturbed rows is too many", fname, (long long)a, (long long)b);
    *out = a * b + add;
    return KDX_OK;
}

static void *alloc_doubles(int64_t n) { return kdx__malloc((size_t)(n > 0 ? n : 1) * sizeof(double)); }

/* Writes acc[N * per] (doubles) into a new tensor of x's shape and dtype. */
static kdx_status attr_from(const char *fname, const kdx_tensor *x, const double *acc, kdx_tensor **out)
{
    kdx_tensor *a;
    KDX_TRY(kdx__new_raw(fname, x->dtype, x->ndim, x->shape, &a));
    int64_t n = kdx_tensor_numel(x);
    if (x->dtype == KDX_DTYPE_F64) memcpy(kdx__base(a), acc, (size_t)n * sizeof(double));
    else
        for (int64_t e = 0; e < n; e++) ((float *)kdx__base(a))[e] = (float)acc[e];
    *out = a;
    return KDX_OK;
}

/* Prefix offsets of the samples' feature counts: off[i] = sum_{l<i} nfeat[l]. */
static int64_t *feature_offsets(const kdx__groups *g)
{
    int64_t *off = kdx__malloc((size_t)(g->N + 1) * sizeof(int64_t));
    if (!off) return NULL;
    for (int64_t i = 0; i < g->N; i++) off[i + 1] = off[i] + g->nfeat[i];
    return off;
}

/* The sample i with off[i] <= q < off[i + 1] (binary search; skips empty samples). */
static int64_t sample_of(const int64_t *off, int64_t N, int64_t q)
{
    int64_t lo = 0, hi = N - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (off[mid] <= q) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* ---- full output rows ---- */

kdx_status kdx__attr_eval_full(const char *fname, const kdx_model *m, const kdx_tensor *x, int64_t R, kdx__row_fill fill,
                               void *ud, int64_t batch_size, kdx_tensor **out)
{
    int64_t N = x->shape[0], per = kdx_tensor_numel(x) / N, shape[KDX_MAX_DIMS];
    size_t row_bytes = (size_t)per * kdx_dtype_size(x->dtype);
    memcpy(shape, x->shape, sizeof shape);
    kdx_tensor *all = NULL;
    kdx_status s = KDX_OK;
    int was = kdx_set_grad_enabled(0);
    for (int64_t lo = 0; lo < R && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, R - lo), sample = 0;
        kdx_tensor *chunk = NULL, *y = NULL, *y64 = NULL, *dst = NULL;
        shape[0] = n;
        s = kdx__new_raw(fname, x->dtype, x->ndim, shape, &chunk);
        for (int64_t r = 0; r < n && s == KDX_OK; r++) s = fill(ud, lo + r, kdx__base(chunk) + (size_t)r * row_bytes, &sample);
        if (s == KDX_OK) s = kdx__attr_call(fname, m, chunk, &y);
        if (s == KDX_OK && (y->ndim > 2 || (all && (y->ndim != all->ndim || (y->ndim == 2 && y->shape[1] != all->shape[1])))))
            s = kdx_fail(KDX_ESHAPE, "%s: the model must return [N] or [N, classes] of one width, got %s", fname, kdx__shp(y));
        if (s == KDX_OK && !all) {
            int64_t os[2] = {R, y->ndim == 2 ? y->shape[1] : 1};
            s = kdx__new(fname, KDX_DTYPE_F64, y->ndim, os, &all);
        }
        if (s == KDX_OK) s = kdx_to(y, KDX_DTYPE_F64, &y64);
        if (s == KDX_OK) s = kdx_narrow(all, 0, lo, n, &dst);
        if (s == KDX_OK) s = kdx_copy_(dst, y64);
        KDX_RELEASE(chunk, y, y64, dst);
    }
    kdx_set_grad_enabled(was);
    if (s != KDX_OK) {
        kdx_tensor_release(all);
        return s;
    }
    *out = all;
    return KDX_OK;
}

/* ---- occlusion ---- */

typedef struct occ {
    int D;                                    /* dims of a sample */
    int64_t sz[KDX_MAX_DIMS], st[KDX_MAX_DIMS]; /* sizes, contiguous strides */
    int64_t win[KDX_MAX_DIMS], stride[KDX_MAX_DIMS], npos[KDX_MAX_DIMS];
    int64_t W, N, per;
    size_t esz;
    const char *x, *base;
} occ;

/* Window w's box [lo, hi) per dim (the last window may stop at the edge). */
static void occ_box(const occ *o, int64_t w, int64_t *lo, int64_t *hi)
{
    for (int d = o->D - 1; d >= 0; d--) {
        lo[d] = (w % o->npos[d]) * o->stride[d];
        hi[d] = kdx__min64(lo[d] + o->win[d], o->sz[d]);
        w /= o->npos[d];
    }
}

/* Next element offset of the box walk (idx starts at lo); -1 when done. */
static int64_t box_next(const occ *o, const int64_t *lo, const int64_t *hi, int64_t *idx, int *started)
{
    if (*started) {
        int d = o->D - 1;
        for (; d >= 0; d--) {
            if (++idx[d] < hi[d]) break;
            idx[d] = lo[d];
        }
        if (d < 0) return -1;
    } else {
        *started = 1;
        for (int d = 0; d < o->D; d++) {
            if (lo[d] >= hi[d]) return -1;
            idx[d] = lo[d];
        }
    }
    int64_t e = 0;
    for (int d = 0; d < o->D; d++) e += idx[d] * o->st[d];
    return e;
}

/* Rows 0..N-1: the samples; then sample i with window w occluded. */
static kdx_status occ_fill(void *ud, int64_t r, char *dst, int64_t *sample)
{
    const occ *o = ud;
    int64_t i = r < o->N ? r : (r - o->N) / o->W;
    size_t rb = (size_t)o->per * o->esz;
    memcpy(dst, o->x + (size_t)i * rb, rb);
    *sample = i;
    if (r < o->N) return KDX_OK;
    int64_t lo[KDX_MAX_DIMS], hi[KDX_MAX_DIMS], idx[KDX_MAX_DIMS], e;
    int started = 0;
    occ_box(o, (r - o->N) % o->W, lo, hi);
    while ((e = box_next(o, lo, hi, idx, &started)) >= 0)
        memcpy(dst + (size_t)e * o->esz, o->base + (size_t)i * rb + (size_t)e * o->esz, o->esz);
    return KDX_OK;
}

static kdx_status occ_setup(const char *fname, const kdx_tensor *x, const int64_t *window, const int64_t *strides, occ *o)
{
    memset(o, 0, sizeof *o);
    o->D = x->ndim - 1, o->N = x->shape[0], o->per = kdx_tensor_numel(x) / o->N, o->W = 1;
    o->esz = kdx_dtype_size(x->dtype);
    if (o->D < 1) return kdx_fail(KDX_ESHAPE, "%s: x must be a batch [N, ...] of samples with at least one dim", fname);
    for (int d = o->D - 1; d >= 0; d--) {
        o->sz[d] = x->shape[d + 1];
        o->st[d] = d == o->D - 1 ? 1 : o->st[d + 1] * o->sz[d + 1];
        o->win[d] = window[d], o->stride[d] = strides ? strides[d] : 1;
        if (o->win[d] < 1 || o->win[d] > o->sz[d])
            return kdx_fail(KDX_EINVAL, "%s: window size %lld of sample dim %d must be in [1, %lld]", fname,
                            (long long)o->win[d], d + 1, (long long)o->sz[d]);
        if (o->stride[d] < 1 || o->stride[d] > KDX_OPT_MAX)
            return kdx_fail(KDX_EINVAL, "%s: stride %lld of sample dim %d must be >= 1", fname, (long long)o->stride[d], d + 1);
        /* Captum: ceil((D - w) / s) + 1 positions */
        o->npos[d] = (o->sz[d] - o->win[d] + o->stride[d] - 1) / o->stride[d] + 1;
        if (o->W > MAX_ROWS / o->npos[d]) return kdx_fail(KDX_EINVAL, "%s: too many window positions", fname);
        o->W *= o->npos[d];
    }
    return KDX_OK;
}

/* acc[i, e] = mean over the windows covering e of f(x_i) - f(x_i, window occluded). */
static void occ_accumulate(const occ *o, const double *y, double *acc)
{
    double *cover = acc + o->N * o->per;
    int64_t lo[KDX_MAX_DIMS], hi[KDX_MAX_DIMS], idx[KDX_MAX_DIMS], e;
    for (int64_t w = 0; w < o->W; w++) {
        int started = 0;
        occ_box(o, w, lo, hi);
        while ((e = box_next(o, lo, hi, idx, &started)) >= 0) {
            cover[e] += 1;
            for (int64_t i = 0; i < o->N; i++) acc[i * o->per + e] += y[i] - y[o->N + i * o->W + w];
        }
    }
    for (int64_t i = 0; i < o->N; i++)
        for (int64_t e2 = 0; e2 < o->per; e2++)
            acc[i * o->per + e2] = cover[e2] > 0 ? acc[i * o->per + e2] / cover[e2] : 0; /* no window: 0, not 0/0 */
}

kdx_status kdx_attr_occlusion(const kdx_model *m, const kdx_tensor *x, const int64_t *window, const int64_t *strides,
                              const kdx_tensor *baseline, const kdx_tensor *target, int64_t batch_size, kdx_tensor **out)
{
    const char *fname = "occlusion";
    KDX_TRY(kdx__attr_check(fname, m, x, batch_size));
    if (!window) return kdx_fail(KDX_EINVAL, "%s: window is NULL", fname);
    occ o;
    int64_t R = 0;
    KDX_TRY(occ_setup(fname, x, window, strides, &o));
    KDX_TRY(total_rows(fname, o.N, o.W, o.N, &R));
    kdx_tensor *base = NULL, *xc = NULL;
    double *y = alloc_doubles(R), *acc = alloc_doubles(o.N * o.per + o.per);
    kdx_status s = y && acc ? KDX_OK : kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    if (s == KDX_OK) s = kdx__attr_baseline(fname, x, baseline, &base);
    if (s == KDX_OK) s = kdx_contiguous(x, &xc);
    if (s == KDX_OK) {
        o.x = kdx__base(xc), o.base = kdx__base(base);
        s = kdx__attr_eval_rows(fname, m, x, target, R, occ_fill, &o, batch_size, y);
    }
    if (s == KDX_OK) {
        occ_accumulate(&o, y, acc);
        s = attr_from(fname, x, acc, out);
    }
    if (y) kdx__free(y, (size_t)(R > 0 ? R : 1) * sizeof(double));
    if (acc) kdx__free(acc, (size_t)(o.N * o.per + o.per) * sizeof(double));
    KDX_RELEASE(base, xc);
    return s;
}

/* ---- feature ablation and the Shapley estimators: rows of present features ---- */

typedef struct ablate {
    const kdx__groups *g;
    const int64_t *off;        /* feature offsets per sample */
    const int64_t *perm;       /* Shapley: P permutations of max_feat ids */
    int64_t N, S;              /* samples; sum of nfeat */
    size_t rb;                 /* bytes per row */
    kdx_dtype dt;
    const char *x, *base;
    unsigned char *present;    /* scratch [max_feat] */
} ablate;

/* Feature ablation rows: 0..N-1 the samples; then (i, feature f) with f := baseline. */
static kdx_status ablate_fill(void *ud, int64_t r, char *dst, int64_t *sample)
{
    ablate *a = ud;
    int64_t i = r < a->N ? r : sample_of(a->off, a->N, r - a->N);
    memset(a->present, 1, (size_t)a->g->max_feat);
    if (r >= a->N) a->present[r - a->N - a->off[i]] = 0;
    kdx__attr_mix_row(a->g, i, a->present, a->x + (size_t)i * a->rb, a->base + (size_t)i * a->rb, dst, a->dt);
    *sample = i;
    return KDX_OK;
}

/* Shapley rows: 0..N-1 the baselines; then (permutation p, sample i, k) with
   the first k + 1 of p's features of sample i present. */
static kdx_status shapley_fill(void *ud, int64_t r, char *dst, int64_t *sample)
{
    ablate *a = ud;
    int64_t M = a->g->max_feat, i = r < a->N ? r : 0;
    memset(a->present, 0, (size_t)M);
    if (r >= a->N) {
        int64_t q = (r - a->N) % a->S, p = (r - a->N) / a->S;
        i = sample_of(a->off, a->N, q);
        int64_t k = q - a->off[i], nf = a->g->nfeat[i];
        const int64_t *perm = a->perm + p * M;
        for (int64_t t = 0, got = 0; t < M && got <= k; t++)
            if (perm[t] < nf) a->present[perm[t]] = 1, got++;
    }
    kdx__attr_mix_row(a->g, i, a->present, a->x + (size_t)i * a->rb, a->base + (size_t)i * a->rb, dst, a->dt);
    *sample = i;
    return KDX_OK;
}

/* Per-feature values phi[N * max_feat] spread to the elements: acc[i, e] = phi[i, id(e)]. */
static kdx_status spread(const char *fname, const kdx_tensor *x, const kdx__groups *g, const double *phi, kdx_tensor **out)
{
    double *acc = alloc_doubles(g->N * g->per);
    if (!acc) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    for (int64_t i = 0; i < g->N; i++) {
        const int64_t *ids = kdx__groups_of(g, i);
        for (int64_t e = 0; e < g->per; e++) acc[i * g->per + e] = phi[i * g->max_feat + ids[e]];
    }
    kdx_status s = attr_from(fname, x, acc, out);
    kdx__free(acc, (size_t)(g->N * g->per > 0 ? g->N * g->per : 1) * sizeof(double));
    return s;
}

/* What the group-based methods set up: groups, offsets, baseline, contiguous x. */
typedef struct grouped {
    kdx__groups g;
    int64_t *off;
    kdx_tensor *base, *xc;
    unsigned char *present;
    double *phi;
} grouped;

static void grouped_free(grouped *G)
{
    if (G->off) kdx__free(G->off, (size_t)(G->g.N + 1) * sizeof(int64_t));
    if (G->present) kdx__free(G->present, (size_t)G->g.max_feat + 1);
    if (G->phi) kdx__free(G->phi, (size_t)(G->g.N * G->g.max_feat + 1) * sizeof(double));
    KDX_RELEASE(G->base, G->xc);
    kdx__attr_groups_free(&G->g);
}

static kdx_status grouped_init(const char *fname, const kdx_tensor *x, const kdx_tensor *mask, const kdx_tensor *baseline,
                               grouped *G, ablate *a)
{
    memset(G, 0, sizeof *G);
    KDX_TRY(kdx__attr_groups(fname, x, mask, &G->g));
    G->off = feature_offsets(&G->g);
    G->present = kdx__malloc((size_t)G->g.max_feat + 1);
    G->phi = alloc_doubles(G->g.N * G->g.max_feat + 1);
    kdx_status s = G->off && G->present && G->phi ? KDX_OK : kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    if (s == KDX_OK) s = kdx__attr_baseline(fname, x, baseline, &G->base);
    if (s == KDX_OK) s = kdx_contiguous(x, &G->xc);
    if (s != KDX_OK) {
        grouped_free(G);
        return s;
    }
    memset(a, 0, sizeof *a);
    a->g = &G->g, a->off = G->off, a->N = G->g.N, a->S = G->off[G->g.N];
    a->rb = (size_t)G->g.per * kdx_dtype_size(x->dtype), a->dt = x->dtype;
    a->x = kdx__base(G->xc), a->base = kdx__base(G->base), a->present = G->present;
    return KDX_OK;
}

kdx_status kdx_attr_feature_ablation(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *feature_mask,
                                     const kdx_tensor *baseline, const kdx_tensor *target, int64_t batch_size,
                                     kdx_tensor **out)
{
    const char *fname = "feature_ablation";
    KDX_TRY(kdx__attr_check(fname, m, x, batch_size));
    grouped G;
    ablate a;
    KDX_TRY(grouped_init(fname, x, feature_mask, baseline, &G, &a));
    int64_t R = 0;
    kdx_status s = total_rows(fname, 1, a.S, a.N, &R);
    double *y = s == KDX_OK ? alloc_doubles(R) : NULL;
    if (s == KDX_OK && !y) s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    if (s == KDX_OK) s = kdx__attr_eval_rows(fname, m, x, target, R, ablate_fill, &a, batch_size, y);
    if (s == KDX_OK) {
        for (int64_t i = 0; i < a.N; i++)
            for (int64_t f = 0; f < G.g.nfeat[i]; f++) G.phi[i * G.g.max_feat + f] = y[i] - y[a.N + G.off[i] + f];
        s = spread(fname, x, &G.g, G.phi, out);
    }
    if (y) kdx__free(y, (size_t)R * sizeof(double));
    grouped_free(&G);
    return s;
}

/* Shapley values per feature phi[N * max_feat] from P random permutations
   (Castro et al. 2009, as Captum's ShapleyValueSampling): each permutation
   adds the features one at a time, from the baseline, and credits each with
   the change of the output. Telescoping makes every permutation efficient. */
static kdx_status shapley_phi(const char *fname, const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                              int P, kdx_generator *gen, int64_t batch_size, grouped *G, ablate *a)
{
    int64_t M = G->g.max_feat, R = 0, PM = 0;
    KDX_TRY(total_rows(fname, P, a->S, a->N, &R));
    KDX_TRY(total_rows(fname, P, M, 0, &PM));
    int64_t *perm = kdx__malloc((size_t)(PM + 1) * sizeof(int64_t));
    double *y = alloc_doubles(R);
    kdx_status s = perm && y ? KDX_OK : kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    for (int64_t p = 0; p < P && s == KDX_OK; p++) { /* Fisher-Yates, drawn before any model call */
        int64_t *q = perm + p * M;
        for (int64_t t = 0; t < M; t++) q[t] = t;
        for (int64_t t = M - 1; t > 0; t--) {
            int64_t j = (int64_t)kdx_generator_below(gen, (uint64_t)t + 1), tmp = q[t];
            q[t] = q[j], q[j] = tmp;
        }
    }
    a->perm = perm;
    if (s == KDX_OK) s = kdx__attr_eval_rows(fname, m, x, target, R, shapley_fill, a, batch_size, y);
    for (int64_t p = 0; p < P && s == KDX_OK; p++)
        for (int64_t i = 0; i < a->N; i++) {
            const int64_t *q = perm + p * M;
            double prev = y[i];
            for (int64_t t = 0, k = 0; t < M; t++) {
                if (q[t] >= G->g.nfeat[i]) continue;
                double cur = y[a->N + p * a->S + G->off[i] + k++];
                G->phi[i * M + q[t]] += (cur - prev) / P;
                prev = cur;
            }
        }
    if (perm) kdx__free(perm, (size_t)(PM + 1) * sizeof(int64_t));
    if (y) kdx__free(y, (size_t)(R > 0 ? R : 1) * sizeof(double));
    return s;
}

static kdx_status check_samples(const char *fname, const char *what, int n)
{
    if (n < 1 || n > 1000000) return kdx_fail(KDX_EINVAL, "%s: %s must be in [1, 1000000], got %d", fname, what, n);
    return KDX_OK;
}

kdx_status kdx_attr_shapley_sampling(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *feature_mask,
                                     const kdx_tensor *baseline, const kdx_tensor *target, int n_samples,
                                     kdx_generator *gen, int64_t batch_size, kdx_tensor **out)
{
    const char *fname = "shapley_sampling";
    KDX_TRY(kdx__attr_check(fname, m, x, batch_size));
    KDX_TRY(check_samples(fname, "n_samples", n_samples));
    grouped G;
    ablate a;
    KDX_TRY(grouped_init(fname, x, feature_mask, baseline, &G, &a));
    kdx_status s = shapley_phi(fname, m, x, target, n_samples, gen ? gen : kdx_default_generator(), batch_size, &G, &a);
    if (s == KDX_OK) s = spread(fname, x, &G.g, G.phi, out);
    grouped_free(&G);
    return s;
}

/* ---- pairwise Shapley interaction index ---- */

/* Rows of one sample: coalition c = (pair, draw) is S (M bytes in plan);
   row 4c + k has S, plus feature a if k & 1, plus b if k & 2. */
typedef struct inter {
    ablate *a;
    int64_t i, M;
    const unsigned char *plan;
    const int64_t *pa, *pb; /* the pair of each coalition */
} inter;

static kdx_status inter_fill(void *ud, int64_t r, char *dst, int64_t *sample)
{
    inter *t = ud;
    int64_t c = r / 4, k = r % 4;
    memcpy(t->a->present, t->plan + c * t->M, (size_t)t->M);
    if (k & 1) t->a->present[t->pa[c]] = 1;
    if (k & 2) t->a->present[t->pb[c]] = 1;
    const ablate *a = t->a;
    kdx__attr_mix_row(a->g, t->i, a->present, a->x + (size_t)t->i * a->rb, a->base + (size_t)t->i * a->rb, dst, a->dt);
    *sample = t->i;
    return KDX_OK;
}

/* Draws S for the pair (a, b) of M features: its size uniform on 0..M-2 (the
   merged pair's position in a random order of M - 1 players), then a uniform
   subset of that size of the other features. */
static void draw_coalition(kdx_generator *gen, int64_t M, int64_t fa, int64_t fb, int64_t *others, unsigned char *S)
{
    int64_t n = 0;
    memset(S, 0, (size_t)M);
    for (int64_t f = 0; f < M; f++)
        if (f != fa && f != fb) others[n++] = f;
    int64_t size = (int64_t)kdx_generator_below(gen, (uint64_t)M - 1);
    for (int64_t t = 0; t < size; t++) {
        int64_t j = t + (int64_t)kdx_generator_below(gen, (uint64_t)(n - t)), tmp = others[t];
        others[t] = others[j], others[j] = tmp;
        S[others[t]] = 1;
    }
}

/* Interaction indices of sample i into res[M * M] (the off-diagonal). */
static kdx_status inter_sample(const char *fname, const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                               int P, kdx_generator *gen, int64_t batch_size, ablate *a, int64_t i, double *res)
{
    int64_t Mi = a->g->nfeat[i], M = a->g->max_feat, C = 0, R = 0;
    if (Mi < 2) return KDX_OK;
    KDX_TRY(total_rows(fname, Mi * (Mi - 1) / 2, P, 0, &C));
    KDX_TRY(total_rows(fname, C, 4, 0, &R));
    size_t bytes = (size_t)C * (size_t)M + (size_t)C * 2 * sizeof(int64_t) + (size_t)M * sizeof(int64_t) +
                   (size_t)R * sizeof(double);
    char *mem = kdx__malloc(bytes);
    if (!mem) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    double *y = (double *)mem;
    int64_t *pa = (int64_t *)(y + R), *pb = pa + C, *others = pb + C;
    unsigned char *plan = (unsigned char *)(others + M);
    int64_t c = 0;
    for (int64_t fa = 0; fa < Mi; fa++)
        for (int64_t fb = fa + 1; fb < Mi; fb++)
            for (int p = 0; p < P; p++, c++) {
                pa[c] = fa, pb[c] = fb;
                draw_coalition(gen, Mi, fa, fb, others, plan + c * M);
            }
    inter t = {a, i, M, plan, pa, pb};
    kdx_status s = kdx__attr_eval_rows(fname, m, x, target, R, inter_fill, &t, batch_size, y);
    for (c = 0; c < C && s == KDX_OK; c++) {
        double d = y[4 * c + 3] - y[4 * c + 1] - y[4 * c + 2] + y[4 * c];
        res[pa[c] * M + pb[c]] += d / P;
        res[pb[c] * M + pa[c]] += d / P;
    }
    kdx__free(mem, bytes);
    return s;
}

kdx_status kdx_attr_shapley_interactions(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *feature_mask,
                                         const kdx_tensor *baseline, const kdx_tensor *target, int samples,
                                         kdx_generator *gen, int64_t batch_size, kdx_tensor **out)
{
    const char *fname = "shapley_interactions";
    KDX_TRY(kdx__attr_check(fname, m, x, batch_size));
    KDX_TRY(check_samples(fname, "samples", samples));
    if (!gen) gen = kdx_default_generator();
    grouped G;
    ablate a;
    KDX_TRY(grouped_init(fname, x, feature_mask, baseline, &G, &a));
    int64_t M = G.g.max_feat, N = G.g.N, shape[3] = {N, M, M};
    kdx_tensor *res = NULL;
    kdx_status s = kdx__check_shape(fname, 3, shape);
    if (s == KDX_OK) s = shapley_phi(fname, m, x, target, samples, gen, batch_size, &G, &a);
    if (s == KDX_OK) s = kdx__new(fname, KDX_DTYPE_F64, 3, shape, &res);
    for (int64_t i = 0; i < N && s == KDX_OK; i++) {
        double *r = (double *)kdx__base(res) + i * M * M;
        s = inter_sample(fname, m, x, target, samples, gen, batch_size, &a, i, r);
        for (int64_t f = 0; f < G.g.nfeat[i]; f++) r[f * M + f] = G.phi[i * M + f]; /* singletons: the Shapley value */
    }
    if (s == KDX_OK && x->dtype != KDX_DTYPE_F64) {
        kdx_tensor *t = NULL;
        s = kdx_to(res, x->dtype, &t);
        kdx_tensor_release(res);
        res = t;
    }
    grouped_free(&G);
    if (s != KDX_OK) {
        kdx_tensor_release(res);
        return s;
    }
    *out = res;
    return KDX_OK;
}
