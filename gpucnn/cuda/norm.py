"""Launch code of kernels/batchnorm.cu (same interface as gpucnn.reference.norm).

The reductions run in two levels (kernels/channel.cuh): ``channel_chunks``
splits each channel's n = N*H*W values into chunks, one (channel, chunk)
block each, so that all the blocks are resident at once on the device's SMs
(one wave, no tail: 128x64x32x32's 2048 blocks of 4096 values were 3.1 waves
of 660, the last a tenth full); each thread keeps UNROLL 16-byte groups of
each stream in flight, and the block that finishes a channel's last chunk
adds its chunk sums in chunk order, in the same launch (one launch a
reduction: the second kernel's ~2 us gap saved; ``counters`` holds the
per-channel counts that elect that block). The shape and the SM count decide
the chunks, so the bits never change from run to run on one device.
"""
from __future__ import annotations

import functools
from math import copysign
from typing import NamedTuple

import numpy as np

from gpucnn.cuda.launch import contiguous, copy_of, empty_as, i64, launch, scalar, vector_threads
from gpucnn.runtime import capture

FAMILY = "batchnorm"
KERNELS = ("batchnorm_stats", "batchnorm_forward", "batchnorm_backward_sums", "batchnorm_backward_data")
F32_KERNELS = ("batchnorm_stats_async_f32",)  # the statistics' loads through shared memory (bench/ab_mem.py)
# True: batchnorm_stats_async_f32 for float32 (the loads as cp.async copies into shared memory, 7
# groups ahead), else batchnorm_stats_f32. On the H200 (bench/results/gpu-2026-11-30-s20, step 5d,
# in a CUDA graph) it read 33.6 MB in 15.1 us where the plain kernel took 17.4 (58% of the copy rate
# where 50%) and 102.8 MB in 31.1 us where 37.2 (80% where 67%); compute-sanitizer's memcheck and
# racecheck found nothing on it (step 4). Float64 keeps the plain kernel.
STATS_ASYNC = True
# True: the statistics' four (C,) results as the rows of one (4, C) allocation
# (bench/ab_mem.py's "one allocation" variant): on the null runtime the rows
# cost more than the pool look-ups (bench/host_path.py's docstring), and on
# CuPy an allocation's cost against a view's is for gpu.sh's 2d and 5d to say.
STATS_ONE_ALLOCATION = False
THREADS = 256  # CH_THREADS: the reductions' block
UNROLL, UNROLL_BACKWARD = 4, 2  # CH_UNROLL, CH_UNROLL_BWD: groups in flight a thread, per stream
RING = 8  # CH_RING: the float reductions' cp.async ring, RING - 1 groups in flight a thread
APPLY_VECS, APPLY_VECS_BWD = 4, 2  # CH_APPLY_VECS(_BWD): forward's and backward's 16-byte vectors a thread
UNROLL_STATS_F64 = 3  # batchnorm.cu's CH_UNROLL_STATS_F64: the float64 statistics' (4 spill at 64 registers)
BLOCKS_PER_SM = 4  # CH_BLOCKS: the reductions' __launch_bounds__ minimum (64 registers; compile_check: 4)
ALIGN = 4  # a chunk holds whole 16-byte groups (4 floats, 2 doubles)
# A block's least work: one step of its threads over float4 groups (4096 values,
# 16 KiB); smaller chunks would spend more on the block's tree than on reading.
MIN_CHUNK = THREADS * UNROLL * 4
# Waves of sms * BLOCKS_PER_SM blocks the reductions' chunks make (at most;
# MIN_CHUNK bounds them): 1, a block per resident slot, all in step. On the
# H200 the one wave read 33.6 MB in 17.0 us (statistics) and 15.4 us (bias
# gradient; half the double work, so not the arithmetic), 42-46% of DRAM's
# rate with the SMs busy 77% of the time (ncu, bench/results/gpu-2026-11-30):
# four bursts of loads a thread, the wave's threads in step. Several waves
# (smaller chunks, blocks that start as others finish, out of step) are the
# alternative bench/ab_mem.py times beside it (gpu.sh's step 5d).
REDUCE_WAVES = 1
_INT_MAX = 2**31 - 1
_FLAG = (np.int32(0), np.int32(1))  # the kernels' int flags, made once (np.int32() is ~0.2 us a call)


class Geometry(NamedTuple):
    """The launch set-up of one shape (``_geometry``): the grid sizes and the
    kernels' scalar arguments, made once a shape rather than once a call."""
    C: int
    reduce_threads: int  # the reductions' C * chunks blocks of THREADS
    apply_threads: int   # the element-wise kernels' (_map_threads): batchnorm_forward's
    backward_threads: int  # and batchnorm_backward_data's
    dims: tuple          # (N, C, HW) as the kernels take them
    chunking: tuple      # (chunk, chunks) as the reductions take them
    parts: int           # the reductions' C * chunks * 2 float64 chunk sums (scratch)
    size: np.int64       # N*C*HW
    inv_n: np.float64    # 1/n, n = N*HW (nan when n = 0)
    unbias: np.float64   # n/(n-1) (nan when n < 2: training refuses those)
    inv_n_t: object      # 1/max(n, 1) in x's dtype


