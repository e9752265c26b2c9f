#!/usr/bin/env bash
# On a lent GPU machine (CuPy, PyTorch, pytest, ncu and compute-sanitizer
# installed; no package registry), from the repository root:
#   bash bench/gpu.sh [OUTDIR]        (default: $OUT, else bench/results/<date>)
# Steps, in this order, each time-boxed and logged, a failing step never
# stopping the next (540 s at most in all, plus the time-outs' 10 s grace; the boxes set anew
# from the third run's times, bench/results/gpu-2026-11-30-s20, where step 3 ran out at 45 s and
# 7b at 30). The first run, on an
# H200 on 2026-11-29 (bench/results/gpu-2026-11-29), took 5 s for step 2 and 112 s for the conv2d
# family's NVRTC compile, which then starved every later step; the loader now builds conv2d and
# conv2d_phase (and linear) a part at a time (loader.PARTED: 4 s or less a part on the VM). The
# second (bench/results/gpu-2026-11-30) ran every step in 171 s; its times are in brackets below,
# and the boxes were cut where it had room to give 5c all the cases and 7 two more kernels:
#   1 device and versions                           10 s   [7]
#   2 the tensor-core primitives on the GPU          15 s   [3] (tests/test_mma_prims.py, test_wgmma_prims.py:
#                                                           layouts and descriptors in seconds; its wgmma_rs
#                                                           tests decide GPUCNN_HALO_WG for the later steps)
#   2b our host launch path on this host's CPU      10 s   [2] (bench/host_path.py: our launch code with a
#                                                           null runtime, on CuPy's launch path and on ours,
#                                                           GPUCNN_LAUNCH=driver, packing included)
#   2c every kernel module compiled, in parallel    35 s   [16; 26 in the third run; 26] (bench/gpu_launches.py compile, with the 8
#                                                           parts step 5e's A/B build launches: a process a
#                                                           family or part fills CuPy's disk cache, which
#                                                           the later steps read; 41 modules since session
#                                                           24's conv2d_halo; 40 -> 35 s, for step 7b)
#   2d the memory-bound ops' host path on CuPy,     10 s   (bench/host_cupy.py, new in session 17: the
#     taken apart: CuPy's allocation, copy and            calls ran ~20 us a call over the null path
#     launch, our module lookup, each op; cProfile        and the device; the table goes into
#     (session 26: each launch also re-issued through       summary.txt; after 2c, whose
#     the driver with our own argument packing; session     compiles CuPy's disk cache keeps)
#     27: each op again on that path, GPUCNN_LAUNCH=driver, its results compared with CuPy's launch's)
#   3 the GPU test suite (pytest -m gpu)            70 s   [23; the third cut at 45 s after 599 of 1007
#     tests, in a capture test: each test now has 20 s (pytest-timeout), so a hang fails one test;
#     35 s for 1005 in session 21's first run; 20 s went to 5d in session 22]
#   4 compute-sanitizer memcheck, racecheck          15 + 25 s [2, 12] (bench/gpu_launches.py small)
#   5a the memory-bound rows (ReLU, pooling, batch   35 s   [20; 24] (the model's open verdicts: measured first;
#     norm, bias gradient), on CuPy's launch path           session 27: one more backend in the same time
#     and on ours (gpucnn-cuda-driver) side by side         budget, whose rows the targets count apart)
#   5 the convolution rows, in each math mode        55 s   [34] (GPU backends only: with the default ones,
#                                                           CPU peers included, it had not finished
#                                                           after 185 s on the H200)
#   5b the fused rows (conv+bias+ReLU, batch norm    20 s   [9; 10] (after 5, whose compiled kernels CuPy's
#     + ReLU) against the separate passes                   disk cache keeps)
#   5c every convolution case autotuned (--algo      55 s   [19 for 8 cases] (where the tuned time beats
#     autotune), 3xtf32 and tf32                            step 5's, the heuristic guessed wrong; each
#                                                           candidate timed until 2 ms, autotune._time)
#   5d A/B of memory-bound kernel variants:         45 s   [18]   (bench/ab_mem.py, gpucnn.bench.variants:
#     side by side in one process, called and in           pooling forward's stride-2 pair kernels,
#     a CUDA graph; the table goes into summary.txt        two rows a thread and one (session 22: a
#                                                           third variant, 20 s more: the tests' CPU
#                                                           stand-in ran it in 33-35 s), against the
#                                                           generic ones; the reductions
#                                                           (batch norm's statistics and backward, the
#                                                           bias gradient) in one wave of blocks and in
#                                                           four; the statistics through a cp.async ring
#                                                           too; each with a same-size copy; new in
#                                                           session 16; step 4 runs them all, small;
#                                                           session 29: a size sweep, the reductions
#                                                           and two map kernels at 8.4-67.1 MB in a
#                                                           graph, each fitted to fixed us + bytes /
#                                                           rate: the stand-in's 35 s -> 42 s)
#   5e A/B of the GEMM tiles' occupancy: as built   25 s   [7, two builds] (bench/ab_conv.py, variants.CONV:
#     and in two other builds (the 64 tile forced           "fewer blocks an SM", session 19's FFMA tile at
#     in tf32 and 3xtf32, the wide tile in tf32,            2 blocks and TF32's wide tile at 3 stages, 2
#     the FFMA tile in fp32) on 4 cases, 3 passes,          blocks, which the third run timed the other way
#     in a graph; the table goes into summary.txt,          round and session 20 made the default for 3 and
#     a row as it is timed                                  2; "more blocks an SM", the tensor-core 64 tile
#                                                           at 4 where 3; all compiled by step 2c)
#   6 the training-step rows (lenet, vgg-small,     30 s   [12: failed, fixed since; 16]
#     resnet20 at batch 128 against PyTorch eager; torch.compile's own compile left out for time)
#   7 ncu on the conv forward kernels of each mode   25 s   [10; 13; 16] (bench/gpu_launches.py large)
#     (the kernel each picks: the halo kernels in tf32 and 3xtf32 since session 24, their warpgroup
#     variant on sm_90 since session 25, and then the mma.sync ones forced, 21 -> 23 launches; the
#     Winograd kernels in fp32 since session 31 and the FFMA tile forced beside them, 24; the GEMM tiles
#     forced: tf32's wide mma.sync and warpgroup tiles and 64 tile, 3xtf32's 64 tile, fp32's in step
#     5e's fewer blocks build and tf32's 64 tile in its more blocks build) and deepspeech's backward-data window
#     and fold kernels (mma.sync and, forced, wgmma), batch norm's statistics (one wave, four, and the cp.async
#     ring) and the bias gradient on 33.6 MB, and
#     max pooling 3x3/2 (forward and backward) and batch norm's apply on 102.8 MB
#   7b ncu's full set (stall reasons, L1 and shared   50 s   (new in session 18: the tf32 tiles ran at 18% of
#     memory wavefronts by instruction, instruction        occupancy with L1 at 72% and the SMs at 36%, the
#     mix) on 12 of step 7's launches: the FFMA tile,      statistics at 42% of DRAM throughput, and the
#     the wide mma.sync tile in tf32, the halo kernels     SpeedOfLight section cannot say what binds them;
#     in both modes and both variants (session 25: the     session 24: the halo kernels in, the wgmma
#     64 tiles out, the warpgroup halo in),                tile out, 12 -> 13 kernels, 45 -> 50 s;
#     the statistics and the                               its sectors and wavefronts check the emulator's
#     bias gradient through the cp.async ring (the         counts, bench/results/static-traffic.md; a step
#     defaults; session 23: their tails shortened, where   of its own, so a section this ncu lacks costs
#     the plain statistics in one wave and four were       only this step; 41 of its 45 s in session 21)
#     here), max pooling's pair kernel and batch norm's
#     apply
#   8 issue 11's targets read off steps 5a-5b's JSON  5 s    (gpucnn.bench.targets; the table goes into
#                                                           summary.txt)
#   8b step 5c's candidates: the heuristic's choice    5 s    (gpucnn.bench.tuning, into summary.txt)
#     and the model's pick against the fastest, the model's measured / predicted by algorithm, and
#     the heuristic as the code stands replayed on those timings
# The lending tool returns at most 8 files from $OUT: the logs and tables go into one
# tarball (logs.tar.gz) beside summary.txt and the benchmarks' JSON (mem, bench, fused,
# tuned, steps: 7 files).
# Without a GPU, tests/test_standin_gpu.py runs this script's Python steps on a stand-in CuPy
# (bench/standin_gpu.py: PYTHON a wrapper that runs it, GPU_SH_SKIP the steps that need the device).
set -u
out=${1:-${OUT:-bench/results/$(date +%F)}}
mkdir -p "$out"
logs=$(mktemp -d)
export PYTHONPATH=. PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
summary="$out/summary.txt"
: > "$summary"

