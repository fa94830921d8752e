/* test_nn.c — the neural-network kernels, from C: softmax, conv2d (small
   cases computed by hand, im2col against a direct loop) and pooling, and the
   errors bad input gets. test_nn_layers.c has the other layers' kernels. */
#include "nn_test.h"

/* ---- softmax / log_softmax ---- */

static void test_softmax(void)
{
    for (int k = 0; k < 2; k++) {
        kdx_dtype dt = FLOATS[k];
        double tol = dt == KDX_DTYPE_F32 ? 1e-6 : 1e-12;
        int64_t s23[2] = {2, 3};
        double v[6] = {1, 2, 3, 0, 0, 0};
        kdx_tensor *x = mk(dt, 2, s23, v), *y = NULL, *ly = NULL;
        CHECK_OK(kdx_softmax(x, 1, &y));
        double e = exp(1) + exp(2) + exp(3);
        double want[6] = {exp(1) / e, exp(2) / e, exp(3) / e, 1. / 3, 1. / 3, 1. / 3};
        CHECK(all_near(y, want, 6, tol));
        CHECK_OK(kdx_log_softmax(x, -1, &ly));
        double lwant[6];
        for (int i = 0; i < 6; i++) lwant[i] = log(want[i]);
        CHECK(all_near(ly, lwant, 6, tol * 4));
        kdx_tensor_release(y);
        /* along dim 0: column pairs */
        CHECK_OK(kdx_softmax(x, 0, &y));
        double c0 = 1 / (1 + exp(-1.0));
        double want0[6] = {c0, 1 / (1 + exp(-2.0)), 1 / (1 + exp(-3.0)), 1 - c0, 1 - 1 / (1 + exp(-2.0)),
                           1 - 1 / (1 + exp(-3.0))};
        CHECK(all_near(y, want0, 6, tol));
        kdx_tensor_release(x);
        kdx_tensor_release(y);
        kdx_tensor_release(ly);

        /* logits of +-1e4 along a middle dim of [2,3,2]: finite, sums to 1 */
        int64_t s232[3] = {2, 3, 2};
        double big[12] = {1e4, -1e4, -1e4, 1e4, 0, 0, -1e4, -1e4, -1e4, -1e4, -1e4, 1e4};
        x = mk(dt, 3, s232, big);
        CHECK_OK(kdx_softmax(x, 1, &y));
        CHECK_OK(kdx_log_softmax(x, 1, &ly));
        int finite = 1;
        for (int i = 0; i < 12; i++) finite &= isfinite(at(y, i)) && !isnan(at(ly, i));
        CHECK(finite);
        for (int o = 0; o < 2; o++)
            for (int in = 0; in < 2; in++) {
                double s = 0;
                for (int j = 0; j < 3; j++) s += at(y, o * 6 + j * 2 + in);
                CHECK_NEAR(s, 1.0, 1e-6);
            }
        CHECK_NEAR(at(y, 0), 1.0, 1e-6);      /* [0,0,0] = 1e4 wins */
        CHECK_NEAR(at(ly, 0), 0.0, 1e-6);
        CHECK_NEAR(at(ly, 2), -2e4, 1e-2);    /* -1e4 - 1e4 */
        CHECK_NEAR(at(y, 6), 1.0 / 3, 1e-6);  /* three equal -1e4 logits */
        CHECK_NEAR(at(ly, 6), -log(3.0), 1e-5);
        kdx_tensor_release(x);
        kdx_tensor_release(y);
        kdx_tensor_release(ly);
    }
    /* a transposed (non-contiguous) input gives the softmax of its values */
    int64_t s23[2] = {2, 3};
    double v[6] = {1, 5, 2, 7, 3, 0};
    kdx_tensor *x = mk(KDX_DTYPE_F64, 2, s23, v), *xt = NULL, *y = NULL, *xtc = NULL, *y2 = NULL;
    CHECK_OK(kdx_transpose(x, 0, 1, &xt));
    CHECK_OK(kdx_softmax(xt, 1, &y));
    CHECK_OK(kdx_contiguous(xt, &xtc));
    CHECK_OK(kdx_softmax(xtc, 1, &y2));
    double w2[6];
    for (int i = 0; i < 6; i++) w2[i] = at(y2, i);
    CHECK(all_near(y, w2, 6, 0));
    kdx_tensor_release(x);
    kdx_tensor_release(xt);
    kdx_tensor_release(y);
    kdx_tensor_release(xtc);
    kdx_tensor_release(y2);

    /* 0-d: softmax is 1, log_softmax 0 */
    kdx_tensor *s = NULL;
    CHECK_OK(kdx_scalar(KDX_DTYPE_F32, 3.5, &s));
    CHECK_OK(kdx_softmax(s, 0, &y));
    CHECK(y && kdx_tensor_ndim(y) == 0 && at(y, 0) == 1.0);
    kdx_tensor_release(y);
    CHECK_OK(kdx_log_softmax(s, -1, &y));
    CHECK(y && at(y, 0) == 0.0);
    kdx_tensor_release(y);
    kdx_tensor_release(s);

    /* errors */
    kdx_tensor *xi = iota(KDX_DTYPE_I64, 2, s23, 1), *xf = iota(KDX_DTYPE_F32, 2, s23, 1);
    y = NULL;
    CHECK_FAILS(kdx_softmax(xi, 1, &y), KDX_EDTYPE);
    CHECK(strstr(kdx_last_error(), "softmax") != NULL);
    CHECK_FAILS(kdx_softmax(xf, 2, &y), KDX_EINDEX);
    CHECK_FAILS(kdx_log_softmax(xf, -3, &y), KDX_EINDEX);
    CHECK_FAILS(kdx_softmax(NULL, 0, &y), KDX_EINVAL);
    CHECK_FAILS(kdx_softmax(xf, 0, NULL), KDX_EINVAL);
    CHECK(y == NULL);
    kdx_tensor_release(xi);
    kdx_tensor_release(xf);
}

