"""Timing: median over many runs after warm-up, backends interleaved.

Peers of one case are timed side by side: each repetition runs every backend
once, in an order that alternates between repetitions, so a load that comes
and goes on a shared machine slows all of them alike and the ratios hold. On
a GPU each call is bracketed by CUDA events on the null stream (which both
CuPy and PyTorch launch on by default) and the device is synchronized before
the first event, so the time is the device's, not the launch queue's.
"""
from __future__ import annotations

import statistics
import time


class CpuClock:
    device = "cpu"

    def time(self, fn, args):
        t0 = time.perf_counter()
        fn(*args)
        return (time.perf_counter() - t0) * 1e3

    def sync(self):
        pass


class CudaClock:
    device = "cuda"

    def __init__(self):
        import cupy as cp
        self.cp = cp

    def sync(self):
        self.cp.cuda.Device().synchronize()

    def time(self, fn, args):
        cp = self.cp
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn(*args)
        stop.record()
        stop.synchronize()
        return cp.cuda.get_elapsed_time(start, stop)


def clock(device: str):
    return CudaClock() if device == "cuda" else CpuClock()


def interleaved(clk, runs: dict, *, warmup=2, reps=None, budget_s=1.0, min_reps=5, max_reps=200):
    """Median milliseconds of each ``runs[name] = (fn, inputs)``, timed by
    ``clk`` (one clock, or a dict of clocks by name: a GPU run times its CPU
    peers with the CPU's clock).

    After ``warmup`` calls of each (compilation, caches, allocator), the
    number of repetitions is ``reps`` or as many as fit ``budget_s`` for all
    backends together, within [min_reps, max_reps]. Repetition i passes
    ``inputs[i % len(inputs)]``. Returns {name: {"ms", "q1", "q3",
    "samples"}}: the median and the quartiles, the spread.
    """
    names = list(runs)
    clocks = clk if isinstance(clk, dict) else dict.fromkeys(names, clk)
    first = {}
    for name in names:
        fn, inputs = runs[name]
        for i in range(warmup):
            fn(*inputs[i % len(inputs)])
        clocks[name].sync()
        first[name] = clocks[name].time(fn, inputs[0])
    if reps is None:
        per_rep = max(sum(first.values()), 1e-3) / 1e3
        reps = int(min(max_reps, max(min_reps, budget_s / per_rep)))
    samples = {name: [] for name in names}
    for i in range(reps):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            fn, inputs = runs[name]
            clocks[name].sync()
            samples[name].append(clocks[name].time(fn, inputs[i % len(inputs)]))
    return {name: {"ms": statistics.median(s), "q1": _quartiles(s)[0], "q3": _quartiles(s)[1], "samples": len(s)}
            for name, s in samples.items()}


def _quartiles(s):
    """(first, third) quartile of the samples s (the sample itself when alone)."""
    if len(s) < 2:
        return s[0], s[0]
    q = statistics.quantiles(s, n=4)
    return q[0], q[2]
