/* view.c — views that share storage (reshape, transpose, narrow, expand, ...)
   and the copies that change layout or dtype. */
#include "kdx_internal.h"

#include <string.h>

static kdx_status clone_fwd(const kdx_tensor *t, kdx_tensor **out);

/* Resolves a -1 entry and checks the element count is unchanged. */
static kdx_status infer_shape(const char *fname, const kdx_tensor *t, int ndim, const int64_t *shape, int64_t *out)
{
    if (ndim < 0 || ndim > KDX_MAX_DIMS)
        return kdx_fail(KDX_ESHAPE, "%s: %d dims requested, at most %d are supported", fname, ndim, KDX_MAX_DIMS);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1) {
            if (infer >= 0) return kdx_fail(KDX_ESHAPE, "%s: only one dim may be -1", fname);
            infer = i;
        } else if (shape[i] < 0) {
            return kdx_fail(KDX_ESHAPE, "%s: invalid size %lld", fname, (long long)shape[i]);
        } else {
            if (shape[i] > 0 && known > INT64_MAX / shape[i])
                return kdx_fail(KDX_ESHAPE, "%s: shape is too large", fname);
            known *= shape[i];
        }
        out[i] = shape[i];
    }
    int64_t n = kdx_tensor_numel(t);
    if (infer >= 0) {
        if (known == 0 || n % known != 0) {
            char b[96];
            return kdx_fail(KDX_ESHAPE, "%s: shape %s is invalid for a tensor of %lld elements", fname,
                            kdx_shape_str(ndim, shape, b, sizeof b), (long long)n);
        }
        out[infer] = n / known;
    } else if (known != n) {
        char b[96];
        return kdx_fail(KDX_ESHAPE, "%s: shape %s is invalid for a tensor of %lld elements (shape %s)", fname,
                        kdx_shape_str(ndim, shape, b, sizeof b), (long long)n, kdx__shp(t));
    }
    return KDX_OK;
}

/* Strides for viewing t as shape without copying, or false when the layout
   does not allow it (PyTorch's computeStride: groups of old dims that are
   contiguous among themselves map onto groups of new dims). */
static bool view_strides(const kdx_tensor *t, int ndim, const int64_t *shape, int64_t *stride)
{
    if (kdx_tensor_numel(t) == 0 || t->ndim == 0) {
        kdx__contig_strides(ndim, shape, stride);
        return true;
    }
    int view_d = ndim - 1;
    int64_t chunk_base = t->stride[t->ndim - 1];
    int64_t tensor_numel = 1, view_numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_numel *= t->shape[d];
        if (d == 0 || (t->shape[d - 1] != 1 && t->stride[d - 1] != tensor_numel * chunk_base)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                stride[view_d] = view_numel * chunk_base;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (d > 0) {
                chunk_base = t->stride[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

static kdx_status view_fwd(const kdx_tensor *t, int ndim, const int64_t *shape, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("view", "tensor", t));
    int64_t sh[KDX_MAX_DIMS], st[KDX_MAX_DIMS];
    KDX_TRY(infer_shape("view", t, ndim, shape, sh));
    if (!view_strides(t, ndim, sh, st))
        return kdx_fail(KDX_ESHAPE, "view: the strides of a %s tensor do not allow this view; use reshape",
                        kdx__shp(t));
    return kdx__view_of(t, ndim, sh, st, t->offset, out);
}

static kdx_status reshape_fwd(const kdx_tensor *t, int ndim, const int64_t *shape, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("reshape", "tensor", t));
    int64_t sh[KDX_MAX_DIMS], st[KDX_MAX_DIMS];
    KDX_TRY(infer_shape("reshape", t, ndim, shape, sh));
    if (view_strides(t, ndim, sh, st)) return kdx__view_of(t, ndim, sh, st, t->offset, out);
    kdx_tensor *c;
    KDX_TRY(clone_fwd(t, &c));
    kdx__contig_strides(ndim, sh, st);
    kdx_status s = kdx__view_of(c, ndim, sh, st, 0, out);
    kdx_tensor_release(c);
    return s;
}

static kdx_status transpose_fwd(const kdx_tensor *t, int d0, int d1, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("transpose", "tensor", t));
    int a, b;
    KDX_TRY(kdx__dim("transpose", t->ndim, d0, &a));
    KDX_TRY(kdx__dim("transpose", t->ndim, d1, &b));
    int64_t sh[KDX_MAX_DIMS], st[KDX_MAX_DIMS];
    memcpy(sh, t->shape, sizeof sh);
    memcpy(st, t->stride, sizeof st);
    if (t->ndim > 0) {
        sh[a] = t->shape[b], sh[b] = t->shape[a];
        st[a] = t->stride[b], st[b] = t->stride[a];
    }
    return kdx__view_of(t, t->ndim, sh, st, t->offset, out);
}

static kdx_status permute_fwd(const kdx_tensor *t, const int *dims, int ndim, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("permute", "tensor", t));
    if (ndim != t->ndim)
        return kdx_fail(KDX_ESHAPE, "permute: %d dims given for a %d-d tensor", ndim, t->ndim);
    int64_t sh[KDX_MAX_DIMS], st[KDX_MAX_DIMS];
    bool seen[KDX_MAX_DIMS] = {false};
    for (int i = 0; i < ndim; i++) {
        int d;
        KDX_TRY(kdx__dim("permute", t->ndim, dims[i], &d));
        if (seen[d]) return kdx_fail(KDX_EINVAL, "permute: dim %d appears twice", d);
        seen[d] = true;
        sh[i] = t->shape[d];
        st[i] = t->stride[d];
    }
    return kdx__view_of(t, ndim, sh, st, t->offset, out);
}

