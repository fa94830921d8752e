-- Run on 2 ranks by spec/dist_spec.lua:
--   mpirun --oversubscribe --allow-run-as-root -np 2 lua5.4 spec/dist/explain.lua
-- A dataset-wide integrated gradients split across 2 ranks with
-- kdx.dist.map_rows equals the 1-rank one. Exits 1 on failure.
local kdx = require "kdx"
local nn, dist = kdx.nn, kdx.dist

local rank = dist.rank()
local fails = 0
local function check(cond, what)
  if not cond then
    fails = fails + 1
    io.stderr:write(("rank %d: FAIL %s\n"):format(rank, what))
  end
end
check(dist.size() == 2, "size " .. dist.size())

local _, test = kdx.data.digits()
local x = test.x:narrow(1, 1, 41)            -- 41 rows: 20 on rank 0, 21 on rank 1
local y = test.y:narrow(1, 1, 41)
kdx.manual_seed(3)                           -- the same model on both ranks
local model = nn.Sequential{nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)}
model:eval()
local function ig(xs, ys) return kdx.explain.integrated_gradients(model, xs, {target = ys, steps = 16}) end

local split = dist.map_rows(ig, x, y)
local whole = ig(x, y)                       -- the 1-rank computation
check(split:dim() == 4 and split:size(1) == 41, "shape")
local diff = (split - whole):abs():max():item()
check(diff <= 1e-6, ("2-rank IG differs from 1-rank IG by %g"):format(diff))
check(whole:abs():max():item() > 0, "IG is not all zero")

dist.barrier()
if fails > 0 then os.exit(1) end
print(("rank %d: dataset-wide IG ok (max diff %.3g)"):format(rank, diff))
