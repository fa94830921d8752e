/* l_tensor.c — the tensor userdata: creation, inspection, element access,
   views and copies, and the metamethods that are not arithmetic. */
#include "kdx_lua.h"

#include <string.h>

/* ---- lifetime ---- */

static int l_tensor_gc(lua_State *L)
{
    kdx_tensor **box = lua_touserdata(L, 1); /* only ever installed on tensor boxes */
    kdx_tensor_release(*box);
    *box = NULL;
    return 0;
}

/* ---- creation ---- */

static int l_tensor(lua_State *L)
{
    kdx_dtype dt = kdxL_optdtype(L, 2, KDX_DTYPE_F32, "tensor");
    kdx_tensor *src = kdxL_totensor(L, 1);
    kdx_tensor **box = kdxL_newbox(L);
    if (src) {
        kdx_tensor *c;
        kdxL_check(L, kdx_to(src, dt, &c));
        if (c == src) {
            kdx_tensor_release(c);
            kdxL_check(L, kdx_clone(src, box));
        } else {
            *box = c;
        }
        return 1;
    }
    if (lua_type(L, 1) != LUA_TTABLE && lua_type(L, 1) != LUA_TNUMBER)
        return luaL_error(L, "kdx.tensor: argument 1 must be a number or a (nested) table of numbers, got %s",
                          luaL_typename(L, 1));
    kdxL_check(L, kdxL_fromtable(L, 1, "tensor", dt, box));
    return 1;
}

/* zeros/ones/empty/rand/randn: (shape, dtype) with the shape as a table or as numbers. */
static int make_filled(lua_State *L, const char *fname, double value)
{
    int64_t shape[KDX_MAX_DIMS];
    int nd = kdxL_checkshape(L, 1, shape, fname);
    int dt_arg = lua_type(L, 1) == LUA_TTABLE ? 2 : nd + 1;
    kdx_dtype dt = kdxL_optdtype(L, dt_arg, KDX_DTYPE_F32, fname);
    for (int i = 0; i < nd; i++)
        if (shape[i] < 0) return luaL_error(L, "kdx.%s: size %d is negative", fname, (int)shape[i]);
    kdx_tensor **box = kdxL_newbox(L);
    if (strcmp(fname, "rand") == 0) kdxL_checkas(L, kdx_rand(kdxL_generator(L), dt, nd, shape, box), fname);
    else if (strcmp(fname, "randn") == 0) kdxL_checkas(L, kdx_randn(kdxL_generator(L), dt, nd, shape, box), fname);
    else kdxL_checkas(L, kdx_full(dt, nd, shape, value, box), fname);
    return 1;
}

static int l_zeros(lua_State *L) { return make_filled(L, "zeros", 0); }
static int l_ones(lua_State *L) { return make_filled(L, "ones", 1); }
static int l_empty(lua_State *L) { return make_filled(L, "empty", 0); }
static int l_rand(lua_State *L) { return make_filled(L, "rand", 0); }
static int l_randn(lua_State *L) { return make_filled(L, "randn", 0); }

static int l_full(lua_State *L)
{
    int64_t shape[KDX_MAX_DIMS];
    if (lua_type(L, 1) != LUA_TTABLE) return luaL_error(L, "kdx.full: argument 1 (shape) must be a table");
    int nd = kdxL_checkshape(L, 1, shape, "full");
    double v = kdxL_checknum(L, 2, "full", "value");
    kdx_dtype dt = kdxL_optdtype(L, 3, KDX_DTYPE_F32, "full");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_full(dt, nd, shape, v, box));
    return 1;
}

