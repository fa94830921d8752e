-- kdx.explain.kernel_shap: the Shapley axioms (efficiency, symmetry, dummy),
-- agreement with brute-force Shapley values (in Lua here, and in numpy from
-- gen_explain_shap.py), the sampled estimate against the exact one,
-- batching, seeds, targets, feature groups, errors; and the float64
-- regression it shares with LIME, against sklearn and numpy.
local kdx = require "kdx"
local core = require "kdx.core"
local helpers = require "helpers.close"
local close, T = helpers.assert_close, helpers.from_fixture

local g = dofile("spec/fixtures/explain_shap_golden.lua")

-- Row i of a [N, M] tensor as a Lua list.
local function row(t, i) return t:select(1, i):totable() end

-- Exact Shapley values of a set function v over n players (bit masks), by
-- the permutation-weight formula.
local function brute_shapley(v, n)
  local fact = {[0] = 1}
  for k = 1, n do fact[k] = fact[k - 1] * k end
  local phi = {}
  for i = 0, n - 1 do
    local s = 0
    for S = 0, (1 << n) - 1 do
      if S & (1 << i) == 0 then
        local k = 0
        for j = 0, n - 1 do if S & (1 << j) ~= 0 then k = k + 1 end end
        s = s + fact[k] * fact[n - k - 1] / fact[n] * (v(S | (1 << i)) - v(S))
      end
    end
    phi[i + 1] = s
  end
  return phi
end

-- The model's value at x with the features of `groups` (element -> group,
-- 0-based) in S present and the baseline elsewhere.
local function coalition_value(f, x, base, groups)
  return function(S)
    local z = {}
    for e = 1, #x do z[e] = (S & (1 << groups[e]) ~= 0) and x[e] or base[e] end
    return f(kdx.tensor({z}, "float64")):get(1)
  end
end

local function nonlinear(b)
  local c = function(j) return b:select(2, j) end
  return c(1) * c(2) + kdx.maximum(c(3), c(4)) * c(5) + c(5):tanh() * c(1) + c(6) ^ 2
end

