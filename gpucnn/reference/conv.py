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
strided view of the padded input (or, for small images, as the seed's own
im2row rows: ``gpucnn.reference.im2row``; or reads it in place from the
input copied once per kernel column: ``gpucnn.reference.lowered``). Groups
split F and φ into block-diagonal
parts that run as one batched matmul, so depthwise convolution is not a
Python loop over channels. φ repeats each pixel kh*kw times, so the
convolutions build it a chunk of images (or of output rows) at a time within
``workspace.get_limit()`` bytes, in per-thread scratch, and the chunks run on
the workspace threads (``conv_algo`` chooses the algorithm and the chunks).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gpucnn import shapes
from gpucnn.reference import chunks, conv_algo, depthwise, im2row, layout, lowered, phases, strips, workspace
from gpucnn.reference.relu import relu_into


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


def _fold_wide(flat, dphi, win, p0, Wp):
    """``_fold`` at unit stride: dphi (n, C, kh, kw, p*Wp) in rows Wp wide,
    zeros past Q (``strips.widened``), onto flat (n, C, Hp*Wp + slack) padded
    planes, from output row p0. Tap (i, j) of output (p, q) lands on padded
    pixel (p + i*dh, q + j*dw): in a flat plane Wp wide the whole tap is one
    contiguous run from (p0 + i*dh)*Wp + j*dw, not p0..p1 rows of Q. The
    columns past Q add their zeros onto the next row's start or the slack."""
    L = dphi.shape[-1]
    for i in range(win.kh):
        for j in range(win.kw):
            off = (p0 + i * win.dh) * Wp + j * win.dw
            flat[:, :, off:off + L] += dphi[:, :, i, j]


def _crop(xp, win):
    t, _, l, _ = win.pad
    return xp[..., t:t + win.H, l:l + win.W]


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


def _phi(xp, win, p0, p1, G, side_by_side=False):
    """φ of the images of xp for output rows p0..p1, copied into per-thread
    scratch: in unfold's layout, (n, G, C/G*kh*kw, (p1-p0)*Q), or with
    ``side_by_side`` channel-major, (G, C/G*kh*kw, n*(p1-p0)*Q)."""
    v = _taps(xp, win, p0, p1)
    if side_by_side:
        v = v.transpose(1, 2, 3, 0, 4, 5)
    phi = workspace.scratch("conv.phi", v.shape, xp.dtype)
    np.copyto(phi, v)
    if side_by_side:
        return phi.reshape(G, -1, xp.shape[0] * (p1 - p0) * win.Q)
    return phi.reshape(xp.shape[0], G, -1, (p1 - p0) * win.Q)