/* ---- conv2d ---- */

/* Direct 7-loop convolution in double, the reference for im2col + GEMM. */
static void conv_naive(const kdx_tensor *x, const kdx_tensor *w, const kdx_tensor *b, const kdx_conv_opts *o,
                       double *y, int64_t OH, int64_t OW)
{
    const int64_t *xs = kdx_tensor_shape(x), *ws = kdx_tensor_shape(w);
    int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], O = ws[0], Cg = ws[1], kh = ws[2], kw = ws[3];
    int64_t Og = O / o->groups;
    for (int64_t n = 0; n < N; n++)
        for (int64_t oc = 0; oc < O; oc++) {
            int64_t gi = oc / Og;
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double s = b ? at(b, oc) : 0;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t i = 0; i < kh; i++)
                            for (int64_t j = 0; j < kw; j++) {
                                int64_t ih = oh * o->stride[0] - o->padding[0] + i * o->dilation[0];
                                int64_t iw = ow * o->stride[1] - o->padding[1] + j * o->dilation[1];
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                s += at(x, ((n * C + gi * Cg + c) * H + ih) * W + iw) *
                                     at(w, ((oc * Cg + c) * kh + i) * kw + j);
                            }
                    y[((n * O + oc) * OH + oh) * OW + ow] = s;
                }
        }
}

static kdx_tensor *randt(kdx_generator *g, kdx_dtype dt, int nd, const int64_t *shape)
{
    kdx_tensor *t = NULL;
    kdx_randn(g, dt, nd, shape, &t);
    return t;
}

