/* l_augment.c — the augmentation kernels for lua/kdx/data/transforms.lua, as
   hidden core functions (_aug_*) with positional arguments: the Lua module
   checks the options and names them. Random forms use the state's generator
   and return the drawn parameters as a second result. Errors name the Lua
   function: "kdx.data.transforms.random_crop: ...". */
#include "kdx_lua.h"

#include <string.h>

#define TR "data.transforms."

/* Number of numbers at arg (a number, or a table of them), copied into a
   userdata left on the stack (the GC owns it); "random" gives 0 when
   allow_random. */
static int checkvalues(lua_State *L, int arg, const char *fname, const char *what, int allow_random,
                       const double **out)
{
    if (allow_random && lua_type(L, arg) == LUA_TSTRING && strcmp(lua_tostring(L, arg), "random") == 0) {
        *out = NULL;
        return 0;
    }
    int n = lua_type(L, arg) == LUA_TTABLE ? (int)lua_rawlen(L, arg) : 1;
    if (lua_type(L, arg) != LUA_TNUMBER && (lua_type(L, arg) != LUA_TTABLE || n < 1))
        luaL_error(L, "kdx.%s: %s must be a number or a list of numbers%s, got %s", fname, what,
                   allow_random ? " or \"random\"" : "", luaL_typename(L, arg));
    double *v = lua_newuserdatauv(L, (size_t)n * sizeof *v, 0);
    if (lua_type(L, arg) == LUA_TNUMBER) {
        v[0] = lua_tonumber(L, arg);
    } else {
        for (int i = 0; i < n; i++) {
            if (lua_rawgeti(L, arg, i + 1) != LUA_TNUMBER)
                luaL_error(L, "kdx.%s: %s entry %d must be a number, got %s", fname, what, i + 1, luaL_typename(L, -1));
            v[i] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    *out = v;
    return n;
}

/* _aug_random_crop(x, pad_h, pad_w, size_h, size_w, fill, with_params) -> y (, offsets [N,2]) */
static int l_random_crop(lua_State *L)
{
    const char *fname = TR "random_crop";
    lua_settop(L, 7);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    int64_t pad[2] = {kdxL_checkint(L, 2, fname, "pad_h"), kdxL_checkint(L, 3, fname, "pad_w")};
    int64_t size[2] = {kdxL_checkint(L, 4, fname, "size_h"), kdxL_checkint(L, 5, fname, "size_w")};
    double fill = kdxL_checknum(L, 6, fname, "fill");
    int want = lua_toboolean(L, 7);
    kdx_tensor **box = kdxL_newbox(L), **off = want ? kdxL_newbox(L) : NULL;
    kdxL_checkas(L, kdx_augment_random_crop(x, pad, size, fill, kdxL_generator(L), box, off), fname);
    return want ? 2 : 1;
}

/* _aug_crop(x, offsets, pad_h, pad_w, size_h, size_w, fill) -> y */
static int l_crop(lua_State *L)
{
    const char *fname = TR "functional.crop";
    lua_settop(L, 7);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    kdx_tensor *off = kdxL_astensor(L, 2, fname, KDX_DTYPE_I64);
    int64_t pad[2] = {kdxL_checkint(L, 3, fname, "pad_h"), kdxL_checkint(L, 4, fname, "pad_w")};
    int64_t size[2] = {kdxL_checkint(L, 5, fname, "size_h"), kdxL_checkint(L, 6, fname, "size_w")};
    double fill = kdxL_checknum(L, 7, fname, "fill");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_augment_crop(x, off, pad, size, fill, box), fname);
    return 1;
}

/* _aug_random_hflip(x, p, with_params) -> y (, mask [N]) */
static int l_random_hflip(lua_State *L)
{
    const char *fname = TR "hflip";
    lua_settop(L, 3);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    double p = kdxL_checknum(L, 2, fname, "p");
    int want = lua_toboolean(L, 3);
    kdx_tensor **box = kdxL_newbox(L), **mask = want ? kdxL_newbox(L) : NULL;
    kdxL_checkas(L, kdx_augment_random_hflip(x, p, kdxL_generator(L), box, mask), fname);
    return want ? 2 : 1;
}

/* _aug_hflip(x, mask?) -> y */
static int l_hflip(lua_State *L)
{
    const char *fname = TR "functional.hflip";
    lua_settop(L, 2);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    kdx_tensor *mask = lua_isnil(L, 2) ? NULL : kdxL_astensor(L, 2, fname, KDX_DTYPE_I64);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_augment_hflip(x, mask, box), fname);
    return 1;
}

/* _aug_random_affine(x, deg_lo, deg_hi, translate_x, translate_y, scale_lo, scale_hi, fill, with_params)
   -> y (, params [N,4]) */