describe("kdx.explain.kernel_shap", function()
  kdx.manual_seed(3)
  local x6 = kdx.randn({3, 6}, "float64")

  describe("exact mode (all 2^M - 2 coalitions)", function()
    it("equals brute-force Shapley values with the baseline, computed in Lua", function()
      local base = kdx.randn({3, 6}, "float64")
      local attr, info = kdx.explain.kernel_shap(nonlinear, x6, {baseline = base})
      for i = 1, 3 do
        local ids = {0, 1, 2, 3, 4, 5}
        local want = brute_shapley(coalition_value(nonlinear, row(x6, i), row(base, i), ids), 6)
        close(attr:select(1, i), kdx.tensor(want, "float64"), 1e-10)
      end
      close(info.base_value, nonlinear(base), 1e-12)
      close(info.fx, nonlinear(x6), 1e-12)
    end)

    it("equals numpy's brute-force Shapley values of a 7-feature tanh network", function()
      local s = g.shapley
      local W1, b1, w2 = T(s.W1), T(s.b1), T(s.w2)
      local net = function(b) return kdx.matmul((kdx.matmul(b, W1) + b1):tanh(), w2) end
      local attr, info = kdx.explain.kernel_shap(net, T(s.x), {baseline = s.baseline})
      close(attr, T(s.phi), 1e-10)
      for i = 1, 2 do assert.is_true(math.abs(info.gap:get(i)) < 1e-12) end
    end)

    it("values feature groups as players (feature_mask), each element its group's value", function()
      local x8 = kdx.randn({2, 8}, "float64")
      local f = function(b) return (b:narrow(2, 1, 4):sum(2)):tanh() * b:narrow(2, 5, 4):sum(2) + b:select(2, 8) end
      local mask = {1, 1, 2, 3, 3, 4, 4, 2}
      local attr = kdx.explain.kernel_shap(f, x8, {feature_mask = mask, baseline = 0.5})
      local ids = {}
      for e, m in ipairs(mask) do ids[e] = m - 1 end
      for i = 1, 2 do
        local base = {}
        for e = 1, 8 do base[e] = 0.5 end
        local want = brute_shapley(coalition_value(f, row(x8, i), base, ids), 4)
        for e = 1, 8 do assert.is_true(math.abs(attr:get(i, e) - want[mask[e]]) < 1e-10) end
      end
    end)

    it("gives interchangeable features equal values (symmetry)", function()
      local x = kdx.tensor({{0.7, 0.7, -1.2, 2.0}, {-0.3, -0.3, 0.4, 1.5}}, "float64")
      local f = function(b)
        local c = function(j) return b:select(2, j) end
        return (c(1) + c(2)) ^ 2 * c(3) + (c(1) * c(2)):exp() + c(4)
      end
      local attr = kdx.explain.kernel_shap(f, x, {baseline = 0.1})
      for i = 1, 2 do
        assert.is_true(math.abs(attr:get(i, 1) - attr:get(i, 2)) < 1e-10)
        assert.is_true(math.abs(attr:get(i, 1)) > 1e-3)
      end
    end)

    it("gives 0 to a feature the model ignores (dummy)", function()
      local f = function(b) return nonlinear(b:narrow(2, 1, 6)) end -- column 7 is ignored
      local x = kdx.randn({2, 7}, "float64")
      local attr = kdx.explain.kernel_shap(f, x, {baseline = -0.5})
      for i = 1, 2 do assert.is_true(math.abs(attr:get(i, 7)) < 1e-10) end
      -- and the others are those of the 6-feature model
      close(attr:narrow(2, 1, 6), kdx.explain.kernel_shap(nonlinear, x:narrow(2, 1, 6), {baseline = -0.5}), 1e-10)
    end)

    it("is w * (x - baseline) on a linear model", function()
      local w = kdx.tensor({1, -2, 3, 0.5, 0.25, -1}, "float64")
      local attr = kdx.explain.kernel_shap(function(b) return kdx.matmul(b, w) + 3 end, x6, {baseline = 1})
      close(attr, (x6 - 1) * w, 1e-12)
    end)
  end)

  describe("sampling mode (shap's coalition scheme)", function()
    kdx.manual_seed(5)
    local M = 14
    local x = kdx.randn({2, M}, "float64")
    local v = kdx.randn({M}, "float64")
    -- additive terms plus pairwise interactions of neighbours
    local f = function(b)
      local out = kdx.matmul(b, v)
      for j = 1, M - 1 do out = out + 0.5 * b:select(2, j) * b:select(2, j + 1) end
      return out + b:select(2, 1):sin()
    end

    it("is efficient: the values sum to f(x) - f(baseline) exactly", function()
      local attr, info = kdx.explain.kernel_shap(f, x, {samples = 300, seed = 1, baseline = 0.2})
      local fx, f0 = f(x), f(kdx.full({2, M}, 0.2, "float64"))
      close(attr:sum(2), fx - f0, 1e-10)
      for i = 1, 2 do assert.is_true(math.abs(info.gap:get(i)) < 1e-10) end
      close(info.base_value, f0, 1e-12)
    end)

    it("comes close to the exact values with the automatic budget", function()
      local exact = kdx.explain.kernel_shap(f, x, {samples = 2 ^ M - 2})
      local sampled = kdx.explain.kernel_shap(f, x, {seed = 2}) -- 2M + 2048 coalitions
      local scale = exact:abs():max():item()
      local err = (sampled - exact):abs():max():item()
      assert.is_true(err < 0.05 * scale, ("max error %g of scale %g"):format(err, scale))
      assert.is_true(err > 0) -- it did sample
    end)

    it("is w * (x - baseline) on a linear model whatever the coalitions", function()
      local w = kdx.randn({20}, "float64")
      local x20 = kdx.randn({2, 20}, "float64")
      local attr = kdx.explain.kernel_shap(function(b) return kdx.matmul(b, w) end, x20,
        {samples = 100, seed = 4, paired = false})
      close(attr, x20 * w, 1e-10)
    end)

    it("is deterministic for a seed, and the seed matters", function()
      local a = kdx.explain.kernel_shap(f, x, {samples = 200, seed = 11})
      local b = kdx.explain.kernel_shap(f, x, {samples = 200, seed = 11})
      local c = kdx.explain.kernel_shap(f, x, {samples = 200, seed = 12})
      close(a, b, 0)
      assert.is_true((a - c):abs():max():item() > 1e-6)
    end)

    it("gives the same values in any batch size", function()
      local a = kdx.explain.kernel_shap(f, x, {samples = 200, seed = 3, batch_size = 1})
      local b = kdx.explain.kernel_shap(f, x, {samples = 200, seed = 3, batch_size = 1000})
      close(a, b, 1e-12)
    end)

    it("gives 0 to features equal to the baseline, without varying them", function()
      local xz = x:clone()
      xz:select(2, 3):fill_(0)
      local attr = kdx.explain.kernel_shap(f, xz, {samples = 300, seed = 1})
      for i = 1, 2 do assert.are.equal(0, attr:get(i, 3)) end
    end)
  end)

  describe("targets and dtypes", function()
    it("explains the target class of each sample", function()
      kdx.manual_seed(0)
      local model = kdx.nn.Sequential{kdx.nn.Linear(6, 5), kdx.nn.Tanh(), kdx.nn.Linear(5, 3)}:double()
      local a = kdx.explain.kernel_shap(model, x6, {target = {1, 3, 2}})
      for i, t in ipairs{1, 3, 2} do
        local one = kdx.explain.kernel_shap(function(b) return model(b):select(2, t) end, x6:narrow(1, i, 1))
        close(a:narrow(1, i, 1), one, 1e-12)
      end
    end)

    it("works on float32 inputs and returns float32", function()
      local a = kdx.explain.kernel_shap(nonlinear, x6:float())
      assert.are.equal("float32", a:dtype())
      close(a:double(), kdx.explain.kernel_shap(nonlinear, x6:float():double()), 1e-5)
    end)
  end)

  describe("errors", function()
    local function fails(opts, pattern, model, x)
      local ok, err = pcall(kdx.explain.kernel_shap, model or nonlinear, x or x6, opts)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("kdx.explain.kernel_shap", 1, true), tostring(err))
      assert.truthy(tostring(err):find(pattern, 1, true), tostring(err))
    end

    it("name the method and the option", function()
      fails({samples = -1}, "samples")
      fails({samples = 1}, "samples")
      fails({samples = 2.5}, "samples")
      fails({paired = "yes"}, "paired")
      fails({baseline = "zero"}, "baseline")
      fails({batch_size = 0}, "batch_size")
      fails({feature_mask = {1, 2}}, "feature_mask")
      fails({feature_mask = {0, 1, 1, 1, 1, 1}}, "feature_mask")
      fails({}, "model", 42)
      fails({}, "x", nil, "x")
      fails({}, "the model raised an error", function() error("boom") end)
    end)

    it("leave no tensors behind", function()
      collectgarbage(); collectgarbage()
      local before = kdx.debug.live_tensors()
      for _ = 1, 2 do
        kdx.explain.kernel_shap(nonlinear, x6, {samples = 50, seed = 1})
        pcall(kdx.explain.kernel_shap, function() error("x") end, x6, {})
      end
      collectgarbage(); collectgarbage()
      assert.are.equal(before, kdx.debug.live_tensors())
    end)
  end)
