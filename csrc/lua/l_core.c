/* l_core.c — luaopen_kdx_core: the module table, the tensor metatable, and
   per-state things (the generator). Sets no globals: two Lua states in one
   process each get their own generator and share nothing mutable. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "kdx_lua.h"

#include <time.h>

static const char GEN_KEY = 'g'; /* registry key: the address is what matters */

static int l_generator_gc(lua_State *L)
{
    kdx_generator **g = lua_touserdata(L, 1);
    kdx_generator_free(*g);
    *g = NULL;
    return 0;
}

kdx_generator *kdxL_generator(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &GEN_KEY);
    kdx_generator **g = lua_touserdata(L, -1);
    lua_pop(L, 1); /* the registry keeps it alive */
    return g ? *g : kdx_default_generator();
}

static void new_generator(lua_State *L)
{
    kdx_generator **g = lua_newuserdatauv(L, sizeof *g, 0);
    *g = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_generator_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    if (kdx_generator_new(0x6b6478, g) != KDX_OK) luaL_error(L, "kdx: %s", kdx_last_error());
    lua_rawsetp(L, LUA_REGISTRYINDEX, &GEN_KEY);
}

static int l_manual_seed(lua_State *L)
{
    lua_Integer seed = kdxL_checkint(L, 1, "manual_seed", "seed");
    kdx_generator_seed(kdxL_generator(L), (uint64_t)seed);
    return 0;
}

/* get_rng_state() -> table of 6 integers; set_rng_state(t) restores it. */
static int l_get_rng_state(lua_State *L)
{
    uint64_t st[6];
    kdx_generator_get_state(kdxL_generator(L), st);
    lua_createtable(L, 6, 0);
    for (int i = 0; i < 6; i++) {
        lua_pushinteger(L, (lua_Integer)st[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_set_rng_state(lua_State *L)
{
    kdxL_checktable(L, 1, "set_rng_state", "state");
    uint64_t st[6];
    for (int i = 0; i < 6; i++) {
        lua_rawgeti(L, 1, i + 1);
        if (!lua_isinteger(L, -1)) return luaL_error(L, "kdx.set_rng_state: expected a table of 6 integers");
        st[i] = (uint64_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    kdx_generator_set_state(kdxL_generator(L), st);
    return 0;
}

static int l_set_num_threads(lua_State *L)
{
    lua_Integer n = kdxL_checkint(L, 1, "set_num_threads", "n");
    if (n < 1 || n > 4096) return luaL_error(L, "kdx.set_num_threads: n must be in [1, 4096], got %I", (LUAI_UACINT)n);
    kdx_set_num_threads((int)n);
    return 0;
}

static int l_get_num_threads(lua_State *L)
{
    lua_pushinteger(L, kdx_get_num_threads());
    return 1;
}

/* Seconds on a monotonic wall clock (for timing; os.clock is CPU time summed over threads). */
static int l_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

static int l_live_tensors(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)kdx_debug_live_tensors());
    return 1;
}

static int l_empty_cache(lua_State *L)
{
    (void)L;
    kdx_cache_clear();
    return 0;
}

static int l_set_cache_limit(lua_State *L)
{
    lua_Integer n = kdxL_checkint(L, 1, "set_cache_limit", "bytes");
    if (n < 0) return luaL_error(L, "kdx.set_cache_limit: bytes must be >= 0, got %I", n);
    kdx_set_cache_limit((size_t)n);
    return 0;
}

static int l_set_cache_min(lua_State *L)
{
    lua_Integer n = kdxL_checkint(L, 1, "set_cache_min", "bytes");
    if (n < 0) return luaL_error(L, "kdx.set_cache_min: bytes must be >= 0, got %I", n);
    kdx_set_cache_min((size_t)n);
    return 0;
}

static int l_cache_bytes(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)kdx_cache_bytes());
    return 1;
}

int luaopen_kdx_core(lua_State *L);

int luaopen_kdx_core(lua_State *L)
{
    new_generator(L);
    lua_newtable(L); /* module */
    int mod = lua_gettop(L);
    luaL_newmetatable(L, KDXL_TENSOR);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &kdxL_tensor_mt_key);
    lua_newtable(L); /* methods */
    int methods = lua_gettop(L);
    lua_pushvalue(L, methods);
    lua_setfield(L, -3, "__index");
    lua_pushliteral(L, "kdx.Tensor");
    lua_setfield(L, -3, "__name");

    lua_pushvalue(L, mod);
    kdxL_open_tensor(L, methods);
    kdxL_open_ops(L, methods);
    kdxL_open_nn(L, methods);
    kdxL_open_autograd(L, methods);
    kdxL_open_io(L, methods);
    kdxL_open_optim(L, methods);
    kdxL_open_explain(L, methods);
    kdxL_open_modrules(L, methods);
    kdxL_open_explain_layer(L, methods);
    kdxL_open_explain_lrp(L, methods);
    kdxL_open_explain_surrogate(L, methods);
    kdxL_open_explain_metrics(L, methods);
    kdxL_open_data(L, methods);
    kdxL_open_augment(L, methods);
    kdxL_open_image(L, methods);
    kdxL_open_distill(L, methods);
    kdxL_open_explain_perturb(L, methods);
    kdxL_open_surrogate(L, methods);
    lua_pop(L, 1);

    static const luaL_Reg fns[] = {
        {"manual_seed", l_manual_seed}, {"get_rng_state", l_get_rng_state}, {"set_rng_state", l_set_rng_state},
        {"set_num_threads", l_set_num_threads}, {"get_num_threads", l_get_num_threads},
        {"live_tensors", l_live_tensors}, {"clock", l_clock}, {"empty_cache", l_empty_cache},
        {"set_cache_limit", l_set_cache_limit}, {"set_cache_min", l_set_cache_min}, {"cache_bytes", l_cache_bytes}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);

    /* The metatable and methods table, for lua/kdx/init.lua to extend. */
    lua_pushvalue(L, methods);
    lua_setfield(L, mod, "_methods");
    lua_pushvalue(L, methods - 1);
    lua_setfield(L, mod, "_meta");
    lua_pushliteral(L, KDX_VERSION);
    lua_setfield(L, mod, "_VERSION");
    lua_settop(L, mod);
    return 1;
}
