-- kdx.explain.metrics: golden values from scipy/numpy/PyTorch reimplementations
-- (spec/fixtures/gen_explain_metrics.py), the properties each metric must have,
-- independence from batch_size, and errors naming kdx.explain.metrics.<name>.
local kdx = require "kdx"
local nn = kdx.nn
local helpers = require "helpers.close"
local close, T = helpers.assert_close, helpers.from_fixture
local me = kdx.explain.metrics

local g = dofile("spec/fixtures/explain_metrics_golden.lua")

local function errors_with(fn, text)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error")
  assert.truthy(tostring(err):find(text, 1, true), "error was: " .. tostring(err))
end

-- The generator's MLP on [N, 2, 4, 4]: flatten, Linear(32, 6), tanh, Linear(6, 3).
local W1, b1, W2, b2 = T(g.mlp.W1), T(g.mlp.b1), T(g.mlp.W2), T(g.mlp.b2)
local function mlp(b)
  local n = b:size(1)
  return kdx.matmul(kdx.matmul(b:reshape({n, 32}), W1:t()):add(b1):tanh(), W2:t()):add(b2)
end
local xs, target = T(g.mlp.x), T(g.mlp.target)

-- A linear model f(x) = w . x on [N, 4] (one output per sample).
local w = kdx.tensor({0.5, -1.5, 2, 1}, "float64")
local function linear(b) return kdx.matmul(b, w) end

local function small_net()
  kdx.manual_seed(0)
  return nn.Sequential{nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)}:double()
end

