/* l_io.c — checkpoints from Lua: kdx.save(path, {name = tensor, ...}, meta)
   and kdx.load(path) -> tensors, meta, over the engine's safetensors reader
   and writer. Arrays handed to the engine live in userdata and the loaded
   file in a box with __gc, so an error raised at any point leaks nothing. */
#include "kdx_lua.h"

#include <string.h>

static const char ST_MT_KEY = 's'; /* registry key of the loaded-file box's metatable */

static const char *check_path(lua_State *L, const char *fname)
{
    if (lua_type(L, 1) != LUA_TSTRING)
        luaL_error(L, "kdx.%s: argument 1 (path) must be a string, got %s", fname, luaL_typename(L, 1));
    size_t len;
    const char *path = lua_tolstring(L, 1, &len);
    if (len == 0 || strlen(path) != len) luaL_error(L, "kdx.%s: the path must be a non-empty string without NULs", fname);
    return path;
}

/* The string key at -2 of a lua_next loop over what (for messages). */
static const char *check_key(lua_State *L, const char *what)
{
    if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "kdx.save: the keys of the %s table must be strings, got %s", what, luaL_typename(L, -2));
    size_t len;
    const char *k = lua_tolstring(L, -2, &len);
    if (strlen(k) != len) luaL_error(L, "kdx.save: a key of the %s table contains a NUL byte", what);
    return k;
}

static int count_entries(lua_State *L, int t)
{
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (n == 1 << 30) luaL_error(L, "kdx.save: too many entries");
        n++;
        lua_pop(L, 1);
    }
    return n;
}

/* kdx.save(path, tensors, metadata?): tensors maps names to tensors; metadata,
   if given, maps strings to strings. Replaces path atomically. */
static int l_save(lua_State *L)
{
    lua_settop(L, 3);
    const char *path = check_path(L, "save");
    kdxL_checktable(L, 2, "save", "tensors");
    if (!lua_isnil(L, 3)) kdxL_checktable(L, 3, "save", "metadata");
    int n = count_entries(L, 2), nmeta = lua_isnil(L, 3) ? 0 : count_entries(L, 3);
    /* The key strings stay alive as keys of the argument tables. */
    const char **names = lua_newuserdatauv(L, (size_t)n * sizeof *names + 1, 0);
    const kdx_tensor **ts = lua_newuserdatauv(L, (size_t)n * sizeof *ts + 1, 0);
    const char **keys = lua_newuserdatauv(L, (size_t)nmeta * sizeof *keys + 1, 0);
    const char **vals = lua_newuserdatauv(L, (size_t)nmeta * sizeof *vals + 1, 0);
    int i = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        const char *name = check_key(L, "tensors");
        if (kdxL_isclosed(L, -1)) luaL_error(L, "kdx.save: tensors['%s'] is a closed tensor", name);
        kdx_tensor *t = kdxL_totensor(L, -1);
        if (!t) luaL_error(L, "kdx.save: tensors['%s'] must be a tensor, got %s", name, luaL_typename(L, -1));
        if (i < n) names[i] = name, ts[i] = t;
        i++;
        lua_pop(L, 1);
    }
    if (i != n) luaL_error(L, "kdx.save: the tensors table changed while it was read");
    i = 0;
    lua_pushnil(L);
    while (nmeta > 0 && lua_next(L, 3)) {
        const char *key = check_key(L, "metadata");
        size_t len;
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "kdx.save: metadata['%s'] must be a string, got %s (convert it with tostring)", key,
                       luaL_typename(L, -1));
        const char *v = lua_tolstring(L, -1, &len);
        if (strlen(v) != len) luaL_error(L, "kdx.save: metadata['%s'] contains a NUL byte", key);
        if (i < nmeta) keys[i] = key, vals[i] = v;
        i++;
        lua_pop(L, 1);
    }
    if (i != nmeta) luaL_error(L, "kdx.save: the metadata table changed while it was read");
    kdxL_checkas(L, kdx_save_safetensors(path, n, names, ts, nmeta, keys, vals), "save");
    return 0;
}

static int l_st_gc(lua_State *L)
{
    kdx_safetensors **h = lua_touserdata(L, 1);
    kdx_safetensors_free(*h);
    *h = NULL;
    return 0;
}

/* kdx.load(path) -> {name = tensor, ...}, {key = value, ...} */
static int l_load(lua_State *L)
{
    const char *path = check_path(L, "load");
    kdx_safetensors **h = lua_newuserdatauv(L, sizeof *h, 0);
    *h = NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ST_MT_KEY);
    lua_setmetatable(L, -2);
    kdxL_checkas(L, kdx_load_safetensors(path, h), "load");
    int n = kdx_safetensors_count(*h), nmeta = kdx_safetensors_meta_count(*h);
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        kdx_tensor **box = kdxL_newbox(L);
        *box = kdx_tensor_retain(kdx_safetensors_tensor(*h, i));
        lua_setfield(L, -2, kdx_safetensors_name(*h, i));
    }
    lua_createtable(L, 0, nmeta);
    for (int i = 0; i < nmeta; i++) {
        lua_pushstring(L, kdx_safetensors_meta_value(*h, i));
        lua_setfield(L, -2, kdx_safetensors_meta_key(*h, i));
    }
    /* The tables hold their own references now: free the file's early. */
    kdx_safetensors_free(*h);
    *h = NULL;
    return 2;
}

void kdxL_open_io(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    kdxL_handle_meta(L, &ST_MT_KEY, "kdx.safetensors", l_st_gc);
    static const luaL_Reg fns[] = {{"save", l_save}, {"load", l_load}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
