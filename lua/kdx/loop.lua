--- What every training loop shares: batches from any kind of data source
-- (with the sample indices behind them, for caches), top-k counts, the
-- progress display and the per-epoch driver that kdx.train and
-- kdx.distill build on.
-- @module kdx.loop

local kdx = require "kdx"

local M = {}

local SOURCE = debug.getinfo(1, "S").source
-- "@.../kdx/": frames from any file of the kdx Lua package are library frames
local PACKAGE = SOURCE:match("^(@.*[/\\]kdx[/\\])loop%.lua$")

--- Raises "<fname>: <message>" blaming the first caller outside the kdx Lua
-- package (and outside C functions such as pcall), so an error about the
-- user's arguments names the user's line however deep it is found.
function M.fail(fname, fmt, ...)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if info == nil then break end
    local src = info.source
    local inside = src == SOURCE or src == "=[C]" or (PACKAGE ~= nil and src:sub(1, #PACKAGE) == PACKAGE)
    if not inside then break end
    level = level + 1
  end
  error(("%s: " .. fmt):format(fname, ...), level)
end
local fail = M.fail

local function is_loader(data)
  return type(data) == "table" and data.iter ~= nil
end

local function is_dataset(data)
  return type(data) == "table" and kdx.is_tensor(rawget(data, "x")) and data.subset ~= nil
end

--- True for an object with :iter() (a loader); M.is_dataset: true for a kdx.data dataset.
M.is_loader, M.is_dataset = is_loader, is_dataset

--- Batches of data as an iterator of (x, y): a function returning an
-- iterator, an object with :iter(), or a list of {x, y} (or {x = , y = }).
-- Errors name fname and blame the user's line.
function M.batches(data, fname)
  if type(data) == "function" then return data() end
  if is_loader(data) then return data:iter() end
  if type(data) == "table" and not is_dataset(data) then
    local i = 0
    return function()
      i = i + 1
      local b = data[i]
      if b then return b.x or b[1], b.y or b[2] end
    end
  end
  fail(fname, "data must be a list of {x, y} batches, a loader with :iter(), or a function")
end

--- Like batches, but also yields a key for each batch: for a kdx.data
-- DataLoader the int64 tensor of the (1-based) dataset indices in the batch,
-- for a list of batches the batch's position. Other sources yield no key.
-- The DataLoader's order is the one its :iter() would give (same seed, same
-- epoch counter), so `for x, y, idx in loop.indexed_batches(loader)` can
-- stand in for `loader:iter()`.
function M.indexed_batches(data, fname)
  if is_loader(data) and is_dataset(data.dataset) and data.batch_size then
    data.epoch = data.epoch + 1
    local ds, bs, n = data.dataset, data.batch_size, data.dataset:size()
    local order = data.shuffle and kdx.data.permutation(n, data.seed + data.epoch) or nil
    local at = 1
    return function()
      if at > n or (data.drop_last and at + bs - 1 > n) then return nil end
      local len = math.min(bs, n - at + 1)
      local idx = order and order:narrow(1, at, len) or kdx.arange(at, at + len)
      local x, y
      if order then
        x = ds.x:index_select(1, idx)
        y = ds.y and ds.y:index_select(1, idx)
      else
        x = ds.x:narrow(1, at, len):contiguous()
        y = ds.y and ds.y:narrow(1, at, len)
      end
      at = at + len
      if data.transform then x = data.transform(x) end
      return x, y, idx
    end
  end
  if type(data) == "table" and not is_loader(data) and not is_dataset(data) then
    local i = 0
    return function()
      i = i + 1
      local b = data[i]
      if b then return b.x or b[1], b.y or b[2], i end
    end
  end
  return M.batches(data, fname)
end

--- Number of batches per epoch, or nil when the source cannot tell.
function M.num_batches(data)
  if type(data) ~= "table" then return nil end
  if not is_loader(data) then return #data end
  local mt = getmetatable(data)
  if mt and mt.__len then return #data end
  return nil
end

--- Correct top-k predictions of logits [N, C] for int64 labels [N], or nil
-- when the output is not a classification.
function M.correct_topk(out, y, k)
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

--- True when standard output is a terminal.
function M.is_terminal()
  local ok = os.execute("test -t 1")
  return ok == true or ok == 0
end

--- "1h02m", "3m05s", "7s".
function M.fmt_time(s)
  if s >= 3600 then return ("%dh%02dm"):format(s // 3600, s % 3600 // 60) end
  if s >= 60 then return ("%dm%02ds"):format(s // 60, math.floor(s % 60)) end
  return ("%.0fs"):format(s)
end

-- ------------------------------------------------------------- progress --

local Progress = {}
Progress.__index = Progress

--- A progress display: {enabled = bool, epochs = n, nbatches = n or nil}.
-- :start(epoch), then :update(batch_size, running_loss) per batch, then
-- :finish() before the epoch's line is logged.
function M.progress(opts)
  return setmetatable({enabled = opts.enabled, epochs = opts.epochs, nbatches = opts.nbatches}, Progress)
end

--- Starts timing epoch `epoch`.
function Progress:start(epoch)
  self.epoch, self.t0, self.b, self.n = epoch, kdx.clock(), 0, 0
end

--- Counts one batch of bs samples and redraws the bar with the running loss.
function Progress:update(bs, loss)
  self.b, self.n = self.b + 1, self.n + bs
  if not self.enabled then return end
  local dt = kdx.clock() - self.t0
  local rate = self.n / math.max(dt, 1e-9)
  local bar, eta = "", ""
  if self.nbatches then
    local w = math.min(20, math.floor(20 * self.b / self.nbatches))
    bar = "[" .. string.rep("=", w) .. string.rep(" ", 20 - w) .. "] "
    eta = " ETA " .. M.fmt_time(dt / self.b * math.max(self.nbatches - self.b, 0))
  end
  io.write(("\repoch %d/%d %s%d batches  %.0f samples/s  loss %.4f%s   "):format(self.epoch, self.epochs, bar,
    self.b, rate, loss, eta))
  io.flush()
end

--- Clears the bar's line (on a terminal) before the epoch's line is logged.
function Progress:finish()
  if self.enabled then io.write("\r\27[K") io.flush() end
end

-- Fields of a stats table shown in the epoch line, in order, with labels.
local LINE = {
  {"accuracy", "acc", true}, {"eval_loss", "eval loss"}, {"eval_accuracy", "eval acc", true},
  {"eval_agreement", "agree", true},
}

--- The one-line summary of an epoch: loss, the named loss terms, accuracy,
-- eval loss / accuracy / agreement when present, time and throughput.
function M.epoch_line(stats, epochs)
  local parts = {("epoch %d/%d  loss %.4f"):format(stats.epoch, epochs, stats.loss)}
  if stats.terms then
    local names = {}
    for k in pairs(stats.terms) do names[#names + 1] = k end
    table.sort(names)
    local t = {}
    for _, k in ipairs(names) do t[#t + 1] = ("%s %.4f"):format(k, stats.terms[k]) end
    if #t > 0 then parts[#parts + 1] = "(" .. table.concat(t, ", ") .. ")" end
  end
  for _, f in ipairs(LINE) do
    local v = stats[f[1]]
    if v then parts[#parts + 1] = f[3] and ("%s %.2f%%"):format(f[2], 100 * v) or ("%s %.4f"):format(f[2], v) end
  end
  parts[#parts + 1] = ("%.1fs  %.0f samples/s"):format(stats.seconds, stats.samples_per_second)
  return table.concat(parts, "  ")
end

-- ---------------------------------------------------------------- epochs --

--- Runs the epochs of a training loop and returns the history.
-- spec fields: fname (for errors), data, epochs (1), progress (true, false or
-- "auto"), log (function(line); default print; false for none), indexed
-- (yield batch keys, see indexed_batches), begin_epoch(epoch),
-- step(x, y, key) -> loss (number), batch size, correct (number or nil),
-- terms (table of named numbers or nil), end_epoch(epoch, stats),
-- on_epoch(epoch, stats) (return false to stop), lr() (the current rate).
-- Each stats table holds epoch, loss and terms (per-sample means), accuracy
-- (when the step counts correct predictions), seconds, samples_per_second,
-- lr, and whatever end_epoch adds.
function M.run_epochs(spec)
  local fname, epochs = spec.fname, spec.epochs or 1
  local log = spec.log
  if log == nil then log = print end
  local enabled = spec.progress
  if enabled == nil or enabled == "auto" then enabled = M.is_terminal() end
  local bar = M.progress{enabled = enabled, epochs = epochs, nbatches = M.num_batches(spec.data)}
  local history = {}
  for epoch = 1, epochs do
    if spec.begin_epoch then spec.begin_epoch(epoch) end
    bar:start(epoch)
    local sum, n, correct, seen, terms = 0, 0, 0, 0, nil
    local iter = spec.indexed and M.indexed_batches(spec.data, fname) or M.batches(spec.data, fname)
    for x, y, key in iter do
      local loss, bs, k, t = spec.step(x, y, key)
      sum, n = sum + loss * bs, n + bs
      if k then correct, seen = correct + k, seen + bs end
      if t then
        terms = terms or {}
        for name, v in pairs(t) do terms[name] = (terms[name] or 0) + v * bs end
      end
      bar:update(bs, sum / n)
    end
    if n == 0 then fail(fname, "the data held no batches") end
    if terms then for name, v in pairs(terms) do terms[name] = v / n end end
    local dt = kdx.clock() - bar.t0
    local stats = {epoch = epoch, loss = sum / n, terms = terms, accuracy = seen > 0 and correct / seen or nil,
      seconds = dt, samples_per_second = n / math.max(dt, 1e-9), lr = spec.lr and spec.lr() or nil}
    if spec.end_epoch then spec.end_epoch(epoch, stats) end
    history[epoch] = stats
    bar:finish()
    if log then log(M.epoch_line(stats, epochs)) end
    if spec.on_epoch and spec.on_epoch(epoch, stats) == false then break end
  end
  return history
end

return M
