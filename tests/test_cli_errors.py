"""Every user's mistake at the ``gpucnn`` command, run as a subprocess of
this tree: exit status 2, one line ``gpucnn: error: ...`` on stderr naming
the problem, no traceback, and the files of an earlier run untouched."""
from __future__ import annotations

import concurrent.futures
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_train import _fake_mnist

from gpucnn import backend, checkpoint, nn, runs, train

ROOT = Path(__file__).resolve().parent.parent
HAVE_GPU = backend.available("cuda")[0]


def _shadow(tmp: Path, module: str) -> Path:
    """The directory in which ``module`` fails to import, as if it were not installed."""
    return tmp / f"no-{module}"


def _prepare(tmp: Path, run: Path) -> None:
    """The shadow modules and the bad checkpoints that the cases use."""
    for module in ("matplotlib", "sklearn"):
        d = _shadow(tmp, module)
        d.mkdir()
        (d / f"{module}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{module}'\", "
                                        f"name='{module}')\n")
    bad = {name: tmp / name for name in ("truncated", "corrupted", "pickled", "objects", "other-net", "empty")}
    for d in bad.values():
        d.mkdir()
    ck = run / "checkpoint.npz"
    raw = ck.read_bytes()
    (bad["truncated"] / "checkpoint.npz").write_bytes(raw[: len(raw) // 2])
    mid = len(raw) // 2
    flipped = bytes(b ^ 0xFF for b in raw[mid:mid + 64])
    (bad["corrupted"] / "checkpoint.npz").write_bytes(raw[:mid] + flipped + raw[mid + 64:])
    (bad["pickled"] / "checkpoint.npz").write_bytes(pickle.dumps({"meta": "x"}))
    with open(bad["objects"] / "checkpoint.npz", "wb") as f:
        np.savez(f, meta=np.array([{"format": 1}], dtype=object))
    # The run's own record (model lenet, same data and seed) over another network's weights.
    record = checkpoint.read(ck)[1]
    other = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    meta = {k: v for k, v in record.items() if k not in ("format", "rng_states", "lr", "optimizer", "scheduler")}
    opt = nn.SGD(other, 0.1)
    sched = runs.CosineSchedule(opt, 2)
    sched.load_state_dict(record["scheduler"])
    checkpoint.save(bad["other-net"] / "checkpoint.npz", other, opt, sched, **meta)


def _snapshot(d: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def _cases(tmp: Path, run: Path, data: Path):
    """(name, argv, extra env, text the message must hold); each train case
    points --out at the finished run where it can, to show it survives.
    Paths only: ``_prepare`` makes the files."""
    t = ["train", "--dataset", "mnist", "--data-dir", str(data), "--no-progress", "--epochs", "2"]
    out = ["--out", str(run)]
    ck = run / "checkpoint.npz"
    bad = {name: tmp / name for name in ("truncated", "corrupted", "pickled", "objects", "other-net", "empty")}
    no_mpl, no_sk = _shadow(tmp, "matplotlib"), _shadow(tmp, "sklearn")
    cases = [
        ("missing data files", [*t, "--data-dir", str(tmp / "nowhere"), *out, "--overwrite"], {}, "not found"),
        ("missing cifar files", [*t, "--dataset", "cifar10", "--data-dir", str(tmp), *out, "--overwrite"], {},
         "cifar-10-batches-py"),
        ("emulator unavailable", [*t, *out, "--overwrite", "--device", "emulator"],
         {"GPUCNN_CXX": str(tmp / "no-such-compiler")}, "--device emulator is not available"),
        ("demo emulator unavailable", ["demo", "--backend", "emulator"], {"GPUCNN_CXX": str(tmp / "no-cxx")},
         "--backend emulator is not available"),
        ("plot without matplotlib", [*t, *out, "--overwrite", "--plot"], {"PYTHONPATH": no_mpl},
         'pip install "gpucnn[train]"'),
        ("digits without scikit-learn", ["train", "--out", str(tmp / "digits"), "--no-progress"],
         {"PYTHONPATH": no_sk}, 'scikit-learn, which is not installed: pip install "gpucnn[train]"'),
        ("resume without checkpoint", [*t, "--out", str(bad["empty"]), "--resume"], {}, "no checkpoint"),
        ("truncated checkpoint", [*t, "--out", str(bad["truncated"]), "--resume"], {}, "truncated or corrupted"),
        ("corrupted checkpoint", [*t, "--out", str(bad["corrupted"]), "--resume"], {}, "truncated or corrupted"),
        ("pickled checkpoint", [*t, "--out", str(bad["pickled"]), "--resume"], {}, "pickled"),
        ("checkpoint of objects", [*t, "--out", str(bad["objects"]), "--resume"], {}, "pickled"),
        ("checkpoint of another model", [*t, *out, "--resume", "--model", "vgg-small"], {},
         "--model 'lenet', not 'vgg-small'"),
        ("checkpoint of another network", [*t, "--out", str(bad["other-net"]), "--resume", "--epochs", "3"], {},
         "does not fit this model"),
        ("resume past --epochs", [*t, *out, "--resume", "--epochs", "1"], {}, "past --epochs 1"),
        ("existing run", [*t, *out], {}, "already holds a run"),
        ("resume and overwrite", [*t, *out, "--resume", "--overwrite"], {}, "not allowed with"),
        ("out is a file", [*t, "--out", str(ck)], {}, "is a file"),
        ("epochs 0", [*t, *out, "--epochs", "0"], {}, "--epochs: must be >= 1"),
        ("epochs not a number", [*t, *out, "--epochs", "two"], {}, "--epochs: expected an integer"),
        ("batch size 0", [*t, *out, "--batch-size", "0"], {}, "--batch-size: must be >= 1"),
        ("lr 0", [*t, *out, "--lr", "0"], {}, "--lr: must be > 0"),
        ("lr inf", [*t, *out, "--lr", "inf"], {}, "--lr: must be > 0"),
        ("lr nan", [*t, *out, "--lr", "nan"], {}, "--lr: must be > 0"),
        ("momentum 1", [*t, *out, "--momentum", "1"], {}, "--momentum: must be >= 0 and < 1"),
        ("momentum < 0", [*t, *out, "--momentum", "-0.5"], {}, "--momentum: must be >= 0 and < 1"),
        ("weight decay < 0", [*t, *out, "--weight-decay=-1e-4"], {}, "--weight-decay: must be >= 0"),
        ("seed < 0", [*t, *out, "--seed", "-1"], {}, "--seed: must be >= 0"),
        ("unknown model", [*t, *out, "--model", "resnet9000"], {}, "--model: invalid choice"),
        ("unknown dataset", [*t, *out, "--dataset", "imagenet"], {}, "--dataset: invalid choice"),
        ("unknown device", [*t, *out, "--device", "tpu"], {}, "--device: invalid choice"),
        ("unknown command", ["fly"], {}, "invalid choice"),
        ("bench only matches nothing", ["bench", "--device", "cpu", "--small", "--only", "zzz"], {},
         "--only 'zzz' matches no case; the cases are: mnist-1"),
        ("bench steps only matches nothing", ["bench", "--device", "cpu", "--steps-only", "--only", "vit"], {},
         "--only 'vit' matches no model of the training-step rows; the models are: lenet, vgg-small, resnet20"),
        ("bench fused only matches nothing", ["bench", "--device", "cpu", "--fused-only", "--only", "vgg"], {},
         "--only 'vgg' matches no case of the fused rows; the cases are: mnist-2"),
        ("bench steps and fused only", ["bench", "--device", "cpu", "--steps-only", "--fused-only"], {},
         "--steps-only and --fused-only exclude each other"),
        ("unknown optimizer", [*t, *out, "--optimizer", "lion"], {}, "--optimizer: invalid choice"),
        ("limit below one", [*t, *out, "--limit", "0"], {}, "--limit"),
        ("bench unknown peer", ["bench", "--device", "cpu", "--backends", "gpucnn-numpy,tf"], {},
         "unknown backend 'tf'"),
        ("bench peer unavailable", ["bench", "--device", "cpu", "--backends", "gpucnn-numpy,torch-cudnn"], {},
         "--backends torch-cudnn is not available"),
        ("bench negative budget", ["bench", "--budget", "-1"], {}, "--budget: must be > 0"),
        ("bench no threads", ["bench", "--threads", "0"], {}, "--threads: must be >= 1"),
        ("demo steps 0", ["demo", "--steps", "0"], {}, "--steps: must be >= 1"),
        ("demo lr < 0", ["demo", "--lr", "-0.1"], {}, "--lr: must be > 0"),
        ("demo unknown backend", ["demo", "--backend", "tpu"], {}, "--backend: invalid choice"),
        ("unknown GPUCNN_BACKEND", ["demo"], {"GPUCNN_BACKEND": "tpu"}, "GPUCNN_BACKEND must be one of"),
    ]
    if not HAVE_GPU:
        cases += [("device cuda unavailable", [*t, *out, "--overwrite", "--device", "cuda"], {},
                   "--device cuda is not available here"),
                  ("bench device unavailable", ["bench", "--device", "cuda"], {}, "--device cuda is not available"),
                  ("demo backend unavailable", ["demo", "--backend", "cuda"], {}, "--backend cuda is not available")]
    return cases


def _run(argv, env=None):
    full = dict(os.environ, GPUCNN_DEBUG="0")
    full.pop("GPUCNN_BACKEND", None)
    extra = dict(env or {})
    path = [str(extra.pop("PYTHONPATH"))] if "PYTHONPATH" in extra else []
    full["PYTHONPATH"] = os.pathsep.join([*path, str(ROOT)])
    full.update(extra)
    return subprocess.run([sys.executable, "-m", "gpucnn.cli", *argv], capture_output=True, text=True,
                          env=full, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished two-epoch run, its files' bytes and times, and every mistake's result."""
    tmp = tmp_path_factory.mktemp("cli")
    data = _fake_mnist((tmp / "data").mkdir() or tmp / "data", n=(24, 8))
    run = tmp / "run"
    train.fit(train.Config(dataset="mnist", data_dir=str(data), epochs=2, batch_size=8, out=str(run),
                           progress=False), log=lambda s: None)
    before = _snapshot(run)
    _prepare(tmp, run)
    cases = _cases(tmp, run, data)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        done = dict(zip([c[0] for c in cases], pool.map(lambda c: _run(c[1], c[2]), cases)))
    finished = _run(["train", "--dataset", "mnist", "--data-dir", str(data), "--epochs", "2", "--out",
                     str(run), "--resume", "--no-progress"])
    debug = [_run(["--debug", "train", "--dataset", "mnist", "--data-dir", str(tmp / "nowhere"),
                   "--out", str(tmp / "d1")]),
             _run(["train", "--dataset", "mnist", "--data-dir", str(tmp / "nowhere"), "--out", str(tmp / "d2")],
                  {"GPUCNN_DEBUG": "1"})]
    return dict(cases={c[0]: c for c in cases}, results=done, run=run, before=before,
                finished=finished, debug=debug)


# The names alone, for the parametrization (no file is made for them).
CASE_NAMES = [c[0] for c in _cases(Path("tmp"), Path("run"), Path("data"))]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_mistake_is_one_line_and_exit_status_2(world, name):
    _, argv, _, want = world["cases"][name]
    p = world["results"][name]
    lines = p.stderr.splitlines()
    assert p.returncode == 2, (argv, p.returncode, p.stderr)
    assert len(lines) == 1 and lines[0].startswith("gpucnn: error: "), p.stderr
    assert want in lines[0], lines[0]
    assert "Traceback" not in p.stderr and p.stdout == "", p.stdout


def test_no_mistake_changed_the_earlier_run(world):
    assert _snapshot(world["run"]) == world["before"]


def test_resume_of_a_finished_run_says_nothing_is_left(world):
    p = world["finished"]
    assert p.returncode == 0, p.stderr
    assert "nothing left to do" in p.stderr and p.stderr.count("\n") == 1
    assert _snapshot(world["run"]) == world["before"]


def test_debug_shows_the_traceback(world):
    for p in world["debug"]:
        assert p.returncode == 1 and "Traceback" in p.stderr and "not found" in p.stderr, p.stderr


def test_help_describes_every_option_with_its_default():
    from gpucnn import cli
    top = cli.parser()
    subs = next(a for a in top._actions if a.dest == "command").choices
    for name, p in [("gpucnn", top), *subs.items()]:
        text = p.format_help()
        for action in p._actions:
            if action.help is None:
                pytest.fail(f"{name}: {action.option_strings or action.dest} has no help")
            shown = action.nargs == 0 or action.default is None or "%(default)" in (action.help or "")
            if not shown:
                assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)
            elif action.default is None and action.option_strings:
                # No default value: the help says what leaving it out does.
                assert "default" in action.help or "every" in action.help, (name, action.dest)
