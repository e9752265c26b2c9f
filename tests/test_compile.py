"""Compile checks without a GPU: every kernel family through NVRTC and ptxas
for every architecture, sm_90 resource limits, kernel names, and the ptxas
report parser and occupancy calculator on fixed inputs."""
from __future__ import annotations

import json
import types

import pytest

from gpucnn.runtime import compile_check as cc
from gpucnn.runtime import loader
from gpucnn.runtime.ptxas_report import SMS, Kernel, diagnostics, occupancy, parse_ptxas, ptx_entries


@pytest.fixture(scope="session")
def nvrtc():
    try:
        run = cc.backend()
    except cc.NvrtcUnavailable as e:
        pytest.skip(f"NVRTC cannot be loaded: {e}")
    cc.check()  # compiles every family for every arch at once, in threads; later calls hit the cache
    return run


FAMILIES = loader.families()
NO_FAMILIES = pytest.mark.skipif(not FAMILIES, reason="kernels/ has no .cu family yet")


# ------------------------------------------------------------ the real kernels

def test_there_are_families_to_check():
    if not FAMILIES:
        pytest.skip("kernels/ has no .cu family yet: the compile checks below have nothing to check")
    assert all((loader.kernel_dir() / f"{f}.cu").is_file() for f in FAMILIES)


@NO_FAMILIES
@pytest.mark.parametrize("arch", cc.ARCHS)
@pytest.mark.parametrize("family", FAMILIES or ["-"])
def test_family_compiles_without_warnings(nvrtc, family, arch):
    r = cc.compile_family(family, arch)
    assert r.compiled, "\n".join(r.errors)
    assert r.errors == [] and r.warnings == [], r.log
    # not vacuous: ptxas reported every PTX entry, and there is at least one
    assert r.kernels and set(r.kernels) == set(r.entries)


@NO_FAMILIES
@pytest.mark.parametrize("family", FAMILIES or ["-"])
def test_family_fits_sm90(nvrtc, family):
    r = cc.compile_family(family, "sm_90")
    for k in r.kernels.values():
        assert k.spill_stores == 0 and k.spill_loads == 0, k
        assert k.stack == 0 or {k.name, k.name[:-4]} & cc.ALLOWED_STACK.keys(), k
        assert k.registers * k.block <= 65536, k
        smem = k.smem + cc.dynamic_smem(k.name)
        assert occupancy(k.registers, k.block, smem).blocks_per_sm >= cc.min_blocks(family, k.name), k
    assert cc.problems(family, r) == []


@pytest.mark.parametrize("family,kernel", [("conv2d_phase", "conv2d_backward_data_phase_f32"),
                                           ("conv2d_phase", "conv2d_backward_data_phase_3xtf32_64g"),
                                           ("linear", "linear_forward_f64"), ("linear", "linear_forward_tf32_128")])
def test_a_part_compiles_to_its_kernels(nvrtc, family, kernel):
    """A part of a family (loader.PARTED) as the loader builds it on sm_90 compiles without
    warnings to the kernels of that part and no others (tests/test_loader.py checks every
    part's contents through the emulator's preprocessor)."""
    r = cc.compile_source(loader.source(family), f"{family}.cu", "sm_90", cc.target(family, "sm_90"),
                          loader.part_options(family, kernel))
    assert r.compiled and r.errors == [] and r.warnings == [], r.log
    whole = cc.compile_family(family, "sm_90").entries
    part = loader.part(family, kernel)
    assert kernel in r.entries and sorted(r.entries) == sorted(k for k in whole if loader.part(family, k) == part)


def test_kernel_names(nvrtc):
    assert cc.check_kernel_names() == []


