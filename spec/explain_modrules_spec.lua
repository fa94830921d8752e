-- kdx.explain, modified backward rules: DeepLift (rescale), guided backprop,
-- deconvolution. Agreement with PyTorch reimplementations (explicit
-- per-operation rules, spec/fixtures/gen_explain_modrules.py) in float64,
-- summation-to-delta, the rules applied per operation (functional calls
-- too), the rule switched off after every call (errors included), batching
-- and argument errors.
local kdx = require "kdx"
local nn = kdx.nn
local F = nn.functional
local helpers = require "helpers.close"
local close, T = helpers.assert_close, helpers.from_fixture
local G = require "fixtures.explain_modrules_golden"

local function weights(name)
  local w = {}
  for k, v in pairs(G[name].weights) do w[k] = T(v) end
  return w
end

local function load(model, name)
  model:double()
  model:load_state_dict(weights(name))
  model:eval()
  return model
end

local models = {
  relu_mlp = function()
    return load(nn.Sequential{nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)}, "relu_mlp")
  end,
  smooth_mlp = function()
    return load(nn.Sequential{nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, 3)}, "smooth_mlp")
  end,
  cnn = function()
    return load(nn.Sequential{nn.Conv2d(1, 3, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3),
                              nn.Tanh(), nn.Flatten(), nn.Linear(16, 3)}, "cnn")
  end,
  -- a plain Lua function of functional calls, SiLU written as a product
  mixed = function()
    local w = weights("mixed")
    local function lin(h, k) return F.linear(h, w[k .. ".weight"], w[k .. ".bias"]) end
    return function(x)
      local h = F.leaky_relu(lin(x, 0), 0.1)
      h = F.elu(lin(h, 1))
      h = F.gelu(lin(h, 2))
      h = F.softplus(lin(h, 3))
      h = F.silu(h)
      return lin(h, 4)
    end
  end,
}

-- relu_mlp written with kdx.relu in a plain function: no layer to hook
local function functional_relu_mlp()
  local w = weights("relu_mlp")
  return function(x)
    local h = kdx.relu(F.linear(x, w["0.weight"], w["0.bias"]))
    h = kdx.relu(F.linear(h, w["2.weight"], w["2.bias"]))
    return F.linear(h, w["4.weight"], w["4.bias"])
  end
end

local function case(name)
  local c = G[name]
  return T(c.x), T(c.target), T(c.baseline)
end

-- f_target(v) per sample
local function picked(model, v, target)
  return kdx.no_grad(function() return model(v):gather(2, target:reshape{-1, 1}):reshape{-1} end)
end

local function plain_gradient(model, x, target)
  local leaf = x:clone():requires_grad(true)
  local out = model(leaf):gather(2, target:reshape{-1, 1}):sum()
  return kdx.grad({out}, {leaf})[1]
end

