/* test_nn.c — the neural-network kernels, from C: small cases computed by
   hand, im2col conv2d against a direct loop, and the errors bad input gets. */
#include "ctest.h"
#include "kdx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A tensor of dtype dt holding v (converted). */
static kdx_tensor *mk(kdx_dtype dt, int nd, const int64_t *shape, const double *v)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    kdx_tensor *t = NULL;
    if (kdx_empty(dt, nd, shape, &t) != KDX_OK) return NULL;
    void *p = kdx_tensor_data(t);
    for (int64_t i = 0; i < n; i++) {
        if (dt == KDX_DTYPE_F32) ((float *)p)[i] = (float)v[i];
        else if (dt == KDX_DTYPE_F64) ((double *)p)[i] = v[i];
        else ((int64_t *)p)[i] = (int64_t)v[i];
    }
    return t;
}

/* 0, 1, 2, ... (n values) as a tensor. */
static kdx_tensor *iota(kdx_dtype dt, int nd, const int64_t *shape, double scale)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (double)i * scale;
    kdx_tensor *t = mk(dt, nd, shape, v);
    free(v);
    return t;
}

/* Flat element i of a contiguous tensor. */
static double at(const kdx_tensor *t, int64_t i)
{
    const void *p = kdx_tensor_data(t);
    switch (kdx_tensor_dtype(t)) {
    case KDX_DTYPE_F32: return ((const float *)p)[i];
    case KDX_DTYPE_F64: return ((const double *)p)[i];
    default: return (double)((const int64_t *)p)[i];
    }
}

/* The first n elements of t are within tol of want[] (t has at least n). */
static int all_near(const kdx_tensor *t, const double *want, int64_t n, double tol)
{
    if (!t || kdx_tensor_numel(t) < n) return 0;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(at(t, i) - want[i]) <= tol)) {
            fprintf(stderr, "  element %lld: got %.9g, want %.9g\n", (long long)i, at(t, i), want[i]);
            return 0;
        }
    return 1;
}

static int shape_is(const kdx_tensor *t, int nd, const int64_t *shape)
{
    if (!t || kdx_tensor_ndim(t) != nd) return 0;
    for (int i = 0; i < nd; i++)
        if (kdx_tensor_shape(t)[i] != shape[i]) return 0;
    return 1;
}

static const kdx_dtype FLOATS[2] = {KDX_DTYPE_F32, KDX_DTYPE_F64};

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
    test_softmax();
    test_conv2d_by_hand();
    test_conv2d_random();
    test_conv2d_errors();
    test_max_pool();
    test_avg_pool();
    test_pool_errors();
    test_adaptive_pool();
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
    return CT_REPORT("test_nn");
}
