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

import contextlib
import math
import os
import sys
import threading

import numpy as np

from gpucnn.reference import scheduler

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
# parallel. 1 MiB measured best for ReLU on a 2-core EPYC (1 MiB L2 in all,
# 32 MiB L3): 8x64x112x112 forward 3.7 ms at 256 KiB, 3.0 at 1 MiB, 3.1 at 4 MiB.
CHUNK_BYTES = 2**20
# Max pooling (and depthwise convolution) makes about 30 NumPy calls a
# chunk, and two threads fight for the GIL between them: with 1 MiB chunks
# each chunk took 2.5x longer on two threads than on one, with 4 MiB chunks
# no longer (64x32x28x28 2x2 forward: 12.3 ms at 1 MiB, 5.0 at 4 MiB, 4.9 at
# 8 MiB; 4x64x224x224: 98, 35, 37 ms).
PLANES_CHUNK_BYTES = 4 * 2**20
MIN_PARALLEL_BYTES = 2 * 2**20

_blas_libs = None
_local = threading.local()


def scratch(key: str, shape, dtype) -> np.ndarray:
    """An uninitialized array for temporaries, kept per thread and per key
    and reused by the next call. Fresh chunk-sized temporaries are freed back
    to the OS by malloc and fault their pages in again (1,700 page faults a
    call for 4 MiB chunks of max pooling, doubling its time)."""
    dtype = np.dtype(dtype)
    # math.prod, not np.prod: this runs a few thousand times a training step.
    n = math.prod(shape) * dtype.itemsize
    bufs = _local.__dict__.setdefault("bufs", {})
    b = bufs.get(key)
    if b is None or b.size < n:
        b = bufs[key] = np.empty(max(n, 64), np.uint8)
    return b[:n].view(dtype).reshape(shape)


# Outputs of at least POOL_MIN_BYTES come from ``empty``'s pool, up to
# POOL_BYTES held in all: a training step at batch 64 keeps 21 (lenet) to
# 137 MiB (resnet20) pooled, 274 MiB for resnet20 at batch 128. A larger
# pool is not free: with 2 GiB, the op suite's distinct shapes piled up and
# its last convolutions (vgg, 64x112x112) ran 1.2-1.3x slower than alone.
POOL_MIN_BYTES = 256 * 2**10
POOL_BYTES = 512 * 2**20
_pool: dict = {}
_pool_bytes = 0
_pool_lock = threading.Lock()


def empty(shape, dtype) -> np.ndarray:
    """np.empty(shape, dtype) for an op's output, reusing an array of the
    same shape and dtype that nothing outside the pool references any more
    (CPython's reference count; a view keeps its base referenced). A fresh
    array of several MiB is mapped from the kernel and its pages faulted in
    on first write, each zeroed: on the 2-core VM a training step of lenet,
    batch 64, took 1565 page faults (2.4 ms of system time, 26.1 ms a step);
    with every buffer kept, none and 23.0 ms. Training steps repeat their
    shapes, so each output finds last step's. Arrays are pooled up to
    POOL_BYTES in all; past that, the free ones are dropped (``release``)."""
    global _pool_bytes
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < POOL_MIN_BYTES:
        return np.empty(shape, dtype)
    with _pool_lock:
        bucket = _pool.setdefault((shape, dtype.str), [])
        for i in range(len(bucket)):
            # Held by the bucket and by getrefcount's argument alone: free.
            if sys.getrefcount(bucket[i]) == 2:
                return bucket[i]
        if _pool_bytes + nbytes > POOL_BYTES:
            _release_free()
        a = np.empty(shape, dtype)
        if _pool_bytes + nbytes <= POOL_BYTES:
            bucket.append(a)
            _pool_bytes += nbytes
        return a


def _release_free() -> None:
    global _pool_bytes
    for key, bucket in list(_pool.items()):
        keep = [bucket[i] for i in range(len(bucket)) if sys.getrefcount(bucket[i]) > 2]
        _pool_bytes -= sum(a.nbytes for a in bucket) - sum(a.nbytes for a in keep)
        _pool[key] = keep


def release() -> None:
    """Drop the pooled outputs that nothing references any more."""
    with _pool_lock:
        _release_free()


def threads() -> int:
    """Threads for the chunked ops: ``GPUCNN_THREADS``, else the usable cores."""
    env = os.environ.get("GPUCNN_THREADS")
    if env:
        n = int(env)
        if n < 1:
            raise ValueError(f"GPUCNN_THREADS must be a positive int, got {env!r}")
        return n
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def chunked(fn, n: int, item_bytes: int, chunk_bytes: int | None = None) -> None:
    """Call ``fn(a, b)`` over [0, n) in chunks of about ``chunk_bytes``
    (default ``CHUNK_BYTES``; at least one item each), on ``threads()``
    threads when the whole job is big enough to pay for them. The chunks
    must write disjoint outputs."""
    step = max(1, (chunk_bytes or CHUNK_BYTES) // max(1, item_bytes))
    spans = [(a, min(n, a + step)) for a in range(0, n, step)]
    run_spans(fn, spans, parallel=n * item_bytes >= MIN_PARALLEL_BYTES)


def _blas():
    """The BLAS libraries NumPy (and anything else loaded) calls, through
    threadpoolctl; none without it."""
    global _blas_libs
    if _blas_libs is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas_libs = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # not installed, or a library it cannot drive: BLAS keeps its threads
            _blas_libs = []
    return _blas_libs


@contextlib.contextmanager
def blas_threads(n: int):
    """BLAS limited to ``n`` threads inside the block (restored after): our
    threads each call a one-thread BLAS rather than every call splitting in
    fixed halves that wait on the slower (busier) core."""
    libs = _blas()
    saved = [lib.get_num_threads() for lib in libs]
    for lib in libs:
        lib.set_num_threads(n)
    try:
        yield
    finally:
        for lib, k in zip(libs, saved):
            lib.set_num_threads(k)


def run_spans(fn, spans, parallel: bool = True, blas: bool = False) -> None:
    """Call ``fn(a, b)`` for each (a, b) of ``spans``, on ``threads()``
    threads when ``parallel`` (``scheduler.run``: dynamic scheduling, so a
    thread slowed by another process on its core takes fewer spans instead
    of holding the others up); serially from inside another call's span.
    ``blas``: fn calls BLAS, which then runs one thread per caller, serially
    too: OpenBLAS's products on one thread and on two differ in their last
    bits on some CPUs (AMD EPYC, OpenBLAS 0.3.31: every shape tried), so a
    BLAS left at its own thread count on a serial path would make the
    results depend on GPUCNN_THREADS."""
    nt = min(threads(), len(spans))
    with blas_threads(1) if blas else contextlib.nullcontext():
        # Memory-bound ops (no BLAS) leave the other threads to deferred work:
        # two threads gain them little (they share the memory bandwidth).
        if nt <= 1 or not parallel or scheduler.nested() or (not blas and scheduler.busy()):
            for a, b in spans:
                fn(a, b)
            return
        scheduler.run(fn, spans, nt)


def defer(fn) -> bool:
    """Queue fn() to run before the enclosing ``deferring()`` block ends
    (``scheduler.defer``); False, with nothing queued, where it cannot."""
    return scheduler.defer(fn, threads())


@contextlib.contextmanager
def deferring():
    """A block at whose (outermost) end every ``defer``red fn has run; BLAS
    on one thread inside, since deferred work calls it beside the caller's
    (and the results then do not depend on which thread ran what)."""
    if scheduler.active():
        yield
        return
    with blas_threads(1), scheduler.deferring():
        yield
