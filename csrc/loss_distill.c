/* loss_distill.c — distillation losses on logits (KD, soft cross-entropy,
   DKD, consistency, teacher-free KD) and the target makers that go with them
   (label smoothing, the virtual teacher, pseudo labels).

   Each loss is a formula written with the public (recording) ops through a
   kdx_scope, so autograd differentiates it to any order and there is no
   backward here. Where a formula would meet log(0) or exp(large) the
   rewrite keeps every intermediate finite for finite logits (the DKD masses
   in log space, the non-target classes gathered rather than masked), because
   a masked infinity still turns into NaN in the gradient (0 * inf).
   The feature and relation losses (hint, AT, SP, RKD, PKT, NST, CC) are in
   loss_relation.c. */
#include "kdx_internal.h"

#include <math.h>

/* ---- scope helpers for the ops expr.c has no wrapper for ---- */

static kdx_tensor *E_lsm(kdx_scope *S, const kdx_tensor *x, int d)
{
    kdx_tensor *r;
    KDX_KEEP(S, r, kdx_log_softmax(x, d, &kdx_o_));
    return r;
}

static kdx_tensor *E_sm(kdx_scope *S, const kdx_tensor *x, int d)
{
    kdx_tensor *r;
    KDX_KEEP(S, r, kdx_softmax(x, d, &kdx_o_));
    return r;
}

/* op over dim d, kept as size 1. */
static kdx_tensor *E_red1(kdx_scope *S, kdx_redop op, const kdx_tensor *x, int d)
{
    kdx_tensor *r;
    KDX_KEEP(S, r, kdx_reduce(op, x, &d, 1, 1, &kdx_o_));
    return r;
}

static kdx_tensor *E_all(kdx_scope *S, kdx_redop op, const kdx_tensor *x)
{
    kdx_tensor *r;
    KDX_KEEP(S, r, kdx_reduce(op, x, NULL, 0, 0, &kdx_o_));
    return r;
}

static kdx_tensor *E_gather(kdx_scope *S, const kdx_tensor *x, int d, const kdx_tensor *idx)
{
    kdx_tensor *r;
    KDX_KEEP(S, r, kdx_gather(x, d, idx, &kdx_o_));
    return r;
}

/* sum(exp(lp) * (lp - lq)): the KL divergence of the distributions whose
   logs are lp and lq, summed over every element. Both logs are finite for
   finite logits, so no 0 * log 0 case arises. */
static kdx_tensor *E_kl_sum(kdx_scope *S, const kdx_tensor *lp, const kdx_tensor *lq)
{
    return E_all(S, KDX_RED_SUM,
                 E_bin(S, KDX_BIN_MUL, E_un(S, KDX_UN_EXP, lp, 0, 0), E_bin(S, KDX_BIN_SUB, lp, lq)));
}

/* ---- argument checks ---- */

/* s and t are float logits [B,C] of one shape and dtype, B and C >= 1. */
static kdx_status check_logits(const char *fname, const kdx_tensor *s, const kdx_tensor *t)
{
    KDX_TRY(kdx__check_float(fname, "student logits", s));
    KDX_TRY(kdx__check_float(fname, "teacher logits", t));
    if (s->ndim != 2) return kdx_fail(KDX_ESHAPE, "%s: student logits must be 2-D [B,C], got %s", fname, kdx__shp(s));
    if (!kdx__same_shape(s, t))
        return kdx_fail(KDX_ESHAPE, "%s: student logits %s and teacher logits %s differ", fname, kdx__shp(s),
                        kdx__shp(t));
    if (s->dtype != t->dtype)
        return kdx_fail(KDX_EDTYPE, "%s: student logits are %s but teacher logits are %s", fname,
                        kdx_dtype_name(s->dtype), kdx_dtype_name(t->dtype));
    if (s->shape[0] < 1 || s->shape[1] < 1)
        return kdx_fail(KDX_ESHAPE, "%s: logits %s are empty", fname, kdx__shp(s));
    return KDX_OK;
}

static kdx_status check_temperature(const char *fname, double T)
{
    if (!(T > 0) || isinf(T)) return kdx_fail(KDX_EINVAL, "%s: T must be a positive number, got %g", fname, T);
    return KDX_OK;
}

static kdx_status check_unit(const char *fname, const char *name, double v)
{
    if (!(v >= 0 && v <= 1)) return kdx_fail(KDX_EINVAL, "%s: %s must be in [0, 1], got %g", fname, name, v);
    return KDX_OK;
}

/* y: int64 [B] (B = n, or any B when n < 0) of class indices in [0, C).
   [out] *yc: a contiguous copy to read. */