/* conv2d of random data equals the direct loop. */
static void conv_vs_naive(kdx_generator *g, kdx_dtype dt, const int64_t xs[4], const int64_t ws[4], int bias,
                          kdx_conv_opts o, double tol)
{
    kdx_tensor *x = randt(g, dt, 4, xs), *w = randt(g, dt, 4, ws), *b = NULL, *y = NULL;
    if (bias) b = randt(g, dt, 1, ws);
    CHECK_OK(kdx_conv2d(x, w, b, &o, &y));
    if (y) {
        const int64_t *ys = kdx_tensor_shape(y);
        int64_t n = kdx_tensor_numel(y);
        double *ref = malloc((size_t)n * sizeof *ref);
        conv_naive(x, w, b, &o, ref, ys[2], ys[3]);
        double worst = 0;
        for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(at(y, i) - ref[i]));
        if (worst > tol) fprintf(stderr, "  conv2d max error %g\n", worst);
        CHECK(worst <= tol);
        free(ref);
    }
    kdx_tensor_release(x);
    kdx_tensor_release(w);
    kdx_tensor_release(b);
    kdx_tensor_release(y);
}

static void test_conv2d_by_hand(void)
{
    for (int k = 0; k < 2; k++) {
        kdx_dtype dt = FLOATS[k];
        int64_t xs[4] = {1, 1, 4, 4}, ws[4] = {1, 1, 3, 3}, one = 1;
        double ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, bv = 1;
        kdx_tensor *x = iota(dt, 4, xs, 1), *w = mk(dt, 4, ws, ones), *b = mk(dt, 1, &one, &bv), *y = NULL;
        kdx_conv_opts o = kdx_conv_opts_default();
        CHECK(o.stride[0] == 1 && o.padding[1] == 0 && o.dilation[0] == 1 && o.groups == 1);
        /* 3x3 box sums of 0..15 on 4x4, plus bias 1 */
        CHECK_OK(kdx_conv2d(x, w, b, &o, &y));
        int64_t s22[4] = {1, 1, 2, 2};
        double want[4] = {46, 55, 82, 91};
        CHECK(shape_is(y, 4, s22) && all_near(y, want, 4, 1e-5));
        kdx_tensor_release(y);
        /* padding 1 keeps 4x4; the corner sees 0+1+4+5 */
        o.padding[0] = o.padding[1] = 1;
        CHECK_OK(kdx_conv2d(x, w, NULL, &o, &y));
        CHECK(y && kdx_tensor_shape(y)[2] == 4 && at(y, 0) == 10 && at(y, 5) == 45 && at(y, 15) == 15 + 14 + 11 + 10);
        kdx_tensor_release(y);
        /* stride 2, padding 1 */
        o.stride[0] = o.stride[1] = 2;
        CHECK_OK(kdx_conv2d(x, w, NULL, &o, &y));
        double want_s2[4] = {10, 24, 51, 90};
        CHECK(shape_is(y, 4, s22) && all_near(y, want_s2, 4, 1e-5));
        kdx_tensor_release(y);
        kdx_tensor_release(w);
        /* 2x2 kernel, dilation 2: taps (0,0),(0,2),(2,0),(2,2) */
        int64_t w2s[4] = {1, 1, 2, 2};
        w = mk(dt, 4, w2s, ones);
        o = kdx_conv_opts_default();
        o.dilation[0] = o.dilation[1] = 2;
        CHECK_OK(kdx_conv2d(x, w, NULL, &o, &y));
        double want_d[4] = {20, 24, 36, 40};
        CHECK(shape_is(y, 4, s22) && all_near(y, want_d, 4, 1e-5));
        kdx_tensor_release(y);
        kdx_tensor_release(w);
        kdx_tensor_release(x);
        kdx_tensor_release(b);

        /* groups=2 (depthwise 1x1): channel 0 times 2, channel 1 times 3 */
        int64_t gx[4] = {1, 2, 2, 2}, gw[4] = {2, 1, 1, 1};
        double wv[2] = {2, 3};
        x = iota(dt, 4, gx, 1);
        w = mk(dt, 4, gw, wv);
        o = kdx_conv_opts_default();
        o.groups = 2;
        CHECK_OK(kdx_conv2d(x, w, NULL, &o, &y));
        double want_g[8] = {0, 2, 4, 6, 12, 15, 18, 21};
        CHECK(all_near(y, want_g, 8, 1e-6));
        kdx_tensor_release(y);
        kdx_tensor_release(w);
        kdx_tensor_release(x);
    }
}

