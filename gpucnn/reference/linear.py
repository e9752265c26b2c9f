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

import contextlib

import numpy as np

from gpucnn.reference import workspace

# Flops of one chunk of a product. A product split by BLAS over two threads
# hands half of it to a thread that a busy core may not run for
# milliseconds (lenet's 64x1568 by 1568x120 layer: 0.4 ms on one thread,
# 60 ms on two on a loaded 2-core machine); chunks of rows taken from one
# queue by the workspace threads, each on a one-thread BLAS, are not held up.
CHUNK_FLOPS = 2**23


def _by_rows(fn, rows, flops_per_row):
    """fn(a, b) over chunks of [0, rows) of about CHUNK_FLOPS each; one chunk
    runs on a one-thread BLAS too."""
    step = max(1, CHUNK_FLOPS // max(1, flops_per_row))
    spans = [(a, min(rows, a + step)) for a in range(0, rows, step)]
    with workspace.blas_threads(1) if len(spans) == 1 and workspace.threads() > 1 else contextlib.nullcontext():
        workspace.run_spans(fn, spans, blas=True)


def _rows(a, n):
    """a (*, n) as a 2-D (rows, n) array (rows counted explicitly: reshape(-1, 0)
    is ambiguous when a size is 0)."""
    return a.reshape(int(np.prod(a.shape[:-1])), n)


def linear_forward(x, w, b):
    """x (*, in), w (out, in), b (out,) or None -> y (*, out) = x wᵀ + b."""
    out, k = w.shape
    x2 = _rows(x, k)
    y = np.empty((x2.shape[0], out), np.result_type(x, w))

    def chunk(a, c):
        np.matmul(x2[a:c], w.T, out=y[a:c])
        if b is not None:
            y[a:c] += b

    _by_rows(chunk, x2.shape[0], 2 * out * k)
    return y.reshape(*x.shape[:-1], out)


def linear_backward(dy, x, w, bias: bool):
    """dy (*, out) -> (dx (*, in), dw (out, in), db (out,) or None)."""
    out, k = w.shape
    dy2, x2 = _rows(dy, out), _rows(x, k)
    dx = np.empty((dy2.shape[0], k), np.result_type(dy, w))
    _by_rows(lambda a, c: np.matmul(dy2[a:c], w, out=dx[a:c]), dy2.shape[0], 2 * out * k)
    # Every leading axis is a batch axis: dW = dYᵀ x is one product over the
    # flattened rows, cut by rows of dW (each chunk the whole sum: the
    # result does not depend on the thread count).
    dw = np.empty((out, k), np.result_type(dy, x))
    _by_rows(lambda a, c: np.matmul(dy2[:, a:c].T, x2, out=dw[a:c]), out, 2 * dy2.shape[0] * k)
    db = dy2.sum(axis=0) if bias else None
    return dx.reshape(*x.shape[:-1], k), dw, db