static kdx_status check_labels(const char *fname, const kdx_tensor *y, int64_t n, int64_t C, kdx_tensor **yc)
{
    KDX_TRY(kdx__arg(fname, "labels", y));
    if (y->dtype != KDX_DTYPE_I64)
        return kdx_fail(KDX_EDTYPE, "%s: labels must be int64 class indices, got %s", fname,
                        kdx_dtype_name(y->dtype));
    if (y->ndim != 1) return kdx_fail(KDX_ESHAPE, "%s: labels must be 1-D [B], got %s", fname, kdx__shp(y));
    if (n >= 0 && y->shape[0] != n)
        return kdx_fail(KDX_ESHAPE, "%s: labels %s do not match the batch size %lld", fname, kdx__shp(y),
                        (long long)n);
    KDX_TRY(kdx_contiguous(y, yc));
    const int64_t *p = kdx_tensor_data(*yc);
    for (int64_t i = 0; i < y->shape[0]; i++) {
        if (p[i] < 0 || p[i] >= C) {
            kdx_tensor_release(*yc);
            *yc = NULL;
            return kdx_fail(KDX_EINDEX, "%s: label %lld is out of range [0, %lld]", fname, (long long)p[i],
                            (long long)(C - 1));
        }
    }
    return KDX_OK;
}

/* ---- Hinton KD and the soft cross-entropy ---- */

kdx_status kdx_loss_kd(const kdx_tensor *s, const kdx_tensor *t, double T, kdx_tensor **loss)
{
    KDX_TRY(check_logits("loss_kd", s, t));
    KDX_TRY(check_temperature("loss_kd", T));
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *lps = E_lsm(&S, E_bins(&S, KDX_BIN_DIV, s, T), 1);
    kdx_tensor *lpt = E_lsm(&S, E_bins(&S, KDX_BIN_DIV, t, T), 1);
    kdx_tensor *r = E_bins(&S, KDX_BIN_MUL, E_kl_sum(&S, lpt, lps), T * T / (double)s->shape[0]);
    return kdx__scope_end(&S, r, loss);
}

kdx_status kdx_loss_soft_ce(const kdx_tensor *s, const kdx_tensor *t, double T, kdx_tensor **loss)
{
    KDX_TRY(check_logits("loss_soft_ce", s, t));
    KDX_TRY(check_temperature("loss_soft_ce", T));
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *lps = E_lsm(&S, E_bins(&S, KDX_BIN_DIV, s, T), 1);
    kdx_tensor *pt = E_sm(&S, E_bins(&S, KDX_BIN_DIV, t, T), 1);
    kdx_tensor *ce = E_all(&S, KDX_RED_SUM, E_bin(&S, KDX_BIN_MUL, pt, lps));
    kdx_tensor *r = E_bins(&S, KDX_BIN_MUL, ce, -1.0 / (double)s->shape[0]);
    return kdx__scope_end(&S, r, loss);
}

kdx_status kdx_loss_consistency(const kdx_tensor *s, const kdx_tensor *t, double T, kdx_tensor **loss)
{
    KDX_TRY(check_logits("loss_consistency", s, t));
    KDX_TRY(check_temperature("loss_consistency", T));
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *d = E_bin(&S, KDX_BIN_SUB, E_sm(&S, E_bins(&S, KDX_BIN_DIV, s, T), 1),
                          E_sm(&S, E_bins(&S, KDX_BIN_DIV, t, T), 1));
    kdx_tensor *r = E_all(&S, KDX_RED_MEAN, E_bin(&S, KDX_BIN_MUL, d, d));
    return kdx__scope_end(&S, r, loss);
}

/* ---- DKD ---- */

/* [B, C-1] int64: row i lists the classes other than y[i], in order. */
static kdx_status non_target_index(const int64_t *y, int64_t B, int64_t C, kdx_tensor **out)
{
    int64_t shape[2] = {B, C - 1};
    KDX_TRY(kdx_empty(KDX_DTYPE_I64, 2, shape, out));
    int64_t *p = kdx_tensor_data(*out);
    for (int64_t i = 0; i < B; i++)
        for (int64_t c = 0, k = 0; c < C; c++)
            if (c != y[i]) p[i * (C - 1) + k++] = c;
    return KDX_OK;
}

/* The log of the binary masses {p_gt, 1 - p_gt} of softmax(z) in log space:
   z_gt - lse(z) and lse(z without gt) - lse(z). Finite for finite z, where
   log(1 - p_gt) computed from p would be -inf once p_gt rounds to 1. */
static void dkd_log_masses(kdx_scope *S, const kdx_tensor *z, const kdx_tensor *ycol, const kdx_tensor *znt,
                           kdx_tensor **lgt, kdx_tensor **lnt)
{
    kdx_tensor *lse = E_red1(S, KDX_RED_LOGSUMEXP, z, 1);
    *lgt = E_bin(S, KDX_BIN_SUB, E_gather(S, z, 1, ycol), lse);
    *lnt = E_bin(S, KDX_BIN_SUB, E_red1(S, KDX_RED_LOGSUMEXP, znt, 1), lse);
}

