"""explain_torch.py - PyTorch's side of table 5 of `make bench`.

usage: /usr/bin/python3 bench/explain_torch.py THREADS

Hand-written PyTorch loops for the attribution methods kdx runs in
bench/explain.lua (the same CNN shape, image counts, chunk size 128 and
settings), as a user without Captum would write them. Prints
"explain torch THREADS METHOD MS" lines (best of ROUNDS runs, ms per image).
"""
import gc
import sys
import time

ROUNDS = 3
CHUNK = 128


def emit(*fields):
    print(" ".join(str(f) for f in fields), flush=True)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: /usr/bin/python3 bench/explain_torch.py THREADS")
    threads = int(sys.argv[1])
    try:
        import numpy as np
        import torch
        from torch import nn
    except ImportError as e:
        emit("info torch unavailable", type(e).__name__)
        return
    torch.set_num_threads(threads)
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10)).eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def outputs(batch, t):
        with torch.no_grad():
            return torch.cat([model(batch[i:i + CHUNK])[:, t] for i in range(0, len(batch), CHUNK)])

    def saliency(x, t):
        x = x.clone().requires_grad_(True)
        model(x)[:, t].sum().backward()
        return x.grad.abs()

    nodes, weights = np.polynomial.legendre.leggauss(50)
    alphas = torch.tensor((nodes + 1) / 2, dtype=torch.float32)
    wts = torch.tensor(weights / 2, dtype=torch.float32)

    def ig50(x, t):
        out = torch.zeros_like(x)
        steps = len(alphas)
        rows = [(i, k) for i in range(len(x)) for k in range(steps)]
        for lo in range(0, len(rows), CHUNK):
            part = rows[lo:lo + CHUNK]
            ids = torch.tensor([i for i, _ in part])
            al = alphas[[k for _, k in part]].view(-1, 1, 1, 1)
            pts = (x[ids] * al).requires_grad_(True)
            model(pts)[:, t].sum().backward()
            out.index_add_(0, ids, pts.grad * wts[[k for _, k in part]].view(-1, 1, 1, 1))
        return out * x

    def occlusion(x, t):
        attr = torch.zeros_like(x)
        for n in range(len(x)):
            img = x[n]
            batch = []
            for i in range(0, 28, 4):
                for j in range(0, 28, 4):
                    o = img.clone()
                    o[:, i:i + 4, j:j + 4] = 0
                    batch.append(o)
            batch = torch.stack(batch)
            full = outputs(img.unsqueeze(0), t)[0]
            diffs = full - outputs(batch, t)
            k = 0
            for i in range(0, 28, 4):
                for j in range(0, 28, 4):
                    attr[n, :, i:i + 4, j:j + 4] = diffs[k]
                    k += 1
        return attr

    M, S = 49, 512
    patch = torch.arange(28).div(4, rounding_mode="floor")
    groups = (patch.view(-1, 1) * 7 + patch.view(1, -1)).view(-1)
    rng = np.random.default_rng(1)

    def kernelshap(x, t):
        from math import comb
        attr = torch.zeros_like(x)
        for n in range(len(x)):
            img = x[n].view(-1)
            # coalitions by size with the Shapley kernel weight, in pairs
            z = np.zeros((S, M), dtype=np.float32)
            w = np.zeros(S)
            for r in range(0, S, 2):
                size = rng.integers(1, M)
                on = rng.choice(M, size, replace=False)
                z[r, on] = 1
                z[r + 1] = 1 - z[r]
                w[r] = w[r + 1] = (M - 1) / (comb(M, size) * size * (M - size))
            zt = torch.from_numpy(z)
            pix = zt[:, groups]  # [S, 784]
            batch = (img.unsqueeze(0) * pix).view(S, 1, 28, 28)
            y = outputs(batch, t).double().numpy()
            fx = outputs(x[n:n + 1], t)[0].item()
            f0 = outputs(torch.zeros_like(x[n:n + 1]), t)[0].item()
            # efficiency constraint: eliminate the last feature
            zd = z.astype(np.float64)
            a = zd[:, :-1] - zd[:, -1:]
            b = y - f0 - zd[:, -1] * (fx - f0)
            sw = np.sqrt(w)
            phi, *_ = np.linalg.lstsq(a * sw[:, None], b * sw, rcond=None)
            phi = np.append(phi, (fx - f0) - phi.sum())
            attr[n] = torch.from_numpy(phi[groups.numpy()]).float().view(1, 28, 28)
        return attr

    methods = [("saliency", 64, saliency), ("ig50", 8, ig50), ("occlusion4x4", 8, occlusion),
               ("kernelshap", 4, kernelshap)]
    for name, n, run in methods:
        x = torch.rand(n, 1, 28, 28)
        run(x, 3)  # warm up
        best = float("inf")
        for _ in range(ROUNDS):
            gc.collect()
            t0 = time.perf_counter()
            run(x, 3)
            best = min(best, time.perf_counter() - t0)
        emit("explain torch", threads, name, "%.3f" % (best / n * 1e3))


if __name__ == "__main__":
    main()
