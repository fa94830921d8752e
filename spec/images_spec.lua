-- Images in and out: fixtures written by Pillow (spec/fixtures/gen_images.py)
-- read back with their known pixel values; PNG and JPEG round trips; corrupt,
-- truncated and empty files give errors, never crashes; resize; image_folder.
local kdx = require "kdx"
local core = require "kdx.core"

local FIX = "spec/fixtures/images/"
local expected = dofile(FIX .. "expected.lua")

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end

local function rmdir(d) os.execute("rm -rf '" .. d .. "'") end

local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function maxdiff(a, b) return (a:double() - b:double()):abs():amax():item() end

-- A random picture whose values are exact 8-bit levels k/255.
local function levels(shape)
  return (kdx.rand(shape) * 255 + 0.5):long():float() / 255
end

describe("kdx.data.image()", function()
  local names = {}
  for name in pairs(expected) do names[#names + 1] = name end
  table.sort(names)

  for _, name in ipairs(names) do
    local e = expected[name]
    local how = e.lossless and "exactly" or "within 4 levels"
    it(("reads %s (%d channels, %d-bit) %s as Pillow wrote it"):format(name, e.c, e.bits, how), function()
      local t = kdx.data.image(FIX .. name)
      assert.are.same({e.c, e.h, e.w}, t:shape())
      assert.are.equal("float32", t:dtype())
      local top = e.bits == 16 and 65535 or 255
      local want = kdx.tensor(e.values, "float64"):reshape{e.c, e.h, e.w}
      local d = maxdiff(t * top, want)
      if e.lossless then assert.is_true(d < 1e-2, name .. ": differs by " .. d) else assert.is_true(d <= 4, name .. ": differs by " .. d) end
      assert.is_true(t:amin():item() >= 0 and t:amax():item() <= 1)
    end)
  end

  it("reads the first frame of an animated GIF", function()
    local t = kdx.data.image(FIX .. "anim.gif")
    local e = expected["anim.gif"]
    assert.are.equal(e.values[1] / 255, t:get(1, 1, 1))
  end)

  it("converts channels on request: gray to RGB, RGBA to RGB, RGB to gray by luminance", function()
    local g = kdx.data.image(FIX .. "gray.png", {channels = 3})
    assert.are.same({3, 4, 5}, g:shape())
    assert.are.equal(0, maxdiff(g:select(1, 1), g:select(1, 3)))
    local rgba = kdx.data.image(FIX .. "rgba.png")
    local rgb = kdx.data.image(FIX .. "rgba.png", {channels = 3})
    assert.are.equal(0, maxdiff(rgb, rgba:narrow(1, 1, 3)))
    local y = kdx.data.image(FIX .. "rgb.png", {channels = 1})
    local want = 0.299 * rgb:get(1, 2, 3) + 0.587 * rgb:get(2, 2, 3) + 0.114 * rgb:get(3, 2, 3)
    assert.is_true(math.abs(y:get(1, 2, 3) - want) < 1e-6)
    local a = kdx.data.image(FIX .. "rgb.png", {channels = 4})
    assert.are.equal(1, a:select(1, 4):amin():item())
  end)

  it("names a missing file and the system's reason", function()
    local ok, err = pcall(kdx.data.image, "/nonexistent/x.png")
    assert.is_false(ok)
    assert.matches("kdx.data.image: cannot open /nonexistent/x.png: No such file or directory", err, 1, true)
  end)

  it("rejects an empty file and a file that is not an image, naming them", function()
    local d = tmpdir()
    write(d .. "/empty.png", "")
    write(d .. "/text.png", "hello, this is not a PNG at all\n")
    local ok, err = pcall(kdx.data.image, d .. "/empty.png")
    assert.is_false(ok)
    assert.matches("empty.png is empty", err, 1, true)
    ok, err = pcall(kdx.data.image, d .. "/text.png")
    assert.is_false(ok)
    assert.matches("text.png is not a readable image (", err, 1, true)
    rmdir(d)
  end)

  it("gives stb's reason for a corrupt PNG", function()
    local d = tmpdir()
    local png = read(FIX .. "rgb.png")
    -- flip the bytes of the compressed data (IDAT starts after the 8-byte signature and the 25-byte IHDR)
    local bad = png:sub(1, 41) .. png:sub(42, 60):gsub(".", function(c) return string.char(255 - c:byte()) end) .. png:sub(61)
    write(d .. "/bad.png", bad)
    local ok, err = pcall(kdx.data.image, d .. "/bad.png")
    assert.is_false(ok)
    assert.matches("kdx.data.image: .*bad.png", err)
    assert.matches("%(.+%)", err)
    rmdir(d)
  end)

  it("refuses a small file that claims a huge picture before decoding it", function()
    local d = tmpdir()
    local png = read(FIX .. "rgb.png")
    local function with_size(w, h) return png:sub(1, 16) .. string.pack(">I4I4", w, h) .. png:sub(25) end
    write(d .. "/huge.png", with_size(10000, 10000))
    local ok, err = pcall(kdx.data.image, d .. "/huge.png")
    assert.is_false(ok)
    assert.matches("declares a 10000x10000 image, more than its 92 bytes can hold", err, 1, true)
    write(d .. "/vast.png", with_size(17000, 17000))
    ok, err = pcall(kdx.data.image, d .. "/vast.png")
    assert.is_false(ok)
    assert.matches("declares a 17000x17000 image (more than 268435456 pixels)", err, 1, true)
    rmdir(d)
  end)

  for _, name in ipairs{"rgb.png", "rgb16.png", "palette.png", "blocks.jpg", "gray.jpg", "rgb.bmp", "gray.bmp",
                        "rgb.tga", "rgba_rle.tga", "anim.gif"} do
    it("refuses every truncation of " .. name .. " that cuts into its pixels", function()
      local d = tmpdir()
      local bytes = read(FIX .. name)
      local e = expected[name]
      local failures = 0
      for n = 0, #bytes - 1 do
        local path = ("%s/cut%d_%s"):format(d, n, name)
        write(path, bytes:sub(1, n))
        local ok, res = pcall(kdx.data.image, path)
        if ok then
          -- only a cut in what follows the pixels (a TGA footer, a BMP row's
          -- padding, a GIF's later frames) may pass, and the pixels are all there
          local want = kdx.tensor(e.values, "float64"):reshape{e.c, e.h, e.w}
          local top = e.bits == 16 and 65535 or 255
          assert.is_true(maxdiff(res * top, want) < 1e-2, name .. " cut to " .. n .. " bytes read as other pixels")
        else
          failures = failures + 1
          assert.matches("kdx.data.image: ", res, 1, true)
          assert.matches(path, res, 1, true)
        end
        os.remove(path)
      end
      assert.is_true(failures > #bytes / 2, name .. ": only " .. failures .. " truncations were refused")
      rmdir(d)
    end)
  end

  -- stb trusts these files and decodes them from memory it never wrote (or
  -- trips an assert); the reader refuses them first.
  describe("refuses a file stb would decode from memory it never wrote:", function()
    local d
    before_each(function() d = tmpdir() end)
    after_each(function() rmdir(d) end)

    local function refuses(name, bytes, message)
      write(d .. "/" .. name, bytes)
      local ok, err = pcall(kdx.data.image, d .. "/" .. name)
      assert.is_false(ok)
      assert.matches("kdx.data.image: " .. d .. "/" .. name .. " " .. message, err, 1, true)
    end

    local function put(bytes, at, byte) return bytes:sub(1, at - 1) .. string.char(byte) .. bytes:sub(at + 1) end

    -- Over 128 bytes, so the missing bytes are asked for by a read straight
    -- into the pixels, after stb's buffer was filled.
    it("a PPM and an uncompressed TGA cut short inside their last row", function()
      local ppm = "P6\n20 4\n255\n" .. ("\x80"):rep(200) -- 240 bytes of pixels wanted
      refuses("cut.ppm", ppm, "is truncated")
      local tga = string.pack("<BBBI2I2BI2I2I2I2BB", 0, 0, 2, 0, 0, 0, 0, 0, 20, 4, 24, 0)
      refuses("cut.tga", tga .. ("\x80"):rep(210), "is truncated") -- rows of 60 bytes: half the last one
    end)

    it("a JPEG whose frame uses a quantisation table no DQT defines", function()
      refuses("dqt.jpg", put(read(FIX .. "gray.jpg"), 25, 1), -- the DQT defines table 1, not 0
        "is a corrupt JPEG: component 1 uses quantisation table 0, which no DQT defines")
    end)

    it("a JPEG whose scan uses a Huffman table no DHT defines", function()
      refuses("dht.jpg", put(read(FIX .. "gray.jpg"), 325, 0x11), -- the scan asks for tables 1
        "is a corrupt JPEG: scan 1 uses DC Huffman table 1, which no DHT defines")
      local prog = read(FIX .. "progressive.jpg")
      refuses("dc.jpg", put(prog, 182, 2), -- DC table 0 becomes 2
        "is a corrupt JPEG: scan 1 uses DC Huffman table 0, which no DHT defines")
      refuses("ac.jpg", put(prog, 260, 0x12), -- AC table 0, sent before scan 2, becomes 2
        "is a corrupt JPEG: scan 2 uses AC Huffman table 0, which no DHT defines")
    end)

    it("a JPEG with a component in no scan", function()
      refuses("noscan.jpg", read(FIX .. "gray.jpg"):sub(1, 318) .. "\xFF\xD9",
        "is a corrupt JPEG: component 1 is in no scan")
    end)

    -- An 8-bit BMP, 2x1, whose palette has two colours: 54 bytes of headers,
    -- 8 of palette, one row of 4.
    local function bmp(i, j, offset)
      return "BM" .. string.pack("<I4I2I2I4I4i4i4I2I2I4I4i4i4I4I4", 66, 0, 0, offset or 62, 40, 2, 1, 1, 8, 0, 4, 0, 0,
        2, 0) .. "\0\0\0\0\255\255\255\0" .. string.char(i, j, 0, 0)
    end

    it("a PNG whose compressed pixels use a distance code deflate does not define", function()
      -- stb copies such a match from output it has not written yet (found by
      -- spec/fuzz/fuzz_image.c; spec/fixtures/images/corrupt_distance.png).
      refuses("dist.png", read(FIX .. "corrupt_distance.png"),
        "is a corrupt PNG: its compressed pixels are invalid (zlib: invalid distance code)")
    end)

    it("a BMP whose pixels start 1 to 3 bytes inside its header", function()
      -- stb computes a palette of -1 colours there and reads every pixel's
      -- colour from memory it never wrote (found by spec/fuzz/fuzz_image.c).
      refuses("inside.bmp", bmp(0, 0, 51), "is a corrupt BMP: its pixel data (at byte 51) starts inside its header")
    end)

    it("a BMP whose pixels use colours past the end of its palette", function()
      refuses("pal.bmp", bmp(1, 5), "is a corrupt BMP: a pixel uses colour 5 of a 2-colour palette")
    end)

    it("but reads a BMP with a short palette whose pixels stay within it", function()
      write(d .. "/ok.bmp", bmp(1, 0))
      local t = kdx.data.image(d .. "/ok.bmp")
      assert.are.same({3, 1, 2}, t:shape())
      assert.are.same({1, 0}, {t:get(1, 1, 1), t:get(1, 1, 2)})
    end)
  end)

  it("checks its argument", function()
    local ok, err = pcall(kdx.data.image, 42)
    assert.is_false(ok)
    assert.matches("kdx.data.image: path must be a non-empty string", err, 1, true)
  end)
end)

describe("kdx.data.save_png()", function()
  local d
  before_each(function() d = tmpdir() end)
  after_each(function() rmdir(d) end)

  for _, shape in ipairs{{1, 6, 7}, {2, 6, 7}, {3, 6, 7}, {4, 6, 7}, {6, 7}} do
    local s = table.concat(shape, ",")
    it("round-trips 8-bit values exactly for [" .. s .. "]", function()
      kdx.manual_seed(7)
      local t = levels(shape)
      kdx.data.save_png(d .. "/x.png", t)
      local back = kdx.data.image(d .. "/x.png")
      if #shape == 2 then back = back:select(1, 1) end
      assert.are.same(t:shape(), back:shape())
      assert.is_true(maxdiff(t, back) < 1e-7)
    end)
  end

  it("clamps values outside [0, 1] and writes NaN as 0", function()
    local t = kdx.tensor{{{-1, 0.5, 2, 0 / 0}}}
    kdx.data.save_png(d .. "/c.png", t)
    local back = kdx.data.image(d .. "/c.png")
    local want = {0, 128 / 255, 1, 0} -- 0.5 * 255 = 127.5 rounds to even
    for i = 1, 4 do assert.is_true(math.abs(back:get(1, 1, i) - want[i]) < 1e-7) end
  end)

  it("takes float64 and non-contiguous tensors", function()
    kdx.manual_seed(3)
    local t = levels{3, 5, 4}:transpose(2, 3)
    assert.is_false(t:is_contiguous())
    kdx.data.save_png(d .. "/t.png", t:double())
    assert.is_true(maxdiff(kdx.data.image(d .. "/t.png"), t) < 1e-7)
  end)

  it("replaces the file atomically and leaves no temporary files", function()
    kdx.data.save_png(d .. "/a.png", kdx.zeros{1, 2, 2})
    kdx.data.save_png(d .. "/a.png", kdx.ones{1, 3, 3})
    assert.are.same({1, 3, 3}, kdx.data.image(d .. "/a.png"):shape())
    local before = read(d .. "/a.png")
    assert.has_error(function() kdx.data.save_png(d .. "/a.png", kdx.zeros{5, 2, 2}) end)
    assert.are.equal(before, read(d .. "/a.png"))
    assert.are.same({"a.png"}, core._listdir(d))
  end)

  it("refuses bad tensors with a message", function()
    local cases = {
      {kdx.zeros{5, 2, 2}, "1 to 4 channels"},
      {kdx.zeros{4}, "must be [C,H,W] or [H,W]"},
      {kdx.zeros{1, 0, 3}, "height and width must be in [1, 65535]"},
      {kdx.zeros({2, 2}, "int64"), "float32"},
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(kdx.data.save_png, d .. "/bad.png", c[1])
      assert.is_false(ok)
      assert.matches("kdx.data.save_png: ", err, 1, true)
      assert.matches(c[2], err, 1, true)
    end
    local ok, err = pcall(kdx.data.save_png, "/nonexistent/dir/x.png", kdx.zeros{2, 2})
    assert.is_false(ok)
    assert.matches("cannot create /nonexistent/dir/x.png.tmp", err, 1, true)
    assert.has_error(function() kdx.data.save_png(d .. "/x.png", "not a tensor") end,
      "kdx.data.save_png: t must be a tensor, got string")
  end)
end)

describe("kdx.data.save_jpg()", function()
  it("round-trips a smooth picture closely", function()
    local d = tmpdir()
    local blocks = kdx.data.image(FIX .. "blocks.jpg")
    kdx.data.save_jpg(d .. "/b.jpg", blocks, 95)
    local back = kdx.data.image(d .. "/b.jpg")
    assert.are.same({3, 16, 16}, back:shape())
    assert.is_true(maxdiff(back, blocks) <= 8 / 255)
    -- a gray gradient at the default quality: stb writes colour JPEGs, so
    -- it reads back as three equal channels
    local ramp = kdx.linspace(0, 1, 32):reshape{1, 32}:expand{24, 32}:contiguous()
    kdx.data.save_jpg(d .. "/r.jpg", ramp)
    local r = kdx.data.image(d .. "/r.jpg")
    assert.are.same({3, 24, 32}, r:shape())
    for c = 1, 3 do assert.is_true((r:select(1, c) - ramp):abs():mean():item() < 0.02) end
    rmdir(d)
  end)

  it("checks quality", function()
    local ok, err = pcall(kdx.data.save_jpg, "/tmp/x.jpg", kdx.zeros{2, 2}, 0)
    assert.is_false(ok)
    assert.matches("quality must be in [1, 100], got 0", err, 1, true)
  end)
end)

describe("kdx.data.resize()", function()
  it("resizes bilinearly as PyTorch does (align_corners = false)", function()
    local t = kdx.tensor{{0, 1}, {2, 3}}
    local r = kdx.data.resize(t, 4, 4)
    local c = {0, 0.25, 0.75, 1}
    for i = 1, 4 do
      for j = 1, 4 do assert.is_true(math.abs(r:get(i, j) - (2 * c[i] + c[j])) < 1e-6) end
    end
  end)

  it("takes [H,W], [C,H,W] and [N,C,H,W] and keeps a constant picture constant", function()
    assert.are.same({5, 9}, kdx.data.resize(kdx.rand{3, 4}, 5, 9):shape())
    local c = kdx.data.resize(kdx.full({3, 10, 12}, 0.25), 7, 3)
    assert.are.same({3, 7, 3}, c:shape())
    assert.is_true(maxdiff(c, kdx.full({3, 7, 3}, 0.25)) < 1e-7)
    assert.are.same({2, 1, 8, 8}, kdx.data.resize(kdx.rand{2, 1, 28, 28}, 8, 8):shape())
  end)

  it("checks its arguments", function()
    assert.has_error(function() kdx.data.resize(kdx.rand{3, 4}, 0, 2) end,
      "kdx.data.resize: h and w must be positive integers, got 0, 2")
    assert.has_error(function() kdx.data.resize(kdx.rand{4}, 2, 2) end,
      "kdx.data.resize: t must be [H,W], [C,H,W] or [N,C,H,W], got 1 dims")
  end)
end)

describe("kdx.data.image_folder()", function()
  local dir = FIX .. "folder"

  it("makes a dataset with one class per subfolder, sorted, skipping other files", function()
    local ds = kdx.data.image_folder(dir)
    assert.are.same({"circle", "square"}, ds.classes)
    assert.are.same({1, 1, 1, 2, 2}, ds.y:totable())
    assert.are.equal("int64", ds.y:dtype())
    assert.are.same({5, 3, 6, 6}, ds.x:shape()) -- colour wins; the first image's size
    assert.are.equal(5, ds:size())
    assert.are.equal(dir .. "/circle/c1.png", ds.files[1])
    assert.are.equal(dir .. "/square/s2.png", ds.files[5])
    -- the first sample is the first file as it is
    assert.is_true(maxdiff(ds.x:select(1, 1), kdx.data.image(dir .. "/circle/c1.png")) < 1e-7)
  end)

  it("resizes to opts.size and converts to opts.channels", function()
    local ds = kdx.data.image_folder(dir, {size = {4, 8}, channels = 1})
    assert.are.same({5, 1, 4, 8}, ds.x:shape())
    -- the squares are 8 wide and 4 high already: unchanged
    assert.is_true(maxdiff(ds.x:select(1, 4), kdx.data.image(dir .. "/square/s1.png")) < 1e-7)
  end)

  it("works with a DataLoader", function()
    local ds = kdx.data.image_folder(dir, {size = {6, 6}})
    local n = 0
    for x, y in kdx.data.DataLoader(ds, {batch_size = 2}):iter() do
      n = n + x:size(1)
      assert.are.equal(x:size(1), y:size(1))
    end
    assert.are.equal(5, n)
  end)

  it("says what is wrong with a bad folder", function()
    assert.has_error(function() kdx.data.image_folder("/nonexistent") end,
      "kdx.data.image_folder: /nonexistent is not a directory")
    assert.has_error(function() kdx.data.image_folder(dir .. "/square") end,
      "kdx.data.image_folder: " .. dir .. "/square has no class subfolders")
    assert.has_error(function() kdx.data.image_folder(dir, {size = {0, 3}}) end,
      "kdx.data.image_folder: size must be {h, w} with positive integers")
  end)
end)
