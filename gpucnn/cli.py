"""The ``gpucnn`` command: train a small CNN, time the kernels, run a demo,
report the backends. A user's mistake is one line on stderr
(``gpucnn: error: ...``) and exit status 2; --debug or GPUCNN_DEBUG=1 shows
its traceback."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from gpucnn.usage import EXIT_USAGE, UsageError, debug_wanted, explain, one_line


class _Parser(argparse.ArgumentParser):
    """argparse that raises its errors, so that they print as one line like the others."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help; flags (off unless given) and
    options whose help says what their absence means show none."""

    def _get_help_string(self, action):
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


_HELP = dict(formatter_class=_Help)
DESCRIPTION = ("Train a small CNN, time the kernels, run a demo, report the backends. A user's "
               "mistake is one line on stderr (gpucnn: error: ...) and exit status 2; --debug "
               "or GPUCNN_DEBUG=1 shows its traceback.")


def _number(kind, lo=None, lo_open=False, hi=None):
    """An argparse type: ``kind`` (int or float), finite, within [lo or (lo, and < hi."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        bad = not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) or \
            (hi is not None and v >= hi)
        if bad:
            rng = " and ".join(r for r in ((f"{'>' if lo_open else '>='} {lo}" if lo is not None else ""),
                                           (f"< {hi}" if hi is not None else "")) if r)
            raise argparse.ArgumentTypeError(f"must be {rng}, got {text}")
        return v
    parse.__name__ = kind.__name__
    return parse


def _int_list(text):
    """An argparse type: comma-separated integers >= 1, e.g. "1,2"."""
    one = _number(int, 1)
    try:
        return [one(t) for t in text.split(",")]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r} ({e})") from None


def _say(prefix: str):
    """A compile notice for commands without a progress bar: a line on stderr."""
    from gpucnn.runtime.loader import on_compile
    return on_compile(lambda text: print(f"{prefix}: {text}", file=sys.stderr, flush=True))


def _demo(args) -> int:
    import gpucnn
    from gpucnn import demo
    _check_backend(args.backend)
    with gpucnn.use_backend(args.backend), _say("demo"):
        acc = demo.run(steps=args.steps, lr=args.lr, seed=args.seed)
    return 0 if acc > 0.9 else 1


def _check_environment() -> None:
    """GPUCNN_BACKEND, when set, names a backend."""
    import os

    from gpucnn.backend import BACKENDS
    name = os.environ.get("GPUCNN_BACKEND")
    if name and name not in BACKENDS:
        raise UsageError(f"GPUCNN_BACKEND must be one of {', '.join(BACKENDS)}, got {name!r}")


def _check_backend(name: str) -> None:
    from gpucnn import backend
    ok, why = backend.available(name)
    if not ok:
        raise UsageError(f"--backend {name} is not available here: {why}")


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
    from gpucnn import distributed
    if history and distributed.current().is_main:
        last = history[-1]
        print(f"epoch {last['epoch']}: held-out accuracy {last['test_acc']:.4f} after "
              f"{last['seconds']:.1f} s of training; metrics in {cfg.out}/metrics.jsonl")
    return 0


def _bench(args) -> int:
    from gpucnn.bench import check, report, run
    device, backends = check.arguments(args.device, args.backends, args.only, args.small, args.steps_only,
                                        args.fused_only)
    from gpucnn.cuda import algo
    Path(args.out).mkdir(parents=True, exist_ok=True)
    # Each row as it is timed, so a run cut short (a lent GPU's time-box) keeps what it measured.
    with _say("bench"), algo.override(args.algo), open(Path(args.out) / "partial.jsonl", "w") as partial:
        def on_row(section, row):
            partial.write(json.dumps({"section": section, "device": device, **row}, default=str) + "\n")
            partial.flush()
        res = run.run(device, backends=backends, small=args.small, only=args.only, budget_s=args.budget,
                      threads=args.threads, train=not args.no_train, progress=args.progress,
                      steps_only=args.steps_only, compile_torch=args.torch_compile,
                      step_threads=args.step_threads, busy=args.busy, with_fused=args.fused,
                      fused_only=args.fused_only, on_row=on_row)
    paths = report.save(res, args.out)
    (Path(args.out) / "partial.jsonl").unlink()  # the run finished: its JSON holds every row
    print(report.table(res))
    print(f"wrote {paths['json']}, {paths['table']}"
          + (f", {paths['png']}" if paths["png"] else " (no chart: matplotlib is not installed)"))
    return 0


def _add_bench(sub, common) -> None:
    p = sub.add_parser("bench", parents=[common], help="time the kernels against the machine's limits and "
                       "against PyTorch", description="Time every case of the suite forward and backward; "
                       "write a table, JSON and a roofline chart.", **_HELP)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to time: auto is cuda when CuPy sees a GPU, else cpu")
    p.add_argument("--backends", help="comma-separated, ours first, from gpucnn-cuda, gpucnn-numpy, "
                   "torch-cudnn, torch-cpu and the math modes gpucnn-cuda-tf32, gpucnn-cuda-3xtf32, "
                   "gpucnn-cuda-fp32, torch-cudnn-tf32, and gpucnn-cuda-driver, ours on our own launch path "
                   "(GPUCNN_LAUNCH=driver) (default: all that run here but that one)")
    p.add_argument("--only", help="run only the cases whose label contains this, or one of its comma-separated "
                   "parts (with --steps-only: the models whose name does; with --fused-only: the fused rows' "
                   "cases; default: every case)")
    p.add_argument("--small", action="store_true", help="tiny shapes: checks the harness, not speed")
    p.add_argument("--budget", type=_number(float, 0, lo_open=True),
                   help="seconds of timed runs per case and pass (default: 1, or 0.05 with --small)")
    p.add_argument("--threads", type=_number(int, 1),
                   help="CPU threads for NumPy's BLAS, PyTorch and gpucnn (default: GPUCNN_THREADS or all cores)")
    p.add_argument("--no-train", action="store_true", help="skip the training-step benchmark")
    p.add_argument("--steps-only", action="store_true", help="only the training-step benchmark")
    p.add_argument("--fused-only", action="store_true", help="only the fused rows: conv2d_bias_relu and "
                   "batch_norm2d_relu against the separate passes (conv, bias, ReLU as three passes too) "
                   "and PyTorch's unfused pair")
    p.add_argument("--no-fused", dest="fused", action="store_false", help="skip the fused rows")
    p.add_argument("--no-torch-compile", dest="torch_compile", action="store_false",
                   help="leave torch.compile out of the training-step benchmark")
    p.add_argument("--algo", help="force the convolution algorithm as GPUCNN_CONV_ALGO does: direct, "
                   "phase, window, strip, fold, halo, halowg, gemm, gemm64 or gemm32 (the FFMA tile's rows), "
                   "gemm32t (the transposed filter gradient), each gemm with an optional :SPLITS, or autotune: time the candidates on each "
                   "shape's first call and keep the fastest (default: gpucnn.cuda.algo's choice per shape)")
    p.add_argument("--step-threads", type=_int_list, help="on a CPU, the thread counts of the training-step "
                   "rows, same on both sides, e.g. 1,2 (default: 1 and 2, within the usable cores)")
    p.add_argument("--no-busy", dest="busy", action="store_false", help="on a CPU, skip timing the training "
                   "step again with one core kept busy by a competing process")
    p.add_argument("--out", default="bench/results", help="directory for the JSON, table and chart")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
    p.set_defaults(func=_bench)


def _add_train_step_options(p, d) -> None:
    """What one training step is: the optimizer, its learning rate, how much data."""
    from gpucnn.train import DEFAULT_LR, OPTIMIZERS
    p.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS,
                   help="sgd (Nesterov momentum when --momentum > 0), adam or adamw (torch.optim's)")
    p.add_argument("--lr", type=_number(float, 0, lo_open=True), default=d.lr,
                   help="initial learning rate, annealed along a cosine to 0 over the epochs (default: "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_LR.items()) + ")")
    p.add_argument("--limit", type=_number(int, 1), default=d.limit, metavar="N",
                   help="train on the first N training examples and evaluate on the first N held-out ones "
                   "(default: all)")