describe("kdx.explain.metrics", function()
  kdx.manual_seed(5)
  local x4 = kdx.randn({6, 4}, "float64")

  describe("similarities", function()
    local a, b = T(g.sim.a), T(g.sim.b)

    it("match scipy's spearmanr, pearsonr and kendalltau (tau-b) on data with ties", function()
      close(me.spearman(a, b), T(g.sim.spearman), 1e-12)
      close(me.pearson(a, b), T(g.sim.pearson), 1e-12)
      close(me.kendall(a, b), T(g.sim.kendall), 1e-12)
      close(me.cosine(a, b), T(g.sim.cosine), 1e-12)
    end)

    it("match numpy's top-k overlap, with k a count or a fraction", function()
      local ta, tb = T(g.topk.a), T(g.topk.b)
      close(me.topk_overlap(ta, tb, g.topk.k), T(g.topk.value), 1e-12)
      close(me.topk_overlap(ta, tb, g.topk.k / 30), T(g.topk.value), 1e-12)
    end)

    it("match SSIM with an 11x11 Gaussian window (skimage, gaussian_weights) for both data ranges", function()
      local ma, mb = T(g.ssim.a), T(g.ssim.b)
      close(me.ssim(ma, mb), T(g.ssim.auto), 1e-12)
      close(me.ssim(ma, mb, {data_range = 2}), T(g.ssim.range2), 1e-12)
      close(me.ssim(ma:unsqueeze(2), mb:unsqueeze(2), {data_range = 2}), T(g.ssim.range2), 1e-12)
    end)

    it("are 1 for an attribution compared with itself", function()
      local m = kdx.randn({3, 12, 12}, "float64")
      for _, f in ipairs{me.spearman, me.pearson, me.kendall, me.cosine, me.ssim} do
        close(f(m, m), kdx.ones({3}, "float64"), 1e-12)
      end
      close(me.topk_overlap(m, m, 0.25), kdx.ones({3}, "float64"), 0)
    end)

    it("rank correlations do not change under a monotone transform, Pearson does", function()
      local m = kdx.randn({3, 50}, "float64")
      local mono = (m * 3):exp() + 7
      close(me.spearman(m, mono), kdx.ones({3}, "float64"), 1e-12)
      close(me.kendall(m, mono), kdx.ones({3}, "float64"), 1e-12)
      close(me.spearman(a, b), me.spearman(a:exp(), b * 5 - 1), 1e-12)
      assert.is_true(me.pearson(m, mono):max():item() < 0.999)
    end)

    it("are -1 for a reversed ranking and NaN for a constant row", function()
      local m = kdx.randn({2, 20}, "float64")
      close(me.spearman(m, -m), kdx.full({2}, -1, "float64"), 1e-12)
      close(me.kendall(m, -m), kdx.full({2}, -1, "float64"), 1e-12)
      local c = me.pearson(m, kdx.ones({2, 20}, "float64"))
      assert.is_true(c:get(1) ~= c:get(1))
    end)

    it("name the similarity in errors", function()
      errors_with(function() me.spearman(kdx.zeros({2, 3}), kdx.zeros({2, 4})) end,
        "kdx.explain.metrics.spearman: a [2,3] and b [2,4] must have the same shape")
      errors_with(function() me.ssim(kdx.zeros({2, 8, 8}), kdx.zeros({2, 8, 8})) end,
        "kdx.explain.metrics.ssim: ssim needs maps of at least 11x11")
      errors_with(function() me.topk_overlap(kdx.zeros({2, 3}), kdx.zeros({2, 3}), 1.5) end,
        "kdx.explain.metrics.topk_overlap: k must be a count")
      errors_with(function() me.cosine(kdx.zeros({2, 3}), "b") end, "kdx.explain.metrics.cosine: b must be a tensor")
    end)
  end)

  describe("sparseness and complexity", function()
    it("match Quantus' Gini index and the entropy of |a| / sum |a|", function()
      local a = T(g.gini.a)
      close(me.sparseness(a), T(g.gini.gini), 1e-12)
      close(me.complexity(a), T(g.gini.entropy), 1e-12)
    end)

    it("give Gini ~1 for a one-hot map and 0 for a constant one", function()
      local d = 1000
      local onehot = kdx.zeros({1, d}, "float64")
      onehot:set(1, 7, 3.5)
      assert.is_true(math.abs(me.sparseness(onehot):item() - (d - 1) / d) < 1e-3) -- Quantus' +1e-7 per element
      close(me.sparseness(kdx.full({2, d}, -0.3, "float64")), kdx.zeros({2}, "float64"), 1e-12)
    end)

    it("give entropy log(d) for a uniform map and 0 for a one-hot one", function()
      close(me.complexity(kdx.full({2, 3, 5}, 2, "float64")), kdx.full({2}, math.log(15), "float64"), 1e-12)
      local onehot = kdx.zeros({1, 9}, "float64")
      onehot:set(1, 4, -1)
      close(me.complexity(onehot), kdx.zeros({1}, "float64"), 0)
    end)
  end)

  describe("deletion and insertion", function()
    it("match a PyTorch reimplementation: softmax deletion and raw insertion, a map over channels", function()
      local amap = T(g.mlp.amap)
      local c, auc = me.deletion(mlp, xs, amap, {target = target, baseline = g.mlp.baseline, steps = g.mlp.steps,
        softmax = true, batch_size = 4})
      close(c, T(g.mlp.deletion_softmax.curves), 1e-12)
      close(auc, T(g.mlp.deletion_softmax.auc), 1e-12)
      c, auc = me.insertion(mlp, xs, amap:squeeze(2), {target = target, baseline = g.mlp.baseline,
        steps = g.mlp.steps})
      close(c, T(g.mlp.insertion.curves), 1e-12)
      close(auc, T(g.mlp.insertion.auc), 1e-12)
    end)

    it("start at f(x) and end at f(baseline), and insertion mirrors it", function()
      local attr = kdx.randn({6, 4}, "float64")
      local c = me.deletion(linear, x4, attr, {steps = 4})
      local ci = me.insertion(linear, x4, attr, {steps = 4})
      close(c:select(2, 1), linear(x4), 1e-12)
      close(c:select(2, 5), kdx.zeros({6}, "float64"), 1e-12)
      close(ci:select(2, 5), linear(x4), 1e-12)
      -- one feature per step: deleting the top-k features is inserting the others
      close(c:select(2, 2) + ci:select(2, 2), linear(x4), 1e-12)
    end)

    it("drops fastest for the exact attribution of a linear model", function()
      local exact = x4 * w
      local _, good = me.deletion(linear, x4, exact, {steps = 4})
      local _, bad = me.deletion(linear, x4, -exact, {steps = 4})
      for i = 1, 6 do assert.is_true(good:get(i) <= bad:get(i) + 1e-12) end
    end)

    it("run float32 inputs and models in float32", function()
      local attr = T(g.mlp.amap)
      local f32 = function(b)
        assert.are.equal("float32", b:dtype())
        return mlp(b:double())
      end
      local c64 = me.deletion(mlp, xs, attr, {target = target, steps = 4})
      local c32 = me.deletion(f32, xs:float(), attr:float(), {target = target, steps = 4, baseline = 0})
      close(c32, c64, 1e-6)
    end)

    it("give the same result in any batch size", function()
      local attr = kdx.randn({3, 1, 4, 4}, "float64")
      local c1 = me.deletion(mlp, xs, attr, {target = target, steps = 7, batch_size = 1})
      local c2 = me.deletion(mlp, xs, attr, {target = target, steps = 7, batch_size = 1000})
      close(c1, c2, 1e-13)
    end)
  end)

  describe("completeness", function()
    it("is sum(attr) - (f(x) - f(baseline)), as PyTorch computes it", function()
      close(me.completeness(mlp, xs, T(g.mlp.afull), {target = target, baseline = g.mlp.baseline, batch_size = 2}),
        T(g.mlp.completeness), 1e-12)
    end)

    it("is ~0 for integrated gradients", function()
      local net = small_net()
      local attr = kdx.explain.integrated_gradients(net, x4, {target = 2, steps = 64})
      local gap = me.completeness(net, x4, attr, {target = 2})
      assert.is_true(gap:abs():max():item() < 1e-6)
    end)
  end)

  describe("infidelity", function()
    -- perturbations from the fixture: rows arrive in order, so a counter numbers them
    local function fixture_perturb()
      local noise, r = T(g.mlp.infidelity.noise), 0
      return function(rows)
        local n = rows:size(1)
        local I = noise:narrow(1, r + 1, n)
        r = r + n
        return I
      end
    end

    it("matches Captum's definition with given perturbations, plain and normalized", function()
      local o = {target = target, n_perturb_samples = g.mlp.infidelity.S, batch_size = 5}
      o.perturb_func = fixture_perturb()
      close(me.infidelity(mlp, xs, T(g.mlp.afull), o), T(g.mlp.infidelity.value), 1e-12)
      o.perturb_func, o.normalize = fixture_perturb(), true
      close(me.infidelity(mlp, xs, T(g.mlp.afull), o), T(g.mlp.infidelity.normalized), 1e-12)
    end)

    it("equals its closed form for a linear model: mean (I.(x*w) - I.w)^2, and 0 for attr = w", function()
      kdx.manual_seed(11)
      local S = 5
      local noise = kdx.randn({6 * S, 4}, "float64") * 0.1
      local function perturb()
        local r = 0
        return function(rows)
          local n = rows:size(1)
          r = r + n
          return noise:narrow(1, r - n + 1, n)
        end
      end
      local got = me.infidelity(linear, x4, x4 * w, {perturb_func = perturb(), n_perturb_samples = S, batch_size = 7})
      for i = 1, 6 do
        local want = 0
        for s = 1, S do
          local I = noise:select(1, (i - 1) * S + s)
          local e = (I * x4:select(1, i) * w):sum():item() - (I * w):sum():item()
          want = want + e * e / S
        end
        assert.is_true(math.abs(got:get(i) - want) <= 1e-12 * (1 + want))
      end
      local exact = me.infidelity(linear, x4, w:reshape({1, 4}):expand({6, 4}), {seed = 3})
      assert.is_true(exact:abs():max():item() < 1e-20)
    end)

    it("takes the perturbed input from perturb_func when it returns one, and noise of any layout", function()
      kdx.manual_seed(12)
      local noise = kdx.randn({6 * 3, 4}, "float64") * 0.1
      local function perturb(both)
        local r = 0
        return function(rows)
          local n = rows:size(1)
          r = r + n
          local I = noise:narrow(1, r - n + 1, n)
          if both then return I, rows - I end
          return I:reshape({n * 4})
        end
      end
      local net = small_net()
      local attr = x4 * 2
      local a = me.infidelity(net, x4, attr, {target = 3, n_perturb_samples = 3, perturb_func = perturb(true), batch_size = 4})
      local b = me.infidelity(net, x4, attr, {target = 3, n_perturb_samples = 3, perturb_func = perturb(false)})
      close(a, b, 1e-15)
    end)

    it("is deterministic for a seed and independent of batch_size", function()
      local net = small_net()
      local attr = kdx.explain.saliency(net, x4, {target = 1, abs = false})
      local a = me.infidelity(net, x4, attr, {target = 1, seed = 9, batch_size = 1})
      local b = me.infidelity(net, x4, attr, {target = 1, seed = 9, batch_size = 100})
      close(a, b, 0)
      assert.is_true(a:min():item() >= 0)
    end)
  end)

  describe("max_sensitivity", function()
    it("is 0 for the constant gradient of a linear model and 0 at radius 0", function()
      local s = me.max_sensitivity(linear, x4, nil, {method = "saliency", method_opts = {abs = false}, seed = 1})
      close(s, kdx.zeros({6}, "float64"), 1e-15)
      local net = small_net()
      close(me.max_sensitivity(net, x4, nil, {method = "saliency", target = 2, radius = 0}), kdx.zeros({6}, "float64"), 0)
    end)

    it("is bounded by radius ||w|| / ||x*w|| for input x gradient of a linear model", function()
      local s = me.max_sensitivity(linear, x4, nil, {method = "input_x_gradient", n_perturb_samples = 20, seed = 2,
        batch_size = 7})
      for i = 1, 6 do
        local bound = 0.02 * w:norm():item() / (x4:select(1, i) * w):norm():item()
        assert.is_true(s:get(i) > 0 and s:get(i) <= bound * (1 + 1e-12))
      end
    end)

    it("takes a function as the method, per-sample targets, and is independent of batch_size", function()
      local net = small_net()
      local seen
      local method = function(model, b, o)
        seen = o.target
        return kdx.explain.saliency(model, b, o)
      end
      local tg = {1, 2, 3, 1, 2, 3}
      local a = me.max_sensitivity(net, x4, nil, {method = method, target = tg, seed = 4, batch_size = 5})
      assert.is_true(kdx.is_tensor(seen))
      local b = me.max_sensitivity(net, x4, nil, {method = "saliency", target = tg, seed = 4, batch_size = 60})
      close(a, b, 1e-15)
      local given = kdx.explain.saliency(net, x4, {target = tg})
      close(me.max_sensitivity(net, x4, given, {method = "saliency", target = tg, seed = 4}), b, 1e-15)
    end)
  end)

  describe("faithfulness_correlation", function()
    it("is 1 for the exact attribution of a linear model with baseline 0", function()
      local f = me.faithfulness_correlation(linear, x4, x4 * w, {subset_size = 2, nr_runs = 30, seed = 1})
      close(f, kdx.ones({6}, "float64"), 1e-12)
    end)

    it("is lower for a shuffled attribution, deterministic for a seed and independent of batch_size", function()
      local wrong = (x4 * w):index_select(2, kdx.tensor({4, 3, 2, 1}, "int64"))
      local a = me.faithfulness_correlation(linear, x4, wrong, {subset_size = 2, nr_runs = 30, seed = 1, batch_size = 4})
      local b = me.faithfulness_correlation(linear, x4, wrong, {subset_size = 2, nr_runs = 30, seed = 1})
      close(a, b, 1e-14)
      assert.is_true(a:mean():item() < 0.9)
    end)
  end)

  describe("randomization_check", function()
    local function snapshot(model)
      local out = {}
      for name, p in model:named_parameters() do out[name] = p:clone() end
      return out
    end
    local function assert_unchanged(model, before)
      for name, p in model:named_parameters() do close(p, before[name], 0) end
    end

    it("reports one row per layer, top-down, with similarity 1 before any randomisation", function()
      local net = small_net()
      local before = snapshot(net)
      local r = me.randomization_check(net, x4, nil, {method = "saliency", target = 2, seed = 3})
      assert.are.equal(3, #r)
      assert.are.same({"none", "2", "0"}, {r[1].layer, r[2].layer, r[3].layer})
      close(r[1].similarity, kdx.ones({6}, "float64"), 1e-12)
      assert.is_true(r[3].similarity:mean():item() < 0.99)
      assert_unchanged(net, before)
    end)

    it("compares with a given attribution, by any similarity, and bottom-up", function()
      local net = small_net()
      local before = snapshot(net)
      local attr = kdx.explain.saliency(net, x4, {target = 1})
      local r = me.randomization_check(net, x4, attr, {method = "saliency", target = 1, similarity = "cosine",
        order = "bottom_up", seed = 1, batch_size = 4})
      assert.are.same({"none", "0", "2"}, {r[1].layer, r[2].layer, r[3].layer})
      close(r[1].similarity, kdx.ones({6}, "float64"), 1e-12)
      assert_unchanged(net, before)
    end)

    it("leaves the model unchanged when the explanation fails midway", function()
      local net = small_net()
      local before = snapshot(net)
      local calls = 0
      local method = function(model, b, o)
        calls = calls + 1
        if calls == 2 then error("explanation broke") end
        return kdx.explain.saliency(model, b, o)
      end
      errors_with(function() me.randomization_check(net, x4, nil, {method = method, target = 1}) end,
        "explanation broke")
      assert_unchanged(net, before)
    end)

    it("is deterministic for a seed", function()
      local net = small_net()
      local a = me.randomization_check(net, x4, nil, {method = "saliency", target = 2, seed = 8})
      local b = me.randomization_check(net, x4, nil, {method = "saliency", target = 2, seed = 8, batch_size = 1})
      for i = 1, 3 do close(a[i].similarity, b[i].similarity, 1e-15) end
    end)
  end)

  describe("errors", function()
    it("name kdx.explain.metrics.<name>", function()
      local net = small_net()
      errors_with(function() me.deletion(net, x4, kdx.zeros({6, 5}, "float64"), {target = 1}) end,
        "kdx.explain.metrics.deletion: attr [6,5] must have x's shape [6,4]")
      errors_with(function() me.insertion(net, x4, x4, {target = 1, steps = 0}) end,
        "kdx.explain.metrics.insertion: steps must be >= 1")
      errors_with(function() me.deletion(net, x4, x4) end, "give a target class")
      errors_with(function() me.infidelity(net, x4, x4, {target = 1, perturb_func = 3}) end,
        "kdx.explain.metrics.infidelity: perturb_func must be a function")
      errors_with(function() me.infidelity(net, x4, x4, {target = 1, perturb_func = function() return 1 end}) end,
        "kdx.explain.metrics.infidelity: perturb_func returned a number")
      errors_with(function() me.max_sensitivity(net, x4, nil, {method = "nope"}) end,
        "kdx.explain.metrics.max_sensitivity: method \"nope\" is not a kdx.explain method")
      errors_with(function() me.faithfulness_correlation(net, x4, x4, {target = 1, subset_size = 9}) end,
        "kdx.explain.metrics.faithfulness_correlation: subset_size must be in [1, 4]")
      errors_with(function() me.completeness(net, x4, "a", {target = 1}) end,
        "kdx.explain.metrics.completeness: attr must be a tensor")
      errors_with(function() me.randomization_check(linear, x4, nil, {method = "saliency"}) end,
        "kdx.explain.metrics.randomization_check: model must be a kdx.nn module")
      errors_with(function() me.randomization_check(net, x4, nil, {method = "saliency", similarity = "l2"}) end,
        "kdx.explain.metrics.randomization_check: similarity must be")
      errors_with(function() me.deletion(function() error("boom") end, x4, x4, {}) end,
        "kdx.explain.metrics.deletion: the model raised an error")
      errors_with(function() me.sparseness("a") end, "kdx.explain.metrics.sparseness: attr must be a tensor")
      errors_with(function() me.deletion(net, x4, x4, {target = 1, softmax = 1}) end,
        "kdx.explain.metrics.deletion: softmax must be a boolean")
    end)

    it("are raised at the caller's line, also when the engine finds them", function()
      local ok, err = pcall(me.deletion, small_net(), x4, x4, {target = 1, steps = 200000})
      assert.is_false(ok)
      assert.truthy(err:find("^spec/explain_metrics_spec%.lua:%d+: kdx%.explain%.metrics%.deletion: steps must be in"), err)
      ok, err = pcall(me.pearson, kdx.zeros({2, 3}), kdx.zeros({3, 3}))
      assert.truthy(err:find("^spec/explain_metrics_spec%.lua:%d+: kdx%.explain%.metrics%.pearson: a %[2,3%]"), err)
    end)

    it("leave no tensors behind", function()
      local net = small_net()
      collectgarbage(); collectgarbage()
      local before = kdx.debug.live_tensors()
      for _ = 1, 2 do
        me.deletion(net, x4, x4, {target = 1, steps = 3})
        me.randomization_check(net, x4, nil, {method = "saliency", target = 1})
        pcall(me.infidelity, net, x4, x4, {target = 1, perturb_func = function() error("x") end})
        pcall(me.deletion, function() error("x") end, x4, x4, {})
      end
      collectgarbage(); collectgarbage()
      assert.are.equal(before, kdx.debug.live_tensors())
    end)
  end)
end)
