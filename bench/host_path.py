"""The host path of an op as the GPU bench calls it: what a call costs the
CPU before and between its kernels, with a null runtime
(model_consts.HOST_US, and the memory-bound rows' HOST_*_US).

The bench passes CuPy arrays (gpucnn.bench.ops), so backend.call resolves
"cuda" and hands them to the launch code as they are. Here the arrays are
NumPy arrays of a type whose module is "cupy" (``DeviceArray``), so the same
dispatch runs: resolve picks "cuda", whose runtime is the null one, and
from_device_like sees CuPy-like arguments. The null runtime is the launch
code's Runtime named "cuda" with a pool allocator (an array of a shape and
dtype is made once and handed out again, as CuPy's pool does; its arrays are
DeviceArrays too) and kernels that return at once, so a call's time is the
argument checks, the dispatch, the launch set-up and the argument packing
alone. CuPy's own work is not in it (its launch of a kernel or a device
copy, its Device() and stream queries, its allocator): the launches and
copies a call makes are counted instead. Each op runs ``--calls`` times a
sample; the medians of ``--samples`` samples are printed in us a call. The
machine is shared: pin it (taskset -c 1) and interleave the runs being
compared.

Measured on the project's 2-core VM (least of 3 interleaved runs, us a
call), before -> after backend.call's CuPy fast path, the memos of
Runtime.function and tc.plan_of and the leaner checks: the bench's conv
passes forward 15.8-16.0 -> 9.8-10.1, backward-data 13.2-15.2 -> 9.0-10.2,
backward-filter 18.4-18.6 -> 12.0-12.3 (two launches); gpucnn.conv2d
19.2 -> 11.4-11.9, conv2d_backward 44.6-47.0 -> 30.1-31.8; relu_forward
6.5 -> 4.1, batch_norm_stats 10.2 -> 7.0, batch_norm_apply 8.7 -> 4.9,
conv2d_backward_bias 8.6 -> 5.9, pooling 10.2-11.2 -> 7.3-8.8. What is
left is mostly the launch modules' own bodies (cProfile): conv2d_forward's
slices, batch generator and int32 arguments (~5 us; the four indexed views
since dropped: mnist-1 tf32 forward 9.52 -> 9.21), pool._geometry's 13
np.int32 a call (~2 us; since memoised, below), batch_norm_stats' five
allocations.

Then the memory-bound launch code's per-shape memos (pool's arguments on
(planes, window, options), the bias gradient's chunking and sizes, relu's
sizes and slope, batch norm's part shape, scalars and flags), least of 3
interleaved runs before -> after: max_pool forward 7.54 -> 4.02, backward
7.25 -> 3.78, avg_pool forward 8.27 -> 3.88, backward 8.23 -> 3.87, relu
forward 3.93 -> 3.09, backward 4.19 -> 3.32, relu.add_relu 3.74 -> 3.20,
batch_norm_apply 4.75 -> 4.18, batch_norm_stats 6.95 -> 6.46,
batch_norm_backward 8.99 -> 7.86, conv2d_backward_bias 5.90 -> 4.10
(model_consts' HOST_*_US). The slowest of the 3 runs over the least: 1.0-1.25
for most rows, 1.8 for one outlier run. (model_consts' memory-bound host paths are
now step 2d's, on real CuPy: model_consts.on_cupy.)
Carving batch_norm_stats' four (C,) results out of one (4, C) allocation was
slower here (its body 4.9 -> 5.5-5.8 us: four row views of the array
subclass against three pool look-ups), so the four stay four allocations
by default (the chunk sums, the fifth, are now norm.scratch's, kept from
call to call); on real CuPy, gpu.sh's step 5d times the one-allocation
variant (norm.STATS_ONE_ALLOCATION) beside them.

Our own launch path (``--launch``, default both: GPUCNN_LAUNCH=driver,
gpucnn.runtime.direct) adds its argument packing to this path, where CuPy's
launch is left out of the other column: on the idle VM (2 runs of 200 calls x
9 samples, taskset -c 1) relu.relu_forward 2.95-3.00 -> 6.04-6.30 us, relu
backward 3.23-3.56 -> 6.34-6.55, norm.batch_norm_stats 6.94-8.14 -> 12.78-13.58,
norm.batch_norm_backward (two launches) 7.47-7.66 -> 17.42-17.48, mnist-1
forward tf32 9.52-10.98 -> 14.24-15.99; a DirectKernel call alone 2.1 us with
4 arguments, 3.0 with 15 (its packing 0.8 and 1.5). CuPy's own launch of the
same kernels took 7.9 and 12.7-15.7 us on the H200's host (gpu.sh step 2d,
session 21): the driver path should save ~5-12 us a launch there, which step
2d's rows on real CuPy will say.

    PYTHONPATH=. taskset -c 1 python bench/host_path.py
"""
from __future__ import annotations

