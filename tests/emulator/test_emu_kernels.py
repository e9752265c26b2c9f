"""Working fixture kernels give NumPy's results, under every resume order and guard side."""
import numpy as np
import pytest

from emu_helpers import kernel, requires_emulator
from gpucnn.runtime.emulator import emulation

ORDERS = [dict(resume_order="forward"), dict(resume_order="reverse", guard="start"),
          dict(resume_order="shuffle", seed=7)]

pytestmark = requires_emulator


@pytest.fixture(params=ORDERS, ids=lambda s: s["resume_order"])
def order(request):
    with emulation(**request.param):
        yield request.param["resume_order"]


@pytest.mark.parametrize("grid", [1, 3, 64])
def test_vadd_grid_stride(order, grid):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(1000, dtype=np.float32), rng.standard_normal(1000, dtype=np.float32)
    c = np.empty_like(a)
    kernel("basic", "vadd")((grid,), (128,), (a, b, c, np.int64(a.size)))
    np.testing.assert_array_equal(c, a + b)
    kernel("basic", "vadd")(grid, 128, (a, b, c, 1000))  # CuPy passes a Python int as int64


def test_transpose_all_orders(order):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((70, 45), dtype=np.float32)
    out = np.empty((45, 70), np.float32)
    kernel("shared", "transpose")(((45 + 31) // 32, (70 + 31) // 32), (32, 8),
                                  (x, out, np.int32(70), np.int32(45)))
    np.testing.assert_array_equal(out, x.T)


def test_smooth_two_barriers_per_step(order):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 256), dtype=np.float32)
    y = np.empty_like(x)
    kernel("shared", "smooth")(5, 256, (x, y, np.int32(32)))
    ref = x.copy()
    for _ in range(32):
        ref = (np.float32(0.5) * ref + np.float32(0.25) * (np.roll(ref, 1, 1) + np.roll(ref, -1, 1))).astype(np.float32)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_template_shared_memory(order):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(4 * 128, dtype=np.float32)
    d = rng.standard_normal(4 * 128)
    fs, ds = np.empty(4, np.float32), np.empty(4)
    kernel("shared", "block_totals")(4, 128, (x, d, fs, ds))
    np.testing.assert_allclose(fs, x.reshape(4, 128).sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds, d.reshape(4, 128).sum(1), rtol=1e-12)


def test_syncthreads_count_and_or(order):
    x = np.linspace(-3, 200, 3 * 64, dtype=np.float32)
    out = np.empty(9, np.int32)
    kernel("shared", "count_positive")(3, 64, (x, out))
    blocks = x.reshape(3, 64)
    ref = np.stack([(blocks > 0).sum(1), (blocks > -100).all(1), (blocks > 100).any(1)], 1).ravel()
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("name,dtype", [("reverse_dyn", np.float32), ("reverse_dyn_f64", np.float64)])
def test_dynamic_shared_memory(order, name, dtype):
    x = np.arange(3 * 96, dtype=dtype)
    y = np.empty_like(x)
    kernel("basic", name)(3, 96, (x, y, np.int32(x.size)), shared_mem=96 * x.itemsize)
    np.testing.assert_array_equal(y, x.reshape(3, 96)[:, ::-1].ravel())