# GPU_SH_BOX_SCALE (default 1) multiplies every box: the tests' CPU stand-in runs the Python steps
# on a 2-core VM, whose times are not the H200's (5a took 31-36 s of its 35 there), so it sets 4;
# on the GPU the boxes are the ones below, which tests/test_bench.py holds to 540 s.
scale=${GPU_SH_BOX_SCALE:-1}
step() {  # step NAME SECONDS COMMAND...: run it under timeout, log it, note its exit status
    local name=$1 secs=$(( $2 * scale )) t0=$SECONDS
    shift 2
    case " ${GPU_SH_SKIP:-} " in *" $name "*) echo "$name: skipped (GPU_SH_SKIP)" | tee -a "$summary"; return;; esac
    timeout --kill-after=10 "$secs" "$@" > "$logs/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - t0)) s$([ $rc -eq 124 ] && echo ' (timed out)')" | tee -a "$summary"
    tail -n 3 "$logs/$name.log" | sed 's/^/    /' >> "$summary"
}

step 1-device 10 bash -c "nvidia-smi; $PY -c 'import cupy, numpy, torch; print(\"cupy\", cupy.__version__, \"numpy\", numpy.__version__, \"torch\", torch.__version__, \"cudnn\", torch.backends.cudnn.version())'; $PY -m gpucnn.cli info"
step 2-primitives 15 "$PY" -m pytest -v -m gpu -p no:cacheprovider tests/test_mma_prims.py tests/test_wgmma_prims.py
# The halo kernels' warpgroup variant (algo.HALO_WG, the heuristic's on sm_90 since session 25) is
# the one user of two primitives step 2 first tests on hardware (wgmma with A from registers, the
# no-swizzle descriptors): where any of those tests failed, or none passed, every later step runs
# the mma.sync halo kernels instead (GPUCNN_HALO_WG=0), so one wrong layout costs no step.
if grep -q "wgmma_rs.*PASSED" "$logs/2-primitives.log" 2>/dev/null \
        && ! grep -q "wgmma_rs.*\(FAILED\|ERROR\)" "$logs/2-primitives.log"; then
    echo "halowg: on (step 2's wgmma_rs tests passed)" | tee -a "$summary"
