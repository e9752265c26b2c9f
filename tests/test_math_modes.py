"""Every convolution and linear case of test_conv.py, test_conv_kernels.py and
test_linear_kernels.py in the math modes "fp32" and "tf32" on the emulator,
in both resume orders ("3xtf32", the emulator's default on its compute
capability 8.0, runs in those files themselves), plus edge cases of the
tensor-core tiles in every mode and both tiles; and the math-mode API.

Tolerances. "fp32" and "3xtf32": the float32 tolerance of conftest.TOL.
"tf32": each element of every output is a sum y = sum_i a_i b_i over n terms
(the bias counts as one), checked against the float64 reference with

    |y_tf32 - y| <= ((1 + u)^2 (1 + g_n) - 1) * sum_i |a_i| |b_i|,
    u = 2^-11,   g_n = n v / (1 - n v),   v = 2^-23,

because each operand is rounded to TF32 (10 explicit mantissa bits, round to
nearest: relative error <= u = 2^-11), the tensor core forms each product of
two TF32 values exactly (22 significant bits fit in fp32), and the products
are added in fp32 in some order: any summation tree of n terms is within
g_n sum |terms| of the exact sum (Higham, Accuracy and Stability, 4.2), with
v = 2^-23 covering an accumulator that truncates instead of rounding. The
magnitudes sum |a_i| |b_i| are the same op on |inputs| in float64 (every op
here is bilinear), and n is bounded by the largest tensor of the case (every
reduction length is at most one of them).
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from conftest import TOL
from test_conv import TRANSPOSE, conv_cases
from test_conv_kernels import CASES as CONV_KERNEL_CASES
from test_linear_kernels import CASES as LINEAR_CASES

import gpucnn
from gpucnn import backend
from gpucnn.cuda import algo, conv, fold, tc
from gpucnn.cuda.launch import small_grid

U_TF32, U_ACC = 2.0**-11, 2.0**-23
ORDERS = {"fwd": ("forward", "end", False), "rev": ("reverse", "start", True)}
# "shuf" (test_conv2d_fold only): threads resumed shuffled on a grid of 2, with the race,
# misalignment and sanitizer checks (conftest's emu-shuf)
SHUFFLED, SHUFFLED_CHECKS = ("shuffle", "end", True), dict(seed=9, race_check=True, misalign=True, sanitize=True)

pytestmark = pytest.mark.skipif(not backend.available("emulator")[0], reason="emulator unavailable")


def tf32_factor(n: int) -> float:
    g = n * U_ACC / (1 - n * U_ACC)
    return (1 + U_TF32) ** 2 * (1 + g) - 1


def on_tile_cc(tile):
    """The warpgroup tiles' emulated compute capability, 9.0 (their kernels are built for sm_90a
    there only: tc.wg_built); the caller's for any other tile."""
    if tile not in tc.WG_TILES:
        return contextlib.nullcontext()
    from gpucnn.runtime.emulator import emulation
    return emulation(compute_capability=90)


@contextlib.contextmanager
def emulated(mode, order, tile=None):
    from gpucnn.runtime.emulator import emulation
    resume, guard, shrink = ORDERS.get(order, SHUFFLED)
    checks = {} if order in ORDERS else SHUFFLED_CHECKS
    with gpucnn.use_backend("emulator"), emulation(resume_order=resume, guard=guard, **checks), \
            on_tile_cc(tile), gpucnn.math_mode(mode):
        with small_grid(2) if shrink else contextlib.nullcontext(), tc.force_tile(tile):
            yield


