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
waves of tasks (one block an SM) x a task's band count x (the MMAs of a band
+ its fold), so tiles stay wide (little overlap) while the tasks still fill
the SMs: resnet-stem (224 x 224, 7x7 / 2, 16 images) takes 2 tiles of 112
columns (59 dy columns, 2 rows a band) and 4 segments of 56 rows: 128 tasks
for 132 SMs; deepspeech (161 x 700, 5x20 / 2) 3 tiles of 234 columns (126
dy columns, a row a band) and 3 segments.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math

from gpucnn.cuda.algo_direct import SMALL_C, cdiv
import numpy as np

from gpucnn.cuda.launch import launch_tasks

FAMILY = "conv2d_fold"
KERNELS = ()
F32_KERNELS = tuple(f"conv2d_fold_backward_data_tf32_n{nt}_f32" for nt in (8, 16, 24))  # float only
THREADS, PIX, KC = 256, 128, 32  # FOLD_THREADS, FOLD_PIX, FOLD_KC
TAP_TILES = (8, 16, 24)  # the kernels' NT: 8-wide MMA tiles of taps they hold (accumulators: 4 NT registers)
MAX_TW = THREADS  # a fold thread owns one column of the tile
# dynamic shared memory a block may opt in to, by compute capability (bytes)
SMEM_LIMIT = {80: 166912, 87: 166912, 90: 232448, 100: 232448, 103: 232448}
SMEM_DEFAULT = 101376
MMA_CLOCKS = 2.0  # SM clocks a block's m16n8k8 takes at mma.sync's ~half rate (gpucnn.bench.model_consts)
# The fold's lane-instructions (sm_90 SASS of fold_band<3>, bench/results/static-sm90.md): its tap
# loop issues 50 instructions for 12 FADD (4 taps x 3 channels: a row offset's LDS, address
# arithmetic, 3 LDS and 3 FADD a tap); a window cell visit (loads, stores, tables, loop) about 24.
ADD_ISSUE, CELL_ISSUE = 4.2, 24


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

    @property
    def kernel(self) -> str:
        return f"conv2d_fold_backward_data_tf32_n{self.nt}"


