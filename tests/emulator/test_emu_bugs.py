"""Planted bugs are caught with the right exception, naming kernel, block, thread and line."""
import numpy as np
import pytest

from emu_helpers import kernel, line_of, requires_emulator
from gpucnn.runtime.emulator import (BarrierError, ConstWriteError, EmuModule, EmulatorError, KernelArgumentError,
                                     KernelBuildError, LaunchConfigError, OutOfBoundsError,
                                     UnwrittenOutputError, emulation)
from gpucnn.runtime.emulator.errors import KernelFaultError, KernelNotFoundError

pytestmark = requires_emulator


def _transpose(name, order):
    x = np.random.default_rng(0).standard_normal((64, 96), dtype=np.float32)
    out = np.empty((96, 64), np.float32)
    with emulation(**order):
        kernel("shared", name)((3, 2), (32, 8), (x, out, np.int32(64), np.int32(96)))
    return out, x.T


ORDERS = [dict(resume_order="forward"), dict(resume_order="reverse"), dict(resume_order="shuffle", seed=1),
          dict(resume_order="shuffle", seed=2)]


def test_missing_syncthreads_changes_results():
    """Without the race checks, a missing barrier still shows in the results under some order."""
    for order in ORDERS:
        order = dict(order, race_check=False)
        out, ref = _transpose("transpose", order)
        np.testing.assert_array_equal(out, ref)
    wrong = [not np.array_equal(*_transpose("transpose_nosync", dict(o, race_check=False))) for o in ORDERS]
    assert wrong[1] or wrong[2] or wrong[3], "a missing barrier went unnoticed under reverse and shuffle"


def test_off_by_one_write_past_end():
    x, y = np.ones(1000, np.float32), np.empty(1000, np.float32)
    with pytest.raises(OutOfBoundsError) as e:
        kernel("bugs", "off_by_one")(4, 256, (x, y, np.int32(1000)))
    msg = str(e.value)
    assert "off_by_one" in msg and "write" in msg and "'y'" in msg and "0 bytes past the end" in msg
    assert "block (3, 0, 0)" in msg and "thread (232, 0, 0)" in msg
    assert line_of("bugs", "BUG: off-by-one") in msg
    assert e.value.location.endswith(line_of("bugs", "BUG: off-by-one"))
    assert np.all(y != 2.0), "outputs must not be copied back after a failed launch"


def test_read_before_start_caught_with_guard_start():
    x, y = np.arange(300, dtype=np.float32), np.empty(300, np.float32)
    with emulation(guard="start"), pytest.raises(OutOfBoundsError) as e:
        kernel("bugs", "shift_left")(2, 256, (x, y, np.int32(300)))
    msg = str(e.value)
    assert "shift_left" in msg and "read" in msg and "4 bytes before the start of argument #0 'x'" in msg
    assert "block (0, 0, 0) thread (0, 0, 0)" in msg and line_of("bugs", "BUG: read at -1") in msg
    with emulation(guard="end"):  # the slack before the data is poisoned: the read yields NaN
        kernel("bugs", "shift_left")(2, 256, (x, y, np.int32(300)))
    assert np.isnan(y[0]) and np.array_equal(y[1:], x[:-1] + x[1:])


def test_unwritten_output_element():
    x, y = np.ones(100, np.float32), np.zeros(100, np.float32)
    with pytest.raises(UnwrittenOutputError) as e:
        kernel("bugs", "evens_only")(1, 64, (x, y, np.int64(100)))
    msg = str(e.value)
    assert "evens_only" in msg and "'y'" in msg and "50 of 100" in msg and "first unwritten flat index 1" in msg
    assert np.all(y == 0), "outputs must not be copied back after a failed launch"


def test_grid_too_small_without_grid_stride_loop():
    x, y = np.ones(1000, np.float32), np.empty(1000, np.float32)
    k = kernel("bugs", "scale_no_stride")
    k(8, 128, (x, y, np.int32(1000), np.float32(3)))
    assert np.all(y == 3)
    with pytest.raises(UnwrittenOutputError) as e:
        k(2, 128, (x, y, np.int32(1000), np.float32(3)))
    assert "scale_no_stride" in str(e.value) and "744 of 1000" in str(e.value) and "index 256" in str(e.value)


def test_syncthreads_after_early_return():
    x, y = np.ones(300, np.float32), np.empty(300, np.float32)
    with pytest.raises(BarrierError) as e:
        kernel("bugs", "early_return")(2, 256, (x, y, np.int32(300)))
    msg = str(e.value)
    assert "early_return" in msg and "block (1,0,0)" in msg and "exited" in msg
    assert "(44,0,0)" in msg and "(0,0,0)" in msg and line_of("bugs", "not reached by") in msg


def test_syncthreads_at_different_sites():
    with pytest.raises(BarrierError) as e:
        kernel("bugs", "split_sync")(1, 64, (np.empty(64, np.float32),))
    msg = str(e.value)
    assert "split_sync" in msg and "different barriers" in msg and "block (0,0,0)" in msg
    assert line_of("bugs", "site A") in msg and line_of("bugs", "site B") in msg


def test_warp_collective_naming_exited_lane():
    x, y = np.arange(32, dtype=np.float32), np.empty(32, np.float32)
    with pytest.raises(BarrierError) as e:
        kernel("warp", "half_warp")(1, 32, (x, y, np.uint32(0xFFFFFFFF)))
    msg = str(e.value)
    assert "half_warp" in msg and "__shfl_down_sync()" in msg and "lane 16" in msg and "exited" in msg
    assert "warp.cu:" in msg


