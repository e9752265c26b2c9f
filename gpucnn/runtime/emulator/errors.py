"""Exceptions of the kernel emulator.

Every message starts with the kernel's name; launch errors carry the block and
thread (``block``/``thread`` attributes, tuples or None) and, where known, the
source location ``location`` ("file.cu:LINE").
"""
from __future__ import annotations


class EmulatorError(Exception):
    """Base class of everything the emulator raises."""

    def __init__(self, message: str, *, kernel: str | None = None, block=None, thread=None,
                 location: str | None = None, argument: str | None = None, log: str | None = None):
        super().__init__(message)
        self.kernel, self.block, self.thread = kernel, block, thread
        self.location, self.argument, self.log = location, argument, log


class KernelBuildError(EmulatorError):
    """Preprocessing, translating or compiling the kernel text failed; ``log`` is g++'s output."""


class KernelNotFoundError(EmulatorError, AttributeError):
    """``get_function`` of a name that is not an ``extern "C" __global__`` kernel of the module."""


class KernelArgumentError(EmulatorError, TypeError):
    """An argument does not match the kernel's parameter (count, type, dtype, layout)."""


class LaunchConfigError(EmulatorError, ValueError):
    """Grid, block or shared-memory size outside CUDA's limits or the kernel's __launch_bounds__."""


class KernelFaultError(EmulatorError):
    """The kernel stopped: invalid memory access, arithmetic fault, __trap() or a failed assert."""


class OutOfBoundsError(KernelFaultError):
    """A memory access outside an argument's buffer (or to no buffer at all)."""


class ConstWriteError(OutOfBoundsError):
    """A write through a ``const`` pointer parameter."""


class BarrierError(EmulatorError):
    """__syncthreads() or a warp collective that would hang or be undefined on a GPU."""


class UnwrittenOutputError(EmulatorError):
    """Elements of an output (non-const pointer) argument that the launch never wrote."""


class RaceError(EmulatorError):
    """Two threads access a word, at least one writing, with nothing ordering them: a data race.
    ``block``/``thread``/``location`` name the later access, ``other_block``/``other_thread``/
    ``other_location`` the earlier one; ``address`` is the word's address in the emulator."""

    def __init__(self, message: str, *, other_block=None, other_thread=None, other_location=None,
                 address: int | None = None, **kw):
        super().__init__(message, **kw)
        self.other_block, self.other_thread, self.other_location = other_block, other_thread, other_location
        self.address = address


class MisalignedAccessError(KernelFaultError):
    """A load or store through a pointer that is not a multiple of its type's alignment
    (``address``, ``alignment``): a misaligned address error on a GPU."""

    def __init__(self, message: str, *, address: int | None = None, alignment: int | None = None, **kw):
        super().__init__(message, **kw)
        self.address, self.alignment = address, alignment


class UndefinedBehaviorError(KernelFaultError):
    """Undefined integer arithmetic found by ``sanitize``: signed overflow, a shift out of range."""
