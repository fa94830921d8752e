-- kdx.explain global methods: partial dependence and ICE against sklearn
-- (method="brute") on a fixed MLP, permutation importance on models that
-- ignore or use one feature and through a metric that sees every shuffle,
-- Friedman's H^2 against a numpy reference, global importance, feature
-- selection, and errors. Fixture: spec/fixtures/gen_explain_perturb.py.
local kdx = require "kdx"
local helpers = require "helpers.close"
local close, T = helpers.assert_close, helpers.from_fixture
local golden = require "helpers.golden"

local g = golden.fixture("explain_perturb_golden.lua")
local W1, b1, W2, b2 = T(g.mlp.W1), T(g.mlp.b1), T(g.mlp.W2), T(g.mlp.b2)
local function mlp(b)
  return kdx.softmax(kdx.matmul(kdx.matmul(b, W1):add(b1):tanh(), W2):add(b2), 2)
end
local X = T(g.mlp.X)

local function col(b, j) return b:select(2, j) end

local function err(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok)
  return e
end

describe("kdx.explain global methods", function()
  describe("partial_dependence", function()
    it("evaluates on a given grid (as sklearn's custom_values), and its own grid when given X's", function()
      local r = kdx.explain.partial_dependence(mlp, X, {features = {2, 4}, grid = {{-1, 0.5}, kdx.tensor{2, 3, 4}},
        target = 1, kind = "both"})
      close(r.grid[1], kdx.tensor({-1, 0.5}, "float64"), 0)
      assert.are.same({30, 2, 3}, r.individual:shape())
      for _, p in ipairs{{1, 1}, {2, 3}} do -- a grid point's curve is the model with both columns set
        local Xs = X:clone()
        Xs:select(2, 2):fill_(r.grid[1]:get(p[1])); Xs:select(2, 4):fill_(r.grid[2]:get(p[2]))
        close(r.individual:select(3, p[2]):select(2, p[1]), mlp(Xs):select(2, 1):double(), 1e-12)
      end
      local auto = kdx.explain.partial_dependence(mlp, X, {features = {1}, grid_resolution = 7, target = 1})
      local given = kdx.explain.partial_dependence(mlp, X, {features = {1}, grid = {auto.grid[1]}, target = 1})
      close(given.average, auto.average, 0)
      local half = kdx.explain.partial_dependence(mlp, X, {features = {1, 2}, grid = {[2] = {0}}, grid_resolution = 7,
        target = 1})
      close(half.grid[1], auto.grid[1], 0) -- an absent entry is built from X
      assert.truthy(err(kdx.explain.partial_dependence, mlp, X, {features = 1, target = 1, grid = {{{1, 2}}}})
        :find("kdx.explain.partial_dependence: grid[1] must be 1-d", 1, true))
      assert.truthy(err(kdx.explain.partial_dependence, mlp, X, {features = 1, target = 1, grid = {{1 / 0}}})
        :find("kdx.explain.partial_dependence: grid[1] holds a non-finite value", 1, true))
      assert.truthy(err(kdx.explain.partial_dependence, mlp, X, {features = 1, target = 1, grid = "all"})
        :find("kdx.explain.partial_dependence: grid must be a table", 1, true))
    end)

    it("agrees with sklearn's brute partial dependence: grids, averages and ICE curves", function()
      for _, c in ipairs(g.pd) do
        local r = kdx.explain.partial_dependence(mlp, X, {features = c.features, grid_resolution = c.grid_resolution,
          kind = "both", target = g.mlp.target, batch_size = 50})
        for t = 1, #c.features do close(r.grid[t], T(c.grid[t]), 1e-12) end
        close(r.average, T(c.average), 1e-10)
        close(r.individual, T(c.individual), 1e-10)
      end
    end)

    it("returns only what kind asks for", function()
      local a = kdx.explain.partial_dependence(mlp, X, {features = 1, target = 1})
      assert.is_nil(a.individual)
      assert.are.same({30}, a.average:shape()) -- 30 unique values < 100: the grid is the values
      local i = kdx.explain.partial_dependence(mlp, X, {features = {3}, kind = "individual", target = 1})
      assert.is_nil(i.average)
      assert.are.same({30, 4}, i.individual:shape())
      close(i.grid[1], kdx.tensor({0, 1, 2, 3}, "float64"), 0)
    end)

    it("of an additive model is the feature's own function plus a constant", function()
      local f = function(b) return col(b, 1) * 3 + (col(b, 2) * col(b, 2)) end
      local r = kdx.explain.partial_dependence(f, X, {features = {1}, grid_resolution = 5, kind = "both"})
      local grid, avg = r.grid[1], r.average
      for k = 2, 5 do
        assert.is_true(math.abs((avg:get(k) - avg:get(1)) - 3 * (grid:get(k) - grid:get(1))) < 1e-12)
      end
    end)

    it("name the method in errors", function()
      assert.truthy(err(kdx.explain.partial_dependence, mlp, X, {features = {5}, target = 1})
        :find("kdx.explain.partial_dependence: features[1] 5 out of range [1, 4]", 1, true))
      assert.truthy(err(kdx.explain.partial_dependence, mlp, X, {features = {1}, kind = "all", target = 1})
        :find("kdx.explain.partial_dependence: kind must be", 1, true))
      assert.truthy(err(kdx.explain.partial_dependence, mlp, X, {features = {1, 2, 3}, target = 1})
        :find("kdx.explain.partial_dependence: features must be", 1, true))
      assert.truthy(err(kdx.explain.partial_dependence, mlp, X, {features = 1, target = 1, percentiles = {0.9, 0.1}})
        :find("kdx.explain.partial_dependence: percentiles must", 1, true))
      assert.truthy(err(kdx.explain.partial_dependence, mlp, X:reshape{120}, {features = 1, target = 1})
        :find("kdx.explain.partial_dependence: X must be a table", 1, true))
    end)
  end)

  describe("permutation_importance", function()
    local y = mlp(X):argmax(2) -- labels the model gets all right: baseline accuracy 1

    it("is exactly 0 for a feature the model ignores and for every feature but the one it uses", function()
      local only2 = function(b)
        local v = col(b, 2)
        return kdx.stack({v, -v}, 2)
      end
      local labels = only2(X):argmax(2)
      local mean, std, imp, base = kdx.explain.permutation_importance(only2, X, {y = labels, seed = 4})
      assert.are.equal(1, base)
      assert.are.same({4, 5}, imp:shape())
      for _, j in ipairs{1, 3, 4} do
        assert.are.equal(0, mean:get(j)); assert.are.equal(0, std:get(j))
      end
      assert.is_true(mean:get(2) > 0.2)
    end)

    it("subtracts each shuffled score from the baseline score, shuffling one column each time", function()
      local seen, base = {}, nil
      local identity = function(b) return b end
      local metric = function(out, labels)
        assert.are.equal("y", labels)
        -- the score: a weighted sum that changes when a column is shuffled
        local s = (out:select(2, 1) * X:select(2, 2)):sum():item() + (out:select(2, 3) * X:select(2, 4)):sum():item()
          + (out:select(2, 2) * X:select(2, 1)):sum():item() + (out:select(2, 4) * X:select(2, 3)):sum():item()
        local changed = 0
        for j = 1, 4 do
          local a, b = out:select(2, j), X:select(2, j)
          if (a - b):abs():max():item() > 0 then
            changed = changed + 1
            -- a permutation of the column: same sorted values
            local sa, sb = a:totable(), b:totable()
            table.sort(sa); table.sort(sb)
            assert.are.same(sb, sa)
          end
        end
        assert.is_true(changed <= 1)
        if base == nil then base = s else seen[#seen + 1] = s end
        return s
      end
      local mean, std, imp, b0 = kdx.explain.permutation_importance(identity, X, {y = "y", metric = metric,
        features = {2, 4}, repeats = 3, seed = 1, batch_size = 7})
      assert.are.equal(base, b0)
      assert.are.same({2, 3}, imp:shape())
      assert.are.equal(6, #seen)
      for f = 1, 2 do
        local m, sq = 0, 0
        for k = 1, 3 do
          assert.is_true(math.abs(imp:get(f, k) - (base - seen[(f - 1) * 3 + k])) < 1e-9)
          m = m + imp:get(f, k) / 3
        end
        for k = 1, 3 do sq = sq + (imp:get(f, k) - m) ^ 2 / 3 end
        assert.is_true(math.abs(mean:get(f) - m) < 1e-9)
        assert.is_true(math.abs(std:get(f) - math.sqrt(sq)) < 1e-9)
      end
    end)

    it("scores neg_log_loss of logits and neg_mean_squared_error", function()
      local logits = function(b) return kdx.matmul(kdx.matmul(b, W1):add(b1):tanh(), W2):add(b2) end
      local _, _, _, base = kdx.explain.permutation_importance(logits, X, {y = y, metric = "neg_log_loss", seed = 1})
      local lsm = kdx.log_softmax(logits(X), 2)
      local want = 0
      for i = 1, 30 do want = want + lsm:get(i, y:get(i)) / 30 end
      assert.is_true(math.abs(base - want) < 1e-12)
      local f = function(b) return col(b, 1) * 2 end
      local target = col(X, 1) * 2 + 0.5
      local mean, _, _, b2s = kdx.explain.permutation_importance(f, X, {y = target, metric = "neg_mean_squared_error",
        seed = 1})
      assert.is_true(math.abs(b2s + 0.25) < 1e-12)
      assert.is_true(mean:get(1) > 0)
      assert.are.equal(0, mean:get(2))
    end)

    it("shuffles each feature from its own stream: a feature's row does not depend on the others", function()
      local _, _, all = kdx.explain.permutation_importance(mlp, X, {y = y, seed = 6, repeats = 4})
      local _, _, some = kdx.explain.permutation_importance(mlp, X, {y = y, seed = 6, repeats = 4, features = {3, 1}})
      close(some:select(1, 1), all:select(1, 3), 0)
      close(some:select(1, 2), all:select(1, 1), 0)
      local _, _, other = kdx.explain.permutation_importance(mlp, X, {y = y, seed = 7, repeats = 4})
      assert.is_true((other - all):abs():max():item() > 0) -- another seed, other shuffles
    end)

    it("is deterministic for a seed", function()
      local _, _, a = kdx.explain.permutation_importance(mlp, X, {y = y, seed = 3})
      local _, _, b = kdx.explain.permutation_importance(mlp, X, {y = y, seed = 3, batch_size = 4})
      close(a, b, 0)
    end)

    it("name the method in errors", function()
      assert.truthy(err(kdx.explain.permutation_importance, mlp, X, {y = y, metric = "f1"})
        :find("kdx.explain.permutation_importance: metric must be", 1, true))
      assert.truthy(err(kdx.explain.permutation_importance, mlp, X, {})
        :find("kdx.explain.permutation_importance: give the labels", 1, true))
      assert.truthy(err(kdx.explain.permutation_importance, mlp, X, {y = y, features = {0}})
        :find("kdx.explain.permutation_importance: features[1] 0 out of range", 1, true))
      assert.truthy(err(kdx.explain.permutation_importance, mlp, X, {y = y, target = 2})
        :find("kdx.explain.permutation_importance: the metric scores the whole output", 1, true))
      assert.truthy(err(kdx.explain.permutation_importance, mlp, X, {y = y, repeats = 0})
        :find("kdx.explain.permutation_importance: repeats must be >= 1", 1, true))
      assert.truthy(err(kdx.explain.permutation_importance, mlp, X, {y = y, metric = function() return "x" end})
        :find("not a number", 1, true))
      assert.truthy(err(kdx.explain.permutation_importance, mlp, X, {y = kdx.tensor({1, 2}, "int64")})
        :find("kdx.explain.permutation_importance: 2 labels", 1, true))
    end)
  end)

  describe("h_statistic", function()
    it("agrees with a numpy reference on an MLP", function()
      local h2, pairs = kdx.explain.h_statistic(mlp, X, {pairs = g.h.pairs, target = g.mlp.target, batch_size = 64})
      close(h2, T(g.h.h2), 1e-10)
      assert.are.same(g.h.pairs, pairs)
    end)

    it("is 0 for an additive model and positive for x1 * x2", function()
      local add = function(b) return col(b, 1) * 2 + col(b, 2):tanh() + col(b, 3) * col(b, 3) end
      local h2, pairs = kdx.explain.h_statistic(add, X, {})
      assert.are.equal(6, #pairs)
      for q = 1, 6 do assert.is_true(h2:get(q) < 1e-20) end
      local prod = function(b) return col(b, 1) * col(b, 2) end
      local hp = kdx.explain.h_statistic(prod, X, {pairs = {{1, 2}, {1, 3}}})
      assert.is_true(hp:get(1) > 0.5)
      assert.is_true(hp:get(2) < 1e-20)
    end)

    it("caps the rows at opts.samples, a subset drawn from the seed", function()
      local prod = function(b) return col(b, 1) * col(b, 2) + col(b, 3) end
      local a = kdx.explain.h_statistic(prod, X, {samples = 10, seed = 2})
      close(a, kdx.explain.h_statistic(prod, X, {samples = 10, seed = 2}), 0)
      local calls = 0
      kdx.explain.h_statistic(function(b) calls = calls + b:shape()[1]; return prod(b) end, X,
        {samples = 10, seed = 2, pairs = {{1, 2}}, batch_size = 1000})
      assert.are.equal(3 * 10 * 10, calls)
    end)

    it("name the method in errors", function()
      assert.truthy(err(kdx.explain.h_statistic, mlp, X, {pairs = {{1, 1}}, target = 1})
        :find("kdx.explain.h_statistic: pairs[1] names feature 1 twice", 1, true))
      assert.truthy(err(kdx.explain.h_statistic, mlp, X, {pairs = {{1, 7}}, target = 1})
        :find("kdx.explain.h_statistic: pairs[1][2] 7 out of range", 1, true))
      assert.truthy(err(kdx.explain.h_statistic, mlp, X, {samples = 1, target = 1})
        :find("kdx.explain.h_statistic: samples must be >= 2", 1, true))
    end)
  end)

  describe("global_importance", function()
    it("is the mean |attribution| per feature over the dataset", function()
      local w = kdx.tensor({1, -2, 0, 3}, "float64")
      local lin = function(b) return kdx.matmul(b, w) end
      local gi = kdx.explain.global_importance("feature_ablation", lin, X, {})
      close(gi, (X * w):abs():mean(1), 1e-12)
      local gf = kdx.explain.global_importance(function(_, b) return b * 2 end, lin, X)
      close(gf, (X * 2):abs():mean(1), 1e-12)
    end)

    it("names an unknown method", function()
      assert.truthy(err(kdx.explain.global_importance, "nope", mlp, X, {})
        :find('kdx.explain.global_importance: unknown method "nope"', 1, true))
      assert.truthy(err(kdx.explain.global_importance, 3, mlp, X, {})
        :find("kdx.explain.global_importance: method must be", 1, true))
    end)
  end)

  describe("select_features", function()
    it("keeps the top k, most important first, ties by index", function()
      local idx, mask = kdx.explain.select_features(kdx.tensor({0.5, 2, 0.5, 3, 2}, "float64"), 3)
      assert.are.same({4, 2, 5}, idx)
      assert.are.same({0, 1, 0, 1, 1}, mask:totable())
      assert.are.equal("int64", mask:dtype())
      idx = kdx.explain.select_features({1, 1, 1, 0 / 0, 2}, 4)
      assert.are.same({5, 1, 2, 3}, idx)
      idx, mask = kdx.explain.select_features({1, 2}, 0)
      assert.are.same({}, idx)
      assert.are.same({0, 0}, mask:totable())
    end)

    it("names the method in errors", function()
      assert.truthy(err(kdx.explain.select_features, {1, 2}, 3)
        :find("kdx.explain.select_features: k = 3 but there are only 2 features", 1, true))
      assert.truthy(err(kdx.explain.select_features, "x", 1)
        :find("kdx.explain.select_features: importances must be", 1, true))
      assert.truthy(err(kdx.explain.select_features, {1, 2}, -1)
        :find("kdx.explain.select_features: k must be >= 0", 1, true))
    end)
  end)

  it("leaves no tensors behind", function()
    local y = mlp(X):argmax(2)
    collectgarbage(); collectgarbage()
    local before = kdx.debug.live_tensors()
    for _ = 1, 2 do
      kdx.explain.permutation_importance(mlp, X, {y = y, seed = 1, repeats = 2})
      kdx.explain.partial_dependence(mlp, X, {features = {1, 2}, grid_resolution = 3, target = 1, kind = "both"})
      kdx.explain.h_statistic(mlp, X, {target = 1, samples = 5, seed = 1})
      pcall(kdx.explain.permutation_importance, mlp, X, {y = y, metric = function() error("bad") end})
      pcall(kdx.explain.partial_dependence, function() error("bad") end, X, {features = 1})
    end
    collectgarbage(); collectgarbage()
    assert.are.equal(before, kdx.debug.live_tensors())
  end)
end)