static void test_conv2d_random(void)
{
    kdx_generator *g = NULL;
    CHECK_OK(kdx_generator_new(7, &g));
    for (int k = 0; k < 2; k++) {
        kdx_dtype dt = FLOATS[k];
        double tol = dt == KDX_DTYPE_F32 ? 1e-4 : 1e-10;
        kdx_conv_opts o = kdx_conv_opts_default();
        int64_t x1[4] = {3, 4, 7, 6}, w1[4] = {6, 4, 3, 2};
        conv_vs_naive(g, dt, x1, w1, 1, o, tol);
        /* stride, asymmetric padding, dilation, groups together */
        o.stride[0] = 2, o.stride[1] = 1, o.padding[0] = 1, o.padding[1] = 2, o.dilation[0] = 2, o.dilation[1] = 1;
        o.groups = 2;
        int64_t w2[4] = {6, 2, 3, 2};
        conv_vs_naive(g, dt, x1, w2, 1, o, tol);
        /* depthwise, one sample (the GEMM writes straight into y) */
        o = kdx_conv_opts_default();
        o.groups = 4, o.padding[0] = o.padding[1] = 1;
        int64_t x3[4] = {1, 4, 5, 5}, w3[4] = {8, 1, 3, 3};
        conv_vs_naive(g, dt, x3, w3, 1, o, tol);
        /* 1x1 kernel on one sample skips im2col */
        o = kdx_conv_opts_default();
        int64_t w4[4] = {3, 4, 1, 1};
        conv_vs_naive(g, dt, x3, w4, 0, o, tol);
        /* stride larger than the kernel */
        o.stride[0] = o.stride[1] = 3;
        int64_t x5[4] = {2, 4, 8, 8}, w5[4] = {2, 4, 2, 2};
        conv_vs_naive(g, dt, x5, w5, 0, o, tol);
    }
    /* big enough that the batch is convolved in chunks (2 + 1 and 1 + 1 + 1 samples) */
    kdx_conv_opts o = kdx_conv_opts_default();
    o.padding[0] = o.padding[1] = 1;
    int64_t xa[4] = {3, 24, 256, 256}, wa[4] = {2, 24, 3, 3};
    conv_vs_naive(g, KDX_DTYPE_F32, xa, wa, 1, o, 2e-3);
    int64_t xb[4] = {3, 32, 256, 256}, wb[4] = {2, 32, 3, 3};
    conv_vs_naive(g, KDX_DTYPE_F32, xb, wb, 0, o, 2e-3);

    /* a permuted (non-contiguous) input gives the same result as its copy */
    int64_t xs[4] = {2, 5, 5, 3}, ws[4] = {4, 3, 3, 3};
    int perm[4] = {0, 3, 1, 2};
    kdx_tensor *x = randt(g, KDX_DTYPE_F64, 4, xs), *xp = NULL, *xpc = NULL, *w = randt(g, KDX_DTYPE_F64, 4, ws);
    kdx_tensor *y1 = NULL, *y2 = NULL;
    CHECK_OK(kdx_permute(x, perm, 4, &xp));
    CHECK_OK(kdx_contiguous(xp, &xpc));
    CHECK_OK(kdx_conv2d(xp, w, NULL, NULL, &y1)); /* NULL options: the defaults */
    CHECK_OK(kdx_conv2d(xpc, w, NULL, NULL, &y2));
    if (y1 && y2) {
        int64_t n = kdx_tensor_numel(y1);
        double *r = malloc((size_t)n * sizeof *r);
        for (int64_t i = 0; i < n; i++) r[i] = at(y2, i);
        CHECK(all_near(y1, r, n, 0));
        free(r);
    }
    kdx_tensor *objs[] = {x, xp, xpc, w, y1, y2};
    for (int i = 0; i < 6; i++) kdx_tensor_release(objs[i]);
    kdx_generator_free(g);
}

