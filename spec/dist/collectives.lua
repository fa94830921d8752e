-- Run on 2 ranks by spec/dist_spec.lua:
--   mpirun --oversubscribe --allow-run-as-root -np 2 lua5.4 spec/dist/collectives.lua
-- Checks kdx.dist's collectives over MPI; exits 1 with a message on the first failure.
local kdx = require "kdx"
local dist = kdx.dist

local fails = 0
local function check(cond, what)
  if not cond then
    fails = fails + 1
    io.stderr:write(("rank %d: FAIL %s\n"):format(dist.rank(), what))
  end
end
local function same(t, expect, what, tol)
  tol = tol or 0
  local flat = t:contiguous():reshape{t:numel()}:totable()
  check(t:numel() == #expect, what .. ": numel " .. t:numel() .. " ~= " .. #expect)
  for i = 1, math.min(t:numel(), #expect) do
    local v = flat[i]
    check(math.abs(v - expect[i]) <= tol, ("%s: [%d] = %s, expected %s"):format(what, i, v, expect[i]))
  end
end

check(dist.backend == "mpi", "backend is " .. dist.backend)
local r, n = dist.rank(), dist.size()
check(n == 2, "size " .. n)
check(r == 0 or r == 1, "rank " .. r)

-- sum / mean / max / min, float32 and float64, in place, returning the same tensor
for _, dt in ipairs{"float32", "float64"} do
  local base = {1 + r, 10 * (r + 1), -r, 0.5}
  local t = kdx.tensor(base, dt)
  local back = dist.allreduce(t, "sum")
  check(rawequal(back, t), "allreduce returns its argument")
  same(t, {3, 30, -1, 1}, dt .. " sum")
  same(dist.allreduce(kdx.tensor(base, dt), "mean"), {1.5, 15, -0.5, 0.5}, dt .. " mean")
  same(dist.allreduce(kdx.tensor(base, dt), "max"), {2, 20, 0, 0.5}, dt .. " max")
  same(dist.allreduce(kdx.tensor(base, dt), "min"), {1, 10, -1, 0.5}, dt .. " min")
  same(dist.allreduce(kdx.tensor(base, dt)), {3, 30, -1, 1}, dt .. " default op is sum")
end

-- a non-contiguous view is reduced through a copy and written back into the view
local m = kdx.tensor({{1, 2}, {3, 4}}) * (r + 1)
local tv = m:t()
dist.allreduce(tv, "sum")
same(m, {3, 6, 9, 12}, "allreduce of a transposed view")

-- broadcast from rank 0 and from rank 1
local b = kdx.tensor({r, r, r})
dist.broadcast(b, 1)
same(b, {1, 1, 1}, "broadcast from root 1")
local bi = kdx.tensor({7 * (r + 1), 0}, "int64")
dist.broadcast(bi)
same(bi, {7, 0}, "broadcast int64 from root 0")

-- allgather along dim 1, rank order, different first dims
local g = dist.allgather(kdx.full({r + 1, 2}, r + 1))
check(g:size(1) == 3 and g:size(2) == 2, "allgather shape")
same(g, {1, 1, 2, 2, 2, 2}, "allgather values")

-- errors are Lua errors naming kdx.dist
local ok, err = pcall(dist.allreduce, kdx.tensor({1, 2}, "int64"))
check(not ok and tostring(err):find("dist.allreduce", 1, true), "int64 allreduce refused: " .. tostring(err))
ok, err = pcall(dist.allreduce, kdx.tensor{1}, "prod")
check(not ok and tostring(err):find("kdx.dist.allreduce", 1, true), "unknown op refused")
ok, err = pcall(dist.broadcast, kdx.tensor{1}, 5)
check(not ok and tostring(err):find("dist.broadcast", 1, true), "bad root refused: " .. tostring(err))

dist.barrier()
if fails > 0 then os.exit(1) end
print(("rank %d: collectives ok"):format(r))
