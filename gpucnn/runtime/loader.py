"""The only code that reads ``kernels/``.

A kernel family's text is its ``.cu`` file with the project's headers inlined
(CuPy's disk cache keys on the source text and would miss an edit to a header
reached through ``-I``), with ``#line`` directives so that compiler messages
and the emulator's reports name the original file and line.
"""
from __future__ import annotations

import contextlib
import functools
import re
from pathlib import Path

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')
NVRTC_OPTIONS = ("-std=c++17",)
# Families built for the architecture-specific target (sm_90a: wgmma) on the compute capability
# given. CuPy adds its own -arch=sm_90 after ours; NVRTC (13.x, the nvidia-cuda-nvrtc wheel, checked
# in either order) then builds for sm_90a, a target whose code runs on compute capability 9.0 only.
# conv2d and conv2d_phase: their warpgroup tiles (tc_gemm.cuh's TC_WG_VARIANTS); conv2d_halo: its
# warpgroup variant (conv2d_halo_forward_wg_*).
ARCH_SPECIFIC = {"conv2d_fold": 90, "conv2d": 90, "conv2d_phase": 90, "conv2d_halo": 90}


# Families compiled a part at a time on a GPU, each part on its first use (tc_gemm.cuh's
# TC_PART_BASE and TC_TILE): conv2d's NVRTC took 112 s whole on the H200's host, where a user of
# one tile waits for its kernels and the ones without tensor cores, a tenth of that. A resnet20
# training step in 3xtf32 compiles conv2d's base, 3xtf32_32 and 3xtf32_64g parts and conv2d_phase's
# 3xtf32_32: 11 s on the VM, against 57 s for the two families whole.
PARTED = ("conv2d", "conv2d_phase", "linear")
# An A/B build (bench/ab_conv.py, gpucnn.bench.variants.CONV; empty: as the sources say): the
# -D options that Runtime.function adds to the options of PARTED's families' modules while it is
# set (switch_options), so its kernels come from modules of their own. The ones the sources read:
# GPUCNN_TC64_BLOCKS, the blocks an SM that the tensor-core 64 tile's kernels ask of ptxas on sm_90
# (tc_gemm.cuh's TC_KERNEL); GPUCNN_FFMA_BLOCKS, those of the FFMA wide float tile's forward and
# backward-data kernels (gemm.cuh's GEMM_ENTRY_AB); GPUCNN_TC64W_STAGES, the tensor-core wide
# tile's pipeline stages (tc_gemm.cuh's TcWide, then 3 blocks an SM; its launches ask for that
# build's shared memory: gpucnn.cuda.tc.build_smem).
BUILD: tuple[str, ...] = ()
_TILE_SUFFIX = re.compile(r"_((?:3x)?tf32)_(\d+[wg]?)$")


def tile_of(kernel: str) -> tuple[str, int | str] | None:
    """(math mode, tile) of a tensor-core tile kernel's name (tc_gemm.cuh's variants:
    NAME_3xtf32_64g -> ("3xtf32", "64g"), NAME_tf32_128 -> ("tf32", 128)); None for the others."""
    m = _TILE_SUFFIX.search(kernel)
    return (m[1], int(m[2]) if m[2].isdigit() else m[2]) if m else None


@functools.lru_cache(maxsize=None)
def part(family: str, kernel: str) -> str:
    """The part of ``family`` that holds ``kernel``: its tile's suffix (NAME_tf32_128g: "tf32_128g")
    for a tensor-core kernel, "base" for the others; "" for a family built whole."""
    if family not in PARTED:
        return ""
    tile = tile_of(kernel)
    return f"{tile[0]}_{tile[1]}" if tile else "base"


def part_options(family: str, kernel: str) -> tuple[str, ...]:
    """The NVRTC options that build the part of ``family`` holding ``kernel`` and no more."""
    name = part(family, kernel)
    return ("-DGPUCNN_PART=1", f"-DGPUCNN_PART_{name}=1") if name else ()


def switch_options(family: str) -> tuple[str, ...]:
    """The NVRTC options of the A/B build set now (BUILD), for ``family``'s modules."""
    return BUILD if family in PARTED else ()


