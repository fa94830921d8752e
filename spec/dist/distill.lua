-- Run on 2 ranks by spec/dist_spec.lua:
--   mpirun --oversubscribe --allow-run-as-root -np 2 lua5.4 spec/dist/distill.lua [dir]
-- kdx.distill.run{..., distributed = true} on digits (KD + labels + a FitNets
-- hint through a regressor, the teacher cached) checks that both ranks hold
-- identical students and regressors after every step and that the result,
-- the history and the final metrics equal a single-process run with the same
-- global batch and seed; and, given a folder, that kdx.report.write writes on
-- rank 0 only. Exits 1 with a message on the first failure.
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

local train, test = kdx.data.digits()
local transfer = train:subset(kdx.arange(1, 401))
local function loader() return kdx.data.DataLoader(transfer, {batch_size = 45, shuffle = true, seed = 3}) end

-- the teacher: trained once, the same on both ranks (the same seed)
kdx.manual_seed(1)
local teacher = nn.Sequential{nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)}
kdx.train{model = teacher, data = kdx.data.DataLoader(train, {batch_size = 64, shuffle = true, seed = 1}),
  optimizer = kdx.optim.Adam(teacher:parameters(), {lr = 0.01}), epochs = 3, progress = false, log = false}

local function student_for(seed)
  kdx.manual_seed(seed)
  return nn.Sequential{nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)}
end
local function flat(mods)
  local parts = {}
  for _, m in ipairs(mods) do
    for _, p in ipairs(m:parameters()) do parts[#parts + 1] = p:detach():reshape{p:numel()} end
  end
  return kdx.cat(parts, 1)
end

local function run(student, distributed, watch)
  return kdx.distill.run{teacher = teacher, student = student, data = loader(), epochs = 2, T = 4,
    loss = {ce = 0.3, kd = 0.7, hint = 0.1}, hints = {{student = "3", teacher = "3", regressor = true}},
    cache_teacher = true, eval_data = test, distributed = distributed, progress = false, log = false,
    optimizer = function(params)
      local opt = kdx.optim.SGD(params, {lr = 0.05, momentum = 0.9})
      if watch then
        local inner = opt.step
        opt.step = function(self, ...)
          local r = inner(self, ...)
          watch(params)
          return r
        end
      end
      return opt
    end}
end

-- distributed: each rank starts from different student weights (seed 100 +
-- rank) and draws its regressor from its own generator, so equality below
-- proves rank 0's were broadcast
local student = student_for(100 + rank)
local steps = 0
local hist, final = run(student, true, function(params)
  steps = steps + 1
  local parts = {}
  for _, p in ipairs(params) do parts[#parts + 1] = p:detach():reshape{p:numel()} end
  local w = kdx.cat(parts, 1)
  local both = dist.allgather(w:reshape{1, w:numel()})
  local diff = (both:select(1, 1) - both:select(1, 2)):abs():max():item()
  check(diff == 0, ("student and regressor differ between ranks after step %d by %g"):format(steps, diff))
end)

-- the single-process reference: rank 0's initial student and regressor
local ref = student_for(100)
local rhist, rfinal = run(ref, false)

check(steps == 2 * math.ceil(400 / 45), "steps " .. steps)
local a = flat({student, final.regressors[1]})
local b = flat({ref, rfinal.regressors[1]})
local err = ((a - b):abs() - (b:abs() * 1e-4 + 1e-5)):max():item()
check(err <= 0, ("distributed and single-process weights differ (excess %g)"):format(err))
for e = 1, 2 do
  for _, k in ipairs{"loss", "eval_loss"} do
    check(math.abs(hist[e][k] - rhist[e][k]) <= 1e-5 * math.abs(rhist[e][k]),
      ("epoch %d %s %.9g vs single %.9g"):format(e, k, hist[e][k], rhist[e][k]))
  end
  for name, v in pairs(rhist[e].terms) do
    check(math.abs(hist[e].terms[name] - v) <= 1e-5 * math.abs(v) + 1e-7, ("epoch %d term %s"):format(e, name))
  end
  check(hist[e].accuracy == rhist[e].accuracy, ("epoch %d accuracy"):format(e))
end
for _, k in ipairs{"accuracy", "agreement", "teacher_accuracy"} do
  check(math.abs(final[k] - rfinal[k]) < 1e-12, ("final %s %s vs single %s"):format(k, final[k], rfinal[k]))
end
check(math.abs(final.mean_kl - rfinal.mean_kl) <= 1e-4 * rfinal.mean_kl, "final mean_kl")
check(hist[2].loss < hist[1].loss, "the distributed run trains")

-- the CRD term keeps per-process memory banks: refused, on every rank alike
local ok, e = pcall(kdx.distill.run, {teacher = teacher, student = student_for(1), data = loader(),
  loss = {crd = 1}, optimizer = function(p) return kdx.optim.SGD(p, {lr = 0.1}) end, distributed = true})
check(not ok and tostring(e):find("not supported with distributed = true", 1, true), "crd refused: " .. tostring(e))

-- the report: rank 0 alone writes it (both ranks get the path); with
-- every_rank each rank writes its own folder
local dir = arg[1]
if dir then
  local path = kdx.report.write(dir .. "/shared", {title = "run", metrics = {rank = rank},
    sections = {{kind = "text", title = "t", text = "x"}}, checkpoints = {student = student}})
  check(path == dir .. "/shared/report.html", "path " .. tostring(path))
  kdx.report.write(("%s/rank%d"):format(dir, rank), {title = "mine", metrics = {rank = rank}}, {every_rank = true})
  dist.barrier()
  local f = io.open(dir .. "/shared/metrics.json")
  check(f and f:read("a"):find('"rank": *0'), "the shared metrics are rank 0's")
  if f then f:close() end
  for r = 0, 1 do
    local g = io.open(("%s/rank%d/metrics.json"):format(dir, r))
    check(g and g:read("a"):find('"rank": *' .. r), "rank " .. r .. "'s own report")
    if g then g:close() end
  end
end

dist.barrier()
if fails > 0 then os.exit(1) end
print(("rank %d: distributed distillation ok (%d steps, max |distributed - single| = %.3g)"):format(rank, steps,
  (a - b):abs():max():item()))