def run_and_check(fn, args, mode, order, tile=None):
    """fn(*args) -> tuple of arrays, in float32 on the emulator in ``mode``
    against fn in float64 on NumPy, with the mode's tolerance."""
    args32 = [a.astype(np.float32) for a in args]
    with gpucnn.use_backend("numpy"):
        want = fn(*(a.astype(np.float64) for a in args32))
        mag = fn(*(np.abs(a.astype(np.float64)) for a in args32))
    with emulated(mode, order, tile):
        got = fn(*args32)
    n = max(a.size for a in (*args32, *want)) + 1
    for i, (g, w, m) in enumerate(zip(got, want, mag)):
        assert g.dtype == np.float32 and g.shape == w.shape, (i, g.dtype, g.shape, w.shape)
        err = np.abs(g.astype(np.float64) - w)
        if mode == "tf32":
            bound = tf32_factor(n) * m
            worst = int(np.argmax(err - bound))
            assert (err <= bound).all(), f"output {i}: error {err.flat[worst]:.3g} > bound {bound.flat[worst]:.3g}"
        else:
            t, scale = TOL[np.float32], float(np.abs(w).max(initial=0.0))
            assert err.max(initial=0.0) <= t["atol"] + t["rtol"] * scale, f"output {i}: error {err.max():.3g}"


def conv_fn(stride, padding, dilation, groups):
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def fn(x, w, b, dy):
        return (gpucnn.conv2d(x, w, b, **kw), *gpucnn.conv2d_backward(dy, x, w, **kw))
    return fn


def conv_args(xs, ws, fn_kw, seed=0):
    rng = np.random.default_rng([seed, *xs, *ws])
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    with gpucnn.use_backend("numpy"):
        y = gpucnn.conv2d(x, w, b, **fn_kw)
    return x, w, b, rng.standard_normal(y.shape)


def _conv_params():
    out = []
    for p in conv_cases():
        case, _ = p.values
        out.append(pytest.param(case["shape"], case["w"], case["stride"], case["padding"], case["dilation"],
                                case["groups"], id=p.id))
    out += [pytest.param(*c[1:], id=c[0]) for c in CONV_KERNEL_CASES]
    return out


MODE_ORDERS = [pytest.param(m, o, id=f"{m}-{o}") for m in ("fp32", "tf32") for o in ORDERS]


@pytest.mark.parametrize("mode,order", MODE_ORDERS)
@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", _conv_params())
def test_conv2d(mode, order, xs, ws, stride, padding, dilation, groups):
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    run_and_check(conv_fn(**kw), conv_args(xs, ws, kw), mode, order)


@pytest.mark.parametrize("mode,order", MODE_ORDERS)
@pytest.mark.parametrize("xs,ws,stride,padding,opad,groups,dilation,tags", TRANSPOSE)
def test_conv_transpose2d(mode, order, xs, ws, stride, padding, opad, groups, dilation, tags):
    args = (stride, padding, opad, groups, dilation)
    rng = np.random.default_rng([*xs, *ws])
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[1] * groups)
    with gpucnn.use_backend("numpy"):
        dy = rng.standard_normal(gpucnn.conv_transpose2d(x, w, b, *args).shape)

    def fn(x, w, b, dy):
        return (gpucnn.conv_transpose2d(x, w, b, *args), *gpucnn.conv_transpose2d_backward(dy, x, w, *args))
    run_and_check(fn, (x, w, b, dy), mode, order)


def linear_fn(x, w, b, dy):
    return (gpucnn.linear(x, w, b), *gpucnn.linear_backward(dy, x, w))


def linear_args(xs, out, seed=0):
    rng = np.random.default_rng([seed, *xs, out])
    return (rng.standard_normal(xs), rng.standard_normal((out, xs[-1])), rng.standard_normal(out),
            rng.standard_normal((*xs[:-1], out)))


@pytest.mark.parametrize("mode,order", MODE_ORDERS)
@pytest.mark.parametrize("xs,out", [c[1:] for c in LINEAR_CASES], ids=[c[0] for c in LINEAR_CASES])
def test_linear(mode, order, xs, out):
    run_and_check(linear_fn, linear_args(xs, out), mode, order)


