"""Launch code of kernels/conv2d_halo.cu: the forward and backward-data of 3x3
convolutions at stride and dilation 1 on tensor cores in the math modes "tf32"
and "3xtf32" (gpucnn.cuda.algo's "halo" family). gpucnn.cuda.conv calls it
per run of images with the output it allocated and ``geom`` (conv._geom).

Backward-data is the same kernel: dx is the forward of dy by the filters
transposed and rotated by 180 degrees (the seed's reverse operator written as
a convolution) at padding 2 - pad on each side (``transposed``); the weights
kernel lays them out so (``weights(..., flip=True)``).

A block's task is (image, ``th`` x ``tw`` output pixels, 64 filters); per step
of 8 channels it copies the input rows its windows cover (the halo: th + 2
rows of ``hws`` words from the 4-aligned column at or before the tile's first
window column) into shared memory in 16-byte copies, and every tap reads them
shifted. The weights go first through conv2d_halo_weights, which lays each
tap's A fragments out in mma.sync's register order (rounded to TF32, or split
in two parts for 3xTF32) in a scratch array of the call.

On sm_90 a warpgroup variant ("halowg", ``wg=True``) runs the same tasks, copies and
stages on wgmma: the pixels as the MMA's rows (A from registers, loaded from the halo as the
mma.sync kernel's B fragments are) and the filters as its columns (B, the weights, through
no-swizzle K-major descriptors: the weights kernel lays them out so), two m64n64k8 a tap
(six in 3xTF32), where mma.sync's run at half the tensor cores' rate (HOPPER.md).

``plan(g)`` is the pure per-shape layout: whole rows of the output per tile
where a row fits 128 pixels (tw = Q rounded up to 4, th = 128 // tw rows,
at most P), else 128-column tiles of one row.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from gpucnn import shapes
from gpucnn.cuda.algo_direct import cdiv
from gpucnn.cuda.fold import BLOCK_RESERVED, SM_SMEM  # an SM's shared memory, and what each block reserves
from gpucnn.cuda.launch import launch, launch_tasks

FAMILY = "conv2d_halo"
THREADS, BM, BN, CK, XCOPY, WFRAG = 128, 64, 128, 8, 8, 512  # HALO_THREADS, _BM, _BN, _CK, _XCOPY, _WFRAG
KH = KW = 3
TAPS = KH * KW
MODES = ("tf32", "3xtf32")
PARTS = {"tf32": 1, "3xtf32": 2}   # HaloCfg::PARTS: the weights' TF32 parts
STAGES = {"tf32": 3, "3xtf32": 2}  # HaloCfg::STAGES
KERNELS = ()
WG_CC = 90  # the warpgroup variant's compute capability: wgmma, built for sm_90a (loader.ARCH_SPECIFIC)
F32_KERNELS = tuple(f"conv2d_halo_{k}_{v}{m}_f32" for k in ("forward", "weights") for v in ("", "wg_") for m in MODES)


@dataclasses.dataclass(frozen=True)
class Plan:
    th: int      # output rows of a tile
    tw: int      # output columns of a tile (a multiple of 4)
    hws: int     # words of a halo row in shared memory (a multiple of 4)
    cs: int      # words of a channel's halo (8 or 24 mod 32: conflict-free B fragments)
    tasks: int   # blocks' tasks: images x row tiles x column tiles x 64-filter blocks
    steps: int   # 8-channel steps of the reduction

    def smem(self, math: str) -> int:
        """Dynamic shared memory of the forward kernel in ``math`` (STAGES stages of weights and halo)."""
        return 4 * STAGES[math] * (TAPS * PARTS[math] * WFRAG + CK * self.cs)

    def blocks_per_sm(self, math: str) -> int:
        """Blocks an sm_90 SM's shared memory holds (228 KiB, 1 KiB reserved a block)."""
        return SM_SMEM // (self.smem(math) + BLOCK_RESERVED)


