-- Zero-shot distillation on the bundled digits: Hinton's omitted-class
-- experiment (the student never sees a 3) and data-free KD (a student that
-- never sees a digit at all, taught on data impressions and DeepInversion
-- inputs synthesised from the teacher):
--   lua5.4 examples/05_zero_shot.lua [--small]
local kdx = require "kdx"
local nn = kdx.nn
local small = arg and arg[1] == "--small"
kdx.manual_seed(0)

local train, test = kdx.data.digits()
local loader = kdx.data.DataLoader(train, {batch_size = 64, shuffle = true, seed = 1})
local function sgd(params) return kdx.optim.SGD(params, {lr = 0.05, momentum = 0.9}) end
local function adam(params) return kdx.optim.Adam(params, {lr = 1e-2}) end
local function student() return nn.Sequential{nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)} end
local function pct(v) return ("%6.2f%%"):format(100 * v) end

-- the teacher: a small CNN with batch norm (DeepInversion reads its statistics)
local teacher = nn.Sequential{
  nn.Conv2d(1, 16, 3, {padding = 1}), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
  nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
}
kdx.train{model = teacher, data = loader, optimizer = sgd(teacher:parameters()), epochs = small and 5 or 10,
  log = false, progress = false}
teacher:eval()
print(("teacher: %s on the test part\n"):format(pct(kdx.distill.metrics.accuracy(teacher, test))))

-- 1. The omitted-class experiment: no 3 (class 4) in the student's transfer set.
local seeds = small and {0} or {0, 1, 2}
local rows = {}
for _, seed in ipairs(seeds) do
  rows[#rows + 1] = kdx.distill.omitted_class{teacher = teacher, train = train, test = test, omit = 4,
    epochs = small and 10 or 20, T = 20, seed = seed, student_factory = student}
end
local function stat(get)
  local n, sum, sq = #rows, 0, 0
  for _, r in ipairs(rows) do sum = sum + get(r) end
  local mean = sum / n
  for _, r in ipairs(rows) do sq = sq + (get(r) - mean) ^ 2 end
  if n == 1 then return pct(mean) end
  return ("%s ± %.2f"):format(pct(mean), 100 * math.sqrt(sq / (n - 1)))
end
print(("omitted-class experiment: no \"3\" in the transfer set (%d of %d training images), %d 3s in the test part,"
  .. " seeds %s"):format(rows[1].transfer_size, train:size(), rows[1].omitted_test_count, table.concat(seeds, ",")))
local line = "%-34s %-18s %-18s %s"
print(line:format("", "on 3s", "on other digits", "overall"))
print(line:format("teacher (saw every digit)", stat(function(r) return r.teacher.omitted_accuracy end),
  stat(function(r) return r.teacher.others_accuracy end), stat(function(r) return r.teacher.accuracy end)))
for _, who in ipairs{{"distilled", "distilled (kd, T = 20)"}, {"labels_only", "labels only (ce)"}} do
  local k, label = who[1], who[2]
  print(line:format(label, stat(function(r) return r[k].omitted_accuracy end),
    stat(function(r) return r[k].others_accuracy end), stat(function(r) return r[k].accuracy end)))
  local biases = {}
  for i, r in ipairs(rows) do biases[i] = ("%.2f"):format(r[k].bias) end
  local c = function(f) return stat(function(r) return f(r[k].corrected) end) end
  print(line:format("  + bias " .. table.concat(biases, ", "), c(function(v) return v.omitted_accuracy end),
    c(function(v) return v.others_accuracy end), c(function(v) return v.accuracy end)))
end
print("(bias: the offset on the 3's logit that makes 3 the prediction for 1/10 of the test inputs)\n")

-- 2. Data-free KD: the student's transfer set is synthesised from the teacher alone.
local function distil(data, label, extra)
  kdx.manual_seed(3)
  local s = student()
  local _, final = kdx.distill.run{teacher = teacher, student = s, data = data, eval_data = test,
    epochs = small and 30 or 60, optimizer = adam, loss = {kd = 1}, T = 20, log = false, progress = false}
  print(("%-40s %s%s"):format(label, pct(final.accuracy), extra or ""))
end
local n = small and 200 or 1000
local t0 = kdx.clock()
local impressions, info = kdx.distill.data_impressions{teacher = teacher, n = n, shape = {1, 8, 8},
  steps = small and 60 or 200, clamp = {0, 1}, seed = 1}
local di_time = kdx.clock() - t0
t0 = kdx.clock()
local inverted, inv = kdx.distill.deep_inversion{teacher = teacher, n = n, shape = {1, 8, 8},
  steps = small and 40 or 200, batch_size = 100, clamp = {0, 1}, seed = 1}
local inv_time = kdx.clock() - t0
print(("data-free KD: %d synthetic inputs, student 64-32-10, kd at T = 20, accuracy on the test part"):format(n))
distil(impressions, "data impressions (Nayak et al. 2019)",
  ("   (cross entropy to the targets %.3f -> %.3f, floor %.3f; %.1fs)"):format(info.initial_loss, info.final_loss,
    info.target_entropy, di_time))
distil(inverted, "DeepInversion (Yin et al. 2020)",
  ("   (batch-norm loss %.3f -> %.3f; %.1fs)"):format(inv.initial_bn, inv.final_bn, inv_time))
distil(loader, "for comparison: KD on the real images")
kdx.manual_seed(3)
local alone = student()
kdx.train{model = alone, data = loader, optimizer = adam(alone:parameters()), epochs = small and 30 or 60,
  log = false, progress = false}
print(("%-40s %s"):format("for comparison: labels only, real images", pct(kdx.distill.metrics.accuracy(alone, test))))
