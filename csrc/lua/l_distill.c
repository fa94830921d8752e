/* l_distill.c — the distillation losses and target makers, registered as the
   private table kdx.core._distill for lua/kdx/distill/loss.lua, which checks
   options and turns engine messages into kdx.distill.loss.* errors. Arguments
   here are positional and already defaulted. Labels arrive 1-based and are
   shifted to 0-based here, once; hard pseudo labels go back 1-based. */
#include "kdx_lua.h"

typedef kdx_status (*pair_fn)(const kdx_tensor *, const kdx_tensor *, kdx_tensor **);
typedef kdx_status (*pair_num_fn)(const kdx_tensor *, const kdx_tensor *, double, kdx_tensor **);

static int pair_loss(lua_State *L, const char *fname, pair_fn fn)
{
    kdx_tensor *a = kdxL_checktensor(L, 1, fname), *b = kdxL_checktensor(L, 2, fname);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, fn(a, b, box));
    return 1;
}

static int pair_num_loss(lua_State *L, const char *fname, pair_num_fn fn, const char *what)
{
    kdx_tensor *a = kdxL_checktensor(L, 1, fname), *b = kdxL_checktensor(L, 2, fname);
    double v = kdxL_checknum(L, 3, fname, what);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, fn(a, b, v, box));
    return 1;
}

/* Labels at arg, 1-based, as a new 0-based tensor boxed on the stack. */
static kdx_tensor *labels0(lua_State *L, int arg, const char *fname)
{
    kdx_tensor *y = kdxL_checktensor(L, arg, fname);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_binary_scalar(KDX_BIN_SUB, y, 1, 0, box));
    return *box;
}

static int l_kd(lua_State *L) { return pair_num_loss(L, "loss_kd", kdx_loss_kd, "T"); }
static int l_soft_ce(lua_State *L) { return pair_num_loss(L, "loss_soft_ce", kdx_loss_soft_ce, "T"); }
static int l_consistency(lua_State *L) { return pair_num_loss(L, "loss_consistency", kdx_loss_consistency, "T"); }
static int l_at(lua_State *L) { return pair_num_loss(L, "loss_at", kdx_loss_at, "p"); }
static int l_pkt(lua_State *L) { return pair_num_loss(L, "loss_pkt", kdx_loss_pkt, "eps"); }
static int l_hint(lua_State *L) { return pair_loss(L, "loss_hint", kdx_loss_hint); }
static int l_sp(lua_State *L) { return pair_loss(L, "loss_sp", kdx_loss_sp); }
static int l_nst(lua_State *L) { return pair_loss(L, "loss_nst", kdx_loss_nst); }
static int l_cc(lua_State *L) { return pair_loss(L, "loss_cc", kdx_loss_cc); }

/* dkd(s, t, y, alpha, beta, T) */
static int l_dkd(lua_State *L)
{
    const char *fname = "loss_dkd";
    lua_settop(L, 6);
    kdx_tensor *s = kdxL_checktensor(L, 1, fname), *t = kdxL_checktensor(L, 2, fname);
    double alpha = kdxL_checknum(L, 4, fname, "alpha"), beta = kdxL_checknum(L, 5, fname, "beta");
    double T = kdxL_checknum(L, 6, fname, "T");
    kdx_tensor *y = labels0(L, 3, fname);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_loss_dkd(s, t, y, alpha, beta, T, box));
    return 1;
}

/* tf_kd(s, y, T, correct_prob) */
static int l_tf_kd(lua_State *L)
{
    const char *fname = "loss_tf_kd";
    lua_settop(L, 4);
    kdx_tensor *s = kdxL_checktensor(L, 1, fname);
    double T = kdxL_checknum(L, 3, fname, "T"), p = kdxL_checknum(L, 4, fname, "correct_prob");
    kdx_tensor *y = labels0(L, 2, fname);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_loss_tf_kd(s, y, T, p, box));
    return 1;
}

/* rkd(es, et, w_distance, w_angle) */
static int l_rkd(lua_State *L)
{
    const char *fname = "loss_rkd";
    kdx_tensor *s = kdxL_checktensor(L, 1, fname), *t = kdxL_checktensor(L, 2, fname);
    double wd = kdxL_checknum(L, 3, fname, "distance"), wa = kdxL_checknum(L, 4, fname, "angle");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, kdx_loss_rkd(s, t, wd, wa, box));
    return 1;
}

typedef kdx_status (*target_fn)(const kdx_tensor *, int64_t, double, kdx_dtype, kdx_tensor **);

/* label_smoothing(y, C, smoothing, dtype), virtual_teacher(y, C, correct_prob, dtype) */
static int make_targets(lua_State *L, const char *fname, target_fn fn, const char *what)
{
    lua_settop(L, 4);
    int64_t C = kdxL_checkint(L, 2, fname, "num_classes");
    double v = kdxL_checknum(L, 3, fname, what);
    kdx_dtype dt = kdxL_optdtype(L, 4, KDX_DTYPE_F32, fname);
    kdx_tensor *y = labels0(L, 1, fname);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_check(L, fn(y, C, v, dt, box));
    return 1;
}

static int l_label_smoothing(lua_State *L)
{
    return make_targets(L, "label_smoothing", kdx_distill_label_smoothing, "smoothing");
}

static int l_virtual_teacher(lua_State *L)
{
    return make_targets(L, "virtual_teacher", kdx_distill_virtual_teacher, "correct_prob");
}

/* pseudo_labels(t, soft, T, threshold, smoothing) -> targets, mask */
static int l_pseudo_labels(lua_State *L)
{
    const char *fname = "pseudo_labels";
    lua_settop(L, 5);
    kdx_tensor *t = kdxL_checktensor(L, 1, fname);
    int soft = lua_toboolean(L, 2);
    double T = kdxL_checknum(L, 3, fname, "T"), thr = kdxL_checknum(L, 4, fname, "threshold");
    double eps = kdxL_checknum(L, 5, fname, "smoothing");
    kdx_tensor **tg = kdxL_newbox(L), **mask = kdxL_newbox(L);
    kdxL_check(L, kdx_distill_pseudo_labels(t, soft, T, thr, eps, tg, mask));
    if (kdx_tensor_dtype(*tg) == KDX_DTYPE_I64) {
        kdx_tensor *one;
        kdxL_check(L, kdx_binary_scalar(KDX_BIN_ADD, *tg, 1, 0, &one));
        kdx_tensor_release(*tg);
        *tg = one;
    }
    return 2;
}

void kdxL_open_distill(lua_State *L, int methods)
{
    (void)methods;
    static const luaL_Reg fns[] = {
        {"kd", l_kd}, {"soft_ce", l_soft_ce}, {"dkd", l_dkd}, {"consistency", l_consistency},
        {"tf_kd", l_tf_kd}, {"hint", l_hint}, {"at", l_at}, {"sp", l_sp}, {"rkd", l_rkd}, {"pkt", l_pkt},
        {"nst", l_nst}, {"cc", l_cc}, {"label_smoothing", l_label_smoothing},
        {"virtual_teacher", l_virtual_teacher}, {"pseudo_labels", l_pseudo_labels}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "_distill");
}
