"""2-D batch normalization (forward, backward, running statistics) on every backend.

PyTorch CPU is the outside oracle (skipped cleanly without torch):
``torch.nn.functional.batch_norm`` in training and eval mode, its gradients
by autograd and its in-place running-statistics update against the ones
``batch_norm2d`` returns. Float64 directional finite differences check the
backward; a 64x8x32x32 float32 batch with large channel offsets checks the
accuracy of the statistics.

``pytest --crosscheck-report`` prints per op the torch cases run and the worst relative error.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import tol
from crosscheck import check, directional_fd, to_torch, torch_or_skip

import gpucnn

pytestmark = pytest.mark.family("norm")

DTYPES = [np.float32, np.float64]
# (N, C, H, W): one image, 1x1 planes, odd channel counts, a plane that is not a multiple of a block.
SHAPES = [(1, 3, 2, 2), (2, 5, 1, 1), (4, 7, 3, 5), (1, 1, 1, 2), (3, 13, 17, 9), (5, 2, 16, 16)]


def _params(rng, C, dtype):
    return (rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype),
            rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2.0, C).astype(dtype))


def _torch_batch_norm(x, dy, gamma, beta, rm, rv, training, momentum, eps):
    """torch's y, dx, dgamma, dbeta and its running statistics after the call."""
    torch = torch_or_skip()
    xt, gt, bt = (to_torch(a).requires_grad_() for a in (x, gamma, beta))
    rmt, rvt = to_torch(rm.copy()), to_torch(rv.copy())
    yt = torch.nn.functional.batch_norm(xt, rmt, rvt, gt, bt, training, momentum, eps)
    yt.backward(to_torch(dy))
    return [t.detach().numpy() for t in (yt, xt.grad, gt.grad, bt.grad, rmt, rvt)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_vs_torch(backend, dtype, training):
    rng = np.random.default_rng(31 + training)
    for case, shape in enumerate(SHAPES):
        momentum, eps = [(0.1, 1e-5), (0.0, 1e-3), (1.0, 0.5), (0.37, 1e-5)][case % 4]
        x = (rng.standard_normal(shape) * rng.uniform(0.1, 10) + rng.uniform(-5, 5)).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        gamma, beta, rm, rv = _params(rng, shape[1], dtype)
        want = _torch_batch_norm(x, dy, gamma, beta, rm, rv, training, momentum, eps)
        y, saved = gpucnn.batch_norm2d(x, gamma, beta, rm, rv, training, momentum, eps)
        dx, dgamma, dbeta = gpucnn.batch_norm2d_backward(dy, x, gamma, saved, eps)
        opts = ("train" if training else "eval", f"shape {shape}")
        got = (y, dx, dgamma, dbeta, saved.running_mean, saved.running_var)
        names = ("y", "dx", "dgamma", "dbeta", "running_mean", "running_var")
        # With two values per channel, dx is 0 up to rounding: its relative error means nothing.
        noise = training and x.size // shape[1] == 2
        for name, g, w in zip(names, got, want):
            check(f"batch_norm2d {name}", g, w, dtype, opts, record=not (noise and name == "dx"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(2, 3, 12, 12), (2, 3, 20, 60), (3, 5, 4, 4), (1, 2, 8, 130)])
def test_planes_across_a_threads_vectors(backend, dtype, training, shape):
    """batchnorm.cu's channel_apply gives a thread several 16-byte vectors
    a block apart and carries their channel (ChannelPos): planes of 36, 300,
    4 and 260 float4 vectors, so a block's step crosses 7 planes plus 4
    vectors, less than one plane, 64 planes, or one plane with a carry; the
    last threads' vectors run past the end. y, dx, dgamma, dbeta against
    torch, with and without the fused ReLU."""
    rng = np.random.default_rng(list(shape))
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    gamma, beta, rm, rv = _params(rng, shape[1], dtype)
    want = _torch_batch_norm(x, dy, gamma, beta, rm, rv, training, 0.1, 1e-5)
    y, saved = gpucnn.batch_norm2d(x, gamma, beta, rm, rv, training)
    got = (y, *gpucnn.batch_norm2d_backward(dy, x, gamma, saved))
    opts = ("train" if training else "eval", f"shape {shape}")
    for name, g, w in zip(("y", "dx", "dgamma", "dbeta"), got, want):
        check(f"batch_norm2d {name}", g, w, dtype, opts)
    yr, saved_r = gpucnn.batch_norm2d_relu(x, gamma, beta, rm, rv, training)
    np.testing.assert_array_equal(yr, np.maximum(y, 0))
    dxr = gpucnn.batch_norm2d_relu_backward(dy, x, gamma, saved_r, yr)[0]
    dx_masked = gpucnn.batch_norm2d_backward(np.where(y > 0, dy, 0).astype(dtype), x, gamma, saved)[0]
    np.testing.assert_allclose(dxr, dx_masked, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_statistics_in_one_allocation_alike(backend, dtype, monkeypatch):
    """norm.STATS_ONE_ALLOCATION (bench/ab_mem.py's "one allocation" variant): the mean, invstd
    and updated running statistics as the rows of one array, bit for bit the four arrays', and
    each row of its channel count."""
    from gpucnn.cuda import norm as cuda_norm
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 5, 6, 4)) * 2 + 1).astype(dtype)
    gamma, beta, rm, rv = _params(rng, 5, dtype)
    runs = []
    for one in (False, True):
        monkeypatch.setattr(cuda_norm, "STATS_ONE_ALLOCATION", one)
        y, saved = gpucnn.batch_norm2d(x, gamma, beta, rm, rv, True, 0.1, 1e-5)
        runs.append((y, saved.mean, saved.invstd, saved.running_mean, saved.running_var))
    for a, b in zip(*runs):
        assert b.shape == a.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_without_running_stats_or_affine(backend, dtype):
    torch = torch_or_skip()
    rng = np.random.default_rng(32)
    x = rng.standard_normal((3, 4, 5, 2)).astype(dtype)
    y, saved = gpucnn.batch_norm2d(x, None, None)
    assert saved.running_mean is None and saved.running_var is None and saved.batch_stats
    check("batch_norm2d y no affine", y, torch.nn.functional.batch_norm(to_torch(x), None, None, training=True).numpy(), dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    ones, zeros = np.ones(4, dtype), np.zeros(4, dtype)
    y1, saved1 = gpucnn.batch_norm2d(x, ones, zeros)
    np.testing.assert_array_equal(y, y1)
    for a, b in zip(gpucnn.batch_norm2d_backward(dy, x, None, saved), gpucnn.batch_norm2d_backward(dy, x, ones, saved1)):
        np.testing.assert_array_equal(a, b)


LARGE = (64, 8, 32, 32)  # 65536 values per channel


def test_large_float32_statistics_accuracy(backend):
    # Channels offset by up to 1e3 with spreads down to 1e-2: a float32 sum,
    # or E[x^2] - mean^2, would lose most digits of the mean and variance here.
    rng = np.random.default_rng(33)
    off = np.array([0, 1e3, -1e3, 5, 300, -0.5, 1e2, 2.0]).reshape(1, -1, 1, 1)
    spread = np.array([1, 1, 1e-2, 3, 0.1, 1, 1e-1, 0.5]).reshape(1, -1, 1, 1)
    x = (rng.standard_normal(LARGE) * spread + off).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, 8, np.float32)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    n = x.size // 8
    _, saved = gpucnn.batch_norm2d(x, gamma, beta, rm, rv)
    # The statistics are float64 sums rounded once to float32: a couple of ulps.
    np.testing.assert_allclose(saved.mean, mean, rtol=2.5e-7, atol=0)
    np.testing.assert_allclose(saved.invstd, 1 / np.sqrt(var + 1e-5), rtol=2.5e-7, atol=0)
    np.testing.assert_allclose(saved.running_mean, 0.9 * rm + 0.1 * mean, rtol=2.5e-7, atol=1e-7)
    np.testing.assert_allclose(saved.running_var, 0.9 * rv + 0.1 * var * n / (n - 1), rtol=2.5e-7)


