"""Launch shapes of the tiled GEMM kernels (kernels/gemm.cuh), shared by the
families built on it (conv2d, linear).

A block computes a BM x BN tile of a GEMM (FFMA_TILES, or a tensor-core tile): grid x runs over column
tiles, y over row tiles and z over repeats (groups, reduction splits); the
kernels loop over z, so the grid is capped at ``max_z`` there. A reduction
that is long next to its tile count is split over z: each split writes its
own partial result and a second kernel adds them in split order, so the bits
never depend on timing.
"""
from __future__ import annotations

from gpucnn.cuda.launch import opt_in
from gpucnn.runtime import loader

TILE_M, TILE_N, TILE_K, THREADS = 64, 64, 16, 256  # GemmWide's BM, BN, GEMM_BK, THREADS
# tile rows -> (BM, BN, threads, kernel-name suffix): gemm.cuh's GemmWide and
# GemmNarrow (conv2d.cu's conv2d_*_m32_T entry points; linear uses the wide one)
FFMA_TILES = {64: (TILE_M, TILE_N, THREADS, ""), 32: (32, 64, 128, "_m32")}
MAX_GRID_Y = 65535
_INT_MAX = 2**31 - 1


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def fits_int(family: str, *counts) -> None:
    """The kernels index elements within one tensor with int (offsets are 64-bit)."""
    if max(counts) > _INT_MAX:
        raise ValueError(f"{family} kernels: an element count {max(counts)} exceeds 2**31 - 1; "
                         "split the batch")


def launch_gemm(rt, family: str, plan, rows: int, cols: int, z: int, max_z: int, args: tuple) -> None:
    """Launch the tile kernel of ``plan`` (gpucnn.cuda.tc.Plan) over a rows x
    cols GEMM, repeated z times."""
    grid = (cdiv(cols, plan.bn), cdiv(rows, plan.bm), min(z, max_z))
    if grid[1] > MAX_GRID_Y:
        raise ValueError(f"{family} kernels: {rows} GEMM rows exceed {MAX_GRID_Y} tiles")
    fn = rt.function(family, plan.name)
    smem = plan.smem
    if loader.BUILD:  # an A/B build (bench/ab_conv.py) may take less: its wide tile's fewer stages
        from gpucnn.cuda import tc
        smem = tc.build_smem(plan)
    opt_in(fn, smem)
    fn(grid, (plan.threads,), args, shared_mem=smem)


def split_reduction(k: int, tiles: int, target_blocks: int, min_steps: int, step: int = TILE_K) -> tuple[int, int]:
    """(chunk, splits): a reduction over ``k`` indices in ``splits`` chunks of
    ``chunk`` (a multiple of ``step``), until about ``target_blocks`` blocks run
    over ``tiles`` output tiles, each reducing at least ``min_steps`` steps.
    Depends on the shapes only, so the summation order is fixed."""
    splits = max(1, min(cdiv(target_blocks, tiles), cdiv(k, min_steps * step)))
    chunk = cdiv(cdiv(k, splits), step) * step
    return chunk, max(1, cdiv(k, chunk))
