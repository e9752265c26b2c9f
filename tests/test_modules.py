"""The module interface (parameters, named_parameters, state_dict,
load_state_dict, zero_grad), Residual and ResNet-20.

Proofs: a torch model's state_dict loads into the equivalent gpucnn model
(lenet, vgg-small, resnet20) and gives the same outputs, and back; twenty
float64 training steps of resnet20 with SGD (momentum) and with Adam match
torch's in loss and weights to 1e-6 from the same weights and batches.
"""
from __future__ import annotations

import numpy as np
import pytest
from crosscheck import directional_fd
from test_nn import torch_twin, train_both

from gpucnn import nn

F64 = np.float64


@pytest.fixture(autouse=True)
def one_torch_thread():
    """torch's tiny float64 ops are fastest on one thread, and its worker threads
    would contend with the NumPy backend's on a loaded machine."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def torch_model(model):
    """The torch twin of a gpucnn model, containers and all (weights copied)."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class TorchResidual(tnn.Module):
        def __init__(self, block, shortcut):
            super().__init__()
            self.block, self.shortcut = block, shortcut

        def forward(self, x):
            return self.block(x) + (x if self.shortcut is None else self.shortcut(x))

    if isinstance(model, nn.Sequential):
        return tnn.Sequential(*(torch_model(m) for m in model.layers))
    if isinstance(model, nn.Residual):
        return TorchResidual(torch_model(model.block), None if model.shortcut is None else torch_model(model.shortcut))
    if isinstance(model, nn.AdaptiveAvgPool2D):
        return tnn.AdaptiveAvgPool2d(model.output_size)
    if isinstance(model, nn.Dropout):
        return tnn.Dropout(model.p)
    return torch_twin(model)


