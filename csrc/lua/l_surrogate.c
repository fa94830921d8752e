/* l_surrogate.c — the surrogate models from Lua: CART trees and sparse
   logistic regression, fitted in the engine (surrogate_*.c). The Lua side
   (lua/kdx/surrogate.lua) checks the options; here labels turn 0-based and
   the engine's arrays come back boxed. */
#include "kdx_lua.h"

#include <string.h>

/* Targets at arg: an int64 tensor of 1-based classes (-> 0-based, pushed) or
   a float tensor of probabilities [N, C] (as it is). */
static kdx_tensor *check_targets(lua_State *L, int arg, const char *fname)
{
    kdx_tensor *t = kdxL_checktensor(L, arg, fname);
    if (kdx_tensor_dtype(t) != KDX_DTYPE_I64) return t;
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_binary_scalar(KDX_BIN_SUB, t, 1, 0, box)); /* 1-based in Lua */
    return *box;
}

static kdx_tensor *opt_tensor(lua_State *L, int arg, const char *fname)
{
    return lua_isnil(L, arg) ? NULL : kdxL_checktensor(L, arg, fname);
}

/* _tree_fit(x, y, weight|nil, n_classes, max_depth(-1: none), min_samples_split, min_samples_leaf,
   max_features(0: all), criterion, seed) -> feature, threshold, left, right, value, impurity, n_samples,
   weighted_n (node ids and features 0-based, -1 at leaves) */
static int l_tree_fit(lua_State *L)
{
    lua_settop(L, 10);
    const char *fname = "surrogate.tree:fit";
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    kdx_tensor *y = check_targets(L, 2, fname);
    kdx_tensor *w = opt_tensor(L, 3, fname);
    kdx_tree_options o;
    memset(&o, 0, sizeof o);
    int64_t nc = kdxL_checkint(L, 4, fname, "n_classes");
    o.max_depth = kdxL_checkint(L, 5, fname, "max_depth");
    o.min_samples_split = kdxL_checkint(L, 6, fname, "min_samples_split");
    o.min_samples_leaf = kdxL_checkint(L, 7, fname, "min_samples_leaf");
    o.max_features = kdxL_checkint(L, 8, fname, "max_features");
    const char *crit = luaL_checkstring(L, 9);
    if (strcmp(crit, "gini") == 0)
        o.criterion = KDX_TREE_GINI;
    else if (strcmp(crit, "entropy") == 0)
        o.criterion = KDX_TREE_ENTROPY;
    else
        return luaL_error(L, "kdx.%s: criterion must be \"gini\" or \"entropy\", got \"%s\"", fname, crit);
    o.seed = (uint64_t)kdxL_checkint(L, 10, fname, "seed");
    kdx_tensor **b[8];
    for (int i = 0; i < 8; i++) b[i] = kdxL_newbox(L);
    kdx_tree t;
    kdxL_checkas(L, kdx_surrogate_tree_fit(x, y, w, nc, &o, &t), fname);
    *b[0] = t.feature, *b[1] = t.threshold, *b[2] = t.left, *b[3] = t.right;
    *b[4] = t.value, *b[5] = t.impurity, *b[6] = t.n_samples, *b[7] = t.weighted_n;
    return 8;
}

/* _tree_apply(feature, threshold, left, right, x) -> 1-based leaf node of each row */
static int l_tree_apply(lua_State *L)
{
    lua_settop(L, 5);
    const char *fname = "surrogate.tree:apply";
    kdx_tree t;
    memset(&t, 0, sizeof t);
    t.feature = kdxL_checktensor(L, 1, fname);
    t.threshold = kdxL_checktensor(L, 2, fname);
    t.left = kdxL_checktensor(L, 3, fname);
    t.right = kdxL_checktensor(L, 4, fname);
    kdx_tensor *x = kdxL_checktensor(L, 5, fname);
    kdx_tensor **leaf = kdxL_newbox(L), **out = kdxL_newbox(L);
    kdxL_checkas(L, kdx_surrogate_tree_apply(&t, x, leaf), fname);
    kdxL_check(L, kdx_binary_scalar(KDX_BIN_ADD, *leaf, 1, 0, out)); /* 1-based in Lua */
    return 1;
}

/* _linear_fit(x, y, weight|nil, n_classes, l1, max_iter, tol, fit_intercept) -> coef, intercept, n_iter */
static int l_linear_fit(lua_State *L)
{
    lua_settop(L, 8);
    const char *fname = "surrogate.linear:fit";
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    kdx_tensor *y = check_targets(L, 2, fname);
    kdx_tensor *w = opt_tensor(L, 3, fname);
    int64_t nc = kdxL_checkint(L, 4, fname, "n_classes");
    kdx_linear_options o;
    o.l1 = kdxL_checknum(L, 5, fname, "l1");
    o.max_iter = kdxL_checkint(L, 6, fname, "max_iter");
    o.tol = kdxL_checknum(L, 7, fname, "tol");
    o.fit_intercept = lua_toboolean(L, 8);
    kdx_tensor **coef = kdxL_newbox(L), **icpt = kdxL_newbox(L);
    int64_t it = 0;
    kdxL_checkas(L, kdx_surrogate_linear_fit(x, y, w, nc, &o, coef, icpt, &it), fname);
    lua_pushinteger(L, (lua_Integer)it);
    return 3;
}

/* _linear_objective(x, y, weight|nil, coef, intercept, l1) -> number */
static int l_linear_objective(lua_State *L)
{
    lua_settop(L, 6);
    const char *fname = "surrogate.linear:objective";
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    kdx_tensor *y = check_targets(L, 2, fname);
    kdx_tensor *w = opt_tensor(L, 3, fname);
    kdx_tensor *coef = kdxL_checktensor(L, 4, fname), *icpt = kdxL_checktensor(L, 5, fname);
    double v = 0;
    kdxL_checkas(L, kdx_surrogate_linear_objective(x, y, w, coef, icpt, kdxL_checknum(L, 6, fname, "l1"), &v), fname);
    lua_pushnumber(L, v);
    return 1;
}

void kdxL_open_surrogate(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {{"_tree_fit", l_tree_fit},
                                   {"_tree_apply", l_tree_apply},
                                   {"_linear_fit", l_linear_fit},
                                   {"_linear_objective", l_linear_objective},
                                   {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
