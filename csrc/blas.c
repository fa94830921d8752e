/* blas.c — the only file that includes cblas.h. Row-major GEMM that takes
   transpose flags, so transposed views never need a copy.

   kdx runs one thread pool, OpenMP's: OpenBLAS is kept single-threaded and
   a large product is split into column (or row) blocks, one per engine
   thread. Two pools on the same cores (OpenBLAS's threads and OpenMP's)
   spin against each other, and only one pool lets conv2d and other kernels
   run many small GEMMs side by side, each on its own thread. */
#include "kdx_internal.h"

#include <cblas.h>
#include <pthread.h>

/* OpenBLAS's own control call; declared here as older cblas.h lack it. */
void openblas_set_num_threads(int num_threads);

/* Below this many multiply-adds a product runs on the calling thread. */
#define GEMM_PARALLEL_MIN ((int64_t)1 << 18)

static void set_openblas_single(void) { openblas_set_num_threads(1); }

/* Once per process: threads of several lua_States reach their first product
   together, and openblas_set_num_threads is not made to be called at once. */
static void blas_single_threaded(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, set_openblas_single);
}

typedef struct gemm_job {
    bool ta, tb, split_n;
    int64_t m, n, k, lda, ldb, ldc;
    double alpha, beta;
    const char *a, *b;
    char *c;
    kdx_dtype dt;
} gemm_job;

/* Rows [lo, hi) of C (split_n false) or its columns [lo, hi). */
static void gemm_range(void *ud, int64_t lo, int64_t hi)
{
    const gemm_job *j = ud;
    int64_t es = (int64_t)kdx_dtype_size(j->dt), m = j->m, n = j->n;
    const char *a = j->a, *b = j->b;
    char *c = j->c;
    if (j->split_n) {
        b += (j->tb ? lo * j->ldb : lo) * es;
        c += lo * es;
        n = hi - lo;
    } else {
        a += (j->ta ? lo : lo * j->lda) * es;
        c += lo * j->ldc * es;
        m = hi - lo;
    }
    CBLAS_TRANSPOSE ta = j->ta ? CblasTrans : CblasNoTrans, tb = j->tb ? CblasTrans : CblasNoTrans;
    if (j->dt == KDX_DTYPE_F32)
        cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)j->k, (float)j->alpha, (const float *)a, (int)j->lda,
                    (const float *)b, (int)j->ldb, (float)j->beta, (float *)c, (int)j->ldc);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)j->k, j->alpha, (const double *)a, (int)j->lda,
                    (const double *)b, (int)j->ldb, j->beta, (double *)c, (int)j->ldc);
}

static void gemm(gemm_job *j)
{
    blas_single_threaded();
    if (j->m <= 0 || j->n <= 0) return;
    int64_t work = j->m * j->n * (j->k > 0 ? j->k : 1);
    j->split_n = j->n >= j->m;
    int64_t len = j->split_n ? j->n : j->m;
    /* Blocks of at least 16 rows/columns keep the BLAS kernels efficient. */
    int64_t grain = work < GEMM_PARALLEL_MIN ? len : kdx__max64(16, len / kdx_get_num_threads());
    kdx__parallel_for(len, grain, gemm_range, j);
}

void kdx__sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    gemm_job j = {ta, tb, false, m, n, k, lda, ldb, ldc, alpha, beta, (const char *)a, (const char *)b, (char *)c,
                  KDX_DTYPE_F32};
    gemm(&j);
}

void kdx__dgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a, int64_t lda,
                const double *b, int64_t ldb, double beta, double *c, int64_t ldc)
{
    gemm_job j = {ta, tb, false, m, n, k, lda, ldb, ldc, alpha, beta, (const char *)a, (const char *)b, (char *)c,
                  KDX_DTYPE_F64};
    gemm(&j);
}
