--- y = x W^T + b, with W [out, in] as in PyTorch.
-- @classmod kdx.nn.Linear
local kdx = require "kdx"
local Module = require "kdx.nn.module"
local init = require "kdx.nn.initializers"

local Linear = Module:extend("Linear")

--- Linear(in_features, out_features, {bias = true, dtype = "float32"}); PyTorch's default initialisation.
function Linear:init(in_features, out_features, opts)
  opts = opts or {}
  for _, v in ipairs{in_features, out_features} do
    if math.type(v) ~= "integer" or v < 1 then
      error(("kdx.nn.Linear: sizes must be positive integers, got %s"):format(tostring(v)), 3)
    end
  end
  self.in_features, self.out_features = in_features, out_features
  local dt = opts.dtype or "float32"
  local w = self:register_parameter("weight", kdx.empty({out_features, in_features}, dt))
  init.kaiming_uniform_(w, {a = math.sqrt(5)})
  if opts.bias ~= false then
    local bound = 1 / math.sqrt(in_features)
    init.uniform_(self:register_parameter("bias", kdx.empty({out_features}, dt)), -bound, bound)
  end
end

function Linear:forward(x)
  if x:dim() == 2 and self.bias then return kdx.addmm(self.bias, x, self.weight:t()) end
  local y = kdx.matmul(x, self.weight:t())
  return self.bias and y + self.bias or y
end

function Linear:extra_repr()
  return ("in_features=%d, out_features=%d, bias=%s"):format(self.in_features, self.out_features, tostring(self.bias ~= nil))
end

return Linear
