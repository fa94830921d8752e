-- Semantics of the ops seen from Lua: dtypes, in-place forms, 1-based
-- indices coming out of reductions and going into index ops. Numeric
-- agreement with PyTorch lives in golden_spec.lua.
local kdx = require "kdx"
local close = require("helpers.close").assert_close

describe("kdx ops", function()
  describe("elementwise", function()
    it("exist as methods and as functions", function()
      local x = kdx.tensor{-1, 0, 2}
      assert.are.same(x:relu():totable(), kdx.relu(x):totable())
      assert.are.same({0, 0, 2}, kdx.relu(x):totable())
      assert.are.same({3, 4, 6}, kdx.add(x, 4):totable())
      assert.are.same({5, 4, 2}, kdx.sub(4, x):totable())
    end)

    it("promote dtypes as PyTorch does", function()
      local i = kdx.tensor({1, 2}, "int64")
      local f = kdx.tensor({0.5, 0.5}, "float32")
      local d = kdx.tensor({0.5, 0.5}, "float64")
      assert.are.equal("int64", (i + i):dtype())
      assert.are.equal("float32", (i + f):dtype())
      assert.are.equal("float64", (f + d):dtype())
      assert.are.equal("float32", (i / i):dtype())
      assert.are.equal("float32", (i + 0.5):dtype())
      assert.are.equal("int64", (i * 3):dtype())
      assert.are.equal("float32", i:exp():dtype())
    end)

    it("modify in place with a trailing underscore and return self", function()
      local x = kdx.tensor{1, 2, 3}
      local r = x:add_(1):mul_(2)
      assert.are.equal(x, r)
      assert.are.same({4, 6, 8}, x:totable())
      x:clamp_(5, 7)
      assert.are.same({5, 6, 7}, x:totable())
      x:zero_()
      assert.are.same({0, 0, 0}, x:totable())
      x:fill_(2):exp_()
      close(x, {math.exp(2), math.exp(2), math.exp(2)}, 1e-5)
    end)

    it("refuse in-place ops that would change the dtype", function()
      local i = kdx.tensor({1, 2}, "int64")
      assert.has_error(function() i:div_(2) end)
      assert.has_error(function() i:add_(0.5) end)
    end)

    it("broadcast in place only toward the tensor's shape", function()
      local x = kdx.zeros{2, 3}
      x:add_(kdx.tensor{1, 2, 3})
      assert.are.same({{1, 2, 3}, {1, 2, 3}}, x:totable())
      assert.has_error(function() kdx.zeros{3}:add_(kdx.zeros{2, 3}) end)
    end)

    it("compare into 0/1 values", function()
      local a, b = kdx.tensor{1, 2, 3}, kdx.tensor{3, 2, 1}
      assert.are.same({1, 0, 0}, a:lt(b):totable())
      assert.are.same({0, 1, 0}, a:eq(b):totable())
      assert.are.same({1, 1, 0}, a:le(2):totable())
      assert.are.same({1, 0, 1}, a:ne(2):totable())
    end)

    it("clamp with one bound missing", function()
      assert.are.same({0, 0, 2}, kdx.tensor{-1, 0, 2}:clamp(0):totable())
      assert.are.same({-1, 0, 1}, kdx.tensor{-1, 0, 2}:clamp(nil, 1):totable())
    end)

    it("propagate NaN through maximum and minimum", function()
      local nan = 0 / 0
      local m = kdx.maximum(kdx.tensor{nan, 1}, kdx.tensor{0, 2}):totable()
      assert.is_true(m[1] ~= m[1])
      assert.are.equal(2, m[2])
    end)

    it("select with where and masked_fill", function()
      local c = kdx.tensor{1, 0, 1}
      assert.are.same({10, -2, 30}, kdx.where(c, kdx.tensor{10, 20, 30}, kdx.tensor{-1, -2, -3}):totable())
      assert.are.same({10, 0, 30}, kdx.where(c, kdx.tensor{10, 20, 30}, 0):totable())
      assert.are.same({{9, 2}, {9, 4}}, kdx.tensor{{1, 2}, {3, 4}}:masked_fill(kdx.tensor{{1}, {1}}:expand{2, 2}:mul(kdx.tensor{1, 0}), 9):totable())
    end)
  end)

  describe("reductions", function()
    local x = kdx.tensor{{1, 5, 2}, {7, 0, 9}}

    it("reduce over all, one or several dims, with keepdim", function()
      assert.are.equal(24, x:sum():item())
      assert.are.same({8, 5, 11}, x:sum(1):totable())
      assert.are.same({{8}, {16}}, x:sum(2, true):totable())
      assert.are.same({1, 1}, x:sum({1, 2}, true):shape())
      assert.are.same({4}, x:mean(-1):totable() and {x:mean():item()})
    end)

    it("return 1-based indices from max, min, argmax and argmin", function()
      local v, i = x:max(2)
      assert.are.same({5, 9}, v:totable())
      assert.are.same({2, 3}, i:totable())
      local mv, mi = x:min(1)
      assert.are.same({1, 0, 2}, mv:totable())
      assert.are.same({1, 2, 1}, mi:totable())
      assert.are.same({2, 3}, x:argmax(2):totable())
      assert.are.equal(6, x:argmax():item()) -- flat index of 9
      assert.are.equal(5, x:argmin():item())
    end)

    it("pick the first of equal maxima", function()
      local _, i = kdx.tensor{3, 1, 3}:max(1)
      assert.are.equal(1, i:item())
    end)

    it("compute unbiased and biased variance", function()
      local t = kdx.tensor({1, 2, 3, 4}, "float64")
      close(t:var(), {5 / 3}, 1e-12)
      close(t:var(nil, false), {1.25}, 1e-12)
      close(t:std(1), {math.sqrt(5 / 3)}, 1e-12)
    end)

    it("compute norms and cumulative sums", function()
      local t = kdx.tensor({3, -4}, "float64")
      assert.are.equal(7, t:norm(1):item())
      assert.are.equal(5, t:norm():item())
      assert.are.equal(4, t:norm(math.huge):item())
      assert.are.same({{1, 2}, {4, 6}}, kdx.tensor{{1, 2}, {3, 4}}:cumsum(1):totable())
    end)

    it("sum int64 exactly", function()
      local big = kdx.tensor({1 << 53, 1}, "int64")
      assert.are.equal((1 << 53) + 1, big:sum():item())
    end)
  end)

  describe("linear algebra", function()
    it("multiplies matrices, vectors and batches", function()
      local a = kdx.tensor{{1, 2}, {3, 4}}
      assert.are.same({{7, 10}, {15, 22}}, kdx.matmul(a, a):totable())
      assert.are.same({5, 11}, kdx.matmul(a, kdx.tensor{1, 2}):totable())
      assert.are.same({7, 10}, kdx.matmul(kdx.tensor{1, 2}, a):totable())
      assert.are.equal(5, kdx.matmul(kdx.tensor{1, 2}, kdx.tensor{1, 2}):item())
      assert.are.same({3, 2, 2}, kdx.matmul(kdx.ones{3, 2, 4}, kdx.ones{4, 2}):shape())
      assert.are.same({5, 3, 2, 6}, kdx.matmul(kdx.ones{5, 1, 2, 4}, kdx.ones{3, 4, 6}):shape())
    end)

    it("hands transposed views to BLAS without changing the result", function()
      kdx.manual_seed(3)
      local a, b = kdx.randn({6, 4}, "float64"), kdx.randn({5, 4}, "float64")
      close(kdx.matmul(a, b:t()), kdx.matmul(a, b:t():contiguous()), 1e-12)
      close(kdx.matmul(a:t():t(), b:t()), kdx.matmul(a:contiguous(), b:t():contiguous()), 1e-12)
    end)

    it("computes dot, outer and addmm", function()
      local u, v = kdx.tensor{1, 2}, kdx.tensor{3, 4, 5}
      assert.are.equal(5, kdx.dot(u, u):item())
      assert.are.same({{3, 4, 5}, {6, 8, 10}}, kdx.outer(u, v):totable())
      local r = kdx.addmm(kdx.tensor{1, 1}, kdx.eye(2), kdx.tensor{{1, 2}, {3, 4}}, {beta = 2, alpha = 3})
      assert.are.same({{5, 8}, {11, 14}}, r:totable())
    end)

    it("refuses int64 and mixed float dtypes", function()
      assert.has_error(function() kdx.matmul(kdx.ones({2, 2}, "int64"), kdx.ones({2, 2}, "int64")) end)
      assert.has_error(function() kdx.matmul(kdx.ones({2, 2}), kdx.ones({2, 2}, "float64")) end,
        "kdx.matmul: dtypes float32 and float64 differ (convert one with :to())")
    end)
  end)

  describe("indexing", function()
    local x = kdx.tensor{{1, 2, 3}, {4, 5, 6}}

    it("selects entries with 1-based index tensors or tables", function()
      assert.are.same({{3, 1}, {6, 4}}, x:index_select(2, {3, 1}):totable())
      assert.are.same({{4, 5, 6}}, x:index_select(1, kdx.tensor({2}, "int64")):totable())
    end)

    it("selects along any dim of contiguous views and of strided ones alike", function()
      local t = kdx.arange(0, 60):reshape{3, 4, 5}
      -- element (a, b, c) of the result, by hand, for index list idx on dim d
      local function want(src, d, idx)
        local out = {}
        local dims = src:shape()
        local sizes = {dims[1], dims[2], dims[3]}
        sizes[d] = #idx
        local v = src:totable()
        for a = 1, sizes[1] do
          out[a] = {}
          for b = 1, sizes[2] do
            out[a][b] = {}
            for c = 1, sizes[3] do
              local p = {a, b, c}
              p[d] = idx[p[d]]
              out[a][b][c] = v[p[1]][p[2]][p[3]]
            end
          end
        end
        return out
      end
      local views = {t, t:narrow(1, 2, 2), t:transpose(1, 3):contiguous(), t:transpose(2, 3)}
      for _, v in ipairs(views) do
        for d = 1, 3 do
          local idx = {v:size(d), 1, v:size(d), 2}
          assert.are.same(want(v, d, idx), v:index_select(d, idx):totable())
        end
      end
      assert.are.same({0, 4}, {t:index_select(1, {}):shape()[1], t:index_select(1, {}):shape()[2]})
    end)

    it("gathers and scatters along a dim", function()
      assert.are.same({{3, 1}, {5, 5}}, x:gather(2, kdx.tensor({{3, 1}, {2, 2}}, "int64")):totable())
      local z = kdx.zeros{2, 3}
      z:scatter_(2, kdx.tensor({{1}, {3}}, "int64"), kdx.tensor{{7}, {8}})
      assert.are.same({{7, 0, 0}, {0, 0, 8}}, z:totable())
      local acc = kdx.zeros{3}
      acc:scatter_add_(1, kdx.tensor({1, 1, 3}, "int64"), kdx.tensor{1, 2, 3})
      assert.are.same({3, 0, 3}, acc:totable())
    end)

    it("accumulates with index_add_", function()
      local acc = kdx.zeros{3, 2}
      acc:index_add_(1, {1, 3, 1}, kdx.ones{3, 2}, 2)
      assert.are.same({{4, 4}, {0, 0}, {2, 2}}, acc:totable())
    end)

    it("one-hot encodes 1-based class labels", function()
      assert.are.same({{0, 1, 0}, {0, 0, 1}}, kdx.one_hot(kdx.tensor({2, 3}, "int64"), 3):totable())
      assert.are.same({2, 4}, kdx.one_hot({1, 4}):shape())
      assert.has_error(function() kdx.one_hot({0}, 3) end)
    end)

    it("names the bad index and the valid range", function()
      assert.has_error(function() x:index_select(2, {4}) end, "kdx.index_select: index 4 out of range [1, 3]")
    end)
  end)

  describe("joining and splitting", function()
    it("concatenates and stacks", function()
      local a, b = kdx.ones{2, 2}, kdx.zeros{1, 2}
      assert.are.same({3, 2}, kdx.cat({a, b}):shape())
      assert.are.same({2, 4}, kdx.cat({a, a}, 2):shape())
      assert.are.same({2, 2, 2}, kdx.stack({a, a}):shape())
      assert.are.same({2, 2, 2}, kdx.stack({a, a}, 3):shape())
      assert.has_error(function() kdx.cat({a, kdx.zeros{2, 3}}) end)
    end)

    it("splits into views and chunks like PyTorch", function()
      local t = kdx.arange(0, 7, 1, "float32")
      local parts = t:split(3)
      assert.are.equal(3, #parts)
      assert.are.same({6}, parts[3]:totable())
      assert.are.equal(t:storage_id(), parts[2]:storage_id())
      local chunks = kdx.chunk(t, 3)
      assert.are.same({3, 3, 1}, {#chunks[1], #chunks[2], #chunks[3]})
    end)
  end)

  describe("threads", function()
    it("can be set and read back", function()
      local n = kdx.get_num_threads()
      kdx.set_num_threads(1)
      assert.are.equal(1, kdx.get_num_threads())
      local a = kdx.randn{64, 64}
      local one = kdx.matmul(a, a)
      kdx.set_num_threads(2)
      close(kdx.matmul(a, a), one, 1e-4)
      kdx.set_num_threads(n)
    end)
  end)
end)
