/* attr_gradient.c — gradient attributions that call the model back:
 * saliency, input x gradient, integrated gradients.
 *
 * The model is a kdx_model callback (a Lua module wrapped by the binding, or
 * any C function): the algorithms build the inputs (interpolation paths),
 * evaluate them in chunks of at most batch_size rows — one memory bound for
 * every method — and combine the gradients, all in C. Gradients come from
 * the engine's autograd: each chunk is a fresh leaf that requires grad, and
 * kdx_grad of the selected outputs gives d out / d input. */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>

/* ---- targets ---- */

kdx_status kdx__select_target(const char *fname, const kdx_tensor *y, const kdx_tensor *target, int64_t first,
                              kdx_tensor **out)
{
    int64_t B = y->ndim ? y->shape[0] : 1;
    if (y->ndim == 1 || (y->ndim == 2 && y->shape[1] == 1 && !target)) {
        int64_t shape[1] = {B};
        return kdx_reshape(y, 1, shape, out); /* one output per sample: it is the target */
    }
    if (y->ndim != 2)
        return kdx_fail(KDX_ESHAPE, "%s: the model must return [N] or [N, classes], got %s", fname, kdx__shp(y));
    if (!target) return kdx_fail(KDX_EINVAL, "%s: the model returns %s: give a target class", fname, kdx__shp(y));
    if (target->dtype != KDX_DTYPE_I64)
        return kdx_fail(KDX_EDTYPE, "%s: target must be int64 class indices", fname);
    kdx_tensor *t = NULL, *col = NULL, *g = NULL;
    int64_t one[2] = {1, 1};
    kdx_status s;
    if (target->ndim == 0 || kdx_tensor_numel(target) == 1) {
        s = kdx_reshape(target, 2, one, &t); /* one class for every sample */
        if (s == KDX_OK) {
            int64_t bs[2] = {B, 1};
            s = kdx_expand(t, 2, bs, &col);
        }
    } else {
        if (kdx_tensor_numel(target) < first + B)
            return kdx_fail(KDX_ESHAPE, "%s: %lld targets for %lld samples", fname, (long long)kdx_tensor_numel(target),
                            (long long)(first + B));
        kdx_tensor *flat = NULL;
        int64_t n = kdx_tensor_numel(target);
        s = kdx_reshape(target, 1, &n, &flat);
        if (s == KDX_OK) s = kdx_narrow(flat, 0, first, B, &t);
        kdx_tensor_release(flat);
        if (s == KDX_OK) s = kdx_unsqueeze(t, 1, &col);
    }
    /* checked here: gather's message would show the engine's 0-based index */
    int64_t nt = s == KDX_OK && t->ndim == 1 ? t->shape[0] : 1, st = s == KDX_OK && t->ndim == 1 ? t->stride[0] : 0;
    for (int64_t i = 0; s == KDX_OK && i < nt; i++) {
        int64_t c = ((const int64_t *)kdx__base(t))[i * st];
        if (c < 0 || c >= y->shape[1])
            s = kdx_fail(KDX_EINDEX, "%s: target class out of range for the model's %lld classes", fname,
                         (long long)y->shape[1]);
    }
    if (s == KDX_OK) s = kdx_gather(y, 1, col, &g);
    if (s == KDX_OK) s = kdx_reshape(g, 1, &B, out);
    KDX_RELEASE(t, col, g);
    return s;
}

/* ---- running the model ---- */

kdx_status kdx__attr_call(const char *fname, const kdx_model *m, const kdx_tensor *x, kdx_tensor **y)
{
    kdx_tensor *r = NULL;
    kdx_status s = m->forward(m->ud, x, &r);
    if (s != KDX_OK) return s; /* the callback set the message */
    if (!r) return kdx_fail(KDX_ESTATE, "%s: the model returned no tensor", fname);
    if (r->ndim < 1 || r->shape[0] != (x->ndim ? x->shape[0] : 1)) {
        kdx_status e = kdx_fail(KDX_ESHAPE, "%s: the model returned %s for a batch of %lld", fname, kdx__shp(r),
                                (long long)(x->ndim ? x->shape[0] : 1));
        kdx_tensor_release(r);
        return e;
    }
    *y = r;
    return KDX_OK;
}

/* Gradient of the selected outputs w.r.t. a batch (rows first..first+B-1 of
   the targets); *out has x's shape and dtype. *value (may be NULL) gets the
   selected outputs [B]. */
