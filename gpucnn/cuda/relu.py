"""Launch code of kernels/relu.cu (same interface as gpucnn.reference.relu)."""
from __future__ import annotations

from gpucnn.cuda.launch import contiguous, i64, launch, scalar, vector_threads

FAMILY = "relu"
KERNELS = ("relu_forward", "relu_backward", "add", "add_relu")


def relu_forward(rt, x, slope):
    x = contiguous(rt.xp, x)
    y = rt.xp.empty_like(x)
    launch(rt, FAMILY, "relu_forward", x.dtype, vector_threads(x.size, x.dtype),
           (x, y, i64(x.size), scalar(x.dtype, slope)))
    return y


def relu_backward(rt, dy, x, slope):
    dy, x = contiguous(rt.xp, dy), contiguous(rt.xp, x)
    dx = rt.xp.empty_like(x)
    launch(rt, FAMILY, "relu_backward", x.dtype, vector_threads(x.size, x.dtype),
           (dy, x, dx, i64(x.size), scalar(x.dtype, slope)))
    return dx


def add(rt, a, b, relu=False):
    a, b = contiguous(rt.xp, a), contiguous(rt.xp, b)
    out = rt.xp.empty_like(a)
    launch(rt, FAMILY, "add_relu" if relu else "add", a.dtype, vector_threads(a.size, a.dtype),
           (a, b, out, i64(a.size)))
    return out
