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

-- Argument checks: errors name kdx.optim.<Scheduler> at the caller's line.
-- Whole numbers may come as floats (4.0), as from JSON or Python fixtures.
local function whole(v) return type(v) == "number" and v == math.floor(v) and v < math.huge end
-- (fail and the check_* helpers are called from a constructor: level 3 is its caller)
local function fail_at(level, name, fmt, ...) error(("kdx.optim.%s: " .. fmt):format(name, ...), level + 1) end
local function fail(name, fmt, ...) fail_at(3, name, fmt, ...) end
local function check_optimizer(name, optimizer)
  if type(optimizer) ~= "table" or type(optimizer.param_groups) ~= "table" then
    fail_at(3, name, "argument 1 must be an optimizer, got %s", type(optimizer))
  end
end
local function check_number(name, what, v, positive)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge or (positive and v <= 0) then
    fail_at(3, name, "%s must be a %snumber, got %s", what, positive and "positive " or "finite ", tostring(v))
  end
end
local function check_count(name, what, v)
  if not whole(v) or v < 1 then fail_at(3, name, "%s must be a positive integer, got %s", what, tostring(v)) end
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
  check_optimizer("StepLR", optimizer)
  check_count("StepLR", "step_size", step_size)
  if gamma ~= nil then check_number("StepLR", "gamma", gamma, true) end
  local cls = class("StepLR")
  function cls:lr_at(base, e) return base * self.gamma ^ (e // self.step_size) end
  return new(cls, optimizer, {step_size = step_size, gamma = gamma or 0.1})
end

--- MultiStepLR(optimizer, milestones, gamma = 0.1): lr drops by gamma at each milestone epoch.
function M.MultiStepLR(optimizer, milestones, gamma)
  check_optimizer("MultiStepLR", optimizer)
  if type(milestones) ~= "table" then fail("MultiStepLR", "milestones must be a list of epochs, got %s", type(milestones)) end
  for i, m in ipairs(milestones) do
    if not whole(m) or m < 0 or (i > 1 and m <= milestones[i - 1]) then
      fail("MultiStepLR", "milestones must be increasing non-negative integers (milestones[%d] = %s)", i, tostring(m))
    end
  end
  if gamma ~= nil then check_number("MultiStepLR", "gamma", gamma, true) end
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
  check_optimizer("ExponentialLR", optimizer)
  check_number("ExponentialLR", "gamma", gamma, true)
  local cls = class("ExponentialLR")
  function cls:lr_at(base, e) return base * self.gamma ^ e end
  return new(cls, optimizer, {gamma = gamma})
end

--- CosineAnnealingLR(optimizer, T_max, eta_min = 0): eta_min + (base - eta_min)(1 + cos(pi e / T_max)) / 2.
function M.CosineAnnealingLR(optimizer, T_max, eta_min)
  check_optimizer("CosineAnnealingLR", optimizer)
  check_number("CosineAnnealingLR", "T_max", T_max, true)
  if eta_min ~= nil then check_number("CosineAnnealingLR", "eta_min", eta_min) end
  local cls = class("CosineAnnealingLR")
  function cls:lr_at(base, e)
    return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * e / self.T_max)) / 2
  end
  return new(cls, optimizer, {T_max = T_max, eta_min = eta_min or 0})
end

--- LinearLR(optimizer, {start_factor = 1/3, end_factor = 1, total_iters = 5}): linear warm-up of the factor.
function M.LinearLR(optimizer, opts)
  opts = opts or {}
  check_optimizer("LinearLR", optimizer)
  if type(opts) ~= "table" then fail("LinearLR", "options must be a table, got %s", type(opts)) end
  if opts.start_factor ~= nil then check_number("LinearLR", "start_factor", opts.start_factor, true) end
  if opts.end_factor ~= nil then check_number("LinearLR", "end_factor", opts.end_factor) end
  if opts.total_iters ~= nil then check_count("LinearLR", "total_iters", opts.total_iters) end
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
  check_optimizer("SequentialLR", optimizer)
  if type(schedulers) ~= "table" or #schedulers == 0 then fail("SequentialLR", "schedulers must be a non-empty list") end
  for i, sc in ipairs(schedulers) do
    if type(sc) ~= "table" or type(sc.lr_at) ~= "function" then fail("SequentialLR", "schedulers[%d] is not a scheduler", i) end
  end
  if type(milestones) ~= "table" or #milestones ~= #schedulers - 1 then
    fail("SequentialLR", "give %d milestones for %d schedulers", #schedulers - 1, #schedulers)
  end
  for i, m in ipairs(milestones) do
    if not whole(m) or m < 1 or (i > 1 and m <= milestones[i - 1]) then
      fail("SequentialLR", "milestones must be increasing positive integers (milestones[%d] = %s)", i, tostring(m))
    end
  end
  local cls = class("SequentialLR")
  function cls:lr_at(base, e)
    local k, start = 1, 0
    for i, m in ipairs(self.milestones) do if e >= m then k, start = i + 1, m end end
    return self.schedulers[k]:lr_at(base, e - start)
  end
  return new(cls, optimizer, {schedulers = schedulers, milestones = milestones})
end

return M