static void test_conv2d_errors(void)
{
    int64_t xs[4] = {1, 3, 5, 5}, ws[4] = {4, 3, 3, 3}, x3s[3] = {3, 5, 5}, bs = 5;
    kdx_tensor *x = iota(KDX_DTYPE_F32, 4, xs, 1), *w = iota(KDX_DTYPE_F32, 4, ws, 1), *y = NULL;
    kdx_tensor *x3 = iota(KDX_DTYPE_F32, 3, x3s, 1), *xi = iota(KDX_DTYPE_I64, 4, xs, 1);
    kdx_tensor *wd = iota(KDX_DTYPE_F64, 4, ws, 1), *b = iota(KDX_DTYPE_F32, 1, &bs, 1);
    kdx_conv_opts o = kdx_conv_opts_default();
    CHECK_FAILS(kdx_conv2d(x3, w, NULL, &o, &y), KDX_ESHAPE);
    CHECK(strstr(kdx_last_error(), "conv2d: x must be 4-D") != NULL);
    CHECK_FAILS(kdx_conv2d(xi, w, NULL, &o, &y), KDX_EDTYPE);
    CHECK_FAILS(kdx_conv2d(x, wd, NULL, &o, &y), KDX_EDTYPE);
    CHECK_FAILS(kdx_conv2d(x, w, b, &o, &y), KDX_ESHAPE); /* bias [5] for 4 outputs */
    CHECK_FAILS(kdx_conv2d(NULL, w, NULL, &o, &y), KDX_EINVAL);
    CHECK_FAILS(kdx_conv2d(x, NULL, NULL, &o, &y), KDX_EINVAL);
    o.stride[1] = 0;
    CHECK_FAILS(kdx_conv2d(x, w, NULL, &o, &y), KDX_EINVAL);
    o = kdx_conv_opts_default();
    o.padding[0] = -1;
    CHECK_FAILS(kdx_conv2d(x, w, NULL, &o, &y), KDX_EINVAL);
    o = kdx_conv_opts_default();
    o.dilation[0] = 0;
    CHECK_FAILS(kdx_conv2d(x, w, NULL, &o, &y), KDX_EINVAL);
    o = kdx_conv_opts_default();
    o.dilation[0] = 3; /* dilated kernel 7 > 5 */
    CHECK_FAILS(kdx_conv2d(x, w, NULL, &o, &y), KDX_ESHAPE);
    o = kdx_conv_opts_default();
    o.groups = 0;
    CHECK_FAILS(kdx_conv2d(x, w, NULL, &o, &y), KDX_EINVAL);
    o.groups = 3; /* weight [4,3,..] with groups 3 wants 9 channels */
    CHECK_FAILS(kdx_conv2d(x, w, NULL, &o, &y), KDX_ESHAPE);
    CHECK(strstr(kdx_last_error(), "groups=3") != NULL);
    CHECK(y == NULL);
    int64_t wgs[4] = {4, 1, 3, 3};
    kdx_tensor *wg = iota(KDX_DTYPE_F32, 4, wgs, 1);
    CHECK_FAILS(kdx_conv2d(x, wg, NULL, &o, &y), KDX_ESHAPE); /* 4 outputs, groups 3 */
    kdx_tensor *objs[] = {x, w, x3, xi, wd, b, wg};
    for (int i = 0; i < 7; i++) kdx_tensor_release(objs[i]);
}

/* ---- pooling ---- */

