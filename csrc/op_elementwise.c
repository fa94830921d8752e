/* op_elementwise.c — unary and binary elementwise ops with NumPy/PyTorch
   broadcasting, scalars on either side, in-place variants, where, masked_fill.
   Each kernel is stamped once per dtype from one expression; <tgmath.h> picks
   the float or double libm function from the operand type. */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>
#include <tgmath.h>

kdx_status kdx_broadcast_shape(const char *fname, int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                               int64_t *sout)
{
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = i - (n - na), ib = i - (n - nb);
        int64_t da = ia >= 0 ? sa[ia] : 1, db = ib >= 0 ? sb[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char b1[96], b2[96];
            return kdx_fail(KDX_ESHAPE, "%s: shapes %s and %s cannot be broadcast together (sizes %lld and %lld)",
                            fname, kdx_shape_str(na, sa, b1, sizeof b1), kdx_shape_str(nb, sb, b2, sizeof b2),
                            (long long)da, (long long)db);
        }
        sout[i] = da == 1 ? db : da;
    }
    *nout = n;
    return KDX_OK;
}

/* ---- unary ---- */

static const char *const unop_names[KDX_UN_COUNT] = {
    "neg", "abs", "sign", "exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid",
    "relu", "leaky_relu", "gelu", "elu", "softplus", "clamp", "pow", "fill_", "erf",
};

/* Ops that are closed over int64; the rest compute in float32 for int input. */
static bool unop_keeps_int(kdx_unop op)
{
    return op == KDX_UN_NEG || op == KDX_UN_ABS || op == KDX_UN_SIGN || op == KDX_UN_RELU || op == KDX_UN_CLAMP ||
           op == KDX_UN_FILL;
}

typedef struct {
    kdx_unop op;
    double a, b;
    char *po;
    const char *px;
    int64_t so, sx;
} unary_run;

#define UN_LOOP(T, EXPR)                                                          \
    do {                                                                          \
        if (r->so == (int64_t)sizeof(T) && r->sx == (int64_t)sizeof(T)) {         \
            T *o_ = (T *)r->po;                                                   \
            const T *x_ = (const T *)r->px;                                       \
            for (int64_t i = lo; i < hi; i++) { T x = x_[i]; o_[i] = (EXPR); }    \
        } else {                                                                  \
            for (int64_t i = lo; i < hi; i++) {                                   \
                T x = *(const T *)(r->px + i * r->sx);                            \
                *(T *)(r->po + i * r->so) = (EXPR);                               \
            }                                                                     \
        }                                                                         \
    } while (0)

#define UNARY_FLOAT_KERNEL(NAME, T)                                                          \
    static void NAME(void *ud, int64_t lo, int64_t hi)                                     \
    {                                                                                      \
        const unary_run *r = ud;                                                           \
        const T a = (T)r->a, b = (T)r->b;                                                  \
        (void)b;                                                                           \
        switch (r->op) {                                                                   \
        case KDX_UN_NEG: UN_LOOP(T, -x); break;                                            \
        case KDX_UN_ABS: UN_LOOP(T, fabs(x)); break;                                       \
        case KDX_UN_SIGN: UN_LOOP(T, x != x ? x : (T)((x > 0) - (x < 0))); break;          \
        case KDX_UN_EXP: UN_LOOP(T, exp(x)); break;                                        \
        case KDX_UN_LOG: UN_LOOP(T, log(x)); break;                                        \
        case KDX_UN_LOG1P: UN_LOOP(T, log1p(x)); break;                                    \
        case KDX_UN_SQRT: UN_LOOP(T, sqrt(x)); break;                                      \
        case KDX_UN_RSQRT: UN_LOOP(T, 1 / sqrt(x)); break;                                 \
        case KDX_UN_SIN: UN_LOOP(T, sin(x)); break;                                        \
        case KDX_UN_COS: UN_LOOP(T, cos(x)); break;                                        \
        case KDX_UN_TANH: UN_LOOP(T, tanh(x)); break;                                      \
        case KDX_UN_SIGMOID: UN_LOOP(T, 1 / (1 + exp(-x))); break;                         \
        case KDX_UN_RELU: UN_LOOP(T, x < 0 ? 0 : x); break;                                \
        case KDX_UN_LEAKY_RELU: UN_LOOP(T, x < 0 ? a * x : x); break;                      \
        case KDX_UN_GELU:                                                                  \
            if (r->a == 0) UN_LOOP(T, (T)0.5 * x * (1 + erf(x * (T)0.70710678118654752440))); \
            else UN_LOOP(T, (T)0.5 * x * (1 + tanh((T)0.79788456080286535588 * (x + (T)0.044715 * x * x * x)))); \
            break;                                                                         \
        case KDX_UN_ELU: UN_LOOP(T, x > 0 ? x : a * expm1(x)); break;                      \
        case KDX_UN_SOFTPLUS: UN_LOOP(T, x * a > b ? x : log1p(exp(a * x)) / a); break;    \
        case KDX_UN_CLAMP: {                                                               \
            const bool has_lo = r->a == r->a, has_hi = r->b == r->b;                       \
            UN_LOOP(T, (has_hi && ((has_lo && x < a) ? a : x) > b) ? b : (has_lo && x < a) ? a : x); \
            break;                                                                         \
        }                                                                                  \
        case KDX_UN_POW: UN_LOOP(T, pow(x, a)); break;                                     \
        case KDX_UN_FILL: UN_LOOP(T, ((void)x, a)); break;                                 \
        case KDX_UN_ERF: UN_LOOP(T, erf(x)); break;                                        \
        case KDX_UN_COUNT: break;                                                          \
        }                                                                                  \
    }