else
    export GPUCNN_HALO_WG=0
    echo "halowg: off for the later steps (GPUCNN_HALO_WG=0: step 2's wgmma_rs tests did not all pass)" | tee -a "$summary"
fi
step 2b-host 10 "$PY" bench/host_path.py --calls 100 --samples 3
step 2c-compile 35 "$PY" bench/gpu_launches.py compile
step 2d-host-cupy 10 "$PY" bench/host_cupy.py
step 3-gpu-tests 70 "$PY" -m pytest -v -m gpu -p no:cacheprovider --maxfail=20 --timeout=20 tests
step 4a-memcheck 15 compute-sanitizer --tool memcheck --error-exitcode 3 "$PY" bench/gpu_launches.py small
step 4b-racecheck 25 compute-sanitizer --tool racecheck --error-exitcode 3 "$PY" bench/gpu_launches.py small
peers=${GPU_SH_PEERS-torch-cudnn,torch-cudnn-tf32}  # PyTorch's cuDNN, strict then TF32 (the stand-in has no CUDA PyTorch: empty)
strict=${peers%%,*}
modes=gpucnn-cuda-3xtf32${peers:+,$peers},gpucnn-cuda-tf32,gpucnn-cuda-fp32
convs=$("$PY" -c 'from gpucnn.bench.cases import CONV; print(",".join(c.name for c in CONV))')
step 5a-mem 35 "$PY" -m gpucnn.cli bench --device cuda --no-train --no-fused --no-progress --budget 0.15 \
    --out "$logs/mem" --backends "gpucnn-cuda,gpucnn-cuda-driver${strict:+,$strict}" --only relu,pool,batchnorm,bias_grad
