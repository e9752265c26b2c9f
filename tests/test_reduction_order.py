"""The documented summation orders of the kernels' reductions, pinned bit for bit in float64.

Each reduction is recomputed with NumPy adding the same terms in the order
the kernel's header comment states, one addition at a time, and the kernel's
result must carry the same bits:
  * the filter gradient (conv2d.cu, gemm.cuh): each split adds its pixels
    (n, p, q) in order from 0, then conv2d_sum_splits adds the splits in order;
  * the per-channel reductions of channel.cuh (the bias gradient, batch
    norm's statistics and backward sums), over groups of G elements (G = 2
    doubles when HW is even, else 1): in each (channel, chunk) block, thread
    t's accumulator u adds the groups t + 256u, t + 256u + 256U, ... of the
    chunk in order (of each image's part of it when a plane holds 256U groups
    or more), a group's elements in order; a thread's U accumulators are added
    as (a0 + a1) (+ a2) + a3 (U = 4 for the statistics and the bias, 3 for the
    float64 statistics, 2 for the backward sums); a warp's 32 thread sums are halved (lane l
    adds lane l + s, s = 16, ..., 1), then the 8 warps' sums alike;
    then the chunks are added in chunk order from +0.0 (channel_total).
    Batch norm's statistics are the shifted sums of x - x[0, c, 0] and its square.
The emulator computes without FMA contraction, as NumPy does; a GPU may fuse,
so this test runs on the emulated backends only.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn import backend as _backend
from gpucnn.cuda import algo, norm
from gpucnn.functional.conv import _conv_geometry

THREADS = 256  # CH_THREADS (channel.cuh)
SMS = 132  # the emulator's sm_count, which the launch code chunks for


@pytest.fixture(params=["forward", "reverse", "shuffle-misaligned"])
def emulated(request):
    """The kernels on the emulator, threads resumed in each order, the last with
    pointers off 16-byte alignment (channel.cuh's groups then load one value at a
    time): the bits must depend on neither."""
    ok, why = _backend.available("emulator")
    if not ok:
        pytest.skip(f"emulator unavailable: {why}")
    from gpucnn.runtime.emulator import emulation
    order = request.param.split("-")[0]
    with gpucnn.use_backend("emulator"), emulation(resume_order=order, seed=5,
                                                   misalign=request.param.endswith("misaligned")):
        yield request.param


def _in_order(terms: np.ndarray) -> np.ndarray:
    """Sum over the last axis one term at a time, starting from +0.0 (as the kernels' accumulators)."""
    zero = np.zeros(terms.shape[:-1] + (1,), terms.dtype)
    return np.cumsum(np.concatenate([zero, terms], axis=-1), axis=-1)[..., -1]


def _halve(part: np.ndarray) -> np.ndarray:
    """Halving along the last axis: part[..., l] += part[..., l + s], s = n/2, ..., 1; element 0."""
    part = part.copy()
    s = part.shape[-1] // 2
    while s:
        part[..., :s] = part[..., :s] + part[..., s:2 * s]
        s //= 2
    return part[..., 0]


def _tree(part: np.ndarray) -> float:
    """channel_block_sum's tree over THREADS values (common.cuh's block_warp_sum): each warp's
    32 lanes halved by shuffles, then the THREADS / 32 warps' sums halved alike."""
    return float(_halve(_halve(part.reshape(THREADS // 32, 32))))


def _chunk_sum(vals: np.ndarray, HW: int, beg: int, end: int, U: int) -> float:
    """One (channel, chunk) block of channel_partials: ``vals`` a channel's
    terms in (image, offset) order, the chunk [beg, end) of them, U groups in flight."""
    G = 2 if HW % 2 == 0 else 1  # a double2 group when a plane holds whole ones
    hw, beg, end, step = HW // G, beg // G, -(-end // G), THREADS * U
    acc = np.zeros((THREADS, U))

    def add(t, u, g):
        for e in range(G):
            acc[t, u] += vals[g * G + e]

    if hw >= step:  # each image's part of the chunk, by block steps from its first group in the chunk
        for first in range(beg - beg % hw, end, hw):
            lo, hi = max(beg, first) - first, min(end, first + hw) - first
            for t in range(THREADS):
                for o in range(lo + t, hi, step):
                    for u in range(U):
                        if o + u * THREADS < hi:
                            add(t, u, first + o + u * THREADS)
    else:
        for t in range(THREADS):
            for i in range(beg + t, end, step):
                for u in range(U):
                    if i + u * THREADS < end:
                        add(t, u, i + u * THREADS)
    total = acc[:, 0]
    for u in range(1, U):
        total = total + acc[:, u]
    return _tree(total)


def _channel_sums(terms: np.ndarray, HW: int, U: int = norm.UNROLL) -> np.ndarray:
    """channel_partials then channel_total for terms (C, N*HW), as the launch code chunks them."""
    C, n = terms.shape
    chunk, chunks = norm.channel_chunks(C, n, SMS)
    out = np.empty(C)
    for c in range(C):
        total = 0.0
        for j in range(chunks):
            total += _chunk_sum(terms[c], HW, j * chunk, min(n, (j + 1) * chunk), U)
        out[c] = total
    return out


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
    with algo.override("gemm:3"):  # two parts add alike in either order: three tell the order
        c = algo.choose(g, "backward_filter", np.float64)
        _, dw, db = gpucnn.conv2d_backward(dy, x, w, padding=1)
    assert c.splits == 3
    rows = dy.transpose(1, 0, 2, 3).reshape(4, -1)  # (K, N*P*Q) in pixel order
    terms = rows[:, None, :] * _im2col(x, 3, 3, 1)[None]  # (K, taps, N*P*Q)
    parts = [_in_order(terms[..., s * c.chunk:(s + 1) * c.chunk]) for s in range(c.splits)]
    want = parts[0]
    for part in parts[1:]:  # conv2d_sum_splits: acc = part[0]; acc += part[s]
        want = want + part
    np.testing.assert_array_equal(dw.reshape(4, -1).view(np.int64), want.view(np.int64))
    np.testing.assert_array_equal(db.view(np.int64), _channel_sums(rows, 81).view(np.int64))


@pytest.mark.parametrize("shape", [(3, 2, 13, 11), (2, 3, 40, 33), (1, 2, 100, 82)],
                         ids=["small-planes", "planes-past-a-step", "three-chunks"])
def test_batch_norm_sums_order(emulated, shape):
    rng = np.random.default_rng(12)
    x, dy = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
    C, HW = shape[1], shape[2] * shape[3]
    if shape[3] == 82:
        assert norm.channel_chunks(C, shape[0] * HW, SMS)[1] == 3
    y, saved = gpucnn.batch_norm2d(x, None, None, training=True, eps=1e-5)
    _, dgamma, dbeta = gpucnn.batch_norm2d_backward(dy, x, None, saved)
    v = x.transpose(1, 0, 2, 3).reshape(C, -1)  # channel c's values in (n, h, w) order
    n = v.shape[1]
    d = v - v[:, :1]  # shifted by the channel's first value, x[0, c, 0]
    s0, s1 = _channel_sums(d, HW, norm.UNROLL_STATS_F64), _channel_sums(d * d, HW, norm.UNROLL_STATS_F64)
    m = s0 * (1 / n)
    mean = v[:, 0] + m
    var = np.maximum(s1 * (1 / n) - m * m, 0.0)
    np.testing.assert_array_equal(saved.mean.view(np.int64), mean.view(np.int64))
    np.testing.assert_array_equal(saved.invstd.view(np.int64), (1.0 / np.sqrt(var + 1e-5)).view(np.int64))
    g = dy.transpose(1, 0, 2, 3).reshape(C, -1)
    U = norm.UNROLL_BACKWARD
    np.testing.assert_array_equal(dbeta.view(np.int64), _channel_sums(g, HW, U).view(np.int64))
    sdyx = _channel_sums(g * (v - saved.mean[:, None]), HW, U)
    np.testing.assert_array_equal(dgamma.view(np.int64), (sdyx * saved.invstd).view(np.int64))
