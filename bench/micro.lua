-- Microbenchmarks behind single numbers quoted in notes and commits (not part
-- of `make bench`): index_select of a shuffled batch, and batch norm forward +
-- backward in training, kdx next to bench/micro_torch.py on the same work.
--   lua5.4 bench/micro.lua [threads]          (LUA_PATH/LUA_CPATH as for the specs)
--   /usr/bin/python3 bench/micro_torch.py [threads]
local kdx = require "kdx"
local threads = tonumber(arg[1] or 1)
kdx.set_num_threads(threads)

local function best_us(f, calls)
  for _ = 1, 5 do f() end
  local best = math.huge
  for _ = 1, 5 do
    local t0 = kdx.clock()
    for _ = 1, calls do f() end
    best = math.min(best, (kdx.clock() - t0) / calls)
  end
  return best * 1e6
end

local x = kdx.randn{60000, 1, 28, 28}
local idx = kdx.data.permutation(60000, 1):narrow(1, 1, 128)
print(("kdx  %d thread(s)  index_select 128 of 60000 rows [1,28,28]  %8.1f us"):format(threads,
  best_us(function() local y <close> = x:index_select(1, idx) end, 200)))

local h = kdx.randn{128, 32, 8, 8}:requires_grad_()
local g = kdx.randn{128, 32, 8, 8}
for _, name in ipairs{"BatchNorm2d", "SyncBatchNorm"} do
  local m = kdx.nn[name](32)
  print(("kdx  %d thread(s)  %-13s forward+backward [128,32,8,8]  %8.1f us"):format(threads, name,
    best_us(function() h.grad = nil; (m(h) * g):sum():backward() end, 50)))
end
