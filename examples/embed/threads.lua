-- threads.lua — the work each lua_State does in examples/embed/threads.c: a
-- few training steps of a small MLP from a seed, then inference. Returns the
-- final loss and every output (%.9g), as one string to compare.
--   argument: seed (integer)
local kdx = require "kdx"
local nn, F = kdx.nn, kdx.nn.functional
local seed = math.tointeger(tonumber((...))) or error("threads.lua: the seed must be an integer")

kdx.set_num_threads(1)
kdx.manual_seed(seed)
local model = nn.Sequential{nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)}
local x = kdx.randn{64, 16}
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
