--- Inverted dropout: zeroes elements with probability p while training.
-- @classmod kdx.nn.Dropout
local kdx = require "kdx"
local Module = require "kdx.nn.module"

local Dropout = Module:extend("Dropout")

--- Dropout(p = 0.5).
function Dropout:init(p)
  p = p or 0.5
  if type(p) ~= "number" or p < 0 or p > 1 then error("kdx.nn.Dropout: p must be in [0, 1]", 3) end
  self.p = p
end

function Dropout:forward(x)
  if not self.training or self.p == 0 then return x end
  return (kdx.dropout(x, self.p, true))
end

function Dropout:extra_repr() return ("p=%g"):format(self.p) end

return Dropout
