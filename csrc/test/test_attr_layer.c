/* test_attr_layer.c — the noise tunnel and the layer attributions from C,
   with callbacks written in C: a toy model whose layer is A = 2x and whose
   outputs are y0 = sum(A^2), y1 = sum(A), so every result has a closed form. */
#include "ctest.h"
#include "kdx.h"

#include <stdint.h>
#include <string.h>

/* y [B, 2] and the layer A [B, ...] = 2x (or replace). */
static kdx_status toy_layer(void *ud, const kdx_tensor *x, const kdx_tensor *replace, kdx_tensor **y, kdx_tensor **act)
{
    (void)ud;
    kdx_tensor *a = NULL, *sq = NULL, *y0 = NULL, *y1 = NULL, *r0 = NULL, *r1 = NULL;
    int nd = kdx_tensor_ndim(x), dims[8];
    for (int d = 1; d < nd; d++) dims[d - 1] = d;
    kdx_status s = replace ? KDX_OK : kdx_binary_scalar(KDX_BIN_MUL, x, 2, 0, &a);
    if (replace) a = kdx_tensor_retain((kdx_tensor *)replace);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, a, a, &sq);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, sq, dims, nd - 1, 0, &y0);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, a, dims, nd - 1, 0, &y1);
    if (s == KDX_OK) s = kdx_unsqueeze(y0, 1, &r0);
    if (s == KDX_OK) s = kdx_unsqueeze(y1, 1, &r1);
    const kdx_tensor *cols[2] = {r0, r1};
    if (s == KDX_OK) s = kdx_cat(cols, 2, 1, y);
    kdx_tensor_release(sq);
    kdx_tensor_release(y0);
    kdx_tensor_release(y1);
    kdx_tensor_release(r0);
    kdx_tensor_release(r1);
    if (s != KDX_OK) {
        kdx_tensor_release(a);
        return s;
    }
    *act = a;
    return KDX_OK;
}

/* An attribution method that returns its input (or fails when ud is set). */
static kdx_status identity_attr(void *ud, const kdx_tensor *x, const kdx_tensor *ids, kdx_tensor **attr)
{
    (void)ids;
    if (ud) return kdx_fail(KDX_EINVAL, "identity: asked to fail");
    return kdx_clone(x, attr);
}

static double get(const kdx_tensor *t, int64_t i)
{
    return ((const double *)kdx_tensor_data(t))[i];
}

/* A [shape] float64 tensor of small values of both signs. */
static kdx_tensor *ramp(int nd, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= shape[d];
    kdx_tensor *out = NULL;
    if (kdx_empty(KDX_DTYPE_F64, nd, shape, &out) != KDX_OK) return NULL;
    for (int64_t i = 0; i < n; i++) ((double *)kdx_tensor_data(out))[i] = 0.1 * (double)(i % 7) - 0.25;
    return out;
}

static void test_gradcam(void)
{
    int64_t shape[4] = {2, 3, 2, 2};
    kdx_tensor *x = ramp(4, shape), *cam = NULL, *t0 = NULL;
    kdx_layer_model lm = {toy_layer, NULL};
    CHECK_OK(kdx_scalar(KDX_DTYPE_I64, 0, &t0));
    CHECK_OK(kdx_attr_gradcam(&lm, x, t0, KDX_CAM_GRADCAM, 0, 0, 0, 1, &cam));
    /* dy0/dA = 2A: w_k = mean(2 A_k), cam = sum_k w_k A_k */
    for (int64_t b = 0; b < 2; b++)
        for (int64_t p = 0; p < 4; p++) {
            double want = 0;
            for (int64_t k = 0; k < 3; k++) {
                double m = 0;
                for (int64_t q = 0; q < 4; q++) m += 2 * 2 * get(x, (b * 3 + k) * 4 + q) / 4;
                want += m * 2 * get(x, (b * 3 + k) * 4 + p);
            }
            CHECK_NEAR(get(cam, b * 4 + p), want, 1e-12);
        }
    CHECK(kdx_tensor_ndim(cam) == 4 && kdx_tensor_shape(cam)[1] == 1);
    kdx_tensor_release(cam);
    cam = NULL;
    CHECK_OK(kdx_attr_gradcam(&lm, x, t0, KDX_CAM_GRADCAM, 1, 5, 6, 8, &cam));
    CHECK(kdx_tensor_shape(cam)[2] == 5 && kdx_tensor_shape(cam)[3] == 6);
    kdx_tensor_release(cam);
    CHECK_FAILS(kdx_attr_gradcam(&lm, x, t0, KDX_CAM_GRADCAM, 1, 0, 0, 0, &cam), KDX_EINVAL);
    CHECK_FAILS(kdx_attr_gradcam(NULL, x, t0, KDX_CAM_GRADCAM, 1, 0, 0, 1, &cam), KDX_EINVAL);
    kdx_tensor_release(x);
    kdx_tensor_release(t0);
}

