/* l_nn.c — the neural-network kernels: softmax, conv2d, pooling, interpolate,
   pad, dropout, normalisation, embedding. Options come as Lua tables with
   PyTorch's names. */
#include "kdx_lua.h"

#include <math.h>
#include <string.h>

static int l_softmax_like(lua_State *L, int log)
{
    const char *fname = log ? "log_softmax" : "softmax";
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    if (lua_isnoneornil(L, 2)) return luaL_error(L, "kdx.%s: %s (dim) is required", fname, kdxL_argstr(L, 2));
    int d = kdxL_checkdim(L, 2, kdx_tensor_ndim(x), fname);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, (log ? kdx_log_softmax : kdx_softmax)(x, d, box));
    return 1;
}

static int l_softmax(lua_State *L) { return l_softmax_like(L, 0); }
static int l_log_softmax(lua_State *L) { return l_softmax_like(L, 1); }

/* The options table at arg (0 when absent); anything else is an error. */
static int opts_at(lua_State *L, int arg, const char *fname)
{
    if (lua_isnoneornil(L, arg)) return 0;
    kdxL_checktable(L, arg, fname, "options");
    return arg;
}

static int l_conv2d(lua_State *L)
{
    lua_settop(L, 4);
    kdx_tensor *x = kdxL_checktensor(L, 1, "conv2d"), *w = kdxL_checktensor(L, 2, "conv2d");
    kdx_tensor *b = lua_isnoneornil(L, 3) ? NULL : kdxL_checktensor(L, 3, "conv2d");
    int o = opts_at(L, 4, "conv2d");
    kdx_conv_opts co = kdx_conv_opts_default();
    kdxL_optfield_pair(L, o, "stride", 1, co.stride, "conv2d");
    kdxL_optfield_pair(L, o, "padding", 0, co.padding, "conv2d");
    kdxL_optfield_pair(L, o, "dilation", 1, co.dilation, "conv2d");
    co.groups = kdxL_optfield_int(L, o, "groups", 1, "conv2d");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_conv2d(x, w, b, &co, box));
    return 1;
}

/* kernel as a number or {kh, kw} at arg 2, options at arg 3. */
static kdx_pool_opts pool_opts(lua_State *L, const char *fname)
{
    int64_t k[2];
    if (lua_isinteger(L, 2)) {
        k[0] = k[1] = lua_tointeger(L, 2);
    } else if (lua_istable(L, 2) && lua_rawlen(L, 2) == 2) {
        for (int i = 0; i < 2; i++) {
            lua_rawgeti(L, 2, i + 1);
            if (!lua_isinteger(L, -1)) luaL_error(L, "kdx.%s: kernel size must hold integers", fname);
            k[i] = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
    } else {
        luaL_error(L, "kdx.%s: %s (kernel size) must be an integer or {kh, kw}, got %s", fname, kdxL_argstr(L, 2),
                   luaL_typename(L, 2));
        k[0] = k[1] = 0;
    }
    kdx_pool_opts po = kdx_pool_opts_default(k[0], k[1]);
    int o = opts_at(L, 3, fname);
    kdxL_optfield_pair(L, o, "stride", 0, po.stride, fname);
    if (po.stride[0] == 0 && po.stride[1] == 0) po.stride[0] = k[0], po.stride[1] = k[1];
    kdxL_optfield_pair(L, o, "padding", 0, po.padding, fname);
    kdxL_optfield_pair(L, o, "dilation", 1, po.dilation, fname);
    po.ceil_mode = kdxL_optfield_bool(L, o, "ceil_mode", 0, fname);
    po.count_include_pad = kdxL_optfield_bool(L, o, "count_include_pad", 1, fname);
    return po;
}

static int l_max_pool2d(lua_State *L)
{
    lua_settop(L, 3);
    kdx_tensor *x = kdxL_checktensor(L, 1, "max_pool2d");
    kdx_pool_opts po = pool_opts(L, "max_pool2d");
    if (!kdxL_optfield_bool(L, opts_at(L, 3, "max_pool2d"), "return_indices", 1, "max_pool2d")) {
        kdx_tensor **only = kdxL_newbox(L);
        kdxL_check(L, kdx_max_pool2d(x, &po, only, NULL));
        return 1;
    }
    kdx_tensor **out = kdxL_newbox(L), **idx = kdxL_newbox(L);
    kdxL_check(L, kdx_max_pool2d(x, &po, out, idx));
    kdx_tensor *one; /* 1-based positions in Lua, in a new tensor: the engine may keep the original */
    kdxL_check(L, kdx_binary_scalar(KDX_BIN_ADD, *idx, 1, 0, &one));
    kdx_tensor_release(*idx);
    *idx = one;
    return 2;
}

static int l_avg_pool2d(lua_State *L)
{
    lua_settop(L, 3);
    kdx_tensor *x = kdxL_checktensor(L, 1, "avg_pool2d");
    kdx_pool_opts po = pool_opts(L, "avg_pool2d");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_avg_pool2d(x, &po, box));
    return 1;
}

