--- kdx.explain.metrics: how good an attribution is, and how alike two are.
-- Metrics that run the model take (model, x, attr, opts) with the options of
-- kdx.explain (target, baseline, batch_size, seed) and return one value per
-- sample as a float64 tensor [N]; they evaluate perturbed inputs in C, at
-- most opts.batch_size rows per model call. Similarities take two
-- attribution batches (a, b) and compare each sample's flattened maps.
-- @module kdx.explain.metrics

local kdx = require "kdx"
local core = require("kdx.explain.common").core
local args = require "kdx.args"
local common = require "kdx.explain.common"

local M = {}

local function fail(name, fmt, ...) common.fail("metrics." .. name, fmt, ...) end

-- Calls core.<fn>; an engine error is raised again at the user's line.
local function run(fn, ...)
  local res = table.pack(pcall(core[fn], ...))
  if res[1] then return table.unpack(res, 2, res.n) end
  local msg = tostring(res[2]):gsub("^[^\n]-:%d+: ", "", 1)
  local name, rest = msg:match("^kdx%.explain%.(.-): (.*)$")
  if not name then error(res[2], 0) end
  common.fail(name, "%s", rest)
end

local function check_tensor(name, what, v)
  if not kdx.is_tensor(v) then fail(name, "%s must be a tensor, got %s", what, args.what(v)) end
  return v
end

local function check_bool(name, opts, key, def)
  local v = opts[key]
  if v == nil then return def end
  if type(v) ~= "boolean" then fail(name, "%s must be a boolean, got %s", key, args.what(v)) end
  return v
end

-- A number baseline becomes a tensor of x's dtype (broadcast in C).
local function baseline(name, x, b)
  if b == nil then return nil end
  if type(b) == "number" then return kdx.tensor({b}, x:dtype()) end
  if not kdx.is_tensor(b) then fail(name, "baseline must be a number or a tensor, got %s", args.what(b)) end
  return b
end

-- The common options, checked: (model, target, table of plain values for core).
local function model_opts(name, model, x, attr, opts)
  local m, target, o = common.prepare("metrics." .. name, model, x, opts)
  check_tensor(name, "attr", attr)
  return m, {
    target = target,
    baseline = baseline(name, x, o.baseline),
    batch_size = common.int("metrics." .. name, o, "batch_size", 128, 1),
    seed = common.seed("metrics." .. name, o),
    softmax = check_bool(name, o, "softmax", false),
  }, o
end

-- An attribution map [N, H, W] for images [N, C, H, W] counts as [N, 1, H, W].
local function as_features(x, attr)
  if kdx.is_tensor(attr) and attr:dim() == x:dim() - 1 and x:dim() >= 3 then return attr:unsqueeze(2) end
  return attr
end

--- Deletion curve (RISE, Petsiuk et al. 2018): the target output as the features
-- with the largest attribution are set to opts.baseline (default 0), opts.steps
-- = 20 equal chunks. Returns curves [N, steps+1] and their AUC [N] (trapezoid on [0, 1]).
function M.deletion(model, x, attr, opts)
  local m, o, raw = model_opts("deletion", model, x, attr, opts)
  o.steps = common.int("metrics.deletion", raw, "steps", 20, 1)
  o.insertion = false
  return run("_metric_deletion", m, x, as_features(x, attr), o)
end

--- Insertion curve: as deletion, starting from the baseline and putting the
-- most attributed features of x back first. Returns curves [N, steps+1] and AUC [N].
function M.insertion(model, x, attr, opts)
  local m, o, raw = model_opts("insertion", model, x, attr, opts)
  o.steps = common.int("metrics.insertion", raw, "steps", 20, 1)
  o.insertion = true
  return run("_metric_deletion", m, x, as_features(x, attr), o)
end

--- Infidelity (Yeh et al. 2019, Captum): mean over opts.n_perturb_samples = 10 draws
-- of (I . attr - (f(x) - f(x - I)))^2, I ~ N(0, opts.noise_std^2 = 0.003^2) per
-- element or opts.perturb_func(x_rows, sample_ids) -> I[, perturbed]; opts.normalize.
function M.infidelity(model, x, attr, opts)
  local m, o, raw = model_opts("infidelity", model, x, attr, opts)
  local pf = raw.perturb_func
  if pf ~= nil and type(pf) ~= "function" then
    fail("infidelity", "perturb_func must be a function, got %s", args.what(pf))
  end
  o.perturb_func = pf
  o.noise_std = common.num("metrics.infidelity", raw, "noise_std", 0.003)
  if o.noise_std < 0 then fail("infidelity", "noise_std must be >= 0, got %g", o.noise_std) end
  o.n_perturb_samples = common.int("metrics.infidelity", raw, "n_perturb_samples", 10, 1)
  o.normalize = check_bool("infidelity", raw, "normalize", false)
  return run("_metric_infidelity", m, x, as_features(x, attr), o)
