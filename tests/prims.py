"""The hardware primitives' test fixtures (tests/kernels/*_prims.cu) built for
the emulator or the GPU (tests/test_mma_prims.py, tests/test_wgmma_prims.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gpucnn import backend
from gpucnn.runtime import loader

_modules: dict = {}


def module(src: Path, runtime: str, arch: str | None = None):
    """``src`` with its headers inlined: an EmuModule ("emulator"), or on the GPU a
    cupy.RawModule for the device, or (``arch``: an architecture-specific target such
    as sm_90a) NVRTC's PTX for ``arch`` loaded as a cupy.cuda.function.Module."""
    key = (src, runtime, arch)
    if key not in _modules:
        text = loader.inline_file(src)
        if runtime == "emulator":
            ok, why = backend.available("emulator")
            if not ok:
                pytest.skip(f"emulator unavailable: {why}")
            from gpucnn.runtime.emulator import EmuModule
            _modules[key] = EmuModule(text)
        elif arch is None:
            import cupy
            _modules[key] = cupy.RawModule(code=text, options=loader.NVRTC_OPTIONS)
        else:
            import cupy
            from gpucnn.runtime import compile_check
            result = compile_check.compile_source(text, src.name, arch)
            assert result.ok, result.errors
            mod = cupy.cuda.function.Module()
            mod.load(result.ptx.encode())
            _modules[key] = mod
    return _modules[key]