static void test_max_pool(void)
{
    for (int k = 0; k < 2; k++) {
        kdx_dtype dt = FLOATS[k];
        int64_t xs[4] = {1, 1, 4, 4};
        kdx_tensor *x = iota(dt, 4, xs, 1), *y = NULL, *ix = NULL;
        kdx_pool_opts o = kdx_pool_opts_default(2, 2);
        CHECK(o.stride[0] == 2 && o.padding[0] == 0 && o.dilation[1] == 1 && !o.ceil_mode && o.count_include_pad);
        CHECK_OK(kdx_max_pool2d(x, &o, &y, &ix));
        double want[4] = {5, 7, 13, 15};
        CHECK(all_near(y, want, 4, 0) && all_near(ix, want, 4, 0));
        CHECK(ix && kdx_tensor_dtype(ix) == KDX_DTYPE_I64);
        kdx_tensor_release(y);
        kdx_tensor_release(ix);
        kdx_tensor_release(x);
        /* all-negative input, kernel 3, padding 1, stride 2: the padding is -inf, not 0 */
        x = iota(dt, 4, xs, -1);
        o = kdx_pool_opts_default(3, 3);
        o.stride[0] = o.stride[1] = 2;
        o.padding[0] = o.padding[1] = 1;
        CHECK_OK(kdx_max_pool2d(x, &o, &y, &ix));
        double wv[4] = {0, -1, -4, -5}, wi[4] = {0, 1, 4, 5};
        CHECK(all_near(y, wv, 4, 0) && all_near(ix, wi, 4, 0));
        kdx_tensor_release(y);
        kdx_tensor_release(ix);
        kdx_tensor_release(x);
        /* dilation 2, kernel 2 on 4x4: taps two apart */
        x = iota(dt, 4, xs, 1);
        o = kdx_pool_opts_default(2, 2);
        o.stride[0] = o.stride[1] = 1;
        o.dilation[0] = o.dilation[1] = 2;
        CHECK_OK(kdx_max_pool2d(x, &o, &y, NULL));
        double wd[4] = {10, 11, 14, 15};
        CHECK(all_near(y, wd, 4, 0));
        kdx_tensor_release(y);
        kdx_tensor_release(x);
        /* ceil mode on 5x5: a third, partial window */
        int64_t x5[3] = {1, 5, 5};
        x = iota(dt, 3, x5, 1);
        o = kdx_pool_opts_default(2, 2);
        CHECK_OK(kdx_max_pool2d(x, &o, &y, NULL));
        int64_t s2[3] = {1, 2, 2}, s3[3] = {1, 3, 3};
        CHECK(shape_is(y, 3, s2));
        kdx_tensor_release(y);
        o.ceil_mode = 1;
        CHECK_OK(kdx_max_pool2d(x, &o, &y, &ix));
        CHECK(shape_is(y, 3, s3) && at(y, 8) == 24 && at(ix, 8) == 24 && at(y, 2) == 9 && at(ix, 6) == 21);
        kdx_tensor_release(y);
        kdx_tensor_release(ix);
        kdx_tensor_release(x);
        /* ceil mode drops a window that would start in the right padding:
           H = 3, kernel 2, stride 2, padding 1 gives 2, not 3 */
        int64_t x33[4] = {1, 1, 3, 3};
        x = iota(dt, 4, x33, 1);
        o = kdx_pool_opts_default(2, 2);
        o.padding[0] = o.padding[1] = 1;
        o.ceil_mode = 1;
        CHECK_OK(kdx_max_pool2d(x, &o, &y, &ix));
        int64_t s22[4] = {1, 1, 2, 2};
        double w33[4] = {0, 2, 6, 8};
        CHECK(shape_is(y, 4, s22) && all_near(y, w33, 4, 0) && all_near(ix, w33, 4, 0));
        kdx_tensor_release(y);
        kdx_tensor_release(ix);
        kdx_tensor_release(x);
    }
    /* NaN wins its window */
    int64_t xs[4] = {1, 1, 2, 2};
    double v[4] = {1, NAN, 3, 2};
    kdx_tensor *x = mk(KDX_DTYPE_F32, 4, xs, v), *y = NULL, *ix = NULL;
    kdx_pool_opts o = kdx_pool_opts_default(2, 2);
    CHECK_OK(kdx_max_pool2d(x, &o, &y, &ix));
    CHECK(y && isnan(at(y, 0)) && at(ix, 0) == 1);
    kdx_tensor_release(y);
    kdx_tensor_release(ix);
    kdx_tensor_release(x);
}

