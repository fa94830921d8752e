--- The base of every layer and model: parameters, buffers and children in
-- order, train/eval, state dicts with PyTorch's key names, printing, and
-- capturing named intermediate activations in one forward pass.
--
--     local Net = kdx.nn.Module:extend("Net")
--     function Net:init(n) self.fc = kdx.nn.Linear(n, 2) end
--     function Net:forward(x) return self.fc(x):relu() end
--     local net = Net(4)
--
-- @classmod kdx.nn.Module

local kdx = require "kdx"

local Module = {__name = "Module"}
Module.__index = Module

local function is_module(v)
  local mt = getmetatable(v)
  return type(v) == "table" and type(mt) == "table" and mt.__is_module == true
end
Module.__is_module = true

--- A new class named `name` deriving from this one; calling the class makes
-- an instance and runs its `init` with the arguments.
function Module:extend(name)
  local cls = {}
  for k, v in pairs(self) do
    if type(k) == "string" and k:sub(1, 2) == "__" then cls[k] = v end -- metamethods are not inherited
  end
  cls.__index = cls
  cls.__name = name
  cls.super = self
  return setmetatable(cls, {
    __index = self,
    __call = function(c, ...)
      local o = c:_new()
      o:init(...)
      return o
    end,
    __tostring = function() return "class " .. name end,
  })
end

function Module:_new()
  local o = {_params = {}, _buffers = {}, _children = {}, _hooks = {}, training = true}
  return setmetatable(o, self)
end

--- Constructor hook for subclasses (the base takes no arguments).
function Module:init() end

--- Computes the output; subclasses override it.
function Module:forward()
  error(("kdx.nn.%s: forward is not implemented"):format(getmetatable(self).__name), 2)
end

