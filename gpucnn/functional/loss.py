"""The losses: argument checks and dispatch. Each returns (loss, gradient)
together, the first factor of back propagation (the seed's Eq. 4)."""
from __future__ import annotations

import numbers

from gpucnn import _checks as chk
from gpucnn.backend import call
from gpucnn.runtime import capture

REDUCTIONS = ("mean", "sum", "none")


def _class_ids(name, target, shape, classes, ignore_index, check):
    if target.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array of class ids or a float array of class "
                        f"probabilities shaped like the logits, got dtype {target.dtype}")
    chk.shape_is(name, target, shape, "one class id per sample (and position) of the logits")
    if check and target.size and not capture.active():
        # The one host read of a loss: a GPU caller that has validated its
        # targets can skip it (an invalid id then makes its row NaN), and a
        # captured step skips it (reading values back would stop it on the host).
        bad = (target < 0) | (target >= classes)
        if ignore_index is not None:
            bad &= target != ignore_index
        if bool(bad.any()):
            lo, hi = int(target.min()), int(target.max())
            also = "" if ignore_index is None else f" or equal ignore_index={ignore_index}"
            raise ValueError(f"{name} must lie in [0, {classes}){also}, got "
                             f"values in [{lo}, {hi}] ({name} shape {tuple(target.shape)})")
    return target.astype("int64", copy=False)


def _cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                   check_target=True):
    logits = chk.array("logits", logits)
    if logits.ndim < 1:
        raise ValueError(f"logits must be (C,), (N, C) or (N, C, d1, ...), got shape {tuple(logits.shape)}")
    unbatched = logits.ndim == 1
    if unbatched:  # (C,) with a () class id or (C,) probabilities, as torch
        logits, target = logits[None], target[None]
    C = logits.shape[1]
    if C == 0:
        raise ValueError(f"logits must have at least one class, got shape {tuple(logits.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not isinstance(ignore_index, numbers.Integral) or isinstance(ignore_index, bool):
        raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
    eps = chk.number("label_smoothing", label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
    if weight is not None:
        weight = chk.array("weight", weight, 1)
        chk.same_dtype(logits=logits, weight=weight)
        chk.shape_is("weight", weight, (C,), "one weight per class")
    if not hasattr(target, "dtype"):
        raise TypeError(f"target must be an array, got {type(target).__name__}")
    if target.dtype.kind == "f":
        chk.shape_is("target", target, logits.shape, "the shape of the logits (class probabilities)")
        if ignore_index >= 0:
            raise ValueError("ignore_index is not supported with class-probability targets (as torch)")
        target = target.astype(logits.dtype, copy=False)
    else:
        target = _class_ids("target", target, logits.shape[:1] + logits.shape[2:], C, ignore_index, check_target)
    loss, d = call("loss", "cross_entropy", logits, target, weight, int(ignore_index), reduction, eps)
    return (loss.reshape(()) if reduction == "none" and unbatched else loss), (d[0] if unbatched else d)


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """torch.nn.functional.cross_entropy and its gradient: (loss, dlogits).

    logits: (C,), (N, C) or (N, C, d1, ...), float32 or float64.
    target: class ids, (N, d1, ...) of any integer dtype with values in
        [0, C) or equal to ignore_index; or class probabilities shaped like
        logits (cast to logits' dtype).
    weight: (C,) per-class weights, or None for all ones.
    ignore_index: class id whose entries add nothing to the loss, its mean's
        denominator or the gradient (class ids only).
    reduction: "mean" (divided by the summed weight of the target classes of
        the entries not ignored; by the number of entries N*d1*... for
        probabilities), "sum" or "none" (the loss per entry, (N, d1, ...)).
    label_smoothing: eps in [0, 1]; the target becomes (1 - eps) times itself
        plus eps/C on every class.
    Returns loss (0-d, or (N, d1, ...) with "none") and dlogits (logits'
    shape): the gradient of loss, of loss.sum() with "none"; 0 on ignored
    entries. On a GPU or the emulator both come from kernels/loss.cu.
    """
    return _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing)


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy over the batch, cross_entropy's simple case.

    logits: (N, C), non-empty; labels: (N,) integer class ids in [0, C).
    Returns (loss, dlogits): the mean over the N rows of
    -log softmax(logits)[label] (a 0-d array of logits' dtype) and its
    gradient with respect to logits, (softmax - onehot) / N, shaped (N, C).
    """
    logits = chk.array("logits", logits, 2)
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must be non-empty, got shape {tuple(logits.shape)}")
    if not hasattr(labels, "dtype"):
        raise TypeError(f"labels must be an integer array of class ids, got {type(labels).__name__}")
    labels = _class_ids("labels", labels, logits.shape[:1], logits.shape[1], None, True)
    return call("loss", "softmax_cross_entropy", logits, labels)


def squared_error(pred, target):
    """The seed's Eq. 6, z = ||t - x||^2 per sample, averaged over the batch.

    pred, target: arrays of one shape (N, ...) and dtype, N >= 1. Returns
    (loss, dpred): the mean over axis 0 of the summed squared differences,
    and its gradient with respect to pred, 2 (pred - target) / N.
    """
    pred, target = chk.array("pred", pred), chk.array("target", target)
    chk.same_dtype(pred=pred, target=target)
    chk.shape_is("target", target, pred.shape, "the shape of pred")
    if pred.ndim == 0 or pred.shape[0] == 0:
        raise ValueError(f"pred must have a non-empty batch axis, got shape {tuple(pred.shape)}")
    return call("loss", "squared_error", pred, target)
