-- The tensor object model seen from Lua: creation, 1-based conventions,
-- views that share storage, copies, conversion, printing, lifetime.
local kdx = require "kdx"
local close = require("helpers.close").assert_close

describe("kdx tensors", function()
  describe("creation", function()
    it("builds float32 tensors from nested tables by default", function()
      local t = kdx.tensor{{1, 2, 3}, {4, 5, 6}}
      assert.are.same({2, 3}, t:shape())
      assert.are.equal("float32", t:dtype())
      assert.are.same({{1, 2, 3}, {4, 5, 6}}, t:totable())
    end)

    it("keeps int64 values exact", function()
      local big = math.maxinteger - 1
      local t = kdx.tensor({big, -big}, "int64")
      assert.are.equal(big, t:get(1))
      assert.are.equal(-big, t:get(2))
      assert.is_true(math.type(t:get(1)) == "integer")
    end)

    it("rejects ragged tables", function()
      assert.has_error(function() kdx.tensor{{1, 2}, {3}} end, "kdx.tensor: ragged table: [2] has 1 entries, expected 2")
    end)

    it("makes 0-d tensors from numbers", function()
      local t = kdx.tensor(3.5)
      assert.are.equal(0, t:dim())
      assert.are.equal(3.5, t:item())
    end)

    it("fills zeros, ones, full and eye", function()
      assert.are.same({{0, 0}}, kdx.zeros{1, 2}:totable())
      assert.are.same({1, 1, 1}, kdx.ones(3):totable())
      assert.are.same({{7, 7}}, kdx.full({1, 2}, 7):totable())
      assert.are.same({{1, 0, 0}, {0, 1, 0}}, kdx.eye(2, 3):totable())
      assert.are.equal("float64", kdx.zeros({2}, "float64"):dtype())
    end)

    it("follows PyTorch's arange and linspace", function()
      assert.are.same({0, 1, 2, 3}, kdx.arange(4):totable())
      assert.are.equal("int64", kdx.arange(4):dtype())
      close(kdx.arange(0, 1, 0.25), {0, 0.25, 0.5, 0.75})
      assert.are.equal("float32", kdx.arange(0, 1, 0.25):dtype())
      close(kdx.linspace(-1, 1, 5), {-1, -0.5, 0, 0.5, 1})
    end)

    it("makes *_like tensors with the same shape and dtype", function()
      local t = kdx.zeros({2, 3}, "float64")
      local o = kdx.ones_like(t)
      assert.are.same({2, 3}, o:shape())
      assert.are.equal("float64", o:dtype())
      assert.are.same({{5, 5, 5}, {5, 5, 5}}, kdx.full_like(t, 5):totable())
    end)
  end)

  describe("random numbers", function()
    it("repeat exactly for the same seed", function()
      kdx.manual_seed(123)
      local a = kdx.randn{100}
      local p = kdx.randperm(10)
      kdx.manual_seed(123)
      assert.are.same(a:totable(), kdx.randn{100}:totable())
      assert.are.same(p:totable(), kdx.randperm(10):totable())
    end)

    it("differ for different seeds", function()
      kdx.manual_seed(1)
      local a = kdx.rand{10}:totable()
      kdx.manual_seed(2)
      assert.are_not.same(a, kdx.rand{10}:totable())
    end)

    it("draw from the right distributions", function()
      kdx.manual_seed(7)
      local n = kdx.randn({20000}, "float64")
      assert.is_true(math.abs(n:mean():item()) < 0.03)
      assert.is_true(math.abs(n:std():item() - 1) < 0.03)
      local u = kdx.rand({20000}, "float64")
      assert.is_true(u:min():item() >= 0 and u:max():item() < 1)
      assert.is_true(math.abs(u:mean():item() - 0.5) < 0.01)
      local r = kdx.randint(3, 6, {1000})
      assert.are.equal(3, r:min():item())
      assert.are.equal(5, r:max():item())
    end)

    it("gives a 1-based permutation from randperm", function()
      local p = kdx.randperm(6):totable()
      table.sort(p)
      assert.are.same({1, 2, 3, 4, 5, 6}, p)
    end)

    it("restores the generator state", function()
      local st = kdx.get_rng_state()
      local a = kdx.randn{5}:totable()
      kdx.set_rng_state(st)
      assert.are.same(a, kdx.randn{5}:totable())
    end)
  end)

  describe("inspection and element access", function()
    local t = kdx.tensor{{1, 2, 3}, {4, 5, 6}}

    it("reports shape, size, dim, numel and length", function()
      assert.are.same({2, 3}, t:shape())
      assert.are.equal(3, t:size(2))
      assert.are.equal(3, t:size(-1))
      assert.are.equal(2, t:dim())
      assert.are.equal(6, t:numel())
      assert.are.equal(2, #t)
    end)

    it("uses 1-based indices in get and set, negatives from the end", function()
      assert.are.equal(1, t:get(1, 1))
      assert.are.equal(6, t:get(2, 3))
      assert.are.equal(6, t:get(-1, -1))
      local c = t:clone():set(1, 2, 20)
      assert.are.equal(20, c:get(1, 2))
      assert.are.equal(2, t:get(1, 2))
    end)

    it("rejects index 0 and indices past the end", function()
      assert.has_error(function() t:get(0, 1) end, "kdx.get: index 0 is invalid (indices are 1-based)")
      assert.has_error(function() t:get(3, 1) end, "kdx.get: index 3 out of range for a dim of size 2")
    end)
  end)

  describe("views", function()
    it("share storage with their base", function()
      local a = kdx.arange(0, 6, 1, "float32")
      local v = a:reshape{2, 3}
      local tr = v:transpose(1, 2)
      assert.are.equal(a:storage_id(), v:storage_id())
      assert.are.equal(a:storage_id(), tr:storage_id())
      v:set(2, 1, 100)
      assert.are.equal(100, a:get(4))
      assert.are.equal(100, tr:get(1, 2))
    end)

    it("narrow and select with 1-based starts", function()
      local m = kdx.tensor{{1, 2, 3}, {4, 5, 6}}
      assert.are.same({{2, 3}, {5, 6}}, m:narrow(2, 2, 2):totable())
      assert.are.same({4, 5, 6}, m:select(1, 2):totable())
      assert.are.same({3, 6}, m:select(2, -1):totable())
    end)

    it("squeeze, unsqueeze, expand, flatten and permute", function()
      local x = kdx.zeros{2, 1, 3}
      assert.are.same({2, 3}, x:squeeze():shape())
      assert.are.same({2, 3}, x:squeeze(2):shape())
      assert.are.same({1, 2, 1, 3}, x:unsqueeze(1):shape())
      assert.are.same({2, 1, 3, 1}, x:unsqueeze(-1):shape())
      assert.are.same({2, 4, 3}, x:expand{2, 4, 3}:shape())
      assert.are.same({6}, x:flatten():shape())
      assert.are.same({3, 2, 1}, x:permute{3, 1, 2}:shape())
    end)

    it("refuse view on incompatible strides, while reshape copies", function()
      local t = kdx.zeros{2, 3}:t()
      assert.has_error(function() t:view{6} end)
      local r = t:reshape{6}
      assert.are_not.equal(t:storage_id(), r:storage_id())
      assert.is_true(r:is_contiguous())
    end)

    it("infer one -1 size", function()
      assert.are.same({3, 4}, kdx.zeros{12}:reshape{3, -1}:shape())
      assert.are.same({2, 3}, kdx.zeros{6}:view(-1, 3):shape())
    end)
  end)

  describe("copies and conversion", function()
    it("clone owns its storage", function()
      local a = kdx.ones{3}
      local b = a:clone()
      b:fill_(2)
      assert.are.same({1, 1, 1}, a:totable())
    end)

    it("copy_ broadcasts and converts", function()
      local dst = kdx.zeros({2, 3}, "float64")
      dst:copy_(kdx.tensor{1, 2, 3})
      assert.are.same({{1, 2, 3}, {1, 2, 3}}, dst:totable())
    end)

    it("converts dtypes, truncating toward zero into int64", function()
      local f = kdx.tensor{1.7, -1.7, 2.5}
      assert.are.same({1, -1, 2}, f:long():totable())
      assert.are.equal("float64", f:double():dtype())
      assert.are.equal("float32", f:to("float32"):dtype())
    end)

    it("copies transposed views exactly, batched or not", function()
      kdx.manual_seed(4)
      for _, t in ipairs{kdx.randn({300, 200}, "float64"):t(), kdx.randn{3, 70, 90}:transpose(2, 3),
                         kdx.randn{2, 3, 64, 80}:transpose(3, 4), kdx.randn{4, 50, 60}:transpose(1, 3)} do
        local c = t:contiguous()
        assert.is_true(c:is_contiguous())
        assert.are.equal(t:numel(), c:eq(t):sum():item())
      end
    end)

    it("makes contiguous copies only when needed", function()
      local a = kdx.zeros{2, 3}
      assert.are.equal(a, a:contiguous())
      local t = a:t():contiguous()
      assert.is_true(t:is_contiguous())
      assert.are_not.equal(a:storage_id(), t:storage_id())
    end)
  end)

  describe("metamethods", function()
    local a = kdx.tensor{1, 2, 3}

    it("do arithmetic with numbers on either side", function()
      assert.are.same({2, 3, 4}, (a + 1):totable())
      assert.are.same({0, -1, -2}, (1 - a):totable())
      assert.are.same({2, 4, 6}, (2 * a):totable())
      close(1 / a, {1, 0.5, 1 / 3})
      assert.are.same({1, 4, 9}, (a ^ 2):totable())
      assert.are.same({-1, -2, -3}, (-a):totable())
    end)

    it("compare by identity with ==", function()
      assert.is_true(a == a)
      assert.is_false(a == a:clone())
    end)

    it("print values with shape and dtype", function()
      local s = tostring(kdx.tensor{{1, 2}, {3, 4}})
      assert.are.equal("tensor([[1., 2.],\n        [3., 4.]], shape={2,2}, dtype=float32)", s)
      assert.are.equal("6", tostring(kdx.tensor{1, 2, 3}:sum()))
      assert.truthy(tostring(kdx.zeros{100, 100}):find("...", 1, true))
    end)
  end)

  describe("lifetime", function()
    it("frees tensors at scope exit with <close>", function()
      collectgarbage()
      local before = kdx.debug.live_tensors()
      do
        local big <close> = kdx.zeros{256, 256}
        assert.are.equal(before + 1, kdx.debug.live_tensors())
      end
      assert.are.equal(before, kdx.debug.live_tensors())
    end)

    it("raises a clear error on a closed tensor", function()
      local keep
      do
        local t <close> = kdx.zeros{2}
        keep = t
      end
      assert.has_error(function() keep:sum() end, "kdx.sum: self is a closed tensor")
    end)

    it("does not leak across many operations", function()
      collectgarbage()
      local before = kdx.debug.live_tensors()
      for _ = 1, 2000 do
        local x = kdx.randn{4, 4}
        local _ = kdx.matmul(x, x:t()):relu():sum(1)
      end
      collectgarbage()
      collectgarbage()
      assert.are.equal(before, kdx.debug.live_tensors())
    end)

    it("keeps freed large blocks in a cache that can be bounded and emptied", function()
      kdx.empty_cache()
      assert.are.equal(0, kdx.cache_bytes())
      do local big <close> = kdx.zeros{256, 1024} end -- 1 MiB, freed at once
      assert.is_true(kdx.cache_bytes() >= 1024 * 1024)
      kdx.empty_cache()
      assert.are.equal(0, kdx.cache_bytes())
      kdx.set_cache_limit(0)
      do local big <close> = kdx.zeros{256, 1024} end
      assert.are.equal(0, kdx.cache_bytes())
      kdx.set_cache_limit(256 * 1024 * 1024)
      assert.has_error(function() kdx.set_cache_limit(-1) end, "kdx.set_cache_limit: bytes must be >= 0, got -1")
      -- small blocks are kept only when asked
      kdx.empty_cache()
      do local small <close> = kdx.zeros{16} end
      assert.are.equal(0, kdx.cache_bytes())
      kdx.set_cache_min(16)
      do local small <close> = kdx.zeros{16} end
      assert.is_true(kdx.cache_bytes() > 0)
      kdx.set_cache_min(64 * 1024)
      kdx.empty_cache()
      assert.has_error(function() kdx.set_cache_min(-2) end, "kdx.set_cache_min: bytes must be >= 0, got -2")
    end)
  end)
end)
