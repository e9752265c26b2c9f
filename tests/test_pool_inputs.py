"""Pooling's inputs: non-contiguous and read-only layouts, inputs never
modified, empty batches, and every bad argument rejected with a message that
names it, on every backend."""
from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from conftest import TOL
from crosscheck import specials as _specials

pytestmark = pytest.mark.family("pool")

DTYPES = [np.float32, np.float64]


# ----------------------------------------------------- layouts and purity

def _odd_layout(rng, shape, dtype):
    """A non-contiguous, read-only view with a negative stride."""
    N, C, H, W = shape
    base = rng.standard_normal((N, 2 * C, W, H + 1)).astype(dtype)
    x = base[:, ::2, :, 1:][..., ::-1].transpose(0, 1, 3, 2)
    x.flags.writeable = False
    assert not x.flags.c_contiguous
    return x


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_read_only_inputs(backend, dtype):
    rng = np.random.default_rng(13)
    x = _odd_layout(rng, (2, 3, 7, 6), dtype)
    keep = x.copy()
    c = np.ascontiguousarray(x)
    g = dict(kernel_size=3, stride=2, padding=(1, 0, 1, 1), ceil_mode=True)
    y, idx = gpucnn.max_pool2d(x, return_indices=True, **g)
    yc, ic = gpucnn.max_pool2d(c, return_indices=True, **g)
    np.testing.assert_array_equal(y, yc)
    np.testing.assert_array_equal(idx, ic)
    dy = _odd_layout(rng, (2, 3) + y.shape[2:], dtype)
    np.testing.assert_array_equal(gpucnn.max_pool2d_backward(dy, x, **g),
                                  gpucnn.max_pool2d_backward(np.ascontiguousarray(dy), c, **g))
    idx_nc = np.asfortranarray(idx)
    idx_nc.flags.writeable = False
    np.testing.assert_array_equal(gpucnn.max_pool2d_backward(dy, x, indices=idx_nc, **g),
                                  gpucnn.max_pool2d_backward(dy, c, indices=ic, **g))
    np.testing.assert_array_equal(gpucnn.max_unpool2d(dy, idx_nc, 3, 2, 1, output_size=(7, 6)),
                                  gpucnn.max_unpool2d(np.ascontiguousarray(dy), ic, 3, 2, 1,
                                                      output_size=(7, 6)))
    for cip in (True, False):
        np.testing.assert_allclose(gpucnn.avg_pool2d(x, count_include_pad=cip, **g),
                                   gpucnn.avg_pool2d(c, count_include_pad=cip, **g), **TOL[dtype])
        np.testing.assert_allclose(gpucnn.avg_pool2d_backward(dy, x, count_include_pad=cip, **g),
                                   gpucnn.avg_pool2d_backward(np.ascontiguousarray(dy), c,
                                                              count_include_pad=cip, **g),
                                   **TOL[dtype])
    np.testing.assert_array_equal(x, keep)


def test_inputs_not_modified(backend):
    rng = np.random.default_rng(14)
    x = _specials(rng, (2, 2, 6, 6), np.float32)
    dy = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    keep_x, keep_dy = x.copy(), dy.copy()
    y, idx = gpucnn.max_pool2d(x, 2, return_indices=True)
    keep_idx = idx.copy()
    gpucnn.max_pool2d_backward(dy, x, 2, indices=idx)
    gpucnn.max_unpool2d(dy, idx, 2)
    gpucnn.avg_pool2d_backward(dy, x, 2)
    gpucnn.avg_pool2d(x, 2)
    np.testing.assert_array_equal(x, keep_x)
    np.testing.assert_array_equal(dy, keep_dy)
    np.testing.assert_array_equal(idx, keep_idx)


def test_empty_batch(backend):
    x = np.zeros((0, 2, 6, 6), np.float32)
    y, idx = gpucnn.max_pool2d(x, 2, return_indices=True)
    assert y.shape == idx.shape == (0, 2, 3, 3)
    assert gpucnn.max_pool2d_backward(y, x, 2).shape == x.shape
    assert gpucnn.max_unpool2d(y, idx, 2).shape == x.shape
    assert gpucnn.avg_pool2d(x, 2).shape == y.shape
    assert gpucnn.avg_pool2d_backward(y, x, 2).shape == x.shape


# --------------------------------------------------------------- bad input

X = np.zeros((1, 2, 6, 6), np.float32)
DY = np.zeros((1, 2, 3, 3), np.float32)
IDX = np.zeros((1, 2, 3, 3), np.int64)

