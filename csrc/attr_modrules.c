/* attr_modrules.c — attributions by modified backward rules: guided
 * backprop and deconvolution (ReLU rules) and DeepLift (the rescale rule).
 *
 * kdx owns its autodiff, so the rules live in the ops' backward functions
 * (op_elementwise.c, op_pool.c) and apply per operation — a functional
 * relu inside a plain function is covered as well as a registered layer.
 * The functions here set a thread-local rule (autograd.c) around their own
 * forward and backward passes and restore it on every path; the rule
 * kernels below are what those backward functions call in DeepLift mode. */
#include "kdx_internal.h"

#include <math.h>

/* Captum's threshold: below it the multiplier falls back to the gradient. */
#define RESCALE_EPS 1e-7

/* ---- the rule kernels (called by backward functions, recording off) ---- */

static kdx_tensor *E_rows(kdx_scope *S, const kdx_tensor *t, int64_t lo, int64_t n)
{
    kdx_tensor *r = NULL;
    if (!t) return NULL;
    KDX_KEEP(S, r, kdx_narrow(t, 0, lo, n, &kdx_o_));
    return r;
}

/* [t; t]: a multiplier of the x half used for both halves, as Captum. */
static kdx_tensor *E_twice(kdx_scope *S, const kdx_tensor *t)
{
    kdx_tensor *r = NULL;
    if (!t) return NULL;
    const kdx_tensor *ts[2] = {t, t};
    KDX_KEEP(S, r, kdx_cat(ts, 2, 0, &kdx_o_));
    return r;
}

/* The x or baseline half of an operand: its rows when it is batched (same
   rank as the output, first dim `rows`), else itself (it broadcasts over
   the rows, so both halves see the same values). */
static kdx_tensor *E_half(kdx_scope *S, const kdx_tensor *t, bool batched, int64_t rows, int half)
{
    if (batched) return E_rows(S, t, half * (rows / 2), rows / 2);
    return (kdx_tensor *)t; /* borrowed: the scope does not own it */
}

static kdx_status not_batched(const char *op, const kdx_tensor *t, int64_t rows)
{
    return kdx_fail(KDX_ESHAPE,
                    "deeplift: %s takes %s, not the batch of %lld rows [x; baseline]: DeepLift needs every "
                    "nonlinear op's input to keep the batch as its first dim",
                    op, kdx__shp(t), (long long)rows);
}

kdx_status kdx__rescale_unary(const char *op, const kdx_tensor *u, const kdx_tensor *y, const kdx_tensor *g,
                              const kdx_tensor *ord, kdx_tensor **out)
{
    int64_t rows = kdx__rule_rows(), n = rows / 2;
    if (u->ndim < 1 || u->shape[0] != rows) return not_batched(op, u, rows);
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *du = E_bin(&S, KDX_BIN_SUB, E_rows(&S, u, 0, n), E_rows(&S, u, n, n));
    kdx_tensor *dy = E_bin(&S, KDX_BIN_SUB, E_rows(&S, y, 0, n), E_rows(&S, y, n, n));
    kdx_tensor *small = E_mask(&S, KDX_BIN_LT, E_un(&S, KDX_UN_ABS, du, 0, 0), RESCALE_EPS);
    /* du + small is du where it counts and near 1 where the gradient is used: never 0 */
    kdx_tensor *m = E_bin(&S, KDX_BIN_DIV, dy, E_bin(&S, KDX_BIN_ADD, du, small));
    kdx_tensor *r = E_where(&S, E_twice(&S, small), ord, E_bin(&S, KDX_BIN_MUL, g, E_twice(&S, m)));
    return kdx__scope_end(&S, r, out);
}

static bool is_batched(const kdx_tensor *t, const kdx_tensor *g, int64_t rows)
{
    return t->ndim == g->ndim && t->ndim >= 1 && t->shape[0] == rows;
}

