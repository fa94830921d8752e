--- kdx.data: datasets, readers and loaders. A dataset holds `x` [N, ...], `y`
-- (int64 [N], 1-based classes) and optionally `classes` (names) and
-- `feature_names`; a DataLoader yields shuffled, seeded batches gathered in C.
-- Readers: IDX (MNIST's format) and CSV, plain or gzip-compressed. Bundled
-- data (data/ in the repository): digits, iris, wine, breast_cancer.
-- @module kdx.data

local kdx = require "kdx"
local core = require "kdx.core"

local M = {}

-- Refuses option keys outside `allowed` (a set), naming the options there are.
local function check_keys(fname, opts, allowed, level)
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for name in pairs(allowed) do names[#names + 1] = name end
      table.sort(names)
      error(("kdx.data.%s: unknown option '%s' (options: %s)"):format(fname, tostring(k), table.concat(names, ", ")),
        level + 1)
    end
  end
end

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

--- "kdx.data.Dataset(150 samples, x float32 {150,4}, 3 classes)".
function Dataset:__tostring()
  local shape = table.concat(self.x:shape(), ",")
  local classes = self.classes and (", %d classes"):format(#self.classes) or ""
  return ("kdx.data.Dataset(%d samples, x %s {%s}%s)"):format(self:size(), self.x:dtype(), shape, classes)
end

--- The samples at the 1-based indices (an int64 tensor or a table), as a new dataset.
function Dataset:subset(indices)
  local sub = setmetatable({}, Dataset)
  for k, v in pairs(self) do sub[k] = v end
  sub.x = self.x:index_select(1, indices)
  if self.y then sub.y = self.y:index_select(1, indices) end
  return sub
end

--- Splits into (first, second) with `fraction` (0 to 1) of the samples in the
-- first, after a shuffle seeded by `seed` (default 0): the same seed gives the
-- same split on every machine. Not stratified.
function Dataset:split(fraction, seed)
  if type(fraction) ~= "number" or not (fraction >= 0 and fraction <= 1) then
    error(("kdx.data.Dataset:split: fraction must be a number from 0 to 1, got %s"):format(tostring(fraction)), 2)
  end
  if seed ~= nil and math.type(seed) ~= "integer" then error("kdx.data.Dataset:split: seed must be an integer", 2) end
  local n = self:size()
  local k = math.floor(n * fraction + 0.5)
  local perm = M.permutation(n, seed or 0)
  return self:subset(perm:narrow(1, 1, k)), self:subset(perm:narrow(1, k + 1, n - k))
end

--- Normalises x in place as (x - mean) / std and returns mean, std. mean and
-- std are numbers or tensors that broadcast against x ([1, F] for one per
-- feature). Left out, they are computed from x itself: one mean and
-- (unbiased) std over all values, or with `ds:normalize{per_feature = true}`
-- one per feature (over dim 1; population std, and 1 where a feature is
-- constant). Compute them on the training part and pass them to the test part:
-- `local m, s = train:normalize{per_feature = true}; test:normalize(m, s)`.
function Dataset:normalize(mean, std)
  if type(mean) == "table" then
    if not mean.per_feature then return self:normalize() end
    mean = self.x:mean(1, true)
    std = self.x:std(1, false, true)
    std = kdx.where(std:eq(0), 1, std)
  end
  mean = mean or self.x:mean():item()
  std = std or self.x:std():item()
  kdx.no_grad(function() self.x:sub_(mean):div_(std) end)
  return mean, std
end

--- Number of samples of each class: a table {n1, n2, ...} over 1..#classes
-- (or up to the largest label when there are no class names).
function Dataset:class_counts()
  if not self.y then error("kdx.data.Dataset:class_counts: the dataset has no labels", 2) end
  local k = self.classes and #self.classes or (self:size() > 0 and self.y:max():item() or 0)
  local counts = {}
  for c = 1, k do counts[c] = self.y:eq(c):sum():item() end
  return counts
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
local LOADER_OPTS = {batch_size = true, shuffle = true, seed = true, drop_last = true, transform = true}
function M.DataLoader(ds, opts)
  opts = opts or {}
  if getmetatable(ds) ~= Dataset then error("kdx.data.DataLoader: expects a kdx.data dataset", 2) end
  check_keys("DataLoader", opts, LOADER_OPTS, 2)
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

-- Calls a reader in C; its error is raised again at `level` above the
-- caller, so the message names the user's line rather than this file's.
local function read(level, fn, ...)
  local res = table.pack(pcall(fn, ...))
  if not res[1] then error((tostring(res[2]):gsub("^[^\n]-:%d+: (kdx%.)", "%1")), level + 1) end
  return table.unpack(res, 2, res.n)
end

--- Reads an IDX file (plain or .gz) into a tensor: integers as int64 (float32 with as_float), floats as they are.
function M.idx(path, as_float)
  if type(path) ~= "string" then error("kdx.data.idx: path must be a string", 2) end
  return read(2, core._read_idx, path, as_float)
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

local FLOAT_DTYPES = {float32 = true, float = true, f32 = true, float64 = true, double = true, f64 = true}
local CSV_OPTS = {label = true, delimiter = true, header = true, skip = true, dtype = true, order = true, classes = true}

--- Reads a CSV file (plain or .gz) into a dataset {x [N, F], y int64 [N],
-- classes, feature_names, label_name}. Options: `label` (a column name, a
-- 1-based column number, negative from the end; default -1, the last; false:
-- no label and no y), `delimiter` (","), `header` (true), `skip` (lines to
-- skip first, 0), `dtype` of x ("float32" or "float64"), `order` of the
-- classes ("sorted": numerically when every label is an integer, else by
-- text; "first": as they first appear), `classes` (the label values in class
-- order; any other value is an error). Class k is `classes[k]`.
function M.csv(path, opts)
  if type(path) ~= "string" then error("kdx.data.csv: path must be a string", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("kdx.data.csv: opts must be a table", 2) end
  opts = opts or {}
  check_keys("csv", opts, CSV_OPTS, 2)
  local dtype = opts.dtype or "float32"
  if not FLOAT_DTYPES[dtype] then
    error(("kdx.data.csv: dtype must be \"float32\" or \"float64\", got %s"):format(tostring(dtype)), 2)
  end
  local x, y, names, classes, label_name = read(2, core._read_csv, path, opts)
  x = x:to(dtype)
  if y then kdx.no_grad(function() y:add_(1) end) end
  return M.dataset(x, y, {classes = classes, feature_names = names, label_name = label_name})
end

-- --------------------------------------------------------- bundled data --

local data_dir -- found once: the folder holding the bundled files

-- Where the bundled files may be, relative to the folder of this module's
-- init.lua: installed by LuaRocks beside the module, the repository's data/,
-- and `make install`'s $(PREFIX)/share/kdx/data.
local function candidates(moddir, out)
  out[#out + 1] = moddir .. "/bundled"
  out[#out + 1] = moddir .. "/../../../data"
  out[#out + 1] = moddir .. "/../../../../kdx/data"
end

--- The folder of the bundled data files (digits, iris, wine, breast_cancer):
-- $KDX_DATA_DIR if set, else found from this module's own location (then
-- from package.path).
function M.data_dir()
  if data_dir then return data_dir end
  local tried = {}
  local env = os.getenv("KDX_DATA_DIR")
  if env and env ~= "" then
    tried[1] = env
  else
    local src = debug.getinfo(1, "S").source
    if src:sub(1, 1) == "@" then candidates(src:sub(2):match("^(.*)[/\\]") or ".", tried) end
    local found = package.searchpath("kdx.data", package.path)
    if found then candidates(found:match("^(.*)[/\\]") or ".", tried) end
  end
  for _, dir in ipairs(tried) do
    if exists(dir .. "/iris.csv") then
      data_dir = dir
      return dir
    end
  end
  error("kdx.data: the bundled data folder was not found (looked in " .. table.concat(tried, ", ") ..
    "); set KDX_DATA_DIR to the folder holding iris.csv", 3)
end

local function digit_names()
  local t = {}
  for d = 0, 9 do t[#t + 1] = tostring(d) end
  return t
end

local function pixel_names()
  local t = {}
  for r = 0, 7 do
    for c = 0, 7 do t[#t + 1] = ("pixel_%d_%d"):format(r, c) end
  end
  return t
end

-- The bundled files, as scikit-learn ships them: no header (tabular files
-- start with a line "rows,features,class names..."), the label last as an
-- integer 0..K-1. Names follow sklearn.datasets.load_*.
local BUNDLED = {
  digits = {file = "digits.csv.gz", skip = 0, n = 1797, f = 64, classes = digit_names(),
    feature_names = pixel_names()},
  iris = {file = "iris.csv", skip = 1, n = 150, f = 4, classes = {"setosa", "versicolor", "virginica"},
    feature_names = {"sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"}},
  wine = {file = "wine_data.csv", skip = 1, n = 178, f = 13, classes = {"class_0", "class_1", "class_2"},
    feature_names = {"alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
      "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
      "od280/od315_of_diluted_wines", "proline"}},
  breast_cancer = {file = "breast_cancer.csv", skip = 1, n = 569, f = 30, classes = {"malignant", "benign"},
    feature_names = {"mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness",
      "mean compactness", "mean concavity", "mean concave points", "mean symmetry", "mean fractal dimension",
      "radius error", "texture error", "perimeter error", "area error", "smoothness error",
      "compactness error", "concavity error", "concave points error", "symmetry error",
      "fractal dimension error", "worst radius", "worst texture", "worst perimeter", "worst area",
      "worst smoothness", "worst compactness", "worst concavity", "worst concave points", "worst symmetry",
      "worst fractal dimension"}},
}

local function copy(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  return t
end

-- Loads bundled set `name` whole: x [n, f] of opts.dtype, y 1..K, names.
local function load_bundled(name, opts)
  local b = BUNDLED[name]
  local path = M.data_dir() .. "/" .. b.file
  local codes = {}
  for k = 1, #b.classes do codes[k] = tostring(k - 1) end
  local ds = M.csv(path, {header = false, skip = b.skip, label = -1, classes = codes, dtype = opts.dtype})
  if ds:size() ~= b.n or ds.x:size(2) ~= b.f then
    error(("kdx.data.%s: %s holds [%d, %d] values, expected [%d, %d] (a damaged copy?)"):format(name, path,
      ds:size(), ds.x:size(2), b.n, b.f), 3)
  end
  ds.classes, ds.feature_names, ds.label_name = copy(b.classes), copy(b.feature_names), nil
  return ds
end

local BUNDLED_OPTS = {test_fraction = true, seed = true, dtype = true, full = true}
local function check_opts(fname, opts)
  if opts ~= nil and type(opts) ~= "table" then error(("kdx.data.%s: opts must be a table"):format(fname), 3) end
  opts = opts or {}
  check_keys(fname, opts, BUNDLED_OPTS, 3)
  local tf = opts.test_fraction or 0.2
  if type(tf) ~= "number" or not (tf >= 0 and tf <= 1) then
    error(("kdx.data.%s: test_fraction must be a number from 0 to 1"):format(fname), 3)
  end
  if opts.seed ~= nil and math.type(opts.seed) ~= "integer" then
    error(("kdx.data.%s: seed must be an integer"):format(fname), 3)
  end
  if opts.dtype ~= nil and not FLOAT_DTYPES[opts.dtype] then
    error(("kdx.data.%s: dtype must be \"float32\" or \"float64\", got %s"):format(fname, tostring(opts.dtype)), 3)
  end
  return opts, tf
end

-- train, test (or the whole set with opts.full) of a bundled set.
local function bundled(name, opts, shape)
  local tf
  opts, tf = check_opts(name, opts)
  local ds = load_bundled(name, opts)
  if shape then shape(ds) end
  if opts.full then return ds end
  return ds:split(1 - tf, opts.seed or 0)
end

--- scikit-learn's copy of the UCI optical digits (1797 images): train, test
-- datasets with x float32 [N, 1, 8, 8] in [0, 1] (counts 0..16 divided by
-- 16), y 1..10 (digit d is class d + 1; classes "0".."9"). Options:
-- `test_fraction` (0.2: 1438 train, 359 test), `seed` of the split (0),
-- `dtype` ("float32"), `full` (true: the whole set as one dataset).
function M.digits(opts)
  return bundled("digits", opts, function(ds)
    ds.x = ds.x:reshape{ds:size(), 1, 8, 8}
    kdx.no_grad(function() ds.x:div_(16) end)
  end)
end

--- Fisher's iris (150 flowers, 4 features, 3 classes) as train, test datasets
-- (x [N, 4] in centimetres, unscaled). Options as kdx.data.digits.
function M.iris(opts) return bundled("iris", opts) end

--- The UCI wine recognition data (178 wines, 13 features, 3 cultivars) as
-- train, test datasets (x unscaled). Options as kdx.data.digits.
function M.wine(opts) return bundled("wine", opts) end

--- The Wisconsin diagnostic breast cancer data (569 samples, 30 features,
-- classes malignant, benign) as train, test datasets (x unscaled). Options as kdx.data.digits.
function M.breast_cancer(opts) return bundled("breast_cancer", opts) end

--- Words of Debian's word lists labelled by language (lua/kdx/data/words.lua).
function M.words(opts) return require("kdx.data.words").load(opts) end

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
