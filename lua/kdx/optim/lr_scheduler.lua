--- Learning-rate schedules, stepped once per epoch (or per batch) as in
-- torch.optim.lr_scheduler: StepLR, MultiStepLR, ExponentialLR,
-- CosineAnnealingLR, LinearLR (warm-up), SequentialLR.
-- @module kdx.optim.lr_scheduler

local M = {}

local Scheduler = {}
Scheduler.__index = Scheduler

local function class(name, factor)
  local cls = setmetatable({__name = name, factor = factor}, {__index = Scheduler})
  cls.__index = cls
  return cls
end

-- base_lr per group; last_epoch starts at 0 with the initial lr applied.
local function new(cls, optimizer, fields)
  local self = setmetatable(fields, cls)
  self.optimizer, self.last_epoch = optimizer, 0
  self.base_lrs = {}
  for i, g in ipairs(optimizer.param_groups) do self.base_lrs[i] = g.initial_lr or g.lr end
  self:apply()
  return self
end

function Scheduler:apply()
  for i, g in ipairs(self.optimizer.param_groups) do g.lr = self:lr_at(self.base_lrs[i], self.last_epoch) end
end

--- Advances one step (epoch) and sets each group's lr.
function Scheduler:step()
  self.last_epoch = self.last_epoch + 1
  self:apply()
end

--- The current learning rates, one per group.
function Scheduler:get_last_lr()
  local out = {}
  for i, g in ipairs(self.optimizer.param_groups) do out[i] = g.lr end
  return out
end

--- {last_epoch = n}.
function Scheduler:state_dict() return {last_epoch = self.last_epoch} end

--- Restores a state dict.
function Scheduler:load_state_dict(sd)
  self.last_epoch = sd.last_epoch
  self:apply()
end

--- StepLR(optimizer, step_size, gamma = 0.1): lr = base * gamma^floor(epoch / step_size).
function M.StepLR(optimizer, step_size, gamma)
  local cls = class("StepLR")
  function cls:lr_at(base, e) return base * self.gamma ^ (e // self.step_size) end
  return new(cls, optimizer, {step_size = step_size, gamma = gamma or 0.1})
end

--- MultiStepLR(optimizer, milestones, gamma = 0.1): lr drops by gamma at each milestone epoch.
function M.MultiStepLR(optimizer, milestones, gamma)
  local cls = class("MultiStepLR")
  function cls:lr_at(base, e)
    local k = 0
    for _, m in ipairs(self.milestones) do if e >= m then k = k + 1 end end
    return base * self.gamma ^ k
  end
  return new(cls, optimizer, {milestones = milestones, gamma = gamma or 0.1})
end

--- ExponentialLR(optimizer, gamma): lr = base * gamma^epoch.
function M.ExponentialLR(optimizer, gamma)
  local cls = class("ExponentialLR")
  function cls:lr_at(base, e) return base * self.gamma ^ e end
  return new(cls, optimizer, {gamma = gamma})
end

--- CosineAnnealingLR(optimizer, T_max, eta_min = 0): eta_min + (base - eta_min)(1 + cos(pi e / T_max)) / 2.
function M.CosineAnnealingLR(optimizer, T_max, eta_min)
  local cls = class("CosineAnnealingLR")
  function cls:lr_at(base, e)
    return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * e / self.T_max)) / 2
  end
  return new(cls, optimizer, {T_max = T_max, eta_min = eta_min or 0})
end

--- LinearLR(optimizer, {start_factor = 1/3, end_factor = 1, total_iters = 5}): linear warm-up of the factor.
function M.LinearLR(optimizer, opts)
  opts = opts or {}
  local cls = class("LinearLR")
  function cls:lr_at(base, e)
    local t = math.min(e, self.total_iters) / self.total_iters
    return base * (self.start_factor + (self.end_factor - self.start_factor) * t)
  end
  return new(cls, optimizer, {start_factor = opts.start_factor or 1 / 3, end_factor = opts.end_factor or 1,
    total_iters = opts.total_iters or 5})
end

--- SequentialLR(optimizer, {s1, s2, ...}, milestones): runs s1 until the first milestone, then s2 (from its start), ...
function M.SequentialLR(optimizer, schedulers, milestones)
  local cls = class("SequentialLR")
  function cls:lr_at(base, e)
    local k, start = 1, 0
    for i, m in ipairs(self.milestones) do if e >= m then k, start = i + 1, m end end
    return self.schedulers[k]:lr_at(base, e - start)
  end
  return new(cls, optimizer, {schedulers = schedulers, milestones = milestones})
end

return M
