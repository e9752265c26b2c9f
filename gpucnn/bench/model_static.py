"""The static record the performance model (gpucnn.bench.model) reads:
bench/results/static-sm90.md, written by ``python -m gpucnn.runtime.sass_report
--write``. Parsed, never recompiled, so the model runs anywhere in
milliseconds and follows the kernels whenever the record is regenerated.

``kernels(text)`` merges every table of the record into one row per kernel
name: ptxas's registers and ``blocks_per_sm``, and the hot loop's instruction
counts (``instructions``, ``FMA``, ``HMMA``, ``LDG``, ``LDG.128``, ...). A table
is recognised by its first header cell (``name`` or ``kernel``), so new
kernels and new columns need no change here.
"""
from __future__ import annotations

import functools
from pathlib import Path

RECORD = Path(__file__).resolve().parents[2] / "bench" / "results" / "static-sm90.md"
KEYS = ("name", "kernel")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _value(cell: str):
    try:
        return float(cell) if "." in cell else int(cell)
    except ValueError:
        return cell


def tables(text: str) -> list[list[dict]]:
    """Every Markdown table of ``text`` keyed by a ``name``/``kernel`` column, as lists of {column: value}."""
    out, head, rows = [], None, None
    for line in text.splitlines() + [""]:
        if not line.startswith("|"):
            if rows is not None:
                out.append(rows)
            head = rows = None
            continue
        cells = _cells(line)
        if head is None:
            head = cells
        elif rows is None:  # the |---| line under the header
            rows = [] if head[0] in KEYS else None
            if rows is None:
                head = ["-"]  # a table without a kernel column: skip its rows
        elif head[0] in KEYS:
            rows.append(dict(zip(head, map(_value, cells))))
    return out


def kernels(text: str) -> dict[str, dict]:
    """{kernel: its columns from every table of the record}."""
    merged: dict[str, dict] = {}
    for table in tables(text):
        for row in table:
            name = row.get("name", row.get("kernel"))
            merged.setdefault(name, {}).update({k: v for k, v in row.items() if k not in KEYS})
    return merged


@functools.lru_cache(maxsize=4)
def load(path: str | None = None) -> dict[str, dict]:
    """The committed record's kernels (``path``: another record, for tests)."""
    return kernels(Path(path or RECORD).read_text())


def tc_issue(r: dict, a_runs: bool = False) -> float:
    """A warp's instructions a k-step on average (a tensor-core row: gpucnn.runtime.sass_tc.k_step's
    ``instructions``, the common code, 1/WARPS of the k-table builder and the gathered copy), with
    the 16-byte copy's side of the if/else instead where the launch's A has runs (``a_runs``); any
    other row's ``instructions``. conv2d_backward_filter_tf32_64: 245 common + 91 / 4 + 85 gathered
    = 352.75, or 303.75 with runs (36), where the loop's length, each instruction once, is 457."""
    if a_runs and r.get("runs"):
        return r["instructions"] - r["gather"] + r["runs"]
    return r["instructions"]


def row(record: dict, name: str, *fallbacks: str) -> tuple[str, dict]:
    """(the name found, its row): ``name``, else the first of ``fallbacks`` recorded
    (a kernel added to the code before the record was regenerated)."""
    for n in (name, *fallbacks):
        if n in record:
            return n, record[n]
    raise KeyError(f"{name} is not in {RECORD.name}: regenerate it (python -m gpucnn.runtime.sass_report --write)")
