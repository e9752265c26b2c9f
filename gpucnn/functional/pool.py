"""Max and average pooling, their backward passes and max unpooling:
argument checks, geometry, dispatch. Semantics of ``torch.nn.functional``."""
from __future__ import annotations

import numpy as np

from gpucnn import _checks as chk
from gpucnn import shapes
from gpucnn.backend import call
from gpucnn.runtime import capture


def _pool_window(x_shape, kernel_size, stride, padding, dilation, ceil_mode, what):
    kernel = chk.pair("kernel_size", kernel_size, minimum=1)
    stride = kernel if stride is None or stride == () or stride == [] else chk.pair("stride", stride, minimum=1)
    dilation = chk.pair("dilation", dilation, minimum=1)
    pad = chk.padding("padding", padding)
    ceil_mode = chk.flag("ceil_mode", ceil_mode)
    t, b, l, r = pad
    if max(t, b) > kernel[0] // 2 or max(l, r) > kernel[1] // 2:
        raise ValueError(f"{what}: padding {padding!r} must be at most half the kernel "
                         f"{kernel[0]}x{kernel[1]} on every side, so that no window lies wholly "
                         f"in the padding (input shape {tuple(x_shape)})")
    chk.window_fits(what, x_shape, kernel, pad, dilation)
    win = shapes.window(x_shape[-2], x_shape[-1], kernel, stride, pad, dilation, ceil_mode, pool=True)
    if win.P < 1 or win.Q < 1:
        raise ValueError(f"{what}: output would be empty ({win.P}x{win.Q}) for input shape "
                         f"{tuple(x_shape)}, kernel {kernel}, stride {stride}, padding {pad}")
    for axis, n, out, k, s, lo, d in (("row", win.H, win.P, win.kh, win.sh, t, win.dh),
                                      ("column", win.W, win.Q, win.kw, win.sw, l, win.dw)):
        # With dilation, a window's taps can straddle a small input entirely.
        taps = np.arange(out)[:, None] * s - lo + np.arange(k)[None, :] * d
        empty = ~((taps >= 0) & (taps < n)).any(axis=1)
        if empty.any():
            raise ValueError(f"{what}: the window at output {axis} {int(np.argmax(empty))} has no tap "
                             f"inside the input (input shape {tuple(x_shape)}, kernel {kernel}, "
                             f"stride {stride}, padding {pad}, dilation {dilation})")
    return win


def _indices(name, idx, shape, plane):
    """Max-pool indices: int64 flat offsets into each input plane of size ``plane``."""
    if not hasattr(idx, "dtype") or idx.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got {getattr(idx, 'dtype', type(idx).__name__)}")
    chk.shape_is(name, idx, shape, "the shape of the pooled output")
    if idx.size and not capture.active():  # reading the values back would stop a captured step on the host
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= plane:
            raise ValueError(f"{name} must lie in [0, {plane}) (flat offsets into a plane), "
                             f"got values in [{lo}, {hi}] (shape {tuple(idx.shape)})")
    return idx.astype(np.int64, copy=False) if idx.dtype != np.int64 else idx


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling of x (N,C,H,W); with return_indices also the int64 argmax offsets h*W+w."""
    x = chk.array("x", x, 4)
    win = _pool_window(x.shape, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    y, idx = call("pool", "max_pool2d_forward", x, win)
    return (y, idx) if chk.flag("return_indices", return_indices) else y


def max_pool2d_backward(dy, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        indices=None):
    """dx of max_pool2d; the argmax is recomputed from x when indices is None."""
    dy, x = chk.array("dy", dy, 4), chk.array("x", x, 4)
    chk.same_dtype(dy=dy, x=x)
    win = _pool_window(x.shape, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d_backward")
    out_shape = (*x.shape[:2], win.P, win.Q)
    chk.shape_is("dy", dy, out_shape, "the shape of max_pool2d's output")
    if indices is None:
        _, indices = call("pool", "max_pool2d_forward", x, win)
    else:
        indices = _indices("indices", indices, out_shape, win.H * win.W)
    return call("pool", "max_pool2d_backward", dy, indices, win)


def max_unpool2d(y, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool2d: zeros with y placed at the indices."""
    y = chk.array("y", y, 4)
    kernel = chk.pair("kernel_size", kernel_size, minimum=1)
    stride = kernel if stride is None else chk.pair("stride", stride, minimum=1)
    pad = chk.pair("padding", padding, minimum=0)
    N, C, P, Q = y.shape
    default = tuple(shapes.unpool_out(n, k, s, p) for n, k, s, p in zip((P, Q), kernel, stride, pad))
    if output_size is None:
        Ho, Wo = default
    else:
        if not isinstance(output_size, (tuple, list)) or len(output_size) not in (2, 4):
            raise TypeError(f"output_size must be (H, W) or (N, C, H, W), got {output_size!r}")
        Ho, Wo = chk.pair("output_size", tuple(output_size)[-2:], minimum=1)
        for got, want, s, ax in zip((Ho, Wo), default, stride, "HW"):
            if not want - s < got < want + s:
                raise ValueError(f"max_unpool2d: output_size {(Ho, Wo)} must lie within one stride "
                                 f"of the default {default} along {ax} (y shape {tuple(y.shape)})")
    if Ho < 1 or Wo < 1:
        raise ValueError(f"max_unpool2d: output size {(Ho, Wo)} is empty (y shape {tuple(y.shape)})")
    idx = _indices("indices", indices, y.shape, Ho * Wo)
    return call("pool", "max_unpool2d", y, idx, Ho, Wo)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling of x (N,C,H,W)."""
    x = chk.array("x", x, 4)
    win = _pool_window(x.shape, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    return call("pool", "avg_pool2d_forward", x, win, chk.flag("count_include_pad", count_include_pad))


def avg_pool2d_backward(dy, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """dx of avg_pool2d; x gives the input shape and dtype."""
    dy, x = chk.array("dy", dy, 4), chk.array("x", x, 4)
    chk.same_dtype(dy=dy, x=x)
    win = _pool_window(x.shape, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d_backward")
    chk.shape_is("dy", dy, (*x.shape[:2], win.P, win.Q), "the shape of avg_pool2d's output")
    return call("pool", "avg_pool2d_backward", dy, win, chk.flag("count_include_pad", count_include_pad))
