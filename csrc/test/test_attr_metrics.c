/* test_attr_metrics.c — the attribution metrics from C, with C callbacks:
   a linear model f(x) = x . w, its exact attribution x * w, and an
   explanation that fails midway (the parameters must come back). */
#include "ctest.h"
#include "kdx.h"

#include <string.h>

static double W[4] = {0.5, -1.5, 2, 1};

/* f(x) = x . w for x [B, 4] float64, or x . (weight tensor in ud) when ud is set. */
static kdx_status linear(void *ud, const kdx_tensor *x, kdx_tensor **y)
{
    const double *w = ud ? kdx_tensor_data(ud) : W;
    int64_t B = kdx_tensor_shape(x)[0];
    kdx_tensor *xc = NULL;
    kdx_status s = kdx_contiguous(x, &xc);
    if (s == KDX_OK) s = kdx_empty(KDX_DTYPE_F64, 1, &B, y);
    if (s == KDX_OK) {
        const double *p = kdx_tensor_data(xc);
        double *o = kdx_tensor_data(*y);
        for (int64_t i = 0; i < B; i++) o[i] = p[4 * i] * w[0] + p[4 * i + 1] * w[1] + p[4 * i + 2] * w[2] + p[4 * i + 3] * w[3];
    }
    kdx_tensor_release(xc);
    return s;
}

static kdx_status failing(void *ud, const kdx_tensor *x, kdx_tensor **y)
{
    (void)ud, (void)x, (void)y;
    return kdx_fail(KDX_ESTATE, "model: broken on purpose");
}

/* The gradient of the linear model in the weight tensor ud: w for every row;
   fails on the third call. */
static int calls;
static kdx_status grad_explain(void *ud, const kdx_tensor *x, const kdx_tensor *ids, kdx_tensor **attr)
{
    (void)ids;
    if (++calls == 3) return kdx_fail(KDX_ESTATE, "explanation: broken on purpose");
    int64_t shape[2] = {kdx_tensor_shape(x)[0], 4};
    kdx_tensor *w = ud, *w2 = NULL;
    int64_t one[2] = {1, 4};
    kdx_status s = kdx_reshape(w, 2, one, &w2);
    if (s == KDX_OK) s = kdx_expand(w2, 2, shape, attr);
    kdx_tensor_release(w2);
    return s;
}

int main(void)
{
    int64_t shape[2] = {3, 4};
    double xv[12] = {1, 2, 3, 4, -1, 0.5, 2, 0, 0.3, -0.7, 1.1, 2.2};
    kdx_tensor *x = NULL, *attr = NULL, *curves = NULL, *auc = NULL, *gap = NULL, *sim = NULL;
    CHECK_OK(kdx_from_data(KDX_DTYPE_F64, 2, shape, xv, &x));
    double av[12];
    for (int i = 0; i < 12; i++) av[i] = xv[i] * W[i % 4];
    CHECK_OK(kdx_from_data(KDX_DTYPE_F64, 2, shape, av, &attr));
    kdx_model m = {linear, NULL};
    kdx_metric_opts o = {NULL, NULL, 2, 1, 0};

    /* deletion: starts at f(x), ends at f(0) = 0; the gap of x * w is 0 */
    CHECK_OK(kdx_metric_deletion(&m, x, attr, &o, 4, 0, &curves, &auc));
    const double *c = kdx_tensor_data(curves);
    CHECK_NEAR(c[0], 1 * 0.5 - 2 * 1.5 + 3 * 2 + 4, 1e-12);
    CHECK_NEAR(c[4], 0, 1e-12);
    CHECK_OK(kdx_metric_completeness(&m, x, attr, &o, &gap));
    for (int i = 0; i < 3; i++) CHECK_NEAR(((double *)kdx_tensor_data(gap))[i], 0, 1e-12);
    CHECK_OK(kdx_attr_similarity(KDX_SIM_KENDALL, attr, attr, 0, &sim));
    CHECK_NEAR(((double *)kdx_tensor_data(sim))[1], 1, 1e-12);

    /* a failing model is a status, not a crash, and frees what it built */
    kdx_model bad = {failing, NULL};
    kdx_tensor *unused = NULL, *unused2 = NULL;
    CHECK_FAILS(kdx_metric_deletion(&bad, x, attr, &o, 4, 1, &unused, &unused2), KDX_ESTATE);
    CHECK(strstr(kdx_last_error(), "broken on purpose") != NULL);
    CHECK_FAILS(kdx_metric_faithfulness_correlation(&bad, x, attr, &o, 2, 10, &unused), KDX_ESTATE);
    CHECK_FAILS(kdx_metric_deletion(&m, x, attr, &o, 0, 0, &unused, &unused2), KDX_EINVAL);

    /* randomisation: the weight comes back unchanged after the explanation fails */
    int64_t four = 4;
    kdx_tensor *w = NULL, *rows = NULL;
    CHECK_OK(kdx_from_data(KDX_DTYPE_F64, 1, &four, W, &w));
    kdx_explainer e = {grad_explain, w};
    kdx_tensor *params[1] = {w};
    int layer_of[1] = {0};
    calls = 0;
    CHECK_FAILS(kdx_metric_randomization(&e, x, NULL, &o, params, layer_of, 1, 1, KDX_SIM_SPEARMAN, 0, 1, &unused),
                KDX_ESTATE);
    for (int i = 0; i < 4; i++) CHECK(((double *)kdx_tensor_data(w))[i] == W[i]);
    calls = -10;
    CHECK_OK(kdx_metric_randomization(&e, x, NULL, &o, params, layer_of, 1, 1, KDX_SIM_COSINE, 0, 0, &rows));
    CHECK_NEAR(((double *)kdx_tensor_data(rows))[0], 1, 1e-12); /* row 0: the unchanged model */
    for (int i = 0; i < 4; i++) CHECK(((double *)kdx_tensor_data(w))[i] == W[i]);

    kdx_tensor_release(x);
    kdx_tensor_release(attr);
    kdx_tensor_release(curves);
    kdx_tensor_release(auc);
    kdx_tensor_release(gap);
    kdx_tensor_release(sim);
    kdx_tensor_release(w);
    kdx_tensor_release(rows);
    return CT_REPORT("test_attr_metrics");
}
