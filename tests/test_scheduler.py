"""The NumPy backend's threads (gpucnn.reference.scheduler): every span of an
op run once, errors raised to the caller, deferred work done by the end of
its block; and a training step's gradients, with a convolution's filter
gradient deferred, bit for bit those computed in order on one thread."""
from __future__ import annotations

import contextvars
import threading
import time

import numpy as np
import pytest

import gpucnn
from gpucnn.nn import MODELS
from gpucnn.nn.losses import CrossEntropyLoss
from gpucnn.reference import scheduler, workspace


@pytest.fixture
def three_threads(monkeypatch):
    monkeypatch.setenv("GPUCNN_THREADS", "3")


def test_every_span_runs_once(three_threads):
    seen, who = [], set()

    def fn(a, b):
        seen.extend(range(a, b))
        who.add(threading.get_ident())
        time.sleep(0.001)  # releases the GIL, as NumPy's loops do: the workers take spans

    spans = [(a, a + 3) for a in range(0, 300, 3)]
    for _ in range(3):
        seen.clear()
        workspace.run_spans(fn, spans)
        assert sorted(seen) == list(range(300))
    assert len(who) > 1


def test_a_span_error_reaches_the_caller(three_threads):
    def fn(a, b):
        if a == 7:
            raise ValueError("span 7")

    for _ in range(5):
        with pytest.raises(ValueError, match="span 7"):
            workspace.run_spans(fn, [(a, a + 1) for a in range(40)])
    # and the threads still work afterwards
    out = np.zeros(40)
    workspace.run_spans(lambda a, b: out.__setitem__(slice(a, b), 1), [(a, a + 1) for a in range(40)])
    assert out.all()


def test_nested_calls_run_serially(three_threads):
    inner = []

    def fn(a, b):
        assert scheduler.nested()
        workspace.run_spans(lambda c, d: inner.append((threading.get_ident(), c)), [(0, 1), (1, 2)])

    workspace.run_spans(fn, [(a, a + 1) for a in range(8)])
    assert len(inner) == 16
    # Each inner call ran on the thread of its span: no thread waited on another.
    assert all(inner[i][0] == inner[i + 1][0] for i in range(0, 16, 2))


def test_deferred_tasks_are_done_when_the_block_ends(three_threads):
    var = contextvars.ContextVar("v", default="unset")
    done = []
    assert not workspace.defer(lambda: done.append(0))  # outside a block: refused, not run
    token = var.set("caller's")
    try:
        with workspace.deferring():
            for i in range(6):
                assert workspace.defer(lambda i=i: done.append((i, var.get())))
                # ops in between, as a backward pass runs them
                workspace.run_spans(lambda a, b: None, [(a, a + 1) for a in range(10)])
    finally:
        var.reset(token)
    assert sorted(done) == [(i, "caller's") for i in range(6)]
    assert not scheduler.busy()


def test_one_thread_defers_nothing(monkeypatch):
    monkeypatch.setenv("GPUCNN_THREADS", "1")
    with workspace.deferring():
        assert not workspace.defer(lambda: None)


def test_a_deferred_error_is_raised_at_the_end(three_threads):
    with pytest.raises(RuntimeError, match="deferred"):
        with workspace.deferring():
            workspace.defer(lambda: (_ for _ in ()).throw(RuntimeError("deferred")))
    # The block's own error wins over a task's; the task still finished.
    ran = []
    with pytest.raises(KeyError):
        with workspace.deferring():
            workspace.defer(lambda: ran.append(1))
            workspace.defer(lambda: (_ for _ in ()).throw(RuntimeError("deferred")))
            raise KeyError("block")
    assert ran == [1] and not scheduler.busy()


def _step(name, threads, monkeypatch):
    """dx and the gradients of one backward of model ``name`` on ``threads``
    threads, and how many filter gradients were deferred."""
    monkeypatch.setenv("GPUCNN_THREADS", str(threads))
    deferred = []
    real = scheduler.defer
    monkeypatch.setattr(scheduler, "defer", lambda fn, n: deferred.append(1) or real(fn, n))
    rng = np.random.default_rng(0)
    shape = (1, 28, 28) if name == "lenet" else (3, 16, 16)
    model = MODELS[name](shape, 10, rng=rng)
    x, y = rng.standard_normal((8, *shape)).astype(np.float32), rng.integers(0, 10, 8)
    loss = CrossEntropyLoss()
    with gpucnn.use_backend("numpy"):
        loss(model.forward(x), y)
        dx = model.backward(loss.backward())
    monkeypatch.setattr(scheduler, "defer", real)
    return dx, model.grads(), len(deferred)


@pytest.mark.parametrize("name", ["resnet20", "lenet"])
def test_deferred_filter_gradients_are_the_same_bits(monkeypatch, name):
    dx1, g1, _ = _step(name, 1, monkeypatch)
    dx3, g3, deferred = _step(name, 3, monkeypatch)
    n_conv = sum(k.endswith("weight") and v.ndim == 4 for k, v in g1.items())
    assert deferred == n_conv  # every convolution's filter gradient went through defer
    assert np.array_equal(dx1, dx3)
    assert g1.keys() == g3.keys()
    for k in g1:
        assert np.array_equal(g1[k], g3[k]), k


def test_weight_grad_false_skips_the_filter_gradient():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    dy = rng.standard_normal((2, 4, 4, 4))
    dx, dw, db = gpucnn.conv2d_backward(dy, x, w, weight_grad=False)
    assert dw is None and db is None
    np.testing.assert_array_equal(dx, gpucnn.conv2d_backward(dy, x, w)[0])
