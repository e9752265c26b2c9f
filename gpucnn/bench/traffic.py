"""The L1 traffic of the kernels that issue 11's targets wait on, counted on the CPU.

    python -m gpucnn.bench.traffic [--write]     (--write: bench/results/static-traffic.md)

Each case runs one op on the emulator with its traffic counts on
(gpucnn.runtime.emulator.traffic), a few blocks of the launch the op makes on
the benchmark's shape (or a smaller batch of it: a block's accesses depend on
the plane and the tile, not on the batch), as an H200 would get it (compute
capability 9.0, 132 SMs). Per kernel: each code site's global sectors and
shared-memory wavefronts a warp request against the ideal, then the kernel's
totals. The H200 run of 2026-11-30 found the tf32 tiles at 72% of the L1's
throughput with the SMs at 36% (ncu), and the pooling and statistics kernels
below their bandwidth targets: these tables say how much of that L1 work is
excess (sectors a gather half fills, bank conflicts) rather than work.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import pathlib
import sys

import numpy as np

import gpucnn
from gpucnn import backend, shapes
from gpucnn.cuda import algo, halo, norm, tc
from gpucnn.runtime.emulator import emulation, traffic

OUT = pathlib.Path(__file__).resolve().parents[2] / "bench" / "results" / "static-traffic.md"


def _conv(mode, tile, rng, x_shape=(16, 64, 56, 56), w_shape=(64, 64, 3, 3), padding=1, groups=1):
    """conv2d's forward (resnet-3x3's by default) in ``mode`` on tensor-core tile ``tile`` (the GEMM
    family forced), or on a family forced with its own tiles (``tile`` "gemm": the FFMA tile in
    fp32; "wino": the Winograd kernels; "halo", or "halowg": their warpgroup variant, on an
    emulated sm_90), or the heuristic's choice (None)."""
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    on_family = tile in (*algo.HALO_FAMILIES, "wino", "gemm")
    family = tile if on_family else "gemm" if tile is not None else None
    with gpucnn.math_mode(mode), tc.force_tile(None if on_family else tile), algo.override(family), \
            emulation(compute_capability=halo.WG_CC) if tile == "halowg" else contextlib.nullcontext():
        gpucnn.conv2d(x, w, padding=padding, groups=groups)


def _backward(x_shape, w_shape, mode, rng, stride=1, padding=1, groups=1):
    """conv2d_backward (data and filter, no bias) on dy of the forward's output shape."""
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    P, Q = (shapes.conv_out(n, k, stride, padding, padding, 1) for n, k in zip(x_shape[2:], w_shape[2:]))
    dy = rng.standard_normal((x_shape[0], w_shape[0], P, Q), dtype=np.float32)
    with gpucnn.math_mode(mode):
        gpucnn.conv2d_backward(dy, x, w, stride=stride, padding=padding, groups=groups, bias=False)


def _pool(kernel, stride, padding, shape, rng):
    """Pooling forward on the benchmark's whole batch: the pair kernels' rows a thread follow the launch's size."""
    x = rng.standard_normal(shape, dtype=np.float32)
    (gpucnn.max_pool2d if kernel[0] == "max" else gpucnn.avg_pool2d)(x, kernel[1], stride, padding)


def _max_pool_backward(rng, shape=(32, 64, 112, 112)):
    """Max pooling 3x3/2 p1's backward on the benchmark's batch, its indices the forward's (NumPy's:
    the emulated forward would run only the blocks counted)."""
    x = rng.standard_normal(shape, dtype=np.float32)
    with gpucnn.use_backend("numpy"):
        _, idx = gpucnn.max_pool2d(x, 3, 2, 1, return_indices=True)
    dy = rng.standard_normal(idx.shape, dtype=np.float32)
    gpucnn.max_pool2d_backward(dy, x, 3, 2, 1, indices=idx)


def _stats(rng):
    x = rng.standard_normal((128, 64, 32, 32), dtype=np.float32)
    backend.call("norm", "batch_norm_stats", x, np.zeros(64, np.float32), np.ones(64, np.float32), 0.1, 1e-5)


def _apply(rng):
    x = rng.standard_normal((2, 64, 112, 112), dtype=np.float32)
    mean, invstd = np.zeros(64, np.float32), np.ones(64, np.float32)
    backend.call("norm", "batch_norm_apply", x, mean, invstd, np.ones(64, np.float32), np.zeros(64, np.float32))


def _relu(rng):
    gpucnn.relu(rng.standard_normal((2, 64, 112, 112), dtype=np.float32))


