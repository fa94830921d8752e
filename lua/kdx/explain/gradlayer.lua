--- kdx.explain, noise and layer methods: the noise tunnel (SmoothGrad,
-- SmoothGrad squared, VarGrad) over any method, GradientShap, and the
-- attributions to a hidden layer (Grad-CAM, Grad-CAM++, layer activation,
-- layer gradient x activation, layer integrated gradients, layer
-- conductance). The algorithms run in C (csrc/attr_noise.c,
-- csrc/attr_layer.c); this file checks arguments and builds the callbacks.
-- @module kdx.explain.gradlayer

local kdx = require "kdx"
local core = require("kdx.explain.common").core
local args = require "kdx.args"
local common = require "kdx.explain.common"
local fail, int, num = common.fail, common.int, common.num

local M = {}

local function batch_size(fname, o) return int(fname, o, "batch_size", 128, 1) end

local function options(fname, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail(fname, "options must be a table, got %s", args.what(opts)) end
  return opts
end

local function check_x(fname, x)
  if not kdx.is_tensor(x) then fail(fname, "x must be a tensor batch [N, ...], got %s", args.what(x)) end
end

-- ------------------------------------------------------------ noise tunnel --

local NT = {smoothgrad = true, smoothgrad_sq = true, vargrad = true}

-- Options of the tunnel itself: not passed on to the inner method.
local TUNNEL_KEYS = {nt_type = true, samples = true, stdev = true, absolute = true, seed = true}

-- The targets of rows that copy samples ids (1-based int64 tensor).
local function row_targets(target, ids)
  if target == nil or type(target) == "number" or type(target) == "function" then return target end
  local t = kdx.is_tensor(target) and target or kdx.tensor(target, "int64")
  if t:numel() == 1 then return t end
  return t:reshape{t:numel()}:index_select(1, ids)
end

--- Noise tunnel (Smilkov et al. 2017; Captum's NoiseTunnel) over any attribution
-- method: `method` (a kdx.explain method name or a function(model, xb, opts) ->
-- attr) at opts.samples = 25 noisy copies x + N(0, s^2) of each sample, with
-- s = opts.stdev = 0.15 times the sample's max - min (opts.absolute = true: s =
-- stdev); opts.nt_type = "smoothgrad" (mean), "smoothgrad_sq" (mean of squares)
-- or "vargrad" (variance). Other options go to the method.
function M.noise_tunnel(method, model, x, opts)
  local fname = "noise_tunnel"
  opts = options(fname, opts)
  local inner = method
  if type(method) == "string" then
    inner = require("kdx.explain")[method]
    if type(inner) ~= "function" or method == "noise_tunnel" or method:sub(1, 1) == "_" then
      fail(fname, "method must be a kdx.explain method name or a function, got %q", method)
    end
  elseif type(method) ~= "function" then
    fail(fname, "method must be a kdx.explain method name or a function, got %s", args.what(method))
  end
  check_x(fname, x)
  local nt = opts.nt_type or "smoothgrad"
  if not NT[nt] then
    fail(fname, "nt_type must be smoothgrad, smoothgrad_sq or vargrad, got %s", args.what(nt))
  end
  local samples = int(fname, opts, "samples", 25, 1)
  local stdev = num(fname, opts, "stdev", 0.15)
  if stdev < 0 then fail(fname, "stdev must be >= 0, got %s", tostring(stdev)) end
  local bs = batch_size(fname, opts)
  local seed = common.seed(fname, opts)
  local o = {}
  for k, v in pairs(opts) do if not TUNNEL_KEYS[k] then o[k] = v end end
  local target = opts.target
  local function attribute(xb, ids)
    local oo = {}
    for k, v in pairs(o) do oo[k] = v end
    oo.target = row_targets(target, ids)
    return (inner(model, xb, oo))
  end
  return core._noise_tunnel(attribute, x, nt, samples, stdev, opts.absolute == true, seed, bs)
end

--- SmoothGrad: the noise tunnel over saliency with its sign kept (abs = false,
-- as Smilkov et al. average raw gradients; pass abs = true for Captum's default
-- saliency). Options as noise_tunnel.
function M.smoothgrad(model, x, opts)
  opts = options("smoothgrad", opts)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.abs == nil then o.abs = false end
  return M.noise_tunnel("saliency", model, x, o)
end

-- ------------------------------------------------------------ GradientShap --

--- GradientShap (expected gradients; Captum's GradientShap): opts.baselines a
-- distribution [B, ...] (or a number for one constant baseline), required;
-- opts.samples = 5 draws per sample of a baseline row and alpha ~ U(0, 1),
-- inputs noised by N(0, opts.stdev^2) (default 0, absolute as Captum); attr =
-- mean of grad f(b + alpha (x - b)) * (x - b). Returns attr and the gap
-- sum(attr) - (f(x) - mean_b f(b)) per sample.
function M.gradient_shap(model, x, opts)
  local fname = "gradient_shap"
  local m, target, o = common.prepare(fname, model, x, opts)
  local base = o.baselines
  if base == nil then fail(fname, "opts.baselines (a tensor [B, ...] or a number) is required") end
  if type(base) == "number" then
    local shape = x:shape()
    shape[1] = 1
    base = kdx.full(shape, base, x:dtype())
  elseif not kdx.is_tensor(base) then
    fail(fname, "baselines must be a tensor [B, ...] or a number, got %s", args.what(base))
  elseif base:dim() == x:dim() - 1 then
    local shape = base:shape()
    table.insert(shape, 1, 1)
    base = base:reshape(shape) -- one baseline of the sample's shape
  end
  local samples = int(fname, o, "samples", 5, 1)
  local stdev = num(fname, o, "stdev", 0)
  if stdev < 0 then fail(fname, "stdev must be >= 0, got %s", tostring(stdev)) end
  return core._gradient_shap(m, x, base, target, samples, stdev, common.seed(fname, o), batch_size(fname, o))
end

-- ------------------------------------------------------------ layer methods --

-- The layer runner the C side calls: run(xb, replace|nil) -> outputs, layer
-- output. A forward hook on the layer replaces its output when asked (the
-- capture of forward_with sees the replaced value). A target function is
-- applied to the outputs here. Returns run, target, opts.
local function layer_model(fname, model, x, opts)
  opts = options(fname, opts)
  local mt = getmetatable(model)
  if type(model) ~= "table" or type(model.named_modules) ~= "function" or type(model.forward_with) ~= "function"
    or not (mt and mt.__call) then
    fail(fname, "model must be a module (kdx.nn.Module) with a named submodule, got %s", args.what(model))
  end
  check_x(fname, x)
  local name = opts.layer
  if type(name) ~= "string" then
    fail(fname, "opts.layer must be the name of a submodule (as model:named_modules() gives), got %s", args.what(name))
  end
  local layer = model:get_submodule(name)
  if not layer then
    local names = {}
    for n in model:named_modules() do if n ~= "" then names[#names + 1] = n end end
    fail(fname, "no submodule named %q (submodules: %s)", name, table.concat(names, ", "))
  end
  local target = opts.target
  local pick
  if type(target) == "function" then pick, target = target, nil end
  local function run(xb, replace)
    local handle
    if replace then handle = layer:register_forward_hook(function() return replace end) end
    local ok, out, store = pcall(model.forward_with, model, xb, {name})
    if handle then handle.remove() end
    if not ok then error(out, 0) end
    local act = store[name]
    if act == nil then error(("layer %q was not called by the model's forward"):format(name), 0) end
    if pick then out = pick(out) end
    return out, act
  end
  return run, target, opts
end

local function path_baseline(x, base)
  if type(base) == "number" then return kdx.full(x:shape(), base, x:dtype()) end
  return base
end

--- Grad-CAM (Selvaraju et al. 2017) at opts.layer: w_k = spatial mean of
-- d f_target / d A_k, map = ReLU(sum_k w_k A_k) (opts.relu = true; false keeps
-- the sign as Captum's LayerGradCam default), [N, 1, h, w] at the layer's size,
-- or [N, 1, H, W] bilinearly upsampled to x's size with opts.upsample = true.
function M.gradcam(model, x, opts)
  local run, target, o = layer_model("gradcam", model, x, opts)
  local h, w = 0, 0
  if o.upsample then
    if x:dim() ~= 4 then fail("gradcam", "upsample needs x [N, C, H, W], got %d dims", x:dim()) end
    h, w = x:size(3), x:size(4)
  end
  return core._gradcam(run, x, target, false, o.relu ~= false, h, w, batch_size("gradcam", o))
end

--- Grad-CAM++ (Chattopadhay et al. 2018, as pytorch-grad-cam): weights
-- w_k = sum_ij relu(g_ij) a_ij with a = g^2 / (2 g^2 + sum_ij A_ij g^3 + 1e-6).
-- Options and result as gradcam.
function M.gradcam_pp(model, x, opts)
  local run, target, o = layer_model("gradcam_pp", model, x, opts)
  local h, w = 0, 0
  if o.upsample then
    if x:dim() ~= 4 then fail("gradcam_pp", "upsample needs x [N, C, H, W], got %d dims", x:dim()) end
    h, w = x:size(3), x:size(4)
  end
  return core._gradcam(run, x, target, true, o.relu ~= false, h, w, batch_size("gradcam_pp", o))
end

--- The output of opts.layer for each sample (Captum's LayerActivation).
function M.layer_activation(model, x, opts)
  local run, target, o = layer_model("layer_activation", model, x, opts)
  return core._layer_activation(run, x, target, false, batch_size("layer_activation", o))
end

--- Layer gradient x activation: A * d f_target / d A at opts.layer (Captum's
-- LayerGradientXActivation).
function M.layer_gradient_x_activation(model, x, opts)
  local fname = "layer_gradient_x_activation"
  local run, target, o = layer_model(fname, model, x, opts)
  return core._layer_activation(run, x, target, true, batch_size(fname, o))
end

--- Layer integrated gradients (Captum's LayerIntegratedGradients): IG in the
-- space of opts.layer's output, from its value at opts.baseline (default
-- zeros) to its value at x, applied by replacing the layer's output; steps =
-- 50, method = "gausslegendre" as integrated_gradients. Returns attributions of
-- the layer's shape and the gap sum(attr) - (f(x) - f(baseline)) per sample.
function M.layer_integrated_gradients(model, x, opts)
  local fname = "layer_integrated_gradients"
  local run, target, o = layer_model(fname, model, x, opts)
  return core._layer_path("ig", run, x, path_baseline(x, o.baseline), target, int(fname, o, "steps", 50, 1),
    o.method or "gausslegendre", batch_size(fname, o))
end

--- Layer conductance (Dhamdhere et al. 2018; Captum's LayerConductance): the
-- sum over steps + 1 points of the input path of (A(alpha_{k+1}) - A(alpha_k))
-- * d f / d A(alpha_k); steps = 50, method = "gausslegendre", baseline as
-- layer_integrated_gradients. Returns attributions of the layer's shape and
-- the gap sum(attr) - (f(x) - f(baseline)).
function M.layer_conductance(model, x, opts)
  local fname = "layer_conductance"
  local run, target, o = layer_model(fname, model, x, opts)
  return core._layer_path("conductance", run, x, path_baseline(x, o.baseline), target,
    int(fname, o, "steps", 50, 1), o.method or "gausslegendre", batch_size(fname, o))
end

return M
