-- kdx.nn.SyncBatchNorm on one process: it is batch norm (values, running
-- statistics, gradients), its own gradient code checked by finite
-- differences in float64, convert() and its errors. The 2-rank run against
-- one process's BatchNorm is spec/dist/syncbn.lua (run by dist_spec.lua).
local kdx = require "kdx"
local nn = kdx.nn

local function maxdiff(a, b) return (a - b):abs():max():item() end

describe("kdx.nn.SyncBatchNorm on one process", function()
  it("is BatchNorm2d in training: output, running statistics and every gradient", function()
    kdx.manual_seed(3)
    local x0 = kdx.randn{6, 3, 4, 5} * 2 + 1
    local bn, sb = nn.BatchNorm2d(3), nn.SyncBatchNorm(3)
    local w, b = kdx.randn{3}, kdx.randn{3}
    kdx.no_grad(function()
      for _, m in ipairs{bn, sb} do
        m.weight:copy_(w); m.bias:copy_(b)
      end
    end)
    local g = kdx.randn{6, 3, 4, 5}
    local outs, grads = {}, {}
    for i, m in ipairs{bn, sb} do
      local x = x0:clone():requires_grad_()
      local y = m(x)
      outs[i] = y:detach()
      ;(y * g):sum():backward()
      grads[i] = {x.grad, m.weight.grad, m.bias.grad}
    end
    assert.is_true(maxdiff(outs[1], outs[2]) < 1e-5)
    for k = 1, 3 do assert.is_true(maxdiff(grads[1][k], grads[2][k]) < 1e-4, "gradient " .. k) end
    assert.is_true(maxdiff(bn.running_mean, sb.running_mean) < 1e-6)
    assert.is_true(maxdiff(bn.running_var, sb.running_var) < 1e-6)
    assert.are.equal(1, sb.num_batches_tracked:item())
    -- eval mode: the running statistics, as BatchNorm2d
    bn:eval(); sb:eval()
    assert.is_true(maxdiff(bn(x0), sb(x0)) < 1e-6)
  end)

  it("has gradients that match finite differences (float64, [N, C] and [N, C, L])", function()
    for _, shape in ipairs{{5, 3}, {4, 2, 3}} do
      kdx.manual_seed(#shape)
      local C = shape[2]
      local x = kdx.randn(shape, "float64"):requires_grad_()
      local w = (kdx.randn({C}, "float64") + 2):requires_grad_()
      local b = kdx.randn({C}, "float64"):requires_grad_()
      local core = require "kdx.core"
      local ok, err = kdx.autograd.gradcheck(function(xx, ww, bb)
        return core._batch_norm_sync(xx, nil, nil, ww, bb, 0.1, 1e-5, nil)
      end, {x, w, b})
      assert.is_true(ok, tostring(err))
    end
  end)

  it("converts a model's batch norms, sharing their tensors", function()
    local bn = nn.BatchNorm1d(4)
    local model = nn.Sequential{nn.Linear(3, 4), bn, nn.ReLU(), nn.Sequential{nn.BatchNorm1d(4)}}
    local out = nn.SyncBatchNorm.convert(model)
    assert.is_true(rawequal(out, model))
    local n = 0
    for _, m in model:named_modules() do
      assert.are_not.equal(nn.BatchNorm1d, getmetatable(m))
      if getmetatable(m) == nn.SyncBatchNorm then n = n + 1 end
    end
    assert.are.equal(2, n)
    assert.is_true(rawequal(model:get_submodule("1").weight, bn.weight))
    assert.is_true(rawequal(model:get_submodule("1").running_var, bn.running_var))
    assert.is_true(nn.SyncBatchNorm.within(model))
    local single = nn.SyncBatchNorm.convert(nn.BatchNorm2d(2))
    assert.are.equal(nn.SyncBatchNorm, getmetatable(single))
  end)

  it("refuses what it cannot do with an error naming it", function()
    local sb = nn.SyncBatchNorm(2)
    local ok, e = pcall(sb, kdx.randn{4})
    assert.is_false(ok)
    assert.matches("kdx.nn.SyncBatchNorm: expected an input [N, C, ...]", tostring(e), 1, true)
    ok, e = pcall(sb, kdx.randn{1, 2})
    assert.is_false(ok)
    assert.matches("more than 1 value per channel", tostring(e), 1, true)
    ok, e = pcall(nn.SyncBatchNorm.convert, 5)
    assert.is_false(ok)
    assert.matches("kdx.nn.SyncBatchNorm.convert: argument 1 must be a kdx.nn module", tostring(e), 1, true)
    -- second derivatives: refused, not silently wrong
    local x = kdx.randn({4, 2}, "float64"):requires_grad_()
    local w = kdx.ones({2}, "float64"):requires_grad_()
    local y = require("kdx.core")._batch_norm_sync(x, nil, nil, w, nil, 0.1, 1e-5, nil)
    ok, e = pcall(kdx.grad, (y * y * y):sum(), {x}, {create_graph = true})
    assert.is_false(ok)
    assert.matches("batch_norm_sync: second derivatives are not supported", tostring(e), 1, true)
  end)
end)
