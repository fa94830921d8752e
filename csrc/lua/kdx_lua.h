/*
 * kdx_lua.h — helpers shared by the binding (csrc/lua/), the only code that
 * includes lua.h. The binding checks arguments, converts Lua's 1-based dims and
 * indices to the engine's 0-based ones (once, here), boxes every tensor the
 * engine returns in a userdata before anything can raise, and turns engine
 * statuses into Lua errors. It does no math.
 */
#ifndef KDX_LUA_H
#define KDX_LUA_H

#include "../kdx.h"

#include <lauxlib.h>
#include <lua.h>

#define KDXL_TENSOR "kdx.Tensor"

/* A new userdata box holding no tensor yet, with the tensor metatable; the
   engine writes into it. Boxing first means a later error leaks nothing. */
kdx_tensor **kdxL_newbox(lua_State *L);
/* Registry key (its address) of the tensor metatable. */
extern const char kdxL_tensor_mt_key;
/* Raises "kdx.<engine message>" if s is not KDX_OK; returns otherwise. */
void kdxL_check(lua_State *L, kdx_status s);
/* As kdxL_check, naming fname in place of the engine function (for
   functions built on another: zeros on full, index_add_ on add_, ...). */
void kdxL_checkas(lua_State *L, kdx_status s, const char *fname);
/* 1 if arg is a tensor userdata that was closed. */
int kdxL_isclosed(lua_State *L, int arg);
/* The tensor at arg, or a Lua error naming fname and arg. */
kdx_tensor *kdxL_checktensor(lua_State *L, int arg, const char *fname);
/* The tensor at arg, or NULL if it is not one. */
kdx_tensor *kdxL_totensor(lua_State *L, int arg);
/* The tensor at arg; a number or (nested) table there is converted to a new
   tensor of dtype dt, which is pushed so the GC owns it. */
kdx_tensor *kdxL_astensor(lua_State *L, int arg, const char *fname, kdx_dtype dt);
/* Builds a tensor from a nested Lua table or number at arg. */
kdx_status kdxL_fromtable(lua_State *L, int arg, const char *fname, kdx_dtype dt, kdx_tensor **out);

/* The position of arg as the user counts it (one less in a method call). */
int kdxL_argno(lua_State *L, int arg);
/* "argument N" as the user counts it, or "the tensor (self)"; pushed on the stack. */
const char *kdxL_argstr(lua_State *L, int arg);
/* A number at arg, else "kdx.<fname>: argument N (<what>) must be a number". */
lua_Number kdxL_checknum(lua_State *L, int arg, const char *fname, const char *what);
/* As kdxL_checknum, with def for nil or none. */
lua_Number kdxL_optnum(lua_State *L, int arg, lua_Number def, const char *fname, const char *what);
/* An integer (or an integral float) at arg. */
lua_Integer kdxL_checkint(lua_State *L, int arg, const char *fname, const char *what);
/* A table at arg. */
void kdxL_checktable(lua_State *L, int arg, const char *fname, const char *what);
/* A 1-based (or negative) Lua dim at arg for an ndim-d tensor -> 0-based. */
int kdxL_checkdim(lua_State *L, int arg, int ndim, const char *fname);
/* A dim read from entry `entry` of a dims table (its value at stack idx). */
int kdxL_dimentry(lua_State *L, int idx, int entry, int ndim, const char *fname);
/* As kdxL_checkdim for the value v (already read). */
int kdxL_dim(lua_State *L, lua_Integer v, int ndim, const char *fname);
/* A 1-based (or negative) Lua index into a dim of size n -> 0-based. */
int64_t kdxL_checkindex(lua_State *L, int arg, int64_t n, const char *fname);
/* A shape given as a table at arg, or as numbers from arg to the top of the
   stack. Returns ndim. */
