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
    """A generator state for ``dropout``: (seed, offset 0)."""
    return np.array([int(seed) % 2**64, 0], np.uint64)


def _state(state):
    if not hasattr(state, "dtype") or state.dtype != np.uint64 or tuple(state.shape) != (2,):
        raise TypeError(f"state must be a uint64 array of shape (2,) (seed, offset), got "
                        f"{getattr(state, 'dtype', type(state).__name__)} {tuple(getattr(state, 'shape', ()))}")
    return state


def dropout(x, p, state):
    """(y, mask): each element of x kept with probability 1 - p and scaled by
    1/(1 - p), else zeroed (torch.nn.functional.dropout in training);
    y = x * mask. Advances ``state`` by x.size values."""
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
    """dx = dy * mask, the mask that dropout returned."""
    dy, mask = chk.array("dy", dy), chk.array("mask", mask)
    chk.same_dtype(dy=dy, mask=mask)
    chk.shape_is("mask", mask, dy.shape, "the shape of dy")
    return call("dropout", "dropout_backward", dy, mask)
