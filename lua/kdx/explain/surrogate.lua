--- kdx.explain surrogate methods: KernelSHAP and LIME fit a weighted linear
-- model of the output on which features are present (x) or absent
-- (baseline); SLIC makes the superpixels that serve as image features. The
-- sampling, the model calls and the float64 regression run in C.
-- @module kdx.explain.surrogate

local kdx = require "kdx"
local core = require("kdx.explain.common").core
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

--- SLIC superpixels (Achanta et al. 2012, as scikit-image's slic) of
-- images [N, C, H, W] or [C, H, W] (3 channels in [0, 1] clustered in
-- CIELAB): opts.n_segments = 100, compactness = 10, max_iter = 10,
-- sigma = 0, start_label = 1. Returns int64 segment ids [N, H, W] (or
-- [H, W]), consecutive from start_label, each segment connected.
function M.slic(images, opts)
  local fname = "slic"
  opts = opts or {}
  if type(opts) ~= "table" then fail(fname, "options must be a table, got %s", args.what(opts)) end
  if not kdx.is_tensor(images) or (images:dim() ~= 3 and images:dim() ~= 4) then
    fail(fname, "images must be a tensor [N, C, H, W] or [C, H, W], got %s", args.what(images))
  end
  local one = images:dim() == 3
  if one then images = images:reshape{1, table.unpack(images:shape())} end
  local start = int(fname, opts, "start_label", 1, 0)
  if start > 1 then fail(fname, "start_label must be 0 or 1, got %d", start) end
  local seg = core._slic(images, int(fname, opts, "n_segments", 100, 1), num(fname, opts, "compactness", 10),
    int(fname, opts, "max_iter", 10, 1), num(fname, opts, "sigma", 0))
  if start ~= 0 then seg = seg + start end
  if one then seg = seg:select(1, 1) end
  return seg
end

--- LIME on binary features (present = x, absent = opts.baseline, default 0):
-- a weighted ridge fit (opts.alpha = 1, with intercept) of the target output
-- on opts.samples = 1000 Bernoulli(0.5) samples, the first x itself, weighted
-- by sqrt(exp(-d^2 / kernel_width^2)). opts.mode = "tabular" (euclidean d,
-- kernel_width = 0.75 sqrt(M)) or "image" (cosine d, kernel_width = 0.25,
-- features = SLIC superpixels from opts.slic unless opts.feature_mask);
-- opts.num_features (default all) picked by opts.feature_selection = "auto".
-- Returns attributions of x's shape (each element its feature's coefficient)
-- and {intercept =, score = (weighted R^2), local_pred =} ([N] each).
function M.lime(model, x, opts)
  local fname = "lime"
  local m, target, o = prepare(fname, model, x, opts)
  local mode = choice(fname, o, "mode", "tabular", {"tabular", "image"})
  local image = mode == "image"
  local mask = o.feature_mask
  if image and x:dim() ~= 4 then fail(fname, "mode \"image\" needs x [N, C, H, W], got %d dimensions", x:dim()) end
  if image and mask == nil then
    if o.slic ~= nil and type(o.slic) ~= "table" then fail(fname, "slic must be a table of options, got %s", args.what(o.slic)) end
    local sh = x:shape()
    mask = M.slic(x, o.slic):reshape{sh[1], 1, sh[3], sh[4]}
  end
  local width = num(fname, o, "kernel_width", image and 0.25 or 0)
  if o.kernel_width ~= nil and not (width > 0) then fail(fname, "kernel_width must be > 0, got %s", width) end
  local alpha = num(fname, o, "alpha", 1)
  if not (alpha >= 0) then fail(fname, "alpha must be >= 0, got %s", alpha) end
  return core._lime(m, x, baseline(fname, x, o), mask, target, int(fname, o, "samples", 1000, 2), width,
    choice(fname, o, "distance", image and "cosine" or "euclidean", {"euclidean", "cosine"}), alpha,
    int(fname, o, "num_features", 0, 1), choice(fname, o, "feature_selection", "auto",
      {"auto", "highest_weights", "forward_selection", "none"}), common.seed(fname, o),
    int(fname, o, "batch_size", 128, 1))
end

return M
