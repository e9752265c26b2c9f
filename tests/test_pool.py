"""Max/avg pooling, their backward passes and max unpooling, on every backend.

PyTorch CPU is the outside oracle (skipped cleanly without torch); float64
finite differences check every backward; a few hand-worked cases pin the
semantics (indices, ties, NaN, divisors, ceil mode) without any oracle.
Asymmetric padding, which torch lacks, is compared with torch on an
explicitly padded input (-inf for max, 0 for sums).

``pytest --crosscheck-report`` prints, per op, how many torch cases ran and
the worst relative error.
"""
from __future__ import annotations

import numpy as np
import pytest
from crosscheck import close as _record, note, specials as _specials, to_torch, torch_or_skip

import gpucnn
from gpucnn.cuda import pool as cuda_pool
from gpucnn.runtime.emulator import emulation
from gpucnn.shapes import window

pytestmark = pytest.mark.family("pool")

DTYPES = [np.float32, np.float64]
# Finite differences of piecewise-linear functions in float64: exact up to rounding.
FD_TOL = dict(rtol=1e-6, atol=1e-8)


def _record_exact(op, got, want):
    want = np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (op, got.dtype, want.dtype)
    np.testing.assert_array_equal(got, want, err_msg=op)
    note(op, got.astype(np.float64), want.astype(np.float64), np.float64)


