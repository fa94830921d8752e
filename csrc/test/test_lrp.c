/* test_lrp.c — LRP from C, without Lua: a two-layer net worked by hand
   (epsilon and z+), BatchNorm folding, and the errors of a bad chain. */
#include "ctest.h"
#include "kdx.h"

static kdx_tensor *mk(int nd, const int64_t *shape, const double *v)
{
    kdx_tensor *t = NULL;
    if (kdx_from_data(KDX_DTYPE_F64, nd, shape, v, &t) != KDX_OK) return NULL;
    return t;
}

static double at(const kdx_tensor *t, int64_t i) { return ((const double *)kdx_tensor_data(t))[i]; }

int main(void)
{
    int64_t s22[2] = {2, 2}, s12[2] = {1, 2}, s2[1] = {2};
    kdx_tensor *w1 = mk(2, s22, (double[]){1, 2, 3, -1}), *w2 = mk(2, s12, (double[]){1, 1});
    kdx_tensor *x = mk(2, s12, (double[]){1, 1});
    kdx_lrp_layer net[3] = {{.type = KDX_LRP_LINEAR, .weight = w1}, {.type = KDX_LRP_RELU},
                            {.type = KDX_LRP_LINEAR, .weight = w2}};
    kdx_lrp_opts o = {KDX_LRP_EPSILON_PLUS, 0, 0, 0.25, NULL, NULL, 8};
    kdx_lrp_rule rules[3];

    /* z1 = [3, 2], y = 5: epsilon gives x_i sum_j w_ji R_j / z_j = [1 + 3, 2 - 1] */
    kdx_tensor *r = NULL, *sums = NULL;
    CHECK_OK(kdx_attr_lrp(net, 3, x, NULL, &o, &r, &sums, rules));
    if (r && sums) {
        CHECK_NEAR(at(r, 0), 4, 1e-12);
        CHECK_NEAR(at(r, 1), 1, 1e-12);
        for (int l = 0; l < 4; l++) CHECK_NEAR(at(sums, l), 5, 1e-12);
        CHECK(rules[0] == KDX_LRP_RULE_EPSILON && rules[1] == KDX_LRP_RULE_PASS);
    }
    kdx_tensor_release(r);
    kdx_tensor_release(sums);

    /* z+ on the first layer: positive parts only, z+ = [3, 3] */
    net[0].rule = KDX_LRP_RULE_ZPLUS;
    r = NULL;
    CHECK_OK(kdx_attr_lrp(net, 3, x, NULL, &o, &r, NULL, NULL));
    if (r) {
        CHECK_NEAR(at(r, 0), 3, 1e-12);
        CHECK_NEAR(at(r, 1), 2, 1e-12);
    }
    kdx_tensor_release(r);

    /* folding: s = 1 / sqrt(var + eps) = [1/2, 1] */
    kdx_tensor *mean = mk(1, s2, (double[]){1, 0}), *var = mk(1, s2, (double[]){3, 0}), *beta = mk(1, s2, (double[]){0, 5});
    kdx_tensor *wf = NULL, *bf = NULL;
    CHECK_OK(kdx_lrp_fold_batchnorm(w1, NULL, mean, var, NULL, beta, 1.0, &wf, &bf));
    if (wf && bf) {
        CHECK_NEAR(at(wf, 0), 0.5, 1e-12);
        CHECK_NEAR(at(wf, 1), 1, 1e-12);
        CHECK_NEAR(at(wf, 2), 3, 1e-12);
        CHECK_NEAR(at(bf, 0), -0.5, 1e-12);
        CHECK_NEAR(at(bf, 1), 5, 1e-12);
        CHECK_NEAR(at(w1, 0), 1, 0); /* the input is untouched */
    }
    kdx_tensor_release(wf);
    kdx_tensor_release(bf);

    /* errors: a rule that does not apply, z^B without bounds, a BatchNorm with nothing to fold into */
    r = NULL;
    net[0].rule = KDX_LRP_RULE_AUTO;
    net[1].rule = KDX_LRP_RULE_FLAT;
    CHECK_FAILS(kdx_attr_lrp(net, 3, x, NULL, &o, &r, NULL, NULL), KDX_EINVAL);
    net[1].rule = KDX_LRP_RULE_AUTO;
    net[0].rule = KDX_LRP_RULE_ZBOX;
    CHECK_FAILS(kdx_attr_lrp(net, 3, x, NULL, &o, &r, NULL, NULL), KDX_EINVAL);
    net[0].rule = KDX_LRP_RULE_AUTO;
    kdx_lrp_layer bad[2] = {{.type = KDX_LRP_RELU}, {.type = KDX_LRP_BATCHNORM, .running_mean = mean, .running_var = var}};
    CHECK_FAILS(kdx_attr_lrp(bad, 2, x, NULL, &o, &r, NULL, NULL), KDX_EINVAL);
    o.batch_size = 0;
    CHECK_FAILS(kdx_attr_lrp(net, 3, x, NULL, &o, &r, NULL, NULL), KDX_EINVAL);
    CHECK(r == NULL);

    kdx_tensor_release(w1);
    kdx_tensor_release(w2);
    kdx_tensor_release(x);
    kdx_tensor_release(mean);
    kdx_tensor_release(var);
    kdx_tensor_release(beta);
    CHECK(kdx_debug_live_tensors() == 0);
    return CT_REPORT("test_lrp");
}
