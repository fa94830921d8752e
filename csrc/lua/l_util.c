/* l_util.c — argument checking and conversion shared by the binding:
   tensors in and out of userdata, dims and indices from 1-based to 0-based,
   shapes, dtypes, option tables, nested tables. */
#include "kdx_lua.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- tensors in userdata ---- */

/* The tensor metatable is also kept under this address in the registry:
   looking it up by pointer skips the string interning that a lookup by name
   costs on every call (it shows in the per-op overhead). */
const char kdxL_tensor_mt_key = 't';

/* Lua sees a tensor as an 8-byte box, so its collector has no idea how much
   memory dead tensors hold. After every GC_BUDGET bytes of tensors the
   engine allocates, collect: dead tensors then never hold more than about
   that much, whatever the live set (a loaded dataset must not raise the
   bar). Without this a training loop's activations pile up between
   collections and every step allocates fresh, page-faulting memory. */
#define GC_BUDGET ((long long)32 << 20)
static atomic_llong gc_next = GC_BUDGET;

static void collect_if_heavy(lua_State *L)
{
    long long total = (long long)kdx_debug_bytes_allocated();
    if (total < atomic_load_explicit(&gc_next, memory_order_relaxed)) return;
    atomic_store(&gc_next, total + GC_BUDGET);
    lua_gc(L, LUA_GCCOLLECT, 0);
}

kdx_tensor **kdxL_newbox(lua_State *L)
{
    collect_if_heavy(L);
    kdx_tensor **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kdxL_tensor_mt_key);
    lua_setmetatable(L, -2);
    return box;
}

/* The box at arg if it is a tensor userdata, else NULL. */
static kdx_tensor **testbox(lua_State *L, int arg)
{
    kdx_tensor **box = lua_touserdata(L, arg);
    if (!box || !lua_getmetatable(L, arg)) return NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kdxL_tensor_mt_key);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same ? box : NULL;
}

void kdxL_check(lua_State *L, kdx_status s)
{
    if (s != KDX_OK) luaL_error(L, "kdx.%s", kdx_last_error());
}

void kdxL_checkas(lua_State *L, kdx_status s, const char *fname)
{
    if (s == KDX_OK) return;
    const char *msg = kdx_last_error(), *colon = strstr(msg, ": ");
    luaL_error(L, "kdx.%s: %s", fname, colon ? colon + 2 : msg);
}

int kdxL_isclosed(lua_State *L, int arg)
{
    kdx_tensor **box = testbox(L, arg);
    return box && !*box;
}

kdx_tensor *kdxL_totensor(lua_State *L, int arg)
{
    kdx_tensor **box = testbox(L, arg);
    return box ? *box : NULL;
}

kdx_tensor *kdxL_checktensor(lua_State *L, int arg, const char *fname)
{
    kdx_tensor **box = testbox(L, arg);
    if (!box) {
        luaL_error(L, "kdx.%s: %s must be a tensor, got %s", fname, kdxL_argstr(L, arg), luaL_typename(L, arg));
        return NULL;
    }
    if (!*box) luaL_error(L, "kdx.%s: %s is a closed tensor", fname, kdxL_argstr(L, arg));
    return *box;
}

kdx_tensor *kdxL_astensor(lua_State *L, int arg, const char *fname, kdx_dtype dt)
{
    kdx_tensor **tb = testbox(L, arg);
    if (tb) return kdxL_checktensor(L, arg, fname); /* a tensor, or the closed-tensor error */
    if (lua_type(L, arg) != LUA_TNUMBER && lua_type(L, arg) != LUA_TTABLE)
        luaL_error(L, "kdx.%s: %s must be a tensor, a number or a table, got %s", fname, kdxL_argstr(L, arg),
                   luaL_typename(L, arg));
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdxL_fromtable(L, arg, fname, dt, box));
    return *box;
}

/* ---- plain arguments ---- */

int kdxL_argno(lua_State *L, int arg)
{
    /* In t:f(a) the user counts a as argument 1, as luaL_argerror does. */
    lua_Debug ar;
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.namewhat && strcmp(ar.namewhat, "method") == 0)
        return arg - 1;
    return arg;
}

const char *kdxL_argstr(lua_State *L, int arg)
{
    int n = kdxL_argno(L, arg);
    if (n == 0) return lua_pushstring(L, "self");
    return lua_pushfstring(L, "argument %d", n);
}

