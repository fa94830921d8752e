/* surrogate_linear.c — sparse multinomial logistic regression fitted to hard
   or soft labels: minimises
       f(W, b) + l1 * sum |W|,  f = sum_i w_i CE(t_i, softmax(W x_i + b)) / sum_i w_i
   (the intercept is not penalised) by FISTA (Beck & Teboulle 2009) with
   backtracking on the step and adaptive restart (O'Donoghue & Candes 2015),
   all in float64. scikit-learn's LogisticRegression(penalty="l1",
   multi_class="multinomial") minimises C * sum_i w_i CE_i + sum |W|, the
   same problem with l1 = 1 / (C * sum_i w_i). */
#include "surrogate.h"

#include <math.h>
#include <string.h>

typedef struct lin {
    const kdx__fit_data *d;
    double *z, *g; /* [N, C] logits, then d f / d logits */
} lin;

/* f at (W, b); with gw, gb non-NULL also its gradient. */
static double smooth(lin *s, const double *W, const double *b, double *gw, double *gb)
{
    const kdx__fit_data *d = s->d;
    int64_t N = d->N, F = d->F, C = d->C;
    kdx__dgemm(false, true, N, C, F, 1.0, d->x, F, W, F, 0.0, s->z, C);
    double f = 0;
    for (int64_t i = 0; i < N; i++) {
        double *z = s->z + i * C, mx = -HUGE_VAL, se = 0, tz = 0;
        const double *t = d->t + i * C;
        for (int64_t k = 0; k < C; k++) {
            z[k] += b[k];
            if (z[k] > mx) mx = z[k];
        }
        for (int64_t k = 0; k < C; k++) {
            se += exp(z[k] - mx);
            tz += t[k] * z[k];
        }
        double lse = mx + log(se), wi = d->w[i] / d->wsum;
        f += wi * (lse - tz);
        if (gw) {
            double *g = s->g + i * C;
            for (int64_t k = 0; k < C; k++) g[k] = wi * (exp(z[k] - lse) - t[k]);
        }
    }
    if (gw) {
        kdx__dgemm(true, false, C, F, N, 1.0, s->g, C, d->x, F, 0.0, gw, F);
        memset(gb, 0, (size_t)C * sizeof(double));
        for (int64_t i = 0; i < N; i++)
            for (int64_t k = 0; k < C; k++) gb[k] += s->g[i * C + k];
    }
    return f;
}

static double l1_norm(const double *W, int64_t n)
{
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += fabs(W[j]);
    return s;
}


static kdx_status fista(lin *s, const kdx_linear_options *o, double *x, int64_t *n_iter)
{
    const kdx__fit_data *d = s->d;
    int64_t C = d->C, P = C * d->F + C; /* W then b */
    size_t bytes = (size_t)P * sizeof(double);
    double *mem = kdx__malloc(bytes * 5);
    if (!mem) return kdx_fail(KDX_ENOMEM, "surrogate_linear_fit: out of memory");
    double *xold = mem, *y = mem + P, *gy = mem + 2 * P, *xn = mem + 3 * P, *gx = mem + 4 * P;
    double *bx = x + C * d->F;
    memcpy(xold, x, bytes);
    memcpy(y, x, bytes);
    double L = 1.0, t = 1.0, Fold = smooth(s, x, bx, NULL, NULL) + o->l1 * l1_norm(x, C * d->F);
    int64_t it = 0;
    while (it < o->max_iter) {
        it++;
        double fy = smooth(s, y, y + C * d->F, gy, gy + C * d->F), fx, gm;
        if (!o->fit_intercept) memset(gy + C * d->F, 0, (size_t)C * sizeof(double));
        for (;;) {
            double lam = o->l1 / L, lin_term = 0, sq = 0;
            for (int64_t j = 0; j < P; j++) {
                double v = y[j] - gy[j] / L;
                if (j < C * d->F) v = v > lam ? v - lam : v < -lam ? v + lam : 0; /* soft threshold, W only */
                xn[j] = v;
                double dj = v - y[j];
                lin_term += gy[j] * dj;
                sq += dj * dj;
            }
            fx = smooth(s, xn, xn + C * d->F, NULL, NULL);
            if (L > 1e30) break;
            if (fabs(fx - fy) > 1e-12 * (1 + fabs(fy))) {
                if (fx <= fy + lin_term + 0.5 * L * sq) break;
            } else {
                /* near the optimum f's changes drown in rounding: test the curvature
                   <grad f(x+) - grad f(y), x+ - y> <= L |x+ - y|^2 instead, which subtracts no f values */
                smooth(s, xn, xn + C * d->F, gx, gx + C * d->F);
                if (!o->fit_intercept) memset(gx + C * d->F, 0, (size_t)C * sizeof(double));
                double curv = 0;
                for (int64_t j = 0; j < P; j++) curv += (gx[j] - gy[j]) * (xn[j] - y[j]);
                if (curv <= L * sq) break;
            }
            L *= 2;
        }
        /* the gradient mapping L (y - x+): zero exactly at a minimiser */
        gm = 0;
        for (int64_t j = 0; j < P; j++) {
            double v = fabs(L * (y[j] - xn[j]));
            if (v > gm) gm = v;
        }
        double Fn = fx + o->l1 * l1_norm(xn, C * d->F);
        memcpy(xold, x, bytes);
        memcpy(x, xn, bytes);
        if (gm <= o->tol) break;
        /* restart the momentum when the objective went up */
        if (Fn > Fold) t = 1.0;
        double tn = 0.5 * (1 + sqrt(1 + 4 * t * t)), beta = (t - 1) / tn;
        for (int64_t j = 0; j < P; j++) y[j] = x[j] + beta * (x[j] - xold[j]);
        t = tn;
        Fold = Fn;
    }
    if (n_iter) *n_iter = it;
    kdx__free(mem, bytes * 5);
    return KDX_OK;
}

