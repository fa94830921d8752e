-- Samples per second of kdx.train{..., distributed = true} on the bundled
-- digits (the CNN of examples/02), for the table in docs/distributed.md:
--   lua5.4 bench/dist_train.lua                       (1 process)
--   mpirun --oversubscribe --allow-run-as-root -np 2 lua5.4 bench/dist_train.lua
-- Options: --epochs N (3), --batch N (global batch, 128), --threads N (1: one
-- BLAS/engine thread per rank, so 2 ranks on 2 cores do not oversubscribe),
-- --bucket BYTES (the gradient buckets, default kdx.dist.bucket_bytes).
local kdx = require "kdx"
local nn, dist = kdx.nn, kdx.dist

local opts = {epochs = 3, batch = 128, threads = 1, bucket = kdx.dist.bucket_bytes}
for i = 1, #arg, 2 do opts[arg[i]:gsub("^%-%-", "")] = tonumber(arg[i + 1]) end
if kdx.set_num_threads then kdx.set_num_threads(opts.threads) end

local train = kdx.data.digits()
kdx.manual_seed(1)
local model = nn.Sequential{nn.Conv2d(1, 32, 3, {padding = 1}), nn.ReLU(), nn.Conv2d(32, 32, 3, {padding = 1}),
  nn.ReLU(), nn.Flatten(), nn.Linear(32 * 64, 64), nn.ReLU(), nn.Linear(64, 10)}
local opt = kdx.optim.SGD(model:parameters(), {lr = 0.05, momentum = 0.9})
local loader = kdx.data.DataLoader(train, {batch_size = opts.batch, shuffle = true, seed = 1})
dist.barrier()
local t0 = kdx.clock()
local hist = kdx.train{model = model, data = loader, optimizer = opt, epochs = opts.epochs, distributed = true,
  bucket_bytes = math.tointeger(opts.bucket), progress = false, log = function() end}
dist.barrier()
local dt = kdx.clock() - t0
if dist.rank() == 0 then
  print(("ranks %d  global batch %d  bucket %d B  epochs %d  %.1f s  %.0f samples/s  final loss %.4f"):format(
    dist.size(), opts.batch, opts.bucket, opts.epochs, dt, opts.epochs * train:size() / dt, hist[#hist].loss))
end