# Edges of the tensor-core tiles (128 or 64 square, k-step 32, 3 stages).
TC_CONV = [  # id: x, w, stride, padding, dilation, groups
    # 130 filters and 33*9 = 297 reduction indices (10 steps, past every stage
    # more than once), 2*13*11 = 286 pixels: every GEMM dimension crosses both tiles
    ("across_tiles", (2, 33, 13, 11), (130, 33, 3, 3), 1, 1, 1, 1),
    ("k_below_step", (2, 5, 6, 7), (3, 5, 1, 1), 1, 0, 1, 1),  # K = 5 < 32
    # filter rows of 8*2*2 = 32 taps: 16-byte runs (aligned where the emulator's
    # guard side leaves the buffer aligned, 4-byte copies otherwise)
    ("runs", (2, 8, 10, 9), (12, 8, 2, 2), 1, 1, 1, 1),
    ("groups_dilation_asym_stride", (2, 6, 12, 11), (9, 2, 3, 2), (3, 2), (2, 0, 1, 3), (2, 1), 3),
    # stride 2 with 40 channels: backward-data on conv2d_phase.cu's tiles (40 rows across the
    # 32-row tile, 2*10*9 = 180 pixels a phase across 128 columns, phases of 4, 2, 2 and 1 taps)
    ("stride2_phases", (2, 40, 19, 18), (70, 40, 3, 3), 2, 1, 1, 1),
    # the filter gradient's k-table (FilterOp::ktab's filter_miss, built by the warps in turn): 2*12*11 =
    # 264 pixels, 9 steps, so every warp of the 128 tile's 8 builds one; dilation (2, 3) with padding
    # (5, 2, 4, 6) wider than the dilated taps reach, so rows and columns of windows miss every tap
    # (the first tap inside past the filter) and others miss taps at both ends
    ("filter_ktab_dilated", (2, 3, 9, 10), (12, 3, 3, 4), 1, (5, 2, 4, 6), (2, 3), 1),
]
TC_LINEAR = [("across_tiles", (130, 200), 129), ("k_below_step", (3, 5), 2), ("many_stages", (2, 1000), 3)]
MODES = ("fp32", "tf32", "3xtf32")
# the warpgroup tiles (tc.WG_TILES) run shuffled too, with the emulator's race checks (their second
# barrier, between the stage's rounding and the wgmma that read it)
TILE_MODES = [pytest.param(m, t, o, id=f"{m}-{t}-{o}") for m in MODES[1:] for t in tc.TC_TILES for o in ORDERS
              if t not in tc.WG_TILES]
TILE_MODES += [pytest.param(m, t, o, id=f"{m}-{t}-{o}") for m in MODES[1:] for t in tc.WG_TILES
               for o in (*ORDERS, "shuf")]
# linear has no 32-row, wide or warpgroup tile (tc.NARROW): forcing them would run the 64 one again
LINEAR_TILE_MODES = [p for p in TILE_MODES if p.values[1] not in tc.CONV_TILES]


@pytest.mark.parametrize("mode,tile,order", TILE_MODES)
@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", [c[1:] for c in TC_CONV],
                         ids=[c[0] for c in TC_CONV])
def test_conv2d_tc_tiles(mode, tile, order, xs, ws, stride, padding, dilation, groups):
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    run_and_check(conv_fn(**kw), conv_args(xs, ws, kw), mode, order, tile)


# bench/ab_conv.py's "fewer blocks" build (gpucnn.bench.variants.CONV, loader.BUILD): TF32's wide
# tile with 3 pipeline stages (tc_gemm.cuh's TcWide under GPUCNN_TC64W_STAGES; as built it has 2,
# which test_conv2d_tc_tiles runs), its launches asking for their shared memory (tc.build_smem), and
# the stage a step's fetch fills the one the step before computed from: every pass on it, in both
# modes (3xTF32's TcWide3 has 3 stages either way), forward and shuffled with the race checks, on
# the cases that run many steps (across_tiles: 10; stride2_phases: the phase kernel) or gather with
# tables.
@pytest.mark.parametrize("mode", MODES[1:])
@pytest.mark.parametrize("order", ["fwd", "shuf"])
@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups",
                         [c[1:] for c in TC_CONV if c[0] in ("across_tiles", "stride2_phases", "filter_ktab_dilated")],
                         ids=["across_tiles", "stride2_phases", "filter_ktab_dilated"])
def test_conv2d_wide_tile_of_the_ab_build(mode, order, xs, ws, stride, padding, dilation, groups):
    from gpucnn.bench import variants
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    with variants.switches(variants.CONV["fewer blocks an SM"]):
        run_and_check(conv_fn(**kw), conv_args(xs, ws, kw), mode, order, tc.WIDE)


