--- Explanation-aware distillation: losses that make a student decide for
-- the teacher's reasons, not only reach its outputs. Each takes the two
-- models and the batch, runs them itself, and returns a 0-d tensor that is
-- differentiable in the student's parameters: the student's explanation is
-- computed with create_graph, so training goes through its gradients
-- (double backward). The teacher's explanation is a constant.
--
-- Reached as kdx.distill.loss.input_gradient_match, .gradcam_match and
-- .attribution_match, and as terms of kdx.distill.run (they read the models
-- and the batch: loss = {kd = 0.9, ce = 0.1, gradcam_match = 0.5}).
-- @module kdx.distill.explain_loss

local kdx = require "kdx"
local args = require "kdx.args"

local fail, what = args.failer("kdx.distill.loss."), args.what

local M = {}

local function check_call(fname, name, m)
  local ok = type(m) == "function" or (type(m) == "table" and getmetatable(m) and getmetatable(m).__call)
  if not ok then fail(fname, "%s must be a module or a function, got %s", name, what(m)) end
end

local function check_batch(fname, x, y)
  if not kdx.is_tensor(x) then fail(fname, "x must be a tensor batch, got %s", what(x)) end
  if x:dtype() ~= "float32" and x:dtype() ~= "float64" then fail(fname, "x must be a float tensor, got %s", x:dtype()) end
  if not kdx.is_tensor(y) or y:dtype() ~= "int64" or y:dim() ~= 1 or y:size(1) ~= x:size(1) then
    fail(fname, "y must be %d class labels (int64, 1-based)", x:size(1))
  end
end

local function options(fname, opts, defaults)
  if opts ~= nil and type(opts) ~= "table" then fail(fname, "options must be a table, got %s", what(opts)) end
  local o = {}
  for k, v in pairs(opts or {}) do
    if defaults[k] == nil then fail(fname, "unknown option '%s'", tostring(k)) end
    o[k] = v
  end
  for k, v in pairs(defaults) do if o[k] == nil then o[k] = v end end
  return o
end

-- The selected logit per sample, summed: its gradient is each sample's own.
local function picked(out, y) return out:gather(2, y:unsqueeze(2)):sum() end

-- d out_y / d x, with the graph kept (create) or as a constant.
local function input_gradient(model, x, y, create)
  return kdx.enable_grad(function()
    local xi = x:detach():requires_grad(true)
    return kdx.grad(picked(model(xi), y), xi, {create_graph = create})[1]
  end)
end

-- Rows flattened and scaled to unit L2 norm (eps keeps a zero row finite).
local function unit_rows(t)
  local flat = t:reshape{t:size(1), -1}
  return flat / (flat:pow(2):sum(2, true) + 1e-12):sqrt()
end

--- Jacobian (Sobolev) matching, Srinivas & Fleuret 2018: the MSE between the
-- L2-normalised input gradients of the true-class logit of student and
-- teacher, summed over input elements and averaged over the batch.
-- opts: normalize = true.
function M.input_gradient_match(student, teacher, x, y, opts)
  local fname = "input_gradient_match"
  check_call(fname, "student", student)
  check_call(fname, "teacher", teacher)
  check_batch(fname, x, y)
  local o = options(fname, opts, {normalize = true})
  local gt = kdx.no_grad(function() return input_gradient(teacher, x, y, false):detach() end)
  local gs = input_gradient(student, x, y, true)
  if o.normalize then gs, gt = unit_rows(gs), unit_rows(gt) else
    gs, gt = gs:reshape{gs:size(1), -1}, gt:reshape{gt:size(1), -1}
  end
  return (gs - gt):pow(2):sum(2):mean()
end

