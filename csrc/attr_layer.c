/* attr_layer.c — attributions to a hidden layer: Grad-CAM, Grad-CAM++,
 * layer activation and gradient x activation, layer integrated gradients
 * and layer conductance.
 *
 * The model is a kdx_layer_model callback that returns both the model's
 * outputs and the named layer's output, and can replace that output (layer
 * integrated gradients moves along a path in the layer's space that way).
 * Gradients w.r.t. the layer come from kdx_grad on the captured (non-leaf)
 * activation; the weighting, pooling, ReLU, resizing and path sums are here.
 * As everywhere, the model sees at most batch_size rows per call. */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>

/* ---- running the layer model ---- */

static kdx_status layer_call(const char *fname, const kdx_layer_model *lm, const kdx_tensor *x,
                             const kdx_tensor *replace, kdx_tensor **y, kdx_tensor **act)
{
    kdx_tensor *r = NULL, *a = NULL;
    kdx_status s = lm->forward(lm->ud, x, replace, &r, &a);
    if (s != KDX_OK) return s; /* the callback set the message */
    int64_t B = x->shape[0];
    if (!r || !a) s = kdx_fail(KDX_ESTATE, "%s: the model returned no output or no layer output", fname);
    else if (r->ndim < 1 || r->shape[0] != B)
        s = kdx_fail(KDX_ESHAPE, "%s: the model returned %s for a batch of %lld", fname, kdx__shp(r), (long long)B);
    else if (a->ndim < 1 || a->shape[0] != B)
        s = kdx_fail(KDX_ESHAPE, "%s: the layer returned %s for a batch of %lld", fname, kdx__shp(a), (long long)B);
    else if (a->dtype != KDX_DTYPE_F32 && a->dtype != KDX_DTYPE_F64)
        s = kdx_fail(KDX_EDTYPE, "%s: the layer's output must be float32 or float64", fname);
    if (s != KDX_OK) {
        KDX_RELEASE(r, a);
        return s;
    }
    *y = r;
    *act = a;
    return KDX_OK;
}

/* The layer's output (detached) and, when vals is not NULL, the selected
   outputs for rows first.. of the targets, without a graph. */
static kdx_status layer_eval(const char *fname, const kdx_layer_model *lm, const kdx_tensor *x,
                             const kdx_tensor *target, int64_t first, kdx_tensor **act, kdx_tensor **vals)
{
    kdx_tensor *y = NULL, *a = NULL;
    int was = kdx_set_grad_enabled(0);
    kdx_status s = layer_call(fname, lm, x, NULL, &y, &a);
    kdx_set_grad_enabled(was);
    if (s == KDX_OK && vals) s = kdx__select_target(fname, y, target, first, vals);
    if (s == KDX_OK) s = kdx_detach(a, act);
    KDX_RELEASE(y, a);
    return s;
}

/* d(sum of the selected outputs)/d(layer output) for rows x (target rows
   first..), with the layer's output replaced by `replace` when it is not
   NULL. *act: the layer's output (detached), *grad: its gradient. */
