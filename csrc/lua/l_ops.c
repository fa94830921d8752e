/* l_ops.c — elementwise ops, reductions, linear algebra, indexing and joining.
   Each family is one C function parameterised by an upvalue (the engine's op
   code), registered under every name it serves. */
#include "kdx_lua.h"

#include <math.h>
#include <string.h>

#define OP_UPVALUE(L) ((int)lua_tointeger(L, lua_upvalueindex(1)))
#define NAME_UPVALUE(L) lua_tostring(L, lua_upvalueindex(2))

/* Registers fn once per (name, op) pair, as a closure over op and name. */
typedef struct {
    const char *name;
    int op;
} named_op;

static void register_ops(lua_State *L, int mod, int methods, const named_op *ops, lua_CFunction fn, int as_method)
{
    for (; ops->name; ops++) {
        lua_pushinteger(L, ops->op);
        lua_pushstring(L, ops->name);
        lua_pushcclosure(L, fn, 2);
        if (as_method) {
            lua_pushvalue(L, -1);
            lua_setfield(L, methods, ops->name);
        }
        lua_setfield(L, mod, ops->name);
    }
}

/* ---- binary ---- */

static int binary(lua_State *L, kdx_binop op, const char *fname, int inplace)
{
    lua_settop(L, 2); /* fixed argument slots: values pushed later sit above them */
    kdx_tensor *a = kdxL_totensor(L, 1), *b = kdxL_totensor(L, 2);
    int na = lua_type(L, 1) == LUA_TNUMBER, nb = lua_type(L, 2) == LUA_TNUMBER;
    if (inplace) {
        a = kdxL_checktensor(L, 1, fname);
        if (nb) kdxL_checkas(L, kdx_binary_scalar_(op, a, lua_tonumber(L, 2)), fname);
        else kdxL_checkas(L, kdx_binary_(op, a, kdxL_astensor(L, 2, fname, kdx_tensor_dtype(a))), fname);
        lua_settop(L, 1);
        return 1;
    }
    if (na && nb) return luaL_error(L, "kdx.%s: at least one operand must be a tensor, got two numbers", fname);
    /* Tables become tensors (of the other operand's dtype) before the result box. */
    if (!a && !na) a = kdxL_astensor(L, 1, fname, b ? kdx_tensor_dtype(b) : KDX_DTYPE_F32);
    if (!b && !nb) b = kdxL_astensor(L, 2, fname, a ? kdx_tensor_dtype(a) : KDX_DTYPE_F32);
    kdx_tensor **box = kdxL_newbox(L);
    if (nb) kdxL_check(L, kdx_binary_scalar(op, a, lua_tonumber(L, 2), 0, box));
    else if (na) kdxL_check(L, kdx_binary_scalar(op, b, lua_tonumber(L, 1), 1, box));
    else kdxL_check(L, kdx_binary(op, a, b, box));
    return 1;
}

static int l_binary(lua_State *L) { return binary(L, (kdx_binop)OP_UPVALUE(L), NAME_UPVALUE(L), 0); }
static int l_binary_(lua_State *L) { return binary(L, (kdx_binop)OP_UPVALUE(L), NAME_UPVALUE(L), 1); }

/* ---- unary ---- */

/* Reads an op's parameters from the arguments after the tensor. */
static void unop_params(lua_State *L, kdx_unop op, const char *fname, double *a, double *b)
{
    *a = *b = 0;
    switch (op) {
    case KDX_UN_LEAKY_RELU: *a = kdxL_optnum(L, 2, 0.01, fname, "negative_slope"); break;
    case KDX_UN_ELU: *a = kdxL_optnum(L, 2, 1.0, fname, "alpha"); break;
    case KDX_UN_SOFTPLUS:
        *a = kdxL_optnum(L, 2, 1.0, fname, "beta");
        *b = kdxL_optnum(L, 3, 20.0, fname, "threshold");
        if (*a == 0) luaL_error(L, "kdx.%s: beta must be nonzero", fname);
        break;
    case KDX_UN_GELU: {
        if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TSTRING)
            luaL_error(L, "kdx.%s: approximate must be \"none\" or \"tanh\", got %s", fname, luaL_typename(L, 2));
        const char *how = lua_isnoneornil(L, 2) ? "none" : lua_tostring(L, 2);
        if (strcmp(how, "none") == 0) *a = 0;
        else if (strcmp(how, "tanh") == 0) *a = 1;
        else luaL_error(L, "kdx.%s: approximate must be \"none\" or \"tanh\", got \"%s\"", fname, how);
        break;
    }
    case KDX_UN_CLAMP:
        *a = kdxL_optnum(L, 2, NAN, fname, "min");
        *b = kdxL_optnum(L, 3, NAN, fname, "max");
        if (isnan(*a) && isnan(*b)) luaL_error(L, "kdx.%s: give at least one of min and max", fname);
        break;
    case KDX_UN_FILL: *a = kdxL_checknum(L, 2, fname, "value"); break;
    default: break;
    }
}