def test_cli_json(nvrtc, capsys):
    rc = cc.main(["--arch", "sm_90", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == (1 if out["problems"] else 0)
    assert len(out["kernels"]) == sum(len(cc.compile_family(f, "sm_90").kernels) for f in FAMILIES)


# ----------------------------------------------- the checks on test-only sources

BROKEN = 'extern "C" __global__ void k(float* x) { x[0] = ; }\n'
UNUSED = 'extern "C" __global__ void k(float* x) { int unused; x[0] = 1.f; }\n'
# 200 live floats per thread under a 32-register cap (1024 threads x 2 blocks) must spill
SPILL = r'''
extern "C" __global__ void __launch_bounds__(1024, 2) spill(float* x, int n) {
    float acc[200];
#pragma unroll
    for (int j = 0; j < 200; j++) acc[j] = x[j * n + threadIdx.x];
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < 200; j++) s += acc[j] * acc[(j * 7) % 200];
    x[threadIdx.x] = s;
}
'''


def test_broken_source_fails_with_nvrtc_message(nvrtc):
    r = cc.compile_source(BROKEN, "broken.cu", "sm_90")
    assert not r.compiled and not r.ok
    assert any("broken.cu(1): error: expected an expression" in e for e in r.errors)
    assert any("expected an expression" in p for p in cc.problems("broken", r))


def test_nvrtc_warning_fails_the_check(nvrtc):
    r = cc.compile_source(UNUSED, "unused.cu", "sm_90")
    assert r.compiled and not r.ok
    assert len(r.warnings) == 1 and "declared but never referenced" in r.warnings[0]


def test_spills_and_stack_are_reported(nvrtc, monkeypatch):
    r = cc.compile_source(SPILL, "spill.cu", "sm_90")
    k = r.kernels["spill"]
    assert r.compiled and k.block == 1024 and k.registers <= 32 and k.spill_stores > 0 and k.stack > 0
    assert any(w.startswith("ptxas warning") and "spilled" in w for w in r.warnings)
    found = cc.problems("spill", r)
    assert any("spills" in p for p in found) and any("B stack frame" in p for p in found)
    monkeypatch.setitem(cc.ALLOWED_STACK, "spill", "test")
    found = cc.problems("spill", r)
    assert not any("B stack frame" in p or "Local memory used" in p for p in found)
    assert any("spills" in p for p in found) and any("Registers are spilled" in p for p in found)


def test_too_few_blocks_per_sm_is_reported(monkeypatch):
    r = cc.Result("fake.cu", "sm_90", True, "", kernels={"k_f32": Kernel("k_f32", registers=128, block=256)})
    assert cc.problems("fake", r) == []  # 2 blocks/SM
    monkeypatch.setitem(cc.MIN_BLOCKS_PER_SM, "fake", 3)
    (p,) = cc.problems("fake", r)
    assert "2 blocks/SM < 3" in p and "128 registers x 256 threads" in p


def test_missing_kernel_names_are_reported(nvrtc, monkeypatch):
    if not FAMILIES:
        pytest.skip("kernels/ has no .cu family yet")
    fake = types.SimpleNamespace(__name__="gpucnn.cuda.fake", FAMILY=FAMILIES[0], KERNELS=("no_such_kernel",))
    nowhere = types.SimpleNamespace(__name__="gpucnn.cuda.nowhere", FAMILY="nowhere", KERNELS=())
    monkeypatch.setattr(cc, "kernel_modules", lambda: [fake, nowhere])
    found = cc.check_kernel_names()
    assert "no_such_kernel_f32, no_such_kernel_f64" in found[0]
    assert "kernels/nowhere.cu" in found[1]


def test_ctypes_backend_matches(nvrtc):
    try:
        run = cc.ctypes_backend()
    except cc.NvrtcUnavailable as e:
        pytest.skip(str(e))
    ok, log, ptx = run(UNUSED, "unused.cu", cc.options_for("sm_80"))
    assert ok and "declared but never referenced" in log and ".entry k(" in ptx
    ok, log, _ = run(BROKEN, "broken.cu", cc.options_for("sm_80"))
    assert not ok and "expected an expression" in log


# ----------------------------------------------- parser and calculator, no NVRTC

LOG_SM75 = """\
t.cu(3): warning #177-D: variable "unused" was declared but never referenced
    int unused;
        ^

Remark: The warnings can be suppressed with "-diag-suppress <warning-number>"

ptxas warning : Local memory used for function 'spill', size of stack frame: 1136 bytes
ptxas warning : Registers are spilled to local memory in function 'spill', 1056 bytes spill stores, 1276 bytes spill loads
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k' for 'sm_75'
ptxas info    : Function properties for k
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 1 barriers, 16384 bytes smem, 360 bytes cmem[0], 8 bytes cmem[2]
ptxas info    : Compile time = 2.742 ms
ptxas info    : Compiling entry function 'spill' for 'sm_75'
ptxas info    : Function properties for spill
ptxas         .     1136 bytes stack frame, 1056 bytes spill stores, 1276 bytes spill loads
ptxas info    : Used 64 registers, used 0 barriers, 1136 bytes cumulative stack size, 364 bytes cmem[0]
ptxas info    : Compile time = 154.715 ms
ptxas info    : Function properties for _Z6helperPfi
ptxas         .     48 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
\x00"""

LOG_SM90 = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'relu_forward_f32' for 'sm_90'
ptxas info    : Function properties for relu_forward_f32
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers
ptxas info    : Compile time = 20.628 ms
"""

PTX = """\
.visible .entry relu_forward_f32(
	.param .u64 relu_forward_f32_param_0,
	.param .u64 relu_forward_f32_param_1
)
{
	ret;
}
.visible .entry relu_backward_f64(
	.param .u64 relu_backward_f64_param_0
)
.maxntid 128, 1, 1
.minnctapersm 2
{
	ret;
}
.visible .entry tile(
	.param .u64 tile_param_0
)
.reqntid 16, 16, 1
{
	ret;
}
"""


def test_parse_ptxas_sm75():
    ks = parse_ptxas(LOG_SM75)
    assert set(ks) == {"k", "spill"}  # the device function _Z6helperPfi is not an entry
    assert ks["k"] == Kernel("k", registers=10, smem=16384, barriers=1, cmem=368)
    assert ks["spill"] == Kernel("spill", registers=64, stack=1136, spill_stores=1056,
                                 spill_loads=1276, cmem=364)


def test_parse_ptxas_sm90_has_no_cmem():
    assert parse_ptxas(LOG_SM90) == {"relu_forward_f32": Kernel("relu_forward_f32", registers=32)}


def test_diagnostics():
    errors, warnings = diagnostics(LOG_SM75)
    assert errors == []
    assert [w.split(":")[0] for w in warnings] == ["t.cu(3)", "ptxas warning ", "ptxas warning "]
    assert diagnostics(LOG_SM90) == ([], [])
    errors, _ = diagnostics('relu.cu(12): error: identifier "y" is undefined\nptxas fatal   : Unresolved extern function\n')
    assert len(errors) == 2


def test_ptx_entries_and_launch_bounds():
    assert ptx_entries(PTX) == {"relu_forward_f32": None, "relu_backward_f64": 128, "tile": 256}


@pytest.mark.parametrize("regs, block, smem, blocks, pct, limiter", [
    (32, 256, 0, 8, 100.0, "warps"),          # 8 warps/block, 64 warps/SM
    (128, 256, 0, 2, 25.0, "registers"),      # 4096 regs/warp: 4 warps per 16K sub-partition
    (255, 256, 0, 1, 12.5, "registers"),      # 8160 -> 8192 regs/warp: 2 warps per sub-partition
    (64, 1024, 0, 1, 50.0, "registers"),      # exactly the 64K register file
    (255, 1024, 0, 0, 0.0, "registers"),      # 8192 x 32 warps > 64K: does not launch
    (40, 64, 0, 24, 75.0, "registers"),       # 1280 regs/warp: 12 per sub-partition, not 51 per SM
    (16, 32, 0, 32, 50.0, "blocks"),          # the 32 blocks/SM cap
    (32, 256, 48 * 1024, 4, 50.0, "shared"),  # (48K + 1K reserved) into 228K
    (32, 128, 100 * 1024, 2, 12.5, "shared"),  # 101K per block: 2 fit
    (32, 256, 228 * 1024, 0, 0.0, "shared"),  # over the 227K per-block limit
])
def test_occupancy_sm90(regs, block, smem, blocks, pct, limiter):
    occ = occupancy(regs, block, smem, SMS["sm_90"])
    assert (occ.blocks_per_sm, round(100 * occ.occupancy, 1), occ.limiter) == (blocks, pct, limiter)


def test_occupancy_other_archs():
    assert occupancy(32, 256, 0, SMS["sm_75"]).blocks_per_sm == 4  # 1024 threads/SM
    assert occupancy(32, 256, 0, SMS["sm_86"]).blocks_per_sm == 6  # 1536 threads/SM
    assert occupancy(16, 64, 0, SMS["sm_86"]).blocks_per_sm == 16  # 16 blocks/SM
    assert occupancy(32, 256, 40 * 1024, SMS["sm_75"]).blocks_per_sm == 1  # 64K, nothing reserved
