"""The tensor-core kernels (kernels/tc_gemm.cuh) in sm_90 machine code: for
each, its k-step loop (the loop with the most HMMA that contains no other
loop with as many) counted by instruction class and split by its branches
into what every warp issues, what one warp a step issues (the k-table) and
the two copy paths of which a launch takes one (``regions``), with ptxas's
registers and the occupancy its dynamic shared memory allows. One section of
bench/results/static-sm90.md (gpucnn.runtime.sass_report writes it).

Why the split: the loop counted once with every branch charged each warp both
copy paths of A and the k-table that one warp a step builds. For
conv2d_backward_filter_tf32_64 that was 457 instructions a k-step, where a
warp issues 245 common + 36 (the 16-byte copy of dy, resnet-stem's) = 281,
plus the 91 of the k-table on the step's building warp: 303.75 on average
(or 352.75 with the gathered copy, 85). The model (gpucnn.bench.model) reads
the average, so the k-table's cost shows as a quarter of a 4-warp block's and
an eighth of an 8-warp one's, which is what the SM's issue slots see.
"""
from __future__ import annotations

from collections import Counter

from gpucnn.runtime import compile_check
from gpucnn.runtime.sass_report import ARCH, Instr, family_sass, integer_op, loops, markdown

TC_CLASSES = ("HMMA", "HGMMA", "LDSM", "LDGSTS", "BAR", "LDS", "STS", "LDG", "integer", "other")
MMA_OPS = ("HMMA", "HGMMA")  # mma.sync, and wgmma (sm_90a)
TC_COLUMNS = ("kernel", "instructions", "listed", "common", "builder", "runs", "gather", "nested") + TC_CLASSES
TC_PTXAS_COLUMNS = ("name", "block", "registers", "dyn_smem", "stack", "spill_stores", "spill_loads",
                    "blocks_per_sm", "occupancy_pct", "limiter")


def tc_classify(op: str) -> str:
    base = op.split(".")[0]
    if base in TC_CLASSES:
        return base
    return "integer" if integer_op(base) else "other"


def k_step_loop(code: list[Instr]) -> list[Instr]:
    """The smallest loop holding the most HMMA (or HGMMA) and no other loop with them: one
    step of TC_BK = 32 (the cp.async fetch loops nested in it included). The
    convolutions' kernels hold two, one per instantiation of a pass's part
    (kernels/conv.cuh: the padding test by tap masks, or by compares for
    filters with kh + kw > 31), inside one loop over (split, group) that
    holds the HMMA of both; the smaller is the masks' (the bench's filters)."""
    spans = loops(code)
    hmma = lambda s: sum(ins.op.startswith(MMA_OPS) for ins in code[s[0]:s[1] + 1])  # noqa: E731
    inner = [s for s in spans if hmma(s) and not any(
        o != s and s[0] <= o[0] and o[1] <= s[1] and hmma(o) for o in spans)]
    if not inner:
        return []
    first, last = max(inner, key=lambda s: (hmma(s), -(s[1] - s[0])))
    return code[first:last + 1]


def _forward_branches(body: list[Instr]) -> list[tuple[int, int, bool]]:
    """(index, target index, guarded) of the branches that jump forward inside ``body``."""
    index = {ins.addr: i for i, ins in enumerate(body)}
    return [(i, index[ins.target], ins.guarded) for i, ins in enumerate(body)
            if ins.target is not None and ins.target > ins.addr and ins.target in index]


def _has(body: list[Instr], lo: int, hi: int, pred) -> bool:
    return any(pred(ins.op) for ins in body[lo:hi])


def regions(body: list[Instr]) -> list[str]:
    """Each instruction's region of the k-step loop (tc_tile's loop body), from its branches:
      "runs", "gather"  the two sides of an if/else whose one side copies 16-byte runs (LDGSTS.128):
                        tc_fetch's copy of an operand, uniform over a launch (tc_tile's runs_a), so
                        a launch issues one side, and the branch itself is common;
      "builder"         a guarded forward branch's skipped code that stores to shared memory (STS)
                        and copies and multiplies nothing: tc_tile's ktab, the k-table entries
                        of one step, written by one warp a step (warp 0, or warp s % WARPS where
                        the Op rotates them, TcRotate); the other warps branch over it;
      "common"          the rest, issued by every warp each step: the barrier, the MMAs, and the
                        fetch, which a guard skips only on the last TC_STAGES - 1 steps.
    Structure, not offsets: an if/else is a guarded branch whose target follows an unguarded
    forward branch (the then-side's jump over the else-side). A loop nested in the k-step (none
    now; conv.cuh's conv_miss once had two in the filter gradient's k-table) counts once, as the
    whole-loop count did (``nested``)."""
    label = ["common"] * len(body)
    branches = _forward_branches(body)
    jumps = {i: t for i, t, guarded in branches if not guarded}
    wide = lambda op: op.startswith("LDGSTS") and "128" in op.split(".")[1:]  # noqa: E731
    for i, j, guarded in branches:
        if not guarded:
            continue
        if j - 1 in jumps:  # if/else: then [i + 1, j), else [j, its end)
            sides = ((i + 1, j), (j, jumps[j - 1]))
            has_wide = [_has(body, lo, hi, wide) for lo, hi in sides]
            if has_wide.count(True) == 1:
                for (lo, hi), w in zip(sides, has_wide):
                    label[lo:hi] = ["runs" if w else "gather"] * (hi - lo)
        elif (_has(body, i + 1, j, lambda op: op.startswith("STS"))
              and not _has(body, i + 1, j, lambda op: op.startswith(("LDGSTS", "BAR") + MMA_OPS))):
            label[i + 1:j] = ["builder"] * (j - i - 1)
    return label


