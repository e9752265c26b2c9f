"""Launch code of kernels/dropout.cu (same interface as gpucnn.reference.dropout)."""
from __future__ import annotations

from gpucnn.cuda.launch import contiguous, empty_as, i64, launch, scalar

FAMILY = "dropout"
KERNELS = ("dropout_forward", "dropout_backward")
ADVANCE = "dropout_advance"  # one kernel for every dtype: it touches only the generator's state


def dropout_forward(rt, x, state, threshold, scale):
    x = contiguous(rt.xp, x)
    y, mask = empty_as(rt.xp, x), empty_as(rt.xp, x)
    launch(rt, FAMILY, "dropout_forward", x.dtype, x.size,
           (x, y, mask, i64(x.size), state, i64(threshold), scalar(x.dtype, scale)))
    rt.function(FAMILY, ADVANCE)((1,), (1,), (state, i64(x.size)))
    return y, mask


def dropout_backward(rt, dy, mask):
    dy, mask = contiguous(rt.xp, dy), contiguous(rt.xp, mask)
    dx = empty_as(rt.xp, dy)
    launch(rt, FAMILY, "dropout_backward", dy.dtype, dy.size, (dy, mask, dx, i64(dy.size)))
    return dx
