"""Launch code of kernels/conv2d_phase.cu: the stride-decomposed backward-data
that gpucnn.cuda.algo chooses for strides above 1. gpucnn.cuda.conv calls it
per run of images with the output it allocated and ``geom`` (conv._geom)."""
from __future__ import annotations

from gpucnn.cuda import tc
from gpucnn.cuda.gemm import cdiv, launch_gemm

FAMILY = "conv2d_phase"
KERNELS = ("conv2d_backward_data_phase",)


def backward_data(rt, dy, w, dx, g, geom, max_z: int) -> None:
    """dx from dy: grid z over (phase, group) pairs, columns enough for the
    largest phase (ceil(H/sh) x ceil(W/sw) pixels an image)."""
    win = g.win
    cols = g.N * cdiv(win.H, win.sh) * cdiv(win.W, win.sw)
    # The FFMA tile in every math mode (gpucnn.cuda.algo's docstring).
    launch_gemm(rt, FAMILY, tc.plan_for("conv2d_backward_data_phase", dy.dtype, "fp32"), g.C // g.groups, cols,
                g.groups * win.sh * win.sw, max_z, (dy, w, dx, *geom))
