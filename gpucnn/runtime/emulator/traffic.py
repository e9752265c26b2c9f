"""A launch's memory requests as a GPU's L1 would serve them, counted by the emulator.

    with traffic.profile() as rows:
        launch(s) on the emulator
    print(traffic.table(rows))

Inside ``profile()`` every launch runs the instrumented build (the race checks'
ThreadSanitizer hooks, include/emu_traffic.cpp) and adds one ``Access`` row per
code site, direction and buffer: its warp requests, and for global memory the
32-byte sectors they touch against the ideal (their distinct bytes / 32), for
shared memory the wavefronts CUDA's 32 banks need against the ideal (distinct
bytes / 128). A warp's request is its lanes' k-th access at one site, so the
counts hold where a warp's control flow at that site is uniform.
``emulation(blocks=...)`` runs a few blocks of a large launch: the counts are
those blocks'.

What it is for: a GPU's L1 throughput (ncu's "L1/TEX Cache Throughput") is
spent in wavefronts and sectors; a gather that fills half of its sectors or a
shared layout with two-way conflicts doubles it, and this shows which line
does so, on the CPU, before a GPU is lent. Not modelled: cache hits (every
request counts); wgmma's operand reads are left out (the tensor core reads its
operands from shared memory through its own path).
"""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import dataclasses

from . import settings
from .reports import source_line

_sink: contextvars.ContextVar[list | None] = contextvars.ContextVar("gpucnn_emu_traffic", default=None)


@dataclasses.dataclass(frozen=True)
class Access:
    """One code site's requests to one buffer in one direction, over a launch."""
    kernel: str
    site: str      # file:line (innermost inlined frame), or the code offset when unknown
    space: str     # "global" or "shared"
    op: str        # "read" or "write"
    buffer: str    # the pointer parameter's name, or the shared variable's
    requests: int  # warp instructions
    lanes: int     # lanes' accesses
    bytes: int     # bytes the lanes asked for
    units: int     # sectors (global) or wavefronts (shared)
    ideal: int     # the fewest that could serve the same distinct bytes
    lines: int     # 128-byte lines (global; 0 for shared)
    blocks: int = 1       # the blocks counted (emulation(blocks=...) runs a few)
    grid_blocks: int = 1  # the launch's blocks: a whole launch's counts are about grid_blocks / blocks times these

    @property
    def excess(self) -> float:
        """units / ideal: 1 is perfectly coalesced (global) or conflict-free (shared)."""
        return self.units / self.ideal if self.ideal else 1.0


@contextlib.contextmanager
def profile():
    """Count the traffic of every emulator launch inside the block into the list it yields."""
    rows: list[Access] = []
    token = _sink.set(rows)
    try:
        with settings.emulation(traffic=True):
            yield rows
    finally:
        _sink.reset(token)


def _typed(lib_c):
    """The library with its traffic functions' signatures declared (once a library)."""
    if not getattr(lib_c, "_gpucnn_traffic_typed", False):
        lib_c.gpucnn_traffic_count.restype = ctypes.c_int
        lib_c.gpucnn_site_text.restype = ctypes.c_uint64
        lib_c.gpucnn_site_text.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_int]
        lib_c._gpucnn_traffic_typed = True
    return lib_c


def collect(lib, kernel: str, params, blocks: int, grid_blocks: int) -> None:
    """After a launch that counted (settings' traffic) ``blocks`` of its ``grid_blocks``: its rows
    into the profile's list."""
    rows = _sink.get()
    if rows is None:
        return
    lib_c = _typed(lib.lib)
    out, name, text = (ctypes.c_uint64 * 10)(), ctypes.create_string_buffer(256), ctypes.create_string_buffer(512)
    for i in range(lib_c.gpucnn_traffic_count()):
        lib_c.gpucnn_traffic_row(ctypes.c_int(i), out, name, ctypes.c_int(len(name)))
        site, write, arg, shared, requests, lanes, nbytes, units, ideal, lines = list(out)
        off = lib_c.gpucnn_site_text(ctypes.c_uint32(site), text, ctypes.c_int(len(text)))
        where = text.value.decode() or (source_line(str(lib.path), int(off)) or hex(off)).split(" (called from")[0]
        arg = ctypes.c_int64(arg).value
        buffer = name.value.decode() if shared else (params[arg][0] if 0 <= arg < len(params) else f"#{arg}")
        rows.append(Access(kernel, where, "shared" if shared else "global", "write" if write else "read", buffer,
                           requests, lanes, nbytes, units, ideal, lines, blocks, grid_blocks))


def table(rows: list[Access]) -> str:
    """The rows as a Markdown table, busiest site first within each kernel."""
    head = ("| kernel | site | space | op | buffer | requests | lanes a request | bytes a request | "
            "sectors or wavefronts a request | ideal | excess | lines a request |")
    out = [head, "|" + "---|" * 12]
    for r in sorted(rows, key=lambda r: (r.kernel, -r.units)):
        n = max(1, r.requests)
        out.append(f"| {r.kernel} | {r.site} | {r.space} | {r.op} | {r.buffer} | {r.requests} | {r.lanes / n:.1f} | "
                   f"{r.bytes / n:.1f} | {r.units / n:.2f} | {r.ideal / n:.2f} | {r.excess:.2f} | "
                   f"{(r.lines / n) if r.space == 'global' else 0:.2f} |")
    return "\n".join(out)
