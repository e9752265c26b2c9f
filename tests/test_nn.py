"""Layers, losses, optimizer and schedules of gpucnn.nn.

Proofs: every layer's backward against float64 central differences; every
layer against its torch.nn twin (forward and gradients); twenty SGD steps
(momentum, Nesterov, weight decay) of a small conv net, with and without
batch norm, against torch from the same weights and batches; and a few
steps on the emulator backend against the NumPy backend.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL
from crosscheck import directional_fd

import gpucnn
from gpucnn import nn

F64 = np.float64


def _distinct(rng, shape):
    """Values a permutation apart, so max pooling has no ties and ReLU no input near its kink."""
    v = (rng.permutation(np.prod(shape)).reshape(shape) + 0.5) / np.prod(shape) - 0.5  # never 0
    return v + np.sign(v) * 0.05


LAYERS = [  # (id, layer factory, input shape)
    ("conv", lambda r: nn.Conv2D(3, 4, 3, stride=2, padding=1, rng=r, dtype=F64), (2, 3, 7, 7)),
    ("conv-groups-dilation-nobias",
     lambda r: nn.Conv2D(4, 2, 3, dilation=2, groups=2, bias=False, rng=r, dtype=F64), (2, 4, 7, 6)),
    ("conv-transpose", lambda r: nn.ConvTranspose2D(3, 2, 3, stride=2, padding=1, output_padding=1,
                                                     rng=r, dtype=F64), (2, 3, 4, 4)),
    ("linear", lambda r: nn.Linear(5, 3, rng=r, dtype=F64), (4, 5)),
    ("maxpool", lambda r: nn.MaxPool2D(2), (2, 3, 6, 6)),
    ("maxpool-3-2-1", lambda r: nn.MaxPool2D(3, stride=2, padding=1), (2, 2, 7, 7)),
    ("avgpool", lambda r: nn.AvgPool2D(2), (2, 3, 6, 6)),
    ("avgpool-nopad-count", lambda r: nn.AvgPool2D(3, 2, 1, count_include_pad=False), (2, 2, 7, 7)),
    ("relu", lambda r: nn.ReLU(), (3, 4, 5)),
    ("leaky-relu", lambda r: nn.ReLU(0.1), (3, 4, 5)),
    ("flatten", lambda r: nn.Flatten(), (2, 3, 4, 4)),
    ("batchnorm", lambda r: nn.BatchNorm2D(3, dtype=F64), (4, 3, 3, 3)),
]


def _with_params(rng, layer):
    """Make weight 1 / bias 0 of batch norm generic, so their gradients are exercised."""
    for k, v in layer.params().items():
        if isinstance(layer, nn.BatchNorm2D):
            layer.set_param(k, rng.standard_normal(v.shape))
    return layer


def _fd_check(layer, x, rng, before=lambda: None):
    before()
    y = layer.forward(x)
    r = rng.standard_normal(y.shape)
    dx = layer.backward(r)
    names = list(layer.params())
    grads = layer.grads()

    def loss(x, *ps):
        for n, p in zip(names, ps):
            layer.set_param(n, p)
        before()
        return float(np.sum(r * layer.forward(x)))

    directional_fd(loss, (x, *layer.params().values()), (dx, *(grads[n] for n in names)), rng)


@pytest.mark.parametrize("make,shape", [p[1:] for p in LAYERS], ids=[p[0] for p in LAYERS])
def test_layer_backward_finite_differences(make, shape):
    rng = np.random.default_rng(len(shape))
    _fd_check(_with_params(rng, make(rng)), _distinct(rng, shape), rng)


def test_batchnorm_eval_finite_differences():
    rng = np.random.default_rng(5)
    bn = _with_params(rng, nn.BatchNorm2D(3, dtype=F64))
    bn.set_buffer("running_mean", rng.standard_normal(3))
    bn.set_buffer("running_var", rng.uniform(0.5, 2, 3))
    _fd_check(bn.eval(), rng.standard_normal((2, 3, 4, 4)), rng)


def test_dropout_finite_differences_and_scaling():
    rng = np.random.default_rng(6)
    drop = nn.Dropout(0.3, rng=np.random.default_rng(0))
    state = drop.state.copy()

    def same_mask():  # redraw the same mask for every forward of the check
        drop.state[...] = state
    _fd_check(drop, rng.standard_normal((4, 50)), rng, same_mask)
    y = drop.forward(np.ones((200, 200)))
    assert set(np.unique(y)) <= {0.0, 1 / 0.7}
    assert abs((y == 0).mean() - 0.3) < 0.01
    x = rng.standard_normal((3, 4))
    assert drop.eval().forward(x) is x and drop.backward(x) is x


# ---- torch twins ---------------------------------------------------------------------------

def torch_twin(layer):
    """The torch.nn module computing what ``layer`` computes, with its parameters and buffers."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    if isinstance(layer, nn.Sequential):
        twin = tnn.Sequential(*(torch_twin(child) for child in layer.layers))
    elif isinstance(layer, nn.ConvTranspose2D):
        w, g = layer.weight, layer._geom
        twin = tnn.ConvTranspose2d(w.shape[0], w.shape[1] * g["groups"], w.shape[2:], g["stride"],
                                   g["padding"], g["output_padding"], g["groups"], "bias" in layer.params(),
                                   g["dilation"], dtype=torch.float64)
    elif isinstance(layer, nn.Conv2D):
        w, g = layer.weight, layer._geom
        twin = tnn.Conv2d(w.shape[1] * g["groups"], w.shape[0], w.shape[2:], g["stride"], g["padding"],
                          g["dilation"], g["groups"], "bias" in layer.params(), dtype=torch.float64)
    elif isinstance(layer, nn.Linear):
        twin = tnn.Linear(layer.weight.shape[1], layer.weight.shape[0], "bias" in layer.params(),
                          dtype=torch.float64)
    elif isinstance(layer, nn.MaxPool2D):
        twin = tnn.MaxPool2d(**layer._geom)
    elif isinstance(layer, nn.AvgPool2D):
        twin = tnn.AvgPool2d(**layer._geom)
    elif isinstance(layer, nn.ReLU):
        twin = tnn.LeakyReLU(layer.negative_slope) if layer.negative_slope else tnn.ReLU()
    elif isinstance(layer, nn.Flatten):
        twin = tnn.Flatten()
    elif isinstance(layer, nn.BatchNorm2D):
        twin = tnn.BatchNorm2d(layer.weight.shape[0], layer.eps, layer.momentum, dtype=torch.float64)
    else:
        raise TypeError(type(layer))
    if not isinstance(layer, nn.Sequential):
        with torch.no_grad():
            for k, v in {**layer.params(), **layer.buffers()}.items():
                getattr(twin, k).copy_(torch.from_numpy(np.array(v)))
    return twin


