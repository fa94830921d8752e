/* loss_relation.c — distillation losses on features and embeddings: FitNets
   hint, attention transfer, similarity preserving, relational KD, PKT,
   neural selectivity transfer, correlation congruence.

   As in loss_distill.c each loss is a formula over the public (recording)
   ops, differentiated by autograd to any order. Norms that can be zero (a
   zero feature map, the i = j difference in RKD, identical embeddings) are
   taken as where(s > floor, sqrt(where(s > floor, s, 1)), floor): the value
   PyTorch's clamp gives, and a gradient that stays finite, because the
   square root never sees 0 (its derivative there is infinite and a masked
   infinity is still NaN after the chain rule multiplies it by 0). */
#include "kdx_internal.h"

#include <math.h>

/* ---- scope helpers ---- */

static kdx_tensor *E_red(kdx_scope *S, kdx_redop op, const kdx_tensor *x, int d, int keepdim)
{
    kdx_tensor *r;
    KDX_KEEP(S, r, kdx_reduce(op, x, &d, 1, keepdim, &kdx_o_));
    return r;
}

static kdx_tensor *E_all(kdx_scope *S, kdx_redop op, const kdx_tensor *x)
{
    kdx_tensor *r;
    KDX_KEEP(S, r, kdx_reduce(op, x, NULL, 0, 0, &kdx_o_));
    return r;
}

static kdx_tensor *E_pool(kdx_scope *S, const kdx_tensor *x, int64_t oh, int64_t ow)
{
    kdx_tensor *r;
    KDX_KEEP(S, r, kdx_adaptive_avg_pool2d(x, oh, ow, &kdx_o_));
    return r;
}

static kdx_tensor *E_narrow(kdx_scope *S, const kdx_tensor *x, int d, int64_t start, int64_t len)
{
    kdx_tensor *r;
    KDX_KEEP(S, r, kdx_narrow(x, d, start, len, &kdx_o_));
    return r;
}

static kdx_tensor *E_const(kdx_scope *S, kdx_dtype dt, double v)
{
    kdx_tensor *r;
    KDX_KEEP(S, r, kdx_scalar(dt, v, &kdx_o_));
    return r;
}

/* x [B, ...] as [B, rest]. */
static kdx_tensor *E_rows(kdx_scope *S, const kdx_tensor *x)
{
    int64_t shape[2] = {x->shape[0], x->shape[0] ? kdx_tensor_numel(x) / x->shape[0] : 0};
    return E_reshape(S, x, 2, shape);
}

/* The L2 norm of x along d (kept), floored at eps: sqrt(s) where s > eps^2,
   eps elsewhere, with a finite gradient everywhere (see the top). */
static kdx_tensor *E_norm_floor(kdx_scope *S, const kdx_tensor *x, int d, double eps)
{
    kdx_tensor *s = E_red(S, KDX_RED_SUM, E_bin(S, KDX_BIN_MUL, x, x), d, 1);
    kdx_tensor *big = E_mask(S, KDX_BIN_GT, s, eps * eps);
    kdx_tensor *one = E_const(S, x->dtype, 1), *floor = E_const(S, x->dtype, eps);
    return E_where(S, big, E_un(S, KDX_UN_SQRT, E_where(S, big, s, one), 0, 0), floor);
}

/* F.normalize(x, p=2, dim=d, eps=1e-12): x / max(||x||, eps). */
static kdx_tensor *E_normalize(kdx_scope *S, const kdx_tensor *x, int d)
{
    return E_bin(S, KDX_BIN_DIV, x, E_norm_floor(S, x, d, 1e-12));
}

/* F.smooth_l1_loss(a, b) with beta 1, mean over all elements. The square
   branch uses d*d, not |d|^2, so its derivatives are smooth at d = 0. */
