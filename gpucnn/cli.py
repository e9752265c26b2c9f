"""The ``gpucnn`` command."""
from __future__ import annotations

import argparse
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
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gpucnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train a tiny CNN with the functional API")
    p.add_argument("--backend", default="numpy", choices=("numpy", "emulator", "cuda"))
    p.add_argument("--steps", type=int, default=60)
    p.set_defaults(func=_demo)
    p = sub.add_parser("info", help="report the backends available here")
    p.set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