static int l_random_affine(lua_State *L)
{
    const char *fname = TR "random_affine";
    lua_settop(L, 9);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    kdx_affine_opts o = kdx_affine_opts_default();
    o.degrees[0] = kdxL_checknum(L, 2, fname, "degrees");
    o.degrees[1] = kdxL_checknum(L, 3, fname, "degrees");
    o.translate[0] = kdxL_checknum(L, 4, fname, "translate");
    o.translate[1] = kdxL_checknum(L, 5, fname, "translate");
    o.scale[0] = kdxL_checknum(L, 6, fname, "scale");
    o.scale[1] = kdxL_checknum(L, 7, fname, "scale");
    o.fill = kdxL_checknum(L, 8, fname, "fill");
    int want = lua_toboolean(L, 9);
    kdx_tensor **box = kdxL_newbox(L), **params = want ? kdxL_newbox(L) : NULL;
    kdxL_checkas(L, kdx_augment_random_affine(x, &o, kdxL_generator(L), box, params), fname);
    return want ? 2 : 1;
}

/* _aug_affine(x, params [N,4], fill) -> y */
static int l_affine(lua_State *L)
{
    const char *fname = TR "functional.affine";
    lua_settop(L, 3);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    kdx_tensor *params = kdxL_astensor(L, 2, fname, KDX_DTYPE_F64);
    double fill = kdxL_checknum(L, 3, fname, "fill");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_augment_affine(x, params, fill, box), fname);
    return 1;
}

/* _aug_noise(x, std) -> y */
static int l_noise(lua_State *L)
{
    const char *fname = TR "noise";
    lua_settop(L, 2);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    double std = kdxL_checknum(L, 2, fname, "std");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_augment_noise(x, std, kdxL_generator(L), box), fname);
    return 1;
}

/* _aug_random_erasing(x, p, scale_lo, scale_hi, ratio_lo, ratio_hi, value, with_params) -> y (, boxes [N,4]) */
static int l_random_erasing(lua_State *L)
{
    const char *fname = TR "random_erasing";
    lua_settop(L, 8);
    int want = lua_toboolean(L, 8);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    kdx_erase_opts o = kdx_erase_opts_default();
    o.p = kdxL_checknum(L, 2, fname, "p");
    o.scale[0] = kdxL_checknum(L, 3, fname, "scale");
    o.scale[1] = kdxL_checknum(L, 4, fname, "scale");
    o.ratio[0] = kdxL_checknum(L, 5, fname, "ratio");
    o.ratio[1] = kdxL_checknum(L, 6, fname, "ratio");
    o.nvalue = checkvalues(L, 7, fname, "value", 1, &o.value);
    kdx_tensor **box = kdxL_newbox(L), **boxes = want ? kdxL_newbox(L) : NULL;
    kdxL_checkas(L, kdx_augment_random_erase(x, &o, kdxL_generator(L), box, boxes), fname);
    return want ? 2 : 1;
}

/* _aug_erase(x, boxes [N,4], value) -> y */
static int l_erase(lua_State *L)
{
    const char *fname = TR "functional.erase";
    lua_settop(L, 3);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    kdx_tensor *boxes = kdxL_astensor(L, 2, fname, KDX_DTYPE_I64);
    const double *value;
    int n = checkvalues(L, 3, fname, "value", 1, &value);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_augment_erase(x, boxes, value, n, kdxL_generator(L), box), fname);
    return 1;
}

/* _aug_normalize(x, mean, std) -> y; mean and std: numbers or lists of C numbers */
static int l_normalize(lua_State *L)
{
    const char *fname = TR "normalize";
    lua_settop(L, 3);
    kdx_tensor *x = kdxL_checktensor(L, 1, fname);
    const double *mean, *std;
    int nm = checkvalues(L, 2, fname, "mean", 0, &mean), ns = checkvalues(L, 3, fname, "std", 0, &std);
    if (nm != ns) return luaL_error(L, "kdx.%s: mean and std must have the same length, got %d and %d", fname, nm, ns);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_augment_normalize(x, mean, std, nm, box), fname);
    return 1;
}

void kdxL_open_augment(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {
        {"_aug_random_crop", l_random_crop}, {"_aug_crop", l_crop},
        {"_aug_random_hflip", l_random_hflip}, {"_aug_hflip", l_hflip},
        {"_aug_random_affine", l_random_affine}, {"_aug_affine", l_affine},
        {"_aug_noise", l_noise},
        {"_aug_random_erasing", l_random_erasing}, {"_aug_erase", l_erase},
        {"_aug_normalize", l_normalize}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
