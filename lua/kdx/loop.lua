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

-- ------------------------------------------------------ non-finite guard --

--- True for a number that is neither NaN nor ±inf.
function M.finite(v)
  return v == v and v ~= math.huge and v ~= -math.huge
end
local finite = M.finite

--- "NaN", "inf" or "-inf" for a non-finite number (the same on every platform).
function M.nonfinite_name(v)
  if v ~= v then return "NaN" end
  return v > 0 and "inf" or "-inf"
end

--- Checks the gradients an optimizer is about to apply: nil when every one
-- is finite, else "the gradient of <name> is not finite" (names: a table
-- from parameter to name; unnamed ones are "parameter <i> of group <g>").
function M.bad_gradient(opt, names)
  for gi, g in ipairs(opt.param_groups) do
    for i, p in ipairs(g.params) do
      local grad = p.grad
      -- a sum is NaN or ±inf when an element is; confirm element-wise, since
      -- a sum of large finite values can overflow
      if grad and not finite(grad:sum():item())
        and (grad:ne(grad):sum():item() > 0 or grad:abs():eq(math.huge):sum():item() > 0) then
        return ("the gradient of %s is not finite"):format(names and names[p] or
          ("parameter %d of group %d"):format(i, gi))
      end
    end
  end
  return nil
end

--- A map from each parameter of the modules to its name: modules is a list
-- of {prefix, module}; names are prefix .. parameter name.
function M.param_names(modules)
  local names = {}
  for _, m in ipairs(modules) do
    for name, p in m[2]:named_parameters() do names[p] = m[1] .. name end
  end
  return names
end

-- ----------------------------------------------------------- distributed --

--- The end of a data-parallel step (kdx.dist): finishes the step of
-- reducer (a kdx.dist.reducer, begun with this rank's rows and, when the
-- rank had rows and a finite loss, run backward) and, in the same messages,
-- sums the step's statistics, so every rank gets the global ones: returns
-- the mean loss over the global batch, its rows, the correct predictions
-- (nil when no rank counted any) and the mean of each named term (names: the
-- same sorted list on every rank; values[name] this rank's mean, ignored
-- when rows is 0). A non-finite loss on one rank makes the global loss
-- non-finite on all.
function M.dist_reduce(reducer, rows, loss, correct, names, values)
  names = names or {}
  local extra = {rows > 0 and loss * rows or 0, correct or 0, correct and 1 or 0}
  for _, n in ipairs(names) do extra[#extra + 1] = rows > 0 and values[n] * rows or 0 end
  local total, sums = reducer:finish(extra)
  local terms
  if #names > 0 then
    terms = {}
    for i, n in ipairs(names) do terms[n] = sums[3 + i] / total end
  end
  return sums[1] / total, total, sums[3] > 0 and sums[2] or nil, terms
end

--- This rank's part of evaluation data for a distributed run, and true; or
-- data itself and false when it cannot be split (an iterator function). A
-- dataset or a DataLoader over one: a contiguous block of rows (rank r:
-- floor(r*n/size)+1 .. floor((r+1)*n/size)) in an unshuffled loader of the
-- same batch_size and transform; a list of batches: batches r+1, r+1+size, ....
function M.shard_eval(data)
  local dist = kdx.dist
  local r, k = dist.rank(), dist.size()
  local ds, bs, transform
  if is_dataset(data) then ds, bs = data, 256
  elseif is_loader(data) and is_dataset(data.dataset) and data.batch_size then
    ds, bs, transform = data.dataset, data.batch_size, data.transform
  end
  if ds then
    local n = ds:size()
    local lo, hi = (r * n) // k, ((r + 1) * n) // k
    local part = setmetatable({}, getmetatable(ds))
    for key, v in pairs(ds) do part[key] = v end
    part.x = ds.x:narrow(1, lo + 1, hi - lo)
    if ds.y then part.y = ds.y:narrow(1, lo + 1, hi - lo) end
    return kdx.data.DataLoader(part, {batch_size = bs, transform = transform}), true
  end
  if type(data) == "table" and not is_loader(data) then
    local mine = {}
    for i = r + 1, #data, k do mine[#mine + 1] = data[i] end
    return mine, true
  end
  return data, false
end

--- Refuses a distributed run whose models hold a kdx.nn.SyncBatchNorm when
-- some step would leave a rank without rows (a last batch smaller than the
-- number of ranks): that rank would not run the layer's collectives and the
-- others would wait for it forever.
function M.check_sync_batchnorm(fname, models, loader)
  local size = kdx.dist.size()
  if size == 1 then return end
  local Sync = kdx.nn.SyncBatchNorm
  local any = false
  for _, m in ipairs(models) do any = any or Sync.within(m) end
  if not any then return end
  local n, bs = loader.dataset:size(), loader.batch_size
  local last = n % bs
  if not loader.drop_last and last > 0 and last < size then
    fail(fname, "SyncBatchNorm needs rows on every rank in every step, but the last batch has %d row(s) for %d "
      .. "ranks: give the DataLoader drop_last = true or another batch_size", last, size)
  end
end

-- Each rank's generator state, gathered (a list of 6-integer tables, rank
-- order), so that a checkpoint of a distributed run restores every rank's.
local function gather_rng()
  local all = kdx.dist.allgather(kdx.tensor(kdx.get_rng_state(), "int64"):reshape{1, 6})
  return all:totable()
