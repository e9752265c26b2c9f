"""ReLU and leaky ReLU, the NumPy way: the oracle for the relu kernels and the
CPU backend.

Wu's "CNN for Dummies" §7 (The ReLU layer) defines y = max(0, x) elementwise,
with no parameters, and its reverse operator (§6) passes the gradient where
x > 0 and blocks it elsewhere; the derivative at the kink x = 0 is taken from
the negative side. Leaky ReLU replaces the blocked side by ``slope * x``.

Semantics follow PyTorch: ``slope == 0`` is ``torch.relu`` (NaN propagates,
-inf gives 0) and ``threshold_backward``; any other slope is
``leaky_relu`` (``x if x > 0 else x * slope``) and ``leaky_relu_backward``.
"""
from __future__ import annotations

import numpy as np

from gpucnn.reference import workspace


def _flat_chunks(arrays, fn):
    """Run fn on matching chunks of contiguous arrays (see workspace.chunked);
    False if they are too small or not all contiguous, for the caller's one-shot path."""
    a0 = arrays[0]
    if a0.nbytes < workspace.MIN_PARALLEL_BYTES or not all(a.flags.c_contiguous for a in arrays):
        return False
    flat = [a.reshape(-1) for a in arrays]
    workspace.chunked(lambda lo, hi: fn(*(f[lo:hi] for f in flat)), a0.size, a0.itemsize)
    return True


def relu_forward(x: np.ndarray, slope: float) -> np.ndarray:
    if slope == 0.0:
        # np.maximum propagates NaN and maps -inf to 0, as torch.relu; the
        # leaky formula would give -inf * 0 = NaN instead.
        y, zero = np.empty_like(x), x.dtype.type(0)
        if not _flat_chunks((x, y), lambda xc, yc: np.maximum(xc, zero, out=yc)):
            np.maximum(x, zero, out=y)
        return y
    s = x.dtype.type(slope)
    # A slope above 1 may overflow x * s to inf, as the kernel's product does.
    with np.errstate(over="ignore"):
        if 0.0 < slope < 1.0:
            # For 0 < s < 1, x * s lies between 0 and x, so the larger of the
            # two is x on the positive side and x * s on the negative side.
            return np.maximum(x, x * s)
        return np.where(x > 0, x, x * s)


def relu_backward(dy: np.ndarray, x: np.ndarray, slope: float) -> np.ndarray:
    # Both branches multiply dy by a 0/1 (or slope/1) factor instead of calling
    # np.where, which is several times slower on a mask that is true at random.
    if slope == 0.0:
        dx = np.empty_like(dy)
        if not _flat_chunks((dy, x, dx), _threshold_backward):
            _threshold_backward(dy, x, dx)
        return dx
    # torch's leaky_relu_backward: `x > 0 ? dy : dy * slope`.
    one, s = dy.dtype.type(1), dy.dtype.type(slope)
    with np.errstate(over="ignore"):
        if (one - s) + s != one:
            return np.where(x > 0, dy, dy * s)
        # The factor s + (1 - s) * [x > 0] is exactly 1 or s, as just checked.
        f = np.greater(x, 0).astype(dy.dtype)
        f *= one - s
        f += s
        f *= dy
        return f


def _threshold_backward(dy, x, dx):
    """torch's threshold_backward, ``x <= 0 ? 0 : dy``, into dx: a NaN input passes dy."""
    keep = np.less_equal(x, 0)
    np.logical_not(keep, out=keep)
    with np.errstate(invalid="ignore"):
        np.multiply(dy, keep, out=dx)
    # A blocked inf or NaN dy must give 0, not inf * 0 = NaN; rare, so
    # repaired only when a NaN shows up.
    if dx.size and np.isnan(dx.max()):
        dx[...] = np.where(keep, dy, dy.dtype.type(0))
