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
pass's bytes (cases.nbytes), and the fraction of the copy's rate. bench/gpu.sh
runs it as step 5d; the stand-in CuPy (bench/standin_gpu.py) runs it in CI.
"""
from __future__ import annotations

import argparse

from gpucnn.bench import cases, limits, ops, timing
from gpucnn.bench.variants import VARIANTS, wrap


def rows(budget: float, copies: int = 3) -> list[dict]:
    out = []
    for case in cases.MEM:  # a case's passes together: its inputs are drawn once (ops' memo)
        for direction, variants in ((d, v) for (op, d), v in VARIANTS.items() if op == case.op):
            fn, inputs = ops.build(case, direction, "gpucnn", "cuda", copies)
            runs = {v: (wrap(fn, spec), inputs) for v, spec in variants.items()}
            runs["copy"] = (limits.copier("cuda"), limits.copy_pairs("cuda", case.tensor_bytes(), copies))
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
