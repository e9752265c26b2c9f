"""The emulator's traffic counts (gpucnn.runtime.emulator.traffic) against hand-worked sectors
and bank conflicts, and on one of gpucnn's own kernels."""
import numpy as np
import pytest

from gpucnn.runtime.emulator import traffic

from emu_helpers import kernel, line_of, requires_emulator

pytestmark = requires_emulator


def _row(rows, marker, op, space):
    site = line_of("traffic", marker)
    hit = [r for r in rows if r.site.endswith(site) and r.op == op and r.space == space]
    assert len(hit) == 1, (site, rows)
    return hit[0]


@pytest.mark.parametrize("stride, sectors, lines", [(1, 4, 1), (2, 8, 2), (8, 32, 8), (64, 32, 32)])
def test_global_sectors_of_a_strided_read(stride, sectors, lines):
    """A warp's 32 floats `stride` apart: 128 contiguous bytes are 4 sectors of one line; stride 2
    spreads them over 8 sectors, 8 and more over 32 (one a lane: stride 8's 32 bytes put 4 lanes
    in a line, 8 lines; 64's one a line); the ideal is 4 either way. The write is contiguous: 4
    sectors of one line a request."""
    x = np.arange(64 * stride * 2, dtype=np.float32)
    y = np.zeros(64, np.float32)
    with traffic.profile() as rows:
        kernel("traffic", "strided_copy")((2,), (32,), (x, y, np.int32(stride)))
    np.testing.assert_array_equal(y, x[::stride][:64])
    read = _row(rows, "TRAFFIC-GLOBAL", "read", "global")
    assert (read.kernel, read.buffer, read.requests, read.lanes) == ("strided_copy", "x", 2, 64)
    assert (read.units, read.ideal, read.lines) == (2 * sectors, 2 * 4, 2 * lines)
    assert read.excess == sectors / 4
    write = _row(rows, "TRAFFIC-GLOBAL", "write", "global")
    assert (write.buffer, write.units, write.ideal, write.lines) == ("y", 8, 8, 2)


@pytest.mark.parametrize("stride, ways", [(1, 1), (2, 2), (32, 32), (33, 1), (16, 16)])
def test_shared_bank_conflicts(stride, ways):
    """Lane l stores word l * stride: banks (l * stride) % 32, so stride 2 puts two distinct words
    in each even bank (2 wavefronts), 32 puts all in bank 0 (32), 33 none twice (1), 16 puts 16 in
    each of banks 0 and 16. Every lane reading word 0 is one wavefront (a broadcast); a float4 a
    lane at 16 * lane bytes goes in 4 phases of 8 lanes, each 32 distinct banks: 4, the ideal (512
    bytes returned)."""
    y = np.zeros(32, np.float32)
    with traffic.profile() as rows:
        kernel("traffic", "bank_pattern")((1,), (32,), (y, np.int32(stride)))
    store = _row(rows, "TRAFFIC-STORE", "write", "shared")
    assert (store.buffer, store.requests, store.units, store.ideal) == ("s", 1, ways, 1)
    bcast = _row(rows, "TRAFFIC-BROADCAST", "read", "shared")
    assert (bcast.units, bcast.ideal, bcast.lanes) == (1, 1, 32)
    vec = _row(rows, "TRAFFIC-VEC", "read", "shared")
    assert (vec.units, vec.ideal, vec.bytes) == (4, 4, 512)
    assert _row(rows, "TRAFFIC-SUM", "write", "global").buffer == "y"


