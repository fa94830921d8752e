/* l_explain_metrics.c — kdx.explain.metrics from Lua: the engine's metrics
   with the model, an explanation method or a perturbation as Lua callbacks
   (run with lua_pcall, so a Lua error comes back as a status). The Lua side
   (lua/kdx/explain/metrics.lua) has checked the options; these functions
   take them as one table of plain values. */
#include "kdx_lua.h"

#include <string.h>

#define PREFIX "explain.metrics."

/* The callable at ud's slot called with (x, ids + 1) -> nres results; pushes them. */
static kdx_status call_fn(kdxL_model *cb, const kdx_tensor *x, const kdx_tensor *ids, int nres, const char *what)
{
    lua_State *L = cb->L;
    if (!lua_checkstack(L, 6)) return kdx_fail(KDX_ENOMEM, "%s: Lua stack overflow", what);
    lua_pushvalue(L, cb->fn);
    kdx_tensor **bx = kdxL_newbox(L);
    *bx = kdx_tensor_retain((kdx_tensor *)x);
    kdx_tensor **bi = kdxL_newbox(L);
    kdx_status s = kdx_binary_scalar(KDX_BIN_ADD, ids, 1, 0, bi); /* 1-based sample numbers in Lua */
    if (s != KDX_OK) {
        lua_pop(L, 3);
        return s;
    }
    if (lua_pcall(L, 2, nres, 0) != LUA_OK) {
        s = kdx_fail(KDX_ESTATE, "%s: the %s raised an error: %s", what, what,
                     lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
        lua_pop(L, 1);
        return s;
    }
    return KDX_OK;
}

static kdx_status call_explain(void *ud, const kdx_tensor *x, const kdx_tensor *ids, kdx_tensor **attr)
{
    kdxL_model *cb = ud;
    kdx_status s = call_fn(cb, x, ids, 1, "explanation");
    if (s != KDX_OK) return s;
    kdx_tensor *r = kdxL_totensor(cb->L, -1);
    s = r ? KDX_OK
          : kdx_fail(KDX_ESTATE, "explanation: the explanation returned a %s, not a tensor",
                                luaL_typename(cb->L, -1));
    if (r) *attr = kdx_tensor_retain(r);
    lua_pop(cb->L, 1);
    return s;
}

static kdx_status call_perturb(void *ud, const kdx_tensor *x, const kdx_tensor *ids, kdx_tensor **noise,
                               kdx_tensor **perturbed)
{
    kdxL_model *cb = ud;
    lua_State *L = cb->L;
    kdx_status s = call_fn(cb, x, ids, 2, "perturbation");
    if (s != KDX_OK) return s;
    kdx_tensor *n = kdxL_totensor(L, -2), *p = kdxL_totensor(L, -1);
    if (!n)
        s = kdx_fail(KDX_ESTATE, "perturbation: perturb_func returned a %s, not a noise tensor", luaL_typename(L, -2));
    else if (!p && !lua_isnil(L, -1))
        s = kdx_fail(KDX_ESTATE, "perturbation: perturb_func's second result is a %s, not a tensor or nil",
                     luaL_typename(L, -1));
    if (s == KDX_OK) {
        *noise = kdx_tensor_retain(n);
        *perturbed = p ? kdx_tensor_retain(p) : NULL;
    }
    lua_pop(L, 2);
    return s;
}

static void check_callable(lua_State *L, int arg, const char *fname, const char *what)
{
    int t = lua_type(L, arg);
    int ok = t == LUA_TFUNCTION;
    if (!ok && t == LUA_TTABLE && luaL_getmetafield(L, arg, "__call") != LUA_TNIL) {
        lua_pop(L, 1);
        ok = 1;
    }
    if (!ok) luaL_error(L, "kdx." PREFIX "%s: %s must be a function, got %s", fname, what, luaL_typename(L, arg));
}

/* The shared options from the table at opts (their tensors stay on the stack). */
static void read_opts(lua_State *L, int opts, const char *fname, kdx_metric_opts *o)
{
    char full[64], sub[64];
    snprintf(full, sizeof full, PREFIX "%s", fname);
    snprintf(sub, sizeof sub, "metrics.%s", fname);
    lua_getfield(L, opts, "target");
    o->target = kdxL_checktarget(L, lua_gettop(L), sub);
    lua_getfield(L, opts, "baseline");
    o->baseline = lua_isnil(L, -1) ? NULL : kdxL_checktensor(L, lua_gettop(L), full);
    o->batch_size = kdxL_optfield_int(L, opts, "batch_size", 128, full);
    o->seed = (uint64_t)kdxL_optfield_int(L, opts, "seed", 0, full);
    o->softmax = kdxL_optfield_bool(L, opts, "softmax", 0, full);
}

static void check_status(lua_State *L, kdx_status s, const char *fname)
{
    char full[64];
    snprintf(full, sizeof full, PREFIX "%s", fname);
    kdxL_checkas(L, s, full);
}

/* _metric_deletion(model, x, attr, opts{steps, insertion, ...}) -> curves, auc */
static int l_deletion(lua_State *L)
{
    lua_settop(L, 4);
    int ins = kdxL_optfield_bool(L, 4, "insertion", 0, PREFIX "deletion");
    const char *fname = ins ? "insertion" : "deletion";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, ins ? "metrics.insertion" : "metrics.deletion", &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, PREFIX "deletion"), *attr = kdxL_checktensor(L, 3, PREFIX "deletion");
    kdx_metric_opts o;
    read_opts(L, 4, fname, &o);
    int steps = (int)kdxL_optfield_int(L, 4, "steps", 20, PREFIX "deletion");
    kdx_tensor **curves = kdxL_newbox(L), **auc = kdxL_newbox(L);
    check_status(L, kdx_metric_deletion(&m, x, attr, &o, steps, ins, curves, auc), fname);
    return 2;
}

