/* surrogate.h — what the surrogate models (surrogate_tree.c,
   surrogate_linear.c) share: reading the design matrix, the targets and the
   sample weights into float64 arrays, with the argument checks. Private to
   the engine. */
#ifndef KDX_SURROGATE_H
#define KDX_SURROGATE_H

#include "kdx_internal.h"

/* The inputs of a fit, in float64: x row-major [N, F], t [N, C] rows that
   are probability vectors (one-hot for hard labels), w [N] (ones if no
   weight was given), wsum their sum. Free with kdx__fit_data_free. */
typedef struct kdx__fit_data {
    int64_t N, F, C;
    double *x, *t, *w, wsum;
} kdx__fit_data;

/* Checks and reads x [N, F] (float, finite), y (int64 0-based [N] or float
   probabilities [N, C]) and weight (NULL or float [N], >= 0, sum > 0).
   n_classes: the class count for hard labels (0 or less: max + 1). fname
   names the caller in messages. */
kdx_status kdx__fit_data_read(const char *fname, const kdx_tensor *x, const kdx_tensor *y, const kdx_tensor *weight,
                              int64_t n_classes, kdx__fit_data *d);
void kdx__fit_data_free(kdx__fit_data *d);
/* Reads a 2-D float tensor [rows, cols] (any strides) into row-major doubles
   (a new array of rows*cols, freed with kdx__free(p, rows*cols*sizeof(double))). */
kdx_status kdx__read_matrix(const char *fname, const char *what, const kdx_tensor *x, int64_t *rows, int64_t *cols,
                            double **out);

#endif
