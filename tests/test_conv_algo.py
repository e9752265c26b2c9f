"""The per-shape algorithm choice (gpucnn.cuda.algo) as a table, and every
algorithm it can choose (direct, stride-phase GEMM, split GEMMs) forced on the
boundary cases of tests/test_conv_kernels.py, against the float64 reference
on every backend and against PyTorch.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from test_conv_kernels import CASE_IDS, CASES, _data, close

import gpucnn
from gpucnn.bench.cases import CONV
from gpucnn.cuda import algo, tc
from gpucnn.cuda import conv as cuda_conv
from gpucnn.functional.conv import _conv_geometry
from gpucnn.runtime.emulator import emulation

pytestmark = pytest.mark.family("conv")


def _geometry(case):
    return _conv_geometry((case.N, case.C, case.H, case.W), (case.K, case.C // case.groups, case.R, case.S),
                          case.stride, case.pad, case.dilation, case.groups)


# bench case -> (family, splits) for forward, backward-data, backward-filter on 132 SMs.
# Splits minimise waves x (k-steps per part + 2) over 396 GEMM slots for the forward
# and backward-data (the wide tile's 3 blocks per SM, gemm.cuh's GemmBlocksAB), 264
# for the filter gradient (2 per SM), 528 for the 32-row tile (4 per SM), or 1056
# direct slots (8 per SM); e.g. resnet-7x7x512 forward: 104 tiles of 288 steps, 11
# parts = 1144 blocks = 3 waves of 27 + 2 steps (5 parts: 2 waves of 58 + 2). GEMMs of at most 32 rows take the 32 x 64 tile (mnist-1 and
# deepspeech forward, mnist-2 backward-data: 196 tiles of 100 steps, 5 parts =
# 980 blocks in 2 waves of 20 + 2 steps). Filter gradients go direct where a
# GEMM would fill under 15% of its tiles (depthwise: 1 x 9 taps a group;
# mnist-1's 32 x 25 taps fill 39% of a 32 x 64 tile: 3136 steps in 392 parts
# of 8 over 528 slots; deepspeech 32 x 100 fill 78%), and run transposed where that
# fills their tiles twice as well (cifar-stem: 64 filters x 27 taps fill 42% of
# a 64 x 64 tile, 84% of the 32 x 64 tile as 27 x 64: 8192 steps in 512 parts
# of 16 over 528 slots).
# Backward-data of one channel goes to the dy-window kernel where a stride
# phase keeps at least 5 taps of a filter row and its grid keeps 256 busy
# lanes an SM (deepspeech: 10 taps, 1150 lanes; mnist-1's 34 lanes an SM do
# not); of 1 to 4 channels a group and more than 8 filters to the strip
# kernel (cifar-stem, resnet-stem: 3 channels, 64 filters; mnist-1: 1, 32),
# and so does depthwise (a filter and a channel a group: the H200 timed strip
# at 0.84 of direct); other small groups stay direct. The 3x3 filters at stride
# and dilation 1 with 16 channels and filters or more go to the Winograd kernels
# forward and backward-data (float32 in "fp32", choose's default: tests/test_wino.py).
TABLE = {
    "mnist-1": (("gemm", 1), ("strip", 1), ("gemm", 392)),
    "mnist-2": (("gemm", 2), ("gemm", 5), ("gemm", 20)),
    "cifar-stem": (("gemm", 1), ("strip", 1), ("gemm", 512)),
    "cifar-resnet": (("wino", 1), ("wino", 1), ("gemm", 29)),
    "cifar-resnet-s2": (("gemm", 1), ("phase", 1), ("gemm", 11)),
    "resnet-stem": (("gemm", 1), ("strip", 1), ("gemm", 88)),
    "resnet-3x3": (("wino", 1), ("wino", 1), ("gemm", 29)),
    "resnet-1x1": (("gemm", 1), ("gemm", 1), ("gemm", 66)),
    "resnet-7x7x512": (("wino", 1), ("wino", 1), ("gemm", 5)),
    "vgg": (("wino", 1), ("wino", 1), ("gemm", 44)),
    "1x1-s2": (("gemm", 1), ("phase", 1), ("gemm", 33)),
    "deepspeech": (("gemm", 1), ("window", 1), ("gemm", 262)),
    "depthwise": (("direct", 1), ("strip", 1), ("direct", 4)),
    "dilated": (("gemm", 1), ("gemm", 1), ("gemm", 29)),
}


@pytest.mark.parametrize("case", CONV, ids=[c.name for c in CONV])
def test_choice_table(case):
    g = _geometry(case)
    got = tuple((c.family, c.splits) for c in (algo.choose(g, p) for p in algo.PASSES))
    assert got == TABLE[case.name]


@pytest.mark.parametrize("case", CONV, ids=[c.name for c in CONV])
@pytest.mark.parametrize("sms", [1, 8, 132, 1000])
def test_parts_cover_the_reduction(case, sms):
    g = _geometry(case)
    for p in algo.PASSES:
        c = algo.choose(g, p, sms=sms)
        red = algo.gemm_shape(g, p)[2] if c.family == "gemm" else algo.direct_filter_units(g)
        if c.splits > 1:
            assert (c.splits - 1) * c.chunk < red <= c.splits * c.chunk, (p, c)
        if c.family == "gemm":
            rows = algo.gemm_shape(g, p)[1 if c.swap else 0]
            assert c.chunk % algo.TILE[2] == 0 and c.tile == algo.ffma_tile(rows)
            assert c.swap == (case.name == "cifar-stem" and p == "backward_filter")


@pytest.mark.parametrize("xs,ws,stride,dilation,groups,ks,units", [
    ((16, 256, 56, 56), (256, 1, 3, 3), 1, 1, 256, 3, 16 * 54 * 14),  # 3x3 without padding: 54 = 13.5 units
    ((1, 4, 20, 13), (8, 1, 5, 5), (2, 1), (3, 1), 4, 5, 1 * 4 * 3),  # across rows anything; Q = 9: 3 units
    ((1, 4, 6, 13), (4, 1, 3, 3), (1, 2), 1, 4, 0, 1 * 4 * 6),         # stride along rows: per tap, pixels
    ((1, 4, 6, 13), (4, 1, 3, 3), 1, (1, 2), 4, 0, 1 * 4 * 9),         # dilation along rows
    ((1, 4, 6, 13), (4, 2, 3, 3), 1, 1, 2, 0, 1 * 4 * 11),             # two channels a group
    ((1, 4, 6, 13), (4, 1, 3, 5), 1, 1, 4, 0, 1 * 4 * 9),              # not square
    ((1, 4, 9, 13), (4, 1, 7, 7), 1, 1, 4, 0, 1 * 3 * 7),              # 7 x 7
])
def test_filter_rows(xs, ws, stride, dilation, groups, ks, units):
    from gpucnn.functional.conv import _conv_geometry
    g = _conv_geometry(xs, ws, stride, 0, dilation, groups)
    assert (algo.filter_rows(g), algo.direct_filter_units(g)) == (ks, units)


@pytest.mark.parametrize("ws,stride,dilation,groups,kw", [
    ((4, 1, 3, 3), 1, 1, 4, 3), ((4, 1, 2, 5), (2, 1), (3, 1), 4, 5),  # across rows anything
    ((4, 2, 3, 3), 1, 1, 2, 3),  # two channels a group: the forward loops over them
    ((4, 1, 3, 3), (1, 2), 1, 4, 0), ((4, 1, 3, 3), 1, (1, 2), 4, 0), ((4, 1, 3, 7), 1, 1, 4, 0),
])
def test_forward_rows(ws, stride, dilation, groups, kw):
    from gpucnn.cuda import depthwise
    from gpucnn.functional.conv import _conv_geometry
    g = _conv_geometry((1, 4, 20, 30), ws, stride, 0, dilation, groups)
    assert algo.forward_rows(g) == kw
    assert depthwise.forward_kernel(g) == (f"depthwise_forward_k{kw}" if kw else "depthwise_forward")


@pytest.mark.parametrize("Kg,taps,want", [
    (64, 27, (27 / 32, True)),               # 3-channel 3x3 stem: 42% of a 64 x 64 tile, 84% of 32 x 64 swapped
    (48, 9, (9 / 32 * 48 / 64, True)),       # 1-channel 3x3: 10.5% plain, 21% swapped
    (80, 32, (80 / 128, True)),              # 31% plain (2 row tiles of 64), 62.5% swapped (2 column tiles)
    (33, 1, (1 / 32 * 33 / 64, True)),       # the smallest of each side that swaps
    (32, 25, (25 / 64, False)),              # both sides fit 32: the orientations fill alike
    (64, 33, (33 / 64, False)),              # 33 taps do not fit the narrow tile's rows
])
def test_filter_orientation(Kg, taps, want):
    use, swap = algo.filter_orientation(Kg, taps)
    assert (round(use, 12), swap) == (round(want[0], 12), want[1])


def test_split_count_follows_the_sm_count():
    g = _geometry(next(c for c in CONV if c.name == "cifar-resnet"))
    # 9 tiles: on one SM (2 slots) 2 parts fill 9 whole waves where 1 part leaves
    # a half-empty fifth; 132 SMs (264 slots) take 29 parts, 261 blocks.
    assert [algo.choose(g, "backward_filter", sms=s).splits for s in (1, 132)] == [2, 29]
    g = _geometry(next(c for c in CONV if c.name == "resnet-7x7x512"))
    with algo.override("gemm"):  # the FFMA GEMM (the heuristic's is Winograd's, unsplit)
        assert [algo.choose(g, "forward", sms=s).splits for s in (8, 132)] == [1, 11]  # 104 tiles fill 16 slots
        assert algo.choose(g, "forward", sms=1000).splits > 11


def test_override(monkeypatch):
    g = _geometry(next(c for c in CONV if c.name == "depthwise"))
    with algo.override("gemm:3"):
        assert [algo.choose(g, p).family for p in algo.PASSES] == ["gemm"] * 3
        assert algo.choose(g, "backward_filter").splits == 3  # forward: 9 taps, one k-step, one part
        assert algo.choose(g, "forward").splits == 1
    g = _geometry(next(c for c in CONV if c.name == "resnet-3x3"))
    with algo.override("gemm32:2"):  # the 32-row tile forced on 64 filters: two row tiles
        assert [algo.choose(g, p).tile for p in algo.PASSES] == [algo.NARROW_TILE] * 3
        assert algo.choose(g, "forward", math="tf32").tile == (64, 128, 32)  # tensor cores keep theirs (wide)
    with algo.override("gemm64"):
        assert algo.choose(_geometry(next(c for c in CONV if c.name == "deepspeech")), "forward").tile == algo.TILE
    g = _geometry(next(c for c in CONV if c.name == "depthwise"))
    with algo.override("window"):  # its bank of 256 x 3 x 12 taps: 36 KiB in float, 72 KiB in double
        assert algo.choose(g, "backward_data").family == "window"
        # in double the bank does not fit: the heuristic's own choice, strip for depthwise
        assert algo.choose(g, "backward_data", np.float64).family == "strip"
        assert algo.choose(g, "forward").family == "direct"
        stem = _geometry(next(c for c in CONV if c.name == "resnet-stem"))  # C = 3: no window kernel
        assert algo.choose(stem, "backward_data").family == "strip"
    with algo.override("strip"):  # resnet-stem's bank of 64 x 7 x 2 x 8 x 3 taps: 42 KiB in float, 84 in double
        assert algo.choose(stem, "backward_data").family == "strip"
        assert algo.choose(stem, "backward_data", np.float64).family == "direct"
        assert algo.choose(g, "backward_data").family == "strip"  # depthwise: one channel a group
        assert [algo.choose(stem, p).family for p in algo.PASSES[::2]] == ["gemm", "gemm"]
        vgg = _geometry(next(c for c in CONV if c.name == "vgg"))  # 64 channels a group: no strip kernel
        assert algo.choose(vgg, "backward_data").family == "wino"  # the heuristic's (fp32: Winograd)
    monkeypatch.setenv(algo.ENV, "phase")
    assert [algo.choose(g, p).family for p in algo.PASSES] == ["direct", "phase", "direct"]
    for bad in ("winograd", "gemm:0", "gemm:x", "gemm16"):
        with pytest.raises(ValueError, match=algo.ENV):
            with algo.override(bad):
                pass
    with pytest.raises(ValueError, match="math mode"):
        algo.choose(g, "forward", math="tf32x")
    with pytest.raises(ValueError, match="pass"):
        algo.choose(g, "sideways")


# both FFMA tiles on every case, split, and the transposed filter gradient
FORCED = ["direct", "phase", "gemm64:3", "gemm32:3", "gemm32t:3", "strip"]
# Boundary cases for every forced algorithm: one image, one channel, stride
# larger than the kernel, asymmetric padding, dilation with stride, groups,
# and tile crossings.
FORCED_CASES = [c for c in CASES if c[0] in ("n1c1k1", "1x1_stride2", "stride_gt_kernel_pad", "dilation3",
                                            "depthwise_x2", "odd_asym_pad", "groups3_odd", "medium")]


# The window kernel's cases (groups of one channel): a tap chunk of 10 wider
# and narrower than the phase's taps, stride phases without taps (stride >
# kernel), dilation along and across the window, padding, W < 4 pixels, rows
# past the last group of 3, and 16-byte dy loads (runs of 16 inside a row).
WINDOW_CASES = [c for c in CASES if c[0] in ("n1c1k1", "depthwise_x2")] + [
    ("wide_s2", (2, 1, 9, 75), (3, 1, 3, 20), 2, 0, 1, 1),
    ("wide_s1_3chunks", (1, 1, 4, 70), (2, 1, 2, 24), 1, (0, 3), 1, 1),
    ("wide_dil_groups", (1, 2, 8, 50), (4, 1, 4, 9), (2, 3), (1, 2), (2, 1), 2),
    ("dil_across_stride", (1, 1, 5, 40), (2, 1, 2, 9), 2, 1, (1, 3), 1),
    ("stride_gt_kernel_tiny", (1, 1, 2, 3), (2, 1, 1, 2), 3, (0, 1), 1, 1),
]


# The strip kernel's cases (1 to 4 channels a group; FORCED_CASES add stride
# (4, 3), dilation 3 and groups of 2 and 3): stems of 3 channels at strides 1
# and 2 (7x7, two phases of 4 and 3 taps), 4 channels at stride 3 with
# asymmetric padding (phases without taps), one channel with dilation along
# the strip (qs = 2), 2 channels a group of 3 groups with strides (2, 3) and
# dilation (2, 1), W of one pixel, and 8 * 22 * 5 strips = 880 threads (four
# blocks: two passes of emu-shuf's grid of 2) with rows wider than a strip of 8.
# Banks of the groups a block meets (algo.strip_bank_groups < G): 40 groups of
# one filter, 12 threads a pair (23 slots, blocks crossing from the first
# image's last groups to the next image's first), two filters a group at
# stride 2, and 16 groups of 2 channels and 10 filters (8 slots).
STRIP_CASES = [
    ("dw_bank_slots", (2, 40, 6, 9), (40, 1, 3, 3), 1, 1, 1, 40),
    ("dw_mult2_s2_slots", (2, 24, 7, 17), (48, 1, 3, 3), 2, 1, 1, 24),
    ("c2_g16_slots", (1, 32, 20, 10), (160, 2, 3, 3), 1, 1, 1, 16),
    ("stem_c3_s1", (2, 3, 9, 11), (12, 3, 3, 3), 1, 1, 1, 1),
    ("stem_c3_7x7_s2", (1, 3, 15, 13), (10, 3, 7, 7), 2, 3, 1, 1),
    ("c4_s3_asym", (1, 4, 7, 11), (9, 4, 3, 5), 3, (0, 2, 1, 3), 1, 1),
    ("c1_dil_along", (2, 1, 5, 12), (10, 1, 2, 3), 1, 1, (1, 2), 1),
    ("c2_groups3_dil", (1, 6, 13, 10), (27, 2, 5, 4), (2, 3), (1, 2), (2, 1), 3),
    ("w1_tiny", (1, 2, 3, 1), (9, 2, 2, 1), 1, (1, 0), 1, 1),
    ("multi_block", (8, 3, 22, 37), (9, 3, 3, 2), 1, (1, 1, 0, 1), 1, 1),
]


# The direct kernels' register rows (depthwise.cu's dw_forward_row and the
# filter gradient's rows kernel: 4 outputs of a row a thread; stride and
# dilation 1 along rows with 3- and 5-wide filters hold a row's inputs in
# registers, the rest load per tap): Q not a multiple of 4, rows narrower
# than a thread's 6 or 8 inputs, padding on one side only, two channels a
# group (per tap), a 7-wide filter at stride 1 (per tap), and two filters a
# channel with stride and dilation across rows only (rows kernels).
DIRECT_ROWS_CASES = [
    ("dw_k5_q13", (1, 4, 6, 13), (4, 1, 5, 5), 1, 2, 1, 4),
    ("dw_k3_narrow", (2, 3, 3, 2), (6, 1, 3, 3), 1, (1, 1, 0, 2), 1, 3),
    ("dw_k3_cg2_right_pad", (1, 4, 5, 11), (6, 2, 3, 3), 1, (0, 1, 0, 3), 1, 2),
    ("dw_k7_s1", (1, 2, 4, 10), (2, 1, 2, 7), 1, (0, 3), 1, 2),
    ("dw_k3_mult2_sh2_dh2", (2, 3, 9, 10), (6, 1, 3, 3), (2, 1), 1, (2, 1), 3),
]

# 70 x 70 channels ("medium") is the GEMM tiles' case; direct, its emulation takes seconds.
FORCED_PAIRS = [pytest.param(c, s, id=f"{c[0]}-{s}") for c in FORCED_CASES for s in FORCED
                if not (s in ("direct", "strip") and c[0] == "medium")]
FORCED_PAIRS += [pytest.param(c, "window", id=f"{c[0]}-window") for c in WINDOW_CASES]
FORCED_PAIRS += [pytest.param(c, "strip", id=f"{c[0]}-strip") for c in STRIP_CASES]
FORCED_PAIRS += [pytest.param(c, s, id=f"{c[0]}-{s}") for c in DIRECT_ROWS_CASES for s in ("direct", "direct:3")]
# The transposed filter gradient where the heuristic takes it: a 3-channel
# stem, 27 taps of 40 filters (a partial column tile), stride 2, padding.
FORCED_PAIRS += [pytest.param(("stem_k40", (3, 3, 11, 9), (40, 3, 3, 3), 2, 1, 1, 1), s, id=f"stem_k40-{s}")
                 for s in ("gemm32t", "gemm32t:5", "gemm32")]
FFMA_SPECS = ("gemm64", "gemm32", "gemm32t")  # they name FFMA tiles: float32 runs them in math mode fp32


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("case,spec", FORCED_PAIRS)
def test_forced_algorithm_matches_reference(backend, case, dtype, spec):
    rng, x, w, b, kw = _data(case, dtype, seed=3)
    mode = "fp32" if spec.partition(":")[0] in FFMA_SPECS else gpucnn.get_math_mode()
    with algo.override(spec), gpucnn.math_mode(mode):
        y = gpucnn.conv2d(x, w, b, **kw)
        dy = rng.standard_normal(y.shape).astype(dtype)
        got = (y, *gpucnn.conv2d_backward(dy, x, w, **kw)[:2])
    with gpucnn.use_backend("numpy"):
        x64, w64, b64, dy64 = (a.astype(np.float64) for a in (x, w, b, dy))
        want = (gpucnn.conv2d(x64, w64, b64, **kw), *gpucnn.conv2d_backward(dy64, x64, w64, **kw)[:2])
    for name, g, wnt in zip(("y", "dx", "dw"), got, want):
        close(g, wnt, dtype, f"{name} {spec}")


M32, T32, W64 = ("_m32_f64", 128), ("_t_m32_f64", 128), ("_f64", 256)  # kernel suffix, block


@pytest.mark.parametrize("spec,filters,channels,kernels", [
    ("gemm32", 24, 9, (M32, M32, M32)), ("gemm64", 24, 9, (W64, W64, W64)), (None, 24, 9, (M32, M32, M32)),
    ("gemm32t", 24, 9, (M32, M32, T32)),  # the other passes keep the heuristic's tile
    (None, 64, 3, (W64, M32, T32)),       # a stem: 18 taps as the narrow tile's rows
])
def test_the_chosen_tile_is_the_one_launched(monkeypatch, spec, filters, channels, kernels):
    """Every pass launches the FFMA tile its Choice names (24 filters, 9
    channels: the 32-row tile by the heuristic), with that tile's block."""
    if not gpucnn.backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    launched, real = [], cuda_conv.launch_gemm
    monkeypatch.setattr(cuda_conv, "launch_gemm", lambda rt, family, plan, *rest: (
        launched.append((plan.name, plan.threads)), real(rt, family, plan, *rest)))
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, channels, 7, 5)), rng.standard_normal((filters, channels, 2, 3))
    with gpucnn.use_backend("emulator"), algo.override(spec):
        gpucnn.conv2d_backward(gpucnn.conv2d(x, w, padding=1), x, w, padding=1)
    passes = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_filter")
    if channels <= algo.SMALL_C:  # backward-data of a stem runs the strip kernel
        passes, kernels = passes[::2], kernels[::2]
    assert launched == [(p + k, threads) for p, (k, threads) in zip(passes, kernels)]


