"""The loader: header inlining, #line directives, and kernels shipped in the wheel."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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
