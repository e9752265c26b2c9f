"""The NumPy backend's choice of convolution algorithm and work split, per
shape, in one place (the GPU kernels' choice is gpucnn/cuda/algo.py).

* ``DEPTHWISE`` (groups == C == K): the direct sum over taps of
  ``gpucnn.reference.depthwise``; im2col would make G products of inner size 1.
* ``POINTWISE`` (1x1 kernel, unit stride, no padding): φ(x) is x itself, so
  the products read x and write dx directly, with no unfold and no fold.
* ``UNFOLD``: everything else, φ(x) unfolded a chunk of images at a time into
  per-thread scratch, then one product per image of the chunk; for small
  images (``as_rows``) φ is built the seed's way, as im2row rows (one row a
  output pixel, taps and channels innermost) from a pixel-major copy of the
  chunk, and the products run pixel-major. Where OpenBLAS's small kernels
  take the products (``as_lowered``), the input is instead lowered a kernel
  column at a time (``gpucnn.reference.lowered``), and the products read φ
  from that copy in place.

The input gradient of an ``UNFOLD`` convolution is either ``FOLD``: dφ = dY Fᵀ
and the reverse of φ (§6), kh*kw strided adds into the input; or, at unit
stride, ``TRANSPOSED``: the forward convolution of dY with the filters
flipped and their in and out channels swapped, padded so that the output has
the input's size (the reverse operator written as a gather rather than a
scatter: one unfold copy instead of kh*kw adds, 1.4-2.4x faster on
resnet20's 3x3 layers where K = C); or, strided, ``PHASES``: one dense
forward convolution per stride phase of x (``gpucnn.reference.phases``),
no tap multiplying a structural zero. All stay; the tests check each
against the fold.

The work is cut into chunks of whole images (bands of output rows when one
image's φ exceeds the workspace limit) that the workspace threads take from
one queue. The chunk size depends on the shape only, not on the thread
count, so the sums come out the same on any number of threads.
"""
from __future__ import annotations

from gpucnn.reference import products, workspace

DEPTHWISE, POINTWISE, UNFOLD = "depthwise", "pointwise", "unfold"
FOLD, TRANSPOSED, PHASES = "fold", "transposed", "phases"

# φ bytes a chunk, and the fewest chunks a batch is cut into (when it has
# that many images), so that two threads have several chunks each to share
# out. 4 MiB measured 5-10% faster than 1 MiB (fewer NumPy calls a batch) and
# no slower than 8 MiB on resnet20's and lenet's layers (2-core EPYC, 1 MiB
# L2 a core, 32 MiB L3).
CHUNK_BYTES = 4 * 2**20
MIN_CHUNKS = 8
MIN_BAND_ROWS = 4
SMALL_CHUNK_BYTES = 2 * 2**20
SIDE_BY_SIDE_PIXELS = 256
FEW_FILTERS = 128
ROWS_PIXELS = 256
ROWS_FORWARD_PIXELS = 1024
ROWS_MIN_CHANNELS = 32
ROWS_MAX_TAPS = 2304
COLUMN_BLOCK = 256
STRIPS_MIN_WIDTH = 32
LOWERED_MIN_WIDTH = 16
LOWERED_WIDE_FILTERS = 64
LOWERED_PACKED_MIN_Q = 48
LOWERED_MIN_PIXELS = 2
LOWERED_MIN_CHUNKS = 2
PHASES_MIN_CHANNELS = 16


def choose(g) -> str:
    """The algorithm for the convolution ``g`` (a ``shapes.Conv``)."""
    win = g.win
    if g.groups == g.C == g.K:
        return DEPTHWISE
    if (win.kh, win.kw, win.sh, win.sw) == (1, 1, 1, 1) and not any(win.pad):
        return POINTWISE
    return UNFOLD


