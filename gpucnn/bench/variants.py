"""Kernel variants that a GPU run times side by side (bench/ab_mem.py, gpu.sh's
step 5d) and runs under compute-sanitizer (bench/gpu_launches.py small): each a
list of module switches, set around a call and restored after it.

  pooling forward: pool2d.cu's stride-2 pair kernels (pool.USE_PAIRS, the
  default) against the generic one-output-a-thread kernels;
  batch norm's statistics and backward, and the bias gradient: channel.cuh's
  reductions chunked into one wave of resident blocks (norm.REDUCE_WAVES = 1,
  the default) against four (smaller chunks, blocks out of step); the
  statistics also through batchnorm_stats_async_f32 (norm.STATS_ASYNC: the
  loads as cp.async copies into shared memory, 7 groups ahead), in one wave
  and in four, and with its four per-channel results made by one allocation
  (norm.STATS_ONE_ALLOCATION: the host path of a call, which bounds the
  33.6 MB rows).

CONV (bench/ab_conv.py, gpu.sh's step 5e): the convolution kernels as built
against a build that asks ptxas for more blocks an SM (loader.BUILD), on
sm_90: the tensor-core 64 tile's kernels 4 (at most 128 registers, where they
hold 138-141 in tf32 and 3 blocks fit; 110-126 without a spill, so 16 warps an
SM where the H200 run of 2026-11-30 found the tile at 18% occupancy with its
SMs 36% busy) and the FFMA wide float tile's forward and backward-data kernels
3 (at most 85 registers, where they hold 101-115 and 2 fit; 79-80 without a
spill, 24 warps an SM where the run found 25% occupancy, SMs 63% busy); and
the tensor-core wide tile (64 x 128, TF32's workhorse) with 2 pipeline stages
where 3, so 55 KiB of shared memory where 79 (which held it to 2 blocks), and
3 blocks an SM (its tf32 kernels 132-154 registers where 168-186, no spill).
"""
from __future__ import annotations

import contextlib

from gpucnn.cuda import norm, pool
from gpucnn.runtime import loader

POOL = {"pairs": [(pool, "USE_PAIRS", True)], "generic": [(pool, "USE_PAIRS", False)]}
WAVES = {"1 wave": [(norm, "REDUCE_WAVES", 1)], "4 waves": [(norm, "REDUCE_WAVES", 4)]}
STATS = {**WAVES, "async": [(norm, "STATS_ASYNC", True)],
         "async, 4 waves": [(norm, "STATS_ASYNC", True), (norm, "REDUCE_WAVES", 4)],
         "one allocation": [(norm, "STATS_ONE_ALLOCATION", True)]}
MORE_BLOCKS = ("-DGPUCNN_TC64_BLOCKS=4", "-DGPUCNN_FFMA_BLOCKS=3", "-DGPUCNN_TC64W_STAGES=2")
CONV = {"as built": [(loader, "BUILD", ())], "more blocks an SM": [(loader, "BUILD", MORE_BLOCKS)]}
VARIANTS = {  # (op, pass) -> {variant: [(module, switch, value), ...]}
    ("max_pool", "forward"): POOL, ("avg_pool", "forward"): POOL,
    ("batchnorm", "stats"): STATS, ("batchnorm", "backward"): WAVES, ("bias_grad", "backward"): WAVES,
}


@contextlib.contextmanager
def switches(settings):
    """Each (module, name, value) of ``settings`` set, then restored."""
    saved = [(m, n, getattr(m, n)) for m, n, _ in settings]
    for m, n, v in settings:
        setattr(m, n, v)
    try:
        yield
    finally:
        for m, n, v in saved:
            setattr(m, n, v)


def wrap(fn, settings):
    """fn run with ``settings`` set."""
    def run(*args):
        with switches(settings):
            return fn(*args)
    return run
