"""Memory-bound kernels on a GPU: ReLU and pooling, forward and backward.

For each case: median time over many runs after warm-up (CUDA events, inputs
rotated among several copies so the L2 cache does not flatter small cases),
the bytes each op must move, GB/s, the fraction of a device-to-device copy's
bandwidth measured in the same run, and PyTorch's time for the same op where
torch with CUDA is installed. Writes JSON with the machine, versions and date.

    PYTHONPATH=. python bench/memory_bound.py --json bench/results/out.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics

import numpy as np

CASES = [  # (name, shape, op, kernel_size, stride, padding)
    ("relu", (32, 64, 112, 112), "relu", None, None, None),
    ("relu", (64, 32, 28, 28), "relu", None, None, None),
    ("relu_backward", (32, 64, 112, 112), "relu_backward", None, None, None),
    ("max_pool 3x3/2 p1", (32, 64, 112, 112), "max_pool2d", 3, 2, 1),
    ("max_pool 2x2/2", (16, 64, 224, 224), "max_pool2d", 2, 2, 0),
    ("avg_pool 2x2/2", (16, 64, 224, 224), "avg_pool2d", 2, 2, 0),
    ("max_pool 2x2/2", (64, 32, 28, 28), "max_pool2d", 2, 2, 0),
    ("avg_pool 2x2/2", (64, 32, 28, 28), "avg_pool2d", 2, 2, 0),
    ("max_pool_backward 2x2/2", (16, 64, 224, 224), "max_pool2d_backward", 2, 2, 0),
    ("avg_pool_backward 2x2/2", (16, 64, 224, 224), "avg_pool2d_backward", 2, 2, 0),
]


def time_gpu(cp, fn, inputs, reps=50, warmup=5):
    """Median milliseconds of fn(*inputs[i % len(inputs)]) over reps, with CUDA events."""
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    cp.cuda.Device().synchronize()
    times = []
    for i in range(reps):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn(*inputs[i % len(inputs)])
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def copy_bandwidth(cp, nbytes=1 << 30):
    """GB/s of a device-to-device copy, counting bytes read and written."""
    a = cp.empty(nbytes // 4, dtype=cp.float32)
    b = cp.empty_like(a)
    ms = time_gpu(cp, lambda: b.__setitem__(slice(None), a), [()], reps=20)
    return 2 * nbytes / ms / 1e6


def _ops(F, case):
    name, shape, op, k, s, p = case
    if op == "relu":
        return lambda x, dy: F.relu(x)
    if op == "relu_backward":
        return lambda x, dy: F.relu_backward(dy, x)
    f = getattr(F, op)
    if op in ("max_pool2d", "avg_pool2d"):
        return lambda x, dy: f(x, k, s, p)
    return lambda x, dy: f(dy, x, k, s, p)


def run(reps=50):
    import cupy as cp

    import gpucnn as F
    try:
        import torch
        import torch.nn.functional as TF
        torch_ok = torch.cuda.is_available()
    except ImportError:
        torch_ok = False
    rows = []
    peak = copy_bandwidth(cp)
    for case in CASES:
        name, shape, op, k, s, p = case
        xs = [cp.random.standard_normal(shape, dtype=cp.float32) for _ in range(3)]
        y = F.max_pool2d(xs[0], k, s, p) if "pool" in op else xs[0]
        dys = [cp.random.standard_normal(y.shape, dtype=cp.float32) for _ in range(3)]
        fn = _ops(F, case)
        ms = time_gpu(cp, fn, list(zip(xs, dys)), reps)
        out = fn(xs[0], dys[0])
        nbytes = 4 * (xs[0].size + out.size + (dys[0].size if "backward" in op else 0))
        row = dict(case=name, shape=shape, ms=ms, gbps=nbytes / ms / 1e6)
        row["fraction_of_copy"] = row["gbps"] / peak
        if torch_ok:
            tx = [torch.as_tensor(x, device="cuda") for x in xs]
            tdy = [torch.as_tensor(d, device="cuda") for d in dys]
            tfn = {"relu": lambda x, dy: TF.relu(x),
                   "relu_backward": lambda x, dy: torch.ops.aten.threshold_backward(dy, x, 0.0),
                   "max_pool2d": lambda x, dy: TF.max_pool2d(x, k, s, p),
                   "avg_pool2d": lambda x, dy: TF.avg_pool2d(x, k, s, p)}.get(op)
            if tfn is not None:
                row["torch_ms"] = time_gpu(cp, tfn, list(zip(tx, tdy)), reps)
                row["speedup_vs_torch"] = row["torch_ms"] / ms
        rows.append(row)
        print(f"{name:28s} {str(shape):22s} {ms:8.3f} ms {row['gbps']:8.1f} GB/s "
              f"{100 * row['fraction_of_copy']:5.1f}% of copy"
              + (f"  torch {row['torch_ms']:.3f} ms" if "torch_ms" in row else ""))
    props = cp.cuda.runtime.getDeviceProperties(0)
    return dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                device=props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
                cupy=cp.__version__, cuda_runtime=cp.cuda.runtime.runtimeGetVersion(),
                numpy=np.__version__, python=platform.python_version(),
                copy_gbps=peak, rows=rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    res = run(args.reps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