/* A size as a number or {h, w} at arg. */
static void size_pair(lua_State *L, int arg, int64_t *hw, const char *fname)
{
    if (lua_isinteger(L, arg)) {
        hw[0] = hw[1] = lua_tointeger(L, arg);
        return;
    }
    if (lua_istable(L, arg) && lua_rawlen(L, arg) == 2) {
        for (int i = 0; i < 2; i++) {
            lua_rawgeti(L, arg, i + 1);
            if (!lua_isinteger(L, -1)) luaL_error(L, "kdx.%s: sizes must be integers", fname);
            hw[i] = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        return;
    }
    luaL_error(L, "kdx.%s: size must be an integer or {h, w}, got %s", fname, luaL_typename(L, arg));
}

static int l_adaptive_avg_pool2d(lua_State *L)
{
    kdx_tensor *x = kdxL_checktensor(L, 1, "adaptive_avg_pool2d");
    int64_t hw[2];
    size_pair(L, 2, hw, "adaptive_avg_pool2d");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_adaptive_avg_pool2d(x, hw[0], hw[1], box));
    return 1;
}

/* interpolate(x, {size = {h, w} | n, scale_factor = s, mode = "nearest"|"bilinear", align_corners = false}) */
static int l_interpolate(lua_State *L)
{
    lua_settop(L, 2);
    kdx_tensor *x = kdxL_checktensor(L, 1, "interpolate");
    kdxL_checktable(L, 2, "interpolate", "options");
    int nd = kdx_tensor_ndim(x);
    if (nd < 3) return luaL_error(L, "kdx.interpolate: input must be [C,H,W] or [N,C,H,W], got %d dims", nd);
    int64_t hw[2];
    double sf = 0; /* kept: PyTorch steps through the source by 1/scale_factor */
    lua_getfield(L, 2, "size");
    if (!lua_isnil(L, -1)) {
        size_pair(L, lua_gettop(L), hw, "interpolate");
    } else {
        sf = kdxL_optfield_num(L, 2, "scale_factor", 0, "interpolate");
        if (!(sf > 0) || sf > 1e6) return luaL_error(L, "kdx.interpolate: give size or a positive scale_factor");
        const int64_t *sh = kdx_tensor_shape(x);
        hw[0] = (int64_t)floor((double)sh[nd - 2] * sf);
        hw[1] = (int64_t)floor((double)sh[nd - 1] * sf);
    }
    lua_pop(L, 1);
    const char *mode = kdxL_optfield_str(L, 2, "mode", "nearest", "interpolate");
    kdx_interp_mode m;
    if (strcmp(mode, "nearest") == 0) m = KDX_INTERP_NEAREST;
    else if (strcmp(mode, "bilinear") == 0) m = KDX_INTERP_BILINEAR;
    else return luaL_error(L, "kdx.interpolate: mode must be \"nearest\" or \"bilinear\", got \"%s\"", mode);
    int ac = kdxL_optfield_bool(L, 2, "align_corners", 0, "interpolate");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_interpolate(x, hw[0], hw[1], m, ac, sf, sf, box));
    return 1;
}

