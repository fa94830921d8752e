--- kdx.explain.lrp: layer-wise relevance propagation (Bach et al. 2015) with
-- Zennit's rules and composites, for models that are chains of layers
-- (Sequentials, possibly nested). The Lua side only walks the model into a
-- list of layer tables; the rules run in C (csrc/attr_lrp.c).
-- @module kdx.explain.lrp

local kdx = require "kdx"
local core = require("kdx.explain.common").core
local args = require "kdx.args"
local Module = require "kdx.nn.module"
local common = require "kdx.explain.common"
local Sequential = require("kdx.nn.container").Sequential

local fail = common.fail

local M = {}

local COMPOSITES = {epsilon_plus = true, epsilon_gamma_box = true, epsilon_plus_flat = true}
local RULES = {"epsilon", "gamma", "zplus", "alpha1beta0", "zbox", "flat", "wsquare", "norm", "gradient", "pass"}
local IS_RULE = {}
for _, r in ipairs(RULES) do IS_RULE[r] = true end

-- A value as a message shows it: strings quoted, else their type.
local function show(v) return type(v) == "string" and ("%q"):format(v) or args.what(v) end

local function class_of(m) return getmetatable(m).__name end

-- The engine's description of one leaf module (nil for an unsupported one).
local function describe(m)
  local t = class_of(m)
  if t == "Linear" then
    return {type = "Linear", weight = m.weight, bias = m.bias}
  elseif t == "Conv2d" then
    local o = m.opts
    return {type = "Conv2d", weight = m.weight, bias = m.bias, stride = o.stride, padding = o.padding,
      dilation = o.dilation, groups = o.groups}
  elseif t == "BatchNorm1d" or t == "BatchNorm2d" then
    return {type = "BatchNorm", weight = m.weight, bias = m.bias, running_mean = m.running_mean,
      running_var = m.running_var, eps = m.eps}
  elseif t == "MaxPool2d" or t == "AvgPool2d" then
    local o = m.opts or {}
    return {type = t, kernel_size = m.kernel_size, stride = o.stride, padding = o.padding, dilation = o.dilation,
      ceil_mode = o.ceil_mode, count_include_pad = o.count_include_pad}
  elseif t == "AdaptiveAvgPool2d" then
    return {type = t, output_size = m.output_size}
  elseif t == "Flatten" then
    return {type = "Flatten", start_dim = m.start_dim, end_dim = m.end_dim}
  elseif t == "ReLU" then
    return {type = "ReLU"}
  elseif t == "Dropout" or t == "Identity" then
    return {type = "Identity"}
  end
end

