"""Math modes of the float32 convolution and linear kernels.

  "fp32"    FP32 arithmetic, no TF32 rounding: the FFMA kernels, and for 3x3
            convolutions at stride 1 (forward and backward-data) Winograd's
            F(2x2, 3x3) on FFMA (gpucnn.cuda.wino), whose transforms add and
            halve in fp32: its error stays within float32's tolerance of the
            sums' magnitudes, as cuDNN's fp32 Winograd algorithms
            (``GPUCNN_CONV_ALGO=gemm`` keeps the direct sums);
  "3xtf32"  tensor cores with each operand split into a TF32 high part and a
            TF32 remainder, three MMAs per product: fp32-level accuracy (a
            convolution GEMM that fills the FFMA tile far better takes it:
            gpucnn.cuda.algo.TC3_OVER_FFMA);
  "tf32"    tensor cores, one MMA per product on operands rounded to TF32
            (what PyTorch does by default for cuDNN convolutions).

Unset (None), the mode is the device's default: "3xtf32" on compute
capability 8.0 or newer, "fp32" before (no TF32 tensor cores). float64 keeps
its FP64 kernels and the NumPy backend computes in full precision in every
mode. ``math_mode`` scopes a mode to a ``with`` block (a context variable,
like ``use_backend``); ``set_math_mode`` sets it for the current context.
"""
from __future__ import annotations

import contextlib
import contextvars

MODES = ("fp32", "tf32", "3xtf32")
TC_MIN_CC = 80  # mma.sync with TF32 operands and cp.async: sm_80 and newer
_mode: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpucnn_math_mode", default=None)


def _check(mode):
    if mode is not None and mode not in MODES:
        raise ValueError(f"math mode must be one of {MODES} or None (the device's default), got {mode!r}")
    return mode


def set_math_mode(mode: str | None) -> None:
    """Select the math mode of float32 convolutions and linear layers (None: the device's default)."""
    _mode.set(_check(mode))


def get_math_mode() -> str | None:
    """The selected math mode, or None when the device's default applies."""
    return _mode.get()


@contextlib.contextmanager
def math_mode(mode: str | None):
    """Use math mode ``mode`` inside the block."""
    token = _mode.set(_check(mode))
    try:
        yield mode
    finally:
        _mode.reset(token)


def effective(compute_capability: int) -> str:
    """The mode float32 GEMMs run in on a device of ``compute_capability``
    (e.g. 80): the selected one, or the default; "fp32" where a selected
    tensor-core mode cannot run (before sm_80)."""
    mode = _mode.get()
    if compute_capability < TC_MIN_CC:
        return "fp32"
    return mode or "3xtf32"