kdx_status kdx__attr_grad(const char *fname, const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                                 int64_t first, kdx_tensor **out, kdx_tensor **value)
{
    kdx_tensor *leaf = NULL, *y = NULL, *sel = NULL, *sum = NULL;
    int was = kdx_set_grad_enabled(1);
    kdx_status s = kdx_clone(x, &leaf);
    if (s == KDX_OK) s = kdx_tensor_set_requires_grad(leaf, 1);
    if (s == KDX_OK) s = kdx__attr_call(fname, m, leaf, &y);
    if (s == KDX_OK) s = kdx__select_target(fname, y, target, first, &sel);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, sel, NULL, 0, 0, &sum);
    if (s == KDX_OK && !sum->requires_grad)
        s = kdx_fail(KDX_ESTATE, "%s: the model's output does not depend on its input through recorded ops", fname);
    const kdx_tensor *outs[1] = {sum}, *ins[1] = {leaf};
    if (s == KDX_OK) s = kdx_grad(outs, 1, NULL, ins, 1, 0, 0, 1, out);
    kdx_set_grad_enabled(was);
    if (s == KDX_OK && value) s = kdx_detach(sel, value);
    KDX_RELEASE(leaf, y, sel, sum);
    return s;
}

/* Rows [lo, lo+n) of x (a view). */
static kdx_status rows(const kdx_tensor *x, int64_t lo, int64_t n, kdx_tensor **out)
{
    return kdx_narrow(x, 0, lo, n, out);
}

kdx_status kdx__attr_check(const char *fname, const kdx_model *m, const kdx_tensor *x, int64_t batch_size)
{
    if (!m || !m->forward) return kdx_fail(KDX_EINVAL, "%s: model is NULL", fname);
    KDX_TRY(kdx__check_float(fname, "x", x));
    if (x->ndim < 1 || x->shape[0] < 1) return kdx_fail(KDX_ESHAPE, "%s: x must be a batch [N, ...], got %s", fname, kdx__shp(x));
    if (batch_size < 1) return kdx_fail(KDX_EINVAL, "%s: batch_size must be >= 1, got %lld", fname, (long long)batch_size);
    return KDX_OK;
}

kdx_status kdx__attr_row_targets(const char *fname, const kdx_tensor *target, int64_t N, const kdx_tensor *ids,
                                 kdx_tensor **out)
{
    if (!target || kdx_tensor_numel(target) <= 1) {
        *out = target ? kdx_tensor_retain((kdx_tensor *)target) : NULL;
        return KDX_OK;
    }
    kdx_tensor *flat = NULL;
    int64_t nt = kdx_tensor_numel(target);
    if (nt < N) return kdx_fail(KDX_ESHAPE, "%s: %lld targets for %lld samples", fname, (long long)nt, (long long)N);
    kdx_status s = kdx_reshape(target, 1, &nt, &flat);
    if (s == KDX_OK) s = kdx_index_select(flat, 0, ids, out);
    kdx_tensor_release(flat);
    return s;
}

/* ---- saliency and input x gradient ---- */

kdx_status kdx_attr_saliency(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target, int abs_value,
                             int times_input, int64_t batch_size, kdx_tensor **out)
{
    const char *fname = times_input ? "input_x_gradient" : "saliency";
    KDX_TRY(kdx__attr_check(fname, m, x, batch_size));
    kdx_tensor *attr;
    KDX_TRY(kdx__new_raw(fname, x->dtype, x->ndim, x->shape, &attr));
    kdx_status s = KDX_OK;
    bool was = kdx__grad_pause();
    for (int64_t lo = 0; lo < x->shape[0] && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, x->shape[0] - lo);
        kdx_tensor *xb = NULL, *g = NULL, *r = NULL, *dst = NULL;
        s = rows(x, lo, n, &xb);
        if (s == KDX_OK) s = kdx__attr_grad(fname, m, xb, target, lo, &g, NULL); /* turns recording on itself */
        if (s == KDX_OK && times_input) s = kdx_binary(KDX_BIN_MUL, g, xb, &r);
        else if (s == KDX_OK && abs_value) s = kdx_unary(KDX_UN_ABS, g, 0, 0, &r);
        else if (s == KDX_OK) r = kdx_tensor_retain(g);
        if (s == KDX_OK) s = rows(attr, lo, n, &dst);
        if (s == KDX_OK) s = kdx_copy_(dst, r);
        KDX_RELEASE(xb, g, r, dst);
    }
    kdx__grad_restore(was);
    if (s != KDX_OK) {
        kdx_tensor_release(attr);
        return s;
    }
    *out = attr;
    return KDX_OK;
}

