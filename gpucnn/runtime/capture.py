"""Capture a sequence of runtime operations once and replay it: one CUDA graph
on a GPU, a recorded list of the same launches on the emulator.

What a capture may contain is what a CUDA graph holds: kernel launches and
device-to-device copies on the runtime. Capturing *records* and executes
nothing, on both runtimes: on a GPU the stream is in capture mode; on the
emulator every ``EmuKernel`` launch is checked (configuration, argument
types) and appended, with its argument arrays, to a list that ``replay``
launches in order. Anything else inside a capture is either harmless
set-up on the host (shapes, allocation of a constant) or a mistake the code
must name: ``forbid(op, why)`` raises ``CaptureError`` in the op that would
read device memory on the host or compute outside the runtime.

Address stability. A replay must find every buffer where the capture left
it. On the emulator the recorded launches hold the NumPy arrays themselves.
On a GPU every allocation made during the capture comes from a private CuPy
``MemoryPool`` owned by the graph (``cupy.cuda.using_allocator``); blocks
freed during the capture go back to that pool and are reused later in the
same capture (one stream, so in order), and since nothing allocates from
the pool after the capture, no block the graph uses is ever handed to
anyone else. The pool's size is the step's peak working memory.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools

import numpy as np


class CaptureError(RuntimeError):
    """An operation that cannot be part of a captured step, named."""


class _Recording:
    def __init__(self, runtime: str):
        self.runtime = runtime
        self.ops = []           # emulator: callables that replay the recorded operations
        self.host_effects = []  # both: host-only bookkeeping repeated after each replay
        self.op = None          # the op being recorded, to name it when CUDA refuses something


_active: contextvars.ContextVar[_Recording | None] = contextvars.ContextVar("gpucnn_capture", default=None)


def active() -> bool:
    """Whether a capture is being recorded in this context."""
    return _active.get() is not None


def forbid(op: str, why: str) -> None:
    """Raise CaptureError naming ``op`` if a capture is being recorded."""
    if active():
        raise CaptureError(f"{op} cannot be captured into a step graph: {why}")


def note_op(name: str) -> None:
    """Remember which op is being recorded (``backend.call`` says), so that a
    CUDA error during a capture names it."""
    rec = _active.get()
    if rec is not None:
        rec.op = name


def host_effect(fn) -> None:
    """Run ``fn`` (host-only bookkeeping that reads and writes no device
    memory, such as a step counter) now, or, inside a capture, after every replay."""
    rec = _active.get()
    if rec is None:
        fn()
    else:
        rec.host_effects.append(fn)


def copy_into(dst, src) -> None:
    """``dst[...] = src`` as one operation of the runtime: a device copy on a
    GPU (a graph node when captured), a recorded copy on the emulator."""
    rec = _active.get()
    if rec is not None and rec.runtime == "emulator":
        rec.ops.append(functools.partial(np.copyto, dst, src))
    else:
        dst[...] = src


class EmulatorGraph:
    """The launches and copies of one emulator capture, replayed in order."""

    def __init__(self, rec: _Recording):
        self.ops, self.host_effects = rec.ops, rec.host_effects

    def replay(self) -> None:
        for op in self.ops:
            op()
        for fn in self.host_effects:
            fn()

    @property
    def pool_bytes(self) -> int:
        return 0


class CudaGraph:
    """A CUDA graph with the private pool that owns its buffers."""

    def __init__(self, graph, pool, stream, rec: _Recording):
        # The stream is kept with the pool: CuPy files the pool's free blocks under it.
        self.graph, self.pool, self.stream, self.host_effects = graph, pool, stream, rec.host_effects

    def replay(self) -> None:
        self.graph.launch()  # on the current stream, after whatever the caller queued there
        for fn in self.host_effects:
            fn()

    @property
    def pool_bytes(self) -> int:
        return int(self.pool.total_bytes())


def _record_launch(rec, kernel, grid, block, args, shared_mem):
    rec.ops.append(functools.partial(kernel, grid, block, args, shared_mem=shared_mem))


@contextlib.contextmanager
def _recording(runtime: str):
    rec = _Recording(runtime)
    token = _active.set(rec)
    try:
        yield rec
    finally:
        _active.reset(token)


def capture(runtime: str, fn):
    """Record ``fn()`` on ``runtime`` ("emulator" or "cuda") without running
    it: returns (graph, fn's result), where the result's arrays are the
    buffers each ``graph.replay()`` writes."""
    if runtime == "emulator":
        from gpucnn.runtime.emulator import launch
        with _recording(runtime) as rec, launch.launch_hook(functools.partial(_record_launch, rec)):
            out = fn()
        return EmulatorGraph(rec), out
    if runtime == "cuda":
        return _capture_cuda(fn)
    raise ValueError(f"capture runs on 'emulator' or 'cuda', got {runtime!r}")


def _capture_cuda(fn):
    import cupy
    pool = cupy.cuda.MemoryPool()
    stream = cupy.cuda.Stream(non_blocking=True)
    # Relaxed mode (CuPy's default) lets the private pool cudaMalloc while capturing.
    with _recording("cuda") as rec, stream, cupy.cuda.using_allocator(pool.malloc):
        stream.begin_capture()
        try:
            out = fn()
        except BaseException as e:
            with contextlib.suppress(Exception):  # the capture is void; its own error would hide e
                stream.end_capture()
            if type(e).__module__.startswith("cupy") and rec.op:
                raise CaptureError(f"{rec.op} cannot be captured into a step graph: {e}") from e
            raise
        graph = stream.end_capture()
    return CudaGraph(graph, pool, stream, rec), out
