-- bin/kdx, run as a user runs it: each subcommand on small fixtures made in
-- a temporary folder, its output files checked against the library's own
-- results, and its errors and exit codes (2: the command line is wrong,
-- 1: the work failed).
local kdx = require "kdx"
local close = require "helpers.close"

local CLI = "bin/kdx"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs bin/kdx with the given (already quoted) arguments; returns the exit
-- code, stdout and stderr.
local function kdx_cli(args, dir)
  local err = os.tmpname()
  local cmd = ("%s%s %s 2>%s"):format(dir and ("cd " .. q(dir) .. " && ") or "",
    q(dir and (os.getenv("PWD") or ".") .. "/" .. CLI or CLI), args, q(err))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local _, _, code = p:close()
  local f = assert(io.open(err))
  local errout = f:read("a")
  f:close()
  os.remove(err)
  return code, out, errout
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local ARCH = [[
local kdx = require "kdx"
return function(meta)
  assert(meta.arch == "tiny-cnn", "the arch function gets the checkpoint's metadata")
  return kdx.nn.Sequential{kdx.nn.Conv2d(1, 2, 3, {padding = 1}), kdx.nn.ReLU(),
                           kdx.nn.Flatten(), kdx.nn.Linear(2 * 8 * 8, 3)}
end
]]

