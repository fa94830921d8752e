/* test_nn_layers.c — the kernels of interpolate, pad, dropout, batch_norm,
   layer_norm and embedding, from C: small cases computed by hand and the
   errors bad input gets. */
#include "nn_test.h"

/* ---- interpolate ---- */

static void test_interpolate(void)
{
    for (int k = 0; k < 2; k++) {
        kdx_dtype dt = FLOATS[k];
        int64_t xs[4] = {1, 1, 2, 2};
        double v[4] = {1, 2, 3, 4};
        kdx_tensor *x = mk(dt, 4, xs, v), *y = NULL;
        /* nearest 2 -> 4 doubles each pixel; 2 -> 3 picks floor(o*2/3) = 0,0,1 */
        CHECK_OK(kdx_interpolate(x, 4, 4, KDX_INTERP_NEAREST, 0, 0, 0, &y));
        double n4[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
        CHECK(all_near(y, n4, 16, 0));
        kdx_tensor_release(y);
        CHECK_OK(kdx_interpolate(x, 3, 1, KDX_INTERP_NEAREST, 0, 0, 0, &y));
        double n31[3] = {1, 1, 3};
        CHECK(all_near(y, n31, 3, 0));
        kdx_tensor_release(y);
        /* bilinear, half-pixel (align_corners false): source -0.25 clamps to 0 */
        CHECK_OK(kdx_interpolate(x, 4, 4, KDX_INTERP_BILINEAR, 0, 0, 0, &y));
        double b4[16] = {1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4};
        CHECK(all_near(y, b4, 16, 1e-6));
        kdx_tensor_release(y);
        /* align_corners: 2 -> 3 hits the corners and the midpoint */
        CHECK_OK(kdx_interpolate(x, 3, 3, KDX_INTERP_BILINEAR, 1, 0, 0, &y));
        double b3[9] = {1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4};
        CHECK(all_near(y, b3, 9, 1e-6));
        kdx_tensor_release(y);
        /* to 1x1: align_corners takes the corner, half-pixel the centre */
        CHECK_OK(kdx_interpolate(x, 1, 1, KDX_INTERP_BILINEAR, 1, 0, 0, &y));
        CHECK(y && at(y, 0) == 1);
        kdx_tensor_release(y);
        CHECK_OK(kdx_interpolate(x, 1, 1, KDX_INTERP_BILINEAR, 0, 0, 0, &y));
        CHECK(y && fabs(at(y, 0) - 2.5) < 1e-6);
        kdx_tensor_release(y);
        /* same size is a copy */
        CHECK_OK(kdx_interpolate(x, 2, 2, KDX_INTERP_BILINEAR, 0, 0, 0, &y));
        CHECK(all_near(y, v, 4, 0));
        kdx_tensor_release(y);
        kdx_tensor_release(x);
        /* nearest downsampling 4 -> 3 on [C,H,W]: floor(o*4/3) = 0,1,2 */
        int64_t x14[3] = {1, 1, 4};
        x = iota(dt, 3, x14, 1);
        CHECK_OK(kdx_interpolate(x, 1, 3, KDX_INTERP_NEAREST, 0, 0, 0, &y));
        double n3[3] = {0, 1, 2};
        CHECK(all_near(y, n3, 3, 0));
        kdx_tensor_release(y);
        kdx_tensor_release(x);
    }
    int64_t xs[4] = {1, 1, 2, 2}, x2s[2] = {2, 2};
    kdx_tensor *x = iota(KDX_DTYPE_F32, 4, xs, 1), *x2 = iota(KDX_DTYPE_F32, 2, x2s, 1), *y = NULL;
    CHECK_FAILS(kdx_interpolate(x, 0, 2, KDX_INTERP_NEAREST, 0, 0, 0, &y), KDX_EINVAL);
    CHECK_FAILS(kdx_interpolate(x, 2, 2, KDX_INTERP_NEAREST, 1, 0, 0, &y), KDX_EINVAL);
    CHECK_FAILS(kdx_interpolate(x, 2, 2, (kdx_interp_mode)7, 0, 0, 0, &y), KDX_EINVAL);
    CHECK_FAILS(kdx_interpolate(x2, 2, 2, KDX_INTERP_BILINEAR, 0, 0, 0, &y), KDX_ESHAPE);
    CHECK(y == NULL);
    kdx_tensor_release(x);
    kdx_tensor_release(x2);
}

/* ---- pad ---- */

static void test_pad(void)
{
    int64_t s4[1] = {4}, s23[2] = {2, 3};
    kdx_tensor *x = iota(KDX_DTYPE_F32, 1, s4, 1), *y = NULL; /* 0 1 2 3 */
    int64_t p21[2] = {2, 1};
    CHECK_OK(kdx_pad(x, p21, 2, KDX_PAD_REFLECT, 0, &y));
    double wr[7] = {2, 1, 0, 1, 2, 3, 2};
    CHECK(all_near(y, wr, 7, 0));
    kdx_tensor_release(y);
    CHECK_OK(kdx_pad(x, p21, 2, KDX_PAD_REPLICATE, 0, &y));
    double wp[7] = {0, 0, 0, 1, 2, 3, 3};
    CHECK(all_near(y, wp, 7, 0));
    kdx_tensor_release(y);
    CHECK_OK(kdx_pad(x, p21, 2, KDX_PAD_CONSTANT, -1.5, &y));
    double wc[7] = {-1.5, -1.5, 0, 1, 2, 3, -1.5};
    CHECK(all_near(y, wc, 7, 0));
    kdx_tensor_release(y);
    int64_t crop[2] = {-1, -2};
    CHECK_OK(kdx_pad(x, crop, 2, KDX_PAD_CONSTANT, 0, &y));
    double wk[1] = {1};
    CHECK(all_near(y, wk, 1, 0));
    kdx_tensor_release(y);
    /* a crop on one side and reflection on the other */
    int64_t mix[2] = {-1, 2};
    CHECK_OK(kdx_pad(x, mix, 2, KDX_PAD_REFLECT, 0, &y));
    double wm[5] = {1, 2, 3, 2, 1};
    CHECK(all_near(y, wm, 5, 0));
    kdx_tensor_release(y);
    kdx_tensor_release(x);

    /* 2-D: last dim (1,0), first dim (0,1) */
    for (int k = 0; k < 3; k++) {
        kdx_dtype dt = k == 2 ? KDX_DTYPE_I64 : FLOATS[k];
        x = iota(dt, 2, s23, 1); /* [[0 1 2] [3 4 5]] */
        int64_t p[4] = {1, 0, 0, 1};
        CHECK_OK(kdx_pad(x, p, 4, KDX_PAD_CONSTANT, 9, &y));
        int64_t s34[2] = {3, 4};
        double w[12] = {9, 0, 1, 2, 9, 3, 4, 5, 9, 9, 9, 9};
        CHECK(shape_is(y, 2, s34) && all_near(y, w, 12, 0) && kdx_tensor_dtype(y) == dt);
        kdx_tensor_release(y);
        int64_t p2[4] = {1, 1, 1, 1};
        CHECK_OK(kdx_pad(x, p2, 4, KDX_PAD_REFLECT, 0, &y));
        double w2[20] = {4, 3, 4, 5, 4, 1, 0, 1, 2, 1, 4, 3, 4, 5, 4, 1, 0, 1, 2, 1};
        CHECK(all_near(y, w2, 20, 0));
        kdx_tensor_release(y);
        CHECK_OK(kdx_pad(x, p2, 4, KDX_PAD_REPLICATE, 0, &y));
        double w3[20] = {0, 0, 1, 2, 2, 0, 0, 1, 2, 2, 3, 3, 4, 5, 5, 3, 3, 4, 5, 5};
        CHECK(all_near(y, w3, 20, 0));
        kdx_tensor_release(y);
        kdx_tensor_release(x);
    }
    /* a transposed input */
    x = iota(KDX_DTYPE_F64, 2, s23, 1);
    kdx_tensor *xt = NULL;
    CHECK_OK(kdx_transpose(x, 0, 1, &xt)); /* [[0 3] [1 4] [2 5]] */
    int64_t p1[2] = {0, 1};
    CHECK_OK(kdx_pad(xt, p1, 2, KDX_PAD_REPLICATE, 0, &y));
    double wt[9] = {0, 3, 3, 1, 4, 4, 2, 5, 5};
    CHECK(all_near(y, wt, 9, 0));
    kdx_tensor_release(y);
    /* no pads: a copy */
    CHECK_OK(kdx_pad(xt, NULL, 0, KDX_PAD_CONSTANT, 0, &y));
    CHECK(y && kdx_tensor_storage_id(y) != kdx_tensor_storage_id(x) && at(y, 1) == 3);
    kdx_tensor_release(y);
    y = NULL;
    /* errors */
    int64_t big[2] = {3, 0}, neg[2] = {-2, -2}, three[3] = {1, 1, 1}, many[6] = {1, 1, 1, 1, 1, 1};
    CHECK_FAILS(kdx_pad(x, big, 2, KDX_PAD_REFLECT, 0, &y), KDX_ESHAPE); /* pad 3 >= size 3 */
    CHECK_FAILS(kdx_pad(x, neg, 2, KDX_PAD_CONSTANT, 0, &y), KDX_ESHAPE);
    CHECK(strstr(kdx_last_error(), "pad:") != NULL);
    CHECK_FAILS(kdx_pad(x, three, 3, KDX_PAD_CONSTANT, 0, &y), KDX_EINVAL);
    CHECK_FAILS(kdx_pad(x, many, 6, KDX_PAD_CONSTANT, 0, &y), KDX_ESHAPE);
    CHECK_FAILS(kdx_pad(x, p1, 2, (kdx_pad_mode)9, 0, &y), KDX_EINVAL);
    CHECK_FAILS(kdx_pad(NULL, p1, 2, KDX_PAD_CONSTANT, 0, &y), KDX_EINVAL);
    CHECK_FAILS(kdx_pad(x, NULL, 2, KDX_PAD_CONSTANT, 0, &y), KDX_EINVAL);
    CHECK(y == NULL);
    kdx_tensor_release(xt);
    kdx_tensor_release(x);
}

/* ---- dropout ---- */

static void test_dropout(void)
{
    int64_t n = 20000;
    kdx_tensor *x = NULL, *y = NULL, *m = NULL, *y2 = NULL, *m2 = NULL;
    CHECK_OK(kdx_ones(KDX_DTYPE_F32, 1, &n, &x));
    kdx_generator *g = NULL;
    CHECK_OK(kdx_generator_new(123, &g));
    CHECK_OK(kdx_dropout(x, 0.25, g, &y, &m));
    int64_t kept = 0, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = at(m, i);
        if (v == 0) continue;
        kept++;
        if (fabs(v - 1 / 0.75) > 1e-6 || at(y, i) != v) bad++;
    }
    CHECK(bad == 0);
    CHECK(fabs((double)kept / (double)n - 0.75) < 0.02);
    /* same seed, same mask */
    kdx_generator_seed(g, 123);
    CHECK_OK(kdx_dropout(x, 0.25, g, &y2, NULL));
    int same = 1;
    for (int64_t i = 0; i < n; i++) same &= at(y2, i) == at(y, i);
    CHECK(same);
    kdx_tensor_release(y);
    kdx_tensor_release(m);
    kdx_tensor_release(y2);
    /* p = 0 keeps everything, p = 1 drops everything */
    CHECK_OK(kdx_dropout(x, 0, g, &y, &m));
    CHECK(y && at(y, 0) == 1 && at(m, n - 1) == 1);
    kdx_tensor_release(y);
    kdx_tensor_release(m);
    CHECK_OK(kdx_dropout(x, 1, NULL, &y, &m2));
    int zeros = 1;
    for (int64_t i = 0; i < n; i++) zeros &= at(y, i) == 0 && at(m2, i) == 0;
    CHECK(zeros);
    kdx_tensor_release(y);
    kdx_tensor_release(m2);
    y = NULL;
    CHECK_FAILS(kdx_dropout(x, 1.5, g, &y, NULL), KDX_EINVAL);
    CHECK_FAILS(kdx_dropout(x, -0.1, g, &y, NULL), KDX_EINVAL);
    CHECK_FAILS(kdx_dropout(x, NAN, g, &y, NULL), KDX_EINVAL);
    CHECK(y == NULL);
    kdx_tensor *xi = NULL;
    CHECK_OK(kdx_zeros(KDX_DTYPE_I64, 1, &n, &xi));
    CHECK_FAILS(kdx_dropout(xi, 0.5, g, &y, NULL), KDX_EDTYPE);
    kdx_tensor_release(xi);
    kdx_tensor_release(x);
    kdx_generator_free(g);
}

