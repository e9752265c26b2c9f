"""Guarded copies of pointer arguments.

Each buffer is its own mapping: [PROT_NONE page][data pages][PROT_NONE page].
The data sit flush against one guard page (the upper one for guard="end", the
lower for "start") so an access just past that edge faults at once; the slack
on the other side is filled with a poison pattern and checked after the launch.
Mappings are pooled by size: launches are frequent and mmap/mprotect are not free.
"""
from __future__ import annotations

import ctypes
import mmap
import threading

import numpy as np

PAGE = mmap.PAGESIZE
_PROT_NONE, _PROT_READ, _PROT_RW = 0, 1, 3
_MAP_PRIVATE_ANON = 0x02 | 0x20
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

# Bit patterns that are NaN for floats and unlikely values for integers.
_PATTERN = {np.dtype(np.float32): 0x7FA5A5A5, np.dtype(np.float64): 0x7FF4A5A5A5A5A5A5}
_POOL: dict[int, list[int]] = {}  # data pages -> spare mapping bases
_POOL_BYTES = [0]
_POOL_LIMIT = 256 << 20
_pool_lock = threading.Lock()


def poison_value(dtype: np.dtype) -> tuple[np.dtype, int]:
    """(unsigned view dtype, poison integer) for elements of ``dtype``."""
    dtype = np.dtype(dtype)
    u = np.dtype(f"u{dtype.itemsize}") if dtype.itemsize in (1, 2, 4, 8) else np.dtype(np.uint8)
    return u, _PATTERN.get(dtype, int.from_bytes(b"\xA5" * u.itemsize, "little"))


def _protect(addr: int, n: int, prot: int) -> None:
    if _libc.mprotect(addr, n, prot) != 0:
        raise OSError(ctypes.get_errno(), "mprotect failed")


class Guarded:
    def __init__(self, nbytes: int, at_end: bool, elem: np.dtype, name: str):
        self.nbytes, self.elem, self.name, self.readonly = nbytes, np.dtype(elem), name, False
        self.data_pages = max(1, -(-nbytes // PAGE))
        self.total = (self.data_pages + 2) * PAGE
        with _pool_lock:
            spare = _POOL.get(self.data_pages)
            base = spare.pop() if spare else None
            if base is not None:
                _POOL_BYTES[0] -= self.total
        if base is None:
            base = _libc.mmap(None, self.total, _PROT_RW, _MAP_PRIVATE_ANON, -1, 0)
            if base in (None, ctypes.c_void_p(-1).value):
                raise MemoryError(f"mmap of {self.total} bytes for argument {name!r} failed")
            _protect(base, PAGE, _PROT_NONE)
            _protect(base + self.total - PAGE, PAGE, _PROT_NONE)
        self.base = base
        self.lo = base + PAGE
        self.hi = self.lo + self.data_pages * PAGE
        self.ptr = self.hi - nbytes if at_end else self.lo
        # Element view of all data pages: the data pointer is element-aligned
        # within them, so the slack holds whole elements too.
        self.u, self.pat = poison_value(self.elem)
        mem = np.frombuffer((ctypes.c_uint8 * (self.hi - self.lo)).from_address(self.lo), np.uint8)
        self.elems = mem.view(self.u)
        self.first = (self.ptr - self.lo) // self.u.itemsize
        self.count = nbytes // self.u.itemsize
        self.slack = (0, self.first) if at_end else (self.first + self.count, len(self.elems))
        self.elems[slice(*self.slack)] = self.pat

    def data(self) -> np.ndarray:
        return self.elems[self.first:self.first + self.count]

    def load(self, arr: np.ndarray) -> None:
        if self.nbytes:
            ctypes.memmove(self.ptr, arr.ctypes.data, self.nbytes)

    def poison_data(self) -> None:
        self.data()[:] = self.pat

    def make_readonly(self) -> None:
        self.readonly = True
        _protect(self.lo, self.data_pages * PAGE, _PROT_READ)

    def slack_damage(self) -> int | None:
        """Byte offset (relative to the data pointer) of the first overwritten slack element."""
        a, b = self.slack
        bad = np.flatnonzero(self.elems[a:b] != self.pat) if b > a else ()
        return None if len(bad) == 0 else (a + int(bad[0]) - self.first) * self.u.itemsize

    def unwritten(self) -> tuple[int, int]:
        """(count, first flat index) of elements that still hold the poison pattern."""
        hits = self.data() == self.pat
        count = int(np.count_nonzero(hits))
        return count, int(np.argmax(hits)) if count else -1

    def copy_to(self, arr: np.ndarray) -> None:
        if self.nbytes:
            ctypes.memmove(arr.ctypes.data, self.ptr, self.nbytes)

    def contains(self, addr: int) -> bool:
        return self.base <= addr < self.base + self.total

    def free(self) -> None:
        if not self.base:
            return
        base, self.base = self.base, 0
        self.elems = None
        if self.readonly:
            _protect(base + PAGE, self.data_pages * PAGE, _PROT_RW)
        with _pool_lock:
            keep = _POOL_BYTES[0] + self.total <= _POOL_LIMIT
            if keep:
                _POOL.setdefault(self.data_pages, []).append(base)
                _POOL_BYTES[0] += self.total
        if not keep:
            _libc.munmap(base, self.total)
