"""A static performance model of the convolution kernels: PREDICTIONS, not
measurements, for an H200 or H100, derived from the committed static record
(bench/results/static-sm90.md: ptxas occupancy, SASS hot-loop counts) and the
constants of gpucnn.bench.model_consts; no GPU and no compiler needed.

    python -m gpucnn.bench.model [--device h200|h100] [--write]

prints the tables (``--write``: bench/results/predicted-<device>.md;
tests/test_perf_model.py checks that those files are current). The first GPU
run (bash bench/gpu.sh) compares: bench.json's conv rows carry the central
prediction as ``predicted_us``.

A conv pass, per family of gpucnn.cuda.algo.choose (asked exactly as
gpucnn.cuda.conv._choose asks it, never re-derived):
  gemm, phase  block tiles of the record's kernel: a k-step of one block takes
               max(warps x loop instructions / 4, its FFMA or HMMA pipe time)
               / efficiency SM clocks; the tiles' wasted fill counts. A
               tensor-core warp's loop instructions are its average a step
               (model_static.tc_issue): the common code, 1/WARPS of the
               k-table one warp a step builds, and the copy path of A the
               launch takes (a_runs): conv2d_backward_filter_tf32_64 on
               resnet-stem 245 + 91 / 4 + 36 = 303.75, not the 457 of the
               loop with every branch once. Blocks
               run in waves of SMs x blocks_per_sm: a block alone on an SM
               gets the whole SM (fast) or only its share (slow); mid is the mean
  halo         the tasks of gpucnn.cuda.halo's plan as a tile's blocks, its 8-channel
               steps as k-steps (the record's step loop), and a launch more (the weights)
  wino         likewise gpucnn.cuda.wino's tasks (32 filters x 32 blocks of 2x2 outputs) and
               8-channel steps (the record's step loop: 512 FFMA a thread, the Winograd
               products), and a launch more (the weights)
  direct,      useful FMAs (plus a thread's empty channel or window slots,
  window,      or the strip kernel's zero taps and partial strips) x
  strip        the loop's instructions per FMA, at the issue rate / efficiency
Shared-memory wavefronts are not modelled: a 64x64 FFMA k-step's 36 LDS.128
a warp (1-2 wavefronts each, broadcasts) stay under its 462 issue slots.
Then max(that, compulsory bytes / copy bandwidth) + a split's partial pass
+ launches x LAUNCH_US, against HOST_US of host launch path a call as the
bench times them (model_consts.timed: calls queued back to back, so the
slower of the two shows). cuDNN: max(FLOPs / rate, bytes / bandwidth) +
launch, against CUDNN_HOST_US likewise, the rate
of the bench's pairing (gpucnn.bench.modes: 3xtf32 and fp32 against cuDNN
without TF32).
"""
from __future__ import annotations

import argparse
import dataclasses
import heapq

import numpy as np

from gpucnn.bench import cases, model_static, modes
from gpucnn.bench import model_consts as K
from gpucnn.cuda import algo, depthwise, fold, gemm, halo, strip, tc, wino
from gpucnn.functional.conv import _conv_geometry

cdiv = algo.cdiv
F32 = cases.F32
MODES = algo.MATH_MODES


