-- kdx.surrogate: the CART tree against scikit-learn's DecisionTreeClassifier
-- (structure, values, predictions) and against a brute-force split search;
-- soft labels by hand and through sklearn's weighted rows; the sparse
-- logistic regression against sklearn's LogisticRegression (coefficients
-- without a penalty, objective values with L1); fidelity, rules, errors.
local kdx = require "kdx"
local golden = require "helpers.golden"
local helpers = require "helpers.close"
local close, T = helpers.assert_close, helpers.from_fixture

local G = golden.fixture("surrogate_golden.lua")

local sets = {}
local function data(name)
  if not sets[name] then sets[name] = kdx.data[name]{full = true} end
  return sets[name]
end

-- Whether a fitted tree has the node arrays of an sklearn tree (thresholds
-- to 1e-6 relative: both are midpoints of the same float32 values).
local function same_structure(tree, v)
  local a = tree.arrays
  if a.feature:size(1) ~= v.feature.shape[1] then return false end
  local f, l, r, th = (a.feature + 1):totable(), (a.left + 1):totable(), (a.right + 1):totable(), a.threshold:totable()
  for j = 1, #f do
    if f[j] ~= v.feature.data[j] or l[j] ~= v.left.data[j] or r[j] ~= v.right.data[j] then return false end
    if math.abs(th[j] - v.threshold.data[j]) > 1e-6 * (1 + math.abs(th[j])) then return false end
  end
  return true
end

local function values(t)
  if kdx.is_tensor(t) then return helpers.values(t) end
  return t
end

local function impurity(counts, crit)
  local m = 0
  for _, c in ipairs(counts) do m = m + c end
  if m <= 0 then return 0 end
  local s = 0
  for _, c in ipairs(counts) do
    local p = c / m
    if crit == "gini" then s = s + p * p elseif p > 0 then s = s - p * math.log(p, 2) end
  end
  return crit == "gini" and 1 - s or s
end

