"""A few launches of the tensor-core and FFMA GEMM kernels on a GPU, for the
tools of bench/gpu.sh that watch launches rather than time them.

    python bench/gpu_launches.py compile every kernel module built for this GPU
                                         in parallel, a process a family or
                                         part (CuPy's disk cache), and the A/B
                                         builds of bench/ab_conv.py
    python bench/gpu_launches.py small   every pass in every math mode on small
                                         shapes, every tile, then each FFMA
                                         family forced, the halo and Winograd kernels, then the memory-bound
                                         variants of gpucnn.bench.variants
                                         (compute-sanitizer)
    python bench/gpu_launches.py large   one large 3x3 convolution forward per
                                         mode (the Winograd kernels in fp32, the
                                         halo kernels in tf32 and
                                         3xtf32; then the GEMM tiles forced:
                                         tf32's wide mma.sync and warpgroup
                                         tiles and 64 tile, 3xtf32's 64 tile;
                                         fp32 and tf32 built for more blocks
                                         an SM), and deepspeech's
                                         backward-data by the
                                         window and fold kernels, the fold
                                         of each MMA kind, then batch norm's
                                         statistics (and in four waves, and
                                         through the cp.async ring) and a
                                         bias gradient on 33.6 MB (ncu)
Checks each result against float64 NumPy so a tool's run also says "ok".
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import cupy as cp
import numpy as np

import gpucnn
from gpucnn import backend
from gpucnn.bench import variants
from gpucnn.cuda import algo, fold, halo, tc
from gpucnn.runtime import loader

MODES = ("fp32", "tf32", "3xtf32")
TOL = {"fp32": 1e-5, "3xtf32": 1e-5, "tf32": 3e-3}  # relative to the result's largest element


def _check(got, want, mode, what):
    err = float(np.abs(cp.asnumpy(got) - want).max() / max(1e-30, np.abs(want).max()))
    print(f"{what} {mode}: relative error {err:.2e}", "ok" if err <= TOL[mode] else "MISMATCH")
    return err <= TOL[mode]


def small() -> bool:
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 6, 9, 10)), rng.standard_normal((10, 3, 3, 3)), rng.standard_normal(10)
    kw = dict(stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2), groups=2)
    y64 = gpucnn.conv2d(x, w, b, **kw)
    dy = rng.standard_normal(y64.shape)
    want = (y64, *gpucnn.conv2d_backward(dy, x, w, **kw)[:2])
    xl, wl = rng.standard_normal((70, 40)), rng.standard_normal((33, 40))
    ok = True
    for mode in MODES:
        for edge in tc.TC_TILES:
            # the GEMM family forced: this small grouped layer would take the direct kernels, which no
            # tile runs (the first GPU run's "tile" rows of it were all theirs: tf32 at 1e-7)
            with gpucnn.math_mode(mode), tc.force_tile(edge), algo.override("gemm"):
                args = [cp.asarray(a.astype(np.float32)) for a in (x, w, b, dy)]
                got = (gpucnn.conv2d(*args[:3], **kw), *gpucnn.conv2d_backward(args[3], *args[:2], **kw)[:2])
                for name, g, wnt in zip(("conv y", "conv dx", "conv dw"), got, want):
                    ok &= _check(g, wnt, mode, f"{name} tile {edge}")
                yl = gpucnn.linear(cp.asarray(xl.astype(np.float32)), cp.asarray(wl.astype(np.float32)))
                ok &= _check(yl, xl @ wl.T, mode, f"linear y tile {edge}")
    return ok & _families(rng) & _halo(rng) & _wino(rng) & _memory_bound(rng)


# The halo kernels (kernels/conv2d_halo.cu) forced, in both of their modes, with bias and the
# fused ReLU: 70 filters (two blocks of 64), 12 channels (a step of 8 and one of 4), and 132
# columns in tiles of 128 and 4 with the left padding 2 (compute-sanitizer: the 16-byte copies'
# zero fill at the image's edges, the pipeline's barriers between tasks); and backward-data (the
# filters flipped and transposed by the weights kernel) where dy's rows are whole 16-byte groups.
HALO_CASES = (((2, 12, 9, 12), (70, 12, 3, 3), 1), ((1, 17, 3, 132), (9, 17, 3, 3), (1, 1, 2, 2)))


def _halo(rng) -> bool:
    ok = True
    # the warpgroup variant where it runs (sm_90, and not turned off: gpu.sh turns it off when its
    # primitives' tests fail on the GPU); a forced family that cannot run takes the heuristic's
    families = _halo_families()
    for xs, ws, pad in HALO_CASES:
        x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
        want = np.maximum(gpucnn.conv2d(x, w, b, padding=pad), 0)
        for mode, fam in ((m, f) for m in ("tf32", "3xtf32") for f in families):
            with gpucnn.math_mode(mode), algo.override(fam):
                got = gpucnn.conv2d_bias_relu(*(cp.asarray(a.astype(np.float32)) for a in (x, w, b)), padding=pad)
            ok &= _check(got, want, mode, f"conv+bias+relu y {fam} x{xs}")
        dy = rng.standard_normal(want.shape)
        if dy.shape[-1] % 4:
            continue
        dx = gpucnn.conv2d_backward(dy, x, w, bias=False, padding=pad)[0]
        for mode, fam in ((m, f) for m in ("tf32", "3xtf32") for f in families):
            with gpucnn.math_mode(mode), algo.override(fam):
                got = gpucnn.conv2d_backward(*(cp.asarray(a.astype(np.float32)) for a in (dy, x, w)), bias=False,
                                             padding=pad)[0]
            ok &= _check(got, dx, mode, f"conv dx {fam} x{xs}")
    return ok


def _wino(rng) -> bool:
    """The Winograd kernels (kernels/conv2d_wino.cu) forced in fp32 on HALO_CASES: the forward with
    bias and the fused ReLU (70 filters: three blocks of 32; the patches' zero fill past every
    edge), and backward-data (the weights kernel flipping and transposing w; padding at most 2)."""
    ok = True
    for xs, ws, pad in HALO_CASES:
        x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
        want = np.maximum(gpucnn.conv2d(x, w, b, padding=pad), 0)
        dy = rng.standard_normal(want.shape)
        dx = gpucnn.conv2d_backward(dy, x, w, bias=False, padding=pad)[0]
        with gpucnn.math_mode("fp32"), algo.override("wino"):
            got = gpucnn.conv2d_bias_relu(*(cp.asarray(a.astype(np.float32)) for a in (x, w, b)), padding=pad)
            ok &= _check(got, want, "fp32", f"conv+bias+relu y wino x{xs}")
            got = gpucnn.conv2d_backward(*(cp.asarray(a.astype(np.float32)) for a in (dy, x, w)), bias=False,
                                         padding=pad)[0]
            ok &= _check(got, dx, "fp32", f"conv dx wino x{xs}")
    return ok


def _halo_families() -> tuple[str, ...]:
    """The halo kernels' variants this device runs: the warpgroup one on sm_90 where it is not
    turned off (algo.HALO_WG), the mma.sync one always."""
    wg = algo.HALO_WG and halo.WG_CC == int(cp.cuda.Device().compute_capability)
    return ("halo", "halowg") if wg else ("halo",)


# The families forced (spec, math mode) on a one-channel strided stem
# (deepspeech's shape, small: the window and strip kernels' shared-memory
# banks and their barriers), a depthwise layer and a 3-channel stem of 40
# filters (the transposed filter GEMM); a family that cannot run a pass keeps
# the heuristic's. The stride phases run on tensor cores in tf32 and 3xtf32, on the
# tile the shape picks and forced onto the 32-row and wide ones (spec, mode, tile); the fold
# kernels (tf32 backward-data of the one- and three-channel stems) on their cp.async pipeline,
# shared-memory window and barriers.
FAMILIES = (("window", "fp32"), ("strip", "fp32"), ("direct", "fp32"), ("phase", "fp32"), ("gemm32", "fp32"),
            ("fold", "tf32"),
            ("gemm64:2", "fp32"), ("gemm32t", "fp32"), ("phase", "tf32"), ("phase", "3xtf32"),
            *(("phase", mode, edge) for mode in ("tf32", "3xtf32") for edge in tc.CONV_TILES))
FAMILY_CASES = (((2, 1, 13, 44), (4, 1, 3, 12), dict(stride=2)),
                ((2, 6, 9, 9), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6)),
                ((2, 3, 11, 9), (40, 3, 3, 3), dict(stride=2, padding=1)))


def _families(rng) -> bool:
    ok = True
    for xs, ws, kw in FAMILY_CASES:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws)
        y64 = gpucnn.conv2d(x, w, **kw)
        dy = rng.standard_normal(y64.shape)
        want = (y64, *gpucnn.conv2d_backward(dy, x, w, bias=False, **kw)[:2])
        for spec, mode, *edge in FAMILIES:
            with gpucnn.math_mode(mode), algo.override(spec), tc.force_tile(edge[0] if edge else None):
                args = [cp.asarray(a.astype(np.float32)) for a in (x, w, dy)]
                got = (gpucnn.conv2d(*args[:2], **kw), *gpucnn.conv2d_backward(args[2], *args[:2], bias=False, **kw)[:2])
            for name, g, wnt in zip(("conv y", "conv dx", "conv dw"), got, want):
                ok &= _check(g, wnt, mode, f"{name} {spec}{' tile ' + str(edge[0]) if edge else ''} x{xs}")
        # the fold kernels of each MMA kind (wgmma on sm_90a only: fold.force_mma keeps mma.sync elsewhere)
        for kind in fold.MMAS:
            with gpucnn.math_mode("tf32"), algo.override("fold"), fold.force_mma(kind):
                dx = gpucnn.conv2d_backward(cp.asarray(dy.astype(np.float32)), cp.asarray(x.astype(np.float32)),
                                            cp.asarray(w.astype(np.float32)), bias=False, **kw)[0]
            ok &= _check(dx, want[1], "tf32", f"conv dx fold {kind} x{xs}")
    return ok


# gpucnn.bench.variants' kernels (bench/ab_mem.py times them): pooling's stride-2 pair kernels
# (16-byte loads where W % 4 == 0, Q odd and even, the padding clamped) against the generic
# ones, and batch norm's statistics and the bias gradient by channel_walk and through the
# cp.async ring, in one wave and in four, against float64 NumPy.
# Pooling: odd output rows (two rows a thread: the last block holds one), a row
# wider than a warp's 32 pairs (the side column from a lane of another warp),
# and a width that is not a multiple of 4 (scalar loads).
POOL_CASES = (((2, 3, 9, 16), 3, 1), ((2, 3, 8, 13), 2, 0), ((1, 2, 7, 12), 3, 0), ((2, 2, 6, 8), 2, 1),
              ((1, 2, 5, 136), 3, 1), ((1, 2, 7, 132), 3, 0))
STATS_CASES = ((4, 3, 16, 16), (2, 2, 64, 68), (3, 2, 5, 7))


def _memory_bound(rng) -> bool:
    ok = True
    for shape, k, p in POOL_CASES:
        x = rng.standard_normal(shape)
        want = {"max_pool": gpucnn.max_pool2d(x, k, 2, p), "avg_pool": gpucnn.avg_pool2d(x, k, 2, p)}
        xg = cp.asarray(x.astype(np.float32))
        for name, settings in variants.POOL.items():
            with variants.switches(settings):
                got = {"max_pool": gpucnn.max_pool2d(xg, k, 2, p), "avg_pool": gpucnn.avg_pool2d(xg, k, 2, p)}
            for op in got:
                ok &= _check(got[op], want[op], "fp32", f"{op} {k}x{k}/2 p{p} {name} x{shape}")
    for shape in STATS_CASES:
        x = rng.standard_normal(shape) + 3
        xg = cp.asarray(x.astype(np.float32))
        for name, settings in variants.STATS.items():
            with variants.switches(settings):
                mean = backend.call("norm", "batch_norm_stats", xg, None, None, 0.1, 1e-5)[0]
            ok &= _check(mean, x.mean((0, 2, 3)), "fp32", f"batch-norm mean {name} x{shape}")
        for name, settings in variants.BIAS.items():
            with variants.switches(settings):
                db = backend.call("conv", "conv2d_backward_bias", xg)
            ok &= _check(db, x.sum((0, 2, 3)), "fp32", f"bias gradient {name} x{shape}")
    return ok


def large() -> bool:
    rng = np.random.default_rng(1)
    x = cp.asarray(rng.standard_normal((16, 64, 56, 56), dtype=np.float32))
    w = cp.asarray(rng.standard_normal((64, 64, 3, 3), dtype=np.float32))
    want = None
    ok = True
    for mode in MODES:
        with gpucnn.math_mode(mode):
            y = gpucnn.conv2d(x, w, padding=1)
        cp.cuda.Device().synchronize()
        if want is None:
            want = y.astype(cp.float64)
        err = float(cp.abs(y - want).max() / cp.abs(want).max())
        print(f"resnet-3x3 forward {mode}: relative difference from fp32 {err:.2e}")
        ok &= err < 3e-3
    # fp32 ran the Winograd kernels above (the heuristic's since session 31); the FFMA GEMM tile
    # (its choice before) forced too, so ncu sees both on one shape.
    with gpucnn.math_mode("fp32"), algo.override("gemm"):
        y = gpucnn.conv2d(x, w, padding=1)
    err = float(cp.abs(y - want).max() / cp.abs(want).max())
    print(f"resnet-3x3 forward fp32 gemm (FFMA): relative difference from fp32 {err:.2e}")
    ok &= err < 1e-5
    # tf32 and 3xtf32 ran the halo kernels above (the heuristic's since session 24; on sm_90 their
    # warpgroup variant since session 25, unless gpu.sh turned it off). Where the variant ran, the
    # mma.sync halo kernels too (forced), so ncu sees both on one shape.
    if "halowg" in _halo_families():  # the heuristic's choice for resnet-3x3 wherever it runs
        for mode in ("tf32", "3xtf32"):
            with gpucnn.math_mode(mode), algo.override("halo"):
                y = gpucnn.conv2d(x, w, padding=1)
            err = float(cp.abs(y - want).max() / cp.abs(want).max())
            print(f"resnet-3x3 forward {mode} halo (mma.sync): relative difference from fp32 {err:.2e}")
            ok &= err < 3e-3
    # The same
    # forward on the GEMM tiles (the family forced): in tf32 the wide mma.sync tile (the choice
    # until session 24, 3 blocks an SM), the wide warpgroup tile (wgmma: "64g" on compute
    # capability 9.0, the wide mma.sync tile elsewhere) and the 64 tile; in 3xtf32 the 64 tile
    # (its choice until session 24): ncu sees them beside the halo kernels on one shape, and
    # gpu.sh's step 7b reads where the time goes on each.
    for mode, edge in (("tf32", "64w"), ("tf32", "64g"), ("tf32", 64), ("3xtf32", 64)):
        with gpucnn.math_mode(mode), tc.force_tile(edge), algo.override("gemm"):
            y = gpucnn.conv2d(x, w, padding=1)
        err = float(cp.abs(y - want).max() / cp.abs(want).max())
        print(f"resnet-3x3 forward {mode} tile {edge}: relative difference from fp32 {err:.2e}")
        ok &= err < 3e-3
    # And in step 5e's other builds (variants.CONV): the FFMA tile at session 19's 2 blocks an SM
    # ("fewer blocks"), and the 64 tile in tf32 at 4 ("more blocks"): ncu's occupancy and stall
    # reasons of each build beside the ones above.
    for mode, tol, build in (("fp32", 1e-5, "fewer blocks an SM"), ("tf32", 3e-3, "more blocks an SM")):
        with gpucnn.math_mode(mode), tc.force_tile(64), variants.switches(variants.CONV[build]), \
                algo.override("gemm"):
            y = gpucnn.conv2d(x, w, padding=1)
        err = float(cp.abs(y - want).max() / cp.abs(want).max())
        print(f"resnet-3x3 forward {mode}, built for {build}: relative difference from fp32 {err:.2e}")
        ok &= err < tol
    # deepspeech (bench/gpucnn/bench/cases.py): the window kernel and, in tf32, the fold kernel
    # (kernels/conv2d_fold.cu) against the direct one.
    x = cp.asarray(rng.standard_normal((16, 1, 161, 700), dtype=np.float32))
    w = cp.asarray(rng.standard_normal((32, 1, 5, 20), dtype=np.float32))
    dy = cp.asarray(rng.standard_normal((16, 32, 79, 341), dtype=np.float32))
    dx = {}
    for spec, mode in (("window", "fp32"), ("direct", "fp32"), ("fold", "tf32")):
        with gpucnn.math_mode(mode), algo.override(spec):
            dx[spec] = gpucnn.conv2d_backward(dy, x, w, stride=2, bias=False)[0]
    with gpucnn.math_mode("tf32"), algo.override("fold"), fold.force_mma("wgmma"):  # the kind cost did not take
        dx["fold wgmma"] = gpucnn.conv2d_backward(dy, x, w, stride=2, bias=False)[0]
    for spec, tol in (("window", 1e-5), ("fold", 3e-3), ("fold wgmma", 3e-3)):
        err = float(cp.abs(dx[spec] - dx["direct"]).max() / cp.abs(dx["direct"]).max())
        print(f"deepspeech backward-data {spec}: relative difference from direct {err:.2e}")
        ok &= err < tol
    # The reductions whose bandwidth the model leaves open on cifar-resnet's output (33.6 MB):
    # batch norm's statistics and a bias gradient, for ncu's DRAM throughput beside the bench's rows.
    x = cp.asarray(rng.standard_normal((128, 64, 32, 32), dtype=np.float32) + 3)
    mean = backend.call("norm", "batch_norm_stats", x, cp.zeros(64, cp.float32), cp.ones(64, cp.float32), 0.1,
                        1e-5)[0]
    db = backend.call("conv", "conv2d_backward_bias", x)
    x64 = x.astype(cp.float64)
    checks = [("batch-norm mean", mean, x64.mean((0, 2, 3))), ("bias gradient", db, x64.sum((0, 2, 3)))]
    # the statistics' variants that step 5d times beside the default (the cp.async kernel since
    # session 20): the plain kernel in one wave and in four (gpucnn.bench.variants)
    for name in ("1 wave", "4 waves"):
        with variants.switches(variants.STATS[name]):
            got = backend.call("norm", "batch_norm_stats", x, None, None, 0.1, 1e-5)[0]
        checks.append((f"batch-norm mean, {name}", got, x64.mean((0, 2, 3))))
    with variants.switches(variants.BIAS["1 wave"]):  # the bias gradient's plain walk beside the ring's (session 23)
        checks.append(("bias gradient, 1 wave", backend.call("conv", "conv2d_backward_bias", x), x64.sum((0, 2, 3))))
    for name, got, want in checks:
        err = float(cp.abs(got - want).max() / cp.abs(want).max())
        print(f"cifar-resnet output {name}: relative difference from float64 {err:.2e}")
        ok &= err < 1e-6
    # The maps that the H200 run of 2026-11-30 timed below their targets on 102.8 MB: max pooling
    # 3x3/2 (38% of the copy bandwidth) and batch norm's apply (76%, where ReLU's map reached 91%).
    x = cp.asarray(rng.standard_normal((32, 64, 112, 112), dtype=np.float32))
    y = gpucnn.max_pool2d(x, 3, 2, 1)
    padded = cp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    want = functools.reduce(cp.maximum, (padded[:, :, i:i + 111:2, j:j + 111:2] for i in range(3) for j in range(3)))
    err = float(cp.abs(y - want).max())
    print(f"max_pool 3x3/2 forward: largest difference from CuPy's window maxima {err:.2e}")
    ok &= err == 0.0
    # and its backward (the gather by window ranges since this run): every dy lands on one input.
    # Without indices it runs the forward again (two launches), whose indices it need not check:
    # passed in, the stand-in's null kernels' (uninitialized) ones would be refused.
    dy = cp.abs(y) + 1
    dx = gpucnn.max_pool2d_backward(dy, x, 3, 2, 1)
    err = float(abs(dx.astype(cp.float64).sum() - dy.astype(cp.float64).sum()) / dy.astype(cp.float64).sum())
    print(f"max_pool 3x3/2 backward: relative difference of the gradient's sum {err:.2e}")
    ok &= err < 1e-6
    mean, invstd = x.mean((0, 2, 3)), 1 / cp.sqrt(x.var((0, 2, 3)) + 1e-5)
    y = backend.call("norm", "batch_norm_apply", x, mean, invstd, cp.ones(64, cp.float32), cp.zeros(64, cp.float32))
    err = float(cp.abs(y - (x - mean[:, None, None]) * invstd[:, None, None]).max())
    print(f"batch-norm apply 32x64x112x112: largest difference from CuPy's {err:.2e}")
    ok &= err < 1e-4
    return ok


def _compile(job: tuple) -> float:
    t = time.perf_counter()
    loader.cupy_module(*job)
    return time.perf_counter() - t


# a pass kernel of each of loader.PARTED's families: its tiles (tc.variants) are the family's
PARTED_BASES = {"conv2d": "conv2d_forward", "conv2d_phase": "conv2d_backward_data_phase",
                "linear": "linear_forward"}


def _compile_jobs() -> list[tuple]:
    """(family, options, a kernel of the part) for every part the loader builds on a GPU:
    loader.PARTED's families a part each (the kernels without tensor cores, then a tile's, named
    by a kernel of it), the others whole; then the parts of the convolution families that
    bench/ab_conv.py's A/B build launches (its FFMA kernels' and the 64 tile's), with the options
    Runtime.function adds for it."""
    jobs = []
    for family in loader.families():
        if family in loader.PARTED:
            base = PARTED_BASES[family]
            jobs += [(family, (), k) for k in (f"{base}_f32", *tc.variants(base))]
        else:
            jobs.append((family, (), None))
    for settings in variants.CONV.values():
        with variants.switches(settings):
            jobs += [(f, loader.switch_options(f), f"{PARTED_BASES[f]}{part}") for f in tc.WG_FAMILIES
                     for part in ("_f32", "_tf32_64", "_3xtf32_64", "_tf32_64w") if loader.switch_options(f)]
    return jobs


def compile_all() -> bool:
    """Every kernel family built for this GPU, a process a part (NVRTC's compile of one module
    runs on one core; conv2d whole took 112 s on the H200's host), so CuPy's disk cache holds them
    all for the later steps' processes."""
    jobs = _compile_jobs()
    with ProcessPoolExecutor(min(len(jobs), os.cpu_count() or 1), mp_context=mp.get_context("spawn")) as pool:
        for job, secs in sorted(zip(jobs, pool.map(_compile, jobs)), key=lambda js: -js[1]):
            part = loader.part(job[0], job[2]) if job[2] else ""
            print(f"{job[0]}{f' ({part})' if part else ''}: {secs:.1f} s")
    return True


if __name__ == "__main__":
    sys.exit(0 if {"small": small, "large": large, "compile": compile_all}[sys.argv[1]]() else 1)
