// Test fixtures of kernels/mma.cuh's warpgroup MMA (wgmma), one warpgroup (128 threads) each: the
// same text runs on the emulator (tests/test_wgmma_prims.py) and, compiled for sm_90a, on a GPU.
#include "../../kernels/mma.cuh"

// Word offset of (row, k) in a tile of 32-word rows with the 128-byte swizzle: 16-byte chunk k / 4
// of row r at chunk (k / 4) ^ (r % 8) (tc_gemm.cuh's tc_swz, written out here on its own).
__device__ __forceinline__ int swz(int r, int k) { return r * 32 + (((k >> 2) ^ (r & 7)) << 2) + (k & 3); }

// Where accumulator v of warp w's lane 4g + q lies in a row-major (64, N) matrix (mma.cuh's wgmma table).
__device__ __forceinline__ int wg_acc(int n, int w, int g, int q, int v) {
    return (16 * w + g + 8 * (v / 2 % 2)) * n + 8 * (v / 4) + 2 * q + v % 2;
}

// The last commit, the wait for every group, then D (64, N) from the accumulators.
template <int N> __device__ __forceinline__ void wg_store(float (&d)[N / 2], float* __restrict__ D) {
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    wgmma_commit();
    wgmma_wait<0>(d);
#pragma unroll
    for (int v = 0; v < N / 2; ++v) D[wg_acc(N, w, lane / 4, lane % 4, v)] = d[v];
}

// D = A Bᵀ + C (scale_d = 1) or A Bᵀ (0): A (64, 32), B (N, 32), C and D (64, N) row-major in global
// memory. A and B are stored in dynamic shared memory rows of 32 words in swz's layout, A's tile at the first 1024-byte boundary and
// B's 8 KiB after it; ksteps wgmma of k8 each (1 to 4) step the descriptors by 32 bytes, all in one
// commit group. C and D move through the accumulator fragments of mma.cuh's table. Dynamic shared
// memory: 1024 + 8192 + N * 128 bytes.
template <int N>
__device__ void wgmma_gemm(const float* __restrict__ A, const float* __restrict__ B, const float* __restrict__ C,
                           float* __restrict__ D, int ksteps, int scale_d, unsigned char* smem) {
#if WGMMA_AVAILABLE
    const int t = threadIdx.x, lane = t % 32, w = t / 32, g = lane / 4, q = lane % 4;
    float* sa = reinterpret_cast<float*>(smem + ((1024 - smem_addr(smem) % 1024) % 1024));
    float* sb = sa + 64 * 32;
    for (int e = t; e < 64 * 32; e += 128) sa[swz(e / 32, e % 32)] = A[e];
    for (int e = t; e < N * 32; e += 128) sb[swz(e / 32, e % 32)] = B[e];
    fence_proxy_async();
    __syncthreads();
    float d[N / 2];
#pragma unroll
    for (int v = 0; v < N / 2; ++v) d[v] = C[wg_acc(N, w, g, q, v)];
    const unsigned long long da = wgmma_desc_sw128(sa), db = wgmma_desc_sw128(sb);
    wgmma_fence();
    for (int s = 0; s < ksteps; ++s) wgmma_tf32<N>(d, da + 2 * s, db + 2 * s, s > 0 || scale_d);
    wg_store<N>(d, D);
#else
    __trap();
#endif
}

#define WGMMA_GEMM(N)                                                                                    \
    extern "C" __global__ void __launch_bounds__(128) wgmma_m64n##N##k8(                                 \
        const float* __restrict__ A, const float* __restrict__ B, const float* __restrict__ C,           \
        float* __restrict__ D, int ksteps, int scale_d) {                                                \
        extern __shared__ __align__(16) unsigned char wgmma_smem[];                                      \
        wgmma_gemm<N>(A, B, C, D, ksteps, scale_d, wgmma_smem);                                          \
    }
