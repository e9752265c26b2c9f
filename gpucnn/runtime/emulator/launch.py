"""One kernel of an EmuModule: checks a launch, runs it, turns reports into exceptions."""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import shutil
import subprocess
import threading

import numpy as np

from . import args as argmod
from . import settings
from .buffers import Guarded
from .build import INCLUDE
from .errors import (BarrierError, ConstWriteError, KernelFaultError, LaunchConfigError, OutOfBoundsError,
                     UnwrittenOutputError, EmulatorError)

MAX_THREADS, MAX_BLOCK, MAX_GRID = 1024, (1024, 1024, 64), (2**31 - 1, 65535, 65535)
MAX_SMEM = 48 * 1024  # per block without opting in (static, or dynamic by default)
MAX_SMEM_OPTIN = 227 * 1024  # what max_dynamic_shared_size_bytes may allow (an H100's per-block limit)
_LOCK = threading.Lock()  # one launch at a time: the signal handlers are process-wide
_OK, _FAULT, _BARRIER, _ARITH, _TRAP, _ASSERT = range(6)
# gpucnn.runtime.capture records launches instead of running them (a CUDA graph's stream capture).
_hook: contextvars.ContextVar = contextvars.ContextVar("gpucnn_emu_launch_hook", default=None)


@contextlib.contextmanager
def launch_hook(hook):
    """Inside the block, a checked launch calls ``hook(kernel, grid, block, args, shared_mem)``
    instead of running."""
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)


class _Spec(ctypes.Structure):
    _fields_ = [("shim", ctypes.c_void_p), ("args", ctypes.c_void_p), ("grid", ctypes.c_uint * 3),
                ("block", ctypes.c_uint * 3), ("dyn_size", ctypes.c_uint64), ("dyn_ptr", ctypes.c_void_p),
                ("owner", ctypes.c_int), ("order", ctypes.c_int), ("seed", ctypes.c_uint64)]


class _Report(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("sig", ctypes.c_int), ("has_thread", ctypes.c_int),
                ("is_write", ctypes.c_int), ("block", ctypes.c_uint * 3), ("thread", ctypes.c_uint * 3),
                ("addr", ctypes.c_uint64), ("pc", ctypes.c_uint64), ("pc_off", ctypes.c_uint64),
                ("obj", ctypes.c_char * 512), ("msg", ctypes.c_char * 4096)]


@functools.lru_cache(maxsize=4096)
def source_line(lib: str, offset: int) -> str | None:
    """file:line of a code offset in ``lib`` (innermost inlined frame first), via addr2line."""
    tool = shutil.which("addr2line")
    if not tool:
        return None
    out = subprocess.run([tool, "-f", "-i", "-C", "-e", lib, hex(offset)], capture_output=True, text=True).stdout
    # Every other line is a location, innermost inlined frame first. The entry
    # shim and cuda_emu.h's call helper appear in every report: leave them out.
    locs = [loc.split(" (discriminator")[0] for loc in out.strip().splitlines()[1::2]]
    locs = [loc for loc in locs if not loc.startswith("??") and "<gpucnn-emulator-shims>" not in loc
            and not loc.startswith(str(INCLUDE))]
    if not locs:
        return None
    return locs[0] + (f" (called from {', '.join(locs[1:])})" if len(locs) > 1 else "")


def _dims(what: str, v, kernel: str) -> tuple[int, int, int]:
    t = (v,) if not isinstance(v, (tuple, list)) else tuple(v)
    if not 1 <= len(t) <= 3 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in t):
        raise LaunchConfigError(f"{kernel}: {what} must be an int or a tuple of 1 to 3 ints, got {v!r}",
                                kernel=kernel)
    t = tuple(int(d) for d in t) + (1,) * (3 - len(t))
    if min(t) < 1:
        raise LaunchConfigError(f"{kernel}: {what} dimensions must be >= 1, got {t}", kernel=kernel)
    return t


