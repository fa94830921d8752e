--- Layer normalisation over the last dims.
-- @classmod kdx.nn.LayerNorm
local kdx = require "kdx"
local Module = require "kdx.nn.module"

local LayerNorm = Module:extend("LayerNorm")

--- LayerNorm(normalized_shape, {eps = 1e-5, elementwise_affine = true}); a size or a table of sizes.
function LayerNorm:init(shape, opts)
  opts = opts or {}
  self.normalized_shape = type(shape) == "table" and shape or {shape}
  self.eps = opts.eps or 1e-5
  local dt = opts.dtype or "float32"
  if opts.elementwise_affine ~= false then
    self:register_parameter("weight", kdx.ones(self.normalized_shape, dt))
    self:register_parameter("bias", kdx.zeros(self.normalized_shape, dt))
  end
end

function LayerNorm:forward(x) return kdx.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps) end

function LayerNorm:extra_repr()
  return ("{%s}, eps=%g"):format(table.concat(self.normalized_shape, ", "), self.eps)
end

return LayerNorm
