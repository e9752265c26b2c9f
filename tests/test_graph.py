"""Whole-step capture (gpucnn.nn.compile_step): replayed steps equal eager
steps bitwise on the emulator, what cannot be captured is named, and the GPU
path's control flow (with a stand-in CuPy). The loss and optimizer are the
kernel-only stand-ins of capturable.py."""
from __future__ import annotations

import contextlib
import sys
import types

import numpy as np
import pytest

import gpucnn
from gpucnn import backend
from gpucnn.nn import SGD, Adam, BatchNorm2D, CaptureError, Conv2D, CrossEntropyLoss, Dropout, Flatten, Linear
from gpucnn.nn import MODELS, MaxPool2D, ReLU, Sequential, compile_step
from gpucnn.runtime import capture

from capturable import KernelSGD, ReluSumLoss

SHAPE, CLASSES, BATCH = (1, 8, 8), 3, 4


@pytest.fixture(autouse=True)
def emulator():
    ok, why = backend.available("emulator")
    if not ok:
        pytest.skip(f"emulator unavailable: {why}")
    with gpucnn.use_backend("emulator"):
        yield


def _model(seed=0, dropout=False):
    rng = np.random.default_rng(seed)
    layers = [Conv2D(1, 4, 3, padding=1, bias=False, rng=rng), BatchNorm2D(4), ReLU(), MaxPool2D(2),
              Flatten(), Linear(4 * 4 * 4, CLASSES, rng=rng)]
    if dropout:
        layers.insert(-1, Dropout(0.5, rng=rng))
    return Sequential(*layers)


def _batches(n):
    rng = np.random.default_rng(1)
    return [(rng.standard_normal((BATCH, *SHAPE)).astype(np.float32), rng.integers(0, CLASSES, BATCH))
            for _ in range(n)]


def _eager_step(model, loss, opt, x, y):
    value = loss.forward(model.forward(x), y)
    model.backward(loss.backward())
    opt.step()
    return value.copy()


def _state(model):
    return {**model.params(), **{k: np.asarray(v) for k, v in model.buffers().items()}}


def test_replayed_steps_equal_eager_steps_bitwise():
    batches = _batches(3)
    eager, graphed = _model(dropout=True), _model(dropout=True)
    e_loss, e_opt = ReluSumLoss(), KernelSGD(eager, 0.05)
    g_opt = KernelSGD(graphed, 0.05)
    step = compile_step(graphed, ReluSumLoss(), g_opt, *batches[0])
    # Capturing records the step and runs nothing: the weights are untouched.
    for k, v in _state(eager).items():
        assert np.array_equal(v, _state(graphed)[k]), k
    for i, (x, y) in enumerate(batches):
        want = _eager_step(eager, e_loss, e_opt, x, y)
        got = step(x, y)
        assert got.shape == () and got.tobytes() == want.tobytes(), (i, got, want)
        for k, v in _state(eager).items():
            assert np.array_equal(v, _state(graphed)[k]), (i, k)
    assert _state(graphed)["1.num_batches_tracked"] == 3
    # Each replay drew a new dropout mask: the generator moved on by three batches of features.
    assert graphed.layers[5].state[1] == eager.layers[5].state[1] == 3 * BATCH * 4 * 4 * 4
    assert not np.array_equal(_state(graphed)["0.weight"], _model().params()["0.weight"])


@pytest.mark.parametrize("name", ["lenet", "vgg-small", "resnet20"])
def test_every_model_replays_like_eager(name):
    """A model whose step computes anything outside kernels and runtime copies
    (an array expression) replays stale values on the emulator: this catches it."""
    if name not in MODELS:
        pytest.skip(f"{name} is not in gpucnn.nn.MODELS yet")
    rng = np.random.default_rng(3)
    shape = (1, 8, 8) if name == "lenet" else (3, 8, 8)
    batches = [(rng.standard_normal((2, *shape)).astype(np.float32), rng.integers(0, 10, 2)) for _ in range(2)]
    eager, graphed = (MODELS[name](shape, 10, rng=np.random.default_rng(0)) for _ in range(2))
    e_loss, e_opt = ReluSumLoss(), KernelSGD(eager, 0.01)
    step = compile_step(graphed, ReluSumLoss(), KernelSGD(graphed, 0.01), *batches[0])
    for x, y in batches:
        assert step(x, y).tobytes() == _eager_step(eager, e_loss, e_opt, x, y).tobytes()
    for k, v in {**eager.params(), **eager.buffers()}.items():
        assert np.array_equal({**graphed.params(), **graphed.buffers()}[k], v), k