BAD = [
    ("ndim", lambda: gpucnn.max_pool2d(X[0, 0], 2), ValueError, "x must be 3-D or 4-D"),
    ("ndim avg", lambda: gpucnn.avg_pool2d(X[0, 0, 0], 2), ValueError, "x must be 3-D or 4-D"),
    ("dy unbatched, x not", lambda: gpucnn.avg_pool2d_backward(DY[0], X, 2), ValueError, "dy must be 4-D"),
    ("divisor_override 0", lambda: gpucnn.avg_pool2d(X, 2, divisor_override=0), ValueError, "divisor_override"),
    ("divisor_override float", lambda: gpucnn.avg_pool2d_backward(DY, X, 2, divisor_override=2.0), TypeError,
     "divisor_override"),
    ("kernel too big", lambda: gpucnn.max_pool2d(X, 7), ValueError, "kernel"),
    ("dilated kernel too big", lambda: gpucnn.max_pool2d(X, 3, dilation=3), ValueError, "kernel"),
    ("avg kernel too big", lambda: gpucnn.avg_pool2d(X, (2, 9), padding=(0, 1)), ValueError, "kernel"),
    ("stride 0", lambda: gpucnn.max_pool2d(X, 2, 0), ValueError, "stride"),
    ("stride < 0", lambda: gpucnn.avg_pool2d(X, 2, (1, -1)), ValueError, "stride"),
    ("negative padding", lambda: gpucnn.max_pool2d(X, 2, 1, -1), ValueError, "padding"),
    ("negative asym padding", lambda: gpucnn.avg_pool2d(X, 3, 1, (1, 0, -1, 0)), ValueError, "padding"),
    ("padding > k/2", lambda: gpucnn.max_pool2d(X, 3, 1, 2), ValueError, "padding"),
    ("asym padding > k/2", lambda: gpucnn.avg_pool2d(X, 2, 1, (0, 2, 0, 0)), ValueError, "padding"),
    ("kernel 0", lambda: gpucnn.max_pool2d(X, 0), ValueError, "kernel_size"),
    ("int dtype", lambda: gpucnn.max_pool2d(X.astype(np.int32), 2), TypeError, "x must be float"),
    ("complex dtype", lambda: gpucnn.avg_pool2d(X.astype(np.complex64), 2), TypeError, "x must be float"),
    ("float16", lambda: gpucnn.max_pool2d(X.astype(np.float16), 2), TypeError, "x must be float"),
    ("mixed dtypes max", lambda: gpucnn.max_pool2d_backward(DY.astype(np.float64), X, 2), TypeError, "dtype"),
    ("mixed dtypes avg", lambda: gpucnn.avg_pool2d_backward(DY, X.astype(np.float64), 2), TypeError, "dtype"),
    ("dy shape max", lambda: gpucnn.max_pool2d_backward(DY[:, :, :2], X, 2), ValueError, "dy"),
    ("dy shape avg", lambda: gpucnn.avg_pool2d_backward(DY, X, 3), ValueError, "dy"),
    ("indices shape", lambda: gpucnn.max_pool2d_backward(DY, X, 2, indices=IDX[:, :1]), ValueError, "indices"),
    ("indices dtype", lambda: gpucnn.max_pool2d_backward(DY, X, 2, indices=IDX.astype(np.float32)),
     TypeError, "indices"),
    ("indices range", lambda: gpucnn.max_pool2d_backward(DY, X, 2, indices=IDX + 36), ValueError, "indices"),
    ("indices negative", lambda: gpucnn.max_pool2d_backward(DY, X, 2, indices=IDX - 1), ValueError, "indices"),
    ("unpool indices shape", lambda: gpucnn.max_unpool2d(DY, IDX[..., :2], 2), ValueError, "indices"),
    ("unpool indices dtype", lambda: gpucnn.max_unpool2d(DY, IDX.astype(np.float64), 2), TypeError, "indices"),
    ("unpool indices range", lambda: gpucnn.max_unpool2d(DY, IDX + 36, 2), ValueError, "indices"),
    ("unpool ndim", lambda: gpucnn.max_unpool2d(DY[0, 0], IDX[0, 0], 2), ValueError, "y must be 3-D or 4-D"),
    ("unpool int y", lambda: gpucnn.max_unpool2d(IDX, IDX, 2), TypeError, "y must be float"),
    ("unpool output_size too big", lambda: gpucnn.max_unpool2d(DY, IDX, 2, output_size=(8, 6)),
     ValueError, "output_size"),
    ("unpool output_size too small", lambda: gpucnn.max_unpool2d(DY, IDX, 2, output_size=(6, 4)),
     ValueError, "output_size"),
    ("return_indices not bool", lambda: gpucnn.max_pool2d(X, 2, return_indices="yes"), TypeError,
     "return_indices"),
    ("ceil_mode not bool", lambda: gpucnn.avg_pool2d(X, 2, ceil_mode=None), TypeError, "ceil_mode"),
    ("count_include_pad not bool", lambda: gpucnn.avg_pool2d(X, 2, count_include_pad=2), TypeError,
     "count_include_pad"),
    ("kernel not int", lambda: gpucnn.max_pool2d(X, 2.0), TypeError, "kernel_size"),
    ("dilation 0", lambda: gpucnn.max_pool2d(X, 2, dilation=0), ValueError, "dilation"),
    ("padding of three", lambda: gpucnn.max_pool2d(X, 3, 1, (1, 1, 1)), TypeError, "padding"),
    ("unpool output_size of three",
     lambda: gpucnn.max_unpool2d(DY, IDX, 2, output_size=(2, 6, 6)), (TypeError, ValueError),
     "output_size"),
    ("unpool output_size int", lambda: gpucnn.max_unpool2d(DY, IDX, 2, output_size=6), TypeError,
     "output_size"),
]


@pytest.mark.parametrize("call, exc, msg",
                         [pytest.param(*b[1:4], id=b[0], marks=b[4:]) for b in BAD])
def test_bad_input(backend, call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()
