"""The generated record of the static performance model:
bench/results/predicted-<device>.md (``python -m gpucnn.bench.model --write``).
Its text depends only on the code and bench/results/static-sm90.md, except
the date line, which tests/test_perf_model.py leaves out of its comparison."""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from gpucnn.bench import cases, model, model_mem, model_static
from gpucnn.bench import model_consts as K

DATE_PREFIX = "Generated on "


def path(dev_key: str) -> Path:
    return model_static.RECORD.parent / f"predicted-{dev_key}.md"


def _rng(v, fmt="{:.1f}") -> str:
    """mid (lowest-highest) of a three-scenario list."""
    lo, hi = min(v), max(v)
    return f"{fmt.format(v[K.MID])} ({fmt.format(lo)}-{fmt.format(hi)})"


def md_table(head, rows) -> list[str]:
    """Markdown lines of a table: its head, the rule, a line a row (cells already text)."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def conv_section(dev, rec) -> list[str]:
    rows = model.conv_rows(dev, rec)
    body = [[r["case"], r["pass"], r["math"], model.describe(r["choice"]), r["ours"][K.MID]["kernel"],
             f"{r['flops'] / 1e9:.2f}", f"{r['ours'][K.MID]['executed_flops'] / r['flops']:.2f}",
             _rng(r["us"]), f"{r['cudnn_us']:.1f}", _rng(r["ratio"], "{:.2f}"), r["verdict"],
             _rng(r["kernels_ratio"], "{:.2f}")] for r in rows]
    tally = {m: {v: sum(r["math"] == m and r["verdict"] == v for r in rows) for v in ("pass", "open", "FAIL")}
             for m in model.MODES}
    return (["## Convolutions: our time against cuDNN's (target: at most 3x in every pass)", "",
             "FLOPs are the case's (cases.ConvCase.flops); 'run' is the FLOPs our kernel executes over "
             "them (tile fill, empty channel or tap slots). Times in us, the central prediction with "
             "the fast-slow range of our constants; cuDNN at its central constants. 'pass': under 3x "
             "over the whole range; 'FAIL': over it; 'open': the range straddles it. Both times are as "
             "the bench reads them (gpucnn.bench.timing: calls queued back to back, so a call takes the "
             "slower of its kernels and its host launch path, HOST_US or CUDNN_HOST_US); 'kernels only' "
             "is the ratio of the device times.", ""]
            + md_table(["case", "pass", "math", "algorithm", "kernel", "GFLOP", "run", "ours us", "cuDNN us",
                        "ours / cuDNN", "3x", "kernels only"], body)
            + ["", "Verdicts per math mode: " + "; ".join(
                f"{m}: " + ", ".join(f"{n} {v}" for v, n in t.items()) for m, t in tally.items()), ""])


def mem_section(dev, rec) -> list[str]:
    body = []
    for r in model_mem.mem_rows(dev, rec):
        st = r["stream"]
        body.append([st.op, st.shape, st.kernel, f"{r['bytes'] / 1e6:.1f}",
                     f"{r['have'] / 1024:.1f} / {r['need'] / 1024:.1f}", _rng(r["device_us"]),
                     _rng([100 * f for f in r["device_frac"]], "{:.0f}%"),
                     _rng([100 * f for f in r["bench_frac"]], "{:.0f}%"),
                     f">= {100 * st.target:.0f}%" if st.target else "-", r["verdict"]])
    return (["## Memory-bound kernels: fraction of the copy bandwidth", "",
             f"Copy bandwidth {dev.copy_tbs:.2f} TB/s (COPY_OF_HBM x {dev.hbm_tbs} TB/s). 'in flight / needed': "
             "KiB of DRAM reads a SM keeps in flight (blocks_per_sm x 256 threads x bytes a thread) against "
             "read share x bandwidth x latency / SMs (Little's law, at the central latency). 'device': the "
             "kernels alone; 'as timed': as the bench reads them, with the row's op's own host launch path "
             "a call (model_mem.HOST_BY_OP; HOST_MEM_US for an op not measured) "
             "(model_consts.timed), which the issue's targets are measured with. Verdicts on tensors of 25 "
             "MB or more.", ""]
            + md_table(["op", "shape", "kernel", "MB moved", "in flight / needed KiB", "device us",
                        "device fraction", "as timed", "target", "verdict"], body) + [""])


def fused_section(dev, rec) -> list[str]:
    body = [[r["case"], r["math"], model.describe(r["choice"]), _rng(r["fused_us"]), _rng(r["three_us"]),
             _rng(r["gain_three"], "{:.2f}"), f"{r['bound_three']['cudnn']:.2f}", f"{r['bound_three']['peak']:.2f}",
             r["verdict_three"], _rng(r["separate_us"]), _rng(r["gain"], "{:.2f}"), f"{r['bound']['cudnn']:.2f}",
             f"{r['bound']['peak']:.2f}", r["verdict"]]
            for r in model_mem.fused_rows(dev, rec)]
    bn = model_mem.bn_row(dev, rec)
    body.append([bn["shape"], "-", "batch_norm2d_relu: stats + apply", _rng(bn["fused_us"]), "-", "-", "-", "-", "-",
                 _rng(bn["separate_us"]), _rng(bn["gain"], "{:.2f}"), "-", "-", "-"])
    frac = [100 * f for f in bn["fraction"]]
    return (["## Fused conv2d_bias_relu against the three separate passes (target: three / fused >= 1.2)", "",
             "Fused: the forward GEMM with the bias and ReLU in its epilogue. Three passes (gpucnn/bench/fused.py, "
             "the issue's 'three separate passes'): the GEMM without the bias, a bias pass (batch norm's apply "
             "kernel: HOST_BN_APPLY_US) and relu_forward over y, two more op calls and launches. Separate (our "
             "unfused layers, counted apart): the GEMM with the bias, then relu_forward (HOST_RELU_FORWARD_US). "
             "All as the bench reads them (model_consts.timed). The saving (the passes and op calls) is the same "
             "whatever the GEMM, so each ratio falls as the GEMM slows: 'at cuDNN's rate' is the ratio "
             "with the GEMM at the time the model gives cuDNN in the bench's pairing (cudnn_kernels_us), 'at the "
             "peak' with it at the mode's arithmetic peak (FFMA for fp32, on Winograd's 16/36 of the products "
             "where its kernels run; dense TF32 for tf32, a third of it for 3xtf32) plus a launch "
             "(model_mem.fused_bound; central constants): no kernel of that mode reaches a higher ratio.", ""]
            + md_table(["case", "math", "algorithm", "fused us", "three passes us", "three / fused",
                        "at cuDNN's rate", "at the peak", "1.2x", "separate us", "separate / fused",
                        "at cuDNN's rate", "at the peak", "1.2x"], body)
            + ["", f"Batch-norm forward as fused.py times it (statistics, then the apply with the ReLU: "
               f"{bn['bytes'] / 1e6:.1f} MB moved, x read twice and y written): {_rng(frac, '{:.0f}%')} of "
               f"the copy bandwidth; issue 11's target {100 * K.TARGET_MAP:.0f}%, verdict "
               f"{model.verdict(min(frac), max(frac), 100 * K.TARGET_MAP, below=False)}.", ""])


def sweep_section(dev, rec) -> list[str]:
    body = [[r["op"], r["pass"], ", ".join(f"{b / 1e6:.1f} MB {t:.1f}" for b, t in r["points"]),
             f"{r['fit'][0]:.1f}", f"{r['fit'][1]:.2f}"] for r in model_mem.sweep_rows(dev, rec)]
    return (["## The size sweep (bench/ab_mem.py, gpu.sh's step 5d)", "",
             f"Batch norm's statistics, the bias gradient, batch norm's apply and ReLU forward on Nx64x32x32, N in "
             f"{', '.join(map(str, cases.SWEEP_N))}: the model's central device time (us) at each size's bytes "
             "moved, and its fit to fixed us + bytes / rate (model_mem.fit_line), which step 5d fits to the "
             "times in a graph alike. The reductions' fixed cost: a launch, the block tree and the election "
             "(LAUNCH_US, TREE_US, ELECT_US) and their one wave's round trips.", ""]
            + md_table(["op", "pass", "predicted device us", "fixed us", "rate TB/s"], body) + [""])


def _strip_bank(name: str) -> tuple[int, int, int, float]:
    """(bytes of filters a block of the strip kernel loads, the groups they are, its blocks, MB
    loaded in all) on case ``name``."""
    from gpucnn.cuda import algo, strip
    g = model.geometry(next(c for c in cases.CONV if c.name == name))
    blocks = -(-strip.threads(g) // algo.STRIP_THREADS)
    bank = algo.strip_bank_bytes(g, np.float32)
    return bank, algo.strip_bank_groups(g) or g.groups, blocks, bank * blocks / 1e6


def rivals_section(dev, rec) -> list[str]:
    bank, groups, blocks, mb = _strip_bank("depthwise")
    body = [[r["case"], r["pass"], r["math"], model.describe(r["heuristic"]), f"{r['heuristic_us']:.1f}",
             model.describe(r["rival"]) + ("" if r["rival"].math == r["math"] else f" ({r['rival'].math})"),
             f"{r['rival_us']:.1f}", f"{r['heuristic_us'] / r['rival_us']:.2f}"] for r in model.rivals(dev, rec)]
    return (["## Where the model prefers another algorithm", "",
             "The heuristic (gpucnn.cuda.algo) chooses without this model; here each case, pass and mode "
             f"for which one of autotuning's candidates has a central kernel time under {model.RIVAL_MARGIN} "
             "of the heuristic's choice's, with the fastest (model.rivals). Two guesses that disagree: "
             "bench/gpu.sh's autotuning step (--algo autotune) times the candidates of these cases on the GPU. "
             "The direct, window and strip kernels' times count their hot loops alone: one whose loop runs "
             "few times a thread spends more outside it than the model sees. The strip kernel on depthwise "
             "is such a case: one filter a group, so each thread runs its loop once per row tap. Each block "
             f"first loads the filters of the groups its threads meet into shared memory ({groups} groups, "
             f"{bank} bytes a block, {mb:.1f} MB of L2 reads over its {blocks} blocks; algo.strip_bank_groups).",
             ""] + md_table(["case", "pass", "math", "heuristic", "kernel us", "model's fastest", "kernel us",
                             "heuristic / fastest"], body) + [""])


def constants_section(dev) -> list[str]:
    d = [f"{dev.name}: {dev.sms} SMs at {dev.clock_ghz} GHz, HBM {dev.hbm_tbs} TB/s, FP32 {dev.fp32_tflops} "
         f"TFLOP/s, TF32 dense {dev.tf32_tflops} TFLOP/s, L2 {dev.l2_mb} MB ({K._DATASHEET})."]
    body = [[name, f"{c.fast:g}", f"{c.mid:g}", f"{c.slow:g}", c.unit, c.source]
            for name, c in K.constants().items()]
    return (["## Device and constants", ""] + d + [""]
            + md_table(["constant", "fast", "mid", "slow", "unit", "source"], body) + [""])


def text(dev_key: str, date: str | None = None, rec=None) -> str:
    dev = K.DEVICES[dev_key]
    rec = rec or model_static.load()
    date = date or datetime.date.today().isoformat()
    head = [f"# Predicted kernel times on the {dev.name}: a static model, not measurements", "",
            f"{DATE_PREFIX}{date} by `python -m gpucnn.bench.model --write`; tests/test_perf_model.py checks "
            "it is current.",
            "PREDICTIONS from bench/results/static-sm90.md (ptxas occupancy, SASS hot-loop counts) and the "
            "constants listed at the end (gpucnn/bench/model_consts.py); no GPU has run these kernels. "
            "The first GPU run (bash bench/gpu.sh) calibrates them: its bench.json conv rows carry "
            "`predicted_us` (the central value) beside the measurement.", ""]
    return "\n".join(head + conv_section(dev, rec) + mem_section(dev, rec) + sweep_section(dev, rec)
                     + fused_section(dev, rec) + rivals_section(dev, rec) + constants_section(dev))


def calibration(res) -> list[str]:
    """Markdown lines for a GPU run (report.table): each conv row's measured time in
    each of our math modes beside the model's prediction (empty without predictions)."""
    from gpucnn.bench import modes
    body = []
    for r in res["rows"]:
        for m, us in r.get("predicted_us", {}).items():
            ours = modes.PAIRS[m][0]
            if ours in r["ms"]:
                got = 1e3 * r["ms"][ours]
                body.append([r["case"], r["pass"], m, f"{us:.1f}", f"{got:.1f}", f"{got / us:.2f}"])
    if not body:
        return []
    return (["", "Measured against the static model's central prediction (gpucnn.bench.model; "
             "bench/results/predicted-*.md): 'measured / predicted' calibrates its constants.", ""]
            + md_table(["case", "pass", "math", "predicted us", "measured us", "measured / predicted"], body))


