"""How fast the CPU emulator runs kernels: a grid-stride vector add over 4000
blocks of 256 threads, one block with two barriers per step for 32 steps, and
the overhead of a one-block launch. Uses the emulator's test fixture kernels.

    python bench/emulator_speed.py
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "emulator"))
from emu_helpers import kernel  # noqa: E402


def median_seconds(fn, reps):
    fn()  # build and warm up outside the numbers
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    vadd, smooth = kernel("basic", "vadd"), kernel("shared", "smooth")
    n = 256 * 4000
    a, c = np.ones(n, np.float32), np.empty(n, np.float32)
    x, y = np.ones((1, 256), np.float32), np.empty((1, 256), np.float32)
    small = np.ones(256, np.float32)
    rows = [
        ("vadd, 4000 blocks x 256 threads", median_seconds(lambda: vadd(4000, 256, (a, a, c, np.int64(n))), 5)),
        ("1 block x 256, 32 steps of 2 barriers", median_seconds(lambda: smooth(1, 256, (x, y, np.int32(32))), 20)),
        ("launch of 1 block x 256 (vadd)",
         median_seconds(lambda: vadd(1, 256, (small, small, y.reshape(-1), np.int64(256))), 100)),
    ]
    for name, sec in rows:
        print(f"{name:40s} {sec * 1e3:9.3f} ms")


if __name__ == "__main__":
    main()
