-- kdx.explain perturbation methods: occlusion and feature ablation against a
-- hand-written reimplementation of Captum's definitions on a fixed CNN,
-- Shapley sampling's axioms (exactness on additive models, efficiency for
-- any number of permutations, dummy, symmetry) and agreement with exact
-- Shapley values, the interaction indices against exact enumeration, seeds,
-- batching and errors. Fixture: spec/fixtures/gen_explain_perturb.py.
local kdx = require "kdx"
local nn = kdx.nn
local helpers = require "helpers.close"
local close, T = helpers.assert_close, helpers.from_fixture
local golden = require "helpers.golden"

local g = golden.fixture("explain_perturb_golden.lua")

local function cnn()
  local net = nn.Sequential{
    nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(4, 6, 3, {stride = 2}), nn.ReLU(), nn.Flatten(), nn.Linear(6, 3),
  }
  net:load("spec/fixtures/models_cnn.safetensors")
  return net:double():eval()
end

-- The fixture's MLP (softmax outputs), as a function of a batch [B, 4].
local W1, b1, W2, b2 = T(g.mlp.W1), T(g.mlp.b1), T(g.mlp.W2), T(g.mlp.b2)
local function mlp(b)
  return kdx.softmax(kdx.matmul(kdx.matmul(b, W1):add(b1):tanh(), W2):add(b2), 2)
end

-- f(b) = sum_j g_j(b_j) with g_j(v) = w_j v + v^2 / j: additive in the features.
local w = kdx.tensor({0.5, -1, 2, 0.25}, "float64")
local function additive(b)
  return kdx.matmul(b, w) + (b * b * kdx.tensor({1, 1 / 2, 1 / 3, 1 / 4}, "float64")):sum(2)
end
local function contributions(x, base)
  local s = kdx.tensor({1, 1 / 2, 1 / 3, 1 / 4}, "float64")
  return (x - base) * w + (x * x - base * base) * s
end