kdx_status kdx__rescale_binary(const char *opname, kdx_binop op, const kdx_tensor *a, const kdx_tensor *b,
                               const kdx_tensor *g, const bool *want, kdx_tensor *const *ord, kdx_tensor **gin)
{
    int64_t rows = kdx__rule_rows();
    bool ba = is_batched(a, g, rows), bb = is_batched(b, g, rows);
    if (g->ndim < 1 || g->shape[0] != rows) return not_batched(opname, g, rows);
    if (want[0] && !ba) return not_batched(opname, a, rows);
    if (want[1] && !bb) return not_batched(opname, b, rows);
    kdx_scope S = KDX_SCOPE;
    const kdx_tensor *op_in[2] = {a, b};
    kdx_tensor *h[2][2]; /* h[operand][half] */
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++) h[i][k] = E_half(&S, op_in[i], i == 0 ? ba : bb, rows, k);
    /* f[i][j] = f(a half i, b half j) */
    kdx_tensor *f[2][2];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) f[i][j] = E_bin(&S, op, h[0][i], h[1][j]);
    for (int i = 0; i < 2; i++) {
        if (!want[i]) continue;
        /* operand i's share of f(x) - f(baseline): its change with the other held at x, and at the
           baseline, averaged (the two-player Shapley value, so the shares add up exactly) */
        kdx_tensor *c1 = i == 0 ? E_bin(&S, KDX_BIN_SUB, f[0][0], f[1][0]) : E_bin(&S, KDX_BIN_SUB, f[0][0], f[0][1]);
        kdx_tensor *c2 = i == 0 ? E_bin(&S, KDX_BIN_SUB, f[0][1], f[1][1]) : E_bin(&S, KDX_BIN_SUB, f[1][0], f[1][1]);
        kdx_tensor *share = E_bins(&S, KDX_BIN_MUL, E_bin(&S, KDX_BIN_ADD, c1, c2), 0.5);
        kdx_tensor *d = E_bin(&S, KDX_BIN_SUB, h[i][0], h[i][1]);
        kdx_tensor *small = E_mask(&S, KDX_BIN_LT, E_un(&S, KDX_UN_ABS, d, 0, 0), RESCALE_EPS);
        kdx_tensor *m = E_bin(&S, KDX_BIN_DIV, share, E_bin(&S, KDX_BIN_ADD, d, small));
        kdx_tensor *r = E_where(&S, E_twice(&S, small), ord[i], E_bin(&S, KDX_BIN_MUL, g, E_twice(&S, m)));
        if (S.s == KDX_OK) gin[i] = kdx_tensor_retain(r);
    }
    kdx_status s = kdx__scope_free(&S);
    if (s != KDX_OK)
        for (int i = 0; i < 2; i++) {
            kdx_tensor_release(gin[i]);
            gin[i] = NULL;
        }
    return s;
}

kdx_status kdx__rescale_maxpool(const kdx_tensor *u, const kdx_tensor *idx, const kdx_tensor *g, kdx_tensor **out)
{
    int64_t rows = kdx__rule_rows(), n = rows / 2;
    if (u->ndim != 4 || u->shape[0] != rows) return not_batched("max_pool2d", u, rows);
    int64_t C = u->shape[1], P = rows * C, nc = n * C;
    int64_t us[2] = {P, u->shape[2] * u->shape[3]}, gs[2] = {P, g->shape[2] * g->shape[3]};
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *U = E_reshape(&S, u, 2, us), *I = E_reshape(&S, idx, 2, gs), *G = E_reshape(&S, g, 2, gs);
    kdx_tensor *Ux = E_rows(&S, U, 0, nc), *Ub = E_rows(&S, U, nc, nc), *Ix = E_rows(&S, I, 0, nc);
    kdx_tensor *yx = NULL, *yb = NULL, *ubj = NULL;
    KDX_KEEP(&S, yx, kdx_gather(Ux, 1, Ix, &kdx_o_));
    KDX_KEEP(&S, yb, kdx_gather(Ub, 1, E_rows(&S, I, nc, nc), &kdx_o_));
    KDX_KEEP(&S, ubj, kdx_gather(Ub, 1, Ix, &kdx_o_)); /* the baseline at x's argmax */
    kdx_tensor *den = E_bin(&S, KDX_BIN_SUB, yx, ubj);
    kdx_tensor *small = E_mask(&S, KDX_BIN_LT, E_un(&S, KDX_UN_ABS, den, 0, 0), RESCALE_EPS);
    kdx_tensor *m = E_bin(&S, KDX_BIN_DIV, E_bin(&S, KDX_BIN_SUB, yx, yb), E_bin(&S, KDX_BIN_ADD, den, small));
    m = E_where(&S, small, E_sbin(&S, KDX_BIN_ADD, 1, E_bins(&S, KDX_BIN_MUL, small, 0)), m); /* gradient 1 */
    const kdx_tensor *parts[2] = {E_bin(&S, KDX_BIN_MUL, E_rows(&S, G, 0, nc), m), E_rows(&S, G, nc, nc)};
    kdx_tensor *r = NULL;
    if (parts[0] && parts[1]) KDX_KEEP(&S, r, kdx_cat(parts, 2, 0, &kdx_o_));
    return kdx__scope_end(&S, E_reshape(&S, r, g->ndim, g->shape), out);
}

