"""ReLU and the fully connected layer: argument checks and dispatch."""
from __future__ import annotations

from gpucnn import _checks as chk
from gpucnn.backend import call


def relu(x, negative_slope=0.0):
    """max(x, 0) elementwise, or leaky ReLU: x where x > 0, else
    negative_slope * x (torch's relu / leaky_relu).

    x: an array of any shape, float32 or float64; negative_slope: a real
    number. Returns an array of x's shape and dtype.
    """
    x = chk.array("x", x)
    return call("relu", "relu_forward", x, chk.number("negative_slope", negative_slope))


def relu_backward(dy, x, negative_slope=0.0):
    """Gradient of relu with respect to x: dy where x > 0, else dy * negative_slope.

    dy, x: arrays of one shape and dtype (x is relu's input). Returns dx, shaped as x.
    """
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
    """Fully connected layer, y = x w^T + b (torch.nn.functional.linear).

    x: (*, in), any number of leading axes; w: (out, in); b: (out,) or None.
    Returns y: (*, out), x's dtype.
    """
    x, w = _linear_args(x, w)
    if b is not None:
        b = chk.array("b", b, 1)
        chk.same_dtype(x=x, b=b)
        chk.shape_is("b", b, (w.shape[0],), "one bias per output feature")
    return call("linear", "linear_forward", x, w, b)


def linear_backward(dy, x, w, bias=True):
    """Gradients of linear with respect to x, w and b.

    dy: linear's output shape (*, out); x: (*, in); w: (out, in). Returns
    (dx, dw, db): dx shaped as x, dw as w, db (out,) summed over every
    leading axis, or None when bias is False.
    """
    x, w = _linear_args(x, w)
    dy = chk.array("dy", dy)
    chk.same_dtype(dy=dy, x=x)
    chk.shape_is("dy", dy, (*x.shape[:-1], w.shape[0]), "the shape of linear's output")
    return call("linear", "linear_backward", dy, x, w, chk.flag("bias", bias))
