-- kdx.dist: the single-process fallback (always), and the collectives over
-- MPI on 2 ranks (spec/dist/collectives.lua under mpirun) when mpirun exists.
local kdx = require "kdx"

describe("kdx.dist without mpirun", function()
  local dist = kdx.dist

  it("is one process of rank 0 (0-based, as MPI)", function()
    assert.are.equal("single", dist.backend)
    assert.are.equal(0, dist.rank())
    assert.are.equal(1, dist.size())
    dist.init(); dist.barrier(); dist.finalize()
  end)

  it("reduces over one rank: the tensor itself, unchanged, for every op", function()
    for _, op in ipairs{"sum", "mean", "max", "min"} do
      local t = kdx.tensor({1.5, -2, 3}, "float64")
      local back = dist.allreduce(t, op)
      assert.is_true(rawequal(back, t))
      assert.are.same({1.5, -2, 3}, t:totable())
    end
    assert.are.same({1, 2}, dist.allreduce(kdx.tensor{1, 2}):totable())
  end)

  it("broadcasts from rank 0 and gathers one rank's rows into a copy", function()
    local t = kdx.tensor{{1, 2}, {3, 4}}
    assert.is_true(rawequal(dist.broadcast(t), t))
    assert.is_true(rawequal(dist.broadcast(t, 0), t))
    local g = dist.allgather(t)
    assert.are.same({{1, 2}, {3, 4}}, g:totable())
    g:zero_()
    assert.are.same({{1, 2}, {3, 4}}, t:totable())
  end)

  it("refuses what the MPI version refuses, naming kdx.dist.<fn>", function()
    local function err(f, ...)
      local ok, e = pcall(f, ...)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.matches("kdx.dist.allreduce", err(dist.allreduce, {1, 2}), 1, true)
    assert.matches("'sum', 'mean'", err(dist.allreduce, kdx.tensor{1}, "prod"), 1, true)
    assert.matches("float32 or float64", err(dist.allreduce, kdx.tensor({1}, "int64")), 1, true)
    assert.matches("kdx.dist.broadcast: root 1", err(dist.broadcast, kdx.tensor{1}, 1), 1, true)
    assert.matches("kdx.dist.allgather", err(dist.allgather, kdx.tensor(3)), 1, true)
  end)

  it("shards nothing on one rank: the sampler draws the loader's own batches", function()
    local train = kdx.data.digits()
    local a = kdx.data.DataLoader(train, {batch_size = 100, shuffle = true, seed = 4})
    local b = kdx.data.DataLoader(train, {batch_size = 100, shuffle = true, seed = 4})
    for _ = 1, 2 do -- two epochs: a new shuffle each, the same on both
      local it = dist.shard_batches(a)
      local count = 0
      for x, y in b:iter() do
        local sx, sy = it()
        count = count + 1
        assert.are.same(x:totable(), sx:totable())
        assert.are.same(y:totable(), sy:totable())
      end
      assert.is_nil(it())
      assert.are.equal(15, count)
    end
  end)

  it("trains with distributed = true on one process as without it", function()
    local nn = kdx.nn
    local train = kdx.data.digits()
    local function run(distributed)
      kdx.manual_seed(5)
      local m = nn.Sequential{nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)}
      local opt = kdx.optim.SGD(m:parameters(), {lr = 0.1})
      local h = kdx.train{model = m, optimizer = opt, epochs = 1, distributed = distributed, progress = false,
        log = function() end, data = kdx.data.DataLoader(train, {batch_size = 50, shuffle = true, seed = 2})}
      return m:parameters()[1]:detach():clone(), h[1].loss
    end
    local w1, l1 = run(false)
    local w2, l2 = run(true)
    assert.is_true((w1 - w2):abs():max():item() < 1e-5)
    assert.is_true(math.abs(l1 - l2) < 1e-5)
  end)

  it("maps a function over all rows on one rank, passing row-aligned tensors along", function()
    local x = kdx.arange(1, 13):reshape{6, 2}
    local w = kdx.arange(1, 7):reshape{6, 1}
    local seen
    local out = dist.map_rows(function(xs, ws, k) seen = k; return xs * ws end, x, w, 10)
    assert.are.same((x * w):totable(), out:totable())
    assert.are.equal(10, seen)
    local ok, e = pcall(dist.map_rows, function() return 1 end, x)
    assert.is_false(ok)
    assert.matches("kdx.dist.map_rows: fn must return a tensor", tostring(e), 1, true)
    ok, e = pcall(dist.map_rows, "f", x)
    assert.is_false(ok)
    assert.matches("kdx.dist.map_rows: argument 1", tostring(e), 1, true)
  end)

  it("needs a DataLoader for distributed = true and refuses checkpoints there", function()
    local m = kdx.nn.Linear(2, 2)
    local opt = kdx.optim.SGD(m:parameters(), {lr = 0.1})
    local batches = {{kdx.randn{4, 2}, kdx.tensor({1, 2, 1, 2}, "int64")}}
    local ok, e = pcall(kdx.train, {model = m, optimizer = opt, data = batches, distributed = true})
    assert.is_false(ok)
    assert.matches("kdx.train: distributed = true needs a kdx.data.DataLoader", tostring(e), 1, true)
    local loader = kdx.data.DataLoader(kdx.data.digits(), {batch_size = 10})
    ok, e = pcall(kdx.train, {model = m, optimizer = opt, data = loader, distributed = true,
      checkpoint = {path = os.tmpname()}})
    assert.is_false(ok)
    assert.matches("not built yet", tostring(e), 1, true)
  end)