/* ---- the passes ---- */

/* The model at leaf (a fresh tensor, made to require grad) with the rule
   `kind` set, and d(sum of the selected outputs)/d leaf with the rule on in
   the backward pass; target rows start at `first`. *sel (may be NULL) gets
   the selected outputs. The old rule is back on every path. */
static kdx_status rule_pass(const char *fname, const kdx_model *m, kdx_tensor *leaf, const kdx_tensor *target,
                            int64_t first, kdx__rule_kind kind, kdx_tensor **grad, kdx_tensor **sel)
{
    kdx_tensor *y = NULL, *chosen = NULL, *sum = NULL;
    int64_t rows = leaf->shape[0];
    int was = kdx_set_grad_enabled(1);
    kdx__rule old = kdx__rule_set((kdx__rule){kind, false, rows});
    kdx_status s = kdx_tensor_set_requires_grad(leaf, 1);
    if (s == KDX_OK) s = kdx__attr_call(fname, m, leaf, &y);
    if (s == KDX_OK) s = kdx__select_target(fname, y, target, first, &chosen);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, chosen, NULL, 0, 0, &sum);
    if (s == KDX_OK && !sum->requires_grad)
        s = kdx_fail(KDX_ESTATE, "%s: the model's output does not depend on its input through recorded ops", fname);
    const kdx_tensor *outs[1] = {sum}, *ins[1] = {leaf};
    kdx__rule_set((kdx__rule){kind, true, rows});
    if (s == KDX_OK) s = kdx_grad(outs, 1, NULL, ins, 1, 0, 0, 1, grad);
    kdx__rule_set(old);
    kdx_set_grad_enabled(was);
    if (s == KDX_OK && sel) s = kdx_detach(chosen, sel);
    KDX_RELEASE(y, chosen, sum);
    return s;
}

/* Guided backprop and deconvolution: the gradient under a ReLU rule, in
   chunks of batch_size rows. */
static kdx_status relu_rule(const char *fname, kdx__rule_kind kind, const kdx_model *m, const kdx_tensor *x,
                            const kdx_tensor *target, int64_t batch_size, kdx_tensor **out)
{
    KDX_TRY(kdx__attr_check(fname, m, x, batch_size));
    kdx_tensor *attr;
    KDX_TRY(kdx__new_raw(fname, x->dtype, x->ndim, x->shape, &attr));
    kdx_status s = KDX_OK;
    bool was = kdx__grad_pause();
    for (int64_t lo = 0; lo < x->shape[0] && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, x->shape[0] - lo);
        kdx_tensor *xb = NULL, *leaf = NULL, *g = NULL, *dst = NULL;
        s = kdx_narrow(x, 0, lo, n, &xb);
        if (s == KDX_OK) s = kdx_clone(xb, &leaf);
        if (s == KDX_OK) s = rule_pass(fname, m, leaf, target, lo, kind, &g, NULL);
        if (s == KDX_OK) s = kdx_narrow(attr, 0, lo, n, &dst);
        if (s == KDX_OK) s = kdx_copy_(dst, g);
        KDX_RELEASE(xb, leaf, g, dst);
    }
    kdx__grad_restore(was);
    if (s != KDX_OK) {
        kdx_tensor_release(attr);
        return s;
    }
    *out = attr;
    return KDX_OK;
}

kdx_status kdx_attr_guided_backprop(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                                    int64_t batch_size, kdx_tensor **out)
{
    return relu_rule("guided_backprop", KDX__RULE_GUIDED, m, x, target, batch_size, out);
}

kdx_status kdx_attr_deconvolution(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                                  int64_t batch_size, kdx_tensor **out)
{
    return relu_rule("deconvolution", KDX__RULE_DECONV, m, x, target, batch_size, out);
}

/* ---- DeepLift ---- */

/* One chunk: rows lo..lo+k of x and base go through together as [x; base];
   attr rows get (x - base) * multipliers, delta rows the completeness gap. */
