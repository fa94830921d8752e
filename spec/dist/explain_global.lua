-- Run on 2 ranks by spec/dist_spec.lua:
--   mpirun --oversubscribe --allow-run-as-root -np 2 lua5.4 spec/dist/explain_global.lua
-- Distributed explanation and sweeps equal their 1-rank runs: compare
-- (every tensor, the means and the disagree lists), global_importance,
-- permutation_importance and partial_dependence with distributed = true;
-- map_configs returns all results in order and raises one config's error on
-- both ranks; allgather_objects round-trips nested tables with floats
-- exactly. Exits 1 on failure.
local kdx = require "kdx"
local nn, dist = kdx.nn, kdx.dist

local rank = dist.rank()
local fails = 0
local function check(cond, what)
  if not cond then
    fails = fails + 1
    io.stderr:write(("rank %d: FAIL %s\n"):format(rank, what))
  end
end
check(dist.size() == 2, "size " .. dist.size())

-- The largest |a - b|, a NaN in the same place in both counting as equal
-- (a similarity is NaN for an all-zero map); a NaN in one only is inf.
local function maxdiff(a, b)
  local ta, tb = a:double():reshape{a:numel()}:totable(), b:double():reshape{b:numel()}:totable()
  local d = 0
  for i = 1, #ta do
    local u, v = ta[i], tb[i]
    if (u ~= u) ~= (v ~= v) then return math.huge end
    if u == u then d = math.max(d, math.abs(u - v)) end
  end
  return d
end
local function close(a, b, tol, what)
  local ok = kdx.is_tensor(a) and kdx.is_tensor(b) and #a:shape() == #b:shape()
  if ok then
    for d = 1, a:dim() do ok = ok and a:size(d) == b:size(d) end
  end
  check(ok, what .. ": shapes differ")
  if ok then
    local d = maxdiff(a, b)
    check(d <= tol, ("%s differs by %g"):format(what, d))
  end
end
local function num_close(a, b, tol, what)
  check(a == b or math.abs(a - b) <= tol or (a ~= a and b ~= b), ("%s: %s vs %s"):format(what, tostring(a), tostring(b)))
end

-- ---- allgather_objects: nested tables, exact floats, per-rank values ----
local mine = {rank = rank, f = 0.1 * (rank + 1), tiny = 5e-324, neg0 = -0.0, inf = -math.huge, nan = 0 / 0,
  big = math.maxinteger - rank, s = "a\0b" .. rank, nested = {list = {1, 2.5, {deep = rank == 1}}, [0.5] = "half"}}
