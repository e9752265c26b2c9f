"""The NumPy backend's convolutions on the input lowered a kernel column at a
time (gpucnn.reference.lowered): forced on, they agree in float64 with φ
unfolded whole (the unfold path, an independent construction of φ), on
strides, dilations, asymmetric padding, uneven kernels, bands of output rows
and either product form; and conv_algo takes them where they were measured to pay."""
from __future__ import annotations

import numpy as np
import pytest

from gpucnn.functional.conv import _conv_geometry
from gpucnn.reference import conv, conv_algo, layout, products, workspace

from crosscheck import randn  # noqa: E402

# (x shape, w shape, stride, padding, dilation)
CASES = [((3, 5, 9, 8), (4, 5, 3, 3), 1, 1, 1),
         ((2, 4, 7, 10), (6, 4, 2, 3), 1, (1, 0, 2, 1), (1, 2)),
         ((2, 3, 11, 9), (5, 3, 3, 2), (1, 2), (0, 2, 1, 1), 1),
         ((2, 3, 12, 13), (4, 3, 3, 3), 2, 1, (1, 2)),
         ((1, 2, 6, 7), (3, 2, 5, 3), 1, 2, (2, 1)),
         ((2, 1, 5, 7), (2, 1, 5, 5), 1, 0, 1)]


def _lowered(monkeypatch, on: bool):
    """Take the lowered paths wherever they apply (on), or nowhere."""
    monkeypatch.setattr(products, "_small", True)
    monkeypatch.setattr(conv_algo, "LOWERED_MIN_WIDTH", 0 if on else 10**9)
    monkeypatch.setattr(conv_algo, "LOWERED_WIDE_FILTERS", 10**9)
    monkeypatch.setattr(conv_algo, "LOWERED_PACKED_MIN_Q", 0)
    monkeypatch.setattr(conv_algo, "LOWERED_MIN_PIXELS", 0)
    monkeypatch.setattr(conv_algo, "LOWERED_MIN_CHUNKS", 0)


def _passes(x, w, b, dy, g):
    return (conv.conv2d_forward(x, w, b, g, relu=True), conv.conv2d_backward_filter(dy, x, g),
            conv.conv2d_backward_data(dy, w, g))


@pytest.mark.parametrize("small_mnk", [products.SMALL_MNK, 1])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x{}w{}".format(*c[:2]))
def test_lowered_matches_unfold(monkeypatch, case, small_mnk):
    # small_mnk 1: the filter gradient's per-image products in column
    # blocks (products.inner_cols) instead of one batched call.
    xs, ws, stride, padding, dilation = case
    g = _conv_geometry(xs, ws, stride, padding, dilation, 1)
    rng = np.random.default_rng(17)
    x, w, b = randn(rng, xs, np.float64), randn(rng, ws, np.float64), randn(rng, (ws[0],), np.float64)
    dy = randn(rng, (xs[0], ws[0], g.win.P, g.win.Q), np.float64)
    _lowered(monkeypatch, False)
    want = _passes(x, w, b, dy, g)
    _lowered(monkeypatch, True)
    monkeypatch.setattr(products, "SMALL_MNK", small_mnk)
    assert conv_algo.as_lowered(g, forward=True) == (g.win.dh == 1)
    assert conv_algo.as_lowered(g) == (g.win.sh == 1)
    got = _passes(x, w, b, dy, g)
    if conv_algo.as_lowered(g, forward=True):
        assert layout.channels_last(got[0])
    for a, c in zip(got, want):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)
    # An NHWC-memory input is lowered from the same values: bit for bit.
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    for a, c in zip(_passes(xl, w, b, dy, g), got):
        np.testing.assert_array_equal(a, c)


