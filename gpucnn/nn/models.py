"""Small CNNs for the ``gpucnn train`` command, sized from the input shape so
one definition serves 8x8 digits, 28x28 MNIST and 32x32 CIFAR-10.

Every builder is ``builder(input_shape, classes, *, rng=None, dtype=np.float32)
-> Sequential`` with input_shape (C, H, W); ``rng`` (np.random.Generator)
seeds torch's default initialization."""
from __future__ import annotations

import numpy as np

from gpucnn.nn.layers import AdaptiveAvgPool2D, Conv2D, Flatten, Linear, MaxPool2D, ReLU
from gpucnn.nn.module import Sequential
from gpucnn.nn.regularization import BatchNorm2D, Dropout
from gpucnn.nn.residual import Residual


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


def _conv_bn(cin, cout, k, stride, rng, dtype):
    return [Conv2D(cin, cout, k, stride, padding=k // 2, bias=False, rng=rng, dtype=dtype),
            BatchNorm2D(cout, dtype=dtype)]


def _basic_block(cin, cout, stride, rng, dtype) -> Residual:
    """conv3-BN-ReLU-conv3-BN plus the shortcut: the identity, or a 1x1 strided
    convolution with batch norm where the shape changes (He et al.'s option B)."""
    block = Sequential(*_conv_bn(cin, cout, 3, stride, rng, dtype), ReLU(), *_conv_bn(cout, cout, 3, 1, rng, dtype))
    shortcut = None if stride == 1 and cin == cout else Sequential(*_conv_bn(cin, cout, 1, stride, rng, dtype))
    return Residual(block, shortcut)


def resnet20(input_shape, classes, *, rng=None, dtype=np.float32) -> Sequential:
    """He et al.'s CIFAR ResNet-20 (2016, §4.2): conv3(16)-BN-ReLU, three stages
    of three basic blocks (16, 32, 64 channels; the 2nd and 3rd stages start
    with stride 2), each block followed by ReLU, then global average pooling
    and one linear layer. Layers are named as a torch ``nn.Sequential`` of the
    same modules would name them ("3.block.0.weight", "9.shortcut.1.running_mean")."""
    rng = rng if rng is not None else np.random.default_rng()
    c = input_shape[0]
    layers = [*_conv_bn(c, 16, 3, 1, rng, dtype), ReLU()]
    c = 16
    for stage, width in enumerate((16, 32, 64)):
        for i in range(3):
            stride = 2 if stage > 0 and i == 0 else 1
            layers += [_basic_block(c, width, stride, rng, dtype), ReLU()]
            c = width
    layers += [AdaptiveAvgPool2D(1), Flatten(), Linear(c, classes, rng=rng, dtype=dtype)]
    return Sequential(*layers)


MODELS = {"lenet": lenet, "vgg-small": vgg_small, "resnet20": resnet20}
