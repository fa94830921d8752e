-- The language case study: which language is a word from? A character-level
-- CNN teacher learns it from Debian's word lists (kdx.data.words), a small
-- CNN student learns it from the teacher (KD) and, for comparison, from the
-- labels alone; each model's reasons are per-character attributions (layer
-- integrated gradients at the embedding, summed over the embedding dim),
-- compared between teacher and student word by word and shown as coloured
-- text in one HTML report.
--   lua5.4 examples/12_fusion_language.lua [--out DIR] [--small]
-- The full run takes about two minutes on 2 cores; --small a few seconds
-- (the tests run it). The word lists come from Debian's wamerican, wngerman,
-- wfrench, wspanish and witalian (`scripts/deps.sh --data` installs them).
local kdx = require "kdx"
local nn, M, explain = kdx.nn, kdx.distill.metrics, kdx.explain
io.stdout:setvbuf("line")

local opt = {}
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--small" then opt.small = true
    elseif a == "--out" then opt.out = arg[i + 1]; i = i + 1
    else error("unknown argument " .. a) end
    i = i + 1
  end
end
local out_dir = opt.out or (opt.small and "/tmp/kdx-language-small" or "out/language")
local t_start = kdx.clock()
kdx.manual_seed(0)

-- -------------------------------------------------------------- the budget --
local cfg = {
  languages = {"english", "german", "french", "spanish", "italian"},
  per_language = opt.small and 300 or 4000,
  max_len = 12,
  teacher_epochs = opt.small and 2 or 12,
  student_epochs = opt.small and 2 or 12,
  explain_n = opt.small and 16 or 300,
  steps = opt.small and 8 or 32,
  shown = opt.small and 4 or 12,
  lr = 3e-3,
}

local ok, train, test = pcall(kdx.data.words, {languages = cfg.languages, per_language = cfg.per_language,
  max_len = cfg.max_len, seed = 0})
if not ok then
  io.stderr:write("12_fusion_language: cannot load the word lists: ", tostring(train), "\n")
  os.exit(1)
end
local V = #train.alphabet + 1 -- the ids: 1 = padding, 2..V the characters
local K = #train.classes
local function loader(seed) return kdx.data.DataLoader(train, {batch_size = 64, shuffle = true, seed = seed}) end

