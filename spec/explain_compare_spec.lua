-- kdx.explain.compare / compare_grid: a model compared with itself agrees
-- perfectly; the disagreement order, targets, pictures and errors.
local kdx = require "kdx"
local nn = kdx.nn

local function cnn(seed)
  kdx.manual_seed(seed)
  return nn.Sequential{nn.Conv2d(1, 4, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    nn.Linear(4 * 6 * 6, 3)}:double():eval()
end

describe("kdx.explain.compare", function()
  kdx.manual_seed(5)
  local x = kdx.rand({6, 1, 12, 12}, "float64")
  local y = kdx.tensor({1, 2, 3, 1, 2, 3}, "int64")
  local data = {x = x, y = y}
  local methods = {{name = "integrated_gradients", opts = {steps = 8}}, "gradcam"}
  local layers = {teacher = "1", student = "1"}

  it("finds a model in perfect agreement with itself", function()
    local t = cnn(1)
    local r = kdx.explain.compare(t, t, data, {methods = methods, layers = layers, deletion_steps = 4})
    local ig = r.methods.integrated_gradients
    for i = 1, 6 do
      assert.is_true(math.abs(ig.similarity.spearman:get(i) - 1) < 1e-12)
      assert.is_true(math.abs(ig.similarity.cosine:get(i) - 1) < 1e-12)
      assert.are.equal(1, ig.similarity.topk_overlap:get(i))
      assert.is_true(math.abs(ig.similarity.ssim:get(i) - 1) < 1e-9)
      assert.are.equal(ig.deletion_auc.teacher:get(i), ig.deletion_auc.student:get(i))
    end
    assert.is_true(math.abs(ig.mean.spearman - 1) < 1e-12)
    assert.are.same({6, 1, 12, 12}, r.methods.gradcam.teacher:shape()) -- upsampled to the input
  end)

  it("lists the samples least similar first, and explains both models for the same targets", function()
    local t, s = cnn(1), cnn(2)
    local r = kdx.explain.compare(t, s, data, {methods = {"integrated_gradients"}, n = 5})
    assert.are.equal(5, r.n)
    local rho = r.methods.integrated_gradients.similarity.spearman
    for k = 2, #r.disagree do
      assert.is_true(rho:get(r.disagree[k - 1]) <= rho:get(r.disagree[k]))
    end
    assert.are.equal(r.disagree, r.methods.integrated_gradients.disagree)
    -- the attributions are those of the method called directly
    local direct = kdx.explain.integrated_gradients(s, x:narrow(1, 1, 5), {target = y:narrow(1, 1, 5)})
    assert.is_true((direct - r.methods.integrated_gradients.student):abs():max():item() < 1e-12)
    -- target = "teacher": the teacher's predicted classes, no labels needed
    local r2 = kdx.explain.compare(t, s, x, {methods = {"saliency"}, target = "teacher"})
    local pred = kdx.no_grad(function() return t(x):argmax(2) end)
    assert.are.same(pred:totable(), r2.target:totable())
  end)

  it("draws input | teacher | student | difference", function()
    local t, s = cnn(1), cnn(2)
    local r = kdx.explain.compare(t, s, data, {methods = {"saliency"}})
    local img = kdx.explain.compare_grid(r, 2, {scale = 2})
    assert.are.equal(3, img:size(1))
    assert.is_true(img:size(3) > 4 * 24) -- four tiles of 12 px at scale 2, with padding
  end)

  it("refuses bad arguments with clear errors", function()
    local t = cnn(1)
    assert.has_error(function() kdx.explain.compare(t, t, x, {methods = {"saliency"}}) end,
      "kdx.explain.compare: target = \"label\" needs labels: give a dataset or {x =, y =}, or target = \"teacher\"")
    assert.has_error(function() kdx.explain.compare(t, t, data, {methods = {"gradcam"}}) end,
      "kdx.explain.compare: gradcam needs layers = {teacher = name, student = name}")
    assert.has_error(function() kdx.explain.compare(t, t, data, {methods = {"nope"}}) end,
      "kdx.explain.compare: unknown method nope")
    assert.has_error(function() kdx.explain.compare(t, t, 3) end,
      "kdx.explain.compare: data must be a tensor, a dataset or {x =, y =}, got number")
    local r = kdx.explain.compare(t, t, data, {methods = {"saliency"}, n = 2})
    assert.has_error(function() kdx.explain.compare_grid(r, 3) end,
      "kdx.explain.compare_grid: sample must be an integer in 1..2, got 3")
  end)
end)