end

-- Per-sample targets picked for rows of samples ids (1-based int64 tensor).
local function pick_targets(target, ids)
  if target == nil or type(target) == "number" or type(target) == "function" then return target end
  local all = kdx.is_tensor(target) and target:reshape({target:numel()}):totable() or target
  if #all <= 1 then return all[1] end
  local out = {}
  for i, id in ipairs(ids:totable()) do out[i] = all[id] end
  return kdx.tensor(out, "int64")
end

-- The explanation method as a function (x_rows, ids) -> attributions.
local function explainer(name, model, opts)
  local method = opts.method
  if type(method) == "string" then
    local explain = require "kdx.explain"
    local fn = explain[method]
    if type(fn) ~= "function" then fail(name, "method \"%s\" is not a kdx.explain method", method) end
    method = fn
  elseif type(method) ~= "function" then
    fail(name, "method must be a kdx.explain method name or a function(model, x, opts), got %s", args.what(method))
  end
  local mopts = opts.method_opts or {}
  if type(mopts) ~= "table" then fail(name, "method_opts must be a table, got %s", args.what(mopts)) end
  local target = opts.target
  if type(target) == "table" then target = kdx.tensor(target, "int64") end
  return function(xb, ids)
    local o = {}
    for k, v in pairs(mopts) do o[k] = v end
    o.target = pick_targets(target, ids)
    if o.batch_size == nil then o.batch_size = opts.batch_size end
    return (method(model, xb, o))
  end
end

