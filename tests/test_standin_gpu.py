"""bench/gpu.sh's Python, run without a GPU on bench/standin_gpu.py's stand-in CuPy.

A lent GPU gives a session minutes, and gpu.sh's bench, autotuning, step and
targets code had never run before one: a Python error there (the step table
of a GPU run read CPU-only fields) costs a step's rows. Here the script's
Python steps run on the stand-in: bench/gpu_launches.py's small launches
through the "cuda" backend on the emulator's kernels, each result checked
against float64; the whole script with null kernels (its device steps
skipped), whose JSON and targets table must come out; ncu's kernel
filter against the launches it watches; and ``gpucnn train --device cuda``,
the project's main job on a GPU, against the emulator's."""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from gpucnn.bench.cases import passes

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("standin_gpu", ROOT / "bench" / "standin_gpu.py")
sg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sg)

DEVICE_STEPS = "1-device 2-primitives 2c-compile 3-gpu-tests 4a-memcheck 4b-racecheck 7-ncu 7b-ncu-full"


def test_the_stand_in_serves_backend_cuda():
    import gpucnn
    from gpucnn import backend
    with sg.gpu("emulator") as rt:
        import cupy
        x = cupy.asarray(np.arange(-3, 3, dtype=np.float32))
        assert backend.resolve((x,)) == "cuda" and rt.device() == (90, 132)
        y = gpucnn.relu(x)
        assert type(y) is sg.StandinArray and y.get().tolist() == [0, 0, 0, 0, 1, 2]
    assert sys.modules.get("cupy") is not cupy


def test_gpu_launches_small_is_right_through_the_cuda_backend(capsys):
    """gpu.sh's compute-sanitizer steps run gpu_launches.py small: every pass in every math mode on
    every tile, then each family forced, each checked against float64 (on the emulator's kernels at
    compute capability 9.0, so the warpgroup tiles too)."""
    with sg.gpu("emulator"):
        ok = sg._script("gpu_launches").small()
    out = capsys.readouterr().out
    assert ok and "MISMATCH" not in out
    assert "tile 64g" in out and "fold wgmma" in out and out.count(" ok") >= 100


def _ncu_hits() -> list[tuple[list[str], int]]:
    """For each of gpu.sh's ncu steps, the launches of gpu_launches.py large its kernel-name filter
    matches (ncu searches the name), and its launch count."""
    text = (ROOT / "bench" / "gpu.sh").read_text()
    rxs = re.findall(r'--kernel-name regex:"([^"]+)"', text)
    counts = [int(n) for n in re.findall(r"--launch-count (\d+)", text)]
    assert len(rxs) == len(counts) == 2, (rxs, counts)
    log = []
    with sg.gpu("null") as rt, np.errstate(all="ignore"):
        null = sg.host_path.NullModule(log)
        rt.module = lambda family, options=(), kernel=None: null
        sg._script("gpu_launches").large()
    return [([name for name, *_ in log if re.search(rx, name)], n) for rx, n in zip(rxs, counts)]


def test_ncu_profiles_the_launches_it_names(capsys):
    """gpu.sh's ncu steps: each kernel-name filter over gpu_launches.py large's launches matches
    exactly its launch count, and those are the kernels the step names. Step 7: the conv forward in
    each mode and on the wide warpgroup and mma.sync tiles, the window kernel, the fold of each MMA
    kind, batch norm's statistics and apply, the bias gradient (through the ring and plain) and max
    pooling, forward and backward. Step 7b (the full set): the FFMA tile, the wide tf32 mma.sync
    tile, the halo kernels in both modes (the tf32 and 3xtf32 choice since session 24) and both
    variants (the warpgroup one the choice on sm_90 since session 25, the mma.sync one forced), the
    Winograd kernel (the fp32 choice since session 31; the FFMA tile forced beside it), the
    statistics and the bias gradient through the ring (the defaults), max pooling's pair kernel and
    batch norm's apply."""
    (hit, count), (full, full_count) = _ncu_hits()
    assert len(hit) == count, hit
    prefixes = ["conv2d_forward_f32", "conv2d_forward_tf32_", "conv2d_forward_3xtf32_", "conv2d_forward_tf32_64g",
                "conv2d_forward_tf32_64w", "conv2d_halo_forward_tf32_f32", "conv2d_halo_forward_3xtf32_f32",
                "conv2d_halo_forward_wg_tf32_f32", "conv2d_halo_forward_wg_3xtf32_f32", "conv2d_wino_forward_f32",
                "depthwise_backward_data_window_f32", "conv2d_fold_backward_data_tf32", "conv2d_fold_backward_data_wgmma",
                "batchnorm_stats_f32", "batchnorm_stats_async_f32", "conv2d_bias_grad_f32", "conv2d_bias_grad_async_f32",
                "max_pool2d_forward_s2_f32",
                "max_pool2d_backward_s2_f32",
                "batchnorm_forward_f32"]
    assert all(any(h.startswith(p) for h in hit) for p in prefixes), hit
    assert len(full) == full_count and set(full) <= set(hit), full
    assert sorted(set(full)) == ["batchnorm_forward_f32", "batchnorm_stats_async_f32", "conv2d_bias_grad_async_f32",
                                 "conv2d_forward_f32", "conv2d_forward_tf32_64w", "conv2d_halo_forward_3xtf32_f32",
                                 "conv2d_halo_forward_tf32_f32", "conv2d_halo_forward_wg_3xtf32_f32",
                                 "conv2d_halo_forward_wg_tf32_f32", "conv2d_wino_forward_f32",
                                 "max_pool2d_forward_s2_f32"]
    assert full.count("batchnorm_stats_async_f32") == full.count("conv2d_bias_grad_async_f32") == 1, full
    # as built, and in the fewer blocks build
    assert full.count("conv2d_forward_f32") == 2, full


