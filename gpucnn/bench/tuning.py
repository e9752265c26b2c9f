"""What autotuning timed (``gpucnn bench --algo autotune``, bench/gpu.sh's step 5c): every
candidate algorithm of each convolution pass, beside the static model's prediction of it.

The heuristic (gpucnn.cuda.algo) and the model (gpucnn.bench.model) are two guesses that no
GPU has calibrated; a tuned run times all of autotuning's candidates on the device. Each conv
row of such a run carries ``tuning``: {our GPU backend: [{"algo", "us", "predicted_us"}, ...]},
the heuristic's choice first (gpucnn.cuda.autotune.candidates), "us" a call as tuning timed it
(calls queued back to back), "predicted_us" the model's central device time of that choice.

    python -m gpucnn.bench.tuning RUN.json [RUN.json ...]

prints, for every tuned pass, the heuristic's choice against the fastest candidate, then the
model's measured / predicted ratio by kind of algorithm: the two corrections a GPU run brings.
"""
from __future__ import annotations

import statistics
import sys


def attach(row: dict, case, pass_: str, names: list[str], device: tuple[int, int], dev_key: str) -> None:
    """Give a GPU conv row ``tuning`` for each of ``names`` (our GPU backends) whose pass tuning timed on
    ``device`` ((compute capability, SMs)), with the model's predictions for its device ``dev_key``."""
    from gpucnn import mathmode
    from gpucnn.bench import model, model_static, modes, run
    from gpucnn.bench import model_consts as K
    from gpucnn.cuda import autotune
    g, dev, rec, out = model.geometry(case), K.DEVICES[dev_key], model_static.load(), {}
    for n in names:
        if run.BACKENDS[n] != ("gpucnn", "cuda"):
            continue
        with mathmode.math_mode(modes.MODE_OF.get(n)):
            math = mathmode.effective(device[0])
        timed = autotune.timings(g, pass_, math)
        if timed:
            out[n] = [{"algo": model.describe(c), "math": c.math, "us": 1e6 * t,
                       "predicted_us": model.ours_us(case, pass_, c, dev, K.MID, rec)["kernels_us"]} for c, t in timed]
    if out:
        row["tuning"] = out


def _kind(cand: dict) -> str:
    """A candidate's kind for the model's calibration: its family, tile and math, without its splits."""
    return " ".join(w for w in cand["algo"].split() if not w.startswith("/")) + f" ({cand['math']})"


def table(res: dict) -> list[str]:
    """Markdown lines: each tuned pass's heuristic against its fastest candidate, then measured /
    predicted by kind of algorithm (empty where no row was tuned)."""
    from gpucnn.bench import modes
    from gpucnn.bench.model_report import md_table
    body, ratios = [], {}
    for r in res.get("rows", []):
        for n, cands in r.get("tuning", {}).items():
            heur, best = cands[0], min(cands, key=lambda c: c["us"])
            guess = min(cands, key=lambda c: c["predicted_us"])
            body.append([r["case"], r["pass"], modes.MODE_OF.get(n, n), heur["algo"], f"{heur['us']:.1f}",
                         best["algo"], f"{best['us']:.1f}", f"{heur['us'] / best['us']:.2f}", guess["algo"],
                         f"{guess['us'] / best['us']:.2f}"])
            for c in cands:
                ratios.setdefault(_kind(c), []).append(c["us"] / c["predicted_us"])
    if not body:
        return []
    kinds = [[k, str(len(v)), f"{statistics.median(v):.2f}", f"{min(v):.2f}", f"{max(v):.2f}"]
             for k, v in sorted(ratios.items())]
    return (["", "Autotuning: each tuned pass's candidates timed on the device (a call, calls queued back to "
             "back); 'heuristic / fastest' above 1 is what the heuristic (gpucnn.cuda.algo) lost there, 'model's "
             "pick / fastest' what choosing by the static model's prediction would have lost.", ""]
            + md_table(["case", "pass", "math", "heuristic", "us", "fastest", "us", "heuristic / fastest",
                        "model's pick", "model's pick / fastest"], body)
            + ["", "Measured / predicted (the model's central device time) by kind of algorithm, over every "
               "candidate timed: the correction each kind's constants need.", ""]
            + md_table(["algorithm", "candidates", "median", "min", "max"], kinds))


def replay(res: dict, device: tuple[int, int] = (90, 132)) -> list[dict]:
    """The heuristic as the code stands now (gpucnn.cuda.algo), replayed on a tuned run's timings:
    per tuned pass {case, pass, math, algo (its choice now), us (as tuning timed that choice; None
    where it was not a candidate), fastest_us}. ``device``: the run's (compute capability, SMs)."""
    import numpy as np
    from gpucnn.bench import cases, model, modes
    from gpucnn.cuda import algo
    by_name, out = {c.name: c for c in cases.CONV}, []
    for r in res.get("rows", []):
        case = by_name.get(r.get("name"))
        if case is None or not r.get("tuning"):
            continue
        g = model.geometry(case.with_batch(r["batch"]))
        for n, cands in r["tuning"].items():
            math = modes.MODE_OF.get(n, n)
            c = algo.choose(g, r["pass"], np.float32, math, device[1], device[0])
            name, timed = model.describe(c), {(x["algo"], x["math"]): x["us"] for x in cands}
            out.append({"case": r["case"], "pass": r["pass"], "math": math, "algo": name,
                        "us": timed.get((name, c.math)), "fastest_us": min(timed.values())})
    return out


def replay_table(res: dict) -> list[str]:
    """Markdown lines: ``replay``'s choices against the fastest candidate, and their geometric mean."""
    from gpucnn.bench.model_report import md_table
    rows = replay(res)
    if not rows:
        return []
    lost = [r["us"] / r["fastest_us"] for r in rows if r["us"] is not None]
    body = [[r["case"], r["pass"], r["math"], r["algo"], "not timed" if r["us"] is None else f"{r['us']:.1f}",
             f"{r['fastest_us']:.1f}", "-" if r["us"] is None else f"{r['us'] / r['fastest_us']:.2f}"] for r in rows]
    mean = statistics.geometric_mean(lost) if lost else float("nan")
    return (["", f"The heuristic as the code stands now, replayed on these timings: geometric mean of its "
             f"choice / the fastest {mean:.3f} over {len(lost)} passes ({len(rows) - len(lost)} choices not "
             f"among the candidates timed).", ""]
            + md_table(["case", "pass", "math", "heuristic now", "us", "fastest us", "now / fastest"], body))


def main(argv=None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(__doc__.strip())
        return 2
    from gpucnn.bench import targets
    runs = {p: targets.load(p) for p in paths}  # a run cut short: the rows its partial.jsonl kept
    lines = [ln for res in runs.values() if res is not None for ln in table(res) + replay_table(res)]
    print("\n".join(lines) if lines else "no tuned pass")
    missing = [p for p, res in runs.items() if res is None]
    if missing:
        print("not found (a step that wrote nothing): " + ", ".join(missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
