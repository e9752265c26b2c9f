"""Helpers for the emulator tests: fixture kernels under kernels/, loaded as gpucnn's loader would."""
from pathlib import Path

import pytest

from gpucnn.runtime.emulator import EmuModule, emulator_available

_ok, _why = emulator_available()
requires_emulator = pytest.mark.skipif(not _ok, reason=f"kernel emulator unavailable: {_why}")

KERNELS = Path(__file__).resolve().parent / "kernels"
_modules: dict = {}


def source(name: str) -> str:
    """A fixture's text with a #line directive, as gpucnn.runtime.loader produces."""
    path = KERNELS / f"{name}.cu"
    return f'#line 1 "{path}"\n' + path.read_text()


def line_of(name: str, marker: str) -> str:
    """'name.cu:LINE' of the line holding ``marker``."""
    for n, line in enumerate((KERNELS / f"{name}.cu").read_text().splitlines(), start=1):
        if marker in line:
            return f"{name}.cu:{n}"
    raise AssertionError(f"marker {marker!r} not in {name}.cu")


def kernel(module: str, name: str, options: tuple = ()):
    key = (module, options)
    if key not in _modules:
        _modules[key] = EmuModule(source(module), options)
    return _modules[key].get_function(name)
