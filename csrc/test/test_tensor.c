/* test_tensor.c — the engine on its own, with no Lua: object model, views,
   broadcasting, reductions, matmul against a naive loop, errors as values,
   the generator, and the allocator hook. */
#include "kdx.h"
#include "ctest.h"

#include <stdlib.h>
#include <string.h>

static double at2(const kdx_tensor *t, int64_t i, int64_t j)
{
    int64_t idx[2] = {i, j};
    double v = NAN;
    kdx_tensor_get(t, idx, &v);
    return v;
}

static void test_views_share_storage(void)
{
    int64_t shape[2] = {2, 3};
    kdx_tensor *a, *t, *n, *r;
    CHECK_OK(kdx_arange(0, 6, 1, KDX_DTYPE_F32, &a));
    CHECK_OK(kdx_reshape(a, 2, shape, &r));
    CHECK(kdx_tensor_storage_id(r) == kdx_tensor_storage_id(a));
    CHECK_OK(kdx_transpose(r, 0, 1, &t));
    CHECK(kdx_tensor_shape(t)[0] == 3 && kdx_tensor_shape(t)[1] == 2);
    CHECK(!kdx_tensor_is_contiguous(t));
    CHECK_NEAR(at2(t, 2, 1), 5, 0);
    CHECK_OK(kdx_narrow(r, 1, 1, 2, &n));
    CHECK_NEAR(at2(n, 1, 0), 4, 0);
    /* A write through one view shows through the others. */
    int64_t idx[2] = {1, 0};
    CHECK_OK(kdx_tensor_set(n, idx, 42));
    CHECK_NEAR(at2(r, 1, 1), 42, 0);
    CHECK_NEAR(at2(t, 1, 1), 42, 0);
    /* A view of a non-contiguous tensor with incompatible strides fails; reshape copies. */
    kdx_tensor *flat, *v;
    int64_t six = 6;
    CHECK_FAILS(kdx_view(t, 1, &six, &v), KDX_ESHAPE);
    CHECK_OK(kdx_reshape(t, 1, &six, &flat));
    CHECK(kdx_tensor_storage_id(flat) != kdx_tensor_storage_id(a));
    int64_t i3 = 3;
    double x;
    CHECK_OK(kdx_tensor_get(flat, &i3, &x));
    CHECK_NEAR(x, 42, 0); /* t = [[0,3],[1,42],[2,5]] flattened: 0 3 1 42 2 5 */
    kdx_tensor_release(a);
    kdx_tensor_release(r);
    kdx_tensor_release(t);
    kdx_tensor_release(n);
    kdx_tensor_release(flat);
}

static void test_broadcasting(void)
{
    int64_t sa[3] = {2, 1, 3}, sb[2] = {4, 1};
    kdx_tensor *a, *b, *c;
    CHECK_OK(kdx_full(KDX_DTYPE_F64, 3, sa, 1.5, &a));
    CHECK_OK(kdx_arange(0, 4, 1, KDX_DTYPE_F64, &b));
    kdx_tensor *b2;
    CHECK_OK(kdx_reshape(b, 2, sb, &b2));
    CHECK_OK(kdx_binary(KDX_BIN_ADD, a, b2, &c));
    CHECK(kdx_tensor_ndim(c) == 3 && kdx_tensor_shape(c)[0] == 2 && kdx_tensor_shape(c)[1] == 4 &&
          kdx_tensor_shape(c)[2] == 3);
    int64_t idx[3] = {1, 3, 2};
    double v;
    CHECK_OK(kdx_tensor_get(c, idx, &v));
    CHECK_NEAR(v, 4.5, 0);
    kdx_tensor *bad;
    int64_t s5 = 5;
    kdx_tensor *f;
    CHECK_OK(kdx_zeros(KDX_DTYPE_F64, 1, &s5, &f));
    CHECK_FAILS(kdx_binary(KDX_BIN_ADD, a, f, &bad), KDX_ESHAPE);
    CHECK(strstr(kdx_last_error(), "add: shapes [2,1,3] and [5]") != NULL);
    /* int64 + float32 promotes to float32; int64 / int64 is float32. */
    kdx_tensor *i, *d;
    CHECK_OK(kdx_arange(1, 4, 1, KDX_DTYPE_I64, &i));
    CHECK_OK(kdx_binary(KDX_BIN_DIV, i, i, &d));
    CHECK(kdx_tensor_dtype(d) == KDX_DTYPE_F32);
    kdx_tensor_release(a);
    kdx_tensor_release(b);
    kdx_tensor_release(b2);
    kdx_tensor_release(c);
    kdx_tensor_release(f);
    kdx_tensor_release(i);
    kdx_tensor_release(d);
}

