"""The vectorized kernels (16-byte paths) once more with misalign=True and on offset views:
each pointer argument then has its own alignment, as a GPU caller's views can give it."""
import numpy as np
import pytest

import gpucnn
from emu_helpers import requires_emulator
from gpucnn.runtime.emulator import emulation

pytestmark = requires_emulator


@pytest.fixture(params=[0, 1, 2, 3])
def offset(request):
    """Elements by which the inputs start past a 16-byte boundary (x[offset:] of a fresh array)."""
    with gpucnn.use_backend("emulator"), emulation(misalign=True, race_check=True):
        yield request.param


def _view(rng, n, offset):
    return rng.standard_normal(n + offset, dtype=np.float32)[offset:]


def test_relu_forward_on_offset_views(offset):
    rng = np.random.default_rng(offset)
    x = _view(rng, 1001, offset)
    np.testing.assert_array_equal(gpucnn.relu(x, 0.1), np.where(x > 0, x, x * np.float32(0.1)))


def test_relu_backward_on_offset_views(offset):
    rng = np.random.default_rng(10 + offset)
    dy, x = _view(rng, 999, offset), _view(rng, 999, (offset + 1) % 4)
    np.testing.assert_array_equal(gpucnn.relu_backward(dy, x), np.where(x > 0, dy, np.float32(0)))
