"""The im2col workspace limit of the NumPy reference backend.

The expanded input φ(x) of "CNN for Dummies" §4.3 holds every input pixel
kh*kw times, so a whole batch of it can outgrow memory. The convolutions of
``gpucnn.reference.conv`` build it a chunk of images (or of output rows) at a
time so that one chunk never exceeds this many bytes.

The limit is ``set_limit(nbytes)`` if called, else the environment variable
``GPUCNN_WORKSPACE_MB`` (read at each call, so it can change at run time),
else 256 MiB.
"""
from __future__ import annotations

import os

DEFAULT_BYTES = 256 * 2**20

_limit: int | None = None


def set_limit(nbytes: int | None) -> None:
    """Cap the im2col workspace at ``nbytes``; None returns to the default.

    A chunk holds at least one output row of one image, so a limit below that
    row's size is exceeded by that much rather than failing.
    """
    global _limit
    if nbytes is not None:
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
            raise ValueError(f"nbytes must be a positive int or None, got {nbytes!r}")
    _limit = nbytes


def get_limit() -> int:
    """The current workspace limit in bytes."""
    if _limit is not None:
        return _limit
    env = os.environ.get("GPUCNN_WORKSPACE_MB")
    if env:
        try:
            mb = float(env)
        except ValueError:
            raise ValueError(f"GPUCNN_WORKSPACE_MB must be a number of MiB, got {env!r}") from None
        if mb > 0:
            return max(1, int(mb * 2**20))
        raise ValueError(f"GPUCNN_WORKSPACE_MB must be positive, got {env!r}")
    return DEFAULT_BYTES


# Memory-bound ops (ReLU, pooling) run over chunks of whole planes small
# enough to stay in cache between their several NumPy passes, on a few
# threads: NumPy releases the GIL inside its loops, so the chunks run in
# parallel. 1 MiB measured best on a 2-core EPYC (512 KiB L2 a core, 32 MiB
# L3): 3x3 max pooling took 124 ms at 64 KiB, 87 ms at 256 KiB, 44 ms at
# 1 MiB and 41 ms at 4 MiB, the small chunks paying NumPy's per-call cost.
CHUNK_BYTES = 2**20
MIN_PARALLEL_BYTES = 2 * 2**20

_executor = None


def threads() -> int:
    """Threads for the chunked ops: ``GPUCNN_THREADS``, else the usable cores."""
    env = os.environ.get("GPUCNN_THREADS")
    if env:
        n = int(env)
        if n < 1:
            raise ValueError(f"GPUCNN_THREADS must be a positive int, got {env!r}")
        return n
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def chunked(fn, n: int, item_bytes: int) -> None:
    """Call ``fn(a, b)`` over [0, n) in chunks of about ``CHUNK_BYTES``
    (at least one item each), on ``threads()`` threads when the whole job is
    big enough to pay for them. The chunks must write disjoint outputs."""
    global _executor
    step = max(1, CHUNK_BYTES // max(1, item_bytes))
    spans = [(a, min(n, a + step)) for a in range(0, n, step)]
    nt = min(threads(), len(spans))
    if nt <= 1 or n * item_bytes < MIN_PARALLEL_BYTES:
        for a, b in spans:
            fn(a, b)
        return
    if _executor is None or _executor._max_workers < nt:
        from concurrent.futures import ThreadPoolExecutor
        _executor = ThreadPoolExecutor(max_workers=nt, thread_name_prefix="gpucnn")
    # Consume the results so an exception in a chunk is raised here.
    for _ in _executor.map(lambda s: fn(*s), spans):
        pass
