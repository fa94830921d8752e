/* l_explain_modrules.c — DeepLift, guided backprop and deconvolution from
   Lua: argument checks and boxing only; the rules run in the engine
   (attr_modrules.c and the ops' backward functions). */
#include "kdx_lua.h"

/* _deeplift(model, x, baseline|nil, target, batch_size) -> attr, delta */
static int l_deeplift(lua_State *L)
{
    lua_settop(L, 5);
    const char *fname = "deeplift";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    kdx_tensor *base = lua_isnil(L, 3) ? NULL : kdxL_astensor(L, 3, fname, kdx_tensor_dtype(x));
    kdx_tensor *target = kdxL_checktarget(L, 4, fname);
    int64_t bs = kdxL_checkint(L, 5, fname, "batch_size");
    kdx_tensor **attr = kdxL_newbox(L), **delta = kdxL_newbox(L);
    kdxL_checkas(L, kdx_attr_deeplift(&m, x, base, target, bs, attr, delta), "explain.deeplift");
    return 2;
}

/* _guided_backprop / _deconvolution(model, x, target, batch_size) -> attr */
static int relu_rule(lua_State *L, const char *fname,
                     kdx_status (*fn)(const kdx_model *, const kdx_tensor *, const kdx_tensor *, int64_t, kdx_tensor **))
{
    lua_settop(L, 4);
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    kdx_tensor *target = kdxL_checktarget(L, 3, fname);
    int64_t bs = kdxL_checkint(L, 4, fname, "batch_size");
    const char *as = lua_pushfstring(L, "explain.%s", fname); /* messages read kdx.explain.<method> */
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, fn(&m, x, target, bs, box), as);
    return 1;
}

static int l_guided_backprop(lua_State *L) { return relu_rule(L, "guided_backprop", kdx_attr_guided_backprop); }

static int l_deconvolution(lua_State *L) { return relu_rule(L, "deconvolution", kdx_attr_deconvolution); }

void kdxL_open_modrules(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {{"_deeplift", l_deeplift},
                                   {"_guided_backprop", l_guided_backprop},
                                   {"_deconvolution", l_deconvolution},
                                   {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
