/* expr.c — small wrappers that let backward formulas be written as chains of
   public ops (so they are recorded under create_graph) with one error check
   at the end. See kdx_scope in kdx_internal.h. */
#include "kdx_internal.h"

kdx_tensor *kdx__keep(kdx_scope *S, kdx_status st, kdx_tensor *t)
{
    if (S->s != KDX_OK) {
        if (st == KDX_OK) kdx_tensor_release(t);
        return NULL;
    }
    if (st != KDX_OK) {
        S->s = st;
        return NULL;
    }
    if (S->n == KDX_SCOPE_MAX) {
        kdx_tensor_release(t);
        S->s = kdx_fail(KDX_ESTATE, "backward: formula has more than %d temporaries", KDX_SCOPE_MAX);
        return NULL;
    }
    S->t[S->n++] = t;
    return t;
}

kdx_status kdx__scope_free(kdx_scope *S)
{
    for (int i = 0; i < S->n; i++) kdx_tensor_release(S->t[i]);
    S->n = 0;
    return S->s;
}

kdx_status kdx__scope_end(kdx_scope *S, kdx_tensor *r, kdx_tensor **out)
{
    if (S->s == KDX_OK && r) *out = kdx_tensor_retain(r);
    return kdx__scope_free(S);
}

/* Each wrapper: skip when the scope failed or an operand is missing. */
#define RUN(call)                                          \
    do {                                                   \
        kdx_tensor *r_ = NULL;                             \
        if (S->s != KDX_OK) return NULL;                   \
        kdx_status st_ = (call);                           \
        return kdx__keep(S, st_, r_);                      \
    } while (0)
#define NEED(x)                                                                         \
    do {                                                                                \
        if (!(x)) {                                                                     \
            if (S->s == KDX_OK) S->s = kdx_fail(KDX_EINVAL, "backward: missing operand"); \
            return NULL;                                                                \
        }                                                                               \
    } while (0)

kdx_tensor *E_bin(kdx_scope *S, kdx_binop op, const kdx_tensor *a, const kdx_tensor *b)
{
    NEED(a && b);
    RUN(kdx_binary(op, a, b, &r_));
}

kdx_tensor *E_bins(kdx_scope *S, kdx_binop op, const kdx_tensor *a, double s)
{
    NEED(a);
    RUN(kdx_binary_scalar(op, a, s, 0, &r_));
}

kdx_tensor *E_sbin(kdx_scope *S, kdx_binop op, double s, const kdx_tensor *a)
{
    NEED(a);
    RUN(kdx_binary_scalar(op, a, s, 1, &r_));
}

kdx_tensor *E_un(kdx_scope *S, kdx_unop op, const kdx_tensor *a, double p, double q)
{
    NEED(a);
    RUN(kdx_unary(op, a, p, q, &r_));
}

kdx_tensor *E_sum(kdx_scope *S, const kdx_tensor *x, const int *dims, int nd, int keepdim)
{
    NEED(x);
    RUN(kdx_reduce(KDX_RED_SUM, x, dims, nd, keepdim, &r_));
}

kdx_tensor *E_mm(kdx_scope *S, const kdx_tensor *a, const kdx_tensor *b)
{
    NEED(a && b);
    RUN(kdx_matmul(a, b, &r_));
}

kdx_tensor *E_tr(kdx_scope *S, const kdx_tensor *x, int d0, int d1)
{
    NEED(x);
    RUN(kdx_transpose(x, d0, d1, &r_));
}

kdx_tensor *E_reshape(kdx_scope *S, const kdx_tensor *x, int nd, const int64_t *shape)
{
    NEED(x);
    RUN(kdx_reshape(x, nd, shape, &r_));
}

kdx_tensor *E_expand(kdx_scope *S, const kdx_tensor *x, int nd, const int64_t *shape)
{
    NEED(x);
    RUN(kdx_expand(x, nd, shape, &r_));
}

kdx_tensor *E_where(kdx_scope *S, const kdx_tensor *c, const kdx_tensor *a, const kdx_tensor *b)
{
    NEED(c && a && b);
    RUN(kdx_where(c, a, b, &r_));
}

kdx_tensor *E_zeros(kdx_scope *S, kdx_dtype dt, int nd, const int64_t *shape)
{
    RUN(kdx_zeros(dt, nd, shape, &r_));
}

kdx_tensor *E_mask(kdx_scope *S, kdx_binop op, const kdx_tensor *a, double s)
{
    NEED(a);
    bool was = kdx__grad_pause();
    kdx_tensor *r = NULL;
    kdx_status st = kdx_binary_scalar(op, a, s, 0, &r);
    kdx__grad_restore(was);
    return kdx__keep(S, st, r);
}
