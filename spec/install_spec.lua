-- `make install` into a staged tree (DESTDIR): the files land where the
-- Makefile says, a C program builds against the staged kdx.h and libkdx.a
-- through the staged kdx.pc, the staged Lua module and bin/kdx run, and
-- `make uninstall` with the same variables leaves the stage empty.

-- Which build the suite runs under (build or build-san, from LUA_CPATH):
-- the install builds the same one, so nothing is compiled again.
local function build_dir()
  return (os.getenv("LUA_CPATH") or ""):match("([^;]*build[^/;]*)/%?%.so") or "build"
end

-- Tools (make, cc, pkg-config, find) run without the sanitizer build's
-- LD_PRELOAD, whose leak checks would fail them; Lua runs keep it.
local function sh(cmd, keep_preload)
  if not keep_preload then cmd = "LD_PRELOAD= ; export LD_PRELOAD; " .. cmd end
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok, out, code
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function files_under(dir)
  local _, out = sh("cd " .. q(dir) .. " && find . -type f -o -type l | sort")
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = line:sub(3) end
  return list
end

describe("make install", function()
  local stage, prefix, san, make_vars
  setup(function()
    stage = os.tmpname()
    os.remove(stage)
    assert(os.execute("LD_PRELOAD= mkdir -p " .. q(stage)))
    prefix = "/opt/kdx-test"
    san = build_dir():match("build%-san$") ~= nil
    make_vars = ("DESTDIR=%s PREFIX=%s%s"):format(q(stage), prefix, san and " SAN=1" or "")
  end)
  teardown(function()
    if stage then os.execute("LD_PRELOAD= rm -rf " .. q(stage)) end
  end)

  it("stages every file, builds a C program from kdx.pc, and uninstalls to nothing", function()
    local ok, out = sh("make --no-print-directory -s install " .. make_vars)
    assert(ok, "make install failed:\n" .. out)
    local root = stage .. prefix

    -- The files, each where docs/packaging.md says.
    local have = {}
    for _, f in ipairs(files_under(root)) do have[f] = true end
    for _, f in ipairs{"bin/kdx", "include/kdx.h", "lib/libkdx.a", "lib/pkgconfig/kdx.pc",
                       "lib/lua/5.4/kdx/core.so", "share/lua/5.4/kdx/init.lua",
                       "share/lua/5.4/kdx/explain/init.lua", "share/lua/5.4/kdx/nn/module.lua",
                       "share/kdx/data/digits.csv.gz"} do
      assert.is_true(have[f] == true, "not installed: " .. f)
    end
    local _, lua_files = sh("cd lua && find kdx -name '*.lua' | wc -l")
    local _, staged_lua = sh("cd " .. q(root .. "/share/lua/5.4") .. " && find kdx -name '*.lua' | wc -l")
    assert.are.equal(tonumber(lua_files), tonumber(staged_lua))
    local _, mode = sh("stat -c %a " .. q(root .. "/bin/kdx"))
    assert.are.equal("755", mode:match("%d+"))

    -- kdx.pc names the real prefix (not the stage) and the version of kdx.h.
    local pc = assert(io.open(root .. "/lib/pkgconfig/kdx.pc")):read("a")
    assert.truthy(pc:find("prefix=" .. prefix .. "\n", 1, true))
    assert.is_nil(pc:find(stage, 1, true))
    local kdx = require "kdx"
    assert.truthy(pc:find("Version: " .. kdx._VERSION .. "\n", 1, true))

    -- pkg-config over the staged .pc: the sysroot maps the prefix into the stage.
    local env = ("PKG_CONFIG_PATH=%s PKG_CONFIG_SYSROOT_DIR=%s"):format(q(root .. "/lib/pkgconfig"), q(stage))
    local pok, flags = sh(env .. " pkg-config --cflags --libs kdx")
    assert(pok, "pkg-config failed: " .. flags)
    flags = flags:gsub("\n", " ")
    assert.truthy(flags:find("-I" .. root .. "/include", 1, true), flags)
    assert.truthy(flags:find("-L" .. root .. "/lib", 1, true), flags)
    assert.truthy(flags:find("-lkdx", 1, true), flags)
    assert.truthy(flags:find("-lopenblas", 1, true), flags)
    -- --define-prefix reads the prefix from where the .pc is: the same flags.
    local _, flags2 = sh("PKG_CONFIG_PATH=" .. q(root .. "/lib/pkgconfig") ..
                         " pkg-config --define-prefix --cflags --libs kdx")
    assert.truthy(flags2:find("-I" .. root .. "/include", 1, true), flags2)

    -- A tiny C program, built only from what the stage holds.
    local src = stage .. "/hello.c"
    local f = assert(io.open(src, "w"))
    f:write([[
#include <kdx.h>
#include <stdio.h>
int main(void) {
    const float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8};
    const int64_t shape[] = {2, 2}, idx[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    kdx_tensor *x = NULL, *y = NULL, *z = NULL;
    double v[4];
    if (kdx_from_data(KDX_DTYPE_F32, 2, shape, a, &x) || kdx_from_data(KDX_DTYPE_F32, 2, shape, b, &y) ||
        kdx_matmul(x, y, &z)) { fprintf(stderr, "%s\n", kdx_last_error()); return 1; }
    for (int i = 0; i < 4; i++)
        if (kdx_tensor_get(z, idx[i], &v[i])) return 1;
    printf("kdx %s: %g %g %g %g\n", KDX_VERSION, v[0], v[1], v[2], v[3]);
    kdx_tensor_release(x); kdx_tensor_release(y); kdx_tensor_release(z);
    return 0;
}
]])
    f:close()
    local exe = stage .. "/hello"
    local sanflags = san and "-fsanitize=address,undefined " or ""
    local cok, cout = sh(("cc %s%s -o %s $(%s pkg-config --cflags --libs kdx)"):format(
      sanflags, q(src), q(exe), env))
    assert(cok, "the C program did not build:\n" .. cout)
    local rok, rout = sh(q(exe))
    assert(rok, "the C program failed:\n" .. rout)
    assert.are.equal(("kdx %s: 19 22 43 50\n"):format(kdx._VERSION), rout)
    os.remove(src)
    os.remove(exe)

    -- The staged Lua module and the CLI run from the stage alone.
    local lua_env = ("LUA_PATH=%s LUA_CPATH=%s"):format(
      q(root .. "/share/lua/5.4/?.lua;" .. root .. "/share/lua/5.4/?/init.lua"),
      q(root .. "/lib/lua/5.4/?.so"))
    local lok, lout = sh(lua_env .. " lua5.4 -e 'local k = require \"kdx\"; " ..
      "print(package.searchpath(\"kdx.core\", package.cpath), k.tensor{1, 2, 3}:sum():item())'", true)
    assert(lok, lout)
    assert.truthy(lout:find(root .. "/lib/lua/5.4/kdx/core.so\t6", 1, true), lout)
    local vok, vout = sh(lua_env .. " " .. q(root .. "/bin/kdx") .. " --version", true)
    assert(vok, vout)
    assert.are.equal("kdx " .. kdx._VERSION .. "\n", vout)

    -- Uninstall with the same variables: no file, no folder left.
    local uok, uout = sh("make --no-print-directory -s uninstall " .. make_vars)
    assert(uok, "make uninstall failed:\n" .. uout)
    assert.are.same({}, files_under(stage))
    local _, left = sh("cd " .. q(stage) .. " && find . -mindepth 1")
    assert.are.equal("", left)
  end)

  it("leaves the shared folders of a real prefix in place", function()
    -- A prefix that already has bin/ and lib/ with other files: uninstall
    -- removes kdx's files and nothing else.
    local root = stage .. prefix
    assert(os.execute("LD_PRELOAD= mkdir -p " .. q(root .. "/bin") .. " " .. q(root .. "/lib/pkgconfig")))
    assert(io.open(root .. "/bin/other", "w")):close()
    assert(io.open(root .. "/lib/pkgconfig/other.pc", "w")):close()
    local ok, out = sh("make --no-print-directory -s install " .. make_vars)
    assert(ok, out)
    ok, out = sh("make --no-print-directory -s uninstall " .. make_vars)
    assert(ok, out)
    assert.are.same({"bin/other", "lib/pkgconfig/other.pc"}, files_under(root))
  end)
end)
