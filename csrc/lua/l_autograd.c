/* l_autograd.c — autograd from Lua: requires_grad, .grad, backward, kdx.grad,
   no_grad/enable_grad, detach; and the tensor __index that serves .grad. */
#include "kdx_lua.h"

#include <string.h>

/* t:requires_grad() -> bool; t:requires_grad(flag) -> t (sets it, leaves only) */
static int l_requires_grad(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "requires_grad");
    if (lua_isnone(L, 2)) {
        lua_pushboolean(L, kdx_tensor_requires_grad(t));
        return 1;
    }
    if (!lua_isboolean(L, 2)) return luaL_error(L, "kdx.requires_grad: the flag must be a boolean, got %s", luaL_typename(L, 2));
    kdxL_check(L, kdx_tensor_set_requires_grad(t, lua_toboolean(L, 2)));
    lua_settop(L, 1);
    return 1;
}

/* t:requires_grad_(flag = true) -> t */
static int l_requires_grad_(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "requires_grad_");
    int flag = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
    kdxL_check(L, kdx_tensor_set_requires_grad(t, flag));
    lua_settop(L, 1);
    return 1;
}

static int l_is_leaf(lua_State *L)
{
    lua_pushboolean(L, kdx_tensor_is_leaf(kdxL_checktensor(L, 1, "is_leaf")));
    return 1;
}

static int l_grad_fn(lua_State *L)
{
    const char *name = kdx_tensor_grad_fn_name(kdxL_checktensor(L, 1, "grad_fn"));
    if (name) lua_pushstring(L, name);
    else lua_pushnil(L);
    return 1;
}

static int l_version(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)kdx_tensor_version(kdxL_checktensor(L, 1, "version")));
    return 1;
}

static int l_detach(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "detach");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_detach(t, box));
    return 1;
}

/* t:backward(grad?, {retain_graph = false, create_graph = false}) */
static int l_backward(lua_State *L)
{
    lua_settop(L, 3);
    kdx_tensor *t = kdxL_checktensor(L, 1, "backward");
    int o = 0;
    kdx_tensor *g = NULL;
    if (lua_istable(L, 2) && !kdxL_totensor(L, 2)) o = 2; /* t:backward{retain_graph = true} */
    else if (!lua_isnoneornil(L, 2)) g = kdxL_checktensor(L, 2, "backward");
    if (!o && !lua_isnoneornil(L, 3)) {
        kdxL_checktable(L, 3, "backward", "options");
        o = 3;
    }
    int create = kdxL_optfield_bool(L, o, "create_graph", 0, "backward");
    int retain = kdxL_optfield_bool(L, o, "retain_graph", create, "backward");
    kdxL_check(L, kdx_backward(t, g, retain, create));
    return 0;
}

/* The tensors of a tensor-or-list argument, in a userdata array on the stack;
   NULL entries (holes) are allowed only when holes is set. */
static const kdx_tensor **tensor_list(lua_State *L, int arg, const char *what, int holes, int *n)
{
    kdx_tensor *one = kdxL_totensor(L, arg);
    if (one || kdxL_isclosed(L, arg)) {
        const kdx_tensor **ts = lua_newuserdatauv(L, sizeof *ts, 0);
        ts[0] = kdxL_checktensor(L, arg, "grad");
        *n = 1;
        return ts;
    }
    if (!lua_istable(L, arg))
        luaL_error(L, "kdx.grad: %s must be a tensor or a list of tensors, got %s", what, luaL_typename(L, arg));
    *n = (int)lua_rawlen(L, arg);
    if (*n == 0) luaL_error(L, "kdx.grad: %s is an empty list", what);
    const kdx_tensor **ts = lua_newuserdatauv(L, (size_t)*n * sizeof *ts, 0);
    for (int i = 0; i < *n; i++) {
        lua_rawgeti(L, arg, i + 1);
        ts[i] = kdxL_totensor(L, -1);
        if (!ts[i] && !(holes && lua_isnil(L, -1)))
            luaL_error(L, "kdx.grad: entry %d of %s is a %s, not a tensor", i + 1, what,
                       kdxL_isclosed(L, -1) ? "closed tensor" : luaL_typename(L, -1));
        lua_pop(L, 1); /* the list keeps it alive */
    }
    return ts;
}

