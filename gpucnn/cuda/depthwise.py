"""Launch code of kernels/depthwise.cu: the direct convolution kernels that
gpucnn.cuda.algo chooses for small groups (depthwise, Kg and Cg of a few
channels, stems' backward-data). gpucnn.cuda.conv calls them per run of
images, with outputs it has allocated and ``geom``, conv2d.cu's GEOM
arguments (gpucnn.cuda.conv._geom).
"""
from __future__ import annotations

import numpy as np

from gpucnn.cuda import algo
from gpucnn.cuda.gemm import fits_int
from gpucnn.cuda.launch import i64, launch

FAMILY = "depthwise"
KERNELS = ("depthwise_forward", "depthwise_backward_data", "depthwise_backward_filter",
           "depthwise_forward_k3", "depthwise_forward_k5",  # a row's inputs in registers (forward_kernel)
           "depthwise_backward_filter_k3", "depthwise_backward_filter_k5",  # rows kernels (filter_kernel)
           "depthwise_backward_data_c1",  # c1: groups of one channel, one channel a thread
           "depthwise_backward_data_window")  # groups of one channel, dy windows in registers
THREADS = 256  # DW_THREADS
OUTPUTS = algo.ROW_OUTPUTS  # DW_OUT: consecutive outputs of a row a forward or rows-kernel thread computes
CHANNEL_BLOCK = 4  # DW_CB: channels of one group a backward-data thread computes
PIXELS = 4  # DW_PIX: pixels of a row's stride phase a backward-data thread computes
WARP = 32


def forward_kernel(g) -> str:
    """The forward kernel for geometry ``g``: the one that holds a row's inputs
    in registers (depthwise.cu's dw_forward_row) where algo.forward_rows takes
    it, else the per-tap one."""
    kw = algo.forward_rows(g)
    return f"depthwise_forward_k{kw}" if kw else "depthwise_forward"


def filter_kernel(g) -> str:
    """The filter-gradient kernel: the rows kernel of KS x KS filters where
    algo.filter_rows takes it (its chunks count row units), else per tap."""
    ks = algo.filter_rows(g)
    return f"depthwise_backward_filter_k{ks}" if ks else "depthwise_backward_filter"


def forward(rt, x, w, b, y, g, geom, epi: int = 0) -> None:
    """y = x * w (+ b, then ReLU, by ``epi``'s flags: gpucnn.cuda.conv's EPI_*):
    one thread per OUTPUTS outputs of a row."""
    rows, Q = y.size // y.shape[-1], y.shape[-1]
    launch(rt, FAMILY, forward_kernel(g), x.dtype, rows * -(-Q // OUTPUTS), (x, w, b, y, *geom, np.int32(epi)))


def backward_data(rt, dy, w, dx, g, geom) -> None:
    """dx from dy: one thread per PIXELS pixels of a row's stride phase and
    CHANNEL_BLOCK channels of a group, or the one channel of a group of one
    (the _c1 kernel: no FMAs on absent channels)."""
    win, Cg = g.win, g.C // g.groups
    cb, base = (1, "depthwise_backward_data_c1") if Cg == 1 else (CHANNEL_BLOCK, "depthwise_backward_data")
    blocks, wb = -(-Cg // cb), -(-(-(-win.W // win.sw)) // PIXELS)
    threads = g.N * g.groups * blocks * win.H * win.sw * wb
    fits_int("depthwise", threads)
    launch(rt, FAMILY, base, dy.dtype, threads, (dy, w, dx, *geom))


def backward_data_window(rt, dy, w, dx, g, geom) -> None:
    """dx from dy for groups of one channel (gpucnn.cuda.algo's window family):
    a warp per (image, channel, group of algo.WINDOW_ROWS rows of one row phase,
    stride phase, tile of WARP*algo.WINDOW_PIXELS pixels: algo.window_grid), the filter bank
    (algo.window_strip slots per filter, row tap and phase) in shared memory."""
    Lh, L = algo.window_periods(g.win)
    rows, tiles = algo.window_grid(g)
    threads = g.N * g.C * Lh * rows * L * tiles * WARP
    fits_int("depthwise", threads)
    strip = algo.window_strip(g)
    launch(rt, FAMILY, "depthwise_backward_data_window", dy.dtype, threads, (dy, w, dx, *geom, np.int32(strip)),
           shared_mem=algo.window_bank_bytes(g, dy.dtype))


def backward_filter(rt, dy, x, g, geom, choice):
    """dw from dy and x: a block per (filter, pixel chunk), ``choice.splits``
    chunks added in split order by conv2d_sum_splits."""
    win = g.win
    shape = (g.K, g.C // g.groups, win.kh, win.kw)
    dw = rt.xp.empty(shape, x.dtype)
    out = dw if choice.splits == 1 else rt.xp.empty((choice.splits, *shape), x.dtype)
    # One block per (filter, chunk): K*splits*THREADS "elements" asks grid_for for that many blocks.
    launch(rt, FAMILY, filter_kernel(g), x.dtype, g.K * choice.splits * THREADS,
           (dy, x, out, *geom, np.int32(choice.chunk), np.int32(choice.splits)), block=THREADS)
    if choice.splits > 1:
        launch(rt, "conv2d", "conv2d_sum_splits", x.dtype, dw.size,
               (out, dw, i64(dw.size), np.int32(choice.splits), np.int32(0)))
    return dw

