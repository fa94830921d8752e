/* attr_metrics.h — private to attr_metrics.c and attr_similarity.c: the
 * per-sample similarity kernels on float64 rows, shared by
 * kdx_attr_similarity and the randomisation check. */
#ifndef KDX_ATTR_METRICS_H
#define KDX_ATTR_METRICS_H

#include "kdx_internal.h"

/* out[i] = similarity of rows a[i*d ..] and b[i*d ..] for i < N (d = H*W for
   SSIM maps). param: top-k k (a count >= 1 or a fraction in (0, 1)), SSIM
   data range (<= 0: each pair's max - min). fname names the caller. */
kdx_status kdx__sim_rows(const char *fname, kdx_sim_kind kind, const double *a, const double *b, int64_t N,
                         int64_t d, int64_t H, int64_t W, double param, double *out);
/* A contiguous float64 copy (or t itself when it already is one), not recorded. */
kdx_status kdx__f64(const kdx_tensor *t, kdx_tensor **out);

/* idx = 0..n-1 ordered by v (descending when desc), ties by index; tmp has room for n. */
void kdx__argsort(const double *v, int64_t n, int desc, int64_t *idx, int64_t *tmp);

#endif
