-- Explanation-aware distillation losses (kdx.distill.loss.input_gradient_match,
-- gradcam_match, attribution_match): values and student gradients (through
-- double backward) against PyTorch (spec/fixtures/gen_explain_loss.py),
-- finite differences, and use as kdx.distill.run terms.
local kdx = require "kdx"
local nn = kdx.nn
local L = require "kdx.distill.loss"
local golden = require "helpers.golden"
local T = require("helpers.close").from_fixture

local g = golden.fixture("explain_loss_golden.lua")

local function teacher()
  local net = nn.Sequential{
    nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(4, 6, 3, {stride = 2}), nn.ReLU(), nn.Flatten(), nn.Linear(6, 3),
  }
  net:load("spec/fixtures/models_cnn.safetensors")
  return net:double():eval()
end

local function student()
  local net = nn.Sequential{nn.Conv2d(1, 3, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    nn.Linear(3 * 4 * 4, 3)}:double()
  kdx.no_grad(function()
    net:get(1).weight:copy_(T(g.student.conv_weight))
    net:get(1).bias:copy_(T(g.student.conv_bias))
    net:get(5).weight:copy_(T(g.student.linear_weight))
    net:get(5).bias:copy_(T(g.student.linear_bias))
  end)
  return net
end

local x, y = T(g.x), T(g.y)
local cases = {
  {"input_gradient_match", function(s, t) return L.input_gradient_match(s, t, x, y) end},
  {"gradcam_match_l1", function(s, t)
    return L.gradcam_match(s, t, x, y, {student_layer = "1", teacher_layer = "2", distance = "l1"})
  end},
  {"gradcam_match_cosine_resized", function(s, t)
    return L.gradcam_match(s, t, x, y, {student_layer = "2", teacher_layer = "2", distance = "cosine"})
  end},
  {"attribution_match", function(s, t) return L.attribution_match(s, t, x, y, {steps = 8}) end},
}

describe("explanation-aware distillation losses", function()
  local t = teacher()
  for _, case in ipairs(cases) do
    local name, loss_of = case[1], case[2]
    it(name .. " has PyTorch's value and student gradients (double backward)", function()
      local s = student()
      local loss = loss_of(s, t)
      local want = g[name]
      assert.is_true(golden.close_to(loss:item(), want.value, 1e-9), ("%.17g vs %.17g"):format(loss:item(), want.value))
      local gw, gl = table.unpack(kdx.grad(loss, {s:get(1).weight, s:get(5).weight}))
      golden.check(name .. " d conv weight", gw, want.grad_conv_weight, 1e-8)
      golden.check(name .. " d linear weight", gl, want.grad_linear_weight, 1e-8)
    end)
  end

  it("pass gradcheck in float64 w.r.t. a student parameter", function()
    local s = student()
    local lin = s:get(5)
    local w0 = lin.weight
    for _, case in ipairs{cases[1], cases[2], cases[4]} do
      assert.is_true(kdx.autograd.gradcheck(function(w)
        rawset(lin, "weight", w)
        return case[2](s, t)
      end, {w0}), case[1])
    end
    rawset(lin, "weight", w0)
  end)

  it("is zero when the student is the teacher", function()
    assert.is_true(L.input_gradient_match(t, t, x, y):item() < 1e-20)
    -- (L1: a map that ReLU zeroes has no direction, so its cosine is 0, not 1)
    assert.is_true(L.gradcam_match(t, t, x, y, {student_layer = "2", teacher_layer = "2", distance = "l1"}):item() < 1e-12)
  end)

  it("train through kdx.distill.run as loss terms", function()
    kdx.manual_seed(2)
    local tf = teacher():float()
    local xs = kdx.randn{64, 1, 8, 8}
    local ys = kdx.no_grad(function() return tf(xs):argmax(2) end)
    local ds = kdx.data.dataset(xs, ys)
    local s = nn.Sequential{nn.Conv2d(1, 3, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
      nn.Linear(48, 3)}
    local before = L.gradcam_match(s, tf, xs, ys, {student_layer = "1", teacher_layer = "2"})
    assert.is_true(before:item() < 0.99, "the student's Grad-CAM maps start dead: choose another seed")
    local history = kdx.distill.run{
      teacher = tf, student = s, data = ds, batch_size = 16, epochs = 15, progress = false,
      optimizer = kdx.optim.Adam(s:parameters(), {lr = 0.01}),
      loss = {kd = 0.5, gradcam_match = 1, input_gradient_match = 0.5}, log = function() end,
      loss_opts = {gradcam_match = {student_layer = "1", teacher_layer = "2"}},
    }
    assert.is_true(#history == 15)
    local after = L.gradcam_match(s, tf, xs, ys, {student_layer = "1", teacher_layer = "2"})
    assert.is_true(after:item() < before:item(), ("Grad-CAM distance %.4f -> %.4f"):format(before:item(), after:item()))
  end)

  it("refuse bad arguments", function()
    local s = student()
    assert.has_error(function() L.input_gradient_match(3, t, x, y) end,
      "kdx.distill.loss.input_gradient_match: student must be a module or a function, got number")
    assert.has_error(function() L.gradcam_match(s, t, x, y) end,
      "kdx.distill.loss.gradcam_match: needs student_layer and teacher_layer (submodule names)")
    assert.has_error(function() L.gradcam_match(s, t, x, y, {student_layer = "9", teacher_layer = "2"}) end,
      "kdx.distill.loss.gradcam_match: the model has no submodule named \"9\"")
    assert.has_error(function() L.gradcam_match(s, t, x, y, {student_layer = "1", teacher_layer = "2", distance = "l2"}) end,
      "kdx.distill.loss.gradcam_match: distance must be \"l1\" or \"cosine\", got l2")
    assert.has_error(function() L.attribution_match(s, t, x, kdx.tensor{1, 2}) end,
      "kdx.distill.loss.attribution_match: y must be 4 class labels (int64, 1-based)")
    assert.has_error(function() L.attribution_match(s, t, x, y, {steps = 0}) end,
      "kdx.distill.loss.attribution_match: steps must be an integer >= 1")
    assert.has_error(function() L.input_gradient_match(s, t, x, y, {foo = 1}) end,
      "kdx.distill.loss.input_gradient_match: unknown option 'foo'")
  end)
end)
