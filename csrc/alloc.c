/* alloc.c — the engine's memory and log hooks. All engine allocations go
   through kdx__malloc/kdx__free so that a host can route them elsewhere. */
#include "kdx_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kdx_alloc_fn alloc_fn;
static void *alloc_ud;
static kdx_log_fn log_fn;
static void *log_ud;

void kdx_set_allocator(kdx_alloc_fn fn, void *ud)
{
    alloc_fn = fn;
    alloc_ud = ud;
}

void kdx_set_log(kdx_log_fn fn, void *ud)
{
    log_fn = fn;
    log_ud = ud;
}

void *kdx__malloc(size_t n)
{
    if (n == 0) n = 1; /* a valid, unique pointer even for empty tensors */
    if (alloc_fn) {
        void *p = alloc_fn(alloc_ud, NULL, 0, n);
        if (p) memset(p, 0, n);
        return p;
    }
    return calloc(1, n);
}

void *kdx__malloc_raw(size_t n)
{
    if (n == 0) n = 1;
    return alloc_fn ? alloc_fn(alloc_ud, NULL, 0, n) : malloc(n);
}

void kdx__free(void *p, size_t n)
{
    if (!p) return;
    if (alloc_fn) alloc_fn(alloc_ud, p, n ? n : 1, 0);
    else free(p);
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
