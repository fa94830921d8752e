/* surrogate_tree.c — a CART classification tree fitted to hard or soft
   labels (a teacher's probabilities), built as scikit-learn's
   DecisionTreeClassifier builds it: depth first, nodes numbered in pre-order,
   each node's samples sorted by each feature in turn (O(F n log n) a node, so
   O(F N log N) a level), split thresholds at midpoints between neighbouring
   distinct values, the split with the largest weighted impurity decrease.
   With soft labels a node's class distribution is the weighted mean of its
   rows' probability vectors; impurity is taken on that distribution.
   Also the readers shared with surrogate_linear.c (surrogate.h). */
#include "surrogate.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Values closer than this count as equal (scikit-learn's FEATURE_THRESHOLD). */
#define FEATURE_EPS 1e-7

/* ---- reading the inputs ---------------------------------------------------------------- */

static double elem(const char *p, kdx_dtype dt)
{
    if (dt == KDX_DTYPE_F32) return (double)*(const float *)p;
    if (dt == KDX_DTYPE_F64) return *(const double *)p;
    return (double)*(const int64_t *)p;
}

static size_t dtype_size(kdx_dtype dt) { return dt == KDX_DTYPE_F32 ? 4 : 8; }

kdx_status kdx__read_matrix(const char *fname, const char *what, const kdx_tensor *x, int64_t *rows, int64_t *cols,
                            double **out)
{
    *out = NULL;
    if (!x) return kdx_fail(KDX_EINVAL, "%s: %s is missing", fname, what);
    kdx_dtype dt = kdx_tensor_dtype(x);
    if (dt == KDX_DTYPE_I64) return kdx_fail(KDX_EDTYPE, "%s: %s must be float32 or float64, got int64", fname, what);
    if (kdx_tensor_ndim(x) != 2) {
        char buf[64];
        return kdx_fail(KDX_ESHAPE, "%s: %s must be 2-D [N, F], got shape %s", fname, what,
                        kdx_shape_str(kdx_tensor_ndim(x), kdx_tensor_shape(x), buf, sizeof buf));
    }
    int64_t r = kdx_tensor_size(x, 0), c = kdx_tensor_size(x, 1);
    if (r < 1 || c < 1) return kdx_fail(KDX_ESHAPE, "%s: %s must have at least one row and column", fname, what);
    if ((uint64_t)r > SIZE_MAX / sizeof(double) / (uint64_t)c)
        return kdx_fail(KDX_ENOMEM, "%s: %s is too large", fname, what);
    double *a = kdx__malloc_raw((size_t)(r * c) * sizeof(double));
    if (!a) return kdx_fail(KDX_ENOMEM, "%s: out of memory reading %s", fname, what);
    const char *base = kdx_tensor_data(x);
    const int64_t *st = kdx_tensor_strides(x);
    size_t es = dtype_size(dt);
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++) {
            double v = elem(base + (i * st[0] + j * st[1]) * (int64_t)es, dt);
            if (!isfinite(v)) {
                kdx__free(a, (size_t)(r * c) * sizeof(double));
                return kdx_fail(KDX_EINVAL, "%s: %s holds a non-finite value at row %lld, column %lld", fname, what,
                                (long long)i + 1, (long long)j + 1);
            }
            a[i * c + j] = v;
        }
    *rows = r;
    *cols = c;
    *out = a;
    return KDX_OK;
}

void kdx__fit_data_free(kdx__fit_data *d)
{
    if (d->x) kdx__free(d->x, (size_t)(d->N * d->F) * sizeof(double));
    if (d->t) kdx__free(d->t, (size_t)(d->N * d->C) * sizeof(double));
    if (d->w) kdx__free(d->w, (size_t)d->N * sizeof(double));
    d->x = d->t = d->w = NULL;
}

