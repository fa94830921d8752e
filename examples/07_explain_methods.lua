-- Why does a CNN call a shirt a shirt? Seven views of the same decision:
-- input | saliency | integrated gradients | SmoothGrad | Grad-CAM | LRP |
-- occlusion, for a few Fashion-MNIST test images, in one labelled grid, and
-- how faithful each map is (deletion AUC: remove the most important pixels
-- first; the faster the class score falls, the lower and better):
--   lua5.4 examples/07_explain_methods.lua [--small] [out.png]   (default /tmp/kdx_explain_methods.png)
-- Uses Fashion-MNIST (Debian's dataset-fashion-mnist).
local kdx = require "kdx"
local nn, viz, explain = kdx.nn, kdx.viz, kdx.explain

local small, out = false, "/tmp/kdx_explain_methods.png"
for _, a in ipairs(arg or {}) do
  if a == "--small" then small = true else out = a end
end
kdx.manual_seed(0)

local train, test = kdx.data.fashion_mnist()
train = train:subset(kdx.arange(1, (small and 1000 or 30000) + 1))

local model = nn.Sequential{
  nn.Conv2d(1, 16, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
  nn.Conv2d(16, 32, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
  nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
}
kdx.train{
  model = model,
  data = kdx.data.DataLoader(train, {batch_size = 128, shuffle = true, seed = 1}),
  optimizer = kdx.optim.SGD(model:parameters(), {lr = 0.05, momentum = 0.9}),
  epochs = small and 1 or 2,
  progress = false,
}
model:eval()

-- One test image of each of the first few classes, explained for its true class.
local picks, seen = {}, {}
for i = 1, test:size() do
  local c = test.y:get(i)
  if not seen[c] then
    seen[c], picks[#picks + 1] = true, i
    if #picks == (small and 2 or 5) then break end
  end
end
local x = test.x:index_select(1, kdx.tensor(picks, "int64"))
local y = test.y:index_select(1, kdx.tensor(picks, "int64"))

-- Each method with its options; "5" is the second ReLU, the last feature map.
local methods = {
  {"saliency", function() return explain.saliency(model, x, {target = y}) end},
  {"integrated\ngradients", function() return explain.integrated_gradients(model, x, {target = y}) end},
  {"SmoothGrad", function()
    return explain.smoothgrad(model, x, {target = y, samples = small and 5 or 25, stdev = 0.15, seed = 1})
  end},
  {"Grad-CAM", function() return explain.gradcam(model, x, {target = y, layer = "5"}) end},
  {"LRP\nepsilon-plus", function() return explain.lrp(model, x, {target = y, composite = "epsilon_plus"}) end},
  {"occlusion\n4x4", function()
    return explain.occlusion(model, x, {target = y, window = {1, 4, 4}, strides = {1, 2, 2}})
  end},
}

local maps = {}
for k, m in ipairs(methods) do maps[k] = m[2]() end

-- Deletion AUC per method, averaged over the images (softmax probability of
-- the true class as pixels are set to 0 in 20 steps, most important first).
print(("%-24s %s"):format("method", "deletion AUC (lower is better)"))
for k, m in ipairs(methods) do
  local attr = maps[k]
  if attr:shape()[2] ~= 1 or attr:size(3) ~= 28 then attr = attr:expand(x:shape()) end
  local auc = explain.metrics.deletion(function(b) return kdx.softmax(model(b), 2) end, x, attr,
    {target = y, steps = 20})
  print(("%-24s %.3f"):format((m[1]:gsub("\n", " ")), auc:mean():item()))
end

local tiles, labels = {}, {}
for n = 1, #picks do
  tiles[#tiles + 1], labels[#labels + 1] = x:select(1, n), test.classes[y:get(n)]
  for k, m in ipairs(methods) do
    local a = maps[k]:select(1, n)
    tiles[#tiles + 1] = viz.heatmap(a, {clip_percentile = 99})
    labels[#labels + 1] = m[1]
  end
end
local grid = viz.grid(tiles, {ncol = #methods + 1, labels = labels, scale = small and 2 or 3, pad = 4})
kdx.data.save_png(out, grid)
print(("wrote %s: %d images x %d views"):format(out, #picks, #methods + 1))