step 5-bench 55 "$PY" -m gpucnn.cli bench --device cuda --no-train --no-fused --no-progress --budget 0.15 \
    --out "$logs/bench" --backends "$modes" --only "$convs"
step 5b-fused 20 "$PY" -m gpucnn.cli bench --device cuda --fused-only --no-progress --budget 0.3 \
    --out "$logs/fused" --backends "$modes"
step 5c-autotune 55 "$PY" -m gpucnn.cli bench --device cuda --no-train --no-fused --no-progress --budget 0.15 \
    --out "$logs/tuned" --backends "gpucnn-cuda-3xtf32${peers:+,$peers},gpucnn-cuda-tf32" --algo autotune \
    --only "$convs"
step 5d-ab 45 "$PY" bench/ab_mem.py --budget 0.15
step 5e-ab-conv 25 "$PY" bench/ab_conv.py --budget 0.1
step 6-steps 30 "$PY" -m gpucnn.cli bench --device cuda --steps-only --no-torch-compile --no-progress \
    --out "$logs/steps"
step 7-ncu 25 ncu --clock-control none \
    --kernel-name regex:"conv2d_forward_(f32|tf32_|3xtf32_)|conv2d_(halo|wino)_forward_|depthwise_backward_data_window_f32|conv2d_fold_|batchnorm_(stats|stats_async|forward)_f32|conv2d_bias_grad_(async_)?f32|max_pool2d_(forward|backward)_s2_f32" \
    --launch-count 24 --section SpeedOfLight --section Occupancy --section LaunchStats "$PY" bench/gpu_launches.py large
step 7b-ncu-full 50 ncu --clock-control none --set full \
    --kernel-name regex:"conv2d_forward_(f32|tf32_64w)$|conv2d_(halo|wino)_forward_|batchnorm_(stats_async|forward)_f32|conv2d_bias_grad_async_f32|max_pool2d_forward_s2_f32" \
    --launch-count 13 "$PY" bench/gpu_launches.py large

echo "8-targets:" >> "$summary"  # the whole table, into the summary
runs=()  # each step's JSON, or the rows a step cut short kept (its partial.jsonl)
for d in mem bench fused; do
    f=$(ls "$logs/$d"/*.json 2>/dev/null | head -n 1)
    runs+=("${f:-$logs/$d/partial.jsonl}")
done
timeout 5 "$PY" -m gpucnn.bench.targets "${runs[@]}" >> "$summary" 2>&1
echo "8b-tuning:" >> "$summary"  # step 5c's candidates against the heuristic and the model
f=$(ls "$logs"/tuned/*.json 2>/dev/null | head -n 1)
timeout 5 "$PY" -m gpucnn.bench.tuning "${f:-$logs/tuned/partial.jsonl}" >> "$summary" 2>&1
echo "2d-host-cupy table:" >> "$summary"  # step 2d's table (its profiles stay in the tarball)
grep '^|' "$logs/2d-host-cupy.log" >> "$summary" 2>/dev/null
echo "5d-ab table:" >> "$summary"  # step 5d's whole table
cat "$logs/5d-ab.log" >> "$summary" 2>/dev/null
echo "5e-ab-conv table:" >> "$summary"  # step 5e's whole table
cat "$logs/5e-ab-conv.log" >> "$summary" 2>/dev/null

for d in mem bench fused tuned steps; do  # a bench cut short keeps the rows it timed (gpucnn bench's partial.jsonl)
    [ -f "$logs/$d/partial.jsonl" ] && echo "$d: cut short; $(wc -l < "$logs/$d/partial.jsonl") rows timed, in logs.tar.gz's $d/partial.jsonl" | tee -a "$summary"
done
for d in mem bench fused tuned steps; do  # the tables (.md) stay in the tarball, which every run's JSON can remake
    cp "$logs"/$d/*.json "$out/$d.json" 2>/dev/null
done
tar -czf "$out/logs.tar.gz" -C "$logs" .
rm -rf "$logs"
cat "$summary"
