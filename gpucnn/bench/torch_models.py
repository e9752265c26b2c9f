"""The same network in PyTorch: a torch.nn module built from a gpucnn model's
own description (its layers and their geometry), with gpucnn's weights, so
that the training-step benchmark compares one architecture on both sides."""
from __future__ import annotations

import numpy as np

from gpucnn.nn._array import to_host


def _residual_class():
    import torch.nn as tnn

    class Residual(tnn.Module):
        """block(x) + shortcut(x), the shortcut the identity when None (gpucnn.nn.Residual)."""

        def __init__(self, block, shortcut=None):
            super().__init__()
            self.block, self.shortcut = block, shortcut

        def forward(self, x):
            return self.block(x) + (x if self.shortcut is None else self.shortcut(x))
    return Residual


def _conv(tnn, layer):
    w, g = layer.weight, layer._geom
    return tnn.Conv2d(w.shape[1] * g["groups"], w.shape[0], tuple(w.shape[2:]), stride=g["stride"],
                      padding=g["padding"], dilation=g["dilation"], groups=g["groups"],
                      bias="bias" in layer._params)


def _linear(tnn, layer):
    w = layer.weight
    return tnn.Linear(w.shape[1], w.shape[0], bias="bias" in layer._params)


def _builders(tnn):
    return {
        "Conv2D": lambda m: _conv(tnn, m),
        "Linear": lambda m: _linear(tnn, m),
        "BatchNorm2D": lambda m: tnn.BatchNorm2d(m.weight.shape[0], eps=m.eps, momentum=m.momentum),
        "ReLU": lambda m: tnn.LeakyReLU(m.negative_slope) if m.negative_slope else tnn.ReLU(),
        "MaxPool2D": lambda m: tnn.MaxPool2d(**m._geom),
        "AvgPool2D": lambda m: tnn.AvgPool2d(**m._geom),
        "AdaptiveAvgPool2D": lambda m: tnn.AdaptiveAvgPool2d(m.output_size),
        "Flatten": lambda m: tnn.Flatten(),
        "Dropout": lambda m: tnn.Dropout(m.p),
        "Sequential": lambda m: tnn.Sequential(*(build(layer) for layer in m.layers)),
        "Residual": lambda m: _residual_class()(build(m.block),
                                                 None if m.shortcut is None else build(m.shortcut)),
    }


def build(layer):
    """The torch.nn module of gpucnn ``layer`` (and of its sub-layers), freshly initialized."""
    import torch.nn as tnn
    kind = type(layer).__name__
    make = _builders(tnn).get(kind)
    if make is None:
        raise ValueError(f"no PyTorch counterpart for gpucnn layer {kind}")
    return make(layer)


def from_gpucnn(model):
    """``build(model)`` holding model's parameters and buffers (torch and gpucnn name them alike)."""
    import torch
    state = {k: torch.from_numpy(np.array(to_host(v))) for k, v in {**model.params(), **model.buffers()}.items()}
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    module = build(model).to(dtype=dtypes.pop() if len(dtypes) == 1 else None)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"gpucnn state that the PyTorch model lacks: {unexpected}")
    return module
