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
   ``empty_like`` of the row's tensor and ``empty`` of its shape and dtype
   (launch.empty_as, which the launch code allocates with since session 28),
   the device's number (Runtime.function's key since session 28), the
   bench's same-size copy (limits.copier);
2. each kernel launch of each op, re-issued alone with the grid and
   arguments the op passed (recorded on one call): CuPy's launch for that
   kernel's argument list, then the same launch through the driver with
   the arguments packed by us at the call and packed once
   (gpucnn.runtime.direct.Packer);
3. our module lookup (Runtime.module: loader.cupy_module, which every
   launch runs) and Runtime.function;
4. each op as the bench calls it (gpucnn.bench.ops), on CuPy's launch and
   then on ours (GPUCNN_LAUNCH=driver: gpucnn.runtime.direct), the two
   results compared bit for bit; then the same for the convolution passes
   of two cases in tf32 and 3xtf32 (model_consts.HOST_US's, from the null
   runtime until now);

then cProfile's top functions by own time over 200 calls of two ops.

    PYTHONPATH=. python bench/host_cupy.py

The stand-in CuPy (bench/standin_gpu.py) runs it in CI, its figures NumPy's.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats

import numpy as np

from gpucnn import mathmode
from gpucnn.bench import cases, limits, ops, timing
from gpucnn.runtime import direct, runtime_for

CALLS, SAMPLES = 50, 5
PROFILED = (("relu", "forward"), ("batchnorm", "stats"))  # one launch, one allocation; one launch, four
# The convolution passes timed on both launch paths (model_consts.HOST_US's cases: a host-bound small
# case and a mid-sized one), in the tensor-core modes
CONV_ROWS, MODES = ("mnist-1", "cifar-resnet"), ("tf32", "3xtf32")


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


def rows(calls: int = CALLS, samples: int = SAMPLES):
    """(what, us a call), one row at a time (main prints each as it comes: a step cut short keeps
    the rows it timed): CuPy's parts, then each memory-bound op's launches and calls, then the
    convolution passes of CONV_ROWS in MODES."""
    import cupy
    rt = runtime_for("cuda")
    t = lambda f: host_us(f, calls, samples)  # noqa: E731
    four = cupy.empty((4, 64), cupy.float32)  # batch norm's statistics make four (C,) results: one array's rows?
    yield "cupy.cuda.Device()", t(cupy.cuda.Device)
    yield "cupy.cuda.get_current_stream()", t(cupy.cuda.get_current_stream)
    yield "cupy.cuda.runtime.getDevice(): Runtime.function's key", t(cupy.cuda.runtime.getDevice)
    yield ("Runtime.module('relu', (), 'relu_forward_f32'): loader.cupy_module",
           t(lambda: rt.module("relu", (), "relu_forward_f32")))
    yield "Runtime.function('relu', 'relu_forward_f32')", t(lambda: rt.function("relu", "relu_forward_f32"))
    yield "cupy.empty(64, float32): a per-channel result", t(lambda: cupy.empty(64, cupy.float32))
    yield "a row of a (4, 64) array: a[1]", t(lambda: four[1])
    for case in cases_timed():
        x = cupy.empty((case.N, case.C, case.H, case.W), cupy.float32)
        yield f"{case.label()}: cupy.empty_like", t(lambda: cupy.empty_like(x))
        yield f"{case.label()}: cupy.empty(shape, dtype), launch.empty_as", t(lambda: cupy.empty(x.shape, x.dtype))
        copy, pairs = limits.copier("cuda"), limits.copy_pairs("cuda", case.tensor_bytes(), 1)
        yield f"{case.label()}: the bench's same-size copy", t(lambda: copy(*pairs[0]))
        for direction in cases.passes(case):
            fn, inputs = ops.build(case, direction, "gpucnn", "cuda", 1)
            call = (lambda f, a: lambda: f(*a))(fn, inputs[0])
            for kernel, k, grid, block, args, kw in launches_of(rt, call):
                launch = (lambda k, g, b, a, kw: lambda: k(g, b, a, **kw))(k, grid, block, args, kw)
                name = f"{case.label()} {direction}: launch {kernel} ({len(args)} arguments)"
                yield name, t(launch)
                for how, f in driver_launches(k, grid, block, args, kw):
                    yield f"{name} {how}", t(f)
            yield from both_paths(rt, f"{case.label()} {direction}: the op as the bench calls it", call, t)
    for mode in MODES:
        with mathmode.math_mode(mode):
            for case in (c for c in cases.CONV if c.name in CONV_ROWS):
                for direction in cases.passes(case):
                    fn, inputs = ops.build(case, direction, "gpucnn", "cuda", 1)
                    call = (lambda f, a: lambda: f(*a))(fn, inputs[0])
                    yield from both_paths(rt, f"{case.name} {direction} {mode}: the pass as the bench calls it",
                                          call, t)


def both_paths(rt, name: str, call, t):
    """``call`` timed on CuPy's launch path, then on ours (GPUCNN_LAUNCH=driver), its results
    compared with the first's."""
    yield name, t(call)
    before = host_arrays(rt, call())
    with direct.use("driver"):
        same = identical(rt, before, call) and "identical"
        yield f"{name}, through the driver (GPUCNN_LAUNCH=driver; results {same or 'DIFFERENT'})", t(call)


def host_arrays(rt, r) -> list:
    """The arrays of an op's result (nested tuples and lists), copied to the host."""
    if isinstance(r, (tuple, list)):
        return [a for x in r for a in host_arrays(rt, x)]
    return [np.array(rt.to_host(r))] if hasattr(r, "shape") else []


def identical(rt, before: list, call) -> bool:
    """Whether ``call()`` gives, array by array and bit for bit, the host arrays ``before`` (the
    ops are deterministic: their reductions in a fixed order)."""
    after = host_arrays(rt, call())
    return len(before) == len(after) > 0 and all(np.array_equal(a, b) for a, b in zip(before, after))


# A launch without CuPy's argument conversion (gpucnn.runtime.direct, GPUCNN_LAUNCH=driver): step 2d
# times, beside CuPy's launch of each recorded launch, the same launch through the driver with the
# arguments packed at the call and packed once (the driver's own floor), and each op as the bench
# calls it on both launch paths (their results compared), to say whether the driver path should be
# the default.


def driver_launches(k, grid, block, args, kw) -> list:
    """The launch of RawKernel ``k`` re-issued on our launch path (direct.DirectKernel), its
    arguments packed at each call, then packed once (the driver's own floor): (how, the launch)."""
    import cupy
    smem, dk = kw.get("shared_mem", 0), direct.DirectKernel(k, cupy)
    pk = direct.packer(args, dk.array_type, dk.pointer_of)  # kept by the lambda: its buffer is the params
    once, g, b = pk.pack(args), direct._dim3(grid), direct._dim3(block)
    return [("through the driver, packed at the call", lambda: dk(grid, block, args, shared_mem=smem)),
            ("through the driver, packed once", lambda pk=pk: dk._driver(g, b, smem, once, args))]


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
        print(f"| {name} | {us:.2f} |", flush=True)
    if not a.no_profile:
        for op, direction in PROFILED:
            case = next(c for c in cases_timed() if c.op == op)
            print(f"\ncProfile, {case.label()} {direction}, 200 calls:")
            print(profile(case, direction))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
