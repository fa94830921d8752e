--- kdx.dist: collectives across processes (MPI), or one process without it.
-- Ranks are 0-based, as MPI, mpirun and every log print them: a rank is a
-- process id, not an index into a Lua table. Launched by mpirun (Open MPI
-- sets OMPI_COMM_WORLD_SIZE) and built with MPI (kdx/dist_mpi.so), the
-- functions below run over MPI_COMM_WORLD; otherwise size() is 1, rank() is 0
-- and every collective is the identity, so the same script runs unchanged.
-- See docs/distributed.md.
-- @module kdx.dist

local core = require "kdx.core"

local M = {}

local OPS = {sum = true, mean = true, max = true, min = true}

local function check_tensor(fname, t)
  if not core.is_tensor(t) then
    error(("kdx.dist.%s: argument 1 must be a tensor, got %s"):format(fname, type(t)), 3)
  end
end

local function check_op(op)
  if op ~= nil and not OPS[op] then
    error(("kdx.dist.allreduce: op must be 'sum', 'mean', 'max' or 'min', got %s"):format(tostring(op)), 3)
  end
end

-- A list of float tensors for allreduce_all, and the contiguous tensors to
-- reduce (a non-contiguous one through a copy that is written back).
local function check_list(list)
  if type(list) ~= "table" then
    error(("kdx.dist.allreduce_all: argument 1 must be a list of tensors, got %s"):format(type(list)), 3)
  end
  local work = {}
  for i, t in ipairs(list) do
    if not core.is_tensor(t) then
      error(("kdx.dist.allreduce_all: entry %d must be a tensor, got %s"):format(i, type(t)), 3)
    end
    local dt = t:dtype()
    if dt ~= "float32" and dt ~= "float64" then
      error(("kdx.dist.allreduce_all: entry %d must be float32 or float64, got %s"):format(i, dt), 3)
    end
    work[i] = t:is_contiguous() and t or t:contiguous()
  end
  return work
end

-- The MPI module when this process was launched by mpirun, else nil.
local function load_mpi()
  local launched = tonumber(os.getenv("OMPI_COMM_WORLD_SIZE") or "")
  if not launched then return nil end
  local ok, mod = pcall(require, "kdx.dist_mpi")
  if ok then return mod end
  if launched > 1 then
    error("kdx.dist: launched on " .. launched .. " ranks but kdx was built without MPI "
      .. "(make MPI=1 needs mpicc; scripts/deps.sh --mpi installs Open MPI): " .. tostring(mod), 2)
  end
  return nil
end

local mpi = load_mpi()

--- "mpi" when the collectives run over MPI, "single" for the one-process fallback.
M.backend = mpi and "mpi" or "single"

if mpi then
  mpi.init()
  -- Finalise when the Lua state closes (MPI wants it before the process exits).
  M._finalizer = setmetatable({}, {__gc = function() mpi.finalize() end})

  --- Initialises the collectives (done on load; a second call does nothing).
  function M.init() mpi.init() end
  --- Ends MPI; no collective may follow.
  function M.finalize() mpi.finalize() end
  --- This process's rank, 0-based.
  function M.rank() return mpi.rank() end
  --- The number of processes.
  function M.size() return mpi.size() end
  --- Waits until every rank has reached it.
  function M.barrier() mpi.barrier() end
  --- t = op over ranks of t, in place (float32/float64; op "sum" (default), "mean", "max", "min"); returns t.
  function M.allreduce(t, op)
    check_tensor("allreduce", t); check_op(op)
    return mpi.allreduce(t, op or "sum")
  end
  --- t = rank root's t (root 0-based, default 0), in place; returns t.
  function M.broadcast(t, root)
    check_tensor("broadcast", t)
    return mpi.broadcast(t, root or 0)
  end
  --- A new tensor: the ranks' t concatenated along dim 1 in rank order.
  function M.allgather(t)
    check_tensor("allgather", t)
    return mpi.allgather(t)
  end
  --- Every tensor of the list reduced in place like allreduce, all messages in flight at once; returns the list.
  function M.allreduce_all(list, op)
    local work = check_list(list); check_op(op)
    mpi.allreduce_many(work, op or "sum")
    for i, t in ipairs(list) do if work[i] ~= t then t:copy_(work[i]) end end
    return list
  end