@pytest.mark.parametrize("grid,block,smem,what", [
    (1, 2048, 0, "threads"), (1, (32, 32, 2), 0, "threads"), (1, (1, 1, 65), 0, "dimensions"),
    ((1, 70000), 32, 0, "grid"), (0, 32, 0, ">= 1"), (1.0, 32, 0, "int"), ((1, 1, 1, 1), 32, 0, "tuple"),
    (1, 32, 49 * 1024, "shared memory"), (1, 32, -1, "non-negative")])
def test_launch_limits(grid, block, smem, what):
    with pytest.raises(LaunchConfigError) as e:
        kernel("basic", "vadd")(grid, block, (np.ones(4, np.float32),) * 3 + (np.int64(4),), shared_mem=smem)
    assert "vadd" in str(e.value) and what in str(e.value)


def test_static_shared_memory_counts_toward_limit():
    k = kernel("bugs", "big_smem")
    assert k.static_shared_mem >= 40000
    k(1, 64, (np.empty(64, np.float32),))
    with pytest.raises(LaunchConfigError, match="big_smem.*40000 bytes of static and 10000 bytes of dynamic"):
        k(1, 64, (np.empty(64, np.float32),), shared_mem=10000)


def test_launch_bounds_exceeded():
    k = kernel("bugs", "bounded")
    assert k.launch_bounds == 128
    k(2, 128, (np.empty(256, np.float32),))
    with pytest.raises(LaunchConfigError, match=r"bounded.*256 threads.*__launch_bounds__\(128\)"):
        k(1, 256, (np.empty(256, np.float32),))


def test_argument_errors():
    k = kernel("bugs", "scale_no_stride")
    x, y = np.ones(8, np.float32), np.empty(8, np.float32)
    k(1, 8, (x, y, np.int32(8), np.float32(2)))
    cases = [
        ((x, y, 8.0, np.float32(2)), "argument #2 'n'", "numpy.int32", "Python float"),
        ((x, y, 8, np.float32(2)), "argument #2 'n'", "numpy.int32", "Python int"),
        ((x, y, np.int32(8), np.float64(2)), "argument #3 'a'", "numpy.float32", "numpy.float64"),
        ((x, y, np.int32(8), 2.0), "argument #3 'a'", "numpy.float32", "Python float"),
        ((x.astype(np.float64), y, np.int32(8), np.float32(2)), "argument #0 'x'", "dtype float32", "float64"),
        ((np.ones(16, np.float32)[::2], y, np.int32(8), np.float32(2)), "argument #0 'x'", "C-contiguous",
         "not C-contiguous"),
        ((x, y, np.int32(8)), "expected 4 arguments", "float a", "got 3"),
        ((x, np.float32(1), np.int32(8), np.float32(2)), "argument #1 'y'", "numpy array", "numpy.float32"),
    ]
    for args, *parts in cases:
        with pytest.raises(KernelArgumentError) as e:
            k(1, 8, args)
        for p in ["scale_no_stride", *parts]:
            assert p in str(e.value), (p, str(e.value))


def test_write_through_const_pointer():
    x, y = np.ones(100, np.float32), np.empty(100, np.float32)
    with pytest.raises(ConstWriteError) as e:
        kernel("bugs", "clobber_input")(1, 128, (x, y, np.int32(100)))
    assert isinstance(e.value, OutOfBoundsError)
    msg = str(e.value)
    assert "clobber_input" in msg and "const pointer argument #0 'x'" in msg and "thread (0, 0, 0)" in msg
    assert line_of("bugs", "BUG: write through const") in msg
    assert np.all(x == 1)


def test_dynamic_shared_memory_overflow():
    with pytest.raises(OutOfBoundsError) as e:
        kernel("bugs", "dyn_overflow")(1, 64, (np.empty(64, np.float32),), shared_mem=128)
    msg = str(e.value)
    assert "dynamic shared memory (128 bytes)" in msg and "thread (32, 0, 0)" in msg
    assert line_of("bugs", "shared_mem too small") in msg


def test_arithmetic_fault_and_assert():
    x = np.arange(32, dtype=np.int32)
    with pytest.raises(KernelFaultError, match=r"divide: arithmetic exception.*bugs.cu:\d+"):
        kernel("bugs", "divide")(1, 32, (x, np.empty_like(x), np.int32(0)))
    f = np.ones(32, np.float32)
    f[5] = -1
    with pytest.raises(KernelFaultError, match=r"checked: block \(0, 0, 0\) thread \(5, 0, 0\): assertion"):
        kernel("bugs", "checked")(1, 32, (f, np.empty_like(f)))


def test_build_error_carries_compiler_log():
    with pytest.raises(KernelBuildError) as e:
        EmuModule('#line 1 "broken.cu"\nextern "C" __global__ void broken(float* y) {\n  y[0] = undefined_name;\n}\n')
    assert "broken.cu:2:" in str(e.value) and "undefined_name" in str(e.value) and "undefined_name" in e.value.log


def test_unknown_kernel_and_option():
    mod = EmuModule('extern "C" __global__ void k1(float* y) { y[threadIdx.x] = 1.0f; }')
    with pytest.raises(KernelNotFoundError) as e:
        mod.get_function("k2")
    assert isinstance(e.value, AttributeError) and isinstance(e.value, EmulatorError) and "k1" in str(e.value)
    with pytest.raises(KernelBuildError, match="--bogus"):
        EmuModule('extern "C" __global__ void k1(float* y) {}', ("--bogus",))


def test_write_into_slack_found_after_launch():
    x, y = np.ones(1000, np.float32), np.empty(1000, np.float32)
    with emulation(guard="start"), pytest.raises(OutOfBoundsError) as e:
        kernel("bugs", "off_by_one")(4, 256, (x, y, np.int32(1000)))
    msg = str(e.value)
    assert "off_by_one" in msg and "0 bytes past the end of argument #1 'y'" in msg and "after the launch" in msg
