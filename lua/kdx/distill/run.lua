--- kdx.distill.run: one table describes a whole teacher → student
-- experiment. The teacher runs in eval mode without recording (optionally
-- once, cached); the student learns from a weighted sum of named loss terms
-- on labels, logits, captured features and embeddings.
-- @module kdx.distill.run

local kdx = require "kdx"
local loop = require "kdx.loop"
local metrics = require "kdx.distill.metrics"

local M = {}

-- ------------------------------------------------------------ arguments --

local fail = loop.fail
--- loop.fail: an error naming fname, blaming the first caller outside kdx.
M.fail = fail

local function is_module(v) return kdx.nn.Module.is_module(v) end

local function loss_module()
  local ok, L = pcall(require, "kdx.distill.loss")
  if not ok then return nil, L end
  return L
end

-- The loss terms run knows: what each reads, and whether the warm-up ramps it.
-- kind: "labels" (ce), "logits" (student vs teacher logits), "features"
-- (summed over the hint pairs), "embeddings" (penultimate features).
local TERMS = {
  ce = {kind = "labels"},
  kd = {kind = "logits"}, soft_ce = {kind = "logits"}, dkd = {kind = "logits", labels = true},
  consistency = {kind = "logits"},
  hint = {kind = "features"}, at = {kind = "features"}, sp = {kind = "features"}, nst = {kind = "features"},
  rkd = {kind = "embeddings"}, pkt = {kind = "embeddings"}, cc = {kind = "embeddings"},
  crd = {kind = "embeddings"}, -- a kdx.distill.CRD module, which also needs the samples' indices
  -- explanation-aware terms run both models on the batch themselves
  input_gradient_match = {kind = "models", labels = true}, gradcam_match = {kind = "models", labels = true},
  attribution_match = {kind = "models", labels = true},
}
M.TERMS = TERMS

local function term_names()
  local names = {}
  for k in pairs(TERMS) do names[#names + 1] = k end
  table.sort(names)
  return table.concat(names, ", ")
end

local function merge(a, b)
  local out = {}
  for k, v in pairs(a or {}) do out[k] = v end
  for k, v in pairs(b or {}) do out[k] = v end
  return out
end

--- The active terms of a loss table, in a fixed (sorted) order, each
-- {name, weight, kind, distill (ramped by warm-up), fn (custom)}.
function M.parse_terms(fname, loss)
  loss = loss or {ce = 0.1, kd = 0.9}
  if type(loss) ~= "table" then fail(fname, "loss must be a table of term weights, e.g. {ce = 0.1, kd = 0.9}") end
  local L = loss_module()
  local terms = {}
  for name, w in pairs(loss) do
    if type(name) ~= "string" then fail(fname, "loss keys must be term names") end
    local fn
    if type(w) == "table" then
      fn, w = w.fn, w.weight or 1
      if type(fn) ~= "function" then fail(fname, "custom loss term '%s' needs fn = function(ctx) ... end", name) end
    elseif not TERMS[name] then
      fail(fname, "unknown loss term '%s' (known: %s; or give {weight = w, fn = function(ctx) ... end})", name,
        term_names())
    end
    if type(w) ~= "number" or w < 0 or w ~= w then
      fail(fname, "the weight of loss term '%s' must be a non-negative number", name)
    end
    if name == "crd" and not fn then
      if not pcall(require, "kdx.distill.crd") then fail(fname, "loss term 'crd' needs kdx.distill.CRD, which is not available") end
    elseif not fn and name ~= "ce" and not (L and L[name]) then
      fail(fname, "loss term '%s' needs kdx.distill.loss.%s, which is not available", name, name)
    end
    local kind = fn and "custom" or TERMS[name].kind
    terms[#terms + 1] = {name = name, weight = w, kind = kind, fn = fn, distill = name ~= "ce",
      labels = kind == "labels" or (TERMS[name] and TERMS[name].labels)}
  end
  table.sort(terms, function(a, b) return a.name < b.name end)
  return terms
end

-- ---------------------------------------------------------------- models --

local function last_linear(model)
  local found
  for _, m in model:named_modules() do
    local c = getmetatable(m)
    while c do
      if c == kdx.nn.Linear then found = m break end
      c = rawget(c, "super")
    end
  end
  return found
end

--- Where a model's embedding comes from: {name = "5"} (that module's output)
-- or {module = m} (the input of m, the last Linear: the penultimate features).
function M.embedding_site(fname, model, name, who)
  if name then
    if not model:get_submodule(name) then fail(fname, "%s has no submodule named %q (embed)", who, name) end
    return {name = name}
  end
  local lin = last_linear(model)
  if not lin then fail(fname, "%s has no Linear layer to take embeddings before; give embed = {%s = name}", who, who) end
  return {module = lin}
