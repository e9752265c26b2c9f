"""Pooling, the NumPy way: the oracle for the pool2d kernels and the CPU backend.

Wu's "CNN for Dummies" §5 (The pooling layer) defines max and average pooling
as a reduction over each window of the input plane, channel by channel, and
§6 (The reverse operators) gives their backward passes: average pooling
spreads each output's gradient evenly over its window, max pooling routes it
to the argmax alone. ``max_unpool2d`` is that routing applied to values.

Every function takes a validated :class:`gpucnn.shapes.Window` and mirrors the
kernels' interface (same arguments, same saved argmax), but computes it from
strided views: one loop over the kh*kw window taps, each tap a (N, C, p, q)
view of the input aligned with the output positions it reaches. Padding is
never materialized; a tap simply skips the output positions where it falls in
the padding, so padded positions can never win a max nor add to a sum.

Semantics follow PyTorch's CPU kernels (``aten/src/ATen/native/cpu``):
argmax indices are flat offsets ``h*W + w`` into each input plane.
"""
from __future__ import annotations

import numpy as np

from gpucnn.reference import layout, workspace
from gpucnn.shapes import Window, adaptive_bins


def _span(n_out: int, size: int, s: int, off: int) -> tuple[int, int]:
    """Output positions [lo, hi) whose tap ``p*s + off`` lands inside [0, size)."""
    lo = max(0, -(off // s))
    hi = min(n_out, (size - 1 - off) // s + 1)
    return lo, max(lo, hi)


def _taps(win: Window):
    """Yield (tap, out rows, out cols, in rows, in cols) per window tap, in the
    raster order (i, j) that decides ties; taps that only see padding are skipped."""
    pt, _, pl, _ = win.pad
    for i in range(win.kh):
        offh = i * win.dh - pt
        p0, p1 = _span(win.P, win.H, win.sh, offh)
        for j in range(win.kw):
            offw = j * win.dw - pl
            q0, q1 = _span(win.Q, win.W, win.sw, offw)
            if p0 == p1 or q0 == q1:
                continue
            h0, w0 = p0 * win.sh + offh, q0 * win.sw + offw
            yield (i, j, slice(p0, p1), slice(q0, q1),
                   slice(h0, h0 + (p1 - p0 - 1) * win.sh + 1, win.sh),
                   slice(w0, w0 + (q1 - q0 - 1) * win.sw + 1, win.sw))


def _starts(win: Window) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corner of every window in input coordinates (may be negative)."""
    pt, _, pl, _ = win.pad
    return np.arange(win.P) * win.sh - pt, np.arange(win.Q) * win.sw - pl


def _by_planes(fn, ins, outs, win: Window, scratch: int = 0):
    """Run ``fn(*in_chunks, *out_chunks)`` over chunks of the N*C planes
    (see ``workspace.chunked``): every plane is independent, and a chunk's
    several passes then stay in cache. ``outs`` are (dtype, plane shape);
    fn writes its chunk of each in place, using ``scratch`` more bytes a plane.
    Inputs that are all views of NHWC memory (``layout``) run in chunks of
    whole images instead, in that memory's order, and the outputs keep it:
    reshaping them into planes would copy each (at 64x32x32x32, 2x2 max
    pooling took 4.6 ms on the view, 2.7 on NCHW)."""
    N, C = ins[0].shape[:2]
    if all(layout.channels_last(a) for a in ins):
        res = [layout.empty((N, C, *shape), dtype, True) for dtype, shape in outs]
        arrays = ins + res
        run = lambda a, b: fn(*(r[a:b] for r in arrays))  # noqa: E731
        count, per = N, C
    else:
        arrays = [a.reshape(1, N * C, *a.shape[2:]) for a in ins]
        arrays += [workspace.empty((1, N * C, *shape), dtype) for dtype, shape in outs]
        run = lambda a, b: fn(*(r[:, a:b] for r in arrays))  # noqa: E731
        count, per = N * C, 1
    plane = scratch + sum(a.itemsize * np.prod(a.shape[2:], dtype=int) for a in arrays)
    workspace.chunked(run, count, per * plane, workspace.PLANES_CHUNK_BYTES)
    return [r.reshape(N, C, *r.shape[2:]) for r in arrays[len(ins):]]


def _scratch(key: str, shape, dtype, like: np.ndarray) -> np.ndarray:
    """Per-thread scratch of shape (..., n, C, P, Q) in the layout of
    ``like`` (n, C, P, Q): NCHW-shaped views of NHWC memory where it is one,
    so that every pass over them runs in one memory order."""
    if not layout.channels_last(like):
        return workspace.scratch(key, shape, dtype)
    lead = len(shape) - 4
    a = workspace.scratch(key, (*shape[:lead], shape[lead], *shape[lead + 2:], shape[lead + 1]), dtype)
    return np.moveaxis(a, -1, lead + 1)


def max_pool2d_forward(x: np.ndarray, win: Window) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling (§5), a chunk of planes at a time: see ``_max_pool_planes``."""
    y, idx = _by_planes(lambda xc, yc, ic: _max_pool_planes(xc, win, yc, ic), [x],
                        [(x.dtype, (win.P, win.Q)), (np.int64, (win.P, win.Q))], win,
                        scratch=win.kh * win.kw * win.P * win.Q * x.itemsize)
    return y, idx


def _max_pool_planes(x: np.ndarray, win: Window, y: np.ndarray, idx: np.ndarray) -> None:
    """Max pooling (§5) into y (N, C, P, Q) and its argmax idx (int64, same shape).

    Torch's rule per window: start from (-inf, first in-plane tap); scan the taps
    in raster order; a tap wins if ``val > max or isnan(val)``. So ties keep the
    first tap, a NaN propagates with the index of the last NaN, and an all -inf
    window keeps -inf at its first in-plane tap. If dilation lets a window miss
    the plane entirely, y is -inf and idx is torch's ``ih0*W + iw0`` (the first
    non-negative tap row/column), which need not lie in the window or the plane.

    Computed in two sweeps instead of torch's one: np.maximum over the taps
    gives the values (and propagates NaN), then the first tap in raster order
    equal to the max is found as the largest ``[x_k == y] * (K - k)`` over the
    taps k = i*kw + j (K = kh*kw): one multiply and one maximum of single
    bytes a tap, where an overwrite of the earlier winner took three passes
    and a mixed-type multiply. A zero max may carry either sign, since 0.0 == -0.0.
    """
    taps = list(_taps(win))
    # Each tap gathered once into a contiguous plane, -inf where it falls in
    # the padding: the strided tap views cost a slow non-SIMD pass each time
    # they are read, and they are read twice (max, then argmax).
    buf = _scratch("pool.taps", (len(taps), *y.shape), x.dtype, y)
    for t, (*_, ps, qs, hs, ws) in zip(buf, taps):
        if (ps.start, ps.stop, qs.start, qs.stop) != (0, win.P, 0, win.Q):
            t.fill(-np.inf)
        np.copyto(t[:, :, ps, qs], x[:, :, hs, ws])
    if not taps:
        y.fill(-np.inf)
    elif len(taps) == 1:
        np.copyto(y, buf[0])
    else:
        np.maximum(buf[0], buf[1], out=y)
        for t in buf[2:]:
            np.maximum(y, t, out=y)

    K = win.kh * win.kw
    sdt = np.min_scalar_type(K)
    score = _scratch("pool.score", y.shape, sdt, y)
    score.fill(0)
    hit = _scratch("pool.hit", y.shape, bool, y)
    prod = _scratch("pool.prod", y.shape, sdt, y)
    # bool viewed as bytes keeps the product in one uint8 loop (no cast).
    hit_as = hit.view(np.uint8) if sdt == np.uint8 else hit
    for t, (i, j, ps, qs, hs, ws) in zip(buf, taps):
        v = (slice(None), slice(None), ps, qs)
        np.equal(t[v], y[v], out=hit[v])
        np.multiply(hit_as[v], sdt.type(K - i * win.kw - j), out=prod[v], casting="unsafe")
        np.maximum(score[v], prod[v], out=score[v])
    # NaN never equals itself, so NaN windows scored 0 above; they go to the
    # last NaN tap in raster order, as torch's `isnan(val)` replacement leaves it.
    if y.size and np.isnan(y.max()):
        for t, (i, j, ps, qs, hs, ws) in zip(buf, taps):
            v = (slice(None), slice(None), ps, qs)
            np.copyto(score[v], sdt.type(K - i * win.kw - j), where=np.isnan(t[v]))

    hb, wb = _starts(win)
    # Windows with no in-plane tap still score 0: torch's initial index, the
    # first tap at or below row 0 / column 0, stepping by the dilation (its
    # `while (ih0 < 0) ih0 += dilationH`). It is always a tap of the window,
    # since each pad is at most half the dilated kernel.
    if score.size and score.min() == 0:
        i0 = np.maximum(0, -(hb // win.dh))
        j0 = np.maximum(0, -(wb // win.dw))
        k0 = (K - (i0[:, None] * win.kw + j0[None, :])).astype(sdt)
        np.copyto(score, np.broadcast_to(k0, score.shape), where=score == 0)

    # Score K - k names tap k = (i, j), at plane offset i*dh*W + j*dw from
    # the window's corner.
    ii, jj = np.divmod(K - np.arange(K + 1, dtype=np.int64), win.kw)
    # mode="clip" (no index is out of range): "raise" buffers out, 9x slower.
    # In memory order (contiguous for NHWC chunks too): np.take writes a
    # strided out through a buffer, 3.4x slower.
    np.take(ii * win.dh * win.W + jj * win.dw, layout.memory(score), out=layout.memory(idx), mode="clip")
    idx += hb[:, None] * win.W + wb[None, :]


def max_pool2d_backward(dy: np.ndarray, idx: np.ndarray, win: Window) -> np.ndarray:
    """Reverse of max pooling (§6), a chunk of planes at a time."""
    return _by_planes(lambda d, i, o: _max_pool_backward_planes(d, i, win, o), [dy, idx],
                      [(dy.dtype, (win.H, win.W))], win)[0]


def _max_pool_backward_planes(dy: np.ndarray, idx: np.ndarray, win: Window, dx: np.ndarray) -> None:
    """Reverse of max pooling (§6) into dx: dx[idx] += dy, window by window.

    Windows that share an argmax add their gradients there, in the order of
    the outputs and in dy's precision, as torch's loop does. An index outside
    the plane (torch's index of a window that misses the plane, see
    ``max_pool2d_forward``) routes its gradient nowhere instead of out of bounds.
    """
    N, C = dy.shape[:2]
    plane = win.H * win.W
    last = layout.channels_last(dx)
    if last:
        # NHWC memory, in its order (n, p, q, c): plane element k of channel c
        # of image n lies at (n*plane + k)*C + c, and for each target the
        # outputs still come in raster order.
        flat, g = idx.transpose(0, 2, 3, 1), dy.transpose(0, 2, 3, 1)
    else:
        flat, g = idx.reshape(N * C, win.P * win.Q), dy.reshape(N * C, win.P * win.Q)
    if flat.size and (flat.min() < 0 or flat.max() >= plane):
        keep = (flat >= 0) & (flat < plane)
        g = np.where(keep, g, 0)
        flat = np.where(keep, flat, 0)
    # One unbuffered add over all planes at once: plane k owns [k*plane, (k+1)*plane).
    # NumPy 2's ufunc.at is 19x faster here than np.bincount, which sums in
    # float64 and needs a cast back.
    if last:
        target = flat * C + ((np.arange(N, dtype=np.int64) * (plane * C))[:, None, None, None] + np.arange(C))
        out = dx.transpose(0, 2, 3, 1).reshape(-1)
    else:
        target = flat + (np.arange(N * C, dtype=np.int64) * plane)[:, None]
        out = dx.reshape(-1)
    out.fill(0)
    with np.errstate(invalid="ignore", over="ignore"):
        np.add.at(out, target.reshape(-1), g.reshape(-1))


def _avg_divisor(win: Window, count_include_pad: bool, divisor_override: int = 0) -> np.ndarray:
    """Torch's divisor per window (P, Q): divisor_override when nonzero; else
    the window clipped to the padded extent [-top, H+bottom) x [-left, W+right)
    with count_include_pad (so a ceil-mode overhang past the padding is not
    counted), else clipped to the input itself."""
    if divisor_override:
        return np.full((win.P, win.Q), divisor_override)
    pt, pb, pl, pr = win.pad
    hb, wb = _starts(win)
    h1, w1 = np.minimum(hb + win.kh, win.H + pb), np.minimum(wb + win.kw, win.W + pr)
    if count_include_pad:
        rows, cols = h1 - hb, w1 - wb
    else:
        rows = np.minimum(h1, win.H) - np.maximum(hb, 0)
        cols = np.minimum(w1, win.W) - np.maximum(wb, 0)
    return rows[:, None] * cols[None, :]


def avg_pool2d_forward(x: np.ndarray, win: Window, count_include_pad: bool,
                       divisor_override: int = 0) -> np.ndarray:
    """Average pooling (§5), a chunk of planes at a time; divisor_override,
    when nonzero, divides every window instead of torch's divisor."""
    div = _avg_divisor(win, count_include_pad, divisor_override).astype(x.dtype)
    return _by_planes(lambda xc, yc: _avg_pool_planes(xc, win, div, yc), [x],
                      [(x.dtype, (win.P, win.Q))], win)[0]


def _avg_pool_planes(x: np.ndarray, win: Window, div: np.ndarray, y: np.ndarray) -> None:
    """Average pooling (§5) into y: each window's sum over its in-plane taps,
    in raster order as torch adds them, divided by its divisor div (P, Q)."""
    y.fill(0)
    # inf + -inf is NaN and big sums overflow, as in the kernels: IEEE
    # results, not warnings.
    with np.errstate(invalid="ignore", over="ignore"):
        for _, _, ps, qs, hs, ws in _taps(win):
            np.add(y[:, :, ps, qs], x[:, :, hs, ws], out=y[:, :, ps, qs])
        y /= div


def avg_pool2d_backward(dy: np.ndarray, win: Window, count_include_pad: bool,
                        divisor_override: int = 0) -> np.ndarray:
    """Reverse of average pooling (§6), a chunk of planes at a time."""
    div = _avg_divisor(win, count_include_pad, divisor_override).astype(dy.dtype)
    return _by_planes(lambda d, o: _avg_pool_backward_planes(d, win, div, o), [dy],
                      [(dy.dtype, (win.H, win.W))], win)[0]


def _avg_pool_backward_planes(dy: np.ndarray, win: Window, div: np.ndarray, dx: np.ndarray) -> None:
    """Reverse of average pooling (§6) into dx: each output's gradient, divided
    by its window's divisor div (P, Q), is added to every in-plane tap of that window."""
    g = dy / div
    dx.fill(0)
    # Within one tap the positions p*s + off are distinct, so each in-place
    # add touches every dx element at most once; overlaps come from other taps.
    with np.errstate(invalid="ignore", over="ignore"):
        for _, _, ps, qs, hs, ws in _taps(win):
            np.add(dx[:, :, hs, ws], g[:, :, ps, qs], out=dx[:, :, hs, ws])


def max_unpool2d(y: np.ndarray, idx: np.ndarray, Ho: int, Wo: int) -> np.ndarray:
    """Max unpooling, the value-side twin of §6's max reverse operator:
    zeros (N, C, Ho, Wo) with ``x.plane[idx] = y`` (indices already validated).

    Where several outputs name the same index one of them wins, as in PyTorch;
    here the last in C order, as a 1-D NumPy fancy assignment writes in order
    (the same one torch's sequential CPU loop keeps).
    """
    N, C = y.shape[:2]
    plane = Ho * Wo
    planes = np.arange(N * C, dtype=np.int64) * plane
    target = idx.reshape(N * C, y.shape[2] * y.shape[3]) + planes[:, None]
    x = np.zeros(N * C * plane, dtype=y.dtype)
    x[target.ravel()] = y.ravel()
    return x.reshape(N, C, Ho, Wo)


def adaptive_avg_pool2d_forward(x: np.ndarray, P: int, Q: int) -> np.ndarray:
    """Mean of each adaptive window (gpucnn.shapes.adaptive_bins) of x (N,C,H,W): y (N,C,P,Q)."""
    y = np.empty((*x.shape[:2], P, Q), x.dtype)
    for p, (h0, h1) in enumerate(adaptive_bins(x.shape[2], P)):
        for q, (w0, w1) in enumerate(adaptive_bins(x.shape[3], Q)):
            y[:, :, p, q] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(dy: np.ndarray, H: int, W: int) -> np.ndarray:
    """dx (N,C,H,W): each output's gradient spread evenly over its window, overlaps summed."""
    P, Q = dy.shape[2:]
    dx = np.zeros((*dy.shape[:2], H, W), dy.dtype)
    for p, (h0, h1) in enumerate(adaptive_bins(H, P)):
        for q, (w0, w1) in enumerate(adaptive_bins(W, Q)):
            dx[:, :, h0:h1, w0:w1] += (dy[:, :, p, q] / ((h1 - h0) * (w1 - w0)))[:, :, None, None]
    return dx
