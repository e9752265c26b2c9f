// batchnorm.cu: 2-D batch normalization (Ioffe & Szegedy 2015, Algorithm 1 and
// the gradients of §3), per channel c of x (N, C, H, W) over its n = N*H*W values.
//
// Kernels (T = float as _f32, double as _f64; HW = H*W; count = N*C*HW):
//   batchnorm_stats_T   (const T* x, T* mean, T* invstd, T* GPUCNN_INOUT run_mean,
//                        T* GPUCNN_INOUT run_var, int N, int C, long long HW, double inv_n,
//                        double unbias, double eps, double momentum, int update)
//                        x: (N,C,HW)  mean, invstd, run_mean, run_var: (C,)
//   batchnorm_forward_T (const T* x, const T* mean, const T* invstd, const T* gamma,
//                        const T* beta, T* y, long long count, int C, long long HW)
//                        x, y: (N,C,HW)  mean, invstd, gamma, beta: (C,)
//   batchnorm_backward_reduce_T(const T* dy, const T* x, const T* mean, const T* invstd,
//                        T* dgamma, T* dbeta, int N, int C, long long HW)
//                        dy, x: (N,C,HW)  the rest: (C,)
//   batchnorm_backward_data_T(const T* dy, const T* x, const T* mean, const T* invstd,
//                        const T* gamma, const T* dgamma, const T* dbeta, T* dx,
//                        long long count, int C, long long HW, T inv_n, int batch_stats)
//
// Statistics: one block per channel (block-stride over channels), each thread
// summing a strided share of the channel's n values, then a fixed-order tree
// over the block in shared memory: no atomics, the same bits on every run.
// Sums are accumulated in double for both dtypes, and the variance takes a
// second pass over x, sum((x - mean)^2) / n, rather than E[x^2] - mean^2,
// which cancels catastrophically when |mean| >> std.
// The running statistics, when update != 0, are updated in place in copies
// the caller made (torch's rule: running = (1 - momentum) * running +
// momentum * batch, with the unbiased variance unbias * var, unbias = n/(n-1)).
// The host passes 1/n and n/(n-1), and invstd comes from rsqrt (1 ulp in
// double): a double division or sqrt is a subroutine call whose saved
// registers spill to the stack.
//
// Backward with xhat = (x - mean) * invstd (the forward's saved statistics):
//   dbeta = sum dy,  dgamma = sum dy * xhat,
//   dx = gamma * invstd * (dy - dbeta/n - xhat * dgamma/n)   with batch statistics,
//   dx = gamma * invstd * dy                                   with running ones (constants).
#include "common.cuh"

#define BN_THREADS 256

// Block sum of v over BN_THREADS threads through part (BN_THREADS doubles): a
// fixed tree, so the order of additions never depends on timing. Every
// thread returns the total; part may be reused after the call.
__device__ __forceinline__ double block_sum(double* part, double v) {
    const int t = threadIdx.x;
    part[t] = v;
    __syncthreads();
    for (int s = BN_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) part[t] += part[t + s];
        __syncthreads();
    }
    const double total = part[0];
    __syncthreads();  // every thread has read part[0] before the next sum overwrites it
    return total;
}

// x's element i (0 <= i < N*HW) of channel c: image i / HW, offset i % HW.
template <typename T>
__device__ __forceinline__ T channel_at(const T* __restrict__ x, long long i, int c, int C, long long HW) {
    const long long img = i / HW;
    return x[(img * C + c) * HW + (i - img * HW)];
}

template <typename T>
__device__ void stats(double* part, const T* __restrict__ x, T* __restrict__ mean, T* __restrict__ invstd,
                      T* __restrict__ run_mean, T* __restrict__ run_var, int N, int C, long long HW,
                      double inv_n, double unbias, double eps, double momentum, int update) {
    const int t = threadIdx.x;
    const long long n = (long long)N * HW;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {  // uniform per block: barriers are safe
        double acc = 0.0;
        for (long long i = t; i < n; i += BN_THREADS) acc += (double)channel_at(x, i, c, C, HW);
        const double mu = block_sum(part, acc) * inv_n;
        acc = 0.0;
        for (long long i = t; i < n; i += BN_THREADS) {
            const double d = (double)channel_at(x, i, c, C, HW) - mu;
            acc += d * d;
        }
        const double var = block_sum(part, acc) * inv_n;  // biased: the one that normalizes
        if (t == 0) {
            mean[c] = (T)mu;
            invstd[c] = (T)rsqrt(var + eps);
            if (update) {
                const double m = momentum;
                run_mean[c] = (T)((1.0 - m) * (double)run_mean[c] + m * mu);
                run_var[c] = (T)((1.0 - m) * (double)run_var[c] + m * var * unbias);
            }
        }
    }
}

template <typename T>
__device__ void forward(const T* __restrict__ x, const T* __restrict__ mean, const T* __restrict__ invstd,
                        const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,
                        long long count, int C, long long HW) {
    GRID_STRIDE_LOOP(i, count) {
        const int c = (int)((i / HW) % C);
        y[i] = (x[i] - mean[c]) * (invstd[c] * gamma[c]) + beta[c];
    }
}