static void test_matmul_matches_naive(void)
{
    /* Transposed and batched views must give the same numbers as a naive loop. */
    int64_t sa[3] = {2, 5, 4}, sb[2] = {3, 4};
    kdx_tensor *a, *b, *bt, *c;
    CHECK_OK(kdx_randn(NULL, KDX_DTYPE_F64, 3, sa, &a));
    CHECK_OK(kdx_randn(NULL, KDX_DTYPE_F64, 2, sb, &b));
    CHECK_OK(kdx_transpose(b, 0, 1, &bt)); /* [4,3], a transposed view */
    CHECK_OK(kdx_matmul(a, bt, &c));
    CHECK(kdx_tensor_ndim(c) == 3 && kdx_tensor_shape(c)[2] == 3);
    double worst = 0;
    for (int64_t n = 0; n < 2; n++)
        for (int64_t i = 0; i < 5; i++)
            for (int64_t j = 0; j < 3; j++) {
                double want = 0, got;
                for (int64_t k = 0; k < 4; k++) {
                    int64_t ia[3] = {n, i, k};
                    double x;
                    kdx_tensor_get(a, ia, &x);
                    want += x * at2(b, j, k);
                }
                int64_t ic[3] = {n, i, j};
                kdx_tensor_get(c, ic, &got);
                if (fabs(got - want) > worst) worst = fabs(got - want);
            }
    CHECK(worst < 1e-12);
    kdx_tensor *bad;
    CHECK_FAILS(kdx_matmul(a, b, &bad), KDX_ESHAPE);
    CHECK(strstr(kdx_last_error(), "matmul: shapes [2,5,4] and [3,4] do not match") != NULL);
    kdx_tensor_release(a);
    kdx_tensor_release(b);
    kdx_tensor_release(bt);
    kdx_tensor_release(c);
}

static void test_reductions(void)
{
    int64_t s[2] = {2, 3};
    double data[6] = {1, 5, 2, 7, 0, 9};
    kdx_tensor *x, *sum, *vals, *idx, *var;
    CHECK_OK(kdx_from_data(KDX_DTYPE_F64, 2, s, data, &x));
    int dim1 = 1;
    CHECK_OK(kdx_reduce(KDX_RED_SUM, x, &dim1, 1, 1, &sum));
    CHECK(kdx_tensor_ndim(sum) == 2 && kdx_tensor_shape(sum)[1] == 1);
    CHECK_NEAR(at2(sum, 1, 0), 16, 0);
    CHECK_OK(kdx_max(x, 1, 0, &vals, &idx));
    int64_t i1 = 1, k;
    CHECK_OK(kdx_tensor_get_i64(idx, &i1, &k));
    CHECK(k == 2);
    CHECK_OK(kdx_var(x, NULL, 0, 1, 0, &var));
    double v;
    CHECK_OK(kdx_tensor_item(var, &v));
    CHECK_NEAR(v, 12.8, 1e-12); /* mean 4, squared deviations 9+1+4+9+16+25 = 64, /5 */
    int bad_dim = 2;
    kdx_tensor *bad;
    CHECK_FAILS(kdx_reduce(KDX_RED_SUM, x, &bad_dim, 1, 0, &bad), KDX_EINDEX);
    kdx_tensor_release(x);
    kdx_tensor_release(sum);
    kdx_tensor_release(vals);
    kdx_tensor_release(idx);
    kdx_tensor_release(var);
}

static void test_generator_is_deterministic(void)
{
    kdx_generator *g1, *g2;
    CHECK_OK(kdx_generator_new(7, &g1));
    CHECK_OK(kdx_generator_new(7, &g2));
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= kdx_generator_next(g1) == kdx_generator_next(g2);
    CHECK(same);
    uint64_t st[6];
    kdx_generator_get_state(g1, st);
    double n1 = kdx_generator_normal(g1);
    kdx_generator_set_state(g1, st);
    CHECK(kdx_generator_normal(g1) == n1);
    /* Sample moments of normals are right to a few standard errors. */
    double sum = 0, sq = 0;
    for (int i = 0; i < 100000; i++) {
        double z = kdx_generator_normal(g2);
        sum += z;
        sq += z * z;
    }
    CHECK_NEAR(sum / 100000, 0, 0.02);
    CHECK_NEAR(sq / 100000, 1, 0.02);
    kdx_generator_free(g1);
    kdx_generator_free(g2);
}

