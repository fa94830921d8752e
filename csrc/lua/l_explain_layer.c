/* l_explain_layer.c — the noise tunnel, GradientShap and the layer
   attributions from Lua. Two more callback kinds than l_explain.c's model:
   an attribution method (a Lua function (xb, ids) -> attr, ids 1-based) for
   the noise tunnel, and a layer runner (a Lua function (xb, replace|nil) ->
   outputs, layer output) that lua/kdx/explain/gradlayer.lua builds from a
   module and a layer name. Both run under lua_pcall, so a Lua error comes
   back to the engine as a status. */
#include "kdx_lua.h"

#include <stdio.h>
#include <string.h>

typedef struct lua_cb {
    lua_State *L;
    int fn; /* absolute stack index of the Lua function */
} lua_cb;

/* The error at the top of the stack as a status (popped). */
static kdx_status raised(lua_State *L, const char *what)
{
    kdx_status s = kdx_fail(KDX_ESTATE, "%s raised an error: %s", what,
                            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
    lua_pop(L, 1);
    return s;
}

static kdx_status call_lua_method(void *ud, const kdx_tensor *x, const kdx_tensor *ids, kdx_tensor **attr)
{
    lua_cb *cb = ud;
    lua_State *L = cb->L;
    if (!lua_checkstack(L, 4)) return kdx_fail(KDX_ENOMEM, "noise_tunnel: Lua stack overflow");
    lua_pushvalue(L, cb->fn);
    kdx_tensor **bx = kdxL_newbox(L);
    *bx = kdx_tensor_retain((kdx_tensor *)x);
    kdx_tensor **bi = kdxL_newbox(L);
    kdx_status s = kdx_binary_scalar(KDX_BIN_ADD, ids, 1, 0, bi); /* 1-based sample numbers for Lua */
    if (s != KDX_OK) {
        lua_pop(L, 3);
        return s;
    }
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) return raised(L, "noise_tunnel: the inner method");
    kdx_tensor *r = kdxL_totensor(L, -1);
    if (!r) {
        s = kdx_fail(KDX_ESTATE, "noise_tunnel: the inner method returned a %s, not a tensor", luaL_typename(L, -1));
        lua_pop(L, 1);
        return s;
    }
    *attr = kdx_tensor_retain(r);
    lua_pop(L, 1);
    return KDX_OK;
}

static kdx_status call_lua_layer(void *ud, const kdx_tensor *x, const kdx_tensor *replace, kdx_tensor **y,
                                 kdx_tensor **act)
{
    lua_cb *cb = ud;
    lua_State *L = cb->L;
    if (!lua_checkstack(L, 4)) return kdx_fail(KDX_ENOMEM, "model: Lua stack overflow");
    lua_pushvalue(L, cb->fn);
    kdx_tensor **bx = kdxL_newbox(L);
    *bx = kdx_tensor_retain((kdx_tensor *)x);
    if (replace) {
        kdx_tensor **br = kdxL_newbox(L);
        *br = kdx_tensor_retain((kdx_tensor *)replace);
    } else {
        lua_pushnil(L);
    }
    if (lua_pcall(L, 2, 2, 0) != LUA_OK) return raised(L, "model: the model");
    kdx_tensor *r = kdxL_totensor(L, -2), *a = kdxL_totensor(L, -1);
    if (!r || !a) {
        kdx_status s = kdx_fail(KDX_ESTATE, "model: the model returned a %s and a layer output %s, not tensors",
                                luaL_typename(L, -2), luaL_typename(L, -1));
        lua_pop(L, 2);
        return s;
    }
    *y = kdx_tensor_retain(r);
    *act = kdx_tensor_retain(a);
    lua_pop(L, 2);
    return KDX_OK;
}

/* An engine failure as "kdx.explain.<fname>: <message>". */
static void check_status(lua_State *L, kdx_status s, const char *fname)
{
    char name[64];
    snprintf(name, sizeof name, "explain.%s", fname);
    kdxL_checkas(L, s, name);
}

static void check_function(lua_State *L, int arg, const char *fname, const char *what)
{
    if (lua_type(L, arg) != LUA_TFUNCTION)
        luaL_error(L, "kdx.explain.%s: %s must be a function, got %s", fname, what, luaL_typename(L, arg));
}

