"""kernels/mma.cuh's warpgroup MMA (wgmma m64nNk8 TF32 from shared-memory
descriptors with the 128-byte swizzle), one warpgroup each, against matrices
of random small integers (every product and sum exact, so any accumulation
order gives these bits, and a misplaced element shows): on the emulator always;
on a GPU (marked gpu: bench/gpu.sh runs it with the primitives' tests) to
confirm that the emulator's reading of the descriptor, the swizzle and the
accumulator layout is the hardware's. The GPU build is NVRTC's for sm_90a
(wgmma is an architecture-specific feature), loaded as PTX. Statically: ptxas
accepts the PTX for sm_90a and the SASS holds HGMMA.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpucnn import backend
from gpucnn.runtime import compile_check, loader

import prims

_SRC = Path(__file__).resolve().parent / "kernels" / "wgmma_prims.cu"
_RUNTIMES = [pytest.param("emulator", id="emu")]
if backend.available("cuda")[0]:
    _RUNTIMES.append(pytest.param("cuda", id="cuda", marks=pytest.mark.gpu))
ARCH = "sm_90a"
SMEM = 1024 + 8192 + 128 * 128  # wgmma_gemm's alignment pad, A, and B for N = 128


def _module(name: str):
    if name == "cuda":
        import cupy
        if cupy.cuda.Device().compute_capability != "90":
            pytest.skip("wgmma needs sm_90 (sm_90a code)")
    return prims.module(_SRC, name, None if name == "emulator" else ARCH)


@pytest.fixture(params=_RUNTIMES)
def run(request):
    """run(kernel, args) on one block of 128 threads with SMEM bytes of dynamic shared
    memory, NumPy arrays in and out on either runtime."""
    name = request.param
    mod = _module(name)
    if name == "emulator":
        def call(kernel, args):
            mod.get_function(kernel)((1,), (128,), args, shared_mem=SMEM)
            return args
    else:
        import cupy

        def call(kernel, args):
            dev = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
            mod.get_function(kernel)((1, 1, 1), (128, 1, 1), dev, shared_mem=SMEM)
            return [d.get() if isinstance(d, cupy.ndarray) else d for d in dev]
    call.runtime = name
    return call


def _ints(rng, shape, bound=64):
    """Integers in [-bound, bound): exact in TF32; a row of 32 products of two stays exact in float32."""
    return rng.integers(-bound, bound, shape).astype(np.float32)


@pytest.mark.parametrize("n", [8, 16, 24, 32, 40, 48, 56, 64, 128])
@pytest.mark.parametrize("ksteps", [1, 4])
@pytest.mark.parametrize("scale_d", [0, 1])
def test_wgmma_layout_small_integers(run, n, ksteps, scale_d):
    rng = np.random.default_rng(n * 10 + ksteps)
    A, B, C = _ints(rng, (64, 32)), _ints(rng, (n, 32)), _ints(rng, (64, n), 2**16)
    D = np.full((64, n), np.nan, np.float32)
    D = run(f"wgmma_m64n{n}k8", (A, B, C, D, np.int32(ksteps), np.int32(scale_d)))[3]
    k = 8 * ksteps
    want = A[:, :k].astype(np.float64) @ B[:, :k].T.astype(np.float64) + (C if scale_d else 0)
    np.testing.assert_array_equal(D, want)


@pytest.mark.parametrize("n", [8, 40, 64, 128])
def test_wgmma_layout_distinct_elements(run, n):
    """Every element of A, B and C distinct (A's and B's integers of magnitude up to 2^10, B's up to
    2^11 for N = 128: exact in TF32), so a misplaced operand or accumulator shows by far more than rounding: within fp32's
    bound for a sum of 32 products and C in any order, (32 + 1) 2^-24 (|A| |B|ᵀ + |C|)."""
    rng = np.random.default_rng(n)
    A = (rng.permutation(2048) - 1024).reshape(64, 32).astype(np.float32)
    nb = max(2048, n * 32)
    B = (rng.permutation(nb)[:n * 32] - nb // 2).reshape(n, 32).astype(np.float32)
    C = ((rng.permutation(64 * n) - 32 * n) * 3.0).reshape(64, n).astype(np.float32)
    D = run(f"wgmma_m64n{n}k8", (A, B, C, np.full((64, n), np.nan, np.float32), np.int32(4), np.int32(1)))[3]
    A64, B64, C64 = A.astype(np.float64), B.astype(np.float64), C.astype(np.float64)
    err = np.abs(D - (A64 @ B64.T + C64))
    assert (err <= 33 * 2.0**-24 * (np.abs(A64) @ np.abs(B64).T + np.abs(C64))).all(), err.max()


def test_wgmma_operands_are_tf32(run):
    # 1 + 2^-11 + 2^-13 is not a TF32 value: the tensor core drops the low 13 bits (-> 1).
    A = np.full((64, 32), 1 + 2.0**-11 + 2.0**-13, np.float32)
    B = np.tile(np.arange(1, 9, dtype=np.float32)[:, None], (1, 32))
    D = run("wgmma_m64n8k8", (A, B, np.zeros((64, 8), np.float32), np.empty((64, 8), np.float32),
                              np.int32(1), np.int32(0)))[3]
    np.testing.assert_array_equal(D, np.tile(8 * np.arange(1, 9, dtype=np.float32), (64, 1)))


def test_wgmma_commit_groups(run):
    rng = np.random.default_rng(7)
    A, B = _ints(rng, (64, 32)), _ints(rng, (16, 32))
    out = run("wgmma_two_groups", (A, B, np.full(1024, np.nan, np.float32)))[2]
    want = A[:, :8].astype(np.float64) @ B[:, :8].T
    np.testing.assert_array_equal(out[:512].reshape(64, 8), want[:, :8])
    np.testing.assert_array_equal(out[512:].reshape(64, 8), want[:, 8:])


# The no-swizzle layouts of B: k-halves next to each other with 8-row groups after (lbo 128, sbo
# 1024), the row groups inside each k-quarter (lbo N * 16, sbo 128), and one with 16-byte gaps
# (lbo 144, sbo 1168): lbo and sbo each read where the other would put nothing or something else.
def _kmajor_layouts(n):
    return {"k-inner": (128, 1024), "rows-inner": (16 * n, 128), "gaps": (144, 1168)}


@pytest.mark.parametrize("n", [8, 16, 32, 64])
@pytest.mark.parametrize("layout", ["k-inner", "rows-inner", "gaps"])
@pytest.mark.parametrize("scale_d", [0, 1])
@pytest.mark.parametrize("waits", [0, 1], ids=["one-group", "group-a-step"])
def test_wgmma_rs_kmajor_small_integers(run, n, layout, scale_d, waits):
    """wgmma with A from registers (mma.sync's A fragment a warp) and B through a no-swizzle
    K-major descriptor: 4 k-steps against the exact product, in one commit group, or each its own
    with wait_group 1 after it (the next issued on accumulators still in flight)."""
    lbo, sbo = _kmajor_layouts(n)[layout]
    assert (n // 8 - 1) * sbo + 7 * lbo + 128 <= SMEM
    rng = np.random.default_rng(n + lbo)
    A, B, C = _ints(rng, (64, 32)), _ints(rng, (n, 32)), _ints(rng, (64, n), 2**16)
    D = run(f"wgmma_rs_m64n{n}k8", (A, B, C, np.full((64, n), np.nan, np.float32), np.int32(4),
                                    np.int32(scale_d), np.int32(lbo), np.int32(sbo), np.int32(waits)))[3]
    want = A.astype(np.float64) @ B.T.astype(np.float64) + (C if scale_d else 0)
    np.testing.assert_array_equal(D, want)


@pytest.mark.parametrize("n", [8, 64])
def test_wgmma_rs_distinct_elements(run, n):
    """Every element of A and B distinct: a misplaced register or core matrix shows beyond rounding."""
    rng = np.random.default_rng(100 + n)
    A = (rng.permutation(2048) - 1024).reshape(64, 32).astype(np.float32)
    B = (rng.permutation(2048)[:n * 32] - 1024).reshape(n, 32).astype(np.float32)
    D = run(f"wgmma_rs_m64n{n}k8", (A, B, np.zeros((64, n), np.float32), np.full((64, n), np.nan, np.float32),
                                    np.int32(4), np.int32(0), np.int32(144), np.int32(1168), np.int32(1)))[3]
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    err = np.abs(D - A64 @ B64.T)
    assert (err <= 33 * 2.0**-24 * (np.abs(A64) @ np.abs(B64).T)).all(), err.max()


def test_wgmma_rs_operands_are_tf32(run):
    # A's registers hold 1 + 2^-11 + 2^-13, not a TF32 value: the tensor core drops the low 13 bits.
    A = np.full((64, 32), 1 + 2.0**-11 + 2.0**-13, np.float32)
    B = np.tile(np.arange(1, 9, dtype=np.float32)[:, None], (1, 32))
    D = run("wgmma_rs_m64n8k8", (A, B, np.zeros((64, 8), np.float32), np.empty((64, 8), np.float32),
                                 np.int32(1), np.int32(0), np.int32(128), np.int32(1024), np.int32(0)))[3]
    np.testing.assert_array_equal(D, np.tile(8 * np.arange(1, 9, dtype=np.float32), (64, 1)))


def test_emulator_poisons_accumulators_in_flight():
    mod = _module("emulator")
    out = np.zeros(128, np.float32)
    mod.get_function("wgmma_early_read")((1,), (128,), (np.ones((64, 32), np.float32), out), shared_mem=SMEM)
    assert np.isnan(out).all()


def test_emulator_rejects_operands_outside_dynamic_shared_memory():
    from gpucnn.runtime.emulator import KernelFaultError
    mod = _module("emulator")
    with pytest.raises(KernelFaultError, match="wgmma B: row 0, k 0 at shared byte 9216, past the 9216 bytes"):
        mod.get_function("wgmma_misuse")((1,), (128,), (np.empty(128, np.float32), np.int32(9216), np.int32(0)),
                                         shared_mem=1024 + 8192)


def test_emulator_reports_an_operand_written_in_flight():
    """The race checks see a wgmma's operand reads (noted at its issue): another warp's write to
    its A between the issue and the wait, with no barrier, is a race."""
    from gpucnn.runtime.emulator import RaceError, emulation
    mod = _module("emulator")
    with emulation(race_check=True), pytest.raises(RaceError, match="earlier read by .* thread \\(0, 0, 0\\)"):
        mod.get_function("wgmma_misuse")((1,), (128,), (np.empty(128, np.float32), np.int32(0), np.int32(1)),
                                         shared_mem=SMEM)


def test_sm90a_build_has_hgmma():
    """ptxas takes the wgmma PTX for sm_90a without a warning, and the SASS runs HGMMA."""
    from gpucnn.runtime import sass_report
    try:
        sass_report.cuobjdump()
        compile_check.ctypes_backend()
    except (RuntimeError, FileNotFoundError) as e:
        pytest.skip(f"no NVRTC or cuobjdump here: {e}")
    text = loader.inline_file(_SRC)
    result = compile_check.compile_source(text, "wgmma_prims.cu", ARCH)
    assert result.ok and not result.warnings, (result.errors, result.warnings)
    sass = sass_report.parse_sass(sass_report.disassemble(sass_report.cubin_of(text, "wgmma_prims.cu", ARCH)))
    for n in (*range(8, 72, 8), 128):
        ops = [i.op for i in sass[f"wgmma_m64n{n}k8"]]
        assert sum(op.startswith("HGMMA.64x%dx8" % n) for op in ops) >= 1, sorted(set(ops))
    for n in (8, 16, 32, 64):  # A from registers
        ops = [i.op for i in sass[f"wgmma_rs_m64n{n}k8"]]
        assert sum(op.startswith("HGMMA.64x%dx8" % n) for op in ops) >= 1, sorted(set(ops))
