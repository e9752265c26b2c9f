"""The im2col workspace limit of the NumPy reference backend.

The expanded input φ(x) of "CNN for Dummies" §4.3 holds every input pixel
kh*kw times, so a whole batch of it can outgrow memory. The convolutions of
``gpucnn.reference.conv`` build it a chunk of images (or of output rows) at a
time so that one chunk never exceeds this many bytes.

The limit is ``set_limit(nbytes)`` if called, else the environment variable
``GPUCNN_WORKSPACE_MB`` (read at each call, so it can change at run time),
else 256 MiB.
"""
from __future__ import annotations

import os

DEFAULT_BYTES = 256 * 2**20

_limit: int | None = None


def set_limit(nbytes: int | None) -> None:
    """Cap the im2col workspace at ``nbytes``; None returns to the default.

    A chunk holds at least one output row of one image, so a limit below that
    row's size is exceeded by that much rather than failing.
    """
    global _limit
    if nbytes is not None:
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
            raise ValueError(f"nbytes must be a positive int or None, got {nbytes!r}")
    _limit = nbytes


def get_limit() -> int:
    """The current workspace limit in bytes."""
    if _limit is not None:
        return _limit
    env = os.environ.get("GPUCNN_WORKSPACE_MB")
    if env:
        try:
            mb = float(env)
        except ValueError:
            raise ValueError(f"GPUCNN_WORKSPACE_MB must be a number of MiB, got {env!r}") from None
        if mb > 0:
            return max(1, int(mb * 2**20))
        raise ValueError(f"GPUCNN_WORKSPACE_MB must be positive, got {env!r}")
    return DEFAULT_BYTES
