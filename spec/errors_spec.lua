-- Bad input from Lua: every failure is a Lua error "kdx.<fn>: <problem>",
-- never a crash, abort, hang, leak or memory corruption; where PyTorch defines
-- a result (NaN propagation, empty reductions) kdx gives that value.
--
-- Run under both builds (see the Makefile's LUA_PATH/LUA_CPATH; for build-san
-- also LD_PRELOAD=$(gcc -print-file-name=libasan.so)):
--   lua5.4 /usr/bin/busted spec/errors_spec.lua
-- A row with bug = "..." is a known defect of csrc/ and is pending (none at
-- present); its check is what should pass once fixed. KDX_SPEC_BUGS=1 runs
-- those checks too.

local kdx = require "kdx"

local Z, O = kdx.zeros, kdx.ones
local function L(t) return kdx.tensor(t, "int64") end
local nan, inf = 0 / 0, math.huge
local maxint, minint = math.maxinteger, math.mininteger
local RUN_BUGS = os.getenv("KDX_SPEC_BUGS") == "1"
-- Under ASan a calloc of more than 1 TB aborts unless allocator_may_return_null=1.
local ASAN_ABORTS = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true)
  and not (os.getenv("ASAN_OPTIONS") or ""):find("allocator_may_return_null=1", 1, true)

---------------------------------------------------------------- helpers ---

local function closed(dtype)
  local y
  do
    local x <close> = O({3}, dtype)
    y = x
  end
  return y
end

-- What the code of a row sees: fresh fixtures for every call.
local function fixtures()
  return setmetatable({
    kdx = kdx, Z = Z, O = O, L = L, nan = nan, inf = inf, maxint = maxint, minint = minint, closed = closed,
    x = Z{2, 3}, e = Z{0, 3}, m = Z{3, 4}, img = Z{1, 1, 4, 4}, small = Z{1, 1, 2, 2}, o8 = O{1, 1, 1, 1, 1, 1, 1, 1},
    x3 = Z{1, 3, 5, 5}, w3 = Z{2, 3, 3, 3}, x4 = Z{1, 4, 5, 5}, w4 = Z{6, 2, 3, 3},
  }, {__index = _G})
end

-- A row's code ("expression" or function) as a function.
local function thunk(code)
  if type(code) == "function" then return code end
  return assert(load("return " .. code, "=(row)", "t", fixtures()))
end

-- The message of the error f raises, without Lua's "file:line: " position.
local function message_of(f)
  local ok, e = pcall(f)
  if ok then error("expected an error, but the call succeeded", 3) end
  local msg = tostring(e)
  if not msg:find("^kdx%.") then msg = msg:gsub("^.-:%d+: ", "", 1) end
  return msg
end

