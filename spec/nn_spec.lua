-- kdx.nn: modules register what PyTorch registers, under the same names,
-- and behave the same way in training and evaluation.
local kdx = require "kdx"
local nn = kdx.nn
local close = require("helpers.close").assert_close

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

describe("kdx.nn", function()
  describe("Module", function()
    local Net = nn.Module:extend("Net")
    function Net:init()
      self.features = nn.Sequential{nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU()}
      self.head = nn.Linear(4 * 6 * 6, 3)
    end
    function Net:forward(x) return self.head(self.features(x):flatten(2)) end

    it("names parameters and buffers as PyTorch does", function()
      assert.are.same({
        "features.0.bias", "features.0.weight", "features.1.bias", "features.1.num_batches_tracked",
        "features.1.running_mean", "features.1.running_var", "features.1.weight", "head.bias", "head.weight",
      }, keys(Net():state_dict()))
    end)

    it("lists parameters in registration order, shared ones once", function()
      local lin = nn.Linear(2, 2)
      local s = nn.Sequential{lin, nn.ReLU(), lin}
      local names = {}
      for name in s:named_parameters() do names[#names + 1] = name end
      assert.are.same({"0.weight", "0.bias"}, names)
      assert.are.equal(6, s:num_parameters())
      assert.are.equal(2, #s:parameters())
    end)

    it("round-trips a state dict and refuses mismatches", function()
      local a, b = Net(), Net()
      b:load_state_dict(a:state_dict())
      local x = kdx.randn{2, 1, 6, 6}
      a:eval(); b:eval()
      close(b(x), a(x), 0)
      local sd = a:state_dict()
      sd["head.weight"] = kdx.zeros{3, 2}
      assert.has_error(function() b:load_state_dict(sd) end)
      sd["head.weight"], sd["extra"] = nil, kdx.zeros{1}
      assert.has_error(function() b:load_state_dict(sd) end)
      local r = b:load_state_dict(sd, {strict = false})
      assert.are.same({"head.weight"}, r.missing)
      assert.are.same({"extra"}, r.unexpected)
    end)

    it("captures named activations in the graph with forward_with", function()
      local net = Net()
      local x = kdx.randn{2, 1, 6, 6}
      local out, feats = net:forward_with(x, {"features.0", "features"})
      assert.are.same({2, 3}, out:shape())
      assert.are.same({2, 4, 6, 6}, feats["features.0"]:shape())
      local g = kdx.grad(feats["features"]:sum(), net.features:get(1).weight)[1]
      assert.are.same({4, 1, 3, 3}, g:shape())
      assert.has_error(function() net:forward_with(x, {"nope"}) end)
    end)

    it("runs forward hooks and removes them", function()
      local lin = nn.Linear(2, 2)
      local calls = 0
      local h = lin:register_forward_hook(function(_, _, out) calls = calls + 1; return out * 0 end)
      assert.are.same({{0, 0}}, lin(kdx.ones{1, 2}):totable())
      h.remove()
      lin(kdx.ones{1, 2})
      assert.are.equal(1, calls)
    end)

    it("switches dropout and batch norm between training and evaluation", function()
      local d = nn.Dropout(0.5)
      kdx.manual_seed(1)
      assert.is_true(d(kdx.ones{1000}):eq(0):sum():item() > 300)
      d:eval()
      assert.are.equal(0, d(kdx.ones{1000}):eq(0):sum():item())
      local bn = nn.BatchNorm1d(2)
      local x = kdx.tensor{{1, 10}, {3, 30}}
      bn(x)
      close(bn.running_mean, {0.2, 2}, 1e-6)
      close(bn.running_var, {0.9 + 0.1 * 2, 0.9 + 0.1 * 200}, 1e-5)
      assert.are.equal(1, bn.num_batches_tracked:item())
      bn:eval()
      close(bn(x), (x - bn.running_mean) / (bn.running_var + 1e-5):sqrt(), 1e-5)
    end)

    it("prints a tree with parameter counts", function()
      local s = tostring(Net())
      assert.truthy(s:find("(features): Sequential(", 1, true))
      assert.truthy(s:find("(0): Conv2d(1, 4, kernel_size=(3, 3)", 1, true))
      assert.truthy(s:find("# 483 trainable parameters", 1, true))
    end)

    it("converts to float64 and trains to fit a line", function()
      kdx.manual_seed(2)
      local m = nn.Linear(1, 1):double()
      assert.are.equal("float64", m.weight:dtype())
      local x = kdx.randn({64, 1}, "float64")
      local y = x * 3 + 1
      local opt = kdx.optim.SGD(m:parameters(), {lr = 0.1})
      for _ = 1, 200 do
        opt:zero_grad()
        local loss = ((m(x) - y) ^ 2):mean()
        loss:backward()
        opt:step()
      end
      close(m.weight, {{3}}, 1e-6)
      close(m.bias, {1}, 1e-6)
    end)
  end)

  describe("initialisation", function()
    it("draws Linear weights from PyTorch's kaiming-uniform bound", function()
      kdx.manual_seed(3)
      local lin = nn.Linear(100, 200)
      local bound = 1 / math.sqrt(100)
      assert.is_true(lin.weight:abs():max():item() <= bound)
      assert.is_true(math.abs(lin.weight:std():item() - bound / math.sqrt(3)) < 0.01 * bound)
      assert.is_true(lin.bias:abs():max():item() <= bound)
    end)

    it("computes fans and gains as torch.nn.init", function()
      local fin, fout = nn.init.calculate_fan(kdx.zeros{8, 4, 3, 3})
      assert.are.same({36, 72}, {fin, fout})
      close({nn.init.calculate_gain("relu"), nn.init.calculate_gain("tanh")}, {math.sqrt(2), 5 / 3}, 1e-12)
      local t = nn.init.xavier_uniform_(kdx.empty{50, 50})
      assert.is_true(t:abs():max():item() <= math.sqrt(6 / 100))
    end)
  end)

  describe("layers", function()
    local x = kdx.randn{2, 3, 4, 4}
    it("match the functional ops", function()
      local conv = nn.Conv2d(3, 2, 3, {stride = 2, padding = 1})
      close(conv(x), kdx.conv2d(x, conv.weight, conv.bias, {stride = 2, padding = 1}), 0)
      close(nn.MaxPool2d(2)(x), (kdx.max_pool2d(x, 2)), 0)
      close(nn.AdaptiveAvgPool2d(1)(x), kdx.adaptive_avg_pool2d(x, 1), 0)
      close(nn.Flatten()(x), x:reshape{2, 48}, 0)
      close(nn.Softmax(2)(x), x:softmax(2), 0)
      close(nn.LeakyReLU(0.2)(x), x:leaky_relu(0.2), 0)
      local ln = nn.LayerNorm{4, 4}
      close(ln(x), kdx.layer_norm(x, {4, 4}, ln.weight, ln.bias), 0)
      local emb = nn.Embedding(5, 3)
      close(emb(kdx.tensor({{1, 5}}, "int64")), kdx.stack({emb.weight:select(1, 1), emb.weight:select(1, 5)}):unsqueeze(1), 0)
    end)

    it("refuse bad sizes with the layer's name", function()
      assert.has_error(function() nn.Linear(0, 2) end, "kdx.nn.Linear: sizes must be positive integers, got 0")
      assert.has_error(function() nn.Conv2d(3, 4, 3, {groups = 2}) end)
      assert.has_error(function() nn.BatchNorm2d(2)(kdx.zeros{2, 2}) end)
    end)

    it("keep containers ordered and indexable", function()
      local s = nn.Sequential{nn.ReLU(), nn.Tanh()}
      s:append(nn.Sigmoid())
      assert.are.equal(3, #s)
      assert.are.equal("Sigmoid", getmetatable(s:get(-1)).__name)
      local l = nn.ModuleList{nn.Linear(2, 2), nn.Linear(2, 2)}
      assert.are.equal(12, l:num_parameters())
      local d = nn.ModuleDict{b = nn.ReLU(), a = nn.Linear(1, 1)}
      assert.are.same({"a", "b"}, {d._children[1], d._children[2]})
    end)
  end)
end)