WGMMA_GEMM(8)
WGMMA_GEMM(16)
WGMMA_GEMM(24)
WGMMA_GEMM(32)
WGMMA_GEMM(40)
WGMMA_GEMM(48)
WGMMA_GEMM(56)
WGMMA_GEMM(64)
WGMMA_GEMM(128)

// Two commit groups in flight: D1 = A B1ᵀ (group 1), D2 = A B2ᵀ (group 2, B2 = B's rows 8-15);
// wait_group 1 finishes group 1 only: D1 is stored, then D2 after wait_group 0 (N = 8, 1 k-step).
// out: D1 (64 x 8) then D2 (64 x 8).
extern "C" __global__ void __launch_bounds__(128) wgmma_two_groups(const float* __restrict__ A,
                                                                   const float* __restrict__ B,
                                                                   float* __restrict__ out) {
#if WGMMA_AVAILABLE
    extern __shared__ __align__(16) unsigned char wgmma_smem[];
    const int t = threadIdx.x, lane = t % 32, w = t / 32, g = lane / 4, q = lane % 4;
    float* sa = reinterpret_cast<float*>(wgmma_smem + ((1024 - smem_addr(wgmma_smem) % 1024) % 1024));
    float* sb = sa + 64 * 32;
    for (int e = t; e < 64 * 32; e += 128) sa[swz(e / 32, e % 32)] = A[e];
    for (int e = t; e < 16 * 32; e += 128) sb[swz(e / 32, e % 32)] = B[e];
    fence_proxy_async();
    __syncthreads();
    float d1[4] = {}, d2[4] = {};
    wgmma_fence();
    wgmma_tf32<8>(d1, wgmma_desc_sw128(sa), wgmma_desc_sw128(sb), 0);
    wgmma_commit();
    wgmma_tf32<8>(d2, wgmma_desc_sw128(sa), wgmma_desc_sw128(sb + 8 * 32), 0);  // rows 8-15: the next 8-row group
    wgmma_commit();
    wgmma_wait<1>(d1);
    for (int v = 0; v < 4; ++v) out[(16 * w + g + 8 * (v / 2)) * 8 + 2 * q + v % 2] = d1[v];
    wgmma_wait<0>(d2);
    for (int v = 0; v < 4; ++v) out[512 + (16 * w + g + 8 * (v / 2)) * 8 + 2 * q + v % 2] = d2[v];
#else
    __trap();
#endif
}

// Misuse the emulator reports: the accumulators read before the wait (they hold poison).
extern "C" __global__ void __launch_bounds__(128) wgmma_early_read(const float* __restrict__ A, float* __restrict__ out) {
#if WGMMA_AVAILABLE
    extern __shared__ __align__(16) unsigned char wgmma_smem[];
    float* sa = reinterpret_cast<float*>(wgmma_smem + ((1024 - smem_addr(wgmma_smem) % 1024) % 1024));
    for (int e = threadIdx.x; e < 64 * 32; e += 128) sa[swz(e / 32, e % 32)] = A[e];
    fence_proxy_async();
    __syncthreads();
    float d[4] = {};
    wgmma_fence();
    wgmma_tf32<8>(d, wgmma_desc_sw128(sa), wgmma_desc_sw128(sa), 0);
    wgmma_commit();
    out[threadIdx.x] = d[0];  // a race on a GPU: no wait yet
    wgmma_wait<0>(d);
#else
    __trap();
#endif
}

