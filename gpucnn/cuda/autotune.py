"""Autotuning of the convolution passes (cuDNN's benchmark mode, ``torch.backends.cudnn.benchmark``).

With ``GPUCNN_CONV_ALGO=autotune`` (or ``algo.override("autotune")``, or ``gpucnn bench --algo
autotune``), the first call of a pass on a geometry times every candidate algorithm
(``candidates``) on that call's own inputs and keeps the fastest for every later call with the same
geometry, pass, dtype, math mode and device; the call itself then runs it. The heuristic
(gpucnn.cuda.algo) rests on a static model that no GPU has calibrated yet: on a GPU, tuning
finds where it guessed wrong, at the price of each candidate's run once a shape.

Candidates are the heuristic's choice, then every family and tensor-core tile that
gpucnn.cuda.algo can force for the pass, in the math mode in force and in "fp32" (the FFMA
kernels, at least as accurate as any mode), each split GEMM also with a half and a quarter of
its parts: never a less accurate one, so "fold" (TF32 in every
mode) only in "tf32", "wino" (Winograd in FP32: its own rounding of the transforms' sums) only in
"fp32", and "direct" only where the heuristic counts it plausible (small groups,
nearly empty tiles), as its loop is many times slower per FMA elsewhere.

Nothing is timed while a step graph is being captured (gpucnn.runtime.capture): a pass tuned
before runs its choice, any other the heuristic's. A pass whose images the launch code cuts
into batches (int limits) runs the heuristic's choice.
"""
from __future__ import annotations

import contextvars
import statistics
import time

import numpy as np

from gpucnn import mathmode
from gpucnn.cuda import algo, tc
from gpucnn.runtime import capture

REPS = 3  # timed runs a candidate, after one warm-up (on a GPU: the first of _time's counts)
MIN_TIMED_S, MAX_REPS = 2e-3, 192  # on a GPU, a candidate's calls are timed until they take this long
_cache: dict[tuple, algo.Choice] = {}
_timings: dict[tuple, list[tuple[algo.Choice, float]]] = {}  # each candidate and its seconds, as tuning timed them
_trial: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("gpucnn_conv_trial", default=None)


def clear() -> None:
    """Forget every tuned choice."""
    _cache.clear()
    _timings.clear()


def candidates(g, pass_: str, dtype, math: str, sms: int, cc: int) -> list[algo.Choice]:
    """The heuristic's choice of ``algo.choose``, then each other distinct choice (see the module docstring)."""
    dtype = np.dtype(dtype)
    heuristic = algo.choose(g, pass_, dtype, math, sms, cc)
    specs = [None, *algo.FAMILIES[pass_], "gemm64", "gemm32"] + (["gemm32t"] if pass_ == "backward_filter" else [])
    specs = [s for s in specs if (s != "fold" or math == "tf32") and (s != "wino" or math == "fp32")
             and (s != "direct" or heuristic.family == "direct" or algo.direct_ok(g, pass_))]
    out = [heuristic]
    for mode in dict.fromkeys((math, "fp32")):
        edges = [None, *tc.TC_TILES] if mode != "fp32" and dtype == np.float32 else [None]
        for spec in specs:
            for edge in edges:
                with algo.override(spec), tc.force_tile(edge):
                    c = algo.choose(g, pass_, dtype, mode, sms, cc)
                if c not in out:
                    out.append(c)
    # Each GEMM choice of split reduction also with a half and a quarter of its parts: algo's split
    # count charges a part 2 k-steps of overhead, a guess no GPU has checked.
    for c in [c for c in out if c.family == "gemm" and c.splits > 1]:
        for splits in dict.fromkeys((c.splits // 2, c.splits // 4)):
            if splits >= 1:
                with algo.override(f"{_gemm_spec(c)}:{splits}"), tc.force_tile(c.edge):
                    v = algo.choose(g, pass_, dtype, c.math, sms, cc)
                if v not in out:
                    out.append(v)
    return out


def _gemm_spec(c: algo.Choice) -> str:
    """The override that forces GEMM choice ``c``'s tile (a tensor-core tile's edge is forced apart)."""
    if c.edge is not None:
        return "gemm"
    return {algo.TILE: "gemm64", algo.NARROW_TILE: "gemm32t" if c.swap else "gemm32"}[c.tile]


def tuned_choice(g, pass_: str, math: str) -> algo.Choice | None:
    """The choice tuning kept for (g, pass_) in ``math`` on this process's device, if any."""
    return next((c for k, c in _cache.items() if k[3] == g and k[4] == pass_ and k[6] == math), None)


def timings(g, pass_: str, math: str) -> list[tuple[algo.Choice, float]] | None:
    """[(candidate, seconds a call)] as tuning timed (g, pass_) in ``math``, the heuristic's first; None if untuned."""
    return next((t for k, t in _timings.items() if k[3] == g and k[4] == pass_ and k[6] == math), None)


def trial(g, pass_: str) -> algo.Choice | None:
    """The choice that ``tuned`` runs for (g, pass_) now, if any (gpucnn.cuda.conv asks first)."""
    t = _trial.get()
    return t[2] if t is not None and t[0] == g and t[1] == pass_ else None


def _running(g, pass_: str, c: algo.Choice, run):
    token = _trial.set((g, pass_, c))
    try:
        return run()
    finally:
        _trial.reset(token)


def _time(rt, fn) -> float:
    """Seconds of one call of fn after a warm-up. On a GPU, calls queued back to back between two
    CUDA events, over their count (as gpucnn.bench.timing's samples): the host queues the next call
    while the device runs this one, so the host's launch path (~10-20 us) counts once and not in
    every call. REPS calls are timed, then 4 times as many until they take MIN_TIMED_S or MAX_REPS
    calls ran (timeit's autorange; the short rounds warm the long one up). Timing 3 calls only, the H200
    run of bench/results/gpu-2026-11-30 timed mnist-1's forward at 71 us on the tile that the
    bench's long samples put at 40 us. On the CPU (the emulator), the median of REPS calls."""
    fn()
    if rt.name == "cuda":
        import cupy
        n = REPS
        while True:
            cupy.cuda.Device().synchronize()
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            for _ in range(n):
                fn()
            end.record()
            end.synchronize()
            seconds = cupy.cuda.get_elapsed_time(start, end) / 1e3
            if seconds >= MIN_TIMED_S or n >= MAX_REPS:
                return seconds / n
            n = min(4 * n, MAX_REPS)
    samples = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def tuned(rt, g, pass_: str, dtype, run):
    """run() (a pass of geometry ``g`` on runtime ``rt``), on the fastest candidate where tuning
    is on: timed now at the geometry's first call, remembered after."""
    if algo.spec() != algo.AUTOTUNE or _trial.get() is not None:
        return run()
    cc, sms = rt.device()
    math = mathmode.effective(cc)
    key = (rt.name, cc, sms, g, pass_, np.dtype(dtype).str, math)
    best = _cache.get(key)
    if best is None:
        if capture.active():
            return run()
        cands = candidates(g, pass_, dtype, math, sms, cc)
        times = [_time(rt, lambda c=c: _running(g, pass_, c, run)) for c in cands]
        _timings[key] = list(zip(cands, times))
        best = _cache[key] = cands[times.index(min(times))]
    return _running(g, pass_, best, run)