# TF32 operands rounded to nearest, not truncated, on every tensor-core tile (the mma.sync tiles
# round fragments, tc_split; the warpgroup tiles the stage in shared memory, tc_round_words): x = w
# = dy = 1 + 7 * 2^-13 lie 7/8 of a TF32 ulp (2^-10) above 1, so round to nearest makes them
# 1 + 2^-10 and truncation (an operand reaching the tensor core unrounded loses its 13 low bits) 1.
# Every reduction of the three passes has 8 terms of (1 + 2^-10)^2 = 1 + 2^-9 + 2^-20, whose
# partial sums are exact in fp32, so each output is exactly 8 (1 + 2^-10)^2, against 8 truncated
# (the tolerance of run_and_check cannot tell them apart on random data: it bounds the error of
# both operands rounded, and one operand truncated passes it).
@pytest.mark.parametrize("tile", list(tc.TC_TILES))
def test_tf32_operands_round_to_nearest(tile, monkeypatch):
    v = np.float32(1 + 7 * 2.0**-13)
    x, w = np.full((2, 8, 2, 2), v, np.float32), np.full((8, 8, 1, 1), v, np.float32)
    launched, real = [], conv.launch_gemm
    monkeypatch.setattr(conv, "launch_gemm", lambda rt, fam, plan, *a: (launched.append(plan.name),
                                                                        real(rt, fam, plan, *a)))
    with emulated("tf32", "fwd", tile), algo.override("gemm"):
        y = gpucnn.conv2d(x, w)
        dx, dw = gpucnn.conv2d_backward(x, x, w)[:2]  # dy = x: the same values
    for out in (y, dx, dw):
        np.testing.assert_array_equal(out, np.full_like(out, 8 * (1 + 2.0**-10) ** 2))
    assert sorted(launched) == [f"conv2d_{p}_tf32_{tile}" for p in ("backward_data", "backward_filter", "forward")]


# kernels/conv2d_fold.cu (the fold family: tf32 backward-data of 1 to 4 channels a group), forced,
# with its layout forced too where given (tw dx columns a tile, th rows a segment): 40 filters (two
# k-chunks of 32) of a 7x7 / 2 stem (147 taps: the 24-tile kernel) walked in 3 bands of 11 dy rows
# (tiles of 16 and 13 columns: 11 dy columns a band), then in 3 x 4 tiles and segments (dy columns and rows computed
# twice where they meet, a last segment of 3 rows); one channel with 5 x 20 taps at stride 2 (the
# 16-tile kernel, 10 column taps a pixel) in one task and in tiles of 20; 70 filters (three
# k-chunks) of a 3x3 stride-1 stem in 4 bands of 3 rows; groups with stride (2, 3), dilation (2, 1)
# and padding; stride 3 past 3 x 5 taps (dx rows and columns no tap reaches: zeros, between bands
# too with bands of one row); a 1 x 2 filter at stride 3 (rows without taps); one-pixel-wide images.
FOLD_CASES = [  # id: x, w, stride, padding, dilation, groups, (tw, th) or None
    ("stem_7x7_bands", (2, 3, 50, 29), (40, 3, 7, 7), 2, 3, 1, 1, (16, 50)),
    ("stem_7x7_tiles", (2, 3, 30, 29), (40, 3, 7, 7), 2, 3, 1, 1, (10, 9)),
    ("c1_wide_s2", (2, 1, 13, 60), (12, 1, 5, 20), 2, 0, 1, 1, None),
    ("c1_wide_s2_tiles", (2, 1, 13, 60), (12, 1, 5, 20), 2, 0, 1, 1, (20, 5)),
    ("c3_s1_k70", (1, 3, 12, 40), (70, 3, 3, 3), 1, 1, 1, 1, (40, 12)),
    ("c2_groups3_dil", (1, 6, 13, 10), (27, 2, 5, 4), (2, 3), (1, 2), (2, 1), 3, None),
    ("c4_s3_asym", (1, 4, 7, 11), (9, 4, 3, 5), 3, (0, 2, 1, 3), 1, 1, (4, 2)),
    ("stride_gt_kernel", (1, 1, 8, 9), (10, 1, 1, 2), 3, (0, 1), 1, 1, (9, 8)),
    ("w1_tiny", (1, 2, 3, 1), (9, 2, 2, 1), 1, (1, 0), 1, 1, None),
]
FOLD_ORDERS = [pytest.param(o, id=o) for o in (*ORDERS, "shuf")]


