"""The checks of checked builds: each planted bug in kernels/checks.cu passes a plain launch
and is reported, with its error class and location, by race_check, misalign, sanitize or blocks."""
import mmap

import numpy as np
import pytest

from emu_helpers import kernel, line_of, requires_emulator
from gpucnn.runtime.emulator import (LaunchConfigError, MisalignedAccessError, RaceError,
                                     UndefinedBehaviorError, emulation)

pytestmark = requires_emulator
PLAIN = dict(race_check=False, sanitize=False, misalign=False)
ORDERS = [dict(resume_order="forward"), dict(resume_order="reverse"), dict(resume_order="shuffle", seed=3)]


def _locations(e) -> set:
    """The two accesses of a RaceError as 'file.cu:LINE' (which one comes first depends on the order)."""
    return {e.value.location.rsplit("/", 1)[-1], e.value.other_location.rsplit("/", 1)[-1]}


def _reuse(**cfg):
    x = np.arange(64, dtype=np.float32)
    y = np.empty(64, np.float32)
    with emulation(**cfg):
        kernel("checks", "reuse_without_barrier")(1, 64, (x, y))
    v = 2 * (x + np.r_[x[1:], 0])
    return y, v + np.r_[v[1:], 0]


def test_shared_buffer_reuse_race_in_every_order():
    y, want = _reuse(**PLAIN, resume_order="forward")
    np.testing.assert_array_equal(y, want)  # what a plain launch in forward order saw: nothing wrong
    for order in ORDERS:
        with pytest.raises(RaceError) as e:
            _reuse(race_check=True, **order)
        msg = str(e.value)
        assert "reuse_without_barrier" in msg and "__shared__ s" in msg and "__syncthreads()" in msg
        assert _locations(e) == {line_of("checks", "BUG: no barrier"), line_of("checks", "OK: round-one read")}
        assert e.value.block == e.value.other_block == (0, 0, 0) and e.value.thread != e.value.other_thread


def test_warp_exchange_needs_syncwarp():
    x, y = np.arange(32, dtype=np.float32), np.empty(32, np.float32)
    k = kernel("checks", "warp_exchange")
    with emulation(race_check=True, resume_order="reverse"):
        k(1, 32, (x, y, np.int32(1)))
        np.testing.assert_array_equal(y, x[::-1])
        with pytest.raises(RaceError) as e:
            k(1, 32, (x, y, np.int32(0)))
    msg = str(e.value)
    assert "__syncwarp()" in msg and line_of("checks", "BUG: without the __syncwarp") in msg
    assert line_of("checks", "OK: warp write") in msg


def test_inter_block_race_and_atomics():
    x = np.arange(1, 9, dtype=np.float32)
    out = np.zeros(1, np.float32)
    with emulation(**PLAIN):
        kernel("checks", "block_sum_plain")(8, 32, (x, out))
    assert out[0] == 36  # blocks run one after another: a plain launch adds up right
    with emulation(race_check=True), pytest.raises(RaceError) as e:
        kernel("checks", "block_sum_plain")(8, 32, (x, np.zeros(1, np.float32)))
    msg = str(e.value)
    assert "argument #1 'out'" in msg and "element 0" in msg and "different blocks" in msg
    assert e.value.block == (1, 0, 0) and e.value.other_block == (0, 0, 0)
    assert line_of("checks", "BUG: plain +=") in msg
    out[:] = 0
    with emulation(race_check=True):
        kernel("checks", "block_sum_atomic")(8, 32, (x, out))
    assert out[0] == 36


def _last_block_sum(mode, blocks=4, **cfg):
    x = np.arange(blocks * 32, dtype=np.float32)
    count = np.zeros(1, np.uint32)
    out = np.empty(32, np.float32)
    with emulation(**cfg):
        kernel("checks", "last_block_sum")(blocks, 32, (x, np.empty_like(x), count, out, np.int32(mode)))
    return out, count, x.reshape(blocks, 32).sum(axis=0)


