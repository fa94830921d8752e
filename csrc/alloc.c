/* alloc.c — the engine's memory and log hooks, and a cache of large blocks.
 *
 * All engine allocations go through kdx__malloc/kdx__free so that a host can
 * route them elsewhere. Blocks of 64 KiB and more (every size after
 * kdx_set_cache_min(0)) are kept in a size-class cache when freed, in front of
 * whichever allocator is installed: a training step frees and
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

#define CACHE_CLASSES 148      /* 16 B .. 1 TiB, four classes per power of two */
#define LARGE_CLASS 48          /* class of 64 KiB: the default smallest kept block */
#define LARGE_PER_CLASS 8       /* kept blocks per class of 64 KiB and more */
#define SMALL_PER_CLASS 4096    /* per smaller class (kdx_set_cache_min below 64 KiB) */

/* Kept blocks are chained through their first word. */
typedef struct kept {
    struct kept *next;
} kept;

static struct {
    pthread_mutex_t lock;
    size_t limit, held;
    int count[CACHE_CLASSES];
    kept *blocks[CACHE_CLASSES];
} cache = {PTHREAD_MUTEX_INITIALIZER, (size_t)256 << 20, 0, {0}, {0}};

/* The smallest block the cache keeps (kdx_set_cache_min). Read without the
   lock on every allocation, so atomic. */
static _Atomic size_t cache_min = (size_t)64 << 10;

/* Size classes: four per power of two (waste under 25%), from 16 bytes. Every
   block of 16 B .. 1 TiB is allocated at its class's size (*bytes), whether
   or not the cache keeps that class now, so that a block can be kept (or
   handed to the host allocator with the right size) whatever the settings
   were when it was made. -1 for sizes beyond 1 TiB. */
static int size_class(size_t n, size_t *bytes)
{
    if (n > ((size_t)1 << 40)) return -1;
    if (n < 16) n = 16;
    int e = 63 - __builtin_clzll((unsigned long long)n); /* 2^e <= n */
    size_t base = (size_t)1 << e, step = base >> 2;
    size_t k = (n - base + step - 1) / step;             /* 0..4 */
    size_t size = base + k * step;
    int c = (e - 4) * 4 + (int)k;
    if (c < 0 || c >= CACHE_CLASSES) return -1;
    *bytes = size;
    return c;
}

static void *cache_take(int c, size_t bytes)
{
    kept *p = NULL;
    pthread_mutex_lock(&cache.lock);
    if (cache.count[c] > 0) {
        p = cache.blocks[c];
        cache.blocks[c] = p->next;
        cache.count[c]--;
        cache.held -= bytes;
    }
    pthread_mutex_unlock(&cache.lock);
    return p;
}

/* Keeps p if there is room; returns whether it did. */
static bool cache_put(int c, void *p, size_t bytes)
{
    bool ok = false;
    int cap = c >= LARGE_CLASS ? LARGE_PER_CLASS : SMALL_PER_CLASS;
    pthread_mutex_lock(&cache.lock);
    if (cache.count[c] < cap && cache.held + bytes <= cache.limit) {
        kept *k = p;
        k->next = cache.blocks[c];
        cache.blocks[c] = k;
        cache.count[c]++;
        cache.held += bytes;
        ok = true;
    }
    pthread_mutex_unlock(&cache.lock);
    return ok;
}

static void give_back(void *p, size_t bytes)
{
    if (alloc_fn) alloc_fn(alloc_ud, p, bytes, 0);
    else free(p);
}

/* The size of class c's blocks. */
static size_t class_bytes(int c)
{
    int e = c / 4 + 4, k = c % 4;
    size_t base = (size_t)1 << e;
    return base + (size_t)k * (base >> 2);
}

void kdx_cache_clear(void)
{
    pthread_mutex_lock(&cache.lock);
    for (int c = 0; c < CACHE_CLASSES; c++) {
        size_t bytes = class_bytes(c);
        while (cache.blocks[c]) {
            kept *p = cache.blocks[c];
            cache.blocks[c] = p->next;
            give_back(p, bytes);
        }
        cache.count[c] = 0;
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

void kdx_set_cache_min(size_t bytes)
{
    kdx_cache_clear();
    atomic_store(&cache_min, bytes);
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
    kdx_cache_clear(); /* its blocks came from the allocator being replaced */
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
    size_t bytes = n;
    int c = size_class(n, &bytes);
    if (c >= 0 && n >= atomic_load_explicit(&cache_min, memory_order_relaxed)) {
        void *p = cache_take(c, bytes);
        if (p) {
            if (zero) memset(p, 0, n);
            return p;
        }
    }
    if (alloc_fn) {
        void *p = alloc_fn(alloc_ud, NULL, 0, bytes);
        if (p && zero) memset(p, 0, n);
        return p;
    }
    return zero ? calloc(1, bytes) : malloc(bytes);
}

void *kdx__malloc(size_t n) { return get(n, true); }

void *kdx__malloc_raw(size_t n) { return get(n, false); }

void kdx__free(void *p, size_t n)
{
    if (!p) return;
    if (n == 0) n = 1;
    size_t bytes = n;
    int c = size_class(n, &bytes);
    if (c >= 0 && n >= atomic_load_explicit(&cache_min, memory_order_relaxed) && cache_put(c, p, bytes)) return;
    give_back(p, bytes);
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