/* pad(x, {pads...}, {mode = "constant", value = 0}) */
static int l_pad(lua_State *L)
{
    lua_settop(L, 3);
    kdx_tensor *x = kdxL_checktensor(L, 1, "pad");
    kdxL_checktable(L, 2, "pad", "pads");
    int n = (int)lua_rawlen(L, 2);
    if (n == 0 || n % 2 || n > 2 * KDX_MAX_DIMS)
        return luaL_error(L, "kdx.pad: pads must hold an even number (2 to %d) of integers, got %d", 2 * KDX_MAX_DIMS, n);
    int64_t pads[2 * KDX_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 2, i + 1);
        if (!lua_isinteger(L, -1)) return luaL_error(L, "kdx.pad: pad %d must be an integer", i + 1);
        pads[i] = lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    int o = opts_at(L, 3, "pad");
    const char *mode = kdxL_optfield_str(L, o, "mode", "constant", "pad");
    double value = kdxL_optfield_num(L, o, "value", 0, "pad");
    kdx_pad_mode m;
    if (strcmp(mode, "constant") == 0) m = KDX_PAD_CONSTANT;
    else if (strcmp(mode, "reflect") == 0) m = KDX_PAD_REFLECT;
    else if (strcmp(mode, "replicate") == 0) m = KDX_PAD_REPLICATE;
    else return luaL_error(L, "kdx.pad: mode must be \"constant\", \"reflect\" or \"replicate\", got \"%s\"", mode);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_pad(x, pads, n, m, value, box));
    return 1;
}

/* dropout(x, p = 0.5, training = true) -> out, mask */
static int l_dropout(lua_State *L)
{
    lua_settop(L, 3);
    kdx_tensor *x = kdxL_checktensor(L, 1, "dropout");
    double p = kdxL_optnum(L, 2, 0.5, "dropout", "p");
    int training = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
    if (!(p >= 0 && p <= 1)) return luaL_error(L, "kdx.dropout: p must be in [0, 1], got %f", p);
    if (!training) {
        lua_settop(L, 1);
        return 1;
    }
    kdx_tensor **out = kdxL_newbox(L), **mask = kdxL_newbox(L);
    kdxL_check(L, kdx_dropout(x, p, kdxL_generator(L), out, mask));
    return 2;
}

static kdx_tensor *opt_tensor(lua_State *L, int arg, const char *fname)
{
    return lua_isnoneornil(L, arg) ? NULL : kdxL_checktensor(L, arg, fname);
}

/* batch_norm(x, running_mean, running_var, weight, bias, training, momentum = 0.1, eps = 1e-5) */
static int l_batch_norm(lua_State *L)
{
    lua_settop(L, 8);
    kdx_tensor *x = kdxL_checktensor(L, 1, "batch_norm");
    kdx_tensor *rm = opt_tensor(L, 2, "batch_norm"), *rv = opt_tensor(L, 3, "batch_norm");
    kdx_tensor *w = opt_tensor(L, 4, "batch_norm"), *b = opt_tensor(L, 5, "batch_norm");
    int training = lua_toboolean(L, 6);
    double momentum = kdxL_optnum(L, 7, 0.1, "batch_norm", "momentum");
    double eps = kdxL_optnum(L, 8, 1e-5, "batch_norm", "eps");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_batch_norm(x, rm, rv, w, b, training, momentum, eps, box, NULL, NULL));
    return 1;
}

/* _batch_norm_sync(x, running_mean, running_var, weight, bias, momentum, eps, sum): sum is the
   light userdata kdx.dist's MPI module hands out (a const kdx_sum *), or nil for one process. */
