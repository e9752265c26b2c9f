"""Launch code of kernels/conv2d_fold.cu: the backward-data of convolutions
with 1 to 4 channels a group on tensor cores in the math mode "tf32"
(gpucnn.cuda.algo's "fold" family): G = dY Fᵀ as an MMA GEMM whose columns
are the Cg*kh*kw taps, then φ⁻¹ (the seed's §4.7) folding G into a window
of dx rows in shared memory. gpucnn.cuda.conv calls it per run of images with
the output it allocated and ``geom`` (conv._geom).

``plan(g, sms, cc)`` is the pure per-shape layout: a task is (image, group,
segment of ``th`` dx rows, tile of ``tw`` dx columns); its tile needs at most
``qw`` dy columns (the tile's plus (kw - 1)*dw / sw on the left, computed
twice where tiles meet) and walks its segment's dy rows in bands of
``bp = PIX // qw`` rows. The tile and segment are chosen by ``cost``: whole
waves of tasks (blocks_per_sm an SM) x a task's band count x band_sm_clocks
(the MMAs of a band, its fold, and on an SM holding two blocks one's fold
beside the other's MMAs), so tiles stay wide (little overlap) and bands tall
(each window row is visited by fewer bands) while the tasks still fill the
SMs. resnet-stem (16 x 3 x 224 x 224, 64 filters 7x7 / 2; the 24-tile kernel,
one block an SM): 4 tiles of 56 columns (31 dy columns, 4 rows a band: 124 of
128 pixels) and 2 segments of 112 rows, 128 tasks of 15 bands for 132 SMs;
the MMAs run 4.78 GFLOP for the pass's 3.78 (tap tiles 147 of 152 columns,
pixels 124 of 128, the tiles' overlap 28 of 31 columns, the segments' 56 of
59 rows). deepspeech (16 x 1 x 161 x 700, 32 filters 5x20 / 2; the 16-tile
kernel, two blocks an SM): 16 tiles of 44 columns (32 dy columns, 4 rows a
band) and one segment, 256 tasks of 20 bands.

On compute capability 9.0 (wgmma_built: the loader builds the family for sm_90a)
the plan also weighs the wgmma kernels (Hopper's warpgroup MMA, twice
mma.sync's rate by the model's constants, but dy rounded to TF32 in shared
memory and a descriptor's set-up a wgmma) and takes the cheaper: resnet-stem's
MMA-bound bands (one block an SM) take wgmma, deepspeech's (two blocks an SM,
bound by the steps' and the fold's instructions) keep mma.sync.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import itertools
import math

import numpy as np

from gpucnn.cuda.algo_direct import SMALL_C, axis_taps, cdiv
from gpucnn.cuda.launch import launch_tasks
from gpucnn.runtime import loader

FAMILY = "conv2d_fold"
THREADS, PIX, KC, TASK_WORDS = 256, 128, 32, 16  # FOLD_THREADS, FOLD_PIX, FOLD_KC, FOLD_TASK_WORDS
TAP_TILES = (8, 16, 24)  # the kernels' NT: 8-wide MMA tiles of taps they hold (accumulators: 4 NT registers)
KERNELS = ()
# mma.sync ("tf32") and, on sm_90a only, Hopper's warpgroup MMA ("wgmma"; wgmma_built): float only
MMAS = ("tf32", "wgmma")
F32_KERNELS = tuple(f"conv2d_fold_backward_data_{m}_n{nt}_f32" for m in MMAS for nt in TAP_TILES)
WG_ALIGN = 1024  # the wgmma kernels' shared memory starts at a 1024-byte boundary: up to this much more
REG_BLOCKS = {8: 2, 16: 2, 24: 1}  # CONV2D_FOLD's BLOCKS: blocks an SM their registers allow (__launch_bounds__)
SM_SMEM, BLOCK_RESERVED = 233472, 1024  # shared memory of an sm_80/sm_90 SM, and what each block reserves
MAX_TW = THREADS  # a fold thread owns one column of the tile
# dynamic shared memory a block may opt in to, by compute capability (bytes)
SMEM_LIMIT = {80: 166912, 87: 166912, 90: 232448, 100: 232448, 103: 232448}
SMEM_DEFAULT = 101376
MMA_CLOCKS = 2.0  # SM clocks a block's m16n8k8 takes at mma.sync's ~half rate (gpucnn.bench.model_consts)
MMA_CLOCKS_WG = 1.0  # the same work by wgmma, at about the tensor cores' full rate (model_consts.WGMMA_OF_PEAK)
# The fold's lane-instructions (sm_90 SASS of conv2d_fold_backward_data_tf32_n24_f32 and _n16,
# fold_cell with 1 to 4 row taps in registers, the column taps' loop not unrolled): a column tap
# costs 6 + RV (1 + 2 Cg) for RV row taps and Cg channels (an address add, then an LDS and an
# FADD a channel, a row tap: 9-18 with one channel, 13-34 with three); a window cell visit about
# 40 (its channels' loads and stores, the row table's count and offsets, the switch over RV, the
# loop).
CELL_ISSUE, COLUMN_TAP_ISSUE = 40, 6
# A step's instructions a warp (the same kernel's k-step loop, sm_90): the fetch of 16 copies in
# two runs of 8 (every copy live: Kg a multiple of KC), its set-up, the wait and the barrier,
# ~190, issued by all 8 warps; the MMAs of NP pairs of tap tiles, ~33 + 12 NP (4 k-slices of an
# ldmatrix of dy, 4 conversions to TF32, and per pair an ldmatrix of w and 2 HMMA: 45 for 1 pair,
# 81 for 4, 120 for 7, 137 for 8), by the warps holding pixels.
STEP_FETCH_ISSUE, STEP_MMA_ISSUE, PAIR_ISSUE = 190, 33, 12
# The wgmma kernels' step, a warp (sm_90a SASS of conv2d_fold_backward_data_wgmma_n24_f32 and _n16):
# the same fetch; dy's stage rounded to TF32 in place (4 vectors of LDS.128, 4 F2FP.TF32, STS.128
# and the loop) and the second barrier, ~45; the shared addresses, fence, commit and wait, ~20; a
# chunk of up to 8 tap tiles ~52: the switch's dispatch (~8) and 4 HGMMA of ~11 instructions each
# (the descriptors' 64-bit adds, 4 R2UR into uniform registers, WARPGROUP.ARRIVE), by every warp of
# a warpgroup with pixels.
WG_ROUND_ISSUE, WG_STEP_ISSUE, WG_CHUNK_ISSUE = 45, 20, 52


@dataclasses.dataclass(frozen=True)
class Plan:
    nt: int        # the kernel's TAP_TILES entry
    tw: int        # dx columns of a tile
    th: int        # dx rows of a segment
    bp: int        # dy rows of a band (at most PIX // qw)
    wr: int        # window rows: a power of two >= bp*sh + (kh - 1)*dh
    sv: int        # the most column taps a dx column meets
    rv: int        # the most row taps a dx row meets
    tasks: int
    bands: int     # bands a task walks (the largest segment's)
    qw: int        # the most dy columns a tile needs
    smem: int      # dynamic shared memory, bytes
    wg: bool = False  # the wgmma kernel (sm_90a) rather than mma.sync's

    @property
    def kernel(self) -> str:
        return f"conv2d_fold_backward_data_{MMAS[self.wg]}_n{self.nt}"


def span(size: int, k: int, stride: int, dil: int) -> int:
    """The most dy coordinates whose windows reach ``size`` consecutive dx coordinates."""
    return (size - 1 + (k - 1) * dil) // stride + 1


def smem_bytes(g, tw: int, wr: int, sv: int, rv: int, wg: bool = False) -> int:
    """FoldSmem's total (kernels/conv2d_fold.cu), in bytes, and the wgmma kernels' alignment."""
    Cg, Kg, w = g.C // g.groups, g.K // g.groups, g.win
    nr = cdiv(tap_tiles(g), 2) * 16
    ldg = nr + 1
    words = cdiv(Kg, KC) * nr * KC + 2 * PIX * KC + PIX * ldg + Cg * wr * tw + tw * (sv + 1) + wr * (rv + 1) + TASK_WORDS
    return 4 * words + WG_ALIGN * wg


def tap_tiles(g) -> int:
    """The 8-wide MMA tiles of the kernels' Cg*kh*kw taps (w's rows in shared memory: whole pairs)."""
    return cdiv(g.C // g.groups * g.win.kh * g.win.kw, 8)


def wgmma_built(cc: int) -> bool:
    """Whether the family's build for compute capability ``cc`` has the wgmma kernels
    (gpucnn.runtime.loader builds it for the architecture-specific sm_90a on 9.0)."""
    return bool(loader.arch_options(FAMILY, cc))


def _mma_warps(p: Plan) -> int:
    """The warps holding a band's pixels (one m16 tile each; wgmma: whole warpgroups of 4)."""
    warps = cdiv(min(PIX, p.bp * p.qw), 16)
    return 4 * cdiv(warps, 4) if p.wg else warps


