-- Distils a CNN teacher into a small MLP student on the bundled digits:
--   lua5.4 examples/04_distill.lua [--small]
local kdx = require "kdx"
local nn = kdx.nn
local small = arg and arg[1] == "--small"
kdx.manual_seed(0)

local train, test = kdx.data.digits()
local loader = kdx.data.DataLoader(train, {batch_size = 64, shuffle = true, seed = 1})
local function sgd(params) return kdx.optim.SGD(params, {lr = 0.05, momentum = 0.9}) end

local teacher = nn.Sequential{
  nn.Conv2d(1, 32, 3, {padding = 1}), nn.ReLU(), nn.Conv2d(32, 32, 3, {padding = 1}), nn.ReLU(),
  nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
}
kdx.train{model = teacher, data = loader, optimizer = sgd(teacher:parameters()), epochs = small and 2 or 10}

local student = nn.Sequential{nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)}
kdx.distill.run{teacher = teacher, student = student, data = loader, eval_data = test, optimizer = sgd,
  loss = {ce = 0.1, kd = 0.9}, T = 4, epochs = small and 2 or 30}
print(kdx.distill.metrics.report(student, teacher, test, {train_data = train}))
