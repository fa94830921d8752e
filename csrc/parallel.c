/* parallel.c — the engine's thread count and its one parallel-loop helper.
   OpenMP's threads are the engine's only pool (blas.c splits GEMMs over them). */
#include "kdx_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static int num_threads; /* 0 until set: use the machine's core count */
static int core_count;  /* asked once: omp_get_num_procs is a system call */

void kdx_set_num_threads(int n)
{
    if (n < 1) n = 1;
    num_threads = n; /* OpenBLAS stays single-threaded: see blas.c */
}

int kdx_get_num_threads(void)
{
    if (num_threads > 0) return num_threads;
    if (core_count == 0) {
#ifdef _OPENMP
        core_count = omp_get_num_procs(); /* a benign race: every thread writes the same value */
#else
        core_count = 1;
#endif
    }
    return core_count;
}

void kdx__parallel_for(int64_t n, int64_t grain, kdx__range_fn fn, void *ud)
{
    int nt = kdx_get_num_threads();
#ifdef _OPENMP
    if (omp_in_parallel()) nt = 1; /* nested: the enclosing loop already uses the threads */
#endif
    if (grain < 1) grain = 1;
    if (nt > 1 && n >= 2 * grain) {
        int64_t chunks = n / grain < nt ? n / grain : nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads((int)chunks) schedule(static)
#endif
        for (int64_t c = 0; c < chunks; c++) fn(ud, n * c / chunks, n * (c + 1) / chunks);
        return;
    }
    if (n > 0) fn(ud, 0, n);
}
