#!/usr/bin/env bash
# On a lent GPU machine (CuPy, PyTorch and pytest installed, no registry), from
# the repository root: the GPU tests and the benchmarks in one go.
#   bash bench/gpu.sh [OUTDIR]        (default: $OUT, else bench/results/<date>)
# `gpucnn bench` needs neither pytest-benchmark nor matplotlib: without the
# latter it writes the JSON and the table and skips the chart.
set -u
out=${1:-${OUT:-bench/results/$(date +%F)}}
mkdir -p "$out"
export PYTHONPATH=. PYTHONUNBUFFERED=1
{ nvidia-smi; python -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)"; } > "$out/device.txt" 2>&1
python -m pytest -q -m gpu tests 2>&1 | tee "$out/gpu-tests.txt"
python -m gpucnn.runtime.compile_check > "$out/ptxas.txt" 2>&1
python -m gpucnn.cli bench --device cuda --out "$out" --no-progress 2>&1 | tee "$out/bench.txt"
