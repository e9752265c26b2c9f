"""A/B of the GEMM tiles' occupancy on a GPU: the kernels as built and in two
other builds (gpucnn.bench.variants.CONV: "fewer blocks an SM", session 19's
FFMA wide tile at 2 blocks and TF32's tensor-core wide tile at 3 stages and 2
blocks; "more blocks an SM", the tensor-core 64 tile at 4 blocks), each
convolution pass of a few cases in tf32 and 3xtf32 on the 64 tile (forced),
in fp32 on the FFMA wide (64-row) tile and in tf32 on the wide tile (forced),
every build timed side by side in one process, interleaved and replayed from
a CUDA graph (gpucnn.bench.timing: the device's time alone). A build that
leaves a row's kernels as they are times the run's noise there.

    python bench/ab_conv.py [--budget SECONDS] [--only CASES]

The launches are the same in every build (grid, splits: gpucnn.cuda.tc counts
the tiles' blocks an SM as built); only the kernels' registers, and so how many
blocks share an SM, differ (and the wide tile's shared memory, which the launch
asks for as the build has it: tc.build_smem). bench/gpu.sh runs it as step 5e, after step 2c
has compiled the builds (bench/gpu_launches.py's compile jobs); the stand-in
CuPy (bench/standin_gpu.py) runs it in CI.
"""
from __future__ import annotations

import argparse

import gpucnn
from gpucnn.bench import cases, ops, timing
from gpucnn.bench.variants import CONV, switches
from gpucnn.cuda import tc

CASES = "resnet-3x3,cifar-resnet,cifar-resnet-s2,resnet-7x7x512"  # the 64 tile's workload (tuned.md)
RUNS = (("tf32", 64), ("tf32", "64w"), ("3xtf32", 64), ("fp32", "FFMA"))  # (math mode, tile)
PASSES = ("forward", "backward_data", "backward_filter")


def _on(fn, mode, tile, settings):
    def run(*args):  # fp32: the FFMA wide tile, which these cases' 64 or more filters take
        with gpucnn.math_mode(mode), tc.force_tile(64 if tile == "FFMA" else tile), switches(settings):
            return fn(*args)
    return run


def rows(budget: float, only: str = CASES, copies: int = 2) -> list[dict]:
    return [r for group in groups(budget, only, copies) for r in group]


def groups(budget: float, only: str = CASES, copies: int = 2):
    """Each case, pass, mode and tile's rows (every build) as they are timed: a step cut short by
    its time box keeps the table printed so far."""
    for case in (c for c in cases.CONV if cases.matches(only, c.label())):
        for direction in PASSES:
            fn, inputs = ops.build(case, direction, "gpucnn", "cuda", copies)
            for mode, tile in RUNS:
                runs = {v: (_on(fn, mode, tile, spec), inputs) for v, spec in CONV.items()}
                graph = timing.interleaved(timing.GraphClock(), runs, budget_s=budget)
                base = graph["as built"]["ms"]
                yield [{"case": case.label(), "pass": direction, "mode": mode, "tile": str(tile), "variant": v,
                        "graph_ms": graph[v]["ms"], "of_built": graph[v]["ms"] / base} for v in CONV]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=0.2, help="seconds of samples a case, pass and mode")
    ap.add_argument("--only", default=CASES, help="cases whose label contains one of these comma-separated parts")
    args = ap.parse_args(argv)
    print("| case | pass | mode | tile | variant | ms in a graph | over as built |")
    print("|---|---|---|---|---|---|---|")
    for group in groups(args.budget, args.only):
        for r in group:
            print(f"| {r['case']} | {r['pass']} | {r['mode']} | {r['tile']} | {r['variant']} | "
                  f"{r['graph_ms']:.4f} | {r['of_built']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
