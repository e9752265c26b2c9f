"""The direct families' geometry rules (gpucnn.cuda.algo decides with them;
kernels/depthwise.cu and kernels/conv2d_strip.cu run them): which
geometries the window, strip and rows kernels take, and their shared-memory
banks.

Families (backward-data):
  window  backward-data only: depthwise.cu's dy-window kernel, for groups of
          one channel whose stride phases keep at least WINDOW_MIN_TAPS taps
          of a row (wide strided stems: deepspeech keeps 10 of its 20),
          whose filter bank fits WINDOW_SMEM of shared memory and whose grid
          keeps WINDOW_MIN_LANES busy lanes an SM (window_fills). A lane owns 4
          pixels of a phase in each of 3 rows; per filter, one run of 13 dy
          values (4 LDG.128 of 512 contiguous bytes a warp) feeds up to 3 x 40
          FMAs. Model (H100, 132 SMs at 1.755-1.98 GHz, 4 instructions issued
          and one 128-byte L1 wavefront a clock per SM; sm_90 SASS: a window
          issues ~51 instructions plus ~45 per live row, 40 of them FFMA):
          deepspeech reads 0.6 windows per row tap and filter, and is
          issue-bound at ~89-101 us against cuDNN's ~61 us (45 TFLOP/s):
          1.45-1.65x; the direct kernel (155 instructions per 4 filters of a
          tap, 16 FFMA) at ~400-450 us, 6.5-7.4x. Depthwise 3x3 stays direct: 3 taps a
          phase fill 3 of a window's 10 tap slots, and each block would fill
          a bank of all K filters to use one
  strip   backward-data only: kernels/conv2d_strip.cu, for groups of 1 to 4
          channels (SMALL_C) and more than SMALL_GROUP filters (3-channel
          stems) whose filter bank fits STRIP_SMEM, where the direct kernel
          spends ~5 instructions an FMA (81 a trip for 16 FFMA on sm_90) and
          wastes a quarter of them on a fourth channel. A thread owns 8 pixels
          of a row's stride phase for all Cg channels; per filter and row tap,
          a chunk of STRIP_TAPS taps reads 11 dy values once into registers and
          the chunk's weights from shared memory (3 LDS.128 for 3 channels):
          96 FFMA in 122 issued instructions (sm_90 SASS, two filters a trip,
          bench/results/static-sm90.md), 1.27 an FMA. Phases with fewer taps run
          zero weights: cifar-stem's 3 of 4 (1.69 a useful FMA), resnet-stem's
          7 of 8 (1.45). Predicted on the H200 (gpucnn.bench.model, kernels
          alone, central): cifar-stem 18 us (was 67 direct; dy is 8 us of
          copy bandwidth), resnet-stem 119 us (was 546); 1.7x and 1.5x cuDNN
          without TF32. A block's bank holds the filters of the groups its
          threads meet (strip_bank_groups: depthwise's 2 of 256, 96 bytes).
          Groups of at most SMALL_GROUP filters stay direct
          (depthwise, small groups): each (row tap, chunk) pays ~50
          instructions of bounds tests and addresses outside the filter loop,
          which the model's loop count leaves out and few filters do not
          amortise (bench/gpu.sh's autotuning step times both on depthwise);
          one channel takes the window kernel first where a phase
          keeps WINDOW_MIN_TAPS taps and the window's grid fills the SMs
          (window_fills; its 40 FFMA in ~45 instructions a live row beat the
          strip's 64 in 128)
"""
from __future__ import annotations

import math

import numpy as np

