"""The devices and constants of the static performance model (gpucnn.bench.model).

Every number the model uses is here, named, with its source. A constant the
first GPU run must calibrate is a ``Const`` of three values: the one giving
the shortest time (``fast``), the central one (``mid``) and the one giving the
longest (``slow``); the model's ranges come from these alone.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Const:
    fast: float
    mid: float
    slow: float
    unit: str
    source: str

    def at(self, s: int) -> float:
        """The value in scenario ``s`` (FAST, MID, SLOW)."""
        return (self.fast, self.mid, self.slow)[s]


FAST, MID, SLOW = 0, 1, 2
SCENARIOS = (FAST, MID, SLOW)


def fixed(v: float, unit: str, source: str) -> Const:
    return Const(v, v, v, unit, source)


@dataclasses.dataclass(frozen=True)
class Device:
    key: str
    name: str
    sms: int
    clock_ghz: float       # boost clock
    hbm_tbs: float         # datasheet HBM bandwidth
    fp32_tflops: float     # FFMA peak
    tf32_tflops: float     # dense TF32 tensor-core peak (wgmma)
    l2_mb: int

    @property
    def copy_tbs(self) -> float:
        """The copy bandwidth (read + write) a large device copy reaches."""
        return self.hbm_tbs * COPY_OF_HBM.mid


_DATASHEET = "NVIDIA datasheet, as /work/.library/device/H200.md quotes it (H200: H100's arithmetic, 4.8 TB/s)"
DEVICES = {
    "h200": Device("h200", "H200 SXM", 132, 1.98, 4.8, 66.9, 494.7, 50),
    "h100": Device("h100", "H100 SXM", 132, 1.98, 3.35, 66.9, 494.7, 50),
}

ISSUE_PER_CLOCK = fixed(4, "warp-instructions / SM clock", "Hopper SM: 4 sub-partitions, each issuing one "
                        "warp-instruction a clock")
FFMA_PER_CLOCK = fixed(4, "warp-FFMA / SM clock", "128 FP32 lanes an SM (66.9 TFLOP/s = 132 x 1.98 GHz x 128 x 2): "
                       "FFMA never outruns issue")
HMMA_FLOPS = fixed(2048, "FLOP / HMMA", "mma.sync m16n8k8 TF32: 2 x 16 x 8 x 8 (static-sm90.md's HMMA)")
HGMMA_FLOPS = fixed(131072, "FLOP / HGMMA a warpgroup", "wgmma m64n128k8 TF32, the warpgroup tiles' (tc_gemm.cuh): "
                   "2 x 64 x 128 x 8, one instruction of each of the warpgroup's 4 warps (static-sm90.md's HGMMA)")
COPY_OF_HBM = fixed(0.9, "of HBM", "KINDS.md: a 8.6 GB device copy through PyTorch on an H200 moved 4.3 TB/s "
                    "of the datasheet's 4.8 (same fraction assumed on the H100)")
EFF_FFMA = Const(0.9, 0.8, 0.65, "of issue rate", "FFMA tile kernels (gemm, phase): barriers, LDG and LDS "
                 "latency not hidden by 8-16 warps; no measurement (calibrate: bench.json predicted_us)")
EFF_TC = Const(0.9, 0.75, 0.6, "of issue/HMMA rate", "mma.sync tile kernels: cp.async waits, one block per "
               "SM for the 3xTF32 128 tile; no measurement")
EFF_DIRECT = Const(0.85, 0.7, 0.55, "of issue rate", "depthwise.cu's direct and window kernels; algo.py's "
                   "window model took 0.6-0.7 (deepspeech 89-101 us); no measurement")
MMA_SYNC_OF_PEAK = Const(0.65, 0.5, 0.4, "of dense TF32 peak", "HOPPER.md: HMMA-only code is 'on a slower "
                         "path' than wgmma (no figure); microbenchmarks (Luo et al. 2025, arXiv 2501.12084) put "
                         "mma.sync near half of wgmma's rate")
WGMMA_OF_PEAK = Const(1.0, 0.9, 0.75, "of dense TF32 peak", "Hopper's warpgroup MMA (wgmma, sm_90a): the "
                      "tensor cores' own path (HOPPER.md); Luo et al. 2025 put mma.sync near half of its rate, so "
                      "about twice MMA_SYNC_OF_PEAK, capped at the peak and the slow end kept under it (no "
                      "measurement; the fold family's wgmma kernels and tc_gemm.cuh's warpgroup tiles)")
LATENCY_NS = Const(600, 700, 800, "ns", "loaded HBM latency on Hopper, the brief's 600-800 ns (no measurement)")
L1_HIT_NS = fixed(30, "ns", "an L1 hit, ~60 cycles at 1.98 GHz (pooling's second tap of a row)")
LAUNCH_US = Const(1, 2, 4, "us per kernel", "the device-side gap between back-to-back kernels (no measurement)")
HOST_US = Const(11, 15, 22, "us per op call", "our launch path before its first kernel, as the bench calls a "
                "pass (backend.call on CuPy arrays): bench/host_path.py's null CuPy runtime (a pool allocator, "
                "no-op launches) on the project's loaded 2-core VM, least of 3 interleaved runs (taskset -c 1), "
                "mnist-1 and cifar-resnet in tf32 and 3xtf32: forward 9.8-10.1 us, backward-data 9.0-10.2, "
                "backward-filter 12.0-12.3 (its GEMM and the split sum: two launches), after the CuPy fast path "
                "and the memos (15.8-16.0, 13.2-15.2 and 18.4-18.6 before them); plus CuPy's launch, ~5 us a "
                "launch assumed (CuPy's allocator not counted): fast the quickest pass with 2 us of CuPy, mid the "
                "passes' middle (10 us) with 5, slow backward-filter with 5 for each of its two launches; the "
                "bench's samples overlap it with the device's work (timed below)")
HOST_MEM_US = Const(16, 27, 48, "us per op call", "the fallback for a memory-bound row without its own host "
                    "time (model_mem.HOST_BY_OP; every row of the suite has one): the measured rows' range on "
                    "CuPy (on_cupy), relu forward's fast end to the statistics' slow, the middle between")


def on_cupy(s20: float, s21: float, source: str) -> Const:
    """An op's host path a call as the bench calls it on real CuPy, measured on the H200's host by
    gpu.sh's step 2d in session 20 (bench/results/gpu-2026-11-30-s20) and session 21 (-s21, a slower
    host: CuPy's launch 7.9-15.7 us, an allocation 3.7-7.7): fast the quicker, slow the slower, mid
    their mean (bench/host_path.py's null runtime, without CuPy's own work, put these at 3-8 us)."""
    lo, hi = sorted((s20, s21))
    return Const(lo, round((lo + hi) / 2, 1), hi, "us per op call", f"step 2d, {s20} and {s21} us: {source}")


# The memory-bound rows' host paths (model_mem.HOST_BY_OP), "the op as the bench calls it" in step 2d.
HOST_RELU_FORWARD_US = on_cupy(16.30, 23.97, "the bench's relu forward row (one launch, one allocation)")
HOST_RELU_BACKWARD_US = on_cupy(16.62, 25.08, "the bench's relu backward row (one launch, one allocation)")
HOST_ADD_RELU_US = on_cupy(16.62, 25.08, "relu.add with relu=True, the residual add+ReLU: not measured, relu "
                           "backward's path assumed (one launch of as many arguments, one allocation)")
HOST_MAX_POOL_US = on_cupy(22.19, 34.70, "the bench's max_pool forward row")
HOST_AVG_POOL_US = on_cupy(21.43, 32.56, "the bench's avg_pool forward row")
HOST_BN_APPLY_US = on_cupy(28.04, 29.83, "the bench's batchnorm forward row (norm.batch_norm_apply)")
HOST_BN_STATS_US = on_cupy(30.53, 48.12, "the bench's batchnorm stats row (one launch, four allocations)")
HOST_BN_BACKWARD_US = on_cupy(20.44, 30.17, "half of the bench's batchnorm backward row (40.87 and 60.34 us, "
                              "two launches a call): the call's reduction and its data pass are a row each")
HOST_BIAS_GRAD_US = on_cupy(16.52, 24.22, "the bench's bias_grad backward row")
EMPTY_BLOCK_NS = Const(0.2, 0.4, 0.8, "ns per block (whole GPU)", "scheduling a block with no work: "
                       "~0.5 ms per million empty blocks is the usual order (no measurement)")
TREE_US = Const(0.1, 0.2, 0.4, "us per block", "channel.cuh's block tree (common.cuh's block_warp_sum): five "
                "levels of double shuffles in each warp, one barrier, three more in warp 0; 9 barriers and "
                "shared-memory adds before session 23 (no measurement; the range kept)")
ELECT_US = Const(0.3, 0.6, 1.2, "us per reduction", "channel.cuh's one-launch reduction after the last block's "
                 "tree: its sums stored, one acquire-release L2 atomic (MEMBAR.ALL waiting for the store, the "
                 "atomic), the channel's chunks and its results' inputs read from L2 together (128x64x32x32: 8 "
                 "chunks, one round for the bias gradient, two of 4 for two sums) and its results stored: 3-4 L2 "
                 "round trips of ~0.15-0.3 us each, where two sequentially consistent fences, two rounds of "
                 "chunks and the results' inputs after them took 6-7 (1 us mid before session 23; no "
                 "measurement); it replaces a second launch (LAUNCH_US) and that kernel's own loads")
CUDNN_FP32_OF_PEAK = fixed(0.75, "of FP32 peak", "the brief: cuDNN without TF32 at about 0.75 of the FFMA peak")
CUDNN_TF32_OF_PEAK = fixed(0.5, "of dense TF32 peak", "cuDNN with TF32 on these mid-sized convolutions; "
                           "KINDS.md's bf16 matmul reached 788 of 990 TFLOP/s on 8192^3, convolutions of "
                           "this size far less (assumed)")
CUDNN_HOST_US = fixed(12, "us per call", "PyTorch's dispatch to cuDNN (F.conv2d, aten.convolution_backward); "
                      "assumed, the same bracket as ours")
def timed(device_us: float, host_us: float) -> float:
    """What the bench reads for one call (gpucnn.bench.timing: calls queued back
    to back, the first before the start event): the slower of the device's work
    and the host's launch path a call."""
    return max(device_us, host_us)


TARGET_RATIO = 3.0       # issue 11: no conv pass slower than 3x cuDNN
TARGET_MAP = 0.85        # issue 11: ReLU, pooling forward, batch-norm forward at >= 85% of copy bandwidth
TARGET_REDUCTION = 0.70  # issue 11: the batch-norm and bias reductions at >= 70%
TARGET_FUSED = 1.2       # issue 11: three separate passes / fused >= 1.2 for conv2d_bias_relu
TARGET_MIN_BYTES = 25e6  # issue 11: the bandwidth targets apply to tensors of 25 MB or more


def constants() -> dict[str, Const]:
    """{name: constant} of this module, for the generated file's list."""
    return {k: v for k, v in globals().items() if isinstance(v, Const)}
