"""φ(x) lowered a kernel column at a time, for the NumPy backend's
convolutions on channels-last chunks (Cho and Brand's MEC, 2017).

"CNN for Dummies" §4.3 writes the convolution as vec(y) = φ(x) F, with one
row of φ(x) per output pixel holding its receptive field. Copy the padded
channels-last input xpad (n, Hp, Wp, C) kw times, once per kernel column j:

    L[b, h, q, j, c] = xpad[b, h, q*sw + j*dw, c]

Each (b, h, q) of L holds the kw*C values that any kernel row reads from
padded row h for output column q. Both products read φ from L in place, as
strided matrices, so the copy is kw times the input where φ's rows are
kh*kw times (and the strips of ``gpucnn.reference.strips``, also kw times,
add their kh products):

* forward, L ordered (b, q, h, j, c): output pixel (p, q)'s receptive field
  is L's padded rows h = p*sh .. p*sh + kh - 1 of column q, one contiguous
  run of kh*kw*C values (unit dilation down the rows). So output row p's φ
  is a (Q, kh*kw*C) matrix whose rows are Hp*kw*C apart, and y[b, p] = φ F
  is one product of inner size kh*kw*C, written straight into the NHWC
  output.
* filter gradient, L ordered (b, h, q, j, c): kernel row i's part of φ is
  L's rows h = p + i*dh for p < P (unit stride down the rows), a contiguous
  (P*Q, kw*C) block, and dF_i = φ_iᵀ dY is one product of inner size P*Q
  an image.

Columns are ordered (i, j, c) as ``im2row``'s, so the filters and the
filter gradient share its reordering (``im2row.filters``,
``im2row.filter_gradient``).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gpucnn.reference import im2row, products, workspace


def lowered(xl, win, by_column: bool, h0: int = 0, rows: int | None = None):
    """L of padded rows h0 .. h0 + rows of a channels-last padded chunk xl
    (``im2row.channels_last``), copied into per-thread scratch: (n, Q, rows,
    kw, C) ``by_column``, else (n, rows, Q, kw, C)."""
    n, Hp, _, C = xl.shape
    rows = Hp - h0 if rows is None else rows
    sn, sy, sx, sc = xl.strides
    q, j = win.sw * sx, win.dw * sx
    if by_column:
        shape, strides = (n, win.Q, rows, win.kw, C), (sn, q, sy, j, sc)
    else:
        shape, strides = (n, rows, win.Q, win.kw, C), (sn, sy, q, j, sc)
    out = workspace.scratch("conv.lowered", shape, xl.dtype)
    np.copyto(out, as_strided(xl[:, h0:], shape, strides, writeable=False))
    return out


def forward(xc, f, win, yl, bands):
    """yl (n, P, Q, K), channels-last, = φ(xc) F for a chunk xc of images
    and the filters f (``im2row.filters``), over the bands of output rows
    [(p0, p1), ...]: one product an output row of each image, each (Q,
    kh*kw*C) by (kh*kw*C, K), in one NumPy call a band. Each band pads and
    lowers only the input rows it reads."""
    t, _, l, r = win.pad
    H = xc.shape[2]
    for p0, p1 in bands:
        h0, h1 = p0 * win.sh - t, (p1 - 1) * win.sh + win.kh - t   # unpadded rows read
        xl = im2row.channels_last(xc[:, :, max(0, h0):min(H, h1)], (max(0, -h0), max(0, h1 - H), l, r))
        L = lowered(xl, win, True)
        n, Q, _, kw, C = L.shape
        sn, sq, sh = L.strides[:3]
        phi = as_strided(L, (n, p1 - p0, Q, win.kh * kw * C), (sn, win.sh * sh, sq, L.itemsize), writeable=False)
        np.matmul(phi, f, out=yl[:, p0:p1])


def filter_part(dyc, xc, win):
    """A chunk's part of dF as (kh*kw*C, K), rows in ``im2row.filters``'s
    order: per kernel row i, φ_iᵀ dY an image, summed over the chunk; the
    images' products in one NumPy call where each fits OpenBLAS's small
    kernels, else each in blocks of φ_i's columns (``products.inner_cols``)."""
    n, K, P, Q = dyc.shape
    d = im2row.pixel_major(dyc).reshape(n, P * Q, K)
    L = lowered(im2row.channels_last(xc, win.pad), win, False)
    width = win.kw * L.shape[-1]
    batched = width * P * Q * K <= products.SMALL_MNK

    def part(i):
        phi = L[:, i * win.dh:i * win.dh + P].reshape(n, P * Q, width)
        if batched:
            return np.matmul(phi.transpose(0, 2, 1), d).sum(axis=0)
        acc = products.inner_cols(phi[0], d[0])
        for b in range(1, n):
            acc += products.inner_cols(phi[b], d[b])
        return acc

    return np.concatenate([part(i) for i in range(win.kh)])
