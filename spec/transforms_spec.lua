-- kdx.data.transforms: batched, seeded augmentation kernels (csrc/op_augment.c).
--
-- Exact semantics on hand-made batches (the random forms return what they
-- drew, so each sample is checked against a plain-Lua reference), statistics
-- over many samples, determinism for a seed and across thread counts, errors,
-- compose, and use as a DataLoader transform.
--
-- Run from the repository root:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 /usr/bin/busted spec/transforms_spec.lua

local kdx = require "kdx"
local close = require("helpers.close").assert_close
local T = kdx.data.transforms
local F = T.functional

-- [n,c,h,w] with all values different: 1, 2, 3, ... in row-major order.
local function ramp(n, c, h, w, dtype)
  return kdx.arange(1, n * c * h * w + 1):reshape{n, c, h, w}:to(dtype or "float32")
end

-- The error message of f(...), which must fail.
local function err(f, ...)
  local ok, msg = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(msg)
end

local function same(a, b) assert.are.same(a:totable(), b:totable()) end

local function differ(a, b) assert.are_not.same(a:totable(), b:totable()) end

-- Runs f(...) with the generator seeded.
local function seeded(seed, f, ...)
  kdx.manual_seed(seed)
  return f(...)
end

local DTYPES = {"float32", "float64"}