static kdx_status narrow_fwd(const kdx_tensor *t, int dim, int64_t start, int64_t length, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("narrow", "tensor", t));
    if (t->ndim == 0) return kdx_fail(KDX_ESHAPE, "narrow: cannot narrow a 0-d tensor");
    int d;
    KDX_TRY(kdx__dim("narrow", t->ndim, dim, &d));
    int64_t size = t->shape[d];
    if (start < 0) start += size;
    if (start < 0 || start > size || length < 0 || start + length > size)
        return kdx_fail(KDX_EINDEX, "narrow: start %lld and length %lld exceed dim %d of size %lld", (long long)start,
                        (long long)length, d, (long long)size);
    int64_t sh[KDX_MAX_DIMS];
    memcpy(sh, t->shape, sizeof sh);
    sh[d] = length;
    return kdx__view_of(t, t->ndim, sh, t->stride, t->offset + start * t->stride[d], out);
}

static kdx_status select_fwd(const kdx_tensor *t, int dim, int64_t index, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("select", "tensor", t));
    if (t->ndim == 0) return kdx_fail(KDX_ESHAPE, "select: cannot select from a 0-d tensor");
    int d;
    KDX_TRY(kdx__dim("select", t->ndim, dim, &d));
    int64_t size = t->shape[d];
    if (index < -size || index >= size)
        return kdx_fail(KDX_EINDEX, "select: index %lld out of range for dim %d of size %lld", (long long)index, d,
                        (long long)size);
    if (index < 0) index += size;
    int64_t sh[KDX_MAX_DIMS], st[KDX_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != d) sh[n] = t->shape[i], st[n++] = t->stride[i];
    return kdx__view_of(t, n, sh, st, t->offset + index * t->stride[d], out);
}

static kdx_status squeeze_fwd(const kdx_tensor *t, int dim, int all, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("squeeze", "tensor", t));
    int d = -1;
    if (!all && t->ndim > 0) KDX_TRY(kdx__dim("squeeze", t->ndim, dim, &d));
    int64_t sh[KDX_MAX_DIMS], st[KDX_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        bool drop = t->shape[i] == 1 && (all || i == d);
        if (!drop) sh[n] = t->shape[i], st[n++] = t->stride[i];
    }
    return kdx__view_of(t, n, sh, st, t->offset, out);
}

