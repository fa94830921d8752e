-- Run on 2 ranks by spec/dist_spec.lua:
--   mpirun --oversubscribe --allow-run-as-root -np 2 lua5.4 spec/dist/resume.lua <dir>
-- Distributed checkpoints: rank 0 alone writes them; a run interrupted after
-- step 13 and resumed from its last checkpoint (step 10) ends with exactly
-- the weights and history of an uninterrupted distributed run -- with
-- Dropout and parts of 21 and 20 rows, so the ranks' generators differ and
-- every rank's own must be restored. Exits 1 on
-- the first failure.
local kdx = require "kdx"
local nn = kdx.nn
local dist = kdx.dist

local rank = dist.rank()
local dir = assert(arg[1], "usage: resume.lua <dir>")
local fails = 0
local function check(cond, what)
  if not cond then
    fails = fails + 1
    io.stderr:write(("rank %d: FAIL %s\n"):format(rank, what))
  end
end

local train = kdx.data.digits()
local ds = train:subset(kdx.arange(1, 301))

local function go(stop_at, checkpoint, resume)
  kdx.manual_seed(21) -- the same on both ranks; the shards then draw different dropout masks
  local model = nn.Sequential{nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Dropout(0.3), nn.Linear(24, 10)}
  local opt = kdx.optim.Adam(model:parameters(), {lr = 0.01})
  local sched = kdx.optim.StepLR(opt, 1, 0.5)
  local n, inner = 0, opt.step
  opt.step = function(self, ...)
    inner(self, ...)
    n = n + 1
    if n == stop_at then error("interrupted", 0) end
  end
  local ok, h = pcall(kdx.train, {model = model, optimizer = opt, scheduler = sched, epochs = 3, distributed = true,
    data = kdx.data.DataLoader(ds, {batch_size = 41, shuffle = true, seed = 5}), progress = false, log = false,
    checkpoint = checkpoint, resume = resume})
  return ok, h, model
end

local path = dir .. "/run.ckpt"
local ok0, h0, m0 = go(0)
check(ok0, "the uninterrupted run: " .. tostring(h0))
local ok1, e1 = go(13, {path = path, every = 5})
check(not ok1 and e1 == "interrupted", "the interrupted run stops: " .. tostring(e1))
dist.barrier()
local f = io.open(path, "rb")
check(f ~= nil, "rank 0 wrote the checkpoint, which every rank sees")
if f then f:close() end
-- only rank 0 writes: no temporary or per-rank file is left beside it
local listing = io.popen("ls -A " .. dir):read("a")
check(listing == "run.ckpt\n", "the directory holds only run.ckpt, got: " .. listing)
local ok2, h2, m2 = go(0, nil, path)
check(ok2, "the resumed run: " .. tostring(h2))
if ok0 and ok2 then
  local p0, p2 = m0:parameters(), m2:parameters()
  for i = 1, #p0 do
    local d = (p0[i] - p2[i]):abs():max():item()
    check(d == 0, ("parameter %d differs from the uninterrupted run by %g"):format(i, d))
  end
  for e = 1, 3 do
    check(h0[e].loss == h2[e].loss, ("epoch %d loss %.9g vs %.9g"):format(e, h0[e].loss, h2[e].loss))
  end
end

dist.barrier()
if fails > 0 then os.exit(1) end
print(("rank %d: distributed resume ok"):format(rank))