static int l_batch_norm_sync(lua_State *L)
{
    lua_settop(L, 8);
    kdx_tensor *x = kdxL_checktensor(L, 1, "batch_norm_sync");
    kdx_tensor *rm = opt_tensor(L, 2, "batch_norm_sync"), *rv = opt_tensor(L, 3, "batch_norm_sync");
    kdx_tensor *w = opt_tensor(L, 4, "batch_norm_sync"), *b = opt_tensor(L, 5, "batch_norm_sync");
    double momentum = kdxL_optnum(L, 6, 0.1, "batch_norm_sync", "momentum");
    double eps = kdxL_optnum(L, 7, 1e-5, "batch_norm_sync", "eps");
    if (!lua_isnil(L, 8) && !lua_islightuserdata(L, 8))
        return luaL_error(L, "kdx.batch_norm_sync: argument 8 must be kdx.dist's sum context or nil");
    const kdx_sum *sum = lua_touserdata(L, 8);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_batch_norm_sync(x, rm, rv, w, b, momentum, eps, sum, box));
    return 1;
}

/* layer_norm(x, normalized_shape, weight, bias, eps = 1e-5) */
static int l_layer_norm(lua_State *L)
{
    lua_settop(L, 5);
    kdx_tensor *x = kdxL_checktensor(L, 1, "layer_norm");
    int64_t shape[KDX_MAX_DIMS];
    int n;
    if (lua_isinteger(L, 2)) shape[0] = lua_tointeger(L, 2), n = 1;
    else if (lua_istable(L, 2)) n = kdxL_checkshape(L, 2, shape, "layer_norm");
    else return luaL_error(L, "kdx.layer_norm: argument 2 (normalized_shape) must be a size or a table of sizes");
    int nd = kdx_tensor_ndim(x);
    if (n == 0 || n > nd) return luaL_error(L, "kdx.layer_norm: normalized_shape has %d dims for a %d-d input", n, nd);
    for (int i = 0; i < n; i++)
        if (shape[i] != kdx_tensor_shape(x)[nd - n + i]) {
            char b1[96];
            return luaL_error(L, "kdx.layer_norm: normalized_shape %s does not match the last dims of the input",
                              kdx_shape_str(n, shape, b1, sizeof b1));
        }
    kdx_tensor *w = opt_tensor(L, 3, "layer_norm"), *b = opt_tensor(L, 4, "layer_norm");
    double eps = kdxL_optnum(L, 5, 1e-5, "layer_norm", "eps");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_layer_norm(x, n, w, b, eps, box));
    return 1;
}

/* embedding(idx, weight): rows of weight picked by 1-based idx */
static int l_embedding(lua_State *L)
{
    lua_settop(L, 2);
    kdx_tensor *w = kdxL_checktensor(L, 2, "embedding");
    if (kdx_tensor_ndim(w) != 2)
        return luaL_error(L, "kdx.embedding: weight must be 2-D [num_embeddings, dim], got %d dims", kdx_tensor_ndim(w));
    kdx_tensor *idx = kdxL_checkindices(L, 1, kdx_tensor_shape(w)[0], "embedding");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_embedding(w, idx, box));
    return 1;
}

void kdxL_open_nn(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {{"softmax", l_softmax}, {"log_softmax", l_log_softmax}, {NULL, NULL}};
    static const luaL_Reg mod_only[] = {
        {"conv2d", l_conv2d}, {"max_pool2d", l_max_pool2d}, {"avg_pool2d", l_avg_pool2d},
        {"adaptive_avg_pool2d", l_adaptive_avg_pool2d}, {"interpolate", l_interpolate}, {"pad", l_pad},
        {"dropout", l_dropout}, {"batch_norm", l_batch_norm}, {"_batch_norm_sync", l_batch_norm_sync}, {"layer_norm", l_layer_norm},
        {"embedding", l_embedding}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 1);
    kdxL_register(L, mod, methods, mod_only, 0);
}
