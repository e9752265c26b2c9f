"""The memory-bound ops of the NumPy backend's training step against PyTorch
CPU, op by op: batch norm (statistics, apply, apply + ReLU, backward, backward
through the ReLU), ReLU forward and backward, the residual add, 2x2 max
pooling forward and backward and the bias gradient, on the shapes of
resnet20, vgg-small and lenet at batch 64. Each row times ours, torch's and
(``--base``, a checkout of another commit, e.g. from ``git archive COMMIT |
tar -x -C /tmp/base``) the base's in one interleaved loop at 1 and 2
threads (GPUCNN_THREADS, BLAS and torch.set_num_threads alike); the median
of the repetitions.

    python bench/cpu_membound.py [--base /tmp/base] [--only bn_backward]
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as gpucnn bench: torch's idle threads sleep
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cpu_before_after import _renamed_copy  # noqa: E402
from gpucnn.bench import cpu_steps, timing  # noqa: E402
from gpucnn.shapes import window  # noqa: E402

BN_SHAPES = [(64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8), (64, 32, 32, 32)]
RELU_SHAPES = [(64, 16, 32, 32), (64, 16, 28, 28), (64, 32, 32, 32)]
POOL_SHAPES = [(64, 32, 32, 32), (64, 16, 28, 28)]


def _ours(pkg):
    """{op: fn(arrays) -> None} of the gpucnn package ``pkg``."""
    norm = __import__(f"{pkg}.reference.norm", fromlist=["x"])
    relu = __import__(f"{pkg}.reference.relu", fromlist=["x"])
    pool = __import__(f"{pkg}.reference.pool", fromlist=["x"])
    conv = __import__(f"{pkg}.reference.conv", fromlist=["x"])

    def stats(a):
        return norm.batch_norm_stats(a["x"], a["rm"], a["rv"], 0.1, 1e-5)

    def bn_forward(a, relu_=False):
        mean, invstd, _, _ = stats(a)
        norm.batch_norm_apply(a["x"], mean, invstd, a["g"], a["b"], relu=relu_)

    return {
        "bn_stats": stats,
        "bn_apply": lambda a: norm.batch_norm_apply(a["x"], a["mean"], a["invstd"], a["g"], a["b"]),
        "bn_apply_relu": lambda a: norm.batch_norm_apply(a["x"], a["mean"], a["invstd"], a["g"], a["b"], relu=True),
        "bn_forward": bn_forward,
        "bn_forward_relu": lambda a: bn_forward(a, True),
        "bn_backward": lambda a: norm.batch_norm_backward(a["dy"], a["x"], a["mean"], a["invstd"], a["g"], True),
        "bn_backward_relu": lambda a: norm.batch_norm_backward(a["dy"], a["x"], a["mean"], a["invstd"], a["g"],
                                                               True, y=a["y"]),
        "relu": lambda a: relu.relu_forward(a["x"], 0.0),
        "relu_backward": lambda a: relu.relu_backward(a["dy"], a["x"], 0.0),
        "add": lambda a: relu.add(a["x"], a["dy"]),
        "maxpool": lambda a: pool.max_pool2d_forward(a["x"], a["win"]),
        "maxpool_backward": lambda a: pool.max_pool2d_backward(a["py"], a["idx"], a["win"]),
        "bias_grad": lambda a: conv.conv2d_backward_bias(a["dy"]),
    }


def _bn_grad(t, relu_):
    """torch's batch norm (+ ReLU) training backward through autograd, its graph built once."""
    x, g, b = (v.detach().requires_grad_() for v in (t["x"], t["g"], t["b"]))
    y = F.batch_norm(x, t["rm"].clone(), t["rv"].clone(), g, b, training=True)
    y = F.relu(y) if relu_ else y
    return lambda: torch.autograd.grad(y, (x, g, b), t["dy"], retain_graph=True)


