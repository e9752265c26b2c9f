"""The host launch path as the GPU bench calls it (bench/host_path.py's null
CuPy runtime): CuPy arrays take backend.call's fast path with the results the
generic path gives, and every override still takes effect after a call has
filled the memos (algo, tc, Runtime.function)."""
from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

import gpucnn
import gpucnn.runtime
from gpucnn import backend, mathmode
from gpucnn.cuda import algo, pool, tc
from gpucnn.cuda import conv as cuda_conv
from gpucnn.cuda.launch import small_grid
from gpucnn.functional.conv import _conv_geometry
from gpucnn.runtime import direct
from gpucnn.reference import conv as ref_conv
from gpucnn.reference import relu as ref_relu

from conftest import tol

_spec = importlib.util.spec_from_file_location(
    "host_path", pathlib.Path(__file__).resolve().parents[1] / "bench" / "host_path.py")
hp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hp)

MNIST1 = ((64, 1, 28, 28), (32, 1, 5, 5), 1, 2)  # gpucnn.bench.cases' mnist-1: x, w, stride, pad


def _conv_args(x_shape, w_shape, stride, pad, seed=0):
    rng = np.random.default_rng(seed)
    g = _conv_geometry(x_shape, w_shape, stride, pad, 1, 1)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    dy = rng.standard_normal((g.N, g.K, g.win.P, g.win.Q))
    return g, x, w, dy


@pytest.fixture
def logged():
    """(log, runtime): the null "cuda" runtime serving backend "cuda", its launches appended to log."""
    log = []
    rt = hp.null_runtime(hp.NullModule(log))
    with hp.null_cuda(rt):
        yield log, rt


def _generic(rt, family, op, *args):
    """What backend.call returned before its CuPy fast path: the to_device / from_device_like walk."""
    fn = getattr(backend._module(f"gpucnn.cuda.{family}"), op)
    return rt.from_device_like(fn(rt, *(rt.to_device(a) for a in args)), args)


def test_device_arrays_resolve_cuda_and_mixing_is_refused():
    a = hp.device_array(np.zeros(3, np.float32))
    assert backend.resolve((a, 0.5, None)) == "cuda"
    with pytest.raises(TypeError, match="must all be NumPy or all CuPy"):
        backend.resolve((a, np.zeros(3, np.float32)))


def test_array_kind_is_not_remembered_for_instance_attributes():
    """An object is an array by its instance's shape and dtype: a type whose
    instances may lack them is asked each time, not remembered."""
    class Maybe:
        pass
    arr, plain = Maybe(), Maybe()
    arr.shape, arr.dtype = (2,), np.dtype(np.float32)
    fake = hp.device_array(np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="must all be NumPy or all CuPy"):
        backend.resolve((fake, arr))
    assert backend.resolve((fake, plain)) == "cuda"
    assert Maybe not in backend._KINDS


def test_fast_path_returns_what_the_generic_path_returns(logged):
    """Same objects (the pool's), so the same kinds and values: one output,
    a tuple with None in it, a GEMM convolution and a split filter gradient."""
    _, rt = logged
    g, x, w, dy = (a if i == 0 else hp.device_array(a.astype(np.float32))
                   for i, a in enumerate(_conv_args(*MNIST1)))
    rm, rv = (hp.device_array(np.full(32, v, np.float32)) for v in (0, 1))
    calls = [("relu", "relu_forward", x, 0.0), ("norm", "batch_norm_stats", dy, None, None, 0.1, 1e-5),
             ("norm", "batch_norm_stats", dy, rm, rv, 0.1, 1e-5), ("conv", "conv2d_forward", x, w, None, g),
             ("conv", "conv2d_backward_filter", dy, x, g), ("conv", "conv2d_backward_bias", dy)]
    for family, op, *args in calls:
        got, want = backend.call(family, op, *args), _generic(rt, family, op, *args)
        pairs = zip(got, want) if isinstance(want, tuple) else [(got, want)]
        assert type(got) is type(want) and all(a is b for a, b in pairs), (family, op)


