-- Optimizers and schedules replay PyTorch's trajectories (fixture from
-- spec/fixtures/gen_optim.py): same gradients in, same parameters out.
local kdx = require "kdx"
local close = require("helpers.close").assert_close
local golden = dofile("spec/fixtures/optim_golden.lua")

local T = require("helpers.close").from_fixture

local function describe_opts(o)
  local keys = {}
  for k in pairs(o) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = o[k]
    parts[#parts + 1] = k .. "=" .. (type(v) == "table" and "{" .. table.concat(v, ",") .. "}" or tostring(v))
  end
  return table.concat(parts, ", ")
end

describe("kdx.optim", function()
  describe("update rules", function()
    for _, case in ipairs(golden.optimizers) do
      local dtype = case.p0.dtype
      it(("%s(%s) matches PyTorch step by step in %s"):format(case.optimizer, describe_opts(case.opts), dtype), function()
        local p = T(case.p0):requires_grad(true)
        local opt = kdx.optim[case.optimizer]({p}, case.opts)
        for i, g in ipairs(case.grads) do
          p.grad = T(g)
          opt:step()
          -- float64 agrees to rounding; float32 to a few ulps
          close(p, T(case.after[i]), dtype == "float64" and 1e-12 or 2e-6, dtype == "float64" and 1e-12 or 1e-6)
        end
      end)
    end
  end)

  describe("state dicts", function()
    it("resume a run exactly, also through a file", function()
      local function run(opt_state, steps, path)
        kdx.manual_seed(3)
        local p = kdx.randn({5}, "float64"):requires_grad(true)
        local opt = kdx.optim.Adam({p}, {lr = 0.05, amsgrad = true})
        local grads = {}
        for i = 1, 6 do grads[i] = kdx.randn({5}, "float64") end
        for i = 1, steps do p.grad = grads[i]; opt:step() end
        if path then opt:save(path) end
        if opt_state then
          kdx.no_grad(function() p:copy_(opt_state.p) end)
          opt:load(opt_state.path)
          for i = opt_state.from, 6 do p.grad = grads[i]; opt:step() end
        end
        return p, opt
      end
      local path = os.tmpname()
      local straight = run(nil, 6)
      local half = run(nil, 3, path)
      local resumed = run({p = half, path = path, from = 4}, 0)
      os.remove(path)
      close(resumed, straight, 1e-15)
    end)

    it("keeps zero_grad and param groups with their own lr", function()
      local a = kdx.ones({2}):requires_grad(true)
      local b = kdx.ones({2}):requires_grad(true)
      local opt = kdx.optim.SGD({{params = {a}}, {params = {b}, lr = 1}}, {lr = 0.1})
      a.grad, b.grad = kdx.ones{2}, kdx.ones{2}
      opt:step()
      close(a, {0.9, 0.9}, 1e-7)
      close(b, {0, 0}, 1e-7)
      opt:zero_grad()
      assert.is_nil(a.grad)
    end)

    it("refuses unknown options and parameters that do not require grad", function()
      assert.has_error(function() kdx.optim.SGD({kdx.ones({2}):requires_grad(true)}, {lr = 1, moment = 0.9}) end)
      assert.has_error(function() kdx.optim.SGD({kdx.ones{2}}, {lr = 1}) end)
      assert.has_error(function() kdx.optim.SGD({kdx.ones({2}):requires_grad(true)}, {}) end)
    end)
  end)

  describe("learning-rate schedules", function()
    for _, case in ipairs(golden.schedulers) do
      it(case.name .. " matches PyTorch over 12 steps", function()
        local p = kdx.zeros({1}):requires_grad(true)
        local opt = kdx.optim.SGD({p}, {lr = 0.5})
        local c = case.call
        local s
        if case.name == "StepLR" then s = kdx.optim.StepLR(opt, c.step_size, c.gamma)
        elseif case.name == "MultiStepLR" then s = kdx.optim.MultiStepLR(opt, c.milestones, c.gamma)
        elseif case.name == "ExponentialLR" then s = kdx.optim.ExponentialLR(opt, c.gamma)
        elseif case.name == "CosineAnnealingLR" then s = kdx.optim.CosineAnnealingLR(opt, c.T_max, c.eta_min)
        else s = kdx.optim.LinearLR(opt, c) end
        local got = {opt.param_groups[1].lr}
        for _ = 1, 12 do
          s:step()
          got[#got + 1] = s:get_last_lr()[1]
        end
        close(got, case.lrs, 1e-12, 1e-12)
      end)
    end

    it("refuses bad arguments with an error naming the schedule", function()
      local opt = kdx.optim.SGD({kdx.zeros({1}):requires_grad(true)}, {lr = 1})
      local S = kdx.optim
      local cases = {
        {function() local s = S.StepLR(opt, {step_size = 1}) return s end, "kdx.optim.StepLR: step_size must be a positive integer"},
        {function() local s = S.StepLR(opt, 2, -1) return s end, "kdx.optim.StepLR: gamma must be a positive number"},
        {function() local s = S.StepLR({}, 2) return s end, "kdx.optim.StepLR: argument 1 must be an optimizer"},
        {function() local s = S.MultiStepLR(opt, {3, 2}) return s end, "kdx.optim.MultiStepLR: milestones must be increasing"},
        {function() local s = S.ExponentialLR(opt) return s end, "kdx.optim.ExponentialLR: gamma must be a positive number"},
        {function() local s = S.CosineAnnealingLR(opt, 0) return s end, "kdx.optim.CosineAnnealingLR: T_max must be a positive number"},
        {function() local s = S.LinearLR(opt, {total_iters = 0.5}) return s end, "kdx.optim.LinearLR: total_iters must be a positive integer"},
        {function() local s = S.SequentialLR(opt, {S.StepLR(opt, 1)}, {1}) return s end, "kdx.optim.SequentialLR: give 0 milestones"},
      }
      for _, c in ipairs(cases) do
        local ok, e = pcall(c[1])
        assert.is_false(ok)
        assert.matches(c[2], tostring(e), 1, true)
        assert.matches("optim_spec.lua", tostring(e), 1, true) -- blamed on the caller's line
      end
    end)

    it("chains a warm-up and a cosine decay with SequentialLR", function()
      local opt = kdx.optim.SGD({kdx.zeros({1}):requires_grad(true)}, {lr = 1})
      local warm = kdx.optim.LinearLR(opt, {start_factor = 0.5, total_iters = 2})
      local cos = kdx.optim.CosineAnnealingLR(opt, 4)
      local s = kdx.optim.SequentialLR(opt, {warm, cos}, {2})
      local got = {opt.param_groups[1].lr}
      for _ = 1, 4 do s:step(); got[#got + 1] = opt.param_groups[1].lr end
      close(got, {0.5, 0.75, 1, (1 + math.cos(math.pi / 4)) / 2, 0.5}, 1e-12)
    end)
  end)

  describe("clip_grad_norm_", function()
    it("scales gradients to the maximum norm and returns the norm before", function()
      local a = kdx.ones({4}, "float64"):requires_grad(true)
      a.grad = kdx.tensor({3, 4, 0, 0}, "float64")
      local n = kdx.nn.utils.clip_grad_norm_({a}, 1)
      assert.are.equal(5, n)
      close(a.grad, {0.6, 0.8, 0, 0}, 1e-6)
    end)
  end)
end)