lua_Number kdxL_checknum(lua_State *L, int arg, const char *fname, const char *what)
{
    if (lua_type(L, arg) != LUA_TNUMBER)
        luaL_error(L, "kdx.%s: %s (%s) must be a number, got %s", fname, kdxL_argstr(L, arg), what,
                   luaL_typename(L, arg));
    return lua_tonumber(L, arg);
}

lua_Number kdxL_optnum(lua_State *L, int arg, lua_Number def, const char *fname, const char *what)
{
    return lua_isnoneornil(L, arg) ? def : kdxL_checknum(L, arg, fname, what);
}

lua_Integer kdxL_checkint(lua_State *L, int arg, const char *fname, const char *what)
{
    if (!lua_isinteger(L, arg)) {
        /* 3.0 counts as an integer, as it does for Lua's own functions */
        lua_Number v = lua_tonumber(L, arg);
        if (lua_type(L, arg) == LUA_TNUMBER && v == floor(v) && fabs(v) < 9.2e18) return (lua_Integer)v;
        luaL_error(L, "kdx.%s: %s (%s) must be an integer, got %s", fname, kdxL_argstr(L, arg), what,
                   lua_type(L, arg) == LUA_TNUMBER ? "a fraction" : luaL_typename(L, arg));
    }
    return lua_tointeger(L, arg);
}

void kdxL_checktable(lua_State *L, int arg, const char *fname, const char *what)
{
    if (lua_type(L, arg) != LUA_TTABLE)
        luaL_error(L, "kdx.%s: %s (%s) must be a table, got %s", fname, kdxL_argstr(L, arg), what,
                   luaL_typename(L, arg));
}

/* ---- nested tables ---- */

typedef struct {
    lua_State *L;
    const char *fname;
    int ndim;
    int64_t shape[KDX_MAX_DIMS];
    int as_int; /* collect int64 values exactly instead of doubles */
} table_info;

/* Finds the shape from the first element of each level. */
static kdx_status table_shape(table_info *ti, int idx)
{
    lua_State *L = ti->L;
    int depth = 0;
    lua_pushvalue(L, idx);
    while (lua_type(L, -1) == LUA_TTABLE) {
        if (depth == KDX_MAX_DIMS) {
            lua_pop(L, 1);
            return kdx_fail(KDX_ESHAPE, "%s: table nested deeper than %d levels", ti->fname, KDX_MAX_DIMS);
        }
        ti->shape[depth++] = (int64_t)lua_rawlen(L, -1);
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    ti->ndim = depth;
    return KDX_OK;
}

static void path_str(const int64_t *at, int depth, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < depth && used + 24 < n; i++) used += (size_t)snprintf(buf + used, n - used, "[%lld]", (long long)at[i] + 1);
}

/* Copies the values of the table at idx (at nesting depth) into data. */
static kdx_status table_fill(table_info *ti, int idx, int depth, int64_t *at, void *data, int64_t *pos)
{
    lua_State *L = ti->L;
    char where[160];
    if (depth == ti->ndim) {
        if (lua_type(L, idx) != LUA_TNUMBER) {
            path_str(at, depth, where, sizeof where);
            return kdx_fail(KDX_EINVAL, "%s: element %s is a %s, expected a number", ti->fname, where,
                            luaL_typename(L, idx));
        }
        if (ti->as_int) {
            lua_Number v = lua_tonumber(L, idx);
            if (!lua_isinteger(L, idx) && (v != floor(v) || !(fabs(v) < 9.2e18))) {
                path_str(at, depth, where, sizeof where);
                return kdx_fail(KDX_EINVAL, "%s: element %s is %g, not an integer, but the dtype is int64", ti->fname,
                                where, v);
            }
            ((int64_t *)data)[(*pos)++] = lua_isinteger(L, idx) ? (int64_t)lua_tointeger(L, idx) : (int64_t)v;
        } else {
            ((double *)data)[(*pos)++] = lua_tonumber(L, idx);
        }
        return KDX_OK;
    }
    if (lua_type(L, idx) != LUA_TTABLE || (int64_t)lua_rawlen(L, idx) != ti->shape[depth]) {
        path_str(at, depth, where, sizeof where);
        if (lua_type(L, idx) != LUA_TTABLE)
            return kdx_fail(KDX_ESHAPE, "%s: ragged table: element %s is a %s where a table of %lld was expected",
                            ti->fname, where[0] ? where : "(top)", luaL_typename(L, idx), (long long)ti->shape[depth]);
        return kdx_fail(KDX_ESHAPE, "%s: ragged table: %s has %lld entries, expected %lld", ti->fname,
                        where[0] ? where : "the top level", (long long)lua_rawlen(L, idx), (long long)ti->shape[depth]);
    }
    luaL_checkstack(L, 4, "nested table");
    for (int64_t i = 0; i < ti->shape[depth]; i++) {
        at[depth] = i;
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        kdx_status s = table_fill(ti, lua_gettop(L), depth + 1, at, data, pos);
        lua_pop(L, 1);
        if (s != KDX_OK) return s;
    }
    return KDX_OK;
}

