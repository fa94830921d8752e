-- A short tour of kdx tensors: creation, 1-based indexing, views, broadcasting,
-- reductions, matmul and a convolution. Run it with `make demo`, or
--   lua5.4 examples/01_tensor_tour.lua [--small]
-- (--small, used by the tests, shrinks the sizes so it runs in a blink).
local kdx = require "kdx"

local small = arg and arg[1] == "--small"
kdx.manual_seed(42)

print("kdx " .. kdx._VERSION .. " on " .. kdx.get_num_threads() .. " thread(s)\n")

-- Tensors come from nested tables, or from constructors with a shape.
local a = kdx.tensor{{1, 2, 3}, {4, 5, 6}}
print("a =", a)
print("a has shape {" .. table.concat(a:shape(), ",") .. "} and dtype " .. a:dtype())

-- Dims and indices are 1-based, as in Torch7; negative ones count from the end.
print("a:get(2, 3) =", a:get(2, 3), "  a:get(-1, 1) =", a:get(-1, 1))

-- Views share storage: writing through one shows through the other.
local col = a:select(2, 1)
col:fill_(0)
print("after zeroing column 1 through a view:", a)

-- Broadcasting follows NumPy/PyTorch; numbers work on either side.
local centered = a - a:mean(1, true)
print("column-centered a =", centered)
print("2 * a + 1 =", 2 * a + 1)

-- Reductions return values and 1-based indices.
local values, idx = kdx.tensor{{1, 9, 2}, {7, 0, 8}}:max(2)
print("row maxima", values, "at columns", idx)

-- Matrix products go to OpenBLAS; transposed views cost no copy.
local n = small and 64 or 512
local x = kdx.randn{n, n}
local t0 = os.clock()
local y = kdx.matmul(x, x:t())
local dt = os.clock() - t0
print(string.format("matmul %dx%d: %.1f ms of cpu; mean of diag(x x^T) = %.1f (about n)", n, n, dt * 1e3,
  (y * kdx.eye(n)):sum():item() / n))

-- A convolution and a pooling on a Fashion-MNIST-sized batch.
local batch = small and 4 or 128
local images = kdx.rand{batch, 1, 28, 28}
local filters = kdx.randn{16, 1, 3, 3} * 0.1
local feats = kdx.conv2d(images, filters, kdx.zeros{16}, {padding = 1}):relu()
local pooled = kdx.max_pool2d(feats, 2)
print("conv2d + relu + max_pool2d:", "{" .. table.concat(pooled:shape(), ",") .. "}")

-- Softmax is stable at extreme logits.
print("softmax of {1e4, 0, -1e4}:", kdx.softmax(kdx.tensor{1e4, 0, -1e4}, 1))

-- Bad input is a clear Lua error, never a crash.
local ok, err = pcall(kdx.matmul, kdx.zeros{2, 3}, kdx.zeros{4, 5})
print("a wrong shape says:", ok, err)
