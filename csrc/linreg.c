/* linreg.c — the one regression the surrogate explanations share: weighted
 * least squares with an optional ridge penalty, an optional (unpenalised)
 * intercept and an optional linear equality constraint a . beta = c, in
 * float64.
 *
 * KernelSHAP fits without intercept and with the efficiency constraint
 * sum(phi) = f(x) - f(baseline); LIME fits Ridge(alpha=1, fit_intercept=True)
 * as sklearn does (the intercept by weighted centring, so it is not
 * penalised). The normal equations (X'WX + alpha I) beta = X'Wy, bordered by
 * the constraint row when there is one (a KKT system), are solved by Gaussian
 * elimination with partial pivoting; the constraint is then made exact by
 * projecting beta onto it, a correction of rounding size. */
#include "attr_surrogate.h"

#include <math.h>
#include <string.h>

/* Solves A z = b in place (A n x n row-major, overwritten; b becomes z).
   Returns 0 when a pivot vanishes (a singular system). */
static int gauss_solve(double *A, double *b, int64_t n)
{
    double scale = 0;
    for (int64_t i = 0; i < n * n; i++) scale = fmax(scale, fabs(A[i]));
    double tiny = scale * 1e-13 * (double)n;
    if (scale == 0) return n == 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t p = k;
        for (int64_t i = k + 1; i < n; i++)
            if (fabs(A[i * n + k]) > fabs(A[p * n + k])) p = i;
        if (!(fabs(A[p * n + k]) > tiny)) return 0;
        if (p != k) {
            for (int64_t j = 0; j < n; j++) {
                double t = A[k * n + j];
                A[k * n + j] = A[p * n + j], A[p * n + j] = t;
            }
            double t = b[k];
            b[k] = b[p], b[p] = t;
        }
        for (int64_t i = k + 1; i < n; i++) {
            double f = A[i * n + k] / A[k * n + k];
            if (f == 0) continue;
            for (int64_t j = k; j < n; j++) A[i * n + j] -= f * A[k * n + j];
            b[i] -= f * b[k];
        }
    }
    for (int64_t k = n - 1; k >= 0; k--) {
        double s = b[k];
        for (int64_t j = k + 1; j < n; j++) s -= A[k * n + j] * b[j];
        b[k] = s / A[k * n + k];
    }
    return 1;
}

static double column(const double *X, int64_t P, int64_t r, const int64_t *cols, int64_t k)
{
    return X[r * P + (cols ? cols[k] : k)];
}

/* The problem's rows: X's columns cols (or all), targets y, weights w. */
typedef struct wls {
    const double *X, *y, *w;
    int64_t R, P, K;
    const int64_t *cols;
} wls;

/* A [n, n] (zeroed) = X_c' W X_c + alpha I over the K columns, g = X_c' W
   (y - yc), with X_c the columns less their weighted means xm (intercept) or
   as they are; bordered by the constraint row when o->a. */
static void normal_equations(const wls *P, const kdx__linreg_opts *o, double sw, double yc, double *A, double *g,
                             double *xm, double *row, int64_t n)
{
    int64_t K = P->K;
    if (o->intercept) {
        for (int64_t r = 0; r < P->R; r++)
            for (int64_t k = 0; k < K; k++) xm[k] += P->w[r] * column(P->X, P->P, r, P->cols, k);
        for (int64_t k = 0; k < K; k++) xm[k] /= sw;
    }
    for (int64_t r = 0; r < P->R; r++) {
        if (P->w[r] == 0) continue;
        for (int64_t k = 0; k < K; k++) row[k] = column(P->X, P->P, r, P->cols, k) - xm[k];
        double dy = P->w[r] * (P->y[r] - yc);
        for (int64_t k = 0; k < K; k++) {
            double wk = P->w[r] * row[k];
            if (wk == 0) continue;
            double *Ak = A + k * n;
            for (int64_t l = k; l < K; l++) Ak[l] += wk * row[l];
            g[k] += row[k] * dy;
        }
    }
    for (int64_t k = 0; k < K; k++) {
        for (int64_t l = 0; l < k; l++) A[k * n + l] = A[l * n + k];
        A[k * n + k] += o->alpha;
    }
    if (o->a) {
        for (int64_t k = 0; k < K; k++) A[k * n + K] = A[K * n + k] = o->a[k];
        g[K] = o->c;
    }
}

/* sklearn's weighted score: 1 - SS_res / SS_tot about the weighted mean ym
   (a constant y scores 1 if fitted exactly, else 0, as r2_score). */
static double weighted_r2(const wls *P, const double *beta, double b0, double ym)
{
    double res = 0, tot = 0;
    for (int64_t r = 0; r < P->R; r++) {
        double p = b0;
        for (int64_t k = 0; k < P->K; k++) p += column(P->X, P->P, r, P->cols, k) * beta[k];
        res += P->w[r] * (P->y[r] - p) * (P->y[r] - p);
        tot += P->w[r] * (P->y[r] - ym) * (P->y[r] - ym);
    }
    return tot > 0 ? 1 - res / tot : (res > 0 ? 0.0 : 1.0);
}

