"""Where an array lives: the array module of an input and moves between
host and GPU. CuPy is imported only when a CuPy array or "cuda" is met, so
``gpucnn.nn`` imports with NumPy alone."""
from __future__ import annotations

import numpy as np

DEVICES = ("cpu", "cuda")


def is_cupy(a) -> bool:
    """Whether ``a`` is a CuPy array (checked without importing CuPy)."""
    return type(a).__module__.split(".")[0] == "cupy"


def xp_of(a):
    """numpy or cupy, whichever module made ``a``."""
    if is_cupy(a):
        import cupy
        return cupy
    return np


def to_device(a, device: str):
    """``a`` as a NumPy array ("cpu") or a CuPy array ("cuda")."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return a.get() if is_cupy(a) else np.asarray(a)
    from gpucnn import backend
    backend.require("cuda")
    import cupy
    return cupy.asarray(a)


def to_host(a) -> np.ndarray:
    """``a`` as a NumPy array (a copy from the GPU for a CuPy array)."""
    return to_device(a, "cpu")
