-- kdx.distill.run and the schemes, on the bundled digits: what is reliably
-- true for fixed seeds (agreement above a low bar, a frozen teacher, equal
-- runs with and without the teacher cache, the warm-up ramp), never timings.
local kdx = require "kdx"
local nn = kdx.nn
local loop = require "kdx.loop"
local close = require "helpers.close"

local train, test = kdx.data.digits()

local function mlp(hidden, bn)
  local layers = {nn.Flatten(), nn.Linear(64, hidden)}
  if bn then layers[#layers + 1] = nn.BatchNorm1d(hidden) end
  layers[#layers + 1] = nn.ReLU()
  layers[#layers + 1] = nn.Linear(hidden, 10)
  return nn.Sequential(layers)
end

local function loader(ds, seed) return kdx.data.DataLoader(ds, {batch_size = 64, shuffle = true, seed = seed or 1}) end
local function sgd(lr) return function(params) return kdx.optim.SGD(params, {lr = lr or 0.1, momentum = 0.9}) end end

-- One teacher for the whole file: 64-64(BN)-10, about 95% on the test part.
kdx.manual_seed(0)
local teacher = mlp(64, true)
kdx.train{model = teacher, data = loader(train), optimizer = sgd()(teacher:parameters()), epochs = 5, log = false,
  progress = false}
teacher:eval()
teacher:zero_grad()

local function snapshot(m)
  local out = {}
  for k, v in pairs(m:state_dict()) do out[k] = v:clone() end
  return out
end

local function same_state(m, snap)
  for k, v in pairs(m:state_dict()) do
    if v:ne(snap[k]):sum():item() ~= 0 then return false, k end
  end
  return true
end

local function quiet(args)
  args.log, args.progress = false, false
  return args
end

local function error_of(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  return tostring(err)
end

describe("kdx.loop", function()
  it("yields a loader's batches in the order of its :iter(), with their dataset indices", function()
    local a, b = loader(train, 7), loader(train, 7)
    local it = a:iter()
    for x, y, idx in loop.indexed_batches(b) do
      local x2, y2 = it()
      close.assert_close(x, x2, 0)
      assert.are.same(y2:totable(), y:totable())
      assert.are.same(train.y:index_select(1, idx):totable(), y:totable())
    end
    assert.is_nil(it())
  end)

  it("numbers the batches of a list", function()
    local keys = {}
    for _, _, k in loop.indexed_batches({{kdx.zeros{1}, 1}, {kdx.zeros{1}, 2}}) do keys[#keys + 1] = k end
    assert.are.same({1, 2}, keys)
  end)

  it("drives kdx.train, which returns the documented history", function()
    kdx.manual_seed(4)
    local m = mlp(16)
    local lines = {}
    local h = kdx.train{model = m, data = loader(train), eval_data = kdx.data.DataLoader(test, {batch_size = 128}),
      optimizer = sgd()(m:parameters()), epochs = 2, progress = false, log = function(l) lines[#lines + 1] = l end}
    assert.are.equal(2, #h)
    for _, k in ipairs{"epoch", "loss", "accuracy", "eval_loss", "eval_accuracy", "seconds", "samples_per_second", "lr"} do
      assert.is_number(h[2][k], k)
    end
    assert.is_true(h[2].loss < h[1].loss)
    assert.truthy(lines[2]:match("^epoch 2/2  loss %d%.%d+  acc [%d.]+%%  eval loss"))
  end)

  it("blames the caller's line for bad data", function()
    local m = mlp(4)
    local err = error_of(function() kdx.train{model = m, data = 3, optimizer = sgd()(m:parameters())} end)
    assert.truthy(err:find("distill_run_spec.lua:%d+: kdx.train: data must be"), err)
  end)
end)

describe("kdx.distill.run", function()
  local history, final, student, before
  setup(function()
    before = snapshot(teacher)
    kdx.manual_seed(1)
    student = mlp(16)
    history, final = kdx.distill.run(quiet{teacher = teacher, student = student, data = loader(train),
      eval_data = test, epochs = 3, optimizer = sgd(), loss = {ce = 0.1, kd = 0.9}, T = 4})
  end)

  it("trains a student that agrees with its teacher", function()
    assert.is_true(final.agreement > 0.85, "agreement " .. final.agreement)
    assert.is_true(final.accuracy > 0.85, "accuracy " .. final.accuracy)
    assert.is_true(history[3].eval_agreement > 0.85)
  end)

  it("lowers the loss and each term", function()
    assert.is_true(history[3].loss < history[1].loss)
    assert.is_true(history[3].terms.kd < history[1].terms.kd)
    assert.is_true(history[3].terms.ce < history[1].terms.ce)
  end)

  it("returns the documented history and final metrics", function()
    for _, k in ipairs{"epoch", "loss", "accuracy", "warmup", "eval_loss", "eval_accuracy", "eval_agreement",
      "seconds", "samples_per_second", "lr"} do
      assert.is_number(history[1][k], k)
    end
    for _, k in ipairs{"accuracy", "top5", "ece", "agreement", "mean_kl", "teacher_accuracy", "loss"} do
      assert.is_number(final[k], k)
    end
    assert.are.equal(3, final.epochs)
    assert.are.equal(student, final.student)
    close.assert_close(final.teacher_accuracy, kdx.distill.metrics.accuracy(teacher, test), 0)
  end)

  it("leaves the teacher's weights and batch-norm statistics unchanged and gives it no gradients", function()
    assert.is_true(same_state(teacher, before))
    for name, p in teacher:named_parameters() do assert.is_nil(p.grad, name) end
    assert.is_false(teacher.training)
  end)

  it("restores the teacher's mode", function()
    local t = mlp(8)
    kdx.distill.run(quiet{teacher = t, student = mlp(4), data = {{train.x:narrow(1, 1, 32), train.y:narrow(1, 1, 32)}},
      optimizer = sgd()})
    assert.is_true(t.training)
  end)

  it("weights the terms as given", function()
    kdx.manual_seed(2)
    local h = kdx.distill.run(quiet{teacher = teacher, student = mlp(16), data = loader(train), epochs = 1,
      optimizer = sgd(0), loss = {ce = 0.3, kd = 0.7}})
    close.assert_close(h[1].loss, 0.3 * h[1].terms.ce + 0.7 * h[1].terms.kd, 1e-5, 1e-5)
  end)

  it("ramps the distillation weights by min(epoch / warmup, 1), leaving ce alone", function()
    local one = {weight = 2, fn = function(ctx) return ctx.student:sum() * 0 + 1 end}
    local h = kdx.distill.run(quiet{teacher = teacher, student = mlp(4), data = loader(train), epochs = 5,
      optimizer = sgd(0), loss = {one = one}, warmup = 4})
    for e = 1, 5 do
      assert.are.equal(math.min(e / 4, 1), h[e].warmup)
      close.assert_close(h[e].loss, 2 * math.min(e / 4, 1), 1e-6)
    end
    assert.are.equal(0.25, kdx.distill.warmup_factor(1, 4))
    assert.are.equal(1, kdx.distill.warmup_factor(3, 0))
    h = kdx.distill.run(quiet{teacher = teacher, student = mlp(4), data = loader(train), epochs = 1,
      optimizer = sgd(0), loss = {ce = 1, one = one}, warmup = 4})
    close.assert_close(h[1].loss, h[1].terms.ce + 0.5, 1e-5)
  end)

  it("gives the same run with the teacher's outputs cached, computing them once", function()
    local function go(cache)
      kdx.manual_seed(3)
      local s, calls = mlp(16), 0
      local hook = teacher:register_forward_hook(function() calls = calls + 1 end)
      local seen = {}
      local h = kdx.distill.run(quiet{teacher = teacher, student = s, data = loader(train, 5), epochs = 2,
        optimizer = sgd(), cache_teacher = cache, on_epoch = function(e) seen[e] = calls end})
      hook.remove()
      return h, s, seen
    end
    local h1, s1, calls1 = go(false)
    local h2, s2, calls2 = go(true)
    for e = 1, 2 do close.assert_close(h2[e].loss, h1[e].loss, 1e-6, 1e-5) end
    for name, p in s1:named_parameters() do close.assert_close(s2:state_dict()[name], p, 1e-5) end
    assert.are.same({23, 46}, calls1)              -- 1438 samples in batches of 64, every epoch
    assert.are.same({6, 6}, calls2)                -- one pass in chunks of 256, before training
  end)

  it("caches per batch for a list of batches", function()
    local batches = {}
    for i = 0, 3 do batches[#batches + 1] = {train.x:narrow(1, 1 + 64 * i, 64), train.y:narrow(1, 1 + 64 * i, 64)} end
    local calls = 0
    local hook = teacher:register_forward_hook(function() calls = calls + 1 end)
    kdx.distill.run(quiet{teacher = teacher, student = mlp(4), data = batches, epochs = 3, optimizer = sgd(),
      cache_teacher = true, on_epoch = function() assert.are.equal(4, calls) end})
    hook.remove()
  end)

  it("refuses to cache a loader whose transform changes the inputs", function()
    local aug = kdx.data.DataLoader(train, {batch_size = 64, transform = function(x) return x end})
    local err = error_of(function()
      kdx.distill.run{teacher = teacher, student = mlp(4), data = aug, optimizer = sgd(), cache_teacher = true}
    end)
    assert.truthy(err:find("distill_run_spec.lua:%d+: kdx.distill.run: cache_teacher needs the same inputs every epoch"))
  end)

  it("creates FitNets regressors and trains them with the student", function()
    kdx.manual_seed(4)
    local s, nparams = mlp(16), nil
    local h, f = kdx.distill.run(quiet{teacher = teacher, student = s, data = loader(train), epochs = 2,
      optimizer = function(params)
        nparams = #params
        return kdx.optim.SGD(params, {lr = 0.05, momentum = 0.9})
      end,
      loss = {ce = 1, hint = 1}, hints = {{student = "2", teacher = "3", regressor = true}}})
    local r = f.regressors[1]
    assert.is_true(nn.Module.is_module(r))
    assert.are.equal(#s:parameters() + #r:parameters(), nparams)
    local out = kdx.no_grad(function() return r(kdx.zeros{2, 16}) end)
    assert.are.same({2, 64}, out:shape())
    assert.is_true(h[2].terms.hint < h[1].terms.hint)
  end)

  it("uses a given regressor module as is", function()
    local reg = nn.Linear(16, 64)
    local w0 = reg.weight:clone()
    local _, f = kdx.distill.run(quiet{teacher = teacher, student = mlp(16), data = loader(train), optimizer = sgd(0.05),
      loss = {ce = 1, hint = 1}, hints = {{student = "2", teacher = "3", regressor = reg}}})
    assert.are.equal(reg, f.regressors[1])
    assert.is_true(reg.weight:ne(w0):sum():item() > 0)
  end)

  it("takes embeddings from the input of the last Linear unless told otherwise", function()
    local shapes
    local probe = {weight = 0, fn = function(ctx)
      shapes = {ctx.student_embedding:shape(), ctx.teacher_embedding:shape()}
      if ctx.pairs[1] then shapes[3], shapes[4] = ctx.pairs[1].student:shape(), ctx.pairs[1].teacher:shape() end
      return ctx.student:sum() * 0
    end}
    kdx.distill.run(quiet{teacher = teacher, student = mlp(16), data = {{train.x:narrow(1, 1, 8), train.y:narrow(1, 1, 8)}},
      optimizer = sgd(), loss = {ce = 1, probe = probe}, hints = {{student = "1", teacher = "1"}}})
    assert.are.same({{8, 16}, {8, 64}, {8, 16}, {8, 64}}, shapes)
    kdx.distill.run(quiet{teacher = teacher, student = mlp(16), data = {{train.x:narrow(1, 1, 8), train.y:narrow(1, 1, 8)}},
      optimizer = sgd(), loss = {ce = 1, probe = probe}, embed = {student = "0", teacher = "1"}})
    assert.are.same({8, 64}, shapes[1])
    assert.are.same({8, 64}, shapes[2])
  end)

  it("runs every built-in term on conv maps, penultimate embeddings and logits", function()
    kdx.manual_seed(5)
    local t = nn.Sequential{nn.Conv2d(1, 8, 3, {padding = 1}), nn.ReLU(), nn.Conv2d(8, 16, 3, {padding = 1}), nn.ReLU(),
      nn.Flatten(), nn.Linear(16 * 64, 10)}
    local s = nn.Sequential{nn.Conv2d(1, 4, 3, {padding = 1}), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10)}
    local data = {}
    for i = 0, 3 do data[#data + 1] = {train.x:narrow(1, 1 + 32 * i, 32), train.y:narrow(1, 1 + 32 * i, 32)} end
    local weights = {ce = 1, kd = 1, soft_ce = 1, dkd = 1, consistency = 1, hint = 1, at = 100, sp = 1, nst = 1,
      rkd = 1, pkt = 1}
    local h, f = kdx.distill.run(quiet{teacher = t, student = s, data = data, epochs = 2, optimizer = sgd(0.01),
      loss = weights, hints = {{student = "1", teacher = "3", regressor = true}}, warmup = 2})
    for name in pairs(weights) do
      for e = 1, 2 do
        local v = h[e].terms[name]
        assert.is_true(type(v) == "number" and v == v and v > -1e-6 and v < math.huge, name)
      end
    end
    assert.are.same({32, 16, 8, 8}, f.regressors[1](kdx.zeros{32, 4, 8, 8}):shape())
    assert.are.equal(0.5, h[1].warmup)
    -- cc compares embeddings of one width
    h = kdx.distill.run(quiet{teacher = mlp(16), student = mlp(16), data = data, optimizer = sgd(0.01),
      loss = {ce = 1, cc = 1}})
    assert.is_number(h[1].terms.cc)
  end)

  it("trains CRD heads and memory with the student, indexed by the loader's samples", function()
    kdx.manual_seed(6)
    local s, nparams = mlp(16), nil
    local h, f = kdx.distill.run(quiet{teacher = teacher, student = s, data = loader(train), epochs = 4,
      optimizer = function(params)
        nparams = #params
        return kdx.optim.SGD(params, {lr = 0.05, momentum = 0.9})
      end,
      loss = {ce = 1, crd = 0.8}, loss_opts = {crd = {feat_dim = 32, nce_k = 256}}})
    assert.are.equal("CRD", getmetatable(f.crd).__name)
    assert.are.same({16, 64, 1438}, {f.crd.s_dim, f.crd.t_dim, f.crd.n_data})
    assert.are.equal(#s:parameters() + #f.crd:parameters(), nparams)
    assert.is_true(h[4].terms.crd < h[1].terms.crd) -- (epoch 2 rises while the memory fills)
    local err = error_of(function()
      kdx.distill.run{teacher = teacher, student = mlp(4), data = {{train.x:narrow(1, 1, 8), train.y:narrow(1, 1, 8)}},
        optimizer = sgd(), loss = {crd = 1}}
    end)
    assert.truthy(err:find("distill_run_spec.lua:%d+: kdx.distill.run: loss term 'crd' needs a kdx.data DataLoader"), err)
  end)

  it("blames the caller's line for data it cannot read", function()
    local err = error_of(function() kdx.distill.run{teacher = teacher, student = mlp(4), data = 3, optimizer = sgd()} end)
    assert.truthy(err:find("distill_run_spec.lua:%d+: kdx.distill.run: data must be"), err)
    err = error_of(function() kdx.distill.run{teacher = teacher, student = mlp(4), data = {}, optimizer = sgd()} end)
    assert.truthy(err:find("distill_run_spec.lua:%d+: kdx.distill.run: the data held no batches"), err)
  end)

  it("trains without a teacher when the loss reads only labels", function()
    local h = kdx.distill.run(quiet{student = mlp(8), data = loader(train), optimizer = sgd(), loss = {ce = 1}})
    assert.are.equal(1, #h)
  end)

  it("stops when on_epoch returns false", function()
    local h = kdx.distill.run(quiet{teacher = teacher, student = mlp(4), data = loader(train), optimizer = sgd(),
      epochs = 5, on_epoch = function(e) return e < 2 end})
    assert.are.equal(2, #h)
  end)

  it("says what is wrong, on the caller's line", function()
    local base = {teacher = teacher, student = mlp(4), data = loader(train), optimizer = sgd()}
    local function with(over)
      local a = {}
      for k, v in pairs(base) do a[k] = v end
      for k, v in pairs(over) do a[k] = v end
      return a
    end
    local cases = {
      {with{loss = {kdd = 1}}, "unknown loss term 'kdd' %(known: at, attribution_match, cc, ce, consistency, crd, dkd, gradcam_match, hint, input_gradient_match, kd, nst, pkt, rkd, soft_ce, sp"},
      {with{loss = {kd = -1}}, "the weight of loss term 'kd' must be a non%-negative number"},
      {with{loss = {at = 1}}, "feature terms %(hint, at, sp, nst%) need hints"},
      {with{teacher = false, loss = {kd = 1}}, "teacher must be a kdx.nn module"},
      {with{hints = {{student = "9", teacher = "1"}}}, "student has no submodule named \"9\" %(hints%[1%]%)"},
      {with{optimizer = kdx.optim.SGD(base.student:parameters(), {lr = 0.1}), loss = {hint = 1},
        hints = {{student = "2", teacher = "3", regressor = true}}}, "regressors and CRD heads are trained with the student"},
      {with{T = 0}, "T must be a positive number"},
      {with{student = "net"}, "student must be a kdx.nn module"},
    }
    for _, case in ipairs(cases) do
      local err = error_of(function() kdx.distill.run(case[1]) end)
      assert.truthy(err:find("distill_run_spec.lua:%d+: kdx.distill.run: " .. case[2]), err)
    end
  end)
end)

describe("kdx.distill schemes", function()
  describe("multi_teacher()", function()
    local teacher2
    setup(function()
      kdx.manual_seed(10)
      teacher2 = mlp(32)
      kdx.train{model = teacher2, data = loader(train, 2), optimizer = sgd()(teacher2:parameters()), epochs = 3,
        log = false, progress = false}
    end)

    it("gives soft targets that are the mean of the teachers' softened distributions", function()
      local ens = kdx.distill.TeacherEnsemble({teacher, teacher2}, "average", 4)
      ens:eval()
      local x = test.x:narrow(1, 1, 20)
      kdx.no_grad(function()
        local want = (kdx.softmax(teacher(x) / 4, 2) + kdx.softmax(teacher2(x) / 4, 2)) / 2
        close.assert_close(kdx.softmax(ens(x) / 4, 2), want, 1e-5)
        local weighted = kdx.distill.TeacherEnsemble({teacher, teacher2}, "average", 4, {3, 1})
        weighted:eval()
        close.assert_close(kdx.softmax(weighted(x) / 4, 2),
          kdx.softmax(teacher(x) / 4, 2) * 0.75 + kdx.softmax(teacher2(x) / 4, 2) * 0.25, 1e-5)
        local conf = kdx.distill.TeacherEnsemble({teacher, teacher}, "confidence", 4)
        conf:eval()
        close.assert_close(kdx.softmax(conf(x) / 4, 2), kdx.softmax(teacher(x) / 4, 2), 1e-5)
        conf = kdx.distill.TeacherEnsemble({teacher, teacher2}, "confidence", 4)
        conf:eval()
        local c1 = kdx.softmax(teacher(x), 2):max(2):unsqueeze(2)
        local c2 = kdx.softmax(teacher2(x), 2):max(2):unsqueeze(2)
        want = (kdx.softmax(teacher(x) / 4, 2) * c1 + kdx.softmax(teacher2(x) / 4, 2) * c2) / (c1 + c2)
        close.assert_close(kdx.softmax(conf(x) / 4, 2), want, 1e-5)
        local lg = kdx.distill.TeacherEnsemble({teacher, teacher2}, "logits", 4)
        lg:eval()
        close.assert_close(lg(x), (teacher(x) + teacher2(x)) / 2, 1e-5)
      end)
    end)

    it("distils two teachers, averaged or weighted by confidence", function()
      for _, w in ipairs{"average", "confidence"} do
        kdx.manual_seed(11)
        local h, f = kdx.distill.multi_teacher(quiet{teachers = {teacher, teacher2}, weighting = w, student = mlp(16),
          data = loader(train), eval_data = test, epochs = 2, optimizer = sgd()})
        assert.are.equal(2, #h)
        assert.is_number(h[2].terms.kd)
        assert.is_true(f.accuracy > 0.75, w .. " " .. f.accuracy)
        assert.is_true(nn.Module.is_module(f.ensemble))
      end
    end)

    it("takes logit terms only", function()
      local err = error_of(function()
        kdx.distill.multi_teacher{teachers = {teacher}, student = mlp(4), data = loader(train), optimizer = sgd(),
          loss = {sp = 1}, hints = {{student = "1", teacher = "1"}}}
      end)
      assert.truthy(err:find("distill_run_spec.lua:%d+: kdx.distill.multi_teacher: loss term 'sp'"), err)
    end)
  end)

  describe("mutual()", function()
    it("trains students that learn from each other, KL both ways", function()
      kdx.manual_seed(12)
      local a, b = mlp(16), mlp(8)
      local h, f = kdx.distill.mutual(quiet{students = {a, b}, data = loader(train), eval_data = test, epochs = 4,
        optimizer = sgd()})
      assert.are.equal(4, #h)
      for i = 1, 2 do
        for _, k in ipairs{"loss", "accuracy", "eval_accuracy", "eval_loss"} do assert.is_number(h[4].students[i][k]) end
        assert.is_true(f.students[i].accuracy > 0.75, i .. " " .. f.students[i].accuracy)
        assert.are.equal(({a, b})[i], f.students[i].model)
      end
      assert.is_number(h[4].terms.kd)
      assert.is_true(h[4].loss < h[1].loss)
      assert.is_true(h[4].eval_agreement > 0.8)
      close.assert_close(h[4].eval_accuracy, (h[4].students[1].eval_accuracy + h[4].students[2].eval_accuracy) / 2, 1e-12)
    end)
  end)

  describe("born_again()", function()
    it("distils each generation from the one before", function()
      kdx.manual_seed(13)
      local gens, f = kdx.distill.born_again(quiet{student = function() return mlp(32) end, generations = 2,
        data = loader(train), eval_data = test, epochs = 4, optimizer = sgd()})
      assert.are.equal(3, #gens)
      assert.are.same({0, 1, 2}, {gens[1].generation, gens[2].generation, gens[3].generation})
      assert.are.equal(3, #f.models)
      assert.are.equal(gens[3].model, f.models[3])
      assert.is_nil(gens[1].history[1].terms.kd)
      assert.is_number(gens[3].history[1].terms.kd)
      assert.is_true(f.accuracy > 0.75, f.accuracy)
    end)

    it("starts from a given teacher", function()
      kdx.manual_seed(14)
      local gens, f = kdx.distill.born_again(quiet{teacher = teacher, student = function() return mlp(16) end,
        generations = 1, data = loader(train), epochs = 1, optimizer = sgd()})
      assert.are.equal(1, #gens)
      assert.are.equal(teacher, f.models[1])
    end)
  end)

  describe("teacher_assistant()", function()
    it("distils along the chain, teacher → assistant → student", function()
      kdx.manual_seed(15)
      local ta, s = mlp(32), mlp(8)
      local before = snapshot(teacher)
      local stages, f = kdx.distill.teacher_assistant(quiet{chain = {teacher, ta, s}, data = loader(train),
        eval_data = test, epochs = 4, optimizer = sgd()})
      assert.are.equal(2, #stages)
      assert.are.equal(ta, stages[1].final.student)
      assert.are.equal(s, f.student)
      assert.is_true(f.accuracy > 0.75, f.accuracy)
      assert.is_true(same_state(teacher, before))
    end)
  end)

  describe("online_pseudo()", function()
    it("learns from the teacher's confident labels on unlabeled data", function()
      kdx.manual_seed(16)
      local labeled = train:subset(kdx.arange(1, 101))
      local unlabeled = train:subset(kdx.arange(101, train:size() + 1))
      local h, f = kdx.distill.online_pseudo(quiet{teacher = teacher, student = mlp(16), labeled = labeled,
        unlabeled = loader(unlabeled), eval_data = test, epochs = 2, optimizer = sgd(), threshold = 0.9})
      assert.are.equal(2, #h)
      assert.is_true(h[2].coverage > 0.5 and h[2].coverage <= 1)
      assert.is_true(h[2].pseudo_accuracy > 0.9)
      assert.is_number(h[2].terms.pseudo)
      assert.is_number(h[2].terms.ce)
      assert.is_true(f.accuracy > 0.75)
    end)

    it("takes soft pseudo-labels and needs labeled data for ce", function()
      kdx.manual_seed(17)
      local part = train:subset(kdx.arange(1, 257))
      local h = kdx.distill.online_pseudo(quiet{teacher = teacher, student = mlp(8), unlabeled = loader(part),
        optimizer = sgd(), mode = "soft", threshold = 0.5, loss = {pseudo = 1, kd = 0.5}})
      assert.is_number(h[1].terms.kd)
      assert.is_true(h[1].pseudo_accuracy > 0.5)
      local err = error_of(function()
        kdx.distill.online_pseudo{teacher = teacher, student = mlp(8), unlabeled = loader(part), optimizer = sgd()}
      end)
      assert.truthy(err:find("distill_run_spec.lua:%d+: kdx.distill.online_pseudo: loss term 'ce' needs labeled data"), err)
    end)
  end)
end)