@pytest.mark.parametrize("order", FOLD_ORDERS)
@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups,layout", [c[1:] for c in FOLD_CASES],
                         ids=[c[0] for c in FOLD_CASES])
@pytest.mark.parametrize("cc", [80, 90], ids=["mma", "wgmma"])
def test_conv2d_fold(cc, order, xs, ws, stride, padding, dilation, groups, layout):
    """dx by the fold kernels within the tf32 bound, in both resume orders (reverse on a grid
    of 2 blocks: several tasks a block), and shuffled with the emulator's race, misalignment
    and sanitizer checks on (the barriers between the MMAs, the fold and the stores); on an
    emulated sm_80 (mma.sync) and sm_90 (the wgmma kernels, fold.wgmma_built)."""
    from gpucnn.runtime.emulator import emulation
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    x, w, _, dy = conv_args(xs, ws, kw)
    launched, real = [], fold.launch_tasks

    def fn(x, w, dy):
        return gpucnn.conv2d_backward(dy, x, w, **kw)[:1]
    with pytest.MonkeyPatch.context() as mp, algo.override("fold"), emulation(compute_capability=cc), \
            fold.force_mma(fold.MMAS[fold.wgmma_built(cc)]), \
            fold.force_layout(*layout) if layout else contextlib.nullcontext():
        mp.setattr(fold, "launch_tasks", lambda rt, family, base, *a, **k: (
            launched.append(base), real(rt, family, base, *a, **k)))
        run_and_check(fn, (x, w, dy), "tf32", order)
    taps, mma = ws[1] * ws[2] * ws[3], fold.MMAS[fold.wgmma_built(cc)]
    assert launched == [f"conv2d_fold_backward_data_{mma}_n{next(n for n in fold.TAP_TILES if 8 * n >= taps)}"]


# The tensor-core kernels' padding test by tap masks (kernels/conv.cuh: a tap's row and column bits
# against a window's missed rows and columns; exact for kh + kw <= 31, compares beyond) at its edges,
# in every pass (stride phases included) and math mode ("fp32": the FFMA kernels, always by compares).
TAP_MASKS = [  # id: x, w, stride, padding (top, bottom, left, right), dilation, groups
    ("kh_kw_31", (1, 2, 6, 5), (3, 2, 15, 16), 1, (7, 9, 8, 6), 1, 1),  # the widest masked filter
    ("kh_kw_32", (1, 2, 6, 5), (3, 2, 16, 16), 1, (8, 7, 8, 9), 1, 1),  # the narrowest by compares
    ("kh_kw_32_stride", (1, 2, 9, 8), (2, 2, 16, 16), (2, 3), 8, 1, 1),  # its stride phases too
    ("taps_32", (2, 3, 7, 9), (5, 3, 4, 8), 1, (3, 1, 2, 5), 1, 1),
    ("taps_33", (2, 3, 7, 9), (5, 3, 3, 11), 1, (0, 2, 6, 4), 1, 1),
    # padding wider than the filter: whole windows, and whole stride phases, in the padding only
    ("all_padding_windows", (1, 2, 3, 3), (4, 2, 3, 3), 1, 4, 1, 1),
    ("all_padding_phases", (1, 2, 3, 4), (3, 2, 3, 2), (3, 2), (5, 4, 3, 6), 1, 1),
    ("dilation", (2, 3, 9, 8), (4, 3, 3, 3), 1, (4, 1, 0, 3), (3, 2), 1),
    # dilation a multiple of the stride: each phase holds every tap of an axis (the mask's widest use)
    ("stride_dilation", (2, 4, 11, 10), (6, 2, 5, 3), (2, 3), (3, 1, 0, 2), (2, 3), 2),
    ("stem_7x7", (1, 3, 12, 11), (6, 3, 7, 7), 2, 3, 1, 1),
]
MASK_MODES = [pytest.param(m, o, id=f"{m}-{o}") for m in MODES for o in ORDERS]


