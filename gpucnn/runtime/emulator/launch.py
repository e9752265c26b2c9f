"""One kernel of an EmuModule: checks a launch, runs it, turns reports into exceptions."""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import threading

import numpy as np

from . import args as argmod
from . import settings, traffic
from .buffers import Guarded
from .errors import EmulatorError, KernelArgumentError, LaunchConfigError, OutOfBoundsError, UnwrittenOutputError
from .reports import Failure, Report

MAX_THREADS, MAX_BLOCK, MAX_GRID = 1024, (1024, 1024, 64), (2**31 - 1, 65535, 65535)
MAX_SMEM = 48 * 1024  # per block without opting in (static, or dynamic by default)
MAX_SMEM_OPTIN = 227 * 1024  # what max_dynamic_shared_size_bytes may allow (an H100's per-block limit)
_LOCK = threading.Lock()  # one launch at a time: the signal handlers are process-wide
_OK = 0
_INOUT, _CONST = 1, 4  # emu_internal.h REGION_INOUT, REGION_CONST


class _Region(ctypes.Structure):
    _fields_ = [("lo", ctypes.c_uint64), ("size", ctypes.c_uint64), ("granule", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("arg", ctypes.c_int32), ("unused", ctypes.c_uint32)]


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


_stacks = None  # the fiber stacks every module launches on (emu_internal.h LaunchSpec.stacks)


def _fiber_stacks(lib) -> int:
    """One region of fiber stacks for the process, mapped by the first module
    that launches: each module mapping its own would cost 2 * kMaxThreads
    entries of the kernel's map count (guard pages) per module loaded."""
    global _stacks
    if _stacks is None:
        fn = lib.gpucnn_map_fiber_stacks
        fn.restype, fn.argtypes = ctypes.c_void_p, []
        _stacks = fn()
        if not _stacks:
            raise EmulatorError("the emulator could not map its fiber stacks")
    return _stacks


class _Spec(ctypes.Structure):
    _fields_ = [("shim", ctypes.c_void_p), ("args", ctypes.c_void_p), ("grid", ctypes.c_uint * 3),
                ("block", ctypes.c_uint * 3), ("dyn_size", ctypes.c_uint64), ("dyn_ptr", ctypes.c_void_p),
                ("owner", ctypes.c_int), ("order", ctypes.c_int), ("seed", ctypes.c_uint64),
                ("regions", ctypes.c_void_p), ("nregions", ctypes.c_int), ("checks", ctypes.c_int),
                ("blocks", ctypes.c_void_p), ("nblocks", ctypes.c_uint64), ("stacks", ctypes.c_void_p)]


def _dims(what: str, v, kernel: str) -> tuple[int, int, int]:
    t = (v,) if not isinstance(v, (tuple, list)) else tuple(v)
    if not 1 <= len(t) <= 3 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in t):
        raise LaunchConfigError(f"{kernel}: {what} must be an int or a tuple of 1 to 3 ints, got {v!r}",
                                kernel=kernel)
    t = tuple(int(d) for d in t) + (1,) * (3 - len(t))
    if min(t) < 1:
        raise LaunchConfigError(f"{kernel}: {what} dimensions must be >= 1, got {t}", kernel=kernel)
    return t


def _linear_blocks(kernel: str, wanted, g) -> list[int] | None:
    """``blocks`` as linear block indices (x fastest, as CUDA numbers blocks), in the order given."""
    if wanted is None:
        return None
    total, out = g[0] * g[1] * g[2], []
    for b in wanted:
        if isinstance(b, tuple):
            t = tuple(d + n if d < 0 else d for d, n in zip(b + (0,) * (3 - len(b)), g))
            ok = all(0 <= d < n for d, n in zip(t, g))
            lin = t[0] + g[0] * (t[1] + g[1] * t[2])
        else:
            lin = b + total if b < 0 else b
            ok = 0 <= lin < total
        if not ok:
            raise LaunchConfigError(f"{kernel}: blocks= names block {b!r}, which is outside the grid {g}", kernel=kernel)
        if lin not in out:
            out.append(lin)
    return out


