"""kernels/mma.cuh's primitives, one warp each, against matrices whose every
element is distinct, laid out by the PTX ISA's fragment tables: on the
emulator always, and on a GPU (marked gpu) to confirm the emulator's layouts
in seconds (bench/gpu.sh runs this file first).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpucnn import backend

import prims

_SRC = Path(__file__).resolve().parent / "kernels" / "mma_prims.cu"
_RUNTIMES = [pytest.param("emulator", id="emu")]
if backend.available("cuda")[0]:
    _RUNTIMES.append(pytest.param("cuda", id="cuda", marks=pytest.mark.gpu))


def _module(name: str):
    return prims.module(_SRC, name)


@pytest.fixture(params=_RUNTIMES)
def run(request):
    """run(kernel, grid, block, arrays...) with NumPy arrays in and out on either runtime."""
    name = request.param
    mod = _module(name)
    if name == "emulator":
        def call(kernel, args, threads=32):
            mod.get_function(kernel)((1,), (threads,), args)
            return args
    else:
        import cupy

        def call(kernel, args, threads=32):
            dev = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
            mod.get_function(kernel)((1,), (threads,), tuple(dev))
            return [d.get() if isinstance(d, cupy.ndarray) else d for d in dev]
    call.runtime = name
    return call


def _tf32_trunc(x):
    return (np.asarray(x, np.float32).view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)


def _mma(run, A, B, C, convert):
    D = np.empty((16, 8), np.float32)
    return run("mma_m16n8k8", (A, B, C, D, np.int32(convert)))[3]


def test_mma_layout_distinct_integers(run):
    # Distinct small integers: every product and partial sum is exact, so any
    # accumulation order gives these bits, and a permuted fragment cannot.
    rng = np.random.default_rng(0)
    A = rng.permutation(128).reshape(16, 8).astype(np.float32) - 64
    B = rng.permutation(64).reshape(8, 8).astype(np.float32) - 32
    C = rng.permutation(128).reshape(16, 8).astype(np.float32) * 1000
    for convert in (0, 1):
        np.testing.assert_array_equal(_mma(run, A, B, C, convert), A.astype(np.float64) @ B + C)


def test_mma_operand_rounding(run):
    # 1 + 2^-11 + 2^-13 is not a TF32 value: the tensor core drops the low 13
    # bits of an unconverted register (-> 1), cvt.rna rounds up (-> 1 + 2^-10).
    v = np.float32(1 + 2.0**-11 + 2.0**-13)
    A = np.full((16, 8), v, np.float32)
    B = np.eye(8, dtype=np.float32) * np.arange(1, 9, dtype=np.float32)
    C = np.zeros((16, 8), np.float32)
    np.testing.assert_array_equal(_mma(run, A, B, C, 0), _tf32_trunc(A).astype(np.float64) @ B)
    np.testing.assert_array_equal(_mma(run, A, B, C, 1), np.float64(1 + 2.0**-10) * np.ones((16, 8)) @ B)


def _rna(x):
    """cvt.rna.tf32.f32 by hand: nearest, ties away from zero, on the magnitude."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x1000) & 0xFFFFE000).astype(np.uint32)


def test_cvt_rna_tf32(run):
    ulp = 2.0**-10
    x = np.array([1.0, 1 + ulp / 2, 1 + ulp / 2 - 2.0**-23, 1 + 1.5 * ulp, -(1 + ulp / 2), 3.0e-39, -0.0,
                  np.inf, -np.inf, np.finfo(np.float32).max], np.float32)
    y = np.empty(x.size, np.uint32)
    y = run("cvt_tf32", (x, y, np.int32(x.size)))[1]
    want = _rna(x)
    want[7:9] = x[7:9].view(np.uint32)  # infinities stay
    want[9] = np.float32(np.inf).view(np.uint32)  # rounds past the largest finite TF32
    np.testing.assert_array_equal(y, want)
    assert y[1] == np.float32(1 + ulp).view(np.uint32)  # a tie goes away from zero
    assert y[4] == np.float32(-(1 + ulp)).view(np.uint32)
    nan = run("cvt_tf32", (np.array([np.nan], np.float32), np.empty(1, np.uint32), np.int32(1)))[1]
    assert np.isnan(nan.view(np.float32)[0])