describe("kdx.explain perturbation methods", function()
  local xs, target = T(g.cnn.x), T(g.cnn.target)
  kdx.manual_seed(3)
  local x = kdx.randn({5, 4}, "float64")

  describe("occlusion", function()
    it("agrees with Captum's definition, a cut last window and a baseline included", function()
      local c = g.cnn.occ1
      close(kdx.explain.occlusion(cnn(), xs, {window = c.window, strides = c.strides, baseline = c.baseline,
        target = target}), T(c.attr), 1e-10)
      c = g.cnn.occ2
      close(kdx.explain.occlusion(cnn(), xs, {window = c.window, strides = c.strides, target = target,
        batch_size = 3}), T(c.attr), 1e-10)
    end)

    it("with a 1x1 window equals feature ablation of every element", function()
      local net = cnn()
      close(kdx.explain.occlusion(net, xs, {window = 1, target = target, baseline = 0.3}),
        kdx.explain.feature_ablation(net, xs, {target = target, baseline = 0.3}), 1e-12)
    end)

    it("takes a number as the window of every dim, clipped to the dim", function()
      local net = cnn()
      close(kdx.explain.occlusion(net, xs, {window = 2, strides = 2, target = target}), T(g.cnn.occ2.attr), 1e-10)
    end)

    it("gives the same result in any batch size and in float32", function()
      local sq = function(b) return (b * b * b):sum(2) end
      local a = kdx.explain.occlusion(sq, x, {window = {2}, batch_size = 1})
      local b = kdx.explain.occlusion(sq, x, {window = {2}, batch_size = 1000})
      close(a, b, 1e-12)
      local f = kdx.explain.occlusion(sq, x:float(), {window = {2}})
      assert.are.equal("float32", f:dtype())
      close(f, a, 1e-4)
    end)

    it("leaves elements no window covers at 0", function()
      -- windows of 1 moved by 3 over 4 features cover features 1 and 4 only
      local a = kdx.explain.occlusion(additive, x, {window = {1}, strides = {3}})
      local c = contributions(x, 0)
      for i = 1, 5 do
        assert.are.equal(0, a:get(i, 2)); assert.are.equal(0, a:get(i, 3))
        assert.is_true(math.abs(a:get(i, 1) - c:get(i, 1)) < 1e-12)
        assert.is_true(math.abs(a:get(i, 4) - c:get(i, 4)) < 1e-12)
      end
    end)
  end)

  describe("feature_ablation", function()
    it("agrees with Captum's definition on feature groups", function()
      local mask = T(g.cnn.ablation.mask) -- [1, 8, 8]: one sample's shape
      close(kdx.explain.feature_ablation(cnn(), xs, {feature_mask = mask, target = target}),
        T(g.cnn.ablation.attr), 1e-10)
    end)

    it("gives every member of a group the group's drop", function()
      local mask = {1, 1, 2, 2}
      local a = kdx.explain.feature_ablation(additive, x, {feature_mask = mask, baseline = 1})
      local c = contributions(x, 1)
      for i = 1, 5 do
        local g12, g34 = c:get(i, 1) + c:get(i, 2), c:get(i, 3) + c:get(i, 4)
        for j, v in ipairs{g12, g12, g34, g34} do assert.is_true(math.abs(a:get(i, j) - v) < 1e-12) end
      end
    end)

    it("takes a mask per sample", function()
      local mask = kdx.tensor({{1, 2, 3, 4}, {1, 1, 1, 1}, {1, 2, 1, 2}, {4, 3, 2, 1}, {2, 2, 1, 1}}, "int64")
      local a = kdx.explain.feature_ablation(additive, x, {feature_mask = mask})
      local c = contributions(x, 0)
      local row2 = c:get(2, 1) + c:get(2, 2) + c:get(2, 3) + c:get(2, 4)
      for j = 1, 4 do
        assert.is_true(math.abs(a:get(1, j) - c:get(1, j)) < 1e-12)
        assert.is_true(math.abs(a:get(2, j) - row2) < 1e-12)
      end
    end)
  end)

  describe("shapley_sampling", function()
    it("on an additive model gives each feature its exact contribution, for any permutation", function()
      for seed = 1, 4 do
        close(kdx.explain.shapley_sampling(additive, x, {n_samples = 1, seed = seed, baseline = 0.5}),
          contributions(x, 0.5), 1e-12)
      end
    end)

    it("is efficient for every number of permutations: sum = f(x) - f(baseline)", function()
      local f = function(b) return mlp(b):select(2, 3) end
      local gap = f(x) - f(kdx.full({5, 4}, 0.2, "float64"))
      for _, n in ipairs{1, 2, 7, 25} do
        local a = kdx.explain.shapley_sampling(mlp, x, {target = 3, n_samples = n, seed = n, baseline = 0.2})
        close(a:sum(2), gap, 1e-12)
      end
    end)

    it("gives a feature the model ignores exactly 0, and symmetric features about equal values", function()
      local f = function(b) local s = b:select(2, 1) + b:select(2, 2); return s * s + b:select(2, 3) end
      local xx = x:clone()
      for i = 1, 5 do xx:set(i, 2, xx:get(i, 1)) end
      local a = kdx.explain.shapley_sampling(f, xx, {n_samples = 4000, seed = 7})
      for i = 1, 5 do
        assert.are.equal(0, a:get(i, 4))
        local scale = math.abs(a:get(i, 1)) + math.abs(a:get(i, 2)) + 1e-9
        assert.is_true(math.abs(a:get(i, 1) - a:get(i, 2)) < 0.1 * scale)
      end
    end)

    it("converges to the exact Shapley values", function()
      local xr, ex = T(g.shapley.x), T(g.shapley.interactions)
      local a = kdx.explain.shapley_sampling(mlp, xr, {target = g.mlp.target, n_samples = 3000, seed = 1})
      for i = 1, 2 do
        for j = 1, 4 do assert.is_true(math.abs(a:get(i, j) - ex:get(i, j, j)) < 0.01) end
      end
    end)

    it("is deterministic for a seed and changes with it", function()
      local o = {target = 1, n_samples = 3, seed = 42}
      close(kdx.explain.shapley_sampling(mlp, x, o), kdx.explain.shapley_sampling(mlp, x, o), 0)
      local other = kdx.explain.shapley_sampling(mlp, x, {target = 1, n_samples = 3, seed = 43})
      assert.is_true((other - kdx.explain.shapley_sampling(mlp, x, o)):abs():max():item() > 0)
      local b1 = kdx.explain.shapley_sampling(mlp, x, {target = 1, n_samples = 3, seed = 42, batch_size = 1})
      close(b1, kdx.explain.shapley_sampling(mlp, x, o), 1e-12)
    end)

    it("shares a group's value among its members", function()
      local a = kdx.explain.shapley_sampling(additive, x, {feature_mask = {2, 1, 2, 1}, n_samples = 2, seed = 1})
      local c = contributions(x, 0)
      for i = 1, 5 do
        local g1, g2 = c:get(i, 2) + c:get(i, 4), c:get(i, 1) + c:get(i, 3)
        for j, v in ipairs{g2, g1, g2, g1} do assert.is_true(math.abs(a:get(i, j) - v) < 1e-12) end
      end
    end)
  end)

  describe("shapley_interactions", function()
    it("are 0 between the features of an additive model, its contributions on the diagonal", function()
      local I = kdx.explain.shapley_interactions(additive, x, {samples = 5, seed = 2})
      local c = contributions(x, 0)
      assert.are.same({5, 4, 4}, I:shape())
      for i = 1, 5 do
        for a = 1, 4 do
          for b = 1, 4 do
            local want = a == b and c:get(i, a) or 0
            assert.is_true(math.abs(I:get(i, a, b) - want) < 1e-12)
          end
        end
      end
    end)

    it("give x1 * x2 exactly its product, shared by the two Shapley values", function()
      local f = function(b) return b:select(2, 1) * b:select(2, 2) + b:select(2, 3) end
      local I = kdx.explain.shapley_interactions(f, x, {samples = 3, seed = 5})
      for i = 1, 5 do
        local p = x:get(i, 1) * x:get(i, 2)
        assert.is_true(math.abs(I:get(i, 1, 2) - p) < 1e-12)
        assert.is_true(math.abs(I:get(i, 2, 1) - p) < 1e-12)
        assert.is_true(math.abs(I:get(i, 1, 3)) < 1e-12)
        assert.is_true(math.abs(I:get(i, 1, 1) + I:get(i, 2, 2) - p) < 1e-12)
        assert.is_true(math.abs(I:get(i, 3, 3) - x:get(i, 3)) < 1e-12)
      end
    end)

    it("converge to the exact interaction indices of an MLP", function()
      local xr, ex = T(g.shapley.x), T(g.shapley.interactions)
      local I = kdx.explain.shapley_interactions(mlp, xr, {target = g.mlp.target, samples = 3000, seed = 9,
        batch_size = 4096})
      close(I, ex, 0.02)
      close(I, I:transpose(2, 3), 0)
    end)
  end)

  describe("errors", function()
    it("name the method", function()
      local function err(fn, ...)
        local ok, e = pcall(fn, ...)
        assert.is_false(ok)
        return e
      end
      assert.truthy(err(kdx.explain.occlusion, additive, x, {}):find("kdx.explain.occlusion: give opts.window", 1, true))
      assert.truthy(err(kdx.explain.occlusion, additive, x, {window = {1, 1}}):find("kdx.explain.occlusion", 1, true))
      assert.truthy(err(kdx.explain.occlusion, additive, x, {window = {9}}):find("kdx.explain.occlusion: window size 9", 1, true))
      assert.truthy(err(kdx.explain.occlusion, additive, x, {window = {1}, strides = {0}}):find("stride 0", 1, true))
      assert.truthy(err(kdx.explain.feature_ablation, additive, x, {baseline = "zero"})
        :find("kdx.explain.feature_ablation: baseline must be", 1, true))
      assert.truthy(err(kdx.explain.feature_ablation, additive, x, {feature_mask = {0, 1, 1, 1}})
        :find("kdx.explain.feature_ablation: feature_mask ids must be >= 1", 1, true))
      assert.truthy(err(kdx.explain.feature_ablation, additive, x, {feature_mask = {1, 2}})
        :find("kdx.explain.feature_ablation", 1, true))
      assert.truthy(err(kdx.explain.shapley_sampling, additive, x, {n_samples = 0})
        :find("kdx.explain.shapley_sampling: n_samples must be >= 1", 1, true))
      assert.truthy(err(kdx.explain.shapley_interactions, mlp, x, {samples = 2})
        :find("kdx.explain.shapley_interactions: the model returns", 1, true))
      assert.truthy(err(kdx.explain.feature_ablation, function() error("boom") end, x, {})
        :find("boom", 1, true))
      assert.truthy(err(kdx.explain.occlusion, additive, "x", {window = 1}):find("kdx.explain.occlusion: x must be", 1, true))
    end)

    it("leave no tensors behind", function()
      collectgarbage(); collectgarbage()
      local before = kdx.debug.live_tensors()
      for _ = 1, 2 do
        kdx.explain.occlusion(additive, x, {window = {2}})
        kdx.explain.shapley_interactions(additive, x, {samples = 2, seed = 1})
        pcall(kdx.explain.shapley_sampling, function() error("x") end, x, {seed = 1})
        pcall(kdx.explain.feature_ablation, additive, x, {feature_mask = {0, 1, 1, 1}})
      end
      collectgarbage(); collectgarbage()
      assert.are.equal(before, kdx.debug.live_tensors())
    end)
  end)
end)
