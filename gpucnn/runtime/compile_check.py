"""Compile checks that need no GPU: every kernel family through NVRTC and
ptxas for every supported architecture, with any warning counted as a failure;
for sm_90 (H100) no spills, no stack frame unless allowed below, and enough
registers and shared memory for the blocks per SM a family needs; and every
kernel that a ``gpucnn.cuda`` module names exists.

    python -m gpucnn.runtime.compile_check [--arch sm_90] [--json]

prints one row per kernel and exits 1 if any check fails.

NVRTC comes from CuPy (``cupy.cuda.nvrtc``) where CuPy is installed, else from
the ``nvidia-cuda-nvrtc`` wheel (or a CUDA toolkit) through ctypes; with
neither, ``NvrtcUnavailable`` says what to install.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import dataclasses
import functools
import importlib
import json
import pkgutil
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpucnn.cuda import launch
from gpucnn.runtime import loader
from gpucnn.runtime.ptxas_report import (SMS, Kernel, diagnostics, occupancy, parse_ptxas, ptx_entries,
                                         ptx_min_blocks)

ARCHS = ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90")
CHECK_ARCH = "sm_90"  # where spills, stack and occupancy are enforced
PTXAS_OPTIONS = ("-Xptxas=-v", "-Xptxas=-warn-spills", "-Xptxas=-warn-lmem-usage")
# kernel (full or base name) -> why it may keep a stack frame on sm_90
ALLOWED_STACK: dict[str, str] = {}
# family -> resident blocks per SM its kernels need on sm_90 (default 1); the
# tensor-core kernels need one (8 warps and 104 KiB of a 128 x 128 tile, or
# 4 warps of a 64 x 64 tile, each a full pipeline)
MIN_BLOCKS_PER_SM: dict[str, int] = {"conv2d": 2, "conv2d_phase": 2, "linear": 2, "conv2d_wino": 2}
_NARROW_BLOCKS = {"_m32_f32": 4, "_m32_f64": 3}  # gemm.cuh's GemmNarrow kernels: GemmBlocks


def dynamic_smem(kernel: str) -> int:
    """The dynamic shared memory a kernel is launched with (the tensor-core tiles', the Winograd
    forward kernel's)."""
    from gpucnn.cuda import tc, wino
    if kernel == "conv2d_wino_forward_f32":
        return wino.SMEM
    tile = loader.tile_of(kernel)
    return tc.smem_bytes(tile[1], tile[0]) if tile else 0


def tensor_core(kernel: str) -> bool:
    """Whether ``kernel`` is a tensor-core variant (tc_gemm.cuh's TC_VARIANTS, conv2d_fold.cu's kernels,
    conv2d_halo.cu's forward kernels)."""
    return loader.tile_of(kernel) is not None or kernel.startswith(("conv2d_fold_", "conv2d_halo_forward_"))


def min_blocks(family: str, kernel: str) -> int:
    if tensor_core(kernel):
        return 1
    narrow = [n for sfx, n in _NARROW_BLOCKS.items() if kernel.endswith(sfx)]
    return narrow[0] if narrow else MIN_BLOCKS_PER_SM.get(family, 1)


class NvrtcUnavailable(ImportError):
    """Neither CuPy nor an NVRTC shared library could be loaded."""


# ---------------------------------------------------------------- NVRTC access

def _cupy_compile(nvrtc, src: str, name: str, options: tuple) -> tuple[bool, str, str]:
    prog = nvrtc.createProgram(src, name, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, list(options))
            ok = True
        except nvrtc.NVRTCError:
            ok = False
        log = nvrtc.getProgramLog(prog)
        ptx = nvrtc.getPTX(prog) if ok else b""
        return ok, log, ptx.decode() if isinstance(ptx, bytes) else ptx
    finally:
        nvrtc.destroyProgram(prog)


def _nvrtc_library_paths() -> list[str]:
    """libnvrtc from the nvidia-cuda-nvrtc wheel (nvidia/cu13/lib, nvidia/cuda_nvrtc/lib)
    first, then whatever the system's loader finds."""
    paths = []
    try:
        import nvidia
        for root in map(Path, nvidia.__path__):
            paths += sorted(str(p) for p in root.glob("*/lib/libnvrtc.so*") if ".alt." not in p.name)
            paths += sorted(str(p) for p in root.glob("*/bin/nvrtc64_*.dll"))
    except ImportError:
        pass
    found = ctypes.util.find_library("nvrtc")
    return paths + ([found] if found else [])


def _ctypes_compile(lib, src: str, name: str, options: tuple) -> tuple[bool, str, str]:
    prog = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), name.encode(), 0, None, None):
        raise RuntimeError("nvrtcCreateProgram failed")
    try:
        opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        ok = lib.nvrtcCompileProgram(prog, len(options), opts) == 0

        def text(size_fn, get_fn) -> str:
            size = ctypes.c_size_t()
            size_fn(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            get_fn(prog, buf)
            return buf.value.decode(errors="replace")
        log = text(lib.nvrtcGetProgramLogSize, lib.nvrtcGetProgramLog)
        ptx = text(lib.nvrtcGetPTXSize, lib.nvrtcGetPTX) if ok else ""
        return ok, log, ptx
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def ctypes_backend():
    """NVRTC through ctypes, for machines without CuPy."""
    for path in _nvrtc_library_paths():
        try:
            # libnvrtc dlopens its builtins by bare name: load the wheel's copy first
            for builtins in sorted(Path(path).parent.glob("libnvrtc-builtins.so*")):
                if ".alt." not in builtins.name:
                    ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
            return functools.partial(_ctypes_compile, ctypes.CDLL(path))
        except OSError:
            continue
    raise NvrtcUnavailable("NVRTC was not found: install CuPy (pip install cupy-cuda12x or "
                           "cupy-cuda13x) or the NVRTC wheel (pip install nvidia-cuda-nvrtc)")


@functools.lru_cache(maxsize=None)
def backend():
    """A function ``(source, name, options) -> (ok, log, ptx)`` running NVRTC."""
    try:
        from cupy.cuda import nvrtc
        run = functools.partial(_cupy_compile, nvrtc)
    except ImportError:
        run = ctypes_backend()
    # One compilation before any other: NVRTC loads its builtins library on the
    # first one, and concurrent first compilations can fail to find it.
    ok, log, _ = run('extern "C" __global__ void probe() {}', "probe.cu", ("-arch=sm_75",))
    if not ok:
        raise NvrtcUnavailable(f"NVRTC does not work here: {log.strip()}")
    return run


# ------------------------------------------------------------------ compiling

@dataclass
class Result:
    """One compilation of one source for one architecture."""
    name: str
    arch: str
    compiled: bool
    log: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    kernels: dict[str, Kernel] = field(default_factory=dict)  # entries, from ptxas -v
    entries: dict[str, int | None] = field(default_factory=dict)  # PTX entries -> launch bounds
    min_ctas: dict[str, int] = field(default_factory=dict)  # PTX entries -> launch bounds' minimum blocks per SM
    ptx: str = ""

    @property
    def ok(self) -> bool:
        return self.compiled and not self.errors and not self.warnings


def options_for(arch: str) -> tuple[str, ...]:
    std = () if any(o.startswith(("-std", "--std")) for o in loader.NVRTC_OPTIONS) else ("-std=c++17",)
    return loader.NVRTC_OPTIONS + std + (f"-arch={arch}",) + PTXAS_OPTIONS


def target(family: str, arch: str) -> str:
    """The architecture the loader builds ``family`` for on an ``arch`` device: sm_90a for
    loader.ARCH_SPECIFIC's families on sm_90 (wgmma), else ``arch``."""
    return arch + "a" if loader.arch_options(family, int(arch.removeprefix("sm_"))) else arch


def compile_source(src: str, name: str, arch: str = CHECK_ARCH, build: str | None = None,
                   options: tuple = ()) -> Result:
    """Compile CUDA text ``src`` (reported as file ``name``) for ``arch`` (as ``build``, an
    architecture-specific target of it, where given), with ``options`` (-D...) besides."""
    ok, log, ptx = backend()(src, name, options_for(build or arch) + tuple(options))
    log = log.replace("\x00", "")
    errors, warnings = diagnostics(log)
    if not ok and not errors:  # keep the reason even where the log's shape is new to us
        errors = [log.strip() or f"NVRTC failed on {name} for {arch} with an empty log"]
    entries = ptx_entries(ptx)
    kernels = parse_ptxas(log)
    for k in kernels.values():
        k.block = entries.get(k.name) or launch.BLOCK
    return Result(name, arch, ok, log, errors, warnings, kernels, entries, ptx_min_blocks(ptx), ptx)


@functools.lru_cache(maxsize=None)
def compile_family(family: str, arch: str = CHECK_ARCH) -> Result:
    """Compile kernel family ``family`` exactly as the loader hands it out (and builds it: target)."""
    return compile_source(loader.source(family), f"{family}.cu", arch, target(family, arch))


# -------------------------------------------------------------------- checks

def _base(kernel: str) -> str:
    return kernel.rsplit("_", 1)[0] if kernel.endswith(("_f32", "_f64")) else kernel


def _allowed(kernel: str) -> bool:
    return bool({kernel, _base(kernel)} & ALLOWED_STACK.keys())


_LMEM = re.compile(r"Local memory used for function '([^']+)'")


def problems(family: str, result: Result) -> list[str]:
    """Everything wrong with one compilation, one line per problem (a failed
    compilation gives NVRTC's own messages). ptxas's local-memory warning is
    waived for the kernels in ALLOWED_STACK; its spill warning never is."""
    where = f"{family} [{result.arch}]"
    warnings = [w for w in result.warnings if not ((m := _LMEM.search(w)) and _allowed(m[1]))]
    out = [f"{where}: {e}" for e in result.errors] + [f"{where}: {w}" for w in warnings]
    if not result.compiled or result.arch != CHECK_ARCH:
        return out
    for k in result.kernels.values():
        need = min_blocks(family, k.name)
        if k.spill_stores or k.spill_loads:
            out.append(f"{where} {k.name}: spills ({k.spill_stores} B stores, {k.spill_loads} B loads)")
        if k.stack and not _allowed(k.name):
            out.append(f"{where} {k.name}: {k.stack} B stack frame (allow it in ALLOWED_STACK with a reason)")
        smem = k.smem + dynamic_smem(k.name)
        occ = occupancy(k.registers, k.block, smem, SMS[result.arch])
        if occ.blocks_per_sm < need:
            out.append(f"{where} {k.name}: {occ.blocks_per_sm} blocks/SM < {need} needed "
                       f"({k.registers} registers x {k.block} threads, {smem} B smem; "
                       f"limited by {occ.limiter})")
    return out


def kernel_modules() -> list:
    """The ``gpucnn.cuda`` modules that declare FAMILY and KERNELS."""
    import gpucnn.cuda as pkg
    mods = [importlib.import_module(f"{pkg.__name__}.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)]
    return [m for m in mods if hasattr(m, "FAMILY") and hasattr(m, "KERNELS")]


def check_kernel_names(arch: str = CHECK_ARCH) -> list[str]:
    """Every kernel a ``gpucnn.cuda`` module names exists: KERNELS once per
    dtype, TC_KERNELS (tensor-core, sm_80 and newer) once per mode and tile,
    F32_KERNELS as named."""
    out = []
    for mod in kernel_modules():
        if mod.FAMILY not in loader.families():
            out.append(f"{mod.__name__}: FAMILY {mod.FAMILY!r} has no kernels/{mod.FAMILY}.cu")
            continue
        result = compile_family(mod.FAMILY, arch)
        if not result.compiled:
            out.append(f"{mod.__name__}: kernels/{mod.FAMILY}.cu does not compile for {arch}")
            continue
        from gpucnn.cuda import tc
        names = [launch.kernel_name(base, dt) for base in mod.KERNELS for dt in (np.float32, np.float64)]
        names += [n for base in getattr(mod, "TC_KERNELS", ()) for n in tc.variants(base)]
        names += list(getattr(mod, "F32_KERNELS", ()))  # float-only entry points, full names
        missing = [n for n in names if n not in result.entries]
        if missing:
            out.append(f"{mod.__name__}: kernels missing from {mod.FAMILY}.cu: {', '.join(missing)}")
    return out


def check(archs=ARCHS) -> tuple[list[Result], list[str]]:
    """Compile every family for ``archs``; the results and every problem found."""
    jobs = [(family, arch) for family in loader.families() for arch in archs]
    backend()  # loaded and probed once, before the threads
    with ThreadPoolExecutor() as pool:  # NVRTC is thread safe and releases the GIL: about 2x
        results = list(pool.map(lambda job: compile_family(*job), jobs))
    found = [p for (family, _), r in zip(jobs, results) for p in problems(family, r)]
    return results, found + check_kernel_names()


# ----------------------------------------------------------------------- CLI

def rows(results: list[Result], arch: str) -> list[dict]:
    out = []
    for r in results:
        if r.arch != arch:
            continue
        for k in sorted(r.kernels.values(), key=lambda k: k.name):
            occ = occupancy(k.registers, k.block, k.smem + dynamic_smem(k.name), SMS[arch])
            out.append({"family": r.name.removesuffix(".cu"), **dataclasses.asdict(k), "dyn_smem": dynamic_smem(k.name),
                        "blocks_per_sm": occ.blocks_per_sm, "occupancy_pct": round(100 * occ.occupancy, 1),
                        "limiter": occ.limiter})
    return out


_COLUMNS = ("family", "name", "block", "registers", "smem", "dyn_smem", "stack", "spill_stores", "spill_loads",
            "barriers", "blocks_per_sm", "occupancy_pct", "limiter")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gpucnn.runtime.compile_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=ARCHS, help=f"check this architecture only (default: all; table for {CHECK_ARCH})")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    table_arch = args.arch or CHECK_ARCH
    results, found = check((args.arch,) if args.arch else ARCHS)
    table = rows(results, table_arch)
    if args.json:
        print(json.dumps({"arch": table_arch, "kernels": table, "problems": found}, indent=1))
    else:
        widths = [max([len(c)] + [len(str(t[c])) for t in table]) for c in _COLUMNS]
        for line in [dict(zip(_COLUMNS, _COLUMNS))] + table:
            print("  ".join(str(line[c]).rjust(w) for c, w in zip(_COLUMNS, widths)))
        print(f"{len(table)} kernels in {len(loader.families())} families for {table_arch}; "
              f"{len(found)} problems" + "".join(f"\n  {p}" for p in found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
