"""Launch code of kernels/relu.cu (same interface as gpucnn.reference.relu).

A call's thread count and scalar arguments depend on the size, dtype and
slope alone, so they are made once each (``_sizes``): the 16-byte thread
count, an int64 and a scalar of the kernel's type made a call were most of
what the memo saves (bench/host_path.py's null CuPy runtime, least of 3
runs: relu forward 3.93 -> 3.09 us, backward 4.19 -> 3.32). The grid is not
in it: launch.grid_for sizes it at each call, so small_grid stays in force.
"""
from __future__ import annotations

import functools
from math import copysign

import numpy as np

from gpucnn.cuda.launch import contiguous, empty_as, i64, launch, scalar, vector_threads

FAMILY = "relu"
KERNELS = ("relu_forward", "relu_backward", "add", "add_relu")


@functools.lru_cache(maxsize=256)
def _sizes(n: int, dtype: np.dtype, slope=None, sign=None) -> tuple:
    """(threads, the kernel's size and slope arguments) for n elements of ``dtype``.
    ``sign`` (copysign(1, slope)) is only a key: -0.0 == 0.0 would share an
    entry, and the kernel's slope * x keeps the zero's sign."""
    args = (i64(n),) if slope is None else (i64(n), scalar(dtype, slope))
    return vector_threads(n, dtype), args


def relu_forward(rt, x, slope):
    x = contiguous(rt.xp, x)
    y = empty_as(rt.xp, x)
    threads, sizes = _sizes(x.size, x.dtype, slope, copysign(1.0, slope))
    launch(rt, FAMILY, "relu_forward", x.dtype, threads, (x, y, *sizes))
    return y


def relu_backward(rt, dy, x, slope):
    dy, x = contiguous(rt.xp, dy), contiguous(rt.xp, x)
    dx = empty_as(rt.xp, x)
    threads, sizes = _sizes(x.size, x.dtype, slope, copysign(1.0, slope))
    launch(rt, FAMILY, "relu_backward", x.dtype, threads, (dy, x, dx, *sizes))
    return dx


def add(rt, a, b, relu=False):
    a, b = contiguous(rt.xp, a), contiguous(rt.xp, b)
    out = empty_as(rt.xp, a)
    threads, sizes = _sizes(a.size, a.dtype)
    launch(rt, FAMILY, "add_relu" if relu else "add", a.dtype, threads, (a, b, out, *sizes))
    return out
