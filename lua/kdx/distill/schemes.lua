--- Training schemes built on kdx.distill.run and its loop: several
-- teachers, students that teach each other, born-again generations,
-- teacher-assistant chains, and online pseudo-labelling of unlabeled data.
-- @module kdx.distill.schemes

local kdx = require "kdx"
local loop = require "kdx.loop"
local metrics = require "kdx.distill.metrics"
local R = require "kdx.distill.run"

local fail = R.fail
local M = {}

local function is_module(v) return kdx.nn.Module.is_module(v) end

-- A copy of args without the listed keys, with the overrides.
local function with(args, drop, over)
  local out = {}
  for k, v in pairs(args) do if not drop[k] then out[k] = v end end
  for k, v in pairs(over) do out[k] = v end
  return out
end

-- ---------------------------------------------------------- multi-teacher --

-- The teachers as one module whose logits carry their combined soft
-- targets: T·log Σ_k w_k softmax(t_k / T), so that softmax(out / T) is the
-- weighted mean of the teachers' distributions at T and every logit loss of
-- run (kd, soft_ce, dkd, consistency) sees it unchanged.
local Ensemble = kdx.nn.Module:extend("TeacherEnsemble")

--- TeacherEnsemble(teachers, weighting, T, weights): see multi_teacher.
function Ensemble:init(teachers, weighting, T, weights)
  self.teachers = kdx.nn.ModuleList(teachers)
  self.weighting, self.T, self.weights = weighting, T, weights
end

--- The combined logits of the teachers for x.
function Ensemble:forward(x)
  local T, K = self.T, #self.teachers
  local outs = {}
  for i, t in self.teachers:ipairs() do outs[i] = t(x) end
  if self.weighting == "logits" then
    local sum = outs[1]
    for i = 2, K do sum = sum + outs[i] end
    return sum / K
  end
  local mix
  if self.weighting == "confidence" then
    -- per sample, teacher k's weight is its top softmax probability (at T = 1),
    -- normalised over the teachers
    local conf = {}
    for i, o in ipairs(outs) do conf[i] = (kdx.softmax(o, 2):max(2)):unsqueeze(2) end
    local total = conf[1]
    for i = 2, K do total = total + conf[i] end
    for i, o in ipairs(outs) do
      local p = kdx.softmax(o / T, 2) * (conf[i] / total)
      mix = mix and mix + p or p
    end
  else
    local sum = 0
    for i = 1, K do sum = sum + (self.weights and self.weights[i] or 1) end
    for i, o in ipairs(outs) do
      local w = (self.weights and self.weights[i] or 1) / sum
      local p = kdx.softmax(o / T, 2) * w
      mix = mix and mix + p or p
    end
  end
  return mix:clamp(1e-30, 1):log() * T
end
M.TeacherEnsemble = Ensemble

--- Distils several teachers into one student. Fields as run, with teachers
-- = {t1, t2, ...} instead of teacher, and weighting = "average" (mean of
-- the softened distributions; weights = {w1, ...} to weight them, divided
-- by their sum),
-- "confidence" (per sample, each teacher weighted by its top probability)
-- or "logits" (mean of the logits, as TextBrewer). Logit terms only.
-- Returns run's history and final; final.ensemble is the combined teacher.
function M.multi_teacher(args)
  local fname = "kdx.distill.multi_teacher"
  if type(args) ~= "table" then fail(fname, "expects a table of options") end
  local teachers = args.teachers
  if type(teachers) ~= "table" or #teachers == 0 then fail(fname, "teachers must be a non-empty list of modules") end
  for i, t in ipairs(teachers) do if not is_module(t) then fail(fname, "teachers[%d] is not a module", i) end end
  local weighting = args.weighting or "average"
  if weighting ~= "average" and weighting ~= "confidence" and weighting ~= "logits" then
    fail(fname, "weighting must be \"average\", \"confidence\" or \"logits\", got %s", tostring(weighting))
  end
  if args.weights ~= nil then
    local ok = type(args.weights) == "table" and #args.weights == #teachers
    for _, w in ipairs(ok and args.weights or {}) do ok = ok and type(w) == "number" and w >= 0 end
    if not ok then fail(fname, "weights must list one non-negative number per teacher") end
  end
  for _, t in ipairs(R.parse_terms(fname, args.loss)) do
    if t.kind == "features" or t.kind == "embeddings" then
      fail(fname, "loss term '%s' needs one teacher's features; multi_teacher takes logit terms only", t.name)
    end
  end
  local ens = Ensemble(teachers, weighting, args.T or 4, args.weights)
  local history, final = R.run(with(args, {teachers = true, weighting = true, weights = true}, {teacher = ens}))
  final.ensemble = ens
  return history, final
