--- Stochastic gradient descent with momentum, dampening, Nesterov and weight
-- decay, as torch.optim.SGD.
-- @classmod kdx.optim.SGD
local kdx = require "kdx"
local core = require "kdx.core"
local Optimizer = require "kdx.optim.optimizer"

--- SGD(params, {lr, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false, maximize = false}).
local SGD = Optimizer.class("SGD",
  {momentum = 0, dampening = 0, weight_decay = 0, nesterov = false, maximize = false})

function SGD.check(self, fname)
  for _, g in ipairs(self.param_groups) do
    if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
      error(fname .. ": nesterov needs momentum > 0 and dampening 0", 4)
    end
  end
end

function SGD:update(p, grad, g, s)
  local first = s.momentum_buffer == nil
  if g.momentum ~= 0 and first then s.momentum_buffer = kdx.zeros_like(p) end
  s.step = s.step + 1
  core._sgd_step(p, grad, s.momentum_buffer, g.lr, g.momentum, g.dampening, g.weight_decay, g.nesterov,
    g.maximize, first)
end

return SGD
