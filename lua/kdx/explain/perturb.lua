--- kdx.explain perturbation methods: occlusion, feature ablation, Shapley
-- value sampling and pairwise Shapley interaction indices. The perturbed
-- inputs are built and run through the model in C (csrc/attr_perturb.c), at
-- most opts.batch_size rows per model call.
-- @module kdx.explain.perturb

local kdx = require "kdx"
local core = require("kdx.explain.common").core
local common = require "kdx.explain.common"

local fail, prepare, int = common.fail, common.prepare, common.int

local M = {}

-- A baseline option: nil (zeros), a number or a tensor broadcast to x.
local function baseline(fname, o)
  local b = o.baseline
  if b ~= nil and type(b) ~= "number" and not kdx.is_tensor(b) then
    fail(fname, "baseline must be a number or a tensor, got %s", type(b))
  end
  return b
end

-- A per-sample-dim size list: a number for every dim (clipped to the dim's
-- size when clip), or a table of one integer per sample dim.
local function sizes(fname, x, v, key, clip)
  local shape, out = x:shape(), {}
  if type(v) == "number" then
    if v ~= math.floor(v) or v < 1 then fail(fname, "%s must be a positive integer, got %s", key, tostring(v)) end
    for d = 2, #shape do out[d - 1] = clip and math.min(v, shape[d]) or v end
    return out
  end
  if type(v) ~= "table" then fail(fname, "%s must be a number or a table, got %s", key, type(v)) end
  if #v ~= #shape - 1 then
    fail(fname, "%s needs %d sizes (one per sample dim; the batch dim is not included), got %d", key, #shape - 1, #v)
  end
  for d, s in ipairs(v) do
    if math.type(s) ~= "integer" and not (type(s) == "number" and s == math.floor(s)) then
      fail(fname, "%s[%d] must be an integer, got %s", key, d, tostring(s))
    end
    out[d] = math.tointeger(s)
  end
  return out
end

--- Occlusion (Zeiler & Fergus; Captum's Occlusion): a window of opts.window
-- (a table of sizes of a sample's dims, e.g. {1, 4, 4} for [N, 1, H, W], or a
-- number for every dim, clipped to its size) moves by opts.strides (default 1)
-- and is set to opts.baseline (default 0); an element's attribution is the mean
-- over the windows covering it of f(x) - f(occluded x).
function M.occlusion(model, x, opts)
  local fname = "occlusion"
  local m, target, o = prepare(fname, model, x, opts)
  if o.window == nil then fail(fname, "give opts.window (sizes of a sample's dims, or a number)") end
  local window = sizes(fname, x, o.window, "window", true)
  local strides = o.strides ~= nil and sizes(fname, x, o.strides, "strides", false) or nil
  return core._occlusion(m, x, window, strides, baseline(fname, o), target, int(fname, o, "batch_size", 128, 1))
end

--- Feature ablation (Captum's FeatureAblation): every feature group of
-- opts.feature_mask (1-based ids of one sample's shape or x's; default each
-- element its own group) gets f(x) - f(x with the group set to opts.baseline).
function M.feature_ablation(model, x, opts)
  local fname = "feature_ablation"
  local m, target, o = prepare(fname, model, x, opts)
  return core._feature_ablation(m, x, o.feature_mask, baseline(fname, o), target,
    int(fname, o, "batch_size", 128, 1))
end

--- Shapley value sampling (Castro et al. 2009; Captum's ShapleyValueSampling):
-- the mean marginal contribution of each feature group (opts.feature_mask)
-- over opts.n_samples = 25 random permutations drawn from opts.seed, adding
-- the groups one at a time to opts.baseline.
function M.shapley_sampling(model, x, opts)
  local fname = "shapley_sampling"
  local m, target, o = prepare(fname, model, x, opts)
  local n = int(fname, o, "n_samples", 25, 1)
  return core._shapley_sampling(m, x, o.feature_mask, baseline(fname, o), target, n, common.seed(fname, o),
    int(fname, o, "batch_size", 128, 1))
end

--- Pairwise Shapley interaction indices (Grabisch & Roubens 1999) by sampling:
-- returns [N, M, M] for M feature groups; entry (a, b) estimates
-- sum_S |S|!(M-|S|-2)!/(M-1)! [f(S+a+b) - f(S+a) - f(S+b) + f(S)] from
-- opts.samples = 50 coalitions per pair, the diagonal the Shapley values from
-- opts.samples permutations.
function M.shapley_interactions(model, x, opts)
  local fname = "shapley_interactions"
  local m, target, o = prepare(fname, model, x, opts)
  local n = int(fname, o, "samples", 50, 1)
  return core._shapley_interactions(m, x, o.feature_mask, baseline(fname, o), target, n, common.seed(fname, o),
    int(fname, o, "batch_size", 128, 1))
end

return M
