-- Shared helpers of the specs that compare kdx against PyTorch golden fixtures
-- (spec/fixtures/*_golden.lua, written by spec/fixtures/gen_*.py):
-- loading a fixture, the tolerances, comparing a tensor with a fixture tensor,
-- and walking the fixture's cases. Tensor construction from a fixture entry
-- and flattening are in spec/helpers/close.lua (from_fixture, values).
local kdx = require "kdx"
local assert = require "luassert"
local flat = require("helpers.close").values

local M = {}

-- Tolerance (relative and absolute) by the dtype PyTorch computed in.
M.TOL = {float64 = 1e-10, float32 = 1e-5, int64 = 0, bool = 0}

-- The fixture spec/fixtures/<name> (found from this file, whatever the cwd).
function M.fixture(name)
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)[/\\]") or nil
  return dofile((dir and (dir .. "/../") or "spec/") .. "fixtures/" .. name)
end

-- A shape as "[2,3,4]".
function M.shape_str(s) return "[" .. table.concat(s, ",") .. "]" end

-- Whether number g is within tol + tol*|e| of e (NaN equals NaN, infinities must match).
function M.close_to(g, e, tol)
  if e ~= e then return g ~= g end
  if g ~= g then return false end
  if e == math.huge or e == -math.huge then return g == e end
  return math.abs(g - e) <= tol + tol * math.abs(e)
end

-- Asserts that kdx tensor `got` matches fixture tensor `exp` (shape, dtype, values),
-- within tol (default TOL[exp.dtype]); a value error is blamed on the caller's line.
function M.check(label, got, exp, tol)
  local shape_str = M.shape_str
  assert.is_true(kdx.is_tensor(got), label .. ": not a tensor")
  assert.is_true(shape_str(got:shape()) == shape_str(exp.shape),
    ("%s: shape %s, expected %s"):format(label, shape_str(got:shape()), shape_str(exp.shape)))
  assert.are.equal(exp.dtype, got:dtype(), label .. ": dtype")
  tol = tol or M.TOL[exp.dtype]
  local vals = flat(got)
  for i = 1, #exp.data do
    if not M.close_to(vals[i], exp.data[i], tol) then
      error(("%s: value %d of %d is %.17g, PyTorch has %.17g (tol %g)"):format(
        label, i, #exp.data, vals[i], exp.data[i], tol), 2)
    end
  end
end

-- The Lua arguments of a case, {ref = name} replaced by tensors[name].
function M.resolve(v, tensors)
  if type(v) ~= "table" then return v end
  if v.ref then return assert(tensors[v.ref], v.ref) end
  local out = {}
  for k, x in pairs(v) do out[k] = M.resolve(x, tensors) end
  return out
end

-- Whether every value of tensor t is finite (no NaN, no infinity).
function M.all_finite(t)
  for _, v in ipairs(flat(t)) do
    if v ~= v or v == math.huge or v == -math.huge then return false end
  end
  return true
end

-- The cases {name = case} by group in seq order: the group names in order of
-- their first case, and {group = {case, ...}}; sets each case's .name.
function M.grouped(cases)
  local ordered = {}
  for name, c in pairs(cases) do
    c.name = name
    ordered[#ordered + 1] = c
  end
  table.sort(ordered, function(a, b) return a.seq < b.seq end)
  local groups, group_cases = {}, {}
  for _, c in ipairs(ordered) do
    if not group_cases[c.group] then
      groups[#groups + 1] = c.group
      group_cases[c.group] = {}
    end
    table.insert(group_cases[c.group], c)
  end
  return groups, group_cases
end

-- The message of the error `fn` raises, without its position, after asserting
-- it was blamed on a line of the spec file `spec` (e.g. "functional_spec.lua").
function M.error_blamed_on(spec, fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error")
  err = tostring(err)
  local pattern = "^[^:]*" .. spec:gsub("%p", "%%%0") .. ":%d+: "
  assert.truthy(err:match(pattern), "error not blamed on the caller: " .. err)
  return (err:gsub("^[^:]*:%d+: ", ""))
end

-- Tensor t made a leaf that requires grad.
function M.leaf(t) return t:requires_grad(true) end

return M
