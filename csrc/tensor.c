/* tensor.c — the object model: refcounted storage, tensors as views of it,
   inspection, element access, and creation. Views live in view.c. */
#include "kdx_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static atomic_long live_tensors, live_bytes, total_bytes;

int64_t kdx_debug_live_tensors(void) { return (int64_t)atomic_load(&live_tensors); }

int64_t kdx_debug_live_bytes(void) { return (int64_t)atomic_load(&live_bytes); }

int64_t kdx_debug_bytes_allocated(void) { return (int64_t)atomic_load(&total_bytes); }

/* ---- storage and lifetime ----
 * A new tensor's header, its storage record and its data share one block
 * (one allocation per op instead of three). Views may outlive that tensor, so
 * the block is freed with the storage's last reference; a view's own header
 * is a separate small allocation. */

#define ROUND16(n) (((n) + 15) & ~(size_t)15)

static void storage_release(kdx_storage *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        atomic_fetch_sub(&live_bytes, (long)s->block_bytes);
        kdx__free(s->block, s->block_bytes);
    }
}

kdx_tensor *kdx_tensor_retain(kdx_tensor *t)
{
    if (t) atomic_fetch_add(&t->refs, 1);
    return t;
}

void kdx_tensor_release(kdx_tensor *t)
{
    if (t && atomic_fetch_sub(&t->refs, 1) == 1) {
        kdx_storage *s = t->storage;
        atomic_fetch_sub(&live_tensors, 1);
        kdx_tensor_release(t->grad);
        kdx__node_release(t->grad_fn);
        if (!t->in_block) kdx__free(t, sizeof *t);
        storage_release(s); /* last: it may free the block that holds t */
    }
}

static void header_init(kdx_tensor *t, kdx_dtype dt, int ndim, const int64_t *shape)
{
    atomic_init(&t->refs, 1);
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    atomic_fetch_add(&live_tensors, 1);
}



/* ---- shapes ---- */

int64_t kdx__numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

void kdx__contig_strides(int ndim, const int64_t *shape, int64_t *stride)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

kdx_status kdx__check_shape(const char *fname, int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > KDX_MAX_DIMS)
        return kdx_fail(KDX_ESHAPE, "%s: %d dims requested, at most %d are supported", fname, ndim, KDX_MAX_DIMS);
    if (ndim > 0 && !shape) return kdx_fail(KDX_EINVAL, "%s: shape is NULL", fname);
    /* Zero-size dims count as 1 here: strides are computed that way, so a
       shape like {0, 2^32, 2^32} must be refused even though it holds nothing. */
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return kdx_fail(KDX_ESHAPE, "%s: size %lld is negative", fname, (long long)shape[i]);
        if (shape[i] > 0 && n > (INT64_MAX / 8) / shape[i])
            return kdx_fail(KDX_ESHAPE, "%s: shape is too large", fname);
        if (shape[i] > 0) n *= shape[i];
    }
    return KDX_OK;
}

kdx_status kdx__dim(const char *fname, int ndim, int d, int *out)
{
    int n = ndim > 0 ? ndim : 1; /* a 0-d tensor accepts dim 0 / -1, as PyTorch */
    if (d < -n || d >= n)
        return kdx_fail(KDX_EINDEX, "%s: dim %d out of range for a %d-d tensor", fname, d, ndim);
    *out = d < 0 ? d + n : d;
    return KDX_OK;
}

kdx_status kdx__arg(const char *fname, const char *argname, const kdx_tensor *t)
{
    if (!t) return kdx_fail(KDX_EINVAL, "%s: %s is NULL", fname, argname);
    return KDX_OK;
}

kdx_status kdx__check_writable(const char *fname, const kdx_tensor *t)
{
    for (int i = 0; i < t->ndim; i++)
        if (t->stride[i] == 0 && t->shape[i] > 1)
            return kdx_fail(KDX_EINVAL, "%s: the tensor is an expanded view whose elements share memory; "
                                        "write to a clone (or the tensor it was expanded from)", fname);
    return KDX_OK;
}

kdx_status kdx__check_float(const char *fname, const char *arg, const kdx_tensor *t)
{
    KDX_TRY(kdx__arg(fname, arg, t));
    if (t->dtype != KDX_DTYPE_F32 && t->dtype != KDX_DTYPE_F64)
        return kdx_fail(KDX_EDTYPE, "%s: %s must be float32 or float64, got %s", fname, arg, kdx_dtype_name(t->dtype));
    return KDX_OK;
}

