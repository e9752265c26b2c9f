"""Launch code of kernels/linear.cu (same interface as gpucnn.reference.linear).

x is (*, in): its leading axes are flattened into R rows, so every pass is one
GEMM on gemm.cuh's tiles. The weight gradient's reduction over R is split
over grid z (a partial (out, in) tile per split, added in split order).
"""
from __future__ import annotations

import numpy as np

from gpucnn.cuda import gemm, tc
from gpucnn.cuda.gemm import THREADS, cdiv, fits_int, launch_gemm, split_reduction
from gpucnn.cuda.launch import contiguous, i64, launch

FAMILY = "linear"
KERNELS = ("linear_forward", "linear_backward_data", "linear_backward_weight", "linear_sum_splits",
           "linear_backward_bias")
TC_KERNELS = ("linear_forward", "linear_backward_data", "linear_backward_weight")  # float32, gpucnn.cuda.tc

MAX_GRID_Z = 65535  # the weight kernel loops over splits beyond it (a test lowers it)
# As conv2d's filter gradient: split R until about TARGET_BLOCKS blocks run,
# each reducing at least MIN_SPLIT_STEPS tiles of rows; shapes alone decide.
TARGET_BLOCKS = 512
MIN_SPLIT_STEPS = 8


def _dims(R, I, O):
    return np.int32(R), np.int32(I), np.int32(O)


def _gemm(rt, base, dtype, rows, cols, z, args, plan=None):
    """FFMA or tensor cores by the math mode (gpucnn.cuda.tc.plan)."""
    plan = plan or tc.plan(rt, base, dtype, rows, cols, z)
    launch_gemm(rt, FAMILY, plan, rows, cols, z, MAX_GRID_Z, args)


def weight_splits(R: int, I: int, O: int, plan=None) -> tuple[int, int]:
    """(chunk, splits): the weight gradient's reduction over R rows for the
    tile of ``plan`` (default: the FFMA tile)."""
    bm, bn, step = (plan.bm, plan.bn, plan.k_step) if plan else (gemm.TILE_M, gemm.TILE_N, gemm.TILE_K)
    return split_reduction(R, cdiv(O, bm) * cdiv(I, bn), TARGET_BLOCKS, MIN_SPLIT_STEPS, step)


def linear_forward(rt, x, w, b):
    xp = rt.xp
    O, I = w.shape
    x, w = contiguous(xp, x), contiguous(xp, w)
    b = xp.zeros(O, x.dtype) if b is None else contiguous(xp, b)
    R = x.size // I if I else int(np.prod(x.shape[:-1]))
    y = xp.empty((*x.shape[:-1], O), x.dtype)
    fits_int(FAMILY, x.size, w.size, y.size)
    if y.size:
        _gemm(rt, "linear_forward", x.dtype, R, O, 1, (x, w, b, y, *_dims(R, I, O)))
    return y


def linear_backward(rt, dy, x, w, bias: bool):
    xp = rt.xp
    O, I = w.shape
    dy, x, w = contiguous(xp, dy), contiguous(xp, x), contiguous(xp, w)
    R = int(np.prod(x.shape[:-1]))
    fits_int(FAMILY, dy.size, x.size, w.size)
    dims = _dims(R, I, O)
    dx = xp.empty(x.shape, x.dtype)
    if dx.size:
        _gemm(rt, "linear_backward_data", x.dtype, R, I, 1, (dy, w, dx, *dims))
    dw = xp.empty((O, I), x.dtype)
    if R == 0:  # no rows: nothing reaches the weights
        dw[...] = 0
    elif dw.size:
        plan = tc.plan(rt, "linear_backward_weight", x.dtype, O, I, 1)
        chunk, splits = weight_splits(R, I, O, plan)
        out = dw if splits == 1 else xp.empty((splits, O, I), x.dtype)
        fits_int(FAMILY, out.size)
        _gemm(rt, "linear_backward_weight", x.dtype, O, I, splits,
              (dy, x, out, *dims, np.int32(chunk), np.int32(splits)), plan)
        if splits > 1:
            launch(rt, FAMILY, "linear_sum_splits", x.dtype, dw.size, (out, dw, i64(dw.size), np.int32(splits)))
    db = None
    if bias:
        db = xp.empty(O, x.dtype)
        # One block per output feature: O * THREADS "elements" asks grid_for for O blocks.
        launch(rt, FAMILY, "linear_backward_bias", x.dtype, O * THREADS,
               (dy, db, np.int32(R), np.int32(O)), block=THREADS)
    return dx, dw, db
