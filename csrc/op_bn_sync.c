/* op_bn_sync.c — batch norm over the global batch of a distributed run
   (SyncBatchNorm). The engine knows nothing of MPI: the caller hands in a
   kdx_sum that adds numbers up over the processes (kdx.dist's MPI module
   does), and every per-channel sum goes through it.

   Gradient. Each process p holds n_p of the N rows and its loss is the mean
   over them; the reducer averages parameter gradients weighted by rows,
   which is the gradient of (1/N) sum of all rows' losses. So process p's
   upstream gradient g_p is N/n_p times that of the global objective, and
   with gh = g * weight, xhat = (x - mean) * invstd, M the global count per
   channel and s = N/n_p,
       dx = invstd * (gh - s/M * S1 - xhat * s/M * S2),
       S1 = sum_p (n_p/N) sum gh,  S2 = sum_p (n_p/N) sum gh * xhat,
   which is s times the global objective's gradient, as the reducer expects
   of every gradient a process computes. With one process s = 1 and this is
   kdx_batch_norm's gradient (which kdx__bn_grad computes for it too, when
   the pass is not recorded). d weight and d bias are local sums, averaged by
   the reducer like any parameter's. */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>

static kdx_status sum_all(const kdx_sum *sum, double *v, int64_t n)
{
    if (!sum) return KDX_OK;
    kdx_status s = sum->fn(sum->ud, v, n);
    if (s != KDX_OK) return kdx_fail(s, "batch_norm_sync: summing over the processes failed: %s", kdx_last_error());
    return KDX_OK;
}

/* Element i of a contiguous float tensor as a double, and its setter. */
static double get(const char *p, kdx_dtype dt, int64_t i)
{
    return dt == KDX_DTYPE_F32 ? ((const float *)p)[i] : ((const double *)p)[i];
}

static void set(char *p, kdx_dtype dt, int64_t i, double v)
{
    if (dt == KDX_DTYPE_F32) ((float *)p)[i] = (float)v;
    else ((double *)p)[i] = v;
}

/* A 1-D [C] parameter as C doubles (1 for a missing weight, 0 for a missing bias). */
static void vec(const kdx_tensor *t, int64_t C, double dflt, double *out)
{
    for (int64_t c = 0; c < C; c++) {
        if (!t) {
            out[c] = dflt;
            continue;
        }
        const char *p = kdx__base(t);
        int64_t at = c * t->stride[0];
        out[c] = t->dtype == KDX_DTYPE_F32 ? ((const float *)p)[at] : ((const double *)p)[at];
    }
}

/* The per-channel passes of kdx__bn_grad, over channels [lo, hi) (x and g
   viewed as [N, C, S]); channels are independent, so they split across the
   engine's threads. */
typedef struct bn_grad_job {
    const char *x, *g;
    char *dx;
    kdx_dtype dt;
    int64_t N, C, S;
    const double *w, *mean, *inv, *t;
    double *sg, *sgx, M, scale;
} bn_grad_job;

static void bn_sums_range(void *ud, int64_t lo, int64_t hi)
{
    const bn_grad_job *j = ud;
    for (int64_t c = lo; c < hi; c++) {
        double a = 0, b = 0;
        for (int64_t n = 0; n < j->N; n++)
            for (int64_t k = (n * j->C + c) * j->S, e = k + j->S; k < e; k++) {
                double gv = get(j->g, j->dt, k);
                a += gv;
                b += gv * (get(j->x, j->dt, k) - j->mean[c]) * j->inv[c];
            }
        j->sg[c] = a, j->sgx[c] = b;
    }
}

static void bn_dx_range(void *ud, int64_t lo, int64_t hi)
{
    const bn_grad_job *j = ud;
    for (int64_t c = lo; c < hi; c++) {
        double m1 = j->scale * j->t[c] / j->M, m2 = j->scale * j->t[j->C + c] / j->M;
        for (int64_t n = 0; n < j->N; n++)
            for (int64_t k = (n * j->C + c) * j->S, e = k + j->S; k < e; k++) {
                double xh = (get(j->x, j->dt, k) - j->mean[c]) * j->inv[c];
                set(j->dx, j->dt, k, j->inv[c] * (j->w[c] * get(j->g, j->dt, k) - m1 - xh * m2));
            }
    }
}

