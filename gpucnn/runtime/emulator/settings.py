"""Launch settings: process-wide through ``configure``, scoped through ``emulation``."""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses

ORDERS = {"forward": 0, "reverse": 1, "shuffle": 2}
GUARDS = ("end", "start")
CHECK_RACE, CHECK_ALIGN, CHECK_UB, CHECK_TRAFFIC = 1, 2, 4, 8  # emu_internal.h


@dataclasses.dataclass(frozen=True)
class Settings:
    resume_order: str = "forward"  # order threads (re)start after each barrier
    guard: str = "end"             # which side of each buffer faults precisely
    seed: int = 0                  # for resume_order="shuffle"
    poison: bool = True            # poison outputs and report unwritten elements
    compute_capability: int = 80   # the device the emulator reports (80: sm_80, TF32 tensor cores)
    sm_count: int = 132            # its multiprocessors (an H100's), for per-shape tile choices
    race_check: bool = False       # shadow every shared and global word: RaceError
    misalign: bool = False         # shift pointer arguments off 16-byte alignment
    sanitize: bool = False         # signed overflow, bad shifts, misaligned accesses: errors
    traffic: bool = False          # count each launch's memory requests (gpucnn.runtime.emulator.traffic)
    blocks: tuple | None = None    # run only these blocks (ints, negative from the end, or (x, y, z))

    @property
    def checks(self) -> int:
        """CHECK_* bits; non-zero launches run an instrumented ("checked") build."""
        align = self.misalign or self.sanitize
        return ((CHECK_RACE * self.race_check) | (CHECK_ALIGN * align) | (CHECK_UB * self.sanitize) |
                (CHECK_TRAFFIC * self.traffic))


_global = Settings()
_scoped: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("gpucnn_emulation", default=None)


def current() -> Settings:
    return _scoped.get() or _global


def _blocks(v) -> tuple | None:
    if v is None:
        return None
    items = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    for b in items:
        t = b if isinstance(b, tuple) else (b,)
        if not t or len(t) > 3 or not all(isinstance(d, int) and not isinstance(d, bool) for d in t):
            raise ValueError(f"blocks must be block indices: ints (negative counts from the last block) "
                             f"or (x, y, z) tuples of ints, not {v!r}")
    return items


def _merge(base: Settings, changes: dict) -> Settings:
    """``base`` with ``changes`` (None: unchanged; ``blocks=()``: every block again)."""
    fields = {f.name for f in dataclasses.fields(Settings)}
    unknown = set(changes) - fields
    if unknown:
        raise TypeError(f"unknown emulator setting(s) {sorted(unknown)}; the settings are {sorted(fields)}")
    kw = {k: v for k, v in changes.items() if v is not None}
    if "blocks" in kw:
        kw["blocks"] = _blocks(kw["blocks"]) or None
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
    for flag in ("poison", "race_check", "misalign", "sanitize", "traffic"):
        if not isinstance(getattr(s, flag), bool):
            raise ValueError(f"{flag} must be a bool, not {getattr(s, flag)!r}")
    return s


def configure(**changes) -> Settings:
    """Set the process-wide defaults (keywords: the fields of Settings); returns the new settings."""
    global _global
    _global = _merge(_global, changes)
    return _global


@contextlib.contextmanager
def emulation(**changes):
    """Override settings (the fields of Settings) for launches inside the ``with`` block (this context only)."""
    token = _scoped.set(_merge(current(), changes))
    try:
        yield current()
    finally:
        _scoped.reset(token)
