"""Max and average pooling, their backward passes and max unpooling:
argument checks, geometry, dispatch. Semantics of ``torch.nn.functional``."""
from __future__ import annotations

import functools

import numpy as np

from gpucnn import _checks as chk
from gpucnn import shapes
from gpucnn.backend import call
from gpucnn.runtime import capture


def _pool_window(x_shape, kernel_size, stride, padding, dilation, ceil_mode, what):
    kernel = chk.pair("kernel_size", kernel_size, minimum=1)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    stride = kernel if no_stride else chk.pair("stride", stride, minimum=1)
    dilation = chk.pair("dilation", dilation, minimum=1)
    pad = chk.padding("padding", padding)
    ceil_mode = chk.flag("ceil_mode", ceil_mode)
    return _checked_window(tuple(x_shape), kernel, stride, pad, dilation, ceil_mode, what, repr(padding))


@functools.lru_cache(maxsize=256)
def _checked_window(x_shape, kernel, stride, pad, dilation, ceil_mode, what, padding):
    """The Window of normalized pooling arguments, checked; cached, since a
    training step asks again for each layer (26 us a call uncached)."""
    t, b, l, r = pad
    if max(t, b) > kernel[0] // 2 or max(l, r) > kernel[1] // 2:
        raise ValueError(f"{what}: padding {padding} must be at most half the kernel "
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


def _batched_indices(indices, unbatched):
    """Indices with a batch axis when x came unbatched (checked later)."""
    if unbatched and getattr(indices, "ndim", None) == 3:
        return indices[None]
    return indices


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling, as torch.nn.functional.max_pool2d.

    x: (N, C, H, W), or (C, H, W) unbatched. kernel_size, stride (default:
    kernel_size), dilation: an int or a pair (one-element tuples too);
    padding: an int, a pair or four ints (top, bottom, left, right), each at
    most half the kernel; padded positions never win. ceil_mode: round the
    output size up (a last window must start inside the input or its left
    padding). Returns y (N, C, P, Q) (unbatched: (C, P, Q)) and, with
    return_indices, also the argmax of each window as int64 offsets h*W + w
    into its input plane (the first of equal maxima, the last NaN).
    """
    x, unbatched = chk.batched("x", x)
    win = _pool_window(x.shape, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    y, idx = call("pool", "max_pool2d_forward", x, win)
    y, idx = chk.unbatch(y, unbatched), chk.unbatch(idx, unbatched)
    return (y, idx) if chk.flag("return_indices", return_indices) else y


def max_pool2d_backward(dy, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        indices=None):
    """Gradient of max_pool2d with respect to x: each dy goes to its window's argmax.

    dy: max_pool2d's output shape, (N, C, P, Q), or (C, P, Q) when x is
    unbatched (C, H, W); the window arguments as for max_pool2d. indices:
    max_pool2d's int64 argmax (shaped as dy), or None to recompute it from x.
    Returns dx, shaped as x; windows sharing an argmax add their gradients.
    """
    x, unbatched = chk.batched("x", x)
    dy = chk.like("dy", dy, unbatched)
    chk.same_dtype(dy=dy, x=x)
    win = _pool_window(x.shape, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d_backward")
    out_shape = (*x.shape[:2], win.P, win.Q)
    chk.shape_is("dy", dy, out_shape, "the shape of max_pool2d's output")
    if indices is None:
        _, indices = call("pool", "max_pool2d_forward", x, win)
    else:
        indices = _indices("indices", _batched_indices(indices, unbatched), out_shape, win.H * win.W)
    return chk.unbatch(call("pool", "max_pool2d_backward", dy, indices, win), unbatched)


def _unpool_size(y_shape, kernel, stride, pad, output_size):
    """(Ho, Wo): torch's default, or output_size ((H, W) or (N, C, H, W))
    within one stride of it."""
    default = tuple(shapes.unpool_out(n, k, s, p) for n, k, s, p in zip(y_shape[-2:], kernel, stride, pad))
    if output_size is None:
        return default
    if not isinstance(output_size, (tuple, list)) or len(output_size) not in (2, 4):
        raise TypeError(f"output_size must be (H, W) or (N, C, H, W), got {output_size!r}")
    Ho, Wo = chk.pair("output_size", tuple(output_size)[-2:], minimum=1)
    for got, want, s, ax in zip((Ho, Wo), default, stride, "HW"):
        if not want - s < got < want + s:
            raise ValueError(f"max_unpool2d: output_size {(Ho, Wo)} must lie within one stride "
                             f"of the default {default} along {ax} (y shape {tuple(y_shape)})")
    return Ho, Wo


def max_unpool2d(y, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool2d (torch.nn.functional.max_unpool2d): zeros
    with each value of y placed at its index.

    y: (N, C, P, Q), or (C, P, Q) unbatched; indices: max_pool2d's int64
    offsets, shaped as y. kernel_size, stride (default: kernel_size),
    padding: an int or a pair (one-element tuples too). output_size: None
    for (P-1)*sh - 2*ph + kh by (Q-1)*sw - 2*pw + kw, or (H, W) (also with
    leading N, C) within one stride of that. Returns (N, C, Ho, Wo), or
    (C, Ho, Wo) for an unbatched y; with duplicate indices one value wins.
    """
    y = chk.array("y", y, (3, 4))
    unbatched = y.ndim == 3
    y = y[None] if unbatched else y
    kernel = chk.pair("kernel_size", kernel_size, minimum=1)
    stride = kernel if stride is None else chk.pair("stride", stride, minimum=1)
    pad = chk.pair("padding", padding, minimum=0)
    Ho, Wo = _unpool_size(y.shape, kernel, stride, pad, output_size)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"max_unpool2d: output size {(Ho, Wo)} is empty (y shape {tuple(y.shape)})")
    idx = _indices("indices", _batched_indices(indices, unbatched), y.shape, Ho * Wo)
    return chk.unbatch(call("pool", "max_unpool2d", y, idx, Ho, Wo), unbatched)


