"""Convolution, transposed convolution, im2col and col2im: argument checks,
geometry, dispatch. Semantics are those of ``torch.nn.functional``.

The transposed convolution is computed through the convolution's ops: its
forward is the convolution's backward-data (the seed's reverse operator, §6),
its input gradient is a convolution forward, and its filter gradient is the
convolution's filter gradient with the roles of input and output swapped.
"""
from __future__ import annotations

import dataclasses
import functools

from gpucnn import _checks as chk
from gpucnn import shapes
from gpucnn.backend import call


def _check_groups(groups) -> None:
    if not chk._is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")


def _conv_padding(padding, hw, kernel, stride, dilation):
    """(top, bottom, left, right) from ints, or from "valid" (none) or "same"
    (output ceil(H/stride) x ceil(W/stride), see ``shapes.same_padding``)."""
    if not isinstance(padding, str):
        return chk.padding("padding", padding)
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        return tuple(p for n, k, s, d in zip(hw, kernel, stride, dilation)
                     for p in shapes.same_padding(n, k, s, d))
    raise ValueError(f"padding must be 'same', 'valid', an int, a pair or four ints, got {padding!r}")


def _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups, *, what="conv2d"):
    """Check a convolution's arguments against x (N,C,H,W) and w (K,C/g,kh,kw).
    Memoised where every argument is a plain int, str or sequence of ints (so
    that 2.0 or True never meets the answer for 2 or 1): the checks took
    ~10-30 us of host time a call, as long as a small kernel on a GPU."""
    if type(stride) is int and type(padding) in (int, str) and type(dilation) is int and type(groups) is int:
        # the usual call (ints, or a padding string) without the generic walk below: 1.4 -> 0.5 us
        return _conv_geometry_memo(tuple(x_shape), tuple(w_shape), stride, padding, dilation, groups, what)
    args = (stride, padding, dilation, groups)
    if all(_plain(a) for a in args):
        return _conv_geometry_memo(tuple(x_shape), tuple(w_shape),
                                   *(tuple(a) if isinstance(a, list) else a for a in args), what)
    return _conv_geometry_checked(x_shape, w_shape, stride, padding, dilation, groups, what)


def _plain(v) -> bool:
    return type(v) in (int, str) or (type(v) in (tuple, list) and all(type(e) is int for e in v))


@functools.lru_cache(maxsize=1024)
def _conv_geometry_memo(x_shape, w_shape, stride, padding, dilation, groups, what):
    return _conv_geometry_checked(x_shape, w_shape, stride, padding, dilation, groups, what)


def _conv_geometry_checked(x_shape, w_shape, stride, padding, dilation, groups, what):
    stride = chk.pair("stride", stride, minimum=1)
    dilation = chk.pair("dilation", dilation, minimum=1)
    _check_groups(groups)
    N, C, H, W = x_shape
    K, Cg, kh, kw = w_shape
    pad = _conv_padding(padding, (H, W), (kh, kw), stride, dilation)
    if C % groups or K % groups:
        raise ValueError(f"{what}: groups={groups} must divide the input channels C={C} and the "
                         f"filters K={K} (x shape {tuple(x_shape)}, w shape {tuple(w_shape)})")
    if Cg != C // groups:
        raise ValueError(f"{what}: w has {Cg} channels per filter but x has C={C} channels in "
                         f"{groups} group(s), so w.shape[1] must be {C // groups} "
                         f"(x shape {tuple(x_shape)}, w shape {tuple(w_shape)})")
    if min(kh, kw) < 1:
        raise ValueError(f"{what}: w must have a non-empty kernel, got shape {tuple(w_shape)}")
    chk.window_fits(what, x_shape, (kh, kw), pad, dilation)
    win = shapes.window(H, W, (kh, kw), stride, pad, dilation)
    return shapes.Conv(N, C, K, groups, win)