/* *_like(t, [value,] dtype?) */
static int make_like(lua_State *L, const char *fname, int kind)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, fname);
    int dt_arg = kind == 2 ? 3 : 2;
    double v = kind == 2 ? kdxL_checknum(L, 2, fname, "value") : kind;
    kdx_dtype dt = kdxL_optdtype(L, dt_arg, kdx_tensor_dtype(t), fname);
    int nd = kdx_tensor_ndim(t);
    const int64_t *shape = kdx_tensor_shape(t);
    kdx_tensor **box = kdxL_newbox(L);
    if (kind == 3) kdxL_checkas(L, kdx_rand(kdxL_generator(L), dt, nd, shape, box), fname);
    else if (kind == 4) kdxL_checkas(L, kdx_randn(kdxL_generator(L), dt, nd, shape, box), fname);
    else kdxL_checkas(L, kdx_full(dt, nd, shape, v, box), fname);
    return 1;
}

static int l_zeros_like(lua_State *L) { return make_like(L, "zeros_like", 0); }
static int l_ones_like(lua_State *L) { return make_like(L, "ones_like", 1); }
static int l_full_like(lua_State *L) { return make_like(L, "full_like", 2); }
static int l_rand_like(lua_State *L) { return make_like(L, "rand_like", 3); }
static int l_randn_like(lua_State *L) { return make_like(L, "randn_like", 4); }

static int l_arange(lua_State *L)
{
    int nargs = 0;
    while (nargs < 3 && lua_type(L, nargs + 1) == LUA_TNUMBER) nargs++;
    if (nargs == 0) return luaL_error(L, "kdx.arange: expected arange(end) or arange(start, end, step?)");
    double start = 0, end, step = 1;
    int all_int = 1;
    for (int i = 1; i <= nargs; i++) all_int = all_int && lua_isinteger(L, i);
    if (nargs == 1) end = lua_tonumber(L, 1);
    else start = lua_tonumber(L, 1), end = lua_tonumber(L, 2);
    if (nargs == 3) step = lua_tonumber(L, 3);
    /* Integer arguments give int64 values, as in PyTorch. */
    kdx_dtype dt = kdxL_optdtype(L, nargs + 1, all_int ? KDX_DTYPE_I64 : KDX_DTYPE_F32, "arange");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_arange(start, end, step, dt, box));
    return 1;
}

static int l_linspace(lua_State *L)
{
    double a = kdxL_checknum(L, 1, "linspace", "start"), b = kdxL_checknum(L, 2, "linspace", "end");
    lua_Integer n = kdxL_checkint(L, 3, "linspace", "steps");
    kdx_dtype dt = kdxL_optdtype(L, 4, KDX_DTYPE_F32, "linspace");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_linspace(a, b, n, dt, box));
    return 1;
}

static int l_eye(lua_State *L)
{
    lua_Integer n = kdxL_checkint(L, 1, "eye", "n");
    int has_m = lua_type(L, 2) == LUA_TNUMBER;
    lua_Integer m = has_m ? kdxL_checkint(L, 2, "eye", "m") : n;
    kdx_dtype dt = kdxL_optdtype(L, has_m ? 3 : 2, KDX_DTYPE_F32, "eye");
    if (n < 0 || m < 0) return luaL_error(L, "kdx.eye: sizes must be non-negative");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_eye(n, m, dt, box));
    return 1;
}

static int l_randint(lua_State *L)
{
    lua_Integer lo = kdxL_checkint(L, 1, "randint", "low"), hi = kdxL_checkint(L, 2, "randint", "high");
    int64_t shape[KDX_MAX_DIMS];
    if (lua_type(L, 3) != LUA_TTABLE) return luaL_error(L, "kdx.randint: argument 3 (shape) must be a table");
    int nd = kdxL_checkshape(L, 3, shape, "randint");
    kdx_dtype dt = kdxL_optdtype(L, 4, KDX_DTYPE_I64, "randint");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_randint(kdxL_generator(L), lo, hi, dt, nd, shape, box));
    return 1;
}

static int l_randperm(lua_State *L)
{
    lua_Integer n = kdxL_checkint(L, 1, "randperm", "n");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_randperm(kdxL_generator(L), n, box));
    /* Permuted indices are 1-based in Lua. */
    kdxL_check(L, kdx_binary_scalar_(KDX_BIN_ADD, *box, 1));
    return 1;
}

