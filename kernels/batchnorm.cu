// batchnorm.cu: 2-D batch normalization (Ioffe & Szegedy 2015, Algorithm 1 and
// the gradients of §3), per channel c of x (N, C, H, W) over its n = N*H*W
// values, optionally followed by a fused ReLU.
//
// Kernels (T = float as _f32, double as _f64; HW = H*W; count = N*C*HW;
// part: (C, chunks, 2) doubles, the per-chunk sums of channel.cuh; counters:
// (C,) zeros or more, zeros again after the launch; both scratch that the
// host keeps from launch to launch, norm.scratch):
//   batchnorm_stats_T         (const T* x, double* part, unsigned* GPUCNN_INOUT counters, T* mean,
//                              T* invstd, const T* run_mean, const T* run_var,
//                              T* GPUCNN_INOUT new_mean, T* GPUCNN_INOUT new_var, int N, int C,
//                              long long HW, long long chunk, int chunks, double inv_n,
//                              double unbias, double eps, double momentum, int update)
//                              mean, invstd, run_mean, run_var, new_mean, new_var: (C,)
//   batchnorm_stats_async_f32 batchnorm_stats_f32's arguments and results, its loads through
//                              shared memory (channel_walk_async; bench/ab_mem.py's A/B)
//   batchnorm_forward_T       (const T* x, const T* mean, const T* invstd, const T* gamma,
//                              const T* beta, T* y, long long count, int C, long long HW, int relu)
//                              x, y: (N,C,HW)  mean, invstd, gamma, beta: (C,)
//   batchnorm_backward_sums_T (const T* dy, const T* x, const T* y, const T* mean, const T* invstd,
//                              double* part, unsigned* GPUCNN_INOUT counters, T* dgamma, T* dbeta,
//                              int N, int C, long long HW, long long chunk, int chunks, int relu)
//   batchnorm_backward_data_T (const T* dy, const T* x, const T* y, const T* mean,
//                              const T* invstd, const T* gamma, const T* dgamma, const T* dbeta,
//                              T* dx, long long count, int C, long long HW, T inv_n,
//                              int batch_stats, int relu)
//
// Statistics: channel.cuh's two-level reduction in one launch (channel x chunk
// blocks, 16-byte groups in flight per thread, fixed trees, double
// accumulation, the channel's last chunk to finish adding the chunks) of the
// shifted sums S1 = sum(x - k), S2 = sum((x - k)^2), with k = x[0, c, 0],
// one of the channel's own values: var = S2/n - (S1/n)^2 then loses only
// about (mean - k)^2 / var of double's 53 bits, where E[x^2] - mean^2 (k = 0)
// cancels catastrophically when |mean| >> std; and x is read once.
// The running statistics, when update != 0, go to new arrays (torch's rule:
// new = (1 - momentum) * running + momentum * batch, with the unbiased
// variance unbias * var, unbias = n/(n-1)); written only then (GPUCNN_INOUT:
// left as they are without update). Read from run_* and written to new_*
// rather than updated in copies: two device copies (launches) and their
// host calls less a training call.
// The host passes 1/n and n/(n-1), and invstd comes from rsqrt (1 ulp in
// double): a double division or sqrt is a subroutine call whose saved
// registers spill to the stack.
//
// Backward with xhat = (x - mean) * invstd (the forward's saved statistics),
// and with relu, dy first masked by the fused output (dy where y > 0 or NaN, else 0):
//   dbeta = sum dy,  dgamma = sum dy * xhat,
//   dx = gamma * invstd * (dy - dbeta/n - xhat * dgamma/n)   with batch statistics,
//   dx = gamma * invstd * dy                                   with running ones (constants).
// The element-wise kernels move 16-byte vectors, several a thread, when HW is
// a multiple of one and the pointers are aligned, else elements along a
// grid-stride loop; both carry the channel along (ChannelPos): no division
// per element.
#include "common.cuh"
#include "mma.cuh"
#include "channel.cuh"

