"""The memory-bound ops' host path on real CuPy, taken apart (gpu.sh step 2d).

bench/host_path.py times our launch code with a null runtime, so CuPy's own
work is not in it. On the H200 (bench/results/gpu-2026-11-30) the calls were
far slower than that null path plus the device's time:

- relu forward on 6.4 MB: 29.4 us a call, 4.9 us replayed from a CUDA graph,
  3.0 us of null path; a same-size CuPy copy: 9.6 us a call;
- batch norm's statistics on 33.6 MB: 34.7 us a call, 17.6 in a graph, 6.6
  us of null path; the 33.6 MB rows fail their targets by this.

So ~20 us a call are CuPy's or the driver's, and nothing measured says where.
This step times, on the host alone (CALLS calls queued with no sync between
them, perf_counter around them; the median of SAMPLES samples, the device
synchronized between samples), in microseconds a call:

1. CuPy's parts: ``cupy.cuda.Device()``, the current stream, a per-channel
   result's allocation against a row view of one array (the statistics make
   four allocations; step 5d times the variant that makes one),
   ``empty_like`` of the row's tensor, the bench's same-size copy
   (limits.copier);
2. each kernel launch of each op, re-issued alone with the grid and
   arguments the op passed (recorded on one call): CuPy's launch for that
   kernel's argument list, then the same launch through the driver with
   the arguments packed by us at the call and packed once
   (``Packer``, below: whether a launch path of our own would pay);
3. our module lookup (Runtime.module: loader.cupy_module, which every
   launch runs) and Runtime.function;
4. each op as the bench calls it (gpucnn.bench.ops);

then cProfile's top functions by own time over 200 calls of two ops.

    PYTHONPATH=. python bench/host_cupy.py

The stand-in CuPy (bench/standin_gpu.py) runs it in CI, its figures NumPy's.
"""
from __future__ import annotations

import argparse
import cProfile
import ctypes
import io
import pstats
import struct

import numpy as np

from gpucnn.bench import cases, limits, ops, timing
from gpucnn.runtime import runtime_for

CALLS, SAMPLES = 50, 5
PROFILED = (("relu", "forward"), ("batchnorm", "stats"))  # one launch, one allocation; one launch, four


def host_us(f, calls: int = CALLS, samples: int = SAMPLES) -> float:
    """Median host microseconds of one f() (timing.host_us), the device synchronized before and
    between the samples."""
    import cupy
    sync = cupy.cuda.Device().synchronize
    f()
    sync()
    return timing.host_us(f, calls, samples, sync)


def launches_of(rt, f) -> list:
    """The (kernel, function, grid, block, args, options) of each launch of one f() on ``rt``."""
    log, real = [], rt.function

    def recording(family, kernel, options=()):
        fn = real(family, kernel, options)

        def run(grid, block, args, **kw):
            log.append((kernel, fn, grid, block, args, kw))
            return fn(grid, block, args, **kw)
        return run
    rt.function = recording  # the instance's, over the method
    try:
        f()
    finally:
        del rt.function
    return log


def cases_timed():
    """The suite's memory-bound cases of at most 33.6 MB (a host path does not grow with the tensor)."""
    return [c for c in cases.MEM if c.tensor_bytes() <= 40e6]


def rows(calls: int = CALLS, samples: int = SAMPLES) -> list[tuple[str, float]]:
    import cupy
    rt = runtime_for("cuda")
    t = lambda f: host_us(f, calls, samples)  # noqa: E731
    four = cupy.empty((4, 64), cupy.float32)  # batch norm's statistics make four (C,) results: one array's rows?
    out = [("cupy.cuda.Device()", t(cupy.cuda.Device)),
           ("cupy.cuda.get_current_stream()", t(cupy.cuda.get_current_stream)),
           ("Runtime.module('relu', (), 'relu_forward_f32'): loader.cupy_module",
            t(lambda: rt.module("relu", (), "relu_forward_f32"))),
           ("Runtime.function('relu', 'relu_forward_f32')", t(lambda: rt.function("relu", "relu_forward_f32"))),
           ("cupy.empty(64, float32): a per-channel result", t(lambda: cupy.empty(64, cupy.float32))),
           ("a row of a (4, 64) array: a[1]", t(lambda: four[1]))]
    for case in cases_timed():
        x = cupy.empty((case.N, case.C, case.H, case.W), cupy.float32)
        out += [(f"{case.label()}: cupy.empty_like", t(lambda: cupy.empty_like(x)))]
        copy, pairs = limits.copier("cuda"), limits.copy_pairs("cuda", case.tensor_bytes(), 1)
        out += [(f"{case.label()}: the bench's same-size copy", t(lambda: copy(*pairs[0])))]
        for direction in cases.passes(case):
            fn, inputs = ops.build(case, direction, "gpucnn", "cuda", 1)
            call = (lambda f, a: lambda: f(*a))(fn, inputs[0])
            for kernel, k, grid, block, args, kw in launches_of(rt, call):
                launch = (lambda k, g, b, a, kw: lambda: k(g, b, a, **kw))(k, grid, block, args, kw)
                name = f"{case.label()} {direction}: launch {kernel} ({len(args)} arguments)"
                out.append((name, t(launch)))
                out += [(f"{name} {how}", t(f)) for how, f in driver_launches(k, grid, block, args, kw)]
            out.append((f"{case.label()} {direction}: the op as the bench calls it", t(call)))
    return out


