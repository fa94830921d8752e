--- Measures of a distilled student and of how close it stays to its teacher:
-- accuracy, top-5, agreement (fidelity), mean KL to the teacher, expected
-- calibration error, parameter count, multiply-adds per sample, latency,
-- checkpoint size and the train-test gap, and a report of all of them.
--
-- The prediction metrics take either tensors (logits [N, C], labels [N]) or
-- models and data: `metrics.accuracy(logits, y)` or
-- `metrics.accuracy(model, test_loader)`.
-- @module kdx.distill.metrics

local kdx = require "kdx"
local loop = require "kdx.loop"

local M = {}

local function is_module(v) return kdx.nn.Module.is_module(v) end

-- Errors name the function and blame the first caller outside kdx.
local function fail(fname, msg) loop.fail("kdx.distill.metrics." .. fname, "%s", msg) end

-- A data source as something loop.batches reads: datasets go through an
-- unshuffled loader.
local function source(data)
  if loop.is_dataset(data) then return kdx.data.DataLoader(data, {batch_size = 256}) end
  return data
end

--- The logits of model over data (eval mode, no recording; the mode is
-- restored) concatenated in order, and the labels (nil when the data has
-- none): `local logits, y = metrics.outputs(model, data)`. A kdx.data
-- loader's epoch counter is left as it was. Given a list of
-- models, runs them all on each batch of one pass (so a shuffled loader
-- still pairs their rows) and returns the list of logits, then the labels.
function M.outputs(models, data)
  local single = is_module(models)
  local list = single and {models} or models
  if type(list) ~= "table" or #list == 0 then fail("outputs", "expects a kdx.nn module or a list of modules") end
  local modes, outs, ys = {}, {}, {}
  for i, m in ipairs(list) do
    if not is_module(m) then fail("outputs", ("entry %d is not a kdx.nn module"):format(i)) end
    modes[i], outs[i] = m.training, {}
    m:eval()
  end
  local nb = 0
  local src = source(data)
  -- measuring does not move a kdx.data loader on to its next epoch's order
  local epoch = loop.is_loader(src) and math.type(src.epoch) == "integer" and src.epoch or nil
  local ok, err = pcall(kdx.no_grad, function()
    for x, y in loop.batches(src, "kdx.distill.metrics.outputs") do
      nb = nb + 1
      for i, m in ipairs(list) do outs[i][nb] = m(x) end
      if kdx.is_tensor(y) then ys[#ys + 1] = y end
    end
  end)
  if epoch then src.epoch = epoch end
  for i, m in ipairs(list) do m:train(modes[i]) end
  if not ok then error(err, 0) end
  if nb == 0 then fail("outputs", "the data held no batches") end
  local y = (#ys == nb) and kdx.cat(ys, 1) or nil
  for i = 1, #list do outs[i] = kdx.cat(outs[i], 1) end
  if single then return outs[1], y end
  return outs, y
end

local function check_logits(fname, t, name)
  if not kdx.is_tensor(t) or t:dim() ~= 2 then fail(fname, name .. " must be logits [N, C]") end
end

-- (logits, labels) from either form of the arguments.
local function logits_and_labels(fname, a, b)
  if is_module(a) then
    local out, y = M.outputs(a, b)
    if not y then fail(fname, "the data has no labels") end
    return out, y
  end
  check_logits(fname, a, "logits")
  if not kdx.is_tensor(b) or b:dtype() ~= "int64" or b:dim() ~= 1 or b:size(1) ~= a:size(1) then
    fail(fname, "labels must be an int64 tensor [N] matching the logits")
  end
  return a, b
end

-- (student logits, teacher logits, opts) from either form.
local function pair(fname, s, t, data, opts)
  if is_module(s) then
    if not is_module(t) then fail(fname, "teacher must be a module when student is") end
    local outs = M.outputs({s, t}, data)
    return outs[1], outs[2], opts
  end
  check_logits(fname, s, "student logits")
  check_logits(fname, t, "teacher logits")
  if s:size(1) ~= t:size(1) or s:size(2) ~= t:size(2) then
    fail(fname, ("student logits [%d,%d] and teacher logits [%d,%d] differ in shape"):format(
      s:size(1), s:size(2), t:size(1), t:size(2)))
  end
  return s, t, data -- with tensors, the third argument is the options
end

--- Top-1 accuracy in [0, 1]: `accuracy(logits, y)` or `accuracy(model, data)`.
function M.accuracy(a, b)
  local out, y = logits_and_labels("accuracy", a, b)
  return out:argmax(2):eq(y):sum():item() / y:size(1)
end

--- Share of samples whose label is among the k (default 5, at most C)
-- largest logits: `top5(logits, y, {k = 5})` or `top5(model, data, {k})`.
-- Ties count against the sample, as in kdx.evaluate.
function M.top5(a, b, opts)
  local out, y = logits_and_labels("top5", a, b)
  local k = math.min(opts and opts.k or 5, out:size(2))
  return loop.correct_topk(out, y, k) / y:size(1)
end

--- Fidelity: the share of samples where student and teacher predict the
-- same class (argmax, first index on ties): `agreement(s_logits, t_logits)`
-- or `agreement(student, teacher, data)`.
function M.agreement(s, t, data)
  s, t = pair("agreement", s, t, data)
  return s:argmax(2):eq(t:argmax(2)):sum():item() / s:size(1)
end

--- Mean over samples of KL(softmax(t/T) ‖ softmax(s/T)) in nats, without a
-- T² factor (default T = 1): `mean_kl(s_logits, t_logits, {T = 1})` or
-- `mean_kl(student, teacher, data, {T = 1})`.
function M.mean_kl(s, t, data, opts)
  s, t, opts = pair("mean_kl", s, t, data, opts)
  local T = opts and opts.T or 1
  if type(T) ~= "number" or T <= 0 then fail("mean_kl", "T must be a positive number") end
  local ls = kdx.log_softmax(s:double() / T, 2)
  local lt = kdx.log_softmax(t:double() / T, 2)
  return (lt:exp() * (lt - ls)):sum():item() / s:size(1)
end

--- Expected calibration error over `bins` (15) equal-width confidence bins
-- (lower, upper], as Guo et al. 2017: Σ_b |B_b|/N · |accuracy(B_b) −
-- mean confidence(B_b)|, the confidence being the largest softmax
-- probability. `ece(logits, y, {bins = 15})` or `ece(model, data, {bins})`.
-- Also returns the bins: {{count, accuracy, confidence, lower, upper}, ...}.
function M.ece(a, b, opts)
  local out, y = logits_and_labels("ece", a, b)
  local nb = opts and opts.bins or 15
  if math.type(nb) ~= "integer" or nb < 1 then fail("ece", "bins must be a positive integer") end
  local p = kdx.softmax(out:double(), 2)
  local conf, pred = p:max(2)
  local correct = pred:eq(y):totable()
  conf = conf:totable()
  local bins = {}
  for i = 1, nb do bins[i] = {count = 0, hits = 0, sum = 0, lower = (i - 1) / nb, upper = i / nb} end
  for i, c in ipairs(conf) do
    local k = math.max(1, math.min(nb, math.ceil(c * nb)))
    while k > 1 and c <= bins[k].lower do k = k - 1 end
    while k < nb and c > bins[k].upper do k = k + 1 end
    local bin = bins[k]
    bin.count, bin.sum = bin.count + 1, bin.sum + c
    if correct[i] ~= 0 then bin.hits = bin.hits + 1 end
  end
  local n, e = #conf, 0
  for _, bin in ipairs(bins) do
    if bin.count > 0 then
      bin.accuracy, bin.confidence = bin.hits / bin.count, bin.sum / bin.count
      e = e + bin.count / n * math.abs(bin.accuracy - bin.confidence)
    end
    bin.hits, bin.sum = nil, nil
  end
  return e, bins
end

--- Number of trainable scalars of model.
function M.num_parameters(model)
  if not is_module(model) then fail("num_parameters", "model must be a kdx.nn module") end
  return model:num_parameters()
end

local function is_a(m, cls)
  local c = getmetatable(m)
  while c do
    if c == cls then return true end
    c = rawget(c, "super")
  end
  return false
end

-- A batch of one sample of the given shape (a table of per-sample dims, a
-- tensor whose first row is taken, or a dataset / loader / list of batches
-- whose first sample is taken).
local function one_sample(fname, input, n)
  n = n or 1
  if kdx.is_tensor(input) then
    if input:dtype() == "int64" then
      -- ids (an Embedding's input): a constant would be no valid id, so the
      -- data's own rows, repeated as needed
      local idx = {}
      for i = 1, n do idx[i] = (i - 1) % input:size(1) + 1 end
      return input:index_select(1, kdx.tensor(idx, "int64"))
    end
    local shape = input:shape()
    shape[1] = n
    return kdx.full(shape, 0.5, input:dtype())
  end
  if type(input) == "table" and math.type(input[1]) == "integer" then
    local shape = {n}
    for _, d in ipairs(input) do shape[#shape + 1] = d end
    return kdx.full(shape, 0.5)
  end
  if loop.is_dataset(input) then return one_sample(fname, input.x, n) end
  if loop.is_loader(input) and loop.is_dataset(input.dataset) and not input.transform then
    return one_sample(fname, input.dataset.x, n)
  end
  if input ~= nil then
    local x = loop.batches(input, "kdx.distill.metrics." .. fname)()
    if kdx.is_tensor(x) then return one_sample(fname, x, n) end
  end
  fail(fname, "input must be a per-sample shape {C, H, W}, a tensor [N, ...], or data")
end

--- Multiply-adds per sample of one forward pass, counted by forward hooks on
-- every Linear (in_features per output element) and Conv2d (in_channels /
-- groups · kh · kw per output element). Bias additions, batch norm, pooling,
-- activations and elementwise ops are not counted (each costs one operation
-- per element, well under 1% for these networks). `input`: the per-sample
-- shape `{1, 8, 8}`, or a tensor / data to take it from. Returns the total
-- and a list {{name, kind, macs}, ...} per layer, in call order.
function M.macs(model, input)
  if not is_module(model) then fail("macs", "model must be a kdx.nn module") end
  local x = one_sample("macs", input)
  local Linear, Conv2d = kdx.nn.Linear, kdx.nn.Conv2d
  local layers, handles, total = {}, {}, 0
  for name, m in model:named_modules() do
    local kind = is_a(m, Conv2d) and "Conv2d" or is_a(m, Linear) and "Linear" or nil
    if kind then
      handles[#handles + 1] = m:register_forward_hook(function(mod, _, out)
        local w = mod.weight
        local per_out = w:numel() // w:size(1) -- in/groups·kh·kw for a conv, in_features for a linear
        local macs = out:numel() // x:size(1) * per_out
        layers[#layers + 1] = {name = name, kind = kind, macs = macs}
        total = total + macs
      end)
    end
  end
  local was = model.training
  model:eval()
  local ok, err = pcall(kdx.no_grad, function() return model(x) end)
  model:train(was)
  for _, h in ipairs(handles) do h.remove() end
  if not ok then error(err, 0) end
  return total, layers
end

--- Inference time in milliseconds per sample at each batch size (default
-- {1, 128}): the median over `repeats` (7) timed forward passes (after one
-- untimed), in eval mode without recording, on inputs of the given shape
-- (as macs). Returns {[1] = ms, [128] = ms}. Wall-clock: not reproducible.
function M.latency(model, input, opts)
  if not is_module(model) then fail("latency", "model must be a kdx.nn module") end
  opts = opts or {}
  local sizes, repeats = opts.batch_sizes or {1, 128}, opts.repeats or 7
  if math.type(repeats) ~= "integer" or repeats < 1 then fail("latency", "repeats must be a positive integer") end
  local was = model.training
  model:eval()
  local res = {}
  local ok, err = pcall(kdx.no_grad, function()
    for _, b in ipairs(sizes) do
      local x = one_sample("latency", input, b)
      model(x)
      local times = {}
      for r = 1, repeats do
        local t0 = kdx.clock()
        model(x)
        times[r] = kdx.clock() - t0
      end
      table.sort(times)
      local mid = (repeats + 1) // 2
      local med = repeats % 2 == 1 and times[mid] or (times[mid] + times[mid + 1]) / 2
      res[b] = med * 1000 / b
    end
  end)
  model:train(was)
  if not ok then error(err, 0) end
  return res
end

--- Size in bytes of model's state dict saved as a safetensors file (written
-- to a temporary file, then removed).
function M.checkpoint_size(model)
  if not is_module(model) then fail("checkpoint_size", "model must be a kdx.nn module") end
  local path = os.tmpname()
  local ok, err = pcall(model.save, model, path)
  local size
  if ok then
    local f = io.open(path, "rb")
    if f then size = f:seek("end") f:close() end
  end
  os.remove(path)
  if not ok then error(err, 0) end
  return size
end

--- Over-fitting: accuracy on train_data minus accuracy on test_data.
-- Returns the gap, then the two accuracies.
function M.train_test_gap(model, train_data, test_data)
  local a, b = M.accuracy(model, train_data), M.accuracy(model, test_data)
  return a - b, a, b
end

local function fmt_int(n)
  local s = tostring(math.floor(n))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

-- The printable summary of a report.
local function summary(r)
  local rows = {
    {"accuracy", function(m) return ("%.2f%%"):format(100 * m.accuracy) end},
    {"top-5", function(m) return ("%.2f%%"):format(100 * m.top5) end},
    {"ECE (15 bins)", function(m) return ("%.4f"):format(m.ece) end},
    {"parameters", function(m) return fmt_int(m.num_parameters) end},
    {"MACs / sample", function(m) return fmt_int(m.macs) end},
    {"checkpoint", function(m) return ("%s bytes"):format(fmt_int(m.checkpoint_size)) end},
    {"latency b=1", function(m) return m.latency and ("%.4f ms"):format(m.latency[1]) end},
    {"latency b=128", function(m) return m.latency and ("%.4f ms/sample"):format(m.latency[128]) end},
    {"train-test gap", function(m) return m.train_test_gap and ("%+.2f pt"):format(100 * m.train_test_gap) end},
  }
  local lines = {("%-16s %18s %18s"):format("", "student", "teacher")}
  for _, row in ipairs(rows) do
    local a, b = row[2](r.student), row[2](r.teacher)
    if a or b then lines[#lines + 1] = ("%-16s %18s %18s"):format(row[1], a or "-", b or "-") end
  end
  lines[#lines + 1] = ("agreement %.2f%%   mean KL(teacher ‖ student) %.4f nats   %.1fx fewer parameters, %.1fx fewer MACs")
    :format(100 * r.agreement, r.mean_kl, r.compression, r.mac_ratio)
  return table.concat(lines, "\n")
end

local Report = {__name = "kdx.distill.metrics.Report"}
Report.__index = Report
Report.__tostring = function(r) return r.summary end

--- Every metric for a student and its teacher on data: {student = {...},
-- teacher = {...}, agreement, mean_kl, compression (parameter ratio
-- teacher/student), mac_ratio, summary}; each side holds accuracy, top5,
-- ece, num_parameters, macs, checkpoint_size, latency ({[1], [128]} ms per
-- sample, unless opts.latency == false) and train_test_gap (with
-- opts.train_data). opts: train_data, T (for mean_kl, 1), latency (true),
-- repeats (7). `print(report)` prints the summary.
function M.report(student, teacher, data, opts)
  opts = opts or {}
  if not is_module(student) or not is_module(teacher) then fail("report", "student and teacher must be modules") end
  local outs, y = M.outputs({student, teacher}, data)
  local s_out, t_out = outs[1], outs[2]
  if not y then fail("report", "the data has no labels") end
  local function side(model, out)
    local m = {
      accuracy = M.accuracy(out, y), top5 = M.top5(out, y), ece = (M.ece(out, y)),
      num_parameters = model:num_parameters(), macs = (M.macs(model, data)),
      checkpoint_size = M.checkpoint_size(model),
    }
    if opts.latency ~= false then m.latency = M.latency(model, data, {repeats = opts.repeats}) end
    if opts.train_data then m.train_test_gap = M.accuracy(model, opts.train_data) - m.accuracy end
    return m
  end
  local r = setmetatable({student = side(student, s_out), teacher = side(teacher, t_out)}, Report)
  r.agreement = M.agreement(s_out, t_out)
  r.mean_kl = M.mean_kl(s_out, t_out, {T = opts.T or 1})
  r.compression = r.teacher.num_parameters / math.max(r.student.num_parameters, 1)
  r.mac_ratio = r.teacher.macs / math.max(r.student.macs, 1)
  r.summary = summary(r)
  return r
end

return M
