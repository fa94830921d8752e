-- kdx.nn.SoftDecisionTree: the paper's equations against a PyTorch
-- transcription (spec/fixtures/gen_soft_tree.py), gradients by finite
-- differences, the explained path, training from labels and soft targets.
local kdx = require "kdx"
local nn = kdx.nn
local golden = require "helpers.golden"
local T = require("helpers.close").from_fixture

local fx = golden.fixture("soft_tree_golden.lua")

local function fixture_tree()
  local tree = nn.SoftDecisionTree{depth = fx.depth, input = fx.input, classes = fx.classes,
    inverse_temperature = fx.beta, penalty = fx.lambda, dtype = "float64"}
  kdx.no_grad(function()
    tree.weight:copy_(T(fx.weight))
    tree.bias:copy_(T(fx.bias))
    tree.leaves:copy_(T(fx.leaves))
  end)
  return tree
end

describe("kdx.nn.SoftDecisionTree", function()
  it("computes path probabilities, the mixture, the loss and the penalty as the paper (PyTorch)", function()
    local tree = fixture_tree()
    local x = T(fx.x)
    golden.check("leaf_probabilities", tree:leaf_probabilities(x), fx.leaf_probabilities)
    golden.check("output", tree(x), fx.output)
    local loss = tree:loss(x, T(fx.targets), {penalty = false})
    assert.is_true(golden.close_to(loss:item(), fx.loss, 1e-12), ("loss %.17g vs %.17g"):format(loss:item(), fx.loss))
    assert.is_true(golden.close_to(tree:penalty():item(), fx.penalty, 1e-12))
  end)

  it("has the gradients PyTorch has for loss + penalty", function()
    local tree = fixture_tree()
    tree:loss(T(fx.x), T(fx.targets)):backward()
    golden.check("d weight", tree.weight.grad, fx.grad_weight)
    golden.check("d bias", tree.bias.grad, fx.grad_bias)
    golden.check("d leaves", tree.leaves.grad, fx.grad_leaves)
  end)

  it("passes gradcheck in float64 (loss with penalty, w.r.t. every parameter and the input)", function()
    kdx.manual_seed(3)
    local tree = nn.SoftDecisionTree{depth = 2, input = 3, classes = 3, penalty = 0.1, dtype = "float64"}
    local x = kdx.randn({4, 3}, "float64"):requires_grad(true)
    local t = kdx.softmax(kdx.randn({4, 3}, "float64"), 2)
    local w, b, l = tree.weight, tree.bias, tree.leaves
    assert.is_true(kdx.autograd.gradcheck(function(xi, wi, bi, li)
      rawset(tree, "weight", wi); rawset(tree, "bias", bi); rawset(tree, "leaves", li)
      return tree:loss(xi, t)
    end, {x, w, b, l}))
    rawset(tree, "weight", w); rawset(tree, "bias", b); rawset(tree, "leaves", l)
  end)

  it("gives leaf probabilities that sum to 1 and a path whose product is the leaf's", function()
    kdx.manual_seed(4)
    local tree = nn.SoftDecisionTree{depth = 4, input = 6, classes = 3, dtype = "float64"}
    local x = kdx.randn({7, 6}, "float64")
    local P = tree:leaf_probabilities(x)
    for i = 1, 7 do assert.is_true(math.abs(P:select(1, i):sum():item() - 1) < 1e-12) end
    local paths = tree:explain(x)
    local pred = tree:predict(x)
    for i, e in ipairs(paths) do
      assert.are.equal(4, #e.path)
      assert.are.equal(P:select(1, i):argmax():item(), e.leaf)
      local prod = 1
      for _, step in ipairs(e.path) do prod = prod * step.probability end
      assert.is_true(math.abs(prod - e.probability) < 1e-12)
      assert.is_true(math.abs(P:get(i, e.leaf) - e.probability) < 1e-12)
      assert.are.equal(e.class, pred:get(i))
      assert.are.equal(1, e.path[1].node)
    end
  end)

  it("learns the digits from labels, and from a teacher's soft targets", function()
    kdx.manual_seed(0)
    local train, test = kdx.data.digits()
    local function fit(targets_of)
      local tree = nn.SoftDecisionTree{depth = 4, input = 64, classes = 10, penalty = 1e-3}
      local opt = kdx.optim.Adam(tree:parameters(), {lr = 0.05})
      local loader = kdx.data.DataLoader(train, {batch_size = 128, shuffle = true, seed = 2})
      for _ = 1, 15 do
        for x, y in loader:iter() do
          opt:zero_grad()
          tree:loss(x, targets_of(x, y)):backward()
          opt:step()
        end
      end
      local pred = tree:predict(test.x)
      return pred:eq(test.y):double():mean():item()
    end
    local hard = fit(function(_, y) return y end)
    -- soft targets: the labels smoothed as a teacher's softmax would be
    local soft = fit(function(_, y) return kdx.nn.functional.one_hot(y, 10):float() * 0.9 + 0.01 end)
    assert.is_true(hard > 0.85, "accuracy from labels " .. hard)
    assert.is_true(soft > 0.85, "accuracy from soft targets " .. soft)
  end)

  it("keeps a finite penalty in a deep tree where some nodes are never reached", function()
    kdx.manual_seed(6)
    local tree = nn.SoftDecisionTree{depth = 12, input = 4, classes = 3, inverse_temperature = 20}
    local x = kdx.randn{8, 4}
    local loss = tree:loss(x, kdx.tensor({1, 2, 3, 1, 2, 3, 1, 2}, "int64"))
    assert.is_true(loss:item() == loss:item() and math.abs(loss:item()) < math.huge, tostring(loss:item()))
    loss:backward()
    local g = tree.weight.grad:abs():sum():item()
    assert.is_true(g == g and g < math.huge, "the gradient is not finite")
  end)

  it("shows its inner nodes as pictures", function()
    local tree = nn.SoftDecisionTree{depth = 3, input = 64, classes = 10}
    assert.are.same({7, 8, 8}, tree:filters{image_shape = {8, 8}}:shape())
    assert.has_error(function() tree:filters{image_shape = {7, 8}} end,
      "kdx.nn.SoftDecisionTree:filters: image_shape must be {H, W} with H * W = 64")
  end)

  it("refuses bad options and inputs with clear errors", function()
    assert.has_error(function() nn.SoftDecisionTree{depth = 0, input = 3, classes = 2} end,
      "kdx.nn.SoftDecisionTree: depth must be an integer >= 1, got 0")
    assert.has_error(function() nn.SoftDecisionTree{depth = 2, input = 3, classes = 1} end,
      "kdx.nn.SoftDecisionTree: classes must be an integer >= 2, got 1")
    assert.has_error(function() nn.SoftDecisionTree(3) end,
      "kdx.nn.SoftDecisionTree: takes an options table {depth=, input=, classes=}, got number")
    assert.has_error(function() nn.SoftDecisionTree{depth = 2, input = 3, classes = 2, penalty = -1} end,
      "kdx.nn.SoftDecisionTree: penalty must be a number >= 0")
    local tree = nn.SoftDecisionTree{depth = 2, input = 3, classes = 2}
    assert.has_error(function() tree(kdx.randn{2, 4}) end,
      "kdx.nn.SoftDecisionTree:forward: the tree takes 3 features per sample, got 4")
    assert.has_error(function() tree:loss(kdx.randn{2, 3}, kdx.randn{2, 3}) end,
      "kdx.nn.SoftDecisionTree:loss: soft targets must be [2, 2], got [2,3]")
    assert.has_error(function() tree:predict(kdx.randn{2, 3}, {mode = "vote"}) end,
      "kdx.nn.SoftDecisionTree:predict: mode must be \"max_path\" or \"mixture\", got vote")
    local fresh = nn.SoftDecisionTree{depth = 2, input = 3, classes = 2}
    assert.has_error(function() fresh:penalty() end,
      "kdx.nn.SoftDecisionTree:penalty: call the tree on a batch first")
  end)
end)
