/* l_explain.c — the attribution methods from Lua: a Lua function or module
   becomes a kdx_model callback, called with lua_pcall so that an error in
   the model comes back to the engine as a status (no longjmp through C
   frames that hold memory). */
#include "kdx_lua.h"

#include <string.h>

static kdx_status call_lua_model(void *ud, const kdx_tensor *x, kdx_tensor **y)
{
    kdxL_model *m = ud;
    lua_State *L = m->L;
    if (!lua_checkstack(L, 4)) return kdx_fail(KDX_ENOMEM, "model: Lua stack overflow");
    lua_pushvalue(L, m->fn);
    kdx_tensor **box = kdxL_newbox(L);
    *box = kdx_tensor_retain((kdx_tensor *)x);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        kdx_status s = kdx_fail(KDX_ESTATE, "model: the model raised an error: %s",
                                lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
        lua_pop(L, 1);
        return s;
    }
    kdx_tensor *r = kdxL_totensor(L, -1);
    if (!r) {
        kdx_status s = kdx_fail(KDX_ESTATE, "model: the model returned a %s, not a tensor", luaL_typename(L, -1));
        lua_pop(L, 1);
        return s;
    }
    *y = kdx_tensor_retain(r);
    lua_pop(L, 1);
    return KDX_OK;
}

kdx_tensor *kdxL_checktarget(lua_State *L, int arg, const char *fname)
{
    if (lua_isnoneornil(L, arg)) return NULL;
    kdx_tensor *t = kdxL_totensor(L, arg);
    if (!t && lua_type(L, arg) == LUA_TNUMBER) {
        kdx_tensor **b = kdxL_newbox(L);
        kdxL_check(L, kdx_scalar(KDX_DTYPE_I64, (double)kdxL_checkint(L, arg, fname, "target"), b));
        t = *b;
    } else if (!t) {
        t = kdxL_astensor(L, arg, fname, KDX_DTYPE_I64);
    }
    if (kdx_tensor_dtype(t) != KDX_DTYPE_I64)
        luaL_error(L, "kdx.explain.%s: target classes must be int64, got %s", fname, kdx_dtype_name(kdx_tensor_dtype(t)));
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_binary_scalar(KDX_BIN_SUB, t, 1, 0, box)); /* 1-based in Lua */
    return *box;
}

kdx_tensor *kdxL_optfeaturemask(lua_State *L, int arg, const char *fname)
{
    if (lua_isnoneornil(L, arg)) return NULL;
    kdx_tensor *t = kdxL_totensor(L, arg);
    if (!t) t = kdxL_astensor(L, arg, fname, KDX_DTYPE_I64);
    if (kdx_tensor_dtype(t) != KDX_DTYPE_I64)
        luaL_error(L, "kdx.explain.%s: feature_mask must hold int64 group ids, got %s", fname,
                   kdx_dtype_name(kdx_tensor_dtype(t)));
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_binary_scalar(KDX_BIN_SUB, t, 1, 0, box)); /* 1-based in Lua */
    return *box;
}

void kdxL_checkmodel(lua_State *L, int arg, const char *fname, kdxL_model *lm, kdx_model *m)
{
    int t = lua_type(L, arg);
    int ok = t == LUA_TFUNCTION;
    if (!ok && t == LUA_TTABLE && luaL_getmetafield(L, arg, "__call") != LUA_TNIL) {
        lua_pop(L, 1);
        ok = 1;
    }
    if (!ok) luaL_error(L, "kdx.explain.%s: model must be a function or a module, got %s", fname, luaL_typename(L, arg));
    lm->L = L;
    lm->fn = lua_absindex(L, arg);
    m->forward = call_lua_model;
    m->ud = lm;
}

/* _saliency(model, x, target, abs, times_input, batch_size) */
static int l_saliency(lua_State *L)
{
    lua_settop(L, 6);
    int times = lua_toboolean(L, 5);
    const char *fname = times ? "input_x_gradient" : "saliency";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    kdx_tensor *target = kdxL_checktarget(L, 3, fname);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_attr_saliency(&m, x, target, lua_toboolean(L, 4), times, kdxL_checkint(L, 6, fname, "batch_size"),
                                      box),
                 fname);
    return 1;
}

/* _integrated_gradients(model, x, baseline|nil, target, steps, method, batch_size) -> attr, delta */
static int l_integrated_gradients(lua_State *L)
{
    lua_settop(L, 7);
    const char *fname = "integrated_gradients";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    kdx_tensor *base = lua_isnil(L, 3) ? NULL : kdxL_astensor(L, 3, fname, kdx_tensor_dtype(x));
    kdx_tensor *target = kdxL_checktarget(L, 4, fname);
    int steps = (int)kdxL_checkint(L, 5, fname, "steps");
    const char *method = luaL_checkstring(L, 6);
    static const struct { const char *name; kdx_ig_method m; } methods[] = {
        {"gausslegendre", KDX_IG_GAUSS_LEGENDRE}, {"riemann_left", KDX_IG_RIEMANN_LEFT},
        {"riemann_right", KDX_IG_RIEMANN_RIGHT}, {"riemann_middle", KDX_IG_RIEMANN_MIDDLE},
        {"riemann_trapezoid", KDX_IG_RIEMANN_TRAPEZOID}};
    int found = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(method, methods[i].name) == 0) found = i;
    if (found < 0)
        return luaL_error(L, "kdx.explain.integrated_gradients: method must be gausslegendre, riemann_left, "
                             "riemann_right, riemann_middle or riemann_trapezoid, got \"%s\"", method);
    kdx_tensor **attr = kdxL_newbox(L), **delta = kdxL_newbox(L);
    kdxL_checkas(L,
                 kdx_attr_integrated_gradients(&m, x, base, target, steps, methods[found].m,
                                               kdxL_checkint(L, 7, fname, "batch_size"), attr, delta),
                 fname);
    return 2;
}

void kdxL_open_explain(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {
        {"_saliency", l_saliency}, {"_integrated_gradients", l_integrated_gradients}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