def _rel(got, want) -> float:
    want = np.asarray(want, F64)
    return float(np.abs(np.asarray(got, F64) - want).max() / max(np.abs(want).max(), 1e-300))


@pytest.mark.parametrize("make,shape", [p[1:] for p in LAYERS], ids=[p[0] for p in LAYERS])
def test_layer_matches_torch(make, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    layer = _with_params(rng, make(rng))
    twin = torch_twin(layer)
    x = _distinct(rng, shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = twin(xt)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(dy))
    assert _rel(y, yt.detach().numpy()) < 1e-12
    assert _rel(layer.backward(dy), xt.grad.numpy()) < 1e-12
    for k, g in layer.grads().items():
        assert _rel(g, getattr(twin, k).grad.numpy()) < 1e-12, k
    for k, b in layer.buffers().items():
        assert _rel(b, getattr(twin, k).numpy()) < 1e-12, k


def _small_net(rng, batchnorm=False, dtype=F64):
    bn = [nn.BatchNorm2D(4, dtype=dtype)] if batchnorm else []
    return nn.Sequential(nn.Conv2D(1, 4, 3, padding=1, rng=rng, dtype=dtype), *bn, nn.ReLU(), nn.MaxPool2D(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3, rng=rng, dtype=dtype))


def _batches(steps, n=8, dtype=F64):
    rng = np.random.default_rng(42)
    return [(rng.standard_normal((n, 1, 8, 8)).astype(dtype), rng.integers(0, 3, n)) for _ in range(steps)]


def train_both(model, twin, opt, topt, batches) -> float:
    """Train ``model`` and its torch twin side by side with cross-entropy;
    the worst relative difference in the losses and the final state."""
    torch = pytest.importorskip("torch")
    loss_fn, worst = nn.CrossEntropyLoss(), 0.0
    for x, y in batches:
        loss = loss_fn.forward(model.forward(x), y)
        model.backward(loss_fn.backward())
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        worst = max(worst, _rel(loss, tloss.item()))
    state = {k: v.numpy() for k, v in twin.state_dict().items()}
    for k, v in model.state_dict().items():
        worst = max(worst, _rel(v, state[k]))
    return worst


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
def test_sgd_training_matches_torch(batchnorm):
    torch = pytest.importorskip("torch")
    model = _small_net(np.random.default_rng(0), batchnorm)
    twin = torch_twin(model)
    hyper = dict(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)
    opt, topt = nn.SGD(model, **hyper), torch.optim.SGD(twin.parameters(), **hyper)
    worst = train_both(model, twin, opt, topt, _batches(20))
    assert worst < 1e-6, worst


def test_emulator_training_matches_numpy():
    ok, why = gpucnn.backend.available("emulator")
    if not ok:
        pytest.skip(f"emulator unavailable: {why}")
    runs = []
    for name in ("numpy", "emulator"):
        model = nn.Sequential(nn.Conv2D(1, 2, 3, padding=1, rng=np.random.default_rng(0)), nn.ReLU(),
                              nn.MaxPool2D(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 3, rng=np.random.default_rng(1)))
        opt, loss_fn, losses = nn.SGD(model, 0.1, momentum=0.9), nn.CrossEntropyLoss(), []
        with gpucnn.use_backend(name):
            for x, y in _batches(3, n=4, dtype=np.float32):
                losses.append(float(loss_fn.forward(model.forward(x[:, :, :6, :6]), y)))
                model.backward(loss_fn.backward())
                opt.step()
        runs.append((np.array(losses), model.params()))
    (l0, p0), (l1, p1) = runs
    np.testing.assert_allclose(l1, l0, **TOL[np.float32])
    for k in p0:
        np.testing.assert_allclose(p1[k], p0[k], **TOL[np.float32], err_msg=k)


def test_losses_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    logits, labels = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    ce = nn.CrossEntropyLoss()
    lt = torch.tensor(logits, requires_grad=True)
    want = torch.nn.functional.cross_entropy(lt, torch.from_numpy(labels))
    want.backward()
    assert _rel(ce.forward(logits, labels), want.item()) < 1e-12
    assert _rel(ce.backward(), lt.grad.numpy()) < 1e-12
    # Eq. 6 sums over a sample and averages over the batch: torch's mse_loss(sum) / N.
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    se = nn.SquaredErrorLoss()
    assert _rel(se.forward(pred, target), ((pred - target) ** 2).sum() / 5) < 1e-12
    assert _rel(se.backward(), 2 * (pred - target) / 5) < 1e-12
    with pytest.raises(RuntimeError, match="before forward"):
        nn.SquaredErrorLoss().backward()


@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_schedules_match_torch(kind):
    torch = pytest.importorskip("torch")
    opt = nn.SGD(nn.Linear(2, 2), lr=0.3)
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    if kind == "step":
        sched, tsched = nn.StepLR(opt, 3, gamma=0.5), torch.optim.lr_scheduler.StepLR(topt, 3, gamma=0.5)
    else:
        sched = nn.CosineAnnealingLR(opt, 7, eta_min=0.01)
        tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, 7, eta_min=0.01)
    for _ in range(7):
        topt.step()
        sched.step()
        tsched.step()
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)


