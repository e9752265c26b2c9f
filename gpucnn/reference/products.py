"""Matrix products cut into the blocks OpenBLAS multiplies fastest.

OpenBLAS (0.3.16 and later) has a second path for small products: on its
SkylakeX kernels (the ones NumPy's wheels select on AVX-512 x86-64: Intel
Skylake-SP and later, AMD Zen 4) an sgemm or dgemm with M*N*K <= 100^3 is
multiplied straight from its operands, without packing them into its
blocked layout first (``sgemm_small_kernel_permit_skylakex.c``). For the
convolutions' thin products that packing is a copy of the whole im2row
matrix, and it shows: (1568 x 400) by (400 x 32), 1 thread, ran at 93
GFLOP/s as one product and at 113-114 as a batch of 64-row products (one
NumPy call; NumPy's matmul loop calls sgemm per 64 rows), the rate oneDNN's
whole convolution reaches; (2048 x 576) by (576 x 64) at 100 and 115 in
16-row blocks; measured on the 2-core Zen 4 VM. The right-hand operand must
be contiguous: read transposed, the same blocks ran 25% slower than one
product.

Elsewhere (other OpenBLAS cores, other BLAS libraries, threadpoolctl
absent) ``small_kernels()`` is False and the products run whole. Each
output is still one dot product over the inner dimension either way, so
the blocks change nothing but the rounding inside OpenBLAS's kernels, and
nothing at all on a given machine from one call to the next.
"""
from __future__ import annotations

import numpy as np

from gpucnn.reference import workspace

SMALL_MNK = 100**3
SMALL_ARCHS = ("skylakex", "cooperlake", "sapphirerapids")
# Rows a block: as many as fit under SMALL_MNK up to 128 (more measured no
# faster). Even 4-row blocks beat one whole product where no more fit:
# (1024 x 576) by (576 x 128) 103 GFLOP/s whole, 115 in 4-row blocks;
# (1024 x 1152) by (1152 x 32) 92, 99 in 4-row and 110 in 8-row blocks.
MAX_ROWS, MIN_ROWS = 128, 4
# inner_cols's blocks of 4 columns ran slower than whole products (86-91
# against 98 GFLOP/s with 64 filters), of 8 or more faster.
INNER_MIN_COLS = 8

_small: bool | None = None


def small_kernels() -> bool:
    """Whether the BLAS NumPy calls is an OpenBLAS running SkylakeX-family
    kernels (threadpoolctl's report), which have the small-product path:
    the BLAS NumPy's wheels ship (under numpy's folder), else every BLAS
    loaded, as other packages may load their own."""
    global _small
    if _small is None:
        libs = workspace._blas()
        libs = [lib for lib in libs if "numpy" in str(getattr(lib, "filepath", ""))] or libs
        _small = bool(libs) and all(
            getattr(lib, "internal_api", "") == "openblas"
            and str(getattr(lib, "architecture", "")).lower() in SMALL_ARCHS for lib in libs)
    return _small


def rows_block(k: int, n: int) -> int | None:
    """Rows of an (m x k) by (k x n) product that one small-kernel call
    takes: the largest power of two up to MAX_ROWS with rows*k*n <= SMALL_MNK;
    None where no block of MIN_ROWS fits, or without the small kernels."""
    if not small_kernels():
        return None
    r = MIN_ROWS
    if r * k * n > SMALL_MNK:
        return None
    while r < MAX_ROWS and 2 * r * k * n <= SMALL_MNK:
        r *= 2
    return r


def matmul_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out (m, n) = a (m, k) @ b (k, n), a and out C-contiguous and b
    contiguous, in blocks of ``rows_block`` rows (one NumPy call for the
    whole blocks, one for the ragged rest)."""
    m, k = a.shape
    r = rows_block(k, b.shape[1])
    if r is None or m < 2 * r:
        np.matmul(a, b, out=out)
        return
    whole = m - m % r
    np.matmul(a[:whole].reshape(-1, r, k), b, out=out[:whole].reshape(-1, r, b.shape[1]))
    if whole < m:
        np.matmul(a[whole:], b, out=out[whole:])


def inner_cols(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """aᵀ @ b, (k, n), for a (m, k) and b (m, n) C-contiguous, in blocks of
    a's columns (``rows_block`` of the (k x m) by (m x n) product, at least
    INNER_MIN_COLS): each block of the result whole in one small product, so
    no partial sums. (2048 x 288)ᵀ by (2048 x 32): 89 GFLOP/s whole, 114 in
    8-column blocks; (512 x 576)ᵀ by (512 x 64): 98 and 108."""
    m, k = a.shape
    n = b.shape[1]
    c = rows_block(m, n)
    if c is None or c < INNER_MIN_COLS or k < 2 * c:
        return np.matmul(a.T, b)
    out = np.empty((k, n), np.result_type(a, b))
    whole = k - k % c
    np.matmul(a[:, :whole].reshape(m, -1, c).transpose(1, 2, 0), b, out=out[:whole].reshape(-1, c, n))
    if whole < k:
        np.matmul(a[:, whole:].T, b, out=out[whole:])
    return out
