--- kdx.dist: collectives across processes (MPI), or one process without it.
-- Ranks are 0-based, as MPI, mpirun and every log print them: a rank is a
-- process id, not an index into a Lua table. Launched by mpirun (Open MPI
-- sets OMPI_COMM_WORLD_SIZE) and built with MPI (kdx/dist_mpi.so), the
-- functions below run over MPI_COMM_WORLD; otherwise size() is 1, rank() is 0
-- and every collective is the identity, so the same script runs unchanged.
-- See docs/distributed.md.
-- @module kdx.dist

local core = require "kdx.core"

local M = {}

local OPS = {sum = true, mean = true, max = true, min = true}

local function check_tensor(fname, t)
  if not core.is_tensor(t) then
    error(("kdx.dist.%s: argument 1 must be a tensor, got %s"):format(fname, type(t)), 3)
  end
end

local function check_op(op)
  if op ~= nil and not OPS[op] then
    error(("kdx.dist.allreduce: op must be 'sum', 'mean', 'max' or 'min', got %s"):format(tostring(op)), 3)
  end
end

-- The MPI module when this process was launched by mpirun, else nil.
local function load_mpi()
  local launched = tonumber(os.getenv("OMPI_COMM_WORLD_SIZE") or "")
  if not launched then return nil end
  local ok, mod = pcall(require, "kdx.dist_mpi")
  if ok then return mod end
  if launched > 1 then
    error("kdx.dist: launched on " .. launched .. " ranks but kdx was built without MPI "
      .. "(make MPI=1 needs mpicc; scripts/deps.sh --mpi installs Open MPI): " .. tostring(mod), 2)
  end
  return nil
end

local mpi = load_mpi()

--- "mpi" when the collectives run over MPI, "single" for the one-process fallback.
M.backend = mpi and "mpi" or "single"

if mpi then
  mpi.init()
  -- Finalise when the Lua state closes (MPI wants it before the process exits).
  M._finalizer = setmetatable({}, {__gc = function() mpi.finalize() end})

  --- Initialises the collectives (done on load; a second call does nothing).
  function M.init() mpi.init() end
  --- Ends MPI; no collective may follow.
  function M.finalize() mpi.finalize() end
  --- This process's rank, 0-based.
  function M.rank() return mpi.rank() end
  --- The number of processes.
  function M.size() return mpi.size() end
  --- Waits until every rank has reached it.
  function M.barrier() mpi.barrier() end
  --- t = op over ranks of t, in place (float32/float64; op "sum" (default), "mean", "max", "min"); returns t.
  function M.allreduce(t, op)
    check_tensor("allreduce", t); check_op(op)
    return mpi.allreduce(t, op or "sum")
  end
  --- t = rank root's t (root 0-based, default 0), in place; returns t.
  function M.broadcast(t, root)
    check_tensor("broadcast", t)
    return mpi.broadcast(t, root or 0)
  end
  --- A new tensor: the ranks' t concatenated along dim 1 in rank order.
  function M.allgather(t)
    check_tensor("allgather", t)
    return mpi.allgather(t)
  end
else
  --- Initialises the collectives (nothing to do on one process).
  function M.init() end
  --- Ends the collectives (nothing to do on one process).
  function M.finalize() end
  --- This process's rank, 0-based: 0.
  function M.rank() return 0 end
  --- The number of processes: 1.
  function M.size() return 1 end
  --- Waits for every rank: returns at once.
  function M.barrier() end
  --- The reduction over one rank: t itself (checked as the MPI version checks it).
  function M.allreduce(t, op)
    check_tensor("allreduce", t); check_op(op)
    local dt = t:dtype()
    if dt ~= "float32" and dt ~= "float64" then
      error("kdx.dist.allreduce: the tensor must be float32 or float64, got " .. dt, 2)
    end
    return t
  end
  --- Rank root's t: t itself (root must be 0).
  function M.broadcast(t, root)
    check_tensor("broadcast", t)
    if root ~= nil and root ~= 0 then
      error(("kdx.dist.broadcast: root %s is not a rank (0..0)"):format(tostring(root)), 2)
    end
    return t
  end
  --- The ranks' t concatenated along dim 1: a copy of t.
  function M.allgather(t)
    check_tensor("allgather", t)
    if t:dim() < 1 then error("kdx.dist.allgather: the tensor needs at least one dim", 2) end
    return t:clone()
  end
end

return M