class EmuKernel:
    def __init__(self, module, lib, meta: dict):
        self.module, self._lib, self.name = module, lib, meta["name"]
        self.params = [tuple(p) for p in meta["params"]]
        self._owner = meta["owner"]
        self.inout = {i for i, flag in enumerate(meta.get("inout", ())) if flag}
        self._shim = ctypes.cast(getattr(lib.lib, f"gpucnn_shim_{self.name}"), ctypes.c_void_p).value
        types = getattr(lib.lib, f"gpucnn_types_{self.name}")
        types.restype = ctypes.POINTER(ctypes.c_uint32)
        codes = types()
        if codes[0] != len(self.params):
            raise EmulatorError(f"{self.name}: parsed {len(self.params)} parameters but the compiler sees "
                                f"{codes[0]}; the signature is too unusual for the emulator", kernel=self.name)
        self.types = [argmod.decode(codes[i + 1]) for i in range(codes[0])]
        self.launch_bounds = int(getattr(lib.lib, f"gpucnn_lb_{self.name}")()) or None
        smem = lib.lib.gpucnn_static_smem
        smem.restype, smem.argtypes = ctypes.c_uint64, [ctypes.c_int]
        self.static_shared_mem = int(smem(self._owner))
        self._max_dynamic = MAX_SMEM - self.static_shared_mem

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        """CuPy's Function attribute: the dynamic shared memory a launch may ask for."""
        return self._max_dynamic

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, n: int) -> None:
        if not isinstance(n, (int, np.integer)) or n < 0 or self.static_shared_mem + n > MAX_SMEM_OPTIN:
            raise LaunchConfigError(f"{self.name}: max_dynamic_shared_size_bytes={n!r} with {self.static_shared_mem} "
                                    f"bytes of static shared memory exceeds the {MAX_SMEM_OPTIN}-byte limit",
                                    kernel=self.name)
        self._max_dynamic = int(n)

    def __repr__(self):
        return f"<EmuKernel {self.name}({', '.join(d for _, d in self.params)})>"

    def _config(self, grid, block, shared_mem):
        k = self.name
        g, b = _dims("grid", grid, k), _dims("block", block, k)
        if any(d > m for d, m in zip(b, MAX_BLOCK)) or b[0] * b[1] * b[2] > MAX_THREADS:
            raise LaunchConfigError(f"{k}: block {b} exceeds CUDA's limits (at most {MAX_THREADS} threads, "
                                    f"dimensions at most {MAX_BLOCK})", kernel=k)
        if any(d > m for d, m in zip(g, MAX_GRID)):
            raise LaunchConfigError(f"{k}: grid {g} exceeds CUDA's limits {MAX_GRID}", kernel=k)
        n = b[0] * b[1] * b[2]
        if self.launch_bounds and n > self.launch_bounds:
            raise LaunchConfigError(f"{k}: block {b} has {n} threads but the kernel declares "
                                    f"__launch_bounds__({self.launch_bounds})", kernel=k)
        if not isinstance(shared_mem, (int, np.integer)) or isinstance(shared_mem, bool) or shared_mem < 0:
            raise LaunchConfigError(f"{k}: shared_mem must be a non-negative int, got {shared_mem!r}", kernel=k)
        if shared_mem > self._max_dynamic:
            raise LaunchConfigError(f"{k}: {self.static_shared_mem} bytes of static and {shared_mem} bytes of "
                                    f"dynamic shared memory exceed the {self.static_shared_mem + self._max_dynamic}"
                                    f"-byte limit (max_dynamic_shared_size_bytes={self._max_dynamic})", kernel=k)
        return g, b

    def __call__(self, grid, block, args, *, shared_mem: int = 0, stream=None,
                 enable_cooperative_groups: bool = False):
        g, b = self._config(grid, block, shared_mem)
        checked = argmod.check(self.name, self.params, self.types, args)
        hook = _hook.get()
        if hook is not None:
            hook(self, grid, block, tuple(args), shared_mem)
            return
        cfg = settings.current()
        bufs: dict[int, Guarded] = {}
        smem = None
        try:
            for i, arr in checked.arrays.items():
                p = self.types[i]
                elem = p.dtype if p.dtype is not None else np.dtype(np.uint8)
                buf = bufs[i] = Guarded(arr.nbytes, cfg.guard == "end", elem, self.params[i][0])
                if p.const or not cfg.poison or i in self.inout:
                    buf.load(arr)
                else:
                    buf.poison_data()
                if p.const:
                    buf.make_readonly()
            smem = Guarded(-(-int(shared_mem) // 16) * 16, True, np.dtype(np.float32), "<dynamic shared memory>")
            holders = [None] * len(self.params)
            for i, buf in bufs.items():
                holders[i] = ctypes.c_void_p(buf.ptr)
            for i, raw in checked.scalars.items():
                holders[i] = raw
            argv = (ctypes.c_void_p * max(1, len(holders)))(*[ctypes.addressof(h) for h in holders])
            spec = _Spec(self._shim, ctypes.addressof(argv), (ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b),
                         smem.nbytes, smem.ptr, self._owner, settings.ORDERS[cfg.resume_order], cfg.seed)
            rep = _Report()
            with _LOCK:
                rc = self._lib.lib.gpucnn_launch(ctypes.byref(spec), ctypes.byref(rep))
            if rc != _OK:
                raise self._error(rep, bufs, smem, g, b, shared_mem)
            self._check_outputs(checked, bufs, g, b, cfg)
        finally:
            for buf in bufs.values():
                buf.free()
            if smem is not None:
                smem.free()

    def _check_outputs(self, checked, bufs, g, b, cfg):
        k = self.name
        for i, buf in bufs.items():
            off = buf.slack_damage()
            if off is not None:
                side = f"{-off} bytes before the start" if off < 0 else f"{off - buf.nbytes} bytes past the end"
                raise OutOfBoundsError(
                    f"{k}: a write landed {side} of argument #{i} '{buf.name}' ({buf.nbytes} bytes) "
                    f"(found after the launch in the poisoned slack, so the thread is unknown; "
                    f"try guard={'start' if cfg.guard == 'end' else 'end'!r} to catch it as it happens)",
                    kernel=k, argument=buf.name)
        for i, buf in bufs.items():
            if self.types[i].const or not cfg.poison or i in self.inout:
                continue
            count, first = buf.unwritten()
            if count:
                total = buf.nbytes // buf.elem.itemsize
                raise UnwrittenOutputError(
                    f"{k}: output argument #{i} '{buf.name}' has {count} of {total} elements never written by "
                    f"the launch (grid {g}, block {b}); first unwritten flat index {first}. Non-const pointer "
                    f"arguments are outputs and must be fully written (a grid too small for a kernel without a "
                    f"grid-stride loop, or a missing branch?)", kernel=k, argument=buf.name)
        for i, buf in bufs.items():
            if not self.types[i].const:
                buf.copy_to(checked.arrays[i])

    def _error(self, rep, bufs, smem, g, b, shared_mem) -> EmulatorError:
        k = self.name
        blk = tuple(rep.block)
        thr = tuple(rep.thread) if rep.has_thread else None
        who = f"block {blk}" + (f" thread {thr}" if thr else "")
        loc = None
        if rep.pc:
            obj = rep.obj.decode(errors="replace")
            loc = source_line(obj, rep.pc_off) if obj == str(self._lib.path) else None
            loc = loc or f"{obj}+{rep.pc_off:#x}"
        kw = dict(kernel=k, block=blk, thread=thr, location=loc)
        at = f" at {loc}" if loc else ""
        if rep.code == _BARRIER:
            return BarrierError(f"{k}: {rep.msg.decode(errors='replace')}", **kw)
        if rep.code == _ASSERT:
            return KernelFaultError(f"{k}: {who}: {rep.msg.decode(errors='replace')}", **kw)
        if rep.code == _ARITH:
            return KernelFaultError(f"{k}: arithmetic exception (integer division by zero?) in {who}{at}", **kw)
        if rep.code == _TRAP:
            return KernelFaultError(f"{k}: __trap() or illegal instruction in {who}{at}", **kw)
        if rep.code != _FAULT:
            return EmulatorError(f"{k}: internal emulator fault (signal {rep.sig}) outside kernel code{at}", **kw)
        access = "write" if rep.is_write else "read"
        addr = rep.addr
        for i, buf in list(bufs.items()) + [(None, smem)]:
            if not buf.contains(addr):
                continue
            what = f"argument #{i} '{buf.name}'" if i is not None else f"dynamic shared memory ({shared_mem} bytes)"
            rel = addr - buf.ptr
            item = buf.elem.itemsize
            if 0 <= rel < buf.nbytes and rep.is_write and buf.readonly:
                return ConstWriteError(f"{k}: write through const pointer {what} at byte offset {rel} "
                                       f"(element {rel // item}) in {who}{at}", argument=buf.name, **kw)
            side = (f"{-rel} bytes before the start" if rel < 0 else f"{rel - buf.nbytes} bytes past the end")
            return OutOfBoundsError(f"{k}: out-of-bounds {access} {side} of {what} (size {buf.nbytes} bytes, "
                                    f"element index {rel // item}) in {who}{at}", argument=buf.name, **kw)
        lo, hi = ctypes.c_uint64(), ctypes.c_uint64()
        self._lib.lib.gpucnn_stack_region(ctypes.byref(lo), ctypes.byref(hi))
        if lo.value - (1 << 20) <= addr < hi.value:  # a big frame may land below the lowest guard
            return KernelFaultError(f"{k}: stack overflow (256 KiB per emulated thread) in {who}{at}", **kw)
        return OutOfBoundsError(f"{k}: invalid {access} of address {addr:#x}, which is in no argument buffer "
                                f"(null or stray pointer?) in {who}{at}", **kw)
