/* kdx.dist_mpi: the Lua face of csrc/mpi/dist_mpi.c. Loaded by lua/kdx/dist.lua
   after kdx/core.so was made global, whose kdx_* and kdxL_* it uses. */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "../../mpi/dist_mpi.h"
#include "../kdx_lua.h"

int luaopen_kdx_dist_mpi(lua_State *L);

static int l_init(lua_State *L) { kdxL_checkas(L, kdx_dist_init(), "dist.init"); return 0; }
static int l_finalize(lua_State *L) { kdxL_checkas(L, kdx_dist_finalize(), "dist.finalize"); return 0; }
static int l_rank(lua_State *L) { lua_pushinteger(L, kdx_dist_rank()); return 1; }
static int l_size(lua_State *L) { lua_pushinteger(L, kdx_dist_size()); return 1; }
static int l_barrier(lua_State *L) { kdxL_checkas(L, kdx_dist_barrier(), "dist.barrier"); return 0; }

static kdx_dist_op checkop(lua_State *L, int i, const char *fname)
{
    const char *op = luaL_optstring(L, i, "sum");
    if (!strcmp(op, "sum")) return KDX_DIST_SUM;
    if (!strcmp(op, "mean")) return KDX_DIST_MEAN;
    if (!strcmp(op, "max")) return KDX_DIST_MAX;
    if (!strcmp(op, "min")) return KDX_DIST_MIN;
    return (kdx_dist_op)luaL_error(L, "kdx.%s: op must be 'sum', 'mean', 'max' or 'min', got '%s'", fname, op);
}

/* allreduce_many({t1, t2, ...}, op): every tensor reduced in place, all in flight at once. */
static int l_allreduce_many(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    kdx_dist_op o = checkop(L, 2, "dist.allreduce_all");
    int n = (int)luaL_len(L, 1);
    if (n > 100000) return luaL_error(L, "kdx.dist.allreduce_all: %d tensors is too many", n);
    kdx_tensor **ts = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *ts, 0);
    for (int i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        ts[i - 1] = kdxL_checktensor(L, -1, "dist.allreduce_all");
        lua_pop(L, 1); /* the table keeps the tensor alive */
    }
    kdxL_checkas(L, kdx_dist_allreduce_many(ts, n, o), "dist.allreduce_all");
    lua_settop(L, 1);
    return 1;
}

static int l_allreduce(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "dist.allreduce");
    kdxL_checkas(L, kdx_dist_allreduce(t, checkop(L, 2, "dist.allreduce")), "dist.allreduce");
    lua_settop(L, 1);
    return 1;
}

static int l_broadcast(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "dist.broadcast");
    lua_Integer root = luaL_optinteger(L, 2, 0);
    kdxL_checkas(L, kdx_dist_broadcast(t, (int)root), "dist.broadcast");
    lua_settop(L, 1);
    return 1;
}

static int l_allgather(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "dist.allgather");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_dist_allgather(t, box), "dist.allgather");
    return 1;
}

int luaopen_kdx_dist_mpi(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"init", l_init}, {"finalize", l_finalize}, {"rank", l_rank}, {"size", l_size},
        {"barrier", l_barrier}, {"allreduce", l_allreduce}, {"broadcast", l_broadcast},
        {"allgather", l_allgather}, {"allreduce_many", l_allreduce_many}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