describe("bin/kdx", function()
  local dir, model_path, image_path
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("LD_PRELOAD= mkdir -p " .. q(dir)))
    write(dir .. "/arch.lua", ARCH)
    kdx.manual_seed(7)
    local model = assert(load(ARCH))()({arch = "tiny-cnn"})
    model_path = dir .. "/m.safetensors"
    kdx.save(model_path, model:state_dict(), {arch = "tiny-cnn", epoch = "3"})
    image_path = dir .. "/x.png"
    kdx.data.save_png(image_path, kdx.rand{3, 8, 8})
  end)
  teardown(function()
    if dir then os.execute("LD_PRELOAD= rm -rf " .. q(dir)) end
  end)

  describe("help", function()
    it("prints the commands and exits 0; no command is a usage error (2)", function()
      local code, out = kdx_cli("help")
      assert.are.equal(0, code)
      for _, c in ipairs{"run SCRIPT.lua", "explain --model", "info M.safetensors"} do
        assert.truthy(out:find(c, 1, true), c)
      end
      local code2, out2, err2 = kdx_cli("")
      assert.are.equal(2, code2)
      assert.are.equal("", out2)
      assert.truthy(err2:find("usage: kdx <command>", 1, true))
      local code3, out3 = kdx_cli("help explain")
      assert.are.equal(0, code3)
      assert.truthy(out3:find("--target K", 1, true))
    end)

    it("names an unknown command and exits 2", function()
      local code, _, err = kdx_cli("frobnicate")
      assert.are.equal(2, code)
      assert.truthy(err:find("kdx: unknown command 'frobnicate'", 1, true))
      code, _, err = kdx_cli("help frobnicate")
      assert.are.equal(2, code)
      assert.truthy(err:find("no command 'frobnicate'", 1, true))
    end)

    it("--version prints kdx._VERSION", function()
      local code, out = kdx_cli("--version")
      assert.are.equal(0, code)
      assert.are.equal("kdx " .. kdx._VERSION .. "\n", out)
    end)
  end)

  describe("run", function()
    it("runs a script with its arguments as arg and ...", function()
      write(dir .. "/exp.lua", [[
local kdx = require "kdx"
local a, b = ...
print(arg[0], #arg, a, b)
kdx.save("out.safetensors", {w = kdx.tensor{tonumber(a), tonumber(b)}})
]])
      local code, out, err = kdx_cli("run exp.lua 2 5", dir)
      assert.are.equal(0, code, err)
      assert.are.equal("exp.lua\t2\t2\t5\n", out)
      local t = kdx.load(dir .. "/out.safetensors")
      close.assert_close(t.w, kdx.tensor{2, 5}, 0)
    end)

    it("reports a script's error with its traceback (exit 1) and passes its os.exit code", function()
      write(dir .. "/bad.lua", "local x = nil\nlocal function f() return x.y end\nf()\n")
      local code, _, err = kdx_cli("run bad.lua", dir)
      assert.are.equal(1, code)
      assert.truthy(err:find("kdx: run: bad.lua:2: attempt to index", 1, true), err)
      assert.truthy(err:find("stack traceback", 1, true))
      write(dir .. "/exit3.lua", "os.exit(3)\n")
      assert.are.equal(3, (kdx_cli("run exit3.lua", dir)))
    end)

    it("refuses a missing or unreadable script", function()
      local code, _, err = kdx_cli("run")
      assert.are.equal(2, code)
      assert.truthy(err:find("run: which script?", 1, true))
      code, _, err = kdx_cli("run " .. q(dir .. "/nope.lua"))
      assert.are.equal(1, code)
      assert.truthy(err:find("cannot open", 1, true))
      write(dir .. "/syntax.lua", "local = 1\n")
      code, _, err = kdx_cli("run syntax.lua", dir)
      assert.are.equal(1, code)
      assert.truthy(err:find("syntax.lua:1:", 1, true), err)
    end)
  end)

  describe("info", function()
    it("lists tensors with file dtype, loaded dtype, shape and the metadata", function()
      local code, out, err = kdx_cli("info " .. q(model_path))
      assert.are.equal(0, code, err)
      assert.truthy(out:find(": 4 tensors, 407 elements\n", 1, true), out)
      local lines = {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.truthy(lines[2]:match("^  name%s+dtype%s+loads as%s+shape%s+elements$"), lines[2])
      assert.truthy(lines[3]:match("^  0%.bias%s+F32%s+float32%s+%[2%]%s+2$"), lines[3])
      assert.truthy(lines[4]:match("^  0%.weight%s+F32%s+float32%s+%[2, 1, 3, 3%]%s+18$"), lines[4])
      assert.truthy(lines[6]:match("^  3%.weight%s+F32%s+float32%s+%[3, 128%]%s+384$"), lines[6])
      assert.are.equal("metadata:", lines[7])
      assert.are.equal("  arch = tiny-cnn", lines[8])
      assert.are.equal("  epoch = 3", lines[9])
    end)

    it("shows the file's own dtype (F16, I32) next to what kdx loads, and escaped names", function()
      -- A file written by hand: F16 [2] and I32 [1], a name and metadata with
      -- JSON escapes.
      local header = '{"h\\u00e9\\"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},' ..
                     '"n":{"dtype":"I32","shape":[1],"data_offsets":[4,8]},' ..
                     '"__metadata__":{"note":"a \\"b\\"\\nc"}}'
      header = header .. string.rep(" ", (8 - #header % 8) % 8)
      local path = dir .. "/f16.safetensors"
      write(path, string.pack("<I8", #header) .. header ..
                  string.pack("<I2I2i4", 0x3C00, 0xC000, -5))
      local code, out, err = kdx_cli("info " .. q(path))
      assert.are.equal(0, code, err)
      assert.truthy(out:find("2 tensors, 3 elements", 1, true), out)
      assert.truthy(out:find('\n  hé"x%s+F16%s+float32%s+%[2%]%s+2\n'), out)
      assert.truthy(out:find("\n  n%s+I32%s+int64%s+%[1%]%s+1\n"), out)
      assert.truthy(out:find('note = a "b"\nc', 1, true), out)
    end)

    it("says 'metadata: none' for a file without metadata", function()
      local path = dir .. "/plain.safetensors"
      kdx.save(path, {})
      local code, out = kdx_cli("info " .. q(path))
      assert.are.equal(0, code)
      assert.are.equal(path .. ": 0 tensors, 0 elements\nmetadata: none\n", out)
    end)

    it("fails cleanly on a missing or corrupt file, and on a wrong command line", function()
      local code, out, err = kdx_cli("info " .. q(dir .. "/missing.safetensors"))
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.truthy(err:find("kdx: info: cannot open", 1, true))
      local bad = dir .. "/bad.safetensors"
      write(bad, "this is not a checkpoint")
      code, _, err = kdx_cli("info " .. q(bad))
      assert.are.equal(1, code)
      assert.truthy(err:find("kdx: info: kdx.load: " .. bad .. ":", 1, true), err)
      assert.is_nil(err:find("traceback", 1, true))
      assert.are.equal(2, (kdx_cli("info")))
      assert.are.equal(2, (kdx_cli("info a b")))
    end)
  end)

  describe("explain", function()
    local function base(extra)
      return ("explain --model %s --arch %s --image %s %s"):format(
        q(model_path), q(dir .. "/arch.lua"), q(image_path), extra or "")
    end

    -- What the CLI should have drawn, computed here with the library.
    local function expected(method, opts, image)
      local model = assert(load(ARCH))()({arch = "tiny-cnn"})
      model:load_state_dict(kdx.load(model_path))
      model:eval()
      local img = kdx.data.to_channels(image or kdx.data.image(image_path), 1)
      local x = img:unsqueeze(1)
      local out = kdx.no_grad(function() return model(x) end)
      local pred = out:argmax(2):item()
      opts.target = opts.target or pred
      local attr = kdx.explain[method](model, x, opts)
      return kdx.viz.heatmap(attr, {image = img}), attr, pred
    end

    it("draws integrated gradients over the image for the predicted class", function()
      local out_png = dir .. "/ig.png"
      local code, out, err = kdx_cli(base("--steps 16 -o " .. q(out_png) ..
                                          " --save-attr " .. q(dir .. "/ig.safetensors")))
      assert.are.equal(0, code, err)
      local want, attr, pred = expected("integrated_gradients", {steps = 16})
      assert.truthy(out:find("method: integrated_gradients\n", 1, true), out)
      assert.truthy(out:find(("target: %d (predicted %d of 3 classes)"):format(pred, pred), 1, true), out)
      assert.truthy(out:find("wrote " .. out_png .. " (8x8)", 1, true), out)
      local got = kdx.data.image(out_png)
      assert.are.same({3, 8, 8}, got:shape())
      close.assert_close(got, want, 0.5 / 255 + 1e-6)
      local saved, meta = kdx.load(dir .. "/ig.safetensors")
      close.assert_close(saved.attribution, attr, 1e-6)
      assert.are.equal("integrated_gradients", meta.method)
      assert.are.equal(tostring(pred), meta.target)
    end)

    it("takes --target, --size, a method's options, and names the default output after the image", function()
      local big = dir .. "/big.png"
      local img = kdx.rand{3, 12, 10}
      kdx.data.save_png(big, img)
      local code, out, err = kdx_cli(("explain --model %s --arch %s --image %s --size 8 " ..
        "--method occlusion --window 1,2,2 --strides 2 --target 2"):format(
        q(model_path), q(dir .. "/arch.lua"), q(big)))
      assert.are.equal(0, code, err)
      assert.truthy(out:find("target: 2 (predicted", 1, true), out)
      local resized = kdx.data.resize(kdx.data.image(big), 8, 8)
      local want = expected("occlusion", {window = {1, 2, 2}, strides = 2, target = 2}, resized)
      local got = kdx.data.image(dir .. "/big_occlusion.png")
      close.assert_close(got, want, 0.5 / 255 + 1e-6)
    end)

    it("gives usage errors (exit 2) for a wrong command line", function()
      local cases = {
        {"explain --model m.safetensors --image x.png", "--arch is required"},
        {base("--method no_such_method"), "no method 'no_such_method' in kdx.explain"},
        {base("--method noise_tunnel"), "'noise_tunnel' cannot be used here"},
        {base("--target 0"), "--target must be a positive integer, got '0'"},
        {base("--target 4"), "--target 4 is out of range: the model has 3 classes"},
        {base("--size 8y8"), "--size must be H or HxW, got '8y8'"},
        {base("--channels 2"), "--channels must be 1 or 3"},
        {base("--alpha 2"), "--alpha must be in [0, 1]"},
        {base("--steps"), "--steps needs a value"},
        {base("stray"), "unexpected argument 'stray'"},
      }
      for _, c in ipairs(cases) do
        local code, out, err = kdx_cli(c[1])
        assert.are.equal(2, code, c[1] .. "\n" .. err)
        assert.are.equal("", out)
        assert.truthy(err:find(c[2], 1, true), c[1] .. ": " .. err)
      end
    end)

    it("fails (exit 1) with the reason when the files or the method do not fit", function()
      write(dir .. "/num.lua", "return 5\n")
      write(dir .. "/lin.lua", "local kdx = require 'kdx'\nreturn kdx.nn.Linear(2, 2)\n")
      write(dir .. "/boom.lua", "error('no such layer')\n")
      local function with_arch(a, extra)
        return ("explain --model %s --arch %s --image %s %s"):format(q(model_path), q(dir .. "/" .. a),
          q(image_path), extra or "")
      end
      local cases = {
        {with_arch("num.lua"), "must return a kdx.nn module or a function building one, got number"},
        {with_arch("lin.lua"), "the checkpoint does not fit --arch: kdx.nn.Module.load_state_dict: missing keys"},
        {with_arch("boom.lua"), "boom.lua:1: no such layer"},
        {with_arch("arch.lua", "--size 10"), "the model failed on the image 1x1x10x10"},
        {base("--steps abc"), "kdx.explain.integrated_gradients: argument 5 (steps) must be an integer"},
        {("explain --model %s --arch %s --image %s"):format(q(dir .. "/none.safetensors"),
          q(dir .. "/arch.lua"), q(image_path)), "--model: cannot open"},
        {base("-o " .. q(dir .. "/no/such/dir/out.png")), "kdx.data.save_png"},
      }
      for _, c in ipairs(cases) do
        local code, out, err = kdx_cli(c[1])
        assert.are.equal(1, code, c[1] .. "\n" .. out .. err)
        assert.truthy(err:find(c[2], 1, true), c[1] .. ": " .. err)
        assert.is_nil(err:find("stack traceback", 1, true))
      end
    end)
  end)
end)
