"""The runtime's failure reports (emu_internal.h's Report) as exceptions with self-explanatory messages."""
from __future__ import annotations

import ctypes
import functools
import shutil
import subprocess

from .build import INCLUDE
from .errors import (BarrierError, ConstWriteError, EmulatorError, KernelFaultError, MisalignedAccessError,
                     OutOfBoundsError, RaceError, UndefinedBehaviorError)

_OK, _FAULT, _BARRIER, _ARITH, _TRAP, _ASSERT, _INTERNAL, _RACE, _MISALIGNED, _UNDEFINED = range(10)


class Report(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("sig", ctypes.c_int), ("has_thread", ctypes.c_int),
                ("is_write", ctypes.c_int), ("block", ctypes.c_uint * 3), ("thread", ctypes.c_uint * 3),
                ("addr", ctypes.c_uint64), ("pc", ctypes.c_uint64), ("pc_off", ctypes.c_uint64),
                ("obj", ctypes.c_char * 512), ("msg", ctypes.c_char * 4096),
                ("block2", ctypes.c_uint * 3), ("thread2", ctypes.c_uint * 3), ("is_write2", ctypes.c_int),
                ("has_pc2", ctypes.c_int), ("pc2_off", ctypes.c_uint64), ("align", ctypes.c_uint64),
                ("arg", ctypes.c_int), ("site", ctypes.c_char * 256), ("site2", ctypes.c_char * 256),
                ("what", ctypes.c_char * 256)]


@functools.lru_cache(maxsize=4096)
def source_line(lib: str, offset: int) -> str | None:
    """file:line of a code offset in ``lib`` (innermost inlined frame first), via addr2line."""
    tool = shutil.which("addr2line")
    if not tool:
        return None
    out = subprocess.run([tool, "-f", "-i", "-C", "-e", lib, hex(offset)], capture_output=True, text=True).stdout
    # Every other line is a location, innermost inlined frame first. The entry
    # shim and cuda_emu.h's helpers appear in many reports: leave them out.
    locs = [loc.split(" (discriminator")[0] for loc in out.strip().splitlines()[1::2]]
    locs = [loc for loc in locs if not loc.startswith("??") and "<gpucnn-emulator-shims>" not in loc
            and not loc.startswith(str(INCLUDE))]
    if not locs:
        return None
    return locs[0] + (f" (called from {', '.join(locs[1:])})" if len(locs) > 1 else "")


def _text(raw: bytes) -> str:
    return raw.decode(errors="replace")


