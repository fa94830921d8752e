/* clock.c — a monotonic wall clock for bench.lua. Lua's os.clock is CPU
   time summed over threads, useless for timing multithreaded kernels, and
   os.time counts whole seconds. Built by run.sh as <build>/bench/benchclock.so.

   local clock = require "benchclock"; clock.now() --> seconds, ns resolution */
#define _POSIX_C_SOURCE 199309L
#include <lauxlib.h>
#include <lua.h>
#include <time.h>

int luaopen_benchclock(lua_State *L);

static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + 1e-9 * (lua_Number)ts.tv_nsec);
    return 1;
}

int luaopen_benchclock(lua_State *L)
{
    static const luaL_Reg fns[] = {{"now", l_now}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
