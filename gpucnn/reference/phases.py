"""The input gradient of a strided convolution as sh*sw dense convolutions,
one per stride phase of the input (``conv_algo.PHASES``).

"CNN for Dummies" §4.8 / §6: dx[h, w] = Σ dy[p, q] w[i, j] over the outputs
(p, q) and taps (i, j) with p*sh + i - top = h and q*sw + j - left = w (unit
dilation). The rows h = a, a + sh, a + 2*sh, ... of one phase a receive
only the taps i with (a + top - i) divisible by sh, and those reach dy rows
u + (a + top - i) / sh, consecutive for consecutive such taps. So a phase
of dx is a unit-stride correlation of dy with those taps flipped (and the
filters' in and out channels swapped): a forward convolution of dy of at
most ceil(kh/sh) x ceil(kw/sw) taps, padded (or dy cropped) to land on the
phase's rows. Unlike the fold (dφ = dY Fᵀ, then kh*kw strided adds), no
tap meets a structural zero and nothing is added twice; the phases'
outputs are written once each into dx's strided view.
"""
from __future__ import annotations

import numpy as np

from gpucnn import shapes
from gpucnn.reference import chunks, im2row, layout, lowered


def _taps(k: int, s: int, pad: int, a: int):
    """The taps of a k-tap kernel (stride s, padding pad before) that reach
    input phase a, ascending."""
    return [i for i in range(k) if (a + pad - i) % s == 0]


def _span(taps, a: int, s: int, pad: int, size: int, n: int):
    """For one dimension of phase a: (lo, hi, before, after): the dy rows (or
    columns) lo..hi its correlation reads, and the zero padding it needs
    before and after them, so that it has one output per row of the phase."""
    out = len(range(a, size, s))
    first = (a + pad - taps[-1]) // s          # the dy row of output 0's first tap
    end = first + out - 1 + len(taps) - 1      # the last dy row read
    return max(0, first), min(n, end + 1), max(0, -first), max(0, end - (n - 1))


def problems(dy, w, g):
    """Each stride phase (a, b) of dx as (a, b, d, wp, sub): d the part of
    dy it reads, wp its filters (C, K, Th, Tw) and sub the geometry of the
    forward convolution of d by wp (a ``shapes.Conv``) that gives the
    phase; (a, b, None, None, None) for a phase no tap reaches (zeros)."""
    win, (N, K, P, Q) = g.win, dy.shape
    t, _, l, _ = win.pad
    for a in range(win.sh):
        ti = _taps(win.kh, win.sh, t, a)
        for b in range(win.sw):
            tj = _taps(win.kw, win.sw, l, b)
            if not ti or not tj or a >= win.H or b >= win.W:
                yield a, b, None, None, None
                continue
            h0, h1, pt, pb = _span(ti, a, win.sh, t, win.H, P)
            w0, w1, pl, pr = _span(tj, b, win.sw, l, win.W, Q)
            if h1 <= h0 or w1 <= w0:  # it reads only padding: no window covers it
                yield a, b, None, None, None
                continue
            wp = np.ascontiguousarray(w[:, :, ti[::-1]][:, :, :, tj[::-1]].transpose(1, 0, 2, 3))
            sub = shapes.window(h1 - h0, w1 - w0, (len(ti), len(tj)), (1, 1), (pt, pb, pl, pr), (1, 1))
            yield a, b, dy[:, :, h0:h1, w0:w1], wp, shapes.Conv(N, K, g.C, 1, sub)


def backward_data(dy, w, g):
    """dx as one forward convolution of dy per stride phase of x
    (``conv_algo.PHASES``), each lowered (``gpucnn.reference.lowered``) and
    written by its products straight into dx's strided view of its phase;
    a chunk of images at a time, all its phases, on the workspace threads
    (a task a phase and chunk cost too much Python set-up under the GIL:
    two threads ran no faster than one). dx NHWC memory (``layout``)."""
    win = g.win
    dx = layout.empty((g.N, g.C, win.H, win.W), dy.dtype, True)
    dxl = dx.transpose(0, 2, 3, 1)
    parts = [(a, b, d, im2row.filters(wp), sub.win) for a, b, d, wp, sub in problems(dy, w, g)
             if d is not None]
    zeros = len(parts) < win.sh * win.sw

    def chunk(n0, n1, rows):
        if zeros:
            dxl[n0:n1] = 0  # one pass, where each strided view's fill is a slow one
        for a, b, d, f, sub in parts:
            lowered.forward(d[n0:n1], f, sub, dxl[n0:n1, a::win.sh, b::win.sw], [(0, sub.P)])

    chunks.run(g, dy.itemsize, chunk)
    return dx