-- ---------------------------------------------------------------- models --
-- Embedding -> [N, E, 1, L] -> one Conv2d per kernel width (1 x k, padded so
-- every position has an output) -> ReLU -> the maximum over positions -> a
-- linear layer on the concatenated maxima: each channel is a character
-- n-gram detector and the classifier sees which n-grams occur anywhere.
-- kdx.explain feeds float batches: the ids are cast back to int64 here. The
-- size counter of kdx.distill.metrics probes with a constant batch (0 as
-- int64), so ids below 1 count as padding.
local CharCNN = nn.Module:extend("CharCNN")
function CharCNN:init(embed, channels, kernels)
  self.kernels = kernels
  self.embed = nn.Embedding(V, embed)
  for i, k in ipairs(kernels) do
    self["conv" .. i] = nn.Conv2d(embed, channels, {1, k}, {padding = {0, k // 2}})
  end
  self.fc = nn.Linear(channels * #kernels, K)
end
function CharCNN:forward(x)
  if x:dtype() ~= "int64" then x = x:to("int64") end
  x = x:clamp(1, nil)
  local e = self.embed(x) -- [N, L, E]
  local n, l, d = e:size(1), e:size(2), e:size(3)
  local h = e:transpose(2, 3):reshape{n, d, 1, l}
  local pooled = {}
  for i = 1, #self.kernels do pooled[i] = self["conv" .. i](h):relu():amax({3, 4}) end
  return self.fc(kdx.cat(pooled, 2))
end
function CharCNN:extra_repr() return ("kernels %s"):format(table.concat(self.kernels, ",")) end

local TEACHER = {embed = 32, channels = 128, kernels = {3, 5}}
local STUDENT = {embed = 8, channels = 24, kernels = {3}}
local function make(spec) return CharCNN(spec.embed, spec.channels, spec.kernels) end
local function adam(params) return kdx.optim.Adam(params, {lr = cfg.lr}) end
local quiet = function() end

local teacher = make(TEACHER)
local t_hist = kdx.train{model = teacher, data = loader(1), eval_data = kdx.data.DataLoader(test, {batch_size = 256}),
  optimizer = adam(teacher:parameters()), epochs = cfg.teacher_epochs, progress = false, log = quiet}
teacher:eval()

local function distill(student, loss)
  local hist = kdx.distill.run{teacher = teacher, student = student, data = loader(2), eval_data = test,
    optimizer = adam, epochs = cfg.student_epochs, loss = loss, T = 4, progress = false, log = quiet}
  student:eval()
  return hist
end

local runs = {}
local function add(name, model, hist, note)
  runs[#runs + 1] = {name = name, model = model, hist = hist, note = note}
  return runs[#runs]
end
add("teacher CNN", teacher, t_hist, "trained on the labels")
do
  local s = make(STUDENT)
  add("student CNN, labels only", s, distill(s, {ce = 1}), "no teacher")
  local k = make(STUDENT)
  add("student CNN, KD", k, distill(k, {ce = 0.1, kd = 0.9}), "Hinton KD, T = 4")
end
local kd = runs[3]

-- ---------------------------------------------------------- measurements --
-- Per-language accuracy of a model on the test words.
local function per_language(model)
  local pred = kdx.no_grad(function() return model(test.x):argmax(2) end)
  local right, total = {}, {}
  for k = 1, K do right[k], total[k] = 0, 0 end
  for i = 1, test:size() do
    local y = test.y:get(i)
    total[y] = total[y] + 1
    if pred:get(i) == y then right[y] = right[y] + 1 end
  end
  local acc = {}
  for k = 1, K do acc[k] = 100 * right[k] / total[k] end
  return acc
end

-- Per-character attributions of the words in rows x (int64 [n, L]) toward
-- class target: layer integrated gradients at the embedding from the all-
-- padding word (id 1) to the word, summed over the embedding dim -> [n, L],
-- and the completeness gap per word.
local function char_attributions(model, x, target)
  local attr, delta = explain.layer_integrated_gradients(model, x:to("float32"), {layer = "embed", target = target,
    baseline = train.pad, steps = cfg.steps})
  return attr:sum(3), delta
end

local n_exp = math.min(cfg.explain_n, test:size())
local xs = test.x:narrow(1, 1, n_exp)
local ys = test.y:narrow(1, 1, n_exp)
local words = {}
for i = 1, n_exp do words[i] = test.words[i] end
local lengths = {}
for i = 1, n_exp do lengths[i] = utf8.len(words[i]) end

-- The attributions of one model over a word's own characters (padding is
-- exactly 0 and would make any two models agree).
local function chars_of(attr, i)
  return attr:select(1, i):narrow(1, 1, lengths[i]):reshape{1, lengths[i]}
end

local t_attr, t_delta = char_attributions(teacher, xs, ys)
local rows, metrics_json, lang_rows = {}, {}, {}
for i, r in ipairs(runs) do
  local rep = M.report(r.model, teacher, test, {latency = false})
  local s = rep.student
  local attr, delta = t_attr, t_delta
  if i > 1 then attr, delta = char_attributions(r.model, xs, ys) end
  r.attr = attr
  -- agreement with the teacher, word by word over the word's characters
  local rho, top1, n_rho = 0, 0, 0
  r.rho = {}
  for w = 1, n_exp do
    local a, b = chars_of(t_attr, w), chars_of(attr, w)
    local v = explain.metrics.spearman(a, b):get(1)
    r.rho[w] = v
    if v == v then rho, n_rho = rho + v, n_rho + 1 end -- a constant map has no ranks: NaN, left out
    if a:argmax(2):get(1) == b:argmax(2):get(1) then top1 = top1 + 1 end
  end
  r.spearman = rho / math.max(n_rho, 1)
  r.top1 = top1 / n_exp
  r.gap = delta:abs():mean():item()
  r.accuracy, r.fidelity = s.accuracy, i > 1 and rep.agreement or 1
  r.row = {r.name, 100 * s.accuracy, 100 * r.fidelity, s.ece, s.num_parameters, s.macs,
    i > 1 and r.spearman or "-", i > 1 and 100 * r.top1 or "-", r.gap}
  rows[i] = r.row
  local langs = per_language(r.model)
  local lr = {r.name}
  for k = 1, K do lr[k + 1] = langs[k] end
  lang_rows[i] = lr
  metrics_json[r.name] = {accuracy = s.accuracy, fidelity = r.fidelity, ece = s.ece, parameters = s.num_parameters,
    macs = s.macs, char_spearman = r.spearman, top_char_agreement = r.top1, ig_gap = r.gap,
    per_language_accuracy = langs}
end

-- ------------------------------------------------------ coloured words --
local function chars(w)
  local t = {}
  for _, cp in utf8.codes(w) do t[#t + 1] = utf8.char(cp) end
  return t
end

local t_pred = kdx.no_grad(function() return kdx.softmax(teacher(xs), 2) end)
local s_pred = kdx.no_grad(function() return kdx.softmax(kd.model(xs), 2) end)
local function item(r, probs, w)
  local scores = {}
  for j = 1, lengths[w] do scores[j] = r.attr:get(w, j) end
  local p, c = probs:select(1, w):max(1)
  local caption = ("%s: %s (%s), predicts %s (p = %.2f)"):format(r.name, words[w], test.classes[ys:get(w)],
    test.classes[c:item()], p:item())
  if r ~= runs[1] then caption = caption .. (", Spearman with the teacher %.2f"):format(r.rho[w]) end
  return {tokens = chars(words[w]), scores = scores, caption = caption}
end
local function pair(w) return item(runs[1], t_pred, w), item(kd, s_pred, w) end

-- the first words of each language, and the words where the KD student's
-- reasons differ most from the teacher's (lowest Spearman, NaN first)
local picked, per = {}, math.max(1, cfg.shown // K)
do
  local n_lang = {}
  for w = 1, n_exp do
    local y = ys:get(w)
    if (n_lang[y] or 0) < per and lengths[w] >= 4 then
      n_lang[y] = (n_lang[y] or 0) + 1
      picked[#picked + 1] = w
    end
  end
  table.sort(picked, function(a, b) return ys:get(a) < ys:get(b) or (ys:get(a) == ys:get(b) and a < b) end)
end
local same_items = {}
for _, w in ipairs(picked) do
  local a, b = pair(w)
  same_items[#same_items + 1] = a
  same_items[#same_items + 1] = b
end
local order = {}
for w = 1, n_exp do if lengths[w] >= 4 then order[#order + 1] = w end end
local function key(w) local v = kd.rho[w]; return v == v and v or -2 end
table.sort(order, function(a, b) return key(a) < key(b) or (key(a) == key(b) and a < b) end)
local disagree_items = {}
for k = 1, math.min(cfg.shown // 2, #order) do
  local a, b = pair(order[k])
  disagree_items[#disagree_items + 1] = a
  disagree_items[#disagree_items + 1] = b
end

-- ------------------------------------------------------------------ report --
local curves_acc, curves_loss = {}, {}
for _, r in ipairs(runs) do
  local acc, loss = {}, {}
  for e, h in ipairs(r.hist) do acc[e], loss[e] = 100 * (h.eval_accuracy or 0 / 0), h.loss end
  curves_acc[#curves_acc + 1] = {name = r.name, y = acc}
  curves_loss[#curves_loss + 1] = {name = r.name, y = loss}
end
local lang_columns = {"model"}
for k = 1, K do lang_columns[k + 1] = test.classes[k] .. " %" end

local summary = {
  ("teacher char-CNN: %.1f%% test accuracy on %d languages (chance %.0f%%), %d parameters"):format(
    100 * runs[1].accuracy, K, 100 / K, runs[1].row[5]),
  ("KD student: %.1f%% accuracy (labels only: %.1f%%) with %.0fx fewer parameters, %.1f%% fidelity to the teacher"):format(
    100 * kd.accuracy, 100 * runs[2].accuracy, runs[1].row[5] / kd.row[5], 100 * kd.fidelity),
  ("per-character agreement with the teacher (Spearman, %d test words): KD %.2f, labels only %.2f"):format(n_exp,
    kd.spearman, runs[2].spearman),
  ("same most important character as the teacher: KD %.0f%%, labels only %.0f%% of the words"):format(100 * kd.top1,
    100 * runs[2].top1),
  ("report: %s/report.html (%.0f s)"):format(out_dir, kdx.clock() - t_start),
}
local path = kdx.report.write(out_dir, {
  title = "kdx language case study: which language is a word from?",
  summary = table.concat(summary, " · ", 1, 4),
  metrics = {models = metrics_json, classes = test.classes, alphabet = table.concat(train.alphabet),
    explained_words = n_exp, small = opt.small or false},
  checkpoints = {teacher = teacher, student_kd = kd.model, student_labels = runs[2].model},
  sections = {
    {kind = "config", title = "Configuration", values = {languages = table.concat(cfg.languages, ", "),
      words_per_language = cfg.per_language, train_words = train:size(), test_words = test:size(),
      max_len = cfg.max_len, alphabet = ("%d characters: %s"):format(#train.alphabet, table.concat(train.alphabet)),
      teacher = ("embedding %d, kernels %s x %d channels"):format(TEACHER.embed, table.concat(TEACHER.kernels, ","),
        TEACHER.channels),
      student = ("embedding %d, kernels %s x %d channels"):format(STUDENT.embed, table.concat(STUDENT.kernels, ","),
        STUDENT.channels),
      teacher_epochs = cfg.teacher_epochs, student_epochs = cfg.student_epochs,
      optimizer = ("Adam, lr %g, batch 64"):format(cfg.lr), explained_words = n_exp,
      attribution = ("layer integrated gradients at the embedding, baseline the all-padding word, " ..
        "%d Gauss-Legendre steps, summed over the embedding dim"):format(cfg.steps),
      seed = 0}},
    {kind = "table", title = "Teacher and students",
      columns = {"model", "accuracy %", "fidelity %", "ECE", "parameters", "multiply-adds", "char Spearman",
        "same top character %", "mean |IG gap|"}, rows = rows,
      caption = "Fidelity: share of test words where the model predicts the teacher's class. Char Spearman: " ..
        "rank correlation of the model's and the teacher's per-character attributions for the true class, over " ..
        "the word's characters, averaged over the explained test words. IG gap: |sum of attributions - " ..
        "(f(word) - f(padding))|, the completeness error of the integral."},
    {kind = "table", title = "Accuracy per language", columns = lang_columns, rows = lang_rows},
    {kind = "curves", title = "Training curves: test accuracy", x_label = "epoch", y_label = "accuracy %",
      series = curves_acc},
    {kind = "curves", title = "Training curves: training loss", x_label = "epoch", y_label = "loss",
      series = curves_loss, caption = "The KD student's loss is 0.1 CE + 0.9 T^2 KL (T = 4), on another scale " ..
        "than the cross entropy of the other two."},
    {kind = "text", title = "How the per-character attributions are made", body = table.concat({
      "A word enters the models as character ids, which have no gradient. The attributions are therefore " ..
      "integrated gradients in the space of the embedding layer (kdx.explain.layer_integrated_gradients, " ..
      "layer \"embed\"): the path runs from the embedding of the all-padding word to the word's embedding, " ..
      "and each position's attribution is summed over the embedding dim. Padding positions are the same at " ..
      "both ends of the path, so they get exactly 0; the scores of a word add up to f(word) - f(padding) for " ..
      "the true class, up to the IG gap in the table.",
      "Agreement is measured per word over its own characters only (the zeros of the padding would make any " ..
      "two models look alike), then averaged over the explained test words."}, "\n\n")},
    {kind = "text_attributions", title = "Why this language? Teacher and KD student on the same words",
      items = same_items,
      caption = "Each character's share of the evidence for the word's true language: red for, blue against, " ..
        "strength relative to the word's largest |score| (hover for the value)."},
    {kind = "text_attributions", title = "Where teacher and student disagree most", items = disagree_items,
      caption = "The explained words (4 characters or more) with the lowest Spearman correlation between the " ..
        "KD student's and the teacher's per-character attributions."},
  },
})
print(table.concat(summary, "\n"))
print(path)
