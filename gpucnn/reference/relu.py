"""ReLU and leaky ReLU, the NumPy way: the oracle for the relu kernels and the
CPU backend.

Wu's "CNN for Dummies" §7 (The ReLU layer) defines y = max(0, x) elementwise,
with no parameters, and its reverse operator (§6) passes the gradient where
x > 0 and blocks it elsewhere; the derivative at the kink x = 0 is taken from
the negative side. Leaky ReLU replaces the blocked side by ``slope * x``.

Semantics follow PyTorch: ``slope == 0`` is ``torch.relu`` (NaN propagates,
-inf gives 0) and ``threshold_backward``; any other slope is
``leaky_relu`` (``x if x > 0 else x * slope``) and ``leaky_relu_backward``.
"""
from __future__ import annotations

import numpy as np

from gpucnn.reference import layout, workspace


def chunk_bytes() -> int:
    """Chunks of the elementwise ops and batch norm: twice
    workspace.CHUNK_BYTES. Each chunk costs its NumPy calls' set-up, and two
    threads wait on each other for the GIL between calls: at 64x16x32x32 on
    2 cores (one busy elsewhere), ReLU forward 0.163 ms in 1 MiB chunks,
    0.139 in 2 MiB, 0.134 in 4 MiB on one thread, 0.202, 0.152, 0.139 on
    two; its backward on two threads 0.255, 0.222, 0.307; batch norm's
    backward on two 2.4 ms in 256 KiB blocks, 1.5 in 1 MiB, 1.3 in 2 MiB,
    1.8 in 4 MiB."""
    return 2 * workspace.CHUNK_BYTES


def _flat_chunks(arrays, fn):
    """Run fn on matching chunks of arrays contiguous in one layout, C order
    or all views of NHWC memory (``layout``), each flattened in its memory's
    order (see workspace.chunked); False otherwise, for the caller's
    one-shot path."""
    if len({layout.channels_last(a) for a in arrays}) > 1:
        return False
    mem = [layout.memory(a) for a in arrays]
    if not all(m.flags.c_contiguous for m in mem):
        return False
    flat = [m.reshape(-1) for m in mem]
    workspace.chunked(lambda lo, hi: fn(*(f[lo:hi] for f in flat)), flat[0].size, flat[0].itemsize,
                      chunk_bytes())
    return True


def relu_into(x: np.ndarray, out: np.ndarray) -> None:
    """torch.relu of x into out (which may be x): np.clip against typed
    scalars propagates NaN, maps -inf to 0 and keeps -0.0 as torch does, in
    NumPy's SIMD loop (1 MiB in cache: 33 us; np.maximum against a scalar
    takes the scalar loop, 98 us, against an array of zeros 38 us)."""
    np.clip(x, x.dtype.type(0), x.dtype.type(np.inf), out=out)


def relu_forward(x: np.ndarray, slope: float) -> np.ndarray:
    if slope == 0.0:
        y = layout.empty_like(x)
        if not _flat_chunks((x, y), relu_into):
            relu_into(x, y)
        return y
    s = x.dtype.type(slope)
    # A slope above 1 may overflow x * s to inf, as the kernel's product does.
    with np.errstate(over="ignore"):
        if 0.0 < slope < 1.0:
            # For 0 < s < 1, x * s lies between 0 and x, so the larger of the
            # two is x on the positive side and x * s on the negative side.
            return np.maximum(x, x * s)
        return np.where(x > 0, x, x * s)


def relu_backward(dy: np.ndarray, x: np.ndarray, slope: float) -> np.ndarray:
    # No np.where: it is 20x slower than a pass of arithmetic on a mask that
    # is true at random.
    if slope == 0.0:
        # dx in x's layout, which the layers below x expect: after a max
        # pool's backward (channel-major dx) above a channels-last batch
        # norm, the batch norm's backward then runs in one layout
        # (vgg-small, 1 thread: 15.9 -> 4.6 ms for its two such layers).
        # dy copied into that layout first: at 64x64x16x16 one strided
        # pass over the whole of dy, x and dx took 3.1 ms, the copy and the
        # chunks 1.4 ms (0.58 against 0.37 at 64x32x16x16).
        dx = layout.empty_like(x, dy.dtype)
        dy = layout.like(dy, x)
        if not _flat_chunks((dy, x, dx), threshold_backward):
            threshold_backward(dy, x, dx)
        return dx
    # torch's leaky_relu_backward: `x > 0 ? dy : dy * slope`.
    one, s = dy.dtype.type(1), dy.dtype.type(slope)
    with np.errstate(over="ignore"):
        if (one - s) + s != one:
            return np.where(x > 0, dy, dy * s)
        # The factor s + (1 - s) * [x > 0] is exactly 1 or s, as just checked.
        f = np.greater(x, 0).astype(dy.dtype)
        f *= one - s
        f += s
        f *= dy
        return f


def threshold_backward(dy, x, dx):
    """torch's threshold_backward, ``x <= 0 ? 0 : dy``, into dx: a NaN input passes dy.

    For floats, a bitwise and of dy with an all-ones or all-zeros mask: exact
    for any dy (a blocked inf or NaN gives 0, which dy * 0 would not). The
    mask is built a byte an element and widened by one sign-extending cast:
    1.4x faster than widening the bool and decrementing, and 1.3x faster than
    multiplying by the bool mask, whose mixed-type loop casts through a buffer."""
    if dx.dtype.kind != "f":
        keep = np.logical_not(np.less_equal(x, 0))
        dx[...] = np.where(keep, dy, dy.dtype.type(0))
        return
    # [x <= 0] - 1 in int8: 0 where blocked, -1 (all ones) where dy passes.
    m = workspace.scratch("relu.mask", x.shape, np.int8)
    if layout.channels_last(x):
        m = m.reshape(layout.memory(x).shape).transpose(0, 3, 1, 2)
    np.less_equal(x, 0, out=m.view(bool))
    m -= 1
    bits = np.dtype(f"i{dx.itemsize}")
    mask = dx.view(bits)
    np.copyto(mask, m)
    np.bitwise_and(dy.view(bits), mask, out=mask)


def add(a: np.ndarray, b: np.ndarray, relu: bool = False) -> np.ndarray:
    """a + b, elementwise (Residual's sums); inf + -inf is NaN, as in the kernel.
    In NHWC memory (``layout``) where either is a view of it: a residual
    block's sum then stays channels-last where its shortcut is not (a
    strided 1x1 convolution), and so do the blocks after it. ``relu``:
    torch.relu of the sum, each chunk while it is in cache."""
    same = a.shape == b.shape
    last = same and (layout.channels_last(a) or layout.channels_last(b))
    out = layout.empty(np.broadcast_shapes(a.shape, b.shape), np.result_type(a, b), last)

    def run(x, y, o):
        np.add(x, y, out=o)
        if relu:
            relu_into(o, o)

    with np.errstate(invalid="ignore", over="ignore"):
        if not (relu and same and _flat_chunks((a, b, out), run)):
            run(a, b, out)
    return out