else
  --- Initialises the collectives (nothing to do on one process).
  function M.init() end
  --- Ends the collectives (nothing to do on one process).
  function M.finalize() end
  --- This process's rank, 0-based: 0.
  function M.rank() return 0 end
  --- The number of processes: 1.
  function M.size() return 1 end
  --- Waits for every rank: returns at once.
  function M.barrier() end
  --- The reduction over one rank: t itself (checked as the MPI version checks it).
  function M.allreduce(t, op)
    check_tensor("allreduce", t); check_op(op)
    local dt = t:dtype()
    if dt ~= "float32" and dt ~= "float64" then
      error("kdx.dist.allreduce: the tensor must be float32 or float64, got " .. dt, 2)
    end
    return t
  end
  --- The reductions over one rank: the list itself (checked as the MPI version checks it).
  function M.allreduce_all(list, op)
    check_list(list); check_op(op)
    return list
  end
  --- Rank root's t: t itself (root must be 0).
  function M.broadcast(t, root)
    check_tensor("broadcast", t)
    if root ~= nil and root ~= 0 then
      error(("kdx.dist.broadcast: root %s is not a rank (0..0)"):format(tostring(root)), 2)
    end
    return t
  end
  --- The ranks' t concatenated along dim 1: a copy of t.
  function M.allgather(t)
    check_tensor("allgather", t)
    if t:dim() < 1 then error("kdx.dist.allgather: the tensor needs at least one dim", 2) end
    return t:clone()
  end
end

-- The context kdx.nn.SyncBatchNorm hands to the engine to sum over the
-- ranks (nil on one process: the layer is then plain batch norm).
function M._sum_context()
  return mpi and mpi.sum_context() or nil
end

-- ---------------------------------------------------- data-parallel training --
-- Used by kdx.train{..., distributed = true}; written with the functions above,
-- so they run the same on one process.

local function check_module(fname, model)
  local kdx = require "kdx"
  if not kdx.nn.Module.is_module(model) then
    error(("kdx.dist.%s: argument 1 must be a kdx.nn module, got %s"):format(fname, type(model)), 3)
  end
end

--- Copies rank 0's parameters and buffers of model into every rank's (call before training).
function M.broadcast_parameters(model)
  check_module("broadcast_parameters", model)
  for _, p in ipairs(model:parameters()) do M.broadcast(p, 0) end
  M.broadcast_buffers(model)
end

--- Copies rank 0's buffers of model (batch-norm running statistics, ...)
-- into every rank's, as PyTorch DDP's broadcast_buffers: the training loops
-- call it before every step and at the end of every epoch, so all ranks
-- evaluate and save the same model.
function M.broadcast_buffers(model)
  check_module("broadcast_buffers", model)
  if M.size() == 1 then return end
  for _, b in ipairs(model:buffers()) do M.broadcast(b, 0) end
end

