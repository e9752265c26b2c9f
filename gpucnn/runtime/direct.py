"""A kernel launch with its arguments packed by us (``GPUCNN_LAUNCH=driver``).

CuPy's ``RawKernel.__call__`` converts every argument at every launch (a
Python object an argument, NumPy scalars viewed through NumPy) before its
cuLaunchKernel: on the H200's host 7.9 us a launch with 4 arguments and
12.7-15.7 with 16-19 (gpu.sh step 2d, bench/results/gpu-2026-11-30-s21),
where the device time of a 33.6 MB reduction is ~10 us. ``DirectKernel``
lays the arguments out as cuLaunchKernel reads them instead: one 8-byte slot
an argument (an array's device pointer; a scalar's bytes as CuPy would pass
them: a NumPy scalar at its own size, a Python int as int64, a float as
double, None as a null pointer) in one buffer, with the array of pointers to
the slots (kernelParams) made once for a list of argument types; a launch
packs its values with one ``struct.pack_into`` and hands the buffer to the
kernel's driver:

- on CuPy, ``cupy.cuda.driver.launchKernel`` on the current stream (the
  driver copies the values at the launch, so one buffer serves the next);
- on the emulator, ``EmuKernel.launch_packed``, which reads each parameter
  back from the bytes at the size and type the compiler gives it, checks each
  pointer against the array passed, and runs the launch on the values read:
  CI runs this path through the same launch code.

Which path runs: ``GPUCNN_LAUNCH`` ("cupy", the default until a GPU's step 2d
says ours pays; "driver"), read at import, or ``use(path)`` around a block.
"""
from __future__ import annotations

import contextlib
import ctypes
import operator
import os
import struct
import threading

import numpy as np

PATHS = ("cupy", "driver")
SLOT = 8  # bytes an argument: every kernel parameter here is at most 8 bytes, aligned to its size
_CODES = {np.dtype(t): c for t, c in ((np.bool_, "?"), (np.int8, "b"), (np.int16, "h"), (np.int32, "i"),
                                       (np.int64, "q"), (np.uint8, "B"), (np.uint16, "H"), (np.uint32, "I"),
                                       (np.uint64, "Q"), (np.float16, "e"), (np.float32, "f"),
                                       (np.float64, "d"))}


def _path(value: str) -> str:
    if value not in PATHS:
        raise ValueError(f"GPUCNN_LAUNCH must be one of {', '.join(PATHS)}, got {value!r}")
    return value


PATH = _path(os.environ.get("GPUCNN_LAUNCH", "cupy"))


@contextlib.contextmanager
def use(path: str):
    """Launch through ``path`` ("cupy" or "driver") inside the block (one process-wide setting)."""
    global PATH
    before, PATH = PATH, _path(path)
    try:
        yield
    finally:
        PATH = before


def slot_code(t, array_type) -> tuple[str, bool]:
    """(struct code of a slot, whether it holds an array's pointer) for an argument of type t."""
    if issubclass(t, array_type):
        return "Q", True
    if t is type(None):
        return "Q", False
    if issubclass(t, np.generic) and np.dtype(t) in _CODES:
        code = _CODES[np.dtype(t)]
    elif issubclass(t, int):  # bool too: CuPy passes a Python bool as int64
        code = "q"
    elif t is float:
        code = "d"
    else:
        raise TypeError(f"direct launch: no kernel argument of type {t.__name__}")
    pad = SLOT - struct.calcsize("<" + code)
    return code + (f"{pad}x" if pad else ""), False


class Packer:
    """The kernelParams of launches whose arguments have the types ``types``: ``pack(args)``
    writes their values into the one buffer and returns the address of its pointer array.
    ``pointer_of(a)``: an array's device pointer (CuPy: a.data.ptr). One launch at a time:
    the driver copies the values at the launch, and the next pack overwrites them."""

    def __init__(self, types: tuple, array_type, pointer_of):
        codes = [slot_code(t, array_type) for t in types]
        self.struct = struct.Struct("<" + "".join(c for c, _ in codes))
        self.arrays = [i for i, (_, a) in enumerate(codes) if a]
        self.nones = [i for i, t in enumerate(types) if t is type(None)]  # null pointers
        self.pointer_of = pointer_of
        self.buf = (ctypes.c_uint64 * max(1, len(types)))()
        base = ctypes.addressof(self.buf)
        self.params = (ctypes.c_void_p * max(1, len(types)))(*(base + SLOT * i for i in range(len(types))))
        self.address = ctypes.addressof(self.params)

    def pack(self, args) -> int:
        vals = list(args)
        for i in self.arrays:
            vals[i] = self.pointer_of(vals[i])
        for i in self.nones:
            vals[i] = 0
        self.struct.pack_into(self.buf, 0, *vals)
        return self.address


def packer(args, array_type, pointer_of) -> Packer:
    return Packer(tuple(map(type, args)), array_type, pointer_of)


_cupy_pointer = operator.attrgetter("data.ptr")  # a CuPy array's device pointer (C's attribute reads)
_numpy_pointer = operator.attrgetter("ctypes.data")  # the emulator's: a NumPy array's address


def _dim3(d) -> tuple:
    return d if len(d) == 3 else (tuple(d) + (1, 1))[:3]


class DirectKernel:
    """``fn`` (a CuPy RawKernel or an EmuKernel) launched with our own argument packing, a
    Packer kept per list of argument types; called as CuPy's RawKernel is, from any thread. ``xp``: the
    runtime's array module (CuPy's ``ndarray``, ``cuda.driver.launchKernel`` and
    ``cuda.get_current_stream``; a stand-in's in bench/host_path.py's null runtime)."""

    def __init__(self, fn, xp):
        self.fn = fn
        self.packers: dict[tuple, Packer] = {}
        # A Packer's buffer holds one launch's values from its pack until the driver has copied them:
        # a thread's launch of this kernel may not pack over another's in between
        self.lock = threading.Lock()
        if hasattr(fn, "launch_packed"):  # the emulator's
            self.array_type, self.pointer_of, self.launch = np.ndarray, _numpy_pointer, self._emulated
        else:
            self.array_type, self.pointer_of, self.launch = xp.ndarray, _cupy_pointer, self._driver
            self.function = fn.kernel.ptr  # the CUfunction of the current device's module (Runtime.function's)
            self.launch_kernel, self.stream = xp.cuda.driver.launchKernel, xp.cuda.get_current_stream

    max_dynamic_shared_size_bytes = property(
        lambda self: self.fn.max_dynamic_shared_size_bytes,
        lambda self, n: setattr(self.fn, "max_dynamic_shared_size_bytes", n))

    def __call__(self, grid, block, args, *, shared_mem: int = 0):
        types = tuple(map(type, args))
        with self.lock:
            pk = self.packers.get(types)
            if pk is None:
                pk = self.packers[types] = Packer(types, self.array_type, self.pointer_of)
            self.launch(_dim3(grid), _dim3(block), shared_mem, pk.pack(args), args)

    def _driver(self, grid, block, shared_mem, params, args):
        self.launch_kernel(self.function, *grid, *block, shared_mem, self.stream().ptr, params, 0)

    def _emulated(self, grid, block, shared_mem, params, args):
        self.fn.launch_packed(grid, block, shared_mem, params, args)
