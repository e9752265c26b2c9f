"""The GEMM kernels' hot loop in sm_90 machine code (gpucnn.runtime.sass_report):
the record in bench/results/static-sm90.md is current, and in every tile
kernel's inner loop FFMA/DFMA is the largest class and every shared load is
128-bit. The parser is tested on a fixed excerpt, so that part runs anywhere;
the rest skips without NVRTC or cuobjdump.
"""
from __future__ import annotations

import pytest

from gpucnn.cuda import tc
from gpucnn.runtime import sass_report

EXCERPT = """
\t\tFunction : k_f32
        /*0000*/                   MOV R1, c[0x0][0x28] ;       /* 0x0 */
        /*0010*/              @!P0 BRA 0x90 ;                    /* 0x0 */
        /*0020*/                   LDS.128 R4, [R2] ;            /* 0x0 */
        /*0030*/                   FFMA R8, R4, R5, R8 ;         /* 0x0 */
        /*0040*/                   IMAD.MOV.U32 R3, RZ, RZ, R2 ; /* 0x0 */
        /*0050*/               @P1 BRA 0x20 ;                    /* 0x0 */
        /*0060*/                   LDS R9, [R2] ;                /* 0x0 */
        /*0070*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ; /* 0x0 */
        /*0080*/               @P2 BRA 0x10 ;                    /* 0x0 */
        /*0090*/                   EXIT ;                        /* 0x0 */
        /*00a0*/                   BRA 0xa0;                     /* 0x0 */
"""


def test_parser_finds_the_innermost_loop():
    code = sass_report.parse_sass(EXCERPT)["k_f32"]
    assert len(code) == 11 and code[1].op == "BRA" and code[1].target == 0x90
    assert sorted(sass_report.loops(code)) == [(1, 8), (2, 5)]  # the self-branch at 0xa0 is no loop
    body = sass_report.hot_loop(code)
    assert [i.addr for i in body] == [0x20, 0x30, 0x40, 0x50]
    c = sass_report.counts(body)
    assert (c["FMA"], c["LDS.128"], c["integer"], c["other"]) == (1, 1, 1, 1)


# A k-step loop (0x10-0xe0) as tc_tile's: the fetch's guard (s < steps), the copy's if/else (gathered
# 0x40-0x60 with the then-side's jump, 16-byte runs 0x70-0x80), the MMA, the k-table builder's branch
# (0xc0-0xd0: an entry's arithmetic and its store)
TC_EXCERPT = """
\t\tFunction : k_tf32_64
        /*0000*/                   MOV R1, c[0x0][0x28] ;                       /* 0x0 */
        /*0010*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;                 /* 0x0 */
        /*0020*/              @!P2 BRA 0xa0 ;                                    /* 0x0 */
        /*0030*/               @P1 BRA 0x70 ;                                    /* 0x0 */
        /*0040*/                   LDS.64 R2, [R3] ;                             /* 0x0 */
        /*0050*/                   LDGSTS.E [R4], desc[UR4][R6.64] ;             /* 0x0 */
        /*0060*/                   BRA 0x90 ;                                    /* 0x0 */
        /*0070*/                   LEA R5, P0, R2, R5, 0x2 ;                     /* 0x0 */
        /*0080*/                   LDGSTS.E.BYPASS.128 [R4], desc[UR4][R6.64] ;  /* 0x0 */
        /*0090*/                   LDGDEPBAR ;                                   /* 0x0 */
        /*00a0*/                   HMMA.1688.F32.TF32 R8, R12, R14, R8 ;         /* 0x0 */
        /*00b0*/               @P3 BRA 0xe0 ;                                    /* 0x0 */
        /*00c0*/                   IMAD.HI.U32 R9, R9, R10, RZ ;                 /* 0x0 */
        /*00d0*/                   STS.128 [R10], R12 ;                          /* 0x0 */
        /*00e0*/              @!P4 BRA 0x10 ;                                    /* 0x0 */
        /*00f0*/                   EXIT ;                                        /* 0x0 */
"""