UNARY_FLOAT_KERNEL(unary_f32, float)
UNARY_FLOAT_KERNEL(unary_f64, double)

static void unary_i64(void *ud, int64_t lo, int64_t hi)
{
    const unary_run *r = ud;
    /* Bounds are doubles; keep them as such so that a NaN means "no bound". */
    const bool has_lo = r->a == r->a, has_hi = r->b == r->b;
    const int64_t a = has_lo ? kdx__f2i(ceil(r->a)) : 0, b = has_hi ? kdx__f2i(floor(r->b)) : 0;
    switch (r->op) {
    case KDX_UN_NEG: UN_LOOP(int64_t, (int64_t)(0 - (uint64_t)x)); break;
    case KDX_UN_ABS: UN_LOOP(int64_t, x < 0 ? (int64_t)(0 - (uint64_t)x) : x); break;
    case KDX_UN_SIGN: UN_LOOP(int64_t, (x > 0) - (x < 0)); break;
    case KDX_UN_RELU: UN_LOOP(int64_t, x < 0 ? 0 : x); break;
    case KDX_UN_CLAMP: UN_LOOP(int64_t, (has_hi && ((has_lo && x < a) ? a : x) > b) ? b : (has_lo && x < a) ? a : x); break;
    case KDX_UN_FILL: UN_LOOP(int64_t, ((void)x, kdx__f2i(r->a))); break;
    default: break; /* other ops never reach int64 (see unop_keeps_int) */
    }
}

/* Applies a unary op run by run: out and x have the same shape and dtype. */
static void unary_apply(kdx_unop op, double a, double b, kdx_tensor *out, const kdx_tensor *x)
{
    static const kdx__range_fn kernels[] = {unary_f32, unary_f64, unary_i64};
    const kdx_tensor *ts[2] = {out, x};
    kdx_iter it;
    char *p[2];
    int64_t n, st[2];
    kdx__iter_init(&it, 2, ts, out->ndim, out->shape);
    while (kdx__iter_next(&it, p, &n, st)) {
        unary_run r = {op, a, b, p[0], p[1], st[0], st[1]};
        kdx__parallel_for(n, 32768, kernels[out->dtype], &r);
    }
}

/* Both checks are written out at each entry point (not in a helper) so the
   compiler can see op is in range before it indexes the name tables. */
#define CHECK_UNOP(fname, op, x)                                                                    \
    do {                                                                                            \
        if ((unsigned)(op) >= KDX_UN_COUNT) return kdx_fail(KDX_EINVAL, "%s: unknown op %d", fname, (int)(op)); \
        KDX_TRY(kdx__arg(fname, "input", x));                                                       \
    } while (0)

static kdx_status unary_fwd(kdx_unop op, const kdx_tensor *x, double a, double b, kdx_tensor **out)
{
    CHECK_UNOP("unary", op, x);
    const char *name = unop_names[op];
    if (op == KDX_UN_SOFTPLUS && a == 0) return kdx_fail(KDX_EINVAL, "%s: beta must be nonzero", name);
    kdx_dtype dt = x->dtype == KDX_DTYPE_I64 && !unop_keeps_int(op) ? KDX_DTYPE_F32 : x->dtype;
    kdx_tensor *xin, *y;
    KDX_TRY(kdx_to(x, dt, &xin));
    kdx_status s = kdx__new_raw(name, dt, x->ndim, x->shape, &y);
    if (s == KDX_OK) {
        unary_apply(op, a, b, y, xin);
        *out = y;
    }
    kdx_tensor_release(xin);
    return s;
}

/* ---- gradients of unary ops ---- */

