-- api_fuzz.lua: random calls of every public Lua function of kdx with random
-- and hostile arguments. Every call must return or raise a Lua error; a crash
-- (signal, sanitizer report, abort) is a bug.
--
--   lua5.4 spec/fuzz/api_fuzz.lua [--seed S] [--calls N] [--only K] [--budget I] [--verbose]
--
-- The script re-runs itself in a fresh temporary folder (the working
-- directory of the calls, so that a writer given a relative path writes
-- there) under a memory limit: ulimit -v in a plain build, ASan's
-- max_allocation_size_mb under the ASan runtime (LD_PRELOAD of libasan, as
-- scripts/run_tests.sh does for SAN=1). Call K draws its function and its
-- arguments from a generator seeded with (S, K) alone, so
-- `--seed S --only K` replays one call by itself. On a crash the parent
-- prints the seed, the call number, the call and the replay command.
-- Ends with "api_fuzz: seed S, N calls, E errors, 0 crashes" (exit 0) or
-- "... CRASH ..." (exit 1).

local args = {seed = nil, calls = 2000, only = nil, budget = 2000000, verbose = false, child = false, tmp = nil}
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--verbose" then args.verbose = true
    elseif a == "--child" then args.child = true
    elseif a:match("^%-%-") and arg[i + 1] then
      local k = a:sub(3)
      args[k] = (k == "tmp") and arg[i + 1] or math.tointeger(tonumber(arg[i + 1]))
      if args[k] == nil then error("api_fuzz: bad value for " .. a) end
      i = i + 1
    else
      error("api_fuzz: unknown argument " .. a)
    end
    i = i + 1
  end
end
args.seed = args.seed or (os.time() % 1000000)

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- ------------------------------------------------------------------ parent --