@pytest.mark.parametrize("mode,order", MASK_MODES)
@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", [c[1:] for c in TAP_MASKS],
                         ids=[c[0] for c in TAP_MASKS])
def test_conv2d_tap_masks(mode, order, xs, ws, stride, padding, dilation, groups):
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    run_and_check(conv_fn(**kw), conv_args(xs, ws, kw), mode, order)


@pytest.mark.parametrize("mode,tile,order", LINEAR_TILE_MODES)
@pytest.mark.parametrize("xs,out", [c[1:] for c in TC_LINEAR], ids=[c[0] for c in TC_LINEAR])
def test_linear_tc_tiles(mode, tile, order, xs, out):
    run_and_check(linear_fn, linear_args(xs, out), mode, order, tile)


@pytest.mark.parametrize("mode", MODES)
def test_results_are_bitwise_repeatable(mode):
    args = [a.astype(np.float32) for a in linear_args((300, 70), 66, seed=3)]
    with emulated(mode, "fwd"):
        first, second = linear_fn(*args), linear_fn(*args)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_modes_give_different_bits_and_tf32_is_coarser():
    """The modes really run different kernels: tf32 differs from the float64
    answer by far more than fp32 and 3xtf32 do."""
    args = [a.astype(np.float32) for a in linear_args((64, 300), 40, seed=4)]
    with gpucnn.use_backend("numpy"):
        want = gpucnn.linear(*(a.astype(np.float64) for a in args[:3]))
    err = {}
    for mode in MODES:
        with emulated(mode, "fwd"):
            err[mode] = float(np.abs(gpucnn.linear(*args[:3]) - want).max())
    assert err["tf32"] > 20 * max(err["fp32"], err["3xtf32"]), err


def test_math_mode_api():
    assert gpucnn.get_math_mode() is None
    with gpucnn.math_mode("tf32"):
        assert gpucnn.get_math_mode() == "tf32"
        with gpucnn.math_mode(None):
            assert gpucnn.get_math_mode() is None
        assert gpucnn.get_math_mode() == "tf32"
    assert gpucnn.get_math_mode() is None
    with pytest.raises(ValueError, match="math mode must be one of"):
        gpucnn.set_math_mode("fp16")
    with pytest.raises(ValueError, match="math mode must be one of"):
        with gpucnn.math_mode("TF32"):
            pass


def test_default_mode_follows_compute_capability():
    from gpucnn.mathmode import effective
    from gpucnn.runtime import runtime_for
    from gpucnn.runtime.emulator import emulation
    assert effective(80) == "3xtf32" and effective(90) == "3xtf32" and effective(75) == "fp32"
    with gpucnn.math_mode("tf32"):
        assert effective(75) == "fp32"  # no TF32 tensor cores before sm_80
    rt = runtime_for("emulator")
    with emulation(compute_capability=75):
        assert tc.plan(rt, "linear_forward", np.float32, 100, 100, 1).name == "linear_forward_f32"
    assert tc.plan(rt, "linear_forward", np.float32, 100, 100, 1).name == "linear_forward_3xtf32_64"
    assert tc.plan(rt, "linear_forward", np.float64, 100, 100, 1).name == "linear_forward_f64"