static void test_avg_pool(void)
{
    for (int k = 0; k < 2; k++) {
        kdx_dtype dt = FLOATS[k];
        int64_t xs[4] = {1, 1, 4, 4};
        kdx_tensor *x = iota(dt, 4, xs, 1), *y = NULL;
        kdx_pool_opts o = kdx_pool_opts_default(2, 2);
        CHECK_OK(kdx_avg_pool2d(x, &o, &y));
        double want[4] = {2.5, 4.5, 10.5, 12.5};
        CHECK(all_near(y, want, 4, 1e-6));
        kdx_tensor_release(y);
        /* kernel 3, stride 2, padding 1: divisor 9 with count_include_pad, else the real count */
        o = kdx_pool_opts_default(3, 3);
        o.stride[0] = o.stride[1] = 2;
        o.padding[0] = o.padding[1] = 1;
        CHECK_OK(kdx_avg_pool2d(x, &o, &y));
        double wi[4] = {10. / 9, 24. / 9, 51. / 9, 90. / 9};
        CHECK(all_near(y, wi, 4, 1e-6));
        kdx_tensor_release(y);
        o.count_include_pad = 0;
        CHECK_OK(kdx_avg_pool2d(x, &o, &y));
        double we[4] = {10. / 4, 24. / 6, 51. / 6, 90. / 9};
        CHECK(all_near(y, we, 4, 1e-6));
        kdx_tensor_release(y);
        /* ceil mode: the extra window is clipped to the padded input (divisor
           2*2 = 4 with padding counted, 1 without) */
        o.ceil_mode = 1;
        o.count_include_pad = 1;
        CHECK_OK(kdx_avg_pool2d(x, &o, &y));
        int64_t s3[4] = {1, 1, 3, 3};
        CHECK(shape_is(y, 4, s3) && fabs(at(y, 8) - 15. / 4) < 1e-6 && fabs(at(y, 0) - 10. / 9) < 1e-6);
        kdx_tensor_release(y);
        o.count_include_pad = 0;
        CHECK_OK(kdx_avg_pool2d(x, &o, &y));
        CHECK(shape_is(y, 4, s3) && fabs(at(y, 8) - 15) < 1e-6 && fabs(at(y, 2) - (3 + 7) / 2.) < 1e-6);
        kdx_tensor_release(y);
        /* ceil mode without padding: the last window is 1x1, divisor 1 */
        int64_t x5[4] = {1, 1, 5, 5};
        kdx_tensor_release(x);
        x = iota(dt, 4, x5, 1);
        o = kdx_pool_opts_default(2, 2);
        o.ceil_mode = 1;
        CHECK_OK(kdx_avg_pool2d(x, &o, &y));
        CHECK(y && at(y, 8) == 24 && fabs(at(y, 2) - (4 + 9) / 2.) < 1e-6);
        kdx_tensor_release(y);
        kdx_tensor_release(x);
    }
}

