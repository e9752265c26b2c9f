"""``pytest bench --benchmark-only``: the suite of ``gpucnn.bench.cases``
through pytest-benchmark. Never collected by a plain ``pytest`` (testpaths
is tests/); skipped whole where pytest-benchmark is not installed (the GPU
machine's ``bench/gpu.sh`` uses ``gpucnn bench`` instead).

Options: ``--bench-device cpu|cuda`` (default: cuda where CuPy sees a GPU),
``--bench-only SUBSTRING`` to keep the cases whose label contains it.
"""
import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("pytest_benchmark") else ["test_*.py"]


def pytest_addoption(parser):
    parser.addoption("--bench-device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.addoption("--bench-only", default=None)
