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


def _rows(a: np.ndarray) -> np.ndarray:
    """(N, C, *S) -> (N * prod(S), C): one row per sample and position, classes last."""
    return np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing):
    """torch.nn.functional.cross_entropy and its gradient, from log_softmax.

    logits (N, C, *S); target (N, *S) int64 class ids (ignore_index marks
    entries to skip) or (N, C, *S) class probabilities of logits' dtype;
    weight (C,) or None; reduction "mean", "sum" or "none". With
    eps = label_smoothing, class c's share of the target is
    (1 - eps) * [c == y] + eps / C (class ids) or (1 - eps) * p_c + eps / C.
    Each row loses -sum_c weight_c * share_c * log_softmax_c. "mean" divides
    the sum by the summed weight[y] of the rows not ignored (class ids) or by
    the number of rows N * prod(S) (probabilities), as torch does.
    Returns (loss, dlogits): loss 0-d, or (N, *S) for "none"; dlogits the
    gradient of loss (of loss.sum() for "none"), 0 on ignored rows.
    """
    C = logits.shape[1]
    z = _rows(logits.astype(np.float64))
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    w = np.ones(C) if weight is None else weight.astype(np.float64)
    eps = float(label_smoothing)
    if target.dtype.kind in "iu":
        t = target.reshape(-1)
        keep = t != ignore_index
        # An id out of range (which the functional API refuses unless told
        # not to check) makes its row NaN, as in the kernels.
        invalid = keep & ((t < 0) | (t >= C))
        y = np.where(keep & ~invalid, t, 0)
        share = eps / C * np.ones_like(z)
        share[np.arange(len(y)), y] += 1 - eps
        share *= keep[:, None]
        share[invalid] = np.nan
        denom = (w[y] * keep + np.where(invalid, np.nan, 0)).sum()
    else:
        keep = np.ones(len(z), bool)
        share = _rows(target.astype(np.float64)) * (1 - eps) + eps / C
        denom = len(z)
    per_row = -(share * w * logp).sum(axis=1)
    # d(row loss)/dz = (sum_c w_c share_c) softmax - w * share
    drow = (share * w).sum(axis=1, keepdims=True) * np.exp(logp) - share * w
    if reduction == "mean":
        loss = per_row.sum() / denom if denom != 0 else np.float64(np.nan)
        drow = drow / denom if denom != 0 else drow * keep[:, None] * np.nan
    elif reduction == "sum":
        loss = per_row.sum()
    else:
        loss = per_row.reshape(logits.shape[:1] + logits.shape[2:])
    drow[~keep] = 0
    dz = np.moveaxis(drow.reshape(logits.shape[:1] + logits.shape[2:] + (C,)), -1, 1)
    return np.asarray(loss, logits.dtype), np.ascontiguousarray(dz, dtype=logits.dtype)