@pytest.mark.parametrize("family", ["relu", "conv"])
def test_fast_path_values_on_the_emulator(family, monkeypatch):
    """CuPy-typed arrays (misaligned views included) through the fast path run
    the kernels on the emulator and match the float64 reference and the NumPy path's bits."""
    if not backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    emu = gpucnn.runtime.runtime_for("emulator")
    g, x, w, _ = _conv_args((2, 3, 7, 9), (5, 3, 3, 3), 2, 1, seed=1)
    x32 = np.empty(x.size + 1, np.float32)[1:].reshape(x.shape)  # off 16-byte alignment
    x32[...] = x
    if family == "relu":
        op, args, want = "relu_forward", (x32, 0.0), ref_relu.relu_forward(x, 0.0)
    else:
        op, args, want = "conv2d_forward", (x32, w.astype(np.float32), None, g), ref_conv.conv2d_forward(x, w, None, g)
    with gpucnn.use_backend("emulator"), mathmode.math_mode("fp32"):
        numpy_path = backend.call(family, op, *args)
    monkeypatch.setattr(gpucnn.runtime, "runtime_for", lambda name: emu)
    with mathmode.math_mode("fp32"):
        fast = backend.call(family, op, *(hp.device_array(a) if isinstance(a, np.ndarray) else a for a in args))
    np.testing.assert_array_equal(fast, numpy_path)
    np.testing.assert_allclose(fast, want, **tol(np.float32))


def _forward(g, x, w):
    return backend.call("conv", "conv2d_forward", x, w, None, g)


def _mnist1():
    g, x, w, dy = _conv_args(*MNIST1)
    return g, hp.device_array(x.astype(np.float32)), hp.device_array(w.astype(np.float32)), \
        hp.device_array(dy.astype(np.float32))


def _names(log, f):
    del log[:]
    f()
    return [entry[0] for entry in log]


def test_forced_tile_and_math_mode_after_a_memoised_call(logged):
    log, _ = logged
    g, x, w, _ = _mnist1()
    with mathmode.math_mode("tf32"):
        chosen = _names(log, lambda: _forward(g, x, w))
        assert chosen == ["conv2d_forward_tf32_32"]  # 32 filters: tc_config's narrow tile
        with tc.force_tile(64):
            assert _names(log, lambda: _forward(g, x, w)) == ["conv2d_forward_tf32_64"]
        assert _names(log, lambda: _forward(g, x, w)) == chosen
        with mathmode.math_mode("3xtf32"):
            assert _names(log, lambda: _forward(g, x, w)) == ["conv2d_forward_3xtf32_32"]


@pytest.mark.parametrize("how", ["override", "environment"])
def test_algorithm_override_after_a_memoised_call(logged, how, monkeypatch):
    log, _ = logged
    g, x, w, _ = _mnist1()
    with mathmode.math_mode("tf32"):
        chosen = _names(log, lambda: _forward(g, x, w))
        if how == "override":
            with algo.override("direct"):
                forced = _names(log, lambda: _forward(g, x, w))
        else:
            monkeypatch.setenv(algo.ENV, "direct")
            forced = _names(log, lambda: _forward(g, x, w))
            monkeypatch.delenv(algo.ENV)
        assert chosen == ["conv2d_forward_tf32_32"] and len(forced) == 1 and "tf32" not in forced[0]
        assert _names(log, lambda: _forward(g, x, w)) == chosen


def test_small_grid_and_max_grid_z_after_a_memoised_call(logged, monkeypatch):
    log, _ = logged
    g, x, w, dy = _mnist1()
    backend.call("relu", "relu_forward", x, 0.0)
    full = log[-1][1][0]
    with small_grid(2):
        backend.call("relu", "relu_forward", x, 0.0)
    assert full > 2 and log[-1][1] == (2,)
    with mathmode.math_mode("tf32"):
        _names(log, lambda: backend.call("conv", "conv2d_backward_filter", dy, x, g))
        splits = log[0][1][2]
        monkeypatch.setattr(cuda_conv, "MAX_GRID_Z", 2)
        _names(log, lambda: backend.call("conv", "conv2d_backward_filter", dy, x, g))
    assert splits > 2 and log[0][1][2] == 2


