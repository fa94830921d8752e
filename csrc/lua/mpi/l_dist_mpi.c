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

/* sum_context() -> the light userdata kdx.batch_norm_sync takes to sum over the processes */
static int l_sum_context(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)kdx_dist_sum());
    return 1;
}

/* ---- kdx.dist reducer: userdata holding a kdx_dist_reducer ---- */

#define REDUCER "kdx.dist.Reducer"

static kdx_dist_reducer **checkreducer(lua_State *L)
{
    kdx_dist_reducer **box = luaL_checkudata(L, 1, REDUCER);
    if (!*box) luaL_error(L, "kdx.dist.reducer: the reducer was freed");
    return box;
}

/* reducer(params, bucket_bytes) */
static int l_reducer(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer cap = luaL_checkinteger(L, 2);
    int n = (int)luaL_len(L, 1);
    if (n > 10000000) return luaL_error(L, "kdx.dist.reducer: %d parameters is too many", n);
    kdx_tensor **ps = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *ps, 0);
    for (int i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        ps[i - 1] = kdxL_checktensor(L, -1, "dist.reducer");
        lua_pop(L, 1);
    }
    kdx_dist_reducer **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, REDUCER);
    kdxL_checkas(L, kdx_dist_reducer_new(ps, n, (int64_t)cap, box), "dist.reducer");
    return 1;
}

static int l_reducer_gc(lua_State *L)
{
    kdx_dist_reducer **box = luaL_checkudata(L, 1, REDUCER);
    kdx_dist_reducer_free(*box);
    *box = NULL;
    return 0;
}

static int l_reducer_begin(lua_State *L)
{
    kdx_dist_reducer **box = checkreducer(L);
    kdxL_checkas(L, kdx_dist_reducer_begin(*box, luaL_checknumber(L, 2)), "dist.reducer.begin");
    return 0;
}

static int l_reducer_backward(lua_State *L)
{
    kdx_dist_reducer **box = checkreducer(L);
    kdx_tensor *loss = kdxL_checktensor(L, 2, "dist.reducer.backward");
    kdxL_checkas(L, kdx_dist_reducer_backward(*box, loss), "dist.reducer.backward");
    return 0;
}

/* finish({extra numbers}) -> total rows, {summed extras} */
static int l_reducer_finish(lua_State *L)
{
    kdx_dist_reducer **box = checkreducer(L);
    int n = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        n = (int)luaL_len(L, 2);
    }
    if (n > 1000000) return luaL_error(L, "kdx.dist.reducer.finish: %d extra numbers is too many", n);
    double *io = lua_newuserdatauv(L, (size_t)(2 * n + 1) * sizeof *io, 0);
    for (int k = 1; k <= n; k++) {
        lua_geti(L, 2, k);
        int ok = 0;
        io[k - 1] = lua_tonumberx(L, -1, &ok);
        if (!ok) return luaL_error(L, "kdx.dist.reducer.finish: extra[%d] must be a number", k);
        lua_pop(L, 1);
    }
    double total = 0;
    kdxL_checkas(L, kdx_dist_reducer_finish(*box, io, n, &total, io + n), "dist.reducer.finish");
    lua_pushnumber(L, total);
    lua_createtable(L, n, 0);
    for (int k = 0; k < n; k++) {
        lua_pushnumber(L, io[n + k]);
        lua_rawseti(L, -2, k + 1);
    }
    return 2;
}

/* counts() -> buckets, buckets sent during the last backward */
static int l_reducer_counts(lua_State *L)
{
    kdx_dist_reducer **box = checkreducer(L);
    int nb = 0, early = 0;
    kdx_dist_reducer_counts(*box, &nb, &early);
    lua_pushinteger(L, nb);
    lua_pushinteger(L, early);
    return 2;
}

int luaopen_kdx_dist_mpi(lua_State *L)
{
    static const luaL_Reg methods[] = {{"begin", l_reducer_begin}, {"backward", l_reducer_backward},
                                       {"finish", l_reducer_finish}, {"counts", l_reducer_counts}, {NULL, NULL}};
    if (luaL_newmetatable(L, REDUCER)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_reducer_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"init", l_init}, {"finalize", l_finalize}, {"rank", l_rank}, {"size", l_size},
        {"barrier", l_barrier}, {"allreduce", l_allreduce}, {"broadcast", l_broadcast},
        {"allgather", l_allgather}, {"allreduce_many", l_allreduce_many}, {"reducer", l_reducer}, {"sum_context", l_sum_context}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
