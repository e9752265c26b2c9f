"""PyTorch's default initialization of convolution and linear layers, drawn
from a seeded ``np.random.Generator`` so that runs are reproducible.

torch initializes a weight with kaiming_uniform_(a=sqrt(5)): bound =
gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + a^2)) = sqrt(1/3), which
reduces to 1 / sqrt(fan_in); the bias is uniform in the same +-1/sqrt(fan_in).
fan_in is w.shape[1] times the kernel area, as torch's
_calculate_fan_in_and_fan_out (for a transposed convolution that is
out_channels/groups * kh * kw, because torch stores its weight (Cin, Cout/g, kh, kw)).
"""
from __future__ import annotations

import math

import numpy as np


def fan_in(shape) -> int:
    """shape[1] times the kernel area: the inputs that reach one output."""
    return int(shape[1] * math.prod(shape[2:]))


def kaiming_uniform(rng: np.random.Generator, shape, dtype, a: float = math.sqrt(5)) -> np.ndarray:
    """A weight of ``shape`` uniform in +-gain*sqrt(3/fan_in), torch's kaiming_uniform_."""
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in(shape))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def default_bias(rng: np.random.Generator, weight_shape, n: int, dtype) -> np.ndarray:
    """n biases uniform in +-1/sqrt(fan_in) of the weight, torch's default."""
    fan = fan_in(weight_shape)
    bound = 1 / math.sqrt(fan) if fan > 0 else 0.0
    return rng.uniform(-bound, bound, size=n).astype(dtype)
