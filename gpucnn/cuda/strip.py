"""Launch code of kernels/conv2d_strip.cu: the backward-data of convolutions
with 1 to 4 channels a group (3-channel stems), gpucnn.cuda.algo's "strip"
family. gpucnn.cuda.conv calls it per run of images with the output it
allocated and ``geom`` (conv._geom).

A thread owns PIXELS pixels of one stride phase of a row for all the group's
channels; per filter and row tap, a chunk of TAPS taps reads one run of
PIXELS + TAPS - 1 dy values into registers and the chunk's TAPS x Cg weights
from the filter bank in shared memory (algo.strip_slots slots per filter, row
tap and phase; phases with fewer taps carry zero weights).
"""
from __future__ import annotations

import numpy as np

from gpucnn.cuda import algo
from gpucnn.cuda.gemm import fits_int
from gpucnn.cuda.launch import launch

FAMILY = "conv2d_strip"
KERNELS = tuple(f"conv2d_strip_backward_data_c{cb}" for cb in range(1, algo.SMALL_C + 1))  # one per Cg
PIXELS = algo.STRIP_PIXELS  # STRIP_PIX: pixels of one stride phase a thread owns
TAPS = algo.STRIP_TAPS  # STRIP_TB


def threads(g) -> int:
    """The kernel's threads: one per (image, group, row, phase of L, strip of PIXELS)."""
    return g.N * g.groups * algo.strip_pair_threads(g)


def backward_data(rt, dy, w, dx, g, geom) -> None:
    """dx from dy (``threads``), each block's bank the filters of the groups it meets (algo.strip_bank_groups)."""
    Cg = g.C // g.groups
    n = threads(g)
    fits_int("conv2d_strip", n)
    launch(rt, FAMILY, f"conv2d_strip_backward_data_c{Cg}", dy.dtype, n,
           (dy, w, dx, *geom, np.int32(algo.strip_slots(g)), np.int32(algo.strip_bank_groups(g))),
           block=algo.STRIP_THREADS, shared_mem=algo.strip_bank_bytes(g, dy.dtype))


def fill(g) -> float:
    """FMAs the kernel executes per FMA of the convolution's taps, along a row:
    phase b's pixels in whole strips of PIXELS, its taps in whole chunks of TAPS
    (cifar-stem: 4/3; resnet-stem's 7x7 / 2: phases of 3 and 4 taps, 8/7)."""
    win = g.win
    L, pl = algo.strip_period(win), win.pad[2]
    run = use = 0
    for b in range(min(L, win.W)):
        pixels = -(-(win.W - b) // L)
        taps = sum((b + pl - s * win.dw) % win.sw == 0 for s in range(win.kw))
        run += -(-pixels // PIXELS) * PIXELS * -(-taps // TAPS) * TAPS
        use += pixels * taps
    return run / use if use else 1.0
