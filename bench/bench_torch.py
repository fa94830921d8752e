"""bench_torch.py - PyTorch's side of `make bench`, one thread count per process.

usage: /usr/bin/python3 bench/bench_torch.py THREADS SECONDS SIZES ADD_ITERS

The same cells and timing protocol as bench/bench.lua. Prints
machine-readable lines for bench/report.lua (format in bench/README.md), or a
single "info torch unavailable REASON" line when torch cannot be imported.
"""
import gc
import sys
import time

BATCHES = 5


def emit(*fields):
    print(" ".join(str(f) for f in fields), flush=True)


def time_per_call(fn, budget):
    """Best (lowest) seconds per call over BATCHES batches filling `budget` seconds."""
    fn()  # warm up
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-9)
    reps = max(1, int(budget / BATCHES / one))
    best = float("inf")
    for _ in range(BATCHES):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def main():
    if len(sys.argv) != 5:
        sys.stderr.write("usage: bench_torch.py THREADS SECONDS SIZES ADD_ITERS\n")
        return 2
    threads, seconds = int(sys.argv[1]), float(sys.argv[2])
    sizes = [int(s) for s in sys.argv[3].split(",") if s]
    add_iters = int(sys.argv[4])
    try:
        import torch
    except Exception as e:  # any failure to import means "no PyTorch here"
        emit("info torch unavailable", type(e).__name__)
        return 0

    torch.set_num_threads(threads)
    torch.manual_seed(42)
    emit("info torch version", torch.__version__)
    emit("info torch threads", torch.get_num_threads())
    emit("info torch mkldnn", int(torch.backends.mkldnn.is_available()))

    with torch.no_grad():
        # 1. matmul, a fresh output per call as in kdx.
        for n in sizes:
            a, b = torch.randn(n, n), torch.randn(n, n)
            s = time_per_call(lambda: torch.matmul(a, b), seconds)
            emit("matmul torch", threads, n, "%.3f" % (2 * n ** 3 / s / 1e9))

        # 2. conv2d forward with bias, Fashion-MNIST sized.
        convs = [
            ("128x1x28x28:16x1x3x3:p1", (128, 1, 28, 28), (16, 1, 3, 3), 1),
            ("128x16x14x14:32x16x3x3:p1", (128, 16, 14, 14), (32, 16, 3, 3), 1),
        ]
        for key, xs, ws, pad in convs:
            x, w, bias = torch.randn(*xs), torch.randn(*ws), torch.randn(ws[0])
            s = time_per_call(
                lambda: torch.nn.functional.conv2d(x, w, bias, stride=1, padding=pad), seconds)
            emit("conv torch", threads, key, "%.4f" % (s * 1e3))

    # 3. Per-call overhead, outside no_grad as a user's plain loop would be.
    a, b = torch.randn(4), torch.randn(4)

    def loop(iters):
        for _ in range(iters):
            c = a + b  # noqa: F841

    loop(add_iters // 10)
    best = float("inf")
    for _ in range(BATCHES):
        gc.collect()
        t0 = time.perf_counter()
        loop(add_iters)
        best = min(best, (time.perf_counter() - t0) / add_iters)
    emit("add torch", threads, 4, "%.1f" % (best * 1e9))
    return 0


if __name__ == "__main__":
    sys.exit(main())
