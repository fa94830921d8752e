--- A lookup table: rows of weight [num_embeddings, dim] picked by 1-based indices.
-- @classmod kdx.nn.Embedding
local kdx = require "kdx"
local Module = require "kdx.nn.module"
local init = require "kdx.nn.initializers"

local Embedding = Module:extend("Embedding")

--- Embedding(num_embeddings, embedding_dim); weights from N(0, 1) as PyTorch.
function Embedding:init(n, dim, opts)
  opts = opts or {}
  if math.type(n) ~= "integer" or math.type(dim) ~= "integer" or n < 1 or dim < 1 then
    error("kdx.nn.Embedding: sizes must be positive integers", 3)
  end
  self.num_embeddings, self.embedding_dim = n, dim
  init.normal_(self:register_parameter("weight", kdx.empty({n, dim}, opts.dtype or "float32")), 0, 1)
end

function Embedding:forward(idx) return kdx.embedding(idx, self.weight) end

function Embedding:extra_repr() return ("%d, %d"):format(self.num_embeddings, self.embedding_dim) end

return Embedding
