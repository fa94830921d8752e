/* l_data.c — readers for lua/kdx/data: _read_idx(path, as_float). */
#include "kdx_lua.h"

static int l_read_idx(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int as_float = lua_toboolean(L, 2);
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_read_idx(path, as_float, box), "data.idx");
    return 1;
}

void kdxL_open_data(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    static const luaL_Reg fns[] = {{"_read_idx", l_read_idx}, {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
