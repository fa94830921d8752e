--- kdx.data.transforms: batched, seeded data augmentation, reached as
-- `kdx.data.transforms`. Each constructor takes an options table and returns
-- a function(x) -> x for a batch x [N,C,H,W] (or one image [C,H,W]) of
-- float32/float64, ready for `kdx.data.DataLoader(ds, {transform = ...})`.
-- Every sample draws its own parameters from kdx's generator, so a
-- `kdx.manual_seed` gives the same batches at any thread count; the kernels
-- are in C (csrc/op_augment.c). The same operations with their parameters
-- given, or returned after a draw, are in `transforms.functional`.
--
--     local T = kdx.data.transforms
--     local augment = T.compose{T.random_crop{padding = 4}, T.hflip{p = 0.5},
--       T.normalize{mean = {0.49, 0.48, 0.45}, std = {0.25, 0.24, 0.26}}}
--
-- These are not differentiable: an x that requires grad is an error unless
-- grad mode is off (kdx.no_grad), where the result has no graph.
-- @module kdx.data.transforms

local core = require "kdx.core"

local M = {}
local F = {}
M.functional = F

-- ------------------------------------------------------------- options --

local HERE = debug.getinfo(1, "S").source

-- Raises msg at the first caller outside this file, so that the user's line
-- is blamed however deep in here the check sits.
local function raise(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info or info.source ~= HERE then break end
    level = level + 1
  end
  error(msg, level)
end

-- Raises "kdx.data.transforms.<name>: <msg>".
local function fail(name, msg, ...)
  raise(("kdx.data.transforms.%s: " .. msg):format(name, ...))
end

-- Calls a kernel of the C core; its errors (which name the transform) are
-- raised again at the user's line instead of this file's.
local function run(kernel, ...)
  local ok, y, params = pcall(kernel, ...)
  if ok then return y, params end
  raise(type(y) == "string" and y:gsub("^.-:%d+: (kdx%.)", "%1") or y)
end

-- The options table (nil: empty), refusing unknown keys (a typo would
-- otherwise silently give a default).
local function options(name, o, allowed)
  if o == nil then return {} end
  if type(o) ~= "table" then
    fail(name, "options must be a table, got %s", type(o))
  end
  for k in pairs(o) do
    if not allowed[k] then
      local keys = {}
      for a in pairs(allowed) do keys[#keys + 1] = a end
      table.sort(keys)
      fail(name, "unknown option '%s' (options: %s)", tostring(k), table.concat(keys, ", "))
    end
  end
  return o
end

local function set(...)
  local s = {}
  for _, k in ipairs{...} do s[k] = true end
  return s
end

local function is_num(v) return type(v) == "number" and v == v end

-- A number option in [lo, hi].
local function number(name, o, key, def, lo, hi)
  local v = o[key]
  if v == nil then return def end
  if not is_num(v) or v < lo or v > hi then
    fail(name, "%s must be a number in [%g, %g], got %s", key, lo, hi, tostring(v))
  end
  return v
end

-- A pair option: a number n (both entries n, or {-n, n} when symmetric) or
-- {a, b}; entries checked by ok(v) described as what; ordered when range.
local function pair(name, o, key, def, what, ok, symmetric, range)
  local v = o[key]
  if v == nil then return def[1], def[2] end
  local a, b
  if type(v) == "number" then
    if symmetric then a, b = -v, v else a, b = v, v end
    if symmetric and not (v >= 0) then
      fail(name, "%s must be >= 0 (or a range {lo, hi}), got %s", key, tostring(v))
    end
  elseif type(v) == "table" and #v == 2 then
    a, b = v[1], v[2]
  else
    fail(name, "%s must be a number or a pair {%s}, got %s", key, what,
      type(v) == "table" and ("a table of " .. #v) or tostring(v))
  end
  if not ok(a) or not ok(b) or (range and a > b) then
    fail(name, "%s must be {%s}%s, got {%s, %s}", key, what, range and " with lo <= hi" or "", tostring(a),
      tostring(b))
  end
  return a, b
end

local function nonneg_int(v) return math.type(v) == "integer" and v >= 0 end
local function pos_int(v) return math.type(v) == "integer" and v >= 1 end
local function finite(v) return is_num(v) and v > -math.huge and v < math.huge end
local function fraction(v) return is_num(v) and v >= 0 and v <= 1 end
local function positive(v) return finite(v) and v > 0 end

-- A number, a list of numbers, or "random" (when allowed).
local function values(name, key, v, allow_random)
  if allow_random and v == "random" then return v end
  if is_num(v) then return v end
  if type(v) == "table" and #v >= 1 then
    for i = 1, #v do
      if not is_num(v[i]) then
        fail(name, "%s[%d] must be a number, got %s", key, i, tostring(v[i]))
      end
    end
    return v
  end
  fail(name, "%s must be a number or a list of numbers%s, got %s", key, allow_random and ' or "random"' or "",
    tostring(v))
end

-- ---------------------------------------------------------- random crop --

local CROP = set("padding", "size", "fill")

local function crop_opts(name, o)
  o = options(name, o, CROP)
  local ph, pw = pair(name, o, "padding", {0, 0}, "h, w integers >= 0", nonneg_int)
  local sh, sw = pair(name, o, "size", {0, 0}, "h, w integers >= 1", pos_int)
  local fill = o.fill
  if fill ~= nil and not finite(fill) then fail(name, "fill must be a finite number, got %s", tostring(fill)) end
  return ph, pw, sh, sw, fill or 0
end

--- random_crop{padding = 0, size = nil, fill = 0}: pads each sample by
-- `padding` (an integer or {h, w}) filled with `fill`, then crops `size`
-- (an integer or {h, w}; default: the input's H x W) at a random place, as
-- torchvision's RandomCrop(size, padding).
function M.random_crop(o)
  local ph, pw, sh, sw, fill = crop_opts("random_crop", o)
  return function(x) return (run(core._aug_random_crop, x, ph, pw, sh, sw, fill, false)) end
end

--- functional.random_crop(x, opts) -> y, offsets: as random_crop, also
-- returning the drawn offsets [N,2] int64 (top, left) into the padded image.
function F.random_crop(x, o)
  local ph, pw, sh, sw, fill = crop_opts("random_crop", o)
  return run(core._aug_random_crop, x, ph, pw, sh, sw, fill, true)
end

--- functional.crop(x, offsets, {padding =, size =, fill =}): the crop at the
-- given offsets [N,2] (top, left; 0 is the padded image's first row/column).
function F.crop(x, offsets, o)
  local ph, pw, sh, sw, fill = crop_opts("functional.crop", o)
  return (run(core._aug_crop, x, offsets, ph, pw, sh, sw, fill))
end

-- ----------------------------------------------------------------- flip --

--- hflip{p = 0.5}: mirrors each sample left to right with probability p.
function M.hflip(o)
  o = options("hflip", o, set("p"))
  local p = number("hflip", o, "p", 0.5, 0, 1)
  return function(x) return (run(core._aug_random_hflip, x, p, false)) end
end

--- functional.random_hflip(x, p) -> y, mask: also returns which samples
-- were flipped (int64 [N] of 0/1).
function F.random_hflip(x, p)
  if p == nil then p = 0.5 end
  if not is_num(p) or p < 0 or p > 1 then
    fail("functional.random_hflip", "p must be in [0, 1], got %s", tostring(p))
  end
  return run(core._aug_random_hflip, x, p, true)
end

--- functional.hflip(x, mask): mirrors the samples whose mask entry is
-- nonzero or true (a tensor or table [N]); all samples when mask is nil.
function F.hflip(x, mask)
  if type(mask) == "table" then
    local m = {}
    for i = 1, #mask do
      local v = mask[i]
      if type(v) == "boolean" then v = v and 1 or 0 end
      m[i] = v
    end
    mask = m
  end
  return (run(core._aug_hflip, x, mask))
end

-- --------------------------------------------------------------- affine --

local function affine_opts(name, o)
  o = options(name, o, set("degrees", "translate", "scale", "fill"))
  local d0, d1 = pair(name, o, "degrees", {0, 0}, "lo, hi finite", finite, true, true)
  local tx, ty = pair(name, o, "translate", {0, 0}, "fx, fy in [0, 1]", fraction)
  local s0, s1 = pair(name, o, "scale", {1, 1}, "lo, hi > 0", positive, false, true)
  local fill = o.fill
  if fill ~= nil and not finite(fill) then fail(name, "fill must be a finite number, got %s", tostring(fill)) end
  return d0, d1, tx, ty, s0, s1, fill or 0
end

--- random_affine{degrees = 0, translate = {0, 0}, scale = {1, 1}, fill = 0}:
-- torchvision's RandomAffine without shear. Per sample an angle uniform in
-- degrees ({lo, hi}, or d for {-d, d}; clockwise on screen, about the
-- centre), a shift uniform within translate = {fraction of W, fraction of H}
-- rounded to whole pixels, and a scale uniform in {lo, hi}; bilinear
-- sampling, pixels from outside the image blend toward fill.
function M.random_affine(o)
  local d0, d1, tx, ty, s0, s1, fill = affine_opts("random_affine", o)
  return function(x) return (run(core._aug_random_affine, x, d0, d1, tx, ty, s0, s1, fill, false)) end
end

--- functional.random_affine(x, opts) -> y, params: also returns the drawn
-- parameters, float64 [N,4] (angle, tx, ty, scale).
function F.random_affine(x, o)
  local d0, d1, tx, ty, s0, s1, fill = affine_opts("random_affine", o)
  return run(core._aug_random_affine, x, d0, d1, tx, ty, s0, s1, fill, true)
end

--- functional.affine(x, params, fill = 0): the warp with params [N,4] (a
-- tensor or nested table of rows {angle, tx, ty, scale}; tx, ty in pixels,
-- right and down, need not be whole).
function F.affine(x, params, fill)
  if fill ~= nil and not finite(fill) then
    fail("functional.affine", "fill must be a finite number, got %s", tostring(fill))
  end
  return (run(core._aug_affine, x, params, fill or 0))
end

-- ---------------------------------------------------------------- noise --

--- noise{std = 0.1}: adds Gaussian noise N(0, std^2) to every element.
function M.noise(o)
  o = options("noise", o, set("std"))
  local std = number("noise", o, "std", 0.1, 0, math.huge)
  return function(x) return (run(core._aug_noise, x, std)) end
end

--- functional.noise(x, std): x + std * N(0, 1).
function F.noise(x, std)
  if not is_num(std) or std < 0 or std == math.huge then
    fail("functional.noise", "std must be a finite number >= 0, got %s", tostring(std))
  end
  return (run(core._aug_noise, x, std))
end

-- -------------------------------------------------------------- erasing --

local function erasing_opts(name, o)
  o = options(name, o, set("p", "scale", "ratio", "value"))
  local p = number(name, o, "p", 0.5, 0, 1)
  local s0, s1 = pair(name, o, "scale", {0.02, 0.33}, "lo, hi in [0, 1]", fraction, false, true)
  local r0, r1 = pair(name, o, "ratio", {0.3, 3.3}, "lo, hi > 0", positive, false, true)
  local value = o.value == nil and 0 or values(name, "value", o.value, true)
  return p, s0, s1, r0, r1, value
end

--- random_erasing{p = 0.5, scale = {0.02, 0.33}, ratio = {0.3, 3.3}, value = 0}:
-- torchvision's RandomErasing. With probability p a sample gets a rectangle
-- whose area is a fraction in scale of the image and whose aspect ratio h/w
-- is log-uniform in ratio (up to 10 tries to fit one inside), filled with
-- value: a number, one number per channel, or "random" (standard normal).
function M.random_erasing(o)
  local p, s0, s1, r0, r1, value = erasing_opts("random_erasing", o)
  return function(x) return (run(core._aug_random_erasing, x, p, s0, s1, r0, r1, value, false)) end
end

--- functional.random_erasing(x, opts) -> y, boxes: also returns the boxes,
-- int64 [N,4] (top, left, h, w), all zero where nothing was erased.
function F.random_erasing(x, o)
  local p, s0, s1, r0, r1, value = erasing_opts("random_erasing", o)
  return run(core._aug_random_erasing, x, p, s0, s1, r0, r1, value, true)
end

--- functional.erase(x, boxes, value = 0): fills boxes [N,4] (top, left, h, w;
-- top = rows above the box, 0-based as an offset; h or w 0: nothing).
function F.erase(x, boxes, value)
  if value == nil then value = 0 end
  return (run(core._aug_erase, x, boxes, values("functional.erase", "value", value, true)))
end

-- ------------------------------------------------------------ normalize --

--- normalize{mean = ..., std = ...}: (x - mean[c]) / std[c] per channel;
-- mean and std are numbers (all channels) or lists of C numbers.
function M.normalize(o)
  o = options("normalize", o, set("mean", "std"))
  if o.mean == nil or o.std == nil then fail("normalize", "needs both mean and std") end
  local mean, std = values("normalize", "mean", o.mean), values("normalize", "std", o.std)
  return function(x) return (run(core._aug_normalize, x, mean, std)) end
end

--- functional.normalize(x, mean, std).
function F.normalize(x, mean, std)
  return (run(core._aug_normalize, x, values("functional.normalize", "mean", mean),
    values("functional.normalize", "std", std)))
end

-- -------------------------------------------------------------- compose --

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

--- compose{t1, t2, ...}: a transform that applies t1, then t2, ... (any
-- functions x -> x, not only these).
function M.compose(list)
  if type(list) ~= "table" then fail("compose", "expects a list of transforms, got %s", type(list)) end
  local ts = {}
  for i = 1, #list do
    if not callable(list[i]) then
      fail("compose", "entry %d must be a function x -> x, got %s", i, type(list[i]))
    end
    ts[i] = list[i]
  end
  return function(x)
    for i = 1, #ts do x = ts[i](x) end
    return x
  end
end

return M
