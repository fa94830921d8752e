-- The tabular case study: an MLP teacher on the bundled Wisconsin breast
-- cancer data, distilled into models a person can read — a decision tree
-- and a sparse logistic model fitted to the teacher's soft outputs — with
-- their fidelity to the teacher on held-out patients, their rules, and a
-- check of the rules against the teacher's own explanations (KernelSHAP and
-- LIME): do the features the tree asks about match the features SHAP says
-- drove the teacher's decision?
--   lua5.4 examples/11_fusion_tabular.lua [--small] [--out DIR]   (default out/tabular)
local kdx = require "kdx"
local nn, explain = kdx.nn, kdx.explain
io.stdout:setvbuf("line")

local opt = {}
do
  local i = 1
  while arg and arg[i] do
    if arg[i] == "--small" then opt.small = true
    elseif arg[i] == "--out" then opt.out = arg[i + 1]; i = i + 1
    else error("unknown argument " .. arg[i]) end
    i = i + 1
  end
end
local out_dir = opt.out or (opt.small and "/tmp/kdx-tabular-small" or "out/tabular")
kdx.manual_seed(0)

local train, test = kdx.data.breast_cancer{seed = 0}
local names, classes = train.feature_names, train.classes
local mean, std = train.x:mean(1, true), train.x:std(1, true)
local function scale(x) return (x - mean) / std end
local xtr, xte = scale(train.x), scale(test.x)

-- The teacher: an MLP on standardised features.
local teacher = nn.Sequential{nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)}
local hist = kdx.train{model = teacher, progress = false, log = function() end,
  data = kdx.data.DataLoader(kdx.data.dataset(xtr, train.y), {batch_size = 64, shuffle = true, seed = 1}),
  eval_data = kdx.data.DataLoader(kdx.data.dataset(xte, test.y), {batch_size = 256}),
  optimizer = kdx.optim.Adam(teacher:parameters(), {lr = 1e-3}), epochs = opt.small and 3 or 60}
teacher:eval()
local function probs(x) return kdx.no_grad(function() return kdx.softmax(teacher(x), 2) end) end
local soft = probs(xtr)                                 -- the soft targets the students learn from
local t_test = probs(xte):argmax(2)
local function acc(pred) return pred:eq(test.y):double():mean():item() end
local t_acc = acc(t_test)

