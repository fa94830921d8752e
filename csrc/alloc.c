/* alloc.c — the engine's memory and log hooks, and a cache of large blocks.
 *
 * All engine allocations go through kdx__malloc/kdx__free so that a host can
 * route them elsewhere. With the default allocator, blocks of 64 KiB and more
 * are kept in a small size-class cache when freed: a training step frees and
 * reallocates the same activation sizes every time, and handing them back to
 * the kernel meant a page fault and a page clear for every page, every step
 * (a fifth of a CNN step's time). The cache holds at most a set number of
 * bytes (kdx_set_cache_limit) and never changes a result. */
#include "kdx_internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kdx_alloc_fn alloc_fn;
static void *alloc_ud;
static kdx_log_fn log_fn;
static void *log_ud;

#define CACHE_MIN ((size_t)64 << 10)
#define CACHE_CLASSES 96
#define CACHE_PER_CLASS 8

static struct {
    pthread_mutex_t lock;
    size_t limit, held;
    int count[CACHE_CLASSES];
    void *blocks[CACHE_CLASSES][CACHE_PER_CLASS];
} cache = {PTHREAD_MUTEX_INITIALIZER, (size_t)256 << 20, 0, {0}, {{0}}};

/* Size classes: four per power of two (waste under 25%). *bytes gets the
   class's size; -1 for sizes the cache does not take. */
static int size_class(size_t n, size_t *bytes)
{
    if (n < CACHE_MIN || n > ((size_t)1 << 40)) return -1;
    int e = 63 - __builtin_clzll((unsigned long long)n); /* 2^e <= n */
    size_t base = (size_t)1 << e, step = base >> 2;
    size_t k = (n - base + step - 1) / step;             /* 0..4 */
    size_t size = base + k * step;
    int c = (e - 16) * 4 + (int)k;
    if (c < 0 || c >= CACHE_CLASSES) return -1;
    *bytes = size;
    return c;
}

static void *cache_take(int c, size_t bytes)
{
    void *p = NULL;
    pthread_mutex_lock(&cache.lock);
    if (cache.count[c] > 0) {
        p = cache.blocks[c][--cache.count[c]];
        cache.held -= bytes;
    }
    pthread_mutex_unlock(&cache.lock);
    return p;
}

/* Keeps p if there is room; returns whether it did. */
static bool cache_put(int c, void *p, size_t bytes)
{
    bool kept = false;
    pthread_mutex_lock(&cache.lock);
    if (cache.count[c] < CACHE_PER_CLASS && cache.held + bytes <= cache.limit) {
        cache.blocks[c][cache.count[c]++] = p;
        cache.held += bytes;
        kept = true;
    }
    pthread_mutex_unlock(&cache.lock);
    return kept;
}

void kdx_cache_clear(void)
{
    pthread_mutex_lock(&cache.lock);
    for (int c = 0; c < CACHE_CLASSES; c++) {
        while (cache.count[c] > 0) free(cache.blocks[c][--cache.count[c]]);
    }
    cache.held = 0;
    pthread_mutex_unlock(&cache.lock);
}

void kdx_set_cache_limit(size_t bytes)
{
    kdx_cache_clear();
    pthread_mutex_lock(&cache.lock);
    cache.limit = bytes;
    pthread_mutex_unlock(&cache.lock);
}

size_t kdx_cache_bytes(void)
{
    pthread_mutex_lock(&cache.lock);
    size_t n = cache.held;
    pthread_mutex_unlock(&cache.lock);
    return n;
}

void kdx_set_allocator(kdx_alloc_fn fn, void *ud)
{
    kdx_cache_clear(); /* its blocks came from malloc */
    alloc_fn = fn;
    alloc_ud = ud;
}

void kdx_set_log(kdx_log_fn fn, void *ud)
{
    log_fn = fn;
    log_ud = ud;
}

static void *get(size_t n, bool zero)
{
    if (n == 0) n = 1; /* a valid, unique pointer even for empty tensors */
    if (alloc_fn) {
        void *p = alloc_fn(alloc_ud, NULL, 0, n);
        if (p && zero) memset(p, 0, n);
        return p;
    }
    size_t bytes;
    int c = size_class(n, &bytes);
    if (c < 0) return zero ? calloc(1, n) : malloc(n);
    void *p = cache_take(c, bytes);
    if (p) {
        if (zero) memset(p, 0, n);
        return p;
    }
    return zero ? calloc(1, bytes) : malloc(bytes);
}

void *kdx__malloc(size_t n) { return get(n, true); }

void *kdx__malloc_raw(size_t n) { return get(n, false); }

void kdx__free(void *p, size_t n)
{
    if (!p) return;
    if (alloc_fn) {
        alloc_fn(alloc_ud, p, n ? n : 1, 0);
        return;
    }
    size_t bytes;
    int c = size_class(n ? n : 1, &bytes);
    if (c >= 0 && cache_put(c, p, bytes)) return;
    free(p);
}

void kdx__log(kdx_log_level level, const char *fmt, ...)
{
    if (!log_fn) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_fn(log_ud, level, buf);
}