-- Checks by brute force that every split of the tree is a best one (the
-- largest weighted impurity decrease over all features and midpoints), and
-- that no leaf could have been split. rows: per sample, its class mass
-- vector (one-hot or probabilities).
local function check_greedy(tree, x, rows, opts)
  local X = x:double():totable()
  local N, F, C = #X, #X[1], #rows[1]
  local t = tree.nodes
  local members, depth = {}, {[1] = 0}
  for j = 1, t.n_nodes do members[j] = {} end
  for i = 1, N do
    local j = 1
    while true do
      members[j][#members[j] + 1] = i
      if not t.left[j] then break end
      depth[t.left[j]], depth[t.right[j]] = depth[j] + 1, depth[j] + 1
      j = X[i][t.feature[j]] <= t.threshold[j] and t.left[j] or t.right[j]
    end
  end
  local msl, crit = opts.min_samples_leaf or 1, opts.criterion or "gini"
  for j = 1, t.n_nodes do
    local ids = members[j]
    assert.are.equal(#ids, t.n_samples[j])
    local best = -math.huge
    for f = 1, F do
      table.sort(ids, function(a, b) return X[a][f] < X[b][f] end)
      local left, tot = {}, {}
      for k = 1, C do left[k], tot[k] = 0, 0 end
      for _, i in ipairs(ids) do for k = 1, C do tot[k] = tot[k] + rows[i][k] end end
      for p = 1, #ids - 1 do
        for k = 1, C do left[k] = left[k] + rows[ids[p]][k] end
        if X[ids[p + 1]][f] > X[ids[p]][f] + 1e-7 and p >= msl and #ids - p >= msl then
          local right, ml, mr = {}, 0, 0
          for k = 1, C do
            right[k] = tot[k] - left[k]
            ml, mr = ml + left[k], mr + right[k]
          end
          local proxy = -(ml * impurity(left, crit) + mr * impurity(right, crit))
          if proxy > best then best = proxy end
        end
      end
    end
    if t.left[j] then
      local l, r = t.left[j], t.right[j]
      local ours = -(t.weighted_n[l] * t.impurity[l] + t.weighted_n[r] * t.impurity[r])
      assert.is_true(math.abs(ours - best) <= 1e-9 * (1 + math.abs(best)),
        ("node %d: split decrease %.17g, best %.17g"):format(j, ours, best))
      assert.is_true(t.n_samples[l] >= msl and t.n_samples[r] >= msl)
    else
      local stopped = (opts.max_depth and depth[j] >= opts.max_depth) or #ids < 2 * msl or t.impurity[j] <= 2.3e-16
      assert.is_true(stopped or best == -math.huge, ("leaf %d could have been split"):format(j))
    end
  end
end

local function onehot_rows(y)
  local rows = {}
  for i, k in ipairs(y:totable()) do
    rows[i] = {0, 0, 0}
    rows[i][k] = 1
  end
  return rows
end

describe("kdx.surrogate", function()
  describe("tree", function()
    -- the cases of the fixture, in a fixed order
    local names = {}
    for name, c in pairs(G) do
      if type(c) == "table" and c.n_variants then names[#names + 1] = name end
    end
    table.sort(names)

    for _, name in ipairs(names) do
      local c = G[name]
      if c.variants then
        it(("matches sklearn's DecisionTreeClassifier on %s: nodes, thresholds, values, predictions"):format(name),
          function()
            local ds = data(c.data)
            local soft = name:match("^soft_")
            local tree = kdx.surrogate.tree{max_depth = c.max_depth, min_samples_leaf = c.min_samples_leaf,
              criterion = c.criterion}:fit(ds.x, soft and T(G.soft_probs) or ds.y)
            local v
            for _, cand in ipairs(c.variants) do
              if same_structure(tree, cand) then v = cand end
            end
            assert.is_not_nil(v, "the tree is none of sklearn's " .. #c.variants)
            if v.n_samples then assert.are.same(v.n_samples.data, values(tree.arrays.n_samples)) end
            close(tree.arrays.impurity, T(v.impurity), 1e-9)
            close(tree.arrays.value, T(v.value), 1e-9)
            close(tree:feature_importances(), T(v.importances), 1e-9)
            assert.are.equal(v.pred, table.concat(values(tree:predict(ds.x))))
            assert.are.equal(v.depth, tree:depth())
            assert.are.equal(v.n_leaves, tree:n_leaves())
          end)
      end
    end

    for _, name in ipairs{"breast_cancer_gini_d4", "breast_cancer_entropy_msl10", "breast_cancer_gini_msl10",
      "iris_entropy_d4", "soft_entropy_d4"} do
      it(("makes each split a best one and stops only where it must (brute force, %s)"):format(name), function()
        local c = G[name]
        local ds = data(c.data)
        local soft = name:match("^soft_")
        local y = soft and T(G.soft_probs) or ds.y
        local opts = {max_depth = c.max_depth, min_samples_leaf = c.min_samples_leaf, criterion = c.criterion}
        local tree = kdx.surrogate.tree(opts):fit(ds.x, y)
        local rows = soft and y:totable() or onehot_rows(ds.y)
        if not soft and c.data == "breast_cancer" then
          for i, r in ipairs(rows) do rows[i] = {r[1], r[2]} end
        end
        check_greedy(tree, ds.x, rows, opts)
      end)
    end

    it("averages soft labels in a node and splits on their Gini impurity (by hand)", function()
      local x = kdx.tensor({{0}, {1}, {2}, {3}})
      local p = kdx.tensor({{1, 0}, {0.8, 0.2}, {0.2, 0.8}, {0, 1}}, "float64")
      local tree = kdx.surrogate.tree{max_depth = 1}:fit(x, p)
      -- root: mean (0.5, 0.5), Gini 0.5. Split at 1.5: each side (0.9, 0.1) or (0.1, 0.9), Gini 1 - .81 - .01 = .18,
      -- weighted .18; at 0.5 it would be 3/4 * (1 - 1/9 - 4/9) = 1/3, at 2.5 the same
      assert.are.equal(3, tree:n_nodes())
      assert.are.equal(1.5, tree.nodes.threshold[1])
      close(tree.arrays.value, kdx.tensor({{0.5, 0.5}, {0.9, 0.1}, {0.1, 0.9}}, "float64"), 1e-12)
      close(tree.arrays.impurity, kdx.tensor({0.5, 0.18, 0.18}, "float64"), 1e-12)
      close(tree:predict_proba(kdx.tensor({{-5}, {1.49}, {1.51}})), kdx.tensor({{0.9, 0.1}, {0.9, 0.1}, {0.1, 0.9}},
        "float64"), 1e-12)
      local e = kdx.surrogate.tree{max_depth = 1, criterion = "entropy"}:fit(x, p)
      local h = -(0.9 * math.log(0.9, 2) + 0.1 * math.log(0.1, 2))
      close(e.arrays.impurity, kdx.tensor({1, h, h}, "float64"), 1e-12)
      -- rows are normalised: scaled probabilities give the same tree
      close(kdx.surrogate.tree{max_depth = 1}:fit(x, p * 3).arrays.value, tree.arrays.value, 1e-12)
    end)

    it("respects min_samples_leaf and min_samples_split", function()
      local ds = data("breast_cancer")
      local tree = kdx.surrogate.tree{min_samples_leaf = 20}:fit(ds.x, ds.y)
      local t = tree.nodes
      for j = 1, t.n_nodes do
        if not t.left[j] then assert.is_true(t.n_samples[j] >= 20) end
      end
      local t2 = kdx.surrogate.tree{min_samples_split = 60}:fit(ds.x, ds.y).nodes
      for j = 1, t2.n_nodes do
        if t2.left[j] then assert.is_true(t2.n_samples[j] >= 60) end
      end
      assert.is_true(tree:n_leaves() <= 569 // 20)
    end)

    it("treats an integer sample_weight as repeated rows", function()
      local ds = data("iris")
      local w, rep, xs, ys = {}, {}, {}, {}
      local X, Y = ds.x:totable(), ds.y:totable()
      for i = 1, 150 do
        w[i] = (i % 3) + 1
        for _ = 1, w[i] do
          xs[#xs + 1], ys[#ys + 1] = X[i], Y[i]
        end
        rep[i] = w[i]
      end
      local a = kdx.surrogate.tree{max_depth = 4}:fit(ds.x, ds.y, w)
      local b = kdx.surrogate.tree{max_depth = 4}:fit(kdx.tensor(xs), ys)
      assert.are.same(values(b.arrays.feature), values(a.arrays.feature))
      close(a.arrays.threshold, b.arrays.threshold, 0)
      close(a.arrays.value, b.arrays.value, 1e-12)
      close(a.arrays.weighted_n, b.arrays.n_samples:double(), 1e-12)
    end)

    it("has fidelity 1 to a teacher it can separate, hard or soft, and measures held-out agreement", function()
      local ds = data("iris")
      local train, test = ds:split(0.7, 3)
      kdx.manual_seed(5)
      local W = kdx.randn({4, 3}, "float64")
      local teacher = function(x) return kdx.matmul(x:double(), W) end
      local hard = kdx.surrogate.tree():fit(train.x, teacher(train.x):argmax(2))
      assert.are.equal(1, hard:fidelity(train.x, teacher))
      local soft = kdx.surrogate.tree():fit(train.x, kdx.softmax(teacher(train.x), 2))
      assert.are.equal(1, soft:fidelity(train.x, teacher))
      local f = hard:fidelity(test.x, teacher)
      local agree, pred, tc = 0, hard:predict(test.x):totable(), teacher(test.x):argmax(2):totable()
      for i = 1, #pred do if pred[i] == tc[i] then agree = agree + 1 end end
      assert.are.equal(agree / #pred, f)
      assert.is_true(f > 0.5 and f < 1)
      -- the teacher's outputs or classes work as well as the teacher
      assert.are.equal(f, hard:fidelity(test.x, teacher(test.x)))
      assert.are.equal(f, hard:fidelity(test.x, tc))
    end)

    it("writes rules with feature and class names that give predict on every sample", function()
      local ds = data("breast_cancer")
      local tree = kdx.surrogate.tree{max_depth = 3}:fit(ds.x, ds.y)
      local text, list = tree:rules{feature_names = ds.feature_names, class_names = ds.classes}
      assert.are.equal(tree:n_leaves(), #list)
      for j = 1, tree.nodes.n_nodes do
        if tree.nodes.feature[j] then assert.truthy(text:find(ds.feature_names[tree.nodes.feature[j]], 1, true)) end
      end
      assert.truthy(text:find("predict malignant", 1, true))
      assert.truthy(text:find("predict benign", 1, true))
      local X, pred = ds.x:double():totable(), tree:predict(ds.x):totable()
      for i = 1, #X do
        local hits = 0
        for _, rule in ipairs(list) do
          local ok = true
          for _, c in ipairs(rule.conditions) do
            local v = X[i][c.feature]
            if (c.op == "<=" and not (v <= c.threshold)) or (c.op == ">" and not (v > c.threshold)) then ok = false end
          end
          if ok then
            hits = hits + 1
            assert.are.equal(pred[i], rule.class)
          end
        end
        assert.are.equal(1, hits)
      end
      -- the text is nested if/else/end, with thresholds shown to `precision` decimals (trailing zeros cut)
      local first = text:match("^[^\n]*")
      local name, shown = first:match("^if (.-) <= (%S+) then$")
      assert.are.equal(ds.feature_names[tree.nodes.feature[1]], name)
      assert.is_true(math.abs(tonumber(shown) - tree.nodes.threshold[1]) <= 0.0005)
      local p1 = tree:rules{precision = 1}:match("^if .- <= (%S+) then")
      assert.is_true(math.abs(tonumber(p1) - tree.nodes.threshold[1]) <= 0.05 and #p1 <= #shown)
      assert.are.equal(1, select(2, text:gsub("\nend\n$", "")))
    end)

    it("writes text that, run as Lua, predicts as the tree does", function()
      -- with the default names x[j] and exact thresholds the text is Lua once leaves return their class
      local ds = data("wine")
      local tree = kdx.surrogate.tree{max_depth = 5, criterion = "entropy"}:fit(ds.x, ds.y)
      local text = tree:rules{precision = 17}
      local code = text:gsub("predict (%d+)  %b()", "return %1")
      local classify = assert(load("local x = ...\n" .. code))
      local X, pred = ds.x:totable(), tree:predict(ds.x):totable()
      for i = 1, #X do assert.are.equal(pred[i], classify(X[i])) end
    end)

    it("names pixels by their position for images", function()
      local ds = data("digits")
      local tree = kdx.surrogate.tree{max_depth = 2}:fit(ds.x, ds.y)
      local text = tree:rules()
      local f = tree.nodes.feature[1]
      local r, c = (f - 1) // 8 + 1, (f - 1) % 8 + 1
      assert.truthy(text:find(("if pixel (%d,%d) <= "):format(r, c), 1, true))
      assert.truthy(kdx.surrogate.tree{max_depth = 1}:fit(ds.x:reshape{-1, 64}, ds.y):rules{image_shape = {8, 8}}
        :find(("pixel (%d,%d)"):format(r, c), 1, true))
    end)

    it("keeps n_classes columns when the labels miss the last classes", function()
      local x = kdx.tensor({{0}, {1}, {2}, {3}})
      local tree = kdx.surrogate.tree{n_classes = 4}:fit(x, {1, 1, 2, 2})
      close(tree:predict_proba(x), kdx.tensor({{1, 0, 0, 0}, {1, 0, 0, 0}, {0, 1, 0, 0}, {0, 1, 0, 0}}, "float64"), 0)
      assert.are.equal(2, kdx.surrogate.tree():fit(x, {1, 1, 2, 2}).n_classes)
      local lin = kdx.surrogate.linear{n_classes = 3, l1 = 0.01}:fit(x, {1, 1, 2, 2})
      assert.are.same({3, 1}, lin.coef:shape())
      assert.is_true(lin:predict_proba(x):select(2, 3):max():item() < 0.01)
    end)

    it("saves and loads", function()
      local ds = data("iris")
      local tree = kdx.surrogate.tree{max_depth = 3, criterion = "entropy"}:fit(ds.x, ds.y)
      local path = os.tmpname()
      tree:save(path)
      local back = kdx.surrogate.load(path)
      os.remove(path)
      assert.are.same(values(tree:predict(ds.x)), values(back:predict(ds.x)))
      assert.are.equal(tree:rules(), back:rules())
      assert.are.equal("entropy", back.criterion)
    end)

    it("draws max_features features per node from its seed", function()
      local ds = data("breast_cancer")
      local a = kdx.surrogate.tree{max_depth = 4, max_features = 5, seed = 1}:fit(ds.x, ds.y)
      local b = kdx.surrogate.tree{max_depth = 4, max_features = 5, seed = 1}:fit(ds.x, ds.y)
      local c = kdx.surrogate.tree{max_depth = 4, max_features = 5, seed = 2}:fit(ds.x, ds.y)
      assert.are.same(values(a.arrays.feature), values(b.arrays.feature))
      assert.are_not.same(values(a.arrays.feature), values(c.arrays.feature))
      local all = kdx.surrogate.tree{max_depth = 4, max_features = 30}:fit(ds.x, ds.y)
      assert.are.same(values(kdx.surrogate.tree{max_depth = 4}:fit(ds.x, ds.y).arrays.feature),
        values(all.arrays.feature))
    end)
  end)

  describe("linear", function()
    local xs = T(G.iris_std)
    local y = data("iris").y

    it("without a penalty matches sklearn's multinomial LogisticRegression (versicolor vs virginica)", function()
      local xb, yb = xs:narrow(1, 51, 100), y:narrow(1, 51, 100) - 1
      local lin = kdx.surrogate.linear{l1 = 0, tol = 1e-10, max_iter = 200000}:fit(xb, yb)
      assert.is_true(lin.converged)
      close(lin.coef, T(G.linear_none.coef), 1e-5)
      close(lin.intercept, T(G.linear_none.intercept), 1e-5)
      assert.is_true(math.abs(lin:objective(xb, yb) - G.linear_none.objective) < 1e-9)
    end)

    for _, name in ipairs{"linear_l1", "linear_soft_l1"} do
      it(("with l1 reaches an objective no worse than sklearn's saga (%s) and is sparse"):format(name), function()
        local c = G[name]
        local targets = name == "linear_soft_l1" and T(G.soft_probs) or y
        local lin = kdx.surrogate.linear{l1 = c.l1, tol = 1e-9, max_iter = 100000}:fit(xs, targets)
        assert.is_true(lin.converged)
        local ours = lin:objective(xs, targets)
        -- the same objective definition: kdx evaluates sklearn's solution to the value sklearn's side computed
        local sk = kdx.surrogate.linear{l1 = c.l1}
        sk.coef, sk.intercept, sk.n_features, sk.n_classes = T(c.coef), T(c.intercept), 4, 3
        assert.is_true(math.abs(sk:objective(xs, targets) - c.objective) < 1e-10)
        assert.is_true(ours <= c.objective + 1e-6, ("kdx %.12g, sklearn %.12g"):format(ours, c.objective))
        close(lin.coef, T(c.coef), 2e-3)
        assert.is_true(lin:sparsity() > 0)
        assert.are.equal(sk:sparsity(), lin:sparsity())
      end)
    end

    it("grows sparser as l1 grows, down to the intercept alone", function()
      local s1 = kdx.surrogate.linear{l1 = 0.001}:fit(xs, y):sparsity()
      local s2 = kdx.surrogate.linear{l1 = 0.05}:fit(xs, y):sparsity()
      local lin = kdx.surrogate.linear{l1 = 10}:fit(xs, y)
      assert.is_true(s1 <= s2)
      assert.are.equal(1, lin:sparsity())
      -- with W = 0 the optimum is the class frequencies: 1/3 each
      close(lin:predict_proba(xs:narrow(1, 1, 2)), kdx.full({2, 3}, 1 / 3, "float64"), 1e-6)
    end)

    it("recovers a linear teacher from its soft labels: fidelity 1", function()
      kdx.manual_seed(11)
      local W, b = kdx.randn({3, 4}, "float64"), kdx.randn({3}, "float64")
      local teacher = function(x) return kdx.matmul(x, W:transpose(1, 2)) + b end
      local lin = kdx.surrogate.linear{l1 = 0, tol = 1e-10, max_iter = 100000}:fit(xs, kdx.softmax(teacher(xs), 2))
      -- softmax is unchanged by a shift shared by the classes: compare centred weights
      close(lin.coef, W - W:mean(1, true), 1e-5)
      assert.are.equal(1, lin:fidelity(xs, teacher))
    end)

    it("lists the nonzero weights per class, largest first, with names", function()
      local ds = data("breast_cancer")
      local x = (ds.x - ds.x:mean(1, true)) / ds.x:std(1, true, true)
      local lin = kdx.surrogate.linear{l1 = 0.02}:fit(x, ds.y)
      local text, list = lin:rules{feature_names = ds.feature_names, class_names = ds.classes}
      assert.truthy(text:find("^class malignant: "))
      assert.truthy(text:find("\nclass benign: "))
      local W = lin.coef:totable()
      for k = 1, 2 do
        local nz = 0
        for _, w in ipairs(W[k]) do if w ~= 0 then nz = nz + 1 end end
        assert.are.equal(nz, #list[k].terms)
        for i = 2, #list[k].terms do
          assert.is_true(math.abs(list[k].terms[i - 1].weight) >= math.abs(list[k].terms[i].weight))
        end
        assert.truthy(text:find(list[k].terms[1].name, 1, true))
      end
      assert.is_true(lin:sparsity() > 0.5)
      local path = os.tmpname()
      lin:save(path)
      local back = kdx.surrogate.load(path)
      os.remove(path)
      close(back:predict_proba(x), lin:predict_proba(x), 0)
    end)
  end)

  describe("errors", function()
    local x = kdx.randn{6, 2}
    local function err(fn, msg)
      local ok, e = pcall(fn)
      assert.is_false(ok)
      assert.truthy(tostring(e):find(msg, 1, true), tostring(e))
    end

    it("names kdx.surrogate.<fn> and the bad argument", function()
      err(function() kdx.surrogate.tree{max_depth = -1} end, "kdx.surrogate.tree: max_depth must be >= 0")
      err(function() kdx.surrogate.tree{criterion = "mse"} end, "kdx.surrogate.tree: criterion must be \"gini\"")
      err(function() kdx.surrogate.tree{depth = 3} end, "kdx.surrogate.tree: unknown option depth")
      err(function() kdx.surrogate.tree{min_samples_leaf = 0.5} end, "min_samples_leaf must be an integer")
      err(function() kdx.surrogate.linear{l1 = -1} end, "kdx.surrogate.linear: l1 must be >= 0")
      err(function() kdx.surrogate.linear{fit_intercept = 1} end, "fit_intercept must be a boolean")
      local tree = kdx.surrogate.tree()
      err(function() tree:predict(x) end, "kdx.surrogate.tree:predict: the tree is not fitted yet")
      err(function() tree:fit(kdx.ones({6, 2}, "int64"), {1, 2, 1, 2, 1, 2}) end,
        "kdx.surrogate.tree:fit: x must be float32 or float64")
      err(function() tree:fit(x, {1, 2, 1}) end, "kdx.surrogate.tree:fit: targets have 3 entries but x has 6 rows")
      err(function() tree:fit(x, {1, 2, 0, 1, 1, 1}) end, "class labels must be >= 1")
      err(function() tree:fit(x, kdx.tensor{1, 2, 1, 2, 1, 2}) end, "soft targets must be float [N, C]")
      err(function() tree:fit(x, -kdx.ones{6, 2}) end, "kdx.surrogate.tree:fit: soft targets must be >= 0")
      err(function() tree:fit(x, {1, 2, 1, 2, 1, 2}, {1, 1}) end, "sample_weight must be a float tensor [N]")
      err(function() tree:fit(x * (0 / 0), {1, 2, 1, 2, 1, 2}) end, "non-finite value")
      tree:fit(x, {1, 2, 1, 2, 1, 2})
      err(function() tree:predict(kdx.randn{2, 3}) end, "kdx.surrogate.tree:apply: x has 3 features a sample")
      err(function() tree:rules{feature_names = {"a"}} end,
        "kdx.surrogate.tree:rules: feature_names must be a table of 2")
      err(function() kdx.surrogate.tree{n_classes = 2}:fit(x, {1, 3, 1, 2, 1, 2}) end,
        "kdx.surrogate.tree:fit: class label 3 is larger than n_classes = 2")
      err(function() kdx.surrogate.linear{n_classes = 3}:fit(x, kdx.ones{6, 2}) end,
        "kdx.surrogate.linear:fit: soft targets have 2 classes but n_classes is 3")
      err(function() tree:fidelity(x, "teacher") end, "kdx.surrogate.tree:fidelity: teacher must be a model")
      err(function() kdx.surrogate.tree{max_features = 3}:fit(x, {1, 2, 1, 2, 1, 2}) end,
        "max_features is 3 but x has only 2 features")
      local lin = kdx.surrogate.linear()
      err(function() lin:predict(x) end, "kdx.surrogate.linear:predict: the model is not fitted yet")
      err(function() lin:fit(x, kdx.ones{6, 2, 1}) end, "kdx.surrogate.linear:fit: soft targets must be float [N, C]")
      err(function() kdx.surrogate.load(42) end, "kdx.surrogate.load: path must be a string")
    end)
  end)
end)
