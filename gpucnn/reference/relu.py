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


def relu_forward(x: np.ndarray, slope: float) -> np.ndarray:
    if slope == 0.0:
        # np.maximum propagates NaN and maps -inf to 0, as torch.relu; the
        # leaky formula would give -inf * 0 = NaN instead.
        return np.maximum(x, x.dtype.type(0))
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
        # torch's threshold_backward: `x <= 0 ? 0 : dy`, so a NaN input passes dy.
        keep = np.less_equal(x, 0)
        np.logical_not(keep, out=keep)
        with np.errstate(invalid="ignore"):
            dx = np.multiply(dy, keep)
        # A blocked inf or NaN dy must give 0, not inf * 0 = NaN; rare, so
        # repaired only when a NaN shows up.
        if dx.size and np.isnan(dx.max()):
            dx = np.where(keep, dy, dy.dtype.type(0))
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