/* ---- batch_norm ---- */

static void test_batch_norm(void)
{
    for (int k = 0; k < 2; k++) {
        kdx_dtype dt = FLOATS[k];
        double tol = dt == KDX_DTYPE_F32 ? 1e-5 : 1e-12;
        /* x [4,2]: channel 0 = 1,2,3,4 (mean 2.5, biased var 1.25, unbiased 5/3);
           channel 1 = 0,0,0,8 (mean 2, biased var 12, unbiased 16) */
        int64_t xs[2] = {4, 2}, c = 2;
        double xv[8] = {1, 0, 2, 0, 3, 0, 4, 8};
        double rmv[2] = {0, 1}, rvv[2] = {1, 2}, wv[2] = {2, 1}, bv[2] = {0.5, -1};
        kdx_tensor *x = mk(dt, 2, xs, xv), *rm = mk(dt, 1, &c, rmv), *rv = mk(dt, 1, &c, rvv);
        kdx_tensor *w = mk(dt, 1, &c, wv), *b = mk(dt, 1, &c, bv), *y = NULL, *sm = NULL, *si = NULL;
        double eps = 1e-5;
        CHECK_OK(kdx_batch_norm(x, rm, rv, w, b, 1, 0.1, eps, &y, &sm, &si));
        double i0 = 1 / sqrt(1.25 + eps), i1 = 1 / sqrt(12 + eps), want[8];
        for (int r = 0; r < 4; r++) {
            want[2 * r] = (xv[2 * r] - 2.5) * i0 * 2 + 0.5;
            want[2 * r + 1] = (xv[2 * r + 1] - 2) * i1 * 1 - 1;
        }
        CHECK(all_near(y, want, 8, tol * 10));
        double wsm[2] = {2.5, 2}, wsi[2] = {i0, i1};
        CHECK(all_near(sm, wsm, 2, tol) && all_near(si, wsi, 2, tol));
        double wrm[2] = {0.9 * 0 + 0.1 * 2.5, 0.9 * 1 + 0.1 * 2}, wrv[2] = {0.9 * 1 + 0.1 * 5. / 3, 0.9 * 2 + 0.1 * 16};
        CHECK(all_near(rm, wrm, 2, tol) && all_near(rv, wrv, 2, tol));
        kdx_tensor_release(y);
        kdx_tensor_release(sm);
        kdx_tensor_release(si);
        /* eval: the running statistics, left unchanged */
        CHECK_OK(kdx_batch_norm(x, rm, rv, NULL, NULL, 0, 0.1, eps, &y, NULL, &si));
        double e0 = 1 / sqrt(wrv[0] + eps), e1 = 1 / sqrt(wrv[1] + eps);
        for (int r = 0; r < 4; r++) {
            want[2 * r] = (xv[2 * r] - wrm[0]) * e0;
            want[2 * r + 1] = (xv[2 * r + 1] - wrm[1]) * e1;
        }
        CHECK(all_near(y, want, 8, tol * 10) && all_near(rm, wrm, 2, tol));
        double wsi2[2] = {e0, e1};
        CHECK(all_near(si, wsi2, 2, tol));
        kdx_tensor_release(y);
        kdx_tensor_release(si);
        /* training without running statistics */
        CHECK_OK(kdx_batch_norm(x, NULL, NULL, NULL, NULL, 1, 0.1, 0, &y, NULL, NULL));
        CHECK(y && fabs(at(y, 0) - (1 - 2.5) / sqrt(1.25)) < tol * 10);
        kdx_tensor_release(y);
        kdx_tensor *objs[] = {x, rm, rv, w, b};
        for (int i = 0; i < 5; i++) kdx_tensor_release(objs[i]);
    }
    /* [N,C,L] = [2,2,2]: statistics over N and L */
    int64_t xs[3] = {2, 2, 2};
    kdx_tensor *x = iota(KDX_DTYPE_F64, 3, xs, 1), *y = NULL, *sm = NULL; /* ch0: 0 1 4 5, ch1: 2 3 6 7 */
    CHECK_OK(kdx_batch_norm(x, NULL, NULL, NULL, NULL, 1, 0.1, 0, &y, &sm, NULL));
    double wsm[2] = {2.5, 4.5};
    CHECK(all_near(sm, wsm, 2, 1e-12));
    double v = (2.5 * 2.5 + 1.5 * 1.5) / 2; /* biased var of 0 1 4 5: (6.25+2.25)*2/4 */
    CHECK(y && fabs(at(y, 4) - (4 - 2.5) / sqrt(v)) < 1e-12 && fabs(at(y, 7) - (7 - 4.5) / sqrt(v)) < 1e-12);
    kdx_tensor_release(y);
    kdx_tensor_release(sm);
    y = NULL;
    /* errors */
    int64_t c3 = 3, one[2] = {1, 2}, s1 = 2;
    kdx_tensor *r3 = NULL, *rf = NULL, *x1 = NULL, *r2 = NULL;
    CHECK_OK(kdx_zeros(KDX_DTYPE_F64, 1, &c3, &r3));
    CHECK_OK(kdx_zeros(KDX_DTYPE_F32, 1, &s1, &rf));
    CHECK_OK(kdx_ones(KDX_DTYPE_F64, 1, &s1, &r2));
    CHECK_OK(kdx_zeros(KDX_DTYPE_F64, 2, one, &x1));
    CHECK_FAILS(kdx_batch_norm(x, r3, r3, NULL, NULL, 1, 0.1, 1e-5, &y, NULL, NULL), KDX_ESHAPE);
    CHECK_FAILS(kdx_batch_norm(x, rf, rf, NULL, NULL, 1, 0.1, 1e-5, &y, NULL, NULL), KDX_EDTYPE);
    CHECK_FAILS(kdx_batch_norm(x, NULL, NULL, NULL, NULL, 0, 0.1, 1e-5, &y, NULL, NULL), KDX_EINVAL);
    CHECK_FAILS(kdx_batch_norm(x, r2, NULL, NULL, NULL, 1, 0.1, 1e-5, &y, NULL, NULL), KDX_EINVAL);
    CHECK_FAILS(kdx_batch_norm(x, NULL, NULL, NULL, NULL, 1, 0.1, -1, &y, NULL, NULL), KDX_EINVAL);
    CHECK_FAILS(kdx_batch_norm(x1, NULL, NULL, NULL, NULL, 1, 0.1, 1e-5, &y, NULL, NULL), KDX_ESHAPE);
    CHECK(strstr(kdx_last_error(), "more than 1 value per channel") != NULL);
    CHECK_OK(kdx_batch_norm(x1, r2, r2, NULL, NULL, 0, 0.1, 1e-5, &y, NULL, NULL)); /* eval is fine */
    kdx_tensor_release(y);
    y = NULL;
    kdx_tensor *x1d = NULL;
    CHECK_OK(kdx_zeros(KDX_DTYPE_F64, 1, &c3, &x1d));
    CHECK_FAILS(kdx_batch_norm(x1d, NULL, NULL, NULL, NULL, 1, 0.1, 1e-5, &y, NULL, NULL), KDX_ESHAPE);
    CHECK(y == NULL);
    /* a failed call leaves the running statistics alone */
    CHECK(at(r2, 0) == 1 && at(r2, 1) == 1);
    kdx_tensor *objs[] = {x, r3, rf, x1, r2, x1d};
    for (int i = 0; i < 6; i++) kdx_tensor_release(objs[i]);
}