def _geometry(x, sms: int) -> Geometry:
    return _shape_geometry(x.shape, x.dtype, sms, MIN_CHUNK, REDUCE_WAVES)  # read here: tests and the A/B set them


@functools.lru_cache(maxsize=256)
def _shape_geometry(shape: tuple, dtype, sms: int, min_chunk: int, waves: int = 1) -> Geometry:
    """Memoised: a layer's shape repeats call after call, and the ~15 scalars
    and the chunking cost ~3 us a call (null runtime)."""
    N, C, H, W = shape
    if max(N, C, H * W) > _INT_MAX:
        raise ValueError(f"batch norm: N, C and H*W must fit in int32, got shape {tuple(shape)}")
    n, size = N * H * W, N * C * H * W
    chunk, chunks = _chunks(C, n, sms, min_chunk, waves)
    return Geometry(C, C * chunks * THREADS, _map_threads(size, H * W, dtype, APPLY_VECS),
                    _map_threads(size, H * W, dtype, APPLY_VECS_BWD), (np.int32(N), np.int32(C), i64(H * W)),
                    (i64(chunk), np.int32(chunks)), C * chunks * 2, i64(size), np.float64(1 / n if n else np.nan),
                    np.float64(n / (n - 1) if n > 1 else np.nan), scalar(dtype, 1.0 / max(n, 1)))


