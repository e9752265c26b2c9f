"""Timing: median over many runs after warm-up, backends interleaved.

Peers of one case are timed side by side: each repetition runs every backend
once, in an order that alternates between repetitions, so a load that comes
and goes on a shared machine slows all of them alike and the ratios hold.

On a GPU a sample is CALLS back-to-back calls on the null stream (which both
CuPy and PyTorch launch on by default), the device synchronized first: the
first call is queued, then the start event, the other calls, the stop event,
and the sample is the mean of those CALLS - 1 calls. As in a training loop,
the host queues the next call's kernels while the device runs this one's, so
a call's time is the device's wherever the device is the slower of the two,
and the host's launch path (Python, dispatch, the launch itself; ~10-30 us a
call for either library) shows only where it is the slower. The first call
stays outside the events: the device sits idle while the host prepares it
(nothing was queued before it), which no call of a running loop sees.
Bracketing all CALLS, as this clock did until session 26, added that first
call's whole latency over CALLS to every sample (a 50 us ReLU of a 24 us host
path read 61 us on the H200, its graph replay 51.5); one call per sample,
as it did before that, put the latency inside every sample. The calls cycle
through the case's input copies, so a sample does not rerun a call on inputs
the previous one left in L2.

``GraphClock`` times the same calls captured once into a CUDA graph and
replayed (gpucnn.runtime.capture, as a training step runs): no host path at
all, so a sample is the device's work and the gaps between its kernels. A
memory-bound row of a few tens of MB takes about as long on the device as a
call takes the host, and the two clocks side by side tell which it measured.
"""
from __future__ import annotations

import statistics
import time


CALLS = 8  # a GPU sample's back-to-back calls


class CpuClock:
    device = "cpu"
    calls = 1

    def time(self, fn, arg_list):
        """Milliseconds of fn(*args) for the one argument tuple in ``arg_list``."""
        t0 = time.perf_counter()
        fn(*arg_list[0])
        return (time.perf_counter() - t0) * 1e3

    def sync(self):
        pass


class CudaClock:
    device = "cuda"

    def __init__(self, calls: int = CALLS):
        import cupy as cp
        self.cp, self.calls = cp, calls

    def sync(self):
        self.cp.cuda.Device().synchronize()

    def time(self, fn, arg_list):
        """Mean milliseconds of fn(*args) over the argument tuples of ``arg_list`` after the
        first, queued back to back behind it (the first call queued before the start event);
        a list of one call is that call between the events, its host path included."""
        if len(arg_list) > 1:
            fn(*arg_list[0])
            arg_list = arg_list[1:]
        return self._between_events(lambda: _calls(fn, arg_list)) / len(arg_list)

    def _between_events(self, run) -> float:
        """Milliseconds between two events on the null stream, ``run()`` queued between them."""
        start, stop = self.cp.cuda.Event(), self.cp.cuda.Event()
        start.record()
        run()
        stop.record()
        stop.synchronize()
        return self.cp.cuda.get_elapsed_time(start, stop)


class GraphClock(CudaClock):
    """CudaClock's samples with the calls captured into a CUDA graph, once per distinct list
    of arguments, and the graph replayed between the events. A clock per case: it keeps
    its graphs and, through them, the arguments they were captured on."""

    def __init__(self, calls: int = CALLS):
        super().__init__(calls)
        self.graphs = {}

    def time(self, fn, arg_list):
        key = (id(fn), tuple(id(a) for args in arg_list for a in args))
        if key not in self.graphs:  # each result freed at once: the next call reuses its block in the graph's pool
            from gpucnn.runtime import capture
            self.graphs[key] = (capture.capture("cuda", lambda: _calls(fn, arg_list))[0], fn, arg_list)
        return self._between_events(self.graphs[key][0].replay) / len(arg_list)


def host_us(f, calls: int, samples: int, sync=None) -> float:
    """Median host microseconds of one f() over ``samples`` runs of ``calls``
    calls back to back, perf_counter around each run and ``sync()`` (when
    given) after it: the host's side alone (bench/host_path.py, host_cupy.py)."""
    per = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        per.append((time.perf_counter() - t0) / calls * 1e6)
        if sync is not None:
            sync()
    return statistics.median(per)


def _calls(fn, arg_list) -> None:
    for args in arg_list:
        fn(*args)


def clock(device: str):
    return CudaClock() if device == "cuda" else CpuClock()


def interleaved(clk, runs: dict, *, warmup=2, reps=None, budget_s=1.0, min_reps=5, max_reps=200):
    """Median milliseconds of each ``runs[name] = (fn, inputs)``, timed by
    ``clk`` (one clock, or a dict of clocks by name: a GPU run times its CPU
    peers with the CPU's clock).

    After ``warmup`` calls of each (compilation, caches, allocator), the
    number of repetitions is ``reps`` or as many as fit ``budget_s`` for all
    backends together, within [min_reps, max_reps]. Repetition i of a clock
    of c calls a sample passes ``inputs[(i*c + j) % len(inputs)]`` to call j.
    Returns {name: {"ms", "q1", "q3", "samples"}}: the median and the
    quartiles of the samples (each the mean of its calls), the spread.
    """
    names = list(runs)
    clocks = clk if isinstance(clk, dict) else dict.fromkeys(names, clk)
    first = {}
    for name in names:
        fn, inputs = runs[name]
        for i in range(warmup):
            fn(*inputs[i % len(inputs)])
        clocks[name].sync()
        first[name] = clocks[name].time(fn, _args(inputs, 0, 1))
    if reps is None:
        per_rep = max(sum(first[n] * clocks[n].calls for n in names), 1e-3) / 1e3
        reps = int(min(max_reps, max(min_reps, budget_s / per_rep)))
    samples = {name: [] for name in names}
    for i in range(reps):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            fn, inputs = runs[name]
            clocks[name].sync()
            samples[name].append(clocks[name].time(fn, _args(inputs, i, clocks[name].calls)))
    return {name: {"ms": statistics.median(s), "q1": _quartiles(s)[0], "q3": _quartiles(s)[1], "samples": len(s)}
            for name, s in samples.items()}


def _args(inputs, i, calls):
    """Sample i's argument tuples: ``calls`` of them, cycling through the input copies."""
    return [inputs[(i * calls + j) % len(inputs)] for j in range(calls)]


def _quartiles(s):
    """(first, third) quartile of the samples s (the sample itself when alone)."""
    if len(s) < 2:
        return s[0], s[0]
    q = statistics.quantiles(s, n=4)
    return q[0], q[2]
