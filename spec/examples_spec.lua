-- Every example runs, in its small mode, as a user would run it.
local function run(script)
  local cmd = string.format("lua5.4 %s --small 2>&1", script)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, how, code = p:close()
  return ok, out, how, code
end

describe("examples", function()
  local dir = "examples"
  local scripts = {}
  for name in io.popen("ls " .. dir):lines() do
    if name:match("^%d%d_.*%.lua$") then scripts[#scripts + 1] = dir .. "/" .. name end
  end

  it("are there to run", function()
    assert.is_true(#scripts >= 1)
  end)

  for _, script in ipairs(scripts) do
    it(script .. " runs to the end in small mode", function()
      local ok, out, how, code = run(script)
      assert(ok, string.format("%s exited (%s %s):\n%s", script, tostring(how), tostring(code), out))
      assert.is_nil(out:find("stack traceback", 1, true))
    end)
  end

  it("01_tensor_tour shows views, broadcasting and a clear shape error", function()
    local ok, out = run(dir .. "/01_tensor_tour.lua")
    assert.is_true(ok)
    assert.truthy(out:find("after zeroing column 1 through a view", 1, true))
    assert.truthy(out:find("{4,16,14,14}", 1, true))
    assert.truthy(out:find("kdx.matmul: shapes [2,3] and [4,5] do not match", 1, true))
  end)
end)
