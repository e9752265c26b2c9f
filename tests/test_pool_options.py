"""The PyTorch-habit options of pooling, on every backend: avg_pool2d's
divisor_override (forward and backward), unbatched (C, H, W) inputs and
one-element tuples, cross-checked against PyTorch CPU (gradients by autograd)."""
from __future__ import annotations

import numpy as np
import pytest
from crosscheck import check, randn, to_torch, torch_or_skip
from test_pool import _crop, _geometry, _tpool_args

import gpucnn

pytestmark = pytest.mark.family("pool")

DTYPES = (np.float32, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_divisor_override_by_hand(backend, dtype):
    x = np.arange(1, 17, dtype=dtype).reshape(1, 1, 4, 4)
    y = gpucnn.avg_pool2d(x, 2, padding=1, divisor_override=3)
    # The corner window holds 1 and three padded zeros; the centre one 6, 7, 10, 11.
    assert y[0, 0, 0, 0] == dtype(1 / 3) and y[0, 0, 1, 1] == dtype(34 / 3)
    dx = gpucnn.avg_pool2d_backward(np.ones((1, 1, 3, 3), dtype), x, 2, padding=1, divisor_override=-2)
    np.testing.assert_array_equal(dx, np.full((1, 1, 4, 4), -0.5, dtype))


def _torch_avg_override(xt, g, cip, div):
    """torch's avg_pool2d with divisor_override; asymmetric padding as an
    explicit zero pad, which the override makes exact."""
    F = torch_or_skip().nn.functional
    k, s, pad = _tpool_args(g)
    if len(pad) == 4:
        t, b, l, r = pad
        xt, pad = F.pad(xt, (l, r, t, b)), 0
    return F.avg_pool2d(xt, k, s, pad, g["ceil_mode"], cip, divisor_override=div)


@pytest.mark.parametrize("dtype", DTYPES)
def test_divisor_override_vs_torch(backend, dtype):
    rng = np.random.default_rng(31)
    for case in range(12):
        shape, g = _geometry(rng, dilation=False, asym=bool(case % 3 == 2))
        g.pop("dilation")
        cip, div = bool(case % 2), int(rng.choice([1, 2, 5, -3]))
        x = randn(rng, shape, dtype)
        y = gpucnn.avg_pool2d(x, count_include_pad=cip, divisor_override=div, **g)
        xt = to_torch(x).requires_grad_()
        yt = _torch_avg_override(xt, g, cip, div)
        check("avg_pool2d(divisor_override)", y, _crop(yt.detach().numpy(), y), dtype, {"divisor_override"})
        dy = randn(rng, y.shape, dtype)
        dyt = np.zeros(yt.shape, dtype)
        dyt[..., :y.shape[-2], :y.shape[-1]] = dy
        yt.backward(to_torch(dyt))
        dx = gpucnn.avg_pool2d_backward(dy, x, count_include_pad=cip, divisor_override=div, **g)
        check("avg_pool2d_backward(divisor_override)", dx, xt.grad.numpy(), dtype, {"divisor_override"})


@pytest.mark.parametrize("dtype", DTYPES)
def test_unbatched_and_one_element_tuples_vs_torch(backend, dtype):
    F = torch_or_skip().nn.functional
    rng = np.random.default_rng(32)
    x = rng.permutation(3 * 7 * 6).reshape(3, 7, 6).astype(dtype)  # distinct: no ties
    opts = {"unbatched", "1-tuples"}
    g = dict(kernel_size=(3,), stride=(2,), padding=(1,), dilation=(1,), ceil_mode=True)
    xt = to_torch(x).requires_grad_()
    yt, it = F.max_pool2d(xt, **g, return_indices=True)
    y, idx = gpucnn.max_pool2d(x, **g, return_indices=True)
    check("max_pool2d", y, yt.detach().numpy(), dtype, opts)
    np.testing.assert_array_equal(idx, it.numpy())
    dy = randn(rng, y.shape, dtype)
    yt.backward(to_torch(dy))
    check("max_pool2d_backward", gpucnn.max_pool2d_backward(dy, x, **g), xt.grad.numpy(), dtype, opts)
    check("max_pool2d_backward(indices)", gpucnn.max_pool2d_backward(dy, x, **g, indices=idx),
          xt.grad.numpy(), dtype, opts)
    u = gpucnn.max_unpool2d(y, idx, (3,), (2,), (1,), output_size=(7, 6))
    # torch's max_unpool2d miscounts output_size with a one-element kernel: ints there.
    check("max_unpool2d", u, F.max_unpool2d(yt.detach(), it, 3, 2, 1, output_size=(7, 6)).numpy(), dtype, opts)
    a = dict(kernel_size=(2,), stride=(1,), padding=(1,), ceil_mode=False, count_include_pad=False)
    xt = to_torch(x).requires_grad_()
    yt = F.avg_pool2d(xt, **a, divisor_override=None)
    y = gpucnn.avg_pool2d(x, **a)
    check("avg_pool2d", y, yt.detach().numpy(), dtype, opts)
    dy = randn(rng, y.shape, dtype)
    yt.backward(to_torch(dy))
    check("avg_pool2d_backward", gpucnn.avg_pool2d_backward(dy, x, **a), xt.grad.numpy(), dtype, opts)


@pytest.mark.parametrize("dtype", DTYPES)
def test_options_alternate_on_one_shape_vs_torch(backend, dtype):
    """pool._avg_geometry memoises the kernels' arguments per (planes, window,
    count_include_pad, divisor_override): alternating the options, and the
    window, on one input must give each call its own result, not the first's."""
    rng = np.random.default_rng(33)
    x = randn(rng, (2, 3, 7, 6), dtype)
    for k, pad in ((3, (1, 0)), (2, (1, 1))):  # symmetric: the helper pads explicitly only for 4 pads
        g = dict(kernel_size=k, stride=2, padding=pad, ceil_mode=True)
        for cip, div in ((True, None), (False, None), (True, 3), (False, -2), (True, None)):
            y = gpucnn.avg_pool2d(x, count_include_pad=cip, divisor_override=div, **g)
            want = _torch_avg_override(to_torch(x), g, cip, div).numpy()
            check("avg_pool2d(alternating options)", y, _crop(want, y), dtype, {"divisor_override"})
