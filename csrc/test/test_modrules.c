/* test_modrules.c — DeepLift, guided backprop and deconvolution from C: a
   model written as a C callback, summation-to-delta, and the backward rule
   staying on its own thread (ordinary gradients computed on another thread
   while the methods run are unchanged). */
#include "ctest.h"
#include "kdx.h"

#include <pthread.h>
#include <stdlib.h>

#define N 4
#define D 5
#define H 7

static kdx_tensor *W1, *W2; /* [D, H], [H, 1] */

/* y = relu(x W1) W2, reshaped to [B]. */
static kdx_status relu_net(void *ud, const kdx_tensor *x, kdx_tensor **y)
{
    (void)ud;
    kdx_tensor *h = NULL, *r = NULL, *o = NULL;
    int64_t b = kdx_tensor_shape(x)[0];
    kdx_status s = kdx_matmul(x, W1, &h);
    if (s == KDX_OK) s = kdx_unary(KDX_UN_RELU, h, 0, 0, &r);
    if (s == KDX_OK) s = kdx_matmul(r, W2, &o);
    if (s == KDX_OK) s = kdx_reshape(o, 1, &b, y);
    kdx_tensor_release(h);
    kdx_tensor_release(r);
    kdx_tensor_release(o);
    return s;
}

static double at(const kdx_tensor *t, int64_t i) { return ((const double *)kdx_tensor_data(t))[i]; }

/* The ordinary input gradient of relu_net's outputs summed. */
static kdx_status plain_grad(const kdx_tensor *x, kdx_tensor **g)
{
    kdx_tensor *leaf = NULL, *y = NULL, *sum = NULL;
    kdx_status s = kdx_clone(x, &leaf);
    if (s == KDX_OK) s = kdx_tensor_set_requires_grad(leaf, 1);
    if (s == KDX_OK) s = relu_net(NULL, leaf, &y);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, y, NULL, 0, 0, &sum);
    const kdx_tensor *outs[1] = {sum}, *ins[1] = {leaf};
    if (s == KDX_OK) s = kdx_grad(outs, 1, NULL, ins, 1, 0, 0, 0, g);
    kdx_tensor_release(leaf);
    kdx_tensor_release(y);
    kdx_tensor_release(sum);
    return s;
}

typedef struct {
    const kdx_tensor *x, *want;
    int rounds, wrong, failed;
} worker;

static void *ordinary_gradients(void *p)
{
    worker *w = p;
    for (int r = 0; r < w->rounds; r++) {
        kdx_tensor *g = NULL;
        if (plain_grad(w->x, &g) != KDX_OK) {
            w->failed++;
            continue;
        }
        for (int64_t i = 0; i < N * D; i++)
            if (fabs(at(g, i) - at(w->want, i)) > 1e-15) {
                w->wrong++;
                break;
            }
        kdx_tensor_release(g);
    }
    return NULL;
}

int main(void)
{
    kdx_generator *gen = NULL;
    int64_t w1s[2] = {D, H}, w2s[2] = {H, 1}, xs[2] = {N, D};
    kdx_tensor *x = NULL, *base = NULL;
    CHECK_OK(kdx_generator_new(11, &gen));
    CHECK_OK(kdx_randn(gen, KDX_DTYPE_F64, 2, w1s, &W1));
    CHECK_OK(kdx_randn(gen, KDX_DTYPE_F64, 2, w2s, &W2));
    CHECK_OK(kdx_randn(gen, KDX_DTYPE_F64, 2, xs, &x));
    CHECK_OK(kdx_randn(gen, KDX_DTYPE_F64, 1, &xs[1], &base));
    kdx_model m = {relu_net, NULL};

    /* DeepLift from C: the attributions add up to f(x) - f(baseline) */
    kdx_tensor *attr = NULL, *delta = NULL, *fx = NULL, *fb = NULL, *bx = NULL;
    CHECK_OK(kdx_attr_deeplift(&m, x, base, NULL, 3, &attr, &delta));
    CHECK_OK(kdx_expand(base, 2, xs, &bx));
    CHECK_OK(relu_net(NULL, x, &fx));
    CHECK_OK(relu_net(NULL, bx, &fb));
    for (int i = 0; attr && delta && fx && fb && i < N; i++) {
        double sum = 0;
        for (int j = 0; j < D; j++) sum += at(attr, i * D + j);
        CHECK_NEAR(sum, at(fx, i) - at(fb, i), 1e-12);
        CHECK_NEAR(at(delta, i), 0, 1e-12);
    }

    /* one hidden layer by hand: the gradient is W1 (1[h > 0] W2); guided
       backprop W1 (1[h > 0] relu(W2)); deconvolution W1 relu(W2) */
    kdx_tensor *gb = NULL, *dc = NULL, *want = NULL;
    CHECK_OK(kdx_attr_guided_backprop(&m, x, NULL, 2, &gb));
    CHECK_OK(kdx_attr_deconvolution(&m, x, NULL, 2, &dc));
    CHECK_OK(plain_grad(x, &want));
    for (int i = 0; gb && dc && want && i < N; i++)
        for (int j = 0; j < D; j++) {
            double g = 0, guided = 0, deconv = 0;
            for (int k = 0; k < H; k++) {
                double hk = 0, w2 = at(W2, k), w1 = at(W1, j * H + k);
                for (int l = 0; l < D; l++) hk += at(x, i * D + l) * at(W1, l * H + k);
                g += hk > 0 ? w1 * w2 : 0;
                guided += hk > 0 && w2 > 0 ? w1 * w2 : 0;
                deconv += w2 > 0 ? w1 * w2 : 0;
            }
            CHECK_NEAR(at(want, i * D + j), g, 1e-12);
            CHECK_NEAR(at(gb, i * D + j), guided, 1e-12);
            CHECK_NEAR(at(dc, i * D + j), deconv, 1e-12);
        }

    /* the rule stays on its thread: ordinary gradients on another thread are unchanged */
    worker w = {x, want, 3000, 0, 0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, ordinary_gradients, &w) == 0);
    int bad = 0;
    for (int r = 0; r < 3000; r++) {
        kdx_tensor *a = NULL, *b = NULL;
        bad += kdx_attr_guided_backprop(&m, x, NULL, 4, &a) != KDX_OK;
        bad += kdx_attr_deeplift(&m, x, base, NULL, 8, &b, NULL) != KDX_OK;
        kdx_tensor_release(a);
        kdx_tensor_release(b);
    }
    pthread_join(th, NULL);
    CHECK(bad == 0);
    CHECK(w.failed == 0);
    CHECK(w.wrong == 0);
    /* and on this thread after the methods */
    kdx_tensor *again = NULL;
    CHECK_OK(plain_grad(x, &again));
    for (int64_t i = 0; again && i < N * D; i++) CHECK_NEAR(at(again, i), at(want, i), 0);

    /* errors */
    kdx_model none = {NULL, NULL};
    kdx_tensor *e = NULL;
    CHECK_FAILS(kdx_attr_deeplift(&none, x, NULL, NULL, 4, &e, NULL), KDX_EINVAL);
    CHECK_FAILS(kdx_attr_deeplift(&m, x, NULL, NULL, 1, &e, NULL), KDX_EINVAL);
    CHECK_FAILS(kdx_attr_guided_backprop(&m, x, NULL, 0, &e), KDX_EINVAL);

    kdx_tensor *all[] = {W1, W2, x, base, attr, delta, fx, fb, bx, gb, dc, want, again};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kdx_tensor_release(all[i]);
    kdx_generator_free(gen);
    return CT_REPORT("test_modrules");
}