static int l_unary(lua_State *L)
{
    kdx_unop op = (kdx_unop)OP_UPVALUE(L);
    const char *fname = NAME_UPVALUE(L);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    double a, b;
    unop_params(L, op, fname, &a, &b);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_unary(op, x, a, b, box));
    return 1;
}

static int l_unary_(lua_State *L)
{
    kdx_unop op = (kdx_unop)OP_UPVALUE(L);
    const char *fname = NAME_UPVALUE(L);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    double a, b;
    unop_params(L, op, fname, &a, &b);
    kdxL_check(L, kdx_unary_(op, x, a, b));
    lua_settop(L, 1);
    return 1;
}

static int l_zero_(lua_State *L)
{
    kdxL_check(L, kdx_unary_(KDX_UN_FILL, kdxL_checktensor(L, 1, "zero_"), 0, 0));
    lua_settop(L, 1);
    return 1;
}

static int l_where(lua_State *L)
{
    lua_settop(L, 3); /* fixed argument slots: values pushed later sit above them */
    kdx_tensor *c = kdxL_checktensor(L, 1, "where");
    kdx_tensor *ta = kdxL_totensor(L, 2), *tb = kdxL_totensor(L, 3);
    kdx_dtype dt = ta ? kdx_tensor_dtype(ta) : tb ? kdx_tensor_dtype(tb) : KDX_DTYPE_F32;
    kdx_tensor *a = kdxL_astensor(L, 2, "where", dt), *b = kdxL_astensor(L, 3, "where", dt);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_where(c, a, b, box));
    return 1;
}

static int l_masked_fill(lua_State *L)
{
    lua_settop(L, 3); /* fixed argument slots: values pushed later sit above them */
    kdx_tensor *x = kdxL_checktensor(L, 1, "masked_fill");
    kdx_tensor *m = kdxL_checktensor(L, 2, "masked_fill");
    double v = kdxL_checknum(L, 3, "masked_fill", "value");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_masked_fill(x, m, v, box));
    return 1;
}

/* ---- reductions ---- */

static int l_reduce(lua_State *L)
{
    lua_settop(L, 3); /* fixed argument slots: values pushed later sit above them */
    kdx_redop op = (kdx_redop)OP_UPVALUE(L);
    const char *fname = NAME_UPVALUE(L);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    int dims[KDX_MAX_DIMS];
    int n = kdxL_optdims(L, 2, kdx_tensor_ndim(x), dims, fname);
    int keepdim = lua_toboolean(L, 3);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_reduce(op, x, dims, n, keepdim, box));
    return 1;
}

static int l_norm(lua_State *L)
{
    lua_settop(L, 4); /* fixed argument slots: values pushed later sit above them */
    kdx_tensor *x = kdxL_checktensor(L, 1, "norm");
    double p = 2;
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *s = lua_tostring(L, 2);
        if (strcmp(s, "fro") == 0) p = 2;
        else if (strcmp(s, "inf") == 0) p = INFINITY;
        else return luaL_error(L, "kdx.norm: p must be 1, 2, math.huge, \"fro\" or \"inf\", got \"%s\"", s);
    } else {
        p = kdxL_optnum(L, 2, 2, "norm", "p");
    }
    kdx_redop op;
    if (p == 1) op = KDX_RED_NORM1;
    else if (p == 2) op = KDX_RED_NORM2;
    else if (isinf(p) && p > 0) op = KDX_RED_NORMINF;
    else return luaL_error(L, "kdx.norm: p must be 1, 2 or math.huge, got %f", p);
    int dims[KDX_MAX_DIMS];
    int n = kdxL_optdims(L, 3, kdx_tensor_ndim(x), dims, "norm");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_reduce(op, x, dims, n, lua_toboolean(L, 4), box));
    return 1;
}