@pytest.mark.parametrize("mode, wavefronts, ideal", [(0, 4, 4), (1, 2, 2), (2, 4, 4), (3, 8, 4)])
def test_shared_vector_loads_and_the_pair_rule(mode, wavefronts, ideal):
    """A float4 a lane (512 bytes returned: 4 wavefronts at 128 bytes each, broadcast or not),
    halved where lane pairs read alike; 32-byte strides fold each phase onto 16 banks twice."""
    y = np.zeros(32, np.float32)
    with traffic.profile() as rows:
        kernel("traffic", "vec_pattern")((1,), (32,), (y, np.int32(mode)))
    off = [4 * t if mode == 0 else 4 * (t // 2) if mode == 1 else 4 * (t % 4) if mode == 2 else 8 * t
           for t in range(32)]
    np.testing.assert_array_equal(y, [4 * o + 6 for o in off])
    r = _row(rows, "TRAFFIC-PATTERN", "read", "shared")
    assert (r.requests, r.units, r.ideal) == (1, wavefronts, ideal)


def test_a_struct_wider_than_16_bytes_is_read_in_pieces():
    """Lane l reads the 24-byte struct l (8-byte aligned): three 8-byte pieces, as NVCC would load
    it, each its own request of 32 lanes in 2 phases of 16; together 768 bytes returned, 6 wavefronts
    at the least, and exactly that (lane l's words 6l + 2p, 6l + 2p + 1 never share a bank within a
    phase)."""
    y = np.zeros(32, np.int64)
    with traffic.profile() as rows:
        kernel("traffic", "wide_struct")((1,), (32,), (y,))
    np.testing.assert_array_equal(y, 6 * np.arange(32))
    site = line_of("traffic", "TRAFFIC-STRUCT")
    reads = [r for r in rows if r.site.endswith(site) and r.op == "read"]
    assert sum(r.bytes for r in reads) == 768 and sum(r.requests for r in reads) == 3, reads
    assert sum(r.units for r in reads) == sum(r.ideal for r in reads) == 6, reads


def test_nothing_is_counted_outside_a_profile():
    y = np.zeros(32, np.float32)
    with traffic.profile() as rows:
        pass
    kernel("traffic", "bank_pattern")((1,), (32,), (y, np.int32(1)))
    assert rows == []


def test_relu_and_batch_norm_apply_move_whole_sectors():
    """gpucnn's 16-byte maps on the emulator: ReLU's and batch norm's apply each read and write
    16-byte vectors a lane, 512 bytes a request in 16 sectors of 4 lines, the ideal; the apply's
    per-channel coefficients are one sector a request (a broadcast)."""
    import gpucnn
    from gpucnn import backend
    from gpucnn.runtime.emulator import emulation
    x = np.random.default_rng(0).standard_normal((2, 4, 16, 32)).astype(np.float32)  # 1024 vectors
    c = np.ones(4, np.float32)
    with gpucnn.use_backend("emulator"), emulation(poison=False), traffic.profile() as rows:
        y = gpucnn.relu(x)
        z = backend.call("norm", "batch_norm_apply", x, c * 0, c, c, c * 0)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_allclose(z, x, rtol=1e-6)
    moved = [r for r in rows if r.buffer in ("x", "y")]
    assert {(r.kernel, r.op) for r in moved} == {(k, op) for k in ("relu_forward_f32", "batchnorm_forward_f32")
                                                  for op in ("read", "write")}
    for r in moved:
        assert (r.requests, r.units, r.ideal, r.lines, r.bytes) == (32, 512, 512, 128, 16384), r
    coef = [r for r in rows if r.kernel == "batchnorm_forward_f32" and r.buffer not in ("x", "y")]
    assert coef and all(r.units == r.requests and r.op == "read" for r in coef), coef


def test_the_traffic_report_names_each_kernels_excess():
    """gpucnn.bench.traffic on two of its cases, a block each: the totals row of each kernel, and
    the per-site tables; the 2x2/2 pair kernel's loads and stores are ideal."""
    from gpucnn.bench import traffic as report
    cases = [c for c in report.CASES if c[0].startswith(("max_pool 2x2/2", "relu"))]
    results = report.run([(label, fn, (0,)) for label, fn, _ in cases])
    text = report.report(results)
    assert "| max_pool 2x2/2 (16x64x224x224) | max_pool2d_forward_s2_f32 | global | 1 / 12544 |" in text
    assert "| relu forward (2x64x112x112) | relu_forward_f32 | global | 1 / 1568 |" in text
    for rows in results.values():
        tot = report.totals(rows)
        assert tot and all(units == ideal for _, units, ideal, _, _ in tot.values()), tot
    # the floor: ReLU's block moves 256 vectors in and out, 2 x 256 x 16 bytes, 256 sectors: 64 clocks
    relu = next(rows for label, rows in results.items() if label.startswith("relu"))
    block, launch = report.l1_clocks(relu)["relu_forward_f32"]
    assert block == 64 and launch == pytest.approx(64 * 1568 / 132 / 1980)
    assert "## The L1 floor" in text


def test_static_traffic_md_is_current():
    """bench/results/static-traffic.md is what gpucnn.bench.traffic makes of the kernels as they are
    (regenerate it with python -m gpucnn.bench.traffic --write after a kernel change); and the
    partial launches it makes leave no counters behind for the tests after it."""
    from gpucnn.bench import traffic as report
    from gpucnn.cuda import norm
    assert report.OUT.read_text() == report.report(report.run()), "python -m gpucnn.bench.traffic --write"
    # the statistics ran on 2 of their blocks: their counters, kept for the next launch, are dropped
    assert not any(k[0] == "emulator" for k in norm._scratch)


def test_counts_alongside_the_race_checks():
    """traffic and race_check in one launch: the same counts, and the race checks still see a
    planted race (shared.cu's transpose without its barrier) with the const input passed as a
    region for the counts."""
    from gpucnn.runtime.emulator import RaceError, emulation
    y = np.zeros(32, np.float32)
    with traffic.profile() as alone:
        kernel("traffic", "bank_pattern")((1,), (32,), (y, np.int32(2)))
    with emulation(race_check=True), traffic.profile() as both:
        kernel("traffic", "bank_pattern")((1,), (32,), (y, np.int32(2)))
    assert both == alone
    a = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    with emulation(race_check=True), traffic.profile(), pytest.raises(RaceError):
        kernel("shared", "transpose_nosync")((2, 2), (32, 8), (a, np.zeros_like(a), np.int32(64), np.int32(64)))