@pytest.mark.parametrize("M,N,batches,sms,cc,edge", [
    (128, 128, 1, 132, 90, 64), (4096, 4096, 1, 132, 90, 128), (2816, 1536, 1, 132, 90, 128),
    (1408, 1536, 1, 132, 90, 64),  # 132 tiles of 128: one an SM, under the two tc_config asks
    (1408, 1408, 1, 132, 90, 64), (65, 65, 264, 132, 90, 128), (65, 65, 263, 132, 90, 64),
    (512, 4608, 1, 132, 90, 64),  # resnet-7x7x512's filter gradient: 144 tiles of 128
    (100, 50000, 1, 108, 80, 128), (65, 65, 2, 1, 80, 128), (65, 65, 1, 1, 80, 64),
    (64, 131072, 1, 132, 90, 64), (131072, 64, 1, 132, 90, 64),  # a side of 64: half of each 128 tile empty
    (4096, 4096, 1, 84, 86, 64), (4096, 4096, 1, 128, 89, 64),  # 99 KiB per block: the 104 KiB tile cannot run
])
def test_tc_config_table(M, N, batches, sms, cc, edge):
    assert tc.tc_config(M, N, batches, sms, cc) == edge
    # the 32-row tile takes only GEMMs of over 64 columns, the wide one only in tf32 (and in 3xtf32 on
    # sm_90, where it may replace the 64 tile: test_tc_config_narrow)
    got = tc.tc_config(M, N, batches, sms, cc, narrow=True, mode="3xtf32")
    assert got == edge or M <= 32 < 64 < N or (cc == 90 and edge == 64 < N and got == tc.WIDE)
    if N <= 64:
        assert tc.tc_config(M, N, batches, sms, cc, narrow=True) == edge


@pytest.mark.parametrize("M,N,narrow,mode,edge", [
    (32, 65, True, "tf32", 32), (32, 64, True, "tf32", 64), (1, 100000, True, "3xtf32", 32),
    (32, 431000, False, "tf32", 64),  # a kernel without the 32-row tile (linear)
    # 64 rows: the wide tile in tf32 where it counts at most 0.85 of the 64 tile: 1024 wide tiles in
    # 3 waves of 396 x 3 x 8192 x 0.69 against 2048 in 6 of 396 x 3 x 4096 (0.69)
    (64, 131072, True, "tf32", "64w"), (64, 131072, False, "tf32", 64),
    # in 3xtf32 on sm_90 counted at WIDE3_ISSUE: 4 waves of 264 x 2 x 8192 x 0.85 against 6 of 396 x 3 x
    # 4096 (0.76; cifar-resnet's forward); resnet-3x3's, 2 waves of each, 1.13
    (64, 131072, True, "3xtf32", "64w"), (64, 50176, True, "3xtf32", 64),
    (33, 100000, True, "tf32", "64w"),  # 2 waves x 3 x 8192 x 0.69 against 4 x 3 x 4096 (0.69)
    (64, 50176, True, "tf32", "64w"),  # resnet-3x3 forward: 392 wide tiles in 0.99 of a wave, 0.57
    (64, 147, True, "tf32", 64),  # resnet-stem's filter gradient: 147 columns fill 2 wide tiles 57%: 0.92
    (64, 65, True, "tf32", "64w"),  # one tile of each below a wave: 8192 x 0.69 against 2 x 4096
    # over 64 rows and columns a convolution in tf32 takes the 128 tile below two waves too (the
    # H200's timings, tc_config): cifar-resnet-s2's forward, 128 tiles of 128 for 132 SMs, and
    # resnet-7x7x512's, 28 (split); in 3xtf32 and without the wide tile (linear), the 64 tile there
    (256, 8192, True, "tf32", 128), (256, 8192, True, "3xtf32", "64w"), (256, 8192, False, "tf32", 64),
    (512, 784, True, "tf32", 128), (512, 784, False, "tf32", 64),
    (256, 50176, True, "tf32", 128),  # 392 tiles of 128 fill the SMs twice: 128 first
    (131072, 64, True, "tf32", 64),  # 64 columns: half of each wide tile empty
])
def test_tc_config_narrow(M, N, narrow, mode, edge):
    assert tc.tc_config(M, N, 1, 132, 90, narrow, mode) == edge


