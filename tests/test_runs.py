"""The run directory of ``gpucnn train``: --overwrite, extending a finished
run without a jump in the learning rate, and the compile notice on the
progress line."""
from __future__ import annotations

import io
import json
import math
import re

import pytest
from test_train import _fake_mnist, crash_fit

from gpucnn import runs, train
from gpucnn.runtime import loader
from gpucnn.usage import UsageError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return _fake_mnist(d, n=(16, 8))


def _cfg(data, out, **kw):
    return train.Config(**{**dict(dataset="mnist", data_dir=str(data), epochs=2, batch_size=8, lr=0.08,
                                  out=str(out), progress=False), **kw})


def _lrs(out):
    return [json.loads(ln)["lr"] for ln in (out / "metrics.jsonl").read_text().splitlines()]


def test_extending_a_finished_run_continues_the_learning_rate(data, tmp_path):
    out = tmp_path / "run"
    train.fit(_cfg(data, out, epochs=3), log=lambda s: None)
    train.fit(_cfg(data, out, epochs=6, resume=True), log=lambda s: None)
    lrs = _lrs(out)
    cos = [0.08 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]
    last = cos[-1]
    added = [last * (1 + math.cos(math.pi * i / 4)) / 2 for i in (1, 2, 3)]
    assert lrs == pytest.approx(cos + added, rel=1e-12)
    # No jump: every added epoch's rate is below the one before, and above zero.
    assert all(a > b > 0 for a, b in zip(lrs[2:], lrs[3:]))


def test_resuming_an_extension_follows_its_plan(data, tmp_path, monkeypatch):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    for out in (whole, cut):
        train.fit(_cfg(data, out), log=lambda s: None)
    train.fit(_cfg(data, whole, epochs=4, resume=True), log=lambda s: None)
    # Epoch 3 trains and evaluates, then epoch 4 crashes as it starts.
    crash_fit(monkeypatch, _cfg(data, cut, epochs=4, resume=True), 3)
    train.fit(_cfg(data, cut, epochs=4, resume=True), log=lambda s: None)
    assert _lrs(cut) == _lrs(whole)


def test_overwrite_replaces_the_run(data, tmp_path):
    out = tmp_path / "run"
    train.fit(_cfg(data, out), log=lambda s: None)
    (out / "metrics.png").write_bytes(b"an old plot")
    with pytest.raises(UsageError, match="already holds a run"):
        train.fit(_cfg(data, out, epochs=1), log=lambda s: None)
    train.fit(_cfg(data, out, epochs=1, overwrite=True), log=lambda s: None)
    assert len(_lrs(out)) == 1 and not (out / "metrics.png").exists()
    assert runs.read_checkpoint(out / "checkpoint.npz")["epoch"] == 1


def test_api_checks_the_options_too(data, tmp_path):
    for kw, text in [(dict(epochs=0), "--epochs must be an integer >= 1"),
                     (dict(lr=float("nan")), "--lr must be a finite number > 0"),
                     (dict(momentum=1.0), "--momentum must be a finite number >= 0.0 and < 1.0"),
                     (dict(model="x"), "--model must be one of")]:
        with pytest.raises(ValueError, match=text):
            train.fit(_cfg(data, tmp_path / "never", **kw), log=lambda s: None)
    assert not (tmp_path / "never").exists()


def test_compile_notice_reaches_the_progress_line(monkeypatch):
    from gpucnn.runtime.emulator import build
    if not build.available()[0]:
        pytest.skip("no emulator here")
    monkeypatch.setattr(build, "cached", lambda code, options=(): False)
    stream = io.StringIO()
    bar = train.Progress(10, "epoch 1/1", stream=stream)
    with loader.on_compile(bar.note):
        loader._emulator_module.__wrapped__("relu")
    assert stream.getvalue() == "epoch 1/1: compiling the relu kernels for the emulator (first use, then cached)\n"
    monkeypatch.setattr(build, "cached", lambda code, options=(): True)
    with loader.on_compile(bar.note):
        loader._emulator_module.__wrapped__("relu")
    assert stream.getvalue().count("\n") == 1  # nothing compiled, nothing said


def test_note_on_a_terminal_follows_the_bar():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    s = Tty()
    bar = train.Progress(10, "epoch 1/2", stream=s)
    bar.update(4, 0.5, 0.25)
    bar.note("compiling")
    assert re.search(r"\r[^\r]*4/10 loss 0\.5000 acc 0\.2500 [\d.]+s \| compiling\x1b\[K$", s.getvalue())
