"""adaptive_avg_pool2d and its backward on every backend, against torch
(forward and autograd) and float64 central differences."""
from __future__ import annotations

import numpy as np
import pytest
from crosscheck import check, directional_fd, randn

import gpucnn
from gpucnn import nn

pytestmark = pytest.mark.family("pool")

CASES = [  # x shape, output_size
    ((2, 3, 8, 8), 1), ((2, 3, 8, 8), (2, 4)), ((1, 2, 7, 5), 3), ((1, 2, 5, 7), (4, 6)),
    ((2, 1, 3, 3), (5, 5)), ((1, 2, 6, 5), (None, 2)), ((1, 1, 1, 1), 1),
]


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("shape,out", CASES)
def test_adaptive_avg_pool2d_matches_torch(backend, shape, out, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(list(shape))
    x = randn(rng, shape, dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, out)
    y = gpucnn.adaptive_avg_pool2d(x, out)
    tags = {"overlapping windows" if any(n % m for n, m in zip(shape[2:], y.shape[2:])) else "even windows"}
    check("adaptive_avg_pool2d", y, yt.detach().numpy(), dtype, tags)
    dy = randn(rng, y.shape, dtype)
    (dwant,) = torch.autograd.grad(yt, xt, torch.from_numpy(dy))
    check("adaptive_avg_pool2d_backward", gpucnn.adaptive_avg_pool2d_backward(dy, x), dwant.numpy(), dtype, tags)


def test_unbatched_matches_torch(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = randn(rng, (3, 7, 5), np.float64)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, (3, 2))
    y = gpucnn.adaptive_avg_pool2d(x, (3, 2))
    assert y.shape == (3, 3, 2)
    check("adaptive_avg_pool2d", y, yt.detach().numpy(), np.float64, {"unbatched"})
    dy = randn(rng, y.shape, np.float64)
    (dwant,) = torch.autograd.grad(yt, xt, torch.from_numpy(dy))
    dx = gpucnn.adaptive_avg_pool2d_backward(dy, x)
    assert dx.shape == x.shape
    check("adaptive_avg_pool2d_backward", dx, dwant.numpy(), np.float64, {"unbatched"})


def test_adaptive_avg_pool2d_finite_differences(backend):
    rng = np.random.default_rng(12)
    x, r = rng.standard_normal((2, 2, 7, 5)), rng.standard_normal((2, 2, 3, 4))
    dx = gpucnn.adaptive_avg_pool2d_backward(r, x)
    directional_fd(lambda x: float(np.sum(r * gpucnn.adaptive_avg_pool2d(x, (3, 4)))), (x,), (dx,), rng)


def test_layer(backend):
    x = np.arange(32.0).reshape(1, 2, 4, 4)
    pool = nn.AdaptiveAvgPool2D(1)
    np.testing.assert_array_equal(pool(x).ravel(), [7.5, 23.5])  # the mean of 0..15 and 16..31
    np.testing.assert_array_equal(pool.backward(np.ones((1, 2, 1, 1))), np.full((1, 2, 4, 4), 1 / 16))


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda x: gpucnn.adaptive_avg_pool2d(x, 0), ValueError, r"\boutput_size must be >= 1"),
    (lambda x: gpucnn.adaptive_avg_pool2d(x, (1, 2, 3)), TypeError, r"\boutput_size\b"),
    (lambda x: gpucnn.adaptive_avg_pool2d(x[0, 0], 1), ValueError, r"\bx must be"),
    (lambda x: gpucnn.adaptive_avg_pool2d_backward(np.zeros((1, 2, 1, 1)), x[0]), ValueError, r"\bdy must be 3-D"),
    (lambda x: gpucnn.adaptive_avg_pool2d_backward(np.zeros((1, 3, 1, 1)), x), ValueError, r"\bdy\b"),
])
def test_bad_arguments_raise(backend, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(np.zeros((1, 2, 4, 4)))