def test_a_new_learning_rate_captures_again():
    (x, y), = _batches(1)
    model = _model()
    opt = KernelSGD(model, 0.05)
    step = compile_step(model, ReluSumLoss(), opt, x, y)
    step(x, y)
    assert step.captures == 1
    opt.lr = 0.01
    reference = _model()
    ref_opt = KernelSGD(reference, 0.05)
    _eager_step(reference, ReluSumLoss(), ref_opt, x, y)
    ref_opt.lr = 0.01
    _eager_step(reference, ReluSumLoss(), ref_opt, x, y)
    step(x, y)
    assert step.captures == 2
    assert np.array_equal(model.params()["5.weight"], reference.params()["5.weight"])


class _HostSGD:
    """An optimizer of array expressions, which declares nothing."""

    def __init__(self, model, lr):
        self.model, self.lr = model, lr

    def step(self):
        for name, p in self.model.params().items():
            p -= self.lr * self.model.grads()[name]


def test_an_optimizer_that_is_not_capturable_is_named():
    (x, y), = _batches(1)
    model = _model()
    with pytest.raises(CaptureError, match=r"_HostSGD\.step"):
        compile_step(model, ReluSumLoss(), _HostSGD(model, 0.1), x, y)


@pytest.mark.parametrize("name", ["lenet", "resnet20"])
@pytest.mark.parametrize("make_opt", [
    lambda m: SGD(m, 0.05, momentum=0.9, weight_decay=1e-3, nesterov=True),
    lambda m: Adam(m.parameters(), lr=1e-2, weight_decay=1e-3, amsgrad=True),
], ids=["sgd-nesterov", "adam-amsgrad"])
def test_the_library_loss_and_optimizers_replay_like_eager(name, make_opt):
    """gpucnn.nn's cross-entropy and optimizers are kernels reading the step
    count and lr from the device: replays equal eager steps bitwise, and a new
    lr takes effect without a new capture."""
    rng = np.random.default_rng(4)
    shape = (1, 8, 8) if name == "lenet" else (3, 8, 8)
    batches = [(rng.standard_normal((2, *shape)).astype(np.float32), rng.integers(0, 10, 2)) for _ in range(3)]
    eager, graphed = (MODELS[name](shape, 10, rng=np.random.default_rng(0)) for _ in range(2))
    e_loss, e_opt, g_opt = CrossEntropyLoss(), make_opt(eager), make_opt(graphed)
    step = compile_step(graphed, CrossEntropyLoss(), g_opt, *batches[0])
    for i, (x, y) in enumerate(batches):
        if i == 2:
            e_opt.lr = g_opt.lr = 0.001
        assert step(x, y).tobytes() == _eager_step(eager, e_loss, e_opt, x, y).tobytes(), i
    assert step.captures == 1
    for k, v in {**eager.params(), **eager.buffers()}.items():
        assert np.array_equal({**graphed.params(), **graphed.buffers()}[k], v), k


def test_an_op_without_kernels_is_named(monkeypatch):
    real = backend._kernel_op
    monkeypatch.setattr(backend, "_kernel_op", lambda family, op: None if family == "pool" else real(family, op))
    (x, y), = _batches(1)
    model = _model()
    before = model.params()["5.weight"].copy()
    # The first pool op the step meets is the max pool's forward.
    with pytest.raises(CaptureError, match=r"pool\.max_pool2d_forward .*NumPy reference"):
        compile_step(model, CrossEntropyLoss(), KernelSGD(model, 0.1), x, y)
    assert np.array_equal(model.params()["5.weight"], before)


def test_the_batch_must_match_the_example():
    (x, y), = _batches(1)
    model = _model()
    step = compile_step(model, ReluSumLoss(), KernelSGD(model, 0.1), x, y)
    with pytest.raises(ValueError, match=r"x must be .* shape \(4, 1, 8, 8\).*got .* shape \(3, 1, 8, 8\)"):
        step(x[:3], y[:3])
    with pytest.raises(ValueError, match="y must be .* dtype int64"):
        step(x, y.astype(np.int32))


def test_the_numpy_backend_has_nothing_to_capture():
    (x, y), = _batches(1)
    model = _model()
    with gpucnn.use_backend("numpy"), pytest.raises(CaptureError, match="emulator"):
        compile_step(model, ReluSumLoss(), KernelSGD(model, 0.1), x, y)