// Misuse the emulator reports, on A all ones at the first 1024-byte boundary and B at b_bytes past it:
// b_bytes 9216, B beyond the launch's 9 KiB of shared memory; race 1, after the issue and before the
// wait warp 3 writes a word of A that warp 0's wgmma reads (row 0) with no barrier between (wgmma
// reads its operands at any time up to its wait_group), which the race checks report.
extern "C" __global__ void __launch_bounds__(128) wgmma_misuse(float* __restrict__ out, int b_bytes, int race) {
#if WGMMA_AVAILABLE
    extern __shared__ __align__(16) unsigned char wgmma_smem[];
    float* sa = reinterpret_cast<float*>(wgmma_smem + ((1024 - smem_addr(wgmma_smem) % 1024) % 1024));
    for (int e = threadIdx.x; e < 64 * 32; e += 128) sa[e] = 1.f;
    fence_proxy_async();
    __syncthreads();
    float d[4] = {};
    wgmma_fence();
    wgmma_tf32<8>(d, wgmma_desc_sw128(sa), wgmma_desc_sw128(sa) + (b_bytes >> 4), 0);
    wgmma_commit();
    if (race && threadIdx.x == 96) sa[0] = 2.f;
    wgmma_wait<0>(d);
    out[threadIdx.x] = d[0];
#else
    __trap();
#endif
}

// D = A Bᵀ + C (scale_d = 1) or A Bᵀ (0) with A from registers (wgmma_tf32_rs): each thread loads
// its fragments of A (64, 32) from global memory as mma.cuh's table gives them, the raw float bits
// (the tensor core reads them as TF32); B (N, 32) goes to shared memory in the no-swizzle K-major
// layout of lbo and sbo (element (r, k) at (r / 8) sbo + (k / 4) lbo + (r % 8) 16 + (k % 4) 4
// bytes), k-step s's descriptor at 2 s lbo. waits: each k-step its own commit group, wait_group 1
// after it (the next issued on accumulators still in flight; conv2d_halo.cu's taps), else one
// group. Dynamic shared memory: enough for the layout given.
template <int N>
__device__ void wgmma_rs_gemm(const float* __restrict__ A, const float* __restrict__ B, const float* __restrict__ C,
                              float* __restrict__ D, int ksteps, int scale_d, int lbo, int sbo, int waits,
                              unsigned char* smem) {
#if WGMMA_AVAILABLE
    const int t = threadIdx.x, lane = t % 32, w = t / 32, g = lane / 4, q = lane % 4;
    for (int e = t; e < N * 32; e += 128) {
        const int r = e / 32, k = e % 32;
        *reinterpret_cast<float*>(smem + (r / 8) * sbo + (k / 4) * lbo + (r % 8) * 16 + (k % 4) * 4) = B[e];
    }
    fence_proxy_async();
    __syncthreads();
    float d[N / 2];
#pragma unroll
    for (int v = 0; v < N / 2; ++v) d[v] = C[wg_acc(N, w, g, q, v)];
    unsigned a[4][4];
#pragma unroll
    for (int s = 0; s < 4; ++s)
#pragma unroll
        for (int j = 0; j < 4; ++j) a[s][j] = __float_as_uint(A[(16 * w + g + 8 * (j & 1)) * 32 + 8 * s + q + 4 * (j >> 1)]);
    const unsigned base = smem_addr(smem);
    wgmma_fence();
#pragma unroll
    for (int s = 0; s < 4; ++s)
        if (s < ksteps) {
            wgmma_tf32_rs<N>(d, a[s], wgmma_desc_kmajor(base + 2 * s * lbo, lbo, sbo), s > 0 || scale_d);
            if (waits) wgmma_commit(), wgmma_wait_only<1>();
        }
    wg_store<N>(d, D);
#else
    __trap();
#endif
}

#define WGMMA_RS_GEMM(N)                                                                                 \
    extern "C" __global__ void __launch_bounds__(128) wgmma_rs_m64n##N##k8(                              \
        const float* __restrict__ A, const float* __restrict__ B, const float* __restrict__ C,           \
        float* __restrict__ D, int ksteps, int scale_d, int lbo, int sbo, int waits) {                   \
        extern __shared__ __align__(16) unsigned char wgmma_smem[];                                      \
        wgmma_rs_gemm<N>(A, B, C, D, ksteps, scale_d, lbo, sbo, waits, wgmma_smem);                      \
    }
WGMMA_RS_GEMM(8)
WGMMA_RS_GEMM(16)
WGMMA_RS_GEMM(32)
WGMMA_RS_GEMM(64)