/* ---- layer_norm ---- */

static void test_layer_norm(void)
{
    for (int k = 0; k < 2; k++) {
        kdx_dtype dt = FLOATS[k];
        double tol = dt == KDX_DTYPE_F32 ? 1e-5 : 1e-12;
        int64_t xs[2] = {2, 3}, c = 3;
        double xv[6] = {1, 2, 3, 4, 6, 8}, wv[3] = {1, 2, 3}, bv[3] = {0, 1, -1};
        kdx_tensor *x = mk(dt, 2, xs, xv), *w = mk(dt, 1, &c, wv), *b = mk(dt, 1, &c, bv), *y = NULL;
        double eps = 1e-5;
        CHECK_OK(kdx_layer_norm(x, 1, w, b, eps, &y));
        double r0 = 1 / sqrt(2. / 3 + eps), r1 = 1 / sqrt(8. / 3 + eps);
        double want[6] = {-r0 * 1 + 0, 0 * 2 + 1, r0 * 3 - 1, -2 * r1 * 1, 0 * 2 + 1, 2 * r1 * 3 - 1};
        CHECK(all_near(y, want, 6, tol * 10));
        kdx_tensor_release(y);
        /* over both dims: mean 4, biased var (9+4+1+0+4+16)/6 */
        CHECK_OK(kdx_layer_norm(x, 2, NULL, NULL, 0, &y));
        double r = 1 / sqrt(34. / 6);
        CHECK(y && fabs(at(y, 0) - (1 - 4) * r) < tol * 10 && fabs(at(y, 5) - (8 - 4) * r) < tol * 10);
        kdx_tensor_release(y);
        y = NULL;
        CHECK_FAILS(kdx_layer_norm(x, 2, w, NULL, eps, &y), KDX_ESHAPE); /* w must be [2,3] */
        CHECK_FAILS(kdx_layer_norm(x, 0, NULL, NULL, eps, &y), KDX_EINVAL);
        CHECK_FAILS(kdx_layer_norm(x, 3, NULL, NULL, eps, &y), KDX_EINVAL);
        CHECK(y == NULL);
        kdx_tensor_release(x);
        kdx_tensor_release(w);
        kdx_tensor_release(b);
    }
    int64_t xs[2] = {2, 3}, c = 3;
    kdx_tensor *x = iota(KDX_DTYPE_F32, 2, xs, 1), *wd = iota(KDX_DTYPE_F64, 1, &c, 1), *xi = iota(KDX_DTYPE_I64, 2, xs, 1);
    kdx_tensor *y = NULL;
    CHECK_FAILS(kdx_layer_norm(x, 1, wd, NULL, 1e-5, &y), KDX_EDTYPE);
    CHECK_FAILS(kdx_layer_norm(xi, 1, NULL, NULL, 1e-5, &y), KDX_EDTYPE);
    CHECK_FAILS(kdx_layer_norm(NULL, 1, NULL, NULL, 1e-5, &y), KDX_EINVAL);
    kdx_tensor_release(x);
    kdx_tensor_release(wd);
    kdx_tensor_release(xi);
}