def choose_backward_data(g) -> str:
    """How an ``UNFOLD`` convolution's input gradient is computed: TRANSPOSED
    at unit stride where the transposed convolution's padding is nowhere
    negative (no side's padding exceeds the kernel's extent) and dy has no
    more channels than x (up to twice as many for images small enough that
    the transposed convolution builds im2row rows, ``as_rows``), else FOLD.
    The gather unfolds dy's K channels, the scatter adds into x's C: for a
    first layer (C = 1 or 3, K = 16 or 32) the fold was 2.5-4.5x faster, at
    K = 2C even at batch 64 and 1.6x faster for one 112x112 image, at K = C
    the gather 1.4-1.6x faster (batch 64); with rows, at K = 2C (14x14x16 to
    32 5x5, 8x8x32 to 64 3x3) the gather 1.4-1.5x faster, at C = 3 slower."""
    if (g.win.sh, g.win.sw) != (1, 1):
        return PHASES if phases_pay(g) else FOLD
    if min(transposed(g)) < 0:
        return FOLD
    rows = _rows_fit(g.groups, g.K, g.win) and g.win.H * g.win.W <= ROWS_PIXELS
    return TRANSPOSED if g.K <= (2 * g.C if rows else g.C) else FOLD


def phases_pay(g) -> bool:
    """Whether a strided convolution's input gradient runs as one dense
    convolution per stride phase (``gpucnn.reference.phases``), each
    lowered (``as_lowered``'s forward rule for the largest phase: its
    products in OpenBLAS's small kernels, or rows of LOWERED_PACKED_MIN_Q
    columns or more), rather than the fold: at unit dilation, no groups,
    kernels over 1x1 and PHASES_MIN_CHANNELS input channels or more.
    Channels-last dy, batch 64, 1 / 2 threads: resnet20's 3x3 stride-2
    layers 16x32x32 to 32 0.61x / 0.75x, 32x16x16 to 64 0.58x / 0.68x,
    32x64x16x16 to 128 0.70x / 0.82x. Where it lost: 16x128x16x16 to 256
    1.2x / 1.5x (8-column rows of 1024 taps: packed products), 3-channel
    7x7 and 1-channel 5x20 stems 2.8x and 6.6x (1 thread; the phases'
    products are C wide), 1x1 kernels (one phase has a tap) 1.2-1.3x on
    resnet20's shortcuts, and no step faster for the layout it keeps."""
    win = g.win
    if (g.groups != 1 or (win.dh, win.dw) != (1, 1) or win.kh * win.kw == 1 or g.C < PHASES_MIN_CHANNELS
            or not products.small_kernels()):
        return False
    taps = -(-win.kh // win.sh) * -(-win.kw // win.sw)
    return _lowered_rows_pay(-(-win.W // win.sw), taps * g.K, g.C)


def transposed(g):
    """The padding (top, bottom, left, right) of the forward convolution
    that is ``g``'s input gradient at unit stride: the kernel's extent minus
    ``g``'s padding at the top and left, and at the bottom and right what
    makes the output the input's size (rows and columns that no window
    reads, as a transposed convolution's output padding makes, get zeros)."""
    win = g.win
    eh, ew = (win.kh - 1) * win.dh, (win.kw - 1) * win.dw
    top, left = eh - win.pad[0], ew - win.pad[2]
    return top, win.H - win.P + eh - top, left, win.W - win.Q + ew - left


def side_by_side(g) -> bool:
    """Whether the products of an UNFOLD convolution's forward and filter
    gradient take a chunk's images side by side (φ channel-major, one product
    a chunk, inner or outer size n*P*Q) rather than one product an image (in
    the images' own layout, no transposed copies). Side by side where an
    image has few output pixels: 7x7 layers' per-image products of inner
    size 49 were 1.6x slower; at 32x32 the transposed copies cost more (2x
    for a 3-channel first layer)."""
    return g.win.P * g.win.Q < SIDE_BY_SIDE_PIXELS


def _rows_fit(groups, channels, win) -> bool:
    """Whether im2row rows can pay for a convolution of ``channels`` input
    channels: no groups, a kernel larger than 1x1 (a 1x1 kernel's φ is the
    input itself, or a strided sample of it, in either layout) and rows of
    at most ROWS_MAX_TAPS values (4x512x7x7 to 512 3x3, rows of 4608: the
    forward 1.1x, the filter gradient 1.75x slower as rows)."""
    return groups == 1 and win.kh * win.kw > 1 and channels * win.kh * win.kw <= ROWS_MAX_TAPS


def as_rows(g, forward: bool = False) -> bool:
    """Whether an UNFOLD convolution builds φ as im2row rows from a
    channels-last copy of the chunk (where ``_rows_fit``): for images of at
    most ROWS_PIXELS output pixels, and in the ``forward`` product also up to
    ROWS_FORWARD_PIXELS with ROWS_MIN_CHANNELS channels and filters or more.
    Small images' φ in unfold's layout is copied in runs of Q (8 or 16)
    values, in rows a run of kw*C (96 to 192); the pixel-major products then
    also run faster in OpenBLAS (its narrow side is the filters, not the
    pixels). Per chunk of a batch-64 step, 1 thread: forward and filter
    gradient 24-33% faster at 16x16x32 and 8x8x64, 10-20% at 8x8x128 to 256.
    At 32x32 the channels-last copies cost about what the products gain:
    forward 32 -> 32 channels 12-18% faster, 64 -> 64 12%, 16 -> 32 the
    same, 16 -> 16 slower (6.1 -> 7.9 ms, against the column blocks), the
    filter gradients 15-35% slower; at 56x56 and 112x112 both 5-15% slower."""
    if not _rows_fit(g.groups, g.C, g.win):
        return False
    pixels = g.win.P * g.win.Q
    if pixels <= ROWS_PIXELS:
        return True
    return forward and pixels <= ROWS_FORWARD_PIXELS and min(g.C, g.K) >= ROWS_MIN_CHANNELS


def channels_last_output(g) -> bool:
    """Whether a forward built as im2row rows returns its output as NHWC
    memory (``layout``): where its backward also builds rows (at most
    ROWS_PIXELS output pixels). Larger outputs go channel-major, as the
    layers around them want: a 32x32x32 NHWC output (vgg-small's second
    layer) fed a max pool and met its channel-major gradient, and each
    transposing copy of its 4 KiB planes took 4.2 ms (64 images, 1 thread);
    the step was 2.3% (1 thread) and 3.9% (2 threads) slower."""
    return g.win.P * g.win.Q <= ROWS_PIXELS


def as_strips(g) -> bool:
    """Whether an UNFOLD convolution's forward and filter gradient take φ a
    kernel row at a time (``gpucnn.reference.strips``) where it does not
    build im2row rows: at unit stride, no groups, kernels over 1x1, strips
    of at least STRIPS_MIN_WIDTH taps x channels, and where one image's
    product fits OpenBLAS's small kernels (``products``), as in resnet20's
    32x32x16 layers: forward 6.1 -> 4.6 ms, filter gradient 7.0 -> 4.8 ms
    (batch 64, 1 thread, 2-core Zen 4). Elsewhere they lost: 3 or 1
    channels (strips 9 or 5 wide) 1.3-1.6x slower, products past the small
    kernels (32x32x32) 1.05-1.3x, and against rows up to 2x."""
    win = g.win
    if g.groups != 1 or (win.sh, win.sw) != (1, 1) or win.kh * win.kw == 1 or as_rows(g, forward=True):
        return False
    width, columns = g.C * win.kw, win.P * (win.Q + (win.kw - 1) * win.dw)
    return (products.small_kernels() and _whole_images(g) and width >= STRIPS_MIN_WIDTH
            and g.K * width * columns <= products.SMALL_MNK)


def _whole_images(g) -> bool:
    """Whether ``plan`` never cuts an image of ``g`` into bands of rows (one
    image's φ within the workspace limit, at 8 bytes a value): the strips'
    and the lowered filter gradient's products take whole images."""
    win = g.win
    return g.C * win.kh * win.kw * win.P * win.Q * 8 <= workspace.get_limit()


def _lowered_rows_pay(columns: int, taps: int, filters: int) -> bool:
    """Whether a lowered forward's per-row products, (columns x taps) by
    (taps x filters), pay (``as_lowered``): within OpenBLAS's small kernels,
    or packed for rows of LOWERED_PACKED_MIN_Q columns or more."""
    return columns * taps * filters <= products.SMALL_MNK or columns >= LOWERED_PACKED_MIN_Q


def as_lowered(g, forward: bool = False) -> bool:
    """Whether an UNFOLD convolution's forward (or, ``forward`` False, its
    filter gradient) lowers its input a kernel column at a time
    (``gpucnn.reference.lowered``); its forward then writes NHWC memory
    (``layout``), as the rows forward does. Measured against the paths it
    replaces (2-core Zen 4, OpenBLAS SkylakeX kernels, 1 thread, batch 64
    unless said; channels-last inputs where the layer before writes them):

    * forward, 0.74-0.97x where one output row's product fits the small
      kernels (Q*kh*kw*C*K <= SMALL_MNK): resnet20's 32x32x16 3.83 against
      5.21 ms, 16x16x32 0.93x, 8x8x64 0.97x, vgg-small's 32x32x32 0.81x,
      lenet's 14x14x16 5x5 0.85x, a 128x3x32x32 stem to 64 filters 0.61x;
      past them (packed), only for wide rows, Q >= LOWERED_PACKED_MIN_Q:
      4x3x224x224 7x7/2 0.94x, 1x64x112x112 0.93x, where 32 or fewer
      columns lost 1.2-3x (8x64x32x32 to 64 filters, 7x7x512). Unit
      dilation down the rows (L's rows must be contiguous).
    * filter gradient, 0.69-0.96x at unit stride down the rows where an
      image's pixels are at least twice the strip's width (P*Q >=
      LOWERED_MIN_PIXELS*kw*C):
      resnet20's 32x32x16 3.95 against 5.71 ms, vgg-small's 32x32x32 0.70x,
      8x64x32x32 0.88x, 4x64x56x56 0.97x; below that it lost (8x8x64
      1.02x, 14x14x32 5x5 to 64 1.09x).
    * both need kw*C >= LOWERED_MIN_WIDTH: 3-channel 3x3 stems (9 wide)
      lost 1.26x (forward to 16 filters) and 1.3-1.4x (filter gradient),
      except a forward to LOWERED_WIDE_FILTERS or more filters (0.61x above);
      one channel (lenet's first layer) gained nothing.

    In a training step (in-process A/B, medians of 12 steps): resnet20
    0.93-0.95x at 1 thread, 0.92-0.93x at 2; vgg-small 0.94-0.96x and
    0.96-0.99x; lenet 0.93-0.94x and 0.95-0.97x."""
    win = g.win
    if g.groups != 1 or win.kh * win.kw == 1 or not products.small_kernels():
        return False
    if g.C * win.kw < LOWERED_MIN_WIDTH and not (forward and g.K >= LOWERED_WIDE_FILTERS):
        return False
    if forward:
        return win.dh == 1 and _lowered_rows_pay(win.Q, win.kh * win.kw * g.C, g.K)
    # Whole images, and two chunks or more (of float32): one (vgg's
    # 1x64x112x112) ran on one thread, 16.5 against 13.9 ms for the unfold
    # path's product on two BLAS threads.
    return (win.sh == 1 and _whole_images(g) and win.P * win.Q >= LOWERED_MIN_PIXELS * g.C * win.kw
            and len(plan(g.N, g.C, win, 4)[0]) >= LOWERED_MIN_CHUNKS)


def column_block(g):
    """Pixels a product of an UNFOLD forward takes at a time (None: the whole
    image), where OpenBLAS (SkylakeX kernels, on the 2-core Zen 4 VM this was
    measured on) runs a thin product faster in column blocks: F (K x CRS) by
    φ (CRS x 1024), 1 thread, GFLOP/s whole / in blocks of 256 pixels:
    K=16: CRS=72 42/82, 144 50/93, 288 47/45; K=24: 72 64/89, 144 62/100,
    288 58/56; K=32: 72 74/99, 144 62/59; K=8 or CRS=27 slower in blocks;
    K=64 no change. Each output stays one dot product over CRS (bitwise
    the same on that machine). So: 16 <= K <= 32 filters and 72 <= CRS <= 144."""
    kg, crs = g.K // g.groups, g.C // g.groups * g.win.kh * g.win.kw
    big = g.win.P * g.win.Q > COLUMN_BLOCK
    return COLUMN_BLOCK if big and 16 <= kg <= 32 and 72 <= crs <= 144 else None


def few_filters(g) -> bool:
    """Whether a group's filters are few enough (under FEW_FILTERS) that the
    filter gradient's product puts them second, as its narrow dimension."""
    return g.K // g.groups < FEW_FILTERS


def _chunk_count(total: int) -> int:
    """Chunks a batch whose φ holds ``total`` bytes is cut into: MIN_CHUNKS,
    halved (to 2 at the fewest) while chunks would hold under
    SMALL_CHUNK_BYTES. A chunk costs its NumPy calls' set-up, and on two
    threads their waits for the GIL: batch 64, 2 threads, forward / filter
    gradient in 8 chunks against 2, lenet's 1x28x28 5x5 layer (5 MB of φ)
    1.29 / 1.02 against 0.74 / 0.58 ms, a 3-channel 32x32 stem (7 MB) 1.42 /
    1.16 against 0.88 / 0.74; 8x8x64 (9.4 MB) in 4 chunks 1.93 / 1.93
    against 2.09 / 2.13 in 8; on one thread no slower."""
    n = MIN_CHUNKS
    while n > 2 and total < n * SMALL_CHUNK_BYTES:
        n //= 2
    return n


def split_bands(bands, chunks: int):
    """``bands`` of output rows [(p0, p1), ...] for a batch of ``chunks``
    chunks of images, each cut further into up to ceil(MIN_CHUNKS / chunks)
    bands of at least MIN_BAND_ROWS rows: a batch of one image (vgg's
    1x64x112x112) otherwise runs on one thread, 21.7 against 12.8 ms for
    the unfold path's one product on two BLAS threads. Bands need no sums
    across them, so the results do not change."""
    k = -(-MIN_CHUNKS // max(1, chunks))
    out = []
    for p0, p1 in bands:
        step = max(MIN_BAND_ROWS, -(-(p1 - p0) // k))
        out += [(a, min(p1, a + step)) for a in range(p0, p1, step)]
    return out


def plan(N, C, win, itemsize):
    """(spans, rows): the chunks of images [(n0, n1), ...] and the bands of
    output rows [(p0, p1), ...] each chunk runs over, so that one band of one
    chunk never holds more than ``workspace.get_limit()`` bytes of φ (at
    least one output row of one image)."""
    row = C * win.kh * win.kw * win.Q * itemsize
    limit = workspace.get_limit()
    if row * win.P <= limit:
        # Side by side, a chunk's product is n*P*Q wide: at least
        # SIDE_BY_SIDE_PIXELS, even if that makes fewer than MIN_CHUNKS chunks
        # (one 512x4608 by 4608x49 product an image of a 7x7 layer was 1.2x
        # slower than one for four images).
        fewest = max(-(-N // _chunk_count(row * win.P * N)), -(-SIDE_BY_SIDE_PIXELS // max(1, win.P * win.Q)))
        step = min(N, limit // (row * win.P), CHUNK_BYTES // (row * win.P), fewest)
        step, band = max(1, step), win.P
    else:
        step, band = 1, max(1, limit // row)
    rows = [(p0, min(win.P, p0 + band)) for p0 in range(0, win.P, band)]
    return [(n0, min(N, n0 + step)) for n0 in range(0, N, step)], rows