kdx_status kdx__linreg(const char *fname, const double *X, int64_t R, int64_t P, const int64_t *cols, int64_t K,
                       const double *y, const double *w, const kdx__linreg_opts *o, double *beta, double *b0,
                       double *r2)
{
    if (R < 1) return kdx_fail(KDX_EINVAL, "%s: the regression needs at least one row", fname);
    double sw = 0, ym = 0;
    for (int64_t r = 0; r < R; r++) {
        if (!(w[r] >= 0) || !isfinite(y[r]))
            return kdx_fail(KDX_EINVAL, "%s: the regression got a negative weight or a non-finite output (row %lld)",
                            fname, (long long)r + 1);
        sw += w[r], ym += w[r] * y[r];
    }
    if (!(sw > 0)) return kdx_fail(KDX_EINVAL, "%s: the regression's weights sum to 0", fname);
    ym /= sw;
    int64_t n = K + (o->a ? 1 : 0);
    if (n > 46000) return kdx_fail(KDX_EINVAL, "%s: %lld regression features are too many", fname, (long long)K);
    size_t bytes = ((size_t)n * (size_t)n + 3 * (size_t)n + 1) * sizeof(double);
    double *mem = kdx__malloc(bytes);
    if (!mem) return kdx_fail(KDX_ENOMEM, "%s: out of memory for the regression (%lld features)", fname, (long long)K);
    double *A = mem, *g = A + n * n, *xm = g + n, *row = xm + n;
    wls pb = {X, y, w, R, P, K, cols};
    double yc = o->intercept ? ym : 0; /* the intercept is fitted by centring, unpenalised */
    normal_equations(&pb, o, sw, yc, A, g, xm, row, n);
    kdx_status s = KDX_OK;
    if (!gauss_solve(A, g, n)) {
        s = kdx_fail(KDX_ESTATE, "%s: the regression is singular (too few distinct samples for %lld features?)",
                     fname, (long long)K);
    } else {
        memcpy(beta, g, (size_t)K * sizeof(double));
        if (o->a) { /* project onto a . beta = c: the constraint holds to rounding */
            double ab = 0, aa = 0;
            for (int64_t k = 0; k < K; k++) ab += o->a[k] * beta[k], aa += o->a[k] * o->a[k];
            if (aa > 0)
                for (int64_t k = 0; k < K; k++) beta[k] += o->a[k] * (o->c - ab) / aa;
        }
        double b = yc;
        for (int64_t k = 0; k < K; k++) b -= xm[k] * beta[k];
        if (b0) *b0 = b;
        if (r2) *r2 = weighted_r2(&pb, beta, b, ym);
    }
    kdx__free(mem, bytes);
    return s;
}

kdx_status kdx_linreg(const kdx_tensor *X, const kdx_tensor *y, const kdx_tensor *w, double alpha, int intercept,
                      const kdx_tensor *a, double c, kdx_tensor **coef, double *b0, double *r2)
{
    const char *fname = "linreg";
    if (!X || !y || X->ndim != 2 || y->ndim != 1 || y->shape[0] != X->shape[0] ||
        (w && (w->ndim != 1 || w->shape[0] != X->shape[0])) || (a && (a->ndim != 1 || a->shape[0] != X->shape[1])))
        return kdx_fail(KDX_ESHAPE, "linreg: need X [R, P], y [R], w [R] and a [P], got X %s, y %s", X ? kdx__shp(X) : "NULL",
                        y ? kdx__shp(y) : "NULL");
    if (!(alpha >= 0)) return kdx_fail(KDX_EINVAL, "linreg: alpha must be >= 0, got %g", alpha);
    int64_t R = X->shape[0], P = X->shape[1];
    kdx_tensor *t[4] = {NULL, NULL, NULL, NULL}, *out = NULL, *ones = NULL;
    const kdx_tensor *in[4] = {X, y, w, a};
    kdx_status s = KDX_OK;
    if (!w) {
        s = kdx_ones(KDX_DTYPE_F64, 1, &R, &ones);
        in[2] = ones;
    }
    for (int i = 0; i < 4 && s == KDX_OK; i++) {
        if (!in[i]) continue;
        kdx_tensor *d = NULL;
        s = kdx_to(in[i], KDX_DTYPE_F64, &d);
        if (s == KDX_OK) s = kdx_contiguous(d, &t[i]);
        kdx_tensor_release(d);
    }
    if (s == KDX_OK) s = kdx__new_raw(fname, KDX_DTYPE_F64, 1, &P, &out);
    kdx__linreg_opts o = {alpha, intercept, a ? (const double *)kdx__base(t[3]) : NULL, c};
    if (s == KDX_OK)
        s = kdx__linreg(fname, (const double *)kdx__base(t[0]), R, P, NULL, P, (const double *)kdx__base(t[1]),
                        (const double *)kdx__base(t[2]), &o, (double *)kdx__base(out), b0, r2);
    if (s == KDX_OK) *coef = kdx_tensor_retain(out);
    KDX_RELEASE(t[0], t[1], t[2], t[3], out, ones);
    return s;
}