def _launched_backward_data(monkeypatch, module, dy, x, w, **kw) -> list[str]:
    """The kernels ``module`` launches for float64 dx on the emulator, whose
    dx is checked against the reference (skips without the emulator)."""
    if not gpucnn.backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    launched, real = [], module.launch
    monkeypatch.setattr(module, "launch", lambda rt, family, base, dtype, *rest, **opts: (
        launched.append(f"{base}_f64"), real(rt, family, base, dtype, *rest, **opts)))
    with gpucnn.use_backend("emulator"):
        dx = gpucnn.conv2d_backward(dy, x, w, **kw)[0]
    with gpucnn.use_backend("numpy"):
        close(dx, gpucnn.conv2d_backward(dy, x, w, **kw)[0], np.float64, "dx")
    return launched


@pytest.mark.parametrize("C,groups,kw,lanes,kernel", [(1, 1, 5, 0, "depthwise_backward_data_c1_f64"),
                                                       (6, 6, 5, 0, "depthwise_backward_data_c1_f64"),
                                                       (3, 1, 5, 0, "depthwise_backward_data_f64"),
                                                       (1, 1, 10, 0, "depthwise_backward_data_window_f64"),
                                                       (1, 1, 10, None, "depthwise_backward_data_c1_f64"),
                                                       (3, 1, 10, 0, "depthwise_backward_data_f64")])
