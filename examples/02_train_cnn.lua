-- Trains a small CNN on Fashion-MNIST (Debian's dataset-fashion-mnist):
--   lua5.4 examples/02_train_cnn.lua [--small]
local kdx = require "kdx"
local nn = kdx.nn
local small = arg and arg[1] == "--small"
kdx.manual_seed(0)

local train, test = kdx.data.fashion_mnist()
if small then train, test = train:subset(kdx.arange(1, 513)), test:subset(kdx.arange(1, 257)) end

local model = nn.Sequential{
  nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
  nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
  nn.Flatten(), nn.Linear(32 * 5 * 5, 10),
}
print(model)

local history = kdx.train{
  model = model,
  data = kdx.data.DataLoader(train, {batch_size = 128, shuffle = true, seed = 1}),
  eval_data = kdx.data.DataLoader(test, {batch_size = 1000}),
  optimizer = kdx.optim.SGD(model:parameters(), {lr = 0.05, momentum = 0.9}),
  epochs = small and 1 or 5,
}
print(("test accuracy after %d epochs: %.2f%%"):format(#history, 100 * history[#history].eval_accuracy))
