"""The benchmark harness (gpucnn.bench) on small shapes: that it measures the
right thing, not how fast anything is."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from gpucnn import cli
from gpucnn.usage import UsageError
from gpucnn import backend
from gpucnn.bench import cases, cpu_steps, fused, limits, ops, report, run, steps, timing


def _case(name, kind=cases.ConvCase):
    return next(c for c in (cases.CONV if kind is cases.ConvCase else cases.MEM) if c.name == name)


def test_conv_flops_hand_counted():
    # 2 * N * K * P * Q * C/groups * R * S, with P and Q worked out by hand.
    assert _case("mnist-1").flops() == 2 * 64 * 32 * 28 * 28 * 1 * 25 == 80_281_600
    assert _case("resnet-stem").out_hw() == (112, 112)
    assert _case("resnet-stem").flops() == 3_776_446_464
    assert _case("cifar-resnet-s2").out_hw() == (8, 8)
    assert _case("deepspeech").out_hw() == (79, 341)
    assert _case("depthwise").flops() == 2 * 16 * 256 * 56 * 56 * 9
    assert _case("dilated").out_hw() == (56, 56)
    assert _case("mnist-1").nbytes() == 4 * (64 * 28 * 28 + 32 * 25 + 64 * 32 * 28 * 28)


def test_memory_bound_bytes_hand_counted():
    relu = next(c for c in cases.MEM if c.op == "relu" and c.N == 64)
    x = 64 * 32 * 28 * 28
    assert relu.nbytes("forward") == 8 * x == 12_845_056
    assert relu.nbytes("backward") == 12 * x
    mx = next(c for c in cases.MEM if c.op == "max_pool" and c.N == 64)
    avg = next(c for c in cases.MEM if c.op == "avg_pool" and c.N == 64)
    y = x // 4
    assert mx.nbytes("forward") == mx.nbytes("backward") == 4 * (x + y) + 8 * y == 11_239_424
    assert avg.nbytes("forward") == 4 * (x + y) == 8_028_160
    assert mx.flops() == y * 4 and relu.flops() == x
    p3 = next(c for c in cases.MEM if c.k == 3)
    assert p3.out_hw() == (56, 56)
    bn = next(c for c in cases.MEM if c.op == "batchnorm" and c.N == 128)
    b = 128 * 64 * 32 * 32 * 4  # cifar-resnet's output in float32: 33.6 MB
    assert (bn.nbytes("stats"), bn.nbytes("forward"), bn.nbytes("backward")) == (b, 2 * b, 5 * b) == (
        33_554_432, 67_108_864, 167_772_160)
    bias = next(c for c in cases.MEM if c.op == "bias_grad" and c.N == 128)
    assert bias.nbytes("backward") == b and bias.flops() == b // 4 and bias.out_hw() == (32, 32)
    assert cases.passes(bn) == ("stats", "forward", "backward") and cases.passes(bias) == ("backward",)
    assert cases.passes(relu) == ("forward", "backward") == cases.passes(mx)


def test_cpu_scales_large_cases_by_batch_only():
    by_name = {}
    for case, full in cases.suite("cpu"):
        assert case.N <= full and case.N >= 1
        assert case.with_batch(full) in cases.CONV + cases.MEM
        by_name.setdefault(case.name, case)
    assert by_name["mnist-1"].N == 64  # small cases keep their batch
    assert by_name["resnet-stem"].N < 16
    assert by_name["resnet-stem"].flops() <= cases.CPU_FLOPS
    assert [c for c, _ in cases.suite("cuda")] == cases.CONV + cases.MEM


class FakeClock:
    """Each call "takes" the time its fn returns; a sample of ``calls`` calls
    their mean, as timing.CudaClock's back-to-back calls."""

    def __init__(self, calls=1):
        self.log, self.calls = [], calls

    def sync(self):
        pass

    def time(self, fn, arg_list):
        return sum(fn(*args) for args in arg_list) / len(arg_list)


def test_interleaved_alternates_rotates_and_takes_medians():
    clk = FakeClock()
    seen = []

    def make(name, times):
        it = iter(times)

        def fn(i):
            seen.append((name, i))
            return next(it)
        return fn

    a = make("a", [0, 0, 100] + [1, 2, 9, 3, 4])   # 2 warm-ups, first timing, 5 reps
    b = make("b", [0, 0, 100] + [5, 5, 5, 7, 1])
    res = timing.interleaved(clk, {"a": (a, [(0,), (1,)]), "b": (b, [(0,), (1,)])}, warmup=2, reps=5)
    # Quartiles as statistics.quantiles' default: sorted a = 1 2 3 4 9, positions 1.5 and 4.5.
    assert res == {"a": {"ms": 3, "q1": 1.5, "q3": 6.5, "samples": 5}, "b": {"ms": 5, "q1": 3.0, "q3": 6.0, "samples": 5}}
    timed = seen[6:]
    assert [n for n, _ in timed] == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]
    assert [i for n, i in timed if n == "a"] == [0, 1, 0, 1, 0]


