"""PyTorch's counterpart of bench/dist_train.lua for `make bench` table 6: the
same CNN, data size, global batch, optimizer and sharding, trained with
DistributedDataParallel over gloo (one process per rank, one thread each).

    /usr/bin/python3 bench/dist_train_torch.py RANKS EPOCHS

prints "dist torch RANKS samples_per_s VALUE" (make bench's table 6) and,
on stderr, the final loss. The data are the
digits (sklearn's copy of the set kdx bundles): the first 1438 rows, pixels
/ 16, as kdx.data.digits() splits them; only the time is compared.
"""
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

BATCH = 128


def model():
    n = torch.nn
    return n.Sequential(n.Conv2d(1, 32, 3, padding=1), n.ReLU(), n.Conv2d(32, 32, 3, padding=1), n.ReLU(),
                        n.Flatten(), n.Linear(32 * 64, 64), n.ReLU(), n.Linear(64, 10))


def data():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data[:1438] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(d.target[:1438], dtype=torch.int64)
    return x, y


def worker(rank, world, epochs, port, queue):
    torch.set_num_threads(1)
    if world > 1:
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(1)
    net = model()
    step_model = DDP(net) if world > 1 else net
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = data()
    n = x.shape[0]
    loss_fn = torch.nn.CrossEntropyLoss()
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    last = 0.0
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(1 + epoch)
        order = torch.randperm(n, generator=g)
        for at in range(0, n, BATCH):
            rows = order[at:at + BATCH][rank::world]  # this rank's part of the global batch
            opt.zero_grad()
            loss = loss_fn(step_model(x[rows]), y[rows])
            loss.backward()
            opt.step()
            last = loss.item()
    if world > 1:
        dist.barrier()
    dt = time.perf_counter() - t0
    if rank == 0:
        queue.put((epochs * n / dt, last))
    if world > 1:
        dist.destroy_process_group()


def main():
    world, epochs = int(sys.argv[1]), int(sys.argv[2])
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, world, epochs, port, queue)) for r in range(world)]
    for p in procs:
        p.start()
    rate, loss = queue.get()
    for p in procs:
        p.join()
    print("dist torch %d samples_per_s %.1f" % (world, rate))
    print("final loss %.4f" % loss, file=sys.stderr)


if __name__ == "__main__":
    main()
