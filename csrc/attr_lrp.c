/* attr_lrp.c — layer-wise relevance propagation (Bach et al. 2015) over a
 * chain of layers, with the rules and composites of Zennit.
 *
 * LRP needs the layers themselves, not a callback: the chain is given as an
 * array of kdx_lrp_layer (the binding builds it from a Sequential). A
 * BatchNorm is folded into the Linear/Conv2d before it (new tensors; the
 * model is not touched). Each chunk of at most batch_size rows runs forward
 * once, keeping every layer's input, then relevance flows back from the
 * target output (one-hot times the logit) one layer at a time.
 *
 * Every rule is Zennit's "gradient trick": the layer with modified inputs
 * and weights gives outputs z_k; the relevance above, divided by a
 * stabilised sum of them, goes back through the modified layer (W_k^T g, a
 * matmul for Linear, the engine's autograd for Conv2d and the pools) and is
 * multiplied by the modified input. Everything runs in x's dtype. */
#include "kdx_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define FN "lrp"

static const char *const rule_names[] = {"auto", "epsilon", "gamma", "zplus", "zbox", "flat",
                                         "wsquare", "norm", "gradient", "pass", "folded"};

const char *kdx_lrp_rule_name(kdx_lrp_rule r)
{
    return (unsigned)r < sizeof rule_names / sizeof *rule_names ? rule_names[r] : "unknown";
}

static const char *type_name(kdx_lrp_type t)
{
    static const char *const names[] = {"Linear", "Conv2d", "BatchNorm", "ReLU", "MaxPool2d",
                                        "AvgPool2d", "Flatten", "Identity", "AdaptiveAvgPool2d"};
    return (unsigned)t < sizeof names / sizeof *names ? names[t] : "unknown";
}

static const char *lname(const kdx_lrp_layer *l, int i)
{
    static _Thread_local char buf[32];
    if (l->name) return l->name;
    snprintf(buf, sizeof buf, "%d", i);
    return buf;
}

/* ---- BatchNorm folding ---- */

static kdx_status check_vec(const char *what, const kdx_tensor *t, int64_t n)
{
    if (!t) return KDX_OK;
    KDX_TRY(kdx__check_float(FN, what, t));
    if (t->ndim != 1 || t->shape[0] != n)
        return kdx_fail(KDX_ESHAPE, "lrp: %s must be [%lld], got %s", what, (long long)n, kdx__shp(t));
    return KDX_OK;
}

/* t in dtype dt, kept in the scope (NULL stays NULL). */
static kdx_tensor *E_as(kdx_scope *S, const kdx_tensor *t, kdx_dtype dt)
{
    kdx_tensor *r = NULL;
    if (t) KDX_KEEP(S, r, kdx_to(t, dt, &kdx_o_));
    return r;
}

kdx_status kdx_lrp_fold_batchnorm(const kdx_tensor *w, const kdx_tensor *b, const kdx_tensor *mean,
                                  const kdx_tensor *var, const kdx_tensor *bn_w, const kdx_tensor *bn_b, double eps,
                                  kdx_tensor **w_out, kdx_tensor **b_out)
{
    KDX_TRY(kdx__check_float(FN, "weight", w));
    if (w->ndim < 2) return kdx_fail(KDX_ESHAPE, "lrp: the weight to fold into must be [out, ...], got %s", kdx__shp(w));
    if (!mean || !var) return kdx_fail(KDX_EINVAL, "lrp: folding a BatchNorm needs its running mean and variance");
    if (!(eps >= 0) || !isfinite(eps)) return kdx_fail(KDX_EINVAL, "lrp: BatchNorm eps must be >= 0, got %g", eps);
    int64_t O = w->shape[0];
    KDX_TRY(check_vec("bias", b, O));
    KDX_TRY(check_vec("running_mean", mean, O));
    KDX_TRY(check_vec("running_var", var, O));
    KDX_TRY(check_vec("BatchNorm weight", bn_w, O));
    KDX_TRY(check_vec("BatchNorm bias", bn_b, O));
    kdx_dtype dt = w->dtype;
    bool was = kdx__grad_pause();
    kdx_scope S = KDX_SCOPE;
    /* s = bn_w / sqrt(var + eps); w' = w * s (per output); b' = (b - mean) * s + bn_b */
    kdx_tensor *s = E_un(&S, KDX_UN_RSQRT, E_bins(&S, KDX_BIN_ADD, E_as(&S, var, dt), eps), 0, 0);
    if (bn_w) s = E_bin(&S, KDX_BIN_MUL, s, E_as(&S, bn_w, dt));
    int64_t shape[KDX_MAX_DIMS];
    shape[0] = O;
    for (int d = 1; d < w->ndim; d++) shape[d] = 1;
    kdx_tensor *wf = E_bin(&S, KDX_BIN_MUL, w, E_reshape(&S, s, w->ndim, shape));
    kdx_tensor *bf = b ? E_bin(&S, KDX_BIN_SUB, E_as(&S, b, dt), E_as(&S, mean, dt))
                       : E_un(&S, KDX_UN_NEG, E_as(&S, mean, dt), 0, 0);
    bf = E_bin(&S, KDX_BIN_MUL, bf, s);
    if (bn_b) bf = E_bin(&S, KDX_BIN_ADD, bf, E_as(&S, bn_b, dt));
    kdx_tensor *wr = NULL, *br = NULL;
    if (S.s == KDX_OK) S.s = kdx_detach(wf, &wr);
    if (S.s == KDX_OK) S.s = kdx_detach(bf, &br);
    kdx_status st = kdx__scope_free(&S);
    kdx__grad_restore(was);
    if (st != KDX_OK) {
        KDX_RELEASE(wr, br);
        return st;
    }
    *w_out = wr, *b_out = br;
    return KDX_OK;
}