import argparse
import contextlib
import types

import numpy as np

import gpucnn
import gpucnn.runtime
from gpucnn import mathmode
from gpucnn.bench import timing
from gpucnn.bench.cases import CONV, MEM, passes
from gpucnn.runtime import Runtime, direct

SHAPE = (128, 64, 32, 32)  # fused.py's batch-norm row (cifar-resnet's output)
CONV_ROWS = ("mnist-1", "cifar-resnet")  # a host-bound small case and a mid-sized one (bench/results/predicted-*.md)
MODES = ("tf32", "3xtf32")


class DeviceArray(np.ndarray):
    """A NumPy array whose type's module says "cupy", as backend.resolve and
    Runtime.from_device_like test for (type(a).__module__)."""


DeviceArray.__module__ = "cupy._core.core"


def _memory(self):
    """CuPy's ``a.data`` (a MemoryPointer, whose ``ptr`` our launch path packs: GPUCNN_LAUNCH=driver),
    kept on the array: NumPy's a.ctypes.data costs ~3 us, where CuPy's two attribute reads cost ~0.1."""
    mem = self.__dict__.get("_mem")
    if mem is None:
        mem = self._mem = types.SimpleNamespace(ptr=self.ctypes.data)
    return mem


DeviceArray.data = property(_memory)


def device_array(a) -> DeviceArray:
    return np.ascontiguousarray(a).view(DeviceArray)


class _Pool(types.SimpleNamespace):
    """cupy with empty/empty_like/zeros/full served from a cache by (shape, dtype)."""

    def __init__(self):
        stream = types.SimpleNamespace(ptr=0)
        super().__init__(cache={}, ndarray=DeviceArray, cuda=types.SimpleNamespace(  # norm.scratch's key
            get_current_stream=lambda: stream,
            driver=types.SimpleNamespace(launchKernel=_null_launch)))  # our launch path's driver call

    def __getattr__(self, name):
        return getattr(np, name)

    def _get(self, shape, dtype):
        """The array for (shape, dtype), found first under the key as given
        (the allocator's own cost is CuPy's, not the launch path's)."""
        hashable = not isinstance(shape, list)
        a = self.cache.get((shape, dtype)) if hashable else None
        if a is None:
            norm = ((shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)), np.dtype(dtype)
            a = self.cache.get(norm)
            if a is None:
                a = self.cache[norm] = device_array(np.zeros(*norm))
            if hashable:
                self.cache[shape, dtype] = a
        return a

    def empty(self, shape, dtype=np.float64):
        return self._get(shape, dtype)

    def zeros(self, shape, dtype=np.float64):
        return self._get(shape, dtype)

    def full(self, shape, value, dtype):
        return self._get(shape, dtype)

    def empty_like(self, a):
        return self._get(a.shape, a.dtype)

    def asarray(self, a):
        return a


_launches = [0]


def _null_launch(*args) -> None:
    """cuLaunchKernel's stand-in on our launch path (GPUCNN_LAUNCH=driver): counts the launch."""
    _launches[0] += 1


class NullModule:
    """CuPy's RawModule interface; its kernels count their launches and, given
    a list ``log``, append (name, grid, block, shared_mem, args) to it."""

    def __init__(self, log: list | None = None):
        self.log = log

    def get_function(self, name):
        def run(grid, block, args, shared_mem=0):
            _launches[0] += 1
            if self.log is not None:
                self.log.append((name, grid, block, shared_mem, args))
        run.max_dynamic_shared_size_bytes = 227 * 1024  # sm_90's opt-in limit, as if set once
        run.kernel = types.SimpleNamespace(ptr=0)  # a RawKernel's function (our launch path's, host_cupy's)
        return run


def null_runtime(module=None, device=(90, 132)) -> Runtime:
    """The "cuda" Runtime on the pool, its kernels ``module``'s (a NullModule by default)."""
    module = NullModule() if module is None else module
    return Runtime("cuda", _Pool(), lambda family, options=(), kernel=None: module, lambda: device)


