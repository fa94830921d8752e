--- The training loop: kdx.train{...} runs epochs of forward, loss, backward
-- and optimizer steps with a progress display, and kdx.evaluate measures a
-- model on held-out data.
-- @module kdx.train

local kdx = require "kdx"
local loop = require "kdx.loop"

local batches, correct_topk = loop.batches, loop.correct_topk

local M = {}

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

--- Measures model on data without recording: returns {loss, accuracy, top5, n}
-- (accuracy and top5 for classification outputs). opts: loss (function or
-- name, default cross_entropy), distributed (false; true: each rank of
-- kdx.dist measures its part of data (loop.shard_eval) and the sums are
-- allreduced, so every rank returns the whole data's numbers).
function M.evaluate(model, data, opts)
  opts = opts or {}
  local lf = loss_fn(opts.loss, "kdx.evaluate")
  local sharded = false
  if opts.distributed then data, sharded = loop.shard_eval(data) end
  local was = model.training
  model:eval()
  local total, n, c1, c5, other = 0, 0, 0, 0, 0
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
        other = other + 1 -- a batch whose output is not a classification
      end
    end
  end)
  model:train(was)
  if sharded then
    local sums = kdx.dist.allreduce(kdx.tensor({total, n, c1, c5, other}, "float64")):totable()
    total, n, c1, c5, other = sums[1], math.tointeger(sums[2]) or sums[2], sums[3], sums[4], sums[5]
  end
  if n == 0 then error("kdx.evaluate: the data held no batches", 2) end
  local classify = other == 0
  return {loss = total / n, accuracy = classify and c1 / n or nil, top5 = classify and c5 / n or nil, n = n}
end

--- Trains model. Fields: model, data, optimizer (required), loss (function
-- (output, y) -> scalar, or a kdx.nn.functional name; default
-- "cross_entropy"), epochs (1), scheduler (stepped per epoch), eval_data,
-- on_epoch(epoch, stats) (return false to stop), progress (true, false, or
-- "auto": a live bar on a terminal, one line per epoch otherwise), log
-- (function(line), default print), checkpoint ({path =, every = 100}: the
-- whole training state every `every` steps, atomically), resume (a
-- checkpoint's path: continue from it), on_nonfinite ("error" or "skip": a
-- NaN/inf loss or gradient stops the run, or skips the step), distributed
-- (false; true: data-parallel over kdx.dist's ranks, data a kdx.data.DataLoader
-- whose batch_size is the global batch, docs/distributed.md), bucket_bytes
-- (the gradient buckets' size when distributed, default
-- kdx.dist.bucket_bytes). Returns the
-- history: a list of per-epoch {epoch, loss, accuracy, eval_loss,
-- eval_accuracy, seconds, samples_per_second, lr, skipped}.
function M.train(args)
  local fname = "kdx.train"
  if type(args) ~= "table" then error(fname .. ": expects a table of options", 2) end
  local model, opt = args.model, args.optimizer
  if not model then error(fname .. ": model is required", 2) end
  if not opt then error(fname .. ": optimizer is required", 2) end
  if args.data == nil then error(fname .. ": data is required", 2) end
  local lf = loss_fn(args.loss, fname)
  local what = type(args.loss) == "string" and ("the loss (%s)"):format(args.loss)
    or args.loss == nil and "the loss (cross_entropy)" or "the loss"
  local names = loop.param_names{{"", model}}
  if args.distributed then return M._train_distributed(args, lf, names) end
  -- not a tail call: errors about the data blame the caller of kdx.train
  local history = loop.run_epochs{
    fname = fname, data = args.data, epochs = args.epochs, progress = args.progress, log = args.log,
    on_epoch = args.on_epoch, on_nonfinite = args.on_nonfinite,
    checkpoint = args.checkpoint, resume = args.resume,
    modules = {{"model", model}}, optimizer = opt, scheduler = args.scheduler,
    lr = function() return opt.param_groups[1].lr end,
    begin_epoch = function() model:train() end,
    step = function(x, y)
      opt:zero_grad()
      local out = model(x)
      local loss = lf(out, y)
      local value = loss:item()
      if not loop.finite(value) then return nil, ("%s is %s"):format(what, loop.nonfinite_name(value)) end
      loss:backward()
      local bad = loop.bad_gradient(opt, names)
      if bad then
        opt:zero_grad()
        return nil, bad
      end
      opt:step()
      return value, x:size(1), kdx.no_grad(correct_topk, out, y, 1)
    end,
    end_epoch = function(_, stats)
      if args.eval_data then
        local ev = M.evaluate(model, args.eval_data, {loss = args.loss})
        stats.eval_loss, stats.eval_accuracy = ev.loss, ev.accuracy
      end
      if args.scheduler then args.scheduler:step() end
    end,
  }
  return history
end

-- kdx.train{..., distributed = true}: each rank runs its part of every global
-- batch (kdx.dist.shard_batches), the gradients are averaged over ranks before
-- the step and the step's statistics summed with them (loop.dist_reduce),
-- rank 0's initial weights are copied to all, rank 0 alone logs and writes
-- checkpoints, evaluation is split across ranks.
function M._train_distributed(args, lf, names)
  local fname = "kdx.train"
  local dist = kdx.dist
  local model, opt, data = args.model, args.optimizer, args.data
  if not (loop.is_loader(data) and loop.is_dataset(data.dataset) and data.batch_size) then
    loop.fail(fname, "distributed = true needs a kdx.data.DataLoader over a dataset as data")
  end
  local params = {}
  for _, g in ipairs(opt.param_groups) do
    for _, p in ipairs(g.params) do params[#params + 1] = p end
  end
  loop.check_sync_batchnorm(fname, {model}, data)
  dist.broadcast_parameters(model)
  local reducer = dist.reducer(params, {bucket_bytes = args.bucket_bytes})
  return loop.run_epochs{
    fname = fname, data = data, distributed = true, epochs = args.epochs,
    progress = args.progress, log = args.log,
    on_epoch = args.on_epoch, on_nonfinite = args.on_nonfinite,
    checkpoint = args.checkpoint, resume = args.resume,
    modules = {{"model", model}}, optimizer = opt, scheduler = args.scheduler,
    lr = function() return opt.param_groups[1].lr end,
    begin_epoch = function() model:train() end,
    step = function(x, y)
      opt:zero_grad()
      dist.broadcast_buffers(model)
      local value, b, k = 0, x and x:size(1) or 0, nil
      reducer:begin(b)
      if x then
        local out = model(x)
        local loss = lf(out, y)
        value = loss:item()
        -- a rank with a non-finite loss sends it on instead of a gradient:
        -- the global loss is then non-finite on every rank, which all skip
        if loop.finite(value) then reducer:backward(loss) end
        k = kdx.no_grad(correct_topk, out, y, 1)
      end
      local rows
      value, rows, k = loop.dist_reduce(reducer, b, value, k)
      if not loop.finite(value) then
        opt:zero_grad()
        return nil, ("the loss is %s on some rank"):format(loop.nonfinite_name(value))
      end
      local bad = loop.bad_gradient(opt, names)
      if bad then
        opt:zero_grad()
        return nil, bad
      end
      opt:step()
      return value, rows, k
    end,
    end_epoch = function(_, stats)
      dist.broadcast_buffers(model)
      if args.eval_data then
        local ev = M.evaluate(model, args.eval_data, {loss = args.loss, distributed = true})
        stats.eval_loss, stats.eval_accuracy = ev.loss, ev.accuracy
      end
      if args.scheduler then args.scheduler:step() end
    end,
  }
end

return M