kdx_status kdxL_fromtable(lua_State *L, int arg, const char *fname, kdx_dtype dt, kdx_tensor **out)
{
    arg = lua_absindex(L, arg);
    table_info ti = {L, fname, 0, {0}, dt == KDX_DTYPE_I64};
    kdx_status s = table_shape(&ti, arg);
    if (s != KDX_OK) return s;
    int64_t n = 1;
    for (int i = 0; i < ti.ndim; i++) n *= ti.shape[i];
    if (n > ((int64_t)1 << 31)) return kdx_fail(KDX_ESHAPE, "%s: table too large", fname);
    /* Values go through a scratch userdata, so an error raised by Lua while
       reading the table cannot leak it. */
    void *data = lua_newuserdatauv(L, (size_t)(n ? n : 1) * 8, 0);
    int64_t at[KDX_MAX_DIMS] = {0}, pos = 0;
    s = table_fill(&ti, arg, 0, at, data, &pos);
    if (s == KDX_OK) s = kdx_empty(dt, ti.ndim, ti.shape, out);
    if (s == KDX_OK) {
        void *p = kdx_tensor_data(*out);
        for (int64_t i = 0; i < n; i++) {
            switch (dt) {
            case KDX_DTYPE_F32: ((float *)p)[i] = (float)((double *)data)[i]; break;
            case KDX_DTYPE_F64: ((double *)p)[i] = ((double *)data)[i]; break;
            case KDX_DTYPE_I64: ((int64_t *)p)[i] = ((int64_t *)data)[i]; break;
            }
        }
    }
    lua_pop(L, 1);
    return s;
}

/* ---- dims, indices, shapes ---- */

int kdxL_dim(lua_State *L, lua_Integer v, int ndim, const char *fname)
{
    int n = ndim > 0 ? ndim : 1;
    if (v == 0) luaL_error(L, "kdx.%s: dim 0 is invalid (dims are 1-based; -1 is the last)", fname);
    if (v > n || v < -n) luaL_error(L, "kdx.%s: dim %I out of range for a %d-d tensor", fname, (LUAI_UACINT)v, ndim);
    return v > 0 ? (int)v - 1 : (int)v + n;
}

int kdxL_dimentry(lua_State *L, int idx, int entry, int ndim, const char *fname)
{
    if (!lua_isinteger(L, idx))
        luaL_error(L, "kdx.%s: entry %d of the dims must be an integer, got %s", fname, entry,
                   lua_type(L, idx) == LUA_TNUMBER ? "a fraction" : luaL_typename(L, idx));
    return kdxL_dim(L, lua_tointeger(L, idx), ndim, fname);
}

int kdxL_checkdim(lua_State *L, int arg, int ndim, const char *fname)
{
    if (!lua_isinteger(L, arg))
        luaL_error(L, "kdx.%s: %s (dim) must be an integer, got %s", fname, kdxL_argstr(L, arg),
                   lua_isnumber(L, arg) ? "a fraction" : luaL_typename(L, arg));
    return kdxL_dim(L, lua_tointeger(L, arg), ndim, fname);
}

int64_t kdxL_checkindex(lua_State *L, int arg, int64_t n, const char *fname)
{
    if (!lua_isinteger(L, arg))
        luaL_error(L, "kdx.%s: %s (index) must be an integer, got %s", fname, kdxL_argstr(L, arg),
                   lua_isnumber(L, arg) ? "a fraction" : luaL_typename(L, arg));
    lua_Integer v = lua_tointeger(L, arg);
    if (v == 0 || v > n || v < -n) {
        if (v == 0) luaL_error(L, "kdx.%s: index 0 is invalid (indices are 1-based)", fname);
        luaL_error(L, "kdx.%s: index %I out of range for a dim of size %I", fname, (LUAI_UACINT)v, (LUAI_UACINT)n);
    }
    return v > 0 ? v - 1 : v + n;
}

