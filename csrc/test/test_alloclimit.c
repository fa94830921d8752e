/* test_alloclimit.c — running out of memory is a status, not a crash.
   An allocator hook (kdx_set_allocator) refuses any allocation beyond a
   limit of live bytes, or exactly the n-th allocation. Sizes whose product
   overflows, allocations over the limit, and every single failed allocation
   of an op chain, a backward pass and several explanation methods must give
   KDX_ENOMEM (or KDX_ESHAPE for the overflow) with a message, leave the
   [out] arguments alone, and leak nothing: after the results are released
   and the block cache emptied, the live bytes and live tensors are back
   where they were. */
#include "ctest.h"
#include "kdx.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static atomic_llong live;        /* bytes handed out and not freed */
static atomic_llong nallocs;     /* allocations (new blocks and growing reallocs) so far */
static long long limit = -1;     /* refuse when live would exceed it (-1: no limit) */
static long long fail_at = -1;   /* refuse allocation number fail_at (1-based; -1: none) */
static atomic_int refused;

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        if (ptr) atomic_fetch_sub(&live, (long long)osize);
        free(ptr);
        return NULL;
    }
    size_t old = ptr ? osize : 0;
    if (nsize > old) {
        long long n = atomic_fetch_add(&nallocs, 1) + 1;
        if (n == fail_at || (limit >= 0 && atomic_load(&live) + (long long)(nsize - old) > limit)) {
            atomic_fetch_add(&refused, 1);
            return NULL; /* lua_Alloc contract: the old block stays valid */
        }
    }
    void *p = realloc(ptr, nsize);
    if (p) atomic_fetch_add(&live, (long long)nsize - (long long)old);
    return p;
}

/* Live bytes once nothing is held: the cache hands its blocks back first. */
static long long settled(void)
{
    kdx_cache_clear();
    return atomic_load(&live);
}

/* ---- sizes whose product overflows, sizes over the limit ---- */

static void test_overflow_and_limit(void)
{
    kdx_tensor *out = (kdx_tensor *)&out; /* a sentinel that must survive */
    int64_t over[3] = {INT64_C(1) << 32, INT64_C(1) << 32, 4};
    CHECK_FAILS(kdx_zeros(KDX_DTYPE_F32, 3, over, &out), KDX_ESHAPE);
    int64_t over_bytes[1] = {INT64_MAX / 2}; /* the count fits, count * 8 bytes does not */
    CHECK_FAILS(kdx_empty(KDX_DTYPE_F64, 1, over_bytes, &out), KDX_ESHAPE);
    CHECK(out == (kdx_tensor *)&out);

    long long before = settled();
    int64_t before_t = kdx_debug_live_tensors();
    limit = before + (64 << 10); /* 64 KiB more than what lives now */
    int64_t big[2] = {512, 512}; /* 1 MiB of float32 */
    CHECK_FAILS(kdx_zeros(KDX_DTYPE_F32, 2, big, &out), KDX_ENOMEM);
    CHECK(out == (kdx_tensor *)&out);
    CHECK(strlen(kdx_last_error()) > 0);

    /* inputs that fit, an output that does not */
    int64_t s[2] = {64, 64}, w[2] = {64, 256};
    kdx_tensor *a = NULL, *b = NULL;
    limit = -1;
    CHECK_OK(kdx_ones(KDX_DTYPE_F32, 2, s, &a));
    CHECK_OK(kdx_ones(KDX_DTYPE_F32, 2, w, &b));
    limit = atomic_load(&live) + 1024; /* less than any of the results below */
    CHECK_FAILS(kdx_matmul(a, b, &out), KDX_ENOMEM); /* [64, 256]: 64 KiB more */
    CHECK_FAILS(kdx_unary(KDX_UN_EXP, b, 0, 0, &out), KDX_ENOMEM);
    CHECK_FAILS(kdx_softmax(b, 1, &out), KDX_ENOMEM);
    CHECK(out == (kdx_tensor *)&out);
    limit = -1;
    kdx_tensor_release(a);
    kdx_tensor_release(b);
    CHECK(settled() == before);
    CHECK(kdx_debug_live_tensors() == before_t);
}

/* ---- every single allocation refused in turn ---- */

/* A scenario allocates, computes, releases everything it made and returns
   the first failing status (KDX_OK when it ran through). */
typedef kdx_status (*scenario_fn)(void);

static kdx_tensor *W; /* [3, 2] float32, made before the sweeps */

/* st = call when nothing failed yet; a failed call must leave its [out]
   (still NULL) alone, which callers rely on to know what to release. */
