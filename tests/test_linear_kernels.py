"""Edge cases of the fully connected kernels (kernels/linear.cu) on gemm.cuh's
64 x 64 x 16 tiles: one row, sizes across tile boundaries, a long reduction,
empty axes, and the split reduction of the weight gradient, against a float64
NumPy product on every backend.
"""
from __future__ import annotations

import numpy as np
import pytest
from crosscheck import check

import gpucnn
from gpucnn.cuda import gemm as cuda_gemm
from gpucnn.cuda import linear as cuda_linear

pytestmark = pytest.mark.family("linear")

DTYPES = (np.float32, np.float64)

CASES = [  # id: x shape, out features
    ("n1", (1, 5), 3),
    ("n1_wide", (1, 130), 70),
    ("across_tiles", (65, 67), 70),        # every GEMM dimension one past a tile
    ("one_short", (63, 15), 63),           # every dimension one short of a tile
    ("long_reduction", (3, 1000), 5),      # 63 steps of 16 along in
    ("tall", (300, 17), 2),                # the weight gradient reduces 300 rows
    ("leading_axes", (2, 3, 5, 33), 9),
]
CASE_IDS = [c[0] for c in CASES]


def _data(xs, out, dtype, seed=0):
    rng = np.random.default_rng([seed, *xs, out])
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((out, xs[-1])).astype(dtype)
    b = rng.standard_normal(out).astype(dtype)
    dy = rng.standard_normal((*xs[:-1], out)).astype(dtype)
    return x, w, b, dy


def _want(x, w, b, dy):
    """float64 by plain matrix products over the flattened rows."""
    R = int(np.prod(x.shape[:-1]))
    x2, dy2 = x.reshape(R, w.shape[1]).astype(np.float64), dy.reshape(R, w.shape[0]).astype(np.float64)
    w64 = w.astype(np.float64)
    y = (x2 @ w64.T + b).reshape(dy.shape)
    return y, (dy2 @ w64).reshape(x.shape), dy2.T @ x2, dy2.sum(axis=0)


def _check_all(x, w, b, dy, dtype, what=""):
    y = gpucnn.linear(x, w, b)
    dx, dw, db = gpucnn.linear_backward(dy, x, w)
    for name, got, want in zip(("y", "dx", "dw", "db"), (y, dx, dw, db), _want(x, w, b, dy)):
        assert got.shape == want.shape and got.dtype == np.dtype(dtype), (name, got.shape, got.dtype)
        check(f"linear {name} {what}", got, want, dtype, record=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,out", [c[1:] for c in CASES], ids=CASE_IDS)
def test_matches_float64_products(backend, xs, out, dtype):
    _check_all(*_data(xs, out, dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,out", [((0, 4), 3), ((3, 0), 4), ((2, 3), 0)], ids=["no_rows", "no_in", "no_out"])
def test_empty_axes(backend, xs, out, dtype):
    """No rows: zero gradients; no inputs: y = b; no outputs: dx = 0."""
    _check_all(*_data(xs, out, dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [1, 2, 1000])
def test_weight_gradient_splits(backend, dtype, steps, monkeypatch):
    """Any split of the reduction over rows gives the same weight gradient,
    including chunks that end inside a tile and a short last chunk."""
    monkeypatch.setattr(cuda_linear, "MIN_SPLIT_STEPS", steps)
    x, w, b, dy = _data((2, 149, 7), 5, dtype)
    _check_all(x, w, b, dy, dtype, f"MIN_SPLIT_STEPS={steps}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_grid_z_smaller_than_splits(backend, dtype, monkeypatch):
    monkeypatch.setattr(cuda_linear, "MAX_GRID_Z", 2)
    monkeypatch.setattr(cuda_linear, "MIN_SPLIT_STEPS", 1)
    assert cuda_linear.weight_splits(298, 7, 5)[1] > 2
    _check_all(*_data((298, 7), 5, dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_is_bitwise_reproducible(backend, dtype, monkeypatch):
    monkeypatch.setattr(cuda_linear, "MIN_SPLIT_STEPS", 1)
    x, _, _, dy = _data((200, 70), 66, dtype, seed=1)
    w = _data((200, 70), 66, dtype, seed=2)[1]
    first = gpucnn.linear_backward(dy, x, w)
    second = gpucnn.linear_backward(dy, x, w)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_weight_splits_cover_the_reduction():
    for R, I, O in [(1, 1, 1), (300, 17, 2), (4096, 512, 10), (7, 4096, 4096)]:
        chunk, splits = cuda_linear.weight_splits(R, I, O)
        assert chunk % cuda_gemm.TILE_K == 0 and splits >= 1
        assert (splits - 1) * chunk < R <= splits * chunk
