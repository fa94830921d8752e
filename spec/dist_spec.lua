-- kdx.dist: the single-process fallback (always), and the collectives over
-- MPI on 2 ranks (spec/dist/collectives.lua under mpirun) when mpirun exists;
-- distributed explanation and sweeps on one process here, on 2 ranks in
-- spec/dist/explain_global.lua.
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
    assert.matches("kdx.dist.shard_batches: argument 1 must be a kdx.data.DataLoader", err(dist.shard_batches, {}), 1, true)
    assert.matches("kdx.dist.broadcast_parameters: argument 1 must be a kdx.nn module",
      err(dist.broadcast_parameters, kdx.tensor{1}), 1, true)
    assert.matches("kdx.dist.broadcast_buffers: argument 1 must be a kdx.nn module", err(dist.broadcast_buffers, 7), 1, true)
    assert.matches("kdx.dist.reducer: params[1] is not a tensor", err(dist.reducer, {1}), 1, true)
    assert.matches("kdx.dist.reducer: bucket_bytes", err(dist.reducer, {}, {bucket_bytes = 0}), 1, true)
    local red = dist.reducer({})
    assert.matches("kdx.dist.reducer: rows must be", err(red.begin, red, -1), 1, true)
    assert.matches("kdx.dist.reducer: backward needs the loss tensor", err(red.backward, red, 3), 1, true)
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

  it("needs a DataLoader for distributed = true, and checkpoints and resumes there", function()
    local m = kdx.nn.Linear(2, 2)
    local opt = kdx.optim.SGD(m:parameters(), {lr = 0.1})
    local batches = {{kdx.randn{4, 2}, kdx.tensor({1, 2, 1, 2}, "int64")}}
    local ok, e = pcall(kdx.train, {model = m, optimizer = opt, data = batches, distributed = true})
    assert.is_false(ok)
    assert.matches("kdx.train: distributed = true needs a kdx.data.DataLoader", tostring(e), 1, true)
    ok, e = pcall(kdx.distill.run, {teacher = kdx.nn.Linear(2, 2), student = m, data = batches, distributed = true,
      optimizer = opt})
    assert.is_false(ok)
    assert.matches("kdx.distill.run: distributed = true needs a kdx.data dataset or DataLoader", tostring(e), 1, true)

    local nn = kdx.nn
    local ds = kdx.data.digits():subset(kdx.arange(1, 121))
    local path = os.tmpname()
    local function go(stop_at, ck, resume)
      kdx.manual_seed(3)
      local model = nn.Sequential{nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10)}
      local o = kdx.optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})
      local n, inner = 0, o.step
      o.step = function(self, ...)
        inner(self, ...)
        n = n + 1
        if n == stop_at then error("stop", 0) end
      end
      local good, h = pcall(kdx.train, {model = model, optimizer = o, epochs = 2, distributed = true, log = false,
        data = kdx.data.DataLoader(ds, {batch_size = 25, shuffle = true, seed = 1}), checkpoint = ck,
        resume = resume, progress = false})
      return good, h, model
    end
    local ok0, h0, m0 = go(0)
    assert.is_true(ok0)
    assert.is_false(go(7, {path = path, every = 3}))
    local ok2, h2, m2 = go(0, nil, path)
    os.remove(path)
    assert.is_true(ok2, tostring(h2))
    assert.are.equal(h0[2].loss, h2[2].loss)
    assert.are.equal(0, (m0:parameters()[1] - m2:parameters()[1]):abs():max():item())
  end)

  it("refuses the CRD term with distributed = true (its memory banks are per process)", function()
    local nn = kdx.nn
    local loader = kdx.data.DataLoader(kdx.data.digits(), {batch_size = 32})
    local ok, e = pcall(kdx.distill.run, {teacher = nn.Sequential{nn.Flatten(), nn.Linear(64, 10)},
      student = nn.Sequential{nn.Flatten(), nn.Linear(64, 10)}, data = loader, loss = {crd = 1}, distributed = true,
      optimizer = function(p) return kdx.optim.SGD(p, {lr = 0.1}) end})
    assert.is_false(ok)
    assert.matches("kdx.distill.run: loss term 'crd' is not supported with distributed = true", tostring(e), 1, true)
  end)

  it("refuses distributed = true in the schemes with loops of their own", function()
    local nn = kdx.nn
    local loader = kdx.data.DataLoader(kdx.data.digits(), {batch_size = 32})
    local function m() return nn.Sequential{nn.Flatten(), nn.Linear(64, 10)} end
    local sgd = function(p) return kdx.optim.SGD(p, {lr = 0.1}) end
    local calls = {
      {"kdx.distill.mutual", kdx.distill.mutual, {students = {m(), m()}, data = loader, optimizer = sgd}},
      {"kdx.distill.online_pseudo", kdx.distill.online_pseudo, {teacher = m(), student = m(), data = loader,
        optimizer = sgd}},
    }
    for _, c in ipairs(calls) do
      c[3].distributed = true
      local ok, e = pcall(c[2], c[3])
      assert.is_false(ok)
      assert.matches(c[1] .. ": distributed = true is not supported here", tostring(e), 1, true)
    end
  end)

  it("averages gradients on one process: the gradients unchanged, statistics summed alongside (buckets: spec/dist/reducer.lua)", function()
    local a = kdx.randn({3, 4}):requires_grad_()
    local b = kdx.randn({5}):requires_grad_()
    local c = kdx.randn({2}):requires_grad_() -- no gradient: stays nil
    local loss = (a * a):sum() + b:sum()
    loss:backward()
    local ga, gb = a.grad:clone(), b.grad:clone()
    for _, cap in ipairs{4, 1e9} do -- a bucket per parameter, or one for all
      local rows, sums = kdx.dist.average_gradients({a, b, c}, 6, {1.5, 7}, {bucket_bytes = cap})
      assert.are.equal(6, rows)
      assert.are.same({1.5, 7}, sums)
      assert.is_true((a.grad - ga):abs():max():item() < 1e-6)
      assert.is_true((b.grad - gb):abs():max():item() < 1e-6)
      assert.is_nil(c.grad)
    end
    local ok, e = pcall(kdx.dist.average_gradients, {a}, -1)
    assert.is_false(ok)
    assert.matches("kdx.dist.average_gradients: count", tostring(e), 1, true)
    local list = {kdx.tensor{1, 2}, kdx.tensor({3}, "float64")}
    assert.is_true(rawequal(kdx.dist.allreduce_all(list), list))
    ok, e = pcall(kdx.dist.allreduce_all, {kdx.tensor({1}, "int64")})
    assert.is_false(ok)
    assert.matches("kdx.dist.allreduce_all: entry 1 must be float32 or float64", tostring(e), 1, true)
  end)

  it("evaluates a split of the data as the whole on one rank", function()
    local _, test = kdx.data.digits()
    kdx.manual_seed(2)
    local m = kdx.nn.Sequential{kdx.nn.Flatten(), kdx.nn.Linear(64, 10)}
    local loader = kdx.data.DataLoader(test, {batch_size = 64})
    local whole = kdx.evaluate(m, loader)
    local split = kdx.evaluate(m, loader, {distributed = true})
    assert.are.equal(whole.n, split.n)
    assert.are.equal(whole.accuracy, split.accuracy)
    assert.is_true(math.abs(whole.loss - split.loss) < 1e-12)
  end)
