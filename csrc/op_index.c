/* op_index.c — indexing by tensors (index_select, gather, scatter, index_add,
   one_hot) and joining (cat, stack, split, chunk). Index tensors are int64 and
   0-based here; kdx_index_rebase converts from any other base, once. */
#include "kdx_internal.h"

#include <string.h>

static kdx_status need_index(const char *fname, const char *argname, const kdx_tensor *idx)
{
    KDX_TRY(kdx__arg(fname, argname, idx));
    if (idx->dtype != KDX_DTYPE_I64)
        return kdx_fail(KDX_EDTYPE, "%s: %s must be int64, got %s", fname, argname, kdx_dtype_name(idx->dtype));
    return KDX_OK;
}

/* A contiguous copy of x that the caller may write (never recorded). */
static kdx_status clone_checked(const char *name, const kdx_tensor *x, kdx_tensor **out)
{
    (void)name;
    kdx_tensor *d;
    KDX_TRY(kdx_detach(x, &d));
    kdx_status s = kdx_clone(d, out);
    kdx_tensor_release(d);
    return s;
}

kdx_status kdx_index_rebase(const char *fname, const kdx_tensor *idx, int64_t base, int64_t size, int allow_negative,
                            kdx_tensor **out)
{
    if (!fname) fname = "index";
    KDX_TRY(need_index(fname, "index", idx));
    kdx_tensor *y;
    KDX_TRY(kdx_clone(idx, &y));
    int64_t *p = (int64_t *)kdx__base(y), n = kdx_tensor_numel(y);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = p[i];
        if (allow_negative && v < 0 && v >= -size) {
            p[i] = v + size;
        } else if (v >= base && v - base < size) {
            p[i] = v - base;
        } else {
            kdx_tensor_release(y);
            if (size == 0) return kdx_fail(KDX_EINDEX, "%s: index %lld into a dim of size 0", fname, (long long)v);
            return kdx_fail(KDX_EINDEX, "%s: index %lld out of range [%lld, %lld]", fname, (long long)v,
                            (long long)base, (long long)(base + size - 1));
        }
    }
    *out = y;
    return KDX_OK;
}

/* Checks 0-based index values against size (without a copy). */
static kdx_status check_range(const char *fname, const kdx_tensor *idx, int64_t size)
{
    const kdx_tensor *ts[1] = {idx};
    kdx_iter it;
    char *p[1];
    int64_t n, st[1];
    kdx__iter_init(&it, 1, ts, idx->ndim, idx->shape);
    while (kdx__iter_next(&it, p, &n, st))
        for (int64_t i = 0; i < n; i++) {
            int64_t v = *(const int64_t *)(p[0] + i * st[0]);
            if (v < 0 || v >= size) {
                if (size == 0) return kdx_fail(KDX_EINDEX, "%s: index %lld into a dim of size 0", fname, (long long)v);
                return kdx_fail(KDX_EINDEX, "%s: index %lld out of range [0, %lld]", fname, (long long)v,
                                (long long)(size - 1));
            }
        }
    return KDX_OK;
}

static kdx_status index_select_fwd(const kdx_tensor *x, int dim, const kdx_tensor *idx, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("index_select", "input", x));
    KDX_TRY(need_index("index_select", "index", idx));
    if (idx->ndim > 1) return kdx_fail(KDX_ESHAPE, "index_select: index must be 1-D, got %s", kdx__shp(idx));
    if (x->ndim == 0) return kdx_fail(KDX_ESHAPE, "index_select: input is 0-d");
    int d;
    KDX_TRY(kdx__dim("index_select", x->ndim, dim, &d));
    KDX_TRY(check_range("index_select", idx, x->shape[d]));
    int64_t shape[KDX_MAX_DIMS], n = kdx_tensor_numel(idx);
    memcpy(shape, x->shape, sizeof shape);
    shape[d] = n;
    kdx_tensor *y;
    const int64_t *ip = (const int64_t *)kdx__base(idx);
    int64_t is = idx->ndim ? idx->stride[0] : 0;
    if (kdx_tensor_is_contiguous(x)) {
        /* the common case (a loader's shuffled batch): whole runs of memory
           per index, no view per row */
        KDX_TRY(kdx__new_raw("index_select", x->dtype, x->ndim, shape, &y));
        int64_t outer = 1, inner = 1;
        for (int k = 0; k < d; k++) outer *= x->shape[k];
        for (int k = d + 1; k < x->ndim; k++) inner *= x->shape[k];
        size_t es = kdx_dtype_size(x->dtype), run = (size_t)inner * es;
        const char *xp = kdx__base(x);
        char *yp = kdx__base(y);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < n; i++)
                memcpy(yp + (size_t)(o * n + i) * run, xp + (size_t)(o * x->shape[d] + ip[i * is]) * run, run);
        *out = y;
        return KDX_OK;
    }
    KDX_TRY(kdx__new("index_select", x->dtype, x->ndim, shape, &y));
    kdx_status s = KDX_OK;
    for (int64_t i = 0; i < n && s == KDX_OK; i++) {
        kdx_tensor *dst = NULL, *src = NULL;
        s = kdx_select(y, d, i, &dst);
        if (s == KDX_OK) s = kdx_select(x, d, ip[i * is], &src);
        if (s == KDX_OK) s = kdx_copy_(dst, src);
        KDX_RELEASE(dst, src);
    }
    if (s != KDX_OK) {
        kdx_tensor_release(y);
        return s;
    }
    *out = y;
    return KDX_OK;
}

