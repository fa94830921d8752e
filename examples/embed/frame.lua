-- frame.lua — the script examples/embed/host.c runs: loads a trained student
-- (an MLP over 8x8 digit images, saved by model:save) and returns the
-- function the host calls once per frame.
--   arguments: model.safetensors images.safetensors (a tensor "x" [N, 1, 8, 8])
--   returns:   frame(i) -> the 0-based class of image ((i - 1) % N) + 1
local kdx = require "kdx"
local nn = kdx.nn
local model_path, images_path = ...

kdx.set_num_threads(1) -- the host owns its threads: the engine adds none

local model = nn.Sequential{nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)}
model:load(model_path)
model:eval()
local x = kdx.load(images_path).x
local n = x:size(1)

local function classify(i)
  local img = x:narrow(1, (i - 1) % n + 1, 1) -- a view: no copy
  return model(img):argmax(2):item() - 1
end

return function(i) return kdx.no_grad(classify, i) end
