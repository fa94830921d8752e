-- kdx.explain, gradient methods: the axioms (completeness, linearity,
-- exactness on polynomials), agreement with a PyTorch reimplementation on a
-- fixed CNN, batching, targets, and errors.
local kdx = require "kdx"
local nn = kdx.nn
local helpers = require "helpers.close"
local close, T = helpers.assert_close, helpers.from_fixture

local function mlp()
  kdx.manual_seed(0)
  return nn.Sequential{nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)}:double()
end

describe("kdx.explain", function()
  kdx.manual_seed(1)
  local x = kdx.randn({5, 4}, "float64")

  describe("integrated_gradients", function()
    it("is complete on a smooth model: the gap is within 1% of f(x) - f(baseline)", function()
      local model = mlp()
      local attr, delta = kdx.explain.integrated_gradients(model, x, {target = 2})
      local f = kdx.no_grad(function() return model(x):select(2, 2) end)
      local f0 = kdx.no_grad(function() return model(kdx.zeros_like(x)):select(2, 2) end)
      local gap = (f - f0):abs()
      for i = 1, 5 do assert.is_true(math.abs(delta:get(i)) <= 0.01 * gap:get(i) + 1e-12) end
      close(attr:sum(2), f - f0, 1e-9)
    end)

    it("is exact for a linear model: w * (x - baseline)", function()
      local w = kdx.tensor({1, -2, 3, 0.5}, "float64")
      local f = function(b) return kdx.matmul(b, w) end
      local attr = kdx.explain.integrated_gradients(f, x, {baseline = 1, steps = 3})
      close(attr, (x - 1) * w, 1e-12)
    end)

    it("integrates polynomials exactly with Gauss-Legendre nodes", function()
      local f = function(b) return (b ^ 3):sum(2) end
      local attr = kdx.explain.integrated_gradients(f, x, {steps = 2})
      close(attr, x ^ 3, 1e-12)
    end)

    it("converges with every Riemann rule", function()
      local model = mlp()
      local ref = kdx.explain.integrated_gradients(model, x, {target = 1, steps = 64})
      for _, m in ipairs{"riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"} do
        local a = kdx.explain.integrated_gradients(model, x, {target = 1, steps = 400, method = m})
        close(a, ref, 2e-3)
      end
    end)

    it("gives the same result in any batch size", function()
      local model = mlp()
      local a = kdx.explain.integrated_gradients(model, x, {target = {1, 2, 3, 1, 2}, steps = 7, batch_size = 1})
      local b = kdx.explain.integrated_gradients(model, x, {target = {1, 2, 3, 1, 2}, steps = 7, batch_size = 1000})
      close(a, b, 1e-12)
    end)
  end)

  describe("saliency and input_x_gradient", function()
    it("are the input gradient of the target output", function()
      local model = mlp()
      local xr = x:clone():requires_grad(true)
      local g = kdx.grad(model(xr):select(2, 3):sum(), xr)[1]
      close(kdx.explain.saliency(model, x, {target = 3}), g:abs(), 1e-12)
      close(kdx.explain.saliency(model, x, {target = 3, abs = false}), g, 1e-12)
      close(kdx.explain.input_x_gradient(model, x, {target = 3}), g * x, 1e-12)
    end)

    it("accept a target function of the output", function()
      local model = mlp()
      local a = kdx.explain.saliency(model, x, {target = function(out) return out:select(2, 2) end, abs = false})
      close(a, kdx.explain.saliency(model, x, {target = 2, abs = false}), 1e-12)
    end)
  end)

  describe("on a PyTorch CNN", function()
    local g = dofile("spec/fixtures/explain_golden.lua")
    local net = nn.Sequential{
      nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(4, 6, 3, {stride = 2}), nn.ReLU(), nn.Flatten(), nn.Linear(6, 3),
    }
    net:load("spec/fixtures/models_cnn.safetensors")
    net:double():eval()
    local xs, target = T(g.x), T(g.target)

    it("agree with saliency and input x gradient", function()
      close(kdx.explain.saliency(net, xs, {target = target}), T(g.saliency), 1e-10)
      close(kdx.explain.input_x_gradient(net, xs, {target = target}), T(g.input_x_gradient), 1e-10)
    end)

    it("agree with integrated gradients and its completeness gap", function()
      local attr, delta = kdx.explain.integrated_gradients(net, xs, {target = target, steps = g.ig.steps,
        baseline = g.ig.baseline, batch_size = 10})
      close(attr, T(g.ig.attr), 1e-10)
      close(delta, T(g.ig.delta), 1e-10)
    end)
  end)

  describe("errors", function()
    it("come back from a failing model as a Lua error naming the method", function()
      local ok, err = pcall(kdx.explain.saliency, function() error("boom") end, x, {target = 1})
      assert.is_false(ok)
      assert.truthy(err:find("^spec/explain_spec.lua:%d+: kdx.explain.saliency: the model raised an error"), err)
      assert.truthy(err:find("boom", 1, true))
    end)

    it("name a target class the model does not have", function()
      local ok, err = pcall(kdx.explain.saliency, mlp(), x, {target = 7})
      assert.is_false(ok)
      assert.truthy(err:find("kdx.explain.saliency: target class out of range for the model's 3 classes", 1, true), err)
      ok, err = pcall(kdx.explain.integrated_gradients, mlp(), x, {target = {1, 2, 3, 0, 1}})
      assert.is_false(ok)
      assert.truthy(err:find("target class out of range for the model's 3 classes", 1, true), err)
    end)

    it("name a model that returns the wrong batch, or no target", function()
      assert.has_error(function() kdx.explain.saliency(function(b) return b:narrow(1, 1, 1) end, x, {}) end)
      local ok, err = pcall(kdx.explain.saliency, mlp(), x, {})
      assert.is_false(ok)
      assert.truthy(err:find("give a target class", 1, true))
      assert.has_error(function() kdx.explain.saliency(42, x) end)
    end)

    it("leave no tensors behind", function()
      local model = mlp()
      collectgarbage(); collectgarbage()
      local before = kdx.debug.live_tensors()
      for _ = 1, 3 do
        kdx.explain.integrated_gradients(model, x, {target = 1, steps = 5})
        pcall(kdx.explain.saliency, function() error("x") end, x, {target = 1})
      end
      collectgarbage(); collectgarbage()
      assert.are.equal(before, kdx.debug.live_tensors())
    end)
  end)
end)
