"""The convolution kernels on tensors past 2**31 elements: with ``blocks=`` only the blocks at
the far end run, and the arguments are mapped lazily, so a test touches a few MiB of them.

The kernels promise 64-bit memory offsets for any tensor whose GEMM coordinates
(N*P*Q pixels, per-image sizes) fit in int; gpucnn's launch code also splits
batches at half the int range, which these tests lift to give one kernel the
whole tensor.
"""
import mmap

import numpy as np
import pytest

import gpucnn
from emu_helpers import requires_emulator
from gpucnn import backend as _backend
from gpucnn.cuda import algo, gemm
from gpucnn.runtime.emulator import emulation

pytestmark = requires_emulator
N, C, K, H, W = 32769, 64, 64, 32, 32  # N*C*H*W = 2**31 + 65536 elements per tensor
TILE = 64  # the last block's GEMM columns: the last 64 pixels of image N - 1


def _lazy(shape) -> np.ndarray:
    """A float32 array backed by memory only where written (MAP_NORESERVE, 0x4000)."""
    m = mmap.mmap(-1, 4 * int(np.prod(shape)), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000)
    return np.frombuffer(m, np.float32).reshape(shape)


@pytest.fixture
def one_launch(monkeypatch):
    """The whole batch in one launch, the emulator running only its last block."""
    if not _backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    monkeypatch.setattr(gemm, "_INT_MAX", 2**40)
    # the GEMM family: its last block holds the last pixels (the halo kernels' tasks stride over
    # the grid, and come first for these 3x3 layers in the emulator's 3xtf32: their own test below)
    with gpucnn.use_backend("emulator"), emulation(blocks=(-1,), race_check=True, sanitize=True), \
            algo.override("gemm"):
        yield


def _last_image(rng, shape):
    big = _lazy(shape)
    big[-1] = rng.standard_normal(shape[1:], dtype=np.float32)
    return big


def test_forward_far_end_past_2_31(one_launch):
    rng = np.random.default_rng(21)
    x = _last_image(rng, (N, C, H, W))
    w = rng.standard_normal((K, C, 3, 3), dtype=np.float32) * 0.1
    b = rng.standard_normal(K, dtype=np.float32)
    assert x.size > 2**31
    y = gpucnn.conv2d(x, w, b, padding=1)
    assert y.size > 2**31
    with gpucnn.use_backend("numpy"):
        want = gpucnn.conv2d(x[-1:].copy(), w, b, padding=1)
    got = y[-1].reshape(K, -1)[:, -TILE:]
    np.testing.assert_allclose(got, want[0].reshape(K, -1)[:, -TILE:], rtol=1e-4, atol=1e-4)


def test_backward_data_far_end_past_2_31(one_launch):
    rng = np.random.default_rng(22)
    dy = _last_image(rng, (N, K, H, W))
    x = _lazy((N, C, H, W))  # only its shape matters to the data gradient
    w = rng.standard_normal((K, C, 3, 3), dtype=np.float32) * 0.1
    from gpucnn.cuda import conv as cuda_conv
    from gpucnn.functional.conv import _conv_geometry
    from gpucnn.runtime import runtime_for
    g = _conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    dx = cuda_conv.conv2d_backward_data(runtime_for("emulator"), dy, w, g)
    assert dx.size > 2**31
    with gpucnn.use_backend("numpy"):
        want, _, _ = gpucnn.conv2d_backward(dy[-1:].copy(), np.zeros((1, C, H, W), np.float32), w, padding=1)
    got = dx[-1].reshape(C, -1)[:, -TILE:]
    np.testing.assert_allclose(got, want[0].reshape(C, -1)[:, -TILE:], rtol=1e-4, atol=1e-4)


def _far_end_3x3(seed, launch_last, filters, pixels):
    """A 3x3 family's forward on the same 2**31-element x and y: ``launch_last(rt, x, w, b, y,
    g, geom)`` makes the weights in full and runs the forward's block whose task loop reaches the
    last task (emulation(blocks=...)); then filters ``filters`` of image N - 1's last ``pixels``
    outputs against NumPy on the last image."""
    if not _backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    from gpucnn.cuda import conv as cuda_conv
    from gpucnn.functional.conv import _conv_geometry
    from gpucnn.runtime import runtime_for
    rng = np.random.default_rng(seed)
    x = _last_image(rng, (N, C, H, W))
    w = rng.standard_normal((K, C, 3, 3), dtype=np.float32) * 0.1
    b = rng.standard_normal(K, dtype=np.float32)
    g = _conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    y = _lazy((N, K, H, W))
    launch_last(runtime_for("emulator"), x, w, b, y, g, cuda_conv._geom(g))
    with gpucnn.use_backend("numpy"):
        want = gpucnn.conv2d(x[-1:].copy(), w, b, padding=1)
    got = y[-1, filters].reshape(-1, H * W)[:, -pixels:]
    np.testing.assert_allclose(got, want[0, filters].reshape(-1, H * W)[:, -pixels:], rtol=1e-4, atol=1e-4)


def _last_block(tasks):
    """Only the block (of a grid of MAX_BLOCKS) whose task loop reaches task ``tasks`` - 1, checked."""
    from gpucnn.cuda.launch import MAX_BLOCKS
    assert tasks > MAX_BLOCKS
    return emulation(blocks=((tasks - 1) % MAX_BLOCKS,), race_check=True, sanitize=True)


def test_halo_forward_far_end_past_2_31():
    """The halo kernels (kernels/conv2d_halo.cu): image N - 1's last 4 rows, all 64 filters (task
    262151 on a grid of 65535 blocks), in 3xtf32 (float32's accuracy)."""
    from gpucnn.cuda import conv as cuda_conv
    from gpucnn.cuda import halo

    def launch_last(rt, x, w, b, y, g, geom):
        p = halo.plan(g)
        assert (p.th, p.tw) == (4, 32)
        wt = halo.weights(rt, w, g, "3xtf32", p)
        with _last_block(p.tasks):
            halo.forward(rt, x, wt, b, y, g, geom, "3xtf32", cuda_conv.EPI_BIAS)
    _far_end_3x3(23, launch_last, slice(None), 4 * W)


def test_wino_forward_far_end_past_2_31():
    """The Winograd kernels (kernels/conv2d_wino.cu): filters 32..63 of image N - 1's last two rows
    of 2x2 blocks, its last 4 output rows (task 524303 on a grid of 65535 blocks), in fp32."""
    from gpucnn.cuda import conv as cuda_conv
    from gpucnn.cuda import wino

    def launch_last(rt, x, w, b, y, g, geom):
        assert wino.ok(g) and wino.tasks(g) == N * 16 * 16 // 32 * 2
        wt = wino.weights(rt, w, g)
        with _last_block(wino.tasks(g)):
            wino.forward(rt, x, wt, b, y, g, geom, cuda_conv.EPI_BIAS)
    _far_end_3x3(24, launch_last, slice(32, 64), 4 * W)