def geometry(case):
    """The bench's geometry of a ConvCase (gpucnn.bench.ops._gpucnn_fn builds it so)."""
    return _conv_geometry((case.N, case.C, case.H, case.W), (case.K, case.C // case.groups, case.R, case.S),
                          case.stride, case.pad, case.dilation, case.groups)


def choice(case, pass_, math_, dev):
    """gpucnn.cuda.conv._choose's call, with the device's SM count and sm_90."""
    return algo.choose(geometry(case), pass_, np.float32, math=math_, sms=dev.sms, cc=90)


@dataclasses.dataclass(frozen=True)
class Work:
    """A launch's work as the model sees it: groups of (blocks, k-steps) on one
    kernel, the SM clocks of one block's k-step (efficiency included), the
    blocks resident on an SM (ptxas) and the FLOPs the tiles execute."""
    kernel: str
    groups: tuple          # ((blocks, steps), ...)
    step_cycles: float
    per_sm: int
    executed_flops: float


def _gemm_kernel(pass_, c, rec):
    """(record name, row) of the tile kernel of choice ``c`` (swap: the transposed
    filter GEMM's ``_t`` kernel, or the plain one until the record has it)."""
    base = f"conv2d_{pass_}"
    if c.math == "fp32":
        tail = ("_m32" if c.tile[0] == 32 else "") + "_f32"
    else:
        tail = f"_{c.math}_{c.edge}"
    names = [base + tail]
    if getattr(c, "swap", False):
        names.insert(0, base + "_t" + tail)
    return model_static.row(rec, *names)


def a_runs(g, pass_) -> bool:
    """Whether the tensor-core tile copies A in 16-byte runs (kernels/conv2d.cu's Ops' a_runs(), the
    bench's fresh tensors aligned; a split's chunks are whole k-steps): the filters' Cg*kh*kw taps
    (forward) or kh*kw (backward-data), dy's P*Q pixels (filter gradient) in multiples of 4."""
    w = g.win
    along_k = {"forward": g.C // g.groups * w.kh * w.kw, "backward_data": w.kh * w.kw, "backward_filter": w.P * w.Q}
    return along_k[pass_] % 4 == 0


def mma_flops_per_clock(dev, of_peak: float) -> float:
    """An SM's TF32 tensor-core FLOPs a clock at ``of_peak`` of the dense peak."""
    return dev.tf32_tflops * 1e12 / (dev.sms * dev.clock_ghz * 1e9) * of_peak


def tile_step_cycles(r: dict, threads: int, dev, s: int, runs: bool = False) -> float:
    """SM clocks of one block's k-step: its warps' loop instructions at the
    issue rate (model_static.tc_issue: a warp's average a step, the copy's
    side ``runs`` takes), or its FFMA / HMMA pipe time if longer, over the efficiency."""
    warps = threads / 32
    issue = warps * model_static.tc_issue(r, runs) / K.ISSUE_PER_CLOCK.mid
    if r.get("HGMMA"):  # a warpgroup tile: each warpgroup's wgmma, issued by its 4 warps
        per_clock = mma_flops_per_clock(dev, K.WGMMA_OF_PEAK.at(s))
        return max(issue, warps / 4 * r["HGMMA"] * K.HGMMA_FLOPS.mid / per_clock) / K.EFF_TC.at(s)
    if "HMMA" in r:
        per_clock = mma_flops_per_clock(dev, K.MMA_SYNC_OF_PEAK.at(s))
        return max(issue, warps * r["HMMA"] * K.HMMA_FLOPS.mid / per_clock) / K.EFF_TC.at(s)
    return max(issue, warps * r["FMA"] / K.FFMA_PER_CLOCK.mid) / K.EFF_FFMA.at(s)


def gemm_work(g, pass_, c, rec, dev, s) -> Work:
    rows, cols, red = algo.gemm_shape(g, pass_)
    if getattr(c, "swap", False):
        rows, cols = cols, rows
    bm, bn, bk = c.tile
    name, r = _gemm_kernel(pass_, c, rec)
    threads = r.get("block") or gemm.FFMA_TILES[bm][2]
    blocks = cdiv(rows, bm) * cdiv(cols, bn) * g.groups * c.splits
    steps = cdiv(c.chunk or red, bk)
    runs = c.math != "fp32" and not getattr(c, "swap", False) and a_runs(g, pass_)
    return Work(name, ((blocks, steps),), tile_step_cycles(r, threads, dev, s, runs), r["blocks_per_sm"],
                2.0 * blocks * bm * bn * bk * steps)


def phase_work(g, c, rec, dev, s) -> Work:
    """conv2d_phase.cu: one dense GEMM per stride phase (gpucnn.cuda.phase's grid) on
    choice ``c``'s tile, FFMA or tensor-core."""
    w = g.win
    bm, bn, bk = c.tile
    tail = "_f32" if c.math == "fp32" else f"_{c.math}_{c.edge}"
    name, r = model_static.row(rec, "conv2d_backward_data_phase" + tail)
    tiles = cdiv(g.C // g.groups, bm) * cdiv(g.N * cdiv(w.H, w.sh) * cdiv(w.W, w.sw), bn) * g.groups
    groups = tuple((tiles, cdiv(g.K // g.groups * taps, bk)) for taps in algo.phase_tap_grid(g))
    flops = sum(2.0 * n * bm * bn * bk * st for n, st in groups)
    threads = r.get("block") or gemm.FFMA_TILES[bm][2]
    return Work(name, groups, tile_step_cycles(r, threads, dev, s), r["blocks_per_sm"], flops)


def halo_work(g, pass_, c, rec, dev, s) -> Work:
    """kernels/conv2d_halo.cu on gpucnn.cuda.halo's plan (backward-data: of the transposed
    problem): a task a block (64 filters x th x tw pixels), its 8-channel steps as a tile's
    k-steps (the record's step loop: 9 taps of 16 MMAs a warp, the copies' 16-byte side), as
    many blocks an SM as registers and shared memory allow."""
    p = halo.plan(g if pass_ == "forward" else halo.transposed(g))
    wg = "wg_" if c.family == "halowg" else ""
    name, r = model_static.row(rec, f"conv2d_halo_forward_{wg}{c.math}_f32")
    if wg:  # its wgmma are m64n64k8: half the m64n128k8 of HGMMA_FLOPS each
        r = dict(r, HGMMA=r["HGMMA"] * 64 / 128)
    per_sm = min(r["blocks_per_sm"], p.blocks_per_sm(c.math))
    flops = 2.0 * p.tasks * halo.BM * halo.BN * halo.CK * halo.TAPS * p.steps
    return Work(name, ((p.tasks, p.steps),), tile_step_cycles(r, halo.THREADS, dev, s, True), per_sm, flops)


def wino_work(g, pass_, rec, dev, s) -> Work:
    """kernels/conv2d_wino.cu (backward-data: of the transposed problem): a task a block, its
    8-channel steps as a tile's k-steps, the record's step loop (the FFMA tile table: 512 FFMA a
    thread, 16 points x 32 filters x 32 blocks x 8 channels a block's step). Executed FLOPs are
    the Winograd products, 16/36 of the direct sum's where every block is full."""
    gt = g if pass_ == "forward" else wino.transposed(g)
    name, r = model_static.row(rec, "conv2d_wino_forward_f32")
    tasks, steps = wino.tasks(gt), wino.steps(gt)
    flops = 2.0 * tasks * wino.XI * wino.BK * wino.BP * wino.CK * steps
    return Work(name, ((tasks, steps),), tile_step_cycles(r, wino.THREADS, dev, s), r["blocks_per_sm"], flops)


def list_schedule(groups, slots: int) -> int:
    """The makespan, in block-steps, of groups of (blocks, steps) issued in
    order (grid z: the phase family's stride phases one after another) to
    ``slots`` identical slots, each block to the slot that frees first. With
    one group it is whole waves of its steps; 1x1-s2's backward-data
    phases of no taps take no time after its one live phase, and
    cifar-resnet-s2's four phases (4, 2, 2, 1 taps) share one wave."""
    free = [0] * slots  # a heap of the slots' free times
    for n, steps in groups:
        if steps == 0:
            continue
        whole, rest = divmod(n, slots)  # whole rounds of every slot: the heap's order is unchanged
        if whole:
            free = [t + whole * steps for t in free]
        for _ in range(rest):
            heapq.heapreplace(free, free[0] + steps)
    return max(free)


def tile_cycles(work: Work, dev, s) -> float:
    """SM clocks of a tiled launch. fast: the busiest SM's blocks at the whole SM's
    rate; slow: per_sm blocks sharing an SM, each block issued in grid order
    to the first free slot (list_schedule); mid: their mean."""
    blocks = sum(n for n, _ in work.groups)
    longest = max(st for _, st in work.groups)
    mean = sum(n * st for n, st in work.groups) / blocks
    fast = max(cdiv(blocks, dev.sms) * mean, longest) * work.step_cycles
    slow = list_schedule(work.groups, dev.sms * work.per_sm) * work.per_sm * work.step_cycles
    return (fast, (fast + slow) / 2, slow)[s]


def direct_fill(g, pass_, c) -> tuple[str, float]:
    """(record name, FMAs run per useful FMA) of the direct and window kernels."""
    Cg = g.C // g.groups
    if c.family == "strip":  # conv2d_strip.cu: whole strips of pixels, whole chunks of taps
        return f"conv2d_strip_backward_data_c{Cg}_f32", strip.fill(g)
    if c.family == "window":
        taps = algo.phase_taps(g)  # a window runs whole chunks of WINDOW_TAPS tap slots
        return "depthwise_backward_data_window_f32", cdiv(taps, algo.WINDOW_TAPS) * algo.WINDOW_TAPS / taps
    if pass_ == "backward_data":
        if Cg == 1:
            return "depthwise_backward_data_c1_f32", 1.0
        return "depthwise_backward_data_f32", cdiv(Cg, depthwise.CHANNEL_BLOCK) * depthwise.CHANNEL_BLOCK / Cg
    if pass_ == "forward":
        return depthwise.forward_kernel(g) + "_f32", 1.0
    return depthwise.filter_kernel(g) + "_f32", 1.0


def fold_us(g, rec, dev, s) -> tuple[str, float, float]:
    """(kernel, executed FLOPs, us) of kernels/conv2d_fold.cu on gpucnn.cuda.fold's plan: whole
    waves of tasks (fold.blocks_per_sm an SM), a task's bands one after another, each its MMAs
    at mma.sync's rate, or wgmma's where the plan takes those kernels (WGMMA_OF_PEAK), (their steps'
    instructions, fold.band_step_issue, issuing beside them) and then its fold at the
    issue rate; blocks sharing an SM overlap one's fold with another's MMAs (fold.band_sm_clocks)."""
    p = fold.plan(g, dev.sms)
    name, r = model_static.row(rec, p.kernel + "_f32")
    per_sm = min(r["blocks_per_sm"], fold.blocks_per_sm(p))
    per_clock = mma_flops_per_clock(dev, (K.WGMMA_OF_PEAK if p.wg else K.MMA_SYNC_OF_PEAK).at(s))
    mma = fold.band_mmas(g, p) * K.HMMA_FLOPS.mid / per_clock / K.EFF_TC.at(s)
    mma_issue = fold.band_step_issue(g, p) / K.ISSUE_PER_CLOCK.mid / K.EFF_TC.at(s)
    issue = fold.band_fold_issue(g, p) / 32 / K.ISSUE_PER_CLOCK.mid / K.EFF_DIRECT.at(s)
    slots = dev.sms * per_sm
    waves = (p.tasks / slots, (p.tasks / slots + cdiv(p.tasks, slots)) / 2, cdiv(p.tasks, slots))[s]
    cycles = waves * p.bands * fold.band_sm_clocks(mma, issue, per_sm, mma_issue)
    flops = K.HMMA_FLOPS.mid * fold.band_mmas(g, p) * p.bands * p.tasks
    return name, flops, cycles / (dev.clock_ghz * 1e3)


def direct_us(case, g, pass_, c, rec, dev, s) -> tuple[str, float, float]:
    """(kernel, executed FLOPs, us): the record loop's instructions per FMA at the issue rate."""
    name, waste = direct_fill(g, pass_, c)
    name, r = model_static.row(rec, name)
    fmas = case.flops() / 2 * waste
    warp_instr = fmas * r["instructions"] / r["FMA"] / 32
    cycles = warp_instr / (K.ISSUE_PER_CLOCK.mid * dev.sms) / K.EFF_DIRECT.at(s)
    if pass_ == "backward_filter":  # a block per (filter, chunk): few blocks, so whole waves count
        blocks, slots = case.K * c.splits, dev.sms * r["blocks_per_sm"]
        cycles *= (1.0, 1.0, cdiv(blocks, slots) * slots / blocks)[s]
    return name, 2 * fmas, cycles / (dev.clock_ghz * 1e3)


def out_elems(case, pass_) -> int:
    P, Q = case.out_hw()
    return {"forward": case.N * case.K * P * Q, "backward_data": case.N * case.C * case.H * case.W,
            "backward_filter": case.K * case.C // case.groups * case.R * case.S}[pass_]


def bw_us(nbytes: float, dev) -> float:
    return nbytes / (dev.copy_tbs * 1e6)


def ours_us(case, pass_, c, dev, s, rec) -> dict:
    """Our predicted time in scenario ``s`` and how it splits. A forward
    without bias launches nothing for it (conv.EPI_BIAS clear), so the bench's
    bias-less rows and the fused rows' biased ones launch alike."""
    g = geometry(case)
    if c.family in ("gemm", "phase", "wino", *algo.HALO_FAMILIES):
        if c.family == "gemm":
            work = gemm_work(g, pass_, c, rec, dev, s)
        elif c.family == "phase":
            work = phase_work(g, c, rec, dev, s)
        elif c.family == "wino":
            work = wino_work(g, pass_, rec, dev, s)
        else:
            work = halo_work(g, pass_, c, rec, dev, s)
        kernel, flops = work.kernel, work.executed_flops
        compute = tile_cycles(work, dev, s) / (dev.clock_ghz * 1e3)
    elif c.family == "fold":
        kernel, flops, compute = fold_us(g, rec, dev, s)
    else:
        kernel, flops, compute = direct_us(case, g, pass_, c, rec, dev, s)
    # Split parts are written whole (S - 1 outputs beyond the compulsory one),
    # then conv2d_sum_splits reads the S parts and writes the sum.
    out_bytes = out_elems(case, pass_) * F32
    memory = bw_us(case.nbytes() + (c.splits - 1) * out_bytes, dev)
    split = bw_us((c.splits + 1) * out_bytes, dev) if c.splits > 1 else 0.0
    # the halo and Winograd kernels' weights go first
    launches = 1 + (c.splits > 1) + (c.family in (*algo.HALO_FAMILIES, "wino"))
    kernels = max(compute, memory) + split + launches * K.LAUNCH_US.at(s)
    return {"kernel": kernel, "executed_flops": flops, "compute_us": compute, "memory_us": memory,
            "split_us": split, "kernels_us": kernels, "us": K.timed(kernels, K.HOST_US.at(s))}


def cudnn_kernels_us(case, math_, dev) -> float:
    """The device time of the peer the bench pairs with ``math_`` (modes.PAIRS):
    cuDNN with TF32 for "tf32", without it for "3xtf32" and "fp32"."""
    tf32 = modes.PAIRS[math_][1] == "torch-cudnn-tf32"
    rate = dev.tf32_tflops * K.CUDNN_TF32_OF_PEAK.mid if tf32 else dev.fp32_tflops * K.CUDNN_FP32_OF_PEAK.mid
    return max(case.flops() / (rate * 1e6), bw_us(case.nbytes(), dev)) + K.LAUNCH_US.mid


def cudnn_us(case, math_, dev) -> float:
    """cudnn_kernels_us as the bench times it, with PyTorch's host path."""
    return K.timed(cudnn_kernels_us(case, math_, dev), K.CUDNN_HOST_US.mid)


def verdict(lo: float, hi: float, target: float, below: bool = True) -> str:
    """pass / fail / open (the range straddles the target); ``below``: smaller is better."""
    ok_all, ok_none = (hi <= target, lo > target) if below else (lo >= target, hi < target)
    return "pass" if ok_all else "FAIL" if ok_none else "open"


def conv_rows(dev, rec=None) -> list[dict]:
    rec = rec or model_static.load()
    out = []
    for case in cases.CONV:
        for pass_ in algo.PASSES:
            for m in MODES:
                c = choice(case, pass_, m, dev)
                ours = [ours_us(case, pass_, c, dev, s, rec) for s in K.SCENARIOS]
                peer = cudnn_us(case, m, dev)
                ratio = [o["us"] / peer for o in ours]
                # the kernels alone, without either side's host launch path
                alone = [o["kernels_us"] / cudnn_kernels_us(case, m, dev) for o in ours]
                out.append({"case": case.name, "pass": pass_, "math": m, "choice": c, "flops": case.flops(),
                            "ours": ours, "us": [o["us"] for o in ours], "cudnn_us": peer, "ratio": ratio,
                            "kernels_ratio": alone, "verdict": verdict(min(ratio), max(ratio), K.TARGET_RATIO)})
    return out


RIVAL_MARGIN = 0.9  # a candidate the model puts under this fraction of the heuristic's kernel time


def rivals(dev, rec=None) -> list[dict]:
    """Where the model disagrees with the heuristic: each case, pass and mode for which one of
    autotuning's candidates (gpucnn.cuda.autotune.candidates) has a central kernel time under
    RIVAL_MARGIN of the heuristic's choice's, with the fastest such. The heuristic and the model
    are two guesses; gpu.sh's autotuning step times the candidates on the GPU."""
    from gpucnn.cuda import autotune
    rec = rec or model_static.load()
    out = []
    for case in cases.CONV:
        g = geometry(case)
        for pass_ in algo.PASSES:
            for m in MODES:
                timed = [(ours_us(case, pass_, c, dev, K.MID, rec)["kernels_us"], i, c)
                         for i, c in enumerate(autotune.candidates(g, pass_, np.float32, m, dev.sms, 90))]
                best = min(timed)
                if best[0] < RIVAL_MARGIN * timed[0][0]:
                    out.append({"case": case.name, "pass": pass_, "math": m, "heuristic": timed[0][2],
                                "heuristic_us": timed[0][0], "rival": best[2], "rival_us": best[0]})
    return out


def predicted_us(case_name: str, pass_: str, math_: str, dev_key: str = "h200") -> float | None:
    """The central prediction for a bench row (None for a case the suite does not have)."""
    case = next((c for c in cases.CONV if c.name == case_name), None)
    if case is None or pass_ not in algo.PASSES:
        return None
    dev = K.DEVICES[dev_key]
    return ours_us(case, pass_, choice(case, pass_, math_, dev), dev, K.MID, model_static.load())["us"]


def device_key(gpu_name: str) -> str:
    """The model's device for a GPU's name (an H100 by name, else the H200)."""
    return "h100" if "H100" in gpu_name else "h200"


def attach(rows: list[dict], gpu_name: str) -> None:
    """Give a GPU run's full-batch conv rows ``predicted_us``: {math mode: the
    central prediction}, and its memory-bound rows the model has ``predicted``:
    {"device_us", "timed_us"} (model_mem.predicted), so that the run calibrates the model."""
    from gpucnn.bench import model_mem
    key = device_key(gpu_name)
    for r in rows:
        if r["batch"] != r["full_batch"]:
            continue
        if r.get("kind") == "conv":
            r["predicted_us"] = {m: predicted_us(r["name"], r["pass"], m, key) for m in MODES}
        elif (p := model_mem.predicted(r["op"], r["pass"], r["case"], K.DEVICES[key])) is not None:
            r["predicted"] = p


def describe(c) -> str:
    if c.family in ("gemm", "phase"):
        tile = "x".join(map(str, c.tile)) + (" wgmma" if c.edge in tc.WG_TILES else "")
        swap = " swap" if getattr(c, "swap", False) else ""
        return f"{c.family} {tile}" + (f" /{c.splits}" if c.splits > 1 else "") + swap
    return c.family + (f" /{c.splits}" if c.splits > 1 else "")


def main(argv=None) -> int:
    from gpucnn.bench import model_report
    ap = argparse.ArgumentParser(prog="python -m gpucnn.bench.model", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=sorted(K.DEVICES), default="h200")
    ap.add_argument("--write", action="store_true", help="write bench/results/predicted-<device>.md for both devices")
    args = ap.parse_args(argv)
    if args.write:
        for key in K.DEVICES:
            print(f"wrote {model_report.write(key)}")
    else:
        print(model_report.text(args.device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
