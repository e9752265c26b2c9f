"""The memory-bound reductions' two levels (kernels/channel.cuh): batch-norm
statistics and backward sums and the conv bias gradient split into many
(channel, chunk) blocks, chunks that end inside an image and at odd offsets, planes below and above
one block step (the two walks of channel_partials),
against float64 sums; and the same bits on every run.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from conftest import tol

import gpucnn
from gpucnn.cuda import conv as cuda_conv
from gpucnn.cuda import norm as cuda_norm
from gpucnn.cuda.launch import small_grid

pytestmark = pytest.mark.family("norm")


@pytest.fixture(params=[7, cuda_norm.MIN_CHUNK], ids=["small-chunks", "default"])
def chunking(request, monkeypatch):
    """MIN_CHUNK: chunks of 8 values (7 rounded to a whole 16-byte group) cut
    images at odd places, and a channel into up to sms * BLOCKS_PER_SM / C chunks."""
    monkeypatch.setattr(cuda_norm, "MIN_CHUNK", request.param)
    return request.param


# HW 1056: float4 groups, planes under a block step (1024 groups of U = 4);
# HW 4160 past it; HW 1089: single values past it.
@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (2, 2, 1, 1), (1, 1, 1, 2), (2, 3, 16, 16), (3, 2, 33, 32),
                                   (2, 2, 64, 65), (1, 2, 33, 33)])
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


@pytest.mark.parametrize("hw", [(11, 5), (40, 27), (64, 65)],
                         ids=["small-planes", "float4-groups-under-a-step", "float4-groups-over-a-step"])
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_bias_gradient(backend, chunking, dtype, hw):
    rng = np.random.default_rng(8)
    dy = rng.standard_normal((3, 6, *hw)).astype(dtype)
    x = rng.standard_normal((3, 2, *hw)).astype(dtype)
    w = rng.standard_normal((6, 2, 1, 1)).astype(dtype)
    db = gpucnn.conv2d_backward(dy, x, w)[2]
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), **tol(dtype))


def test_chunks_cover_each_channel():
    for C, n, sms in [(1, 1, 132), (3, 5000, 132), (64, 131072, 132), (64, 401408, 114), (1000, 49, 132),
                      (2, 10**7, 132), (7, 10**6, 1)]:
        chunk, chunks = cuda_norm.channel_chunks(C, n, sms)
        assert chunk % cuda_norm.ALIGN == 0 and (chunks - 1) * chunk < n <= chunks * chunk
        wave = sms * cuda_norm.BLOCKS_PER_SM
        assert C * chunks <= max(C, wave)  # one wave of resident blocks, or one chunk a channel
        assert chunks <= -(-n // cuda_norm.MIN_CHUNK)
    assert cuda_norm.channel_chunks(64, 131072, 132) == (16384, 8)  # 512 of 528 slots, 4 block steps each


def test_reductions_are_resident_as_chunked():
    """channel_chunks puts one wave of sms * BLOCKS_PER_SM blocks: every level-one
    kernel must keep that many resident (static-sm90.md, which test_sass keeps current)."""
    from gpucnn.bench import model_static
    rec = model_static.load()
    for name in ("batchnorm_stats", "batchnorm_backward_sums", "conv2d_bias_grad"):
        for suffix in ("f32", "f64"):
            assert model_static.row(rec, f"{name}_{suffix}")[1]["blocks_per_sm"] == cuda_norm.BLOCKS_PER_SM, name


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


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_one_launch_election_with_a_small_grid_twice(backend, dtype, monkeypatch):
    """channel.cuh's last-chunk election: 2 blocks walk all 5 x 8 (channel,
    chunk) pairs (small_grid), so one block finishes many chunks and elects
    itself for some channels; a second launch finds the counters the first
    wrapped back to 0 and gives the same bits. Against float64 NumPy."""
    monkeypatch.setattr(cuda_norm, "MIN_CHUNK", 64)  # 2 x 16 x 16 values a channel: 8 chunks of 64
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((2, 5, 16, 16)) * 2 + 7).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    w = rng.standard_normal((5, 5, 1, 1)).astype(dtype)
    rm, rv = np.zeros(5, dtype), np.ones(5, dtype)
    runs = []
    with small_grid(2):
        for _ in range(2):
            y, saved = gpucnn.batch_norm2d(x, None, None, rm, rv)
            dx, dgamma, dbeta = gpucnn.batch_norm2d_backward(dy, x, None, saved)
            runs.append((saved.mean, saved.invstd, saved.running_mean, saved.running_var, dgamma, dbeta,
                         gpucnn.conv2d_backward(dy, x, w)[2]))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    n = x[:, 0].size
    xhat = (x64 - mean.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + 1e-5)
    want = (mean, 1 / np.sqrt(var + 1e-5), 0.1 * mean, 0.9 + 0.1 * var * n / (n - 1),
            (dy64 * xhat).sum(axis=(0, 2, 3)), dy64.sum(axis=(0, 2, 3)), dy64.sum(axis=(0, 2, 3)))
    for k, (got, w64) in enumerate(zip(runs[0], want)):  # the last three: sums of n terms
        atol = tol(dtype)["atol"] * (n if k >= 4 else 1)
        np.testing.assert_allclose(got, w64, rtol=tol(dtype)["rtol"], atol=atol)
    assert all(not c.any() for _, c in cuda_norm._scratch.values())  # zeros again for the next launch


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_election_is_race_free_with_a_block_per_chunk(dtype, monkeypatch):
    """The whole grid under the race check (emu-shuf runs two blocks, where an
    earlier item's fence already orders most chunks): each channel's last chunk
    is a block of its own, so only its fences order the other chunks' sums
    before its loads; dropping either half of channel_done's acquire-release atomic (the release's
    fence or the acquire's in the emulator's body of atomic_inc_acq_rel) is a RaceError here."""
    ok, why = gpucnn.backend.available("emulator")
    if not ok:
        pytest.skip(f"emulator unavailable: {why}")
    from gpucnn.runtime.emulator import emulation
    monkeypatch.setattr(cuda_norm, "MIN_CHUNK", 64)  # 8 chunks a channel, 24 blocks
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 16, 16)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    with gpucnn.use_backend("emulator"), emulation(race_check=True, resume_order="shuffle", seed=4):
        _, saved = gpucnn.batch_norm2d(x, None, None)
        _, dgamma, dbeta = gpucnn.batch_norm2d_backward(dy, x, None, saved)
        db = gpucnn.conv2d_backward(dy, x, rng.standard_normal((3, 3, 1, 1)).astype(dtype))[2]
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    np.testing.assert_allclose(saved.mean, x64.mean(axis=(0, 2, 3)), **tol(dtype))
    np.testing.assert_allclose(dbeta, dy64.sum(axis=(0, 2, 3)), rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * 512)
    np.testing.assert_array_equal(db, dbeta)  # the same sums in the same order


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_four_waves_of_chunks_sum_alike(dtype, monkeypatch):
    """norm.REDUCE_WAVES = 4 (bench/ab_mem.py's variant against the one wave): on one emulated
    SM, 2 channels of 2 x 16 x 16 take 8 chunks each instead of 2; the statistics, the backward
    sums and the bias gradient still match float64, and the chunking is as the waves say."""
    ok, why = gpucnn.backend.available("emulator")
    if not ok:
        pytest.skip(f"emulator unavailable: {why}")
    from gpucnn.runtime.emulator import emulation
    monkeypatch.setattr(cuda_norm, "MIN_CHUNK", 8)
    assert [cuda_norm._chunks(2, 512, 1, 8, w)[1] for w in (1, 4)] == [2, 8]
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((2, 2, 16, 16)) * 2 + 7).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    w = rng.standard_normal((2, 2, 1, 1)).astype(dtype)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    xhat = (x64 - mean.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + 1e-5)
    n = x[:, 0].size
    for waves in (1, 4):
        monkeypatch.setattr(cuda_norm, "REDUCE_WAVES", waves)
        with gpucnn.use_backend("emulator"), emulation(sm_count=1):
            _, saved = gpucnn.batch_norm2d(x, None, None)
            _, dgamma, dbeta = gpucnn.batch_norm2d_backward(dy, x, None, saved)
            db = gpucnn.conv2d_backward(dy, x, w)[2]
        np.testing.assert_allclose(saved.mean, mean, **tol(dtype))
        np.testing.assert_allclose(saved.invstd, 1 / np.sqrt(var + 1e-5), **tol(dtype))
        for got, want in ((dgamma, (dy64 * xhat).sum(axis=(0, 2, 3))), (dbeta, dy64.sum(axis=(0, 2, 3))),
                          (db, dy64.sum(axis=(0, 2, 3)))):
            np.testing.assert_allclose(got, want, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * n)


# HW 1024 and 64: planes under a block step (1024 float4 groups); 4160, 4096: over it; 35: not float4 groups
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (4, 5, 8, 8), (3, 2, 64, 65), (2, 2, 64, 64), (2, 3, 5, 7),
                                   (1, 1, 1, 4)])
@pytest.mark.parametrize("op", ["statistics", "bias-gradient"])
def test_reductions_through_shared_memory(backend, chunking, shape, op, monkeypatch):
    """batchnorm_stats_async_f32 and conv2d_bias_grad_async_f32 (norm.STATS_ASYNC, conv.BIAS_ASYNC,
    bench/ab_mem.py's "async"): the cp.async ring of channel_walk_async gives the float64 sums,
    and channel_walk's very bits where the planes are under a block step (the same order there);
    misaligned or not float4 groups, it is channel_walk itself."""
    _ring_against_walk(shape, op, monkeypatch)


# On one emulated SM, C = 4 channels take a chunk each (norm.channel_chunks): a thread's groups are
# 8-9 (one whole ring turn, then a part turn for some threads), 16-17 (two turns, then a part turn)
# and 12 (a turn, then one of U groups): planes under a block step, so the plain walk's bits too.
@pytest.mark.parametrize("shape", [(3, 4, 48, 60), (6, 4, 48, 60), (4, 4, 32, 48)])
@pytest.mark.parametrize("op", ["statistics", "bias-gradient"])
def test_ring_whole_turns(backend, shape, op, monkeypatch):
    """channel_walk_async's whole turns of CH_RING groups (constant slots and accumulators, no
    bound tests on the reads) and the part turn after them, 16-byte or (emu-shuf's misaligned
    pointers) 4-byte copies: the float64 sums, and channel_walk's bits."""
    if backend.startswith("emu"):
        from gpucnn.runtime.emulator import emulation
        ctx = emulation(sm_count=1)
        assert cuda_norm.channel_chunks(shape[1], shape[0] * shape[2] * shape[3], 1) == (
            shape[0] * shape[2] * shape[3], 1)
    else:
        ctx = contextlib.nullcontext()
    with ctx:
        _ring_against_walk(shape, op, monkeypatch)


def _ring_against_walk(shape, op, monkeypatch):
    """The async reduction of ``op`` on x of ``shape`` against float64, and against the plain walk's
    bits where the planes are under a block step (HW < 4096)."""
    rng = np.random.default_rng(list(shape))
    x = (rng.standard_normal(shape) * 3 + 50).astype(np.float32)
    rm, rv = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)
    w = np.ones((shape[1], 1, 1, 1), np.float32)
    runs = {}
    for asy in (False, True):
        if op == "statistics":
            monkeypatch.setattr(cuda_norm, "STATS_ASYNC", asy)
            _, saved = gpucnn.batch_norm2d(x, None, None, rm, rv)
            runs[asy] = (saved.mean, saved.invstd, saved.running_mean, saved.running_var)
        else:
            monkeypatch.setattr(cuda_conv, "BIAS_ASYNC", asy)
            runs[asy] = (gpucnn.conv2d_backward(x, x[:, :1], w)[2],)  # x as dy: db = x summed a channel
    x64 = x.astype(np.float64)
    if op == "statistics":
        mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
        np.testing.assert_allclose(runs[True][0], mean, **tol(np.float32))
        np.testing.assert_allclose(runs[True][1], 1 / np.sqrt(var + 1e-5), **tol(np.float32))
    else:
        np.testing.assert_allclose(runs[True][0], x64.sum(axis=(0, 2, 3)), **tol(np.float32))  # ~50 n each
    if shape[2] * shape[3] < 4096:
        for a, b in zip(runs[True], runs[False]):
            np.testing.assert_array_equal(a, b)
