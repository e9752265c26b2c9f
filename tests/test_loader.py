"""The loader: header inlining, #line directives, and kernels shipped in the wheel."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import gpucnn.runtime
from gpucnn.runtime import loader

ROOT = Path(__file__).resolve().parent.parent


def test_families_are_the_cu_files():
    assert loader.families() == sorted(p.stem for p in (ROOT / "kernels").glob("*.cu"))
    assert {"relu", "pool2d"} <= set(loader.families())


def test_headers_are_inlined_with_line_directives():
    text = loader.source("relu")
    assert '#include "common.cuh"' not in text
    assert "GRID_STRIDE_LOOP" in text and '#line 1 "common.cuh"' in text
    # after the header, line numbers point back into relu.cu
    lines = (ROOT / "kernels" / "relu.cu").read_text().splitlines()
    inc = next(i for i, l in enumerate(lines, 1) if l.startswith('#include "common.cuh"'))
    assert f'#line {inc + 1} "relu.cu"' in text


def test_unknown_family_names_the_families():
    with pytest.raises(FileNotFoundError, match="relu"):
        loader.source("no_such_family")


@pytest.mark.parametrize("family", loader.PARTED)
def test_parts_hold_their_kernels(family):
    """Each part of a family that the loader compiles a part at a time on a GPU (the kernels
    without tensor cores, a tile's) defines exactly the kernels loader.part assigns to it: the
    parts cover the family and do not overlap. Read through the emulator's preprocessor."""
    from gpucnn.runtime.emulator import build
    if not build.available()[0]:
        pytest.skip("no emulator here")
    src = loader.source(family)
    whole = build.kernel_names(src)
    parts = {loader.part(family, k) for k in whole}
    assert {"base", "tf32_128", "3xtf32_64"} <= parts
    assert {"tf32_128g", "3xtf32_64g", "tf32_32", "3xtf32_64w"} <= parts or family == "linear"
    held = []
    for name in sorted(parts):
        kernels = build.kernel_names(src, loader.part_options(family, f"x_{name}" if name != "base" else "x_f32"))
        assert kernels and kernels == [k for k in whole if loader.part(family, k) == name], name
        held += kernels
    assert sorted(held) == sorted(whole)


def test_part_names():
    assert loader.tile_of("conv2d_forward_3xtf32_64g") == ("3xtf32", "64g")
    assert loader.tile_of("linear_forward_tf32_128") == ("tf32", 128)
    assert loader.tile_of("conv2d_fold_backward_data_tf32_n8_f32") is None and loader.tile_of("relu_f32") is None
    assert loader.part("conv2d", "conv2d_forward_tf32_128g") == "tf32_128g"
    assert loader.part("conv2d", "conv2d_backward_filter_3xtf32_64w") == "3xtf32_64w"
    assert loader.part("conv2d", "conv2d_backward_filter_t_m32_f32") == "base"
    assert loader.part("conv2d_phase", "conv2d_backward_data_phase_f64") == "base"
    assert loader.part("linear", "linear_forward_tf32_128") == "tf32_128"
    assert loader.part("pool2d", "max_pool2d_forward_f32") == ""
    assert loader.part_options("relu", "relu_forward_f32") == ()
    assert loader.part_options("conv2d", "conv2d_forward_3xtf32_64") == ("-DGPUCNN_PART=1", "-DGPUCNN_PART_3xtf32_64=1")


@pytest.mark.parametrize("cc,extra", [(80, ()), (89, ()), (90, ("-arch=sm_90a",)), (100, ())])
def test_cupy_module_builds_arch_specific_families_for_sm_90a(monkeypatch, cc, extra):
    """On compute capability 9.0 the families of ARCH_SPECIFIC (wgmma) get -arch=sm_90a
    among their options (CuPy adds its own -arch after them); the rest, and other devices, not."""
    import types
    built = []

    class RawModule:
        def __init__(self, code, options):
            built.append(options)

        def compile(self):
            pass

        def get_function(self, name):
            return name

    class Device:
        def __init__(self, device_id=None):
            self.id, self.compute_capability = 0, str(cc)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(RawModule=RawModule,
                                                                   cuda=types.SimpleNamespace(Device=Device)))
    loader._cupy_module.cache_clear()
    try:
        loader.cupy_module("conv2d_fold")
        loader.cupy_module("relu")
        # a kernel of a family built a part at a time: that part only
        rt = gpucnn.runtime.Runtime("cuda", None, loader.cupy_module, lambda: (cc, 132))
        assert rt.function("conv2d", "conv2d_forward_3xtf32_128g") == "conv2d_forward_3xtf32_128g"
        rt.function("conv2d", "conv2d_sum_splits_f32")
        rt.function("conv2d", "conv2d_sum_splits_f32")  # built once
        rt.function("relu", "relu_forward_f32")  # whole, as built above
    finally:
        loader._cupy_module.cache_clear()
    assert built == [loader.NVRTC_OPTIONS + extra, loader.NVRTC_OPTIONS,
                     loader.NVRTC_OPTIONS + ("-DGPUCNN_PART=1", "-DGPUCNN_PART_3xtf32_128g=1") + extra,
                     loader.NVRTC_OPTIONS + ("-DGPUCNN_PART=1", "-DGPUCNN_PART_base=1") + extra]


def test_nvrtc_builds_sm_90a_with_cupys_arch_after_ours():
    """loader.ARCH_SPECIFIC's premise: NVRTC given our -arch=sm_90a and then CuPy's
    -arch=sm_90 compiles for sm_90a (the architecture-specific features defined)."""
    from gpucnn.runtime import compile_check
    try:
        run = compile_check.ctypes_backend()
    except RuntimeError as e:
        pytest.skip(f"no NVRTC here: {e}")
    src = 'extern "C" __global__ void k(int* o) {\n#if defined(__CUDA_ARCH_FEAT_SM90_ALL)\no[0] = 7;\n#endif\n}\n'
    ok, log, ptx = run(src, "k.cu", ("-std=c++17", "-arch=sm_90a", "-arch=sm_90"))
    assert ok, log
    assert ".target sm_90a" in ptx and "7;" in ptx


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None, reason="no compiler")
def test_wheel_ships_kernels_and_installed_package_finds_them(tmp_path):
    """`pip install .` (not only editable) ships the .cu files, and the
    installed package reads them from its own folder."""
    pip = [sys.executable, "-m", "pip"]
    r = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                              str(ROOT)], capture_output=True, text=True)
    if r.returncode and "setuptools" in (r.stderr + r.stdout):
        pytest.skip(f"setuptools not available for an offline wheel build: {r.stderr[-300:]}")
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("gpucnn-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for fam in loader.families():
        assert f"gpucnn/kernels/{fam}.cu" in names
    assert "gpucnn/kernels/common.cuh" in names
    target = tmp_path / "site"
    r = subprocess.run(pip + ["install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    code = ("from gpucnn.runtime import loader; d = loader.kernel_dir(); "
            "assert 'site' in str(d), d; print(len(loader.source('relu')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) > 1000
