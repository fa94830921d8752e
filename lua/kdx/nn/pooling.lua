--- Pooling layers over [N, C, H, W]: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d.
-- @module kdx.nn.pooling
local kdx = require "kdx"
local Module = require "kdx.nn.module"

local M = {}

local function fmt(v) return type(v) == "table" and "(" .. table.concat(v, ", ") .. ")" or tostring(v) end

--- MaxPool2d(kernel_size, {stride = kernel_size, padding = 0, dilation = 1, ceil_mode = false}).
M.MaxPool2d = Module:extend("MaxPool2d")
function M.MaxPool2d:init(k, opts)
  self.kernel_size, self.opts = k, {}
  for key, v in pairs(opts or {}) do self.opts[key] = v end
  self.opts.return_indices = false -- the layer returns the values only
end
function M.MaxPool2d:forward(x) return kdx.max_pool2d(x, self.kernel_size, self.opts) end
function M.MaxPool2d:extra_repr() return "kernel_size=" .. fmt(self.kernel_size) end

--- AvgPool2d(kernel_size, {stride = kernel_size, padding = 0, ceil_mode = false, count_include_pad = true}).
M.AvgPool2d = Module:extend("AvgPool2d")
function M.AvgPool2d:init(k, opts) self.kernel_size, self.opts = k, opts or {} end
function M.AvgPool2d:forward(x) return kdx.avg_pool2d(x, self.kernel_size, self.opts) end
function M.AvgPool2d:extra_repr() return "kernel_size=" .. fmt(self.kernel_size) end

--- AdaptiveAvgPool2d(output_size), an integer or {h, w}.
M.AdaptiveAvgPool2d = Module:extend("AdaptiveAvgPool2d")
function M.AdaptiveAvgPool2d:init(size) self.output_size = size end
function M.AdaptiveAvgPool2d:forward(x) return kdx.adaptive_avg_pool2d(x, self.output_size) end
function M.AdaptiveAvgPool2d:extra_repr() return "output_size=" .. fmt(self.output_size) end

return M