static kdx_status unsqueeze_fwd(const kdx_tensor *t, int dim, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("unsqueeze", "tensor", t));
    if (t->ndim >= KDX_MAX_DIMS)
        return kdx_fail(KDX_ESHAPE, "unsqueeze: tensor already has %d dims", KDX_MAX_DIMS);
    int d;
    KDX_TRY(kdx__dim("unsqueeze", t->ndim + 1, dim, &d));
    int64_t sh[KDX_MAX_DIMS], st[KDX_MAX_DIMS];
    for (int i = 0, j = 0; i <= t->ndim; i++) {
        if (i == d) {
            sh[i] = 1;
            st[i] = d < t->ndim ? t->shape[d] * t->stride[d] : 1;
        } else {
            sh[i] = t->shape[j], st[i] = t->stride[j];
            j++;
        }
    }
    return kdx__view_of(t, t->ndim + 1, sh, st, t->offset, out);
}

static kdx_status expand_fwd(const kdx_tensor *t, int ndim, const int64_t *shape, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("expand", "tensor", t));
    if (ndim < t->ndim || ndim > KDX_MAX_DIMS)
        return kdx_fail(KDX_ESHAPE, "expand: cannot expand a %d-d tensor to %d dims", t->ndim, ndim);
    int64_t sh[KDX_MAX_DIMS], st[KDX_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        int64_t want = shape[i];
        if (j < 0) {
            if (want < 0) return kdx_fail(KDX_ESHAPE, "expand: -1 is not allowed for a new leading dim");
            sh[i] = want, st[i] = 0;
        } else if (want == -1 || want == t->shape[j]) {
            sh[i] = t->shape[j], st[i] = t->stride[j];
        } else if (t->shape[j] == 1 && want >= 0) {
            sh[i] = want, st[i] = 0;
        } else {
            char b[96];
            return kdx_fail(KDX_ESHAPE, "expand: cannot expand %s to %s (only sizes of 1 can change)", kdx__shp(t),
                            kdx_shape_str(ndim, shape, b, sizeof b));
        }
    }
    KDX_TRY(kdx__check_shape("expand", ndim, sh));
    return kdx__view_of(t, ndim, sh, st, t->offset, out);
}

kdx_status kdx_flatten(const kdx_tensor *t, int start, int end, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("flatten", "tensor", t));
    if (t->ndim == 0) {
        int64_t one = 1;
        return kdx_reshape(t, 1, &one, out);
    }
    int a, b;
    KDX_TRY(kdx__dim("flatten", t->ndim, start, &a));
    KDX_TRY(kdx__dim("flatten", t->ndim, end, &b));
    if (a > b) return kdx_fail(KDX_EINVAL, "flatten: start dim %d comes after end dim %d", a, b);
    int64_t sh[KDX_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < a; i++) sh[n++] = t->shape[i];
    int64_t m = 1;
    for (int i = a; i <= b; i++) m *= t->shape[i];
    sh[n++] = m;
    for (int i = b + 1; i < t->ndim; i++) sh[n++] = t->shape[i];
    return kdx_reshape(t, n, sh, out);
}

/* ---- copies ---- */

/* Copies with conversion between any two dtypes, one run at a time. */
#define COPY_RUN(TD, TS)                                                                   \
    for (int64_t i = 0; i < n; i++) *(TD *)(p[0] + i * st[0]) = (TD) * (const TS *)(p[1] + i * st[1])

/* Float to int truncates toward zero; NaN and out-of-range values (undefined
   behaviour in C) saturate instead. */
#define COPY_TO_INT(TS) \
    for (int64_t i = 0; i < n; i++) *(int64_t *)(p[0] + i * st[0]) = kdx__f2i(*(const TS *)(p[1] + i * st[1]))

/* dst (contiguous) = src whose last two dims are transposed in memory
   (src stride 1 on dim -2): copied in 32x32 tiles, so that both the reads
   and the writes stay in cache. Same dtype. */
