"""linear, softmax_cross_entropy and squared_error, on every backend.

Cross-checked against torch.nn.functional (gradients by autograd) and by
central differences in float64; ``pytest --crosscheck-report`` prints the
worst relative error per op.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from crosscheck import check, directional_fd, randn

pytestmark = pytest.mark.family("linear")

DTYPES = (np.float32, np.float64)
LINEAR = [  # x shape, out features, bias
    ((5, 7), 3, True), ((1, 1), 1, False), ((7,), 4, True), ((2, 3, 6), 5, True), ((4, 2, 3, 8), 2, False),
    ((16, 64), 10, True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,out,bias", LINEAR)
def test_linear_matches_torch(backend, xs, out, bias, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng([*xs, out])
    x, w = randn(rng, xs, dtype), randn(rng, (out, xs[-1]), dtype)
    b = randn(rng, out, dtype) if bias else None
    tags = {f"x {len(xs)}-D"} | ({"bias"} if bias else set())
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    yt = torch.nn.functional.linear(xt, wt, bt)
    y = gpucnn.linear(x, w, b)
    check("linear", y, yt.detach().numpy(), dtype, tags)
    dy = randn(rng, y.shape, dtype)
    grads = torch.autograd.grad(yt, [a for a in (xt, wt, bt) if a is not None], torch.tensor(dy))
    dx, dw, db = gpucnn.linear_backward(dy, x, w, bias=bias)
    check("linear_backward.dx", dx, grads[0].numpy(), dtype, tags)
    check("linear_backward.dw", dw, grads[1].numpy(), dtype, tags)
    if bias:
        check("linear_backward.db", db, grads[2].numpy(), dtype, tags)
    else:
        assert db is None


def test_linear_backward_finite_differences(backend):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((3, 2, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    r = rng.standard_normal((3, 2, 4))
    grads = gpucnn.linear_backward(r, x, w)
    directional_fd(lambda x, w, b: np.sum(r * gpucnn.linear(x, w, b)), (x, w, b), grads, rng)


def test_linear_noncontiguous_and_unchanged(backend):
    rng = np.random.default_rng(4)
    x = randn(rng, (8, 6), np.float32).T[::2]          # (3, 8)
    w = randn(rng, (8, 10), np.float32)[:, ::2].T      # (5, 8)
    b = randn(rng, 10, np.float32)[::2]
    dy = randn(rng, (5, 3), np.float32).T
    saved = [a.copy() for a in (x, w, b, dy)]
    got = [gpucnn.linear(x, w, b), *gpucnn.linear_backward(dy, x, w)]
    c = [np.ascontiguousarray(a) for a in (x, w, b, dy)]
    want = [gpucnn.linear(c[0], c[1], c[2]), *gpucnn.linear_backward(c[3], c[0], c[1])]
    for g, wnt in zip(got, want):
        check("noncontiguous", g, wnt, np.float32, record=False)
    for a, s in zip((x, w, b, dy), saved):
        np.testing.assert_array_equal(a, s)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c,scale", [(1, 1, 1.0), (4, 3, 1.0), (32, 10, 5.0), (3, 5, 1e4)])
def test_softmax_cross_entropy_matches_torch(backend, n, c, scale, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng([n, c])
    logits = (rng.standard_normal((n, c)) * scale).astype(dtype)
    labels = rng.integers(0, c, n)
    lt = torch.tensor(logits, requires_grad=True)
    want = torch.nn.functional.cross_entropy(lt, torch.tensor(labels))
    (dwant,) = torch.autograd.grad(want, lt)
    loss, dlogits = gpucnn.softmax_cross_entropy(logits, labels)
    assert loss.shape == () and np.isfinite(loss)
    tags = {"large logits"} if scale > 100 else set()
    check("softmax_cross_entropy.loss", np.asarray(loss), want.detach().numpy(), dtype, tags)
    check("softmax_cross_entropy.dlogits", dlogits, dwant.numpy(), dtype, tags)


def test_softmax_cross_entropy_finite_differences(backend):
    rng = np.random.default_rng(5)
    logits, labels = rng.standard_normal((4, 6)) * 3, rng.integers(0, 6, 4)
    _, d = gpucnn.softmax_cross_entropy(logits, labels)
    eps, numeric = 1e-6, np.empty_like(logits)
    for idx in np.ndindex(*logits.shape):
        e = np.zeros_like(logits)
        e[idx] = eps
        numeric[idx] = (gpucnn.softmax_cross_entropy(logits + e, labels)[0]
                        - gpucnn.softmax_cross_entropy(logits - e, labels)[0]) / (2 * eps)
    np.testing.assert_allclose(d, numeric, atol=1e-8)
    np.testing.assert_allclose(d.sum(axis=1), 0, atol=1e-15)   # softmax rows sum to one


@pytest.mark.parametrize("dtype", DTYPES)
def test_squared_error_by_hand(backend, dtype):
    pred = np.array([[1.0, 2.0], [3.0, 5.0]], dtype)
    target = np.array([[1.0, 0.0], [0.0, 1.0]], dtype)
    loss, d = gpucnn.squared_error(pred, target)
    # Eq. 6 per sample, averaged over the batch of 2: (0 + 4 + 9 + 16) / 2.
    assert loss.dtype == np.dtype(dtype) and loss.shape == () and loss == 14.5
    np.testing.assert_array_equal(d, [[0, 2], [3, 4]])
    rng = np.random.default_rng(6)
    p, t = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 2))
    directional_fd(lambda p: float(gpucnn.squared_error(p, t)[0]), (p,), (gpucnn.squared_error(p, t)[1],), rng)


def _bad_calls():
    f4 = np.float32
    x, w, b, dy = np.zeros((3, 4), f4), np.zeros((2, 4), f4), np.zeros(2, f4), np.zeros((3, 2), f4)
    logits, labels = np.zeros((3, 5), f4), np.array([0, 4, 2])
    sce = gpucnn.softmax_cross_entropy
    return [
        ("in features", lambda: gpucnn.linear(x, w[:, :3]), ValueError, r"w\.shape\[1\]"),
        ("w ndim", lambda: gpucnn.linear(x, w[0]), ValueError, r"\bw must be 2-D"),
        ("int x", lambda: gpucnn.linear(x.astype(np.int64), w), TypeError, r"\bx must be float"),
        ("complex w", lambda: gpucnn.linear(x, w.astype(np.complex128)), TypeError, r"\bw must be float"),
        ("mixed", lambda: gpucnn.linear(x, w.astype(np.float64)), TypeError, r"dtype"),
        ("b shape", lambda: gpucnn.linear(x, w, b[:1]), ValueError, r"\bb must have shape"),
        ("dy shape", lambda: gpucnn.linear_backward(dy[:, :1], x, w), ValueError, r"\bdy must have shape"),
        ("bias flag", lambda: gpucnn.linear_backward(dy, x, w, bias="yes"), TypeError, r"\bbias\b"),
        ("label high", lambda: sce(logits, labels + 1), ValueError, r"\blabels must lie in"),
        ("label negative", lambda: sce(logits, labels - 1), ValueError, r"\blabels must lie in"),
        ("label float", lambda: sce(logits, labels.astype(f4)), TypeError, r"\blabels\b"),
        ("label shape", lambda: sce(logits, labels[:2]), ValueError, r"\blabels must have shape"),
        ("logits ndim", lambda: sce(logits[0], labels), ValueError, r"\blogits must be 2-D"),
        ("logits int", lambda: sce(logits.astype(np.int32), labels), TypeError, r"\blogits\b"),
        ("target shape", lambda: gpucnn.squared_error(x, x[:2]), ValueError, r"\btarget must have shape"),
        ("target dtype", lambda: gpucnn.squared_error(x, x.astype(np.float64)), TypeError, r"dtype"),
    ]


@pytest.mark.parametrize("i", range(len(_bad_calls())))
def test_bad_arguments_raise(backend, i):
    what, call, exc, pattern = _bad_calls()[i]
    with pytest.raises(exc, match=pattern):
        call()
