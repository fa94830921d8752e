-- Checkpoints: kdx.save / kdx.load read and write safetensors files. Round
-- trips keep every value, writes are atomic, a PyTorch-written file loads
-- exactly, and every corrupt file gives a clear error (never a crash).
-- The fixture comes from spec/fixtures/gen_safetensors.py.
local kdx = require "kdx"

-- ------------------------------------------------------------------ helpers --

local function tmpdir()
  local name = os.tmpname()
  os.remove(name)
  assert(os.execute("mkdir '" .. name .. "'"))
  return name
end

local function rmdir(dir)
  os.execute("rm -rf '" .. dir .. "'")
end

local function listdir(dir)
  local names = {}
  local p = io.popen("ls -A '" .. dir .. "'")
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

local function read_bytes(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write_bytes(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- A safetensors file from a header string and data bytes.
local function st_file(header, data, len)
  return string.pack("<i8", len or #header) .. header .. (data or "")
end

-- Same numbers, NaN equal to NaN, and -0.0 distinct from 0.0.
local function same_number(a, b)
  if a ~= a then return b ~= b end
  if a == 0 and b == 0 then return 1 / a == 1 / b end
  return a == b and math.type(a) == math.type(b)
end

local function flat(v, out)
  out = out or {}
  if type(v) == "table" then
    for _, x in ipairs(v) do flat(x, out) end
  else
    out[#out + 1] = v
  end
  return out
end

local function assert_same_tensor(got, want, what)
  assert.are.equal(want:dtype(), got:dtype(), what .. ": dtype")
  assert.are.same(want:shape(), got:shape(), what .. ": shape")
  local g, w = flat(got:totable()), flat(want:totable())
  for i = 1, #w do
    assert(same_number(g[i], w[i]), string.format("%s: element %d is %s, expected %s", what, i, tostring(g[i]),
                                                 tostring(w[i])))
  end
end

-- kdx.load(path) must fail with a message naming the path and containing msg.
local function assert_load_error(path, msg)
  local ok, err = pcall(kdx.load, path)
  assert.is_false(ok, "loading should fail with: " .. msg)
  assert.is_string(err)
  local prefix = "kdx.load: " .. path .. ": "
  assert(err:sub(1, #prefix) == prefix, "message does not start with '" .. prefix .. "': " .. err)
  assert(err:find(msg, 1, true), "message '" .. err .. "' does not contain '" .. msg .. "'")
end

-- ------------------------------------------------------------------- specs --

describe("kdx.save and kdx.load (safetensors)", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  local function roundtrip(tensors, meta)
    local path = dir .. "/rt.safetensors"
    kdx.save(path, tensors, meta)
    return kdx.load(path)
  end

  describe("round trips", function()
    it("keep float32, float64 and int64 values exactly, with NaN, infinities and -0", function()
      local nan, inf = 0 / 0, 1 / 0
      local want = {
        f32 = kdx.tensor({{0.1, -2.5, 3e-8}, {1e38, -0.0, 1e-45}}),
        f32_special = kdx.tensor({nan, inf, -inf}),
        f64 = kdx.tensor({1 / 3, -1e300, 5e-324, -0.0, nan, inf, -inf}, "float64"),
        i64 = kdx.tensor({0, -1, 9007199254740993, math.maxinteger, math.mininteger}, "int64"),
      }
      local got = roundtrip(want)
      for name, t in pairs(want) do assert_same_tensor(got[name], t, name) end
    end)

    it("keep shapes from 0-d to 8-d, and empty tensors", function()
      local want = {
        scalar = kdx.tensor(2.75),
        scalar64 = kdx.tensor(-7, "int64"),
        one = kdx.tensor({5}, "float64"),
        eight = kdx.arange(0, 256):reshape{2, 2, 2, 2, 2, 2, 2, 2},
        empty_row = kdx.zeros({0, 3}),
        empty_col = kdx.zeros({3, 0}, "int64"),
        empty_1d = kdx.zeros({0}, "float64"),
        empty_mid = kdx.zeros({2, 0, 4}),
      }
      local got = roundtrip(want)
      for name, t in pairs(want) do assert_same_tensor(got[name], t, name) end
      local n = 0
      for _ in pairs(got) do n = n + 1 end
      assert.are.equal(8, n)
    end)

    it("write non-contiguous tensors by value (transposed, narrowed, expanded, permuted)", function()
      local base = kdx.arange(1, 13, 1, "float64"):reshape{3, 4}
      local want = {
        transposed = base:t(),
        narrowed = base:narrow(2, 2, 2),
        expanded = kdx.tensor({1, 2, 3}, "int64"):expand{4, 3},
        permuted = kdx.arange(0, 24):reshape{2, 3, 4}:permute{3, 1, 2},
        selected = base:select(2, 3),
      }
      for name, t in pairs(want) do assert.is_false(t:is_contiguous(), name) end
      local got = roundtrip(want)
      for name, t in pairs(want) do
        assert_same_tensor(got[name], t:contiguous(), name)
        assert.is_true(got[name]:is_contiguous())
      end
    end)

    it("give tensors of their own, not views of the saved ones", function()
      local a = kdx.tensor({1, 2, 3})
      local got = roundtrip({a = a})
      a:set(1, 100)
      assert.are.same({1, 2, 3}, got.a:totable())
    end)

    it("save tensors that require grad and load plain leaves", function()
      local w = kdx.randn({2, 3}, "float64"):requires_grad(true)
      local got = roundtrip({w = w:t()})
      assert_same_tensor(got.w, w:t():detach(), "w")
      assert.is_false(got.w:requires_grad())
      assert.is_nil(w.grad)
    end)

    it("keep metadata, with quotes, escapes and UTF-8", function()
      local meta = {epoch = "12", format = "pt", note = 'line\nbreak, "quoted" \\ tab\t \1 é ✓', [""] = "empty key",
                    ["ключ"] = ""}
      local _, got = roundtrip({x = kdx.zeros{1}}, meta)
      assert.are.same(meta, got)
    end)

    it("return an empty metadata table when the file has none", function()
      local t, meta = roundtrip({x = kdx.zeros{1}})
      assert.are.same({}, meta)
      assert.is_true(kdx.is_tensor(t.x))
    end)

    it("save an empty tensors table (metadata only, or nothing)", function()
      local t, meta = roundtrip({}, {a = "b"})
      assert.are.same({}, t)
      assert.are.same({a = "b"}, meta)
      t, meta = roundtrip({})
      assert.are.same({}, t)
      assert.are.same({}, meta)
    end)

    it("keep names with dots, quotes, backslashes, control characters and UTF-8", function()
      local names = {"features.3.weight", 'q"uote', "back\\slash", "new\nline", "\1\31", "ünïcødé ✓", ""}
      local want = {}
      for i, n in ipairs(names) do want[n] = kdx.full({2}, i) end
      local got = roundtrip(want)
      for i, n in ipairs(names) do assert.are.same({i, i}, got[n]:totable(), n) end
    end)

    it("load a state dict saved from a module-like table", function()
      kdx.manual_seed(3)
      local sd = {["0.weight"] = kdx.randn{4, 3}, ["0.bias"] = kdx.zeros{4}, ["2.weight"] = kdx.randn{2, 4},
                  ["2.bias"] = kdx.zeros{2}}
      local got = roundtrip(sd, {arch = "mlp"})
      for k, v in pairs(sd) do assert_same_tensor(got[k], v, k) end
    end)
  end)

  describe("the file layout", function()
    it("is the reference writer's: compact JSON, int64 then float64 then float32, names sorted, 8-byte padding",
      function()
        local path = dir .. "/layout.safetensors"
        kdx.save(path, {b = kdx.zeros{2}, a = kdx.zeros({1}, "float64"), c = kdx.zeros({1}, "int64"),
                        a2 = kdx.zeros{1, 1}}, {z = "1", y = "2"})
        local blob = read_bytes(path)
        local n = string.unpack("<I8", blob)
        assert.are.equal(0, n % 8)
        local header = blob:sub(9, 8 + n)
        assert.are.equal('{"__metadata__":{"y":"2","z":"1"},'
          .. '"c":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},'
          .. '"a":{"dtype":"F64","shape":[1],"data_offsets":[8,16]},'
          .. '"a2":{"dtype":"F32","shape":[1,1],"data_offsets":[16,20]},'
          .. '"b":{"dtype":"F32","shape":[2],"data_offsets":[20,28]}}', (header:gsub(" +$", "")))
        assert.are.equal(8 + n + 28, #blob)
      end)

    it("escapes names and metadata as JSON", function()
      local path = dir .. "/esc.safetensors"
      kdx.save(path, {['a"b\\c\n\1'] = kdx.zeros{0}}, {["k\t"] = "v/é"})
      local blob = read_bytes(path)
      local header = blob:sub(9, 8 + string.unpack("<I8", blob))
      assert.truthy(header:find('"k\\t":"v/é"', 1, true))
      assert.truthy(header:find('"a\\"b\\\\c\\n\\u0001":', 1, true))
    end)
  end)

  describe("atomic writes", function()
    local old
    before_each(function()
      old = dir .. "/model.safetensors"
      kdx.save(old, {w = kdx.tensor({1, 2, 3})}, {version = "old"})
    end)

    local function assert_old_intact()
      local t, meta = kdx.load(old)
      assert.are.same({1, 2, 3}, t.w:totable())
      assert.are.same({version = "old"}, meta)
      assert.are.same({"model.safetensors"}, listdir(dir))
    end

    it("replace an existing file and leave no temporary file", function()
      kdx.save(old, {w = kdx.tensor({4, 5})}, {version = "new"})
      local t, meta = kdx.load(old)
      assert.are.same({4, 5}, t.w:totable())
      assert.are.same({version = "new"}, meta)
      assert.are.same({"model.safetensors"}, listdir(dir))
    end)

    it("leave the old file intact when a value is not a tensor", function()
      assert.has_error(function() kdx.save(old, {w = kdx.zeros{2}, bad = "nope"}) end,
        "kdx.save: tensors['bad'] must be a tensor, got string")
      assert_old_intact()
    end)

    it("leave the old file intact when a metadata value is not a string", function()
      assert.has_error(function() kdx.save(old, {w = kdx.zeros{2}}, {epoch = 3}) end,
        "kdx.save: metadata['epoch'] must be a string, got number (convert it with tostring)")
      assert_old_intact()
    end)

    it("leave the old file intact when the engine refuses the tensors (a reserved name)", function()
      local ok, err = pcall(kdx.save, old, {__metadata__ = kdx.zeros{2}})
      assert.is_false(ok)
      assert.are.equal("kdx.save: " .. old .. ": '__metadata__' is reserved and cannot name a tensor", err)
      assert_old_intact()
    end)

    it("fail cleanly for a path in a missing directory", function()
      local path = dir .. "/missing/model.safetensors"
      local ok, err = pcall(kdx.save, path, {w = kdx.zeros{2}})
      assert.is_false(ok)
      assert.truthy(err:find("kdx.save: " .. path .. ": cannot create the temporary file", 1, true), err)
      assert.truthy(err:find("No such file or directory", 1, true), err)
      assert_old_intact()
    end)

    it("remove the temporary file when the final rename fails", function()
      -- the target is a directory: the temporary is written in full, then
      -- rename() refuses to replace a directory with a file
      local target = dir .. "/adir"
      assert(os.execute("mkdir '" .. target .. "'"))
      local ok, err = pcall(kdx.save, target, {w = kdx.zeros{100}})
      assert.is_false(ok)
      assert.truthy(err:find("kdx.save: " .. target .. ": cannot rename", 1, true), err)
      assert.are.same({"adir", "model.safetensors"}, listdir(dir))
      assert.are.same({}, listdir(target))
    end)
  end)

  describe("a PyTorch-written file", function()
    local fixture = require "fixtures.torch_small"
    local path = "spec/fixtures/torch_small.safetensors"

    it("loads every dtype with the exact values (F16/BF16 to float32, integers and BOOL to int64)", function()
      local got = kdx.load(path)
      local count = 0
      for name, want in pairs(fixture.tensors) do
        count = count + 1
        local t = got[name]
        assert.is_true(kdx.is_tensor(t), name)
        assert.are.equal(want.dtype, t:dtype(), name)
        assert.are.same(want.shape, t:shape(), name)
        local vals = flat(t:totable())
        assert.are.equal(#want.data, #vals, name)
        for i, w in ipairs(want.data) do
          if want.dtype == "int64" then w = math.tointeger(w) end
          assert(same_number(vals[i], w), string.format("%s[%d] (%s): got %s, expected %s", name, i,
                                                        want.file_dtype, tostring(vals[i]), tostring(w)))
        end
      end
      local n = 0
      for _ in pairs(got) do n = n + 1 end
      assert.are.equal(count, n)
    end)

    it("covers subnormal, infinite and NaN halves and bfloat16s", function()
      local got = kdx.load(path)
      local h = got["half.values"]:totable()
      assert.are.equal(2 ^ -24, h[8]) -- the smallest subnormal half
      assert.are.equal(-2 ^ -24, h[9])
      assert.are.equal(2 ^ -15, h[10])
      assert.are.equal(1 / 0, h[12])
      assert.is_true(h[14] ~= h[14])
      local b = got["bf16.values"]:totable()
      assert.is_true(b[7] > 0 and b[7] < 2 ^ -126) -- a subnormal bfloat16
      assert.are.equal(-1 / 0, b[12])
    end)

    it("loads the metadata", function()
      local _, meta = kdx.load(path)
      assert.are.same(fixture.metadata, meta)
    end)

    it("saves back to the same bytes (names and order as the reference writer)", function()
      local t, meta = kdx.load(path)
      -- only the dtypes kdx writes as they were read round-trip byte for byte
      local keep, n = {}, 0
      for name, want in pairs(fixture.tensors) do
        if want.file_dtype == "F32" or want.file_dtype == "F64" or want.file_dtype == "I64" then
          keep[name] = t[name]
          n = n + 1
        end
      end
      assert.is_true(n >= 5)
      local out = dir .. "/resaved.safetensors"
      kdx.save(out, keep, meta)
      local blob = read_bytes(out)
      local header = blob:sub(9, 8 + string.unpack("<I8", blob))
      local order, at = {}, 1
      for _, name in ipairs(fixture.order) do
        if keep[name] then
          local s = header:find('"' .. name .. '":', at, true)
          assert.truthy(s, name)
          order[#order + 1], at = name, s
        end
      end
      assert.are.equal(n, #order)
    end)
  end)

  describe("corrupt files", function()
    local path
    before_each(function() path = dir .. "/bad.safetensors" end)

    -- a valid file: two tensors with data, metadata, padding
    local function valid_blob()
      local p = dir .. "/valid.safetensors"
      kdx.save(p, {a = kdx.tensor({1, 2, 3}), b = kdx.tensor({{7, 8}}, "int64")}, {k = "v"})
      return read_bytes(p)
    end

    it("fail at every truncation point of a valid file, never crashing", function()
      local blob = valid_blob()
      assert.is_true(#blob > 100)
      collectgarbage()
      local live = kdx.debug.live_tensors()
      for len = 0, #blob - 1 do
        write_bytes(path, blob:sub(1, len))
        local ok, err = pcall(kdx.load, path)
        assert(not ok, "a file truncated to " .. len .. " bytes loaded")
        assert(err:find("kdx.load: " .. path .. ": ", 1, true), err)
      end
      collectgarbage()
      assert.are.equal(live, kdx.debug.live_tensors())
      write_bytes(path, blob)
      assert.are.same({{7, 8}}, kdx.load(path).b:totable())
    end)

    it("never crash when any byte of the header is changed", function()
      local blob = valid_blob()
      local n = string.unpack("<I8", blob)
      local loaded = 0
      for i = 1, 8 + n do
        for _, v in ipairs{0, 0x22, 0x5c, 0x7d, 0xff} do
          write_bytes(path, blob:sub(1, i - 1) .. string.char(v) .. blob:sub(i + 1))
          local ok, res = pcall(kdx.load, path)
          if ok then loaded = loaded + 1 else assert.is_string(res) end
        end
      end
      assert.is_true(loaded < 5 * (8 + n))
    end)

    local D = string.rep("\0", 12) -- 12 bytes of data: one float32 [3]
    local cases = {
      -- {description, file bytes, expected fragment of the message}
      {"an empty file", "", "the file has 0 bytes, too short for a safetensors header"},
      {"a file shorter than 8 bytes", "abc", "the file has 3 bytes, too short"},
      {"a header length past the end", st_file('{}', "", 50), "header length 50 runs past the end of the file (10 bytes)"},
      {"a huge header length", st_file('{}', "", -1), "header length 18446744073709551615 is absurd"},
      {"a header length just above 100 MB", st_file('{}', "", 100000001), "header length 100000001 is absurd"},
      {"a zero header length", st_file("", ""), "invalid header JSON: the header must be a JSON object"},
      {"text that is not JSON", st_file("hello"), "invalid header JSON at byte 0: the header must be a JSON object: expected '{', found 'h'"},
      {"a JSON array", st_file("[]"), "expected '{', found '['"},
      {"an unterminated object", st_file('{"a":{"dtype":"F32"'), "expected ',' or '}', found the end of the header"},
      {"a trailing comma", st_file('{"__metadata__":{"a":"b"},}'), "expected a string, found '}'"},
      {"single quotes", st_file("{'a':1}"), "expected a string, found '''"},
      {"a missing colon", st_file('{"a" {}}'), "expected ':'"},
      {"an unterminated string", st_file('{"abc'), "unterminated string"},
      {"an unknown escape", st_file('{"a\\x":{}}'), "unknown escape"},
      {"a bad \\u escape", st_file('{"a\\u12G4":{}}'), "expected 4 hex digits after \\u"},
      {"a lone high surrogate", st_file('{"a\\ud800":{}}'), "expected a low surrogate"},
      {"a lone low surrogate", st_file('{"a\\udc00":{}}'), "a lone low surrogate is not a character"},
      {"an escaped NUL", st_file('{"a\\u0000":{}}'), "\\u0000 is not allowed"},
      {"a raw control character in a string", st_file('{"a\nb":{}}'), "control characters must be escaped"},
      {"invalid UTF-8", st_file('{"a\xff":{}}'), "invalid UTF-8 in a string"},
      {"an overlong UTF-8 form", st_file('{"a\xc0\xaf":{}}'), "invalid UTF-8 in a string"},
      {"garbage after the object", st_file('{} x'), "expected only padding after the header object, found 'x'"},
      {"NUL padding", st_file('{}\0\0'), "expected only padding after the header object, found byte 0x00"},
      {"a null entry", st_file('{"a":null}'), "tensor 'a': the entry must be an object"},
      {"a number entry", st_file('{"a":1}'), "tensor 'a': the entry must be an object"},
      {"a true in a shape", st_file('{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,0]}}'), "expected an integer, found 't'"},
      {"an unknown dtype", st_file('{"a":{"dtype":"Q4","shape":[3],"data_offsets":[0,12]}}', D),
        "tensor 'a': dtype 'Q4' is not supported"},
      {"an unsupported dtype (U64)", st_file('{"a":{"dtype":"U64","shape":[1],"data_offsets":[0,8]}}', "\0\0\0\0\0\0\0\0"),
        "tensor 'a': dtype 'U64' is not supported"},
      {"a dtype that is not a string", st_file('{"a":{"dtype":4,"shape":[3],"data_offsets":[0,12]}}', D), "expected a string, found '4'"},
      {"a missing field", st_file('{"a":{"dtype":"F32","shape":[3]}}', D), "tensor 'a': field 'data_offsets' is missing"},
      {"an unknown field", st_file('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12],"x":1}}', D), "tensor 'a': unknown field 'x'"},
      {"a repeated field", st_file('{"a":{"dtype":"F32","dtype":"F32","shape":[3],"data_offsets":[0,12]}}', D),
        "tensor 'a': field 'dtype' appears twice"},
      {"a float in a shape", st_file('{"a":{"dtype":"F32","shape":[3.0],"data_offsets":[0,12]}}', D), "shape must be an integer"},
      {"an exponent in an offset", st_file('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,1e2]}}', D), "data_offsets must be an integer"},
      {"a negative dim", st_file('{"a":{"dtype":"F32","shape":[-3],"data_offsets":[0,12]}}', D), "shape must not be negative"},
      {"leading zeros", st_file('{"a":{"dtype":"F32","shape":[03],"data_offsets":[0,12]}}', D), "leading zeros are not allowed"},
      {"an integer above 2^63", st_file('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,18446744073709551616]}}', D),
        "data_offsets is too large"},
      {"nine dims", st_file('{"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}}', "\0\0\0\0"),
        "tensor 'a': shape has more than 8 entries"},
      {"a shape too large to hold", st_file('{"a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}'),
        "tensor 'a': shape [4294967296,4294967296,0] is too large"},
      {"three offsets", st_file('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12,12]}}', D), "data_offsets has more than 2 entries"},
      {"one offset", st_file('{"a":{"dtype":"F32","shape":[3],"data_offsets":[12]}}', D), "data_offsets must be [begin, end]"},
      {"offsets that end before they begin", st_file('{"a":{"dtype":"F32","shape":[0],"data_offsets":[12,0]}}', D),
        "data_offsets [12, 0] end before they begin"},
      {"offsets past the end of the data", st_file('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', D),
        "tensor 'a': data_offsets [0, 16] lie past the end of the data (12 bytes)"},
      {"a shape that does not match the offsets", st_file('{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}', D),
        "tensor 'a': shape [2,2] of F32 needs 16 bytes, but data_offsets span 12"},
      {"a dtype size that does not match", st_file('{"a":{"dtype":"F64","shape":[3],"data_offsets":[0,12]}}', D),
        "needs 24 bytes, but data_offsets span 12"},
      {"overlapping tensors", st_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', D),
        "tensor 'b' (bytes 4..12) overlaps tensor 'a' (ending at 8)"},
      {"a gap between tensors", st_file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', D),
        "4 unused bytes in the data before tensor 'b' (at 8)"},
      {"a gap at the start", st_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', D), "4 unused bytes in the data before tensor 'a'"},
      {"unused bytes at the end", st_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', D),
        "the tensors cover 8 bytes of the data, but it has 12"},
      {"data without tensors", st_file('{}', D), "the tensors cover 0 bytes of the data, but it has 12"},
      {"a duplicate tensor name", st_file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', D),
        "tensor name 'a' appears twice"},
      {"a duplicate name spelled with an escape", st_file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0061":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', D),
        "tensor name 'a' appears twice"},
      {"two __metadata__ objects", st_file('{"__metadata__":{},"__metadata__":{}}'), "__metadata__ appears twice"},
      {"a duplicate metadata key", st_file('{"__metadata__":{"k":"1","k":"2"}}'), "__metadata__ key 'k' appears twice"},
      {"a metadata value that is not a string", st_file('{"__metadata__":{"k":1}}'), "__metadata__ value of 'k' must be a string"},
      {"metadata that is not an object", st_file('{"__metadata__":"x"}'), "__metadata__ must be an object of strings"},
    }

    for _, case in ipairs(cases) do
      it("reject " .. case[1], function()
        write_bytes(path, case[2])
        assert_load_error(path, case[3])
      end)
    end

    it("leak no tensors while rejecting them all", function()
      collectgarbage()
      local live = kdx.debug.live_tensors()
      for _, case in ipairs(cases) do
        write_bytes(path, case[2])
        assert.is_false(pcall(kdx.load, path))
      end
      collectgarbage()
      assert.are.equal(live, kdx.debug.live_tensors())
    end)

    it("accept what JSON allows: whitespace, escapes, any field order, unpadded headers", function()
      -- a tensor entry whose fields come in another order, named with an escaped character
      local header = '\n{ "__metadata__" : { "k\\/" : "\\u00e9\\ud83d\\ude00" } ,\t"a\\u0062" : '
        .. '{ "shape" : [ 3 ] , "data_offsets" : [ 0 , 12 ] , "dtype" : "F32" } }\r\n'
      write_bytes(path, st_file(header, string.pack("<fff", 1.5, -2, 0.25)))
      local t, meta = kdx.load(path)
      assert.are.same({1.5, -2, 0.25}, t.ab:totable())
      assert.are.same({["k/"] = "é😀"}, meta)
    end)

    it("report a missing file, a directory and a FIFO (without blocking on it)", function()
      assert_load_error(dir .. "/nope.safetensors", "cannot open: No such file or directory")
      assert_load_error(dir, "not a regular file")
      local fifo = dir .. "/fifo"
      assert(os.execute("mkfifo '" .. fifo .. "'"))
      assert_load_error(fifo, "not a regular file")
    end)
  end)

  describe("argument errors", function()
    it("name the bad argument of kdx.save", function()
      local p = dir .. "/x.safetensors"
      assert.has_error(function() kdx.save(nil, {}) end, "kdx.save: argument 1 (path) must be a string, got nil")
      assert.has_error(function() kdx.save("", {}) end, "kdx.save: the path must be a non-empty string without NULs")
      assert.has_error(function() kdx.save(p) end, "kdx.save: argument 2 (tensors) must be a table, got nil")
      assert.has_error(function() kdx.save(p, {}, "meta") end,
        "kdx.save: argument 3 (metadata) must be a table, got string")
      assert.has_error(function() kdx.save(p, {kdx.zeros{1}}) end,
        "kdx.save: the keys of the tensors table must be strings, got number")
      assert.has_error(function() kdx.save(p, {a = {1, 2}}) end, "kdx.save: tensors['a'] must be a tensor, got table")
      assert.has_error(function() kdx.save(p, {["a\0b"] = kdx.zeros{1}}) end,
        "kdx.save: a key of the tensors table contains a NUL byte")
      assert.has_error(function() kdx.save(p, {a = kdx.zeros{1}}, {[1] = "x"}) end,
        "kdx.save: the keys of the metadata table must be strings, got number")
      assert.has_error(function() kdx.save(p, {a = kdx.zeros{1}}, {k = "a\0b"}) end,
        "kdx.save: metadata['k'] contains a NUL byte")
      local closed
      do
        local c <close> = kdx.zeros{1}
        closed = c
      end
      assert.has_error(function() kdx.save(p, {c = closed}) end, "kdx.save: tensors['c'] is a closed tensor")
      assert.has_error(function() kdx.save(p, {a = kdx.zeros{1}}, {k = "\xff"}) end,
        "kdx.save: " .. p .. ": metadata['k'] is not valid UTF-8")
      assert.has_error(function() kdx.save(p, {["\xc0\xaf"] = kdx.zeros{1}}) end,
        "kdx.save: " .. p .. ": a tensor name is not valid UTF-8")
      assert.are.same({}, listdir(dir))
    end)

    it("name the bad argument of kdx.load", function()
      assert.has_error(function() kdx.load() end, "kdx.load: argument 1 (path) must be a string, got no value")
      assert.has_error(function() kdx.load(3) end, "kdx.load: argument 1 (path) must be a string, got number")
    end)
  end)
end)