/* d op(x) / dx times g. y is op(x) (saved, or recomputed in the graph). */
static kdx_tensor *unary_grad(kdx_scope *S, kdx_unop op, const kdx_tensor *x, const kdx_tensor *y, kdx_tensor *g,
                              double a, double b)
{
    switch (op) {
    case KDX_UN_NEG: return E_un(S, KDX_UN_NEG, g, 0, 0);
    case KDX_UN_ABS: return E_bin(S, KDX_BIN_MUL, g, E_un(S, KDX_UN_SIGN, x, 0, 0));
    case KDX_UN_EXP: return E_bin(S, KDX_BIN_MUL, g, y);
    case KDX_UN_LOG: return E_bin(S, KDX_BIN_DIV, g, x);
    case KDX_UN_LOG1P: return E_bin(S, KDX_BIN_DIV, g, E_bins(S, KDX_BIN_ADD, x, 1));
    case KDX_UN_SQRT: return E_bin(S, KDX_BIN_DIV, E_bins(S, KDX_BIN_MUL, g, 0.5), y);
    case KDX_UN_RSQRT: /* -0.5 g y^3 */
        return E_bin(S, KDX_BIN_MUL, E_bins(S, KDX_BIN_MUL, g, -0.5), E_bins(S, KDX_BIN_POW, y, 3));
    case KDX_UN_SIN: return E_bin(S, KDX_BIN_MUL, g, E_un(S, KDX_UN_COS, x, 0, 0));
    case KDX_UN_COS: return E_un(S, KDX_UN_NEG, E_bin(S, KDX_BIN_MUL, g, E_un(S, KDX_UN_SIN, x, 0, 0)), 0, 0);
    case KDX_UN_TANH: /* g (1 - y^2) */
        return E_bin(S, KDX_BIN_MUL, g, E_sbin(S, KDX_BIN_SUB, 1, E_bin(S, KDX_BIN_MUL, y, y)));
    case KDX_UN_SIGMOID: /* g y (1 - y) */
        return E_bin(S, KDX_BIN_MUL, E_bin(S, KDX_BIN_MUL, g, y), E_sbin(S, KDX_BIN_SUB, 1, y));
    case KDX_UN_RELU: return E_bin(S, KDX_BIN_MUL, g, E_mask(S, KDX_BIN_GT, x, 0));
    case KDX_UN_LEAKY_RELU: { /* g where(x > 0, 1, slope) */
        kdx_tensor *m = E_mask(S, KDX_BIN_GT, x, 0);
        return E_bin(S, KDX_BIN_MUL, g, E_bins(S, KDX_BIN_ADD, E_bins(S, KDX_BIN_MUL, m, 1 - a), a));
    }
    case KDX_UN_GELU:
        if (a == 0) { /* Phi(x) + x phi(x) */
            kdx_tensor *cdf = E_bins(S, KDX_BIN_MUL,
                                     E_bins(S, KDX_BIN_ADD, E_un(S, KDX_UN_ERF, E_bins(S, KDX_BIN_MUL, x, 0.70710678118654752440), 0, 0), 1),
                                     0.5);
            kdx_tensor *pdf = E_bins(S, KDX_BIN_MUL, E_un(S, KDX_UN_EXP, E_bins(S, KDX_BIN_MUL, E_bin(S, KDX_BIN_MUL, x, x), -0.5), 0, 0),
                                     0.39894228040143267794);
            return E_bin(S, KDX_BIN_MUL, g, E_bin(S, KDX_BIN_ADD, cdf, E_bin(S, KDX_BIN_MUL, x, pdf)));
        } else { /* t = tanh(k (x + c x^3)): 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2) */
            const double k = 0.79788456080286535588, c = 0.044715;
            kdx_tensor *x2 = E_bin(S, KDX_BIN_MUL, x, x);
            kdx_tensor *t = E_un(S, KDX_UN_TANH, E_bins(S, KDX_BIN_MUL, E_bin(S, KDX_BIN_ADD, x, E_bins(S, KDX_BIN_MUL, E_bin(S, KDX_BIN_MUL, x2, x), c)), k), 0, 0);
            kdx_tensor *left = E_bins(S, KDX_BIN_MUL, E_bins(S, KDX_BIN_ADD, t, 1), 0.5);
            kdx_tensor *sech2 = E_sbin(S, KDX_BIN_SUB, 1, E_bin(S, KDX_BIN_MUL, t, t));
            kdx_tensor *inner = E_bins(S, KDX_BIN_MUL, E_bins(S, KDX_BIN_ADD, E_bins(S, KDX_BIN_MUL, x2, 3 * c), 1), 0.5 * k);
            return E_bin(S, KDX_BIN_MUL, g, E_bin(S, KDX_BIN_ADD, left, E_bin(S, KDX_BIN_MUL, E_bin(S, KDX_BIN_MUL, x, sech2), inner)));
        }
    case KDX_UN_ELU: { /* g where(x > 0, 1, alpha exp(x)) */
        kdx_tensor *m = E_mask(S, KDX_BIN_GT, x, 0);
        kdx_tensor *neg = E_bins(S, KDX_BIN_MUL, E_un(S, KDX_UN_EXP, x, 0, 0), a);
        return E_bin(S, KDX_BIN_MUL, g, E_where(S, m, E_bins(S, KDX_BIN_MUL, m, 1), neg));
    }
    case KDX_UN_SOFTPLUS: { /* g sigmoid(beta x), or g past the threshold */
        kdx_tensor *lin = E_mask(S, KDX_BIN_GT, E_bins(S, KDX_BIN_MUL, x, a), b);
        kdx_tensor *sg = E_un(S, KDX_UN_SIGMOID, E_bins(S, KDX_BIN_MUL, x, a), 0, 0);
        return E_bin(S, KDX_BIN_MUL, g, E_where(S, lin, lin, sg));
    }
    case KDX_UN_CLAMP: { /* passes where lo <= x <= hi (a missing bound always passes) */
        kdx_tensor *m = E_mask(S, KDX_BIN_GE, x, a == a ? a : -INFINITY);
        if (b == b) m = E_bin(S, KDX_BIN_MUL, m, E_mask(S, KDX_BIN_LE, x, b));
        if (a == a && b == b && a > b) m = E_bins(S, KDX_BIN_MUL, m, 0); /* min > max: constant */
        return E_bin(S, KDX_BIN_MUL, g, m);
    }
    case KDX_UN_POW: /* g a x^(a-1) */
        return E_bin(S, KDX_BIN_MUL, E_bins(S, KDX_BIN_MUL, g, a), E_bins(S, KDX_BIN_POW, x, a - 1));
    case KDX_UN_ERF: /* g 2/sqrt(pi) exp(-x^2) */
        return E_bin(S, KDX_BIN_MUL, g,
                     E_bins(S, KDX_BIN_MUL, E_un(S, KDX_UN_EXP, E_un(S, KDX_UN_NEG, E_bin(S, KDX_BIN_MUL, x, x), 0, 0), 0, 0),
                            1.12837916709551257390));
    default: return NULL; /* sign, fill: zero gradient */
    }
}