/* ---- the chain ---- */

/* One step of the propagation: a parameter-free layer, or a Linear/Conv2d
   with the BatchNorm after it (layers first..last) folded in. */
typedef struct step {
    const kdx_lrp_layer *l;
    int first, last;
    kdx_lrp_rule rule;
    kdx_tensor *w, *b; /* x's dtype, detached; NULL for parameter-free layers */
} step;

/* The rule each layer uses: its own, else the composite's. */
static kdx_status resolve(const kdx_lrp_layer *ls, int n, kdx_lrp_composite c, kdx_lrp_rule *r)
{
    int convs = 0, params = 0;
    for (int i = 0; i < n; i++) {
        const kdx_lrp_layer *l = &ls[i];
        kdx_lrp_rule want = l->rule, pick;
        bool ok;
        switch (l->type) {
        case KDX_LRP_LINEAR:
        case KDX_LRP_CONV2D: {
            bool conv = l->type == KDX_LRP_CONV2D;
            if (c == KDX_LRP_EPSILON_PLUS_FLAT && params == 0) pick = KDX_LRP_RULE_FLAT;
            else if (c == KDX_LRP_EPSILON_GAMMA_BOX && conv) pick = convs == 0 ? KDX_LRP_RULE_ZBOX : KDX_LRP_RULE_GAMMA;
            else pick = conv ? KDX_LRP_RULE_ZPLUS : KDX_LRP_RULE_EPSILON;
            convs += conv, params++;
            ok = want >= KDX_LRP_RULE_EPSILON && want <= KDX_LRP_RULE_WSQUARE;
            break;
        }
        case KDX_LRP_BATCHNORM:
            pick = KDX_LRP_RULE_FOLDED;
            ok = want == KDX_LRP_RULE_FOLDED;
            break;
        case KDX_LRP_MAXPOOL2D:
            pick = KDX_LRP_RULE_GRADIENT; /* winner takes all */
            ok = want == KDX_LRP_RULE_GRADIENT;
            break;
        case KDX_LRP_AVGPOOL2D:
        case KDX_LRP_ADAPTIVE_AVGPOOL2D:
            pick = KDX_LRP_RULE_NORM;
            ok = want == KDX_LRP_RULE_NORM || want == KDX_LRP_RULE_EPSILON;
            break;
        case KDX_LRP_RELU:
        case KDX_LRP_FLATTEN:
        case KDX_LRP_IDENTITY:
            pick = KDX_LRP_RULE_PASS;
            ok = want == KDX_LRP_RULE_PASS;
            break;
        default:
            return kdx_fail(KDX_EINVAL, "lrp: layer %s has an unknown type %d", lname(l, i), (int)l->type);
        }
        if (want == KDX_LRP_RULE_AUTO) want = pick;
        else if (!ok || (unsigned)want > KDX_LRP_RULE_FOLDED)
            return kdx_fail(KDX_EINVAL, "lrp: the %s rule does not apply to layer %s (%s)", kdx_lrp_rule_name(want),
                            lname(l, i), type_name(l->type));
        r[i] = want;
    }
    return KDX_OK;
}