static void test_pool_errors(void)
{
    int64_t xs[4] = {1, 1, 4, 4}, x2s[2] = {4, 4}, x0s[4] = {1, 0, 4, 4};
    kdx_tensor *x = iota(KDX_DTYPE_F32, 4, xs, 1), *x2 = iota(KDX_DTYPE_F32, 2, x2s, 1);
    kdx_tensor *xi = iota(KDX_DTYPE_I64, 4, xs, 1), *x0 = iota(KDX_DTYPE_F32, 4, x0s, 1), *y = NULL, *ix = NULL;
    kdx_pool_opts o = kdx_pool_opts_default(3, 3);
    o.padding[0] = 2; /* more than 3/2 */
    CHECK_FAILS(kdx_max_pool2d(x, &o, &y, &ix), KDX_EINVAL);
    CHECK(strstr(kdx_last_error(), "max_pool2d: padding") != NULL);
    CHECK_FAILS(kdx_avg_pool2d(x, &o, &y), KDX_EINVAL);
    o = kdx_pool_opts_default(0, 2);
    CHECK_FAILS(kdx_max_pool2d(x, &o, &y, NULL), KDX_EINVAL);
    o = kdx_pool_opts_default(2, 2);
    o.stride[0] = 0;
    CHECK_FAILS(kdx_max_pool2d(x, &o, &y, NULL), KDX_EINVAL);
    o = kdx_pool_opts_default(2, 2);
    o.dilation[1] = 2;
    CHECK_FAILS(kdx_avg_pool2d(x, &o, &y), KDX_EINVAL); /* avg_pool2d has no dilation */
    o = kdx_pool_opts_default(5, 5);
    CHECK_FAILS(kdx_max_pool2d(x, &o, &y, NULL), KDX_ESHAPE);
    CHECK(strstr(kdx_last_error(), "too small") != NULL);
    CHECK_FAILS(kdx_avg_pool2d(x, &o, &y), KDX_ESHAPE);
    o = kdx_pool_opts_default(2, 2);
    CHECK_FAILS(kdx_max_pool2d(x2, &o, &y, NULL), KDX_ESHAPE);
    CHECK_FAILS(kdx_max_pool2d(x0, &o, &y, NULL), KDX_ESHAPE);
    CHECK_FAILS(kdx_max_pool2d(xi, &o, &y, NULL), KDX_EDTYPE);
    CHECK_FAILS(kdx_max_pool2d(x, NULL, &y, NULL), KDX_EINVAL);
    CHECK_FAILS(kdx_max_pool2d(NULL, &o, &y, NULL), KDX_EINVAL);
    CHECK_FAILS(kdx_adaptive_avg_pool2d(x, 0, 2, &y), KDX_EINVAL);
    CHECK_FAILS(kdx_adaptive_avg_pool2d(x2, 2, 2, &y), KDX_ESHAPE);
    CHECK(y == NULL && ix == NULL);
    kdx_tensor_release(x);
    kdx_tensor_release(x2);
    kdx_tensor_release(xi);
    kdx_tensor_release(x0);
}

static void test_adaptive_pool(void)
{
    for (int k = 0; k < 2; k++) {
        kdx_dtype dt = FLOATS[k];
        /* 5 -> 3 bins: [0,2) [1,4) [3,5) */
        int64_t xs[4] = {1, 1, 1, 5};
        kdx_tensor *x = iota(dt, 4, xs, 1), *y = NULL;
        CHECK_OK(kdx_adaptive_avg_pool2d(x, 1, 3, &y));
        double want[3] = {0.5, 2, 3.5};
        CHECK(all_near(y, want, 3, 1e-6));
        kdx_tensor_release(y);
        /* 5 -> 1 is the global mean; 5 -> 5 the identity */
        CHECK_OK(kdx_adaptive_avg_pool2d(x, 1, 1, &y));
        CHECK(y && fabs(at(y, 0) - 2) < 1e-6);
        kdx_tensor_release(y);
        kdx_tensor_release(x);
        /* 2 -> 3 upsamples: bins [0,1) [0,2) [1,2), on a [C,H,W] input */
        int64_t x2[3] = {2, 2, 2};
        x = iota(dt, 3, x2, 1);
        CHECK_OK(kdx_adaptive_avg_pool2d(x, 3, 3, &y));
        int64_t s[3] = {2, 3, 3};
        double w2[9] = {0, 0.5, 1, 1, 1.5, 2, 2, 2.5, 3};
        CHECK(shape_is(y, 3, s) && all_near(y, w2, 9, 1e-6) && fabs(at(y, 13) - 5.5) < 1e-6);
        kdx_tensor_release(y);
        kdx_tensor_release(x);
    }
}

static void run_all(void)
{
    test_softmax();
    test_conv2d_by_hand();
    test_conv2d_random();
    test_conv2d_errors();
    test_max_pool();
    test_avg_pool();
    test_pool_errors();
    test_adaptive_pool();
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
    return CT_REPORT("test_nn");
}
