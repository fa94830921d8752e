-- kdx.explain.lrp: agreement with a PyTorch reimplementation of Zennit's
-- rules on a fixed CNN for every composite, conservation, the signs and
-- shapes the rules promise, BatchNorm folding, batching, and errors.
local kdx = require "kdx"
local nn = kdx.nn
local helpers = require "helpers.close"
local golden = require "helpers.golden"
local close, T = helpers.assert_close, helpers.from_fixture

local G = golden.fixture("explain_lrp_golden.lua")

local function fixture_dir()
  local src = debug.getinfo(1, "S").source:sub(2)
  return (src:match("^(.*)[/\\]") or ".") .. "/fixtures/"
end

-- The CNN of lrp_cnn.safetensors (written by gen_explain_lrp.py), float64, eval mode.
local function cnn()
  local net = nn.Sequential{
    nn.Sequential{nn.Conv2d(1, 3, 3, {padding = 1}), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(3, 4, 3, {padding = 1}), nn.ReLU(), nn.AvgPool2d(2)},
    nn.Flatten(),
    nn.Sequential{nn.Linear(16, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.3), nn.Linear(6, 3)},
  }
  net:load_state_dict(kdx.load(fixture_dir() .. "lrp_cnn.safetensors"))
  return net:double():eval()
end

