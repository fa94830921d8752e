--- The training loop: kdx.train{...} runs epochs of forward, loss, backward
-- and optimizer steps with a progress display, and kdx.evaluate measures a
-- model on held-out data.
-- @module kdx.train

local kdx = require "kdx"

local M = {}

-- Batches of data as an iterator of (x, y): a function returning an
-- iterator, an object with :iter(), or a list of {x, y} (or {x = , y = }).
local function batches(data, fname)
  if type(data) == "function" then return data() end
  if type(data) == "table" and data.iter then return data:iter() end
  if type(data) == "table" then
    local i = 0
    return function()
      i = i + 1
      local b = data[i]
      if b then return b.x or b[1], b.y or b[2] end
    end
  end
  error(fname .. ": data must be a list of {x, y} batches, a loader with :iter(), or a function", 3)
end

local function loss_fn(loss, fname)
  if loss == nil or loss == "cross_entropy" then return kdx.nn.functional.cross_entropy end
  if type(loss) == "string" then
    local f = kdx.nn.functional[loss]
    if not f then error(("%s: unknown loss %q"):format(fname, loss), 3) end
    return f
  end
  if type(loss) ~= "function" then error(fname .. ": loss must be a function or a loss name", 3) end
  return loss
end

-- Correct top-k predictions of logits [N, C] for int64 labels [N].
local function correct_topk(out, y, k)
  if out:dim() ~= 2 or not kdx.is_tensor(y) or y:dtype() ~= "int64" or y:dim() ~= 1 then return nil end
  if k == 1 then return out:argmax(2):eq(y):sum():item() end
  local hits = 0
  local n = out:size(1)
  local t = out:totable()
  local labels = y:totable()
  for i = 1, n do
    local row, target = t[i], labels[i]
    local v = row[target]
    local above = 0
    for _, w in ipairs(row) do if w > v then above = above + 1 end end
    if above < k then hits = hits + 1 end
  end
  return hits
end

local function is_terminal()
  local ok = os.execute("test -t 1")
  return ok == true or ok == 0
end

local function fmt_time(s)
  if s >= 3600 then return ("%dh%02dm"):format(s // 3600, s % 3600 // 60) end
  if s >= 60 then return ("%dm%02ds"):format(s // 60, math.floor(s % 60)) end
  return ("%.0fs"):format(s)
end

--- Measures model on data without recording: returns {loss, accuracy, top5, n}
-- (accuracy and top5 for classification outputs). opts: loss (function or
-- name, default cross_entropy).
function M.evaluate(model, data, opts)
  opts = opts or {}
  local lf = loss_fn(opts.loss, "kdx.evaluate")
  local was = model.training
  model:eval()
  local total, n, c1, c5, classify = 0, 0, 0, 0, true
  kdx.no_grad(function()
    for x, y in batches(data, "kdx.evaluate") do
      local out = model(x)
      local b = x:size(1)
      total = total + lf(out, y):item() * b
      n = n + b
      local k1 = correct_topk(out, y, 1)
      if k1 then
        c1 = c1 + k1
        c5 = c5 + correct_topk(out, y, math.min(5, out:size(2)))
      else
        classify = false
      end
    end
  end)
  model:train(was)
  if n == 0 then error("kdx.evaluate: the data held no batches", 2) end
  return {loss = total / n, accuracy = classify and c1 / n or nil, top5 = classify and c5 / n or nil, n = n}
end

--- Trains model. Fields: model, data, optimizer (required), loss (function
-- (output, y) -> scalar, or a kdx.nn.functional name; default
-- "cross_entropy"), epochs (1), scheduler (stepped per epoch), eval_data,
-- on_epoch(epoch, stats) (return false to stop), progress (true, false, or
-- "auto": a live bar on a terminal, one line per epoch otherwise), log
-- (function(line), default print). Returns the history: a list of per-epoch
-- {epoch, loss, accuracy, eval_loss, eval_accuracy, seconds, samples_per_second, lr}.
function M.train(args)
  local fname = "kdx.train"
  if type(args) ~= "table" then error(fname .. ": expects a table of options", 2) end
  local model, opt = args.model, args.optimizer
  if not model then error(fname .. ": model is required", 2) end
  if not opt then error(fname .. ": optimizer is required", 2) end
  if args.data == nil then error(fname .. ": data is required", 2) end
  local lf = loss_fn(args.loss, fname)
  local epochs = args.epochs or 1
  local log = args.log or print
  local progress = args.progress
  if progress == nil or progress == "auto" then progress = is_terminal() end
  local nbatches = type(args.data) == "table" and not args.data.iter and #args.data or
    (type(args.data) == "table" and args.data.__len and #args.data) or nil
  local history = {}
  for epoch = 1, epochs do
    model:train()
    local t0 = kdx.clock()
    local sum, n, correct, seen, b = 0, 0, 0, 0, 0
    for x, y in batches(args.data, fname) do
      b = b + 1
      opt:zero_grad()
      local out = model(x)
      local loss = lf(out, y)
      loss:backward()
      opt:step()
      local bs = x:size(1)
      sum = sum + loss:item() * bs
      n = n + bs
      local k = kdx.no_grad(correct_topk, out, y, 1)
      if k then correct, seen = correct + k, seen + bs end
      if progress then
        local dt = kdx.clock() - t0
        local rate = n / math.max(dt, 1e-9)
        local bar, eta = "", ""
        if nbatches then
          local w = math.floor(20 * b / nbatches)
          bar = "[" .. string.rep("=", w) .. string.rep(" ", 20 - w) .. "] "
          eta = " ETA " .. fmt_time(dt / b * (nbatches - b))
        end
        io.write(("\repoch %d/%d %s%d batches  %.0f samples/s  loss %.4f%s   "):format(epoch, epochs, bar, b, rate,
          sum / n, eta))
        io.flush()
      end
    end
    if n == 0 then error(fname .. ": the data held no batches", 2) end
    local dt = kdx.clock() - t0
    local stats = {epoch = epoch, loss = sum / n, accuracy = seen > 0 and correct / seen or nil, seconds = dt,
      samples_per_second = n / math.max(dt, 1e-9), lr = opt.param_groups[1].lr}
    if args.eval_data then
      local ev = M.evaluate(model, args.eval_data, {loss = args.loss})
      stats.eval_loss, stats.eval_accuracy = ev.loss, ev.accuracy
    end
    if args.scheduler then args.scheduler:step() end
    history[epoch] = stats
    if progress then io.write("\r") end
    local line = ("epoch %d/%d  loss %.4f"):format(epoch, epochs, stats.loss)
    if stats.accuracy then line = line .. ("  acc %.2f%%"):format(100 * stats.accuracy) end
    if stats.eval_loss then line = line .. ("  eval loss %.4f"):format(stats.eval_loss) end
    if stats.eval_accuracy then line = line .. ("  eval acc %.2f%%"):format(100 * stats.eval_accuracy) end
    line = line .. ("  %.1fs  %.0f samples/s"):format(dt, stats.samples_per_second)
    if log then log(line) end
    if args.on_epoch and args.on_epoch(epoch, stats) == false then break end
  end
  return history
end

return M