static int l_uniform_(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "uniform_");
    kdxL_check(L, kdx_uniform_(t, kdxL_generator(L), kdxL_optnum(L, 2, 0, "uniform_", "low"),
                                   kdxL_optnum(L, 3, 1, "uniform_", "high")));
    lua_settop(L, 1);
    return 1;
}

static int l_normal_(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "normal_");
    kdxL_check(L, kdx_normal_(t, kdxL_generator(L), kdxL_optnum(L, 2, 0, "normal_", "mean"),
                                  kdxL_optnum(L, 3, 1, "normal_", "std")));
    lua_settop(L, 1);
    return 1;
}

/* ---- inspection ---- */

static int l_shape(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "shape");
    int nd = kdx_tensor_ndim(t);
    lua_createtable(L, nd, 0);
    for (int i = 0; i < nd; i++) {
        lua_pushinteger(L, kdx_tensor_shape(t)[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_stride(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "stride");
    int nd = kdx_tensor_ndim(t);
    if (!lua_isnoneornil(L, 2)) {
        if (nd == 0) return luaL_error(L, "kdx.stride: a 0-d tensor has no dims");
        lua_pushinteger(L, kdx_tensor_strides(t)[kdxL_checkdim(L, 2, nd, "stride")]);
        return 1;
    }
    lua_createtable(L, nd, 0);
    for (int i = 0; i < nd; i++) {
        lua_pushinteger(L, kdx_tensor_strides(t)[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_size(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "size");
    if (lua_isnoneornil(L, 2)) return l_shape(L);
    int nd = kdx_tensor_ndim(t);
    if (nd == 0) return luaL_error(L, "kdx.size: a 0-d tensor has no dims");
    lua_pushinteger(L, kdx_tensor_shape(t)[kdxL_checkdim(L, 2, nd, "size")]);
    return 1;
}

static int l_dim(lua_State *L)
{
    lua_pushinteger(L, kdx_tensor_ndim(kdxL_checktensor(L, 1, "dim")));
    return 1;
}

static int l_numel(lua_State *L)
{
    lua_pushinteger(L, kdx_tensor_numel(kdxL_checktensor(L, 1, "numel")));
    return 1;
}

static int l_dtype(lua_State *L)
{
    lua_pushstring(L, kdx_dtype_name(kdx_tensor_dtype(kdxL_checktensor(L, 1, "dtype"))));
    return 1;
}

static int l_is_contiguous(lua_State *L)
{
    lua_pushboolean(L, kdx_tensor_is_contiguous(kdxL_checktensor(L, 1, "is_contiguous")));
    return 1;
}

static int l_storage_id(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)kdx_tensor_storage_id(kdxL_checktensor(L, 1, "storage_id")));
    return 1;
}

static int l_len(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "__len");
    if (kdx_tensor_ndim(t) == 0) return luaL_error(L, "kdx.__len: a 0-d tensor has no length");
    lua_pushinteger(L, kdx_tensor_shape(t)[0]);
    return 1;
}

static void push_element(lua_State *L, const kdx_tensor *t, const int64_t *idx)
{
    if (kdx_tensor_dtype(t) == KDX_DTYPE_I64) {
        int64_t v;
        kdxL_check(L, kdx_tensor_get_i64(t, idx, &v));
        lua_pushinteger(L, (lua_Integer)v);
    } else {
        double v;
        kdxL_check(L, kdx_tensor_get(t, idx, &v));
        lua_pushnumber(L, v);
    }
}

/* Reads the indices args from..from+ndim-1 (1-based) into idx. */
static void check_indices(lua_State *L, const kdx_tensor *t, int from, int64_t *idx, const char *fname)
{
    int nd = kdx_tensor_ndim(t);
    for (int i = 0; i < nd; i++) {
        if (lua_isnoneornil(L, from + i))
            luaL_error(L, "kdx.%s: %d indices needed for a %d-d tensor, got %d", fname, nd, nd, i);
        idx[i] = kdxL_checkindex(L, from + i, kdx_tensor_shape(t)[i], fname);
    }
}

static int l_get(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "get");
    int64_t idx[KDX_MAX_DIMS];
    int nd = kdx_tensor_ndim(t);
    if (lua_gettop(L) - 1 != nd)
        return luaL_error(L, "kdx.get: %d indices needed for a %d-d tensor, got %d", nd, nd, lua_gettop(L) - 1);
    check_indices(L, t, 2, idx, "get");
    push_element(L, t, idx);
    return 1;
}

static int l_set(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "set");
    int nd = kdx_tensor_ndim(t);
    if (lua_gettop(L) - 2 != nd)
        return luaL_error(L, "kdx.set: %d indices and a value needed for a %d-d tensor, got %d arguments", nd, nd,
                          lua_gettop(L) - 1);
    int64_t idx[KDX_MAX_DIMS];
    check_indices(L, t, 2, idx, "set");
    int v = nd + 2;
    if (lua_type(L, v) != LUA_TNUMBER) return luaL_error(L, "kdx.set: the value must be a number, got %s", luaL_typename(L, v));
    if (lua_isinteger(L, v)) kdxL_check(L, kdx_tensor_set_i64(t, idx, (int64_t)lua_tointeger(L, v)));
    else kdxL_check(L, kdx_tensor_set(t, idx, lua_tonumber(L, v)));
    lua_settop(L, 1);
    return 1;
}