DIRECT_BLOCKS_PER_SM = 8  # 256-thread blocks of depthwise.cu (no register cap hit)
DIRECT_THREADS = 256
ROW_OUTPUTS = 4  # depthwise.cu's DW_OUT: outputs of a row a rows-kernel thread takes
ROW_FILTERS = (3, 5)  # the filter sizes of depthwise.cu's rows kernels (filter_rows)
SMALL_GROUP = 8  # direct when both Kg and Cg are at most this
SMALL_C = 4      # backward-data direct for up to this many channels a group (stems)
WINDOW_TAPS, WINDOW_SLOTS = 10, 12  # depthwise.cu's DWW_TB, DWW_TBP: a window's taps, their slots in the bank
WINDOW_MIN_TAPS = 5  # a window's 10 tap slots at least half used
WINDOW_SMEM = 48 * 1024  # the bank in shared memory without an opt-in
WINDOW_PIXELS, WINDOW_ROWS, WARP = 4, 3, 32  # DWW_PIX, DWW_ROWS: a window lane's pixels of a phase, and rows
# The window kernel's lanes that own pixels, at least this many an SM (8 warps' worth, 2 a
# scheduler), or it leaves backward-data to the strip kernel. On an H200 (bench/results/
# gpu-2026-11-30) mnist-1's 4480 busy lanes (34 an SM: a row of 28 pixels fills 7 of a warp's
# 32 lanes) took 211 us a call against cuDNN's 32 us (6.6x), and lost 2.5x to the strip
# kernel in autotuning; deepspeech's ~152000 (1150 an SM) took 1.31x cuDNN's time.
WINDOW_MIN_LANES = 256
STRIP_TAPS = 4  # conv2d_strip.cu's STRIP_TB: a chunk's taps (its weights: whole 16-byte vectors)
STRIP_SMEM = WINDOW_SMEM  # resnet-stem's bank: 64 x 7 x 2 x 8 x 3 floats, 42 KiB (84 KiB in double: direct)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def axis_taps(k: int, stride: int, dil: int) -> int:
    """The most taps of k along an axis that one input coordinate (one stride
    phase) meets: taps i*dil = phase (mod stride) come every stride / gcd(stride, dil)."""
    return cdiv(k, stride // math.gcd(stride, dil))


def phase_taps(g) -> int:
    """The most taps of a filter row that one stride phase of the input meets (axis_taps)."""
    w = g.win
    return axis_taps(w.kw, w.sw, w.dw)


def axis_phase_taps(size_k: int, stride: int, pad: int, dil: int) -> tuple[int, ...]:
    """Per stride phase a < stride of an input axis, the taps i < size_k it
    meets: (a + pad - i*dil) % stride == 0 (each tap belongs to one phase)."""
    return tuple(sum((a + pad - i * dil) % stride == 0 for i in range(size_k)) for a in range(stride))


def phase_tap_grid(g) -> tuple[int, ...]:
    """The taps of each (row, column) stride phase of the input, row phases outer
    (kernels/conv2d_phase.cu's grid z order within a group)."""
    w = g.win
    pt, _, pl, _ = w.pad
    rows, cols = axis_phase_taps(w.kh, w.sh, pt, w.dh), axis_phase_taps(w.kw, w.sw, pl, w.dw)
    return tuple(a * b for a in rows for b in cols)


def window_strip(g) -> int:
    """Bank slots per (filter, row tap, phase) of the window kernel: whole chunks of WINDOW_SLOTS."""
    return cdiv(phase_taps(g), WINDOW_TAPS) * WINDOW_SLOTS


def window_bank_bytes(g, dtype) -> int:
    w = g.win
    return g.K * w.kh * w.sw * window_strip(g) * np.dtype(dtype).itemsize


def window_ok(g, dtype) -> bool:
    """Whether the window kernel can run ``g``: groups of one channel, the bank in shared memory."""
    return g.C == g.groups and window_bank_bytes(g, dtype) <= WINDOW_SMEM


def window_periods(win) -> tuple[int, int]:
    """(Lh, L): the row and column stride phases' periods, lcm(stride, dilation) along each axis."""
    return math.lcm(win.sh, win.dh), strip_period(win)


def window_grid(g) -> tuple[int, int]:
    """(row groups, pixel tiles) of one (image, channel, row phase, column phase) in the window
    kernel's grid: WINDOW_ROWS rows and WARP x WINDOW_PIXELS pixels of a phase each."""
    win = g.win
    Lh, L = window_periods(win)
    return cdiv(cdiv(win.H, Lh), WINDOW_ROWS), cdiv(cdiv(win.W, L), WARP * WINDOW_PIXELS)


def window_busy_lanes(g) -> int:
    """The window kernel's lanes that own at least one pixel (a row's last tile may leave most idle)."""
    win = g.win
    Lh, L = window_periods(win)
    rows, _ = window_grid(g)
    return g.N * g.C * Lh * rows * L * cdiv(cdiv(win.W, L), WINDOW_PIXELS)


def window_fills(g, sms: int) -> bool:
    """Whether the window kernel keeps WINDOW_MIN_LANES busy lanes an SM on ``sms`` SMs."""
    return window_busy_lanes(g) >= WINDOW_MIN_LANES * sms


def strip_slots(g) -> int:
    """Bank slots per (filter, row tap, phase) of the strip kernel: whole chunks of STRIP_TAPS."""
    return cdiv(phase_taps(g), STRIP_TAPS) * STRIP_TAPS


STRIP_THREADS = 256  # conv2d_strip.cu's block
STRIP_PIXELS = 8  # STRIP_PIX: pixels of one stride phase a thread owns


def strip_period(win) -> int:
    """L = lcm(sw, dw): a strip thread's pixels are L apart, so they meet the same taps."""
    return math.lcm(win.sw, win.dw)


def strip_pair_threads(g) -> int:
    """The strip kernel's threads of one (image, group) pair: a row, a phase of L and a strip of
    STRIP_PIXELS each (the kernel's thread index runs over pairs, then rows, phases and strips)."""
    win = g.win
    L = strip_period(win)
    return win.H * L * -(-(-(-win.W // L)) // STRIP_PIXELS)


def strip_bank_groups(g) -> int:
    """The groups whose filters each block of the strip kernel loads, one slot each: the (image,
    group) pairs that STRIP_THREADS consecutive threads can meet, ceil(255 / pair threads) + 1;
    0 where that is not fewer than G: then the bank holds every group's filters, by group."""
    span = -(-(STRIP_THREADS - 1) // strip_pair_threads(g)) + 1
    return span if span < g.groups else 0


def strip_bank_bytes(g, dtype) -> int:
    w = g.win
    filters = strip_bank_groups(g) * (g.K // g.groups) or g.K
    return filters * w.kh * w.sw * strip_slots(g) * (g.C // g.groups) * np.dtype(dtype).itemsize


def strip_ok(g, dtype) -> bool:
    """Whether the strip kernel can run ``g``: 1 to SMALL_C channels a group, the bank in shared memory."""
    return g.C // g.groups <= SMALL_C and strip_bank_bytes(g, dtype) <= STRIP_SMEM


def forward_rows(g) -> int:
    """KW where the direct forward runs depthwise.cu's register-row kernel
    (KW-wide filters, ROW_FILTERS, at stride and dilation 1 along rows: a
    row's inputs loaded once), else 0 (the per-tap kernel)."""
    w = g.win
    return w.kw if w.sw == 1 and w.dw == 1 and w.kw in ROW_FILTERS else 0


def filter_rows(g) -> int:
    """KS where the direct filter gradient runs depthwise.cu's rows kernel
    (KS x KS filters, ROW_FILTERS, of groups of one channel at stride and
    dilation 1 along rows: depthwise 3x3 and 5x5), else 0."""
    w = g.win
    one = g.C == g.groups and w.sw == 1 and w.dw == 1 and w.kh == w.kw
    return w.kw if one and w.kw in ROW_FILTERS else 0


def direct_filter_units(g) -> int:
    """The units the direct filter gradient splits: pixels, or for the rows
    kernel runs of ROW_OUTPUTS outputs of a row (N * P * ceil(Q / ROW_OUTPUTS))."""
    w = g.win
    return g.N * w.P * (cdiv(w.Q, ROW_OUTPUTS) if filter_rows(g) else w.Q)
