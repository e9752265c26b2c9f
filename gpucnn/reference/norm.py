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
another way: over blocks of whole images on workspace threads (a float64
copy of one block, where one of the whole tensor cost a quarter of a
training step), per-channel operands spread over a whole image; the
statistics' sums in float64 from values shifted by one sample of each
channel (no E[x^2] - mean^2 cancellation); the backward's sums along each
plane in x's dtype by BLAS, the planes' sums added in float64; the
backward in the paper's dvar / dmean form, its per-channel coefficients in
float64, applied as dx = a*dy + b*(x - mean) + c in x's dtype, with the
ReLU's mask of a fused batch norm + ReLU applied inside the same blocks.
On views of NHWC memory (``layout``) the blocks run in that memory's order
and the output keeps it; the per-channel sums then run over rows of whole
pixels (``_row_sums``).
"""
from __future__ import annotations

import functools

import numpy as np

from gpucnn.reference import layout, workspace
from gpucnn.reference.relu import chunk_bytes, relu_into, threshold_backward


# NHWC sums run over rows of at least this many values (``_row_sums``).
ROW_VALUES = 512


def _blocks(fn, x):
    """fn(a, b) over blocks of x's images (``relu.chunk_bytes``) on ``workspace`` threads."""
    workspace.chunked(fn, x.shape[0], x.itemsize * (x.size // max(1, x.shape[0])), chunk_bytes())


def _one_blas_thread(fn):
    """fn with BLAS on one thread a caller, set once a call (3 us a switch):
    the per-plane products then do not depend on the thread count, and our
    threads do not share the cores with BLAS's."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with workspace.blas_threads(1):
            return fn(*args, **kwargs)
    return run


def _plane_sums(a, b=None, last=False):
    """Per-channel float64 sums of a block a (n, C, H, W), or of a * b: each
    plane's in a's dtype by BLAS (a product with ones: 13 us a MiB of float32
    against 45 for NumPy's pairwise sum along each plane, 111 on 8x8 planes;
    a batch of dots), the planes' in float64. BLAS on one thread
    (``_one_blas_thread``). ``last``: a and b are blocks of NHWC memory
    (n, H, W, C) (``_row_sums``)."""
    if last:
        return _row_sums(a, b)
    n, C, H, W = a.shape
    rows = a.reshape(n * C, H * W)
    if b is None:
        s = rows @ np.ones(H * W, a.dtype)
    else:
        s = np.matmul(rows[:, None, :], b.reshape(n * C, H * W, 1)).reshape(-1)
    return s.reshape(a.shape[:2]).astype(np.float64).sum(axis=0)


def _row_sums(a, b=None):
    """``_plane_sums`` of NHWC blocks (n, H, W, C): per-channel float64
    sums of a, or of a * b, over rows of whole pixels: image rows, or whole
    images where a row holds under ``ROW_VALUES`` values. Each row
    position's sum over the block's rows in a's dtype (at most 1024 rows in
    a 2 MiB block, else the block's images), by BLAS (a product of ones
    with the rows) or for a * b by einsum (one pass that writes no
    product), then folded to channels in float64. A 2 MiB block of
    32x32x16 images, 1 thread: a * b's sums 74 us by einsum, 102
    multiplied into scratch and summed by BLAS (NCHW's batch of per-plane
    dots: 56); a's 31 over image rows, 40 over each image's pixels. An
    image row's sums stay in L1 where a whole image's do not (einsum with
    L2 flushed: 85 against 92 us); with 28x28x6 images (rows of 168
    values) whole images are the faster (74 against 86 us)."""
    n, H, W, C = a.shape
    L = W * C if W * C >= ROW_VALUES else H * W * C
    rows = a.reshape(-1, L)
    if b is None:
        s = np.ones(rows.shape[0], a.dtype) @ rows
    else:
        s = np.einsum("ij,ij->j", rows, b.reshape(-1, L))
    s = s.astype(np.float64).reshape(-1, C)
    return np.ones(s.shape[0]) @ s


def _summed(x, block):
    """The two per-channel float64 sums that ``block(a, b)`` returns for
    each block of x's images, added in block order: they do not depend on
    the thread count."""
    parts = {}

    def run(a, b):
        parts[a] = block(a, b)

    _blocks(run, x)
    sums = [np.zeros(x.shape[1]), np.zeros(x.shape[1])]
    for a in sorted(parts):
        for s, p in zip(sums, parts[a]):
            s += p
    return sums


@_one_blas_thread
def channel_sums(x):
    """Per-channel float64 sums of x (N, C, H, W) (a bias gradient), in one
    BLAS call on one thread: blocks on two threads took 1.5x longer
    (64x16x32x32: 0.075 ms in one call, 0.110 in blocks). On NHWC views the
    float32 sums run over all N*H image rows (2048 at 64x16x32x32: 0.068
    ms, 0.081 image by image)."""
    last = layout.channels_last(x)
    return _plane_sums(layout.ordered(x, last), last=last)


@_one_blas_thread
def batch_norm_stats(x, running_mean, running_var, momentum, eps):
    """(mean, invstd, new running_mean, new running_var) of x's channels; the
    running pair is None when not given. Inputs are never modified."""
    n = x.size // x.shape[1]
    # One sample per channel as the shift: the shifted sums are of the
    # spread's size, not of the offset's.
    shift = x[0, :, 0, 0].astype(np.float64) if x.size else np.zeros(x.shape[1])
    k = layout.image(shift, x, np.float64)
    last = layout.channels_last(x)
    xm = layout.ordered(x, last)

    def block(a, b):
        # Every value in float64, to float64-level statistics: a block's
        # float64 copy, in per-thread scratch (a fresh one is page-faulted
        # in again each time).
        d = workspace.scratch("bn_x64", xm[a:b].shape, np.float64)
        # Cast, then subtract: 1.3x faster than a float32 - float64
        # subtraction, which casts through a buffer.
        np.copyto(d, xm[a:b])
        d -= k
        return _plane_sums(d, last=last), _plane_sums(d, d, last)

    s1, s2 = _summed(x, block)
    mean = shift + s1 / n
    var = np.maximum(s2 / n - (s1 / n) ** 2, 0.0)
    invstd = 1.0 / np.sqrt(var + eps)
    rm = rv = None
    if running_mean is not None:
        rm = ((1 - momentum) * running_mean.astype(np.float64) + momentum * mean).astype(x.dtype)
        rv = ((1 - momentum) * running_var.astype(np.float64) + momentum * var * (n / (n - 1))).astype(x.dtype)
    return mean.astype(x.dtype), invstd.astype(x.dtype), rm, rv


def batch_norm_apply(x, mean, invstd, gamma, beta, relu=False):
    """y = gamma * (x - mean) * invstd + beta, per channel; then torch.relu when ``relu``."""
    scale = np.asarray(gamma, np.float64) * np.asarray(invstd, np.float64)
    m, s, o = layout.image(mean, x), layout.image(scale, x), layout.image(beta, x)
    last = layout.channels_last(x)
    y = layout.empty_like(x)
    xm, ym = layout.ordered(x, last), layout.ordered(y, last)

    def block(a, b):
        yb = ym[a:b]
        np.subtract(xm[a:b], m, out=yb)
        yb *= s
        yb += o
        if relu:
            relu_into(yb, yb)

    _blocks(block, x)
    return y


@_one_blas_thread
def batch_norm_backward(dy, x, mean, invstd, gamma, batch_stats, y=None):
    """(dx, dgamma, dbeta) given the forward's per-channel mean and invstd;
    ``batch_stats`` says whether they were the batch's (functions of x) or
    the running statistics (constants). With ``y``, the output of batch norm
    followed by ReLU, dy first goes back through the ReLU (masked where y <= 0)."""
    s = np.asarray(invstd, np.float64)
    gs = np.asarray(gamma, np.float64) * s
    m = layout.image(mean, x)
    last = layout.channels_last(x)
    dx = layout.empty_like(x)
    # All operands in x's memory order (``layout.ordered``), dy and y
    # copied into it first where they are in the other layout: strided
    # passes over them cost more than the copy (64x32x32x32, 1 thread:
    # 7.9 against 2.6 ms with dy channel-major and x channels-last).
    dy, y = (None if a is None else layout.like(a, x) for a in (dy, y))
    xm, dxm, dym = (layout.ordered(a, last) for a in (x, dx, dy))
    ym = None if y is None else layout.ordered(y, last)
    # dy masked by the ReLU, kept in dx until the second pass overwrites it;
    # x - mean, kept from the sums for the second pass in dx when dx is
    # free, else (masked dy in dx) recomputed there: a whole second array
    # for it cost a pass over memory more than the recomputation.
    g = dym if y is None else dxm

    def centered(a, b):
        out = dxm[a:b] if y is None else workspace.scratch("bn_xc", xm[a:b].shape, x.dtype)
        return np.subtract(xm[a:b], m, out=out)

    def sums(a, b):
        if y is not None:
            threshold_backward(dym[a:b], ym[a:b], dxm[a:b])
        return _plane_sums(g[a:b], last=last), _plane_sums(g[a:b], centered(a, b), last)

    dbeta, dyxc = _summed(x, sums)
    a_dy = layout.image(gs, x)
    if batch_stats:
        n = x.size // x.shape[1]
        dvar = gs * dyxc * -0.5 * s ** 2        # sum(dxhat * xc) * -(var + eps)^(-3/2) / 2
        dmean = -gs * dbeta                     # -sum(dxhat) / sqrt(var + eps)
        a_xc, a_1 = layout.image(dvar * 2 / n, x), layout.image(dmean / n, x)

    def apply(a, b):
        dxb = dxm[a:b]
        if not batch_stats:
            np.multiply(g[a:b], a_dy, out=dxb)
            return
        t = dxb if y is None else centered(a, b)
        t *= a_xc
        t += a_1
        g_a = dxb if y is not None else workspace.scratch("bn_dy", dxb.shape, dxb.dtype)
        np.multiply(g[a:b], a_dy, out=g_a)
        np.add(t, g_a, out=dxb)

    _blocks(apply, x)
    return dx, (dyxc * s).astype(x.dtype), dbeta.astype(x.dtype)
