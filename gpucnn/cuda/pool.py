"""Launch code of kernels/pool2d.cu (same interface as gpucnn.reference.pool).

The kernels' scalar arguments depend on the planes and the window alone, so
they are made once a (planes, window) and reused: a layer's shape repeats
call after call, and its 13 NumPy scalars (16 for average pooling) were
about half the host path (bench/host_path.py's null CuPy runtime, least of
3 runs: max_pool forward 7.54 -> 4.02 us, avg_pool forward 8.27 -> 3.88).
No memo reads the grid: launch.grid_for sizes it at each call, so
small_grid and the device stay in force.
"""
from __future__ import annotations

import functools

import numpy as np

from gpucnn.cuda.launch import contiguous, i64, launch

FAMILY = "pool2d"
KERNELS = ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
           "avg_pool2d_backward", "max_pool2d_forward_s2", "avg_pool2d_forward_s2", "max_pool2d_backward_s2",
           "avg_pool2d_backward_s2", "max_unpool2d",
           "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward")


@functools.lru_cache(maxsize=256)
def _geometry(NC: int, win) -> tuple:
    """The kernels' G arguments: planes, sizes, window, stride, top/left pad, dilation
    (memoised on everything it reads: ``win`` is a frozen shapes.Window)."""
    pt, _, pl, _ = win.pad
    ints = (win.H, win.W, win.P, win.Q, win.kh, win.kw, win.sh, win.sw, pt, pl, win.dh, win.dw)
    return (i64(NC), *(np.int32(v) for v in ints))