/* Ops whose gradient reads their output y. */
static bool unop_uses_output(kdx_unop op)
{
    return op == KDX_UN_EXP || op == KDX_UN_SQRT || op == KDX_UN_RSQRT || op == KDX_UN_TANH || op == KDX_UN_SIGMOID;
}

static kdx_status unary_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    (void)want;
    kdx_unop op = (kdx_unop)n->ip[0];
    kdx_tensor *x, *y = NULL;
    KDX_TRY(kdx__saved(n, 0, &x));
    kdx_scope S = KDX_SCOPE;
    if (unop_uses_output(op)) {
        /* Under create_graph y must be a function of x in the graph; otherwise
           the saved (detached) output will do. */
        if (kdx_grad_enabled()) KDX_KEEP(&S, y, kdx_unary(op, x, n->p[0], n->p[1], &kdx_o_));
        else KDX_TRY(kdx__saved(n, 1, &y));
    }
    kdx_tensor *r = unary_grad(&S, op, x, y, g, n->p[0], n->p[1]);
    kdx__rule_kind rule = kdx__backward_rule();
    if (rule == KDX__RULE_NONE || !r) return kdx__scope_end(&S, r, &gin[0]);
    if (rule == KDX__RULE_GUIDED && op == KDX_UN_RELU) { /* and only positive gradients pass */
        r = E_bin(&S, KDX_BIN_MUL, r, E_mask(&S, KDX_BIN_GT, g, 0));
    } else if (rule == KDX__RULE_DECONV && op == KDX_UN_RELU) { /* relu(g), the input's sign ignored */
        r = E_bin(&S, KDX_BIN_MUL, g, E_mask(&S, KDX_BIN_GT, g, 0));
    } else if (rule == KDX__RULE_RESCALE) {
        if (!y) KDX_KEEP(&S, y, kdx_unary(op, x, n->p[0], n->p[1], &kdx_o_));
        if (S.s == KDX_OK) KDX_KEEP(&S, r, kdx__rescale_unary(unop_names[op], x, y, g, r, &kdx_o_));
    }
    return kdx__scope_end(&S, r, &gin[0]);
}

kdx_status kdx_unary(kdx_unop op, const kdx_tensor *x, double a, double b, kdx_tensor **out)
{
    const kdx_tensor *ins[1] = {x};
    bool rec = x && (unsigned)op < KDX_UN_COUNT && op != KDX_UN_SIGN && op != KDX_UN_FILL && kdx__needs_node(1, ins);
    bool was = kdx__grad_pause();
    kdx_status s = unary_fwd(op, x, a, b, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !rec) return s;
    kdx_node *n;
    KDX_TRY(kdx__record(unop_names[op], unary_backward, 1, ins, out, &n));
    n->ip[0] = op;
    n->p[0] = a, n->p[1] = b;
    kdx__save(n, 0, x);
    if (unop_uses_output(op) && (s = kdx__save_detached(n, 1, *out)) != KDX_OK) {
        kdx_tensor_release(*out); /* and with it the node, which holds x */
        *out = NULL;
    }
    return s;
}

kdx_status kdx_unary_(kdx_unop op, kdx_tensor *x, double a, double b)
{
    CHECK_UNOP("unary_", op, x);
    KDX_TRY(kdx__check_writable(unop_names[op], x));
    KDX_TRY(kdx__check_inplace(unop_names[op], x));
    if (op == KDX_UN_FILL && x->dtype == KDX_DTYPE_I64 && (a != floor(a) || !(fabs(a) < 9.2e18)))
        return kdx_fail(KDX_EINVAL, "fill_: value %g is not an int64", a);
    if (x->dtype == KDX_DTYPE_I64 && !unop_keeps_int(op))
        return kdx_fail(KDX_EDTYPE, "%s_: the result is float but the tensor is int64; use the out-of-place form",
                        unop_names[op]);
    unary_apply(op, a, b, x, x);
    kdx__bump(x);
    return KDX_OK;
}

/* ---- binary ---- */

static const char *const binop_names[KDX_BIN_COUNT] = {
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
};

typedef struct {
    kdx_binop op;
    char *po;
    const char *pa, *pb;
    int64_t so, sa, sb;
} binary_run;