template <typename T>
__device__ void backward_reduce(double* part, const T* __restrict__ dy, const T* __restrict__ x,
                                const T* __restrict__ mean, const T* __restrict__ invstd,
                                T* __restrict__ dgamma, T* __restrict__ dbeta, int N, int C, long long HW) {
    const int t = threadIdx.x;
    const long long n = (long long)N * HW;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {  // uniform per block: barriers are safe
        const double mu = (double)mean[c];
        double sdy = 0.0, sdyx = 0.0;  // sum dy and sum dy * (x - mean)
        for (long long i = t; i < n; i += BN_THREADS) {
            const double g = (double)channel_at(dy, i, c, C, HW);
            sdy += g;
            sdyx += g * ((double)channel_at(x, i, c, C, HW) - mu);
        }
        sdy = block_sum(part, sdy);
        sdyx = block_sum(part, sdyx);
        if (t == 0) {
            dbeta[c] = (T)sdy;
            dgamma[c] = (T)(sdyx * (double)invstd[c]);
        }
    }
}

template <typename T>
__device__ void backward_data(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ mean,
                              const T* __restrict__ invstd, const T* __restrict__ gamma,
                              const T* __restrict__ dgamma, const T* __restrict__ dbeta, T* __restrict__ dx,
                              long long count, int C, long long HW, T inv_n, int batch_stats) {
    GRID_STRIDE_LOOP(i, count) {
        const int c = (int)((i / HW) % C);
        const T k = gamma[c] * invstd[c];
        if (batch_stats) {
            // xhat * dgamma/n = (x - mean) * (invstd * dgamma/n)
            const T b = invstd[c] * dgamma[c] * inv_n;
            dx[i] = k * (dy[i] - dbeta[c] * inv_n - (x[i] - mean[c]) * b);
        } else {
            dx[i] = k * dy[i];
        }
    }
}

// ------------------------------------------------------------------ forward

extern "C" __global__ void __launch_bounds__(BN_THREADS)
batchnorm_stats_f32(const float* __restrict__ x, float* __restrict__ mean, float* __restrict__ invstd,
                    float* GPUCNN_INOUT __restrict__ run_mean, float* GPUCNN_INOUT __restrict__ run_var,
                    int N, int C, long long HW, double inv_n, double unbias, double eps, double momentum,
                    int update) {
    __shared__ double part[BN_THREADS];
    stats(part, x, mean, invstd, run_mean, run_var, N, C, HW, inv_n, unbias, eps, momentum, update);
}
extern "C" __global__ void __launch_bounds__(BN_THREADS)
batchnorm_stats_f64(const double* __restrict__ x, double* __restrict__ mean, double* __restrict__ invstd,
                    double* GPUCNN_INOUT __restrict__ run_mean, double* GPUCNN_INOUT __restrict__ run_var,
                    int N, int C, long long HW, double inv_n, double unbias, double eps, double momentum,
                    int update) {
    __shared__ double part[BN_THREADS];
    stats(part, x, mean, invstd, run_mean, run_var, N, C, HW, inv_n, unbias, eps, momentum, update);
}

extern "C" __global__ void batchnorm_forward_f32(const float* __restrict__ x, const float* __restrict__ mean,
                                                 const float* __restrict__ invstd, const float* __restrict__ gamma,
                                                 const float* __restrict__ beta, float* __restrict__ y,
                                                 long long count, int C, long long HW) {
    forward(x, mean, invstd, gamma, beta, y, count, C, HW);
}
extern "C" __global__ void batchnorm_forward_f64(const double* __restrict__ x, const double* __restrict__ mean,
                                                 const double* __restrict__ invstd, const double* __restrict__ gamma,
                                                 const double* __restrict__ beta, double* __restrict__ y,
                                                 long long count, int C, long long HW) {
    forward(x, mean, invstd, gamma, beta, y, count, C, HW);
}

// ----------------------------------------------------------------- backward

extern "C" __global__ void __launch_bounds__(BN_THREADS)
batchnorm_backward_reduce_f32(const float* __restrict__ dy, const float* __restrict__ x,
                              const float* __restrict__ mean, const float* __restrict__ invstd,
                              float* __restrict__ dgamma, float* __restrict__ dbeta, int N, int C, long long HW) {
    __shared__ double part[BN_THREADS];
    backward_reduce(part, dy, x, mean, invstd, dgamma, dbeta, N, C, HW);
}
extern "C" __global__ void __launch_bounds__(BN_THREADS)
batchnorm_backward_reduce_f64(const double* __restrict__ dy, const double* __restrict__ x,
                              const double* __restrict__ mean, const double* __restrict__ invstd,
                              double* __restrict__ dgamma, double* __restrict__ dbeta, int N, int C, long long HW) {
    __shared__ double part[BN_THREADS];
    backward_reduce(part, dy, x, mean, invstd, dgamma, dbeta, N, C, HW);
}

extern "C" __global__ void batchnorm_backward_data_f32(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ mean,
    const float* __restrict__ invstd, const float* __restrict__ gamma, const float* __restrict__ dgamma,
    const float* __restrict__ dbeta, float* __restrict__ dx, long long count, int C, long long HW, float inv_n,
    int batch_stats) {
    backward_data(dy, x, mean, invstd, gamma, dgamma, dbeta, dx, count, C, HW, inv_n, batch_stats);
}
extern "C" __global__ void batchnorm_backward_data_f64(
    const double* __restrict__ dy, const double* __restrict__ x, const double* __restrict__ mean,
    const double* __restrict__ invstd, const double* __restrict__ gamma, const double* __restrict__ dgamma,
    const double* __restrict__ dbeta, double* __restrict__ dx, long long count, int C, long long HW, double inv_n,
    int batch_stats) {
    backward_data(dy, x, mean, invstd, gamma, dgamma, dbeta, dx, count, C, HW, inv_n, batch_stats);
}
