"""The Winograd family (kernels/conv2d_wino.cu, gpucnn.cuda.wino): 3x3 convolutions at
stride 1, forward and backward-data, by F(2x2, 3x3) on FFMA in the math mode "fp32".
On the emulator against float64 NumPy within float32's tolerance
(test_math_modes.run_and_check), in both resume orders and shuffled with the race,
misalignment and sanitizer checks; the weights kernel against the NumPy oracle of its
layout (gpucnn.reference.winograd), whose transforms against the direct convolution in
float64; the bounds of wino.ok. Where the heuristic takes it: test_halo.py's table of the 3x3
families."""
from __future__ import annotations

import numpy as np
import pytest
from family_checks import backward_data_case, forward_case, launches_of
from test_math_modes import FOLD_ORDERS, conv_args, run_and_check

import gpucnn
from gpucnn import backend
from gpucnn.cuda import algo, wino
from gpucnn.functional.conv import _conv_geometry
from gpucnn.reference import winograd

# id: x, w, padding (an int, or (top, bottom, left, right)), bias, fused ReLU. A task: 32 filters x
# 32 blocks of 2x2 outputs, flat over images; a step: 8 channels.
FORWARD_CASES = [
    # 70 filters: three 32-filter blocks, the last of 6; 12 channels: a full step, then 4 of 8
    ("k70_c12", (2, 12, 9, 12), (70, 12, 3, 3), 1, True, False),
    # 33 channels: 5 steps (the last of 1); 9 x 5 outputs (odd P and Q): 5 x 3 blocks an image,
    # 3 images: 45 blocks, a task's 32 crossing images and a second task of 13
    ("odd_pq_c33", (3, 33, 9, 5), (16, 33, 3, 3), 1, True, True),
    # no padding, 3 channels (5 of a step's 8 zero), Q = 2
    ("no_pad_c3", (1, 3, 5, 4), (5, 3, 3, 3), 0, False, False),
    # left padding 1 and none on the right, bottom padding only: Q = 7, odd (scalar stores)
    ("pad_0_1_1_0", (2, 8, 6, 8), (8, 8, 3, 3), (0, 1, 1, 0), True, False),
    # padding 3 on a 4-wide image: patches past both sides, rows of zeros
    ("pad3_w4", (1, 5, 2, 4), (3, 5, 3, 3), 3, True, True),
    # one output: P = Q = 1, one block of which 3 of 4 outputs are past the end
    ("one_output", (1, 4, 3, 3), (2, 4, 3, 3), 0, True, False),
    # one image, K = 64 exactly (two filter blocks), cifar-resnet's rows
    ("cifar_rows", (1, 16, 4, 32), (64, 16, 3, 3), 1, True, True),
]
# id: x, w, padding: dx as the forward of dy by the filters transposed and rotated, padding 2 - pad.
BACKWARD_CASES = [
    # 12 filters of 70 channels in the transposed problem: 9 steps, the last 6 of 8
    ("k70_c12", (2, 12, 9, 12), (70, 12, 3, 3), 1),
    # 70 filters in the forward: the transposed problem's 70 channels, 12 filters
    ("c70_k12", (2, 70, 9, 7), (12, 70, 3, 3), 1),
    # padding (top 0, bottom 2, left 2, right 0): the transposed padding (2, 0, 0, 2)
    ("pad_0_2", (1, 5, 6, 8), (9, 5, 3, 3), (0, 2, 2, 0)),
    # no padding: dy 3 x 5, dx 5 x 7 at padding 2
    ("no_pad", (2, 6, 5, 7), (4, 6, 3, 3), 0),
]

needs_emulator = pytest.mark.skipif(not backend.available("emulator")[0], reason="emulator unavailable")


def _geometry(xs, ws, padding):
    return _conv_geometry(xs, ws, 1, padding, 1, 1)


def _check_on_wino(fn, args, order):
    """run_and_check(fn, args, "fp32", ...) with the Winograd family forced, and its launches
    exactly the weights kernel and the forward kernel."""
    with launches_of(wino) as launched, algo.override("wino"):
        run_and_check(fn, args, "fp32", order)
    assert launched == ["conv2d_wino_weights", "conv2d_wino_forward"]


@needs_emulator
@pytest.mark.parametrize("order", FOLD_ORDERS)
@pytest.mark.parametrize("xs,ws,padding,bias,relu", [c[1:] for c in FORWARD_CASES], ids=[c[0] for c in FORWARD_CASES])
def test_conv2d_wino(order, xs, ws, padding, bias, relu):
    """y (conv2d, or conv2d_bias_relu's fused epilogue) by the Winograd kernels within float32's
    tolerance: "rev" runs a grid of 2 blocks (several tasks a block, the barriers between them),
    "shuf" the race, misalignment (wt, b and y moved off their alignment: the 4-byte copies and
    scalar stores) and sanitizer checks; the weights kernel and the forward kernel, nothing else."""
    _check_on_wino(*forward_case(xs, ws, padding, bias, relu), order)