#define BIN_LOOP(T, EXPR)                                                                       \
    do {                                                                                        \
        if (r->so == (int64_t)sizeof(T) && r->sa == (int64_t)sizeof(T) && r->sb == (int64_t)sizeof(T)) { \
            T *o_ = (T *)r->po;                                                                 \
            const T *a_ = (const T *)r->pa, *b_ = (const T *)r->pb;                             \
            for (int64_t i = lo; i < hi; i++) { T x = a_[i], y = b_[i]; o_[i] = (EXPR); }       \
        } else if (r->so == (int64_t)sizeof(T) && r->sa == (int64_t)sizeof(T) && r->sb == 0) {  \
            T *o_ = (T *)r->po;                                                                 \
            const T *a_ = (const T *)r->pa, y = *(const T *)r->pb;                              \
            for (int64_t i = lo; i < hi; i++) { T x = a_[i]; o_[i] = (EXPR); }                  \
        } else {                                                                                \
            for (int64_t i = lo; i < hi; i++) {                                                 \
                T x = *(const T *)(r->pa + i * r->sa), y = *(const T *)(r->pb + i * r->sb);     \
                *(T *)(r->po + i * r->so) = (EXPR);                                             \
            }                                                                                   \
        }                                                                                       \
    } while (0)

/* Shared by all dtypes; DIV and POW only reach int64 after promotion to float. */
#define BINARY_CASES(T, POW)                                                  \
    switch (r->op) {                                                          \
    case KDX_BIN_ADD: BIN_LOOP(T, x + y); break;                              \
    case KDX_BIN_SUB: BIN_LOOP(T, x - y); break;                              \
    case KDX_BIN_MUL: BIN_LOOP(T, x * y); break;                              \
    case KDX_BIN_DIV: BIN_LOOP(T, x / y); break;                              \
    case KDX_BIN_POW: BIN_LOOP(T, POW(x, y)); break;                          \
    case KDX_BIN_MAXIMUM: BIN_LOOP(T, (x != x || x > y) ? x : y); break;      \
    case KDX_BIN_MINIMUM: BIN_LOOP(T, (x != x || x < y) ? x : y); break;      \
    case KDX_BIN_EQ: BIN_LOOP(T, (T)(x == y)); break;                         \
    case KDX_BIN_NE: BIN_LOOP(T, (T)(x != y)); break;                         \
    case KDX_BIN_LT: BIN_LOOP(T, (T)(x < y)); break;                          \
    case KDX_BIN_LE: BIN_LOOP(T, (T)(x <= y)); break;                         \
    case KDX_BIN_GT: BIN_LOOP(T, (T)(x > y)); break;                          \
    case KDX_BIN_GE: BIN_LOOP(T, (T)(x >= y)); break;                         \
    case KDX_BIN_COUNT: break;                                                \
    }

static void binary_f32(void *ud, int64_t lo, int64_t hi)
{
    const binary_run *r = ud;
    BINARY_CASES(float, pow)
}

static void binary_f64(void *ud, int64_t lo, int64_t hi)
{
    const binary_run *r = ud;
    BINARY_CASES(double, pow)
}

/* Integer arithmetic wraps as two's complement (as PyTorch's does) instead of
   overflowing into undefined behaviour. */
static inline int64_t wrap_add(int64_t x, int64_t y) { return (int64_t)((uint64_t)x + (uint64_t)y); }
static inline int64_t wrap_sub(int64_t x, int64_t y) { return (int64_t)((uint64_t)x - (uint64_t)y); }
static inline int64_t wrap_mul(int64_t x, int64_t y) { return (int64_t)((uint64_t)x * (uint64_t)y); }

static void binary_i64(void *ud, int64_t lo, int64_t hi)
{
    const binary_run *r = ud;
    switch (r->op) {
    case KDX_BIN_ADD: BIN_LOOP(int64_t, wrap_add(x, y)); break;
    case KDX_BIN_SUB: BIN_LOOP(int64_t, wrap_sub(x, y)); break;
    case KDX_BIN_MUL: BIN_LOOP(int64_t, wrap_mul(x, y)); break;
    case KDX_BIN_MAXIMUM: BIN_LOOP(int64_t, x > y ? x : y); break;
    case KDX_BIN_MINIMUM: BIN_LOOP(int64_t, x < y ? x : y); break;
    case KDX_BIN_EQ: BIN_LOOP(int64_t, x == y); break;
    case KDX_BIN_NE: BIN_LOOP(int64_t, x != y); break;
    case KDX_BIN_LT: BIN_LOOP(int64_t, x < y); break;
    case KDX_BIN_LE: BIN_LOOP(int64_t, x <= y); break;
    case KDX_BIN_GT: BIN_LOOP(int64_t, x > y); break;
    case KDX_BIN_GE: BIN_LOOP(int64_t, x >= y); break;
    default: break; /* div and pow are promoted to float before reaching here */
    }
}

/* out = a op b; all three share out's dtype, a and b broadcast to out's shape. */
static void binary_apply(kdx_binop op, kdx_tensor *out, const kdx_tensor *a, const kdx_tensor *b)
{
    static const kdx__range_fn kernels[] = {binary_f32, binary_f64, binary_i64};
    if (kdx__same_shape(a, out) && kdx__same_shape(b, out) && kdx_tensor_is_contiguous(a) &&
        kdx_tensor_is_contiguous(b) && kdx_tensor_is_contiguous(out)) {
        /* The common case, without the iterator's setup. */
        int64_t es = (int64_t)kdx_dtype_size(out->dtype);
        binary_run r = {op, kdx__base(out), kdx__base(a), kdx__base(b), es, es, es};
        kdx__parallel_for(kdx_tensor_numel(out), 32768, kernels[out->dtype], &r);
        return;
    }
    const kdx_tensor *ts[3] = {out, a, b};
    kdx_iter it;
    char *p[3];
    int64_t n, st[3];
    kdx__iter_init(&it, 3, ts, out->ndim, out->shape);
    while (kdx__iter_next(&it, p, &n, st)) {
        binary_run r = {op, p[0], p[1], p[2], st[0], st[1], st[2]};
        kdx__parallel_for(n, 32768, kernels[out->dtype], &r);
    }
}