def test_a_sample_of_several_calls_cycles_the_input_copies():
    """A clock of 2 calls a sample (the GPU's back-to-back calls) averages
    them, walks the 3 input copies in turn, and counts both calls in the
    budget (a 2 ms first call, 2 calls a sample: 4 ms a repetition, 6 in 24 ms)."""
    seen = []

    def fn(i):
        seen.append(i)
        return [2, 4, 9][i]
    res = timing.interleaved(FakeClock(calls=2), {"a": (fn, [(0,), (1,), (2,)])}, warmup=1, reps=3)
    assert seen[2:] == [0, 1, 2, 0, 1, 2]  # after a warm-up and the single-call first timing
    assert res["a"]["ms"] == 5.5 and res["a"]["samples"] == 3  # samples (2+4)/2, (9+2)/2, (4+9)/2
    seen.clear()
    # budget 0.024 s over a 2 ms first call times 2 calls: 6 repetitions
    assert timing.interleaved(FakeClock(calls=2), {"a": (fn, [(0,)])}, warmup=0, budget_s=0.024,
                              min_reps=1)["a"]["samples"] == 6


@pytest.mark.parametrize("case", [c for c, _ in cases.suite("cpu", small=True)], ids=lambda c: c.label())
def test_peers_compute_the_same_thing(case):
    torch = pytest.importorskip("torch")
    for d in cases.passes(case):
        f, ins = ops.build(case, d, "gpucnn")
        g, tins = ops.build(case, d, "torch")
        ours, theirs = f(*ins[0]), g(*tins[0])
        ours = ours if isinstance(ours, tuple) else (ours,)
        theirs = [t for t in (theirs if isinstance(theirs, (tuple, list)) else (theirs,)) if t is not None]
        for o, t in zip(ours, theirs):
            np.testing.assert_allclose(o, t.numpy() if isinstance(t, torch.Tensor) else t,
                                       rtol=1e-4, atol=1e-4, err_msg=f"{case.label()} {d}")


def test_inputs_are_drawn_once_a_case_and_never_shared():
    """ops.build draws a case's input sets once for all its passes and backends: each backend gets
    the same values in arrays of its own (PyTorch updates batch norm's running statistics in
    place), and the copies of a case differ from one another."""
    torch = pytest.importorskip("torch")
    case = next(c for c, _ in cases.suite("cpu", small=True) if getattr(c, "op", None) == "batchnorm")
    ops._host_sets.cache_clear()
    _, ours = ops.build(case, "stats", "gpucnn", "cpu", copies=2)
    _, back = ops.build(case, "backward", "gpucnn", "cpu", copies=2)
    _, theirs = ops.build(case, "stats", "torch", "cpu", copies=2)
    info = ops._host_sets.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    for k in ours[0][0]:
        np.testing.assert_array_equal(ours[0][0][k], back[0][0][k])
        np.testing.assert_array_equal(ours[0][0][k], theirs[0][0][k].numpy())
    assert not np.array_equal(ours[0][0]["x"], ours[1][0]["x"])
    theirs[0][0]["running_mean"] += 1
    ours[0][0]["x"][...] = 0
    assert not ours[0][0]["running_mean"].any() and back[0][0]["x"].any()
    assert not torch.equal(theirs[0][0]["running_mean"], torch.from_numpy(back[0][0]["running_mean"]))


def test_cpu_run_end_to_end(tmp_path):
    res = run.run("cpu", small=True, only="mnist-2", train=False, progress=False)
    assert res["schema"] == run.SCHEMA and res["device"] == "cpu"
    for key in ("date", "machine", "versions", "threads", "limits", "rows", "geomean_ratio", "backends"):
        assert key in res
    assert res["versions"]["numpy"] == np.__version__
    assert res["threads"]["gpucnn"] >= 1
    assert res["limits"]["copy_gbps"] > 0 and res["limits"]["matmul_gflops"] > 0
    assert [r["pass"] for r in res["rows"]] == list(cases.PASSES["conv"])
    names = res["backends"]
    for r in res["rows"]:
        assert set(r["ms"]) == set(names) and set(r["ratio"]) == set(names[1:])
        ms = r["ms"][names[0]]
        assert r["gflops"] == pytest.approx(r["flops"] / ms / 1e6)
        assert r["fraction_of_limit"] == pytest.approx(r["gflops"] / res["limits"]["matmul_gflops"])
        for p in names[1:]:
            assert r["ratio"][p] == pytest.approx(ms / r["ms"][p])
        assert r["batch"] == 1 and r["full_batch"] == 64
    assert [(f["name"], f["ours"]) for f in res["fused"]] == [("mnist-2", names[0])]  # the fused rows --only picks
    paths = report.save(res, tmp_path)
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(res))
    assert "1 of 64" in paths["table"].read_text()
    pytest.importorskip("matplotlib")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_memory_rows_time_a_copy_of_their_tensor():
    """A memory-bound row carries a copy of its input tensor timed in the same loop: its time, its
    rate (bytes read and written) and the row's rate over it; the copy is no backend (no ratio)."""
    res = run.run("cpu", small=True, only="relu", train=False, with_fused=False, progress=False)
    assert [r["op"] for r in res["rows"]] == ["relu"] * 4
    for r in res["rows"]:
        assert r["copy_ms"] > 0 and run.COPY not in r["ms"] and run.COPY not in r["ratio"]
        assert r["copy_gbps"] == pytest.approx(2 * r["tensor_bytes"] / r["copy_ms"] / 1e6)
        assert r["fraction_of_same_copy"] == pytest.approx(r["gbps"] / r["copy_gbps"])
    assert f"% ({100 * res['rows'][0]['fraction_of_same_copy']:.0f}%) |" in report.table(res)