def _torch(op, t):
    """A no-argument torch call doing what ``op`` does on tensors ``t``."""
    bn = lambda: F.batch_norm(t["x"], t["rm"], t["rv"], t["g"], t["b"], training=True)  # noqa: E731
    pool_grad = torch.ops.aten.max_pool2d_with_indices_backward
    return {
        "bn_forward": bn,
        "bn_forward_relu": lambda: F.relu(bn()),
        "bn_backward": op == "bn_backward" and _bn_grad(t, False),
        "bn_backward_relu": op == "bn_backward_relu" and _bn_grad(t, True),
        "relu": lambda: F.relu(t["x"]),
        "relu_backward": lambda: torch.ops.aten.threshold_backward(t["dy"], t["x"], 0),
        "add": lambda: t["x"] + t["dy"],
        "maxpool": lambda: F.max_pool2d(t["x"], 2, 2, return_indices=True),
        "maxpool_backward": lambda: pool_grad(t["py"], t["x"], [2, 2], [2, 2], [0, 0], [1, 1], False, t["idx"]),
        "bias_grad": lambda: t["dy"].sum((0, 2, 3)),
    }.get(op)


def _cases(only):
    ops = [(op, s) for op in ("bn_stats", "bn_apply", "bn_apply_relu", "bn_forward", "bn_forward_relu",
                              "bn_backward", "bn_backward_relu") for s in BN_SHAPES]
    ops += [(op, s) for op in ("relu", "relu_backward") for s in RELU_SHAPES]
    ops += [("add", RELU_SHAPES[0]), ("bias_grad", BN_SHAPES[0]), ("bias_grad", BN_SHAPES[3])]
    ops += [(op, s) for op in ("maxpool", "maxpool_backward") for s in POOL_SHAPES]
    return [(op, s) for op, s in ops if not only or only in op]


def _arrays(shape):
    rng = np.random.default_rng(0)
    N, C, H, W = shape
    win = window(H, W, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), pool=True)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    a = {"x": x, "dy": rng.standard_normal(shape, dtype=np.float32), "win": win,
         "g": rng.uniform(0.5, 1.5, C).astype(np.float32), "b": rng.standard_normal(C, dtype=np.float32),
         "rm": np.zeros(C, np.float32), "rv": np.ones(C, np.float32),
         "mean": mean, "invstd": (1 / np.sqrt(var + 1e-5)).astype(np.float32),
         "py": rng.standard_normal((N, C, win.P, win.Q), dtype=np.float32)}
    a["y"] = np.maximum(x - mean[:, None, None], 0)
    t = {k: torch.from_numpy(v) for k, v in a.items() if isinstance(v, np.ndarray)}
    _, t["idx"] = F.max_pool2d(t["x"], 2, 2, return_indices=True)
    a["idx"] = t["idx"].numpy()
    return a, t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, help="a checkout of the commit to compare against")
    p.add_argument("--only", help="ops whose name contains this")
    p.add_argument("--budget", type=float, default=1.5, help="seconds of timed calls per op, shape and side")
    args = p.parse_args(argv)
    sides = {"ours": _ours("gpucnn")}
    if args.base:
        sys.path.insert(0, _renamed_copy(args.base))
        sides["base"] = _ours("gpucnn_base")
    counts = [t for t in (1, 2) if t <= cpu_steps.cores()]
    names = list(sides) + ["torch"]
    print(f"median ms of interleaved calls; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{cpu_steps.cores()} CPUs, load average {os.getloadavg()[0]:.2f}, numpy {np.__version__}, "
          f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print(f"{'op':18} {'shape':16} thr " + " ".join(f"{n:>7}" for n in names) + "  ours/torch")
    for op, shape in _cases(args.only):
        a, t = _arrays(shape)
        torch_fn = _torch(op, t)
        runs = {}
        for n in counts:
            for side, fns in sides.items():
                runs[(side, n)] = (cpu_steps._at(n, fns[op], False), [(a,)])
            if torch_fn:
                runs[("torch", n)] = (cpu_steps._at(n, torch_fn, True), [()])
        res = timing.interleaved(timing.CpuClock(), {str(k): v for k, v in runs.items()},
                                 budget_s=args.budget * len(runs), min_reps=7)
        for n in counts:
            ms = {s: res[str((s, n))]["ms"] for s in names if str((s, n)) in res}
            ratio = f"{ms['ours'] / ms['torch']:10.2f}" if "torch" in ms else ""
            print(f"{op:18} {'x'.join(map(str, shape)):16} {n:3} "
                  + " ".join(f"{ms[s]:7.3f}" if s in ms else "      -" for s in names) + ratio, flush=True)


if __name__ == "__main__":
    main()