/* The dtype op computes in for inputs of dtypes da and db. */
static kdx_dtype binop_dtype(kdx_binop op, kdx_dtype da, kdx_dtype db)
{
    kdx_dtype dt = kdx_dtype_promote(da, db);
    if (dt == KDX_DTYPE_I64 && (op == KDX_BIN_DIV || op == KDX_BIN_POW)) dt = KDX_DTYPE_F32;
    return dt;
}

static kdx_status binary_in(kdx_binop op, const kdx_tensor *a, const kdx_tensor *b, kdx_dtype dt, kdx_tensor **out)
{
    const char *name = binop_names[op];
    int nd;
    int64_t sh[KDX_MAX_DIMS];
    KDX_TRY(kdx_broadcast_shape(name, a->ndim, a->shape, b->ndim, b->shape, &nd, sh));
    kdx_tensor *ac = NULL, *bc = NULL, *y = NULL;
    kdx_status s = kdx_to(a, dt, &ac);
    if (s == KDX_OK) s = kdx_to(b, dt, &bc);
    if (s == KDX_OK) s = kdx__new_raw(name, dt, nd, sh, &y);
    if (s == KDX_OK) {
        binary_apply(op, y, ac, bc);
        *out = y;
    }
    KDX_RELEASE(ac, bc);
    return s;
}

#define CHECK_BINOP(fname, op) \
    if ((unsigned)(op) >= KDX_BIN_COUNT) return kdx_fail(KDX_EINVAL, "%s: unknown op %d", fname, (int)(op))

/* ---- gradients of binary ops (broadcast gradients are reduced by the engine) ---- */

static kdx_status binary_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    kdx_tensor *a, *b;
    KDX_TRY(kdx__saved(n, 0, &a));
    KDX_TRY(kdx__saved(n, 1, &b));
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *ga = NULL, *gb = NULL;
    switch ((kdx_binop)n->ip[0]) {
    case KDX_BIN_ADD: ga = g, gb = g; break;
    case KDX_BIN_SUB: ga = g, gb = want[1] ? E_un(&S, KDX_UN_NEG, g, 0, 0) : NULL; break;
    case KDX_BIN_MUL:
        if (want[0]) ga = E_bin(&S, KDX_BIN_MUL, g, b);
        if (want[1]) gb = E_bin(&S, KDX_BIN_MUL, g, a);
        break;
    case KDX_BIN_DIV:
        if (want[0]) ga = E_bin(&S, KDX_BIN_DIV, g, b);
        if (want[1]) /* -g a / b^2 */
            gb = E_un(&S, KDX_UN_NEG, E_bin(&S, KDX_BIN_DIV, E_bin(&S, KDX_BIN_MUL, g, a), E_bin(&S, KDX_BIN_MUL, b, b)),
                      0, 0);
        break;
    case KDX_BIN_POW:
        if (want[0]) /* g b a^(b-1) */
            ga = E_bin(&S, KDX_BIN_MUL, E_bin(&S, KDX_BIN_MUL, g, b),
                       E_bin(&S, KDX_BIN_POW, a, E_bins(&S, KDX_BIN_SUB, b, 1)));
        if (want[1]) { /* g a^b log a, taken as 0 where a == 0 (as PyTorch) */
            kdx_tensor *t = E_bin(&S, KDX_BIN_MUL, E_bin(&S, KDX_BIN_MUL, g, E_bin(&S, KDX_BIN_POW, a, b)),
                                  E_un(&S, KDX_UN_LOG, a, 0, 0));
            gb = E_where(&S, E_mask(&S, KDX_BIN_EQ, a, 0), E_zeros(&S, g->dtype, 0, NULL), t);
        }
        break;
    case KDX_BIN_MAXIMUM:
    case KDX_BIN_MINIMUM: {
        /* the larger (smaller) side takes the gradient; ties split it evenly */
        bool mx = n->ip[0] == KDX_BIN_MAXIMUM;
        kdx_tensor *half = E_bins(&S, KDX_BIN_MUL, g, 0.5);
        kdx_tensor *eq = E_bin(&S, KDX_BIN_EQ, a, b), *zero = E_zeros(&S, g->dtype, 0, NULL);
        kdx_tensor *tie = E_where(&S, eq, half, zero);
        if (want[0]) ga = E_bin(&S, KDX_BIN_ADD, E_where(&S, E_bin(&S, mx ? KDX_BIN_GT : KDX_BIN_LT, a, b), g, zero), tie);
        if (want[1]) gb = E_bin(&S, KDX_BIN_ADD, E_where(&S, E_bin(&S, mx ? KDX_BIN_GT : KDX_BIN_LT, b, a), g, zero), tie);
        break;
    }
    default: break;
    }
    kdx_binop op = (kdx_binop)n->ip[0];
    /* DeepLift: the ops that are not linear in what depends on the input */
    if (S.s == KDX_OK && kdx__backward_rule() == KDX__RULE_RESCALE &&
        ((op == KDX_BIN_MUL && want[0] && want[1]) || (op == KDX_BIN_DIV && want[1]) || op == KDX_BIN_POW ||
         op == KDX_BIN_MAXIMUM || op == KDX_BIN_MINIMUM)) {
        kdx_tensor *ord[2] = {ga, gb};
        S.s = kdx__rescale_binary(binop_names[op], op, a, b, g, want, ord, gin);
        return kdx__scope_free(&S);
    }
    if (S.s == KDX_OK && want[0] && ga) gin[0] = kdx_tensor_retain(ga);
    if (S.s == KDX_OK && want[1] && gb) gin[1] = kdx_tensor_retain(gb);
    return kdx__scope_free(&S);
}

