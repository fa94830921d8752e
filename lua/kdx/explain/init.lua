--- kdx.explain: attributions that say why a model decides. Every method
-- takes (model, x, opts): model is a module or any function from a batch to
-- outputs [N] or [N, classes]; x a batch [N, ...]; opts.target a 1-based
-- class per sample (table or int64 tensor), one class for all, or a
-- function of the output. The algorithms run in C and call the model back
-- in chunks of at most opts.batch_size rows.
-- @module kdx.explain

local kdx = require "kdx"
local core = require("kdx.explain.common").core

local common = require "kdx.explain.common"
local prepare = common.prepare

local M = {}

--- Saliency: the gradient of the target output w.r.t. the input, its
-- absolute value by default (opts.abs = true), as Captum's Saliency.
function M.saliency(model, x, opts)
  local m, target, o = prepare("saliency", model, x, opts)
  return core._saliency(m, x, target, o.abs ~= false, false, o.batch_size or 128)
end

--- Input x gradient: x * d f_target / d x.
function M.input_x_gradient(model, x, opts)
  local m, target, o = prepare("input_x_gradient", model, x, opts)
  return core._saliency(m, x, target, false, true, o.batch_size or 128)
end

--- Integrated gradients (Sundararajan et al. 2017) along the straight path
-- from opts.baseline (default zeros; a tensor or number broadcast to x) to x
-- with opts.steps = 50 points of opts.method = "gausslegendre" (or
-- "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid").
-- Returns attributions of x's shape and the completeness gap
-- sum(attr) - (f(x) - f(baseline)) per sample.
function M.integrated_gradients(model, x, opts)
  local m, target, o = prepare("integrated_gradients", model, x, opts)
  local base = o.baseline
  if type(base) == "number" then base = kdx.full(x:shape(), base, x:dtype()) end
  return core._integrated_gradients(m, x, base, target, o.steps or 50, o.method or "gausslegendre",
    o.batch_size or 128)
end

--- Metrics of attributions and similarities between two (kdx.explain.metrics).
M.metrics = require "kdx.explain.metrics"

-- The method families live in their own files; their public functions are
-- merged into kdx.explain (a name defined twice is an error, not a shadow).
for _, part in ipairs{"modrules", "gradlayer", "lrp", "perturb", "global", "surrogate", "compare"} do
  for name, fn in pairs(require("kdx.explain." .. part)) do
    assert(M[name] == nil, "kdx.explain: " .. name .. " is defined twice")
    M[name] = fn
  end
end

return M
