"""Argument checks and normalization shared by every public function.

Each check raises TypeError or ValueError naming the argument and the shapes
involved, before anything is computed.
"""
from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _is_int(v) -> bool:
    # type(v) is int first: the ABC check alone took ~1 us, ten times a call
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


def pair(name: str, v, *, minimum: int | None = None) -> tuple[int, int]:
    """An int, a one-element tuple or a pair of ints, as torch's ``_pair``."""
    vals = (v, v) if _is_int(v) else tuple(v) if isinstance(v, (tuple, list)) else None
    if vals is not None and len(vals) == 1:
        vals = vals * 2
    if vals is None or len(vals) != 2 or not all(_is_int(a) for a in vals):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    vals = (int(vals[0]), int(vals[1]))
    if minimum is not None and min(vals) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return vals


def padding(name: str, v, *, four: bool = True) -> tuple[int, int, int, int]:
    """Padding as (top, bottom, left, right) from an int, a pair (ph, pw) or,
    where ``four`` allows it, four ints (MatConvNet's asymmetric padding)."""
    if four and isinstance(v, (tuple, list)) and len(v) == 4:
        if not all(_is_int(a) for a in v):
            raise TypeError(f"{name} must hold ints, got {v!r}")
        t, b, l, r = (int(a) for a in v)
    else:
        try:
            ph, pw = pair(name, v)
        except TypeError:
            what = ("an int, a pair or four ints (top, bottom, left, right)" if four
                    else "an int or a pair")
            raise TypeError(f"{name} must be {what}, got {v!r}") from None
        t, b, l, r = ph, ph, pw, pw
    if min(t, b, l, r) < 0:
        raise ValueError(f"{name} must be non-negative, got {v!r}")
    return t, b, l, r


def array(name: str, a, ndim=None):
    """A floating-point array of the given ndim (an int or a tuple of ints).

    NumPy and CuPy arrays pass as they are. Other libraries' arrays (PyTorch,
    JAX, ...) come in through DLPack without a copy where the producer allows
    one: a CPU tensor as a NumPy array, a CUDA tensor as a CuPy array (CuPy
    is imported only then), so the op runs, and returns, as for that kind.
    """
    if not isinstance(a, np.ndarray) and type(a).__module__.split(".")[0] != "cupy":
        if hasattr(a, "__dlpack__") and hasattr(a, "__dlpack_device__"):
            a = _from_dlpack(name, a)
        elif isinstance(a, (list, tuple, numbers.Number)):
            a = np.asarray(a)
        elif not hasattr(a, "__array_namespace__"):
            raise TypeError(f"{name} must be a numpy or cupy array, or support DLPack, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {a.dtype} (shape {tuple(a.shape)})")
    if ndim is not None:
        ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in ndims:
            want = " or ".join(f"{d}-D" for d in ndims)
            raise ValueError(f"{name} must be {want}, got shape {tuple(a.shape)}")
    return a


_DLPACK_CPU, _DLPACK_CUDA, _DLPACK_CUDA_MANAGED = 1, 2, 13


def _from_dlpack(name: str, a):
    """A DLPack producer as a NumPy (CPU) or CuPy (CUDA) array sharing its memory."""
    device = a.__dlpack_device__()[0]
    what = f"{name} ({type(a).__module__}.{type(a).__name__})"
    try:
        if device == _DLPACK_CPU:
            return np.from_dlpack(a)
        if device in (_DLPACK_CUDA, _DLPACK_CUDA_MANAGED):
            try:
                import cupy
            except ImportError as e:
                raise TypeError(f"{what} is a CUDA array; taking it needs CuPy ({e})") from None
            return cupy.from_dlpack(a)
    except (BufferError, RuntimeError, ValueError) as e:  # e.g. a torch tensor requiring grad
        raise TypeError(f"{what} could not be taken through DLPack: {e}") from e
    raise TypeError(f"{what} lives on DLPack device type {device}; only CPU and CUDA arrays are taken")


def batched(name: str, a):
    """A (C, H, W) or (N, C, H, W) array as (N, C, H, W), and whether it came
    unbatched (a batch of one is added, as torch does for unbatched inputs)."""
    a = array(name, a, (3, 4))
    return (a[None], True) if a.ndim == 3 else (a, False)


def like(name: str, a, unbatched: bool):
    """An array that must be batched exactly when x is, as (N, ...)."""
    want = 3 if unbatched else 4
    a = array(name, a)
    if a.ndim != want:
        raise ValueError(f"{name} must be {want}-D, since x is {'un' if unbatched else ''}batched "
                         f"({want}-D), got shape {tuple(a.shape)}")
    return a[None] if unbatched else a


def unbatch(a, unbatched: bool):
    """Drop the batch axis that ``batched`` added (a may be None)."""
    return a[0] if unbatched and a is not None else a


def same_dtype(**arrays) -> None:
    """All given (non-None) arrays share one dtype (compared in one pass, no
    sets or dicts built unless they do not: 0.6 -> 0.3 us a call)."""
    first = None
    for v in arrays.values():
        if v is not None:
            if first is None:
                first = v.dtype
            elif v.dtype != first:
                _dtype_mismatch(arrays)


def _dtype_mismatch(arrays) -> None:
    desc = ", ".join(f"{k}: {v.dtype} {tuple(v.shape)}" for k, v in arrays.items() if v is not None)
    raise TypeError(f"arrays must share one dtype, got {desc}")


def shape_is(name: str, a, shape: tuple, why: str = "") -> None:
    if tuple(a.shape) != tuple(shape):
        extra = f" ({why})" if why else ""
        raise ValueError(f"{name} must have shape {tuple(shape)}{extra}, got {tuple(a.shape)}")


def flag(name: str, v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {v!r}")
    return bool(v)


def number(name: str, v) -> float:
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    return float(v)


def window_fits(what: str, x_shape, kernel, pad, dilation) -> None:
    """The dilated kernel must fit inside the padded input."""
    H, W = x_shape[-2:]
    (kh, kw), (dh, dw) = kernel, dilation
    t, b, l, r = pad
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if eh > H + t + b or ew > W + l + r:
        raise ValueError(
            f"{what}: kernel {kh}x{kw} (dilated {eh}x{ew}) is larger than the padded input "
            f"{H + t + b}x{W + l + r} (input shape {tuple(x_shape)}, padding {pad})")