kdx_status kdx__check_pair(const char *fname, const char *name, const int64_t v[2], int64_t lo)
{
    for (int i = 0; i < 2; i++)
        if (v[i] < lo || v[i] > KDX_OPT_MAX)
            return kdx_fail(KDX_EINVAL, "%s: %s must be %s, got (%lld,%lld)", fname, name, lo > 0 ? ">= 1" : ">= 0",
                            (long long)v[0], (long long)v[1]);
    return KDX_OK;
}

kdx_status kdx__check_planes(const char *fname, const kdx_tensor *x)
{
    KDX_TRY(kdx__check_float(fname, "x", x));
    if (x->ndim != 3 && x->ndim != 4)
        return kdx_fail(KDX_ESHAPE, "%s: x must be 3-D [C,H,W] or 4-D [N,C,H,W], got %s", fname, kdx__shp(x));
    for (int i = x->ndim - 3; i < x->ndim; i++)
        if (x->shape[i] < 1)
            return kdx_fail(KDX_ESHAPE, "%s: x %s has an empty channel or spatial dim", fname, kdx__shp(x));
    return KDX_OK;
}

bool kdx__same_shape(const kdx_tensor *a, const kdx_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

char *kdx_shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t used = 0;
    if (n == 0) return buf;
    buf[0] = 0;
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

const char *kdx__shp(const kdx_tensor *t)
{
    /* Several shapes may appear in one message, so rotate through buffers. */
    static _Thread_local char bufs[4][96];
    static _Thread_local int next;
    char *b = bufs[next++ & 3];
    if (!t) return "(null)";
    return kdx_shape_str(t->ndim, t->shape, b, sizeof bufs[0]);
}

/* ---- construction ---- */

static kdx_status tensor_new(const char *fname, kdx_dtype dt, int ndim, const int64_t *shape, bool zero,
                             kdx_tensor **out)
{
    KDX_TRY(kdx__check_shape(fname, ndim, shape));
    if ((unsigned)dt > KDX_DTYPE_I64) return kdx_fail(KDX_EDTYPE, "%s: unknown dtype %d", fname, (int)dt);
    size_t nbytes = (size_t)kdx__numel(ndim, shape) * kdx_dtype_size(dt);
    size_t head = ROUND16(sizeof(kdx_tensor)) + ROUND16(sizeof(kdx_storage));
    char *block = zero ? kdx__malloc(head + nbytes) : kdx__malloc_raw(head + nbytes);
    if (!block) {
        char b[96];
        return kdx_fail(KDX_ENOMEM, "%s: out of memory allocating %s", fname, kdx_shape_str(ndim, shape, b, sizeof b));
    }
    if (!zero) memset(block, 0, head); /* the headers are always zeroed */
    kdx_tensor *t = (kdx_tensor *)block;
    kdx_storage *s = (kdx_storage *)(block + ROUND16(sizeof(kdx_tensor)));
    atomic_init(&s->refs, 1);
    s->data = block + head;
    s->nbytes = nbytes;
    s->block = block;
    s->block_bytes = head + nbytes;
    atomic_fetch_add(&live_bytes, (long)s->block_bytes);
    atomic_fetch_add(&total_bytes, (long)s->block_bytes);
    header_init(t, dt, ndim, shape);
    t->in_block = true;
    t->storage = s;
    kdx__contig_strides(ndim, shape, t->stride);
    *out = t;
    return KDX_OK;
}

kdx_status kdx__new(const char *fname, kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out)
{
    return tensor_new(fname, dt, ndim, shape, true, out);
}

kdx_status kdx__new_raw(const char *fname, kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out)
{
    return tensor_new(fname, dt, ndim, shape, false, out);
}

kdx_status kdx__view_of(const kdx_tensor *t, int ndim, const int64_t *shape, const int64_t *stride,
                        int64_t offset, kdx_tensor **out)
{
    kdx_tensor *v = kdx__malloc(sizeof *v);
    if (!v) return kdx_fail(KDX_ENOMEM, "view: out of memory");
    header_init(v, t->dtype, ndim, shape);
    if (ndim) memcpy(v->stride, stride, (size_t)ndim * sizeof *stride);
    v->offset = offset;
    v->storage = t->storage;
    atomic_fetch_add(&t->storage->refs, 1);
    *out = v;
    return KDX_OK;
}

/* ---- inspection ---- */

kdx_dtype kdx_tensor_dtype(const kdx_tensor *t) { return t->dtype; }
int kdx_tensor_ndim(const kdx_tensor *t) { return t->ndim; }
const int64_t *kdx_tensor_shape(const kdx_tensor *t) { return t->shape; }
const int64_t *kdx_tensor_strides(const kdx_tensor *t) { return t->stride; }
int64_t kdx_tensor_numel(const kdx_tensor *t) { return kdx__numel(t->ndim, t->shape); }
void *kdx_tensor_data(const kdx_tensor *t) { return kdx__base(t); }
const void *kdx_tensor_storage_id(const kdx_tensor *t) { return t->storage; }

int64_t kdx_tensor_size(const kdx_tensor *t, int d)
{
    if (d < 0) d += t->ndim;
    return d >= 0 && d < t->ndim ? t->shape[d] : -1;
}

int kdx_tensor_is_contiguous(const kdx_tensor *t)
{
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) return 1; /* no elements: any strides describe them */
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

/* ---- element access ---- */

static kdx_status element(const char *fname, const kdx_tensor *t, const int64_t *idx, char **p)
{
    int64_t off = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (idx[i] < 0 || idx[i] >= t->shape[i])
            return kdx_fail(KDX_EINDEX, "%s: index %lld out of range for dim %d of size %lld", fname,
                            (long long)idx[i], i, (long long)t->shape[i]);
        off += idx[i] * t->stride[i];
    }
    *p = kdx__base(t) + off * (int64_t)kdx_dtype_size(t->dtype);
    return KDX_OK;
}

