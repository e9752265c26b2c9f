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
collectives naming exited or diverged lanes. The tensor-core primitives of
kernels/mma.cuh (mma.sync TF32, ldmatrix, cp.async, wgmma TF32) run as the
PTX ISA describes them (include/emu_mma.cpp): whole-warp collectives,
alignment checks, cp.async destinations that hold a NaN pattern until the
wait_group covering them, and wgmma deferred to its wgmma.wait_group (its
accumulators a NaN pattern until then, its shared-memory operands read then
through the descriptor's 128-byte swizzle: an overwrite in between shows).
Each warp of a warpgroup computes its own 16 rows of a wgmma; that all four
take part, and wgmma.fence's ordering of other writes to the accumulators,
are not checked. The emulated device reports compute capability
``compute_capability`` (80) and ``sm_count`` (132) multiprocessors
(``emulation`` / ``configure``).

Pointer parameters follow gpucnn's convention: ``const`` ones are inputs
(mapped read-only), the others are outputs, poisoned before the launch and
required to be fully written. A parameter that is read and written (a
scatter into a zeroed array) is declared with the marker ``GPUCNN_INOUT``
(``float* GPUCNN_INOUT __restrict__ x``; kernels define it empty for NVRTC
with ``#ifndef GPUCNN_INOUT``): it is copied in and neither poisoned nor
checked. ``emulation(poison=False)`` does the same for every argument.

Checked launches (``race_check``, ``misalign`` or ``sanitize`` on) run another
build of the module, instrumented by the compiler (GCC's -fsanitize=thread and
-fsanitize=alignment,signed-integer-overflow,shift interfaces, served by the
emulator's include/emu_check.cpp and emu_ubsan.cpp):
  * ``race_check``: a shadow record per element of every non-const argument and
    every shared variable. In shared memory, two accesses to a word by different
    threads of a block, at least one a write, with no ``__syncthreads()`` between
    them (for two lanes of a warp, no ``__syncwarp()`` or warp collective either)
    are a ``RaceError`` naming both threads and both file:lines; in global memory,
    so are two such accesses by different blocks of the launch. Atomics race
    only with plain writes; ``GPUCNN_INOUT`` arguments may be written twice (a
    scatter whose duplicate indices let one value win), not read and written.
    Races are found whatever the resume order: the checks follow the barriers,
    not the schedule. Two blocks' accesses are ordered, as in the PTX memory
    model, by a release (a ``__threadfence()`` then an atomic on a word, in one
    thread) and an acquire (a later atomic on that word, then a fence, in one
    thread of another block): what the releasing block did before its fence
    (that thread's accesses, and every thread's before a ``__syncthreads()``
    it passed) happens before what the acquiring block does after its fence
    (that thread's, and every thread's after a ``__syncthreads()`` that
    follows); the last-block reduction of kernels/channel.cuh, where a missing
    fence on either side is still a race (include/emu_check.cpp).
  * ``misalign``: pointer argument i (counting pointer arguments from 0) moves
    i elements off the alignment of the array it copies (the first keeps it, so
    an offset view such as ``x[1:]`` keeps its offset), and every access through
    a pointer not aligned to its type is a ``MisalignedAccessError`` (also
    checked, without moving pointers, under ``sanitize``).
  * ``sanitize``: signed integer overflow and out-of-range shifts are an
    ``UndefinedBehaviorError`` with file:line (a plain build wraps, as a GPU).
  * ``blocks=(...)``: only these blocks run (ints, negative from the last block,
    or (x, y, z)); arguments are mapped lazily, only the pages the launch touches
    cost memory, outputs are not poisoned and unwritten elements are not reported.
``traffic`` (``traffic.profile()``) runs the race checks' instrumented build to
count instead of check: each launch's warp requests per code site, as global
sectors and shared-memory wavefronts against the ideal (gpucnn.runtime.emulator.traffic).
Emulated primitives that move memory out of the instrumentation's sight
(cp.async's deferred copies) note their accesses with include/emu_race.h.

Not modelled (a kernel can pass here and still be wrong on a GPU):
  * races the checks cannot see: accesses inside const inputs (mapped
    read-only, so never written), races between two launches or streams,
    accesses to memory outside the arguments and shared variables, and
    conflicts lost because a shadow cell keeps one writer and two readers (a
    third reader is forgotten; a race with it goes unreported). Shadow cells
    are one element of the argument's dtype; in shared memory the element of
    the declared type (a class type: its alignment, at most 4 bytes), 2 bytes
    in dynamic shared memory, so threads writing neighbouring bytes of one cell
    are reported as racing. Hand-offs in chains (block A to B to C orders
    nothing from A to C here), through block-scoped atomics (``atomicAdd_block``
    orders as ``atomicAdd``) or through ``__syncwarp`` alone are not modelled.
    Plain launches check no races at all;
  * the memory model's visibility: every write is visible to every later read
    at once (blocks run one at a time), and a race is reported on the order
    of the accesses and the fences, not on what a read could have seen;
  * the GPU's numerics: fast-math intrinsics (``__expf``, ``__fdividef``...)
    are exact libm calls, no FMA contraction, no flush-to-zero; results agree
    with the GPU only to rounding;
  * the warp-scheduling model: threads of a warp are not in lockstep between
    collectives (each runs alone until it blocks), so code relying on implicit
    warp-synchronous execution without ``__syncwarp`` is not reproduced (the
    race checks report its shared-memory exchanges);
  * undefined behaviour other than signed overflow, shifts and misalignment
    (uninitialized registers, infinite loops, integer conversions that wrap);
  * out-of-bounds accesses within static or dynamic shared memory arrays other
    than past the end of dynamic shared memory, and reads of another buffer's
    memory far outside an argument (they fault as stray pointers or go unseen);
    with ``misalign``, reads up to 15 bytes past the end of a moved argument
    (its end no longer touches the guard page; writes there are still found).
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
        self._libs: dict[tuple, _build.Library] = {}  # by build flags: plain and checked builds
        self._lib = self.library(_settings.current().checks)
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

    def library(self, checks: int):
        """The build of this module serving the CHECK_* bits ``checks`` (compiled, or read from the cache, on first use)."""
        flags = _build.variant_flags(checks)
        if flags not in self._libs:
            self._libs[flags] = _build.build(self.code, self.options, flags)
        return self._libs[flags]

    def compile(self) -> None:
        """CuPy's RawModule.compile(): building already happened in the constructor."""