-- Assigning a module to a field registers it as a child, as in PyTorch.
function Module:__newindex(key, value)
  rawset(self, key, value)
  if is_module(value) and type(key) == "string" then
    local list = rawget(self, "_children")
    if list then
      for _, k in ipairs(list) do if k == key then return end end
      list[#list + 1] = key
    end
  end
end

local function add_name(list, name)
  for _, k in ipairs(list) do if k == name then return end end
  list[#list + 1] = name
end

--- Registers tensor t as a parameter called name (it is marked requires_grad).
function Module:register_parameter(name, t)
  if t ~= nil and not kdx.is_tensor(t) then
    error(("kdx.nn.Module.register_parameter: %s must be a tensor or nil"):format(name), 2)
  end
  if t then t:requires_grad(true) end
  rawset(self, name, t)
  add_name(self._params, name)
  return t
end

--- Registers tensor t as a buffer (state that is saved but not trained).
function Module:register_buffer(name, t)
  rawset(self, name, t)
  add_name(self._buffers, name)
  return t
end

--- Registers m as a child module called name.
function Module:add_module(name, m)
  if not is_module(m) then error(("kdx.nn.Module.add_module: %s is not a module"):format(name), 2) end
  rawset(self, name, m)
  add_name(self._children, name)
  return m
end

-- ------------------------------------------------------------- walking --

--- Iterator over (name, child) in registration order.
function Module:named_children()
  local i = 0
  return function()
    i = i + 1
    local name = self._children[i]
    if name then return name, self[name] end
  end
end

--- List of the direct children.
function Module:children()
  local out = {}
  for _, m in self:named_children() do out[#out + 1] = m end
  return out
end

--- Iterator over (qualified name, module) for this module and all below it ("" for itself).
function Module:named_modules()
  local list = {}
  local function walk(m, prefix)
    list[#list + 1] = {prefix, m}
    for name, c in m:named_children() do walk(c, prefix == "" and name or prefix .. "." .. name) end
  end
  walk(self, "")
  local i = 0
  return function()
    i = i + 1
    if list[i] then return list[i][1], list[i][2] end
  end
end

local function named_tensors(self, field)
  local list, seen = {}, {}
  for prefix, m in self:named_modules() do
    for _, name in ipairs(m[field]) do
      local t = m[name]
      if t and not seen[t] then
        seen[t] = true
        list[#list + 1] = {prefix == "" and name or prefix .. "." .. name, t}
      end
    end
  end
  local i = 0
  return function()
    i = i + 1
    if list[i] then return list[i][1], list[i][2] end
  end
end

--- Iterator over (qualified name, parameter), each shared parameter once.
function Module:named_parameters() return named_tensors(self, "_params") end

--- List of all parameters (for an optimizer).
function Module:parameters()
  local out = {}
  for _, p in self:named_parameters() do out[#out + 1] = p end
  return out
end

--- Iterator over (qualified name, buffer).
function Module:named_buffers() return named_tensors(self, "_buffers") end

--- List of all buffers.
function Module:buffers()
  local out = {}
  for _, b in self:named_buffers() do out[#out + 1] = b end
  return out
end

--- Number of trainable scalars.
function Module:num_parameters()
  local n = 0
  for _, p in self:named_parameters() do n = n + p:numel() end
  return n
end

--- Calls fn(module) on every module, this one last (as PyTorch's apply).
function Module:apply(fn)
  for _, c in self:named_children() do c:apply(fn) end
  fn(self)
  return self
end

-- ---------------------------------------------------------------- modes --

--- Training mode (true) or evaluation mode (false), for this module and below.
function Module:train(mode)
  if mode == nil then mode = true end
  for _, m in self:named_modules() do rawset(m, "training", mode and true or false) end
  return self
end

--- Evaluation mode (dropout off, batch norm on running statistics).
function Module:eval() return self:train(false) end

--- Clears the gradients of all parameters.
function Module:zero_grad()
  for _, p in self:named_parameters() do p.grad = nil end
end

--- Converts parameters and float buffers to dtype (new tensors: make optimizers after).
function Module:to(dtype)
  for _, m in self:named_modules() do
    for _, name in ipairs(m._params) do
      local p = m[name]
      if p and p:dtype() ~= dtype then rawset(m, name, p:detach():to(dtype):requires_grad(true)) end
    end
    for _, name in ipairs(m._buffers) do
      local b = m[name]
      if b and b:dtype() ~= "int64" and b:dtype() ~= dtype then rawset(m, name, b:to(dtype)) end
    end
  end
  return self
end

--- Module:to("float64").
function Module:double() return self:to("float64") end

--- Module:to("float32").
function Module:float() return self:to("float32") end

-- -------------------------------------------------------------- calling --

--- Runs forward, then the forward hooks and activation captures.
function Module:__call(...)
  local out = self:forward(...)
  for _, hook in ipairs(self._hooks) do
    local r = hook(self, {...}, out)
    if r ~= nil then out = r end
  end
  local cap = rawget(self, "_capture")
  if cap then cap.store[cap.name] = out end
  return out
end

--- Adds fn(module, inputs, output) to run after each forward (a non-nil result
-- replaces the output). Returns a handle with :remove().
function Module:register_forward_hook(fn)
  local hooks = self._hooks
  hooks[#hooks + 1] = fn
  return {remove = function()
    for i, h in ipairs(hooks) do if h == fn then table.remove(hooks, i) return end end
  end}
end

--- The module called name ("features.3"), or nil.
function Module:get_submodule(name)
  for n, m in self:named_modules() do if n == name then return m end end
end

--- Runs a forward pass and also returns the outputs of the named submodules,
-- still in the graph: `local out, feats = model:forward_with(x, {"3", "features.5"})`.
function Module:forward_with(x, names, ...)
  local store, marked = {}, {}
  for _, name in ipairs(names) do
    local m = self:get_submodule(name)
    if not m then error(("kdx.nn.Module.forward_with: no submodule named %q"):format(name), 2) end
    rawset(m, "_capture", {store = store, name = name})
    marked[#marked + 1] = m
  end
  local ok, out = pcall(self, x, ...)
  for _, m in ipairs(marked) do rawset(m, "_capture", nil) end
  if not ok then error(out, 0) end
  return out, store
end

-- ---------------------------------------------------------- state dicts --

--- A table of every parameter and buffer by PyTorch-style name ("0.weight").
function Module:state_dict()
  local sd = {}
  for name, p in self:named_parameters() do sd[name] = p end
  for name, b in self:named_buffers() do sd[name] = b end
  return sd
end

--- Copies tensors from sd into the parameters and buffers with the same
-- names. strict (default true) makes missing or unexpected keys an error.
-- Returns {missing = {...}, unexpected = {...}}.
function Module:load_state_dict(sd, opts)
  local strict = not (opts and opts.strict == false)
  local own = self:state_dict()
  local missing, unexpected = {}, {}
  for name in pairs(own) do if sd[name] == nil then missing[#missing + 1] = name end end
  for name in pairs(sd) do if own[name] == nil then unexpected[#unexpected + 1] = name end end
  table.sort(missing)
  table.sort(unexpected)
  if strict and (#missing > 0 or #unexpected > 0) then
    error(("kdx.nn.Module.load_state_dict: missing keys {%s}, unexpected keys {%s}"):format(
      table.concat(missing, ", "), table.concat(unexpected, ", ")), 2)
  end
  kdx.no_grad(function()
    for name, t in pairs(own) do
      local src = sd[name]
      if src ~= nil then
        if not kdx.is_tensor(src) then
          error(("kdx.nn.Module.load_state_dict: %s is not a tensor"):format(name), 3)
        end
        local a, b = table.concat(t:shape(), ","), table.concat(src:shape(), ",")
        if a ~= b then
          error(("kdx.nn.Module.load_state_dict: %s has shape {%s} in the module but {%s} in the state dict")
            :format(name, a, b), 3)
        end
        t:copy_(src)
      end
    end
  end)
  return {missing = missing, unexpected = unexpected}
end

--- Saves the state dict to a safetensors file (atomically).
function Module:save(path, metadata)
  kdx.save(path, self:state_dict(), metadata)
end

--- Loads a safetensors file written by save (or by PyTorch) into this module.
function Module:load(path, opts)
  local sd = kdx.load(path)
  return self:load_state_dict(sd, opts)
end

-- ------------------------------------------------------------- printing --

--- The constructor arguments worth showing ("in_features=4, ..."); subclasses override.
function Module:extra_repr() return "" end

local function count(m)
  local n = 0
  for _, name in ipairs(m._params) do if m[name] then n = n + m[name]:numel() end end
  return n
end

local function repr(m, indent)
  local name = getmetatable(m).__name
  local head = name .. "(" .. m:extra_repr()
  if #m._children == 0 then
    local own = count(m)
    return head .. ")" .. (own > 0 and ("  # %d params"):format(own) or "")
  end
  local lines = {head}
  if m:extra_repr() ~= "" then lines[1] = lines[1] .. "," end
  for cname, c in m:named_children() do
    lines[#lines + 1] = indent .. "  (" .. cname .. "): " .. repr(c, indent .. "  ")
  end
  lines[#lines + 1] = indent .. ")"
  return table.concat(lines, "\n")
end

function Module:__tostring()
  return repr(self, "") .. ("\n# %d trainable parameters"):format(self:num_parameters())
end

Module.is_module = is_module

return Module
