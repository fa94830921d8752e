/* blas_raw.c — the floor kdx's matmul is measured against: cblas_sgemm called
   directly on preallocated row-major matrices, no tensor library in between.

   usage: blas_raw SECONDS N...
   Threads come from OPENBLAS_NUM_THREADS, as for any OpenBLAS program. Prints
   one machine-readable line per size (see bench/README.md):
     matmul openblas THREADS N GFLOPS
     matmul openblas+calloc THREADS N GFLOPS   (a calloc'd output per call,
                                                what a tensor library pays)
     info openblas KEY VALUE */
#define _POSIX_C_SOURCE 199309L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BATCHES 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct problem {
    int n;
    const float *a, *b;
    float *c;      /* the preallocated output, or NULL: calloc one per call */
};

static void run_once(const struct problem *p)
{
    size_t nn = (size_t)p->n * (size_t)p->n;
    float *c = p->c ? p->c : calloc(nn, sizeof *c);
    if (!c) {
        fprintf(stderr, "blas_raw: out of memory\n");
        exit(1);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->n, p->n, p->n, 1.0f, p->a, p->n, p->b, p->n, 0.0f, c,
                p->n);
    if (!p->c) free(c);
}

/* Best (lowest) seconds per call over BATCHES batches sized to fill `budget`
   seconds in all — the same protocol as bench.lua and bench_torch.py. On a
   shared machine the quietest batch is the truest one. */
static double time_per_call(const struct problem *p, double budget)
{
    run_once(p); /* warm up: page in the buffers, start the thread pool */
    double t0 = now();
    run_once(p);
    double one = now() - t0;
    long reps = (long)(budget / BATCHES / (one > 1e-9 ? one : 1e-9));
    if (reps < 1) reps = 1;
    double best = 0;
    for (int i = 0; i < BATCHES; i++) {
        t0 = now();
        for (long r = 0; r < reps; r++) run_once(p);
        double per = (now() - t0) / (double)reps;
        if (i == 0 || per < best) best = per;
    }
    return best;
}

static float *random_matrix(int n, unsigned *seed)
{
    size_t nn = (size_t)n * (size_t)n;
    float *m = malloc(nn * sizeof *m);
    if (!m) return NULL;
    for (size_t i = 0; i < nn; i++) {
        *seed = *seed * 1103515245u + 12345u;
        m[i] = (float)((*seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: blas_raw SECONDS N...\n");
        return 2;
    }
    double budget = atof(argv[1]);
    int threads = openblas_get_num_threads();
    printf("info openblas corename %s\n", openblas_get_corename());
    printf("info openblas config %s\n", openblas_get_config());
    unsigned seed = 42;
    for (int i = 2; i < argc; i++) {
        int n = atoi(argv[i]);
        float *a = random_matrix(n, &seed), *b = random_matrix(n, &seed), *c = random_matrix(n, &seed);
        if (n < 1 || !a || !b || !c) {
            fprintf(stderr, "blas_raw: bad size or out of memory for N=%s\n", argv[i]);
            return 1;
        }
        double flops = 2.0 * n * (double)n * n;
        struct problem p = {n, a, b, c};
        printf("matmul openblas %d %d %.3f\n", threads, n, flops / time_per_call(&p, budget) / 1e9);
        fflush(stdout);
        p.c = NULL;
        printf("matmul openblas+calloc %d %d %.3f\n", threads, n, flops / time_per_call(&p, budget / 2) / 1e9);
        fflush(stdout);
        free(a);
        free(b);
        free(c);
    }
    return 0;
}