# (label, what it runs, the blocks counted): a middle block of resnet-3x3's forward (its taps
# inside the image), block 1 of the other convolution passes (valid in each of their launches,
# the filter gradient's sum of splits included), the first blocks of the maps and reductions
# (every block alike).
CASES = [
    ("resnet-3x3 forward, tf32, 64 tile", lambda r: _conv("tf32", 64, r), (300,)),
    ("resnet-3x3 forward, 3xtf32, 64 tile", lambda r: _conv("3xtf32", 64, r), (300,)),
    ("resnet-3x3 forward, tf32, wide tile", lambda r: _conv("tf32", "64w", r), (150,)),
    ("resnet-3x3 forward, tf32, wide warpgroup tile (wgmma)", lambda r: _conv("tf32", "64g", r), (150,)),
    ("resnet-3x3 forward, fp32 (FFMA)", lambda r: _conv("fp32", "gemm", r), (300,)),
    # the Winograd kernels (the fp32 choice since session 31): task 10, filters 0-31 of image 0's
    # output rows 10-13 (the weights kernel's launch of 16 blocks counts its block 10 too)
    ("resnet-3x3 forward, fp32, Winograd", lambda r: _conv("fp32", "wino", r), (10,)),
    # the halo kernels (the tf32 and 3xtf32 choice since session 24): task 100, image 3's rows
    # 32-33 (the weights kernel's launch of 144 blocks counts its block 100 too)
    ("resnet-3x3 forward, tf32, halo", lambda r: _conv("tf32", "halo", r), (100,)),
    ("resnet-3x3 forward, 3xtf32, halo", lambda r: _conv("3xtf32", "halo", r), (100,)),
    # their warpgroup variant (sm_90's choice since session 25): wgmma's reads of the weights are
    # not counted (the tensor core's own path); the pixels' A registers load as the B fragments did
    ("resnet-3x3 forward, tf32, halo warpgroup (wgmma)", lambda r: _conv("tf32", "halowg", r), (100,)),
    ("cifar-resnet backward (16x64x32x32), tf32", lambda r: _backward((16, 64, 32, 32), (64, 64, 3, 3), "tf32", r),
     (1,)),
    ("cifar-resnet-s2 backward (16x128x16x16, K256, stride 2), tf32",
     lambda r: _backward((16, 128, 16, 16), (256, 128, 3, 3), "tf32", r, stride=2), (1,)),
    ("mnist-2 forward (64x32x14x14, K64, 5x5), fp32 (FFMA)",
     lambda r: _conv("fp32", None, r, (64, 32, 14, 14), (64, 32, 5, 5), 2), (1,)),
    ("depthwise forward (4x256x56x56)", lambda r: _conv("fp32", None, r, (4, 256, 56, 56), (256, 1, 3, 3), 1, 256),
     (1,)),
    ("depthwise backward (4x256x56x56)",
     lambda r: _backward((4, 256, 56, 56), (256, 1, 3, 3), "fp32", r, groups=256), (1,)),
    ("max_pool 3x3/2 p1 (32x64x112x112)", lambda r: _pool(("max", 3), 2, 1, (32, 64, 112, 112), r), (0, 1)),
    ("max_pool 2x2/2 (16x64x224x224)", lambda r: _pool(("max", 2), 2, 0, (16, 64, 224, 224), r), (0, 1)),
    ("avg_pool 2x2/2 (16x64x224x224)", lambda r: _pool(("avg", 2), 2, 0, (16, 64, 224, 224), r), (0, 1)),
    ("max_pool 3x3/2 p1 backward (32x64x112x112)", _max_pool_backward, (0, 1)),
    ("batch-norm statistics (128x64x32x32)", _stats, (0, 1)),
    ("batch-norm apply (2x64x112x112)", _apply, (0, 1)),
    ("relu forward (2x64x112x112)", _relu, (0, 1)),
]


def run(cases=CASES) -> dict[str, list]:
    """{case label: its traffic rows}."""
    out = {}
    for label, fn, blocks in cases:
        try:
            with gpucnn.use_backend("emulator"), emulation(compute_capability=90, sm_count=132, poison=False,
                                                           blocks=blocks), traffic.profile() as rows:
                fn(np.random.default_rng(0))
        finally:  # a reduction run on some of its blocks leaves its kept counters mid-count
            norm.drop_scratch("emulator")
        out[label] = rows
    return out


