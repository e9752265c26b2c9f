"""ReLU, the fully connected layer and the losses: argument checks and dispatch."""
from __future__ import annotations

from gpucnn import _checks as chk
from gpucnn.backend import call
from gpucnn.runtime import capture


def relu(x, negative_slope=0.0):
    """max(x, 0), or leaky ReLU with ``negative_slope`` (torch's relu / leaky_relu)."""
    x = chk.array("x", x)
    return call("relu", "relu_forward", x, chk.number("negative_slope", negative_slope))


def relu_backward(dy, x, negative_slope=0.0):
    """dx = dy where x > 0, else dy * negative_slope."""
    dy, x = chk.array("dy", dy), chk.array("x", x)
    chk.same_dtype(dy=dy, x=x)
    chk.shape_is("dy", dy, x.shape, "the shape of x")
    return call("relu", "relu_backward", dy, x, chk.number("negative_slope", negative_slope))


def _linear_args(x, w):
    x, w = chk.array("x", x), chk.array("w", w, 2)
    chk.same_dtype(x=x, w=w)
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: x's last dimension must equal w.shape[1]={w.shape[1]} "
                         f"(x shape {tuple(x.shape)}, w shape {tuple(w.shape)})")
    return x, w


def linear(x, w, b=None):
    """y = x w^T + b for x (*, in), w (out, in), b (out,)."""
    x, w = _linear_args(x, w)
    if b is not None:
        b = chk.array("b", b, 1)
        chk.same_dtype(x=x, b=b)
        chk.shape_is("b", b, (w.shape[0],), "one bias per output feature")
    return call("linear", "linear_forward", x, w, b)


def linear_backward(dy, x, w, bias=True):
    """(dx, dw, db) of linear; db is None when bias is False."""
    x, w = _linear_args(x, w)
    dy = chk.array("dy", dy)
    chk.same_dtype(dy=dy, x=x)
    chk.shape_is("dy", dy, (*x.shape[:-1], w.shape[0]), "the shape of linear's output")
    return call("linear", "linear_backward", dy, x, w, chk.flag("bias", bias))


def _labels(labels, n, classes):
    if not hasattr(labels, "dtype") or labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array of class ids, got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}")
    chk.shape_is("labels", labels, (n,), "one class id per row of logits")
    if n and not capture.active():  # reading the values back would stop a captured step on the host
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= classes:
            raise ValueError(f"labels must lie in [0, {classes}), got values in [{lo}, {hi}] "
                             f"(labels shape {tuple(labels.shape)})")
    return labels.astype("int64", copy=False)


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy over the batch and its gradient: (loss, dlogits)."""
    logits = chk.array("logits", logits, 2)
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must be non-empty, got shape {tuple(logits.shape)}")
    labels = _labels(labels, *logits.shape)
    return call("loss", "softmax_cross_entropy", logits, labels)


def squared_error(pred, target):
    """The seed's Eq. 6, z = ||t - x||^2, averaged over the batch: (loss, dpred)."""
    pred, target = chk.array("pred", pred), chk.array("target", target)
    chk.same_dtype(pred=pred, target=target)
    chk.shape_is("target", target, pred.shape, "the shape of pred")
    if pred.ndim == 0 or pred.shape[0] == 0:
        raise ValueError(f"pred must have a non-empty batch axis, got shape {tuple(pred.shape)}")
    return call("loss", "squared_error", pred, target)