/* Hard labels int64 [N] -> one-hot rows. */
static kdx_status read_hard(const char *fname, const kdx_tensor *y, int64_t n_classes, kdx__fit_data *d)
{
    const int64_t *p = kdx_tensor_data(y);
    int64_t st = kdx_tensor_strides(y)[0], mx = -1;
    for (int64_t i = 0; i < d->N; i++) {
        int64_t k = p[i * st];
        if (k < 0) return kdx_fail(KDX_EINVAL, "%s: class labels must be >= 1, got %lld at %lld", fname,
                                   (long long)k + 1, (long long)i + 1);
        if (k > mx) mx = k;
    }
    if (mx >= INT32_MAX) return kdx_fail(KDX_EINVAL, "%s: class label %lld is too large", fname, (long long)mx + 1);
    d->C = n_classes > mx + 1 ? n_classes : mx + 1;
    if ((uint64_t)d->N > SIZE_MAX / sizeof(double) / (uint64_t)d->C)
        return kdx_fail(KDX_ENOMEM, "%s: targets are too large", fname);
    d->t = kdx__malloc((size_t)(d->N * d->C) * sizeof(double));
    if (!d->t) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    for (int64_t i = 0; i < d->N; i++) d->t[i * d->C + p[i * st]] = 1;
    return KDX_OK;
}

/* Soft labels float [N, C] -> rows normalised to sum 1. */
static kdx_status read_soft(const char *fname, const kdx_tensor *y, kdx__fit_data *d)
{
    int64_t r, c;
    KDX_TRY(kdx__read_matrix(fname, "soft targets", y, &r, &c, &d->t));
    d->C = c;
    if (r != d->N) {
        kdx__free(d->t, (size_t)(r * c) * sizeof(double));
        d->t = NULL;
        return kdx_fail(KDX_ESHAPE, "%s: targets have %lld rows but x has %lld", fname, (long long)r,
                        (long long)d->N);
    }
    for (int64_t i = 0; i < d->N; i++) {
        double s = 0, *row = d->t + i * c;
        for (int64_t k = 0; k < c; k++) {
            if (row[k] < 0) return kdx_fail(KDX_EINVAL, "%s: soft targets must be >= 0, got %g at row %lld", fname,
                                            row[k], (long long)i + 1);
            s += row[k];
        }
        if (!(s > 0)) return kdx_fail(KDX_EINVAL, "%s: soft target row %lld sums to 0", fname, (long long)i + 1);
        for (int64_t k = 0; k < c; k++) row[k] /= s;
    }
    return KDX_OK;
}

static kdx_status read_weight(const char *fname, const kdx_tensor *weight, kdx__fit_data *d)
{
    d->w = kdx__malloc_raw((size_t)d->N * sizeof(double));
    if (!d->w) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    d->wsum = 0;
    if (!weight) {
        for (int64_t i = 0; i < d->N; i++) d->w[i] = 1;
        d->wsum = (double)d->N;
        return KDX_OK;
    }
    kdx_dtype dt = kdx_tensor_dtype(weight);
    if (dt == KDX_DTYPE_I64) return kdx_fail(KDX_EDTYPE, "%s: sample_weight must be float, got int64", fname);
    if (kdx_tensor_ndim(weight) != 1 || kdx_tensor_size(weight, 0) != d->N)
        return kdx_fail(KDX_ESHAPE, "%s: sample_weight must be [N] with N = %lld", fname, (long long)d->N);
    const char *p = kdx_tensor_data(weight);
    int64_t st = kdx_tensor_strides(weight)[0] * (int64_t)dtype_size(dt);
    for (int64_t i = 0; i < d->N; i++) {
        double v = elem(p + i * st, dt);
        if (!(v >= 0) || !isfinite(v))
            return kdx_fail(KDX_EINVAL, "%s: sample_weight must be finite and >= 0, got %g at %lld", fname, v,
                            (long long)i + 1);
        d->w[i] = v;
        d->wsum += v;
    }
    if (!(d->wsum > 0)) return kdx_fail(KDX_EINVAL, "%s: sample_weight sums to 0", fname);
    return KDX_OK;
}

kdx_status kdx__fit_data_read(const char *fname, const kdx_tensor *x, const kdx_tensor *y, const kdx_tensor *weight,
                              int64_t n_classes, kdx__fit_data *d)
{
    memset(d, 0, sizeof *d);
    KDX_TRY(kdx__read_matrix(fname, "x", x, &d->N, &d->F, &d->x));
    kdx_status s;
    if (!y) {
        s = kdx_fail(KDX_EINVAL, "%s: targets are missing", fname);
    } else if (kdx_tensor_dtype(y) == KDX_DTYPE_I64) {
        if (kdx_tensor_ndim(y) != 1 || kdx_tensor_size(y, 0) != d->N)
            s = kdx_fail(KDX_ESHAPE, "%s: hard labels must be int64 [N] with N = %lld (the rows of x)", fname,
                         (long long)d->N);
        else
            s = read_hard(fname, y, n_classes, d);
    } else if (kdx_tensor_ndim(y) != 2) {
        s = kdx_fail(KDX_ESHAPE, "%s: soft targets must be float [N, C] probabilities (or int64 [N] labels)", fname);
    } else {
        s = read_soft(fname, y, d);
    }
    if (s == KDX_OK) s = read_weight(fname, weight, d);
    if (s != KDX_OK) kdx__fit_data_free(d);
    return s;
}

