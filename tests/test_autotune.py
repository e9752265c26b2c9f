"""Autotuning (gpucnn.cuda.autotune, GPUCNN_CONV_ALGO=autotune): its candidates, the fastest
by its timer taken and remembered, each candidate's result the reference's, and nothing timed
during a capture. On the emulator, with a stand-in timer (the emulator's times say nothing of a
GPU's)."""
from __future__ import annotations

import numpy as np
import pytest

import gpucnn
import gpucnn.runtime
from gpucnn import backend as _backend
from gpucnn.bench.cases import CONV
from gpucnn.cuda import algo, autotune, tc
from gpucnn.functional.conv import _conv_geometry
from gpucnn.reference import conv as ref
from gpucnn.runtime import capture

pytestmark = pytest.mark.family("conv")


def _geometry(case):
    return _conv_geometry((case.N, case.C, case.H, case.W), (case.K, case.C // case.groups, case.R, case.S),
                          case.stride, case.pad, case.dilation, case.groups)


@pytest.mark.parametrize("cc", [80, 90])
@pytest.mark.parametrize("case", CONV, ids=[c.name for c in CONV])
def test_candidates(case, cc):
    g = _geometry(case)
    for pass_ in algo.PASSES:
        for math in ("fp32", "tf32", "3xtf32"):
            cands = autotune.candidates(g, pass_, np.float32, math, 132, cc)
            assert cands[0] == algo.choose(g, pass_, np.float32, math, 132, cc)  # the heuristic's first
            assert len(set(cands)) == len(cands)
            # never less accurate than the mode: tf32 (the fold's, or a tensor-core tile's) only in tf32
            assert {c.math for c in cands} <= {"fp32", math}
            if math != "fp32" and cands[0].family == "gemm":
                assert any(c.family == "gemm" and c.math == "fp32" for c in cands)  # the FFMA tile too
            assert {c.edge for c in cands} <= {None, *tc.TC_TILES}
            if cc != 90:  # the warpgroup tiles are built on 9.0 only
                assert not {c.edge for c in cands} & set(tc.WG_TILES)
            if not algo.direct_ok(g, pass_):
                assert all(c.family != "direct" for c in cands)
            if pass_ == "backward_data" and g.win.sh * g.win.sw > 1 and not algo.direct_ok(g, pass_):
                assert any(c.family == "phase" for c in cands) and any(c.family == "gemm" for c in cands)


def test_split_gemms_are_tried_with_fewer_parts():
    """A split GEMM candidate also runs with a half and a quarter of its parts, on the same tile."""
    g = _geometry(next(c for c in CONV if c.name == "mnist-1"))
    for math in ("fp32", "3xtf32"):
        cands = autotune.candidates(g, "backward_filter", np.float32, math, 132, 90)
        groups = {}
        for c in cands:
            if c.family == "gemm":
                groups.setdefault((c.tile, c.edge, c.math, c.swap), set()).add(c.splits)
        for key, splits in groups.items():  # about s, s / 2 and s / 4 (chunks rounded to the tile's k depth)
            assert max(splits) <= 3 or len(splits) >= 3, (key, splits)
        heuristic = cands[0]
        assert heuristic.splits == 392 and {196, 98} <= {d.splits for d in cands if d.tile == heuristic.tile
                                                        and d.math == heuristic.math and not d.swap}


@pytest.fixture
def emulator():
    ok, why = _backend.available("emulator")
    if not ok:
        pytest.skip(f"emulator unavailable: {why}")
    from gpucnn.runtime.emulator import emulation
    autotune.clear()
    with gpucnn.use_backend("emulator"), emulation(), algo.override(algo.AUTOTUNE):
        yield
    autotune.clear()


def _data(stride=1):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    g = _conv_geometry(x.shape, w.shape, stride, 1, 1, 1)
    dy = rng.standard_normal((2, 8, g.win.P, g.win.Q)).astype(np.float32)
    return x, w, dy, g


def _spy(monkeypatch, cost):
    """autotune._time replaced by cost(choice) of the candidate each timed call ran; returns the
    list of choices run (timed or not)."""
    ran, real = [], autotune._running

    def running(g, pass_, c, run):
        ran.append(c)
        return real(g, pass_, c, run)

    def timed(rt, fn):
        n = len(ran)
        fn()
        return cost(ran[n])
    monkeypatch.setattr(autotune, "_running", running)
    monkeypatch.setattr(autotune, "_time", timed)
    return ran


@pytest.mark.parametrize("mode", ["fp32", "3xtf32"])
def test_the_fastest_is_taken_and_remembered(emulator, monkeypatch, mode):
    x, w, dy, g = _data()
    from gpucnn.runtime import runtime_for
    cc, sms = runtime_for("emulator").device()
    with gpucnn.math_mode(mode):
        cands = autotune.candidates(g, "forward", np.float32, mode, sms, cc)
        assert len(cands) > 1
        fastest = cands[-1]  # not the heuristic's: the timer says so
        ran = _spy(monkeypatch, lambda c: 1.0 if c == fastest else 2.0)
        y = gpucnn.conv2d(x, w, padding=1)
        assert ran == cands + [fastest]  # each candidate timed once, then the call on the fastest
        assert list(autotune._cache.values()) == [fastest]
        # every candidate's time is kept (the bench's tuning table), the heuristic's first
        assert autotune.timings(g, "forward", mode) == [(c, 1.0 if c == fastest else 2.0) for c in cands]
        assert autotune.timings(g, "backward_data", mode) is None
        launched, function = [], gpucnn.runtime.Runtime.function
        monkeypatch.setattr(gpucnn.runtime.Runtime, "function",
                            lambda rt, family, kernel, options=(): launched.append(kernel) or function(rt, family, kernel,
                                                                                                   options))
        y2 = gpucnn.conv2d(x, w, padding=1)  # remembered: no timing, the same choice
        assert ran[len(cands) + 1:] == [fastest] and len(autotune._cache) == 1
        assert launched == [tc.plan_of("conv2d_forward", np.float32, fastest).name]  # its kernel, and no other
    want = ref.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, g)
    tol = 1e-5 if fastest.math == "fp32" else 2e-5
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol * np.abs(want).max())
    assert np.array_equal(y, y2)