kdx_status kdx__bn_grad(const kdx_tensor *x, const kdx_tensor *w, const kdx_tensor *sm, const kdx_tensor *si,
                        const kdx_tensor *g, double M, double scale, const kdx_sum *sum, const bool *want,
                        kdx_tensor **gin)
{
    kdx_tensor *xc = NULL, *gc = NULL, *dx = NULL, *dw = NULL, *db = NULL;
    kdx_dtype dt = x->dtype;
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int i = 2; i < x->ndim; i++) S *= x->shape[i];
    size_t cb = (size_t)(C > 0 ? C : 1) * sizeof(double);
    double *st = kdx__malloc(7 * cb);
    kdx_status s = st ? KDX_OK : kdx_fail(KDX_ENOMEM, "batch_norm: out of memory");
    if (s == KDX_OK) s = kdx_contiguous(x, &xc);
    if (s == KDX_OK) s = kdx_contiguous(g, &gc);
    if (s == KDX_OK && want[0]) s = kdx__new("batch_norm", dt, x->ndim, x->shape, &dx);
    if (s == KDX_OK && want[1]) s = kdx__new("batch_norm", dt, 1, &C, &dw);
    if (s == KDX_OK && want[2]) s = kdx__new("batch_norm", dt, 1, &C, &db);
    if (s == KDX_OK) {
        double *wv = st, *mean = st + C, *inv = st + 2 * C, *sg = st + 3 * C, *sgx = st + 4 * C, *t = st + 5 * C;
        vec(w, C, 1, wv);
        vec(sm, C, 0, mean);
        vec(si, C, 1, inv);
        bn_grad_job j = {kdx__base(xc), kdx__base(gc), dx ? kdx__base(dx) : NULL, dt, N, C, S, wv, mean, inv, t,
                         sg, sgx, M, scale};
        kdx__parallel_for(C, kdx__grain(N * S), bn_sums_range, &j); /* sums of g and g * xhat (local) */
        for (int64_t c = 0; c < C; c++) {
            if (dw) set(kdx__base(dw), dt, c, sgx[c]);
            if (db) set(kdx__base(db), dt, c, sg[c]);
        }
        if (dx) {
            /* the global sums, each process's weighted by n_p/N = 1/scale */
            for (int64_t c = 0; c < C; c++) t[c] = wv[c] * sg[c] / scale, t[C + c] = wv[c] * sgx[c] / scale;
            s = sum_all(sum, t, 2 * C);
            if (s == KDX_OK) kdx__parallel_for(C, kdx__grain(N * S), bn_dx_range, &j);
        }
    }
    if (st) kdx__free(st, 7 * cb);
    KDX_RELEASE(xc, gc);
    if (s != KDX_OK) {
        KDX_RELEASE(dx, dw, db);
        return s;
    }
    gin[0] = dx, gin[1] = dw, gin[2] = db;
    return KDX_OK;
}

static kdx_status bn_sync_backward(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin)
{
    if (kdx_grad_enabled())
        return kdx_fail(KDX_ESTATE, "batch_norm_sync: second derivatives are not supported (create_graph)");
    kdx_tensor *x, *w = NULL, *sm, *si;
    KDX_TRY(kdx__saved(n, 0, &x));
    if (n->ip[0]) KDX_TRY(kdx__saved(n, 1, &w));
    KDX_TRY(kdx__saved(n, 2, &sm));
    KDX_TRY(kdx__saved(n, 3, &si));
    return kdx__bn_grad(x, w, sm, si, g, n->p[1], n->p[2], n->ctx, want, gin);
}

/* The forward's per-channel passes over channels [lo, hi): pass 0 sums x,
   pass 1 sums (x - mean)^2, pass 2 writes y = x * a + b. */
typedef struct bn_fwd_job {
    const char *x;
    char *y;
    kdx_dtype dt;
    int64_t N, C, S;
    int pass;
    const double *mean, *a, *b;
    double *out;
} bn_fwd_job;

static void bn_fwd_range(void *ud, int64_t lo, int64_t hi)
{
    const bn_fwd_job *j = ud;
    for (int64_t c = lo; c < hi; c++) {
        double acc = 0;
        for (int64_t n = 0; n < j->N; n++)
            for (int64_t k = (n * j->C + c) * j->S, e = k + j->S; k < e; k++) {
                double v = get(j->x, j->dt, k);
                if (j->pass == 0) acc += v;
                else if (j->pass == 1) acc += (v - j->mean[c]) * (v - j->mean[c]);
                else set(j->y, j->dt, k, v * j->a[c] + j->b[c]);
            }
        if (j->pass < 2) j->out[c] = acc;
    }
}