/* ---- embedding ---- */

static void test_embedding(void)
{
    int64_t ws[2] = {3, 2}, is[2] = {2, 2};
    double wv[6] = {0, 1, 10, 11, 20, 21}, iv[4] = {2, 0, 1, 1};
    kdx_tensor *w = mk(KDX_DTYPE_F32, 2, ws, wv), *idx = mk(KDX_DTYPE_I64, 2, is, iv), *y = NULL;
    CHECK_OK(kdx_embedding(w, idx, &y));
    int64_t s[3] = {2, 2, 2};
    double want[8] = {20, 21, 0, 1, 10, 11, 10, 11};
    CHECK(shape_is(y, 3, s) && all_near(y, want, 8, 0));
    kdx_tensor_release(y);
    /* a 0-d index gives one row */
    kdx_tensor *i0 = NULL;
    CHECK_OK(kdx_scalar(KDX_DTYPE_I64, 1, &i0));
    CHECK_OK(kdx_embedding(w, i0, &y));
    int64_t s2[1] = {2};
    CHECK(shape_is(y, 1, s2) && at(y, 0) == 10 && at(y, 1) == 11);
    kdx_tensor_release(y);
    y = NULL;
    /* errors: out of range, negative, float indices, 1-D weight */
    double bad[4] = {0, 3, 1, 1}, negv[4] = {0, -1, 1, 1};
    kdx_tensor *ib = mk(KDX_DTYPE_I64, 2, is, bad), *in = mk(KDX_DTYPE_I64, 2, is, negv);
    kdx_tensor *fi = mk(KDX_DTYPE_F32, 2, is, iv), *w1 = mk(KDX_DTYPE_F32, 1, ws, wv);
    CHECK_FAILS(kdx_embedding(w, ib, &y), KDX_EINDEX);
    CHECK(strstr(kdx_last_error(), "embedding: index 3") != NULL);
    CHECK_FAILS(kdx_embedding(w, in, &y), KDX_EINDEX);
    CHECK_FAILS(kdx_embedding(w, fi, &y), KDX_EDTYPE);
    CHECK_FAILS(kdx_embedding(w1, idx, &y), KDX_ESHAPE);
    CHECK_FAILS(kdx_embedding(idx, idx, &y), KDX_EDTYPE);
    CHECK_FAILS(kdx_embedding(w, NULL, &y), KDX_EINVAL);
    CHECK(y == NULL);
    kdx_tensor *objs[] = {w, idx, i0, ib, in, fi, w1};
    for (int i = 0; i < 7; i++) kdx_tensor_release(objs[i]);
}

static void run_all(void)
{
    test_interpolate();
    test_pad();
    test_dropout();
    test_batch_norm();
    test_layer_norm();
    test_embedding();
}
int main(void)
{
    int64_t live = kdx_debug_live_tensors();
    int threads = kdx_get_num_threads();
    run_all();
    /* again with an odd thread count, so the parallel loops split unevenly */
    kdx_set_num_threads(3);
    run_all();
    kdx_set_num_threads(threads);
    /* every tensor made above was released, including on the error paths */
    CHECK(kdx_debug_live_tensors() == live);
    return CT_REPORT("test_nn_layers");
}
