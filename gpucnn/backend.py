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


# Types that are never arrays (the scalars, flags and geometries of an op's
# arguments): their two failed hasattr cost ~0.5 us an argument.
_NOT_ARRAYS = frozenset({type(None), bool, int, float, str, tuple})
_KINDS: dict[type, bool] = {}  # array type -> whether it is CuPy's


def _kind(a) -> bool | None:
    """True for a CuPy array, False for another array (NumPy), None for a
    non-array. Remembered by type where shape and dtype are the type's own
    attributes (NumPy's and CuPy's descriptors), so every instance has them."""
    t = type(a)
    kind = _KINDS.get(t)
    if kind is not None:
        return kind
    if t in _NOT_ARRAYS or not (hasattr(a, "shape") and hasattr(a, "dtype")):
        return None
    kind = _is_cupy(a)
    if hasattr(t, "shape") and hasattr(t, "dtype"):
        _KINDS[t] = kind
    return kind


def _resolve(args) -> tuple[str, bool]:
    """(backend, whether CuPy arrays chose it), in one pass over ``args``."""
    cupy = numpy = False
    for a in args:
        kind = _kind(a)
        if kind is not None:
            cupy, numpy = cupy or kind, numpy or not kind
    if cupy and numpy:
        desc = ", ".join(f"{type(a).__module__}.{type(a).__name__} {tuple(a.shape)}" for a in _arrays(args))
        raise TypeError(f"arrays of one call must all be NumPy or all CuPy, got {desc}")
    if cupy:
        return "cuda", True
    name = current()
    if name != "numpy" and _selected.get() is None:
        require(name)  # selected by the environment variable: check once it is used
    return name, False


def resolve(args) -> str:
    """The backend for a call on ``args``: CuPy arrays pick "cuda"; NumPy
    and CuPy arrays may not be mixed in one call."""
    return _resolve(args)[0]


@functools.lru_cache(maxsize=None)
def _module(name: str):
    """The module ``name``, or None if there is none, imported once: the
    lookups cost ~5 us of host time a call."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def _family(family: str):
    """(the reference module, the CUDA launch module or None) of ``family``."""
    return _module(f"gpucnn.reference.{family}"), _module(f"gpucnn.cuda.{family}")


def _kernel_op(family: str, op: str):
    """The CUDA launch function for ``op``, or None while its kernels are not written."""
    kernels = _family(family)[1]
    return None if kernels is None else getattr(kernels, op, None)


def call(family: str, op: str, *args):
    """Run internal op ``family.op`` on the backend that ``args`` choose.

    Ops whose kernels are not written yet run on the NumPy reference on every
    backend (CuPy arrays are copied to the host and back). The functions are
    looked up at each call (tests replace them); the modules once.
    """
    name, on_device = _resolve(args)
    ref = getattr(_family(family)[0], op)
    if name == "numpy":
        return ref(*args)
    runtime, capture = _module("gpucnn.runtime"), _module("gpucnn.runtime.capture")
    rt = runtime.runtime_for(name)
    fn = _kernel_op(family, op)
    capture.note_op(f"{family}.{op}")
    if fn is None:
        capture.forbid(f"{family}.{op}", "it has no kernel yet and runs on the NumPy reference "
                       "(a copy to the host and back)")
        out = ref(*(rt.to_host(a) for a in args))
        return rt.from_host_like(out, args)
    if on_device:  # CuPy arrays: to_device and from_device_like would hand every argument and result back as is
        return fn(rt, *args)
    out = fn(rt, *(rt.to_device(a) for a in args))
    return rt.from_device_like(out, args)
