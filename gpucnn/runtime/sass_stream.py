"""The direct and memory-bound kernels' main loop in sm_90 machine code, for
bench/results/static-sm90.md (gpucnn.runtime.sass_report writes it): per
kernel, its main loop (stream_loop: the vector or cp.async path, not the
scalar fallback), its loads and stores by width, its integer instructions
and its calls (a 64-bit integer division or a double division is a CALL to
a subroutine, so none belongs in a loop that runs per element).
"""
from __future__ import annotations

from collections import Counter

from gpucnn.runtime import compile_check, sass_report

# family -> kernel-name prefixes reported (None: all of the family's kernels)
FAMILIES = {"depthwise": None, "conv2d_strip": None, "batchnorm": None, "relu": None, "pool2d": None,
            "conv2d": ("conv2d_bias_",)}
COLUMNS = ("kernel", "registers", "blocks_per_sm", "instructions", "LDGSTS", "LDG.128", "LDG", "STG.128", "STG",
           "FMA", "integer", "CALL")


def width(op: str) -> str:
    """LDG/STG with .128 become "X.128"; narrower ones "X"; everything else "" (not counted)."""
    base = op.split(".")[0]
    if base not in ("LDG", "STG"):
        return ""
    return f"{base}.128" if "128" in op.split(".")[1:] else base


def _loads(body: list) -> tuple[int, int, int, int]:
    """(16-byte cp.async copies, all cp.async copies, 16-byte LDGs, all LDGs) of a loop: what
    stream_loop ranks loops by."""
    bases = [(ins.op.split(".")[0], ins.op.split(".")[1:]) for ins in body]
    return (sum(b == "LDGSTS" and "128" in m for b, m in bases), sum(b == "LDGSTS" for b, _ in bases),
            sum(b == "LDG" and "128" in m for b, m in bases), sum(b == "LDG" for b, _ in bases))


def stream_loop(code: list) -> list:
    """The kernel's main loop: of its innermost loops, the one with the most 16-byte cp.async
    copies (the shared-memory ring of channel.cuh's async walk on aligned rows), then the most
    copies (its 4-byte copies of unaligned ones), then the most 16-byte loads (the vector path
    a launch of aligned rows takes, not the scalar fallback beside it), then the most global
    loads; the first of equals."""
    spans = sass_report.loops(code)
    inner = [s for s in spans if not any(o != s and s[0] <= o[0] and o[1] <= s[1] for o in spans)]
    if not inner:
        return []
    first, last = max(inner, key=lambda s: (*_loads(code[s[0]:s[1] + 1]), -s[0]))
    return code[first:last + 1]


def loop_counts(body: list) -> dict:
    c = Counter(width(ins.op) for ins in body)
    kinds = Counter(sass_report.classify(ins.op) for ins in body)
    return {"instructions": len(body), "LDGSTS": _loads(body)[1], "LDG.128": c["LDG.128"], "LDG": c["LDG"],
            "STG.128": c["STG.128"], "STG": c["STG"], "FMA": kinds["FMA"], "integer": kinds["integer"],
            "CALL": sum(ins.op.startswith("CALL") for ins in body)}


def rows(arch: str = sass_report.ARCH) -> list[dict]:
    out = []
    for family, prefixes in FAMILIES.items():
        result = compile_check.compile_family(family, arch)
        ptx = {r["name"]: r for r in compile_check.rows([result], arch)}
        code = sass_report.parse_sass(sass_report.disassemble(sass_report.cubin(family, arch)))
        for name in sorted(ptx):
            if prefixes and not name.startswith(prefixes):
                continue
            out.append({"kernel": name, "registers": ptx[name]["registers"],
                        "blocks_per_sm": ptx[name]["blocks_per_sm"], **loop_counts(stream_loop(code[name]))})
    return out


def section(arch: str = sass_report.ARCH) -> str:
    return f"""## Direct and memory-bound kernels (gpucnn.runtime.sass_stream)

The main loop (of the innermost loops, the one with the most 16-byte
cp.async copies, then copies, then 16-byte loads, then global loads: the
path an aligned launch takes, not its fallback): cp.async copies (LDGSTS), loads and stores
by width (LDG.128, STG.128: 16-byte vectors), FFMA/DFMA/FADD counted as FMA
only for FFMA/DFMA, integer index arithmetic, and CALLs (division
subroutines; none should run per element).

{sass_report.markdown(rows(arch), COLUMNS)}
"""
