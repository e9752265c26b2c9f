"""Kernel text -> cached shared library: preprocess, translate, compile.

The cache key is a hash of everything the library depends on (source text,
options, the emulator's headers and runtime, the compiler binary), so a hit
never runs the compiler. Files are written under temporary names and renamed
into place, which keeps concurrent builds of the same module safe.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from . import translate
from .errors import KernelBuildError

INCLUDE = Path(__file__).resolve().parent / "include"
_RUNTIME = ("emu_sched.cpp", "emu_runtime.cpp", "emu_mma.cpp", "emu_check.cpp", "emu_traffic.cpp", "emu_ubsan.cpp")
_HEADERS = ("cuda_emu.h", "emu_runtime.h", "emu_internal.h", "emu_mma.h", "emu_race.h", *_RUNTIME)
_VERSION = "5"
# -gdwarf-4: binutils 2.40's addr2line misreads relative #line file names in DWARF 5.
# -fstack-clash-protection: frames larger than a page probe each page, so a fiber
# stack overflow hits its guard page instead of the neighbouring fiber's stack.
CXXFLAGS = ("-std=c++20", "-O2", "-g", "-gdwarf-4", "-fstack-clash-protection", "-fPIC", "-fvisibility=hidden", "-U_FORTIFY_SOURCE",
            "-fno-strict-aliasing", "-fno-omit-frame-pointer", "-Wno-unknown-pragmas", "-Wno-attributes")
# Plain builds wrap signed overflow as a GPU does. Checked builds instrument,
# for race_check and traffic, every load and store (ThreadSanitizer's interface,
# served by emu_check.cpp and, for the counts, emu_traffic.cpp) and, for
# misalign or sanitize, misaligned accesses and undefined arithmetic (UBSan's,
# served by emu_ubsan.cpp); no sanitizer runtime is linked. Each set of checks is its own build: the alignment checks alone
# double a kernel's time, so race checks do not pay for them.
PLAIN_FLAGS = ("-fwrapv",)
RACE_FLAGS = ("-fsanitize=thread", "--param=tsan-instrument-func-entry-exit=0", "-DGPUCNN_EMU_CHECKED=1")
UB_FLAGS = ("-fsanitize=alignment,signed-integer-overflow,shift",)
# The traffic counts' build: without scalar replacement of aggregates, which splits a vector's
# copy (a float4 loaded through a cast pointer) into its elements' loads, where a GPU loads it whole.
TRAFFIC_FLAGS = ("-fno-tree-sra",)


def variant_flags(checks: int) -> tuple[str, ...]:
    """The compiler flags of the build that serves the CHECK_* bits ``checks`` (settings.py)."""
    from .settings import CHECK_ALIGN, CHECK_RACE, CHECK_TRAFFIC, CHECK_UB
    flags = ((RACE_FLAGS if checks & (CHECK_RACE | CHECK_TRAFFIC) else ()) +
             (TRAFFIC_FLAGS if checks & CHECK_TRAFFIC else ()) +
             (UB_FLAGS if checks & (CHECK_ALIGN | CHECK_UB) else ()))
    return flags or PLAIN_FLAGS
# What NVRTC predefines for device code (kernels may test them in #if), and the
# marker of in-out pointer parameters (kernels define GPUCNN_INOUT empty for NVRTC).
_PREDEFINED = ("-D__CUDACC__", "-D__CUDACC_RTC__", "-D__CUDA_ARCH__=800", "-DGPUCNN_EMULATOR=1",
               f"-DGPUCNN_INOUT={translate.INOUT_MARK}")
# NVRTC options with no meaning for a CPU build; anything else unknown is refused.
_IGNORED = ("-std=", "--std=", "-arch", "--gpu-architecture", "-use_fast_math", "--use_fast_math",
            "-lineinfo", "--generate-line-info", "-G", "--device-debug", "-ftz", "--ftz", "-prec-div",
            "--prec-div", "-prec-sqrt", "--prec-sqrt", "-fmad", "--fmad", "-restrict", "--restrict",
            "-default-device", "--extra-device-vectorization", "-dopt", "--dopt")

stats = {"compiler_runs": 0, "builds": 0, "cache_hits": 0}
_loaded: dict[str, "Library"] = {}
_lock = threading.Lock()


@dataclass
class Library:
    path: Path
    lib: ctypes.CDLL
    kernels: list[dict]


def compiler() -> str | None:
    cxx = os.environ.get("GPUCNN_CXX") or os.environ.get("CXX") or "g++"
    return shutil.which(cxx)


def available() -> tuple[bool, str]:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False, f"the kernel emulator needs Linux on x86-64, not {sys.platform}/{platform.machine()}"
    if compiler() is None:
        return False, "no C++ compiler found (set CXX or GPUCNN_CXX, or install g++)"
    return True, "ok"


def cache_dir() -> Path:
    d = os.environ.get("GPUCNN_CACHE_DIR")
    return Path(d) if d else Path.home() / ".cache" / "gpucnn" / "emulator"


def _defines(options) -> list[str]:
    out = []
    for opt in options:
        if not isinstance(opt, str):
            raise KernelBuildError(f"compiler option {opt!r} is not a string")
        if opt.startswith(("-D", "-U", "-I")):
            out.append(opt)
        elif not opt.startswith(_IGNORED):
            raise KernelBuildError(f"compiler option {opt!r} is not supported by the emulator "
                                   "(it accepts -D, -U, -I and ignores NVRTC code-generation options)")
    return out


def _compiler_id(cxx: str) -> str:
    st = os.stat(os.path.realpath(cxx))
    return f"{os.path.realpath(cxx)}:{st.st_size}:{st.st_mtime_ns}"


def _ucontext() -> bool:
    return os.environ.get("GPUCNN_EMU_UCONTEXT", "") not in ("", "0")


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    stats["compiler_runs"] += 1
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise KernelBuildError(f"{what} failed (exit {p.returncode}):\n{p.stderr.strip()}\n"
                               f"command: {' '.join(cmd)}", log=p.stderr)


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _base_key(cxx: str, ucontext: bool) -> str:
    """Everything but the module text: headers, runtime, compiler (read once per process)."""
    return _digest(_VERSION, _compiler_id(cxx), str(ucontext), *((INCLUDE / h).read_bytes() for h in _HEADERS))


def _runtime_objects(cxx: str, cdir: Path, base_key: str) -> list[Path]:
    """The scheduler and launch runtime, compiled once per runtime version and compiler."""
    objs = []
    for src in _RUNTIME:
        obj = cdir / f"{Path(src).stem}-{base_key[:24]}.o"
        if not obj.exists():
            tmp = cdir / f".{obj.name}.{os.getpid()}-{threading.get_ident()}.tmp"
            flags = ["-DGPUCNN_EMU_UCONTEXT"] if _ucontext() else []
            _run([cxx, *CXXFLAGS, *PLAIN_FLAGS, *flags, "-c", str(INCLUDE / src), "-o", str(tmp)],
                 "building the emulator runtime")
            os.replace(tmp, obj)
        objs.append(obj)
    return objs


def _key(cxx: str, code: str, defines: list[str], flags: tuple = PLAIN_FLAGS) -> tuple[str, str]:
    """(the cache key of a module, the key of everything but its text)."""
    base_key = _base_key(cxx, _ucontext())
    return _digest(base_key, code, *defines, *(flags if flags != PLAIN_FLAGS else ())), base_key


def cached(code: str, options: tuple = (), flags: tuple = PLAIN_FLAGS) -> bool:
    """Whether ``build(code, options, flags)`` would run no compiler (loaded, or on disk)."""
    cxx = compiler()
    if not available()[0] or cxx is None:
        return True  # build() fails at once: nothing to announce
    key = _key(cxx, code, _defines(options), flags)[0]
    out = cache_dir() / key[:32]
    return key in _loaded or ((out / "meta.json").exists() and (out / "module.so").exists())


def build(code: str, options: tuple = (), flags: tuple = PLAIN_FLAGS) -> Library:
    """The library of ``code`` built with ``flags`` (PLAIN_FLAGS, or variant_flags of some checks)."""
    ok, why = available()
    if not ok:
        raise KernelBuildError(why)
    cxx = compiler()
    defines = _defines(options)
    key, base_key = _key(cxx, code, defines, flags)
    with _lock:
        if key in _loaded:
            stats["cache_hits"] += 1
            return _loaded[key]
        cdir = cache_dir()
        out = cdir / key[:32]
        meta_path, lib_path = out / "meta.json", out / "module.so"
        if meta_path.exists() and lib_path.exists():
            stats["cache_hits"] += 1
        else:
            _compile(cxx, code, defines, cdir, out, base_key, flags)
        meta = json.loads(meta_path.read_text())
        lib = Library(lib_path, ctypes.CDLL(str(lib_path)), meta["kernels"])
        _loaded[key] = lib
        return lib


def kernel_names(code: str, options: tuple = ()) -> list[str]:
    """The extern "C" kernels that ``code`` defines under ``options`` (-D...), by preprocessing
    it as a build would, without compiling: what a part of a family holds (loader.PARTED)."""
    ok, why = available()
    if not ok:
        raise KernelBuildError(why)
    with tempfile.TemporaryDirectory(prefix="gpucnn-names-") as tmp:
        src, pre = Path(tmp) / "source.cu", Path(tmp) / "pre.cpp"
        src.write_text(code)
        _run([compiler(), "-E", "-x", "c++", "-std=c++20", *_PREDEFINED, *_defines(options), str(src), "-o", str(pre)],
             "preprocessing the kernel source")
        return [k.name for k in translate.kernels_in(pre.read_text())]


def _compile(cxx: str, code: str, defines: list[str], cdir: Path, out: Path, base_key: str, mode: tuple) -> None:
    stats["builds"] += 1
    cdir.mkdir(parents=True, exist_ok=True)
    runtime = _runtime_objects(cxx, cdir, base_key)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cdir, prefix=".build-") as tmp:
        tmp = Path(tmp)
        src = tmp / "source.cu"
        # A text without #line directives is named for what it is; its own #line wins.
        src.write_text('#line 1 "<EmuModule source>"\n' + code)
        pre = tmp / "pre.cpp"
        _run([cxx, "-E", "-x", "c++", "-std=c++20", *_PREDEFINED, *defines, str(src), "-o", str(pre)],
             "preprocessing the kernel source")
        try:
            text, kernels = translate.translate(pre.read_text())
        except translate.TranslateError as e:
            raise KernelBuildError(f"cannot translate the kernel source for the emulator: {e}") from None
        cpp = tmp / "kernel.cpp"
        cpp.write_text(text + translate.shims(kernels))
        so = tmp / "module.so"
        flags = ["-DGPUCNN_EMU_UCONTEXT"] if _ucontext() else []
        names = ", ".join(k.name for k in kernels) or "no extern \"C\" kernels"
        # Built inside tmp with tmp mapped away, so file names from #line come out
        # of addr2line as written ("relu.cu"), not glued to a directory.
        obj = tmp / "kernel.o"
        _run([cxx, *CXXFLAGS, *mode, *flags, f"-fdebug-prefix-map={tmp}=", "-c", "-I", str(INCLUDE),
              "-include", "cuda_emu.h", *_PREDEFINED, *defines, str(cpp), "-o", str(obj)],
             f"compiling the kernel source ({names}) for the emulator", cwd=tmp)
        # Linked without -fsanitize: the instrumentation's callbacks are the emulator's runtime.
        _run([cxx, "-shared", "-Wl,-z,defs", str(obj), *map(str, runtime), "-o", str(so), "-ldl"],
             f"linking the kernel source ({names}) for the emulator", cwd=tmp)
        meta = {"kernels": [{"name": k.name, "owner": k.owner, "launch_bounds": k.launch_bounds,
                             "params": [[p.name, p.decl] for p in k.params],
                             "inout": [p.inout for p in k.params]} for k in kernels]}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(so, out / "module.so")
        os.replace(tmp / "meta.json", out / "meta.json")  # last: its presence marks a complete entry
