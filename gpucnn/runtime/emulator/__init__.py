"""Run gpucnn's CUDA kernel text on the CPU, with CuPy's RawModule interface.

``EmuModule(code, options)`` preprocesses the text, rewrites the few constructs a
header cannot express (``__shared__`` declarations), compiles it as C++20 with
g++ against ``include/cuda_emu.h`` and loads the shared library (cached on disk
by content hash in ``$GPUCNN_CACHE_DIR`` or ``~/.cache/gpucnn/emulator``).
``mod.get_function(name)(grid, block, args, shared_mem=0)`` launches it.

Each block's threads are cooperative fibers that run until ``__syncthreads()``,
a warp collective (shuffle, vote, ``__syncwarp``) or their end; the order they
resume in is "forward", "reverse" or seeded "shuffle" (``emulation`` /
``configure``), so a missing barrier changes results. Checked on every launch:
argument types and dtypes (as CuPy would marshal them), CUDA's launch limits
and ``__launch_bounds__``, out-of-bounds accesses (guard pages, exact on one
side of each buffer, chosen by ``guard``), writes through ``const`` pointers,
output elements never written (outputs are poisoned with NaN patterns; shared
memory too, before each block), barriers that would hang or diverge, and warp
collectives naming exited or diverged lanes.

Pointer parameters follow gpucnn's convention: ``const`` ones are inputs
(mapped read-only), the others are outputs, poisoned before the launch and
required to be fully written. A parameter that is read and written (a
scatter into a zeroed array) is declared with the marker ``GPUCNN_INOUT``
(``float* GPUCNN_INOUT __restrict__ x``; kernels define it empty for NVRTC
with ``#ifndef GPUCNN_INOUT``): it is copied in and neither poisoned nor
checked. ``emulation(poison=False)`` does the same for every argument.

Not modelled (a kernel can pass here and still be wrong on a GPU):
  * races between blocks: blocks run one after another, in order, and atomics
    are trivially atomic, so inter-block races and missing atomics go unseen;
  * memory fences and the memory model: ``__threadfence*`` only orders the
    compiler, and every write is visible to every later read at once;
  * the GPU's numerics: fast-math intrinsics (``__expf``, ``__fdividef``...)
    are exact libm calls, no FMA contraction, no flush-to-zero; results agree
    with the GPU only to rounding;
  * the warp-scheduling model: threads of a warp are not in lockstep between
    collectives (each runs alone until it blocks), so code relying on implicit
    warp-synchronous execution without ``__syncwarp`` is not reproduced;
  * out-of-bounds accesses within static or dynamic shared memory arrays other
    than past the end of dynamic shared memory, and reads of another buffer's
    memory far outside an argument (they fault as stray pointers or go unseen).
"""
from __future__ import annotations

from . import build as _build
from . import settings as _settings
from .errors import (BarrierError, ConstWriteError, EmulatorError, KernelArgumentError, KernelBuildError,
                     KernelFaultError, KernelNotFoundError, LaunchConfigError, MisalignedAccessError,
                     OutOfBoundsError, RaceError, UndefinedBehaviorError, UnwrittenOutputError)
from .launch import EmuKernel
from .settings import Settings, configure, emulation

__all__ = ["EmuModule", "EmuKernel", "emulation", "configure", "emulator_available", "Settings",
           "EmulatorError", "KernelBuildError", "KernelArgumentError", "LaunchConfigError", "OutOfBoundsError",
           "ConstWriteError", "BarrierError", "UnwrittenOutputError", "KernelNotFoundError", "KernelFaultError",
           "RaceError", "MisalignedAccessError", "UndefinedBehaviorError"]


def emulator_available() -> tuple[bool, str]:
    """(True, "ok"), or (False, why) when kernels cannot be built here (no C++ compiler, not x86-64 Linux)."""
    return _build.available()


class EmuModule:
    """CuPy ``RawModule``-like: the ``extern "C" __global__`` kernels of ``code``."""

    def __init__(self, code: str, options: tuple = ()):
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        self.code, self.options = code, tuple(options)
        checked = _settings.current().checks != 0
        self._libs = {checked: _build.build(code, self.options, checked)}  # plain and checked builds
        self._lib = self._libs[checked]
        self._meta = {k["name"]: k for k in self._lib.kernels}
        self._kernels: dict[str, EmuKernel] = {}

    @property
    def kernel_names(self) -> list[str]:
        return list(self._meta)

    def get_function(self, name: str) -> EmuKernel:
        if name not in self._kernels:
            if name not in self._meta:
                have = ", ".join(self._meta) or "none"
                raise KernelNotFoundError(f"{name}: no extern \"C\" __global__ kernel of that name in this "
                                          f"module (kernels: {have})", kernel=name)
            self._kernels[name] = EmuKernel(self, self._lib, self._meta[name])
        return self._kernels[name]

    def library(self, checked: bool):
        """The plain or the instrumented build of this module (compiled, or read from the cache, on first use)."""
        if checked not in self._libs:
            self._libs[checked] = _build.build(self.code, self.options, checked)
        return self._libs[checked]

    def compile(self) -> None:
        """CuPy's RawModule.compile(): building already happened in the constructor."""