def totals(rows) -> dict[tuple[str, str], tuple[int, int, int, int, int]]:
    """{(kernel, space): (requests, units, ideal, blocks counted, the launch's blocks)} over a
    case's rows."""
    t = collections.defaultdict(lambda: [0, 0, 0, 1, 1])
    for r in rows:
        s = t[r.kernel, r.space]
        s[0] += r.requests
        s[1] += r.units
        s[2] += r.ideal
        s[3], s[4] = r.blocks, r.grid_blocks
    return {k: tuple(v) for k, v in t.items()}


# The floor table's L1, an H200's as assumed (not measured): one shared-memory wavefront, or one
# wavefront of 4 global sectors (128 bytes), a clock an SM; 132 SMs at 1.98 GHz, its boost clock.
L1_SECTORS_A_CLOCK, H200_SMS, H200_GHZ = 4, 132, 1.98


def l1_clocks(rows) -> dict[str, tuple[float, float]]:
    """{kernel: (L1 clocks a block, the whole launch's L1 floor on the H200 in microseconds)}: its
    shared wavefronts plus its global sectors / L1_SECTORS_A_CLOCK, a block's and scaled to the
    launch, spread over H200_SMS SMs at H200_GHZ."""
    out = {}
    for (kernel, space), (_, units, _, nb, grid) in totals(rows).items():
        clocks = units / (L1_SECTORS_A_CLOCK if space == "global" else 1) / nb
        block, launch = out.get(kernel, (0.0, 0.0))
        out[kernel] = (block + clocks, launch + clocks * grid / H200_SMS / (H200_GHZ * 1e3))
    return out


def _short(site: str) -> str:
    return "/".join(site.split("/")[-2:])


def report(results: dict) -> str:
    lines = ["# L1 traffic of the kernels, counted on the emulator", "",
             "Made by `python -m gpucnn.bench.traffic --write` (tests/emulator/test_emu_traffic.py keeps it "
             "current). " + " ".join(__doc__.split("\n\n")[2].split()), "",
             "A site's counts: its warp requests, and per request the lanes, the bytes they ask for, the "
             "global sectors or shared wavefronts, the ideal (global: the distinct bytes in sectors; shared: "
             "the bytes returned at 128 a wavefront, halved where lane pairs read alike), their ratio "
             "(excess) and, for global memory, the 128-byte lines. The rules: "
             "gpucnn/runtime/emulator/include/emu_traffic.cpp.", ""]
    lines += ["## Totals", "",
              "Global memory in 32-byte sectors (loads, cp.async copies and stores together), shared memory "
              "in wavefronts (loads, ldmatrix, cp.async landings and stores together); a block's counts, and "
              "the whole launch's as its blocks times the counted ones' mean, to set beside ncu's sums "
              "(gpu.sh's step 7b).",
              "", "| case | kernel | space | blocks counted / launched | requests a block | sectors or wavefronts a "
              "block | ideal a block | excess | the launch's, scaled |", "|---|---|---|---|---|---|---|---|---|"]
    for label, rows in results.items():
        for (kernel, space), (req, units, ideal, nb, grid) in sorted(totals(rows).items()):
            lines.append(f"| {label} | {kernel} | {space} | {nb} / {grid} | {req / nb:.0f} | {units / nb:.0f} | "
                         f"{ideal / nb:.0f} | {units / ideal if ideal else 1:.2f} | {units * grid / nb:.3g} |")
    lines += ["", "## The L1 floor", "",
              f"The least time a launch's L1 work takes if the L1 serves one shared-memory wavefront or "
              f"{L1_SECTORS_A_CLOCK} global sectors (128 bytes) a clock an SM, on {H200_SMS} SMs at "
              f"{H200_GHZ} GHz (an H200's boost clock): assumptions, not measurements, which gpu.sh's step "
              "7b checks (ncu's L1 throughput is this work over the kernel's time). On resnet-3x3's forward "
              "the H200 run of 2026-11-30 (ncu) timed conv2d_forward_tf32_64 at 62.9 us with its L1 72% busy "
              "(45 us) and conv2d_forward_f32 at 155.6 us with its L1 75.5% busy (117 us).", "",
              "| case | kernel | L1 clocks a block | the launch's L1 floor, us |", "|---|---|---|---|"]
    for label, rows in results.items():
        for kernel, (block, launch) in sorted(l1_clocks(rows).items()):
            lines.append(f"| {label} | {kernel} | {block:.0f} | {launch:.1f} |")
    for label, rows in results.items():
        lines += ["", f"## {label}", ""]
        lines.append(traffic.table([dataclasses.replace(r, site=_short(r.site)) for r in rows]))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(OUT.parents[2])}")
    a = p.parse_args(argv)
    text = report(run())
    if a.write:
        OUT.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
