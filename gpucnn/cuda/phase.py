"""Launch code of kernels/conv2d_phase.cu: the stride-decomposed backward-data
that gpucnn.cuda.algo chooses for strides above 1. gpucnn.cuda.conv calls it
per run of images with the output it allocated and ``geom`` (conv._geom)."""
from __future__ import annotations

from gpucnn.cuda import tc
from gpucnn.cuda.gemm import cdiv, launch_gemm

FAMILY = "conv2d_phase"
KERNELS = ("conv2d_backward_data_phase",)
TC_KERNELS = ("conv2d_backward_data_phase",)  # float32, gpucnn.cuda.tc


def backward_data(rt, dy, w, dx, g, geom, max_z: int, c) -> None:
    """dx from dy: grid z over (phase, group) pairs, columns enough for the
    largest phase (ceil(H/sh) x ceil(W/sw) pixels an image), on the tile of
    choice ``c`` (gpucnn.cuda.algo: FFMA, or tensor cores in "tf32"/"3xtf32")."""
    win = g.win
    cols = g.N * cdiv(win.H, win.sh) * cdiv(win.W, win.sw)
    launch_gemm(rt, FAMILY, tc.plan_of("conv2d_backward_data_phase", dy.dtype, c),
                g.C // g.groups, cols, g.groups * win.sh * win.sw, max_z, (dy, w, dx, *geom))