@needs_emulator
@pytest.mark.parametrize("order", FOLD_ORDERS)
@pytest.mark.parametrize("xs,ws,padding", [c[1:] for c in BACKWARD_CASES], ids=[c[0] for c in BACKWARD_CASES])
def test_conv2d_wino_backward_data(order, xs, ws, padding):
    """dx by the Winograd kernels (the weights kernel flipping and transposing w) within
    float32's tolerance, in both resume orders and shuffled with the checks."""
    _check_on_wino(*backward_data_case(xs, ws, padding), order)


@needs_emulator
@pytest.mark.parametrize("ws,flip", [((70, 12, 3, 3), False), ((12, 70, 3, 3), True), ((5, 3, 3, 3), False)])
def test_wino_weights_kernel_is_the_oracle_layout(ws, flip):
    """conv2d_wino_weights' U, element for element, against gpucnn.reference.winograd.weights in
    float64: within float32's rounding of the transform's sums (two adds a side, each of at most
    3 terms: 4 roundings, bounded by 8 ulps of the sum of the terms' magnitudes), zeros past K and C."""
    from gpucnn.runtime import runtime_for
    rng = np.random.default_rng(list(ws))
    w = rng.standard_normal(ws).astype(np.float32)
    K, C = (ws[1], ws[0]) if flip else ws[:2]
    g = _geometry((1, C, 4, 4), (K, C, 3, 3), 1)
    with gpucnn.use_backend("emulator"):
        got = np.asarray(wino.weights(runtime_for("emulator"), w, g, flip=flip))
    want = winograd.weights(w.astype(np.float64), flip)
    mag = winograd.weights(np.abs(w.astype(np.float64)), flip, transform=np.abs(winograd.G))
    assert got.shape == (want.size,)
    assert (np.abs(got - want.ravel()) <= 8 * 2.0**-24 * mag.ravel()).all()
    live = np.zeros(want.shape, bool)  # (kblocks, channels, points, filters): filter kb * BK + f
    for kb in range(want.shape[0]):
        live[kb, :C, :, :max(0, min(winograd.BK, K - winograd.BK * kb))] = True
    assert (got.reshape(want.shape)[~live] == 0).all() and (mag[live] > 0).all()


@pytest.mark.parametrize("xs,ws,padding,bias,relu", [c[1:] for c in FORWARD_CASES], ids=[c[0] for c in FORWARD_CASES])
def test_winograd_oracle_is_the_convolution(xs, ws, padding, bias, relu):
    """The oracle's F(2x2, 3x3) (weights, then forward) is the direct convolution in float64, to
    rounding: the transforms' constants are the right ones."""
    kw = dict(padding=padding)
    x, w, b, _ = conv_args(xs, ws, kw)
    g = _geometry(xs, ws, padding)
    got = winograd.forward(x, winograd.weights(w), b if bias else None, ws[0], g.win.pad, relu)
    with gpucnn.use_backend("numpy"):
        want = (gpucnn.conv2d_bias_relu if relu else gpucnn.conv2d)(x, w, b if bias else None, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_wino_ok_bounds():
    """wino.ok: 3x3, stride and dilation 1, one group, sm_80 or newer; backward-data with padding
    at most 2 a side; its blocks and tasks within int."""
    g = _geometry((2, 5, 6, 8), (9, 5, 3, 3), (0, 2, 2, 0))
    assert wino.ok(g) and wino.ok(g, pass_="backward_data") and not wino.ok(g, pass_="backward_filter")
    assert not wino.ok(g, cc=75)
    assert not wino.ok(_geometry((1, 5, 6, 8), (9, 5, 3, 3), 3), pass_="backward_data")  # pad 3
    assert wino.ok(_geometry((1, 5, 6, 8), (9, 5, 3, 3), 3))  # the forward takes any padding
    assert not wino.ok(_conv_geometry((1, 5, 9, 9), (9, 5, 3, 3), 2, 1, 1, 1))    # stride 2
    assert not wino.ok(_conv_geometry((1, 5, 9, 9), (9, 5, 3, 3), 1, 1, 2, 1))    # dilation 2
    assert not wino.ok(_conv_geometry((1, 6, 9, 9), (6, 3, 3, 3), 1, 1, 1, 2))    # groups
    assert not wino.ok(_geometry((1, 5, 9, 9), (9, 5, 5, 5), 1))                  # 5x5
    # 2**31 blocks of 2x2: N x ceil(P/2) x ceil(Q/2) = 2**31 with N = 2**18 outputs of 128 x 256
    assert wino.ok(_geometry((2**18 - 1, 1, 128, 256), (1, 1, 3, 3), 1))
    assert not wino.ok(_geometry((2**18, 1, 128, 256), (1, 1, 3, 3), 1))