def test_sgd_plain_is_eq8_and_checks_grads():
    layer = nn.Linear(3, 2, rng=np.random.default_rng(0), dtype=F64)
    opt = nn.SGD(layer, lr=0.5)
    with pytest.raises(RuntimeError, match="no gradient"):
        opt.step()
    w0 = layer.weight.copy()
    layer.forward(np.ones((1, 3)))
    layer.backward(np.ones((1, 2)))
    opt.step()
    np.testing.assert_array_equal(layer.weight, w0 - 0.5 * layer.grads()["weight"])
    with pytest.raises(ValueError, match="Nesterov"):
        nn.SGD(layer, lr=0.1, nesterov=True)


def test_module_protocol():
    model = _small_net(np.random.default_rng(0), batchnorm=True)
    assert list(model.params()) == ["0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias"]
    assert list(model.buffers()) == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert model.grads() == {}
    with pytest.raises(RuntimeError, match="backward called before forward"):
        model.backward(np.zeros((1, 3)))
    assert not model.eval()[1].training and model.train()[1].training
    # Same seed, same initialization; the bounds are torch's 1/sqrt(fan_in).
    again = _small_net(np.random.default_rng(0), batchnorm=True)
    for k, v in model.params().items():
        np.testing.assert_array_equal(v, again.params()[k])
    assert np.abs(model[0].weight).max() <= 1 / 3 and np.abs(model[5].weight).max() <= 1 / 8