# A launch without CuPy's argument conversion (step 2d's experiment).
# CuPy's ``RawKernel.__call__`` converts every argument at every launch (a
# Python object per argument, NumPy scalars viewed through NumPy, a CArray per
# array) before its cuLaunchKernel. On the H200's host (bench/results/
# gpu-2026-11-30-s21, step 2d) a launch cost 7.9 us with 4 arguments and
# 12.7-15.7 with 16-19, where the whole device time of a 33.6 MB reduction is
# ~15 us: the memory-bound rows of that size are bound by their calls' host
# path. ``Packer`` lays a launch's arguments out as cuLaunchKernel reads them,
# itself: one 8-byte slot an argument (an array's device pointer, a scalar's
# bytes as CuPy would pass them: a Python int as int64, a float as double) in
# one buffer, and an array of pointers to the slots (kernelParams), made once
# for a list of argument types; a launch then packs its values with one
# ``struct.pack_into`` and calls ``cupy.cuda.driver.launchKernel``. Step 2d
# times, beside CuPy's launch of each recorded launch, the same launch through
# the driver with the arguments packed at the call, and with them packed once
# (the driver's own floor). The launch code does not use it: the figures say
# whether a launch path of our own would pay (tests/test_direct_launch.py
# checks the bytes against the emulator's reading of each kernel's parameters).
SLOT = 8  # bytes an argument: every kernel parameter here is at most 8 bytes, aligned to its size
_CODES = {np.dtype(t): c for t, c in ((np.bool_, "?"), (np.int8, "b"), (np.int16, "h"), (np.int32, "i"),
                                       (np.int64, "q"), (np.uint8, "B"), (np.uint16, "H"), (np.uint32, "I"),
                                       (np.uint64, "Q"), (np.float16, "e"), (np.float32, "f"),
                                       (np.float64, "d"))}


def _code(t, array_type) -> tuple[str, bool]:
    """(struct code of a slot, whether it holds an array's pointer) for an argument of type t."""
    if issubclass(t, array_type):
        return "Q", True
    if t is type(None):
        return "Q", False
    if issubclass(t, np.generic) and np.dtype(t) in _CODES:
        code = _CODES[np.dtype(t)]
    elif issubclass(t, int):  # bool too: CuPy passes a Python bool as int64
        code = "q"
    elif t is float:
        code = "d"
    else:
        raise TypeError(f"direct launch: no kernel argument of type {t.__name__}")
    pad = SLOT - struct.calcsize("<" + code)
    return code + (f"{pad}x" if pad else ""), False


class Packer:
    """The kernelParams of launches whose arguments have the types ``types``: ``pack(args)``
    writes their values into the one buffer and returns the address of its pointer array.
    ``pointer_of(a)``: an array's device pointer (CuPy: a.data.ptr). One launch at a time:
    the driver copies the values at the launch, and the next pack overwrites them."""

    def __init__(self, types: tuple, array_type, pointer_of):
        codes = [_code(t, array_type) for t in types]
        self.struct = struct.Struct("<" + "".join(c for c, _ in codes))
        self.arrays = [i for i, (_, a) in enumerate(codes) if a]
        self.nones = [i for i, t in enumerate(types) if t is type(None)]  # null pointers
        self.pointer_of = pointer_of
        self.buf = (ctypes.c_uint64 * max(1, len(types)))()
        base = ctypes.addressof(self.buf)
        self.params = (ctypes.c_void_p * max(1, len(types)))(*(base + SLOT * i for i in range(len(types))))
        self.address = ctypes.addressof(self.params)

    def pack(self, args) -> int:
        vals = list(args)
        for i in self.arrays:
            vals[i] = self.pointer_of(vals[i])
        for i in self.nones:
            vals[i] = 0
        self.struct.pack_into(self.buf, 0, *vals)
        return self.address


def packer(args, array_type, pointer_of) -> Packer:
    return Packer(tuple(map(type, args)), array_type, pointer_of)


def driver_launch(fn, grid, block, args, shared_mem: int = 0, pack=None):
    """``fn``'s launch (a CuPy RawKernel) through cupy.cuda.driver.launchKernel, its arguments
    packed by ``pack`` (a Packer's, made for these types by the caller) on CuPy's current stream."""
    import cupy
    g, b = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
    cupy.cuda.driver.launchKernel(fn.kernel.ptr, *g, *b, shared_mem, cupy.cuda.get_current_stream().ptr,
                                  pack(args), 0)


def driver_launches(k, grid, block, args, kw) -> list:
    """The launch of RawKernel ``k`` re-issued through the driver (``driver_launch``), its
    arguments packed at each call, then packed once: (how, the launch)."""
    import cupy
    smem = kw.get("shared_mem", 0)
    pk = packer(args, cupy.ndarray, lambda a: a.data.ptr)
    once = pk.pack(args)
    return [("through the driver, packed at the call",
             lambda: driver_launch(k, grid, block, args, smem, pk.pack)),
            ("through the driver, packed once",
             lambda: driver_launch(k, grid, block, args, smem, lambda _: once))]


def profile(case, direction, calls: int = 200, top: int = 12) -> str:
    """cProfile's ``top`` functions by own time over ``calls`` calls of one op."""
    fn, inputs = ops.build(case, direction, "gpucnn", "cuda", 1)
    fn(*inputs[0])
    p = cProfile.Profile()
    p.enable()
    for _ in range(calls):
        fn(*inputs[0])
    p.disable()
    s = io.StringIO()
    pstats.Stats(p, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=CALLS)
    ap.add_argument("--samples", type=int, default=SAMPLES)
    ap.add_argument("--no-profile", action="store_true")
    a = ap.parse_args(argv)
    print("| host path, real CuPy | us a call |")
    print("|---|---|")
    for name, us in rows(a.calls, a.samples):
        print(f"| {name} | {us:.2f} |")
    if not a.no_profile:
        for op, direction in PROFILED:
            case = next(c for c in cases_timed() if c.op == op)
            print(f"\ncProfile, {case.label()} {direction}, 200 calls:")
            print(profile(case, direction))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
