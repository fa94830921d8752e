--- Flattens dims start_dim..end_dim (default 2..-1: all but the batch dim).
-- @classmod kdx.nn.Flatten
local Module = require "kdx.nn.module"

local Flatten = Module:extend("Flatten")

--- Flatten(start_dim = 2, end_dim = -1) (1-based dims: PyTorch's default start_dim=1).
function Flatten:init(start_dim, end_dim) self.start_dim, self.end_dim = start_dim or 2, end_dim or -1 end
function Flatten:forward(x) return x:flatten(self.start_dim, self.end_dim) end
function Flatten:extra_repr() return ("start_dim=%d, end_dim=%d"):format(self.start_dim, self.end_dim) end

return Flatten