// dy as the ReLU that followed the normalization passes it back (torch's threshold_backward on y).
template <typename T> __device__ __forceinline__ T relu_grad(T dy, T y, int relu) {
    return (relu && y <= T(0)) ? T(0) : dy;
}

// out[i] = f(a[i], b[i], d[i], coef(c)) over an (N, C, HW) layout, c the
// channel of i and coef(c) its coefficients (read from the per-channel
// arrays): by 16-byte vectors when HW is a multiple of one (a vector never
// straddles two channels) and every pointer is aligned, else element by
// element. The vector path gives a thread U vectors of each input,
// blockDim apart (each load coalesced across the warp), their loads and their
// channels' coefficients all issued before the first is used: the H200 ran
// one vector a thread (40 registers, 6 blocks an SM: 24 KiB in flight an SM,
// against ReLU's 32 at 8 blocks) at 82% of the copy rate in a graph, where
// ReLU ran at 97% (bench/results/gpu-2026-11-30). Its grid-stride step keeps
// any grid correct; the host launches one step (norm._map_threads). U: 4 for
// the forward's one input (64 registers on sm_90, 4 blocks an SM: 64 KiB in
// flight), 2 for backward's three (64 registers, 4 blocks: 96 KiB; with 4,
// 106 registers and 2 blocks).
#define CH_APPLY_VECS 4
#define CH_APPLY_VECS_BWD 2
template <int U, typename T, typename Coef, typename F>
__device__ __forceinline__ void channel_apply(const T* __restrict__ a, const T* __restrict__ b,
                                              const T* __restrict__ d, T* __restrict__ out, long long count,
                                              int C, long long HW, Coef coef, F f) {
    typedef typename Vec16<T>::type V;
    typedef decltype(coef(0)) K;
    const int L = Vec16<T>::n;
    if (HW % L == 0 && aligned16(a) && aligned16(b) && aligned16(d) && aligned16(out)) {
        const V *av = reinterpret_cast<const V*>(a), *bv = reinterpret_cast<const V*>(b);
        const V* dv = reinterpret_cast<const V*>(d);
        V* ov = reinterpret_cast<V*>(out);
        const long long nv = count / L, HWv = HW / L, step = (long long)gridDim.x * blockDim.x * U;
        const long long first = (long long)blockIdx.x * blockDim.x * U + threadIdx.x;
        if (first >= nv) return;
        // Channel and offset carried from one grid step to the next (ChannelPos::advance), so the
        // loop divides nothing: the start's divisions, and the step's only where a second comes.
        const ChannelPos lane_step((long long)blockDim.x, C, HWv);
        ChannelPos grid_step = lane_step;  // read only where a second step comes, then made
        if (first + step < nv) grid_step = ChannelPos(step, C, HWv);
        ChannelPos at(first, C, HWv);
        for (long long i0 = first; i0 < nv; i0 += step, at.advance(grid_step, C, (int)HWv)) {
            V va[U], vb[U], vd[U];
            K k[U];
            ChannelPos p = at;
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const long long i = i0 + (long long)u * blockDim.x;
                if (i < nv) va[u] = av[i], vb[u] = bv[i], vd[u] = dv[i], k[u] = coef(p.c);
                if (u + 1 < U) p.advance(lane_step, C, (int)HWv);
            }
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const long long i = i0 + (long long)u * blockDim.x;
                if (i >= nv) break;
                const T *ea = reinterpret_cast<const T*>(&va[u]), *eb = reinterpret_cast<const T*>(&vb[u]);
                const T* ed = reinterpret_cast<const T*>(&vd[u]);
                V res;
                T* er = reinterpret_cast<T*>(&res);
#pragma unroll
                for (int e = 0; e < L; ++e) er[e] = f(ea[e], eb[e], ed[e], k[u]);
                ov[i] = res;
            }
        }
    } else {
        channel_map(count, C, HW, [&](long long i, int c) { out[i] = f(a[i], b[i], d[i], coef(c)); });
    }
}