kdx_status kdx_loss_dkd(const kdx_tensor *s, const kdx_tensor *t, const kdx_tensor *y, double alpha, double beta,
                        double T, kdx_tensor **loss)
{
    const char *fname = "loss_dkd";
    KDX_TRY(check_logits(fname, s, t));
    KDX_TRY(check_temperature(fname, T));
    if (!isfinite(alpha) || !isfinite(beta))
        return kdx_fail(KDX_EINVAL, "%s: alpha and beta must be finite, got %g and %g", fname, alpha, beta);
    int64_t B = s->shape[0], C = s->shape[1];
    if (C < 2) return kdx_fail(KDX_ESHAPE, "%s: needs at least 2 classes, got logits %s", fname, kdx__shp(s));
    kdx_tensor *yc, *nt;
    KDX_TRY(check_labels(fname, y, B, C, &yc));
    kdx_status st = non_target_index(kdx_tensor_data(yc), B, C, &nt);
    if (st != KDX_OK) {
        kdx_tensor_release(yc);
        return st;
    }
    kdx_scope S = KDX_SCOPE;
    kdx__keep(&S, KDX_OK, yc);
    kdx__keep(&S, KDX_OK, nt);
    int64_t col[2] = {B, 1};
    kdx_tensor *ycol = E_reshape(&S, yc, 2, col);
    kdx_tensor *zs = E_bins(&S, KDX_BIN_DIV, s, T), *zt = E_bins(&S, KDX_BIN_DIV, t, T);
    kdx_tensor *nts = E_gather(&S, zs, 1, nt), *ntt = E_gather(&S, zt, 1, nt);
    kdx_tensor *gs, *ns, *gt, *ntg;
    dkd_log_masses(&S, zs, ycol, nts, &gs, &ns);
    dkd_log_masses(&S, zt, ycol, ntt, &gt, &ntg);
    /* TCKD: KL of the binary masses; NCKD: KL over the non-target classes */
    kdx_tensor *tckd = E_bin(&S, KDX_BIN_ADD, E_kl_sum(&S, gt, gs), E_kl_sum(&S, ntg, ns));
    kdx_tensor *nckd = E_kl_sum(&S, E_lsm(&S, ntt, 1), E_lsm(&S, nts, 1));
    kdx_tensor *both =
        E_bin(&S, KDX_BIN_ADD, E_bins(&S, KDX_BIN_MUL, tckd, alpha), E_bins(&S, KDX_BIN_MUL, nckd, beta));
    kdx_tensor *r = E_bins(&S, KDX_BIN_MUL, both, T * T / (double)B);
    return kdx__scope_end(&S, r, loss);
}

/* ---- smoothed one-hot targets ---- */

/* [B, C] of dtype dt: `on` at each label, `off` elsewhere. */
static kdx_status smoothed_one_hot(const int64_t *y, int64_t B, int64_t C, double on, double off, kdx_dtype dt,
                                   kdx_tensor **out)
{
    int64_t shape[2] = {B, C};
    KDX_TRY(kdx_full(dt, 2, shape, off, out));
    char *p = kdx_tensor_data(*out);
    for (int64_t i = 0; i < B; i++) {
        if (dt == KDX_DTYPE_F32) ((float *)p)[i * C + y[i]] = (float)on;
        else ((double *)p)[i * C + y[i]] = on;
    }
    return KDX_OK;
}

static kdx_status check_target_args(const char *fname, int64_t C, kdx_dtype dt)
{
    if (C < 1) return kdx_fail(KDX_EINVAL, "%s: the number of classes must be positive, got %lld", fname, (long long)C);
    if (dt != KDX_DTYPE_F32 && dt != KDX_DTYPE_F64)
        return kdx_fail(KDX_EDTYPE, "%s: dtype must be float32 or float64, got %s", fname, kdx_dtype_name(dt));
    return KDX_OK;
}

kdx_status kdx_distill_label_smoothing(const kdx_tensor *y, int64_t C, double smoothing, kdx_dtype dt,
                                       kdx_tensor **out)
{
    const char *fname = "label_smoothing";
    KDX_TRY(check_target_args(fname, C, dt));
    KDX_TRY(check_unit(fname, "smoothing", smoothing));
    kdx_tensor *yc;
    KDX_TRY(check_labels(fname, y, -1, C, &yc));
    double off = smoothing / (double)C;
    kdx_status st = smoothed_one_hot(kdx_tensor_data(yc), yc->shape[0], C, 1 - smoothing + off, off, dt, out);
    kdx_tensor_release(yc);
    return st;
}

