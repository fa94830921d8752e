--- Adam and AdamW (decoupled weight decay), with AMSGrad, as torch.optim.
-- @module kdx.optim.adam
local kdx = require "kdx"
local core = require "kdx.core"
local Optimizer = require "kdx.optim.optimizer"

local M = {}

local function make(name, decoupled, wd)
  local cls = Optimizer.class(name,
    {betas = {0.9, 0.999}, eps = 1e-8, weight_decay = wd, amsgrad = false, maximize = false})
  function cls:update(p, grad, g, s)
    if not s.exp_avg then
      s.exp_avg, s.exp_avg_sq = kdx.zeros_like(p), kdx.zeros_like(p)
      if g.amsgrad then s.max_exp_avg_sq = kdx.zeros_like(p) end
    end
    s.step = s.step + 1
    core._adam_step(p, grad, s.exp_avg, s.exp_avg_sq, s.max_exp_avg_sq, s.step, g.lr, g.betas[1], g.betas[2],
      g.eps, g.weight_decay, decoupled, g.maximize)
  end
  M[name] = cls
end

--- Adam(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, amsgrad = false}).
make("Adam", false, 0)
--- AdamW(params, {lr = 1e-3, betas, eps, weight_decay = 1e-2, amsgrad}).
make("AdamW", true, 1e-2)
M.Adam.defaults.lr, M.AdamW.defaults.lr = 1e-3, 1e-3

return M
