--- Distillation losses: each returns a 0-d tensor, differentiable (to any
-- order) in the student's and the teacher's input. The formulas are engine
-- functions (csrc/loss_distill.c, csrc/loss_relation.c) composed of
-- differentiable ops; docs/distill_losses.md lists each with its formula,
-- defaults and the reference it follows. Options come in a trailing table,
-- class labels are 1-based int64:
--
--     local L = require "kdx.distill.loss"
--     local loss = 0.1 * F.cross_entropy(s, y) + 0.9 * L.kd(s, t, {T = 4})
--
-- @module kdx.distill.loss

local kdx = require "kdx"
local core = require("kdx.core")._distill

local M = {}

-------------------------------------------------------------- arguments --

local args = require "kdx.args"
local fail, what = args.failer("kdx.distill.loss."), args.what

local function check_tensor(fname, name, v)
  if not kdx.is_tensor(v) then fail(fname, "%s must be a tensor, got %s", name, what(v)) end
  return v
end

-- The options table with defaults filled in; unknown keys are errors (a
-- misspelt option would otherwise be silently ignored).
local function options(fname, opts, defaults)
  if opts ~= nil and type(opts) ~= "table" then
    fail(fname, "options must be a table, got %s", what(opts))
  end
  local o = {}
  for k, v in pairs(opts or {}) do
    if defaults[k] == nil then fail(fname, "unknown option '%s'", tostring(k)) end
    o[k] = v
  end
  for k, v in pairs(defaults) do
    if o[k] == nil then o[k] = v end
  end
  return o
end

local function check_number(fname, name, v, lo, hi, open_lo)
  if type(v) ~= "number" or v ~= v then fail(fname, "%s must be a number, got %s", name, tostring(v)) end
  if (lo and (v < lo or (open_lo and v == lo))) or (hi and v > hi) then
    local range = (open_lo and "(" or "[") .. (lo or "-inf") .. ", " .. (hi or "inf") .. "]"
    fail(fname, "%s must be in %s, got %s", name, range, tostring(v))
  end
  return v
end

local function check_temperature(fname, T)
  if type(T) ~= "number" or not (T > 0 and T < math.huge) then
    fail(fname, "T must be a positive finite number, got %s", tostring(T))
  end
  return T
end

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

-- Labels: int64 [B] of 1-based classes in [1, C]; B is checked when given.
local function check_labels(fname, y, B, C)
  check_tensor(fname, "labels", y)
  if y:dtype() ~= "int64" then
    fail(fname, "labels must be an int64 tensor of class indices, got %s (convert with :long())", y:dtype())
  end
  if y:dim() ~= 1 then fail(fname, "labels must be 1-D [B], got shape %s", shape_str(y)) end
  if B and y:size(1) ~= B then fail(fname, "labels have shape %s but the batch size is %d", shape_str(y), B) end
  if y:numel() > 0 then
    local lo, hi = y:amin():item(), y:amax():item()
    if lo < 1 or hi > C then
      fail(fname, "label %d is out of range [1, %d] (labels are 1-based)", lo < 1 and lo or hi, C)
    end
  end
  return y
end

-- Calls the engine; its message "kdx.loss_kd: ..." is raised as
-- "kdx.distill.loss.kd: ..." at the caller.
local function call(fname, fn, ...)
  local ok, a, b = pcall(fn, ...)
  if not ok then
    fail(fname, "%s", (tostring(a):gsub("^kdx%.[%w_]+: ", "")))
  end
  return a, b
end

-- The logits' class count, for checking labels before the engine sees them
-- (the engine checks the logits themselves).
local function classes_of(s)
  return s:dim() == 2 and s:size(2) or nil
end

--------------------------------------------------------- logit losses --

--- Hinton KD: `T^2 * KL(softmax(t/T) || softmax(s/T))`, summed over classes,
-- mean over the batch. s, t: logits [B,C]. opts: T = 4.
function M.kd(s, t, opts)
  local fname = "kd"
  check_tensor(fname, "student logits", s)
  check_tensor(fname, "teacher logits", t)
  local o = options(fname, opts, {T = 4})
  return call(fname, core.kd, s, t, check_temperature(fname, o.T))
end

