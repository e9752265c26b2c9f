"""Fused layers: a convolution or a batch norm and the ReLU after it in one
pass over memory (the ReLU in the producing kernel's epilogue). Results equal
the separate ops' exactly: the epilogue applies torch.relu's rule to the
value the unfused op would have written. The backward passes take the fused
output y, whose mask (y > 0, NaN passing) is the ReLU's, since y > 0 exactly
where the pre-activation is.
"""
from __future__ import annotations

from gpucnn import _checks as chk
from gpucnn.backend import call
from gpucnn.functional.basic import relu_backward
from gpucnn.functional.conv import _bias, _conv_geometry, conv2d_backward
from gpucnn.functional.norm import batch_norm2d, batch_norm2d_backward, relu_epilogue


def conv2d_bias_relu(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """relu(conv2d(x, w, b, ...)) with the ReLU in the convolution's epilogue.

    x, w, b, stride, padding, dilation, groups: as for conv2d (unbatched x
    and padding "same"/"valid" included). Returns y, conv2d's output shape.
    """
    x, unbatched = chk.batched("x", x)
    w = chk.array("w", w, 4)
    chk.same_dtype(x=x, w=w)
    g = _conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    return chk.unbatch(call("conv", "conv2d_forward", x, w, _bias(b, g.K, x), g, True), unbatched)


def conv2d_bias_relu_backward(dy, x, w, y, stride=1, padding=0, dilation=1, groups=1, bias=True):
    """Gradients of conv2d_bias_relu for the output gradient dy.

    y: conv2d_bias_relu's output, of dy's shape (the ReLU's mask y > 0);
    dy, x, w, stride, padding, dilation, groups, bias: as for conv2d_backward.
    Returns (dx, dw, db) of conv2d_backward for dy masked where y <= 0.
    """
    dy, y = chk.array("dy", dy), chk.array("y", y)
    chk.shape_is("y", y, dy.shape, "the shape of dy")
    return conv2d_backward(relu_backward(dy, y), x, w, stride, padding, dilation, groups, bias)


def batch_norm2d_relu(x, gamma, beta, running_mean=None, running_var=None, training=True, momentum=0.1,
                      eps=1e-5):
    """relu(batch_norm2d(...)) from batch norm's one element-wise pass.

    x, gamma, beta, running_mean, running_var, training, momentum, eps: as
    for batch_norm2d. Returns (y, saved) as batch_norm2d does, y after the ReLU.
    """
    with relu_epilogue():
        return batch_norm2d(x, gamma, beta, running_mean, running_var, training, momentum, eps)


def batch_norm2d_relu_backward(dy, x, gamma, saved, y, eps=1e-5):
    """Gradients of batch_norm2d_relu for the output gradient dy.

    y: batch_norm2d_relu's output (the mask y > 0 is applied inside batch
    norm's backward passes); dy, x, gamma, saved, eps: as for
    batch_norm2d_backward. Returns (dx, dgamma, dbeta) as it does.
    """
    if y is None:
        raise TypeError("batch_norm2d_relu_backward needs y, the output of batch_norm2d_relu")
    return batch_norm2d_backward(dy, x, gamma, saved, eps, y)
