"""conv2d, conv_transpose2d, im2col and col2im, on every backend.

Cross-checked against torch.nn.functional (gradients by autograd) over random
geometries from a seeded generator, checked by central differences in
float64, and against small examples worked by hand as in "CNN for Dummies" §4.2.
``pytest --crosscheck-report`` prints the worst relative error per op.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn.reference import workspace

pytestmark = pytest.mark.family("conv")

from crosscheck import check, directional_fd, randn  # noqa: E402

DTYPES = (np.float32, np.float64)

def conv_case(seed):
    """A random conv2d geometry that fits; also returns the option tags it exercises."""
    rng = np.random.default_rng(seed)
    tags = set()
    groups = int(rng.choice([1, 1, 2, 3]))
    C = groups * int(rng.integers(1, 4))
    K = groups * int(rng.integers(1, 4))
    if rng.random() < 0.2:
        groups, K = C, C * int(rng.integers(1, 3))
        tags.add("depthwise")
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    sh, sw = (int(v) for v in rng.integers(1, 3, 2))
    dh, dw = (int(v) for v in rng.integers(1, 3, 2))
    form = int(rng.integers(3))
    pads = [int(v) for v in rng.integers(0, 3, 4)]
    if form == 0:
        padding, pad4 = pads[0], (pads[0],) * 4
    elif form == 1:
        padding, pad4 = (pads[0], pads[2]), (pads[0], pads[0], pads[2], pads[2])
    else:
        padding, pad4 = tuple(pads), tuple(pads)
        tags.add("pad4")
    H = max(1, dh * (kh - 1) + 1 - pad4[0] - pad4[1] + int(rng.integers(0, 5)))
    W = max(1, dw * (kw - 1) + 1 - pad4[2] - pad4[3] + int(rng.integers(0, 5)))
    N = int(rng.integers(1, 4))
    bias = bool(rng.random() < 0.6)
    tags |= {t for t, on in [("stride", sh * sw > 1), ("dilation", dh * dw > 1), ("pad", any(pad4)),
                             ("groups", groups > 1), ("bias", bias), ("1x1", kh * kw == 1),
                             ("N=1", N == 1), ("C=1", C == 1), ("K=1", K == 1)] if on}
    return dict(shape=(N, C, H, W), w=(K, C // groups, kh, kw), stride=(sh, sw), padding=padding,
                pad4=pad4, dilation=(dh, dw), groups=groups, bias=bias), tags


EDGE = [  # (x shape, w shape, stride, padding, dilation, groups, tags)
    ((1, 1, 3, 3), (1, 1, 3, 3), 1, 0, 1, 1, {"full-kernel", "N=1", "C=1", "K=1"}),
    ((2, 3, 4, 5), (4, 3, 6, 7), 1, 1, 1, 1, {"full-kernel", "pad"}),
    ((2, 3, 3, 4), (2, 3, 4, 3), 1, (1, 0, 0, 1), 1, 1, {"full-kernel", "pad4"}),
    ((2, 5, 6, 6), (7, 5, 1, 1), 1, 0, 1, 1, {"1x1"}),
    ((2, 4, 7, 7), (4, 4, 1, 1), 2, 0, 1, 1, {"1x1", "stride"}),
    ((3, 6, 9, 8), (6, 1, 3, 3), 1, 1, 1, 6, {"depthwise", "pad"}),
    ((2, 4, 9, 9), (8, 1, 3, 3), 2, (2, 1), (2, 1), 4, {"depthwise", "stride", "dilation"}),
    ((1, 1, 5, 5), (1, 1, 2, 2), 3, (0, 2, 1, 0), 2, 1, {"pad4", "stride", "dilation"}),
    ((2, 6, 8, 8), (9, 2, 3, 2), (2, 3), 1, 1, 3, {"groups", "stride"}),
]


def conv_cases():
    cases = [pytest.param(*conv_case(s), id=f"rand{s}") for s in range(24)]
    for i, (xs, ws, s, p, d, g, tags) in enumerate(EDGE):
        pad4 = (p,) * 4 if isinstance(p, int) else (p[0], p[0], p[1], p[1]) if len(p) == 2 else p
        case = dict(shape=xs, w=ws, stride=s, padding=p, pad4=pad4, dilation=d, groups=g, bias=i % 2 == 0)
        cases.append(pytest.param(case, tags | ({"bias"} if i % 2 == 0 else set()), id=f"edge{i}"))
    return cases


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case,tags", conv_cases())
def test_conv2d_matches_torch(backend, case, tags, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng([*case["shape"], *case["w"]])
    x, w = randn(rng, case["shape"], dtype), randn(rng, case["w"], dtype)
    b = randn(rng, case["w"][0], dtype) if case["bias"] else None
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
    t, bo, l, r = case["pad4"]
    xt = torch.tensor(np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r))), requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if b is not None else None
    yt = F.conv2d(xt, wt, bt, case["stride"], 0, case["dilation"], case["groups"])
    y = gpucnn.conv2d(x, w, b, **kw)
    check("conv2d", y, yt.detach().numpy(), dtype, tags)

    dy = randn(rng, y.shape, dtype)
    grads = torch.autograd.grad(yt, [a for a in (xt, wt, bt) if a is not None], torch.tensor(dy))
    dx, dw, db = gpucnn.conv2d_backward(dy, x, w, bias=b is not None, **kw)
    H, W = x.shape[2:]
    check("conv2d_backward.dx", dx, grads[0].numpy()[:, :, t:t + H, l:l + W], dtype, tags)
    check("conv2d_backward.dw", dw, grads[1].numpy(), dtype, tags)
    if b is None:
        assert db is None
    else:
        check("conv2d_backward.db", db, grads[2].numpy(), dtype, tags)


def transpose_case(seed):
    rng = np.random.default_rng(1000 + seed)
    groups = int(rng.choice([1, 1, 2, 3]))
    Cin, Cout = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    s = tuple(int(v) for v in rng.integers(1, 4, 2))
    d = tuple(int(v) for v in rng.integers(1, 3, 2))
    p = tuple(int(rng.integers(0, (d[a] * ((kh, kw)[a] - 1)) // 2 + 1)) for a in range(2))
    # torch allows output_padding < max(stride, dilation); keep it below the stride here.
    op = tuple(int(rng.integers(0, s[a])) for a in range(2))
    H, W = (int(v) for v in rng.integers(1, 5, 2))
    tags = {t for t, on in [("stride", max(s) > 1), ("dilation", max(d) > 1), ("pad", any(p)),
                            ("output_padding", any(op)), ("groups", groups > 1)] if on}
    return (int(rng.integers(1, 3)), Cin, H, W), (Cin, Cout // groups, kh, kw), s, p, op, groups, d, tags


TRANSPOSE = [pytest.param(*transpose_case(s), id=f"rand{s}") for s in range(16)] + [
    pytest.param((1, 4, 3, 3), (4, 1, 3, 3), 2, 1, 1, 4, 1, {"depthwise", "output_padding"}, id="depthwise"),
    pytest.param((1, 2, 4, 4), (2, 3, 3, 3), 1, 0, 1, 1, 2, {"output_padding>=stride"},
                 id="opad_ge_stride_lt_dilation"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,stride,padding,opad,groups,dilation,tags", TRANSPOSE)
def test_conv_transpose2d_matches_torch(backend, xs, ws, stride, padding, opad, groups, dilation, tags, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng([*xs, *ws])
    x, w, b = randn(rng, xs, dtype), randn(rng, ws, dtype), randn(rng, ws[1] * groups, dtype)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    args = (stride, padding, opad, groups, dilation)
    yt = torch.nn.functional.conv_transpose2d(xt, wt, bt, *args)
    y = gpucnn.conv_transpose2d(x, w, b, *args)
    check("conv_transpose2d", y, yt.detach().numpy(), dtype, tags)
    dy = randn(rng, y.shape, dtype)
    gx, gw, gb = torch.autograd.grad(yt, (xt, wt, bt), torch.tensor(dy))
    dx, dw, db = gpucnn.conv_transpose2d_backward(dy, x, w, *args)
    check("conv_transpose2d_backward.dx", dx, gx.numpy(), dtype, tags)
    check("conv_transpose2d_backward.dw", dw, gw.numpy(), dtype, tags)
    check("conv_transpose2d_backward.db", db, gb.numpy(), dtype, tags)
    assert gpucnn.conv_transpose2d_backward(dy, x, w, *args, bias=False)[2] is None


UNFOLD = [  # x shape, kernel, stride, padding, dilation
    ((2, 3, 6, 7), 3, 1, 0, 1), ((1, 2, 7, 5), (2, 3), (2, 1), (1, 2), (1, 2)),
    ((3, 1, 5, 5), 5, 1, 0, 1), ((2, 2, 4, 4), 1, 3, 1, 1), ((1, 3, 9, 8), (3, 2), 2, 1, (2, 3)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,k,s,p,d", UNFOLD)
def test_im2col_col2im_match_torch(backend, xs, k, s, p, d, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(list(xs))
    x = randn(rng, xs, dtype)
    cols = gpucnn.im2col(x, k, s, p, d)
    want = torch.nn.functional.unfold(torch.tensor(x), k, d, p, s).numpy()
    check("im2col", cols, want, dtype, {"stride", "pad", "dilation"})
    c = randn(rng, cols.shape, dtype)
    back = gpucnn.col2im(c, xs[2:], k, s, p, d)
    check("col2im", back, torch.nn.functional.fold(torch.tensor(c), xs[2:], k, d, p, s).numpy(), dtype)


@pytest.mark.parametrize("seed", range(6))
def test_conv2d_backward_finite_differences(backend, seed):
    case, _ = conv_case(100 + seed)
    rng = np.random.default_rng(seed)
    x, w = randn(rng, case["shape"], np.float64), randn(rng, case["w"], np.float64)
    b = randn(rng, case["w"][0], np.float64)
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
    r = randn(rng, gpucnn.conv2d(x, w, b, **kw).shape, np.float64)
    grads = gpucnn.conv2d_backward(r, x, w, **kw)
    directional_fd(lambda x, w, b: np.sum(r * gpucnn.conv2d(x, w, b, **kw)), (x, w, b), grads, rng)


@pytest.mark.parametrize("seed", range(4))
def test_conv_transpose2d_backward_finite_differences(backend, seed):
    xs, ws, s, p, op, g, d, _ = transpose_case(200 + seed)
    rng = np.random.default_rng(seed)
    x, w, b = randn(rng, xs, np.float64), randn(rng, ws, np.float64), randn(rng, ws[1] * g, np.float64)
    args = (s, p, op, g, d)
    r = randn(rng, gpucnn.conv_transpose2d(x, w, b, *args).shape, np.float64)
    grads = gpucnn.conv_transpose2d_backward(r, x, w, *args)
    directional_fd(lambda x, w, b: np.sum(r * gpucnn.conv_transpose2d(x, w, b, *args)), (x, w, b), grads, rng)


# The seed's convolution example style (§4.2): a 3x3 input, a 2x2 kernel, by hand.
X3 = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)        # [[1 2 3] [4 5 6] [7 8 9]]
K2 = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_by_hand(backend, dtype):
    x, w = X3.astype(dtype), K2.astype(dtype)
    # y[0,0] = 1*1 + 2*2 + 4*3 + 5*4 = 37, and so on: a correlation, as torch's.
    np.testing.assert_allclose(gpucnn.conv2d(x, w, np.array([0.5], dtype)), [[[[37.5, 47.5], [67.5, 77.5]]]])
    dx, dw, db = gpucnn.conv2d_backward(np.ones((1, 1, 2, 2), dtype), x, w)
    # dx: every pixel collects the taps that read it; dw: the sum of the four patches.
    np.testing.assert_allclose(dx, [[[[1, 3, 2], [4, 10, 6], [3, 7, 4]]]])
    np.testing.assert_allclose(dw, [[[[12, 16], [24, 28]]]])
    np.testing.assert_allclose(db, [4])


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_col2im_by_hand(backend, dtype):
    cols = gpucnn.im2col(X3.astype(dtype), 2)
    # Row i*kw + j holds tap (i, j) of every window, windows in row-major order.
    want = [[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9]]
    np.testing.assert_array_equal(cols, [want])
    padded = gpucnn.im2col(np.array([[[[1.0, 2.0]]]], dtype), (1, 2), stride=(1, 2), padding=(0, 1))
    np.testing.assert_array_equal(padded, [[[0, 2], [1, 0]]])
    # Folding ones counts how many windows cover each pixel: the overlaps add up.
    counts = gpucnn.col2im(np.ones((1, 4, 4), dtype), (3, 3), 2)
    np.testing.assert_array_equal(counts, [[[[1, 2, 1], [2, 4, 2], [1, 2, 1]]]])
    np.testing.assert_array_equal(gpucnn.col2im(cols, (3, 3), 2), X3 * counts)
    strided = gpucnn.col2im(np.ones((1, 1, 4), dtype), (3, 3), 1, stride=2)
    np.testing.assert_array_equal(strided, [[[[1, 0, 1], [0, 0, 0], [1, 0, 1]]]])


def test_noncontiguous_inputs_and_inputs_unchanged(backend):
    rng = np.random.default_rng(7)
    x = randn(rng, (3, 8, 4, 12), np.float32).transpose(0, 2, 1, 3)[:, :, :, ::2]   # (3, 4, 8, 6)
    w = randn(rng, (2, 3, 2, 12), np.float32).transpose(3, 0, 2, 1)[::2]            # (6, 2, 2, 3)
    b = randn(rng, (12,), np.float32)[::2]
    kw = dict(stride=(1, 2), padding=(1, 0, 2, 1), groups=2)
    y = gpucnn.conv2d(x, w, b, **kw)
    dy = randn(rng, y.shape[::-1], np.float32).T
    cols = np.asfortranarray(gpucnn.im2col(np.ascontiguousarray(x), 3))
    saved = [a.copy() for a in (x, w, b, dy, cols)]
    got = [y, *gpucnn.conv2d_backward(dy, x, w, **kw), gpucnn.im2col(x, 3, 2, 1),
           gpucnn.conv_transpose2d(dy, w, None, 1, 0, 0, 2), gpucnn.col2im(cols, (8, 6), 3)]
    c = [np.ascontiguousarray(a) for a in (x, w, b, dy, cols)]
    want = [gpucnn.conv2d(c[0], c[1], c[2], **kw), *gpucnn.conv2d_backward(c[3], c[0], c[1], **kw),
            gpucnn.im2col(c[0], 3, 2, 1), gpucnn.conv_transpose2d(c[3], c[1], None, 1, 0, 0, 2),
            gpucnn.col2im(c[4], (8, 6), 3)]
    for g, wnt in zip(got, want):
        check("noncontiguous", g, wnt, np.float32, record=False)
    for a, s in zip((x, w, b, dy, cols), saved):
        np.testing.assert_array_equal(a, s)


def _bad_conv_calls():
    f4, f8 = np.float32, np.float64
    x, w, b = np.zeros((2, 4, 5, 5), f4), np.zeros((6, 4, 3, 3), f4), np.zeros(6, f4)
    dy = np.zeros((2, 6, 3, 3), f4)
    xt, wt = np.zeros((1, 4, 3, 3), f4), np.zeros((4, 2, 3, 3), f4)
    conv = gpucnn.conv2d
    return [  # (call, error type, regex naming the argument)
        ("x ndim", lambda: conv(x[0, 0], w), ValueError, r"\bx must be 3-D or 4-D"),
        ("dy batched, x not", lambda: gpucnn.conv2d_backward(dy, x[0], w), ValueError, r"\bdy must be 3-D"),
        ("padding string", lambda: conv(x, w, padding="full"), ValueError, r"\bpadding must be 'same'"),
        ("transpose padding string", lambda: gpucnn.conv_transpose2d(xt, wt, padding="same"), TypeError,
         r"\bpadding must be an int"),
        ("w ndim", lambda: conv(x, w[0]), ValueError, r"\bw must be 4-D"),
        ("channel mismatch", lambda: conv(x, w[:, :3]), ValueError, r"channels"),
        ("groups vs C", lambda: conv(x[:, :3], w[:, :1], groups=2), ValueError, r"groups"),
        ("groups vs K", lambda: conv(x, np.zeros((3, 2, 3, 3), f4), groups=2), ValueError, r"groups"),
        ("groups zero", lambda: conv(x, w, groups=0), ValueError, r"groups"),
        ("kernel too big", lambda: conv(x, np.zeros((1, 4, 6, 3), f4)), ValueError, r"kernel .*larger"),
        ("dilated kernel too big", lambda: conv(x, w, dilation=3), ValueError, r"kernel .*larger"),
        ("stride 0", lambda: conv(x, w, stride=0), ValueError, r"\bstride\b"),
        ("stride -1", lambda: conv(x, w, stride=(1, -1)), ValueError, r"\bstride\b"),
        ("dilation 0", lambda: conv(x, w, dilation=0), ValueError, r"\bdilation\b"),
        ("padding -1", lambda: conv(x, w, padding=-1), ValueError, r"\bpadding\b"),
        ("padding4 -1", lambda: conv(x, w, padding=(0, 0, -1, 0)), ValueError, r"\bpadding\b"),
        ("padding 3 ints", lambda: conv(x, w, padding=(1, 1, 1)), TypeError, r"\bpadding\b"),
        ("stride float", lambda: conv(x, w, stride=1.5), TypeError, r"\bstride\b"),
        ("int x", lambda: conv(x.astype(np.int32), w), TypeError, r"\bx must be float"),
        ("complex w", lambda: conv(x, w.astype(np.complex64)), TypeError, r"\bw must be float"),
        ("mixed dtypes", lambda: conv(x, w.astype(f8)), TypeError, r"dtype"),
        ("bias dtype", lambda: conv(x, w, b.astype(f8)), TypeError, r"dtype"),
        ("bias shape", lambda: conv(x, w, b[:5]), ValueError, r"\bb must have shape"),
        ("bias ndim", lambda: conv(x, w, b[None]), ValueError, r"\bb must be 1-D"),
        ("dy shape", lambda: gpucnn.conv2d_backward(dy[:, :5], x, w), ValueError, r"\bdy must have shape"),
        ("dy dtype", lambda: gpucnn.conv2d_backward(dy.astype(f8), x, w), TypeError, r"dtype"),
        ("bias flag", lambda: gpucnn.conv2d_backward(dy, x, w, bias=1), TypeError, r"\bbias\b"),
        ("transpose w.shape[0]", lambda: gpucnn.conv_transpose2d(xt, wt[:3]), ValueError, r"w\.shape\[0\]"),
        ("transpose groups", lambda: gpucnn.conv_transpose2d(xt[:, :3], wt[:3], groups=2), ValueError, r"groups"),
        ("transpose output_padding", lambda: gpucnn.conv_transpose2d(xt, wt, stride=2, output_padding=2),
         ValueError, r"output_padding"),
        ("transpose padding 4", lambda: gpucnn.conv_transpose2d(xt, wt, padding=(1, 1, 1, 1)), TypeError, r"\bpadding\b"),
        ("transpose dy shape", lambda: gpucnn.conv_transpose2d_backward(np.zeros((1, 2, 4, 4), f4), xt, wt),
         ValueError, r"\bdy must have shape"),
        ("im2col kernel", lambda: gpucnn.im2col(x, 6), ValueError, r"kernel .*larger"),
        ("im2col ndim", lambda: gpucnn.im2col(x[0, 0], 2), ValueError, r"\bx must be 3-D or 4-D"),
        ("col2im ndim", lambda: gpucnn.col2im(np.zeros(4, f4), (3, 3), 2), ValueError, r"\bcols must be 2-D or 3-D"),
        ("im2col kernel_size 0", lambda: gpucnn.im2col(x, 0), ValueError, r"kernel_size"),
        ("col2im length", lambda: gpucnn.col2im(np.zeros((1, 4, 5), f4), (3, 3), 2), ValueError, r"\bcols\b"),
        ("col2im rows", lambda: gpucnn.col2im(np.zeros((1, 5, 4), f4), (3, 3), 2), ValueError, r"\bcols\b"),
        ("col2im int", lambda: gpucnn.col2im(np.zeros((1, 4, 4), np.int64), (3, 3), 2), TypeError, r"\bcols\b"),
    ]


@pytest.mark.parametrize("i", range(len(_bad_conv_calls())))
def test_bad_arguments_raise(backend, i):
    what, call, exc, pattern = _bad_conv_calls()[i]
    with pytest.raises(exc, match=pattern):
        call()


@pytest.fixture
def workspace_limit():
    yield workspace.set_limit
    workspace.set_limit(None)


@pytest.mark.parametrize("limit", [1, 3000, 40_000])
def test_workspace_chunks_give_the_same_results(backend, workspace_limit, limit):
    rng = np.random.default_rng(limit)
    x, w, b = randn(rng, (5, 4, 9, 7), np.float64), randn(rng, (6, 2, 3, 2), np.float64), randn(rng, 6, np.float64)
    kw = dict(stride=(2, 1), padding=(1, 2, 0, 1), dilation=(1, 2), groups=2)
    y = gpucnn.conv2d(x, w, b, **kw)
    dy = randn(rng, y.shape, np.float64)
    want = [y, *gpucnn.conv2d_backward(dy, x, w, **kw)]
    workspace_limit(limit)  # 1 byte: one output row at a time; 3000: rows; 40_000: images
    got = [gpucnn.conv2d(x, w, b, **kw), *gpucnn.conv2d_backward(dy, x, w, **kw)]
    for g, wnt in zip(got, want):
        check("workspace", g, wnt, np.float64, record=False)


def test_workspace_bound_is_kept(monkeypatch, workspace_limit):
    from gpucnn.reference import conv
    seen = []

    def spy(build):
        def spied(xp, win, p0, p1):
            v = build(xp, win, p0, p1)
            seen.append(v.size * v.itemsize)
            return v
        return spied

    # φ in unfold's layout (conv._taps) or as im2row rows (im2row.rows).
    from gpucnn.reference import im2row
    monkeypatch.setattr(conv, "_taps", spy(conv._taps))
    monkeypatch.setattr(im2row, "rows", spy(im2row.rows))
    # 7 filters for 3 channels: the input gradient folds (conv_algo.FOLD), so
    # every φ built is x's.
    x, w = np.ones((8, 3, 10, 10)), np.ones((7, 3, 3, 3))
    row = 3 * 9 * 8 * 8            # bytes of one output row of φ
    for limit, most in [(row * 8 * 3, row * 8 * 3), (row * 3, row * 3), (1, row)]:
        workspace_limit(limit)
        seen.clear()
        with gpucnn.use_backend("numpy"):
            gpucnn.conv2d(x, w)
            gpucnn.conv2d_backward(np.ones((8, 7, 8, 8)), x, w)
        assert seen and max(seen) <= most


def test_workspace_limit_from_environment(monkeypatch, workspace_limit):
    monkeypatch.setenv("GPUCNN_WORKSPACE_MB", "2")
    assert workspace.get_limit() == 2 * 2**20
    workspace_limit(1234)
    assert workspace.get_limit() == 1234
    workspace_limit(None)
    monkeypatch.delenv("GPUCNN_WORKSPACE_MB")
    assert workspace.get_limit() == workspace.DEFAULT_BYTES
    with pytest.raises(ValueError, match="nbytes"):
        workspace_limit(0)
