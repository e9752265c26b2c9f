"""The one launch convention of gpucnn (Caffe's CAFFE_GET_BLOCKS).

Kernels loop over their elements with ``GRID_STRIDE_LOOP`` (kernels/common.cuh),
so any grid is correct; ``grid_for`` turns an element count into a grid,
capped, and ``small_grid`` shrinks the cap so tests catch a kernel that
silently relies on one thread per element.
"""
from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from gpucnn.runtime import capture

BLOCK = 256
MAX_BLOCKS = 65535
_cap: contextvars.ContextVar[int] = contextvars.ContextVar("gpucnn_grid_cap", default=MAX_BLOCKS)
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def grid_for(n: int, block: int = BLOCK) -> tuple[int]:
    """Blocks of ``block`` threads to cover ``n`` elements, at most the cap."""
    return (max(1, min(-(-int(n) // block), _cap.get())),)


@contextlib.contextmanager
def small_grid(max_blocks: int = 2):
    """Launch at most ``max_blocks`` blocks per kernel inside the block."""
    token = _cap.set(max_blocks)
    try:
        yield
    finally:
        _cap.reset(token)


def vector_threads(n: int, dtype) -> int:
    """Threads for a map whose loop walks 16-byte vectors (relu.cu's map2;
    batchnorm.cu's channel_apply, whose threads take several): one a vector,
    so no block of a grid sized by elements idles (three quarters of them for
    float4); the loops' scalar paths stride over the same grid, so any count
    stays correct."""
    return -(-int(n) // (16 // np.dtype(dtype).itemsize))


def kernel_name(base: str, dtype) -> str:
    """Kernels come one per dtype: ``relu_forward_f32``, ``relu_forward_f64``."""
    return f"{base}_{_SUFFIX[np.dtype(dtype)]}"


def copy_of(xp, a, dtype=None):
    """A new C-contiguous array holding ``a`` (cast to ``dtype``), made by a runtime
    copy, so that a captured step repeats the copy instead of keeping its first result."""
    out = xp.empty(a.shape, a.dtype if dtype is None else dtype)
    capture.copy_into(out, a)
    return out


def empty_as(xp, a):
    """A new C-contiguous array of ``a``'s shape and dtype (the launch code's inputs are
    C-contiguous first). Not ``empty_like``: CuPy's (order "K") works out the strides in
    Python and builds two arrays, one to allocate and one to return, where ``empty``
    builds one; on the H200's host empty_like of a 33.6 MB tensor took 6.9-7.7 us and
    empty of a (64,) result 3.7 (gpu.sh step 2d, session 21; step 2d now times empty of
    the same tensor beside it)."""
    return xp.empty(a.shape, a.dtype)


def contiguous(xp, a):
    """``a`` if it is C-contiguous, else a contiguous copy of the same shape."""
    return a if a.flags.c_contiguous else copy_of(xp, a)


def i64(v) -> np.int64:
    return np.int64(v)


def scalar(dtype, v):
    """A scalar of the kernel's floating type (float for f32, double for f64)."""
    return np.dtype(dtype).type(v)


def opt_in(fn, shared_mem: int) -> None:
    """Let ``fn`` take ``shared_mem`` bytes of dynamic shared memory: beyond
    the default 48 KiB a kernel must opt in (CUDA's MaxDynamicSharedMemorySize)."""
    if shared_mem > 48 * 1024 and fn.max_dynamic_shared_size_bytes < shared_mem:
        fn.max_dynamic_shared_size_bytes = shared_mem


def launch_tasks(rt, family: str, base: str, dtype, tasks: int, block: int, args: tuple, shared_mem: int) -> None:
    """Launch ``base``'s kernel for ``dtype`` with a block per task, at most the
    grid cap (its blocks loop over tasks by grid stride, as GRID_STRIDE_LOOP
    does over elements)."""
    if tasks == 0:
        return
    fn = rt.function(family, kernel_name(base, dtype))
    opt_in(fn, shared_mem)
    fn(grid_for(tasks * block, block), (block,), args, shared_mem=shared_mem)


def launch(rt, family: str, base: str, dtype, n: int, args: tuple, block: int = BLOCK,
           shared_mem: int = 0) -> None:
    """Launch ``base``'s kernel for ``dtype`` over ``n`` elements."""
    if n == 0:
        return
    fn = rt.function(family, kernel_name(base, dtype))
    fn(grid_for(n, block), (block,), args, shared_mem=shared_mem)