#define TILE 32
#define TRANSPOSED_COPY(T)                                                                    \
    do {                                                                                      \
        T *d = (T *)kdx__base(dst);                                                           \
        const T *sp = (const T *)kdx__base(src);                                              \
        for (int64_t b = 0; b < batches; b++) {                                               \
            const T *s0 = sp + b * bstride;                                                   \
            T *d0 = d + b * R * C;                                                            \
            for (int64_t i0 = 0; i0 < R; i0 += TILE)                                          \
                for (int64_t j0 = 0; j0 < C; j0 += TILE)                                      \
                    for (int64_t i = i0; i < i0 + TILE && i < R; i++)                         \
                        for (int64_t j = j0; j < j0 + TILE && j < C; j++) d0[i * C + j] = s0[i + j * cs]; \
        }                                                                                     \
    } while (0)

static bool copy_transposed(kdx_tensor *dst, const kdx_tensor *src)
{
    int nd = src->ndim;
    if (nd < 2 || dst->dtype != src->dtype || !kdx_tensor_is_contiguous(dst) || src->stride[nd - 2] != 1 ||
        src->stride[nd - 1] == 1 || kdx__numel(nd, src->shape) < 4096)
        return false;
    int64_t R = src->shape[nd - 2], C = src->shape[nd - 1], cs = src->stride[nd - 1];
    /* leading dims must form one evenly strided batch */
    int64_t batches = kdx__numel(nd - 2, src->shape), bstride = nd > 2 ? src->stride[nd - 3] : 0;
    for (int i = 0; i < nd - 3; i++)
        if (src->shape[i] > 1 && src->stride[i] != src->stride[i + 1] * src->shape[i + 1]) return false;
    /* element (i, j) of batch b sits at b*bstride + i + j*cs */
    switch (dst->dtype) {
    case KDX_DTYPE_F32: TRANSPOSED_COPY(float); break;
    case KDX_DTYPE_F64: TRANSPOSED_COPY(double); break;
    case KDX_DTYPE_I64: TRANSPOSED_COPY(int64_t); break;
    }
    return true;
}
#undef TILE

static void copy_converting(kdx_tensor *dst, const kdx_tensor *src)
{
    if (copy_transposed(dst, src)) return;
    const kdx_tensor *ts[2] = {dst, src};
    kdx_iter it;
    char *p[2];
    int64_t n, st[2];
    kdx__iter_init(&it, 2, ts, dst->ndim, dst->shape);
    int key = (int)dst->dtype * 3 + (int)src->dtype;
    while (kdx__iter_next(&it, p, &n, st)) {
        if (dst->dtype == src->dtype && st[0] == st[1] && st[0] == (int64_t)kdx_dtype_size(dst->dtype)) {
            memcpy(p[0], p[1], (size_t)(n * st[0]));
            continue;
        }
        switch (key) {
        case 0: COPY_RUN(float, float); break;
        case 1: COPY_RUN(float, double); break;
        case 2: COPY_RUN(float, int64_t); break;
        case 3: COPY_RUN(double, float); break;
        case 4: COPY_RUN(double, double); break;
        case 5: COPY_RUN(double, int64_t); break;
        case 6: COPY_TO_INT(float); break;
        case 7: COPY_TO_INT(double); break;
        case 8: COPY_RUN(int64_t, int64_t); break;
        }
    }
}

kdx_status kdx_copy_(kdx_tensor *dst, const kdx_tensor *src)
{
    KDX_TRY(kdx__arg("copy_", "destination", dst));
    KDX_TRY(kdx__arg("copy_", "source", src));
    KDX_TRY(kdx__check_writable("copy_", dst));
    KDX_TRY(kdx__check_inplace("copy_", dst));
    int nd;
    int64_t sh[KDX_MAX_DIMS];
    KDX_TRY(kdx_broadcast_shape("copy_", dst->ndim, dst->shape, src->ndim, src->shape, &nd, sh));
    if (nd != dst->ndim || kdx__numel(nd, sh) != kdx_tensor_numel(dst))
        return kdx_fail(KDX_ESHAPE, "copy_: source of shape %s does not broadcast to destination shape %s",
                        kdx__shp(src), kdx__shp(dst));
    for (int i = 0; i < nd; i++)
        if (sh[i] != dst->shape[i])
            return kdx_fail(KDX_ESHAPE, "copy_: source of shape %s does not broadcast to destination shape %s",
                            kdx__shp(src), kdx__shp(dst));
    if (dst->storage == src->storage && dst != src) {
        /* Overlapping storage: go through a temporary so the result is as if copied at once. */
        kdx_tensor *tmp;
        KDX_TRY(clone_fwd(src, &tmp));
        copy_converting(dst, tmp);
        kdx_tensor_release(tmp);
        kdx__bump(dst);
        return KDX_OK;
    }
    copy_converting(dst, src);
    kdx__bump(dst);
    return KDX_OK;
}