static int l_item(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "item");
    if (kdx_tensor_numel(t) != 1)
        return luaL_error(L, "kdx.item: the tensor has %d elements, item() needs exactly one", (int)kdx_tensor_numel(t));
    int64_t zero[KDX_MAX_DIMS] = {0};
    push_element(L, t, zero);
    return 1;
}

static void totable_rec(lua_State *L, const kdx_tensor *t, int d, int64_t *idx)
{
    int nd = kdx_tensor_ndim(t);
    if (d == nd) {
        push_element(L, t, idx);
        return;
    }
    int64_t n = kdx_tensor_shape(t)[d];
    luaL_checkstack(L, 3, "totable");
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        idx[d] = i;
        totable_rec(L, t, d + 1, idx);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static int l_totable(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "totable");
    int64_t idx[KDX_MAX_DIMS] = {0};
    totable_rec(L, t, 0, idx);
    return 1;
}

/* ---- views ---- */

static int l_view_or_reshape(lua_State *L, const char *fname, int copy_ok)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, fname);
    int64_t shape[KDX_MAX_DIMS];
    int nd = kdxL_checkshape(L, 2, shape, fname);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, copy_ok ? kdx_reshape(t, nd, shape, box) : kdx_view(t, nd, shape, box));
    return 1;
}

static int l_reshape(lua_State *L) { return l_view_or_reshape(L, "reshape", 1); }
static int l_view(lua_State *L) { return l_view_or_reshape(L, "view", 0); }

static int l_transpose(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "transpose");
    int nd = kdx_tensor_ndim(t);
    int a = kdxL_checkdim(L, 2, nd, "transpose"), b = kdxL_checkdim(L, 3, nd, "transpose");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_transpose(t, a, b, box));
    return 1;
}

static int l_t(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "t");
    int nd = kdx_tensor_ndim(t);
    if (nd > 2) return luaL_error(L, "kdx.t: expects a tensor of at most 2 dims, got %d (use transpose)", nd);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, nd < 2 ? kdx_view(t, nd, kdx_tensor_shape(t), box) : kdx_transpose(t, 0, 1, box));
    return 1;
}

