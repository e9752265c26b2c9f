"""Which GEMM kernel a float32 convolution or linear pass launches: the FFMA
tile (kernels/gemm.cuh) or a tensor-core tile (kernels/tc_gemm.cuh) in the
math mode in force (gpucnn.mathmode), and which tensor-core tile.

Tiles are named by their kernels' suffixes: 128 (TcLarge, 128 x 128), 64
(TcSmall, 64 x 64), and for the convolution kernels only (NARROW) 32 (TcNarrow,
32 x 128) and "64w" (TcWide, 64 x 128), and on sm_90a the warpgroup (wgmma)
tiles "128g" and "64g" (TcLargeWg, TcWideWg and their 3xTF32 TcLargeWg3,
TcWideWg3: the 128 and wide tiles' shapes).

``tc_config`` is the pure per-shape choice (tested as a table); ``plan``
applies it for a runtime's device; ``force_tile`` overrides it (tests and
benchmarks).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools

import numpy as np

from gpucnn import mathmode
from gpucnn.cuda import gemm
from gpucnn.cuda.launch import kernel_name
from gpucnn.runtime import loader

TC_K, STAGES = 32, 3  # TC_BK, TC_STAGES
# TF32's wide tile runs 2 stages, 3 blocks an SM (tc_gemm.cuh's TC_WIDE_STAGES, TcBlocks; 3xTF32's
# TcWide3 keeps STAGES): 0.71-0.73 of the 3-stage time on resnet-3x3 on the H200, 0.93-1.22 elsewhere
# (bench/results/gpu-2026-11-30-s20, step 5e).
WIDE_TF32_STAGES = 2
HANDLE_BYTES, KTAB_BYTES = 24, 24  # TC_HANDLE_BYTES, TC_KTAB_BYTES
# tile (its kernels' suffix) -> (rows, columns, warps along rows, warps along columns):
# TcLarge, TcSmall, TcNarrow, TcWide, TcLargeWg, TcWideWg
TC_TILES = {128: (128, 128, 2, 4), 64: (64, 64, 2, 2), 32: (32, 128, 1, 4), "64w": (64, 128, 2, 2),
            "128g": (128, 128, 8, 1), "64g": (64, 128, 4, 1)}
NARROW_ROWS, WIDE = 32, "64w"
# the warpgroup tiles (TC_WG_VARIANTS) -> the mma.sync tile of their shape, which replaces them
# where they are not built
WG_TILES = {"128g": 128, "64g": WIDE}
# the kernels that have the 32-row, wide and warpgroup tiles (TC_NARROW_VARIANTS, TC_WG_VARIANTS:
# kernels/conv2d.cu, conv2d_phase.cu)
NARROW = frozenset({"conv2d_forward", "conv2d_backward_data", "conv2d_backward_filter",
                    "conv2d_backward_data_phase"})
CONV_TILES = (NARROW_ROWS, WIDE, *WG_TILES)  # the tiles only NARROW kernels have
WG_FAMILIES = ("conv2d", "conv2d_phase")  # NARROW's families


def wg_built(cc: int) -> bool:
    """Whether NARROW's families are built with the warpgroup tiles' wgmma on compute capability
    ``cc`` (the loader's sm_90a build on 9.0: loader.ARCH_SPECIFIC); elsewhere they trap."""
    return all(loader.arch_options(f, cc) for f in WG_FAMILIES)


def block_threads(edge) -> int:
    """Threads per block of tile ``edge``."""
    return 32 * TC_TILES[edge][2] * TC_TILES[edge][3]


_forced: contextvars.ContextVar[int | str | None] = contextvars.ContextVar("gpucnn_tc_tile", default=None)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The kernel of one GEMM launch and its tile."""
    name: str
    bm: int
    bn: int
    threads: int
    k_step: int   # the reduction step (split chunks are multiples of it)
    smem: int = 0  # dynamic shared memory per block


def stages_of(edge, mode: str = "tf32") -> int:
    """The cp.async pipeline's stages of tile ``edge`` in ``mode`` as the sources build it."""
    return WIDE_TF32_STAGES if edge == WIDE and mode == "tf32" else STAGES


def smem_bytes(edge: int, mode: str = "tf32", stages: int | None = None) -> int:
    """TcTile<rows, columns>::SMEM of tile ``edge``: pipeline stages (``stages``, or the build's:
    stages_of), k-tables and handles (and a warpgroup tile's 1024 bytes for the alignment of
    wgmma's operands, tc_smem, and in 3xtf32 its stage's small parts and 1024 more for their
    alignment, tc_lo)."""
    stages = stages_of(edge, mode) if stages is None else stages
    bm, bn = TC_TILES[edge][:2]
    lo = (bm + bn) * TC_K * 4 + 1024 if edge in WG_TILES and mode == "3xtf32" else 0
    return (stages * ((bm + bn) * TC_K * 4 + TC_K * KTAB_BYTES) + (bm + bn) * HANDLE_BYTES
            + (1024 if edge in WG_TILES else 0) + lo)


_WIDE_STAGES = "-DGPUCNN_TC64W_STAGES="


def build_smem(plan: Plan) -> int:
    """The dynamic shared memory ``plan``'s kernel takes in the A/B build set now (loader.BUILD):
    TF32's wide tile's of GPUCNN_TC64W_STAGES stages (tc_gemm.cuh's TcWide), else plan.smem. The
    launch asks for it (gemm.launch_gemm), so a build's blocks an SM match its stages' size."""
    stages = [int(o[len(_WIDE_STAGES):]) for o in loader.BUILD if o.startswith(_WIDE_STAGES)]
    tile = loader.tile_of(plan.name)
    if stages and tile == ("tf32", WIDE):
        return smem_bytes(WIDE, "tf32", stages[-1])
    return plan.smem


# Compute capabilities whose blocks may have more than 99 KiB of shared memory
# (sm_80, sm_87, sm_90, sm_100): the others (sm_86, sm_89, sm_120) cannot hold
# the 128 x 128 tile's 104 KiB and use the 64 x 64 tile.
_LARGE_SMEM_CCS = (80, 87, 90, 100, 103)


def _cost(M: int, N: int, batches: int, sm_count: int, edge, per_sm: int, per_mac: float) -> float:
    """Relative time of an M x N GEMM (x batches) on tile ``edge``: whole waves of
    its tiles, per_sm sharing an SM, at ``per_mac`` issue per MAC; below a wave
    the reduction is split to fill one (gpucnn.cuda.algo), so the waves are
    fractional there."""
    bm, bn = TC_TILES[edge][:2]
    tiles, slots = -(-M // bm) * -(-N // bn) * batches, sm_count * per_sm
    waves = -(-tiles // slots) if tiles >= slots else tiles / slots
    return waves * per_sm * bm * bn * per_mac


# The wide tile in tf32: its warps' k-step issues 566-610 SASS instructions
# for 64 HMMA where the 64 tile's issue 407-457 for 32 (bench/results/
# static-sm90.md, conv2d_*_tf32_64w and _64; 740 against 540 before the tap
# masks): 0.67-0.70 of the issue per MAC, at 2 blocks per SM
# (shared memory) against 3. It is taken where that counts at most
# WIDE_MARGIN of the 64 tile's time: the model's slow scenario (waves of
# blocks sharing an SM) turns smaller gains into losses (resnet-3x3 forward:
# 0.92 by this count, 2.13x -> 2.03x cuDNN central but 2.86x -> 3.03x slow).
# In 3xTF32 the model kept the 64 tile (the tensor pipe, not issue, bounds
# both there, and the wide tile's 2 blocks against 3-4 lose: mnist-2 forward
# 1.12x -> 1.37x, resnet-stem filter gradient 1.13x -> 1.46x by the model);
# the H200 disagreed (WIDE3_ISSUE), and elsewhere than sm_90 it still stays.
WIDE_ISSUE, WIDE_MARGIN = 0.69, 0.85
# In 3xTF32 on sm_90 the wide tile (3 stages, 2 blocks an SM) is counted at 0.85 of the 64 tile's
# issue per MAC: the H200 timed it ahead of the 64 tile on cifar-resnet's forward and backward-data
# (193 against 207 us, 211 against 232), cifar-resnet-s2's three passes (0.85-0.97), resnet-stem's
# forward and vgg's backward-data (0.91-0.94), in both runs of bench/results/gpu-2026-11-30-s20 and
# -s20b, and behind it on resnet-3x3's and dilated's forward (1.05-1.07), which this count leaves on
# the 64 tile; replayed on those timings, the heuristic's loss to the fastest candidate in 3xtf32
# went from 1.048 and 1.070 to 1.031 and 1.060 (geometric means, gpucnn.bench.tuning.replay).
WIDE3_ISSUE = 0.85
# The warpgroup tiles, measured on an H200 (bench/results/gpu-2026-11-30: autotuning's candidates,
# 8 cases x 3 passes x 2 modes), time of the mma.sync tile over the wgmma tile of the same shape
# and split count: wide 64 x 128 ("64g"), median 0.87 in 3xtf32 and 0.90 in tf32 (98 of 104 pairs
# faster on mma.sync, the phase family's included); 128 x 128 ("128g"), median 1.04 in 3xtf32 and
# 0.94 in tf32. The static counts had put them ahead (the wide one at 0.68 of the 64 tile's issue
# per MAC in tf32, and at wgmma's 0.9 of the peak against mma.sync's 0.5 in 3xtf32); ncu found the
# wide one at 11-12% achieved occupancy (148-184 registers a thread, one warpgroup a block),
# latency-bound. Replayed on those timings (gpucnn.bench.tuning.replay), taking "128g" in 3xtf32
# only and never "64g" cut the heuristic's loss to the fastest candidate from a geometric mean of
# 1.249 to 1.142 (1.120 with algo_direct's window rule besides).


def tc_config(M: int, N: int, batches: int, sm_count: int, cc: int = 90, narrow: bool = False,
              mode: str = "tf32", wg: bool = False) -> int | str:
    """The tensor-core tile for an M x N GEMM repeated ``batches`` times
    (groups, splits) on ``sm_count`` multiprocessors of compute capability
    ``cc``: 128 when its tiles fill every SM at least twice, both sides are
    longer than 64 and the device's blocks can hold it, else 64 (four times
    the blocks, for small problems). Twice: between one and two tiles an SM
    the 128 tile's last wave runs mostly empty, or (the filter gradient) its
    splits' waves do at one or two blocks an SM, where the 64 tile's three
    or four an SM quantize finer (resnet-7x7x512's filter gradient, 144
    tiles of 128 for 132 SMs: 2.25 (1.59-3.33) x cuDNN on 128 / 3 splits,
    2.18 (1.79-2.82) on 64 / 2; 1x1-s2's backward-data phases likewise, the
    model's H200 figures; no row slower at its centre or slow end). A side
    of at most 64 (a 64-filter layer's forward) leaves half of every 128
    tile empty: there its loop
    issues 982 instructions per 64 HMMA of which 32 count, against the 64
    tile's 817 per 32 (tf32 forward; 3xtf32 1578 per 192 against 1215 per
    96; bench/results/static-sm90.md), so the 64 tile is 1.2-1.3x faster.
    With ``narrow`` (the kernel has the 32-row and wide tiles, NARROW) and
    more than 64 columns: at most 32 rows (32 filters: deepspeech, mnist)
    take 32: the 64 tile's lower two warps would multiply empty rows, half
    its HMMA; the 32 x 128 tile's four warps all hold live rows at the same
    32 x 32 warp tile, its fetch a quarter larger a step (B's 128 columns
    gathered against 64, A's 32 rows against 64). Where the 128 tile is not
    taken, a GEMM of more than 32 rows and 64 columns in ``mode`` "tf32"
    (and on sm_90 in "3xtf32" too, counted at WIDE3_ISSUE) takes "64w",
    64 x 128 in four 32 x 64 warp tiles (per HMMA half the A
    fragments and ldmatrix of the 64 tile's 32 x 32 warp tiles), where
    _cost counts it WIDE_MARGIN of the 64 tile's: 64-filter layers, and
    grids of at most 64 rows. In tf32 on sm_90 a convolution (``narrow``)
    of more than 64 rows and columns takes the 128 tile whatever its grid
    (elsewhere untimed, it keeps the rule of two waves): the H200
    timed it ahead of the wide tile on every such forward and backward-data
    pass of the suite (bench/results/gpu-2026-11-30-s20, autotuning:
    resnet-7x7x512 63.1 against 77.3 us forward and 72.6 against 87.0
    backward-data, both on 9 splits; cifar-resnet-s2 59.0 against 61.8,
    1x1-s2 38.8 against 41.2 forward), and on the filter gradients of
    cifar-resnet-s2 (71.6 against 76.6) and vgg (367.7 against 436.0),
    where a grid below two waves is split; the wide tile's lighter issue
    per MAC does not make up for half the reuse of each fetched column.

    With ``wg`` (the warpgroup tiles built: wg_built), the 128 tile's shape
    runs on wgmma ("128g") in 3xtf32, where an H200 timed it a little ahead
    of mma.sync (the comment above). The wide warpgroup tile ("64g") is not
    chosen: it lost to the mma.sync wide tile in 98 of 104 timed pairs.
    Forced (force_tile) or autotuned, every tile still runs."""
    if narrow and N > 64 and M <= NARROW_ROWS:
        return NARROW_ROWS
    wg = wg and narrow
    large = -(-M // 128) * -(-N // 128) * batches
    any_grid = narrow and mode == "tf32" and cc == 90  # the 128 tile whatever its grid
    if min(M, N) > 64 and cc in _LARGE_SMEM_CCS and (large >= 2 * sm_count or any_grid):
        return "128g" if wg and mode == "3xtf32" else 128
    if narrow and N > 64 and (mode == "tf32" or cc == 90):
        blocks = {e: blocks_per_sm("forward", mode, e, cc) for e in (WIDE, 64)}
        issue = WIDE_ISSUE if mode == "tf32" else WIDE3_ISSUE
        wide = _cost(M, N, batches, sm_count, WIDE, blocks[WIDE], issue)
        if wide <= WIDE_MARGIN * _cost(M, N, batches, sm_count, 64, blocks[64], 1.0):
            return WIDE
    return 64


@contextlib.contextmanager
def force_tile(edge: int | str | None):
    """Use tensor-core tile ``edge`` (a TC_TILES key) inside the block, whatever the
    shape; kernels without the 32-row and wide tiles (not in NARROW) take 64 for them."""
    if edge is not None and edge not in TC_TILES:
        raise ValueError(f"tensor-core tile must be one of {tuple(TC_TILES)} or None, got {edge!r}")
    token = _forced.set(edge)
    try:
        yield
    finally:
        _forced.reset(token)


def variants(base: str) -> list[str]:
    """The tensor-core kernels of ``base``: one per mode and tile (tc_gemm.cuh's
    TC_VARIANTS, and TC_NARROW_VARIANTS and TC_WG_VARIANTS for NARROW)."""
    return [f"{base}_{mode}_{edge}" for mode in mathmode.MODES if mode != "fp32" for edge in TC_TILES
            if edge not in CONV_TILES or base in NARROW]


# Resident blocks per SM of the convolution tensor-core kernels on sm_90:
# ptxas's registers with the tile's dynamic shared memory
# (bench/results/static-sm90.md; tests/test_sass.py checks this table
# against it). The split search counts its slots with them: at one block
# per SM it would leave a 64 tile kernel that fits 3 or 4 on a third of them.
_BLOCKS_SM90 = {  # (pass, mode, edge) -> blocks
    ("forward", "tf32", 128): 2, ("forward", "tf32", 64): 3,
    ("forward", "3xtf32", 128): 1, ("forward", "3xtf32", 64): 3,
    ("backward_data", "tf32", 128): 2, ("backward_data", "tf32", 64): 3,
    ("backward_data", "3xtf32", 128): 1, ("backward_data", "3xtf32", 64): 4,
    ("backward_filter", "tf32", 128): 1, ("backward_filter", "tf32", 64): 3,
    ("backward_filter", "3xtf32", 128): 1, ("backward_filter", "3xtf32", 64): 4,
    # the 32-row tile: 66 KiB of shared memory, 3 blocks in sm_90's 228 KiB
    ("forward", "tf32", 32): 3, ("forward", "3xtf32", 32): 3,
    ("backward_data", "tf32", 32): 3, ("backward_data", "3xtf32", 32): 3,
    ("backward_filter", "tf32", 32): 3, ("backward_filter", "3xtf32", 32): 3,
    # the wide tile: in tf32 2 stages, 55 KiB of shared memory, 3 blocks (132-154 registers); in
    # 3xtf32 3 stages, 79 KiB, 2 blocks (3 would need 246 KiB)
    ("forward", "tf32", "64w"): 3, ("forward", "3xtf32", "64w"): 2,
    ("backward_data", "tf32", "64w"): 3, ("backward_data", "3xtf32", "64w"): 2,
    ("backward_filter", "tf32", "64w"): 3, ("backward_filter", "3xtf32", "64w"): 2,
    # the warpgroup tiles: in tf32 2 of the 128 shape (106 KiB of shared memory, <= 128 registers),
    # 2 of the wide one (81 KiB); in 3xtf32, with the small parts, 1 (138 KiB) and 2 (105 KiB)
    ("forward", "tf32", "128g"): 2, ("backward_data", "tf32", "128g"): 2, ("backward_filter", "tf32", "128g"): 2,
    ("forward", "tf32", "64g"): 2, ("backward_data", "tf32", "64g"): 2, ("backward_filter", "tf32", "64g"): 2,
    ("forward", "3xtf32", "128g"): 1, ("backward_data", "3xtf32", "128g"): 1,
    ("backward_filter", "3xtf32", "128g"): 1, ("forward", "3xtf32", "64g"): 2,
    ("backward_data", "3xtf32", "64g"): 2, ("backward_filter", "3xtf32", "64g"): 2,
}
# Shared memory per SM (KiB) by compute capability, 1 KiB of it reserved per
# block (CUDA C Programming Guide, compute capabilities table).
_SMEM_PER_SM_KIB = {80: 164, 86: 100, 87: 164, 89: 100, 90: 228, 100: 228, 103: 228}


def blocks_per_sm(pass_: str, mode: str, edge: int, cc: int) -> int:
    """Resident blocks per SM of conv2d's ``pass_`` kernel in ``mode`` on the
    ``edge`` tile: sm_90's, capped by the shared memory of compute capability ``cc``."""
    by_smem = _SMEM_PER_SM_KIB.get(cc, 100) * 1024 // (smem_bytes(edge, mode) + 1024)
    return max(1, min(_BLOCKS_SM90[pass_, mode, edge], by_smem))


def forced_tile() -> int | str | None:
    """The edge ``force_tile`` sets, or None."""
    return _forced.get()


def tile_edge(M: int, N: int, batches: int, sm_count: int, cc: int, narrow: bool = False,
              mode: str = "tf32") -> int | str:
    """``tc_config``'s tile, or the one ``force_tile`` sets (64 for CONV_TILES without ``narrow``;
    a warpgroup tile's mma.sync shape where it is not built)."""
    wg = narrow and wg_built(cc)  # only NARROW's kernels have them (and linear's plan runs a call)
    forced = _forced.get()
    if forced:
        if forced in WG_TILES and not wg:
            forced = WG_TILES[forced]
        return 64 if forced in CONV_TILES and not narrow else forced
    return tc_config(M, N, batches, sm_count, cc, narrow, mode, wg)


def plan_for(base: str, dtype, mode: str, edge: int | None = None) -> Plan:
    """The kernel of ``base`` in math ``mode`` for ``dtype``: in "tf32" and
    "3xtf32" (float32 only) the tensor-core tile of ``edge``; else the FFMA tile
    of ``edge`` rows (gemm.FFMA_TILES; None: the 64-row one)."""
    if np.dtype(dtype) == np.float32 and mode != "fp32":
        bm, bn = TC_TILES[edge][:2]
        return Plan(f"{base}_{mode}_{edge}", bm, bn, block_threads(edge), TC_K, smem_bytes(edge, mode))
    bm, bn, threads, suffix = gemm.FFMA_TILES[edge or gemm.TILE_M]
    return Plan(kernel_name(base + suffix, dtype), bm, bn, threads, gemm.TILE_K)


def plan_of(base: str, dtype, c) -> Plan:
    """The kernel of ``base`` for gpucnn.cuda.algo's choice ``c``: its math mode and tile."""
    return _plan_of(base, np.dtype(dtype), c)


@functools.lru_cache(maxsize=1024)
def _plan_of(base: str, dtype, c) -> Plan:
    """plan_of, memoised: a pure function of its arguments (force_tile acts
    through ``c``'s tile), and ~3 us of host time a launch."""
    core = dtype == np.float32 and c.math != "fp32"
    return plan_for(base, dtype, c.math, c.edge if core else c.tile[0])


def plan(rt, base: str, dtype, rows: int, cols: int, batches: int) -> Plan:
    """The kernel for ``base`` over a rows x cols GEMM repeated ``batches`` times."""
    if np.dtype(dtype) == np.float32:
        cc, sms = rt.device()
        mode = mathmode.effective(cc)
        if mode != "fp32":
            return plan_for(base, dtype, mode, tile_edge(rows, cols, batches, sms, cc, base in NARROW, mode))
    return plan_for(base, dtype, "fp32")