static kdx_status layer_grad(const char *fname, const kdx_layer_model *lm, const kdx_tensor *x,
                             const kdx_tensor *replace, const kdx_tensor *target, int64_t first, kdx_tensor **act,
                             kdx_tensor **grad)
{
    kdx_tensor *xin = NULL, *leaf = NULL, *y = NULL, *a = NULL, *sel = NULL, *sum = NULL;
    int was = kdx_set_grad_enabled(1);
    kdx_status s;
    if (replace) {
        s = kdx_clone(replace, &leaf);
        if (s == KDX_OK) s = kdx_tensor_set_requires_grad(leaf, 1);
        if (s == KDX_OK) xin = kdx_tensor_retain((kdx_tensor *)x);
    } else {
        /* x requires grad so the layer's output is in the graph even when
           the model's parameters do not */
        s = kdx_clone(x, &xin);
        if (s == KDX_OK) s = kdx_tensor_set_requires_grad(xin, 1);
    }
    if (s == KDX_OK) s = layer_call(fname, lm, xin, leaf, &y, &a);
    if (s == KDX_OK && leaf && !kdx__same_shape(a, leaf))
        s = kdx_fail(KDX_ESTATE, "%s: the layer's output %s was not replaced by %s", fname, kdx__shp(a), kdx__shp(leaf));
    if (s == KDX_OK) s = kdx__select_target(fname, y, target, first, &sel);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, sel, NULL, 0, 0, &sum);
    if (s == KDX_OK && !sum->requires_grad)
        s = kdx_fail(KDX_ESTATE, "%s: the model's output does not depend on the layer through recorded ops", fname);
    const kdx_tensor *outs[1] = {sum}, *ins[1] = {leaf ? leaf : a};
    if (s == KDX_OK && !ins[0]->requires_grad)
        s = kdx_fail(KDX_ESTATE, "%s: the layer's output does not depend on the input through recorded ops", fname);
    if (s == KDX_OK) s = kdx_grad(outs, 1, NULL, ins, 1, 0, 0, 1, grad);
    kdx_set_grad_enabled(was);
    if (s == KDX_OK) s = kdx_detach(leaf ? leaf : a, act);
    KDX_RELEASE(xin, leaf, y, a, sel, sum);
    return s;
}

/* Writes part into rows lo.. of *all [N, ...], allocating *all (part's
   trailing shape) at the first chunk and checking it at the others. */
static kdx_status put_rows(const char *fname, kdx_tensor **all, int64_t N, int64_t lo, const kdx_tensor *part)
{
    if (!*all) {
        int64_t shape[KDX_MAX_DIMS];
        memcpy(shape, part->shape, sizeof shape);
        shape[0] = N;
        KDX_TRY(kdx__new(fname, part->dtype, part->ndim, shape, all));
    } else {
        bool same = (*all)->ndim == part->ndim;
        for (int d = 1; same && d < part->ndim; d++) same = (*all)->shape[d] == part->shape[d];
        if (!same) return kdx_fail(KDX_ESHAPE, "%s: the layer's output changed shape between batches (%s)", fname, kdx__shp(part));
    }
    kdx_tensor *dst = NULL;
    kdx_status s = kdx_narrow(*all, 0, lo, part->shape[0], &dst);
    if (s == KDX_OK) s = kdx_copy_(dst, part);
    kdx_tensor_release(dst);
    return s;
}

/* The layer's outputs [N, ...] and (vals not NULL) the selected outputs [N]
   at every row of x, in chunks. */
static kdx_status layer_eval_all(const char *fname, const kdx_layer_model *lm, const kdx_tensor *x,
                                 const kdx_tensor *target, int64_t batch_size, kdx_tensor **acts, kdx_tensor **vals)
{
    int64_t N = x->shape[0];
    kdx_tensor *A = NULL, *V = NULL;
    kdx_status s = KDX_OK;
    for (int64_t lo = 0; lo < N && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, N - lo);
        kdx_tensor *xb = NULL, *a = NULL, *v = NULL;
        s = kdx_narrow(x, 0, lo, n, &xb);
        if (s == KDX_OK) s = layer_eval(fname, lm, xb, target, lo, &a, vals ? &v : NULL);
        if (s == KDX_OK) s = put_rows(fname, &A, N, lo, a);
        if (s == KDX_OK && vals) s = put_rows(fname, &V, N, lo, v);
        KDX_RELEASE(xb, a, v);
    }
    if (s != KDX_OK) {
        KDX_RELEASE(A, V);
        return s;
    }
    *acts = A;
    if (vals) *vals = V;
    return KDX_OK;
}

static kdx_status check_layer_args(const char *fname, const kdx_layer_model *lm, const kdx_tensor *x,
                                   int64_t batch_size)
{
    if (!lm || !lm->forward) return kdx_fail(KDX_EINVAL, "%s: model is NULL", fname);
    KDX_TRY(kdx__check_float(fname, "x", x));
    if (x->ndim < 1 || x->shape[0] < 1) return kdx_fail(KDX_ESHAPE, "%s: x must be a batch [N, ...], got %s", fname, kdx__shp(x));
    if (batch_size < 1) return kdx_fail(KDX_EINVAL, "%s: batch_size must be >= 1, got %lld", fname, (long long)batch_size);
    return KDX_OK;
}

