"""The package builds (wheel, sdist, editable) without a packaging warning,
with the setuptools that pyproject.toml asks for."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BUILD = """
import warnings
from setuptools import build_meta
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    for build in (build_meta.build_wheel, build_meta.build_sdist, build_meta.build_editable):
        build("dist")
for w in seen:
    print("WARNING", w.category.__name__, str(w.message).splitlines()[0])
"""


def test_build_emits_no_packaging_warnings(tmp_path):
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"pyproject.toml needs setuptools>=77, this is {setuptools.__version__}")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build",
                                                             "dist", ".pytest_cache", "runs", "data"))
    p = subprocess.run([sys.executable, "-c", BUILD], cwd=src, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    # InformationOnly is setuptools' note on how editable installs work, not a warning about us.
    warnings = [ln for ln in p.stdout.splitlines()
                if ln.startswith("WARNING") and not ln.startswith("WARNING InformationOnly")]
    assert not warnings, warnings
    built = sorted(f.name for f in (src / "dist").iterdir())
    assert any(n.endswith(".tar.gz") for n in built) and sum(n.endswith(".whl") for n in built) == 2, built
