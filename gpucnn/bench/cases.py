"""The benchmark suite: every shape, once, with the work each case must do.

Convolutions are (N, C, H, W, K, (R, S), stride, pad[, dilation, groups]);
pooling, ReLU, batch norm and the bias gradient are an input shape (and,
for pooling, a window). The work counted is the minimum an op must do, so
GFLOP/s and GB/s compare across backends:

* convolution, each pass: 2*N*K*P*Q*(C/groups)*R*S flops (one multiply and
  one add per tap; the bias and its gradient are left out);
* ReLU forward reads x and writes y; backward reads dy and x, writes dx;
* pooling forward reads x and writes y (and, for max, the argmax as int64,
  which training needs); backward reads dy (and, for max, the argmax) and
  writes dx;
* batch norm (training): its statistics ("stats") read x; the forward (the
  apply, given the statistics) reads x and writes y; the backward reads dy
  and x for its per-channel sums and again for dx, which it writes; the
  per-channel vectors are left out;
* a convolution's bias gradient ("bias_grad", backward only) reads dy.

For the roofline only, a memory-bound op counts one operation per input
element (ReLU, batch norm, the bias gradient) or per window tap (a compare
or an add in pooling).

On a CPU the large shapes are scaled down by batch (``cpu_batch``) so the
whole suite runs in minutes; the table and the JSON give the batch used.
"""
from __future__ import annotations

import dataclasses
import math

from gpucnn import shapes

F32 = 4
I64 = 8
ELEMENTWISE = ("relu", "batchnorm", "bias_grad")  # the memory-bound ops with no window: output shape = input's


