"""Fused conv + bias + ReLU and batch norm + ReLU, functional and inside
``Sequential``: the fused results equal the separate ops' bit for bit on every
backend and every algorithm (the epilogue applies the ReLU to the value the
unfused op would write), and match PyTorch's relu(conv2d) and
relu(batch_norm) with their autograd gradients.
"""
from __future__ import annotations

import numpy as np
import pytest
from crosscheck import check, to_torch, torch_or_skip

import gpucnn
from gpucnn import nn
from gpucnn.cuda import algo

pytestmark = pytest.mark.family("conv")

CONV_CASES = [  # (x shape, w shape, stride, padding, dilation, groups)
    ((2, 3, 9, 8), (5, 3, 3, 3), 1, 1, 1, 1),
    ((1, 4, 7, 6), (4, 1, 3, 3), 2, (1, 0), 1, 4),
    ((2, 6, 5, 7), (70, 6, 1, 2), 1, 0, 1, 1),  # 70 filters: two row tiles
]


def _conv_data(case, dtype):
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(list(xs) + list(ws))
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[0]))
    return rng, x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("spec", [None, "direct", "gemm:3"])
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("case", CONV_CASES, ids=["dense", "depthwise-s2", "k70"])
def test_conv_bias_relu_equals_separate_ops(backend, case, dtype, spec):
    rng, x, w, b, kw = _conv_data(case, dtype)
    with algo.override(spec):
        fused = gpucnn.conv2d_bias_relu(x, w, b, **kw)
        separate = gpucnn.relu(gpucnn.conv2d(x, w, b, **kw))
        np.testing.assert_array_equal(fused, separate)
        assert (fused == 0).any() and (fused > 0).any()  # the ReLU did something
        dy = rng.standard_normal(fused.shape).astype(dtype)
        got = gpucnn.conv2d_bias_relu_backward(dy, x, w, fused, **kw)
        want = gpucnn.conv2d_backward(gpucnn.relu_backward(dy, separate), x, w, **kw)
    for g, wnt in zip(got, want):
        np.testing.assert_array_equal(g, wnt)


@pytest.mark.parametrize("case", CONV_CASES, ids=["dense", "depthwise-s2", "k70"])
def test_conv_bias_relu_vs_torch(backend, case):
    torch = torch_or_skip()
    rng, x, w, b, kw = _conv_data(case, np.float64)
    tx, tw, tb = (to_torch(a).requires_grad_() for a in (x, w, b))
    ty = torch.relu(torch.nn.functional.conv2d(tx, tw, tb, **kw))
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(to_torch(dy))
    y = gpucnn.conv2d_bias_relu(x, w, b, **kw)
    got = (y, *gpucnn.conv2d_bias_relu_backward(dy, x, w, y, **kw))
    for name, g, t in zip(("y", "dx", "dw", "db"), got, (ty, tx.grad, tw.grad, tb.grad)):
        check(f"conv2d_bias_relu {name}", g, t.detach().numpy(), np.float64)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (3, 2, 1, 1), (2, 5, 8, 8)])
def test_batch_norm_relu(backend, shape, training):
    rng = np.random.default_rng(list(shape))
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 2, shape[1]), rng.standard_normal(shape[1])
    rm, rv = rng.standard_normal(shape[1]), rng.uniform(0.5, 2, shape[1])
    y, saved = gpucnn.batch_norm2d_relu(x, gamma, beta, rm, rv, training)
    y0, saved0 = gpucnn.batch_norm2d(x, gamma, beta, rm, rv, training)
    np.testing.assert_array_equal(y, gpucnn.relu(y0))
    for a, c in zip(saved, saved0):
        np.testing.assert_array_equal(a, c)
    got = gpucnn.batch_norm2d_relu_backward(dy, x, gamma, saved, y)
    want = gpucnn.batch_norm2d_backward(gpucnn.relu_backward(dy, y0), x, gamma, saved0)
    for g, wnt in zip(got, want):
        np.testing.assert_allclose(g, wnt, rtol=1e-10, atol=1e-12)
    torch = torch_or_skip()
    tx, tg, tb = (to_torch(a).requires_grad_() for a in (x, gamma, beta))
    ty = torch.relu(torch.nn.functional.batch_norm(tx, to_torch(rm.copy()), to_torch(rv.copy()), tg, tb, training))
    ty.backward(to_torch(dy))
    for name, g, t in zip(("y", "dx", "dgamma", "dbeta"), (y, *got), (ty, tx.grad, tg.grad, tb.grad)):
        check(f"batch_norm2d_relu {name}", g, t.detach().numpy(), np.float64)


