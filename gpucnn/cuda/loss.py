"""Launch code of kernels/loss.cu (same interface as gpucnn.reference.loss).

Cross-entropy is three launches: per-row statistics, a one-block reduction
to the loss and the gradient's scale (both left on the device), and the
gradient. Nothing is read back and every output is a fresh device array, so
a loss inside a captured CUDA graph needs no host round trip.
"""
from __future__ import annotations

import math

import numpy as np

from gpucnn.cuda.launch import contiguous, empty_as, i64, kernel_name, launch, scalar

FAMILY = "loss"
KERNELS = ("ce_rows", "ce_rows_prob", "ce_reduce", "ce_grad", "ce_grad_prob", "squared_error")
THREADS = 256  # LOSS_THREADS: the one-block kernels' block


def _one_block(rt, base, dtype, args):
    rt.function(FAMILY, kernel_name(base, dtype))((1,), (THREADS,), args)


def cross_entropy(rt, logits, target, weight, ignore_index, reduction, label_smoothing):
    xp = rt.xp
    z = contiguous(xp, logits)
    N, C = z.shape[:2]
    S = math.prod(z.shape[2:])
    R, dt = N * S, z.dtype
    w = xp.ones(C, dt) if weight is None else contiguous(xp, weight)
    target = contiguous(xp, target)
    lse, a, rows, den = (xp.empty(R, dt) for _ in range(4))
    eps = scalar(dt, label_smoothing)
    probs = target.dtype.kind == "f"
    extra = (eps,) if probs else (i64(ignore_index), eps)
    geom = (i64(R), np.int32(C), i64(S))
    launch(rt, FAMILY, "ce_rows_prob" if probs else "ce_rows", dt, R, (z, target, w, lse, a, rows, den, *geom, *extra))
    if reduction == "none":
        loss, scale = rows.reshape((N, *z.shape[2:])), xp.ones(1, dt)
    else:
        loss, scale = xp.empty((), dt), xp.empty(1, dt)
        _one_block(rt, "ce_reduce", dt, (rows, den, loss, scale, i64(R), np.int32(reduction == "mean")))
    dz = empty_as(xp, z)
    launch(rt, FAMILY, "ce_grad_prob" if probs else "ce_grad", dt, dz.size,
           (z, target, w, lse, a, scale, dz, i64(dz.size), np.int32(C), i64(S), *extra))
    return loss, dz


def softmax_cross_entropy(rt, logits, labels):
    return cross_entropy(rt, logits, labels, None, -100, "mean", 0.0)


def squared_error(rt, pred, target):
    xp = rt.xp
    pred, target = contiguous(xp, pred), contiguous(xp, target)
    dpred, loss = empty_as(xp, pred), xp.empty((), pred.dtype)
    _one_block(rt, "squared_error", pred.dtype,
               (pred, target, dpred, loss, i64(pred.size), scalar(pred.dtype, 1.0 / pred.shape[0])))
    return loss, dpred