def tc_kernels(arch: str = ARCH) -> dict[str, list[str]]:
    """family -> its tensor-core kernels, by name in the cubin."""
    out = {}
    for family in ("conv2d", "conv2d_phase", "linear", "conv2d_fold", "conv2d_halo"):
        names = sorted(n for n in family_sass(family, arch) if compile_check.tensor_core(n))
        if names:
            out[family] = names
    return out


def k_step(body: list[Instr], warps: int, split: bool = True) -> dict:
    """The k-step's regions (``regions``) in instructions, and what a warp issues on average a step
    (``instructions``): the common code, the builder's 1/warps share (one warp of ``warps`` builds a
    step's k-table), and the gathered copy where an if/else chooses the copy (the model,
    gpucnn.bench.model_static.tc_issue, swaps in ``runs`` for a launch whose A has 16-byte runs).
    ``listed`` is the loop's length, each instruction once (the record's count before the split):
    common + builder + runs + gather. ``split`` False: all of it common (a loop that is not tc_tile's)."""
    c = Counter(regions(body) if split else ["common"] * len(body))
    issue = c["common"] + c["builder"] / warps + c["gather"]
    return {"instructions": round(issue, 2) if c["builder"] % warps else int(issue), "listed": len(body),
            "common": c["common"], "builder": c["builder"], "runs": c["runs"], "gather": c["gather"],
            "nested": sum(j - i + 1 for i, j in loops(body) if (i, j) != (0, len(body) - 1))}


def tc_rows(arch: str = ARCH) -> list[dict]:
    rows = []
    for family, names in tc_kernels(arch).items():
        code = family_sass(family, arch)
        threads = {k.name: k.block for k in compile_check.compile_family(family, arch).kernels.values()}
        for name in names:
            body = k_step_loop(code[name])
            c = Counter(tc_classify(ins.op) for ins in body)
            # the fold kernels' step loop is not tc_tile's: no copy choice, no k-table
            split = family != "conv2d_fold"
            rows.append({"kernel": name, **k_step(body, threads[name] // 32, split),
                         **{k: c.get(k, 0) for k in TC_CLASSES}})
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
fetch included), split by its branches (sass_tc.regions): `common` is issued
by every warp each step; `builder` is the k-table entries of one step, which
one warp a step builds (warp 0, or warp s % WARPS where the Op rotates them,
the filter gradient's); `runs` and `gather` are the two sides of the copy's
if/else (16-byte cp.async runs or 4-byte gathers, uniform over a launch, so a
launch issues one). `instructions` is what a warp issues on average a step
with the gathered copy: common + builder / WARPS + gather (the model takes
runs instead where the launch's A has them); `listed` is the loop's length,
each instruction once (common + builder + runs + gather, the count before
the split); `nested`, instructions in loops inside the k-step (counted
once). The class counts are of the listed loop: HMMA is mma.sync m16n8k8 TF32
(per warp: 16 per k-slice of 8 for the 64 x 32 warp tile of the 128 tile, 8
for the 32 x 32 warp tile of the 64 tile, x3 in 3xTF32), LDSM is
ldmatrix.x4, LDGSTS is cp.async (4-byte, zero-filling, and the 16-byte
runs), BAR the one barrier per step. The warpgroup tiles' kernels (`_128g`,
`_64g`, built for sm_90a) have HGMMA instead of HMMA and LDSM (per warp: 4
k-slices x 1 wgmma m64n128k8, x3 in 3xTF32) and two barriers a step (the
stage rounded to TF32 between them). The fold kernels
(kernels/conv2d_fold.cu; their dynamic shared memory is per shape,
gpucnn.cuda.fold.plan, so `dyn_smem` is 0 and blocks_per_sm counts registers
only) hold one step of FOLD_KC = 32 filters in their step loop: 4 k-slices x
NT tap tiles of HMMA, and, counted once, the band's end (G's stores, the row
tables and the fold's loops); their wgmma kernels (built for sm_90a, as the
loader builds the family on sm_90) 4 k-slices x chunks of up to 8 tap tiles
of HGMMA (wgmma m64nNk8 TF32: each chunk's N a case of a switch, all
counted). Their loop is not tc_tile's (no copy choice, no k-table), so all
of it is `common`.

{markdown(tc_rows(arch), TC_COLUMNS)}
"""