-- A random ReLU CNN with every bias (and BatchNorm shift) zero.
local function biasless()
  kdx.manual_seed(3)
  local net = nn.Sequential{nn.Conv2d(2, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(4, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)}
  net = net:double():eval()
  kdx.no_grad(function()
    for name, p in net:named_parameters() do
      if name:match("bias$") then p:zero_() end
    end
    net["1"].running_var:copy_(kdx.rand({4}, "float64") + 0.5)
    net["1"].weight:copy_(kdx.rand({4}, "float64") + 0.5)
  end)
  return net
end

local function logits_at(model, x, target)
  local y = kdx.no_grad(function() return model(x) end)
  local out = {}
  for i = 1, x:shape()[1] do out[i] = y:get(i, type(target) == "table" and target[i] or target) end
  return out
end

describe("kdx.explain.lrp", function()
  local x, target = T(G.x), T(G.target)

  describe("on the fixed CNN", function()
    for _, case in ipairs(G.cases) do
      it("matches the PyTorch reimplementation with " .. case.name, function()
        local opts = {target = target, composite = case.composite}
        for k, v in pairs(case.opts) do opts[k] = type(v) == "table" and v.shape and T(v) or v end
        local rel, rows = kdx.explain.lrp(cnn(), x, opts)
        close(rel, T(case.relevance), 1e-9, 1e-9)
        local sums = T(case.sums)
        assert.are.equal(#case.rules, #rows)
        for i, row in ipairs(rows) do
          assert.are.equal(case.rules[i], row.rule, "rule of layer " .. row.name)
          close(row.relevance_in, sums:select(1, i), 1e-9, 1e-9)
          close(row.relevance_out, sums:select(1, i + 1), 1e-9, 1e-9)
        end
      end)
    end

    it("walks a class derived from Sequential that keeps its forward", function()
      local Block = nn.Sequential:extend("Block")
      kdx.manual_seed(8)
      local lin1, lin2 = nn.Linear(4, 3):double(), nn.Linear(3, 2):double()
      local xs = kdx.randn({2, 4}, "float64")
      local a, rows = kdx.explain.lrp(nn.Sequential{Block{lin1, nn.ReLU()}, lin2}, xs, {target = 1})
      close(a, kdx.explain.lrp(nn.Sequential{lin1, nn.ReLU(), lin2}, xs, {target = 1}), 0)
      assert.are.equal("0.1", rows[2].name)
    end)

    it("names each layer as named_modules does and reports its type", function()
      local _, rows = kdx.explain.lrp(cnn(), x, {target = 1})
      local names, types = {}, {}
      for i, row in ipairs(rows) do names[i], types[i] = row.name, row.type end
      assert.are.same({"0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "1", "2.0", "2.1", "2.2", "2.3", "2.4"}, names)
      assert.are.same({"Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "AvgPool2d", "Flatten",
        "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"}, types)
    end)

    it("starts from the target logit: the output relevance is model(x) at the target", function()
      local _, rows = kdx.explain.lrp(cnn(), x, {target = target})
      local want = T(G.logits)
      for i = 1, 3 do
        assert.is_true(math.abs(rows[#rows].relevance_out:get(i) - want:get(i, target:get(i))) < 1e-12)
      end
    end)

    it("leaves the model unchanged (BatchNorm is folded into copies)", function()
      local net = cnn()
      local before = net:state_dict()
      local copy = {}
      for k, v in pairs(before) do copy[k] = v:clone() end
      kdx.explain.lrp(net, x, {target = 1, composite = "epsilon_gamma_box", low = 0, high = 1})
      for k, v in pairs(net:state_dict()) do close(v, copy[k], 0) end
    end)

    it("accepts one class for all, a table or an int64 tensor as target", function()
      local net = cnn()
      local a = kdx.explain.lrp(net, x, {target = {3, 1, 2}})
      close(kdx.explain.lrp(net, x, {target = kdx.tensor({3, 1, 2}, "int64")}), a, 0)
      local one = kdx.explain.lrp(net, x, {target = 2})
      close(one:narrow(1, 3, 1), a:narrow(1, 3, 1), 0)
    end)

    it("gives the same relevance whatever the batch size", function()
      local net = cnn()
      local ref = kdx.explain.lrp(net, x, {target = target, composite = "epsilon_gamma_box", low = 0, high = 1})
      for _, bs in ipairs{1, 2} do
        local r, rows = kdx.explain.lrp(net, x, {target = target, composite = "epsilon_gamma_box", low = 0, high = 1,
          batch_size = bs})
        close(r, ref, 1e-12, 1e-12)
        assert.are.same({3}, rows[1].relevance_in:shape())
      end
    end)

    it("runs in float32 close to float64", function()
      local net = cnn():float()
      local r = kdx.explain.lrp(net, x:float(), {target = target})
      assert.are.equal("float32", r:dtype())
      close(r:double(), T(G.cases[1].relevance), 1e-4, 1e-3)
    end)
  end)

  describe("conservation", function()
    kdx.manual_seed(9)
    local xb = kdx.randn({4, 2, 8, 8}, "float64")

    for _, rules in ipairs{{Conv2d = "epsilon"}, {}, {Conv2d = "gamma"}} do
      local label = next(rules) and ("with Conv2d = " .. rules.Conv2d) or "with epsilon_plus"
      it("holds layer by layer without biases " .. label, function()
        local net = biasless()
        local target = {1, 2, 3, 1}
        local rel, rows = kdx.explain.lrp(net, xb, {target = target, rules = rules, epsilon = 1e-12,
          stabilizer = 1e-12})
        local want = logits_at(net, xb, target)
        local tot = rel:reshape{4, -1}:sum(2)
        for i = 1, 4 do
          assert.is_true(math.abs(tot:get(i) - want[i]) <= 1e-6 * math.abs(want[i]), "sample " .. i)
          for _, row in ipairs(rows) do
            local a, b = row.relevance_in:get(i), row.relevance_out:get(i)
            assert.is_true(math.abs(a - b) <= 1e-6 * math.abs(want[i]), ("layer %s sample %d: %g vs %g"):format(row.name, i, a, b))
          end
        end
      end)
    end
  end)

  describe("rules", function()
    it("z+ gives non-negative relevance for non-negative input and a positive logit", function()
      local net = biasless()
      kdx.no_grad(function() net["10"].weight:abs_() end) -- positive logits for a non-negative hidden layer
      kdx.manual_seed(10)
      local xs = kdx.rand({4, 2, 8, 8}, "float64")
      local y = kdx.no_grad(function() return net(xs) end)
      local best = y:argmax(2)
      for i = 1, 4 do assert.is_true(y:get(i, best:get(i)) > 0) end
      local rel = kdx.explain.lrp(net, xs, {target = best, rules = {Linear = "zplus"}})
      assert.is_true(rel:min():item() >= 0)
      assert.is_true(rel:sum():item() > 0)
      -- and epsilon on the dense layers can go negative, so the test can fail
      local eps = kdx.explain.lrp(net, kdx.randn({4, 2, 8, 8}, "float64"), {target = 1, rules = {Conv2d = "epsilon"}})
      assert.is_true(eps:min():item() < 0)
    end)

    it("alpha1beta0 is z+", function()
      local net = cnn()
      close(kdx.explain.lrp(net, x, {target = 1, rules = {Conv2d = "alpha1beta0"}}),
        kdx.explain.lrp(net, x, {target = 1}), 0)
    end)

    it("flat spreads each output's relevance evenly over its inputs", function()
      kdx.manual_seed(4)
      local net = nn.Sequential{nn.Linear(4, 3)}:double()
      local xs = kdx.randn({2, 4}, "float64")
      local rel = kdx.explain.lrp(net, xs, {target = 2, rules = {Linear = "flat"}})
      local want = logits_at(net, xs, 2)
      for i = 1, 2 do
        for j = 1, 4 do
          assert.are.equal(rel:get(i, 1), rel:get(i, j))
          -- the stabiliser (1e-6 on a denominator of 4) is the only difference
          assert.is_true(math.abs(rel:get(i, j) - want[i] / 4) < 1e-6 * math.abs(want[i]))
        end
      end
    end)

    it("w^2 shares relevance in proportion to the squared weights", function()
      kdx.manual_seed(4)
      local net = nn.Sequential{nn.Linear(4, 3)}:double()
      local xs = kdx.randn({2, 4}, "float64")
      local rel = kdx.explain.lrp(net, xs, {target = 3, rules = {["0"] = "wsquare"}})
      local w = net["0"].weight:select(1, 3) ^ 2
      local want = logits_at(net, xs, 3)
      for i = 1, 2 do close(rel:select(1, i), w / (w:sum() + 1e-6) * want[i], 1e-12) end
    end)

    it("epsilon is x w / z for one linear layer without bias", function()
      kdx.manual_seed(5)
      local net = nn.Sequential{nn.Linear(4, 3, {bias = false})}:double()
      local xs = kdx.randn({2, 4}, "float64")
      local rel = kdx.explain.lrp(net, xs, {target = 1, epsilon = 0})
      close(rel, xs * net["0"].weight:select(1, 1), 1e-12)
    end)

    it("treats adaptive average pooling as average pooling (norm)", function()
      kdx.manual_seed(7)
      local conv = nn.Conv2d(2, 3, 3):double()
      local head = nn.Linear(3, 2):double()
      local a = nn.Sequential{conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head}
      local b = nn.Sequential{conv, nn.ReLU(), nn.AvgPool2d(4), nn.Flatten(), head}
      local xs = kdx.randn({2, 2, 6, 6}, "float64")
      local ra, rows = kdx.explain.lrp(a, xs, {target = 2})
      close(ra, kdx.explain.lrp(b, xs, {target = 2}), 1e-12)
      assert.are.equal("norm", rows[3].rule)
    end)

    it("max pooling hands all relevance to the largest input", function()
      local net = nn.Sequential{nn.MaxPool2d(2), nn.Flatten()}
      local xs = kdx.tensor({{{{1, 5}, {2, 3}}}}, "float64")
      local rel = kdx.explain.lrp(net, xs, {})
      close(rel, kdx.tensor({{{{0, 5}, {0, 0}}}}, "float64"), 0)
    end)
  end)

  describe("BatchNorm folding", function()
    it("matches PyTorch's merged weights", function()
      local net = cnn()
      local w, b = kdx.explain.lrp_fold_batchnorm(net["0"]["0"], net["0"]["1"])
      close(w, T(G.fold.weight), 1e-12, 1e-12)
      close(b, T(G.fold.bias), 1e-12, 1e-12)
    end)

    it("gives the unfolded model's logits", function()
      local net = cnn()
      local c1, c2 = nn.Conv2d(1, 3, 3, {padding = 1}):double(), nn.Linear(16, 6):double()
      local w1, b1 = kdx.explain.lrp_fold_batchnorm(net["0"]["0"], net["0"]["1"])
      local w2, b2 = kdx.explain.lrp_fold_batchnorm(net["2"]["0"], net["2"]["1"])
      kdx.no_grad(function()
        c1.weight:copy_(w1); c1.bias:copy_(b1); c2.weight:copy_(w2); c2.bias:copy_(b2)
      end)
      local folded = nn.Sequential{c1, nn.ReLU(), nn.MaxPool2d(2), net["0"]["4"], nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), c2, nn.ReLU(), net["2"]["4"]}
      local y = kdx.no_grad(function() return folded(x) end)
      close(y, T(G.logits), 1e-12, 1e-12)
    end)

    it("works without a bias and without affine parameters", function()
      kdx.manual_seed(6)
      local lin, bn = nn.Linear(3, 2, {bias = false}):double(), nn.BatchNorm1d(2, {affine = false}):double()
      kdx.no_grad(function() bn.running_mean:copy_(kdx.tensor({0.5, -1}, "float64")) end)
      bn:eval()
      local w, b = kdx.explain.lrp_fold_batchnorm(lin, bn)
      local xs = kdx.randn({4, 3}, "float64")
      local want = kdx.no_grad(function() return bn(lin(xs)) end)
      close(kdx.matmul(xs, w:t()) + b, want, 1e-12)
    end)
  end)

  describe("errors", function()
    local function fails(pattern, fn)
      local ok, err = pcall(fn)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find(pattern, 1, true), tostring(err))
    end

    it("refuses a model that is not a chain of supported layers, naming the module", function()
      local Net = nn.Module:extend("Net")
      function Net:init() self.fc = nn.Linear(4, 2) end
      function Net:forward(b) return self.fc(b) end
      local xs = kdx.randn{2, 4}
      fails("kdx.explain.lrp: the model must be a chain of layers", function() kdx.explain.lrp(Net(), xs, {target = 1}) end)
      fails('module "1" is a Tanh', function()
        kdx.explain.lrp(nn.Sequential{nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)}, xs, {target = 1})
      end)
      fails('module "0.1" is a Net', function()
        kdx.explain.lrp(nn.Sequential{nn.Sequential{nn.ReLU(), Net()}}, xs, {target = 1})
      end)
      fails("model must be a kdx.nn module", function() kdx.explain.lrp(function(b) return b end, xs, {}) end)
    end)

    it("refuses unknown composites and rules, and rules that do not apply", function()
      local net = cnn()
      fails('unknown composite "lrp_plus"', function() kdx.explain.lrp(net, x, {target = 1, composite = "lrp_plus"}) end)
      fails('unknown rule "epsilonn"', function() kdx.explain.lrp(net, x, {target = 1, rules = {Linear = "epsilonn"}}) end)
      fails('"Conv3d" names no layer', function() kdx.explain.lrp(net, x, {target = 1, rules = {Conv3d = "gamma"}}) end)
      fails("the epsilon rule does not apply to layer 0.3 (MaxPool2d)", function()
        kdx.explain.lrp(net, x, {target = 1, rules = {MaxPool2d = "epsilon"}})
      end)
      fails("rules must be a table", function() kdx.explain.lrp(net, x, {target = 1, rules = "flat"}) end)
    end)

    it("asks for the bounds when z^B needs them", function()
      fails("the zbox rule of layer 0.0 needs the input bounds low and high", function()
        kdx.explain.lrp(cnn(), x, {target = 1, composite = "epsilon_gamma_box"})
      end)
      fails("the bounds low [3] and high [1] must broadcast to one sample of the input of layer 0.0", function()
        kdx.explain.lrp(cnn(), x, {target = 1, composite = "epsilon_gamma_box", low = kdx.zeros({3}, "float64"), high = 1})
      end)
      fails("low must be a number or a tensor", function()
        kdx.explain.lrp(cnn(), x, {target = 1, composite = "epsilon_gamma_box", low = "0", high = 1})
      end)
    end)

    it("refuses a BatchNorm that has no layer to fold into", function()
      local net = nn.Sequential{nn.Linear(4, 3), nn.ReLU(), nn.BatchNorm1d(3)}:eval()
      fails("kdx.explain.lrp: BatchNorm layer 2 must come right after a Linear or Conv2d layer", function()
        kdx.explain.lrp(net, kdx.randn{2, 4}, {target = 1})
      end)
    end)

    it("checks the target, the options and x", function()
      local net = cnn()
      fails("kdx.explain.lrp: the model returns [3,3]: give a target class", function() kdx.explain.lrp(net, x, {}) end)
      fails("target must be a class or classes", function()
        kdx.explain.lrp(net, x, {target = function(y) return y:select(2, 1) end})
      end)
      fails("kdx.explain.lrp", function() kdx.explain.lrp(net, x, {target = 7}) end)
      fails("batch_size must be >= 1", function() kdx.explain.lrp(net, x, {target = 1, batch_size = 0}) end)
      fails("epsilon must be a finite number >= 0", function() kdx.explain.lrp(net, x, {target = 1, epsilon = -1}) end)
      fails("stabilizer must be a finite number >= 0", function()
        kdx.explain.lrp(net, x, {target = 1, stabilizer = -1e-6})
      end)
      fails("gamma must be a number", function() kdx.explain.lrp(net, x, {target = 1, gamma = "big"}) end)
      fails("x must be a tensor batch", function() kdx.explain.lrp(net, {1, 2}, {target = 1}) end)
      fails("kdx.explain.lrp: Linear layer", function()
        kdx.explain.lrp(nn.Sequential{nn.Linear(5, 2)}, kdx.randn{2, 4}, {target = 1})
      end)
    end)
  end)
end)