int kdxL_checkshape(lua_State *L, int arg, int64_t *shape, const char *fname);
/* Optional dtype name at arg (default def). */
kdx_dtype kdxL_optdtype(lua_State *L, int arg, kdx_dtype def, const char *fname);
/* A Lua index tensor (int64 tensor or table of integers, 1-based) at arg for a
   dim of size n -> a 0-based int64 tensor, pushed onto the stack. */
kdx_tensor *kdxL_checkindices(lua_State *L, int arg, int64_t size, const char *fname);
/* Dims list at arg: nil (all; returns 0), a number, or a table; 0-based. */
int kdxL_optdims(lua_State *L, int arg, int ndim, int *dims, const char *fname);

/* Option-table fields: nil/absent gives def. The table may be absent (opts == 0). */
lua_Integer kdxL_optfield_int(lua_State *L, int opts, const char *key, lua_Integer def, const char *fname);
lua_Number kdxL_optfield_num(lua_State *L, int opts, const char *key, lua_Number def, const char *fname);
int kdxL_optfield_bool(lua_State *L, int opts, const char *key, int def, const char *fname);
const char *kdxL_optfield_str(lua_State *L, int opts, const char *key, const char *def, const char *fname);
/* A number or {h, w} pair field, written to out[0..1]. */
void kdxL_optfield_pair(lua_State *L, int opts, const char *key, int64_t def, int64_t *out, const char *fname);

/* The generator of this Lua state (each state has its own). */
kdx_generator *kdxL_generator(lua_State *L);

/* A Lua callable (function or module) as a kdx_model for the attribution
   methods: lm holds the state and the callable's stack slot, m points at it.
   The callable is run with lua_pcall, so a Lua error comes back as a status. */
typedef struct kdxL_model {
    lua_State *L;
    int fn; /* absolute stack index of the callable */
} kdxL_model;
void kdxL_checkmodel(lua_State *L, int arg, const char *fname, kdxL_model *lm, kdx_model *m);
/* An attribution target at arg: nil (NULL), a 1-based class, or 1-based
   classes (table or int64 tensor) -> 0-based int64, pushed. */
kdx_tensor *kdxL_checktarget(lua_State *L, int arg, const char *fname);
/* A feature mask at arg: nil (NULL) or 1-based int64 group ids (tensor or
   table) -> 0-based int64, pushed. */
kdx_tensor *kdxL_optfeaturemask(lua_State *L, int arg, const char *fname);

/* Registration of each part of the binding into the module table (at -1) and
   the tensor methods table (at methods). */
void kdxL_open_tensor(lua_State *L, int methods);
void kdxL_open_ops(lua_State *L, int methods);
void kdxL_open_nn(lua_State *L, int methods);
void kdxL_open_autograd(lua_State *L, int methods);
void kdxL_open_io(lua_State *L, int methods);
void kdxL_open_optim(lua_State *L, int methods);
void kdxL_open_explain(lua_State *L, int methods);
void kdxL_open_modrules(lua_State *L, int methods);
void kdxL_open_explain_layer(lua_State *L, int methods);
void kdxL_open_explain_lrp(lua_State *L, int methods);
void kdxL_open_explain_surrogate(lua_State *L, int methods);
void kdxL_open_explain_metrics(lua_State *L, int methods);
void kdxL_open_data(lua_State *L, int methods);
void kdxL_open_augment(lua_State *L, int methods);
void kdxL_open_image(lua_State *L, int methods);
void kdxL_open_distill(lua_State *L, int methods);
void kdxL_open_explain_perturb(lua_State *L, int methods);
void kdxL_open_surrogate(lua_State *L, int methods);

/* Registers f under name both in the module table at mod and in methods. */
void kdxL_register(lua_State *L, int mod, int methods, const luaL_Reg *fns, int as_method);

/* Stores, under key in the registry, the metatable of a handle userdata (a
   reader's state, a directory): its __gc and a __name for error messages. */
void kdxL_handle_meta(lua_State *L, const void *key, const char *name, lua_CFunction gc);

#endif