/* Shared walk of gather/scatter: for every position p of idx, the element of
   `data` at p with coordinate dim replaced by idx[p], and the element of
   `other` at p; mode says what to do with the pair. The index values are all
   checked before anything is written, so a bad index leaves data untouched. */
typedef enum walk_mode { WALK_LOAD, WALK_STORE, WALK_ADD } walk_mode;

/* One row of the walk (the last dim of idx), typed. */
#define WALK_ROW(T)                                                                               \
    do {                                                                                          \
        T *dp = (T *)kdx__base(data);                                                             \
        T *op = (T *)kdx__base(other);                                                            \
        for (int64_t j = 0; j < inner; j++) {                                                     \
            int64_t k = ip[oi0 + j * si], od = od0 + k * sd + (last_is_d ? 0 : j * sdl);          \
            int64_t oo = oo0 + j * so;                                                            \
            if (mode == WALK_LOAD) op[oo] = dp[od];                                               \
            else if (mode == WALK_STORE) dp[od] = op[oo];                                         \
            else dp[od] = ADD_##T(dp[od], op[oo]);                                                \
        }                                                                                         \
    } while (0)
#define ADD_float(a, b) ((a) + (b))
#define ADD_double(a, b) ((a) + (b))
#define ADD_int64_t(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b))) /* wraps, no UB */

static kdx_status index_walk(const char *fname, const kdx_tensor *data, int d, const kdx_tensor *idx,
                             const kdx_tensor *other, walk_mode mode)
{
    if (idx->ndim != data->ndim)
        return kdx_fail(KDX_ESHAPE, "%s: index has %d dims but input has %d", fname, idx->ndim, data->ndim);
    for (int i = 0; i < idx->ndim; i++) {
        if (i != d && idx->shape[i] > data->shape[i])
            return kdx_fail(KDX_ESHAPE, "%s: index %s is larger than input %s outside the indexed dim", fname,
                            kdx__shp(idx), kdx__shp(data));
        if (idx->shape[i] > other->shape[i])
            return kdx_fail(KDX_ESHAPE, "%s: index %s is larger than %s", fname, kdx__shp(idx), kdx__shp(other));
    }
    int64_t size = data->ndim ? data->shape[d] : 1;
    KDX_TRY(check_range(fname, idx, size));
    if (kdx_tensor_numel(idx) == 0) return KDX_OK;
    int nd = idx->ndim, last = nd - 1;
    bool last_is_d = nd == 0 || last == d;
    int64_t inner = nd ? idx->shape[last] : 1;
    int64_t si = nd ? idx->stride[last] : 0, so = nd ? other->stride[last] : 0;
    int64_t sdl = nd ? data->stride[last] : 0, sd = nd ? data->stride[d] : 0;
    const int64_t *ip = (const int64_t *)kdx__base(idx);
    int64_t coord[KDX_MAX_DIMS] = {0}, rows = nd ? kdx_tensor_numel(idx) / inner : 1;
    for (int64_t r = 0; r < rows; r++) {
        int64_t oi0 = 0, od0 = 0, oo0 = 0;
        for (int i = 0; i < last; i++) {
            oi0 += coord[i] * idx->stride[i];
            oo0 += coord[i] * other->stride[i];
            if (i != d) od0 += coord[i] * data->stride[i];
        }
        switch (data->dtype) {
        case KDX_DTYPE_F32: WALK_ROW(float); break;
        case KDX_DTYPE_F64: WALK_ROW(double); break;
        case KDX_DTYPE_I64: WALK_ROW(int64_t); break;
        }
        for (int i = last - 1; i >= 0; i--) {
            if (++coord[i] < idx->shape[i]) break;
            coord[i] = 0;
        }
    }
    return KDX_OK;
}

