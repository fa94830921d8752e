--- Utilities over parameters.
-- @module kdx.nn.utils
local kdx = require "kdx"

local M = {}

--- Scales the gradients of params so their total p-norm is at most max_norm
-- (as torch.nn.utils.clip_grad_norm_); returns the norm before clipping.
function M.clip_grad_norm_(params, max_norm, norm_type)
  norm_type = norm_type or 2
  local total = 0
  local grads = {}
  for _, p in ipairs(params) do
    local g = p.grad
    if g then grads[#grads + 1] = g end
  end
  kdx.no_grad(function()
    if norm_type == math.huge then
      for _, g in ipairs(grads) do total = math.max(total, g:abs():max():item()) end
    else
      for _, g in ipairs(grads) do total = total + g:abs():pow(norm_type):sum():item() end
      total = total ^ (1 / norm_type)
    end
    local scale = max_norm / (total + 1e-6)
    if scale < 1 then
      for _, g in ipairs(grads) do g:mul_(scale) end
    end
  end)
  return total
end

return M
