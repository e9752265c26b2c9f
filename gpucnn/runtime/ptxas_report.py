"""Reading what NVRTC and ptxas say about a kernel family, and what it means
for an SM: the ``-Xptxas=-v`` report per kernel, the entry points and launch
bounds in the PTX, and theoretical occupancy as CUDA's ``cuda_occupancy.h``
computes it. Pure text and arithmetic: no compiler and no GPU needed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SM:
    """Per-SM limits of one architecture (CUDA C++ Programming Guide,
    "Technical Specifications per Compute Capability"; granularities and the
    4 register-file sub-partitions from cuda_occupancy.h)."""
    arch: str
    max_threads: int
    max_blocks: int
    smem_per_sm: int           # the largest shared-memory carveout
    smem_per_block: int        # the most one block may use (opt-in above 48 KiB)
    smem_reserved: int = 1024  # the driver keeps this much per block (sm_80+)
    smem_granularity: int = 128
    registers: int = 65536     # also the most one block may use
    reg_granularity: int = 256  # registers are allocated per warp in these units
    max_regs_per_thread: int = 255
    sub_partitions: int = 4
    warp: int = 32

    @property
    def max_warps(self) -> int:
        return self.max_threads // self.warp


KIB = 1024
SMS = {
    "sm_75": SM("sm_75", 1024, 16, 64 * KIB, 64 * KIB, smem_reserved=0, smem_granularity=256),
    "sm_80": SM("sm_80", 2048, 32, 164 * KIB, 163 * KIB),
    "sm_86": SM("sm_86", 1536, 16, 100 * KIB, 99 * KIB),
    "sm_89": SM("sm_89", 1536, 24, 100 * KIB, 99 * KIB),
    "sm_90": SM("sm_90", 2048, 32, 228 * KIB, 227 * KIB),  # H100
}


@dataclass(frozen=True)
class Occupancy:
    blocks_per_sm: int
    occupancy: float  # resident warps / max warps, 0..1
    limiter: str      # which resource bounds blocks_per_sm ("registers", "shared", ...)


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def occupancy(registers: int, block: int, smem: int = 0, sm: SM = SMS["sm_90"]) -> Occupancy:
    """Theoretical resident blocks per SM and occupancy of a kernel that uses
    ``registers`` per thread and ``smem`` bytes of shared memory (static plus
    dynamic) per block, launched with ``block`` threads."""
    warps = -(-block // sm.warp)
    limits = {"warps": sm.max_warps // warps if block <= 1024 else 0, "blocks": sm.max_blocks}
    # Registers: each warp gets registers*32 rounded up to the granularity, from
    # one of 4 sub-partitions of the register file, so a warp never straddles two.
    per_warp = _round_up(registers * sm.warp, sm.reg_granularity)
    fits = (per_warp * _round_up(warps, sm.sub_partitions) <= sm.registers
            and registers <= sm.max_regs_per_thread)
    if not fits:
        limits["registers"] = 0
    elif per_warp:
        limits["registers"] = (sm.registers // sm.sub_partitions // per_warp) * sm.sub_partitions // warps
    per_block = _round_up(smem + sm.smem_reserved, sm.smem_granularity)
    if per_block - sm.smem_reserved > sm.smem_per_block:
        limits["shared"] = 0
    elif per_block:
        limits["shared"] = sm.smem_per_sm // per_block
    limiter = min(limits, key=lambda k: limits[k])
    blocks = limits[limiter]
    return Occupancy(blocks, blocks * warps / sm.max_warps, limiter)


@dataclass
class Kernel:
    """One entry function as ptxas reports it (bytes for memory sizes)."""
    name: str
    registers: int = 0
    smem: int = 0
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    barriers: int = 0
    cmem: int = 0
    block: int = 0  # threads per block it is assumed to launch with


_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_FIELDS = {"barriers": re.compile(r"used (\d+) barriers"), "smem": re.compile(r"(\d+) bytes smem"),
           "cmem": re.compile(r"(\d+) bytes cmem\[\d+\]")}


def parse_ptxas(log: str) -> dict[str, Kernel]:
    """Entry functions of a ``-Xptxas=-v`` report by name. Properties of
    non-entry (device) functions are skipped: they count in their callers'
    cumulative stack."""
    kernels: dict[str, Kernel] = {}
    current = None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            kernels[m[1]] = Kernel(m[1])
        elif m := _PROPS.search(line):
            current = kernels.get(m[1])
        elif current is None:
            continue
        elif m := _FRAME.search(line):
            current.stack, current.spill_stores, current.spill_loads = map(int, m.groups())
        elif m := _USED.search(line):
            current.registers = int(m[1])
            for field, rx in _FIELDS.items():
                # cmem comes once per bank used ("360 bytes cmem[0], 8 bytes cmem[2]")
                setattr(current, field, sum(int(v) for v in rx.findall(line)))
    return kernels


_PTX_ENTRY = re.compile(r"\.entry\s+([\w$]+)\s*\(")
_NTID = re.compile(r"\.(?:maxntid|reqntid)\s+(\d+)(?:\s*,\s*(\d+))?(?:\s*,\s*(\d+))?")


def ptx_entries(ptx: str) -> dict[str, int | None]:
    """Entry names in PTX, each with its ``__launch_bounds__`` thread count
    (``.maxntid``), or None where it has none."""
    out: dict[str, int | None] = {}
    matches = list(_PTX_ENTRY.finditer(ptx))
    for m in matches:
        head = ptx[m.end():ptx.find("{", m.end())]  # directives sit between the params and the body
        nt = _NTID.search(head)
        out[m[1]] = None if nt is None else int(nt[1]) * int(nt[2] or 1) * int(nt[3] or 1)
    return out


_MIN_CTAS = re.compile(r"\.minnctapersm\s+(\d+)")


def ptx_min_blocks(ptx: str) -> dict[str, int]:
    """Entry names in PTX whose ``__launch_bounds__`` ask for a minimum of
    resident blocks per SM (``.minnctapersm``), each with that minimum."""
    out: dict[str, int] = {}
    for m in _PTX_ENTRY.finditer(ptx):
        mc = _MIN_CTAS.search(ptx[m.end():ptx.find("{", m.end())])
        if mc:
            out[m[1]] = int(mc[1])
    return out


_NVRTC_DIAG = re.compile(r"^(?P<where>\S.*?\(\d+\)): (?P<kind>warning|error)\b", re.I)
_PTXAS_DIAG = re.compile(r"^(?:ptxas|nvlink|nvrtc)\s+(?P<kind>warning|error|fatal)\b", re.I)


def diagnostics(log: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) in an NVRTC program log, one line each. ptxas's
    "info" lines and the source excerpts under a message are neither."""
    errors, warnings = [], []
    for line in log.replace("\x00", "").splitlines():
        m = _NVRTC_DIAG.match(line) or _PTXAS_DIAG.match(line)
        if m:
            (warnings if m["kind"].lower() == "warning" else errors).append(line.strip())
    return errors, warnings
