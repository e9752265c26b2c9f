"""Channels-last activations of the NumPy backend.

The im2row-rows convolutions (``conv_algo.as_rows``) and the lowered ones
(``conv_algo.as_lowered``) multiply pixel-major, so their product comes out
as (images, P, Q, K): NHWC memory. They return it as is, an (N, K, P,
Q)-shaped view of that memory, instead of copying it back to NCHW; the
next such convolution then reads its channels-last input without a
transposing copy (``im2row.channels_last``). Per layer, batch 64, 1 thread:
forward 4.20 -> 3.69 ms at 16x16x32, 3.41 -> 3.15 ms at 8x8x64 (rows).
The memory-bound ops between them (batch norm, ReLU, the residual add,
pooling) work on the memory as it lies and give their outputs the same
layout (``empty_like``); every other op reads such a view through NumPy's
strides.

Where layouts meet (a strided 1x1 shortcut, a gradient from a channel-major
op): the residual add gives NHWC if either operand is; ReLU's and batch
norm's backward give x's layout, dy copied into it first (``like``);
pooling runs the planes' path (and copies) unless all its inputs are NHWC.
Rows convolutions write NHWC only for at most ``conv_algo.ROWS_PIXELS``
outputs (``conv_algo.channels_last_output``), lowered ones always.
Training step, batch 64, in-process A/B against all-NCHW outputs (rows
convolutions only; medians of 14-16 steps): resnet20 0.97-0.98 at 1 thread
(one noisy run 1.01) and 0.96-0.97 at 2, vgg-small 0.97-0.98 and
0.98-0.99, lenet 1.00 and 0.98-1.02.
"""
from __future__ import annotations

import numpy as np

from gpucnn.reference import workspace


def channels_last(a) -> bool:
    """Whether the 4-D a is an NCHW-shaped view of C-contiguous NHWC memory
    (and not also C-contiguous itself, as when C or H*W is 1)."""
    return a.ndim == 4 and not a.flags.c_contiguous and a.transpose(0, 2, 3, 1).flags.c_contiguous


def memory(a):
    """a in its memory's order: (N, H, W, C) for a ``channels_last`` view, else a."""
    return a.transpose(0, 2, 3, 1) if channels_last(a) else a


def empty(shape, dtype, last: bool):
    """``workspace.empty`` of an (N, C, H, W) shape, as a view of NHWC memory when ``last``."""
    if not last:
        return workspace.empty(shape, dtype)
    n, c, h, w = shape
    return workspace.empty((n, h, w, c), dtype).transpose(0, 3, 1, 2)


def empty_like(a, dtype=None):
    """An output for a's shape in a's layout (``workspace.empty``'s pool)."""
    return empty(a.shape, dtype or a.dtype, channels_last(a))


def image(v, a, dtype=None):
    """Per-channel values v spread over one image of a in its memory's order,
    (C, H, W) or (H, W, C), in a's dtype (or ``dtype``): a contiguous
    operand for whole images (``memory``), with which NumPy runs its fast
    loop where a broadcast runs its strided one (1 MiB of float32 in cache:
    44 against 80 us a multiply)."""
    v = np.asarray(v, dtype or a.dtype)
    n, c, h, w = a.shape
    if channels_last(a):
        return np.tile(v, h * w).reshape(h, w, c)
    return np.repeat(v, h * w).reshape(c, h, w)


def ordered(a, last: bool):
    """a (N, C, H, W) as (N, H, W, C) when ``last``, else a: ops that take
    several operands run all of them in one memory order, their output's
    (strided, and still correct, for an operand in the other layout)."""
    return a.transpose(0, 2, 3, 1) if last else a


def like(a, ref):
    """a itself where it is in ref's layout, else a copy in that layout
    (``workspace.empty``'s pool): an op over both then runs its passes in
    one memory order."""
    if channels_last(a) == channels_last(ref):
        return a
    out = empty_like(ref, a.dtype)
    np.copyto(out, a)
    return out
