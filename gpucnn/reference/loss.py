"""Loss layers of the NumPy reference backend ("CNN for Dummies" §3.1, §3.4).

The loss layer ends the chain of Eq. 5 and starts back propagation: it
returns the loss z and ∂z/∂x^L, the first factor of the chain rule (Eq. 4,
Eqs. 10-11) that every earlier layer consumes. Both losses average over the
batch (the first axis), as torch's reduction='mean' does for the batch.
"""
from __future__ import annotations

import numpy as np


def softmax_cross_entropy(logits, labels):
    """Mean over the batch of -log softmax(logits)[n, labels[n]].

    logits (N, C) float, labels (N,) int64 in [0, C). Returns (loss, dlogits):
    loss a 0-d array of logits' dtype, dlogits = (softmax - onehot) / N.
    """
    N = logits.shape[0]
    # Subtracting the row maximum leaves softmax unchanged and keeps exp()
    # from overflowing; log-sum-exp of the shifted row is then at least 0.
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(N)
    picked = shifted[rows, labels]
    loss = np.asarray((np.log(s[:, 0]) - picked).mean(), dtype=logits.dtype)
    d = e / s
    d[rows, labels] -= 1
    d /= N
    return loss, d.astype(logits.dtype, copy=False)


def squared_error(pred, target):
    """The seed's Eq. 6, z = ||t - x||², summed over every element of a
    sample and averaged over the batch: z = Σ (t - x)² / N with N = pred's
    first axis (unlike torch's mse_loss, which averages over all elements).

    Returns (loss, dpred): loss a 0-d array of pred's dtype, dpred = 2(x - t)/N.
    """
    N = pred.shape[0]
    diff = pred - target
    loss = np.asarray(np.vdot(diff, diff) / N, dtype=pred.dtype)
    return loss, diff * (2 / N)
