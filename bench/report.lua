--- report.lua — joins the machine-readable lines of bench.lua, blas_raw and
-- bench_torch.py into the side-by-side tables that `make bench` prints.
--
-- usage: lua5.4 bench/report.lua RESULTS_FILE
--
-- Lines are "<kind> <impl> <threads> <key> <value>" (kind = matmul, conv,
-- add) or "info <who> <key> <value...>". A cell measured in several rounds
-- keeps its best value (highest GFLOP/s, lowest time): on a shared machine
-- the best round is the one other processes disturbed least. The training
-- lines of train.lua / train_torch.py (kind = train, import) keep every value:
-- table 4 shows the best epoch and the median load time.

local path = arg[1]
if not path then
  io.stderr:write("usage: lua5.4 bench/report.lua RESULTS_FILE\n")
  os.exit(2)
end

local HIGHER_IS_BETTER = {matmul = true, conv = false, add = false, explain = false, dist = true}

local cells, info, threads_seen, keys_seen = {}, {}, {}, {matmul = {}, conv = {}, explain = {}}
local series, train_threads_seen = {}, {} -- "train kdx 2 mlp:epoch" -> {values...}
for line in io.lines(path) do
  local who, key, value = line:match("^info (%S+) (%S+) ?(.*)$")
  if who then
    info[who .. "." .. key] = value
  else
    local kind, impl, thr, k, v = line:match("^(%S+) (%S+) (%d+) (%S+) (%S+)$")
    v = tonumber(v)
    if (kind == "train" or kind == "import") and v then
      local id = table.concat({kind, impl, thr, k}, " ")
      series[id] = series[id] or {}
      table.insert(series[id], v)
      if kind == "train" then train_threads_seen[tonumber(thr)] = true end
    elseif kind and HIGHER_IS_BETTER[kind] ~= nil and v then
      local id = table.concat({kind, impl, thr, k}, " ")
      local old = cells[id]
      if not old or (HIGHER_IS_BETTER[kind] and v > old) or (not HIGHER_IS_BETTER[kind] and v < old) then
        cells[id] = v
      end
      if kind ~= "dist" then threads_seen[tonumber(thr)] = true end -- dist: thr is the process count
      if keys_seen[kind] and not keys_seen[kind][k] then
        keys_seen[kind][k] = true
        table.insert(keys_seen[kind], k)
      end
    end
  end
end