# With the warpgroup tiles built (sm_90a, tc.wg_built), the 128 tile's shape runs on wgmma in
# 3xtf32 only, and the wide tile stays on mma.sync ("64w"): the H200's timings
# (bench/results/gpu-2026-11-30 and -s20, tc's comment) put wgmma's wide tile behind mma.sync's.
@pytest.mark.parametrize("M,N,mode,edge", [
    (4096, 4096, "tf32", 128), (256, 50176, "tf32", 128), (4096, 4096, "3xtf32", "128g"),
    (64, 131072, "tf32", "64w"), (256, 8192, "tf32", 128), (512, 784, "tf32", 128),
    (64, 50176, "tf32", "64w"),  # resnet-3x3's forward: 392 wide tiles at 3 an SM, 0.57
    (64, 50176, "3xtf32", 64),  # resnet-3x3's forward: the wide tile at 1.13 of the 64 tile's count
    (128, 128, "tf32", 128),  # over 64 rows and columns in tf32: the 128 tile, below a wave too
    (32, 65, "tf32", 32), (131072, 64, "tf32", 64), (131072, 64, "3xtf32", 64),
])
def test_tc_config_warpgroup(M, N, mode, edge):
    assert tc.tc_config(M, N, 1, 132, 90, narrow=True, mode=mode, wg=True) == edge
    # the mma.sync tile of the same shape where they are not built; never for kernels without them (linear)
    no_wg = tc.tc_config(M, N, 1, 132, 90, narrow=True, mode=mode)
    assert no_wg == tc.WG_TILES.get(edge, edge)
    assert tc.tc_config(M, N, 1, 132, 90, narrow=False, mode=mode, wg=True) not in tc.WG_TILES


def test_warpgroup_tiles_only_where_built():
    """sm_90a's build only (the loader's, on compute capability 9.0); a forced warpgroup tile runs
    its mma.sync shape elsewhere and for kernels without it."""
    from gpucnn.runtime import runtime_for
    from gpucnn.runtime.emulator import emulation
    assert tc.wg_built(90) and not tc.wg_built(80) and not tc.wg_built(100)
    rt = runtime_for("emulator")
    for cc, mode, want in [(90, "tf32", "conv2d_forward_tf32_128g"), (80, "tf32", "conv2d_forward_tf32_128"),
                           (90, "3xtf32", "conv2d_forward_3xtf32_128g")]:
        with gpucnn.math_mode(mode), tc.force_tile("128g"), emulation(compute_capability=cc):
            assert tc.plan(rt, "conv2d_forward", np.float32, 900, 900, 1).name == want
            assert tc.plan(rt, "linear_forward", np.float32, 900, 900, 1).name == f"linear_forward_{mode}_128"
    with gpucnn.math_mode("tf32"), tc.force_tile("64g"), emulation(compute_capability=90):
        p = tc.plan(rt, "conv2d_backward_data_phase", np.float32, 64, 900, 1)
    assert (p.name, p.bm, p.bn, p.threads, p.smem) == ("conv2d_backward_data_phase_tf32_64g", 64, 128, 128,
                                                       tc.smem_bytes("64w", "tf32", 3) + 1024)


def test_forced_narrow_tile_falls_back_where_absent():
    from gpucnn.runtime import runtime_for
    rt = runtime_for("emulator")
    with gpucnn.math_mode("tf32"), tc.force_tile(32):
        assert tc.plan(rt, "linear_forward", np.float32, 9, 900, 1).name == "linear_forward_tf32_64"
        p = tc.plan(rt, "conv2d_forward", np.float32, 9, 900, 1)
    assert (p.name, p.bm, p.bn, p.threads, p.smem) == ("conv2d_forward_tf32_32", 32, 128, 128, tc.smem_bytes(32))


def test_tc_variants_are_the_kernels_plan_names():
    from gpucnn.runtime import runtime_for
    rt = runtime_for("emulator")
    from gpucnn.runtime.emulator import emulation
    names = set(tc.variants("conv2d_forward"))
    assert len(names) == 2 * len(tc.TC_TILES) and len(tc.variants("linear_forward")) == 4
    for mode in MODES[1:]:
        for edge in tc.TC_TILES:
            for cc in (80, 90):  # the warpgroup tiles are built on 9.0 only
                with gpucnn.math_mode(mode), tc.force_tile(edge), emulation(compute_capability=cc):
                    assert tc.plan(rt, "conv2d_forward", np.float32, 9, 9, 1).name in names
