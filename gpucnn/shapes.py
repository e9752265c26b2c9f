"""Every output-size formula of gpucnn, once.

The Python side computes output sizes here and passes them to the reference
and to the kernels; nothing else re-derives them (Chainer's ``get_conv_outsize``
is the model). Sizes follow ``torch.nn.functional``.
"""
from __future__ import annotations

from dataclasses import dataclass


def conv_out(size: int, k: int, s: int, pad_lo: int, pad_hi: int, d: int) -> int:
    """Output length of a convolution (or of im2col) along one axis.

    The dilated window spans ``d*(k-1)+1`` samples; it can start at every
    multiple of the stride that keeps it inside the padded input.
    """
    return (size + pad_lo + pad_hi - d * (k - 1) - 1) // s + 1


def same_padding(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """``padding="same"`` along one axis: (before, after) so that the output
    has ceil(size / s) positions, as TensorFlow pads: the smallest total
    padding that lets the last window start there, the odd one after
    (bottom/right). With stride 1 this is PyTorch's "same"."""
    out = -(-size // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def pool_out(size: int, k: int, s: int, pad_lo: int, pad_hi: int, d: int, ceil_mode: bool) -> int:
    """Output length of a pooling window along one axis (torch's rule).

    In ceil mode the last window may overhang the right padding, but it must
    start inside the input or its left padding; otherwise it is dropped.
    """
    span = size + pad_lo + pad_hi - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= size + pad_lo:
        out -= 1
    return out


def conv_transpose_out(size: int, k: int, s: int, pad: int, out_pad: int, d: int) -> int:
    """Output length of a transposed convolution: the input length of the
    convolution whose backward-data it is."""
    return (size - 1) * s - 2 * pad + d * (k - 1) + out_pad + 1


def unpool_out(size: int, k: int, s: int, pad: int) -> int:
    """Default output length of max_unpool2d: the inverse of pooling's formula."""
    return (size - 1) * s - 2 * pad + k


@dataclass(frozen=True)
class Window:
    """A 2-D sliding window over an (H, W) plane: the geometry shared by
    im2col, pooling and convolution. ``pad`` is (top, bottom, left, right);
    (P, Q) is the number of window positions."""

    H: int
    W: int
    kh: int
    kw: int
    sh: int
    sw: int
    pad: tuple[int, int, int, int]
    dh: int
    dw: int
    P: int
    Q: int


def window(H, W, kernel, stride, pad, dilation, ceil_mode=False, pool=False) -> Window:
    """Build a Window; ``pool`` selects pooling's output rule (with ceil mode)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    pt, pb, pl, pr = pad
    if pool:
        P = pool_out(H, kh, sh, pt, pb, dh, ceil_mode)
        Q = pool_out(W, kw, sw, pl, pr, dw, ceil_mode)
    else:
        P = conv_out(H, kh, sh, pt, pb, dh)
        Q = conv_out(W, kw, sw, pl, pr, dw)
    return Window(H, W, kh, kw, sh, sw, (pt, pb, pl, pr), dh, dw, P, Q)


@dataclass(frozen=True)
class Conv:
    """A grouped 2-D convolution: x (N, C, H, W) * w (K, C/groups, kh, kw) ->
    y (N, K, P, Q), with its sliding window."""

    N: int
    C: int
    K: int
    groups: int
    win: Window


def adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
    """Adaptive pooling's ``out`` windows over ``size`` samples, as torch:
    window i spans [floor(i*size/out), ceil((i+1)*size/out)); they cover the
    input and overlap where out does not divide size."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]
