"""Dropout with the counter-based generator (kernels/dropout.cu), on every backend."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gpucnn import functional as F
from gpucnn.reference import dropout as R

pytestmark = pytest.mark.family("dropout")
DTYPES = [np.float32, np.float64]


def test_generator_is_splitmix64():
    # splitmix64's first two outputs from seed 0, as published with the
    # generator: 0xE220A8397B1DCDAF and 0x6E789E6AA1B965F4; their top 24 bits.
    assert R.bits24(0, np.array([1, 2], np.uint64)).tolist() == [0xE220A8, 0x6E789E]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
def test_mask_is_the_generators(backend, dtype, p):
    x = np.random.default_rng(0).standard_normal((3, 5, 67)).astype(dtype)
    state = F.dropout_state(2**64 - 5)  # seed + counter * golden wraps around 2**64
    state[1] = 1000
    y, mask = F.dropout(x, p, state)
    keep = R.bits24(2**64 - 5, np.arange(1001, 1001 + x.size, dtype=np.uint64)) >= math.ceil(p * 2**24)
    want = np.where(keep.reshape(x.shape), dtype(1 / (1 - p)), dtype(0))
    assert mask.dtype == dtype and np.array_equal(mask, want)
    assert np.array_equal(y, x * want)
    assert state.tolist() == [2**64 - 5, 1000 + x.size]
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    assert np.array_equal(F.dropout_backward(dy, mask), dy * want)


def test_calls_continue_the_sequence(backend):
    x = np.ones(3000, np.float32)
    a, b = F.dropout_state(7), F.dropout_state(7)
    _, m1 = F.dropout(x[:1000], 0.5, a)
    _, m2 = F.dropout(x[1000:], 0.5, a)
    _, whole = F.dropout(x, 0.5, b)
    assert np.array_equal(np.concatenate([m1, m2]), whole) and a.tolist() == b.tolist()
    assert not np.array_equal(m1, m2[:1000])


def test_kept_fraction():
    x = np.ones(40000)
    _, mask = F.dropout(x, 0.3, F.dropout_state(11))
    sigma = math.sqrt(0.3 * 0.7 / x.size)
    assert abs((mask == 0).mean() - 0.3) < 5 * sigma


def test_bad_arguments():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="state must be a uint64 array of shape"):
        F.dropout(x, 0.5, np.zeros(2, np.int64))
    with pytest.raises(TypeError, match=r"state .*\(3,\)"):
        F.dropout(x, 0.5, np.zeros(3, np.uint64))
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\), got 1.0"):
        F.dropout(x, 1.0, F.dropout_state(0))
    with pytest.raises(ValueError, match="mask"):
        F.dropout_backward(x, np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="same dtype|dtype"):
        F.dropout_backward(x, np.ones((2, 3), np.float64))