static int64_t checksize(lua_State *L, int idx, const char *fname, int allow_neg1)
{
    if (!lua_isinteger(L, idx))
        luaL_error(L, "kdx.%s: sizes must be integers, got %s", fname,
                   lua_isnumber(L, idx) ? "a fraction" : luaL_typename(L, idx));
    lua_Integer v = lua_tointeger(L, idx);
    if (v < 0 && !(allow_neg1 && v == -1)) luaL_error(L, "kdx.%s: size %d is negative", fname, (int)v);
    return v;
}

int kdxL_checkshape(lua_State *L, int arg, int64_t *shape, const char *fname)
{
    if (lua_type(L, arg) == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, arg);
        if (n > KDX_MAX_DIMS) luaL_error(L, "kdx.%s: %d dims given, at most %d are supported", fname, (int)n, KDX_MAX_DIMS);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, arg, i);
            shape[i - 1] = checksize(L, -1, fname, 1);
            lua_pop(L, 1);
        }
        return (int)n;
    }
    int top = lua_gettop(L), n = 0;
    for (int i = arg; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
        if (n == KDX_MAX_DIMS) luaL_error(L, "kdx.%s: at most %d dims are supported", fname, KDX_MAX_DIMS);
        shape[n++] = checksize(L, i, fname, 1);
    }
    if (n == 0 && !lua_isnoneornil(L, arg))
        luaL_error(L, "kdx.%s: %s (shape) must be a table of sizes, got %s", fname, kdxL_argstr(L, arg),
                   luaL_typename(L, arg));
    return n;
}

kdx_dtype kdxL_optdtype(lua_State *L, int arg, kdx_dtype def, const char *fname)
{
    if (lua_isnoneornil(L, arg)) return def;
    if (lua_type(L, arg) != LUA_TSTRING)
        luaL_error(L, "kdx.%s: %s (dtype) must be a string such as \"float32\", got %s", fname, kdxL_argstr(L, arg),
                   luaL_typename(L, arg));
    kdx_dtype dt;
    if (kdx_dtype_parse(lua_tostring(L, arg), &dt) != KDX_OK)
        luaL_error(L, "kdx.%s: unknown dtype '%s' (expected float32, float64 or int64)", fname, lua_tostring(L, arg));
    return dt;
}

kdx_tensor *kdxL_checkindices(lua_State *L, int arg, int64_t size, const char *fname)
{
    kdx_tensor *idx = kdxL_totensor(L, arg);
    if (!idx && kdxL_isclosed(L, arg)) luaL_error(L, "kdx.%s: %s (index) is a closed tensor", fname, kdxL_argstr(L, arg));
    if (!idx && lua_type(L, arg) == LUA_TNUMBER) {
        /* A single index: a 1-D int64 tensor of one element. */
        kdx_tensor **b = kdxL_newbox(L);
        int64_t one = 1;
        kdxL_check(L, kdx_empty(KDX_DTYPE_I64, 1, &one, b));
        if (!lua_isinteger(L, arg)) luaL_error(L, "kdx.%s: index must be an integer", fname);
        *(int64_t *)kdx_tensor_data(*b) = (int64_t)lua_tointeger(L, arg);
        idx = *b;
    } else if (!idx) {
        if (lua_type(L, arg) != LUA_TTABLE)
            luaL_error(L, "kdx.%s: %s (index) must be an int64 tensor or a table of integers, got %s", fname,
                       kdxL_argstr(L, arg), luaL_typename(L, arg));
        idx = kdxL_astensor(L, arg, fname, KDX_DTYPE_I64);
    }
    if (kdx_tensor_dtype(idx) != KDX_DTYPE_I64)
        luaL_error(L, "kdx.%s: index tensor must be int64, got %s (convert with :long())", fname,
                   kdx_dtype_name(kdx_tensor_dtype(idx)));
    kdx_tensor **box = kdxL_newbox(L);
    kdx_status s = kdx_index_rebase(fname, idx, 1, size, 0, box);
    if (s != KDX_OK) luaL_error(L, "kdx.%s", kdx_last_error());
    return *box;
}