def _add_train(sub, common) -> None:
    # Defaults come from train.Config, so the CLI and the API cannot disagree.
    from gpucnn.data import DATASETS
    from gpucnn.nn.models import MODELS
    from gpucnn.train import DEVICES, Config
    d = Config()
    p = sub.add_parser("train", parents=[common], help="train a small CNN (LeNet on digits by default)",
                       description="Train a CNN with SGD (Nesterov momentum, weight decay, cosine schedule); "
                       "each epoch appends to OUT/metrics.jsonl and writes OUT/checkpoint.npz.", **_HELP)
    p.add_argument("--model", default=d.model, choices=tuple(MODELS), help="the network")
    p.add_argument("--dataset", default=d.dataset, choices=DATASETS,
                   help="digits ships with scikit-learn; the others are read from --data-dir")
    p.add_argument("--data-dir", default=d.data_dir, help="where the MNIST/Fashion-MNIST/CIFAR-10 files are")
    p.add_argument("--epochs", type=_number(int, 1), default=d.epochs,
                   help="epochs in all; with --resume, more than the run had extends it")
    p.add_argument("--batch-size", type=_number(int, 1), default=d.batch_size, help="images per SGD step")
    _add_train_step_options(p, d)
    p.add_argument("--momentum", type=_number(float, 0, hi=1), default=d.momentum,
                   help="Nesterov momentum in [0, 1); 0 for plain SGD")
    p.add_argument("--weight-decay", type=_number(float, 0), default=d.weight_decay, help="L2 weight decay")
    p.add_argument("--device", default=d.device, choices=DEVICES,
                   help="cpu (NumPy), cuda (the kernels on a GPU) or emulator (the kernels on the CPU)")
    p.add_argument("--seed", type=_number(int, 0), default=d.seed,
                   help="seeds the initial weights, the held-out split and the shuffling")
    p.add_argument("--out", default=d.out, help="directory for metrics.jsonl, checkpoint.npz and metrics.png")
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint")
    runs.add_argument("--overwrite", action="store_true", help="replace a run already in OUT")
    p.add_argument("--plot", action="store_true", help="write OUT/metrics.png (needs matplotlib)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar on stderr (by default one, redrawn in place on a terminal)")
    p.add_argument("--sync-bn", action="store_true",
                   help="under mpirun/mpiexec: batch-norm statistics of the global batch, not each rank's")
    p.set_defaults(func=_train)