def test_fused_backward_checks_y(backend):
    x, w = np.ones((1, 2, 4, 4)), np.ones((3, 2, 3, 3))
    dy = np.ones((1, 3, 2, 2))
    with pytest.raises(ValueError, match="y"):
        gpucnn.conv2d_bias_relu_backward(dy, x, w, np.ones((1, 3, 2, 3)))
    _, saved = gpucnn.batch_norm2d(x, None, None)
    with pytest.raises(ValueError, match="y"):
        gpucnn.batch_norm2d_relu_backward(x, x, None, saved, np.ones((1, 2, 4, 3)))


def _model(seed):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2D(3, 4, 3, padding=1, rng=rng, dtype=np.float64), nn.ReLU(),
                         nn.BatchNorm2D(4, dtype=np.float64), nn.ReLU(),
                         nn.Conv2D(4, 4, 3, groups=4, rng=rng, dtype=np.float64), nn.ReLU(0.1),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 3, rng=rng, dtype=np.float64))


def test_sequential_fuses_without_changing_results(backend, monkeypatch):
    """A model run by Sequential (fused pairs, forward and, for batch norm,
    backward) and the same layers run one by one give the same outputs,
    gradients and running statistics."""
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((2, 3, 7, 7)), rng.standard_normal((2, 3))
    a, b = _model(4), _model(4)
    ya = a.forward(x)
    relu_backward, ran = nn.ReLU.backward, []
    monkeypatch.setattr(nn.ReLU, "backward", lambda self, g: ran.append(self) or relu_backward(self, g))
    ga = a.backward(dy)
    # The BatchNorm2D + ReLU pair went back as one op; the Conv2D's ReLU alone.
    assert a.layers[3] not in ran and a.layers[1] in ran
    yb = x
    for layer in b.layers:
        yb = layer.forward(yb)
    gb = dy
    for layer in reversed(b.layers):
        gb = layer.backward(gb)
    # Fused, the ReLUs after the Conv2D and the BatchNorm2D saved their outputs
    # (no negatives); run alone, their inputs. The leaky ReLU never fuses.
    for i in (1, 3):
        assert (a.layers[i]._load("x") >= 0).all() and (b.layers[i]._load("x") < 0).any()
    assert a.layers[5]._load("x") is not None and (a.layers[5]._load("x") < 0).any()
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(ga, gb)
    for (na, va), (nb, vb) in zip(sorted(a.grads().items()), sorted(b.grads().items())):
        assert na == nb
        np.testing.assert_array_equal(va, vb)
    for (na, va), (nb, vb) in zip(sorted(a.buffers().items()), sorted(b.buffers().items())):
        np.testing.assert_array_equal(va, vb)


def test_residual_and_relu_fuse(backend, monkeypatch):
    """A Residual followed by a ReLU runs its sum and the ReLU in one pass;
    outputs and gradients are those of the layers run one by one."""
    def model():
        rng = np.random.default_rng(5)
        block = nn.Sequential(nn.Conv2D(4, 4, 3, padding=1, rng=rng, dtype=np.float64),
                              nn.BatchNorm2D(4, dtype=np.float64))
        return nn.Sequential(nn.Residual(block), nn.ReLU(), nn.Flatten())

    rng = np.random.default_rng(6)
    x, dy = rng.standard_normal((2, 4, 5, 5)), rng.standard_normal((2, 100))
    a, b = model(), model()
    relu_forward, ran = nn.ReLU.forward, []
    monkeypatch.setattr(nn.ReLU, "forward", lambda self, v: ran.append(self) or relu_forward(self, v))
    ya = a.forward(x)
    assert not ran
    yb = x
    for layer in b.layers:
        yb = layer.forward(yb)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(a.backward(dy), b.backward(dy))
    for (na, va), (nb, vb) in zip(sorted(a.grads().items()), sorted(b.grads().items())):
        assert na == nb
        np.testing.assert_array_equal(va, vb)
