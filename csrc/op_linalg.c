/* op_linalg.c — matmul with torch.matmul's rules, dot, outer, addmm. Every
   product goes through one strided GEMM driver that hands transposed views to
   BLAS as transpose flags instead of copying them. */
#include "kdx_internal.h"

#include <string.h>

/* How a [rows, cols] matrix with strides (rs, cs) reaches BLAS: directly
   (row-major, ld = rs), as the transpose of a row-major matrix (ld = cs), or
   not at all (false: the caller copies). */
static bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, bool *trans, int64_t *ld)
{
    int64_t c1 = cols > 1 ? cols : 1, r1 = rows > 1 ? rows : 1;
    if ((cols == 1 || cs == 1) && (rows == 1 || rs >= c1)) {
        *trans = false;
        *ld = rows == 1 ? c1 : rs;
        return true;
    }
    if ((rows == 1 || rs == 1) && (cols == 1 || cs >= r1)) {
        *trans = true;
        *ld = cols == 1 ? r1 : cs;
        return true;
    }
    return false;
}

static kdx_status dot_fwd(const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out);

static kdx_status check_float_pair(const char *fname, const kdx_tensor *a, const kdx_tensor *b)
{
    KDX_TRY(kdx__arg(fname, "first operand", a));
    KDX_TRY(kdx__arg(fname, "second operand", b));
    if (a->dtype == KDX_DTYPE_I64 || b->dtype == KDX_DTYPE_I64)
        return kdx_fail(KDX_EDTYPE, "%s: int64 operands are not supported (convert with :float())", fname);
    if (a->dtype != b->dtype)
        return kdx_fail(KDX_EDTYPE, "%s: dtypes %s and %s differ (convert one with :to())", fname,
                        kdx_dtype_name(a->dtype), kdx_dtype_name(b->dtype));
    return KDX_OK;
}

/* Makes *t usable by blas_layout for its last two dims, copying if needed;
   *t is replaced by a new reference either way. */
static kdx_status blas_ready(kdx_tensor **t, bool *trans, int64_t *ld)
{
    kdx_tensor *x = *t;
    int nd = x->ndim;
    if (blas_layout(x->shape[nd - 2], x->shape[nd - 1], x->stride[nd - 2], x->stride[nd - 1], trans, ld)) return KDX_OK;
    kdx_tensor *c;
    KDX_TRY(kdx_clone(x, &c));
    kdx_tensor_release(x);
    *t = c;
    blas_layout(c->shape[nd - 2], c->shape[nd - 1], c->stride[nd - 2], c->stride[nd - 1], trans, ld);
    return KDX_OK;
}

/* out[batch] = alpha * a[batch] @ b[batch] + beta * out[batch] for 3-D-or-more
   a [..., n, k], b [..., k, m] whose batch dims broadcast to out's. */