static size_t live_bytes, calls;
static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    calls++;
    if (nsize == 0) {
        live_bytes -= osize;
        free(ptr);
        return NULL;
    }
    live_bytes += nsize - (ptr ? osize : 0);
    return realloc(ptr, nsize);
}

static void test_allocator_hook_sees_everything(void)
{
    kdx_set_allocator(counting_alloc, NULL);
    int64_t s[2] = {16, 16};
    kdx_tensor *a, *b, *c;
    CHECK_OK(kdx_ones(KDX_DTYPE_F32, 2, s, &a));
    CHECK_OK(kdx_transpose(a, 0, 1, &b));
    CHECK_OK(kdx_matmul(a, b, &c));
    CHECK(calls > 0 && live_bytes >= 16 * 16 * 4 * 2);
    kdx_tensor_release(a);
    kdx_tensor_release(b);
    kdx_tensor_release(c);
    CHECK(live_bytes == 0);
    kdx_set_allocator(NULL, NULL);
}

static void test_errors_leave_outputs_alone(void)
{
    kdx_tensor *out = (kdx_tensor *)&out; /* a sentinel that must survive */
    int64_t bad[1] = {-2};
    CHECK_FAILS(kdx_zeros(KDX_DTYPE_F32, 1, bad, &out), KDX_ESHAPE);
    CHECK(out == (kdx_tensor *)&out);
    int64_t huge[2] = {INT64_C(1) << 40, INT64_C(1) << 40};
    CHECK_FAILS(kdx_zeros(KDX_DTYPE_F32, 2, huge, &out), KDX_ESHAPE);
    int64_t big[1] = {INT64_C(1) << 50}; /* 4 PiB: fails cleanly as out of memory */
    CHECK_FAILS(kdx_zeros(KDX_DTYPE_F32, 1, big, &out), KDX_ENOMEM);
    CHECK(out == (kdx_tensor *)&out);
    CHECK(strlen(kdx_last_error()) > 0);
}

/* A message that wraps the previous one: kdx_fail reads kdx_last_error()
   while it writes the new message (the ops do that to prefix their name),
   which once overlapped source and destination in vsnprintf. */
static void test_fail_wraps_last_error(void)
{
    kdx_fail(KDX_EINVAL, "inner: %s", "boom");
    kdx_fail(KDX_EINVAL, "outer: %s", kdx_last_error());
    CHECK(strcmp(kdx_last_error(), "outer: inner: boom") == 0);
    kdx_fail(KDX_EINVAL, "%s | %s", kdx_last_error(), kdx_last_error());
    CHECK(strcmp(kdx_last_error(), "outer: inner: boom | outer: inner: boom") == 0);
}

/* Freed large blocks wait in the cache and are reused: making and releasing
   the same tensor many times keeps the cache at one block, instead of its
   count of held bytes growing until it refuses everything (which sent every
   training step back to the kernel for fresh pages). */
static void test_block_cache_reuses(void)
{
    kdx_cache_clear();
    int64_t shape[1] = {1 << 18}; /* 1 MiB of float32 */
    size_t first = 0;
    int made = 0, taken = 0, steady = 0;
    for (int i = 0; i < 1000; i++) {
        kdx_tensor *t;
        if (kdx_empty(KDX_DTYPE_F32, 1, shape, &t) != KDX_OK) continue;
        made++;
        taken += kdx_cache_bytes() == 0; /* the one cached block was taken */
        kdx_tensor_release(t);
        if (i == 0) first = kdx_cache_bytes();
        steady += kdx_cache_bytes() == first;
    }
    CHECK(made == 1000);
    CHECK(taken == 1000);
    CHECK(steady == 1000);
    CHECK(first >= ((size_t)1 << 20));
    kdx_cache_clear();
    CHECK(kdx_cache_bytes() == 0);
}

/* kdx_set_cache_min(0), the inference-only mode: after the first round, making
   and releasing the same small tensors calls the host's allocator no more,
   and kdx_cache_clear hands every kept block back to it. */
static void test_cache_min_keeps_small_blocks(void)
{
    kdx_set_allocator(counting_alloc, NULL);
    kdx_set_cache_min(0);
    int64_t s[2] = {4, 8};
    size_t after_first = 0;
    for (int i = 0; i < 100; i++) {
        kdx_tensor *a = NULL, *b = NULL;
        CHECK_OK(kdx_ones(KDX_DTYPE_F32, 2, s, &a));
        CHECK_OK(kdx_binary_scalar(KDX_BIN_MUL, a, 2.0, 0, &b));
        kdx_tensor_release(a);
        kdx_tensor_release(b);
        if (i == 0) after_first = calls;
    }
    CHECK(after_first > 0 && calls == after_first);
    CHECK(kdx_cache_bytes() > 0 && live_bytes > 0); /* kept, still the host's */
    kdx_cache_clear();
    CHECK(live_bytes == 0 && kdx_cache_bytes() == 0);
    kdx_set_cache_min((size_t)64 << 10);
    kdx_set_allocator(NULL, NULL);
}