class Failure:
    """One failed launch: the report plus what is needed to explain it."""

    def __init__(self, kernel: str, lib: str, rep: Report, bufs: dict, smem, launch: dict):
        self.name, self.lib, self.rep, self.bufs, self.smem = kernel, lib, rep, bufs, smem
        # launch: shared_mem (bytes), block (3 ints), misalign (bool), stack ((lo, hi) of the fiber stacks)
        self.launch = launch
        self.blk = tuple(rep.block)
        self.thr = tuple(rep.thread) if rep.has_thread else None
        self.who = f"block {self.blk}" + (f" thread {self.thr}" if self.thr else "")
        self.loc = _text(rep.site) or self._pc_location()
        self.kw = dict(kernel=kernel, block=self.blk, thread=self.thr, location=self.loc)
        self.at = f" at {self.loc}" if self.loc else ""

    def _pc_location(self) -> str | None:
        rep = self.rep
        if not rep.pc:
            return None
        obj = _text(rep.obj)
        return (source_line(obj, rep.pc_off) if obj == self.lib else None) or f"{obj}+{rep.pc_off:#x}"

    def where(self, addr: int) -> tuple[str | None, object]:
        """("argument #i 'x' ... byte offset ...", buffer) for an address in an argument or dynamic shared memory."""
        for i, buf in list(self.bufs.items()) + [(None, self.smem)]:
            if buf is None or not buf.contains(addr):
                continue
            what = (f"argument #{i} '{buf.name}'" if i is not None
                    else f"dynamic shared memory ({self.launch['shared_mem']} bytes)")
            return what, buf
        return None, None

    def error(self) -> EmulatorError:
        code, k, msg = self.rep.code, self.name, _text(self.rep.msg)
        if code == _BARRIER:
            return BarrierError(f"{k}: {msg}", **self.kw)
        if code == _ASSERT:
            return KernelFaultError(f"{k}: {self.who}: {msg}", **self.kw)
        if code == _ARITH:
            return KernelFaultError(f"{k}: arithmetic exception (integer division by zero?) in {self.who}{self.at}",
                                    **self.kw)
        if code == _TRAP:
            return KernelFaultError(f"{k}: __trap() or illegal instruction in {self.who}{self.at}", **self.kw)
        if code == _RACE:
            return self._race()
        if code == _MISALIGNED:
            return self._misaligned(msg)
        if code == _UNDEFINED:
            return UndefinedBehaviorError(f"{k}: undefined behaviour in {self.who}{self.at}: {msg} "
                                          f"(found by sanitize=True)", **self.kw)
        if code == _INTERNAL and msg:
            return EmulatorError(f"{k}: {msg}", **self.kw)
        if code != _FAULT:
            return EmulatorError(f"{k}: internal emulator fault (signal {self.rep.sig}) outside kernel code{self.at}",
                                 **self.kw)
        return self._fault()

    def _race(self) -> RaceError:
        rep, k = self.rep, self.name
        blk2, thr2 = tuple(rep.block2), tuple(rep.thread2)
        loc2 = _text(rep.site2) or (source_line(self.lib, rep.pc2_off) if rep.has_pc2 else None) or "?"
        if rep.arg >= 0:
            buf = self.bufs[rep.arg]
            rel = rep.addr - buf.ptr
            word = (f"argument #{rep.arg} '{buf.name}' (global memory, byte offset {rel}, element "
                    f"{rel // buf.elem.itemsize})")
        else:
            word = f"__shared__ {_text(rep.what)}"
        acc = ("write" if rep.is_write else "read", "write" if rep.is_write2 else "read")
        if blk2 != self.blk:
            why = ("different blocks of one launch touch the same word, at least one writing, without atomics; "
                   "blocks run in no defined order")
        else:
            why = ("nothing orders them: a __syncthreads() is missing between the two accesses"
                   + (" (or, within a warp, a __syncwarp())" if self._same_warp(thr2) else ""))
        return RaceError(f"{k}: data race on {word}: {acc[0]} by block {self.blk} thread {self.thr} at "
                         f"{self.loc or '?'} and earlier {acc[1]} by block {blk2} thread {thr2} at {loc2}; {why}",
                         other_block=blk2, other_thread=thr2, other_location=loc2, address=rep.addr, **self.kw)

    def _same_warp(self, thr2) -> bool:
        bx, by = self.launch['block'][0], self.launch['block'][1]
        lin = [t[0] + bx * (t[1] + by * t[2]) for t in (self.thr, thr2)]
        return lin[0] // 32 == lin[1] // 32

    def _misaligned(self, msg: str) -> MisalignedAccessError:
        rep, k = self.rep, self.name
        addr, align = rep.addr, rep.align
        what, buf = self.where(addr)
        inside = ""
        if buf is not None:
            inside = (f" = {what} + {addr - buf.ptr} bytes (the argument's pointer is {buf.ptr % 16} mod 16"
                      f"{', shifted by misalign=True' if self.launch['misalign'] else ''})")
        return MisalignedAccessError(
            f"{k}: {msg} at address {addr:#x}{inside}, which requires {align}-byte alignment (address mod {align} = "
            f"{addr % align}) in {self.who}{self.at}; on a GPU this is a misaligned address error: test every "
            f"pointer a vector path uses", address=addr, alignment=align, **self.kw)

    def _fault(self) -> EmulatorError:
        rep, k = self.rep, self.name
        access = "write" if rep.is_write else "read"
        addr = rep.addr
        what, buf = self.where(addr)
        if buf is not None:
            rel = addr - buf.ptr
            item = buf.elem.itemsize
            if 0 <= rel < buf.nbytes and rep.is_write and buf.readonly:
                return ConstWriteError(f"{k}: write through const pointer {what} at byte offset {rel} "
                                       f"(element {rel // item}) in {self.who}{self.at}", argument=buf.name, **self.kw)
            side = (f"{-rel} bytes before the start" if rel < 0 else f"{rel - buf.nbytes} bytes past the end")
            return OutOfBoundsError(f"{k}: out-of-bounds {access} {side} of {what} (size {buf.nbytes} bytes, "
                                    f"element index {rel // item}) in {self.who}{self.at}", argument=buf.name,
                                    **self.kw)
        lo, hi = self.launch['stack']
        if lo - (1 << 20) <= addr < hi:  # a big frame may land below the lowest guard
            return KernelFaultError(f"{k}: stack overflow (256 KiB per emulated thread) in {self.who}{self.at}",
                                    **self.kw)
        hint = (" A general-protection fault reports address 0x0: a misaligned vector access does that; run with "
                "misalign=True or sanitize=True to have it checked." if addr == 0 else "")
        return OutOfBoundsError(f"{k}: invalid {access} of address {addr:#x}, which is in no argument buffer "
                                f"(null or stray pointer?) in {self.who}{self.at}.{hint}", **self.kw)