-- Students: trees on the raw features (readable thresholds, in the data's
-- units) and sparse logistic models on the standardised ones.
local rows, sweep = {{"teacher MLP 30-64-64-2", 100 * t_acc, 100, teacher:num_parameters(), "-"}}, {}
local trees = {}
for _, d in ipairs(opt.small and {2, 3} or {1, 2, 3, 4, 5, 6}) do
  local tree = kdx.surrogate.tree{max_depth = d, min_samples_leaf = 5}:fit(train.x, soft)
  local fid = tree:fidelity(test.x, t_test)
  trees[d] = tree
  sweep[#sweep + 1] = {label = ("tree d%d"):format(d), x = tree:n_leaves(), y = 100 * fid}
  rows[#rows + 1] = {("tree, depth %d"):format(d), 100 * acc(tree:predict(test.x)), 100 * fid, tree:n_nodes(),
    ("%d leaves"):format(tree:n_leaves())}
end
local linears = {}
for _, l1 in ipairs(opt.small and {0.01} or {0.002, 0.01, 0.05}) do
  local lin = kdx.surrogate.linear{l1 = l1}:fit(xtr, soft)
  local fid = lin:fidelity(xte, t_test)
  linears[#linears + 1] = {l1 = l1, model = lin}
  local nz = math.floor((1 - lin:sparsity()) * 60 + 0.5)
  sweep[#sweep + 1] = {label = ("linear l1=%g"):format(l1), x = nz, y = 100 * fid}
  rows[#rows + 1] = {("sparse logistic, l1 = %g"):format(l1), 100 * acc(lin:predict(xte)), 100 * fid, nz,
    ("%d of 60 weights non-zero"):format(nz)}
end
local tree = trees[3]
local lin = linears[#linears > 1 and 2 or 1].model

-- The teacher's explanations: KernelSHAP and LIME of P(predicted class) for test patients.
local n = opt.small and 6 or 60
local xs = xte:narrow(1, 1, n)
local tgt = t_test:narrow(1, 1, n)
local prob_model = function(b) return kdx.softmax(teacher(b), 2) end
local shap = explain.kernel_shap(prob_model, xs, {target = tgt, samples = opt.small and 200 or 2108, seed = 1})
local lime = explain.lime(prob_model, xs, {target = tgt, samples = opt.small and 200 or 2000, seed = 1})

-- Global agreement: importance vectors over the 30 features.
local imp = {
  {"mean |SHAP| (teacher)", shap:abs():mean(1)},
  {"mean |LIME| (teacher)", lime:abs():mean(1)},
  {"tree importances (depth 3)", tree:feature_importances()},
  {"|weights| of the sparse logistic", lin.coef:abs():sum(1)},
}
local M = explain.metrics
local agree_rows = {}
for a = 1, #imp do
  local r = {imp[a][1]}
  for b = 1, #imp do
    r[#r + 1] = M.spearman(imp[a][2]:double():reshape{1, 30}, imp[b][2]:double():reshape{1, 30}):get(1)
  end
  agree_rows[a] = r
end
local function top(v, k)
  local idx = explain.select_features(v:double(), k)
  local t = {}
  for i = 1, k do t[i] = names[idx[i]] end
  return table.concat(t, ", ")
end
local top_rows = {}
for _, e in ipairs(imp) do top_rows[#top_rows + 1] = {e[1], top(e[2], 5)} end

-- Local agreement: for each patient, the features on the tree's path and
-- the teacher's top-3 features by |SHAP|.
local _, rule_list = tree:rules{feature_names = names, class_names = classes}
local by_leaf = {}
for _, r in ipairs(rule_list) do by_leaf[r.leaf] = r end
local leaves = tree:apply(test.x:narrow(1, 1, n))
local hits, local_rows = 0, {}
for i = 1, n do
  local on_path = {}
  for _, c in ipairs(by_leaf[leaves:get(i)].conditions) do on_path[c.feature] = true end
  local top3 = explain.select_features(shap:select(1, i):abs():double(), 3)
  local shared = 0
  for _, j in ipairs(top3) do if on_path[j] then shared = shared + 1 end end
  hits = hits + shared
  if i <= 6 then
    local tn = {}
    for k, j in ipairs(top3) do tn[k] = names[j] end
    local pn = {}
    for j in pairs(on_path) do pn[#pn + 1] = names[j] end
    table.sort(pn)
    local_rows[#local_rows + 1] = {i, classes[tgt:get(i)], table.concat(pn, ", "), table.concat(tn, ", "), shared}
  end
end
local path_share = hits / (3 * n)

local summary = {
  ("teacher MLP: %.1f%% test accuracy (%d parameters)"):format(100 * t_acc, teacher:num_parameters()),
  ("depth-3 tree (%d leaves): %.1f%% fidelity to the teacher on held-out patients, %.1f%% accuracy"):format(
    tree:n_leaves(), 100 * tree:fidelity(test.x, t_test), 100 * acc(tree:predict(test.x))),
  ("sparse logistic: %.1f%% fidelity with %.0f%% of its weights zero"):format(100 * lin:fidelity(xte, t_test),
    100 * lin:sparsity()),
  ("rank agreement of feature importances: SHAP vs tree %.2f, SHAP vs LIME %.2f; %.0f%% of the teacher's top-3 SHAP features per patient are on the tree's path"):format(
    agree_rows[1][4], agree_rows[1][3], 100 * path_share),
}
local curves = {}
do
  local a, l = {}, {}
  for e, h in ipairs(hist) do a[e], l[e] = 100 * h.eval_accuracy, h.loss end
  curves = {{name = "test accuracy %", y = a}}
end
local path = kdx.report.write(out_dir, {
  title = "kdx tabular case study: breast cancer",
  summary = table.concat(summary, " · "),
  metrics = {teacher_accuracy = t_acc, rows = rows, sweep = sweep, path_share = path_share},
  checkpoints = {teacher = teacher},
  sections = {
    {kind = "config", title = "Configuration", values = {data = "breast_cancer (bundled, UCI WDBC)",
      train = train:size(), test = test:size(), teacher_epochs = opt.small and 3 or 60, explained_patients = n,
      tree_min_samples_leaf = 5}},
    {kind = "table", title = "Teacher and students", columns = {"model", "accuracy %", "fidelity %", "size", "note"},
      rows = rows, caption = "Fidelity: share of held-out patients where the student predicts the teacher's class. " ..
        "Size: tree nodes, non-zero logistic weights, MLP parameters."},
    {kind = "curves", title = "Teacher training", x_label = "epoch", y_label = "test accuracy %", series = curves},
    {kind = "scatter", title = "The balance: fidelity against size", x_label = "leaves / non-zero weights",
      y_label = "fidelity %", points = sweep, front = "max_y_min_x"},
    {kind = "code", title = "The depth-3 tree's rules (raw feature units)",
      body = (tree:rules{feature_names = names, class_names = classes})},
    {kind = "code", title = "The sparse logistic model (standardised features)",
      body = lin:rules{feature_names = names, class_names = classes}},
    {kind = "table", title = "Do the explanations agree? Spearman between importance vectors",
      columns = {"", imp[1][1], imp[2][1], imp[3][1], imp[4][1]}, rows = agree_rows},
    {kind = "table", title = "The five most important features by each account", columns = {"account", "top 5"},
      rows = top_rows},
    {kind = "table", title = "Patient by patient: the tree's path against the teacher's SHAP",
      columns = {"patient", "teacher says", "features on the tree's path", "teacher's top-3 by |SHAP|", "shared"},
      rows = local_rows, caption = ("Over all %d explained patients, %.0f%% of the top-3 SHAP features are on the " ..
        "tree's path."):format(n, 100 * path_share)},
  },
})
print(table.concat(summary, "\n"))
print(path)