def test_every_candidate_computes_the_pass(emulator, monkeypatch):
    """Backward-data of a stride-2 convolution and the filter gradient: each candidate's result
    (as tuning runs it) matches float64 (so whichever is fastest, the answer stands)."""
    x, w, dy, g = _data(stride=2)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    outs, real = {}, autotune._running

    def running(gg, pass_, c, run):
        out = real(gg, pass_, c, run)
        outs.setdefault(pass_, {})[c] = out
        return out
    monkeypatch.setattr(autotune, "_running", running)
    monkeypatch.setattr(autotune, "_time", lambda rt, fn: (fn(), 1.0)[1])
    gpucnn.conv2d_backward(dy, x, w, stride=2, padding=1, bias=False)
    want = {"backward_data": ref.conv2d_backward_data(dy64, w64, g),
            "backward_filter": ref.conv2d_backward_filter(dy64, x64, g)}
    for pass_, by in outs.items():
        assert len(by) > 1, pass_
        for c, out in by.items():
            np.testing.assert_allclose(out, want[pass_], rtol=2e-5, atol=2e-5 * np.abs(want[pass_]).max(),
                                       err_msg=f"{pass_} {c}")


def test_nothing_is_timed_while_capturing(emulator, monkeypatch):
    x, w, _, g = _data()
    timed = []
    monkeypatch.setattr(autotune, "_time", lambda rt, fn: timed.append(1) or 1.0)
    monkeypatch.setattr(capture, "active", lambda: True)
    y = gpucnn.conv2d(x, w, padding=1)
    assert timed == [] and autotune._cache == {}
    np.testing.assert_allclose(y, ref.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, g),
                               rtol=1e-4, atol=1e-4)


def test_autotune_is_an_override_and_off_by_default():
    assert algo.spec() != algo.AUTOTUNE
    with algo.override("autotune"):
        assert algo.spec() == algo.AUTOTUNE and algo._forced() is None
    with pytest.raises(ValueError, match="autotune"):
        with algo.override("winograd"):
            pass
