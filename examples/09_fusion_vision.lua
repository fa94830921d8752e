-- The vision case study, and `make demo`: a CNN teacher distilled into a
-- small CNN (plain KD, and KD that also matches the teacher's Grad-CAM) and
-- into a soft decision tree; every model explained, the students'
-- explanations compared with the teacher's, the balance between size,
-- accuracy, fidelity and agreement swept over tree depths and CNN widths,
-- and all of it written to one HTML report.
--   lua5.4 examples/09_fusion_vision.lua [--data digits|fashion_mnist] [--out DIR] [--small]
-- digits (bundled) takes about a minute on 2 cores; fashion_mnist (Debian's
-- dataset-fashion-mnist) about ten; --small a few seconds (the tests run it).
local kdx = require "kdx"
local nn, M, explain = kdx.nn, kdx.distill.metrics, kdx.explain
io.stdout:setvbuf("line")

local opt = {data = "digits"}
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--small" then opt.small = true
    elseif a == "--data" or a == "--out" then opt[a:sub(3)] = arg[i + 1]; i = i + 1
    else error("unknown argument " .. a) end
    i = i + 1
  end
end
if opt.data ~= "digits" and opt.data ~= "fashion_mnist" then error("--data must be digits or fashion_mnist") end
local out_dir = opt.out or (opt.small and "/tmp/kdx-demo-small" or opt.data == "digits" and "out/demo" or "out/demo-fashion")
local t_start = kdx.clock()
kdx.manual_seed(0)

-- -------------------------------------------------------------- the budget --
local digits = opt.data == "digits"
local cfg = {
  side = digits and 8 or 28,
  teacher_epochs = opt.small and 2 or (digits and 30 or 4),
  student_epochs = opt.small and 2 or (digits and 30 or 4),
  transfer = opt.small and 256 or (digits and nil or 20000),
  explain_n = opt.small and 8 or (digits and 120 or 200),
  tree_depth = digits and 5 or 7,
  sweep_depths = opt.small and {2, 3} or (digits and {2, 3, 4, 5, 6, 7} or {3, 5, 7, 9}),
  sweep_widths = opt.small and {2} or {2, 4, 8},
  lr = digits and 1e-2 or 2e-3,
}

local train, test
if digits then train, test = kdx.data.digits() else train, test = kdx.data.fashion_mnist() end
if cfg.transfer then train = train:subset(kdx.arange(1, math.min(cfg.transfer, train:size()) + 1)) end
if opt.small then test = test:subset(kdx.arange(1, 65)) end
local side = cfg.side
local function loader(seed) return kdx.data.DataLoader(train, {batch_size = 64, shuffle = true, seed = seed}) end

-- ---------------------------------------------------------------- models --
-- CNNs named as PyTorch names Sequential children: "0", "1", ...; the
-- Grad-CAM layer is the ReLU after the last convolution.
local function cnn(width)
  return nn.Sequential{
    nn.Conv2d(1, width, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(width, 2 * width, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(2 * width * (side // 4) * (side // 4), 10),
  }
end
local CAM_LAYER = "4"
local function adam(params) return kdx.optim.Adam(params, {lr = cfg.lr}) end
local quiet = function() end

local teacher = cnn(32)
local t_hist = kdx.train{model = teacher, data = loader(1), eval_data = kdx.data.DataLoader(test, {batch_size = 256}),
  optimizer = adam(teacher:parameters()),
  epochs = cfg.teacher_epochs, progress = false, log = quiet}
teacher:eval()

local function distill(student, loss, loss_opts, T)
  local hist, final = kdx.distill.run{teacher = teacher, student = student, data = loader(2), eval_data = test,
    optimizer = adam, epochs = cfg.student_epochs, loss = loss, loss_opts = loss_opts, T = T or 4,
    progress = false, log = quiet}
  student:eval()
  return hist, final
end

local function tree(depth)
  local t = nn.SoftDecisionTree{depth = depth, input = side * side, classes = 10, penalty = 1e-3}
  -- the balance penalty of the tree's last forward pass, as a custom term
  return t, {kd = 1, penalty = {weight = 1, fn = function() return t:penalty() end}}
end

local runs = {}
local function add(name, model, hist, note)
  runs[#runs + 1] = {name = name, model = model, hist = hist, note = note}
  return model
end
add("teacher CNN", teacher, t_hist)
do
  local s = cnn(4)
  add("student CNN, labels only", s, (distill(s, {ce = 1})), "no teacher")
  local k = cnn(4)
  add("student CNN, KD", k, (distill(k, {ce = 0.1, kd = 0.9})), "Hinton KD, T = 4")
  local g = cnn(4)
  add("student CNN, KD + Grad-CAM match", g, (distill(g, {ce = 0.1, kd = 0.9, gradcam_match = 0.5},
    {gradcam_match = {student_layer = CAM_LAYER, teacher_layer = CAM_LAYER}})), "Grad-CAM maps matched (1 - cosine)")
  local t, loss = tree(cfg.tree_depth)
  add(("soft decision tree, depth %d"):format(cfg.tree_depth), t, (distill(t, loss, nil, 2)),
    "Frosst & Hinton, from the teacher's soft targets")
end

-- ---------------------------------------------------------- measurements --
local xs = test.x:narrow(1, 1, math.min(cfg.explain_n, test:size()))
local ys = test.y:narrow(1, 1, xs:size(1))
local eval_set = {x = xs, y = ys}
local rows, metrics_json = {}, {}
for i, r in ipairs(runs) do
  local rep = M.report(r.model, teacher, test, {latency = not opt.small, repeats = 3})
  local s = rep.student
  local cmp
  if i > 1 then
    local is_cnn = not r.name:find("tree", 1, true)
    cmp = explain.compare(teacher, r.model, eval_set, {
      methods = is_cnn and {"integrated_gradients", "gradcam"} or {"integrated_gradients"},
      layers = {teacher = CAM_LAYER, student = CAM_LAYER}, deletion_steps = 10})
    r.compare = cmp
  end
  local ig = cmp and cmp.methods.integrated_gradients.mean
  local cam = cmp and cmp.methods.gradcam and cmp.methods.gradcam.mean
  r.row = {r.name, 100 * s.accuracy, i > 1 and 100 * rep.agreement or 100, s.ece, s.num_parameters, s.macs,
    s.latency and s.latency[1] or 0 / 0,
    ig and ig.spearman or 1, ig and ig.topk_overlap or 1, cam and cam.spearman or "-", cam and cam.ssim or "-"}
  rows[i] = r.row
  metrics_json[r.name] = {accuracy = s.accuracy, fidelity = i > 1 and rep.agreement or 1, ece = s.ece,
    parameters = s.num_parameters, macs = s.macs, latency_ms = s.latency and s.latency[1],
    ig_spearman = ig and ig.spearman, ig_topk = ig and ig.topk_overlap, ig_deletion_auc = ig and ig.deletion_auc_student,
    gradcam_spearman = cam and cam.spearman, gradcam_ssim = cam and cam.ssim}
end

-- -------------------------------------------- the balance: a sweep of sizes --
local sweep = {}
local function measure(name, model)
  local rep = M.report(model, teacher, test, {latency = false})
  local cmp = explain.compare(teacher, model, {x = xs:narrow(1, 1, math.min(32, xs:size(1))), y = ys},
    {methods = {{name = "integrated_gradients", opts = {steps = 16}}}, deletion_steps = 5})
  sweep[#sweep + 1] = {label = name, parameters = model:num_parameters(), accuracy = rep.student.accuracy,
    fidelity = rep.agreement, agreement = cmp.methods.integrated_gradients.mean.spearman}
end
for _, d in ipairs(cfg.sweep_depths) do
  local t, loss = tree(d)
  distill(t, loss, nil, 2)
  measure(("tree d%d"):format(d), t)
end
for _, w in ipairs(cfg.sweep_widths) do
  local s = cnn(w)
  distill(s, {ce = 0.1, kd = 0.9})
  measure(("CNN w%d"):format(w), s)
end

-- ---------------------------------------------------------------- pictures --
local pictures = {}
local gstudent = runs[4]
for _, method in ipairs{"integrated_gradients", "gradcam"} do
  local order = gstudent.compare.methods[method].disagree
  for k = 1, math.min(3, #order) do
    local i = order[k]
    pictures[#pictures + 1] = {image = explain.compare_grid(gstudent.compare, i, {method = method}),
      caption = ("test sample %d (class %s): %s, teacher vs KD + Grad-CAM student"):format(i,
        test.classes[ys:get(i)], method == "gradcam" and "Grad-CAM" or "integrated gradients")}
  end
end
local the_tree = runs[5].model
do
  local f = the_tree:filters{image_shape = {side, side}}
  local tiles = {}
  for k = 1, math.min(15, f:size(1)) do tiles[k] = kdx.viz.heatmap(f:select(1, k)) end
  local labels = {}
  for k = 1, #tiles do labels[k] = "node " .. k end
  pictures[#pictures + 1] = {image = kdx.viz.grid(tiles, {ncol = 8, labels = labels, scale = digits and 6 or 2}),
    caption = "the soft tree's first inner nodes (breadth-first) as pictures: red pixels send a sample to the first child"}
end
local path_text
do
  local e = the_tree:explain(xs:narrow(1, 1, 1))[1]
  local steps = {}
  for _, st in ipairs(e.path) do steps[#steps + 1] = ("node %d -> %s child (p = %.2f)"):format(st.node, st.branch,
    st.probability) end
  path_text = ("The tree's path for test sample 1 (class %s): %s; leaf %d (path probability %.2f) predicts %s."):format(
    test.classes[ys:get(1)], table.concat(steps, ", "), e.leaf, e.probability, test.classes[e.class])
end

-- ------------------------------------------------------------------ report --
local curves_acc, curves_loss = {}, {}
for _, r in ipairs(runs) do
  local acc, loss = {}, {}
  for e, h in ipairs(r.hist) do acc[e], loss[e] = 100 * (h.eval_accuracy or 0 / 0), h.loss end
  curves_acc[#curves_acc + 1] = {name = r.name, y = acc}
  curves_loss[#curves_loss + 1] = {name = r.name, y = loss}
end
local pareto = {}
for _, p in ipairs(sweep) do pareto[#pareto + 1] = {label = p.label, x = p.parameters, y = 100 * p.accuracy} end
local sweep_rows = {}
for _, p in ipairs(sweep) do
  sweep_rows[#sweep_rows + 1] = {p.label, p.parameters, 100 * p.accuracy, 100 * p.fidelity, p.agreement}
end
local best = runs[4].row
local summary = {
  ("teacher CNN: %.1f%% test accuracy, %d parameters (%s)"):format(runs[1].row[2], runs[1].row[5], opt.data),
  ("KD student: %.1f%% accuracy with %.0fx fewer parameters, %.1f%% fidelity to the teacher"):format(runs[3].row[2],
    runs[1].row[5] / runs[3].row[5], runs[3].row[3]),
  ("KD + Grad-CAM student: %.1f%% accuracy; explanation agreement (Spearman) IG %.2f vs %.2f for plain KD, Grad-CAM %.2f vs %.2f"):format(
    best[2], best[8], runs[3].row[8], best[10], runs[3].row[10]),
  ("soft decision tree (depth %d): %.1f%% accuracy, %.1f%% fidelity, one readable path per decision"):format(
    cfg.tree_depth, runs[5].row[2], runs[5].row[3]),
  ("report: %s/report.html (%.0f s)"):format(out_dir, kdx.clock() - t_start),
}
local path = kdx.report.write(out_dir, {
  title = ("kdx vision case study: %s"):format(opt.data),
  summary = table.concat(summary, " · ", 1, 4),
  metrics = {models = metrics_json, sweep = sweep, data = opt.data, small = opt.small or false},
  checkpoints = {teacher = teacher, student_kd = runs[3].model, student_kd_gradcam = runs[4].model,
    soft_tree = the_tree},
  sections = {
    {kind = "config", title = "Configuration", values = {data = opt.data, train_samples = train:size(),
      test_samples = test:size(), explained_samples = xs:size(1), teacher_epochs = cfg.teacher_epochs,
      student_epochs = cfg.student_epochs, optimizer = ("Adam, lr %g"):format(cfg.lr), seed = 0}},
    {kind = "table", title = "Teacher and students",
      columns = {"model", "accuracy %", "fidelity %", "ECE", "parameters", "multiply-adds", "latency ms",
        "IG Spearman", "IG top-10% overlap", "Grad-CAM Spearman", "Grad-CAM SSIM"}, rows = rows,
      caption = "Fidelity: share of test samples where the model predicts the teacher's class. Agreement columns " ..
        "compare each student's explanation of the true class with the teacher's, per sample, averaged. " ..
        "Latency: one sample per call."},
    {kind = "curves", title = "Training curves: test accuracy", x_label = "epoch", y_label = "accuracy %",
      series = curves_acc},
    {kind = "curves", title = "Training curves: training loss", x_label = "epoch", y_label = "loss",
      series = curves_loss},
    {kind = "scatter", title = "The balance: accuracy against size", x_label = "parameters", y_label = "accuracy %",
      points = pareto, front = "max_y_min_x"},
    {kind = "table", title = "Complexity sweep", columns = {"student", "parameters", "accuracy %", "fidelity %",
      "IG agreement (Spearman)"}, rows = sweep_rows},
    {kind = "images", title = "Where teacher and student disagree most", items = pictures,
      caption = "Each row: input | teacher | student | student - teacher, one colour scale (red: for the class)."},
    {kind = "text", title = "A decision of the soft tree", body = path_text},
  },
})
-- the pictures also as files beside the report, for slides and docs
for k, item in ipairs(pictures) do kdx.data.save_png(("%s/picture-%d.png"):format(out_dir, k), item.image) end
do
  local f = assert(io.open(out_dir .. "/pareto.svg.tmp", "w"))
  f:write(kdx.report.scatter_chart(pareto, {x_label = "parameters", y_label = "accuracy %", front = "max_y_min_x"}))
  f:close()
  assert(os.rename(out_dir .. "/pareto.svg.tmp", out_dir .. "/pareto.svg"))
end
print(table.concat(summary, "\n"))
print(path)