static kdx_status clone_fwd(const kdx_tensor *t, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("clone", "tensor", t));
    kdx_tensor *c;
    KDX_TRY(kdx__new_raw("clone", t->dtype, t->ndim, t->shape, &c));
    copy_converting(c, t);
    *out = c;
    return KDX_OK;
}

static kdx_status contiguous_fwd(const kdx_tensor *t, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("contiguous", "tensor", t));
    if (kdx_tensor_is_contiguous(t)) {
        *out = kdx_tensor_retain((kdx_tensor *)t);
        return KDX_OK;
    }
    return clone_fwd(t, out);
}

static kdx_status to_fwd(const kdx_tensor *t, kdx_dtype dt, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("to", "tensor", t));
    if ((unsigned)dt > KDX_DTYPE_I64) return kdx_fail(KDX_EDTYPE, "to: unknown dtype %d", (int)dt);
    if (t->dtype == dt) {
        *out = kdx_tensor_retain((kdx_tensor *)t);
        return KDX_OK;
    }
    kdx_tensor *c;
    KDX_TRY(kdx__new_raw("to", dt, t->ndim, t->shape, &c));
    copy_converting(c, t);
    *out = c;
    return KDX_OK;
}

/* ---- gradients of views and copies ----
 * A view's gradient is the output's gradient put back into the input's shape:
 * reshaped, transposed back, or zero-padded where the view cut. */

/* g reshaped to input i's shape: view, reshape, squeeze, unsqueeze. */
static kdx_status reshape_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    return kdx_reshape(g, n->next[0].ndim, n->next[0].shape, &gin[0]);
}

/* g as it is (expand: the engine sums broadcast dims; clone, to: identity). */
static kdx_status identity_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)n, (void)want;
    gin[0] = kdx_tensor_retain(g);
    return KDX_OK;
}

static kdx_status transpose_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    return kdx_transpose(g, (int)n->ip[0], (int)n->ip[1], &gin[0]);
}

static kdx_status permute_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    int inv[KDX_MAX_DIMS];
    for (int i = 0; i < g->ndim; i++) inv[n->ip[i]] = i;
    return kdx_permute(g, inv, g->ndim, &gin[0]);
}

/* narrow: zeros around g along dim ip[0], from ip[1] for ip[2] entries. */
static kdx_status narrow_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    const kdx_edge *e = &n->next[0];
    int d = (int)n->ip[0], np = 2 * (e->ndim - d);
    int64_t pads[2 * KDX_MAX_DIMS] = {0};
    pads[np - 2] = n->ip[1];
    pads[np - 1] = e->shape[d] - n->ip[1] - n->ip[2];
    return kdx_pad(g, pads, np, KDX_PAD_CONSTANT, 0, &gin[0]);
}

/* select: g with the dim put back (size 1), then padded as for narrow. */
static kdx_status select_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    kdx_tensor *u;
    KDX_TRY(kdx_unsqueeze(g, (int)n->ip[0], &u));
    kdx_status s = narrow_backward(n, u, want, gin);
    kdx_tensor_release(u);
    return s;
}

/* Records a view-like op of t (when needed); ip[0..] are its parameters. */
static kdx_status record1(const char *name, kdx_backward_fn bw, const kdx_tensor *t, kdx_status s, kdx_tensor **out,
                          const int64_t *ip, int nip)
{
    if (s != KDX_OK || !kdx__needs_node(1, &t)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record(name, bw, 1, &t, out, &n));
    for (int i = 0; i < nip; i++) n->ip[i] = ip[i];
    return KDX_OK;
}