/* var/std(dims?, unbiased = true, keepdim = false) */
static int l_var_std(lua_State *L)
{
    lua_settop(L, 4); /* fixed argument slots: values pushed later sit above them */
    int take_sqrt = OP_UPVALUE(L);
    const char *fname = NAME_UPVALUE(L);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    int dims[KDX_MAX_DIMS];
    int n = kdxL_optdims(L, 2, kdx_tensor_ndim(x), dims, fname);
    int unbiased = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, (take_sqrt ? kdx_std : kdx_var)(x, dims, n, unbiased ? 1.0 : 0.0, lua_toboolean(L, 4), box));
    return 1;
}

/* Replaces the 0-based index tensor in box by a 1-based copy (a copy: the
   engine may have kept the original, e.g. for max's gradient). */
static void to_lua_indices(lua_State *L, kdx_tensor **box)
{
    kdx_tensor *one;
    kdxL_check(L, kdx_binary_scalar(KDX_BIN_ADD, *box, 1, 0, &one));
    kdx_tensor_release(*box);
    *box = one;
}

/* max/min: (t) -> 0-d; (t, d, keepdim?) -> values, indices; (t, other) -> elementwise. */
static int l_max_min(lua_State *L)
{
    lua_settop(L, 3); /* fixed argument slots: values pushed later sit above them */
    int want_max = OP_UPVALUE(L);
    const char *fname = NAME_UPVALUE(L);
    if (kdxL_totensor(L, 2)) {
        lua_settop(L, 2);
        return binary(L, want_max ? KDX_BIN_MAXIMUM : KDX_BIN_MINIMUM, fname, 0);
    }
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    if (lua_isnoneornil(L, 2)) {
        kdx_tensor **box = kdxL_newbox(L);
        kdxL_checkas(L, kdx_reduce(want_max ? KDX_RED_AMAX : KDX_RED_AMIN, x, NULL, 0, 0, box), fname);
        return 1;
    }
    int d = kdxL_checkdim(L, 2, kdx_tensor_ndim(x), fname);
    int keepdim = lua_toboolean(L, 3);
    kdx_tensor **vals = kdxL_newbox(L), **idx = kdxL_newbox(L);
    kdxL_check(L, (want_max ? kdx_max : kdx_min)(x, d, keepdim, vals, idx));
    to_lua_indices(L, idx);
    return 2;
}

static int l_argmax_min(lua_State *L)
{
    lua_settop(L, 3); /* fixed argument slots: values pushed later sit above them */
    int want_max = OP_UPVALUE(L);
    const char *fname = NAME_UPVALUE(L);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    int all = lua_isnoneornil(L, 2);
    int d = all ? 0 : kdxL_checkdim(L, 2, kdx_tensor_ndim(x), fname);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, (want_max ? kdx_argmax : kdx_argmin)(x, d, all, lua_toboolean(L, 3), box));
    to_lua_indices(L, box);
    return 1;
}

static int l_cumsum(lua_State *L)
{
    kdx_tensor *x = kdxL_checktensor(L, 1, "cumsum");
    int d = kdxL_checkdim(L, 2, kdx_tensor_ndim(x), "cumsum");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_cumsum(x, d, box));
    return 1;
}

/* ---- linear algebra ---- */

static int l_matmul(lua_State *L)
{
    kdx_tensor *a = kdxL_checktensor(L, 1, "matmul"), *b = kdxL_checktensor(L, 2, "matmul");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_matmul(a, b, box), "matmul");
    return 1;
}

static int l_dot(lua_State *L)
{
    kdx_tensor *a = kdxL_checktensor(L, 1, "dot"), *b = kdxL_checktensor(L, 2, "dot");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_dot(a, b, box));
    return 1;
}

