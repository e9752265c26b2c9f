"""The ``gpucnn`` command."""
from __future__ import annotations

import argparse
import dataclasses
import sys


def _demo(args) -> int:
    import gpucnn
    from gpucnn import demo
    with gpucnn.use_backend(args.backend):
        acc = demo.run(steps=args.steps)
    return 0 if acc > 0.9 else 1


def _info(args) -> int:
    import numpy as np

    import gpucnn
    from gpucnn import backend
    print(f"gpucnn {gpucnn.__version__}, numpy {np.__version__}")
    for name in backend.BACKENDS:
        ok, why = backend.available(name)
        print(f"  backend {name:9s} {'available' if ok else 'unavailable: ' + why}")
    from gpucnn.runtime import cupy_runtime
    for line in cupy_runtime.describe():
        print(f"  {line}")
    return 0


def _train(args) -> int:
    from gpucnn import train
    cfg = train.Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(train.Config)})
    history = train.fit(cfg)
    if history:
        last = history[-1]
        print(f"epoch {last['epoch']}: held-out accuracy {last['test_acc']:.4f} after "
              f"{last['seconds']:.1f} s of training; metrics in {cfg.out}/metrics.jsonl")
    return 0


def _bench(args) -> int:
    from gpucnn.bench import report, run
    device = args.device
    if device == "auto":
        from gpucnn.runtime import cupy_runtime
        device = "cuda" if cupy_runtime.gpu_available()[0] else "cpu"
    backends = args.backends.split(",") if args.backends else None
    from gpucnn.cuda import algo
    with algo.override(args.algo):
        res = run.run(device, backends=backends, small=args.small, only=args.only, budget_s=args.budget,
                      threads=args.threads, train=not args.no_train, progress=args.progress)
    paths = report.save(res, args.out)
    print(report.table(res))
    print(f"wrote {paths['json']}, {paths['table']}"
          + (f", {paths['png']}" if paths["png"] else " (no chart: matplotlib is not installed)"))
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time the kernels against the machine's limits and against PyTorch")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--backends", help="comma-separated, ours first, from gpucnn-cuda, gpucnn-numpy, "
                   "torch-cudnn, torch-cpu (default: all that run here)")
    p.add_argument("--only", help="run the cases whose label contains this")
    p.add_argument("--small", action="store_true", help="tiny shapes: checks the harness, not speed")
    p.add_argument("--budget", type=float, help="seconds of timed runs per case and pass (default 1)")
    p.add_argument("--threads", type=int, help="CPU threads for NumPy's BLAS, PyTorch and gpucnn")
    p.add_argument("--no-train", action="store_true", help="skip the training-step benchmark")
    p.add_argument("--algo", help="force the convolution algorithm as GPUCNN_CONV_ALGO does: direct, "
                   "phase, gemm or gemm:SPLITS (default: gpucnn.cuda.algo's choice per shape)")
    p.add_argument("--out", default="bench/results", help="directory for the JSON, table and chart")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=_bench)


def _add_train(sub) -> None:
    # Defaults come from train.Config, so the CLI and the API cannot disagree.
    from gpucnn.nn.models import MODELS
    from gpucnn.train import DEVICES, Config
    from gpucnn.data import DATASETS
    d = Config()
    p = sub.add_parser("train", help="train a small CNN (LeNet on digits by default)")
    p.add_argument("--model", default=d.model, choices=tuple(MODELS))
    p.add_argument("--dataset", default=d.dataset, choices=DATASETS)
    p.add_argument("--data-dir", default=d.data_dir, help="where MNIST/Fashion-MNIST/CIFAR-10 files are")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--device", default=d.device, choices=DEVICES)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=d.out, help="directory for metrics.jsonl and checkpoint.npz")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--plot", action="store_true", help="write OUT/metrics.png (needs matplotlib)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=_train)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gpucnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train a tiny CNN with the functional API")
    p.add_argument("--backend", default="numpy", choices=("numpy", "emulator", "cuda"))
    p.add_argument("--steps", type=int, default=60)
    p.set_defaults(func=_demo)
    p = sub.add_parser("info", help="report the backends available here")
    p.set_defaults(func=_info)
    _add_train(sub)
    _add_bench(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
