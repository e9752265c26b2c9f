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
another way: the per-channel sums in float64, over blocks of whole images
(a float64 copy of one block stays in cache; a float64 copy of the whole
tensor cost a quarter of a training step), the statistics from sums shifted
by one sample of each channel (no E[x^2] - mean^2 cancellation), and the
backward in the paper's dvar / dmean form, its per-channel coefficients in
float64, applied as dx = a*dy + b*(x - mean) + c in x's dtype.
"""
from __future__ import annotations

import numpy as np

from gpucnn.reference import workspace
from gpucnn.reference.relu import relu_backward, relu_forward

_AXES = (0, 2, 3)


def _c(v, dtype=np.float64):
    """A per-channel vector as (1, C, 1, 1), to broadcast against (N, C, H, W)."""
    return np.asarray(v, dtype).reshape(1, -1, 1, 1)


def _image_bytes(x):
    return x.itemsize * (x.size // max(1, x.shape[0]))


def _sums(x, dy, shift):
    """Per-channel float64 (sum(x - shift), sum((x - shift)^2)) without dy,
    else (sum(dy), sum(dy * (x - shift))), over blocks of images on
    ``workspace`` threads; the blocks' partial sums are added in block order,
    so the result does not depend on the thread count."""
    parts = {}
    k = _c(shift)

    k_x = k.astype(x.dtype)

    def block(a, b):
        # Into per-thread scratch: a fresh block each time is mapped and
        # page-faulted in again by malloc.
        if dy is not None:
            # The gradient's sums: the products in x's dtype, summed
            # pairwise along each plane, the planes' sums added in float64
            # (float64 accumulators over float32 blocks).
            xc = workspace.scratch("bn_x", x[a:b].shape, x.dtype)
            np.subtract(x[a:b], k_x, out=xc)
            xc *= dy[a:b]
            planes = (b - a, x.shape[1], -1)
            parts[a] = (dy[a:b].reshape(planes).sum(axis=2).astype(np.float64).sum(axis=0),
                        xc.reshape(planes).sum(axis=2).astype(np.float64).sum(axis=0))
            return
        # The statistics: every value in float64, to float64-level accuracy.
        d = workspace.scratch("bn_x64", x[a:b].shape, np.float64)
        np.subtract(x[a:b], k, out=d)
        d = d.reshape(b - a, x.shape[1], 1, -1)
        # Per-channel dot products as a batch of (1, hw) @ (hw, 1) products.
        parts[a] = d.sum(axis=(0, 2, 3)), np.matmul(d, d.transpose(0, 1, 3, 2)).sum(axis=(0, 2, 3))

    workspace.chunked(block, x.shape[0], _image_bytes(x))
    s1, s2 = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for a in sorted(parts):
        s1 += parts[a][0]
        s2 += parts[a][1]
    return s1, s2


def batch_norm_stats(x, running_mean, running_var, momentum, eps):
    """(mean, invstd, new running_mean, new running_var) of x's channels; the
    running pair is None when not given. Inputs are never modified."""
    n = x.size // x.shape[1]
    # One sample per channel as the shift: the shifted sums are of the
    # spread's size, not of the offset's.
    shift = x[0, :, 0, 0].astype(np.float64) if x.size else np.zeros(x.shape[1])
    s1, s2 = _sums(x, None, shift)
    mean = shift + s1 / n
    var = np.maximum(s2 / n - (s1 / n) ** 2, 0.0)
    invstd = 1.0 / np.sqrt(var + eps)
    rm = rv = None
    if running_mean is not None:
        rm = ((1 - momentum) * running_mean.astype(np.float64) + momentum * mean).astype(x.dtype)
        rv = ((1 - momentum) * running_var.astype(np.float64) + momentum * var * (n / (n - 1))).astype(x.dtype)
    return mean.astype(x.dtype), invstd.astype(x.dtype), rm, rv


def _affine(out, x, mean, scale, offset, dy=None, dy_scale=None):
    """out = (x - mean) * scale + offset [+ dy * dy_scale], per channel, in
    out's dtype, over cache-sized blocks of images on ``workspace`` threads."""
    mean, scale, offset = (_c(v, out.dtype) for v in (mean, scale, offset))
    a_dy = None if dy is None else _c(dy_scale, out.dtype)

    def block(a, b):
        o = out[a:b]
        np.subtract(x[a:b], mean, out=o)
        o *= scale
        o += offset
        if dy is not None:
            tmp = workspace.scratch("bn", o.shape, o.dtype)
            np.multiply(dy[a:b], a_dy, out=tmp)
            o += tmp

    workspace.chunked(block, x.shape[0], _image_bytes(x))
    return out


def batch_norm_apply(x, mean, invstd, gamma, beta, relu=False):
    """y = gamma * (x - mean) * invstd + beta, per channel; then torch.relu when ``relu``."""
    scale = np.asarray(gamma, np.float64) * np.asarray(invstd, np.float64)
    y = _affine(np.empty_like(x), x, mean, scale, beta)
    return relu_forward(y, 0.0) if relu else y


def batch_norm_backward(dy, x, mean, invstd, gamma, batch_stats, y=None):
    """(dx, dgamma, dbeta) given the forward's per-channel mean and invstd;
    ``batch_stats`` says whether they were the batch's (functions of x) or
    the running statistics (constants). With ``y``, the output of batch norm
    followed by ReLU, dy first goes back through the ReLU (masked where y <= 0)."""
    if y is not None:
        dy = relu_backward(dy, y, 0.0)
    s = np.asarray(invstd, np.float64)
    gs = np.asarray(gamma, np.float64) * s
    dbeta, dyxc = _sums(x, dy, np.asarray(mean, np.float64))
    dgamma = dyxc * s
    dx = np.empty_like(x)
    if not batch_stats:
        np.multiply(dy, _c(gs, x.dtype), out=dx)
    else:
        n = x.size // x.shape[1]
        dvar = gs * dyxc * -0.5 * s ** 2        # sum(dxhat * xc) * -(var + eps)^(-3/2) / 2
        dmean = -gs * dbeta                     # -sum(dxhat) / sqrt(var + eps)
        _affine(dx, x, mean, dvar * 2 / n, dmean / n, dy, gs)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)