def _divisor(divisor_override):
    """None, or the nonzero int that replaces every window's divisor."""
    if divisor_override is None:
        return 0
    if not chk._is_int(divisor_override):
        raise TypeError(f"divisor_override must be None or an int, got {divisor_override!r}")
    if divisor_override == 0 or abs(divisor_override) >= 2**31:
        raise ValueError(f"divisor_override must be nonzero and below 2**31 in magnitude, "
                         f"got {divisor_override}")
    return int(divisor_override)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Average pooling, as torch.nn.functional.avg_pool2d.

    x: (N, C, H, W), or (C, H, W) unbatched; kernel_size, stride (default:
    kernel_size), padding (an int, a pair or four ints, each at most half
    the kernel) and ceil_mode as for max_pool2d. Each window's sum over its
    input elements is divided by divisor_override when given (a nonzero
    int), else by the window's size clipped to the padded input
    (count_include_pad=True) or by the number of input elements in it.
    Returns (N, C, P, Q), or (C, P, Q) for an unbatched x.
    """
    x, unbatched = chk.batched("x", x)
    win = _pool_window(x.shape, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    y = call("pool", "avg_pool2d_forward", x, win, chk.flag("count_include_pad", count_include_pad),
             _divisor(divisor_override))
    return chk.unbatch(y, unbatched)


def avg_pool2d_backward(dy, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of avg_pool2d with respect to x: each dy, divided by its
    window's divisor, goes to every input element of the window.

    dy: avg_pool2d's output shape, (N, C, P, Q), or (C, P, Q) when x is
    unbatched; x gives the input's shape and dtype (its values are not
    read); the other arguments as for avg_pool2d. Returns dx, shaped as x.
    """
    x, unbatched = chk.batched("x", x)
    dy = chk.like("dy", dy, unbatched)
    chk.same_dtype(dy=dy, x=x)
    win = _pool_window(x.shape, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d_backward")
    chk.shape_is("dy", dy, (*x.shape[:2], win.P, win.Q), "the shape of avg_pool2d's output")
    dx = call("pool", "avg_pool2d_backward", dy, win, chk.flag("count_include_pad", count_include_pad),
              _divisor(divisor_override))
    return chk.unbatch(dx, unbatched)
