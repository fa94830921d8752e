/* iter.c — strided iteration over broadcast operands. Kernels see runs along
   the innermost (coalesced) dimension and loop over them with byte strides. */
#include "kdx_internal.h"

#include <string.h>

void kdx__bcast_strides(const kdx_tensor *t, int ndim, const int64_t *shape, int64_t *stride)
{
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        stride[i] = (j < 0 || (t->shape[j] == 1 && shape[i] != 1)) ? 0 : t->stride[j];
    }
}

void kdx__iter_init(kdx_iter *it, int nops, const kdx_tensor *const *ts, int ndim, const int64_t *shape)
{
    int64_t st[KDX_ITER_MAX][KDX_MAX_DIMS];
    memset(it, 0, sizeof *it);
    it->nops = nops;
    for (int k = 0; k < nops; k++) {
        kdx__bcast_strides(ts[k], ndim, shape, st[k]);
        it->base[k] = kdx__base(ts[k]);
    }
    /* Reverse into innermost-first order, dropping size-1 dims and merging
       neighbours whose strides chain for every operand. */
    int nd = 0;
    for (int i = ndim - 1; i >= 0; i--) {
        if (shape[i] == 1) continue;
        if (nd > 0) {
            bool merge = true;
            for (int k = 0; k < nops && merge; k++)
                merge = st[k][i] == it->stride[k][nd - 1] * it->shape[nd - 1];
            if (merge) {
                it->shape[nd - 1] *= shape[i];
                continue;
            }
        }
        it->shape[nd] = shape[i];
        for (int k = 0; k < nops; k++) it->stride[k][nd] = st[k][i];
        nd++;
    }
    /* Convert element strides to bytes. */
    for (int k = 0; k < nops; k++) {
        int64_t es = (int64_t)kdx_dtype_size(ts[k]->dtype);
        for (int d = 0; d < nd; d++) it->stride[k][d] *= es;
    }
    if (nd == 0) it->shape[nd++] = 1; /* a 0-d or all-ones shape is one run of 1 */
    it->ndim = nd;
    int64_t runs = 1;
    for (int d = 1; d < nd; d++) runs *= it->shape[d];
    it->total_runs = kdx__numel(ndim, shape) == 0 ? 0 : runs;
    it->done = 0;
}

int kdx__iter_next(kdx_iter *it, char **ptr, int64_t *n, int64_t *st)
{
    if (it->done >= it->total_runs) return 0;
    for (int k = 0; k < it->nops; k++) {
        char *p = it->base[k];
        for (int d = 1; d < it->ndim; d++) p += it->count[d] * it->stride[k][d];
        ptr[k] = p;
        st[k] = it->stride[k][0];
    }
    *n = it->shape[0];
    /* Advance the odometer over the outer dims. */
    for (int d = 1; d < it->ndim; d++) {
        if (++it->count[d] < it->shape[d]) break;
        it->count[d] = 0;
    }
    it->done++;
    return 1;
}
