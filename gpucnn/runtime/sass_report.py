"""What the GEMM kernels' hot loop is made of on an H100: each FFMA tile kernel
(the ``GEMM_ENTRY`` entries of the families built on kernels/gemm.cuh)
compiled by NVRTC to an sm_90 cubin, disassembled with ``cuobjdump -sass``,
and the innermost loop with the most FFMA/DFMA counted by instruction class.

    python -m gpucnn.runtime.sass_report [--write]

prints the table; ``--write`` records it, with compile_check's ptxas rows
for the same kernels, in bench/results/static-sm90.md (tests/test_sass.py
checks that the record is current). cuobjdump comes from the
``nvidia-cuda-cuobjdump`` wheel (it calls nvdisasm, from
``nvidia-cuda-nvdisasm``) or from PATH; without it ``ToolMissing`` says what
to install.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import functools
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gpucnn.runtime import compile_check, loader

ARCH = "sm_90"
RECORD = Path(__file__).resolve().parents[2] / "bench" / "results" / "static-sm90.md"
CLASSES = ("FMA", "LDS.128", "LDS.64", "LDS.32", "STS", "LDG", "BAR", "integer", "other")
_INTEGER = {"IMAD", "IADD3", "IADD", "IMUL", "LEA", "SHF", "SHL", "SHR", "LOP3", "LOP", "ISETP", "IABS",
            "IMNMX", "VIMNMX", "VIADD", "SEL", "PRMT", "FLO", "POPC", "BMSK", "SGXT", "IDP"}


class ToolMissing(RuntimeError):
    """cuobjdump (or the nvdisasm it runs) is not installed."""


# ------------------------------------------------------------------- tools

def _wheel_bins(name: str) -> list[Path]:
    try:
        import nvidia
    except ImportError:
        return []
    return [p for root in map(Path, nvidia.__path__) for p in sorted(root.glob(f"*/bin/{name}"))]


def _tool(name: str) -> Path | None:
    found = _wheel_bins(name) + [Path(p) for p in filter(None, [shutil.which(name)])]
    return found[0] if found else None


@functools.lru_cache(maxsize=None)
def cuobjdump() -> tuple[Path, Path]:
    """(cuobjdump, nvdisasm), or ToolMissing saying what to install."""
    tools = {n: _tool(n) for n in ("cuobjdump", "nvdisasm")}
    missing = [n for n, p in tools.items() if p is None]
    if missing:
        raise ToolMissing(f"{' and '.join(missing)} not found: pip install "
                          + " ".join(f"nvidia-cuda-{n}" for n in missing) + " (or put it on PATH)")
    return tools["cuobjdump"], tools["nvdisasm"]


def versions() -> dict[str, str]:
    """The toolchain the record was made with."""
    lib = _nvrtc()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    dump = subprocess.run([str(cuobjdump()[0]), "--version"], capture_output=True, text=True).stdout
    release = re.search(r"\bV(\d[\w.]*)", dump)
    nvrtc = f"{major.value}.{minor.value}"
    try:
        nvrtc += f" (nvidia-cuda-nvrtc {importlib.metadata.version('nvidia-cuda-nvrtc')})"
    except importlib.metadata.PackageNotFoundError:
        pass
    return {"NVRTC": nvrtc, "cuobjdump": release[1] if release else dump.strip()}


# ------------------------------------------------------------- compiling

@functools.lru_cache(maxsize=None)
def _nvrtc():
    # NVRTC through ctypes even where CuPy is installed: CuPy's getCUBIN
    # drops the cubin's last byte, and cuobjdump then finds no device code.
    return compile_check.ctypes_backend().args[0]


def cubin(family: str, arch: str = ARCH) -> bytes:
    """Kernel family ``family`` as the loader hands it out, compiled by NVRTC
    with compile_check's options to a cubin for ``arch`` (as the loader builds it: compile_check.target)."""
    return cubin_of(loader.source(family), f"{family}.cu", compile_check.target(family, arch))