static kdx_status deeplift_chunk(const char *fname, const kdx_model *m, const kdx_tensor *x, const kdx_tensor *base,
                                 const kdx_tensor *target, int64_t lo, int64_t k, kdx_tensor *attr, kdx_tensor *delta)
{
    int64_t N = x->shape[0], per = kdx_tensor_numel(x) / N, k2 = 2 * k, fs[2] = {k, per};
    kdx_tensor *xb = NULL, *bb = NULL, *leaf = NULL, *ids = NULL, *tg = NULL, *g = NULL, *sel = NULL;
    kdx_tensor *gx = NULL, *diff = NULL, *a = NULL, *dst = NULL, *flat = NULL, *sums = NULL;
    kdx_tensor *fx = NULL, *fb = NULL, *gap = NULL, *dl = NULL, *ddst = NULL;
    kdx_status s = kdx_narrow(x, 0, lo, k, &xb);
    if (s == KDX_OK) s = kdx_narrow(base, 0, lo, k, &bb);
    const kdx_tensor *both[2] = {xb, bb};
    if (s == KDX_OK) s = kdx_cat(both, 2, 0, &leaf);
    if (s == KDX_OK) s = kdx_empty(KDX_DTYPE_I64, 1, &k2, &ids);
    for (int64_t r = 0; r < k2 && s == KDX_OK; r++) ((int64_t *)kdx__base(ids))[r] = lo + r % k;
    if (s == KDX_OK) s = kdx__attr_row_targets(fname, target, N, ids, &tg);
    if (s == KDX_OK) s = rule_pass(fname, m, leaf, tg, 0, KDX__RULE_RESCALE, &g, &sel);
    if (s == KDX_OK) s = kdx_narrow(g, 0, 0, k, &gx);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, xb, bb, &diff);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, diff, gx, &a);
    if (s == KDX_OK) s = kdx_narrow(attr, 0, lo, k, &dst);
    if (s == KDX_OK) s = kdx_copy_(dst, a);
    int one = 1;
    if (s == KDX_OK) s = kdx_reshape(a, 2, fs, &flat);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, flat, &one, 1, 0, &sums);
    if (s == KDX_OK) s = kdx_narrow(sel, 0, 0, k, &fx);
    if (s == KDX_OK) s = kdx_narrow(sel, 0, k, k, &fb);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, fx, fb, &gap);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, sums, gap, &dl);
    if (s == KDX_OK) s = kdx_narrow(delta, 0, lo, k, &ddst);
    if (s == KDX_OK) s = kdx_copy_(ddst, dl);
    KDX_RELEASE(xb, bb, leaf, ids, tg, g, sel);
    KDX_RELEASE(gx, diff, a, dst, flat, sums);
    KDX_RELEASE(fx, fb, gap, dl, ddst);
    return s;
}

kdx_status kdx_attr_deeplift(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *baseline,
                             const kdx_tensor *target, int64_t batch_size, kdx_tensor **out, kdx_tensor **delta)
{
    const char *fname = "deeplift";
    KDX_TRY(kdx__attr_check(fname, m, x, batch_size));
    if (batch_size < 2)
        return kdx_fail(KDX_EINVAL, "%s: batch_size must be >= 2 (x and baseline rows go through together), got %lld",
                        fname, (long long)batch_size);
    if (baseline) KDX_TRY(kdx__check_float(fname, "baseline", baseline));
    int64_t N = x->shape[0];
    kdx_tensor *base = NULL, *attr = NULL, *dl = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = baseline ? kdx_expand(baseline, x->ndim, x->shape, &base) : kdx_zeros(x->dtype, x->ndim, x->shape, &base);
    if (s != KDX_OK && baseline)
        s = kdx_fail(KDX_ESHAPE, "%s: baseline %s does not broadcast to x %s", fname, kdx__shp(baseline), kdx__shp(x));
    if (s == KDX_OK && base->dtype != x->dtype) {
        kdx_tensor *t = NULL;
        s = kdx_to(base, x->dtype, &t);
        kdx_tensor_release(base);
        base = t;
    }
    if (s == KDX_OK) s = kdx__new_raw(fname, x->dtype, x->ndim, x->shape, &attr);
    if (s == KDX_OK) s = kdx__new_raw(fname, x->dtype, 1, &N, &dl);
    /* batch_size / 2 samples per call: the model sees them and their baselines */
    for (int64_t lo = 0, chunk = batch_size / 2; lo < N && s == KDX_OK; lo += chunk)
        s = deeplift_chunk(fname, m, x, base, target, lo, kdx__min64(chunk, N - lo), attr, dl);
    kdx__grad_restore(was);
    kdx_tensor_release(base);
    if (s != KDX_OK) {
        KDX_RELEASE(attr, dl);
        return s;
    }
    *out = attr;
    if (delta) *delta = dl;
    else kdx_tensor_release(dl);
    return KDX_OK;
}