/* Checks a Linear/Conv2d layer's parameters and keeps them in dtype dt. */
static kdx_status take_params(const kdx_lrp_layer *l, int i, kdx_dtype dt, step *st)
{
    int want = l->type == KDX_LRP_LINEAR ? 2 : 4;
    if (!l->weight) return kdx_fail(KDX_EINVAL, "lrp: layer %s (%s) has no weight", lname(l, i), type_name(l->type));
    KDX_TRY(kdx__check_float(FN, "weight", l->weight));
    if (l->weight->ndim != want)
        return kdx_fail(KDX_ESHAPE, "lrp: layer %s (%s) weight must have %d dims, got %s", lname(l, i),
                        type_name(l->type), want, kdx__shp(l->weight));
    KDX_TRY(check_vec("bias", l->bias, l->weight->shape[0]));
    kdx_tensor *t = NULL;
    KDX_TRY(kdx_to(l->weight, dt, &t));
    kdx_status s = kdx_detach(t, &st->w);
    kdx_tensor_release(t);
    t = NULL;
    if (s == KDX_OK && l->bias) s = kdx_to(l->bias, dt, &t);
    if (s == KDX_OK && t) s = kdx_detach(t, &st->b);
    kdx_tensor_release(t);
    return s;
}

/* The steps of the chain; *nsteps counts those made so far, even on failure. */
static kdx_status build_steps(const kdx_lrp_layer *ls, int n, const kdx_lrp_rule *rules, kdx_dtype dt, step *steps,
                              int *nsteps)
{
    int ns = 0;
    *nsteps = 0;
    for (int i = 0; i < n; i++) {
        const kdx_lrp_layer *l = &ls[i];
        if (l->type == KDX_LRP_BATCHNORM) {
            step *p = ns ? &steps[ns - 1] : NULL;
            if (!p || !p->w || p->last != i - 1 || p->last != p->first)
                return kdx_fail(KDX_EINVAL, "lrp: BatchNorm layer %s must come right after a Linear or Conv2d layer, "
                                            "into which it is folded", lname(l, i));
            kdx_tensor *w = NULL, *b = NULL;
            kdx_status s = kdx_lrp_fold_batchnorm(p->w, p->b, l->running_mean, l->running_var, l->weight, l->bias,
                                                  l->eps, &w, &b);
            if (s != KDX_OK) {
                char msg[256];
                const char *e = kdx_last_error();
                snprintf(msg, sizeof msg, "%s", strncmp(e, "lrp: ", 5) == 0 ? e + 5 : e);
                return kdx_fail(s, "lrp: BatchNorm layer %s: %s", lname(l, i), msg);
            }
            KDX_RELEASE(p->w, p->b);
            p->w = w, p->b = b, p->last = i;
            continue;
        }
        step *st = &steps[ns++];
        *nsteps = ns;
        st->l = l, st->first = st->last = i, st->rule = rules[i];
        if (l->type == KDX_LRP_LINEAR || l->type == KDX_LRP_CONV2D) KDX_TRY(take_params(l, i, dt, st));
    }
    return KDX_OK;
}

/* ---- one layer forward and backward ---- */

/* z = the step's layer at a with weights w, b (b may be NULL). */
static kdx_status fwd(const step *st, const kdx_tensor *a, const kdx_tensor *w, const kdx_tensor *b, kdx_tensor **z)
{
    const kdx_lrp_layer *l = st->l;
    switch (l->type) {
    case KDX_LRP_LINEAR: {
        if (a->ndim != 2 || a->shape[1] != w->shape[1])
            return kdx_fail(KDX_ESHAPE, "lrp: Linear layer %s expects [N, %lld], got %s", lname(l, st->first),
                            (long long)w->shape[1], kdx__shp(a));
        kdx_tensor *wt = NULL, *y = NULL;
        kdx_status s = kdx_transpose(w, 0, 1, &wt);
        if (s == KDX_OK) s = kdx_matmul(a, wt, &y);
        kdx_tensor_release(wt);
        if (s == KDX_OK && b) {
            s = kdx_binary(KDX_BIN_ADD, y, b, z);
            kdx_tensor_release(y);
        } else if (s == KDX_OK) {
            *z = y;
        }
        return s;
    }
    case KDX_LRP_CONV2D: return kdx_conv2d(a, w, b, &l->conv, z);
    case KDX_LRP_MAXPOOL2D: return kdx_max_pool2d(a, &l->pool, z, NULL);
    case KDX_LRP_AVGPOOL2D: return kdx_avg_pool2d(a, &l->pool, z);
    case KDX_LRP_ADAPTIVE_AVGPOOL2D: return kdx_adaptive_avg_pool2d(a, l->output_size[0], l->output_size[1], z);
    case KDX_LRP_FLATTEN: return kdx_flatten(a, l->flatten_start, l->flatten_end, z);
    case KDX_LRP_RELU: return kdx_unary(KDX_UN_RELU, a, 0, 0, z);
    default: *z = kdx_tensor_retain((kdx_tensor *)a); return KDX_OK;
    }
}