if not args.child then
  local pwd = io.popen("pwd"):read("l")
  local function absolute(paths)
    local out = {}
    for entry in paths:gmatch("[^;]+") do
      if entry:sub(1, 1) ~= "/" then entry = pwd .. "/" .. entry end
      out[#out + 1] = entry
    end
    return table.concat(out, ";") .. ";;"
  end
  local script = arg[0]
  if script:sub(1, 1) ~= "/" then script = pwd .. "/" .. script end
  local tmp = io.popen("mktemp -d \"${TMPDIR:-/tmp}/kdx-apifuzz.XXXXXX\""):read("l")
  assert(tmp and tmp:sub(1, 1) == "/", "api_fuzz: mktemp failed")
  local progress = tmp .. "/.progress"
  local asan = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil
  local limit
  if asan then
    -- Allocations above 2 GiB return NULL (the engine must say KDX_ENOMEM);
    -- the rest of ASAN_OPTIONS as scripts/run_tests.sh sets them.
    local opts = os.getenv("ASAN_OPTIONS") or "detect_leaks=1:halt_on_error=1"
    opts = opts .. ":allocator_may_return_null=1:max_allocation_size_mb=2048"
    limit = "ASAN_OPTIONS=" .. shell_quote(opts) .. " "
  else
    limit = ""
  end
  local lsan = ""
  if asan and not os.getenv("LSAN_OPTIONS") then
    lsan = "LSAN_OPTIONS=" .. shell_quote("suppressions=" .. pwd .. "/scripts/lsan.supp:print_suppressions=0") .. " "
  end
  local seconds = math.max(120, (args.only and 1 or args.calls) // 5)
  local cmd = table.concat{
    "cd ", shell_quote(tmp), " && ", asan and "" or "ulimit -v 4194304 && ",
    "env ", limit, lsan, "OPENBLAS_NUM_THREADS=1 ",
    "LUA_PATH=", shell_quote(absolute(package.path)), " LUA_CPATH=", shell_quote(absolute(package.cpath)), " ",
    "timeout -k 5 ", seconds, " lua5.4 ", shell_quote(script), " --child --tmp ", shell_quote(tmp),
    " --seed ", args.seed, " --calls ", args.calls, " --budget ", args.budget,
    args.only and (" --only " .. args.only) or "", args.verbose and " --verbose" or "",
  }
  print(("api_fuzz: seed %d, %s"):format(args.seed, args.only and ("call " .. args.only) or (args.calls .. " calls")))
  io.stdout:flush()
  local ok, how, code = os.execute(cmd)
  if ok then
    os.execute("rm -rf " .. shell_quote(tmp))
    os.exit(0)
  end
  local f = io.open(progress, "rb")
  local last = f and f:read("l") or "(no call started)"
  if f then f:close() end
  local k = last:match("^(%d+)\t")
  local what = (how == "exit" and code == 124) and "HANG (timeout)" or ("CRASH (" .. tostring(how) .. " " .. tostring(code) .. ")")
  if k == "0" then last = "exit (after the last call: a leak report?)" end
  print(("api_fuzz: %s at %s"):format(what, k == "0" and last or ("call " .. last)))
  if k then
    print(("  replay: lua5.4 spec/fuzz/api_fuzz.lua --seed %d --only %s --verbose"):format(args.seed, k))
  end
  print("  scratch folder kept: " .. tmp)
  os.exit(1)
end

-- ------------------------------------------------------------------- child --

local TMP = args.tmp
local kdx = require "kdx"

-- Nothing outside the scratch folder is written, removed or run.
local function safe_path(p)
  if type(p) ~= "string" then return false end
  if p:find("%.%.") then return false end
  return p:sub(1, 1) ~= "/" or p:sub(1, #TMP + 1) == TMP .. "/" or p:match("^/tmp/lua_%w+$") ~= nil
end
local real_open, real_remove, real_rename, real_execute = io.open, os.remove, os.rename, os.execute
io.open = function(p, mode)
  if mode and mode:find("[wa+]") and not safe_path(p) then error("api_fuzz: refused to write " .. tostring(p)) end
  return real_open(p, mode)
end
os.remove = function(p)
  if not safe_path(p) then error("api_fuzz: refused to remove " .. tostring(p)) end
  return real_remove(p)
end
os.rename = function(a, b)
  if not (safe_path(a) and safe_path(b)) then error("api_fuzz: refused to rename " .. tostring(a)) end
  return real_rename(a, b)
end
os.exit = function() error("api_fuzz: os.exit called") end
os.execute = function(c)
  if c == nil then return true end
  if c == "test -t 1" then return false end -- the progress printer's terminal probe
  error("api_fuzz: refused to run " .. tostring(c))
end
io.popen = function(c) error("api_fuzz: refused to run " .. tostring(c)) end

-- ------------------------------------------------------------ the targets --

-- Functions not called, each with the reason.
local SKIP = {
  ["kdx.data.fashion_mnist"] = "reads 70000 images from the system dataset: seconds per call, not an API edge",
  ["kdx.data.words"] = "reads five /usr/share/dict word lists, about 2 s per call: not an API edge",
  ["kdx.set_num_threads"] = "a random large count would start that many OpenBLAS/OpenMP threads for the rest of the run",
  ["kdx.Tensor.backward"] = "called through kdx.backward (the same function) instead, once",
  ["kdx.distill.metrics.latency"] = "times a model for a wall-clock interval; slow by design",
}

local targets = {}
local function add(prefix, t, method)
  local names = {}
  for name, v in pairs(t) do
    if type(v) == "function" and type(name) == "string" and name:sub(1, 1) ~= "_" then names[#names + 1] = name end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local full = prefix .. "." .. name
    if not SKIP[full] then targets[#targets + 1] = {name = full, fn = t[name], method = method} end
  end
end
add("kdx", kdx)
add("kdx.Tensor", kdx.Tensor, true)
add("kdx.nn.functional", kdx.nn.functional)
add("kdx.explain", kdx.explain)
add("kdx.explain.metrics", kdx.explain.metrics)
add("kdx.distill.loss", kdx.distill.loss)
add("kdx.distill.metrics", kdx.distill.metrics)
add("kdx.viz", kdx.viz)
add("kdx.data", kdx.data)
add("kdx.autograd", kdx.autograd)
add("kdx.dist", kdx.dist) -- the single-process fallback: the same argument checks as over MPI

-- ---------------------------------------------------------- the value pool --

local R = math.random
local nan, inf = 0 / 0, math.huge

local function pick(list) return list[R(#list)] end

-- Files for the readers: some real, some garbage, all in the scratch folder.
local files = {}
do
  local function write(name, body)
    local f = assert(real_open(TMP .. "/" .. name, "wb"))
    f:write(body)
    f:close()
    files[#files + 1] = TMP .. "/" .. name
  end
  write("empty.csv", "")
  write("good.csv", "a,b,label\n1,2,0\n3,4,1\n5,6,0\n")
  write("ragged.csv", "a,b\n1\n2,3,4\n\"unterminated\n")
  write("junk.bin", "\0\1\2\3\255\254kdx\0")
  write("header.idx", "\0\0\8\3\0\0\0\2\0\0\0\2\0\0\0\2")
  write("huge.idx", "\0\0\8\3\127\255\255\255\127\255\255\255\127\255\255\255")
  write("fake.png", "\137PNG\r\n\26\n\0\0\0\13IHDR\127\255\255\255\127\255\255\255\8\2\0\0\0")
  write("bad.safetensors", "\255\255\255\255\255\255\255\127{}")
  write("small.safetensors", "\2\0\0\0\0\0\0\0{}")
  files[#files + 1] = TMP .. "/missing.csv"
  files[#files + 1] = TMP
  files[#files + 1] = TMP .. "/out.png"
  files[#files + 1] = TMP .. "/out.safetensors"
end

-- Sizes: small ones that work, and huge, negative and odd ones that must be
-- refused cleanly (product overflow, negative, beyond the memory limit).
local SMALL = {0, 1, 2, 3, 4}
local HOSTILE_INT = {-1, -2, 5, 7, 64, 1000000, 2147483648, 1 << 40, 1 << 62, math.maxinteger, math.mininteger}
local NUMBERS = {0.5, -0.0, 1.5, -3.25, 1e-30, 1e30, 1e300, nan, inf, -inf}
local STRINGS = {"", "abc", "float32", "float64", "int64", "int32", "mean", "sum", "none", "batchmean", "max",
                 "zero", "gaussian", "nearest", "bilinear", "viridis", "gray", "\0", string.rep("x", 300)}

local function small_shape()
  local n = R(0, 3)
  local s = {}
  for i = 1, n do s[i] = R(1, 3) end
  if R(8) == 1 and n > 0 then s[R(n)] = 0 end -- an empty dimension
  return s
end

local function tensor_of(shape, dtype)
  local ok, t = pcall(kdx.randn, shape)
  if not ok then return kdx.zeros{0} end
  if dtype == "int64" then
    t = (t * 2):abs():long()
  elseif dtype == "float64" then
    t = t:double()
  end
  return t
end

local SHAPES = {{2, 3}, {3}, {2, 3}, {1, 1, 4, 4}, {2, 1, 4, 4}, {2, 3, 4, 4}, {3, 2}, {4, 3}}

local makers = {
  function() return tensor_of(pick(SHAPES)) end,
  function() return tensor_of(pick(SHAPES)) end,
  function() return tensor_of(small_shape(), pick{"float32", "float64", "int64"}) end,
  function() return kdx.tensor(R(-2, 2)) end,
  function() return kdx.zeros{0} end,
  function() return kdx.zeros{0, 3} end,
  function() return kdx.tensor{nan, inf, -inf, 0} end,
  function() return kdx.full({2, 3}, nan) end,
  function() return kdx.tensor({0, 1, 2}):long() end,
  function() return kdx.tensor({-1, 5, 1 << 40}):long() end,
  function() return tensor_of({3, 2}):t() end, -- not contiguous
  function() return tensor_of({1, 3}):expand{4, 3} end, -- stride 0
  function() return tensor_of({2, 3}):requires_grad_(true) end,
  function() local x = tensor_of({2, 3}):requires_grad_(true); return (x * 2):sum() end,
  function() return tensor_of({2, 3}):narrow(2, 2, 2) end,
}
local function tensor() return pick(makers)() end

local function linear_model()
  local ok, m = pcall(function() return kdx.nn.Linear(3, 2) end)
  return ok and m or function(x) return x end
end
local function conv_model()
  local ok, m = pcall(function()
    return kdx.nn.Sequential{kdx.nn.Conv2d(1, 2, 3, {padding = 1}), kdx.nn.ReLU(), kdx.nn.Flatten(),
                             kdx.nn.Linear(32, 3)}
  end)
  return ok and m or function(x) return x end
end

local MODELS = {
  linear_model,
  conv_model,
  function() return function(x) return x end end,
  function() return function(x) return x:sum() end end,
  function() return function() error("model failed on purpose") end end,
  function() return function() return nil end end,
  function() return function() return "not a tensor" end end,
  function() return function(x) return kdx.zeros{x:size(1), 0} end end,
  function() return function(x) return kdx.full({x:size(1), 2}, nan) end end,
}

local OPTION_KEYS = {"dim", "keepdim", "dtype", "reduction", "target", "targets", "baseline", "baselines",
  "batch_size", "n_samples", "nsamples", "steps", "seed", "stdevs", "method", "layer", "temperature", "T",
  "alpha", "beta", "gamma", "padding", "stride", "kernel_size", "dilation", "groups", "eps", "weight", "bias",
  "mode", "size", "scale_factor", "align_corners", "value", "p", "training", "labels", "feature_mask",
  "n_features", "n_segments", "sliding_window_shapes", "strides", "k", "percentile", "cmap", "vmin", "vmax",
  "width", "height", "nrow", "shuffle", "drop_last", "classes", "n", "normalize", "sigma", "noise", "rule",
  "epsilon", "abs", "top_k", "fraction", "mask", "ids", "model", "teacher", "student", "x", "y", "inputs",
  "header", "label", "delimiter", "path", "max_iter", "tol", "kernel_width", "n_perturb", "perturbation",
  "compactness", "metric", "ignore_index", "label_smoothing", "log_target", "max_norm", "num_classes"}

local value, scene_call -- forward

local function options(depth)
  local t = {}
  for _ = 1, R(0, 4) do t[pick(OPTION_KEYS)] = value(depth + 1) end
  return t
end

local function plausible(depth)
  local r = R(10)
  if r <= 4 then return tensor_of(pick(SHAPES))
  elseif r <= 6 then return pick(SMALL)
  elseif r == 7 then return options(depth)
  elseif r == 8 then return pick(MODELS)()
  elseif r == 9 then return {R(1, 3), R(1, 3)}
  else return pick{"mean", "sum", "float32", "int64"} end
end

value = function(depth)
  depth = depth or 0
  if R(2) == 1 then return plausible(depth) end
  local r = R(20)
  if r == 1 then return nil
  elseif r == 2 then return R(2) == 1
  elseif r == 3 then return pick(SMALL)
  elseif r == 4 then return pick(HOSTILE_INT)
  elseif r == 5 then return pick(NUMBERS)
  elseif r == 6 then return pick(STRINGS)
  elseif r == 7 then return pick(files)
  elseif r <= 10 then return tensor()
  elseif r == 11 then return pick(MODELS)()
  elseif r == 12 then return depth < 2 and options(depth) or {}
  elseif r == 13 then -- a shape-like table, sometimes hostile
    local t = {}
    for i = 1, R(0, 4) do t[i] = R(3) == 1 and pick(HOSTILE_INT) or pick(SMALL) end
    return t
  elseif r == 14 then return {nan, "x", {}, true}
  elseif r == 15 then return depth < 2 and {value(depth + 1), value(depth + 1)} or {1}
  elseif r == 16 then return {tensor(), tensor()}
  elseif r == 17 then return coroutine.create(function() end)
  elseif r == 18 then return {{1, 2}, {3}}
  elseif r == 19 then return kdx -- a module table where a tensor or options belong
  else return io.stdout end
end

-- Half of the calls are almost right: a model and a batch that fit each
-- other, tensors of one shape, options with plausible keys, and then one or
-- two arguments swapped for hostile values, so that the calls get past the
-- first argument check into the algorithms.
local function scene()
  if R(2) == 1 then
    local n = pick{1, 2, 4}
    return {model = linear_model(), x = tensor_of({n, 3}), n = n, sample = {3}}
  end
  local n = pick{1, 2}
  return {model = conv_model(), x = tensor_of({n, 1, 4, 4}), n = n, sample = {1, 4, 4}}
end

local function scene_options(sc)
  local pool = {
    target = function() return pick{1, 2, 3, 0, -1, {1, 2}, kdx.tensor({1, 2}):long()} end,
    baseline = function() return pick{0, 0.5, nan, kdx.zeros_like(sc.x), kdx.zeros{1}} end,
    batch_size = function() return pick{1, 2, 3, 0, -1, 1 << 40} end,
    n_samples = function() return pick{1, 2, 5, 0, -3, 1 << 40} end,
    nsamples = function() return pick{1, 4, 0} end,
    steps = function() return pick{1, 2, 8, 0, -1, 1 << 40} end,
    seed = function() return pick{1, 7, -1, 1.5} end,
    stdevs = function() return pick{0, 0.1, -1, nan, inf} end,
    feature_mask = function()
      local ok, m = pcall(function() return kdx.zeros(sc.sample):long() end)
      return ok and m or {}
    end,
    sliding_window_shapes = function() return pick{sc.sample, {1}, {0}, {5, 5, 5}} end,
    strides = function() return pick{1, 2, 0, {1}} end,
    n_features = function() return pick{1, 2, 0, 100} end,
    k = function() return pick{1, 2, 0, -1, 1000} end,
    temperature = function() return pick{1, 4, 0, -1, nan} end,
    layer = function() return pick{"1", "2", "4", "0", "nope", sc.model} end,
  }
  local keys = {}
  for key in pairs(pool) do keys[#keys + 1] = key end
  table.sort(keys)
  local t = {}
  if R(5) <= 4 then t.target = pick{1, 2, {1, 2, 1, 2}, kdx.ones(sc.n):long()} end
  for _ = 1, R(0, 3) do local key = pick(keys); t[key] = pool[key]() end
  return t
end

local MODEL_FIRST = {["kdx.explain"] = true, ["kdx.explain.metrics"] = true, ["kdx.distill.metrics"] = true}

function scene_call(target, argv)
  local ns = target.name:match("^(.*)%.[^.]+$")
  local sc = scene()
  if MODEL_FIRST[ns] then
    argv[1], argv[2] = sc.model, sc.x
    local k = 3
    if ns == "kdx.explain.metrics" and R(2) == 1 then argv[3] = tensor_of(sc.x:shape()); k = 4 end
    argv[k] = scene_options(sc)
    return true
  elseif ns == "kdx.distill.loss" or ns == "kdx.nn.functional" or ns == "kdx" or ns == "kdx.Tensor" then
    local shape = pick{{sc.n, 3}, {sc.n, 1, 4, 4}, {sc.n}}
    argv[1] = tensor_of(shape)
    local extra = R(0, 3)
    for i = 2, extra + 1 do
      local r = R(4)
      argv[i] = r == 1 and tensor_of(shape) or r == 2 and kdx.tensor({1, 0}):long():narrow(1, 1, math.min(2, sc.n))
        or r == 3 and pick{1, 2, -1, 0} or scene_options(sc)
    end
    return true
  end
  return false
end

-- ---------------------------------------------------------------- running --

local function show(v, depth)
  depth = depth or 0
  local ty = type(v)
  if ty == "string" then return ("%q"):format(#v > 40 and v:sub(1, 40) .. "..." or v)
  elseif ty == "number" then
    if v ~= v then return "nan" elseif v == inf then return "inf" elseif v == -inf then return "-inf" end
    return tostring(v)
  elseif ty == "userdata" and kdx.is_tensor(v) then
    local ok, s = pcall(function()
      return ("tensor{%s}%s%s"):format(table.concat(v:shape(), ","), v:dtype(), v:is_contiguous() and "" or ",strided")
    end)
    return ok and s or "tensor(?)"
  elseif ty == "table" then
    if v == kdx then return "kdx" end
    if depth > 1 then return "{...}" end
    local parts = {}
    for k, x in pairs(v) do
      parts[#parts + 1] = (type(k) == "string" and (k .. "=") or "") .. show(x, depth + 1)
      if #parts > 8 then parts[#parts + 1] = "..."; break end
    end
    local mt = getmetatable(v)
    return (mt and "module" or "") .. "{" .. table.concat(parts, ", ") .. "}"
  end
  return ty
end

local progress = assert(real_open(TMP .. "/.progress", "wb"))
local function note(k, text)
  progress:seek("set")
  progress:write(("%d\t%s\n"):format(k, text)) -- the parent reads the first line only
  progress:flush()
end

local budget = args.budget
local function guard()
  local left = budget // 10000
  debug.sethook(function()
    left = left - 1
    if left <= 0 then
      debug.sethook()
      error("api_fuzz: instruction budget exhausted", 2)
    end
  end, "", 10000)
end

local calls = args.only and 1 or args.calls
local errors, returned = 0, 0
local first = args.only or 1
local baseline_live = kdx.live_tensors()
for k = first, first + calls - 1 do
  math.randomseed(args.seed, k)
  local target = pick(targets)
  local n = R(0, 4)
  local argv = {}
  local ok_build, build_err = pcall(function()
    if R(2) == 1 and scene_call(target, argv) then
      n = #argv
      for i = 1, n do if R(7) == 1 then argv[i] = value() end end
    elseif target.method then
      argv[1] = R(5) == 1 and value() or tensor()
      for i = 2, n + 1 do argv[i] = value() end
      n = n + 1
    else
      for i = 1, n do argv[i] = (i == 1 and R(5) <= 3) and tensor() or value() end
    end
  end)
  if not ok_build then error("api_fuzz: building call " .. k .. " failed: " .. tostring(build_err)) end
  local shown = {}
  for i = 1, n do shown[i] = show(argv[i]) end
  local text = target.name .. "(" .. table.concat(shown, ", ") .. ")"
  note(k, text)
  if args.verbose then io.stderr:write(k, "\t", text, "\n") end
  -- KDX_APIFUZZ_SELFTEST=K: call K kills the process with SIGSEGV, to check that a crash is reported.
  if tonumber(os.getenv("KDX_APIFUZZ_SELFTEST")) == k then real_execute("kill -SEGV $PPID") end
  guard()
  local ok, err = pcall(target.fn, table.unpack(argv, 1, n))
  debug.sethook()
  if ok then
    returned = returned + 1
  else
    errors = errors + 1
    if args.verbose then io.stderr:write("  -> ", tostring(err):sub(1, 200), "\n") end
  end
  -- Global switches a call may have flipped go back, so later calls see the defaults.
  pcall(kdx.set_grad_enabled, true)
  if k % 50 == 0 then collectgarbage() end
end
collectgarbage()
collectgarbage()
kdx.set_grad_enabled(true)
note(0, "(after the last call)")
progress:close()
print(("api_fuzz: seed %d, %d calls of %d functions (%d skipped), %d returned, %d raised, 0 crashes; live tensors %d -> %d")
  :format(args.seed, calls, #targets, (function() local c = 0 for _ in pairs(SKIP) do c = c + 1 end return c end)(),
          returned, errors, baseline_live, kdx.live_tensors()))
