"""Batch normalization, the NumPy way: the oracle for kernels/batchnorm.cu and
the CPU backend.

S. Ioffe and C. Szegedy, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift", ICML 2015. Algorithm 1 over
the "mini-batch" of a channel, its n = N*H*W values:
    mean = sum(x) / n,  var = sum((x - mean)^2) / n,
    xhat = (x - mean) / sqrt(var + eps),  y = gamma * xhat + beta;
the chain rule of §3, written per channel with dxhat = dy * gamma:
    dvar  = sum(dxhat * (x - mean)) * -(var + eps)^(-3/2) / 2
    dmean = -sum(dxhat) / sqrt(var + eps)        (the dvar term's sum(x - mean) is 0)
    dx    = dxhat / sqrt(var + eps) + dvar * 2 (x - mean) / n + dmean / n
    dgamma = sum(dy * xhat),  dbeta = sum(dy).
With running statistics (inference, Algorithm 2) mean and var are constants,
so dx = dxhat / sqrt(var + eps). The running update is PyTorch's:
running = (1 - momentum) * running + momentum * batch statistic, with the
unbiased variance n / (n - 1) * var.

Same interface as the kernels' launch code (gpucnn/cuda/norm.py), computed
another way: whole-array reductions in float64 over the (N, H, W) axes, and
the backward in the paper's dvar / dmean form rather than the kernels'
folded one.
"""
from __future__ import annotations

import numpy as np

from gpucnn.reference.relu import relu_backward, relu_forward

_AXES = (0, 2, 3)


def _c(v):
    """A per-channel vector as (1, C, 1, 1), to broadcast against (N, C, H, W)."""
    return np.asarray(v, np.float64).reshape(1, -1, 1, 1)


def batch_norm_stats(x, running_mean, running_var, momentum, eps):
    """(mean, invstd, new running_mean, new running_var) of x's channels; the
    running pair is None when not given. Inputs are never modified."""
    x64 = x.astype(np.float64)
    n = x.size // x.shape[1]
    mean = x64.mean(axis=_AXES)
    var = ((x64 - _c(mean)) ** 2).mean(axis=_AXES)
    invstd = 1.0 / np.sqrt(var + eps)
    rm = rv = None
    if running_mean is not None:
        rm = ((1 - momentum) * running_mean.astype(np.float64) + momentum * mean).astype(x.dtype)
        rv = ((1 - momentum) * running_var.astype(np.float64) + momentum * var * (n / (n - 1))).astype(x.dtype)
    return mean.astype(x.dtype), invstd.astype(x.dtype), rm, rv


def batch_norm_apply(x, mean, invstd, gamma, beta, relu=False):
    """y = gamma * (x - mean) * invstd + beta, per channel; then torch.relu when ``relu``."""
    y = (_c(gamma) * (x.astype(np.float64) - _c(mean)) * _c(invstd) + _c(beta)).astype(x.dtype)
    return relu_forward(y, 0.0) if relu else y


def batch_norm_backward(dy, x, mean, invstd, gamma, batch_stats, y=None):
    """(dx, dgamma, dbeta) given the forward's per-channel mean and invstd;
    ``batch_stats`` says whether they were the batch's (functions of x) or
    the running statistics (constants). With ``y``, the output of batch norm
    followed by ReLU, dy first goes back through the ReLU (masked where y <= 0)."""
    if y is not None:
        dy = relu_backward(dy, y, 0.0)
    dy64, xc = dy.astype(np.float64), x.astype(np.float64) - _c(mean)
    s = _c(invstd)
    dbeta = dy64.sum(axis=_AXES)
    dgamma = (dy64 * xc).sum(axis=_AXES) * np.asarray(invstd, np.float64)
    dxhat = dy64 * _c(gamma)
    if not batch_stats:
        dx = dxhat * s
    else:
        n = x.size // x.shape[1]
        dvar = (dxhat * xc).sum(axis=_AXES, keepdims=True) * -0.5 * s ** 3
        dmean = -dxhat.sum(axis=_AXES, keepdims=True) * s
        dx = dxhat * s + dvar * 2 * xc / n + dmean / n
    return dx.astype(x.dtype), dgamma.astype(x.dtype), dbeta.astype(x.dtype)
