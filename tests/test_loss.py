"""cross_entropy (torch.nn.functional.cross_entropy's full interface) and
squared_error, on every backend: against torch's loss and autograd gradient
(of loss.sum() for reduction="none"), float64 central differences, and the
edge cases torch defines (every entry ignored, unbatched logits)."""
from __future__ import annotations

import numpy as np
import pytest
from crosscheck import check, directional_fd, randn

import gpucnn
from gpucnn import nn

pytestmark = pytest.mark.family("loss")

DTYPES = (np.float32, np.float64)
CASES = [  # logits shape, target kind, weight, ignore_index (or None), reduction, label smoothing
    ((5, 4), "ids", False, None, "mean", 0.0),
    ((5, 4), "ids", True, None, "mean", 0.0),
    ((6, 3), "ids", True, 1, "mean", 0.2),
    ((6, 3), "ids", False, -100, "sum", 0.1),
    ((4, 5), "ids", True, -100, "none", 0.3),
    ((3, 4, 2, 3), "ids", True, 2, "mean", 0.0),
    ((2, 3, 5), "ids", False, -100, "none", 0.0),
    ((4, 3), "probs", False, None, "mean", 0.0),
    ((4, 3), "probs", True, None, "sum", 0.25),
    ((2, 3, 2, 2), "probs", True, None, "none", 0.1),
    ((6,), "ids", True, None, "mean", 0.1),
    ((6,), "probs", False, None, "none", 0.0),
]


