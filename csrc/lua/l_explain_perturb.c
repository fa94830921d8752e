/* l_explain_perturb.c — the perturbation attributions (occlusion, feature
   ablation, Shapley sampling and interactions) and the global explanations
   (permutation importance, partial dependence, H-statistic) from Lua. Lua
   checks the options (lua/kdx/explain/perturb.lua, global.lua); this file
   converts them (1-based -> 0-based), makes the seeded generator, wraps a Lua
   metric as a score callback and boxes the results. No math. */
#include "kdx_lua.h"

#include <string.h>

static int64_t int_list(lua_State *L, int arg, const char *fname, const char *what, int64_t *out, int64_t max,
                        int64_t minus);

/* A table of integers at arg (n <= max) into out, minus `minus` (1 for 1-based
   Lua indices); returns n. */
/* As int_list for a list of any length, into a buffer the GC owns (pushed). */
static int64_t *int_list_buf(lua_State *L, int arg, const char *fname, const char *what, int64_t *n)
{
    if (lua_type(L, arg) != LUA_TTABLE) luaL_error(L, "kdx.explain.%s: %s must be a table of integers", fname, what);
    int64_t len = (int64_t)lua_rawlen(L, arg);
    if (len > ((int64_t)1 << 24)) luaL_error(L, "kdx.explain.%s: %s is too long", fname, what);
    int64_t *buf = lua_newuserdatauv(L, (size_t)(len > 0 ? len : 1) * sizeof(int64_t), 0);
    *n = int_list(L, arg, fname, what, buf, len, 1);
    return buf;
}

static int64_t int_list(lua_State *L, int arg, const char *fname, const char *what, int64_t *out, int64_t max, int64_t minus)
{
    if (lua_type(L, arg) != LUA_TTABLE) luaL_error(L, "kdx.explain.%s: %s must be a table of integers", fname, what);
    int64_t n = (int64_t)lua_rawlen(L, arg);
    if (n > max) luaL_error(L, "kdx.explain.%s: %s has %d entries, at most %d", fname, what, (int)n, (int)max);
    for (int64_t i = 0; i < n; i++) {
        lua_rawgeti(L, arg, (lua_Integer)i + 1);
        int isint = 0;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        if (!isint) luaL_error(L, "kdx.explain.%s: %s must hold integers", fname, what);
        out[i] = (int64_t)v - minus;
    }
    return n;
}

static kdx_tensor *opt_baseline(lua_State *L, int arg, const char *fname, const kdx_tensor *x)
{
    return lua_isnoneornil(L, arg) ? NULL : kdxL_astensor(L, arg, fname, kdx_tensor_dtype(x));
}

/* A generator seeded with seed: freed by the caller before it raises. */
static kdx_generator *new_generator(lua_State *L, lua_Integer seed)
{
    kdx_generator *g = NULL;
    kdxL_check(L, kdx_generator_new((uint64_t)seed, &g));
    return g;
}

/* _occlusion(model, x, window, strides|nil, baseline|nil, target, batch_size) */
static int l_occlusion(lua_State *L)
{
    lua_settop(L, 7);
    const char *fname = "occlusion";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    int64_t win[KDX_MAX_DIMS], str[KDX_MAX_DIMS];
    int64_t D = kdx_tensor_ndim(x) - 1;
    if (int_list(L, 3, fname, "window", win, KDX_MAX_DIMS, 0) != D)
        return luaL_error(L, "kdx.explain.occlusion: window needs %d sizes (a sample's dims), got %d", (int)D,
                          (int)lua_rawlen(L, 3));
    if (!lua_isnil(L, 4) && int_list(L, 4, fname, "strides", str, KDX_MAX_DIMS, 0) != D)
        return luaL_error(L, "kdx.explain.occlusion: strides needs %d values (a sample's dims)", (int)D);
    kdx_tensor *base = opt_baseline(L, 5, fname, x);
    kdx_tensor *target = kdxL_checktarget(L, 6, fname);
    int64_t bs = kdxL_checkint(L, 7, fname, "batch_size");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_attr_occlusion(&m, x, win, lua_isnil(L, 4) ? NULL : str, base, target, bs, box), "explain.occlusion");
    return 1;
}

/* _feature_ablation(model, x, feature_mask|nil, baseline|nil, target, batch_size) */
static int l_feature_ablation(lua_State *L)
{
    lua_settop(L, 6);
    const char *fname = "feature_ablation";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    kdx_tensor *mask = kdxL_optfeaturemask(L, 3, fname);
    kdx_tensor *base = opt_baseline(L, 4, fname, x);
    kdx_tensor *target = kdxL_checktarget(L, 5, fname);
    int64_t bs = kdxL_checkint(L, 6, fname, "batch_size");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_attr_feature_ablation(&m, x, mask, base, target, bs, box), "explain.feature_ablation");
    return 1;
}