kdx_status kdx_distill_virtual_teacher(const kdx_tensor *y, int64_t C, double correct_prob, kdx_dtype dt,
                                       kdx_tensor **out)
{
    const char *fname = "virtual_teacher";
    KDX_TRY(check_target_args(fname, C, dt));
    if (C < 2) return kdx_fail(KDX_EINVAL, "%s: needs at least 2 classes, got %lld", fname, (long long)C);
    KDX_TRY(check_unit(fname, "correct_prob", correct_prob));
    kdx_tensor *yc;
    KDX_TRY(check_labels(fname, y, -1, C, &yc));
    kdx_status st = smoothed_one_hot(kdx_tensor_data(yc), yc->shape[0], C, correct_prob,
                                     (1 - correct_prob) / (double)(C - 1), dt, out);
    kdx_tensor_release(yc);
    return st;
}

/* ---- teacher-free KD ---- */

kdx_status kdx_loss_tf_kd(const kdx_tensor *s, const kdx_tensor *y, double T, double correct_prob, kdx_tensor **loss)
{
    const char *fname = "loss_tf_kd";
    KDX_TRY(kdx__check_float(fname, "student logits", s));
    if (s->ndim != 2 || s->shape[0] < 1 || s->shape[1] < 2)
        return kdx_fail(KDX_ESHAPE, "%s: student logits must be [B,C] with B >= 1 and C >= 2, got %s", fname,
                        kdx__shp(s));
    KDX_TRY(check_temperature(fname, T));
    KDX_TRY(check_unit(fname, "correct_prob", correct_prob));
    kdx_tensor *yc, *q;
    KDX_TRY(check_labels(fname, y, s->shape[0], s->shape[1], &yc));
    kdx_status st = kdx_distill_virtual_teacher(yc, s->shape[1], correct_prob, s->dtype, &q);
    kdx_tensor_release(yc);
    KDX_TRY(st);
    kdx_scope S = KDX_SCOPE;
    kdx__keep(&S, KDX_OK, q);
    /* the virtual teacher is softened, the student is not (the reference code) */
    kdx_tensor *lq = E_lsm(&S, E_bins(&S, KDX_BIN_DIV, q, T), 1);
    kdx_tensor *r = E_bins(&S, KDX_BIN_MUL, E_kl_sum(&S, lq, E_lsm(&S, s, 1)), 1.0 / (double)s->shape[0]);
    return kdx__scope_end(&S, r, loss);
}

/* ---- pseudo labels ---- */

static kdx_status pseudo_labels(const kdx_tensor *t, int soft, double T, double threshold, double smoothing,
                                kdx_tensor **targets, kdx_tensor **mask)
{
    int64_t C = t->shape[1];
    int d = 1;
    kdx_scope S = KDX_SCOPE;
    kdx_tensor *td;
    KDX_KEEP(&S, td, kdx_detach(t, &kdx_o_));
    kdx_tensor *p = E_sm(&S, E_bins(&S, KDX_BIN_DIV, td, T), 1), *conf, *tg = NULL;
    KDX_KEEP(&S, conf, kdx_reduce(KDX_RED_AMAX, p, &d, 1, 0, &kdx_o_));
    kdx_tensor *m = E_bins(&S, KDX_BIN_GE, conf, threshold);
    if (soft) {
        tg = E_bins(&S, KDX_BIN_ADD, E_bins(&S, KDX_BIN_MUL, p, 1 - smoothing), smoothing / (double)C);
    } else {
        kdx_tensor *idx;
        KDX_KEEP(&S, idx, kdx_argmax(td, 1, 0, 0, &kdx_o_));
        if (smoothing > 0 && idx) KDX_KEEP(&S, tg, kdx_distill_label_smoothing(idx, C, smoothing, t->dtype, &kdx_o_));
        else tg = idx;
    }
    if (S.s == KDX_OK) {
        *targets = kdx_tensor_retain(tg);
        *mask = kdx_tensor_retain(m);
    }
    return kdx__scope_free(&S);
}

kdx_status kdx_distill_pseudo_labels(const kdx_tensor *t, int soft, double T, double threshold, double smoothing,
                                     kdx_tensor **targets, kdx_tensor **mask)
{
    const char *fname = "pseudo_labels";
    KDX_TRY(kdx__check_float(fname, "teacher logits", t));
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1)
        return kdx_fail(KDX_ESHAPE, "%s: teacher logits must be [B,C] and not empty, got %s", fname, kdx__shp(t));
    KDX_TRY(check_temperature(fname, T));
    KDX_TRY(check_unit(fname, "smoothing", smoothing));
    if (isnan(threshold)) return kdx_fail(KDX_EINVAL, "%s: threshold must be a number, got nan", fname);
    /* targets are constants: nothing here is recorded */
    bool was = kdx__grad_pause();
    kdx_status st = pseudo_labels(t, soft, T, threshold, smoothing, targets, mask);
    kdx__grad_restore(was);
    return st;
}
