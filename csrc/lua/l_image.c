/* l_image.c — images for lua/kdx/data/images.lua: _read_image(path),
   _write_png(path, t), _write_jpg(path, t, quality), and the directory
   listing image_folder needs (_listdir(path), _isdir(path)), which plain Lua
   cannot do. */
#define _POSIX_C_SOURCE 200809L /* opendir, stat */
#include "kdx_lua.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static const char DIR_MT_KEY = 'd'; /* registry key of the directory box's metatable */

static const char *check_path(lua_State *L, const char *fname)
{
    if (lua_type(L, 1) != LUA_TSTRING)
        luaL_error(L, "kdx.%s: argument 1 (path) must be a string, got %s", fname, luaL_typename(L, 1));
    size_t len;
    const char *path = lua_tolstring(L, 1, &len);
    if (len == 0 || strlen(path) != len) luaL_error(L, "kdx.%s: the path must be a non-empty string without NULs", fname);
    return path;
}

static int l_read_image(lua_State *L)
{
    const char *path = check_path(L, "data.image");
    kdx_tensor **box = kdxL_newbox(L);
    kdxL_checkas(L, kdx_read_image(path, box), "data.image");
    return 1;
}

static int l_write_png(lua_State *L)
{
    const char *path = check_path(L, "data.save_png");
    kdx_tensor *t = kdxL_checktensor(L, 2, "data.save_png");
    kdxL_checkas(L, kdx_write_png(path, t), "data.save_png");
    return 0;
}

static int l_write_jpg(lua_State *L)
{
    const char *path = check_path(L, "data.save_jpg");
    kdx_tensor *t = kdxL_checktensor(L, 2, "data.save_jpg");
    lua_Integer q = lua_isnoneornil(L, 3) ? 90 : kdxL_checkint(L, 3, "data.save_jpg", "quality");
    if (q < 1 || q > 100) return luaL_error(L, "kdx.data.save_jpg: quality must be in [1, 100], got %I", (LUAI_UACINT)q);
    kdxL_checkas(L, kdx_write_jpg(path, t, (int)q), "data.save_jpg");
    return 0;
}

static int l_dir_gc(lua_State *L)
{
    DIR **d = lua_touserdata(L, 1);
    if (*d) closedir(*d);
    *d = NULL;
    return 0;
}

/* _listdir(path) -> the entry names (without "." and ".."), unsorted. The
   DIR lives in a box with __gc, so an error while listing leaks nothing. */
static int l_listdir(lua_State *L)
{
    const char *path = check_path(L, "data.image_folder");
    DIR **d = lua_newuserdatauv(L, sizeof *d, 0);
    *d = NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &DIR_MT_KEY);
    lua_setmetatable(L, -2);
    *d = opendir(path);
    if (!*d) return luaL_error(L, "kdx.data.image_folder: cannot open the directory %s: %s", path, strerror(errno));
    lua_newtable(L);
    lua_Integer n = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(*d);
        if (!e) break;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++n);
    }
    int err = errno;
    closedir(*d);
    *d = NULL;
    if (err) return luaL_error(L, "kdx.data.image_folder: cannot list %s: %s", path, strerror(err));
    return 1;
}

/* _isdir(path) -> true if path names a directory (following links). */
static int l_isdir(lua_State *L)
{
    const char *path = check_path(L, "data.image_folder");
    struct stat st;
    lua_pushboolean(L, stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    return 1;
}

void kdxL_open_image(lua_State *L, int methods)
{
    int mod = lua_gettop(L);
    kdxL_handle_meta(L, &DIR_MT_KEY, "kdx.dir", l_dir_gc);
    static const luaL_Reg fns[] = {{"_read_image", l_read_image}, {"_write_png", l_write_png},
                                   {"_write_jpg", l_write_jpg},   {"_listdir", l_listdir},
                                   {"_isdir", l_isdir},           {NULL, NULL}};
    kdxL_register(L, mod, methods, fns, 0);
}
