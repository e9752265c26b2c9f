"""Edge cases of the implicit-GEMM convolution kernels (kernels/conv2d.cu):
sizes at and across the 64 x 64 x 16 tile boundaries, degenerate windows,
groups, and the split reduction of the filter gradient, against the NumPy
reference (and a float64 einsum for the forward pass) on every backend.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL

import gpucnn
from gpucnn.cuda import algo
from gpucnn.cuda import conv as cuda_conv
from gpucnn.cuda import gemm as cuda_gemm

pytestmark = pytest.mark.family("conv")

DTYPES = (np.float32, np.float64)

CASES = [  # id: (x shape, w shape, stride, padding, dilation, groups)
    ("n1c1k1", (1, 1, 5, 4), (1, 1, 3, 2), 1, 0, 1, 1),
    ("1x1", (2, 3, 5, 7), (5, 3, 1, 1), 1, 0, 1, 1),
    ("1x1_stride2", (1, 4, 7, 6), (3, 4, 1, 1), 2, 0, 1, 1),
    ("stride_gt_kernel", (2, 3, 11, 9), (5, 3, 2, 2), 3, 0, 1, 1),
    ("stride_gt_kernel_pad", (1, 2, 8, 7), (3, 2, 2, 1), (4, 3), (1, 2, 0, 2), 1, 1),
    ("kernel_is_padded_input", (2, 3, 4, 5), (5, 3, 6, 5), 1, (1, 1, 0, 0), 1, 1),
    ("dilation2", (2, 3, 9, 8), (5, 3, 3, 3), 1, 2, 2, 1),
    ("dilation3", (1, 2, 11, 10), (4, 2, 3, 2), (2, 1), 3, (3, 2), 1),
    ("depthwise", (2, 5, 7, 9), (5, 1, 3, 3), 1, 1, 1, 5),
    ("depthwise_x2", (1, 6, 8, 7), (12, 1, 3, 3), 2, (0, 1, 2, 1), 1, 6),
    ("c3_k5", (3, 3, 9, 7), (5, 3, 3, 3), 1, 1, 1, 1),
    ("k67", (1, 3, 5, 6), (67, 3, 3, 3), 1, 1, 1, 1),
    ("c67", (1, 67, 5, 4), (5, 67, 1, 2), 1, 0, 1, 1),
    ("odd_asym_pad", (2, 4, 13, 11), (6, 2, 3, 4), (2, 1), (0, 2, 3, 1), 1, 2),
    ("groups3_odd", (2, 9, 7, 5), (15, 3, 2, 3), 1, (1, 0, 2, 0), (2, 1), 3),
    # rows 70 > 64 (filters and, for backward-data, channels), 70*3*3 reduction
    # indices (40 steps of 16), 2*11*11 = 242 pixels (4 column tiles): every
    # dimension of every GEMM crosses a tile boundary.
    ("medium", (2, 70, 11, 11), (70, 70, 3, 3), 1, 1, 1, 1),
]
CASE_IDS = [c[0] for c in CASES]


def _pad4(padding):
    if isinstance(padding, int):
        return (padding,) * 4
    return (padding[0], padding[0], padding[1], padding[1]) if len(padding) == 2 else tuple(padding)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def close(got, want, dtype, what):
    """max|got - want| <= atol + rtol * max|want|: relative to the result's
    scale, since sums of many products cancel to near zero in places."""
    assert got.shape == want.shape and got.dtype == np.dtype(dtype), (what, got.shape, got.dtype)
    t = TOL[dtype]
    scale = float(np.abs(want).max(initial=0.0))
    err = float(np.abs(got.astype(np.float64) - want).max(initial=0.0))
    assert err <= t["atol"] + t["rtol"] * scale, f"{what}: error {err:.3g} at scale {scale:.3g}"


def einsum_conv(x, w, b, stride, pad4, dilation, groups):
    """An independent float64 forward: one einsum per kernel tap over a
    strided slice of the zero-padded input."""
    (sh, sw), (dh, dw) = stride, dilation
    t, bo, l, r = pad4
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (t, bo), (l, r)))
    N, C, Hp, Wp = xp.shape
    K, Cg, kh, kw = w.shape
    P, Q = (Hp - dh * (kh - 1) - 1) // sh + 1, (Wp - dw * (kw - 1) - 1) // sw + 1
    xg = xp.reshape(N, groups, Cg, Hp, Wp)
    wg = w.astype(np.float64).reshape(groups, K // groups, Cg, kh, kw)
    y = np.zeros((N, groups, K // groups, P, Q))
    for i in range(kh):
        for j in range(kw):
            patch = xg[..., i * dh:i * dh + sh * (P - 1) + 1:sh, j * dw:j * dw + sw * (Q - 1) + 1:sw]
            y += np.einsum("ngchw,gkc->ngkhw", patch, wg[..., i, j])
    y = y.reshape(N, K, P, Q)
    return y if b is None else y + b.reshape(1, K, 1, 1)


def _data(case, dtype, seed=0):
    _, xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng([seed, *xs, *ws])
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return rng, x, w, b, kw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_forward_matches_einsum(backend, case, dtype):
    _, x, w, b, kw = _data(case, dtype)
    y = gpucnn.conv2d(x, w, b, **kw)
    want = einsum_conv(x, w, b, _pair(kw["stride"]), _pad4(kw["padding"]), _pair(kw["dilation"]),
                       kw["groups"])
    close(y, want, dtype, "conv2d")
    close(gpucnn.conv2d(x, w, None, **kw), want - b.reshape(1, -1, 1, 1), dtype, "conv2d no bias")


@pytest.mark.skipif(not gpucnn.backend.available("emulator")[0], reason="emulator unavailable")
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("math", ["fp32", "tf32"])
@pytest.mark.parametrize("spec", ["gemm:1", "gemm:3", "direct"])
def test_forward_reads_the_bias_only_when_told(monkeypatch, spec, math, relu):
    """The forward kernels read b only with EPI_BIAS set (kernels/common.cuh),
    which is how a bias-less layer passes w in its place and launches no
    zeros: with the flag withheld, a NaN bias changes nothing, in the
    unsplit and split GEMM epilogues (FFMA and tensor-core) and the direct kernel."""
    _, x, w, b, kw = _data(CASES[CASE_IDS.index("depthwise" if spec == "direct" else "odd_asym_pad")], np.float32)
    want = einsum_conv(x, w, None, _pair(kw["stride"]), _pad4(kw["padding"]), _pair(kw["dilation"]), kw["groups"])
    want = np.maximum(want, 0) if relu else want
    g = gpucnn.functional.conv._conv_geometry(x.shape, w.shape, kw["stride"], kw["padding"], kw["dilation"],
                                               kw["groups"])
    with gpucnn.use_backend("emulator"), gpucnn.math_mode(math), algo.override(spec):
        assert algo.choose(g, "forward", math=math).family == spec.split(":")[0]
        first = gpucnn.backend.call("conv", "conv2d_forward", x, w, None, g, relu)
        monkeypatch.setattr(cuda_conv, "EPI_BIAS", 0)
        y = gpucnn.backend.call("conv", "conv2d_forward", x, w, np.full_like(b, np.nan), g, relu)
    if math == "fp32":  # tf32 rounds the operands: its bound is test_math_modes'
        close(first, want, np.float32, "no bias")
    np.testing.assert_array_equal(y, first, "a NaN bias with the flag withheld")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_backward_matches_reference(backend, case, dtype):
    rng, x, w, _, kw = _data(case, dtype)
    y = gpucnn.conv2d(x, w, **kw)
    dy = rng.standard_normal(y.shape).astype(dtype)
    got = gpucnn.conv2d_backward(dy, x, w, **kw)
    with gpucnn.use_backend("numpy"):
        want = gpucnn.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), **kw)
    for name, g, wnt in zip(("dx", "dw", "db"), got, want):
        close(g, wnt, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", ["gemm:4", "direct:3"])
def test_backward_is_bitwise_reproducible(backend, dtype, spec):
    # Small splits: the reductions run in several chunks.
    rng, x, w, _, kw = _data(CASES[CASE_IDS.index("odd_asym_pad")], dtype, seed=1)
    dy = rng.standard_normal(gpucnn.conv2d(x, w, **kw).shape).astype(dtype)
    with algo.override(spec):
        first = gpucnn.conv2d_backward(dy, x, w, **kw)
        second = gpucnn.conv2d_backward(dy, x, w, **kw)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", ["gemm:1", "gemm:2", "gemm:1000", "direct:2", "direct:1000"])
def test_filter_gradient_splits(backend, dtype, spec):
    """Any split of the N*P*Q reduction gives the reference's filter gradient,
    including chunks that end inside a tile and a last chunk shorter than the rest."""
    case = ("split", (3, 4, 9, 7), (6, 2, 2, 3), 1, (1, 0, 0, 2), 1, 2)
    rng, x, w, _, kw = _data(case, dtype)
    dy = rng.standard_normal(gpucnn.conv2d(x, w, **kw).shape).astype(dtype)
    with algo.override(spec):
        _, dw, _ = gpucnn.conv2d_backward(dy, x, w, **kw)
    with gpucnn.use_backend("numpy"):
        want = gpucnn.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), **kw)[1]
    close(dw, want, dtype, f"dw, {spec}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", ["gemm64:2", "gemm32:2", "phase"])
def test_grid_z_smaller_than_groups_times_splits(backend, dtype, monkeypatch, spec):
    """The tile kernels loop over groups (and splits, and phases) past grid z's cap."""
    monkeypatch.setattr(cuda_conv, "MAX_GRID_Z", 2)
    rng, x, w, b, kw = _data(CASES[CASE_IDS.index("groups3_odd")], dtype)
    kw["stride"] = (2, 1)
    with algo.override(spec):
        y = gpucnn.conv2d(x, w, b, **kw)
        dy = rng.standard_normal(y.shape).astype(dtype)
        got = [y, *gpucnn.conv2d_backward(dy, x, w, **kw)]
    with gpucnn.use_backend("numpy"):
        x64, w64, b64, dy64 = (a.astype(np.float64) for a in (x, w, b, dy))
        want = [gpucnn.conv2d(x64, w64, b64, **kw), *gpucnn.conv2d_backward(dy64, x64, w64, **kw)]
    for name, g, wnt in zip(("y", "dx", "dw", "db"), got, want):
        close(g, wnt, dtype, name)


