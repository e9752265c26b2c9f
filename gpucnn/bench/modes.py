"""The math-mode rows of the benchmark: each float32 convolution pass in our
three math modes against cuDNN with TF32 allowed and disallowed, each pair
against the ceiling it can reach (a float32 matmul through PyTorch with and
without TF32, measured in the same run by ``limits.cuda``):

  tf32    gpucnn-cuda-tf32    against torch-cudnn-tf32   ceiling tf32_matmul_gflops
  3xtf32  gpucnn-cuda-3xtf32  against torch-cudnn        ceiling matmul_gflops
  fp32    gpucnn-cuda-fp32    against torch-cudnn        ceiling matmul_gflops

The issue's targets are the geometric means over the suite's convolution
rows (all three passes) of tf32 / cuDNN-TF32 (<= 1.5) and 3xtf32 / cuDNN
strict fp32 (<= 1.0).
"""
from __future__ import annotations

import math

# Not a math mode: ours in the default mode on our own launch path (GPUCNN_LAUNCH=driver,
# gpucnn.runtime.direct), timed beside CuPy's launch path (gpucnn-cuda) in one run
DRIVER = "gpucnn-cuda-driver"

BACKENDS = {"gpucnn-cuda-tf32": ("gpucnn", "cuda"), "gpucnn-cuda-3xtf32": ("gpucnn", "cuda"),
            "gpucnn-cuda-fp32": ("gpucnn", "cuda"), "torch-cudnn-tf32": ("torch", "cuda"),
            DRIVER: ("gpucnn", "cuda")}
MODE_OF = {"gpucnn-cuda-tf32": "tf32", "gpucnn-cuda-3xtf32": "3xtf32", "gpucnn-cuda-fp32": "fp32"}
PAIRS = {"tf32": ("gpucnn-cuda-tf32", "torch-cudnn-tf32", "tf32_matmul_gflops"),
         "3xtf32": ("gpucnn-cuda-3xtf32", "torch-cudnn", "matmul_gflops"),
         "fp32": ("gpucnn-cuda-fp32", "torch-cudnn", "matmul_gflops")}
TARGETS = {"tf32": 1.5, "3xtf32": 1.0}


def wrap(name: str, fn):
    """fn run in the math mode (ours), on our launch path (DRIVER) or with cuDNN's TF32 allowed
    (torch-cudnn-tf32) that ``name`` stands for."""
    if name in MODE_OF:
        import gpucnn
        mode = MODE_OF[name]
        ctx = lambda: gpucnn.math_mode(mode)  # noqa: E731
    elif name == DRIVER:
        from gpucnn.runtime import direct
        ctx = lambda: direct.use("driver")  # noqa: E731
    elif name == "torch-cudnn-tf32":
        import torch
        ctx = lambda: torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False,  # noqa: E731
                                                 allow_tf32=True)
    else:
        return fn

    def run(*args):
        with ctx():
            return fn(*args)
    return run


def row_modes(row: dict, lim: dict) -> dict:
    """{mode: {"tflops", "of_ceiling", "ratio"}} for the pairs this run timed."""
    out = {}
    for mode, (ours, peer, ceiling) in PAIRS.items():
        if ours in row["ms"] and peer in row["ms"] and lim.get(ceiling):
            gflops = row["flops"] / row["ms"][ours] / 1e6
            out[mode] = {"tflops": gflops / 1e3, "of_ceiling": gflops / lim[ceiling],
                         "ratio": row["ms"][ours] / row["ms"][peer]}
    return out


def geomeans(rows: list[dict]) -> dict:
    """{mode: geometric mean of our time over the peer's} over the conv rows."""
    logs = {}
    for r in rows:
        for mode, m in r.get("modes", {}).items():
            logs.setdefault(mode, []).append(math.log(m["ratio"]))
    return {mode: math.exp(sum(v) / len(v)) for mode, v in logs.items()}


def table(res) -> list[str]:
    """Markdown lines of the math-mode section (empty when no pair ran)."""
    rows = [r for r in res["rows"] if r.get("modes")]
    if not rows:
        return []
    modes = [m for m in PAIRS if any(m in r["modes"] for r in rows)]
    head = ["case", "pass"] + [f"{m} {c}" for m in modes for c in ("TFLOP/s", "of ceiling", "x peer")]
    lines = ["", "Math modes: ours in each mode against cuDNN (tf32: TF32 allowed; 3xtf32, fp32: disallowed), "
             f"ceilings tf32 {res['limits'].get('tf32_matmul_gflops', 0):.0f} and fp32 "
             f"{res['limits']['matmul_gflops']:.0f} GFLOP/s:", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["case"], r["pass"]]
        for m in modes:
            v = r["modes"].get(m)
            cells += ([f"{v['tflops']:.1f}", f"{100 * v['of_ceiling']:.0f}%", f"{v['ratio']:.2f}"] if v
                      else ["-"] * 3)
        lines.append("| " + " | ".join(cells) + " |")
    g = res.get("mode_geomeans", {})
    lines += ["", "Geometric mean over the convolution rows, our time over the peer's (target): "
              + ", ".join(f"{m} {v:.2f}" + (f" (<= {TARGETS[m]})" if m in TARGETS else "") for m, v in g.items())]
    return lines