@pytest.mark.gpu
def test_replayed_steps_equal_eager_steps_on_a_gpu():
    if not backend.available("cuda")[0]:
        pytest.skip("no CUDA GPU")
    import cupy
    batches = [(cupy.asarray(x), cupy.asarray(y)) for x, y in _batches(3)]
    eager, graphed = _model().to("cuda"), _model().to("cuda")
    e_loss, e_opt = ReluSumLoss(), KernelSGD(eager, 0.05)
    step = compile_step(graphed, ReluSumLoss(), KernelSGD(graphed, 0.05), *batches[0])
    assert step.runtime == "cuda" and step.pool_bytes > 0
    for x, y in batches:
        want = _eager_step(eager, e_loss, e_opt, x, y)
        got = step(x, y)
        cupy.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    for k, v in {**eager.params(), "1.running_mean": eager.buffers()["1.running_mean"]}.items():
        cupy.testing.assert_allclose({**graphed.params(), **graphed.buffers()}[k], v, rtol=1e-5, atol=1e-7,
                                     err_msg=k)
    assert int(graphed.buffers()["1.num_batches_tracked"]) == 3


@pytest.mark.gpu
@pytest.mark.parametrize("make_opt", [
    lambda m: SGD(m, 0.05, momentum=0.9, weight_decay=1e-3, nesterov=True),
    lambda m: Adam(m.parameters(), lr=1e-2, weight_decay=1e-3, amsgrad=True),
], ids=["sgd-nesterov", "adam-amsgrad"])
def test_the_library_optimizers_capture_first_on_a_gpu(make_opt):
    """compile_step with an optimizer that has never stepped (as the bench's step rows and the
    training command do): its state is made before the capture, which may not copy from the
    host (the first GPU run's step 6 stopped there), and replays equal eager steps."""
    if not backend.available("cuda")[0]:
        pytest.skip("no CUDA GPU")
    import cupy
    rng = np.random.default_rng(4)
    batches = [(cupy.asarray(rng.standard_normal((2, 1, 8, 8)).astype(np.float32)),
                cupy.asarray(rng.integers(0, 10, 2))) for _ in range(3)]
    # built on NumPy: the module's fixture makes the emulator NumPy arrays' backend, and lenet's
    # shape probe would compile its conv2d module (over 20 s on the H200's host: the third GPU
    # run's step 3 timed out there, bench/results/gpu-2026-11-30-s20)
    with gpucnn.use_backend("numpy"):
        eager, graphed = (MODELS["lenet"]((1, 8, 8), 10, rng=np.random.default_rng(0)).to("cuda") for _ in range(2))
    e_loss, e_opt = CrossEntropyLoss(), make_opt(eager)
    step = compile_step(graphed, CrossEntropyLoss(), make_opt(graphed), *batches[0])
    for x, y in batches:
        want = _eager_step(eager, e_loss, e_opt, x, y)
        cupy.testing.assert_allclose(step(x, y), want, rtol=1e-6, atol=0)
    for k, v in eager.params().items():
        cupy.testing.assert_allclose(graphed.params()[k], v, rtol=1e-5, atol=1e-7, err_msg=k)


class _FakeCupy:
    """Just enough of CuPy's stream-capture API to follow capture's control flow without a GPU."""

    def __init__(self, fail_with=None):
        self.log, self.fail_with = [], fail_with
        fake = self

        class Stream:
            def __init__(self, non_blocking=False):
                fake.log.append(("stream", non_blocking))

            def __enter__(self):
                fake.log.append("stream current")

            def __exit__(self, *exc):
                fake.log.append("stream restored")

            def begin_capture(self):
                fake.log.append("begin")

            def end_capture(self):
                fake.log.append("end")
                return types.SimpleNamespace(launch=lambda: fake.log.append("launch"))

        class MemoryPool:
            def malloc(self, n):
                raise AssertionError("not called here")

            def total_bytes(self):
                return 4096

        @contextlib.contextmanager
        def using_allocator(alloc):
            fake.log.append("private pool")
            yield
            fake.log.append("default pool")

        self.cuda = types.SimpleNamespace(Stream=Stream, MemoryPool=MemoryPool, using_allocator=using_allocator)


class CUDARuntimeError(RuntimeError):
    pass


CUDARuntimeError.__module__ = "cupy_backends.cuda.api.runtime"


def test_cuda_capture_control_flow(monkeypatch):
    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    effects = []

    def body():
        fake.log.append("body")
        capture.host_effect(lambda: effects.append("counted"))
        return "out"
    graph, out = capture.capture("cuda", body)
    assert out == "out" and graph.pool_bytes == 4096 and effects == []
    assert fake.log == [("stream", True), "stream current", "private pool", "begin", "body", "end",
                        "default pool", "stream restored"]
    graph.replay()
    assert fake.log[-1] == "launch" and effects == ["counted"]


def test_a_cuda_error_while_capturing_names_the_op(monkeypatch):
    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)

    def body():
        capture.note_op("pool.max_pool2d_backward")
        raise CUDARuntimeError("cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing")
    with pytest.raises(capture.CaptureError, match=r"pool\.max_pool2d_backward cannot be captured.*not permitted"):
        capture.capture("cuda", body)
    assert fake.log.count("end") == 1 and fake.log[-1] == "stream restored"
