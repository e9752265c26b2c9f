"""A user's mistakes at the command line, told in one line.

``UsageError`` is raised for anything the user can fix (a bad option, a
missing file, an unavailable device, a missing optional package, an
unreadable checkpoint); ``gpucnn.cli`` prints it as ``gpucnn: error: ...``
and exits with status 2. ``explain`` turns the few foreign exceptions that
also mean a user's mistake into the same one line; anything else is a bug
and keeps its traceback. ``--debug`` or ``GPUCNN_DEBUG=1`` shows the
traceback of a user's mistake too.
"""
from __future__ import annotations

import os

EXIT_USAGE = 2
# Optional packages and the extra of pyproject.toml that brings each.
EXTRAS = {"sklearn": "train", "matplotlib": "train", "cupy": "cuda12", "cupy_backends": "cuda12",
          "torch": "bench", "pytest_benchmark": "bench"}
_PIP_NAMES = {"sklearn": "scikit-learn", "cupy_backends": "cupy", "pytest_benchmark": "pytest-benchmark"}


class UsageError(ValueError):
    """Something the user can fix; its message is one line, without the
    ``gpucnn: error:`` prefix."""


def missing_package(module: str, purpose: str) -> UsageError:
    """The error for an optional package that is not installed, naming the extra that brings it."""
    top = module.split(".")[0]
    extra = EXTRAS.get(top)
    pip_name = _PIP_NAMES.get(top, top)
    how = f'pip install "gpucnn[{extra}]"' if extra else f"pip install {pip_name}"
    if top == "cupy":
        how = 'pip install "gpucnn[cuda12]" (or "gpucnn[cuda13]")'
    return UsageError(f"{purpose} needs {pip_name}, which is not installed: {how}")


def require_module(module: str, purpose: str) -> None:
    """Import ``module`` now, or raise the one-line error naming its extra."""
    import importlib
    try:
        importlib.import_module(module)
    except ImportError:
        raise missing_package(module, purpose) from None


def debug_wanted(argv) -> bool:
    """A traceback is wanted: ``--debug`` among the arguments or GPUCNN_DEBUG=1."""
    return "--debug" in (argv or ()) or os.environ.get("GPUCNN_DEBUG", "") not in ("", "0")


def explain(exc: BaseException) -> str | None:
    """The one-line message for an exception that means a user's mistake, else None."""
    from gpucnn.backend import BackendUnavailable
    if isinstance(exc, UsageError):
        return str(exc)
    if isinstance(exc, BackendUnavailable):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] in EXTRAS:
        return str(missing_package(exc.name, "this command"))
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    return None


def one_line(message: str) -> str:
    """Messages are printed on one line, whatever they carry."""
    return " ".join(str(message).split())
