"""train_torch.py - PyTorch's side of the training benchmark in `make bench`.

usage: /usr/bin/python3 bench/train_torch.py THREADS MODEL EPOCHS   (MODEL = mlp | cnn)
       /usr/bin/python3 bench/train_torch.py import                 (time `import torch`)

The same recipe as bench/train.lua: Fashion-MNIST scaled to [0, 1], batch 128,
SGD lr 0.05 momentum 0.9, cross entropy, a fresh shuffle each epoch (randperm
and indexing of the in-memory tensors, as kdx.data.DataLoader does), then test
accuracy. Prints machine-readable lines for bench/report.lua (format in
bench/README.md), or a single "info torch unavailable REASON" line when torch
cannot be imported.
"""
import gc
import gzip
import os
import sys
import time

DATA = "/usr/share/datasets/fashion-mnist"


def emit(*fields):
    print(" ".join(str(f) for f in fields), flush=True)


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load(torch, prefix):
    """Images as float32 [N, 1, 28, 28] in [0, 1], labels as int64 [N]."""
    with gzip.open("%s/%s-images-idx3-ubyte.gz" % (DATA, prefix), "rb") as f:
        raw = f.read()
    x = torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=16)
    del raw
    x = x.to(torch.float32).div_(255).reshape(-1, 1, 28, 28)
    with gzip.open("%s/%s-labels-idx1-ubyte.gz" % (DATA, prefix), "rb") as f:
        y = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8, offset=8).to(torch.int64)
    return x, y


def main():
    loading = len(sys.argv) == 2 and sys.argv[1] == "import"
    if not loading and (len(sys.argv) != 4 or sys.argv[2] not in ("mlp", "cnn")):
        sys.stderr.write("usage: train_torch.py THREADS mlp|cnn EPOCHS  |  train_torch.py import\n")
        return 2
    # `import`: the time to load torch in a fresh process (run.sh starts
    # several, report.lua takes the median). The interpreter's own start-up is
    # not counted, as for `require "kdx"`.
    t0 = time.perf_counter()
    try:
        import torch
        from torch import nn
    except Exception as e:  # any failure to import means "no PyTorch here"
        emit("info torch unavailable", type(e).__name__)
        return 0
    if loading:
        emit("import torch 0 require", "%.2f" % ((time.perf_counter() - t0) * 1e3))
        return 0
    threads, model_name, epochs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    torch.set_num_threads(threads)
    torch.manual_seed(int(os.environ.get("KDX_BENCH_SEED", "1")))  # as in train.lua
    emit("info torch threads", torch.get_num_threads())

    # Data loading is not timed.
    xtr, ytr = load(torch, "train")
    xte, yte = load(torch, "t10k")

    if model_name == "mlp":
        model = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 5 * 5, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.functional.cross_entropy
    n, bs = xtr.shape[0], 128

    for epoch in range(1, epochs + 1):
        model.train()
        gc.collect()
        t0 = time.perf_counter()
        total = 0.0
        perm = torch.randperm(n)
        for at in range(0, n, bs):
            idx = perm[at:at + bs]
            x, y = xtr[idx], ytr[idx]
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * x.shape[0]
        dt = time.perf_counter() - t0
        emit("train torch", threads, model_name + ":epoch", "%.3f" % dt)
        emit("info torch", "%s_t%d_epoch%d_loss" % (model_name, threads, epoch), "%.4f" % (total / n))

    model.eval()
    correct = 0
    with torch.no_grad():
        for at in range(0, xte.shape[0], 1000):
            out = model(xte[at:at + 1000])
            correct += (out.argmax(1) == yte[at:at + 1000]).sum().item()
    emit("train torch", threads, model_name + ":acc", "%.2f" % (100 * correct / xte.shape[0]))
    emit("train torch", threads, model_name + ":rss", "%.1f" % peak_rss_mib())
    return 0


if __name__ == "__main__":
    sys.exit(main())
