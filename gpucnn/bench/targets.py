"""Issue 11's targets read off measured runs (``gpucnn bench``'s JSON), the verdicts that
``gpucnn.bench.model`` can only predict:

  conv   every convolution pass at most TARGET_RATIO (3) x cuDNN's time in the same math mode
         (modes.PAIRS: tf32 against cuDNN with TF32, 3xtf32 and fp32 against cuDNN without);
  mem    ReLU, pooling forward and batch norm's forward (the apply) at TARGET_MAP (85%) of the
         copy bandwidth measured in the same run, batch norm's statistics and backward and the
         bias gradient (the reductions) at TARGET_REDUCTION (70%), on tensors of TARGET_MIN_BYTES
         (25 MB) or more; the verdict is on the large copy of the run's limits, and a row's
         fraction of a copy of its own input tensor, timed beside it, is shown in brackets, and
         both again with the calls replayed from a CUDA graph (the device's time alone); where
         the run timed them on our launch path too (modes.DRIVER), those rows again, counted apart
         (MEM_DRIVER);
  fused  conv2d_bias_relu at least TARGET_FUSED (1.2) x faster than the three separate passes
         (the convolution, its bias, its ReLU: fused.py's "three passes") on mnist-2 and
         cifar-resnet; the same goal against our unfused layers, whose convolution adds its
         bias in its epilogue (fused.py's "separate": two passes), is read beside it and
         counted apart (FUSED_LAYERS).

    python -m gpucnn.bench.targets RUN.json [RUN.json ...]

prints them as a Markdown table (gpu.sh's runs are one JSON per part: mem, bench, fused; a
run cut short is read from the partial.jsonl it left).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from gpucnn.bench import fused, modes, report
from gpucnn.bench import model_consts as K

# (memory-bound op, pass) -> the fraction of the copy bandwidth the issue asks
MEM_TARGETS = {("relu", "forward"): K.TARGET_MAP, ("relu", "backward"): K.TARGET_MAP,
               ("max_pool", "forward"): K.TARGET_MAP, ("avg_pool", "forward"): K.TARGET_MAP,
               ("batchnorm", "forward"): K.TARGET_MAP, ("batchnorm", "stats"): K.TARGET_REDUCTION,
               ("batchnorm", "backward"): K.TARGET_REDUCTION, ("bias_grad", "backward"): K.TARGET_REDUCTION}


# The memory rows again on our launch path (modes.DRIVER), where the run timed it: beside the
# verdicts, which are on the default launch path's
MEM_DRIVER = "mem, GPUCNN_LAUNCH=driver"
# The fused rows against our unfused layers (conv with its bias, then ReLU), beside the issue's
# three separate passes
FUSED_LAYERS = "fused, against our unfused layers"


def verdicts(res: dict) -> list[dict]:
    """One dict per target a GPU run measured: kind, case, pass, mode, value, goal, ok."""
    out = []
    if res.get("device") != "cuda":
        return out  # the targets are a GPU's

    def add(kind, r, pass_, mode, value, goal, at_least, algo=""):
        out.append({"kind": kind, "case": r["case"], "pass": pass_, "mode": mode, "value": value, "goal": goal,
                    "ok": value >= goal if at_least else value <= goal, "algo": algo,
                    "same_copy": r.get("fraction_of_same_copy") if kind.startswith("mem") else None,
                    "graph": r.get("graph") if kind == "mem" and "ms" in r.get("graph", {}) else None})
    for r in res.get("rows", []):
        if r["batch"] != r["full_batch"]:
            continue  # a scaled-down case (a CPU run) is not the suite's
        if r["kind"] == "conv":
            for mode, (ours, peer, _) in modes.PAIRS.items():
                if ours in r["ms"] and peer in r["ms"]:
                    add("conv", r, r["pass"], mode, r["ms"][ours] / r["ms"][peer], K.TARGET_RATIO, False,
                        r.get("algo", {}).get(ours, ""))
        elif (r["op"], r["pass"]) in MEM_TARGETS and r.get("tensor_bytes", 0) >= K.TARGET_MIN_BYTES:
            ours = next(iter(r["ms"]))  # the run's first backend
            add("mem", r, r["pass"], ours, r["fraction_of_limit"], MEM_TARGETS[r["op"], r["pass"]], True)
            if modes.DRIVER in r["ms"] and ours != modes.DRIVER:  # the same row on our launch path, beside it
                faster = r["ms"][ours] / r["ms"][modes.DRIVER]
                add(MEM_DRIVER, {**r, "fraction_of_same_copy": r.get("fraction_of_same_copy", 0) * faster or None},
                    r["pass"], modes.DRIVER, r["fraction_of_limit"] * faster, MEM_TARGETS[r["op"], r["pass"]], True)
    for r in res.get("fused", []):
        if r["op"] == fused.OP["conv"] and r["name"] in fused.CONV_CASES and r["batch"] == r["full_batch"]:
            mode = modes.MODE_OF.get(r["ours"], r["ours"])
            if "speedup_three" in r:  # a run before session 28 timed the unfused layers only
                add("fused", r, "forward", mode, r["speedup_three"], K.TARGET_FUSED, True)
            add(FUSED_LAYERS, r, "forward", mode, r["speedup"], K.TARGET_FUSED, True)
    return out


def table(found: list[dict]) -> list[str]:
    """Markdown lines: each verdict, then the count of each kind's passes (empty for none)."""
    if not found:
        return []
    lines = ["", "Issue 11's targets, measured (conv: our time over cuDNN's in the same mode, at most the goal; "
             "mem: the fraction of the copy bandwidth, and in brackets of a copy of the row's input "
             "tensor timed beside it, whose fixed costs at that size are the row's too, then both with "
             "the calls replayed from a CUDA graph (the device's time alone; the verdict is on the calls); "
             "fused: three separate passes / fused, at least the goal; then against our unfused layers, "
             "separate / fused, counted apart):", "",
             "| target | case | pass | mode | algorithm | measured | goal | verdict |", "|---|---|---|---|---|---|---|---|"]
    for v in found:
        value = f"{100 * v['value']:.0f}%" if v["kind"].startswith("mem") else f"{v['value']:.2f}"
        if v.get("same_copy") is not None:
            value += f" ({100 * v['same_copy']:.0f}% of a same-size copy)"
        if v.get("graph") is not None:
            value += f"; in a graph {report.fractions(v['graph'])}"
        goal = f"{100 * v['goal']:.0f}%" if v["kind"].startswith("mem") else f"{v['goal']:.2f}"
        lines.append(f"| {v['kind']} | {v['case']} | {v['pass']} | {v['mode']} | {v['algo'] or '-'} | {value} | "
                     f"{goal} | {'pass' if v['ok'] else 'FAIL'} |")
    kinds = dict.fromkeys(v["kind"] for v in found)
    counts = [f"{k}: {sum(v['ok'] for v in found if v['kind'] == k)} of {sum(v['kind'] == k for v in found)} pass"
              + (_graph_count(found) if k == "mem" else "") for k in kinds]
    return lines + ["", "; ".join(counts)]


