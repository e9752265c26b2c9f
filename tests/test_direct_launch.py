"""Our own launch path (gpucnn.runtime.direct, GPUCNN_LAUNCH=driver): the arguments packed into
kernelParams by us, read back by the emulator as the driver reads them (EmuKernel.launch_packed:
each scalar at its parameter's size against the bytes CuPy's path passes, each pointer against its
array), so the ops, a training step and a captured one run on it and give, bit for bit, what
CuPy's launch path gives."""
from __future__ import annotations

import ctypes
import struct

import numpy as np
import pytest

import gpucnn
from gpucnn import backend
from gpucnn.nn import SGD, BatchNorm2D, Conv2D, CrossEntropyLoss, Dropout, Flatten, Linear, MaxPool2D, ReLU
from gpucnn.nn import Sequential, compile_step
from gpucnn.runtime import direct
from gpucnn.runtime.emulator.errors import KernelArgumentError
from gpucnn.runtime.emulator.launch import EmuKernel

needs_emulator = pytest.mark.skipif(not backend.available("emulator")[0], reason="emulator unavailable")


@pytest.fixture
def packed(monkeypatch):
    """The kernels launched from packed arguments (EmuKernel.launch_packed), by name."""
    seen, real = [], EmuKernel.launch_packed

    def recording(self, *a):
        seen.append(self.name)
        return real(self, *a)
    monkeypatch.setattr(EmuKernel, "launch_packed", recording)
    return seen


def _ops(dtype) -> list:
    """ReLU, batch norm (int, long long, float, double and flag parameters, the reductions'
    scratch), pooling, the convolution's direct, halo, Winograd and GEMM kernels and the bias gradient, the
    linear layer, the loss and dropout: every result, as host arrays."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 8)).astype(dtype)
    g, b, rm, rv = (np.full(3, v, dtype) for v in (1.5, 0.25, 0.0, 1.0))
    y = gpucnn.relu(x)
    out = [y, gpucnn.relu_backward(y, x)]
    bn, saved = gpucnn.batch_norm2d(x, g, b, rm, rv)
    out += [bn, rm, rv, *gpucnn.batch_norm2d_backward(y, x, g, saved)]
    out += [gpucnn.max_pool2d(x, 2, 2), gpucnn.avg_pool2d(x, 3, 2, 1)]
    w3 = x[:2, :, :3, :3].copy()  # 3 channels: the direct kernels
    c = gpucnn.conv2d(x, w3, np.ones(2, dtype), padding=1)
    out += [c, *gpucnn.conv2d_backward(c, x, w3, padding=1)]
    x, w = rng.standard_normal((2, 16, 8, 8)).astype(dtype), rng.standard_normal((32, 16, 3, 3)).astype(dtype)
    c = gpucnn.conv2d(x, w, np.ones(32, dtype), padding=1)  # float32: the halo kernels
    out += [c, *gpucnn.conv2d_backward(c, x, w, padding=1)]
    with gpucnn.math_mode("fp32"):  # float32: the Winograd kernels (80 KiB of shared memory, opted in)
        c = gpucnn.conv2d(x, w, np.ones(32, dtype), padding=1)
        out += [c, *gpucnn.conv2d_backward(c, x, w, padding=1)]
    c = gpucnn.conv2d(x, w, None, stride=2, padding=1)  # the GEMM kernels; backward-data by phases
    out += [c, *gpucnn.conv2d_backward(c, x, w, stride=2, padding=1, bias=False)]
    a, wl = rng.standard_normal((4, 10)).astype(dtype), rng.standard_normal((5, 10)).astype(dtype)
    z = gpucnn.linear(a, wl, np.zeros(5, dtype))
    out += [z, *gpucnn.linear_backward(z, a, wl), *gpucnn.softmax_cross_entropy(z, np.array([0, 1, 4, 2]))]
    return [np.array(v) for v in out if v is not None]


@needs_emulator
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_on_the_driver_path_equal_cupys_bitwise(packed, dtype):
    with gpucnn.use_backend("emulator"):
        want = _ops(dtype)
        assert not packed
        with direct.use("driver"):
            got = _ops(dtype)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"result {i}")
    prefixes = ("relu_forward", "relu_backward", "batchnorm_stats", "batchnorm_forward", "batchnorm_backward_sums",
                "batchnorm_backward_data", "max_pool2d", "avg_pool2d", "conv2d_forward_", "conv2d_backward_data_",
                "conv2d_backward_filter_", "conv2d_bias_grad", "depthwise_forward_", "linear_forward",
                "linear_backward_", "ce_")
    for prefix in prefixes + (("conv2d_halo_", "conv2d_wino_") if dtype == np.float32 else ()):  # float32's
        assert any(k.startswith(prefix) for k in packed), (prefix, packed)


def _model(seed=0):
    rng = np.random.default_rng(seed)
    return Sequential(Conv2D(1, 4, 3, padding=1, rng=rng), BatchNorm2D(4), ReLU(), MaxPool2D(2), Flatten(),
                      Dropout(0.5, rng=rng), Linear(4 * 4 * 4, 3, rng=rng))


def _host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _train(steps: int, captured: bool, device: str = "cpu") -> dict:
    """The model's state after ``steps`` steps of SGD with momentum, eager or captured once and
    replayed (the replays relaunch what the capture recorded: on the driver path, its launches),
    on NumPy arrays (the backend in force) or on CuPy's (device "cuda")."""
    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((4, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 4)) for _ in range(steps)]
    model, loss = _model(), CrossEntropyLoss()
    if device == "cuda":
        import cupy
        model = model.to("cuda")
        batches = [(cupy.asarray(x), cupy.asarray(y)) for x, y in batches]
    opt = SGD(model, 0.05, momentum=0.9, weight_decay=1e-3)
    model.train()
    if captured:
        step = compile_step(model, loss, opt, *batches[0])
        for x, y in batches:
            step(x, y)
    else:
        for x, y in batches:
            loss.forward(model.forward(x), y)
            model.backward(loss.backward())
            opt.step()
    return {k: _host(v) for k, v in {**model.params(), **model.buffers()}.items()}