/* ---- layer activation, gradient x activation ---- */

kdx_status kdx_attr_layer_activation(const kdx_layer_model *lm, const kdx_tensor *x, const kdx_tensor *target,
                                     int times_grad, int64_t batch_size, kdx_tensor **out)
{
    const char *fname = times_grad ? "layer_gradient_x_activation" : "layer_activation";
    KDX_TRY(check_layer_args(fname, lm, x, batch_size));
    if (!times_grad) return layer_eval_all(fname, lm, x, NULL, batch_size, out, NULL);
    int64_t N = x->shape[0];
    kdx_tensor *res = NULL;
    kdx_status s = KDX_OK;
    bool was = kdx__grad_pause();
    for (int64_t lo = 0; lo < N && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, N - lo);
        kdx_tensor *xb = NULL, *a = NULL, *g = NULL, *r = NULL;
        s = kdx_narrow(x, 0, lo, n, &xb);
        if (s == KDX_OK) s = layer_grad(fname, lm, xb, NULL, target, lo, &a, &g);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, a, g, &r);
        if (s == KDX_OK) s = put_rows(fname, &res, N, lo, r);
        KDX_RELEASE(xb, a, g, r);
    }
    kdx__grad_restore(was);
    if (s != KDX_OK) {
        kdx_tensor_release(res);
        return s;
    }
    *out = res;
    return KDX_OK;
}

/* ---- Grad-CAM, Grad-CAM++ ---- */

/* The channel weights [n, K, 1, ...] of a chunk: the spatial mean of the
   gradients (Grad-CAM), or Grad-CAM++'s sum of relu(g) * a with
   a = g^2 / (2 g^2 + sum_ij A_ij g^3 + 1e-6), 0 where g = 0 (pytorch-grad-cam). */
static kdx_status cam_weights(kdx_cam_kind kind, const kdx_tensor *A, const kdx_tensor *G, kdx_tensor **w)
{
    int dims[KDX_MAX_DIMS], nd = 0;
    for (int d = 2; d < A->ndim; d++) dims[nd++] = d;
    if (nd == 0) {
        /* no spatial dims: each unit is its own map */
        *w = kdx_tensor_retain((kdx_tensor *)G);
        return KDX_OK;
    }
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *r;
    if (kind == KDX_CAM_GRADCAM) {
        KDX_KEEP(&S, r, kdx_reduce(KDX_RED_MEAN, G, dims, nd, 1, &kdx_o_));
    } else {
        kdx_tensor *g2 = E_bin(&S, KDX_BIN_MUL, G, G);
        kdx_tensor *g3 = E_bin(&S, KDX_BIN_MUL, g2, G);
        kdx_tensor *sa = E_sum(&S, A, dims, nd, 1);
        kdx_tensor *den = E_bins(&S, KDX_BIN_ADD, E_bin(&S, KDX_BIN_ADD, E_bins(&S, KDX_BIN_MUL, g2, 2),
                                                          E_bin(&S, KDX_BIN_MUL, sa, g3)), 1e-6);
        kdx_tensor *a = E_bin(&S, KDX_BIN_DIV, g2, den);
        kdx_tensor *nz = E_mask(&S, KDX_BIN_NE, G, 0);
        kdx_tensor *a0 = E_bin(&S, KDX_BIN_MUL, a, nz); /* a = 0 where g = 0 */
        r = E_sum(&S, E_bin(&S, KDX_BIN_MUL, E_un(&S, KDX_UN_RELU, G, 0, 0), a0), dims, nd, 1);
    }
    return kdx__scope_end(&S, r, w);
}