def _case(rng, shape, kind, weighted, ignore, dtype):
    logits = (rng.standard_normal(shape) * 3).astype(dtype)
    C = shape[0] if len(shape) == 1 else shape[1]
    if kind == "ids":
        target = rng.integers(0, C, shape[:1] + shape[2:] if len(shape) > 1 else ())
        if ignore is not None and target.ndim:
            target.flat[::3] = ignore  # every third entry ignored
    else:
        target = rng.dirichlet(np.ones(C), shape[:1] + shape[2:] if len(shape) > 1 else ())
        target = np.moveaxis(target, -1, 1 if len(shape) > 1 else 0).astype(dtype)
    weight = rng.uniform(0.5, 2, C).astype(dtype) if weighted else None
    return logits, target, weight


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kind,weighted,ignore,reduction,eps", CASES)
def test_cross_entropy_matches_torch(backend, shape, kind, weighted, ignore, reduction, eps, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng([len(shape), int(weighted), int(eps * 10)])
    logits, target, weight = _case(rng, shape, kind, weighted, ignore, dtype)
    kw = dict(reduction=reduction, label_smoothing=eps)
    if ignore is not None:
        kw["ignore_index"] = ignore
    lt = torch.tensor(logits, requires_grad=True)
    want = torch.nn.functional.cross_entropy(lt, torch.from_numpy(np.asarray(target)),
                                             None if weight is None else torch.from_numpy(weight), **kw)
    (dwant,) = torch.autograd.grad(want.sum(), lt)
    loss, dlogits = gpucnn.cross_entropy(logits, target, weight, **kw)
    tags = {kind, reduction, f"{len(shape)}-D"} | ({"weight"} if weighted else set()) \
        | ({"ignore_index"} if ignore is not None else set()) | ({"label_smoothing"} if eps else set())
    check("cross_entropy.loss", np.asarray(loss), want.detach().numpy(), dtype, tags)
    check("cross_entropy.dlogits", dlogits, dwant.numpy(), dtype, tags)


def test_cross_entropy_finite_differences(backend):
    rng = np.random.default_rng(8)
    logits, target, weight = _case(rng, (4, 3, 2), "ids", True, 0, np.float64)
    _, d = gpucnn.cross_entropy(logits, target, weight, ignore_index=0, label_smoothing=0.3)
    directional_fd(lambda z: float(gpucnn.cross_entropy(z, target, weight, ignore_index=0,
                                                        label_smoothing=0.3)[0]), (logits,), (d,), rng)


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_all_ignored_is_nan_with_zero_gradient(backend, eps):
    # torch: the mean over no entries is 0/0, and nothing flows back.
    logits = np.arange(12.0).reshape(3, 4)
    loss, d = gpucnn.cross_entropy(logits, np.full(3, -100), label_smoothing=eps)
    assert np.isnan(loss)
    np.testing.assert_array_equal(d, np.zeros((3, 4)))
    loss, d = gpucnn.cross_entropy(logits, np.full(3, -100), reduction="sum")
    assert loss == 0 and not d.any()


def test_large_logits_stay_finite(backend):
    logits = np.array([[1e4, -1e4, 0.0], [-3e38, 3e38, 1.0]], np.float32)
    loss, d = gpucnn.cross_entropy(logits, np.array([0, 2]))
    # row 0 is certain and right (0), row 1 certain and wrong (3e38 - 1, halved by the mean)
    np.testing.assert_allclose(loss, (3e38 - 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(d, [[0, 0, 0], [0, 0.5, -0.5]], atol=1e-7)


def test_unchecked_invalid_id_is_nan_not_out_of_bounds(backend):
    # check_target=False skips the host read; the kernels must still stay in bounds.
    ce = nn.CrossEntropyLoss(reduction="sum", check_target=False)
    loss = ce.forward(np.zeros((2, 3)), np.array([1, 7]))
    d = ce.backward()
    assert np.isnan(loss) and np.isnan(d[1]).all()
    np.testing.assert_allclose(d[0], [1 / 3, -2 / 3, 1 / 3])
    mean = nn.CrossEntropyLoss(check_target=False)  # the mean's denominator is NaN too
    assert np.isnan(mean.forward(np.zeros((2, 3)), np.array([-5, 0]))) and np.isnan(mean.backward()).all()


def test_squared_error_beyond_one_block(backend):
    rng = np.random.default_rng(9)
    pred, target = randn(rng, (7, 5, 11), np.float64), randn(rng, (7, 5, 11), np.float64)
    loss, d = gpucnn.squared_error(pred, target)
    check("squared_error.loss", np.asarray(loss), np.asarray(((pred - target) ** 2).sum() / 7), np.float64)
    check("squared_error.dpred", d, 2 * (pred - target) / 7, np.float64)


def test_loss_layer_matches_functional(backend):
    rng = np.random.default_rng(10)
    logits, target, weight = _case(rng, (5, 4, 3), "ids", True, 1, np.float64)
    ce = nn.CrossEntropyLoss(weight, ignore_index=1, reduction="none", label_smoothing=0.1)
    loss, d = gpucnn.cross_entropy(logits, target, weight, 1, "none", 0.1)
    np.testing.assert_array_equal(ce(logits, target), loss)
    np.testing.assert_array_equal(ce.backward(), d)


def _bad_calls():
    z, y = np.zeros((3, 4)), np.array([0, 1, 3])
    ce = gpucnn.cross_entropy
    return [
        ("id high", lambda: ce(z, y + 1), ValueError, r"\btarget must lie in \[0, 4\)"),
        ("id negative", lambda: ce(z, y - 1), ValueError, r"\btarget must lie in"),
        ("ids shape", lambda: ce(z, y[:2]), ValueError, r"\btarget must have shape"),
        ("probs shape", lambda: ce(z, np.zeros((3, 3))), ValueError, r"\btarget must have shape \(3, 4\)"),
        ("probs ignore", lambda: ce(z, np.zeros((3, 4)), ignore_index=0), ValueError, r"ignore_index"),
        ("weight shape", lambda: ce(z, y, np.ones(3)), ValueError, r"\bweight must have shape"),
        ("weight dtype", lambda: ce(z, y, np.ones(4, np.float32)), TypeError, r"dtype"),
        ("reduction", lambda: ce(z, y, reduction="avg"), ValueError, r"\breduction must be one of"),
        ("smoothing", lambda: ce(z, y, label_smoothing=1.5), ValueError, r"\blabel_smoothing must lie"),
        ("ignore type", lambda: ce(z, y, ignore_index=1.0), TypeError, r"\bignore_index must be an int"),
        ("no classes", lambda: ce(np.zeros((3, 0)), y), ValueError, r"at least one class"),
        ("list target", lambda: ce(z, [0, 1, 2]), TypeError, r"\btarget must be an array"),
    ]


@pytest.mark.parametrize("i", range(len(_bad_calls())))
def test_bad_arguments_raise(backend, i):
    what, call, exc, pattern = _bad_calls()[i]
    with pytest.raises(exc, match=pattern):
        call()
