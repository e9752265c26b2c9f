"""The host path of the memory-bound ops: what a call costs the CPU before
and between its kernels, with a null runtime (model_consts.HOST_MEM_US).

The null runtime is the launch code's Runtime with a pool allocator (an
array of a shape and dtype is made once and handed out again, as CuPy's pool
does) and kernels that return at once, so a call's time is the argument
checks, the dispatch, the launch set-up and the argument packing alone
(CuPy's own launch of a kernel or a device copy is not in it: the launches
and copies a call makes are counted instead). Each
op runs ``--calls`` times a sample; the medians of ``--samples`` samples
are printed in us a call. The machine is shared: pin it (taskset -c 1) and
interleave the runs being compared.

    PYTHONPATH=. taskset -c 1 python bench/host_path.py
"""
from __future__ import annotations

import argparse
import statistics
import time
import types

import numpy as np

import gpucnn
import gpucnn.runtime
from gpucnn.runtime import Runtime

SHAPE = (128, 64, 32, 32)  # fused.py's batch-norm row (cifar-resnet's output)


class _Pool(types.SimpleNamespace):
    """numpy with empty/empty_like/zeros/full served from a cache by (shape, dtype)."""

    def __init__(self):
        super().__init__(cache={})

    def __getattr__(self, name):
        return getattr(np, name)

    def _get(self, shape, dtype):
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        key = (shape, np.dtype(dtype))
        if key not in self.cache:
            self.cache[key] = np.zeros(shape, dtype)
        return self.cache[key]

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


class _Module:
    def get_function(self, name):
        def run(grid, block, args, shared_mem=0):
            _launches[0] += 1
        run.max_dynamic_shared_size_bytes = 227 * 1024  # sm_90's opt-in limit, as if set once
        return run


def null_runtime() -> Runtime:
    module = _Module()
    return Runtime("null", _Pool(), lambda family, options=(): module, lambda: (90, 132))


def ops(shape=SHAPE):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    C = shape[1]
    g, b = np.ones(C, np.float32), np.zeros(C, np.float32)
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    _, saved = gpucnn.batch_norm2d(x, g, b, rm, rv)
    w = rng.standard_normal((C, C, 1, 1)).astype(np.float32)
    from gpucnn.backend import call
    m, s = saved.mean, saved.invstd
    return {  # the public ops, then the internal ones that the bench's rows call (gpucnn.bench.fused)
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
    }


def measure(calls: int, samples: int) -> dict[str, tuple[float, int]]:
    """{op: (median us a call, launches a call)}."""
    from gpucnn.runtime import capture
    rt = null_runtime()
    real, copy = gpucnn.runtime.runtime_for, capture.copy_into
    gpucnn.runtime.runtime_for = lambda name: rt

    def counted_copy(dst, src):  # a device copy is one more operation on the stream
        _launches[0] += 1
        copy(dst, src)
    capture.copy_into = counted_copy
    try:
        with gpucnn.use_backend("emulator"):
            table = ops()
            out = {}
            for name, f in table.items():
                _launches[0] = 0
                f()
                launches = _launches[0]
                per = []
                for _ in range(samples):
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        f()
                    per.append((time.perf_counter() - t0) / calls * 1e6)
                out[name] = statistics.median(per), launches
            return out
    finally:
        gpucnn.runtime.runtime_for, capture.copy_into = real, copy


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--samples", type=int, default=15)
    a = p.parse_args(argv)
    for name, (us, launches) in measure(a.calls, a.samples).items():
        print(f"{name:26s} {us:7.2f} us  {launches} launches and copies")


if __name__ == "__main__":
    main()
