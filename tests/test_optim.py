"""SGD, Adam and AdamW on every backend (the multi-tensor kernels of
kernels/optim.cu on the emulator), against torch.optim from the same
parameters and gradients; their construction errors, zero_grad, state_dict
and checkpoints that resume to the same next step."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL

import gpucnn
from gpucnn import checkpoint, nn
from gpucnn.cuda.launch import small_grid

pytestmark = pytest.mark.family("optim")

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, weight_decay=0.1, nesterov=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.03, weight_decay=0.5, amsgrad=True)),
]


def _model(dtype):
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Conv2D(2, 3, 3, rng=rng, dtype=dtype), nn.BatchNorm2D(3, dtype=dtype), nn.Flatten(),
                         nn.Linear(12, 5, rng=rng, dtype=dtype))


def _grads(step, model):
    rng = np.random.default_rng(step)
    for p in model.parameters():
        p.grad = rng.standard_normal(p.shape).astype(p.dtype)


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("name,hyper", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_optimizer_matches_torch(backend, name, hyper, dtype):
    torch = pytest.importorskip("torch")
    model = _model(dtype)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in model.parameters()]
    opt, topt = getattr(nn, name)(model.parameters(), **hyper), getattr(torch.optim, name)(tparams, **hyper)
    for step in range(5):
        if step == 3:  # the learning rate changes between steps, as a schedule does
            opt.lr = topt.param_groups[0]["lr"] = hyper["lr"] / 3
        _grads(step, model)
        for tp, p in zip(tparams, model.parameters()):
            tp.grad = torch.from_numpy(p.grad.copy())
        opt.step()
        topt.step()
    for tp, p in zip(tparams, model.parameters()):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), **TOL[dtype])


def _run(model, opt, steps, first=0):
    for step in range(first, first + steps):
        _grads(step, model)
        opt.step()


@pytest.mark.parametrize("name,hyper", [CONFIGS[2], CONFIGS[4], CONFIGS[6]], ids=["sgd", "adam", "adamw"])
def test_state_dict_resumes_bitwise(backend, name, hyper, tmp_path):
    whole, whole_opt = _model(np.float64), None
    whole_opt = getattr(nn, name)(whole, **hyper)
    _run(whole, whole_opt, 4)
    part = _model(np.float64)
    part_opt = getattr(nn, name)(part, **hyper)
    _run(part, part_opt, 2)
    checkpoint.save(tmp_path / "c.npz", part, part_opt)
    resumed = _model(np.float64)
    resumed_opt = getattr(nn, name)(resumed, **hyper)
    checkpoint.load(tmp_path / "c.npz", resumed, resumed_opt)
    _run(resumed, resumed_opt, 2, first=2)
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)
    for k, v in whole_opt.state_dict().items():
        np.testing.assert_array_equal(resumed_opt.state_dict()[k], v, err_msg=k)


def test_kernels_match_reference_in_float64():
    # The emulator's kernels and the NumPy reference do the same operations in the same order.
    if not gpucnn.backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    runs = []
    for name in ("emulator", "numpy"):
        model = _model(np.float64)
        opt = nn.Adam(model, lr=0.01, weight_decay=0.1, amsgrad=True)
        with gpucnn.use_backend(name), small_grid(1):
            _run(model, opt, 3)
        runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_allclose(runs[0][k], runs[1][k], rtol=1e-15, atol=1e-15, err_msg=k)


def test_zero_grad_and_missing_gradients():
    model = _model(np.float64)
    opt = nn.SGD(model.parameters(), lr=0.1)
    _grads(0, model)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(RuntimeError, match=r"no gradient for \['0', '1'"):
        opt.step()
    model.zero_grad()
    with pytest.raises(RuntimeError, match=r"no gradient for \['0.weight'"):
        nn.Adam(model).step()


def test_accepts_model_parameters_and_named_parameters():
    runs = []
    for arg in ("model", "parameters", "named"):
        model = _model(np.float64)
        params = {"model": model, "parameters": model.parameters(), "named": model.named_parameters()}[arg]
        opt = nn.AdamW(params)
        _run(model, opt, 2)
        runs.append((model.state_dict(), opt.state_dict()))
    for state, ostate in runs[1:]:
        for k in state:
            np.testing.assert_array_equal(state[k], runs[0][0][k])
        assert len(ostate) == len(runs[0][1])
    assert "exp_avg.0.weight" in runs[0][1] and "exp_avg.0" in runs[1][1] and "exp_avg.0.weight" in runs[2][1]


@pytest.mark.parametrize("make,exc,pattern", [
    (lambda m: nn.SGD(np.zeros(3), lr=0.1), TypeError, r"SGD takes a gpucnn.nn.Module or an iterable"),
    (lambda m: nn.SGD([np.zeros(3)], lr=0.1), TypeError, r"element 0 .* ndarray, not a gpucnn.nn.Parameter"),
    (lambda m: nn.Adam([{"params": m.parameters()}]), TypeError, r"parameter groups"),
    (lambda m: nn.Adam([]), ValueError, r"empty parameter list"),
    (lambda m: nn.Adam(5), TypeError, r"Adam takes a gpucnn.nn.Module"),
    (lambda m: nn.SGD(m, lr=-1), ValueError, r"\blr must be a finite number >= 0"),
    (lambda m: nn.SGD(m, lr=0.1, nesterov=True), ValueError, r"Nesterov"),
    (lambda m: nn.SGD(m, lr=0.1, momentum=float("nan")), ValueError, r"\bmomentum\b"),
    (lambda m: nn.Adam(m, betas=(0.9, 1.0)), ValueError, r"\bbetas must be two numbers in \[0, 1\)"),
    (lambda m: nn.AdamW(m, eps=-1), ValueError, r"\beps\b"),
    (lambda m: nn.Adam(list(m.parameters()) * 2), ValueError, r"more than once"),
])
def test_bad_arguments_fail_at_construction(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make(_model(np.float64))


def test_load_state_dict_refuses_a_foreign_state():
    model = _model(np.float64)
    sgd = nn.SGD(model, lr=0.1, momentum=0.9)
    _run(model, sgd, 1)
    with pytest.raises(ValueError, match="matches no parameter"):
        nn.Adam(model).load_state_dict(sgd.state_dict())
    state = sgd.state_dict()
    state["momentum_buffer.0.weight"] = np.zeros(2)
    with pytest.raises(ValueError, match="shapes differ"):
        sgd.load_state_dict(state)
    del state["momentum_buffer.0.weight"]
    with pytest.raises(ValueError, match="missing"):
        sgd.load_state_dict(state)


def test_checkpoint_refuses_another_optimizer(tmp_path):
    model = _model(np.float64)
    opt = nn.Adam(model)
    _run(model, opt, 1)
    checkpoint.save(tmp_path / "c.npz", model, opt)
    with pytest.raises(ValueError, match="holds the state of Adam, not of AdamW"):
        checkpoint.load(tmp_path / "c.npz", _model(np.float64), nn.AdamW(model))


def test_address_tables_are_reused_and_recycled():
    # Stable arrays reuse one table; more distinct address sets than slots recycle
    # the least recently used ones, and every step still reads the right arrays.
    if not gpucnn.backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    from gpucnn.cuda import optim as kernels
    runs = []
    for name in ("emulator", "numpy"):
        model = _model(np.float64)
        opt, keep = nn.SGD(model, lr=0.1, momentum=0.5), []
        with gpucnn.use_backend(name):
            for step in range(kernels.SLOTS + 4):
                _grads(step, model)
                keep.append([p.grad for p in model.parameters()])  # no address is freed and reused
                opt.step()
            if name == "emulator":
                ring = kernels._rings[("emulator", len(keep[0]))]
                assert len(ring.slots) == kernels.SLOTS
                before = dict(ring.slots)
                opt.step()  # the same gradients again: the same table, nothing written
                assert dict(ring.slots) == before
            else:
                opt.step()
        runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_allclose(runs[0][k], runs[1][k], rtol=1e-15, atol=1e-15, err_msg=k)