def test_last_block_reduction_ordered_by_release_and_acquire():
    for order in ORDERS:  # the fences order the partials before the last block's reads: no race
        for _ in range(2):  # the atomicInc wrapped the count: a second launch elects its last block again
            out, count, want = _last_block_sum(0, race_check=True, **order)
            np.testing.assert_array_equal(out, want)
            assert count[0] == 0


@pytest.mark.parametrize("mode", [1, 2, 3, 4], ids=["no-release-fence", "no-acquire-fence", "write-after-fence",
                                                    "read-before-barrier"])
def test_last_block_reduction_without_release_or_acquire_races(mode):
    out, _, want = _last_block_sum(mode, **PLAIN)
    np.testing.assert_array_equal(out, want)  # blocks run one after another: a plain launch adds up right
    for order in ORDERS:
        with pytest.raises(RaceError) as e:
            _last_block_sum(mode, race_check=True, **order)
        msg = str(e.value)
        assert "argument #1 'part'" in msg and "different blocks" in msg
        assert e.value.block == (3, 0, 0) and e.value.other_block != (3, 0, 0)
        write = "BUG: after the fence" if mode == 3 else "OK: partial write"
        read = "BUG: before the barrier" if mode == 4 else "OK: the last block's read"
        assert _locations(e) == {line_of("checks", write), line_of("checks", read)}


def test_read_of_another_blocks_write():
    with emulation(race_check=True), pytest.raises(RaceError) as e:
        kernel("checks", "read_neighbour_block")(4, 32, (np.empty(4, np.float32),))
    msg = str(e.value)
    assert "read by block (1, 0, 0) thread (0, 0, 0)" in msg and "write by block (0, 0, 0)" in msg
    assert line_of("checks", "BUG: another block's element") in msg and line_of("checks", "OK: own element") in msg


def test_inout_scatter_may_write_one_word_twice():
    v = np.arange(100, dtype=np.float32)
    idx = (np.arange(100) % 7).astype(np.int32)
    out = np.full(7, -1, np.float32)
    with emulation(race_check=True):
        kernel("checks", "scatter")(4, 32, (v, idx, out, np.int32(100)))
    assert all(out[j] in v[idx == j] for j in range(7))  # one of the duplicates wins


def test_misaligned_output_of_a_vector_path():
    x = np.arange(64, dtype=np.float32)
    k = kernel("checks", "scale_vec")
    for cfg in (PLAIN, dict(race_check=True)):  # arguments share their alignment: the bug hides
        y = np.empty(64, np.float32)
        with emulation(**cfg):
            k(2, 32, (x, y, np.int64(64)))
        np.testing.assert_array_equal(y, 2 * x)
    with emulation(misalign=True), pytest.raises(MisalignedAccessError) as e:
        k(2, 32, (x, np.empty(64, np.float32), np.int64(64)))
    msg = str(e.value)
    assert "misaligned store of type 'struct float4'" in msg and "argument #1 'out'" in msg and "16-byte" in msg
    assert "shifted by misalign=True" in msg and e.value.alignment == 16 and e.value.address % 16 == 4
    assert e.value.location.endswith(line_of("checks", "BUG: misaligned store"))
    base = np.empty(65, np.float32)  # an offset view, as a GPU caller's y[1:] would be
    with emulation(race_check=True), pytest.raises(MisalignedAccessError, match="argument #1 'out'"):
        with emulation(misalign=True):
            k(2, 32, (x, base[1:], np.int64(64)))


def test_first_pointer_stays_aligned_and_offset_views_keep_their_offset():
    x = np.arange(65, dtype=np.float32)
    y = np.empty(64, np.float32)
    with emulation(misalign=True):
        kernel("checks", "scale_vec")(2, 32, (x[1:], y, np.int64(64)))  # in misaligned: the scalar path
    np.testing.assert_array_equal(y, 2 * x[1:])


