--- kdx.viz: pictures of explanations. heatmap turns an attribution map into
-- an RGB image (optionally over the input), shared_scale puts several maps
-- on one scale, grid lays images out with text labels. Pictures are float32
-- RGB tensors [3,H,W] in [0,1]; save them with kdx.data.save_png. The work
-- is done by tensor ops (C kernels), not by Lua loops over pixels.
-- @module kdx.viz

local kdx = require "kdx"
local images = require "kdx.data.images"
local colormaps = require "kdx.viz.colormaps"
local font = require "kdx.viz.font"

local M = {colormaps = colormaps}

local function fail(fname, msg, ...)
  error(("kdx.viz.%s: " .. msg):format(fname, ...), 3)
end

local function check_tensor(fname, t, what)
  if not kdx.is_tensor(t) then fail(fname, "%s must be a tensor, got %s", what, type(t)) end
end

-- ------------------------------------------------------------ percentiles --

local function count_le(x, v) return x:le(v):sum():item() end

-- The k-th smallest entry (1-based) of the flat float64 tensor x, found by
-- bisection on the value: each step is a comparison and a sum in C. The
-- bracket keeps count(x <= lo) < k <= count(x <= hi); once the smallest entry
-- above lo reaches rank k, it is the answer, exactly.
local function kth(x, k)
  local lo, hi = x:amin():item(), x:amax():item()
  if count_le(x, lo) >= k then return lo end
  for _ = 1, 2000 do
    local above = x:masked_fill(x:le(lo), math.huge):amin():item()
    if count_le(x, above) >= k then return above end
    local mid = lo + (hi - lo) / 2
    if not (mid > lo and mid < hi) then break end
    if count_le(x, mid) >= k then hi = mid else lo = mid end
  end
  return hi
end

--- The q-th percentile (0..100) of the entries of t, interpolated linearly
-- between order statistics as numpy.percentile does by default.
function M.percentile(t, q)
  check_tensor("percentile", t, "t")
  if type(q) ~= "number" or not (q >= 0 and q <= 100) then fail("percentile", "q must be in [0, 100], got %s", tostring(q)) end
  local x = t:detach():reshape{-1}:double()
  local n = x:numel()
  if n == 0 then fail("percentile", "t is empty") end
  local pos = q / 100 * (n - 1)
  local k = math.floor(pos)
  local frac = pos - k
  local v = kth(x, k + 1)
  if frac > 0 then v = v + frac * (kth(x, k + 2) - v) end
  return v
end

-- ---------------------------------------------------------------- colours --

local cmap_cache = {}