static kdx_status gemm_batched(const kdx_tensor *a0, const kdx_tensor *b0, kdx_tensor *out, double alpha, double beta)
{
    kdx_tensor *a = kdx_tensor_retain((kdx_tensor *)a0), *b = kdx_tensor_retain((kdx_tensor *)b0);
    bool ta, tb;
    int64_t lda, ldb;
    kdx_status s = blas_ready(&a, &ta, &lda);
    if (s == KDX_OK) s = blas_ready(&b, &tb, &ldb);
    if (s != KDX_OK) {
        KDX_RELEASE(a, b);
        return s;
    }
    int nd = out->ndim, nb = nd - 2;
    int64_t n = out->shape[nd - 2], m = out->shape[nd - 1], k = a->shape[a->ndim - 1];
    /* Batch strides of a and b broadcast over out's batch shape. */
    int64_t sa[KDX_MAX_DIMS] = {0}, sb[KDX_MAX_DIMS] = {0};
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - (a->ndim - 2)), ib = i - (nb - (b->ndim - 2));
        sa[i] = ia >= 0 && a->shape[ia] != 1 ? a->stride[ia] : 0;
        sb[i] = ib >= 0 && b->shape[ib] != 1 ? b->stride[ib] : 0;
    }
    int64_t batches = kdx__numel(nb, out->shape);
    int64_t idx[KDX_MAX_DIMS] = {0};
    size_t es = kdx_dtype_size(out->dtype);
    if (n > 0 && m > 0) {
        for (int64_t bi = 0; bi < batches; bi++) {
            int64_t oa = 0, ob = 0;
            for (int i = 0; i < nb; i++) oa += idx[i] * sa[i], ob += idx[i] * sb[i];
            const char *pa = kdx__base(a) + oa * (int64_t)es, *pb = kdx__base(b) + ob * (int64_t)es;
            char *pc = kdx__base(out) + bi * n * m * (int64_t)es;
            if (out->dtype == KDX_DTYPE_F32)
                kdx__sgemm(ta, tb, n, m, k, (float)alpha, (const float *)pa, lda, (const float *)pb, ldb, (float)beta,
                           (float *)pc, m);
            else
                kdx__dgemm(ta, tb, n, m, k, alpha, (const double *)pa, lda, (const double *)pb, ldb, beta,
                           (double *)pc, m);
            for (int i = nb - 1; i >= 0; i--) {
                if (++idx[i] < out->shape[i]) break;
                idx[i] = 0;
            }
        }
    }
    KDX_RELEASE(a, b);
    return KDX_OK;
}

static kdx_status matmul_fwd(const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out)
{
    KDX_TRY(check_float_pair("matmul", a, b));
    if (a->ndim == 0 || b->ndim == 0)
        return kdx_fail(KDX_ESHAPE, "matmul: both operands need at least 1 dim, got %s and %s", kdx__shp(a),
                        kdx__shp(b));
    if (a->ndim == 1 && b->ndim == 1) return dot_fwd(a, b, out);
    /* Promote 1-D operands to matrices, remembering which dim to drop. */
    kdx_tensor *a2 = NULL, *b2 = NULL, *y = NULL, *r = NULL;
    kdx_status s = KDX_OK;
    if (a->ndim == 1) s = kdx_unsqueeze(a, 0, &a2);
    else a2 = kdx_tensor_retain((kdx_tensor *)a);
    if (s == KDX_OK && b->ndim == 1) s = kdx_unsqueeze(b, 1, &b2);
    else if (s == KDX_OK) b2 = kdx_tensor_retain((kdx_tensor *)b);
    if (s != KDX_OK) goto done;
    int64_t k = a2->shape[a2->ndim - 1];
    if (b2->shape[b2->ndim - 2] != k) {
        s = kdx_fail(KDX_ESHAPE, "matmul: shapes %s and %s do not match", kdx__shp(a), kdx__shp(b));
        goto done;
    }
    int nbo;
    int64_t shape[KDX_MAX_DIMS];
    s = kdx_broadcast_shape("matmul", a2->ndim - 2, a2->shape, b2->ndim - 2, b2->shape, &nbo, shape);
    if (s != KDX_OK) {
        s = kdx_fail(KDX_ESHAPE, "matmul: batch dims of %s and %s cannot be broadcast together", kdx__shp(a),
                     kdx__shp(b));
        goto done;
    }
    if (nbo + 2 > KDX_MAX_DIMS) {
        s = kdx_fail(KDX_ESHAPE, "matmul: result would have more than %d dims", KDX_MAX_DIMS);
        goto done;
    }
    shape[nbo] = a2->shape[a2->ndim - 2];
    shape[nbo + 1] = b2->shape[b2->ndim - 1];
    /* A GEMM with k > 0 writes every element: no need to zero the output first. */
    s = k > 0 ? kdx__new_raw("matmul", a->dtype, nbo + 2, shape, &y) : kdx__new("matmul", a->dtype, nbo + 2, shape, &y);
    if (s == KDX_OK) s = gemm_batched(a2, b2, y, 1.0, 0.0);
    if (s != KDX_OK) goto done;
    /* Drop the dims that 1-D operands gained. */
    if (a->ndim == 1 || b->ndim == 1) {
        int64_t rs[KDX_MAX_DIMS];
        int n = 0;
        for (int i = 0; i < nbo; i++) rs[n++] = shape[i];
        if (a->ndim != 1) rs[n++] = shape[nbo];
        if (b->ndim != 1) rs[n++] = shape[nbo + 1];
        s = kdx_view(y, n, rs, &r);
        if (s == KDX_OK) {
            *out = r;
            r = NULL;
        }
    } else {
        *out = y;
        y = NULL;
    }
done:
    KDX_RELEASE(a2, b2, y, r);
    return s;
}

