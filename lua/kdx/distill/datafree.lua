--- Data-free (zero-shot) distillation: a transfer set synthesised from the
-- teacher alone. Data impressions (Nayak et al. 2019): Dirichlet soft
-- targets drawn around each class by the teacher's class similarity, and
-- inputs optimised from noise until the teacher's softened outputs match
-- them. DeepInversion (Yin et al. 2020): inputs optimised so that the
-- statistics of every batch-norm layer's input match its running
-- statistics, with cross entropy to random classes and image priors.
-- Both return a kdx.data dataset that kdx.distill.run takes as `data`.
-- @module kdx.distill.datafree

local kdx = require "kdx"
local loop = require "kdx.loop"
local R = require "kdx.distill.run"

local fail = loop.fail
local M = {}

local function is_module(v) return kdx.nn.Module.is_module(v) end

-- ---------------------------------------------------------------- random --

-- Numbers drawn from kdx's generator in blocks, so that a seed fixes every
-- draw (Lua's math.random is a separate generator).
local function stream()
  local normals, uniforms, ni, ui = {}, {}, 1, 1
  local s = {}
  function s.normal()
    if ni > #normals then normals, ni = kdx.randn({256}, "float64"):totable(), 1 end
    ni = ni + 1
    return normals[ni - 1]
  end
  function s.uniform()
    if ui > #uniforms then uniforms, ui = kdx.rand({256}, "float64"):totable(), 1 end
    ui = ui + 1
    -- (0, 1): log(u) and u^(1/a) below must not see 0
    return math.max(uniforms[ui - 1], 1e-300)
  end
  return s
end

-- Gamma(alpha, 1) by Marsaglia and Tsang (2000); for alpha < 1 the boost
-- Gamma(alpha + 1) · U^(1/alpha).
local function gamma(rs, alpha)
  if alpha < 1 then return gamma(rs, alpha + 1) * rs.uniform() ^ (1 / alpha) end
  local d = alpha - 1 / 3
  local c = 1 / math.sqrt(9 * d)
  while true do
    local x = rs.normal()
    local v = 1 + c * x
    if v > 0 then
      v = v * v * v
      local u = rs.uniform()
      if u < 1 - 0.0331 * x ^ 4 or math.log(u) < 0.5 * x * x + d * (1 - v + math.log(v)) then return d * v end
    end
  end
end

--- One draw from Dirichlet(alpha) (a list of positive numbers), using kdx's
-- generator: a list that sums to 1. An all-zero draw (possible in floating
-- point when every alpha is tiny) puts its mass on the largest alpha.
function M.dirichlet(alpha, rs)
  rs = rs or stream()
  local g, sum, best = {}, 0, 1
  for i, a in ipairs(alpha) do
    g[i] = gamma(rs, a)
    sum = sum + g[i]
    if a > alpha[best] then best = i end
  end
  if sum == 0 then
    for i = 1, #alpha do g[i] = 0 end
    g[best], sum = 1, 1
  end
  for i = 1, #g do g[i] = g[i] / sum end
  return g
end

-- Runs fn with the generator seeded by seed (when given) and restores the
-- generator afterwards, so a seeded call does not disturb the caller's draws.
local function seeded(seed, fn)
  if seed == nil then return fn() end
  local state = kdx.get_rng_state()
  kdx.manual_seed(seed)
  local res = table.pack(pcall(fn))
  kdx.set_rng_state(state)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- ---------------------------------------------------------------- checks --

local function check_common(fname, args)
  if type(args) ~= "table" then fail(fname, "expects a table of options") end
  if not is_module(args.teacher) then fail(fname, "teacher must be a kdx.nn module") end
  if math.type(args.n) ~= "integer" or args.n < 1 then fail(fname, "n must be a positive integer") end
  if type(args.shape) ~= "table" or #args.shape < 1 then
    fail(fname, "shape must be the per-sample input shape, e.g. {1, 8, 8}")
  end
  for _, d in ipairs(args.shape) do
    if math.type(d) ~= "integer" or d < 1 then fail(fname, "shape must hold positive integers") end
  end
  for _, k in ipairs{"steps", "batch_size"} do
    local v = args[k]
    if v ~= nil and (math.type(v) ~= "integer" or v < (k == "steps" and 0 or 1)) then
      fail(fname, "%s must be a %s integer", k, k == "steps" and "non-negative" or "positive")
    end
  end
  if args.lr ~= nil and (type(args.lr) ~= "number" or args.lr <= 0) then fail(fname, "lr must be a positive number") end
  if args.seed ~= nil and math.type(args.seed) ~= "integer" then fail(fname, "seed must be an integer") end
  local c = args.clamp
  if c ~= nil and (type(c) ~= "table" or type(c[1]) ~= "number" or type(c[2]) ~= "number" or c[1] >= c[2]) then
    fail(fname, "clamp must be {low, high} with low < high")
  end
end

-- The starting noise for a chunk of k samples: args.init(shape) or uniform
-- in [0, 1) (or in the clamp range).
local function initial(args, k)
  local shape = {k}
  for _, d in ipairs(args.shape) do shape[#shape + 1] = d end
  if args.init then return args.init(shape) end
  local x = kdx.rand(shape)
  if args.clamp then x = x * (args.clamp[2] - args.clamp[1]) + args.clamp[1] end
  return x
end

-- Optimises one chunk of inputs x0 by Adam on objective(x) -> loss (0-d),
-- parts (table of numbers). The gradient is taken with kdx.grad with
-- respect to x alone, so the teacher's .grad is never written. Returns the
-- final inputs and, per step, the loss before that step's update (entry
-- steps + 1 is the loss of the returned inputs) and its parts.
local function optimise(args, x0, objective, lr)
  local x = x0:detach():clone():requires_grad(true)
  local opt = kdx.optim.Adam({x}, {lr = lr})
  local losses, parts = {}, {}
  local steps = args.steps or 200
  for step = 1, steps + 1 do
    local loss, p = objective(x)
    losses[step], parts[step] = loss:item(), p
    if step > steps then break end
    x.grad = kdx.grad(loss, {x})[1]
    opt:step()
    x.grad = nil
    if args.clamp then kdx.no_grad(function() x:clamp_(args.clamp[1], args.clamp[2]) end) end
  end
  return x:detach(), losses, parts
end

-- Adds a chunk's per-step values, weighted by its size k, into acc.
local function accumulate(acc, values, k)
  for i, v in ipairs(values) do
    if type(v) == "table" then
      acc[i] = acc[i] or {}
      for name, w in pairs(v) do acc[i][name] = (acc[i][name] or 0) + w * k end
    else
      acc[i] = (acc[i] or 0) + v * k
    end
  end
end

-- Divides what accumulate summed by the total size n; returns acc.
local function averaged(acc, n)
  for i, v in ipairs(acc) do
    if type(v) == "table" then for name, w in pairs(v) do v[name] = w / n end
    else acc[i] = v / n end
  end
  return acc
end

-- Optimises n inputs in chunks of bs: objective_for(at, k) gives the
-- objective of the chunk of k inputs starting at sample at. Returns the
-- inputs [n, ...], the per-step loss and the per-step parts, averaged
-- over the chunks by size.
local function synthesise(args, bs, lr, objective_for)
  local xs, acc, acc_parts = {}, {}, {}
  for at = 1, args.n, bs do
    local k = math.min(bs, args.n - at + 1)
    local x, losses, parts = optimise(args, initial(args, k), objective_for(at, k), lr)
    xs[#xs + 1] = x
    accumulate(acc, losses, k)
    accumulate(acc_parts, parts, k)
  end
  return kdx.cat(xs, 1), averaged(acc, args.n), averaged(acc_parts, args.n)
end

-- The teacher's logits for x, in eval mode without recording, in chunks.
local function teacher_logits(teacher, x)
  return kdx.no_grad(function()
    local parts = {}
    for at = 1, x:size(1), 256 do parts[#parts + 1] = teacher(x:narrow(1, at, math.min(256, x:size(1) - at + 1))) end
    return kdx.cat(parts, 1)
  end)
end

-- Runs fn with the teacher in eval mode, restoring its mode (also on error).
local function in_eval(teacher, fn)
  local mode = teacher.training
  teacher:eval()
  local res = table.pack(pcall(fn))
  teacher:train(mode)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- The dataset handed back: x, the teacher's argmax labels, and the
-- teacher's logits and soft targets at T.
local function result(teacher, x, T, meta)
  local logits = teacher_logits(teacher, x)
  local C = logits:size(2)
  local classes = {}
  for c = 1, C do classes[c] = tostring(c) end
  meta.logits, meta.soft, meta.classes = logits, kdx.softmax(logits / T, 2), meta.classes or classes
  return kdx.data.dataset(x:contiguous(), logits:argmax(2), meta)
end

-- ------------------------------------------------------ data impressions --

--- The class-similarity matrix of Nayak et al. 2019 from a final layer's
-- weight W [C, D]: the cosine similarity of the rows, each row then min-max
-- normalised to [0, 1] (so a class is 1 to itself). Returns a float64
-- tensor [C, C].
function M.class_similarity(W)
  local w = W:detach():to("float64")
  w = w / w:norm(2, 2, true):clamp(1e-12)
  local s = w:matmul(w:t())
  local lo, hi = s:amin(2, true), s:amax(2, true)
  return (s - lo) / (hi - lo):clamp(1e-12)
end

-- The soft targets: for each class in `classes`, an equal share of n (the
-- first n % K classes one more), split evenly between the betas; each a
-- Dirichlet draw with concentration beta · similarity row, floored at
-- `min_concentration`. Returns targets [n, C] (float32) and the class each
-- sample was drawn for (int64 [n]).
local function sample_targets(sim, classes, n, betas, floor, rs)
  local C, K = sim:size(1), #classes
  local rows = sim:totable()
  local targets, owner = {}, {}
  for k, c in ipairs(classes) do
    local nk = n // K + (k <= n % K and 1 or 0)
    for j = 1, nk do
      -- samples of a class cycle over the betas, so each beta gets its share
      local beta = betas[(j - 1) % #betas + 1]
      local alpha = {}
      for i = 1, C do alpha[i] = math.max(beta * rows[c][i], floor) end
      targets[#targets + 1] = M.dirichlet(alpha, rs)
      owner[#owner + 1] = c
    end
  end
  return kdx.tensor(targets), kdx.tensor(owner, "int64")
end

local function check_classes(fname, classes, C)
  if classes == nil then
    local all = {}
    for c = 1, C do all[c] = c end
    return all
  end
  if math.type(classes) == "integer" then
    if classes ~= C then fail(fname, "classes = %d but the teacher has %d outputs", classes, C) end
    return check_classes(fname, nil, C)
  end
  if type(classes) ~= "table" or #classes == 0 then fail(fname, "classes must be a list of 1-based classes") end
  for _, c in ipairs(classes) do
    if math.type(c) ~= "integer" or c < 1 or c > C then
      fail(fname, "classes must hold classes in [1, %d], got %s", C, tostring(c))
    end
  end
  return classes
end

-- The similarity matrix: given, or from the teacher's last Linear layer.
local function similarity(fname, args, C)
  local sim = args.similarity
  if sim ~= nil then
    if not kdx.is_tensor(sim) or sim:dim() ~= 2 or sim:size(1) ~= C or sim:size(2) ~= C then
      fail(fname, "similarity must be a tensor [%d, %d]", C, C)
    end
    return sim:to("float64")
  end
  local layer = args.classifier and args.teacher:get_submodule(args.classifier)
    or R.embedding_site(fname, args.teacher, nil, "teacher").module
  if not layer then fail(fname, "teacher has no submodule named %q (classifier)", args.classifier) end
  local W = layer.weight
  if not kdx.is_tensor(W) or W:dim() ~= 2 or W:size(1) ~= C then
    fail(fname, "the final layer's weight must be [%d, D] (one row per class); give similarity = a [%d, %d] tensor",
      C, C, C)
  end
  return M.class_similarity(W)
end

--- Data impressions (Nayak et al. 2019, "Zero-Shot Knowledge Distillation
-- in Deep Networks"). Fields: teacher, n, shape (per sample), classes (all),
-- beta ({1, 0.1}), steps (200), lr (0.05), T (20), batch_size (256),
-- min_concentration (1e-3), similarity, classifier, clamp, init, seed.
-- Returns a dataset (x, y = the teacher's argmax, targets, source_class,
-- logits, soft) and info {loss (per step), initial_loss, final_loss,
-- target_entropy, similarity}; see docs/distill.md.
function M.data_impressions(args)
  local fname = "kdx.distill.data_impressions"
  check_common(fname, args)
  R.single_process(fname, args)
  local betas = args.beta or {1, 0.1}
  if type(betas) == "number" then betas = {betas} end
  if type(betas) ~= "table" or #betas == 0 then fail(fname, "beta must be a positive number or a list of them") end
  for _, b in ipairs(betas) do
    if type(b) ~= "number" or b <= 0 then fail(fname, "beta must hold positive numbers") end
  end
  local T = args.T or 20
  if type(T) ~= "number" or T <= 0 then fail(fname, "T must be a positive number") end
  local floor = args.min_concentration or 1e-3
  local teacher = args.teacher
  return seeded(args.seed, function() return in_eval(teacher, function()
    local C = teacher_logits(teacher, initial(args, 1)):size(2)
    local sim = similarity(fname, args, C)
    local classes = check_classes(fname, args.classes, C)
    local targets, owner = sample_targets(sim, classes, args.n, betas, floor, stream())
    local x, loss = synthesise(args, args.batch_size or 256, args.lr or 0.05, function(at, k)
      local tk = targets:narrow(1, at, k)
      return function(xk) return kdx.nn.functional.cross_entropy(teacher(xk) / T, tk) end
    end)
    local ds = result(teacher, x, T, {targets = targets, source_class = owner})
    -- the cross entropy cannot go below the targets' mean entropy
    local entropy = -(targets * targets:clamp(1e-30):log()):sum(2):mean():item()
    return ds, {loss = loss, initial_loss = loss[1], final_loss = loss[#loss], similarity = sim,
      target_entropy = entropy}
  end) end)
end

-- ---------------------------------------------------------- DeepInversion --

local function is_bn(m)
  local c = getmetatable(m)
  while c do
    if c == kdx.nn.BatchNorm2d or c == kdx.nn.BatchNorm1d then return true end
    c = rawget(c, "super")
  end
  return false
end

-- Yin et al.'s feature loss of one batch-norm layer for its input x:
-- ‖μ(x) − running_mean‖₂ + ‖σ²(x) − running_var‖₂, with the batch mean and
-- (biased) variance per channel over every dim but 2.
local function bn_term(m, x)
  local dims = {1}
  for d = 3, x:dim() do dims[#dims + 1] = d end
  local mu = x:mean(dims, true)
  local var = ((x - mu) * (x - mu)):mean(dims)
  local dm, dv = mu:reshape{-1} - m.running_mean, var - m.running_var
  return (dm * dm):sum():sqrt() + (dv * dv):sum():sqrt()
end

-- Yin et al.'s image prior: the L2 norms of the differences between
-- neighbouring pixels in four directions (right, down, and both diagonals).
function M.total_variation(x)
  local H, W = x:size(3), x:size(4)
  local function d(a, b) local t = a - b return (t * t):sum():sqrt() end
  local c = x:narrow(3, 1, H - 1)
  local total = d(x:narrow(4, 1, W - 1), x:narrow(4, 2, W - 1)) + d(c, x:narrow(3, 2, H - 1))
  total = total + d(x:narrow(3, 2, H - 1):narrow(4, 1, W - 1), c:narrow(4, 2, W - 1))
  return total + d(c:narrow(4, 1, W - 1), x:narrow(3, 2, H - 1):narrow(4, 2, W - 1))
end

-- The DeepInversion objective of a chunk xk with logits and target classes
-- yk, from the batch-norm terms the hooks left in terms and the weights w.
-- Returns the loss and its unweighted batch-norm and cross-entropy parts.
local function inversion_loss(logits, yk, xk, terms, w)
  local bn
  for i = 1, w.nbn do
    local t = terms[i]
    -- a layer off the forward path leaves no term
    if t then
      if i == 1 then t = t * w.first end
      bn = bn and bn + t or t
    end
  end
  if not bn then error("kdx.distill.deep_inversion: no batch-norm layer ran in the teacher's forward pass", 0) end
  local ce = kdx.nn.functional.cross_entropy(logits, yk)
  local loss = ce * w.ce + bn * w.bn
  if w.tv > 0 then loss = loss + M.total_variation(xk) * w.tv end
  if w.l2 > 0 then loss = loss + (xk * xk):sum():sqrt() * w.l2 end
  return loss, {bn = bn:item(), ce = ce:item()}
end

--- DeepInversion (Yin et al. 2020, "Dreaming to Distill"). Fields: teacher
-- (with BatchNorm1d/2d layers that track running statistics), n, shape,
-- targets (int64 [n]; default uniform random classes), steps (200), lr
-- (0.05), ce (1), r_feature (1), first_bn (1), tv (1e-4), l2 (1e-5),
-- batch_size (n), clamp, init, seed, T (1, for the returned soft targets).
-- Returns a dataset (x, y = the teacher's argmax, targets, logits, soft) and
-- info {loss, bn_loss (per step), initial_bn, final_bn, initial_loss,
-- final_loss}; see docs/distill.md.
function M.deep_inversion(args)
  local fname = "kdx.distill.deep_inversion"
  check_common(fname, args)
  R.single_process(fname, args)
  for _, k in ipairs{"ce", "r_feature", "first_bn", "tv", "l2"} do
    local v = args[k]
    if v ~= nil and (type(v) ~= "number" or v < 0) then fail(fname, "%s must be a non-negative number", k) end
  end
  local teacher = args.teacher
  local bns = {}
  for _, m in teacher:named_modules() do
    if is_bn(m) and m.running_mean then bns[#bns + 1] = m end
  end
  if #bns == 0 then fail(fname, "teacher has no BatchNorm1d/BatchNorm2d layer with running statistics") end
  if (args.tv == nil or args.tv > 0) and #args.shape ~= 3 then
    fail(fname, "tv needs image inputs (shape {C, H, W}); set tv = 0")
  end
  return seeded(args.seed, function() return in_eval(teacher, function()
    local C = teacher_logits(teacher, initial(args, 1)):size(2)
    local targets = args.targets
    if targets == nil then targets = kdx.randint(1, C + 1, {args.n})
    elseif not kdx.is_tensor(targets) or targets:dtype() ~= "int64" or targets:dim() ~= 1
      or targets:size(1) ~= args.n then
      fail(fname, "targets must be an int64 tensor of %d classes", args.n)
    end
    -- each forward collects every batch-norm layer's term through a hook
    local terms = {}
    local handles = {}
    for i, m in ipairs(bns) do
      handles[i] = m:register_forward_hook(function(mod, inputs) terms[i] = bn_term(mod, inputs[1]) end)
    end
    local w = {ce = args.ce or 1, bn = args.r_feature or 1, first = args.first_bn or 1, tv = args.tv or 1e-4,
      l2 = args.l2 or 1e-5, nbn = #bns}
    local ok, x, loss, parts = pcall(synthesise, args, args.batch_size or args.n, args.lr or 0.05, function(at, k)
      local yk = targets:narrow(1, at, k)
      return function(xk)
        terms = {}
        local logits = teacher(xk)
        return inversion_loss(logits, yk, xk, terms, w)
      end
    end)
    for _, h in ipairs(handles) do h.remove() end
    if not ok then error(x, 0) end
    local bn_loss, ce_loss = {}, {}
    for i, p in ipairs(parts) do bn_loss[i], ce_loss[i] = p.bn, p.ce end
    local ds = result(teacher, x, args.T or 1, {targets = targets})
    return ds, {loss = loss, bn_loss = bn_loss, ce_loss = ce_loss, initial_loss = loss[1], final_loss = loss[#loss],
      initial_bn = bn_loss[1], final_bn = bn_loss[#bn_loss]}
  end) end)
end

return M
