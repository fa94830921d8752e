/* host.c — a C host that embeds Lua and kdx the way an engine would: its own
 * lua_State (with its own allocator), kdx's C module preloaded statically
 * (package.preload, no core.so on disk), a script that loads a trained
 * student, and a frame loop that calls it once per frame within a budget.
 *
 *   host LUA_DIR SCRIPT MODEL IMAGES [FRAMES [BUDGET_US [WARMUP [REUSE]]]]
 *
 * LUA_DIR is the folder holding the kdx Lua files (the source tree's lua/, or an
 * installed share/lua/5.4). Defaults: 10000 frames, a 1000 us budget, 1000
 * frames of warm-up, REUSE 1 (kdx_set_cache_min(0): the inference-only mode;
 * 0 keeps the default, to measure the difference). Prints, as "key value" lines: the first predictions,
 * latency p50/p99/max, frames over budget, the process RSS at the end of the
 * warm-up and at the last frame, and the allocations per frame after warm-up
 * of the engine (through kdx_set_allocator) and of Lua (its lua_Alloc). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "kdx.h"

int luaopen_kdx_core(lua_State *L); /* linked in statically from csrc/lua/ */

/* A counting allocator with lua_Alloc's contract, used for both Lua and kdx. */
typedef struct counter {
    unsigned long long allocs, frees;
    long long live;
} counter;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counter *c = ud;
    if (nsize == 0) {
        if (ptr) {
            c->frees++;
            c->live -= (long long)osize;
        }
        free(ptr);
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p) {
        c->allocs++;
        c->live += (long long)nsize - (ptr ? (long long)osize : 0);
    }
    return p;
}

static void log_to_stderr(void *ud, kdx_log_level level, const char *msg)
{
    (void)ud;
    fprintf(stderr, "kdx[%d]: %s\n", (int)level, msg);
}

static long rss_kb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: host LUA_DIR SCRIPT MODEL IMAGES [FRAMES [BUDGET_US [WARMUP [REUSE]]]]\n");
        return 1;
    }
    long frames = argc > 5 ? atol(argv[5]) : 10000;
    double budget = argc > 6 ? atof(argv[6]) : 1000;
    long warmup = argc > 7 ? atol(argv[7]) : 1000;
    int reuse = argc > 8 ? atoi(argv[8]) : 1;
    if (frames < 1 || warmup < 1 || warmup >= frames) {
        fprintf(stderr, "host: need 1 <= WARMUP < FRAMES\n");
        return 1;
    }

    /* Hooks first, before the engine makes anything. */
    static counter engine_mem, lua_mem;
    kdx_set_allocator(counting_alloc, &engine_mem);
    kdx_set_log(log_to_stderr, NULL);
    kdx_set_num_threads(1);
    if (reuse) kdx_set_cache_min(0); /* inference-only mode: every freed block is kept for reuse */

    lua_State *L = lua_newstate(counting_alloc, &lua_mem);
    if (!L) return 1;
    luaL_openlibs(L);
    /* Generational GC: a frame's temporaries die young and are collected
       (and their engine blocks released for reuse) within a few frames. */
    lua_gc(L, LUA_GCGEN, 0, 0);

    /* package.preload["kdx.core"] = luaopen_kdx_core; package.path = LUA_DIR/?.lua;... */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_kdx_core);
    lua_setfield(L, -2, "kdx.core");
    lua_pop(L, 1);
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", argv[1], argv[1]);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, ""); /* no C modules from disk: kdx.core is the preloaded one */
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);

    int rc = 1;
    double *lat = malloc((size_t)frames * sizeof *lat);
    if (!lat) goto done;
    memset(lat, 0, (size_t)frames * sizeof *lat); /* touched now, so the RSS readings don't see it grow */
    if (luaL_loadfile(L, argv[2]) != LUA_OK) goto lua_error;
    lua_pushstring(L, argv[3]);
    lua_pushstring(L, argv[4]);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) goto lua_error;
    if (!lua_isfunction(L, -1)) {
        fprintf(stderr, "host: %s must return the frame function\n", argv[2]);
        goto done;
    }
    int frame_fn = luaL_ref(L, LUA_REGISTRYINDEX);

    struct rusage ru0, ru1; /* involuntary context switches: frames lost to other processes */
    getrusage(RUSAGE_SELF, &ru0);
    long over = 0, rss_warm = 0;
    unsigned long long e_warm = 0, l_warm = 0;
    long long e_live_warm = 0, l_live_warm = 0;
    for (long i = 1; i <= frames; i++) {
        double t0 = now_us();
        lua_rawgeti(L, LUA_REGISTRYINDEX, frame_fn);
        lua_pushinteger(L, i);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) goto lua_error;
        lua_Integer cls = lua_tointeger(L, -1);
        lua_pop(L, 1);
        lua_gc(L, LUA_GCSTEP, 0); /* the frame's share of GC: its garbage tensors go back to the engine */
        double dt = now_us() - t0;
        lat[i - 1] = dt;
        over += dt > budget;
        if (i <= 64) printf("pred %ld %lld\n", i, (long long)cls);
        if (i == warmup) {
            rss_warm = rss_kb();
            e_warm = engine_mem.allocs;
            l_warm = lua_mem.allocs;
            e_live_warm = engine_mem.live;
            l_live_warm = lua_mem.live;
        }
    }
    long rss_end = rss_kb();
    getrusage(RUSAGE_SELF, &ru1);
    double per = (double)(frames - warmup);
    printf("engine_allocs_per_frame %.3f\n", (double)(engine_mem.allocs - e_warm) / per);
    printf("lua_allocs_per_frame %.3f\n", (double)(lua_mem.allocs - l_warm) / per);
    printf("engine_live_bytes %lld %lld\n", e_live_warm, engine_mem.live);
    printf("lua_live_bytes %lld %lld\n", l_live_warm, lua_mem.live);
    qsort(lat, (size_t)frames, sizeof *lat, cmp_double);
    printf("frames %ld\n", frames);
    printf("latency_us p50 %.1f p99 %.1f max %.1f\n", lat[(frames - 1) / 2], lat[(frames * 99 - 1) / 100],
           lat[frames - 1]);
    printf("over_budget %ld of %ld (budget %.0f us)\n", over, frames, budget);
    printf("rss_kb %ld %ld\n", rss_warm, rss_end);
    printf("involuntary_context_switches %ld\n", ru1.ru_nivcsw - ru0.ru_nivcsw);
    luaL_unref(L, LUA_REGISTRYINDEX, frame_fn);
    rc = 0;
    goto done;
lua_error:
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
done:
    free(lat);
    lua_close(L);
    kdx_cache_clear(); /* hand the kept blocks back to the host's allocator */
    printf("engine_live_after_close %lld\n", engine_mem.live);
    return rc;
}
