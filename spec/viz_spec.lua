-- Pictures of explanations: colours at known values, percentile clipping,
-- a shared scale for two maps, overlays, and grids whose labels are drawn.
local kdx = require "kdx"
local viz = require "kdx.viz"

local function rgb_at(img, i, j) return {img:get(1, i, j), img:get(2, i, j), img:get(3, i, j)} end

local function near(want, got, tol)
  tol = tol or 1e-5
  for k = 1, #want do
    if math.abs(want[k] - got[k]) > tol then
      error(("expected {%s}, got {%s}"):format(table.concat(want, ", "), table.concat(got, ", ")), 2)
    end
  end
end

local V, D = viz.colormaps.viridis, viz.colormaps.diverging

describe("kdx.viz", function()
  it("is reached as kdx.viz", function()
    assert.are.equal(viz, kdx.viz)
  end)

  describe("percentile()", function()
    local data = kdx.tensor{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, -2.5, 0.25}
    -- numpy.percentile (linear interpolation) of the same numbers
    local numpy = {[0] = -2.5, [10] = 0.4, [25] = 1.0, [50] = 3.0, [90] = 5.8, [99] = 8.64, [100] = 9.0,
      [33.3] = 1.996}
    for q, want in pairs(numpy) do
      it("matches numpy at q = " .. q, function()
        assert.is_true(math.abs(viz.percentile(data, q) - want) < 1e-9)
      end)
    end

    it("is exact on a large map with ties", function()
      kdx.manual_seed(1)
      local x = (kdx.rand{200, 300} * 50):long():float() -- 60,000 values, 50 distinct
      local vals = x:reshape{-1}:totable()
      table.sort(vals)
      for _, q in ipairs{1, 50, 99, 99.9} do
        local pos = q / 100 * (#vals - 1)
        local k = math.floor(pos)
        local want = vals[k + 1] + (pos - k) * ((vals[k + 2] or vals[k + 1]) - vals[k + 1])
        assert.is_true(math.abs(viz.percentile(x, q) - want) < 1e-9)
      end
    end)

    it("checks q", function()
      assert.has_error(function() viz.percentile(data, 101) end, "kdx.viz.percentile: q must be in [0, 100], got 101")
    end)
  end)

  describe("colorize()", function()
    it("maps 0 to the first anchor, 1 to the last and interpolates between", function()
      local img = viz.colorize(kdx.tensor{{0, 1, 0.5 / 31}})
      assert.are.same({3, 1, 3}, img:shape())
      near(V[1], rgb_at(img, 1, 1), 1e-6)
      near(V[32], rgb_at(img, 1, 2), 1e-6)
      near({(V[1][1] + V[2][1]) / 2, (V[1][2] + V[2][2]) / 2, (V[1][3] + V[2][3]) / 2}, rgb_at(img, 1, 3), 1e-6)
    end)

    it("takes an anchor table and clamps values outside [0, 1]", function()
      local img = viz.colorize(kdx.tensor{{-3, 0.25, 7}}, {{0, 0, 0}, {1, 0.5, 0}})
      near({0, 0, 0}, rgb_at(img, 1, 1))
      near({0.25, 0.125, 0}, rgb_at(img, 1, 2))
      near({1, 0.5, 0}, rgb_at(img, 1, 3))
    end)

    it("names the known maps when given an unknown one", function()
      assert.has_error(function() viz.colorize(kdx.zeros{2, 2}, "jet") end,
        "kdx.viz.colorize: unknown colormap 'jet' (known: diverging, gray, inferno, viridis)")
    end)
  end)

  describe("heatmap()", function()
    it("colours a positive map from the map's start (0) to its end (vmax)", function()
      local img, scale = viz.heatmap(kdx.tensor{{0, 1}, {2, 4}}, {clip_percentile = 100})
      assert.are.same({3, 2, 2}, img:shape())
      assert.is_false(scale.signed)
      assert.are.equal(0, scale.vmin)
      assert.are.equal(4, scale.vmax)
      near(V[1], rgb_at(img, 1, 1))
      near(V[32], rgb_at(img, 2, 2))
      local inferno = viz.heatmap(kdx.tensor{{0, 4}}, {cmap = "inferno", clip_percentile = 100})
      near(viz.colormaps.inferno[1], rgb_at(inferno, 1, 1))
      near(viz.colormaps.inferno[32], rgb_at(inferno, 1, 2))
    end)

    it("shows a signed map in blue-white-red centred at 0", function()
      local img, scale = viz.heatmap(kdx.tensor{{-2, 0, 1, 2}}, {clip_percentile = 100})
      assert.is_true(scale.signed)
      assert.are.same({-2, 2}, {scale.vmin, scale.vmax})
      near(D[1], rgb_at(img, 1, 1))
      near({1, 1, 1}, rgb_at(img, 1, 2))
      near(D[#D], rgb_at(img, 1, 4))
      local r, g, b = table.unpack(rgb_at(img, 1, 3))
      assert.is_true(r > b and g < 1) -- half-way to red
    end)

    it("can be told a non-negative map is signed", function()
      local img = viz.heatmap(kdx.tensor{{0, 3}}, {signed = true, clip_percentile = 100})
      near({1, 1, 1}, rgb_at(img, 1, 1))
      near(D[#D], rgb_at(img, 1, 2))
    end)

    it("clips outliers at clip_percentile so they do not wash out the map", function()
      local vals = {}
      for i = 1, 99 do vals[i] = i end
      vals[100] = 1e6
      local a = kdx.tensor(vals):reshape{10, 10}
      local img, scale = viz.heatmap(a, {clip_percentile = 90})
      assert.is_true(math.abs(scale.vmax - viz.percentile(a, 90)) < 1e-9)
      near(V[32], rgb_at(img, 10, 10)) -- the outlier saturates
      near(V[32], rgb_at(img, 10, 1)) -- so does 91 (above the 90th percentile, 90.1)
      local mid = rgb_at(img, 5, 5) -- 45: half-way up
      near(rgb_at(viz.colorize(kdx.tensor{{45 / scale.vmax}}), 1, 1), mid)
      -- without clipping, everything but the outlier sits at the bottom of the map
      local flat = viz.heatmap(a, {clip_percentile = 100})
      near(V[1], rgb_at(flat, 10, 1), 1e-3)
    end)

    it("puts two maps on one scale with shared_scale", function()
      local teacher = kdx.tensor{{0, 1}, {2, 4}}
      local student = kdx.tensor{{0, 0.5}, {1, 2}}
      local scale = viz.shared_scale({teacher, student}, {clip_percentile = 100})
      assert.are.same({0, 4}, {scale[1], scale[2]})
      local t = viz.heatmap(teacher, {scale = scale})
      local s = viz.heatmap(student, {scale = scale})
      near(rgb_at(t, 2, 1), rgb_at(s, 2, 2)) -- value 2 in both
      near(V[32], rgb_at(t, 2, 2))
      -- alone, the student's own maximum would reach the end of the map
      near(V[32], rgb_at(viz.heatmap(student, {clip_percentile = 100}), 2, 2))
      assert.is_true(math.abs(rgb_at(s, 2, 2)[1] - V[32][1]) > 0.1)
      -- vmin/vmax and a plain {vmin, vmax} table do the same
      near(rgb_at(s, 1, 2), rgb_at(viz.heatmap(student, {vmin = 0, vmax = 4}), 1, 2))
      near(rgb_at(s, 1, 2), rgb_at(viz.heatmap(student, {scale = {0, 4}}), 1, 2))
    end)

    it("shares a signed scale by the largest |value|", function()
      local a, b = kdx.tensor{{-1, 0.5}}, kdx.tensor{{3, 0}}
      local scale = viz.shared_scale({a, b}, {clip_percentile = 100})
      assert.is_true(scale.signed)
      assert.are.same({-3, 3}, {scale.vmin, scale.vmax})
      local img = viz.heatmap(b, {scale = scale}) -- b alone is positive: the scale keeps it signed
      near({1, 1, 1}, rgb_at(img, 1, 2))
      near(D[#D], rgb_at(img, 1, 1))
    end)

    it("overlays the map on a gray or RGB image, resizing the map to it", function()
      local attr = kdx.rand{7, 7}
      local gray = kdx.rand{1, 28, 28}
      local over = viz.heatmap(attr, {image = gray, alpha = 0})
      assert.are.same({3, 28, 28}, over:shape())
      assert.is_true((over - gray:expand{3, 28, 28}):abs():amax():item() < 1e-6)
      local pure = viz.heatmap(attr, {image = gray, alpha = 1, scale = {0, 1}})
      local up = viz.heatmap(kdx.data.resize(attr, 28, 28), {scale = {0, 1}})
      assert.is_true((pure - up):abs():amax():item() < 1e-5)
      local rgb = kdx.rand{3, 7, 7}
      local half = viz.heatmap(attr, {image = rgb, alpha = 0.5})
      local heat = viz.heatmap(attr)
      assert.is_true((half - (rgb * 0.5 + heat * 0.5)):abs():amax():item() < 1e-6)
    end)

    it("sums a [C,H,W] attribution over channels", function()
      local a = kdx.tensor{{{1, -2}}, {{1, 1}}, {{0, -1}}}
      local want = viz.heatmap(kdx.tensor{{2, -2}})
      local got = viz.heatmap(a)
      near(rgb_at(want, 1, 1), rgb_at(got, 1, 1))
      near(rgb_at(want, 1, 2), rgb_at(got, 1, 2))
    end)

    it("does not record gradients", function()
      local a = kdx.rand{4, 4}:requires_grad(true)
      local img = viz.heatmap(a * 2)
      assert.is_false(img:requires_grad())
    end)

    it("checks its options", function()
      assert.has_error(function() viz.heatmap(kdx.rand{2, 2, 2, 2}) end,
        "kdx.viz.heatmap: the attribution must be [H,W], [C,H,W] or [1,C,H,W], got [2,2,2,2]")
      assert.has_error(function() viz.heatmap(kdx.rand{2, 2}, {clip_percentile = 0}) end,
        "kdx.viz.heatmap: clip_percentile must be in (0, 100], got 0")
      assert.has_error(function() viz.heatmap(kdx.rand{2, 2}, {vmin = 1, vmax = 1, signed = false}) end,
        "kdx.viz.heatmap: vmax (1) must be greater than vmin (1)")
      assert.has_error(function() viz.heatmap(kdx.rand{2, 2}, {image = kdx.rand{2, 2}, alpha = 2}) end,
        "kdx.viz.heatmap: alpha must be in [0, 1]")
    end)
  end)

  describe("grid()", function()
    local function tiles(n, c, h, w)
      local out = {}
      for i = 1, n do out[i] = kdx.full({c, h, w}, i / (n + 1)) end
      return out
    end

    it("lays tiles out in rows of ncol with pad pixels around them", function()
      local g = viz.grid(tiles(5, 3, 10, 12), {ncol = 3, pad = 2})
      assert.are.same({3, 2 * 10 + 3 * 2, 3 * 12 + 4 * 2}, g:shape())
      -- tile 1 at (3, 3), tile 5 in row 2, column 2; the background is white
      near({1 / 6}, {g:get(1, 3, 3)})
      near({5 / 6}, {g:get(2, 2 + 10 + 2 + 1, 2 + 12 + 2 + 1)})
      assert.are.equal(1, g:get(1, 1, 1))
      assert.are.equal(1, g:get(1, 26, 44)) -- the empty sixth cell
    end)

    it("takes gray tiles, [H,W] tiles and an [N,C,H,W] batch", function()
      local g = viz.grid({kdx.full({1, 4, 4}, 0.25), kdx.full({4, 4}, 0.5)}, {pad = 0})
      assert.are.same({3, 4, 8}, g:shape())
      near({0.25, 0.25, 0.25}, rgb_at(g, 1, 1))
      near({0.5, 0.5, 0.5}, rgb_at(g, 4, 8))
      assert.are.same({3, 2 * 4 + 3 * 2, 2 * 5 + 3 * 2}, viz.grid(kdx.rand{4, 1, 4, 5}, {ncol = 2}):shape())
    end)

    it("makes room for labels above the tiles and draws them", function()
      local g = viz.grid(tiles(2, 3, 10, 12), {ncol = 2, pad = 2, labels = {"I", "I"}})
      -- each cell: 7 rows of text + 2 rows of space, then the tile
      assert.are.same({3, 2 + 9 + 10 + 2, 2 + 12 + 2 + 12 + 2}, g:shape())
      -- "I" has 11 inked cells in the 5 x 7 font: 22 black pixels in all
      local black = g:select(1, 1):lt(0.01):sum():item()
      assert.are.equal(22, black)
      -- the tiles sit below the labels
      near({1 / 3}, {g:get(1, 2 + 9 + 1, 3)})
    end)

    it("widens cells for long labels, breaks lines at \\n and scales tiles and text", function()
      local g = viz.grid(tiles(1, 3, 4, 4), {pad = 0, labels = {"wide label"}})
      assert.are.same({3, 9 + 4, 10 * 6 - 1}, g:shape())
      local two = viz.grid(tiles(1, 3, 4, 4), {pad = 0, labels = {"a\nb"}})
      assert.are.same({3, 16 + 2 + 4, 5}, two:shape())
      local big = viz.grid(tiles(1, 3, 4, 4), {pad = 0, scale = 3, font_scale = 2, labels = {"I"}})
      assert.are.same({3, 14 + 2 + 12, 12}, big:shape())
      assert.are.equal(44, big:select(1, 1):lt(0.01):sum():item())
    end)

    it("checks its arguments", function()
      assert.has_error(function() viz.grid({}) end, "kdx.viz.grid: images must be a non-empty list of tensors")
      assert.has_error(function() viz.grid(tiles(1, 3, 2, 2), {labels = {"a", "b"}}) end,
        "kdx.viz.grid: 2 labels for 1 images")
      assert.has_error(function() viz.grid(tiles(1, 3, 2, 2), {ncol = 0}) end,
        "kdx.viz.grid: ncol must be an integer >= 1")
    end)
  end)

  describe("draw_text()", function()
    it("clips text that runs off the picture", function()
      local img = kdx.ones{3, 5, 8}
      viz.draw_text(img, "Hello", 5, 2)
      viz.draw_text(img, "x", -10, -10)
      assert.is_true(img:lt(1):sum():item() > 0)
      local w, h = viz.text_size("Hello\nkdx", 2)
      assert.are.same({(5 * 6 - 1) * 2, 16 * 2}, {w, h})
    end)
  end)
end)