@dataclasses.dataclass(frozen=True)
class ConvCase:
    name: str
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    stride: int
    pad: int
    dilation: int = 1
    groups: int = 1
    kind = "conv"

    def out_hw(self):
        P = shapes.conv_out(self.H, self.R, self.stride, self.pad, self.pad, self.dilation)
        Q = shapes.conv_out(self.W, self.S, self.stride, self.pad, self.pad, self.dilation)
        return P, Q

    def flops(self, N=None):
        """Multiply-adds times two, the same for forward, backward-data and backward-filter."""
        P, Q = self.out_hw()
        N = self.N if N is None else N
        return 2 * N * self.K * P * Q * (self.C // self.groups) * self.R * self.S

    def nbytes(self, N=None):
        """Compulsory traffic of a forward pass: x, w and y once each."""
        P, Q = self.out_hw()
        N = self.N if N is None else N
        return F32 * (N * self.C * self.H * self.W + self.K * self.C // self.groups * self.R * self.S
                      + N * self.K * P * Q)

    def with_batch(self, N):
        return dataclasses.replace(self, N=N)

    def label(self):
        g = f" g{self.groups}" if self.groups > 1 else ""
        d = f" d{self.dilation}" if self.dilation > 1 else ""
        return (f"{self.name} {self.N}x{self.C}x{self.H}x{self.W} K{self.K} "
                f"{self.R}x{self.S}/{self.stride} p{self.pad}{d}{g}")


@dataclasses.dataclass(frozen=True)
class MemCase:
    """A memory-bound op: "relu", "max_pool", "avg_pool", "batchnorm" or "bias_grad"
    (its passes: ``passes``)."""

    name: str
    op: str
    N: int
    C: int
    H: int
    W: int
    k: int = 1
    stride: int = 1
    pad: int = 0
    kind = "mem"

    def out_hw(self):
        if self.op in ELEMENTWISE:
            return self.H, self.W
        P = shapes.pool_out(self.H, self.k, self.stride, self.pad, self.pad, 1, False)
        Q = shapes.pool_out(self.W, self.k, self.stride, self.pad, self.pad, 1, False)
        return P, Q

    def tensor_bytes(self):
        """The input tensor's bytes, which the issue's bandwidth targets are stated on."""
        return F32 * self.N * self.C * self.H * self.W

    def nbytes(self, direction, N=None):
        """Bytes a pass must move: see the module docstring."""
        N = self.N if N is None else N
        x = N * self.C * self.H * self.W
        y = N * self.C * math.prod(self.out_hw())
        if self.op == "relu":
            return (2 if direction == "forward" else 3) * F32 * x
        if self.op in ELEMENTWISE:
            return F32 * x * {"stats": 1, "forward": 2, "backward": 5 if self.op == "batchnorm" else 1}[direction]
        idx = I64 * y if self.op == "max_pool" else 0
        return F32 * (x + y) + idx

    def flops(self, N=None):
        """Operations for the roofline: see the module docstring."""
        N = self.N if N is None else N
        if self.op in ELEMENTWISE:
            return N * self.C * self.H * self.W
        return N * self.C * math.prod(self.out_hw()) * self.k * self.k

    def with_batch(self, N):
        return dataclasses.replace(self, N=N)

    def label(self):
        if self.op in ELEMENTWISE:
            return f"{self.name} {self.N}x{self.C}x{self.H}x{self.W}"
        return f"{self.name} {self.N}x{self.C}x{self.H}x{self.W} {self.k}x{self.k}/{self.stride} p{self.pad}"


CONV = [
    ConvCase("mnist-1", 64, 1, 28, 28, 32, 5, 5, 1, 2),
    ConvCase("mnist-2", 64, 32, 14, 14, 64, 5, 5, 1, 2),
    ConvCase("cifar-stem", 128, 3, 32, 32, 64, 3, 3, 1, 1),
    ConvCase("cifar-resnet", 128, 64, 32, 32, 64, 3, 3, 1, 1),
    ConvCase("cifar-resnet-s2", 128, 128, 16, 16, 256, 3, 3, 2, 1),
    ConvCase("resnet-stem", 16, 3, 224, 224, 64, 7, 7, 2, 3),
    ConvCase("resnet-3x3", 16, 64, 56, 56, 64, 3, 3, 1, 1),
    ConvCase("resnet-1x1", 16, 64, 56, 56, 256, 1, 1, 1, 0),
    ConvCase("resnet-7x7x512", 16, 512, 7, 7, 512, 3, 3, 1, 1),
    ConvCase("vgg", 16, 64, 112, 112, 128, 3, 3, 1, 1),
    ConvCase("1x1-s2", 16, 256, 56, 56, 128, 1, 1, 2, 0),
    ConvCase("deepspeech", 16, 1, 161, 700, 32, 5, 20, 2, 0),
    ConvCase("depthwise", 16, 256, 56, 56, 256, 3, 3, 1, 1, groups=256),
    ConvCase("dilated", 16, 64, 56, 56, 64, 3, 3, 1, 2, dilation=2),
]

MEM = [
    MemCase("max_pool", "max_pool", 32, 64, 112, 112, 3, 2, 1),
    MemCase("max_pool", "max_pool", 16, 64, 224, 224, 2, 2, 0),
    MemCase("avg_pool", "avg_pool", 16, 64, 224, 224, 2, 2, 0),
    MemCase("max_pool", "max_pool", 64, 32, 28, 28, 2, 2, 0),
    MemCase("avg_pool", "avg_pool", 64, 32, 28, 28, 2, 2, 0),
    MemCase("relu", "relu", 32, 64, 112, 112),
    MemCase("relu", "relu", 64, 32, 28, 28),
    # cifar-resnet's output (33.6 MB, fused.py's batch-norm row) and the ResNet stem's (102.8 MB,
    # as the ReLU row): issue 11's batch-norm and bias-gradient targets
    MemCase("batchnorm", "batchnorm", 128, 64, 32, 32),
    MemCase("batchnorm", "batchnorm", 32, 64, 112, 112),
    MemCase("bias_grad", "bias_grad", 128, 64, 32, 32),
    MemCase("bias_grad", "bias_grad", 32, 64, 112, 112),
]

# bench/ab_mem.py's size sweep (gpu.sh's step 5d): the channel reductions and two map kernels on
# Nx64x32x32 for each of SWEEP_N (8.4 to 67.1 MB of input; 128 is MEM's 33.6 MB batch-norm row), each
# op's times fitted to fixed + bytes / rate (model_mem.fit_line), measured and as the model predicts them
SWEEP = (("batchnorm", "stats"), ("bias_grad", "backward"), ("batchnorm", "forward"), ("relu", "forward"))
SWEEP_N = (32, 64, 128, 256)


def sweep_case(op: str, n: int) -> MemCase:
    """The size sweep's case of ``op`` at batch ``n``."""
    return MemCase(op, op, n, 64, 32, 32)


PASSES = {"conv": ("forward", "backward_data", "backward_filter"),
          "mem": ("forward", "backward")}
# the memory-bound ops whose passes are not PASSES["mem"]'s
MEM_PASSES = {"batchnorm": ("stats", "forward", "backward"), "bias_grad": ("backward",)}


def passes(case) -> tuple[str, ...]:
    """The passes the bench times of ``case``."""
    return MEM_PASSES.get(case.op, PASSES["mem"]) if case.kind == "mem" else PASSES[case.kind]

# The training step: (model, input shape (C, H, W), classes, batch).
STEPS = [("lenet", (1, 28, 28), 10, 128), ("vgg-small", (3, 32, 32), 10, 128), ("resnet20", (3, 32, 32), 10, 128)]

# CPU budgets: a conv pass's flops, a memory-bound pass's bytes.
CPU_FLOPS = 1.2e9
CPU_BYTES = 120e6


def cpu_batch(case) -> int:
    """The batch used on a CPU: halved until one pass fits the CPU budget."""
    N = case.N
    while N > 1 and (case.flops(N) > CPU_FLOPS if case.kind == "conv"
                     else case.nbytes("backward", N) > CPU_BYTES):
        N //= 2
    return N


def matches(only: str | None, label: str) -> bool:
    """Whether ``label`` is kept by --only ``only``: it contains ``only``, or one of its
    comma-separated parts (all kept without it)."""
    return only is None or any(part in label for part in only.split(","))


def suite(device: str, small: bool = False, only: str | None = None, of=None):
    """[(case to run, the suite's batch)] of the cases ``of`` (default: CONV
    and MEM): full batch on a GPU, cpu_batch on a CPU; ``small`` shrinks every
    case to batch 1 and at most 16x24 (for tests of the measurement code);
    ``only`` keeps cases whose label contains it (or one of its comma-separated parts: matches)."""
    out = []
    for full in (CONV + MEM if of is None else of):
        case = full
        if small:
            case = _shrink(case)
        elif device == "cpu":
            case = case.with_batch(cpu_batch(case))
        if matches(only, case.label()):
            out.append((case, full.N))
    return out


def _shrink(case):
    h, w = min(case.H, 16), min(case.W, 24)
    kw = {"N": 1, "H": h, "W": w}
    if case.kind == "conv":
        kw.update(C=min(case.C, 8) if case.groups == 1 else 8, K=min(case.K, 8),
                  groups=1 if case.groups == 1 else 8)
    else:
        kw["C"] = min(case.C, 4)
    return dataclasses.replace(case, **kw)