/* _metric_completeness(model, x, attr, opts) -> gap */
static int l_completeness(lua_State *L)
{
    lua_settop(L, 4);
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, "metrics.completeness", &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, PREFIX "completeness"), *attr = kdxL_checktensor(L, 3, PREFIX "completeness");
    kdx_metric_opts o;
    read_opts(L, 4, "completeness", &o);
    kdx_tensor **out = kdxL_newbox(L);
    check_status(L, kdx_metric_completeness(&m, x, attr, &o, out), "completeness");
    return 1;
}

/* _metric_infidelity(model, x, attr, opts{perturb_func, noise_std, n_perturb_samples, normalize, ...}) */
static int l_infidelity(lua_State *L)
{
    lua_settop(L, 4);
    const char *f = PREFIX "infidelity";
    kdxL_model lm, lp;
    kdx_model m;
    kdxL_checkmodel(L, 1, "metrics.infidelity", &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, f), *attr = kdxL_checktensor(L, 3, f);
    kdx_metric_opts o;
    read_opts(L, 4, "infidelity", &o);
    kdx_perturber pt = {call_perturb, &lp};
    lua_getfield(L, 4, "perturb_func");
    int has = !lua_isnil(L, -1);
    if (has) check_callable(L, -1, "infidelity", "perturb_func");
    lp.L = L, lp.fn = lua_gettop(L);
    double std = kdxL_optfield_num(L, 4, "noise_std", 0.003, f);
    int n = (int)kdxL_optfield_int(L, 4, "n_perturb_samples", 10, f);
    int normalize = kdxL_optfield_bool(L, 4, "normalize", 0, f);
    kdx_tensor **out = kdxL_newbox(L);
    check_status(L, kdx_metric_infidelity(&m, x, attr, &o, has ? &pt : NULL, std, n, normalize, out), "infidelity");
    return 1;
}

/* _metric_max_sensitivity(explain, x, attr|nil, opts{radius, n_perturb_samples, ...}) */
static int l_max_sensitivity(lua_State *L)
{
    lua_settop(L, 4);
    const char *f = PREFIX "max_sensitivity";
    check_callable(L, 1, "max_sensitivity", "explanation");
    kdxL_model le = {L, 1};
    kdx_explainer e = {call_explain, &le};
    kdx_tensor *x = kdxL_checktensor(L, 2, f), *attr = lua_isnil(L, 3) ? NULL : kdxL_checktensor(L, 3, f);
    kdx_metric_opts o;
    read_opts(L, 4, "max_sensitivity", &o);
    double radius = kdxL_optfield_num(L, 4, "radius", 0.02, f);
    int n = (int)kdxL_optfield_int(L, 4, "n_perturb_samples", 10, f);
    kdx_tensor **out = kdxL_newbox(L);
    check_status(L, kdx_metric_max_sensitivity(&e, x, attr, &o, radius, n, out), "max_sensitivity");
    return 1;
}

/* _metric_faithfulness_correlation(model, x, attr, opts{subset_size, nr_runs, ...}) */
static int l_faithfulness(lua_State *L)
{
    lua_settop(L, 4);
    const char *f = PREFIX "faithfulness_correlation";
    kdxL_model lm;
    kdx_model m;
    kdxL_checkmodel(L, 1, "metrics.faithfulness_correlation", &lm, &m);
    kdx_tensor *x = kdxL_checktensor(L, 2, f), *attr = kdxL_checktensor(L, 3, f);
    kdx_metric_opts o;
    read_opts(L, 4, "faithfulness_correlation", &o);
    int64_t k = kdxL_optfield_int(L, 4, "subset_size", 1, f);
    int runs = (int)kdxL_optfield_int(L, 4, "nr_runs", 100, f);
    kdx_tensor **out = kdxL_newbox(L);
    check_status(L, kdx_metric_faithfulness_correlation(&m, x, attr, &o, k, runs, out), "faithfulness_correlation");
    return 1;
}