kdx_status kdx_attr_gradcam(const kdx_layer_model *lm, const kdx_tensor *x, const kdx_tensor *target,
                            kdx_cam_kind kind, int relu, int64_t out_h, int64_t out_w, int64_t batch_size,
                            kdx_tensor **out)
{
    const char *fname = kind == KDX_CAM_GRADCAM_PP ? "gradcam_pp" : "gradcam";
    KDX_TRY(check_layer_args(fname, lm, x, batch_size));
    if (kind != KDX_CAM_GRADCAM && kind != KDX_CAM_GRADCAM_PP) return kdx_fail(KDX_EINVAL, "%s: unknown kind %d", fname, (int)kind);
    bool resize = out_h > 0 && out_w > 0;
    if (resize && (out_h > KDX_OPT_MAX || out_w > KDX_OPT_MAX))
        return kdx_fail(KDX_EINVAL, "%s: output size %lld x %lld is too large", fname, (long long)out_h, (long long)out_w);
    int64_t N = x->shape[0];
    kdx_tensor *res = NULL;
    kdx_status s = KDX_OK;
    bool was = kdx__grad_pause();
    for (int64_t lo = 0; lo < N && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, N - lo);
        kdx_tensor *xb = NULL, *A = NULL, *G = NULL, *w = NULL, *wa = NULL, *cam = NULL, *c2 = NULL, *c3 = NULL;
        int one = 1;
        s = kdx_narrow(x, 0, lo, n, &xb);
        if (s == KDX_OK) s = layer_grad(fname, lm, xb, NULL, target, lo, &A, &G);
        if (s == KDX_OK && A->ndim < 2)
            s = kdx_fail(KDX_ESHAPE, "%s: the layer's output must be [N, channels, ...], got %s", fname, kdx__shp(A));
        if (s == KDX_OK && resize && A->ndim != 4)
            s = kdx_fail(KDX_ESHAPE, "%s: upsampling needs a layer output [N, C, H, W], got %s", fname, kdx__shp(A));
        if (s == KDX_OK) s = cam_weights(kind, A, G, &w);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, w, A, &wa);
        if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, wa, &one, 1, 1, &cam); /* [n, 1, ...] */
        if (s == KDX_OK && relu) s = kdx_unary(KDX_UN_RELU, cam, 0, 0, &c2);
        else if (s == KDX_OK) c2 = kdx_tensor_retain(cam);
        if (s == KDX_OK && resize) s = kdx_interpolate(c2, out_h, out_w, KDX_INTERP_BILINEAR, 0, 0, 0, &c3);
        else if (s == KDX_OK) c3 = kdx_tensor_retain(c2);
        if (s == KDX_OK) s = put_rows(fname, &res, N, lo, c3);
        KDX_RELEASE(xb, A, G, w, wa, cam, c2, c3);
    }
    kdx__grad_restore(was);
    if (s != KDX_OK) {
        kdx_tensor_release(res);
        return s;
    }
    *out = res;
    return KDX_OK;
}

/* ---- path methods on a layer ---- */

/* The baseline broadcast to x's shape and dtype (zeros when NULL). */
static kdx_status full_baseline(const kdx_tensor *x, const kdx_tensor *baseline, kdx_tensor **out)
{
    if (!baseline) return kdx_zeros(x->dtype, x->ndim, x->shape, out);
    kdx_tensor *e = NULL;
    KDX_TRY(kdx_expand(baseline, x->ndim, x->shape, &e));
    kdx_status s = kdx_to(e, x->dtype, out);
    kdx_tensor_release(e);
    return s;
}

/* Row ids (sample r / per) and a [n, 1, ...] column of alphas[r % per] for rows lo..lo+n-1. */
static kdx_status path_rows(const char *fname, int64_t lo, int64_t n, int per, const double *alphas, kdx_dtype dt,
                            int ndim, kdx_tensor **ids, kdx_tensor **al)
{
    int64_t cshape[KDX_MAX_DIMS];
    cshape[0] = n;
    for (int d = 1; d < ndim; d++) cshape[d] = 1;
    KDX_TRY(kdx_empty(KDX_DTYPE_I64, 1, &n, ids));
    kdx_status s = kdx__new(fname, dt, ndim, cshape, al);
    if (s != KDX_OK) {
        kdx_tensor_release(*ids);
        *ids = NULL;
        return s;
    }
    for (int64_t r = 0; r < n; r++) {
        int64_t at[KDX_MAX_DIMS] = {0};
        at[0] = r;
        ((int64_t *)kdx__base(*ids))[r] = (lo + r) / per;
        kdx_tensor_set(*al, at, alphas[(lo + r) % per]);
    }
    return KDX_OK;
}