static kdx_tensor *E_smooth_l1(kdx_scope *S, const kdx_tensor *a, const kdx_tensor *b)
{
    kdx_tensor *d = E_bin(S, KDX_BIN_SUB, a, b), *ad = E_un(S, KDX_UN_ABS, d, 0, 0);
    kdx_tensor *sq = E_bins(S, KDX_BIN_MUL, E_bin(S, KDX_BIN_MUL, d, d), 0.5);
    return E_all(S, KDX_RED_MEAN, E_where(S, E_mask(S, KDX_BIN_LT, ad, 1.0), sq, E_bins(S, KDX_BIN_SUB, ad, 0.5)));
}

/* ---- argument checks ---- */

/* fs and ft: float, one dtype, at least min_nd dims (exactly min_nd when
   exact), one batch size, not empty. what: "features" or "embeddings". */
static kdx_status check_pair(const char *fname, const char *what, const kdx_tensor *fs, const kdx_tensor *ft,
                             int min_nd, int exact)
{
    KDX_TRY(kdx__check_float(fname, what[0] == 'f' ? "student features" : "student embeddings", fs));
    KDX_TRY(kdx__check_float(fname, what[0] == 'f' ? "teacher features" : "teacher embeddings", ft));
    const kdx_tensor *ts[2] = {fs, ft};
    const char *who[2] = {"student", "teacher"};
    for (int i = 0; i < 2; i++) {
        const kdx_tensor *x = ts[i];
        if (exact ? x->ndim != min_nd : x->ndim < min_nd) {
            if (min_nd == 4)
                return kdx_fail(KDX_ESHAPE, "%s: %s %s must be 4-D [B,C,H,W], got %s", fname, who[i], what,
                                kdx__shp(x));
            return kdx_fail(KDX_ESHAPE, "%s: %s %s must be [B,D] (or [B,...], flattened), got %s", fname, who[i],
                            what, kdx__shp(x));
        }
        if (kdx_tensor_numel(x) == 0)
            return kdx_fail(KDX_ESHAPE, "%s: %s %s %s are empty", fname, who[i], what, kdx__shp(x));
    }
    if (fs->dtype != ft->dtype)
        return kdx_fail(KDX_EDTYPE, "%s: student %s are %s but teacher %s are %s", fname, what,
                        kdx_dtype_name(fs->dtype), what, kdx_dtype_name(ft->dtype));
    if (fs->shape[0] != ft->shape[0])
        return kdx_fail(KDX_ESHAPE, "%s: student %s %s and teacher %s %s have different batch sizes", fname, what,
                        kdx__shp(fs), what, kdx__shp(ft));
    return KDX_OK;
}

static kdx_status check_same(const char *fname, const char *what, const kdx_tensor *fs, const kdx_tensor *ft,
                             const char *hint)
{
    if (!kdx__same_shape(fs, ft))
        return kdx_fail(KDX_ESHAPE, "%s: student %s %s and teacher %s %s differ%s", fname, what, kdx__shp(fs), what,
                        kdx__shp(ft), hint);
    return KDX_OK;
}

static kdx_status check_weight(const char *fname, const char *name, double w)
{
    if (!isfinite(w)) return kdx_fail(KDX_EINVAL, "%s: %s must be a finite number, got %g", fname, name, w);
    return KDX_OK;
}

/* ---- FitNets hint ---- */

kdx_status kdx_loss_hint(const kdx_tensor *fs, const kdx_tensor *ft, kdx_tensor **loss)
{
    KDX_TRY(check_pair("loss_hint", "features", fs, ft, 1, 0));
    KDX_TRY(check_same("loss_hint", "features", fs, ft, " (pass the student's through a Regressor)"));
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *d = E_bin(&S, KDX_BIN_SUB, fs, ft);
    kdx_tensor *r = E_all(&S, KDX_RED_MEAN, E_bin(&S, KDX_BIN_MUL, d, d));
    return kdx__scope_end(&S, r, loss);
}

/* ---- attention transfer ---- */