def test_ab_mem_times_each_variant_on_its_own_kernels():
    """bench/ab_mem.py (gpu.sh's 5d): the pair variant launches the stride-2 pair kernels and the
    generic one the one-output-a-thread kernels, on every pooling case, and the reductions' variants
    chunk into one wave of blocks and into four, called and in a graph."""
    log = []
    with sg.gpu("null") as rt, np.errstate(all="ignore"):
        null = sg.host_path.NullModule(log)
        rt.module = lambda family, options=(), kernel=None: null
        rows = sg._script("ab_mem").rows(0.001, copies=1)
    names = {name for name, *_ in log}
    assert {"max_pool2d_forward_s2_f32", "max_pool2d_forward_f32", "avg_pool2d_forward_s2_f32",
            "avg_pool2d_forward_f32"} <= names, names
    # the reductions in one wave of 132 x 4 blocks, and in four: 128x64x32x32's 64 channels in 8 chunks, then 32
    grids = {grid for name, grid, *_ in log if name in ("batchnorm_stats_f32", "conv2d_bias_grad_f32")}
    assert {(512,), (2048,)} <= grids, grids
    # the statistics through shared memory, in one wave and in four; the bias gradient's, in one
    assert {(512,), (2048,)} <= {grid for name, grid, *_ in log if name == "batchnorm_stats_async_f32"}
    assert {(512,)} == {grid for name, grid, *_ in log if name == "conv2d_bias_grad_async_f32"}
    assert {r["variant"] for r in rows} == {"two rows", "one row", "generic", "1 wave", "4 waves", "async",
                                            "async, 4 waves", "one allocation"}
    assert all(r["ms"] > 0 for r in rows)


def test_ab_mem_sweep_times_each_op_at_each_batch_beside_its_copy():
    """bench/ab_mem.py's size sweep: each cases.SWEEP op's default kernel at each batch of
    Nx64x32x32, in a graph, beside the copy of its input, with the model's prediction; the table
    fits each op, its prediction and the copy."""
    from gpucnn.bench import cases
    log = []
    ab = sg._script("ab_mem")
    with sg.gpu("null") as rt, np.errstate(all="ignore"):
        null = sg.host_path.NullModule(log)
        rt.module = lambda family, options=(), kernel=None: null
        rows = ab.sweep_rows(0.001, copies=1, batches=(2, 4))
    assert [(r["op"], r["pass"], r["case"]) for r in rows] == [
        (op, d, f"{op} {n}x64x32x32") for op, d in cases.SWEEP for n in (2, 4)]
    names = {name for name, *_ in log}
    assert {"batchnorm_stats_async_f32", "conv2d_bias_grad_async_f32", "batchnorm_forward_f32",
            "relu_forward_f32"} <= names, names
    assert all(r["graph_ms"] > 0 and r["copy_ms"] > 0 and r["predicted_us"] > 0 for r in rows)
    assert [r["copy_bytes"] for r in rows[:2]] == [2 * 4 * 2 * 64 * 32 * 32, 2 * 4 * 4 * 64 * 32 * 32]
    table = ab.sweep_table(rows)
    assert sum(line.startswith("| batchnorm | stats | ") for line in table) == 3  # two sizes and the fit