def _bias(b, K, x):
    if b is None:
        return None
    b = chk.array("b", b, 1)
    chk.shape_is("b", b, (K,), "one bias per output channel")
    chk.same_dtype(x=x, b=b)
    return b


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as torch.nn.functional.conv2d).

    x: (N, C, H, W), or (C, H, W) unbatched; w: (K, C/groups, kh, kw);
    b: (K,) or None. stride, dilation: an int or a pair (one-element tuples
    too). padding: an int, a pair (ph, pw), four ints (top, bottom, left,
    right), "valid" (none) or "same": output ceil(H/sh) x ceil(W/sw) for any
    stride, the odd padding on the bottom/right (TensorFlow's rule; with
    stride 1 it is torch's "same"). groups divides C and K.
    Returns y: (N, K, P, Q), or (K, P, Q) for an unbatched x; x's dtype.
    """
    x, unbatched = chk.batched("x", x)
    w = chk.array("w", w, 4)
    chk.same_dtype(x=x, w=w)
    g = _conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    return chk.unbatch(call("conv", "conv2d_forward", x, w, _bias(b, g.K, x), g), unbatched)


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1, bias=True, input_grad=True,
                    weight_grad=True):
    """Gradients of conv2d with respect to x, w and b, for the output gradient dy.

    dy: conv2d's output shape, (N, K, P, Q), or (K, P, Q) when x is
    unbatched (C, H, W); the other arguments as for conv2d (padding
    "same"/"valid" included). Returns (dx, dw, db): dx shaped as x, dw as w,
    db (K,), or None when bias is False; dx is None, and not computed, when
    input_grad is False (a network's first layer: torch's convolution_backward
    with output_mask[0] False), dw and db when weight_grad is False.
    """
    x, unbatched = chk.batched("x", x)
    dy, w = chk.like("dy", dy, unbatched), chk.array("w", w, 4)
    chk.same_dtype(dy=dy, x=x, w=w)
    bias, input_grad = chk.flag("bias", bias), chk.flag("input_grad", input_grad)
    weight_grad = chk.flag("weight_grad", weight_grad)
    g = _conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    chk.shape_is("dy", dy, (g.N, g.K, g.win.P, g.win.Q), "the shape of conv2d's output")
    dx = chk.unbatch(call("conv", "conv2d_backward_data", dy, w, g), unbatched) if input_grad else None
    dw = call("conv", "conv2d_backward_filter", dy, x, g) if weight_grad else None
    db = call("conv", "conv2d_backward_bias", dy) if bias and weight_grad else None
    return dx, dw, db


def _transpose_geometry(x_shape, w_shape, stride, padding, output_padding, groups, dilation):
    """The geometry of the convolution whose backward-data is this transposed conv.

    x (N, Cin, H, W) plays the convolution's dy, w (Cin, Cout/groups, kh, kw)
    its filters, and the output (N, Cout, Ho, Wo) its input.
    """
    if isinstance(padding, str):
        raise TypeError(f"conv_transpose2d: padding must be an int or a pair, got {padding!r} "
                        f"(as in torch, a transposed convolution takes no string padding)")
    stride = chk.pair("stride", stride, minimum=1)
    dilation = chk.pair("dilation", dilation, minimum=1)
    pad = chk.pair("padding", padding, minimum=0)
    opad = chk.pair("output_padding", output_padding, minimum=0)
    _check_groups(groups)
    N, Cin, H, W = x_shape
    Kw, Coutg, kh, kw = w_shape
    if Cin % groups:
        raise ValueError(f"conv_transpose2d: groups={groups} must divide the input channels "
                         f"{Cin} (x shape {tuple(x_shape)})")
    if Kw != Cin:
        raise ValueError(f"conv_transpose2d: w.shape[0] must equal x's channels {Cin}, got w shape "
                         f"{tuple(w_shape)} (x shape {tuple(x_shape)})")
    for o, s, d, ax in zip(opad, stride, dilation, "hw"):
        if o >= s and o >= d:
            raise ValueError(f"output_padding ({ax}) must be smaller than stride or dilation, got "
                             f"output_padding={opad}, stride={stride}, dilation={dilation}")
    Ho = shapes.conv_transpose_out(H, kh, stride[0], pad[0], opad[0], dilation[0])
    Wo = shapes.conv_transpose_out(W, kw, stride[1], pad[1], opad[1], dilation[1])
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv_transpose2d: output size {Ho}x{Wo} is empty for x shape "
                         f"{tuple(x_shape)}, w shape {tuple(w_shape)}, padding {pad}")
    four = (pad[0], pad[0], pad[1], pad[1])
    g = _conv_geometry((N, Coutg * groups, Ho, Wo), w_shape, stride, four, dilation, groups,
                       what="conv_transpose2d")
    # output_padding may reach past the last window when it is >= stride (it
    # must then be < dilation): those rows receive nothing, and the window
    # count is x's size, not the one the convolution formula gives for Ho.
    return dataclasses.replace(g, win=dataclasses.replace(g.win, P=H, Q=W))


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution (torch.nn.functional.conv_transpose2d): the
    gradient of conv2d with respect to its input, as an op.

    x: (N, Cin, H, W), or (Cin, H, W) unbatched; w: (Cin, Cout/groups, kh, kw);
    b: (Cout,) or None. stride, padding, output_padding, dilation: an int or
    a pair (one-element tuples too); like torch, no string padding.
    output_padding (< stride or < dilation) adds rows/columns at the
    bottom/right. Returns (N, Cout, Ho, Wo) (unbatched: (Cout, Ho, Wo)) with
    Ho = (H-1)*sh - 2*ph + dh*(kh-1) + oph + 1, and Wo likewise.
    """
    x, unbatched = chk.batched("x", x)
    w = chk.array("w", w, 4)
    chk.same_dtype(x=x, w=w)
    g = _transpose_geometry(x.shape, w.shape, stride, padding, output_padding, groups, dilation)
    b = _bias(b, g.C, x)
    y = call("conv", "conv2d_backward_data", x, w, g)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return chk.unbatch(y, unbatched)


def conv_transpose2d_backward(dy, x, w, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, bias=True):
    """Gradients of conv_transpose2d with respect to x, w and b.

    dy: its output's shape, (N, Cout, Ho, Wo), or (Cout, Ho, Wo) when x is
    unbatched; the other arguments as for conv_transpose2d. Returns
    (dx, dw, db): dx shaped as x, dw as w, db (Cout,), or None when bias is False.
    """
    x, unbatched = chk.batched("x", x)
    dy, w = chk.like("dy", dy, unbatched), chk.array("w", w, 4)
    chk.same_dtype(dy=dy, x=x, w=w)
    bias = chk.flag("bias", bias)
    g = _transpose_geometry(x.shape, w.shape, stride, padding, output_padding, groups, dilation)
    chk.shape_is("dy", dy, (g.N, g.C, g.win.H, g.win.W), "the shape of conv_transpose2d's output")
    dx = call("conv", "conv2d_forward", dy, w, None, g)
    dw = call("conv", "conv2d_backward_filter", x, dy, g)
    db = call("conv", "conv2d_backward_bias", dy) if bias else None
    return chk.unbatch(dx, unbatched), dw, db


def _im2col_window(x_shape, kernel_size, stride, padding, dilation):
    kernel = chk.pair("kernel_size", kernel_size, minimum=1)
    stride = chk.pair("stride", stride, minimum=1)
    dilation = chk.pair("dilation", dilation, minimum=1)
    pad = chk.padding("padding", padding, four=False)
    chk.window_fits("im2col", x_shape, kernel, pad, dilation)
    return shapes.window(x_shape[-2], x_shape[-1], kernel, stride, pad, dilation)


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """The seed's phi(x), laid out as torch.nn.functional.unfold.

    x: (N, C, H, W), or (C, H, W) unbatched; kernel_size, stride, padding,
    dilation: an int or a pair (one-element tuples too). Returns
    (N, C*kh*kw, P*Q), or (C*kh*kw, P*Q) for an unbatched x: row c*kh*kw +
    i*kw + j holds tap (i, j) of channel c at every window position.
    """
    x, unbatched = chk.batched("x", x)
    win = _im2col_window(x.shape, kernel_size, stride, padding, dilation)
    return chk.unbatch(call("conv", "im2col", x, win), unbatched)


def col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1):
    """The reverse of phi, summing overlaps, as torch.nn.functional.fold.

    cols: (N, C*kh*kw, L), or (C*kh*kw, L) unbatched, with L the number of
    window positions over output_size (H, W); the other arguments as for
    im2col. Returns (N, C, H, W), or (C, H, W) for unbatched cols.
    """
    cols = chk.array("cols", cols, (2, 3))
    unbatched = cols.ndim == 2
    cols = cols[None] if unbatched else cols
    H, W = chk.pair("output_size", output_size, minimum=1)
    kernel = chk.pair("kernel_size", kernel_size, minimum=1)
    N, CKK, L = cols.shape
    if CKK % (kernel[0] * kernel[1]):
        raise ValueError(f"col2im: cols.shape[-2]={CKK} must be a multiple of kh*kw="
                         f"{kernel[0] * kernel[1]} (cols shape {tuple(cols.shape)})")
    C = CKK // (kernel[0] * kernel[1])
    win = _im2col_window((N, C, H, W), kernel, stride, padding, dilation)
    if L != win.P * win.Q:
        raise ValueError(f"col2im: cols.shape[-1]={L} must equal the number of window positions "
                         f"{win.P}x{win.Q}={win.P * win.Q} for output_size {(H, W)} "
                         f"(cols shape {tuple(cols.shape)})")
    return chk.unbatch(call("conv", "col2im", cols, C, win), unbatched)