static bool binop_differentiable(kdx_binop op) { return op <= KDX_BIN_MINIMUM; }

/* binary_in, recorded for autograd. */
static kdx_status binary_rec(kdx_binop op, const kdx_tensor *a, const kdx_tensor *b, kdx_dtype dt, kdx_tensor **out)
{
    const kdx_tensor *ins[2] = {a, b};
    bool rec = binop_differentiable(op) && kdx__needs_node(2, ins);
    bool was = kdx__grad_pause();
    kdx_status s = binary_in(op, a, b, dt, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !rec) return s;
    kdx_node *n;
    KDX_TRY(kdx__record(binop_names[op], binary_backward, 2, ins, out, &n));
    n->ip[0] = op;
    kdx__save(n, 0, a);
    kdx__save(n, 1, b);
    return KDX_OK;
}

kdx_status kdx_binary(kdx_binop op, const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out)
{
    CHECK_BINOP("binary", op);
    KDX_TRY(kdx__arg(binop_names[op], "first operand", a));
    KDX_TRY(kdx__arg(binop_names[op], "second operand", b));
    return binary_rec(op, a, b, binop_dtype(op, a->dtype, b->dtype), out);
}

/* A 0-d tensor for s in the dtype an op with a tensor of dtype dt computes in. */
static kdx_status scalar_operand(kdx_binop op, kdx_dtype dt, double s, kdx_dtype *cdt, kdx_tensor **out)
{
    kdx_dtype sdt = (dt == KDX_DTYPE_I64 && s != floor(s)) ? KDX_DTYPE_F32 : dt;
    if (dt == KDX_DTYPE_I64 && sdt == KDX_DTYPE_I64 && !(fabs(s) < 9.2e18)) sdt = KDX_DTYPE_F32;
    *cdt = binop_dtype(op, dt, sdt);
    return kdx_scalar(*cdt, s, out);
}

kdx_status kdx_binary_scalar(kdx_binop op, const kdx_tensor *a, double s, int scalar_first, kdx_tensor **out)
{
    CHECK_BINOP("binary_scalar", op);
    KDX_TRY(kdx__arg(binop_names[op], "tensor operand", a));
    kdx_dtype dt;
    kdx_tensor *st;
    KDX_TRY(scalar_operand(op, a->dtype, s, &dt, &st));
    kdx_status r = scalar_first ? binary_rec(op, st, a, dt, out) : binary_rec(op, a, st, dt, out);
    kdx_tensor_release(st);
    return r;
}

kdx_status kdx_binary_(kdx_binop op, kdx_tensor *a, const kdx_tensor *b)
{
    CHECK_BINOP("binary_", op);
    const char *name = binop_names[op];
    KDX_TRY(kdx__arg(name, "tensor", a));
    KDX_TRY(kdx__arg(name, "operand", b));
    KDX_TRY(kdx__check_writable(name, a));
    KDX_TRY(kdx__check_inplace(name, a));
    if (binop_dtype(op, a->dtype, b->dtype) != a->dtype)
        return kdx_fail(KDX_EDTYPE, "%s_: the result would be %s but the tensor is %s", name,
                        kdx_dtype_name(binop_dtype(op, a->dtype, b->dtype)), kdx_dtype_name(a->dtype));
    int nd;
    int64_t sh[KDX_MAX_DIMS];
    KDX_TRY(kdx_broadcast_shape(name, a->ndim, a->shape, b->ndim, b->shape, &nd, sh));
    if (nd != a->ndim || kdx__numel(nd, sh) != kdx_tensor_numel(a) || memcmp(sh, a->shape, (size_t)nd * sizeof *sh))
        return kdx_fail(KDX_ESHAPE, "%s_: operand of shape %s does not broadcast to the tensor's shape %s", name,
                        kdx__shp(b), kdx__shp(a));
    kdx_tensor *bc;
    /* A converted or, when it shares a's memory, a private copy of b, so the
       result does not depend on the order elements are written in. */
    kdx_status s = b->storage == a->storage && b != a ? kdx_clone(b, &bc) : kdx_to(b, a->dtype, &bc);
    if (s != KDX_OK) return s;
    if (bc->dtype != a->dtype) {
        kdx_tensor *t;
        s = kdx_to(bc, a->dtype, &t);
        kdx_tensor_release(bc);
        if (s != KDX_OK) return s;
        bc = t;
    }
    binary_apply(op, a, a, bc);
    kdx_tensor_release(bc);
    kdx__bump(a);
    return KDX_OK;
}