// The statistics' terms (x - k, (x - k)^2), k = x[0, c, 0] read once a block.
// The statistics' groups in flight a thread in double: 3 groups of 2. With 4,
// the walk and the last block's election (channel_done) spilled 20 bytes on
// sm_90 at CH_BLOCKS' 64 registers (ptxas); 3 x 16 B x 256 threads x 4
// blocks = 48 KiB in flight an SM, still over Little's 22.
#define CH_UNROLL_STATS_F64 3

template <typename T> struct StatsTerm {
    typedef T type;
    const T* x;
    long long HW;
    double k;
    __device__ StatsTerm channel(int c) const { return {x, HW, (double)x[(long long)c * HW]}; }
    __device__ bool aligned() const { return aligned16(x); }
    template <int G, bool Vec> __device__ __forceinline__ void add(long long g, double (&acc)[2]) const {
        T v[G];
        load_group<G, Vec>(x, g, v);
        add_values(v, acc);
    }
    template <int G> __device__ __forceinline__ void add_values(const T (&v)[G], double (&acc)[2]) const {
#pragma unroll
        for (int e = 0; e < G; ++e) {
            const double d = (double)v[e] - k;  // shifted by the channel's first value
            acc[0] += d;
            acc[1] += d * d;
        }
    }
};

// Channel c's mean, invstd and running statistics from its totals s (the
// shifted sums), its shift x0 = x[0, c, 0] and running statistics rm, rv (read
// before the totals: stats' fin).
template <typename T>
__device__ __forceinline__ void stats_channel(int c, const double (&s)[2], double x0, T rm, T rv,
                                           T* __restrict__ mean, T* __restrict__ invstd, T* __restrict__ new_mean,
                                           T* __restrict__ new_var, double inv_n, double unbias, double eps,
                                           double momentum, int update) {
    const double d = s[0] * inv_n, mu = x0 + d;
    const double var = max(s[1] * inv_n - d * d, 0.0);  // biased: the one that normalizes
    mean[c] = (T)mu;
    invstd[c] = (T)rsqrt(var + eps);
    if (update) {
        const double m = momentum;
        new_mean[c] = (T)((1.0 - m) * (double)rm + m * mu);
        new_var[c] = (T)((1.0 - m) * (double)rv + m * var * unbias);
    }
}

// Both levels of the statistics; the channel's totals give its statistics
// (channel_reduce's fin, once a channel). With a ring (batchnorm_stats_async_f32:
// float, sm_80 and newer), 16-byte groups walk through it (channel_walk_async).
template <typename T>
__device__ void stats(double (*sm)[CH_THREADS], float4 (*ring)[CH_THREADS], const T* __restrict__ x, double* part,
                      unsigned* counters, T* __restrict__ mean, T* __restrict__ invstd, const T* __restrict__ run_mean,
                      const T* __restrict__ run_var, T* __restrict__ new_mean, T* __restrict__ new_var, int N, int C,
                      long long HW, long long chunk, int chunks, double inv_n, double unbias, double eps,
                      double momentum, int update) {
    constexpr int U = sizeof(T) == 8 ? CH_UNROLL_STATS_F64 : CH_UNROLL;
    const StatsTerm<T> term{x, HW, 0.0};
    const auto fin = [&](int c) {  // the channel's loads, then its results from its totals
        const double x0 = (double)x[(long long)c * HW];
        const T rm = update ? run_mean[c] : T(0), rv = update ? run_var[c] : T(0);
        return [=](const double (&s)[2]) {
            stats_channel(c, s, x0, rm, rv, mean, invstd, new_mean, new_var, inv_n, unbias, eps, momentum, update);
        };
    };
    channel_reduce_ring<2, U>(sm, ring, part, counters, x, N, C, HW, chunk, chunks, term, fin);
}

