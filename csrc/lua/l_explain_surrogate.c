/* l_explain_surrogate.c — KernelSHAP, LIME, SLIC and their regression from
   Lua. Arguments arrive checked by lua/kdx/explain/surrogate.lua; this file
   converts them (1-based ids and classes to 0-based), makes the seeded
   generator, calls the engine and frees the generator before raising. */
#include "kdx_lua.h"

#include <string.h>

/* Runs st (an engine call that used gen), frees gen, then raises on failure. */
static void finish(lua_State *L, kdx_status st, kdx_generator *gen, const char *fname)
{
    kdx_generator_free(gen);
    kdxL_checkas(L, st, fname);
}

static kdx_generator *new_generator(lua_State *L, int arg, const char *fname)
{
    kdx_generator *gen = NULL;
    kdxL_checkas(L, kdx_generator_new((uint64_t)kdxL_checkint(L, arg, fname, "seed"), &gen), "explain");
    return gen;
}

/* Pushes the columns of info [N, 3] as a table {k1 = [N], k2 = [N], k3 = [N]}. */
static void push_info(lua_State *L, kdx_tensor *info, const char *k1, const char *k2, const char *k3, const char *fname)
{
    const char *keys[3] = {k1, k2, k3};
    lua_createtable(L, 0, 3);
    for (int j = 0; j < 3; j++) {
        kdx_tensor **col = kdxL_newbox(L), *sel = NULL;
        kdx_status s = kdx_select(info, 1, j, &sel);
        if (s == KDX_OK) s = kdx_contiguous(sel, col);
        kdx_tensor_release(sel);
        kdxL_checkas(L, s, fname);
        lua_setfield(L, -2, keys[j]);
    }
}

/* _kernel_shap(model, x, baseline|nil, feature_mask|nil, target, samples, paired, seed, batch_size) -> attr, info */
static int l_kernel_shap(lua_State *L)
{
    lua_settop(L, 9);
    const char *fname = "kernel_shap";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    kdx_tensor *base = lua_isnil(L, 3) ? NULL : kdxL_astensor(L, 3, fname, kdx_tensor_dtype(x));
    kdx_tensor *mask = kdxL_optfeaturemask(L, 4, fname);
    kdx_tensor *target = kdxL_checktarget(L, 5, fname);
    int64_t samples = kdxL_checkint(L, 6, fname, "samples"), bs = kdxL_checkint(L, 9, fname, "batch_size");
    int paired = lua_toboolean(L, 7);
    kdx_tensor **attr = kdxL_newbox(L), **info = kdxL_newbox(L);
    kdx_generator *gen = new_generator(L, 8, fname);
    finish(L, kdx_attr_kernel_shap(&m, x, base, mask, target, samples, paired, gen, bs, attr, info), gen,
           "explain.kernel_shap");
    push_info(L, *info, "base_value", "fx", "gap", "explain.kernel_shap");
    lua_remove(L, -2); /* the info box, once the table holds its columns */
    return 2;
}

/* _linreg(X, y, w|nil, alpha, intercept, a|nil, c) -> coef, intercept, r2 */
static int l_linreg(lua_State *L)
{
    lua_settop(L, 7);
    const char *fname = "linreg";
    kdx_tensor *X = kdxL_checktensor(L, 1, fname), *y = kdxL_checktensor(L, 2, fname);
    kdx_tensor *w = lua_isnil(L, 3) ? NULL : kdxL_checktensor(L, 3, fname);
    double alpha = kdxL_checknum(L, 4, fname, "alpha");
    kdx_tensor *a = lua_isnil(L, 6) ? NULL : kdxL_checktensor(L, 6, fname);
    double c = lua_isnil(L, 7) ? 0 : kdxL_checknum(L, 7, fname, "c");
    kdx_tensor **coef = kdxL_newbox(L);
    double b0 = 0, r2 = 0;
    kdxL_checkas(L, kdx_linreg(X, y, w, alpha, lua_toboolean(L, 5), a, c, coef, &b0, &r2), fname);
    lua_pushnumber(L, b0);
    lua_pushnumber(L, r2);
    return 3;
}

/* _lime(model, x, baseline|nil, feature_mask|nil, target, samples, kernel_width (0: default), distance,
   alpha, num_features (0: all), selection, seed, batch_size) -> attr, info */
static int l_lime(lua_State *L)
{
    lua_settop(L, 13);
    const char *fname = "lime";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    kdx_tensor *base = lua_isnil(L, 3) ? NULL : kdxL_astensor(L, 3, fname, kdx_tensor_dtype(x));
    kdx_tensor *mask = kdxL_optfeaturemask(L, 4, fname);
    kdx_tensor *target = kdxL_checktarget(L, 5, fname);
    static const char *dists[] = {"euclidean", "cosine", NULL};
    static const char *sels[] = {"none", "highest_weights", "forward_selection", "auto", NULL};
    kdx_lime_opts o;
    o.samples = kdxL_checkint(L, 6, fname, "samples");
    o.kernel_width = kdxL_checknum(L, 7, fname, "kernel_width");
    o.distance = (kdx_lime_distance)luaL_checkoption(L, 8, NULL, dists);
    o.alpha = kdxL_checknum(L, 9, fname, "alpha");
    o.num_features = kdxL_checkint(L, 10, fname, "num_features");
    o.selection = (kdx_lime_selection)luaL_checkoption(L, 11, NULL, sels);
    int64_t bs = kdxL_checkint(L, 13, fname, "batch_size");
    kdx_tensor **attr = kdxL_newbox(L), **info = kdxL_newbox(L);
    kdx_generator *gen = new_generator(L, 12, fname);
    finish(L, kdx_attr_lime(&m, x, base, mask, target, &o, gen, bs, attr, info), gen, "explain.lime");
    push_info(L, *info, "intercept", "score", "local_pred", "explain.lime");
    lua_remove(L, -2);
    return 2;
}

/* _slic(images [N, C, H, W], n_segments, compactness, max_iter, sigma) -> int64 [N, H, W] 0-based */
static int l_slic(lua_State *L)
{
    lua_settop(L, 5);
    const char *fname = "slic";
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    int64_t n = kdxL_checkint(L, 2, fname, "n_segments");
    double compactness = kdxL_checknum(L, 3, fname, "compactness");
    int iters = (int)kdxL_checkint(L, 4, fname, "max_iter");
    double sigma = kdxL_checknum(L, 5, fname, "sigma");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_slic(x, n, compactness, iters, sigma, box), "explain.slic");
    return 1;
}

void kdxL_open_explain_surrogate(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {{"_kernel_shap", l_kernel_shap}, {"_lime", l_lime}, {"_slic", l_slic},
                                   {"_linreg", l_linreg}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
