--- kdx.data.images: images in and out, reached through kdx.data
-- (kdx.data.image, kdx.data.save_png, kdx.data.save_jpg, kdx.data.resize,
-- kdx.data.image_folder). Pixels are float32 tensors [C,H,W] in [0,1];
-- decoding and encoding are stb_image's, in C.
-- @module kdx.data.images

local kdx = require "kdx"
local core = require "kdx.core"

local M = {}

local function check_path(fname, path)
  if type(path) ~= "string" or path == "" then
    error(("kdx.data.%s: path must be a non-empty string, got %s"):format(fname, type(path)), 3)
  end
end

local function check_tensor(fname, t, what)
  if not kdx.is_tensor(t) then
    error(("kdx.data.%s: %s must be a tensor, got %s"):format(fname, what or "t", type(t)), 3)
  end
end

--- t ([C,H,W] or [H,W]) with c channels: gray becomes RGB by repetition, RGB
-- becomes gray by luminance (ITU-R 601: 0.299 R + 0.587 G + 0.114 B), an
-- alpha channel is dropped or added (opaque).
function M.to_channels(t, c)
  check_tensor("to_channels", t)
  if c ~= 1 and c ~= 3 and c ~= 4 then error("kdx.data.to_channels: channels must be 1, 3 or 4", 2) end
  if t:dim() == 2 then t = t:unsqueeze(1) end
  if t:dim() ~= 3 then error("kdx.data.to_channels: t must be [C,H,W] or [H,W]", 2) end
  local have = t:size(1)
  if have < 1 or have > 4 then error(("kdx.data.to_channels: t has %d channels (1 to 4 expected)"):format(have), 2) end
  if have == c then return t end
  local color = have >= 3 and t:narrow(1, 1, 3) or t:narrow(1, 1, 1)
  if c == 1 then
    if color:size(1) == 1 then return color:contiguous() end
    local w = kdx.tensor({0.299, 0.587, 0.114}, color:dtype()):reshape{3, 1, 1}
    return (color * w):sum(1, true)
  end
  if color:size(1) == 1 then color = color:expand{3, t:size(2), t:size(3)} end
  if c == 3 then return color:contiguous() end
  local alpha = (have == 2 or have == 4) and t:narrow(1, have, 1) or kdx.ones({1, t:size(2), t:size(3)}, t:dtype())
  return kdx.cat({color, alpha}, 1)
end

--- Reads an image file (PNG 8/16-bit, JPEG, BMP, TGA, GIF first frame) into
-- float32 [C,H,W] in [0,1]. C is as stored (1 gray, 2 gray+alpha, 3 RGB,
-- 4 RGBA; a GIF reads as RGBA) unless opts.channels (1, 3 or 4) asks for
-- another (see to_channels).
function M.image(path, opts)
  check_path("image", path)
  local t = core._read_image(path)
  if opts and opts.channels then t = M.to_channels(t, opts.channels) end
  return t
end

--- Writes t ([C,H,W] with 1-4 channels, or [H,W]; values in [0,1], clamped) as
-- an 8-bit PNG, replacing path atomically.
function M.save_png(path, t)
  check_path("save_png", path)
  check_tensor("save_png", t)
  core._write_png(path, t)
end

--- Writes t as a baseline JPEG at quality 1..100 (default 90), atomically.
function M.save_jpg(path, t, quality)
  check_path("save_jpg", path)
  check_tensor("save_jpg", t)
  core._write_jpg(path, t, quality)
end

--- Resizes the last two dims of t ([H,W], [C,H,W] or [N,C,H,W]) to h x w,
-- bilinear (as PyTorch's interpolate with align_corners = false). Returns a
-- new tensor.
function M.resize(t, h, w)
  check_tensor("resize", t)
  for _, v in ipairs{h, w} do
    if math.type(v) ~= "integer" or v < 1 then
      error(("kdx.data.resize: h and w must be positive integers, got %s, %s"):format(tostring(h), tostring(w)), 2)
    end
  end
  local nd = t:dim()
  if nd < 2 or nd > 4 then error(("kdx.data.resize: t must be [H,W], [C,H,W] or [N,C,H,W], got %d dims"):format(nd), 2) end
  if t:dtype() == "int64" then t = t:float() end
  if nd == 2 then return kdx.interpolate(t:unsqueeze(1), {size = {h, w}, mode = "bilinear"}):squeeze(1) end
  return kdx.interpolate(t, {size = {h, w}, mode = "bilinear"})
end

-- ------------------------------------------------------------ image folder --

M.IMAGE_EXTENSIONS = {png = true, jpg = true, jpeg = true, bmp = true, tga = true, gif = true}

local function sorted_entries(dir)
  local names = core._listdir(dir)
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do
    if name:sub(1, 1) ~= "." then out[#out + 1] = name end
  end
  return out
end

--- A dataset from a folder with one subfolder per class (classes sorted by
-- name; their files sorted, hidden files and files without an image
-- extension skipped). opts.size = {h, w} (default: the first image's size)
-- and opts.channels (default: 3 if any image has colour, else 1) make every
-- image alike. Returns a kdx.data dataset with x float32 [N,C,h,w], y int64
-- 1-based classes, classes (the subfolder names) and files (the paths).
function M.image_folder(dir, opts)
  check_path("image_folder", dir)
  opts = opts or {}
  if type(opts) ~= "table" then error("kdx.data.image_folder: opts must be a table", 2) end
  local size = opts.size
  if size ~= nil and (type(size) ~= "table" or math.type(size[1]) ~= "integer" or math.type(size[2]) ~= "integer"
      or size[1] < 1 or size[2] < 1) then
    error("kdx.data.image_folder: size must be {h, w} with positive integers", 2)
  end
  if not core._isdir(dir) then error(("kdx.data.image_folder: %s is not a directory"):format(dir), 2) end
  local classes, files, labels, images = {}, {}, {}, {}
  local colour = false
  for _, cls in ipairs(sorted_entries(dir)) do
    local sub = dir .. "/" .. cls
    if core._isdir(sub) then
      classes[#classes + 1] = cls
      for _, name in ipairs(sorted_entries(sub)) do
        local ext = name:match("%.([%w]+)$")
        if ext and M.IMAGE_EXTENSIONS[ext:lower()] then
          local path = sub .. "/" .. name
          local img = core._read_image(path)
          colour = colour or img:size(1) >= 3
          files[#files + 1], labels[#labels + 1], images[#images + 1] = path, #classes, img
        end
      end
    end
  end
  if #classes == 0 then error(("kdx.data.image_folder: %s has no class subfolders"):format(dir), 2) end
  if #images == 0 then error(("kdx.data.image_folder: no images under %s"):format(dir), 2) end
  local c = opts.channels or (colour and 3 or 1)
  local h, w = size and size[1] or images[1]:size(2), size and size[2] or images[1]:size(3)
  for i, img in ipairs(images) do
    img = M.to_channels(img, c)
    if img:size(2) ~= h or img:size(3) ~= w then img = M.resize(img, h, w) end
    images[i] = img
  end
  local x = kdx.stack(images, 1)
  local y = kdx.tensor(labels, "int64")
  return require("kdx.data").dataset(x, y, {classes = classes, files = files})
end

return M