/* ---- the tree builder ------------------------------------------------------------------ */

typedef struct pair {
    double v;
    int64_t i;
} pair;

static int pair_cmp(const void *a, const void *b)
{
    double x = ((const pair *)a)->v, y = ((const pair *)b)->v;
    if (x < y) return -1;
    if (x > y) return 1;
    /* equal values: by sample index, so the order (and the sums) never depend on qsort */
    int64_t i = ((const pair *)a)->i, j = ((const pair *)b)->i;
    return (i > j) - (i < j);
}

typedef struct builder {
    const kdx__fit_data *d;
    const kdx_tree_options *o;
    kdx_generator *gen;
    int64_t *idx, *tmp, *order; /* samples of the nodes; scratch; feature order */
    pair *buf;
    double *tot, *lsum, *tmpc; /* [C] each */
    /* nodes */
    int64_t cap, M;
    int64_t *feature, *left, *right, *nsamp;
    double *thr, *value, *imp, *wn;
} builder;

static double impurity(const double *c, int64_t C, double m, kdx_tree_criterion crit)
{
    if (!(m > 0)) return 0;
    double s = 0;
    if (crit == KDX_TREE_GINI) {
        for (int64_t k = 0; k < C; k++) s += (c[k] / m) * (c[k] / m);
        return 1 - s;
    }
    for (int64_t k = 0; k < C; k++)
        if (c[k] > 0) s -= (c[k] / m) * log2(c[k] / m);
    return s;
}

typedef struct split {
    int64_t feature, pos;
    double threshold, proxy;
} split;

/* The best split of samples idx[start, end) (total class mass tot, mass m):
   the one that minimises ml * imp(left) + mr * imp(right), i.e. maximises the
   weighted impurity decrease. Ties keep the first found: the lowest feature
   (in search order) and the lowest threshold. feature = -1 if none is valid. */
static split best_split(builder *b, int64_t start, int64_t end, double m)
{
    const kdx__fit_data *d = b->d;
    int64_t C = d->C, F = d->F;
    split best = {-1, -1, 0, -HUGE_VAL};
    int64_t nf = F, limit = F;
    if (b->o->max_features > 0 && b->o->max_features < F) {
        limit = b->o->max_features;
        for (int64_t f = F - 1; f > 0; f--) { /* Fisher-Yates over the whole order */
            int64_t j = (int64_t)kdx_generator_below(b->gen, (uint64_t)f + 1), t = b->order[f];
            b->order[f] = b->order[j];
            b->order[j] = t;
        }
    }
    int64_t visited = 0;
    for (int64_t fi = 0; fi < nf && visited < limit; fi++) {
        int64_t f = b->order[fi];
        pair *buf = b->buf + start;
        int64_t n = end - start;
        for (int64_t p = 0; p < n; p++) {
            buf[p].i = b->idx[start + p];
            buf[p].v = d->x[buf[p].i * F + f];
        }
        qsort(buf, (size_t)n, sizeof(pair), pair_cmp);
        if (buf[n - 1].v <= buf[0].v + FEATURE_EPS) continue; /* constant here: does not count as visited */
        visited++;
        memset(b->lsum, 0, (size_t)C * sizeof(double));
        double ml = 0;
        for (int64_t p = 1; p < n; p++) {
            const double *row = d->t + buf[p - 1].i * C;
            double w = d->w[buf[p - 1].i];
            for (int64_t k = 0; k < C; k++) b->lsum[k] += w * row[k];
            ml += w;
            if (buf[p].v <= buf[p - 1].v + FEATURE_EPS) continue;
            if (p < b->o->min_samples_leaf || n - p < b->o->min_samples_leaf) continue;
            double mr = m - ml;
            if (!(ml > 0) || !(mr > 0)) continue;
            double il = impurity(b->lsum, C, ml, b->o->criterion);
            for (int64_t k = 0; k < C; k++) b->tmpc[k] = b->tot[k] - b->lsum[k];
            double ir = impurity(b->tmpc, C, mr, b->o->criterion);
            double proxy = -(ml * il + mr * ir);
            if (proxy > best.proxy) {
                best.proxy = proxy;
                best.feature = f;
                best.pos = start + p;
                double th = buf[p - 1].v / 2.0 + buf[p].v / 2.0;
                if (th == buf[p].v || isinf(th)) th = buf[p - 1].v;
                best.threshold = th;
            }
        }
    }
    return best;
}

