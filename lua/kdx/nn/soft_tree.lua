--- A soft decision tree (Frosst & Hinton 2017, "Distilling a Neural Network
-- Into a Soft Decision Tree"): a complete binary tree whose inner node i
-- sends x to its first child with probability p_i(x) = sigmoid(beta (w_i . x
-- + b_i)) and to its second with 1 - p_i(x); leaf l holds a class
-- distribution Q_l = softmax(phi_l). The probability of reaching leaf l,
-- P_l(x), is the product of the branch probabilities on its path.
--
-- Nodes are numbered breadth-first from 1 (the root): node k has children 2k
-- and 2k + 1; leaves are numbered 1..2^depth from left to right.
--
-- `forward(x)` returns log sum_l P_l(x) Q_l, the log-probabilities of the
-- mixture, so the tree fits wherever a classifier's log-probabilities or
-- logits are expected (accuracy, kdx.distill.run's kd and ce terms).
-- `loss(x, targets)` is the paper's objective, -sum_l P_l sum_k T_k log Q_lk
-- averaged over the batch, plus the balance penalty.
-- @classmod kdx.nn.SoftDecisionTree
local kdx = require "kdx"
local Module = require "kdx.nn.module"
local init = require "kdx.nn.initializers"
local F = require "kdx.nn.functional"
local args = require "kdx.args"

local raise = args.failer("kdx.nn.SoftDecisionTree")
-- fail("", ...) for the constructor, fail("loss", ...) for a method.
local function fail(method, fmt, ...) raise(method == "" and "" or ":" .. method, fmt, ...) end
local Tree = Module:extend("SoftDecisionTree")

local function positive_int(fname, key, v, lo)
  if math.type(v) ~= "integer" or v < lo then
    fail(fname, "%s must be an integer >= %d, got %s", key, lo, tostring(v))
  end
  return v
end

--- SoftDecisionTree{depth=, input=, classes=, inverse_temperature=1, penalty=1e-3, dtype="float32"}.
function Tree:init(opts)
  if type(opts) ~= "table" then fail("", "takes an options table {depth=, input=, classes=}, got %s", args.what(opts)) end
  self.depth = positive_int("", "depth", opts.depth, 1)
  if self.depth > 16 then fail("", "depth must be <= 16, got %d", self.depth) end
  self.input = positive_int("", "input", opts.input, 1)
  self.classes = positive_int("", "classes", opts.classes, 2)
  local beta = opts.inverse_temperature or 1
  if type(beta) ~= "number" or not (beta > 0) then fail("", "inverse_temperature must be a positive number") end
  local lambda = opts.penalty or 1e-3
  if type(lambda) ~= "number" or not (lambda >= 0) then fail("", "penalty must be a number >= 0") end
  self.inverse_temperature, self.penalty_strength = beta, lambda
  local inner, leaves = 2 ^ self.depth - 1, 2 ^ self.depth
  self.n_inner, self.n_leaves = math.tointeger(inner), math.tointeger(leaves)
  local dt = opts.dtype or "float32"
  -- inner nodes as in nn.Linear (PyTorch's initialisation); leaf logits small
  -- and random, so that leaves differ from the start
  local w = self:register_parameter("weight", kdx.empty({self.n_inner, self.input}, dt))
  init.kaiming_uniform_(w, {a = math.sqrt(5)})
  local bound = 1 / math.sqrt(self.input)
  init.uniform_(self:register_parameter("bias", kdx.empty({self.n_inner}, dt)), -bound, bound)
  init.normal_(self:register_parameter("leaves", kdx.empty({self.n_leaves, self.classes}, dt)), 0, 0.1)
end

-- x [N, ...] -> [N, input], checked.
function Tree:_flat(fname, x)
  if not kdx.is_tensor(x) then fail(fname, "x must be a tensor [N, features], got %s", args.what(x)) end
  if x:dim() < 2 then fail(fname, "x must be a batch [N, ...], got %d dims", x:dim()) end
  local flat = x:dim() == 2 and x or x:reshape{x:size(1), -1}
  if flat:size(2) ~= self.input then
    fail(fname, "the tree takes %d features per sample, got %d", self.input, flat:size(2))
  end
  return flat
end

-- The logits z = beta (x W^T + b) [N, inner] and the log path probability of
-- every level's nodes: levels[d + 1] is [N, 2^d] for d = 0..depth.
function Tree:_paths(fname, x)
  local z = kdx.addmm(self.bias, self:_flat(fname, x), self.weight:t()) * self.inverse_temperature
  local n = z:size(1)
  local levels = {kdx.zeros({n, 1}, z:dtype())}
  for d = 0, self.depth - 1 do
    local width = math.tointeger(2 ^ d)
    local zd = z:narrow(2, width, width) -- nodes 2^d .. 2^(d+1) - 1
    local lp = levels[d + 1]
    -- children of the j-th node of the level sit at 2j - 1 (first) and 2j
    local both = kdx.stack({lp + F.logsigmoid(zd), lp + F.logsigmoid(-zd)}, 3)
    levels[d + 2] = both:reshape{n, 2 * width}
  end
  return z, levels
end

--- log sum_l P_l(x) Q_l [N, classes]; keeps what penalty() needs.
function Tree:forward(x)
  local z, levels = self:_paths("forward", x)
  self._last = {z = z, levels = levels}
  local logq = kdx.log_softmax(self.leaves, 2)                       -- [L, C]
  local joint = levels[#levels]:unsqueeze(3) + logq:unsqueeze(1)    -- [N, L, C]
  return joint:logsumexp(2)
end

--- The probability of reaching each leaf, P [N, leaves] (rows sum to 1).
function Tree:leaf_probabilities(x)
  local _, levels = self:_paths("leaf_probabilities", x)
  return levels[#levels]:exp()
end

--- The balance penalty of the last forward pass: -lambda sum_i 2^-d(i)
-- (log alpha_i + log(1 - alpha_i)) / 2, alpha_i = sum_x P_i p_i / sum_x P_i.
function Tree:penalty()
  local last = self._last
  if not last then fail("penalty", "call the tree on a batch first") end
  local total
  for d = 0, self.depth - 1 do
    local width = math.tointeger(2 ^ d)
    local reach = last.levels[d + 1]:exp()                          -- P_i [N, 2^d]
    local p = last.z:narrow(2, width, width):sigmoid()
    -- a node no sample reaches (its reach underflows to 0 in a deep tree)
    -- or one that sends every sample the same way would make log(alpha) or
    -- log(1 - alpha) infinite and the whole step NaN: the reach is floored
    -- at 1e-6 (so the quotient's gradient, num / den^2, stays finite in
    -- float32) and alpha kept in [1e-6, 1 - 1e-6] (no gradient from a
    -- clamped node)
    local alpha = ((reach * p):sum(1) / reach:sum(1):clamp(1e-6, nil)):clamp(1e-6, 1 - 1e-6)
    local term = ((alpha:log() + (-alpha + 1):log()):sum()) * (-0.5 * self.penalty_strength * 2 ^ -d)
    total = total and total + term or term
  end
  return total
end

--- The paper's loss: -sum_l P_l sum_k T_k log Q_lk, averaged over the batch,
-- plus the balance penalty (opts.penalty = false leaves it out). targets:
-- 1-based classes (int64 [N]) or probabilities [N, classes] (a teacher's
-- softened outputs).
function Tree:loss(x, targets, opts)
  opts = opts or {}
  self:forward(x)
  local leafp = self._last.levels[#self._last.levels]:exp()         -- [N, L]
  local n = leafp:size(1)
  local t
  if kdx.is_tensor(targets) and targets:dtype() == "int64" then
    if targets:dim() ~= 1 or targets:size(1) ~= n then fail("loss", "targets must be [%d] classes", n) end
    t = F.one_hot(targets, self.classes):to(leafp:dtype())
  elseif kdx.is_tensor(targets) then
    if targets:dim() ~= 2 or targets:size(1) ~= n or targets:size(2) ~= self.classes then
      fail("loss", "soft targets must be [%d, %d], got [%s]", n, self.classes, table.concat(targets:shape(), ","))
    end
    t = targets:to(leafp:dtype())
  else
    fail("loss", "targets must be a tensor of classes or probabilities, got %s", args.what(targets))
  end
  local logq = kdx.log_softmax(self.leaves, 2)
  local per = (leafp * kdx.matmul(t, logq:t())):sum(2)              -- sum_l P_l (T . log Q_l)
  local loss = -per:mean()
  if opts.penalty ~= false and self.penalty_strength > 0 then loss = loss + self:penalty() end
  return loss
end

--- Classes [N] (1-based): of the leaf with the largest path probability
-- (opts.mode = "max_path", the paper's choice, one readable path) or of the
-- mixture ("mixture").
function Tree:predict(x, opts)
  local mode = (opts or {}).mode or "max_path"
  return kdx.no_grad(function()
    if mode == "mixture" then return self:forward(x):argmax(2) end
    if mode ~= "max_path" then fail("predict", "mode must be \"max_path\" or \"mixture\", got %s", tostring(mode)) end
    local leaf = self:leaf_probabilities(x):argmax(2)
    return self.leaves:argmax(2):index_select(1, leaf)
  end)
end

--- The decision path of each sample to its most probable leaf: a list of
-- {leaf=, probability=, class=, distribution={...}, path={{node=, p_first=,
-- branch="first"|"second", probability=}, ...}}; a branch's probability is
-- p_first or 1 - p_first, and their product is the leaf's probability.
function Tree:explain(x)
  return kdx.no_grad(function()
    local z = self:_paths("explain", x)
    local p = z:sigmoid():to("float64")
    local leafp = self:leaf_probabilities(x):to("float64")
    local q = kdx.softmax(self.leaves, 2):to("float64")
    local out = {}
    for i = 1, z:size(1) do
      local leaf = leafp:select(1, i):argmax():item()
      local node, path = 1, {}
      -- the leaf's number in binary, read from the top, gives the branches
      for d = self.depth - 1, 0, -1 do
        local second = ((leaf - 1) >> d) & 1 == 1
        local pf = p:get(i, node)
        path[#path + 1] = {node = node, p_first = pf, branch = second and "second" or "first",
          probability = second and 1 - pf or pf}
        node = 2 * node + (second and 1 or 0)
      end
      local dist = {}
      for c = 1, self.classes do dist[c] = q:get(leaf, c) end
      out[i] = {leaf = leaf, probability = leafp:get(i, leaf), class = q:select(1, leaf):argmax():item(),
        distribution = dist, path = path}
    end
    return out
  end)
end

--- The inner nodes' weights as pictures: [inner, H, W] for opts.image_shape =
-- {H, W} (or [inner, input] without it); node k is row k.
function Tree:filters(opts)
  local shape = (opts or {}).image_shape
  local w = self.weight:detach()
  if not shape then return w:clone() end
  if type(shape) ~= "table" or #shape ~= 2 or shape[1] * shape[2] ~= self.input then
    fail("filters", "image_shape must be {H, W} with H * W = %d", self.input)
  end
  return w:reshape{self.n_inner, shape[1], shape[2]}
end

function Tree:extra_repr()
  return ("depth=%d, input=%d, classes=%d, inverse_temperature=%g, penalty=%g"):format(self.depth, self.input,
    self.classes, self.inverse_temperature, self.penalty_strength)
end

return Tree
