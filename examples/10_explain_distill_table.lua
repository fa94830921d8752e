-- Explanation-aware distillation on Fashion-MNIST (docs/explain_distill_results.md):
-- does a student that is trained to match the teacher's explanations explain
-- its decisions like the teacher? Five students, 3 seeds each, one recipe:
-- student alone, KD, KD+AT, KD+input-gradient match, KD+Grad-CAM match. For
-- every run: test accuracy (all 10,000 test images) and the agreement of the
-- student's integrated-gradients and Grad-CAM maps with the teacher's on the
-- first 500 test images, targets = the true labels (kdx.explain.compare:
-- per-sample Spearman, top-10% overlap, cosine, SSIM; deletion AUC).
-- The teacher and the student are examples/06_distill_table.lua's.
--   lua5.4 examples/10_explain_distill_table.lua            full table (about 20 min on 2 cores)
--   lua5.4 examples/10_explain_distill_table.lua --small    seconds, on the bundled digits
-- Options: --resume (skip the runs, and the pilot, already in the results file),
-- --out FILE (default results/explain_distill_fashion_mnist.lua; --small writes a
-- temporary file and removes it), --teacher FILE (default
-- results/fashion_teacher.safetensors, 06's checkpoint: reused if present, else
-- trained with 06's recipe and saved there).
-- The loss weights of the two explanation terms are picked by a short pilot
-- (below) on held-out training images, never on the test set.
local kdx = require "kdx"
local nn = kdx.nn
local M = kdx.distill.metrics
io.stdout:setvbuf("line")
kdx.set_num_threads(2)

local opt_args = {}
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--out" or a == "--teacher" then opt_args[a:sub(3)] = arg[i + 1]; i = i + 1
    else opt_args[a:sub(3)] = true end
    i = i + 1
  end
end
local small = opt_args.small

-- ---------------------------------------------------------------- the budget --
-- 06's student recipe at lr 0.01 (06 found that lr 0.05 collapses some
-- students to a constant prediction; at 0.01 none did).
local cfg = small and {
  dataset = "digits", seeds = {0, 1}, teacher_epochs = 3, transfer = 800, epochs = 2, batch = 64,
  explain_n = 64, pilot = {transfer = 400, epochs = 1, val = 200, explain_n = 32, grid = {1, 10}},
} or {
  dataset = "fashion_mnist", seeds = {0, 1, 2}, teacher_epochs = 5, transfer = 20000, epochs = 3, batch = 64,
  explain_n = 500, pilot = {transfer = 5000, epochs = 2, val = 5000, explain_n = 200, grid = {1, 10, 100}},
}
local LR = 0.01
local T = 4
local CAM_LAYER = "6"            -- the ReLU after the last convolution, in teacher and student alike
local out_path = opt_args.out or (small and os.tmpname() or "results/explain_distill_fashion_mnist.lua")
local teacher_path = opt_args.teacher or (not small and "results/fashion_teacher.safetensors")

local function sgd(params) return kdx.optim.SGD(params, {lr = LR, momentum = 0.9, weight_decay = 5e-4}) end

