-- Training checkpoints and the non-finite guard of kdx.train and
-- kdx.distill.run: a run SIGKILLed mid-epoch and resumed from its last
-- checkpoint ends with the same weights, bit for bit, as one never
-- interrupted; bad checkpoints are clear errors; a NaN/inf loss or gradient
-- stops the run naming the epoch, step and term, or skips the step.
local kdx = require "kdx"
local nn = kdx.nn

local CHILD = "spec/helpers/resume_child.lua"

local function tmp()
  local p = os.tmpname()
  os.remove(p)
  return p
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Runs the child; returns its output and how it ended (how, code as os.execute).
local function child(which, ckpt, out, kill_at, resume)
  local cmd = ("lua5.4 %s %s %s %s %d %d 2>&1"):format(CHILD, which, ckpt, out, kill_at, resume and 1 or 0)
  local p = assert(io.popen(cmd))
  local text = p:read("a")
  local _, how, code = p:close()
  return text, how, code
end

local function killed(how, code)
  return (how == "signal" and code == 9) or (how == "exit" and code == 128 + 9)
end

-- The same tensors (every element equal, NaN-free) and metadata in two files.
local function same_files(a, b)
  local ta, ma = kdx.load(a)
  local tb, mb = kdx.load(b)
  local n = 0
  for k, v in pairs(ta) do
    assert.is_not_nil(tb[k], k)
    assert.are.same(v:shape(), tb[k]:shape(), k)
    assert.are.equal(0, v:ne(tb[k]):sum():item(), k .. " differs")
    n = n + 1
  end
  for k in pairs(tb) do assert.is_not_nil(ta[k], k) end
  assert.are.same(ma, mb)
  return n
end

local function kill_and_resume(which)
  local full, ckpt, killed_out, resumed = tmp(), tmp(), tmp(), tmp()
  local text, how, code = child(which, "-", full, 0, false)
  assert.are.equal("exit", how, text)
  assert.are.equal(0, code, text)
  -- 23 batches per epoch: killed at step 33 (epoch 2, batch 10), the last
  -- checkpoint is from step 30
  text, how, code = child(which, ckpt, killed_out, 33, false)
  assert.is_true(killed(how, code), ("not killed: %s %s %s"):format(tostring(how), tostring(code), text))
  assert.is_false(exists(killed_out))
  local _, meta = kdx.load(ckpt)
  assert.are.equal("30", meta["kdx.step"])
  text, how, code = child(which, ckpt, resumed, 0, true)
  assert.are.equal(0, code, text)
  local n = same_files(full, resumed)
  assert.is_true(n >= 9)
  for _, p in ipairs{full, ckpt, resumed} do os.remove(p) end
end