-- Asserts f raises "kdx.<fname>: ..." ("*": any kdx function) containing each fragment.
local function raises(fname, f, ...)
  local msg = message_of(f)
  local ok = fname == "*" and msg:find("^kdx%.[%w_]+: ") or msg:sub(1, #fname + 5) == "kdx." .. fname .. ":"
  assert(ok, ("expected a message starting \"kdx.%s:\", got %q"):format(fname, msg))
  for i = 1, select("#", ...) do
    local frag = select(i, ...)
    assert(msg:find(frag, 1, true), ("expected %q in the message %q"):format(frag, msg))
  end
end

-- Every failing row that is not a known bug, for the leak check at the end.
local all_failing = {}

-- One it() per row {description, code, fragments..., fn = name?, bug = why?,
-- huge = true (asks for more than 1 TB)}.
local function rejects(fname, rows)
  for _, r in ipairs(rows) do
    if not r.bug and not r.huge then all_failing[#all_failing + 1] = r[2] end
    it(r[1], function()
      if r.bug and not RUN_BUGS then pending("BUG: " .. r.bug) end
      if r.huge and ASAN_ABORTS then pending("ASan aborts on a >1 TB calloc: set allocator_may_return_null=1") end
      raises(r.fn or fname, thunk(r[2]), table.unpack(r, 3))
    end)
  end
end

-- describe(title): one it() per row, then the its of extra.
local function rows(title, fname, list, extra)
  describe(title, function()
    rejects(fname, list)
    if extra then extra() end
  end)
end

local function isnan(v) return v ~= v end
local function all_nan(t)
  local found = true
  local function walk(v)
    if type(v) == "table" then for i = 1, #v do walk(v[i]) end elseif not isnan(v) then found = false end
  end
  walk(t:dim() == 0 and t:item() or t:totable())
  return found
end

describe("bad input", function()
  ------------------------------------------------------------ creation ---
  rows("kdx.tensor", "tensor", {
    {"names the short row of a ragged table", 'kdx.tensor{{1, 2}, {3}}', "ragged", "[2]"},
    {"names a number where a row was expected", 'kdx.tensor{{1, 2}, 3}', "ragged", "[2]"},
    {"names an element that is not a number", 'kdx.tensor{1, "a"}', "element [2]", "string"},
    {"names a hole in the table", 'kdx.tensor{1, nil, 3}', "element [2]", "nil"},
    {"refuses 9 levels of nesting", 'kdx.tensor{{{{{{{{{1}}}}}}}}}', "deeper than 8"},
    {"refuses a table that contains itself", function() local t = {}; t[1] = t; return kdx.tensor(t) end, "deeper"},
    {"refuses a fraction for int64", 'kdx.tensor({1.5}, "int64")', "1.5", "int64"},
    {"refuses a string", 'kdx.tensor("x")', "got string"},
    {"refuses an unknown dtype", 'kdx.tensor({1}, "float16")', "float16"},
  })

  rows("kdx.zeros, ones, empty, full, rand, randn", "zeros", {
    {"refuses {1e12, 1e12} given as floats", 'Z{1e12, 1e12}', "integer"},
    {"refuses a shape whose element count overflows", 'Z{1000000000000, 1000000000000}', "too large", fn = "*"},
    {"names kdx.zeros (not kdx.full) for a shape too large", 'Z{1000000000000, 1000000000000}', "too large"},
    {"reports out of memory for a 4 TB tensor", 'Z{1000000000000}', "out of memory", "[1000000000000]", fn = "*",
      huge = true},
    {"refuses 9 dims", 'Z{1, 1, 1, 1, 1, 1, 1, 1, 1}', "at most 8"},
    {"refuses a negative size", 'Z{2, -1}', "-1", "negative"},
    {"refuses a fractional size", 'Z{2.5}', "integer"},
    {"refuses a string size", 'kdx.empty{2, "x"}', "string", fn = "empty"},
    {"refuses a string shape", 'Z("x")', "shape"},
    {"refuses an unknown dtype", 'Z({2}, "float16")', "float16"},
    {"refuses int64 for rand", 'kdx.rand({2}, "int64")', "int64", fn = "rand"},
    {"refuses a negative size in full", 'kdx.full({-1}, 0)', "negative", fn = "full"},
    {"refuses a number as the shape of full", 'kdx.full(2, 1)', "shape", fn = "full"},
    {"refuses a string fill value", 'kdx.full({2}, "x")', fn = "full"},
  }, function()
    it("gives an empty tensor for a zero size", function() assert.are.same({0, 3}, Z{0, 3}:shape()) end)
  end)

  rows("kdx.arange, linspace, eye, randint, randperm", "arange", {
    {"refuses a zero step", 'kdx.arange(0, 10, 0)', "step"},
    {"refuses a step away from the end", 'kdx.arange(10, 0)', "step"},
    {"refuses a NaN end", 'kdx.arange(0, nan)', "finite"},
    {"refuses more elements than fit", 'kdx.arange(0, 1e300, 1e-300)', "too many"},
    {"refuses a string", 'kdx.arange("x")', "arange"},
    {"refuses a negative count", 'kdx.linspace(0, 1, -1)', "-1", fn = "linspace"},
    {"refuses a count too large", 'kdx.linspace(0, 1, maxint)', "too large", fn = "linspace"},
    {"refuses a fractional count", 'kdx.linspace(0, 1, 2.5)', fn = "linspace"},
    {"refuses a string start", 'kdx.linspace("a", 1, 2)', fn = "linspace"},
    {"refuses a negative size for eye", 'kdx.eye(-1)', "non-negative", fn = "eye"},
    {"refuses eye too large", 'kdx.eye(3000000000, 3000000000)', "too large", fn = "eye"},
    {"refuses a fractional size for eye", 'kdx.eye(2.5)', fn = "eye"},
    {"refuses high <= low", 'kdx.randint(5, 1, {3})', "high", fn = "randint"},
    {"refuses a number as the randint shape", 'kdx.randint(0, 5, 3)', "shape", fn = "randint"},
    {"refuses a fractional randint bound", 'kdx.randint(0.5, 5, {3})', fn = "randint"},
    {"refuses a negative randperm n", 'kdx.randperm(-1)', "-1", fn = "randperm"},
    {"refuses a fractional randperm n", 'kdx.randperm(1.5)', fn = "randperm"},
  }, function()
    it("gives empty tensors for zero counts", function()
      assert.are.same({0, 0, 0}, {kdx.arange(0):numel(), kdx.linspace(0, 1, 0):numel(), kdx.randperm(0):numel()})
    end)
  end)

  rows("kdx.zeros_like and friends", "zeros_like", {
    {"refuses a number where a tensor is expected", 'kdx.zeros_like(5)', "argument 1"},
    {"refuses an unknown dtype", 'kdx.ones_like(Z{2}, "x")', "'x'", fn = "ones_like"},
    {"names rand_like (not rand) for int64", 'kdx.rand_like(Z({2}, "int64"))', "int64", fn = "rand_like"},
    {"refuses a missing fill value", 'kdx.full_like(Z{2})', fn = "full_like"},
    {"refuses a tensor as the fill value", 'kdx.full_like(Z{2}, Z{2})', fn = "full_like"},
  })

  rows("random state and threads", "set_rng_state", {
    {"refuses a state of 2 numbers", 'kdx.set_rng_state{1, 2}', "6 integers"},
    {"refuses a state that is not a table", 'kdx.set_rng_state(5)'},
    {"refuses zero threads", 'kdx.set_num_threads(0)', "in [1, 4096]", fn = "set_num_threads"},
    {"refuses a string thread count", 'kdx.set_num_threads("x")', fn = "set_num_threads"},
    {"refuses 2^32 + 3 threads (now silently 3)", 'kdx.set_num_threads(2 ^ 32 + 3)', fn = "set_num_threads"},
    {"refuses a string seed", 'kdx.manual_seed("x")', fn = "manual_seed"},
    {"refuses a fractional seed", 'kdx.manual_seed(1.5)', fn = "manual_seed"},
    {"refuses a negative std", 'Z{2}:normal_(0, -1)', "std", fn = "normal_"},
    {"refuses uniform_ on int64", 'Z({2}, "int64"):uniform_()', "int64", fn = "uniform_"},
    {"refuses a string bound in uniform_", 'Z{2}:uniform_("a")', fn = "uniform_"},
    {"refuses uniform_ with low > high", 'Z{2}:uniform_(1, 0)', fn = "uniform_"},
  })

  ---------------------------------------------------------- inspection ---
  rows("size, stride, get, set, item", "size", {
    {"refuses dim 0", 'x:size(0)', "dim 0", "1-based"},
    {"refuses dim ndim+1", 'x:size(3)', "dim 3", "2-d"},
    {"refuses dim -ndim-1", 'x:size(-3)', "dim -3"},
    {"refuses a fractional dim", 'x:size(1.5)', "fraction"},
    {"refuses a tensor as the dim", 'x:size(x)', "integer"},
    {"refuses a dim of a 0-d tensor", 'Z{}:size(1)', "0-d"},
    {"refuses the length of a 0-d tensor", '#Z{}', "0-d", fn = "__len"},
    {"refuses the stride of a dim of a 0-d tensor", 'Z{}:stride(1)', fn = "stride"},
    {"refuses index 0", 'x:get(0, 1)', "index 0", fn = "get"},
    {"refuses index size+1", 'x:get(1, 4)', "index 4", "size 3", fn = "get"},
    {"refuses index -size-1", 'x:get(-3, 1)', "-3", fn = "get"},
    {"refuses too few indices", 'x:get(1)', "2 indices", fn = "get"},
    {"refuses a fractional index", 'x:get(1.5, 1)', "fraction", fn = "get"},
    {"refuses a string value", 'x:set(1, 1, "x")', "number", fn = "set"},
    {"refuses a missing value", 'x:set(1, 1)', "value", fn = "set"},
    {"refuses NaN for int64", 'Z({2}, "int64"):set(1, nan)', "int64", fn = "set"},
    {"refuses item() of 6 elements", 'x:item()', "6 elements", fn = "item"},
    {"refuses item() of an empty tensor", 'Z{0}:item()', "0 elements", fn = "item"},
  }, function()
    it("gives empty tables for empty tensors", function()
      assert.are.same({}, Z{0, 3}:totable())
      assert.are.same({{}, {}, {}}, Z{3, 0}:totable())
    end)
  end)

  --------------------------------------------------------------- views ---
  rows("reshape and view", "reshape", {
    {"names both shapes when the sizes differ", 'x:reshape{4, 5}', "[4,5]", "6 elements"},
    {"refuses two -1 sizes", 'x:reshape{-1, -1}', "-1"},
    {"refuses a -1 that cannot be inferred", 'x:reshape{-1, 4}', "invalid"},
    {"refuses a negative size", 'x:reshape{-2, 3}', "negative"},
    {"refuses a fractional size", 'x:reshape{2.5}', "integer"},
    {"refuses 9 dims", 'x:reshape{1, 1, 1, 1, 1, 1, 1, 1, 6}', "at most 8"},
    {"refuses a view of a transposed tensor", 'x:t():view{6}', "reshape", fn = "view"},
    {"refuses sizes whose product overflows", 'x:reshape{3037000500, 3037000500}', "too large"},
    {"refuses -1 next to sizes whose product overflows", 'x:view{4611686018427387904, 4, -1}', fn = "view"},
  }, function()
    it("reshapes an empty tensor with -1", function() assert.are.same({0}, Z{0, 3}:reshape{-1}:shape()) end)
  end)

  rows("transpose, t, permute", "transpose", {
    {"refuses dim 0", 'x:transpose(0, 1)', "dim 0"},
    {"refuses dim ndim+1", 'x:transpose(1, 3)', "dim 3"},
    {"refuses a missing dim", 'x:transpose(1)', "argument 2"},
    {"refuses t() of a 3-d tensor", 'Z{2, 3, 4}:t()', "3", fn = "t"},
    {"refuses a repeated dim", 'x:permute{1, 1}', "twice", fn = "permute"},
    {"refuses too few dims", 'x:permute{1}', "1 dims", "2-d", fn = "permute"},
    {"refuses an out-of-range dim", 'x:permute{1, 3}', "dim 3", fn = "permute"},
    {"names the entry holding a fractional dim", 'x:permute{1.5, 2}', "entry 1", fn = "permute"},
  })

  rows("narrow and select", "narrow", {
    {"refuses a length that runs past the end", 'x:narrow(1, 2, 2)', "runs past"},
    {"refuses start size+2", 'x:narrow(1, 4, 0)', "start 4"},
    {"refuses start 0", 'x:narrow(1, 0, 1)', "start 0"},
    {"refuses a negative length", 'x:narrow(1, 1, -1)', "length -1"},
    {"refuses an out-of-range dim", 'x:narrow(3, 1, 1)', "dim 3"},
    {"refuses a 0-d tensor", 'Z{}:narrow(1, 1, 1)', "0-d"},
    {"refuses start -1 with length maxinteger", 'x:narrow(1, -1, maxint)', "runs past"},
    {"prints the length it was given", 'x:narrow(1, 1, maxint)', "9223372036854775807"},
    {"refuses a fractional start", 'x:narrow(1, 1.5, 1)', "integer"},
    {"refuses index 0", 'x:select(1, 0)', "index 0", fn = "select"},
    {"refuses index size+1", 'x:select(1, 3)', "index 3", fn = "select"},
    {"refuses dim 0", 'x:select(0, 1)', "dim 0", fn = "select"},
    {"refuses a fractional index", 'x:select(1, 1.5)', "fraction", fn = "select"},
    {"prints the index it was given", 'x:select(1, minint)', "-9223372036854775808", fn = "select"},
  }, function()
    it("gives an empty view at start size+1", function() assert.are.same({0, 3}, Z{2, 3}:narrow(1, 3, 0):shape()) end)
  end)

  rows("squeeze, unsqueeze, flatten, expand", "squeeze", {
    {"refuses squeeze of dim ndim+1", 'x:squeeze(3)', "dim 3"},
    {"refuses squeeze(5) of a 0-d tensor", 'Z{}:squeeze(5)', "dim 5"},
    {"refuses unsqueeze at ndim+2", 'x:unsqueeze(4)', "dim 4", fn = "unsqueeze"},
    {"refuses unsqueeze at 0", 'x:unsqueeze(0)', "dim 0", fn = "unsqueeze"},
    {"refuses a 9th dim", 'Z{1, 1, 1, 1, 1, 1, 1, 1}:unsqueeze(1)', "8", fn = "unsqueeze"},
    {"refuses a start after the end", 'Z{2, 3, 4}:flatten(3, 1)', "after", fn = "flatten"},
    {"refuses flatten to dim ndim+1", 'Z{2, 3, 4}:flatten(1, 4)', "dim 4", fn = "flatten"},
    {"refuses expanding a dim that is not 1", 'x:expand{4, 3}', "[2,3]", "[4,3]", fn = "expand"},
    {"refuses expanding to fewer dims", 'x:expand{3}', "1 dims", fn = "expand"},
    {"refuses -1 for a new leading dim", 'Z{1, 3}:expand{-1, 4, 3}', "-1", fn = "expand"},
    {"refuses an expand size below -1", 'Z{1, 3}:expand{-2, 3}', "negative", fn = "expand"},
    {"names expand_as for a shape it cannot take", 'Z{1, 3}:expand_as(Z{4})', fn = "expand_as"},
    {"refuses an expand whose numel overflows", 'Z{1, 3}:expand{4611686018427387904, 3}', "too large", fn = "expand"},
    {"refuses in-place writes to an expanded tensor", 'Z{1, 3}:expand{2, 3}:add_(1)', "expanded", fn = "*"},
    {"refuses copy_ into an expanded tensor", 'Z{1, 3}:expand{2, 3}:copy_(O{2, 3})', "expanded", fn = "copy_"},
  }, function()
    it("keeps sizes given as -1", function() assert.are.same({4, 3}, Z{1, 3}:expand{4, -1}:shape()) end)
  end)

  rows("copy_ and dtype conversion", "copy_", {
    {"names both shapes when the source does not broadcast", 'Z{2, 3}:copy_(Z{4})', "[2,3]", "[4]"},
    {"refuses a string source", 'Z{2, 3}:copy_("x")', "got string"},
    {"refuses a missing dtype", 'Z{2}:to()', "missing", fn = "to"},
    {"refuses an unknown dtype", 'Z{2}:to("x")', "'x'", fn = "to"},
    {"refuses a number for type_as", 'Z{2}:type_as(5)', "argument 1", fn = "type_as"},
  }, function()
    it("saturates NaN and infinities converted to int64", function()
      assert.are.same({0, maxint, minint}, kdx.tensor{nan, inf, -inf}:long():totable())
    end)
  end)

  --------------------------------------------------------- elementwise ---
  rows("binary ops", "add", {
    {"names both shapes when they do not broadcast", 'kdx.add(Z{2, 3}, Z{4})', "[2,3]", "[4]"},
    {"refuses two numbers", 'kdx.mul(1, 2)', "two numbers", fn = "mul"},
    {"refuses a string operand", 'kdx.sub(Z{2}, "x")', "argument 2", "string", fn = "sub"},
    {"refuses a nil operand", 'kdx.div(nil, Z{2})', "argument 1", "nil", fn = "div"},
    {"refuses a number and a string", 'kdx.add(1, "x")', "argument 2"},
    {"refuses a number and nil", 'kdx.mul(2, nil)', "argument 2", fn = "mul"},
    {"refuses a table holding a string", 'kdx.add(Z{2}, {1, "x"})', "element [2]"},
    {"refuses a string with +", 'Z{2} + "x"', "string"},
    {"refuses mismatched shapes with -", 'Z{2} - Z{3}', "[2]", "[3]", fn = "sub"},
    {"refuses a float result written into int64", 'L{1}:add_(0.5)', "int64", fn = "add_"},
    {"refuses int64 division in place", 'L{1}:div_(2)', "int64", fn = "div_"},
    {"refuses a number as the tensor of add_", 'kdx.add_(5, 1)', "argument 1", fn = "add_"},
    {"refuses a larger operand in place", 'Z{2}:add_(Z{2, 2})', "[2,2]", fn = "add_"},
    {"names add_ when the operand does not broadcast", 'Z{2}:add_(Z{3})', fn = "add_"},
  }, function()
    it("propagates NaN through maximum and minimum", function()
      assert.is_true(all_nan(kdx.maximum(kdx.tensor{nan, 1}, kdx.tensor{1, nan})))
      assert.is_true(all_nan(kdx.minimum(kdx.tensor{nan, 1}, kdx.tensor{1, nan})))
    end)
    it("adds a number and a table", function()
      assert.are.same({2, 3}, kdx.add(1, {1, 2}):totable())
    end)
    it("divides int64 by zero into infinity", function() assert.are.same({inf, inf}, (L{1, 2} / 0):totable()) end)
  end)

  rows("unary ops", "clamp", {
    {"refuses exp_ on int64", 'L{1}:exp_()', "int64", fn = "exp_"},
    {"refuses clamp without bounds", 'Z{2}:clamp()', "min and max"},
    {"refuses an unknown gelu approximation", 'Z{2}:gelu("x")', "\"x\"", fn = "gelu"},
    {"refuses softplus beta 0", 'Z{2}:softplus(0)', "beta", fn = "softplus"},
    {"refuses a string clamp bound", 'Z{2}:clamp("a")'},
    {"refuses a string softplus beta", 'Z{2}:softplus("x")', fn = "softplus"},
    {"refuses a string leaky_relu slope", 'Z{2}:leaky_relu("x")', fn = "leaky_relu"},
    {"refuses a table elu alpha", 'Z{2}:elu({})', fn = "elu"},
    {"refuses fill_ without a value", 'Z{2}:fill_()', fn = "fill_"},
    {"refuses a tensor as the fill_ value", 'Z{2}:fill_(Z{1})', fn = "fill_"},
    {"refuses NaN for fill_ of int64", 'L{1}:fill_(nan)', "int64", fn = "fill_"},
  }, function()
    it("gives NaN and -inf for log of -1 and 0", function()
      local v = kdx.tensor{-1, 0}:log():totable()
      assert.is_true(isnan(v[1])); assert.are.equal(-inf, v[2])
    end)
  end)

  rows("kdx.where and masked_fill", "where", {
    {"names the shapes that do not broadcast", 'kdx.where(Z{2}, Z{3}, Z{2})', "[3]", "[2]"},
    {"refuses a number condition", 'kdx.where(5, 1, 2)', "argument 1"},
    {"refuses a string branch", 'kdx.where(O{2}, "a", 2)', "argument 2"},
    {"refuses a table mask", 'Z{2}:masked_fill({1, 0}, 1)', "argument 1", fn = "masked_fill"},
    {"refuses a mask that does not broadcast", 'Z{2}:masked_fill(Z{3}, 1)', "[3]", fn = "masked_fill"},
    {"refuses 1.5 for int64", 'Z({2}, "int64"):masked_fill(O{2}, 1.5)', "1.5", fn = "masked_fill"},
    {"refuses a string value", 'Z{2}:masked_fill(O{2}, "x")', fn = "masked_fill"},
  })

  ---------------------------------------------------------- reductions ---
  rows("reductions", "sum", {
    {"refuses dim 0", 'x:sum(0)', "dim 0"},
    {"refuses dim ndim+1", 'x:mean(3)', "dim 3", fn = "mean"},
    {"refuses dim -ndim-1", 'x:prod(-3)', "dim -3", fn = "prod"},
    {"refuses a fractional dim", 'x:mean(1.5)', "fraction", fn = "mean"},
    {"refuses an empty dims table", 'x:sum({})', "empty"},
    {"refuses a string dims", 'x:sum("x")', "dims"},
    {"refuses 9 dims", 'x:sum{1, 2, 1, 2, 1, 2, 1, 2, 1}', "too many"},
    {"names a repeated dim in Lua numbering", 'x:sum{1, 1}', "dim 1", "more than once"},
    {"refuses max() of an empty tensor", 'e:max()', "zero elements", fn = "*"},
    {"names kdx.max for max() of an empty tensor", 'e:max()', fn = "max"},
    {"refuses max over an empty dim", 'e:max(1)', "empty", fn = "max"},
    {"refuses amax over an empty dim", 'e:amax(1)', "zero elements", fn = "amax"},
    {"refuses argmax of an empty tensor", 'e:argmax()', "empty", fn = "argmax"},
    {"refuses the inf-norm of an empty tensor", 'e:norm(inf)', "zero", fn = "norm"},
    {"refuses max over dim ndim+1", 'x:max(3)', "dim 3", fn = "max"},
    {"refuses cumsum without a dim", 'x:cumsum()', "dim", fn = "cumsum"},
    {"refuses an unknown norm name", 'x:norm("x")', "\"x\"", fn = "norm"},
    {"refuses p = 3 for norm", 'x:norm(3)', "got 3", fn = "norm"},
    {"refuses p = NaN for norm", 'x:norm(nan)', "p must be", fn = "norm"},
    {"refuses a table p for norm", 'x:norm({})', fn = "norm"},
  }, function()
    it("gives PyTorch's values for empty tensors", function()
      local e = Z{0, 3}
      assert.are.same({0, 1}, {e:sum():item(), e:prod():item()})
      assert.is_true(isnan(e:mean():item()))
      assert.are.same({0, 0, 0}, e:sum(1):totable())
      assert.are.same({-inf, -inf, -inf}, e:logsumexp(1):totable())
      assert.are.same({0}, e:amax(2):shape())
      assert.are.equal(0, e:norm():item())
    end)
    it("propagates NaN through max, min, amax and sum", function()
      local t = kdx.tensor{1, nan, 3}
      for _, v in ipairs{t:max(), t:min(), t:amax(), t:sum()} do assert.is_true(isnan(v:item())) end
      local v, i = t:max(1)
      assert.is_true(isnan(v:item())); assert.are.equal(2, i:item())
      assert.are.equal(2, t:argmax():item())
    end)
    it("gives -inf for logsumexp of all -inf and NaN for the var of one element", function()
      assert.are.equal(-inf, kdx.tensor{-inf, -inf}:logsumexp(1):item())
      assert.is_true(isnan(Z{1}:var():item()))
    end)
  end)

  ------------------------------------------------------- linear algebra ---
  rows("kdx.matmul", "matmul", {
    {"names both shapes when they do not match", 'kdx.matmul(Z{2, 3}, Z{4, 5})', "[2,3]", "[4,5]"},
    {"refuses float32 x float64", 'kdx.matmul(Z{2, 3}, Z({3, 2}, "float64"))', "float64"},
    {"refuses int64 operands", 'kdx.matmul(L{{1}}, L{{1}})', "int64"},
    {"refuses 0-d operands", 'kdx.matmul(Z{}, Z{})', "[]"},
    {"refuses batch dims that do not broadcast", 'kdx.matmul(Z{2, 3, 4}, Z{5, 4, 2})', "batch"},
    {"refuses a number as the second operand", 'Z{2, 3}:matmul(5)', "argument 1"},
    {"names matmul (not dot) for 1-D operands", 'kdx.matmul(Z{3}, Z{4})', "[3]", "[4]"},
  }, function()
    it("gives zeros for k = 0 and empty results for empty rows", function()
      assert.are.same({{0, 0, 0}, {0, 0, 0}}, kdx.matmul(Z{2, 0}, Z{0, 3}):totable())
      assert.are.same({0, 2}, kdx.matmul(Z{0, 3}, Z{3, 2}):shape())
    end)
    it("propagates NaN", function()
      assert.is_true(isnan(kdx.matmul(kdx.tensor{{nan, 1}}, kdx.tensor{{1}, {1}}):item()))
    end)
  end)

  rows("kdx.dot, outer, addmm", "dot", {
    {"refuses lengths that differ", 'kdx.dot(Z{3}, Z{4})', "[3]", "[4]"},
    {"refuses 2-D operands", 'kdx.dot(Z{3, 1}, Z{3, 1})', "1-D"},
    {"refuses mixed dtypes", 'kdx.dot(Z{3}, Z({3}, "float64"))', "float64"},
    {"refuses a 2-D operand to outer", 'kdx.outer(Z{3}, Z{2, 2})', "[2,2]", fn = "outer"},
    {"names the shapes of a and b", 'kdx.addmm(Z{2, 2}, Z{2, 3}, Z{4, 2})', "[2,3]", "[4,2]", fn = "addmm"},
    {"refuses an input that does not broadcast", 'kdx.addmm(Z{3, 3}, Z{2, 3}, Z{3, 2})', "[3,3]", fn = "addmm"},
    {"refuses a string beta", 'kdx.addmm(Z{2, 2}, Z{2, 3}, Z{3, 2}, {beta = "x"})', "beta", fn = "addmm"},
    {"refuses options that are not a table", 'kdx.addmm(Z{2, 2}, Z{2, 3}, Z{3, 2}, 5)', "options", fn = "addmm"},
  }, function()
    it("gives 0 for the dot of empty vectors", function() assert.are.equal(0, kdx.dot(Z{0}, Z{0}):item()) end)
  end)

  ------------------------------------------------------------ indexing ---
  rows("index_select, gather, scatter_, index_add_", "index_select", {
    {"refuses index size+1", 'm:index_select(1, L{1, 4})', "4"},
    {"refuses index 0", 'm:index_select(1, {0})', "0"},
    {"refuses an index tensor given as float", 'm:index_select(1, kdx.tensor{1, 2})', "int64", "float32"},
    {"refuses a fractional index", 'm:index_select(1, {1.5})', "1.5"},
    {"refuses a 2-D index", 'm:index_select(1, L{{1, 2}})', "1-D"},
    {"refuses a string index", 'm:index_select(1, "x")', "string"},
    {"refuses dim ndim+1", 'm:index_select(3, {1})', "dim 3"},
    {"refuses an index into an empty dim", 'Z{0, 4}:index_select(1, {1})', "size 0"},
    {"refuses gather index size+1", 'm:gather(1, L{{4}})', "4", fn = "gather"},
    {"refuses gather index 0", 'm:gather(1, L{{0}})', "0", fn = "gather"},
    {"refuses a gather index given as float", 'm:gather(1, kdx.tensor{{1}})', "int64", fn = "gather"},
    {"refuses a gather index with fewer dims", 'm:gather(1, L{1})', "dims", fn = "gather"},
    {"refuses a gather index larger than the input", 'm:gather(1, L{{1, 1, 1, 1, 1}})', "[1,5]", fn = "gather"},
    {"refuses scatter_ index size+1", 'm:scatter_(1, L{{4}}, O{1, 1})', "4", fn = "scatter_"},
    {"refuses an index larger than the source", 'm:scatter_(1, L{{1, 1}}, O{1, 1})', "[1,2]", fn = "scatter_"},
    {"refuses a string scatter_ value", 'm:scatter_(1, L{{1}}, "x")', fn = "scatter_"},
    {"refuses scatter_add_ index 0", 'm:scatter_add_(1, L{{0}}, 2)', "0", fn = "scatter_add_"},
    {"refuses a float scatter_add_ index", 'm:scatter_add_(1, kdx.tensor{{1}}, 2)', "int64", fn = "scatter_add_"},
    {"refuses index_add_ index size+1", 'm:index_add_(1, {4}, O{1, 4})', "4", fn = "index_add_"},
    {"refuses an index_add_ source of the wrong shape", 'm:index_add_(1, {1}, O{1, 5})', "[1,5]", fn = "index_add_"},
    {"refuses a number index_add_ source", 'm:index_add_(1, {1}, 5)', "argument 3", fn = "index_add_"},
    {"names index_add_ for a float64 source", 'm:index_add_(1, {1}, O({1, 4}, "float64"))', "float64",
      fn = "index_add_"},
    {"refuses a string alpha", 'm:index_add_(1, {1}, O{1, 4}, "x")', fn = "index_add_"},
  })

  rows("kdx.one_hot and embedding", "one_hot", {
    {"refuses label 0", 'kdx.one_hot({0}, 3)', "0", "1-based"},
    {"refuses label n+1", 'kdx.one_hot({4}, 3)', "4"},
    {"refuses 0 classes", 'kdx.one_hot({1}, 0)', "positive"},
    {"refuses float labels", 'kdx.one_hot(kdx.tensor{1, 2}, 2)', "int64"},
    {"refuses fractional labels", 'kdx.one_hot({1.5}, 2)', "1.5"},
    {"refuses label 0 when inferring the classes", 'kdx.one_hot(L{0})', "positive"},
    {"refuses empty labels without a class count", 'kdx.one_hot(L{})', "empty"},
    {"refuses a class count too large", 'kdx.one_hot({1}, maxint)', "too large"},
    {"refuses a fractional class count", 'kdx.one_hot({1}, 2.5)'},
    {"refuses a 1-D weight", 'kdx.embedding({1}, Z{3})', "2-D", fn = "embedding"},
    {"refuses index n+1", 'kdx.embedding({4}, Z{3, 2})', "4", fn = "embedding"},
    {"refuses index 0", 'kdx.embedding({0}, Z{3, 2})', "0", fn = "embedding"},
    {"refuses a float index", 'kdx.embedding(kdx.tensor{1}, Z{3, 2})', "int64", fn = "embedding"},
    {"refuses a string weight", 'kdx.embedding({1}, "x")', "argument 2", fn = "embedding"},
  }, function()
    it("infers the class count from the largest label", function()
      assert.are.same({{0, 1, 0}, {0, 0, 1}}, kdx.one_hot{2, 3}:totable())
    end)
  end)

  ------------------------------------------------------------- joining ---
  rows("kdx.cat, stack, split, chunk", "cat", {
    {"refuses shapes that differ off the dim", 'kdx.cat({Z{2, 3}, Z{2, 4}}, 1)', "[2,4]", "[2,3]"},
    {"refuses an empty list", 'kdx.cat({}, 1)', "empty"},
    {"refuses a number in the list", 'kdx.cat({Z{2}, 5}, 1)', "entry 2"},
    {"refuses dim ndim+1", 'kdx.cat({Z{2}}, 2)', "dim 2"},
    {"refuses 0-d tensors", 'kdx.cat{Z{}, Z{}}', "0-d tensors"},
    {"names both shapes that do not match", 'kdx.cat({Z{2, 3}, Z{2, 4}}, 1)', "[2,3] and [2,4]"},
    {"names both shapes that differ", 'kdx.stack{Z{2}, Z{3}}', "[2] and [3]", fn = "stack"},
    {"refuses a tensor instead of a list", 'kdx.cat(Z{2}, 1)', "table"},
    {"refuses nil instead of a list", 'kdx.stack(nil)', "table", fn = "stack"},
    {"refuses stacking shapes that differ", 'kdx.stack{Z{2}, Z{3}}', "[3]", "[2]", fn = "stack"},
    {"refuses stacking at dim ndim+2", 'kdx.stack({Z{2}, Z{2}}, 3)', "dim 3", fn = "stack"},
    {"refuses stacking into a 9th dim", 'kdx.stack{o8, o8}', "8", fn = "stack"},
    {"refuses split size 0", 'kdx.split(Z{5}, 0)', "positive", fn = "split"},
    {"refuses splitting a 0-d tensor", 'kdx.split(Z{}, 2)', "0-d", fn = "split"},
    {"refuses a fractional split size", 'kdx.split(Z{5}, 1.5)', fn = "split"},
    {"refuses chunk count 0", 'kdx.chunk(Z{5}, 0)', "positive", fn = "chunk"},
    {"refuses chunking along dim ndim+1", 'kdx.chunk(Z{5}, 2, 3)', "dim 3", fn = "chunk"},
  }, function()
    it("concatenates and stacks empty tensors", function()
      assert.are.same({0, 3}, kdx.cat({Z{0, 3}, Z{0, 3}}, 1):shape())
      assert.are.same({2, 3}, kdx.cat({Z{0, 3}, Z{2, 3}}, 1):shape())
      assert.are.same({2, 0}, kdx.stack{Z{0}, Z{0}}:shape())
    end)
    it("splits and chunks like PyTorch", function()
      local function sizes(ts) local s = {} for i, t in ipairs(ts) do s[i] = t:size(1) end return s end
      assert.are.same({2, 2, 1}, sizes(kdx.split(Z{5}, 2)))
      assert.are.same({2, 2, 1}, sizes(kdx.chunk(Z{5}, 4)))
      assert.are.same({1, 1, 1, 1, 1}, sizes(kdx.chunk(Z{5}, maxint)))
      assert.are.same({0}, sizes(kdx.split(Z{0}, 2)))
    end)
  end)

  ------------------------------------------------------------------ nn ---
  rows("kdx.softmax and log_softmax", "softmax", {
    {"requires a dim", 'kdx.softmax(Z{2, 3})', "dim"},
    {"refuses dim ndim+1", 'kdx.softmax(Z{2, 3}, 3)', "dim 3"},
    {"refuses a fractional dim", 'kdx.log_softmax(Z{2, 3}, 1.5)', "fraction", fn = "log_softmax"},
    {"refuses int64", 'kdx.softmax(L{1, 2}, 1)', "int64"},
  }, function()
    it("gives empty results for empty tensors", function()
      assert.are.same({0, 3}, kdx.softmax(Z{0, 3}, 2):shape())
      assert.are.same({3, 0}, kdx.log_softmax(Z{3, 0}, 2):shape())
    end)
    it("gives NaN for a row of all -inf, as PyTorch", function()
      assert.is_true(all_nan(kdx.softmax(kdx.tensor{-inf, -inf}, 1)))
      assert.is_true(all_nan(kdx.log_softmax(kdx.tensor{-inf, -inf}, 1)))
    end)
    it("stays finite for large inputs", function()
      assert.are.same({1, 0}, kdx.softmax(kdx.tensor{1000, 0}, 1):totable())
    end)
  end)

  rows("kdx.conv2d", "conv2d", {
    {"refuses channels that do not match groups", 'kdx.conv2d(x4, Z{6, 3, 3, 3}, nil, {groups = 2})', "groups=2",
      "[1,4,5,5]"},
    {"refuses groups that do not divide the channels", 'kdx.conv2d(x4, w4, nil, {groups = 3})', "groups=3"},
    {"refuses groups 0", 'kdx.conv2d(x4, w4, nil, {groups = 0})', "groups"},
    {"refuses stride 0", 'kdx.conv2d(x3, w3, nil, {stride = 0})', "stride"},
    {"refuses dilation 0", 'kdx.conv2d(x3, w3, nil, {dilation = 0})', "dilation"},
    {"refuses negative padding", 'kdx.conv2d(x3, w3, nil, {padding = -1})', "padding"},
    {"refuses a fractional stride", 'kdx.conv2d(x3, w3, nil, {stride = 1.5})', "stride"},
    {"refuses a stride triple", 'kdx.conv2d(x3, w3, nil, {stride = {1, 2, 3}})', "stride"},
    {"refuses a kernel larger than the input", 'kdx.conv2d(Z{1, 3, 2, 2}, w3)', "kernel"},
    {"refuses a bias of the wrong size", 'kdx.conv2d(x3, w3, Z{3})', "bias"},
    {"refuses a number as the bias", 'kdx.conv2d(x3, w3, 5)', "argument 3"},
    {"refuses a 3-D weight", 'kdx.conv2d(x3, Z{2, 3, 3})', "4-D"},
    {"refuses mixed dtypes", 'kdx.conv2d(x3, Z({2, 3, 3, 3}, "float64"))', "float64"},
    {"refuses an empty spatial dim", 'kdx.conv2d(Z{1, 3, 0, 5}, w3)', "empty"},
    {"refuses options that are not a table", 'kdx.conv2d(x3, w3, nil, "x")', "options"},
    {"reports out of memory for a padding of 10^6", 'kdx.conv2d(x3, w3, nil, {padding = 1000000})', "out of memory",
      huge = true},
  }, function()
    it("gives an empty batch for an empty batch", function()
      assert.are.same({0, 2, 3, 3}, kdx.conv2d(Z{0, 3, 5, 5}, Z{2, 3, 3, 3}):shape())
    end)
  end)

  rows("kdx.max_pool2d, avg_pool2d, adaptive_avg_pool2d", "max_pool2d", {
    {"refuses a kernel larger than the input", 'kdx.max_pool2d(Z{1, 1, 2, 2}, 3)', "too small"},
    {"refuses an avg kernel larger than the input", 'kdx.avg_pool2d(Z{1, 1, 2, 2}, 3)', "too small", fn = "avg_pool2d"},
    {"refuses kernel 0", 'kdx.max_pool2d(img, 0)', "kernel"},
    {"refuses a fractional kernel", 'kdx.max_pool2d(img, 1.5)', "kernel"},
    {"refuses a kernel pair of one", 'kdx.avg_pool2d(img, {2})', "kernel", fn = "avg_pool2d"},
    {"refuses a zero stride", 'kdx.max_pool2d(img, 2, {stride = {0, 1}})', "stride"},
    {"refuses padding over half the kernel", 'kdx.avg_pool2d(img, 2, {padding = 2})', "half", fn = "avg_pool2d"},
    {"refuses dilation 0", 'kdx.max_pool2d(img, 2, {dilation = 0})', "dilation"},
    {"refuses a non-boolean ceil_mode", 'kdx.max_pool2d(img, 2, {ceil_mode = "x"})', "ceil_mode"},
    {"refuses a 2-D input", 'kdx.max_pool2d(Z{4, 4}, 2)', "3-D"},
    {"refuses int64", 'kdx.avg_pool2d(Z({1, 1, 4, 4}, "int64"), 2)', "int64", fn = "avg_pool2d"},
    {"refuses output size 0", 'kdx.adaptive_avg_pool2d(img, 0)', ">= 1", fn = "adaptive_avg_pool2d"},
    {"refuses a fractional output size", 'kdx.adaptive_avg_pool2d(img, 1.5)', "integer", fn = "adaptive_avg_pool2d"},
    {"refuses options that are not a table", 'kdx.max_pool2d(img, 2, "x")', "options"},
  }, function()
    it("propagates NaN through max_pool2d and pools -inf to -inf", function()
      local v, i = kdx.max_pool2d(kdx.tensor{{{nan, 1}, {2, 3}}}, 2)
      assert.is_true(isnan(v:item())); assert.are.equal(1, i:item())
      assert.are.equal(-inf, kdx.max_pool2d(kdx.full({1, 2, 2}, -inf), 2):item())
    end)
  end)

  rows("kdx.interpolate and pad", "interpolate", {
    {"refuses a 2-D input", 'kdx.interpolate(Z{2, 2}, {size = 4})', "dims"},
    {"refuses neither size nor scale_factor", 'kdx.interpolate(small, {})', "size"},
    {"refuses size 0", 'kdx.interpolate(small, {size = 0})', ">= 1"},
    {"refuses a NaN scale_factor", 'kdx.interpolate(small, {scale_factor = nan})', "scale_factor"},
    {"refuses an infinite scale_factor", 'kdx.interpolate(small, {scale_factor = inf})', "scale_factor"},
    {"refuses an unknown mode", 'kdx.interpolate(small, {size = 4, mode = "bicubic"})', "bicubic"},
    {"refuses align_corners with nearest", 'kdx.interpolate(small, {size = 4, align_corners = true})', "align_corners"},
    {"refuses a missing options table", 'kdx.interpolate(small)', "table"},
    {"refuses an odd number of pads", 'kdx.pad(Z{2, 2}, {1})', "even", fn = "pad"},
    {"refuses a fractional pad", 'kdx.pad(Z{2, 2}, {1, 1.5})', "pad 2", fn = "pad"},
    {"refuses pads for more dims than there are", 'kdx.pad(Z{2, 2}, {1, 1, 1, 1, 1, 1})', "[2,2]", fn = "pad"},
    {"refuses pads that make a size negative", 'kdx.pad(Z{2, 2}, {-3, 0})', "-1", fn = "pad"},
    {"refuses reflect pads as large as the dim", 'kdx.pad(Z{2, 2}, {2, 2}, {mode = "reflect"})', "reflect", fn = "pad"},
    {"refuses replicate of an empty dim", 'kdx.pad(Z{2, 0}, {1, 1}, {mode = "replicate"})', "replicate", fn = "pad"},
    {"refuses an unknown pad mode", 'kdx.pad(Z{2, 2}, {1, 1}, {mode = "circular"})', "circular", fn = "pad"},
    {"refuses pads too large", 'kdx.pad(Z{2, 2}, {maxint, 1})', "too large", fn = "pad"},
    {"refuses NaN as the value for int64", 'kdx.pad(Z({2}, "int64"), {1, 1}, {value = nan})', "int64", fn = "pad"},
    {"refuses a number as the pads", 'kdx.pad(Z{2, 2}, 1)', "table", fn = "pad"},
  })

  rows("kdx.dropout, batch_norm, layer_norm", "batch_norm", {
    {"refuses dropout p = 2", 'kdx.dropout(Z{2}, 2)', "[0, 1]", fn = "dropout"},
    {"refuses dropout p = NaN", 'kdx.dropout(Z{2}, nan)', "[0, 1]", fn = "dropout"},
    {"refuses a string dropout p", 'kdx.dropout(Z{2}, "x")', fn = "dropout"},
    {"refuses int64 dropout", 'kdx.dropout(L{1, 2}, 0.5)', "int64", fn = "dropout"},
    {"refuses running stats of the wrong size", 'kdx.batch_norm(x, Z{4}, O{4})', "running_mean", "[4]"},
    {"refuses missing running stats in eval mode", 'kdx.batch_norm(x)', "running_mean"},
    {"refuses one value per channel when training", 'kdx.batch_norm(Z{1, 3}, nil, nil, nil, nil, true)', "more than 1"},
    {"refuses an empty batch when training", 'kdx.batch_norm(Z{0, 3}, nil, nil, nil, nil, true)', "more than 1"},
    {"refuses a negative eps", 'kdx.batch_norm(x, Z{3}, O{3}, nil, nil, false, 0.1, -1)', "eps"},
    {"refuses mixed dtypes", 'kdx.batch_norm(x, Z({3}, "float64"), O{3})', "float64"},
    {"refuses a 1-D input", 'kdx.batch_norm(Z{3}, Z{3}, O{3})', "[3]"},
    {"refuses a string momentum", 'kdx.batch_norm(x, Z{3}, O{3}, nil, nil, false, "x")'},
    {"refuses a normalized_shape that does not match", 'kdx.layer_norm(x, 4)', "[4]", fn = "layer_norm"},
    {"refuses more dims than the input has", 'kdx.layer_norm(x, {1, 2, 3})', "3 dims", fn = "layer_norm"},
    {"refuses a layer_norm weight of the wrong shape", 'kdx.layer_norm(x, 3, O{4})', "weight", fn = "layer_norm"},
    {"refuses a negative layer_norm eps", 'kdx.layer_norm(x, 3, nil, nil, -1)', "eps", fn = "layer_norm"},
    {"refuses a string layer_norm eps", 'kdx.layer_norm(x, 3, nil, nil, "x")', fn = "layer_norm"},
  }, function()
    it("gives NaN for a zero variance with eps 0 and for infinite inputs", function()
      assert.is_true(all_nan(kdx.batch_norm(Z{2, 3}, Z{3}, Z{3}, nil, nil, false, 0.1, 0)))
      assert.is_true(all_nan(kdx.layer_norm(kdx.tensor{{inf, 1, 2}}, 3)))
    end)
  end)

  ----------------------------------------------------- closed tensors ---
  rows("a closed tensor", "add", {
    {"is refused by methods", 'closed():sum()', "closed", fn = "sum"},
    {"is refused by unary minus", '-closed()', "closed", fn = "neg"},
    {"is refused by #", '#closed()', "closed", fn = "__len"},
    {"is refused by in-place ops", 'closed():add_(1)', "closed", fn = "add_"},
    {"is refused as a mask", 'O{3}:masked_fill(closed(), 1)', "closed", fn = "masked_fill"},
    {"is named closed by binary ops", 'closed() + 1', "closed"},
    {"is refused as the second operand after a number", '1 + closed()', "closed"},
    {"is named closed in a cat list", 'kdx.cat{closed(), O{3}}', "closed", fn = "cat"},
    {"is named closed as an index tensor", 'O{3}:index_select(1, closed("int64"))', "closed", fn = "index_select"},
    {"is named closed as a copy source", 'Z{3}:copy_(closed())', "closed", fn = "copy_"},
  }, function()
    it("prints as closed", function() assert.truthy(tostring(closed()):find("closed", 1, true)) end)
    it("leaves its views usable", function()
      local v
      do
        local x <close> = O{3}
        v = x:narrow(1, 1, 2)
      end
      collectgarbage()
      assert.are.equal(2, v:sum():item())
    end)
  end)

  ------------------------------------------------- every tensor function ---
  describe("every function that takes a tensor first", function()
    local names = [[shape stride size dim numel dtype is_contiguous get set item totable reshape view transpose t
      permute narrow select squeeze unsqueeze expand expand_as flatten contiguous clone copy_ float double long to
      type_as zeros_like ones_like full_like rand_like randn_like uniform_ normal_ neg abs exp log sqrt sigmoid relu
      gelu clamp fill_ zero_ neg_ add_ sum mean prod logsumexp amax amin var std norm max min argmax argmin cumsum
      matmul dot outer addmm where masked_fill index_select gather scatter_ scatter_add_ index_add_ split chunk
      softmax log_softmax conv2d max_pool2d avg_pool2d adaptive_avg_pool2d interpolate pad dropout batch_norm
      layer_norm]]
    for name in names:gmatch("%S+") do
      it(("kdx.%s refuses nil, a string and a table as its tensor"):format(name), function()
        raises(name, function() return kdx[name](nil) end, "argument 1 must be a tensor", "nil")
        raises(name, function() return kdx[name]("x") end, "argument 1 must be a tensor", "string")
        raises(name, function() return kdx[name]({}) end, "argument 1 must be a tensor", "table")
      end)
    end
    it("kdx.embedding refuses nil as its weight", function()
      raises("embedding", function() return kdx.embedding({1}, nil) end, "argument 2 must be a tensor")
    end)
  end)

  -------------------------------------------------------------- leaks ---
  describe("failed calls", function()
    it("leave no live tensors behind", function()
      local fs = {}
      for i, code in ipairs(all_failing) do fs[i] = thunk(code) end
      collectgarbage(); collectgarbage()
      local before = kdx.debug.live_tensors()
      for _ = 1, 3 do
        for _, f in ipairs(fs) do assert.is_false(pcall(f)) end
      end
      collectgarbage(); collectgarbage()
      assert.are.equal(before, kdx.debug.live_tensors())
    end)
  end)
end)