-- A Grad-CAM map [N, 1, h, w] of model at layer `name` for classes y:
-- ReLU(sum_k alpha_k A_k) with alpha_k the spatial mean of d y_c / d A_k.
local function gradcam_map(fname, model, name, x, y, create, relu)
  if type(model) ~= "table" or not model.forward_with then
    fail(fname, "Grad-CAM needs a kdx.nn module with a submodule named %s", tostring(name))
  end
  if not model:get_submodule(name) then fail(fname, "the model has no submodule named %q", tostring(name)) end
  return kdx.enable_grad(function()
    local out, feats = model:forward_with(create and x or x:detach(), {name})
    local a = feats[name]
    if not kdx.is_tensor(a) or a:dim() ~= 4 then
      fail(fname, "layer %s must give [N, C, H, W] feature maps", tostring(name))
    end
    local g = kdx.grad(picked(out, y), a, {create_graph = create})[1]
    local cam = (g:mean({3, 4}, true) * a):sum(2, true)
    return relu and kdx.relu(cam) or cam
  end)
end

--- Grad-CAM matching (LwM, Dhar et al. 2019; e2KD, arXiv 2402.03119): the
-- Grad-CAM maps of the true class at student_layer and teacher_layer,
-- resized (bilinear) to the larger of the two sizes, each flattened and
-- L2-normalised; the loss is 1 - their cosine (distance = "cosine", the
-- default) or their L1 distance summed over positions ("l1"), batch mean.
-- Cosine is the default because under L1 a student map that ReLU zeroes
-- (no gradient flows back through it) is closer to the teacher's than a
-- wrong one, and training settles there; under cosine it is the worst case.
-- A student whose maps are all zero from the start (every channel weight
-- negative) gets no gradient from this term; relu = false compares the maps
-- before the ReLU and avoids that.
function M.gradcam_match(student, teacher, x, y, opts)
  local fname = "gradcam_match"
  check_call(fname, "student", student)
  check_call(fname, "teacher", teacher)
  check_batch(fname, x, y)
  local o = options(fname, opts, {student_layer = false, teacher_layer = false, distance = "cosine", relu = true})
  if not o.student_layer or not o.teacher_layer then
    fail(fname, "needs student_layer and teacher_layer (submodule names)")
  end
  if o.distance ~= "l1" and o.distance ~= "cosine" then
    fail(fname, "distance must be \"l1\" or \"cosine\", got %s", tostring(o.distance))
  end
  local mt = kdx.no_grad(function() return gradcam_map(fname, teacher, o.teacher_layer, x, y, false, o.relu):detach() end)
  local ms = gradcam_map(fname, student, o.student_layer, x, y, true, o.relu)
  local h = math.max(ms:size(3), mt:size(3))
  local w = math.max(ms:size(4), mt:size(4))
  local function resize(m)
    if m:size(3) == h and m:size(4) == w then return m end
    return kdx.interpolate(m, {size = {h, w}, mode = "bilinear"})
  end
  local a, b = unit_rows(resize(ms)), unit_rows(resize(mt))
  if o.distance == "cosine" then return 1 - (a * b):sum(2):mean() end
  return (a - b):abs():sum(2):mean()
end

--- Attribution matching with a cheap integrated gradients: IG of the
-- true-class logit from a zero baseline with `steps` midpoint-rule steps
-- (default 8), L2-normalised per sample; MSE summed over elements, batch
-- mean. The student's IG keeps its graph.
function M.attribution_match(student, teacher, x, y, opts)
  local fname = "attribution_match"
  check_call(fname, "student", student)
  check_call(fname, "teacher", teacher)
  check_batch(fname, x, y)
  local o = options(fname, opts, {method = "integrated_gradients", steps = 8})
  if o.method ~= "integrated_gradients" then
    fail(fname, "method must be \"integrated_gradients\", got %s", tostring(o.method))
  end
  if math.type(o.steps) ~= "integer" or o.steps < 1 then fail(fname, "steps must be an integer >= 1") end
  local function ig(model, create)
    local acc
    for k = 1, o.steps do
      local alpha = (k - 0.5) / o.steps
      local g = input_gradient(model, x * alpha, y, create)
      acc = acc and acc + g or g
    end
    return acc * x / o.steps
  end
  local at = kdx.no_grad(function() return ig(teacher, false):detach() end)
  local as = ig(student, true)
  return (unit_rows(as) - unit_rows(at)):pow(2):sum(2):mean()
end

return M