static kdx_status lin_alloc(lin *s, const kdx__fit_data *d)
{
    s->d = d;
    size_t nc = (size_t)(d->N * d->C) * sizeof(double);
    s->z = kdx__malloc_raw(nc);
    s->g = kdx__malloc_raw(nc);
    if (!s->z || !s->g) return kdx_fail(KDX_ENOMEM, "surrogate_linear: out of memory");
    return KDX_OK;
}

static void lin_free(lin *s)
{
    size_t nc = (size_t)(s->d->N * s->d->C) * sizeof(double);
    kdx__free(s->z, nc);
    kdx__free(s->g, nc);
}

kdx_status kdx_surrogate_linear_fit(const kdx_tensor *x, const kdx_tensor *y, const kdx_tensor *weight,
                                    int64_t n_classes, const kdx_linear_options *o, kdx_tensor **coef,
                                    kdx_tensor **intercept, int64_t *n_iter)
{
    const char *fname = "surrogate_linear_fit";
    *coef = *intercept = NULL;
    if (!o) return kdx_fail(KDX_EINVAL, "%s: options are missing", fname);
    if (!(o->l1 >= 0) || !isfinite(o->l1)) return kdx_fail(KDX_EINVAL, "%s: l1 must be >= 0, got %g", fname, o->l1);
    if (!(o->tol >= 0)) return kdx_fail(KDX_EINVAL, "%s: tol must be >= 0, got %g", fname, o->tol);
    if (o->max_iter < 1)
        return kdx_fail(KDX_EINVAL, "%s: max_iter must be >= 1, got %lld", fname, (long long)o->max_iter);
    kdx__fit_data d;
    KDX_TRY(kdx__fit_data_read(fname, x, y, weight, n_classes, &d));
    lin s = {0};
    kdx_status st = lin_alloc(&s, &d);
    int64_t cs[2] = {d.C, d.F};
    if (st == KDX_OK) st = kdx__new(fname, KDX_DTYPE_F64, 2, cs, coef);
    if (st == KDX_OK) st = kdx__new(fname, KDX_DTYPE_F64, 1, cs, intercept);
    double *theta = NULL;
    size_t bytes = (size_t)(d.C * d.F + d.C) * sizeof(double);
    if (st == KDX_OK && !(theta = kdx__malloc(bytes))) st = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    if (st == KDX_OK) st = fista(&s, o, theta, n_iter);
    if (st == KDX_OK) {
        memcpy(kdx_tensor_data(*coef), theta, (size_t)(d.C * d.F) * sizeof(double));
        memcpy(kdx_tensor_data(*intercept), theta + d.C * d.F, (size_t)d.C * sizeof(double));
    } else {
        KDX_RELEASE(*coef, *intercept);
        *coef = *intercept = NULL;
    }
    if (theta) kdx__free(theta, bytes);
    lin_free(&s);
    kdx__fit_data_free(&d);
    return st;
}

kdx_status kdx_surrogate_linear_objective(const kdx_tensor *x, const kdx_tensor *y, const kdx_tensor *weight,
                                          const kdx_tensor *coef, const kdx_tensor *intercept, double l1,
                                          double *out)
{
    const char *fname = "surrogate_linear_objective";
    int64_t cr, cc, ir, ic;
    double *W = NULL, *b = NULL;
    KDX_TRY(kdx__read_matrix(fname, "coef", coef, &cr, &cc, &W));
    kdx_status st = KDX_OK;
    if (!intercept || kdx_tensor_ndim(intercept) != 1) {
        st = kdx_fail(KDX_ESHAPE, "%s: intercept must be 1-D [C]", fname);
    } else {
        kdx_tensor *iv = NULL;
        int64_t shp[2] = {1, kdx_tensor_size(intercept, 0)};
        st = kdx_reshape(intercept, 2, shp, &iv);
        if (st == KDX_OK) st = kdx__read_matrix(fname, "intercept", iv, &ir, &ic, &b);
        kdx_tensor_release(iv);
    }
    if (st != KDX_OK) {
        kdx__free(W, (size_t)(cr * cc) * sizeof(double));
        return st;
    }
    kdx__fit_data d;
    st = kdx__fit_data_read(fname, x, y, weight, cr, &d);
    if (st == KDX_OK && (d.C != cr || d.F != cc || ic != cr)) {
        st = kdx_fail(KDX_ESHAPE, "%s: coef [%lld, %lld] and intercept [%lld] do not fit %lld classes, %lld features",
                      fname, (long long)cr, (long long)cc, (long long)ic, (long long)d.C, (long long)d.F);
        kdx__fit_data_free(&d);
    }
    if (st == KDX_OK) {
        lin s = {0};
        st = lin_alloc(&s, &d);
        if (st == KDX_OK) *out = smooth(&s, W, b, NULL, NULL) + l1 * l1_norm(W, cr * cc);
        lin_free(&s);
        kdx__fit_data_free(&d);
    }
    kdx__free(W, (size_t)(cr * cc) * sizeof(double));
    kdx__free(b, (size_t)ic * sizeof(double));
    return st;
}
