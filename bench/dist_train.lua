-- Samples per second of kdx.train{..., distributed = true} on the bundled
-- digits (the CNN of examples/02), for the table in docs/distributed.md:
--   lua5.4 bench/dist_train.lua                       (1 process)
--   mpirun --oversubscribe --allow-run-as-root -np 2 lua5.4 bench/dist_train.lua
-- Options: --epochs N (3), --batch N (global batch, 128), --threads N (1: one
-- BLAS/engine thread per rank, so 2 ranks on 2 cores do not oversubscribe),
-- --bucket BYTES (the gradient buckets, default kdx.dist.bucket_bytes),
-- --distill 1 (distil the CNN from a wider, cached teacher with
-- kdx.distill.run{distributed = true}, KD + labels, instead of kdx.train),
-- --emit 1 (print the machine line "dist kdx RANKS samples_per_s VALUE" of
-- make bench's table 6 instead; bench/dist_train_torch.py is PyTorch's side).
local kdx = require "kdx"
local nn, dist = kdx.nn, kdx.dist

local opts = {epochs = 3, batch = 128, threads = 1, bucket = kdx.dist.bucket_bytes, distill = 0, emit = 0}
for i = 1, #arg, 2 do opts[arg[i]:gsub("^%-%-", "")] = tonumber(arg[i + 1]) end
if kdx.set_num_threads then kdx.set_num_threads(opts.threads) end

local train = kdx.data.digits()
kdx.manual_seed(1)
local model = nn.Sequential{nn.Conv2d(1, 32, 3, {padding = 1}), nn.ReLU(), nn.Conv2d(32, 32, 3, {padding = 1}),
  nn.ReLU(), nn.Flatten(), nn.Linear(32 * 64, 64), nn.ReLU(), nn.Linear(64, 10)}
local loader = kdx.data.DataLoader(train, {batch_size = opts.batch, shuffle = true, seed = 1})
local quiet = function() end
local teacher
if opts.distill == 1 then -- untrained is enough to time it: the work is the same
  teacher = nn.Sequential{nn.Conv2d(1, 64, 3, {padding = 1}), nn.ReLU(), nn.Conv2d(64, 64, 3, {padding = 1}),
    nn.ReLU(), nn.Flatten(), nn.Linear(64 * 64, 128), nn.ReLU(), nn.Linear(128, 10)}
end
dist.barrier()
local t0 = kdx.clock()
local hist
if teacher then
  hist = kdx.distill.run{teacher = teacher, student = model, data = loader, epochs = opts.epochs, distributed = true,
    loss = {ce = 0.1, kd = 0.9}, cache_teacher = true, bucket_bytes = math.tointeger(opts.bucket),
    optimizer = function(p) return kdx.optim.SGD(p, {lr = 0.05, momentum = 0.9}) end, progress = false, log = quiet}
else
  local opt = kdx.optim.SGD(model:parameters(), {lr = 0.05, momentum = 0.9})
  hist = kdx.train{model = model, data = loader, optimizer = opt, epochs = opts.epochs, distributed = true,
    bucket_bytes = math.tointeger(opts.bucket), progress = false, log = quiet}
end
dist.barrier()
local dt = kdx.clock() - t0
if dist.rank() == 0 and opts.emit == 1 then
  print(("dist kdx %d samples_per_s %.1f"):format(dist.size(), opts.epochs * train:size() / dt))
elseif dist.rank() == 0 then
  print(("%s  ranks %d  global batch %d  bucket %d B  epochs %d  %.1f s  %.0f samples/s  final loss %.4f"):format(
    teacher and "distill" or "train", dist.size(), opts.batch, opts.bucket, opts.epochs, dt,
    opts.epochs * train:size() / dt, hist[#hist].loss))
end
