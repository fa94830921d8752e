--- kdx.explain.compare: does the student decide for the teacher's reasons?
-- Explains both models on the same samples with the same methods and
-- targets, and measures per sample how alike the two explanations are
-- (Spearman, top-k overlap, cosine, SSIM), how faithful each is (deletion
-- AUC), and which samples they disagree on most; compare_grid draws a sample
-- as input | teacher map | student map | difference on one colour scale.
-- @module kdx.explain.compare

local kdx = require "kdx"
local common = require "kdx.explain.common"
local args = require "kdx.args"

local fail = common.fail
local M = {}

local DEFAULT_METHODS = {"integrated_gradients", "gradcam"}

-- The samples to explain: x [N, ...] and labels y [N] (or nil) from a
-- dataset, a {x =, y =} table or a tensor.
local function samples(fname, data, n)
  local x, y
  if kdx.is_tensor(data) then x = data
  elseif type(data) == "table" and kdx.is_tensor(data.x) then x, y = data.x, data.y
  else fail(fname, "data must be a tensor, a dataset or {x =, y =}, got %s", args.what(data)) end
  if x:dim() < 2 then fail(fname, "data must be a batch [N, ...], got %d dims", x:dim()) end
  n = math.min(n or x:size(1), x:size(1))
  x = x:narrow(1, 1, n)
  if y ~= nil then y = y:narrow(1, 1, n) end
  return x, y
end

-- The per-sample summed map [N, 1, H, W] (or [N, ...] flattened) of an
-- attribution, for similarity and pictures: channels summed for images.
local function as_map(attr)
  if attr:dim() == 4 and attr:size(2) > 1 then return attr:sum(2, true) end
  return attr
end

-- SSIM needs maps of at least 11 x 11; smaller maps are enlarged (nearest,
-- by a whole factor) so that every pixel keeps its value.
local function ssim_ready(m)
  if m:dim() ~= 4 or m:size(2) ~= 1 then return nil end
  local h, w = m:size(3), m:size(4)
  local f = math.max(1, math.ceil(11 / math.min(h, w)))
  if f == 1 then return m end
  return kdx.interpolate(m, {size = {h * f, w * f}, mode = "nearest"})
end

-- Runs one method on one model: a name with options, or a function.
local function explain(fname, spec, model, x, target, layer, batch_size)
  local ex = require "kdx.explain"
  local opts = {target = target, batch_size = batch_size}
  for k, v in pairs(spec.opts or {}) do opts[k] = v end
  if spec.name == "gradcam" or spec.name == "gradcam_pp" then
    if not layer then
      fail(fname, "%s needs layers = {teacher = name, student = name}", spec.name)
    end
    opts.layer, opts.upsample = layer, x:dim() == 4
  end
  local fn = ex[spec.name]
  if type(fn) ~= "function" then fail(fname, "unknown method %s", tostring(spec.name)) end
  local attr = fn(model, x, opts)
  return attr
end

local function method_specs(fname, methods)
  local out = {}
  for i, m in ipairs(methods or DEFAULT_METHODS) do
    if type(m) == "string" then out[i] = {name = m}
    elseif type(m) == "table" and type(m.name) == "string" then out[i] = m
    else fail(fname, "methods[%d] must be a method name or {name =, opts =}, got %s", i, args.what(m)) end
  end
  return out
end

-- The target of x's samples: the labels y, or the teacher's predicted class.
-- (check_target has checked mode and that labels exist for "label").
local function targets(mode, teacher, x, y)
  if mode == "label" then return y end
  return kdx.no_grad(function() return teacher(x):argmax(2) end)
end

local function check_target(fname, mode, y)
  if mode == "label" then
    if not y then fail(fname, "target = \"label\" needs labels: give a dataset or {x =, y =}, or target = \"teacher\"") end
  elseif mode ~= "teacher" then
    fail(fname, "target must be \"label\" or \"teacher\", got %s", tostring(mode))
  end
end