def fixed_costs(res) -> list[str]:
    """Markdown lines for a GPU run: each memory-bound case's same-size copy against the time its
    bytes take at the run's large-copy rate, called and replayed from a CUDA graph. The difference
    is the fixed cost of one call at that size, which model_consts.LAUNCH_US guesses (empty
    without such rows)."""
    lim = res.get("limits", {}).get("copy_gbps")
    seen, body = set(), []
    for r in res["rows"]:
        if r["kind"] != "mem" or "copy_ms" not in r or r["case"] in seen or not lim:
            continue
        seen.add(r["case"])
        ideal = 2 * r["tensor_bytes"] / (lim * 1e3)
        got = [1e3 * r["copy_ms"], 1e3 * r["graph"]["copy_ms"] if "copy_ms" in r.get("graph", {}) else None]
        body.append([r["case"], f"{r['tensor_bytes'] / 1e6:.1f}", f"{ideal:.1f}"]
                    + [f"{t:.1f}" if t is not None else "-" for t in got]
                    + [f"{t - ideal:.1f}" if t is not None else "-" for t in got])
    if not body:
        return []
    return (["", "Fixed costs at each memory-bound row's size: a copy of its input tensor, timed beside it, "
             f"against its bytes (read and written) at the run's large-copy rate ({lim:.0f} GB/s), called "
             "and replayed from a CUDA graph. The difference in a graph is the device's own cost a launch, "
             f"which model_consts.LAUNCH_US guesses ({K.LAUNCH_US.fast:g}-{K.LAUNCH_US.slow:g} us, never "
             "measured); called, plus the copy's host path where that is the slower.", ""]
            + md_table(["case", "MB", "at the large copy's rate us", "copy us", "in a graph us", "difference us",
                        "in a graph, difference us"], body))


