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

CONV (bench/ab_conv.py, gpu.sh's step 5e): the tensor-core 64 tile's kernels
as built (sm_90: 3 blocks an SM by their 138-141 registers in tf32, 3 or 4 in
3xTF32) against the same kernels built asking ptxas for 4 blocks an SM
(loader.TC64_BLOCKS: at most 128 registers, which ptxas met without a spill,
so 16 warps an SM where the H200 run of 2026-11-30 found the tile at 18%
occupancy with its SMs 36% busy).
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
CONV = {"as built": [(loader, "TC64_BLOCKS", None)], "4 blocks an SM": [(loader, "TC64_BLOCKS", 4)]}
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