def _geometry(rng, dilation=True, asym=False, kmax=4):
    """Random valid pooling arguments and a matching input shape (torch's rules:
    each pad at most half the kernel, the dilated kernel inside the padded input)."""
    kh, kw = (int(k) for k in rng.integers(1, kmax + 1, 2))
    stride = None if rng.random() < 0.25 else tuple(int(s) for s in rng.integers(1, 4, 2))
    dil = tuple(int(d) for d in rng.integers(1, 3, 2)) if dilation else (1, 1)
    if asym:
        pad = tuple(int(rng.integers(0, k // 2 + 1)) for k in (kh, kh, kw, kw))
    else:
        pad = tuple(int(rng.integers(0, k // 2 + 1)) for k in (kh, kw))
    t, b, l, r = pad if asym else (pad[0], pad[0], pad[1], pad[1])
    eh, ew = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
    H = int(rng.integers(max(1, eh - t - b), eh + 7))
    W = int(rng.integers(max(1, ew - l - r), ew + 7))
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), H, W)
    return shape, dict(kernel_size=(kh, kw), stride=stride, padding=pad,
                       dilation=dil, ceil_mode=bool(rng.random() < 0.5))


def _tpool_args(g):
    stride = g["kernel_size"] if g["stride"] is None else g["stride"]
    return g["kernel_size"], stride, g["padding"]


# ---------------------------------------------------------------- hand-worked

X4 = np.array([[1, 2, 5, 3],
               [4, 0, 6, 1],
               [7, 8, 2, 2],
               [3, 9, 1, 1]], dtype=np.float64)[None, None]


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_4x4_by_hand(backend, dtype):
    y, idx = gpucnn.max_pool2d(X4.astype(dtype), 2, return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [[4, 6], [9, 2]])
    # The bottom-right window ties at 2 (offsets 10 and 11): the first tap wins.
    np.testing.assert_array_equal(idx[0, 0], [[4, 6], [13, 10]])
    assert y.dtype == dtype and idx.dtype == np.int64
    dx = gpucnn.max_pool2d_backward(np.ones_like(y), X4.astype(dtype), 2)
    want = np.zeros(16)
    want[[4, 6, 13, 10]] = 1
    np.testing.assert_array_equal(dx.ravel(), want)
    np.testing.assert_array_equal(gpucnn.max_unpool2d(y, idx, 2).ravel(), want * X4.ravel())


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_nan_inf_by_hand(backend, dtype):
    nan, inf = np.nan, np.inf
    x = np.array([[nan, 1, -inf, -inf, inf, 5],
                  [2, nan, -inf, -inf, 7, inf]], dtype=dtype)[None, None]
    y, idx = gpucnn.max_pool2d(x, 2, return_indices=True)
    # A NaN propagates with the LAST NaN's index; an all -inf window keeps its
    # first tap; the first of two +inf wins.
    np.testing.assert_array_equal(y[0, 0, 0], [nan, -inf, inf])
    np.testing.assert_array_equal(idx[0, 0, 0], [7, 2, 4])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_padding_never_wins(backend, dtype):
    x = np.full((1, 1, 2, 2), -np.inf, dtype)
    y, idx = gpucnn.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    assert np.all(y == -np.inf)
    # Every window's first in-plane tap, not a padded position.
    np.testing.assert_array_equal(idx[0, 0], [[0, 0], [0, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_corner_divisors_by_hand(backend, dtype):
    x = np.arange(1, 17, dtype=dtype).reshape(1, 1, 4, 4)
    incl = gpucnn.avg_pool2d(x, 2, padding=1, count_include_pad=True)[0, 0]
    excl = gpucnn.avg_pool2d(x, 2, padding=1, count_include_pad=False)[0, 0]
    # Corner windows hold one real element and three padded ones.
    assert incl[0, 0] == 1 / 4 and excl[0, 0] == 1
    assert incl[0, 1] == (2 + 3) / 4 and excl[0, 1] == (2 + 3) / 2
    assert incl[1, 1] == excl[1, 1] == (6 + 7 + 10 + 11) / 4
    assert incl[2, 2] == 16 / 4 and excl[2, 2] == 16
    dx = gpucnn.avg_pool2d_backward(np.ones((1, 1, 3, 3), dtype), x, 2, padding=1,
                                    count_include_pad=False)
    assert dx[0, 0, 0, 0] == 1 and dx[0, 0, 0, 1] == 1 / 2 and dx[0, 0, 1, 1] == 1 / 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_ceil_mode_by_hand(backend, dtype):
    # H=5, k=2, s=2, pad=1: ceil gives 4 windows, but the 4th would start in the
    # right padding (real row 5), so it is dropped.
    y = gpucnn.max_pool2d(np.ones((1, 1, 5, 5), dtype), 2, 2, 1, ceil_mode=True)
    assert y.shape == (1, 1, 3, 3)
    # H=4, k=3, s=2, pad=1: the last window covers rows 3, 4 (padding) and 5
    # (past the padding); count_include_pad counts only rows 3 and 4.
    z = gpucnn.avg_pool2d(np.ones((1, 1, 4, 4), dtype), 3, 2, 1, ceil_mode=True)
    assert z.shape == (1, 1, 3, 3) and z[0, 0, 2, 2] == 1 / 4 and z[0, 0, 1, 1] == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_asymmetric_padding_by_hand(backend, dtype):
    x = np.arange(1, 10, dtype=dtype).reshape(1, 1, 3, 3)
    # (top, bottom, left, right) = (1, 0, 0, 1): windows start at row -1.
    y, idx = gpucnn.max_pool2d(x, 2, 2, (1, 0, 0, 1), return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [[2, 3], [8, 9]])
    np.testing.assert_array_equal(idx[0, 0], [[1, 2], [7, 8]])
    a = gpucnn.avg_pool2d(x, 2, 2, (1, 0, 0, 1), count_include_pad=False)
    np.testing.assert_allclose(a[0, 0], [[1.5, 3], [(4 + 5 + 7 + 8) / 4, (6 + 9) / 2]])


# ------------------------------------------------------------ torch crosscheck

def _torch_max(x, g):
    """torch's max_pool2d (values, indices) on our arguments; asymmetric padding
    via an explicit -inf pad, indices mapped back to the unpadded plane."""
    torch, F = torch_or_skip(), torch_or_skip().nn.functional
    k, s, pad = _tpool_args(g)
    if len(pad) == 2:
        y, i = F.max_pool2d(to_torch(x), k, s, pad, g["dilation"], g["ceil_mode"], return_indices=True)
        return y.numpy(), i.numpy()
    t, b, l, r = pad
    xp = F.pad(to_torch(x), (l, r, t, b), value=-float("inf"))
    y, i = F.max_pool2d(xp, k, s, 0, g["dilation"], g["ceil_mode"], return_indices=True)
    Wp = xp.shape[-1]
    i = (torch.div(i, Wp, rounding_mode="floor") - t) * x.shape[-1] + (i % Wp - l)
    return y.numpy(), i.numpy()


def _crop(a, like):
    """The explicitly padded torch result holds ours as a prefix in ceil mode
    (it keeps windows starting in the bottom/right padding; torch's rule drops them)."""
    return a[..., :like.shape[-2], :like.shape[-1]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("asym", [False, True], ids=["sym", "asym"])
def test_max_pool_vs_torch(backend, dtype, asym):
    rng = np.random.default_rng(1 + asym)
    for case in range(40):
        shape, g = _geometry(rng, asym=asym)
        # The explicit -inf pad can win an all -inf window in torch, so
        # asymmetric cases use finite inputs (NaN included).
        x = _specials(rng, shape, dtype)
        if asym:
            x[np.isinf(x)] = 0.5
        y, idx = gpucnn.max_pool2d(x, return_indices=True, **g)
        ty, ti = _torch_max(x, g)
        ty, ti = _crop(ty, y), _crop(ti, y)
        _record("max_pool2d", y, ty, dtype)
        _record_exact("max_pool2d indices", idx, ti)
        np.testing.assert_array_equal(gpucnn.max_pool2d(x, **g), y, err_msg=f"{shape} {g}")


# pool2d.cu's scan: undilated 2x2 and 3x3 windows inside the input load
# their taps with no test, those touching the padding (and 3x2, 1x3) test
# each tap, and wider windows go by 4-tap row segments; the 2x2 and 3x3 come
# with and without padding, so with windows of both kinds. The first plane is all -inf (each window keeps its
# first tap inside the input), the others hold NaN, +-inf and ties.
WINDOWS = [((2, 2), 2, 0), ((2, 2), 1, 1), ((3, 3), 2, 1), ((3, 3), 1, 0), ((3, 2), 1, 1), ((1, 3), 2, 0),
           ((4, 5), 2, 2), ((5, 5), 3, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, s, p", WINDOWS, ids=[f"{k[0]}x{k[1]}s{s}p{p}" for k, s, p in WINDOWS])
def test_window_paths_vs_torch(backend, dtype, k, s, p):
    rng = np.random.default_rng(k[0] * 100 + k[1] * 10 + s)
    x = _specials(rng, (2, 3, 11, 13), dtype, p=0.3)
    x[0, 0] = -np.inf
    g = dict(kernel_size=k, stride=(s, s), padding=(p, min(p, k[1] // 2)), dilation=(1, 1), ceil_mode=False)
    y, idx = gpucnn.max_pool2d(x, return_indices=True, **g)
    ty, ti = _torch_max(x, g)
    _record_exact("max_pool2d", y, ty)
    _record_exact("max_pool2d indices", idx, ti)
    x = rng.standard_normal(x.shape).astype(dtype)
    g.pop("dilation")
    for cip in (True, False):
        _record("avg_pool2d", gpucnn.avg_pool2d(x, count_include_pad=cip, **g),
                _torch_avg(x, g, cip).numpy(), dtype)


# pool2d.cu's pair kernels (pool.pairs: stride 2, square 2x2 and 3x3, pads up
# to half): a thread two outputs of a row. Widths 8 and 12 take the 16-byte
# loads (Q even and odd), 13 the scalar ones, an input one element into its
# buffer the unaligned ones, and ceil mode's last pair may start past the
# last whole group of a row; the stores pair up where Q is even.
PAIRS = [(2, 0, False), (2, 1, True), (3, 1, False), (3, 0, True), (3, 1, True)]
PAIR_SHAPES = [(9, 8, 0), (8, 12, 0), (7, 13, 0), (6, 12, 1), (5, 4, 0), (3, 8, 0)]


def _pair_cases(rng, dtype, k, p, ceil, N=2, C=3):
    for H, W, off in PAIR_SHAPES:
        x = _specials(rng, (N * C * H * W + off,), dtype, p=0.3)[off:].reshape(N, C, H, W)
        x[0, 0, : H // 2] = -np.inf  # windows with nothing but -inf keep their first tap
        yield x, dict(kernel_size=(k, k), stride=(2, 2), padding=(p, p), dilation=(1, 1), ceil_mode=ceil)


def _check_pairs(x, g):
    y, idx = gpucnn.max_pool2d(x, return_indices=True, **g)
    ty, ti = _torch_max(x, g)
    _record_exact("max_pool2d", y, ty)
    _record_exact("max_pool2d indices", idx, ti)
    x = np.where(np.isfinite(x), x, 0.5).astype(x.dtype)
    g = {k: v for k, v in g.items() if k != "dilation"}
    for cip in (True, False):
        _record("avg_pool2d", gpucnn.avg_pool2d(x, count_include_pad=cip, **g), _torch_avg(x, g, cip).numpy(),
                x.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, p, ceil", PAIRS, ids=[f"{k}x{k}s2p{p}{'ceil' if c else ''}" for k, p, c in PAIRS])
def test_stride2_pairs_vs_torch(backend, dtype, k, p, ceil):
    assert cuda_pool.pairs(window(8, 8, (k, k), (2, 2), (p, p, p, p), (1, 1), ceil, pool=True))
    rng = np.random.default_rng(10 * k + p + 100 * ceil)
    for x, g in _pair_cases(rng, dtype, k, p, ceil):
        _check_pairs(x, g)


def test_stride2_pairs_two_rows_a_thread_vs_torch():
    """On one emulated SM, 4x16x64x64's 32768 pairs (2x2/2, and 3x3/2 p1) fill
    pool.PAIR_WAVES waves twice over, so a thread takes four outputs: 3x3/2's
    a pair of two output rows (rows = 2: 64 x 16 x 16 threads), 2x2/2's two
    pairs (rows = 1, half as many threads as pairs)."""
    if not gpucnn.backend.available("emulator")[0]:
        pytest.skip("emulator unavailable")
    rng = np.random.default_rng(7)
    x = _specials(rng, (4, 16, 64, 64), np.float32)
    for k, p in ((2, 0), (3, 1)):
        win = window(64, 64, (k, k), (2, 2), (p, p, p, p), (1, 1), False, pool=True)
        _, threads, rows = cuda_pool._forward(win, "max_pool2d_forward", 64, 1)
        assert (threads, rows) == ((64 * 16 * 16, (2,)) if k == 3 else (64 * 32 * 16 // 2, (1,)))
        with gpucnn.use_backend("emulator"), emulation(sm_count=1):
            _check_pairs(x, dict(kernel_size=(k, k), stride=(2, 2), padding=(p, p), dilation=(1, 1),
                                 ceil_mode=False))


@pytest.fixture(params=[1, 2], ids=["rows1", "rows2"])
def pair_rows(request, monkeypatch):
    """The pair kernels forced to ``rows`` output rows a thread whatever the launch's size."""
    monkeypatch.setattr(cuda_pool, "PAIR_ROWS", request.param)
    return request.param


# Rows of more pairs than a warp's 32 lanes (the side column of lane 0 and of
# lane 31 lies in another warp's vector: a scalar load), odd output rows
# (rows = 2's last block holds one), rows whose last pair runs past the 16-byte
# vector (2x2/2 p1 and ceil mode), and rows that end inside a warp.
WIDE_SHAPES = [(5, 136, 0), (7, 132, 0), (4, 68, 1), (3, 260, 0)]


@pytest.mark.parametrize("k, p, ceil", PAIRS, ids=[f"{k}x{k}s2p{p}{'ceil' if c else ''}" for k, p, c in PAIRS])
def test_stride2_rows_wide_vs_torch(backend, pair_rows, k, p, ceil):
    rng = np.random.default_rng(1000 + 10 * k + p + 100 * ceil + pair_rows)
    win = window(136, 136, (k, k), (2, 2), (p, p, p, p), (1, 1), ceil, pool=True)
    assert cuda_pool._forward(win, "max_pool2d_forward", 6, 132, True, cuda_pool.PAIR_ROWS)[2] == (pair_rows,)
    for H, W, off in WIDE_SHAPES + PAIR_SHAPES:
        x = _specials(rng, (2 * 3 * H * W + off,), np.float32, p=0.3)[off:].reshape(2, 3, H, W)
        _check_pairs(x, dict(kernel_size=(k, k), stride=(2, 2), padding=(p, p), dilation=(1, 1), ceil_mode=ceil))

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, p, ceil", PAIRS, ids=[f"{k}x{k}s2p{p}{'ceil' if c else ''}" for k, p, c in PAIRS])
def test_stride2_max_backward_vs_torch_and_generic(backend, dtype, k, p, ceil, monkeypatch):
    """Max pooling's backward on the pair windows (pool2d.cu's max_bwd_fours, 4 inputs of a row a
    thread; rows wider than a warp, widths not a multiple of 4, odd sizes): torch's gradient, with
    ties (rounded values), and the generic kernel's bits (pool.USE_PAIRS off: max_bwd, the same
    terms in the same order), also for indices that are not the forward's (in the plane, as the
    op checks, but most in no window over their input: no gradient there in either kernel)."""
    F = torch_or_skip().nn.functional
    rng = np.random.default_rng(2000 + 10 * k + p + 100 * ceil)
    g = dict(kernel_size=k, stride=2, padding=p, dilation=1, ceil_mode=ceil)
    for H, W, _ in WIDE_SHAPES + PAIR_SHAPES + [(6, 10, 0), (5, 7, 0)]:
        x = rng.standard_normal((2, 3, H, W)).round(1).astype(dtype)
        _, idx = gpucnn.max_pool2d(x, return_indices=True, **g)
        dy = rng.standard_normal(idx.shape).astype(dtype)
        xt = to_torch(x).requires_grad_()
        F.max_pool2d(xt, k, 2, p, 1, ceil).backward(to_torch(dy))
        got = gpucnn.max_pool2d_backward(dy, x, indices=idx, **g)
        _record("max_pool2d_backward (pair windows)", got, xt.grad.numpy(), dtype)
        odd = np.where(rng.random(idx.shape) < 0.2, rng.integers(0, H * W, idx.shape), idx)
        got_odd = gpucnn.max_pool2d_backward(dy, x, indices=odd, **g)
        monkeypatch.setattr(cuda_pool, "USE_PAIRS", False)
        np.testing.assert_array_equal(got, gpucnn.max_pool2d_backward(dy, x, indices=idx, **g))
        np.testing.assert_array_equal(got_odd, gpucnn.max_pool2d_backward(dy, x, indices=odd, **g))
        monkeypatch.setattr(cuda_pool, "USE_PAIRS", True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, p, ceil", PAIRS, ids=[f"{k}x{k}s2p{p}{'ceil' if c else ''}" for k, p, c in PAIRS])
def test_stride2_avg_backward_vs_torch_and_generic(backend, dtype, k, p, ceil, monkeypatch):
    """Average pooling's backward on the pair windows (pool2d.cu's avg_bwd_fours, 4 inputs of a row
    a thread), with and without the padding counted and with a divisor override: torch's
    gradient, and the generic kernel's bits (pool.USE_PAIRS off: avg_bwd, the same terms in the
    same order)."""
    F = torch_or_skip().nn.functional
    rng = np.random.default_rng(3000 + 10 * k + p + 100 * ceil)
    for H, W, _ in WIDE_SHAPES + PAIR_SHAPES + [(6, 10, 0), (5, 7, 0)]:
        x = rng.standard_normal((2, 3, H, W)).astype(dtype)
        for cip, div in ((True, None), (False, None), (True, 3)):
            g = dict(kernel_size=k, stride=2, padding=p, ceil_mode=ceil, count_include_pad=cip,
                     divisor_override=div)
            dy = rng.standard_normal(gpucnn.avg_pool2d(x, **g).shape).astype(dtype)
            xt = to_torch(x).requires_grad_()
            F.avg_pool2d(xt, k, 2, p, ceil, cip, div).backward(to_torch(dy))
            got = gpucnn.avg_pool2d_backward(dy, x, **g)
            _record("avg_pool2d_backward (pair windows)", got, xt.grad.numpy(), dtype)
            monkeypatch.setattr(cuda_pool, "USE_PAIRS", False)
            np.testing.assert_array_equal(got, gpucnn.avg_pool2d_backward(dy, x, **g))
            monkeypatch.setattr(cuda_pool, "USE_PAIRS", True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("asym", [False, True], ids=["sym", "asym"])
def test_max_pool_backward_vs_torch(backend, dtype, asym):
    F = torch_or_skip().nn.functional
    rng = np.random.default_rng(3 + asym)
    for case in range(25):
        shape, g = _geometry(rng, asym=asym)
        # Rounded values make ties, where the argmax rule decides the gradient.
        x = rng.standard_normal(shape).round(1).astype(dtype)
        k, s, pad = _tpool_args(g)
        xt = to_torch(x).requires_grad_()
        if asym:
            t, b, l, r = pad
            yt = F.max_pool2d(F.pad(xt, (l, r, t, b), value=-float("inf")), k, s, 0,
                              g["dilation"], g["ceil_mode"])
        else:
            yt = F.max_pool2d(xt, k, s, pad, g["dilation"], g["ceil_mode"])
        P, Q = gpucnn.max_pool2d(x, **g).shape[-2:]
        dy = rng.standard_normal(shape[:2] + (P, Q)).astype(dtype)
        dyt = np.zeros(yt.shape, dtype)
        dyt[..., :P, :Q] = dy
        yt.backward(to_torch(dyt))
        want = xt.grad.numpy()
        _record("max_pool2d_backward", gpucnn.max_pool2d_backward(dy, x, **g), want, dtype)
        _, idx = gpucnn.max_pool2d(x, return_indices=True, **g)
        _record("max_pool2d_backward(indices)",
                gpucnn.max_pool2d_backward(dy, x, indices=idx, **g), want, dtype)


def _torch_avg(x, g, count_include_pad):
    torch, F = torch_or_skip(), torch_or_skip().nn.functional
    k, s, pad = _tpool_args(g)
    xt = x if isinstance(x, torch.Tensor) else to_torch(x)
    if len(pad) == 2:
        return F.avg_pool2d(xt, k, s, pad, g["ceil_mode"], count_include_pad)
    t, b, l, r = pad
    sums = F.avg_pool2d(F.pad(xt, (l, r, t, b)), k, s, 0, g["ceil_mode"])
    if count_include_pad:
        return sums
    # Same divisor on both, so the ratio is sum / number of real elements.
    ones = F.pad(torch.ones_like(xt), (l, r, t, b))
    return sums / F.avg_pool2d(ones, k, s, 0, g["ceil_mode"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("asym", [False, True], ids=["sym", "asym"])
@pytest.mark.parametrize("cip", [True, False], ids=["incl_pad", "excl_pad"])
def test_avg_pool_vs_torch(backend, dtype, asym, cip):
    rng = np.random.default_rng(5 + 2 * asym + cip)
    for case in range(25):
        shape, g = _geometry(rng, dilation=False, asym=asym)
        g.pop("dilation")
        x = rng.standard_normal(shape).astype(dtype)
        y = gpucnn.avg_pool2d(x, count_include_pad=cip, **g)
        xt = to_torch(x).requires_grad_()
        yt = _torch_avg(xt, g, cip)
        _record("avg_pool2d", y, _crop(yt.detach().numpy(), y), dtype)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dyt = np.zeros(yt.shape, dtype)
        dyt[..., :y.shape[-2], :y.shape[-1]] = dy
        yt.backward(to_torch(dyt))
        dx = gpucnn.avg_pool2d_backward(dy, x, count_include_pad=cip, **g)
        _record("avg_pool2d_backward", dx, xt.grad.numpy(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_unpool_vs_torch(backend, dtype):
    F = torch_or_skip().nn.functional
    rng = np.random.default_rng(9)
    for case in range(30):
        shape, g = _geometry(rng, dilation=False)
        g.update(dilation=(1, 1), ceil_mode=False)
        x = rng.standard_normal(shape).astype(dtype)
        y, idx = gpucnn.max_pool2d(x, return_indices=True, **g)
        k, s, pad = _tpool_args(g)
        # Overlapping windows share argmaxes: duplicate indices, where the
        # last one wins in both. In floor mode x's (H, W) lies within one
        # stride of the default size; output_size may also be (N, C, H, W).
        default = tuple((n - 1) * st - 2 * p + kk for n, st, p, kk in zip(y.shape[2:], s, pad, k))
        size = None if default == shape[2:] else shape[2:] if case % 2 else shape
        want = F.max_unpool2d(to_torch(y), to_torch(idx), k, s, pad, output_size=size).numpy()
        got = gpucnn.max_unpool2d(y, idx, k, g["stride"], pad, output_size=size)
        _record("max_unpool2d", got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ceil_mode_drops_window_in_padding_vs_torch(backend, dtype):
    F = torch_or_skip().nn.functional
    rng = np.random.default_rng(10)
    for H, k, s, p in [(5, 2, 2, 1), (6, 3, 3, 1), (7, 4, 3, 2), (3, 2, 2, 1)]:
        x = rng.standard_normal((1, 2, H, H + 1)).astype(dtype)
        y, idx = gpucnn.max_pool2d(x, k, s, p, ceil_mode=True, return_indices=True)
        ty, ti = F.max_pool2d(to_torch(x), k, s, p, ceil_mode=True, return_indices=True)
        _record("max_pool2d", y, ty.numpy(), dtype)
        _record_exact("max_pool2d indices", idx, ti.numpy())
        for cip in (True, False):
            a = gpucnn.avg_pool2d(x, k, s, p, ceil_mode=True, count_include_pad=cip)
            _record("avg_pool2d", a, F.avg_pool2d(to_torch(x), k, s, p, True, cip).numpy(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_window_missing_the_plane_is_rejected(backend, dtype):
    # Dilation 3 with taps at rows -1 and 2 of a 2-row input: no tap is in the
    # plane. torch returns -inf and an index outside the plane (6); we refuse
    # the geometry instead of returning an index that is not in the window.
    x = np.ones((1, 1, 2, 2), dtype)
    with pytest.raises(ValueError, match="no tap inside the input"):
        gpucnn.max_pool2d(x, 2, 1, 1, 3, return_indices=True)
    with pytest.raises(ValueError, match="no tap inside the input"):
        gpucnn.max_pool2d_backward(np.ones((1, 1, 1, 1), dtype), x, 2, 1, 1, 3)


# ------------------------------------------------------ finite differences

def _numgrad(f, x, eps=1e-3):
    x = x.copy()
    g = np.empty_like(x)
    for k in range(x.size):
        v = x.flat[k]
        x.flat[k] = v + eps
        fp = f(x)
        x.flat[k] = v - eps
        fm = f(x)
        x.flat[k] = v
        g.flat[k] = (fp - fm) / (2 * eps)
    return g


def test_max_pool_backward_finite_differences(backend):
    rng = np.random.default_rng(11)
    for case in range(6):
        shape, g = _geometry(rng, asym=bool(case % 2), kmax=3)
        # Cropping to 6 keeps the (at most 5-wide) dilated kernel inside.
        shape = (1, 2, min(shape[2], 6), min(shape[3], 6))
        # Distinct values spaced by 1 (a permutation, as MatConvNet's nnpool
        # test), so a step of 1e-3 never changes an argmax.
        x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64)
        w = rng.standard_normal(gpucnn.max_pool2d(x, **g).shape)
        num = _numgrad(lambda z: float(np.sum(w * gpucnn.max_pool2d(z, **g))), x)
        np.testing.assert_allclose(gpucnn.max_pool2d_backward(w, x, **g), num, **FD_TOL)


@pytest.mark.parametrize("cip", [True, False])
def test_avg_pool_backward_finite_differences(backend, cip):
    rng = np.random.default_rng(12 + cip)
    for case in range(6):
        shape, g = _geometry(rng, dilation=False, asym=bool(case % 2), kmax=3)
        g.pop("dilation")
        shape = (1, 2, min(shape[2], 6), min(shape[3], 6))
        x = rng.standard_normal(shape)
        w = rng.standard_normal(gpucnn.avg_pool2d(x, count_include_pad=cip, **g).shape)
        num = _numgrad(lambda z: float(np.sum(w * gpucnn.avg_pool2d(z, count_include_pad=cip, **g))), x)
        dx = gpucnn.avg_pool2d_backward(w, x, count_include_pad=cip, **g)
        np.testing.assert_allclose(dx, num, **FD_TOL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fours", [True, False], ids=["fours", "generic"])
def test_max_pool_backward_adds_shared_argmax_in_window_order(dtype, fours, monkeypatch):
    """3x3/2 on a 5x5 plane whose one maximum (2, 2) lies in all four windows: the kernels'
    gathers (pool2d.cu's max_bwd_fours, 4 inputs a thread, and max_bwd's 2 x 2 window path)
    add the four gradients in for_windows' order, (1, 1), (1, 0), (0, 1), (0, 0):
    ((d + c) + b) + a, worked by hand. With a = c = 1, b = 1e8, d = -1e8: -1e8 + 1 rounds to
    -1e8 in float32 (and is exact in float64), so the order shows: float32 gives 1, float64
    gives 2; every other input gets 0."""
    monkeypatch.setattr(cuda_pool, "USE_PAIRS", fours)
    x = np.zeros((1, 1, 5, 5), dtype)
    x[0, 0, 2, 2] = 1
    dy = np.array([[1, 1e8], [1, -1e8]], dtype)[None, None]
    want = np.zeros_like(x)
    want[0, 0, 2, 2] = 1 if dtype == np.float32 else 2
    with gpucnn.use_backend("emulator"):
        got = gpucnn.max_pool2d_backward(dy, x, kernel_size=3, stride=2)
    np.testing.assert_array_equal(got, want)