--- Cross-entropy to the teacher's soft targets, `-sum softmax(t/T) log softmax(s/T)`,
-- mean over the batch, not scaled by T^2 (TextBrewer's kd_ce_loss): it is
-- `kd / T^2` plus the teacher's entropy. opts: T = 4.
function M.soft_ce(s, t, opts)
  local fname = "soft_ce"
  check_tensor(fname, "student logits", s)
  check_tensor(fname, "teacher logits", t)
  local o = options(fname, opts, {T = 4})
  return call(fname, core.soft_ce, s, t, check_temperature(fname, o.T))
end

--- Decoupled KD (Zhao et al. 2022): `T^2 * (alpha * TCKD + beta * NCKD)`, batch
-- mean; TCKD is the KL of the binary masses {p_y, 1 - p_y}, NCKD the KL of
-- the distributions over the non-target classes. y: int64 labels [B]
-- (1-based). opts: alpha = 1, beta = 8, T = 4. The warm-up ramp of mdistiller
-- is the caller's (kdx.distill.run's `warmup`).
function M.dkd(s, t, y, opts)
  local fname = "dkd"
  check_tensor(fname, "student logits", s)
  check_tensor(fname, "teacher logits", t)
  check_tensor(fname, "labels", y)
  local o = options(fname, opts, {alpha = 1, beta = 8, T = 4})
  check_number(fname, "alpha", o.alpha)
  check_number(fname, "beta", o.beta)
  check_temperature(fname, o.T)
  local C = classes_of(s)
  if C then check_labels(fname, y, s:size(1), C) end
  return call(fname, core.dkd, s, t, y, o.alpha, o.beta, o.T)
end

--- Mean over all elements of `(softmax(s/T) - softmax(t/T))^2` (the
-- mean-teacher consistency loss). opts: T = 1.
function M.consistency(s, t, opts)
  local fname = "consistency"
  check_tensor(fname, "student logits", s)
  check_tensor(fname, "teacher logits", t)
  local o = options(fname, opts, {T = 1})
  return call(fname, core.consistency, s, t, check_temperature(fname, o.T))
end

--- Teacher-free KD (Yuan et al. 2020, Tf-KD_reg): `KL(softmax(q/T) || softmax(s))`,
-- batch mean, q the virtual teacher of labels y (correct_prob on the label,
-- the rest spread evenly). Add your own cross-entropy term. opts: T = 10,
-- correct_prob = 0.9.
function M.tf_kd(s, y, opts)
  local fname = "tf_kd"
  check_tensor(fname, "student logits", s)
  check_tensor(fname, "labels", y)
  local o = options(fname, opts, {T = 10, correct_prob = 0.9})
  check_temperature(fname, o.T)
  check_number(fname, "correct_prob", o.correct_prob, 0, 1)
  local C = classes_of(s)
  if C then check_labels(fname, y, s:size(1), C) end
  return call(fname, core.tf_kd, s, y, o.T, o.correct_prob)
end

------------------------------------------------------ feature losses --

--- FitNets hint: MSE (mean over all elements) between the student feature,
-- already passed through a `kdx.distill.Regressor`, and the teacher feature
-- of the same shape.
function M.hint(fs, ft, opts)
  local fname = "hint"
  check_tensor(fname, "student features", fs)
  check_tensor(fname, "teacher features", ft)
  options(fname, opts, {})
  return call(fname, core.hint, fs, ft)
end

--- Attention transfer: `a(f) = normalize(mean_c(|f|^p) flattened)` on
-- [B,C,H,W] maps (channels may differ; the larger map is adaptive-average-
-- pooled to the smaller); the loss is the mean over batch and positions of
-- `(a_s - a_t)^2`. opts: p = 2 (>= 1).
function M.at(fs, ft, opts)
  local fname = "at"
  check_tensor(fname, "student features", fs)
  check_tensor(fname, "teacher features", ft)
  local o = options(fname, opts, {p = 2})
  check_number(fname, "p", o.p, 1)
  if o.p == math.huge then fail(fname, "p must be finite, got inf") end
  return call(fname, core.at, fs, ft, o.p)
end

--- Similarity preserving: `||G_t - G_s||_F^2 / B^2` with `G = row_normalize(F F^T)`,
-- F the batch flattened to [B, -1] (the sizes of student and teacher may differ).
function M.sp(fs, ft, opts)
  local fname = "sp"
  check_tensor(fname, "student features", fs)
  check_tensor(fname, "teacher features", ft)
  options(fname, opts, {})
  return call(fname, core.sp, fs, ft)
end

--- Relational KD: `distance * L_D + angle * L_A`. L_D: smooth-L1 between the
-- pairwise distance matrices, each divided by its mean off-diagonal
-- distance; L_A: smooth-L1 between the angle potentials of all triplets.
-- es, et: [B, ...] flattened (sizes may differ), B >= 2. A zero weight skips
-- its term (the angle term costs O(B^3)). opts: distance = 25, angle = 50.
function M.rkd(es, et, opts)
  local fname = "rkd"
  check_tensor(fname, "student embeddings", es)
  check_tensor(fname, "teacher embeddings", et)
  local o = options(fname, opts, {distance = 25, angle = 50})
  check_number(fname, "distance", o.distance)
  check_number(fname, "angle", o.angle)
  return call(fname, core.rkd, es, et, o.distance, o.angle)
end

