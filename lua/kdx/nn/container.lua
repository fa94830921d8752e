--- Containers: Sequential (runs children in order), ModuleList, ModuleDict.
-- Children are named "0", "1", ... as in PyTorch, so state-dict keys match.
-- @module kdx.nn.container
local Module = require "kdx.nn.module"

local M = {}

local function add_all(self, list, who)
  for i, m in ipairs(list or {}) do
    if not Module.is_module(m) then
      error(("kdx.nn.%s: entry %d is not a module"):format(who, i), 4)
    end
    self:add_module(tostring(#self._children), m)
  end
end

--- Sequential{m1, m2, ...}: forward runs each child on the previous one's output.
M.Sequential = Module:extend("Sequential")
function M.Sequential:init(list) add_all(self, list, "Sequential") end
function M.Sequential:forward(x, ...)
  for _, m in self:named_children() do x = m(x, ...) end
  return x
end
--- Appends a module.
function M.Sequential:append(m) add_all(self, {m}, "Sequential") return self end
--- The i-th child (1-based, negative from the end).
function M.Sequential:get(i)
  if i < 0 then i = #self._children + 1 + i end
  local name = self._children[i]
  return name and self[name]
end
function M.Sequential:__len() return #self._children end

--- ModuleList{...}: holds modules (registered, so their parameters count) without a forward.
M.ModuleList = Module:extend("ModuleList")
function M.ModuleList:init(list) add_all(self, list, "ModuleList") end
M.ModuleList.append = M.Sequential.append
M.ModuleList.get = M.Sequential.get
M.ModuleList.__len = M.Sequential.__len
--- Iterator over (i, module), 1-based.
function M.ModuleList:ipairs()
  local i = 0
  return function()
    i = i + 1
    local m = self:get(i)
    if m then return i, m end
  end
end

--- ModuleDict{name = module, ...} (names sorted) or ModuleDict{{"name", module}, ...} (order kept).
M.ModuleDict = Module:extend("ModuleDict")
function M.ModuleDict:init(entries)
  entries = entries or {}
  if #entries > 0 then
    for _, kv in ipairs(entries) do self:add_module(kv[1], kv[2]) end
  else
    local names = {}
    for k in pairs(entries) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do self:add_module(k, entries[k]) end
  end
end

return M
