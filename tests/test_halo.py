"""The halo family (kernels/conv2d_halo.cu, gpucnn.cuda.halo): 3x3 convolutions
at stride 1, forward and backward-data, on tensor cores from input rows held
in shared memory. On the emulator against float64 NumPy within the math mode's bound
(test_math_modes.run_and_check), in both resume orders and shuffled with the
race, misalignment and sanitizer checks; its plan's bounds; and where the
heuristic takes it."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from family_checks import backward_data_case, forward_case, launches_of
from test_math_modes import FOLD_ORDERS, conv_args, run_and_check

import gpucnn
from gpucnn import backend
from gpucnn.cuda import algo, halo
from gpucnn.functional.conv import _conv_geometry

# id: x, w, padding (an int, or (top, bottom, left, right)), bias, fused ReLU. Tiles: tw = Q rounded
# up to 4, th = 128 // tw rows (at most P), or 128-column tiles of one row where Q > 128.
HALO_CASES = [
    # 70 filters: two 64-filter blocks, the second of 6; 12 channels: a full step, then 4 of 8
    ("k70_c12", (2, 12, 9, 12), (70, 12, 3, 3), 1, True, False),
    # 40 rows of 16-row tiles (the last of 8); 33 channels: 5 steps through a 3-stage pipeline
    ("row_tiles_c33", (1, 33, 40, 8), (16, 33, 3, 3), 1, True, True),
    # 132 columns: tiles of 128 and of 4 (left padding 2: the halo's first column 2 before its group)
    ("col_tiles", (1, 17, 3, 132), (9, 17, 3, 3), (1, 1, 2, 2), False, True),
    # no padding, 3 channels (5 of a step's 8 zero), Q = 2 in a 4-wide tile
    ("no_pad_c3", (1, 3, 5, 4), (5, 3, 3, 3), 0, False, False),
    # left padding 1 and none on the right: Q = 7, odd (scalar stores); bottom padding only
    ("odd_q", (2, 8, 6, 8), (8, 8, 3, 3), (0, 1, 1, 0), True, False),
    # padding 3 on a 4-wide image: windows reaching past both sides, rows of zeros
    ("pad3_w4", (1, 5, 2, 4), (3, 5, 3, 3), 3, True, True),
    # one image, K = 64 exactly, whole 32-column rows in 4-row tiles (cifar-resnet's tile)
    ("cifar_tile", (1, 16, 8, 32), (64, 16, 3, 3), 1, True, True),
]
MODES = ("tf32", "3xtf32")
FAMILIES = ("halo", "halowg")  # the mma.sync kernels, and the warpgroup variant (the emulator: sm_90)

needs_emulator = pytest.mark.skipif(not backend.available("emulator")[0], reason="emulator unavailable")


def _geometry(xs, ws, padding):
    return _conv_geometry(xs, ws, 1, padding, 1, 1)


@needs_emulator
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("order", FOLD_ORDERS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("xs,ws,padding,bias,relu", [c[1:] for c in HALO_CASES], ids=[c[0] for c in HALO_CASES])
def test_conv2d_halo(mode, order, xs, ws, padding, bias, relu, family):
    """y (conv2d, or conv2d_bias_relu's fused epilogue) by the halo kernels within the mode's bound:
    "rev" runs a grid of 2 blocks (several tasks a block, the barrier between them), "shuf" the
    race, misalignment (wt, b and y moved off their alignment: the 4-byte copies and scalar stores)
    and sanitizer checks; the weights kernel and the forward kernel of the mode, nothing else."""
    _check_on_halo(*forward_case(xs, ws, padding, bias, relu), mode, order, family)


def _on_family_cc(family):
    """The warpgroup variant's emulated compute capability, 9.0 (it runs there only: halo.WG_CC);
    the emulator's own for the mma.sync kernels."""
    from gpucnn.runtime.emulator import emulation
    return emulation(compute_capability=halo.WG_CC) if family == "halowg" else contextlib.nullcontext()


def _check_on_halo(fn, args, mode, order, family):
    """run_and_check(fn, args, ...) with ``family`` forced, and its launches exactly the
    weights kernel and the forward kernel of the mode (and variant)."""
    with launches_of(halo) as launched, algo.override(family), _on_family_cc(family):
        run_and_check(fn, args, mode, order)
    v = "wg_" if family == "halowg" else ""
    assert launched == [f"conv2d_halo_weights_{v}{mode}", f"conv2d_halo_forward_{v}{mode}"]


# Backward-data (dx as the forward of dy by the filters transposed and rotated, at padding 2 - pad):
# id: x, w, padding. dy's rows must be whole 16-byte groups (Q a multiple of 4), dx's need not.
BACKWARD_CASES = [
    # 12 filters of 70 channels in the transposed problem: 9 steps, the last 6 of 8
    ("k70_c12", (2, 12, 9, 12), (70, 12, 3, 3), 1),
    # 70 filters in two blocks of 64 (the second of 6), 12 channels
    ("c70_k12", (2, 70, 9, 12), (12, 70, 3, 3), 1),
    # padding (top 0, bottom 2, left 2, right 0): the transposed padding (2, 0, 0, 2)
    ("pad_0_2", (1, 5, 6, 8), (9, 5, 3, 3), (0, 2, 2, 0)),
    # dy 132 wide (tiles of 128 and 4), dx 134 wide (not a multiple of 4)
    ("wide_dx", (1, 4, 3, 134), (8, 4, 3, 3), (1, 1, 0, 0)),
    ("cifar_tile", (1, 16, 8, 32), (64, 16, 3, 3), 1),
]


@needs_emulator
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("order", FOLD_ORDERS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("xs,ws,padding", [c[1:] for c in BACKWARD_CASES], ids=[c[0] for c in BACKWARD_CASES])
def test_conv2d_halo_backward_data(mode, order, xs, ws, padding, family):
    """dx by the halo kernels (the weights kernel flipping and transposing w) within the mode's
    bound, in both resume orders and shuffled with the checks; the filter gradient by the
    heuristic's kernels beside it."""
    _check_on_halo(*backward_data_case(xs, ws, padding), mode, order, family)


def test_transposed_geometry_gives_dx():
    """halo.transposed: dy's shape in, x's out, C filters of K channels, padding 2 - pad."""
    g = _geometry((2, 5, 6, 8), (9, 5, 3, 3), (0, 2, 2, 0))
    t = halo.transposed(g)
    assert (t.N, t.C, t.K, t.groups) == (2, 9, 5, 1)
    assert (t.win.H, t.win.W, t.win.P, t.win.Q, t.win.pad) == (6, 8, 6, 8, (2, 0, 0, 2))
    assert halo.ok(g, pass_="backward_data") and halo.ok(t)
    assert not halo.ok(_geometry((1, 5, 6, 8), (9, 5, 3, 3), (3, 3, 1, 1)), pass_="backward_data")  # pad 3
    assert halo.ok(_geometry((1, 5, 6, 9), (9, 5, 3, 3), (1, 1, 1, 0)), pass_="backward_data")  # Q = 8 (W = 9)
    assert not halo.ok(_geometry((1, 5, 6, 10), (9, 5, 3, 3), (1, 1, 1, 1)), pass_="backward_data")  # Q = 10
    assert not halo.ok(g, pass_="backward_filter")


@pytest.mark.parametrize("xs,ws,padding", [c[1:4] for c in HALO_CASES] + [
    ((128, 64, 32, 32), (64, 64, 3, 3), 1),      # cifar-resnet
    ((16, 64, 56, 56), (64, 64, 3, 3), 1),       # resnet-3x3
    ((16, 64, 112, 112), (128, 64, 3, 3), 1),    # vgg
    ((1, 1, 1, 4), (1, 1, 3, 3), (1, 1, 3, 3)),  # one row, the widest left padding a 4-group holds
    ((1, 1, 300, 4), (1, 1, 3, 3), 0),           # Q = 2: 4-wide tiles of 32 rows
])
def test_halo_plan_bounds(xs, ws, padding):
    """Every plan keeps the kernel's bounds: tiles of at most 128 pixels, whole 16-byte groups
    (tw, hws), a halo row wide enough for the tile's windows from its 4-aligned first column, at
    most HALO_XCOPY input copies a thread a step, a channel stride conflict-free for the B
    fragments (8 or 24 mod 32 words), tasks covering the output, and two blocks an SM on sm_90."""
    g = _geometry(xs, ws, padding)
    assert halo.ok(g)
    p = halo.plan(g)
    w = g.win
    off = (-w.pad[2]) % 4
    assert p.th * p.tw <= halo.BN and p.tw % 4 == 0 and p.hws % 4 == 0 and p.th <= w.P
    assert p.hws >= off + p.tw + halo.KW - 1
    assert halo.CK * (p.th + halo.KH - 1) * (p.hws // 4) <= halo.XCOPY * halo.THREADS
    assert p.cs >= (p.th + halo.KH - 1) * p.hws and p.cs % 32 in (8, 24)
    assert p.tasks * p.th * p.tw >= g.N * w.P * w.Q * (-(-g.K // halo.BM)) and p.steps * halo.CK >= g.C
    for math in halo.MODES:
        assert 2 * (p.smem(math) + 1024) <= 233472, (math, p.smem(math))  # sm_90: 228 KiB an SM


def test_halo_plan_of_cifar_resnet():
    """cifar-resnet's tile by hand: 4 rows of 32, halo rows of 40 words from column -4 (left
    padding 1: the window's first column -1 is word 3), a channel 6 x 40 = 240 words padded to
    248 (24 mod 32), 128 x 8 x 1 tasks, 8 steps; 3 stages of 26 368 bytes in tf32, 2 of 44 800
    in 3xtf32."""
    p = halo.plan(_geometry((128, 64, 32, 32), (64, 64, 3, 3), 1))
    assert (p.th, p.tw, p.hws, p.cs, p.tasks, p.steps) == (4, 32, 40, 248, 1024, 8)
    assert p.smem("tf32") == 3 * 4 * (9 * 512 + 8 * 248) == 79104
    assert p.smem("3xtf32") == 2 * 4 * (9 * 2 * 512 + 8 * 248) == 89600


@pytest.mark.parametrize("name,xs,ws,stride,dilation,groups,dtype,math,cc,want", [
    ("cifar-resnet tf32", (128, 64, 32, 32), (64, 64, 3, 3), 1, 1, 1, np.float32, "tf32", 90, "halowg"),
    ("cifar-resnet 3xtf32", (128, 64, 32, 32), (64, 64, 3, 3), 1, 1, 1, np.float32, "3xtf32", 90, "halowg"),
    ("resnet-3x3 on sm_80", (16, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, np.float32, "tf32", 80, "halo"),
    ("resnet-3x3 on sm_89", (16, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, np.float32, "tf32", 89, "halo"),
    ("resnet-3x3 on sm_100: no wgmma", (16, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, np.float32, "tf32", 100, "halo"),
    ("vgg", (16, 64, 112, 112), (128, 64, 3, 3), 1, 1, 1, np.float32, "tf32", 90, "halowg"),
    ("cifar-resnet fp32: Winograd", (128, 64, 32, 32), (64, 64, 3, 3), 1, 1, 1, np.float32, "fp32", 90, "wino"),
    ("resnet-3x3 fp32 on sm_80", (16, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, np.float32, "fp32", 80, "wino"),
    ("resnet-7x7x512 fp32: any W", (16, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, np.float32, "fp32", 90, "wino"),
    ("float64 fp32", (128, 64, 32, 32), (64, 64, 3, 3), 1, 1, 1, np.float64, "fp32", 90, "gemm"),
    ("sm_75 fp32: no cp.async", (128, 64, 32, 32), (64, 64, 3, 3), 1, 1, 1, np.float32, "fp32", 75, "gemm"),
    ("8 filters fp32", (16, 64, 56, 56), (8, 64, 3, 3), 1, 1, 1, np.float32, "fp32", 90, "gemm"),
    ("float64", (128, 64, 32, 32), (64, 64, 3, 3), 1, 1, 1, np.float64, "tf32", 90, "gemm"),
    ("sm_75: no TF32 MMA", (128, 64, 32, 32), (64, 64, 3, 3), 1, 1, 1, np.float32, "tf32", 75, "gemm"),
    ("cifar-stem: 3 channels", (128, 3, 32, 32), (64, 3, 3, 3), 1, 1, 1, np.float32, "tf32", 90, "gemm"),
    ("resnet-7x7x512: W = 7", (16, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, np.float32, "tf32", 90, "gemm"),
    ("stride 2", (128, 128, 16, 16), (256, 128, 3, 3), 2, 1, 1, np.float32, "tf32", 90, "gemm"),
    ("dilated", (16, 64, 56, 56), (64, 64, 3, 3), 1, 2, 1, np.float32, "tf32", 90, "gemm"),
    ("groups", (16, 64, 56, 56), (64, 32, 3, 3), 1, 1, 2, np.float32, "tf32", 90, "gemm"),
    ("5x5", (64, 32, 16, 16), (64, 32, 5, 5), 1, 1, 1, np.float32, "tf32", 90, "gemm"),
])
def test_halo_is_chosen_where_it_runs(name, xs, ws, stride, dilation, groups, dtype, math, cc, want):
    """The heuristic's forward family: halo for float32 3x3 convolutions at stride and dilation 1
    with 16 channels or more (algo.HALO_MIN_C), W a multiple of 4, in "tf32" and "3xtf32" on
    compute capability 8.0 and newer, its warpgroup variant (halowg) on 9.0; in "fp32" the
    Winograd kernels (wino: 16 channels and 16 filters or more, any W; tests/test_wino.py); the
    GEMM tiles elsewhere. Backward-data likewise (filters and channels swap roles; Q a multiple of
    4 for halo: every case here that takes it forward; cifar-stem's stays on the fold and strip
    kernels), the filter gradient never."""
    g = _conv_geometry(xs, ws, stride, dilation, dilation, groups)
    c = algo.choose(g, "forward", dtype, math=math, cc=cc)
    assert c.family == want, (name, c)
    bd = algo.choose(g, "backward_data", dtype, math=math, cc=cc)
    assert (bd == algo.Choice(want, math=math)) == want.startswith(("halo", "wino")), (name, bd)
    assert algo.choose(g, "backward_filter", dtype, math=math, cc=cc).family not in (*algo.HALO_FAMILIES, "wino")


def test_halo_wg_turned_off_keeps_the_mma_kernels(monkeypatch):
    """GPUCNN_HALO_WG=0 (algo.HALO_WG False: gpu.sh sets it where the GPU failed the variant's
    primitives) takes the mma.sync halo kernels on sm_90 too; forcing halowg still runs it."""
    g = _conv_geometry((128, 64, 32, 32), (64, 64, 3, 3), 1, 1, 1, 1)
    monkeypatch.setattr(algo, "HALO_WG", False)
    algo._choose.cache_clear()
    try:
        assert algo.choose(g, "forward", math="tf32") == algo.Choice("halo", math="tf32")
        assert algo.choose(g, "backward_data", math="3xtf32") == algo.Choice("halo", math="3xtf32")
        with algo.override("halowg"):
            assert algo.choose(g, "forward", math="tf32") == algo.Choice("halowg", math="tf32")
            assert algo.choose(g, "forward", math="tf32", cc=80) == algo.Choice("halo", math="tf32")
    finally:
        algo._choose.cache_clear()


def test_forced_halo_runs_only_where_it_can():
    """GPUCNN_CONV_ALGO=halo forces the family where it runs (cifar-stem's 3 channels too, its
    backward-data as well) and leaves the heuristic's choice elsewhere (fp32, a 5x5 filter, the
    filter gradient)."""
    stem = _conv_geometry((128, 3, 32, 32), (64, 3, 3, 3), 1, 1, 1, 1)
    five = _conv_geometry((64, 32, 16, 16), (64, 32, 5, 5), 1, 2, 1, 1)
    with algo.override("halo"):
        assert algo.choose(stem, "forward", math="tf32") == algo.Choice("halo", math="tf32")
        assert algo.choose(stem, "forward", math="fp32").family != "halo"
        assert algo.choose(five, "forward", math="tf32").family != "halo"
        assert algo.choose(stem, "backward_data", math="tf32") == algo.Choice("halo", math="tf32")
        assert algo.choose(stem, "backward_filter", math="tf32").family != "halo"


@needs_emulator
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", MODES)
def test_conv2d_halo_input_off_its_16_byte_alignment(mode, family):
    """x a contiguous view one float past a 16-byte boundary (its rows' 16-byte groups are not
    aligned; shuffled, with the misalignment check, which keeps the first pointer's offset): the
    kernel copies each group as four 4-byte copies, with the same zero fill; y as from an
    aligned x, within the mode's bound (a copy of three words fails it: tried)."""
    kw = dict(padding=1)
    x, w, b, _ = conv_args((2, 12, 9, 12), (70, 12, 3, 3), kw)

    def fn(x, w, b):
        buf = np.empty(x.size + 1, x.dtype)
        view = buf[1:].reshape(x.shape)
        view[...] = x
        return (gpucnn.conv2d(view, w, b, **kw),)
    with algo.override(family), _on_family_cc(family):
        run_and_check(fn, (x, w, b), mode, "shuf")  # misalign: x keeps its offset
