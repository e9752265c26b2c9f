"""Which implementation runs an op: the NumPy reference, the CUDA kernels on a
GPU through CuPy, or the same CUDA kernels on the CPU through the emulator.

Arrays choose first: CuPy arrays always run the CUDA kernels. NumPy arrays run
on the backend selected by ``use_backend`` (or ``GPUCNN_BACKEND``), "numpy" by
default; under "cuda" they are copied to the GPU and the results copied back,
so the caller gets the kind of array it gave.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os

BACKENDS = ("numpy", "emulator", "cuda")
_selected: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpucnn_backend", default=None)


class BackendUnavailable(RuntimeError):
    """A backend was asked for that cannot run on this machine."""


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def current() -> str:
    """The selected backend name for NumPy inputs."""
    name = _selected.get()
    if name is None:
        name = os.environ.get("GPUCNN_BACKEND", "numpy") or "numpy"
    return _check_name(name)


def available(name: str) -> tuple[bool, str]:
    """Whether backend ``name`` can run here, and if not, what is missing."""
    _check_name(name)
    if name == "numpy":
        return True, ""
    if name == "emulator":
        from gpucnn.runtime.emulator import emulator_available
        return emulator_available()
    from gpucnn.runtime import cupy_runtime
    return cupy_runtime.gpu_available()


def require(name: str) -> None:
    ok, why = available(name)
    if not ok:
        raise BackendUnavailable(f"backend {name!r} cannot run here: {why}")


@contextlib.contextmanager
def use_backend(name: str):
    """Run NumPy inputs on backend ``name`` inside the block."""
    require(_check_name(name))
    token = _selected.set(name)
    try:
        yield
    finally:
        _selected.reset(token)


def _is_cupy(a) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def _arrays(args):
    return [a for a in args if hasattr(a, "shape") and hasattr(a, "dtype")]


def resolve(args) -> str:
    """The backend for a call on ``args``: CuPy arrays pick "cuda"; NumPy
    and CuPy arrays may not be mixed in one call."""
    arrays = _arrays(args)
    kinds = {_is_cupy(a) for a in arrays}
    if len(kinds) > 1:
        desc = ", ".join(f"{type(a).__module__}.{type(a).__name__} {tuple(a.shape)}" for a in arrays)
        raise TypeError(f"arrays of one call must all be NumPy or all CuPy, got {desc}")
    if kinds == {True}:
        return "cuda"
    name = current()
    if name != "numpy" and _selected.get() is None:
        require(name)  # selected by the environment variable: check once it is used
    return name


@functools.lru_cache(maxsize=None)
def _module(name: str):
    """The module ``name``, or None if there is none, imported once: the
    lookups cost ~5 us of host time a call."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        return None


def _kernel_op(family: str, op: str):
    """The CUDA launch function for ``op``, or None while its kernels are not written."""
    mod = _module(f"gpucnn.cuda.{family}")
    return None if mod is None else getattr(mod, op, None)


def call(family: str, op: str, *args):
    """Run internal op ``family.op`` on the backend that ``args`` choose.

    Ops whose kernels are not written yet run on the NumPy reference on every
    backend (CuPy arrays are copied to the host and back).
    """
    name = resolve(args)
    ref = getattr(_module(f"gpucnn.reference.{family}"), op)
    if name == "numpy":
        return ref(*args)
    from gpucnn.runtime import capture, runtime_for
    rt = runtime_for(name)
    fn = _kernel_op(family, op)
    capture.note_op(f"{family}.{op}")
    if fn is None:
        capture.forbid(f"{family}.{op}", "it has no kernel yet and runs on the NumPy reference "
                       "(a copy to the host and back)")
        out = ref(*(rt.to_host(a) for a in args))
        return rt.from_host_like(out, args)
    out = fn(rt, *(rt.to_device(a) for a in args))
    return rt.from_device_like(out, args)