def _rn(x):
    """cvt.rn.tf32.f32 by hand: nearest, ties to even (the kept last bit), on the magnitude."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0xFFF + ((b >> 13) & 1)) & 0xFFFFE000).astype(np.uint32)


def _cc(run):
    if run.runtime != "cuda":
        return 90  # the emulator's tf32_rn is sm_90's
    import cupy
    return int(cupy.cuda.Device().compute_capability)


def test_cvt_rn_tf32(run):
    ulp = 2.0**-10
    x = np.array([1.0, 1 + ulp / 2, 1 + 1.5 * ulp, 1 + ulp / 2 + 2.0**-23, -(1 + 1.5 * ulp), 3.0e-39, -0.0,
                  np.inf, -np.inf, np.finfo(np.float32).max], np.float32)
    y = run("cvt_tf32_rn", (x, np.empty(x.size, np.uint32), np.int32(x.size)))[1]
    want = _rn(x) if _cc(run) >= 90 else _rna(x)  # before sm_90 tf32_rn is cvt.rna (mma.cuh)
    want[7:9] = x[7:9].view(np.uint32)  # infinities stay
    want[9] = np.float32(np.inf).view(np.uint32)  # rounds past the largest finite TF32
    np.testing.assert_array_equal(y, want)
    if _cc(run) >= 90:
        assert y[1] == np.float32(1).view(np.uint32)  # a tie goes to the even neighbour: down ...
        assert y[2] == np.float32(1 + 2 * ulp).view(np.uint32)  # ... or up
        assert y[4] == np.float32(-(1 + 2 * ulp)).view(np.uint32)
    assert y[3] == np.float32(1 + ulp).view(np.uint32)  # just above a tie: up
    nan = run("cvt_tf32_rn", (np.array([np.nan], np.float32), np.empty(1, np.uint32), np.int32(1)))[1]
    assert np.isnan(nan.view(np.float32)[0])


def _ldsm_want(m, count, trans):
    """m: (4, 8, 8) b16 matrices -> (32, 4) registers by the PTX ISA's ldmatrix table."""
    out = np.zeros((32, 4), np.uint32)
    for lane in range(32):
        r, c = lane // 4, 2 * (lane % 4)
        for i in range(count):
            lo, hi = (m[i, c, r], m[i, c + 1, r]) if trans else (m[i, r, c], m[i, r, c + 1])
            out[lane, i] = int(lo) | int(hi) << 16
    return out


@pytest.mark.parametrize("count", [1, 2, 4])
@pytest.mark.parametrize("trans", [False, True], ids=["", "trans"])
def test_ldmatrix(run, count, trans):
    m = (np.random.default_rng(1).permutation(256) * 97 + 5).astype(np.uint16).reshape(4, 8, 8)
    words = m.reshape(32, 4, 2).astype(np.uint32)
    packed = (words[..., 0] | words[..., 1] << 16).ravel()
    out = np.empty(128, np.uint32)
    out = run(f"ldsm_x{count}{'_t' if trans else ''}", (packed, out))[1]
    np.testing.assert_array_equal(out.reshape(32, 4), _ldsm_want(m, count, trans))


@pytest.mark.parametrize("nbytes", [4, 8, 16])
def test_cp_async_zero_fill(run, nbytes):
    e = nbytes // 4
    src = np.arange(1, 64 * e + 1, dtype=np.float32)
    keep = np.random.default_rng(nbytes).integers(0, e + 1, 64).astype(np.int32) * 4  # whole elements
    out = np.empty(64 * e, np.float32)
    out = run(f"copy{nbytes}", (src, keep, out, np.int32(2)))[2]
    want = np.where(np.arange(e)[None, :] < (keep // 4)[:, None], src.reshape(64, e), 0).ravel()
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("waits", [0, 1])
def test_cp_async_destination_is_poison_until_its_wait(run, waits):
    if run.runtime != "emulator":
        pytest.skip("on a GPU an early read is a race with an unspecified result")
    src = np.arange(1, 65, dtype=np.float32)
    out = np.empty(64, np.float32)
    out = run("copy4", (src, np.full(64, 4, np.int32), out, np.int32(waits)))[2]
    landed = 32 * waits  # wait_group 1 of two groups: the first has landed
    np.testing.assert_array_equal(out[:landed], src[:landed])
    assert np.isnan(out[landed:]).all()


@pytest.mark.parametrize("start, wrap, want", [(40, 63, [*range(40, 64), *range(8)]), (100, 63, [100, *range(31)])],
                         ids=["wraps-past-wrap", "starts-above-wrap"])
def test_atomic_inc_acq_rel(run, start, wrap, want):
    # 32 lanes count on one word: each gets a distinct old value (atom.inc: old >= wrap -> 0, else
    # old + 1), the set the count passes through in some order, and the word ends where the count does.
    counter = np.array([start], np.uint32)
    counter, old = run("atom_inc_acq_rel", (counter, np.empty(32, np.uint32), np.uint32(wrap)))[:2]
    np.testing.assert_array_equal(np.sort(old), np.sort(np.array(want, np.uint32)))
    assert int(counter[0]) == (want[-1] + 1 if want[-1] < wrap else 0)


def test_emulator_reports_misuse():
    from gpucnn.runtime.emulator import BarrierError, KernelFaultError
    mod = _module("emulator")
    with pytest.raises(KernelFaultError, match="cp.async source .* not 16-byte aligned"):
        mod.get_function("bad_copy_align")(1, 32, (np.zeros(80, np.float32), np.empty(32, np.float32)))
    with pytest.raises(KernelFaultError, match="ldmatrix row: .* not 16-byte aligned"):
        mod.get_function("bad_ldsm_align")(1, 32, (np.empty(32, np.float32),))
    with pytest.raises(BarrierError, match="mma.sync.*lane 31 .* has exited"):
        mod.get_function("bad_mma_diverged")(1, 32, (np.empty(32, np.float32),))
    with pytest.raises(BarrierError, match="warp of 16 threads"):
        mod.get_function("bad_mma_diverged")(1, 16, (np.empty(16, np.float32),))