static void test_layer_paths(void)
{
    int64_t shape[2] = {3, 4};
    kdx_tensor *x = ramp(2, shape), *attr = NULL, *delta = NULL, *t0 = NULL;
    kdx_layer_model lm = {toy_layer, NULL};
    CHECK_OK(kdx_scalar(KDX_DTYPE_I64, 0, &t0));
    /* y0 = sum A^2 is quadratic in A: two Gauss-Legendre nodes integrate it
       exactly, attr = A(x)^2 - A(0)^2 = 4 x^2 and the gap is 0 */
    CHECK_OK(kdx_attr_layer_integrated_gradients(&lm, x, NULL, t0, 2, KDX_IG_GAUSS_LEGENDRE, 2, &attr, &delta));
    for (int64_t i = 0; i < 12; i++) CHECK_NEAR(get(attr, i), 4 * get(x, i) * get(x, i), 1e-12);
    for (int64_t i = 0; i < 3; i++) CHECK_NEAR(get(delta, i), 0, 1e-12);
    kdx_tensor_release(attr);
    kdx_tensor_release(delta);
    /* conductance with the trapezoid nodes 0, 1/n, ..., 1 on a quadratic:
       sum_k (A_{k+1} - A_k) 2 A_k = A(x)^2 - sum_k (A_{k+1} - A_k)^2 */
    int n = 4;
    CHECK_OK(kdx_attr_layer_conductance(&lm, x, NULL, t0, n, KDX_IG_RIEMANN_TRAPEZOID, 5, &attr, &delta));
    for (int64_t i = 0; i < 12; i++) {
        double a = 2 * get(x, i);
        CHECK_NEAR(get(attr, i), a * a - n * (a / n) * (a / n), 1e-12);
    }
    kdx_tensor_release(attr);
    kdx_tensor_release(delta);
    CHECK_OK(kdx_attr_layer_activation(&lm, x, NULL, 0, 2, &attr));
    for (int64_t i = 0; i < 12; i++) CHECK_NEAR(get(attr, i), 2 * get(x, i), 0);
    kdx_tensor_release(attr);
    CHECK_FAILS(kdx_attr_layer_conductance(&lm, x, NULL, t0, 0, KDX_IG_GAUSS_LEGENDRE, 5, &attr, &delta), KDX_EINVAL);
    kdx_tensor_release(x);
    kdx_tensor_release(t0);
}

static void test_noise_tunnel(void)
{
    int64_t shape[2] = {3, 4};
    kdx_tensor *x = ramp(2, shape), *out = NULL;
    kdx_attr_method am = {identity_attr, NULL};
    /* the identity's mean over noisy copies is x plus the mean noise; with
       no noise it is x and the variance is 0 */
    CHECK_OK(kdx_attr_noise_tunnel(&am, x, KDX_NT_SMOOTHGRAD, 4, 0, 0, 1, 5, &out));
    for (int64_t i = 0; i < 12; i++) CHECK_NEAR(get(out, i), get(x, i), 1e-15);
    kdx_tensor_release(out);
    CHECK_OK(kdx_attr_noise_tunnel(&am, x, KDX_NT_VARGRAD, 4, 0, 0, 1, 5, &out));
    for (int64_t i = 0; i < 12; i++) CHECK_NEAR(get(out, i), 0, 1e-15);
    kdx_tensor_release(out);
    /* absolute noise 1 with many copies: VarGrad of the identity is about 1 */
    CHECK_OK(kdx_attr_noise_tunnel(&am, x, KDX_NT_VARGRAD, 4000, 1, 1, 3, 1000, &out));
    for (int64_t i = 0; i < 12; i++) CHECK_NEAR(get(out, i), 1, 0.15);
    kdx_tensor_release(out);
    kdx_attr_method bad = {identity_attr, &am};
    CHECK_FAILS(kdx_attr_noise_tunnel(&bad, x, KDX_NT_SMOOTHGRAD, 2, 0.1, 0, 1, 5, &out), KDX_EINVAL);
    CHECK(strstr(kdx_last_error(), "asked to fail") != NULL);
    CHECK_FAILS(kdx_attr_noise_tunnel(&am, x, KDX_NT_SMOOTHGRAD, 0, 0.1, 0, 1, 5, &out), KDX_EINVAL);
    CHECK_FAILS(kdx_attr_noise_tunnel(&am, x, (kdx_nt_type)7, 2, 0.1, 0, 1, 5, &out), KDX_EINVAL);
    kdx_tensor_release(x);
}

int main(void)
{
    int64_t live = kdx_debug_live_tensors();
    test_gradcam();
    test_layer_paths();
    test_noise_tunnel();
    CHECK(kdx_debug_live_tensors() == live);
    return CT_REPORT("test_attr_layer");
}
