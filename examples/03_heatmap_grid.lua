-- Explanations as pictures: a teacher and a student distilled from it, each
-- explained by input x gradient, shown side by side on one colour scale in a
-- labelled grid, written to a PNG:
--   lua5.4 examples/03_heatmap_grid.lua [--small] [out.png]   (default /tmp/kdx_heatmaps.png)
-- Uses Fashion-MNIST (Debian's dataset-fashion-mnist).
local kdx = require "kdx"
local nn, F, viz = kdx.nn, kdx.nn.functional, kdx.viz

local small, out = false, "/tmp/kdx_heatmaps.png"
for _, a in ipairs(arg or {}) do
  if a == "--small" then small = true else out = a end
end
kdx.manual_seed(0)

local train, test = kdx.data.fashion_mnist()
train = train:subset(kdx.arange(1, (small and 2000 or 20000) + 1))
local classes = train.classes

-- A linear teacher on labels, and a linear student that only sees the
-- teacher's softened outputs (Hinton's KD at temperature T).
local function fit(model, steps, loss_of)
  local opt = kdx.optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})
  local loader = kdx.data.DataLoader(train, {batch_size = 256, shuffle = true, seed = 1})
  local step = 0
  while step < steps do
    for x, y in loader:iter() do
      opt:zero_grad()
      loss_of(model(x:reshape{x:size(1), -1}), x, y):backward()
      opt:step()
      step = step + 1
      if step == steps then break end
    end
  end
  return model
end

local teacher = fit(nn.Linear(784, 10), small and 60 or 600, function(logits, _, y)
  return F.cross_entropy(logits, y)
end)
local T = 4
local student = fit(nn.Linear(784, 10), small and 20 or 150, function(logits, x)
  local soft = kdx.no_grad(function() return kdx.softmax(teacher(x:reshape{x:size(1), -1}) / T, 2) end)
  return -(soft * kdx.log_softmax(logits / T, 2)):sum(2):mean() * (T * T)
end)

local function accuracy(model)
  local x = test.x:narrow(1, 1, 2000)
  local pred = kdx.no_grad(function() return model(x:reshape{2000, -1}):argmax(2) end)
  return pred:eq(test.y:narrow(1, 1, 2000)):float():mean():item()
end
print(("teacher accuracy %.1f%%, student accuracy %.1f%% (first 2000 test images)"):format(
  100 * accuracy(teacher), 100 * accuracy(student)))

-- Input x gradient of the class logit, for one image [1,28,28].
local function attribution(model, x, class)
  local xi = x:reshape{1, 784}:clone():requires_grad(true)
  model(xi):select(2, class):sum():backward()
  return (xi.grad * xi):reshape{28, 28}
end

-- One test image of each of the first few classes.
local picks, seen = {}, {}
local want = small and 3 or 6
for i = 1, test:size() do
  local c = test.y:get(i)
  if not seen[c] then
    seen[c] = true
    picks[#picks + 1] = i
    if #picks == want then break end
  end
end

local tiles, labels = {}, {}
local function add(img, label)
  tiles[#tiles + 1] = img
  labels[#labels + 1] = label
end
for _, i in ipairs(picks) do
  local x, c = test.x:select(1, i), test.y:get(i)
  local ta, sa = attribution(teacher, x, c), attribution(student, x, c)
  -- one scale for both maps, so equal colours mean equal attributions
  local scale = viz.shared_scale({ta, sa}, {clip_percentile = 99})
  add(x, classes[c])
  add(viz.heatmap(ta, {scale = scale}), "teacher")
  add(viz.heatmap(sa, {scale = scale}), "student")
  add(viz.heatmap(ta:abs(), {image = x, cmap = "inferno", alpha = 0.6}), "|teacher| + x")
end

-- Each row: the input (its class), the teacher's and the student's input x
-- gradient on their shared blue-white-red scale (red: pushes towards the
-- class), and the size of the teacher's attribution over the input.
local grid = viz.grid(tiles, {ncol = 4, labels = labels, scale = small and 2 or 3, pad = 4})
kdx.data.save_png(out, grid)
print(("wrote %s: %d x %d pixels, %d images with %d tiles each"):format(out, grid:size(3), grid:size(2), #picks, 4))
