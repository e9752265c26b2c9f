"""Channels-last activations of the NumPy backend (gpucnn.reference.layout):
every op that can receive an (N, C, H, W)-shaped view of NHWC memory gives
what it gives for the C-contiguous array, in the layout it promises, and a
training step with them agrees with the all-NCHW one."""
from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn.nn import MODELS
from gpucnn.nn.losses import CrossEntropyLoss
from gpucnn import shapes
from gpucnn.reference import conv, layout, norm, pool, relu, workspace

from crosscheck import randn  # noqa: E402


def nhwc(a):
    """a's values as a view of NHWC memory."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def same(got, want, last=None):
    np.testing.assert_array_equal(got, want)
    if last is not None:
        assert layout.channels_last(got) == last


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def test_layout_predicates(rng):
    x = randn(rng, (2, 3, 4, 5), np.float32)
    assert not layout.channels_last(x) and layout.channels_last(nhwc(x))
    # One channel: both layouts at once, taken as C order.
    assert not layout.channels_last(nhwc(x[:, :1]))
    assert layout.channels_last(layout.empty_like(nhwc(x)))
    same(layout.image([1, 2, 3], nhwc(x))[1, 2], [1, 2, 3])


# (C, H, K, kernel, stride, pad): rows (forward and TRANSPOSED backward
# data), strips, plain unfold, pointwise, fold (stride 2), depthwise.
CASES = [(16, 8, 16, 3, 1, 1), (32, 6, 16, 3, 1, 1), (16, 34, 16, 3, 1, 1), (3, 9, 8, 3, 1, 0),
         (16, 8, 8, 1, 1, 0), (8, 9, 16, 3, 2, 1), (8, 8, 8, 3, 1, 1)]


@pytest.mark.parametrize("case", CASES)
def test_convolutions_take_nhwc_views(rng, case):
    C, H, K, k, s, p = case
    groups = C if (C, K, H) == (8, 8, 8) else 1
    x, w = randn(rng, (3, C, H, H), np.float32), randn(rng, (K, C // groups, k, k), np.float32)
    with gpucnn.use_backend("numpy"):
        y = gpucnn.conv2d(x, w, stride=s, padding=p, groups=groups)
        yl = gpucnn.conv2d(nhwc(x), w, stride=s, padding=p, groups=groups)
        dy = randn(rng, y.shape, np.float32)
        grads = gpucnn.conv2d_backward(dy, x, w, stride=s, padding=p, groups=groups)
        grads_l = gpucnn.conv2d_backward(nhwc(dy), nhwc(x), w, stride=s, padding=p, groups=groups)
    same(yl, y)
    dx, dw, db = grads_l
    same(dx, grads[0])
    same(dw, grads[1])
    # Each plane's float32 sum in another order (BLAS over an image's pixels).
    np.testing.assert_allclose(db, grads[2], rtol=1e-6, atol=1e-6 * np.abs(grads[2]).max())


def test_rows_convolutions_write_nhwc(rng):
    # 16x16x16 3x3: im2row rows forward, TRANSPOSED backward data (a rows forward of dy).
    x, w = randn(rng, (4, 16, 16, 16), np.float32), randn(rng, (16, 16, 3, 3), np.float32)
    with gpucnn.use_backend("numpy"):
        y = gpucnn.conv2d(x, w, padding=1)
        dx = gpucnn.conv2d_backward(nhwc(y), x, w, padding=1)[0]
    assert layout.channels_last(y) and layout.channels_last(dx)
    # A rows forward of over ROWS_PIXELS outputs (32x32x32, dilated: not
    # lowered) stays channel-major.
    with gpucnn.use_backend("numpy"):
        big = gpucnn.conv2d(randn(rng, (1, 32, 32, 32), np.float32), randn(rng, (32, 32, 3, 3), np.float32),
                            padding=2, dilation=2)
    assert big.flags.c_contiguous
    torch = pytest.importorskip("torch")
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def _bn_args(rng, shape):
    C = shape[1]
    x = (randn(rng, shape, np.float32) * 3 + 2).astype(np.float32)
    return x, randn(rng, shape, np.float32), randn(rng, (C,), np.float32), randn(rng, (C,), np.float32)


# NHWC sums over whole images (rows under norm.ROW_VALUES values) and over
# image rows (64 x 8 = 512 values).
@pytest.mark.parametrize("shape", [(4, 16, 8, 8), (3, 5, 7, 6), (3, 64, 5, 8)])
def test_batch_norm_on_nhwc_views(rng, shape):
    x, dy, gamma, beta = _bn_args(rng, shape)
    rm, rv = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)
    stats, stats_l = norm.batch_norm_stats(x, rm, rv, 0.1, 1e-5), norm.batch_norm_stats(nhwc(x), rm, rv, 0.1, 1e-5)
    for a, b in zip(stats_l, stats):
        # float64 sums in another order, rounded once to float32.
        np.testing.assert_allclose(a, b, rtol=1.2e-7, atol=0)
    mean, invstd = stats[:2]
    for fused in (False, True):
        y = norm.batch_norm_apply(x, mean, invstd, gamma, beta, fused)
        same(norm.batch_norm_apply(nhwc(x), mean, invstd, gamma, beta, fused), y, last=True)
        for batch_stats in (True, False):
            want = norm.batch_norm_backward(dy, x, mean, invstd, gamma, batch_stats, y if fused else None)
            got = norm.batch_norm_backward(nhwc(dy), nhwc(x), mean, invstd, gamma, batch_stats,
                                           nhwc(y) if fused else None)
            assert layout.channels_last(got[0])
            for a, b in zip(got, want):
                # The backward's float32 sums go image by image, not plane by plane.
                np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * np.abs(b).max())
    # Mixed layouts: dy channel-major against an NHWC x, and the other way round.
    want = norm.batch_norm_backward(dy, x, mean, invstd, gamma, True)
    for got in (norm.batch_norm_backward(dy, nhwc(x), mean, invstd, gamma, True),
                norm.batch_norm_backward(nhwc(dy), x, mean, invstd, gamma, True)):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * np.abs(b).max())


@pytest.mark.parametrize("shape", [(64, 8, 32, 32), (32, 16, 32, 32)], ids=["images", "rows"])
def test_nhwc_statistics_accuracy(rng, shape):
    # As test_batchnorm's large-offset case: a couple of float32 ulps of the
    # float64 truth, with offsets of 1e3 and spreads of 1e-2; summed over
    # whole images (8 x 32 values a row) and over image rows (16 x 32).
    reps = (1, shape[1] // 8, 1, 1)
    off = np.tile(np.array([0, 1e3, -1e3, 5, 300, -0.5, 1e2, 2.0]).reshape(1, -1, 1, 1), reps)
    spread = np.tile(np.array([1, 1, 1e-2, 3, 0.1, 1, 1e-1, 0.5]).reshape(1, -1, 1, 1), reps)
    x = (rng.standard_normal(shape) * spread + off).astype(np.float32)
    x64 = x.astype(np.float64)
    mean, invstd = norm.batch_norm_stats(nhwc(x), None, None, 0.1, 1e-5)[:2]
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=2.5e-7, atol=0)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x64.var(axis=(0, 2, 3)) + 1e-5), rtol=2.5e-7, atol=0)


def test_elementwise_ops_on_nhwc_views(rng):
    x, dy = randn(rng, (4, 16, 8, 8), np.float32), randn(rng, (4, 16, 8, 8), np.float32)
    x[0, 0, 0, :3] = [0.0, np.nan, -np.inf]
    for slope in (0.0, 0.1):
        same(relu.relu_forward(nhwc(x), slope), relu.relu_forward(x, slope), last=slope == 0.0 or None)
        same(relu.relu_backward(nhwc(dy), nhwc(x), slope), relu.relu_backward(dy, x, slope))
    assert layout.channels_last(relu.relu_backward(nhwc(dy), nhwc(x), 0.0))
    # Mixed layouts, where C == H == W makes both memories the same shape.
    cube, dcube = randn(rng, (2, 8, 8, 8), np.float32), randn(rng, (2, 8, 8, 8), np.float32)
    same(relu.relu_backward(dcube, nhwc(cube), 0.0), relu.relu_backward(dcube, cube, 0.0), last=True)
    same(relu.relu_backward(nhwc(dcube), cube, 0.0), relu.relu_backward(dcube, cube, 0.0))
    same(relu.relu_forward(nhwc(cube), 0.0), relu.relu_forward(cube, 0.0))
    out = np.empty_like(x)
    relu.threshold_backward(nhwc(dy), nhwc(x), out)
    same(out, relu.relu_backward(dy, x, 0.0))
    same(relu.add(nhwc(x), nhwc(dy)), relu.add(x, dy), last=True)
    same(relu.add(nhwc(x), dy), relu.add(x, dy), last=True)
    same(relu.add(x, dy[:1]), relu.add(nhwc(x), dy[:1]))
    # Float32 sums in another order (NHWC: over whole images, and over image
    # rows of 64 x 8 values): within float32 rounding of the float64 truth.
    for g in (dy, randn(rng, (3, 64, 5, 8), np.float32)):
        truth, bound = g.astype(np.float64).sum(axis=(0, 2, 3)), 1e-6 * np.abs(g).sum(axis=(0, 2, 3))
        for got in (norm.channel_sums(nhwc(g)), norm.channel_sums(g)):
            assert np.all(np.abs(got - truth) <= bound)


def test_other_ops_on_nhwc_views(rng):
    x = randn(rng, (2, 4, 8, 8), np.float32)
    win = shapes.window(8, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), pool=True)
    y, idx = pool.max_pool2d_forward(x, win)
    yl, idxl = pool.max_pool2d_forward(nhwc(x), win)
    same(yl, y)
    same(idxl, idx)
    dy = randn(rng, y.shape, np.float32)
    same(pool.max_pool2d_backward(nhwc(dy), nhwc(idx), win), pool.max_pool2d_backward(dy, idx, win))
    same(pool.avg_pool2d_forward(nhwc(x), win, True), pool.avg_pool2d_forward(x, win, True))
    same(pool.avg_pool2d_backward(nhwc(dy), win, True), pool.avg_pool2d_backward(dy, win, True))
    # NumPy's sums over the bins follow the memory order: rounding apart.
    np.testing.assert_allclose(pool.adaptive_avg_pool2d_forward(nhwc(x), 3, 3),
                               pool.adaptive_avg_pool2d_forward(x, 3, 3), rtol=1e-6, atol=1e-6)
    same(pool.adaptive_avg_pool2d_backward(nhwc(dy), 8, 8), pool.adaptive_avg_pool2d_backward(dy, 8, 8))


@pytest.mark.parametrize("seed", range(12))
def test_pooling_keeps_nhwc(monkeypatch, seed):
    # Pooling runs NHWC inputs in their memory's order, in chunks of whole
    # images (two a chunk here), and keeps the layout: the values, the
    # argmax and the routed gradient bit for bit those of the NCHW arrays,
    # over random windows (overlaps, dilation, ceil mode, padding) with
    # ties, NaN and -inf; mixed layouts take the plane path.
    from test_pool import _geometry
    rng = np.random.default_rng(seed)
    shape, g = _geometry(rng, asym=True)
    shape = (5, 3) + shape[2:]
    if shape[2] * shape[3] == 1:
        shape = shape[:2] + (2, 3)
    kh, kw = g["kernel_size"]
    stride = g["kernel_size"] if g["stride"] is None else g["stride"]
    win = shapes.window(*shape[2:], (kh, kw), stride, g["padding"], g["dilation"], g["ceil_mode"], pool=True)
    x = rng.integers(-2, 3, shape).astype(np.float32)
    x.flat[rng.integers(0, x.size, 3)] = [np.nan, -np.inf, np.inf]
    monkeypatch.setattr(workspace, "PLANES_CHUNK_BYTES", 2 * x[0].nbytes * 4)
    monkeypatch.setattr(workspace, "MIN_PARALLEL_BYTES", 0)
    big = win.P * win.Q > 1
    y, idx = pool.max_pool2d_forward(x, win)
    yl, idxl = pool.max_pool2d_forward(nhwc(x), win)
    same(yl, y, big or None)
    same(idxl, idx, big or None)
    dy = rng.integers(-3, 4, y.shape).astype(np.float32)
    want = pool.max_pool2d_backward(dy, idx, win)
    if big:
        same(pool.max_pool2d_backward(nhwc(dy), nhwc(idx), win), want, True)
        same(pool.max_pool2d_backward(nhwc(dy), idx, win), want, False)
    for cip in (True, False):
        same(pool.avg_pool2d_forward(nhwc(x), win, cip), pool.avg_pool2d_forward(x, win, cip), big or None)
        if big:
            same(pool.avg_pool2d_backward(nhwc(dy), win, cip), pool.avg_pool2d_backward(dy, win, cip), True)


def _step(name, monkeypatch, nchw):
    """dx and the gradients of one training step of model ``name``, with
    every op's output C-contiguous when ``nchw``, and how many outputs of the
    forward were channels-last."""
    real = layout.empty
    seen = []

    def empty(shape, dtype, last):
        seen.append(last and not nchw)
        return real(shape, dtype, last and not nchw)

    monkeypatch.setattr(layout, "empty", empty)
    rng = np.random.default_rng(0)
    model = MODELS[name]((3, 16, 16), 10, rng=rng)
    x, y = rng.standard_normal((8, 3, 16, 16)).astype(np.float32), rng.integers(0, 10, 8)
    loss = CrossEntropyLoss()
    with gpucnn.use_backend("numpy"):
        loss(model.forward(x), y)
        dx = model.backward(loss.backward())
    monkeypatch.setattr(layout, "empty", real)
    grads = model.grads()
    return dx, [grads[k] for k in sorted(grads)], sum(seen)


@pytest.mark.parametrize("name", ["resnet20", "vgg-small"])
def test_training_step_agrees_with_nchw(monkeypatch, name):
    dx, grads, last = _step(name, monkeypatch, nchw=False)
    dx0, grads0, none = _step(name, monkeypatch, nchw=True)
    assert last > 0 and none == 0
    for a, b in zip([dx, *grads], [dx0, *grads0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
