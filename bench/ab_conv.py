"""A/B of the GEMM tiles' occupancy on a GPU: the kernels as built and built
for more blocks an SM (gpucnn.bench.variants.CONV: the tensor-core 64 tile's
4, the FFMA wide tile's forward and backward data 3), each convolution pass
of a few cases in tf32 and 3xtf32 on the 64 tile (forced) and in fp32 on the
FFMA wide (64-row) tile, both builds timed side by side in one process,
interleaved and replayed from a CUDA graph (gpucnn.bench.timing: the device's
time alone).

    python bench/ab_conv.py [--budget SECONDS] [--only CASES]

The launches are the same in both (grid, splits: gpucnn.cuda.tc counts the
tiles' blocks an SM as built); only the kernels' registers, and so how many
blocks share an SM, differ. bench/gpu.sh runs it as step 5e, after step 2c
has compiled both builds (bench/gpu_launches.py's compile jobs); the stand-in
CuPy (bench/standin_gpu.py) runs it in CI.
"""
from __future__ import annotations

import argparse

import gpucnn
from gpucnn.bench import cases, ops, timing
from gpucnn.bench.variants import CONV, switches
from gpucnn.cuda import tc

CASES = "resnet-3x3,cifar-resnet,cifar-resnet-s2,resnet-7x7x512"  # the 64 tile's workload (tuned.md)
MODES = ("tf32", "3xtf32", "fp32")
PASSES = ("forward", "backward_data", "backward_filter")


def _on_64(fn, mode, settings):
    def run(*args):  # fp32: the FFMA wide tile, which these cases' 64 or more filters take
        with gpucnn.math_mode(mode), tc.force_tile(64), switches(settings):
            return fn(*args)
    return run


def rows(budget: float, only: str = CASES, copies: int = 2) -> list[dict]:
    out = []
    for case in (c for c in cases.CONV if cases.matches(only, c.label())):
        for direction in PASSES:
            fn, inputs = ops.build(case, direction, "gpucnn", "cuda", copies)
            for mode in MODES:
                runs = {v: (_on_64(fn, mode, spec), inputs) for v, spec in CONV.items()}
                graph = timing.interleaved(timing.GraphClock(), runs, budget_s=budget)
                base = graph["as built"]["ms"]
                out += [{"case": case.label(), "pass": direction, "mode": mode, "variant": v,
                         "graph_ms": graph[v]["ms"], "of_built": graph[v]["ms"] / base} for v in CONV]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=0.2, help="seconds of samples a case, pass and mode")
    ap.add_argument("--only", default=CASES, help="cases whose label contains one of these comma-separated parts")
    args = ap.parse_args(argv)
    print("| case | pass | mode | variant | ms in a graph | over as built |")
    print("|---|---|---|---|---|---|")
    for r in rows(args.budget, args.only):
        print(f"| {r['case']} | {r['pass']} | {r['mode']} | {r['variant']} | {r['graph_ms']:.4f} | "
              f"{r['of_built']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
