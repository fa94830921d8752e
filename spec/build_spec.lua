-- Promises the build and the README make: the engine archive needs no Lua,
-- and the README's example runs as printed.
local function build_dir()
  return (os.getenv("LUA_CPATH") or ""):match("([^;]*build[^/;]*)/%?%.so") or "build"
end

describe("the build", function()
  it("keeps Lua out of the engine archive", function()
    local archive = build_dir() .. "/libkdx.a"
    local p = assert(io.popen("nm " .. archive .. " 2>&1"))
    local syms = p:read("a")
    p:close()
    assert.truthy(syms:find("kdx_matmul", 1, true), "nm could not read " .. archive)
    assert.is_nil(syms:find("lua_", 1, true))
    assert.is_nil(syms:find("luaL_", 1, true))
  end)

  it("runs the README's example as printed", function()
    local f = assert(io.open("README.md"))
    local readme = f:read("a")
    f:close()
    local code = readme:match("```lua\n(.-)```")
    assert.truthy(code, "README has a lua example")
    local printed = {}
    local env = setmetatable({print = function(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring(select(i, ...)) end
      printed[#printed + 1] = table.concat(parts, "\t")
    end}, {__index = _G})
    assert(load(code, "README", "t", env))()
    assert.truthy(printed[1]:find("shape={5}, dtype=int64", 1, true))
    assert.are.equal("kdx.matmul: shapes [2,3] and [4,5] do not match", printed[2])
  end)
end)
