/* parallel.c — the engine's thread count and its one parallel-loop helper,
 * over a small pool of its own.
 *
 * Why not OpenMP: libgomp's workers spin after every parallel region, and
 * next to OpenBLAS's threads and the caller on a 2-core machine that spinning
 * took the cores from the thread with work to do (a CNN training step ran 4x
 * slower than on one thread). This pool spins only briefly, then sleeps on a
 * condition variable. One job runs at a time; a caller that finds the pool
 * busy (another thread, or a nested loop) runs its loop on its own thread. */
#define _POSIX_C_SOURCE 200809L
#include "kdx_internal.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

/* Atomics: several lua_States in several threads each call set_num_threads
   (ThreadSanitizer saw the plain int race). Relaxed: a count, no ordering. */
static atomic_int num_threads; /* 0 until set: use the machine's core count */
static atomic_int core_count;  /* asked once (every thread would store the same value) */

void kdx_set_num_threads(int n)
{
    if (n < 1) n = 1;
    if (n > 256) n = 256;
    atomic_store_explicit(&num_threads, n, memory_order_relaxed); /* OpenBLAS stays single-threaded: see blas.c */
}

int kdx_get_num_threads(void)
{
    int n = atomic_load_explicit(&num_threads, memory_order_relaxed);
    if (n > 0) return n;
    int c = atomic_load_explicit(&core_count, memory_order_relaxed);
    if (c == 0) {
        long k = sysconf(_SC_NPROCESSORS_ONLN);
        c = k > 0 ? (int)(k > 256 ? 256 : k) : 1;
        atomic_store_explicit(&core_count, c, memory_order_relaxed);
    }
    return c;
}

/* ---- the pool ---- */

typedef struct pool {
    pthread_mutex_t lock;     /* guards everything below but the atomics */
    pthread_cond_t wake, done;
    int nworkers;             /* threads started (they never exit) */
    unsigned long generation; /* bumped for every job */
    /* the current job */
    kdx__range_fn fn;
    void *ud;
    int64_t n, chunks;
    atomic_long next;         /* next chunk to take */
    atomic_long left;         /* chunks not finished */
    int want;                 /* workers asked to help with this job (0 once it is over) */
    int active;               /* workers inside run_chunks: a job ends when they are out */
} pool;

static pool P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0,
                 NULL, NULL, 0, 0, 0, 0, 0, 0};
static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static _Thread_local bool in_job;                            /* this thread runs part of a job */

/* Takes and runs chunks of the current job until none are left. */
static void run_chunks(void)
{
    for (;;) {
        int64_t c = atomic_fetch_add(&P.next, 1);
        if (c >= P.chunks) return;
        P.fn(P.ud, P.n * c / P.chunks, P.n * (c + 1) / P.chunks);
        if (atomic_fetch_sub(&P.left, 1) == 1) {
            pthread_mutex_lock(&P.lock);
            pthread_cond_signal(&P.done);
            pthread_mutex_unlock(&P.lock);
        }
    }
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned long seen = 0;
    in_job = true;
    for (;;) {
        /* A short spin catches jobs that follow each other closely. */
        for (int spin = 0; spin < 2000 && __atomic_load_n(&P.generation, __ATOMIC_ACQUIRE) == seen; spin++)
            sched_yield();
        pthread_mutex_lock(&P.lock);
        while (P.generation == seen) pthread_cond_wait(&P.wake, &P.lock);
        seen = P.generation;
        bool help = id < P.want;
        if (help) P.active++;
        pthread_mutex_unlock(&P.lock);
        if (help) {
            run_chunks();
            pthread_mutex_lock(&P.lock);
            if (--P.active == 0) pthread_cond_signal(&P.done);
            pthread_mutex_unlock(&P.lock);
        }
    }
    return NULL;
}

/* Starts workers up to n (fewer if the system refuses threads). */
static void grow_pool(int n)
{
    while (P.nworkers < n) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int r = pthread_create(&t, &attr, worker, (void *)(intptr_t)P.nworkers);
        pthread_attr_destroy(&attr);
        if (r != 0) {
            kdx__log(KDX_LOG_WARN, "parallel: could not start a worker thread; running with %d", P.nworkers + 1);
            return;
        }
        P.nworkers++;
    }
}

void kdx__parallel_for(int64_t n, int64_t grain, kdx__range_fn fn, void *ud)
{
    if (n <= 0) return;
    int nt = kdx_get_num_threads();
    if (grain < 1) grain = 1;
    int64_t chunks = n / grain < nt ? n / grain : nt;
    if (chunks < 2) {
        fn(ud, 0, n);
        return;
    }
    if (in_job || pthread_mutex_trylock(&job_lock) != 0) {
        /* The pool is busy (another thread's job, or a nested loop): run the
           same chunks here, one after another. The same split as with the
           pool gives the same results, bit for bit: a kernel that sums per
           chunk does not see its rounding change with what other threads
           (or other lua_States) are doing. */
        for (int64_t c = 0; c < chunks; c++) fn(ud, n * c / chunks, n * (c + 1) / chunks);
        return;
    }
    pthread_mutex_lock(&P.lock);
    grow_pool((int)chunks - 1);
    P.fn = fn, P.ud = ud, P.n = n, P.chunks = chunks;
    atomic_store(&P.next, 0);
    atomic_store(&P.left, chunks);
    P.want = (int)chunks - 1;
    __atomic_store_n(&P.generation, P.generation + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.lock);
    in_job = true;
    run_chunks();
    in_job = false;
    /* Wait for the chunks and for every helper to leave run_chunks: a helper
       still reading P.chunks or P.fn while the next job writes them ran a
       chunk twice or with the wrong function (ThreadSanitizer found it). A
       helper that wakes after this sees want == 0 and stays out. */
    pthread_mutex_lock(&P.lock);
    while (atomic_load(&P.left) > 0 || P.active > 0) pthread_cond_wait(&P.done, &P.lock);
    P.want = 0;
    pthread_mutex_unlock(&P.lock);
    pthread_mutex_unlock(&job_lock);
}