local threads = {}
for t in pairs(threads_seen) do threads[#threads + 1] = t end
table.sort(threads)
table.sort(keys_seen.matmul, function(a, b) return tonumber(a) < tonumber(b) end)

local function get(kind, impl, thr, key) return cells[table.concat({kind, impl, thr, key}, " ")] end

local function fmt(v, f) return v and string.format(f, v) or "n/a" end

local function ratio(a, b) return (a and b and b > 0) and a / b or nil end

local function row(widths, fields)
  local out = {}
  for i, f in ipairs(fields) do
    local w = widths[i]
    out[i] = w < 0 and string.format("%-" .. -w .. "s", f) or string.format("%" .. w .. "s", f)
  end
  print((table.concat(out, "  "):gsub("%s+$", "")))
end

local function rule(widths)
  local n = 0
  for _, w in ipairs(widths) do n = n + math.abs(w) + 2 end
  print(string.rep("-", n - 2))
end

-- Header: what ran, on what, under which environment.
print("kdx benchmark  (" .. (info["run.date"] or "") .. ")")
print(string.format("  machine   %s, %s cores; load average before/after: %s / %s",
  info["run.cpu"] or "?", info["run.nproc"] or "?", info["run.load_before"] or "?", info["run.load_after"] or "?"))
print(string.format("  OpenBLAS  %s (core %s)", info["openblas.config"] or "n/a", info["openblas.corename"] or "?"))
print(string.format("  PyTorch   %s", info["torch.version"] and (info["torch.version"] .. ", mkldnn "
  .. (info["torch.mkldnn"] == "1" and "on" or "off")) or ("n/a (" .. (info["torch.unavailable"] or "not run") .. ")")))
print("  env       " .. (info["run.env"] or "?") .. "  (as found; the same for all three)")
print("  threads   kdx: kdx.set_num_threads(n); OpenBLAS: OPENBLAS_NUM_THREADS=n;")
print("            PyTorch: torch.set_num_threads(n) and OPENBLAS_NUM_THREADS=n (its BLAS is the same OpenBLAS);")
print("            table 4 adds OMP_WAIT_POLICY=passive for PyTorch (its spinning OpenMP workers starve OpenBLAS)")
print("  timing    tables 1-3: best of 5 batches per cell, best of " .. (info["run.rounds"] or "?")
  .. " rounds; ~" .. (info["run.seconds"] or "?") .. " s per cell per round")
local other, wall = (info["run.other_cpu"] or ""):match("^(%d+) (%d+)$")
if other then
  print(string.format("  sharing   other processes used %s%% of the machine's CPU during the %s s of tables 1-3", other,
    wall))
  if tonumber(other) >= 10 then
    print("  WARNING   the machine was busy: the 2-thread cells (and the ratios between processes run at")
    print("            different moments) are unreliable; rerun `make bench` on a quiet machine")
  end
end
print()

-- 1. matmul
local w1 = {3, 5, 8, 9, 8, 9, 9, 5, 12}
print("1. matmul float32, C = A @ B, square N, GFLOP/s (higher is better)")
print("   goal: kdx >= 95% of raw OpenBLAS for N >= 256")
row(w1, {"thr", "N", "kdx", "OpenBLAS", "PyTorch", "kdx/BLAS", "kdx/torch", "goal", "BLAS+calloc"})
rule(w1)
local misses = 0
for _, t in ipairs(threads) do
  for _, n in ipairs(keys_seen.matmul) do
    local k, b, p = get("matmul", "kdx", t, n), get("matmul", "openblas", t, n), get("matmul", "torch", t, n)
    local rb = ratio(k, b)
    local goal = "-"
    if tonumber(n) >= 256 then
      goal = rb and (rb >= 0.95 and "ok" or "MISS") or "n/a"
      if goal == "MISS" then misses = misses + 1 end
    end
    row(w1, {t, n, fmt(k, "%.1f"), fmt(b, "%.1f"), fmt(p, "%.1f"), fmt(rb and rb * 100, "%.0f%%"),
      fmt(ratio(k, p) and ratio(k, p) * 100, "%.0f%%"), goal, fmt(get("matmul", "openblas+calloc", t, n), "%.1f")})
  end
end
print("   BLAS+calloc: raw sgemm into a freshly calloc'd C each call (the output cost a tensor library pays)")
print()

-- 2. conv2d
local function conv_label(key)
  local x, w, p = key:match("^(%S-):(%S-):p(%d+)$")
  if not x then return key, "" end
  return "x[" .. x:gsub("x", ",") .. "]", "w[" .. w:gsub("x", ",") .. "] pad " .. p
end
local w2 = {3, -17, -20, 9, 10, 9, 5}
print("2. conv2d forward float32 with bias, stride 1, ms per call (lower is better)")
print("   goal: kdx at least as fast as PyTorch (kdx/torch <= 1.00)")
row(w2, {"thr", "input", "weight", "kdx ms", "PyTorch ms", "kdx/torch", "goal"})
rule(w2)
for _, t in ipairs(threads) do
  for _, key in ipairs(keys_seen.conv) do
    local k, p = get("conv", "kdx", t, key), get("conv", "torch", t, key)
    local r = ratio(k, p)
    local goal = r and (r <= 1.0 and "ok" or "MISS") or "n/a"
    if goal == "MISS" then misses = misses + 1 end
    local xl, wl = conv_label(key)
    row(w2, {t, xl, wl, fmt(k, "%.3f"), fmt(p, "%.3f"), fmt(r, "%.2f"), goal})
  end
end
print()

-- 3. per-call overhead
local w3 = {3, 8, 11, 9, 5}
print("3. per-call overhead: c = a + b on two 4-element float32 tensors, in a loop, ns per call (lower is better)")
print("   goal: kdx <= 1/3 of PyTorch (kdx/torch <= 0.33)")
row(w3, {"thr", "kdx ns", "PyTorch ns", "kdx/torch", "goal"})
rule(w3)
for _, t in ipairs(threads) do
  local k, p = get("add", "kdx", t, "4"), get("add", "torch", t, "4")
  local r = ratio(k, p)
  local goal = r and (r <= 1 / 3 and "ok" or "MISS") or "n/a"
  if goal == "MISS" then misses = misses + 1 end
  row(w3, {t, fmt(k, "%.0f"), fmt(p, "%.0f"), fmt(r, "%.2f"), goal})
end
print()

-- 4. training on Fashion-MNIST
local function values(kind, impl, thr, key) return series[table.concat({kind, impl, thr, key}, " ")] end
local function best(v)
  if not v then return nil end
  local m = math.huge
  for _, x in ipairs(v) do m = math.min(m, x) end
  return m
end
local function median(v)
  if not v or #v == 0 then return nil end
  local c = {}
  for i, x in ipairs(v) do c[i] = x end
  table.sort(c)
  local h = #c // 2
  return #c % 2 == 1 and c[h + 1] or (c[h] + c[h + 1]) / 2
end
local function last(v) return v and v[#v] end

local train_threads = {}
for t in pairs(train_threads_seen) do train_threads[#train_threads + 1] = t end
table.sort(train_threads)
local epochs = info["run.epochs"] or "?"
local TIME_GOAL = {mlp = 0.7, cnn = 1.0}
local MODEL_LABEL = {mlp = "MLP", cnn = "CNN"}
print("4. training on Fashion-MNIST: batch 128, SGD lr 0.05 momentum 0.9, cross entropy, shuffled each epoch;")
print("   MLP 784-256-128-10 (ReLU); CNN conv 1->16 3x3, ReLU, maxpool 2, conv 16->32 3x3, ReLU, maxpool 2, linear 800->10")
print("   one process per framework, model and thread count, " .. epochs .. " epoch(s) each; time = best epoch's training")
print("   loop (data loading excluded), accuracy = test set after the last epoch, RSS = peak of the process (VmHWM)")
print("   goals: time kdx/torch <= 1.00 (CNN), <= 0.70 (MLP); accuracy kdx no more than 0.5 points below PyTorch")
print("   after 5 epochs; peak RSS kdx/torch <= 0.50")
local w4 = {3, -5, 7, 7, 6, 4, 7, 7, 5, 4, 8, 8, 6, 4}
row(w4, {"thr", "model", "kdx s", "torch s", "ratio", "goal", "kdx %", "torch %", "diff", "goal", "kdx MiB",
  "torch MiB", "ratio", "goal"})
rule(w4)
local function verdict(ok)
  if ok == nil then return "n/a" end
  if not ok then misses = misses + 1 end
  return ok and "ok" or "MISS"
end
for _, t in ipairs(train_threads) do
  for _, m in ipairs{"mlp", "cnn"} do
    local ks, ps = best(values("train", "kdx", t, m .. ":epoch")), best(values("train", "torch", t, m .. ":epoch"))
    local ka, pa = last(values("train", "kdx", t, m .. ":acc")), last(values("train", "torch", t, m .. ":acc"))
    local kr, pr = last(values("train", "kdx", t, m .. ":rss")), last(values("train", "torch", t, m .. ":rss"))
    if ks or ps or ka or pa then
      local rt, rr = ratio(ks, ps), ratio(kr, pr)
      local diff = (ka and pa) and ka - pa or nil
      local acc_goal = "-"
      if epochs == "5" then acc_goal = verdict(diff and diff >= -0.5) end
      row(w4, {t, MODEL_LABEL[m], fmt(ks, "%.2f"), fmt(ps, "%.2f"), fmt(rt, "%.2f"), verdict(rt and rt <= TIME_GOAL[m]),
        fmt(ka, "%.2f"), fmt(pa, "%.2f"), fmt(diff, "%+.2f"), acc_goal, fmt(kr, "%.0f"), fmt(pr, "%.0f"),
        fmt(rr, "%.2f"), verdict(rr and rr <= 0.5)})
    end
  end
end
if #train_threads == 0 then
  print("   (not run: " .. (info["run.train_unavailable"] or "KDX_BENCH_EPOCHS=0 or no models") .. ")")
end
if epochs ~= "5" and #train_threads > 0 then
  print("   accuracy goal not judged: it is stated after 5 epochs (KDX_BENCH_EPOCHS=5)")
end
local ki, pi = values("import", "kdx", 0, "require"), values("import", "torch", 0, "require")
if ki or pi then
  local km, pm = median(ki), median(pi)
  print(string.format("   load time, median of %d fresh processes: require \"kdx\" %s ms, import torch %s ms;"
    .. " goal kdx < 20 ms: %s", ki and #ki or (pi and #pi or 0), fmt(km, "%.1f"), fmt(pm, "%.0f"),
    verdict(km and km < 20)))
end
local tother, twall = (info["run.train_other_cpu"] or ""):match("^(%d+) (%d+)$")
if tother and #train_threads > 0 then
  print(string.format("   sharing: other processes used %s%% of the machine's CPU during this %s s training run", tother,
    twall))
  if tonumber(tother) >= 10 then
    print("   WARNING: the machine was busy; the times (the 2-thread ones most) are unreliable")
  end
end
print()

-- 5. attribution methods
local EXPLAIN_LABEL = {saliency = "saliency (64 images)", ig50 = "integrated gradients, 50 steps",
  occlusion4x4 = "occlusion, 4x4 window, stride 4", kernelshap = "KernelSHAP, 49 patches, 512 samples"}
local w5 = {3, -36, 8, 11, 9, 5}
print("5. attributions on a Fashion-MNIST CNN, ms per image (lower is better); PyTorch = a hand-written loop")
print("   goal: kdx at least as fast as PyTorch on every method (kdx/torch <= 1.00)")
row(w5, {"thr", "method", "kdx ms", "PyTorch ms", "kdx/torch", "goal"})
rule(w5)
for _, t in ipairs(threads) do
  for _, key in ipairs(keys_seen.explain) do
    local k, p = get("explain", "kdx", t, key), get("explain", "torch", t, key)
    local r = ratio(k, p)
    local goal = r and (r <= 1.0 and "ok" or "MISS") or "n/a"
    if goal == "MISS" then misses = misses + 1 end
    row(w5, {t, EXPLAIN_LABEL[key] or key, fmt(k, "%.3f"), fmt(p, "%.3f"), fmt(r, "%.2f"), goal})
  end
end
if #keys_seen.explain == 0 then print("   (not run: KDX_BENCH_EXPLAIN=0)") end
print()

-- 6. data-parallel training
local w6 = {5, 13, 17, 14, 5, 13, 15}
print("6. data-parallel training: digits CNN (conv 1->32, conv 32->32, linear 2048->64->10; 141k parameters),")
print("   global batch 128 split across the processes, SGD lr 0.05 momentum 0.9, " .. (info["run.dist_epochs"] or "?")
  .. " epochs, one thread per process;")
print("   samples/s (higher is better); kdx = kdx.train{distributed = true} over Open MPI (mpirun),")
print("   PyTorch = DistributedDataParallel over gloo (torch.multiprocessing)")
print("   goal: kdx at least as fast as PyTorch (torch/kdx samples/s <= 1.00)")
row(w6, {"procs", "kdx", "PyTorch", "kdx/torch time", "goal", "kdx speed-up", "torch speed-up"})
rule(w6)
local dist_rows = 0
for _, np in ipairs{1, 2} do
  local k, p = get("dist", "kdx", np, "samples_per_s"), get("dist", "torch", np, "samples_per_s")
  if k or p then
    dist_rows = dist_rows + 1
    local r = ratio(p, k) -- time ratio: kdx time / torch time = torch rate / kdx rate
    local goal = r and (r <= 1.0 and "ok" or "MISS") or "n/a"
    if goal == "MISS" then misses = misses + 1 end
    local k1, p1 = get("dist", "kdx", 1, "samples_per_s"), get("dist", "torch", 1, "samples_per_s")
    row(w6, {np, fmt(k, "%.0f"), fmt(p, "%.0f"), fmt(r, "%.2f"), goal, fmt(ratio(k, k1), "%.2f"), fmt(ratio(p, p1), "%.2f")})
  end
end
if dist_rows == 0 then
  print("   (not run: " .. (info["run.dist_unavailable"] or "KDX_BENCH_DIST_EPOCHS=0") .. ")")
end
print()
print(misses == 0 and "all goals met" or string.format("%d cell(s) miss their goal", misses))
