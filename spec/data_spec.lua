-- kdx.data: the CSV reader, the bundled datasets, Fashion-MNIST, Dataset
-- methods and the DataLoader. Checksums and the expected reading of the CSV
-- fixtures come from an independent decoder, spec/fixtures/gen_data.py.
local kdx = require "kdx"
local data = kdx.data
local golden = dofile("spec/fixtures/data/golden.lua")

local FIX = "spec/fixtures/data/"

-- ------------------------------------------------------------------ helpers --

local tmpfiles = {}

-- A temporary file holding s; removed in teardown.
local function tmpfile(s, suffix)
  local name = os.tmpname() .. (suffix or ".csv")
  local f = assert(io.open(name, "wb"))
  f:write(s)
  f:close()
  tmpfiles[#tmpfiles + 1] = name
  return name
end

local function cleanup()
  for _, name in ipairs(tmpfiles) do os.remove(name) end
  tmpfiles = {}
end

-- The error message of fn(...), which must fail.
local function err(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(msg)
end

-- Asserts that s contains every plain string in the list.
local function contains(s, ...)
  for _, part in ipairs{...} do
    assert(s:find(part, 1, true), ("%q\ndoes not contain\n%q"):format(s, part))
  end
end

local function close(got, want, rel)
  local tol = (rel or 1e-12) * math.max(1, math.abs(want))
  assert(math.abs(got - want) <= tol, ("%.17g differs from %.17g"):format(got, want))
end

-- The checksums gen_data.py computes, of a float64 x [N, F] and 1-based y [N].
local function checksums(x, y)
  local n, f = x:size(1), x:size(2)
  local rows = kdx.arange(1, n + 1, 1, "float64")
  local cols = kdx.arange(1, f + 1, 1, "float64")
  return {
    sum = x:sum():item(),
    sumsq = (x * x):sum():item(),
    rowsum = (x:sum(2) * rows):sum():item(),
    colsum = (x:sum(1) * cols):sum():item(),
    ysum = (y:to("float64") * rows):sum():item(),
  }
end

-- An id per sample (x [N, 1] holding 1..N, y cycling over k classes).
local function id_dataset(n, k)
  local x = kdx.arange(1, n + 1, 1, "float32"):reshape{n, 1}
  local y = {}
  for i = 1, n do y[i] = (i - 1) % (k or 3) + 1 end
  return data.dataset(x, kdx.tensor(y, "int64"), {classes = {"a", "b", "c"}})
end

local function ids(ds)
  local out = {}
  for i, row in ipairs(ds.x:totable()) do out[i] = math.tointeger(row[1]) end
  return out
end

-- ---------------------------------------------------------------------- csv --

describe("kdx.data.csv", function()
  after_each(cleanup)

  describe("reading", function()
    local q = golden.quoting

    it("reads quoted fields, CRLF endings, blank lines and a BOM as Python's csv module does", function()
      local ds = data.csv(FIX .. "quoting.csv", {dtype = "float64"})
      assert.are.same(q.x, ds.x:totable())
      assert.are.same(q.feature_names, ds.feature_names)
      assert.are.equal(q.label_name, ds.label_name)
      assert.are.same(q.sorted_order, ds.classes)
    end)

    it("numbers string classes by sorted value, or by first appearance with order = \"first\"", function()
      local ds = data.csv(FIX .. "quoting.csv")
      local want = {}
      for i, name in ipairs{"plain", "two\nlines", "comma, inside", "plain"} do
        for k, c in ipairs(ds.classes) do
          if c == name then want[i] = k end
        end
      end
      assert.are.same(want, ds.y:totable())
      local first = data.csv(FIX .. "quoting.csv", {order = "first"})
      assert.are.same(q.first_order, first.classes)
      assert.are.same({1, 2, 3, 1}, first.y:totable())
    end)

    it("reads a gzip-compressed file the same as the plain one", function()
      local a = data.csv(FIX .. "quoting.csv", {dtype = "float64"})
      local b = data.csv(FIX .. "quoting.csv.gz", {dtype = "float64"})
      assert.are.same(a.x:totable(), b.x:totable())
      assert.are.same(a.y:totable(), b.y:totable())
      assert.are.same(a.classes, b.classes)
    end)

    it("gives float32 x by default and int64 y of 1-based classes", function()
      local ds = data.csv(FIX .. "quoting.csv")
      assert.are.equal("float32", ds.x:dtype())
      assert.are.equal("int64", ds.y:dtype())
      assert.are.same({4, 3}, ds.x:shape())
    end)

    it("takes the label column by name, by 1-based position or from the end", function()
      local path = tmpfile("a,b,c\n1,x,2\n3,y,4\n")
      for _, label in ipairs{"b", 2, -2} do
        local ds = data.csv(path, {label = label, dtype = "float64"})
        assert.are.same({{1, 2}, {3, 4}}, ds.x:totable())
        assert.are.same({"a", "c"}, ds.feature_names)
        assert.are.equal("b", ds.label_name)
        assert.are.same({"x", "y"}, ds.classes)
      end
    end)

    it("reads every column as a feature with label = false", function()
      local ds = data.csv(tmpfile("a,b\n1,2\n3,4\n"), {label = false})
      assert.are.same({2, 2}, ds.x:shape())
      assert.is_nil(ds.y)
      assert.is_nil(ds.classes)
    end)

    it("sorts integer labels numerically (10 after 9) and keeps their text as class names", function()
      local ds = data.csv(tmpfile("x,y\n1,10\n2,9\n3,-1\n4,9\n"))
      assert.are.same({"-1", "9", "10"}, ds.classes)
      assert.are.same({3, 2, 1, 2}, ds.y:totable())
    end)

    it("numbers the classes as a given list, which may name classes the file lacks", function()
      local ds = data.csv(tmpfile("x,y\n1,b\n2,a\n"), {classes = {"c", "b", "a"}})
      assert.are.same({"c", "b", "a"}, ds.classes)
      assert.are.same({2, 3}, ds.y:totable())
    end)

    it("reads without a header, with another delimiter and after skipped lines", function()
      local ds = data.csv(tmpfile("# written by hand\n# 2 rows\n1;2;p\n3;4;q\n"),
        {header = false, delimiter = ";", skip = 2, dtype = "float64"})
      assert.are.same({{1, 2}, {3, 4}}, ds.x:totable())
      assert.is_nil(ds.feature_names)
      local tab = data.csv(tmpfile("a\tb\n1.5\t2\n"), {delimiter = "\t", label = false, dtype = "float64"})
      assert.are.same({{1.5, 2}}, tab.x:totable())
    end)

    it("parses numbers exactly: signs, exponents, spaces around, nan and inf", function()
      local ds = data.csv(tmpfile("a,b,c,d,e,y\n -1.25e-3 ,+7,.5,nan,-Infinity,0\n"), {dtype = "float64"})
      local row = ds.x:totable()[1]
      assert.are.equal(-1.25e-3, row[1])
      assert.are.equal(7, row[2])
      assert.are.equal(0.5, row[3])
      assert.is_true(row[4] ~= row[4])
      assert.are.equal(-math.huge, row[5])
    end)

    it("ignores empty lines anywhere and a missing final newline", function()
      local ds = data.csv(tmpfile("\n\na,y\n\n1,p\n   \n2,q"))
      assert.are.equal(2, ds:size())
    end)

    it("accepts old Mac CR line endings", function()
      local ds = data.csv(tmpfile("a,y\r1,p\r2,q\r"))
      assert.are.equal(2, ds:size())
    end)
  end)

  describe("errors", function()
    local function csv_err(text, opts)
      local path = tmpfile(text)
      return err(data.csv, path, opts), path
    end

    it("names the line, column and text of a bad cell", function()
      local msg, path = csv_err("a,b,y\n1,2,p\n3,4x,q\n")
      contains(msg, "kdx.data.csv: " .. path .. ": line 3, column 2 (b): '4x' is not a number")
    end)

    it("blames the caller's line", function()
      local ok, msg = pcall(function() data.csv(tmpfile("a,y\nz,p\n")) end)
      assert.is_false(ok)
      assert.truthy(msg:match("^spec/data_spec%.lua:%d+: kdx%.data%.csv: "), msg)
    end)

    it("counts physical lines, past blank lines and quoted line breaks", function()
      local msg = csv_err('a,y\n\n1,"multi\nline"\n\n2x,p\n', {})
      contains(msg, "line 6, column 1 (a): '2x' is not a number")
    end)

    it("numbers columns without a header too", function()
      contains(csv_err("1,2,p\n3,abc,q\n", {header = false}), "line 2, column 2: 'abc' is not a number")
    end)

    it("refuses an empty cell", function()
      contains(csv_err("a,b,y\n1,,p\n"), "line 2, column 2 (b): empty cell")
    end)

    it("refuses a number out of the float64 range", function()
      contains(csv_err("a,y\n1e999,p\n"), "'1e999' is out of the float64 range")
    end)

    it("shows unprintable and non-UTF-8 bytes of a bad cell escaped", function()
      contains(csv_err("a,y\n1\1\255,p\n"), "'1\\x01\\xff' is not a number")
    end)

    it("refuses a ragged row", function()
      contains(csv_err("a,b,y\n1,2,p\n3,q\n"), "line 3 has 2 fields, expected 3 as in the header on line 1")
      contains(csv_err("1,2,p\n3,4,q,5\n", {header = false}), "line 2 has 4 fields, expected 3 as on line 1")
    end)

    it("refuses a label column that is not there", function()
      contains(csv_err("a,b\n1,2\n", {label = 3}), "label column 3 is out of range: the file has 2 columns")
      contains(csv_err("a,b\n1,2\n", {label = -3}), "label column -3 is out of range: the file has 2 columns")
      contains(err(data.csv, tmpfile("a,b\n1,2\n"), {label = 0}), "label column 0 is out of range")
    end)

    it("names the columns when the label name is unknown", function()
      contains(csv_err("sepal,petal,species\n1,2,x\n", {label = "specis"}),
        "no column named 'specis' (the header has: sepal, petal, species)")
      contains(csv_err("a,b\n1,2\n", {label = "a", header = false}), "needs a header")
    end)

    it("refuses a label missing from the given classes", function()
      contains(csv_err("a,y\n1,p\n2,z\n", {classes = {"p", "q"}}), "line 3, column 2 (y): label 'z' is not one of the given classes")
    end)

    it("refuses an empty file, a header without rows, and a file of blank lines", function()
      contains(csv_err(""), "the file is empty")
      contains(csv_err("\n\r\n  \n"), "the file is empty")
      contains(csv_err("a,b,y\n\n"), "no data rows after the header")
      contains(csv_err("a,y\n", {skip = 3}), "nothing after the 3 skipped lines")
    end)

    it("refuses bad quoting", function()
      contains(csv_err('a,y\n1,"open\n2,p\n'), 'line 2, column 2: the quoted field never ends')
      contains(csv_err('a,y\n1,"p"q\n'), "line 2, column 2: text after the closing quote")
      contains(csv_err('a,y\n1,p"q\n'), "line 2, column 2: a quote inside an unquoted field")
    end)

    it("refuses a truncated or damaged gzip file", function()
      contains(err(data.csv, FIX .. "truncated.csv.gz"), "truncated.csv.gz: the gzip data end early")
      contains(err(data.csv, FIX .. "corrupt.csv.gz"), "corrupt.csv.gz:", "corrupt gzip data")
    end)

    it("refuses binary junk and text that is not UTF-8, without crashing", function()
      contains(err(data.csv, FIX .. "junk.bin"), "contains a NUL byte")
      contains(err(data.csv, FIX .. "latin1.csv"), "line 1, column 1: the header name is not valid UTF-8")
      contains(err(data.csv, FIX .. "latin1.csv", {header = false, label = 1}), "line 1, column 1: the label is not valid UTF-8")
      for _, opts in ipairs{{}, {header = false}, {header = false, label = 1}, {delimiter = "a"}} do
        contains(err(data.csv, FIX .. "noise.csv", opts), "kdx.data.csv: ")
      end
    end)

    it("names a file that cannot be opened", function()
      contains(err(data.csv, "/nonexistent/x.csv"), "kdx.data.csv: cannot open /nonexistent/x.csv: No such file")
    end)

    it("checks its options", function()
      local path = tmpfile("a,y\n1,p\n")
      contains(err(data.csv, path, {delimiter = ",,"}), "option 'delimiter' must be one character")
      contains(err(data.csv, path, {delimiter = '"'}), "the delimiter cannot be a quote")
      contains(err(data.csv, path, {order = "random"}), "option 'order' must be \"sorted\" or \"first\"")
      contains(err(data.csv, path, {dtype = "int64"}), "dtype must be \"float32\" or \"float64\"")
      contains(err(data.csv, path, {label = true}), "option 'label' may be false")
      contains(err(data.csv, path, {label = 1.5}), "option 'label' must be an integer")
      contains(err(data.csv, path, {skip = -1}), "option 'skip' must be >= 0")
      contains(err(data.csv, path, {classes = {"p", "p"}}), "class 'p' is given twice")
      contains(err(data.csv, path, {classes = {"p", 2}}), "classes[2] must be a string")
      contains(err(data.csv, 42), "path must be a string")
      contains(err(data.csv, path, {labels = "y"}), "kdx.data.csv: unknown option 'labels' (options: classes, ")
    end)
  end)
end)

-- ---------------------------------------------------------- bundled sets --

describe("bundled datasets", function()
  local sizes = {digits = {1438, 359}, iris = {120, 30}, wine = {142, 36}, breast_cancer = {455, 114}}

  for _, name in ipairs{"digits", "iris", "wine", "breast_cancer"} do
    local want = golden.bundled[name]

    describe(name .. "()", function()
      it("loads whole with the right size, class counts, names and values", function()
        local ds = data[name]{full = true, dtype = "float64"}
        assert.are.equal(want.n, ds:size())
        assert.are.same(want.counts, ds:class_counts())
        assert.are.same(want.classes, ds.classes)
        assert.are.same(want.feature_names, ds.feature_names)
        local x = ds.x:reshape{want.n, want.f}
        local got = checksums(x, ds.y)
        for _, key in ipairs{"sum", "sumsq", "rowsum", "colsum", "ysum"} do close(got[key], want[key]) end
        assert.are.same(want.first, x:select(1, 1):totable())
        assert.are.same(want["last"], x:select(1, -1):totable())
      end)

      it("splits 80/20 with seed 0 into float32 parts that together are the whole", function()
        local train, test = data[name]()
        assert.are.same(sizes[name], {train:size(), test:size()})
        assert.are.equal("float32", train.x:dtype())
        assert.are.same(want.classes, train.classes)
        local total = train.x:to("float64"):sum():item() + test.x:to("float64"):sum():item()
        close(total, want.sum, 1e-6)
        local again = data[name]()
        assert.are.same(train.y:totable(), again.y:totable())
        local other = data[name]{seed = 1, test_fraction = 0.5}
        assert.are.equal(math.floor(want.n * 0.5 + 0.5), other:size())
      end)
    end)
  end

  it("digits are [N, 1, 8, 8] in [0, 1], digit d as class d + 1", function()
    local train = data.digits()
    assert.are.same({1438, 1, 8, 8}, train.x:shape())
    assert.are.equal(0, train.x:min():item())
    assert.are.equal(1, train.x:max():item())
    assert.are.same({"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, train.classes)
    local full = data.digits{full = true}
    assert.are.equal(1, full.y:get(1)) -- sklearn's first digit is a 0
  end)

  it("checks their options", function()
    contains(err(data.iris, {test_fraction = 2}), "kdx.data.iris: test_fraction must be a number from 0 to 1")
    contains(err(data.wine, {seed = 0.5}), "kdx.data.wine: seed must be an integer")
    contains(err(data.digits, {dtype = "int64"}), "kdx.data.digits: dtype must be")
    contains(err(data.iris, {train_fraction = 0.8}), "kdx.data.iris: unknown option 'train_fraction'")
  end)

  describe("data_dir()", function()
    -- Runs a Lua snippet in a fresh interpreter; returns its output and success.
    local function run(env, lua_path, code)
      local cmd = ("%s LUA_PATH=%q lua5.4 -e %q 2>&1"):format(env, lua_path, code)
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      local ok = p:close()
      return out, ok
    end

    local function copy(from, to)
      local f = assert(io.open(from, "rb"))
      local s = f:read("a")
      f:close()
      f = assert(io.open(to, "wb"))
      f:write(s)
      f:close()
    end

    -- (LD_PRELOAD= : under the sanitizer build, tools such as cp would run with ASan's leak checks.)
    local function tree(layout)
      local root = os.tmpname()
      os.remove(root)
      local mod = root .. "/" .. layout.mod
      local dir = root .. "/" .. layout.data
      assert(os.execute(("LD_PRELOAD= mkdir -p %q %q"):format(mod, dir)))
      copy("lua/kdx/data/init.lua", mod .. "/init.lua")
      for _, name in ipairs{"digits.csv.gz", "iris.csv", "wine_data.csv", "breast_cancer.csv"} do
        copy("data/" .. name, dir .. "/" .. name)
      end
      return root, mod
    end

    it("finds data/ from the repository", function()
      assert.truthy(io.open(data.data_dir() .. "/digits.csv.gz", "rb"))
    end)

    -- The module alone in a temporary install tree: kdx itself still comes from the repository.
    for _, layout in ipairs{
      {what = "make install's $(PREFIX)/share/kdx/data", mod = "share/lua/5.4/kdx/data", data = "share/kdx/data"},
      {what = "LuaRocks' bundled/ beside the module", mod = "lua/kdx/data", data = "lua/kdx/data/bundled"},
    } do
      it("finds " .. layout.what, function()
        local root, mod = tree(layout)
        local path = mod:gsub("/kdx/data$", "") .. "/?/init.lua;" .. os.getenv("PWD") .. "/lua/?.lua;" ..
          os.getenv("PWD") .. "/lua/?/init.lua"
        local out, ok = run("", path, 'local d = require "kdx.data"; print(d.data_dir(), d.iris{full = true}:size())')
        os.execute(("LD_PRELOAD= rm -rf %q"):format(root))
        assert(ok, out)
        contains(out, root, "150")
      end)
    end

    it("follows KDX_DATA_DIR, and says so when the folder is wrong", function()
      local path = os.getenv("PWD") .. "/lua/?.lua;" .. os.getenv("PWD") .. "/lua/?/init.lua"
      local out, ok = run("KDX_DATA_DIR=/nonexistent", path, 'require "kdx".data.iris()')
      assert.is_falsy(ok)
      contains(out, "kdx.data: the bundled data folder was not found (looked in /nonexistent)", "KDX_DATA_DIR")
    end)
  end)
end)

-- ---------------------------------------------------------- Fashion-MNIST --

describe("kdx.data.fashion_mnist", function()
  local dir = "/usr/share/datasets/fashion-mnist"

  it("is installed (make test installs dataset-fashion-mnist)", function()
    local f = io.open(dir .. "/t10k-labels-idx1-ubyte.gz", "rb")
    assert(f, dir .. " is missing: install it with `sudo apt-get install dataset-fashion-mnist` " ..
      "(or `scripts/deps.sh --data`, which `make test` runs)")
    f:close()
  end)

  it("agrees with an independent decoder on pixel sums and class counts", function()
    local train, test = data.fashion_mnist()
    for part, ds in pairs{train = train, test = test} do
      local want = golden.fashion_mnist[part]
      assert.are.equal(want.n, ds:size())
      assert.are.same({want.n, 1, 28, 28}, ds.x:shape())
      assert.are.same(want.counts, ds:class_counts())
      -- per-image sums of v/255 in float32, back to exact integers
      local sums = ds.x:sum({2, 3, 4}):totable()
      local total, rowsum = 0, 0
      for i, s in ipairs(sums) do
        local v = math.floor(s * 255 + 0.5)
        total, rowsum = total + v, rowsum + i * v
      end
      assert.are.equal(want.pixel_sum, total)
      assert.are.equal(want.rowsum, rowsum)
      assert.are.equal(want.first_image_sum, math.floor(sums[1] * 255 + 0.5))
      close((ds.y:to("float64") * kdx.arange(1, want.n + 1, 1, "float64")):sum():item(), want.ysum)
      assert.are.equal("Ankle boot", ds.classes[10])
    end
  end)

  it("says which package to install when the folder is missing", function()
    contains(err(data.fashion_mnist, "/nonexistent"), "/nonexistent/train-images-idx3-ubyte(.gz) not found",
      "apt-get install dataset-fashion-mnist")
  end)
end)

describe("kdx.data.idx", function()
  after_each(cleanup)
  local function be32(n) return string.pack(">I4", n) end

  it("reads a plain IDX file", function()
    local t = data.idx(tmpfile("\0\0\8\2" .. be32(2) .. be32(3) .. "\1\2\3\4\5\6", ".idx"))
    assert.same({2, 3}, t:shape())
    assert.equal(6, t:get(2, 3))
  end)

  -- Found by spec/fuzz/fuzz_idx.c: each was an allocation or an overflow before.
  it("refuses a header that declares more data than the file holds, before allocating it", function()
    contains(err(data.idx, tmpfile("\0\0\8\2" .. be32(60000) .. be32(60000) .. "\1", ".idx")),
      "kdx.data.idx", "declares 3600000000 bytes", "truncated")
  end)

  it("refuses dims whose product overflows, zero-size dims included", function()
    contains(err(data.idx, tmpfile("\0\0\8\3" .. be32(0) .. be32(0xffffffff) .. be32(0xffffffff), ".idx")),
      "kdx.data.idx", "too large")
    contains(err(data.idx, tmpfile("\0\0\8\3" .. be32(0xffffffff) .. be32(0xffffffff) .. be32(0xffffffff), ".idx")),
      "kdx.data.idx", "impossibly large")
    contains(err(kdx.zeros, {0, 1 << 32, 1 << 32}), "too large")
  end)

  it("refuses a file shorter than its header", function()
    contains(err(data.idx, tmpfile("\0\0", ".idx")), "kdx.data.idx", "header")
  end)
end)

-- ------------------------------------------------------------------ Dataset --

describe("kdx.data.Dataset", function()
  it("subset() takes 1-based indices from a table or a tensor and keeps the names", function()
    local ds = id_dataset(10)
    local a = ds:subset{3, 1, 10}
    assert.are.same({3, 1, 10}, ids(a))
    assert.are.same({3, 1, 1}, a.y:totable())
    assert.are.same(ds.classes, a.classes)
    assert.are.same({2, 4}, ids(ds:subset(kdx.tensor({2, 4}, "int64"))))
    assert.are.equal(3, #a)
  end)

  it("split() is reproducible for a seed, disjoint and complete", function()
    local ds = id_dataset(50)
    local a1, b1 = ds:split(0.7, 5)
    local a2, b2 = ds:split(0.7, 5)
    assert.are.same(ids(a1), ids(a2))
    assert.are.same(ids(b1), ids(b2))
    assert.are.same({35, 15}, {a1:size(), b1:size()})
    local seen = {}
    for _, part in ipairs{ids(a1), ids(b1)} do
      for _, id in ipairs(part) do
        assert.is_nil(seen[id])
        seen[id] = true
      end
    end
    for id = 1, 50 do assert.is_true(seen[id]) end
    local a3 = ds:split(0.7, 6)
    assert.are_not.same(ids(a1), ids(a3))
  end)

  it("split() leaves the global generator as it was", function()
    kdx.manual_seed(3)
    local want = kdx.rand{4}:totable()
    kdx.manual_seed(3)
    id_dataset(20):split(0.5, 9)
    assert.are.same(want, kdx.rand{4}:totable())
  end)

  it("split() checks the fraction", function()
    contains(err(id_dataset(4).split, id_dataset(4), 1.5), "fraction must be a number from 0 to 1")
  end)

  it("normalize() applies the training statistics to the test part", function()
    local train = data.dataset(kdx.tensor({{1}, {2}, {3}, {4}}, "float64"))
    local test = data.dataset(kdx.tensor({{5}, {6}}, "float64"))
    local mean, std = train:normalize()
    close(mean, 2.5)
    close(std, math.sqrt(5 / 3))
    test:normalize(mean, std)
    close(test.x:get(1, 1), (5 - 2.5) / math.sqrt(5 / 3))
    close(train.x:mean():item(), 0)
  end)

  it("normalize{per_feature = true} standardises each feature, leaving constant ones centred", function()
    local train = data.dataset(kdx.tensor({{1, 10, 7}, {3, 30, 7}}, "float64"))
    local test = data.dataset(kdx.tensor({{2, 50, 8}}, "float64"))
    local m, s = train:normalize{per_feature = true}
    assert.are.same({{2, 20, 7}}, m:totable())
    assert.are.same({{1, 10, 1}}, s:totable())
    assert.are.same({{-1, -1, 0}, {1, 1, 0}}, train.x:totable())
    test:normalize(m, s)
    assert.are.same({{0, 3, 1}}, test.x:totable())
  end)

  it("class_counts() counts every class, empty ones included", function()
    local ds = data.dataset(kdx.zeros{4, 1}, kdx.tensor({1, 3, 3, 1}, "int64"), {classes = {"a", "b", "c", "d"}})
    assert.are.same({2, 0, 2, 0}, ds:class_counts())
  end)
end)

-- --------------------------------------------------------------- DataLoader --

describe("kdx.data.DataLoader", function()
  local function epoch(loader)
    local out, ys = {}, {}
    for x, y in loader:iter() do
      for _, row in ipairs(x:totable()) do out[#out + 1] = math.tointeger(row[1]) end
      for _, v in ipairs(y:totable()) do ys[#ys + 1] = v end
    end
    return out, ys
  end

  it("keeps the order without shuffle and gathers y with x", function()
    local got, ys = epoch(data.DataLoader(id_dataset(7), {batch_size = 3}))
    assert.are.same({1, 2, 3, 4, 5, 6, 7}, got)
    assert.are.same({1, 2, 3, 1, 2, 3, 1}, ys)
  end)

  it("is deterministic for a seed", function()
    local a = data.DataLoader(id_dataset(30), {batch_size = 4, shuffle = true, seed = 11})
    local b = data.DataLoader(id_dataset(30), {batch_size = 4, shuffle = true, seed = 11})
    assert.are.same(epoch(a), epoch(b))
    assert.are.same(epoch(a), epoch(b))
  end)

  it("shuffles differently in each epoch, each a permutation of all samples", function()
    local loader = data.DataLoader(id_dataset(30), {batch_size = 8, shuffle = true, seed = 2})
    local e1, e2 = epoch(loader), epoch(loader)
    assert.are_not.same(e1, e2)
    for _, e in ipairs{e1, e2} do
      local sorted = {table.unpack(e)}
      table.sort(sorted)
      for i = 1, 30 do assert.are.equal(i, sorted[i]) end
    end
  end)

  it("keeps each y with its x when shuffling", function()
    local ds = id_dataset(20)
    for x, y in data.DataLoader(ds, {batch_size = 6, shuffle = true, seed = 4}):iter() do
      for i, row in ipairs(x:totable()) do assert.are.equal((math.tointeger(row[1]) - 1) % 3 + 1, y:get(i)) end
    end
  end)

  it("counts its batches with #, and drop_last drops the short one", function()
    local ds = id_dataset(10)
    local keep = data.DataLoader(ds, {batch_size = 4})
    local drop = data.DataLoader(ds, {batch_size = 4, drop_last = true})
    assert.are.equal(3, #keep)
    assert.are.equal(2, #drop)
    local sizes = {}
    for x in drop:iter() do sizes[#sizes + 1] = x:size(1) end
    assert.are.same({4, 4}, sizes)
    assert.are.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, (epoch(keep)))
  end)

  it("applies the transform to each batch", function()
    local loader = data.DataLoader(id_dataset(4), {batch_size = 2, transform = function(x) return x * 10 end})
    assert.are.same({10, 20, 30, 40}, (epoch(loader)))
  end)

  it("checks its arguments", function()
    contains(err(data.DataLoader, {}, {}), "expects a kdx.data dataset")
    contains(err(data.DataLoader, id_dataset(3), {batch_size = 0}), "batch_size must be a positive integer")
    contains(err(data.DataLoader, id_dataset(3), {batchsize = 4}), "kdx.data.DataLoader: unknown option 'batchsize'")
  end)
end)
