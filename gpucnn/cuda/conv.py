"""Launch code of kernels/conv2d.cu (same interface as gpucnn.reference.conv).

The three convolution passes are implicit GEMMs tiled GEMM_BM x GEMM_BN per
block (kernels/gemm.cuh): grid x runs over column tiles, y over row tiles and
z over groups (and, for the filter gradient, over reduction splits); kernels
loop over z, so the grid is capped at CUDA's 65535 there.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from gpucnn.cuda import gemm, tc
from gpucnn.cuda.gemm import THREADS, cdiv, fits_int, launch_gemm, split_reduction
from gpucnn.cuda.launch import contiguous, i64, launch

FAMILY = "conv2d"
KERNELS = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_filter", "conv2d_sum_splits",
           "conv2d_backward_bias", "im2col", "col2im")
TC_KERNELS = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_filter")  # float32, gpucnn.cuda.tc

MAX_GRID_Z = 65535  # the tile kernels loop over z beyond it (a test lowers it)
# The filter gradient splits its N*P*Q reduction until about this many blocks
# run, each reducing at least MIN_SPLIT_STEPS tiles of TILE_K pixels. Both
# depend on the shapes only, so the summation order (and the bits) never
# change from run to run.
TARGET_BLOCKS = 512
MIN_SPLIT_STEPS = 8


def _fits_int(*counts) -> None:
    fits_int(FAMILY, *counts)


def _batches(g, *per_image):
    """(n0, n1, geometry) for runs of images whose tensors each stay within
    half the kernels' int range, so a batch of any size works. Half: the
    gathers form int offsets of window origins, which can reach past a
    tensor's end by the padding before their bounds check. One image past
    the limit is refused."""
    limit = gemm._INT_MAX // 2
    if max(per_image) > limit:
        raise ValueError(f"{FAMILY} kernels: one image's tensor holds {max(per_image)} elements, "
                         f"more than {limit} (half of 2**31 - 1, the kernels' int range)")
    step = max(1, limit // max(1, *per_image))
    for n0 in range(0, g.N, step):
        n1 = min(g.N, n0 + step)
        yield n0, n1, dataclasses.replace(g, N=n1 - n0)


def _geom(g):
    w = g.win
    pt, _, pl, _ = w.pad
    vals = (g.N, g.C, w.H, w.W, g.K, w.P, w.Q, w.kh, w.kw, w.sh, w.sw, pt, pl, w.dh, w.dw, g.groups)
    return tuple(np.int32(v) for v in vals)


def _win(win):
    pt, _, pl, _ = win.pad
    vals = (win.H, win.W, win.P, win.Q, win.kh, win.kw, win.sh, win.sw, pt, pl, win.dh, win.dw)
    return tuple(np.int32(v) for v in vals)


def _gemm(rt, base, dtype, rows, cols, z, args, plan=None):
    """Launch a tile kernel over a rows x cols GEMM, repeated z times: FFMA or
    tensor cores by the math mode (gpucnn.cuda.tc.plan)."""
    plan = plan or tc.plan(rt, base, dtype, rows, cols, z)
    launch_gemm(rt, FAMILY, plan, rows, cols, z, MAX_GRID_Z, args)


def conv2d_forward(rt, x, w, b, g):
    xp = rt.xp
    x, w = contiguous(xp, x), contiguous(xp, w)
    b = xp.zeros(g.K, x.dtype) if b is None else contiguous(xp, b)
    win = g.win
    y = xp.empty((g.N, g.K, win.P, win.Q), x.dtype)
    _fits_int(w.size)
    if y.size:
        for n0, n1, gb in _batches(g, x[0].size, y[0].size):
            _gemm(rt, "conv2d_forward", x.dtype, g.K // g.groups, gb.N * win.P * win.Q, g.groups,
                  (x[n0:n1], w, b, y[n0:n1], *_geom(gb)))
    return y


def conv2d_backward_data(rt, dy, w, g):
    xp = rt.xp
    dy, w = contiguous(xp, dy), contiguous(xp, w)
    win = g.win
    dx = xp.empty((g.N, g.C, win.H, win.W), dy.dtype)
    _fits_int(w.size)
    if dx.size:
        for n0, n1, gb in _batches(g, dy[0].size, dx[0].size):
            _gemm(rt, "conv2d_backward_data", dy.dtype, g.C // g.groups, gb.N * win.H * win.W,
                  g.groups, (dy[n0:n1], w, dx[n0:n1], *_geom(gb)))
    return dx


def filter_splits(g, plan=None) -> tuple[int, int]:
    """(chunk, splits): the filter gradient's N*P*Q reduction in ``splits``
    chunks of ``chunk`` pixels (a multiple of the k-step) for the tile of
    ``plan`` (default: the FFMA tile)."""
    bm, bn, step = (plan.bm, plan.bn, plan.k_step) if plan else (gemm.TILE_M, gemm.TILE_N, gemm.TILE_K)
    taps = g.C // g.groups * g.win.kh * g.win.kw
    tiles = cdiv(g.K // g.groups, bm) * cdiv(taps, bn) * g.groups
    return split_reduction(g.N * g.win.P * g.win.Q, tiles, TARGET_BLOCKS, MIN_SPLIT_STEPS, step)


def conv2d_backward_filter(rt, dy, x, g):
    xp = rt.xp
    dy, x = contiguous(xp, dy), contiguous(xp, x)
    win = g.win
    if dy.size == 0:  # no output pixels: nothing reaches the filters
        return xp.zeros((g.K, g.C // g.groups, win.kh, win.kw), x.dtype)
    dw = None
    # Runs of images are summed in batch order, so the bits stay fixed.
    for n0, n1, gb in _batches(g, x[0].size, dy[0].size, win.P * win.Q):
        part = _filter_gradient(rt, dy[n0:n1], x[n0:n1], gb)
        dw = part if dw is None else dw + part
    return dw


def _filter_gradient(rt, dy, x, g):
    win = g.win
    taps = g.C // g.groups * win.kh * win.kw
    dw = rt.xp.empty((g.K, g.C // g.groups, win.kh, win.kw), x.dtype)
    plan = tc.plan(rt, "conv2d_backward_filter", x.dtype, g.K // g.groups, taps, g.groups)
    chunk, splits = filter_splits(g, plan)
    out = dw if splits == 1 else rt.xp.empty((splits, *dw.shape), x.dtype)
    _fits_int(out.size)
    _gemm(rt, "conv2d_backward_filter", x.dtype, g.K // g.groups, taps, g.groups * splits,
          (dy, x, out, *_geom(g), np.int32(chunk), np.int32(splits)), plan)
    if splits > 1:
        launch(rt, FAMILY, "conv2d_sum_splits", x.dtype, dw.size, (out, dw, i64(dw.size), np.int32(splits)))
    return dw


def conv2d_backward_bias(rt, dy):
    dy = contiguous(rt.xp, dy)
    N, K, P, Q = dy.shape
    _fits_int(dy[0].size)
    step, db = max(1, gemm._INT_MAX // max(1, dy[0].size)), None
    for n0 in range(0, max(N, 1), step):  # runs of images, summed in batch order
        part = rt.xp.empty(K, dy.dtype)
        # One block per channel: K * THREADS "elements" asks grid_for for K blocks.
        launch(rt, FAMILY, "conv2d_backward_bias", dy.dtype, K * THREADS,
               (dy[n0:n0 + step], part, np.int32(min(step, N - n0)), np.int32(K), np.int32(P * Q)),
               block=THREADS)
        db = part if db is None else db + part
    return db


def im2col(rt, x, win):
    x = contiguous(rt.xp, x)
    N, C = x.shape[:2]
    cols = rt.xp.empty((N, C * win.kh * win.kw, win.P * win.Q), x.dtype)
    launch(rt, FAMILY, "im2col", x.dtype, cols.size, (x, cols, i64(N * C), *_win(win)))
    return cols


def col2im(rt, cols, C, win):
    cols = contiguous(rt.xp, cols)
    N = cols.shape[0]
    x = rt.xp.empty((N, C, win.H, win.W), cols.dtype)
    launch(rt, FAMILY, "col2im", cols.dtype, x.size, (cols, x, i64(N * C), *_win(win)))
    return x
