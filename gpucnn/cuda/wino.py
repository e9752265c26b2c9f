"""Launch code of kernels/conv2d_wino.cu: the forward and backward-data of 3x3
convolutions at stride and dilation 1 by Winograd's F(2x2, 3x3) on FFMA, in
the math mode "fp32" (gpucnn.cuda.algo's "wino" family). gpucnn.cuda.conv
calls it per run of images with the output it allocated and ``geom``
(conv._geom).

Backward-data is the same kernel, as the halo family's: dx is the forward of
dy by the filters transposed and rotated at padding 2 - pad
(``halo.transposed``); the weights kernel lays them out so (``flip``).

The weights go first through conv2d_wino_weights: U = G g Gᵀ of each filter,
(kblocks, steps x 8 channels, 16 points, 32 filters) in a scratch array of
the call (gpucnn.reference.winograd.weights is the same layout in NumPy).
A block's task is 32 filters x 32 blocks of 2x2 outputs; its steps reduce 8
channels each (the kernel's header gives the cost).
"""
from __future__ import annotations

import numpy as np

from gpucnn.cuda.algo_direct import cdiv
from gpucnn.cuda.halo import transposed  # noqa: F401 (the backward-data geometry: the same reverse operator)
from gpucnn.cuda.launch import launch, launch_tasks

FAMILY = "conv2d_wino"
THREADS, BK, BP, CK, XI = 256, 32, 32, 8, 16  # WINO_THREADS, _BK, _BP, _CK, _XI
STEP_WORDS = CK * XI * BK  # WINO_STEP_WORDS
SMEM = 4 * (4 * STEP_WORDS + 16 * THREADS)  # WINO_SMEM: two stages of U and V, and the raw patches
MIN_CC = 80  # cp.async (WINO_ASYNC); the kernel traps before
KH = KW = 3
F32_KERNELS = ("conv2d_wino_forward_f32", "conv2d_wino_weights_f32")
INT_MAX = 2**31 - 1


def ok(g, cc: int = 90, pass_: str = "forward") -> bool:
    """Whether the Winograd kernels can run pass ``pass_`` of ``g`` on compute capability ``cc``:
    sm_80 or newer (cp.async), a 3x3 filter at stride and dilation 1, one group, at least one
    channel, filter and output pixel; backward-data with padding at most 2 on each side (the
    transposed problem's, 2 - pad, then none negative); and the kernel's int counts: the
    output's blocks of 2x2 (_blocks), and its tasks (32 blocks x 32 filters each), below 2**31."""
    w = g.win
    if not (cc >= MIN_CC and g.groups == 1 and (w.kh, w.kw, w.sh, w.sw, w.dh, w.dw) == (KH, KW, 1, 1, 1, 1)
            and min(g.C, g.K, w.P, w.Q) >= 1):
        return False
    if pass_ == "backward_data":
        if max(w.pad) > KH - 1:
            return False
        g = transposed(g)
    elif pass_ != "forward":
        return False
    return _blocks(g) <= INT_MAX and tasks(g) <= INT_MAX


def _blocks(g) -> int:
    """The forward's 2x2 blocks of outputs: N x ceil(P/2) x ceil(Q/2)."""
    return g.N * cdiv(g.win.P, 2) * cdiv(g.win.Q, 2)


def steps(g) -> int:
    """8-channel steps of ``g``'s reduction."""
    return cdiv(g.C, CK)


def tasks(g) -> int:
    """Blocks' tasks of the forward kernel on ``g``."""
    return cdiv(_blocks(g), BP) * cdiv(g.K, BK)


def weights(rt, w, g, flip: bool = False):
    """U of w for the forward kernel on ``g`` (conv2d_wino_weights): a new scratch array;
    ``flip``: ``g`` is ``transposed(g0)`` and w g0's filters (backward-data)."""
    kblocks = cdiv(g.K, BK)
    wt = rt.xp.empty(kblocks * steps(g) * STEP_WORDS, np.float32)
    launch(rt, FAMILY, "conv2d_wino_weights", np.float32, kblocks * steps(g) * CK * BK,
           (w, wt, np.int32(g.K), np.int32(g.C), np.int32(kblocks), np.int32(steps(g)), np.int32(flip)))
    return wt


def forward(rt, x, wt, b, y, g, geom, flags: int) -> None:
    """y from x and ``wt`` (``weights`` on ``g``); b and ``flags`` as conv2d_forward's epilogue."""
    launch_tasks(rt, FAMILY, "conv2d_wino_forward", x.dtype, tasks(g), THREADS,
                 (x, wt, b, y, *geom, np.int32(steps(g)), np.int32(flags)), SMEM)