/* Moves the samples of [start, end) with x[f] <= threshold to the front,
   keeping their order; returns how many went left. */
static int64_t partition(builder *b, int64_t start, int64_t end, int64_t f, double threshold)
{
    const kdx__fit_data *d = b->d;
    int64_t nl = 0, nr = 0, n = end - start;
    for (int64_t p = start; p < end; p++) {
        int64_t i = b->idx[p];
        if (d->x[i * d->F + f] <= threshold)
            b->idx[start + nl++] = i;
        else
            b->tmp[nr++] = i;
    }
    memcpy(b->idx + start + nl, b->tmp, (size_t)(n - nl) * sizeof(int64_t));
    return nl;
}

typedef struct frame {
    int64_t start, end, depth, parent;
    int is_left;
} frame;

/* Grows the tree depth first from a stack of frames, as scikit-learn's
   DepthFirstTreeBuilder: the left child is taken before the right, so node
   ids come in pre-order. */
static void build(builder *b, frame *stack)
{
    const kdx__fit_data *d = b->d;
    const kdx_tree_options *o = b->o;
    int64_t C = d->C, top = 0;
    stack[top++] = (frame){0, d->N, 0, -1, 0};
    while (top > 0) {
        frame fr = stack[--top];
        int64_t id = b->M++, n = fr.end - fr.start;
        if (fr.parent >= 0) {
            if (fr.is_left)
                b->left[fr.parent] = id;
            else
                b->right[fr.parent] = id;
        }
        memset(b->tot, 0, (size_t)C * sizeof(double));
        double m = 0;
        for (int64_t p = fr.start; p < fr.end; p++) {
            int64_t i = b->idx[p];
            for (int64_t k = 0; k < C; k++) b->tot[k] += d->w[i] * d->t[i * C + k];
            m += d->w[i];
        }
        for (int64_t k = 0; k < C; k++) b->value[id * C + k] = m > 0 ? b->tot[k] / m : 0;
        b->imp[id] = impurity(b->tot, C, m, o->criterion);
        b->wn[id] = m;
        b->nsamp[id] = n;
        b->feature[id] = b->left[id] = b->right[id] = -1;
        b->thr[id] = 0;
        int leaf = (o->max_depth >= 0 && fr.depth >= o->max_depth) || n < o->min_samples_split ||
                   n < 2 * o->min_samples_leaf || b->imp[id] <= DBL_EPSILON;
        if (leaf) continue;
        split s = best_split(b, fr.start, fr.end, m);
        if (s.feature < 0) continue;
        int64_t nl = partition(b, fr.start, fr.end, s.feature, s.threshold);
        b->feature[id] = s.feature;
        b->thr[id] = s.threshold;
        stack[top++] = (frame){fr.start + nl, fr.end, fr.depth + 1, id, 0};
        stack[top++] = (frame){fr.start, fr.start + nl, fr.depth + 1, id, 1};
    }
}

void kdx_tree_clear(kdx_tree *t)
{
    KDX_RELEASE(t->feature, t->threshold, t->left, t->right, t->value, t->impurity, t->n_samples, t->weighted_n);
    memset(t, 0, sizeof *t);
}

/* Copies the first M entries of a node array into a new tensor [M] or [M, C]. */
static kdx_status node_tensor(const void *src, kdx_dtype dt, int64_t M, int64_t C, kdx_tensor **out)
{
    int64_t shape[2] = {M, C};
    KDX_TRY(kdx__new_raw("surrogate_tree_fit", dt, C > 0 ? 2 : 1, shape, out));
    memcpy(kdx_tensor_data(*out), src, (size_t)(M * (C > 0 ? C : 1)) * 8);
    return KDX_OK;
}