def test_lowered_forward_in_bands_of_rows(monkeypatch):
    # A workspace limit below one image's φ cuts the forward into bands of
    # output rows (each lowered alone); the filter gradient, which takes
    # whole images, is then not lowered.
    rng = np.random.default_rng(19)
    x, w = randn(rng, (2, 4, 9, 7), np.float64), randn(rng, (3, 4, 3, 3), np.float64)
    g = _conv_geometry(x.shape, w.shape, (2, 1), 1, 1, 1)
    _lowered(monkeypatch, False)
    want = conv.conv2d_forward(x, w, None, g)
    _lowered(monkeypatch, True)
    monkeypatch.setattr(workspace, "_limit", 4 * 9 * 7 * 8 * 2)
    assert len(conv_algo.plan(2, 4, g.win, 8)[1]) > 1
    assert conv_algo.as_lowered(g, forward=True) and not conv_algo.as_lowered(g)
    np.testing.assert_allclose(conv.conv2d_forward(x, w, None, g), want, rtol=1e-12, atol=1e-12)


def test_lowered_where_it_pays(monkeypatch):
    monkeypatch.setattr(products, "_small", True)

    def geo(c, k, h, kernel=3, stride=1, dilation=1, n=64):
        return _conv_geometry((n, c, h, h), (k, c, kernel, kernel), stride, kernel // 2 * dilation, dilation, 1)

    # resnet20's and vgg-small's 3x3 layers, lenet's second 5x5 layer: both passes.
    for g in (geo(16, 16, 32), geo(32, 32, 16), geo(32, 32, 32), geo(16, 32, 14, kernel=5)):
        assert conv_algo.as_lowered(g, forward=True) and conv_algo.as_lowered(g)
    # Stride 2: the forward only.
    assert conv_algo.as_lowered(geo(16, 32, 32, stride=2), forward=True)
    assert not conv_algo.as_lowered(geo(16, 32, 32, stride=2))
    # 8x8x64: the filter gradient has too few pixels for its strips' width.
    assert conv_algo.as_lowered(geo(64, 64, 8), forward=True) and not conv_algo.as_lowered(geo(64, 64, 8))
    # Stems: 3 channels lowered only in a forward to 64 filters; 1 channel never.
    assert not conv_algo.as_lowered(geo(3, 16, 32), forward=True) and not conv_algo.as_lowered(geo(3, 16, 32))
    assert conv_algo.as_lowered(geo(3, 64, 32), forward=True) and not conv_algo.as_lowered(geo(3, 64, 32))
    assert not conv_algo.as_lowered(geo(1, 32, 28, kernel=5), forward=True)
    # Past the small kernels, the forward only for rows of 48 outputs or
    # more; a filter gradient of one chunk (one image) not at all.
    assert not conv_algo.as_lowered(geo(64, 64, 32, n=8), forward=True)
    assert conv_algo.as_lowered(geo(64, 128, 112, n=1), forward=True)
    assert not conv_algo.as_lowered(geo(64, 128, 112, n=1)) and conv_algo.as_lowered(geo(64, 128, 112, n=2))
    # Dilation down the rows: the filter gradient only.
    assert not conv_algo.as_lowered(geo(16, 16, 32, dilation=2), forward=True)
    assert conv_algo.as_lowered(geo(16, 16, 32, dilation=2))
    # Groups, 1x1 kernels, other BLAS: never.
    assert not conv_algo.as_lowered(_conv_geometry((8, 16, 8, 8), (16, 8, 3, 3), 1, 1, 1, 2), forward=True)
    assert not conv_algo.as_lowered(geo(64, 64, 16, kernel=1), forward=True)
    monkeypatch.setattr(products, "_small", False)
    assert not conv_algo.as_lowered(geo(16, 16, 32), forward=True) and not conv_algo.as_lowered(geo(16, 16, 32))


def test_lowered_empty_batch(monkeypatch):
    _lowered(monkeypatch, True)
    x, w = np.zeros((0, 4, 6, 6), np.float32), np.ones((3, 4, 3, 3), np.float32)
    g = _conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    assert conv.conv2d_forward(x, w, None, g).shape == (0, 3, 6, 6)
    dw = conv.conv2d_backward_filter(np.zeros((0, 3, 6, 6), np.float32), x, g)
    assert dw.shape == w.shape and dw.dtype == np.float32 and not dw.any()