static kdx_status dot_fwd(const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out)
{
    KDX_TRY(check_float_pair("dot", a, b));
    if (a->ndim != 1 || b->ndim != 1 || a->shape[0] != b->shape[0])
        return kdx_fail(KDX_ESHAPE, "dot: expected two 1-D tensors of equal length, got %s and %s", kdx__shp(a),
                        kdx__shp(b));
    kdx_tensor *y;
    KDX_TRY(kdx__new("dot", a->dtype, 0, NULL, &y));
    double acc = 0;
    const char *pa = kdx__base(a), *pb = kdx__base(b);
    for (int64_t i = 0; i < a->shape[0]; i++) {
        if (a->dtype == KDX_DTYPE_F32)
            acc += (double)((const float *)pa)[i * a->stride[0]] * ((const float *)pb)[i * b->stride[0]];
        else
            acc += ((const double *)pa)[i * a->stride[0]] * ((const double *)pb)[i * b->stride[0]];
    }
    if (a->dtype == KDX_DTYPE_F32) *(float *)kdx__base(y) = (float)acc;
    else *(double *)kdx__base(y) = acc;
    *out = y;
    return KDX_OK;
}

kdx_status kdx_outer(const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out)
{
    KDX_TRY(check_float_pair("outer", a, b));
    if (a->ndim != 1 || b->ndim != 1)
        return kdx_fail(KDX_ESHAPE, "outer: expected two 1-D tensors, got %s and %s", kdx__shp(a), kdx__shp(b));
    kdx_tensor *col, *row = NULL;
    KDX_TRY(kdx_unsqueeze(a, 1, &col));
    kdx_status s = kdx_unsqueeze(b, 0, &row);
    if (s == KDX_OK) s = kdx_binary(KDX_BIN_MUL, col, row, out);
    KDX_RELEASE(col, row);
    return s;
}

static kdx_status addmm_fwd(const kdx_tensor *c, const kdx_tensor *a, const kdx_tensor *b, double beta, double alpha,
                     kdx_tensor **out)
{
    KDX_TRY(check_float_pair("addmm", a, b));
    KDX_TRY(kdx__arg("addmm", "input", c));
    if (a->ndim != 2 || b->ndim != 2 || a->shape[1] != b->shape[0])
        return kdx_fail(KDX_ESHAPE, "addmm: shapes %s and %s do not match", kdx__shp(a), kdx__shp(b));
    int64_t shape[2] = {a->shape[0], b->shape[1]};
    kdx_tensor *y;
    KDX_TRY(kdx__new("addmm", a->dtype, 2, shape, &y));
    kdx_status s = KDX_OK;
    if (beta != 0) {
        s = kdx_copy_(y, c);
        if (s != KDX_OK) s = kdx_fail(KDX_ESHAPE, "addmm: input of shape %s does not broadcast to %s", kdx__shp(c),
                                      kdx__shp(y));
    }
    if (s == KDX_OK) s = gemm_batched(a, b, y, alpha, beta);
    if (s != KDX_OK) {
        kdx_tensor_release(y);
        return s;
    }
    *out = y;
    return KDX_OK;
}

/* ---- gradients ----
 * d(a @ b): g @ b^T and a^T @ g, with 1-D operands given back the dim they
 * lost; broadcast batch dims are summed away by the engine. */