def test_k_step_regions_from_the_branches():
    from gpucnn.runtime import sass_tc
    code = sass_report.parse_sass(TC_EXCERPT)["k_tf32_64"]
    assert [i.guarded for i in code[1:4]] == [False, True, True] and not code[6].guarded
    body = sass_tc.k_step_loop(code)
    assert (body[0].addr, body[-1].addr) == (0x10, 0xe0)
    labels = dict(zip((i.addr for i in body), sass_tc.regions(body)))
    assert [a for a, r in labels.items() if r == "gather"] == [0x40, 0x50, 0x60]
    assert [a for a, r in labels.items() if r == "runs"] == [0x70, 0x80]
    assert [a for a, r in labels.items() if r == "builder"] == [0xc0, 0xd0]
    assert [a for a, r in labels.items() if r == "common"] == [0x10, 0x20, 0x30, 0x90, 0xa0, 0xb0, 0xe0]
    # 4 warps: 7 common + 2 / 4 of the builder + the gathered side's 3; the parts make the whole loop's 14
    row = sass_tc.k_step(body, 4)
    assert row == {"instructions": 10.5, "listed": 14, "common": 7, "builder": 2, "runs": 2, "gather": 3,
                   "nested": 0}


@pytest.mark.parametrize("op,cls", [("FFMA", "FMA"), ("DFMA.RM", "FMA"), ("LDS.U.128", "LDS.128"),
                                    ("LDS.64", "LDS.64"), ("LDS", "LDS.32"), ("LDG.E.128.CONSTANT", "LDG"),
                                    ("IADD3.X", "integer"), ("UIMAD.WIDE", "integer"), ("VIADD", "integer"),
                                    ("MUFU.RCP", "other"), ("STS.128", "STS"), ("BAR.SYNC", "BAR")])
def test_classes(op, cls):
    assert sass_report.classify(op) == cls


@pytest.fixture(scope="module")
def sass_rows():
    from gpucnn.runtime.compile_check import NvrtcUnavailable
    try:
        sass_report.cuobjdump()
        return sass_report.sass_rows()
    except (sass_report.ToolMissing, NvrtcUnavailable) as e:
        pytest.skip(str(e))


def test_record_is_current(sass_rows):
    recorded = sass_report.RECORD.read_text()
    here = sass_report.versions()["NVRTC"]
    if sass_report.recorded_nvrtc(recorded) != here.split()[0]:
        pytest.skip(f"recorded with NVRTC {sass_report.recorded_nvrtc(recorded)}, here {here}")
    fresh = sass_report.report(sass=sass_rows)
    assert sass_report.without_date(fresh) == sass_report.without_date(recorded), (
        "bench/results/static-sm90.md is out of date: python -m gpucnn.runtime.sass_report --write")


def test_hot_loop_is_fma_with_128_bit_shared_loads(sass_rows):
    assert len(sass_rows) >= 12  # conv2d's three passes and linear's, f32 and f64
    for row in sass_rows:
        others = {c: row[c] for c in sass_report.CLASSES if c != "FMA"}
        assert row["FMA"] > max(others.values()), row
        # conv2d's backward data reads a 24-byte k-table entry (DataOp::KTab, 8-aligned: a 16-aligned 32
        # bytes would not fit the 64 x 64 tensor-core tile's TcTile::SMEM) with 64- and 32-bit loads; the
        # stride phases' A reads its offset alone from the entry (PhaseOp::KTab's w), one 32-bit load
        # conv2d_wino.cu's step reads each thread's copied input patch back, 16 32-bit loads
        narrow = row["kernel"].startswith(("conv2d_backward_data_", "conv2d_wino_"))
        assert row["LDS.128"] > 0 and (narrow or row["LDS.64"] == row["LDS.32"] == 0), row


def test_tile_kernels_keep_two_blocks_per_sm(sass_rows):
    for row in sass_report.ptxas_rows():
        assert row["blocks_per_sm"] >= 2 and row["spill_stores"] == row["spill_loads"] == 0, row


@pytest.fixture(scope="module")
def tc_rows(sass_rows):
    from gpucnn.runtime import sass_tc
    return sass_tc.tc_rows(), sass_tc.tc_ptxas_rows()