def test_large_float32_vs_torch_float64(backend):
    # End to end against torch in float64 on the same float32 data. Offsets
    # stay within a few spreads: the saved float32 mean is rounded to an ulp
    # of itself, an error that invstd multiplies, in any float32 implementation.
    rng = np.random.default_rng(38)
    x = (rng.standard_normal(LARGE) * rng.uniform(0.5, 2, (1, 8, 1, 1))
         + rng.uniform(-3, 3, (1, 8, 1, 1))).astype(np.float32)
    dy = rng.standard_normal(LARGE).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, 8, np.float32)
    y, saved = gpucnn.batch_norm2d(x, gamma, beta, rm, rv)
    got = (y, *gpucnn.batch_norm2d_backward(dy, x, gamma, saved), saved.running_mean, saved.running_var)
    want = _torch_batch_norm(*(a.astype(np.float64) for a in (x, dy, gamma, beta, rm, rv)), True, 0.1, 1e-5)
    for name, g, w in zip(("y", "dx", "dgamma", "dbeta", "running_mean", "running_var"), got, want):
        check(f"batch_norm2d {name} 64x8x32x32", g, w.astype(np.float32), np.float32, ("vs float64",))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_backward_finite_differences(backend, training):
    rng = np.random.default_rng(34)
    x = rng.standard_normal((3, 4, 3, 2))
    gamma, beta, rm, rv = _params(rng, 4, np.float64)
    w = rng.standard_normal(x.shape)

    def loss(x, gamma, beta):
        return float(np.sum(w * gpucnn.batch_norm2d(x, gamma, beta, rm, rv, training)[0]))

    saved = gpucnn.batch_norm2d(x, gamma, beta, rm, rv, training)[1]
    grads = gpucnn.batch_norm2d_backward(w, x, gamma, saved)
    directional_fd(loss, (x, gamma, beta), grads, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inputs_unchanged_results_new(backend, dtype):
    rng = np.random.default_rng(35)
    base = rng.standard_normal((6, 5, 4, 6)).astype(dtype)
    x = base[::2].transpose(0, 1, 3, 2)  # non-contiguous
    dy = rng.standard_normal(x.shape).astype(dtype)
    params = _params(rng, 5, dtype)
    args = (x, dy, *params)
    keep = [a.copy() for a in args]
    for a in (base, *args):
        a.flags.writeable = False
    for training in (True, False):
        y, saved = gpucnn.batch_norm2d(x, *params, training=training)
        dx, _, _ = gpucnn.batch_norm2d_backward(dy, x, params[0], saved)
        y2, saved2 = gpucnn.batch_norm2d(np.ascontiguousarray(x), *params, training=training)
        # The same values up to summation order (NumPy's order follows the layout).
        dx2 = gpucnn.batch_norm2d_backward(dy, np.ascontiguousarray(x), params[0], saved2)[0]
        np.testing.assert_allclose(y, y2, **tol(dtype))
        np.testing.assert_allclose(dx, dx2, **tol(dtype))
        if training:  # new running statistics, never the given arrays
            assert saved.running_mean is not params[2] and saved.running_var is not params[3]
            assert not np.shares_memory(saved.running_mean, params[2])
        else:  # eval mode hands back the given ones
            assert saved.running_mean is params[2] and saved.running_var is params[3]
    for a, k in zip(args, keep):
        np.testing.assert_array_equal(a, k)


def test_deterministic(backend):
    rng = np.random.default_rng(36)
    x = rng.standard_normal((7, 3, 9, 11)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, 3, np.float32)
    runs = []
    for _ in range(2):
        y, saved = gpucnn.batch_norm2d(x, gamma, beta, rm, rv)
        runs.append((y, *saved[:2], *saved[3:], *gpucnn.batch_norm2d_backward(dy, x, gamma, saved)))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_empty_batch_in_eval(backend):
    x = np.zeros((0, 3, 4, 4))
    g, b, rm, rv = _params(np.random.default_rng(37), 3, np.float64)
    y, saved = gpucnn.batch_norm2d(x, g, b, rm, rv, training=False)
    dx, dg, db = gpucnn.batch_norm2d_backward(x, x, g, saved)
    assert y.shape == dx.shape == x.shape
    np.testing.assert_array_equal(dg, 0)
    np.testing.assert_array_equal(db, 0)


X = np.zeros((2, 3, 4, 4), np.float32)
C3, C4 = np.ones(3, np.float32), np.ones(4, np.float32)
SAVED = gpucnn.batch_norm2d(X, C3, C3)[1]

BAD = [
    ("x 3-D", lambda: gpucnn.batch_norm2d(X[0], C3, C3), ValueError, "x must be 4-D"),
    ("x int", lambda: gpucnn.batch_norm2d(X.astype(np.int32), C3, C3), TypeError, "x must be float"),
    ("gamma shape", lambda: gpucnn.batch_norm2d(X, C4, C3), ValueError, "gamma must have shape"),
    ("beta shape", lambda: gpucnn.batch_norm2d(X, C3, C3[:, None]), ValueError, "beta must be 1-D"),
    ("running_mean shape", lambda: gpucnn.batch_norm2d(X, C3, C3, C4, C3), ValueError, "running_mean"),
    ("running_var shape", lambda: gpucnn.batch_norm2d(X, C3, C3, C3, C4), ValueError, "running_var"),
    ("running_var alone", lambda: gpucnn.batch_norm2d(X, C3, C3, None, C3), ValueError, "together"),
    ("eval without running", lambda: gpucnn.batch_norm2d(X, C3, C3, training=False), ValueError, "training=False"),
    ("gamma float64", lambda: gpucnn.batch_norm2d(X, C3.astype(np.float64), C3), TypeError, "gamma: float64"),
    ("running_mean int", lambda: gpucnn.batch_norm2d(X, C3, C3, C3.astype(int), C3), TypeError, "running_mean must be float"),
    ("eps 0", lambda: gpucnn.batch_norm2d(X, C3, C3, eps=0.0), ValueError, "eps must be > 0"),
    ("eps negative", lambda: gpucnn.batch_norm2d(X, C3, C3, eps=-1e-5), ValueError, "eps"),
    ("eps nan", lambda: gpucnn.batch_norm2d(X, C3, C3, eps=float("nan")), ValueError, "eps"),
    ("eps str", lambda: gpucnn.batch_norm2d(X, C3, C3, eps="1e-5"), TypeError, "eps"),
    ("momentum > 1", lambda: gpucnn.batch_norm2d(X, C3, C3, momentum=1.5), ValueError, r"momentum must be in \[0"),
    ("momentum < 0", lambda: gpucnn.batch_norm2d(X, C3, C3, momentum=-0.1), ValueError, "momentum"),
    ("momentum None", lambda: gpucnn.batch_norm2d(X, C3, C3, momentum=None), TypeError, "momentum"),
    ("training not bool", lambda: gpucnn.batch_norm2d(X, C3, C3, training=1), TypeError, "training"),
    ("one value per channel", lambda: gpucnn.batch_norm2d(X[:1, :, :1, :1], C3, C3), ValueError, "more than one value"),
    ("dy shape", lambda: gpucnn.batch_norm2d_backward(X[:1], X, C3, SAVED), ValueError, "dy must have shape"),
    ("dy dtype", lambda: gpucnn.batch_norm2d_backward(X.astype(np.float64), X, C3, SAVED), TypeError, "dy: float64"),
    ("backward gamma shape", lambda: gpucnn.batch_norm2d_backward(X, X, C4, SAVED), ValueError, "gamma"),
    ("saved tuple", lambda: gpucnn.batch_norm2d_backward(X, X, C3, tuple(SAVED)), TypeError, "saved"),
    ("saved other channels", lambda: gpucnn.batch_norm2d_backward(X[:, :2], X[:, :2], C3[:2], SAVED), ValueError, "saved.mean"),
    ("backward eps", lambda: gpucnn.batch_norm2d_backward(X, X, C3, SAVED, eps=0), ValueError, "eps"),
]


@pytest.mark.parametrize("call, exc, msg", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(backend, call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()