static int out_written;
#define STEP(st, call, out)                                                    \
    do {                                                                       \
        if ((st) == KDX_OK) {                                                  \
            (st) = (call);                                                     \
            if ((st) != KDX_OK && (out) != NULL) {                             \
                out_written++;                                                 \
                kdx_tensor_release(out);                                       \
                (out) = NULL;                                                  \
            }                                                                  \
        }                                                                      \
    } while (0)
#define STEP2(st, call, out1, out2)                                            \
    do {                                                                       \
        if ((st) == KDX_OK) {                                                  \
            (st) = (call);                                                     \
            if ((st) != KDX_OK && ((out1) != NULL || (out2) != NULL)) {        \
                out_written++;                                                 \
                kdx_tensor_release(out1);                                      \
                kdx_tensor_release(out2);                                      \
                (out1) = (out2) = NULL;                                        \
            }                                                                  \
        }                                                                      \
    } while (0)

static kdx_status ops_chain(void)
{
    int64_t s[2] = {4, 3};
    kdx_tensor *x = NULL, *y = NULL, *z = NULL, *r = NULL;
    kdx_status st = kdx_ones(KDX_DTYPE_F32, 2, s, &x);
    STEP(st, kdx_matmul(x, W, &y), y);
    STEP(st, kdx_softmax(y, 1, &z), z);
    STEP(st, kdx_reduce(KDX_RED_LOGSUMEXP, z, NULL, 0, 0, &r), r);
    kdx_tensor_release(x);
    kdx_tensor_release(y);
    kdx_tensor_release(z);
    kdx_tensor_release(r);
    return st;
}

static kdx_status autograd_pass(void)
{
    int64_t s[2] = {4, 3};
    kdx_tensor *x = NULL, *h = NULL, *a = NULL, *p = NULL, *pa = NULL, *l = NULL, *g = NULL;
    kdx_status st = kdx_ones(KDX_DTYPE_F32, 2, s, &x);
    if (st == KDX_OK) st = kdx_tensor_set_requires_grad(x, 1);
    STEP(st, kdx_matmul(x, W, &h), h);
    STEP(st, kdx_unary(KDX_UN_TANH, h, 0, 0, &a), a); /* saves its output */
    STEP(st, kdx_softmax(a, 1, &p), p);                /* saves its output */
    STEP(st, kdx_binary(KDX_BIN_MUL, p, a, &pa), pa);
    STEP(st, kdx_reduce(KDX_RED_SUM, pa, NULL, 0, 0, &l), l);
    STEP(st, kdx_grad((const kdx_tensor *const *)&l, 1, NULL, (const kdx_tensor *const *)&x, 1, 1, 0, 0, &g), g);
    if (st == KDX_OK) st = kdx_backward(l, NULL, 0, 0);
    kdx_tensor_release(g);
    kdx_tensor_release(l);
    kdx_tensor_release(pa);
    kdx_tensor_release(p);
    kdx_tensor_release(a);
    kdx_tensor_release(h);
    kdx_tensor_release(x);
    return st;
}

/* f(x) = tanh(x W) for x [B, 3]: differentiable, made of engine ops. */
static kdx_status model(void *ud, const kdx_tensor *x, kdx_tensor **y)
{
    (void)ud;
    kdx_tensor *h = NULL;
    kdx_status st = kdx_matmul(x, W, &h);
    if (st == KDX_OK) st = kdx_unary(KDX_UN_TANH, h, 0, 0, y);
    kdx_tensor_release(h);
    return st;
}
static const kdx_model M = {model, NULL};

static kdx_status make_input(kdx_tensor **x, kdx_tensor **target)
{
    int64_t s[2] = {4, 3}, n = 4;
    float xv[12] = {1, 2, 3, -1, 0.5f, 2, 0, 0.3f, -0.7f, 1.1f, 2.2f, -3};
    int64_t tv[4] = {0, 1, 1, 0};
    kdx_status st = kdx_from_data(KDX_DTYPE_F32, 2, s, xv, x);
    if (st == KDX_OK) st = kdx_from_data(KDX_DTYPE_I64, 1, &n, tv, target);
    return st;
}

static kdx_status explain_saliency(void)
{
    kdx_tensor *x = NULL, *t = NULL, *a = NULL;
    kdx_status st = make_input(&x, &t);
    STEP(st, kdx_attr_saliency(&M, x, t, 1, 0, 2, &a), a);
    kdx_tensor_release(a);
    kdx_tensor_release(x);
    kdx_tensor_release(t);
    return st;
}

