"""Which kernel runs a convolution pass, with which tile and how many splits
(cuDNN's heuristics, Caffe's engine choice): the one place that decides.

``choose(g, pass_, dtype, math, sms)`` is a pure function of the geometry
``g`` (gpucnn.shapes.Conv), the pass ("forward", "backward_data",
"backward_filter"), the dtype, the math mode and the device's SM count.
Kernels never choose; the launch code in gpucnn.cuda.conv asks here.

Families:
  gemm    the implicit GEMM of kernels/conv2d.cu: 64 x 64 x 16 FFMA tiles, or
          32 x 64 x 16 (gemm.cuh's GemmNarrow, 4 blocks of 128 threads per SM,
          3 in float64) where the GEMM has at most 32 rows (filters in the
          forward and filter passes, channels in backward-data): there a
          64-row tile wastes at least half its FMAs, while the narrow one runs
          the same 4 x 4 micro-tile loop at the same occupancy and fetches
          only 1.5x the operands per FMA. Above 32 rows the wide tile stays
          (33 to 64 rows fill both alike). A filter gradient of at most 32
          taps (Cg*kh*kw) and many filters may run transposed (Choice.swap:
          taps as rows, filters as columns) on the narrow tile, which fills
          twice as much of it (filter_orientation: 3-channel stems)
  phase   backward-data only: the stride-decomposed implicit GEMM, one dense
          sub-problem per phase of the input, so no tap meets a structural zero
  direct  kernels/depthwise.cu: a thread per 4 outputs of a row (forward), per
          4 pixels x 4 channels (backward-data; x 1 channel for groups of
          one), or a block per filter and pixel chunk with a fixed tree
          (backward-filter; for 3x3 and 5x5 filters of one channel a group
          at stride and dilation 1 along rows, chunks of 4-output row units
          whose inputs are loaded once a filter row: filter_rows), for groups so
          small that a 64-row tile would be mostly empty (depthwise, small
          groups, backward-data with C <= 4 that the strip kernel does not
          take, filter gradients that would fill under DIRECT_FILTER_USE of
          their GEMM tiles, narrow or wide)
  window  backward-data only: depthwise.cu's dy-window kernel, for groups of
          one channel with wide stride phases (deepspeech): algo_direct
  strip   backward-data only: kernels/conv2d_strip.cu, for groups of 1 to 4
          channels and more than SMALL_GROUP filters (3-channel stems): algo_direct
  fold    backward-data only, float32 in the math mode "tf32": kernels/conv2d_fold.cu
          (gpucnn.cuda.fold) where the window or strip kernel would run FFMA:
          G = dY Fᵀ on tensor cores with the Cg*kh*kw taps as MMA columns, then
          φ⁻¹ in shared memory
  halo    forward and backward-data, float32 in the math modes "tf32" and
          "3xtf32": kernels/conv2d_halo.cu (gpucnn.cuda.halo) for 3x3 filters
          at stride and dilation 1, one group, the input's rows whole 16-byte
          groups (x's W, or dy's Q, a multiple of 4) and at least HALO_MIN_C
          channels reduced (C, or K): the input rows a tile's windows cover
          copied once a step in 16-byte copies and read shifted for each tap,
          where the GEMM tile gathers φ(x) with a 4-byte copy per tap and
          pixel; backward-data as the forward of dy by the filters transposed
          and rotated, at padding 2 - pad
  halowg  the same on sm_90 with wgmma (the halo kernels' warpgroup variant: the
          pixels as the MMA's rows, A from registers; the filters as its
          columns through no-swizzle descriptors): the default where halo
          would be on compute capability 9.0 (HALO_WG)
  wino    forward and backward-data, float32 in the math mode "fp32":
          kernels/conv2d_wino.cu (gpucnn.cuda.wino), Winograd's F(2x2, 3x3) on
          FFMA for the 3x3 filters at stride and dilation 1 of one group that
          the halo family takes in the tensor-core modes, from WINO_MIN_C
          channels reduced and WINO_MIN_K filters (the pass's outputs'
          channels): 16 multiplies per 2x2 outputs a channel where the GEMM
          does 36; backward-data as the forward of dy by the filters
          transposed and rotated, as halo's

A forward or backward-data GEMM whose tile grid is below one wave splits its
reduction into ``splits`` chunks of ``chunk`` indices (a multiple of the
tile's k depth), and a filter gradient always may, the count minimising
waves x work per part on ``sms`` SMs; the parts are added in split order, so
the bits depend on the shapes (and SM count) only. ``math`` is the math mode
(gpucnn.mathmode): in "tf32" and "3xtf32" a float32 GEMM takes the
tensor-core tile that gpucnn.cuda.tc.tc_config picks for the shape and the
compute capability ``cc`` (128 x 128, 64 x 64, 32 x 128 for at most 32
rows, or 64 x 128 in tf32; k depth 32), and its splits are counted on that tile; the phase family takes the tensor-core tile of its
largest phase's GEMM likewise (_phase); the direct, window and strip
families run FFMA in every mode.

``GPUCNN_CONV_ALGO`` (or ``override``) forces a family, and optionally the
split count, for every pass that family can run: ``direct``, ``gemm``,
``gemm:4`` (4 splits), ``phase``, ``window``, ``strip``; ``gemm64`` and ``gemm32`` (``gemm32:4``)
also force the FFMA tile's rows (the tensor-core modes keep their tiles), and
``gemm32t`` the transposed filter gradient on the narrow tile, ``fold`` the
tensor-core fold kernels (float32, rounding to TF32 in every mode), ``halo``
the halo kernels (float32 in "tf32" and "3xtf32"), ``halowg`` their warpgroup variant (sm_90),
``wino`` the Winograd kernels (float32 in "fp32").
Passes the forced family cannot run keep the heuristic's choice.
``autotune`` times the candidates on a pass's first call of a geometry and keeps the fastest
(gpucnn.cuda.autotune).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import os

import numpy as np

from gpucnn.cuda import fold, halo, tc, wino
from gpucnn.cuda.algo_direct import (  # noqa: F401 (algo is where callers ask: re-exported)
    DIRECT_BLOCKS_PER_SM, DIRECT_THREADS, ROW_FILTERS, ROW_OUTPUTS, SMALL_C, SMALL_GROUP, STRIP_PIXELS, STRIP_SMEM,
    STRIP_TAPS, STRIP_THREADS, WINDOW_MIN_TAPS, WINDOW_SMEM, WINDOW_SLOTS, WINDOW_TAPS, axis_phase_taps, cdiv,
    direct_filter_units, filter_rows, forward_rows, phase_tap_grid, phase_taps, strip_bank_bytes, strip_bank_groups,
    strip_ok, strip_pair_threads, strip_period, strip_slots, window_bank_bytes, window_busy_lanes, window_fills,
    window_grid, window_ok, window_periods, window_strip, WINDOW_MIN_LANES, WINDOW_PIXELS, WINDOW_ROWS)

PASSES = ("forward", "backward_data", "backward_filter")
FAMILIES = {"forward": ("gemm", "direct", "halo", "halowg", "wino"),
            "backward_data": ("gemm", "phase", "direct", "window", "strip", "fold", "halo", "halowg", "wino"),
            "backward_filter": ("gemm", "direct")}
MATH_MODES = ("fp32", "tf32", "3xtf32")
TILE = (64, 64, 16)  # gemm.cuh's GemmWide: BM, BN, GEMM_BK (FFMA)
NARROW_TILE = (32, 64, 16)  # GemmNarrow
# (tile rows, element bytes) -> gemm.cuh's GemmBlocks: __launch_bounds__(256, 2), (128, 4), (128, 3);
# conv2d's forward and backward-data on the wide float tile ask for 3 on sm_90 and newer
# (GemmBlocksAB: FFMA_AB_BLOCKS)
GEMM_BLOCKS_PER_SM = {(64, 4): 2, (64, 8): 2, (32, 4): 4, (32, 8): 3}
FFMA_AB_BLOCKS = 3
# backward-filter direct when the GEMM's tiles are less full than this. By
# the sm_90 SASS (bench/results/static-sm90.md) the direct kernel's loop
# issues 125 instructions per 8 FFMA (15.6 a FMA), the narrow tile's 573 per
# 256 (2.24; the wide tile's 476, 1.86): the GEMM wins above ~0.14 of its
# tiles filled. (This was 0.4, from an estimate of the direct kernel at ~13
# TFLOP/s that the SASS count does not bear out: 4.3 at full issue.) mnist-1
# (32 filters x 25 taps, 0.39) goes GEMM; depthwise (1 x 9 taps a group,
# 0.004) and small groups (SMALL_GROUP) stay direct.
DIRECT_FILTER_USE = 0.15
# In 3xTF32 a GEMM runs the FFMA tile instead where that tile's fill is more than this times the
# tensor-core tile's: three MMAs a product at mma.sync's half of the dense TF32 peak (H200: 0.5 x
# 495 / 3 = 82 TFLOP/s of products) against FFMA at 0.8 of its peak (53.5), gpucnn/bench/
# model_consts's MMA_SYNC_OF_PEAK and EFF_FFMA centres; a warpgroup tile's wgmma at 0.9 of the peak
# (WGMMA_OF_PEAK) 1.8 times that. The FFMA kernels are fp32-exact, the accuracy 3xTF32 promises.
# Taken by a GEMM of at most 32 rows and 64 columns (the 64 tensor-core tile with half its rows
# empty, the narrow FFMA tile full): mnist-1's filter gradient (32 filters x 25 taps).
TC3_OVER_FFMA = {"mma": 1.54, "wgmma": 2.77}
# The halo family by default from this many channels reduced (x's C forward, dy's K backward-data;
# tf32 and 3xtf32, where halo.ok): fewer waste most of its 8-channel steps (cifar-stem's 3
# channels: 3 of 8 live, and the FFMA tile took 35 us there, the fastest of every candidate on the
# H200). Not yet timed on a GPU (session 24). Chosen
# on: the H200's ncu of the wide GEMM tile on resnet-3x3's forward in tf32 (51.8 us, L1 70% busy,
# the SMs' issue 33%: the gather holds it, not the tensor cores; cifar-resnet's took 150 us against
# the static model's 61); a step's copies (576 MMAs from 9 16-byte weight copies and at most 8 of
# the input a thread, where the wide tile's 2.25 k-steps gather 72 4-byte elements and copy 9 16-
# byte runs a thread for as many); and the emulator's traffic (bench/results/static-traffic.md,
# resnet-3x3: global sectors 8.67e6 -> 3.72e6 a launch, shared wavefronts 5.35e6 -> 3.84e6, the L1
# floor 28.7 -> 18.3 us). The static model (gpucnn.bench.model, tensor rate and issue; no L1 term)
# puts both at the same MMA-bound time: cifar-resnet 59.6 against 61.0 us.
HALO_MIN_C = 16
HALO_FAMILIES = ("halo", "halowg")
# The warpgroup variant where the halo family runs on compute capability 9.0, unless the
# environment's GPUCNN_HALO_WG is "0" (read once, at import: bench/gpu.sh sets it for its later
# steps when the GPU's own test of wgmma with A from registers and no-swizzle descriptors, the
# primitives only this variant uses, fails). Not yet timed on a GPU (session 25). Chosen on the
# sm_90a SASS (bench/results/static-sm90.md): a warp's step issues 440 instructions for 18
# m64n64k8 wgmma (the mma.sync kernel's 532 for 144 HMMA), and the tensor work of a block's step,
# 590k MACs, is 576 SM clocks at the dense TF32 rate against ~1150 at mma.sync's half of it: two
# blocks' steps an SM ~1150 clocks where the mma.sync kernel's take ~2300 (both tensor-bound).
HALO_WG = os.environ.get("GPUCNN_HALO_WG", "1") != "0"
# The Winograd family by default (float32 in "fp32", where wino.ok) from this many channels reduced
# (x's C forward, dy's K backward-data) and this many filters (the pass's output channels: K
# forward, C backward-data): its blocks are 32 filters x 32 blocks of 2x2 outputs, 8 channels a
# step. Not yet timed on a GPU (session 31). Chosen on the count of its multiplies: 2.25x fewer
# than the FFMA GEMM's (cifar-resnet's forward, 2.15e9 FMA against 4.83e9), a thread's step
# issuing 835 instructions for 512 FFMA (its copies, transform and 32 LDS.128 beside them; sm_90
# SASS, bench/results/static-sm90.md), where the 64 x 64 tile's k-step issues 476 for 256 FFMA:
# the static model (gpucnn.bench.model) puts cifar-resnet's forward at 0.40 of the GEMM tile's
# time (139 against 344 us). Fewer filters leave most of a block's 32 rows empty; fewer channels, the reduction
# too short for its two copies and transforms a step.
WINO_MIN_C = 16
WINO_MIN_K = 16
MIN_SPLIT_STEPS = 8    # a split reduces at least this many k-steps
# A forward or backward-data split's own cost, in k-steps of one tile (_split's units): its parts
# written and summed by a second launch (conv2d_sum_splits), whose host path and ramp a small pass
# pays whole. On the H200 mnist-2's forward in tf32 (25 k-steps of 64 x 128 tiles, 98 tiles) took
# 32.1-33.8 us unsplit and 40.6-45.0 in 2 or 3 parts in every tuned run (bench/results/gpu-2026-11-
# 30-s20, -s20c, -s21: 8.5-11.7 us more a split), so a split must save more than ~20 steps of a lone
# tile; resnet-7x7x512's 144 steps a tile (63.9 us in 9 parts, 114.6 unsplit) still split.
SPLIT_COST_STEPS = 20
# In "tf32" and "3xtf32" a forward whose reduction is one tensor-core k-step (C*kh*kw <= TC_K) runs
# the FFMA tile where that tile's grid makes at least this many waves: the tensor-core tile's
# pipeline then fills and drains around a single step in every block. cifar-stem (3 channels, 3x3:
# 27) took 35.0-41.0 us on the FFMA 64 x 64 tile against 41.9-46.5 on the heuristic's tensor-core
# tiles in all three tuned runs, in both modes (5.2 waves); mnist-1 (25, 1.5 waves, ~25 us a pass
# whatever the tile) went either way from run to run, and keeps its tensor-core tile.
ONE_STEP_FFMA_WAVES = 4
MAX_SPLITS = 16  # forward and backward-data: each part writes a whole output
MAX_FILTER_SPLITS = 1024  # filter gradients: parts are filter-sized, and stems' few tiles need many
DEFAULT_SMS = 132  # H100 SXM; the emulator reports this unless told otherwise
ENV = "GPUCNN_CONV_ALGO"
AUTOTUNE = "autotune"  # the override that times the candidates instead (gpucnn.cuda.autotune)


@dataclasses.dataclass(frozen=True)
class Choice:
    family: str
    tile: tuple = ()   # (rows, columns, k depth) of a GEMM family's block tile
    splits: int = 1    # reduction parts, added in split order
    chunk: int = 0     # reduction indices per part (0: the whole reduction)
    math: str = "fp32"  # the gemm family's kernels: FFMA, or tensor cores in "tf32"/"3xtf32"
    swap: bool = False  # backward-filter FFMA only: the transposed GEMM, taps as rows and filters as columns
    edge: int | str | None = None  # a tensor-core tile's gpucnn.cuda.tc.TC_TILES key (its kernels' suffix)


# forced spec -> (FFMA tile, swap): gemm32t is the narrow tile on the filter
# gradient's transposed GEMM (the other passes take the heuristic's choice)
_FORCED_TILES = {"gemm64": (TILE, False), "gemm32": (NARROW_TILE, False), "gemm32t": (NARROW_TILE, True)}


# os.environ's own table, read without its Mapping.get (0.58 us a missing key, a KeyError raised
# and caught; 0.03 this way): every convolution call reads the variable twice (autotune.tuned and
# choose), since it may change at any time. CPython's os._Environ; os.environ.get where it differs.
_ENV_TABLE = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey(ENV) if hasattr(os.environ, "encodekey") else None


def spec() -> str:
    """The override in force (``override``, else GPUCNN_CONV_ALGO; "" for none)."""
    forced = _override.get()
    if forced:
        return forced
    if _ENV_TABLE is None or _ENV_KEY is None:
        return os.environ.get(ENV, "")
    value = _ENV_TABLE.get(_ENV_KEY)
    return "" if value is None else os.environ.decodevalue(value)


def _forced() -> tuple[str, int | None, tuple | None, bool] | None:
    """(family, splits or None, FFMA tile or None, swap) of the override in force (None for none
    and for "autotune", which gpucnn.cuda.autotune serves)."""
    spec_ = spec()
    if not spec_ or spec_ == AUTOTUNE:
        return None
    family, _, splits = spec_.partition(":")
    tile, swap = _FORCED_TILES.get(family, (None, False))
    family = "gemm" if tile else family
    if family not in {f for fs in FAMILIES.values() for f in fs}:
        raise ValueError(f"{ENV}={spec_!r}: the family must be one of gemm, gemm64, gemm32, gemm32t, phase, direct, "
                         "window, strip, fold, halo, halowg, wino (optionally gemm:SPLITS), or autotune")
    if splits and (not splits.isdigit() or int(splits) < 1):
        raise ValueError(f"{ENV}={spec_!r}: the split count must be a positive integer")
    return family, int(splits) if splits else None, tile, swap


_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpucnn_conv_algo", default=None)


@contextlib.contextmanager
def override(spec: str | None):
    """Force ``spec`` (as GPUCNN_CONV_ALGO) inside the block; None restores the heuristic."""
    token = _override.set(spec)
    try:
        _forced()  # a bad spec fails here, not at the first convolution
        yield
    finally:
        _override.reset(token)


def gemm_shape(g, pass_: str) -> tuple[int, int, int]:
    """(rows, columns, reduction) of one group's implicit GEMM for a pass."""
    w = g.win
    Kg, Cg, taps = g.K // g.groups, g.C // g.groups, w.kh * w.kw
    if pass_ == "forward":
        return Kg, g.N * w.P * w.Q, Cg * taps
    if pass_ == "backward_data":
        return Cg, g.N * w.H * w.W, Kg * taps
    return Kg, Cg * taps, g.N * w.P * w.Q


