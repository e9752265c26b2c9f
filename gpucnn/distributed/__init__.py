"""Synchronous data-parallel training over MPI (NumPy arrays: the NumPy and
emulator backends) and NCCL (CuPy arrays), started by an MPI launcher:

    mpiexec -n 2 gpucnn train ...

Each rank computes its share of every global batch, the gradients are
averaged over the ranks in a fixed order, and every rank applies the same
update, so N ranks train as one process on the whole batch does, up to
rounding, and two runs with the same N give bitwise the same weights.

The training loop needs a few calls: ``init`` (before the model goes to the
GPU), ``wrap`` (the model), ``batches`` (instead of ``data.batches``),
``sum_over_ranks`` (epoch metrics), ``current().is_main`` (who writes), and
``guarded`` around the whole (a failing rank aborts the job). Without an MPI
launcher every one of them leaves single-process training as it was.
Importing this package needs neither mpi4py nor CuPy.
"""
from __future__ import annotations

from gpucnn import data
from gpucnn.usage import UsageError
from gpucnn.distributed import parallel
from gpucnn.distributed.comm import DistributedError
from gpucnn.distributed.launch import current, guarded, init, launched_by_mpi, reset
from gpucnn.distributed.parallel import DataParallel

__all__ = ["DataParallel", "DistributedError", "barrier", "batches", "check_resume", "checkpoint_meta", "current",
           "global_seen", "guarded", "init", "launched_by_mpi", "reset", "sum_over_ranks", "wrap"]


def wrap(model, sync_bn: bool = False):
    """``model`` as a DataParallel over this world, or unchanged in a world of one."""
    world = current()
    return DataParallel(model, world, sync_bn) if world.active else model


def batches(x, y, batch_size: int, rng=None):
    """This rank's share of ``data.batches(x, y, batch_size, rng)``."""
    world = current()
    if world.active:
        return parallel.batches(world, x, y, batch_size, rng)
    return data.batches(x, y, batch_size, rng)


def sum_over_ranks(*values) -> tuple:
    """Numbers summed over the ranks (the same numbers in a world of one)."""
    world = current()
    return parallel.sum_over_ranks(world, *values) if world.size > 1 else values


def barrier() -> None:
    """Every rank gets here before any goes on (nothing to wait for in a world of one)."""
    sum_over_ranks(0)


def global_seen(seen: int) -> int:
    """Examples of the current pass consumed by all ranks, given this rank's count."""
    world = current()
    return world.step.seen if world.active else seen


def checkpoint_meta() -> dict:
    return {"ranks": current().size}


def check_resume(record: dict) -> None:
    """A checkpoint resumes only with the number of ranks that wrote it."""
    ranks, size = int(record.get("ranks", 1)), current().size
    if ranks != size:
        raise UsageError(f"--resume: the checkpoint was written by a run of {ranks} rank(s), this run has "
                         f"{size}; resume with the same number (mpiexec -n {ranks})")