end

-- ----------------------------------------------------------------- mutual --

-- Student i's loss in mutual learning: its terms against the labels and
-- against each detached peer (averaged over the K - 1 peers). Adds each
-- term's value / K to values.
local function peer_loss(terms, L, T, outs, detached, i, x, y, values)
  local K, li = #outs, nil
  for _, term in ipairs(terms) do
    local v
    if term.name == "ce" then v = kdx.nn.functional.cross_entropy(outs[i], y)
    elseif term.kind == "custom" then v = term.fn({student = outs[i], peers = detached, index = i, x = x, y = y})
    else
      for j = 1, K do
        if j ~= i then
          local vj = L[term.name](outs[i], detached[j], {T = T})
          v = v and v + vj or vj
        end
      end
      v = v / (K - 1)
    end
    values[term.name] = (values[term.name] or 0) + v:item() / K
    local wv = v * term.weight
    li = li and li + wv or wv
  end
  return li
end

--- Deep mutual learning (Zhang et al. 2018): two or more students trained
-- together, each on ce + (1/(K−1)) Σ_j kd(s_i, s_j) with the peers' logits
-- detached (KL both ways, at T = 1 by default). All students see the same
-- batch and step together. Fields: students (list of modules), data,
-- eval_data, epochs, optimizer (a factory: one optimizer per student),
-- scheduler (factory), loss ({ce = 1, kd = 1}; logit terms: kd, soft_ce,
-- consistency), T (1), on_epoch, progress, log. History entries add
-- students = {{loss, accuracy, eval_accuracy, eval_loss}, ...}; eval_accuracy
-- is the students' mean and eval_agreement that of students 1 and 2.
function M.mutual(args)
  local fname = "kdx.distill.mutual"
  if type(args) ~= "table" then fail(fname, "expects a table of options") end
  R.single_process(fname, args)
  local students = args.students
  if type(students) ~= "table" or #students < 2 then fail(fname, "students must list at least two modules") end
  for i, s in ipairs(students) do if not is_module(s) then fail(fname, "students[%d] is not a module", i) end end
  if type(args.optimizer) ~= "function" then
    fail(fname, "optimizer must be a function(params) returning an optimizer (one is made per student)")
  end
  if args.data == nil then fail(fname, "data is required") end
  local terms = R.parse_terms(fname, args.loss or {ce = 1, kd = 1})
  for _, t in ipairs(terms) do
    if t.kind ~= "labels" and t.kind ~= "logits" or t.name == "dkd" then
      fail(fname, "loss term '%s' is not available here (ce, kd, soft_ce, consistency)", t.name)
    end
  end
  local L = require "kdx.distill.loss"
  local K, T = #students, args.T or 1
  local opts, scheds = {}, {}
  for i, s in ipairs(students) do
    opts[i] = R.make_optimizer(fname, args.optimizer, s:parameters())
    scheds[i] = R.make_scheduler(args.scheduler, opts[i])
  end
  local data = R.as_source(args.data, args)
  local eval_data = args.eval_data and R.as_eval(args.eval_data)
  local per
  local history = loop.run_epochs{
    fname = fname, data = data, epochs = args.epochs, progress = args.progress, log = args.log,
    on_epoch = args.on_epoch,
    lr = function() return opts[1].param_groups[1].lr end,
    begin_epoch = function()
      for _, s in ipairs(students) do s:train() end
      per = {}
      for i = 1, K do per[i] = {loss = 0, correct = 0, n = 0} end
    end,
    step = function(x, y)
      for _, o in ipairs(opts) do o:zero_grad() end
      local outs, detached = {}, {}
      for i, s in ipairs(students) do
        outs[i] = s(x)
        detached[i] = outs[i]:detach()
      end
      local total, values, bs = nil, {}, x:size(1)
      for i = 1, K do
        local li = peer_loss(terms, L, T, outs, detached, i, x, y, values)
        per[i].loss = per[i].loss + li:item() * bs
        per[i].correct = per[i].correct + (kdx.no_grad(loop.correct_topk, outs[i], y, 1) or 0)
        per[i].n = per[i].n + bs
        total = total and total + li or li
      end
      total:backward()
      for _, o in ipairs(opts) do o:step() end
      return total:item() / K, bs, nil, values
    end,
    end_epoch = function(_, stats)
      stats.students = {}
      for i = 1, K do stats.students[i] = {loss = per[i].loss / per[i].n, accuracy = per[i].correct / per[i].n} end
      if eval_data then
        local outs, y = metrics.outputs(students, eval_data)
        local sum = 0
        for i = 1, K do
          local s = stats.students[i]
          s.eval_accuracy = metrics.accuracy(outs[i], y)
          s.eval_loss = kdx.nn.functional.cross_entropy(outs[i], y):item()
          sum = sum + s.eval_accuracy
        end
        stats.eval_accuracy = sum / K
        stats.eval_agreement = metrics.agreement(outs[1], outs[2])
      end
      for _, s in ipairs(scheds) do s:step() end
    end,
  }
  local outs, y = metrics.outputs(students, eval_data or R.as_eval(args.data))
  local final = {students = {}, epochs = #history, agreement = metrics.agreement(outs[1], outs[2])}
  for i = 1, K do
    final.students[i] = {accuracy = metrics.accuracy(outs[i], y), top5 = metrics.top5(outs[i], y),
      ece = (metrics.ece(outs[i], y)), model = students[i]}
  end
  return history, final
end

-- ------------------------------------------------------------ born again --

--- Born-again networks (Furlanello et al. 2018): generation g is a fresh
-- student (from the factory `student = function() return Net() end`)
-- distilled from generation g − 1. Generation 0 is `teacher` if given, else
-- a student trained on labels alone (loss {ce = 1}). Other fields as run.
-- Returns a list {{generation, history, final, model}, ...} for
-- generations 1..N (with generation 0 first when it was trained), and the
-- final metrics of the last generation with final.models (generation
-- order).
function M.born_again(args)
  local fname = "kdx.distill.born_again"
  if type(args) ~= "table" then fail(fname, "expects a table of options") end
  if type(args.student) ~= "function" then
    fail(fname, "student must be a function returning a new student (one per generation)")
  end
  if type(args.optimizer) ~= "function" then
    fail(fname, "optimizer must be a function(params) returning an optimizer (one per generation)")
  end
  local n = args.generations or 2
  if math.type(n) ~= "integer" or n < 1 then fail(fname, "generations must be a positive integer") end
  local out, models = {}, {}
  local teacher = args.teacher
  if not teacher then
    teacher = args.student()
    local h, f = R.run(with(args, {generations = true, teacher = true, on_generation = true, hints = true,
      embed = true, warmup = true}, {student = teacher, loss = {ce = 1}}))
    out[#out + 1] = {generation = 0, history = h, final = f, model = teacher}
  end
  models[1] = teacher
  local final
  for g = 1, n do
    local s = args.student()
    local h
    h, final = R.run(with(args, {generations = true, on_generation = true}, {student = s, teacher = teacher}))
    out[#out + 1] = {generation = g, history = h, final = final, model = s}
    models[#models + 1] = s
    if args.on_generation then args.on_generation(g, h, final) end
    teacher = s
  end
  final.models = models
  return out, final
end

-- ------------------------------------------------------ teacher assistant --

--- Teacher-assistant KD (Mirzadeh et al. 2020): chain = {teacher, ta1, ...,
-- student}; each model is distilled from the one before it (trained in
-- order, every one but the first). Other fields as run (optimizer a factory).
-- Returns a list {{stage, history, final}, ...} and the final metrics of the
-- last student.
function M.teacher_assistant(args)
  local fname = "kdx.distill.teacher_assistant"
  if type(args) ~= "table" then fail(fname, "expects a table of options") end
  local chain = args.chain
  if type(chain) ~= "table" or #chain < 2 then fail(fname, "chain must list the teacher, assistants and student") end
  for i, m in ipairs(chain) do if not is_module(m) then fail(fname, "chain[%d] is not a module", i) end end
  if #chain > 2 and type(args.optimizer) ~= "function" then
    fail(fname, "optimizer must be a function(params) returning an optimizer (one per stage)")
  end
  local stages, final = {}, nil
  for k = 2, #chain do
    local h
    h, final = R.run(with(args, {chain = true}, {teacher = chain[k - 1], student = chain[k]}))
    stages[#stages + 1] = {stage = k - 1, history = h, final = final}
  end
  return stages, final
end

-- ---------------------------------------------------------- online pseudo --

-- Cycles a labeled source forever: the next (x, y), restarting a pass when
-- one ends.
local function cycler(fname, data)
  local it
  return function()
    for _ = 1, 2 do
      if not it then it = loop.batches(data, fname) end
      local x, y = it()
      if x then return x, y end
      it = nil
    end
    fail(fname, "labeled data held no batches")
  end
end

-- The student's objective in online_pseudo, checked once: a function
-- (su, tu, targets, mask, labeled) -> total, values by term, correct count
-- on the labeled batch (scaled to the unlabeled batch's size, for the
-- loop's accuracy) or nil.
local function pseudo_objective(fname, args, L)
  local weights = args.loss or {ce = 1, pseudo = 1}
  if type(weights) ~= "table" then fail(fname, "loss must be a table of term weights") end
  local pw = weights.pseudo or 0
  if type(pw) ~= "number" or pw < 0 then fail(fname, "the weight of loss term 'pseudo' must be a non-negative number") end
  local terms = R.parse_terms(fname, with(weights, {pseudo = true}, {}))
  for _, t in ipairs(terms) do
    if t.kind ~= "labels" and t.kind ~= "logits" and t.kind ~= "custom" or t.name == "dkd" then
      fail(fname, "loss term '%s' is not available here (ce, pseudo, kd, soft_ce, consistency)", t.name)
    end
    if t.name == "ce" and not args.labeled and t.weight > 0 then fail(fname, "loss term 'ce' needs labeled data") end
  end
  if not L.pseudo_labels then fail(fname, "kdx.distill.loss.pseudo_labels is not available") end
  local T = args.T or 1
  return function(su, tu, targets, m, labeled)
    local values, total, correct = {}, nil, nil
    local function add(name, v, w)
      values[name] = v:item()
      if w ~= 0 then total = total and total + v * w or v * w end
    end
    local n = su:size(1)
    add("pseudo", (kdx.nn.functional.cross_entropy(su, targets, {reduction = "none"}) * m):sum() / n, pw)
    for _, term in ipairs(terms) do
      if term.name == "ce" then
        local xl, yl = labeled()
        local sl = args.student(xl)
        add("ce", kdx.nn.functional.cross_entropy(sl, yl), term.weight)
        correct = kdx.no_grad(loop.correct_topk, sl, yl, 1)
        if correct then correct = correct * n / xl:size(1) end
      elseif term.kind == "custom" then
        add(term.name, term.fn({student = su, teacher = tu, targets = targets, mask = m}), term.weight)
      else
        add(term.name, L[term.name](su, tu, {T = T}), term.weight)
      end
    end
    if not total then fail(fname, "every loss weight is 0") end
    return total, values, correct
  end
end

--- Online distillation with pseudo-labels: each unlabeled batch is labelled
-- by the teacher as it comes (kdx.distill.loss.pseudo_labels with mode,
-- T, threshold, smoothing) and the student learns from ce on a labeled
-- batch plus `pseudo` times the cross entropy to the pseudo-labels, masked
-- to the confident samples and averaged over the unlabeled batch (FixMatch's
-- convention), plus optional logit terms (kd, ...) on the unlabeled batch.
-- Fields: teacher, student, unlabeled (data; labels it may carry are used
-- only to report pseudo-label accuracy), labeled (optional data, cycled),
-- eval_data, epochs (passes over unlabeled), optimizer, scheduler, loss
-- ({ce = 1, pseudo = 1}), mode ("hard"), T (1), threshold (0.9), smoothing,
-- on_epoch, progress, log. History entries add coverage (share of confident
-- samples) and pseudo_accuracy.
function M.online_pseudo(args)
  local fname = "kdx.distill.online_pseudo"
  if type(args) ~= "table" then fail(fname, "expects a table of options") end
  R.single_process(fname, args)
  local teacher, student = args.teacher, args.student
  if not is_module(teacher) or not is_module(student) then fail(fname, "teacher and student must be modules") end
  if args.unlabeled == nil then fail(fname, "unlabeled data is required") end
  local L = require "kdx.distill.loss"
  local objective = pseudo_objective(fname, args, L)
  local popts = {mode = args.mode or "hard", T = args.T or 1, threshold = args.threshold or 0.9,
    smoothing = args.smoothing}
  local opt = R.make_optimizer(fname, args.optimizer, student:parameters())
  local scheduler = R.make_scheduler(args.scheduler, opt)
  local labeled = args.labeled and cycler(fname, R.as_source(args.labeled, args))
  local evaluate = args.eval_data and R.evaluator(student, teacher, R.as_eval(args.eval_data))
  local t_mode = teacher.training
  teacher:eval()
  local cov, known, right
  local ok, history = pcall(loop.run_epochs, {
    fname = fname, data = R.as_source(args.unlabeled, args), epochs = args.epochs, progress = args.progress,
    log = args.log, on_epoch = args.on_epoch,
    lr = function() return opt.param_groups[1].lr end,
    begin_epoch = function()
      student:train()
      cov, known, right = {0, 0}, 0, 0
    end,
    step = function(xu, yu)
      local tu = kdx.no_grad(function() return teacher(xu) end)
      local targets, mask = L.pseudo_labels(tu, popts)
      opt:zero_grad()
      local su = student(xu)
      local m = mask:dtype() == su:dtype() and mask or mask:to(su:dtype())
      local total, values, correct = objective(su, tu, targets, m, labeled)
      total:backward()
      opt:step()
      local c = m:sum():item()
      cov[1], cov[2] = cov[1] + c, cov[2] + xu:size(1)
      if kdx.is_tensor(yu) and yu:dtype() == "int64" then
        local hard = targets:dtype() == "int64" and targets or targets:argmax(2)
        known = known + c
        right = right + (hard:eq(yu):to(m:dtype()) * m):sum():item()
      end
      return total:item(), xu:size(1), correct, values
    end,
    end_epoch = function(_, stats)
      stats.coverage = cov[1] / cov[2]
      stats.pseudo_accuracy = known > 0 and right / known or nil
      if evaluate then
        local ev = evaluate()
        stats.eval_loss, stats.eval_accuracy, stats.eval_agreement = ev.loss, ev.accuracy, ev.agreement
      end
      if scheduler then scheduler:step() end
    end,
  })
  teacher:train(t_mode)
  if not ok then error(history, 0) end
  local final = evaluate and evaluate() or {}
  final.epochs, final.student = #history, student
  return history, final
end

return M