static kdx_status gather_fwd(const kdx_tensor *x, int dim, const kdx_tensor *idx, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("gather", "input", x));
    KDX_TRY(need_index("gather", "index", idx));
    int d;
    KDX_TRY(kdx__dim("gather", x->ndim, dim, &d));
    kdx_tensor *y;
    KDX_TRY(kdx__new("gather", x->dtype, idx->ndim, idx->shape, &y));
    kdx_status s = index_walk("gather", x, d, idx, y, WALK_LOAD);
    if (s != KDX_OK) {
        kdx_tensor_release(y);
        return s;
    }
    *out = y;
    return KDX_OK;
}

static kdx_status scatter(const char *fname, kdx_tensor *x, int dim, const kdx_tensor *idx, const kdx_tensor *src,
                          walk_mode mode)
{
    KDX_TRY(kdx__arg(fname, "input", x));
    KDX_TRY(need_index(fname, "index", idx));
    KDX_TRY(kdx__arg(fname, "source", src));
    KDX_TRY(kdx__check_writable(fname, x));
    KDX_TRY(kdx__check_inplace(fname, x));
    int d;
    KDX_TRY(kdx__dim(fname, x->ndim, dim, &d));
    if (src->ndim != x->ndim)
        return kdx_fail(KDX_ESHAPE, "%s: source has %d dims but input has %d", fname, src->ndim, x->ndim);
    kdx_tensor *sc;
    KDX_TRY(kdx_to(src, x->dtype, &sc));
    kdx_status s = index_walk(fname, x, d, idx, sc, mode);
    kdx_tensor_release(sc);
    if (s == KDX_OK) kdx__bump(x);
    return s;
}

kdx_status kdx_scatter_(kdx_tensor *x, int dim, const kdx_tensor *idx, const kdx_tensor *src)
{
    return scatter("scatter_", x, dim, idx, src, WALK_STORE);
}

kdx_status kdx_scatter_add_(kdx_tensor *x, int dim, const kdx_tensor *idx, const kdx_tensor *src)
{
    return scatter("scatter_add_", x, dim, idx, src, WALK_ADD);
}

kdx_status kdx_index_add_(kdx_tensor *x, int dim, const kdx_tensor *idx, const kdx_tensor *src, double alpha)
{
    KDX_TRY(kdx__arg("index_add_", "input", x));
    KDX_TRY(need_index("index_add_", "index", idx));
    KDX_TRY(kdx__arg("index_add_", "source", src));
    KDX_TRY(kdx__check_writable("index_add_", x));
    KDX_TRY(kdx__check_inplace("index_add_", x));
    if (idx->ndim > 1) return kdx_fail(KDX_ESHAPE, "index_add_: index must be 1-D, got %s", kdx__shp(idx));
    if (x->ndim == 0) return kdx_fail(KDX_ESHAPE, "index_add_: input is 0-d");
    int d;
    KDX_TRY(kdx__dim("index_add_", x->ndim, dim, &d));
    int64_t n = kdx_tensor_numel(idx);
    bool ok = src->ndim == x->ndim;
    for (int i = 0; ok && i < x->ndim; i++) ok = src->shape[i] == (i == d ? n : x->shape[i]);
    if (!ok)
        return kdx_fail(KDX_ESHAPE, "index_add_: source %s does not match input %s with %lld entries along the indexed dim",
                        kdx__shp(src), kdx__shp(x), (long long)n);
    KDX_TRY(check_range("index_add_", idx, x->shape[d]));
    const int64_t *ip = (const int64_t *)kdx__base(idx);
    int64_t is = idx->ndim ? idx->stride[0] : 0;
    kdx_status s = KDX_OK;
    for (int64_t i = 0; i < n && s == KDX_OK; i++) {
        kdx_tensor *dst = NULL, *row = NULL, *scaled = NULL;
        s = kdx_select(x, d, ip[i * is], &dst);
        if (s == KDX_OK) s = kdx_select(src, d, i, &row);
        if (s == KDX_OK) s = alpha == 1 ? kdx_binary_(KDX_BIN_ADD, dst, row)
                                        : kdx_binary_scalar(KDX_BIN_MUL, row, alpha, 0, &scaled);
        if (s == KDX_OK && scaled) s = kdx_binary_(KDX_BIN_ADD, dst, scaled);
        KDX_RELEASE(dst, row, scaled);
    }
    return s;
}

