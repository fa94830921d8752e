--- kdx.args (internal): raising argument errors from the Lua side of kdx.
-- An error names the public function ("kdx.nn.functional.softmax: ...") and
-- is blamed on the first caller outside the kdx package, so the user sees
-- their own line even when the call came through other kdx code.
-- @module kdx.args

local kdx = require "kdx"

local M = {}

local SOURCE = debug.getinfo(1, "S").source
-- "@.../kdx/": frames from any file of the package are library frames.
local PACKAGE = SOURCE:match("^(@.*[/\\]kdx[/\\])args%.lua$")

local function in_library(source)
  if source == "=[C]" then return true end
  if PACKAGE then return source:sub(1, #PACKAGE) == PACKAGE end
  return source == SOURCE
end

--- A fail(fname, fmt, ...) that raises "<prefix><fname>: <message>" at the user's line.
function M.failer(prefix)
  return function(fname, fmt, ...)
    local level = 2
    while true do
      local info = debug.getinfo(level, "S")
      if info == nil or not in_library(info.source) then break end
      level = level + 1
    end
    error((prefix .. "%s: " .. fmt):format(fname, ...), level)
  end
end

--- How a value is described in a message: "a tensor" or its Lua type.
function M.what(v)
  if kdx.is_tensor(v) then return "a tensor" end
  return type(v)
end

return M