-- The per-sample part of compare, on the samples x (all of them, or one
-- rank's block): the target, and per method both attributions, each
-- similarity and both deletion AUCs, every one a tensor with a row per sample.
local function per_sample(fname, teacher, student, x, y, c)
  local metrics = require "kdx.explain.metrics"
  local target = targets(c.mode, teacher, x, y)
  local per = {target = target, methods = {}}
  for _, spec in ipairs(c.specs) do
    local at = explain(fname, spec, teacher, x, target, c.layers.teacher, c.bs)
    local as = explain(fname, spec, student, x, target, c.layers.student, c.bs)
    local mt, ms = as_map(at), as_map(as)
    local sim = {
      spearman = metrics.spearman(mt, ms),
      topk_overlap = metrics.topk_overlap(mt, ms, c.topk),
      cosine = metrics.cosine(mt, ms),
    }
    local st, ss = ssim_ready(mt), ssim_ready(ms)
    if st and ss then sim.ssim = metrics.ssim(st, ss) end
    -- deletion: the softmax probability of the target as the most important
    -- features (by each model's own map) are removed; lower is more faithful
    local dopts = {target = target, steps = c.steps, softmax = true, batch_size = c.bs}
    local _, dt = metrics.deletion(teacher, x, mt:expand(x:shape()), dopts)
    local _, ds = metrics.deletion(student, x, ms:expand(x:shape()), dopts)
    per.methods[spec.name] = {teacher = at, student = as, similarity = sim, deletion_auc = {teacher = dt, student = ds}}
  end
  return per
end

local SIMILARITIES = {"spearman", "topk_overlap", "cosine", "ssim"}

-- Every per-sample tensor of the ranks' per_sample results concatenated in
-- rank order (the same structure on every rank, walked in a fixed order).
local function gather(per, specs)
  local dist = kdx.dist
  local function g(t) return dist.allgather(t:contiguous()) end
  per.target = g(kdx.is_tensor(per.target) and per.target or kdx.tensor(per.target, "int64"))
  local done = {}
  for _, spec in ipairs(specs) do
    local m = per.methods[spec.name]
    if done[m] then goto next end -- a method named twice has one result
    done[m] = true
    m.teacher, m.student = g(m.teacher), g(m.student)
    for _, k in ipairs(SIMILARITIES) do
      if m.similarity[k] then m.similarity[k] = g(m.similarity[k]) end
    end
    m.deletion_auc.teacher, m.deletion_auc.student = g(m.deletion_auc.teacher), g(m.deletion_auc.student)
    ::next::
  end
  return per
end

-- The summary part of compare, from the per-sample tensors of all samples:
-- the means (NaN similarities left out) and, per method, the samples the
-- models disagree on most (lowest Spearman first; undefined ones last).
local function summarize(m, n)
  local mean = {deletion_auc_teacher = m.deletion_auc.teacher:mean():item(),
    deletion_auc_student = m.deletion_auc.student:mean():item()}
  for k, v in pairs(m.similarity) do -- NaN (a zero map) is left out of the mean
    local sum, cnt = 0, 0
    for _, e in ipairs(v:totable()) do
      if e == e then sum, cnt = sum + e, cnt + 1 end
    end
    mean[k] = cnt > 0 and sum / cnt or 0 / 0
  end
  m.mean = mean
  local vals = m.similarity.spearman:totable()
  local idx = {}
  for i = 1, n do idx[i] = i end
  table.sort(idx, function(a, b)
    local va, vb = vals[a] ~= vals[a] and math.huge or vals[a], vals[b] ~= vals[b] and math.huge or vals[b]
    if va ~= vb then return va < vb end
    return a < b
  end)
  m.disagree = idx
end

--- compare(teacher, student, data, opts) -> result. data: a dataset, {x =, y =}
-- or a batch; opts: methods ({"integrated_gradients", "gradcam"}; names or
-- {name =, opts =}), n (all), target ("label", or "teacher" for the
-- teacher's predicted class; labels are needed for "label"), layers =
-- {teacher =, student =} (for Grad-CAM), topk = 0.1, deletion_steps = 20,
-- batch_size = 128, distributed = false (true: the samples split across the
-- kdx.dist ranks in contiguous blocks, each rank explains its block, and the
-- per-sample results are gathered, so every rank gets the whole result).
-- result.methods[name] = {teacher, student (attributions),
-- similarity = {spearman, topk_overlap, cosine, ssim} ([N] each),
-- deletion_auc = {teacher, student} ([N]), mean = {...}, disagree = sample
-- indices, least similar first (Spearman; undefined ones last)};
-- result.disagree is the first method's list.
function M.compare(teacher, student, data, opts)
  local fname = "compare"
  opts = opts or {}
  if type(opts) ~= "table" then fail(fname, "options must be a table, got %s", args.what(opts)) end
  local x, y = samples(fname, data, common.int(fname, opts, "n", nil, 1))
  local c = {
    bs = common.int(fname, opts, "batch_size", 128, 1),
    topk = opts.topk or 0.1,
    layers = opts.layers or {},
    steps = common.int(fname, opts, "deletion_steps", 20, 1),
    mode = opts.target or "label",
    specs = method_specs(fname, opts.methods),
  }
  check_target(fname, c.mode, y)
  if opts.distributed ~= nil and type(opts.distributed) ~= "boolean" then
    fail(fname, "distributed must be true or false, got %s", args.what(opts.distributed))
  end
  local n = x:size(1)
  local per
  if opts.distributed then
    local dist = kdx.dist
    if n < dist.size() then
      fail(fname, "distributed = true needs at least one sample per rank: %d samples, %d ranks", n, dist.size())
    end
    local first, count = dist.block(n)
    per = dist.pcall_all("kdx.dist", per_sample, fname, teacher, student, x:narrow(1, first, count),
      y and y:narrow(1, first, count), c)
    per = gather(per, c.specs)
  else
    per = per_sample(fname, teacher, student, x, y, c)
  end
  local result = {n = n, x = x, y = y, target = per.target, methods = per.methods, order = {}}
  for _, spec in ipairs(c.specs) do
    summarize(result.methods[spec.name], n)
    result.order[#result.order + 1] = spec.name
  end
  result.disagree = result.methods[result.order[1]].disagree
  return result
end

--- A picture of sample i of a compare result: input | teacher map | student
-- map | difference (student - teacher), the maps on one shared colour scale,
-- as an RGB tensor [3, H, W] (opts.method: the first method by default;
-- opts.scale: the pixel factor, by default enough for tiles of >= 96 px).
function M.compare_grid(result, i, opts)
  local fname = "compare_grid"
  opts = opts or {}
  if type(result) ~= "table" or not result.methods then fail(fname, "result must come from kdx.explain.compare") end
  if math.type(i) ~= "integer" or i < 1 or i > result.n then
    fail(fname, "sample must be an integer in 1..%d, got %s", result.n, tostring(i))
  end
  local name = opts.method or result.order[1]
  local m = result.methods[name]
  if not m then fail(fname, "the result has no method %s", tostring(name)) end
  local viz = kdx.viz
  local t, s = as_map(m.teacher):select(1, i), as_map(m.student):select(1, i)
  local scale = viz.shared_scale({t, s, s - t}, {clip_percentile = 99})
  local img = result.x:select(1, i)
  local tiles = {img, viz.heatmap(t, {scale = scale}), viz.heatmap(s, {scale = scale}),
    (viz.heatmap(s - t, {scale = scale}))}
  local rho = m.similarity.spearman:get(i)
  local labels = {"input", "teacher", "student", ("diff, rho %.2f"):format(rho)}
  local w = img:size(img:dim())
  return viz.grid(tiles, {ncol = 4, labels = labels, scale = opts.scale or math.max(1, math.ceil(96 / w)), pad = 3})
end

return M