def _add_demo(sub, common) -> None:
    p = sub.add_parser("demo", parents=[common], help="train a tiny CNN with the functional API",
                       description="Train a conv-ReLU-pool-linear net by hand-written backward passes "
                       "on a synthetic two-class problem; exit status 1 if it does not learn.", **_HELP)
    p.add_argument("--backend", default="numpy", choices=("numpy", "emulator", "cuda"),
                   help="numpy (the reference), emulator (the kernels on the CPU) or cuda (a GPU)")
    p.add_argument("--steps", type=_number(int, 1), default=60, help="SGD steps")
    p.add_argument("--lr", type=_number(float, 0, lo_open=True), default=0.1, help="learning rate")
    p.add_argument("--seed", type=_number(int, 0), default=0, help="seeds the data and the initial weights")
    p.set_defaults(func=_demo)


def parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error (also GPUCNN_DEBUG=1)")
    top = _Parser(prog="gpucnn", description=DESCRIPTION, parents=[common], **_HELP)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser,
                             help="what to do; gpucnn COMMAND --help describes its options")
    _add_train(sub, common)
    _add_bench(sub, common)
    _add_demo(sub, common)
    p = sub.add_parser("info", parents=[common], help="report the backends available here", **_HELP)
    p.set_defaults(func=_info)
    return top


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debug_wanted(argv)
    try:
        args = parser().parse_args(argv)
        _check_environment()
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("gpucnn: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = explain(e)
        if message is None or debug:
            raise
        print(f"gpucnn: error: {one_line(message)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
