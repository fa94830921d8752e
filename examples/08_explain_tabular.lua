-- Explaining a tabular model, locally and globally, on the bundled Wisconsin
-- breast cancer data: an MLP classifier, then
--   * permutation importance on the test set (global),
--   * KernelSHAP and LIME for test patients (local), averaged as |values|,
--   * the partial dependence of P(benign) on the most important feature,
--   * Friedman's H-statistic for the top features' pairs (interactions),
--   * feature selection: the MLP retrained on the top k features, and what
--     the smaller input costs in accuracy.
-- Prints Markdown tables (docs/explain.md shows a full run):
--   lua5.4 examples/08_explain_tabular.lua [--small]
local kdx = require "kdx"
local nn, explain = kdx.nn, kdx.explain

local small = arg and arg[1] == "--small"
kdx.manual_seed(0)

local train, test = kdx.data.breast_cancer{seed = 0}
local names = train.feature_names
-- standardise with the training statistics
local mean, std = train.x:mean(1, true), train.x:std(1, true)
local function scale(x) return (x - mean) / std end
local xtr, xte = scale(train.x), scale(test.x)

local function fit(cols)
  local xa, xb = xtr, xte
  if cols then xa, xb = xtr:index_select(2, cols), xte:index_select(2, cols) end
  local model = nn.Sequential{nn.Linear(xa:size(2), 32), nn.ReLU(), nn.Linear(32, 2)}
  kdx.train{model = model, progress = false, log = function() end,
    data = kdx.data.DataLoader(kdx.data.dataset(xa, train.y), {batch_size = 64, shuffle = true, seed = 1}),
    optimizer = kdx.optim.Adam(model:parameters(), {lr = 1e-2}), epochs = small and 5 or 40}
  model:eval()
  local acc = kdx.no_grad(function() return model(xb):argmax(2):eq(test.y):double():mean():item() end)
  return model, acc
end

local model, acc = fit()
print(("MLP 30-32-2, test accuracy %.1f%% (%d patients)\n"):format(100 * acc, test:size()))
-- explanations are of P(benign), the second class
local prob = function(b) return kdx.softmax(model(b), 2) end
local BENIGN = 2

-- Global: permutation importance (drop in accuracy when a column is shuffled).
local imp_mean, imp_std = explain.permutation_importance(model, xte, {y = test.y, repeats = small and 2 or 10,
  seed = 1})

-- Local: KernelSHAP and LIME for some test patients, baseline = the training mean (0 after scaling).
local n = small and 4 or 40
local xs = xte:narrow(1, 1, n)
local shap, info = explain.kernel_shap(prob, xs, {target = BENIGN, samples = small and 300 or 2108, seed = 1})
local lime, linfo = explain.lime(prob, xs, {target = BENIGN, samples = small and 300 or 2000, seed = 1})
local shap_g, lime_g = shap:abs():mean(1), lime:abs():mean(1)
print(("KernelSHAP efficiency: max |sum(phi) - (f(x) - f(baseline))| = %.2e over %d patients"):format(
  info.gap:abs():max():item(), n))
print(("LIME local fit: mean weighted R^2 = %.3f\n"):format(linfo.score:mean():item()))

-- One table, features ranked by permutation importance.
local order = explain.select_features(imp_mean, 30)
print("| rank | feature | permutation importance | mean abs(SHAP) | mean abs(LIME) |")
print("|---:|---|---:|---:|---:|")
for r = 1, small and 5 or 10 do
  local j = order[r]
  print(("| %d | %s | %.4f ± %.4f | %.4f | %.4f |"):format(r, names[j], imp_mean:get(j), imp_std:get(j),
    shap_g:get(j), lime_g:get(j)))
end
local rho = explain.metrics.spearman(kdx.stack({imp_mean, imp_mean}), kdx.stack({shap_g:double(), lime_g:double()}))
print(("\nSpearman rank correlation over all 30 features: permutation vs SHAP %.2f, permutation vs LIME %.2f"):format(
  rho:get(1), rho:get(2)))

-- Partial dependence of P(benign) on the top feature (ICE curves averaged).
local top = order[1]
local pd = explain.partial_dependence(prob, xte, {features = {top}, target = BENIGN, grid_resolution = 5})
local cells = {}
for i, v in ipairs(pd.grid[1]:totable()) do
  cells[#cells + 1] = ("%.2f -> %.3f"):format(v * std:reshape{-1}:get(top) + mean:reshape{-1}:get(top), pd.average:reshape{-1}:get(i))
end
print(("\nPartial dependence of P(benign) on %s (value -> probability): %s"):format(names[top],
  table.concat(cells, ", ")))

-- Interactions between the top three features.
local pairs_ = {{order[1], order[2]}, {order[1], order[3]}, {order[2], order[3]}}
local h2 = explain.h_statistic(prob, xte, {pairs = pairs_, target = BENIGN, samples = small and 30 or 114, seed = 1})
for p, pr in ipairs(pairs_) do
  print(("H^2(%s, %s) = %.3f"):format(names[pr[1]], names[pr[2]], h2:get(p)))
end

-- Feature selection: retrain on the top k features by permutation importance.
print("\n| features kept | test accuracy | change |")
print("|---:|---:|---:|")
print(("| 30 (all) | %.1f%% | |"):format(100 * acc))
for _, k in ipairs(small and {5} or {3, 5, 10}) do
  local cols = explain.select_features(imp_mean, k)
  local _, acc_k = fit(kdx.tensor(cols, "int64"))
  print(("| %d | %.1f%% | %+.1f points |"):format(k, 100 * acc_k, 100 * (acc_k - acc)))
end