end)

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

if not have("mpirun") then
  print("dist_spec: mpirun is missing (scripts/deps.sh --mpi installs Open MPI): the 2-rank tests do not run")
else
  describe("kdx.dist on 2 ranks (mpirun)", function()
    -- Under the sanitizer build the ranks need the ASan runtime preloaded
    -- (scripts/run_tests.sh), but not mpirun itself, and Open MPI's own
    -- allocations are not ours to leak-check.
    local function mpirun(script)
      local preload = os.getenv("LD_PRELOAD") or ""
      local extra = ""
      if preload ~= "" then
        extra = " -x LD_PRELOAD=" .. preload .. " -x ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1"
      end
      local cmd = "env -u LD_PRELOAD mpirun --oversubscribe --allow-run-as-root -np 2 -x LUA_PATH -x LUA_CPATH"
        .. extra .. " lua5.4 " .. script .. " 2>&1"
      local p = io.popen(cmd)
      local out = p:read("a")
      local ok = p:close()
      return ok, out
    end

    it("runs allreduce (sum/mean/max/min), broadcast and allgather over MPI", function()
      local ok, out = mpirun("spec/dist/collectives.lua")
      assert(ok, "2-rank collectives failed (is kdx/dist_mpi.so built? make MPI=1):\n" .. out)
      assert.matches("rank 0: collectives ok", out, 1, true)
      assert.matches("rank 1: collectives ok", out, 1, true)
    end)

    it("trains on digits with distributed = true: identical ranks, equal to one process", function()
      local ok, out = mpirun("spec/dist/train.lua")
      assert(ok, "2-rank training failed:\n" .. out)
      assert.matches("rank 0: distributed training ok", out, 1, true)
      assert.matches("rank 1: distributed training ok", out, 1, true)
    end)

    it("splits a dataset-wide integrated gradients across ranks and equals the 1-rank one", function()
      local ok, out = mpirun("spec/dist/explain.lua")
      assert(ok, "2-rank IG failed:\n" .. out)
      assert.matches("rank 0: dataset-wide IG ok", out, 1, true)
      assert.matches("rank 1: dataset-wide IG ok", out, 1, true)
    end)
  end)
end