static double load(kdx_dtype dt, const char *p)
{
    switch (dt) {
    case KDX_DTYPE_F32: return *(const float *)p;
    case KDX_DTYPE_F64: return *(const double *)p;
    case KDX_DTYPE_I64: return (double)*(const int64_t *)p;
    }
    return 0;
}

static void store(kdx_dtype dt, char *p, double v)
{
    switch (dt) {
    case KDX_DTYPE_F32: *(float *)p = (float)v; break;
    case KDX_DTYPE_F64: *(double *)p = v; break;
    case KDX_DTYPE_I64: *(int64_t *)p = kdx__f2i(v); break;
    }
}

kdx_status kdx_tensor_get(const kdx_tensor *t, const int64_t *idx, double *v)
{
    char *p = NULL;
    KDX_TRY(element("get", t, idx, &p));
    *v = load(t->dtype, p);
    return KDX_OK;
}

kdx_status kdx_tensor_get_i64(const kdx_tensor *t, const int64_t *idx, int64_t *v)
{
    char *p = NULL;
    KDX_TRY(element("get", t, idx, &p));
    *v = t->dtype == KDX_DTYPE_I64 ? *(const int64_t *)p : kdx__f2i(load(t->dtype, p));
    return KDX_OK;
}

kdx_status kdx_tensor_set(kdx_tensor *t, const int64_t *idx, double v)
{
    char *p = NULL;
    KDX_TRY(kdx__check_inplace("set", t));
    KDX_TRY(element("set", t, idx, &p));
    kdx__bump(t);
    if (t->dtype == KDX_DTYPE_I64 && !(fabs(v) < 9.3e18))
        return kdx_fail(KDX_EINVAL, "set: value %g does not fit in int64", v);
    store(t->dtype, p, v);
    return KDX_OK;
}

kdx_status kdx_tensor_set_i64(kdx_tensor *t, const int64_t *idx, int64_t v)
{
    char *p = NULL;
    KDX_TRY(kdx__check_inplace("set", t));
    KDX_TRY(element("set", t, idx, &p));
    kdx__bump(t);
    if (t->dtype == KDX_DTYPE_I64) *(int64_t *)p = v;
    else store(t->dtype, p, (double)v);
    return KDX_OK;
}

kdx_status kdx_tensor_item(const kdx_tensor *t, double *v)
{
    if (kdx_tensor_numel(t) != 1)
        return kdx_fail(KDX_ESHAPE, "item: tensor of shape %s has %lld elements, not one", kdx__shp(t),
                        (long long)kdx_tensor_numel(t));
    *v = load(t->dtype, kdx__base(t));
    return KDX_OK;
}

/* ---- creation ---- */

kdx_status kdx_empty(kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out)
{
    return kdx__new("empty", dt, ndim, shape, out);
}

