--- kdx.explain global methods for tabular data X [N, M]: permutation
-- importance, partial dependence and ICE curves, Friedman's H-statistic,
-- global importance as mean |attribution|, and feature selection by
-- importance. The model runs on permuted or grid data in C
-- (csrc/attr_global.c), at most opts.batch_size rows per call.
-- @module kdx.explain.global

local kdx = require "kdx"
local core = require("kdx.explain.common").core
local common = require "kdx.explain.common"
local args = require "kdx.args"

local fail, prepare, int, num = common.fail, common.prepare, common.int, common.num

local M = {}

local METRICS = {accuracy = true, neg_log_loss = true, neg_mean_squared_error = true}

local function check_table(fname, X)
  if X:dim() ~= 2 then fail(fname, "X must be a table [N, features], got %dd", X:dim()) end
  return X:shape()[2]
end

-- A feature index in [1, n], or an error naming fname.
local function feature(fname, v, n, what)
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    fail(fname, "%s must be an integer feature index, got %s", what, type(v) == "number" and tostring(v) or args.what(v))
  end
  v = math.tointeger(v)
  if v < 1 or v > n then fail(fname, "%s %d out of range [1, %d]", what, v, n) end
  return v
end

-- opts.distributed: nil/false (one process) or true (split across the
-- kdx.dist ranks); anything else is an error naming fname.
local function distributed(fname, o)
  local d = o.distributed
  if d ~= nil and type(d) ~= "boolean" then fail(fname, "distributed must be true or false, got %s", args.what(d)) end
  return d == true
end

-- X's row count, at least one per rank for distributed = true.
local function rows_per_rank(fname, X)
  local n, size = X:shape()[1], kdx.dist.size()
  if n < size then fail(fname, "distributed = true needs at least one row per rank: %d rows, %d ranks", n, size) end
  return n
end

-- Rows first .. first + count - 1 of a per-sample value v of n rows (a
-- tensor with n rows, or a list of n entries); anything else as it is.
local function block_of(v, n, first, count, per_sample)
  if kdx.is_tensor(v) and per_sample(v) and v:dim() >= 1 and v:shape()[1] == n then return v:narrow(1, first, count) end
  if type(v) == "table" and not kdx.is_tensor(v) and #v == n and per_sample(v) then
    return table.move(v, first, first + count - 1, 1, {})
  end
  return v
end