def test_filter_splits_cover_the_reduction():
    from gpucnn.shapes import Conv, window
    for N, C, K, H in [(1, 1, 1, 1), (2, 3, 5, 9), (32, 64, 64, 56), (1, 512, 512, 7)]:
        g = Conv(N, C, K, 1, window(H, H, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)))
        c = algo.choose(g, "backward_filter")
        chunk, splits = c.chunk, c.splits
        npq = N * H * H
        unit = cuda_gemm.TILE_K if c.family == "gemm" else algo.DIRECT_THREADS
        assert chunk % unit == 0 and splits >= 1
        assert (splits - 1) * chunk < npq <= splits * chunk


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_gradient_many_channels_and_pixels(backend, dtype):
    """More channels than blocks under emu-rev's grid cap, and more pixels per
    channel than threads per block."""
    rng = np.random.default_rng(5)
    dy = rng.standard_normal((3, 7, 13, 11)).astype(dtype)
    x = rng.standard_normal((3, 2, 13, 11)).astype(dtype)
    w = rng.standard_normal((7, 2, 1, 1)).astype(dtype)
    db = gpucnn.conv2d_backward(dy, x, w)[2]
    close(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), dtype, "db")


def test_batches_past_the_int_range_run_in_runs_of_images(monkeypatch):
    """Tensors of more than 2**31 - 1 elements run as runs of images whose
    tensors fit the kernels' int counts (the limit is lowered here so that a
    small batch crosses it); results equal one launch over the whole batch."""
    if not gpucnn.backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    monkeypatch.setenv("GPUCNN_BACKEND", "emulator")  # the kernels' launch code, not the reference
    gemm = cuda_gemm
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 3, 9, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    whole = gpucnn.conv2d(x, w, b, padding=1), gpucnn.conv2d_backward(np.ones((5, 4, 9, 8)), x, w, padding=1)
    monkeypatch.setattr(gemm, "_INT_MAX", 4 * 4 * 9 * 8)  # half of it holds two images of y
    y = gpucnn.conv2d(x, w, b, padding=1)
    dx, dw, db = gpucnn.conv2d_backward(np.ones((5, 4, 9, 8)), x, w, padding=1)
    np.testing.assert_allclose(y, whole[0], rtol=1e-12)
    for got, want in zip((dx, dw, db), whole[1]):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    monkeypatch.setattr(gemm, "_INT_MAX", 2 * 4 * 9 * 8 - 1)  # one image of y past half of it
    with pytest.raises(ValueError, match="one image's tensor holds 288 elements"):
        gpucnn.conv2d(x, w, b, padding=1)