/* The gradient of fwd w.r.t. its input at a, applied to g: W^T g for the
   linear layers (a matmul for Linear, autograd for the rest). */
static kdx_status vjp(const step *st, const kdx_tensor *a, const kdx_tensor *w, const kdx_tensor *g, kdx_tensor **out)
{
    if (st->l->type == KDX_LRP_LINEAR) return kdx_matmul(g, w, out);
    kdx_tensor *leaf = NULL, *z = NULL;
    int was = kdx_set_grad_enabled(1);
    kdx_status s = kdx_clone(a, &leaf);
    if (s == KDX_OK) s = kdx_tensor_set_requires_grad(leaf, 1);
    if (s == KDX_OK) s = fwd(st, leaf, w, NULL, &z);
    const kdx_tensor *outs[1] = {z}, *ins[1] = {leaf}, *gs[1] = {g};
    if (s == KDX_OK) s = kdx_grad(outs, 1, gs, ins, 1, 0, 0, 1, out);
    kdx_set_grad_enabled(was);
    KDX_RELEASE(leaf, z);
    return s;
}

/* z + e * sign(z), where sign(0) = +1 (Zennit's stabilize). */
static kdx_tensor *E_stab(kdx_scope *S, const kdx_tensor *z, double e)
{
    kdx_tensor *pos = E_mask(S, KDX_BIN_GE, z, 0);
    return E_bin(S, KDX_BIN_ADD, z, E_bins(S, KDX_BIN_SUB, E_bins(S, KDX_BIN_MUL, pos, 2 * e), e));
}

#define KEEP_FWD(S, dst, st, a, w, b) KDX_KEEP(S, dst, fwd(st, a, w, b, &kdx_o_))
#define KEEP_VJP(S, dst, st, a, w, g) KDX_KEEP(S, dst, vjp(st, a, w, g, &kdx_o_))
#define CLAMP_MIN(S, t) E_un(S, KDX_UN_CLAMP, t, 0, NAN)
#define CLAMP_MAX(S, t) E_un(S, KDX_UN_CLAMP, t, NAN, 0)

/* epsilon (and norm for the pools): R_in = a * W^T (R / stab(z, e)). */
static kdx_tensor *rule_epsilon(kdx_scope *S, const step *st, const kdx_tensor *a, const kdx_tensor *R, double e)
{
    kdx_tensor *z, *v;
    KEEP_FWD(S, z, st, a, st->w, st->b);
    kdx_tensor *g = E_bin(S, KDX_BIN_DIV, R, E_stab(S, z, e));
    KEEP_VJP(S, v, st, a, st->w, g);
    return E_bin(S, KDX_BIN_MUL, a, v);
}

/* z+ (alpha1-beta0 that also takes negative inputs): positive contributions
   x+ w+ and x- w- share R. */
static kdx_tensor *rule_zplus(kdx_scope *S, const step *st, const kdx_tensor *a, const kdx_tensor *R, double e)
{
    kdx_tensor *xp = CLAMP_MIN(S, a), *xn = CLAMP_MAX(S, a), *wp = CLAMP_MIN(S, st->w), *wn = CLAMP_MAX(S, st->w);
    kdx_tensor *bp = st->b ? CLAMP_MIN(S, st->b) : NULL, *z0, *z1, *v0, *v1;
    KEEP_FWD(S, z0, st, xp, wp, bp);
    KEEP_FWD(S, z1, st, xn, wn, NULL);
    kdx_tensor *g = E_bin(S, KDX_BIN_DIV, R, E_stab(S, E_bin(S, KDX_BIN_ADD, z0, z1), e));
    KEEP_VJP(S, v0, st, xp, wp, g);
    KEEP_VJP(S, v1, st, xn, wn, g);
    return E_bin(S, KDX_BIN_ADD, E_bin(S, KDX_BIN_MUL, xp, v0), E_bin(S, KDX_BIN_MUL, xn, v1));
}

