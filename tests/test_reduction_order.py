"""The documented summation orders of the kernels' reductions, pinned bit for bit in float64.

Each reduction is recomputed with NumPy adding the same terms in the order
the kernel's header comment states, one addition at a time (np.cumsum, never
a pairwise np.sum), and the kernel's result must carry the same bits:
  * the filter gradient (conv2d.cu, gemm.cuh): each split adds its pixels
    (n, p, q) in order from 0, then conv2d_sum_splits adds the splits in order;
  * the bias gradient (gemm.cuh bias_grad): thread t adds pixels t, t + 256, ...
    in order, then a tree halves the 256 partial sums (s = 128, 64, ..., 1);
  * batch norm's statistics and backward sums (batchnorm.cu block_sum): the
    same per-thread strides and tree, in double.
The emulator computes without FMA contraction, as NumPy does; a GPU may fuse,
so this test runs on the emulated backends only.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn import backend as _backend
from gpucnn.cuda import conv as cuda_conv
from gpucnn.functional.conv import _conv_geometry

THREADS = 256  # GEMM_THREADS and BN_THREADS


@pytest.fixture(params=["forward", "reverse", "shuffle"])
def emulated(request):
    """The kernels on the emulator, threads resumed in each order (the bits must not depend on it)."""
    ok, why = _backend.available("emulator")
    if not ok:
        pytest.skip(f"emulator unavailable: {why}")
    from gpucnn.runtime.emulator import emulation
    with gpucnn.use_backend("emulator"), emulation(resume_order=request.param, seed=5):
        yield request.param


def _in_order(terms: np.ndarray) -> np.ndarray:
    """Sum over the last axis one term at a time, starting from +0.0 (as the kernels' accumulators)."""
    zero = np.zeros(terms.shape[:-1] + (1,), terms.dtype)
    return np.cumsum(np.concatenate([zero, terms], axis=-1), axis=-1)[..., -1]


def _tree(part: np.ndarray) -> np.ndarray:
    """The kernels' shared-memory tree over the last axis (THREADS values): part[t] += part[t + s]."""
    part = part.copy()
    s = THREADS // 2
    while s:
        part[..., :s] = part[..., :s] + part[..., s:2 * s]
        s //= 2
    return part[..., 0]


def _strided(values: np.ndarray) -> np.ndarray:
    """Thread t's sum of values[..., t::THREADS], in order: (..., THREADS)."""
    n = values.shape[-1]
    padded = np.zeros(values.shape[:-1] + (-(-n // THREADS) * THREADS,), values.dtype)
    padded[..., :n] = values  # the missing terms of short threads are never added; +0.0 changes no bits
    return _in_order(padded.reshape(values.shape[:-1] + (-1, THREADS)).swapaxes(-1, -2))


def _im2col(x, kh, kw, pad):
    """(C*kh*kw, N*P*Q) with rows (c, r, s) and columns (n, p, q), stride 1."""
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    P, Q = H + 2 * pad - kh + 1, W + 2 * pad - kw + 1
    cols = np.empty((C, kh, kw, N, P, Q), x.dtype)
    for r in range(kh):
        for s in range(kw):
            cols[:, r, s] = xp[:, :, r:r + P, s:s + Q].transpose(1, 0, 2, 3)
    return cols.reshape(C * kh * kw, N * P * Q)


def test_filter_gradient_split_order(emulated):
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((4, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3))
    dy = rng.standard_normal((4, 4, 9, 9))
    g = _conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    chunk, splits = cuda_conv.filter_splits(g)
    assert splits == 3, "two parts add alike in either order: three tell the order"
    _, dw, db = gpucnn.conv2d_backward(dy, x, w, padding=1)
    rows = dy.transpose(1, 0, 2, 3).reshape(4, -1)  # (K, N*P*Q) in pixel order
    terms = rows[:, None, :] * _im2col(x, 3, 3, 1)[None]  # (K, taps, N*P*Q)
    parts = [_in_order(terms[..., s * chunk:(s + 1) * chunk]) for s in range(splits)]
    want = parts[0]
    for part in parts[1:]:  # conv2d_sum_splits: acc = part[0]; acc += part[s]
        want = want + part
    np.testing.assert_array_equal(dw.reshape(4, -1).view(np.int64), want.view(np.int64))
    np.testing.assert_array_equal(db.view(np.int64), _tree(_strided(rows)).view(np.int64))


def test_batch_norm_sums_order(emulated):
    rng = np.random.default_rng(12)
    x, dy = rng.standard_normal((3, 2, 13, 11)) * 3 + 1, rng.standard_normal((3, 2, 13, 11))
    y, saved = gpucnn.batch_norm2d(x, None, None, training=True, eps=1e-5)
    _, dgamma, dbeta = gpucnn.batch_norm2d_backward(dy, x, None, saved)
    v = x.transpose(1, 0, 2, 3).reshape(2, -1)  # channel c's values in (n, h, w) order
    n = v.shape[1]
    mean = _tree(_strided(v)) * (1 / n)
    var = _tree(_strided((v - mean[:, None]) ** 2)) * (1 / n)
    np.testing.assert_array_equal(saved.mean.view(np.int64), mean.view(np.int64))
    np.testing.assert_array_equal(saved.invstd.view(np.int64), (1.0 / np.sqrt(var + 1e-5)).view(np.int64))
    g = dy.transpose(1, 0, 2, 3).reshape(2, -1)
    np.testing.assert_array_equal(dbeta.view(np.int64), _tree(_strided(g)).view(np.int64))
    sdyx = _tree(_strided(g * (v - saved.mean[:, None])))
    np.testing.assert_array_equal(dgamma.view(np.int64), (sdyx * saved.invstd).view(np.int64))