def ok(g, cc: int = 90, pass_: str = "forward", wg: bool = False) -> bool:
    """Whether the halo kernels (``wg``: the warpgroup variant, sm_90 only) can run pass ``pass_``
    of ``g`` on compute capability ``cc``: tensor cores (sm_80 and newer), a 3x3 filter at stride
    and dilation 1, one group, at least one channel, filter and output pixel, and input rows of
    whole 16-byte groups: x's (W a multiple of 4) for the forward, dy's (Q) for backward-data,
    whose padding must be at most 2 on each side (the transposed problem's, 2 - pad, then none
    negative)."""
    w = g.win
    if not (cc >= 80 and (not wg or cc == WG_CC) and g.groups == 1
            and (w.kh, w.kw, w.sh, w.sw, w.dh, w.dw) == (KH, KW, 1, 1, 1, 1) and min(g.C, g.K, w.P, w.Q) >= 1):
        return False
    if pass_ == "forward":
        return w.W % 4 == 0
    return pass_ == "backward_data" and w.Q % 4 == 0 and max(w.pad) <= KH - 1


def transposed(g):
    """The forward geometry whose output is ``g``'s dx: dy (N, K, P, Q) by C filters of K
    channels, padding 2 - pad on each side (its output is H x W)."""
    w = g.win
    pt, pb, pl, pr = w.pad
    win = shapes.window(w.P, w.Q, (KH, KW), (1, 1), (KH - 1 - pt, KH - 1 - pb, KW - 1 - pl, KW - 1 - pr), (1, 1))
    return shapes.Conv(g.N, g.K, g.C, 1, win)


@functools.lru_cache(maxsize=256)
def plan(g) -> Plan:
    w = g.win
    if w.Q <= BN:
        tw = cdiv(w.Q, 4) * 4
        th = max(1, min(BN // tw, w.P))
    else:
        tw, th = BN, 1
    pl = w.pad[2]
    off = (-pl) % 4  # the tile's first window column's place in its 16-byte group (q0 % 4 == 0)
    hws = cdiv(off + tw + KW - 1, 4) * 4
    cs = (th + KH - 1) * hws
    while cs % 32 not in (8, 24):
        cs += 4
    copies = CK * (th + KH - 1) * (hws // 4)
    assert copies <= XCOPY * THREADS, (th, tw, copies)  # HALO_XCOPY copies a thread at most
    tasks = g.N * cdiv(w.P, th) * cdiv(w.Q, tw) * cdiv(g.K, BM)
    return Plan(th, tw, hws, cs, tasks, cdiv(g.C, CK))


def _variant(math: str, wg: bool) -> str:
    return f"wg_{math}" if wg else math


def weights(rt, w, g, math: str, p: Plan, flip: bool = False, wg: bool = False):
    """w's A fragments for the forward kernel on ``g`` (conv2d_halo_weights; ``wg``: the
    warpgroup variant's B tiles): a new scratch array; ``flip``: ``g`` is ``transposed(g0)``
    and w g0's filters (backward-data)."""
    kblocks = cdiv(g.K, BM)
    wt = rt.xp.empty(kblocks * p.steps * TAPS * PARTS[math] * WFRAG, np.float32)
    launch(rt, FAMILY, f"conv2d_halo_weights_{_variant(math, wg)}", np.float32, wt.size,
           (w, wt, np.int32(g.K), np.int32(g.C), np.int32(kblocks), np.int32(p.steps), np.int32(flip)))
    return wt


def forward(rt, x, wt, b, y, g, geom, math: str, flags: int, wg: bool = False) -> None:
    """y from x and ``wt`` (``weights`` of the same ``wg``) on plan(g); b and ``flags`` as
    conv2d_forward's epilogue."""
    p = plan(g)
    launch_tasks(rt, FAMILY, f"conv2d_halo_forward_{_variant(math, wg)}", x.dtype, p.tasks, THREADS,
                 (x, wt, b, y, *geom, *(np.int32(v) for v in (p.th, p.tw, p.hws, p.cs, flags))), p.smem(math))