end

-- ----------------------------------------------------------- checkpoints --

-- Lua values as the text of a Lua constructor, read back by a chunk with no
-- environment: numbers exactly (%q writes floats in hex, NaN and ±inf as
-- expressions), strings, booleans and tables of them. Other values (functions,
-- userdata) are left out.
local function serialize(v, out)
  local t = type(v)
  if t == "number" or t == "string" then out[#out + 1] = ("%q"):format(v)
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "table" then
    local keys = {}
    for k, x in pairs(v) do
      local kt, xt = type(k), type(x)
      if (kt == "number" or kt == "string") and (xt == "number" or xt == "string" or xt == "boolean" or xt == "table") then
        keys[#keys + 1] = k
      end
    end
    table.sort(keys, function(a, b)
      if type(a) == type(b) then return a < b end
      return type(a) == "number"
    end)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      out[#out + 1] = "["
      serialize(k, out)
      out[#out + 1] = "]="
      serialize(v[k], out)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  else
    out[#out + 1] = "nil"
  end
end

-- Whether text holds only what serialize writes: braces, brackets, "=", ",",
-- quoted strings, numbers, true, false and (0/0). Such text, loaded as a
-- chunk, can run no function (the only parentheses are those of (0/0), and
-- calling or indexing a number is an error), so a damaged or hostile file
-- cannot do more than fail.
local function literal_only(text)
  local i, n = 1, #text
  while i <= n do
    local c = text:sub(i, i)
    if c:find("^[{}%[%]=,]") then
      i = i + 1
    elseif c == '"' then
      i = i + 1
      while true do
        local d = text:sub(i, i)
        if d == "" then return false end
        i = i + (d == "\\" and 2 or 1)
        if d == '"' then break end
      end
    else
      local tok = text:match("^%(0/0%)", i) or text:match("^%-?0[xX][%x%.]*[pP]?[%+%-]?%d*", i)
        or text:match("^%-?%d[%d%.]*[eE]?[%+%-]?%d*", i) or text:match("^true", i) or text:match("^false", i)
      if not tok then return false end
      i = i + #tok
    end
  end
  return true
end

-- A copy of v with every tensor moved into `tensors` under prefix .. path
-- and replaced by {__tensor = name}.
local function pack(v, tensors, prefix)
  if kdx.is_tensor(v) then
    tensors[prefix] = v
    return {__tensor = prefix}
  end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = pack(x, tensors, prefix .. "." .. tostring(k)) end
  return out
end

-- The inverse of pack; nil, name when a tensor is missing from the file.
local function unpack_tensors(v, tensors)
  if type(v) ~= "table" then return v end
  if v.__tensor then
    local t = tensors[v.__tensor]
    if not t then error({missing = v.__tensor}) end
    return t
  end
  local out = {}
  for k, x in pairs(v) do out[k] = unpack_tensors(x, tensors) end
  return out
end

local CHECKPOINT_VERSION = 1

-- Checks spec.checkpoint: nil or {path = string, every = positive integer}.
local function check_checkpoint_opts(fname, spec)
  local ck = spec.checkpoint
  if ck ~= nil then
    if type(ck) ~= "table" or type(ck.path) ~= "string" or ck.path == "" then
      fail(fname, "checkpoint must be {path = \"run.ckpt\", every = steps}")
    end
    local every = ck.every or 100
    if math.type(every) ~= "integer" or every < 1 then fail(fname, "checkpoint.every must be a positive integer (steps)") end
    for k in pairs(ck) do
      if k ~= "path" and k ~= "every" then fail(fname, "unknown checkpoint option '%s' (path, every)", tostring(k)) end
    end
    if spec.scheduler and not (spec.scheduler.state_dict and spec.scheduler.load_state_dict) then
      fail(fname, "the scheduler has no state_dict/load_state_dict, so it cannot be checkpointed")
    end
    ck = {path = ck.path, every = every}
  end
  if spec.resume ~= nil and (type(spec.resume) ~= "string" or spec.resume == "") then
    fail(fname, "resume must be the path of a checkpoint file")
  end
  return ck
end

-- The __name of an object's class (kdx.optim's optimizers and schedulers), or "?".
local function class_name(obj)
  local mt = getmetatable(obj)
  local name = type(mt) == "table" and rawget(mt, "__name") or (type(obj) == "table" and obj.__name)
  return type(name) == "string" and name or "?"
end

-- Writes the whole training state to ck.path (atomically, through kdx.save).
local function save_checkpoint(spec, path, st)
  local tensors = {}
  local names = {}
  for _, m in ipairs(spec.modules or {}) do
    names[#names + 1] = m[1]
    for k, t in pairs(m[2]:state_dict()) do tensors["module." .. m[1] .. "." .. k] = t end
  end
  st.modules = names
  if spec.optimizer then
    st.optimizer = pack(spec.optimizer:state_dict(), tensors, "optimizer")
    st.optimizer_class = class_name(spec.optimizer)
  end
  if spec.scheduler then
    st.scheduler = pack(spec.scheduler:state_dict(), tensors, "scheduler")
    st.scheduler_class = class_name(spec.scheduler)
  end
  st.version = CHECKPOINT_VERSION
  local out = {}
  serialize(st, out)
  kdx.save(path, tensors, {["kdx.checkpoint"] = table.concat(out), ["kdx.step"] = tostring(st.global_step)})
end

--- Reads a checkpoint written by a training loop and restores the modules,
-- optimizer and scheduler of spec; returns the loop's state (epoch, step,
-- global_step, rng, loader_epoch, history, partial). Errors name fname.
function M.load_checkpoint(fname, spec, path)
  local ok, tensors, meta = pcall(kdx.load, path)
  if not ok then
    fail(fname, "cannot resume from %s: %s", path, tostring(tensors):gsub("^kdx%.load: ", ""):gsub("^.-: ", "", 1))
  end
  local text = meta["kdx.checkpoint"]
  if type(text) ~= "string" then fail(fname, "cannot resume from %s: not a training checkpoint (no kdx.checkpoint metadata)", path) end
  local chunk = literal_only(text) and load("return " .. text, "=checkpoint", "t", {})
  local st
  if chunk then ok, st = pcall(chunk) end
  if not chunk or not ok or type(st) ~= "table" or st.version ~= CHECKPOINT_VERSION or math.type(st.epoch) ~= "integer"
    or math.type(st.step) ~= "integer" or type(st.history) ~= "table" or type(st.partial) ~= "table"
    or type(st.rng) ~= "table" or tostring(st.global_step) ~= meta["kdx.step"] then
    fail(fname, "cannot resume from %s: the checkpoint's training state is corrupt", path)
  end
  for _, k in ipairs{"sum", "n", "correct", "seen", "skipped", "step", "seconds"} do
    if type(st.partial[k]) ~= "number" then fail(fname, "cannot resume from %s: the checkpoint's training state is corrupt", path) end
  end
  if st.rng_ranks ~= nil then
    local good = type(st.rng_ranks) == "table" and #st.rng_ranks >= 1
    for _, r in ipairs(good and st.rng_ranks or {}) do
      if type(r) ~= "table" or #r ~= 6 then good = false break end
      for i = 1, 6 do if math.type(r[i]) ~= "integer" then good = false end end
    end
    if not good then fail(fname, "cannot resume from %s: the checkpoint's training state is corrupt", path) end
  end
  if st.fname ~= fname then fail(fname, "cannot resume from %s: it was written by %s", path, tostring(st.fname)) end
  local want, have = {}, {}
  for _, m in ipairs(spec.modules or {}) do want[#want + 1] = m[1] end
  for _, n in ipairs(st.modules or {}) do have[#have + 1] = n end
  if table.concat(want, ", ") ~= table.concat(have, ", ") then
    fail(fname, "cannot resume from %s: it holds the modules {%s}, this run trains {%s}", path,
      table.concat(have, ", "), table.concat(want, ", "))
  end
  local function try(what, f, ...)
    local good, err = pcall(f, ...)
    if not good then
      if type(err) == "table" and err.missing then err = "tensor " .. err.missing .. " is missing" end
      fail(fname, "cannot resume from %s: %s: %s", path, what, tostring(err))
    end
    return err
  end
  for _, m in ipairs(spec.modules or {}) do
    local prefix, sd = "module." .. m[1] .. ".", {}
    for k, t in pairs(tensors) do if k:sub(1, #prefix) == prefix then sd[k:sub(#prefix + 1)] = t end end
    try(m[1], m[2].load_state_dict, m[2], sd)
  end
  if spec.optimizer then
    if not st.optimizer then fail(fname, "cannot resume from %s: it holds no optimizer state", path) end
    if st.optimizer_class ~= class_name(spec.optimizer) then
      fail(fname, "cannot resume from %s: it holds the state of optimizer %s, this run uses %s", path,
        tostring(st.optimizer_class), class_name(spec.optimizer))
    end
    local sd = try("optimizer", unpack_tensors, st.optimizer, tensors)
    try("optimizer", spec.optimizer.load_state_dict, spec.optimizer, sd)
  end
  if spec.scheduler then
    if not st.scheduler then fail(fname, "cannot resume from %s: it holds no scheduler state", path) end
    if st.scheduler_class ~= class_name(spec.scheduler) then
      fail(fname, "cannot resume from %s: it holds the state of scheduler %s, this run uses %s", path,
        tostring(st.scheduler_class), class_name(spec.scheduler))
    end
    try("scheduler", spec.scheduler.load_state_dict, spec.scheduler, try("scheduler", unpack_tensors, st.scheduler, tensors))
  end
  return st
end

-- ---------------------------------------------------------------- epochs --

--- Runs the epochs of a training loop and returns the history.
-- spec fields: fname (for errors), data, epochs (1), progress (true, false or
-- "auto"), log (function(line); default print; false for none), indexed
-- (yield batch keys, see indexed_batches), begin_epoch(epoch),
-- step(x, y, key) -> loss (number), batch size, correct (number or nil),
-- terms (table of named numbers or nil) -- or nil, reason when the step
-- found a non-finite loss or gradient and did not update --,
-- end_epoch(epoch, stats), on_epoch(epoch, stats) (return false to stop),
-- lr() (the current rate); on_nonfinite ("error" or "skip"); checkpoint
-- ({path, every}), resume (a path), and for them modules (a list of
-- {name, module}), optimizer and scheduler, whose state a checkpoint holds;
-- distributed (true: data is a DataLoader sharded with kdx.dist.shard_batches
-- (its keys are the dataset indices), steps return global statistics (see
-- dist_reduce), rank 0 alone logs and writes checkpoints, and every rank
-- reads the one it resumes from).
-- Each stats table holds epoch, loss and terms (per-sample means), accuracy
-- (when the step counts correct predictions), seconds, samples_per_second,
-- lr, skipped (steps skipped as non-finite), and whatever end_epoch adds.
function M.run_epochs(spec)
  local fname, epochs = spec.fname, spec.epochs or 1
  local log = spec.log
  if log == nil then log = print end
  local mode = spec.on_nonfinite or "error"
  if mode ~= "error" and mode ~= "skip" then fail(fname, "on_nonfinite must be \"error\" or \"skip\"") end
  local ck = check_checkpoint_opts(fname, spec)
  local enabled = spec.progress
  if enabled == nil or enabled == "auto" then enabled = M.is_terminal() end
  local data = spec.data
  local dist = spec.distributed and kdx.dist or nil
  local lead = not dist or dist.rank() == 0
  if not lead then log, enabled = false, false end -- rank 0 alone speaks
  local bar = M.progress{enabled = enabled, epochs = epochs, nbatches = M.num_batches(data)}
  local keeps_epoch = is_loader(data) and math.type(data.epoch) == "integer"
  local history, first, resume, global = {}, 1, nil, 0
  if spec.resume then
    resume = M.load_checkpoint(fname, spec, spec.resume)
    if resume.epoch > epochs then
      fail(fname, "cannot resume from %s: it is at epoch %d but epochs is %d", spec.resume, resume.epoch, epochs)
    end
    history, first, global = resume.history, resume.epoch, resume.global_step
  end
  for epoch = first, epochs do
    if spec.begin_epoch then spec.begin_epoch(epoch) end
    bar:start(epoch)
    local acc = {sum = 0, n = 0, correct = 0, seen = 0, terms = nil, skipped = 0, step = 0, seconds = 0}
    if resume and keeps_epoch then data.epoch = resume.loader_epoch - 1 end
    local iter
    if dist then iter = dist.shard_batches(data)
    elseif spec.indexed then iter = M.indexed_batches(data, fname)
    else iter = M.batches(data, fname) end
    if resume then
      -- the batches done before the checkpoint, drawn again to move the
      -- source on; then the generator as it was after them
      for _ = 1, resume.step do
        if iter() == nil then
          fail(fname, "cannot resume from %s: the data has fewer than %d batches in epoch %d", spec.resume,
            resume.step, epoch)
        end
      end
      acc = resume.partial
      -- a distributed checkpoint holds every rank's generator; with another
      -- number of ranks each takes rank (r mod saved)'s (not bit-exact then)
      local saved = resume.rng_ranks
      kdx.set_rng_state(saved and dist and saved[dist.rank() % #saved + 1] or resume.rng)
      resume = nil
    end
    local seconds0 = acc.seconds
    for x, y, key in iter do
      acc.step, global = acc.step + 1, global + 1
      local loss, bs, k, t = spec.step(x, y, key)
      if loss == nil then
        if mode == "error" then
          fail(fname, "%s at epoch %d, step %d (on_nonfinite = \"skip\" skips such steps)", bs, epoch, acc.step)
        end
        acc.skipped = acc.skipped + 1
        if log then log(("%s: skipped step %d of epoch %d: %s"):format(fname, acc.step, epoch, bs)) end
      else
        acc.sum, acc.n = acc.sum + loss * bs, acc.n + bs
        if k then acc.correct, acc.seen = acc.correct + k, acc.seen + bs end
        if t then
          acc.terms = acc.terms or {}
          for name, v in pairs(t) do acc.terms[name] = (acc.terms[name] or 0) + v * bs end
        end
        bar:update(bs, acc.sum / acc.n)
      end
      if ck and global % ck.every == 0 then
        acc.seconds = seconds0 + kdx.clock() - bar.t0
        -- distributed: the state is the same on every rank (the statistics
        -- are global) but the generators; rank 0 writes it
        local rng_ranks = dist and gather_rng() or nil
        if lead then
          save_checkpoint(spec, ck.path, {fname = fname, epoch = epoch, step = acc.step, global_step = global,
            loader_epoch = keeps_epoch and data.epoch or nil, rng = kdx.get_rng_state(), rng_ranks = rng_ranks,
            history = history, partial = acc})
        end
      end
    end
    local sum, n, terms = acc.sum, acc.n, acc.terms
    if n == 0 and acc.skipped > 0 then fail(fname, "every step of epoch %d was skipped (non-finite)", epoch) end
    if n == 0 then fail(fname, "the data held no batches") end
    if terms then for name, v in pairs(terms) do terms[name] = v / n end end
    local dt = seconds0 + kdx.clock() - bar.t0
    local stats = {epoch = epoch, loss = sum / n, terms = terms,
      accuracy = acc.seen > 0 and acc.correct / acc.seen or nil, skipped = acc.skipped,
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