-- ------------------------------------------------------------------ the data --
local train, test
if small then train, test = kdx.data.digits() else train, test = kdx.data.fashion_mnist() end
local H = train.x:size(3)                                        -- 28 (Fashion-MNIST) or 8 (digits)
local function range(a, b) local t = {}; for i = a, b do t[#t + 1] = i end; return t end
local n_transfer = math.min(cfg.transfer, train:size())
local transfer = train:subset(range(1, n_transfer))              -- the first N training images, as 06
-- the pilot trains on a prefix of the transfer set and is scored on training
-- images outside it (a validation set), so the test set picks nothing
local pilot_train = train:subset(range(1, math.min(cfg.pilot.transfer, n_transfer)))
local val_first = math.min(n_transfer + 1, train:size() - cfg.pilot.val + 1)
local val = train:subset(range(val_first, val_first + cfg.pilot.val - 1))

-- ---------------------------------------------------------------- the models --
-- examples/06_distill_table.lua's: teacher 421,834 parameters on 28×28; student 20,386.
local function Teacher()
  return nn.Sequential{
    nn.Conv2d(1, 32, 3, {padding = 1}), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, {padding = 1}), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(64 * (H // 4) * (H // 4), 128), nn.ReLU(), nn.Linear(128, 10)}
end
local function Student()
  return nn.Sequential{
    nn.Conv2d(1, 8, 3, {padding = 1}), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3, {padding = 1}), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(16 * (H // 4) * (H // 4), 24), nn.ReLU(), nn.Linear(24, 10)}
end

-- ----------------------------------------------------------- the raw results --
local function serialize(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v then return "0/0" elseif v == math.huge then return "math.huge" elseif v == -math.huge then return "-math.huge" end
    return ("%.17g"):format(v)
  elseif t == "string" then return ("%q"):format(v)
  elseif t == "boolean" then return tostring(v)
  elseif t == "table" then
    local inner, parts = indent .. "  ", {}
    local n = #v
    for i = 1, n do parts[#parts + 1] = inner .. serialize(v[i], inner) end
    local keys = {}
    for k in pairs(v) do if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local key = (type(k) == "string" and k:match("^[%a_][%w_]*$")) and k or ("[" .. serialize(k) .. "]")
      parts[#parts + 1] = inner .. key .. " = " .. serialize(v[k], inner)
    end
    if #parts == 0 then return "{}" end
    return "{\n" .. table.concat(parts, ",\n") .. ",\n" .. indent .. "}"
  end
  return "nil"
end

local results = {meta = {}, runs = {}}
if opt_args.resume then
  local ok, old = pcall(dofile, out_path)
  if ok and type(old) == "table" then results = old; results.runs = results.runs or {} end
end
local function save_results()
  local tmp = out_path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write("-- written by examples/10_explain_distill_table.lua; see docs/explain_distill_results.md\nreturn ",
    serialize(results), "\n")
  f:close()
  assert(os.rename(tmp, out_path))
end
local function done(list, method, seed)
  for _, r in ipairs(list) do if r.method == method and r.seed == seed then return r end end
end

local t_start = kdx.clock()
local function elapsed() return kdx.clock() - t_start end
local function hostinfo()
  local f = io.open("/proc/cpuinfo")
  local model = f and f:read("a"):match("model name%s*:%s*([^\n]+)") or "?"
  if f then f:close() end
  local p = io.popen("nproc 2>/dev/null")
  local cores = p and p:read("l") or "?"
  if p then p:close() end
  return model, cores
end
local cpu, cores = hostinfo()
local prev_seconds = results.meta and results.meta.seconds or 0
local pilot_kept = results.meta and results.meta.pilot
results.meta = {dataset = cfg.dataset, small = small or false, seeds = cfg.seeds, teacher_epochs = cfg.teacher_epochs,
  student_epochs = cfg.epochs, batch_size = cfg.batch, lr = LR, T = T, transfer_size = n_transfer,
  test_size = test:size(), explain_n = cfg.explain_n, cam_layer = CAM_LAYER, topk = 0.1,
  ig = "kdx.explain.integrated_gradients defaults: 50 Gauss-Legendre steps, baseline 0",
  cpu = cpu, cores = cores, threads = 2, started = os.date("!%Y-%m-%dT%H:%M:%SZ"), lua = _VERSION,
  pilot = pilot_kept}

-- --------------------------------------------------------------- the teacher --
local teacher = Teacher()
local teacher_seconds, loaded = 0, false
if teacher_path and io.open(teacher_path) then
  local _, meta = kdx.load(teacher_path)
  teacher:load(teacher_path)
  teacher_seconds, loaded = tonumber(meta and meta.train_seconds) or 0, true
  print(("teacher: loaded %s (trained in %.0f s)"):format(teacher_path, teacher_seconds))
else                                              -- 06's teacher recipe
  kdx.manual_seed(0)
  local opt = kdx.optim.Adam(teacher:parameters(), {lr = 1e-3})
  local t0 = kdx.clock()
  kdx.train{model = teacher, data = kdx.data.DataLoader(train, {batch_size = 128, shuffle = true, seed = 0}),
    optimizer = opt, scheduler = kdx.optim.CosineAnnealingLR(opt, cfg.teacher_epochs), epochs = cfg.teacher_epochs,
    eval_data = kdx.data.DataLoader(test, {batch_size = 256}), progress = false, log = function(line) print("teacher " .. line) end}
  teacher_seconds = kdx.clock() - t0
  if teacher_path then
    teacher:save(teacher_path, {train_seconds = ("%.1f"):format(teacher_seconds), epochs = tostring(cfg.teacher_epochs),
      seed = "0", script = "examples/10_explain_distill_table.lua (06's recipe)"})
  end
end
teacher:eval()
local teacher_acc = M.accuracy(teacher, test)
local probe = Student()
results.meta.teacher = {accuracy = teacher_acc, params = M.num_parameters(teacher), train_seconds = teacher_seconds,
  loaded = loaded, path = teacher_path or nil}
results.meta.student = {params = M.num_parameters(probe)}
print(("teacher: %.2f%% test accuracy, %d parameters; student %d parameters; transfer set %d images")
  :format(100 * teacher_acc, results.meta.teacher.params, results.meta.student.params, n_transfer))
save_results()

-- ------------------------------------------------------- training and scoring --
local KD = {ce = 0.1, kd = 0.9}                                   -- RepDistiller's Hinton KD, as 06
local function with(extra) local t = {ce = KD.ce, kd = KD.kd}; for k, v in pairs(extra) do t[k] = v end; return t end
local CAM_OPTS = {gradcam_match = {student_layer = CAM_LAYER, teacher_layer = CAM_LAYER}}   -- distance: cosine

local function train_student(m, seed, data, epochs)
  kdx.manual_seed(seed)
  local student = Student()
  local t0 = kdx.clock()
  local history = kdx.distill.run{
    teacher = (not m.no_teacher) and teacher or nil, student = student,
    data = kdx.data.DataLoader(data, {batch_size = cfg.batch, shuffle = true, seed = seed}),
    epochs = epochs, optimizer = sgd,
    scheduler = function(opt) return kdx.optim.CosineAnnealingLR(opt, epochs) end,
    loss = m.loss, T = T, loss_opts = m.loss_opts, hints = m.hints,
    cache_teacher = not m.no_teacher, log = false, progress = false}
  student:eval()
  local losses = {}
  for i, h in ipairs(history) do losses[i] = h.loss end
  return student, kdx.clock() - t0, losses
end

-- accuracy on `acc_data`, and IG / Grad-CAM agreement with the teacher on the
-- first n images of `ex_data`, targets = the true labels
local function score(student, acc_data, ex_data, n)
  local t0 = kdx.clock()
  local cmp = kdx.explain.compare(teacher, student, ex_data, {n = n,
    methods = {"integrated_gradients", "gradcam"}, layers = {teacher = CAM_LAYER, student = CAM_LAYER}, topk = 0.1})
  local s = {accuracy = M.accuracy(student, acc_data), agreement = M.agreement(student, teacher, acc_data),
    explain_seconds = kdx.clock() - t0}
  for name, key in pairs{integrated_gradients = "ig", gradcam = "gradcam"} do
    local mean = cmp.methods[name].mean
    s[key] = {spearman = mean.spearman, topk_overlap = mean.topk_overlap, cosine = mean.cosine, ssim = mean.ssim,
      deletion_auc_teacher = mean.deletion_auc_teacher, deletion_auc_student = mean.deletion_auc_student}
    -- samples whose student map is all zero (Spearman NaN, left out of the mean)
    local nan = 0
    for _, v in ipairs(cmp.methods[name].similarity.spearman:totable()) do if v ~= v then nan = nan + 1 end end
    s[key].zero_maps = nan
  end
  return s
end

-- ------------------------------------------------------------------ the pilot --
-- One short run per weight (seed 0, first pilot.transfer images, pilot.epochs
-- epochs), scored on held-out training images: accuracy on pilot.val images,
-- explanation agreement on the first pilot.explain_n of them. Rule, fixed
-- before the pilot ran: per term, the weight with the highest mean Spearman
-- (IG and Grad-CAM averaged) among those whose accuracy is at most 1 point
-- below the KD pilot's; if none qualifies, the smallest weight.
local terms = {
  {key = "input_gradient_match", name = "KD+input-gradient match"},
  {key = "gradcam_match", name = "KD+Grad-CAM match", loss_opts = CAM_OPTS},
}
local pilot = results.meta.pilot or {runs = {}, grid = cfg.pilot.grid, transfer = pilot_train:size(),
  epochs = cfg.pilot.epochs, val_first = val_first, val = val:size(), explain_n = cfg.pilot.explain_n}
results.meta.pilot = pilot
local function pilot_run(name, loss, loss_opts)
  if done(pilot.runs, name, 0) then return done(pilot.runs, name, 0) end
  local student, secs = train_student({loss = loss, loss_opts = loss_opts}, 0, pilot_train, cfg.pilot.epochs)
  local r = score(student, val, val, cfg.pilot.explain_n)
  r.method, r.seed, r.loss, r.seconds = name, 0, loss, secs
  pilot.runs[#pilot.runs + 1] = r
  save_results()
  print(("pilot %-28s val acc %6.2f%%  IG spearman %.3f  Grad-CAM spearman %.3f  %5.1f s (elapsed %.0f s)")
    :format(name, 100 * r.accuracy, r.ig.spearman, r.gradcam.spearman, secs, elapsed()))
  return r
end
local kd_pilot = pilot_run("KD", KD)
pilot.pick = pilot.pick or {}
for _, term in ipairs(terms) do
  local best, best_agree
  for _, w in ipairs(cfg.pilot.grid) do
    local r = pilot_run(("%s, weight %g"):format(term.key, w), with{[term.key] = w}, term.loss_opts)
    local agree = (r.ig.spearman + r.gradcam.spearman) / 2
    if r.accuracy >= kd_pilot.accuracy - 0.01 and (not best_agree or agree > best_agree) then best, best_agree = w, agree end
  end
  pilot.pick[term.key] = pilot.pick[term.key] or best or cfg.pilot.grid[1]
  print(("pilot: %s weight %g"):format(term.key, pilot.pick[term.key]))
end
save_results()

-- ---------------------------------------------------------------- the table --
local methods = {
  {name = "student alone", loss = {ce = 1}, no_teacher = true},
  {name = "KD", loss = KD},
  -- 06's AT+KD: at = 1000 (p = 2) on the outputs of both conv stages
  {name = "KD+AT", loss = with{at = 1000}, hints = {{student = "3", teacher = "3"}, {student = "7", teacher = "7"}}},
}
for _, term in ipairs(terms) do
  methods[#methods + 1] = {name = term.name, loss = with{[term.key] = pilot.pick[term.key]}, loss_opts = term.loss_opts}
end

for _, m in ipairs(methods) do
  for _, seed in ipairs(cfg.seeds) do
    if not done(results.runs, m.name, seed) then
      local student, secs, losses = train_student(m, seed, transfer, cfg.epochs)
      local r = score(student, test, test, cfg.explain_n)
      r.method, r.seed, r.loss, r.seconds, r.train_loss_per_epoch = m.name, seed, m.loss, secs, losses
      results.runs[#results.runs + 1] = r
      save_results()
      print(("%-24s seed %d  acc %6.2f%%  IG ρ %.3f top10 %.3f  CAM ρ %.3f top10 %.3f  train %5.1f s + explain %4.1f s (elapsed %.0f s)")
        :format(m.name, seed, 100 * r.accuracy, r.ig.spearman, r.ig.topk_overlap, r.gradcam.spearman,
          r.gradcam.topk_overlap, secs, r.explain_seconds, elapsed()))
    end
  end
end

-- ------------------------------------------------------------ the Markdown table --
local function stat(values)
  local n, sum, sq = #values, 0, 0
  for _, v in ipairs(values) do sum = sum + v end
  local mean = sum / n
  for _, v in ipairs(values) do sq = sq + (v - mean) ^ 2 end
  return mean, n > 1 and math.sqrt(sq / (n - 1)) or 0
end
local function fmt(values, scale, digits)
  local mean, sd = stat(values)
  return ("%." .. digits .. "f ± %." .. digits .. "f"):format(scale * mean, scale * sd)
end
print(("\nteacher %.2f%%; %d seeds; mean ± sample std; agreement of the student's maps with the teacher's on the first %d"
  .. " test images (targets: true labels); top-k = top 10%% of pixels"):format(100 * teacher_acc, #cfg.seeds, cfg.explain_n))
print("| student | loss | accuracy % | IG Spearman | IG top-10% overlap | Grad-CAM Spearman | Grad-CAM top-10% overlap |")
print("|---|---|---|---|---|---|---|")
for _, m in ipairs(methods) do
  local col = {acc = {}, igs = {}, igk = {}, cs = {}, ck = {}}
  for _, r in ipairs(results.runs) do
    if r.method == m.name then
      col.acc[#col.acc + 1] = r.accuracy
      col.igs[#col.igs + 1], col.igk[#col.igk + 1] = r.ig.spearman, r.ig.topk_overlap
      col.cs[#col.cs + 1], col.ck[#col.ck + 1] = r.gradcam.spearman, r.gradcam.topk_overlap
    end
  end
  if #col.acc > 0 then
    local keys = {}
    for k in pairs(m.loss) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = ("%s=%g"):format(k, m.loss[k]) end
    print(("| %s | `%s` | %s | %s | %s | %s | %s |"):format(m.name, table.concat(parts, ", "), fmt(col.acc, 100, 2),
      fmt(col.igs, 1, 3), fmt(col.igk, 1, 3), fmt(col.cs, 1, 3), fmt(col.ck, 1, 3)))
  end
end
results.meta.finished = os.date("!%Y-%m-%dT%H:%M:%SZ")
results.meta.seconds = prev_seconds + elapsed()
save_results()
print(("\ntotal %.0f s this invocation; raw numbers in %s"):format(elapsed(), out_path))
if small then os.remove(out_path) end
