"""Guarded copies of pointer arguments.

Each buffer is its own mapping: [PROT_NONE page][data pages][PROT_NONE page].
The data sit flush against one guard page (the upper one for guard="end", the
lower for "start") so an access just past that edge faults at once; the slack
on the other side is filled with a poison pattern and checked after the launch.
Mappings are pooled by size: launches are frequent and mmap/mprotect are not free.

``residue`` places the data pointer at that address modulo 16 (as near the
exact guard as it allows), so that a launch can reproduce or vary the
alignment a GPU pointer would have. A ``lazy`` buffer (huge tensors, of which a
launch with ``blocks`` touches a few pages) is mapped without reserving memory
and moves only the pages that are resident: copying in, those of the source
array; copying out, those the kernel touched.
"""
from __future__ import annotations

import ctypes
import mmap
import threading

import numpy as np

PAGE = mmap.PAGESIZE
_PROT_NONE, _PROT_READ, _PROT_RW = 0, 1, 3
_MAP_PRIVATE_ANON = 0x02 | 0x20 | 0x4000  # MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
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


def resident_runs(addr: int, nbytes: int) -> list[tuple[int, int]]:
    """(offset, length) runs of [addr, addr + nbytes) whose pages are in memory (mincore)."""
    if nbytes <= 0:
        return []
    lo = addr - addr % PAGE
    pages = -(-(addr + nbytes - lo) // PAGE)
    vec = np.zeros(pages, np.uint8)
    if _libc.mincore(lo, pages * PAGE, vec.ctypes.data) != 0:
        return [(0, nbytes)]  # not a mapping mincore understands: copy everything
    on = np.flatnonzero(np.diff(np.concatenate(([0], vec & 1, [0])).astype(np.int8)))
    runs = []
    for a, b in zip(on[::2], on[1::2]):
        start, end = max(addr, lo + int(a) * PAGE), min(addr + nbytes, lo + int(b) * PAGE)
        runs.append((start - addr, end - start))
    return runs


class Guarded:
    def __init__(self, nbytes: int, at_end: bool, elem: np.dtype, name: str, residue: int | None = None,
                 lazy: bool = False):
        self.nbytes, self.elem, self.name, self.readonly, self.lazy = nbytes, np.dtype(elem), name, False, lazy
        room = nbytes + (15 if residue is not None else 0)
        self.data_pages = max(1, -(-room // PAGE))
        self.total = (self.data_pages + 2) * PAGE
        with _pool_lock:
            spare = None if lazy else _POOL.get(self.data_pages)
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
        if residue is not None:
            residue -= residue % min(self.elem.itemsize, 16)  # the pointer stays element-aligned
            self.ptr = self.ptr - (self.ptr - residue) % 16 if at_end else self.lo + residue
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
        src = arr.ctypes.data
        for off, n in resident_runs(src, self.nbytes) if self.lazy else [(0, self.nbytes)]:
            ctypes.memmove(self.ptr + off, src + off, n)

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
        dst = arr.ctypes.data
        for off, n in resident_runs(self.ptr, self.nbytes) if self.lazy else [(0, self.nbytes)]:
            ctypes.memmove(dst + off, self.ptr + off, n)

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
            keep = not self.lazy and _POOL_BYTES[0] + self.total <= _POOL_LIMIT
            if keep:
                _POOL.setdefault(self.data_pages, []).append(base)
                _POOL_BYTES[0] += self.total
        if not keep:
            _libc.munmap(base, self.total)