int kdxL_optdims(lua_State *L, int arg, int ndim, int *dims, const char *fname)
{
    if (lua_isnoneornil(L, arg)) return 0;
    if (lua_type(L, arg) == LUA_TNUMBER) {
        dims[0] = kdxL_checkdim(L, arg, ndim, fname);
        return 1;
    }
    if (lua_type(L, arg) != LUA_TTABLE)
        luaL_error(L, "kdx.%s: %s (dims) must be a dim, a table of dims or nil, got %s", fname, kdxL_argstr(L, arg),
                   luaL_typename(L, arg));
    int n = (int)lua_rawlen(L, arg);
    if (n > KDX_MAX_DIMS) luaL_error(L, "kdx.%s: too many dims", fname);
    if (n == 0) luaL_error(L, "kdx.%s: the dims table is empty", fname);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, arg, i + 1);
        dims[i] = kdxL_dimentry(L, -1, i + 1, ndim, fname);
        lua_pop(L, 1);
        for (int j = 0; j < i; j++)
            if (dims[j] == dims[i]) luaL_error(L, "kdx.%s: dim %d appears more than once", fname, dims[i] + 1);
    }
    return n;
}

/* ---- option tables ---- */

static int getfield(lua_State *L, int opts, const char *key, const char *fname)
{
    if (opts == 0 || lua_isnoneornil(L, opts)) return 0;
    if (lua_type(L, opts) != LUA_TTABLE)
        luaL_error(L, "kdx.%s: %s (options) must be a table, got %s", fname, kdxL_argstr(L, opts),
                   luaL_typename(L, opts));
    if (lua_getfield(L, opts, key) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

lua_Integer kdxL_optfield_int(lua_State *L, int opts, const char *key, lua_Integer def, const char *fname)
{
    if (!getfield(L, opts, key, fname)) return def;
    if (!lua_isinteger(L, -1)) luaL_error(L, "kdx.%s: option '%s' must be an integer, got %s", fname, key, luaL_typename(L, -1));
    lua_Integer v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

lua_Number kdxL_optfield_num(lua_State *L, int opts, const char *key, lua_Number def, const char *fname)
{
    if (!getfield(L, opts, key, fname)) return def;
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "kdx.%s: option '%s' must be a number, got %s", fname, key, luaL_typename(L, -1));
    lua_Number v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

int kdxL_optfield_bool(lua_State *L, int opts, const char *key, int def, const char *fname)
{
    if (!getfield(L, opts, key, fname)) return def;
    if (!lua_isboolean(L, -1)) luaL_error(L, "kdx.%s: option '%s' must be a boolean, got %s", fname, key, luaL_typename(L, -1));
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

const char *kdxL_optfield_str(lua_State *L, int opts, const char *key, const char *def, const char *fname)
{
    if (!getfield(L, opts, key, fname)) return def;
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "kdx.%s: option '%s' must be a string, got %s", fname, key, luaL_typename(L, -1));
    const char *v = lua_tostring(L, -1);
    lua_pop(L, 1); /* the string stays alive: it is a field of the options table */
    return v;
}

void kdxL_optfield_pair(lua_State *L, int opts, const char *key, int64_t def, int64_t *out, const char *fname)
{
    out[0] = out[1] = def;
    if (!getfield(L, opts, key, fname)) return;
    if (lua_isinteger(L, -1)) {
        out[0] = out[1] = lua_tointeger(L, -1);
    } else if (lua_type(L, -1) == LUA_TTABLE && lua_rawlen(L, -1) == 2) {
        for (int i = 0; i < 2; i++) {
            lua_rawgeti(L, -1, i + 1);
            if (!lua_isinteger(L, -1)) luaL_error(L, "kdx.%s: option '%s' must hold integers", fname, key);
            out[i] = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
    } else {
        luaL_error(L, "kdx.%s: option '%s' must be an integer or a pair {h, w}, got %s", fname, key, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}

void kdxL_handle_meta(lua_State *L, const void *key, const char *name, lua_CFunction gc)
{
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void kdxL_register(lua_State *L, int mod, int methods, const luaL_Reg *fns, int as_method)
{
    for (; fns->name; fns++) {
        lua_pushcfunction(L, fns->func);
        if (as_method) {
            lua_pushvalue(L, -1);
            lua_setfield(L, methods, fns->name);
        }
        lua_setfield(L, mod, fns->name);
    }
}
