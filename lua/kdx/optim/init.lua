--- kdx.optim: optimizers (SGD, Adam, AdamW, RMSprop) whose update rules run
-- in C with PyTorch's semantics, and learning-rate schedules.
-- @module kdx.optim
local where = {
  SGD = {"kdx.optim.sgd"},
  Adam = {"kdx.optim.adam", "Adam"},
  AdamW = {"kdx.optim.adam", "AdamW"},
  RMSprop = {"kdx.optim.rmsprop"},
  Optimizer = {"kdx.optim.optimizer"},
  lr_scheduler = {"kdx.optim.lr_scheduler"},
}
for _, name in ipairs{"StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "SequentialLR"} do
  where[name] = {"kdx.optim.lr_scheduler", name}
end

return setmetatable({}, {
  __index = function(optim, key)
    local w = where[key]
    if not w then return nil end
    local m = require(w[1])
    if w[2] then m = m[w[2]] end
    rawset(optim, key, m)
    return m
  end,
})
