-- A training run for spec/resume_spec.lua, in its own process so that it can
-- be killed: lua5.4 spec/helpers/resume_child.lua <train|distill> <checkpoint
-- path or -> <output path> <kill after this many optimizer steps, 0: never>
-- <resume: 1 or 0>. Writes the final weights (and the per-epoch losses as
-- metadata) to the output path; with a kill step it SIGKILLs itself right
-- after that step's update, before the loop has seen the step end.
local kdx = require "kdx"
local nn = kdx.nn

local which, ckpt, out, kill_at, resume = arg[1], arg[2], arg[3], math.tointeger(tonumber(arg[4])), arg[5] == "1"
local train = kdx.data.digits()

local function kill_self()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("l"):match("^(%d+)")
  f:close()
  os.execute("kill -KILL " .. pid)
  os.exit(3) -- not reached
end

-- Flatten, Linear, BatchNorm (buffers), ReLU, Dropout (the generator), Linear
local function mlp(hidden)
  return nn.Sequential{nn.Flatten(), nn.Linear(64, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.2),
    nn.Linear(hidden, 10)}
end

local function watch(opt)
  if kill_at > 0 then
    local n, step = 0, opt.step
    function opt.step(self, ...)
      local r = step(self, ...)
      n = n + 1
      if n == kill_at then kill_self() end
      return r
    end
  end
  return opt
end

kdx.manual_seed(5)
local loader = kdx.data.DataLoader(train, {batch_size = 64, shuffle = true, seed = 2})
local checkpoint = ckpt ~= "-" and {path = ckpt, every = 5} or nil
local resume_from = resume and ckpt or nil
local history, tensors = nil, {}
if which == "train" then
  local model = mlp(32)
  local opt = watch(kdx.optim.Adam(model:parameters(), {lr = 0.01}))
  history = kdx.train{model = model, data = loader, optimizer = opt, scheduler = kdx.optim.StepLR(opt, 1, 0.5),
    epochs = 3, checkpoint = checkpoint, resume = resume_from, log = false, progress = false}
  for k, v in pairs(model:state_dict()) do tensors["model." .. k] = v end
else
  local teacher = mlp(48)
  teacher:eval()
  local student = mlp(16)
  local final
  history, final = kdx.distill.run{teacher = teacher, student = student, data = loader, epochs = 3,
    optimizer = function(params) return watch(kdx.optim.SGD(params, {lr = 0.05, momentum = 0.9})) end,
    scheduler = function(opt) return kdx.optim.StepLR(opt, 2, 0.5) end,
    loss = {ce = 0.5, kd = 0.5, hint = 0.1}, hints = {{student = "2", teacher = "2", regressor = true}},
    checkpoint = checkpoint, resume = resume_from, log = false, progress = false}
  for k, v in pairs(student:state_dict()) do tensors["student." .. k] = v end
  for k, v in pairs(final.regressors[1]:state_dict()) do tensors["regressor." .. k] = v end
end
local meta = {epochs = tostring(#history)}
for i, h in ipairs(history) do meta["loss." .. i] = ("%q"):format(h.loss) end
kdx.save(out, tensors, meta)