def _map_threads(size: int, HW: int, dtype, vecs: int) -> int:
    """Threads of an element-wise kernel (channel_apply): one for every
    ``vecs`` 16-byte vectors when HW is a multiple of one (its vector loop;
    the 128x64x32x32 case once launched x.size threads, 3/4 of its 32768
    blocks empty), else one an element (the scalar loop, one load in flight a
    thread: a grid a quarter the size would leave each thread four loads in a
    row)."""
    per_vec = 16 // np.dtype(dtype).itemsize
    return -(-vector_threads(size, dtype) // vecs) if HW % per_vec == 0 else size


def channel_chunks(C: int, n: int, sms: int, waves: int = 1) -> tuple[int, int]:
    """(chunk, chunks): each channel's n values in ``chunks`` chunks of
    ``chunk`` (a multiple of ALIGN), at most sms * BLOCKS_PER_SM blocks in
    all (one wave; C alone past it: one chunk a channel) and at most one
    chunk per MIN_CHUNK values. One wave keeps enough in flight: 128x64x32x32
    gets 8 chunks, 512 blocks x 256 threads x 64 bytes = 8 MiB of reads
    against Little's 2.9 MiB (4.3 TB/s x 700 ns). ``waves``: at most that many
    such waves (REDUCE_WAVES)."""
    return _chunks(C, n, sms, MIN_CHUNK, waves)  # MIN_CHUNK read here: tests lower it


@functools.lru_cache(maxsize=1024)
def _chunks(C: int, n: int, sms: int, min_chunk: int, waves: int = 1) -> tuple[int, int]:
    """channel_chunks, memoised: a layer's shape repeats call after call."""
    chunks = max(1, min(waves * sms * BLOCKS_PER_SM // max(C, 1), -(-n // min_chunk)))
    chunk = -(-max(n, 1) // chunks)
    chunk = -(-chunk // ALIGN) * ALIGN
    return chunk, -(-max(n, 1) // chunk)


_scratch: dict = {}


def scratch(rt, C: int, parts: int) -> tuple:
    """channel_reduce's scratch, (part, counters): its ``parts`` chunk sums
    (float64, flat; the kernels index their (C, chunks, S) layout and write
    every one, which the emulator checks), and its per-channel counters
    (uint32, at least C), zeros before a launch and zeros after it (each
    channel's last chunk wraps its counter back to 0). One pair a runtime,
    device, stream and size serves every such launch in turn: a launch writes
    each chunk sum before its channel's last chunk reads it, so none is read
    by a later launch; a zeroing launch a call would cost the gap the
    one-launch reduction saves, and an allocation a call the host's time (the
    H200's 33.6 MB reductions are bound by their calls' host path,
    bench/results/gpu-2026-11-30). Inside a capture both are the graph's own
    (the counters' zeroing a node of the graph, repeated at each replay). A
    launch that runs only some blocks (the emulator's ``blocks=``) leaves
    counts behind in the shared counters: ``drop_scratch`` after one."""
    xp = rt.xp
    if capture.active():
        return xp.empty(parts, np.float64), xp.zeros(max(C, 1), np.uint32)
    key = ((rt.name, parts) if rt.name != "cuda"
           else (rt.name, rt.device_id(), xp.cuda.get_current_stream().ptr, parts))
    hit = _scratch.get(key)
    if hit is None or hit[1].size < C:
        part = xp.empty(parts, np.float64) if hit is None else hit[0]
        hit = _scratch[key] = (part, xp.zeros(max(C, 64), np.uint32))
    return hit


def drop_scratch(runtime: str) -> None:
    """Forget the scratch kept for runtime ``runtime`` (its next launch takes new, zeroed counters):
    after launches that ran only some of their blocks, or arrays that must not outlive a stand-in."""
    for key in [k for k in _scratch if k[0] == runtime]:
        del _scratch[key]


def _running(xp, a, dtype):
    """A running statistic as the kernel reads it: contiguous, of x's dtype."""
    return contiguous(xp, a) if a.dtype == dtype else copy_of(xp, a, dtype)


@functools.lru_cache(maxsize=64)
def _stats_scalars(eps, momentum, sign, update: bool) -> tuple:
    """batchnorm_stats' last arguments, memoised: a layer's eps and momentum
    repeat call after call (three NumPy scalars, ~0.4 us; the cache ~0.1).
    ``sign`` (copysign(1, momentum)) is only a key: momentum -0.0 == 0.0 would
    share an entry, and the update's momentum * statistic keeps the zero's sign."""
    return np.float64(eps), np.float64(momentum), _FLAG[update]


def batch_norm_stats(rt, x, running_mean, running_var, momentum, eps):
    xp = rt.xp
    x = contiguous(xp, x)
    g = _geometry(x, rt.device()[1])
    # The kernel reads the running statistics and writes the updated ones to
    # new arrays (no copies first: each was a device copy and ~5 us of host).
    update = running_mean is not None
    if STATS_ONE_ALLOCATION:
        mean, invstd, rm, rv = xp.empty((4, g.C), x.dtype)
    else:
        mean, invstd, rm, rv = (xp.empty(g.C, x.dtype) for _ in range(4))
    rm_in, rv_in = (_running(xp, running_mean, x.dtype), _running(xp, running_var, x.dtype)) if update else (x, x)
    base = "batchnorm_stats_async" if STATS_ASYNC and x.dtype == np.float32 else "batchnorm_stats"
    launch(rt, FAMILY, base, x.dtype, g.reduce_threads,
           (x, *scratch(rt, g.C, g.parts), mean, invstd, rm_in, rv_in, rm, rv, *g.dims, *g.chunking, g.inv_n, g.unbias,
            *_stats_scalars(eps, momentum, copysign(1.0, momentum), update)), block=THREADS)
    return mean, invstd, (rm if update else None), (rv if update else None)


def batch_norm_apply(rt, x, mean, invstd, gamma, beta, relu=False):
    """y = gamma * (x - mean) * invstd + beta, then ReLU when ``relu`` (the fused epilogue)."""
    xp = rt.xp
    x, mean, invstd, gamma, beta = (contiguous(xp, x), contiguous(xp, mean), contiguous(xp, invstd),
                                    contiguous(xp, gamma), contiguous(xp, beta))  # no generator: ~0.4 us
    g = _geometry(x, rt.device()[1])
    y = empty_as(xp, x)
    launch(rt, FAMILY, "batchnorm_forward", x.dtype, g.apply_threads,
           (x, mean, invstd, gamma, beta, y, g.size, *g.dims[1:], _FLAG[bool(relu)]))
    return y


def batch_norm_backward(rt, dy, x, mean, invstd, gamma, batch_stats, y=None):
    """(dx, dgamma, dbeta); with ``y``, the output of a fused batch norm + ReLU,
    dy is first masked where y <= 0."""
    xp = rt.xp
    dy, x, mean, invstd, gamma = (contiguous(xp, dy), contiguous(xp, x), contiguous(xp, mean),
                                  contiguous(xp, invstd), contiguous(xp, gamma))
    relu = y is not None
    y = contiguous(xp, y) if relu else dy  # unread without relu
    g = _geometry(x, rt.device()[1])
    dgamma, dbeta = xp.empty(g.C, x.dtype), xp.empty(g.C, x.dtype)
    launch(rt, FAMILY, "batchnorm_backward_sums", x.dtype, g.reduce_threads,
           (dy, x, y, mean, invstd, *scratch(rt, g.C, g.parts), dgamma, dbeta, *g.dims, *g.chunking, _FLAG[relu]),
           block=THREADS)
    dx = empty_as(xp, x)
    launch(rt, FAMILY, "batchnorm_backward_data", x.dtype, g.backward_threads,
           (dy, x, y, mean, invstd, gamma, dgamma, dbeta, dx, g.size, *g.dims[1:], g.inv_n_t,
            _FLAG[bool(batch_stats)], _FLAG[relu]))
    return dx, dgamma, dbeta