def _split(tiles: int, steps: int, slots: int, max_splits: int, extra: int = 0) -> int:
    """The split count that minimises waves x (steps per part + 2), plus ``extra``
    steps for any split at all: the +2 charges each part's partial tile, written
    and read back once; ``extra`` the split's own pass (SPLIT_COST_STEPS)."""
    best, best_cost = 1, None
    for s in range(1, max(1, min(max_splits, steps // MIN_SPLIT_STEPS)) + 1):
        cost = cdiv(tiles * s, slots) * (cdiv(steps, s) + 2) + (extra if s > 1 else 0)
        if best_cost is None or cost < best_cost:
            best, best_cost = s, cost
    return best


def _ffma_blocks(bm: int, itemsize: int, pass_: str, cc: int) -> int:
    """Blocks an SM of an FFMA tile of ``bm`` rows: GemmBlocks, or GemmBlocksAB's FFMA_AB_BLOCKS for
    conv2d's float forward and backward-data on the wide tile on sm_90 and newer."""
    if bm == TILE[0] and itemsize == 4 and pass_ != "backward_filter" and cc >= 90:
        return FFMA_AB_BLOCKS
    return GEMM_BLOCKS_PER_SM[bm, itemsize]


def ffma_tile(rows: int) -> tuple[int, int, int]:
    """The FFMA tile for a GEMM of ``rows`` rows: the narrow one where they fit it."""
    return NARROW_TILE if rows <= NARROW_TILE[0] else TILE


def _gemm(g, pass_: str, sms: int, splits: int | None, math: str = "fp32", cc: int = 90,
          tile: tuple | None = None, itemsize: int = 4, swap: bool | None = None) -> Choice:
    """``swap``: None lets the filter gradient pick its orientation (filter_orientation)."""
    rows, cols, red = gemm_shape(g, pass_)
    if math == "fp32":
        if pass_ != "backward_filter":
            swap = False
        elif swap is None:
            swap = filter_orientation(rows, cols)[1]
        rows, cols = (cols, rows) if swap else (rows, cols)
        edge, tile = None, tile or ffma_tile(rows)
        per_sm = _ffma_blocks(tile[0], itemsize, pass_, cc)
    else:  # the tensor-core tiles run the plain orientation
        edge = tc.tile_edge(rows, cols, g.groups, sms, cc, narrow=True, mode=math)
        if tc.forced_tile() is None and ((math == "3xtf32" and _ffma_fills(rows, cols, pass_, edge))
                                         or _one_step_ffma(rows, cols, red, g.groups, pass_, sms, cc)):
            return _gemm(g, pass_, sms, splits, "fp32", cc, tile, itemsize, swap)
        swap = False
        tile, per_sm = tc.TC_TILES[edge][:2] + (tc.TC_K,), tc.blocks_per_sm(pass_, math, edge, cc)
        if math == "tf32" and edge == 128 and pass_ != "backward_filter":
            # one 128 tile keeps an SM's tensor pipe about as busy as two: on the H200
            # cifar-resnet-s2's forward (128 tiles for 132 SMs) took 59.0 us whole against 75.4
            # in 2 parts (bench/results/gpu-2026-11-30-s20, autotuning), so a split fills the
            # SMs once, not their 2 slots
            per_sm = 1
    bm, bn, bk = tile
    tiles = cdiv(rows, bm) * cdiv(cols, bn) * g.groups
    steps = cdiv(red, bk)
    slots = sms * per_sm
    if splits is None:
        # forward and backward-data split only below one wave: a full grid
        # already keeps every SM busy, and a split costs a partial pass
        if pass_ == "backward_filter":
            splits = _split(tiles, steps, slots, MAX_FILTER_SPLITS)
        else:
            splits = _split(tiles, steps, slots, MAX_SPLITS, SPLIT_COST_STEPS) if tiles < slots else 1
    return _parts(Choice("gemm", tile, math=math, swap=swap, edge=edge), red, splits, bk)


def _parts(c: Choice, red: int, splits: int, unit: int) -> Choice:
    """Reduction ``red`` in at most ``splits`` chunks, each a multiple of ``unit``."""
    splits = max(1, min(splits, cdiv(red, unit)))
    chunk = cdiv(cdiv(max(red, 1), splits), unit) * unit
    return dataclasses.replace(c, splits=max(1, cdiv(red, chunk)), chunk=chunk)


def tile_use(rows: int, cols: int) -> float:
    """The fraction of its FFMA tiles (ffma_tile) a rows x cols GEMM output fills."""
    bm, bn, _ = ffma_tile(rows)
    return rows / (cdiv(rows, bm) * bm) * cols / (cdiv(cols, bn) * bn)


def _ffma_fills(rows: int, cols: int, pass_: str, edge) -> bool:
    """Whether a 3xTF32 GEMM runs faster on the FFMA tile than on tensor-core tile ``edge``
    (TC3_OVER_FFMA)."""
    bm, bn = tc.TC_TILES[edge][:2]
    tc_fill = rows / (cdiv(rows, bm) * bm) * cols / (cdiv(cols, bn) * bn)
    ffma_fill = filter_orientation(rows, cols)[0] if pass_ == "backward_filter" else tile_use(rows, cols)
    return ffma_fill > TC3_OVER_FFMA["wgmma" if edge in tc.WG_TILES else "mma"] * tc_fill


def _one_step_ffma(rows: int, cols: int, red: int, groups: int, pass_: str, sms: int, cc: int) -> bool:
    """Whether a tensor-core forward GEMM runs the FFMA tile instead (ONE_STEP_FFMA_WAVES)."""
    if pass_ != "forward" or red > tc.TC_K:
        return False
    bm, bn, _ = ffma_tile(rows)
    return cdiv(rows, bm) * cdiv(cols, bn) * groups >= ONE_STEP_FFMA_WAVES * sms * _ffma_blocks(bm, 4, pass_, cc)


def filter_orientation(Kg: int, taps: int) -> tuple[float, bool]:
    """(tile use, swap): the filter gradient's Kg x taps GEMM in the FFMA
    orientation that fills its tiles best. With at most 32 taps and more than
    32 filters, the plain GEMM runs the 64 x 64 tile with taps / 64 of its
    columns live; swapped (taps as rows) it runs the 32 x 64 tile with taps /
    32 of its rows live, the same filter columns: twice the fill (a 3-channel
    3x3 stem's 64 x 27: 42% -> 84%) for 1.08x the loop instructions per FMA
    (513 against the wide tile's 476 for the 256 FFMA of a step on sm_90,
    bench/results/static-sm90.md): predicted 1.85x faster.
    With both sides at most 32 the two fill alike and the plain one stays."""
    if taps <= NARROW_TILE[0] < Kg:
        return tile_use(taps, Kg), True
    return tile_use(Kg, taps), False


def direct_ok(g, pass_: str) -> bool:
    """Whether the direct kernels are the plausible family for this pass (small groups, nearly empty tiles)."""
    Kg, Cg = g.K // g.groups, g.C // g.groups
    if Kg <= SMALL_GROUP and Cg <= SMALL_GROUP:
        return True
    if pass_ == "backward_filter":
        # The FFMA GEMM issues ~7x fewer instructions per FMA than the direct
        # kernel, so it wins unless its tiles are nearly empty (DIRECT_FILTER_USE).
        return filter_orientation(Kg, Cg * g.win.kh * g.win.kw)[0] < DIRECT_FILTER_USE
    return pass_ == "backward_data" and Cg <= SMALL_C


def _phase(g, math: str, sms: int, cc: int) -> Choice:
    """The phase family's tile: the FFMA one in fp32 (and float64), else the
    tensor-core tile tc.tile_edge picks for the largest phase's GEMM, repeated
    over groups and the phases holding the most taps. The others finish
    sooner, so they count as filling no wave of their own: with all the
    phases counted, cifar-resnet-s2's (4, 2, 2, 1 taps) took the 128 tile on
    256 tiles, where by the model (bench/results/predicted-h200.md) its
    64 tiles with 4-tap reductions set a slow end of 3.5x cuDNN in tf32;
    counted so, it takes the wide tile (1.60x, slow end 2.72x, against
    1.79x and 3.53x), and 64 in 3xtf32 (0.91x against 0.98x)."""
    if math == "fp32":
        return Choice("phase", TILE)
    w = g.win
    cols = g.N * cdiv(w.H, w.sh) * cdiv(w.W, w.sw)
    taps = phase_tap_grid(g)
    edge = tc.tile_edge(g.C // g.groups, cols, g.groups * taps.count(max(taps)), sms, cc, narrow=True, mode=math)
    return Choice("phase", tc.TC_TILES[edge][:2] + (tc.TC_K,), math=math, edge=edge)


def _one_tap_tc(g, dtype, math: str) -> bool:
    """A strided 1x1 filter's backward-data in tf32: the plain GEMM, not the phases. Its one phase
    of taps holds every product, the others none; the GEMM multiplies those empty rows by zeros
    too, but writes dx in whole rows where each phase's tile writes every sh-th element of it (its
    empty phases as well). On the H200, 1x1-s2 took 77.0-78.0 us on the 128 x 128 GEMM against
    96.4-99.4 on the phases' in all three tuned runs (bench/results/gpu-2026-11-30-s20, -s20c,
    -s21). In 3xtf32 the GEMM's best (64 x 128, 102.1-102.2) beat the phases' best by 3% only, and
    the tile the GEMM would get here (128 x 128 wgmma, 111.4-111.9) lost to the phases' (107.4-
    109.0): 3xtf32 and FFMA (four times its multiplies) keep the phases."""
    return g.win.kh * g.win.kw == 1 and math == "tf32" and np.dtype(dtype) == np.float32


def _halo_runs(g, pass_: str, dtype, math: str, cc: int, family: str = "halo") -> bool:
    """Whether the halo kernels (``family`` "halowg": their warpgroup variant) run ``pass_`` of
    ``g``: float32 in a tensor-core mode, and halo.ok."""
    return (np.dtype(dtype) == np.float32 and math in ("tf32", "3xtf32")
            and halo.ok(g, cc, pass_, wg=family == "halowg"))


def _wino_runs(g, pass_: str, dtype, math: str, cc: int) -> bool:
    """Whether the Winograd kernels run ``pass_`` of ``g``: float32 in "fp32", and wino.ok."""
    return np.dtype(dtype) == np.float32 and math == "fp32" and wino.ok(g, cc, pass_)


def _wino_default(g, pass_: str, dtype, math: str, cc: int) -> bool:
    """Whether the heuristic takes the Winograd kernels (WINO_MIN_C, WINO_MIN_K)."""
    reduced, filters = (g.C, g.K) if pass_ == "forward" else (g.K, g.C)
    return reduced >= WINO_MIN_C and filters >= WINO_MIN_K and _wino_runs(g, pass_, dtype, math, cc)


def _direct(g, pass_: str, sms: int, splits: int | None) -> Choice:
    if pass_ != "backward_filter":
        return Choice("direct")
    # A block per filter and chunk of units: split them until the blocks fill
    # whole waves, each thread reducing at least MIN_SPLIT_STEPS units.
    units = direct_filter_units(g)
    if splits is None:
        splits = _split(g.K, cdiv(units, DIRECT_THREADS), sms * DIRECT_BLOCKS_PER_SM, MAX_FILTER_SPLITS)
    return _parts(Choice("direct"), units, splits, DIRECT_THREADS)


def choose(g, pass_: str, dtype=np.float32, math: str = "fp32", sms: int = DEFAULT_SMS, cc: int = 90) -> Choice:
    """The algorithm for one pass of convolution ``g`` (see the module docstring);
    ``math`` applies to float32 only (float64 runs the FFMA tile in every mode).
    Memoised on everything it reads, the overrides in force included: the
    split search alone took 40-260 us of host time a call (a filter gradient's
    up to 1024 candidate counts), longer than the kernels of the small cases."""
    spec_ = spec()  # 0.7 us of the ~1.5 left: the variable may change any time
    dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    return _choose(g, pass_, dtype, math, sms, cc, spec_, tc.forced_tile())


@functools.lru_cache(maxsize=4096)
def _choose(g, pass_: str, dtype, math: str, sms: int, cc: int, spec: str, tc_tile) -> Choice:
    """choose's answer; ``spec`` and ``tc_tile`` (the overrides, read below
    through _forced and tc.tile_edge) are only the memo's key."""
    if pass_ not in PASSES:
        raise ValueError(f"pass must be one of {PASSES}, got {pass_!r}")
    if math not in MATH_MODES:
        raise ValueError(f"math mode must be one of {MATH_MODES}, got {math!r}")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    if sms < 1:
        raise ValueError(f"sms must be >= 1, got {sms}")
    forced = _forced()
    runs = (forced and forced[0] in FAMILIES[pass_] and (forced[0] != "window" or window_ok(g, dtype))
            and (forced[0] != "fold" or (np.dtype(dtype) == np.float32 and fold.ok(g, cc)))
            and (forced[0] != "strip" or strip_ok(g, dtype)) and (not forced[3] or pass_ == "backward_filter")
            and (forced[0] not in HALO_FAMILIES or _halo_runs(g, pass_, dtype, math, cc, forced[0]))
            and (forced[0] != "wino" or _wino_runs(g, pass_, dtype, math, cc)))
    family, splits, tile, swap = forced if runs else (None, None, None, None)
    if family is None:
        if direct_ok(g, pass_):
            family = "direct"
            # depthwise (a filter and a channel a group): backward-data on the strip kernel, which
            # an H200 timed at 148-149 us against the direct kernel's 175-178 on the depthwise case
            # in both runs of bench/results/gpu-2026-11-30-s20 and -s20b (the fold kernel, 1630 us,
            # is never its TF32 path)
            depthwise = g.groups == g.C == g.K > 1
            if (pass_ == "backward_data" and phase_taps(g) >= WINDOW_MIN_TAPS and window_ok(g, dtype)
                    and window_fills(g, sms)):
                family = "window"
            elif pass_ == "backward_data" and (g.K // g.groups > SMALL_GROUP or depthwise) and strip_ok(g, dtype):
                family = "strip"
            if family != "direct" and not depthwise and math == "tf32" and dtype == np.float32 and fold.ok(g, cc):
                family = "fold"  # the window and strip kernels' FFMA against cuDNN's TF32
        elif pass_ == "backward_data" and g.win.sh * g.win.sw > 1 and not _one_tap_tc(g, dtype, math):
            family = "phase"
        elif (g.C if pass_ == "forward" else g.K) >= HALO_MIN_C and _halo_runs(g, pass_, dtype, math, cc):
            family = "halowg" if HALO_WG and _halo_runs(g, pass_, dtype, math, cc, "halowg") else "halo"
        elif _wino_default(g, pass_, dtype, math, cc):
            family = "wino"
        else:
            family = "gemm"
    if family == "fold":  # tensor cores in TF32 whatever the mode: a forced fold is a tf32 pass
        return Choice("fold", math="tf32")
    if family in HALO_FAMILIES or family == "wino":
        return Choice(family, math=math)
    if family in ("direct", "window", "strip"):
        return dataclasses.replace(_direct(g, pass_, sms, splits), family=family)
    if family == "phase":  # sh*sw phases already multiply the grid; its reduction is not split
        return _phase(g, math if np.dtype(dtype) == np.float32 else "fp32", sms, cc)
    f32 = np.dtype(dtype) == np.float32
    return _gemm(g, pass_, sms, splits, math if f32 else "fp32", cc, tile, np.dtype(dtype).itemsize,
                 swap if tile else None)
