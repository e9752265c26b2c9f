"""Convolution of the NumPy reference backend, written from "CNN for Dummies".

The convolution is computed as the seed writes it in §4.3 "Expanding the
convolution" and §4.4: the input x is expanded into φ(x), whose rows are the
receptive fields (im2row), and the layer becomes one matrix product
vec(y) = φ(x) F with the filter bank F reshaped to a (C*kh*kw, K) matrix.
The backward passes are the two derivatives of that product (§4.5 "The
Kronecker product" turns vec(φ(x) F) into a matrix product in either factor):

* §4.6 "Backward propagation: the parameters": dF = φ(x)ᵀ dY;
* §4.8 "Backward propagation: the supervision signal": dφ = dY Fᵀ, then the
  reverse of φ (§6 "The reverse operators") adds every entry of dφ back onto
  the input pixel it was copied from, summing where receptive fields overlap.

We store φ transposed, in torch.nn.functional.unfold's layout
(row c*kh*kw + i*kw + j, column p*Q + q), and build it with one copy from a
strided view of the padded input. Groups split F and φ into block-diagonal
parts that run as one batched matmul, so depthwise convolution is not a
Python loop over channels. φ repeats each pixel kh*kw times, so the
convolutions build it a chunk of images (or of output rows) at a time within
``workspace.get_limit()`` bytes.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gpucnn.reference import depthwise, workspace
from gpucnn.reference.relu import relu_forward


def _pad(x, pad):
    """x zero-padded by (top, bottom, left, right); x itself when no padding,
    which is safe because φ is only ever read from it."""
    t, b, l, r = pad
    if not (t or b or l or r):
        return x
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + t + b, w + l + r), x.dtype)
    xp[:, :, t:t + h, l:l + w] = x
    return xp


def _taps(xp, win, p0, p1):
    """Read-only view v (n, C, kh, kw, p1-p0, Q) of the padded input with
    v[n, c, i, j, p, q] = xp[n, c, (p0+p)*sh + i*dh, q*sw + j*dw]: the entries of
    φ(x) for output rows p0..p1, with no copy."""
    sn, sc, sy, sx = xp.strides
    n, c = xp.shape[:2]
    return as_strided(xp[:, :, p0 * win.sh:], (n, c, win.kh, win.kw, p1 - p0, win.Q),
                      (sn, sc, win.dh * sy, win.dw * sx, win.sh * sy, win.sw * sx),
                      writeable=False)


def _fold(dst, cols, win, p0):
    """Reverse of ``_taps`` (§6): add cols (a, b, kh, kw, p, Q) onto the padded
    dst (a, b, Hp, Wp), into output rows from p0. One strided add per kernel
    tap; a pixel covered by several receptive fields receives each of them."""
    p, Q = cols.shape[-2:]
    for i in range(win.kh):
        r = p0 * win.sh + i * win.dh
        for j in range(win.kw):
            c = j * win.dw
            dst[:, :, r:r + win.sh * (p - 1) + 1:win.sh, c:c + win.sw * (Q - 1) + 1:win.sw] += cols[:, :, i, j]


def _crop(xp, win):
    t, _, l, _ = win.pad
    return xp[..., t:t + win.H, l:l + win.W]


def _blocks(N, C, win, itemsize):
    """Yield (n0, n1, [(p0, p1), ...]): whole images while a chunk of φ fits in
    the workspace, else one image at a time in bands of output rows."""
    row = C * win.kh * win.kw * win.Q * itemsize
    limit = workspace.get_limit()
    if row * win.P <= limit:
        step, band = max(1, min(N, limit // (row * win.P))), win.P
    else:
        step, band = 1, max(1, limit // row)
    rows = [(p0, min(win.P, p0 + band)) for p0 in range(0, win.P, band)]
    for n0 in range(0, N, step):
        yield n0, min(N, n0 + step), rows


def im2col(x, win):
    """x (N, C, H, W) -> φ(x)ᵀ (N, C*kh*kw, P*Q), as torch.nn.functional.unfold."""
    N, C = x.shape[:2]
    cols = np.ascontiguousarray(_taps(_pad(x, win.pad), win, 0, win.P))
    return cols.reshape(N, C * win.kh * win.kw, win.P * win.Q)


def col2im(cols, C, win):
    """(N, C*kh*kw, P*Q) -> (N, C, H, W), summing overlaps, as
    torch.nn.functional.fold: the reverse operator of φ (§6)."""
    N = cols.shape[0]
    t, b, l, r = win.pad
    xp = np.zeros((N, C, win.H + t + b, win.W + l + r), cols.dtype)
    _fold(xp, cols.reshape(N, C, win.kh, win.kw, win.P, win.Q), win, 0)
    return np.ascontiguousarray(_crop(xp, win))


def conv2d_forward(x, w, b, g, relu=False):
    """y = φ(x) F per group (§4.4): x (N, C, H, W), w (K, C/groups, kh, kw),
    b (K,) or None -> y (N, K, P, Q); then max(y, 0) (torch.relu) when ``relu``."""
    y = _forward(x, w, b, g)
    return relu_forward(y, 0.0) if relu else y


def _forward(x, w, b, g):
    win, G, K = g.win, g.groups, g.K
    if G == g.C == K:
        y = depthwise.depthwise(x, w, g, "forward")
        if b is not None:
            y += b.reshape(1, K, 1, 1)
        return y
    ck = g.C // G * win.kh * win.kw
    f = w.reshape(G, K // G, ck)
    y = np.empty((g.N, K, win.P, win.Q), x.dtype)
    for n0, n1, rows in _blocks(g.N, g.C, win, x.itemsize):
        xp = _pad(x[n0:n1], win.pad)
        for p0, p1 in rows:
            if G == 1:
                # φ channel-major (ck, n*p*Q): one BLAS call for the chunk, not
                # one per image; a broadcast matmul makes n small threaded
                # GEMMs, each paying OpenBLAS's thread hand-off (seconds on a
                # loaded 2-core machine), and the output transpose costs less.
                phi = np.ascontiguousarray(_taps(xp, win, p0, p1).transpose(1, 2, 3, 0, 4, 5))
                out = np.matmul(f[0], phi.reshape(ck, -1)).reshape(K, n1 - n0, p1 - p0, win.Q)
                y[n0:n1, :, p0:p1] = out.transpose(1, 0, 2, 3)
                continue
            # Unfold's layout keeps each image's columns together, so the
            # product (G, K/G, ck) @ (n, G, ck, pQ) lands in y's own layout.
            phi = np.ascontiguousarray(_taps(xp, win, p0, p1)).reshape(n1 - n0, G, ck, -1)
            y[n0:n1, :, p0:p1] = np.matmul(f, phi).reshape(n1 - n0, K, p1 - p0, win.Q)
    if b is not None:
        y += b.reshape(1, K, 1, 1)
    return y


def _dy_rows(dy, n0, n1, p0, p1, G):
    """dY of a chunk as (G, K/G, n*p*Q): channels first, so that one matmul
    per group covers every image of the chunk."""
    d = np.ascontiguousarray(dy[n0:n1, :, p0:p1].transpose(1, 0, 2, 3))
    return d.reshape(G, dy.shape[1] // G, -1)


def conv2d_backward_data(dy, w, g):
    """dx from dy (N, K, P, Q) (§4.8): dφ = dY Fᵀ per group, then the
    reverse of φ sums dφ back onto the input pixels (§6)."""
    win, G, C = g.win, g.groups, g.C
    if G == C == g.K:
        return depthwise.depthwise(dy, w, g, "backward_data")
    ck = C // G * win.kh * win.kw
    ft = w.reshape(G, g.K // G, ck).transpose(0, 2, 1)
    t, b, l, r = win.pad
    dx = np.empty((g.N, C, win.H, win.W), dy.dtype)
    for n0, n1, rows in _blocks(g.N, C, win, dy.itemsize):
        n = n1 - n0
        # Channel-major scratch: dφ comes out of the matmul as (C, kh, kw, n, p, Q).
        dxp = np.zeros((C, n, win.H + t + b, win.W + l + r), dy.dtype)
        for p0, p1 in rows:
            d = _dy_rows(dy, n0, n1, p0, p1, G)
            # One filter a group (depthwise): the product has inner size 1, so
            # it is an exact broadcast multiply, without G tiny BLAS calls.
            dphi = ft * d if g.K == G else np.matmul(ft, d)
            dphi = dphi.reshape(C, win.kh, win.kw, n, p1 - p0, win.Q).transpose(0, 3, 1, 2, 4, 5)
            _fold(dxp, dphi, win, p0)
        dx[n0:n1] = _crop(dxp, win).transpose(1, 0, 2, 3)
    return dx


def conv2d_backward_filter(dy, x, g):
    """dF = φ(x)ᵀ dY (§4.6), summed over the batch: dw (K, C/groups, kh, kw),
    computed as its transpose dYᵀ φ(x), which is dw's own layout."""
    win, G, K = g.win, g.groups, g.K
    if G == g.C == K:
        return depthwise.depthwise(dy, x, g, "backward_filter")
    cg = g.C // G
    ck = cg * win.kh * win.kw
    dw = np.zeros((G, K // G, ck), x.dtype)
    for n0, n1, rows in _blocks(g.N, g.C, win, x.itemsize):
        xp = _pad(x[n0:n1], win.pad)
        for p0, p1 in rows:
            # φ channel-major, (C*kh*kw, n*p*Q): the batch sum becomes the inner
            # dimension of one product. With dY as (K, n*p*Q) both operands keep
            # it innermost and BLAS takes φ transposed as it is (an NT product):
            # no transposed copy of dY, which cost more than the product.
            phi = np.ascontiguousarray(_taps(xp, win, p0, p1).transpose(1, 2, 3, 0, 4, 5))
            d = _dy_rows(dy, n0, n1, p0, p1, G)
            if G == 1:
                dw[0] += d[0] @ phi.reshape(ck, -1).T
            else:
                dw += np.matmul(d, phi.reshape(G, ck, -1).transpose(0, 2, 1))
    return dw.reshape(K, cg, win.kh, win.kw)


def conv2d_backward_bias(dy):
    """db (K,): each bias entry is added to every output pixel of its channel."""
    return dy.sum(axis=(0, 2, 3))
