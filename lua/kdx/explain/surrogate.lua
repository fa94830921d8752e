--- kdx.explain surrogate methods: KernelSHAP and LIME fit a weighted linear
-- model of the output on which features are present (x) or absent
-- (baseline); SLIC makes the superpixels that serve as image features. The
-- sampling, the model calls and the float64 regression run in C.
-- @module kdx.explain.surrogate

local kdx = require "kdx"
local core = require "kdx.core"
local args = require "kdx.args"

local common = require "kdx.explain.common"
local fail, prepare, int, num = common.fail, common.prepare, common.int, common.num

local M = {}

-- opts.baseline as nil, or a tensor (a number becomes a tensor of x's shape).
local function baseline(fname, x, o)
  local b = o.baseline
  if b == nil or kdx.is_tensor(b) then return b end
  if type(b) == "number" then return kdx.full(x:shape(), b, x:dtype()) end
  fail(fname, "baseline must be a number or a tensor, got %s", args.what(b))
end

local function boolean(fname, o, key, def)
  local v = o[key]
  if v == nil then return def end
  if type(v) ~= "boolean" then fail(fname, "%s must be a boolean, got %s", key, args.what(v)) end
  return v
end

local function choice(fname, o, key, def, allowed)
  local v = o[key]
  if v == nil then return def end
  for _, a in ipairs(allowed) do
    if v == a then return v end
  end
  fail(fname, "%s must be %s, got %s", key, table.concat(allowed, ", "), args.what(v))
end

--- KernelSHAP with one baseline: the Shapley values of x's features (each
-- element, or the groups of opts.feature_mask) fitted by weighted least
-- squares on coalitions weighted by the Shapley kernel, with the efficiency
-- sum = f(x) - f(baseline) imposed. Returns attributions of x's shape and
-- {base_value = f(baseline), fx = f(x), gap = efficiency gap} ([N] each).
function M.kernel_shap(model, x, opts)
  local fname = "kernel_shap"
  local m, target, o = prepare(fname, model, x, opts)
  local samples = int(fname, o, "samples", 0, 0)
  if samples == 1 then fail(fname, "samples must be 0 (automatic) or >= 2, got 1") end
  return core._kernel_shap(m, x, baseline(fname, x, o), o.feature_mask, target, samples,
    boolean(fname, o, "paired", true), common.seed(fname, o), int(fname, o, "batch_size", 128, 1))
end

return M