def test_copier_copies():
    (dst, src), = limits.copy_pairs("cpu", 4 * 1000, 1)
    src[:] = np.arange(1000, dtype=np.float32)
    limits.copier("cpu")(dst, src)
    np.testing.assert_array_equal(dst, src)


def test_geomeans():
    rows = [{"kind": "conv", "op": "conv", "pass": "forward", "ratio": {"p": r}} for r in (2.0, 8.0)]
    assert run.geomeans(rows, ["ours", "p"]) == {"conv forward": {"p": pytest.approx(4.0)}}


def _models(rows):
    return list(dict.fromkeys(r["model"] for r in rows))


def test_training_step_rows():
    have_torch = run._have_torch("cpu")
    rows = steps.run_steps("cpu", small=True, budget_s=0.01, clk=timing.CpuClock(), have_torch=have_torch)
    assert _models(rows) == [m for m, *_ in cases.STEPS]
    ran = [r for r in rows if "error" not in r]
    assert {r["model"] for r in ran} >= {"lenet", "vgg-small"}
    counts = [t for t in (1, 2) if t <= cpu_steps.cores()]
    for r in ran:
        ours = r["ours"]
        assert ours["images_per_s"] == pytest.approx(r["batch"] / ours["ms"] * 1e3)
        assert ours["q1"] <= ours["ms"] <= ours["q3"]
        assert ours["graph"] is False and ours["peak_bytes"] is None  # the NumPy backend: eager, no device
        assert set(r["results"]) == ({"torch-cpu"} if have_torch else set())
        for p, e in r["results"].items():
            assert r["ratio"][p] == pytest.approx(ours["images_per_s"] / e["images_per_s"])
        # One row a thread count, quiet only in a --small run, each against its model's 1-thread step.
        same = [q for q in ran if q["model"] == r["model"]]
        assert [q["threads"] for q in same] == counts and not any(q["busy"] for q in same)
        assert r["vs_one_thread"] == pytest.approx(ours["ms"] / same[0]["ours"]["ms"])
    text = "\n".join(report.step_table(rows, "gpucnn-numpy"))
    assert "| lenet | 1x8x8 | 4 | 1 | no |" in text


def test_busy_core_starts_and_stops_its_process():
    with cpu_steps.busy_core() as pid:
        os.kill(pid, 0)  # running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_step_threads_flag():
    args = cli.parser().parse_args(["bench", "--step-threads", "1,2", "--no-busy"])
    assert args.step_threads == [1, 2] and args.busy is False
    with pytest.raises(UsageError, match="step-threads"):
        cli.parser().parse_args(["bench", "--step-threads", "1,0"])


def test_only_keeps_any_of_its_comma_separated_parts():
    mem = [c.label() for c, _ in cases.suite("cuda", only="relu,pool,batchnorm,bias_grad")]
    assert mem == [c.label() for c in cases.MEM]
    conv = [c.name for c, _ in cases.suite("cuda", only=",".join(c.name for c in cases.CONV))]
    assert conv == [c.name for c in cases.CONV]
    assert [c.name for c, _ in cases.suite("cuda", only="mnist-1,vgg")] == ["mnist-1", "vgg"]
    assert [m for m, *_ in steps.models("lenet,resnet20")] == ["lenet", "resnet20"]
    assert cases.matches(None, "anything") and not cases.matches("pool,vgg", "relu 1x2x3x4")


