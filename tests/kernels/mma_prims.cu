// Test fixtures of kernels/mma.cuh's primitives, one warp each: the same
// text runs on the emulator (tests/test_mma_prims.py) and on a GPU (marked gpu).
#include "../../kernels/mma.cuh"

// D = A B + C with A (16, 8), B (8, 8), C and D (16, 8) row-major in global
// memory; each lane gathers its fragments by the PTX ISA's table. convert:
// pass the operands through cvt.rna.tf32.f32 first.
extern "C" __global__ void mma_m16n8k8(const float* __restrict__ A, const float* __restrict__ B,
                                       const float* __restrict__ C, float* __restrict__ D, int convert) {
    const int l = threadIdx.x, g = l / 4, t = l % 4;
    const float av[4] = {A[g * 8 + t], A[(g + 8) * 8 + t], A[g * 8 + t + 4], A[(g + 8) * 8 + t + 4]};
    const float bv[2] = {B[t * 8 + g], B[(t + 4) * 8 + g]};
    unsigned a[4], b[2];
    for (int i = 0; i < 4; ++i) a[i] = convert ? tf32_rna(av[i]) : __float_as_uint(av[i]);
    for (int i = 0; i < 2; ++i) b[i] = convert ? tf32_rna(bv[i]) : __float_as_uint(bv[i]);
    const float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
    float d[4];
    mma_tf32(d, a, b, c);
    D[g * 8 + 2 * t] = d[0];
    D[g * 8 + 2 * t + 1] = d[1];
    D[(g + 8) * 8 + 2 * t] = d[2];
    D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// tf32_rna of each element.
extern "C" __global__ void cvt_tf32(const float* __restrict__ x, unsigned* __restrict__ y, int n) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = tf32_rna(x[i]);
}

// tf32_rn of each element.
extern "C" __global__ void cvt_tf32_rn(const float* __restrict__ x, unsigned* __restrict__ y, int n) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = tf32_rn(x[i]);
}

// m: 4 matrices of 8 x 8 b16 (8 rows of 4 words each). They are stored in
// shared memory rows 48 bytes apart (not contiguous), and out[l * 4 + i]
// receives lane l's register i.
template <int COUNT, bool TRANS> __device__ void ldsm(const unsigned* m, unsigned* out) {
    __shared__ __align__(16) unsigned s[32][12];
    const int l = threadIdx.x;
    for (int i = 0; i < 4; ++i) s[l][i] = m[l * 4 + i];
    __syncwarp();
    unsigned r[COUNT];
    ldmatrix<COUNT, TRANS>(r, &s[l][0]);  // lanes past 8 * COUNT give addresses that are ignored
    for (int i = 0; i < 4; ++i) out[l * 4 + i] = i < COUNT ? r[i] : 0u;
}
extern "C" __global__ void ldsm_x1(const unsigned* __restrict__ m, unsigned* __restrict__ out) { ldsm<1, false>(m, out); }
extern "C" __global__ void ldsm_x2(const unsigned* __restrict__ m, unsigned* __restrict__ out) { ldsm<2, false>(m, out); }
extern "C" __global__ void ldsm_x4(const unsigned* __restrict__ m, unsigned* __restrict__ out) { ldsm<4, false>(m, out); }
extern "C" __global__ void ldsm_x1_t(const unsigned* __restrict__ m, unsigned* __restrict__ out) { ldsm<1, true>(m, out); }
extern "C" __global__ void ldsm_x2_t(const unsigned* __restrict__ m, unsigned* __restrict__ out) { ldsm<2, true>(m, out); }
extern "C" __global__ void ldsm_x4_t(const unsigned* __restrict__ m, unsigned* __restrict__ out) { ldsm<4, true>(m, out); }

// Lane l copies BYTES from src + l * BYTES with src-size keep[l] into shared
// memory, in two groups (lanes' first and second halves of src); reads back
// after waiting for `waits` groups' worth (2: wait_group 0, 1: wait_group 1,
// 0: no wait at all), then a barrier.
template <int BYTES> __device__ void copy(const float* src, const int* keep, float* out, int waits) {
    constexpr int E = BYTES / 4;
    __shared__ __align__(16) float s[2][32 * 4];
    const int l = threadIdx.x;
    for (int h = 0; h < 2; ++h) {
        cp_async<BYTES>(&s[h][l * E], src + (h * 32 + l) * E, keep[h * 32 + l]);
        cp_async_commit();
    }
    if (waits == 2) cp_async_wait<0>();
    if (waits == 1) cp_async_wait<1>();
    __syncthreads();
    for (int h = 0; h < 2; ++h)
        for (int e = 0; e < E; ++e) out[(h * 32 + l) * E + e] = s[h][l * E + e];
    if (waits < 2) cp_async_wait<0>();  // nothing left in flight at exit
}
extern "C" __global__ void copy4(const float* __restrict__ src, const int* __restrict__ keep, float* __restrict__ out,
                                 int waits) { copy<4>(src, keep, out, waits); }
extern "C" __global__ void copy8(const float* __restrict__ src, const int* __restrict__ keep, float* __restrict__ out,
                                 int waits) { copy<8>(src, keep, out, waits); }
extern "C" __global__ void copy16(const float* __restrict__ src, const int* __restrict__ keep, float* __restrict__ out,
                                  int waits) { copy<16>(src, keep, out, waits); }

// old[l] = atomic_inc_acq_rel(counter, wrap) from each lane: the counter's
// values in some order (the lanes' atomics are unordered), atomicInc's wrap.
#ifndef GPUCNN_INOUT  // as kernels/common.cuh: the counter is read and updated in place
#define GPUCNN_INOUT
#endif
extern "C" __global__ void atom_inc_acq_rel(unsigned* GPUCNN_INOUT counter, unsigned* __restrict__ old, unsigned wrap) {
    old[threadIdx.x] = atomic_inc_acq_rel(counter, wrap);
}

// Faults the emulator must report: a misaligned cp.async source and ldmatrix
// row, and an mma that lane 31 never reaches.
extern "C" __global__ void bad_copy_align(const float* __restrict__ src, float* __restrict__ out) {
    __shared__ __align__(16) float s[64];
    cp_async<16>(&s[threadIdx.x % 16 * 4], src + 1, 16);
    cp_async_wait<0>();
    out[threadIdx.x] = 0.0f;
}
extern "C" __global__ void bad_ldsm_align(float* __restrict__ out) {
    __shared__ __align__(16) unsigned s[8 * 5];
    s[threadIdx.x] = threadIdx.x;
    __syncwarp();
    unsigned r[1];
    ldmatrix<1, false>(r, &s[threadIdx.x % 8 * 5]);  // rows 20 bytes apart
    out[threadIdx.x] = (float)r[0];
}
extern "C" __global__ void bad_mma_diverged(float* __restrict__ out) {
    if (threadIdx.x == 31) return;
    const unsigned a[4] = {0u, 0u, 0u, 0u}, b[2] = {0u, 0u};
    const float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float d[4];
    mma_tf32(d, a, b, c);
    out[threadIdx.x] = d[0];
}
