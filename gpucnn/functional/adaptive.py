"""Adaptive average pooling (torch.nn.functional.adaptive_avg_pool2d) and its
backward: argument checks and dispatch."""
from __future__ import annotations

from gpucnn import _checks as chk
from gpucnn.backend import call


def _output_size(x_shape, output_size):
    """(P, Q) from an int, a pair, or a pair with None for "the input's size"."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(n if m is None else m for n, m in zip(x_shape[2:], output_size))
    P, Q = chk.pair("output_size", output_size, minimum=1)
    return P, Q


def adaptive_avg_pool2d(x, output_size):
    """Average pooling of x to the size output_size, as torch.

    x: (N, C, H, W), or (C, H, W) unbatched; output_size: (P, Q), an int for
    both, or a pair whose None entries keep the input's size. Output (p, q)
    averages rows [floor(p*H/P), ceil((p+1)*H/P)) and the same for columns;
    output_size 1 is global average pooling.
    Returns y: (N, C, P, Q), or (C, P, Q) for an unbatched x; x's dtype.
    """
    x, unbatched = chk.batched("x", x)
    P, Q = _output_size(x.shape, output_size)
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"adaptive_avg_pool2d: x must have non-empty H and W, got shape {tuple(x.shape)}")
    return chk.unbatch(call("pool", "adaptive_avg_pool2d_forward", x, P, Q), unbatched)


def adaptive_avg_pool2d_backward(dy, x):
    """The input gradient of adaptive_avg_pool2d.

    dy: (N, C, P, Q), batched exactly when x is; x: (N, C, H, W) or (C, H, W),
    which gives the input's shape and dtype (its values are not read).
    Returns dx shaped as x: each window's gradient spread evenly over it;
    where windows overlap, the shares add up.
    """
    x, unbatched = chk.batched("x", x)
    dy = chk.like("dy", dy, unbatched)
    chk.same_dtype(dy=dy, x=x)
    if dy.shape[:2] != x.shape[:2] or min(dy.shape[2:]) < 1 or min(x.shape[2:]) < 1:
        raise ValueError(f"adaptive_avg_pool2d_backward: dy {tuple(dy.shape)} must be (N, C, P, Q) with the N "
                         f"and C of x {tuple(x.shape)}, all sizes >= 1")
    return chk.unbatch(call("pool", "adaptive_avg_pool2d_backward", dy, x.shape[2], x.shape[3]), unbatched)
