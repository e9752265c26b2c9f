"""gpu.sh's Python on a machine without a GPU: a stand-in CuPy under the "cuda" backend.

The GPU steps of bench/gpu.sh run code that no CPU test reaches: the bench's
"cuda" branches (CUDA-event clocks, the device's limits, the algorithm each
row names, the model's predictions attached, the targets), autotuning's
event timer, the step graphs, and bench/gpu_launches.py. A lent GPU gives a
session minutes, and a Python error in one of those steps costs its rows
(session 11's first run lost every step after the compile). Here that code
runs on the CPU before a GPU ever sees it:

* ``module()``: a ``cupy`` module whose arrays are NumPy arrays of a type
  that says "cupy" (so backend.resolve picks "cuda"), with ``.get()``; its
  events read the host's clock, its device reports compute capability 9.0
  and 132 SMs (an H200); while a step graph is captured it refuses to copy
  host data in (``asarray``, ``copy_from_host_async``), as CuPy does (the
  first GPU run of step 6 stopped there: bench/results/gpu-2026-11-30), and
  to read an array back (``get``, ``item``, ``float``, ``int``, ``bool``);
* ``gpu(kernels)``: that module installed as ``cupy`` and backend "cuda"
  served by a Runtime whose kernels are the emulator's (``"emulator"``: real
  results, as slow as the emulator; a step graph records the emulator's
  launches and replays them, as on the emulator) or bench/host_path.py's
  null ones (``"null"``: no results, any size; a step graph replays nothing).

The emulator reports compute capability 9.0 inside ``gpu("emulator")``, so
the warpgroup tiles run as on an H200. What this cannot show: anything of
the device (times, the compile, races and faults: gpu.sh's tools).

    PYTHONPATH=. python bench/standin_gpu.py [--kernels null|emulator] bench --device cuda --small ...
    PYTHONPATH=. python bench/standin_gpu.py launches small
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import importlib.util
import pathlib
import sys
import time
import types

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
DEVICE = (90, 132)  # (compute capability, SMs): an H200's


def _script(name: str):
    """bench/<name>.py as a module (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


host_path = _script("host_path")


class Memory:
    """A StandinArray's ``data``, as CuPy's MemoryPointer: its address and an asynchronous copy in."""

    def __init__(self, a):
        self.ptr = a.ctypes.data

    def copy_from_host_async(self, src, nbytes, stream=None):
        _no_copy_in()
        ctypes.memmove(self.ptr, src, nbytes)


def _memcpy_async(dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
    """cupy.cuda.runtime.memcpyAsync: CUDA's copy, which a capture records (from pinned memory)."""
    ctypes.memmove(dst, src, nbytes)


def _refuse_while_capturing(what: str) -> None:
    """A host-device copy while a step graph is captured: CuPy refuses one into the device, CUDA one out of it."""
    from gpucnn.runtime import capture
    if capture.active():
        raise RuntimeError(what)


def _no_copy_out() -> None:
    _refuse_while_capturing("a device-to-host copy while the stream is capturing (cudaErrorStreamCaptureUnsupported)")


def _no_copy_in() -> None:
    _refuse_while_capturing("the current stream is capturing, so H2D transfers are disallowed")  # CuPy's words


class StandinArray(host_path.DeviceArray):
    """A NumPy array that passes for a CuPy one, with CuPy's ``get()`` and ``data.ptr``. Reading it
    back to the host (``get``, ``item``, ``float``, ``int``, ``bool``) while a step graph is captured
    raises, as on a GPU, where the copy would wait on the capturing stream."""

    def get(self):
        _no_copy_out()
        return np.array(self)

    def item(self, *args):
        _no_copy_out()
        return super().item(*args)

    def __float__(self):
        _no_copy_out()
        return super().__float__()

    def __int__(self):
        _no_copy_out()
        return super().__int__()

    def __bool__(self):
        _no_copy_out()
        return super().__bool__()

    @property
    def data(self):
        return Memory(self)


StandinArray.__module__ = host_path.DeviceArray.__module__  # what backend.resolve reads


def _wrap(a):
    return a.view(StandinArray) if type(a) is np.ndarray else a


class Event:
    """cupy.cuda.Event on the host's clock."""

    def __init__(self, *args, **kwargs):
        self.t = time.perf_counter()

    def record(self, stream=None):
        self.t = time.perf_counter()

    def synchronize(self):
        pass


class Graph:
    """What a stand-in capture on null kernels returns: its replays count and run nothing."""

    def __init__(self):
        self.launches = 0

    def launch(self, stream=None):
        self.launches += 1


class Stream:
    """cupy.cuda.Stream: a context, and a capture that runs its body eagerly."""

    ptr = 0

    def __init__(self, *args, **kwargs):
        self.capturing = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def begin_capture(self, *args):
        self.capturing = True

    def end_capture(self):
        self.capturing = False
        return Graph()

    def is_capturing(self):
        return self.capturing

    def synchronize(self):
        pass


class MemoryPool:
    def malloc(self, nbytes):
        return None

    def total_bytes(self):
        return 0

    def used_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


def module() -> types.ModuleType:
    """The stand-in ``cupy``: NumPy's functions with their arrays returned as StandinArrays."""
    cp = types.ModuleType("cupy")
    cp.__version__ = "stand-in"
    cp.ndarray = StandinArray

    def asarray(a, dtype=None):  # CuPy's: a device array of that dtype as it is, anything else copied
        if not isinstance(a, StandinArray):
            _no_copy_in()
        same = isinstance(a, StandinArray) and (dtype is None or np.dtype(dtype) == a.dtype)
        return a if same else _wrap(np.array(a, dtype))
    cp.asarray = asarray
    cp.asnumpy = lambda a: np.array(a)
    cp.get_array_module = lambda *args: cp
    device = types.SimpleNamespace(id=0, compute_capability=str(DEVICE[0]),
                                   attributes={"MultiProcessorCount": DEVICE[1]}, synchronize=lambda: None,
                                   use=lambda: None)
    stream, pool = Stream(), MemoryPool()
    cp.get_default_memory_pool = lambda: pool
    cp.get_default_pinned_memory_pool = lambda: pool
    cp.cuda = types.SimpleNamespace(
        Event=Event, Stream=Stream, MemoryPool=MemoryPool, Device=lambda i=0: device,
        get_elapsed_time=lambda start, end: (end.t - start.t) * 1e3, get_current_stream=lambda: stream,
        using_allocator=lambda alloc=None: contextlib.nullcontext(),
        driver=types.SimpleNamespace(launchKernel=lambda *args: None),  # host_cupy's driver launches: none run
        alloc_pinned_memory=lambda nbytes: memoryview(bytearray(nbytes)),
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0,
                                      memGetInfo=lambda: (64 << 30, 80 << 30),
                                      memcpyHostToDevice=1, memcpyAsync=_memcpy_async,
                                      getDeviceProperties=lambda i: {"name": b"stand-in GPU (NumPy)"},
                                      runtimeGetVersion=lambda: 13000, driverGetVersion=lambda: 13000))
    cp.random = types.SimpleNamespace(
        standard_normal=lambda shape, dtype=np.float64: _wrap(np.random.default_rng(0).standard_normal(shape, dtype)))

    def __getattr__(name):
        f = getattr(np, name)
        if not callable(f) or isinstance(f, type):
            return f
        return lambda *a, **k: _wrap(f(*a, **k))
    cp.__getattr__ = __getattr__
    return cp


@contextlib.contextmanager
def gpu(kernels: str = "emulator"):
    """``cupy`` is the stand-in and backend "cuda" runs ``kernels``' kernels ("emulator" or "null")."""
    from gpucnn.bench import limits
    from gpucnn.cuda import norm, optim
    from gpucnn.runtime import Runtime, capture, cupy_runtime, loader
    from gpucnn.runtime.emulator import settings
    cp = module()
    null = host_path.NullModule()
    source = {"emulator": loader.emulator_module, "null": lambda family, options=(), kernel=None: null}[kernels]
    rt = Runtime("cuda", cp, source, lambda: DEVICE)
    saved = sys.modules.get("cupy")
    sys.modules["cupy"] = cp
    cupy_runtime._device.cache_clear()
    real_limits, real_capture = limits.cuda, capture._capture_cuda
    if kernels == "emulator":  # a step graph records the emulator's launches and replays them
        capture._capture_cuda = functools.partial(capture.capture, "emulator")
    # The device's limits mean nothing here: measured on a small copy and product (1 GiB and
    # 8192^3 would take NumPy minutes).
    limits.cuda = functools.partial(real_limits, copy_bytes=8 << 20, n=256, reps=2)
    try:
        with settings.emulation(compute_capability=DEVICE[0], sm_count=DEVICE[1]), host_path.null_cuda(rt):
            yield rt
    finally:
        limits.cuda, capture._capture_cuda = real_limits, real_capture
        cupy_runtime._device.cache_clear()
        # the stand-in's arrays kept by the launch code for the "cuda" runtime: reductions' scratch, address rings
        norm.drop_scratch("cuda")
        for key in [k for k in optim._rings if k[0] == "cuda"]:
            del optim._rings[key]
        if saved is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = saved


def python(argv: list[str]) -> int:
    """Python's own command line, ``-m MODULE ARGS``, ``-c CODE`` or ``SCRIPT ARGS``, run here."""
    import runpy
    sys.argv = [argv[1] if argv[0] == "-m" else "-c" if argv[0] == "-c" else argv[0], *argv[2 if argv[0] in
                ("-m", "-c") else 1:]]
    try:
        if argv[0] == "-m":
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.path.insert(0, str(pathlib.Path(argv[0]).resolve().parent))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernels", choices=("emulator", "null"), default="emulator")
    p.add_argument("what", choices=("bench", "launches", "python"),
                   help="gpucnn's CLI (bench ...), gpu_launches.py (launches small), or any Python command line "
                        "(python -m gpucnn.cli bench ...: what bench/gpu.sh runs, with PYTHON a script that runs this)")
    a, rest = p.parse_known_args(argv)
    with gpu(a.kernels):
        if a.what == "launches":
            return 0 if getattr(_script("gpu_launches"), rest[0])() else 1
        if a.what == "python":
            return python(rest)
        from gpucnn import cli
        return cli.main(["bench", *rest])


if __name__ == "__main__":
    sys.exit(main())
