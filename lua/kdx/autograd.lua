--- Gradient checking: analytic gradients against central differences, in float64.
-- `kdx.autograd.gradcheck(fn, inputs, opts)` compares the Jacobian that
-- `kdx.grad` gives with one from finite differences; `gradgradcheck` does the
-- same for the gradient itself (so second derivatives are checked too).
-- @module kdx.autograd

local kdx = require "kdx"

local M = {}

local function as_list(v)
  if kdx.is_tensor(v) then return {v} end
  return v
end

-- All outputs of fn flattened into one float64 vector (without a graph when
-- called under no_grad).
local function flat_outputs(outs)
  local parts = {}
  for i, t in ipairs(as_list(outs)) do parts[i] = t:reshape{-1}:double() end
  return kdx.cat(parts, 1)
end

-- Numerical Jacobian: J[i][j] = d out_i / d in_j, by central differences.
local function numerical_jacobian(fn, inputs, eps)
  local cols = {}
  kdx.no_grad(function()
    for k, x in ipairs(inputs) do
      local flat = x:view{-1}
      cols[k] = {}
      for j = 1, flat:numel() do
        local v = flat:get(j)
        flat:set(j, v + eps)
        local up = flat_outputs(fn(table.unpack(inputs)))
        flat:set(j, v - eps)
        local down = flat_outputs(fn(table.unpack(inputs)))
        flat:set(j, v)
        cols[k][j] = ((up - down) / (2 * eps)):totable()
      end
    end
  end)
  return cols
end

-- Analytic Jacobian, one backward pass per output element.
local function analytic_jacobian(fn, inputs)
  local outs = as_list(fn(table.unpack(inputs)))
  local rows = {}
  local total = 0
  for _, o in ipairs(outs) do total = total + o:numel() end
  local at = 0
  for oi, o in ipairs(outs) do
    for e = 1, o:numel() do
      at = at + 1
      local grad_outputs = {}
      for k, other in ipairs(outs) do
        grad_outputs[k] = kdx.zeros_like(other)
        if k == oi then grad_outputs[k]:view{-1}:set(e, 1) end
      end
      local row = {}
      if o:requires_grad() then
        -- only outputs in the graph take part (a constant output has no gradient)
        local live, weights = {}, {}
        for k, other in ipairs(outs) do
          if other:requires_grad() then live[#live + 1], weights[#weights + 1] = other, grad_outputs[k] end
        end
        local gs = kdx.grad(live, inputs, {grad_outputs = weights, retain_graph = true, allow_unused = true})
        for k, g in ipairs(gs) do row[k] = g:reshape{-1}:totable() end
      else
        for k, x in ipairs(inputs) do row[k] = kdx.zeros({x:numel()}, "float64"):totable() end
      end
      rows[at] = row
    end
  end
  return rows, total
end

--- Checks the gradients of fn at inputs (float64 tensors that require grad).
-- fn returns a tensor or a list of tensors. Returns true, or raises an error
-- naming the first element that disagrees. opts: eps = 1e-6, atol = 1e-5,
-- rtol = 1e-3, raise = true (false: return false, message instead).
function M.gradcheck(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-3
  inputs = as_list(inputs)
  for i, x in ipairs(inputs) do
    if x:dtype() ~= "float64" then error(("kdx.autograd.gradcheck: input %d must be float64, got %s"):format(i, x:dtype()), 2) end
    if not x:requires_grad() then error(("kdx.autograd.gradcheck: input %d does not require grad"):format(i), 2) end
  end
  local num = numerical_jacobian(fn, inputs, eps)
  local ana = analytic_jacobian(fn, inputs)
  for r, row in ipairs(ana) do
    for k = 1, #inputs do
      for j, a in ipairs(row[k]) do
        local n = num[k][j][r]
        if math.abs(a - n) > atol + rtol * math.abs(n) or a ~= a then
          local msg = ("gradcheck: d out[%d] / d input %d [%d]: analytic %.10g, numerical %.10g"):format(r, k, j, a, n)
          if opts.raise == false then return false, msg end
          error(msg, 2)
        end
      end
    end
  end
  return true
end

--- Checks second derivatives: gradcheck of (inputs) -> d fn / d inputs, the
-- gradient taken with create_graph against fixed random output weights.
-- Same options as gradcheck.
function M.gradgradcheck(fn, inputs, opts)
  inputs = as_list(inputs)
  local outs = as_list(fn(table.unpack(inputs)))
  local weights = {}
  local state = kdx.get_rng_state()
  kdx.manual_seed(1234)
  for i, o in ipairs(outs) do weights[i] = kdx.randn(o:shape(), "float64") end
  kdx.set_rng_state(state)
  local function first_grad(...)
    local args = {...}
    -- the numerical pass runs fn under no_grad; the gradient needs a graph
    local os = kdx.enable_grad(function() return as_list(fn(table.unpack(args))) end)
    local diff = {}
    for i, o in ipairs(os) do if o:requires_grad() then diff[#diff + 1] = i end end
    local o2, w2 = {}, {}
    for n, i in ipairs(diff) do o2[n], w2[n] = os[i], weights[i] end
    return kdx.enable_grad(kdx.grad, o2, args, {grad_outputs = w2, create_graph = true, allow_unused = true})
  end
  return M.gradcheck(first_grad, inputs, opts)
end

return M
