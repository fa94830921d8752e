-- Run on 2 ranks by spec/dist_spec.lua:
--   mpirun --oversubscribe --allow-run-as-root -np 2 lua5.4 spec/dist/train.lua
-- kdx.train{..., distributed = true} on the bundled digits checks that
-- (a) both ranks hold identical weights after every step and (b) the result
-- equals a single-process run with the same global batch and seed.
-- Exits 1 with a message on the first failure.
local kdx = require "kdx"
local nn = kdx.nn
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

local train = kdx.data.digits()
-- 63 rows a global batch: 32 + 31 rows on the two ranks, and a last batch of 52
local function loader() return kdx.data.DataLoader(train, {batch_size = 63, shuffle = true, seed = 7}) end
local function model_for(seed)
  kdx.manual_seed(seed)
  return nn.Sequential{nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)}
end
local function flat(model)
  local parts = {}
  for _, p in ipairs(model:parameters()) do parts[#parts + 1] = p:detach():reshape{p:numel()} end
  return kdx.cat(parts, 1)
end

-- the distributed run: each rank starts from different weights (seed 100 +
-- rank), so equality proves rank 0's were broadcast
local model = model_for(100 + rank)
local opt = kdx.optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})
local step, inner = 0, opt.step
opt.step = function(self, ...)
  local r = inner(self, ...)
  step = step + 1
  local w = flat(model)
  local both = dist.allgather(w:reshape{1, w:numel()})
  local diff = (both:select(1, 1) - both:select(1, 2)):abs():max():item()
  check(diff == 0, ("weights differ between ranks after step %d by %g"):format(step, diff))
  return r
end
-- buckets of at most 1 KiB: the 2,410 parameters go in several messages
dist.bucket_bytes = 1024
local _, test = kdx.data.digits()
local hist = kdx.train{model = model, data = loader(), optimizer = opt, epochs = 2, distributed = true,
  eval_data = kdx.data.DataLoader(test, {batch_size = 50}), progress = false, log = function() end}

-- the single-process reference, on every rank: rank 0's initial weights,
-- the whole global batch in one process
local ref = model_for(100)
local ropt = kdx.optim.SGD(ref:parameters(), {lr = 0.1, momentum = 0.9})
local rhist = kdx.train{model = ref, data = loader(), optimizer = ropt, epochs = 2, progress = false,
  eval_data = kdx.data.DataLoader(test, {batch_size = 50}), log = function() end}

check(step == 2 * math.ceil(train:size() / 63), "steps " .. step)
local a, b = flat(model), flat(ref)
local err = ((a - b):abs() - (b:abs() * 1e-4 + 1e-5)):max():item()
check(err <= 0, ("distributed and single-process weights differ (excess %g)"):format(err))
check(rhist[2].loss < rhist[1].loss, "the reference trains")
-- (c) the history is the global batch's on every rank: the same numbers as
-- one process (the loss to float32 rounding of the two halves' sums)
for e = 1, 2 do
  check(math.abs(hist[e].loss - rhist[e].loss) <= 1e-5 * rhist[e].loss,
    ("epoch %d loss %.9g vs single %.9g"):format(e, hist[e].loss, rhist[e].loss))
  check(hist[e].accuracy == rhist[e].accuracy, ("epoch %d accuracy %s vs %s"):format(e, hist[e].accuracy, rhist[e].accuracy))
  -- evaluation split across ranks: the whole test set's numbers
  check(math.abs(hist[e].eval_loss - rhist[e].eval_loss) <= 1e-5 * rhist[e].eval_loss,
    ("epoch %d eval loss %.9g vs %.9g"):format(e, hist[e].eval_loss, rhist[e].eval_loss))
  check(math.abs(hist[e].eval_accuracy - rhist[e].eval_accuracy) < 1e-12, ("epoch %d eval accuracy"):format(e))
end
local losses = dist.allgather(kdx.tensor({{hist[1].loss, hist[2].loss}}, "float64"))
check((losses:select(1, 1) - losses:select(1, 2)):abs():max():item() == 0, "the ranks' histories differ")
check(hist[2].loss < hist[1].loss, "the distributed run trains")

-- (d) batch norm: statistics per rank in training, rank 0's running
-- statistics broadcast before every step and at every epoch's end, so both
-- ranks end with the same buffers (and evaluate the same model)
kdx.manual_seed(40 + rank)
local bn = nn.Sequential{nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10)}
local bh = kdx.train{model = bn, data = loader(), optimizer = kdx.optim.SGD(bn:parameters(), {lr = 0.1}), epochs = 2,
  distributed = true, eval_data = test, progress = false, log = false}
for i, b in ipairs(bn:buffers()) do
  local f = b:to("float64"):reshape{1, b:numel()}
  local both = dist.allgather(f)
  check((both:select(1, 1) - both:select(1, 2)):abs():max():item() == 0, ("batch-norm buffer %d differs between ranks"):format(i))
end
check(bn:buffers()[1]:abs():max():item() > 0, "the running mean moved")
check(bh[2].eval_accuracy > 0.5, "the batch-norm model learns: " .. tostring(bh[2].eval_accuracy))

dist.barrier()
if fails > 0 then os.exit(1) end
print(("rank %d: distributed training ok (%d steps, max |distributed - single| = %.3g)"):format(rank, step,
  (a - b):abs():max():item()))
