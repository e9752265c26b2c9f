"""The PyTorch-habit options of the convolutions, on every backend: padding
"same" / "valid" (any stride, TensorFlow's rule beyond stride 1), unbatched
(C, H, W) inputs and one-element tuples, cross-checked against PyTorch CPU
(gradients by autograd) and, for "same" with a stride, against torch on an
input padded as TensorFlow documents it."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from crosscheck import check, randn, to_torch, torch_or_skip

import gpucnn

pytestmark = pytest.mark.family("conv")

DTYPES = (np.float32, np.float64)


def _tf_same(size, k, s, d):
    """TensorFlow's documented rule, written out: out = ceil(size / s),
    pad_total = max((out - 1) * s + effective kernel - size, 0), the extra
    one after."""
    out = (size + s - 1) // s
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("H,k,s,d,want", [(7, 3, 2, 1, (1, 1)), (8, 3, 2, 1, (0, 1)), (5, 4, 1, 1, (1, 2)),
                                          (6, 1, 3, 1, (0, 0)), (9, 3, 3, 2, (1, 1)), (4, 5, 4, 1, (0, 1))])
def test_same_padding_by_hand(backend, H, k, s, d, want):
    assert _tf_same(H, k, s, d) == want
    x = np.arange(H * 3, dtype=np.float64).reshape(1, 1, H, 3)
    w = np.ones((1, 1, k, 1))
    y = gpucnn.conv2d(x, w, stride=(s, 1), dilation=(d, 1), padding="same")
    assert y.shape == (1, 1, -(-H // s), 3)
    # Column 0 of y is the sum of the taps of x's column 0 inside the input.
    col = x[0, 0, :, 0]
    rows = np.arange(y.shape[2])[:, None] * s - want[0] + np.arange(k)[None, :] * d
    np.testing.assert_array_equal(y[0, 0, :, 0], np.where((rows >= 0) & (rows < H), col[rows.clip(0, H - 1)], 0).sum(1))


def _conv_vs_torch(x, w, b, dtype, options, *, torch_pad, **kw):
    """Our conv2d and its backward against torch's on the same arguments,
    torch padding x explicitly when ``torch_pad`` (l, r, t, b) is given."""
    torch = torch_or_skip()
    F = torch.nn.functional
    xt, wt = to_torch(x).requires_grad_(), to_torch(w).requires_grad_()
    bt = None if b is None else to_torch(b).requires_grad_()
    tkw = dict(kw)
    xin = xt
    if torch_pad is not None:
        xin = F.pad(xt, torch_pad)
        tkw["padding"] = 0
    with warnings.catch_warnings():  # torch notes that even kernels may copy the input
        warnings.simplefilter("ignore", UserWarning)
        yt = F.conv2d(xin, wt, bt, **tkw)
    y = gpucnn.conv2d(x, w, b, **kw)
    check("conv2d", y, yt.detach().numpy(), dtype, options)
    dy = randn(np.random.default_rng(y.size), y.shape, dtype)
    yt.backward(to_torch(dy))
    dx, dw, db = gpucnn.conv2d_backward(dy, x, w, **kw, bias=b is not None)
    check("conv2d_backward dx", dx, xt.grad.numpy(), dtype, options)
    check("conv2d_backward dw", dw, wt.grad.numpy(), dtype, options)
    if b is not None:
        check("conv2d_backward db", db, bt.grad.numpy(), dtype, options)


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_and_valid_vs_torch(backend, dtype):
    rng = np.random.default_rng(21)
    for case in range(8):
        C, K = (int(v) for v in rng.integers(1, 4, 2))
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        dil = tuple(int(v) for v in rng.integers(1, 3, 2))
        H, W = (int(v) for v in rng.integers(1, 9, 2))
        x = randn(rng, (int(rng.integers(1, 3)), C, H, W), dtype)
        w = randn(rng, (K, C, kh, kw), dtype)
        b = randn(rng, (K,), dtype) if case % 2 else None
        # Stride 1: torch's own "same" (and "valid" where the kernel fits).
        _conv_vs_torch(x, w, b, dtype, {"same"}, torch_pad=None, padding="same", dilation=dil)
        if H >= dil[0] * (kh - 1) + 1 and W >= dil[1] * (kw - 1) + 1:
            _conv_vs_torch(x, w, b, dtype, {"valid"}, torch_pad=None, padding="valid", dilation=dil)
        # Any stride: TensorFlow's padding, applied explicitly for torch.
        st = tuple(int(v) for v in rng.integers(2, 4, 2))
        (t, bo), (le, r) = (_tf_same(n, k, s, d) for n, k, s, d in zip((H, W), (kh, kw), st, dil))
        _conv_vs_torch(x, w, b, dtype, {"same", "stride"}, torch_pad=(le, r, t, bo), padding="same",
                       stride=st, dilation=dil)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unbatched_and_one_element_tuples_vs_torch(backend, dtype):
    torch = torch_or_skip()
    F = torch.nn.functional
    rng = np.random.default_rng(22)
    x, w, b = randn(rng, (4, 7, 7), dtype), randn(rng, (6, 2, 3, 2), dtype), randn(rng, (6,), dtype)
    kw = dict(stride=(2,), padding=(1,), dilation=(1,), groups=2)
    _conv_vs_torch(x, w, b, dtype, {"unbatched", "1-tuples"}, torch_pad=None, **kw)
    _conv_vs_torch(x, w, None, dtype, {"unbatched", "same"}, torch_pad=None, padding="same", groups=2)
    # Transposed: x (Cin, H, W), w (Cin, Cout/groups, kh, kw).
    wt_ = randn(rng, (4, 3, 3, 2), dtype)
    tkw = dict(stride=(2,), padding=(1,), output_padding=(1,), groups=2, dilation=(1,))
    xt, wt = to_torch(x).requires_grad_(), to_torch(wt_).requires_grad_()
    bt = to_torch(b).requires_grad_()
    yt = F.conv_transpose2d(xt, wt, bt, **tkw)
    y = gpucnn.conv_transpose2d(x, wt_, b, **tkw)
    check("conv_transpose2d", y, yt.detach().numpy(), dtype, {"unbatched", "1-tuples"})
    dy = randn(rng, y.shape, dtype)
    yt.backward(to_torch(dy))
    dx, dw, db = gpucnn.conv_transpose2d_backward(dy, x, wt_, **tkw)
    for name, got, want in (("dx", dx, xt.grad), ("dw", dw, wt.grad), ("db", db, bt.grad)):
        check(f"conv_transpose2d_backward {name}", got, want.numpy(), dtype, {"unbatched", "1-tuples"})
    # im2col / col2im: (C*kh*kw, L) unbatched, as torch's unfold / fold
    # (which take no one-element tuples; we do).
    ikw = dict(kernel_size=3, stride=2, padding=1, dilation=2)
    one = {k: (v,) for k, v in ikw.items()}
    cols = gpucnn.im2col(x, **one)
    check("im2col", cols, F.unfold(to_torch(x), **ikw).numpy(), dtype, {"unbatched", "1-tuples"})
    back = gpucnn.col2im(cols, (7,), **one)
    check("col2im", back, F.fold(to_torch(cols), 7, **ikw).numpy(), dtype, {"unbatched", "1-tuples"})
