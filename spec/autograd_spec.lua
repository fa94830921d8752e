-- Autograd: every differentiable op passes gradcheck and gradgradcheck
-- (central differences in float64), and the tape behaves as PyTorch's does.
-- The NN kernels' gradients are in autograd_nn_spec.lua.
local kdx = require "kdx"
local ag = kdx.autograd
local close = require("helpers.close").assert_close

local function checks(name, fn, inputs, second)
  it(name .. " passes gradcheck" .. (second == false and "" or " and gradgradcheck"), function()
    assert.is_true(ag.gradcheck(fn, inputs))
    if second ~= false then assert.is_true(ag.gradgradcheck(fn, inputs)) end
  end)
end

local function var(shape, seed)
  kdx.manual_seed(seed or 1)
  return kdx.randn(shape, "float64"):requires_grad(true)
end

describe("autograd", function()
  local x, y = var({3, 4}, 1), var({4}, 2)

  describe("unary ops", function()
    for _, name in ipairs{"exp", "tanh", "sigmoid", "sin", "cos", "gelu", "softplus", "relu", "abs",
                          "erf", "elu", "neg", "leaky_relu"} do
      checks(name, function(a) return a[name](a) end, {x})
    end
    for _, name in ipairs{"sqrt", "rsqrt", "log", "log1p"} do
      checks(name .. " (of a positive input)", function(a) a = a:abs() + 0.5; return a[name](a) end, {x})
    end
    checks("gelu with the tanh approximation", function(a) return a:gelu("tanh") end, {x})
    checks("softplus with beta 2 and threshold 1", function(a) return a:softplus(2, 1) end, {x})
    checks("clamp", function(a) return a:clamp(-0.5, 0.5) end, {x})
    checks("clamp with one bound", function(a) return a:clamp(nil, 0.3) end, {x})
    checks("pow with a number exponent", function(a) return (a:abs() + 0.5) ^ 2.5 end, {x})
    checks("a number raised to a tensor", function(a) return 2 ^ a end, {x})
  end)

  describe("binary ops with broadcasting", function()
    checks("add and sub", function(a, b) return a + b - 2 * b end, {x, y})
    checks("mul", function(a, b) return a * b end, {x, y})
    checks("div", function(a, b) return a / (b:abs() + 1) end, {x, y})
    checks("pow", function(a, b) return (a:abs() + 0.5) ^ b end, {x, y})
    checks("maximum and minimum", function(a, b) return kdx.maximum(a, b) + kdx.minimum(a, b * 2) end, {x, y})
    checks("where", function(a, b) return kdx.where(a:gt(0), a, b) end, {x, y})
    checks("masked_fill", function(a) return a:masked_fill(a:gt(0.5), 0) end, {x})

    it("splits the gradient of maximum evenly at ties, as PyTorch", function()
      local a = kdx.tensor({1, 2}, "float64"):requires_grad(true)
      local b = kdx.tensor({1, 3}, "float64"):requires_grad(true)
      local ga, gb = table.unpack(kdx.grad(kdx.maximum(a, b):sum(), {a, b}))
      assert.are.same({0.5, 0}, ga:totable())
      assert.are.same({0.5, 1}, gb:totable())
    end)
  end)

  describe("reductions", function()
    for _, r in ipairs{"sum", "mean", "prod", "logsumexp", "amax", "amin"} do
      checks(r .. " over one dim", function(a) return a[r](a, 2) end, {x})
      checks(r .. " over all dims with keepdim", function(a) return a[r](a, {1, 2}, true) end, {x})
    end
    checks("norm 2, 1 and inf", function(a) return a:norm(2, 2) + a:norm(1) + a:norm(math.huge, 2) end, {x})
    checks("var and std", function(a) return a:var(2) + a:std(1, false):sum() end, {x})
    checks("max along a dim", function(a) return (a:max(2)) end, {x})
    checks("min along a dim with keepdim", function(a) return (a:min(1, true)) end, {x})
    checks("cumsum", function(a) return a:cumsum(2) end, {x})
    -- rows with no, one, two and three zeros: the second derivatives at a
    -- zero are not 0 when one or two entries are zero
    local z = kdx.tensor({{1.5, -2, 0.5}, {1, 0, 2}, {0, 0, 3}, {0, 0, 0}}, "float64"):requires_grad(true)
    checks("prod with zeros along a dim", function(a) return a:prod(2) end, {z})
    checks("prod with zeros along the other dim", function(a) return a:prod(1) end, {z})
    checks("prod with zeros over all dims", function(a) return a:narrow(1, 1, 2):prod() end, {z})
    checks("prod with zeros over two of three dims", function(a) return a:prod({2, 3}) end,
      {kdx.tensor({{{0, 2}, {3, 0}}, {{1, 2}, {0, 5}}, {{1, 2}, {3, 4}}}, "float64"):requires_grad(true)})
  end)

  describe("views and copies", function()
    checks("reshape and view", function(a) return a:reshape{2, 6}:view{12} * 2 end, {x})
    checks("transpose and t", function(a) return a:t():contiguous():transpose(1, 2) end, {x})
    checks("permute", function(a) return a:reshape{3, 2, 2}:permute{3, 1, 2} end, {x})
    checks("narrow", function(a) return a:narrow(2, 2, 2) end, {x})
    checks("select", function(a) return a:select(1, 2) * a:select(2, -1):sum() end, {x})
    checks("squeeze and unsqueeze", function(a) return a:unsqueeze(1):squeeze(1):unsqueeze(-1) end, {x})
    checks("expand", function(a) return a:select(2, 1):unsqueeze(2):expand{3, 5} end, {x})
    checks("flatten", function(a) return a:reshape{3, 2, 2}:flatten(2) end, {x})
    checks("split and chunk", function(a) local p, q = a:split(2, 2), a:chunk(3, 1); return p[1] * p[2] + q[2]:sum() end, {x})
    checks("clone and contiguous", function(a) return a:t():clone():contiguous() * a:t() end, {x})
  end)

  describe("linear algebra", function()
    checks("matmul of matrices", function(a) return kdx.matmul(a, a:t()) end, {x})
    checks("matmul of a vector and a matrix", function(a, b) return kdx.matmul(b, a:t()) end, {x, y})
    checks("matmul of a matrix and a vector", function(a, b) return kdx.matmul(a, b) end, {x, y})
    checks("matmul with broadcast batch dims",
      function(a) return kdx.matmul(a:reshape{3, 1, 4}:expand{3, 2, 4}, a:t():reshape{1, 4, 3}) end, {x})
    checks("dot and outer", function(a, b) return kdx.outer(a:select(1, 1), b) * kdx.dot(a:select(1, 2), b) end, {x, y})
    checks("addmm", function(a, b) return kdx.addmm(b, a:t(), a, {beta = 0.5, alpha = 2}) end, {x, y})
  end)

  describe("indexing and joining", function()
    checks("index_select", function(a) return a:index_select(2, {1, 3, 3}) * a:index_select(2, {2, 2, 4}) end, {x})
    checks("gather", function(a) return a:gather(2, kdx.tensor({{1, 1}, {2, 4}, {3, 3}}, "int64")) ^ 2 end, {x})
    checks("index_add", function(a, b) return a:index_add(1, {3, 1}, b:reshape{1, 4}:expand{2, 4} * b) end, {x, y})
    checks("scatter_add", function(a, b)
      return a:scatter_add(2, kdx.tensor({{1, 1}, {4, 2}, {3, 3}}, "int64"), (b:narrow(1, 1, 2) ^ 2):reshape{1, 2}:expand{3, 2})
    end, {x, y})
    checks("cat", function(a, b) return kdx.cat({a, b:reshape{1, 4}, a * a}, 1) end, {x, y})
    checks("stack", function(a) return kdx.stack({a, a:exp()}, 2) end, {x})
    checks("constant pad and crop", function(a) return kdx.pad(a, {1, 2, -1, 1}) ^ 2 end, {x})
  end)

  describe("the tape", function()
    it("accumulates into .grad across backward passes", function()
      local a = kdx.tensor({1, 2}, "float64"):requires_grad(true)
      local l = (a * a):sum()
      l:backward{retain_graph = true}
      l:backward()
      assert.are.same({4, 8}, a.grad:totable())
      a.grad = nil
      assert.is_nil(a.grad)
    end)

    it("needs a gradient for a non-scalar root", function()
      local a = kdx.ones({2}, "float64"):requires_grad(true)
      assert.has_error(function() (a * 2):backward() end)
      ;(a * 2):backward(kdx.tensor({1, 3}, "float64"))
      assert.are.same({2, 6}, a.grad:totable())
    end)

    it("frees the graph after a backward pass unless retained", function()
      local a = kdx.ones({2}, "float64"):requires_grad(true)
      local l = (a * a):sum()
      l:backward()
      local ok, err = pcall(l.backward, l)
      assert.is_false(ok)
      assert.truthy(err:find("already freed", 1, true))
    end)

    it("detects a saved tensor changed in place", function()
      local a = kdx.ones({2}, "float64"):requires_grad(true)
      local b = kdx.ones({2}, "float64")
      local l = (a * b):sum()
      b:add_(1)
      local ok, err = pcall(l.backward, l)
      assert.is_false(ok)
      assert.truthy(err:find("modified in place", 1, true))
    end)

    it("refuses in-place ops on tensors that require grad, except under no_grad", function()
      local a = kdx.ones({2}, "float64"):requires_grad(true)
      assert.has_error(function() a:add_(1) end)
      kdx.no_grad(function() a:add_(1) end)
      assert.are.same({2, 2}, a:totable())
    end)

    it("records nothing under no_grad and restores the mode after an error", function()
      local a = kdx.ones({2}):requires_grad(true)
      local r = kdx.no_grad(function() return a * 2 end)
      assert.is_false(r:requires_grad())
      assert.is_false(pcall(kdx.no_grad, function() error("boom") end))
      assert.is_true(kdx.is_grad_enabled())
      assert.is_true(kdx.no_grad(kdx.enable_grad, function() return (a * 2):requires_grad() end))
    end)

    it("gives gradients with respect to intermediate results", function()
      local a = kdx.tensor({1, 2}, "float64"):requires_grad(true)
      local h = a * 3
      local g = kdx.grad((h * h):sum(), {h, a})
      assert.are.same({6, 12}, g[1]:totable())
      assert.are.same({18, 36}, g[2]:totable())
    end)

    it("names unused inputs unless allow_unused", function()
      local a, b = var({2}, 3), var({2}, 4)
      assert.has_error(function() kdx.grad((a * 2):sum(), {a, b}) end)
      local g = kdx.grad((a * 2):sum(), {a, b}, {allow_unused = true})
      assert.are.same({0, 0}, g[2]:totable())
    end)

    it("differentiates a gradient (create_graph)", function()
      local a = kdx.tensor({1, 2, 3}, "float64"):requires_grad(true)
      local g = kdx.grad((a ^ 3):sum(), a, {create_graph = true})[1]
      close(g, {3, 12, 27}, 1e-12)
      close(kdx.grad(g:sum(), a)[1], {6, 12, 18}, 1e-12)
    end)

    it("does not track int64 results or comparisons", function()
      local a = var({3}, 5)
      assert.is_false(a:gt(0):requires_grad())
      assert.is_false(a:argmax():requires_grad())
      assert.is_false(a:long():requires_grad())
      assert.is_true(a:is_leaf())
      assert.are.equal("mul", (a * 2):grad_fn())
    end)

    it("leaves no tensors behind and RSS flat after 10,000 training steps", function()
      local w = var({8, 4}, 6)
      local data = kdx.randn({16, 8}, "float64")
      local function step()
        local l = kdx.matmul(data, w):tanh():pow(2):mean()
        l:backward()
        kdx.no_grad(function() w:sub_(w.grad * 0.01) end)
        w.grad = nil
      end
      local function rss_kb()
        local f = io.open("/proc/self/statm")
        local pages = f and tonumber(f:read("a"):match("^%d+%s+(%d+)"))
        if f then f:close() end
        return pages and pages * 4 or 0
      end
      -- a warm-up reaches the steady state (allocator and Lua heap sizes;
      -- the worker threads' malloc arenas keep growing for ~4000 steps);
      -- the block cache is emptied at both readings, since collecting the
      -- garbage of earlier specs fills it with blocks this loop never made
      for _ = 1, 6000 do step() end
      collectgarbage()
      collectgarbage()
      kdx.empty_cache()
      local before, rss = kdx.debug.live_tensors(), rss_kb()
      for _ = 1, 4000 do step() end
      collectgarbage()
      collectgarbage()
      kdx.empty_cache()
      assert.are.equal(before, kdx.debug.live_tensors())
      -- resident memory stays flat (a few MiB of slack for Lua's own heap);
      -- under AddressSanitizer freed blocks sit in its quarantine (256 MiB by
      -- default), so there the bound is the quarantine's size
      local asan = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true)
      local limit = asan and 300 * 1024 or 4 * 1024
      assert.is_true(rss_kb() - rss < limit, ("RSS grew by %d KiB"):format(rss_kb() - rss))
    end)

    it("computes a Hessian-vector product of an MLP as PyTorch does", function()
      local h = dofile("spec/fixtures/optim_golden.lua").hvp_mlp
      local T = require("helpers.close").from_fixture
      local x = T(h.x)
      local params, vs = {}, {}
      for i = 1, 3 do params[i], vs[i] = T(h.params[i]):requires_grad(true), T(h.v[i]) end
      local w1, b1, w2 = table.unpack(params)
      local loss = kdx.matmul(kdx.matmul(x, w1:t()):add(b1):tanh(), w2:t()):pow(2):sum() / 5
      local gs = kdx.grad(loss, params, {create_graph = true})
      local dot = (gs[1] * vs[1]):sum() + (gs[2] * vs[2]):sum() + (gs[3] * vs[3]):sum()
      local hv = kdx.grad(dot, params)
      for i = 1, 3 do close(hv[i], T(h.hv[i]), 1e-10, 1e-10) end
    end)

    it("frees a long chain without exhausting the C stack", function()
      local a = var({2}, 7)
      local h = a
      for _ = 1, 100000 do h = h + 1 end
      local g = kdx.grad(h:sum(), a)[1]
      assert.are.same({1, 1}, g:totable())
      h = nil
      collectgarbage()
    end)
  end)
end)
