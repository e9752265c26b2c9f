// dropout.cu: inverted dropout with a counter-based generator on the device.
//
// Kernels (T = float as _f32, double as _f64; n = number of elements):
//   dropout_forward_T (const T* x, T* y, T* mask, long long n,
//                      const unsigned long long* state, long long threshold, T scale)
//                      x, y, mask: (n,); state: (2,) = (seed, offset)
//   dropout_backward_T(const T* dy, const T* mask, T* dx, long long n)   dy, mask, dx: (n,)
//   dropout_advance   (unsigned long long* GPUCNN_INOUT state, long long n)   state: (2,)
//
// Element i draws k = the top 24 bits of splitmix64's output for counter
// offset + i + 1 from seed (the generator's published definition), and is
// kept iff k >= threshold = ceil(p * 2^24): integers only, so the mask is the
// same on every backend and for both dtypes. mask = keep ? scale : 0 with
// scale = 1 / (1 - p), y = x * mask, dx = dy * mask. The generator's state
// lives in device memory and dropout_advance moves its offset past the n
// values used, so a captured step (a CUDA graph) draws new masks each replay.
#include "common.cuh"

__device__ __forceinline__ long long dropout_bits24(unsigned long long seed, unsigned long long counter) {
    unsigned long long z = seed + counter * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (long long)(z >> 40);
}

template <typename T>
__device__ __forceinline__ void dropout_forward(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ mask,
                                                long long n, const unsigned long long* __restrict__ state,
                                                long long threshold, T scale) {
    const unsigned long long seed = state[0], offset = state[1];
    GRID_STRIDE_LOOP(i, n) {
        const T m = dropout_bits24(seed, offset + (unsigned long long)i + 1ull) >= threshold ? scale : T(0);
        mask[i] = m;
        y[i] = x[i] * m;
    }
}

template <typename T>
__device__ __forceinline__ void dropout_backward(const T* __restrict__ dy, const T* __restrict__ mask,
                                                 T* __restrict__ dx, long long n) {
    GRID_STRIDE_LOOP(i, n) { dx[i] = dy[i] * mask[i]; }
}

extern "C" __global__ void dropout_forward_f32(const float* __restrict__ x, float* __restrict__ y,
                                               float* __restrict__ mask, long long n,
                                               const unsigned long long* __restrict__ state, long long threshold,
                                               float scale) {
    dropout_forward(x, y, mask, n, state, threshold, scale);
}
extern "C" __global__ void dropout_forward_f64(const double* __restrict__ x, double* __restrict__ y,
                                               double* __restrict__ mask, long long n,
                                               const unsigned long long* __restrict__ state, long long threshold,
                                               double scale) {
    dropout_forward(x, y, mask, n, state, threshold, scale);
}

extern "C" __global__ void dropout_backward_f32(const float* __restrict__ dy, const float* __restrict__ mask,
                                                float* __restrict__ dx, long long n) {
    dropout_backward(dy, mask, dx, n);
}
extern "C" __global__ void dropout_backward_f64(const double* __restrict__ dy, const double* __restrict__ mask,
                                                double* __restrict__ dx, long long n) {
    dropout_backward(dy, mask, dx, n);
}

// One thread: launched after the forward, in stream order, so every thread of
// the forward has read the old offset.
extern "C" __global__ void dropout_advance(unsigned long long* GPUCNN_INOUT __restrict__ state, long long n) {
    if (blockIdx.x == 0 && threadIdx.x == 0) state[1] += (unsigned long long)n;
}
