--- kdx.nn: layers and models. Classes load on first use:
-- `kdx.nn.Linear(4, 2)`, `kdx.nn.Sequential{...}`, `kdx.nn.Module:extend("Net")`;
-- `kdx.nn.functional` (losses), `kdx.nn.init` (initialisers), `kdx.nn.utils`.
-- @module kdx.nn

local where = {
  Module = {"kdx.nn.module"},
  Linear = {"kdx.nn.linear"},
  Conv2d = {"kdx.nn.conv2d"},
  Dropout = {"kdx.nn.dropout"},
  Flatten = {"kdx.nn.flatten"},
  LayerNorm = {"kdx.nn.layernorm"},
  Embedding = {"kdx.nn.embedding"},
  BatchNorm1d = {"kdx.nn.batchnorm", "BatchNorm1d"},
  BatchNorm2d = {"kdx.nn.batchnorm", "BatchNorm2d"},
  SyncBatchNorm = {"kdx.nn.batchnorm", "SyncBatchNorm"},
  MaxPool2d = {"kdx.nn.pooling", "MaxPool2d"},
  AvgPool2d = {"kdx.nn.pooling", "AvgPool2d"},
  AdaptiveAvgPool2d = {"kdx.nn.pooling", "AdaptiveAvgPool2d"},
  Sequential = {"kdx.nn.container", "Sequential"},
  ModuleList = {"kdx.nn.container", "ModuleList"},
  ModuleDict = {"kdx.nn.container", "ModuleDict"},
  SoftDecisionTree = {"kdx.nn.soft_tree"},
  functional = {"kdx.nn.functional"},
  init = {"kdx.nn.initializers"},
  utils = {"kdx.nn.utils"},
}
for _, name in ipairs{"ReLU", "LeakyReLU", "GELU", "ELU", "Softplus", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
                      "Identity"} do
  where[name] = {"kdx.nn.activation", name}
end

return setmetatable({}, {
  __index = function(nn, key)
    local w = where[key]
    if not w then return nil end
    local m = require(w[1])
    if w[2] then m = m[w[2]] end
    rawset(nn, key, m)
    return m
  end,
})
