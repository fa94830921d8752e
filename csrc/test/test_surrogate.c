/* test_surrogate.c — the surrogate fits from C alone: a tree and a sparse
   logistic regression on tiny data whose answers are known by hand, the
   error statuses, and no tensor left behind. */
#include "../kdx.h"
#include "ctest.h"

#include <string.h>

static kdx_tensor *make(kdx_dtype dt, int nd, const int64_t *shape, const void *data)
{
    kdx_tensor *t = NULL;
    return kdx_from_data(dt, nd, shape, data, &t) == KDX_OK ? t : NULL;
}

static void test_tree(void)
{
    /* soft labels: the split at 1.5 leaves (0.9, 0.1) | (0.1, 0.9), Gini 0.18 each side */
    const float xs[4] = {0, 1, 2, 3};
    const double ps[8] = {1, 0, 0.8, 0.2, 0.2, 0.8, 0, 1};
    int64_t sx[2] = {4, 1}, sp[2] = {4, 2};
    kdx_tensor *x = make(KDX_DTYPE_F32, 2, sx, xs), *p = make(KDX_DTYPE_F64, 2, sp, ps), *leaf = NULL;
    kdx_tree_options o = {1, 2, 1, 0, KDX_TREE_GINI, 0};
    kdx_tree t;
    CHECK_OK(kdx_surrogate_tree_fit(x, p, NULL, 0, &o, &t));
    CHECK(kdx_tensor_numel(t.feature) == 3);
    const double *th = kdx_tensor_data(t.threshold), *imp = kdx_tensor_data(t.impurity);
    const double *val = kdx_tensor_data(t.value);
    const int64_t *le = kdx_tensor_data(t.left);
    CHECK(th[0] == 1.5 && le[0] == 1 && le[1] == -1);
    CHECK_NEAR(imp[0], 0.5, 1e-15);
    CHECK_NEAR(imp[1], 0.18, 1e-15);
    CHECK_NEAR(val[2], 0.9, 1e-15);
    CHECK_OK(kdx_surrogate_tree_apply(&t, x, &leaf));
    const int64_t *lv = kdx_tensor_data(leaf);
    CHECK(lv[0] == 1 && lv[1] == 1 && lv[2] == 2 && lv[3] == 2);
    kdx_tensor_release(leaf);
    kdx_tree_clear(&t);
    CHECK(t.feature == NULL);
    /* bad options and targets fail with a status and leave nothing behind */
    o.min_samples_leaf = 0;
    CHECK_FAILS(kdx_surrogate_tree_fit(x, p, NULL, 0, &o, &t), KDX_EINVAL);
    o.min_samples_leaf = 1;
    int64_t s1[1] = {4};
    kdx_tensor *flat = make(KDX_DTYPE_F32, 1, s1, xs); /* 1-D float: neither labels nor probabilities */
    CHECK_FAILS(kdx_surrogate_tree_fit(x, flat, NULL, 0, &o, &t), KDX_ESHAPE);
    CHECK(strstr(kdx_last_error(), "surrogate_tree_fit") != NULL);
    CHECK_FAILS(kdx_surrogate_tree_fit(x, x, NULL, 0, &o, &t), KDX_EINVAL); /* row 1 sums to 0 */
    kdx_tensor_release(flat);
    kdx_tensor_release(x);
    kdx_tensor_release(p);
}

static void test_linear(void)
{
    /* separable by the sign of x: with a large l1 every weight is zero and the intercepts give the class
       frequencies (3 of class 0, 1 of class 1) */
    const double xs[4] = {-2, -1, 1, 2};
    const int64_t ys[4] = {0, 0, 0, 1};
    int64_t sx[2] = {4, 1}, sy[1] = {4};
    kdx_tensor *x = make(KDX_DTYPE_F64, 2, sx, xs), *y = make(KDX_DTYPE_I64, 1, sy, ys), *w = NULL, *b = NULL;
    kdx_linear_options o = {10.0, 1e-10, 10000, 1};
    int64_t it = 0;
    double obj = 0;
    CHECK_OK(kdx_surrogate_linear_fit(x, y, NULL, 0, &o, &w, &b, &it));
    CHECK(it < 10000);
    const double *wv = kdx_tensor_data(w), *bv = kdx_tensor_data(b);
    CHECK(wv[0] == 0 && wv[1] == 0);
    CHECK_NEAR(bv[0] - bv[1], log(3.0), 1e-8);
    CHECK_OK(kdx_surrogate_linear_objective(x, y, NULL, w, b, o.l1, &obj));
    CHECK_NEAR(obj, -(0.75 * log(0.75) + 0.25 * log(0.25)), 1e-12);
    kdx_tensor_release(w);
    kdx_tensor_release(b);
    o.l1 = -1;
    CHECK_FAILS(kdx_surrogate_linear_fit(x, y, NULL, 0, &o, &w, &b, &it), KDX_EINVAL);
    CHECK(w == NULL && b == NULL);
    kdx_tensor_release(x);
    kdx_tensor_release(y);
}

int main(void)
{
    int64_t live = kdx_debug_live_tensors();
    test_tree();
    test_linear();
    CHECK(kdx_debug_live_tensors() == live);
    return CT_REPORT("test_surrogate");
}