def pairs(win) -> bool:
    """Whether pool2d.cu's stride-2 kernels (``_s2``) run: the forward's pair
    kernels (a thread two outputs of a row, 16-byte loads) and the backward's
    gathers (a thread 4 inputs of a row): square 2x2 or 3x3 windows, stride 2,
    undilated, each pad at most half the window (torch's rule, which keeps
    every window's clamped taps inside it)."""
    k = win.kh
    return (k in (2, 3) and win.kw == k and win.sh == win.sw == 2 and win.dh == win.dw == 1
            and max(win.pad) <= k // 2)


# Where the pairs fill at least PAIR_WAVES waves of whole SMs (2048 threads)
# twice over, a thread's set-up (PlaneWalk's divisions, ~100 of the ~300
# instructions of a 3x3 pair, sm_90 SASS) serves four outputs: a 3x3 window's
# thread takes a pair of two output rows (rows = 2: a 2 x 2 block of outputs,
# whose windows share an input row, 5 row loads where two pairs took 6), a
# 2x2's two pairs (rows = 1; its rows share nothing). ResNet's 3x3/2 p1 on
# 32x64x112x112 (3.2M pairs) still has 6 such waves. Smaller launches keep a
# thread a pair. PAIR_ROWS 1 or 2 forces rows whatever the window and size
# (bench/ab_mem.py times the two side by side; the tests run both on every
# shape); 0 chooses.
PAIR_WAVES = 4
PAIR_ROWS = 0
USE_PAIRS = True  # False: the generic kernels for every window (bench/ab_mem.py times the two side by side)


@functools.lru_cache(maxsize=256)
def _forward(win, base: str, NC: int, sms: int, use_pairs: bool = True, force_rows: int = 0) -> tuple[str, int, tuple]:
    """The forward kernel's name, thread count and trailing arguments (the pair
    kernels' rows) for NC planes on ``sms`` SMs (memoised)."""
    if not (use_pairs and pairs(win)):
        return base, NC * win.P * win.Q, ()
    M = -(-win.Q // 2)
    n = NC * win.P * M
    large = n >= 2 * PAIR_WAVES * sms * 2048
    rows = force_rows or (2 if large and win.kh == 3 else 1)
    threads = NC * -(-win.P // 2) * M if rows == 2 else -(-n // 2) if large else n
    return f"{base}_s2", threads, (np.int32(rows),)


def _backward(win, base: str, NC: int) -> tuple[str, int]:
    """The backward kernel's name and thread count: on the pair windows, pool2d.cu's
    gather_fours (``_s2``: a thread 4 inputs of a row), else a thread an input."""
    if USE_PAIRS and pairs(win):
        return f"{base}_s2", NC * win.H * -(-win.W // 4)
    return base, NC * win.H * win.W


def max_pool2d_forward(rt, x, win):
    x = contiguous(rt.xp, x)
    N, C = x.shape[:2]
    y = rt.xp.empty((N, C, win.P, win.Q), dtype=x.dtype)
    idx = rt.xp.empty((N, C, win.P, win.Q), dtype=np.int64)
    name, threads, rows = _forward(win, "max_pool2d_forward", N * C, rt.device()[1], USE_PAIRS, PAIR_ROWS)
    launch(rt, FAMILY, name, x.dtype, threads, (x, y, idx, *_geometry(N * C, win), *rows))
    return y, idx


def max_pool2d_backward(rt, dy, idx, win):
    dy, idx = contiguous(rt.xp, dy), contiguous(rt.xp, idx)
    N, C = dy.shape[:2]
    dx = rt.xp.empty((N, C, win.H, win.W), dtype=dy.dtype)
    name, threads = _backward(win, "max_pool2d_backward", N * C)
    launch(rt, FAMILY, name, dy.dtype, threads, (dy, idx, dx, *_geometry(N * C, win)))
    return dx


def _avg(rt, base, src, out_hw, win, count_include_pad, divisor_override, forward=False):
    """Average pooling forward (src = x, out (P, Q)) or backward (src = dy, out (H, W));
    a nonzero divisor_override replaces every window's divisor."""
    src = contiguous(rt.xp, src)
    N, C = src.shape[:2]
    out = rt.xp.empty((N, C, *out_hw), dtype=src.dtype)
    name, threads, rows = (_forward(win, base, N * C, rt.device()[1], USE_PAIRS, PAIR_ROWS) if forward
                           else (*_backward(win, base, N * C), ()))
    launch(rt, FAMILY, name, src.dtype, threads,
           (src, out, *_avg_geometry(N * C, win, bool(count_include_pad), divisor_override), *rows))
    return out


@functools.lru_cache(maxsize=256)
def _avg_geometry(NC: int, win, count_include_pad: bool, divisor_override) -> tuple:
    """_geometry, then the bottom/right pad and the divisor's two options (memoised)."""
    return (*_geometry(NC, win), np.int32(win.pad[1]), np.int32(win.pad[3]), np.int32(count_include_pad),
            np.int32(divisor_override))


def avg_pool2d_forward(rt, x, win, count_include_pad, divisor_override=0):
    return _avg(rt, "avg_pool2d_forward", x, (win.P, win.Q), win, count_include_pad, divisor_override, True)


def avg_pool2d_backward(rt, dy, win, count_include_pad, divisor_override=0):
    return _avg(rt, "avg_pool2d_backward", dy, (win.H, win.W), win, count_include_pad, divisor_override)


def max_unpool2d(rt, y, idx, Ho, Wo):
    y, idx = contiguous(rt.xp, y), contiguous(rt.xp, idx)
    N, C, P, Q = y.shape
    x = rt.xp.zeros((N, C, Ho, Wo), dtype=y.dtype)
    launch(rt, FAMILY, "max_unpool2d", y.dtype, y.size,
           (y, idx, x, i64(y.size), i64(P * Q), i64(Ho * Wo)))
    return x


def _adaptive(rt, base, src, out_hw, H, W, P, Q):
    # The kernels form window bounds as (p + 1) * n with p < P in int.
    if max((H + 1) * P, (P + 1) * H, (W + 1) * Q, (Q + 1) * W) > 2**31 - 1:
        raise ValueError(f"adaptive_avg_pool2d kernels: sizes {H}x{W} to {P}x{Q} exceed their int range "
                         f"((size + 1) * output size must stay below 2**31)")
    src = contiguous(rt.xp, src)
    N, C = src.shape[:2]
    out = rt.xp.empty((N, C, *out_hw), dtype=src.dtype)
    launch(rt, FAMILY, base, src.dtype, out.size, (src, out, i64(N * C), *(np.int32(v) for v in (H, W, P, Q))))
    return out


def adaptive_avg_pool2d_forward(rt, x, P, Q):
    H, W = x.shape[2:]
    return _adaptive(rt, "adaptive_avg_pool2d_forward", x, (P, Q), H, W, P, Q)


def adaptive_avg_pool2d_backward(rt, dy, H, W):
    P, Q = dy.shape[2:]
    return _adaptive(rt, "adaptive_avg_pool2d_backward", dy, (H, W), H, W, P, Q)
