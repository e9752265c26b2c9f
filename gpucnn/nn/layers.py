"""Layers that compute through the gpucnn functional API, so the arrays and
``use_backend`` choose where they run (NumPy, the emulator or a GPU).

Each takes ``dtype`` (float32 by default) and a seeded ``rng``
(``np.random.Generator``) for torch's default initialization.
"""
from __future__ import annotations

import numpy as np

from gpucnn import backend
from gpucnn import functional as F
from gpucnn.nn import init
from gpucnn.nn.module import Module
from gpucnn.reference import workspace


def _rng(rng) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


class _Affine(Module):
    """A layer y = fwd(x, w, b, **geom) whose backward is bwd(dy, x, w, **geom, bias) -> (dx, dw, db):
    convolution, transposed convolution and the fully connected layer differ only in these."""
    _fwd = _bwd = None
    _defer_weights = False

    def __init__(self, weight_shape, n_bias, bias, rng, dtype, **geom):
        super().__init__()
        rng = _rng(rng)
        self._geom = geom
        self._params["weight"] = init.kaiming_uniform(rng, weight_shape, dtype)
        if bias:
            self._params["bias"] = init.default_bias(rng, weight_shape, n_bias, dtype)

    def forward(self, x):
        self._save(x=x)
        return type(self)._fwd(x, self.weight, self._params.get("bias"), **self._geom)

    def backward(self, dy):
        return self._backward(dy)

    def _backward(self, dy, **flags):
        """bwd's (dx, dw, db): sets the gradients, returns dx; ``flags`` go to bwd.
        Where the class allows (``_defer_weights``) and the NumPy backend
        runs it, dw and db are deferred (``workspace.defer``): no later layer
        of the backward pass reads them, so they are computed beside the
        input gradients of the layers below, and set before the outermost
        backward returns (gpucnn.nn.module)."""
        has_bias = "bias" in self._params
        x, w, bwd = self._load("x"), self.weight, type(self)._bwd

        def weights():
            _, dw, db = bwd(dy, x, w, **self._geom, bias=has_bias, input_grad=False)
            self._grads["weight"] = dw
            if has_bias:
                self._grads["bias"] = db

        if (self._defer_weights and flags.get("input_grad", True) and isinstance(dy, np.ndarray)
                and backend.current() == "numpy" and workspace.defer(weights)):
            return bwd(dy, x, w, **self._geom, bias=False, weight_grad=False)[0]
        dx, dw, db = bwd(dy, x, w, **self._geom, bias=has_bias, **flags)
        self._grads["weight"] = dw
        if has_bias:
            self._grads["bias"] = db
        return dx

    def __repr__(self):
        geom = "".join(f", {k}={v}" for k, v in self._geom.items())
        return f"{type(self).__name__}(weight={tuple(self.weight.shape)}{geom}, bias={'bias' in self._params})"