kdx_status kdx_binary_scalar_(kdx_binop op, kdx_tensor *a, double s)
{
    CHECK_BINOP("binary_scalar_", op);
    KDX_TRY(kdx__arg(binop_names[op], "tensor", a));
    kdx_dtype dt;
    kdx_tensor *st;
    KDX_TRY(scalar_operand(op, a->dtype, s, &dt, &st));
    kdx_status r = kdx_binary_(op, a, st);
    kdx_tensor_release(st);
    return r;
}

/* ---- where, masked_fill ---- */

#define WHERE_RUN(T)                                                                                        \
    for (int64_t i = 0; i < n; i++)                                                                         \
        *(T *)(p[0] + i * st[0]) = truth(c->dtype, p[1] + i * st[1]) ? *(const T *)(p[2] + i * st[2])      \
                                                                     : *(const T *)(p[3] + i * st[3])

static inline bool truth(kdx_dtype dt, const char *p)
{
    switch (dt) {
    case KDX_DTYPE_F32: return *(const float *)p != 0;
    case KDX_DTYPE_F64: return *(const double *)p != 0;
    case KDX_DTYPE_I64: return *(const int64_t *)p != 0;
    }
    return false;
}

static kdx_status where_fwd(const kdx_tensor *c, const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("where", "condition", c));
    KDX_TRY(kdx__arg("where", "first value", a));
    KDX_TRY(kdx__arg("where", "second value", b));
    int n1, nd;
    int64_t s1[KDX_MAX_DIMS], sh[KDX_MAX_DIMS];
    KDX_TRY(kdx_broadcast_shape("where", a->ndim, a->shape, b->ndim, b->shape, &n1, s1));
    KDX_TRY(kdx_broadcast_shape("where", c->ndim, c->shape, n1, s1, &nd, sh));
    kdx_dtype dt = kdx_dtype_promote(a->dtype, b->dtype);
    kdx_tensor *ac = NULL, *bc = NULL, *y = NULL;
    kdx_status s = kdx_to(a, dt, &ac);
    if (s == KDX_OK) s = kdx_to(b, dt, &bc);
    if (s == KDX_OK) s = kdx__new("where", dt, nd, sh, &y);
    if (s == KDX_OK) {
        const kdx_tensor *ts[4] = {y, c, ac, bc};
        kdx_iter it;
        char *p[4];
        int64_t n, st[4];
        kdx__iter_init(&it, 4, ts, nd, sh);
        while (kdx__iter_next(&it, p, &n, st)) {
            switch (dt) {
            case KDX_DTYPE_F32: WHERE_RUN(float); break;
            case KDX_DTYPE_F64: WHERE_RUN(double); break;
            case KDX_DTYPE_I64: WHERE_RUN(int64_t); break;
            }
        }
        *out = y;
    }
    KDX_RELEASE(ac, bc);
    return s;
}

kdx_status kdx_masked_fill(const kdx_tensor *x, const kdx_tensor *mask, double value, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("masked_fill", "input", x));
    KDX_TRY(kdx__arg("masked_fill", "mask", mask));
    int nd;
    int64_t sh[KDX_MAX_DIMS];
    KDX_TRY(kdx_broadcast_shape("masked_fill", x->ndim, x->shape, mask->ndim, mask->shape, &nd, sh));
    if (nd != x->ndim || memcmp(sh, x->shape, (size_t)nd * sizeof *sh))
        return kdx_fail(KDX_ESHAPE, "masked_fill: mask of shape %s does not broadcast to the input's shape %s",
                        kdx__shp(mask), kdx__shp(x));
    if (x->dtype == KDX_DTYPE_I64 && value != floor(value))
        return kdx_fail(KDX_EDTYPE, "masked_fill: value %g does not fit an int64 tensor", value);
    kdx_tensor *fillv, *y;
    KDX_TRY(kdx_scalar(x->dtype, value, &fillv));
    kdx_status s = kdx_where(mask, fillv, x, &y);
    kdx_tensor_release(fillv);
    if (s == KDX_OK) *out = y;
    return s;
}

/* where: the gradient goes to the branch each element came from. */
static kdx_status where_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    kdx_tensor *c;
    KDX_TRY(kdx__saved(n, 0, &c));
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *zero = E_zeros(&S, g->dtype, 0, NULL);
    if (want[1]) gin[1] = E_where(&S, c, g, zero);
    if (want[2]) gin[2] = E_where(&S, c, zero, g);
    if (S.s == KDX_OK) {
        if (gin[1]) kdx_tensor_retain(gin[1]);
        if (gin[2]) kdx_tensor_retain(gin[2]);
    } else {
        gin[1] = gin[2] = NULL;
    }
    return kdx__scope_free(&S);
}

kdx_status kdx_where(const kdx_tensor *c, const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out)
{
    const kdx_tensor *ins[3] = {c, a, b};
    bool rec = a && b && c && kdx__needs_node(3, ins);
    bool was = kdx__grad_pause();
    kdx_status s = where_fwd(c, a, b, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !rec) return s;
    kdx_node *n;
    KDX_TRY(kdx__record("where", where_backward, 3, ins, out, &n));
    kdx__save(n, 0, c);
    return KDX_OK;
}
