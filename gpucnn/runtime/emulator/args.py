"""Argument checking against the compiled parameter types, the way CuPy marshals them.

A pointer parameter takes a C-contiguous NumPy array whose dtype is the pointee
type. A scalar parameter takes a NumPy scalar of exactly its type; CuPy passes
a Python int as int64 and a Python float as float64, so those are accepted only
where the GPU would read the same bytes (64-bit integers, double).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from .errors import KernelArgumentError


@dataclass(frozen=True)
class PType:
    pointer: bool
    const: bool
    kind: str   # f i u b (bool) x (void) o (other)
    size: int   # bytes of one element (of one lane for vectors)
    lanes: int  # 1, or the width of a CUDA vector type (float4: 4)

    @property
    def dtype(self) -> np.dtype | None:
        if self.kind == "b":
            return np.dtype(np.bool_)
        if self.kind in "fiu" and self.size in (1, 2, 4, 8):
            return np.dtype(f"{self.kind}{self.size}")
        return None


def decode(code: int) -> PType:
    return PType(bool(code >> 31 & 1), bool(code >> 30 & 1), chr(code >> 8 & 0xFF),
                 code & 0xFF, max(1, code >> 16 & 0xFF))


def _given(v) -> str:
    if isinstance(v, np.ndarray):
        layout = "" if v.flags.c_contiguous else ", not C-contiguous"
        return f"numpy array of dtype {v.dtype} (shape {v.shape}{layout})"
    if isinstance(v, np.generic):
        return f"numpy.{type(v).__name__} scalar"
    t = type(v)
    return f"Python {t.__name__}" if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _expected(p: PType) -> str:
    dt = p.dtype
    if p.pointer:
        if p.kind == "x":
            return "a C-contiguous numpy array (any dtype)"
        extra = f", size a multiple of {p.lanes} elements" if p.lanes > 1 else ""
        return f"a C-contiguous numpy array of dtype {dt}{extra}"
    also = " or Python int" if p.kind in "iu" and p.size == 8 else " or Python float" if dt == np.float64 else ""
    also = " or Python bool" if p.kind == "b" else also
    return f"a numpy.{dt.type.__name__} scalar{also}"


class Checked:
    """Arguments ready for the runtime: ``arrays`` maps parameter index -> array."""

    def __init__(self):
        self.arrays: dict[int, np.ndarray] = {}
        self.scalars: dict[int, ctypes.Array] = {}


def check(kernel: str, params: list, types: list[PType], args) -> Checked:
    if not isinstance(args, (tuple, list)):
        raise KernelArgumentError(f"{kernel}: args must be a tuple of arguments, got {_given(args)}",
                                  kernel=kernel)
    if len(args) != len(params):
        sig = ", ".join(decl for _, decl in params)
        raise KernelArgumentError(f"{kernel}: expected {len(params)} arguments ({sig}), got {len(args)}",
                                  kernel=kernel)
    out = Checked()
    for i, ((name, decl), p, v) in enumerate(zip(params, types, args)):
        where = f"{kernel}: argument #{i} '{name}' (parameter `{decl}`)"

        def fail(why: str = ""):
            return KernelArgumentError(f"{where}: expected {_expected(p)}, got {_given(v)}{why}",
                                       kernel=kernel, argument=name)

        if p.kind == "o" or (p.kind == "x" and not p.pointer) or (not p.pointer and p.lanes > 1):
            raise KernelArgumentError(f"{where}: the emulator cannot pass this parameter type", kernel=kernel,
                                      argument=name)
        if p.pointer:
            if not isinstance(v, np.ndarray):
                raise fail()
            if p.kind != "x" and v.dtype != p.dtype:
                raise fail()
            if not v.flags.c_contiguous:
                raise fail(" (make it contiguous with np.ascontiguousarray)")
            if not p.const and not v.flags.writeable:
                raise fail(" (the array is read-only but the parameter is not const)")
            if p.lanes > 1 and v.size % p.lanes:
                raise fail()
            out.arrays[i] = v
            continue
        dt = p.dtype
        if isinstance(v, np.generic):
            ok = v.dtype == dt
        elif isinstance(v, bool):
            ok = p.kind == "b"
        elif isinstance(v, int):
            ok = p.kind in "iu" and p.size == 8 and -(1 << 63) <= v < (1 << 64 if p.kind == "u" else 1 << 63)
        elif isinstance(v, float):
            ok = dt == np.float64
        else:
            ok = False
        if not ok:
            raise fail()
        raw = np.array(v).astype(dt) if not isinstance(v, np.generic) else np.array(v)
        out.scalars[i] = ctypes.create_string_buffer(raw.tobytes(), max(8, dt.itemsize))
    return out