static int l_outer(lua_State *L)
{
    kdx_tensor *a = kdxL_checktensor(L, 1, "outer"), *b = kdxL_checktensor(L, 2, "outer");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_outer(a, b, box));
    return 1;
}

static int l_addmm(lua_State *L)
{
    lua_settop(L, 4); /* fixed argument slots: values pushed later sit above them */
    kdx_tensor *c = kdxL_checktensor(L, 1, "addmm"), *a = kdxL_checktensor(L, 2, "addmm");
    kdx_tensor *b = kdxL_checktensor(L, 3, "addmm");
    int o = lua_isnoneornil(L, 4) ? 0 : 4;
    if (o) kdxL_checktable(L, 4, "addmm", "options");
    double beta = kdxL_optfield_num(L, o, "beta", 1, "addmm");
    double alpha = kdxL_optfield_num(L, o, "alpha", 1, "addmm");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_addmm(c, a, b, beta, alpha, box));
    return 1;
}

/* ---- indexing ---- */

static int l_index_select(lua_State *L)
{
    lua_settop(L, 3); /* fixed argument slots: values pushed later sit above them */
    kdx_tensor *x = kdxL_checktensor(L, 1, "index_select");
    if (kdx_tensor_ndim(x) == 0) return luaL_error(L, "kdx.index_select: input is 0-d");
    int d = kdxL_checkdim(L, 2, kdx_tensor_ndim(x), "index_select");
    kdx_tensor *idx = kdxL_checkindices(L, 3, kdx_tensor_shape(x)[d], "index_select");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_index_select(x, d, idx, box));
    return 1;
}

static int l_gather(lua_State *L)
{
    lua_settop(L, 3); /* fixed argument slots: values pushed later sit above them */
    kdx_tensor *x = kdxL_checktensor(L, 1, "gather");
    int nd = kdx_tensor_ndim(x);
    int d = kdxL_checkdim(L, 2, nd, "gather");
    kdx_tensor *idx = kdxL_checkindices(L, 3, nd ? kdx_tensor_shape(x)[d] : 1, "gather");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_gather(x, d, idx, box));
    return 1;
}

/* scatter_(d, idx, src) and scatter_add_: src a tensor or a number. */
static int l_scatter(lua_State *L)
{
    lua_settop(L, 4); /* fixed argument slots: values pushed later sit above them */
    int add = OP_UPVALUE(L);
    const char *fname = NAME_UPVALUE(L);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    int nd = kdx_tensor_ndim(x);
    int d = kdxL_checkdim(L, 2, nd, fname);
    kdx_tensor *idx = kdxL_checkindices(L, 3, nd ? kdx_tensor_shape(x)[d] : 1, fname);
    kdx_tensor *src = kdxL_totensor(L, 4);
    if (!src) {
        double v = kdxL_checknum(L, 4, fname, "source");
        kdx_tensor **sb = kdxL_newbox(L);
        kdxL_check(L, kdx_full(kdx_tensor_dtype(x), kdx_tensor_ndim(idx), kdx_tensor_shape(idx), v, sb));
        src = *sb;
    }
    if (add == 2) { /* scatter_add: a new tensor */
        kdx_tensor **box = kdxL_newbox(L);
        kdxL_check(L, kdx_scatter_add(x, d, idx, src, box));
        return 1;
    }
    kdxL_check(L, (add ? kdx_scatter_add_ : kdx_scatter_)(x, d, idx, src));
    lua_settop(L, 1);
    return 1;
}

/* index_add_ (in place) and index_add (a new tensor) */
static int l_index_add(lua_State *L)
{
    lua_settop(L, 5); /* fixed argument slots: values pushed later sit above them */
    int inplace = OP_UPVALUE(L);
    const char *fname = NAME_UPVALUE(L);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    if (kdx_tensor_ndim(x) == 0) return luaL_error(L, "kdx.%s: input is 0-d", fname);
    int d = kdxL_checkdim(L, 2, kdx_tensor_ndim(x), fname);
    kdx_tensor *idx = kdxL_checkindices(L, 3, kdx_tensor_shape(x)[d], fname);
    kdx_tensor *src = kdxL_checktensor(L, 4, fname);
    double alpha = kdxL_optnum(L, 5, 1, fname, "alpha");
    if (!inplace) {
        kdx_tensor **box = kdxL_newbox(L);
        kdxL_checkas(L, kdx_index_add(x, d, idx, src, alpha, box), fname);
        return 1;
    }
    kdxL_checkas(L, kdx_index_add_(x, d, idx, src, alpha), fname);
    lua_settop(L, 1);
    return 1;
}