/* ---- integrated gradients ---- */

/* Nodes and weights on [0, 1] for n steps: Gauss-Legendre (Newton on the
   Legendre recurrence), or Riemann left/right/middle/trapezoid; weights sum to 1. */
kdx_status kdx_ig_quadrature(kdx_ig_method method, int n, double *alphas, double *weights)
{
    if (n < 1) return kdx_fail(KDX_EINVAL, "integrated_gradients: steps must be >= 1, got %d", n);
    switch (method) {
    case KDX_IG_GAUSS_LEGENDRE:
        for (int i = 0; i < (n + 1) / 2; i++) {
            double z = cos(3.14159265358979323846 * (i + 0.75) / (n + 0.5)), pp = 1;
            for (int it = 0; it < 100; it++) {
                double p1 = 1, p2 = 0;
                for (int j = 1; j <= n; j++) {
                    double p3 = p2;
                    p2 = p1;
                    p1 = ((2 * j - 1) * z * p2 - (j - 1) * p3) / j;
                }
                pp = n * (z * p1 - p2) / (z * z - 1);
                double z1 = z;
                z = z1 - p1 / pp;
                if (fabs(z - z1) < 1e-15) break;
            }
            double w = 2 / ((1 - z * z) * pp * pp);
            /* map [-1, 1] to [0, 1]: alpha = (1 - z) / 2, weight / 2 */
            alphas[i] = (1 - z) / 2, weights[i] = w / 2;
            alphas[n - 1 - i] = (1 + z) / 2, weights[n - 1 - i] = w / 2;
        }
        return KDX_OK;
    case KDX_IG_RIEMANN_LEFT:
    case KDX_IG_RIEMANN_RIGHT:
    case KDX_IG_RIEMANN_MIDDLE:
        for (int i = 0; i < n; i++) {
            double off = method == KDX_IG_RIEMANN_LEFT ? 0 : method == KDX_IG_RIEMANN_RIGHT ? 1 : 0.5;
            alphas[i] = (i + off) / n, weights[i] = 1.0 / n;
        }
        return KDX_OK;
    case KDX_IG_RIEMANN_TRAPEZOID:
        if (n < 2) return kdx_fail(KDX_EINVAL, "integrated_gradients: the trapezoid rule needs at least 2 steps");
        for (int i = 0; i < n; i++) {
            alphas[i] = (double)i / (n - 1);
            weights[i] = (i == 0 || i == n - 1 ? 0.5 : 1.0) / (n - 1);
        }
        return KDX_OK;
    }
    return kdx_fail(KDX_EINVAL, "integrated_gradients: unknown method %d", (int)method);
}

/* The selected outputs of the model at x (no graph). */
kdx_status kdx__attr_outputs(const char *fname, const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                             int64_t first, kdx_tensor **out)
{
    kdx_tensor *y = NULL, *sel = NULL;
    int was = kdx_set_grad_enabled(0);
    kdx_status s = kdx__attr_call(fname, m, x, &y);
    if (s == KDX_OK) s = kdx__select_target(fname, y, target, first, &sel);
    kdx_set_grad_enabled(was);
    if (s == KDX_OK) s = kdx_detach(sel, out);
    KDX_RELEASE(y, sel);
    return s;
}