/* gamma, generalised to both signs as Zennit: where z > 0 the positive
   contributions (weights w + gamma w+) share R, where z < 0 the negative ones. */
static kdx_tensor *rule_gamma(kdx_scope *S, const step *st, const kdx_tensor *a, const kdx_tensor *R, double gamma,
                              double e)
{
    const kdx_tensor *w = st->w, *b = st->b;
    kdx_tensor *xp = CLAMP_MIN(S, a), *xn = CLAMP_MAX(S, a);
    kdx_tensor *wpg = E_bin(S, KDX_BIN_ADD, w, E_bins(S, KDX_BIN_MUL, CLAMP_MIN(S, w), gamma));
    kdx_tensor *wng = E_bin(S, KDX_BIN_ADD, w, E_bins(S, KDX_BIN_MUL, CLAMP_MAX(S, w), gamma));
    kdx_tensor *bpg = b ? E_bin(S, KDX_BIN_ADD, b, E_bins(S, KDX_BIN_MUL, CLAMP_MIN(S, b), gamma)) : NULL;
    kdx_tensor *bng = b ? E_bin(S, KDX_BIN_ADD, b, E_bins(S, KDX_BIN_MUL, CLAMP_MAX(S, b), gamma)) : NULL;
    kdx_tensor *z0, *z1, *z2, *z3, *z, *v0, *v1, *v2, *v3;
    KEEP_FWD(S, z0, st, xp, wpg, bpg);
    KEEP_FWD(S, z1, st, xn, wng, NULL);
    KEEP_FWD(S, z2, st, xp, wng, bng);
    KEEP_FWD(S, z3, st, xn, wpg, NULL);
    KEEP_FWD(S, z, st, a, w, b);
    kdx_tensor *rp = E_bin(S, KDX_BIN_MUL, R, E_mask(S, KDX_BIN_GT, z, 0));
    kdx_tensor *rn = E_bin(S, KDX_BIN_MUL, R, E_mask(S, KDX_BIN_LT, z, 0));
    kdx_tensor *gp = E_bin(S, KDX_BIN_DIV, rp, E_stab(S, E_bin(S, KDX_BIN_ADD, z0, z1), e));
    kdx_tensor *gn = E_bin(S, KDX_BIN_DIV, rn, E_stab(S, E_bin(S, KDX_BIN_ADD, z2, z3), e));
    KEEP_VJP(S, v0, st, xp, wpg, gp);
    KEEP_VJP(S, v1, st, xn, wng, gp);
    KEEP_VJP(S, v2, st, xp, wng, gn);
    KEEP_VJP(S, v3, st, xn, wpg, gn);
    kdx_tensor *pos = E_bin(S, KDX_BIN_ADD, E_bin(S, KDX_BIN_MUL, xp, v0), E_bin(S, KDX_BIN_MUL, xn, v1));
    kdx_tensor *neg = E_bin(S, KDX_BIN_ADD, E_bin(S, KDX_BIN_MUL, xp, v2), E_bin(S, KDX_BIN_MUL, xn, v3));
    return E_bin(S, KDX_BIN_ADD, pos, neg);
}

/* Whether b broadcasts to a's shape. */
static bool broadcasts(const kdx_tensor *b, const kdx_tensor *a)
{
    if (b->ndim > a->ndim) return false;
    for (int d = 1; d <= b->ndim; d++) {
        int64_t nb = b->shape[b->ndim - d], na = a->shape[a->ndim - d];
        if (nb != 1 && nb != na) return false;
    }
    return true;
}

