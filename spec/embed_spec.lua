-- The embedding examples (examples/embed/, docs/embedding.md): the engine as a
-- plain C library, a C host that embeds Lua and runs a student once per frame,
-- and several lua_States in several threads.
local kdx = require "kdx"
local nn = kdx.nn

-- The build folder of the kdx.core this busted loaded (build/ or build-san/).
local core = assert(package.searchpath("kdx.core", package.cpath), "kdx.core not found on package.cpath")
local build = assert(core:match("^(.*)/kdx/core%.so$"), core)
local san = build:match("build%-san$") ~= nil

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

local function bin(name) return build .. "/examples/" .. name end

local function field(out, pattern)
  local v = out:match(pattern)
  assert(v, "no match for " .. pattern .. " in:\n" .. out)
  return tonumber(v)
end

describe("embedding examples", function()
  local model_path, images_path = os.tmpname() .. ".safetensors", os.tmpname() .. ".safetensors"
  local lua_pred, lua_top, accuracy = {}, {}, 0
  local nimg = 64

  setup(function()
    -- make test builds them first; a direct busted run builds them here
    local f = io.open(bin("host"), "r")
    if f then f:close() else
      local ok, out = sh("make -s examples" .. (san and " SAN=1" or ""))
      assert(ok, out)
    end
    -- a small student trained on the bundled digits, saved as a user would
    kdx.manual_seed(0)
    local train, test = kdx.data.digits()
    local model = nn.Sequential{nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)}
    kdx.train{
      model = model,
      data = kdx.data.DataLoader(train, {batch_size = 64, shuffle = true, seed = 1}),
      optimizer = kdx.optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9}),
      epochs = 3, log = function() end,
    }
    model:save(model_path)
    model:eval()
    local x = test.x:narrow(1, 1, nimg):contiguous()
    kdx.save(images_path, {x = x})
    local out = kdx.no_grad(function() return model(x) end)
    local top, idx = out:max(2)
    top, idx = top:totable(), idx:totable()
    local y = test.y:narrow(1, 1, nimg):totable()
    for i = 1, nimg do
      lua_pred[i] = idx[i] - 1
      lua_top[i] = top[i]
      if idx[i] == y[i] then accuracy = accuracy + 1 / nimg end
    end
  end)

  teardown(function()
    os.remove(model_path)
    os.remove(images_path)
  end)

  it("train a real student first (the comparisons below mean something)", function()
    assert.is_true(accuracy > 0.8, "accuracy " .. accuracy)
  end)

  it("classify (C only, no Lua) predicts what Lua predicts, with the same logits", function()
    local ok, out = sh(("%s %s %s"):format(bin("classify"), model_path, images_path))
    assert(ok, out)
    local n = 0
    for i, c, v in out:gmatch("(%d+) (%d+) (%S+)\n") do
      i = tonumber(i) + 1
      n = n + 1
      assert.are.equal(lua_pred[i], tonumber(c), "image " .. i)
      assert.is_true(math.abs(tonumber(v) - lua_top[i]) <= 1e-4 * (1 + math.abs(lua_top[i])), "logit of image " .. i)
    end
    assert.are.equal(nimg, n)
  end)

  it("classify fails cleanly on a missing file and on a checkpoint without layers", function()
    local ok, out = sh(("%s /nonexistent.safetensors %s"):format(bin("classify"), images_path))
    assert.is_falsy(ok)
    assert.truthy(out:find("classify: /nonexistent.safetensors failed (i/o error)", 1, true), out)
    ok, out = sh(("%s %s %s"):format(bin("classify"), images_path, images_path))
    assert.is_falsy(ok)
    assert.truthy(out:find("no \"<i>.weight\" tensors", 1, true), out)
  end)

  describe("host (own lua_State, kdx preloaded, 10,000 frames)", function()
    local out
    setup(function()
      local ok
      ok, out = sh(("%s lua examples/embed/frame.lua %s %s 10000 1000 1000 1"):format(bin("host"), model_path,
        images_path))
      assert(ok, out)
      print("\n" .. out:gsub("pred [^\n]*\n", ""))
    end)

    it("predicts per frame what Lua predicts for the batch", function()
      local n = 0
      for i, c in out:gmatch("pred (%d+) (%d+)\n") do
        i = tonumber(i)
        assert.are.equal(lua_pred[(i - 1) % nimg + 1], tonumber(c), "frame " .. i)
        n = n + 1
      end
      assert.are.equal(64, n)
    end)

    it("reports latency percentiles", function()
      assert.are.equal(10000, field(out, "frames (%d+)"))
      local p50, p99 = field(out, "p50 ([%d.]+)"), field(out, "p99 ([%d.]+)")
      local max = field(out, "max ([%d.]+)")
      assert.is_true(p50 > 0 and p50 <= p99 and p99 <= max)
      assert.truthy(out:find("over_budget %d+ of 10000 %(budget 1000 us%)"))
    end)

    it("allocates nothing in the engine per frame after warm-up, and its memory stays flat", function()
      assert.are.equal(0, field(out, "engine_allocs_per_frame ([%d.]+)"))
      local warm, last = out:match("engine_live_bytes (%-?%d+) (%-?%d+)")
      assert.are.equal(tonumber(warm), tonumber(last))
      assert.are.equal(0, field(out, "engine_live_after_close (%-?%d+)")) -- all handed back to the host
    end)

    it("keeps Lua's heap and the process RSS from growing", function()
      local lw, ll = out:match("lua_live_bytes (%d+) (%d+)")
      assert.is_true(tonumber(ll) - tonumber(lw) < 256 * 1024, out)
      if not san then -- ASan's quarantine holds freed memory: RSS means nothing there
        local r1, r2 = out:match("rss_kb (%d+) (%d+)")
        assert.is_true(tonumber(r2) - tonumber(r1) <= 512, "RSS grew from " .. r1 .. " to " .. r2 .. " KiB")
      end
    end)

    it("without the inference-only mode, the engine does allocate per frame (the measure is live)", function()
      local ok, o = sh(("%s lua examples/embed/frame.lua %s %s 2000 1000 1000 0"):format(bin("host"), model_path,
        images_path))
      assert(ok, o)
      print("\nreuse off: " .. o:match("engine_allocs_per_frame [^\n]*"))
      assert.is_true(field(o, "engine_allocs_per_frame ([%d.]+)") >= 1)
      assert.are.equal(0, field(o, "engine_live_after_close (%-?%d+)"))
    end)

    it("reports a bad script as an error, not a crash", function()
      local ok, o = sh(("%s lua /nonexistent.lua %s %s"):format(bin("host"), model_path, images_path))
      assert.is_falsy(ok)
      assert.truthy(o:find("host: cannot open /nonexistent.lua", 1, true), o)
    end)
  end)

  for _, engine_threads in ipairs{1, 2} do
    it(("several lua_States in several threads give the results of one at a time (engine threads %d)")
      :format(engine_threads), function()
      local ok, out = sh(("%s lua examples/embed/threads.lua 4 %d"):format(bin("threads"), engine_threads))
      assert(ok, out)
      assert.truthy(out:find("threads: 4 passed, 0 failed", 1, true), out)
    end)
  end
end)