def test_device_changes_the_launch_after_a_memoised_call():
    """The SM count is part of every memo: a smaller device splits the filter gradient differently."""
    g, x, w, dy = _mnist1()
    grids = []
    for sms in (132, 8):
        log = []
        with hp.null_cuda(hp.null_runtime(hp.NullModule(log), device=(90, sms))), mathmode.math_mode("tf32"):
            backend.call("conv", "conv2d_backward_filter", dy, x, g)
        grids.append(log[0][1])
    assert grids[0] != grids[1]


def test_functions_follow_the_module_in_force():
    """Runtime.function remembers per device (CuPy's modules are per device: the runtime asks
    the device's number at each launch) and forgets when the runtime's module source changes."""
    logs = {0: [], 1: [], 2: []}
    modules = {d: hp.NullModule(logs[d]) for d in logs}
    current = [0]
    rt = gpucnn.runtime.Runtime("cuda", hp._Pool(), lambda family, options=(), kernel=None: modules[current[0]],
                                lambda: (90, 132), lambda: current[0])
    x = hp.device_array(np.ones(64, np.float32))
    with hp.null_cuda(rt):
        backend.call("relu", "relu_forward", x, 0.0)
        current[0] = 1
        backend.call("relu", "relu_forward", x, 0.0)
        current[0] = 0
        backend.call("relu", "relu_forward", x, 0.0)  # device 0's, remembered
        rt.module = lambda family, options=(), kernel=None: modules[2]
        backend.call("relu", "relu_forward", x, 0.0)
    assert [len(logs[d]) for d in logs] == [2, 1, 1]


def test_measure_times_every_row():
    rows = hp.measure(calls=2, samples=1, convs=("mnist-1",), modes=("tf32",))
    assert {"relu.relu_forward", "mnist-1 forward tf32", "mnist-1 gpucnn.conv2d_backward tf32"} <= set(rows)
    assert all(us > 0 and launches >= 1 for us, launches in rows.values())
    assert rows["mnist-1 gpucnn.conv2d_backward tf32"][1] >= 3  # dx, dw and db


def test_measure_on_our_launch_path_makes_the_same_launches(monkeypatch):
    """GPUCNN_LAUNCH=driver on the null runtime: the launches go through the driver call (its
    stand-in counts them), as many a row as on CuPy's path, with their arguments packed."""
    cupys = hp.measure(calls=2, samples=1, convs=("mnist-1",), modes=("tf32",))
    driven, real = [], direct.DirectKernel._driver
    monkeypatch.setattr(direct.DirectKernel, "_driver", lambda self, *a: driven.append(a[3]) or real(self, *a))
    with direct.use("driver"):
        ours = hp.measure(calls=2, samples=1, convs=("mnist-1",), modes=("tf32",))
    assert ours.keys() == cupys.keys()
    assert {k: n for k, (_, n) in ours.items()} == {k: n for k, (_, n) in cupys.items()}
    assert len(driven) > len(ours) and all(isinstance(p, int) and p for p in driven)  # kernelParams' addresses


def _last(log, f):
    """(grid, args) of the last launch ``f`` makes."""
    f()
    return log[-1][1], log[-1][4]