static int l_permute(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "permute");
    int nd = kdx_tensor_ndim(t), dims[KDX_MAX_DIMS], n = 0;
    if (lua_type(L, 2) == LUA_TTABLE) {
        n = (int)lua_rawlen(L, 2);
        if (n != nd) return luaL_error(L, "kdx.permute: %d dims given for a %d-d tensor", n, nd);
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, 2, i + 1);
            dims[i] = kdxL_dimentry(L, -1, i + 1, nd, "permute");
            lua_pop(L, 1);
        }
    } else {
        n = lua_gettop(L) - 1;
        if (n != nd) return luaL_error(L, "kdx.permute: %d dims given for a %d-d tensor", n, nd);
        for (int i = 0; i < n; i++) dims[i] = kdxL_checkdim(L, i + 2, nd, "permute");
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (dims[i] == dims[j]) return luaL_error(L, "kdx.permute: dim %d appears twice", dims[i] + 1);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_permute(t, dims, n, box));
    return 1;
}

static int l_narrow(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "narrow");
    int nd = kdx_tensor_ndim(t);
    if (nd == 0) return luaL_error(L, "kdx.narrow: cannot narrow a 0-d tensor");
    int d = kdxL_checkdim(L, 2, nd, "narrow");
    int64_t size = kdx_tensor_shape(t)[d];
    lua_Integer start = kdxL_checkint(L, 3, "narrow", "start"), len = kdxL_checkint(L, 4, "narrow", "length");
    /* start may be size+1 for an empty narrow at the end */
    if (start == 0 || start > size + 1 || start < -size)
        return luaL_error(L, "kdx.narrow: start %I out of range for dim %d of size %I", (LUAI_UACINT)start, d + 1,
                          (LUAI_UACINT)size);
    int64_t s0 = start > 0 ? start - 1 : start + size;
    if (len < 0 || len > size - s0) /* written so that it cannot overflow */
        return luaL_error(L, "kdx.narrow: start %I with length %I runs past dim %d of size %I", (LUAI_UACINT)start,
                          (LUAI_UACINT)len, d + 1, (LUAI_UACINT)size);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_narrow(t, d, s0, len, box));
    return 1;
}

static int l_select(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "select");
    int nd = kdx_tensor_ndim(t);
    if (nd == 0) return luaL_error(L, "kdx.select: cannot select from a 0-d tensor");
    int d = kdxL_checkdim(L, 2, nd, "select");
    int64_t i = kdxL_checkindex(L, 3, kdx_tensor_shape(t)[d], "select");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_select(t, d, i, box));
    return 1;
}

static int l_squeeze(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "squeeze");
    int all = lua_isnoneornil(L, 2);
    int d = all ? 0 : kdxL_checkdim(L, 2, kdx_tensor_ndim(t), "squeeze"); /* a 0-d tensor takes dim 1 or -1 */
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_squeeze(t, d, all, box));
    return 1;
}

static int l_unsqueeze(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "unsqueeze");
    /* Positions run 1..ndim+1; -1 appends at the end. */
    int d = kdxL_checkdim(L, 2, kdx_tensor_ndim(t) + 1, "unsqueeze");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_unsqueeze(t, d, box));
    return 1;
}

static int l_expand(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "expand");
    int64_t shape[KDX_MAX_DIMS];
    int nd = kdxL_checkshape(L, 2, shape, "expand");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_expand(t, nd, shape, box));
    return 1;
}

static int l_expand_as(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "expand_as"), *o = kdxL_checktensor(L, 2, "expand_as");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_expand(t, kdx_tensor_ndim(o), kdx_tensor_shape(o), box), "expand_as");
    return 1;
}

static int l_flatten(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "flatten");
    int nd = kdx_tensor_ndim(t);
    int a = lua_isnoneornil(L, 2) ? 0 : kdxL_checkdim(L, 2, nd, "flatten");
    int b = lua_isnoneornil(L, 3) ? (nd ? nd - 1 : 0) : kdxL_checkdim(L, 3, nd, "flatten");
    if (a > b) return luaL_error(L, "kdx.flatten: start dim %d comes after end dim %d", a + 1, b + 1);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_flatten(t, a, b, box));
    return 1;
}

