"""The NumPy backend's own choices (gpucnn.reference.conv_algo, the workspace
threads): each algorithm against another, and results that do not depend on
the thread count or on a busy BLAS."""
from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn.functional.conv import _conv_geometry
from gpucnn.reference import conv, conv_algo, linear, norm, products, workspace

from crosscheck import randn  # noqa: E402

# (x shape, w shape, stride, padding, dilation, groups): 3x3 and 5x5, dilation,
# asymmetric padding, groups, zero padding; all at unit stride.
TRANSPOSED_CASES = [((3, 6, 9, 8), (4, 6, 3, 3), 1, 1, 1, 1),
                    ((2, 6, 10, 7), (4, 3, 5, 3), 1, (2, 0, 1, 2), (1, 2), 2),
                    ((2, 4, 7, 7), (4, 4, 3, 2), 1, 0, 1, 1),
                    ((1, 3, 12, 11), (3, 3, 3, 3), 1, 2, 2, 1)]


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=lambda c: "x{}w{}".format(*c[:2]))
def test_transposed_backward_data_is_the_fold(case):
    # The gather (a forward convolution of dy) and the scatter (§6's reverse
    # operator), two computations of the same sums, in float64.
    xs, ws, stride, padding, dilation, groups = case
    g = _conv_geometry(xs, ws, stride, padding, dilation, groups)
    assert conv_algo.choose(g) == conv_algo.UNFOLD
    assert conv_algo.choose_backward_data(g) == conv_algo.TRANSPOSED
    rng = np.random.default_rng(5)
    w, dy = randn(rng, ws, np.float64), randn(rng, (xs[0], ws[0], g.win.P, g.win.Q), np.float64)
    gathered = conv.conv2d_backward_data(dy, w, g, conv_algo.TRANSPOSED)
    folded = conv.conv2d_backward_data(dy, w, g, conv_algo.FOLD)
    assert gathered.shape == xs
    np.testing.assert_allclose(gathered, folded, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,stride,groups", [(3, 1, 1), (3, 2, 2), (1, 1, 1), (1, 2, 1), (3, 2, 1), (2, 1, 1)])
def test_product_layouts_agree(monkeypatch, kernel, stride, groups):
    # The forward and the filter gradient with the images side by side (one
    # product a chunk), one product an image, and (no groups) φ as im2row
    # rows: the same sums, in float64.
    rng = np.random.default_rng(9)
    x, w = randn(rng, (5, 4, 11, 10), np.float64), randn(rng, (6, 4 // groups, kernel, kernel), np.float64)
    g = _conv_geometry(x.shape, w.shape, stride, kernel // 2, 1, groups)
    dy = randn(rng, (5, 6, g.win.P, g.win.Q), np.float64)
    got = []
    # Each layout, and the filter gradient's product in either order.
    big = 10**9
    for pixels, filters, rows in [(0, 0, 0), (0, big, 0), (big, 0, 0), (big, big, 0), (0, 0, big)]:
        monkeypatch.setattr(conv_algo, "SIDE_BY_SIDE_PIXELS", pixels)
        monkeypatch.setattr(conv_algo, "FEW_FILTERS", filters)
        monkeypatch.setattr(conv_algo, "ROWS_PIXELS", rows)
        monkeypatch.setattr(conv_algo, "ROWS_MIN_CHANNELS", 10**9)
        assert conv_algo.side_by_side(g) == bool(pixels) and conv_algo.few_filters(g) == bool(filters)
        assert conv_algo.as_rows(g) == conv_algo.as_rows(g, forward=True) == (bool(rows) and groups == 1
                                                                              and kernel > 1)
        got.append((conv.conv2d_forward(x, w, None, g), conv.conv2d_backward_filter(dy, x, g)))
    for other in got[1:]:
        for a, b in zip(got[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_column_blocks_match_whole_products(monkeypatch):
    # 16 filters over 16x3x3 taps on 17x17 images: the forward's product
    # runs in column blocks (conv_algo.column_block), here of 100 pixels with
    # a ragged last one, against one product an image, in float64.
    rng = np.random.default_rng(4)
    x, w = randn(rng, (3, 16, 17, 17), np.float64), randn(rng, (16, 16, 3, 3), np.float64)
    g = _conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    got = []
    for block in (100, 10**9):
        monkeypatch.setattr(conv_algo, "COLUMN_BLOCK", block)
        assert conv_algo.column_block(g) == (block if block < 289 else None)
        got.append(conv.conv2d_forward(x, w, None, g))
    np.testing.assert_allclose(got[0], got[1], rtol=1e-12, atol=1e-12)


def test_rows_of_wide_channels_match_unfold(monkeypatch):
    # 32 channels and filters on 16x32 float64 images: planes 4 KiB apart
    # (the channels-last copy goes through a padded copy), forward as rows
    # against unfold's layout.
    rng = np.random.default_rng(6)
    x, w = randn(rng, (2, 32, 16, 32), np.float64), randn(rng, (32, 32, 3, 3), np.float64)
    g = _conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    assert conv_algo.as_rows(g, forward=True) and not conv_algo.as_rows(g)
    rows = conv.conv2d_forward(x, w, None, g)
    monkeypatch.setattr(conv_algo, "ROWS_MIN_CHANNELS", 10**9)
    np.testing.assert_allclose(rows, conv.conv2d_forward(x, w, None, g), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rows", [0, 10**9])
def test_empty_batch_in_either_layout(monkeypatch, rows):
    # No images: y and dx empty, dw and db zeros of x's dtype, as torch gives.
    monkeypatch.setattr(conv_algo, "ROWS_PIXELS", rows)
    x, w = np.zeros((0, 4, 8, 8), np.float32), np.ones((6, 4, 3, 3), np.float32)
    g = _conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    assert conv_algo.as_rows(g) == bool(rows)
    assert conv.conv2d_forward(x, w, None, g).shape == (0, 6, 8, 8)
    dw = conv.conv2d_backward_filter(np.zeros((0, 6, 8, 8), np.float32), x, g)
    assert dw.dtype == np.float32 and dw.shape == w.shape and not dw.any()


def test_algorithm_choice():
    geo = lambda xs, ws, s=1, p=0, d=1, gr=1: _conv_geometry(xs, ws, s, p, d, gr)  # noqa: E731
    assert conv_algo.choose(geo((2, 4, 8, 8), (4, 1, 3, 3), gr=4)) == conv_algo.DEPTHWISE
    assert conv_algo.choose(geo((2, 4, 8, 8), (6, 4, 1, 1))) == conv_algo.POINTWISE
    assert conv_algo.choose(geo((2, 4, 8, 8), (6, 4, 1, 1), s=2)) == conv_algo.UNFOLD
    assert conv_algo.choose_backward_data(geo((2, 4, 8, 8), (6, 4, 3, 3), s=2, p=1)) == conv_algo.FOLD
    assert conv_algo.choose_backward_data(geo((2, 4, 8, 8), (4, 4, 3, 3), p=1)) == conv_algo.TRANSPOSED
    # A first layer: few input channels, many filters.
    assert conv_algo.choose_backward_data(geo((2, 3, 8, 8), (16, 3, 3, 3), p=1)) == conv_algo.FOLD
    # Larger images: im2row rows in the forward with 32 channels and filters or more.
    assert not conv_algo.as_rows(geo((2, 32, 17, 16), (32, 32, 3, 3), p=1))
    assert conv_algo.as_rows(geo((2, 32, 17, 16), (32, 32, 3, 3), p=1), forward=True)
    assert not conv_algo.as_rows(geo((2, 16, 17, 16), (32, 16, 3, 3), p=1), forward=True)
    assert not conv_algo.as_rows(geo((2, 32, 33, 32), (32, 32, 3, 3), p=1), forward=True)  # over 1024 pixels
    # 1x1 kernels and rows of over ROWS_MAX_TAPS values: never.
    assert not conv_algo.as_rows(geo((2, 32, 8, 8), (32, 32, 1, 1), s=2))
    assert not conv_algo.as_rows(geo((2, 512, 7, 7), (512, 512, 3, 3), p=1))
    assert conv_algo.as_rows(geo((2, 256, 7, 7), (512, 256, 3, 3), p=1))
    # Twice as many filters as channels: the gather for small images (im2row rows), else the fold.
    assert conv_algo.choose_backward_data(geo((2, 8, 16, 16), (16, 8, 3, 3), p=1)) == conv_algo.TRANSPOSED
    assert conv_algo.choose_backward_data(geo((2, 8, 17, 16), (16, 8, 3, 3), p=1)) == conv_algo.FOLD
    # Padding beyond the kernel's extent: the transposed convolution would need negative padding.
    assert conv_algo.choose_backward_data(geo((2, 4, 8, 8), (4, 4, 3, 3), p=3)) == conv_algo.FOLD


def _step_ops(rng):
    x, w = randn(rng, (16, 8, 12, 12), np.float32), randn(rng, (8, 8, 3, 3), np.float32)
    y = gpucnn.conv2d(x, w, padding=1)
    dy = randn(rng, y.shape, np.float32)
    yb, saved = gpucnn.batch_norm2d(x, np.ones(8, np.float32), np.zeros(8, np.float32))
    lw = randn(rng, (10, 8 * 144), np.float32)
    return (y, *gpucnn.conv2d_backward(dy, x, w, padding=1), yb, saved.mean, saved.invstd,
            *gpucnn.batch_norm2d_backward(dy, x, np.ones(8, np.float32), saved),
            *linear.linear_backward(dy[:, :1, 0, :10].reshape(16, 10), x.reshape(16, -1), lw, True))


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    # Chunks are cut by shape, not by thread count, and partial sums are added
    # in chunk order: bit for bit the same on 1 and 3 threads. Small chunks
    # so that every op makes several.
    monkeypatch.setattr(conv_algo, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(workspace, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(workspace, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(linear, "CHUNK_FLOPS", 2**14)
    runs = []
    for threads in ("1", "3"):
        monkeypatch.setenv("GPUCNN_THREADS", threads)
        with gpucnn.use_backend("numpy"):
            runs.append(_step_ops(np.random.default_rng(11)))
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


def test_blas_threads_restored():
    libs = workspace._blas()
    before = [lib.get_num_threads() for lib in libs]
    with workspace.blas_threads(1):
        assert all(lib.get_num_threads() == 1 for lib in libs)
    assert [lib.get_num_threads() for lib in libs] == before


@pytest.mark.parametrize("threads,spans", [("1", 4), ("2", 1), ("2", 4)])
def test_blas_spans_run_on_a_one_thread_blas(monkeypatch, threads, spans):
    """Every span that calls BLAS runs on a one-thread BLAS, on the serial paths too (one thread,
    one span): OpenBLAS's products on one thread and on two differ in their last bits on some
    CPUs, which made a one-thread backward differ from a three-thread one."""
    libs = workspace._blas()
    if not libs:
        pytest.skip("threadpoolctl finds no BLAS to drive here")
    monkeypatch.setenv("GPUCNN_THREADS", threads)
    seen = []
    workspace.run_spans(lambda a, b: seen.append([lib.get_num_threads() for lib in libs]),
                        [(i, i + 1) for i in range(spans)], blas=True)
    assert len(seen) == spans and all(n == [1] * len(libs) for n in seen)


def test_batch_norm_sums_are_blocked_float64():
    # Offsets 1e4 times the spread: float32 sums, or float64 E[x^2] - mean^2
    # without the shift, would lose the variance; a float64 reference keeps it.
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((40, 3, 9, 9)) * 0.1 + np.array([1e3, -2e3, 0.5]).reshape(1, 3, 1, 1))
    x = x.astype(np.float32)
    x64 = x.astype(np.float64)
    mean, invstd, _, _ = norm.batch_norm_stats(x, None, None, 0.1, 1e-5)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=2.5e-7)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x64.var(axis=(0, 2, 3)) + 1e-5), rtol=2.5e-7)


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 5), (2, 3, 1, 1)])
def test_bias_gradient_and_batch_norm_sums_of_any_size(shape):
    # Plane sums by BLAS: empty batches and planes, and 1x1 planes, too.
    dy = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    db = conv.conv2d_backward_bias(dy)
    assert db.dtype == np.float32
    np.testing.assert_array_equal(db, dy.astype(np.float64).sum(axis=(0, 2, 3)))
    dx, dgamma, dbeta = norm.batch_norm_backward(dy, dy, np.zeros(3, np.float32), np.ones(3, np.float32),
                                                 np.ones(3, np.float32), False)
    np.testing.assert_array_equal(dx, dy)
    np.testing.assert_array_equal(dbeta, db)


@pytest.mark.parametrize("small", [False, True])
def test_small_product_blocks_match_whole_products(monkeypatch, small):
    # OpenBLAS's small-kernel blocks (gpucnn.reference.products), forced on
    # or off whatever this machine's BLAS: 300 rows in blocks of 128 and a
    # ragged 44, and the filter gradient's summed partial products, against
    # one whole product in float64 (and 300 columns of aᵀ b in blocks of 128
    # and a ragged 44); then the convolutions that use them
    # (rows forward, gathered input gradient, rows filter gradient) against
    # unfold's layout, which never does.
    monkeypatch.setattr(products, "_small", small)
    assert (products.rows_block(40, 16) == 128) == small
    assert products.rows_block(1000, 64) == (8 if small else None)
    assert products.rows_block(3000, 100) is None
    rng = np.random.default_rng(12)
    a, b, d = randn(rng, (300, 40), np.float64), randn(rng, (40, 16), np.float64), randn(rng, (300, 16), np.float64)
    out = np.empty((300, 16))
    products.matmul_rows(a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)
    a2, d2 = randn(rng, (60, 300), np.float64), randn(rng, (60, 16), np.float64)
    assert (products.rows_block(60, 16) == 128) == small
    np.testing.assert_allclose(products.inner_cols(a2, d2), a2.T @ d2, rtol=1e-12, atol=1e-12)
    x, w = randn(rng, (6, 8, 9, 9), np.float64), randn(rng, (12, 8, 3, 3), np.float64)
    g = _conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    dy = randn(rng, (6, 12, 9, 9), np.float64)
    rows = (conv.conv2d_forward(x, w, None, g), conv.conv2d_backward_data(dy, w, g),
            conv.conv2d_backward_filter(dy, x, g))
    assert conv_algo.as_rows(g) and conv_algo.choose_backward_data(g) == conv_algo.TRANSPOSED
    monkeypatch.setattr(conv_algo, "ROWS_PIXELS", 0)
    monkeypatch.setattr(conv_algo, "ROWS_MIN_CHANNELS", 10**9)
    unfold = (conv.conv2d_forward(x, w, None, g), conv.conv2d_backward_data(dy, w, g, conv_algo.FOLD),
              conv.conv2d_backward_filter(dy, x, g))
    for got, want in zip(rows, unfold):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


STRIPS_CASES = [((3, 5, 9, 8), (4, 5, 3, 3), 1, 1),
                ((2, 4, 7, 10), (6, 4, 2, 3), (1, 0, 2, 1), (2, 1)),
                ((2, 3, 6, 6), (3, 3, 3, 1), 0, 1),
                ((1, 2, 5, 4), (2, 2, 1, 3), (0, 0, 2, 2), (1, 2))]


@pytest.mark.parametrize("case", STRIPS_CASES, ids=lambda c: "x{}w{}".format(*c[:2]))
def test_strips_match_unfold(monkeypatch, case):
    # φ a kernel row at a time (gpucnn.reference.strips), forced on, against
    # φ whole in unfold's layout, in float64: the forward with bias and ReLU,
    # the gathered input gradient (a forward convolution) and the filter
    # gradient; dilation, asymmetric padding, no padding, kh != kw.
    xs, ws, padding, dilation = case
    g = _conv_geometry(xs, ws, 1, padding, dilation, 1)
    rng = np.random.default_rng(13)
    x, w, b = randn(rng, xs, np.float64), randn(rng, ws, np.float64), randn(rng, (ws[0],), np.float64)
    dy = randn(rng, (xs[0], ws[0], g.win.P, g.win.Q), np.float64)
    monkeypatch.setattr(conv_algo, "ROWS_PIXELS", 0)
    monkeypatch.setattr(conv_algo, "ROWS_MIN_CHANNELS", 10**9)
    monkeypatch.setattr(products, "_small", True)
    got = []
    for width in (0, 10**9):
        monkeypatch.setattr(conv_algo, "STRIPS_MIN_WIDTH", width)
        assert conv_algo.as_strips(g) == (width == 0)
        got.append((conv.conv2d_forward(x, w, b, g, relu=True), conv.conv2d_backward_filter(dy, x, g),
                    conv.conv2d_backward_data(dy, w, g, conv_algo.TRANSPOSED)))
    for a, c in zip(*got):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_strips_where_they_pay(monkeypatch):
    # resnet20's 32x32x16 layers take strips with OpenBLAS's small kernels;
    # 3-channel stems, rows layers and products past the small kernels do not.
    monkeypatch.setattr(products, "_small", True)
    geo = lambda c, k, h: _conv_geometry((64, c, h, h), (k, c, 3, 3), 1, 1, 1, 1)  # noqa: E731
    assert conv_algo.as_strips(geo(16, 16, 32))
    assert not conv_algo.as_strips(geo(3, 16, 32))
    assert not conv_algo.as_strips(geo(32, 32, 16)) and conv_algo.as_rows(geo(32, 32, 16))
    assert not conv_algo.as_strips(geo(16, 64, 32)) and not conv_algo.as_rows(geo(16, 64, 32), forward=True)
    assert not conv_algo.as_strips(_conv_geometry((64, 16, 32, 32), (16, 16, 3, 3), 2, 1, 1, 1))
    # A workspace limit below one image's φ cuts images into bands of rows,
    # which strips do not take.
    monkeypatch.setattr(workspace, "_limit", 16 * 9 * 32 * 32 * 8 - 1)
    assert not conv_algo.as_strips(geo(16, 16, 32)) and len(conv_algo.plan(64, 16, geo(16, 16, 32).win, 8)[1]) > 1
    monkeypatch.setattr(workspace, "_limit", None)
    monkeypatch.setattr(products, "_small", False)
    assert not conv_algo.as_strips(geo(16, 16, 32))


def test_output_pool_reuses_only_unreferenced_arrays():
    # workspace.empty hands an array out again only once nothing but the pool
    # references it: not while the caller, a view of it or another output holds it.
    shape = (3, 256, 257)
    a = workspace.empty(shape, np.float32)
    address = a.ctypes.data
    b = workspace.empty(shape, np.float32)
    assert not np.shares_memory(a, b)
    view = a[1:]
    del a
    c = workspace.empty(shape, np.float32)  # a is still referenced by the view
    assert address not in (b.ctypes.data, c.ctypes.data)
    del view
    again = workspace.empty(shape, np.float32)
    assert again.ctypes.data == address and again.shape == shape
    # Small arrays are never pooled; release keeps only the arrays in use.
    assert workspace.empty((4,), np.float32) is not workspace.empty((4,), np.float32)
    del again
    workspace.release()
    held = workspace._pool[(shape, "<f4")]
    assert len(held) == 2 and all(any(x is h for h in held) for x in (b, c))


@pytest.mark.parametrize("c,hw,k,chunks", [(1, 28, 5, 2), (3, 32, 3, 2), (64, 8, 3, 4), (32, 16, 3, 8), (16, 32, 3, 10)])
def test_small_layers_take_fewer_chunks(c, hw, k, chunks):
    # Batch 64: 8 chunks, halved while a chunk of φ would hold under 2 MiB
    # (lenet's first layer 5 MB, a 3-channel stem 7 MB, 8x8x64 9.4 MB); a
    # 32x32x16 layer's 37.7 MB is capped by CHUNK_BYTES instead (7 images a chunk).
    g = _conv_geometry((64, c, hw, hw), (16, c, k, k), 1, k // 2, 1, 1)
    spans, rows = conv_algo.plan(64, c, g.win, 4)
    assert len(spans) == chunks and spans[-1][1] == 64 and rows == [(0, g.win.P)]
