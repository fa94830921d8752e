--- train.lua — kdx's side of the training benchmark in `make bench`.
--
-- usage: lua5.4 bench/train.lua THREADS MODEL EPOCHS   (MODEL = mlp | cnn)
--        lua5.4 bench/train.lua import                 (time `require "kdx"`)
--
-- Trains MODEL on Fashion-MNIST for EPOCHS epochs (batch 128, SGD lr 0.05
-- momentum 0.9, cross entropy, a fresh shuffle each epoch) with the same
-- recipe as bench/train_torch.py, then measures test accuracy. Prints
-- machine-readable lines for bench/report.lua (format in bench/README.md):
--   train  kdx THREADS MODEL:epoch SECONDS    one per epoch, training loop only
--   train  kdx THREADS MODEL:acc PERCENT      test accuracy after EPOCHS epochs
--   train  kdx THREADS MODEL:rss MIB          peak RSS of this process (VmHWM)
--   import kdx 0 require MS                   with `import`
-- Needs the `benchclock` module that run.sh builds next to kdx/core.so.

local clock = require "benchclock"

local function emit(...)
  io.write(table.concat({...}, " "), "\n")
  io.flush()
end

-- `import`: the time to load kdx in a fresh process (run.sh starts several
-- and report.lua takes the median). The Lua interpreter's own start-up is
-- not counted, as Python's is not counted for `import torch`.
if arg[1] == "import" then
  local t0 = clock.now()
  require "kdx"
  emit("import kdx 0 require", string.format("%.2f", (clock.now() - t0) * 1e3))
  return
end

local threads, model_name, epochs = tonumber(arg[1]), arg[2], tonumber(arg[3])
if not (threads and (model_name == "mlp" or model_name == "cnn") and epochs and epochs >= 1) then
  io.stderr:write("usage: lua5.4 bench/train.lua THREADS mlp|cnn EPOCHS  |  lua5.4 bench/train.lua import\n")
  os.exit(2)
end

local kdx = require "kdx"
local nn, F = kdx.nn, kdx.nn.functional

-- KDX_BENCH_SEED (default 1) seeds the initialisation and the shuffles: the
-- accuracy of one seed varies by a few tenths of a point, other seeds show how far.
local seed = math.tointeger(tonumber(os.getenv("KDX_BENCH_SEED") or "1")) or 1
kdx.set_num_threads(threads)
kdx.manual_seed(seed)
emit("info kdx threads", kdx.get_num_threads())

-- Data loading (IDX decode, scaling to [0, 1]) is not timed.
local train, test = kdx.data.fashion_mnist()

local model
if model_name == "mlp" then
  model = nn.Sequential{
    nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10),
  }
else
  model = nn.Sequential{
    nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(32 * 5 * 5, 10),
  }
end

local opt = kdx.optim.SGD(model:parameters(), {lr = 0.05, momentum = 0.9})
local loader = kdx.data.DataLoader(train, {batch_size = 128, shuffle = true, seed = seed})

-- The loop a user writes; the timed part includes gathering each shuffled
-- batch from the in-memory dataset, as the PyTorch side does.
for epoch = 1, epochs do
  model:train()
  collectgarbage()
  local t0 = clock.now()
  local sum, n = 0, 0
  for x, y in loader:iter() do
    opt:zero_grad()
    local loss = F.cross_entropy(model(x), y)
    loss:backward()
    opt:step()
    sum = sum + loss:item() * x:size(1)
    n = n + x:size(1)
  end
  local dt = clock.now() - t0
  emit("train kdx", threads, model_name .. ":epoch", string.format("%.3f", dt))
  emit("info kdx", model_name .. "_t" .. threads .. "_epoch" .. epoch .. "_loss", string.format("%.4f", sum / n))
end

-- Test accuracy, in eval mode without recording.
model:eval()
local correct = 0
kdx.no_grad(function()
  for x, y in kdx.data.DataLoader(test, {batch_size = 1000}):iter() do
    correct = correct + model(x):argmax(2):eq(y):sum():item()
  end
end)
emit("train kdx", threads, model_name .. ":acc", string.format("%.2f", 100 * correct / test:size()))

local f = assert(io.open("/proc/self/status"))
local hwm = f:read("a"):match("VmHWM:%s*(%d+) kB")
f:close()
emit("train kdx", threads, model_name .. ":rss", string.format("%.1f", tonumber(hwm) / 1024))