/* sum(attr_i) - (fx_i - fb_i). */
static kdx_status completeness_gap(const kdx_tensor *attr, const kdx_tensor *fx, const kdx_tensor *fb, kdx_tensor **out)
{
    int64_t N = attr->shape[0], fs[2] = {N, kdx_tensor_numel(attr) / N};
    int one = 1;
    kdx_tensor *flat = NULL, *sums = NULL, *gap = NULL;
    kdx_status s = kdx_reshape(attr, 2, fs, &flat);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, flat, &one, 1, 0, &sums);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, fx, fb, &gap);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, sums, gap, out);
    KDX_RELEASE(flat, sums, gap);
    return s;
}

static kdx_status path_args(const char *fname, const kdx_layer_model *lm, const kdx_tensor *x, int steps,
                            int64_t batch_size)
{
    KDX_TRY(check_layer_args(fname, lm, x, batch_size));
    if (steps < 1 || steps > 100000) return kdx_fail(KDX_EINVAL, "%s: steps must be in [1, 100000], got %d", fname, steps);
    if (x->shape[0] > INT64_MAX / (steps + 1)) return kdx_fail(KDX_EINVAL, "%s: too many path points", fname);
    return KDX_OK;
}

/* Adds the weighted layer gradients of path rows lo..lo+n-1 into acc: row r
   runs sample r / steps with the layer's output replaced by
   ab + alpha_k diff, k = r % steps. */
static kdx_status lig_chunk(const kdx_layer_model *lm, const kdx_tensor *x, const kdx_tensor *ab,
                            const kdx_tensor *diff, const kdx_tensor *target, int steps, const double *alphas,
                            const double *weights, int64_t lo, int64_t n, kdx_tensor *acc)
{
    const char *fname = "layer_integrated_gradients";
    kdx_tensor *ids = NULL, *al = NULL, *wid = NULL, *wt = NULL, *xr = NULL, *b = NULL, *dd = NULL, *step = NULL;
    kdx_tensor *pts = NULL, *tg = NULL, *a = NULL, *g = NULL, *gw = NULL;
    kdx_status s = path_rows(fname, lo, n, steps, alphas, ab->dtype, ab->ndim, &ids, &al);
    if (s == KDX_OK) s = path_rows(fname, lo, n, steps, weights, ab->dtype, ab->ndim, &wid, &wt);
    if (s == KDX_OK) s = kdx_index_select(x, 0, ids, &xr);
    if (s == KDX_OK) s = kdx_index_select(ab, 0, ids, &b);
    if (s == KDX_OK) s = kdx_index_select(diff, 0, ids, &dd);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, dd, al, &step);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_ADD, b, step, &pts);
    if (s == KDX_OK) s = kdx__attr_row_targets(fname, target, x->shape[0], ids, &tg);
    if (s == KDX_OK) s = layer_grad(fname, lm, xr, pts, tg, 0, &a, &g);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, g, wt, &gw);
    if (s == KDX_OK) s = kdx_index_add_(acc, 0, ids, gw, 1);
    KDX_RELEASE(ids, al, wid, wt, xr, b, dd, step);
    KDX_RELEASE(pts, tg, a, g, gw);
    return s;
}