/* kdx.grad(outputs, inputs, {grad_outputs, create_graph, retain_graph, allow_unused}) -> {grads} */
static int l_grad(lua_State *L)
{
    lua_settop(L, 3);
    int o = 0;
    if (!lua_isnoneornil(L, 3)) {
        kdxL_checktable(L, 3, "grad", "options");
        o = 3;
    }
    int nout, nin, ngo = 0;
    const kdx_tensor **outs = tensor_list(L, 1, "outputs", 0, &nout);
    const kdx_tensor **ins = tensor_list(L, 2, "inputs", 0, &nin);
    const kdx_tensor **gos = NULL;
    if (o && lua_getfield(L, o, "grad_outputs") != LUA_TNIL) {
        int at = lua_gettop(L);
        gos = tensor_list(L, at, "grad_outputs", 1, &ngo);
        if (ngo != nout)
            return luaL_error(L, "kdx.grad: %d grad_outputs for %d outputs", ngo, nout);
    } else {
        lua_pop(L, 1);
    }
    int create = kdxL_optfield_bool(L, o, "create_graph", 0, "grad");
    int retain = kdxL_optfield_bool(L, o, "retain_graph", create, "grad");
    int unused = kdxL_optfield_bool(L, o, "allow_unused", 0, "grad");
    /* Boxes first, so nothing leaks when the engine fails. */
    lua_createtable(L, nin, 0);
    int list = lua_gettop(L);
    kdx_tensor **grads = lua_newuserdatauv(L, (size_t)nin * sizeof *grads, 0);
    kdx_status s = kdx_grad(outs, nout, gos, ins, nin, retain, create, unused, grads);
    if (s != KDX_OK) return luaL_error(L, "kdx.%s", kdx_last_error());
    for (int i = 0; i < nin; i++) {
        kdx_tensor **box = kdxL_newbox(L);
        *box = grads[i];
        lua_rawseti(L, list, i + 1);
    }
    lua_settop(L, list);
    return 1;
}

/* Runs fn(...) with grad mode set to on, restoring the old mode even when fn
   raises; returns fn's results. */
static int with_grad_mode(lua_State *L, int on, const char *fname)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int was = kdx_set_grad_enabled(on);
    int base = 0;
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, base);
    kdx_set_grad_enabled(was);
    if (status != LUA_OK) return lua_error(L);
    (void)fname;
    return lua_gettop(L);
}

static int l_no_grad(lua_State *L) { return with_grad_mode(L, 0, "no_grad"); }
static int l_enable_grad(lua_State *L) { return with_grad_mode(L, 1, "enable_grad"); }

static int l_is_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, kdx_grad_enabled());
    return 1;
}

static int l_set_grad_enabled(lua_State *L)
{
    if (!lua_isboolean(L, 1)) return luaL_error(L, "kdx.set_grad_enabled: the flag must be a boolean");
    lua_pushboolean(L, kdx_set_grad_enabled(lua_toboolean(L, 1)));
    return 1;
}

/* __index: methods first (the common case), then the fields .grad, .is_leaf
   (as PyTorch spells them as attributes), .requires_grad. */
static int l_tensor_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    if (lua_type(L, 2) != LUA_TSTRING) return 1;
    const char *k = lua_tostring(L, 2);
    kdx_tensor *t = kdxL_totensor(L, 1);
    if (!t) return 1;
    if (strcmp(k, "grad") == 0) {
        kdx_tensor *g = kdx_tensor_grad(t);
        if (!g) return 1;
        kdx_tensor **box = kdxL_newbox(L);
        *box = kdx_tensor_retain(g);
        return 1;
    }
    return 1;
}

/* __newindex: t.grad = g (or nil) */
static int l_tensor_newindex(lua_State *L)
{
    kdx_tensor *t = kdxL_checktensor(L, 1, "__newindex");
    const char *k = lua_tostring(L, 2);
    if (!k || strcmp(k, "grad") != 0)
        return luaL_error(L, "kdx.Tensor: cannot set field '%s' (only .grad can be assigned)", k ? k : "?");
    if (lua_isnil(L, 3)) {
        kdx_tensor_set_grad(t, NULL);
        return 0;
    }
    kdx_tensor *g = kdxL_checktensor(L, 3, "__newindex");
    if (kdx_tensor_ndim(g) != kdx_tensor_ndim(t) ||
        memcmp(kdx_tensor_shape(g), kdx_tensor_shape(t), (size_t)kdx_tensor_ndim(t) * sizeof(int64_t)))
        return luaL_error(L, "kdx.Tensor: .grad must have the tensor's shape");
    kdx_tensor_set_grad(t, g);
    return 0;
}

void kdxL_open_autograd(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {
        {"requires_grad", l_requires_grad}, {"requires_grad_", l_requires_grad_}, {"is_leaf", l_is_leaf},
        {"grad_fn", l_grad_fn}, {"version", l_version}, {"detach", l_detach}, {"backward", l_backward},
        {NULL, NULL}};
    static const luaL_Reg mod_only[] = {
        {"grad", l_grad}, {"no_grad", l_no_grad}, {"enable_grad", l_enable_grad},
        {"is_grad_enabled", l_is_grad_enabled}, {"set_grad_enabled", l_set_grad_enabled}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 1);
    kdxL_register(L, mod, methods, mod_only, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kdxL_tensor_mt_key);
    lua_pushvalue(L, methods);
    lua_pushcclosure(L, l_tensor_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tensor_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pop(L, 1);
}
