-- kdx.explain.lime and kdx.explain.slic: LIME's fit checked on exactly the
-- samples the model saw (recorded by the model itself: the kernel weights
-- recomputed here, the ridge fit by the regression that spec/explain_shap_spec
-- checks against sklearn), feature selection, exactness on a linear model,
-- R^2, seeds, batching, image mode; SLIC's coverage, connectivity and
-- recovery of flat colour blocks; errors.
local kdx = require "kdx"
local core = require "kdx.core"
local helpers = require "helpers.close"
local close = helpers.assert_close

-- A model that records every row it is given (flattened) and its output.
local function recorder(f)
  local rec = {rows = {}, outs = {}}
  rec.model = function(b)
    local y = f(b)
    local n = b:shape()[1]
    local flat = b:reshape{n, -1}
    for r = 1, n do
      rec.rows[#rec.rows + 1] = flat:select(1, r):totable()
      rec.outs[#rec.outs + 1] = y:get(r)
    end
    return y
  end
  return rec
end

-- The binary samples of the recorded rows: feature j present when its first
-- element (firsts[j]) holds x's value.
local function binary(rec, xflat, firsts)
  local Z = {}
  for r, rowv in ipairs(rec.rows) do
    Z[r] = {}
    for j, e in ipairs(firsts) do Z[r][j] = rowv[e] == xflat[e] and 1 or 0 end
  end
  return Z
end

local function kernel(Z, distance, width)
  local w = {}
  for r, z in ipairs(Z) do
    local on, M = 0, #z
    for _, v in ipairs(z) do on = on + v end
    local d
    if distance == "euclidean" then d = math.sqrt(M - on) else d = on > 0 and 1 - math.sqrt(on / M) or 1 end
    w[r] = math.sqrt(math.exp(-d * d / (width * width)))
  end
  return w
end

local function columns(Z, cols)
  local out = {}
  for r, z in ipairs(Z) do
    out[r] = {}
    for k, j in ipairs(cols) do out[r][k] = z[j] end
  end
  return out
end

local function fit(Z, y, w, alpha, cols)
  local Zc = cols and columns(Z, cols) or Z
  return core._linreg(kdx.tensor(Zc, "float64"), kdx.tensor(y, "float64"), kdx.tensor(w, "float64"), alpha, true,
    nil, nil)
end

local function nonlinear(b)
  local c = function(j) return b:select(2, j) end
  return (c(1) * c(2)):tanh() + c(3) ^ 2 - 0.5 * c(4) + c(5) * c(6) + 0.1 * c(6)
end

describe("kdx.explain.lime", function()
  kdx.manual_seed(9)
  local x = kdx.randn({1, 6}, "float64")
  local xflat = x:select(1, 1):totable()
  local firsts = {1, 2, 3, 4, 5, 6}
  local base = 3.5 -- differs from every element of x

  describe("tabular mode", function()
    it("fits Ridge(alpha=1) with LIME's euclidean kernel on the samples the model saw", function()
      local rec = recorder(nonlinear)
      local attr, info = kdx.explain.lime(rec.model, x, {baseline = base, samples = 300, seed = 1})
      assert.are.equal(300, #rec.rows)
      local Z = binary(rec, xflat, firsts)
      for j = 1, 6 do assert.are.equal(1, Z[1][j]) end -- the first sample is x itself
      local w = kernel(Z, "euclidean", 0.75 * math.sqrt(6))
      local coef, b0, r2 = fit(Z, rec.outs, w, 1)
      close(attr:select(1, 1), coef, 1e-10)
      assert.is_true(math.abs(info.intercept:get(1) - b0) < 1e-10)
      assert.is_true(math.abs(info.score:get(1) - r2) < 1e-10)
      assert.is_true(math.abs(info.local_pred:get(1) - (b0 + coef:sum():item())) < 1e-10)
    end)

    it("honours kernel_width, distance and alpha", function()
      local rec = recorder(nonlinear)
      local attr = kdx.explain.lime(rec.model, x, {baseline = base, samples = 200, seed = 2, kernel_width = 0.6,
        distance = "cosine", alpha = 0.3})
      local Z = binary(rec, xflat, firsts)
      close(attr:select(1, 1), (fit(Z, rec.outs, kernel(Z, "cosine", 0.6), 0.3)), 1e-10)
    end)

    it("selects num_features by the highest weights of a Ridge(alpha=0.01)", function()
      local rec = recorder(nonlinear)
      local attr = kdx.explain.lime(rec.model, x, {baseline = base, samples = 300, seed = 3, num_features = 3,
        feature_selection = "highest_weights"})
      local Z = binary(rec, xflat, firsts)
      local w = kernel(Z, "euclidean", 0.75 * math.sqrt(6))
      local c = fit(Z, rec.outs, w, 0.01):totable()
      local order = {1, 2, 3, 4, 5, 6}
      table.sort(order, function(a, b) return math.abs(c[a]) > math.abs(c[b]) end)
      local top = {order[1], order[2], order[3]}
      local coef = fit(Z, rec.outs, w, 1, top)
      local want = {0, 0, 0, 0, 0, 0}
      for k, j in ipairs(top) do want[j] = coef:get(k) end
      close(attr:select(1, 1), kdx.tensor(want, "float64"), 1e-10)
    end)

    it("selects few features greedily by R^2 (forward selection, LIME's auto for <= 6)", function()
      local rec = recorder(nonlinear)
      local attr = kdx.explain.lime(rec.model, x, {baseline = base, samples = 300, seed = 4, num_features = 2})
      local Z = binary(rec, xflat, firsts)
      local w = kernel(Z, "euclidean", 0.75 * math.sqrt(6))
      local used = {}
      for _ = 1, 2 do
        local best, best_r2 = nil, -math.huge
        for j = 1, 6 do
          local taken = false
          for _, u in ipairs(used) do taken = taken or u == j end
          if not taken then
            local cols = {table.unpack(used)}
            cols[#cols + 1] = j
            local _, _, r2 = fit(Z, rec.outs, w, 0, cols)
            if r2 > best_r2 then best, best_r2 = j, r2 end
          end
        end
        used[#used + 1] = best
      end
      local nonzero = {}
      for j = 1, 6 do if attr:get(1, j) ~= 0 then nonzero[#nonzero + 1] = j end end
      table.sort(used)
      assert.are.same(used, nonzero)
    end)

    it("recovers a linear model exactly without the ridge penalty, with R^2 = 1", function()
      local wv = kdx.tensor({1, -2, 3, 0.5, 0, -1}, "float64")
      local xs = kdx.randn({3, 6}, "float64")
      local attr, info = kdx.explain.lime(function(b) return kdx.matmul(b, wv) + 2 end, xs,
        {baseline = 0.5, alpha = 0, samples = 100, seed = 1})
      close(attr, (xs - 0.5) * wv, 1e-10)
      close(info.score, kdx.ones({3}, "float64"), 1e-12)
    end)

    it("reports a weighted R^2 in [0, 1]", function()
      local xs = kdx.randn({4, 6}, "float64")
      local _, info = kdx.explain.lime(nonlinear, xs, {samples = 150, seed = 5})
      for i = 1, 4 do
        local r2 = info.score:get(i)
        assert.is_true(r2 >= 0 and r2 <= 1, tostring(r2))
      end
    end)

    it("is deterministic for a seed and the same in any batch size", function()
      local xs = kdx.randn({2, 6}, "float64")
      local a = kdx.explain.lime(nonlinear, xs, {samples = 100, seed = 7, batch_size = 1})
      local b = kdx.explain.lime(nonlinear, xs, {samples = 100, seed = 7, batch_size = 1000})
      local c = kdx.explain.lime(nonlinear, xs, {samples = 100, seed = 8})
      close(a, b, 1e-12)
      assert.is_true((a - c):abs():max():item() > 1e-6)
    end)
  end)

  describe("image mode", function()
    kdx.manual_seed(4)
    local img = kdx.rand({2, 3, 12, 12}, "float64")
    local f = function(b) return (b:narrow(2, 1, 1):sum(4):sum(3):sum(2) * 0.1):tanh() end

    it("explains SLIC superpixels: one value per segment, as with the segments as feature_mask", function()
      local attr = kdx.explain.lime(f, img, {mode = "image", slic = {n_segments = 6}, samples = 64, seed = 1})
      local seg = kdx.explain.slic(img, {n_segments = 6})
      local again = kdx.explain.lime(f, img, {mode = "image", feature_mask = seg:reshape{2, 1, 12, 12},
        samples = 64, seed = 1})
      close(attr, again, 0)
      for i = 1, 2 do
        local value = {}
        for c = 1, 3 do
          for h = 1, 12 do
            for w = 1, 12 do
              local s, a = seg:get(i, h, w), attr:get(i, c, h, w)
              value[s] = value[s] or a
              assert.are.equal(value[s], a)
            end
          end
        end
      end
    end)

    it("weights samples by LIME's cosine kernel of width 0.25", function()
      local one = img:narrow(1, 1, 1)
      local mask = kdx.explain.slic(one, {n_segments = 6})
      local M = mask:max():item()
      local firsts = {}
      local mflat = mask:reshape{-1}:totable()
      for e, s in ipairs(mflat) do firsts[s] = firsts[s] or e end
      local rec = recorder(f)
      local attr = kdx.explain.lime(rec.model, one, {mode = "image", feature_mask = mask:reshape{1, 1, 12, 12},
        samples = 80, seed = 3, baseline = 2})
      local Z = binary(rec, one:reshape{-1}:totable(), firsts)
      assert.are.equal(M, #Z[1])
      local coef = fit(Z, rec.outs, kernel(Z, "cosine", 0.25), 1)
      for h = 1, 12 do
        for w = 1, 12 do
          assert.is_true(math.abs(attr:get(1, 1, h, w) - coef:get(mask:get(1, h, w))) < 1e-10)
        end
      end
    end)
  end)

  describe("errors", function()
    local function fails(opts, pattern, xx)
      local ok, err = pcall(kdx.explain.lime, nonlinear, xx or x, opts)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("kdx.explain.lime", 1, true), tostring(err))
      assert.truthy(tostring(err):find(pattern, 1, true), tostring(err))
    end

    it("name the method and the option", function()
      fails({samples = 1}, "samples")
      fails({kernel_width = 0}, "kernel_width")
      fails({alpha = -1}, "alpha")
      fails({num_features = 0}, "num_features")
      fails({feature_selection = "lasso_path"}, "feature_selection")
      fails({distance = "manhattan"}, "distance")
      fails({mode = "text"}, "mode")
      fails({mode = "image"}, "image")
      fails({feature_mask = {1, 2, 3}}, "feature_mask")
      local ok, err = pcall(kdx.explain.lime, function() error("boom") end, x, {})
      assert.is_false(ok)
      assert.truthy(tostring(err):find("kdx.explain.lime: the model raised an error", 1, true), tostring(err))
    end)
  end)
end)

describe("kdx.explain.slic", function()
  -- An image of flat colour blocks: block (r, c) of size bh x bw gets colour k.
  local palette = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {0, 1, 1}, {1, 0, 1}, {0.5, 0.5, 0.5}, {1, 1, 1},
    {0, 0, 0}}
  local function blocks(rows, cols, bh, bw)
    local img = kdx.zeros({3, rows * bh, cols * bw}, "float64")
    local id = {}
    for h = 1, rows * bh do
      id[h] = {}
      for w = 1, cols * bw do
        local k = ((h - 1) // bh) * cols + (w - 1) // bw + 1
        id[h][w] = k
        for c = 1, 3 do img:set(c, h, w, palette[k][c]) end
      end
    end
    return img, id
  end

  local function connected(seg)
    local H, W = seg:shape()[1], seg:shape()[2]
    local lab = seg:totable()
    local seen, comps = {}, {}
    for h = 1, H do seen[h] = {} end
    for h = 1, H do
      for w = 1, W do
        if not seen[h][w] then
          local s = lab[h][w]
          if comps[s] then return false end -- a second component of the same segment
          comps[s] = true
          local stack = {{h, w}}
          seen[h][w] = true
          while #stack > 0 do
            local p = table.remove(stack)
            for _, d in ipairs{{-1, 0}, {1, 0}, {0, -1}, {0, 1}} do
              local y, xx = p[1] + d[1], p[2] + d[2]
              if y >= 1 and y <= H and xx >= 1 and xx <= W and not seen[y][xx] and lab[y][xx] == s then
                seen[y][xx] = true
                stack[#stack + 1] = {y, xx}
              end
            end
          end
        end
      end
    end
    return true
  end

  it("recovers k flat colour blocks as k segments", function()
    local img, id = blocks(3, 3, 8, 8)
    local seg = kdx.explain.slic(img, {n_segments = 9})
    assert.are.same({24, 24}, seg:shape())
    local map = {}
    for h = 1, 24 do
      for w = 1, 24 do
        local s = seg:get(h, w)
        map[s] = map[s] or id[h][w]
        assert.are.equal(map[s], id[h][w])
      end
    end
    assert.are.equal(9, seg:max():item())
  end)

  it("never lets a segment straddle two blocks when asked for more segments", function()
    local img, id = blocks(2, 3, 10, 8)
    local seg = kdx.explain.slic(img, {n_segments = 30})
    local map = {}
    for h = 1, 20 do
      for w = 1, 24 do
        local s = seg:get(h, w)
        map[s] = map[s] or id[h][w]
        assert.are.equal(map[s], id[h][w])
      end
    end
    assert.is_true(seg:max():item() > 6)
  end)

  it("covers the image with consecutive connected segments", function()
    kdx.manual_seed(2)
    local imgs = kdx.rand({2, 3, 20, 30})
    local seg = kdx.explain.slic(imgs, {n_segments = 20, sigma = 1}) -- smoothed noise: pure noise has no regions
    assert.are.same({2, 20, 30}, seg:shape())
    for i = 1, 2 do
      local one = seg:select(1, i)
      local K = one:max():item()
      assert.are.equal(1, one:min():item())
      local present = {}
      for _, v in ipairs(one:reshape{-1}:totable()) do present[v] = true end
      for k = 1, K do assert.is_true(present[k], "segment " .. k .. " is empty") end
      assert.is_true(K >= 5 and K <= 60, tostring(K))
      assert.is_true(connected(one))
    end
  end)

  it("segments each image of a batch as it would alone", function()
    kdx.manual_seed(6)
    local imgs = kdx.rand({3, 3, 16, 16})
    local seg = kdx.explain.slic(imgs, {n_segments = 12, sigma = 1})
    for i = 1, 3 do close(seg:select(1, i), kdx.explain.slic(imgs:select(1, i), {n_segments = 12, sigma = 1}), 0) end
  end)

  it("handles one channel (intensity) and start_label = 0", function()
    local img = kdx.zeros({1, 16, 16})
    img:narrow(3, 7, 10):fill_(1) -- the boundary is off the grid's midline
    local seg = kdx.explain.slic(img, {n_segments = 4, compactness = 0.01, start_label = 0})
    assert.are.equal(0, seg:min():item())
    local side = {}
    for h = 1, 16 do
      for w = 1, 16 do
        local s = seg:get(h, w)
        if side[s] == nil then side[s] = w > 6 end
        assert.are.equal(side[s], w > 6)
      end
    end
  end)

  it("raises errors naming the method", function()
    local img = kdx.rand({3, 8, 8})
    for _, case in ipairs{
      {img, {n_segments = 0}, "n_segments"}, {img, {compactness = -1}, "compactness"},
      {img, {max_iter = 0}, "max_iter"}, {img, {start_label = 2}, "start_label"},
      {img, {sigma = -1}, "sigma"}, {kdx.rand({8, 8}), {}, "images"},
      {kdx.zeros({3, 8, 8}, "int64"), {}, "images"},
    } do
      local ok, err = pcall(kdx.explain.slic, case[1], case[2])
      assert.is_false(ok)
      assert.truthy(tostring(err):find("kdx.explain.slic", 1, true), tostring(err))
      assert.truthy(tostring(err):find(case[3], 1, true), tostring(err))
    end
  end)
end)
