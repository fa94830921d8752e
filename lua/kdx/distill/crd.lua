--- Contrastive representation distillation (Tian et al. 2020), as
-- RepDistiller's CRDLoss: both embeddings are projected by a Linear head to
-- feat_dim and L2-normalised; each sample's pair (student, teacher) is
-- contrasted with nce_k negatives drawn uniformly from two memory banks
-- that hold one embedding per training sample; the NCE loss is taken with
-- the student as anchor (against the teacher bank) and with the teacher as
-- anchor (against the student bank), and summed.
--
--     local crd = kdx.distill.CRD{s_dim = 64, t_dim = 256, n_data = #train}
--     -- the heads are trained with the student:
--     local opt = kdx.optim.SGD(concat(student:parameters(), crd:parameters()), ...)
--     local loss = ce + 0.8 * crd(fs, ft, idx)   -- idx: the samples' 1-based dataset indices
--
-- Scores are `exp(v . m / nce_t) / Z`, Z fixed from the first batch
-- (`mean score * n_data`, as the reference). The banks are buffers (saved in
-- the state dict, not trained) updated outside the graph in training mode:
-- `m <- normalize(nce_m * m + (1 - nce_m) * v)` at the batch's indices. In
-- eval mode the banks are left alone. Memory: 2 * n_data * feat_dim numbers.
-- @classmod kdx.distill.CRD

local kdx = require "kdx"
local Module = require "kdx.nn.module"
local F = require "kdx.nn.functional"

local CRD = Module:extend("CRD")

-- ContrastLoss's eps (RepDistiller crd/criterion.py)
local EPS = 1e-7

local SOURCE = debug.getinfo(1, "S").source
local PACKAGE = SOURCE:match("^(@.*[/\\]kdx[/\\])distill[/\\]crd%.lua$")

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
  error(("kdx.distill.CRD: " .. fmt):format(...), level)
end

local function shape_str(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

local function positive_int(opts, key, default)
  local v = opts[key]
  if v == nil then v = default end
  if v == nil then fail("%s is required", key) end
  if math.type(v) ~= "integer" or v < 1 then fail("%s must be a positive integer, got %s", key, tostring(v)) end
  return v
end

local DEFAULTS = {s_dim = true, t_dim = true, n_data = true, feat_dim = true, nce_k = true, nce_t = true,
  nce_m = true, dtype = true}

--- CRD{s_dim =, t_dim =, n_data =, feat_dim = 128, nce_k = 4096, nce_t = 0.07, nce_m = 0.5, dtype = "float32"}:
-- s_dim and t_dim are the flattened sizes of the student's and the teacher's
-- features, n_data the number of training samples (the banks' rows).
function CRD:init(opts)
  if type(opts) ~= "table" then fail("options must be a table, got %s", type(opts)) end
  for k in pairs(opts) do
    if not DEFAULTS[k] then fail("unknown option '%s'", tostring(k)) end
  end
  local s_dim, t_dim = positive_int(opts, "s_dim"), positive_int(opts, "t_dim")
  local n_data, feat = positive_int(opts, "n_data"), positive_int(opts, "feat_dim", 128)
  self.nce_k = positive_int(opts, "nce_k", 4096)
  self.nce_t = opts.nce_t or 0.07
  self.nce_m = opts.nce_m or 0.5
  if type(self.nce_t) ~= "number" or not (self.nce_t > 0) then fail("nce_t must be a positive number") end
  if type(self.nce_m) ~= "number" or not (self.nce_m >= 0 and self.nce_m <= 1) then
    fail("nce_m must be a number in [0, 1]")
  end
  local dt = opts.dtype or "float32"
  self.s_dim, self.t_dim, self.n_data, self.feat_dim = s_dim, t_dim, n_data, feat
  self.embed_s = kdx.nn.Linear(s_dim, feat, {dtype = dt})
  self.embed_t = kdx.nn.Linear(t_dim, feat, {dtype = dt})
  local stdv = 1 / math.sqrt(feat / 3)
  self:register_buffer("memory_s", kdx.rand({n_data, feat}, dt) * (2 * stdv) - stdv)
  self:register_buffer("memory_t", kdx.rand({n_data, feat}, dt) * (2 * stdv) - stdv)
  -- the normalisation constants {Z_s, Z_t}; negative until the first batch sets them
  self:register_buffer("z", kdx.tensor({-1, -1}, "float64"))
end

-- Linear head, then L2 normalisation, of x [B, ...] flattened.
local function embed(head, x)
  return F.normalize(head(x:reshape{x:size(1), -1}))
end

-- RepDistiller's ContrastLoss of scores x [B, K+1] (positive first) with
-- noise probability 1/n_data.
local function nce(x, n_data)
  local B, m = x:size(1), x:size(2) - 1
  local mpn = m / n_data
  local pos = x:narrow(2, 1, 1)
  local neg = x:narrow(2, 2, m)
  local log_d1 = (pos / (pos + (mpn + EPS))):log()
  local log_d0 = (mpn / (neg + (mpn + EPS))):log()
  return -(log_d1:sum() + log_d0:sum()) / B
end

local function check_indices(name, idx, shape, n)
  if not kdx.is_tensor(idx) or idx:dtype() ~= "int64" then
    fail("%s must be an int64 tensor of 1-based sample indices", name)
  end
  local ok = idx:dim() == #shape
  for i = 1, #shape do ok = ok and idx:size(i) == shape[i] end
  if not ok then fail("%s must have shape [%s], got %s", name, table.concat(shape, ","), shape_str(idx)) end
  local lo, hi = idx:amin():item(), idx:amax():item()
  if lo < 1 or hi > n then fail("%s holds %d, outside [1, %d] (n_data)", name, lo < 1 and lo or hi, n) end
end

local function check_features(name, f, dim)
  if not kdx.is_tensor(f) then fail("%s must be a tensor", name) end
  if f:dim() < 2 or f:size(1) == 0 or f:numel() // f:size(1) ~= dim then
    fail("%s must be [B, ...] with %d features per sample, got %s", name, dim, shape_str(f))
  end
end

-- Scores exp(m . v / T) of anchors v [B,d] against the bank rows at idx
-- [B,K+1]: [B,K+1]. Two exact ways: gather the B(K+1) rows and multiply
-- (B(K+1)d numbers moved, at random places), or multiply the whole bank
-- and pick (one GEMM, an N x B matrix). The second is several times faster
-- while N <= (K+1)d (60,000 samples, 4096 negatives, d 128); `dense`
-- (nil: choose so) forces one way. The GEMM keeps its operand for the
-- gradient, so a bank that is about to be updated in place goes in as a copy.
local function scores(bank, idx, v, T, dense, will_update)
  local B, K1, d = idx:size(1), idx:size(2), v:size(2)
  if dense == nil then dense = bank:size(1) <= K1 * d end
  local s
  if dense then
    if will_update and v:requires_grad() then bank = bank:clone() end
    s = kdx.matmul(bank, v:t()):gather(1, idx:t()):t()
  else
    s = kdx.matmul(kdx.embedding(idx, bank), v:view{B, d, 1}):view{B, K1}
  end
  return (s / T):exp()
end

-- m <- normalize(momentum * m + (1 - momentum) * v) at rows idx.
local function update(bank, idx, v, momentum)
  local B, d = v:size(1), v:size(2)
  local pos = bank:index_select(1, idx) * momentum + v:detach() * (1 - momentum)
  pos = pos / pos:norm(2, 2, true)
  bank:scatter_(1, idx:view{B, 1}:expand{B, d}, pos)
end

--- The CRD loss of student features f_s [B, ...] and teacher features f_t
-- [B, ...] (flattened to s_dim and t_dim) for the samples idx (int64 [B],
-- 1-based dataset indices). contrast_idx (optional, int64 [B, nce_k+1],
-- positive first) replaces the uniform draw of negatives, as RepDistiller's
-- "exact" mode. Returns a 0-d tensor.
function CRD:forward(f_s, f_t, idx, contrast_idx)
  check_features("student features", f_s, self.s_dim)
  check_features("teacher features", f_t, self.t_dim)
  local B, N = f_s:size(1), self.n_data
  if f_t:size(1) ~= B then
    fail("student features %s and teacher features %s have different batch sizes", shape_str(f_s), shape_str(f_t))
  end
  check_indices("idx", idx, {B}, N)
  if contrast_idx == nil then
    contrast_idx = kdx.cat({idx:view{B, 1}, kdx.randint(1, N + 1, {B, self.nce_k})}, 2)
  else
    local c = contrast_idx
    if not kdx.is_tensor(c) or c:dim() ~= 2 or c:size(1) ~= B or c:size(2) < 2 then
      fail("contrast_idx must be an int64 tensor [B, K+1] (the positive first, K >= 1) with B = %d, got %s", B,
        kdx.is_tensor(c) and shape_str(c) or type(c))
    end
    check_indices("contrast_idx", c, {B, c:size(2)}, N)
  end
  local v_s, v_t = embed(self.embed_s, f_s), embed(self.embed_t, f_t)
  local T = self.nce_t
  -- the student anchored in the teacher bank, and the teacher in the student bank
  local out_s = scores(self.memory_t, contrast_idx, v_s, T, self._dense, self.training)
  local out_t = scores(self.memory_s, contrast_idx, v_t, T, self._dense, self.training)
  local z = self.z
  kdx.no_grad(function()
    if z:get(1) < 0 then z:set(1, out_s:mean():item() * N) end
    if z:get(2) < 0 then z:set(2, out_t:mean():item() * N) end
  end)
  out_s, out_t = out_s / z:get(1), out_t / z:get(2)
  if self.training then
    kdx.no_grad(function()
      update(self.memory_s, idx, v_s, self.nce_m)
      update(self.memory_t, idx, v_t, self.nce_m)
    end)
  end
  return nce(out_s, N) + nce(out_t, N)
end

function CRD:extra_repr()
  return ("s_dim=%d, t_dim=%d, feat_dim=%d, n_data=%d, nce_k=%d, nce_t=%g, nce_m=%g"):format(self.s_dim, self.t_dim,
    self.feat_dim, self.n_data, self.nce_k, self.nce_t, self.nce_m)
end

return CRD