def _graph_count(found: list[dict]) -> str:
    """The memory rows' count again on their CUDA-graph replays (the device's time alone), where
    the run has them: beside the verdict, which is on the calls."""
    graphs = [v["graph"]["fraction_of_limit"] >= v["goal"] for v in found
              if v["kind"] == "mem" and v.get("graph") is not None and "fraction_of_limit" in v["graph"]]
    return f" ({sum(graphs)} of {len(graphs)} in a graph)" if graphs else ""


def load(path: str) -> dict | None:
    """A run's result: its JSON, or the rows a run cut short kept (partial.jsonl: a line a row, with
    its section and device); None where there is no such file."""
    p = Path(path)
    if not p.is_file():
        return None
    if p.suffix != ".jsonl":
        return json.loads(p.read_text())
    lines = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return {"device": lines[0]["device"] if lines else None,
            "rows": [r for r in lines if r["section"] == "rows"], "fused": [r for r in lines if r["section"] == "fused"]}


def main(argv=None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(__doc__.strip())
        return 2
    runs = {p: load(p) for p in paths}
    missing = [p for p, res in runs.items() if res is None]
    found = [v for res in runs.values() if res is not None for v in verdicts(res)]
    print("\n".join(table(found)) if found else "no target measured")
    if missing:
        print("not found (a step that wrote nothing): " + ", ".join(missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