kdx_status kdx_attr_layer_integrated_gradients(const kdx_layer_model *lm, const kdx_tensor *x,
                                               const kdx_tensor *baseline, const kdx_tensor *target, int steps,
                                               kdx_ig_method method, int64_t batch_size, kdx_tensor **out,
                                               kdx_tensor **delta)
{
    const char *fname = "layer_integrated_gradients";
    KDX_TRY(path_args(fname, lm, x, steps, batch_size));
    double *alphas = kdx__malloc_raw((size_t)steps * 2 * sizeof(double));
    if (!alphas) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    double *weights = alphas + steps;
    int64_t N = x->shape[0];
    kdx_tensor *base = NULL, *ax = NULL, *ab = NULL, *fx = NULL, *fb = NULL, *diff = NULL, *acc = NULL;
    kdx_tensor *attr = NULL, *dl = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = kdx_ig_quadrature(method, steps, alphas, weights);
    if (s == KDX_OK) s = full_baseline(x, baseline, &base);
    /* The layer's path runs from its output at the baseline to its output at x. */
    if (s == KDX_OK) s = layer_eval_all(fname, lm, x, target, batch_size, &ax, &fx);
    if (s == KDX_OK) s = layer_eval_all(fname, lm, base, target, batch_size, &ab, &fb);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, ax, ab, &diff);
    if (s == KDX_OK) s = kdx_zeros(ax->dtype, ax->ndim, ax->shape, &acc);
    /* Row r of the path is sample r / steps at step r % steps: the model
       runs on that sample, its layer output replaced by the path point. */
    int64_t total = N * steps;
    for (int64_t lo = 0; lo < total && s == KDX_OK; lo += batch_size)
        s = lig_chunk(lm, x, ab, diff, target, steps, alphas, weights, lo, kdx__min64(batch_size, total - lo), acc);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, diff, acc, &attr);
    if (s == KDX_OK && delta) s = completeness_gap(attr, fx, fb, &dl);
    kdx__grad_restore(was);
    kdx__free(alphas, (size_t)steps * 2 * sizeof(double));
    KDX_RELEASE(base, ax, ab, fx, fb, diff, acc);
    if (s != KDX_OK) {
        KDX_RELEASE(attr, dl);
        return s;
    }
    *out = attr;
    if (delta) *delta = dl;
    return KDX_OK;
}

/* Folds one chunk of conductance rows into acc: with the previous chunk's
   last row (carry, may be NULL) in front, each row j at step k >= 1 adds
   (A_j - A_{j-1}) * G_{j-1} to its sample. The new carry is the chunk's last row. */
static kdx_status conductance_fold(kdx_tensor *acc, const kdx_tensor *ids, const kdx_tensor *A, const kdx_tensor *G,
                                   int64_t lo, int per, kdx_tensor **carryA, kdx_tensor **carryG)
{
    int64_t n = A->shape[0];
    kdx_tensor *Ac = NULL, *Gc = NULL, *hi = NULL, *lo_ = NULL, *gl = NULL, *d = NULL, *p = NULL, *mask = NULL;
    kdx_tensor *pm = NULL, *nA = NULL, *nG = NULL;
    kdx_status s = KDX_OK;
    int64_t off = *carryA ? 1 : 0, m = n + off;
    if (*carryA) {
        const kdx_tensor *as[2] = {*carryA, A}, *gs[2] = {*carryG, G};
        s = kdx_cat(as, 2, 0, &Ac);
        if (s == KDX_OK) s = kdx_cat(gs, 2, 0, &Gc);
    } else {
        Ac = kdx_tensor_retain((kdx_tensor *)A);
        Gc = kdx_tensor_retain((kdx_tensor *)G);
    }
    if (m > 1) {
        /* rows 1..m-1 of the concatenation are this chunk's rows off.. */
        kdx_tensor *rid = NULL;
        int64_t cshape[KDX_MAX_DIMS];
        cshape[0] = m - 1;
        for (int dd = 1; dd < A->ndim; dd++) cshape[dd] = 1;
        if (s == KDX_OK) s = kdx_narrow(Ac, 0, 1, m - 1, &hi);
        if (s == KDX_OK) s = kdx_narrow(Ac, 0, 0, m - 1, &lo_);
        if (s == KDX_OK) s = kdx_narrow(Gc, 0, 0, m - 1, &gl);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, hi, lo_, &d);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, d, gl, &p);
        if (s == KDX_OK) s = kdx__new("layer_conductance", A->dtype, A->ndim, cshape, &mask);
        for (int64_t j = 1; j < m && s == KDX_OK; j++) {
            int64_t row = lo - off + j, at[KDX_MAX_DIMS] = {0}; /* global row of entry j */
            at[0] = j - 1;
            kdx_tensor_set(mask, at, row % per ? 1.0 : 0.0);
        }
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, p, mask, &pm);
        if (s == KDX_OK) s = kdx_narrow(ids, 0, 1 - off, m - 1, &rid);
        if (s == KDX_OK) s = kdx_index_add_(acc, 0, rid, pm, 1);
        kdx_tensor_release(rid);
    }
    if (s == KDX_OK) s = kdx_narrow(A, 0, n - 1, 1, &nA);
    if (s == KDX_OK) s = kdx_narrow(G, 0, n - 1, 1, &nG);
    KDX_RELEASE(Ac, Gc, hi, lo_, gl, d, p, mask, pm);
    if (s != KDX_OK) {
        KDX_RELEASE(nA, nG);
        return s;
    }
    KDX_RELEASE(*carryA, *carryG);
    *carryA = nA;
    *carryG = nG;
    return KDX_OK;
}