kdx_status kdx_one_hot(const kdx_tensor *idx, int64_t n, kdx_tensor **out)
{
    KDX_TRY(need_index("one_hot", "labels", idx));
    if (idx->ndim >= KDX_MAX_DIMS) return kdx_fail(KDX_ESHAPE, "one_hot: labels have too many dims");
    if (n <= 0) return kdx_fail(KDX_EINVAL, "one_hot: the number of classes must be positive, got %lld", (long long)n);
    kdx_tensor *ic;
    KDX_TRY(kdx_index_rebase("one_hot", idx, 0, n, 0, &ic));
    int64_t shape[KDX_MAX_DIMS];
    memcpy(shape, idx->shape, (size_t)idx->ndim * sizeof *shape);
    shape[idx->ndim] = n;
    kdx_tensor *y;
    kdx_status s = kdx__new("one_hot", KDX_DTYPE_I64, idx->ndim + 1, shape, &y);
    if (s == KDX_OK) {
        int64_t m = kdx_tensor_numel(ic);
        const int64_t *ip = (const int64_t *)kdx__base(ic);
        for (int64_t i = 0; i < m; i++) ((int64_t *)kdx__base(y))[i * n + ip[i]] = 1;
        *out = y;
    }
    kdx_tensor_release(ic);
    return s;
}

/* ---- joining ---- */

static kdx_status cat_fwd(const kdx_tensor *const *ts, int n, int dim, kdx_tensor **out)
{
    if (n <= 0 || !ts) return kdx_fail(KDX_EINVAL, "cat: expected a non-empty list of tensors");
    for (int i = 0; i < n; i++)
        if (!ts[i]) return kdx_fail(KDX_EINVAL, "cat: tensor %d is NULL", i);
    const kdx_tensor *f = ts[0];
    if (f->ndim == 0) return kdx_fail(KDX_ESHAPE, "cat: 0-d tensors cannot be concatenated (use stack)");
    int d;
    KDX_TRY(kdx__dim("cat", f->ndim, dim, &d));
    int64_t shape[KDX_MAX_DIMS];
    memcpy(shape, f->shape, sizeof shape);
    shape[d] = 0;
    kdx_dtype dt = f->dtype;
    for (int i = 0; i < n; i++) {
        const kdx_tensor *t = ts[i];
        bool ok = t->ndim == f->ndim;
        for (int j = 0; ok && j < f->ndim; j++) ok = j == d || t->shape[j] == f->shape[j];
        if (!ok)
            return kdx_fail(KDX_ESHAPE, "cat: shapes %s and %s do not match outside the cat dim", kdx__shp(f),
                            kdx__shp(t));
        shape[d] += t->shape[d];
        dt = kdx_dtype_promote(dt, t->dtype);
    }
    kdx_tensor *y;
    KDX_TRY(kdx__new("cat", dt, f->ndim, shape, &y));
    int64_t at = 0;
    kdx_status s = KDX_OK;
    for (int i = 0; i < n && s == KDX_OK; i++) {
        kdx_tensor *part;
        s = kdx_narrow(y, d, at, ts[i]->shape[d], &part);
        if (s == KDX_OK) {
            s = kdx_copy_(part, ts[i]);
            kdx_tensor_release(part);
        }
        at += ts[i]->shape[d];
    }
    if (s != KDX_OK) {
        kdx_tensor_release(y);
        return s;
    }
    *out = y;
    return KDX_OK;
}