static kdx_status explain_ig(void)
{
    kdx_tensor *x = NULL, *t = NULL, *a = NULL, *d = NULL;
    kdx_status st = make_input(&x, &t);
    STEP2(st, kdx_attr_integrated_gradients(&M, x, NULL, t, 4, KDX_IG_GAUSS_LEGENDRE, 3, &a, &d), a, d);
    kdx_tensor_release(a);
    kdx_tensor_release(d);
    kdx_tensor_release(x);
    kdx_tensor_release(t);
    return st;
}

static kdx_status explain_deeplift(void)
{
    kdx_tensor *x = NULL, *t = NULL, *a = NULL, *d = NULL;
    kdx_status st = make_input(&x, &t);
    STEP2(st, kdx_attr_deeplift(&M, x, NULL, t, 4, &a, &d), a, d);
    kdx_tensor_release(a);
    kdx_tensor_release(d);
    kdx_tensor_release(x);
    kdx_tensor_release(t);
    return st;
}

static kdx_status explain_perturbation(void)
{
    kdx_tensor *x = NULL, *t = NULL, *a = NULL, *b = NULL, *info = NULL;
    kdx_status st = make_input(&x, &t);
    int64_t window[1] = {2};
    STEP(st, kdx_attr_occlusion(&M, x, window, NULL, NULL, t, 3, &a), a);
    STEP2(st, kdx_attr_kernel_shap(&M, x, NULL, NULL, t, 0, 1, NULL, 5, &b, &info), b, info);
    kdx_tensor_release(a);
    kdx_tensor_release(b);
    kdx_tensor_release(info);
    kdx_tensor_release(x);
    kdx_tensor_release(t);
    return st;
}

static kdx_status explain_more(void)
{
    kdx_tensor *x = NULL, *t = NULL, *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL, *auc = NULL;
    kdx_status st = make_input(&x, &t);
    kdx_metric_opts o = {NULL, NULL, 3, 1, 0};
    o.target = t;
    STEP(st, kdx_attr_guided_backprop(&M, x, t, 3, &a), a);
    STEP(st, kdx_attr_feature_ablation(&M, x, NULL, NULL, t, 5, &b), b);
    STEP(st, kdx_attr_shapley_sampling(&M, x, NULL, NULL, t, 3, NULL, 5, &c), c);
    STEP2(st, kdx_metric_deletion(&M, x, a ? a : x, &o, 3, 0, &d, &auc), d, auc);
    STEP(st, kdx_loss_kd(x, x, 2.0, &e), e);
    kdx_tensor *all[8] = {x, t, a, b, c, d, e, auc};
    for (int i = 0; i < 8; i++) kdx_tensor_release(all[i]);
    return st;
}

/* conv2d, pooling and a distillation loss, recorded and differentiated. */
static kdx_status conv_autograd(void)
{
    int64_t xs[4] = {2, 1, 5, 5}, ws[4] = {2, 1, 3, 3};
    kdx_tensor *x = NULL, *w = NULL, *y = NULL, *f = NULL, *l = NULL;
    kdx_status st = kdx_ones(KDX_DTYPE_F32, 4, xs, &x);
    STEP(st, kdx_ones(KDX_DTYPE_F32, 4, ws, &w), w);
    if (st == KDX_OK) st = kdx_tensor_set_requires_grad(w, 1);
    STEP(st, kdx_conv2d(x, w, NULL, NULL, &y), y);
    int64_t fs[2] = {2, 18};
    STEP(st, kdx_reshape(y, 2, fs, &f), f);
    STEP(st, kdx_loss_kd(f, f, 4.0, &l), l);
    if (st == KDX_OK) st = kdx_backward(l, NULL, 0, 0);
    kdx_tensor *all[5] = {x, w, y, f, l};
    for (int i = 0; i < 5; i++) kdx_tensor_release(all[i]);
    return st;
}