def axis_taps(k: int, stride: int, dil: int) -> int:
    """The most taps of k that one coordinate meets along an axis: every stride / gcd(stride, dil)-th."""
    return cdiv(k, stride // math.gcd(stride, dil))


def span(size: int, k: int, stride: int, dil: int) -> int:
    """The most dy coordinates whose windows reach ``size`` consecutive dx coordinates."""
    return (size - 1 + (k - 1) * dil) // stride + 1


def smem_bytes(g, tw: int, wr: int, sv: int, rv: int) -> int:
    """FoldSmem's total (kernels/conv2d_fold.cu), in bytes."""
    Cg, Kg, w = g.C // g.groups, g.K // g.groups, g.win
    nt = cdiv(Cg * w.kh * w.kw, 8)
    nr, ldg = cdiv(nt, 2) * 16, nt * 8 + 1
    words = cdiv(Kg, KC) * nr * KC + 2 * PIX * KC + PIX * ldg + Cg * wr * tw + tw * (sv + 1) + wr * (rv + 1)
    return 4 * words


def band_mmas(g, p: Plan) -> int:
    """m16n8k8 MMAs a block runs a band: its warps with pixels x k-slices x tap tiles."""
    Cg, w = g.C // g.groups, g.win
    return cdiv(min(PIX, p.bp * p.qw), 16) * cdiv(g.K // g.groups, KC) * KC // 8 * cdiv(Cg * w.kh * w.kw, 8)


def band_fold_issue(g, p: Plan) -> float:
    """Lane-instructions of a band's fold: each window cell the band reaches (a
    channel, a row, a column) costs CELL_ISSUE, each tap added ADD_ISSUE; a
    band completes bp*sh rows, whose pixels hold kh*kw / (sh*sw) taps each on
    average."""
    w, Cg = g.win, g.C // g.groups
    rows = (p.bp - 1) * w.sh + (w.kh - 1) * w.dh + 1
    adds = p.bp * w.sh * w.kh * w.kw / (w.sh * w.sw)
    return Cg * p.tw * (rows * CELL_ISSUE + adds * ADD_ISSUE)


def cost(g, p: Plan, sms: int) -> float:
    """Relative SM clocks of plan ``p``: whole waves of tasks (one block an SM)
    x a task's bands x (the band's MMAs at MMA_CLOCKS + its fold at 4
    warp-instructions a clock)."""
    return cdiv(p.tasks, sms) * p.bands * (band_mmas(g, p) * MMA_CLOCKS + band_fold_issue(g, p) / 32 / 4)


def ok(g, cc: int = 90) -> bool:
    """Whether the fold kernels can run ``g``: 1 to SMALL_C channels a group,
    at most 192 taps, and a plan whose shared memory fits."""
    return g.C // g.groups <= SMALL_C and g.C // g.groups * g.win.kh * g.win.kw <= 8 * TAP_TILES[-1] \
        and plan(g, 132, cc) is not None


def _sizes(n: int) -> list[int]:
    """The distinct tile sizes ceil(n / parts) of n, largest first."""
    return sorted({cdiv(n, parts) for parts in range(1, n + 1)}, reverse=True)


_forced: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("gpucnn_fold_layout", default=None)


@contextlib.contextmanager
def force_layout(tw: int, th: int):
    """Tiles of ``tw`` dx columns and segments of ``th`` rows inside the block (tests)."""
    token = _forced.set((tw, th))
    try:
        yield
    finally:
        _forced.reset(token)


def plan(g, sms: int, cc: int = 90) -> Plan | None:
    """The cheapest layout (``cost``) whose shared memory fits, or None; the
    forced one (force_layout) where it can run."""
    return _plan(g, sms, cc, _forced.get())


@functools.lru_cache(maxsize=256)
def _plan(g, sms: int, cc: int, forced: tuple | None) -> Plan | None:
    w, Cg = g.win, g.C // g.groups
    taps = Cg * w.kh * w.kw
    if Cg > SMALL_C or taps > 8 * TAP_TILES[-1] or min(g.N, w.H, w.W, w.P, w.Q) == 0:
        return None
    nt = next(n for n in TAP_TILES if 8 * n >= taps)
    sv, rv = axis_taps(w.kw, w.sw, w.dw), axis_taps(w.kh, w.sh, w.dh)
    limit = SMEM_LIMIT.get(cc, SMEM_DEFAULT)
    best, best_cost = None, None
    for tw in [min(forced[0], w.W)] if forced else _sizes(w.W):
        qw = min(w.Q, span(tw, w.kw, w.sw, w.dw))
        if tw > MAX_TW or qw > PIX:
            continue
        bp = PIX // qw
        wr = 1 << ((bp * w.sh + (w.kh - 1) * w.dh) - 1).bit_length()
        smem = smem_bytes(g, tw, wr, sv, rv)
        if smem > limit:
            continue
        for th in [min(forced[1], w.H)] if forced else _sizes(w.H):
            bands = cdiv(min(w.P, span(th, w.kh, w.sh, w.dh)), bp)
            p = Plan(nt, tw, th, bp, wr, sv, rv, g.N * g.groups * cdiv(w.H, th) * cdiv(w.W, tw), bands, qw, smem)
            c = cost(g, p, sms)
            if best_cost is None or c < best_cost:
                best, best_cost = p, c
    return best


def backward_data(rt, dy, w, dx, g, geom, p: Plan) -> None:
    """dx from dy on plan ``p`` (plan(g, ...) for the runtime's device)."""
    launch_tasks(rt, FAMILY, p.kernel, dy.dtype, p.tasks, THREADS,
                 (dy, w, dx, *geom, *(np.int32(v) for v in (p.tw, p.th, p.bp, p.wr, p.sv, p.rv))), p.smem)