def cubin_of(text: str, name: str, arch: str = ARCH) -> bytes:
    """CUDA text ``text`` (reported as file ``name``) compiled as ``cubin`` does."""
    lib, prog = _nvrtc(), ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), text.encode(), name.encode(), 0, None, None):
        raise RuntimeError("nvrtcCreateProgram failed")
    try:
        opts = [o.encode() for o in compile_check.options_for(arch)]
        if lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts)):
            raise RuntimeError(f"{name} does not compile for {arch}: run python -m gpucnn.runtime.compile_check")
        size = ctypes.c_size_t()
        lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetCUBIN(prog, buf)
        return buf.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def disassemble(binary: bytes) -> str:
    dump, nvdisasm = cuobjdump()
    env = dict(os.environ, NVDISASM_PATH=str(nvdisasm.parent))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernels.cubin"
        path.write_bytes(binary)
        run = subprocess.run([str(dump), "-sass", str(path)], capture_output=True, text=True, env=env)
    if run.returncode or "Function :" not in run.stdout:
        raise RuntimeError(f"cuobjdump -sass failed: {run.stderr.strip() or run.stdout.strip()}")
    return run.stdout


# --------------------------------------------------------------- reading

@dataclass(frozen=True)
class Instr:
    addr: int
    op: str          # opcode with its modifiers, without the predicate: "LDS.128"
    target: int | None = None  # a branch's destination
    guarded: bool = False  # under a predicate (@P0, @!P2): a guarded branch may fall through


_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)")
_INSTR = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][\w.]*)([^;]*);")
_TARGET = re.compile(r"0x([0-9a-f]+)")


def parse_sass(text: str) -> dict[str, list[Instr]]:
    """Instructions of each function in ``cuobjdump -sass`` output."""
    out: dict[str, list[Instr]] = {}
    current = None
    for line in text.splitlines():
        if m := _FUNCTION.match(line):
            current = out.setdefault(m[1], [])
        elif current is not None and (m := _INSTR.match(line)):
            target = None
            if m[3].split(".")[0] == "BRA" and (t := _TARGET.search(m[4])):
                target = int(t[1], 16)
            # @PT is always true (ptxas writes @!PT for a slot it leaves idle, which never runs)
            guarded = m[2] is not None and m[2].strip() not in ("@PT", "@UPT")
            current.append(Instr(int(m[1], 16), m[3], target, guarded))
    return out


def integer_op(base: str) -> bool:
    return base in _INTEGER or (base.startswith("U") and base[1:] in _INTEGER)


def classify(op: str) -> str:
    base, mods = op.split(".")[0], op.split(".")[1:]
    if base in ("FFMA", "DFMA"):
        return "FMA"
    if base == "LDS":
        return "LDS.128" if "128" in mods else "LDS.64" if "64" in mods else "LDS.32"
    if base in ("STS", "LDG", "BAR"):
        return base
    return "integer" if integer_op(base) else "other"


def loops(code: list[Instr]) -> list[tuple[int, int]]:
    """(first, last) instruction index of every loop closed by a backward branch."""
    index = {ins.addr: i for i, ins in enumerate(code)}
    return [(index[ins.target], i) for i, ins in enumerate(code)
            if ins.target is not None and ins.target < ins.addr and ins.target in index]


def hot_loop(code: list[Instr]) -> list[Instr]:
    """The innermost loop (one that contains no other) with the most FFMA/DFMA."""
    spans = loops(code)
    inner = [s for s in spans if not any(o != s and s[0] <= o[0] and o[1] <= s[1] for o in spans)]
    if not inner:
        return []
    fma = lambda s: sum(classify(ins.op) == "FMA" for ins in code[s[0]:s[1] + 1])  # noqa: E731
    first, last = max(inner, key=lambda s: (fma(s), -s[0]))
    return code[first:last + 1]


def counts(body: list[Instr]) -> dict[str, int]:
    c = Counter(classify(ins.op) for ins in body)
    return {k: c.get(k, 0) for k in CLASSES}


# ----------------------------------------------------------------- tables

# Families of FFMA tiles outside gemm.cuh: conv2d_wino.cu's step loop is 16 GEMMs' 8 x 8 micro-tiles
# a thread (512 FFMA a step), recorded and modelled as the GEMM tiles' k-steps are.
FFMA_TILE_FAMILIES = ("conv2d_wino",)