kdx_status kdx_attr_layer_conductance(const kdx_layer_model *lm, const kdx_tensor *x, const kdx_tensor *baseline,
                                      const kdx_tensor *target, int steps, kdx_ig_method method, int64_t batch_size,
                                      kdx_tensor **out, kdx_tensor **delta)
{
    const char *fname = "layer_conductance";
    KDX_TRY(path_args(fname, lm, x, steps, batch_size));
    int per = steps + 1; /* Captum: the method's nodes for steps + 1 points */
    double *alphas = kdx__malloc_raw((size_t)per * 2 * sizeof(double));
    if (!alphas) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    int64_t N = x->shape[0];
    kdx_tensor *base = NULL, *diff = NULL, *acc = NULL, *cA = NULL, *cG = NULL, *attr = NULL, *dl = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = kdx_ig_quadrature(method, per, alphas, alphas + per);
    if (s == KDX_OK) s = full_baseline(x, baseline, &base);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, x, base, &diff);
    int64_t total = N * per;
    for (int64_t lo = 0; lo < total && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, total - lo);
        kdx_tensor *ids = NULL, *al = NULL, *b = NULL, *dd = NULL, *step = NULL, *pts = NULL, *tg = NULL;
        kdx_tensor *A = NULL, *G = NULL;
        s = path_rows(fname, lo, n, per, alphas, x->dtype, x->ndim, &ids, &al);
        if (s == KDX_OK) s = kdx_index_select(base, 0, ids, &b);
        if (s == KDX_OK) s = kdx_index_select(diff, 0, ids, &dd);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, dd, al, &step);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_ADD, b, step, &pts);
        if (s == KDX_OK) s = kdx__attr_row_targets(fname, target, N, ids, &tg);
        if (s == KDX_OK) s = layer_grad(fname, lm, pts, NULL, tg, 0, &A, &G);
        if (s == KDX_OK && !acc) {
            int64_t shape[KDX_MAX_DIMS];
            memcpy(shape, A->shape, sizeof shape);
            shape[0] = N; /* one sum per sample, the layer's shape */
            s = kdx_zeros(A->dtype, A->ndim, shape, &acc);
        }
        if (s == KDX_OK && (acc->ndim != A->ndim || memcmp(acc->shape + 1, A->shape + 1, (size_t)(A->ndim - 1) * sizeof(int64_t))))
            s = kdx_fail(KDX_ESHAPE, "%s: the layer's output changed shape between batches (%s)", fname, kdx__shp(A));
        if (s == KDX_OK) s = conductance_fold(acc, ids, A, G, lo, per, &cA, &cG);
        KDX_RELEASE(ids, al, b, dd, step, pts, tg, A, G);
    }
    if (s == KDX_OK) attr = kdx_tensor_retain(acc);
    if (s == KDX_OK && delta) {
        kdx_tensor *ax = NULL, *ab = NULL, *fx = NULL, *fb = NULL;
        s = layer_eval_all(fname, lm, x, target, batch_size, &ax, &fx);
        if (s == KDX_OK) s = layer_eval_all(fname, lm, base, target, batch_size, &ab, &fb);
        if (s == KDX_OK) s = completeness_gap(attr, fx, fb, &dl);
        KDX_RELEASE(ax, ab, fx, fb);
    }
    kdx__grad_restore(was);
    kdx__free(alphas, (size_t)per * 2 * sizeof(double));
    KDX_RELEASE(base, diff, acc, cA, cG);
    if (s != KDX_OK) {
        KDX_RELEASE(attr, dl);
        return s;
    }
    *out = attr;
    if (delta) *delta = dl;
    return KDX_OK;
}