-- The anchor tensor [K,3] of a colormap name or an anchor table.
local function anchors(cmap, fname)
  if type(cmap) == "table" then
    if #cmap < 2 then fail(fname, "a colormap table needs at least 2 {r, g, b} anchors") end
    for i, c in ipairs(cmap) do
      if type(c) ~= "table" or #c ~= 3 then fail(fname, "colormap anchor %d must be {r, g, b}", i) end
    end
    return kdx.tensor(cmap)
  end
  local a = cmap_cache[cmap]
  if not a then
    local tbl = colormaps[cmap]
    if type(tbl) ~= "table" then
      local names = {}
      for name in pairs(colormaps) do names[#names + 1] = name end
      table.sort(names)
      fail(fname, "unknown colormap '%s' (known: %s)", tostring(cmap), table.concat(names, ", "))
    end
    a = kdx.tensor(tbl)
    cmap_cache[cmap] = a
  end
  return a
end

--- Colours a map t [H,W] with values in [0,1] (clamped): 0 is the colormap's
-- first colour, 1 its last. cmap: "viridis" (default), "inferno",
-- "diverging" (blue-white-red), "gray", or a table of {r, g, b} anchors.
-- Returns RGB [3,H,W].
function M.colorize(t, cmap)
  check_tensor("colorize", t, "t")
  if t:dim() ~= 2 then fail("colorize", "t must be [H,W], got %d dims", t:dim()) end
  local a = anchors(cmap or "viridis", "colorize")
  local k = a:size(1)
  local h, w = t:size(1), t:size(2)
  -- Piecewise-linear lookup as a product: weight of anchor j is the hat
  -- max(0, 1 - |p - j|) at p = t * (k - 1), so each pixel mixes its two
  -- neighbouring anchors; [HW,K] @ [K,3] gives all pixels at once.
  local p = t:detach():float():clamp(0, 1):reshape{h * w, 1} * (k - 1)
  local hat = (1 - (p - kdx.arange(0, k):float():reshape{1, k}):abs()):relu()
  return kdx.matmul(hat, a):t():contiguous():reshape{3, h, w}
end

-- An attribution as a map [H,W]: [H,W]; [C,H,W] summed over channels (the
-- usual reduction for signed pixel attributions); [1,C,H,W] likewise.
local function as_map(attr, fname)
  check_tensor(fname, attr, "the attribution")
  local a = attr:detach()
  if a:dtype() == "int64" then a = a:float() end
  if a:dim() == 4 and a:size(1) == 1 then a = a:select(1, 1) end
  if a:dim() == 3 then a = a:size(1) == 1 and a:select(1, 1) or a:sum(1) end
  if a:dim() ~= 2 then
    fail(fname, "the attribution must be [H,W], [C,H,W] or [1,C,H,W], got [%s]", table.concat(attr:shape(), ","))
  end
  return a
end

-- The input image as RGB [3,H,W] in [0,1]: gray is repeated, alpha dropped,
-- and values outside [0,1] (a normalised input) rescaled by min and max.
local function as_rgb(img, fname)
  check_tensor(fname, img, "image")
  local x = img:detach()
  if x:dtype() == "int64" then x = x:float() end
  if x:dim() == 4 and x:size(1) == 1 then x = x:select(1, 1) end
  if x:dim() ~= 2 and x:dim() ~= 3 then fail(fname, "image must be [C,H,W] or [H,W], got %d dims", x:dim()) end
  x = images.to_channels(x, 3)
  local lo, hi = x:amin():item(), x:amax():item()
  if lo < 0 or hi > 1 then x = (x - lo) / (hi > lo and hi - lo or 1) end
  return x
end

local function check_clip(fname, clip)
  if clip == nil then return 99 end
  if type(clip) ~= "number" or not (clip > 0 and clip <= 100) then
    fail(fname, "clip_percentile must be in (0, 100], got %s", tostring(clip))
  end
  return clip
end

-- The range {vmin, vmax, signed} of values to show: signed maps are centred
-- at 0 and reach the clip_percentile of |values|; others run from 0 (or the
-- low percentile when there are negatives) to the clip_percentile.
local function range_of(flat, signed, clip)
  if signed then
    local s = M.percentile(flat:abs(), clip)
    if not (s > 0) then s = 1 end
    return {-s, s, vmin = -s, vmax = s, signed = true}
  end
  local vmax = M.percentile(flat, clip)
  local vmin = flat:amin():item() >= 0 and 0 or M.percentile(flat, 100 - clip)
  if not (vmax > vmin) then vmax = vmin + 1 end
  return {vmin, vmax, vmin = vmin, vmax = vmax, signed = false}
end

--- One scale for several attribution maps (teacher and student, say), to
-- pass to heatmap as opts.scale so that equal values get equal colours.
-- opts: clip_percentile (default 99, over all maps together), signed
-- (default: whether any map has a negative value). Returns {vmin, vmax,
-- vmin = , vmax = , signed = }.
function M.shared_scale(maps, opts)
  opts = opts or {}
  if type(maps) ~= "table" or #maps == 0 then fail("shared_scale", "maps must be a non-empty list of tensors") end
  local clip = check_clip("shared_scale", opts.clip_percentile)
  local flats, signed = {}, opts.signed
  for i, m in ipairs(maps) do
    if not kdx.is_tensor(m) then fail("shared_scale", "maps[%d] must be a tensor, got %s", i, type(m)) end
    flats[i] = as_map(m, "shared_scale"):reshape{-1}
  end
  local flat = kdx.cat(flats, 1)
  if signed == nil then signed = flat:amin():item() < 0 end
  return range_of(flat, signed, clip)
end

--- An attribution map as a picture: RGB [3,H,W] in [0,1], and the scale
-- used ({vmin, vmax, signed}, which another call can take as opts.scale).
-- attr: [H,W], [C,H,W] (summed over C) or [1,C,H,W]. opts:
--   signed (default: whether attr has a negative value): signed maps use the
--     diverging map centred at 0 (white), scaled by the clip_percentile of |attr|;
--   cmap ("diverging" for signed maps, else "viridis"; or "inferno", "gray", anchors);
--   clip_percentile (99): values beyond it saturate, so outliers do not wash out the map;
--   vmin, vmax, or scale = {vmin, vmax} (e.g. from shared_scale) to fix the range;
--   image: the input [C,H,W] or [H,W] (gray or RGB) to draw the map over; the
--     map is resized (bilinear) to the image's size;
--   alpha (0.5): the map's weight over the image.
function M.heatmap(attr, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("heatmap", "opts must be a table") end
  local a = as_map(attr, "heatmap")
  local clip = check_clip("heatmap", opts.clip_percentile)
  local scale = opts.scale
  if scale ~= nil and type(scale) ~= "table" then fail("heatmap", "scale must be {vmin, vmax}") end
  local signed = opts.signed
  if signed == nil and scale then signed = scale.signed end
  if signed == nil then signed = a:amin():item() < 0 end
  local vmin = opts.vmin or (scale and (scale.vmin or scale[1]))
  local vmax = opts.vmax or (scale and (scale.vmax or scale[2]))
  for _, v in ipairs{vmin or 0, vmax or 0} do
    if type(v) ~= "number" then fail("heatmap", "vmin and vmax must be numbers") end
  end
  local used
  if vmin == nil and vmax == nil then
    used = range_of(a:reshape{-1}, signed, clip)
  elseif signed then
    local s = math.max(math.abs(vmin or 0), math.abs(vmax or 0))
    if not (s > 0) then s = 1 end
    used = {-s, s, vmin = -s, vmax = s, signed = true}
  else
    local auto = (vmin == nil or vmax == nil) and range_of(a:reshape{-1}, false, clip)
    vmin, vmax = vmin or auto.vmin, vmax or auto.vmax
    if not (vmax > vmin) then fail("heatmap", "vmax (%g) must be greater than vmin (%g)", vmax, vmin) end
    used = {vmin, vmax, vmin = vmin, vmax = vmax, signed = false}
  end
  local t = ((a - used.vmin) / (used.vmax - used.vmin)):clamp(0, 1)
  local base
  if opts.image ~= nil then
    base = as_rgb(opts.image, "heatmap")
    if base:size(2) ~= t:size(1) or base:size(3) ~= t:size(2) then
      t = images.resize(t, base:size(2), base:size(3)):clamp(0, 1)
    end
  end
  local rgb = M.colorize(t, opts.cmap or (signed and "diverging" or "viridis"))
  if base then
    local alpha = opts.alpha == nil and 0.5 or opts.alpha
    if type(alpha) ~= "number" or alpha < 0 or alpha > 1 then fail("heatmap", "alpha must be in [0, 1]") end
    rgb = base * (1 - alpha) + rgb * alpha
  end
  return rgb, used
end

-- ------------------------------------------------------------------- text --

-- A colour as a tensor [C,1,1] for a picture of c channels.
local function colour(v, c, fname, what)
  if type(v) == "number" then return kdx.full({c, 1, 1}, v) end
  if type(v) == "table" and #v == c then return kdx.tensor(v):reshape{c, 1, 1} end
  if type(v) == "table" and #v == 3 and c == 1 then
    return kdx.tensor{0.299 * v[1] + 0.587 * v[2] + 0.114 * v[3]}:reshape{1, 1, 1}
  end
  fail(fname, "%s must be a number or {r, g, b}", what)
end

local function lines_of(text)
  local out = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

--- Width and height in pixels of text drawn with the built-in 5 x 7 font at
-- an integer scale (lines split at "\n").
function M.text_size(text, scale)
  scale = scale or 1
  local ls = lines_of(tostring(text))
  local wmax = 0
  for _, line in ipairs(ls) do wmax = math.max(wmax, #font.bytes(line)) end
  local w = wmax > 0 and wmax * font.ADVANCE - 1 or 0
  return w * scale, (#ls * font.LINE - (font.LINE - font.HEIGHT)) * scale
end

-- The ink mask [7*scale, width*scale] of one line of text.
local function line_mask(bytes, scale)
  local rows = {}
  local w = #bytes * font.ADVANCE - 1
  for r = 1, font.HEIGHT do
    local row = {}
    for i = 1, w do row[i] = 0 end
    for j, b in ipairs(bytes) do
      local g = font.glyph(b)[r]
      local x0 = (j - 1) * font.ADVANCE
      for c = 1, font.WIDTH do row[x0 + c] = g[c] end
    end
    rows[r] = row
  end
  local m = kdx.tensor(rows)
  if scale > 1 then
    m = m:reshape{font.HEIGHT, 1, w, 1}:expand{font.HEIGHT, scale, w, scale}:reshape{font.HEIGHT * scale, w * scale}
  end
  return m
end

--- Draws text into img ([C,H,W], in place) with its top-left corner at
-- pixel (x, y), 1-based; text outside the picture is clipped. opts: color
-- (number or {r, g, b}; default 0, black), scale (integer, default 1).
-- Returns img.
function M.draw_text(img, text, x, y, opts)
  opts = opts or {}
  check_tensor("draw_text", img, "img")
  if img:dim() ~= 3 then fail("draw_text", "img must be [C,H,W], got %d dims", img:dim()) end
  if math.type(x) ~= "integer" or math.type(y) ~= "integer" then fail("draw_text", "x and y must be integers") end
  local scale = opts.scale or 1
  if math.type(scale) ~= "integer" or scale < 1 then fail("draw_text", "scale must be a positive integer") end
  local c, H, W = img:size(1), img:size(2), img:size(3)
  local col = colour(opts.color or 0, c, "draw_text", "color")
  for i, line in ipairs(lines_of(tostring(text))) do
    local bytes = font.bytes(line)
    local top = y + (i - 1) * font.LINE * scale
    if #bytes > 0 then
      local m = line_mask(bytes, scale)
      local mh, mw = m:size(1), m:size(2)
      -- clip the mask to the picture
      local r0, c0 = math.max(1, top), math.max(1, x)
      local r1, c1 = math.min(H, top + mh - 1), math.min(W, x + mw - 1)
      if r1 >= r0 and c1 >= c0 then
        m = m:narrow(1, r0 - top + 1, r1 - r0 + 1):narrow(2, c0 - x + 1, c1 - c0 + 1):unsqueeze(1)
        local region = img:narrow(2, r0, r1 - r0 + 1):narrow(3, c0, c1 - c0 + 1)
        region:copy_(region + (col - region) * m)
      end
    end
  end
  return img
end

-- ------------------------------------------------------------------- grid --

-- The grid's tiles as RGB, enlarged by scale (nearest neighbour: a view
-- that repeats each pixel, then one copy), and the largest tile's size.
local function grid_tiles(list, scale)
  local tiles, tw, th = {}, 0, 0
  for i, img in ipairs(list) do
    if not kdx.is_tensor(img) then fail("grid", "images[%d] must be a tensor, got %s", i, type(img)) end
    if img:dim() ~= 2 and img:dim() ~= 3 then fail("grid", "images[%d] must be [C,H,W] or [H,W]", i) end
    local x = images.to_channels(img:detach():float(), 3)
    if scale > 1 then
      local c, h, w = x:size(1), x:size(2), x:size(3)
      x = x:reshape{c, h, 1, w, 1}:expand{c, h, scale, w, scale}:reshape{c, h * scale, w * scale}
    end
    tiles[i] = x
    tw, th = math.max(tw, x:size(3)), math.max(th, x:size(2))
  end
  return tiles, tw, th
end

--- Lays images out in a grid, each under its label: one RGB picture [3,H,W].
-- images: a list of [C,H,W] or [H,W] tensors in [0,1] (gray is repeated,
-- alpha dropped), or one [N,C,H,W] tensor. opts:
--   ncol (default min(N, 8)); labels (a list of strings, one per image; "\n"
--   breaks lines); pad (2) pixels around tiles; scale (1): an integer factor
--   by which tiles are enlarged (nearest neighbour); font_scale (1);
--   background (1, white) and text_color (0, black): numbers or {r, g, b}.
-- Every cell is as wide as the widest tile or label and as tall as the
-- tallest tile plus, when there are labels, 7 * font_scale + 2 rows of text
-- (9 * font_scale more for each extra line); tiles are centred in their cells.
function M.grid(list, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("grid", "opts must be a table") end
  if kdx.is_tensor(list) then
    if list:dim() ~= 4 then fail("grid", "a tensor of images must be [N,C,H,W]") end
    local t = list
    list = {}
    for i = 1, t:size(1) do list[i] = t:select(1, i) end
  end
  if type(list) ~= "table" or #list == 0 then fail("grid", "images must be a non-empty list of tensors") end
  local n = #list
  local function posint(name, v, def, min)
    v = v == nil and def or v
    if math.type(v) ~= "integer" or v < min then fail("grid", "%s must be an integer >= %d", name, min) end
    return v
  end
  local ncol = posint("ncol", opts.ncol, math.min(n, 8), 1)
  local pad = posint("pad", opts.pad, 2, 0)
  local scale = posint("scale", opts.scale, 1, 1)
  local fs = posint("font_scale", opts.font_scale, 1, 1)
  local labels = opts.labels
  if labels ~= nil and type(labels) ~= "table" then fail("grid", "labels must be a list of strings") end
  if labels and #labels > n then fail("grid", "%d labels for %d images", #labels, n) end

  local tiles, tw, th = grid_tiles(list, scale)
  local lh, cw = 0, tw
  if labels then
    for i = 1, n do
      if labels[i] ~= nil then
        local w, h = M.text_size(tostring(labels[i]), fs)
        cw, lh = math.max(cw, w), math.max(lh, h + 2)
      end
    end
  end
  local ch = lh + th
  local nrow = (n + ncol - 1) // ncol
  local H, W = nrow * ch + (nrow + 1) * pad, ncol * cw + (ncol + 1) * pad
  local canvas = kdx.ones{3, H, W} * colour(opts.background or 1, 3, "grid", "background")
  local ink = opts.text_color or 0
  for i, x in ipairs(tiles) do
    local r, c = (i - 1) // ncol, (i - 1) % ncol
    local cx, cy = pad + c * (cw + pad) + 1, pad + r * (ch + pad) + 1
    if labels and labels[i] ~= nil then
      local text = tostring(labels[i])
      local w = M.text_size(text, fs)
      M.draw_text(canvas, text, cx + (cw - w) // 2, cy, {scale = fs, color = ink})
    end
    local h, w = x:size(2), x:size(3)
    canvas:narrow(2, cy + lh, h):narrow(3, cx + (cw - w) // 2, w):copy_(x)
  end
  return canvas
end

return M