--- Probabilistic knowledge transfer: cosine-similarity kernels mapped to
-- [0,1], rows normalised to conditional probabilities, then
-- `mean(P_t * log((P_t + eps) / (P_s + eps)))` over the B^2 entries.
-- opts: eps = 1e-7 (the reference's).
function M.pkt(es, et, opts)
  local fname = "pkt"
  check_tensor(fname, "student embeddings", es)
  check_tensor(fname, "teacher embeddings", et)
  local o = options(fname, opts, {eps = 1e-7})
  check_number(fname, "eps", o.eps, 0, nil, true)
  return call(fname, core.pkt, es, et, o.eps)
end

--- Neural selectivity transfer: the squared MMD, with the polynomial kernel
-- `k(x, y) = (x . y)^2`, between the L2-normalised channel maps of [B,C,H,W]
-- features (the larger map pooled to the smaller).
function M.nst(fs, ft, opts)
  local fname = "nst"
  check_tensor(fname, "student features", fs)
  check_tensor(fname, "teacher features", ft)
  options(fname, opts, {})
  return call(fname, core.nst, fs, ft)
end

--- Correlation congruence as RepDistiller computes it: with `d = |es - et|`,
-- `mean_i sum_k d[i,k] d[i+1,k]`. es, et: one shape [B, ...], B >= 2 (project
-- both to one size first, e.g. with Linear heads).
function M.cc(es, et, opts)
  local fname = "cc"
  check_tensor(fname, "student embeddings", es)
  check_tensor(fname, "teacher embeddings", et)
  options(fname, opts, {})
  return call(fname, core.cc, es, et)
end

-------------------------------------------------------------- targets --

local function check_classes(fname, C)
  if math.type(C) ~= "integer" or C < 1 then
    fail(fname, "num_classes must be a positive integer, got %s", tostring(C))
  end
  return C
end

local function check_dtype(fname, dt)
  if dt ~= "float32" and dt ~= "float64" then
    fail(fname, "dtype must be \"float32\" or \"float64\", got %s", tostring(dt))
  end
  return dt
end

--- Label-smoothed targets [B,C]: `1 - smoothing + smoothing/C` at the label,
-- `smoothing/C` elsewhere (PyTorch's label_smoothing). y: int64 labels [B]
-- (1-based). opts: smoothing = 0.1, dtype = "float32".
function M.label_smoothing(y, num_classes, opts)
  local fname = "label_smoothing"
  local C = check_classes(fname, num_classes)
  check_labels(fname, y, nil, C)
  local o = options(fname, opts, {smoothing = 0.1, dtype = "float32"})
  check_number(fname, "smoothing", o.smoothing, 0, 1)
  return call(fname, core.label_smoothing, y, C, o.smoothing, check_dtype(fname, o.dtype))
end

--- The teacher-free virtual teacher [B,C]: correct_prob at the label,
-- `(1 - correct_prob) / (C - 1)` elsewhere. opts: correct_prob = 0.9, dtype = "float32".
function M.virtual_teacher(y, num_classes, opts)
  local fname = "virtual_teacher"
  local C = check_classes(fname, num_classes)
  if C < 2 then fail(fname, "num_classes must be at least 2, got %d", C) end
  check_labels(fname, y, nil, C)
  local o = options(fname, opts, {correct_prob = 0.9, dtype = "float32"})
  check_number(fname, "correct_prob", o.correct_prob, 0, 1)
  return call(fname, core.virtual_teacher, y, C, o.correct_prob, check_dtype(fname, o.dtype))
end

--- Pseudo labels from teacher logits [B,C]; returns targets and a mask.
-- mode "hard": targets are the argmax classes, int64 [B] (1-based), or with
-- smoothing > 0 their label_smoothing [B,C]; mode "soft": targets are
-- `(1 - smoothing) * softmax(t/T) + smoothing/C`. mask: [B], 1 where the
-- teacher's confidence max softmax(t/T) >= threshold, else 0 (t's dtype).
-- Nothing is recorded. opts: mode = "hard", T = 1, threshold = 0, smoothing = 0.
function M.pseudo_labels(t, opts)
  local fname = "pseudo_labels"
  check_tensor(fname, "teacher logits", t)
  local o = options(fname, opts, {mode = "hard", T = 1, threshold = 0, smoothing = 0})
  if o.mode ~= "hard" and o.mode ~= "soft" then
    fail(fname, "mode must be \"hard\" or \"soft\", got %s", tostring(o.mode))
  end
  check_temperature(fname, o.T)
  check_number(fname, "threshold", o.threshold)
  check_number(fname, "smoothing", o.smoothing, 0, 1)
  return call(fname, core.pseudo_labels, t, o.mode == "soft", o.T, o.threshold, o.smoothing)
end

-- Explanation-aware terms (they run the models themselves): see explain_loss.lua.
for name, fn in pairs(require "kdx.distill.explain_loss") do M[name] = fn end

return M
