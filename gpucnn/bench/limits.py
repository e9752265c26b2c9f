"""The machine's limits, measured in the same run as the kernels: the
bandwidth of a large copy (bytes read plus bytes written) and the arithmetic
rate of a large float32 matrix product (2*n^3 flops). Each is the best of
the implementations at hand, since a limit is what the machine can be shown
to do."""
from __future__ import annotations

import numpy as np

from gpucnn.bench import timing


def _best(clk, fn, reps):
    return timing.interleaved(clk, {"x": (fn, [()])}, warmup=1, reps=reps)["x"]["ms"]


def copier(device: str):
    """copy(dst, src) of one flat float32 array into another, as the limit measures it: CuPy's
    copy kernel on a GPU; on the CPU NumPy's copy on the same threads and chunks as the
    memory-bound ops (workspace.chunked)."""
    if device == "cuda":
        import cupy as cp
        return cp.copyto
    from gpucnn.reference import workspace

    def copy(dst, src):
        workspace.chunked(lambda lo, hi: np.copyto(dst[lo:hi], src[lo:hi]), src.size, src.itemsize)
    return copy


def copy_pairs(device: str, nbytes: int, copies: int) -> list[tuple]:
    """``copies`` (dst, src) pairs of ``nbytes`` each on ``device``, for copier's fn."""
    xp = np
    if device == "cuda":
        import cupy as xp
    return [(xp.empty(nbytes // 4, np.float32), xp.ones(nbytes // 4, np.float32)) for _ in range(copies)]


def cpu(threads: int, copy_bytes=256 * 2**20, n=2048, reps=5) -> dict:
    clk = timing.CpuClock()
    (b, a), = copy_pairs("cpu", copy_bytes, 1)
    copy = copier("cpu")
    out = {"copy_bytes": copy_bytes, "matmul_n": n}
    out["copy_gbps"] = 2 * copy_bytes / _best(clk, lambda: copy(b, a), reps) / 1e6
    m = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    out["numpy_matmul_gflops"] = 2 * n**3 / _best(clk, lambda: m @ m, reps) / 1e6
    try:
        import torch
        t = torch.from_numpy(m)
        out["torch_matmul_gflops"] = 2 * n**3 / _best(clk, lambda: t @ t, reps) / 1e6
    except ImportError:
        pass
    out["matmul_gflops"] = max(v for k, v in out.items() if k.endswith("matmul_gflops"))
    return out


def cuda(copy_bytes=2**30, n=8192, reps=20) -> dict:
    import cupy as cp
    clk = timing.CudaClock(calls=1)  # milliseconds a call: the host's microseconds do not show
    (b, a), = copy_pairs("cuda", copy_bytes, 1)
    out = {"copy_bytes": copy_bytes, "matmul_n": n}
    copy = copier("cuda")
    out["copy_gbps"] = 2 * copy_bytes / _best(clk, lambda: copy(b, a), reps) / 1e6
    a = b = None  # free the copy buffers before the matmul
    m = cp.random.standard_normal((n, n), dtype=cp.float32)
    out["cupy_matmul_gflops"] = 2 * n**3 / _best(clk, lambda: m @ m, reps) / 1e6
    try:
        import torch
        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = False
            t = torch.as_tensor(m, device="cuda")
            out["torch_matmul_gflops"] = 2 * n**3 / _best(clk, lambda: t @ t, reps) / 1e6
            # The ceiling of the "tf32" rows: the same product on TF32 tensor cores.
            torch.backends.cuda.matmul.allow_tf32 = True
            out["tf32_matmul_gflops"] = 2 * n**3 / _best(clk, lambda: t @ t, reps) / 1e6
            torch.backends.cuda.matmul.allow_tf32 = False
    except ImportError:
        pass
    out["matmul_gflops"] = max(v for k, v in out.items() if k.endswith("matmul_gflops") and not k.startswith("tf32"))
    return out
