"""Launch settings: process-wide through ``configure``, scoped through ``emulation``."""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses

ORDERS = {"forward": 0, "reverse": 1, "shuffle": 2}
GUARDS = ("end", "start")


@dataclasses.dataclass(frozen=True)
class Settings:
    resume_order: str = "forward"  # order threads (re)start after each barrier
    guard: str = "end"             # which side of each buffer faults precisely
    seed: int = 0                  # for resume_order="shuffle"
    poison: bool = True            # poison outputs and report unwritten elements
    compute_capability: int = 80   # the device the emulator reports (80: sm_80, TF32 tensor cores)
    sm_count: int = 132            # its multiprocessors (an H100's), for per-shape tile choices


_global = Settings()
_scoped: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("gpucnn_emulation", default=None)


def current() -> Settings:
    return _scoped.get() or _global


def _merge(base: Settings, kw: dict) -> Settings:
    kw = {k: v for k, v in kw.items() if v is not None}
    s = dataclasses.replace(base, **kw)
    if s.resume_order not in ORDERS:
        raise ValueError(f"resume_order must be one of {tuple(ORDERS)}, not {s.resume_order!r}")
    if s.guard not in GUARDS:
        raise ValueError(f"guard must be one of {GUARDS}, not {s.guard!r}")
    if not isinstance(s.seed, int) or s.seed < 0:
        raise ValueError(f"seed must be a non-negative int, not {s.seed!r}")
    for name in ("compute_capability", "sm_count"):
        v = getattr(s, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, not {v!r}")
    return s


def configure(resume_order: str | None = None, guard: str | None = None, seed: int | None = None,
              poison: bool | None = None, compute_capability: int | None = None,
              sm_count: int | None = None) -> Settings:
    """Set the process-wide defaults; returns the new settings."""
    global _global
    _global = _merge(_global, dict(resume_order=resume_order, guard=guard, seed=seed, poison=poison,
                                   compute_capability=compute_capability, sm_count=sm_count))
    return _global


@contextlib.contextmanager
def emulation(resume_order: str | None = None, guard: str | None = None, seed: int | None = None,
              poison: bool | None = None, compute_capability: int | None = None, sm_count: int | None = None):
    """Override settings for launches inside the ``with`` block (this thread/context only)."""
    token = _scoped.set(_merge(current(), dict(resume_order=resume_order, guard=guard, seed=seed,
                                               poison=poison, compute_capability=compute_capability,
                                               sm_count=sm_count)))
    try:
        yield current()
    finally:
        _scoped.reset(token)
