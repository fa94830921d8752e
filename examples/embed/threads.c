/* threads.c — several lua_States in several threads at once, each with its
 * own kdx models, give the results of the same states run one at a time.
 *
 *   threads LUA_DIR SCRIPT [NTHREADS [ENGINE_THREADS]]
 *
 * SCRIPT (examples/embed/threads.lua) trains and runs a small model from a
 * seed and returns a string of its results. Each state runs it with seed
 * 1..NTHREADS (default 4): first one after another, then all at once, one
 * pthread per state. ENGINE_THREADS (default 1) is what each script passes to
 * kdx.set_num_threads: above 1 the states also share the engine's pool. Every concurrent result must equal its sequential one.
 * `make tsan` runs this under ThreadSanitizer. Prints "threads: N passed, M failed". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "kdx.h"

int luaopen_kdx_core(lua_State *L);

#define MAX_THREADS 16

typedef struct job {
    const char *lua_dir, *script;
    int seed, engine_threads;
    char *result; /* malloc'd; NULL on failure */
    char error[512];
} job;

/* One state from start to close: its own allocator (the default), its own
   kdx generator, its own models. */
static void *run(void *arg)
{
    job *j = arg;
    j->result = NULL;
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(j->error, sizeof j->error, "no lua_State");
        return NULL;
    }
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_kdx_core);
    lua_setfield(L, -2, "kdx.core");
    lua_pop(L, 1);
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", j->lua_dir, j->lua_dir);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    if (luaL_loadfile(L, j->script) != LUA_OK) goto fail;
    lua_pushinteger(L, j->seed);
    lua_pushinteger(L, j->engine_threads);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) goto fail;
    const char *s = lua_tostring(L, -1);
    if (s) {
        j->result = malloc(strlen(s) + 1);
        if (j->result) strcpy(j->result, s);
    }
    lua_close(L);
    return NULL;
fail:
    snprintf(j->error, sizeof j->error, "%s", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: threads LUA_DIR SCRIPT [NTHREADS [ENGINE_THREADS]]\n");
        return 1;
    }
    int n = argc > 3 ? atoi(argv[3]) : 4;
    int engine_threads = argc > 4 ? atoi(argv[4]) : 1;
    if (n < 1 || n > MAX_THREADS) n = 4;
    kdx_set_num_threads(engine_threads); /* before any state starts; each script sets it again */

    job seq[MAX_THREADS], par[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    for (int i = 0; i < n; i++) {
        seq[i] = (job){argv[1], argv[2], i + 1, engine_threads, NULL, ""};
        par[i] = seq[i];
        run(&seq[i]);
    }
    int started[MAX_THREADS] = {0};
    for (int i = 0; i < n; i++) started[i] = pthread_create(&tid[i], NULL, run, &par[i]) == 0;
    for (int i = 0; i < n; i++)
        if (started[i]) pthread_join(tid[i], NULL);

    int passed = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        int ok = started[i] && seq[i].result && par[i].result && strcmp(seq[i].result, par[i].result) == 0;
        /* different seeds must give different results, or the check proves nothing */
        if (ok && i > 0) ok = strcmp(seq[i].result, seq[0].result) != 0;
        if (ok) passed++;
        else {
            failed++;
            fprintf(stderr, "state %d: %s | %s\n", i + 1, seq[i].result ? "ok" : seq[i].error,
                    par[i].result ? (seq[i].result && strcmp(seq[i].result, par[i].result) == 0 ? "same" : "DIFFERS")
                                  : par[i].error);
        }
        if (seq[i].result && i == 0) printf("state 1: %.60s...\n", seq[i].result);
    }
    for (int i = 0; i < n; i++) {
        free(seq[i].result);
        free(par[i].result);
    }
    printf("threads: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