kdx_status kdx_view(const kdx_tensor *t, int ndim, const int64_t *shape, kdx_tensor **out)
{
    return record1("view", reshape_backward, t, view_fwd(t, ndim, shape, out), out, NULL, 0);
}

kdx_status kdx_reshape(const kdx_tensor *t, int ndim, const int64_t *shape, kdx_tensor **out)
{
    return record1("reshape", reshape_backward, t, reshape_fwd(t, ndim, shape, out), out, NULL, 0);
}

kdx_status kdx_transpose(const kdx_tensor *t, int d0, int d1, kdx_tensor **out)
{
    kdx_status s = transpose_fwd(t, d0, d1, out);
    int64_t ip[2] = {d0, d1};
    return record1("transpose", transpose_backward, t, s, out, ip, 2);
}

kdx_status kdx_permute(const kdx_tensor *t, const int *dims, int ndim, kdx_tensor **out)
{
    kdx_status s = permute_fwd(t, dims, ndim, out);
    int64_t ip[KDX_MAX_DIMS];
    for (int i = 0; s == KDX_OK && i < ndim; i++) ip[i] = dims[i] < 0 ? dims[i] + ndim : dims[i];
    return record1("permute", permute_backward, t, s, out, ip, s == KDX_OK ? ndim : 0);
}

kdx_status kdx_narrow(const kdx_tensor *t, int dim, int64_t start, int64_t length, kdx_tensor **out)
{
    kdx_status s = narrow_fwd(t, dim, start, length, out);
    if (s != KDX_OK) return s;
    int d = dim < 0 ? dim + t->ndim : dim;
    int64_t ip[3] = {d, start < 0 ? start + t->shape[d] : start, length};
    return record1("narrow", narrow_backward, t, s, out, ip, 3);
}

kdx_status kdx_select(const kdx_tensor *t, int dim, int64_t index, kdx_tensor **out)
{
    kdx_status s = select_fwd(t, dim, index, out);
    if (s != KDX_OK) return s;
    int d = dim < 0 ? dim + t->ndim : dim;
    int64_t ip[3] = {d, index < 0 ? index + t->shape[d] : index, 1};
    return record1("select", select_backward, t, s, out, ip, 3);
}

kdx_status kdx_squeeze(const kdx_tensor *t, int dim, int all, kdx_tensor **out)
{
    return record1("squeeze", reshape_backward, t, squeeze_fwd(t, dim, all, out), out, NULL, 0);
}

kdx_status kdx_unsqueeze(const kdx_tensor *t, int dim, kdx_tensor **out)
{
    return record1("unsqueeze", reshape_backward, t, unsqueeze_fwd(t, dim, out), out, NULL, 0);
}

kdx_status kdx_expand(const kdx_tensor *t, int ndim, const int64_t *shape, kdx_tensor **out)
{
    return record1("expand", identity_backward, t, expand_fwd(t, ndim, shape, out), out, NULL, 0);
}

kdx_status kdx_clone(const kdx_tensor *t, kdx_tensor **out)
{
    return record1("clone", identity_backward, t, clone_fwd(t, out), out, NULL, 0);
}

kdx_status kdx_contiguous(const kdx_tensor *t, kdx_tensor **out)
{
    kdx_status s = contiguous_fwd(t, out);
    if (s == KDX_OK && *out == t) return s; /* the same tensor, same graph */
    return record1("contiguous", identity_backward, t, s, out, NULL, 0);
}

kdx_status kdx_to(const kdx_tensor *t, kdx_dtype dt, kdx_tensor **out)
{
    kdx_status s = to_fwd(t, dt, out);
    if (s == KDX_OK && *out == t) return s;
    if (s == KDX_OK && dt == KDX_DTYPE_I64) return s; /* int64 results take no gradient */
    return record1("to", identity_backward, t, s, out, NULL, 0);
}