static const char *const sim_names[] = {"spearman", "pearson", "kendall", "topk_overlap", "cosine", "ssim", NULL};

static kdx_sim_kind check_sim(lua_State *L, const char *name, const char *fname)
{
    for (int i = 0; sim_names[i]; i++)
        if (strcmp(name, sim_names[i]) == 0) return (kdx_sim_kind)i;
    luaL_error(L, "kdx." PREFIX "%s: similarity must be spearman, pearson, kendall, topk_overlap, cosine or ssim, got \"%s\"",
               fname, name);
    return KDX_SIM_SPEARMAN;
}

/* _metric_similarity(kind, a, b, param) -> [N] */
static int l_similarity(lua_State *L)
{
    lua_settop(L, 4);
    const char *name = luaL_checkstring(L, 1);
    kdx_sim_kind kind = check_sim(L, name, name);
    char f[64];
    snprintf(f, sizeof f, PREFIX "%s", name);
    kdx_tensor *a = kdxL_checktensor(L, 2, f), *b = kdxL_checktensor(L, 3, f);
    double param = kdxL_optnum(L, 4, 0, f, "param");
    kdx_tensor **out = kdxL_newbox(L);
    check_status(L, kdx_attr_similarity(kind, a, b, param, out), name);
    return 1;
}

/* _metric_sparseness(attr, abs, normalise), _metric_complexity(attr) */
static int l_sparseness(lua_State *L)
{
    kdx_tensor *a = kdxL_checktensor(L, 1, PREFIX "sparseness");
    kdx_tensor **out = kdxL_newbox(L);
    check_status(L, kdx_metric_sparseness(a, lua_toboolean(L, 2), lua_toboolean(L, 3), out), "sparseness");
    return 1;
}

static int l_complexity(lua_State *L)
{
    kdx_tensor *a = kdxL_checktensor(L, 1, PREFIX "complexity");
    kdx_tensor **out = kdxL_newbox(L);
    check_status(L, kdx_metric_complexity(a, out), "complexity");
    return 1;
}

/* _metric_randomization(explain, x, attr|nil, params{tensors}, layer_of{1-based}, nlayers,
   opts{similarity, similarity_param, abs, ...}) -> [nlayers + 1, N] */
static int l_randomization(lua_State *L)
{
    lua_settop(L, 7);
    const char *f = PREFIX "randomization_check";
    check_callable(L, 1, "randomization_check", "explanation");
    kdxL_model le = {L, 1};
    kdx_explainer e = {call_explain, &le};
    kdx_tensor *x = kdxL_checktensor(L, 2, f), *attr = lua_isnil(L, 3) ? NULL : kdxL_checktensor(L, 3, f);
    kdxL_checktable(L, 4, f, "params");
    kdxL_checktable(L, 5, f, "layer_of");
    int nlayers = (int)kdxL_checkint(L, 6, f, "nlayers");
    int np = (int)luaL_len(L, 4);
    if (np < 1 || luaL_len(L, 5) != np) return luaL_error(L, "kdx.%s: the model has no parameters", f);
    kdx_tensor **params = lua_newuserdatauv(L, sizeof *params * (size_t)np, 0);
    int *layer_of = lua_newuserdatauv(L, sizeof *layer_of * (size_t)np, 0);
    for (int i = 0; i < np; i++) {
        lua_geti(L, 4, i + 1);
        params[i] = kdxL_checktensor(L, lua_gettop(L), f);
        lua_pop(L, 1); /* the table keeps it alive */
        lua_geti(L, 5, i + 1);
        layer_of[i] = (int)kdxL_checkint(L, lua_gettop(L), f, "layer") - 1;
        lua_pop(L, 1);
    }
    kdx_metric_opts o;
    read_opts(L, 7, "randomization_check", &o);
    kdx_sim_kind sim = check_sim(L, kdxL_optfield_str(L, 7, "similarity", "spearman", f), "randomization_check");
    double param = kdxL_optfield_num(L, 7, "similarity_param", 0, f);
    int abs_value = kdxL_optfield_bool(L, 7, "abs", 1, f);
    kdx_tensor **out = kdxL_newbox(L);
    check_status(L, kdx_metric_randomization(&e, x, attr, &o, params, layer_of, np, nlayers, sim, param, abs_value, out),
                 "randomization_check");
    return 1;
}

void kdxL_open_explain_metrics(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {{"_metric_deletion", l_deletion},
                                   {"_metric_completeness", l_completeness},
                                   {"_metric_infidelity", l_infidelity},
                                   {"_metric_max_sensitivity", l_max_sensitivity},
                                   {"_metric_faithfulness_correlation", l_faithfulness},
                                   {"_metric_similarity", l_similarity},
                                   {"_metric_sparseness", l_sparseness},
                                   {"_metric_complexity", l_complexity},
                                   {"_metric_randomization", l_randomization},
                                   {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
