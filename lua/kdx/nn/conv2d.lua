--- 2-D convolution over [N, C, H, W] with weight [out, in/groups, kh, kw].
-- @classmod kdx.nn.Conv2d
local kdx = require "kdx"
local Module = require "kdx.nn.module"
local init = require "kdx.nn.initializers"

local Conv2d = Module:extend("Conv2d")

local function pair(v) return type(v) == "table" and v or {v, v} end

--- Conv2d(in_channels, out_channels, kernel_size, {stride = 1, padding = 0, dilation = 1, groups = 1, bias = true}).
function Conv2d:init(in_channels, out_channels, kernel_size, opts)
  opts = opts or {}
  local groups = opts.groups or 1
  if math.type(in_channels) ~= "integer" or math.type(out_channels) ~= "integer" or in_channels < 1 or out_channels < 1 then
    error("kdx.nn.Conv2d: channel counts must be positive integers", 3)
  end
  if in_channels % groups ~= 0 or out_channels % groups ~= 0 then
    error(("kdx.nn.Conv2d: groups=%d must divide in_channels=%d and out_channels=%d"):format(groups, in_channels, out_channels), 3)
  end
  local k = pair(kernel_size)
  self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
  self.opts = {stride = opts.stride or 1, padding = opts.padding or 0, dilation = opts.dilation or 1, groups = groups}
  local dt = opts.dtype or "float32"
  local w = self:register_parameter("weight", kdx.empty({out_channels, in_channels // groups, k[1], k[2]}, dt))
  init.kaiming_uniform_(w, {a = math.sqrt(5)})
  if opts.bias ~= false then
    local bound = 1 / math.sqrt(in_channels // groups * k[1] * k[2])
    init.uniform_(self:register_parameter("bias", kdx.empty({out_channels}, dt)), -bound, bound)
  end
end

function Conv2d:forward(x) return kdx.conv2d(x, self.weight, self.bias, self.opts) end

function Conv2d:extra_repr()
  local o = self.opts
  local function s(v) return type(v) == "table" and "(" .. table.concat(v, ", ") .. ")" or tostring(v) end
  return ("%d, %d, kernel_size=%s, stride=%s, padding=%s%s%s"):format(self.in_channels, self.out_channels,
    s(self.kernel_size), s(o.stride), s(o.padding), o.groups ~= 1 and ", groups=" .. o.groups or "",
    self.bias and "" or ", bias=false")
end

return Conv2d
