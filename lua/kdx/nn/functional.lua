--- Losses and helpers in the style of `torch.nn.functional`.
-- Everything here is composed from kdx ops, so every loss is differentiable
-- (to second order too) with no backward of its own. Values and gradients
-- follow PyTorch 1.13; class indices are 1-based and options come in a
-- trailing table: `F.cross_entropy(logits, y, {label_smoothing = 0.1})`.
-- @module kdx.nn.functional

local kdx = require "kdx"

local F = {}

-------------------------------------------------------------- arguments --

local args = require "kdx.args"
local fail, what = args.failer("kdx.nn.functional."), args.what

local function shape_str(shape)
  return "[" .. table.concat(shape, ",") .. "]"
end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

local function check_tensor(fname, name, v)
  if not kdx.is_tensor(v) then fail(fname, "%s must be a tensor, got %s", name, what(v)) end
  return v
end

local function check_float(fname, name, v)
  check_tensor(fname, name, v)
  local dt = v:dtype()
  if dt ~= "float32" and dt ~= "float64" then
    fail(fname, "%s must be a float tensor (float32 or float64), got %s", name, dt)
  end
  return v
end

-- Marks an option that exists but has no default.
local NONE = {}

-- The options table with defaults filled in. Unknown keys are errors: a
-- misspelt option would otherwise be silently ignored.
local function options(fname, opts, defaults)
  if opts ~= nil and type(opts) ~= "table" then
    if kdx.is_tensor(opts) then
      fail(fname, "options must be a table, got a tensor (pass it by name, e.g. {weight = w})")
    end
    fail(fname, "options must be a table, got %s", type(opts))
  end
  local o = {}
  for k, v in pairs(opts or {}) do
    if defaults[k] == nil then fail(fname, "unknown option '%s'", tostring(k)) end
    o[k] = v
  end
  for k, v in pairs(defaults) do
    if o[k] == nil and v ~= NONE then o[k] = v end
  end
  return o
end

local REDUCTIONS = {mean = true, sum = true, none = true}

local function check_reduction(fname, r, extra)
  if not (REDUCTIONS[r] or r == extra) then
    fail(fname, "reduction must be \"mean\", \"sum\"%s or \"none\", got %s", extra and (", \"" .. extra .. "\"") or "",
      type(r) == "string" and ("\"" .. r .. "\"") or tostring(r))
  end
  return r
end

local function check_number(fname, name, v, lo, hi, open_lo)
  if type(v) ~= "number" or v ~= v then fail(fname, "%s must be a number, got %s", name, tostring(v)) end
  if (lo and (v < lo or (open_lo and v == lo))) or (hi and v > hi) then
    local range = (open_lo and "(" or "[") .. (lo or "-inf") .. ", " .. (hi or "inf") .. "]"
    fail(fname, "%s must be in %s, got %s", name, range, tostring(v))
  end
  return v
end

local function check_int(fname, name, v)
  local i = math.type(v) and math.tointeger(v)
  if not i then fail(fname, "%s must be an integer, got %s", name, tostring(v)) end
  return i
end

-- A Lua dim of a `nd`-d tensor, negative from the end, as kdx numbers them.
local function check_dim(fname, d, nd)
  d = check_int(fname, "dim", d)
  if d == 0 or d > nd or d < -nd then
    fail(fname, "dim %d is out of range for a %d-d input (dims are 1-based; negative count from the end)", d, nd)
  end
  return d
end

local function reduce(loss, reduction)
  if reduction == "mean" then return loss:mean() end
  if reduction == "sum" then return loss:sum() end
  return loss
end