/* z^B for inputs bounded by [lo, hi]: (x w - lo w+ - hi w-) shares R. */
static kdx_tensor *rule_zbox(kdx_scope *S, const step *st, const kdx_tensor *a, const kdx_tensor *R,
                             const kdx_tensor *low, const kdx_tensor *high, double e)
{
    if (S->s == KDX_OK && (!broadcasts(low, a) || !broadcasts(high, a)))
        S->s = kdx_fail(KDX_ESHAPE, "lrp: the bounds low %s and high %s must broadcast to one sample of the input "
                                    "of layer %s, %s", kdx__shp(low), kdx__shp(high), lname(st->l, st->first),
                        kdx__shp(a));
    kdx_tensor *lo = E_expand(S, E_as(S, low, a->dtype), a->ndim, a->shape);
    kdx_tensor *hi = E_expand(S, E_as(S, high, a->dtype), a->ndim, a->shape);
    kdx_tensor *wp = CLAMP_MIN(S, st->w), *wn = CLAMP_MAX(S, st->w);
    kdx_tensor *bp = st->b ? CLAMP_MIN(S, st->b) : NULL, *bn = st->b ? CLAMP_MAX(S, st->b) : NULL;
    kdx_tensor *z0, *z1, *z2, *v0, *v1, *v2;
    KEEP_FWD(S, z0, st, a, st->w, st->b);
    KEEP_FWD(S, z1, st, lo, wp, bp);
    KEEP_FWD(S, z2, st, hi, wn, bn);
    kdx_tensor *d = E_bin(S, KDX_BIN_SUB, E_bin(S, KDX_BIN_SUB, z0, z1), z2);
    kdx_tensor *g = E_bin(S, KDX_BIN_DIV, R, E_stab(S, d, e));
    KEEP_VJP(S, v0, st, a, st->w, g);
    KEEP_VJP(S, v1, st, lo, wp, g);
    KEEP_VJP(S, v2, st, hi, wn, g);
    kdx_tensor *r = E_bin(S, KDX_BIN_SUB, E_bin(S, KDX_BIN_MUL, a, v0), E_bin(S, KDX_BIN_MUL, lo, v1));
    return E_bin(S, KDX_BIN_SUB, r, E_bin(S, KDX_BIN_MUL, hi, v2));
}

/* flat (all weights 1) and w^2: R_j shared in proportion to w'_ij, whatever
   the input; no bias. */
static kdx_tensor *rule_shape(kdx_scope *S, const step *st, const kdx_tensor *a, const kdx_tensor *R, bool square,
                              double e)
{
    kdx_tensor *ones = NULL, *w = NULL, *z, *v;
    KDX_KEEP(S, ones, kdx_full(a->dtype, a->ndim, a->shape, 1.0, &kdx_o_));
    if (square) w = E_bin(S, KDX_BIN_MUL, st->w, st->w);
    else KDX_KEEP(S, w, kdx_full(st->w->dtype, st->w->ndim, st->w->shape, 1.0, &kdx_o_));
    KEEP_FWD(S, z, st, ones, w, NULL);
    kdx_tensor *g = E_bin(S, KDX_BIN_DIV, R, E_stab(S, z, e));
    KEEP_VJP(S, v, st, ones, w, g);
    return v;
}

/* The relevance at the input of step st, given R at its output. */
static kdx_status relevance(const step *st, const kdx_tensor *a, const kdx_tensor *R, const kdx_lrp_opts *o,
                            kdx_tensor **out)
{
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *r = NULL;
    switch (st->rule) {
    case KDX_LRP_RULE_EPSILON: r = rule_epsilon(&S, st, a, R, o->epsilon); break;
    case KDX_LRP_RULE_NORM: r = rule_epsilon(&S, st, a, R, o->stabilizer); break;
    case KDX_LRP_RULE_ZPLUS: r = rule_zplus(&S, st, a, R, o->stabilizer); break;
    case KDX_LRP_RULE_GAMMA: r = rule_gamma(&S, st, a, R, o->gamma, o->stabilizer); break;
    case KDX_LRP_RULE_ZBOX: r = rule_zbox(&S, st, a, R, o->low, o->high, o->stabilizer); break;
    case KDX_LRP_RULE_FLAT: r = rule_shape(&S, st, a, R, false, o->stabilizer); break;
    case KDX_LRP_RULE_WSQUARE: r = rule_shape(&S, st, a, R, true, o->stabilizer); break;
    case KDX_LRP_RULE_GRADIENT: KDX_KEEP(&S, r, vjp(st, a, NULL, R, &kdx_o_)); break;
    default: /* pass: the relevance goes through unchanged (reshaped for Flatten) */
        r = E_reshape(&S, R, a->ndim, a->shape);
        break;
    }
    return kdx__scope_end(&S, r, out);
}