class EmuKernel:
    def __init__(self, module, lib, meta: dict):
        self.module, self._lib, self.name = module, lib, meta["name"]
        self.params = [tuple(p) for p in meta["params"]]
        self._owner = meta["owner"]
        self.inout = {i for i, flag in enumerate(meta.get("inout", ())) if flag}
        self._shims: dict[int, int] = {}
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

    def launch_packed(self, grid, block, shared_mem: int, params: int, args) -> None:
        """A launch from kernelParams at address ``params`` (gpucnn.runtime.direct's packing), read
        as the driver reads them: each scalar's bytes at the size its parameter has, checked against
        the bytes CuPy's launch would pass for ``args`` (argmod.check's); each pointer checked
        against the address of the array at its place (the arrays are the emulator's device
        memory); then the launch, on the values read back."""
        checked = argmod.check(self.name, self.params, self.types, args)
        slots = (ctypes.c_void_p * max(1, len(self.types))).from_address(params)
        back = []
        for i, (slot, p, a) in enumerate(zip(slots, self.types, args)):
            if p.pointer:
                got, want = ctypes.c_uint64.from_address(slot).value, a.ctypes.data
                read = a
            else:
                got, want = ctypes.string_at(slot, p.size), bytes(checked.scalars[i])[:p.size]
                read = np.frombuffer(got, p.dtype)[0]
            if got != want:
                raise KernelArgumentError(f"{self.name}: argument #{i} '{self.params[i][0]}' was packed as "
                                          f"{got!r}, where the launch passes {want!r}", kernel=self.name,
                                          argument=self.params[i][0])
            back.append(read)
        self(grid, block, tuple(back), shared_mem=shared_mem)

    def _entry(self, checks: int):
        """(library, entry shim) of the build serving ``checks`` (built on first use)."""
        lib = self.module.library(checks)
        if id(lib) not in self._shims:
            self._shims[id(lib)] = ctypes.cast(getattr(lib.lib, f"gpucnn_shim_{self.name}"), ctypes.c_void_p).value
        return lib, self._shims[id(lib)]
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
        lib, shim = self._entry(cfg.checks)
        blocks = _linear_blocks(self.name, cfg.blocks, g)
        bufs: dict[int, Guarded] = {}
        smem = None
        try:
            for n, (i, arr) in enumerate(checked.arrays.items()):
                bufs[i] = self._buffer(i, n, arr, cfg, lazy=blocks is not None)
            smem = Guarded(-(-int(shared_mem) // 16) * 16, True, np.dtype(np.float32), "<dynamic shared memory>")
            holders = [None] * len(self.params)
            for i, buf in bufs.items():
                holders[i] = ctypes.c_void_p(buf.ptr)
            for i, raw in checked.scalars.items():
                holders[i] = raw
            argv = (ctypes.c_void_p * max(1, len(holders)))(*[ctypes.addressof(h) for h in holders])
            regions = self._regions(bufs, cfg.traffic) if cfg.race_check or cfg.traffic else []
            reg = (_Region * max(1, len(regions)))(*regions)
            ids = (ctypes.c_uint64 * max(1, len(blocks or ())))(*(blocks or ()))
            spec = _Spec(shim, ctypes.addressof(argv), (ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b),
                         smem.nbytes, smem.ptr, self._owner, settings.ORDERS[cfg.resume_order], cfg.seed,
                         ctypes.addressof(reg), len(regions), cfg.checks,
                         ctypes.addressof(ids) if blocks is not None else None, len(blocks or ()),
                         _fiber_stacks(lib.lib))
            rep = Report()
            with _LOCK:
                rc = lib.lib.gpucnn_launch(ctypes.byref(spec), ctypes.byref(rep))
            if rc != _OK:
                lo, hi = ctypes.c_uint64(), ctypes.c_uint64()
                lib.lib.gpucnn_stack_region(ctypes.byref(lo), ctypes.byref(hi))
                launch = dict(shared_mem=shared_mem, block=b, misalign=cfg.misalign, stack=(lo.value, hi.value))
                raise Failure(self.name, str(lib.path), rep, bufs, smem, launch).error()
            self._check_outputs(checked, bufs, g, b, cfg, blocks is None)
            if cfg.traffic:
                total = g[0] * g[1] * g[2]
                traffic.collect(lib, self.name, self.params, len(blocks) if blocks is not None else total, total)
        finally:
            for buf in bufs.values():
                buf.free()
            if smem is not None:
                smem.free()

    def _buffer(self, i: int, n: int, arr: np.ndarray, cfg, lazy: bool) -> Guarded:
        """The guarded copy of pointer argument i, the n-th pointer argument."""
        p = self.types[i]
        elem = p.dtype if p.dtype is not None else np.dtype(np.uint8)
        residue = None
        if cfg.misalign:  # the n-th pointer moves n elements off the alignment of the array it copies
            residue = (arr.ctypes.data + n * (p.size * p.lanes if p.kind != "x" else elem.itemsize)) % 16
        buf = Guarded(arr.nbytes, cfg.guard == "end", elem, self.params[i][0], residue, lazy)
        if p.const or not cfg.poison or i in self.inout:
            buf.load(arr)
        elif not lazy:  # a lazy output stays unmapped zeros wherever the chosen blocks do not write
            buf.poison_data()
        if p.const:
            buf.make_readonly()
        return buf

    def _regions(self, bufs: dict, inputs: bool) -> list:
        """The race checks' shadowed ranges, every argument the kernel may write; with ``inputs``
        (the traffic counts) the const ones too, marked for the race checks to skip."""
        def flags(i):
            return (_INOUT if i in self.inout else 0) | (_CONST if self.types[i].const else 0)
        return [_Region(buf.ptr, buf.nbytes, buf.elem.itemsize, flags(i), i, 0)
                for i, buf in bufs.items() if (inputs or not self.types[i].const) and buf.nbytes]

    def _check_outputs(self, checked, bufs, g, b, cfg, whole: bool):
        """Slack damage, unwritten elements (not when only some blocks ran), then copy the outputs back."""
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
            if self.types[i].const or not cfg.poison or i in self.inout or not whole:
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
