-- Run on 2 ranks by spec/dist_spec.lua:
--   mpirun --oversubscribe --allow-run-as-root -np 2 lua5.4 spec/dist/reducer.lua
-- kdx.dist.reducer against a reference computed here: each rank's plain
-- backward gradients, gathered and averaged by rows in float64. Covers small
-- buckets sent during backward, a weight used twice (its gradient must be
-- complete before its bucket goes), a parameter only one rank uses, a rank
-- with no rows, and float64 parameters. Exits 1 on the first failure.
local kdx = require "kdx"
local dist = kdx.dist

local rank = dist.rank()
local fails = 0
local function check(cond, what)
  if not cond then
    fails = fails + 1
    io.stderr:write(("rank %d: FAIL %s\n"):format(rank, what))
  end
end
check(dist.size() == 2, "size " .. dist.size())

-- params: w1 [16, 8], w2 [8, 8] used twice, b [8], only [8] used by rank 0 alone
local function make_params(dtype)
  kdx.manual_seed(7)
  return {kdx.randn({16, 8}, dtype):requires_grad_(), kdx.randn({8, 8}, dtype):requires_grad_(),
    kdx.randn({8}, dtype):requires_grad_(), kdx.randn({8}, dtype):requires_grad_()}
end
local function loss_of(p, x, r)
  local h = (x:matmul(p[1])):tanh()
  h = (h:matmul(p[2]) + p[3]):tanh():matmul(p[2]) -- w2 twice, with a layer between
  local l = (h * h):mean()
  if r == 0 then l = l + (p[4] * p[4]):sum() * 0.1 end
  return l
end

for _, dtype in ipairs{"float32", "float64"} do
  for _, case in ipairs{{rows = {5, 3}}, {rows = {4, 0}}} do
    local rows = case.rows[rank + 1]
    kdx.manual_seed(100 + rank)
    local x = kdx.randn({math.max(rows, 1), 16}, dtype)
    -- the reference: this rank's own gradients, gathered, weighted by rows
    local ref = make_params(dtype)
    if rows > 0 then loss_of(ref, x, rank):backward() end
    local expect = {}
    for i, p in ipairs(ref) do
      local g = p.grad and p.grad:to("float64") or kdx.zeros(p:shape(), "float64")
      local all = dist.allgather((g * rows):reshape{1, p:numel()})
      local has = dist.allgather(kdx.tensor({{p.grad and 1 or 0}}, "float64")):sum():item()
      expect[i] = has > 0 and (all:sum(1) / (case.rows[1] + case.rows[2])):reshape(p:shape()) or false
    end
    -- the reducer, with buckets of 64 bytes: several, sent during backward
    local params = make_params(dtype)
    local red = dist.reducer(params, {bucket_bytes = 64})
    red:begin(rows)
    if rows > 0 then red:backward(loss_of(params, x, rank)) end
    local total, sums = red:finish({rows * 10, 1})
    local nb, early = red:counts()
    check(total == case.rows[1] + case.rows[2], "total rows " .. total)
    check(sums[1] == (case.rows[1] + case.rows[2]) * 10 and sums[2] == 2, "extras summed")
    check(nb >= 3, "buckets " .. nb)
    if rows > 0 then check(early >= 1, ("%s: no bucket was sent during backward"):format(dtype)) end
    local tol = dtype == "float64" and 1e-12 or 1e-5
    for i, p in ipairs(params) do
      if expect[i] then
        check(p.grad ~= nil, ("param %d has no gradient"):format(i))
        if p.grad then
          local d = (p.grad:to("float64") - expect[i]):abs():max():item()
          check(d <= tol * (1 + expect[i]:abs():max():item()),
            ("%s rows %d/%d: param %d differs from the reference by %g"):format(dtype, case.rows[1], case.rows[2], i, d))
        end
      else
        check(p.grad == nil, ("param %d should have no gradient"):format(i))
      end
    end
    -- both ranks hold the same averaged gradients
    for i, p in ipairs(params) do
      if p.grad then
        local both = dist.allgather(p.grad:reshape{1, p:numel()})
        check((both:select(1, 1) - both:select(1, 2)):abs():max():item() == 0, ("param %d differs between ranks"):format(i))
      end
    end
  end
end

-- bad input is a Lua error naming the function, on every rank alike
local ok, e = pcall(dist.reducer, {kdx.tensor({1}, "int64")})
check(not ok and tostring(e):find("kdx.dist.reducer: params[1] is int64", 1, true), "int64 refused: " .. tostring(e))
ok, e = pcall(dist.reducer, {kdx.randn{2}, kdx.randn({2}, "float64")})
check(not ok and tostring(e):find("same dtype", 1, true), "mixed dtypes refused: " .. tostring(e))
local red = dist.reducer({kdx.randn{2}})
ok, e = pcall(red.finish, red, {})
check(not ok and tostring(e):find("finish without begin", 1, true), "finish without begin: " .. tostring(e))

dist.barrier()
if fails > 0 then os.exit(1) end
print(("rank %d: reducer ok"):format(rank))
