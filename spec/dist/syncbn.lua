-- Run on 2 ranks by spec/dist_spec.lua:
--   mpirun --oversubscribe --allow-run-as-root -np 2 lua5.4 spec/dist/syncbn.lua
-- kdx.nn.SyncBatchNorm in kdx.train{distributed = true} normalises with the
-- global batch: 2 ranks with SyncBatchNorm (parts of 32 and 31 rows, so the
-- ranks' weights in the gradient differ) end where one process with
-- BatchNorm1d and the whole batch ends -- weights and running statistics.
-- A last batch with fewer rows than ranks is refused. Exits 1 on failure.
local kdx = require "kdx"
local nn, dist = kdx.nn, kdx.dist

local rank = dist.rank()
local fails = 0
local function check(cond, what)
  if not cond then
    fails = fails + 1
    io.stderr:write(("rank %d: FAIL %s\n"):format(rank, what))
  end
end
check(dist.size() == 2, "size " .. dist.size())

local train = kdx.data.digits()
local function loader(bs) return kdx.data.DataLoader(train, {batch_size = bs or 63, shuffle = true, seed = 9}) end
local function model(sync)
  kdx.manual_seed(12)
  local m = nn.Sequential{nn.Flatten(), nn.Linear(64, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 10)}
  return sync and nn.SyncBatchNorm.convert(m) or m
end
local function state(m)
  local parts = {}
  for _, p in ipairs(m:parameters()) do parts[#parts + 1] = p:detach():reshape{p:numel()} end
  for _, b in ipairs(m:buffers()) do
    if b:dtype() ~= "int64" then parts[#parts + 1] = b:reshape{b:numel()} end
  end
  return kdx.cat(parts, 1)
end

local synced = model(true)
kdx.train{model = synced, data = loader(), optimizer = kdx.optim.SGD(synced:parameters(), {lr = 0.1, momentum = 0.9}),
  epochs = 2, distributed = true, progress = false, log = false}
local single = model(false)
kdx.train{model = single, data = loader(), optimizer = kdx.optim.SGD(single:parameters(), {lr = 0.1, momentum = 0.9}),
  epochs = 2, progress = false, log = false}
local a, b = state(synced), state(single)
local err = ((a - b):abs() - (b:abs() * 1e-4 + 1e-5)):max():item()
check(err <= 0, ("SyncBatchNorm on 2 ranks differs from one process's BatchNorm (excess %g, max |d| %g)"):format(err,
  (a - b):abs():max():item()))
local both = dist.allgather(a:reshape{1, a:numel()})
check((both:select(1, 1) - both:select(1, 2)):abs():max():item() == 0, "the ranks differ")

-- without the global statistics (plain BatchNorm1d per rank) the run is
-- further from one process's: the comparison above can fail
local plain = model(false)
kdx.train{model = plain, data = loader(), optimizer = kdx.optim.SGD(plain:parameters(), {lr = 0.1, momentum = 0.9}),
  epochs = 2, distributed = true, progress = false, log = false}
local pd, sd = (state(plain) - b):abs():max():item(), (a - b):abs():max():item()
check(pd > 10 * sd, ("per-rank BatchNorm should be further from one process (%g) than SyncBatchNorm (%g)"):format(pd, sd))

-- 1438 rows in batches of 1437: a last batch of 1 row, nothing for rank 1
local ok, e = pcall(kdx.train, {model = model(true), data = loader(1437), distributed = true, progress = false,
  log = false, optimizer = kdx.optim.SGD(model(true):parameters(), {lr = 0.1})})
check(not ok and tostring(e):find("SyncBatchNorm needs rows on every rank", 1, true), "last batch refused: " .. tostring(e))

dist.barrier()
if fails > 0 then os.exit(1) end
print(("rank %d: SyncBatchNorm ok (max |2 ranks - 1 process| = %.3g; per-rank BatchNorm %.3g)"):format(rank, sd, pd))
