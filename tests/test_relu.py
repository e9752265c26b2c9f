"""ReLU and leaky ReLU with their backward passes, on every backend.

PyTorch CPU is the outside oracle (skipped cleanly without torch):
``torch.relu`` / ``threshold_backward`` for slope 0, ``leaky_relu`` /
``leaky_relu_backward`` otherwise, special values included. Float64 finite
differences check the backward away from the kink.

``pytest --crosscheck-report`` prints per op the torch cases run and the worst relative error.
"""
from __future__ import annotations

import numpy as np
import pytest
from crosscheck import close as _record, to_torch, torch_or_skip

import gpucnn

pytestmark = pytest.mark.family("relu")

DTYPES = [np.float32, np.float64]
SLOPES = [0.0, 0.01, 0.2, 1.0, 1.5, -0.3]
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 2.5, -2.5]
FD_TOL = dict(rtol=1e-7, atol=1e-9)


def _random(rng, dtype, shape=None):
    if shape is None:
        shape = tuple(int(n) for n in rng.integers(1, 6, int(rng.integers(1, 5))))
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[rng.integers(0, x.size, x.size // 3)] = rng.choice(SPECIALS, x.size // 3)
    return x


def _torch_forward(x, slope):
    torch = torch_or_skip()
    return (torch.relu(to_torch(x)) if slope == 0 else
            torch.nn.functional.leaky_relu(to_torch(x), slope)).numpy()


def _torch_backward(dy, x, slope):
    aten = torch_or_skip().ops.aten
    if slope == 0:
        return aten.threshold_backward(to_torch(dy), to_torch(x), 0).numpy()
    return aten.leaky_relu_backward(to_torch(dy), to_torch(x), slope, False).numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", SLOPES)
def test_relu_vs_torch(backend, dtype, slope):
    rng = np.random.default_rng(int(slope * 100) % 97)
    for case in range(20):
        x = _random(rng, dtype)
        dy = _random(rng, dtype, x.shape)
        op = "relu" if slope == 0 else "leaky_relu"
        _record(op, gpucnn.relu(x, slope), _torch_forward(x, slope), dtype)
        _record(op + "_backward", gpucnn.relu_backward(dy, x, slope),
                _torch_backward(dy, x, slope), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_autograd_vs_torch(backend, dtype):
    # What autograd actually runs: relu's backward reads the output, leaky
    # relu's the input; both must agree with ours on x.
    torch = torch_or_skip()
    rng = np.random.default_rng(17)
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    x[0, 0, :3] = 0.0
    dy = rng.standard_normal(x.shape).astype(dtype)
    for slope in (0.0, 0.1):
        xt = to_torch(x).requires_grad_()
        (torch.relu(xt) if slope == 0 else torch.nn.functional.leaky_relu(xt, slope)).backward(to_torch(dy))
        _record("relu_backward autograd", gpucnn.relu_backward(dy, x, slope), xt.grad.numpy(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_special_values_by_hand(backend, dtype):
    nan, inf = np.nan, np.inf
    x = np.array([nan, inf, -inf, 0.0, -0.0, 3.0, -2.0], dtype)
    np.testing.assert_array_equal(gpucnn.relu(x), [nan, inf, 0, 0, 0, 3, 0])
    np.testing.assert_array_equal(gpucnn.relu(x, 0.5), [nan, inf, -inf, 0, 0, 3, -1])
    dy = np.array([1, 2, 3, 4, 5, 6, inf], dtype)
    # Slope 0 is threshold_backward (`x <= 0 ? 0 : dy`): a NaN input passes dy,
    # an inf dy on the negative side is blocked, not inf * 0 = NaN. The
    # gradient at 0 is the negative side's.
    np.testing.assert_array_equal(gpucnn.relu_backward(dy, x), [1, 2, 0, 0, 0, 6, 0])
    # Leaky: `x > 0 ? dy : dy * slope`, so NaN takes the negative side.
    np.testing.assert_array_equal(gpucnn.relu_backward(dy, x, 0.5), [0.5, 2, 1.5, 2, 2.5, 6, inf])
    assert gpucnn.relu(x).dtype == dtype and gpucnn.relu_backward(dy, x, 0.5).dtype == dtype


@pytest.mark.parametrize("slope", [0.0, 0.1, -0.5, 2.0])
def test_relu_backward_finite_differences(backend, slope):
    rng = np.random.default_rng(18)
    x = rng.standard_normal((2, 3, 4, 5))
    # Kink band: every input at least 0.05 away from 0, far more than the step.
    x = np.where(np.abs(x) < 0.05, np.copysign(0.05, x) + x, x)
    w = rng.standard_normal(x.shape)
    eps = 1e-4
    num = np.empty_like(x)
    for k in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp.flat[k] += eps
        xm.flat[k] -= eps
        num.flat[k] = (np.sum(w * gpucnn.relu(xp, slope)) - np.sum(w * gpucnn.relu(xm, slope))) / (2 * eps)
    np.testing.assert_allclose(gpucnn.relu_backward(w, x, slope), num, **FD_TOL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_read_only_inputs(backend, dtype):
    rng = np.random.default_rng(19)
    base = rng.standard_normal((4, 6, 8, 10)).astype(dtype)
    x = base[::2, :, ::-1].transpose(0, 3, 1, 2)
    dy = rng.standard_normal(x.shape[::-1]).astype(dtype).T
    for a in (x, dy, base):
        a.flags.writeable = False
    keep_x, keep_dy = x.copy(), dy.copy()
    assert not x.flags.c_contiguous and not dy.flags.c_contiguous
    for slope in (0.0, 0.1, 3.0):
        np.testing.assert_array_equal(gpucnn.relu(x, slope), gpucnn.relu(np.ascontiguousarray(x), slope))
        np.testing.assert_array_equal(gpucnn.relu_backward(dy, x, slope),
                                      gpucnn.relu_backward(np.ascontiguousarray(dy),
                                                           np.ascontiguousarray(x), slope))
    np.testing.assert_array_equal(x, keep_x)
    np.testing.assert_array_equal(dy, keep_dy)


def test_shapes_other_than_4d(backend):
    for shape in [(), (0,), (7,), (2, 3), (1, 2, 3, 4, 5)]:
        x = np.linspace(-1, 1, int(np.prod(shape))).reshape(shape)
        assert gpucnn.relu(x).shape == shape
        assert gpucnn.relu_backward(x, x, 0.1).shape == shape


X = np.zeros((2, 3), np.float32)

BAD = [
    ("int dtype", lambda: gpucnn.relu(X.astype(np.int64)), TypeError, "x must be float"),
    ("complex dtype", lambda: gpucnn.relu(X.astype(np.complex128)), TypeError, "x must be float"),
    ("bool dtype", lambda: gpucnn.relu_backward(X, X.astype(bool)), TypeError, "x must be float"),
    ("int dy", lambda: gpucnn.relu_backward(X.astype(np.int32), X), TypeError, "dy must be float"),
    ("mixed dtypes", lambda: gpucnn.relu_backward(X.astype(np.float64), X), TypeError, "dtype"),
    ("dy shape", lambda: gpucnn.relu_backward(X[:1], X), ValueError, "dy"),
    ("slope not a number", lambda: gpucnn.relu(X, "0.1"), TypeError, "negative_slope"),
    ("slope bool", lambda: gpucnn.relu(X, True), TypeError, "negative_slope"),
    ("slope array", lambda: gpucnn.relu_backward(X, X, X), TypeError, "negative_slope"),
]


@pytest.mark.parametrize("call, exc, msg", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(backend, call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5), (2, 3, 4, 5), (1031,)])
def test_residual_add_vs_torch(backend, dtype, shape):
    """The residual sum's kernel (vector bulk and scalar tail; offset views,
    which break 16-byte alignment) against torch.add, special values included:
    a float sum is one IEEE addition, so the comparison is bitwise."""
    torch = torch_or_skip()
    from gpucnn.backend import call
    rng = np.random.default_rng(len(shape) * 100 + sum(shape))
    if shape:
        full = (shape[0] + 1,) + shape[1:]
        a, b = _random(rng, dtype, full), _random(rng, dtype, full)
        pairs = [(a[:-1], b[:-1]), (a[1:], b[:-1])]
    else:
        pairs = [(np.asarray(rng.standard_normal(), dtype), np.asarray(rng.standard_normal(), dtype))]
    for x, y in pairs:
        got = call("relu", "add", x, y)
        np.testing.assert_array_equal(got, torch.add(to_torch(x), to_torch(y)).numpy())
        assert got.shape == x.shape and got.dtype == x.dtype
        # With the ReLU after it (a fused Residual + ReLU): torch.relu of the sum.
        got = call("relu", "add", x, y, True)
        np.testing.assert_array_equal(got, torch.relu(torch.add(to_torch(x), to_torch(y))).numpy())
        assert got.shape == x.shape and got.dtype == x.dtype
