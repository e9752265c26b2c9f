"""Small CNNs for the ``gpucnn train`` command, sized from the input shape so
one definition serves 8x8 digits, 28x28 MNIST and 32x32 CIFAR-10."""
from __future__ import annotations

import numpy as np

from gpucnn.nn.layers import Conv2D, Flatten, Linear, MaxPool2D, ReLU
from gpucnn.nn.module import Sequential
from gpucnn.nn.regularization import BatchNorm2D, Dropout


def _features_out(features: Sequential, input_shape, dtype) -> int:
    """Width of the flattened feature map, from one forward of a single zero
    image; in eval mode so that batch-norm running statistics stay untouched."""
    n = int(features.eval().forward(np.zeros((1, *input_shape), dtype)).size)
    features.train()
    return n


def _head(features, input_shape, widths, classes, rng, dtype, dropout=0.0):
    layers = [*features.layers, Flatten()]
    n = _features_out(features, input_shape, dtype)
    for w in widths:
        layers += [Linear(n, w, rng=rng, dtype=dtype), ReLU()]
        if dropout:
            layers.append(Dropout(dropout, rng=rng))
        n = w
    layers.append(Linear(n, classes, rng=rng, dtype=dtype))
    return Sequential(*layers)


def lenet(input_shape, classes, *, rng=None, dtype=np.float32) -> Sequential:
    """LeNet-5's layout (two 5x5 conv/ReLU/max-pool stages, then 120-84-classes),
    with "same" padding and wider stages (16, 32) so 8x8 inputs fit and train well."""
    rng = rng if rng is not None else np.random.default_rng()
    c = input_shape[0]
    features = Sequential(
        Conv2D(c, 16, 5, padding=2, rng=rng, dtype=dtype), ReLU(), MaxPool2D(2),
        Conv2D(16, 32, 5, padding=2, rng=rng, dtype=dtype), ReLU(), MaxPool2D(2))
    return _head(features, input_shape, (120, 84), classes, rng, dtype)


def vgg_small(input_shape, classes, *, rng=None, dtype=np.float32) -> Sequential:
    """Two VGG blocks (conv3-BN-ReLU twice, then max-pool) of 32 and 64 channels,
    a 256-wide hidden layer and dropout."""
    rng = rng if rng is not None else np.random.default_rng()
    layers, c = [], input_shape[0]
    for width in (32, 64):
        for _ in range(2):
            layers += [Conv2D(c, width, 3, padding=1, bias=False, rng=rng, dtype=dtype),
                       BatchNorm2D(width, dtype=dtype), ReLU()]
            c = width
        layers.append(MaxPool2D(2))
    features = Sequential(*layers)
    return _head(features, input_shape, (256,), classes, rng, dtype, dropout=0.5)


MODELS = {"lenet": lenet, "vgg-small": vgg_small}
