"""A/B of memory-bound kernel variants on a GPU: each variant of an op timed
side by side in one process, interleaved (gpucnn.bench.timing), as called
(8 calls a sample) and replayed from a CUDA graph (the device alone), with the
copy of the same input tensor timed beside them as the run's own limit.

    python bench/ab_mem.py [--budget SECONDS]

Variants: gpucnn.bench.variants (pooling forward's pair kernels against the
generic ones; the channel reductions in one wave of blocks and in four; the
statistics through shared memory too, and with their four results in one
allocation), on the suite's cases (bench.cases.MEM).

Prints one row a case and variant: ms called and in a graph, GB/s of the
pass's bytes (cases.nbytes), and the fraction of the copy's rate. Then a size
sweep (``sweep_rows``): the reductions (batch norm's statistics, the bias
gradient) and two map kernels (batch norm's apply, ReLU) on Nx64x32x32 for
four batches, 8.4 to 67.1 MB of input (cases.SWEEP), in a graph beside the
same-size copy, each op's times fitted by t = fixed + bytes / rate
(model_mem.fit_line), and the model's prediction of them fitted alike. The
H200 run of 2026-11-30 (bench/results/gpu-2026-11-30-s21, in a graph) had two
sizes a row, 33.6 and 102.8 MB of differing plane sizes: at the rate of ReLU,
batch norm's apply and the copy (0.24 us a MB, ~4.2 TB/s), which paid 1.7-2.5
us of fixed cost, the statistics paid 7.2-7.6 us and the bias gradient
5.5-8.8 (session 21's kernels: session 23 shortened the reductions' tail).
Where the rest goes, the tail (one wave, the block tree, the last chunk's
election) or the stream, a sweep on one plane size says; the model puts the
fixed cost at 2.6 us (bench/results/predicted-h200.md). bench/gpu.sh runs it
as step 5d; the stand-in CuPy (bench/standin_gpu.py) runs it in CI.
"""
from __future__ import annotations

import argparse

from gpucnn.bench import cases, limits, model, model_consts, model_mem, ops, run, timing
from gpucnn.bench.variants import VARIANTS, wrap


def _copy_run(case, copies: int) -> tuple:
    """The copy of ``case``'s input timed beside its kernels: the run's own limit."""
    return limits.copier("cuda"), limits.copy_pairs("cuda", case.tensor_bytes(), copies)


def rows(budget: float, copies: int = 3) -> list[dict]:
    out = []
    for case in cases.MEM:  # a case's passes together: its inputs are drawn once (ops' memo)
        for direction, variants in ((d, v) for (op, d), v in VARIANTS.items() if op == case.op):
            fn, inputs = ops.build(case, direction, "gpucnn", "cuda", copies)
            runs = {v: (wrap(fn, spec), inputs) for v, spec in variants.items()}
            runs["copy"] = _copy_run(case, copies)
            called = timing.interleaved(timing.CudaClock(), runs, budget_s=budget)
            graph = timing.interleaved(timing.GraphClock(), runs, budget_s=budget)
            copy_rate = 2 * case.tensor_bytes() / (graph["copy"]["ms"] * 1e-3)  # read and written, in a graph
            nbytes = case.nbytes(direction)
            for v in variants:
                c, g = called[v]["ms"], graph[v]["ms"]
                out.append({"case": case.label(), "pass": direction, "variant": v, "ms": c, "graph_ms": g,
                            "gbps": nbytes / (c * 1e6), "graph_gbps": nbytes / (g * 1e6),
                            "of_copy": nbytes / (g * 1e-3) / copy_rate})
    return out


def sweep_rows(budget: float, copies: int = 3, batches=cases.SWEEP_N) -> list[dict]:
    """Each cases.SWEEP op's default kernels on its sweep case for each batch of ``batches``, timed in
    a graph interleaved with the copy of the same input: one row an op and batch, with the model's
    central prediction of the kernels' time (model_mem.predicted_case, for this GPU: model.device_key)."""
    dev = model_consts.DEVICES[model.device_key(run.machine("cuda").get("gpu", ""))]
    out = []
    for op, direction in cases.SWEEP:
        runs, sweep = {}, []
        for n in batches:
            case = cases.sweep_case(op, n)
            runs[f"{n}"] = ops.build(case, direction, "gpucnn", "cuda", copies)
            runs[f"copy {n}"] = _copy_run(case, copies)
            sweep.append((n, case))
        graph = timing.interleaved(timing.GraphClock(), runs, budget_s=budget)
        for n, case in sweep:
            out.append({"op": op, "pass": direction, "case": case.label(), "nbytes": case.nbytes(direction),
                        "graph_ms": graph[f"{n}"]["ms"], "copy_ms": graph[f"copy {n}"]["ms"],
                        "copy_bytes": 2 * case.tensor_bytes(),
                        "predicted_us": model_mem.predicted_case(case, direction, dev)["device_us"]})
    return out


def sweep_table(rows: list[dict]) -> list[str]:
    """The sweep's rows, then the fits (model_mem.fit_line) of each op, of the model's prediction of
    it and of the copy beside it, as Markdown lines."""
    lines = ["", "| op | pass | case | MB moved | ms in a graph | GB/s | predicted ms | copy ms | copy GB/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['pass']} | {r['case']} | {r['nbytes'] / 1e6:.1f} | {r['graph_ms']:.4f} | "
                     f"{r['nbytes'] / (r['graph_ms'] * 1e6):.0f} | {r['predicted_us'] / 1e3:.4f} | "
                     f"{r['copy_ms']:.4f} | {r['copy_bytes'] / (r['copy_ms'] * 1e6):.0f} |")
    lines += ["", "| op | pass | fixed us | rate TB/s | predicted fixed us | predicted TB/s | the copy's fixed us "
              "| the copy's TB/s |", "|---|---|---|---|---|---|---|---|"]
    for op, direction in cases.SWEEP:
        mine = [r for r in rows if (r["op"], r["pass"]) == (op, direction)]
        if len(mine) < 2:
            continue
        fits = [model_mem.fit_line([(r[b], r[t] * k) for r in mine]) for b, t, k in
                (("nbytes", "graph_ms", 1e3), ("nbytes", "predicted_us", 1), ("copy_bytes", "copy_ms", 1e3))]
        lines.append(f"| {op} | {direction} | " + " | ".join(f"{a:.1f} | {r:.2f}" for a, r in fits) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=0.3, help="seconds of samples a case and clock")
    args = ap.parse_args(argv)
    print("| case | pass | variant | ms called | ms in a graph | GB/s called | GB/s in a graph | "
          "of the copy's rate, in a graph |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows(args.budget):
        print(f"| {r['case']} | {r['pass']} | {r['variant']} | {r['ms']:.4f} | {r['graph_ms']:.4f} | "
              f"{r['gbps']:.0f} | {r['graph_gbps']:.0f} | {r['of_copy']:.0%} |")
    print("\n".join(sweep_table(sweep_rows(args.budget))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