def _scramble_torch(twin, seed):
    """Torch weights and statistics unlike ours, so that loading them is visible."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in twin.state_dict().items():
            if v.is_floating_point():
                v.copy_(torch.rand(v.shape, generator=g, dtype=v.dtype) + 0.5 if "var" in k
                        else torch.randn(v.shape, generator=g, dtype=v.dtype) * 0.3)
            else:
                v.fill_(7)


MODELS = [("lenet", (1, 12, 12)), ("vgg-small", (3, 8, 8)), ("resnet20", (3, 8, 8))]


@pytest.mark.parametrize("name,shape", MODELS, ids=[m for m, _ in MODELS])
def test_state_dict_round_trip_with_torch(name, shape):
    torch = pytest.importorskip("torch")
    ours = nn.MODELS[name](shape, 5, rng=np.random.default_rng(0), dtype=F64).eval()
    twin = torch_model(ours).eval()
    _scramble_torch(twin, 1)
    state = {k: v.numpy() for k, v in twin.state_dict().items()}
    assert list(ours.state_dict()) == list(state)  # torch's names, in torch's order
    ours.load_state_dict(state)
    x = np.random.default_rng(2).standard_normal((3, *shape))
    want = twin(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours.forward(x), want, rtol=1e-12, atol=1e-12)
    # ... and back: our (different) state into a fresh torch twin
    again = nn.MODELS[name](shape, 5, rng=np.random.default_rng(3), dtype=F64).eval()
    back = torch_model(again).eval()
    _scramble_torch(back, 4)
    back.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in again.state_dict().items()}, strict=True)
    np.testing.assert_allclose(back(torch.from_numpy(x)).detach().numpy(), again.forward(x), rtol=1e-12, atol=1e-12)


def test_load_state_dict_errors_and_non_strict():
    model = nn.lenet((1, 8, 8), 3, rng=np.random.default_rng(0))
    state = model.state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['0.bias'\]"):
        model.load_state_dict({k: v for k, v in state.items() if k != "0.bias"})
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        model.load_state_dict({**state, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"'0.bias' has shape \(3,\) in the state_dict but \(16,\)"):
        model.load_state_dict({**state, "0.bias": np.zeros(3)})
    missing, unexpected = model.load_state_dict({"0.bias": np.ones(16), "x": np.zeros(1)}, strict=False)
    assert "0.weight" in missing and unexpected == ["x"]
    assert model[0].bias.dtype == np.float32 and (model[0].bias == 1).all()


def test_parameters_are_handles_on_the_module():
    model = nn.Sequential(nn.Linear(3, 2, rng=np.random.default_rng(0), dtype=F64), nn.ReLU(),
                          nn.BatchNorm2D(2, dtype=F64))
    named = dict(model.named_parameters())
    assert list(named) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert list(model.parameters()) == list(named.values())  # the same objects every time
    w = named["0.weight"]
    assert w.data is model[0].weight and w.grad is None and w.shape == (2, 3)
    model[0].forward(np.ones((4, 3)))
    model[0].backward(np.ones((4, 2)))
    assert w.grad is model[0].grads()["weight"]
    np.testing.assert_array_equal(w.grad, np.full((2, 3), 4.0))
    model[0].backward(np.ones((4, 2)))  # backward sets, it does not accumulate
    np.testing.assert_array_equal(w.grad, np.full((2, 3), 4.0))
    model.zero_grad()
    assert w.grad is None and model.grads() == {}
    w.data = np.zeros((2, 3))
    assert not model[0].weight.any()


def test_residual_finite_differences_and_identity():
    rng = np.random.default_rng(5)
    block = nn.Sequential(nn.Conv2D(2, 2, 3, padding=1, rng=rng, dtype=F64), nn.ReLU())
    for shortcut in (None, nn.Conv2D(2, 2, 1, rng=rng, dtype=F64)):
        res = nn.Residual(block, shortcut)
        x, r = rng.standard_normal((2, 2, 4, 4)) + 0.05, rng.standard_normal((2, 2, 4, 4))
        res.forward(x)
        dx = res.backward(r)
        names = [n for n, _ in res.named_parameters()]
        params = [p.data for p in res.parameters()]
        grads = [p.grad for p in res.parameters()]

        def loss(x, *ps):
            for (n, p), v in zip(res.named_parameters(), ps):
                p.data = v
            return float(np.sum(r * res.forward(x)))

        directional_fd(loss, (x, *params), (dx, *grads), rng)
        assert names[:2] == ["block.0.weight", "block.0.bias"]
    with pytest.raises(ValueError, match="block output"):
        nn.Residual(nn.MaxPool2D(2)).forward(np.zeros((1, 1, 4, 4)))
    with pytest.raises(TypeError, match="block must be a gpucnn.nn.Module"):
        nn.Residual(lambda x: x)


def test_resnet20_architecture():
    model = nn.resnet20((3, 32, 32), 10, rng=np.random.default_rng(0))
    convs = [p for n, p in model.named_parameters() if p.data.ndim == 4]
    assert len(convs) == 21 and sum(p.data.size for p in model.parameters()) == 272474
    assert [p.shape[0] for p in convs if p.shape[2] == 1] == [32, 64]  # the two projection shortcuts
    assert model.forward(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 10)


@pytest.mark.parametrize("opt_name,hyper", [("SGD", dict(lr=0.05, momentum=0.9, weight_decay=5e-4)),
                                            ("Adam", dict(lr=2e-3, weight_decay=1e-4))], ids=["sgd", "adam"])
def test_resnet20_twenty_steps_match_torch(opt_name, hyper):
    torch = pytest.importorskip("torch")
    model = nn.resnet20((3, 8, 8), 4, rng=np.random.default_rng(0), dtype=F64)
    twin = torch_model(model)
    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((2, 3, 8, 8)), rng.integers(0, 4, 2)) for _ in range(20)]
    worst = train_both(model, twin, getattr(nn, opt_name)(model.parameters(), **hyper),
                   getattr(torch.optim, opt_name)(twin.parameters(), **hyper), batches)
    assert worst < 1e-6, worst


def test_resnet20_adam_checkpoint_resumes_to_the_same_step(tmp_path):
    from gpucnn import checkpoint
    rng = np.random.default_rng(6)
    batches = [(rng.standard_normal((2, 3, 8, 8)), rng.integers(0, 4, 2)) for _ in range(3)]
    runs = []
    for resume in (False, True):
        model = nn.resnet20((3, 8, 8), 4, rng=np.random.default_rng(0), dtype=F64)
        opt, loss_fn = nn.Adam(model.parameters(), lr=1e-3, amsgrad=True), nn.CrossEntropyLoss()
        for i, (x, y) in enumerate(batches):
            if resume and i == 2:  # a new model and optimizer from the checkpoint take the last step
                checkpoint.save(tmp_path / "r.npz", model, opt)
                model = nn.resnet20((3, 8, 8), 4, rng=np.random.default_rng(9), dtype=F64)
                opt = nn.Adam(model.parameters(), lr=1e-3, amsgrad=True)
                checkpoint.load(tmp_path / "r.npz", model, opt)
            loss_fn.forward(model.forward(x), y)
            model.backward(loss_fn.backward())
            opt.step()
        runs.append((model.state_dict(), opt.state_dict()))
    for a, b in zip(*runs):
        assert list(a) == list(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resnet20_steps_on_the_emulator_match_numpy():
    import gpucnn
    if not gpucnn.backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    rng = np.random.default_rng(7)
    batches = [(rng.standard_normal((2, 3, 8, 8)), rng.integers(0, 4, 2)) for _ in range(2)]
    runs = []
    for name in ("numpy", "emulator"):
        model = nn.resnet20((3, 8, 8), 4, rng=np.random.default_rng(0), dtype=F64)
        opt, loss_fn, losses = nn.AdamW(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(), []
        with gpucnn.use_backend(name):
            for x, y in batches:
                losses.append(float(loss_fn.forward(model.forward(x), y)))
                model.backward(loss_fn.backward())
                opt.step()
        runs.append((losses, model.state_dict()))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-12)
    # A weight after two AdamW steps is w0 minus two updates of up to lr = 1e-2 each, where the two
    # backends' float64 sums differ in order (the kernels' fixed trees, NumPy's pairwise sums): 1e-9
    # of the updates' scale (atol = 1e-9 x lr), not of the result, which the updates can cancel
    # (17.block.3.weight[41, 1, 0, 0] = 0.00167: 3.1e-12 apart once the reductions' tree changed).
    for k, v in runs[0][1].items():
        np.testing.assert_allclose(runs[1][1][k], v, rtol=1e-9, atol=1e-9 * 1e-2, err_msg=k)
