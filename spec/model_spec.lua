-- A model trained in PyTorch crosses over: its safetensors state dict loads
-- into the same kdx architecture and gives the same outputs and gradients;
-- and second derivatives through a CNN agree with PyTorch's.
local kdx = require "kdx"
local nn = kdx.nn
local close = require("helpers.close").assert_close
local golden = dofile("spec/fixtures/models_golden.lua")

local T = require("helpers.close").from_fixture

local function cnn()
  return nn.Sequential{
    nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(4, 6, 3, {stride = 2}), nn.ReLU(), nn.Flatten(), nn.Linear(6, 3),
  }
end

describe("PyTorch models in kdx", function()
  local g = golden.cnn

  it("load from a PyTorch safetensors state dict and give the same eval outputs", function()
    local net = cnn()
    net:load("spec/fixtures/models_cnn.safetensors")
    net:eval()
    close(net(T(g.x)), T(g.out_eval), 1e-5, 1e-5)
  end)

  it("give the same training-mode outputs, loss and parameter gradients", function()
    local net = cnn()
    net:load("spec/fixtures/models_cnn.safetensors")
    local out = net(T(g.x))
    close(out, T(g.out_train), 1e-5, 1e-5)
    local loss = nn.functional.cross_entropy(out, T(g.y))
    close({loss:item()}, {g.loss}, 1e-5, 1e-5)
    loss:backward()
    for name, p in net:named_parameters() do close(p.grad, T(g.grads[name]), 1e-5, 1e-4) end
  end)

  it("round-trip through kdx's own save", function()
    local net = cnn()
    net:load("spec/fixtures/models_cnn.safetensors")
    local path = os.tmpname()
    net:save(path, {source = "spec"})
    local other = cnn()
    other:load(path)
    local _, meta = kdx.load(path)
    os.remove(path)
    assert.are.equal("spec", meta.source)
    net:eval(); other:eval()
    close(other(T(g.x)), net(T(g.x)), 0)
  end)

  it("compute a Hessian-vector product through a CNN as PyTorch does", function()
    local h = golden.hvp_cnn
    local x = T(h.x)
    local w1, w2 = T(h.params[1]):requires_grad(true), T(h.params[2]):requires_grad(true)
    local function loss()
      local a = kdx.conv2d(x, w1, nil, {padding = 1}):tanh()
      a = kdx.max_pool2d(a, 2, {ceil_mode = true}):reshape{2, 27}
      return kdx.matmul(a, w2:t()):pow(2):sum()
    end
    local gs = kdx.grad(loss(), {w1, w2}, {create_graph = true})
    local v1, v2 = T(h.v[1]), T(h.v[2])
    local hv = kdx.grad((gs[1] * v1):sum() + (gs[2] * v2):sum(), {w1, w2})
    close(hv[1], T(h.hv[1]), 1e-9, 1e-9)
    close(hv[2], T(h.hv[2]), 1e-9, 1e-9)
  end)
end)
