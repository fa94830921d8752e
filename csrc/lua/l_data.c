/* l_data.c — readers for lua/kdx/data: _read_idx(path, as_float) and
   _read_csv(path, opts). The parsed CSV file lives in a box with __gc, made
   before the engine is called, so an error raised at any point leaks nothing. */
#include "kdx_lua.h"

#include <string.h>

static const char CSV_MT_KEY = 'c'; /* registry key of the parsed-file box's metatable */

static int l_read_idx(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int as_float = lua_toboolean(L, 2);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_read_idx(path, as_float, box), "data.idx");
    return 1;
}

static int l_csv_gc(lua_State *L)
{
    kdx_csv **h = lua_touserdata(L, 1);
    kdx_csv_free(*h);
    *h = NULL;
    return 0;
}

/* The label option at the top of the stack: a column name, a 1-based (or
   negative) position, or false for none. Pops it. */
static void csv_label(lua_State *L, kdx_csv_opts *o)
{
    switch (lua_type(L, -1)) {
    case LUA_TNIL: break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, -1)) luaL_error(L, "kdx.data.csv: option 'label' may be false, not true");
        o->label_column = KDX_CSV_NO_LABEL;
        break;
    case LUA_TSTRING: o->label_name = lua_tostring(L, -1); break; /* kept alive by the options table */
    case LUA_TNUMBER: {
        if (!lua_isinteger(L, -1)) luaL_error(L, "kdx.data.csv: option 'label' must be an integer column, a name or false");
        lua_Integer v = lua_tointeger(L, -1);
        if (v == 0 || v > 1 << 30 || v < -(1 << 30))
            luaL_error(L, "kdx.data.csv: label column %I is out of range (columns count from 1; negative from the end)", v);
        o->label_column = (int)(v > 0 ? v - 1 : v);
        break;
    }
    default:
        luaL_error(L, "kdx.data.csv: option 'label' must be a column name, a column number or false, got %s",
                   luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}

/* The classes option: a list of strings, copied into a userdata array that
   stays on the stack for the call. */
static void csv_classes(lua_State *L, int opts, kdx_csv_opts *o)
{
    lua_getfield(L, opts, "classes");
    if (lua_isnil(L, -1)) return;
    if (!lua_istable(L, -1)) luaL_error(L, "kdx.data.csv: option 'classes' must be a list of strings");
    int list = lua_gettop(L);
    lua_Integer n = luaL_len(L, list);
    if (n < 1 || n > 1 << 26) luaL_error(L, "kdx.data.csv: option 'classes' must list 1 or more class names");
    const char **names = lua_newuserdatauv(L, (size_t)n * sizeof *names, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, list, i) != LUA_TSTRING)
            luaL_error(L, "kdx.data.csv: classes[%d] must be a string, got %s", (int)i, luaL_typename(L, -1));
        size_t len;
        names[i - 1] = lua_tolstring(L, -1, &len); /* alive as an entry of the list */
        if (strlen(names[i - 1]) != len) luaL_error(L, "kdx.data.csv: classes[%d] contains a NUL byte", (int)i);
        lua_pop(L, 1);
    }
    o->classes = names;
    o->nclasses = (int)n;
}

static void csv_opts(lua_State *L, int opts, kdx_csv_opts *o)
{
    const char *fname = "data.csv";
    const char *d = kdxL_optfield_str(L, opts, "delimiter", ",", fname);
    if (strlen(d) != 1) luaL_error(L, "kdx.data.csv: option 'delimiter' must be one character, got '%s'", d);
    o->delimiter = d[0];
    o->header = kdxL_optfield_bool(L, opts, "header", 1, fname);
    lua_Integer skip = kdxL_optfield_int(L, opts, "skip", 0, fname);
    if (skip < 0) luaL_error(L, "kdx.data.csv: option 'skip' must be >= 0, got %d", (int)(skip < -1000 ? -1000 : skip));
    o->skip = skip;
    const char *order = kdxL_optfield_str(L, opts, "order", "sorted", fname);
    if (strcmp(order, "sorted") == 0) o->order = KDX_CSV_SORTED;
    else if (strcmp(order, "first") == 0) o->order = KDX_CSV_FIRST;
    else luaL_error(L, "kdx.data.csv: option 'order' must be \"sorted\" or \"first\", got '%s'", order);
    if (opts) {
        lua_getfield(L, opts, "label");
        csv_label(L, o);
        csv_classes(L, opts, o);
    }
}

/* A list of n strings from get(c, i) (NULL entries: none expected). */
static void push_names(lua_State *L, const kdx_csv *c, int n, const char *(*get)(const kdx_csv *, int))
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, get(c, i));
        lua_rawseti(L, -2, i + 1);
    }
}

/* _read_csv(path, opts) -> x float64 [N,F], y int64 [N] (0-based) or nil,
   feature names or nil, class names or nil, label column name or nil. */
static int l_read_csv(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING)
        luaL_error(L, "kdx.data.csv: argument 1 (path) must be a string, got %s", luaL_typename(L, 1));
    size_t plen;
    const char *path = lua_tolstring(L, 1, &plen);
    if (plen == 0 || strlen(path) != plen) luaL_error(L, "kdx.data.csv: the path must be a non-empty string without NULs");
    int opts = 0;
    if (!lua_isnoneornil(L, 2)) {
        kdxL_checktable(L, 2, "data.csv", "options");
        opts = 2;
    }
    lua_settop(L, 2);
    kdx_csv_opts o = kdx_csv_opts_default();
    csv_opts(L, opts, &o);
    kdx_csv **h = lua_newuserdatauv(L, sizeof *h, 0);
    *h = NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &CSV_MT_KEY);
    lua_setmetatable(L, -2);
    kdxL_checkas(L, kdx_read_csv(path, &o, h), "data.csv");
    const kdx_csv *c = *h;
    kdx_tensor *x = kdx_csv_features(c), *y = kdx_csv_labels(c);
    *kdxL_newbox(L) = kdx_tensor_retain(x);
    if (y) *kdxL_newbox(L) = kdx_tensor_retain(y);
    else lua_pushnil(L);
    int nfeat = (int)kdx_tensor_size(x, 1);
    if (nfeat > 0 && kdx_csv_feature_name(c, 0)) push_names(L, c, nfeat, kdx_csv_feature_name);
    else lua_pushnil(L);
    if (y) push_names(L, c, kdx_csv_class_count(c), kdx_csv_class_name);
    else lua_pushnil(L);
    lua_pushstring(L, kdx_csv_label_name(c)); /* nil for NULL */
    /* the Lua values hold their own references now: free the file's early */
    kdx_csv_free(*h);
    *h = NULL;
    return 5;
}

void kdxL_open_data(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    kdxL_handle_meta(L, &CSV_MT_KEY, "kdx.csv", l_csv_gc);
    static const luaL_Reg fns[] = {{"_read_idx", l_read_idx}, {"_read_csv", l_read_csv}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
