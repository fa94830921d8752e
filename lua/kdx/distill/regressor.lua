--- The FitNets connector: maps a student feature to the teacher feature's
-- shape so that `kdx.distill.loss.hint` can compare them.
--
--     local reg = kdx.distill.Regressor({64, 16, 8, 8}, {64, 32, 8, 8})
--     local loss = kdx.distill.loss.hint(reg(fs), ft)
--
-- For 4-D features it is RepDistiller's ConvReg: a convolution to the
-- teacher's channels, then BatchNorm2d and ReLU. The kernel follows the
-- spatial sizes: 1x1 when they match; 3x3 with stride 2 and padding 1 when
-- the student's map is twice the teacher's; a valid (1+sH-tH)x(1+sW-tW)
-- convolution when it is otherwise larger. A teacher map larger than the
-- student's is an error (RepDistiller uses a transposed convolution for
-- exactly twice; kdx has none): pick a hint layer of at most the student's
-- size. For 2-D features it is a Linear layer.
-- @classmod kdx.distill.Regressor

local kdx = require "kdx"
local Module = require "kdx.nn.module"

local Regressor = Module:extend("Regressor")

local SOURCE = debug.getinfo(1, "S").source
local PACKAGE = SOURCE:match("^(@.*[/\\]kdx[/\\])distill[/\\]regressor%.lua$")

-- Raises "kdx.distill.Regressor: <message>" at the first caller outside the
-- kdx Lua package (the user's line, also through kdx.distill.run).
local function fail(fmt, ...)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if info == nil then break end
    local src = info.source
    local inside = src == "=[C]" or src == SOURCE or (PACKAGE and src:sub(1, #PACKAGE) == PACKAGE)
    if not inside then break end
    level = level + 1
  end
  error(("kdx.distill.Regressor: " .. fmt):format(...), level)
end

local function shape_str(s) return "[" .. table.concat(s, ",") .. "]" end

-- A feature shape without its batch dim: {C,H,W} / {N,C,H,W} -> {C,H,W};
-- {D} / {N,D} -> {D}.
local function feature_shape(name, s)
  if type(s) ~= "table" then fail("%s must be a shape table, got %s", name, type(s)) end
  for i = 1, #s do
    if math.type(s[i]) ~= "integer" or s[i] < 1 then
      fail("%s %s must hold positive integers", name, shape_str(s))
    end
  end
  if #s == 3 or #s == 1 then return {table.unpack(s)} end
  if #s == 4 or #s == 2 then return {table.unpack(s, 2)} end
  fail("%s must be {C,H,W} or {N,C,H,W} (maps) or {D} or {N,D} (vectors), got %s", name, shape_str(s))
end

--- Regressor(student_shape, teacher_shape, {relu = true, bn = true, dtype = "float32"}):
-- shapes with or without the batch dim; both maps ({C,H,W}) or both vectors ({D}).
function Regressor:init(student_shape, teacher_shape, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("options must be a table, got %s", type(opts)) end
  for k in pairs(opts) do
    if k ~= "relu" and k ~= "bn" and k ~= "dtype" then fail("unknown option '%s'", tostring(k)) end
  end
  local s, t = feature_shape("student_shape", student_shape), feature_shape("teacher_shape", teacher_shape)
  if #s ~= #t then
    fail("student shape %s and teacher shape %s are not both maps or both vectors", shape_str(student_shape),
      shape_str(teacher_shape))
  end
  local dt = opts.dtype or "float32"
  self.student_shape, self.teacher_shape = s, t
  if #s == 1 then
    self.linear = kdx.nn.Linear(s[1], t[1], {dtype = dt})
    return
  end
  local sc, sh, sw, tc, th, tw = s[1], s[2], s[3], t[1], t[2], t[3]
  if sh == 2 * th and sw == 2 * tw then
    self.conv = kdx.nn.Conv2d(sc, tc, 3, {stride = 2, padding = 1, dtype = dt})
  elseif sh >= th and sw >= tw then
    self.conv = kdx.nn.Conv2d(sc, tc, {1 + sh - th, 1 + sw - tw}, {dtype = dt})
  else
    fail("the teacher's map %dx%d is larger than the student's %dx%d; choose a teacher layer whose map is at "
      .. "most the student's", th, tw, sh, sw)
  end
  if opts.bn ~= false then self.bn = kdx.nn.BatchNorm2d(tc, {dtype = dt}) end
  self.use_relu = opts.relu ~= false
end

--- Maps x [N, student_shape...] to [N, teacher_shape...].
function Regressor:forward(x)
  local s = self.student_shape
  local ok = kdx.is_tensor(x) and x:dim() == #s + 1
  for i = 1, #s do ok = ok and x:size(i + 1) == s[i] end
  if not ok then
    fail("input must have shape [N,%s], got %s", table.concat(s, ","), kdx.is_tensor(x) and shape_str(x:shape())
      or type(x))
  end
  if self.linear then return self.linear(x) end
  local y = self.conv(x)
  if self.bn then y = self.bn(y) end
  if self.use_relu then y = y:relu() end
  return y
end

function Regressor:extra_repr()
  return ("%s -> %s"):format(shape_str(self.student_shape), shape_str(self.teacher_shape))
end

return Regressor
