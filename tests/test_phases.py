"""The input gradient of a strided convolution as one dense convolution per
stride phase (gpucnn.reference.phases): against the fold (dφ = dY Fᵀ and
the reverse of φ, an independent construction) in float64, over random
strided geometries, and where conv_algo takes it."""
from __future__ import annotations

import numpy as np
import pytest

from gpucnn.functional.conv import _conv_geometry
from gpucnn.reference import conv, conv_algo, layout, products

from crosscheck import randn  # noqa: E402


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("seed", range(24))
def test_phases_match_the_fold(seed):
    # Strides 2-4 (up to the kernel's size and past it: phases no tap
    # reaches), kernels 1-5, asymmetric padding, sizes whose last rows no
    # window covers; dy in either layout (dx NHWC memory).
    rng = np.random.default_rng(seed)
    kh, kw = (int(k) for k in rng.integers(1, 6, 2))
    sh, sw = (int(s) for s in rng.integers(1, 5, 2))
    if (sh, sw) == (1, 1):
        sh = 2
    pad = tuple(int(rng.integers(0, k // 2 + 1)) for k in (kh, kh, kw, kw))
    H, W = int(rng.integers(kh, kh + 9)), int(rng.integers(kw, kw + 9))
    C, K, N = int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 3))
    g = _conv_geometry((N, C, H, W), (K, C, kh, kw), (sh, sw), pad, 1, 1)
    w = randn(rng, (K, C, kh, kw), np.float64)
    dy = randn(rng, (N, K, g.win.P, g.win.Q), np.float64)
    want = conv.conv2d_backward_data(dy, w, g, conv_algo.FOLD)
    for d in (dy, nhwc(dy)):
        got = conv.conv2d_backward_data(d, w, g, conv_algo.PHASES)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        if H * W > 1 and C > 1:
            assert layout.channels_last(got)


def test_phases_where_they_pay(monkeypatch):
    monkeypatch.setattr(products, "_small", True)

    def geo(c, k, h, kernel=3, stride=2, dilation=1, groups=1):
        return _conv_geometry((64, c, h, h), (k, c // groups, kernel, kernel), stride, kernel // 2 * dilation,
                              dilation, groups)

    # resnet20's stride-2 3x3 layers, and wider ones with wide rows.
    for g in (geo(16, 32, 32), geo(32, 64, 16), geo(64, 128, 16), geo(64, 128, 112)):
        assert conv_algo.choose_backward_data(g) == conv_algo.PHASES
    # Phases' products past the small kernels on short rows, stems (3 or 1
    # channels), 1x1 kernels, dilation, groups: the fold; and without the
    # small kernels.
    for g in (geo(128, 256, 16), geo(3, 64, 224, kernel=7), geo(1, 32, 28, kernel=5),
              geo(256, 128, 56, kernel=1), geo(16, 16, 32, dilation=2), geo(32, 32, 16, groups=2)):
        assert conv_algo.choose_backward_data(g) == conv_algo.FOLD
    monkeypatch.setattr(products, "_small", False)
    assert conv_algo.choose_backward_data(geo(16, 32, 32)) == conv_algo.FOLD
    # Unit stride: as before.
    assert conv_algo.choose_backward_data(geo(16, 16, 32, stride=1)) == conv_algo.TRANSPOSED