end

--- Runs model on x and returns its output, the captured features by name
-- and the embedding ([B, D], flattened), all still in the graph.
function M.forward_capture(model, x, names, site)
  local emb, handle
  if site and site.module then
    handle = site.module:register_forward_hook(function(_, inputs) emb = inputs[1] end)
  end
  local all = names
  if site and site.name then
    all = {site.name}
    for _, n in ipairs(names) do if n ~= site.name then all[#all + 1] = n end end
  end
  local ok, out, feats
  if #all > 0 then ok, out, feats = pcall(model.forward_with, model, x, all)
  else ok, out = pcall(model, x) end
  if handle then handle.remove() end
  if not ok then error(out, 0) end
  feats = feats or {}
  if site and site.name then emb = feats[site.name] end
  if emb and emb:dim() > 2 then emb = emb:flatten(2) end
  return out, feats, emb
end

--- The optimizer: a factory called with params, or a ready optimizer (which
-- cannot train parameters run creates).
function M.make_optimizer(fname, optimizer, params, extra)
  if type(optimizer) == "function" then
    local opt = optimizer(params)
    if type(opt) ~= "table" or not opt.param_groups then fail(fname, "the optimizer factory must return an optimizer") end
    return opt
  end
  if type(optimizer) == "table" and optimizer.param_groups then
    if extra then
      fail(fname, "regressors and CRD heads are trained with the student: give optimizer = function(params) "
        .. "return kdx.optim.SGD(params, {...}) end so their parameters are trained too")
    end
    return optimizer
  end
  fail(fname, "optimizer must be an optimizer or a function(params) returning one")
end

--- The scheduler: a factory called with the optimizer, or a ready one (or nil).
function M.make_scheduler(scheduler, opt)
  if type(scheduler) == "function" then return scheduler(opt) end
  return scheduler
end

--- A Dataset becomes a seeded, shuffled loader; other sources pass through.
function M.as_source(data, args)
  if loop.is_dataset(data) then
    return kdx.data.DataLoader(data, {batch_size = args.batch_size or 64, shuffle = true, seed = args.seed or 0})
  end
  return data
end

-- A small input taken from the data without advancing kdx.data loaders, to
-- learn feature shapes before training (the generator is left as it was).
local function probe_input(fname, data)
  local state = kdx.get_rng_state()
  local x
  if loop.is_loader(data) and loop.is_dataset(data.dataset) then
    x = data.dataset.x:narrow(1, 1, math.min(2, data.dataset:size())):contiguous()
    if data.transform then x = data.transform(x) end
  elseif type(data) == "table" and not loop.is_loader(data) then
    local b = data[1]
    x = b and (b.x or b[1])
  else
    x = loop.batches(data, fname)()
  end
  kdx.set_rng_state(state)
  if not kdx.is_tensor(x) then fail(fname, "the data held no batches") end
  return x
end

-- --------------------------------------------------------------- teacher --

-- The teacher side: outputs for a batch, computed under no_grad in eval
-- mode, or read from a cache filled once before training.
local function teacher_source(fname, args, data, tnames, tsite)
  local teacher = args.teacher
  local function compute(x)
    return kdx.no_grad(function()
      local out, feats, emb = M.forward_capture(teacher, x, tnames, tsite)
      return {logits = out, feats = feats, emb = emb}
    end)
  end
  if not args.cache_teacher then return function(x) return compute(x) end end
  if loop.is_loader(data) and loop.is_dataset(data.dataset) and data.batch_size then
    if data.transform then
      fail(fname, "cache_teacher needs the same inputs every epoch, but the loader has a transform")
    end
    -- one pass over the dataset in order; batches then gather their rows.
    -- Distributed, each rank computes a block of rows and the blocks are
    -- gathered, so every rank holds the whole cache.
    local ds, n, chunk = data.dataset, data.dataset:size(), 256
    local first, last = 1, n
    local dist = args.distributed and kdx.dist
    if dist then
      if n < dist.size() then fail(fname, "cache_teacher: %d samples is fewer than the %d ranks", n, dist.size()) end
      first, last = (dist.rank() * n) // dist.size() + 1, ((dist.rank() + 1) * n) // dist.size()
    end
    local parts = {}
    for at = first, last, chunk do
      parts[#parts + 1] = compute(ds.x:narrow(1, at, math.min(chunk, last - at + 1)):contiguous())
    end
    local function joined(get)
      local l = {}
      for i, p in ipairs(parts) do l[i] = get(p) end
      local t = #l > 0 and kdx.cat(l, 1) or nil
      if t and dist then t = dist.allgather(t:contiguous()) end
      return t
    end
    local cache = {logits = joined(function(p) return p.logits end), feats = {}}
    for _, name in ipairs(tnames) do cache.feats[name] = joined(function(p) return p.feats[name] end) end
    if parts[1].emb then cache.emb = joined(function(p) return p.emb end) end
    return function(_, idx)
      local r = {logits = cache.logits:index_select(1, idx), feats = {}}
      for name, t in pairs(cache.feats) do r.feats[name] = t:index_select(1, idx) end
      if cache.emb then r.emb = cache.emb:index_select(1, idx) end
      return r
    end, true
  end
  if type(data) == "table" and not loop.is_loader(data) then
    local cache = {} -- by batch position, filled on first sight
    return function(x, pos)
      local r = cache[pos]
      if not r then
        r = compute(x)
        cache[pos] = r
      end
      return r
    end, true
  end
  fail(fname, "cache_teacher needs a fixed transfer set: a kdx.data DataLoader or dataset, or a list of batches")
end

-- ------------------------------------------------------------ evaluation --

-- Whether a pass over data always yields the same samples in the same order.
local function fixed_order(data)
  if loop.is_dataset(data) then return true end
  if loop.is_loader(data) then
    return loop.is_dataset(data.dataset) and not data.shuffle and not data.transform
  end
  return type(data) == "table"
end

--- An evaluator for a student (and teacher) on eval_data: returns a
-- function() -> {loss, accuracy, top5, ece, agreement, mean_kl,
-- teacher_accuracy}, caching the teacher's logits when the data's order is
-- fixed. distributed: each rank runs its part of data (loop.shard_eval) and
-- the outputs are gathered, so every rank measures the whole data.
function M.evaluator(student, teacher, data, distributed)
  local t_cache
  local gather = false
  if distributed then data, gather = loop.shard_eval(data) end
  local function outputs(models)
    local outs, y = metrics.outputs(models, data)
    if not gather then return outs, y end
    local all = kdx.dist.allgather
    if kdx.is_tensor(outs) then outs = all(outs:contiguous())
    else for i, o in ipairs(outs) do outs[i] = all(o:contiguous()) end end
    return outs, y and all(y:contiguous())
  end
  return function()
    local s_out, t_out, y
    if teacher and t_cache then
      s_out, y = outputs(student)
      t_out = t_cache
    elseif teacher then
      local outs
      outs, y = outputs({student, teacher})
      s_out, t_out = outs[1], outs[2]
      if fixed_order(data) then t_cache = t_out end
    else
      s_out, y = outputs(student)
    end
    local r = {}
    if y then
      r.loss = kdx.nn.functional.cross_entropy(s_out, y):item()
      r.accuracy, r.top5, r.ece = metrics.accuracy(s_out, y), metrics.top5(s_out, y), (metrics.ece(s_out, y))
      if t_out then r.teacher_accuracy = metrics.accuracy(t_out, y) end
    end
    if t_out then
      r.agreement = metrics.agreement(s_out, t_out)
      r.mean_kl = metrics.mean_kl(s_out, t_out)
    end
    return r
  end
end

-- ------------------------------------------------------------------- run --

--- The warm-up factor of the distillation terms in epoch e (1-based):
-- min(e / warmup, 1), as mdistiller's DKD; 1 without warm-up.
function M.warmup_factor(epoch, warmup)
  if not warmup or warmup <= 0 then return 1 end
  return math.min(epoch / warmup, 1)
end

local function check_args(fname, args)
  if type(args) ~= "table" then fail(fname, "expects a table of options") end
  if not is_module(args.student) then fail(fname, "student must be a kdx.nn module") end
  if args.teacher ~= nil and not is_module(args.teacher) then fail(fname, "teacher must be a kdx.nn module") end
  if args.teacher == args.student and args.teacher then fail(fname, "teacher and student are the same module") end
  if args.data == nil then fail(fname, "data is required") end
  if args.optimizer == nil then fail(fname, "optimizer is required (an optimizer or function(params) ... end)") end
  local e = args.epochs or 1
  if math.type(e) ~= "integer" or e < 0 then fail(fname, "epochs must be a non-negative integer") end
  local T = args.T or 4
  if type(T) ~= "number" or T <= 0 then fail(fname, "T must be a positive number") end
  local w = args.warmup or 0
  if type(w) ~= "number" or w < 0 then fail(fname, "warmup must be a non-negative number of epochs") end
  if args.crd ~= nil and not is_module(args.crd) then fail(fname, "crd must be a kdx.distill.CRD module") end
  if args.distributed then
    local d = args.data
    if not (loop.is_dataset(d) or (loop.is_loader(d) and loop.is_dataset(d.dataset) and d.batch_size)) then
      fail(fname, "distributed = true needs a kdx.data dataset or DataLoader as data")
    end
  end
  if args.hints ~= nil and type(args.hints) ~= "table" then fail(fname, "hints must be a list of {student =, teacher =}") end
  for i, h in ipairs(args.hints or {}) do
    if type(h) ~= "table" or type(h.student) ~= "string" or type(h.teacher) ~= "string" then
      fail(fname, "hints[%d] must be {student = name, teacher = name, regressor = true}", i)
    end
    if not args.student:get_submodule(h.student) then fail(fname, "student has no submodule named %q (hints[%d])", h.student, i) end
    if args.teacher and not args.teacher:get_submodule(h.teacher) then
      fail(fname, "teacher has no submodule named %q (hints[%d])", h.teacher, i)
    end
    if h.regressor ~= nil and type(h.regressor) ~= "boolean" and not is_module(h.regressor) then
      fail(fname, "hints[%d].regressor must be true, false or a module", i)
    end
  end
end

-- The step context handed to every term: student and teacher logits,
-- labels, features per hint pair and embeddings.
local function compute_terms(terms, ctx, L, T, lopts, factor, conn)
  local total, values = nil, {}
  for _, term in ipairs(terms) do
    local v
    local name, o = term.name, lopts[term.name]
    if term.kind == "custom" then v = term.fn(ctx)
    elseif name == "ce" then v = kdx.nn.functional.cross_entropy(ctx.student, ctx.y)
    elseif name == "dkd" then v = L.dkd(ctx.student, ctx.teacher, ctx.y, merge({T = T}, o))
    elseif term.kind == "logits" then v = L[name](ctx.student, ctx.teacher, merge({T = T}, o))
    elseif name == "crd" then v = conn.crd(ctx.student_embedding, ctx.teacher_embedding, ctx.index)
    elseif term.kind == "embeddings" then v = L[name](ctx.student_embedding, ctx.teacher_embedding, o)
    elseif term.kind == "models" then v = L[name](ctx.student_model, ctx.teacher_model, ctx.x, ctx.y, o)
    else
      for i, pair in ipairs(ctx.pairs) do
        local fs = name == "hint" and pair.regressed or pair.student
        local vi = L[name](fs, pair.teacher, o)
        v = i == 1 and vi or v + vi
      end
    end
    values[name] = v:item()
    local w = term.weight * (term.distill and factor or 1)
    if w ~= 0 then
      local wv = v * w
      total = total and total + wv or wv
    end
  end
  return total, values
end

-- What a run reads: the terms, the hint module names on each side, and the
-- embedding sites. Features and embeddings are captured when a term reads
-- them (custom terms may read anything, so they get whatever is defined).
local function plan(fname, args)
  local student, teacher = args.student, args.teacher
  local p = {terms = M.parse_terms(fname, args.loss), needs = {}, snames = {}, tnames = {}}
  local needs = p.needs
  for _, t in ipairs(p.terms) do
    needs[t.kind] = true
    if t.name == "crd" and not t.fn then p.needs_crd = true end
  end
  if p.needs_crd and args.distributed then
    -- each rank would draw its own negatives and update its own memory banks
    fail(fname, "loss term 'crd' is not supported with distributed = true (its memory banks are per process)")
  end
  if (needs.logits or needs.features or needs.embeddings or needs.models) and not teacher then
    fail(fname, "teacher is required for the distillation terms of loss")
  end
  local hints = args.hints or {}
  if needs.features and #hints == 0 then
    fail(fname, "feature terms (hint, at, sp, nst) need hints = {{student = name, teacher = name}, ...}")
  end
  if needs.features or (needs.custom and teacher) then
    for i, h in ipairs(hints) do p.snames[i], p.tnames[i] = h.student, h.teacher end
  end
  if needs.embeddings or (needs.custom and teacher) then
    local e = args.embed or {}
    local strict = needs.embeddings or e.student or e.teacher
    if strict or last_linear(student) then p.ssite = M.embedding_site(fname, student, e.student, "student") end
    if strict or last_linear(teacher) then p.tsite = M.embedding_site(fname, teacher, e.teacher, "teacher") end
  end
  return p
end

-- Runs both models on a probe batch in eval mode without recording: the
-- captured features and the embeddings of each.
local function probe(fname, args, data, p)
  local student, teacher = args.student, args.teacher
  local x = probe_input(fname, data)
  local smode, tmode = student.training, teacher.training
  student:eval()
  teacher:eval()
  local ok, sf, se, tf, te = pcall(kdx.no_grad, function()
    local _, a, ae = M.forward_capture(student, x, p.snames, p.ssite)
    local _, b, be = M.forward_capture(teacher, x, p.tnames, p.tsite)
    return a, ae, b, be
  end)
  student:train(smode)
  teacher:train(tmode)
  if not ok then error(sf, 0) end
  return sf, se, tf, te
end

-- The modules run adds to the student's training: FitNets regressors by
-- hint position, shaped from a probe batch, and the CRD heads and memory
-- (for the crd term; one embedding per sample of the dataset). Returns
-- {regressors = {...}, crd = module or nil} and their parameters.
local function build_connectors(fname, args, data, p)
  local conn, params = {regressors = {}}, {}
  local want_reg = false
  for i, h in ipairs(args.hints or {}) do if p.snames[i] and h.regressor == true then want_reg = true end end
  local want_crd = p.needs_crd and not args.crd
  if p.needs_crd and not (loop.is_loader(data) and loop.is_dataset(data.dataset) and data.batch_size) then
    fail(fname, "loss term 'crd' needs a kdx.data DataLoader or dataset (its memory keeps one embedding per sample)")
  end
  local sf, se, tf, te
  if want_reg or want_crd then sf, se, tf, te = probe(fname, args, data, p) end
  for i, h in ipairs(args.hints or {}) do
    if is_module(h.regressor) then conn.regressors[i] = h.regressor
    elseif h.regressor and p.snames[i] then
      conn.regressors[i] = require("kdx.distill.regressor")(sf[h.student]:shape(), tf[h.teacher]:shape())
    end
  end
  if p.needs_crd then
    conn.crd = args.crd or require("kdx.distill.crd")(merge((args.loss_opts or {}).crd,
      {s_dim = se:size(2), t_dim = te:size(2), n_data = data.dataset:size()}))
  end
  local modules = {}
  for _, r in pairs(conn.regressors) do modules[#modules + 1] = r end
  modules[#modules + 1] = conn.crd
  for _, m in ipairs(modules) do for _, q in ipairs(m:parameters()) do params[#params + 1] = q end end
  return conn, params
end

-- One training step: teacher outputs, student forward with captures, the
-- weighted terms, backward, update. state.factor and state.epoch are set
-- per epoch. Distributed (state.reducer set), a rank may have no rows in a
-- step (x is false) and still joins the gradient average, which also makes
-- the loss, the terms and the correct count global.
local function make_step(fname, args, p, opt, conn, t_out, state)
  local student, teacher = args.student, args.teacher
  local T, lopts, L = args.T or 4, args.loss_opts or {}, loss_module()
  local term_names = {}
  for i, term in ipairs(p.terms) do term_names[i] = term.name end
  return function(x, y, key)
    opt:zero_grad()
    local value, rows, correct, values = 0, x and x:size(1) or 0, nil, {}
    if state.reducer then
      for _, m in ipairs(state.modules) do kdx.dist.broadcast_buffers(m[2]) end
      state.reducer:begin(rows)
    end
    if x then
      local ctx = {x = x, y = y, pairs = {}, epoch = state.epoch, warmup = state.factor,
        index = kdx.is_tensor(key) and key or nil, student_model = student, teacher_model = teacher}
      if teacher then
        local t = t_out(x, key)
        ctx.teacher, ctx.teacher_embedding = t.logits, t.emb
        for i, name in ipairs(p.tnames) do ctx.pairs[i] = {teacher = t.feats[name]} end
      end
      local out, sf, se = M.forward_capture(student, x, p.snames, p.ssite)
      ctx.student, ctx.student_embedding = out, se
      for i, name in ipairs(p.snames) do
        local pair = ctx.pairs[i]
        pair.student = sf[name]
        pair.regressed = conn.regressors[i] and conn.regressors[i](sf[name]) or sf[name]
      end
      local total
      total, values = compute_terms(p.terms, ctx, L, T, lopts, state.factor, conn)
      if not total then fail(fname, "every loss weight is 0") end
      value = total:item()
      if loop.finite(value) then
        if state.reducer then state.reducer:backward(total) else total:backward() end
      end
      correct = kdx.no_grad(loop.correct_topk, out, y, 1)
    end
    if state.reducer then
      value, rows, correct, values = loop.dist_reduce(state.reducer, rows, value, correct, term_names, values)
    end
    if not loop.finite(value) then
      opt:zero_grad()
      -- the first weighted term that is not finite, else the sum overflowed
      for _, term in ipairs(p.terms) do
        local v = values[term.name]
        if term.weight ~= 0 and not loop.finite(v) then
          return nil, ("loss term '%s' is %s"):format(term.name, loop.nonfinite_name(v))
        end
      end
      return nil, ("the weighted sum of the loss terms is %s"):format(loop.nonfinite_name(value))
    end
    local bad = loop.bad_gradient(opt, state.names)
    if bad then
      opt:zero_grad()
      return nil, bad
    end
    opt:step()
    return value, rows, correct, values
  end
end

--- Distils teacher into student; see docs/distill.md for every field.
-- Returns the history (one table per epoch) and the final metrics on
-- eval_data (or data).
function M.run(args)
  local fname = "kdx.distill.run"
  check_args(fname, args)
  local student, teacher = args.student, args.teacher
  local p = plan(fname, args)
  local data = M.as_source(args.data, args)
  local conn, extra = build_connectors(fname, args, data, p)
  local params = student:parameters()
  for _, q in ipairs(extra) do params[#params + 1] = q end
  local opt = M.make_optimizer(fname, args.optimizer, params, #extra > 0)
  local scheduler = M.make_scheduler(args.scheduler, opt)
  local distributed = args.distributed and true or false
  local evaluate = args.eval_data and M.evaluator(student, teacher, M.as_eval(args.eval_data), distributed)

  local t_mode = teacher and teacher.training
  if teacher then teacher:eval() end
  -- names for the non-finite guard, and the modules a checkpoint holds
  local modules, named = {{"student", student}}, {{"student.", student}}
  local ri = {}
  for i in pairs(conn.regressors) do ri[#ri + 1] = i end
  table.sort(ri)
  for _, i in ipairs(ri) do
    modules[#modules + 1] = {"regressor." .. i, conn.regressors[i]}
    named[#named + 1] = {("hints[%d].regressor."):format(i), conn.regressors[i]}
  end
  if conn.crd then
    modules[#modules + 1] = {"crd", conn.crd}
    named[#named + 1] = {"crd.", conn.crd}
  end
  local state = {factor = 1, epoch = 0, names = loop.param_names(named)}
  if distributed then
    -- every rank starts from rank 0's student, connectors and teacher, and
    -- averages the gradients of everything the optimizer trains
    local trained = {}
    for _, g in ipairs(opt.param_groups) do
      for _, q in ipairs(g.params) do trained[#trained + 1] = q end
    end
    local models = {}
    for i, m in ipairs(modules) do models[i] = m[2] end
    loop.check_sync_batchnorm(fname, models, data)
    state.reducer = kdx.dist.reducer(trained, {bucket_bytes = args.bucket_bytes})
    state.modules = modules
    for _, m in ipairs(modules) do kdx.dist.broadcast_parameters(m[2]) end
    if teacher then kdx.dist.broadcast_parameters(teacher) end
  end
  local ok, history = pcall(function()
    local t_out, keyed
    if teacher then t_out, keyed = teacher_source(fname, args, data, p.tnames, p.tsite) end
    local h = loop.run_epochs{
      fname = fname, data = data, epochs = args.epochs, progress = args.progress, log = args.log,
      indexed = keyed or p.needs_crd, distributed = distributed, on_epoch = args.on_epoch, on_nonfinite = args.on_nonfinite,
      checkpoint = args.checkpoint, resume = args.resume, modules = modules, optimizer = opt, scheduler = scheduler,
      lr = function() return opt.param_groups[1].lr end,
      begin_epoch = function(epoch)
        state.factor, state.epoch = M.warmup_factor(epoch, args.warmup), epoch
        student:train()
        for _, r in pairs(conn.regressors) do r:train() end
        if conn.crd then conn.crd:train() end
      end,
      step = make_step(fname, args, p, opt, conn, t_out, state),
      end_epoch = function(_, stats)
        stats.warmup = state.factor
        for _, m in ipairs(distributed and modules or {}) do kdx.dist.broadcast_buffers(m[2]) end
        if evaluate then
          local ev = evaluate()
          stats.eval_loss, stats.eval_accuracy, stats.eval_agreement = ev.loss, ev.accuracy, ev.agreement
        end
        if scheduler then scheduler:step() end
      end,
    }
    return h
  end)
  if teacher then teacher:train(t_mode) end
  if not ok then error(history, 0) end

  local final = (evaluate or M.evaluator(student, teacher, M.as_eval(args.data), distributed))()
  final.epochs, final.regressors, final.crd, final.student = #history, conn.regressors, conn.crd, student
  return history, final
end

--- Refuses distributed = true in a scheme with its own training loop, which
-- would otherwise train the whole data on every rank without a word.
function M.single_process(fname, args)
  if type(args) == "table" and args.distributed then
    fail(fname, "distributed = true is not supported here (only kdx.train, kdx.distill.run and the schemes built "
      .. "on it: multi_teacher, born_again, teacher_assistant)")
  end
end

--- Evaluation data: a dataset goes through an unshuffled loader.
function M.as_eval(data)
  if loop.is_dataset(data) then return kdx.data.DataLoader(data, {batch_size = 256}) end
  return data
end

return M
