--- Adversarial knowledge distillation: a discriminator learns to tell the
-- teacher's outputs (real) from the student's (fake), and the student learns
-- to fool it on top of the usual KD terms (Xu et al. 2018, "Training
-- Shallow and Thin Networks for Acceleration via Knowledge Distillation with
-- Conditional Adversarial Networks"; Wang et al. 2018, KDGAN). The two are
-- trained alternately, batch by batch.
-- @module kdx.distill.adversarial

local kdx = require "kdx"
local loop = require "kdx.loop"
local R = require "kdx.distill.run"

local fail = loop.fail
local F = kdx.nn.functional
local nn = kdx.nn
local M = {}

local function is_module(v) return kdx.nn.Module.is_module(v) end

-- ---------------------------------------------------------- discriminator --

local Discriminator = nn.Module:extend("Discriminator")

--- Discriminator(num_classes, {hidden = 64, input = "probs", T = 4}): an
-- MLP Linear(C, hidden) → LeakyReLU(0.2) → Linear(hidden, hidden) →
-- LeakyReLU(0.2) → Linear(hidden, 1) on softmax(logits / T) (input =
-- "probs") or on the raw logits (input = "logits"); its output [B] is the
-- logit of "this came from the teacher".
function Discriminator:init(num_classes, opts)
  opts = opts or {}
  if math.type(num_classes) ~= "integer" or num_classes < 1 then
    error("kdx.distill.Discriminator: num_classes must be a positive integer", 3)
  end
  local hidden = opts.hidden or 64
  self.input, self.T = opts.input or "probs", opts.T or 4
  if self.input ~= "probs" and self.input ~= "logits" then
    error(("kdx.distill.Discriminator: input must be \"probs\" or \"logits\", got %s"):format(tostring(self.input)), 3)
  end
  self.net = nn.Sequential{nn.Linear(num_classes, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
    nn.LeakyReLU(0.2), nn.Linear(hidden, 1)}
end

--- The "from the teacher" logit [B] of a batch of logits [B, C].
function Discriminator:forward(logits)
  local x = self.input == "probs" and kdx.softmax(logits / self.T, 2) or logits
  return self.net(x):reshape{-1}
end

--- "input=probs, T=4".
function Discriminator:extra_repr() return ("input=%s, T=%g"):format(self.input, self.T) end

M.Discriminator = Discriminator

-- ------------------------------------------------------------ adversarial --

local KNOWN = {kd = true, adv = true, ce = true, soft_ce = true, consistency = true}

local function check(fname, args)
  if type(args) ~= "table" then fail(fname, "expects a table of options") end
  if not is_module(args.student) then fail(fname, "student must be a kdx.nn module") end
  if not is_module(args.teacher) then fail(fname, "teacher must be a kdx.nn module") end
  if args.teacher == args.student then fail(fname, "teacher and student are the same module") end
  if args.data == nil then fail(fname, "data is required") end
  if type(args.optimizer) ~= "function" and not (type(args.optimizer) == "table" and args.optimizer.param_groups) then
    fail(fname, "optimizer must be an optimizer or a function(params) returning one")
  end
  if args.discriminator ~= nil and not is_module(args.discriminator) then
    fail(fname, "discriminator must be a kdx.nn module mapping logits [B, C] to [B] (or [B, 1])")
  end
  if args.d_optimizer ~= nil and type(args.d_optimizer) ~= "function" then
    fail(fname, "d_optimizer must be a function(params) returning an optimizer")
  end
  local e = args.epochs or 1
  if math.type(e) ~= "integer" or e < 0 then fail(fname, "epochs must be a non-negative integer") end
  local T = args.T or 4
  if type(T) ~= "number" or T <= 0 then fail(fname, "T must be a positive number") end
  local d_steps = args.d_steps or 1
  if math.type(d_steps) ~= "integer" or d_steps < 0 then fail(fname, "d_steps must be a non-negative integer") end
  local loss = args.loss or {kd = 1, adv = 0.1}
  if type(loss) ~= "table" then fail(fname, "loss must be a table of term weights, e.g. {kd = 1, adv = 0.1}") end
  local terms = {}
  for name, w in pairs(loss) do
    if not KNOWN[name] then
      fail(fname, "unknown loss term '%s' (known: adv, ce, consistency, kd, soft_ce)", tostring(name))
    end
    if type(w) ~= "number" or w < 0 then fail(fname, "the weight of '%s' must be a non-negative number", name) end
    if w > 0 then terms[#terms + 1] = {name = name, weight = w} end
  end
  table.sort(terms, function(a, b) return a.name < b.name end)
  if #terms == 0 then fail(fname, "every loss weight is 0") end
  return terms, T, d_steps
end

-- One discriminator update on a batch: BCE with logits, teacher logits as 1
-- and the (detached) student logits as 0, the mean over the 2B samples.
-- Returns the loss and the number of samples it classified right before the
-- update.
local function d_step(disc, d_opt, t, s)
  d_opt:zero_grad()
  local real, fake = disc(t):reshape{-1}, disc(s:detach()):reshape{-1}
  local ones, zeros = kdx.ones(real:shape(), real:dtype()), kdx.zeros(fake:shape(), fake:dtype())
  local loss = (F.binary_cross_entropy_with_logits(real, ones) + F.binary_cross_entropy_with_logits(fake, zeros)) / 2
  loss:backward()
  d_opt:step()
  local right = real:detach():gt(0):sum():item() + fake:detach():le(0):sum():item()
  return loss:item(), right
end

-- The student's terms on a batch; returns the weighted total and the
-- unweighted values.
local function student_loss(terms, disc, s, t, y, T)
  local L = require "kdx.distill.loss"
  local total, values = nil, {}
  for _, term in ipairs(terms) do
    local v
    if term.name == "adv" then
      -- fool the discriminator: the student's outputs labelled "teacher"
      local d = disc(s):reshape{-1}
      v = F.binary_cross_entropy_with_logits(d, kdx.ones(d:shape(), d:dtype()))
    elseif term.name == "ce" then
      if not kdx.is_tensor(y) then error("kdx.distill.adversarial: loss term 'ce' needs labels in the data", 0) end
      v = F.cross_entropy(s, y)
    else
      v = L[term.name](s, t, {T = T})
    end
    values[term.name] = v:item()
    local wv = v * term.weight
    total = total and total + wv or wv
  end
  return total, values
end

-- The step of one batch: the discriminator's d_steps updates, then the
-- student's. st holds the models, optimizers, terms and the epoch's
-- discriminator counts (st.d); the default discriminator is built on the
-- first batch, when the number of classes is known.
local function make_step(st)
  return function(x, y)
    local t = kdx.no_grad(function() return st.teacher(x) end)
    local s = st.student(x)
    if not st.disc then st.disc = Discriminator(t:size(2), {input = st.d_input, T = st.T}) end
    if not st.d_opt then st.d_opt = st.d_factory(st.disc:parameters()) end
    local d = st.d
    for _ = 1, st.d_steps do
      local dl, right = d_step(st.disc, st.d_opt, t, s)
      d.loss, d.right, d.n = d.loss + dl * x:size(1), d.right + right, d.n + x:size(1)
    end
    st.opt:zero_grad()
    local total, values = student_loss(st.terms, st.disc, s, t, y, st.T)
    total:backward()
    st.opt:step()
    -- the adversarial term also left gradients in the discriminator; they
    -- are cleared by its next zero_grad, never applied
    return total:item(), x:size(1), kdx.no_grad(loop.correct_topk, s, y, 1), values
  end
end

-- After each epoch: the discriminator's numbers (d.n counts each batch
-- d_steps times; the accuracy is over 2 · d.n samples), evaluation, the
-- scheduler.
local function end_epoch(st, evaluate, scheduler)
  return function(_, stats)
    local d = st.d
    stats.d_loss = d.n > 0 and d.loss / d.n or nil
    stats.d_accuracy = d.n > 0 and d.right / (2 * d.n) or nil
    if evaluate then
      local ev = evaluate()
      stats.eval_loss, stats.eval_accuracy, stats.eval_agreement = ev.loss, ev.accuracy, ev.agreement
    end
    if scheduler then scheduler:step() end
  end
end

-- The epoch line with the discriminator's loss and accuracy, then the
-- user's on_epoch.
local function on_epoch(args, epochs)
  local log = args.log
  if log == nil then log = print end
  return function(epoch, stats)
    if log then
      local line = loop.epoch_line(stats, epochs)
      if stats.d_accuracy then
        line = line .. ("  D loss %.4f  D acc %.2f%%"):format(stats.d_loss, 100 * stats.d_accuracy)
      end
      log(line)
    end
    if args.on_epoch then return args.on_epoch(epoch, stats) end
  end
end

--- Adversarial KD. Fields: teacher, student, data, eval_data, epochs (1),
-- optimizer (the student's: a factory or an optimizer), discriminator
-- (default Discriminator(C, {input = d_input or "probs", T = T})),
-- d_optimizer (factory; default Adam lr 1e-3, betas {0.5, 0.999}), d_steps
-- (1), loss ({kd = 1, adv = 0.1}; also ce, soft_ce, consistency), T (4),
-- batch_size and seed (for a dataset), scheduler, on_epoch, progress, log.
-- Returns history (per epoch, with d_loss and d_accuracy) and final (run's
-- final metrics plus discriminator and d_accuracy).
function M.adversarial(args)
  local fname = "kdx.distill.adversarial"
  local terms, T, d_steps = check(fname, args)
  R.single_process(fname, args)
  local teacher, student = args.teacher, args.student
  local data = R.as_source(args.data, args)
  local st = {teacher = teacher, student = student, terms = terms, T = T, d_steps = d_steps,
    d_input = args.d_input or "probs", disc = args.discriminator, d = {},
    opt = R.make_optimizer(fname, args.optimizer, student:parameters(), false),
    d_factory = args.d_optimizer or function(p) return kdx.optim.Adam(p, {lr = 1e-3, betas = {0.5, 0.999}}) end}
  local scheduler = R.make_scheduler(args.scheduler, st.opt)
  local evaluate = args.eval_data and R.evaluator(student, teacher, R.as_eval(args.eval_data))
  local epochs = args.epochs or 1

  local t_mode = teacher.training
  teacher:eval()
  local ok, history = pcall(loop.run_epochs, {
    fname = fname, data = data, epochs = epochs, progress = args.progress, log = false,
    lr = function() return st.opt.param_groups[1].lr end,
    begin_epoch = function()
      student:train()
      if st.disc then st.disc:train() end
      st.d = {loss = 0, right = 0, n = 0}
    end,
    step = make_step(st),
    end_epoch = end_epoch(st, evaluate, scheduler),
    on_epoch = on_epoch(args, epochs),
  })
  teacher:train(t_mode)
  if not ok then error(history, 0) end
  if st.disc then st.disc:zero_grad() end

  local final = (evaluate or R.evaluator(student, teacher, R.as_eval(args.data)))()
  final.epochs, final.student, final.discriminator = #history, student, st.disc
  final.d_accuracy = #history > 0 and history[#history].d_accuracy or nil
  return history, final
end

return M