def test_ab_conv_times_the_tiles_as_built_and_in_the_other_builds():
    """bench/ab_conv.py (gpu.sh's 5e): every launch of its "as built" variant comes from a module
    of the usual options and every one of another build from a module built with its options
    (variants.FEWER_BLOCKS, variants.MORE_BLOCKS), on the 64 tile's kernels in tf32 and 3xtf32, the
    FFMA wide tile's in fp32 and the wide tile's in tf32, in each pass; the wide tile's launches ask
    for its 2 stages' shared memory as built and more blocks, 3 stages' in fewer; the compile step
    builds those modules (bench/gpu_launches.py's jobs) with the options the launches ask for."""
    logs, modules = {}, []  # each build's launches, by its options
    with sg.gpu("null") as rt, np.errstate(all="ignore"):
        def module(family, options=(), kernel=None):
            modules.append((family, tuple(options), kernel))
            return sg.host_path.NullModule(logs.setdefault(tuple(options), []))
        rt.module = module
        rows = sg._script("ab_conv").rows(0.001, only="cifar-resnet-s2", copies=1)
        jobs = sg._script("gpu_launches")._compile_jobs()
    from gpucnn.bench import variants
    from gpucnn.cuda import tc
    fewer, more = variants.FEWER_BLOCKS, variants.MORE_BLOCKS
    assert fewer == ("-DGPUCNN_FFMA_BLOCKS=2", "-DGPUCNN_TC64W_STAGES=3")
    assert more == ("-DGPUCNN_TC64_BLOCKS=4",)
    tiles = {(o, k.rsplit("_", 2)[-2]) for f, o, k in modules if f in ("conv2d", "conv2d_phase") and "tf32" in k}
    assert tiles == {(o, m) for o in ((), fewer, more) for m in ("tf32", "3xtf32")}, tiles
    assert all(k.endswith(("_64", "_tf32_64w")) for f, o, k in modules if "tf32" in k), modules
    for switched in (fewer, more):
        names = {k for f, o, k in modules if o == switched}
        assert {"conv2d_forward_tf32_64", "conv2d_backward_data_phase_3xtf32_64", "conv2d_backward_filter_tf32_64",
                "conv2d_forward_f32", "conv2d_backward_data_phase_f32", "conv2d_backward_filter_f32",
                "conv2d_forward_tf32_64w", "conv2d_backward_data_phase_tf32_64w"} <= names, names
    # the wide tile's shared memory by the build's stages
    assert set(logs) == {(), fewer, more}
    wide = {(o, smem) for o, log in logs.items() for name, grid, block, smem, args in log if name.endswith("_64w")}
    assert wide == {((), tc.smem_bytes("64w")), (more, tc.smem_bytes("64w")),
                    (fewer, tc.smem_bytes("64w", "tf32", 3))}, wide
    assert tc.smem_bytes("64w") == 55296 and tc.smem_bytes("64w", "tf32", 3) == 80640
    assert tc.smem_bytes("64w", "3xtf32") == 80640  # 3xTF32's wide tile keeps 3 stages
    bases = (("conv2d", "conv2d_forward"), ("conv2d_phase", "conv2d_backward_data_phase"))
    for switched in (fewer, more):
        assert sorted(j for j in jobs if j[1] == switched) == sorted(
            (f, switched, f"{b}{p}") for f, b in bases for p in ("_f32", "_tf32_64", "_3xtf32_64", "_tf32_64w"))
    assert {(r["pass"], r["mode"], r["tile"], r["variant"]) for r in rows} == {
        (p, m, t, v) for p in ("forward", "backward_data", "backward_filter")
        for m, t in (("tf32", "64"), ("3xtf32", "64"), ("fp32", "FFMA"), ("tf32", "64w"))
        for v in ("as built", "fewer blocks an SM", "more blocks an SM")}
    assert all(r["graph_ms"] > 0 for r in rows)