def band_step_issue(g, p: Plan) -> float:
    """Warp-instructions a block issues for a band's MMA steps (STEP_*_ISSUE; wgmma: WG_STEP_*)."""
    if p.wg:
        per_warp = WG_STEP_ISSUE + WG_CHUNK_ISSUE * cdiv(tap_tiles(g), 8)
        return cdiv(g.K // g.groups, KC) * THREADS // 32 * (STEP_FETCH_ISSUE + WG_ROUND_ISSUE + per_warp)
    per_warp = STEP_MMA_ISSUE + PAIR_ISSUE * cdiv(tap_tiles(g), 2)
    return cdiv(g.K // g.groups, KC) * (THREADS // 32 * STEP_FETCH_ISSUE + _mma_warps(p) * per_warp)


def band_mmas(g, p: Plan) -> int:
    """m16n8k8 MMAs a block runs a band: its warps with pixels x k-slices x tap tiles."""
    return _mma_warps(p) * cdiv(g.K // g.groups, KC) * KC // 8 * tap_tiles(g)


def band_fold_issue(g, p: Plan) -> float:
    """Lane-instructions of a band's fold, per column of the tile: each window
    cell the band reaches (a row, all Cg channels) costs CELL_ISSUE and walks
    the column's taps (kw / (sw / gcd(sw, dw)) on average, COLUMN_TAP_ISSUE
    each), each (row tap, column tap) pair 1 + 2 Cg; a band completes bp*sh
    rows, whose pixels hold kh*kw / (sh*sw) taps each on average."""
    w, Cg = g.win, g.C // g.groups
    rows = (p.bp - 1) * w.sh + (w.kh - 1) * w.dh + 1
    columns = w.kw / (w.sw // math.gcd(w.sw, w.dw))
    taps = p.bp * w.sh * w.kh * w.kw / (w.sh * w.sw)
    return p.tw * (rows * (CELL_ISSUE + columns * COLUMN_TAP_ISSUE) + taps * (1 + 2 * Cg))


def blocks_per_sm(p: Plan) -> int:
    """Blocks of plan ``p`` an SM holds: its kernel's registers (REG_BLOCKS) and its shared memory."""
    return max(1, min(REG_BLOCKS[p.nt], SM_SMEM // (p.smem + BLOCK_RESERVED)))


def band_sm_clocks(mma: float, fold: float, per_sm: int, mma_issue: float = 0.0) -> float:
    """SM clocks for per_sm blocks to each run a band of ``mma`` tensor-pipe
    clocks (``mma_issue`` of them issuing) then ``fold`` issue clocks: a block's
    own band takes mma + fold (barriers order them), and the SM's tensor pipe
    and issue slots are shared, so one block's fold runs beside another's MMAs."""
    return max(per_sm * mma, per_sm * (mma_issue + fold), mma + fold)


def cost(g, p: Plan, sms: int) -> float:
    """Relative SM clocks of plan ``p``: whole waves of tasks (blocks_per_sm an
    SM) x a task's bands x band_sm_clocks (the band's MMAs at MMA_CLOCKS, its
    fold at 4 warp-instructions a clock)."""
    per_sm = blocks_per_sm(p)
    mma = band_mmas(g, p) * (MMA_CLOCKS_WG if p.wg else MMA_CLOCKS)
    clocks = band_sm_clocks(mma, band_fold_issue(g, p) / 32 / 4, per_sm,
                            band_step_issue(g, p) / 4)
    return cdiv(p.tasks, sms * per_sm) * p.bands * clocks


def ok(g, cc: int = 90) -> bool:
    """Whether the fold kernels can run ``g`` on compute capability ``cc``:
    tensor cores (sm_80 and newer) and a plan (1 to SMALL_C channels a group,
    at most 192 taps, shared memory that fits; the SM count only weighs plans)."""
    return cc >= 80 and plan(g, 132, cc) is not None


def _sizes(n: int) -> list[int]:
    """The distinct tile sizes ceil(n / parts) of n, largest first."""
    return sorted({cdiv(n, parts) for parts in range(1, n + 1)}, reverse=True)


# What tests force (force_layout, force_mma): one context variable holding both.
_forced: contextvars.ContextVar[dict] = contextvars.ContextVar("gpucnn_fold_forced", default={})


@contextlib.contextmanager
def _force(**what):
    token = _forced.set({**_forced.get(), **what})
    try:
        yield
    finally:
        _forced.reset(token)


def force_layout(tw: int, th: int):
    """Tiles of ``tw`` dx columns and segments of ``th`` rows inside the block (tests)."""
    return _force(layout=(tw, th))


def force_mma(kind: str):
    """The fold kernels of MMA kind ``kind`` (MMAS) inside the block, where the build has it (tests)."""
    if kind not in MMAS:
        raise ValueError(f"kind must be one of {MMAS}, not {kind!r}")
    return _force(mma=kind)


def plan(g, sms: int, cc: int = 90) -> Plan | None:
    """The cheapest layout (``cost``) whose shared memory fits, with the
    cheaper of the MMA kinds the build has (mma.sync everywhere, wgmma on
    wgmma_built), or None; the forced layout (force_layout) and kind (force_mma)
    where they can run."""
    return _plan(g, sms, cc, _forced.get().get("layout"), _forced.get().get("mma"))


@functools.lru_cache(maxsize=256)
def _plan(g, sms: int, cc: int, forced: tuple | None, mma: str | None = None) -> Plan | None:
    w, Cg = g.win, g.C // g.groups
    taps = Cg * w.kh * w.kw
    if Cg > SMALL_C or taps > 8 * TAP_TILES[-1] or min(g.N, w.H, w.W, w.P, w.Q) == 0:
        return None
    nt = next(n for n in TAP_TILES if 8 * n >= taps)
    sv, rv = axis_taps(w.kw, w.sw, w.dw), axis_taps(w.kh, w.sh, w.dh)
    limit = SMEM_LIMIT.get(cc, SMEM_DEFAULT)
    best, best_cost = None, None
    kinds = (False, True) if wgmma_built(cc) else (False,)  # mma.sync's kernels run on sm_90a too
    if mma is not None:
        kinds = tuple(k for k in kinds if MMAS[k] == mma) or kinds
    for wg, tw in itertools.product(kinds, [min(forced[0], w.W)] if forced else _sizes(w.W)):
        qw = min(w.Q, span(tw, w.kw, w.sw, w.dw))
        if tw > MAX_TW or qw > PIX:
            continue
        bp = PIX // qw
        wr = 1 << ((bp * w.sh + (w.kh - 1) * w.dh) - 1).bit_length()
        smem = smem_bytes(g, tw, wr, sv, rv, wg)
        if smem > limit:
            continue
        for th in [min(forced[1], w.H)] if forced else _sizes(w.H):
            bands = cdiv(min(w.P, span(th, w.kh, w.sh, w.dh)), bp)
            p = Plan(nt, tw, th, bp, wr, sv, rv, g.N * g.groups * cdiv(w.H, th) * cdiv(w.W, tw), bands, qw, smem,
                     wg)
            c = cost(g, p, sms)
            if best_cost is None or c < best_cost:
                best, best_cost = p, c
    return best


def backward_data(rt, dy, w, dx, g, geom, p: Plan) -> None:
    """dx from dy on plan ``p`` (plan(g, ...) for the runtime's device)."""
    launch_tasks(rt, FAMILY, p.kernel, dy.dtype, p.tasks, THREADS,
                 (dy, w, dx, *geom, *(np.int32(v) for v in (p.tw, p.th, p.bp, p.wr, p.sv, p.rv))), p.smem)