def _dy_side_by_side(dy, n0, n1, p0, p1, G):
    """Rows p0..p1 of dy's images n0..n1 channel-major, (G, K/G, n*(p1-p0)*Q),
    copied into per-thread scratch."""
    d = dy[n0:n1, :, p0:p1].transpose(1, 0, 2, 3)
    dt = workspace.scratch("conv.dyt", d.shape, dy.dtype)
    np.copyto(dt, d)
    return dt.reshape(G, dy.shape[1] // G, -1)


def _grouped(a, G, p0=0, p1=None):
    """Rows p0..p1 of a (n, G*m, P, Q) chunk as (n, G, m, (p1-p0)*Q); a view
    for whole rows of a contiguous array."""
    a = a[:, :, p0:p1]
    return a.reshape(a.shape[0], G, a.shape[1] // G, -1)


def conv2d_forward(x, w, b, g, relu=False):
    """y = φ(x) F per group (§4.4): x (N, C, H, W), w (K, C/groups, kh, kw),
    b (K,) or None -> y (N, K, P, Q); then max(y, 0) (torch.relu) when
    ``relu``, each chunk of images while it is in cache (one pass over y, no
    second array). As im2row rows (of at most ``conv_algo.ROWS_PIXELS``
    outputs) or lowered, y is a view of NHWC memory (``layout``)."""
    win, G, K = g.win, g.groups, g.K
    algo = conv_algo.choose(g)
    if algo == conv_algo.DEPTHWISE:
        y = depthwise.depthwise(x, w, g, "forward")
        _epilogue(y, b, relu)
        return y
    low = algo == conv_algo.UNFOLD and conv_algo.as_lowered(g, forward=True)
    rows_path = low or algo == conv_algo.UNFOLD and conv_algo.as_rows(g, forward=True)
    y = layout.empty((g.N, K, win.P, win.Q), x.dtype, low or rows_path and conv_algo.channels_last_output(g))
    if rows_path:
        fr = im2row.filters(w)
        yl = y.transpose(0, 2, 3, 1)
        product = lowered.forward if low else im2row.forward

        def rows_chunk(n0, n1, rows):
            product(x[n0:n1], fr, g.win, yl[n0:n1], rows)
            for p0, p1 in rows:
                _epilogue(y[n0:n1, :, p0:p1], b, relu)

        chunks.run(g, x.itemsize, rows_chunk, bands=low)
        return y
    if algo == conv_algo.UNFOLD and conv_algo.as_strips(g):
        fs = strips.filters(w)

        def strips_chunk(n0, n1, rows):
            strips.forward(x[n0:n1], fs, g.win, y[n0:n1])
            _epilogue(y[n0:n1], b, relu)

        chunks.run(g, x.itemsize, strips_chunk)
        return y
    f = w.reshape(G, K // G, -1)

    sbs = algo == conv_algo.UNFOLD and conv_algo.side_by_side(g)

    def chunk(n0, n1, rows):
        xp = None if algo == conv_algo.POINTWISE else im2row.padded(x[n0:n1], win.pad)
        for p0, p1 in rows:
            phi = _grouped(x[n0:n1], G, p0, p1) if xp is None else _phi(xp, win, p0, p1, G, sbs)
            if sbs:
                out = np.matmul(f, phi).reshape(K, n1 - n0, p1 - p0, win.Q)
                y[n0:n1, :, p0:p1] = out.transpose(1, 0, 2, 3)
            elif p1 - p0 == win.P:
                # Products land in y's own layout: no transposed copy.
                out = _grouped(y[n0:n1], G)
                step = conv_algo.column_block(g) or out.shape[-1]
                for c in range(0, out.shape[-1], step):
                    np.matmul(f, phi[..., c:c + step], out=out[..., c:c + step])
            else:
                y[n0:n1, :, p0:p1] = np.matmul(f, phi).reshape(n1 - n0, K, p1 - p0, win.Q)
        _epilogue(y[n0:n1], b, relu)

    chunks.run(g, x.itemsize, chunk)
    return y


def _epilogue(yc, b, relu):
    """Bias and ReLU on a chunk yc (n, K, P, Q) of the output, in place."""
    if b is not None:
        yc += b.reshape(1, -1, 1, 1)
    if relu:
        relu_into(yc, yc)


def _backward_data_transposed(dy, w, g):
    """dx as the forward convolution of dy with each group's filters flipped
    and their in and out channels swapped (``conv_algo.TRANSPOSED``, unit stride)."""
    win, G, C, K = g.win, g.groups, g.C, g.K
    wt = w.reshape(G, K // G, C // G, win.kh, win.kw)[..., ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    wt = np.ascontiguousarray(wt).reshape(C, K // G, win.kh, win.kw)
    win2 = shapes.window(win.P, win.Q, (win.kh, win.kw), (1, 1), conv_algo.transposed(g), (win.dh, win.dw))
    return conv2d_forward(dy, wt, None, shapes.Conv(g.N, K, C, G, win2))


def conv2d_backward_data(dy, w, g, algo=None):
    """dx from dy (N, K, P, Q) (§4.8): dφ = dY Fᵀ per group, then the
    reverse of φ sums dφ back onto the input pixels (§6); or the same sums
    gathered, as a forward convolution (at unit stride) or one per stride
    phase of x (``conv_algo.choose_backward_data``; ``algo`` forces FOLD,
    TRANSPOSED or PHASES)."""
    win, G, C = g.win, g.groups, g.C
    kind = conv_algo.choose(g)
    if kind == conv_algo.DEPTHWISE:
        return depthwise.depthwise(dy, w, g, "backward_data")
    algo = algo or conv_algo.choose_backward_data(g)
    if kind == conv_algo.UNFOLD and algo == conv_algo.TRANSPOSED:
        return _backward_data_transposed(dy, w, g)
    if kind == conv_algo.UNFOLD and algo == conv_algo.PHASES:
        return phases.backward_data(dy, w, g)
    ft = w.reshape(G, g.K // G, -1).transpose(0, 2, 1)
    t, b, l, r = win.pad
    Hp, Wp = win.H + t + b, win.W + l + r
    # At unit stride the taps of a row of dφ land on one run of a plane Wp
    # wide (``_fold_wide``); a non-finite filter would spread NaN through
    # the extra columns, so it takes the plain fold.
    wide = win.sh == win.sw == 1 and bool(np.isfinite(w).all())
    dx = workspace.empty((g.N, C, win.H, win.W), dy.dtype)

    def chunk(n0, n1, rows):
        n = n1 - n0
        if kind == conv_algo.POINTWISE:
            np.matmul(ft, _grouped(dy[n0:n1], G), out=_grouped(dx[n0:n1], G))
            return
        padded = t or b or l or r
        if wide:
            dxp = workspace.scratch("conv.dxp", (n, C, Hp * Wp + (win.kw - 1) * win.dw), dy.dtype)
        else:
            dxp = workspace.scratch("conv.dxp", (n, C, Hp, Wp), dy.dtype) if padded else dx[n0:n1]
        dxp[...] = 0
        for p0, p1 in rows:
            d = _grouped(dy[n0:n1], G, p0, p1)
            d = strips.widened(d, win, p1 - p0) if wide else d
            dphi = workspace.scratch("conv.dphi", (n, G, ft.shape[1], d.shape[-1]), dy.dtype)
            # One filter a group: the product has inner size 1, so it is an
            # exact broadcast multiply, without tiny BLAS calls.
            (np.multiply if g.K == G else np.matmul)(ft, d, out=dphi)
            dphi = dphi.reshape(n, C, win.kh, win.kw, -1)
            if wide:
                _fold_wide(dxp, dphi, win, p0, Wp)
            else:
                _fold(dxp, dphi.reshape(*dphi.shape[:-1], p1 - p0, win.Q), win, p0)
        if wide:
            dx[n0:n1] = _crop(dxp[..., :Hp * Wp].reshape(n, C, Hp, Wp), win)
        elif padded:
            dx[n0:n1] = _crop(dxp, win)

    chunks.run(g, dy.itemsize, chunk)
    return dx


def conv2d_backward_filter(dy, x, g):
    """dF = φ(x)ᵀ dY (§4.6), summed over the batch: dw (K, C/groups, kh, kw),
    computed per group as dYᵀ φ(x), dw's own layout, or for few filters
    (``conv_algo.few_filters``) as its transpose φ(x) dYᵀ: with 16 to 64
    filters a group BLAS ran dYᵀ φ(x) 1.3-1.6x slower, with 512 φ(x) dYᵀ 2x
    slower; for small images (``conv_algo.as_rows``) as φ(x)ᵀ dY with φ(x)
    as im2row rows, taps and channels innermost, or read from the input
    lowered a kernel column at a time (``conv_algo.as_lowered``, the same
    order). Each chunk of images sums
    its own part; the parts are added in chunk order, so the result does not
    depend on the thread count."""
    win, G, K = g.win, g.groups, g.K
    if conv_algo.choose(g) == conv_algo.DEPTHWISE:
        return depthwise.depthwise(dy, x, g, "backward_filter")
    if conv_algo.as_lowered(g):
        dw = chunks.summed(g, x.itemsize, lambda n0, n1, rows: lowered.filter_part(dy[n0:n1], x[n0:n1], g.win))
        return im2row.filter_gradient(dw, g, x.dtype)
    if conv_algo.as_rows(g):
        dw = chunks.summed(g, x.itemsize, lambda n0, n1, rows: im2row.filter_part(dy[n0:n1], x[n0:n1], g.win, rows))
        return im2row.filter_gradient(dw, g, x.dtype)
    if conv_algo.as_strips(g):
        dw = chunks.summed(g, x.itemsize, lambda n0, n1, rows: strips.filter_part(dy[n0:n1], x[n0:n1], g.win))
        return strips.filter_gradient(dw, g, x.dtype)
    sbs = conv_algo.side_by_side(g)
    pointwise = conv_algo.choose(g) == conv_algo.POINTWISE and not sbs
    few = conv_algo.few_filters(g)

    def product(a, b):
        # Both operands keep the pixels innermost; BLAS reads the second
        # transposed as it is.
        return np.matmul(b, a.swapaxes(-1, -2)) if few else np.matmul(a, b.swapaxes(-1, -2))

    def part(n0, n1, rows):
        xp = im2row.padded(x[n0:n1], win.pad)
        acc = 0
        for p0, p1 in rows:
            phi = _grouped(x[n0:n1], G, p0, p1) if pointwise else _phi(xp, win, p0, p1, G, sbs)
            if sbs:
                # The batch sum is the inner dimension of one product.
                acc = acc + product(_dy_side_by_side(dy, n0, n1, p0, p1, G), phi)
            else:
                acc = acc + product(_grouped(dy[n0:n1], G, p0, p1), phi).sum(axis=0)
        return acc

    dw = chunks.summed(g, x.itemsize, part)
    if dw is None:
        return np.zeros((K, g.C // G, win.kh, win.kw), x.dtype)
    if few:
        dw = np.ascontiguousarray(dw.swapaxes(-1, -2))
    return dw.reshape(K, g.C // G, win.kh, win.kw)


def conv2d_backward_bias(dy):
    """db (K,): each bias entry is added to every output pixel of its channel;
    its gradient is the sum of the channel's planes (``norm.channel_sums``:
    2.2x faster than NumPy's sum over three axes at 64x16x32x32, and more
    accurate)."""
    from gpucnn.reference.norm import channel_sums
    return channel_sums(dy).astype(dy.dtype)
