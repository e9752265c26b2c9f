"""Launch code of kernels/conv2d.cu (same interface as gpucnn.reference.conv).

gpucnn.cuda.algo chooses each pass's kernel per shape, and the GEMM's tile. The
GEMM families are implicit GEMMs tiled BM x BN per block (kernels/gemm.cuh): grid x
runs over column tiles, y over row tiles and z over groups (and reduction
splits, or backward-data's stride phases); kernels loop over z, so the grid
is capped at CUDA's 65535 there. The direct and window families are
kernels/depthwise.cu (gpucnn.cuda.depthwise), the phase family kernels/conv2d_phase.cu
(gpucnn.cuda.phase), the strip family kernels/conv2d_strip.cu (gpucnn.cuda.strip), the fold
family kernels/conv2d_fold.cu (gpucnn.cuda.fold), the halo family kernels/conv2d_halo.cu
(gpucnn.cuda.halo), the Winograd family kernels/conv2d_wino.cu (gpucnn.cuda.wino).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from gpucnn import mathmode
from gpucnn.cuda import algo, autotune, depthwise, fold, gemm, halo, norm, phase, strip, tc, wino
from gpucnn.cuda.gemm import fits_int, launch_gemm
from gpucnn.cuda.launch import contiguous, i64, launch

FAMILY = "conv2d"
KERNELS = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_filter", "conv2d_sum_splits",
           "conv2d_bias_grad", "im2col", "col2im",
           "conv2d_forward_m32", "conv2d_backward_data_m32", "conv2d_backward_filter_m32",  # m32: 32-row tile
           "conv2d_backward_filter_t_m32")  # the transposed filter GEMM (algo.Choice.swap)
TC_KERNELS = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_filter")  # float32, gpucnn.cuda.tc
F32_KERNELS = ("conv2d_bias_grad_async_f32",)  # the bias gradient's loads through shared memory
# True: conv2d_bias_grad_async_f32 for float32: the loads as cp.async copies into shared memory, 7
# groups ahead (channel.cuh's channel_walk_async, the walk of norm.STATS_ASYNC), else
# conv2d_bias_grad_f32 (channel_walk: 4 16-byte loads a thread in a burst). The default since
# session 23, not yet timed on a GPU: the statistics' walk, on the H200 (bench/results/
# gpu-2026-11-30-s21, step 5d, in a graph), read 33.6 MB in 15.2 us through the ring where 17.4
# without it, and this kernel read the same 33.6 MB in 16.3 us (54% of the copy rate, 70% wanted).
# bench/ab_mem.py times both ("async", "1 wave").
BIAS_ASYNC = True

MAX_GRID_Z = 65535  # the tile kernels loop over z beyond it (a test lowers it)
EPI_RELU, EPI_BIAS = 1, 2  # kernels/common.cuh: the forward kernels' epilogue flags (int epi)


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
    if step >= g.N:  # the common case, without a new geometry
        yield 0, g.N, g
        return
    for n0 in range(0, g.N, step):
        n1 = min(g.N, n0 + step)
        yield n0, n1, dataclasses.replace(g, N=n1 - n0)


def _per_image(a) -> int:
    """Elements of one image of ``a`` (N first), without indexing it: a CuPy
    view is made on the host at each index (the launch path made four a pass)."""
    return a.size // a.shape[0]


def _images(a, n0: int, n1: int):
    """Images n0..n1 of ``a``: ``a`` itself when that is all of them (the
    common case, one run of images), else a view."""
    return a if n0 == 0 and n1 == a.shape[0] else a[n0:n1]


@functools.lru_cache(maxsize=1024)
def _geom(g):
    """The kernels' GEOM arguments (conv.cuh), memoised: building them cost ~5 us of host time a launch."""
    w = g.win
    pt, _, pl, _ = w.pad
    vals = (g.N, g.C, w.H, w.W, g.K, w.P, w.Q, w.kh, w.kw, w.sh, w.sw, pt, pl, w.dh, w.dw, g.groups)
    return tuple(np.int32(v) for v in vals)


def _win(win):
    pt, _, pl, _ = win.pad
    vals = (win.H, win.W, win.P, win.Q, win.kh, win.kw, win.sh, win.sw, pt, pl, win.dh, win.dw)
    return tuple(np.int32(v) for v in vals)


def _gemm(rt, base, dtype, c, rows, cols, z, args):
    """Launch the tile kernel of choice ``c`` (FFMA or tensor cores, by its
    math mode and tile) over a rows x cols GEMM, repeated z times."""
    plan = tc.plan_of(base, dtype, c)
    launch_gemm(rt, FAMILY, plan, rows, cols, z, MAX_GRID_Z, args)