def test_backward_params_skips_only_the_first_input_gradient(monkeypatch):
    """backward_params sets the same gradients as backward, bit for bit, and
    never computes the first convolution's input gradient (its only
    backward-data call would be the first layer's)."""
    rng = np.random.default_rng(3)
    model, x = _small_net(rng, batchnorm=True), rng.standard_normal((2, 1, 8, 8))
    dy = rng.standard_normal(model.forward(x).shape)
    model.backward(dy)
    full = {k: v.copy() for k, v in model.grads().items()}
    from gpucnn.functional import conv as fconv
    calls, real = [], fconv.call
    monkeypatch.setattr(fconv, "call", lambda fam, op, *a: calls.append(op) or real(fam, op, *a))
    model.forward(x)
    model.backward_params(dy)
    assert "conv2d_backward_data" not in calls and "conv2d_backward_filter" in calls
    assert full.keys() == model.grads().keys()
    for k, v in model.grads().items():
        np.testing.assert_array_equal(v, full[k], err_msg=k)
    dyc = rng.standard_normal((2, 4, 8, 8))
    whole = gpucnn.conv2d_backward(dyc, x, model[0].weight, padding=1)
    part = gpucnn.conv2d_backward(dyc, x, model[0].weight, padding=1, input_grad=False)
    assert part[0] is None and whole[0].shape == x.shape
    np.testing.assert_array_equal(part[1], whole[1])
    np.testing.assert_array_equal(part[2], whole[2])


def test_to_cuda_without_gpu_says_so():
    if gpucnn.backend.available("cuda")[0]:
        pytest.skip("a GPU is present")
    with pytest.raises(gpucnn.BackendUnavailable):
        nn.Linear(2, 2).to("cuda")
    with pytest.raises(ValueError, match="device"):
        nn.Linear(2, 2).to("tpu")


@pytest.mark.gpu
def test_cuda_training_matches_numpy():
    if not gpucnn.backend.available("cuda")[0]:
        pytest.skip("no CUDA GPU")
    runs = []
    for device in ("cpu", "cuda"):
        model = _small_net(np.random.default_rng(0), batchnorm=True, dtype=np.float32).to(device)
        opt, loss_fn, losses = nn.SGD(model, 0.05, momentum=0.9, nesterov=True), nn.CrossEntropyLoss(), []
        for x, y in _batches(3, dtype=np.float32):
            x, y = nn._array.to_device(x, device), nn._array.to_device(y, device)
            losses.append(float(loss_fn.forward(model.forward(x), y)))
            model.backward(loss_fn.backward())
            opt.step()
        runs.append((np.array(losses), {k: nn._array.to_host(v) for k, v in model.params().items()}))
    (l0, p0), (l1, p1) = runs
    np.testing.assert_allclose(l1, l0, **TOL[np.float32])
    for k in p0:
        np.testing.assert_allclose(p1[k], p0[k], **TOL[np.float32], err_msg=k)
