"""What each rank runs in the multi-process tests of tests/test_distributed_mpi.py
(``mpiexec -n N python tests/distributed_worker.py MODE OUT [options]``).

  steps  train a small net for a few momentum-SGD steps through
         gpucnn.distributed, enter evaluation, and write this rank's
         parameters and buffers to OUT/rank<r>.npz
  fit    ``train.fit`` on the digits set; ``--fail raise|exit`` makes rank 1
         raise or exit mid-epoch, ``--crash-epoch E`` interrupts rank 0 as
         epoch E starts (after it wrote epoch E-1: a crash to resume from)
  allreduce  all-reduce ``rank_buffer(rank)`` and write the sum to OUT/rank<r>.npy
The single-process answers are computed by the tests with ``reference_steps``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpucnn  # noqa: E402
from gpucnn import data, nn  # noqa: E402
from gpucnn import distributed as dist  # noqa: E402

STEPS, BATCH, SEED = 10, 9, 3  # 9: ranks get 5 and 4 examples, so the weighting by share is tested


def small_net(kind: str, dtype):
    """lenet: no batch norm; bn: conv, batch norm, ReLU, pool, dropout, linear."""
    rng = np.random.default_rng(SEED)
    if kind == "lenet":
        return nn.lenet((1, 8, 8), 4, rng=rng, dtype=dtype)
    return nn.Sequential(nn.Conv2D(1, 4, 3, padding=1, rng=rng, dtype=dtype), nn.BatchNorm2D(4, dtype=dtype),
                         nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(),
                         nn.Dropout(0.25, rng=np.random.default_rng(SEED + 1)),
                         nn.Linear(4 * 4 * 4, 4, rng=rng, dtype=dtype))


def examples(dtype):
    rng = np.random.default_rng(SEED)
    return rng.standard_normal((STEPS * BATCH, 1, 8, 8)).astype(dtype), rng.integers(0, 4, STEPS * BATCH)


def train_steps(model, batches):
    opt = nn.SGD(model, 0.05, momentum=0.9, weight_decay=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for xb, yb in batches:
        loss_fn.forward(model.forward(xb), yb)
        model.backward(loss_fn.backward())
        opt.step()
    return model


def state(model) -> dict:
    return {**model.params(), **{f"buffer.{k}": v for k, v in model.buffers().items()}}


def reference_steps(kind, dtype):
    """One process on the whole batches: the parameters and buffers the ranks must give."""
    x, y = examples(dtype)
    return state(train_steps(small_net(kind, dtype), data.batches(x, y, BATCH, np.random.default_rng(SEED))))


def _steps(args):
    dtype = np.dtype(args.dtype).type
    dist.init("cpu")
    model = dist.wrap(small_net(args.model, dtype), sync_bn=args.sync_bn)
    x, y = examples(dtype)
    with gpucnn.use_backend(args.backend):
        train_steps(model, dist.batches(x, y, BATCH, np.random.default_rng(SEED)))
    model.eval()  # rank 0's buffers go to every rank
    np.savez(Path(args.out) / f"rank{dist.current().rank}.npz", **state(model))


def rank_buffer(rank: int) -> np.ndarray:
    """Values of very different magnitudes, so that another order of the sum
    would round differently; 1001 splits unevenly into 2 or 3 chunks."""
    rng = np.random.default_rng(rank)
    return rng.standard_normal(1001) * 10.0 ** rng.integers(-8, 9, 1001)


def _allreduce(args):
    world = dist.init("cpu")
    out = world.host.allreduce_sum(rank_buffer(world.rank))
    np.save(Path(args.out) / f"rank{world.rank}.npy", out)


def _fit(args):
    from gpucnn import train
    world = dist.init("cpu")
    forward, calls = nn.CrossEntropyLoss.forward, []

    def failing_forward(self, pred, target):
        calls.append(1)
        if world.rank == 1 and args.fail and len(calls) == 5:
            if args.fail == "exit":
                os._exit(3)
            raise RuntimeError("injected failure in step 5")
        return forward(self, pred, target)
    nn.CrossEntropyLoss.forward = failing_forward
    real_epoch, epochs = train.run_epoch, []

    def crashing_epoch(*a, **k):  # train.fit runs a training pass, then an evaluation, per epoch
        epochs.append(1)
        if world.rank == 0 and args.crash_epoch and len(epochs) == 2 * args.crash_epoch - 1:
            raise KeyboardInterrupt
        return real_epoch(*a, **k)
    train.run_epoch = crashing_epoch
    cfg = train.Config(epochs=args.epochs, batch_size=31, out=args.out, progress=False)
    train.fit(cfg)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("steps", "fit", "allreduce"))
    p.add_argument("out")
    p.add_argument("--model", default="lenet", choices=("lenet", "bn"))
    p.add_argument("--dtype", default="float64")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--fail", choices=("raise", "exit"))
    p.add_argument("--crash-epoch", type=int)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    {"steps": _steps, "fit": _fit, "allreduce": _allreduce}[args.mode](args)


if __name__ == "__main__":
    main()
