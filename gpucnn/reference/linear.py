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

from gpucnn.reference import workspace

# Flops of one chunk of a product. A product split by BLAS over two threads
# hands half of it to a thread that a busy core may not run for
# milliseconds (lenet's 64x1568 by 1568x120 layer: 0.4 ms on one thread,
# 60 ms on two on a loaded 2-core machine); chunks taken from one queue by
# the workspace threads, each on a one-thread BLAS, are not held up. Chunks
# are cut along the product's output features, so that each reads its own
# part of the weights once (cut along the batch, every chunk of
# vgg-small's 64x4096 by 4096x256 layer read all of W: 5x slower).
CHUNK_FLOPS = 2**25


def _split(fn, n, flops_per_item):
    """fn(a, b) over chunks of [0, n) of about CHUNK_FLOPS each; one chunk
    runs on a one-thread BLAS too."""
    step = max(1, CHUNK_FLOPS // max(1, flops_per_item))
    spans = [(a, min(n, a + step)) for a in range(0, n, step)]
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
        np.matmul(x2, w[a:c].T, out=y[:, a:c])
        if b is not None:
            y[:, a:c] += b[a:c]

    _split(chunk, out, 2 * x2.shape[0] * k)
    return y.reshape(*x.shape[:-1], out)


def linear_backward(dy, x, w, bias: bool):
    """dy (*, out) -> (dx (*, in), dw (out, in), db (out,) or None)."""
    out, k = w.shape
    dy2, x2 = _rows(dy, out), _rows(x, k)
    rows = dy2.shape[0]
    dx = np.empty((rows, k), np.result_type(dy, w))
    _split(lambda a, c: np.matmul(dy2, w[:, a:c], out=dx[:, a:c]), k, 2 * rows * out)
    # Every leading axis is a batch axis: dW = dYᵀ x is one product over the
    # flattened rows, cut by rows of dW (each chunk the whole sum: the
    # result does not depend on the thread count).
    dw = np.empty((out, k), np.result_type(dy, x))
    _split(lambda a, c: np.matmul(dy2[:, a:c].T, x2, out=dw[a:c]), out, 2 * rows * k)
    db = dy2.sum(axis=0) if bias else None
    return dx.reshape(*x.shape[:-1], k), dw, db