def test_step_rows_only(tmp_path, capsys):
    assert cli.main(["bench", "--device", "cpu", "--small", "--steps-only", "--backends", "gpucnn-numpy",
                     "--no-progress", "--out", str(tmp_path)]) == 0
    (js,) = tmp_path.glob("bench-cpu-steps-*.json")
    res = json.loads(js.read_text())
    assert res["rows"] == [] and _models(res["train"]) == [m for m, *_ in cases.STEPS]
    assert "training step" in capsys.readouterr().out
    assert cli.main(["bench", "--device", "cpu", "--small", "--steps-only", "--only", "lenet", "--backends",
                     "gpucnn-numpy", "--no-progress", "--out", str(tmp_path / "one")]) == 0
    (js,) = (tmp_path / "one").glob("bench-cpu-steps-*.json")
    assert _models(json.loads(js.read_text())["train"]) == ["lenet"]


def test_cli_bench_writes_json_and_table(tmp_path, capsys):
    assert cli.main(["bench", "--device", "cpu", "--small", "--only", "relu", "--no-train",
                     "--backends", "gpucnn-numpy", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "relu" in out and "GB/s" in out
    (js,) = tmp_path.glob("bench-cpu-*.json")
    res = json.loads(js.read_text())
    assert {r["op"] for r in res["rows"]} == {"relu"} and res["backends"] == ["gpucnn-numpy"]
    # the input's size, on which the issue's bandwidth targets are stated: ReLU moves it twice forward, thrice backward
    assert [r["bytes"] // r["tensor_bytes"] for r in res["rows"]] == [2, 3] * (len(res["rows"]) // 2)


def test_cli_bench_streams_rows_as_they_are_timed(tmp_path, monkeypatch):
    """partial.jsonl holds each row as soon as it is timed (a run cut short, as by a lent GPU's
    time-box, keeps them), and goes once the run's JSON is written."""
    from gpucnn.bench import report
    save, streamed = report.save, []

    def spy(res, out):  # what partial.jsonl holds when the run is over, before its JSON
        streamed.append([json.loads(line) for line in (Path(out) / "partial.jsonl").read_text().splitlines()])
        return save(res, out)
    monkeypatch.setattr(report, "save", spy)
    assert cli.main(["bench", "--device", "cpu", "--small", "--only", "relu", "--no-train", "--no-fused",
                     "--backends", "gpucnn-numpy", "--no-progress", "--out", str(tmp_path)]) == 0
    (js,) = tmp_path.glob("bench-cpu-2*.json")
    res = json.loads(js.read_text())
    assert [r["section"] for r in streamed[0]] == ["rows"] * len(res["rows"]) and res["rows"]
    assert [{k: v for k, v in r.items() if k not in ("section", "device")} for r in streamed[0]] == res["rows"]
    assert {r["device"] for r in streamed[0]} == {"cpu"}
    assert not (tmp_path / "partial.jsonl").exists()


@pytest.mark.parametrize("name", [m for m, *_ in cases.STEPS])
def test_torch_model_is_the_same_network(name):
    """The PyTorch side of the step rows computes what the gpucnn model computes."""
    torch = pytest.importorskip("torch")
    from gpucnn.bench import torch_models
    from gpucnn.nn import MODELS
    if name not in MODELS:
        pytest.skip(f"{name} is not in gpucnn.nn.MODELS yet")
    shape = (1, 12, 12) if name == "lenet" else (3, 12, 12)
    model = MODELS[name](shape, 10, rng=np.random.default_rng(0), dtype=np.float64).eval()
    net = torch_models.from_gpucnn(model).eval()
    x = np.random.default_rng(1).standard_normal((2, *shape))
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x), want, rtol=1e-10, atol=1e-12)
    assert sum(p.numel() for p in net.parameters()) == sum(v.size for v in model.params().values())


def test_math_mode_rows_and_geomeans():
    """Each mode against its peer and ceiling; the geometric means the issue's targets read."""
    from gpucnn.bench import modes
    lim = {"matmul_gflops": 50_000.0, "tf32_matmul_gflops": 400_000.0, "copy_gbps": 4000.0}
    ms = {"gpucnn-cuda-3xtf32": 2.0, "torch-cudnn": 4.0, "torch-cudnn-tf32": 1.0, "gpucnn-cuda-tf32": 1.5,
          "gpucnn-cuda-fp32": 6.0}
    rows = [{"case": f"c{i}", "pass": "forward", "flops": 2e9, "ms": {k: v * (i + 1) for k, v in ms.items()}}
            for i in range(2)]
    for r in rows:
        r["modes"] = modes.row_modes(r, lim)
    m = rows[0]["modes"]
    assert m["tf32"]["ratio"] == 1.5 and m["3xtf32"]["ratio"] == 0.5 and m["fp32"]["ratio"] == 1.5
    assert abs(m["tf32"]["tflops"] - 2e9 / 1.5e-3 / 1e12) < 1e-9
    assert abs(m["3xtf32"]["of_ceiling"] - 2e9 / 2e-3 / 1e9 / 50_000) < 1e-12
    g = modes.geomeans(rows)
    assert abs(g["tf32"] - 1.5) < 1e-12 and abs(g["3xtf32"] - 0.5) < 1e-12
    text = "\n".join(modes.table({"rows": rows, "limits": lim, "mode_geomeans": g}))
    assert "tf32 1.50 (<= 1.5)" in text and "3xtf32 0.50 (<= 1.0)" in text
    assert modes.row_modes({"flops": 1.0, "ms": {"gpucnn-cuda": 1.0}}, lim) == {}


def test_cli_bench_algo_argument(tmp_path, monkeypatch):
    """--algo forces the convolution algorithm for the run (checked before any timing)."""
    from gpucnn.cuda import algo
    seen = []
    monkeypatch.setattr("gpucnn.bench.run.run", lambda *a, **k: seen.append(algo._forced()) or {})
    monkeypatch.setattr("gpucnn.bench.report.save", lambda res, out: {"json": "j", "table": "t", "png": None})
    monkeypatch.setattr("gpucnn.bench.report.table", lambda res: "")
    assert cli.main(["bench", "--device", "cpu", "--algo", "gemm:2", "--no-progress"]) == 0
    assert seen == [("gemm", 2, None, False)] and algo._forced() is None
    with pytest.raises(ValueError, match="GPUCNN_CONV_ALGO"):
        cli.main(["bench", "--device", "cpu", "--algo", "winograd", "--no-progress"])


def test_fused_suite_and_pairs():
    """mnist-2 and cifar-resnet, batch norm on cifar-resnet's output (>= 25 MB), each mode against its peer."""
    gpu = fused.suite("cuda")
    assert [c.name for c, _ in gpu] == ["mnist-2", "cifar-resnet", "batchnorm"]
    conv, bn = gpu[1][0], gpu[2][0]
    assert (bn.N, bn.C, bn.H, bn.W) == (conv.N, conv.K, *conv.out_hw()) == (128, 64, 32, 32)
    assert 4 * 128 * 64 * 32 * 32 >= 25e6
    assert [c.N for c, _ in fused.suite("cpu")] == [cases.cpu_batch(c) for c, _ in gpu]
    ours, peers = ["gpucnn-cuda-tf32", "gpucnn-cuda-3xtf32"], ["torch-cudnn", "torch-cudnn-tf32"]
    assert fused.plan(conv, ours, peers) == {"gpucnn-cuda-tf32": "torch-cudnn-tf32",
                                             "gpucnn-cuda-3xtf32": "torch-cudnn"}
    assert fused.plan(bn, ours, peers) == {"gpucnn-cuda-tf32": "torch-cudnn"}  # no math mode in batch norm
    assert fused.plan(conv, ["gpucnn-numpy"], []) == {"gpucnn-numpy": None}


@pytest.mark.parametrize("name", ["numpy", "emulator"])
@pytest.mark.parametrize("case", [c for c, _ in fused.suite("cpu", small=True)], ids=lambda c: c.label())
def test_fused_functions_compute_what_they_claim(case, name):
    """Fused equals separate and the three passes bit for bit (fused.py's promise), all equal
    the NumPy reference's and PyTorch's unfused pair, which the rows time as the peer."""
    torch = pytest.importorskip("torch")
    if not backend.available(name)[0]:
        pytest.skip(f"{name}: {backend.available(name)[1]}")
    a = fused.arrays(case, np.random.default_rng(0))
    fns = fused.functions(case)
    assert tuple(fns) == fused.sides(case) == (fused.SIDES if case.kind == "conv" else fused.SIDES[:2])

    def on(b):
        with backend.use_backend(b):
            return [f(a) for f in fns.values()]
    (got_f, *others), (ref, *_) = on(name), on("numpy")
    want = ops.no_grad(fused.torch_function(case))({k: torch.from_numpy(v.copy()) for k, v in a.items()}).numpy()
    for other in others:  # separate, and a convolution's three passes (its bias pass adds b exactly)
        np.testing.assert_array_equal(got_f, other)
    np.testing.assert_allclose(got_f, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_f, want, rtol=1e-4, atol=1e-4)
    assert 0 < (want > 0).mean() < 1  # the ReLU had something to clip


def test_fused_runs_of_each_mode_and_peer():
    """Every run a GPU's rows would interleave (each mode fused and separate, each peer), on the CPU's arrays."""
    pytest.importorskip("torch")
    case = next(c for c, _ in fused.suite("cpu", small=True) if c.name == "cifar-resnet")
    chosen = fused.plan(case, ["gpucnn-cuda-tf32", "gpucnn-cuda-3xtf32"], ["torch-cudnn", "torch-cudnn-tf32"])
    runs = fused.runs(case, chosen, "cpu", copies=2)
    assert list(runs) == ["gpucnn-cuda-tf32 fused", "gpucnn-cuda-tf32 separate", "gpucnn-cuda-tf32 three passes",
                          "gpucnn-cuda-3xtf32 fused", "gpucnn-cuda-3xtf32 separate", "gpucnn-cuda-3xtf32 three passes",
                          "torch-cudnn-tf32", "torch-cudnn"]
    outs = {k: fn(*inputs[1]) for k, (fn, inputs) in runs.items() if len(inputs) == 2}
    want = outs.pop("torch-cudnn").numpy()
    for k, y in outs.items():
        np.testing.assert_allclose(y if isinstance(y, np.ndarray) else y.numpy(), want, rtol=1e-4, atol=1e-4,
                                   err_msg=k)
    assert len(outs) == 7


def test_fused_only_from_the_cli(tmp_path, capsys):
    out = tmp_path / "all"
    assert cli.main(["bench", "--device", "cpu", "--small", "--fused-only", "--no-progress", "--out", str(out)]) == 0
    (js,) = out.glob("bench-cpu-fused-*.json")
    res = json.loads(js.read_text())
    assert res["rows"] == [] and res["train"] == [] and res["fused_only"]
    assert [(r["op"], r["name"]) for r in res["fused"]] == [
        ("conv2d_bias_relu", "mnist-2"), ("conv2d_bias_relu", "cifar-resnet"), ("batch_norm2d_relu", "batchnorm")]
    for r in res["fused"]:
        assert r["ours"] == "gpucnn-numpy" and r["speedup"] == pytest.approx(r["separate_ms"] / r["fused_ms"])
        if r["op"] == "conv2d_bias_relu":
            assert r["speedup_three"] == pytest.approx(r["three_ms"] / r["fused_ms"])
        else:
            assert "three_ms" not in r
        if r["peer"]:
            assert r["peer"] == "torch-cpu" and r["vs_peer"] == pytest.approx(r["fused_ms"] / r["peer_ms"])
    text = capsys.readouterr().out
    assert "| conv2d_bias_relu | mnist-2 1x8x14x14 K8 5x5/1 p2 | 1 of 64 | gpucnn-numpy |" in text
    assert "batch_norm2d_relu: fused 3" not in text and "the NumPy backend" in text  # the CPU's pass count
    assert cli.main(["bench", "--device", "cpu", "--small", "--fused-only", "--only", "batchnorm", "--backends",
                     "gpucnn-numpy", "--no-progress", "--out", str(tmp_path / "bn")]) == 0
    (js,) = (tmp_path / "bn").glob("bench-cpu-fused-*.json")
    (r,) = json.loads(js.read_text())["fused"]
    assert r["op"] == "batch_norm2d_relu" and r["peer"] is None
    assert "| batch_norm2d_relu | batchnorm 1x4x16x24 | 1 of 128 | gpucnn-numpy |" in capsys.readouterr().out


def test_fused_table_on_a_gpu_run():
    """The CUDA pass counts and a mode's row, from a result a GPU run would write."""
    row = {"case": "mnist-2 64x32x14x14 K64 5x5/1 p2", "op": "conv2d_bias_relu", "ours": "gpucnn-cuda-tf32",
           "batch": 64, "full_batch": 64, "output_bytes": 3_211_264, "fused_ms": 0.05, "separate_ms": 0.08,
           "speedup": 1.6, "peer": "torch-cudnn-tf32", "peer_ms": 0.04, "vs_peer": 1.25}
    text = "\n".join(fused.table({"device": "cuda", "fused": [row]}))
    assert ("| conv2d_bias_relu | mnist-2 64x32x14x14 K64 5x5/1 p2 | 64 | gpucnn-cuda-tf32 | 0.050 | 0.080 | 1.60 "
            "| - | - | torch-cudnn-tf32 | 0.040 | 1.25 |") in text  # a row before the three passes were timed
    assert "conv2d_bias_relu: fused 1" in text and "separate 3" in text and "3.21 MB" in text
    assert fused.table({"device": "cuda", "fused": []}) == []
    # with the calls replayed from CUDA graphs: three more columns; a capture that failed, named
    row = {**row, "three_ms": 0.1, "speedup_three": 2.0}
    graph = {**row, "graph": {"fused_ms": 0.03, "separate_ms": 0.045, "speedup": 1.5, "three_ms": 0.054,
                              "speedup_three": 1.8}}
    failed = {**row, "ours": "gpucnn-cuda-fp32", "graph": {"why": "CaptureError: x"}}
    text = "\n".join(fused.table({"device": "cuda", "fused": [graph, failed]}))
    assert ("| gpucnn-cuda-tf32 | 0.050 | 0.080 | 1.60 | 0.100 | 2.00 | 0.030 | 0.045 | 1.50 | 1.80 | torch-cudnn-tf32 "
            "| 0.040 | 1.25 |") in text
    assert "| gpucnn-cuda-fp32 | 0.050 | 0.080 | 1.60 | 0.100 | 2.00 | - | - | - | - | torch-cudnn-tf32 |" in text
    assert "three passes 5" in text
    assert "- mnist-2 64x32x14x14 K64 5x5/1 p2 gpucnn-cuda-fp32: no graph: CaptureError: x" in text


def test_issue_targets_read_off_a_gpu_run(tmp_path, capsys):
    """gpucnn.bench.targets: each conv pass against cuDNN in its own mode (<= 3), the memory-bound
    rows on tensors of 25 MB or more against the copy bandwidth (85%, the reductions 70%), the
    fused rows (>= 1.2); a CPU run's rows, a scaled-down case and a small tensor are not judged."""
    from gpucnn.bench import targets
    conv = {"kind": "conv", "case": "vgg", "pass": "forward", "batch": 16, "full_batch": 16,
            "ms": {"gpucnn-cuda-3xtf32": 2.0, "torch-cudnn": 1.0, "gpucnn-cuda-tf32": 1.6, "torch-cudnn-tf32": 0.5},
            "algo": {"gpucnn-cuda-tf32": "gemm 128x128x32 wgmma"}}

    def mem(op, pass_, frac, nbytes, batch=32):
        return {"kind": "mem", "op": op, "case": f"{op} x", "pass": pass_, "batch": batch, "full_batch": 32,
                "fraction_of_limit": frac, "tensor_bytes": nbytes, "ms": {"gpucnn-cuda": 1.0, "torch-cudnn": 0.9}}
    rows = [conv, {**mem("relu", "forward", 0.90, 102.8e6), "fraction_of_same_copy": 0.95,
                   "graph": {"ms": 0.9, "fraction_of_limit": 0.97, "fraction_of_same_copy": 0.99}},
            mem("batchnorm", "stats", 0.69, 33.6e6),
            mem("batchnorm", "forward", 0.84, 33.6e6), mem("bias_grad", "backward", 0.71, 33.6e6),
            mem("relu", "forward", 0.30, 6.4e6), mem("max_pool", "backward", 0.5, 102.8e6),
            mem("relu", "backward", 0.2, 102.8e6, batch=4)]
    fused_rows = [{"op": "conv2d_bias_relu", "name": "mnist-2", "case": "mnist-2 x", "ours": "gpucnn-cuda-3xtf32",
                   "speedup": 1.19, "speedup_three": 1.25, "batch": 64, "full_batch": 64},
                  # a run before session 28: no three passes timed, its row against our unfused layers only
                  {"op": "conv2d_bias_relu", "name": "cifar-resnet", "case": "cifar-resnet x", "ours": "gpucnn-cuda-tf32",
                   "speedup": 1.4, "batch": 128, "full_batch": 128},
                  {"op": "batch_norm2d_relu", "name": "batchnorm", "case": "bn", "ours": "gpucnn-cuda", "speedup": 2.0,
                   "batch": 128, "full_batch": 128}]
    res = {"device": "cuda", "ours": "gpucnn-cuda", "rows": rows, "fused": fused_rows}
    got = [(v["kind"], v["case"], v["pass"], v["mode"], v["ok"]) for v in targets.verdicts(res)]
    assert got == [("conv", "vgg", "forward", "tf32", False), ("conv", "vgg", "forward", "3xtf32", True),
                   ("mem", "relu x", "forward", "gpucnn-cuda", True), ("mem", "batchnorm x", "stats", "gpucnn-cuda", False),
                   ("mem", "batchnorm x", "forward", "gpucnn-cuda", False), ("mem", "bias_grad x", "backward", "gpucnn-cuda", True),
                   ("fused", "mnist-2 x", "forward", "3xtf32", True),
                   (targets.FUSED_LAYERS, "mnist-2 x", "forward", "3xtf32", False),
                   (targets.FUSED_LAYERS, "cifar-resnet x", "forward", "tf32", True)]
    lines = targets.table(targets.verdicts(res))
    assert "| conv | vgg | forward | tf32 | gemm 128x128x32 wgmma | 3.20 | 3.00 | FAIL |" in lines
    assert "| mem | batchnorm x | stats | gpucnn-cuda | - | 69% | 70% | FAIL |" in lines
    assert ("| mem | relu x | forward | gpucnn-cuda | - | 90% (95% of a same-size copy); in a graph 97% (99%) | "
            "85% | pass |") in lines
    assert "| fused | mnist-2 x | forward | 3xtf32 | - | 1.25 | 1.20 | pass |" in lines
    assert "| fused, against our unfused layers | mnist-2 x | forward | 3xtf32 | - | 1.19 | 1.20 | FAIL |" in lines
    assert lines[-1] == ("conv: 1 of 2 pass; mem: 2 of 4 pass (1 of 1 in a graph); fused: 1 of 1 pass; "
                         "fused, against our unfused layers: 1 of 2 pass")
    assert targets.verdicts({**res, "device": "cpu"}) == [] and targets.table([]) == []
    path = tmp_path / "run.json"
    path.write_text(json.dumps(res))
    assert targets.main([str(path), str(tmp_path / "none.json")]) == 0
    out = capsys.readouterr().out
    assert "mem: 2 of 4 pass" in out and "not found (a step that wrote nothing): " + str(tmp_path / "none.json") in out
    # a run cut short: the rows its partial.jsonl kept
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(json.dumps({"section": "rows", "device": "cuda", **r}) + "\n" for r in rows[:2]))
    assert [v["kind"] for v in targets.verdicts(targets.load(str(partial)))] == ["conv", "conv", "mem"]