static kdx_ig_method check_ig_method(lua_State *L, int arg, const char *fname)
{
    static const char *const names[] = {"gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                                        "riemann_trapezoid", NULL};
    static const kdx_ig_method methods[] = {KDX_IG_GAUSS_LEGENDRE, KDX_IG_RIEMANN_LEFT, KDX_IG_RIEMANN_RIGHT,
                                            KDX_IG_RIEMANN_MIDDLE, KDX_IG_RIEMANN_TRAPEZOID};
    const char *m = luaL_checkstring(L, arg);
    for (int i = 0; names[i]; i++)
        if (strcmp(m, names[i]) == 0) return methods[i];
    luaL_error(L, "kdx.explain.%s: method must be gausslegendre, riemann_left, riemann_right, riemann_middle or "
                  "riemann_trapezoid, got \"%s\"", fname, m);
    return KDX_IG_GAUSS_LEGENDRE;
}

/* _noise_tunnel(method_fn, x, nt_type, samples, stdev, absolute, seed, batch_size) */
static int l_noise_tunnel(lua_State *L)
{
    lua_settop(L, 8);
    const char *fname = "noise_tunnel";
    check_function(L, 1, fname, "method");
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    const char *t = luaL_checkstring(L, 3);
    kdx_nt_type type = KDX_NT_SMOOTHGRAD;
    if (strcmp(t, "smoothgrad_sq") == 0) type = KDX_NT_SMOOTHGRAD_SQ;
    else if (strcmp(t, "vargrad") == 0) type = KDX_NT_VARGRAD;
    else if (strcmp(t, "smoothgrad") != 0)
        return luaL_error(L, "kdx.explain.noise_tunnel: nt_type must be smoothgrad, smoothgrad_sq or vargrad, got \"%s\"", t);
    int samples = (int)kdxL_checkint(L, 4, fname, "samples");
    double stdev = kdxL_checknum(L, 5, fname, "stdev");
    int absolute = lua_toboolean(L, 6);
    uint64_t seed = (uint64_t)kdxL_checkint(L, 7, fname, "seed");
    int64_t bs = kdxL_checkint(L, 8, fname, "batch_size");
    lua_cb cb = {L, 1};
    kdx_attr_method am = {call_lua_method, &cb};
    kdx_tensor **box = kdxL_newbox(L);
    check_status(L, kdx_attr_noise_tunnel(&am, x, type, samples, stdev, absolute, seed, bs, box), fname);
    return 1;
}

/* _gradient_shap(model, x, baselines, target, samples, stdev, seed, batch_size) -> attr, delta */
static int l_gradient_shap(lua_State *L)
{
    lua_settop(L, 8);
    const char *fname = "gradient_shap";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    kdx_tensor *base = kdxL_checktensor(L, 3, fname);
    kdx_tensor *target = kdxL_checktarget(L, 4, fname);
    int samples = (int)kdxL_checkint(L, 5, fname, "samples");
    double stdev = kdxL_checknum(L, 6, fname, "stdev");
    uint64_t seed = (uint64_t)kdxL_checkint(L, 7, fname, "seed");
    int64_t bs = kdxL_checkint(L, 8, fname, "batch_size");
    kdx_tensor **attr = kdxL_newbox(L), **delta = kdxL_newbox(L);
    check_status(L, kdx_attr_gradient_shap(&m, x, base, target, samples, stdev, seed, bs, attr, delta), fname);
    return 2;
}

/* _gradcam(run, x, target, plusplus, relu, out_h, out_w, batch_size) */
static int l_gradcam(lua_State *L)
{
    lua_settop(L, 8);
    int pp = lua_toboolean(L, 4);
    const char *fname = pp ? "gradcam_pp" : "gradcam";
    check_function(L, 1, fname, "model");
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    kdx_tensor *target = kdxL_checktarget(L, 3, fname);
    lua_cb cb = {L, 1};
    kdx_layer_model lm = {call_lua_layer, &cb};
    kdx_tensor **box = kdxL_newbox(L);
    check_status(L,
                 kdx_attr_gradcam(&lm, x, target, pp ? KDX_CAM_GRADCAM_PP : KDX_CAM_GRADCAM, lua_toboolean(L, 5),
                                  kdxL_checkint(L, 6, fname, "height"), kdxL_checkint(L, 7, fname, "width"),
                                  kdxL_checkint(L, 8, fname, "batch_size"), box),
                 fname);
    return 1;
}

/* _layer_activation(run, x, target, times_grad, batch_size) */
static int l_layer_activation(lua_State *L)
{
    lua_settop(L, 5);
    int times = lua_toboolean(L, 4);
    const char *fname = times ? "layer_gradient_x_activation" : "layer_activation";
    check_function(L, 1, fname, "model");
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    kdx_tensor *target = kdxL_checktarget(L, 3, fname);
    lua_cb cb = {L, 1};
    kdx_layer_model lm = {call_lua_layer, &cb};
    kdx_tensor **box = kdxL_newbox(L);
    check_status(L, kdx_attr_layer_activation(&lm, x, target, times, kdxL_checkint(L, 5, fname, "batch_size"), box),
                 fname);
    return 1;
}

/* _layer_path(kind, run, x, baseline|nil, target, steps, method, batch_size) -> attr, delta;
   kind "ig" (layer integrated gradients) or "conductance". */
static int l_layer_path(lua_State *L)
{
    lua_settop(L, 8);
    int ig = strcmp(luaL_checkstring(L, 1), "ig") == 0;
    const char *fname = ig ? "layer_integrated_gradients" : "layer_conductance";
    check_function(L, 2, fname, "model");
    kdx_tensor *x = kdxL_checktensor(L, 3, fname);
    kdx_tensor *base = lua_isnil(L, 4) ? NULL : kdxL_astensor(L, 4, fname, kdx_tensor_dtype(x));
    kdx_tensor *target = kdxL_checktarget(L, 5, fname);
    int steps = (int)kdxL_checkint(L, 6, fname, "steps");
    kdx_ig_method method = check_ig_method(L, 7, fname);
    int64_t bs = kdxL_checkint(L, 8, fname, "batch_size");
    lua_cb cb = {L, 2};
    kdx_layer_model lm = {call_lua_layer, &cb};
    kdx_tensor **attr = kdxL_newbox(L), **delta = kdxL_newbox(L);
    kdx_status s = ig ? kdx_attr_layer_integrated_gradients(&lm, x, base, target, steps, method, bs, attr, delta)
                      : kdx_attr_layer_conductance(&lm, x, base, target, steps, method, bs, attr, delta);
    check_status(L, s, fname);
    return 2;
}

void kdxL_open_explain_layer(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {{"_noise_tunnel", l_noise_tunnel},         {"_gradient_shap", l_gradient_shap},
                                   {"_gradcam", l_gradcam},                   {"_layer_activation", l_layer_activation},
                                   {"_layer_path", l_layer_path},             {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
