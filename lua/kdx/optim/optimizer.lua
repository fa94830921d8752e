--- The base of the optimizers: parameter groups, per-parameter state,
-- zero_grad, and state dicts that save and restore a run exactly.
-- @classmod kdx.optim.Optimizer
local kdx = require "kdx"

local Optimizer = {}
Optimizer.__index = Optimizer

--- A new optimizer class called name with hyper-parameter defaults.
function Optimizer.class(name, defaults)
  local cls = setmetatable({__name = name, defaults = defaults}, {__index = Optimizer})
  cls.__index = cls
  return setmetatable(cls, {
    __index = Optimizer,
    __call = function(c, params, opts) return c.new(c, params, opts) end,
  })
end

-- params: a list of tensors, or a list of groups {params = {...}, lr = ...}.
function Optimizer.new(cls, params, opts)
  local fname = "kdx.optim." .. cls.__name
  if type(params) ~= "table" or #params == 0 then
    error(fname .. ": params must be a non-empty list of tensors (model:parameters()) or of groups", 3)
  end
  local groups = kdx.is_tensor(params[1]) and {{params = params}} or params
  local self = setmetatable({param_groups = {}, state = {}}, cls)
  for gi, g in ipairs(groups) do
    local group = {params = {}}
    for k, v in pairs(cls.defaults) do group[k] = v end
    for k, v in pairs(opts or {}) do
      if cls.defaults[k] == nil and k ~= "lr" then error(("%s: unknown option '%s'"):format(fname, k), 3) end
      group[k] = v
    end
    for k, v in pairs(g) do if k ~= "params" then group[k] = v end end
    if group.lr == nil then error(fname .. ": lr is required", 3) end
    for i, p in ipairs(g.params or {}) do
      if not kdx.is_tensor(p) then error(("%s: group %d entry %d is not a tensor"):format(fname, gi, i), 3) end
      if not p:requires_grad() then error(("%s: group %d entry %d does not require grad"):format(fname, gi, i), 3) end
      group.params[#group.params + 1] = p
    end
    group.initial_lr = group.initial_lr or group.lr
    self.param_groups[gi] = group
  end
  if cls.check then cls.check(self, fname) end
  return self
end

--- Clears the gradients of every parameter.
function Optimizer:zero_grad()
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do p.grad = nil end
  end
end

--- The state of parameter p (created on first use).
function Optimizer:state_of(p)
  local s = self.state[p]
  if not s then
    s = {step = 0}
    self.state[p] = s
  end
  return s
end

--- Runs one update: calls closure (if given) under enable_grad first and returns its loss.
function Optimizer:step(closure)
  local loss
  if closure then loss = kdx.enable_grad(closure) end
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do
      local grad = p.grad
      if grad then self:update(p, grad, g, self:state_of(p)) end
    end
  end
  return loss
end

--- {state = {[i] = {step = n, name = tensor, ...}}, param_groups = {{lr = ..., params = {i, ...}}, ...}}
-- with parameters numbered in order (as PyTorch's state_dict).
function Optimizer:state_dict()
  local sd, index = {state = {}, param_groups = {}}, 0
  for gi, g in ipairs(self.param_groups) do
    local group = {params = {}}
    for k, v in pairs(g) do if k ~= "params" then group[k] = v end end
    for _, p in ipairs(g.params) do
      index = index + 1
      group.params[#group.params + 1] = index
      local s = self.state[p]
      if s then
        local copy = {}
        for k, v in pairs(s) do copy[k] = kdx.is_tensor(v) and v:clone() or v end
        sd.state[index] = copy
      end
    end
    sd.param_groups[gi] = group
  end
  return sd
end

--- Restores a state dict taken from an optimizer over the same parameters.
function Optimizer:load_state_dict(sd)
  local index, params = 0, {}
  for gi, g in ipairs(self.param_groups) do
    local saved = sd.param_groups[gi]
    if not saved or #saved.params ~= #g.params then
      error("kdx.optim.load_state_dict: the parameter groups do not match this optimizer", 2)
    end
    for k, v in pairs(saved) do if k ~= "params" then g[k] = v end end
    for _, p in ipairs(g.params) do
      index = index + 1
      params[index] = p
    end
  end
  self.state = {}
  for i, s in pairs(sd.state) do
    local p = params[i]
    if not p then error("kdx.optim.load_state_dict: state for an unknown parameter " .. tostring(i), 2) end
    local copy = {}
    for k, v in pairs(s) do copy[k] = kdx.is_tensor(v) and v:clone() or v end
    self.state[p] = copy
  end
end

--- Writes the state dict to a safetensors file (tensors as "state.<i>.<name>",
-- numbers as metadata).
function Optimizer:save(path)
  local sd, tensors, meta = self:state_dict(), {}, {}
  for i, s in pairs(sd.state) do
    for k, v in pairs(s) do
      if kdx.is_tensor(v) then tensors[("state.%d.%s"):format(i, k)] = v
      else meta[("state.%d.%s"):format(i, k)] = string.format("%.17g", v) end
    end
  end
  for gi, g in ipairs(sd.param_groups) do
    for k, v in pairs(g) do
      if type(v) == "number" then meta[("group.%d.%s"):format(gi, k)] = string.format("%.17g", v)
      elseif type(v) == "boolean" then meta[("group.%d.%s"):format(gi, k)] = tostring(v) end
    end
  end
  meta.optimizer = getmetatable(self).__name
  kdx.save(path, tensors, meta)
end

--- Restores a file written by save.
function Optimizer:load(path)
  local tensors, meta = kdx.load(path)
  local sd = {state = {}, param_groups = {}}
  for gi, g in ipairs(self.param_groups) do
    local group = {params = {}}
    for j = 1, #g.params do group.params[j] = j end
    for k, v in pairs(g) do if k ~= "params" then group[k] = v end end
    sd.param_groups[gi] = group
  end
  for key, t in pairs(tensors) do
    local i, name = key:match("^state%.(%d+)%.(.+)$")
    if i then
      i = tonumber(i)
      sd.state[i] = sd.state[i] or {}
      sd.state[i][name] = t
    end
  end
  for key, v in pairs(meta or {}) do
    local i, name = key:match("^state%.(%d+)%.(.+)$")
    if i then
      i = tonumber(i)
      sd.state[i] = sd.state[i] or {}
      sd.state[i][name] = math.tointeger(tonumber(v)) or tonumber(v)
    end
    local gi, hp = key:match("^group%.(%d+)%.(.+)$")
    if gi and sd.param_groups[tonumber(gi)] then
      local val = v == "true" or (v ~= "false" and tonumber(v))
      sd.param_groups[tonumber(gi)][hp] = val
    end
  end
  self:load_state_dict(sd)
end

return Optimizer