def gemm_kernels(arch: str = ARCH) -> dict[str, list[str]]:
    """family -> its FFMA tile kernels: the entries whose launch bounds ask for
    a minimum of blocks per SM (gemm.cuh's GEMM_ENTRY, whether written out or
    generated by a macro, and FFMA_TILE_FAMILIES'), less the tensor-core ones (tc_gemm.cuh's
    TC_KERNEL) and conv2d.cu's bias gradient (a channel.cuh reduction, built for CH_BLOCKS like
    batchnorm.cu's)."""
    out = {}
    for family in loader.families():
        if "GEMM_ENTRY(" not in loader.source(family) and family not in FFMA_TILE_FAMILIES:
            continue  # only gemm.cuh's users and those; the rest need no compiling here
        names = [n for n in compile_check.compile_family(family, arch).min_ctas
                 if not compile_check.tensor_core(n) and not n.startswith("conv2d_bias_grad")]
        if names:
            out[family] = names
    return out


@functools.lru_cache(maxsize=None)
def family_sass(family: str, arch: str = ARCH) -> dict[str, list[Instr]]:
    """The instructions of every kernel of ``family`` (compiled and disassembled once)."""
    return parse_sass(disassemble(cubin(family, arch)))


def sass_rows(arch: str = ARCH) -> list[dict]:
    rows = []
    for family, names in gemm_kernels(arch).items():
        code = family_sass(family, arch)
        for name in sorted(names):
            if name not in code:
                raise RuntimeError(f"{name} is not in the cubin of kernels/{family}.cu")
            body = hot_loop(code[name])
            rows.append({"kernel": name, "instructions": len(body), **counts(body)})
    return rows


def ptxas_rows(arch: str = ARCH) -> list[dict]:
    kernels = gemm_kernels(arch)
    keep = {n for names in kernels.values() for n in names}
    results = [compile_check.compile_family(f, arch) for f in kernels]
    return [r for r in compile_check.rows(results, arch) if r["name"] in keep]


def markdown(rows: list[dict], columns: tuple) -> str:
    head = [" | ".join(columns), " | ".join("---" if c in ("kernel", "name") else "---:" for c in columns)]
    return "\n".join(f"| {ln} |" for ln in head + [" | ".join(str(r[c]) for c in columns) for r in rows])


SASS_COLUMNS = ("kernel", "instructions") + CLASSES
PTXAS_COLUMNS = ("name", "registers", "smem", "stack", "spill_stores", "spill_loads", "blocks_per_sm",
                 "occupancy_pct", "limiter")
DATE_PREFIX = "Generated on "


def report(arch: str = ARCH, date: str | None = None, sass: list[dict] | None = None) -> str:
    """The record's text: toolchain, ptxas rows, SASS counts (``sass``: sass_rows(arch), if at hand)."""
    from gpucnn.runtime import sass_stream, sass_tc
    ver = versions()
    date = date or datetime.date.today().isoformat()
    sass = sass_rows(arch) if sass is None else sass
    return f"""# Static profile of the GEMM kernels on {arch} (H100)

{DATE_PREFIX}{date} by `python -m gpucnn.runtime.sass_report --write`;
tests/test_sass.py checks it is current. Toolchain: NVRTC {ver['NVRTC']}
(its built-in ptxas), cuobjdump {ver['cuobjdump']}.

## ptxas (`python -m gpucnn.runtime.compile_check --arch {arch}`)

{markdown(ptxas_rows(arch), PTXAS_COLUMNS)}

## The hot loop's instructions (`cuobjdump -sass` of the NVRTC cubin)

The innermost loop with the most FFMA/DFMA: one step of GEMM_BK = 16
reduction indices of gemm.cuh's tile loop. FMA is FFMA (f32) or DFMA (f64);
LDS.128 are 16-byte shared loads (float4, double2); integer is IMAD, IADD3,
LEA, SHF, LOP3, ISETP and the like (the operands' index arithmetic); other is
everything else (moves, conversions, predicates, branches).

{markdown(sass, SASS_COLUMNS)}

{sass_tc.section(arch)}

{sass_stream.section(arch)}"""


def recorded_nvrtc(text: str) -> str | None:
    m = re.search(r"Toolchain: NVRTC (\S+)", text)
    return m[1] if m else None


def without_date(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith(DATE_PREFIX))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gpucnn.runtime.sass_report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help=f"record the report in {RECORD}")
    args = ap.parse_args(argv)
    try:
        text = report()
    except ToolMissing as e:
        print(f"skipped: {e}", file=sys.stderr)
        return 2
    if args.write:
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(text)
        print(f"wrote {RECORD}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