/* The relevance at the output: the target logit in its place, zero elsewhere. */
static kdx_status initial(const kdx_tensor *y, const kdx_tensor *target, int64_t first, kdx_tensor **out)
{
    kdx_tensor *sel = NULL, *idx = NULL, *oh = NULL, *ohf = NULL, *flat = NULL;
    kdx_status s = kdx__select_target(FN, y, target, first, &sel); /* checks the target */
    if (s != KDX_OK) return s;
    kdx_tensor_release(sel);
    if (y->ndim == 1 || (y->shape[1] == 1 && !target)) {
        *out = kdx_tensor_retain((kdx_tensor *)y);
        return KDX_OK;
    }
    int64_t B = y->shape[0], nt = kdx_tensor_numel(target);
    s = kdx_reshape(target, 1, &nt, &flat);
    if (s == KDX_OK) s = kdx_empty(KDX_DTYPE_I64, 1, &B, &idx);
    for (int64_t i = 0; i < B && s == KDX_OK; i++) {
        int64_t at = nt == 1 ? 0 : first + i, c = 0;
        s = kdx_tensor_get_i64(flat, &at, &c);
        if (s == KDX_OK) s = kdx_tensor_set_i64(idx, &i, c);
    }
    if (s == KDX_OK) s = kdx_one_hot(idx, y->shape[1], &oh);
    if (s == KDX_OK) s = kdx_to(oh, y->dtype, &ohf);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, y, ohf, out);
    KDX_RELEASE(idx, oh, ohf, flat);
    return s;
}

/* Row `row` of sums, columns lo.. = the per-sample totals of r. */
static kdx_status put_sums(kdx_tensor *sums, int row, int64_t lo, const kdx_tensor *r)
{
    int64_t n = r->shape[0], shape[2] = {n, n ? kdx_tensor_numel(r) / n : 0};
    kdx_tensor *flat = NULL, *tot = NULL, *line = NULL, *dst = NULL;
    int one = 1;
    kdx_status s = kdx_reshape(r, 2, shape, &flat);
    if (s == KDX_OK) s = kdx_reduce(KDX_RED_SUM, flat, &one, 1, 0, &tot);
    if (s == KDX_OK) s = kdx_select(sums, 0, row, &line);
    if (s == KDX_OK) s = kdx_narrow(line, 0, lo, n, &dst);
    if (s == KDX_OK) s = kdx_copy_(dst, tot);
    KDX_RELEASE(flat, tot, line, dst);
    return s;
}

/* Forward through the steps keeping each input, then relevance back, for the
   rows [lo, lo + xb's rows). */
static kdx_status run_chunk(const step *steps, int ns, int n, const kdx_tensor *xb, const kdx_tensor *target,
                            int64_t lo, const kdx_lrp_opts *o, kdx_tensor *sums, kdx_tensor **out)
{
    size_t bytes = (size_t)(ns + 1) * sizeof(kdx_tensor *);
    kdx_tensor **acts = kdx__malloc(bytes);
    if (!acts) return kdx_fail(KDX_ENOMEM, "lrp: out of memory");
    acts[0] = kdx_tensor_retain((kdx_tensor *)xb);
    kdx_status s = KDX_OK;
    for (int k = 0; k < ns && s == KDX_OK; k++) s = fwd(&steps[k], acts[k], steps[k].w, steps[k].b, &acts[k + 1]);
    kdx_tensor *R = NULL;
    if (s == KDX_OK) s = initial(acts[ns], target, lo, &R);
    if (s == KDX_OK && sums) s = put_sums(sums, n, lo, R);
    for (int k = ns - 1; k >= 0 && s == KDX_OK; k--) {
        kdx_tensor *Rin = NULL;
        /* a folded BatchNorm passes on what reaches it: its input holds R */
        for (int i = steps[k].first + 1; i <= steps[k].last && s == KDX_OK && sums; i++) s = put_sums(sums, i, lo, R);
        if (s == KDX_OK) s = relevance(&steps[k], acts[k], R, o, &Rin);
        if (s == KDX_OK && sums) s = put_sums(sums, steps[k].first, lo, Rin);
        kdx_tensor_release(R);
        R = Rin;
    }
    for (int k = 0; k <= ns; k++) kdx_tensor_release(acts[k]);
    kdx__free(acts, bytes);
    if (s != KDX_OK) {
        kdx_tensor_release(R);
        return s;
    }
    *out = R;
    return KDX_OK;
}

