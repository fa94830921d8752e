--- kdx.data: datasets and loaders. A dataset holds `x` [N, ...], `y` (int64
-- [N], 1-based classes) and optionally `classes` (names); a DataLoader yields
-- shuffled, seeded batches gathered in C.
-- @module kdx.data

local kdx = require "kdx"
local core = require "kdx.core"

local M = {}

-- ---------------------------------------------------------------- Dataset --

local Dataset = {}
Dataset.__index = Dataset
M.Dataset = Dataset

--- Dataset(x, y, {classes = {...}, feature_names = {...}}).
function M.dataset(x, y, meta)
  if not kdx.is_tensor(x) or x:dim() < 1 then error("kdx.data.dataset: x must be a tensor [N, ...]", 2) end
  if y ~= nil and (not kdx.is_tensor(y) or y:dim() < 1 or y:size(1) ~= x:size(1)) then
    error(("kdx.data.dataset: y must be a tensor with %d entries"):format(x:size(1)), 2)
  end
  local ds = setmetatable({x = x, y = y}, Dataset)
  for k, v in pairs(meta or {}) do ds[k] = v end
  return ds
end

--- Number of samples.
function Dataset:size() return self.x:size(1) end
Dataset.__len = Dataset.size

--- The samples at the 1-based indices (an int64 tensor or a table), as a new dataset.
function Dataset:subset(indices)
  local sub = setmetatable({}, Dataset)
  for k, v in pairs(self) do sub[k] = v end
  sub.x = self.x:index_select(1, indices)
  if self.y then sub.y = self.y:index_select(1, indices) end
  return sub
end

--- Splits into (first, second) with `fraction` of the samples in the first,
-- after a shuffle seeded by `seed` (default 0).
function Dataset:split(fraction, seed)
  local n = self:size()
  local k = math.floor(n * fraction + 0.5)
  local perm = M.permutation(n, seed or 0)
  return self:subset(perm:narrow(1, 1, k)), self:subset(perm:narrow(1, k + 1, n - k))
end

--- Normalises x in place as (x - mean) / std; mean and std default to
-- statistics over all of x (compute them on the training part and pass them
-- to the test part). Returns mean, std.
function Dataset:normalize(mean, std)
  mean = mean or self.x:mean():item()
  std = std or self.x:std():item()
  kdx.no_grad(function() self.x:sub_(mean):div_(std) end)
  return mean, std
end

--- A permutation of 1..n from seed, leaving the global generator as it was.
function M.permutation(n, seed)
  local state = kdx.get_rng_state()
  kdx.manual_seed(seed)
  local p = kdx.randperm(n)
  kdx.set_rng_state(state)
  return p
end

-- ------------------------------------------------------------- DataLoader --

local DataLoader = {}
DataLoader.__index = DataLoader

--- DataLoader(ds, {batch_size = 64, shuffle = false, seed = 0, drop_last = false, transform = fn(x) -> x}).
-- Each :iter() is one epoch; with shuffle, epoch e uses seed + e.
function M.DataLoader(ds, opts)
  opts = opts or {}
  if getmetatable(ds) ~= Dataset then error("kdx.data.DataLoader: expects a kdx.data dataset", 2) end
  local bs = opts.batch_size or 64
  if math.type(bs) ~= "integer" or bs < 1 then error("kdx.data.DataLoader: batch_size must be a positive integer", 2) end
  return setmetatable({dataset = ds, batch_size = bs, shuffle = opts.shuffle or false, seed = opts.seed or 0,
    drop_last = opts.drop_last or false, transform = opts.transform, epoch = 0}, DataLoader)
end

--- Number of batches per epoch.
function DataLoader:__len()
  local n = self.dataset:size()
  return self.drop_last and n // self.batch_size or (n + self.batch_size - 1) // self.batch_size
end

--- Iterator over (x, y) batches of one epoch.
function DataLoader:iter()
  self.epoch = self.epoch + 1
  local ds, bs, n = self.dataset, self.batch_size, self.dataset:size()
  local order = self.shuffle and M.permutation(n, self.seed + self.epoch) or nil
  local at = 1
  return function()
    if at > n or (self.drop_last and at + bs - 1 > n) then return nil end
    local len = math.min(bs, n - at + 1)
    local x, y
    if order then
      local idx = order:narrow(1, at, len)
      x = ds.x:index_select(1, idx)
      y = ds.y and ds.y:index_select(1, idx)
    else
      x = ds.x:narrow(1, at, len):contiguous()
      y = ds.y and ds.y:narrow(1, at, len)
    end
    at = at + len
    if self.transform then x = self.transform(x) end
    return x, y
  end
end

-- --------------------------------------------------------------- readers --

--- Reads an IDX file (plain or .gz) into a tensor: integers as int64 (float32 with as_float), floats as they are.
function M.idx(path, as_float)
  if type(path) ~= "string" then error("kdx.data.idx: path must be a string", 2) end
  return core._read_idx(path, as_float)
end

M.FASHION_MNIST_CLASSES = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
  "Bag", "Ankle boot"}

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Fashion-MNIST from dir (default /usr/share/datasets/fashion-mnist, Debian's
-- dataset-fashion-mnist): train, test datasets with x float32 [N, 1, 28, 28]
-- in [0, 1], y int64 classes 1..10 and class names.
function M.fashion_mnist(dir)
  dir = dir or "/usr/share/datasets/fashion-mnist"
  local function file(stem)
    for _, name in ipairs{stem .. ".gz", stem} do
      if exists(dir .. "/" .. name) then return dir .. "/" .. name end
    end
    error(("kdx.data.fashion_mnist: %s/%s(.gz) not found; install it with `sudo apt-get install " ..
      "dataset-fashion-mnist` (or `scripts/deps.sh --data`)"):format(dir, stem), 3)
  end
  local function load(prefix)
    local x = M.idx(file(prefix .. "-images-idx3-ubyte"), true)
    local y = M.idx(file(prefix .. "-labels-idx1-ubyte"))
    kdx.no_grad(function() x:div_(255) end)
    kdx.no_grad(function() y:add_(1) end)
    return M.dataset(x:reshape{x:size(1), 1, 28, 28}, y, {classes = M.FASHION_MNIST_CLASSES})
  end
  return load("train"), load("t10k")
end

-- Image input/output and transforms live in their own files; their
-- functions are reached through kdx.data as well (kdx.data.image,
-- kdx.data.save_png, kdx.data.transforms, ...).
local function part(name)
  if not package.searchpath(name, package.path) then return nil end
  return require(name) -- errors in the part propagate
end

setmetatable(M, {
  __index = function(t, key)
    if key == "transforms" then
      local tr = part("kdx.data.transforms")
      rawset(t, key, tr)
      return tr
    end
    local images = part("kdx.data.images")
    if images and images[key] ~= nil then
      rawset(t, key, images[key])
      return images[key]
    end
  end,
})

return M