static int l_contiguous(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "contiguous");
    if (kdx_tensor_is_contiguous(t)) {
        lua_settop(L, 1);
        return 1;
    }
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_clone(t, box));
    return 1;
}

static int l_clone(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "clone");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_clone(t, box));
    return 1;
}

static int l_copy_(lua_State *L)
{
    lua_settop(L, 2);
    kdx_tensor *t = kdxL_checktensor(L, 1, "copy_");
    kdx_tensor *src = kdxL_astensor(L, 2, "copy_", kdx_tensor_dtype(t));
    kdxL_check(L, kdx_copy_(t, src));
    lua_settop(L, 1);
    return 1;
}

static int convert(lua_State *L, const char *fname, kdx_dtype dt)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, fname);
    if (kdx_tensor_dtype(t) == dt) {
        lua_settop(L, 1);
        return 1;
    }
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_to(t, dt, box));
    return 1;
}

static int l_float(lua_State *L) { return convert(L, "float", KDX_DTYPE_F32); }
static int l_double(lua_State *L) { return convert(L, "double", KDX_DTYPE_F64); }
static int l_long(lua_State *L) { return convert(L, "long", KDX_DTYPE_I64); }
static int l_to(lua_State *L)
{
    kdxL_checktensor(L, 1, "to");
    if (lua_isnoneornil(L, 2)) return luaL_error(L, "kdx.to: %s (dtype) is missing", kdxL_argstr(L, 2));
    return convert(L, "to", kdxL_optdtype(L, 2, KDX_DTYPE_F32, "to"));
}

static int l_type_as(lua_State *L)
{
    kdxL_checktensor(L, 1, "type_as");
    return convert(L, "type_as", kdx_tensor_dtype(kdxL_checktensor(L, 2, "type_as")));
}

static int l_is_tensor(lua_State *L)
{
    lua_pushboolean(L, kdxL_totensor(L, 1) != NULL);
    return 1;
}

void kdxL_open_tensor(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {
        {"uniform_", l_uniform_}, {"normal_", l_normal_}, {"shape", l_shape}, {"stride", l_stride},
        {"size", l_size}, {"dim", l_dim}, {"numel", l_numel}, {"dtype", l_dtype},
        {"is_contiguous", l_is_contiguous}, {"storage_id", l_storage_id}, {"get", l_get}, {"set", l_set},
        {"item", l_item}, {"totable", l_totable}, {"reshape", l_reshape}, {"view", l_view},
        {"transpose", l_transpose}, {"t", l_t}, {"permute", l_permute}, {"narrow", l_narrow},
        {"select", l_select}, {"squeeze", l_squeeze}, {"unsqueeze", l_unsqueeze}, {"expand", l_expand},
        {"expand_as", l_expand_as}, {"flatten", l_flatten}, {"contiguous", l_contiguous}, {"clone", l_clone},
        {"copy_", l_copy_}, {"float", l_float}, {"double", l_double}, {"long", l_long}, {"to", l_to},
        {"type_as", l_type_as}, {"zeros_like", l_zeros_like}, {"ones_like", l_ones_like},
        {"full_like", l_full_like}, {"rand_like", l_rand_like}, {"randn_like", l_randn_like},
        {NULL, NULL}};
    static const luaL_Reg creators[] = {
        {"tensor", l_tensor}, {"zeros", l_zeros}, {"ones", l_ones}, {"empty", l_empty}, {"full", l_full},
        {"rand", l_rand}, {"randn", l_randn}, {"arange", l_arange}, {"linspace", l_linspace}, {"eye", l_eye},
        {"randint", l_randint}, {"randperm", l_randperm}, {"is_tensor", l_is_tensor}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 1);
    kdxL_register(L, mod, methods, creators, 0);

    luaL_getmetatable(L, KDXL_TENSOR);
    lua_pushcfunction(L, l_tensor_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tensor_gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_len);
    lua_setfield(L, -2, "__len");
    lua_pop(L, 1);
}