-- permutation_importance over the ranks: features (a list, or the count of
-- X's columns for all) split in contiguous blocks, every rank scoring X
-- unshuffled; each feature's stream depends only on (seed, feature), so the
-- gathered rows equal the one-process ones. The seed is rank 0's.
local function distributed_permutation(m, X, y, metric, features, repeats, seed, bs)
  local dist = kdx.dist
  seed = dist.broadcast(kdx.tensor({seed}, "int64"), 0):get(1)
  local list = features
  if type(list) == "number" then
    list = {}
    for j = 1, features do list[j] = j end
  end
  local first, count = dist.block(#list)
  local imp, base = dist.pcall_all("kdx.dist", function()
    if count == 0 then return kdx.zeros({0, repeats}, "float64"), 0 end -- this rank has no feature: nothing to send
    return core._permutation_importance(m, X, y, metric, table.move(list, first, first + count - 1, 1, {}), repeats,
      seed, bs)
  end)
  imp = dist.allgather(imp)
  -- the last rank always has a feature, so its unshuffled score is the score
  base = dist.broadcast(kdx.tensor({base}, "float64"), dist.size() - 1):get(1)
  return imp, base
end

--- Permutation importance (Breiman 2001; as sklearn.inspection.permutation_importance):
-- the drop of opts.metric (accuracy (default), neg_log_loss of the outputs as
-- logits, neg_mean_squared_error, or function(output, y) -> number, higher is
-- better) when one column of X is shuffled, opts.repeats = 5 times per
-- feature (opts.features, default all; 1-based), shuffles from opts.seed.
-- opts.y: labels (1-based classes for accuracy and neg_log_loss). Each
-- feature's shuffles come from its own stream (seeded from the seed and the
-- feature index). opts.distributed = true splits the features across the
-- kdx.dist ranks and gathers their rows: the same result as on one process.
-- Returns importances_mean [F], importances_std [F], importances [F, repeats]
-- and the unshuffled score.
function M.permutation_importance(model, X, opts)
  local fname = "permutation_importance"
  local m, target, o = prepare(fname, model, X, opts)
  if target ~= nil then
    fail(fname, "the metric scores the whole output: give target as a function of the output, or none")
  end
  local nf = check_table(fname, X)
  local metric = o.metric or "accuracy"
  if type(metric) ~= "function" and not METRICS[metric] then
    fail(fname, "metric must be accuracy, neg_log_loss, neg_mean_squared_error or a function, got %s", tostring(metric))
  end
  if o.y == nil and type(metric) ~= "function" then fail(fname, "give the labels opts.y for metric %s", metric) end
  local features = o.features
  if features ~= nil then
    if type(features) ~= "table" then fail(fname, "features must be a table of feature indices, got %s", args.what(features)) end
    for i, j in ipairs(features) do feature(fname, j, nf, "features[" .. i .. "]") end
  end
  local repeats = int(fname, o, "repeats", 5, 1)
  local seed, bs = common.seed(fname, o), int(fname, o, "batch_size", 256, 1)
  local imp, base
  if distributed(fname, o) then
    imp, base = distributed_permutation(m, X, o.y, metric, features or nf, repeats, seed, bs)
  else
    imp, base = core._permutation_importance(m, X, o.y, metric, features, repeats, seed, bs)
  end
  local mean = imp:mean(2)
  local dev = imp - mean:reshape{imp:shape()[1], 1}
  local std = (dev * dev):mean(2):sqrt() -- population std, as numpy's default
  return mean, std, imp, base
end

--- Partial dependence and ICE curves (Friedman 2001; Goldstein et al. 2015;
-- as sklearn.inspection.partial_dependence with method="brute"): the model's
-- target output with opts.features = {j} or {j, k} (1-based) set to each grid
-- value, for every row of X. The grid per feature: its unique values if fewer
-- than opts.grid_resolution = 100, else that many points evenly between the
-- opts.percentiles = {0.05, 0.95} quantiles, unless opts.grid = {g1[, g2]}
-- gives it (1-d tensors or lists of numbers, as sklearn's custom_values; an
-- absent entry is built from X). opts.kind = "average" (default),
-- "individual" or "both". opts.distributed = true splits X's rows across the
-- kdx.dist ranks (the grid still from the whole X; the average is the
-- all-reduced row sums over N). Returns {grid = {g1[, g2]}, average = [G] or
-- [G1, G2], individual = [N, G] or [N, G1, G2]}.
function M.partial_dependence(model, X, opts)
  local fname = "partial_dependence"
  local m, target, o = prepare(fname, model, X, opts)
  local nf = check_table(fname, X)
  local features = o.features
  if type(features) == "number" then features = {features} end
  if type(features) ~= "table" or #features < 1 or #features > 2 then
    fail(fname, "features must be {j} or {j, k}, got %s", args.what(o.features))
  end
  for i, j in ipairs(features) do feature(fname, j, nf, "features[" .. i .. "]") end
  local kind = o.kind or "average"
  if kind ~= "average" and kind ~= "individual" and kind ~= "both" then
    fail(fname, "kind must be average, individual or both, got %s", tostring(kind))
  end
  local pct = o.percentiles or {0.05, 0.95}
  if type(pct) ~= "table" or type(pct[1]) ~= "number" or type(pct[2]) ~= "number" then
    fail(fname, "percentiles must be a pair of numbers {lo, hi}")
  end
  local grid = o.grid
  if grid ~= nil then
    if type(grid) ~= "table" or kdx.is_tensor(grid) then
      fail(fname, "grid must be a table {g1[, g2]} of 1-d tensors or lists, got %s", args.what(grid))
    end
    for t = 1, 2 do
      local g = grid[t]
      if g ~= nil and not kdx.is_tensor(g) and type(g) ~= "table" then
        fail(fname, "grid[%d] must be a 1-d tensor or a list of numbers, got %s", t, args.what(g))
      end
    end
  end
  local res_n, bs = int(fname, o, "grid_resolution", 100, 2), int(fname, o, "batch_size", 256, 1)
  local g1, g2, avg, ind
  if distributed(fname, o) then
    local dist = kdx.dist
    local n = rows_per_rank(fname, X)
    -- the grid of the whole X, the same on every rank (no message needed)
    local given = {}
    for t = 1, #features do
      given[t] = grid and grid[t] or core._pd_grid(X, features[t], res_n, pct[1], pct[2])
    end
    local first, count = dist.block(n)
    local tgt = block_of(target, n, first, count, function() return true end)
    local _
    g1, g2, _, ind = dist.pcall_all("kdx.dist", core._partial_dependence, m, X:narrow(1, first, count), features,
      res_n, pct[1], pct[2], tgt, bs, given)
    avg = dist.allreduce(ind:sum(1):contiguous(), "sum") / n
    if kind ~= "average" then ind = dist.allgather(ind) end
  else
    g1, g2, avg, ind = core._partial_dependence(m, X, features, res_n, pct[1], pct[2], target, bs, grid)
  end
  local res = {grid = {g1, g2}}
  if kind ~= "individual" then res.average = avg end
  if kind ~= "average" then res.individual = ind end
  return res
end

--- Friedman's H-statistic H^2 (Friedman & Popescu 2008) of feature pairs:
-- sum_i [PD_jk(x_i) - PD_j(x_i) - PD_k(x_i)]^2 / sum_i PD_jk(x_i)^2 with the
-- partial dependences mean-centred and evaluated at the data points. It costs
-- samples^2 model rows per feature and per pair: opts.samples = 200 caps the
-- rows used (a random subset from opts.seed when N is larger). opts.pairs:
-- {{j, k}, ...} (1-based; default all pairs j < k). Single-process only:
-- distributed = true is refused. Returns H^2 [P] and the pairs.
function M.h_statistic(model, X, opts)
  local fname = "h_statistic"
  local m, target, o = prepare(fname, model, X, opts)
  if distributed(fname, o) then
    fail(fname, "distributed = true is not supported: it runs on one process (it costs samples^2 rows, not N)")
  end
  local nf = check_table(fname, X)
  local pairs, flat = o.pairs, {}
  if pairs == nil then
    pairs = {}
    for j = 1, nf do for k = j + 1, nf do pairs[#pairs + 1] = {j, k} end end
    if #pairs == 0 then fail(fname, "X has one feature: no pairs") end
  elseif type(pairs) ~= "table" or #pairs == 0 then
    fail(fname, "pairs must be a non-empty table of {j, k}, got %s", args.what(pairs))
  end
  for q, p in ipairs(pairs) do
    if type(p) ~= "table" or #p ~= 2 then fail(fname, "pairs[%d] must be {j, k}", q) end
    local j, k = feature(fname, p[1], nf, "pairs[" .. q .. "][1]"), feature(fname, p[2], nf, "pairs[" .. q .. "][2]")
    if j == k then fail(fname, "pairs[%d] names feature %d twice", q, j) end
    flat[#flat + 1], flat[#flat + 2] = j, k
  end
  local h2 = core._h_statistic(m, X, flat, int(fname, o, "samples", 200, 2), common.seed(fname, o), target,
    int(fname, o, "batch_size", 256, 1))
  return h2, pairs
end

--- Global importance: the mean over X's samples of |attribution| per
-- feature, with method a kdx.explain method name ("occlusion", "saliency",
-- ...) or a function(model, X, opts) -> attributions of X's shape; opts go to
-- the method. opts.distributed = true splits X's rows across the kdx.dist
-- ranks (per-sample options split alike: a target of N entries, and tensors
-- of X's rank with N rows) and gathers the attributions, so every rank gets
-- the one-process result (for methods that explain each sample on its own).
-- Returns a tensor of one sample's shape.
function M.global_importance(method, model, X, opts)
  local fname = "global_importance"
  local fn = method
  if type(method) == "string" then
    fn = require("kdx.explain")[method]
    if type(fn) ~= "function" or method == "global_importance" or method == "select_features" then
      fail(fname, "unknown method %q", method)
    end
  elseif type(method) ~= "function" then
    fail(fname, "method must be a kdx.explain method name or a function, got %s", args.what(method))
  end
  if not kdx.is_tensor(X) or X:dim() < 1 then fail(fname, "X must be a tensor batch [N, ...], got %s", args.what(X)) end
  opts = opts or {}
  if type(opts) ~= "table" then fail(fname, "options must be a table, got %s", args.what(opts)) end
  local attr
  if distributed(fname, opts) then
    local dist = kdx.dist
    local n = rows_per_rank(fname, X)
    local first, count = dist.block(n)
    local mine = {}
    for k, v in pairs(opts) do
      if k ~= "distributed" then
        mine[k] = block_of(v, n, first, count, function(t)
          return k == "target" or (kdx.is_tensor(t) and t:dim() == X:dim())
        end)
      end
    end
    attr = dist.pcall_all("kdx.dist", function()
      local a = fn(model, X:narrow(1, first, count), mine)
      if not kdx.is_tensor(a) or not (#a:shape() == #X:shape()) or a:shape()[1] ~= count then
        fail(fname, "the method must return attributions of X's shape, got %s", args.what(a))
      end
      return a
    end)
    attr = dist.allgather(attr:contiguous())
  else
    attr = fn(model, X, opts)
  end
  if not kdx.is_tensor(attr) or not (#attr:shape() == #X:shape()) then
    fail(fname, "the method must return attributions of X's shape, got %s", args.what(attr))
  end
  return attr:abs():mean(1)
end

--- The top k features by importance (a tensor [M] or a table): their 1-based
-- indices, most important first (ties: the lower index first; NaN counts as
-- least important), and an int64 mask [M] with 1 at the selected features.
function M.select_features(importances, k)
  local fname = "select_features"
  local vals
  if kdx.is_tensor(importances) then
    if importances:dim() ~= 1 then fail(fname, "importances must be 1-d, got %dd", importances:dim()) end
    vals = importances:totable()
  elseif type(importances) == "table" then
    vals = importances
  else
    fail(fname, "importances must be a tensor or a table, got %s", args.what(importances))
  end
  local n = #vals
  for i = 1, n do
    if type(vals[i]) ~= "number" then fail(fname, "importances[%d] must be a number, got %s", i, args.what(vals[i])) end
  end
  k = int(fname, {k = k}, "k", nil, 0)
  if k == nil then fail(fname, "give k, the number of features to keep") end
  if k > n then fail(fname, "k = %d but there are only %d features", k, n) end
  local order = {}
  for i = 1, n do order[i] = i end
  table.sort(order, function(a, b)
    local va, vb = vals[a], vals[b]
    if va ~= va then va = -math.huge end
    if vb ~= vb then vb = -math.huge end
    if va ~= vb then return va > vb end
    return a < b
  end)
  local idx, mask = {}, {}
  for i = 1, n do mask[i] = 0 end
  for i = 1, k do idx[i] = order[i]; mask[order[i]] = 1 end
  return idx, kdx.tensor(n > 0 and mask or {}, "int64")
end

return M
