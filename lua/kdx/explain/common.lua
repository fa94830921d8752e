--- kdx.explain.common (internal): what every attribution method shares —
-- argument errors at the user's line, the target convention, option reading.
-- @module kdx.explain.common

local kdx = require "kdx"
local args = require "kdx.args"

local M = {}

--- fail(fname, fmt, ...) raises "kdx.explain.<fname>: <message>" at the user's line.
M.fail = args.failer("kdx.explain.")

--- Checks (model, x, opts) and folds a target function into the model, which
-- then returns [N]: returns model, target (nil, a class or classes), opts.
function M.prepare(fname, model, x, opts)
  opts = opts or {}
  if type(opts) ~= "table" then M.fail(fname, "options must be a table, got %s", args.what(opts)) end
  if not kdx.is_tensor(x) then M.fail(fname, "x must be a tensor batch [N, ...], got %s", args.what(x)) end
  local target = opts.target
  if type(target) == "function" then
    local f, inner = target, model
    model = function(b) return f(inner(b)) end
    target = nil
  end
  return model, target, opts
end

--- opts[key] as an integer >= lo (default def), or an error naming fname.
function M.int(fname, opts, key, def, lo)
  local v = opts[key]
  if v == nil then return def end
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    M.fail(fname, "%s must be an integer, got %s", key, type(v) == "number" and tostring(v) or args.what(v))
  end
  v = math.tointeger(v)
  if lo and v < lo then M.fail(fname, "%s must be >= %d, got %d", key, lo, v) end
  return v
end

--- opts[key] as a number (default def), or an error naming fname.
function M.num(fname, opts, key, def)
  local v = opts[key]
  if v == nil then return def end
  if type(v) ~= "number" then M.fail(fname, "%s must be a number, got %s", key, args.what(v)) end
  return v
end

--- The seed of a method: opts.seed, or one drawn from kdx's generator.
function M.seed(fname, opts)
  local s = M.int(fname, opts, "seed", nil, 0)
  if s == nil then s = math.floor(kdx.rand({1}, "float64"):get(1) * 2 ^ 31) end
  return s
end

-- The engine's functions as the methods call them: an error comes back as
-- "kdx.explain.<method>: <message>" raised at the user's line (the binding
-- names the method "kdx.<method>" or "kdx.explain.<method>"; either way the
-- user called kdx.explain.<method>).
local raw = require "kdx.core"
local function rethrow(ok, ...)
  if ok then return ... end
  local msg = tostring((...))
  if not msg:match("^kdx%.") then msg = msg:gsub("^[^\n]-:%d+: ", "", 1) end
  local name, rest = msg:match("^kdx%.([%w_%.]+): (.*)$")
  if not name then M.fail("?", "%s", msg) end
  M.fail(name:gsub("^explain%.", ""), "%s", rest)
end
--- kdx.core with every function wrapped so that its errors read as above.
M.core = setmetatable({}, {__index = function(t, key)
  local f = raw[key]
  if type(f) ~= "function" then return f end
  local w = function(...) return rethrow(pcall(f, ...)) end
  rawset(t, key, w)
  return w
end})

return M