def test_signed_overflow_in_an_int_offset():
    x = np.arange(1000, dtype=np.float32)
    y = np.empty(32, np.float32)
    args = (x, y, np.int32(64), np.int32(65536), np.int32(600), np.int32(1000))  # 600 * 64 * 65536 > 2^31
    with emulation(**PLAIN):
        kernel("checks", "wrap_index")(1, 32, args)  # silently reads the wrong elements
    with emulation(sanitize=True), pytest.raises(UndefinedBehaviorError) as e:
        kernel("checks", "wrap_index")(1, 32, args)
    msg = str(e.value)
    assert "signed integer overflow: 65536 * 38400 cannot be represented in type 'int'" in msg
    assert e.value.location.endswith(line_of("checks", "BUG: int offset")) and "sanitize=True" in msg


def test_shift_by_the_width():
    s, y = np.array([0, 5, 31, 32], np.int32), np.empty(4, np.uint32)
    with emulation(sanitize=True), pytest.raises(UndefinedBehaviorError) as e:
        kernel("checks", "shift_left")(1, 4, (s, y))
    assert "shift out of range" in str(e.value) and e.value.thread == (3, 0, 0)
    assert e.value.location.endswith(line_of("checks", "BUG: shift by the width"))


def _lazy(n: int) -> np.ndarray:
    """n float32 of address space, backed by memory only where touched."""
    m = mmap.mmap(-1, 4 * n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000)  # MAP_NORESERVE
    return np.frombuffer(m, np.float32)


def test_far_end_blocks_past_2_31_elements():
    n = 2**31 + 200
    x, y = _lazy(n), _lazy(n)
    x[-300:] = np.arange(300, dtype=np.float32)
    grid = -(-n // 256)
    with emulation(blocks=(-1, -2)):
        kernel("checks", "copy_wide_index")(grid, 256, (x, y, np.int64(n)))
    np.testing.assert_array_equal(y[-300:], x[-300:])
    with emulation(blocks=(-1,), sanitize=True), pytest.raises(UndefinedBehaviorError) as e:
        kernel("checks", "copy_int_index")(grid, 256, (x, y, np.int64(n)))
    assert "signed integer overflow" in str(e.value) and e.value.block == (grid - 1, 0, 0)
    assert e.value.location.endswith(line_of("checks", "BUG: int index"))


def test_blocks_are_checked_against_the_grid():
    x, y = np.ones(64, np.float32), np.zeros(64, np.float32)
    with emulation(blocks=[(1, 0), -3]), pytest.raises(LaunchConfigError, match=r"block -3.*grid \(2, 1, 1\)"):
        kernel("checks", "copy_wide_index")(2, 32, (x, y, np.int64(64)))
    with emulation(blocks=[(-1, 0)]):
        kernel("checks", "copy_wide_index")(2, 32, (x, y, np.int64(64)))
    np.testing.assert_array_equal(y, np.r_[np.zeros(32), np.ones(32)])  # only block 1 wrote
    with pytest.raises(ValueError, match="blocks must be block indices"):
        with emulation(blocks=[1.5]):
            pass


def test_deferred_copy_notes_and_alignment_checks():
    x, y = np.arange(64, dtype=np.float32), np.empty(64, np.float32)
    k = kernel("checks", "deferred_copy")
    for order in ORDERS:
        with emulation(race_check=True, **order):
            k(1, 64, (x, y, np.int32(1)))
            np.testing.assert_array_equal(y, x[::-1])
            with pytest.raises(RaceError) as e:
                k(1, 64, (x, y, np.int32(0)))
        assert _locations(e) == {line_of("checks", "OK: cp.async lands"), line_of("checks", "BUG: without the barrier")}
    with emulation(sanitize=True), pytest.raises(MisalignedAccessError) as e:
        kernel("checks", "check_align_api")(1, 32, (x, y))
    assert e.value.location.endswith(line_of("checks", "BUG: x + 1")) and e.value.alignment == 16