def test_tc_k_step_loop_is_mma_fed_by_cp_async_and_ldmatrix(tc_rows):
    """Per warp and k-step of 32: (64 x 32 warp tile: 4 x 4 MMAs, the 64 and
    32-row tiles' 32 x 32: 2 x 4) x 4 k-slices, x3 in 3xTF32; ldmatrix.x4 per
    k-slice: one per m16 tile and one per pair of n8 tiles; cp.async in the
    loop, one barrier."""
    rows, ptxas = tc_rows
    folds = [r for r in rows if r["kernel"].startswith("conv2d_fold_")]
    halos = [r for r in rows if r["kernel"].startswith("conv2d_halo_")]
    rows = [r for r in rows if r not in folds and r not in halos]
    # conv2d_halo.cu's step: 9 taps of the warp's 4 x 4 MMAs (x3 in 3xTF32) from plain shared loads
    # (no ldmatrix: the taps' B fragments are shifted views), the step's copies, one barrier
    # Its warpgroup variant (sm_90a): 9 taps of two wgmma m64n64k8 (x3 in 3xTF32), A from registers
    assert sorted(r["kernel"] for r in halos) == ["conv2d_halo_forward_3xtf32_f32", "conv2d_halo_forward_tf32_f32",
                                                  "conv2d_halo_forward_wg_3xtf32_f32", "conv2d_halo_forward_wg_tf32_f32"]
    for row in halos:
        per_mma = 3 if "_3xtf32_" in row["kernel"] else 1
        if "_wg_" in row["kernel"]:
            assert row["HGMMA"] == 9 * 2 * per_mma and row["LDSM"] == row["HMMA"] == 0, row
        else:
            assert row["HMMA"] == 9 * 16 * per_mma and row["LDSM"] == row["HGMMA"] == 0, row
        assert row["LDGSTS"] > 0 and row["BAR"] == 1, row
    # (2 families x 3 passes + the stride phases' backward-data) x 2 modes x 2 tiles, + the 32-row
    # and wide tiles of conv2d's 3 passes and the phases' backward-data (tc.NARROW), + their two
    # warpgroup tiles, in both modes too
    assert len(rows) == 28 + len(tc.NARROW) * 2 * 2 + len(tc.NARROW) * len(tc.WG_TILES) * 2
    # conv2d_fold.cu's step loop holds one unrolled k-step per count of tap tiles (2 NP and
    # 2 NP - 1 for NP = 1 to NT / 2, fold_mma's switch): per k-slice an ldmatrix of dy and NP of w,
    # 2 NP HMMA (one fewer for the odd count); the fetch's 16 copies on each of its two paths; one barrier
    # Its wgmma kernels (sm_90a): per chunk of 8 tap tiles a switch over the chunk's tile count, each
    # case 4 k-slices of one wgmma (32 HGMMA a chunk; ptxas adds one HGMMA.64x8x16.F16 of its own at
    # the loop's end), no ldmatrix; the same fetch; two barriers (dy's stage rounded in between).
    from gpucnn.cuda import fold
    nt = lambda r: int(r["kernel"].split("_n")[1].split("_")[0])  # noqa: E731
    for kind in fold.MMAS:
        assert sorted(nt(r) for r in folds if f"_{kind}_" in r["kernel"]) == sorted(fold.TAP_TILES)
    for row in folds:
        if "_wgmma_" in row["kernel"]:
            assert 32 * nt(row) // 8 <= row["HGMMA"] <= 32 * nt(row) // 8 + 1 and row["HMMA"] == row["LDSM"] == 0, row
            assert row["LDGSTS"] == 32 and row["BAR"] == 2, row
            continue
        pairs = range(1, nt(row) // 2 + 1)
        assert row["HMMA"] == sum(16 * p - 4 for p in pairs) and row["LDSM"] == sum(8 * (1 + p) for p in pairs), row
        assert row["LDGSTS"] == 32 and row["BAR"] == 1 and row["HGMMA"] == 0, row
    # The warpgroup tiles (sm_90a): per warp 4 k-slices x 1 wgmma m64n128k8 (all of BN = 128 in one
    # instruction, tc_wg_issue), x3 in 3xTF32, no ldmatrix or HMMA; two barriers (the stage's
    # rounding, tc_round_stage, between them).
    for row in rows:
        suffix = row["kernel"].rsplit("_", 1)[1]
        per_mma = 3 if "_3xtf32_" in row["kernel"] else 1
        if suffix in tc.WG_TILES:
            assert row["HGMMA"] == 4 * tc.TC_TILES[suffix][1] // 128 * per_mma and row["HMMA"] == row["LDSM"] == 0, row
            assert row["LDGSTS"] > 0 and row["BAR"] == 2, row
            continue
        bm, bn, wm, wn = tc.TC_TILES[int(suffix) if suffix.isdigit() else suffix]
        mi, ni = bm // wm // 16, bn // wn // 8
        assert row["HMMA"] == mi * ni * 4 * per_mma, row
        assert row["LDSM"] == (mi + ni // 2) * 4 and row["LDGSTS"] > 0 and row["BAR"] == 1, row
        assert row["HGMMA"] == 0, row
    for row in ptxas:
        assert row["blocks_per_sm"] >= 1 and row["spill_stores"] == row["spill_loads"] == row["stack"] == 0, row


def test_tc_k_step_split_sums_to_the_loop_and_charges_the_builder_a_warp_share(tc_rows):
    """Every tensor-core kernel's k-step (sass_tc.regions): the regions add up to the loop's length
    (the count before the split); a warp's average charges the k-table builder 1 / WARPS and the
    gathered copy. The conv2d passes each build a k-table and choose the copy of A (16-byte runs or
    gathers; the stride phases' A has no runs); the fold kernels have neither."""
    rows, _ = tc_rows
    for row in rows:
        parts = row["common"] + row["builder"] + row["runs"] + row["gather"]
        assert parts == row["listed"], row
        if row["kernel"].startswith("conv2d_fold_"):
            assert row["instructions"] == row["listed"] == row["common"], row
            continue
        assert row["nested"] == 0, row  # the k-tables' loops (conv_miss) are gone: none counts once
        if row["kernel"].startswith("conv2d_halo_"):  # no k-table; the copies' 16-byte or 4-byte side
            assert row["builder"] == 0 and row["runs"] > 0 and row["gather"] > 0, row
            assert row["instructions"] == row["common"] + row["gather"], row
            continue
        suffix = row["kernel"].rsplit("_", 1)[1]
        warps = tc.block_threads(int(suffix) if suffix.isdigit() else suffix) // 32
        assert row["instructions"] == pytest.approx(row["common"] + row["builder"] / warps + row["gather"], abs=0.005)
        if row["kernel"].startswith("conv2d_"):
            phase = "_phase_" in row["kernel"]
            assert row["builder"] > 0 and (row["runs"] == 0) == (row["gather"] == 0) == phase, row


def test_memory_bound_loops_divide_nothing_per_element():
    """The recorded main loops (sass_stream's table, kept current above) of the
    direct and memory-bound kernels call no division subroutine, and ReLU's
    moves 16-byte vectors, as do pooling's stride-2 pair kernels (their hot loop: a 3x3
    window's block of two output rows, whose five input rows take a 16-byte load each). avg_pool2d_backward,
    adaptive pooling and the average pair kernel (whose loop is a whole pair: no
    inner loop) divide by each window's size, a float division as torch's (its
    CALL: the slow path of special operands), not index arithmetic."""
    text = sass_report.RECORD.read_text()
    section = text[text.index("## Direct and memory-bound kernels"):]
    head, *rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln]
    cols = [c.strip() for c in head.strip("|").split("|")]
    table = {r[0]: dict(zip(cols, r)) for r in ([c.strip() for c in ln.strip("|").split("|")] for ln in rows)}
    assert {"depthwise_forward_f32", "batchnorm_stats_f32", "max_pool2d_forward_f32",
            "conv2d_bias_grad_f32", "relu_forward_f32"} <= table.keys()
    for name, row in table.items():
        if not name.startswith(("avg_pool2d_backward", "adaptive_avg_pool2d", "avg_pool2d_forward_s2")):
            assert row["CALL"] == "0", row
    for name in ("relu_forward_f32", "relu_backward_f32", "relu_forward_f64", "relu_backward_f64"):
        assert int(table[name]["LDG.128"]) > 0 and int(table[name]["STG.128"]) > 0
    for name in ("max_pool2d_forward_s2_f32", "avg_pool2d_forward_s2_f32"):
        assert int(table[name]["LDG.128"]) == 5, table[name]  # a row a load: 3x3's two output rows' five
    # the channel kernels' recorded loop is the path of an aligned launch: the cp.async ring's whole
    # turns (CH_RING groups, a 16-byte copy each) in the async reductions, not the 4-byte copies of an
    # unaligned one; 16-byte loads in the others, not the scalar fallback
    for name in ("batchnorm_stats_async_f32", "conv2d_bias_grad_async_f32"):
        assert (int(table[name]["LDGSTS"]), int(table[name]["LDG"])) == (8, 0), table[name]
    for name in ("batchnorm_stats_f32", "batchnorm_forward_f32", "batchnorm_backward_sums_f32",
                 "batchnorm_backward_data_f32", "conv2d_bias_grad_f32"):
        assert int(table[name]["LDG.128"]) > 0 and table[name]["LDGSTS"] == "0", table[name]


def test_stream_loop_takes_the_aligned_path():
    """sass_stream.stream_loop ranks a kernel's innermost loops by 16-byte cp.async copies, then
    copies, then 16-byte loads, then global loads: a ring's loop of 16-byte copies over its 4-byte
    copies and over the vector path, the vector path over the scalar."""
    from gpucnn.runtime import sass_stream
    from gpucnn.runtime.sass_report import Instr

    def loop(at, ops):  # ops, then a branch back to the first
        body = [Instr(at + 16 * i, op) for i, op in enumerate(ops)]
        return body + [Instr(at + 16 * len(ops), "BRA", target=at, guarded=True)]

    scalar = loop(0x000, ["LDG.E"] * 16 + ["DADD"] * 8)
    vector = loop(0x400, ["LDG.E.128"] * 4 + ["DADD"] * 8)
    ring = loop(0x800, ["LDGSTS.E.BYPASS.128", "LDGDEPBAR"] * 4 + ["LDS.128"] * 4)
    assert sass_stream.stream_loop(scalar + vector) == vector
    assert sass_stream.stream_loop(scalar + vector + ring) == ring
    narrow = loop(0xc00, ["LDGSTS.E", "LDGDEPBAR"] * 16 + ["LDS.128"] * 4)  # 4-byte copies
    assert sass_stream.stream_loop(scalar + narrow + ring) == ring
    assert sass_stream.stream_loop(scalar + vector + narrow) == narrow
    assert sass_stream.stream_loop(scalar) == scalar
    counts = sass_stream.loop_counts(ring)
    assert (counts["LDGSTS"], counts["LDG.128"], counts["LDG"]) == (4, 0, 0)


def test_tc_blocks_table_is_the_records():
    """gpucnn.cuda.tc's blocks per SM (the split search's slots) are the
    recorded ptxas occupancy of each conv2d tensor-core kernel on sm_90."""
    from gpucnn.bench import model_static
    rows = model_static.kernels(model_static.RECORD.read_text())
    for (pass_, mode, edge), blocks in tc._BLOCKS_SM90.items():
        assert rows[f"conv2d_{pass_}_{mode}_{edge}"]["blocks_per_sm"] == blocks, (pass_, mode, edge)
        assert tc.blocks_per_sm(pass_, mode, edge, 90) == blocks
    assert tc.blocks_per_sm("forward", "3xtf32", 64, 86) == 1  # 53760 + 1024 bytes of sm_86's 100 KiB
    assert tc.blocks_per_sm("backward_data", "3xtf32", 64, 80) == 3  # 164 KiB: 3 blocks, not 4
