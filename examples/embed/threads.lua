-- threads.lua — the work each lua_State does in examples/embed/threads.c: a
-- few training steps of a small CNN from a seed, then inference. Returns the
-- final loss and every output (%.9g), as one string to compare. Activations
-- of 512 KiB go through the engine's block cache, which the states share.
--   arguments: seed (integer), engine threads (integer, default 1)
local kdx = require "kdx"
local nn, F = kdx.nn, kdx.nn.functional
local seed_arg, threads_arg = ...
local seed = math.tointeger(tonumber(seed_arg)) or error("threads.lua: the seed must be an integer")

-- 1 for a host that owns its threads; more makes the states share the engine's pool
kdx.set_num_threads(math.tointeger(tonumber(threads_arg or 1)) or 1)
kdx.manual_seed(seed)
local model = nn.Sequential{
  nn.Conv2d(1, 8, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
  nn.Flatten(), nn.Linear(8 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 4),
}
local x = kdx.randn{64, 1, 16, 16}
local y = kdx.randint(1, 5, {64})
local opt = kdx.optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})
local loss
for _ = 1, 5 do
  opt:zero_grad()
  loss = F.cross_entropy(model(x), y)
  loss:backward()
  opt:step()
end
model:eval()
local out = kdx.no_grad(function() return model(x) end)
local parts = {("loss %.9g"):format(loss:item())}
for _, v in ipairs(out:reshape{-1}:totable()) do parts[#parts + 1] = ("%.9g"):format(v) end
return table.concat(parts, " ")