kdx_status kdx_from_data(kdx_dtype dt, int ndim, const int64_t *shape, const void *data, kdx_tensor **out)
{
    kdx_tensor *t;
    KDX_TRY(kdx__new("from_data", dt, ndim, shape, &t));
    size_t n = (size_t)kdx_tensor_numel(t) * kdx_dtype_size(dt);
    if (n && !data) {
        kdx_tensor_release(t);
        return kdx_fail(KDX_EINVAL, "from_data: data is NULL");
    }
    if (n) memcpy(kdx__base(t), data, n);
    *out = t;
    return KDX_OK;
}

static void fill(kdx_tensor *t, double v)
{
    int64_t n = kdx_tensor_numel(t);
    char *p = kdx__base(t);
    switch (t->dtype) {
    case KDX_DTYPE_F32: for (int64_t i = 0; i < n; i++) ((float *)p)[i] = (float)v; break;
    case KDX_DTYPE_F64: for (int64_t i = 0; i < n; i++) ((double *)p)[i] = v; break;
    case KDX_DTYPE_I64: for (int64_t i = 0; i < n; i++) ((int64_t *)p)[i] = kdx__f2i(v); break;
    }
}

kdx_status kdx_full(kdx_dtype dt, int ndim, const int64_t *shape, double value, kdx_tensor **out)
{
    kdx_tensor *t;
    KDX_TRY(kdx__new("full", dt, ndim, shape, &t));
    if (value != 0) fill(t, value);
    *out = t;
    return KDX_OK;
}

kdx_status kdx_zeros(kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out)
{
    return kdx__new("zeros", dt, ndim, shape, out);
}

kdx_status kdx_ones(kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out)
{
    return kdx_full(dt, ndim, shape, 1.0, out);
}

kdx_status kdx_scalar(kdx_dtype dt, double v, kdx_tensor **out) { return kdx_full(dt, 0, NULL, v, out); }

kdx_status kdx_arange(double start, double end, double step, kdx_dtype dt, kdx_tensor **out)
{
    if (!isfinite(start) || !isfinite(end) || !isfinite(step))
        return kdx_fail(KDX_EINVAL, "arange: start, end and step must be finite");
    if (step == 0) return kdx_fail(KDX_EINVAL, "arange: step must be nonzero");
    if ((end - start) / step < 0)
        return kdx_fail(KDX_EINVAL, "arange: step %g goes away from end (start %g, end %g)", step, start, end);
    double count = ceil((end - start) / step);
    if (count > 1e12) return kdx_fail(KDX_ESHAPE, "arange: %g elements is too many", count);
    int64_t n = (int64_t)count;
    kdx_tensor *t;
    KDX_TRY(kdx__new("arange", dt, 1, &n, &t));
    for (int64_t i = 0; i < n; i++) store(dt, kdx__base(t) + i * (int64_t)kdx_dtype_size(dt), start + (double)i * step);
    *out = t;
    return KDX_OK;
}

kdx_status kdx_linspace(double start, double end, int64_t n, kdx_dtype dt, kdx_tensor **out)
{
    if (n < 0) return kdx_fail(KDX_EINVAL, "linspace: steps must be non-negative, got %lld", (long long)n);
    kdx_tensor *t;
    KDX_TRY(kdx__new("linspace", dt, 1, &n, &t));
    double step = n > 1 ? (end - start) / (double)(n - 1) : 0;
    /* Fill symmetric halves from each end, as PyTorch does, so the last value is exactly end. */
    for (int64_t i = 0; i < n; i++) {
        double v = n == 1 ? start : i < n / 2 ? start + step * (double)i : end - step * (double)(n - 1 - i);
        store(dt, kdx__base(t) + i * (int64_t)kdx_dtype_size(dt), v);
    }
    *out = t;
    return KDX_OK;
}

kdx_status kdx_eye(int64_t n, int64_t m, kdx_dtype dt, kdx_tensor **out)
{
    int64_t shape[2] = {n, m};
    kdx_tensor *t;
    KDX_TRY(kdx__new("eye", dt, 2, shape, &t));
    for (int64_t i = 0; i < n && i < m; i++) store(dt, kdx__base(t) + (i * m + i) * (int64_t)kdx_dtype_size(dt), 1);
    *out = t;
    return KDX_OK;
}

static kdx_status need_float(const char *fname, kdx_dtype dt)
{
    if (dt == KDX_DTYPE_I64)
        return kdx_fail(KDX_EDTYPE, "%s: needs a float dtype (float32 or float64), got int64", fname);
    return KDX_OK;
}