/* _shapley_sampling / _shapley_interactions(model, x, feature_mask|nil, baseline|nil, target, samples, seed, batch_size) */
static int shapley(lua_State *L, int interactions)
{
    lua_settop(L, 8);
    const char *fname = interactions ? "shapley_interactions" : "shapley_sampling";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, fname);
    kdx_tensor *mask = kdxL_optfeaturemask(L, 3, fname);
    kdx_tensor *base = opt_baseline(L, 4, fname, x);
    kdx_tensor *target = kdxL_checktarget(L, 5, fname);
    lua_Integer n = kdxL_checkint(L, 6, fname, "samples"), seed = kdxL_checkint(L, 7, fname, "seed");
    int64_t bs = kdxL_checkint(L, 8, fname, "batch_size");
    if (n < 1 || n > 1000000) return luaL_error(L, "kdx.explain.%s: samples must be in [1, 1000000]", fname);
    kdx_tensor **box = kdxL_newbox(L);
    kdx_generator *g = new_generator(L, seed);
    kdx_status s = interactions ? kdx_attr_shapley_interactions(&m, x, mask, base, target, (int)n, g, bs, box)
                                : kdx_attr_shapley_sampling(&m, x, mask, base, target, (int)n, g, bs, box);
    kdx_generator_free(g);
    kdxL_checkas(L, s, interactions ? "explain.shapley_interactions" : "explain.shapley_sampling");
    return 1;
}

static int l_shapley_sampling(lua_State *L) { return shapley(L, 0); }
static int l_shapley_interactions(lua_State *L) { return shapley(L, 1); }

/* ---- permutation importance ---- */

typedef struct score_ud {
    lua_State *L;
    int fn, y; /* Lua metric and labels (stack slots); fn 0: built-in */
    kdx_score_kind kind;
    const kdx_tensor *labels;
} score_ud;

static kdx_status lua_score(void *ud, const kdx_tensor *out, double *score)
{
    score_ud *u = ud;
    if (!u->fn) return kdx_explain_score(u->kind, out, u->labels, score);
    lua_State *L = u->L;
    if (!lua_checkstack(L, 4)) return kdx_fail(KDX_ENOMEM, "metric: Lua stack overflow");
    lua_pushvalue(L, u->fn);
    kdx_tensor **box = kdxL_newbox(L);
    *box = kdx_tensor_retain((kdx_tensor *)out);
    lua_pushvalue(L, u->y);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        kdx_status s = kdx_fail(KDX_ESTATE, "metric: the metric raised an error: %s",
                                lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
        lua_pop(L, 1);
        return s;
    }
    int isnum = 0;
    *score = (double)lua_tonumberx(L, -1, &isnum);
    kdx_status s = isnum ? KDX_OK : kdx_fail(KDX_ESTATE, "metric: the metric returned a %s, not a number", luaL_typename(L, -1));
    lua_pop(L, 1);
    return s;
}

/* _permutation_importance(model, X, y, metric (name or function), features|nil, repeats, seed, batch_size)
   -> importances [F, repeats], baseline score */
static int l_permutation_importance(lua_State *L)
{
    lua_settop(L, 8);
    const char *fname = "permutation_importance";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *X = kdxL_checktensor(L, 2, fname);
    score_ud u = {L, 0, 3, KDX_SCORE_ACCURACY, NULL};
    if (lua_type(L, 4) == LUA_TFUNCTION) {
        u.fn = 4;
    } else {
        const char *name = luaL_checkstring(L, 4);
        if (strcmp(name, "neg_mean_squared_error") == 0) {
            u.kind = KDX_SCORE_NEG_MSE;
            u.labels = kdxL_astensor(L, 3, fname, KDX_DTYPE_F64);
        } else {
            u.kind = strcmp(name, "accuracy") == 0 ? KDX_SCORE_ACCURACY : KDX_SCORE_NEG_LOG_LOSS;
            u.labels = kdxL_checktarget(L, 3, fname); /* 1-based classes -> 0-based */
        }
    }
    int64_t nf = 0, *feats = lua_isnil(L, 5) ? NULL : int_list_buf(L, 5, fname, "features", &nf);
    lua_Integer repeats = kdxL_checkint(L, 6, fname, "repeats"), seed = kdxL_checkint(L, 7, fname, "seed");
    int64_t bs = kdxL_checkint(L, 8, fname, "batch_size");
    if (repeats < 1 || repeats > 100000) return luaL_error(L, "kdx.explain.%s: repeats must be in [1, 100000]", fname);
    kdx_tensor **box = kdxL_newbox(L);
    double base = 0;
    kdx_generator *g = new_generator(L, seed);
    kdx_status s = kdx_explain_permutation_importance(&m, X, lua_score, &u, feats, nf,
                                                      (int)repeats, g, bs, box, &base);
    kdx_generator_free(g);
    kdxL_checkas(L, s, "explain.permutation_importance");
    lua_pushnumber(L, base);
    return 2;
}

