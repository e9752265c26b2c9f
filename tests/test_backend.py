"""Backend selection: arrays choose first, then use_backend / GPUCNN_BACKEND."""
from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn import backend
from gpucnn.cli import main


def test_default_is_numpy_and_names_are_checked(monkeypatch):
    monkeypatch.delenv("GPUCNN_BACKEND", raising=False)
    assert backend.current() == "numpy"
    with pytest.raises(ValueError, match="backend must be one of"):
        with gpucnn.use_backend("tpu"):
            pass


def test_environment_variable_selects_the_emulator(monkeypatch):
    if not backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    monkeypatch.setenv("GPUCNN_BACKEND", "emulator")
    assert backend.current() == "emulator"
    x = np.linspace(-2, 2, 37, dtype=np.float32)
    assert backend.resolve((x,)) == "emulator"
    np.testing.assert_array_equal(gpucnn.relu(x), np.maximum(x, 0))


def test_use_backend_nests_and_restores():
    if not backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    with gpucnn.use_backend("emulator"):
        assert backend.current() == "emulator"
        with gpucnn.use_backend("numpy"):
            assert backend.current() == "numpy"
        assert backend.current() == "emulator"


def test_emulator_runs_the_kernels_not_the_reference(monkeypatch):
    """Under the emulator a kernel op goes through gpucnn.cuda, never the reference."""
    if not backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    import gpucnn.reference.relu as ref

    def boom(*a):
        raise AssertionError("the reference ran")
    monkeypatch.setattr(ref, "relu_forward", boom)
    x = np.arange(-3, 4, dtype=np.float64)
    with gpucnn.use_backend("emulator"):
        np.testing.assert_array_equal(gpucnn.relu(x), np.maximum(x, 0))
    with pytest.raises(AssertionError, match="the reference ran"):
        gpucnn.relu(x)


@pytest.mark.skipif(backend.available("cuda")[0], reason="a GPU is present")
def test_cuda_without_a_gpu_says_what_is_missing():
    with pytest.raises(gpucnn.BackendUnavailable, match="cuda.*(CuPy|device)"):
        with gpucnn.use_backend("cuda"):
            pass


def test_mixing_numpy_and_cupy_arrays_is_refused():
    fake = type("ndarray", (), {"__module__": "cupy._core.core", "shape": (2,),
                                "dtype": np.dtype(np.float32)})()
    with pytest.raises(TypeError, match="must all be NumPy or all CuPy"):
        backend.resolve((np.zeros(2, np.float32), fake))


def test_info_and_demo_commands(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backend numpy" in out and "backend emulator" in out and "backend cuda" in out
    assert "CuPy" in out  # its version, or that it is not installed
    assert main(["demo", "--steps", "60"]) == 0
    out = capsys.readouterr().out
    assert "step  60" in out and "backend 'numpy'" in out


def test_emulator_without_a_compiler_says_what_is_missing():
    import os
    import subprocess
    import sys
    code = ("import gpucnn\n"
            "try:\n"
            "    with gpucnn.use_backend('emulator'): pass\n"
            "except gpucnn.BackendUnavailable as e: print(e)\n")
    env = dict(os.environ, GPUCNN_CXX="/nonexistent/g++")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "emulator" in r.stdout and "compiler" in r.stdout