describe("kdx.explain", function()
  describe("deeplift", function()
    for _, name in ipairs{"relu_mlp", "smooth_mlp", "cnn", "mixed"} do
      it("matches the PyTorch per-operation rescale rules on " .. name, function()
        local x, target, base = case(name)
        local attr, delta = kdx.explain.deeplift(models[name](), x, {target = target, baseline = base})
        close(attr, T(G[name].deeplift), 1e-10)
        assert.are.same({x:shape()[1]}, delta:shape())
      end)

      it("sums to the change of the output on " .. name .. " (summation-to-delta)", function()
        local x, target, base = case(name)
        local model = models[name]()
        local attr, delta = kdx.explain.deeplift(model, x, {target = target, baseline = base})
        local n = x:shape()[1]
        local change = picked(model, x, target) - picked(model, base:expand(x:shape()), target)
        close(attr:reshape{n, -1}:sum(2), change, 1e-10)
        close(delta, kdx.zeros({n}, "float64"), 1e-10)
      end)
    end

    it("applies the rules per operation: kdx.relu in a plain function is covered", function()
      local x, target, base = case("relu_mlp")
      local attr, delta = kdx.explain.deeplift(functional_relu_mlp(), x, {target = target, baseline = base})
      close(attr, T(G.relu_mlp.deeplift), 1e-10)
      close(delta, kdx.zeros({4}, "float64"), 1e-10)
      -- and the rule changes the answer: plain gradient x (x - b) is not it
      local gxi = plain_gradient(functional_relu_mlp(), x, target) * (x - base)
      assert.is_true((gxi - attr):abs():max():item() > 1e-3)
    end)

    it("is exact for products, quotients, powers and maxima of input-dependent tensors", function()
      kdx.manual_seed(5)
      local x, base = kdx.randn({5, 3}, "float64"), kdx.randn({3}, "float64")
      local f = function(b)
        local p = b:exp() / (b * b + 1)                    -- a quotient of two input-dependent tensors
        local q = kdx.maximum(b:sin(), b:cos()) * b:tanh()  -- a maximum, then a product
        return (p + q + b:abs() ^ 1.5 + kdx.maximum(b, 0.2)):sum(2)
      end
      local attr, delta = kdx.explain.deeplift(f, x, {baseline = base})
      local change = kdx.no_grad(function() return f(x) - f(base:expand{5, 3}) end)
      close(attr:sum(2), change, 1e-10)
      close(delta, kdx.zeros({5}, "float64"), 1e-10)
      -- the gradient times the change does not add up on this model
      local gxi = plain_gradient(function(b) return f(b):reshape{-1, 1} end, x, kdx.tensor({1, 1, 1, 1, 1}, "int64"))
      assert.is_true((gxi * (x - base)):sum(2):sub(change):abs():max():item() > 1e-3)
    end)

    it("takes one class for all samples", function()
      local x, _, base = case("relu_mlp")
      local model = models.relu_mlp()
      local a = kdx.explain.deeplift(model, x, {target = 2, baseline = base})
      local b = kdx.explain.deeplift(model, x, {target = {2, 2, 2, 2}, baseline = base})
      close(a, b, 1e-14)
    end)

    it("is w * (x - baseline) on a linear model", function()
      kdx.manual_seed(3)
      local x = kdx.randn({6, 4}, "float64")
      local w = kdx.tensor({1, -2, 3, 0.5}, "float64")
      local attr, delta = kdx.explain.deeplift(function(b) return kdx.matmul(b, w) + 2 end, x, {baseline = 0.5})
      close(attr, (x - 0.5) * w, 1e-12)
      close(delta, kdx.zeros({6}, "float64"), 1e-12)
    end)

    it("takes a number, a row or a full tensor as the baseline, zeros by default", function()
      local x, target = case("smooth_mlp")
      local model = models.smooth_mlp()
      local a0 = kdx.explain.deeplift(model, x, {target = target})
      close(a0, T(G.smooth_mlp.deeplift), 1e-10) -- the fixture's baseline is 0
      local a1 = kdx.explain.deeplift(model, x, {target = target, baseline = 0.25})
      local a2 = kdx.explain.deeplift(model, x, {target = target, baseline = kdx.full({5}, 0.25, "float64")})
      local a3 = kdx.explain.deeplift(model, x, {target = target, baseline = kdx.full({4, 5}, 0.25, "float64")})
      close(a1, a2, 1e-14)
      close(a1, a3, 1e-14)
      assert.is_true((a1 - a0):abs():max():item() > 1e-4)
    end)

    it("works in float32 with a float64 baseline, to float32 precision", function()
      local x, target, base = case("smooth_mlp")
      local model = models.smooth_mlp():float()
      local attr, delta = kdx.explain.deeplift(model, x:float(), {target = target, baseline = base})
      assert.are.equal("float32", attr:dtype())
      close(attr:double(), T(G.smooth_mlp.deeplift), 1e-5)
      assert.is_true(delta:abs():max():item() < 1e-5)
    end)

    it("gives the same result in any batch size", function()
      local x, target, base = case("cnn")
      local model = models.cnn()
      local a, da = kdx.explain.deeplift(model, x, {target = target, baseline = base, batch_size = 2})
      local b, db = kdx.explain.deeplift(model, x, {target = target, baseline = base, batch_size = 1000})
      close(a, b, 1e-12)
      close(da, db, 1e-12)
    end)

    it("calls the model with at most batch_size rows, half of them baselines", function()
      local x, target, base = case("relu_mlp")
      local model, seen = models.relu_mlp(), {}
      kdx.explain.deeplift(function(b)
        seen[#seen + 1] = b:shape()[1]
        return model(b)
      end, x, {target = target, baseline = base, batch_size = 5})
      assert.are.same({4, 4}, seen)
    end)

    it("reports the gap honestly for an op it keeps the gradient of (softmax)", function()
      local x, target, base = case("smooth_mlp")
      local inner = models.smooth_mlp()
      local model = function(b) return kdx.softmax(inner(b), 2) end
      local attr, delta = kdx.explain.deeplift(model, x, {target = target, baseline = base})
      local change = picked(model, x, target) - picked(model, base:expand(x:shape()), target)
      close(attr:sum(2) - delta, change, 1e-12)
      assert.is_true(delta:abs():max():item() > 1e-6)
    end)

    it("refuses a nonlinear op that mixes the rows of the batch", function()
      local x = kdx.randn({3, 4}, "float64")
      assert.has_error(function()
        kdx.explain.deeplift(function(b) return kdx.relu(b:sum(1, true)):expand{b:shape()[1], 4}:sum(2) end, x)
      end, "kdx.explain.deeplift: relu takes [1,4], not the batch of 6 rows [x; baseline]: DeepLift needs every "
        .. "nonlinear op's input to keep the batch as its first dim")
      local planes = kdx.randn({3, 16}, "float64")
      assert.has_error(function()
        kdx.explain.deeplift(function(b)
          local n = b:shape()[1]
          return (kdx.max_pool2d(b:reshape{1, n, 4, 4}, 2)):reshape{n, 4}:sum(2)
        end, planes)
      end, "kdx.explain.deeplift: max_pool2d takes [1,6,4,4], not the batch of 6 rows [x; baseline]: DeepLift needs "
        .. "every nonlinear op's input to keep the batch as its first dim")
    end)
  end)

  for _, method in ipairs{"guided_backprop", "deconvolution"} do
    describe(method, function()
      for _, name in ipairs{"relu_mlp", "cnn"} do
        it("matches the PyTorch ReLU rule on " .. name, function()
          local x, target = case(name)
          close(kdx.explain[method](models[name](), x, {target = target}), T(G[name][method]), 1e-12)
        end)
      end

      it("covers kdx.relu in a plain function", function()
        local x, target = case("relu_mlp")
        close(kdx.explain[method](functional_relu_mlp(), x, {target = target}), T(G.relu_mlp[method]), 1e-12)
      end)

      it("is the plain gradient on a model without ReLU", function()
        for _, name in ipairs{"smooth_mlp", "mixed"} do
          local x, target = case(name)
          close(kdx.explain[method](models[name](), x, {target = target}), T(G[name].gradient), 1e-12)
        end
      end)

      it("gives the same result in any batch size", function()
        local x, target = case("cnn")
        local a = kdx.explain[method](models.cnn(), x, {target = target, batch_size = 1})
        local b = kdx.explain[method](models.cnn(), x, {target = target, batch_size = 1000})
        close(a, b, 1e-14)
      end)
    end)
  end

  describe("the backward rules", function()
    local function ordinary_unchanged()
      for _, name in ipairs{"relu_mlp", "cnn", "mixed"} do
        local x, target = case(name)
        close(plain_gradient(models[name](), x, target), T(G[name].gradient), 1e-12)
      end
    end

    it("leave ordinary gradients alone after each method", function()
      local x, target, base = case("cnn")
      kdx.explain.deeplift(models.cnn(), x, {target = target, baseline = base})
      ordinary_unchanged()
      kdx.explain.guided_backprop(models.cnn(), x, {target = target})
      ordinary_unchanged()
      kdx.explain.deconvolution(models.cnn(), x, {target = target})
      ordinary_unchanged()
    end)

    it("are off after a model that raises, in every method", function()
      local x = T(G.relu_mlp.x)
      local bad = function() error("broken model") end
      for _, method in ipairs{"deeplift", "guided_backprop", "deconvolution"} do
        assert.has_error(function() kdx.explain[method](bad, x, {target = 1}) end)
        ordinary_unchanged()
      end
    end)

    it("are off after an error inside the backward pass", function()
      local x = kdx.randn({3, 4}, "float64")
      assert.has_error(function()
        kdx.explain.deeplift(function(b) return kdx.relu(b:sum(1, true)):expand{b:shape()[1], 4}:sum(2) end, x)
      end)
      ordinary_unchanged()
    end)

    it("do not reach a gradient the model takes inside its own forward pass", function()
      local x, target = case("relu_mlp")
      local inner, seen = models.relu_mlp(), nil
      local model = function(b)
        local leaf = b:detach():clone():requires_grad(true)
        local out = inner(leaf):gather(2, target:reshape{-1, 1}):sum()
        seen = kdx.grad({out}, {leaf})[1]
        return inner(b)
      end
      kdx.explain.guided_backprop(model, x, {target = target})
      close(seen, T(G.relu_mlp.gradient), 1e-12)
    end)

    it("leave second-order gradients alone (create_graph)", function()
      local x = kdx.tensor({{-0.5, 0.3, 1.2}}, "float64"):requires_grad(true)
      local y = (x:tanh() * x:sigmoid()):sum()
      local g = kdx.grad({y}, {x}, {create_graph = true})[1]
      local h = kdx.grad({g:sum()}, {x})[1]
      local x2 = kdx.tensor({{-0.5, 0.3, 1.2}}, "float64"):requires_grad(true)
      kdx.explain.deeplift(function(b) return (b:tanh() * b:sigmoid()):sum(2) end, x2:detach())
      local y2 = (x2:tanh() * x2:sigmoid()):sum()
      local g2 = kdx.grad({y2}, {x2}, {create_graph = true})[1]
      close(g2, g, 1e-15)
      close(kdx.grad({g2:sum()}, {x2})[1], h, 1e-15)
    end)
  end)

  describe("argument errors", function()
    local x = kdx.randn({2, 5}, "float64")
    local model = function(b) return b:sum(2) end
    it("name the method", function()
      assert.has_error(function() kdx.explain.deeplift(model, "x") end,
        "kdx.explain.deeplift: x must be a tensor batch [N, ...], got string")
      assert.has_error(function() kdx.explain.deeplift(model, x, {batch_size = 1}) end,
        "kdx.explain.deeplift: batch_size must be >= 2, got 1")
      assert.has_error(function() kdx.explain.deeplift(model, x, {baseline = "zero"}) end,
        "kdx.explain.deeplift: baseline must be a number or a tensor, got string")
      assert.has_error(function() kdx.explain.deeplift(model, x, {baseline = kdx.zeros({3}, "float64")}) end,
        "kdx.explain.deeplift: baseline [3] does not broadcast to x [2,5]")
      assert.has_error(function() kdx.explain.guided_backprop(42, x) end,
        "kdx.explain.guided_backprop: model must be a function or a module, got number")
      assert.has_error(function() kdx.explain.deconvolution(model, x, {batch_size = 0}) end,
        "kdx.explain.deconvolution: batch_size must be >= 1, got 0")
      assert.has_error(function() kdx.explain.guided_backprop(function(b) return b end, x) end,
        "kdx.explain.guided_backprop: the model returns [2,5]: give a target class")
      assert.has_error(function() kdx.explain.deconvolution(model, kdx.zeros({2, 5}, "int64")) end)
    end)
  end)
end)