def test_memory_targets_on_our_launch_path_are_counted_apart():
    """A memory row timed on our launch path too (gpucnn-cuda-driver, gpu.sh's 5a): the verdict
    stays on the run's first backend; the row again at its fraction scaled by the two times,
    under its own kind and count."""
    from gpucnn.bench import targets
    row = {"kind": "mem", "op": "batchnorm", "case": "batchnorm x", "pass": "forward", "batch": 128,
           "full_batch": 128, "fraction_of_limit": 0.60, "fraction_of_same_copy": 0.70, "tensor_bytes": 33.6e6,
           "ms": {"gpucnn-cuda": 0.030, "gpucnn-cuda-driver": 0.020, "torch-cudnn": 0.025},
           "graph": {"ms": 0.018, "fraction_of_limit": 0.95, "fraction_of_same_copy": 0.97}}
    found = targets.verdicts({"device": "cuda", "rows": [row]})
    assert [(v["kind"], v["mode"], v["ok"]) for v in found] == [
        ("mem", "gpucnn-cuda", False), ("mem, GPUCNN_LAUNCH=driver", "gpucnn-cuda-driver", True)]
    assert found[1]["value"] == pytest.approx(0.90) and found[1]["same_copy"] == pytest.approx(1.05)
    lines = targets.table(found)
    assert ("| mem, GPUCNN_LAUNCH=driver | batchnorm x | forward | gpucnn-cuda-driver | - | 90% (105% of a same-size "
            "copy) | 85% | pass |") in lines
    assert lines[-1] == "mem: 0 of 1 pass (1 of 1 in a graph); mem, GPUCNN_LAUNCH=driver: 1 of 1 pass"