end)

describe("kdx.dist distributed explanation and sweeps, on one process", function()
  local dist = kdx.dist
  local function err(f, ...)
    local ok, e = pcall(f, ...)
    assert.is_false(ok)
    return tostring(e)
  end

  it("gives this rank's block of rows: all of them on one rank", function()
    assert.are.same({1, 7}, {dist.block(7)})
    assert.are.same({1, 0}, {dist.block(0)})
    assert.matches("kdx.dist.block: n must be an integer >= 0", err(dist.block, -1), 1, true)
  end)

  it("gathers plain values into a list of one, floats and integers exactly", function()
    local v = {1, 0.1, -0.0, 5e-324, math.huge, -math.huge, 0 / 0, math.maxinteger, math.mininteger, 3.0,
      "a\0b\n", true, false, {x = {y = {1.5, "z"}}, [2.5] = "f", [true] = 1}}
    local all = dist.allgather_objects(v)
    assert.are.equal(1, all.n)
    local g = all[1]
    assert.is_false(rawequal(g, v)) -- a copy, through the wire format
    for i = 1, 13 do
      if v[i] ~= v[i] then assert.is_true(g[i] ~= g[i]) else assert.are.equal(v[i], g[i]) end
      assert.are.equal(math.type(v[i]), math.type(g[i])) -- 3.0 stays a float, 1 an integer
    end
    assert.are.equal(-math.huge, 1 / g[3]) -- the sign of -0.0 survives
    assert.are.same(v[14], g[14])
    assert.are.same({n = 1}, dist.allgather_objects(nil))
    assert.are.same({"s", n = 1}, dist.allgather_objects("s"))
  end)

  it("refuses what is not a plain value, naming kdx.dist.allgather_objects", function()
    assert.matches("kdx.dist.allgather_objects: rank 0's value[\"f\"] is a function", err(dist.allgather_objects, {f = print}),
      1, true)
    assert.matches("is a tensor (gather tensors with kdx.dist.allgather)", err(dist.allgather_objects, {kdx.tensor{1}}), 1, true)
    assert.matches("value is a thread, not a plain value", err(dist.allgather_objects, coroutine.create(print)), 1, true)
    local cyc = {}
    cyc.self = cyc
    assert.matches("contains itself", err(dist.allgather_objects, cyc), 1, true)
    assert.matches("has a table key", err(dist.allgather_objects, {[{}] = 1}), 1, true)
  end)

  it("maps configurations in order, all on rank 0, with their index", function()
    local seen = {}
    local res = dist.map_configs({{w = 4}, {w = 8}, {w = 16}}, function(c, i)
      seen[#seen + 1] = i
      return {accuracy = 1 / c.w, parameters = c.w * 10}
    end)
    assert.are.same({1, 2, 3}, seen)
    assert.are.same({{accuracy = 0.25, parameters = 40}, {accuracy = 0.125, parameters = 80},
      {accuracy = 0.0625, parameters = 160}, n = 3}, res)
    assert.are.same({n = 0}, dist.map_configs({}, function() error("never") end))
  end)

  it("raises the first failing configuration's error, and refuses bad arguments", function()
    local calls = 0
    local e = err(dist.map_configs, {1, 2, 3, 4}, function(c)
      calls = calls + 1
      if c >= 2 then error("too big: " .. c, 0) end
      return c
    end)
    assert.are.equal("kdx.dist.map_configs: config 2 (rank 0) failed: too big: 2", e:gsub("^.-:%d+: ", ""))
    assert.are.equal(4, calls) -- every config runs: the ranks must all reach the gather
    assert.matches("kdx.dist.map_configs: config 1 (rank 0) failed: the result is a function",
      err(dist.map_configs, {1}, function() return print end), 1, true)
    assert.matches("kdx.dist.map_configs: argument 1 must be a list", err(dist.map_configs, 3, print), 1, true)
    assert.matches("kdx.dist.map_configs: argument 2 must be a function", err(dist.map_configs, {}, 3), 1, true)
  end)

  it("runs a function under pcall_all: its results, or its error as it was", function()
    assert.are.same({1, nil, 3}, {dist.pcall_all("x", function(a, b) return a, b, 3 end, 1)})
    local ok, e = pcall(dist.pcall_all, "x", function() error({code = 7}) end)
    assert.is_false(ok)
    assert.are.same({code = 7}, e)
  end)

  it("compares with distributed = true exactly as without", function()
    kdx.manual_seed(3)
    local m1 = kdx.nn.Sequential{kdx.nn.Flatten(), kdx.nn.Linear(16, 3)}:double()
    local m2 = kdx.nn.Sequential{kdx.nn.Flatten(), kdx.nn.Linear(16, 3)}:double()
    local data = {x = kdx.rand({5, 1, 4, 4}, "float64"), y = kdx.tensor({1, 2, 3, 1, 2}, "int64")}
    local opts = {methods = {"saliency", {name = "integrated_gradients", opts = {steps = 4}}}, deletion_steps = 3}
    local a = kdx.explain.compare(m1, m2, data, opts)
    opts.distributed = true
    local b = kdx.explain.compare(m1, m2, data, opts)
    assert.are.same(a.target:totable(), b.target:totable())
    for _, name in ipairs(a.order) do
      local p, q = a.methods[name], b.methods[name]
      assert.are.same(p.teacher:totable(), q.teacher:totable())
      assert.are.same(p.student:totable(), q.student:totable())
      assert.are.same(p.deletion_auc.teacher:totable(), q.deletion_auc.teacher:totable())
      assert.are.same(p.similarity.spearman:totable(), q.similarity.spearman:totable())
      assert.are.same(p.mean, q.mean)
      assert.are.same(p.disagree, q.disagree)
    end
    assert.matches("kdx.explain.compare: distributed must be true or false",
      err(kdx.explain.compare, m1, m2, data, {distributed = "yes"}), 1, true)
  end)

  it("runs the global methods with distributed = true as without", function()
    kdx.manual_seed(4)
    local X = kdx.randn({12, 3}, "float64")
    local W = kdx.randn({3, 2}, "float64")
    local f = function(b) return kdx.matmul(b, W) end
    local y = kdx.no_grad(function() return f(X):argmax(2) end)
    local g1 = kdx.explain.global_importance("saliency", f, X, {target = y})
    local g2 = kdx.explain.global_importance("saliency", f, X, {target = y, distributed = true})
    assert.are.same(g1:totable(), g2:totable())
    local _, _, i1, b1 = kdx.explain.permutation_importance(f, X, {y = y, seed = 2, repeats = 3})
    local _, _, i2, b2 = kdx.explain.permutation_importance(f, X, {y = y, seed = 2, repeats = 3, distributed = true})
    assert.are.same(i1:totable(), i2:totable())
    assert.are.equal(b1, b2)
    local p1 = kdx.explain.partial_dependence(f, X, {features = {1, 3}, grid_resolution = 4, target = 1, kind = "both"})
    local p2 = kdx.explain.partial_dependence(f, X, {features = {1, 3}, grid_resolution = 4, target = 1, kind = "both",
      distributed = true})
    assert.are.same(p1.grid[2]:totable(), p2.grid[2]:totable())
    assert.are.same(p1.individual:totable(), p2.individual:totable())
    assert.is_true((p1.average - p2.average):abs():max():item() < 1e-12)
    assert.matches("kdx.explain.h_statistic: distributed = true is not supported",
      err(kdx.explain.h_statistic, f, X, {target = 1, distributed = true}), 1, true)
    assert.matches("kdx.explain.permutation_importance: distributed must be true or false",
      err(kdx.explain.permutation_importance, f, X, {y = y, distributed = 1}), 1, true)
    assert.matches("kdx.explain.global_importance: the method must return attributions",
      err(kdx.explain.global_importance, function() return 1 end, f, X, {distributed = true}), 1, true)
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
    -- allocations are not ours to leak-check. A deadlock between the ranks
    -- fails the test after 15 minutes (timeout kills mpirun) instead of
    -- hanging the suite; it is not a speed limit.
    local function mpirun(script)
      local preload = os.getenv("LD_PRELOAD") or ""
      local extra = ""
      if preload ~= "" then
        extra = " -x LD_PRELOAD=" .. preload .. " -x ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1"
      end
      local cmd = "env -u LD_PRELOAD timeout 900 mpirun --oversubscribe --allow-run-as-root -np 2 -x LUA_PATH -x LUA_CPATH"
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

    it("averages gradients with the reducer, buckets sent during backward, as a reference does", function()
      local ok, out = mpirun("spec/dist/reducer.lua")
      assert(ok, "2-rank reducer failed:\n" .. out)
      assert.matches("rank 0: reducer ok", out, 1, true)
      assert.matches("rank 1: reducer ok", out, 1, true)
    end)

    it("normalises with the global batch in SyncBatchNorm: 2 ranks equal one process's BatchNorm", function()
      local ok, out = mpirun("spec/dist/syncbn.lua")
      assert(ok, "2-rank SyncBatchNorm failed:\n" .. out)
      assert.matches("rank 0: SyncBatchNorm ok", out, 1, true)
      assert.matches("rank 1: SyncBatchNorm ok", out, 1, true)
    end)

    it("distils with distributed = true: identical ranks, equal to one process", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir))
      local ok, out = mpirun("spec/dist/distill.lua " .. dir)
      os.execute("rm -rf " .. dir)
      assert(ok, "2-rank distillation failed:\n" .. out)
      assert.matches("rank 0: distributed distillation ok", out, 1, true)
      assert.matches("rank 1: distributed distillation ok", out, 1, true)
    end)

    it("writes checkpoints on rank 0 and resumes every rank to the uninterrupted run", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir))
      local ok, out = mpirun("spec/dist/resume.lua " .. dir)
      os.execute("rm -rf " .. dir)
      assert(ok, "2-rank resume failed:\n" .. out)
      assert.matches("rank 0: distributed resume ok", out, 1, true)
      assert.matches("rank 1: distributed resume ok", out, 1, true)
    end)

    it("runs examples/13_distributed.lua on 2 ranks with the 1-rank output", function()
      local function normal(out) -- drop the rank column of the sweep table and the timing line
        out = out:gsub("(| %d+ | %d+ | [%d.]+%% | )%d+( |)", "%1r%2"):gsub("%(%d+%.%d s on rank 0%)", "")
          :gsub("%d+ rank%(s%)", "N rank(s)")
        return out
      end
      local p = io.popen("lua5.4 examples/13_distributed.lua --small 2>&1")
      local one = p:read("a")
      assert(p:close(), one)
      local ok, two = mpirun("examples/13_distributed.lua --small")
      assert(ok, "the example failed on 2 ranks:\n" .. two)
      assert.matches("on 2 rank%(s%)", two)
      assert.are.equal(normal(one), normal(two))
    end)

    it("splits a dataset-wide integrated gradients across ranks and equals the 1-rank one", function()
      local ok, out = mpirun("spec/dist/explain.lua")
      assert(ok, "2-rank IG failed:\n" .. out)
      assert.matches("rank 0: dataset-wide IG ok", out, 1, true)
      assert.matches("rank 1: dataset-wide IG ok", out, 1, true)
    end)

    it("distributes compare, the global methods and a sweep, equal to 1 rank; one rank's error reaches both", function()
      local ok, out = mpirun("spec/dist/explain_global.lua")
      assert(ok, "2-rank distributed explanation failed:\n" .. out)
      assert.matches("rank 0: distributed explanation and sweeps ok", out, 1, true)
      assert.matches("rank 1: distributed explanation and sweeps ok", out, 1, true)
    end)
  end)
end