class Conv2D(_Affine):
    """torch.nn.Conv2d through ``gpucnn.conv2d``: x (N, in_channels, H, W) ->
    y (N, out_channels, P, Q) with weight (out_channels, in_channels/groups,
    kh, kw) and bias (out_channels,) (when bias=True); stride, padding
    (int, pair or (top, bottom, left, right)), dilation and groups as torch's.
    backward(dy) with dy shaped like y returns dx shaped like x and sets the
    gradients of weight and bias."""
    _fwd, _bwd = staticmethod(F.conv2d), staticmethod(F.conv2d_backward)
    _defer_weights = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, *, rng=None, dtype=np.float32):
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        super().__init__((out_channels, in_channels // groups, kh, kw), out_channels, bias, rng,
                         dtype, stride=stride, padding=padding, dilation=dilation, groups=groups)

    def backward_params(self, dy) -> None:
        self._backward(dy, input_grad=False)  # conv2d_backward then skips dx


class ConvTranspose2D(_Affine):
    """torch.nn.ConvTranspose2d through ``gpucnn.conv_transpose2d``: x
    (N, in_channels, H, W) -> y (N, out_channels, P, Q), weight stored as
    torch's (in_channels, out_channels/groups, kh, kw), bias (out_channels,).
    backward(dy) returns dx shaped like x and sets the weight and bias gradients."""
    _fwd, _bwd = staticmethod(F.conv_transpose2d), staticmethod(F.conv_transpose2d_backward)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, *, rng=None, dtype=np.float32):
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        # torch stores a transposed convolution's filters (Cin, Cout/groups, kh, kw).
        super().__init__((in_channels, out_channels // groups, kh, kw), out_channels, bias, rng,
                         dtype, stride=stride, padding=padding, output_padding=output_padding,
                         groups=groups, dilation=dilation)


class Linear(_Affine):
    """torch.nn.Linear: x (*, in_features) -> y = x weight^T + bias, (*, out_features),
    weight (out_features, in_features), bias (out_features,). backward(dy)
    returns dx shaped like x and sets the weight and bias gradients."""
    _fwd, _bwd = staticmethod(F.linear), staticmethod(F.linear_backward)

    def __init__(self, in_features, out_features, bias=True, *, rng=None, dtype=np.float32):
        super().__init__((out_features, in_features), out_features, bias, rng, dtype)


class _Pool(Module):
    """A window over each (H, W) plane, its geometry passed on to the functional op."""

    def __init__(self, **geom):
        super().__init__()
        self._geom = geom

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self._geom.items())})"


class MaxPool2D(_Pool):
    """torch.nn.MaxPool2d through ``gpucnn.max_pool2d``: (N, C, H, W) ->
    (N, C, P, Q); forward keeps the argmax, and backward(dy) routes each
    gradient to it, returning dx (N, C, H, W). No parameters."""
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding,
                         dilation=dilation, ceil_mode=ceil_mode)

    def forward(self, x):
        y, idx = F.max_pool2d(x, **self._geom, return_indices=True)
        self._save(x=x, idx=idx)  # the argmax routes the gradient back (no recomputation)
        return y

    def backward(self, dy):
        x, idx = self._load("x", "idx")
        return F.max_pool2d_backward(dy, x, **self._geom, indices=idx)


class AvgPool2D(_Pool):
    """torch.nn.AvgPool2d through ``gpucnn.avg_pool2d``: (N, C, H, W) ->
    (N, C, P, Q); backward(dy) spreads each gradient over its window and
    returns dx (N, C, H, W). No parameters."""
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding,
                         ceil_mode=ceil_mode, count_include_pad=count_include_pad)

    def forward(self, x):
        self._save(x=x)
        return F.avg_pool2d(x, **self._geom)

    def backward(self, dy):
        return F.avg_pool2d_backward(dy, self._load("x"), **self._geom)


class AdaptiveAvgPool2D(Module):
    """torch.nn.AdaptiveAvgPool2d: (N, C, H, W) -> (N, C, *output_size) by
    ``gpucnn.adaptive_avg_pool2d``; output_size 1 is global average pooling.
    backward(dy) returns dx (N, C, H, W); there are no parameters."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        self._save(x=x)
        return F.adaptive_avg_pool2d(x, self.output_size)

    def backward(self, dy):
        return F.adaptive_avg_pool2d_backward(dy, self._load("x"))

    def __repr__(self):
        return f"AdaptiveAvgPool2D(output_size={self.output_size})"


class ReLU(Module):
    """torch.nn.ReLU (or LeakyReLU with negative_slope): elementwise, any shape;
    backward(dy) returns dy where the forward's x > 0, else negative_slope * dy."""
    def __init__(self, negative_slope=0.0):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        self._save(x=x)
        return F.relu(x, self.negative_slope)

    def backward(self, dy):
        return F.relu_backward(dy, self._load("x"), self.negative_slope)

    def __repr__(self):
        return f"ReLU(negative_slope={self.negative_slope})"


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W), in torch's row-major order; backward(dy)
    reshapes dy back to the forward's input shape."""

    def forward(self, x):
        self._save(shape=x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._load("shape"))

    def __repr__(self):
        return "Flatten()"