def test_warp_shuffle_reduction(order):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(10_000, dtype=np.float32)
    out = np.empty(6, np.float32)
    kernel("warp", "block_sum")(6, 160, (x, np.int64(x.size), out))
    assert out.sum() == pytest.approx(float(x.astype(np.float64).sum()), rel=1e-4, abs=1e-3)
    stride = 6 * 160
    idx = np.arange(x.size)
    for b in range(6):
        sel = ((idx % stride) // 160) == b
        assert out[b] == pytest.approx(float(x[sel].sum()), rel=1e-4, abs=1e-4)


def test_warp_scan_broadcast_votes(order):
    x = np.random.default_rng(5).integers(-3, 10, 64).astype(np.int32)
    scan, bcast, anyall = (np.empty(64, np.int32) for _ in range(3))
    ballot, xsum, rot = np.empty(2, np.uint32), np.empty(64), np.empty(64, np.int64)
    kernel("warp", "warp_ops")(1, 64, (x, scan, bcast, ballot, anyall, xsum, rot))
    w = x.reshape(2, 32)
    np.testing.assert_array_equal(scan, np.cumsum(w, 1).ravel())
    np.testing.assert_array_equal(bcast, np.repeat(x.reshape(8, 8)[:, 3], 8))
    bits = (w > 0).astype(np.uint64) << np.arange(32, dtype=np.uint64)
    np.testing.assert_array_equal(ballot, bits.sum(1).astype(np.uint32))
    ref_any = np.repeat((w > 5).any(1), 32) * 2 + np.repeat((w >= 0).all(1), 32)
    np.testing.assert_array_equal(anyall, ref_any)
    np.testing.assert_array_equal(xsum, np.repeat(w.sum(1), 32).astype(np.float64))
    np.testing.assert_array_equal(rot, (np.roll(w, -1, 1).astype(np.int64) << 33).ravel())


def test_half_warp_mask(order):
    x = np.arange(32, dtype=np.float32)
    y = np.empty_like(x)
    kernel("warp", "half_warp")(1, 32, (x, y, np.uint32(0xFFFF)))
    ref = x.copy()
    ref[:8] += x[8:16]
    ref[8:16] *= 2  # a source lane past the width segment yields the caller's own value
    np.testing.assert_array_equal(y, ref)


def test_atomics(order):
    v = np.random.default_rng(6).integers(-50, 50, 1000).astype(np.int32)
    iout, uout = np.empty(4, np.int32), np.empty(2, np.uint32)
    llout, fout, dout = np.empty(2, np.int64), np.empty(1, np.float32), np.empty(2)
    kernel("basic", "atomics")(1, 128, (v, np.int32(v.size), iout, uout, llout, fout, dout))
    np.testing.assert_array_equal(iout, [v.sum(), v.max(), v.min(), -v.sum()])
    np.testing.assert_array_equal(uout, [1000, 999])
    np.testing.assert_array_equal(llout, [v.astype(np.int64).sum() * 10**9, v.max() * 3])
    assert fout[0] == pytest.approx(0.5 * v.sum())
    np.testing.assert_array_equal(dout, [0.25 * v.sum(), float(v.sum())])


def test_shared_atomics_histogram(order):
    v = np.random.default_rng(7).integers(0, 1000, 5000).astype(np.int32)
    out = np.empty(4 * 16, np.uint32)
    kernel("basic", "hist16")(4, 256, (v, np.int64(v.size), out))
    np.testing.assert_array_equal(out.reshape(4, 16).sum(0), np.bincount(v & 15, minlength=16))


def test_global_atomics_accumulate_without_poison():
    x = np.ones(3000, np.float32)
    acc = np.array([5.0], np.float32)
    with emulation(poison=False):
        kernel("basic", "gsum")(7, 64, (x, np.int64(x.size), acc))
    assert acc[0] == 3005.0


def test_vector_types(order):
    x = np.arange(40, dtype=np.float32)
    d = np.arange(12, dtype=np.float64)
    y, e = np.empty_like(x), np.empty_like(d)
    kernel("basic", "vec_types")(1, 32, (x, d, y, e, np.int32(10), np.int32(6)))
    x4 = x.reshape(10, 4)
    np.testing.assert_array_equal(y.reshape(10, 4), np.stack([x4[:, 3], x4[:, 2] * 2, x4[:, 1] + 1, x4[:, 0]], 1))
    d2 = d.reshape(6, 2)
    np.testing.assert_array_equal(e.reshape(6, 2), np.stack([d2[:, 1] * 2, d2[:, 0] - 1], 1))


def test_math_functions():
    x = np.linspace(-4, 4, 50, dtype=np.float32)
    d = np.linspace(-2, 2, 50)
    y, e = np.empty_like(x), np.empty_like(d)
    kernel("basic", "math_ops")(1, 64, (x, y, d, e, np.int32(50)))
    i = np.arange(50)
    ref = (np.exp(x) + 1 / np.sqrt(np.abs(x) + 1) + np.tanh(x)) + np.maximum(i, 3) + np.minimum(i, 5)
    np.testing.assert_allclose(y, ref.astype(np.float32), rtol=1e-5)
    np.testing.assert_allclose(e, d * 2 + 1 + np.exp(d) + d, rtol=1e-12)


def test_inout_parameter_keeps_callers_values(order):
    idx = np.array([5, 1, 7], np.int32)
    v = np.array([1, 2, 3], np.float32)
    out = np.arange(10, dtype=np.float32)
    k = kernel("basic", "scatter_add")
    assert k.inout == {2} and "GPUCNN_INOUT" in k.params[2][1]
    k(1, 32, (idx, v, out, np.int32(3)))
    ref = np.arange(10, dtype=np.float32)
    ref[idx] += v
    np.testing.assert_array_equal(out, ref)
