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

return M
