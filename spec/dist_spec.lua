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
  end)
end