@needs_emulator
@pytest.mark.parametrize("captured", [False, True], ids=["eager", "captured"])
def test_training_steps_on_the_driver_path_equal_cupys_bitwise(packed, captured):
    with gpucnn.use_backend("emulator"):
        want = _train(2, captured)
        with direct.use("driver"):
            got = _train(2, captured)
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert any(k.startswith("sgd") or "optim" in k for k in packed), packed  # the optimizer's kernels too
    assert any(k.startswith("dropout") for k in packed), packed


@needs_emulator
def test_a_mispacked_argument_is_named(monkeypatch):
    """A slot holding other bytes than CuPy's launch would pass (here: every scalar's slot zeroed
    after the packing) is caught before the launch, naming the kernel and the argument."""
    real = direct.Packer.pack

    def zeroing(self, args):
        address = real(self, args)
        for i, a in enumerate(args):
            if not isinstance(a, np.ndarray):
                self.buf[i] = 0
        return address
    monkeypatch.setattr(direct.Packer, "pack", zeroing)
    x = np.ones((2, 3, 4, 4), np.float32)
    with gpucnn.use_backend("emulator"), direct.use("driver"), \
            pytest.raises(KernelArgumentError, match=r"relu_forward_f32: argument #\d+ '\w+' was packed as"):
        gpucnn.relu(x)


def test_a_python_int_and_float_pass_as_cupy_passes_them():
    """CuPy passes a Python int (a bool too) as int64 and a float as double; None as a null pointer."""
    args = (np.zeros(2), 7, True, 2.5, None, np.int32(-3), np.float32(0.5))
    pk = direct.packer(args, np.ndarray, lambda a: a.ctypes.data)
    params = (ctypes.c_void_p * 7).from_address(pk.pack(args))
    read = [ctypes.string_at(p, 8) for p in params]
    assert read[0] == struct.pack("<Q", args[0].ctypes.data)
    assert read[1:5] == [struct.pack("<q", 7), struct.pack("<q", 1), struct.pack("<d", 2.5), bytes(8)]
    assert read[5][:4] == struct.pack("<i", -3) and read[6][:4] == struct.pack("<f", 0.5)
    with pytest.raises(TypeError, match="no kernel argument of type str"):
        direct.packer(("x",), np.ndarray, id)


def test_the_launch_path_is_checked():
    with pytest.raises(ValueError, match="GPUCNN_LAUNCH must be one of cupy, driver, got 'cuda'"):
        with direct.use("cuda"):
            pass
    assert direct.PATH == "cupy"


@pytest.mark.gpu
@pytest.mark.skipif(not backend.available("cuda")[0], reason="no CUDA GPU through CuPy")
def test_ops_on_the_gpu_through_the_driver_equal_cupys_launches_bitwise():
    """On a GPU: the same ops through cupy.cuda.driver.launchKernel with our packing."""
    import cupy
    with gpucnn.use_backend("cuda"):
        want = _ops(np.float32)
        with direct.use("driver"):
            got = _ops(np.float32)
        cupy.cuda.Device().synchronize()
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"result {i}")


@pytest.mark.gpu
@pytest.mark.skipif(not backend.available("cuda")[0], reason="no CUDA GPU through CuPy")
@pytest.mark.parametrize("captured", [False, True], ids=["eager", "captured"])
def test_training_steps_on_the_gpu_through_the_driver_equal_cupys_bitwise(captured):
    """On a GPU: eager steps, and steps captured into a CUDA graph (the driver's launches on the
    capturing stream) and replayed, through our launch path and CuPy's, bit for bit."""
    with gpucnn.use_backend("numpy"):  # the model built on the host, then moved
        want = _train(2, captured, "cuda")
        with direct.use("driver"):
            got = _train(2, captured, "cuda")
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@needs_emulator
def test_threads_launching_one_kernel_do_not_pack_over_each_other(packed, monkeypatch):
    """Each DirectKernel has one buffer a list of argument types: two threads launching the same
    kernel at once, each launch held up between its packing and the driver's read (a sleep here),
    still launch their own arguments (the emulator's read-back checks each pointer)."""
    import threading
    import time
    real = EmuKernel.launch_packed

    def slow(self, *a):
        time.sleep(0.01)
        return real(self, *a)
    monkeypatch.setattr(EmuKernel, "launch_packed", slow)
    xs = [np.full((2, 3, 4, 4), v, np.float32) for v in (-1.0, 2.0, 3.0, -4.0)]
    got, errors = {}, []

    def run(i):
        try:
            with gpucnn.use_backend("emulator"):  # a context variable: each thread's own
                for _ in range(3):
                    got[i] = gpucnn.relu(xs[i])
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)
    with gpucnn.use_backend("emulator"), direct.use("driver"):
        gpucnn.relu(xs[0])  # the module built once, before the threads
        assert packed == ["relu_forward_f32"]
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert len(packed) == 1 + 3 * len(xs)  # every launch on the driver path
    for i, x in enumerate(xs):
        np.testing.assert_array_equal(got[i], np.maximum(x, 0))
