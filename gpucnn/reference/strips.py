"""φ(x) one kernel row at a time, for unit-stride convolutions of the NumPy backend.

"CNN for Dummies" §4.3 writes the convolution as vec(y) = φ(x) F. Split
φ's columns, and F's rows, by kernel row i: φ(x) F = Σ_i φ_i(x) F_i, where
φ_i holds the kw*C taps of row i. At unit stride, with the output computed
over the padded input's width Wp (Q valid columns and kw - 1 that are
dropped), the receptive field of output (p, q) in kernel row i starts at
padded pixel (p + i*dh, q): in a plane flattened Wp wide, φ_i is one
contiguous window of the kw-expanded planes

    X[c, j, t] = xpad[c].flat[t + j*dw],

the window of output positions p*Wp + q shifted by i*dh*Wp. So X, kw
shifted copies of the input (where φ has kh*kw), serves all kh products,
each a strided (kw*C) x (P*Wp) matrix that BLAS reads in place. The
forward adds kh products F_i X_i; the filter gradient is kh products
dY X_iᵀ against dY widened to Wp columns with zeros (so the dropped
columns add nothing). The dropped columns cost (kw - 1)/Q more
multiplications (6% at 32x32 with 3x3 kernels).
"""
from __future__ import annotations

import numpy as np

from gpucnn.reference import im2row, workspace


def expanded(xc, win):
    """X (n, C*kw, Hp*Wp) of a chunk xc (n, C, H, W) in per-thread scratch:
    row c*kw + j is plane c padded and flattened, shifted left by j*dw, with
    zeros shifted in at the end."""
    n, C, H, W = xc.shape
    t, b, l, r = win.pad
    Hp, Wp = H + t + b, W + l + r
    T = Hp * Wp
    X = workspace.scratch("conv.strips", (n, C, win.kw, T), xc.dtype)
    im2row.padded(xc, win.pad, out=X[:, :, 0].reshape(n, C, Hp, Wp))
    for j in range(1, win.kw):
        s = j * win.dw
        X[:, :, j, :T - s] = X[:, :, 0, s:]
        X[:, :, j, T - s:] = 0
    return X.reshape(n, C * win.kw, T)


def width(win):
    """Wp: the padded input's width, over which a unit-stride output row is computed."""
    return win.Q + (win.kw - 1) * win.dw


def widened(d, win, p):
    """d (n, G, m, p*Q) at unit stride as (n, G, m, p*Wp) in per-thread
    scratch: rows as wide as the padded input, zeros past Q."""
    Wp = width(win)
    out = workspace.scratch("conv.dyw", (*d.shape[:3], p, Wp), d.dtype)
    out[..., win.Q:] = 0
    out[..., :win.Q] = d.reshape(*d.shape[:3], p, win.Q)
    return out.reshape(*d.shape[:3], p * Wp)


def _window(X, win, i, Wp):
    """φ_i: the output positions' window of X for kernel row i, (n, C*kw, P*Wp)."""
    off = i * win.dh * Wp
    return X[:, :, off:off + win.P * Wp]


def filters(w):
    """F_i for each kernel row i: w (K, C, kh, kw) as (kh, K, C*kw), columns (c, j)."""
    K, C, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(2, 0, 1, 3)).reshape(kh, K, C * kw)


def forward(xc, fs, win, yc):
    """yc (n, K, P, Q) = Σ_i F_i φ_i for a chunk xc and ``filters`` fs."""
    n, K = xc.shape[0], fs.shape[1]
    Wp = width(win)
    X = expanded(xc, win)
    acc = workspace.scratch("conv.strips_y", (n, K, win.P * Wp), xc.dtype)
    part = workspace.scratch("conv.strips_t", acc.shape, xc.dtype)
    for i in range(win.kh):
        np.matmul(fs[i], _window(X, win, i, Wp), out=part if i else acc)
        if i:
            acc += part
    yc[...] = acc.reshape(n, K, win.P, Wp)[..., :win.Q]


def filter_part(dyc, xc, win):
    """A chunk's part of dF as (kh, K, C*kw) (``filter_gradient`` reorders it):
    per kernel row, dY (widened to Wp columns) times φ_iᵀ, summed over the chunk."""
    n, K = dyc.shape[:2]
    Wp = width(win)
    X = expanded(xc, win)
    d = widened(dyc.reshape(n, 1, K, -1), win, win.P).reshape(n, K, win.P * Wp)
    return np.stack([np.matmul(d, _window(X, win, i, Wp).transpose(0, 2, 1)).sum(axis=0)
                     for i in range(win.kh)])


def filter_gradient(parts, g, dtype):
    """The summed ``filter_part``s (None for an empty batch: zeros of dtype) as dw (K, C, kh, kw)."""
    win, K = g.win, g.K
    if parts is None:
        return np.zeros((K, g.C, win.kh, win.kw), dtype)
    return np.ascontiguousarray(parts.reshape(win.kh, K, g.C, win.kw).transpose(1, 2, 0, 3))
