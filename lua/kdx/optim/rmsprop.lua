--- RMSprop with momentum and the centered variant, as torch.optim.RMSprop.
-- @classmod kdx.optim.RMSprop
local kdx = require "kdx"
local core = require "kdx.core"
local Optimizer = require "kdx.optim.optimizer"

--- RMSprop(params, {lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0, centered = false}).
local RMSprop = Optimizer.class("RMSprop",
  {lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0, centered = false, maximize = false})

function RMSprop:update(p, grad, g, s)
  if not s.square_avg then
    s.square_avg = kdx.zeros_like(p)
    if g.momentum > 0 then s.momentum_buffer = kdx.zeros_like(p) end
    if g.centered then s.grad_avg = kdx.zeros_like(p) end
  end
  s.step = s.step + 1
  core._rmsprop_step(p, grad, s.square_avg, s.momentum_buffer, s.grad_avg, g.lr, g.alpha, g.eps, g.weight_decay,
    g.momentum, g.maximize)
end

return RMSprop