--- The distributed sampler: an iterator over this rank's part of each global
-- batch of a kdx.data.DataLoader, yielding x, y and the int64 tensor of the
-- batch's (1-based) dataset indices. The loader's batch_size is the global
-- batch; its order is the loader's own (the same seeded permutation on every
-- rank, a new one each epoch when shuffle), and rank r takes the rows r+1,
-- r+1+size(), ... of each global batch, so the ranks' parts are disjoint and
-- together make the batch a single process would draw. A rank with no row in
-- a (last, short) batch gets (false, false, false) so that it still takes
-- part in the step.
function M.shard_batches(loader)
  local kdx = require "kdx"
  local ds = type(loader) == "table" and loader.dataset
  if not (type(ds) == "table" and kdx.is_tensor(ds.x) and math.type(loader.batch_size) == "integer"
      and math.type(loader.epoch) == "integer") then
    error("kdx.dist.shard_batches: argument 1 must be a kdx.data.DataLoader over a dataset", 2)
  end
  loader.epoch = loader.epoch + 1
  local ds, bs, n = loader.dataset, loader.batch_size, loader.dataset:size()
  local order = loader.shuffle and kdx.data.permutation(n, loader.seed + loader.epoch):totable() or nil
  local rank, size = M.rank(), M.size()
  local at = 1
  return function()
    if at > n or (loader.drop_last and at + bs - 1 > n) then return nil end
    local len = math.min(bs, n - at + 1)
    local rows = {}
    for j = rank + 1, len, size do
      local pos = at + j - 1
      rows[#rows + 1] = order and order[pos] or pos
    end
    at = at + len
    if #rows == 0 then return false, false, false end
    local idx = kdx.tensor(rows, "int64")
    local x = ds.x:index_select(1, idx)
    local y = ds.y and ds.y:index_select(1, idx)
    if loader.transform then x = loader.transform(x) end
    return x, y, idx
  end
end

--- The default bucket size of the gradient reducer, in bytes (25 MiB, PyTorch DDP's).
M.bucket_bytes = 25 * 1024 * 1024

local Reducer = {}
Reducer.__index = Reducer

--- A gradient reducer for the list params (tensors of one float dtype):
-- data-parallel gradient averaging in flat buckets of at most
-- opts.bucket_bytes (default kdx.dist.bucket_bytes), last parameters first.
-- Per step: r:begin(rows) with this rank's row count (0 when it has none);
-- r:backward(loss) instead of loss:backward(), which sends each bucket as
-- soon as backward has finished its gradients, while the rest of backward
-- runs; then r:finish(extra) sends what is left, waits, and sets every
-- gradient to the row-weighted mean over ranks -- the gradient of the mean
-- loss over the global batch. It returns the rows of all ranks and the list
-- extra summed over ranks (per-step statistics ride along). A parameter
-- keeps a nil gradient only when it has none on every rank. On one process
-- the gradients are left as they are.
function M.reducer(params, opts)
  local fname = "kdx.dist.reducer"
  if type(params) ~= "table" then error(fname .. ": params must be a list of tensors", 2) end
  local cap = opts and opts.bucket_bytes or M.bucket_bytes
  if type(cap) ~= "number" or cap ~= math.floor(cap) or cap < 1 or cap == math.huge then
    error(fname .. ": bucket_bytes must be a positive integer", 2)
  end
  local dtype
  for i, p in ipairs(params) do
    if not core.is_tensor(p) then error(("%s: params[%d] is not a tensor"):format(fname, i), 2) end
    local dt = p:dtype()
    if dt ~= "float32" and dt ~= "float64" then error(("%s: params[%d] is %s, not a float tensor"):format(fname, i, dt), 2) end
    dtype = dtype or dt
    if dt ~= dtype then error(fname .. ": every parameter must have the same dtype", 2) end
  end
  local r = setmetatable({params = params}, Reducer)
  if mpi then r.impl = mpi.reducer(params, math.tointeger(cap)) end
  return r
end

--- Starts a step in which this rank contributes rows rows.
function Reducer:begin(rows)
  if type(rows) ~= "number" or rows < 0 then error("kdx.dist.reducer: rows must be a non-negative number", 2) end
  self.rows = rows
  if self.impl then self.impl:begin(rows) end
end

--- loss:backward(), sending the gradient buckets as they become final.
function Reducer:backward(loss)
  if not core.is_tensor(loss) then error("kdx.dist.reducer: backward needs the loss tensor", 2) end
  if self.impl then self.impl:backward(loss) else loss:backward() end
end

--- Ends the step: returns the rows of all ranks and extra (a list of numbers) summed over ranks.
function Reducer:finish(extra)
  extra = extra or {}
  if self.rows == nil then error("kdx.dist.reducer: finish without begin", 2) end
  local rows = self.rows
  self.rows = nil
  if self.impl then return self.impl:finish(extra) end
  local sums = {}
  for i, v in ipairs(extra) do sums[i] = v end
  return rows, sums
end

--- The number of buckets and how many the last backward sent before it returned (both 0 on one process).
function Reducer:counts()
  if self.impl then return self.impl:counts() end
  return 0, 0
end

--- Averages the gradients params already hold over ranks, weighted by each
-- rank's count of rows, with the reducer (all buckets sent after backward),
-- summing the list extra alongside; returns the rows of all ranks and the
-- summed extras. opts.bucket_bytes as for kdx.dist.reducer.
function M.average_gradients(params, count, extra, opts)
  if type(count) ~= "number" or count < 0 then
    error("kdx.dist.average_gradients: count must be a non-negative number of rows", 2)
  end
  local r = M.reducer(params, opts)
  r:begin(count)
  return r:finish(extra)
end

-- ------------------------------------------------ dataset-wide computations --

-- This rank's block of n rows: first, count (rows first .. first + count - 1).
local function block(n)
  local r, k = M.rank(), M.size()
  local lo, hi = (r * n) // k, ((r + 1) * n) // k
  return lo + 1, hi - lo
end

--- fn over the rows of x split across ranks, gathered: each rank calls
-- fn(its block of rows of x, the same block of every further tensor argument
-- with as many rows, other arguments as they are) and the results are
-- concatenated along dim 1 in rank order, so every rank gets what fn(x, ...)
-- gives on one process (for fn that treats rows independently). Rank r's
-- block is rows floor(r*n/size)+1 .. floor((r+1)*n/size); x needs at least
-- size() rows.
function M.map_rows(fn, x, ...)
  local kdx = require "kdx"
  if type(fn) ~= "function" then error("kdx.dist.map_rows: argument 1 must be a function", 2) end
  check_tensor("map_rows", x)
  local n = x:dim() > 0 and x:size(1) or 0
  if n < M.size() then
    error(("kdx.dist.map_rows: x has %d rows, fewer than the %d ranks"):format(n, M.size()), 2)
  end
  local first, count = block(n)
  local args = table.pack(...)
  for i = 1, args.n do
    local a = args[i]
    if kdx.is_tensor(a) and a:dim() > 0 and a:size(1) == n then args[i] = a:narrow(1, first, count) end
  end
  local out = fn(x:narrow(1, first, count), table.unpack(args, 1, args.n))
  if not kdx.is_tensor(out) then error("kdx.dist.map_rows: fn must return a tensor", 2) end
  return M.allgather(out:contiguous())
end

-- ---------------------------------------- distributed explanation and sweeps --
-- Plain Lua values across ranks (allgather_objects), one call per rank that
-- fails on every rank when it fails on one (pcall_all), a sweep with one
-- configuration per rank (map_configs), and the row and option splitting
-- kdx.explain uses for distributed = true. Written with the collectives
-- above, so they run the same on one process.

--- This rank's contiguous block of n rows, as map_rows splits them: the
-- 1-based first row and the count (rank r: rows floor(r*n/size)+1 ..
-- floor((r+1)*n/size); a block may be empty when n < size()).
function M.block(n)
  if math.type(n) ~= "integer" or n < 0 then
    error("kdx.dist.block: n must be an integer >= 0, got " .. tostring(n), 2)
  end
  return block(n)
end

-- Serialization of plain values (nil, booleans, numbers, strings, tables of
-- them) to a string, in a format of our own that decode parses: no code is
-- ever loaded. Integers stay integers, floats round-trip exactly (%a, and
-- inf/nan by name).
local function encode(v, out, path, seen)
  local t = math.type(v) or type(v)
  if t == "nil" then out[#out + 1] = "n"
  elseif t == "boolean" then out[#out + 1] = v and "T" or "F"
  elseif t == "integer" then out[#out + 1] = "i" .. string.format("%d", v) .. ";"
  elseif t == "float" then
    local text
    if v ~= v then text = "nan"
    elseif v == math.huge then text = "inf"
    elseif v == -math.huge then text = "-inf"
    else text = string.format("%a", v) end
    out[#out + 1] = "d" .. text .. ";"
  elseif t == "string" then out[#out + 1] = "s" .. #v .. ":" .. v
  elseif t == "table" then
    if seen[v] then error(("%s is a table that contains itself"):format(path), 0) end
    seen[v] = true
    out[#out + 1] = "{"
    for k, x in next, v do
      local kt = type(k)
      if kt ~= "number" and kt ~= "string" and kt ~= "boolean" then
        error(("%s has a %s key; keys must be numbers, strings or booleans"):format(path, kt), 0)
      end
      encode(k, out, path, seen)
      encode(x, out, path .. "[" .. (kt == "string" and ("%q"):format(k) or tostring(k)) .. "]", seen)
    end
    out[#out + 1] = "}"
    seen[v] = nil
  else
    local what = t == "userdata" and require("kdx.core").is_tensor(v) and "a tensor (gather tensors with kdx.dist.allgather)"
      or ("a " .. t)
    error(("%s is %s, not a plain value (nil, boolean, number, string or table of them)"):format(path, what), 0)
  end
end

local function decode(s, i)
  local c = s:sub(i, i)
  if c == "n" then return nil, i + 1
  elseif c == "T" then return true, i + 1
  elseif c == "F" then return false, i + 1
  elseif c == "i" or c == "d" then
    local stop = assert(s:find(";", i + 1, true), "truncated number")
    local text = s:sub(i + 1, stop - 1)
    local v
    if c == "i" then v = tonumber(text)
    elseif text == "nan" then v = 0 / 0
    elseif text == "inf" then v = math.huge
    elseif text == "-inf" then v = -math.huge
    else v = tonumber(text) end
    assert(v ~= nil and (c == "d" or math.type(v) == "integer"), "bad number")
    if c == "d" and math.type(v) == "integer" then v = v + 0.0 end -- (v + 0.0 would turn -0.0 into 0.0)
    return v, stop + 1
  elseif c == "s" then
    local colon = assert(s:find(":", i + 1, true), "truncated string")
    local len = tonumber(s:sub(i + 1, colon - 1))
    assert(math.type(len) == "integer" and len >= 0, "bad string length")
    assert(colon + len <= #s, "truncated string")
    return s:sub(colon + 1, colon + len), colon + len + 1
  elseif c == "{" then
    local t = {}
    i = i + 1
    while s:sub(i, i) ~= "}" do
      assert(i <= #s, "truncated table")
      local k, x
      k, i = decode(s, i)
      x, i = decode(s, i)
      assert(k ~= nil, "nil key")
      t[k] = x
    end
    return t, i + 1
  end
  error("bad tag at byte " .. i, 0)
end

-- The bytes of s as int64 words, preceded by the byte count.
local function pack_words(s)
  local words = {#s}
  s = s .. string.rep("\0", (8 - #s % 8) % 8)
  for pos = 1, #s, 8 do words[#words + 1] = string.unpack("<i8", s, pos) end
  return words
end

--- Every rank's plain Lua value v (nil, boolean, number, string, or a table
-- of them, nested; no functions, userdata or cycles) as a list {v of rank 0,
-- v of rank 1, ...} (n = size()) on every rank. Floats round-trip exactly.
-- A value that cannot be sent raises on every rank, not only on its own.
function M.allgather_objects(v)
  local kdx = require "kdx"
  local out = {}
  local ok, err = pcall(encode, v, out, "value", {})
  local text = ok and ("v" .. table.concat(out)) or ("e" .. tostring(err))
  local all = M.allgather(kdx.tensor(pack_words(text), "int64")):totable()
  local res, at, bad = {n = M.size()}, 1, nil
  for r = 1, M.size() do
    local len = all[at]
    local nw = (len + 7) // 8
    local parts = {}
    for w = 1, nw do parts[w] = string.pack("<i8", all[at + w]) end
    local s = table.concat(parts):sub(1, len)
    at = at + 1 + nw
    if s:sub(1, 1) == "e" then
      bad = bad or ("rank %d's %s"):format(r - 1, s:sub(2))
    else
      local dok, val, stop = pcall(decode, s, 2)
      if not dok or stop ~= #s + 1 then
        bad = bad or ("rank %d's value could not be decoded: %s"):format(r - 1, dok and "trailing bytes" or tostring(val))
      else
        res[r] = val
      end
    end
  end
  if bad then error("kdx.dist.allgather_objects: " .. bad, 2) end
  return res
end

--- fn(...) on every rank under pcall; then every rank learns whether any
-- failed. Returns fn's results when no rank failed; otherwise raises on every
-- rank "<fname>: rank r failed: <error>" with the lowest failing rank's error
-- (fname: a name for the message, default "kdx.dist.pcall_all"). Use it
-- around per-rank work that is followed by a collective, so that an error on
-- one rank does not leave the others waiting.
function M.pcall_all(fname, fn, ...)
  local res = table.pack(pcall(fn, ...))
  if M.size() == 1 and not res[1] then error(res[2], 0) end -- one process: the error as it was
  local msg = not res[1] and tostring(res[2]) or nil
  local all = M.allgather_objects(msg or false)
  for r = 1, M.size() do
    if all[r] then
      error(("%s: rank %d failed: %s"):format(fname or "kdx.dist.pcall_all", r - 1, all[r]), 0)
    end
  end
  return table.unpack(res, 2, res.n)
end

--- The complexity sweep with one configuration per rank: configuration i of
-- the list configs runs on rank (i-1) % size() as fn(configs[i], i), and its
-- result (a plain value, e.g. {accuracy =, parameters =}) is gathered, so
-- every rank returns the results of all configurations in configs' order.
-- An error in fn (or a result that is not a plain value) raises on every rank
-- "kdx.dist.map_configs: config i (rank r) failed: <error>" for the first
-- failing i, without leaving any rank waiting.
function M.map_configs(configs, fn)
  if type(configs) ~= "table" then
    error("kdx.dist.map_configs: argument 1 must be a list of configurations, got " .. type(configs), 2)
  end
  if type(fn) ~= "function" then error("kdx.dist.map_configs: argument 2 must be a function, got " .. type(fn), 2) end
  local rank, size = M.rank(), M.size()
  local mine = {}
  for i = rank + 1, #configs, size do
    local ok, r = pcall(fn, configs[i], i)
    if ok then -- a result that cannot be sent is this config's error, found before the gather
      local eok, err = pcall(encode, r, {}, "the result", {})
      if not eok then ok, r = false, err end
    end
    mine[#mine + 1] = ok and {i = i, value = r} or {i = i, err = tostring(r)}
  end
  local all = M.allgather_objects(mine)
  local results, failed = {n = #configs}, nil
  for r = 1, size do
    for _, e in ipairs(all[r]) do
      if e.err ~= nil then
        if not failed or e.i < failed.i then failed = {i = e.i, rank = r - 1, err = e.err} end
      else
        results[e.i] = e.value
      end
    end
  end
  if failed then
    error(("kdx.dist.map_configs: config %d (rank %d) failed: %s"):format(failed.i, failed.rank, failed.err), 2)
  end
  return results
end

return M