describe("kdx.data.transforms", function()
  it("is reached through kdx.data", function()
    assert.are.equal(require("kdx.data.transforms"), kdx.data.transforms)
    assert.are.equal("table", type(T.functional))
  end)

  describe("functional.hflip()", function()
    for _, dt in ipairs(DTYPES) do
      it("mirrors every row of every sample without a mask (" .. dt .. ")", function()
        local x = ramp(2, 3, 4, 5, dt)
        local y = F.hflip(x)
        assert.are.equal(dt, y:dtype())
        local xv, yv = x:totable(), y:totable()
        for n = 1, 2 do for c = 1, 3 do for i = 1, 4 do for j = 1, 5 do
          assert.are.equal(xv[n][c][i][6 - j], yv[n][c][i][j])
        end end end end
      end)
    end

    it("flips only the samples whose mask entry is set (numbers, booleans or a tensor)", function()
      local x = ramp(3, 1, 2, 3)
      local flipped = F.hflip(x)
      for _, mask in ipairs{{1, 0, 1}, {true, false, true}, kdx.tensor({1, 0, 1}, "int64")} do
        local y = F.hflip(x, mask)
        same(y:select(1, 1), flipped:select(1, 1))
        same(y:select(1, 2), x:select(1, 2))
        same(y:select(1, 3), flipped:select(1, 3))
      end
    end)

    it("is its own inverse", function()
      local x = kdx.randn{4, 2, 5, 7}
      same(F.hflip(F.hflip(x)), x)
    end)
  end)

  describe("hflip{}", function()
    it("flips about half of 1000 samples at p = 0.5, and reports which", function()
      local x = ramp(1000, 1, 2, 3)
      local y, mask = seeded(1, F.random_hflip, x, 0.5)
      assert.are.same({1000}, mask:shape())
      assert.are.equal("int64", mask:dtype())
      local flips = mask:sum():item()
      assert.is_true(flips > 430 and flips < 570, "flips: " .. flips) -- 4.4 sigma
      same(y, F.hflip(x, mask))
    end)

    it("flips none at p = 0 and all at p = 1", function()
      local x = ramp(20, 2, 3, 3)
      same(T.hflip{p = 0}(x), x)
      same(T.hflip{p = 1}(x), F.hflip(x))
    end)

    it("draws as functional.random_hflip does for the same seed", function()
      local x = ramp(50, 1, 1, 4)
      local y1 = seeded(7, T.hflip{p = 0.5}, x)
      local y2 = seeded(7, F.random_hflip, x, 0.5)
      same(y1, y2)
    end)
  end)

  describe("random_crop{}", function()
    -- the crop of x padded by (ph, pw) with fill at offsets (top, left), size oh x ow
    local function reference(x, off, ph, pw, oh, ow, fill)
      local xv, ov = x:totable(), off:totable()
      local shape = x:shape()
      local H, W = shape[3], shape[4]
      local out = {}
      for n = 1, shape[1] do
        out[n] = {}
        for c = 1, shape[2] do
          out[n][c] = {}
          for i = 1, oh do
            local row = {}
            for j = 1, ow do
              local r, q = ov[n][1] + i - ph, ov[n][2] + j - pw -- 1-based source row and column
              row[j] = (r >= 1 and r <= H and q >= 1 and q <= W) and xv[n][c][r][q] or fill
            end
            out[n][c][i] = row
          end
        end
      end
      return out
    end

    for _, dt in ipairs(DTYPES) do
      it("shifts each sample by its drawn offset, filled from the padding (" .. dt .. ")", function()
        local x = ramp(30, 2, 5, 6, dt)
        local y, off = seeded(3, F.random_crop, x, {padding = 2})
        assert.are.same({30, 2, 5, 6}, y:shape())
        assert.are.same({30, 2}, off:shape())
        assert.are.same(reference(x, off, 2, 2, 5, 6, 0), y:totable())
      end)
    end

    it("draws every offset in 0..2*padding, each about equally often", function()
      local _, off = seeded(4, F.random_crop, ramp(2000, 1, 3, 3), {padding = 2})
      local counts = {}
      for _, o in ipairs(off:totable()) do
        for k = 1, 2 do
          assert.is_true(o[k] >= 0 and o[k] <= 4)
          counts[o[k]] = (counts[o[k]] or 0) + 1
        end
      end
      for v = 0, 4 do assert.is_true(counts[v] > 650 and counts[v] < 950, "offset " .. v) end -- 800 expected
    end)

    it("crops a given size from a {h, w} padding with a fill value", function()
      local x = ramp(8, 3, 4, 5)
      local y, off = seeded(5, F.random_crop, x, {padding = {1, 2}, size = {3, 7}, fill = -1})
      assert.are.same({8, 3, 3, 7}, y:shape())
      for _, o in ipairs(off:totable()) do
        assert.is_true(o[1] >= 0 and o[1] <= 3 and o[2] >= 0 and o[2] <= 2)
      end
      assert.are.same(reference(x, off, 1, 2, 3, 7, -1), y:totable())
    end)

    it("is the identity without padding or size", function()
      local x = ramp(4, 2, 3, 3)
      same(T.random_crop{}(x), x)
    end)

    it("functional.crop applies given offsets and checks them", function()
      local x = ramp(2, 1, 3, 3)
      local off = {{0, 4}, {2, 2}}
      assert.are.same(reference(x, kdx.tensor(off, "int64"), 2, 2, 3, 3, 0),
        F.crop(x, off, {padding = 2}):totable())
      assert.matches("kdx.data.transforms.functional.crop: offsets %(0,5%) lie outside %(0,0%)..%(4,4%)",
        err(F.crop, x, {{0, 5}, {0, 0}}, {padding = 2}))
      assert.matches("offsets must be %[2,2%], got %[2%]", err(F.crop, x, {0, 0}, {padding = 2}))
    end)
  end)

  describe("random_affine{}", function()
    for _, n in ipairs{4, 5} do
      it("rotates an " .. n .. "x" .. n .. " image by 90 degrees like a transpose and a flip", function()
        local x = ramp(1, 2, n, n, "float64")
        local xv = x:totable()[1]
        local cw = F.affine(x, {{90, 0, 0, 1}}):totable()[1]  -- clockwise on screen
        local ccw = F.affine(x, {{-90, 0, 0, 1}}):totable()[1]
        for c = 1, 2 do for i = 1, n do for j = 1, n do
          assert.is_true(math.abs(cw[c][i][j] - xv[c][n + 1 - j][i]) < 1e-9)
          assert.is_true(math.abs(ccw[c][i][j] - xv[c][j][n + 1 - i]) < 1e-9)
        end end end
      end)
    end

    for _, dt in ipairs(DTYPES) do
      it("shifts by whole pixels exactly, filling what comes from outside (" .. dt .. ")", function()
        local x = ramp(1, 2, 4, 5, dt)
        local xv = x:totable()[1]
        local y = F.affine(x, {{0, 2, -1, 1}}, -7):totable()[1] -- 2 right, 1 up
        for c = 1, 2 do for i = 1, 4 do for j = 1, 5 do
          local r, q = i + 1, j - 2
          local want = (r >= 1 and r <= 4 and q >= 1 and q <= 5) and xv[c][r][q] or -7
          assert.are.equal(want, y[c][i][j])
        end end end
      end)
    end

    it("scales about the centre", function()
      local x = ramp(1, 1, 9, 9, "float64")
      local xv, y = x:totable()[1][1], F.affine(x, {{0, 0, 0, 2}}):totable()[1][1]
      for a = -2, 2 do for b = -2, 2 do
        close(y[5 + 2 * a][5 + 2 * b], xv[5 + a][5 + b], 1e-9)
      end end
    end)

    it("blends pixels near the border toward fill as torchvision does", function()
      -- half a pixel outside: the zero-padded sample is v/2 and the in-bounds
      -- weight 1/2, so the result is v/2 * 1/2 + (1 - 1/2) * fill
      local x = kdx.full({1, 1, 3, 3}, 4, "float64")
      local y = F.affine(x, {{0, 0.5, 0, 1}}, 10):totable()[1][1]
      close(y[2][1], 4 / 2 * 0.5 + 0.5 * 10, 1e-12)
      close(y[2][2], 4, 1e-12)
    end)

    it("draws angles, whole-pixel shifts and scales within the ranges", function()
      local x = ramp(500, 1, 10, 20)
      local y, p = seeded(6, F.random_affine, x, {degrees = 10, translate = {0.1, 0.2}, scale = {0.9, 1.1}})
      assert.are.same({500, 4}, p:shape())
      assert.are.equal("float64", p:dtype())
      local seen = {}
      for _, q in ipairs(p:totable()) do
        assert.is_true(q[1] >= -10 and q[1] <= 10)
        assert.is_true(math.abs(q[2]) <= 2 and q[2] == math.floor(q[2]))
        assert.is_true(math.abs(q[3]) <= 2 and q[3] == math.floor(q[3]))
        assert.is_true(q[4] >= 0.9 and q[4] <= 1.1)
        seen[q[2]] = true
      end
      for v = -2, 2 do assert.is_true(seen[v], "shift " .. v .. " never drawn") end
      same(y, F.affine(x, p))
    end)

    it("is the identity with no rotation, shift or scaling", function()
      local x = kdx.randn{3, 2, 6, 5}
      same(T.random_affine{}(x), x)
      same(T.random_affine{degrees = {0, 0}, translate = {0, 0}}(x), x)
    end)
  end)

  describe("noise{}", function()
    it("adds zero-mean noise of the requested std", function()
      local x = kdx.zeros({64, 3, 16, 16}, "float64")
      local d = seeded(8, T.noise{std = 0.1}, x)
      assert.is_true(math.abs(d:mean():item()) < 0.002)
      assert.is_true(math.abs(d:std():item() - 0.1) < 0.002, "std " .. d:std():item())
      local y = seeded(8, T.noise{std = 0.1}, x + 5)
      close(y - 5, d, 1e-12)
    end)

    it("draws different noise for each sample", function()
      local y = T.noise{std = 1}(kdx.zeros{2, 1, 4, 4})
      differ(y:select(1, 1), y:select(1, 2))
    end)

    it("is the identity at std = 0", function()
      local x = kdx.randn{2, 3, 4, 4}
      same(F.noise(x, 0), x)
    end)
  end)

  describe("random_erasing{}", function()
    -- x with each sample's box (top, left, h, w) set to v, built with views
    local function reference(x, boxes, v)
      local z = x:clone()
      for n, b in ipairs(boxes:totable()) do
        if b[3] > 0 and b[4] > 0 then z:select(1, n):narrow(2, b[1] + 1, b[3]):narrow(3, b[2] + 1, b[4]):fill_(v) end
      end
      return z
    end

    it("fills exactly the reported rectangle, its size within scale and ratio", function()
      local H, W = 20, 24
      local x = ramp(300, 3, H, W)
      local y, boxes = seeded(9, F.random_erasing, x, {p = 1, scale = {0.02, 0.33}, ratio = {0.3, 3.3}, value = -1})
      assert.are.same({300, 4}, boxes:shape())
      same(y, reference(x, boxes, -1))
      for _, b in ipairs(boxes:totable()) do
        local top, left, h, w = b[1], b[2], b[3], b[4]
        assert.is_true(h >= 1 and w >= 1 and h < H and w < W, "box never empty here")
        assert.is_true(top >= 0 and left >= 0 and top + h <= H and left + w <= W)
        -- h = round(sqrt(A r)), w = round(sqrt(A / r)) for A in scale*H*W, r in ratio
        assert.is_true((h - 0.5) * (w - 0.5) <= 0.33 * H * W and (h + 0.5) * (w + 0.5) >= 0.02 * H * W)
        assert.is_true((h - 0.5) / (w + 0.5) <= 3.3 and (h + 0.5) / (w - 0.5) >= 0.3)
      end
    end)

    it("erases about a fraction p of the samples", function()
      local _, boxes = seeded(10, F.random_erasing, kdx.zeros{1000, 1, 8, 8}, {p = 0.3})
      local erased = 0
      for _, b in ipairs(boxes:totable()) do
        if b[3] > 0 then erased = erased + 1 end
      end
      assert.is_true(erased > 250 and erased < 350, "erased " .. erased)
    end)

    it("leaves a sample alone when 10 attempts find no rectangle that fits", function()
      local x = ramp(50, 1, 10, 10)
      local y, boxes = F.random_erasing(x, {p = 1, scale = {0.9, 1}, ratio = {3, 3.3}})
      same(y, x)
      same(boxes, kdx.zeros({50, 4}, "int64"))
    end)

    it("fills one value per channel, or standard-normal noise", function()
      local x = kdx.full({100, 3, 12, 12}, 7)
      local y, boxes = seeded(11, F.random_erasing, x, {p = 1, value = {1, 2, 3}})
      for c = 1, 3 do same(y:narrow(2, c, 1), reference(x:narrow(2, c, 1), boxes, c)) end

      local r, rb = seeded(12, F.random_erasing, x, {p = 1, scale = {0.2, 0.3}, value = "random"})
      local sum, sq, count = 0, 0, 0
      local rv, xv = r:totable(), x:totable()
      for n, b in ipairs(rb:totable()) do
        for c = 1, 3 do for i = 1, 12 do for j = 1, 12 do
          local inside = i > b[1] and i <= b[1] + b[3] and j > b[2] and j <= b[2] + b[4]
          local v = rv[n][c][i][j]
          if inside then
            sum, sq, count = sum + v, sq + v * v, count + 1
          else
            assert.are.equal(xv[n][c][i][j], v)
          end
        end end end
      end
      local mean = sum / count
      assert.is_true(count > 5000 and math.abs(mean) < 0.05 and math.abs(math.sqrt(sq / count - mean ^ 2) - 1) < 0.05)
    end)

    it("functional.erase fills given boxes and checks them", function()
      local x = ramp(2, 2, 5, 6, "float64")
      local boxes = kdx.tensor({{1, 2, 3, 4}, {0, 0, 0, 0}}, "int64")
      same(F.erase(x, boxes, 9), reference(x, boxes, 9))
      assert.matches("kdx.data.transforms.functional.erase: box %(3,0,3,1%) does not fit a 5x6 image",
        err(F.erase, x, {{3, 0, 3, 1}, {0, 0, 0, 0}}))
      assert.matches("value must hold 1 or 2 %(channels%) numbers, got 3", err(F.erase, x, boxes, {1, 2, 3}))
    end)
  end)

  describe("normalize{}", function()
    for _, dt in ipairs(DTYPES) do
      it("matches (x - mean) / std per channel (" .. dt .. ")", function()
        local x = kdx.rand({5, 3, 4, 4}, dt)
        local mean, std = {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}
        local want = (x - kdx.tensor(mean, dt):reshape{1, 3, 1, 1}) / kdx.tensor(std, dt):reshape{1, 3, 1, 1}
        close(T.normalize{mean = mean, std = std}(x), want, dt == "float32" and 1e-6 or 1e-14, 1e-6)
        close(F.normalize(x, 0.5, 2), (x - 0.5) / 2, 1e-6)
      end)
    end

    it("rejects a zero std and lists that do not match the channels", function()
      local x = kdx.rand{2, 3, 2, 2}
      assert.matches("kdx.data.transforms.normalize: mean must be finite and std finite and nonzero",
        err(T.normalize{mean = 0, std = 0}, x))
      assert.matches("kdx.data.transforms.normalize: mean and std must hold 1 or 3 %(channels%) numbers, got 2",
        err(T.normalize{mean = {1, 2}, std = {1, 2}}, x))
      assert.matches("mean and std must have the same length, got 3 and 1", err(F.normalize, x, {1, 2, 3}, 1))
      assert.matches("kdx.data.transforms.normalize: needs both mean and std", err(T.normalize, {mean = 1}))
    end)
  end)

  describe("compose{}", function()
    it("applies the transforms in order", function()
      local x = ramp(2, 1, 2, 3)
      local add = function(t) return t + 1 end
      local a = T.compose{T.normalize{mean = 0, std = 2}, add}(x)
      local b = T.compose{add, T.normalize{mean = 0, std = 2}}(x)
      same(a, x / 2 + 1)
      same(b, (x + 1) / 2)
      same(T.compose{}(x), x)
    end)

    it("takes callable tables and refuses other values", function()
      local twice = setmetatable({}, {__call = function(_, t) return t * 2 end})
      same(T.compose{twice, twice}(kdx.ones{1, 1, 1, 1}), kdx.full({1, 1, 1, 1}, 4))
      assert.matches("kdx.data.transforms.compose: entry 2 must be a function x %-> x, got number",
        err(T.compose, {twice, 3}))
    end)
  end)

  describe("randomness", function()
    local makers = {
      random_crop = function() return T.random_crop{padding = 3} end,
      hflip = function() return T.hflip{} end,
      random_affine = function() return T.random_affine{degrees = 15, translate = {0.1, 0.1}, scale = {0.8, 1.2}} end,
      noise = function() return T.noise{std = 0.2} end,
      random_erasing = function() return T.random_erasing{p = 0.7, value = "random"} end,
      compose = function()
        return T.compose{T.random_crop{padding = 2}, T.hflip{}, T.random_affine{degrees = 5}, T.noise{},
          T.random_erasing{}}
      end,
    }
    local x = kdx.rand{64, 3, 32, 32}

    for name, make in pairs(makers) do
      it(name .. " gives the same batch for the same seed and another for another seed", function()
        local t = make()
        local a, b, c = seeded(21, t, x), seeded(21, t, x), seeded(22, t, x)
        same(a, b)
        differ(a, c)
      end)

      it(name .. " gives the same batch with 1, 2 and 3 threads", function()
        local threads = kdx.get_num_threads()
        local t = make()
        local outs = {}
        for k = 1, 3 do
          kdx.set_num_threads(k)
          outs[k] = seeded(23, t, x)
        end
        kdx.set_num_threads(threads)
        same(outs[1], outs[2])
        same(outs[1], outs[3])
      end)
    end

    it("takes one image [C,H,W] as a batch of one", function()
      local img = ramp(1, 3, 5, 5)
      local y, off = seeded(24, F.random_crop, img:select(1, 1), {padding = 1})
      assert.are.same({3, 5, 5}, y:shape())
      assert.are.same({1, 2}, off:shape())
      same(y, F.crop(img, off, {padding = 1}):select(1, 1))
      assert.are.same({3, 5, 5}, T.random_erasing{p = 1}(img:select(1, 1)):shape())
    end)

    it("takes an empty batch and non-contiguous views", function()
      local empty = kdx.zeros{0, 3, 4, 4}
      for _, t in ipairs{makers.compose(), T.normalize{mean = 0, std = 1}} do
        assert.are.same({0, 3, 4, 4}, t(empty):shape())
      end
      local v = kdx.rand{2, 3, 4, 5}:transpose(3, 4)
      local p = {{30, 1, 0, 1.2}, {-20, 0, 1, 0.8}}
      same(F.affine(v, p), F.affine(v:contiguous(), p))
      same(F.hflip(v), F.hflip(v:contiguous()))
      same(seeded(25, T.random_crop{padding = 1}, v), seeded(25, T.random_crop{padding = 1}, v:contiguous()))
    end)

    it("leaves no tensors behind", function()
      local t = makers.compose()
      collectgarbage()
      collectgarbage()
      local before = kdx.debug.live_tensors()
      for _ = 1, 5 do t(x) end
      for _ = 1, 5 do pcall(t, kdx.zeros{2, 2}) end
      collectgarbage()
      collectgarbage()
      assert.are.equal(before, kdx.debug.live_tensors())
    end)
  end)

  describe("errors", function()
    local all = {
      random_crop = T.random_crop{padding = 1}, hflip = T.hflip{}, random_affine = T.random_affine{degrees = 3},
      noise = T.noise{}, random_erasing = T.random_erasing{}, normalize = T.normalize{mean = 0, std = 1},
    }

    for name, t in pairs(all) do
      it(name .. " names itself for a batch of the wrong shape or dtype", function()
        local prefix = "^kdx%.data%.transforms%." .. name
        assert.matches(prefix .. ": x must be 3%-D %[C,H,W%] or 4%-D %[N,C,H,W%], got %[4,5%]", err(t, kdx.zeros{4, 5}))
        assert.matches(prefix .. ": x must be float32 or float64, got int64", err(t, kdx.zeros({1, 1, 2, 2}, "int64")))
        assert.matches(prefix .. ": argument 1 .*tensor", err(t, "x"))
      end)
    end

    it("blames the caller's line", function()
      -- (not tail calls, which would drop the calling line from the stack)
      assert.matches("transforms_spec%.lua:%d+: kdx%.data%.transforms%.hflip: x must be",
        select(2, pcall(function() local y = all.hflip(kdx.zeros{2}); return y end)))
      assert.matches("transforms_spec%.lua:%d+: kdx%.data%.transforms%.hflip: p must be",
        select(2, pcall(function() local t = T.hflip{p = 2}; return t end)))
    end)

    it("refuses an input that requires grad, and runs under no_grad without a graph", function()
      local x = kdx.rand({2, 1, 3, 3}, "float64"):requires_grad(true)
      assert.matches("kdx.data.transforms.noise: x requires grad, but augmentations are not differentiable",
        err(all.noise, x))
      local y = kdx.no_grad(all.noise, x)
      assert.is_false(y:requires_grad())
      assert.is_false(kdx.no_grad(F.hflip, x):requires_grad())
    end)

    it("checks options when the transform is made", function()
      local cases = {
        {T.hflip, {p = 2}, "hflip: p must be a number in %[0, 1%], got 2"},
        {T.random_crop, {padding = -1}, "random_crop: padding must be {h, w integers >= 0}, got {%-1, %-1}"},
        {T.random_crop, {padding = 1.5}, "random_crop: padding must be {h, w integers >= 0}"},
        {T.random_crop, {size = {2}}, "random_crop: size must be a number or a pair {h, w integers >= 1}"},
        {T.random_crop, {pading = 4}, "random_crop: unknown option 'pading' %(options: fill, padding, size%)"},
        {T.random_affine, {degrees = -5}, "random_affine: degrees must be >= 0 %(or a range {lo, hi}%), got %-5"},
        {T.random_affine, {degrees = {5, -5}}, "random_affine: degrees must be {lo, hi finite} with lo <= hi"},
        {T.random_affine, {translate = {0.1, 2}}, "random_affine: translate must be {fx, fy in %[0, 1%]}"},
        {T.random_affine, {scale = {0, 1}}, "random_affine: scale must be {lo, hi > 0} with lo <= hi"},
        {T.noise, {std = -1}, "noise: std must be a number in %[0, inf%], got %-1"},
        {T.random_erasing, {ratio = {3, 0.3}}, "random_erasing: ratio must be {lo, hi > 0} with lo <= hi"},
        {T.random_erasing, {scale = {0.1, 2}}, "random_erasing: scale must be {lo, hi in %[0, 1%]}"},
        {T.random_erasing, {value = "noise"},
          'random_erasing: value must be a number or a list of numbers or "random"'},
        {T.normalize, 3, "normalize: options must be a table, got number"},
      }
      for _, c in ipairs(cases) do
        assert.matches("kdx.data.transforms." .. c[3], err(c[1], c[2]))
      end
    end)

    it("checks the parameters given to the functional forms", function()
      local x = kdx.rand{2, 1, 4, 4}
      assert.matches("kdx.data.transforms.functional.crop: offsets must be int64, got float32",
        err(F.crop, x, kdx.zeros{2, 2}, {padding = 1}))
      assert.matches("kdx.data.transforms.functional.affine: params %(0,0,0,0%) must be finite with scale > 0",
        err(F.affine, x, {{0, 0, 0, 0}, {0, 0, 0, 1}}))
      assert.matches("kdx.data.transforms.functional.affine: params must be %[2,4%], got %[1,4%]",
        err(F.affine, x, {{0, 0, 0, 1}}))
      assert.matches("kdx.data.transforms.functional.hflip: mask must be %[2%], got %[3%]", err(F.hflip, x, {1, 0, 1}))
      assert.matches("kdx.data.transforms.functional.noise: std must be a finite number >= 0", err(F.noise, x, -1))
    end)

    it("refuses a crop larger than the padded image", function()
      assert.matches("kdx.data.transforms.random_crop: crop size 9x9 must lie in 1x1..7x7 %(the padded image%)",
        err(T.random_crop{size = 9, padding = 1}, kdx.zeros{1, 1, 5, 5}))
    end)
  end)

  describe("as a DataLoader transform", function()
    local ds = kdx.data.dataset(ramp(10, 1, 6, 6), kdx.arange(1, 11))
    local function epoch(seed)
      local loader = kdx.data.DataLoader(ds, {batch_size = 4,
        transform = T.compose{T.random_crop{padding = 1}, T.hflip{}, T.normalize{mean = 50, std = 10}}})
      kdx.manual_seed(seed)
      local xs = {}
      for x, y in loader:iter() do
        xs[#xs + 1] = x
        assert.are.equal(x:size(1), y:size(1))
      end
      return xs
    end

    it("augments every batch, the same way for the same seed", function()
      local a, b, c = epoch(1), epoch(1), epoch(2)
      assert.are.equal(3, #a)
      assert.are.same({4, 1, 6, 6}, a[1]:shape())
      assert.are.same({2, 1, 6, 6}, a[3]:shape())
      for k = 1, 3 do same(a[k], b[k]) end
      differ(a[1], c[1])
      differ(a[1], (ds.x:narrow(1, 1, 4) - 50) / 10)
    end)
  end)
end)
