/* l_explain_lrp.c — LRP from Lua: the layer tables that lua/kdx/explain/lrp.lua
   builds from a Sequential become kdx_lrp_layer structs (1-based dims made
   0-based here), and the engine does the rest. */
#include "kdx_lua.h"

#include <string.h>

static const char *const FNAME = "explain.lrp"; /* messages read "kdx.explain.lrp: ..." */

static const struct {
    const char *name;
    kdx_lrp_type type;
} types[] = {{"Linear", KDX_LRP_LINEAR},       {"Conv2d", KDX_LRP_CONV2D},       {"BatchNorm", KDX_LRP_BATCHNORM},
             {"ReLU", KDX_LRP_RELU},           {"MaxPool2d", KDX_LRP_MAXPOOL2D}, {"AvgPool2d", KDX_LRP_AVGPOOL2D},
             {"Flatten", KDX_LRP_FLATTEN},     {"Identity", KDX_LRP_IDENTITY},
             {"AdaptiveAvgPool2d", KDX_LRP_ADAPTIVE_AVGPOOL2D}};

static const struct {
    const char *name;
    kdx_lrp_rule rule;
} rules[] = {{"epsilon", KDX_LRP_RULE_EPSILON}, {"gamma", KDX_LRP_RULE_GAMMA},     {"zplus", KDX_LRP_RULE_ZPLUS},
             {"alpha1beta0", KDX_LRP_RULE_ZPLUS}, {"zbox", KDX_LRP_RULE_ZBOX},     {"flat", KDX_LRP_RULE_FLAT},
             {"wsquare", KDX_LRP_RULE_WSQUARE}, {"norm", KDX_LRP_RULE_NORM},       {"gradient", KDX_LRP_RULE_GRADIENT},
             {"pass", KDX_LRP_RULE_PASS}};

/* The tensor in field key of the table at idx, or NULL when absent. */
static const kdx_tensor *tensor_field(lua_State *L, int idx, const char *key, int i)
{
    lua_getfield(L, idx, key);
    kdx_tensor *t = lua_isnil(L, -1) ? NULL : kdxL_totensor(L, -1);
    if (!t && !lua_isnil(L, -1)) luaL_error(L, "kdx.explain.lrp: layer %d: %s must be a tensor", i, key);
    lua_pop(L, 1); /* the table keeps it alive */
    return t;
}

/* A 1-based (or negative) dim field -> 0-based (negative kept). */
static int dim_field(lua_State *L, int idx, const char *key, int def)
{
    lua_Integer v = kdxL_optfield_int(L, idx, key, def, FNAME);
    if (v == 0 || v > 64 || v < -64) luaL_error(L, "kdx.explain.lrp: Flatten %s must be a dim, got %d", key, (int)v);
    return v > 0 ? (int)v - 1 : (int)v;
}

static void read_layer(lua_State *L, int idx, int i, kdx_lrp_layer *l)
{
    memset(l, 0, sizeof *l);
    const char *type = kdxL_optfield_str(L, idx, "type", "", FNAME);
    size_t k = 0, nt = sizeof types / sizeof *types;
    while (k < nt && strcmp(type, types[k].name) != 0) k++;
    if (k == nt) luaL_error(L, "kdx.explain.lrp: layer %d has an unsupported type \"%s\"", i, type);
    l->type = types[k].type;
    lua_getfield(L, idx, "name");
    l->name = lua_tostring(L, -1); /* the table keeps the string */
    lua_pop(L, 1);
    const char *rule = kdxL_optfield_str(L, idx, "rule", NULL, FNAME);
    l->rule = KDX_LRP_RULE_AUTO;
    if (rule) {
        size_t r = 0, nr = sizeof rules / sizeof *rules;
        while (r < nr && strcmp(rule, rules[r].name) != 0) r++;
        if (r == nr) luaL_error(L, "kdx.explain.lrp: unknown rule \"%s\"", rule);
        l->rule = rules[r].rule;
    }
    l->weight = tensor_field(L, idx, "weight", i);
    l->bias = tensor_field(L, idx, "bias", i);
    l->running_mean = tensor_field(L, idx, "running_mean", i);
    l->running_var = tensor_field(L, idx, "running_var", i);
    l->eps = kdxL_optfield_num(L, idx, "eps", 1e-5, FNAME);
    l->conv = kdx_conv_opts_default();
    kdxL_optfield_pair(L, idx, "stride", 1, l->conv.stride, FNAME);
    kdxL_optfield_pair(L, idx, "padding", 0, l->conv.padding, FNAME);
    kdxL_optfield_pair(L, idx, "dilation", 1, l->conv.dilation, FNAME);
    l->conv.groups = kdxL_optfield_int(L, idx, "groups", 1, FNAME);
    if (l->type == KDX_LRP_MAXPOOL2D || l->type == KDX_LRP_AVGPOOL2D) {
        int64_t kk[2];
        kdxL_optfield_pair(L, idx, "kernel_size", 0, kk, FNAME);
        l->pool = kdx_pool_opts_default(kk[0], kk[1]);
        kdxL_optfield_pair(L, idx, "stride", 0, l->pool.stride, FNAME);
        if (l->pool.stride[0] == 0 && l->pool.stride[1] == 0) l->pool.stride[0] = kk[0], l->pool.stride[1] = kk[1];
        kdxL_optfield_pair(L, idx, "padding", 0, l->pool.padding, FNAME);
        kdxL_optfield_pair(L, idx, "dilation", 1, l->pool.dilation, FNAME);
        l->pool.ceil_mode = kdxL_optfield_bool(L, idx, "ceil_mode", 0, FNAME);
        l->pool.count_include_pad = kdxL_optfield_bool(L, idx, "count_include_pad", 1, FNAME);
    }
    if (l->type == KDX_LRP_ADAPTIVE_AVGPOOL2D) kdxL_optfield_pair(L, idx, "output_size", 0, l->output_size, FNAME);
    if (l->type == KDX_LRP_FLATTEN) {
        l->flatten_start = dim_field(L, idx, "start_dim", 2);
        l->flatten_end = dim_field(L, idx, "end_dim", -1);
    }
}

