"""Shared test machinery: every op test runs on every backend that implements
its family (Caffe's TestDtypesAndDevices, Chainer's inject_backend_tests).

A test module says which family it exercises with
``pytestmark = pytest.mark.family("pool")`` and takes the ``backend``
fixture; it then runs once per backend:
  numpy     the NumPy reference
  emu-fwd   the CUDA kernels on the emulator, threads resumed in order,
            guard pages after each buffer
  emu-rev   the same kernels, threads resumed in reverse, guard pages before
            each buffer, and at most two blocks per launch (grid-stride loops)
  emu-shuf  the same kernels, threads resumed in a shuffled order (seeded by the
            test's name), guard pages after each buffer, at most two blocks per
            launch, pointer arguments moved off each other's alignment
            (misalign=True: vector paths must test every pointer they use) and
            misaligned accesses, signed overflow, bad shifts (sanitize) and data
            races (race_check) reported
  cuda      the CUDA kernels on a GPU (only where CuPy sees one; marked gpu)
The race checks cost a kernel most of its speed (every load and store calls
the checker) and find the same races whatever the order (they follow the
barriers, not the schedule), so one configuration carries them; emulated
launches outside these backends check races too (race_check is the suite's
default, set in pytest_configure).
"""
from __future__ import annotations

import contextlib
import importlib
import zlib

import numpy as np
import pytest

import gpucnn
from gpucnn import backend as _backend
from gpucnn.cuda.launch import small_grid

# Tolerances by dtype, stated once. float32 results are compared with an
# independent float32 or float64 computation whose summation order differs.
class _ByDtype(dict):
    """Looked up by a dtype or a scalar type alike."""

    def __missing__(self, key):
        return dict.__getitem__(self, np.dtype(key))


TOL = _ByDtype({np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
                np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12)})


def tol(dtype) -> dict:
    return TOL[dtype]


def _has_kernels(family: str) -> bool:
    try:
        importlib.import_module(f"gpucnn.cuda.{family}")
        return True
    except ModuleNotFoundError:
        return False


def _backends_for(family: str | None):
    params = [pytest.param("numpy", id="numpy")]
    if family is None or not _has_kernels(family):
        return params
    params += [pytest.param(name, id=name) for name in ("emu-fwd", "emu-rev", "emu-shuf")]
    if _backend.available("cuda")[0]:
        params.append(pytest.param("cuda", id="cuda", marks=pytest.mark.gpu))
    return params


def pytest_addoption(parser):
    parser.addoption("--crosscheck-report", action="store_true",
                     help="print the PyTorch cross-checks run: cases, options, worst relative error")


def pytest_terminal_summary(terminalreporter, config):
    if config.getoption("--crosscheck-report"):
        import crosscheck
        terminalreporter.write_line("\nPyTorch CPU cross-checks\n" + crosscheck.report())


def pytest_configure(config):
    config.addinivalue_line("markers", "family(name): the op family a test module exercises")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU through CuPy")
    # Every emulated launch of the suite checks for data races (an instrumented build).
    from gpucnn.runtime.emulator import configure
    configure(race_check=True)


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("family")
        metafunc.parametrize("backend", _backends_for(marker.args[0] if marker else None),
                             indirect=True)


@contextlib.contextmanager
def _emulated(order: str, guard: str, shrink: bool, **more):
    ok, why = _backend.available("emulator")
    if not ok:
        pytest.skip(f"emulator unavailable: {why}")
    from gpucnn.runtime.emulator import emulation
    with gpucnn.use_backend("emulator"), emulation(resume_order=order, guard=guard, **more):
        with small_grid(2) if shrink else contextlib.nullcontext():
            yield


@pytest.fixture
def backend(request):
    """Run the test body on one backend; yields its name."""
    name = request.param
    if name == "numpy":
        ctx = gpucnn.use_backend("numpy")
    elif name == "emu-fwd":
        ctx = _emulated("forward", "end", shrink=False, race_check=False)
    elif name == "emu-rev":
        ctx = _emulated("reverse", "start", shrink=True, race_check=False)
    elif name == "emu-shuf":
        seed = zlib.crc32(request.node.nodeid.encode())
        ctx = _emulated("shuffle", "end", shrink=True, seed=seed, race_check=True, misalign=True, sanitize=True)
    else:
        ctx = gpucnn.use_backend("cuda")
    with ctx:
        yield name
