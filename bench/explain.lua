--- explain.lua — kdx's side of table 5 of `make bench`: milliseconds per
-- image for the attribution methods on a Fashion-MNIST-sized CNN.
--
-- usage: lua5.4 bench/explain.lua THREADS
--
-- The same CNN, images, targets and settings as bench/explain_torch.py, a
-- hand-written PyTorch loop per method. Prints "explain kdx THREADS METHOD MS"
-- lines (best of ROUNDS runs, ms per image).

local kdx = require "kdx"
local clock = require "benchclock"
local nn = kdx.nn

local ROUNDS = 3
local threads = tonumber(arg[1])
if not threads then
  io.stderr:write("usage: lua5.4 bench/explain.lua THREADS\n")
  os.exit(2)
end
kdx.set_num_threads(threads)
kdx.manual_seed(7)

local model = nn.Sequential{
  nn.Conv2d(1, 16, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
  nn.Conv2d(16, 32, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
  nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
}:eval()

-- 7x7 patches of 4x4 pixels: 49 features for KernelSHAP.
local mask = kdx.zeros({1, 28, 28}, "int64")
for i = 1, 28 do
  for j = 1, 28 do mask:set(1, i, j, ((i - 1) // 4) * 7 + (j - 1) // 4 + 1) end
end

-- Each method: the number of images it explains per run, and the run.
local methods = {
  {"saliency", 64, function(x, t) return kdx.explain.saliency(model, x, {target = t, batch_size = 64}) end},
  {"ig50", 8, function(x, t)
    return kdx.explain.integrated_gradients(model, x, {target = t, steps = 50, batch_size = 128})
  end},
  {"occlusion4x4", 8, function(x, t)
    return kdx.explain.occlusion(model, x, {target = t, window = {1, 4, 4}, strides = {1, 4, 4}, batch_size = 128})
  end},
  {"kernelshap", 4, function(x, t)
    return kdx.explain.kernel_shap(model, x, {target = t, feature_mask = mask, samples = 512, seed = 1,
      batch_size = 128})
  end},
}

local function emit(...)
  io.write(table.concat({...}, " "), "\n")
  io.flush()
end

for _, m in ipairs(methods) do
  local name, n, run = m[1], m[2], m[3]
  if kdx.explain[name == "ig50" and "integrated_gradients" or name == "occlusion4x4" and "occlusion"
      or name == "kernelshap" and "kernel_shap" or name] then
    local x = kdx.rand({n, 1, 28, 28})
    local t = kdx.full({n}, 3, "int64")
    run(x, t) -- warm up
    local best = math.huge
    for _ = 1, ROUNDS do
      collectgarbage()
      local t0 = clock.now()
      run(x, t)
      best = math.min(best, clock.now() - t0)
    end
    emit("explain kdx", threads, name, string.format("%.3f", best / n * 1e3))
  else
    emit("info kdx explain_missing", name)
  end
end
