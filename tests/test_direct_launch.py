"""bench/host_cupy.py's argument packing (gpu.sh step 2d's experiment), read back as a kernel
reads it: each launch of a few ops on the emulator is recorded, its arguments packed into
kernelParams, and each parameter's bytes read from there at the size and type the emulator parsed
from the kernel's signature; the launch then runs again on the values read back and leaves every
array as the original launch left it."""
from __future__ import annotations

import ctypes
import importlib.util
import pathlib
import struct

import numpy as np
import pytest

import gpucnn
from gpucnn import backend
from gpucnn.runtime import runtime_for

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("host_cupy", ROOT / "bench" / "host_cupy.py")
dl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dl)

pytestmark = pytest.mark.skipif(not backend.available("emulator")[0], reason="emulator unavailable")


def _read_back(address: int, types, arrays: dict) -> list:
    """The arguments a kernel of parameter types ``types`` reads from kernelParams at ``address``:
    an array for a pointer (found by its address), a NumPy scalar of the parameter's type else."""
    params = (ctypes.c_void_p * len(types)).from_address(address)
    out = []
    for slot, p in zip(params, types):
        if p.pointer:
            out.append(arrays[ctypes.c_uint64.from_address(slot).value])
        else:
            out.append(np.frombuffer(ctypes.string_at(slot, p.size), p.dtype)[0])
    return out


def _checked_launches(monkeypatch):
    """rt.function of the emulator's runtime recording each launch's check: the launch as made,
    then packed, read back and run again; returns the list of kernels checked."""
    rt, real, seen = runtime_for("emulator"), runtime_for("emulator").function, []

    def function(family, kernel, options=()):
        fn = real(family, kernel, options)

        class Checked:  # the kernel's launches checked; its shared-memory opt-in the kernel's own
            max_dynamic_shared_size_bytes = property(
                lambda self: fn.max_dynamic_shared_size_bytes,
                lambda self, n: setattr(fn, "max_dynamic_shared_size_bytes", n))

            def __call__(self, grid, block, args, **kw):
                run(grid, block, args, **kw)

        def run(grid, block, args, **kw):
            fn(grid, block, args, **kw)
            arrays = [a for a in args if isinstance(a, np.ndarray)]
            after = [a.copy() for a in arrays]
            for a, p in zip(args, fn.types):  # each slot holds exactly the parameter's bytes
                if not p.pointer:
                    assert struct.calcsize("<" + dl._code(type(a), np.ndarray)[0][0]) == p.size, (kernel, p)
            pk = dl.packer(args, np.ndarray, lambda a: a.ctypes.data)
            back = _read_back(pk.pack(args), fn.types, {a.ctypes.data: a for a in arrays})
            for a, b in zip(args, back):
                assert b is a if isinstance(a, np.ndarray) else b == a, (kernel, a, b)
            fn(grid, block, tuple(back), **kw)
            for a, want in zip(arrays, after):
                np.testing.assert_array_equal(a, want, err_msg=kernel)
            seen.append(kernel)
        return Checked()
    monkeypatch.setattr(rt, "function", function)
    return seen


def test_packed_arguments_read_back_as_each_kernel_declares_them(monkeypatch):
    """float32 and float64 tensors through ReLU, batch norm (int, long long, float, double and
    flag parameters, the reductions' scratch), pooling, the convolution's direct, halo and GEMM
    kernels and the bias gradient: every recorded launch's arguments survive the packing, byte
    for byte, and drive the kernel as the originals did."""
    seen = _checked_launches(monkeypatch)
    rng = np.random.default_rng(0)
    with backend.use_backend("emulator"):
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((2, 3, 6, 8)).astype(dtype)
            g, b, rm, rv = (np.full(3, v, dtype) for v in (1.5, 0.25, 0.0, 1.0))
            y = gpucnn.relu(x)
            gpucnn.relu_backward(y, x)
            _, saved = gpucnn.batch_norm2d(x, g, b, rm, rv)
            gpucnn.batch_norm2d_backward(y, x, g, saved)
            gpucnn.max_pool2d(x, 2, 2)
            gpucnn.conv2d_backward(gpucnn.conv2d(x, x[:2, :, :3, :3], np.ones(2, dtype), padding=1), x,
                                   x[:2, :, :3, :3], padding=1)  # 3 channels: the direct kernels
            x, w = rng.standard_normal((2, 16, 8, 8)).astype(dtype), rng.standard_normal((32, 16, 3, 3)).astype(dtype)
            gpucnn.conv2d_backward(gpucnn.conv2d(x, w, np.ones(32, dtype), padding=1), x, w, padding=1)
    assert {"relu_forward_f32", "relu_backward_f64", "batchnorm_forward_f64", "batchnorm_backward_sums_f32",
            "conv2d_bias_grad_f64"} <= set(seen), seen
    assert any(k.startswith("batchnorm_stats") for k in seen) and any(k.startswith("max_pool2d") for k in seen)
    for prefix in ("conv2d_forward_", "conv2d_backward_data_", "conv2d_backward_filter_", "conv2d_halo_forward_",
                   "conv2d_halo_weights_", "depthwise_forward_"):
        assert any(k.startswith(prefix) for k in seen), (prefix, seen)


def test_a_python_int_and_float_pass_as_cupy_passes_them():
    """CuPy passes a Python int (a bool too) as int64 and a float as double; None as a null pointer."""
    pk = dl.packer((np.zeros(2), 7, True, 2.5, None, np.int32(-3), np.float32(0.5)), np.ndarray,
                   lambda a: a.ctypes.data)
    a = np.zeros(2)
    params = (ctypes.c_void_p * 7).from_address(pk.pack((a, 7, True, 2.5, None, np.int32(-3), np.float32(0.5))))
    read = [ctypes.string_at(p, 8) for p in params]
    assert read[0] == struct.pack("<Q", a.ctypes.data)
    assert read[1:5] == [struct.pack("<q", 7), struct.pack("<q", 1), struct.pack("<d", 2.5), bytes(8)]
    assert read[5][:4] == struct.pack("<i", -3) and read[6][:4] == struct.pack("<f", 0.5)
    with pytest.raises(TypeError, match="no kernel argument of type str"):
        dl.packer(("x",), np.ndarray, id)
