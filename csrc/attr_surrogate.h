/* attr_surrogate.h — private to the surrogate explanations (attr_shap.c,
 * attr_lime.c, linreg.c): the float64 regression they share. */
#ifndef KDX_ATTR_SURROGATE_H
#define KDX_ATTR_SURROGATE_H

#include "kdx_internal.h"

/* Options of kdx__linreg: ridge penalty alpha (not on the intercept), whether
   to fit an intercept, and the constraint a . beta = c (a NULL: none). */
typedef struct kdx__linreg_opts {
    double alpha;
    int intercept;
    const double *a; /* [K] */
    double c;
} kdx__linreg_opts;

/* Weighted least squares on the columns cols[0..K-1] of X [R, P] (row-major;
   cols NULL: all, K = P) with targets y [R] and weights w [R] >= 0: beta [K],
   *b0 the intercept (0 without one; may be NULL), *r2 (may be NULL) the
   weighted R^2 about the weighted mean of y, as sklearn's score. */
kdx_status kdx__linreg(const char *fname, const double *X, int64_t R, int64_t P, const int64_t *cols, int64_t K,
                       const double *y, const double *w, const kdx__linreg_opts *o, double *beta, double *b0,
                       double *r2);

/* Writes phi[id] of each element's feature into row i of attr (contiguous,
   float32 or float64): the attributions of x's shape. */
void kdx__attr_spread(const kdx__groups *g, int64_t i, const double *phi, kdx_tensor *attr);

#endif