-- `w` (a tensor of any shape) must broadcast to `shape` without growing it.
local function check_broadcast_to(fname, name, w, shape)
  check_float(fname, name, w)
  local ok = w:dim() <= #shape
  for i = 1, w:dim() do
    local s, t = w:size(-i), shape[#shape - i + 1]
    if ok and s ~= 1 and s ~= t then ok = false end
  end
  if not ok then
    fail(fname, "%s has shape %s, which does not broadcast to the input's shape %s",
      name, shape_str(w:shape()), shape_str(shape))
  end
  return w
end

-------------------------------------------------------- class targets --

-- The class dim is 2 ([N,C,d1,...]); an unbatched [C] input is treated as [1,C].
local function check_class_input(fname, input, name)
  check_float(fname, name, input)
  if input:dim() == 0 then
    fail(fname, "%s must have a class dim ([C], [N,C] or [N,C,d1,...]), got a 0-d tensor", name)
  end
  return input:size(input:dim() == 1 and 1 or 2)
end

local function class_target_shape(input_shape)
  local want = {}
  if #input_shape == 1 then return want end
  for i, s in ipairs(input_shape) do
    if i ~= 2 then want[#want + 1] = s end
  end
  return want
end

local function check_class_target(fname, input, target, C, ignore)
  local is, ts = input:shape(), target:shape()
  local want = class_target_shape(is)
  if not same_shape(ts, want) then
    if #is >= 2 and #ts >= 1 and ts[1] ~= is[1] then
      fail(fname, "target has shape %s but input has batch size %d", shape_str(ts), is[1])
    end
    fail(fname, "target has shape %s but input %s needs class indices of shape %s",
      shape_str(ts), shape_str(is), shape_str(want))
  end
  if target:numel() == 0 then return end
  local t = target
  if ignore ~= nil then t = kdx.where(target:eq(ignore), 1, target) end
  local lo, hi = t:amin():item(), t:amax():item()
  if lo < 1 or hi > C then
    fail(fname, "target %d is out of range [1, %d] (class indices are 1-based)", lo < 1 and lo or hi, C)
  end
end

local function check_class_weight(fname, weight, C, input)
  if weight == nil then return nil end
  check_float(fname, "weight", weight)
  if weight:dim() ~= 1 or weight:size(1) ~= C then
    fail(fname, "weight has shape %s but input has %d classes (weight must be [%d])", shape_str(weight:shape()), C, C)
  end
  return weight:to(input:dtype())
end

local function check_ignore(fname, ignore)
  if ignore == nil then return nil end
  return check_int(fname, "ignore_index", ignore)
end

-- weight [C] viewed to broadcast along dim 2 of an nd-d tensor.
local function along_classes(weight, nd)
  local shape = {}
  for i = 1, nd do shape[i] = 1 end
  shape[2] = weight:size(1)
  return weight:view(shape)
end

-- -weight[t] * logp[t] at every position of logp [N,C,...] (0 where the target
-- is ignored), and the per-position weight that a "mean" divides by: the
-- target's weight, 0 where ignored (nil when every position counts 1).
local function picked_loss(logp, target, weight, ignore)
  local keep, t = nil, target
  if ignore ~= nil then
    keep = target:ne(ignore)
    t = kdx.where(keep, target, 1) -- any valid class: the position is masked below
  end
  local loss = -logp:gather(2, t:unsqueeze(2)):squeeze(2)
  local w
  if weight then
    w = weight:index_select(1, t:reshape{-1}):view(t:shape())
    loss = loss * w
  end
  if keep then
    -- where, not a multiply by 0, so an ignored -inf does not make a nan
    loss = kdx.where(keep, loss, 0)
    w = w and kdx.where(keep, w, 0) or keep:to(loss:dtype())
  end
  return loss, w, keep
end

-- "mean" divides by the summed target weights (the number of kept positions
-- without weights), as PyTorch's nll_loss.
local function reduce_weighted(loss, w, reduction)
  if reduction == "mean" and w then return loss:sum() / w:sum() end
  return reduce(loss, reduction)
end

-- Cross entropy of log-probabilities [N,C,...] against class indices, with
-- PyTorch's label smoothing: (1-ls) * nll + ls/C * (the weighted sum of
-- -logp over classes), both reduced the same way.
local function class_cross_entropy(logp, target, weight, ignore, ls, reduction)
  local loss, w, keep = picked_loss(logp, target, weight, ignore)
  local nll = reduce_weighted(loss, w, reduction)
  if ls == 0 then return nll end
  local smooth
  if weight then
    smooth = -(logp * along_classes(weight, logp:dim())):sum(2)
  else
    smooth = -logp:sum(2)
  end
  if keep then smooth = kdx.where(keep, smooth, 0) end
  smooth = reduce_weighted(smooth, w, reduction)
  return (1 - ls) * nll + smooth * (ls / logp:size(2))
end

-- Cross entropy against class probabilities [N,C,...]: "mean" divides by the
-- number of positions N*d1*..., whatever the weights (PyTorch).
local function prob_cross_entropy(logp, target, weight, ls, reduction)
  local C = logp:size(2)
  if ls > 0 then target = target * (1 - ls) + ls / C end
  local prod = logp * target
  if weight then prod = prod * along_classes(weight, logp:dim()) end
  if reduction == "none" then return -prod:sum(2) end
  if reduction == "sum" then return -prod:sum() end
  return -prod:sum() / (logp:numel() // C)
end

local CE_OPTIONS = {weight = NONE, reduction = "mean", ignore_index = NONE, label_smoothing = 0}

--- Cross entropy of logits `input` ([C], [N,C] or [N,C,d1,...]) against `target`:
-- int64 class indices (1-based, shape [N] or [N,d1,...]) or class probabilities
-- (a float tensor of input's shape). opts: weight [C], reduction = "mean"
-- ("sum", "none"), ignore_index (a class index to skip; none by default),
-- label_smoothing = 0 (in [0, 1]).
function F.cross_entropy(input, target, opts)
  local fname = "cross_entropy"
  local C = check_class_input(fname, input, "input")
  check_tensor(fname, "target", target)
  local o = options(fname, opts, CE_OPTIONS)
  local reduction = check_reduction(fname, o.reduction)
  local ls = check_number(fname, "label_smoothing", o.label_smoothing, 0, 1)
  local ignore = check_ignore(fname, o.ignore_index)
  local weight = check_class_weight(fname, o.weight, C, input)
  local unbatched = input:dim() == 1
  local loss
  if target:dtype() == "int64" then
    check_class_target(fname, input, target, C, ignore)
    if unbatched then input, target = input:unsqueeze(1), target:unsqueeze(1) end
    loss = class_cross_entropy(kdx.log_softmax(input, 2), target, weight, ignore, ls, reduction)
  else
    if not same_shape(target:shape(), input:shape()) then
      fail(fname, "target is %s with shape %s but input has shape %s: class indices must be int64 "
        .. "(convert with :long()), class probabilities must have the input's shape",
        target:dtype(), shape_str(target:shape()), shape_str(input:shape()))
    end
    if ignore ~= nil then fail(fname, "ignore_index is not supported with class-probability targets") end
    if unbatched then input, target = input:unsqueeze(1), target:unsqueeze(1) end
    loss = prob_cross_entropy(kdx.log_softmax(input, 2), target, weight, ls, reduction)
  end
  if unbatched and reduction == "none" then loss = loss:squeeze(1) end
  return loss
end

--- Negative log-likelihood of log-probabilities `input` ([C], [N,C] or
-- [N,C,d1,...]) at int64 class indices `target` (1-based, [N] or [N,d1,...]).
-- opts: weight [C], reduction = "mean" (divides by the summed target weights),
-- ignore_index (none by default).
function F.nll_loss(input, target, opts)
  local fname = "nll_loss"
  local C = check_class_input(fname, input, "input")
  check_tensor(fname, "target", target)
  local o = options(fname, opts, {weight = NONE, reduction = "mean", ignore_index = NONE})
  local reduction = check_reduction(fname, o.reduction)
  local ignore = check_ignore(fname, o.ignore_index)
  local weight = check_class_weight(fname, o.weight, C, input)
  if target:dtype() ~= "int64" then
    fail(fname, "target must hold int64 class indices, got %s (convert with :long())", target:dtype())
  end
  check_class_target(fname, input, target, C, ignore)
  local unbatched = input:dim() == 1
  if unbatched then input, target = input:unsqueeze(1), target:unsqueeze(1) end
  local loss, w = picked_loss(input, target, weight, ignore)
  loss = reduce_weighted(loss, w, reduction)
  if unbatched and reduction == "none" then loss = loss:squeeze(1) end
  return loss
end

-------------------------------------------------------- regression losses --

-- input and target of one shape. PyTorch broadcasts different shapes with a
-- warning ("likely incorrect results"); here that is an error.
local function check_pair(fname, input, target)
  check_float(fname, "input", input)
  check_tensor(fname, "target", target)
  if not same_shape(input:shape(), target:shape()) then
    fail(fname, "input has shape %s but target has shape %s (they must match)",
      shape_str(input:shape()), shape_str(target:shape()))
  end
end

--- Mean squared error `(input - target)^2`, reduced. opts: reduction = "mean".
function F.mse_loss(input, target, opts)
  local fname = "mse_loss"
  check_pair(fname, input, target)
  local o = options(fname, opts, {reduction = "mean"})
  local d = input - target
  return reduce(d * d, check_reduction(fname, o.reduction))
end

--- Mean absolute error `|input - target|`, reduced. opts: reduction = "mean".
function F.l1_loss(input, target, opts)
  local fname = "l1_loss"
  check_pair(fname, input, target)
  local o = options(fname, opts, {reduction = "mean"})
  return reduce((input - target):abs(), check_reduction(fname, o.reduction))
end

--- Smooth L1: `0.5 z^2 / beta` where `z = |input - target| < beta`, else
-- `z - 0.5 beta`. opts: beta = 1 (0 gives l1_loss), reduction = "mean".
function F.smooth_l1_loss(input, target, opts)
  local fname = "smooth_l1_loss"
  check_pair(fname, input, target)
  local o = options(fname, opts, {reduction = "mean", beta = 1})
  local reduction = check_reduction(fname, o.reduction)
  local beta = check_number(fname, "beta", o.beta, 0)
  local z = (input - target):abs()
  if beta == 0 then return reduce(z, reduction) end
  return reduce(kdx.where(z:lt(beta), 0.5 * z * z / beta, z - 0.5 * beta), reduction)
end

--- Huber loss: `0.5 z^2` where `z = |input - target| < delta`, else
-- `delta (z - 0.5 delta)`. opts: delta = 1 (> 0), reduction = "mean".
function F.huber_loss(input, target, opts)
  local fname = "huber_loss"
  check_pair(fname, input, target)
  local o = options(fname, opts, {reduction = "mean", delta = 1})
  local reduction = check_reduction(fname, o.reduction)
  local delta = check_number(fname, "delta", o.delta, 0, nil, true)
  local z = (input - target):abs()
  return reduce(kdx.where(z:lt(delta), 0.5 * z * z, delta * (z - 0.5 * delta)), reduction)
end

------------------------------------------------------------ binary losses --

-- PyTorch's binary_cross_entropy backward divides by max(p(1-p), EPSILON),
-- EPSILON being the float 1e-12 (9.99999996e-13).
local BCE_EPS = string.unpack("f", string.pack("f", 1e-12))

--- Binary cross entropy of probabilities `input` (in [0, 1]) against `target`
-- of the same shape: `-w (y log p + (1-y) log(1-p))`, each log clamped at
-- -100 as PyTorch. opts: weight (broadcasts to input), reduction = "mean".
function F.binary_cross_entropy(input, target, opts)
  local fname = "binary_cross_entropy"
  check_pair(fname, input, target)
  local o = options(fname, opts, {weight = NONE, reduction = "mean"})
  local reduction = check_reduction(fname, o.reduction)
  local weight = o.weight and check_broadcast_to(fname, "weight", o.weight, input:shape())
  if input:numel() > 0 then
    local lo, hi = input:amin():item(), input:amax():item()
    if not (lo >= 0 and hi <= 1) then
      fail(fname, "input must hold probabilities in [0, 1], got values in [%g, %g] (for logits use "
        .. "binary_cross_entropy_with_logits)", lo, hi)
    end
  end
  local p, y = input, target
  local pd, yd = p:detach(), y:detach()
  -- PyTorch's value: the logs clamped at -100, so p = 0 or 1 gives 100, not inf
  local value = (yd - 1) * (1 - pd):log():clamp(-100, nil) - yd * pd:log():clamp(-100, nil)
  -- Where p(1-p) >= 1e-12 the same formula (the clamps are inactive there)
  -- gives the gradient (p - y) / (p(1-p)). Elsewhere PyTorch's gradient is
  -- (p - y) / 1e-12: that is the derivative of (p^2/2 - y p) / 1e-12, added
  -- as a zero so the value stays PyTorch's. Each branch only sees inputs that
  -- keep its gradient finite.
  local inner = ((1 - pd) * pd):ge(BCE_EPS)
  local ps = kdx.where(inner, p, 0.5)
  local smooth = (y - 1) * (1 - ps):log() - y * ps:log()
  local edge = (p * p * 0.5 - yd * p) / BCE_EPS
  local loss = kdx.where(inner, smooth, (edge - edge:detach()) + value)
  if weight then loss = loss * weight end
  return reduce(loss, reduction)
end

--- Binary cross entropy of logits `input` against `target` of the same shape,
-- computed stably as `(1-y) x + lw * log(1 + exp(-x))` in log-sum-exp form,
-- `lw = 1 + (pos_weight - 1) y`. opts: weight, pos_weight (both broadcast to
-- input; pos_weight typically [C]), reduction = "mean".
function F.binary_cross_entropy_with_logits(input, target, opts)
  local fname = "binary_cross_entropy_with_logits"
  check_pair(fname, input, target)
  local o = options(fname, opts, {weight = NONE, pos_weight = NONE, reduction = "mean"})
  local reduction = check_reduction(fname, o.reduction)
  local weight = o.weight and check_broadcast_to(fname, "weight", o.weight, input:shape())
  local pos_weight = o.pos_weight and check_broadcast_to(fname, "pos_weight", o.pos_weight, input:shape())
  local x, y = input, target
  -- log(1 + exp(-x)) = m + log(exp(-m) + exp(-x - m)), m = max(-x, 0): no overflow
  local m = (-x):clamp(0, nil)
  local lse = ((-m):exp() + (-x - m):exp()):log()
  local loss
  if pos_weight then
    local lw = (pos_weight - 1) * y + 1
    loss = (1 - y) * x + lw * (lse + m)
  else
    loss = (1 - y) * x + m + lse
  end
  if weight then loss = loss * weight end
  return reduce(loss, reduction)
end

--------------------------------------------------------------- kl_div --

-- x * log(y) with 0 where x == 0 (NaN still propagates from y).
local function xlogy(x, y)
  local zero = x:eq(0)
  return kdx.where(zero, 0, x * kdx.where(zero, 1, y):log())
end

--- Kullback-Leibler divergence with PyTorch's argument order: `input` holds
-- log-probabilities, `target` probabilities (log-probabilities with
-- log_target), pointwise `target * (log target - input)` with 0 log 0 = 0.
-- opts: reduction = "mean" (over all elements; "batchmean" divides the sum by
-- the batch size, which is the KL divergence), "sum", "none"; log_target = false.
function F.kl_div(input, target, opts)
  local fname = "kl_div"
  check_pair(fname, input, target)
  local o = options(fname, opts, {reduction = "mean", log_target = false})
  local reduction = check_reduction(fname, o.reduction, "batchmean")
  local loss
  if o.log_target then
    loss = target:exp() * (target - input)
  else
    loss = xlogy(target, target) - target * input
  end
  if reduction == "batchmean" then
    if input:dim() == 0 then return loss:sum() end
    return loss:sum() / input:size(1)
  end
  return reduce(loss, reduction)
end

------------------------------------------------------------- similarity --

-- The shape a and b broadcast to, or nil.
local function broadcast_shape(a, b)
  local n = math.max(#a, #b)
  local out = {}
  for i = 1, n do
    local x, y = a[#a - n + i] or 1, b[#b - n + i] or 1
    if x ~= y and x ~= 1 and y ~= 1 then return nil end
    out[i] = x == 1 and y or x
  end
  return out
end

-- sqrt(max(sum(x^2), eps^2)) along dim: PyTorch clamps the squared norm in
-- place under no_grad, so the clamp is invisible to the gradient but the
-- square root's gradient, 1 / (2 norm), sees the clamped norm.
local function clamped_norm(x, dim, eps)
  local s = (x * x):sum(dim, true)
  local floor = eps * eps
  return kdx.where(s:lt(floor), (s - s:detach()) + floor, s):sqrt()
end

--- Cosine similarity of `a` and `b` along `dim` (default 2), after
-- broadcasting them: `sum(a/max(|a|, eps) * b/max(|b|, eps))`, eps = 1e-8.
function F.cosine_similarity(a, b, dim, eps)
  local fname = "cosine_similarity"
  check_float(fname, "a", a)
  check_float(fname, "b", b)
  eps = check_number(fname, "eps", eps == nil and 1e-8 or eps, 0)
  local shape = broadcast_shape(a:shape(), b:shape())
  if not shape then
    fail(fname, "shapes %s and %s do not broadcast", shape_str(a:shape()), shape_str(b:shape()))
  end
  dim = check_dim(fname, dim == nil and 2 or dim, #shape)
  if not same_shape(a:shape(), shape) then a = a:expand(shape) end
  if not same_shape(b:shape(), shape) then b = b:expand(shape) end
  return ((a / clamped_norm(a, dim, eps)) * (b / clamped_norm(b, dim, eps))):sum(dim)
end

--- `input / max(||input||_p, eps)` along `dim`. opts: p = 2 (any p > 0;
-- math.huge for the max norm), dim = 2, eps = 1e-12.
function F.normalize(input, opts)
  local fname = "normalize"
  check_float(fname, "input", input)
  local o = options(fname, opts, {p = 2, dim = 2, eps = 1e-12})
  local p = check_number(fname, "p", o.p, 0, nil, true)
  local dim = check_dim(fname, o.dim, input:dim())
  local eps = check_number(fname, "eps", o.eps, 0)
  local norm
  if p == 1 or p == 2 or p == math.huge then
    norm = input:norm(p, dim, true)
  else
    -- sum(|x|^p)^(1/p), kept finite in value and gradient for a zero slice
    local s = (input:abs() ^ p):sum(dim, true)
    local pos = s:gt(0)
    norm = kdx.where(pos, kdx.where(pos, s, 1) ^ (1 / p), 0)
  end
  return input / norm:clamp(eps, nil)
end

------------------------------------------------------------ passthroughs --

local function check_softmax_args(fname, input, dim, dtype)
  check_tensor(fname, "input", input)
  if dim == nil then fail(fname, "dim is required (PyTorch's implicit dim is deprecated)") end
  dim = check_dim(fname, dim, input:dim())
  if dtype ~= nil then input = input:to(dtype) end
  return input, dim
end

--- Softmax along `dim` (required), optionally after converting to `dtype`.
function F.softmax(input, dim, dtype)
  input, dim = check_softmax_args("softmax", input, dim, dtype)
  return kdx.softmax(input, dim)
end

--- Log-softmax along `dim` (required), optionally after converting to `dtype`.
function F.log_softmax(input, dim, dtype)
  input, dim = check_softmax_args("log_softmax", input, dim, dtype)
  return kdx.log_softmax(input, dim)
end

--- One-hot int64 encoding of 1-based class labels; `num_classes` = -1 (or
-- nil) takes the largest label.
function F.one_hot(labels, num_classes)
  if num_classes == nil or num_classes == -1 then return kdx.one_hot(labels) end
  return kdx.one_hot(labels, num_classes)
end

--- `input @ weight^T + bias` (bias optional), input [..., in], weight [out, in].
function F.linear(input, weight, bias)
  local fname = "linear"
  check_float(fname, "input", input)
  check_float(fname, "weight", weight)
  if weight:dim() ~= 2 then
    fail(fname, "weight must be 2-d [out_features, in_features], got shape %s", shape_str(weight:shape()))
  end
  if input:dim() == 0 or input:size(-1) ~= weight:size(2) then
    fail(fname, "input has shape %s but weight %s expects %d features in the last dim",
      shape_str(input:shape()), shape_str(weight:shape()), weight:size(2))
  end
  local y = kdx.matmul(input, weight:t())
  if bias ~= nil then y = y + check_float(fname, "bias", bias) end
  return y
end

--- `log(sigmoid(x))`, stably: `min(x, 0) - log1p(exp(-|x|))`.
function F.logsigmoid(input)
  check_float("logsigmoid", "input", input)
  -- one branch per sign (not min and abs, whose kinks would give the
  -- gradient 1 at 0 instead of 1/2); each sees only inputs where exp is finite
  local neg, pos = input:clamp(nil, 0), input:clamp(0, nil)
  return kdx.where(input:lt(0), neg - neg:exp():log1p(), -(-pos):exp():log1p())
end

--- SiLU (swish): `x * sigmoid(x)`.
function F.silu(input)
  check_float("silu", "input", input)
  return input * input:sigmoid()
end

--- Inverted dropout: zeroes each element with probability `p` (0.5) and scales
-- the rest by 1/(1-p) when `training` (default true, as PyTorch's F.dropout);
-- returns the input itself otherwise.
function F.dropout(input, p, training)
  p = p == nil and 0.5 or p
  if training == false or p == 0 then return input end
  return (kdx.dropout(input, p, true)) -- the output only, not the mask
end

--- `max(x, 0)`.
function F.relu(input) return kdx.relu(input) end
--- `x` where positive, else `negative_slope * x` (0.01).
function F.leaky_relu(input, negative_slope) return kdx.leaky_relu(input, negative_slope or 0.01) end
--- `x` where positive, else `alpha (exp(x) - 1)` (alpha = 1).
function F.elu(input, alpha) return kdx.elu(input, alpha or 1) end
--- Exact GELU, or the tanh approximation with approximate = "tanh".
function F.gelu(input, approximate) return kdx.gelu(input, approximate or "none") end
--- `log(1 + exp(beta x)) / beta`, linear above threshold (beta = 1, threshold = 20).
function F.softplus(input, beta, threshold) return kdx.softplus(input, beta or 1, threshold or 20) end
--- The logistic function.
function F.sigmoid(input) return kdx.sigmoid(input) end
--- Hyperbolic tangent.
function F.tanh(input) return kdx.tanh(input) end

-- The NN kernels under their torch.nn.functional names (see docs/tensor.md);
-- options come in tables as there.
--- kdx.conv2d(x, weight, bias, opts).
F.conv2d = kdx.conv2d
--- kdx.max_pool2d(x, k, opts): returns out, indices.
F.max_pool2d = kdx.max_pool2d
--- kdx.avg_pool2d(x, k, opts).
F.avg_pool2d = kdx.avg_pool2d
--- kdx.adaptive_avg_pool2d(x, size).
F.adaptive_avg_pool2d = kdx.adaptive_avg_pool2d
--- kdx.interpolate(x, opts).
F.interpolate = kdx.interpolate
--- kdx.pad(x, pads, opts).
F.pad = kdx.pad
--- kdx.embedding(idx, weight).
F.embedding = kdx.embedding
--- kdx.layer_norm(x, normalized_shape, weight, bias, eps).
F.layer_norm = kdx.layer_norm
--- kdx.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps).
F.batch_norm = kdx.batch_norm

return F
