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

static int l_allreduce(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "dist.allreduce");
    const char *op = luaL_optstring(L, 2, "sum");
    kdx_dist_op o;
    if (!strcmp(op, "sum")) o = KDX_DIST_SUM;
    else if (!strcmp(op, "mean")) o = KDX_DIST_MEAN;
    else if (!strcmp(op, "max")) o = KDX_DIST_MAX;
    else if (!strcmp(op, "min")) o = KDX_DIST_MIN;
    else return luaL_error(L, "kdx.dist.allreduce: op must be 'sum', 'mean', 'max' or 'min', got '%s'", op);
    kdxL_checkas(L, kdx_dist_allreduce(t, o), "dist.allreduce");
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
        {"allgather", l_allgather}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