kdx_status kdx_stack(const kdx_tensor *const *ts, int n, int dim, kdx_tensor **out)
{
    if (n <= 0 || !ts) return kdx_fail(KDX_EINVAL, "stack: expected a non-empty list of tensors");
    if (n > 4096) return kdx_fail(KDX_EINVAL, "stack: at most 4096 tensors at once, got %d", n);
    kdx_tensor *views[4096];
    kdx_status s = KDX_OK;
    int made = 0;
    for (int i = 0; i < n && s == KDX_OK; i++) {
        if (!ts[i]) s = kdx_fail(KDX_EINVAL, "stack: tensor %d is NULL", i);
        else if (!kdx__same_shape(ts[i], ts[0]))
            s = kdx_fail(KDX_ESHAPE, "stack: shapes %s and %s differ", kdx__shp(ts[0]), kdx__shp(ts[i]));
        else if ((s = kdx_unsqueeze(ts[i], dim, &views[i])) == KDX_OK) made++;
        else s = kdx_fail(s, "stack: dim out of range for %d-d tensors", ts[0]->ndim);
    }
    if (s == KDX_OK) s = kdx_cat((const kdx_tensor *const *)views, n, dim, out);
    for (int i = 0; i < made; i++) kdx_tensor_release(views[i]);
    return s;
}

kdx_status kdx_split(const kdx_tensor *t, int64_t split_size, int dim, kdx_tensor **outs, int cap, int *n)
{
    KDX_TRY(kdx__arg("split", "input", t));
    if (t->ndim == 0) return kdx_fail(KDX_ESHAPE, "split: cannot split a 0-d tensor");
    if (split_size <= 0) return kdx_fail(KDX_EINVAL, "split: split size must be positive, got %lld", (long long)split_size);
    int d;
    KDX_TRY(kdx__dim("split", t->ndim, dim, &d));
    int64_t size = t->shape[d];
    int64_t count = size == 0 ? 1 : (size + split_size - 1) / split_size;
    if (count > 1 << 20) return kdx_fail(KDX_EINVAL, "split: %lld pieces is too many", (long long)count);
    *n = (int)count;
    if (!outs) return KDX_OK;
    if (cap < count) return kdx_fail(KDX_EINVAL, "split: room for %d pieces, %lld needed", cap, (long long)count);
    for (int64_t i = 0; i < count; i++) {
        int64_t start = i * split_size, len = size - start < split_size ? size - start : split_size;
        kdx_status s = kdx_narrow(t, d, start, len, &outs[i]);
        if (s != KDX_OK) {
            for (int64_t j = 0; j < i; j++) kdx_tensor_release(outs[j]);
            return s;
        }
    }
    return KDX_OK;
}

kdx_status kdx_chunk(const kdx_tensor *t, int chunks, int dim, kdx_tensor **outs, int cap, int *n)
{
    KDX_TRY(kdx__arg("chunk", "input", t));
    if (chunks <= 0) return kdx_fail(KDX_EINVAL, "chunk: chunks must be positive, got %d", chunks);
    if (t->ndim == 0) return kdx_fail(KDX_ESHAPE, "chunk: cannot chunk a 0-d tensor");
    int d;
    KDX_TRY(kdx__dim("chunk", t->ndim, dim, &d));
    int64_t size = t->shape[d], each = (size + chunks - 1) / chunks;
    return kdx_split(t, each > 0 ? each : 1, d, outs, cap, n);
}

/* ---- gradients ----
 * index_select and gather move values; their gradients move them back with
 * index_add and scatter_add, whose own gradients are index_select and gather
 * again, so every order of derivative stays in this family. */

static kdx_status index_select_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_tensor *idx, *z;
    KDX_TRY(kdx__saved(n, 0, &idx));
    const kdx_edge *e = &n->next[0];
    KDX_TRY(kdx_zeros(g->dtype, e->ndim, e->shape, &z));
    kdx_status s = kdx_index_add(z, (int)n->ip[0], idx, g, 1, &gin[0]);
    kdx_tensor_release(z);
    return s;
}

kdx_status kdx_index_select(const kdx_tensor *x, int dim, const kdx_tensor *idx, kdx_tensor **out)
{
    kdx_status s = index_select_fwd(x, dim, idx, out);
    if (s != KDX_OK || !kdx__needs_node(1, &x)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record("index_select", index_select_backward, 1, &x, out, &n));
    n->ip[0] = dim < 0 ? dim + x->ndim : dim;
    kdx__save(n, 0, idx);
    return KDX_OK;
}

static kdx_status gather_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_tensor *idx, *z;
    KDX_TRY(kdx__saved(n, 0, &idx));
    const kdx_edge *e = &n->next[0];
    KDX_TRY(kdx_zeros(g->dtype, e->ndim, e->shape, &z));
    kdx_status s = kdx_scatter_add(z, (int)n->ip[0], idx, g, &gin[0]);
    kdx_tensor_release(z);
    return s;
}

