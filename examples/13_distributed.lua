-- kdx.dist on the digits: a teacher trained data-parallel, a complexity
-- sweep of distilled students with one width per rank (kdx.dist.map_configs),
-- its Pareto front, the chosen width distilled data-parallel with a
-- checkpoint, then teacher vs that student explained over the
-- test set split across the ranks (compare{distributed = true}) and the
-- teacher's pixel importances with the pixels split across the ranks. The
-- same script runs on one process or many, with the same numbers:
--   lua5.4 examples/13_distributed.lua [--small]
--   mpirun -np 2 lua5.4 examples/13_distributed.lua     (docs/distributed.md)
local kdx = require "kdx"
local nn, dist, explain = kdx.nn, kdx.dist, kdx.explain

local small = arg and arg[1] == "--small"
local rank = dist.rank()
local function say(fmt, ...) if rank == 0 then print(fmt:format(...)) end end
local quiet = function() end
local t_start = kdx.clock()

local train, test = kdx.data.digits()
if small then test = test:subset(kdx.arange(1, 65)) end
local epochs = small and 2 or 20

local function mlp(width, seed)
  kdx.manual_seed(seed)
  return nn.Sequential{nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10)}
end
local function loader(seed) return kdx.data.DataLoader(train, {batch_size = 64, shuffle = true, seed = seed}) end
local function adam(params) return kdx.optim.Adam(params, {lr = 1e-2}) end
local function accuracy(model)
  return kdx.no_grad(function() return model(test.x):argmax(2):eq(test.y):double():mean():item() end)
end

-- The teacher: data-parallel, each rank a part of every batch.
local teacher = mlp(128, 0)
kdx.train{model = teacher, data = loader(1), optimizer = adam(teacher:parameters()), epochs = epochs,
  distributed = true, progress = false, log = quiet}
teacher:eval()
say("%d rank(s); teacher MLP 64-128-10: test accuracy %.1f%%", dist.size(), 100 * accuracy(teacher))

-- A distilled student of a given width, the same on whichever rank trains it.
local function student(width)
  local s = mlp(width, 10 + width)
  kdx.distill.run{teacher = teacher, student = s, data = loader(2), optimizer = adam, epochs = epochs,
    loss = {ce = 0.1, kd = 0.9}, T = 4, progress = false, log = quiet}
  s:eval()
  return s
end

-- The sweep: width i on rank (i-1) % size, results gathered in order on every rank.
local widths = small and {2, 8} or {2, 4, 8, 16, 32, 64}
local configs = {}
for i, w in ipairs(widths) do configs[i] = {width = w} end
local results = dist.map_configs(configs, function(c)
  local s = student(c.width)
  local params = 0
  for _, p in ipairs(s:parameters()) do params = params + p:numel() end
  return {width = c.width, parameters = params, accuracy = accuracy(s), rank = dist.rank()}
end)
-- The Pareto front: no other student both smaller and at least as accurate.
say("\n| width | parameters | accuracy | trained on rank | on the front |")
say("|---:|---:|---:|---:|---|")
local best = 0
for _, r in ipairs(results) do best = math.max(best, r.accuracy) end
local chosen
for _, r in ipairs(results) do
  local front = true
  for _, o in ipairs(results) do
    if o ~= r and o.parameters <= r.parameters and o.accuracy >= r.accuracy and
      (o.parameters < r.parameters or o.accuracy > r.accuracy) then front = false end
  end
  if not chosen and r.accuracy >= best - 0.02 then chosen = r end -- the smallest within 2 points of the best
  say("| %d | %d | %.1f%% | %d | %s |", r.width, r.parameters, 100 * r.accuracy, r.rank, front and "yes" or "")
end

-- The chosen width, distilled again data-parallel: every rank takes a part of
-- each batch, rank 0 writes a checkpoint every 20 steps (resume = path would
-- continue from it after a crash, on every rank).
local out_dir = small and "/tmp/kdx-distributed-small" or "out/distributed"
os.execute("mkdir -p " .. out_dir)
local s = mlp(chosen.width, 10 + chosen.width)
local hist = kdx.distill.run{teacher = teacher, student = s, data = loader(2), optimizer = adam, epochs = epochs,
  loss = {ce = 0.1, kd = 0.9}, T = 4, distributed = true, eval_data = test,
  checkpoint = {path = out_dir .. "/distill.ckpt", every = 20}, progress = false, log = quiet}
s:eval()
say("\nwidth %d distilled data-parallel on %d rank(s): test accuracy %.1f%% (the same on every rank)", chosen.width,
  dist.size(), 100 * hist[#hist].eval_accuracy)

-- Teacher vs the chosen student, the test set split across the ranks.
local r = explain.compare(teacher, s, test, {methods = {{name = "integrated_gradients", opts = {steps = 16}}},
  n = small and 16 or 200, deletion_steps = 10, distributed = true})
local m = r.methods.integrated_gradients.mean
say("\nteacher vs width-%d student, integrated gradients over %d test digits:", chosen.width, r.n)
say("  Spearman %.3f, top-10%% overlap %.3f, deletion AUC teacher %.3f, student %.3f",
  m.spearman, m.topk_overlap, m.deletion_auc_teacher, m.deletion_auc_student)
say("  the digits they disagree on most: %s", table.concat(r.disagree, ", ", 1, math.min(5, #r.disagree)))

-- The teacher's pixel importances (drop in accuracy), the 64 pixels split across the ranks.
local X = test.x:reshape{test:size(), 64}
local flat = function(b) return teacher(b:reshape{b:size(1), 1, 8, 8}) end
local imp = explain.permutation_importance(flat, X, {y = test.y, repeats = small and 1 or 5, seed = 0,
  distributed = true})
local top = explain.select_features(imp, 5)
local cells = {}
for i, j in ipairs(top) do
  cells[i] = ("(%d,%d) %.3f"):format((j - 1) // 8 + 1, (j - 1) % 8 + 1, imp:get(j))
end
say("\nthe teacher's most important pixels (row,col), by permutation importance: %s", table.concat(cells, ", "))
-- The report: rank 0 writes it (the other ranks get the path).
local rows = {}
for i, res in ipairs(results) do rows[i] = {res.width, res.parameters, ("%.1f%%"):format(100 * res.accuracy)} end
local path = kdx.report.write(out_dir, {title = "kdx.dist: sweep and data-parallel distillation",
  metrics = {ranks = dist.size(), sweep = results, spearman = m.spearman},
  sections = {{kind = "table", title = "Student widths (one per rank)", columns = {"width", "parameters", "accuracy"},
    rows = rows}},
  checkpoints = {student = s}})
say("report: %s", path)
say("(%.1f s on rank 0)", kdx.clock() - t_start)
