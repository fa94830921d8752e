--- Parameter initialisation as torch.nn.init: each fills a tensor in place
-- (outside the graph) from kdx's generator and returns it.
-- @module kdx.nn.init

local kdx = require "kdx"

local M = {}

--- fan_in and fan_out of a weight [out, in, k...] (PyTorch's rule).
function M.calculate_fan(t)
  local shape = t:shape()
  if #shape < 2 then error("kdx.nn.init: fan in and fan out need a tensor of at least 2 dims", 3) end
  local field = 1
  for i = 3, #shape do field = field * shape[i] end
  return shape[2] * field, shape[1] * field
end

--- The recommended gain of a nonlinearity ("relu", "leaky_relu", "tanh", "linear", ...).
function M.calculate_gain(nonlinearity, param)
  if nonlinearity == "relu" then return math.sqrt(2) end
  if nonlinearity == "tanh" then return 5 / 3 end
  if nonlinearity == "selu" then return 3 / 4 end
  if nonlinearity == "leaky_relu" then
    local slope = param or 0.01
    return math.sqrt(2 / (1 + slope * slope))
  end
  return 1 -- linear, conv, sigmoid
end

local function fill(t, f)
  kdx.no_grad(f)
  return t
end

--- Fills t uniformly from [a, b).
function M.uniform_(t, a, b) return fill(t, function() t:uniform_(a or 0, b or 1) end) end

--- Fills t from a normal distribution.
function M.normal_(t, mean, std) return fill(t, function() t:normal_(mean or 0, std or 1) end) end

--- Fills t with a constant.
function M.constant_(t, v) return fill(t, function() t:fill_(v) end) end

--- Fills t with zeros.
function M.zeros_(t) return M.constant_(t, 0) end

--- Fills t with ones.
function M.ones_(t) return M.constant_(t, 1) end

local function fan(t, mode)
  local fin, fout = M.calculate_fan(t)
  return (mode or "fan_in") == "fan_in" and fin or fout
end

--- Kaiming (He) uniform: bound = gain * sqrt(3 / fan). opts: a = 0, mode = "fan_in", nonlinearity = "leaky_relu".
function M.kaiming_uniform_(t, opts)
  opts = opts or {}
  local gain = M.calculate_gain(opts.nonlinearity or "leaky_relu", opts.a or 0)
  local bound = gain * math.sqrt(3 / fan(t, opts.mode))
  return M.uniform_(t, -bound, bound)
end

--- Kaiming (He) normal: std = gain / sqrt(fan).
function M.kaiming_normal_(t, opts)
  opts = opts or {}
  local gain = M.calculate_gain(opts.nonlinearity or "leaky_relu", opts.a or 0)
  return M.normal_(t, 0, gain / math.sqrt(fan(t, opts.mode)))
end

--- Xavier (Glorot) uniform: bound = gain * sqrt(6 / (fan_in + fan_out)).
function M.xavier_uniform_(t, gain)
  local fin, fout = M.calculate_fan(t)
  local bound = (gain or 1) * math.sqrt(6 / (fin + fout))
  return M.uniform_(t, -bound, bound)
end

--- Xavier (Glorot) normal: std = gain * sqrt(2 / (fan_in + fan_out)).
function M.xavier_normal_(t, gain)
  local fin, fout = M.calculate_fan(t)
  return M.normal_(t, 0, (gain or 1) * math.sqrt(2 / (fin + fout)))
end

return M
