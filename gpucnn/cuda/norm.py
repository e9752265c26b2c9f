"""Launch code of kernels/batchnorm.cu (same interface as gpucnn.reference.norm).

The reductions run in two levels (kernels/channel.cuh): ``channel_chunks``
splits each channel's n = N*H*W values into chunks so that about
TARGET_BLOCKS (channel, chunk) blocks run, each thread with several loads in
flight; a second kernel adds a channel's chunk sums in chunk order. Shapes
alone decide the chunks, so the bits never change from run to run.
"""
from __future__ import annotations

import numpy as np

from gpucnn.cuda.launch import contiguous, copy_of, i64, launch, scalar, vector_threads

FAMILY = "batchnorm"
KERNELS = ("batchnorm_stats_partial", "batchnorm_stats_finalize", "batchnorm_forward",
           "batchnorm_backward_partial", "batchnorm_backward_finalize", "batchnorm_backward_data")
THREADS = 256  # CH_THREADS: the reductions' block
UNIT = THREADS * 4  # CH_THREADS * CH_UNROLL: the elements one block step covers
TARGET_BLOCKS = 2048  # about 8 waves of 256-thread blocks on 132 SMs
MIN_CHUNK_STEPS = 4
_INT_MAX = 2**31 - 1


def _dims(x):
    N, C, H, W = x.shape
    if max(N, C, H * W) > _INT_MAX:
        raise ValueError(f"batch norm: N, C and H*W must fit in int32, got shape {tuple(x.shape)}")
    return np.int32(N), np.int32(C), i64(H * W)


def _map_threads(x, HW) -> int:
    """Threads of an element-wise kernel (channel_apply): one a 16-byte vector
    when HW is a multiple of one (its vector loop; the 128x64x32x32 case
    launched x.size threads, 3/4 of its 32768 blocks empty), else one an
    element (the scalar loop, one load in flight a thread: a grid a quarter
    the size would leave each thread four loads in a row)."""
    per_vec = 16 // x.itemsize
    return vector_threads(x.size, x.dtype) if int(HW) % per_vec == 0 else x.size


def channel_chunks(C: int, n: int) -> tuple[int, int]:
    """(chunk, chunks): each channel's n values in ``chunks`` chunks of
    ``chunk`` (a multiple of UNIT), about TARGET_BLOCKS blocks in all, each
    stepping at least MIN_CHUNK_STEPS times."""
    chunks = max(1, min(-(-TARGET_BLOCKS // max(C, 1)), -(-n // (UNIT * MIN_CHUNK_STEPS))))
    chunk = -(-max(n, 1) // chunks)
    chunk = -(-chunk // UNIT) * UNIT
    return chunk, -(-max(n, 1) // chunk)


def batch_norm_stats(rt, x, running_mean, running_var, momentum, eps):
    x = contiguous(rt.xp, x)
    N, C, HW = _dims(x)
    mean, invstd = rt.xp.empty(int(C), x.dtype), rt.xp.empty(int(C), x.dtype)
    update = running_mean is not None
    # The kernel updates the running statistics in place: in copies, which are returned.
    rm = copy_of(rt.xp, running_mean, x.dtype) if update else rt.xp.empty(int(C), x.dtype)
    rv = copy_of(rt.xp, running_var, x.dtype) if update else rt.xp.empty(int(C), x.dtype)
    n = int(N) * int(HW)
    chunk, chunks = channel_chunks(int(C), n)
    part = rt.xp.empty((int(C), chunks, 2), np.float64)
    launch(rt, FAMILY, "batchnorm_stats_partial", x.dtype, int(C) * chunks * THREADS,
           (x, part, N, C, HW, i64(chunk), np.int32(chunks)), block=THREADS)
    launch(rt, FAMILY, "batchnorm_stats_finalize", x.dtype, int(C),
           (part, x, mean, invstd, rm, rv, C, HW, np.int32(chunks), np.float64(1 / n), np.float64(n / (n - 1)),
            np.float64(eps), np.float64(momentum), np.int32(update)))
    return mean, invstd, (rm if update else None), (rv if update else None)


def batch_norm_apply(rt, x, mean, invstd, gamma, beta, relu=False):
    """y = gamma * (x - mean) * invstd + beta, then ReLU when ``relu`` (the fused epilogue)."""
    x, mean, invstd, gamma, beta = (contiguous(rt.xp, a) for a in (x, mean, invstd, gamma, beta))
    _, C, HW = _dims(x)
    y = rt.xp.empty_like(x)
    launch(rt, FAMILY, "batchnorm_forward", x.dtype, _map_threads(x, HW),
           (x, mean, invstd, gamma, beta, y, i64(x.size), C, HW, np.int32(relu)))
    return y


def batch_norm_backward(rt, dy, x, mean, invstd, gamma, batch_stats, y=None):
    """(dx, dgamma, dbeta); with ``y``, the output of a fused batch norm + ReLU,
    dy is first masked where y <= 0."""
    dy, x, mean, invstd, gamma = (contiguous(rt.xp, a) for a in (dy, x, mean, invstd, gamma))
    relu = y is not None
    y = contiguous(rt.xp, y) if relu else dy  # unread without relu
    N, C, HW = _dims(x)
    n = int(N) * int(HW)
    chunk, chunks = channel_chunks(int(C), n)
    part = rt.xp.empty((int(C), chunks, 2), np.float64)
    launch(rt, FAMILY, "batchnorm_backward_partial", x.dtype, int(C) * chunks * THREADS,
           (dy, x, y, mean, part, N, C, HW, i64(chunk), np.int32(chunks), np.int32(relu)), block=THREADS)
    dgamma, dbeta = rt.xp.empty(int(C), x.dtype), rt.xp.empty(int(C), x.dtype)
    launch(rt, FAMILY, "batchnorm_backward_finalize", x.dtype, int(C),
           (part, invstd, dgamma, dbeta, C, np.int32(chunks)))
    dx = rt.xp.empty_like(x)
    launch(rt, FAMILY, "batchnorm_backward_data", x.dtype, _map_threads(x, HW),
           (dy, x, y, mean, invstd, gamma, dgamma, dbeta, dx, i64(x.size), C, HW,
            scalar(x.dtype, 1.0 / max(n, 1)), np.int32(bool(batch_stats)), np.int32(relu)))
    return dx, dgamma, dbeta