kdx_status kdx_batch_norm_sync(const kdx_tensor *x, kdx_tensor *running_mean, kdx_tensor *running_var,
                               const kdx_tensor *weight, const kdx_tensor *bias, double momentum, double eps,
                               const kdx_sum *sum, kdx_tensor **out)
{
    const char *const fname = "batch_norm_sync";
    KDX_TRY(kdx__bn_check(x, running_mean, running_var, weight, bias, 2, momentum, eps));
    if (!out) return kdx_fail(KDX_EINVAL, "%s: out is NULL", fname);
    if (sum && !sum->fn) return kdx_fail(KDX_EINVAL, "%s: the sum has no function", fname);
    kdx_dtype dt = x->dtype;
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int i = 2; i < x->ndim; i++) S *= x->shape[i];
    size_t cb = (size_t)(C + 2) * sizeof(double);
    double *st = kdx__malloc(5 * cb);
    kdx_tensor *xc = NULL, *y = NULL, *sm = NULL, *si = NULL;
    bool was = kdx__grad_pause();
    kdx_status s = st ? KDX_OK : kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    if (s == KDX_OK) s = kdx_contiguous(x, &xc);
    if (s == KDX_OK) s = kdx__new(fname, dt, x->ndim, x->shape, &y);
    if (s == KDX_OK) s = kdx__new(fname, dt, 1, &C, &sm);
    if (s == KDX_OK) s = kdx__new(fname, dt, 1, &C, &si);
    /* On a failure above this process sends nothing; the others would wait:
       only out-of-memory gets there, after the argument checks every
       process makes alike. */
    double *tot = NULL, *var = NULL, *mean = NULL, *wv = NULL, *bv = NULL;
    double M = 0, rows = 0;
    bn_fwd_job j = {NULL, NULL, dt, N, C, S, 0, NULL, NULL, NULL, NULL};
    int64_t grain = kdx__grain(N * S);
    if (s == KDX_OK) {
        tot = st, var = st + (C + 2), mean = st + 2 * (C + 2), wv = st + 3 * (C + 2), bv = st + 4 * (C + 2);
        j.x = kdx__base(xc), j.y = kdx__base(y), j.mean = mean, j.a = wv, j.b = bv;
        /* the global count, rows and per-channel sums, in one message */
        j.pass = 0, j.out = tot;
        kdx__parallel_for(C, grain, bn_fwd_range, &j);
        tot[C] = (double)(N * S), tot[C + 1] = (double)N;
        s = sum_all(sum, tot, C + 2);
        M = tot[C], rows = tot[C + 1];
        /* every process sees the same global count, so all fail alike */
        if (s == KDX_OK && M <= 1)
            s = kdx_fail(KDX_ESHAPE, "%s: expected more than 1 value per channel over all processes, got %g", fname, M);
    }
    if (s == KDX_OK) {
        for (int64_t c = 0; c < C; c++) mean[c] = tot[c] / M;
        j.pass = 1, j.out = var;
        kdx__parallel_for(C, grain, bn_fwd_range, &j);
        s = sum_all(sum, var, C);
    }
    if (s == KDX_OK) {
        vec(weight, C, 1, wv);
        vec(bias, C, 0, bv);
        for (int64_t c = 0; c < C; c++) { /* wv, bv become the scale and shift */
            var[c] /= M;
            double inv = 1.0 / sqrt(var[c] + eps);
            set(kdx__base(sm), dt, c, mean[c]);
            set(kdx__base(si), dt, c, inv);
            wv[c] *= inv;
            bv[c] -= mean[c] * wv[c];
        }
        j.pass = 2;
        kdx__parallel_for(C, grain, bn_fwd_range, &j);
        if (running_mean) {
            double unbias = M / (M - 1);
            kdx_tensor *rm = running_mean, *rv = running_var;
            for (int64_t c = 0; c < C; c++) {
                char *pm = kdx__base(rm), *pv = kdx__base(rv);
                int64_t im = c * rm->stride[0], iv = c * rv->stride[0];
                set(pm, dt, im, (1 - momentum) * get(pm, dt, im) + momentum * mean[c]);
                set(pv, dt, iv, (1 - momentum) * get(pv, dt, iv) + momentum * var[c] * unbias);
            }
            kdx__bump(running_mean);
            kdx__bump(running_var);
        }
    }
    if (st) kdx__free(st, 5 * cb);
    kdx_tensor_release(xc);
    kdx__grad_restore(was);
    const kdx_tensor *ins[3] = {x, weight, bias};
    if (s == KDX_OK && kdx__needs_node(3, ins)) {
        kdx_node *n;
        s = kdx__record("batch_norm_sync", bn_sync_backward, 3, ins, &y, &n);
        if (s == KDX_OK) {
            n->ip[0] = weight != NULL;
            n->p[0] = eps, n->p[1] = M, n->p[2] = N > 0 ? rows / (double)N : 1;
            n->ctx = sum;
            kdx__save(n, 0, x);
            if (weight) kdx__save(n, 1, weight);
            kdx__save(n, 2, sm);
            kdx__save(n, 3, si);
        }
    }
    KDX_RELEASE(sm, si);
    if (s != KDX_OK) {
        kdx_tensor_release(y);
        return s;
    }
    *out = y;
    return KDX_OK;
}
