--- The omitted-class experiment (Hinton, Vinyals and Dean 2015, §3): a
-- student whose transfer set holds no example of one class learns that
-- class from the teacher's soft targets alone. Its output bias for the
-- class is then too low, so the experiment reports the student before and
-- after a bias correction, beside a student trained on the labels alone.
-- @module kdx.distill.omitted

local kdx = require "kdx"
local loop = require "kdx.loop"
local metrics = require "kdx.distill.metrics"
local R = require "kdx.distill.run"

local fail = loop.fail
local M = {}

local function is_module(v) return kdx.nn.Module.is_module(v) end

--- The offset to add to class k's logit so that class k is predicted for
-- the given share of the rows of logits [N, C]: returns the offset and the
-- share reached. Row i is predicted as k with offset b when
-- b > m_i = max_{c≠k} z_ic − z_ik, so the share is the step function
-- #{m_i < b} / N; the offset is the midpoint between the K-th and (K+1)-th
-- smallest margins, K = round(share · N) — the point a bisection on b
-- converges to.
function M.bias_correction(logits, k, share)
  local fname = "kdx.distill.bias_correction"
  if not kdx.is_tensor(logits) or logits:dim() ~= 2 then fail(fname, "logits must be a tensor [N, C]") end
  local N, C = logits:size(1), logits:size(2)
  if math.type(k) ~= "integer" or k < 1 or k > C then fail(fname, "class must be an integer in [1, %d]", C) end
  if C < 2 then fail(fname, "needs at least 2 classes") end
  share = share or 1 / C
  if type(share) ~= "number" or share < 0 or share > 1 then fail(fname, "share must be a number in [0, 1]") end
  local z = logits:detach():to("float64")
  local own = z:narrow(2, k, 1):reshape{-1}
  -- the largest other logit: class k masked with -inf
  local mask = kdx.zeros({1, C}, "float64")
  mask:narrow(2, k, 1):fill_(-math.huge)
  local others = (z + mask):amax(2)
  local m = (others - own):totable()
  table.sort(m)
  local K = math.floor(share * N + 0.5)
  local b
  if N == 0 then b = 0
  elseif K <= 0 then b = m[1] - 1
  elseif K >= N then b = m[N] + 1
  else b = (m[K] + m[K + 1]) / 2 end
  local reached = 0
  for _, v in ipairs(m) do if v < b then reached = reached + 1 end end
  return b, N > 0 and reached / N or 0
end

-- Accuracy overall, on class k, on the other classes, and the share of
-- predictions of k, for logits z (with offset b on class k) and labels y.
local function scores(z, y, k, b)
  if b and b ~= 0 then
    local shift = kdx.zeros({1, z:size(2)}, z:dtype())
    shift:narrow(2, k, 1):fill_(b)
    z = z + shift
  end
  local pred = z:argmax(2)
  local right = pred:eq(y)
  local is_k = y:eq(k)
  local nk = is_k:sum():item()
  local n = y:size(1)
  return {
    accuracy = right:sum():item() / n,
    omitted_accuracy = nk > 0 and (right * is_k):sum():item() / nk or nil,
    others_accuracy = n > nk and (right * (1 - is_k)):sum():item() / (n - nk) or nil,
    share = pred:eq(k):sum():item() / n,
  }
end

-- A student's numbers: as trained, and after the bias correction chosen on
-- the calibration inputs.
local function report(model, test, calib, k, share)
  local z, y = metrics.outputs(model, test)
  local zc = calib == test and z or metrics.outputs(model, calib)
  local r = scores(z, y, k)
  local b = M.bias_correction(zc, k, share)
  r.bias = b
  r.corrected = scores(z, y, k, b)
  return r
end

local function check(fname, args)
  if type(args) ~= "table" then fail(fname, "expects a table of options") end
  if not (is_module(args.teacher) or type(args.teacher) == "function") then
    fail(fname, "teacher must be a trained kdx.nn module or a function() returning one to train")
  end
  if type(args.student_factory) ~= "function" then
    fail(fname, "student_factory must be a function() returning a fresh student")
  end
  for _, name in ipairs{"train", "test"} do
    local ds = args[name]
    if not (loop.is_dataset(ds) and kdx.is_tensor(ds.y)) then
      fail(fname, "%s must be a labelled kdx.data dataset", name)
    end
  end
  if math.type(args.omit) ~= "integer" or args.omit < 1 then fail(fname, "omit must be a 1-based class") end
  if args.calibrate ~= nil and not loop.is_dataset(args.calibrate) then
    fail(fname, "calibrate must be a kdx.data dataset (its inputs choose the bias)")
  end
  if args.seed ~= nil and math.type(args.seed) ~= "integer" then fail(fname, "seed must be an integer") end
