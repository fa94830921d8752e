--- kdx.surrogate: readable models fitted to a teacher — a CART decision tree
-- and a sparse (L1) multinomial logistic regression — with their fidelity to
-- the teacher and their rules as text. The fits run in C
-- (csrc/surrogate_tree.c, csrc/surrogate_linear.c); this file checks
-- arguments, holds the fitted arrays and writes the rules.
-- @module kdx.surrogate

local kdx = require "kdx"
local core = require "kdx.core"
local args = require "kdx.args"

local M = {}

local fail = args.failer("kdx.surrogate.")

-- ------------------------------------------------------------- arguments --

local function check_keys(fname, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail(fname, "options must be a table, got %s", args.what(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then fail(fname, "unknown option %s", tostring(k)) end
  end
  return opts
end

local function int_opt(fname, opts, key, def, lo)
  local v = opts[key]
  if v == nil then return def end
  if type(v) ~= "number" or v ~= math.floor(v) or v ~= v then
    fail(fname, "%s must be an integer, got %s", key, type(v) == "number" and tostring(v) or args.what(v))
  end
  v = math.tointeger(v)
  if v == nil or v < lo then fail(fname, "%s must be >= %d, got %s", key, lo, tostring(opts[key])) end
  return v
end

local function num_opt(fname, opts, key, def, lo)
  local v = opts[key]
  if v == nil then return def end
  if type(v) ~= "number" or v ~= v or v == math.huge then
    fail(fname, "%s must be a finite number, got %s", key, args.what(v) == "number" and tostring(v) or args.what(v))
  end
  if v < lo then fail(fname, "%s must be >= %s, got %s", key, tostring(lo), tostring(v)) end
  return v
end

-- x as a float matrix [N, F]: a batch of more dims is flattened (images);
-- returns the matrix and the shape of one sample.
local function check_x(fname, x, n_features)
  if not kdx.is_tensor(x) then fail(fname, "x must be a tensor [N, F] (or a batch of images), got %s", args.what(x)) end
  if x:dtype() == "int64" then fail(fname, "x must be float32 or float64, got int64") end
  if x:dim() < 2 then fail(fname, "x must be [N, F] (or a batch [N, ...]), got %d dims", x:dim()) end
  local shape = x:shape()
  local sample = {table.unpack(shape, 2)}
  local f = 1
  for _, s in ipairs(sample) do f = f * s end
  if n_features and f ~= n_features then
    fail(fname, "x has %d features a sample, the model was fitted on %d", f, n_features)
  end
  if x:dim() > 2 then x = x:reshape{shape[1], f} end
  return x, sample
end

-- Targets: hard labels (a table or int64 tensor of 1-based classes [N]) or
-- soft labels (float probabilities [N, C]).
local function check_targets(fname, y, n)
  if type(y) == "table" then
    for i, v in ipairs(y) do
      if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
        fail(fname, "class labels must be integers, got %s at %d", tostring(v), i)
      end
    end
    y = kdx.tensor(y, "int64")
  end
  if not kdx.is_tensor(y) then
    fail(fname, "targets must be 1-based classes (int64 [N] or a table) or probabilities (float [N, C]), got %s",
      args.what(y))
  end
  if y:dtype() == "int64" then
    if y:dim() ~= 1 then fail(fname, "hard labels must be int64 [N], got %d dims", y:dim()) end
    if y:size(1) ~= n then fail(fname, "targets have %d entries but x has %d rows", y:size(1), n) end
    if n > 0 and y:min():item() < 1 then fail(fname, "class labels must be >= 1 (1-based), got %d", y:min():item()) end
  else
    if y:dim() ~= 2 then fail(fname, "soft targets must be float [N, C] probabilities, got %d dims", y:dim()) end
    if y:size(1) ~= n then fail(fname, "targets have %d rows but x has %d", y:size(1), n) end
  end
  return y
end

local function check_weight(fname, w, n)
  if w == nil then return nil end
  if type(w) == "table" then w = kdx.tensor(w, "float64") end
  if not kdx.is_tensor(w) or w:dtype() == "int64" or w:dim() ~= 1 or w:size(1) ~= n then
    fail(fname, "sample_weight must be a float tensor [N] (or a table) with N = %d", n)
  end
  return w
end

-- The teacher's classes on x: from a model or function (called on x), from
-- its outputs [N, C] (argmax) or from its labels (int64 [N] or a table).
local function teacher_classes(fname, teacher, x, n)
  local out = teacher
  local callable = type(teacher) == "function" or (type(teacher) == "table" and getmetatable(teacher) and
    getmetatable(teacher).__call)
  if callable then out = kdx.no_grad(function() return teacher(x) end) end
  if type(out) == "table" then out = kdx.tensor(out, "int64") end
  if not kdx.is_tensor(out) then
    fail(fname, "teacher must be a model, a function, its outputs [N, C] or its classes [N], got %s", args.what(out))
  end
  if out:dtype() ~= "int64" then
    if out:dim() ~= 2 then fail(fname, "the teacher's outputs must be [N, C], got %d dims", out:dim()) end
    out = out:argmax(2)
  elseif out:dim() ~= 1 then
    fail(fname, "the teacher's classes must be int64 [N], got %d dims", out:dim())
  end
  if out:size(1) ~= n then fail(fname, "the teacher gives %d rows for %d samples", out:size(1), n) end
  return out
end

-- Fraction of rows where two int64 [N] class vectors agree.
local function agreement(a, b)
  return a:eq(b):double():mean():item()
end

-- ------------------------------------------------------------------ names --

-- Feature names for rules: given names, pixel positions of images, or "x[j]".
local function feature_namer(fname, opts, n_features, sample_shape)
  local names = opts.feature_names
  if names ~= nil then
    if type(names) ~= "table" or #names ~= n_features then
      fail(fname, "feature_names must be a table of %d names", n_features)
    end
    return function(j) return tostring(names[j]) end
  end
  local shape = opts.image_shape
  if shape == nil and sample_shape and #sample_shape >= 2 then shape = sample_shape end
  if shape ~= nil then
    if type(shape) ~= "table" or #shape < 2 or #shape > 3 then
      fail(fname, "image_shape must be {H, W} or {C, H, W}")
    end
    local size = 1
    for _, s in ipairs(shape) do size = size * s end
    if size ~= n_features then
      fail(fname, "image_shape {%s} holds %d pixels, the model has %d features", table.concat(shape, ", "), size,
        n_features)
    end
    local h, w = shape[#shape - 1], shape[#shape]
    return function(j)
      local k = j - 1
      local c, r, col = k // (h * w), (k % (h * w)) // w, k % w
      if #shape == 3 and shape[1] > 1 then return ("pixel (%d,%d,%d)"):format(c + 1, r + 1, col + 1) end
      return ("pixel (%d,%d)"):format(r + 1, col + 1)
    end
  end
  return function(j) return ("x[%d]"):format(j) end
end

local function class_namer(fname, opts, n_classes)
  local names = opts.class_names
  if names ~= nil then
    if type(names) ~= "table" or #names ~= n_classes then
      fail(fname, "class_names must be a table of %d names", n_classes)
    end
    return function(k) return tostring(names[k]) end
  end
  return function(k) return tostring(k) end
end

local RULE_OPTS = {feature_names = true, class_names = true, image_shape = true, precision = true}

-- ------------------------------------------------------------------- tree --

local Tree = {}
Tree.__index = Tree
Tree.__name = "kdx.surrogate.Tree"

local TREE_OPTS = {max_depth = true, min_samples_split = true, min_samples_leaf = true, criterion = true,
  max_features = true, seed = true, n_classes = true}

-- n_classes for the engine (0: inferred), checked against soft targets.
local function classes_for(fname, self, targets)
  local c = self.n_classes_opt
  if c and targets:dim() == 2 and targets:size(2) ~= c then
    fail(fname, "soft targets have %d classes but n_classes is %d", targets:size(2), c)
  end
  if c and targets:dim() == 1 and targets:max():item() > c then
    fail(fname, "class label %d is larger than n_classes = %d", targets:max():item(), c)
  end
  return c or 0
end

--- A CART classification tree (not yet fitted). Options: max_depth (nil:
-- unlimited), min_samples_split (2), min_samples_leaf (1), criterion
-- ("gini" or "entropy"), max_features (nil: all), seed (0; used only with
-- max_features), n_classes (nil: the largest label, or the soft targets' columns).
function M.tree(opts)
  local fname = "tree"
  opts = check_keys(fname, opts, TREE_OPTS)
  local self = setmetatable({}, Tree)
  self.n_classes_opt = int_opt(fname, opts, "n_classes", nil, 1)
  self.max_depth = int_opt(fname, opts, "max_depth", nil, 0)
  self.min_samples_split = int_opt(fname, opts, "min_samples_split", 2, 2)
  self.min_samples_leaf = int_opt(fname, opts, "min_samples_leaf", 1, 1)
  self.max_features = int_opt(fname, opts, "max_features", nil, 1)
  self.seed = int_opt(fname, opts, "seed", 0, 0)
  local c = opts.criterion or "gini"
  if c ~= "gini" and c ~= "entropy" then
    fail(fname, "criterion must be \"gini\" or \"entropy\", got %s", type(c) == "string" and ('"' .. c .. '"') or
      args.what(c))
  end
  self.criterion = c
  return self
end

local function check_fitted(self, fname)
  if getmetatable(self) ~= Tree then fail(fname, "call it as a method: tree:%s(...)", fname:match(":(.*)$")) end
  if not self.arrays then fail(fname, "the tree is not fitted yet (call tree:fit(x, targets))") end
end

-- The arrays as Lua tables (1-based node ids and features; nil at leaves).
local function tree_tables(self)
  local a = self.arrays
  local feature, left, right = a.feature:totable(), a.left:totable(), a.right:totable()
  local t = {feature = {}, threshold = a.threshold:totable(), left = {}, right = {}, value = a.value:totable(),
    impurity = a.impurity:totable(), n_samples = a.n_samples:totable(), weighted_n = a.weighted_n:totable()}
  for j = 1, #feature do
    if left[j] >= 0 then
      t.feature[j], t.left[j], t.right[j] = feature[j] + 1, left[j] + 1, right[j] + 1
    end
  end
  t.n_nodes = #feature
  return t
end

local ARRAYS = {"feature", "threshold", "left", "right", "value", "impurity", "n_samples", "weighted_n"}

local function set_arrays(self, list)
  self.arrays = {}
  for i, name in ipairs(ARRAYS) do self.arrays[name] = list[i] end
  self.n_classes = list[5]:size(2)
  self.nodes = tree_tables(self)
end

--- Fits the tree to x [N, F] (or [N, ...], flattened) and targets: 1-based
-- classes (int64 [N] or a table) or probabilities float [N, C] (soft labels,
-- e.g. a teacher's softmax); sample_weight (optional) float [N]. Returns self.
function Tree:fit(x, targets, sample_weight)
  local fname = "tree:fit"
  if getmetatable(self) ~= Tree then fail(fname, "call it as a method: tree:fit(x, targets)") end
  local sample
  x, sample = check_x(fname, x)
  local n = x:size(1)
  targets = check_targets(fname, targets, n)
  sample_weight = check_weight(fname, sample_weight, n)
  if self.max_features and self.max_features > x:size(2) then
    fail(fname, "max_features is %d but x has only %d features", self.max_features, x:size(2))
  end
  local nc = classes_for(fname, self, targets)
  set_arrays(self, {core._tree_fit(x, targets, sample_weight, nc, self.max_depth or -1, self.min_samples_split,
    self.min_samples_leaf, self.max_features or 0, self.criterion, self.seed)})
  self.n_features, self.sample_shape = x:size(2), sample
  return self
end

--- The leaf (a 1-based node id) each row of x ends in: int64 [N].
function Tree:apply(x)
  local fname = "tree:apply"
  check_fitted(self, fname)
  x = check_x(fname, x, self.n_features)
  local a = self.arrays
  return core._tree_apply(a.feature, a.threshold, a.left, a.right, x)
end

--- Class probabilities float64 [N, C]: the class distribution of each row's leaf.
function Tree:predict_proba(x)
  check_fitted(self, "tree:predict_proba")
  return self.arrays.value:index_select(1, self:apply(x))
end

--- Predicted 1-based classes int64 [N] (the most probable; the first on a tie).
function Tree:predict(x)
  check_fitted(self, "tree:predict")
  return self:predict_proba(x):argmax(2)
end

--- Fidelity to the teacher on (held-out) x: the fraction of rows where the
-- tree's class is the teacher's. teacher: a model or function (called on x),
-- its outputs [N, C], or its classes (int64 [N] or a table).
function Tree:fidelity(x, teacher)
  local fname = "tree:fidelity"
  check_fitted(self, fname)
  local pred = self:predict(x)
  return agreement(pred, teacher_classes(fname, teacher, x, pred:size(1)))
end

--- Depth of the tree (a lone root has depth 0).
function Tree:depth()
  check_fitted(self, "tree:depth")
  local t, best = self.nodes, 0
  local function walk(j, d)
    if d > best then best = d end
    if t.left[j] then
      walk(t.left[j], d + 1)
      walk(t.right[j], d + 1)
    end
  end
  walk(1, 0)
  return best
end

--- Number of leaves.
function Tree:n_leaves()
  check_fitted(self, "tree:n_leaves")
  local n = 0
  for j = 1, self.nodes.n_nodes do
    if not self.nodes.left[j] then n = n + 1 end
  end
  return n
end

--- Number of nodes (inner nodes and leaves).
function Tree:n_nodes()
  check_fitted(self, "tree:n_nodes")
  return self.nodes.n_nodes
end

--- Impurity-based feature importances float64 [F] (as scikit-learn's
-- feature_importances_: each split's weighted impurity decrease, summed per
-- feature, normalised to sum 1; all zero for a lone leaf).
function Tree:feature_importances()
  check_fitted(self, "tree:feature_importances")
  local t = self.nodes
  local imp = {}
  for f = 1, self.n_features do imp[f] = 0 end
  for j = 1, t.n_nodes do
    local l, r = t.left[j], t.right[j]
    if l then
      local f = t.feature[j]
      imp[f] = imp[f] + t.weighted_n[j] * t.impurity[j] - t.weighted_n[l] * t.impurity[l] -
        t.weighted_n[r] * t.impurity[r]
    end
  end
  local s = 0
  for f = 1, #imp do s = s + imp[f] end
  if s > 0 then
    for f = 1, #imp do imp[f] = imp[f] / s end
  end
  return kdx.tensor(imp, "float64")
end

local function fmt_num(v, precision)
  local s = ("%." .. precision .. "f"):format(v)
  if s:find("%.") then s = s:gsub("0+$", ""):gsub("%.$", "") end
  if s == "-0" then s = "0" end
  return s
end

local function argmax(v)
  local best = 1
  for k = 2, #v do
    if v[k] > v[best] then best = k end
  end
  return best
end

--- The tree as if-then rules: returns the text (nested if/else, one line a
-- test, each leaf "predict <class>" with its probability and sample count)
-- and a list with one rule a leaf: {conditions = {{feature=, name=, op="<="|">",
-- threshold=}}, class=, class_name=, proba=, n_samples=, leaf=}. Options:
-- feature_names, image_shape ({H, W} or {C, H, W}: names "pixel (r,c)"),
-- class_names, precision (decimals shown, 3).
function Tree:rules(opts)
  local fname = "tree:rules"
  check_fitted(self, fname)
  opts = check_keys(fname, opts, RULE_OPTS)
  local precision = int_opt(fname, opts, "precision", 3, 0)
  local fnm = feature_namer(fname, opts, self.n_features, self.sample_shape)
  local cnm = class_namer(fname, opts, self.n_classes)
  local t, lines, list = self.nodes, {}, {}
  local function walk(j, indent, conds)
    local pad = string.rep("  ", indent)
    if not t.left[j] then
      local k = argmax(t.value[j])
      lines[#lines + 1] = ("%spredict %s  (p = %s, %d samples)"):format(pad, cnm(k), fmt_num(t.value[j][k], precision),
        t.n_samples[j])
      local c = {}
      for i, v in ipairs(conds) do c[i] = v end
      list[#list + 1] = {conditions = c, class = k, class_name = cnm(k), proba = t.value[j], n_samples = t.n_samples[j],
        leaf = j}
      return
    end
    local f, th = t.feature[j], t.threshold[j]
    local name, ths = fnm(f), fmt_num(th, precision)
    lines[#lines + 1] = ("%sif %s <= %s then"):format(pad, name, ths)
    conds[#conds + 1] = {feature = f, name = name, op = "<=", threshold = th}
    walk(t.left[j], indent + 1, conds)
    conds[#conds] = {feature = f, name = name, op = ">", threshold = th}
    lines[#lines + 1] = ("%selse  -- %s > %s"):format(pad, name, ths)
    walk(t.right[j], indent + 1, conds)
    conds[#conds] = nil
    lines[#lines + 1] = pad .. "end"
  end
  walk(1, 0, {})
  return table.concat(lines, "\n") .. "\n", list
end

--- Saves the fitted tree to a safetensors file (its arrays and options).
function Tree:save(path)
  local fname = "tree:save"
  check_fitted(self, fname)
  if type(path) ~= "string" then fail(fname, "path must be a string, got %s", args.what(path)) end
  local shape = {}
  for i, s in ipairs(self.sample_shape) do shape[i] = tostring(s) end
  kdx.save(path, self.arrays, {kind = "kdx.surrogate.tree", criterion = self.criterion,
    sample_shape = table.concat(shape, ","), max_depth = tostring(self.max_depth or -1),
    min_samples_split = tostring(self.min_samples_split), min_samples_leaf = tostring(self.min_samples_leaf)})
end

-- ----------------------------------------------------------------- linear --

local Linear = {}
Linear.__index = Linear
Linear.__name = "kdx.surrogate.Linear"

local LINEAR_OPTS = {l1 = true, max_iter = true, tol = true, fit_intercept = true, n_classes = true}

--- A sparse multinomial logistic regression (not yet fitted). Options: l1
-- (0.01; the penalty on sum |W|), max_iter (1000), tol (1e-6; on the
-- gradient mapping's largest entry), fit_intercept (true), n_classes (as kdx.surrogate.tree).
function M.linear(opts)
  local fname = "linear"
  opts = check_keys(fname, opts, LINEAR_OPTS)
  local self = setmetatable({}, Linear)
  self.n_classes_opt = int_opt(fname, opts, "n_classes", nil, 1)
  self.l1 = num_opt(fname, opts, "l1", 0.01, 0)
  self.max_iter = int_opt(fname, opts, "max_iter", 1000, 1)
  self.tol = num_opt(fname, opts, "tol", 1e-6, 0)
  local fi = opts.fit_intercept
  if fi ~= nil and type(fi) ~= "boolean" then fail(fname, "fit_intercept must be a boolean, got %s", args.what(fi)) end
  self.fit_intercept = fi ~= false
  return self
end

local function check_lfitted(self, fname)
  if getmetatable(self) ~= Linear then fail(fname, "call it as a method: lin:%s(...)", fname:match(":(.*)$")) end
  if not self.coef then fail(fname, "the model is not fitted yet (call lin:fit(x, targets))") end
end

--- Fits to x [N, F] (or [N, ...], flattened) and targets (hard or soft, as
-- Tree:fit), minimising sum_i w_i CE_i / sum_i w_i + l1 * sum |W| by FISTA
-- in float64. Sets coef float64 [C, F], intercept [C], n_iter. Returns self.
function Linear:fit(x, targets, sample_weight)
  local fname = "linear:fit"
  if getmetatable(self) ~= Linear then fail(fname, "call it as a method: lin:fit(x, targets)") end
  local sample
  x, sample = check_x(fname, x)
  local n = x:size(1)
  targets = check_targets(fname, targets, n)
  sample_weight = check_weight(fname, sample_weight, n)
  local nc = classes_for(fname, self, targets)
  self.coef, self.intercept, self.n_iter = core._linear_fit(x, targets, sample_weight, nc, self.l1, self.max_iter,
    self.tol, self.fit_intercept)
  self.n_features, self.n_classes, self.sample_shape = x:size(2), self.coef:size(1), sample
  self.converged = self.n_iter < self.max_iter
  return self
end

--- The objective at the fitted coefficients for x and targets:
-- sum_i w_i CE(t_i, softmax(W x_i + b)) / sum_i w_i + l1 * sum |W|.
function Linear:objective(x, targets, sample_weight)
  local fname = "linear:objective"
  check_lfitted(self, fname)
  x = check_x(fname, x, self.n_features)
  local n = x:size(1)
  targets = check_targets(fname, targets, n)
  if targets:dim() == 2 and targets:size(2) ~= self.n_classes then
    fail(fname, "targets have %d classes, the model %d", targets:size(2), self.n_classes)
  end
  return core._linear_objective(x, targets, check_weight(fname, sample_weight, n), self.coef, self.intercept, self.l1)
end

--- The logits W x + b, float64 [N, C].
function Linear:decision_function(x)
  local fname = "linear:decision_function"
  check_lfitted(self, fname)
  x = check_x(fname, x, self.n_features)
  return kdx.matmul(x:double(), self.coef:transpose(1, 2)) + self.intercept
end

--- Class probabilities softmax(W x + b), float64 [N, C].
function Linear:predict_proba(x)
  check_lfitted(self, "linear:predict_proba")
  return kdx.softmax(self:decision_function(x), 2)
end

--- Predicted 1-based classes int64 [N].
function Linear:predict(x)
  check_lfitted(self, "linear:predict")
  return self:decision_function(x):argmax(2)
end

--- Fidelity to the teacher on (held-out) x (as Tree:fidelity).
function Linear:fidelity(x, teacher)
  local fname = "linear:fidelity"
  check_lfitted(self, fname)
  local pred = self:predict(x)
  return agreement(pred, teacher_classes(fname, teacher, x, pred:size(1)))
end

--- Fraction of the coefficients (W, not the intercept) that are exactly zero.
function Linear:sparsity()
  check_lfitted(self, "linear:sparsity")
  return self.coef:eq(0):double():mean():item()
end

--- The model as text, one line a class: "class <name>: +1.23 * <feature>
-- - 0.4 * <feature> ... + <intercept>", nonzero weights sorted by |w|
-- (largest first); and a list {class=, class_name=, intercept=, terms =
-- {{feature=, name=, weight=}}}. Options as Tree:rules.
function Linear:rules(opts)
  local fname = "linear:rules"
  check_lfitted(self, fname)
  opts = check_keys(fname, opts, RULE_OPTS)
  local precision = int_opt(fname, opts, "precision", 3, 0)
  local fnm = feature_namer(fname, opts, self.n_features, self.sample_shape)
  local cnm = class_namer(fname, opts, self.n_classes)
  local W, b = self.coef:totable(), self.intercept:totable()
  local lines, list = {}, {}
  for k = 1, self.n_classes do
    local terms = {}
    for f, w in ipairs(W[k]) do
      if w ~= 0 then terms[#terms + 1] = {feature = f, name = fnm(f), weight = w} end
    end
    table.sort(terms, function(p, q)
      if math.abs(p.weight) ~= math.abs(q.weight) then return math.abs(p.weight) > math.abs(q.weight) end
      return p.feature < q.feature
    end)
    local parts = {}
    for i, tm in ipairs(terms) do
      local sign = tm.weight < 0 and "-" or "+"
      parts[#parts + 1] = (i == 1 and (tm.weight < 0 and "-" or "+") or sign .. " ") ..
        fmt_num(math.abs(tm.weight), precision) .. " * " .. tm.name
    end
    parts[#parts + 1] = (#parts == 0 and "" or (b[k] < 0 and "- " or "+ ")) ..
      (#parts == 0 and fmt_num(b[k], precision) or fmt_num(math.abs(b[k]), precision)) .. " (intercept)"
    lines[#lines + 1] = ("class %s: %s"):format(cnm(k), table.concat(parts, " "))
    list[#list + 1] = {class = k, class_name = cnm(k), intercept = b[k], terms = terms}
  end
  return table.concat(lines, "\n") .. "\n", list
end

--- Saves the fitted model to a safetensors file (coef, intercept, options).
function Linear:save(path)
  local fname = "linear:save"
  check_lfitted(self, fname)
  if type(path) ~= "string" then fail(fname, "path must be a string, got %s", args.what(path)) end
  local shape = {}
  for i, s in ipairs(self.sample_shape) do shape[i] = tostring(s) end
  kdx.save(path, {coef = self.coef, intercept = self.intercept}, {kind = "kdx.surrogate.linear",
    l1 = ("%.17g"):format(self.l1), sample_shape = table.concat(shape, ","),
    fit_intercept = tostring(self.fit_intercept)})
end

-- ------------------------------------------------------------------- load --

local function parse_shape(s)
  local t = {}
  for v in (s or ""):gmatch("[^,]+") do t[#t + 1] = math.tointeger(tonumber(v)) end
  return t
end

--- Loads a tree or a linear model saved with :save(path).
function M.load(path)
  local fname = "load"
  if type(path) ~= "string" then fail(fname, "path must be a string, got %s", args.what(path)) end
  local tensors, meta = kdx.load(path)
  meta = meta or {}
  if meta.kind == "kdx.surrogate.tree" then
    local self = M.tree{criterion = meta.criterion}
    local list = {}
    for i, name in ipairs(ARRAYS) do
      if not tensors[name] then fail(fname, "%s holds no %s array", path, name) end
      list[i] = tensors[name]
    end
    local md = math.tointeger(tonumber(meta.max_depth))
    self.max_depth = md and md >= 0 and md or nil
    self.min_samples_split = math.tointeger(tonumber(meta.min_samples_split)) or 2
    self.min_samples_leaf = math.tointeger(tonumber(meta.min_samples_leaf)) or 1
    set_arrays(self, list)
    self.sample_shape = parse_shape(meta.sample_shape)
    local f = 1
    for _, s in ipairs(self.sample_shape) do f = f * s end
    self.n_features = f
    return self
  elseif meta.kind == "kdx.surrogate.linear" then
    if not tensors.coef or not tensors.intercept then fail(fname, "%s holds no coef or intercept", path) end
    local self = M.linear{l1 = tonumber(meta.l1) or 0, fit_intercept = meta.fit_intercept ~= "false"}
    self.coef, self.intercept = tensors.coef, tensors.intercept
    self.n_features, self.n_classes = self.coef:size(2), self.coef:size(1)
    self.sample_shape = parse_shape(meta.sample_shape)
    return self
  end
  fail(fname, "%s is not a saved surrogate model (no kind in its metadata)", path)
end

M.Tree, M.Linear = Tree, Linear

return M
