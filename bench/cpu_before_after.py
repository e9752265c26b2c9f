"""Training step of the NumPy backend before and after a change, against
PyTorch CPU: one step of each model (batch 64, SGD with momentum) of this
checkout's gpucnn, of another checkout's (``--base``, e.g. from
``git archive e9c535d | tar -x -C /tmp/base``) and of PyTorch, at 1 and 2
threads (the same on all sides), all six timed in one interleaved loop;
then again with one core kept busy by a competing process
(``gpucnn.bench.cpu_steps.busy_core``). The base checkout is imported as a
renamed copy, ``gpucnn_base``, so that both run in one process.

    python bench/cpu_before_after.py --base /tmp/base --out bench/results/DIR
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as gpucnn bench: torch's idle threads sleep
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from gpucnn.bench import cases, cpu_steps, run, steps, timing  # noqa: E402


def _renamed_copy(base: Path) -> str:
    """A copy of base's gpucnn package as gpucnn_base in a temporary folder; its path."""
    root = Path(tempfile.mkdtemp(prefix="gpucnn_base_"))
    shutil.copytree(base / "gpucnn", root / "gpucnn_base")
    for f in (root / "gpucnn_base").rglob("*.py"):
        f.write_text(re.sub(r"\bgpucnn\b", "gpucnn_base", f.read_text()))
    return str(root)


def _ours(pkg, name, shape, xs, ys):
    nn = __import__(f"{pkg}.nn", fromlist=["MODELS"])
    model = nn.MODELS[name](shape, 10, rng=np.random.default_rng(0))
    loss_fn, opt = nn.CrossEntropyLoss(), nn.SGD(model, steps.LR, momentum=steps.MOMENTUM)
    # What each checkout's training loop runs: without backward_params (before
    # 2026-11-28's second session) the first layer's input gradient too.
    backward = getattr(model, "backward_params", model.backward)

    def step(x, y):
        loss_fn.forward(model.forward(x), y)
        backward(loss_fn.backward())
        opt.step()
    return step, model


def _rows(name, shape, sides, counts, busy, budget_s):
    runs = {f"{side}@{t}": (cpu_steps._at(t, fn, side == "torch-cpu"), inputs)
            for t in counts for side, (fn, inputs) in sides.items()}
    res = timing.interleaved(timing.CpuClock(), runs, budget_s=budget_s, min_reps=7)
    out = []
    for t in counts:
        r = {"model": name, "threads": t, "busy": busy}
        r.update({side: {k: res[f"{side}@{t}"][k] for k in ("ms", "q1", "q3", "samples")} for side in sides})
        out.append(r)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, type=Path, help="a checkout of the commit to compare against")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--budget", type=float, default=20.0, help="seconds of timed steps per model and load")
    p.add_argument("--only", help="models whose name contains this")
    args = p.parse_args(argv)
    sys.path.insert(0, _renamed_copy(args.base))
    run._setup_threads(1)
    counts = [t for t in (1, 2) if t <= cpu_steps.cores()]
    rows = []
    for name, shape, classes, _ in steps.models(args.only):
        rng = np.random.default_rng(0)
        xs, ys = steps._inputs(rng, shape, classes, cpu_steps.CPU_BATCH)
        base_fn, model = _ours("gpucnn_base", name, shape, xs, ys)
        new_fn, _ = _ours("gpucnn", name, shape, xs, ys)
        torch_fn, torch_inputs = steps._torch(model, xs, ys, "cpu", False)
        sides = {"base": (base_fn, list(zip(xs, ys))), "new": (new_fn, list(zip(xs, ys))),
                 "torch-cpu": (torch_fn, torch_inputs)}
        rows += _rows(name, shape, sides, counts, False, args.budget)
        with cpu_steps.busy_core():
            rows += _rows(name, shape, sides, counts, True, args.budget)
        print(name, "done", file=sys.stderr, flush=True)
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "machine": run.machine("cpu"),
           "versions": run.versions(), "load_average": run._loadavg(), "batch": cpu_steps.CPU_BATCH,
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "steps_before_after.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "steps_before_after.md").write_text(table(res))
    print(table(res))


def _ms(e):
    return f"{e['ms']:.1f} ({e['q1']:.1f}-{e['q3']:.1f})"


def table(res) -> str:
    lines = [f"Training step, batch {res['batch']}, median ms (quartiles); {res['date'][:16]} UTC, "
             f"{res['machine'].get('cpu')}, {res['machine']['cpus']} CPUs, load average {res['load_average']}",
             "", "| model | threads | busy core | base | new | torch-cpu | base / torch | new / torch | "
             "new / new at 1 thread |", "|---|---|---|---|---|---|---|---|---|"]
    one = {(r["model"], r["busy"]): r["new"]["ms"] for r in res["rows"] if r["threads"] == 1}
    for r in res["rows"]:
        t = r["torch-cpu"]["ms"]
        lines.append(f"| {r['model']} | {r['threads']} | {'yes' if r['busy'] else 'no'} | {_ms(r['base'])} | "
                     f"{_ms(r['new'])} | {_ms(r['torch-cpu'])} | {r['base']['ms'] / t:.2f} | "
                     f"{r['new']['ms'] / t:.2f} | {r['new']['ms'] / one[(r['model'], r['busy'])]:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