def test_pool_arguments_follow_the_window_and_options(logged):
    """pool's memos key on (planes, window) and average pooling's two options:
    each call's scalars are its own window's, the grid follows small_grid."""
    from gpucnn.shapes import window
    log, _ = logged
    x = hp.device_array(np.zeros((2, 3, 9, 8), np.float32))
    a = window(9, 8, (3, 3), (2, 2), (1, 0, 1, 1), (1, 1), pool=True)
    b = window(9, 8, (2, 1), (1, 2), (0, 1, 0, 0), (2, 1), pool=True)
    for win in (a, b, a):
        geometry = [6, 9, 8, win.P, win.Q, win.kh, win.kw, win.sh, win.sw, win.pad[0], win.pad[2], win.dh, win.dw]
        rows = [1] if pool.pairs(win) else []  # the pair kernels' rows: 1, as 6 x 5 x 2 pairs is small
        grid, args = _last(log, lambda: backend.call("pool", "max_pool2d_forward", x, win))
        assert [int(v) for v in args[3:]] == geometry + rows and grid == (1,)
        for cip, div in ((True, 0), (False, 0), (True, -3)):
            with small_grid(1):
                grid, args = _last(log, lambda: backend.call("pool", "avg_pool2d_forward", x, win, cip, div))
            assert ([int(v) for v in args[2:]] == geometry + [win.pad[1], win.pad[3], cip, div] + rows
                    and grid == (1,))
    assert all(isinstance(v, np.int32) for v in args[3:]) and isinstance(args[2], np.int64)


def test_bias_gradient_memo_follows_sms_min_chunk_and_small_grid(monkeypatch):
    """conv._bias_geometry keys on dy's shape, the SM count and MIN_CHUNK;
    the grid is sized at each call (small_grid)."""
    from gpucnn.cuda import norm
    dy = hp.device_array(np.zeros((2, 6, 16, 16), np.float32))
    seen = []
    for sms, min_chunk, cap in ((132, norm.MIN_CHUNK, None), (132, 64, None), (1, 64, None), (132, 64, 2),
                                (132, norm.MIN_CHUNK, None)):
        monkeypatch.setattr(norm, "MIN_CHUNK", min_chunk)
        log = []
        with hp.null_cuda(hp.null_runtime(hp.NullModule(log), device=(90, sms))):
            if cap is None:
                grid, args = _last(log, lambda: backend.call("conv", "conv2d_backward_bias", dy))
            else:
                with small_grid(cap):
                    grid, args = _last(log, lambda: backend.call("conv", "conv2d_backward_bias", dy))
        chunk, chunks = norm.channel_chunks(6, 2 * 256, sms)
        assert [int(v) for v in args[4:]] == [2, 6, 256, chunk, chunks] and args[1].shape == (6 * chunks,)
        assert grid == ((6 * chunks) if cap is None else cap,)
        seen.append(chunks)
    # 512 values a channel: one chunk at MIN_CHUNK's 4096; 8 of 64 at 64; one SM's 4 blocks for 6 channels: 1
    assert seen == [1, 8, 1, 8, 1]


def test_relu_and_batch_norm_scalars_follow_their_arguments(logged):
    """relu._sizes keys on size, dtype and slope; norm._stats_scalars on eps,
    momentum and whether the running statistics update."""
    log, _ = logged
    for dtype in (np.float32, np.float64):
        for n, slope in ((1000, 0.0), (1000, 0.25), (1000, -0.0), (8, 0.25)):  # -0.0 == 0.0: the sign is a key too
            x = hp.device_array(np.zeros(n, dtype))
            grid, args = _last(log, lambda: backend.call("relu", "relu_forward", x, slope))
            assert (int(args[2]), args[3], type(args[3]), np.signbit(args[3])) == (n, slope, dtype, np.signbit(slope))
            assert grid == (-(-n // (16 // np.dtype(dtype).itemsize) // 256),)
    x = hp.device_array(np.zeros((2, 3, 4, 4), np.float32))
    rm, rv = (hp.device_array(np.full(3, v, np.float32)) for v in (0, 1))
    for r, momentum, eps in ((rm, 0.1, 1e-5), (rm, 0.3, 1e-3), (None, 0.3, 1e-3), (rm, 0.0, 1e-3), (rm, -0.0, 1e-3)):
        _, args = _last(log, lambda: backend.call("norm", "batch_norm_stats", x, r, None if r is None else rv,
                                                  momentum, eps))
        assert [float(v) for v in args[-3:]] == [eps, momentum, r is not None]
        assert np.signbit(args[-2]) == np.signbit(momentum)
