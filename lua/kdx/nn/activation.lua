--- Parameter-free elementwise layers: ReLU, LeakyReLU, GELU, ELU, Softplus,
-- Tanh, Sigmoid, Softmax, LogSoftmax, Identity. They share one small
-- constructor, so they live together rather than one class per file.
-- @module kdx.nn.activation
local Module = require "kdx.nn.module"

local M = {}

-- A layer class calling apply(self, x); params(...) turns constructor
-- arguments into fields; show(self) prints them.
local function layer(name, apply, params, show)
  local cls = Module:extend(name)
  function cls:init(...) if params then params(self, ...) end end
  function cls:forward(x) return apply(self, x) end
  if show then cls.extra_repr = show end
  M[name] = cls
end

layer("ReLU", function(_, x) return x:relu() end)
layer("Tanh", function(_, x) return x:tanh() end)
layer("Sigmoid", function(_, x) return x:sigmoid() end)
layer("Identity", function(_, x) return x end)
layer("LeakyReLU", function(s, x) return x:leaky_relu(s.negative_slope) end,
  function(s, slope) s.negative_slope = slope or 0.01 end,
  function(s) return ("negative_slope=%g"):format(s.negative_slope) end)
layer("GELU", function(s, x) return x:gelu(s.approximate) end,
  function(s, approximate) s.approximate = approximate or "none" end,
  function(s) return ("approximate=%q"):format(s.approximate) end)
layer("ELU", function(s, x) return x:elu(s.alpha) end,
  function(s, alpha) s.alpha = alpha or 1 end,
  function(s) return ("alpha=%g"):format(s.alpha) end)
layer("Softplus", function(s, x) return x:softplus(s.beta, s.threshold) end,
  function(s, beta, threshold) s.beta, s.threshold = beta or 1, threshold or 20 end,
  function(s) return ("beta=%g, threshold=%g"):format(s.beta, s.threshold) end)
layer("Softmax", function(s, x) return x:softmax(s.dim) end,
  function(s, dim) s.dim = dim or -1 end,
  function(s) return ("dim=%d"):format(s.dim) end)
layer("LogSoftmax", function(s, x) return x:log_softmax(s.dim) end,
  function(s, dim) s.dim = dim or -1 end,
  function(s) return ("dim=%d"):format(s.dim) end)

return M
