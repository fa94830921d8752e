--- Assertions on tensors for the specs: elementwise closeness with a message
-- that names the first element that differs.
local kdx = require "kdx"
local assert = require "luassert"

local M = {}

local function flatten(v, out)
  if type(v) == "table" then
    for _, x in ipairs(v) do flatten(x, out) end
  else
    out[#out + 1] = v
  end
  return out
end

--- A tensor from a fixture entry {shape = {...}, dtype = "...", data = {flat values}}
-- (as the spec/fixtures/gen_*.py generators write them); nil stays nil, and
-- the fixtures' "bool" dtype becomes int64.
function M.from_fixture(ft)
  if ft == nil then return nil end
  local dtype = ft.dtype == "bool" and "int64" or ft.dtype
  if #ft.shape == 0 then return kdx.tensor(ft.data[1], dtype) end
  return kdx.tensor(ft.data, dtype):reshape(ft.shape)
end

--- Values of a tensor, nested table or number as a flat list.
function M.values(x)
  if kdx.is_tensor(x) then x = x:totable() end
  return flatten(x, {})
end

--- Asserts got and want hold the same numbers within atol + rtol*|want| (NaN equals NaN).
function M.assert_close(got, want, atol, rtol)
  atol, rtol = atol or 1e-6, rtol or 0
  if kdx.is_tensor(got) and kdx.is_tensor(want) then
    assert.are.same(want:shape(), got:shape(), "shapes differ")
  end
  local g, w = M.values(got), M.values(want)
  assert(#g == #w, string.format("%d values, expected %d", #g, #w))
  for i = 1, #w do
    local a, b = g[i], w[i]
    local ok = (a ~= a and b ~= b) or a == b or math.abs(a - b) <= atol + rtol * math.abs(b)
    if not ok then
      error(string.format("element %d: got %.17g, expected %.17g (atol %g, rtol %g)", i, a, b, atol, rtol), 2)
    end
  end
end

return M
