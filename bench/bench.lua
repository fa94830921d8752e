--- bench.lua — kdx's side of `make bench`, one thread count per process.
--
-- usage: lua5.4 bench/bench.lua THREADS SECONDS SIZES ADD_ITERS
--   THREADS    passed to kdx.set_num_threads (OpenBLAS and OpenMP)
--   SECONDS    time budget per matmul/conv cell
--   SIZES      comma-separated square matmul sizes, e.g. 64,128,256
--   ADD_ITERS  iterations of the tiny-add loop, e.g. 100000
--
-- Prints machine-readable lines for bench/report.lua (format in README.md).
-- Needs the `benchclock` module that run.sh builds next to kdx/core.so.

local kdx = require "kdx"
local clock = require "benchclock"

local BATCHES = 5

local threads, seconds, sizes, add_iters = tonumber(arg[1]), tonumber(arg[2]), arg[3], tonumber(arg[4])
if not (threads and seconds and sizes and add_iters) then
  io.stderr:write("usage: lua5.4 bench/bench.lua THREADS SECONDS SIZES ADD_ITERS\n")
  os.exit(2)
end

--- Best (lowest) seconds per call of fn over BATCHES batches that fill
-- `budget` seconds in all; the same protocol as blas_raw.c and bench_torch.py.
local function time_per_call(fn, budget)
  fn() -- warm up
  local t0 = clock.now()
  fn()
  local one = math.max(clock.now() - t0, 1e-9)
  local reps = math.max(1, math.floor(budget / BATCHES / one))
  local best = math.huge
  for _ = 1, BATCHES do
    collectgarbage()
    t0 = clock.now()
    for _ = 1, reps do fn() end
    best = math.min(best, (clock.now() - t0) / reps)
  end
  return best
end

local function emit(...)
  io.write(table.concat({...}, " "), "\n")
  io.flush()
end

kdx.set_num_threads(threads)
kdx.manual_seed(42)
emit("info kdx threads", kdx.get_num_threads())

-- 1. matmul. The output is a fresh tensor each call, as with torch.matmul;
-- <close> frees it at once, since Lua's GC only sees the 8-byte box and
-- would let hundreds of megabytes of results pile up between collections.
for n in sizes:gmatch("%d+") do
  n = tonumber(n)
  local a, b = kdx.randn{n, n}, kdx.randn{n, n}
  local s = time_per_call(function()
    local c <close> = kdx.matmul(a, b)
  end, seconds)
  emit("matmul kdx", threads, n, string.format("%.3f", 2 * n * n * n / s / 1e9))
end

-- 2. conv2d forward with bias, Fashion-MNIST sized.
local convs = {
  {key = "128x1x28x28:16x1x3x3:p1", x = {128, 1, 28, 28}, w = {16, 1, 3, 3}, padding = 1},
  {key = "128x16x14x14:32x16x3x3:p1", x = {128, 16, 14, 14}, w = {32, 16, 3, 3}, padding = 1},
}
for _, cv in ipairs(convs) do
  local x, w, bias = kdx.randn(cv.x), kdx.randn(cv.w), kdx.randn{cv.w[1]}
  local opts = {stride = 1, padding = cv.padding}
  local s = time_per_call(function()
    local y <close> = kdx.conv2d(x, w, bias, opts)
  end, seconds)
  emit("conv kdx", threads, cv.key, string.format("%.4f", s * 1e3))
end

-- 3. Per-call overhead: the loop a user writes, results left to the GC.
do
  local a, b = kdx.randn{4}, kdx.randn{4}
  local function loop(iters)
    for _ = 1, iters do
      local c = a + b -- luacheck: ignore c
    end
  end
  loop(add_iters // 10)
  local best = math.huge
  for _ = 1, BATCHES do
    collectgarbage()
    local t0 = clock.now()
    loop(add_iters)
    best = math.min(best, (clock.now() - t0) / add_iters)
  end
  emit("add kdx", threads, 4, string.format("%.1f", best * 1e9))
end
