"""Fully connected layer of the NumPy reference backend.

A fully connected layer is the convolution of "CNN for Dummies" §4 whose
filters cover the whole input (P = Q = 1), so φ(x) is the input itself and
the formulas of §4.4 reduce to y = x Wᵀ + b. Its backward passes are those of
the convolution with φ(x) = x: §4.6 "Backward propagation: the parameters"
gives dW = dYᵀ x and db = Σ dY; §4.8 "Backward propagation: the supervision
signal" gives dx = dY W. Leading axes of x are a batch, as in
torch.nn.functional.linear.
"""
from __future__ import annotations

import numpy as np


def linear_forward(x, w, b):
    """x (*, in), w (out, in), b (out,) or None -> y (*, out) = x wᵀ + b."""
    y = np.matmul(x, w.T)
    if b is not None:
        y += b
    return y


def linear_backward(dy, x, w, bias: bool):
    """dy (*, out) -> (dx (*, in), dw (out, in), db (out,) or None)."""
    dx = np.matmul(dy, w)
    # Every leading axis is a batch axis; flattening them makes dW one product
    # (rows counted explicitly: reshape(-1, 0) is ambiguous when a size is 0).
    rows = int(np.prod(x.shape[:-1]))
    dy2 = dy.reshape(rows, w.shape[0])
    x2 = x.reshape(rows, w.shape[1])
    dw = dy2.T @ x2
    db = dy2.sum(axis=0) if bias else None
    return dx, dw, db