describe("training checkpoints", function()
  it("kdx.train: killed with SIGKILL mid-epoch and resumed, ends with the uninterrupted run's weights", function()
    kill_and_resume("train")
  end)

  it("kdx.distill.run (with a KD term and a hint regressor) resumes to the same weights", function()
    kill_and_resume("distill")
  end)

  local train = kdx.data.digits()
  local function small() return nn.Sequential{nn.Flatten(), nn.Linear(64, 10)} end
  local function batches(k)
    local out = {}
    for i = 1, k do out[i] = {train.x:narrow(1, (i - 1) * 16 + 1, 16), train.y:narrow(1, (i - 1) * 16 + 1, 16)} end
    return out
  end
  local function err_of(f)
    local ok, e = pcall(f)
    assert.is_false(ok)
    return tostring(e)
  end

  it("resumes a finished run to the same history, and goes on checkpointing", function()
    local path = tmp()
    kdx.manual_seed(1)
    local m = small()
    local opt = kdx.optim.SGD(m:parameters(), {lr = 0.1, momentum = 0.9})
    local h = kdx.train{model = m, data = batches(4), optimizer = opt, epochs = 2, log = false, progress = false,
      checkpoint = {path = path, every = 4}}
    local _, meta = kdx.load(path)
    assert.are.equal("8", meta["kdx.step"])
    local m2 = small()
    local opt2 = kdx.optim.SGD(m2:parameters(), {lr = 0.1, momentum = 0.9})
    local h2 = kdx.train{model = m2, data = batches(4), optimizer = opt2, epochs = 2, log = false, progress = false,
      resume = path}
    assert.are.equal(2, #h2)
    assert.are.equal(h[1].loss, h2[1].loss)
    assert.are.equal(h[2].loss, h2[2].loss)
    assert.are.equal(0, m:parameters()[1]:ne(m2:parameters()[1]):sum():item())
    -- more epochs than the checkpoint's run: it trains on
    local h3 = kdx.train{model = m2, data = batches(4), optimizer = opt2, epochs = 3, log = false, progress = false,
      resume = path}
    assert.are.equal(3, #h3)
    os.remove(path)
  end)

  it("refuses a missing, truncated, corrupt or foreign checkpoint with a clear error", function()
    local path = tmp()
    local m = small()
    local opt = kdx.optim.SGD(m:parameters(), {lr = 0.1})
    local function go(from, fn)
      return err_of(function()
        (fn or kdx.train){model = m, data = batches(2), optimizer = opt, log = false, progress = false, resume = from}
      end)
    end
    local e = go(path)
    assert.truthy(e:find("resume_spec.lua:%d+: kdx.train: cannot resume from .*: cannot open"), e)
    kdx.train{model = m, data = batches(2), optimizer = opt, log = false, progress = false,
      checkpoint = {path = path, every = 1}}
    local f = assert(io.open(path, "rb"))
    local bytes = f:read("a")
    f:close()
    local cut = tmp()
    f = assert(io.open(cut, "wb"))
    f:write(bytes:sub(1, #bytes // 2))
    f:close()
    e = go(cut)
    assert.truthy(e:find("kdx.train: cannot resume from " .. cut:gsub("%p", "%%%0") .. ": "), e)
    -- a file that is not a checkpoint, and one whose state is damaged
    kdx.save(cut, {w = kdx.zeros{2}})
    assert.truthy(go(cut):find("not a training checkpoint"))
    local t, meta = kdx.load(path)
    meta["kdx.checkpoint"] = meta["kdx.checkpoint"]:sub(1, 40)
    kdx.save(cut, t, meta)
    assert.truthy(go(cut):find("the checkpoint's training state is corrupt"))
    -- code instead of data is refused before it runs
    t, meta = kdx.load(path)
    meta["kdx.checkpoint"] = "(function() while true do end end)()"
    kdx.save(cut, t, meta)
    assert.truthy(go(cut):find("the checkpoint's training state is corrupt"))
    t, meta = kdx.load(path)
    meta["kdx.checkpoint"] = meta["kdx.checkpoint"]:gsub("^{", "{[0]=(\"x\"):rep(2^40),")
    kdx.save(cut, t, meta)
    assert.truthy(go(cut):find("the checkpoint's training state is corrupt"))
    t, meta = kdx.load(path)
    meta["kdx.step"] = "999"
    kdx.save(cut, t, meta)
    assert.truthy(go(cut):find("the checkpoint's training state is corrupt"))
    -- a tensor of the model removed
    t, meta = kdx.load(path)
    t["module.model.1.weight"] = nil
    kdx.save(cut, t, meta)
    e = go(cut)
    assert.truthy(e:find("cannot resume from .*: model: .*missing keys {1%.weight}"), e)
    -- another optimizer
    e = err_of(function()
      kdx.train{model = m, data = batches(2), optimizer = kdx.optim.Adam(m:parameters()), log = false,
        progress = false, resume = path}
    end)
    assert.truthy(e:find("it holds the state of optimizer SGD, this run uses Adam", 1, true), e)
    -- written by kdx.train, resumed by kdx.distill.run
    e = err_of(function()
      kdx.distill.run{student = small(), data = batches(2), optimizer = function(p) return kdx.optim.SGD(p, {lr = 0.1}) end,
        loss = {ce = 1}, log = false, progress = false, resume = path}
    end)
    assert.truthy(e:find("kdx.distill.run: cannot resume from .*: it was written by kdx.train"), e)
    os.remove(path)
    os.remove(cut)
  end)

  it("kdx.distill.run with CRD (heads, memory banks, negative sampling) resumes to the same weights", function()
    local full_train = kdx.data.digits()
    local ds = full_train:subset(kdx.arange(1, 161))
    -- interrupted by an error thrown after optimizer step `stop_at` (0: never)
    local function go(stop_at, checkpoint, resume)
      kdx.manual_seed(11)
      local teacher = nn.Sequential{nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10)}
      local student = nn.Sequential{nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 10)}
      local loader = kdx.data.DataLoader(ds, {batch_size = 32, shuffle = true, seed = 4})
      local ok, h, final = pcall(kdx.distill.run, {teacher = teacher, student = student, data = loader, epochs = 2,
        optimizer = function(p)
          local opt = kdx.optim.Adam(p, {lr = 0.01})
          local n, step = 0, opt.step
          function opt.step(self, ...)
            step(self, ...)
            n = n + 1
            if n == stop_at then error("stopped") end
          end
          return opt
        end,
        loss = {ce = 0.5, kd = 0.5, crd = 0.8}, loss_opts = {crd = {nce_k = 16, feat_dim = 8}},
        checkpoint = checkpoint, resume = resume, log = false, progress = false})
      if not ok then return nil, h end
      return {student = student:state_dict(), crd = final.crd:state_dict(), loss = h[2].loss}
    end
    local ref = go(0)
    local path = tmp()
    local r, e = go(8, {path = path, every = 3})
    assert.is_nil(r)
    assert.truthy(tostring(e):find("stopped"))
    local _, meta = kdx.load(path)
    assert.are.equal("6", meta["kdx.step"])
    local res = assert(go(0, nil, path))
    assert.are.equal(ref.loss, res.loss)
    local n = 0
    for _, part in ipairs{"student", "crd"} do
      for k, v in pairs(ref[part]) do
        assert.are.equal(0, v:ne(res[part][k]):sum():item(), part .. "." .. k)
        n = n + 1
      end
    end
    assert.is_true(n >= 9)
    os.remove(path)
  end)

  it("checks the options", function()
    local m = small()
    local opt = kdx.optim.SGD(m:parameters(), {lr = 0.1})
    local function go(extra)
      local a = {model = m, data = batches(1), optimizer = opt, log = false, progress = false}
      for k, v in pairs(extra) do a[k] = v end
      return err_of(function() kdx.train(a) end)
    end
    assert.truthy(go{checkpoint = "x"}:find("kdx.train: checkpoint must be {path"))
    assert.truthy(go{checkpoint = {path = "x", every = 0}}:find("checkpoint.every must be a positive integer"))
    assert.truthy(go{checkpoint = {path = "x", each = 2}}:find("unknown checkpoint option 'each'"))
    assert.truthy(go{resume = 3}:find("resume must be the path of a checkpoint file"))
    assert.truthy(go{on_nonfinite = "ignore"}:find("on_nonfinite must be \"error\" or \"skip\""))
    assert.truthy(go{checkpoint = {path = "x"}, scheduler = {step = function() end}}:find("cannot be checkpointed"))
  end)
end)

describe("the non-finite guard", function()
  local train = kdx.data.digits()
  local function batches(k)
    local out = {}
    for i = 1, k do out[i] = {train.x:narrow(1, (i - 1) * 16 + 1, 16), train.y:narrow(1, (i - 1) * 16 + 1, 16)} end
    return out
  end
  local function small() return nn.Sequential{nn.Flatten(), nn.Linear(64, 10)} end
  local function all_finite(m)
    for _, p in ipairs(m:parameters()) do
      if p:ne(p):sum():item() > 0 or p:abs():eq(math.huge):sum():item() > 0 then return false end
    end
    return true
  end
  local ce = kdx.nn.functional.cross_entropy

  -- A loss that is NaN on the calls in `bad` (a set of call numbers).
  local function nan_loss(bad)
    local calls = 0
    return function(out, y)
      calls = calls + 1
      local l = ce(out, y)
      if bad[calls] then l = l * (0 / 0) end
      return l
    end
  end

  it("stops kdx.train at a NaN loss, naming the epoch and step, before the update", function()
    kdx.manual_seed(2)
    local m = small()
    local opt = kdx.optim.SGD(m:parameters(), {lr = 0.1})
    local ok, e = pcall(kdx.train, {model = m, data = batches(3), optimizer = opt, epochs = 2, log = false,
      progress = false, loss = nan_loss{[5] = true}})
    assert.is_false(ok)
    assert.truthy(tostring(e):find("kdx.train: the loss is NaN at epoch 2, step 2", 1, true), e)
    assert.is_true(all_finite(m))
  end)

  it("names the parameter whose gradient is not finite when the loss is finite", function()
    kdx.manual_seed(2)
    local m = small()
    local w = m:parameters()[1]
    local calls = 0
    local function loss(out, y)
      calls = calls + 1
      local l = ce(out, y)
      -- sqrt at 0: a finite value (0) whose gradient is not
      if calls == 3 then l = l + (w * 0):sqrt():sum() end
      return l
    end
    local before
    local ok, e = pcall(kdx.train, {model = m, data = batches(4), optimizer = kdx.optim.SGD(m:parameters(), {lr = 0.1}),
      log = false, progress = false, loss = loss,
      on_epoch = function() before = true end})
    assert.is_false(ok)
    assert.is_nil(before)
    assert.truthy(tostring(e):find("kdx.train: the gradient of 1.weight is not finite at epoch 1, step 3", 1, true), e)
    assert.is_true(all_finite(m))
  end)

  it("skips the step with on_nonfinite = \"skip\", counting it and warning through log", function()
    kdx.manual_seed(2)
    local m = small()
    local lines = {}
    local h = kdx.train{model = m, data = batches(3), optimizer = kdx.optim.SGD(m:parameters(), {lr = 0.1}), epochs = 2,
      progress = false, log = function(l) lines[#lines + 1] = l end, loss = nan_loss{[2] = true, [6] = true},
      on_nonfinite = "skip"}
    assert.are.equal(1, h[1].skipped)
    assert.are.equal(1, h[2].skipped)
    assert.is_true(all_finite(m))
    assert.is_true(h[1].loss == h[1].loss and h[2].loss == h[2].loss)
    assert.are.equal("kdx.train: skipped step 2 of epoch 1: the loss is NaN", lines[1])
    -- the skipped step changed nothing: the same as training on the other batches only
    kdx.manual_seed(2)
    local m2 = small()
    local b = batches(3)
    local opt2 = kdx.optim.SGD(m2:parameters(), {lr = 0.1})
    kdx.train{model = m2, data = {b[1], b[3]}, optimizer = opt2, epochs = 1, log = false, progress = false}
    kdx.train{model = m2, data = {b[1], b[2]}, optimizer = opt2, epochs = 1, log = false, progress = false}
    for i, p in ipairs(m:parameters()) do assert.are.equal(0, p:ne(m2:parameters()[i]):sum():item()) end
    -- every step skipped
    local ok, e = pcall(kdx.train, {model = m, data = batches(1), optimizer = kdx.optim.SGD(m:parameters(), {lr = 0.1}),
      log = false, progress = false, loss = nan_loss{[1] = true}, on_nonfinite = "skip"})
    assert.is_false(ok)
    assert.truthy(tostring(e):find("every step of epoch 1 was skipped"), e)
  end)

  it("names the loss term of kdx.distill.run that went non-finite, or skips it", function()
    kdx.manual_seed(3)
    local teacher = small()
    local student = small()
    local calls = 0
    local bad = {weight = 0.5, fn = function(ctx)
      calls = calls + 1
      local v = ctx.student:sum() * 0
      if calls == 4 then v = v + math.huge end
      return v
    end}
    local function opt(p) return kdx.optim.SGD(p, {lr = 0.1}) end
    local ok, e = pcall(kdx.distill.run, {teacher = teacher, student = student, data = batches(3), epochs = 2,
      optimizer = opt, loss = {ce = 0.5, kd = 0.5, bad = bad}, log = false, progress = false})
    assert.is_false(ok)
    assert.truthy(tostring(e):find("kdx.distill.run: loss term 'bad' is inf at epoch 2, step 1", 1, true), e)
    assert.is_true(all_finite(student))
    calls = 0
    local h = kdx.distill.run{teacher = teacher, student = student, data = batches(3), epochs = 2, optimizer = opt,
      loss = {ce = 0.5, kd = 0.5, bad = bad}, log = false, progress = false, on_nonfinite = "skip"}
    assert.are.same({0, 1}, {h[1].skipped, h[2].skipped})
    assert.is_true(all_finite(student))
  end)

  it("names a student parameter of kdx.distill.run with a non-finite gradient", function()
    kdx.manual_seed(3)
    local teacher, student = small(), small()
    local bad = {weight = 1, fn = function(ctx) return (student:parameters()[2] * 0):sqrt():sum() end}
    local ok, e = pcall(kdx.distill.run, {teacher = teacher, student = student, data = batches(2),
      optimizer = function(p) return kdx.optim.SGD(p, {lr = 0.1}) end, loss = {kd = 1, bad = bad}, log = false,
      progress = false})
    assert.is_false(ok)
    assert.truthy(tostring(e):find("the gradient of student.1.bias is not finite at epoch 1, step 1", 1, true), e)
  end)
end)