static kdx_status check_opts(const kdx_lrp_layer *layers, int n, const kdx_tensor *x, const kdx_lrp_opts *o)
{
    if (!o) return kdx_fail(KDX_EINVAL, "lrp: options are NULL");
    if (!layers || n < 1 || n > 1000000) return kdx_fail(KDX_EINVAL, "lrp: the model must have at least one layer");
    KDX_TRY(kdx__check_float(FN, "x", x));
    if (x->ndim < 1 || x->shape[0] < 1) return kdx_fail(KDX_ESHAPE, "lrp: x must be a batch [N, ...], got %s", kdx__shp(x));
    if (o->batch_size < 1) return kdx_fail(KDX_EINVAL, "lrp: batch_size must be >= 1, got %lld", (long long)o->batch_size);
    if (!(o->epsilon >= 0) || !isfinite(o->epsilon))
        return kdx_fail(KDX_EINVAL, "lrp: epsilon must be a finite number >= 0, got %g", o->epsilon);
    if (!(o->stabilizer >= 0) || !isfinite(o->stabilizer))
        return kdx_fail(KDX_EINVAL, "lrp: stabilizer must be a finite number >= 0, got %g", o->stabilizer);
    if (!(o->gamma >= 0) || !isfinite(o->gamma))
        return kdx_fail(KDX_EINVAL, "lrp: gamma must be a finite number >= 0, got %g", o->gamma);
    if ((unsigned)o->composite > KDX_LRP_EPSILON_PLUS_FLAT)
        return kdx_fail(KDX_EINVAL, "lrp: unknown composite %d", (int)o->composite);
    if (o->low) KDX_TRY(kdx__check_float(FN, "low", o->low));
    if (o->high) KDX_TRY(kdx__check_float(FN, "high", o->high));
    return KDX_OK;
}

kdx_status kdx_attr_lrp(const kdx_lrp_layer *layers, int n, const kdx_tensor *x, const kdx_tensor *target,
                        const kdx_lrp_opts *o, kdx_tensor **out, kdx_tensor **sums, kdx_lrp_rule *rules)
{
    KDX_TRY(check_opts(layers, n, x, o));
    size_t rbytes = (size_t)n * sizeof(kdx_lrp_rule), sbytes = (size_t)n * sizeof(step);
    kdx_lrp_rule *rr = kdx__malloc(rbytes);
    step *steps = kdx__malloc(sbytes);
    kdx_status s = rr && steps ? KDX_OK : kdx_fail(KDX_ENOMEM, "lrp: out of memory");
    if (s == KDX_OK) s = resolve(layers, n, o->composite, rr);
    for (int i = 0; i < n && s == KDX_OK; i++)
        if (rr[i] == KDX_LRP_RULE_ZBOX && (!o->low || !o->high))
            s = kdx_fail(KDX_EINVAL, "lrp: the zbox rule of layer %s needs the input bounds low and high",
                         lname(&layers[i], i));
    int ns = 0;
    bool was = kdx__grad_pause();
    if (s == KDX_OK) s = build_steps(layers, n, rr, x->dtype, steps, &ns);
    kdx_tensor *attr = NULL, *tot = NULL;
    int64_t N = x->shape[0], sshape[2] = {(int64_t)n + 1, N};
    if (s == KDX_OK) s = kdx__new(FN, x->dtype, x->ndim, x->shape, &attr);
    if (s == KDX_OK && sums) s = kdx__new(FN, x->dtype, 2, sshape, &tot);
    for (int64_t lo = 0; lo < N && s == KDX_OK; lo += o->batch_size) {
        int64_t nb = kdx__min64(o->batch_size, N - lo);
        kdx_tensor *xb = NULL, *r = NULL, *dst = NULL;
        s = kdx_narrow(x, 0, lo, nb, &xb);
        if (s == KDX_OK) s = run_chunk(steps, ns, n, xb, target, lo, o, tot, &r);
        if (s == KDX_OK && (r->ndim != x->ndim || r->shape[0] != nb))
            s = kdx_fail(KDX_ESTATE, "lrp: relevance came back as %s for a chunk of %s", kdx__shp(r), kdx__shp(xb));
        if (s == KDX_OK) s = kdx_narrow(attr, 0, lo, nb, &dst);
        if (s == KDX_OK) s = kdx_copy_(dst, r);
        KDX_RELEASE(xb, r, dst);
    }
    kdx__grad_restore(was);
    for (int k = 0; k < ns; k++) KDX_RELEASE(steps[k].w, steps[k].b);
    if (s == KDX_OK && rules) memcpy(rules, rr, rbytes);
    if (rr) kdx__free(rr, rbytes);
    if (steps) kdx__free(steps, sbytes);
    if (s != KDX_OK) {
        KDX_RELEASE(attr, tot);
        return s;
    }
    *out = attr;
    if (sums) *sums = tot;
    return KDX_OK;
}
