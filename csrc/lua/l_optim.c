/* l_optim.c — the optimizer kernels for lua/kdx/optim/ (private entry points
   of kdx.core: _sgd_step, _adam_step, _rmsprop_step). */
#include "kdx_lua.h"

static kdx_tensor *opt_tensor(lua_State *L, int arg, const char *fname)
{
    return lua_isnoneornil(L, arg) ? NULL : kdxL_checktensor(L, arg, fname);
}

/* _sgd_step(param, grad, buf|nil, lr, momentum, dampening, weight_decay, nesterov, maximize, first) */
static int l_sgd_step(lua_State *L)
{
    const char *f = "optim.SGD";
    kdx_tensor *p = kdxL_checktensor(L, 1, f), *g = kdxL_checktensor(L, 2, f), *b = opt_tensor(L, 3, f);
    kdxL_checkas(L,
                 kdx_sgd_step(p, g, b, kdxL_checknum(L, 4, f, "lr"), kdxL_checknum(L, 5, f, "momentum"),
                              kdxL_checknum(L, 6, f, "dampening"), kdxL_checknum(L, 7, f, "weight_decay"),
                              lua_toboolean(L, 8), lua_toboolean(L, 9), lua_toboolean(L, 10)),
                 f);
    return 0;
}

/* _adam_step(param, grad, exp_avg, exp_avg_sq, max_sq|nil, step, lr, beta1, beta2, eps, weight_decay, decoupled, maximize) */
static int l_adam_step(lua_State *L)
{
    const char *f = "optim.Adam";
    kdx_tensor *p = kdxL_checktensor(L, 1, f), *g = kdxL_checktensor(L, 2, f);
    kdx_tensor *m = kdxL_checktensor(L, 3, f), *v = kdxL_checktensor(L, 4, f), *vm = opt_tensor(L, 5, f);
    kdxL_checkas(L,
                 kdx_adam_step(p, g, m, v, vm, kdxL_checkint(L, 6, f, "step"), kdxL_checknum(L, 7, f, "lr"),
                               kdxL_checknum(L, 8, f, "beta1"), kdxL_checknum(L, 9, f, "beta2"),
                               kdxL_checknum(L, 10, f, "eps"), kdxL_checknum(L, 11, f, "weight_decay"),
                               lua_toboolean(L, 12), lua_toboolean(L, 13)),
                 f);
    return 0;
}

/* _rmsprop_step(param, grad, square_avg, buf|nil, grad_avg|nil, lr, alpha, eps, weight_decay, momentum, maximize) */
static int l_rmsprop_step(lua_State *L)
{
    const char *f = "optim.RMSprop";
    kdx_tensor *p = kdxL_checktensor(L, 1, f), *g = kdxL_checktensor(L, 2, f), *sq = kdxL_checktensor(L, 3, f);
    kdx_tensor *b = opt_tensor(L, 4, f), *ga = opt_tensor(L, 5, f);
    kdxL_checkas(L,
                 kdx_rmsprop_step(p, g, sq, b, ga, kdxL_checknum(L, 6, f, "lr"), kdxL_checknum(L, 7, f, "alpha"),
                                  kdxL_checknum(L, 8, f, "eps"), kdxL_checknum(L, 9, f, "weight_decay"),
                                  kdxL_checknum(L, 10, f, "momentum"), lua_toboolean(L, 11)),
                 f);
    return 0;
}

void kdxL_open_optim(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {
        {"_sgd_step", l_sgd_step}, {"_adam_step", l_adam_step}, {"_rmsprop_step", l_rmsprop_step}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