/* _lrp(layers, x, target, composite, epsilon, stabilizer, gamma, low, high, batch_size)
   -> relevance, sums [n+1, N], rules */
static int l_lrp(lua_State *L)
{
    lua_settop(L, 10);
    kdxL_checktable(L, 1, FNAME, "layers");
    kdx_tensor *x = kdxL_checktensor(L, 2, FNAME);
    kdx_tensor *target = kdxL_checktarget(L, 3, "lrp");
    const char *comp = luaL_checkstring(L, 4);
    kdx_lrp_opts o = {KDX_LRP_EPSILON_PLUS, 1e-6, 1e-6, 0.25, NULL, NULL, 1};
    if (strcmp(comp, "epsilon_plus") == 0) o.composite = KDX_LRP_EPSILON_PLUS;
    else if (strcmp(comp, "epsilon_gamma_box") == 0) o.composite = KDX_LRP_EPSILON_GAMMA_BOX;
    else if (strcmp(comp, "epsilon_plus_flat") == 0) o.composite = KDX_LRP_EPSILON_PLUS_FLAT;
    else return luaL_error(L, "kdx.explain.lrp: unknown composite \"%s\"", comp);
    o.epsilon = kdxL_checknum(L, 5, FNAME, "epsilon");
    o.stabilizer = kdxL_checknum(L, 6, FNAME, "stabilizer");
    o.gamma = kdxL_checknum(L, 7, FNAME, "gamma");
    o.low = lua_isnil(L, 8) ? NULL : kdxL_checktensor(L, 8, FNAME);
    o.high = lua_isnil(L, 9) ? NULL : kdxL_checktensor(L, 9, FNAME);
    o.batch_size = kdxL_checkint(L, 10, FNAME, "batch_size");
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n < 1 || n > 100000) return luaL_error(L, "kdx.explain.lrp: the model has no layers");
    /* userdata scratch: the GC frees it whatever happens */
    kdx_lrp_layer *ls = lua_newuserdatauv(L, (size_t)n * sizeof *ls, 0);
    kdx_lrp_rule *used = lua_newuserdatauv(L, (size_t)n * sizeof *used, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        if (!lua_istable(L, -1)) return luaL_error(L, "kdx.explain.lrp: layer %d is not a table", (int)i);
        read_layer(L, lua_gettop(L), (int)i, &ls[i - 1]);
        lua_pop(L, 1);
    }
    kdx_tensor **attr = kdxL_newbox(L), **sums = kdxL_newbox(L);
    kdxL_checkas(L, kdx_attr_lrp(ls, (int)n, x, target, &o, attr, sums, used), FNAME);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_pushstring(L, kdx_lrp_rule_name(used[i - 1]));
        lua_rawseti(L, -2, i);
    }
    return 3;
}

/* _lrp_fold_batchnorm(w, b|nil, mean, var, bn_w|nil, bn_b|nil, eps) -> w', b' */
static int l_lrp_fold_batchnorm(lua_State *L)
{
    lua_settop(L, 7);
    kdx_tensor *t[6];
    for (int i = 0; i < 6; i++) t[i] = lua_isnil(L, i + 1) ? NULL : kdxL_checktensor(L, i + 1, FNAME);
    double eps = kdxL_checknum(L, 7, FNAME, "eps");
    kdx_tensor **w = kdxL_newbox(L), **b = kdxL_newbox(L);
    kdxL_checkas(L, kdx_lrp_fold_batchnorm(t[0], t[1], t[2], t[3], t[4], t[5], eps, w, b), FNAME);
    return 2;
}

void kdxL_open_explain_lrp(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {
        {"_lrp", l_lrp}, {"_lrp_fold_batchnorm", l_lrp_fold_batchnorm}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