/* Fills t (any layout) from a generator, element by element in row-major
   order so that the numbers do not depend on strides. */
static void fill_random(kdx_tensor *t, kdx_generator *g, int normal, double a, double b)
{
    kdx_iter it;
    char *p[1];
    int64_t n, st[1];
    const kdx_tensor *ts[1] = {t};
    kdx__iter_init(&it, 1, ts, t->ndim, t->shape);
    while (kdx__iter_next(&it, p, &n, st))
        for (int64_t i = 0; i < n; i++) {
            double u = normal ? a + b * kdx_generator_normal(g) : a + (b - a) * kdx_generator_uniform(g);
            store(t->dtype, p[0] + i * st[0], u);
        }
}

kdx_status kdx_uniform_(kdx_tensor *t, kdx_generator *g, double lo, double hi)
{
    KDX_TRY(kdx__arg("uniform_", "tensor", t));
    KDX_TRY(kdx__check_writable("uniform_", t));
    KDX_TRY(need_float("uniform_", t->dtype));
    if (!(lo <= hi)) return kdx_fail(KDX_EINVAL, "uniform_: low (%g) must not exceed high (%g)", lo, hi);
    fill_random(t, g ? g : kdx_default_generator(), 0, lo, hi);
    return KDX_OK;
}

kdx_status kdx_normal_(kdx_tensor *t, kdx_generator *g, double mean, double std)
{
    KDX_TRY(kdx__arg("normal_", "tensor", t));
    KDX_TRY(kdx__check_writable("normal_", t));
    KDX_TRY(need_float("normal_", t->dtype));
    if (!(std >= 0)) return kdx_fail(KDX_EINVAL, "normal_: std must be >= 0, got %g", std);
    fill_random(t, g ? g : kdx_default_generator(), 1, mean, std);
    return KDX_OK;
}

kdx_status kdx_rand(kdx_generator *g, kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out)
{
    KDX_TRY(need_float("rand", dt));
    kdx_tensor *t;
    KDX_TRY(kdx__new("rand", dt, ndim, shape, &t));
    fill_random(t, g ? g : kdx_default_generator(), 0, 0, 1);
    *out = t;
    return KDX_OK;
}

kdx_status kdx_randn(kdx_generator *g, kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out)
{
    KDX_TRY(need_float("randn", dt));
    kdx_tensor *t;
    KDX_TRY(kdx__new("randn", dt, ndim, shape, &t));
    fill_random(t, g ? g : kdx_default_generator(), 1, 0, 1);
    *out = t;
    return KDX_OK;
}

kdx_status kdx_randint(kdx_generator *g, int64_t low, int64_t high, kdx_dtype dt, int ndim, const int64_t *shape,
                       kdx_tensor **out)
{
    if (high <= low)
        return kdx_fail(KDX_EINVAL, "randint: high (%lld) must be greater than low (%lld)", (long long)high,
                        (long long)low);
    kdx_tensor *t;
    KDX_TRY(kdx__new("randint", dt, ndim, shape, &t));
    if (!g) g = kdx_default_generator();
    uint64_t range = (uint64_t)high - (uint64_t)low;
    int64_t n = kdx_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = (int64_t)((uint64_t)low + kdx_generator_below(g, range));
        if (dt == KDX_DTYPE_I64) ((int64_t *)kdx__base(t))[i] = v;
        else store(dt, kdx__base(t) + i * (int64_t)kdx_dtype_size(dt), (double)v);
    }
    *out = t;
    return KDX_OK;
}

kdx_status kdx_randperm(kdx_generator *g, int64_t n, kdx_tensor **out)
{
    if (n < 0) return kdx_fail(KDX_EINVAL, "randperm: n must be non-negative, got %lld", (long long)n);
    kdx_tensor *t;
    KDX_TRY(kdx__new("randperm", KDX_DTYPE_I64, 1, &n, &t));
    if (!g) g = kdx_default_generator();
    int64_t *p = (int64_t *)kdx__base(t);
    for (int64_t i = 0; i < n; i++) p[i] = i;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher–Yates */
        int64_t j = (int64_t)kdx_generator_below(g, (uint64_t)i + 1);
        int64_t tmp = p[i];
        p[i] = p[j];
        p[j] = tmp;
    }
    *out = t;
    return KDX_OK;
}
