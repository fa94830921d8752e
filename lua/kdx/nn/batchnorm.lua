--- Batch normalisation over dim 2 of [N, C] / [N, C, L] (BatchNorm1d) and
-- [N, C, H, W] (BatchNorm2d), with running statistics, as PyTorch.
-- @module kdx.nn.batchnorm
local kdx = require "kdx"
local Module = require "kdx.nn.module"

local M = {}

local function make(name, dims)
  local cls = Module:extend(name)
  --- (num_features, {eps = 1e-5, momentum = 0.1, affine = true, track_running_stats = true}).
  function cls:init(num_features, opts)
    opts = opts or {}
    if math.type(num_features) ~= "integer" or num_features < 1 then
      error(("kdx.nn.%s: num_features must be a positive integer"):format(name), 3)
    end
    self.num_features, self.eps, self.momentum = num_features, opts.eps or 1e-5, opts.momentum or 0.1
    local dt = opts.dtype or "float32"
    if opts.affine ~= false then
      self:register_parameter("weight", kdx.ones({num_features}, dt))
      self:register_parameter("bias", kdx.zeros({num_features}, dt))
    end
    if opts.track_running_stats ~= false then
      self:register_buffer("running_mean", kdx.zeros({num_features}, dt))
      self:register_buffer("running_var", kdx.ones({num_features}, dt))
      self:register_buffer("num_batches_tracked", kdx.tensor(0, "int64"))
    end
  end
  function cls:forward(x)
    local ok = false
    for _, d in ipairs(dims) do ok = ok or x:dim() == d end
    if not ok then
      error(("kdx.nn.%s: expected a %s-d input, got %d dims"):format(name, table.concat(dims, " or "), x:dim()), 3)
    end
    local use_batch = self.training or not self.running_mean
    if self.training and self.num_batches_tracked then
      kdx.no_grad(function() self.num_batches_tracked:add_(1) end)
    end
    return kdx.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, use_batch,
      self.momentum, self.eps)
  end
  function cls:extra_repr()
    return ("%d, eps=%g, momentum=%g"):format(self.num_features, self.eps, self.momentum)
  end
  M[name] = cls
end

make("BatchNorm1d", {2, 3})
make("BatchNorm2d", {4})

--- SyncBatchNorm(num_features, opts): batch norm over [N, C, ...] whose
-- training statistics are those of the global batch of a kdx.dist run (the
-- per-channel sums of every rank added up in the forward pass and in the
-- gradient), as torch.nn.SyncBatchNorm; on one process it is batch norm.
-- Options as BatchNorm2d. In training every rank must run it together, with
-- rows in every step (kdx.train / kdx.distill.run check the last batch).
-- Second derivatives through it are not supported.
make("SyncBatchNorm", {2, 3, 4, 5})
local Sync = M.SyncBatchNorm
function Sync:forward(x)
  if x:dim() < 2 then error(("kdx.nn.SyncBatchNorm: expected an input [N, C, ...], got %d dims"):format(x:dim()), 2) end
  if not self.training then
    if not self.running_mean then
      error("kdx.nn.SyncBatchNorm: in eval mode it needs running statistics (track_running_stats)", 2)
    end
    return kdx.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, false, self.momentum, self.eps)
  end
  if self.num_batches_tracked then kdx.no_grad(function() self.num_batches_tracked:add_(1) end) end
  return require("kdx.core")._batch_norm_sync(x, self.running_mean, self.running_var, self.weight, self.bias,
    self.momentum, self.eps, kdx.dist._sum_context())
end

--- Replaces every BatchNorm1d/2d in module (or module itself) by a
-- SyncBatchNorm with the same parameters and buffers (the same tensors), as
-- torch.nn.SyncBatchNorm.convert_sync_batchnorm; returns the module.
function Sync.convert(module)
  local function swap(bn)
    local c = getmetatable(bn)
    if c ~= M.BatchNorm1d and c ~= M.BatchNorm2d then return nil end
    local s = Sync(bn.num_features, {eps = bn.eps, momentum = bn.momentum, affine = bn.weight ~= nil,
      track_running_stats = bn.running_mean ~= nil, dtype = (bn.weight or bn.running_mean or kdx.zeros{1}):dtype()})
    for _, k in ipairs{"weight", "bias"} do if bn[k] then rawset(s, k, bn[k]) end end
    for _, k in ipairs{"running_mean", "running_var", "num_batches_tracked"} do if bn[k] then rawset(s, k, bn[k]) end end
    s:train(bn.training)
    return s
  end
  if not kdx.nn.Module.is_module(module) then
    error("kdx.nn.SyncBatchNorm.convert: argument 1 must be a kdx.nn module", 2)
  end
  local whole = swap(module)
  if whole then return whole end
  for _, m in module:named_modules() do
    for name, child in m:named_children() do
      local s = swap(child)
      if s then m:add_module(name, s) end
    end
  end
  return module
end

--- True when module is or contains a SyncBatchNorm.
function Sync.within(module)
  for _, m in module:named_modules() do if getmetatable(m) == Sync then return true end end
  return false
end

return M