def _choose(rt, g, pass_, dtype):
    """The algorithm of the pass: the one autotune is running it on, else the heuristic's."""
    c = autotune.trial(g, pass_)
    if c is not None:
        return c
    cc, sms = rt.device()
    return algo.choose(g, pass_, dtype, math=mathmode.effective(cc), sms=sms, cc=cc)


def _split_gemm(rt, base, dtype, c, out, rows, cols, z, args, relu=False):
    """A GEMM whose reduction runs in ``c.splits`` parts over grid z, added in
    split order into ``out`` (then ReLU when ``relu``); ``args(dst, relu)`` are
    the kernel's arguments writing dst."""
    if c.splits == 1:
        _gemm(rt, base, dtype, c, rows, cols, z, args(out, relu))
        return
    part = rt.xp.empty((c.splits, *out.shape), dtype)
    _gemm(rt, base, dtype, c, rows, cols, z * c.splits, args(part, False))
    launch(rt, FAMILY, "conv2d_sum_splits", dtype, out.size,
           (part, out, i64(out.size), np.int32(c.splits), np.int32(relu)))


def conv2d_forward(rt, x, w, b, g, relu=False):
    """y = x * w + b, then ReLU when ``relu`` (the fused epilogue). Without a
    bias the kernels are told so (EPI_BIAS clear) and never read it: w stands
    in for its pointer, so no zero-filled array is allocated and launched."""
    return autotune.tuned(rt, g, "forward", x.dtype, lambda: _forward(rt, x, w, b, g, relu))


def _forward(rt, x, w, b, g, relu):
    xp = rt.xp
    x, w = contiguous(xp, x), contiguous(xp, w)
    bias = EPI_BIAS if b is not None else 0
    b = w if b is None else contiguous(xp, b)
    win = g.win
    y = xp.empty((g.N, g.K, win.P, win.Q), x.dtype)
    _fits_int(w.size)
    wts = {}  # the halo or Winograd kernels' weights, made once a call (per family: batches may differ)
    for n0, n1, gb in _batches(g, _per_image(x), _per_image(y)) if y.size else ():
        c, geom, xs, ys = _choose(rt, gb, "forward", x.dtype), _geom(gb), _images(x, n0, n1), _images(y, n0, n1)
        if c.family == "direct":
            depthwise.forward(rt, xs, w, b, ys, g, geom, bias | EPI_RELU * bool(relu))
            continue
        if c.family in algo.HALO_FAMILIES:
            wg = c.family == "halowg"
            if c.family not in wts:
                wts[c.family] = halo.weights(rt, w, g, c.math, halo.plan(gb), wg=wg)
            halo.forward(rt, xs, wts[c.family], b, ys, gb, geom, c.math, bias | EPI_RELU * bool(relu), wg)
            continue
        if c.family == "wino":
            if c.family not in wts:
                wts[c.family] = wino.weights(rt, w, g)
            wino.forward(rt, xs, wts[c.family], b, ys, gb, geom, bias | EPI_RELU * bool(relu))
            continue
        # A split reduction applies the ReLU where it adds its parts.
        _split_gemm(rt, "conv2d_forward", x.dtype, c, ys, g.K // g.groups, gb.N * win.P * win.Q,
                    g.groups, lambda dst, act: (xs, w, b, dst, *geom, np.int32(c.chunk), np.int32(c.splits),
                                                np.int32(bias | EPI_RELU * bool(act))), relu)
    return y


def conv2d_backward_data(rt, dy, w, g):
    return autotune.tuned(rt, g, "backward_data", dy.dtype, lambda: _backward_data(rt, dy, w, g))