def mem_calibration(res) -> list[str]:
    """Markdown lines for a GPU run: each memory-bound row the model has (``predicted``, from
    model.attach) against its measured times: the kernels alone (replayed from a CUDA graph)
    against the model's device time, and the call as the bench reads it against the model's."""
    body = []
    for r in res["rows"]:
        p, g = r.get("predicted"), r.get("graph", {})
        if p is None:
            continue
        got = 1e3 * r["ms"][res["ours"]]
        graph = [f"{1e3 * g['ms']:.1f}", f"{1e3 * g['ms'] / p['device_us']:.2f}"] if "ms" in g else ["-", "-"]
        body.append([r["case"], r["pass"], f"{p['device_us']:.1f}", *graph, f"{p['timed_us']:.1f}", f"{got:.1f}",
                     f"{got / p['timed_us']:.2f}"])
    if not body:
        return []
    return (["", "Memory-bound rows against the static model's central prediction (model_mem.predicted): "
             "the kernels alone, replayed from a CUDA graph, against its device time (waves, launches, "
             "LAUNCH_US); the call as timed against its host path and device time (model_consts.timed).", ""]
            + md_table(["case", "pass", "predicted device us", "in a graph us", "graph / predicted",
                        "predicted as timed us", "measured us", "measured / predicted"], body))


def without_date(t: str) -> str:
    return "\n".join(ln for ln in t.splitlines() if not ln.startswith(DATE_PREFIX))


def write(dev_key: str) -> Path:
    p = path(dev_key)
    p.write_text(text(dev_key))
    return p