def test_gpu_script_fits_its_time_box():
    """bench/gpu.sh, run in one call on a lent GPU, must end within 9 minutes (540 s of steps,
    leaving the rest of the device time for one rerun): its steps' time-outs, the targets'
    included, add up to at most that, and bash parses it."""
    import re
    import shutil
    import subprocess
    script = Path(__file__).resolve().parent.parent / "bench" / "gpu.sh"
    text = script.read_text()
    steps = [int(s) for s in re.findall(r"^step \S+ (\d+) ", text, re.M)]
    extra = [int(s) for s in re.findall(r"^timeout (\d+) ", text, re.M)]
    assert len(steps) >= 10 and sum(steps) + sum(extra) <= 540, (steps, extra)
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_gpu_rows_name_the_algorithm_each_mode_ran(monkeypatch):
    """A GPU run's conv rows say which algorithm each of our modes ran: the heuristic's (the
    model's table, bench/results/predicted-h200.md), or the one autotuning kept."""
    from gpucnn.bench import model
    from gpucnn.cuda import algo, autotune, tc
    case = next(c for c in cases.CONV if c.name == "cifar-resnet")
    names = ["gpucnn-cuda-3xtf32", "torch-cudnn", "gpucnn-cuda-tf32", "gpucnn-cuda-fp32"]
    got = run.chosen(case, "forward", names, (90, 132))
    assert got == {"gpucnn-cuda-3xtf32": "halowg", "gpucnn-cuda-tf32": "halowg", "gpucnn-cuda-fp32": "wino"}
    g = model.geometry(case)
    with algo.override("gemm64"), tc.force_tile(64):
        forced = algo.choose(g, "forward", np.float32, "tf32", 132, 90)
    monkeypatch.setattr(autotune, "_cache", {("cuda", 90, 132, g, "forward", "<f4", "tf32"): forced})
    assert run.chosen(case, "forward", names, (90, 132))["gpucnn-cuda-tf32"] == "gemm 64x64x32"
    assert run.chosen(case, "forward", names, (90, 132))["gpucnn-cuda-3xtf32"] == "halowg"
