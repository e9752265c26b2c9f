"""Depthwise convolution of the NumPy reference (groups == C == K): each
channel convolved with its own kh x kw filter, written directly as the sum
over the taps of "CNN for Dummies" §4.2's definition, y = sum_(i,j) w_ij x
shifted by (i, j), rather than through phi(x) — for one filter a group the
im2col product has inner size 1 and BLAS cannot help.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gpucnn.reference import workspace


def depthwise(a, b, g, direction):
    """Depthwise convolution (groups == C == K, one kh x kw filter a channel)
    computed directly, plane by plane: a sum over the kh*kw taps of a shifted
    view of the padded plane times that tap's weight. As im2col it was G
    products of inner size 1 through BLAS and an unfold of kh*kw copies,
    2x slower than torch.

    forward: a = x, b = w -> y; backward_data: a = dy, b = w -> dx;
    backward_filter: a = dy, b = x -> dw.

    Planes are padded into a scratch buffer of rows Wp wide with (kw-1)*dw
    zeros of slack at the end, so that with a column stride of 1 the tap at
    (i, j) is the flat slice from i*dh*Wp + j*dw, P rows of Wp: one long
    contiguous run per plane when the row stride is 1 too. The output is
    computed Wp wide and cropped to Q; its extra columns read wrapped
    neighbours and are never kept."""
    win = g.win
    N, C, kk = g.N, g.C, win.kh * win.kw
    t, bot, l, r = win.pad
    Hp, Wp = win.H + t + bot, win.W + l + r
    wide = win.sw == 1
    Qw = Wp if wide else win.Q
    flat_len = Hp * Wp + (win.kw - 1) * win.dw
    it = a.itemsize
    x = b if direction == "backward_filter" else a
    xf = x.reshape(N * C, win.H, win.W) if direction != "backward_data" else None
    dyf = a.reshape(N * C, win.P, win.Q) if direction != "forward" else None
    wf = None if direction == "backward_filter" else b.reshape(C, kk)
    if direction == "forward":
        out = np.empty((N * C, win.P, win.Q), a.dtype)
    elif direction == "backward_data":
        out = np.empty((N * C, win.H, win.W), a.dtype)
    else:
        out = np.empty((N * C, kk), a.dtype)

    def tap_view(buf, i, j):
        # buf (n, flat_len) -> (n, P, Qw): rows P*sh*Wp apart, columns sw apart.
        off = i * win.dh * Wp + j * win.dw
        return as_strided(buf[:, off:], (buf.shape[0], win.P, Qw),
                          (buf.strides[0], win.sh * Wp * it, win.sw * it))

    # With unit strides a tap of a plane is one contiguous run of P*Wp.
    flat = wide and win.sh == 1

    def tap_product(v, dyw, tmp, dst):
        # The wrapped columns may hold inf * 0 = NaN: summed only to Q.
        np.multiply(v, dyw, out=tmp)
        dst[...] = tmp[:, :, :win.Q].sum(axis=(1, 2))

    def run(p0, p1):
        n = p1 - p0
        buf = workspace.scratch("conv.dw.plane", (n, flat_len), a.dtype)
        tmp = workspace.scratch("conv.dw.tmp", (n, win.P, Qw), a.dtype)
        if direction != "forward":
            dyw = workspace.scratch("conv.dw.dy", (n, win.P, Qw), a.dtype)
            # Zero columns past Q, so the wrapped columns add nothing to dx.
            dyw[:, :, win.Q:] = 0
            dyw[:, :, :win.Q] = dyf[p0:p1]
        if direction == "backward_data":
            buf.fill(0)
        else:
            planes = buf[:, :Hp * Wp].reshape(n, Hp, Wp)
            if t or bot or l or r:
                planes[:, :t] = 0
                planes[:, Hp - bot:] = 0
                planes[:, :, :l] = 0
                planes[:, :, Wp - r:] = 0
            planes[:, t:t + win.H, l:l + win.W] = xf[p0:p1]
            buf[:, Hp * Wp:] = 0
        if wf is not None:
            wk = wf[np.arange(p0, p1) % C][:, :, None, None]
        if direction == "forward":
            acc = workspace.scratch("conv.dw.acc", (n, win.P, Qw), a.dtype)
        for k in range(kk):
            v = tap_view(buf, *divmod(k, win.kw))
            if direction == "forward":
                np.multiply(v, wk[:, k], out=acc if k == 0 else tmp)
                if k:
                    acc += tmp
            elif direction == "backward_data":
                np.multiply(dyw, wk[:, k], out=tmp)
                v += tmp
            else:
                if flat:
                    # One dot a plane over P*Wp; the wrapped columns add
                    # x * 0, which is NaN only for an inf or NaN x: checked below.
                    out[p0:p1, k] = np.einsum("nl,nl->n", v.reshape(n, -1), dyw.reshape(n, -1))
                else:
                    tap_product(v, dyw, tmp, out[p0:p1, k])
        if direction == "backward_filter" and flat and np.isnan(out[p0:p1].sum()):
            # Redone summing only the first Q columns, so a wrapped inf or
            # NaN is left out (a NaN from the real data comes back).
            for k in range(kk):
                tap_product(tap_view(buf, *divmod(k, win.kw)), dyw, tmp, out[p0:p1, k])
        if direction == "forward":
            out[p0:p1] = acc[:, :, :win.Q]
        elif direction == "backward_data":
            out[p0:p1] = buf[:, :Hp * Wp].reshape(n, Hp, Wp)[:, t:t + win.H, l:l + win.W]

    plane = it * (flat_len + 3 * win.P * Qw + win.H * win.W)
    # IEEE results (inf * 0 = NaN in the padding), not warnings, as BLAS gives.
    with np.errstate(invalid="ignore", over="ignore"):
        workspace.chunked(run, N * C, plane, workspace.PLANES_CHUNK_BYTES)
    if direction == "backward_filter":
        return out.reshape(N, C, kk).sum(axis=0).reshape(C, 1, win.kh, win.kw)
    return out.reshape(N, C, *out.shape[1:])