template <typename T>
__device__ void forward(const T* __restrict__ x, const T* __restrict__ mean, const T* __restrict__ invstd,
                        const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,
                        long long count, int C, long long HW, int relu) {
    struct K { T mean, scale, beta; };
    channel_apply<CH_APPLY_VECS>(
        x, x, x, y, count, C, HW, [&](int c) { return K{mean[c], invstd[c] * gamma[c], beta[c]}; },
        [&](T v, T, T, const K& k) { return relu_if((v - k.mean) * k.scale + k.beta, relu); });
}

// The backward sums' terms (g, g * (x - mean)), g = dy masked by the fused
// ReLU's output y (read only with relu), mean[c] read once a block.
template <typename T> struct BackwardTerm {
    typedef T type;
    const T *dy, *x, *y, *mean;
    int relu;
    double m;
    __device__ BackwardTerm channel(int c) const { return {dy, x, y, mean, relu, (double)mean[c]}; }
    __device__ bool aligned() const { return aligned16(dy) && aligned16(x) && aligned16(y); }
    template <int G, bool Vec> __device__ __forceinline__ void add(long long g, double (&acc)[2]) const {
        T d[G], v[G], r[G] = {};
        load_group<G, Vec>(dy, g, d);
        load_group<G, Vec>(x, g, v);
        if (relu) load_group<G, Vec>(y, g, r);
#pragma unroll
        for (int e = 0; e < G; ++e) {
            const double gr = (double)relu_grad(d[e], r[e], relu);
            acc[0] += gr;                          // sum dy
            acc[1] += gr * ((double)v[e] - m);     // sum dy * (x - mean)
        }
    }
};

template <typename T>
__device__ void backward_sums(double (*sm)[CH_THREADS], const T* __restrict__ dy, const T* __restrict__ x,
                              const T* __restrict__ y, const T* __restrict__ mean, const T* __restrict__ invstd,
                              double* part, unsigned* counters, T* __restrict__ dgamma, T* __restrict__ dbeta, int N,
                              int C, long long HW, long long chunk, int chunks, int relu) {
    channel_reduce<2, CH_UNROLL_BWD>(sm, part, counters, N, C, HW, chunk, chunks,
                                     BackwardTerm<T>{dy, x, y, mean, relu, 0.0}, [&](int c) {
        const double is = (double)invstd[c];
        return [=](const double (&s)[2]) {
            dbeta[c] = (T)s[0];
            dgamma[c] = (T)(s[1] * is);
        };
    });
}

template <typename T>
__device__ void backward_data(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                              const T* __restrict__ mean, const T* __restrict__ invstd, const T* __restrict__ gamma,
                              const T* __restrict__ dgamma, const T* __restrict__ dbeta, T* __restrict__ dx,
                              long long count, int C, long long HW, T inv_n, int batch_stats, int relu) {
    // k = gamma * invstd; with batch statistics, xhat * dgamma/n = (x - mean) * (invstd * dgamma/n)
    struct K { T k, mean, b, db; };
    channel_apply<CH_APPLY_VECS_BWD>(
        dy, x, y, dx, count, C, HW,
        [&](int c) {
            const T k = gamma[c] * invstd[c];
            if (!batch_stats) return K{k, T(0), T(0), T(0)};
            return K{k, mean[c], invstd[c] * dgamma[c] * inv_n, dbeta[c] * inv_n};
        },
        [&](T g, T xv, T yv, const K& k) {
            g = relu_grad(g, yv, relu);
            return batch_stats ? k.k * (g - k.db - (xv - k.mean) * k.b) : k.k * g;
        });
}