def test_host_cupy_takes_each_ops_host_path_apart():
    """bench/host_cupy.py (gpu.sh's 2d): for each memory-bound case of 40 MB or less, CuPy's
    allocation and the bench's copy at its size, each launch of each of its passes re-issued alone
    (the kernels the op launches, with their argument counts), and the op as the bench calls it, on
    CuPy's launch path and on ours; cProfile's table names the op's launch code."""
    with sg.gpu("null"), np.errstate(all="ignore"):
        script = sg._script("host_cupy")
        rows = dict(script.rows(calls=2, samples=1))
        prof = script.profile(next(c for c in script.cases_timed() if c.op == "batchnorm"), "stats", calls=3)
    timed = script.cases_timed()
    assert {c.op for c in timed} == {"relu", "max_pool", "avg_pool", "batchnorm", "bias_grad"}
    for c in timed:
        assert f"{c.label()}: cupy.empty_like" in rows and f"{c.label()}: the bench's same-size copy" in rows
        for p in passes(c):
            assert f"{c.label()} {p}: the op as the bench calls it" in rows
            assert any(k.startswith(f"{c.label()} {p}: the op as the bench calls it, through the driver "
                                    "(GPUCNN_LAUNCH=driver; results ") for k in rows), rows.keys()
    bn = next(c for c in timed if c.op == "batchnorm").label()
    launched = [k for k in rows if k.startswith(f"{bn} backward: launch")]
    sums, data = (f"{bn} backward: launch batchnorm_backward_{k}_f32 (15 arguments)" for k in ("sums", "data"))
    how = ("", " through the driver, packed at the call", " through the driver, packed once")
    assert launched == [k + h for k in (sums, data) for h in how], launched
    for mode in script.MODES:  # the convolution passes, on both launch paths
        for name in script.CONV_ROWS:
            for p in ("forward", "backward_data", "backward_filter"):
                row = f"{name} {p} {mode}: the pass as the bench calls it"
                assert row in rows and any(k.startswith(row + ", through the driver") for k in rows), row
    assert all(us > 0 for us in rows.values())
    assert "batch_norm_stats" in prof


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_gpu_script_runs_its_python_steps(tmp_path):
    """The whole of gpu.sh with PYTHON running the stand-in (null kernels, no CUDA PyTorch: no
    peers), its device steps skipped: every other step exits 0, the JSON of each bench step comes
    back, and the targets table judges every memory-bound row of 25 MB or more and every fused row."""
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "bench" / "standin_gpu.py"}" --kernels null '
                       'python "$@"\n')
    wrapper.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(wrapper), "GPU_SH_SKIP": DEVICE_STEPS, "GPU_SH_PEERS": "",
           "GPU_SH_BOX_SCALE": "4"}  # the VM's CPU is not the H200's: the boxes are the GPU's, times 4
    run = subprocess.run(["bash", "bench/gpu.sh", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    summary = (out / "summary.txt").read_text()
    exits = dict(re.findall(r"^(\S+): exit (\d+)", summary, re.M))
    assert set(exits) == {"2b-host", "2d-host-cupy", "5a-mem", "5-bench", "5b-fused", "5c-autotune", "5d-ab",
                          "5e-ab-conv", "6-steps"}, run.stdout
    assert set(exits.values()) == {"0"}, summary
    assert all(f"{s}: skipped" in summary for s in DEVICE_STEPS.split())
    for name in ("mem", "bench", "fused", "tuned", "steps"):
        assert json.loads((out / f"{name}.json").read_text())["device"] == "cuda"
    from gpucnn.bench import cases, fused, targets
    rows = json.loads((out / "mem.json").read_text())["rows"]
    judged = sum((r["op"], r["pass"]) in targets.MEM_TARGETS and r["tensor_bytes"] >= 25e6 for r in rows)
    assert judged >= 10 and all(r["copy_ms"] > 0 and r["graph"]["ms"] > 0 and r["graph"]["copy_ms"] > 0 for r in rows)
    # the verdicts are the host's times here, not the device's: only that each target was judged
    assert re.search(rf"^mem: \d+ of {judged} pass \(\d+ of {judged} in a graph\); "
                     rf"mem, GPUCNN_LAUNCH=driver: \d+ of {judged} pass; "  # 5a's rows on our launch path too
                     rf"fused: \d+ of {len(fused.CONV_CASES) * 3} pass; "  # against the three passes, then:
                     rf"{targets.FUSED_LAYERS}: \d+ of {len(fused.CONV_CASES) * 3} pass$", summary, re.M)
    assert summary.count("of a same-size copy); in a graph ") == judged
    # step 8b: every tuned pass of step 5c, in each of its two modes, against the heuristic and the model
    tuned = json.loads((out / "tuned.json").read_text())["rows"]
    assert len(tuned) == 3 * len(cases.CONV) and all(len(r["tuning"]) == 2 for r in tuned)
    tuning_table = summary.split("8b-tuning:")[1].split("2d-host-cupy table:")[0]
    # each twice: against the heuristic that ran, then against the heuristic as the code stands (replay)
    assert sum(line.startswith(f"| {r['case']} | {r['pass']} |") for r in tuned for line in
               tuning_table.splitlines()) == 2 * 2 * len(tuned)
    assert "The heuristic as the code stands now, replayed on these timings" in tuning_table
    # step 5d: each pooling case of the suite, the pair kernels (two rows a thread, one) and the generic ones;
    # the reductions in 1 and 4 waves
    ab = summary.split("5d-ab table:")[1]
    pools = [c.label() for c in cases.MEM if c.op in ("max_pool", "avg_pool")]
    assert all(f"| {p} | forward | {v} |" in ab for p in pools for v in ("two rows", "one row", "generic")), ab
    bns = [c.label() for c in cases.MEM if c.op == "batchnorm"]
    assert all(f"| {b} | {d} | {v} |" in ab for b in bns for d in ("stats", "backward") for v in ("1 wave", "4 waves"))
    # step 5e: each pass of its cases in both modes, as built and switched
    ab_conv = summary.split("5e-ab-conv table:")[1]
    abc = sg._script("ab_conv")
    labels = [c.label() for c in cases.CONV if cases.matches(abc.CASES, c.label())]
    assert len(labels) == len(abc.CASES.split(","))
    assert all(f"| {c} | {p} | {m} | {t} | {v} |" in ab_conv for c in labels for p in abc.PASSES for m, t in abc.RUNS
               for v in ("as built", "more blocks an SM")), ab_conv
    steps = json.loads((out / "steps.json").read_text())["train"]
    assert [r["model"] for r in steps] == [m for m, *_ in cases.STEPS] and all(r["ours"]["graph"] for r in steps)


def _metrics(path):
    """metrics.jsonl's epochs without their wall-clock seconds."""
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_gpu_training_command_trains_as_the_emulator_does(tmp_path, capsys):
    """``gpucnn train --device cuda`` (data copied to the device, the step graph captured and
    replayed, the checkpoint read back from device arrays) on the stand-in, whose kernels are the
    emulator's: the same epochs, bit for bit, as ``--device emulator``; and two epochs straight
    equal one epoch, then a resume to two."""
    from gpucnn import cli
    common = ["train", "--limit", "128", "--no-progress", "--overwrite"]
    assert cli.main([*common, "--device", "emulator", "--epochs", "2", "--out", str(tmp_path / "emu")]) == 0
    with sg.gpu("emulator"):
        assert cli.main([*common, "--device", "cuda", "--epochs", "2", "--out", str(tmp_path / "gpu")]) == 0
        assert cli.main([*common, "--device", "cuda", "--epochs", "1", "--out", str(tmp_path / "resumed")]) == 0
        assert cli.main(["train", "--limit", "128", "--no-progress", "--device", "cuda", "--epochs", "2", "--resume",
                         "--out", str(tmp_path / "resumed")]) == 0
    emu = _metrics(tmp_path / "emu")
    assert len(emu) == 2 and emu[1]["train_loss"] < emu[0]["train_loss"]
    assert _metrics(tmp_path / "gpu") == emu and _metrics(tmp_path / "resumed") == emu
    assert "device cuda, epochs 2..2" in capsys.readouterr().err  # the resume's header


def test_gpu_suite_passes_on_the_stand_in():
    """gpu.sh's step 3, ``pytest -m gpu``, on the stand-in with the emulator's kernels: the "cuda"
    cases of the backend-parametrized tests run the CuPy-array paths (dispatch, results handed back
    as device arrays) that no CPU backend takes. Left out: the primitives' tests, which compile
    their own kernels with CuPy (RawModule), and a graph's pool size, which only CUDA's allocator has."""
    cmd = [sys.executable, str(ROOT / "bench" / "standin_gpu.py"), "python", "-m", "pytest", "-m", "gpu", "-q",
           "-p", "no:cacheprovider", "tests", "--deselect", "tests/test_mma_prims.py", "--deselect",
           "tests/test_wgmma_prims.py", "--deselect", "tests/test_graph.py::test_replayed_steps_equal_eager_steps_on_a_gpu"]
    run = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", run.stdout).group(1))
    assert passed >= 800  # 899 on 2026-11-29: every "cuda" case, none skipped for want of a GPU


def test_gpu_bench_with_its_default_peers(tmp_path):
    """``gpucnn bench --device cuda`` as the README gives it, every default backend that this machine
    has (our GPU modes on the emulator's kernels, then the CPU peers timed on the CPU's clock), on the
    scaled-down suite (its step rows: test_gpu_script_runs_its_python_steps): each row has every
    backend's time, and the fused rows come out."""
    from gpucnn import cli
    from gpucnn.bench import run
    with sg.gpu("emulator"):
        assert cli.main(["bench", "--device", "cuda", "--small", "--no-progress", "--only", "mnist-2,relu",
                         "--no-train", "--out", str(tmp_path)]) == 0
    (js,) = tmp_path.glob("bench-cuda-*.json")
    res = json.loads(js.read_text())
    want = [n for n in run.DEFAULT["cuda"] if run.BACKENDS[n][0] != "torch" or run._have_torch(run.BACKENDS[n][1])]
    assert res["backends"] == want and "gpucnn-numpy" in want
    assert [r["name"] for r in res["rows"]] == ["mnist-2"] * 3 + ["relu"] * 4
    for r in res["rows"]:
        assert set(r["ms"]) == set(want) and all(v > 0 for v in r["ms"].values())
        assert all(r["ratio"][p] == pytest.approx(r["ms"][want[0]] / r["ms"][p]) for p in want[1:])
    assert {f["ours"] for f in res["fused"]} >= {"gpucnn-cuda-tf32", "gpucnn-cuda-fp32"}
    # the ReLU rows and the fused ones replayed from CUDA graphs too (on the emulator's capture)
    assert all(r["graph"]["ms"] > 0 and r["graph"]["copy_ms"] > 0 for r in res["rows"] if r["kind"] == "mem")
    assert all(f["graph"]["speedup"] > 0 for f in res["fused"])


def test_cuda_clock_queues_the_first_call_before_its_start_event(monkeypatch):
    """timing.CudaClock: the first of a sample's calls is queued before the start event and
    the sample is the mean of the others (a running loop's calls, the device never waiting
    for the first one's host path); a sample of one call is that call between the events.
    The stand-in's events here read a count of the calls made, so the elapsed "ms" are calls."""
    from gpucnn.bench import timing
    log = []

    class Event:
        def record(self, stream=None):
            self.t = len([e for e in log if e != "record"])
            log.append("record")

        def synchronize(self):
            pass

    with sg.gpu("null"):
        import cupy as cp
        monkeypatch.setattr(cp.cuda, "Event", Event)
        monkeypatch.setattr(cp.cuda, "get_elapsed_time", lambda a, b: float(b.t - a.t))
        clk = timing.CudaClock(calls=4)
        assert clk.time(log.append, [(0,), (1,), (2,), (3,)]) == 1.0  # three calls over three
        assert log == [0, "record", 1, 2, 3, "record"]
        log.clear()
        assert clk.time(log.append, [(7,)]) == 1.0
        assert log == ["record", 7, "record"]


def test_graph_clock_replays_the_captured_calls():
    """timing.GraphClock (the memory rows' device time) captures a list of calls once and replays
    it: on the stand-in's emulator, each replay recomputes the captured ReLUs from what their inputs
    hold then, and the Python op is not called again; another list of calls is captured anew."""
    from gpucnn import backend
    from gpucnn.bench import timing
    x_host = np.random.default_rng(3).standard_normal((2, 3, 5, 7)).astype(np.float32)
    with sg.gpu("emulator"):
        import cupy as cp
        x, x2 = cp.asarray(x_host), cp.asarray(2 * x_host)
        outs = []

        def relu(a):
            outs.append(backend.call("relu", "relu_forward", a, 0.0))
        clk = timing.GraphClock(calls=2)
        assert clk.time(relu, [(x,), (x2,)]) > 0  # captured, then replayed once
        np.testing.assert_array_equal(outs[0].get(), np.maximum(x_host, 0))
        np.testing.assert_array_equal(outs[1].get(), np.maximum(2 * x_host, 0))
        x[...] = -x_host
        clk.time(relu, [(x,), (x2,)])
        np.testing.assert_array_equal(outs[0].get(), np.maximum(-x_host, 0))
        assert len(outs) == 2 and len(clk.graphs) == 1
        clk.time(relu, [(x2,)])
        assert len(outs) == 3 and len(clk.graphs) == 2