/* a(f) = normalize(mean_c(|f|^p) flattened), f first pooled to oh x ow. */
static kdx_tensor *E_at_map(kdx_scope *S, const kdx_tensor *f, double p, int64_t oh, int64_t ow)
{
    const kdx_tensor *g = f;
    if (f->shape[2] != oh || f->shape[3] != ow) g = E_pool(S, f, oh, ow);
    kdx_tensor *fp = p == 2 ? E_bin(S, KDX_BIN_MUL, g, g) : E_un(S, KDX_UN_POW, E_un(S, KDX_UN_ABS, g, 0, 0), p, 0);
    int64_t shape[2] = {f->shape[0], oh * ow};
    return E_normalize(S, E_reshape(S, E_red(S, KDX_RED_MEAN, fp, 1, 0), 2, shape), 1);
}

kdx_status kdx_loss_at(const kdx_tensor *fs, const kdx_tensor *ft, double p, kdx_tensor **loss)
{
    KDX_TRY(check_pair("loss_at", "features", fs, ft, 4, 1));
    if (!(p >= 1) || isinf(p)) return kdx_fail(KDX_EINVAL, "loss_at: p must be a number >= 1, got %g", p);
    int64_t oh = kdx__min64(fs->shape[2], ft->shape[2]), ow = kdx__min64(fs->shape[3], ft->shape[3]);
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *d = E_bin(&S, KDX_BIN_SUB, E_at_map(&S, fs, p, oh, ow), E_at_map(&S, ft, p, oh, ow));
    kdx_tensor *r = E_all(&S, KDX_RED_MEAN, E_bin(&S, KDX_BIN_MUL, d, d));
    return kdx__scope_end(&S, r, loss);
}

/* ---- similarity preserving ---- */

/* normalize(F F^T) by rows, F the batch flattened. */
static kdx_tensor *E_sp_gram(kdx_scope *S, const kdx_tensor *f)
{
    kdx_tensor *F = E_rows(S, f);
    return E_normalize(S, E_mm(S, F, E_tr(S, F, 0, 1)), 1);
}

kdx_status kdx_loss_sp(const kdx_tensor *fs, const kdx_tensor *ft, kdx_tensor **loss)
{
    KDX_TRY(check_pair("loss_sp", "features", fs, ft, 2, 0));
    double B = (double)fs->shape[0];
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *d = E_bin(&S, KDX_BIN_SUB, E_sp_gram(&S, ft), E_sp_gram(&S, fs));
    kdx_tensor *r = E_bins(&S, KDX_BIN_DIV, E_all(&S, KDX_RED_SUM, E_bin(&S, KDX_BIN_MUL, d, d)), B * B);
    return kdx__scope_end(&S, r, loss);
}

/* ---- relational KD ---- */

/* Pairwise distances of the rows of e [B,D] (sqrt of the squared distance
   clamped at 1e-12, diagonal 0), divided by their mean off the diagonal.
   The clamp keeps every off-diagonal distance >= 1e-6, so "the mean of the
   positive distances" of the reference is exactly this mean. */
static kdx_tensor *E_rkd_distances(kdx_scope *S, const kdx_tensor *e, const kdx_tensor *offdiag)
{
    int64_t B = e->shape[0];
    kdx_tensor *sq = E_red(S, KDX_RED_SUM, E_bin(S, KDX_BIN_MUL, e, e), 1, 1);
    kdx_tensor *prod = E_mm(S, e, E_tr(S, e, 0, 1));
    kdx_tensor *sum = E_bin(S, KDX_BIN_ADD, sq, E_tr(S, sq, 0, 1));
    kdx_tensor *d2 = E_bin(S, KDX_BIN_SUB, sum, E_bins(S, KDX_BIN_MUL, prod, 2));
    kdx_tensor *d = E_bin(S, KDX_BIN_MUL, E_un(S, KDX_UN_SQRT, E_un(S, KDX_UN_CLAMP, d2, 1e-12, NAN), 0, 0), offdiag);
    kdx_tensor *mean = E_bins(S, KDX_BIN_DIV, E_all(S, KDX_RED_SUM, d), (double)(B * (B - 1)));
    return E_bin(S, KDX_BIN_DIV, d, mean);
}

