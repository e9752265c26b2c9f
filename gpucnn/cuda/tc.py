"""Which GEMM kernel a float32 convolution or linear pass launches: the FFMA
tile (kernels/gemm.cuh) or a tensor-core tile (kernels/tc_gemm.cuh) in the
math mode in force (gpucnn.mathmode), and which tensor-core tile.

Tiles are named by their rows: 128 (TcLarge, 128 x 128), 64 (TcSmall,
64 x 64) and 32 (TcNarrow, 32 x 128, conv2d's kernels only: NARROW).

``tc_config`` is the pure per-shape choice (tested as a table); ``plan``
applies it for a runtime's device; ``force_tile`` overrides it (tests and
benchmarks).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses

import numpy as np

from gpucnn import mathmode
from gpucnn.cuda import gemm
from gpucnn.cuda.launch import kernel_name

TC_K, STAGES = 32, 3  # TC_BK, TC_STAGES
HANDLE_BYTES, KTAB_BYTES = 24, 24  # TC_HANDLE_BYTES, TC_KTAB_BYTES
# tile (its rows) -> (rows, columns, threads per block): TcLarge, TcSmall, TcNarrow
TC_TILES = {128: (128, 128, 256), 64: (64, 64, 128), 32: (32, 128, 128)}
NARROW_ROWS = 32
# the kernels that have the 32-row tile (kernels/conv2d.cu's TC_NARROW_VARIANTS)
NARROW = frozenset({"conv2d_forward", "conv2d_backward_data", "conv2d_backward_filter"})
_forced: contextvars.ContextVar[int | None] = contextvars.ContextVar("gpucnn_tc_tile", default=None)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The kernel of one GEMM launch and its tile."""
    name: str
    bm: int
    bn: int
    threads: int
    k_step: int   # the reduction step (split chunks are multiples of it)
    smem: int = 0  # dynamic shared memory per block


def smem_bytes(edge: int) -> int:
    """TcTile<rows, columns>::SMEM of tile ``edge``: pipeline stages, k-tables and handles."""
    bm, bn, _ = TC_TILES[edge]
    return STAGES * ((bm + bn) * TC_K * 4 + TC_K * KTAB_BYTES) + (bm + bn) * HANDLE_BYTES


# Compute capabilities whose blocks may have more than 99 KiB of shared memory
# (sm_80, sm_87, sm_90, sm_100): the others (sm_86, sm_89, sm_120) cannot hold
# the 128 x 128 tile's 104 KiB and use the 64 x 64 tile.
_LARGE_SMEM_CCS = (80, 87, 90, 100, 103)


def tc_config(M: int, N: int, batches: int, sm_count: int, cc: int = 90, narrow: bool = False) -> int:
    """The tensor-core tile for an M x N GEMM repeated ``batches`` times
    (groups, splits) on ``sm_count`` multiprocessors of compute capability
    ``cc``: 128 when its tiles fill every SM at least once, both sides are
    longer than 64 and the device's blocks can hold it, else 64 (four times
    the blocks, for small problems). A side of at most 64 (a 64-filter
    layer's forward) leaves half of every 128 tile empty: there its loop
    issues 982 instructions per 64 HMMA of which 32 count, against the 64
    tile's 817 per 32 (tf32 forward; 3xtf32 1578 per 192 against 1215 per
    96; bench/results/static-sm90.md), so the 64 tile is 1.2-1.3x faster.
    With ``narrow`` (the kernel has the 32-row tile, NARROW) and at most 32
    rows but more than 64 columns (32 filters: deepspeech, mnist), 32: the
    64 tile's lower two warps would multiply empty rows, half its HMMA; the
    32 x 128 tile's four warps all hold live rows at the same 32 x 32 warp
    tile, its fetch a quarter larger a step (B's 128 columns gathered
    against 64, A's 32 rows against 64)."""
    if narrow and M <= NARROW_ROWS < 64 < N:
        return NARROW_ROWS
    large = -(-M // 128) * -(-N // 128) * batches
    return 128 if large >= sm_count and min(M, N) > 64 and cc in _LARGE_SMEM_CCS else 64


@contextlib.contextmanager
def force_tile(edge: int | None):
    """Use tensor-core tile ``edge`` (128, 64 or 32) inside the block, whatever the
    shape; kernels without the 32-row tile (not in NARROW) take 64 for 32."""
    if edge is not None and edge not in TC_TILES:
        raise ValueError(f"tensor-core tile must be one of {tuple(TC_TILES)} or None, got {edge!r}")
    token = _forced.set(edge)
    try:
        yield
    finally:
        _forced.reset(token)


def variants(base: str) -> list[str]:
    """The tensor-core kernels of ``base``: one per mode and tile (tc_gemm.cuh's
    TC_VARIANTS, and TC_NARROW_VARIANTS for NARROW)."""
    return [f"{base}_{mode}_{edge}" for mode in mathmode.MODES if mode != "fp32" for edge in TC_TILES
            if edge != NARROW_ROWS or base in NARROW]


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
}
# Shared memory per SM (KiB) by compute capability, 1 KiB of it reserved per
# block (CUDA C Programming Guide, compute capabilities table).
_SMEM_PER_SM_KIB = {80: 164, 86: 100, 87: 164, 89: 100, 90: 228, 100: 228, 103: 228}


def blocks_per_sm(pass_: str, mode: str, edge: int, cc: int) -> int:
    """Resident blocks per SM of conv2d's ``pass_`` kernel in ``mode`` on the
    ``edge`` tile: sm_90's, capped by the shared memory of compute capability ``cc``."""
    by_smem = _SMEM_PER_SM_KIB.get(cc, 100) * 1024 // (smem_bytes(edge) + 1024)
    return max(1, min(_BLOCKS_SM90[pass_, mode, edge], by_smem))


def forced_tile() -> int | None:
    """The edge ``force_tile`` sets, or None."""
    return _forced.get()


def tile_edge(M: int, N: int, batches: int, sm_count: int, cc: int, narrow: bool = False) -> int:
    """``tc_config``'s tile, or the one ``force_tile`` sets (64 for 32 without ``narrow``)."""
    forced = _forced.get()
    if forced:
        return 64 if forced == NARROW_ROWS and not narrow else forced
    return tc_config(M, N, batches, sm_count, cc, narrow)


def plan_for(base: str, dtype, mode: str, edge: int | None = None) -> Plan:
    """The kernel of ``base`` in math ``mode`` for ``dtype``: in "tf32" and
    "3xtf32" (float32 only) the tensor-core tile of ``edge``; else the FFMA tile
    of ``edge`` rows (gemm.FFMA_TILES; None: the 64-row one)."""
    if np.dtype(dtype) == np.float32 and mode != "fp32":
        bm, bn, threads = TC_TILES[edge]
        return Plan(f"{base}_{mode}_{edge}", bm, bn, threads, TC_K, smem_bytes(edge))
    bm, bn, threads, suffix = gemm.FFMA_TILES[edge or gemm.TILE_M]
    return Plan(kernel_name(base + suffix, dtype), bm, bn, threads, gemm.TILE_K)


def plan(rt, base: str, dtype, rows: int, cols: int, batches: int) -> Plan:
    """The kernel for ``base`` over a rows x cols GEMM repeated ``batches`` times."""
    if np.dtype(dtype) == np.float32:
        cc, sms = rt.device()
        mode = mathmode.effective(cc)
        if mode != "fp32":
            return plan_for(base, dtype, mode, tile_edge(rows, cols, batches, sms, cc, base in NARROW))
    return plan_for(base, dtype, "fp32")