def _backward_data(rt, dy, w, g):
    xp = rt.xp
    dy, w = contiguous(xp, dy), contiguous(xp, w)
    win = g.win
    dx = xp.empty((g.N, g.C, win.H, win.W), dy.dtype)
    _fits_int(w.size)
    wts = {}  # the halo or Winograd kernels' weights, made once a call (per family)
    for n0, n1, gb in _batches(g, _per_image(dy), _per_image(dx)) if dx.size else ():
        c, geom, dys, dxs = (_choose(rt, gb, "backward_data", dy.dtype), _geom(gb), _images(dy, n0, n1),
                             _images(dx, n0, n1))
        if c.family == "direct":
            depthwise.backward_data(rt, dys, w, dxs, gb, geom)
        elif c.family == "window":
            depthwise.backward_data_window(rt, dys, w, dxs, gb, geom)
        elif c.family == "strip":
            strip.backward_data(rt, dys, w, dxs, gb, geom)
        elif c.family == "fold":
            cc, sms = rt.device()
            fold.backward_data(rt, dys, w, dxs, gb, geom, fold.plan(gb, sms, cc))
        elif c.family == "phase":
            phase.backward_data(rt, dys, w, dxs, gb, geom, MAX_GRID_Z, c)
        elif c.family in algo.HALO_FAMILIES:  # the forward of dy by the filters transposed and rotated
            gt, wg = halo.transposed(gb), c.family == "halowg"
            if c.family not in wts:
                wts[c.family] = halo.weights(rt, w, gt, c.math, halo.plan(gt), flip=True, wg=wg)
            halo.forward(rt, dys, wts[c.family], w, dxs, gt, _geom(gt), c.math, 0, wg)
        elif c.family == "wino":  # likewise
            gt = wino.transposed(gb)
            if c.family not in wts:
                wts[c.family] = wino.weights(rt, w, gt, flip=True)
            wino.forward(rt, dys, wts[c.family], w, dxs, gt, _geom(gt), 0)
        else:
            _split_gemm(rt, "conv2d_backward_data", dy.dtype, c, dxs, g.C // g.groups,
                        gb.N * win.H * win.W, g.groups,
                        lambda dst, _: (dys, w, dst, *geom, np.int32(c.chunk), np.int32(c.splits)))
    return dx


def conv2d_backward_filter(rt, dy, x, g):
    return autotune.tuned(rt, g, "backward_filter", x.dtype, lambda: _backward_filter(rt, dy, x, g))


def _backward_filter(rt, dy, x, g):
    xp = rt.xp
    dy, x = contiguous(xp, dy), contiguous(xp, x)
    win = g.win
    if dy.size == 0:  # no output pixels: nothing reaches the filters
        return xp.zeros((g.K, g.C // g.groups, win.kh, win.kw), x.dtype)
    dw = None
    # Runs of images are summed in batch order, so the bits stay fixed.
    for n0, n1, gb in _batches(g, _per_image(x), _per_image(dy), win.P * win.Q):
        part = _filter_gradient(rt, _images(dy, n0, n1), _images(x, n0, n1), gb)
        dw = part if dw is None else dw + part
    return dw


def _filter_gradient(rt, dy, x, g):
    win = g.win
    c, geom = _choose(rt, g, "backward_filter", x.dtype), _geom(g)
    if c.family == "direct":
        return depthwise.backward_filter(rt, dy, x, g, geom, c)
    taps, Kg = g.C // g.groups * win.kh * win.kw, g.K // g.groups
    dw = rt.xp.empty((g.K, g.C // g.groups, win.kh, win.kw), x.dtype)
    _fits_int(c.splits * dw.size)
    base, rows, cols = ("conv2d_backward_filter_t", taps, Kg) if c.swap else ("conv2d_backward_filter", Kg, taps)
    _split_gemm(rt, base, x.dtype, c, dw, rows, cols, g.groups,
                lambda dst, _: (dy, x, dst, *geom, np.int32(c.chunk), np.int32(c.splits)))
    return dw


def conv2d_backward_bias(rt, dy):
    """db = dy summed over images and pixels, per channel (kernels/channel.cuh's two levels, one launch)."""
    dy = contiguous(rt.xp, dy)
    K = dy.shape[1]
    threads, parts, sizes = _bias_geometry(dy.shape, rt.device()[1], norm.MIN_CHUNK,  # tests lower MIN_CHUNK
                                           norm.REDUCE_WAVES)
    db = rt.xp.empty(K, dy.dtype)
    base = "conv2d_bias_grad_async" if BIAS_ASYNC and dy.dtype == np.float32 else "conv2d_bias_grad"
    launch(rt, FAMILY, base, dy.dtype, threads, (dy, *norm.scratch(rt, K, parts), db, *sizes), block=norm.THREADS)
    return db


@functools.lru_cache(maxsize=256)
def _bias_geometry(shape: tuple, sms: int, min_chunk: int, waves: int = 1) -> tuple:
    """(threads, its chunk sums' count, the kernel's sizes) of conv2d_backward_bias for dy's
    shape, memoised on all it reads (made a call, the chunking and five NumPy
    scalars: host path 5.90 -> 4.10 us, bench/host_path.py's null runtime).
    The grid is not in it: launch.grid_for sizes it at each call (small_grid
    stays in force)."""
    N, K, P, Q = shape
    _fits_int(N, K, P * Q)  # channel.cuh walks images and planes in int
    chunk, chunks = norm._chunks(K, N * P * Q, sms, min_chunk, waves)
    return K * chunks * norm.THREADS, K * chunks, (np.int32(N), np.int32(K), i64(P * Q), i64(chunk), np.int32(chunks))


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