/* ---- kdx_backward_hooked: each leaf reported once, when its gradient is final ---- */

typedef struct hook_log {
    kdx_tensor *leaves[3];
    int calls[3], started, reached[3];
    double at_call[3]; /* the gradient's first element when the hook ran */
} hook_log;

static void hook_ready(void *ud, kdx_tensor *leaf)
{
    hook_log *h = ud;
    if (!leaf) {
        h->started++;
        for (int i = 0; i < 3; i++) h->reached[i] = kdx_backward_reaches(h->leaves[i]);
        return;
    }
    for (int i = 0; i < 3; i++)
        if (h->leaves[i] == leaf) {
            int64_t idx[1] = {0};
            h->calls[i]++;
            kdx_tensor_get(kdx_tensor_grad(leaf), idx, &h->at_call[i]);
        }
}

static void test_backward_hook_reports_final_gradients(void)
{
    /* loss = sum(w * w * x) + sum(b * x); u is not used */
    int64_t s[1] = {4};
    kdx_tensor *w = NULL, *b = NULL, *u = NULL, *x = NULL, *ww = NULL, *wwx = NULL, *bx = NULL, *t = NULL, *loss = NULL;
    CHECK_OK(kdx_full(KDX_DTYPE_F64, 1, s, 3.0, &w));
    CHECK_OK(kdx_full(KDX_DTYPE_F64, 1, s, 5.0, &b));
    CHECK_OK(kdx_full(KDX_DTYPE_F64, 1, s, 1.0, &u));
    CHECK_OK(kdx_full(KDX_DTYPE_F64, 1, s, 2.0, &x));
    CHECK_OK(kdx_tensor_set_requires_grad(w, 1));
    CHECK_OK(kdx_tensor_set_requires_grad(b, 1));
    CHECK_OK(kdx_tensor_set_requires_grad(u, 1));
    CHECK_OK(kdx_binary(KDX_BIN_MUL, w, w, &ww)); /* w reaches the graph twice */
    CHECK_OK(kdx_binary(KDX_BIN_MUL, ww, x, &wwx));
    CHECK_OK(kdx_binary(KDX_BIN_MUL, b, x, &bx));
    CHECK_OK(kdx_binary(KDX_BIN_ADD, wwx, bx, &t));
    CHECK_OK(kdx_reduce(KDX_RED_SUM, t, NULL, 0, 0, &loss));
    hook_log h = {{w, b, u}, {0}, 0, {0}, {0}};
    CHECK(!kdx_backward_reaches(w)); /* outside a hooked pass */
    CHECK_OK(kdx_backward_hooked(loss, NULL, 0, hook_ready, &h));
    CHECK(h.started == 1);
    CHECK(h.reached[0] && h.reached[1] && !h.reached[2]);
    CHECK(h.calls[0] == 1 && h.calls[1] == 1 && h.calls[2] == 0);
    CHECK(h.at_call[0] == 2 * 3.0 * 2.0); /* d/dw = 2 w x: both contributions were in */
    CHECK(h.at_call[1] == 2.0);
    CHECK(kdx_tensor_grad(u) == NULL);
    CHECK(!kdx_backward_reaches(w));
    CHECK(kdx_backward_hooked(loss, NULL, 0, NULL, NULL) == KDX_EINVAL);
    kdx_tensor *all[] = {w, b, u, x, ww, wwx, bx, t, loss};
    for (int i = 0; i < 9; i++) kdx_tensor_release(all[i]);
}

int main(void)
{
    int64_t before = kdx_debug_live_tensors();
    test_views_share_storage();
    test_broadcasting();
    test_matmul_matches_naive();
    test_reductions();
    test_generator_is_deterministic();
    test_allocator_hook_sees_everything();
    test_errors_leave_outputs_alone();
    test_fail_wraps_last_error();
    test_block_cache_reuses();
    test_cache_min_keeps_small_blocks();
    test_backward_hook_reports_final_gradients();
    CHECK(kdx_debug_live_tensors() == before); /* every test released what it made */
    return CT_REPORT("test_tensor");
}
