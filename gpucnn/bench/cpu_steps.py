"""The training-step benchmark on a CPU: the NumPy backend against PyTorch
CPU eager, at each thread count (the same on both sides: our chunked ops and
BLAS, and torch.set_num_threads), all four timed side by side in one
interleaved loop so that a load that comes and goes slows them alike; then
the same again with one core kept busy by a competing process that the
benchmark starts and stops itself. A busy row's ``vs_one_thread`` is our
step at that thread count over our 1-thread step on the same busy machine:
a static split of the work between threads waits on the busy core's share
and comes out well above 1.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np

from gpucnn.bench import timing

# The setting for a laptop-sized run; a CPU step of batch 128 of
# resnet20 takes seconds.
CPU_BATCH = 64


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def busy_core():
    """A process spinning on one core (the last one we may use, where the OS
    lets us pin it) for the duration of the block, stopped after."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(hog.pid, {max(os.sched_getaffinity(0))})
        yield hog.pid
    finally:
        hog.kill()
        hog.wait()


def _at(threads, fn, torch_side):
    """fn run with ``threads`` threads for our ops, BLAS and (torch_side) PyTorch."""
    from gpucnn.reference import workspace

    def run(*args):
        os.environ["GPUCNN_THREADS"] = str(threads)
        if torch_side:
            import torch
            torch.set_num_threads(threads)
        with workspace.blas_threads(threads):
            fn(*args)
    return run


def _entry(res, batch):
    e = {"ms": res["ms"], "q1": res["q1"], "q3": res["q3"], "reps": res["samples"]}
    e["images_per_s"] = batch / e["ms"] * 1e3
    return e


def _rows(name, shape, batch, makers, thread_counts, busy, budget_s, min_reps):
    """One row a thread count: ours and each peer at that count, timed in one interleaved loop."""
    runs = {}
    for t in thread_counts:
        for peer, (fn, inputs, torch_side) in makers.items():
            runs[(peer, t)] = (_at(t, fn, torch_side), inputs)
    keys = list(runs)
    res = timing.interleaved(timing.CpuClock(), {str(k): runs[k] for k in keys}, budget_s=budget_s,
                             min_reps=min_reps)
    rows = []
    for t in thread_counts:
        ours = _entry(res[str(("ours", t))], batch)
        ours.update(graph=False, why=None, peak_bytes=None)
        results = {p: _entry(res[str((p, t))], batch) for p in makers if p != "ours"}
        rows.append({"model": name, "input": list(shape), "batch": batch, "threads": t, "busy": busy,
                     "ours": ours, "results": results,
                     "ratio": {p: ours["images_per_s"] / e["images_per_s"] for p, e in results.items()}})
    one = rows[0]["ours"]["ms"]
    for r in rows:
        r["vs_one_thread"] = r["ours"]["ms"] / one
    return rows


def run_cpu_steps(entries, have_torch, budget_s, small, thread_counts=None, busy=True, progress=None):
    """Rows of ``entries`` ((name, shape, classes, batch) of ``cases.STEPS``)
    at each of ``thread_counts`` (default 1 and 2, within the usable
    cores), quiet and then (``busy``, with 2 cores or more) with one core busy."""
    from gpucnn.bench import steps
    from gpucnn.nn import MODELS
    counts = thread_counts or [t for t in (1, 2) if t <= cores()]
    saved = os.environ.get("GPUCNN_THREADS")
    rows = []
    try:
        for name, shape, classes, batch in entries:
            batch = min(batch, CPU_BATCH)
            if name not in MODELS:
                rows.append({"model": name, "input": list(shape), "batch": batch,
                             "error": f"{name} is not in gpucnn.nn.MODELS"})
                continue
            rng = np.random.default_rng(0)
            xs, ys = steps._inputs(rng, shape, classes, batch)
            model = MODELS[name](shape, classes, rng=rng)
            makers = {}
            if have_torch:
                makers["torch-cpu"] = (*steps._torch(model, xs, ys, "cpu", False), True)
            fn, inputs, _ = steps._ours(model, xs, ys, "cpu")
            makers = {"ours": (fn, inputs, False), **makers}
            reps = 1 if small else 5
            rows += _rows(name, shape, batch, makers, counts, False, budget_s, reps)
            if busy and cores() >= 2 and not small:
                with busy_core():
                    rows += _rows(name, shape, batch, makers, counts, True, budget_s, reps)
            if progress is not None:
                progress(f"training step {name}")
    finally:
        if saved is None:
            os.environ.pop("GPUCNN_THREADS", None)
        else:
            os.environ["GPUCNN_THREADS"] = saved
    return rows