kdx_status kdx_attr_integrated_gradients(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *baseline,
                                         const kdx_tensor *target, int steps, kdx_ig_method method,
                                         int64_t batch_size, kdx_tensor **out, kdx_tensor **delta)
{
    const char *fname = "integrated_gradients";
    KDX_TRY(kdx__attr_check(fname, m, x, batch_size));
    if (steps < 1 || steps > 100000) return kdx_fail(KDX_EINVAL, "%s: steps must be in [1, 100000], got %d", fname, steps);
    double *alphas = kdx__malloc_raw((size_t)steps * 2 * sizeof(double));
    if (!alphas) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    double *weights = alphas + steps;
    kdx_status s = kdx_ig_quadrature(method, steps, alphas, weights);
    int64_t N = x->shape[0], per = kdx_tensor_numel(x) / N;
    kdx_tensor *base = NULL, *diff = NULL, *acc = NULL, *attr = NULL, *dl = NULL;
    bool was = kdx__grad_pause();
    /* The baseline: zeros, or a tensor broadcast to x's shape. */
    if (s == KDX_OK) s = baseline ? kdx_expand(baseline, x->ndim, x->shape, &base) : kdx_zeros(x->dtype, x->ndim, x->shape, &base);
    if (s == KDX_OK && baseline && baseline->dtype != x->dtype) {
        kdx_tensor *t = NULL;
        s = kdx_to(base, x->dtype, &t);
        kdx_tensor_release(base);
        base = t;
    }
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, x, base, &diff);
    if (s == KDX_OK) s = kdx_zeros(x->dtype, x->ndim, x->shape, &acc);
    /* Path points go through the model in chunks of batch_size rows: row r
       of the path is sample i = r / steps at step k = r % steps, that is
       base_i + alpha_k * diff_i; its gradient, weighted by w_k, is added to
       sample i's sum. Each chunk takes three ops to build and two to fold. */
    int64_t total = N * steps, chunk = kdx__max64(1, batch_size);
    for (int64_t lo = 0; lo < total && s == KDX_OK; lo += chunk) {
        int64_t n = kdx__min64(chunk, total - lo);
        int64_t cshape[KDX_MAX_DIMS];
        cshape[0] = n;
        for (int d = 1; d < x->ndim; d++) cshape[d] = 1; /* [n, 1, ...] broadcasts over a sample */
        kdx_tensor *ids = NULL, *al = NULL, *wt = NULL, *b = NULL, *dd = NULL, *step = NULL, *pts = NULL;
        kdx_tensor *g = NULL, *gw = NULL, *tg = NULL;
        s = kdx_empty(KDX_DTYPE_I64, 1, &n, &ids);
        if (s == KDX_OK) s = kdx_empty(x->dtype, x->ndim, cshape, &al);
        if (s == KDX_OK) s = kdx_empty(x->dtype, x->ndim, cshape, &wt);
        for (int64_t r = 0; r < n && s == KDX_OK; r++) {
            int64_t i = (lo + r) / steps, k = (lo + r) % steps, at[KDX_MAX_DIMS] = {0};
            ((int64_t *)kdx__base(ids))[r] = i;
            at[0] = r;
            kdx_tensor_set(al, at, alphas[k]);
            kdx_tensor_set(wt, at, weights[k]);
        }
        if (s == KDX_OK) s = kdx_index_select(base, 0, ids, &b);
        if (s == KDX_OK) s = kdx_index_select(diff, 0, ids, &dd);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, dd, al, &step);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_ADD, b, step, &pts);
        if (s == KDX_OK) s = kdx__attr_row_targets(fname, target, N, ids, &tg);
        if (s == KDX_OK) s = kdx__attr_grad(fname, m, pts, tg, 0, &g, NULL);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, g, wt, &gw);
        if (s == KDX_OK) s = kdx_index_add_(acc, 0, ids, gw, 1);
        KDX_RELEASE(ids, al, wt, b, dd, step, pts);
        KDX_RELEASE(g, gw, tg);
    }
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, diff, acc, &attr);
    /* Completeness gap per sample: sum(attr) - (F(x) - F(baseline)). */
    if (s == KDX_OK && delta) {
        kdx_tensor *fx = NULL, *fb = NULL, *sums = NULL, *gap = NULL, *flat = NULL;
        int64_t fs[2] = {N, per};
        s = kdx__attr_outputs(fname, m, x, target, 0, &fx);
        if (s == KDX_OK) s = kdx__attr_outputs(fname, m, base, target, 0, &fb);
        if (s == KDX_OK) s = kdx_reshape(attr, 2, fs, &flat);
        int one = 1;
        if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, flat, &one, 1, 0, &sums);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, fx, fb, &gap);
        if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, sums, gap, &dl);
        KDX_RELEASE(fx, fb, sums, gap, flat);
    }
    kdx__grad_restore(was);
    kdx__free(alphas, (size_t)steps * 2 * sizeof(double));
    KDX_RELEASE(base, diff, acc);
    if (s != KDX_OK) {
        KDX_RELEASE(attr, dl);
        return s;
    }
    *out = attr;
    if (delta) *delta = dl;
    return KDX_OK;
}