end)

describe("the surrogate regression (core._linreg)", function()
  local L = g.linreg
  local X, y, w = T(L.X), T(L.y), T(L.w)

  it("is sklearn's weighted Ridge with intercept, and its score", function()
    for _, case in ipairs{{1, L.ridge1}, {0.01, L.ridge001}} do
      local coef, b0, r2 = core._linreg(X, y, w, case[1], true, nil, nil)
      close(coef, T(case[2].coef), 1e-10)
      assert.is_true(math.abs(b0 - case[2].intercept) < 1e-10)
      assert.is_true(math.abs(r2 - case[2].score) < 1e-10)
    end
  end)

  it("imposes sum(beta) = c as shap's elimination does", function()
    local ones = kdx.ones({6}, "float64")
    local coef = core._linreg(X, y, w, 0, false, ones, L.shap.c)
    close(coef, T(L.shap.coef), 1e-10)
    assert.is_true(math.abs(coef:sum():item() - L.shap.c) < 1e-14)
  end)

  it("solves a general constrained ridge problem (numpy's KKT solution)", function()
    local coef = core._linreg(X, y, w, L.kkt.alpha, false, T(L.kkt.a), L.kkt.c)
    close(coef, T(L.kkt.coef), 1e-10)
  end)

  it("reports a singular problem instead of returning garbage", function()
    local Xs = kdx.cat({X:narrow(2, 1, 2), X:narrow(2, 1, 1)}, 2) -- a repeated column
    local ok, err = pcall(core._linreg, Xs, y, w, 0, true, nil, nil)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("singular", 1, true))
  end)
end)
