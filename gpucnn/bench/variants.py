"""Kernel variants that a GPU run times side by side (bench/ab_mem.py, gpu.sh's
step 5d) and runs under compute-sanitizer (bench/gpu_launches.py small): each a
list of module switches, set around a call and restored after it.

  pooling forward: pool2d.cu's stride-2 pair kernels (pool.USE_PAIRS, the
  default) with two output rows a thread (pool.PAIR_ROWS = 2, the default's
  choice where the launch is large) and one (a pair a thread, the side column
  from the neighbour lane), against the generic one-output-a-thread kernels;
  batch norm's statistics and backward, and the bias gradient: channel.cuh's
  reductions chunked into one wave of resident blocks (norm.REDUCE_WAVES = 1,
  the default) against four (smaller chunks, blocks out of step); the
  statistics through batchnorm_stats_f32 (plain loads) and through
  batchnorm_stats_async_f32 (norm.STATS_ASYNC, the default since session 20:
  the loads as cp.async copies into shared memory, 7 groups ahead), each in
  one wave and in four, and with its four per-channel results made by one
  allocation (norm.STATS_ONE_ALLOCATION: the host path of a call, which bounds
  the 33.6 MB rows); the bias gradient through conv2d_bias_grad_f32 (plain
  loads) in one wave and four, and through conv2d_bias_grad_async_f32
  (conv.BIAS_ASYNC, the default since session 23: the statistics' ring).

CONV (bench/ab_conv.py, gpu.sh's step 5e): the convolution kernels as built
against two builds (loader.BUILD), on sm_90. "fewer blocks an SM" is session
19's build: the FFMA wide float tile's forward and backward-data kernels at 2
blocks an SM (101-115 registers) where they are built for 3 (79-80), and
TF32's tensor-core wide tile (64 x 128) with 3 pipeline stages and 2 blocks
where it is built with 2 and 3 (the H200 run of 2026-11-30, session 20, timed
those builds the other way round: 0.71-0.92 on resnet-3x3 and cifar-resnet,
1.00-1.22 on cifar-resnet-s2 and resnet-7x7x512). "more blocks an SM": the
tensor-core 64 tile's kernels at 4 blocks (at most 128 registers, 110-126
without a spill) where they hold 138-141 in tf32 and 3 fit (the same run:
0.74-0.97 on cifar-resnet's and cifar-resnet-s2's forward and backward-data in
tf32, 1.06-1.11 on resnet-3x3 and resnet-7x7x512; 0.93-0.97 on 3xtf32's
forward).
"""
from __future__ import annotations

import contextlib

from gpucnn.cuda import conv, norm, pool
from gpucnn.runtime import loader

POOL = {"two rows": [(pool, "USE_PAIRS", True), (pool, "PAIR_ROWS", 2)],
        "one row": [(pool, "USE_PAIRS", True), (pool, "PAIR_ROWS", 1)],
        "generic": [(pool, "USE_PAIRS", False)]}
WAVES = {"1 wave": [(norm, "REDUCE_WAVES", 1)], "4 waves": [(norm, "REDUCE_WAVES", 4)]}
STATS = {"1 wave": [(norm, "STATS_ASYNC", False), (norm, "REDUCE_WAVES", 1)],
         "4 waves": [(norm, "STATS_ASYNC", False), (norm, "REDUCE_WAVES", 4)],
         "async": [(norm, "STATS_ASYNC", True), (norm, "REDUCE_WAVES", 1)],
         "async, 4 waves": [(norm, "STATS_ASYNC", True), (norm, "REDUCE_WAVES", 4)],
         "one allocation": [(norm, "STATS_ONE_ALLOCATION", True)]}
BIAS = {"1 wave": [(conv, "BIAS_ASYNC", False), (norm, "REDUCE_WAVES", 1)],
        "4 waves": [(conv, "BIAS_ASYNC", False), (norm, "REDUCE_WAVES", 4)],
        "async": [(conv, "BIAS_ASYNC", True), (norm, "REDUCE_WAVES", 1)]}
FEWER_BLOCKS = ("-DGPUCNN_FFMA_BLOCKS=2", "-DGPUCNN_TC64W_STAGES=3")
MORE_BLOCKS = ("-DGPUCNN_TC64_BLOCKS=4",)
CONV = {"as built": [(loader, "BUILD", ())], "fewer blocks an SM": [(loader, "BUILD", FEWER_BLOCKS)],
        "more blocks an SM": [(loader, "BUILD", MORE_BLOCKS)]}
VARIANTS = {  # (op, pass) -> {variant: [(module, switch, value), ...]}
    ("max_pool", "forward"): POOL, ("avg_pool", "forward"): POOL,
    ("batchnorm", "stats"): STATS, ("batchnorm", "backward"): WAVES, ("bias_grad", "backward"): BIAS,
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
