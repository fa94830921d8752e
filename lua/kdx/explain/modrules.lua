--- kdx.explain (modified backward rules): DeepLift (rescale), guided
-- backprop and deconvolution. The rules are applied by the engine per
-- operation during the method's own backward pass, so functional calls
-- (`kdx.relu` inside a plain function) are covered as well as layers, and
-- ordinary training or other threads never see them.
-- @module kdx.explain.modrules

local kdx = require "kdx"
local core = require("kdx.explain.common").core

local common = require "kdx.explain.common"
local prepare, int, fail = common.prepare, common.int, common.fail

local M = {}

--- DeepLift with the rescale rule (Shrikumar et al. 2017), as Captum's
-- DeepLift but per operation: returns attributions (x - baseline) * m and
-- the gap sum(attr) - (f(x) - f(baseline)) per sample. opts.baseline = 0
-- (number or tensor broadcast to x), opts.target, opts.batch_size = 128
-- rows per model call (half inputs, half baselines).
function M.deeplift(model, x, opts)
  local m, target, o = prepare("deeplift", model, x, opts)
  local base = o.baseline
  if type(base) == "number" then
    base = kdx.full(x:shape(), base, x:dtype())
  elseif base ~= nil and not kdx.is_tensor(base) then
    fail("deeplift", "baseline must be a number or a tensor, got %s", type(base))
  end
  return core._deeplift(m, x, base, target, int("deeplift", o, "batch_size", 128, 2))
end

--- Guided backprop (Springenberg et al. 2015): the input gradient where
-- every ReLU passes back only positive gradients at positive inputs.
-- opts.target, opts.batch_size = 128.
function M.guided_backprop(model, x, opts)
  local m, target, o = prepare("guided_backprop", model, x, opts)
  return core._guided_backprop(m, x, target, int("guided_backprop", o, "batch_size", 128, 1))
end

--- Deconvolution (Zeiler and Fergus 2014): the input gradient where every
-- ReLU passes back relu(gradient), whatever its input. opts.target,
-- opts.batch_size = 128.
function M.deconvolution(model, x, opts)
  local m, target, o = prepare("deconvolution", model, x, opts)
  return core._deconvolution(m, x, target, int("deconvolution", o, "batch_size", 128, 1))
end

return M
