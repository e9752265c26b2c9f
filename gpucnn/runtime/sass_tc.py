"""The tensor-core kernels (kernels/tc_gemm.cuh) in sm_90 machine code: for
each, its k-step loop (the loop with the most HMMA that contains no other
loop with as many) counted by instruction class, with ptxas's registers and
the occupancy its dynamic shared memory allows. One section of
bench/results/static-sm90.md (gpucnn.runtime.sass_report writes it).
"""
from __future__ import annotations

from collections import Counter

from gpucnn.runtime import compile_check
from gpucnn.runtime.sass_report import ARCH, Instr, family_sass, integer_op, loops, markdown

TC_CLASSES = ("HMMA", "LDSM", "LDGSTS", "BAR", "LDS", "STS", "LDG", "integer", "other")
TC_COLUMNS = ("kernel", "instructions") + TC_CLASSES
TC_PTXAS_COLUMNS = ("name", "block", "registers", "dyn_smem", "stack", "spill_stores", "spill_loads",
                    "blocks_per_sm", "occupancy_pct", "limiter")


def tc_classify(op: str) -> str:
    base = op.split(".")[0]
    if base in TC_CLASSES:
        return base
    return "integer" if integer_op(base) else "other"


def k_step_loop(code: list[Instr]) -> list[Instr]:
    """The smallest loop holding the most HMMA and no other loop with HMMA: one
    step of TC_BK = 32 (the cp.async fetch loops nested in it included). The
    convolutions' kernels hold two, one per instantiation of a pass's part
    (kernels/conv.cuh: the padding test by tap masks, or by compares for
    filters with kh + kw > 31), inside one loop over (split, group) that
    holds the HMMA of both; the smaller is the masks' (the bench's filters)."""
    spans = loops(code)
    hmma = lambda s: sum(ins.op.startswith("HMMA") for ins in code[s[0]:s[1] + 1])  # noqa: E731
    inner = [s for s in spans if hmma(s) and not any(
        o != s and s[0] <= o[0] and o[1] <= s[1] and hmma(o) for o in spans)]
    if not inner:
        return []
    first, last = max(inner, key=lambda s: (hmma(s), -(s[1] - s[0])))
    return code[first:last + 1]


def tc_kernels(arch: str = ARCH) -> dict[str, list[str]]:
    """family -> its tensor-core kernels, by name in the cubin."""
    out = {}
    for family in ("conv2d", "conv2d_phase", "linear", "conv2d_fold"):
        names = sorted(n for n in family_sass(family, arch) if compile_check.tensor_core(n))
        if names:
            out[family] = names
    return out


def tc_rows(arch: str = ARCH) -> list[dict]:
    rows = []
    for family, names in tc_kernels(arch).items():
        code = family_sass(family, arch)
        for name in names:
            body = k_step_loop(code[name])
            c = Counter(tc_classify(ins.op) for ins in body)
            rows.append({"kernel": name, "instructions": len(body), **{k: c.get(k, 0) for k in TC_CLASSES}})
    return rows


def tc_ptxas_rows(arch: str = ARCH) -> list[dict]:
    keep = {n for names in tc_kernels(arch).values() for n in names}
    results = [compile_check.compile_family(f, arch) for f in tc_kernels(arch)]
    return [r for r in compile_check.rows(results, arch) if r["name"] in keep]


def section(arch: str = ARCH) -> str:
    return f"""## Tensor-core kernels (kernels/tc_gemm.cuh)

ptxas, with the occupancy that the dynamic shared memory of the tile
(`dyn_smem`: 3 cp.async stages, k-tables and handles) allows:

{markdown(tc_ptxas_rows(arch), TC_PTXAS_COLUMNS)}

The k-step loop (one step of TC_BK = 32 reduction indices, its cp.async
fetch loops included): HMMA is mma.sync m16n8k8 TF32 (per warp: 16 per k-slice
of 8 for the 64 x 32 warp tile of the 128 tile, 8 for the 32 x 32 warp tile of
the 64 tile, x3 in 3xTF32), LDSM is ldmatrix.x4, LDGSTS is cp.async (4-byte,
zero-filling; those in the nested fetch loops count once per loop body), BAR
the one barrier per step. The fold kernels (kernels/conv2d_fold.cu; their
dynamic shared memory is per shape, gpucnn.cuda.fold.plan, so `dyn_smem` is 0
and blocks_per_sm counts registers only) hold one step of FOLD_KC = 32 filters
in their step loop: 4 k-slices x NT tap tiles of HMMA, and, counted once, the
band's end (G's stores, the row tables and the fold's loops).

{markdown(tc_rows(arch), TC_COLUMNS)}
"""
