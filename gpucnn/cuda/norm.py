"""Launch code of kernels/batchnorm.cu (same interface as gpucnn.reference.norm)."""
from __future__ import annotations

import numpy as np

from gpucnn.cuda.launch import contiguous, copy_of, i64, launch, scalar

FAMILY = "batchnorm"
KERNELS = ("batchnorm_stats", "batchnorm_forward", "batchnorm_backward_reduce",
           "batchnorm_backward_data")
THREADS = 256  # BN_THREADS: the statistics kernels' block, one block per channel
_INT_MAX = 2**31 - 1


def _dims(x):
    N, C, H, W = x.shape
    if max(N, C) > _INT_MAX:
        raise ValueError(f"batch norm: N and C must fit in int32, got shape {tuple(x.shape)}")
    return np.int32(N), np.int32(C), i64(H * W)


def batch_norm_stats(rt, x, running_mean, running_var, momentum, eps):
    x = contiguous(rt.xp, x)
    N, C, HW = _dims(x)
    mean, invstd = rt.xp.empty(int(C), x.dtype), rt.xp.empty(int(C), x.dtype)
    update = running_mean is not None
    # The kernel updates the running statistics in place: in copies, which are
    # returned. One block per channel: C * THREADS "elements" ask for C blocks.
    rm = copy_of(rt.xp, running_mean, x.dtype) if update else rt.xp.empty(int(C), x.dtype)
    rv = copy_of(rt.xp, running_var, x.dtype) if update else rt.xp.empty(int(C), x.dtype)
    n = int(N) * int(HW)
    launch(rt, FAMILY, "batchnorm_stats", x.dtype, int(C) * THREADS,
           (x, mean, invstd, rm, rv, N, C, HW, np.float64(1 / n), np.float64(n / (n - 1)),
            np.float64(eps), np.float64(momentum), np.int32(update)), block=THREADS)
    return mean, invstd, (rm if update else None), (rv if update else None)


def batch_norm_apply(rt, x, mean, invstd, gamma, beta):
    x, mean, invstd, gamma, beta = (contiguous(rt.xp, a) for a in (x, mean, invstd, gamma, beta))
    _, C, HW = _dims(x)
    y = rt.xp.empty_like(x)
    launch(rt, FAMILY, "batchnorm_forward", x.dtype, x.size,
           (x, mean, invstd, gamma, beta, y, i64(x.size), C, HW))
    return y


def batch_norm_backward(rt, dy, x, mean, invstd, gamma, batch_stats):
    dy, x, mean, invstd, gamma = (contiguous(rt.xp, a) for a in (dy, x, mean, invstd, gamma))
    N, C, HW = _dims(x)
    dgamma, dbeta = rt.xp.empty(int(C), x.dtype), rt.xp.empty(int(C), x.dtype)
    launch(rt, FAMILY, "batchnorm_backward_reduce", x.dtype, int(C) * THREADS,
           (dy, x, mean, invstd, dgamma, dbeta, N, C, HW), block=THREADS)
    dx = rt.xp.empty_like(x)
    n = int(N) * int(HW)
    launch(rt, FAMILY, "batchnorm_backward_data", x.dtype, x.size,
           (dy, x, mean, invstd, gamma, dgamma, dbeta, dx, i64(x.size), C, HW,
            scalar(x.dtype, 1.0 / max(n, 1)), np.int32(bool(batch_stats))))
    return dx, dgamma, dbeta
