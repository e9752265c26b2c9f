"""Step time and gradient all-reduce time of data-parallel training, per rank count:

    mpiexec -n N python bench/distributed.py --model lenet [--batch 64 --steps 10]

Each rank trains its share of a global batch of random images (MNIST-sized for
lenet, CIFAR-sized for vgg-small) on the NumPy backend; rank 0 prints one JSON
line: the median step (forward, backward, all-reduce, SGD update), the mean
all-reduce time per step inside the steps (which includes waiting for the
slowest rank to finish its backward), the median of all-reduces of the same
buffer started together after a barrier (the communication alone), the same
for MPI's own MPI_Allreduce (whose order of summation is MPI's: the price of
the fixed order), and the bytes all-reduced per step. With one rank the
all-reduce moves nothing (its time is ~0).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpucnn import distributed as dist  # noqa: E402
from gpucnn import nn  # noqa: E402
from gpucnn.distributed import parallel  # noqa: E402

SHAPES = {"lenet": (1, 28, 28), "vgg-small": (3, 32, 32)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=tuple(SHAPES), default="lenet")
    p.add_argument("--batch", type=int, default=64, help="global batch, split across the ranks")
    p.add_argument("--steps", type=int, default=10, help="timed steps, after 2 untimed ones")
    args = p.parse_args()
    world = dist.init("cpu")
    shape = SHAPES[args.model]
    model = parallel.DataParallel(nn.MODELS[args.model](shape, 10, rng=np.random.default_rng(0)), world)
    opt, loss_fn = nn.SGD(model, 0.01, momentum=0.9), nn.CrossEntropyLoss()
    rng = np.random.default_rng(1)
    n = args.batch * (args.steps + 2)
    x, y = rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, 10, n)
    times, reduce_s = [], []
    for i, (xb, yb) in enumerate(parallel.batches(world, x, y, args.batch, np.random.default_rng(2))):
        before = model.reducer.seconds
        t0 = time.perf_counter()
        loss_fn.forward(model.forward(xb), yb)
        model.backward(loss_fn.backward())
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
            reduce_s.append(model.reducer.seconds - before)
    alone = {"allreduce_alone_ms": [], "mpi_allreduce_ms": []}
    if world.size > 1:
        from mpi4py import MPI
        comm, flat = world.host.comm, model.reducer.flat
        for _ in range(args.steps):
            for key, reduce in (("allreduce_alone_ms", world.host.allreduce_sum),
                                ("mpi_allreduce_ms", lambda b: comm.Allreduce(MPI.IN_PLACE, b))):
                buf = flat.copy()
                comm.Barrier()
                t0 = time.perf_counter()
                reduce(buf)
                alone[key].append(time.perf_counter() - t0)
    if world.is_main:
        print(json.dumps({"model": args.model, "ranks": world.size, "global_batch": args.batch,
                          "step_ms": round(1e3 * statistics.median(times), 2),
                          "allreduce_in_step_ms": round(1e3 * statistics.mean(reduce_s), 3),
                          **{k: round(1e3 * statistics.median(v), 3) for k, v in alone.items() if v},
                          "allreduce_bytes": int(model.reducer.flat.nbytes)}))


if __name__ == "__main__":
    main()