static kdx_status matmul_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    kdx_tensor *a, *b;
    KDX_TRY(kdx__saved(n, 0, &a));
    KDX_TRY(kdx__saved(n, 1, &b));
    bool a1 = a->ndim == 1, b1 = b->ndim == 1;
    double alpha = n->p[0];
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *a2 = a, *b2 = b, *g2 = g, *ga = NULL, *gb = NULL;
    if (a1) KDX_KEEP(&S, a2, kdx_unsqueeze(a, 0, &kdx_o_));
    if (b1) KDX_KEEP(&S, b2, kdx_unsqueeze(b, 1, &kdx_o_));
    if (b1) KDX_KEEP(&S, g2, kdx_unsqueeze(g2, g2->ndim, &kdx_o_));
    if (a1 && g2) KDX_KEEP(&S, g2, kdx_unsqueeze(g2, g2->ndim - 1, &kdx_o_));
    if (alpha != 1) g2 = E_bins(&S, KDX_BIN_MUL, g2, alpha);
    if (want[0]) ga = E_mm(&S, g2, E_tr(&S, b2, -1, -2));
    if (want[1]) {
        gb = E_mm(&S, E_tr(&S, a2, -1, -2), g2);
        if (b1 && gb) KDX_KEEP(&S, gb, kdx_squeeze(gb, -1, 0, &kdx_o_));
    }
    if (S.s == KDX_OK) {
        gin[0] = ga ? kdx_tensor_retain(ga) : NULL;
        gin[1] = gb ? kdx_tensor_retain(gb) : NULL;
    }
    return kdx__scope_free(&S);
}

static kdx_status record_product(const char *name, const kdx_tensor *a, const kdx_tensor *b, kdx_status s,
                                 kdx_tensor **out, double alpha)
{
    const kdx_tensor *ins[2] = {a, b};
    if (s != KDX_OK || !kdx__needs_node(2, ins)) return s;
    kdx_node *n;
    KDX_TRY(kdx__record(name, matmul_backward, 2, ins, out, &n));
    n->p[0] = alpha;
    kdx__save(n, 0, a);
    kdx__save(n, 1, b);
    return KDX_OK;
}

kdx_status kdx_matmul(const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out)
{
    bool was = kdx__grad_pause();
    kdx_status s = matmul_fwd(a, b, out);
    kdx__grad_restore(was);
    return record_product("matmul", a, b, s, out, 1);
}

kdx_status kdx_dot(const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out)
{
    return record_product("dot", a, b, dot_fwd(a, b, out), out, 1);
}

/* addmm: c takes beta g; a and b as matmul, scaled by alpha. */
static kdx_status addmm_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    bool w[2] = {want[1], want[2]};
    kdx_tensor *gab[2] = {NULL, NULL};
    if (w[0] || w[1]) KDX_TRY(matmul_backward(n, g, w, gab));
    gin[1] = gab[0], gin[2] = gab[1];
    if (want[0]) return kdx_binary_scalar(KDX_BIN_MUL, g, n->p[1], 0, &gin[0]);
    return KDX_OK;
}

kdx_status kdx_addmm(const kdx_tensor *c, const kdx_tensor *a, const kdx_tensor *b, double beta, double alpha,
                     kdx_tensor **out)
{
    const kdx_tensor *ins[3] = {c, a, b};
    bool rec = c && a && b && kdx__needs_node(3, ins);
    bool was = kdx__grad_pause();
    kdx_status s = addmm_fwd(c, a, b, beta, alpha, out);
    kdx__grad_restore(was);
    if (s != KDX_OK || !rec) return s;
    kdx_node *n;
    KDX_TRY(kdx__record("addmm", addmm_backward, 3, ins, out, &n));
    n->p[0] = alpha, n->p[1] = beta;
    kdx__save(n, 0, a);
    kdx__save(n, 1, b);
    return KDX_OK;
}
