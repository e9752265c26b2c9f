// common.cuh: what every kernel family shares. Inlined into each .cu by
// gpucnn/runtime/loader.py before compilation (never reached through -I).
#pragma once

// Marks a pointer parameter that a kernel updates in place (a scatter into an
// output the caller prepared). The emulator neither poisons it before the
// launch nor reports its untouched elements as unwritten; on a GPU it is empty.
#ifndef GPUCNN_INOUT
#define GPUCNN_INOUT
#endif

// Grid-stride loop over 64-bit indices (Caffe's CUDA_KERNEL_LOOP): a kernel is
// correct for any grid size, so the launch helper may cap the grid and the
// tests may shrink it to a couple of blocks.
#define GRID_STRIDE_LOOP(i, n)                                                     \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// -inf without <cmath>, for max reductions that must let NaN and -inf through.
template <typename T> __device__ __forceinline__ T neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double neg_inf<double>() { return __longlong_as_double(0xfff0000000000000ULL); }

template <typename T> __device__ __forceinline__ bool is_nan(T v) { return v != v; }

// 16-byte vectors: float4 for float, double2 for double. Memory-bound kernels
// move 16 bytes per access when every pointer they touch is 16-byte aligned.
template <typename T> struct Vec16;
template <> struct Vec16<float> { typedef float4 type; enum { n = 4 }; };
template <> struct Vec16<double> { typedef double2 type; enum { n = 2 }; };

// a / b and a % b (a >= 0, b > 0) in 32 bits when both fit: about 20 inline
// instructions where a 64-bit division is a CALL of ~70 (a thread's set-up in
// the grid-stride loops of the memory-bound kernels, which run a thread an
// output or a vector: pool2d.cu, channel.cuh). NVRTC puts the same test in
// front of a 64-bit division of its own; this one also gives the remainder
// without a second division.
__device__ __forceinline__ long long div_rem(long long a, long long b, long long& rem) {
    const long long q = ((unsigned long long)a | (unsigned long long)b) >> 32 == 0
                            ? (long long)((unsigned)a / (unsigned)b) : a / b;
    rem = a - q * b;
    return q;
}

__device__ __forceinline__ bool aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ULL) == 0;
}
__device__ __forceinline__ bool aligned8(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 7ULL) == 0;
}

// Two adjacent values at p (p[1] only when two): one 8- or 16-byte store
// where vec (the caller knows p aligned to the pair: pool2d.cu's outputs for
// an even Q, tc_gemm.cuh's paired accumulators), else scalar stores.
template <typename T> struct Pair2;
template <> struct Pair2<float> { typedef float2 type; };
template <> struct Pair2<double> { typedef double2 type; };
template <> struct Pair2<long long> { typedef longlong2 type; };
template <typename T> __device__ __forceinline__ void store_pair(T* __restrict__ p, bool vec, bool two, T a, T b) {
    if (vec) {
        typename Pair2<T>::type t;
        t.x = a, t.y = b;
        *reinterpret_cast<typename Pair2<T>::type*>(p) = t;
    } else {
        p[0] = a;
        if (two) p[1] = b;
    }
}

// A fused epilogue's activation: torch.relu's rule when relu is set (NaN
// passes, everything not above zero becomes zero), else the value itself.
template <typename T> __device__ __forceinline__ T relu_if(T v, int relu) {
    return (relu && !(v > T(0)) && !is_nan(v)) ? T(0) : v;
}

// The forward convolutions' epilogue flags (int epi; gpucnn/cuda/conv.py's
// EPI_RELU, EPI_BIAS): ReLU after the sum, and a bias to add. Without
// EPI_BIAS the bias pointer is any valid one and never read, so a layer
// without bias launches no zero-filled bias array.
#define EPI_RELU 1
#define EPI_BIAS 2

// part[j][0] = the sum of v[j] over the block's THREADS threads, j < N, by a
// fixed tree (the same order every run: deterministic without atomics); v has
// n <= N values, the rest count as zeros. Every thread calls it (barriers);
// part is free again only after the caller's next barrier.
template <int N, int THREADS, typename T>
__device__ __forceinline__ void block_tree_sum(T (*part)[THREADS], const T* v, int n) {
    const int t = threadIdx.x;
#pragma unroll
    for (int j = 0; j < N; ++j) part[j][t] = j < n ? v[j] : T(0);
    __syncthreads();
#pragma unroll
    for (int h = THREADS / 2; h > 0; h >>= 1) {
        if (t < h)
#pragma unroll
            for (int j = 0; j < N; ++j) part[j][t] += part[j][t + h];
        __syncthreads();
    }
}

// v[j] (j < N) summed over the block's THREADS threads into thread 0's v, by a
// fixed tree (the same order every run): each warp's 32 lanes halved by
// shuffles (lane l adds lane l + s, s = 16, 8, ..., 1), then warp 0 halves the
// THREADS / 32 warps' sums (part[j][w]) alike. One barrier, where
// block_tree_sum's shared-memory tree takes log2(THREADS) + 1 (9 for 256).
// Every thread calls it; only thread 0's v holds the sums after it; part is
// free again only after the caller's next barrier.
template <int N, int WIDTH, typename T> __device__ __forceinline__ void warp_halve(T (&v)[N]) {
#pragma unroll
    for (int s = WIDTH / 2; s > 0; s >>= 1)
#pragma unroll
        for (int j = 0; j < N; ++j) v[j] += __shfl_down_sync(0xffffffffu, v[j], s);
}
template <int N, int THREADS, typename T>
__device__ __forceinline__ void block_warp_sum(T (*part)[THREADS], T (&v)[N]) {
    constexpr int W = THREADS / 32;
    static_assert(THREADS % 32 == 0 && W <= 32 && (W & (W - 1)) == 0, "block_warp_sum: 32 x 2^k threads");
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    warp_halve<N, 32>(v);
    if (lane == 0)
#pragma unroll
        for (int j = 0; j < N; ++j) part[j][w] = v[j];
    __syncthreads();
    if (w == 0) {
#pragma unroll
        for (int j = 0; j < N; ++j) v[j] = lane < W ? part[j][lane] : T(0);
        warp_halve<N, W>(v);
    }
}