def test_groups_of_one_channel_take_the_one_channel_kernel(monkeypatch, C, groups, kw, lanes, kernel):
    """The direct backward-data of groups of one channel (C = 1 stems,
    depthwise) launches depthwise.cu's _c1 kernel, or the dy-window kernel
    where a stride phase keeps 5 taps of a row and its grid has the busy lanes
    (``lanes`` an SM asked: 0 here, as these small grids have 8; None, the
    library's WINDOW_MIN_LANES); wider groups the 4-channel one."""
    from gpucnn.cuda import algo_direct, depthwise
    if lanes is not None:
        monkeypatch.setattr(algo_direct, "WINDOW_MIN_LANES", lanes)
    algo._choose.cache_clear()  # the memo holds choices made with the other threshold
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((1, C, 9, 14)), rng.standard_normal((6, C // groups, 3, kw))
    dy = np.ones((1, 6, 4, (14 - kw) // 2 + 1))
    # depthwise (groups = C = K) forced direct: the heuristic gives it the strip kernel
    forced = algo.override("direct") if groups > 1 else contextlib.nullcontext()
    try:
        with forced:
            assert kernel in _launched_backward_data(monkeypatch, depthwise, dy, x, w, stride=2, groups=groups)
    finally:
        monkeypatch.undo()
        algo._choose.cache_clear()


@pytest.mark.parametrize("C,groups,kernel", [(1, 1, "conv2d_strip_backward_data_c1_f64"),
                                             (4, 2, "conv2d_strip_backward_data_c2_f64"),
                                             (3, 1, "conv2d_strip_backward_data_c3_f64"),
                                             (8, 2, "conv2d_strip_backward_data_c4_f64"),
                                             (10, 2, None)])
def test_small_channel_groups_take_the_strip_kernel(monkeypatch, C, groups, kernel):
    """Backward-data of 1 to 4 channels a group and 9 filters a group
    launches the strip kernel of its channel count; 5 channels do not."""
    from gpucnn.cuda import strip
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((2, C, 6, 9)), rng.standard_normal((9 * groups, C // groups, 3, 3))
    dy = rng.standard_normal((2, 9 * groups, 6, 9))
    launched = _launched_backward_data(monkeypatch, strip, dy, x, w, padding=1, groups=groups)
    assert launched == ([kernel] if kernel else [])


@pytest.mark.parametrize("case,want", [("cifar-stem", 4 / 3), ("resnet-stem", 8 / 7), ("depthwise", 4 / 3)])
def test_strip_fill(case, want):
    """The strip kernel's FMAs per useful FMA (the model's waste): 3 taps a
    phase in chunks of 4; 7x7 / 2 has phases of 4 and 3 taps, 112 pixels each."""
    from gpucnn.cuda import strip
    assert strip.fill(_geometry(next(c for c in CONV if c.name == case))) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("spec", ["gemm:3", "gemm32:3", "gemm32t:3", "direct:3"])
def test_split_reductions_are_bitwise_repeatable(backend, spec):
    rng, x, w, b, kw = _data(CASES[CASE_IDS.index("medium" if spec.startswith("gemm") else "odd_asym_pad")],
                             np.float32, seed=4)
    dy = rng.standard_normal(gpucnn.conv2d(x, w, **kw).shape).astype(np.float32)
    mode = "fp32" if spec.partition(":")[0] in FFMA_SPECS else gpucnn.get_math_mode()
    with algo.override(spec), gpucnn.math_mode(mode):
        runs = [(gpucnn.conv2d(x, w, b, **kw), *gpucnn.conv2d_backward(dy, x, w, **kw)) for _ in range(2)]
    for a, c in zip(*runs):
        np.testing.assert_array_equal(a, c)


def test_sm_count_changes_filter_splits_not_results():
    """Filter gradients with the splits of 1 and of 64 emulated SMs both match the reference."""
    if not gpucnn.backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    case = CASES[CASE_IDS.index("medium")]
    rng, x, w, _, kw = _data(case, np.float64, seed=5)
    dy = rng.standard_normal(gpucnn.conv2d(x, w, **kw).shape)
    want = gpucnn.conv2d_backward(dy, x, w, **kw)[1]
    g = _conv_geometry(x.shape, w.shape, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    assert algo.choose(g, "backward_filter", sms=1).splits != algo.choose(g, "backward_filter", sms=64).splits
    for sms in (1, 64):
        with gpucnn.use_backend("emulator"), emulation(sm_count=sms):
            close(gpucnn.conv2d_backward(dy, x, w, **kw)[1], want, np.float64, f"dw on {sms} SMs")


TORCH_CASES = [  # (x shape, w shape, stride, padding, dilation, groups): the families' target shapes, small
    ((2, 8, 9, 11), (8, 1, 3, 3), 1, 1, 1, 8),      # depthwise
    ((1, 6, 7, 6), (12, 2, 3, 2), 2, (1, 0), 1, 3),  # small groups, stride 2
    ((2, 3, 15, 13), (8, 3, 7, 7), 2, 3, 1, 1),      # stem: C = 3, 7x7 / 2
    ((1, 1, 12, 17), (4, 1, 5, 6), 2, 0, 1, 1),      # C = 1, wide kernel, stride 2
    ((2, 5, 10, 9), (7, 5, 3, 3), (2, 3), 1, 2, 1),  # stride phases with dilation
    ((1, 9, 8, 8), (6, 9, 1, 1), 2, 0, 1, 1),        # 1x1 / 2
    ((2, 5, 8, 8), (6, 5, 3, 3), 1, 1, 1, 1),        # 8x8 planes: the GEMM epilogues' vector stores
    ((2, 1, 11, 90), (4, 1, 5, 20), 2, 0, 1, 1),     # deepspeech, small: backward-data by dy windows
]


@pytest.mark.parametrize("spec", [None] + FORCED)
@pytest.mark.parametrize("case", TORCH_CASES, ids=[f"t{i}" for i in range(len(TORCH_CASES))])
def test_against_torch(backend, case, spec):
    torch = pytest.importorskip("torch")
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(list(xs) + list(ws))
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kw)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    with algo.override(spec):
        y = gpucnn.conv2d(x, w, b, **kw)
        dx, dw, db = gpucnn.conv2d_backward(dy, x, w, **kw)
    for got, want in ((y, ty), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-10, atol=1e-12)


# bench case -> its tensor-core GEMM passes on the 32 x 128 tile (tc.tc_config's
# narrow rule: at most 32 rows, more than 64 columns); the others keep 64 or 128.
NARROW_TC = {"mnist-1": {"forward"}, "mnist-2": {"backward_data"},
             "deepspeech": {"forward", "backward_filter"}}


@pytest.mark.parametrize("case", CONV, ids=[c.name for c in CONV])
def test_gemms_of_few_rows_take_the_32_row_tensor_core_tile(case):
    g = _geometry(case)
    for math in ("tf32", "3xtf32"):
        narrow = {p for p in algo.PASSES if algo.choose(g, p, math=math).tile[:2] == (32, 128)}
        assert narrow == NARROW_TC.get(case.name, set()), math
        for p in narrow:
            rows, cols, _ = algo.gemm_shape(g, p)
            assert rows <= 32 < 64 < cols


# bench case -> its passes on the wide 64 x 128 tile in tf32 (tc.tc_config:
# over 32 rows and 64 columns where the 128 tile is not taken, the wide tile
# counted at most 0.85 of the 64 tile); 3xtf32 keeps 64. On sm_90 too: the
# warpgroup tile of that shape ("64g") lost to mma.sync's on an H200
# (bench/results/gpu-2026-11-30), so no pass takes it.
WIDE_TC = {"mnist-2": {"forward", "backward_filter"},
           "cifar-resnet": set(algo.PASSES), "cifar-resnet-s2": set(algo.PASSES),
           "resnet-stem": {"forward"}, "resnet-3x3": {"backward_filter"},
           "resnet-7x7x512": {"forward", "backward_data"}, "vgg": {"backward_data", "backward_filter"},
           "1x1-s2": {"forward", "backward_filter"}, "dilated": {"backward_filter"}}
# On sm_90 TF32's wide tile holds 3 blocks an SM (2 pipeline stages), so it takes the 64-filter
# layers' forward and backward-data where the 64 tile did (resnet-3x3, dilated, resnet-1x1's
# backward-data), and GEMMs of over 64 rows and columns take the 128 tile whatever their grid
# (tc.tc_config; the H200's timings, bench/results/gpu-2026-11-30-s20).
# In 3xtf32 on sm_90 (tc.WIDE3_ISSUE): the 64-filter and stride-2 layers' big passes
WIDE_3X_90 = {"mnist-2": {"forward"}, "cifar-resnet": {"forward", "backward_data"},
              "cifar-resnet-s2": set(algo.PASSES), "resnet-stem": {"forward"}, "vgg": {"backward_data"},
              "1x1-s2": {"forward", "backward_filter"}}
WIDE_TC_90 = {**WIDE_TC, "cifar-resnet-s2": set(), "resnet-3x3": set(algo.PASSES), "resnet-1x1": {"backward_data"},
              "resnet-7x7x512": set(), "vgg": {"backward_data"}, "1x1-s2": set(), "dilated": set(algo.PASSES)}

# bench case -> its passes that run the FFMA tile in 3xtf32 (algo.TC3_OVER_FFMA): the filter
# gradients whose GEMM fills the 64 tensor-core tile at most half as well as the FFMA tile
# (mnist-1: 32 x 25, 0.20 against the 32 x 64 tile's 0.39; cifar-stem: 64 x 27, 0.42 against the
# transposed 32 x 64 tile's 0.84); and cifar-stem's forward, a reduction of one tensor-core k-step
# (27 <= 32) over 5.2 waves of FFMA tiles (algo.ONE_STEP_FFMA_WAVES).
FFMA3 = {"mnist-1": {"backward_filter"}, "cifar-stem": {"backward_filter", "forward"}}


@pytest.mark.parametrize("cc", [80, 90])
@pytest.mark.parametrize("case", CONV, ids=[c.name for c in CONV])
def test_3xtf32_takes_the_ffma_tile_where_it_fills_far_better(case, cc):
    g = _geometry(case)
    choices = {p: algo.choose(g, p, math="3xtf32", cc=cc) for p in algo.PASSES}
    ffma = {p for p, c in choices.items() if c.family == "gemm" and c.math == "fp32"}
    assert ffma == FFMA3.get(case.name, set())
    for p in ffma:  # the fp32 mode's own choice, and a forced tensor-core tile still runs one
        assert choices[p] == algo.choose(g, p, math="fp32", cc=cc)
        with tc.force_tile(64):
            assert algo.choose(g, p, math="3xtf32", cc=cc).math == "3xtf32"


def _gemm_tile_choice(g, pass_, math, cc):
    """The heuristic's choice, or where it takes the halo kernels (session 24: cifar-resnet's,
    resnet-3x3's and vgg's forward; session 25 their warpgroup variant on sm_90; tests/test_halo.py),
    the GEMM tile it would take otherwise."""
    c = algo.choose(g, pass_, math=math, cc=cc)
    if c.family not in algo.HALO_FAMILIES:
        return c
    with algo.override("gemm"):
        return algo.choose(g, pass_, math=math, cc=cc)


@pytest.mark.parametrize("cc", [80, 90])
@pytest.mark.parametrize("case", CONV, ids=[c.name for c in CONV])
def test_wide_tensor_core_tile_in_tf32(case, cc):
    g = _geometry(case)
    choices = {math: {p: _gemm_tile_choice(g, p, math, cc) for p in algo.PASSES} for math in ("tf32", "3xtf32")}
    wide = {math: {p for p, c in by.items() if c.tile[:2] == (64, 128)} for math, by in choices.items()}
    assert wide == {"tf32": (WIDE_TC_90 if cc == 90 else WIDE_TC).get(case.name, set()),
                    "3xtf32": WIDE_3X_90.get(case.name, set()) if cc == 90 else set()}
    for math, passes in wide.items():
        assert {choices[math][p].edge for p in passes} <= {"64w"}
    for p in wide["tf32"] | wide["3xtf32"]:
        rows, cols, _ = algo.gemm_shape(g, p)
        assert rows > 32 and cols > 64


def test_phases_take_tensor_cores_in_the_tensor_core_modes(monkeypatch):
    """Stride phases run the tensor-core tile in "tf32" and "3xtf32" (float32),
    the FFMA tile in "fp32" and float64, and the kernel launched is the one chosen."""
    g = _geometry(next(c for c in CONV if c.name == "cifar-resnet-s2"))
    # its largest phase (4 of 9 taps) alone fills 64 of the 128 tiles (algo._phase): wide in tf32, 64 in
    # 3xtf32; on sm_90 tf32 takes the 128 tile (more than 64 rows and columns, tc.tc_config)
    # (and 3xtf32 the wide tile, tc.WIDE3_ISSUE)
    for math, cc, edge in (("tf32", 80, "64w"), ("3xtf32", 80, 64), ("tf32", 90, 128), ("3xtf32", 90, "64w")):
        c = algo.choose(g, "backward_data", math=math, cc=cc)
        assert (c.family, c.math, c.edge, c.tile) == ("phase", math, edge, tc.TC_TILES[edge][:2] + (32,)), c
    assert algo.choose(g, "backward_data", math="fp32") == algo.Choice("phase", algo.TILE)
    assert algo.choose(g, "backward_data", np.float64, math="tf32") == algo.Choice("phase", algo.TILE)
    if not gpucnn.backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    from gpucnn.cuda import phase
    launched, real = [], phase.launch_gemm
    monkeypatch.setattr(phase, "launch_gemm", lambda rt, family, plan, *rest: (
        launched.append(plan.name), real(rt, family, plan, *rest)))
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((2, 16, 9, 11)).astype(np.float32), rng.standard_normal((12, 16, 3, 3))
    dy = rng.standard_normal((2, 12, 5, 6)).astype(np.float32)
    want = gpucnn.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w, stride=2, padding=1)[0]
    for math, kernel in (("tf32", "conv2d_backward_data_phase_tf32_64"),
                         ("3xtf32", "conv2d_backward_data_phase_3xtf32_64")):
        with gpucnn.use_backend("emulator"), gpucnn.math_mode(math):
            dx = gpucnn.conv2d_backward(dy, x, w.astype(np.float32), stride=2, padding=1)[0]
        assert launched[-1] == kernel
        tol = 2e-3 if math == "tf32" else 1e-5  # tf32: 10-bit operands (test_math_modes bounds each element)
        np.testing.assert_allclose(dx, want, rtol=tol, atol=tol * np.abs(want).max())


# The fold family (kernels/conv2d_fold.cu) takes the tf32 backward-data that
# the window and strip kernels would run in FFMA (stems, deepspeech); the
# other modes and float64 keep them, and the passes they never run keep theirs.
@pytest.mark.parametrize("case", CONV, ids=[c.name for c in CONV])
def test_fold_takes_the_tf32_backward_data_of_few_channels(case):
    g = _geometry(case)
    ffma = algo.choose(g, "backward_data").family
    depthwise = g.groups == g.C == g.K > 1  # strip in every mode: the fold kernel lost 11x there
    one_tap = ffma == "phase" and g.win.kh * g.win.kw == 1  # 1x1-s2: the plain GEMM in tf32 (algo._one_tap_tc)
    # the halo kernels in tf32 and 3xtf32 (tests/test_halo.py): on sm_90, algo.choose's default, their
    # warpgroup variant
    halo = "halowg" if case.name in ("cifar-resnet", "resnet-3x3", "vgg") else None
    gemm = "gemm" if ffma == "wino" else ffma  # a GEMM where fp32 takes Winograd's, without halo (resnet-7x7x512)
    assert algo.choose(g, "backward_data", math="tf32").family == (
        "fold" if ffma in ("window", "strip") and not depthwise else "gemm" if one_tap else halo or gemm)
    assert algo.choose(g, "backward_data", math="3xtf32").family == (halo or gemm)
    assert algo.choose(g, "backward_data", np.float64, math="tf32").family == algo.choose(g, "backward_data",
                                                                                          np.float64).family
    for p in ("forward", "backward_filter"):
        assert algo.choose(g, p, math="tf32").family != "fold"


@pytest.mark.parametrize("case", CONV, ids=[c.name for c in CONV])
@pytest.mark.parametrize("sms", [1, 132])
def test_fold_plan_bounds(case, sms):
    """Every plan the fold kernels get keeps their bounds: at most PIX dy
    pixels a band, THREADS columns a tile, a window of whole bands (a power
    of two), tables as long as the most taps any dx row or column meets
    (counted here by brute force), and its shared memory within sm_90's."""
    from gpucnn.cuda import fold
    g = _geometry(case)
    p = fold.plan(g, sms)
    if p is None:
        assert g.C // g.groups > algo.SMALL_C
        return
    w = g.win
    pt, _, pl, _ = w.pad
    assert p.bp * p.qw <= fold.PIX and p.tw <= fold.MAX_TW and p.smem <= fold.SMEM_LIMIT[90]
    assert p.wr & (p.wr - 1) == 0 and p.wr >= p.bp * w.sh + (w.kh - 1) * w.dh
    assert p.sv >= max(sum((x + pl - s * w.dw) % w.sw == 0 for s in range(w.kw)) for x in range(w.W))
    assert p.rv >= max(sum((y + pt - r * w.dh) % w.sh == 0 for r in range(w.kh)) for y in range(w.H))
    tiles = -(-w.W // p.tw)
    assert max(min(w.Q - 1, (min(w.W, x0 + p.tw) - 1 + pl) // w.sw) - max(0, -(-(x0 + pl - (w.kw - 1) * w.dw) // w.sw)) + 1
               for x0 in range(0, w.W, p.tw)) <= p.qw
    assert p.tasks == g.N * g.groups * tiles * -(-w.H // p.th)


@pytest.mark.parametrize("cc", [80, 87, 90, 100])  # those whose shared memory holds its plan
def test_fold_takes_wgmma_only_where_the_build_has_it(cc):
    """The fold plan may run the wgmma kernels only where the loader builds the
    family for sm_90a (compute capability 9.0), with the 1024 bytes of shared
    memory their alignment may take; forced elsewhere, it keeps mma.sync's."""
    from gpucnn.cuda import fold
    from gpucnn.runtime import loader
    g = _geometry(next(c for c in CONV if c.name == "resnet-stem"))
    with fold.force_mma("wgmma"):
        p = fold.plan(g, 132, cc)
    assert p.wg == (cc == 90) == fold.wgmma_built(cc) == bool(loader.arch_options(fold.FAMILY, cc))
    assert p.kernel == f"conv2d_fold_backward_data_{'wgmma' if p.wg else 'tf32'}_n{p.nt}"
    assert p.smem == fold.smem_bytes(g, p.tw, p.wr, p.sv, p.rv) + fold.WG_ALIGN * p.wg
    with fold.force_mma("tf32"):
        assert not fold.plan(g, 132, cc).wg


# On sm_90 the fold plan weighs both MMA kinds by fold.cost: resnet-stem's
# 19 tap tiles at one block an SM are MMA-bound (wgmma's rate pays); deepspeech's
# 13 at two blocks an SM are bound by the steps' and the fold's instructions,
# which wgmma's rounding of dy in shared memory and its descriptors add to.
@pytest.mark.parametrize("name,wg", [("resnet-stem", True), ("deepspeech", False)])
def test_fold_mma_kind_by_cost(name, wg):
    from gpucnn.cuda import fold
    g = _geometry(next(c for c in CONV if c.name == name))
    assert fold.plan(g, 132, 90).wg == wg


def test_forward_and_backward_data_split_only_where_it_saves_its_own_pass():
    """algo.SPLIT_COST_STEPS: mnist-2's forward in tf32 (25 k-steps a 64 x 128 tile, 98 tiles)
    runs unsplit, as the H200 timed it fastest; resnet-7x7x512's (144 steps a tile) still splits;
    without the charge the same count search would split mnist-2 in 3."""
    by = {c.name: _geometry(c) for c in CONV}
    for cc in (80, 90):
        assert algo.choose(by["mnist-2"], "forward", math="tf32", cc=cc).splits == 1
        assert algo.choose(by["resnet-7x7x512"], "forward", math="tf32", cc=cc).splits > 1
        assert algo.choose(by["resnet-7x7x512"], "backward_data", math="tf32", cc=cc).splits > 1
    assert algo._split(98, 25, 132 * 3, algo.MAX_SPLITS) == 3
    assert algo._split(98, 25, 132 * 3, algo.MAX_SPLITS, algo.SPLIT_COST_STEPS) == 1


@pytest.mark.parametrize("cc", [80, 90])
def test_a_one_step_forward_over_many_waves_runs_ffma_in_every_mode(cc):
    """algo.ONE_STEP_FFMA_WAVES: cifar-stem's forward (27 = 3 x 3 x 3 reduction, one TC_K step)
    takes the fp32 mode's FFMA tile in tf32 and 3xtf32; mnist-1's (25, 1.5 waves) keeps tensor
    cores, as do both under a forced tensor-core tile."""
    by = {c.name: _geometry(c) for c in CONV}
    stem, mnist = by["cifar-stem"], by["mnist-1"]
    assert algo.gemm_shape(stem, "forward")[2] <= tc.TC_K and algo.gemm_shape(mnist, "forward")[2] <= tc.TC_K
    for math in ("tf32", "3xtf32"):
        assert algo.choose(stem, "forward", math=math, cc=cc) == algo.choose(stem, "forward", math="fp32", cc=cc)
        assert algo.choose(mnist, "forward", math=math, cc=cc).math == math
        with tc.force_tile(64):
            assert algo.choose(stem, "forward", math=math, cc=cc).math == math
    assert algo.choose(stem, "backward_data", math="tf32", cc=cc).family == "fold"  # forward only


def test_a_strided_one_tap_backward_data_runs_the_gemm_in_tf32():
    """algo._one_tap_tc: 1x1-s2's backward-data takes the plain GEMM in tf32, the phases in
    3xtf32, fp32 and float64; a strided 3x3 (cifar-resnet-s2) keeps the phases in tf32."""
    by = {c.name: _geometry(c) for c in CONV}
    g = by["1x1-s2"]
    assert algo.choose(g, "backward_data", math="tf32").family == "gemm"
    assert algo.choose(g, "backward_data", math="tf32").math == "tf32"
    for math in ("3xtf32", "fp32"):
        assert algo.choose(g, "backward_data", math=math).family == "phase"
    assert algo.choose(g, "backward_data", np.float64, math="tf32").family == "phase"
    assert algo.choose(by["cifar-resnet-s2"], "backward_data", math="tf32").family == "phase"