end

-- A fresh student; with a seed, every student starts from the same draws.
local function new_student(fname, args)
  if args.seed then kdx.manual_seed(args.seed) end
  local s = args.student_factory()
  if not is_module(s) then fail(fname, "student_factory must return a kdx.nn module") end
  return s
end

--- The omitted-class experiment. Fields: teacher (a trained module, or a
-- function() returning one that is then trained on all of train), train,
-- test (labelled datasets), omit (the class), student_factory, epochs (20),
-- teacher_epochs (epochs), T (20), loss ({kd = 1}), optimizer (factory;
-- SGD lr 0.05, momentum 0.9), batch_size (64), seed (0), share (1/C),
-- calibrate (test), baseline (true), log (false), progress (false),
-- loss_opts. Returns {omit, classes, share_target, transfer_size, teacher,
-- distilled, labels_only}; see docs/distill.md.
function M.omitted_class(args)
  local fname = "kdx.distill.omitted_class"
  check(fname, args)
  local train, test, k = args.train, args.test, args.omit
  local state = kdx.get_rng_state()
  local optimizer = args.optimizer or function(p) return kdx.optim.SGD(p, {lr = 0.05, momentum = 0.9}) end
  local epochs, seed, bs = args.epochs or 20, args.seed or 0, args.batch_size or 64
  local log, progress = args.log or false, args.progress or false
  local ok, res = pcall(function()
    local teacher = args.teacher
    if not is_module(teacher) then
      if args.seed then kdx.manual_seed(args.seed) end
      teacher = teacher()
      if not is_module(teacher) then fail(fname, "the teacher function must return a kdx.nn module") end
      local opt = optimizer(teacher:parameters())
      kdx.train{model = teacher, optimizer = opt, epochs = args.teacher_epochs or epochs, log = log,
        progress = progress, data = kdx.data.DataLoader(train, {batch_size = bs, shuffle = true, seed = seed})}
    end
    local tz, ty = metrics.outputs(teacher, test)
    local C = tz:size(2)
    if k > C then fail(fname, "omit = %d but the teacher has %d classes", k, C) end
    local share = args.share or 1 / C

    local keep = {}
    for i, v in ipairs(train.y:totable()) do if v ~= k then keep[#keep + 1] = i end end
    if #keep == 0 then fail(fname, "the transfer set is empty without class %d", k) end
    if #keep == train:size() then fail(fname, "train holds no example of class %d", k) end
    local transfer = train:subset(keep)
    local function loader() return kdx.data.DataLoader(transfer, {batch_size = bs, shuffle = true, seed = seed}) end
    local calib = args.calibrate or test

    local r = {omit = k, classes = C, share_target = share, transfer_size = #keep,
      omitted_test_count = ty:eq(k):sum():item()}
    r.teacher = scores(tz, ty, k)
    r.teacher.model = teacher

    local distilled = new_student(fname, args)
    local h = R.run{teacher = teacher, student = distilled, data = loader(), epochs = epochs, optimizer = optimizer,
      loss = args.loss or {kd = 1}, T = args.T or 20, loss_opts = args.loss_opts, log = log, progress = progress}
    r.distilled = report(distilled, test, calib, k, share)
    r.distilled.model, r.distilled.history = distilled, h

    if args.baseline ~= false then
      local alone = new_student(fname, args)
      local h2 = R.run{student = alone, data = loader(), epochs = epochs, optimizer = optimizer, loss = {ce = 1},
        log = log, progress = progress}
      r.labels_only = report(alone, test, calib, k, share)
      r.labels_only.model, r.labels_only.history = alone, h2
    end
    return r
  end)
  if args.seed then kdx.set_rng_state(state) end
  if not ok then error(res, 0) end
  return res
end

return M
