"""Inverted dropout with a counter-based generator: the oracle for
kernels/dropout.cu and the CPU backend.

The generator is splitmix64 (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", 2014) read as a function of a counter:
value number c from ``seed`` is the output mix of seed + c * 0x9E3779B97F4A7C15.
Element i of a call uses counter offset + i + 1 and its top 24 bits k; it is
kept iff k >= threshold. ``state`` = (seed, offset) is advanced in place by
the elements used, so the next call draws fresh values.
"""
from __future__ import annotations

import numpy as np

_GOLDEN, _M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def bits24(seed: int, counters: np.ndarray) -> np.ndarray:
    """The top 24 bits of splitmix64's value number ``counters`` from ``seed`` (int64)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + counters.astype(np.uint64) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(40)).astype(np.int64)


def dropout_forward(x, state, threshold, scale):
    """(y, mask) for x; mask = scale where kept, else 0; y = x * mask. Advances state."""
    seed, offset = int(state[0]), int(state[1])
    counters = np.arange(offset + 1, offset + 1 + x.size, dtype=np.uint64)
    keep = (bits24(seed, counters) >= threshold).reshape(x.shape)
    mask = np.where(keep, x.dtype.type(scale), x.dtype.type(0))
    state[1] += np.uint64(x.size)
    return x * mask, mask


def dropout_backward(dy, mask):
    return dy * mask
