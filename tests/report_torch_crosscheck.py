"""Print what the torch cross-checks of the conv and linear/loss tests covered.

    python tests/report_torch_crosscheck.py [extra pytest args]

Runs tests/test_conv.py and tests/test_linear_loss.py in this process and
prints, per op, how many cases were compared with torch, which options they
exercised, and the worst error relative to the result's magnitude per dtype
(each test module fills its CROSSCHECK dict through its ``check``).
Not collected by pytest: the file name does not start with ``test_``.
"""
from __future__ import annotations

import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))   # run from a checkout without installing gpucnn
FILES = ["test_conv.py", "test_linear_loss.py"]


class _Collect:
    def __init__(self):
        self.records: dict = {}

    def pytest_sessionfinish(self, session):
        for item in session.items:
            for op, rec in getattr(item.module, "CROSSCHECK", {}).items():
                self.records[op] = rec   # one dict per module, shared by its items


def main(argv: list[str]) -> int:
    collect = _Collect()
    rc = pytest.main(["-q", "-p", "no:cacheprovider", *[str(HERE / f) for f in FILES], *argv],
                     plugins=[collect])
    print(f"\n{'op':34} {'cases':>5}  {'worst float32':>13}  {'worst float64':>13}  options")
    for op, rec in sorted(collect.records.items()):
        w = rec["worst"]
        cells = [f"{w[d]:13.2e}" if d in w else f"{'-':>13}" for d in ("float32", "float64")]
        print(f"{op:34} {rec['cases']:5d}  {cells[0]}  {cells[1]}  {', '.join(sorted(rec['options']))}")
    return int(rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
