"""Inverted dropout on the device: argument checks and dispatch. The mask
comes from a counter-based generator whose state, (seed, offset) as a uint64
array of two, lives with the data and is advanced in place by each call."""
from __future__ import annotations

import math

import numpy as np

from gpucnn import _checks as chk
from gpucnn.backend import call, resolve

BITS = 24  # the generator's resolution: p is applied as ceil(p * 2**24) / 2**24


def dropout_state(seed: int) -> np.ndarray:
    """A generator state for dropout from the int ``seed``.

    Returns a uint64 array (seed mod 2**64, offset 0) of shape (2,).
    """
    return np.array([int(seed) % 2**64, 0], np.uint64)


def _state(state):
    if not hasattr(state, "dtype") or state.dtype != np.uint64 or tuple(state.shape) != (2,):
        raise TypeError(f"state must be a uint64 array of shape (2,) (seed, offset), got "
                        f"{getattr(state, 'dtype', type(state).__name__)} {tuple(getattr(state, 'shape', ()))}")
    return state


def dropout(x, p, state):
    """Inverted dropout in training, as torch.nn.functional.dropout.

    x: any shape, float32 or float64; p: the probability of zeroing an
    element, in [0, 1); state: the generator's (seed, offset), a uint64 array
    of shape (2,) from dropout_state, on x's device, advanced in place by
    x.size values. Returns (y, mask), both shaped as x: mask is 1/(1 - p)
    where the element is kept and 0 where it is dropped, y = x * mask.
    """
    x, state = chk.array("x", x), _state(state)
    p = float(p)
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability p must lie in [0, 1), got {p}")
    threshold = math.ceil(p * 2**BITS)
    y, mask = call("dropout", "dropout_forward", x, state, threshold, 1.0 / (1.0 - p))
    if resolve((x, state)) == "cuda" and isinstance(state, np.ndarray):
        state[1] += np.uint64(x.size)  # the kernel advanced a device copy of this host state
    return y, mask


def dropout_backward(dy, mask):
    """The input gradient of dropout.

    dy: the output gradient; mask: what dropout returned, of dy's shape and
    dtype. Returns dx = dy * mask.
    """
    dy, mask = chk.array("dy", dy), chk.array("mask", mask)
    chk.same_dtype(dy=dy, mask=mask)
    chk.shape_is("mask", mask, dy.shape, "the shape of dy")
    return call("dropout", "dropout_backward", dy, mask)