static int l_one_hot(lua_State *L)
{
    lua_settop(L, 2); /* fixed argument slots: values pushed later sit above them */
    kdx_tensor *labels = kdxL_totensor(L, 1);
    if (!labels) labels = kdxL_astensor(L, 1, "one_hot", KDX_DTYPE_I64);
    if (kdx_tensor_dtype(labels) != KDX_DTYPE_I64)
        return luaL_error(L, "kdx.one_hot: labels must be int64, got %s", kdx_dtype_name(kdx_tensor_dtype(labels)));
    lua_Integer n;
    if (lua_isnoneornil(L, 2)) {
        /* As PyTorch's num_classes=-1: as many classes as the largest label. */
        if (kdx_tensor_numel(labels) == 0) return luaL_error(L, "kdx.one_hot: give the number of classes for empty labels");
        kdx_tensor **mb = kdxL_newbox(L);
        kdxL_check(L, kdx_reduce(KDX_RED_AMAX, labels, NULL, 0, 0, mb));
        int64_t zero[1] = {0};
        int64_t m;
        kdxL_check(L, kdx_tensor_get_i64(*mb, zero, &m));
        n = m;
    } else {
        n = kdxL_checkint(L, 2, "one_hot", "num_classes");
    }
    if (n <= 0) return luaL_error(L, "kdx.one_hot: the number of classes must be positive, got %d", (int)n);
    kdx_tensor **ib = kdxL_newbox(L);
    kdx_status s = kdx_index_rebase("one_hot", labels, 1, n, 0, ib);
    if (s != KDX_OK) return luaL_error(L, "kdx.%s (labels are 1-based classes)", kdx_last_error());
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_one_hot(*ib, n, box));
    return 1;
}

/* ---- joining ---- */

/* The tensors of the list at arg, in a userdata-backed array on the stack. */
static const kdx_tensor **check_list(lua_State *L, int arg, const char *fname, int *n)
{
    kdxL_checktable(L, arg, fname, "tensors");
    *n = (int)lua_rawlen(L, arg);
    if (*n == 0) luaL_error(L, "kdx.%s: the list of tensors is empty", fname);
    const kdx_tensor **ts = lua_newuserdatauv(L, (size_t)*n * sizeof *ts, 0);
    for (int i = 0; i < *n; i++) {
        lua_rawgeti(L, arg, i + 1);
        kdx_tensor *t = kdxL_totensor(L, -1);
        if (!t && kdxL_isclosed(L, -1)) luaL_error(L, "kdx.%s: list entry %d is a closed tensor", fname, i + 1);
        if (!t) luaL_error(L, "kdx.%s: list entry %d is a %s, not a tensor", fname, i + 1, luaL_typename(L, -1));
        ts[i] = t;
        lua_pop(L, 1); /* still referenced by the list */
    }
    return ts;
}

static int l_cat_stack(lua_State *L)
{
    lua_settop(L, 2); /* fixed argument slots: values pushed later sit above them */
    int stack = OP_UPVALUE(L);
    const char *fname = NAME_UPVALUE(L);
    int n;
    const kdx_tensor **ts = check_list(L, 1, fname, &n);
    int nd = kdx_tensor_ndim(ts[0]) + (stack ? 1 : 0);
    int d = lua_isnoneornil(L, 2) ? 0 : kdxL_checkdim(L, 2, nd, fname);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, (stack ? kdx_stack : kdx_cat)((const kdx_tensor *const *)ts, n, d, box));
    return 1;
}

