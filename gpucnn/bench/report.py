"""A run's table (Markdown, for the terminal and the README), its JSON file
and its roofline chart: every kernel against the measured limits."""
from __future__ import annotations

import json
from pathlib import Path


def fmt_ms(ms):
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def table(res) -> str:
    """Markdown: one line per case and pass, then the geometric means."""
    names, ours = res["backends"], res["ours"]
    peers = names[1:]
    lim = res["limits"]
    head = (["case", "batch", "pass"] + [f"{n} ms" for n in names] + ["GFLOP/s or GB/s", "of limit"]
            + [f"x {p}" for p in peers])
    lines = [f"Device: {res['machine'].get('gpu') or res['machine'].get('cpu')}; limits measured in this run: "
             f"copy {lim['copy_gbps']:.1f} GB/s, float32 matmul {lim['matmul_gflops']:.0f} GFLOP/s; "
             f"threads {res['threads']}, OMP_WAIT_POLICY {res.get('omp_wait_policy')}; "
             f"load average at the end {res.get('load_average')}.",
             f"Times are medians; 'x peer' is {ours}'s time over the peer's (below 1 is faster). "
             "A batch 'a of b' ran a of the suite's b images. A memory-bound row's 'of limit' is "
             "followed by its fraction of a copy of its input tensor timed beside it (the fixed costs "
             "at that size), in brackets; on a GPU, after 'graph', the same two with the op's calls "
             "and the copy's each replayed from a CUDA graph, as a training step runs them: the device's "
             "time without the host's launch path."]
    if res["rows"]:
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in res["rows"]:
        batch = str(r["batch"]) if r["batch"] == r["full_batch"] else f"{r['batch']} of {r['full_batch']}"
        rate = f"{r['gflops']:.1f} GFLOP/s" if r["kind"] == "conv" else f"{r['gbps']:.1f} GB/s"
        cells = ([r["case"], batch, r["pass"]]
                 + [fmt_ms(r["ms"][n]) for n in names] + [rate, of_limit(r)]
                 + [f"{r['ratio'][p]:.2f}" for p in peers])
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"- {r['case']} {r['pass']}: no graph: {r['graph']['why']}" for r in res["rows"]
              if "why" in r.get("graph", {})]
    if peers and res["rows"]:
        lines += ["", "Geometric mean of the time ratio, " + ours + " over each peer:", "",
                  "| op and pass | " + " | ".join(peers) + " |", "|---|" + "---|" * len(peers)]
        for key, g in res["geomean_ratio"].items():
            lines.append(f"| {key} | " + " | ".join(f"{g[p]:.2f}" for p in peers) + " |")
    from gpucnn.bench import fused, model_report, modes, targets, tuning
    lines += (modes.table(res) + model_report.calibration(res) + tuning.table(res) + model_report.mem_calibration(res)
              + model_report.fixed_costs(res) + fused.table(res)
              + targets.table(targets.verdicts(res)))
    if res.get("train"):
        lines += step_table(res["train"], ours)
    return "\n".join(lines) + "\n"


def of_limit(r) -> str:
    """A row's fraction of the run's limit; a memory-bound row's also of its same-size copy, in
    brackets, and on a GPU both again with the calls replayed from a CUDA graph."""
    return fractions(r) + (f"; graph {fractions(r['graph'])}" if "ms" in r.get("graph", {}) else "")


def fractions(r) -> str:
    """"X% (Y%)": a memory-bound row's (or its graph's) fraction of the run's limit, and of its same-size copy."""
    same = r.get("fraction_of_same_copy")
    return f"{100 * r['fraction_of_limit']:.0f}%" + ("" if same is None else f" ({100 * same:.0f}%)")


def _mib(b):
    return "-" if b is None else f"{b / 2**20:.1f}"


