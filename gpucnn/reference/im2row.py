"""φ(x) as the seed's im2row rows for the NumPy backend's convolutions.

"CNN for Dummies" §4.3 expands the input into φ(x), one row per output
pixel holding its receptive field. ``gpucnn.reference.conv`` usually stores
φ transposed, in torch.nn.functional.unfold's layout, copied from a strided
view of the NCHW input in runs of Q values. For small images
(``conv_algo.as_rows``) it builds the rows themselves instead: from a
channels-last copy of a chunk of images, where each row is kh runs of kw*C
contiguous values, and multiplies pixel-major, (pixels, taps*channels) by
(taps*channels, K), the orientation in which OpenBLAS runs these thin
products fastest. Columns are ordered (i, j, c): tap-major, channels
innermost, so the filters are reordered to match (``filters``).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gpucnn.reference import products, workspace


def padded(x, pad, out=None):
    """x zero-padded by (top, bottom, left, right) into ``out`` or else
    per-thread scratch (only the border zeroed), or x itself without
    padding when no ``out`` is given."""
    t, b, l, r = pad
    if out is None and not (t or b or l or r):
        return x
    n, c, h, w = x.shape
    xp = workspace.scratch("conv.xp", (n, c, h + t + b, w + l + r), x.dtype) if out is None else out
    xp[:, :, :t] = 0
    xp[:, :, t + h:] = 0
    xp[:, :, t:t + h, :l] = 0
    xp[:, :, t:t + h, l + w:] = 0
    xp[:, :, t:t + h, l:l + w] = x
    return xp


def channels_last(x, pad):
    """x (n, C, H, W) zero-padded by (top, bottom, left, right) and
    channels-last, (n, Hp, Wp, C), in per-thread scratch. An x that is a
    view of NHWC memory (``layout``) is copied in runs of W*C values."""
    t, b, l, r = pad
    n, c, h, w = x.shape
    xl = workspace.scratch("conv.xl", (n, h + t + b, w + l + r, c), x.dtype)
    if (t or b or l or r) and h * w * x.itemsize % 4096 == 0 and x.flags.c_contiguous:
        # Planes a multiple of 4 KiB apart alias in the L1 cache when read
        # across channels: transposed from a padded copy, whose planes are
        # not, 3x faster (3x32x32x32 float32: 0.18 -> 0.06 ms).
        np.copyto(xl, padded(x, pad).transpose(0, 2, 3, 1))
        return xl
    xl[:, :t] = 0
    xl[:, t + h:] = 0
    xl[:, t:t + h, :l] = 0
    xl[:, t:t + h, l + w:] = 0
    xl[:, t:t + h, l:l + w] = x.transpose(0, 2, 3, 1)
    return xl


def rows(xl, win, p0, p1):
    """φ of a channels-last padded chunk xl (``channels_last``) for output
    rows p0..p1 as im2row rows: (n*(p1-p0)*Q, kh*kw*C), row (image, p, q),
    column (i*kw + j)*C + c, in per-thread scratch. Each row is kh runs of
    kw*C contiguous values of xl (at unit dilation)."""
    sn, sy, sx, sc = xl.strides
    n, C = xl.shape[0], xl.shape[3]
    v = as_strided(xl[:, p0 * win.sh:], (n, p1 - p0, win.Q, win.kh, win.kw, C),
                   (sn, win.sh * sy, win.sw * sx, win.dh * sy, win.dw * sx, sc), writeable=False)
    r = workspace.scratch("conv.rows", v.shape, xl.dtype)
    np.copyto(r, v)
    return r.reshape(-1, win.kh * win.kw * C)


def filters(w):
    """The filter bank w (K, C, kh, kw) as F, (kh*kw*C, K), rows in rows'
    column order, contiguous (``products.matmul_rows`` wants it so)."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(-1, w.shape[0])


def forward(xc, f, win, yl, bands):
    """yl (n, P, Q, K), channels-last, = φ(xc) F for a chunk xc of images and
    the filters f (``filters``), over the bands of output rows [(p0, p1),
    ...]: each product pixel-major, (pixels, K), in OpenBLAS's small blocks
    (``products``), straight into yl where the band is contiguous there."""
    K = f.shape[1]
    xl = channels_last(xc, win.pad)
    for p0, p1 in bands:
        out = yl[:, p0:p1]
        yt = out if out.flags.c_contiguous else workspace.scratch("conv.yt", out.shape, xc.dtype)
        products.matmul_rows(rows(xl, win, p0, p1), f, yt.reshape(-1, K))
        if yt is not out:
            out[...] = yt


def filter_part(dyc, xc, win, bands):
    """A chunk's part of dF = φ(x)ᵀ dY as (kh*kw*C, K): one product a band,
    the chunk's pixels its inner dimension (``filter_gradient`` reorders it);
    dy pixel-major, as it lies where it is a view of NHWC memory, else copied."""
    K = dyc.shape[1]
    xl = channels_last(xc, win.pad)
    acc = 0
    for p0, p1 in bands:
        acc = acc + products.inner_cols(rows(xl, win, p0, p1), pixel_major(dyc[:, :, p0:p1]).reshape(-1, K))
    return acc


def pixel_major(d):
    """d (n, K, p, Q) as C-contiguous (n, p, Q, K): itself where it is a view
    of such memory (``layout``), else copied into per-thread scratch."""
    t = d.transpose(0, 2, 3, 1)
    if t.flags.c_contiguous:
        return t
    out = workspace.scratch("conv.dyt", t.shape, d.dtype)
    np.copyto(out, t)
    return out


def filter_gradient(dw, g, dtype):
    """The summed ``filter_part``s (None for an empty batch: zeros of dtype) as dw (K, C, kh, kw)."""
    win, K = g.win, g.K
    if dw is None:
        return np.zeros((K, g.C, win.kh, win.kw), dtype)
    return np.ascontiguousarray(dw.T.reshape(K, win.kh, win.kw, g.C).transpose(0, 3, 1, 2))