/* SyncBatchNorm's op on one process (no sum): forward, running statistics, backward. */
static kdx_status batch_norm_sync(void)
{
    int64_t xs[3] = {4, 3, 5}, cs[1] = {3};
    kdx_tensor *x = NULL, *w = NULL, *rm = NULL, *rv = NULL, *y = NULL, *sq = NULL, *l = NULL;
    kdx_status st = kdx_randn(NULL, KDX_DTYPE_F32, 3, xs, &x);
    STEP(st, kdx_ones(KDX_DTYPE_F32, 1, cs, &w), w);
    STEP(st, kdx_zeros(KDX_DTYPE_F32, 1, cs, &rm), rm);
    STEP(st, kdx_ones(KDX_DTYPE_F32, 1, cs, &rv), rv);
    if (st == KDX_OK) st = kdx_tensor_set_requires_grad(x, 1);
    if (st == KDX_OK) st = kdx_tensor_set_requires_grad(w, 1);
    STEP(st, kdx_batch_norm_sync(x, rm, rv, w, NULL, 0.1, 1e-5, NULL, &y), y);
    STEP(st, kdx_binary(KDX_BIN_MUL, y, y, &sq), sq); /* (a plain sum would make the x gradient zero) */
    STEP(st, kdx_reduce(KDX_RED_SUM, sq, NULL, 0, 0, &l), l);
    if (st == KDX_OK) st = kdx_backward(l, NULL, 0, 0);
    kdx_tensor *all[7] = {x, w, rm, rv, y, sq, l};
    for (int i = 0; i < 7; i++) kdx_tensor_release(all[i]);
    return st;
}

/* Runs the scenario with allocation 1, 2, 3, ... refused until it runs
   through without reaching the refused one. */
static void sweep(const char *name, scenario_fn run)
{
    long long before = settled();
    int64_t before_t = kdx_debug_live_tensors();
    int runs = 0, bad_status = 0, leaked = 0, completed = 0;
    out_written = 0;
    for (long long n = 1; n < 100000; n++) {
        atomic_store(&nallocs, 0);
        atomic_store(&refused, 0);
        fail_at = n;
        kdx_status st = run();
        fail_at = -1;
        runs++;
        if (st != KDX_OK && st != KDX_ENOMEM) {
            if (bad_status++ < 3)
                fprintf(stderr, "%s: allocation %lld refused: status %d (%s)\n", name, n, (int)st, kdx_last_error());
        }
        if (st == KDX_ENOMEM && strlen(kdx_last_error()) == 0) bad_status++;
        if (settled() != before || kdx_debug_live_tensors() != before_t) {
            if (leaked++ < 3)
                fprintf(stderr, "%s: allocation %lld refused: %lld bytes, %lld tensors leaked\n", name, n,
                        settled() - before, (long long)(kdx_debug_live_tensors() - before_t));
            before = settled();
            before_t = kdx_debug_live_tensors();
        }
        if (atomic_load(&refused) == 0) { /* never reached the refused allocation */
            completed = st == KDX_OK;
            break;
        }
    }
    CHECK(completed);
    CHECK(runs > 3); /* the scenario allocates: the sweep did refuse something */
    CHECK(bad_status == 0);
    CHECK(leaked == 0);
    CHECK(out_written == 0);
    if (out_written) fprintf(stderr, "%s: %d failed calls wrote their [out]\n", name, out_written);
    printf("%s: %d runs, each with one allocation refused\n", name, runs - 1);
}

int main(void)
{
    kdx_set_allocator(limited_alloc, NULL);
    kdx_set_num_threads(1); /* the refused allocation is the same one in every run */
    int64_t before = kdx_debug_live_tensors();
    int64_t ws[2] = {3, 2};
    float wv[6] = {0.5f, -1, 2, 0.25f, -0.3f, 1.5f};
    CHECK_OK(kdx_from_data(KDX_DTYPE_F32, 2, ws, wv, &W));
    /* warm-up: what the engine keeps for good (thread-local buffers, the
       default generator) is made before the live bytes are compared */
    CHECK_OK(ops_chain());
    CHECK_OK(autograd_pass());
    CHECK_OK(explain_saliency());
    CHECK_OK(explain_ig());
    CHECK_OK(explain_deeplift());
    CHECK_OK(explain_perturbation());
    CHECK_OK(explain_more());
    CHECK_OK(conv_autograd());
    CHECK_OK(batch_norm_sync());

    test_overflow_and_limit();
    sweep("ops_chain", ops_chain);
    sweep("autograd_pass", autograd_pass);
    sweep("explain_saliency", explain_saliency);
    sweep("explain_ig", explain_ig);
    sweep("explain_deeplift", explain_deeplift);
    sweep("explain_perturbation", explain_perturbation);
    sweep("explain_more", explain_more);
    sweep("conv_autograd", conv_autograd);
    sweep("batch_norm_sync", batch_norm_sync);

    kdx_tensor_release(W);
    CHECK(kdx_debug_live_tensors() == before);
    kdx_cache_clear();
    return CT_REPORT("test_alloclimit");
}