/* split(t, size, d) and chunk(t, n, d) -> a table of views */
static int l_split_chunk(lua_State *L)
{
    lua_settop(L, 3); /* fixed argument slots: values pushed later sit above them */
    int chunk = OP_UPVALUE(L);
    const char *fname = NAME_UPVALUE(L);
    kdx_tensor *t = kdxL_checktensor(L, 1, fname);
    lua_Integer k = kdxL_checkint(L, 2, fname, chunk ? "chunks" : "split_size");
    if (k <= 0) return luaL_error(L, "kdx.%s: %s must be positive, got %I", fname, kdxL_argstr(L, 2), (LUAI_UACINT)k);
    if (kdx_tensor_ndim(t) == 0) return luaL_error(L, "kdx.%s: cannot split a 0-d tensor", fname);
    int d = lua_isnoneornil(L, 3) ? 0 : kdxL_checkdim(L, 3, kdx_tensor_ndim(t), fname);
    if (k > (1 << 30)) k = 1 << 30;
    int n;
    kdxL_check(L, chunk ? kdx_chunk(t, (int)k, d, NULL, 0, &n) : kdx_split(t, k, d, NULL, 0, &n));
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        /* One piece at a time, each boxed at once, so nothing leaks on error. */
        int64_t size = kdx_tensor_shape(t)[d], step = 0;
        if (chunk) {
            step = (size + k - 1) / k;
            if (step == 0) step = 1;
        } else {
            step = k;
        }
        int64_t start = (int64_t)i * step, len = size - start < step ? size - start : step;
        kdx_tensor **box = kdxL_newbox(L);
        kdxL_check(L, kdx_narrow(t, d, start, len, box));
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* ---- arithmetic metamethods ---- */

static int l_add_mm(lua_State *L) { return binary(L, KDX_BIN_ADD, "add", 0); }
static int l_sub_mm(lua_State *L) { return binary(L, KDX_BIN_SUB, "sub", 0); }
static int l_mul_mm(lua_State *L) { return binary(L, KDX_BIN_MUL, "mul", 0); }
static int l_div_mm(lua_State *L) { return binary(L, KDX_BIN_DIV, "div", 0); }
static int l_pow_mm(lua_State *L) { return binary(L, KDX_BIN_POW, "pow", 0); }
static int l_unm_mm(lua_State *L)
{
    kdx_tensor *x = kdxL_checktensor(L, 1, "neg");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_unary(KDX_UN_NEG, x, 0, 0, box));
    return 1;
}
static int l_eq_mm(lua_State *L)
{
    lua_pushboolean(L, lua_rawequal(L, 1, 2));
    return 1;
}

