"""The memory-bound reductions' two levels (kernels/channel.cuh): batch-norm
statistics and backward sums and the conv bias gradient split into many
(channel, chunk) blocks, chunks that end inside an image and at odd offsets, planes below and above
one block step (the two walks of channel_partials),
against float64 sums; and the same bits on every run.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import tol

import gpucnn
from gpucnn.cuda import norm as cuda_norm

pytestmark = pytest.mark.family("norm")


@pytest.fixture(params=[(7, 1), (1024, 4)], ids=["chunks-of-7", "default"])
def chunking(request, monkeypatch):
    """(UNIT, MIN_CHUNK_STEPS): chunks of 7 values cut images at odd places."""
    unit, steps = request.param
    monkeypatch.setattr(cuda_norm, "UNIT", unit)
    monkeypatch.setattr(cuda_norm, "MIN_CHUNK_STEPS", steps)
    return unit


@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (2, 2, 1, 1), (1, 1, 1, 2), (2, 3, 16, 16), (3, 2, 33, 32)])
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_batch_norm_sums(backend, chunking, shape, dtype):
    rng = np.random.default_rng(list(shape))
    x = (rng.standard_normal(shape) * 3 + 50).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    gamma = rng.uniform(0.5, 2, shape[1]).astype(dtype)
    beta = rng.standard_normal(shape[1]).astype(dtype)
    y, saved = gpucnn.batch_norm2d(x, gamma, beta)
    dx, dgamma, dbeta = gpucnn.batch_norm2d_backward(dy, x, gamma, saved)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    xhat = (x64 - mean.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + 1e-5)
    np.testing.assert_allclose(saved.mean, mean, **tol(dtype))
    np.testing.assert_allclose(saved.invstd, 1 / np.sqrt(var + 1e-5), **tol(dtype))
    np.testing.assert_allclose(dbeta, dy64.sum(axis=(0, 2, 3)), **tol(dtype))
    np.testing.assert_allclose(dgamma, (dy64 * xhat).sum(axis=(0, 2, 3)), rtol=tol(dtype)["rtol"],
                               atol=tol(dtype)["atol"] * x.size)


@pytest.mark.parametrize("hw", [(11, 5), (40, 27)], ids=["small-planes", "planes-over-a-block-step"])
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_bias_gradient(backend, chunking, dtype, hw):
    rng = np.random.default_rng(8)
    dy = rng.standard_normal((3, 6, *hw)).astype(dtype)
    x = rng.standard_normal((3, 2, *hw)).astype(dtype)
    w = rng.standard_normal((6, 2, 1, 1)).astype(dtype)
    db = gpucnn.conv2d_backward(dy, x, w)[2]
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), **tol(dtype))


def test_chunks_cover_each_channel():
    for C, n in [(1, 1), (3, 5000), (64, 401408), (1000, 49), (2, 10**7)]:
        chunk, chunks = cuda_norm.channel_chunks(C, n)
        assert chunk % cuda_norm.UNIT == 0 and (chunks - 1) * chunk < n <= chunks * chunk
        assert C * chunks <= max(C, cuda_norm.TARGET_BLOCKS + C)


def test_many_chunks_are_bitwise_repeatable(backend, chunking):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 3, 9, 10)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    runs = []
    for _ in range(2):
        y, saved = gpucnn.batch_norm2d(x, None, None)
        runs.append((y, saved.mean, saved.invstd, *gpucnn.batch_norm2d_backward(dy, x, None, saved)))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