-- Appends the leaves of m in forward order; the children of a Sequential (or
-- of a class that keeps Sequential's forward) are walked, anything else must
-- be a supported layer.
local function walk(m, name, out)
  if m.forward == Sequential.forward then
    for child_name, child in m:named_children() do
      walk(child, name == "" and child_name or name .. "." .. child_name, out)
    end
    return
  end
  local d = describe(m)
  local label = name == "" and "(the model)" or ("%q"):format(name)
  if not d then
    fail("lrp", "the model must be a chain of layers (nested Sequentials of Linear, Conv2d, ReLU, MaxPool2d, "
      .. "AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d/2d, Flatten, Dropout, Identity); module %s is a %s", label, class_of(m))
  end
  if d.type == "BatchNorm" and not d.running_mean then
    fail("lrp", "BatchNorm module %s keeps no running statistics, so it cannot be folded", label)
  end
  d.name, d.class = name == "" and class_of(m) or name, class_of(m)
  out[#out + 1] = d
end

-- opts.rules: layer name or class name -> rule name (the name wins).
local function apply_rules(layers, rules)
  if rules == nil then return end
  if type(rules) ~= "table" then fail("lrp", "rules must be a table, got %s", args.what(rules)) end
  for key, r in pairs(rules) do
    if not IS_RULE[r] then
      fail("lrp", "unknown rule %s for %s (rules: %s)", show(r), show(key), table.concat(RULES, ", "))
    end
  end
  local used = {}
  for _, d in ipairs(layers) do
    if rules[d.class] ~= nil then used[d.class] = true end -- known even where a name overrides it
    local key = rules[d.name] ~= nil and d.name or (rules[d.class] ~= nil and d.class or nil)
    if key then d.rule, used[key] = rules[key], true end
  end
  for key in pairs(rules) do
    if not used[key] then fail("lrp", "rules: %s names no layer or layer type of the model", show(key)) end
  end
end

local function bound(v, key, x)
  if v == nil then return nil end
  if type(v) == "number" then return kdx.full({1}, v, x:dtype()) end
  if not kdx.is_tensor(v) then fail("lrp", "%s must be a number or a tensor, got %s", key, args.what(v)) end
  return v
end

--- LRP relevance of x for the target output of a chain model, and a table of
-- per-layer rows {name, type, rule, relevance_in [N], relevance_out [N]}.
-- opts: target, composite = "epsilon_plus" (or "epsilon_gamma_box",
-- "epsilon_plus_flat"), rules (name or class -> rule), low, high (z^B
-- bounds), epsilon = 1e-6, stabilizer = 1e-6 (the other rules'), gamma = 0.25,
-- batch_size = 128.
function M.lrp(model, x, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("lrp", "options must be a table, got %s", args.what(opts)) end
  if not Module.is_module(model) then fail("lrp", "model must be a kdx.nn module (a chain of layers), got %s", args.what(model)) end
  if not kdx.is_tensor(x) then fail("lrp", "x must be a tensor batch [N, ...], got %s", args.what(x)) end
  if type(opts.target) == "function" then
    fail("lrp", "target must be a class or classes: relevance starts from one output, not a function of them")
  end
  local composite = opts.composite or "epsilon_plus"
  if not COMPOSITES[composite] then
    fail("lrp", "unknown composite %s (epsilon_plus, epsilon_gamma_box, epsilon_plus_flat)", show(composite))
  end
  local layers = {}
  walk(model, "", layers)
  apply_rules(layers, opts.rules)
  local eps = common.num("lrp", opts, "epsilon", 1e-6)
  local stabilizer = common.num("lrp", opts, "stabilizer", 1e-6)
  local gamma = common.num("lrp", opts, "gamma", 0.25)
  local bs = common.int("lrp", opts, "batch_size", 128, 1)
  local rel, sums, rules = core._lrp(layers, x, opts.target, composite, eps, stabilizer, gamma, bound(opts.low, "low", x),
    bound(opts.high, "high", x), bs)
  local rows = {}
  for i, d in ipairs(layers) do
    rows[i] = {name = d.name, type = d.class, rule = rules[i], relevance_in = sums:select(1, i),
      relevance_out = sums:select(1, i + 1)}
  end
  return rel, rows
end

--- The weight and bias of a Linear or Conv2d module with the eval-mode
-- BatchNorm module after it folded in (new tensors; neither module changes).
function M.lrp_fold_batchnorm(layer, bn)
  if not Module.is_module(layer) or (class_of(layer) ~= "Linear" and class_of(layer) ~= "Conv2d") then
    fail("lrp_fold_batchnorm", "layer must be a Linear or Conv2d module, got %s", args.what(layer))
  end
  if not Module.is_module(bn) or not class_of(bn):match("^BatchNorm") then
    fail("lrp_fold_batchnorm", "bn must be a BatchNorm1d or BatchNorm2d module, got %s", args.what(bn))
  end
  if not bn.running_mean then fail("lrp_fold_batchnorm", "bn keeps no running statistics") end
  return core._lrp_fold_batchnorm(layer.weight, layer.bias, bn.running_mean, bn.running_var, bn.weight, bn.bias,
    bn.eps)
end

return M