def step_table(rows, ours) -> list[str]:
    """Lines of the training-step table: images/s of each, ours over each peer, peak memory, then notes."""
    peers = list(dict.fromkeys(p for r in rows for p in r["results"]))
    memory = any(r.get("ours", {}).get("peak_bytes") is not None for r in rows)
    cpu = any("threads" in r for r in rows)
    head = (["training step", "input", "batch"] + ["threads", "busy core"] * cpu + [f"{ours} images/s"]
            + [f"{p} images/s" for p in peers] + [f"x {p}" for p in peers]
            + [f"{ours} ms (q1-q3)", f"{ours} vs 1 thread"] * cpu
            + ([f"{ours} peak MiB"] + [f"{p} peak MiB" for p in peers]) * memory)
    lines = ["", f"One training step (forward, backward, SGD with momentum); 'x peer' is {ours}'s images/s "
             "over the peer's (above 1 is faster).", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for r in rows:
        if "error" in r:
            notes.append(f"{r['model']}: {r['error']}")
            continue
        res = [r["ours"]] + [r["results"].get(p, {}) for p in peers]
        graph = " (eager)" if r["ours"]["why"] else ""
        cells = ([r["model"], "x".join(map(str, r["input"])), str(r["batch"])] + _cpu_cells(r) * cpu
                 + [f"{e['images_per_s']:.0f}" if "ms" in e else "-" for e in res]
                 + [f"{r['ratio'][p]:.2f}" if p in r["ratio"] else "-" for p in peers]
                 + ([f"{r['ours']['ms']:.1f} ({r['ours']['q1']:.1f}-{r['ours']['q3']:.1f})",
                     f"{r['vs_one_thread']:.2f}"] if cpu else [])  # a GPU row has neither
                 + [_mib(e.get("peak_bytes")) for e in res] * memory)
        cells[3 + 2 * cpu] += graph
        lines.append("| " + " | ".join(cells) + " |")
        if r["ours"]["why"]:
            notes.append(f"{r['model']}: {ours} ran eagerly: {r['ours']['why']}")
        notes += [f"{r['model']}: {p}: {e['error']}" for p, e in r["results"].items() if "error" in e]
    return lines + ([""] + [f"- {n}" for n in notes] if notes else [])


def _cpu_cells(r):
    return [str(r.get("threads", "-")), "yes" if r.get("busy") else "no"]


def write_json(res, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")
    return path


def roofline(res, path) -> Path | None:
    """Draw every kernel (ours) at its arithmetic intensity against the
    ceilings min(matmul rate, intensity x copy bandwidth); None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    lim = res["limits"]
    bw, peak = lim["copy_gbps"], lim["matmul_gflops"]
    rows = [r for r in res["rows"] if r["flops"] and r["bytes"]]
    ai = [r["flops"] / r["bytes"] for r in rows]
    lo, hi = min(ai + [peak / bw]) / 4, max(ai + [peak / bw]) * 4
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    fig, ax = plt.subplots(figsize=(9, 6))
    ax.loglog(xs, [min(peak, x * bw) for x in xs], "k-", lw=2,
              label=f"limits: copy {bw:.0f} GB/s, matmul {peak:.0f} GFLOP/s")
    styles = {"forward": "o", "backward_data": "s", "backward_filter": "^", "backward": "v"}
    colors = {"conv": "tab:blue", "max_pool": "tab:red", "avg_pool": "tab:orange", "relu": "tab:green"}
    seen = set()
    for r, x in zip(rows, ai):
        key = (r["op"], r["pass"])
        ax.loglog(x, r["flops"] / (r["ms"][res["ours"]] * 1e6), styles.get(r["pass"], "o"),
                  color=colors.get(r["op"], "gray"), label=None if key in seen else f"{r['op']} {r['pass']}")
        seen.add(key)
    ax.set_xlabel("arithmetic intensity (operations per byte of compulsory traffic)")
    ax.set_ylabel("GFLOP/s (memory-bound ops: operations per second)")
    who = res["machine"].get("gpu") or res["machine"].get("cpu") or res["device"]
    ax.set_title(f"{res['ours']} on {who}, {res['date'][:10]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _stem(res):
    """bench-DEVICE-DATE, or bench-DEVICE-steps-DATE (-fused-) for a run of the step (fused) rows only,
    so that they fit one folder."""
    only = "-steps" if res.get("steps_only") else "-fused" if res.get("fused_only") else ""
    return f"bench-{res['device']}{only}-{res['date'][:10]}"


def save(res, out_dir) -> dict:
    """Write TABLE.md, JSON and PNG into out_dir; returns their paths (the PNG's may be None)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = _stem(res)
    (out / f"{stem}.md").write_text(table(res))
    return {"json": write_json(res, out / f"{stem}.json"), "table": out / f"{stem}.md",
            "png": roofline(res, out / f"{stem}.png")}