static void builder_free(builder *b, const kdx__fit_data *d, frame *stack)
{
    size_t cap = (size_t)b->cap, N = (size_t)d->N, F = (size_t)d->F, C = (size_t)d->C;
    kdx__free(b->idx, N * 8);
    kdx__free(b->tmp, N * 8);
    kdx__free(b->order, F * 8);
    kdx__free(b->buf, N * sizeof(pair));
    kdx__free(b->tot, C * 8);
    kdx__free(b->lsum, C * 8);
    kdx__free(b->tmpc, C * 8);
    kdx__free(b->feature, cap * 8);
    kdx__free(b->left, cap * 8);
    kdx__free(b->right, cap * 8);
    kdx__free(b->nsamp, cap * 8);
    kdx__free(b->thr, cap * 8);
    kdx__free(b->imp, cap * 8);
    kdx__free(b->wn, cap * 8);
    kdx__free(b->value, cap * C * 8);
    kdx__free(stack, (cap + 1) * sizeof(frame));
    kdx_generator_free(b->gen);
}

/* The builder's scratch and node arrays (zeroed); 0 if one failed (the rest is freed by builder_free). */
static int builder_alloc(builder *b, frame **stack)
{
    size_t cap = (size_t)b->cap, N = (size_t)b->d->N, F = (size_t)b->d->F, C = (size_t)b->d->C;
    b->idx = kdx__malloc(N * 8);
    b->tmp = kdx__malloc(N * 8);
    b->order = kdx__malloc(F * 8);
    b->buf = kdx__malloc(N * sizeof(pair));
    b->tot = kdx__malloc(C * 8);
    b->lsum = kdx__malloc(C * 8);
    b->tmpc = kdx__malloc(C * 8);
    b->feature = kdx__malloc(cap * 8);
    b->left = kdx__malloc(cap * 8);
    b->right = kdx__malloc(cap * 8);
    b->nsamp = kdx__malloc(cap * 8);
    b->thr = kdx__malloc(cap * 8);
    b->imp = kdx__malloc(cap * 8);
    b->wn = kdx__malloc(cap * 8);
    b->value = kdx__malloc(cap * C * 8);
    *stack = kdx__malloc((cap + 1) * sizeof(frame));
    return b->idx && b->tmp && b->order && b->buf && b->tot && b->lsum && b->tmpc && b->feature && b->left &&
           b->right && b->nsamp && b->thr && b->imp && b->wn && b->value && *stack;
}

kdx_status kdx_surrogate_tree_fit(const kdx_tensor *x, const kdx_tensor *y, const kdx_tensor *weight,
                                  int64_t n_classes, const kdx_tree_options *o, kdx_tree *out)
{
    const char *fname = "surrogate_tree_fit";
    memset(out, 0, sizeof *out);
    if (!o) return kdx_fail(KDX_EINVAL, "%s: options are missing", fname);
    if (o->min_samples_leaf < 1) return kdx_fail(KDX_EINVAL, "%s: min_samples_leaf must be >= 1, got %lld", fname,
                                                 (long long)o->min_samples_leaf);
    if (o->min_samples_split < 2)
        return kdx_fail(KDX_EINVAL, "%s: min_samples_split must be >= 2, got %lld", fname,
                        (long long)o->min_samples_split);
    if (o->criterion != KDX_TREE_GINI && o->criterion != KDX_TREE_ENTROPY)
        return kdx_fail(KDX_EINVAL, "%s: unknown criterion %d", fname, (int)o->criterion);
    kdx__fit_data d;
    KDX_TRY(kdx__fit_data_read(fname, x, y, weight, n_classes, &d));
    /* every leaf holds a sample, so a binary tree over N samples has at most 2N - 1 nodes */
    builder b = {0};
    b.d = &d;
    b.o = o;
    b.cap = 2 * d.N;
    frame *stack = NULL;
    kdx_status s = KDX_OK;
    if ((size_t)b.cap > SIZE_MAX / 8 / (size_t)d.C) {
        s = kdx_fail(KDX_ENOMEM, "%s: too many classes", fname);
        goto done;
    }
    if (!builder_alloc(&b, &stack)) {
        s = kdx_fail(KDX_ENOMEM, "%s: out of memory for %lld samples", fname, (long long)d.N);
        goto done;
    }
    if (o->max_features > 0 && o->max_features < d.F) {
        s = kdx_generator_new(o->seed, &b.gen);
        if (s != KDX_OK) goto done;
    }
    for (int64_t i = 0; i < d.N; i++) b.idx[i] = i;
    for (int64_t f = 0; f < d.F; f++) b.order[f] = f;
    build(&b, stack);
    int64_t M = b.M;
    if ((s = node_tensor(b.feature, KDX_DTYPE_I64, M, 0, &out->feature)) != KDX_OK ||
        (s = node_tensor(b.thr, KDX_DTYPE_F64, M, 0, &out->threshold)) != KDX_OK ||
        (s = node_tensor(b.left, KDX_DTYPE_I64, M, 0, &out->left)) != KDX_OK ||
        (s = node_tensor(b.right, KDX_DTYPE_I64, M, 0, &out->right)) != KDX_OK ||
        (s = node_tensor(b.value, KDX_DTYPE_F64, M, d.C, &out->value)) != KDX_OK ||
        (s = node_tensor(b.imp, KDX_DTYPE_F64, M, 0, &out->impurity)) != KDX_OK ||
        (s = node_tensor(b.nsamp, KDX_DTYPE_I64, M, 0, &out->n_samples)) != KDX_OK ||
        (s = node_tensor(b.wn, KDX_DTYPE_F64, M, 0, &out->weighted_n)) != KDX_OK)
        kdx_tree_clear(out);
done:
    builder_free(&b, &d, stack);
    kdx__fit_data_free(&d);
    return s;
}

