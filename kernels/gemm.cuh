// gemm.cuh: the shared-memory tile loop of the implicit-GEMM kernels (conv2d.cu).
//
// One block of GEMM_THREADS threads computes a GEMM_BM x GEMM_BN tile of
// C = A B over the reduction range [kbeg, kend). Neither operand exists in
// memory as a matrix: an Op gathers each element from the tensors on the fly
//   Op::Row op.row(m)               what A's row m needs, computed once per tile
//   Op::Col op.col(n)               what B's column n needs, computed once per tile
//   T op.a(const Row&, int k)       A[m, k], called only for m < op.M, k < kend
//   T op.b(const Col&, int k)       B[k, n], called only for n < op.N, k < kend
// and out-of-range elements are zeros, so no remainder needs a special case.
//
// Register blocking: thread (ty, tx) = (t / 16, t % 16) owns the 4 x 4 micro-tile
// of rows ty + 16 i and columns tx + 16 j. Strided rather than contiguous, so
// that a warp reads 16 consecutive B columns (no bank conflicts) and writes
// 16 consecutive outputs per (i, j). Per step of GEMM_BK reduction indices a
// thread loads 4 elements of A and 4 of B into registers for the next step
// while it multiplies the current one from shared memory (one stage of
// software pipelining; two barriers per step).
#pragma once

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
#define GEMM_THREADS 256
#define GEMM_TM 4  // micro-tile rows per thread: GEMM_BM / 16
#define GEMM_TN 4  // micro-tile columns per thread: GEMM_BN / 16

// A loads: thread t fills sm.a[t % BK][t / BK + 16 i]: one reduction index, 4 rows.
// B loads: thread t fills sm.b[t / BN + 4 i][t % BN]: one column, 4 reduction indices.
#define GEMM_A_ROWS_STEP (GEMM_THREADS / GEMM_BK)  // 16
#define GEMM_B_KS_STEP (GEMM_THREADS / GEMM_BN)    // 4

// The block's tiles, declared __shared__ in each kernel's body and passed in:
// the emulator charges a __shared__ declared in a device function to every
// kernel of the module, which would put each kernel over the 48 KiB limit.
template <typename T> struct GemmSmem {
    // +1 column: A is stored transposed with 16 consecutive threads writing 16
    // different k rows of one column; the padding spreads them over the banks.
    T a[GEMM_BK][GEMM_BM + 1];
    T b[GEMM_BK][GEMM_BN];
};

template <typename T, typename Op>
__device__ __forceinline__ void gemm_fetch(const Op& op, const typename Op::Row (&rows)[GEMM_TM],
                                           const bool (&row_ok)[GEMM_TM], const typename Op::Col& col,
                                           bool col_ok, int k0, int kend, T (&ra)[GEMM_TM],
                                           T (&rb)[GEMM_TM]) {
    const int t = threadIdx.x;
    const int ka = k0 + t % GEMM_BK;
#pragma unroll
    for (int i = 0; i < GEMM_TM; ++i) ra[i] = (row_ok[i] && ka < kend) ? op.a(rows[i], ka) : T(0);
#pragma unroll
    for (int i = 0; i < GEMM_TM; ++i) {
        const int kb = k0 + t / GEMM_BN + GEMM_B_KS_STEP * i;
        rb[i] = (col_ok && kb < kend) ? op.b(col, kb) : T(0);
    }
}

// acc[i][j] = sum over k in [kbeg, kend) of A[m0 + ty + 16 i, k] * B[k, n0 + tx + 16 j].
// Every thread of the block must call it with the same arguments: its barriers
// are reached by all threads because the step count depends only on kbeg, kend.
template <typename T, typename Op>
__device__ void gemm_tile(const Op& op, GemmSmem<T>& sm, int m0, int n0, int kbeg, int kend,
                          T (&acc)[GEMM_TM][GEMM_TN]) {
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;

    typename Op::Row rows[GEMM_TM];
    bool row_ok[GEMM_TM];
#pragma unroll
    for (int i = 0; i < GEMM_TM; ++i) {
        const int m = m0 + t / GEMM_BK + GEMM_A_ROWS_STEP * i;
        row_ok[i] = m < op.M;
        rows[i] = op.row(row_ok[i] ? m : 0);
    }
    const int n = n0 + t % GEMM_BN;
    const bool col_ok = n < op.N;
    const typename Op::Col col = op.col(col_ok ? n : 0);

#pragma unroll
    for (int i = 0; i < GEMM_TM; ++i)
#pragma unroll
        for (int j = 0; j < GEMM_TN; ++j) acc[i][j] = T(0);

    T ra[GEMM_TM], rb[GEMM_TM];
    gemm_fetch<T>(op, rows, row_ok, col, col_ok, kbeg, kend, ra, rb);
    for (int k0 = kbeg; k0 < kend; k0 += GEMM_BK) {
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i) {
            sm.a[t % GEMM_BK][t / GEMM_BK + GEMM_A_ROWS_STEP * i] = ra[i];
            sm.b[t / GEMM_BN + GEMM_B_KS_STEP * i][t % GEMM_BN] = rb[i];
        }
        __syncthreads();  // the tile is complete before anyone reads it
        if (k0 + GEMM_BK < kend)  // uniform: the same for every thread of the block
            gemm_fetch<T>(op, rows, row_ok, col, col_ok, k0 + GEMM_BK, kend, ra, rb);
#pragma unroll
        for (int kk = 0; kk < GEMM_BK; ++kk) {
            T a[GEMM_TM], b[GEMM_TN];
#pragma unroll
            for (int i = 0; i < GEMM_TM; ++i) a[i] = sm.a[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < GEMM_TN; ++j) b[j] = sm.b[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < GEMM_TM; ++i)
#pragma unroll
                for (int j = 0; j < GEMM_TN; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();  // everyone is done reading before the next tile overwrites it
    }
}
