-- kdx.explain, noise and layer methods: the noise tunnel against a brute-force
-- loop with the same noise, GradientShap against its draws replayed in Lua and
-- its axioms, and the layer methods against a PyTorch reimplementation on a
-- fixed CNN, their definitions written with kdx ops, completeness, batching
-- and errors.
local kdx = require "kdx"
local nn = kdx.nn
local helpers = require "helpers.close"
local close, T = helpers.assert_close, helpers.from_fixture

local function mlp()
  kdx.manual_seed(0)
  return nn.Sequential{nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)}:double()
end

-- Rows of x repeated: copy k of sample i is row (i - 1) * S + k, as the C side orders them.
local function repeat_rows(x, S)
  local ids = {}
  for i = 1, x:size(1) do for _ = 1, S do ids[#ids + 1] = i end end
  return x:index_select(1, kdx.tensor(ids, "int64")), ids
end

-- Mean over each sample's S consecutive rows of a [N*S, ...] tensor.
local function mean_rows(t, N, S)
  local shape = t:shape()
  table.remove(shape, 1)
  table.insert(shape, 1, S)
  table.insert(shape, 1, N)
  return t:reshape(shape):mean(2)
end

local function grad_at(model, pts, target)
  local p = pts:clone():requires_grad(true)
  local out = model(p)
  local sel = out:dim() == 1 and out or out:gather(2, kdx.tensor(target, "int64"):reshape{#target, 1})
  return kdx.grad(sel:sum(), p)[1]
end

describe("kdx.explain (noise and layer methods)", function()
  kdx.manual_seed(1)
  local x = kdx.randn({5, 4}, "float64")
  local tg = {1, 2, 3, 1, 2}

  describe("noise_tunnel", function()
    it("with stdev = 0 gives the method itself (smoothgrad), its square, and zero variance", function()
      local model = mlp()
      local sal = kdx.explain.saliency(model, x, {target = tg, abs = false})
      close(kdx.explain.smoothgrad(model, x, {target = tg, stdev = 0, samples = 4}), sal, 1e-12)
      close(kdx.explain.noise_tunnel("saliency", model, x, {target = tg, stdev = 0, samples = 4, abs = false,
        nt_type = "smoothgrad_sq"}), sal * sal, 1e-12)
      close(kdx.explain.noise_tunnel("saliency", model, x, {target = tg, stdev = 0, samples = 3, abs = false,
        nt_type = "vargrad"}), kdx.zeros_like(x), 1e-12)
    end)

    it("matches a brute-force loop over the same noise (relative to each sample's range)", function()
      local model, S, stdev, seed = mlp(), 6, 0.2, 1234
      local got = kdx.explain.smoothgrad(model, x, {target = tg, samples = S, stdev = stdev, seed = seed,
        batch_size = 4})
      local vg = kdx.explain.noise_tunnel("saliency", model, x, {target = tg, samples = S, stdev = stdev,
        seed = seed, abs = false, nt_type = "vargrad"})
      -- the documented stream: one generator seeded with seed, N(0, 1) for
      -- every element of the repeated batch in row order
      kdx.manual_seed(seed)
      local z = kdx.randn({5 * S, 4}, "float64")
      local rep, ids = repeat_rows(x, S)
      local range = x:amax(2) - x:amin(2)
      local sig = repeat_rows((range * stdev):reshape{5, 1}, S)
      local rt = {}
      for r, i in ipairs(ids) do rt[r] = tg[i] end
      local a = kdx.explain.saliency(model, rep + z * sig, {target = rt, abs = false})
      local m = mean_rows(a, 5, S)
      close(got, m, 1e-12)
      close(vg, mean_rows(a * a, 5, S) - m * m, 1e-12)
    end)

    it("adds absolute noise with absolute = true", function()
      local model, S, seed = mlp(), 3, 7
      local got = kdx.explain.smoothgrad(model, x, {target = 2, samples = S, stdev = 0.5, absolute = true, seed = seed})
      kdx.manual_seed(seed)
      local z = kdx.randn({5 * S, 4}, "float64")
      local a = kdx.explain.saliency(model, repeat_rows(x, S) + z * 0.5, {target = 2, abs = false})
      close(got, mean_rows(a, 5, S), 1e-12)
    end)

    it("is deterministic for a seed and the same in any batch size", function()
      local model = mlp()
      local o = {target = tg, samples = 5, seed = 9}
      local a = kdx.explain.smoothgrad(model, x, o)
      close(kdx.explain.smoothgrad(model, x, o), a, 0)
      o.batch_size = 1
      close(kdx.explain.smoothgrad(model, x, o), a, 1e-12)
      o.batch_size, o.seed = nil, 10
      assert.is_true((kdx.explain.smoothgrad(model, x, o) - a):abs():max():item() > 1e-6)
    end)

    it("runs over any method: a name with its options, or a function", function()
      local model = mlp()
      local ig = kdx.explain.integrated_gradients(model, x, {target = tg, steps = 8})
      close(kdx.explain.noise_tunnel("integrated_gradients", model, x, {target = tg, steps = 8, stdev = 0,
        samples = 2, batch_size = 3}), ig, 1e-12)
      local seen = 0
      local f = function(m, xb, o)
        seen = math.max(seen, xb:size(1))
        return kdx.explain.input_x_gradient(m, xb, o)
      end
      local a = kdx.explain.noise_tunnel(f, model, x, {target = tg, stdev = 0, samples = 3, batch_size = 4})
      close(a, kdx.explain.input_x_gradient(model, x, {target = tg}), 1e-12)
      assert.are.equal(4, seen) -- chunks of at most batch_size rows
    end)
  end)

  describe("gradient_shap", function()
    it("replays its draws: baseline rows, then alphas, then noise, from one seeded generator", function()
      local model, S, seed = mlp(), 4, 77
      kdx.manual_seed(3)
      local bases = kdx.randn({6, 4}, "float64")
      local a, delta = kdx.explain.gradient_shap(model, x, {baselines = bases, target = tg, samples = S,
        stdev = 0.1, seed = seed, batch_size = 100})
      kdx.manual_seed(seed)
      local pick = kdx.randint(0, 6, {5 * S}) + 1
      local al = kdx.rand({5 * S}, "float64"):reshape{5 * S, 1}
      local rep, ids = repeat_rows(x, S)
      local xn = rep + kdx.randn({5 * S, 4}, "float64") * 0.1
      local b = bases:index_select(1, pick)
      local rt = {}
      for r, i in ipairs(ids) do rt[r] = tg[i] end
      local g = grad_at(model, b + al * (xn - b), rt)
      close(a, mean_rows(g * (xn - b), 5, S), 1e-12)
      -- delta: sum(attr) - (f(x) - mean over the baselines of f(b))
      local out = kdx.no_grad(function() return model(x) end)
      local fb = kdx.no_grad(function() return model(bases):mean(1) end)
      for i = 1, 5 do
        local want = a:select(1, i):sum():item() - (out:get(i, tg[i]) - fb:get(tg[i]))
        assert.is_true(math.abs(delta:get(i) - want) < 1e-12)
      end
    end)

    it("is exact for a linear model and one baseline, whatever the alphas: w * (x - b), no gap", function()
      local w = kdx.tensor({1, -2, 3, 0.5}, "float64")
      local f = function(b) return kdx.matmul(b, w) end
      local base = kdx.tensor({{0.3, -0.1, 0.2, 1}}, "float64")
      local a, delta = kdx.explain.gradient_shap(f, x, {baselines = base, samples = 7, seed = 5})
      close(a, (x - base) * w, 1e-12)
      close(delta, kdx.zeros{5}:double(), 1e-12)
      local c = kdx.explain.gradient_shap(f, x, {baselines = 0.5, samples = 3})
      close(c, (x - 0.5) * w, 1e-12)
      c = kdx.explain.gradient_shap(f, x, {baselines = base:reshape{4}, samples = 2}) -- one sample-shaped baseline
      close(c, (x - base) * w, 1e-12)
    end)

    it("averages to integrated gradients over many alphas (quadratic model, 5 standard errors)", function()
      -- f = sum c_j x_j^2: one draw gives 2 c_j (b_j + alpha (x_j - b_j)) (x_j - b_j),
      -- whose mean over alpha ~ U(0, 1) is c_j (x_j^2 - b_j^2) = IG exactly and
      -- whose standard deviation is 2 |c_j| (x_j - b_j)^2 / sqrt(12); the mean of
      -- S draws is within 5 standard errors (the seed is fixed: not flaky).
      local c = kdx.tensor({1, -0.5, 2, 0.25}, "float64")
      local f = function(b) return (b * b * c):sum(2) end
      local base = kdx.tensor({{0.2, 0.1, -0.3, 0.5}}, "float64")
      local S = 2000
      local a = kdx.explain.gradient_shap(f, x, {baselines = base, samples = S, seed = 11, batch_size = 5000})
      local ig = kdx.explain.integrated_gradients(f, x, {baseline = base, steps = 4})
      local se = ((x - base) ^ 2 * c:abs()) * (2 / math.sqrt(12) / math.sqrt(S))
      local err = (a - ig):abs()
      for i = 1, 5 do for j = 1, 4 do
        assert.is_true(err:get(i, j) <= 5 * se:get(i, j) + 1e-12, ("element %d,%d"):format(i, j))
      end end
    end)

    it("is deterministic for a seed and the same in any batch size, with noise too", function()
      local model = mlp()
      kdx.manual_seed(4)
      local bases = kdx.randn({3, 4}, "float64")
      local o = {baselines = bases, target = tg, samples = 4, stdev = 0.3, seed = 21, batch_size = 1}
      local a = kdx.explain.gradient_shap(model, x, o)
      o.batch_size = 64
      close(kdx.explain.gradient_shap(model, x, o), a, 1e-12)
    end)
  end)

  describe("layer methods on a PyTorch CNN", function()
    local g = dofile("spec/fixtures/explain_gradlayer_golden.lua")
    local net = nn.Sequential{
      nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(4, 6, 3, {stride = 2}), nn.ReLU(), nn.Flatten(), nn.Linear(6, 3),
    }
    net:load("spec/fixtures/models_cnn.safetensors")
    net:double():eval()
    local xs, target = T(g.x), T(g.target)

    it("agree with Grad-CAM: ReLU'd, signed, and upsampled to the input", function()
      close(kdx.explain.gradcam(net, xs, {layer = "3", target = target}), T(g.gradcam), 1e-10)
      close(kdx.explain.gradcam(net, xs, {layer = "3", target = target, relu = false, batch_size = 2}),
        T(g.gradcam_raw), 1e-10)
      close(kdx.explain.gradcam(net, xs, {layer = "3", target = target, upsample = true}), T(g.gradcam_up), 1e-10)
    end)

    it("agree with Grad-CAM++ (pytorch-grad-cam's weights)", function()
      close(kdx.explain.gradcam_pp(net, xs, {layer = "3", target = target, batch_size = 1}), T(g.gradcam_pp), 1e-10)
    end)

    it("agree with layer gradient x activation", function()
      close(kdx.explain.layer_gradient_x_activation(net, xs, {layer = "2", target = target}), T(g.gxa), 1e-10)
    end)

    it("agree with layer integrated gradients and its completeness gap in any batch size", function()
      for _, bs in ipairs{1, 5, 1000} do
        local a, d = kdx.explain.layer_integrated_gradients(net, xs, {layer = "3", target = target,
          steps = g.lig.steps, baseline = g.lig.baseline, batch_size = bs})
        close(a, T(g.lig.attr), 1e-10)
        close(d, T(g.lig.delta), 1e-10)
      end
    end)

    it("agree with layer conductance in any batch size", function()
      for _, bs in ipairs{1, 4, 7, 1000} do
        local a, d = kdx.explain.layer_conductance(net, xs, {layer = "2", target = target, steps = g.cond.steps,
          batch_size = bs})
        close(a, T(g.cond.attr), 1e-10)
        close(d, T(g.cond.delta), 1e-10)
      end
    end)

    it("Grad-CAM equals its definition computed by hand with forward_with and kdx.grad", function()
      local xr = xs:clone():requires_grad(true)
      local out, feats = net:forward_with(xr, {"0"})
      local A = feats["0"]
      local sel = out:gather(2, target:reshape{3, 1}):sum()
      local dA = kdx.grad(sel, A)[1]
      local w = dA:mean(4, true):mean(3, true)
      local want = (w * A):sum(2, true):relu():detach()
      for _, bs in ipairs{1, 2, 3} do
        close(kdx.explain.gradcam(net, xs, {layer = "0", target = target, batch_size = bs}), want, 1e-12)
      end
      close(kdx.explain.layer_gradient_x_activation(net, xs, {layer = "0", target = target}), (A * dA):detach(), 1e-12)
      close(kdx.explain.layer_activation(net, xs, {layer = "0", batch_size = 2}), A:detach(), 1e-12)
    end)
  end)

  describe("layer methods on a smooth model", function()
    it("layer integrated gradients is complete within 1%", function()
      local model = mlp()
      local a, delta = kdx.explain.layer_integrated_gradients(model, x, {layer = "1", target = 2, steps = 20})
      assert.are.same({5, 8}, a:shape())
      local f = kdx.no_grad(function() return model(x):select(2, 2) end)
      local f0 = kdx.no_grad(function() return model(kdx.zeros_like(x)):select(2, 2) end)
      for i = 1, 5 do
        local gap = f:get(i) - f0:get(i)
        assert.is_true(math.abs(delta:get(i)) <= 0.01 * math.abs(gap) + 1e-12)
        assert.is_true(math.abs(a:select(1, i):sum():item() - gap) <= 0.01 * math.abs(gap) + 1e-12)
      end
    end)

    it("layer integrated gradients on a linear head is exact: w * (a(x) - a(baseline))", function()
      local model = mlp()
      local a = kdx.explain.layer_integrated_gradients(model, x, {layer = "1", target = 3, steps = 2,
        baseline = 0.5})
      local w = model["2"].weight:select(1, 3)
      local ax = kdx.explain.layer_activation(model, x, {layer = "1"})
      local ab = kdx.explain.layer_activation(model, kdx.full({5, 4}, 0.5, "float64"), {layer = "1"})
      close(a, (ax - ab) * w:detach(), 1e-12)
    end)

    it("layer conductance sums to f(x) - f(baseline) with many steps", function()
      local model = mlp()
      local a, delta = kdx.explain.layer_conductance(model, x, {layer = "1", target = 1, steps = 200,
        method = "riemann_trapezoid", batch_size = 64})
      local f = kdx.no_grad(function() return model(x):select(2, 1) end)
      local f0 = kdx.no_grad(function() return model(kdx.zeros_like(x)):select(2, 1) end)
      for i = 1, 5 do
        local gap = f:get(i) - f0:get(i)
        assert.is_true(math.abs(a:select(1, i):sum():item() - gap) <= 0.01 * math.abs(gap) + 1e-9)
        assert.is_true(math.abs(delta:get(i)) <= 0.01 * math.abs(gap) + 1e-9)
      end
    end)

    it("accept a target function of the output", function()
      local model = mlp()
      local a = kdx.explain.layer_gradient_x_activation(model, x, {layer = "1",
        target = function(out) return out:select(2, 3) end})
      close(a, kdx.explain.layer_gradient_x_activation(model, x, {layer = "1", target = 3}), 1e-12)
    end)
  end)

  describe("errors", function()
    local function err_of(f, ...)
      local ok, e = pcall(f, ...)
      assert.is_false(ok)
      return e
    end

    it("name an unknown layer and list the submodules", function()
      local e = err_of(kdx.explain.gradcam, mlp(), x, {layer = "9", target = 1})
      assert.truthy(e:find("kdx.explain.gradcam: no submodule named \"9\"", 1, true))
      assert.truthy(e:find("0, 1, 2", 1, true))
      assert.truthy(err_of(kdx.explain.layer_conductance, mlp(), x, {target = 1}):find("opts.layer", 1, true))
    end)

    it("refuse a model that is not a module", function()
      local e = err_of(kdx.explain.layer_integrated_gradients, function(b) return b end, x, {layer = "1"})
      assert.truthy(e:find("kdx.explain.layer_integrated_gradients: model must be a module", 1, true))
    end)

    it("refuse a bad nt_type, an unknown method, missing baselines", function()
      local e = err_of(kdx.explain.noise_tunnel, "saliency", mlp(), x, {nt_type = "mean", target = 1})
      assert.truthy(e:find("kdx.explain.noise_tunnel: nt_type must be smoothgrad, smoothgrad_sq or vargrad", 1, true))
      e = err_of(kdx.explain.noise_tunnel, "nothing", mlp(), x, {target = 1})
      assert.truthy(e:find("kdx.explain.noise_tunnel: method must be", 1, true))
      e = err_of(kdx.explain.gradient_shap, mlp(), x, {target = 1})
      assert.truthy(e:find("kdx.explain.gradient_shap: opts.baselines", 1, true))
      e = err_of(kdx.explain.gradient_shap, mlp(), x, {target = 1, baselines = kdx.zeros({2, 3}, "float64")})
      assert.truthy(e:find("kdx.explain.gradient_shap: baselines", 1, true))
      e = err_of(kdx.explain.smoothgrad, mlp(), x, {target = 1, stdev = -1})
      assert.truthy(e:find("stdev must be >= 0", 1, true))
    end)

    it("come back from a failing inner method or model naming the method", function()
      local e = err_of(kdx.explain.noise_tunnel, function() error("boom") end, mlp(), x, {target = 1})
      assert.truthy(e:find("kdx.explain.noise_tunnel: the inner method raised an error", 1, true))
      assert.truthy(e:find("boom", 1, true))
      local model = mlp()
      model["1"]:register_forward_hook(function() error("bang") end)
      e = err_of(kdx.explain.gradcam, model, x, {layer = "1", target = 1})
      assert.truthy(e:find("kdx.explain.gradcam: the model raised an error", 1, true))
      e = err_of(kdx.explain.gradcam, mlp(), x, {layer = "1", target = 1, upsample = true})
      assert.truthy(e:find("kdx.explain.gradcam: upsample needs x", 1, true))
    end)

    it("leave no tensors behind", function()
      local model = mlp()
      collectgarbage(); collectgarbage()
      local before = kdx.debug.live_tensors()
      for _ = 1, 2 do
        kdx.explain.smoothgrad(model, x, {target = 1, samples = 3, seed = 1})
        kdx.explain.gradient_shap(model, x, {target = 1, baselines = 0, samples = 2, seed = 1})
        kdx.explain.layer_conductance(model, x, {layer = "1", target = 1, steps = 3, batch_size = 4})
        kdx.explain.layer_integrated_gradients(model, x, {layer = "1", target = 1, steps = 3})
        pcall(kdx.explain.noise_tunnel, function() error("x") end, model, x, {target = 1})
        pcall(kdx.explain.gradcam, model, x, {layer = "1", target = 9})
      end
      collectgarbage(); collectgarbage()
      assert.are.equal(before, kdx.debug.live_tensors())
    end)
  end)
end)
