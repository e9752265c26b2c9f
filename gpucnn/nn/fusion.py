"""The layer pairs ``Sequential`` runs as one fused op: a Conv2D, a
BatchNorm2D or a Residual followed by a plain ReLU (gpucnn.functional.fused;
the residual sum's ReLU in the add's pass), so the
pre-activation never makes a round trip through memory. The layers' results
and their backward passes do not change: the ReLU saves its output instead of
its input, and y > 0 exactly where the input is, so its backward masks the
same elements. Backward, a fused BatchNorm2D and ReLU run as batch norm's
backward with the ReLU's mask applied inside its passes
(batch_norm2d_relu_backward), not as a separate pass over dy.
"""
from __future__ import annotations

from gpucnn import functional as F
from gpucnn.functional.norm import relu_epilogue


def fused_forward(layer, nxt, x):
    """relu(layer(x)) in one pass when (layer, nxt) fuse, with both layers'
    saved state as their own forwards would leave it; None otherwise."""
    from gpucnn.nn.layers import Conv2D, ReLU
    from gpucnn.nn.regularization import BatchNorm2D
    from gpucnn.nn.residual import Residual
    if type(nxt) is not ReLU or nxt.negative_slope != 0:
        return None
    if type(layer) is Residual:
        y = layer.forward_relu(x)
    elif type(layer) is Conv2D:
        layer._save(x=x)
        y = F.conv2d_bias_relu(x, layer.weight, layer._params.get("bias"), **layer._geom)
    elif type(layer) is BatchNorm2D:
        with relu_epilogue():
            y = layer.forward(x)
    else:
        return None
    nxt._save(x=y, after=layer)
    return y


def fused_backward(layer, nxt, dy):
    """layer's backward through the ReLU nxt in one op, where the last
    forward fused them and layer has such a backward (batch norm); None
    otherwise (then each layer's own backward runs)."""
    from gpucnn.nn.regularization import BatchNorm2D
    if type(layer) is not BatchNorm2D or nxt._saved.get("after") is not layer:
        return None
    return layer.backward_through_relu(dy, nxt._load("x"))