local all = dist.allgather_objects(mine)
check(all.n == 2 and #all == 2, "allgather_objects gives one value per rank")
for r = 0, 1 do
  local v = all[r + 1]
  check(v.rank == r and math.type(v.rank) == "integer", "rank field of " .. r)
  check(v.f == 0.1 * (r + 1) and math.type(v.f) == "float", "float of rank " .. r .. " round-trips exactly")
  check(v.tiny == 5e-324 and 1 / v.neg0 == -math.huge and v.inf == -math.huge and v.nan ~= v.nan, "special floats")
  check(v.big == math.maxinteger - r, "int64 of rank " .. r)
  check(v.s == "a\0b" .. r, "string with a zero byte")
  check(v.nested.list[2] == 2.5 and v.nested.list[3].deep == (r == 1) and v.nested[0.5] == "half", "nested table")
end
local ok, e = pcall(dist.allgather_objects, rank == 1 and {f = print} or 1)
check(not ok and tostring(e):find("rank 1's value[\"f\"] is a function", 1, true), "a function on rank 1 fails on both: " .. tostring(e))

-- ---- map_configs: one configuration per rank, results in order ----
local configs = {}
for i = 1, 5 do configs[i] = {width = 2 * i} end
local ran = {}
local res = dist.map_configs(configs, function(c, i)
  ran[#ran + 1] = i
  return {accuracy = c.width / 10, parameters = c.width * 3, rank = dist.rank()}
end)
check(#res == 5, "map_configs returns 5 results")
for i = 1, 5 do
  check(res[i] and res[i].accuracy == 2 * i / 10 and res[i].parameters == 6 * i, "result " .. i .. " in order")
  check(res[i] and res[i].rank == (i - 1) % 2, "config " .. i .. " ran on rank " .. (i - 1) % 2)
end
check(#ran == (rank == 0 and 3 or 2), "this rank ran its configs only")
ok, e = pcall(dist.map_configs, configs, function(c, i)
  if i == 4 then error("width " .. c.width .. " is too wide", 0) end
  return i
end)
check(not ok and tostring(e):find("kdx.dist.map_configs: config 4 (rank 1) failed: width 8 is too wide", 1, true),
  "an error in config 4 reaches both ranks: " .. tostring(e))

-- ---- compare, distributed = true vs one process ----
kdx.manual_seed(7)                            -- the same models and data on both ranks
local function cnn()
  return nn.Sequential{nn.Conv2d(1, 3, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    nn.Linear(3 * 4 * 4, 4)}:double():eval()
end
local teacher, student = cnn(), cnn()
local x = kdx.rand({7, 1, 8, 8}, "float64")   -- 7 samples: 3 on rank 0, 4 on rank 1
local y = kdx.tensor({1, 2, 3, 4, 1, 2, 3}, "int64")
local copts = {methods = {{name = "integrated_gradients", opts = {steps = 8}}, "saliency", "gradcam"},
  layers = {teacher = "1", student = "1"}, deletion_steps = 4, batch_size = 3}
for _, target in ipairs{"label", "teacher"} do
  copts.target = target
  copts.distributed = nil
  local one = kdx.explain.compare(teacher, student, {x = x, y = y}, copts)
  copts.distributed = true
  local two = kdx.explain.compare(teacher, student, {x = x, y = y}, copts)
  local tag = "compare (target " .. target .. ")"
  check(two.n == 7 and #two.order == 3, tag .. ": n and order")
  close(two.target, one.target, 0, tag .. " target")
  for _, name in ipairs(one.order) do
    local a, b = one.methods[name], two.methods[name]
    close(b.teacher, a.teacher, 1e-10, tag .. " " .. name .. " teacher attributions")
    close(b.student, a.student, 1e-10, tag .. " " .. name .. " student attributions")
    for k, v in pairs(a.similarity) do close(b.similarity[k], v, 1e-9, tag .. " " .. name .. " " .. k) end
    close(b.deletion_auc.teacher, a.deletion_auc.teacher, 1e-10, tag .. " " .. name .. " deletion teacher")
    close(b.deletion_auc.student, a.deletion_auc.student, 1e-10, tag .. " " .. name .. " deletion student")
    for k, v in pairs(a.mean) do num_close(b.mean[k], v, 1e-9, tag .. " " .. name .. " mean " .. k) end
    check(table.concat(a.disagree, ",") == table.concat(b.disagree, ","), tag .. " " .. name .. " disagree order")
  end
  check(table.concat(one.disagree, ",") == table.concat(two.disagree, ","), tag .. " disagree")
end

-- ---- global methods, distributed = true vs one process ----
kdx.manual_seed(11)
local X = kdx.randn({23, 5}, "float64")       -- 11 rows on rank 0, 12 on rank 1
local W1, W2 = kdx.randn({5, 8}, "float64"), kdx.randn({8, 3}, "float64")
local function mlp(b) return kdx.matmul(kdx.matmul(b, W1):tanh(), W2) end
local labels = kdx.no_grad(function() return mlp(X):argmax(2) end)

local gi1 = kdx.explain.global_importance("integrated_gradients", mlp, X, {target = labels, steps = 8})
local gi2 = kdx.explain.global_importance("integrated_gradients", mlp, X, {target = labels, steps = 8, distributed = true})
close(gi2, gi1, 1e-12, "global_importance")

for _, feats in ipairs{false, {4, 2, 5}, {3}} do -- {3}: rank 0 has no feature
  local popts = {y = labels, seed = 9, repeats = 3, features = feats or nil}
  local m1, s1, i1, b1 = kdx.explain.permutation_importance(mlp, X, popts)
  popts.distributed = true
  local m2, s2, i2, b2 = kdx.explain.permutation_importance(mlp, X, popts)
  local tag = "permutation_importance " .. (feats and table.concat(feats, ",") or "all")
  close(i2, i1, 0, tag .. " importances")
  close(m2, m1, 0, tag .. " mean"); close(s2, s1, 0, tag .. " std")
  num_close(b2, b1, 0, tag .. " baseline score")
end
-- without a seed: rank 0's drawn seed is used on both ranks
kdx.manual_seed(rank + 100)
local _, _, inoseed = kdx.explain.permutation_importance(mlp, X, {y = labels, repeats = 2, distributed = true})
local gathered = dist.allgather(inoseed:reshape{1, inoseed:numel()})
close(gathered:select(1, 1), gathered:select(1, 2), 0, "permutation_importance without a seed agrees across ranks")

for _, feats in ipairs{{2}, {1, 4}} do
  local popts = {features = feats, grid_resolution = 6, target = 2, kind = "both"}
  local p1 = kdx.explain.partial_dependence(mlp, X, popts)
  popts.distributed = true
  local p2 = kdx.explain.partial_dependence(mlp, X, popts)
  local tag = "partial_dependence " .. table.concat(feats, ",")
  for t = 1, #feats do close(p2.grid[t], p1.grid[t], 0, tag .. " grid " .. t) end
  close(p2.average, p1.average, 1e-12, tag .. " average")
  close(p2.individual, p1.individual, 0, tag .. " individual")
end
local pavg = kdx.explain.partial_dependence(mlp, X, {features = {3}, target = labels, distributed = true,
  grid = {{-1, 0, 1}}})
local pone = kdx.explain.partial_dependence(mlp, X, {features = {3}, target = labels, grid = {{-1, 0, 1}}})
check(pavg.individual == nil, "kind = average gathers no curves")
close(pavg.average, pone.average, 1e-12, "partial_dependence with a given grid and per-row targets")

-- an error on one rank only reaches both, rather than leaving one waiting
ok, e = pcall(kdx.explain.global_importance, function(_, xs)
  if dist.rank() == 1 then error("rank-1 trouble", 0) end
  return xs
end, mlp, X, {distributed = true})
check(not ok and tostring(e):find("kdx.dist: rank 1 failed: rank-1 trouble", 1, true),
  "an error on rank 1 reaches both ranks: " .. tostring(e))

dist.barrier()
if fails > 0 then os.exit(1) end
print(("rank %d: distributed explanation and sweeps ok"):format(rank))