def mem_ops(shape=SHAPE):
    """The memory-bound ops: public ones, then the internal ones the bench's rows call (gpucnn.bench.fused)."""
    rng = np.random.default_rng(0)
    x, dy = (device_array(rng.standard_normal(shape, dtype=np.float32)) for _ in range(2))
    C = shape[1]
    g, b, rm, rv = (device_array(np.full(C, v, np.float32)) for v in (1, 0, 0, 1))
    _, saved = gpucnn.batch_norm2d(x, g, b, rm, rv)
    from gpucnn.backend import call
    m, s = saved.mean, saved.invstd
    return {
        "batch_norm2d training": lambda: gpucnn.batch_norm2d(x, g, b, rm, rv),
        "batch_norm2d eval": lambda: gpucnn.batch_norm2d(x, g, b, rm, rv, training=False),
        "batch_norm2d_backward": lambda: gpucnn.batch_norm2d_backward(dy, x, g, saved),
        "relu": lambda: gpucnn.relu(x),
        "relu_backward": lambda: gpucnn.relu_backward(dy, x),
        "norm.batch_norm_stats": lambda: call("norm", "batch_norm_stats", x, rm, rv, 0.1, 1e-5),
        "norm.batch_norm_apply": lambda: call("norm", "batch_norm_apply", x, m, s, g, b, False),
        "norm.batch_norm_backward": lambda: call("norm", "batch_norm_backward", dy, x, m, s, g, True, None),
        "conv.conv2d_backward_bias": lambda: call("conv", "conv2d_backward_bias", dy),
        "relu.relu_forward": lambda: call("relu", "relu_forward", x, 0.0),
        "relu.add_relu": lambda: call("relu", "add", x, dy, True),  # the residual add+ReLU (model_mem's add_relu row)
    }


def _inputs(case) -> dict:
    from gpucnn.bench import ops
    return {k: device_array(v) for k, v in ops._inputs(case, "gpucnn", "cpu", 1, 0)[0].items()}


def bench_rows(case) -> dict:
    """Case ``case`` of gpucnn.bench.cases, each pass as the bench calls it
    (gpucnn.bench.ops: backend.call on its inputs), named "<name> <pass>"."""
    from gpucnn.bench.ops import _gpucnn_fn
    return {f"{case.name} {p}": (lambda f, a: lambda: f(a))(_gpucnn_fn(case, p), _inputs(case))
            for p in passes(case)}


def conv_ops(name: str):
    """Conv case ``name``: its three passes as the bench calls them, then the
    public conv2d and conv2d_backward (dx, dw and db)."""
    c = next(c for c in CONV if c.name == name)
    rows, a = bench_rows(c), _inputs(c)
    args = (c.stride, c.pad, c.dilation, c.groups)
    rows[f"{name} gpucnn.conv2d"] = lambda: gpucnn.conv2d(a["x"], a["w"], None, *args)
    rows[f"{name} gpucnn.conv2d_backward"] = lambda: gpucnn.conv2d_backward(a["dy"], a["x"], a["w"], *args)
    return rows


def _time(f, calls: int, samples: int) -> tuple[float, int]:
    _launches[0] = 0
    f()  # the first call fills the memos and the pool; its launches are counted
    launches = _launches[0]
    return timing.host_us(f, calls, samples), launches


@contextlib.contextmanager
def null_cuda(rt=None):
    """backend "cuda" served by ``rt`` (the null runtime by default); device copies counted as launches."""
    from gpucnn.runtime import capture
    rt = null_runtime() if rt is None else rt
    real, copy = gpucnn.runtime.runtime_for, capture.copy_into
    gpucnn.runtime.runtime_for = lambda name: rt

    def counted_copy(dst, src):  # a device copy is one more operation on the stream
        _launches[0] += 1
        copy(dst, src)
    capture.copy_into = counted_copy
    try:
        yield rt
    finally:
        gpucnn.runtime.runtime_for, capture.copy_into = real, copy


def measure(calls: int, samples: int, convs=CONV_ROWS, modes=MODES) -> dict[str, tuple[float, int]]:
    """{op: (median us a call, launches and copies a call)}."""
    out = {}
    with null_cuda():
        small = [c for c in MEM if c.N * c.C * c.H * c.W < 2**21]  # the small ones: the host path is shape-free
        for name, f in [*mem_ops().items(), *(r for c in small for r in bench_rows(c).items())]:
            out[name] = _time(f, calls, samples)
        for mode in modes:
            with mathmode.math_mode(mode):
                for case in convs:
                    for name, f in conv_ops(case).items():
                        out[f"{name} {mode}"] = _time(f, calls, samples)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--samples", type=int, default=15)
    p.add_argument("--launch", choices=(*direct.PATHS, "both"), default="both",
                   help="the launch path timed: CuPy's (its own work left out: the kernels return at once), "
                        "ours (GPUCNN_LAUNCH=driver: our argument packing, the driver call a no-op), or both "
                        "(default), one run after the other")
    a = p.parse_args(argv)
    paths = direct.PATHS if a.launch == "both" else (a.launch,)
    runs = {}
    for path in paths:
        with direct.use(path):
            runs[path] = measure(a.calls, a.samples)
    print(f"{'op':44s} " + " ".join(f"{path + ' us':>10s}" for path in paths) + "  launches and copies")
    for name, (_, launches) in runs[paths[0]].items():
        print(f"{name:44s} " + " ".join(f"{runs[path][name][0]:10.2f}" for path in paths) + f"  {launches}")


if __name__ == "__main__":
    main()
