"""Winograd's minimal filtering F(2x2, 3x3) in NumPy (Lavin & Gray 2016): the
oracle of kernels/conv2d_wino.cu's interface (gpucnn.cuda.wino), not of its
index math.

``weights(w, flip)`` is the weights kernel's output, the same layout: U =
G g Gᵀ of each filter, (kblocks, steps x 8 channels, 16 points, 32 filters),
zeros past K and C. ``forward(x, u, b, K, pad, relu)`` is the forward
kernel's result from x and that U: the 16 products of each point summed over
channels (M = U V per point, V = Bᵀ d B of each 4x4 input patch), then Aᵀ M A
per 2x2 block of outputs, the bias and the ReLU. In float64 it equals the
direct convolution up to rounding (tests/test_wino.py), which is what makes
the transforms' constants the right ones.
"""
from __future__ import annotations

import numpy as np

BK, CK, XI = 32, 8, 16  # filters a block, channels a step, points (kernels/conv2d_wino.cu)
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
BT = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
AT = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]])


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def weights(w, flip: bool = False, transform=G):
    """U of w (K, C, 3, 3), or with ``flip`` of the filters transposed and rotated of w (C', K', 3,
    3): filter f's tap (r, s) of channel c is w[c, f, 2 - r, 2 - s] (backward-data's).
    ``transform``: G, or another 4 x 3 matrix in its place (|G| on |w|: the terms' magnitudes)."""
    w = np.asarray(w)
    f = np.flip(w, (2, 3)).transpose(1, 0, 2, 3) if flip else w
    K, C = f.shape[:2]
    g = np.asarray(transform, w.dtype)
    u = np.einsum("ar,kcrs,bs->kcab", g, f, g).reshape(K, C, XI)
    kb, cs = _cdiv(K, BK), _cdiv(C, CK) * CK
    out = np.zeros((kb * BK, cs, XI), w.dtype)
    out[:K, :C] = u
    return out.reshape(kb, BK, cs, XI).transpose(0, 2, 3, 1).copy()  # (kblocks, channels, points, filters)


def forward(x, u, b, K: int, pad: tuple, relu: bool = False):
    """y (N, K, P, Q) of x (N, C, H, W) and U (``weights``) at padding ``pad`` (top, bottom, left,
    right), stride and dilation 1; ``b`` the bias or None; ``relu`` the fused ReLU."""
    x = np.asarray(x)
    N, C, H, W = x.shape
    pt, pb, pl, pr = pad
    P, Q = H + pt + pb - 2, W + pl + pr - 2
    TP, TQ = _cdiv(P, 2), _cdiv(Q, 2)
    # the input padded so every 4x4 patch of the 2x2 blocks' windows is inside it (zeros outside x)
    xp = np.zeros((N, C, 2 * TP + 2, 2 * TQ + 2), x.dtype)
    h, w_ = min(H, 2 * TP + 2 - pt), min(W, 2 * TQ + 2 - pl)
    xp[:, :, pt:pt + h, pl:pl + w_] = x[:, :, :h, :w_]
    idx_r = 2 * np.arange(TP)[:, None] + np.arange(4)[None, :]  # (TP, 4)
    idx_c = 2 * np.arange(TQ)[:, None] + np.arange(4)[None, :]  # (TQ, 4)
    d = xp[:, :, idx_r[:, None, :, None], idx_c[None, :, None, :]]  # (N, C, TP, TQ, 4, 4)
    bt = BT.astype(x.dtype)
    v = np.einsum("ai,nctuij,bj->nctuab", bt, d, bt).reshape(N, C, TP, TQ, XI)
    uu = u.transpose(0, 3, 1, 2).reshape(-1, u.shape[1], XI)[:K, :C]  # (K, C, points)
    m = np.einsum("kcp,nctup->nktup", uu, v).reshape(N, K, TP, TQ, 4, 4)
    at = AT.astype(x.dtype)
    y = np.einsum("ai,nktuij,bj->nktuab", at, m, at).transpose(0, 1, 2, 4, 3, 5).reshape(N, K, 2 * TP, 2 * TQ)
    y = y[:, :, :P, :Q]
    if b is not None:
        y = y + np.asarray(b, x.dtype)[None, :, None, None]
    return np.maximum(y, 0) if relu else y
