--- kdx: knowledge distillation fused with model explanation.
-- `require "kdx"` loads the C core (tensors and kernels) and adds what is
-- better said in Lua: printing, and submodules that load on first use.
-- @module kdx

local core = require "kdx.core"

local kdx = {}
for name, value in pairs(core) do
  if name:sub(1, 1) ~= "_" then kdx[name] = value end
end

kdx._VERSION = core._VERSION
--- The tensor methods table: add a function here to give every tensor a method.
kdx.Tensor = core._methods

kdx.debug = {
  --- Number of live tensor objects in the process (for leak checks).
  live_tensors = core.live_tensors,
}

-- ---------------------------------------------------------------- printing --

local EDGE, THRESHOLD = 3, 1000

-- The values that will be shown, with "..." where a long dim is cut.
local function shown(t, summarize)
  if t:dim() == 0 then return t:item() end
  local n = t:size(1)
  local out = {}
  local function add(i) out[#out + 1] = shown(t:select(1, i), summarize) end
  if summarize and n > 2 * EDGE then
    for i = 1, EDGE do add(i) end
    out[#out + 1] = "..."
    for i = n - EDGE + 1, n do add(i) end
  else
    for i = 1, n do add(i) end
  end
  return out
end

local function flat(v, acc)
  if type(v) == "table" then
    for _, x in ipairs(v) do flat(x, acc) end
  elseif v ~= "..." then
    acc[#acc + 1] = v
  end
  return acc
end

-- One format for every element, chosen as PyTorch does: integers plainly,
-- floats with 4 decimals, scientific notation for very large or small values.
local function formatter(values, dtype)
  if dtype == "int64" then return function(x) return string.format("%d", x) end end
  local maxabs, minabs, integral = 0, math.huge, true
  for _, x in ipairs(values) do
    if x == x and x ~= math.huge and x ~= -math.huge then
      local a = math.abs(x)
      if a > maxabs then maxabs = a end
      if a > 0 and a < minabs then minabs = a end
      if x ~= math.floor(x) then integral = false end
    end
  end
  local fmt
  if integral and maxabs < 1e8 then
    fmt = "%.0f."
  elseif maxabs >= 1e8 or (minabs < 1e-4 and minabs ~= math.huge) then
    fmt = "%.4e"
  else
    fmt = "%.4f"
  end
  return function(x)
    if x ~= x then return "nan" end
    if x == math.huge then return "inf" end
    if x == -math.huge then return "-inf" end
    return string.format(fmt, x)
  end
end

local function render(v, fmt, width, indent)
  if type(v) ~= "table" then
    if v == "..." then return "..." end
    local s = fmt(v)
    return string.rep(" ", width - #s) .. s
  end
  if #v == 0 then return "[]" end
  local nested = type(v[1]) == "table" or (v[1] == "..." and type(v[2]) == "table")
  local parts = {}
  for i, x in ipairs(v) do parts[i] = render(x, fmt, width, indent + 1) end
  if not nested then return "[" .. table.concat(parts, ", ") .. "]" end
  return "[" .. table.concat(parts, ",\n" .. string.rep(" ", indent + 1)) .. "]"
end

local function number_str(x, dtype)
  if dtype == "int64" then return string.format("%d", x) end
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  return string.format(dtype == "float32" and "%.7g" or "%.15g", x)
end

local function tostring_tensor(t)
  local ok, ndim = pcall(t.dim, t)
  if not ok then return "tensor(closed)" end
  if ndim == 0 then return number_str(t:item(), t:dtype()) end
  local vals = shown(t, t:numel() > THRESHOLD)
  local fmt = formatter(flat(vals, {}), t:dtype())
  local width = 0
  for _, x in ipairs(flat(vals, {})) do width = math.max(width, #fmt(x)) end
  local prefix = "tensor("
  local body = render(vals, fmt, width, #prefix)
  return string.format("%s%s, shape={%s}, dtype=%s)", prefix, body, table.concat(t:shape(), ","), t:dtype())
end

core._meta.__tostring = tostring_tensor

-- ------------------------------------------------------------- submodules --

-- Submodules load on first use, so `require "kdx"` stays cheap.
local lazy = {
  autograd = {"kdx.autograd"},
  nn = {"kdx.nn"},
  optim = {"kdx.optim"},
  data = {"kdx.data"},
  viz = {"kdx.viz"},
  explain = {"kdx.explain"},
  distill = {"kdx.distill"},
  report = {"kdx.report"},
  surrogate = {"kdx.surrogate"},
  dist = {"kdx.dist"},
  train = {"kdx.train", "train"},
  evaluate = {"kdx.train", "evaluate"},
}
setmetatable(kdx, {
  __index = function(t, key)
    local w = lazy[key]
    if w then
      local m = require(w[1])
      if w[2] then m = m[w[2]] end
      rawset(t, key, m)
      return m
    end
  end,
})

return kdx
