"""PyTorch's side of bench/micro.lua (see there)."""
import sys
import time

import torch

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
torch.set_num_threads(threads)


def best_us(f, calls):
    for _ in range(5):
        f()
    best = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


x = torch.randn(60000, 1, 28, 28)
idx = torch.randperm(60000)[:128]
print("torch %d thread(s)  index_select 128 of 60000 rows [1,28,28]  %8.1f us"
      % (threads, best_us(lambda: x.index_select(0, idx), 200)))

h = torch.randn(128, 32, 8, 8, requires_grad=True)
g = torch.randn(128, 32, 8, 8)
m = torch.nn.BatchNorm2d(32)


def step():
    h.grad = None
    (m(h) * g).sum().backward()


print("torch %d thread(s)  BatchNorm2d   forward+backward [128,32,8,8]  %8.1f us" % (threads, best_us(step, 50)))