kdx_status kdx_surrogate_tree_apply(const kdx_tree *t, const kdx_tensor *x, kdx_tensor **leaf)
{
    const char *fname = "surrogate_tree_apply";
    *leaf = NULL;
    if (!t || !t->feature || !t->threshold || !t->left || !t->right)
        return kdx_fail(KDX_EINVAL, "%s: the tree is missing", fname);
    int64_t M = kdx_tensor_numel(t->feature);
    if (kdx_tensor_dtype(t->feature) != KDX_DTYPE_I64 || kdx_tensor_dtype(t->left) != KDX_DTYPE_I64 ||
        kdx_tensor_dtype(t->right) != KDX_DTYPE_I64 || kdx_tensor_dtype(t->threshold) != KDX_DTYPE_F64 ||
        !kdx_tensor_is_contiguous(t->feature) || !kdx_tensor_is_contiguous(t->left) ||
        !kdx_tensor_is_contiguous(t->right) || !kdx_tensor_is_contiguous(t->threshold) ||
        kdx_tensor_numel(t->left) != M || kdx_tensor_numel(t->right) != M || kdx_tensor_numel(t->threshold) != M ||
        M < 1)
        return kdx_fail(KDX_EINVAL, "%s: the tree's arrays do not fit together", fname);
    const int64_t *fe = kdx_tensor_data(t->feature), *le = kdx_tensor_data(t->left), *ri = kdx_tensor_data(t->right);
    const double *th = kdx_tensor_data(t->threshold);
    int64_t N, F;
    double *a;
    KDX_TRY(kdx__read_matrix(fname, "x", x, &N, &F, &a));
    /* a malformed tree (a loaded file) must not send the walk out of range or round in a cycle:
       children come after their parent in pre-order */
    for (int64_t j = 0; j < M; j++)
        if ((le[j] >= 0) != (ri[j] >= 0) || (le[j] >= 0 && (le[j] <= j || le[j] >= M || ri[j] <= j || ri[j] >= M ||
                                                            fe[j] < 0 || fe[j] >= F))) {
            kdx__free(a, (size_t)(N * F) * sizeof(double));
            return fe[j] >= F && le[j] >= 0
                       ? kdx_fail(KDX_ESHAPE, "%s: the tree splits on feature %lld but x has %lld features", fname,
                                  (long long)fe[j] + 1, (long long)F)
                       : kdx_fail(KDX_EINVAL, "%s: the tree's node %lld is malformed", fname, (long long)j + 1);
        }
    int64_t shape[1] = {N};
    kdx_status s = kdx__new_raw(fname, KDX_DTYPE_I64, 1, shape, leaf);
    if (s == KDX_OK) {
        int64_t *o = kdx_tensor_data(*leaf);
        for (int64_t i = 0; i < N; i++) {
            int64_t j = 0;
            while (le[j] >= 0) j = a[i * F + fe[j]] <= th[j] ? le[j] : ri[j];
            o[i] = j;
        }
    }
    kdx__free(a, (size_t)(N * F) * sizeof(double));
    return s;
}