void kdxL_open_ops(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const named_op binops[] = {
        {"add", KDX_BIN_ADD}, {"sub", KDX_BIN_SUB}, {"mul", KDX_BIN_MUL}, {"div", KDX_BIN_DIV},
        {"pow", KDX_BIN_POW}, {"maximum", KDX_BIN_MAXIMUM}, {"minimum", KDX_BIN_MINIMUM},
        {"eq", KDX_BIN_EQ}, {"ne", KDX_BIN_NE}, {"lt", KDX_BIN_LT}, {"le", KDX_BIN_LE},
        {"gt", KDX_BIN_GT}, {"ge", KDX_BIN_GE}, {NULL, 0}};
    static const named_op binops_[] = {
        {"add_", KDX_BIN_ADD}, {"sub_", KDX_BIN_SUB}, {"mul_", KDX_BIN_MUL}, {"div_", KDX_BIN_DIV},
        {"pow_", KDX_BIN_POW}, {NULL, 0}};
    static const named_op unops[] = {
        {"neg", KDX_UN_NEG}, {"abs", KDX_UN_ABS}, {"sign", KDX_UN_SIGN}, {"exp", KDX_UN_EXP},
        {"log", KDX_UN_LOG}, {"log1p", KDX_UN_LOG1P}, {"sqrt", KDX_UN_SQRT}, {"rsqrt", KDX_UN_RSQRT},
        {"sin", KDX_UN_SIN}, {"cos", KDX_UN_COS}, {"tanh", KDX_UN_TANH}, {"sigmoid", KDX_UN_SIGMOID},
        {"relu", KDX_UN_RELU}, {"leaky_relu", KDX_UN_LEAKY_RELU}, {"gelu", KDX_UN_GELU},
        {"elu", KDX_UN_ELU}, {"softplus", KDX_UN_SOFTPLUS}, {"clamp", KDX_UN_CLAMP}, {"erf", KDX_UN_ERF}, {NULL, 0}};
    static const named_op unops_[] = {
        {"neg_", KDX_UN_NEG}, {"abs_", KDX_UN_ABS}, {"sign_", KDX_UN_SIGN}, {"exp_", KDX_UN_EXP},
        {"log_", KDX_UN_LOG}, {"log1p_", KDX_UN_LOG1P}, {"sqrt_", KDX_UN_SQRT}, {"rsqrt_", KDX_UN_RSQRT},
        {"sin_", KDX_UN_SIN}, {"cos_", KDX_UN_COS}, {"tanh_", KDX_UN_TANH}, {"sigmoid_", KDX_UN_SIGMOID},
        {"relu_", KDX_UN_RELU}, {"leaky_relu_", KDX_UN_LEAKY_RELU}, {"gelu_", KDX_UN_GELU},
        {"elu_", KDX_UN_ELU}, {"softplus_", KDX_UN_SOFTPLUS}, {"clamp_", KDX_UN_CLAMP},
        {"fill_", KDX_UN_FILL}, {"erf_", KDX_UN_ERF}, {NULL, 0}};
    static const named_op reductions[] = {
        {"sum", KDX_RED_SUM}, {"mean", KDX_RED_MEAN}, {"prod", KDX_RED_PROD},
        {"logsumexp", KDX_RED_LOGSUMEXP}, {"amax", KDX_RED_AMAX}, {"amin", KDX_RED_AMIN}, {NULL, 0}};
    static const named_op var_std[] = {{"var", 0}, {"std", 1}, {NULL, 0}};
    static const named_op max_min[] = {{"max", 1}, {"min", 0}, {NULL, 0}};
    static const named_op arg_max_min[] = {{"argmax", 1}, {"argmin", 0}, {NULL, 0}};
    static const named_op scatters[] = {{"scatter_", 0}, {"scatter_add_", 1}, {"scatter_add", 2}, {NULL, 0}};
    static const named_op index_adds[] = {{"index_add_", 1}, {"index_add", 0}, {NULL, 0}};
    static const named_op cat_stack[] = {{"cat", 0}, {"stack", 1}, {NULL, 0}};
    static const named_op split_chunk[] = {{"split", 0}, {"chunk", 1}, {NULL, 0}};
    register_ops(L, mod, methods, binops, l_binary, 1);
    register_ops(L, mod, methods, binops_, l_binary_, 1);
    register_ops(L, mod, methods, unops, l_unary, 1);
    register_ops(L, mod, methods, unops_, l_unary_, 1);
    register_ops(L, mod, methods, reductions, l_reduce, 1);
    register_ops(L, mod, methods, var_std, l_var_std, 1);
    register_ops(L, mod, methods, max_min, l_max_min, 1);
    register_ops(L, mod, methods, arg_max_min, l_argmax_min, 1);
    register_ops(L, mod, methods, scatters, l_scatter, 1);
    register_ops(L, mod, methods, index_adds, l_index_add, 1);
    register_ops(L, mod, methods, cat_stack, l_cat_stack, 0);
    register_ops(L, mod, methods, split_chunk, l_split_chunk, 1);
    static const luaL_Reg fns[] = {
        {"zero_", l_zero_}, {"masked_fill", l_masked_fill}, {"norm", l_norm}, {"cumsum", l_cumsum},
        {"matmul", l_matmul}, {"mm", l_matmul}, {"dot", l_dot}, {"outer", l_outer},
        {"index_select", l_index_select}, {"gather", l_gather}, {NULL, NULL}};
    static const luaL_Reg mod_only[] = {{"where", l_where}, {"one_hot", l_one_hot}, {"addmm", l_addmm}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 1);
    kdxL_register(L, mod, methods, mod_only, 0);

    static const luaL_Reg meta[] = {
        {"__add", l_add_mm}, {"__sub", l_sub_mm}, {"__mul", l_mul_mm}, {"__div", l_div_mm},
        {"__pow", l_pow_mm}, {"__unm", l_unm_mm}, {"__eq", l_eq_mm}, {NULL, NULL}};
    luaL_getmetatable(L, KDXL_TENSOR);
    luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);
}
