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
HOST_MEM_US = Const(6, 12, 19, "us per op call", "the fallback for a memory-bound row without its own host "
                    "time (model_mem.HOST_BY_OP; every row of the suite has one): the memory-bound ops' null CuPy "
                    "path before the per-op memos, relu forward 4.0 us to batch-norm backward 9.1 (two launches), "
                    "the middle (7) plus CuPy's launch; fast relu with 2 us of CuPy, slow batch-norm backward with "
                    "5 for each of its two launches")
CUPY_LAUNCH_US = Const(2, 5, 5, "us per launch", "CuPy's own work a kernel launch, which the null runtime leaves "
                       "out (RawKernel's argument packing and cuLaunchKernel; its Device() and stream queries): "
                       "~5 us assumed, as in HOST_US, 2 on a fast host; CuPy's allocator not counted")
HOST_SPEED = Const(1.0, 1.1, 1.3, "x the VM's null-runtime time", "the per-op host times below are bench/"
                   "host_path.py's null CuPy path on the project's 2-core VM (AMD EPYC at 2.6 GHz, shared; least "
                   "of 3 interleaved runs, taskset -c 1). Measured on an H200's host once (session 11's gpu.sh "
                   "step 2b, main at 3beb866, 100 calls x 3 samples): the conv passes at 1.03-1.25x the VM's "
                   "recorded times of that code (forward 10.45-11.03 us against 9.8-10.1, backward-data "
                   "10.0-12.8 against 9.0-10.2, backward-filter 13.4-14.0 against 12.0-12.3), so that host is no "
                   "faster than the loaded VM (the fast end was 0.65, a guess from clock rates); slow, the VM's "
                   "noise: the slowest of 3 runs over the least is 1.0-1.25 for most ops")


def host_op(us: float, launches: int, source: str) -> Const:
    """An op's host path a call: ``us`` measured (null runtime) x HOST_SPEED, plus CUPY_LAUNCH_US a launch."""
    return Const(*(round(us * HOST_SPEED.at(s) + launches * CUPY_LAUNCH_US.at(s), 1) for s in SCENARIOS),
                 "us per op call", f"null CuPy path {us} us a call, {launches} launch(es): {source}")


# The memory-bound rows' host paths (model_mem.HOST_BY_OP), after the launch code's per-shape memos
# (bench/host_path.py's rows; before them in brackets, the same runs of the previous launch code).
HOST_RELU_FORWARD_US = host_op(3.1, 1, "the bench's relu forward row (3.9 before)")
HOST_RELU_BACKWARD_US = host_op(3.3, 1, "the bench's relu backward row (4.2 before)")
HOST_ADD_RELU_US = host_op(3.2, 1, "relu.add with relu=True, the residual add+ReLU (3.7 before)")
HOST_MAX_POOL_US = host_op(4.0, 1, "the bench's max_pool forward row (7.5 before)")
HOST_AVG_POOL_US = host_op(3.9, 1, "the bench's avg_pool forward row (8.3 before)")
HOST_BN_APPLY_US = host_op(4.2, 1, "norm.batch_norm_apply (4.8 before)")
HOST_BN_STATS_US = host_op(6.5, 1, "norm.batch_norm_stats (7.0 before; five allocations)")
HOST_BN_BACKWARD_US = host_op(3.9, 1, "half of norm.batch_norm_backward, 7.9 us and two launches a call (9.0 "
                              "before): the call's reduction and its data pass are a row each")
HOST_BIAS_GRAD_US = host_op(4.1, 1, "conv.conv2d_backward_bias (5.9 before)")
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
TARGET_FUSED = 1.2       # issue 11: separate / fused >= 1.2 for conv2d_bias_relu
TARGET_MIN_BYTES = 25e6  # issue 11: the bandwidth targets apply to tensors of 25 MB or more


def constants() -> dict[str, Const]:
    """{name: constant} of this module, for the generated file's list."""
    return {k: v for k, v in globals().items() if isinstance(v, Const)}