/* _partial_dependence(model, X, features, grid_resolution, lo, hi, target, batch_size, grid|nil)
   -> grid1, grid2|nil, average, individual. grid: {g1|nil, g2|nil}, each a
   1-d tensor or a list of numbers (nil: the grid from X). */
static int l_partial_dependence(lua_State *L)
{
    lua_settop(L, 9);
    const char *fname = "partial_dependence";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *X = kdxL_checktensor(L, 2, fname);
    int64_t feats[2];
    int64_t nf = int_list(L, 3, fname, "features", feats, 2, 1);
    lua_Integer res = kdxL_checkint(L, 4, fname, "grid_resolution");
    double lo = kdxL_checknum(L, 5, fname, "percentiles[1]"), hi = kdxL_checknum(L, 6, fname, "percentiles[2]");
    kdx_tensor *target = kdxL_checktarget(L, 7, fname);
    int64_t bs = kdxL_checkint(L, 8, fname, "batch_size");
    const kdx_tensor *given[2] = {NULL, NULL};
    if (!lua_isnil(L, 9)) {
        if (lua_type(L, 9) != LUA_TTABLE) return luaL_error(L, "kdx.explain.partial_dependence: grid must be a table {g1[, g2]}");
        for (int t = 0; t < 2; t++) { /* each converted tensor stays on the stack until the call returns */
            lua_geti(L, 9, t + 1);
            if (!lua_isnil(L, -1)) given[t] = kdxL_astensor(L, lua_gettop(L), "explain.partial_dependence", KDX_DTYPE_F64);
        }
    }
    kdx_tensor **g1 = kdxL_newbox(L), **g2 = kdxL_newbox(L), **avg = kdxL_newbox(L), **ind = kdxL_newbox(L);
    kdx_tensor *grids[2] = {NULL, NULL};
    kdx_status s = kdx_explain_partial_dependence(&m, X, feats, (int)nf, res, lo, hi, given, target, bs, grids, avg, ind);
    *g1 = grids[0], *g2 = grids[1];
    kdxL_checkas(L, s, "explain.partial_dependence");
    if (!*g2) {
        lua_pushnil(L);
        lua_replace(L, -4);
    }
    return 4;
}

/* _pd_grid(X, feature (1-based), grid_resolution, lo, hi) -> the grid partial_dependence builds from X */
static int l_pd_grid(lua_State *L)
{
    lua_settop(L, 5);
    const char *fname = "partial_dependence";
    kdx_tensor *X = kdxL_checktensor(L, 1, fname);
    lua_Integer j = kdxL_checkint(L, 2, fname, "feature"), res = kdxL_checkint(L, 3, fname, "grid_resolution");
    double lo = kdxL_checknum(L, 4, fname, "percentiles[1]"), hi = kdxL_checknum(L, 5, fname, "percentiles[2]");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_explain_pd_grid(X, (int64_t)j - 1, res, lo, hi, box), "explain.partial_dependence");
    return 1;
}

/* _h_statistic(model, X, pairs {j1, k1, j2, k2, ...} 1-based, samples, seed, target, batch_size) -> H^2 [P] */
static int l_h_statistic(lua_State *L)
{
    lua_settop(L, 7);
    const char *fname = "h_statistic";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, fname, &lm, &m);
    kdx_tensor *X = kdxL_checktensor(L, 2, fname);
    int64_t n = 0, *pairs = int_list_buf(L, 3, fname, "pairs", &n);
    if (n % 2) return luaL_error(L, "kdx.explain.h_statistic: pairs must be pairs");
    lua_Integer samples = kdxL_checkint(L, 4, fname, "samples"), seed = kdxL_checkint(L, 5, fname, "seed");
    kdx_tensor *target = kdxL_checktarget(L, 6, fname);
    int64_t bs = kdxL_checkint(L, 7, fname, "batch_size");
    kdx_tensor **box = kdxL_newbox(L);
    kdx_generator *g = new_generator(L, seed);
    kdx_status s = kdx_explain_h_statistic(&m, X, pairs, n / 2, samples, g, target, bs, box);
    kdx_generator_free(g);
    kdxL_checkas(L, s, "explain.h_statistic");
    return 1;
}

void kdxL_open_explain_perturb(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {{"_occlusion", l_occlusion},
                                   {"_feature_ablation", l_feature_ablation},
                                   {"_shapley_sampling", l_shapley_sampling},
                                   {"_shapley_interactions", l_shapley_interactions},
                                   {"_permutation_importance", l_permutation_importance},
                                   {"_partial_dependence", l_partial_dependence},
                                   {"_pd_grid", l_pd_grid},
                                   {"_h_statistic", l_h_statistic},
                                   {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