/* psi[i][j][k] = <normalize(e_j - e_i), normalize(e_k - e_i)>, [B,B,B]. */
static kdx_tensor *E_rkd_angles(kdx_scope *S, const kdx_tensor *e)
{
    int64_t B = e->shape[0], D = e->shape[1];
    int64_t row[3] = {1, B, D}, col[3] = {B, 1, D};
    kdx_tensor *diff = E_bin(S, KDX_BIN_SUB, E_reshape(S, e, 3, row), E_reshape(S, e, 3, col));
    kdx_tensor *n = E_normalize(S, diff, 2);
    return E_mm(S, n, E_tr(S, n, 1, 2));
}

static kdx_status rkd_distance(const kdx_tensor *es, const kdx_tensor *et, kdx_tensor **out)
{
    int64_t B = es->shape[0];
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *eye;
    KDX_KEEP(&S, eye, kdx_eye(B, B, es->dtype, &kdx_o_));
    kdx_tensor *off = E_sbin(&S, KDX_BIN_SUB, 1, eye);
    kdx_tensor *r = E_smooth_l1(&S, E_rkd_distances(&S, es, off), E_rkd_distances(&S, et, off));
    return kdx__scope_end(&S, r, out);
}

static kdx_status rkd_angle(const kdx_tensor *es, const kdx_tensor *et, kdx_tensor **out)
{
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *r = E_smooth_l1(&S, E_rkd_angles(&S, es), E_rkd_angles(&S, et));
    return kdx__scope_end(&S, r, out);
}

kdx_status kdx_loss_rkd(const kdx_tensor *es, const kdx_tensor *et, double w_distance, double w_angle,
                        kdx_tensor **loss)
{
    const char *fname = "loss_rkd";
    KDX_TRY(check_pair(fname, "embeddings", es, et, 2, 0));
    if (es->shape[0] < 2)
        return kdx_fail(KDX_ESHAPE, "%s: needs a batch of at least 2 embeddings, got %s", fname, kdx__shp(es));
    KDX_TRY(check_weight(fname, "the distance weight", w_distance));
    KDX_TRY(check_weight(fname, "the angle weight", w_angle));
    kdx_scope S = KDX_SCOPE;
    const kdx_tensor *s2 = E_rows(&S, es), *t2 = E_rows(&S, et);
    kdx_tensor *r = E_const(&S, es->dtype, 0), *term;
    /* a zero weight skips its term: the angles cost O(B^3) */
    if (w_distance != 0 && S.s == KDX_OK) {
        KDX_KEEP(&S, term, rkd_distance(s2, t2, &kdx_o_));
        r = E_bin(&S, KDX_BIN_ADD, r, E_bins(&S, KDX_BIN_MUL, term, w_distance));
    }
    if (w_angle != 0 && S.s == KDX_OK) {
        KDX_KEEP(&S, term, rkd_angle(s2, t2, &kdx_o_));
        r = E_bin(&S, KDX_BIN_ADD, r, E_bins(&S, KDX_BIN_MUL, term, w_angle));
    }
    return kdx__scope_end(&S, r, loss);
}

/* ---- probabilistic knowledge transfer ---- */

/* Conditional probabilities from the cosine kernel of the rows of e [B,D]:
   rows divided by (norm + eps), K = (X X^T + 1) / 2, each row of K / its sum. */
static kdx_tensor *E_pkt_probs(kdx_scope *S, const kdx_tensor *e, double eps)
{
    kdx_tensor *x = E_bin(S, KDX_BIN_DIV, e, E_bins(S, KDX_BIN_ADD, E_norm_floor(S, e, 1, 0), eps));
    kdx_tensor *k = E_bins(S, KDX_BIN_MUL, E_bins(S, KDX_BIN_ADD, E_mm(S, x, E_tr(S, x, 0, 1)), 1), 0.5);
    return E_bin(S, KDX_BIN_DIV, k, E_red(S, KDX_RED_SUM, k, 1, 1));
}