--- Max-sensitivity (Yeh et al. 2019, Captum sensitivity_max): the largest
-- ||e(x + d) - attr|| / ||attr|| (Frobenius) over opts.n_perturb_samples = 10 points
-- d ~ U(-opts.radius, opts.radius), radius = 0.02; e = opts.method (a kdx.explain
-- name or function(model, x, opts)) with opts.method_opts; attr nil: e(x).
function M.max_sensitivity(model, x, attr, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("max_sensitivity", "options must be a table, got %s", args.what(opts)) end
  check_tensor("max_sensitivity", "x", x)
  if attr ~= nil then check_tensor("max_sensitivity", "attr", attr) end
  local e = explainer("max_sensitivity", model, opts)
  local o = {
    batch_size = common.int("metrics.max_sensitivity", opts, "batch_size", 128, 1),
    seed = common.seed("metrics.max_sensitivity", opts),
    radius = common.num("metrics.max_sensitivity", opts, "radius", 0.02),
    n_perturb_samples = common.int("metrics.max_sensitivity", opts, "n_perturb_samples", 10, 1),
  }
  if o.radius < 0 then fail("max_sensitivity", "radius must be >= 0, got %g", o.radius) end
  return run("_metric_max_sensitivity", e, x, attr, o)
end

--- Faithfulness correlation (Bhatt et al. 2020, Quantus): Pearson, over
-- opts.nr_runs = 100 random subsets S of opts.subset_size features (default
-- min(224, features/4)), of sum_S attr and f(x) - f(x with S at the baseline).
function M.faithfulness_correlation(model, x, attr, opts)
  local name = "faithfulness_correlation"
  local m, o, raw = model_opts(name, model, x, attr, opts)
  local a = as_features(x, attr)
  local d = a:numel() // math.max(1, a:size(1))
  o.subset_size = common.int("metrics." .. name, raw, "subset_size", math.min(224, math.max(1, d // 4)), 1)
  o.nr_runs = common.int("metrics." .. name, raw, "nr_runs", 100, 2)
  return run("_metric_faithfulness_correlation", m, x, a, o)
end

--- Completeness gap sum(attr) - (f(x) - f(opts.baseline)) per sample (0 for a
-- complete attribution; Quantus' Completeness returns whether it is ~0).
function M.completeness(model, x, attr, opts)
  local m, o = model_opts("completeness", model, x, attr, opts)
  return run("_metric_completeness", m, x, attr, o)
end

--- Sparseness: the Gini index of |attr| per sample (Chalasani et al. 2020,
-- Quantus Sparseness); opts.abs = true, opts.normalise = true (divide by max |a|).
function M.sparseness(attr, opts)
  opts = opts or {}
  check_tensor("sparseness", "attr", attr)
  return run("_metric_sparseness", attr, check_bool("sparseness", opts, "abs", true),
    check_bool("sparseness", opts, "normalise", true))
end

--- Complexity: the entropy (natural log) of |attr| / sum |attr| per sample
-- (Bhatt et al. 2020, Quantus Complexity).
function M.complexity(attr)
  check_tensor("complexity", "attr", attr)
  return run("_metric_complexity", attr)
end

-- Layers of a module that own parameters, in module order: {name, params}.
local function param_layers(model)
  local layers, seen = {}, {}
  for name, m in model:named_modules() do
    local ps = {}
    for _, pname in ipairs(rawget(m, "_params") or {}) do
      local t = m[pname]
      if t and not seen[t] then
        seen[t] = true
        ps[#ps + 1] = t
      end
    end
    if #ps > 0 then layers[#layers + 1] = {name = name == "" and "(model)" or name, params = ps} end
  end
  return layers
end

local SIMS = {spearman = true, pearson = true, kendall = true, topk_overlap = true, cosine = true, ssim = true}

--- Cascading model-parameter randomisation (Adebayo et al. 2018, Quantus MPRT):
-- layers are redrawn one after another (opts.order = "top_down" or "bottom_up"),
-- the explanation (opts.method, opts.method_opts) recomputed and compared with attr
-- (nil: the method's own) by opts.similarity = "spearman" on |.| (opts.abs = true).
-- Returns {{layer = name, similarity = [N]}, ...}, first {layer = "none"}.
-- The model's parameters are restored afterwards, also on error.
function M.randomization_check(model, x, attr, opts)
  local name = "randomization_check"
  opts = opts or {}
  if type(opts) ~= "table" then fail(name, "options must be a table, got %s", args.what(opts)) end
  if type(model) ~= "table" or type(model.named_modules) ~= "function" then
    fail(name, "model must be a kdx.nn module (its parameters are randomised), got %s", args.what(model))
  end
  check_tensor(name, "x", x)
  if attr ~= nil then check_tensor(name, "attr", attr) end
  local e = explainer(name, model, opts)
  local sim = opts.similarity or "spearman"
  if not SIMS[sim] then
    fail(name, "similarity must be spearman, pearson, kendall, topk_overlap, cosine or ssim, got %s", tostring(sim))
  end
  local order = opts.order or "top_down"
  if order ~= "top_down" and order ~= "bottom_up" then
    fail(name, "order must be \"top_down\" or \"bottom_up\", got %s", tostring(order))
  end
  local layers = param_layers(model)
  if #layers == 0 then fail(name, "the model has no parameters to randomise") end
  if order == "top_down" then
    for i = 1, #layers // 2 do layers[i], layers[#layers + 1 - i] = layers[#layers + 1 - i], layers[i] end
  end
  local params, layer_of = {}, {}
  for l, layer in ipairs(layers) do
    for _, p in ipairs(layer.params) do
      params[#params + 1] = p
      layer_of[#layer_of + 1] = l
    end
  end
  local o = {
    batch_size = common.int("metrics." .. name, opts, "batch_size", 128, 1),
    seed = common.seed("metrics." .. name, opts),
    similarity = sim,
    similarity_param = sim == "topk_overlap" and common.num("metrics." .. name, opts, "k", 0.1)
      or sim == "ssim" and common.num("metrics." .. name, opts, "data_range", 0) or 0,
    abs = check_bool(name, opts, "abs", true),
  }
  local s = run("_metric_randomization", e, x, attr, params, layer_of, #layers, o)
  local out = {{layer = "none", similarity = s:select(1, 1)}}
  for l, layer in ipairs(layers) do out[l + 1] = {layer = layer.name, similarity = s:select(1, l + 1)} end
  return out
end

-- ---------------------------------------------------------------- similarity --

local function similarity(kind, a, b, param)
  check_tensor(kind, "a", a)
  check_tensor(kind, "b", b)
  return run("_metric_similarity", kind, a, b, param)
end

--- Spearman rank correlation per sample (average ranks for ties), as scipy.stats.spearmanr.
function M.spearman(a, b) return similarity("spearman", a, b) end

--- Pearson correlation per sample, as scipy.stats.pearsonr.
function M.pearson(a, b) return similarity("pearson", a, b) end

--- Kendall tau-b per sample (ties corrected), as scipy.stats.kendalltau.
function M.kendall(a, b) return similarity("kendall", a, b) end

--- Top-k overlap: |top-k(|a|) and top-k(|b|)| / k per sample; k a count >= 1
-- or a fraction in (0, 1) of the features (default 0.1).
function M.topk_overlap(a, b, k)
  if k ~= nil and type(k) ~= "number" then fail("topk_overlap", "k must be a number, got %s", args.what(k)) end
  return similarity("topk_overlap", a, b, k or 0.1)
end

--- Cosine similarity per sample of the flattened attributions.
function M.cosine(a, b) return similarity("cosine", a, b) end

--- SSIM (Wang et al. 2004) of maps [N, H, W] or [N, 1, H, W] (H, W >= 11) with an
-- 11x11 Gaussian window (sigma 1.5); opts.data_range (default max - min of each pair).
function M.ssim(a, b, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("ssim", "options must be a table, got %s", args.what(opts)) end
  local L = common.num("metrics.ssim", opts, "data_range", 0)
  if opts.data_range ~= nil and L <= 0 then fail("ssim", "data_range must be > 0, got %g", L) end
  return similarity("ssim", a, b, L)
end

return M