kdx_status kdx_gather(const kdx_tensor *x, int dim, const kdx_tensor *idx, kdx_tensor **out)
{
    kdx_status s = gather_fwd(x, dim, idx, out);
    if (s != KDX_OK || !kdx__needs_node(1, &x)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record("gather", gather_backward, 1, &x, out, &n));
    n->ip[0] = dim < 0 ? dim + x->ndim : dim;
    kdx__save(n, 0, idx);
    return KDX_OK;
}

/* x + (src added at idx): x's gradient is g, src's is g read back at idx. */
static kdx_status add_at_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    kdx_tensor *idx;
    KDX_TRY(kdx__saved(n, 0, &idx));
    int d = (int)n->ip[0];
    bool scatter = n->ip[1] != 0;
    if (want[0]) gin[0] = kdx_tensor_retain(g);
    if (!want[1]) return KDX_OK;
    kdx_tensor *r;
    KDX_TRY(scatter ? kdx_gather(g, d, idx, &r) : kdx_index_select(g, d, idx, &r));
    if (n->p[0] != 1) {
        kdx_tensor *t;
        kdx_status s = kdx_binary_scalar(KDX_BIN_MUL, r, n->p[0], 0, &t);
        kdx_tensor_release(r);
        KDX_TRY(s);
        r = t;
    }
    gin[1] = r;
    return KDX_OK;
}

static kdx_status add_at(const char *name, bool scatter, const kdx_tensor *x, int dim, const kdx_tensor *idx,
                         const kdx_tensor *src, double alpha, kdx_tensor **out)
{
    KDX_TRY(kdx__arg(name, "input", x));
    KDX_TRY(kdx__arg(name, "source", src));
    const kdx_tensor *ins[2] = {x, src};
    bool rec = kdx__needs_node(2, ins);
    bool was = kdx__grad_pause();
    kdx_tensor *y = NULL;
    kdx_status s = clone_checked(name, x, &y);
    if (s == KDX_OK) s = scatter ? kdx_scatter_add_(y, dim, idx, src) : kdx_index_add_(y, dim, idx, src, alpha);
    kdx__grad_restore(was);
    if (s != KDX_OK) {
        kdx_tensor_release(y);
        return kdx_fail(s, "%s: %s", name, strchr(kdx_last_error(), ':') ? strchr(kdx_last_error(), ':') + 2 : kdx_last_error());
    }
    *out = y;
    if (!rec) return KDX_OK;
    kdx_node *n;
    KDX_TRY(kdx__record(name, add_at_backward, 2, ins, out, &n));
    n->ip[0] = dim < 0 ? dim + x->ndim : dim;
    n->ip[1] = scatter;
    n->p[0] = alpha;
    kdx__save(n, 0, idx);
    return KDX_OK;
}

kdx_status kdx_index_add(const kdx_tensor *x, int dim, const kdx_tensor *idx, const kdx_tensor *src, double alpha,
                         kdx_tensor **out)
{
    return add_at("index_add", false, x, dim, idx, src, alpha, out);
}

kdx_status kdx_scatter_add(const kdx_tensor *x, int dim, const kdx_tensor *idx, const kdx_tensor *src,
                           kdx_tensor **out)
{
    return add_at("scatter_add", true, x, dim, idx, src, 1, out);
}

/* cat: each input takes its slice of g. */
static kdx_status cat_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    int d = (int)n->ip[0];
    int64_t at = 0;
    for (int i = 0; i < n->nin; i++) {
        int64_t len = n->next[i].shape[d];
        if (want[i]) KDX_TRY(kdx_narrow(g, d, at, len, &gin[i]));
        at += len;
    }
    return KDX_OK;
}

kdx_status kdx_cat(const kdx_tensor *const *ts, int n, int dim, kdx_tensor **out)
{
    kdx_status s = cat_fwd(ts, n, dim, out);
    if (s != KDX_OK || !kdx__needs_node(n, ts)) return s;
    kdx_node *node;
    KDX_TRY(kdx__record("cat", cat_backward, n, ts, out, &node));
    node->ip[0] = dim < 0 ? dim + ts[0]->ndim : dim;
    return KDX_OK;
}