def arch_options(family: str, cc: int) -> tuple[str, ...]:
    """The extra NVRTC options of ``family`` on compute capability ``cc``."""
    return (f"-arch=sm_{cc}a",) if ARCH_SPECIFIC.get(family) == cc else ()


def kernel_dir() -> Path:
    """kernels/ of a source checkout, else the copy installed as gpucnn/kernels."""
    here = Path(__file__).resolve().parent.parent
    for cand in (here.parent / "kernels", here / "kernels"):
        if (cand / "common.cuh").is_file():
            return cand
    raise FileNotFoundError(f"gpucnn's kernels/ folder was not found beside {here}")


def families() -> list[str]:
    """Every kernel family: one .cu file each."""
    return sorted(p.stem for p in kernel_dir().glob("*.cu"))


def _inline(path: Path, seen: tuple) -> list[str]:
    if path.name in seen:
        raise ValueError(f"kernel header include cycle: {' -> '.join(seen + (path.name,))}")
    out = [f'#line 1 "{path.name}"']
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        m = _INCLUDE.match(line)
        if m and (path.parent / m.group(1)).is_file():
            out += _inline(path.parent / m.group(1), seen + (path.name,))
            out.append(f'#line {n + 1} "{path.name}"')
        else:
            out.append(line)
    return out


def inline_file(path) -> str:
    """Any kernel text (a test fixture, say) with the headers it includes inlined."""
    return "\n".join(_inline(Path(path), ())) + "\n"


@functools.lru_cache(maxsize=None)
def source(family: str) -> str:
    """The text of kernel family ``family`` with its headers inlined."""
    path = kernel_dir() / f"{family}.cu"
    if not path.is_file():
        raise FileNotFoundError(f"no kernel family {family!r}: {path} does not exist "
                                f"(families: {', '.join(families())})")
    return inline_file(path)


_listeners: list = []


@contextlib.contextmanager
def on_compile(callback):
    """Inside the block, ``callback(text)`` is called before a kernel module
    is compiled (the first use of a family, minutes on the emulator), so a
    progress line can say what the pause is spent on."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


def _announce(text: str) -> None:
    for callback in list(_listeners):
        callback(text)


@functools.lru_cache(maxsize=None)
def _cupy_module(device_id: int, family: str, options: tuple, part_name: str = ""):
    import cupy
    # CuPy's own disk cache may make this quick; NVRTC runs otherwise.
    _announce(f"compiling the {family} kernels{f' ({part_name} part)' if part_name else ''} for the GPU (first use)")
    with cupy.cuda.Device(device_id):
        mod = cupy.RawModule(code=source(family), options=NVRTC_OPTIONS + options)
        mod.compile()  # raises cupy's CompileException carrying NVRTC's log
    return mod


def cupy_module(family: str, options: tuple = (), kernel: str | None = None):
    """A compiled ``cupy.RawModule`` of ``family`` for the current device: the part that holds
    ``kernel`` where one is named, else the whole family."""
    import cupy
    dev = cupy.cuda.Device()
    extra, name = _extra_options(family, kernel, int(dev.compute_capability))
    return _cupy_module(dev.id, family, tuple(options) + extra, name)


@functools.lru_cache(maxsize=None)
def _extra_options(family: str, kernel: str | None, cc: int) -> tuple[tuple, str]:
    """(the options cupy_module adds for ``kernel``'s part and compute capability ``cc``, the part's
    name): worked out once, as cupy_module runs at every launch."""
    name = part(family, kernel) if kernel else ""
    return (part_options(family, kernel) if name else ()) + arch_options(family, cc), name


def emulator_module(family: str, options: tuple = (), kernel: str | None = None):
    """The same text built for the CPU emulator: the whole family, whatever ``kernel`` (one
    build serves every kernel; tests/test_loader.py checks the parts' contents instead)."""
    return _emulator_module(family, tuple(options))


@functools.lru_cache(maxsize=None)
def _emulator_module(family: str, options: tuple = ()):
    from gpucnn.runtime.emulator import EmuModule, build
    if not build.cached(source(family), tuple(options)):
        _announce(f"compiling the {family} kernels for the emulator (first use, then cached)")
    return EmuModule(source(family), tuple(options))