// The entry points, one set a dtype; the partial sums are double for both.
// STATS_BLOCKS: the statistics' resident blocks. In double, 4 groups of 2
// in flight fit CH_BLOCKS' 64 registers on sm_90 only: older ptxas spilled 8
// bytes there, so those get 3 blocks (85 registers; 48 KiB in flight, still
// over Little's 22).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define CH_BLOCKS_STATS_F64 3
#else
#define CH_BLOCKS_STATS_F64 CH_BLOCKS
#endif
#define BATCHNORM_KERNELS(T, SUF, STATS_BLOCKS)                                                              \
    extern "C" __global__ void __launch_bounds__(CH_THREADS, STATS_BLOCKS)                                   \
    batchnorm_stats_##SUF(const T* __restrict__ x, double* part, unsigned* GPUCNN_INOUT counters,             \
                          T* __restrict__ mean, T* __restrict__ invstd, const T* __restrict__ run_mean,        \
                          const T* __restrict__ run_var, T* GPUCNN_INOUT __restrict__ new_mean,                \
                          T* GPUCNN_INOUT __restrict__ new_var, int N, int C, long long HW, long long chunk,   \
                          int chunks, double inv_n, double unbias, double eps, double momentum, int update) {  \
        __shared__ double sm[2][CH_THREADS];                                                                 \
        stats(sm, nullptr, x, part, counters, mean, invstd, run_mean, run_var, new_mean, new_var, N, C, HW, chunk, \
              chunks, inv_n, unbias, eps, momentum, update);                                                 \
    }                                                                                                        \
    extern "C" __global__ void batchnorm_forward_##SUF(const T* __restrict__ x, const T* __restrict__ mean,    \
                                                       const T* __restrict__ invstd, const T* __restrict__ gamma, \
                                                       const T* __restrict__ beta, T* __restrict__ y,          \
                                                       long long count, int C, long long HW, int relu) {       \
        forward(x, mean, invstd, gamma, beta, y, count, C, HW, relu);                                        \
    }                                                                                                        \
    extern "C" __global__ void __launch_bounds__(CH_THREADS, CH_BLOCKS)                                      \
    batchnorm_backward_sums_##SUF(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,  \
                                  const T* __restrict__ mean, const T* __restrict__ invstd, double* part,      \
                                  unsigned* GPUCNN_INOUT counters, T* __restrict__ dgamma, T* __restrict__ dbeta, \
                                  int N, int C, long long HW, long long chunk, int chunks, int relu) {        \
        __shared__ double sm[2][CH_THREADS];                                                                 \
        backward_sums(sm, dy, x, y, mean, invstd, part, counters, dgamma, dbeta, N, C, HW, chunk, chunks, relu); \
    }                                                                                                        \
    extern "C" __global__ void batchnorm_backward_data_##SUF(                                                \
        const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ mean,   \
        const T* __restrict__ invstd, const T* __restrict__ gamma, const T* __restrict__ dgamma,              \
        const T* __restrict__ dbeta, T* __restrict__ dx, long long count, int C, long long HW, T inv_n,        \
        int batch_stats, int relu) {                                                                         \
        backward_data(dy, x, y, mean, invstd, gamma, dgamma, dbeta, dx, count, C, HW, inv_n, batch_stats, relu); \
    }

BATCHNORM_KERNELS(float, f32, CH_BLOCKS)
BATCHNORM_KERNELS(double, f64, CH_BLOCKS_STATS_F64)

// The statistics through channel_walk_async's ring of cp.async copies, float
// only (bench/ab_mem.py's "async" against batchnorm_stats_f32); before sm_80
// (no cp.async) and for groups that are not 16-byte ones, channel_walk.
extern "C" __global__ void __launch_bounds__(CH_THREADS, CH_BLOCKS)
batchnorm_stats_async_f32(const float* __restrict__ x, double* part, unsigned* GPUCNN_INOUT counters,
                          float* __restrict__ mean, float* __restrict__ invstd, const float* __restrict__ run_mean,
                          const float* __restrict__ run_var, float* GPUCNN_INOUT __restrict__ new_mean,
                          float* GPUCNN_INOUT __restrict__ new_var, int N, int C, long long HW, long long chunk,
                          int chunks, double inv_n, double unbias, double eps, double momentum, int update) {
    __shared__ double sm[2][CH_THREADS];
    CH_RING_DECL(ring);
    stats(sm, ring, x, part, counters, mean, invstd, run_mean, run_var, new_mean, new_var, N, C, HW, chunk, chunks,
          inv_n, unbias, eps, momentum, update);
}