kdx_status kdx_loss_pkt(const kdx_tensor *es, const kdx_tensor *et, double eps, kdx_tensor **loss)
{
    KDX_TRY(check_pair("loss_pkt", "embeddings", es, et, 2, 0));
    if (!(eps > 0) || isinf(eps)) return kdx_fail(KDX_EINVAL, "loss_pkt: eps must be a positive number, got %g", eps);
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *ps = E_pkt_probs(&S, E_rows(&S, es), eps), *pt = E_pkt_probs(&S, E_rows(&S, et), eps);
    kdx_tensor *ratio = E_bin(&S, KDX_BIN_DIV, E_bins(&S, KDX_BIN_ADD, pt, eps), E_bins(&S, KDX_BIN_ADD, ps, eps));
    kdx_tensor *r = E_all(&S, KDX_RED_MEAN, E_bin(&S, KDX_BIN_MUL, pt, E_un(&S, KDX_UN_LOG, ratio, 0, 0)));
    return kdx__scope_end(&S, r, loss);
}

/* ---- neural selectivity transfer ---- */

/* f [B,C,H,W] pooled to oh x ow, as [B,C,oh*ow] with each channel's map L2-normalised. */
static kdx_tensor *E_nst_maps(kdx_scope *S, const kdx_tensor *f, int64_t oh, int64_t ow)
{
    const kdx_tensor *g = f;
    if (f->shape[2] != oh || f->shape[3] != ow) g = E_pool(S, f, oh, ow);
    int64_t shape[3] = {f->shape[0], f->shape[1], oh * ow};
    return E_normalize(S, E_reshape(S, g, 3, shape), 2);
}

/* mean over b, i, j of (b_i . a_j)^2: the polynomial kernel of degree 2. */
static kdx_tensor *E_poly_mean(kdx_scope *S, const kdx_tensor *a, const kdx_tensor *b)
{
    kdx_tensor *k = E_mm(S, b, E_tr(S, a, 1, 2));
    return E_all(S, KDX_RED_MEAN, E_bin(S, KDX_BIN_MUL, k, k));
}

kdx_status kdx_loss_nst(const kdx_tensor *fs, const kdx_tensor *ft, kdx_tensor **loss)
{
    KDX_TRY(check_pair("loss_nst", "features", fs, ft, 4, 1));
    int64_t oh = kdx__min64(fs->shape[2], ft->shape[2]), ow = kdx__min64(fs->shape[3], ft->shape[3]);
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *s = E_nst_maps(&S, fs, oh, ow), *t = E_nst_maps(&S, ft, oh, ow);
    kdx_tensor *r = E_bin(&S, KDX_BIN_ADD, E_poly_mean(&S, t, t), E_poly_mean(&S, s, s));
    r = E_bin(&S, KDX_BIN_SUB, r, E_bins(&S, KDX_BIN_MUL, E_poly_mean(&S, s, t), 2));
    return kdx__scope_end(&S, r, loss);
}

/* ---- correlation congruence ---- */

kdx_status kdx_loss_cc(const kdx_tensor *es, const kdx_tensor *et, kdx_tensor **loss)
{
    const char *fname = "loss_cc";
    KDX_TRY(check_pair(fname, "embeddings", es, et, 2, 0));
    KDX_TRY(check_same(fname, "embeddings", es, et, " (project both to one size first)"));
    int64_t B = es->shape[0];
    if (B < 2) return kdx_fail(KDX_ESHAPE, "%s: needs a batch of at least 2 embeddings, got %s", fname, kdx__shp(es));
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *delta = E_rows(&S, E_un(&S, KDX_UN_ABS, E_bin(&S, KDX_BIN_SUB, es, et), 0, 0));
    kdx_tensor *prod = E_bin(&S, KDX_BIN_MUL, E_narrow(&S, delta, 0, 0, B - 1), E_narrow(&S, delta, 0, 1, B - 1));
    kdx_tensor *r = E_bins(&S, KDX_BIN_DIV, E_all(&S, KDX_RED_SUM, prod), (double)(B - 1));
    return kdx__scope_end(&S, r, loss);
}
