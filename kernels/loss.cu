// loss.cu: softmax cross-entropy (torch.nn.functional.cross_entropy, the seed's
// §3.4 loss with class weights, ignored entries and label smoothing) and the
// squared error (the seed's Eq. 6), each with its gradient.
//
// Kernels (T = float as _f32, double as _f64). Logits z are (N, C, S) with
// S = d1*d2*... (1 for (N, C)); row r = n*S + s is one sample at one position
// and R = N*S rows; eps is the label smoothing.
//   ce_rows_T      (const T* z, const long long* y, const T* w, T* lse, T* a, T* loss, T* den,
//                   long long R, int C, long long S, long long ignore, T eps)
//                   y: (R,) class ids   w: (C,)   lse, a, loss, den: (R,)
//   ce_rows_prob_T (const T* z, const T* p, const T* w, T* lse, T* a, T* loss, T* den,
//                   long long R, int C, long long S, T eps)          p: (N, C, S) probabilities
//   ce_reduce_T    (const T* loss, const T* den, T* total, T* scale, long long R, int mean)
//                   one block; total, scale: (1,)
//   ce_grad_T      (const T* z, const long long* y, const T* w, const T* lse, const T* a,
//                   const T* scale, T* dz, long long count, int C, long long S, long long ignore, T eps)
//   ce_grad_prob_T (const T* z, const T* p, const T* w, const T* lse, const T* a,
//                   const T* scale, T* dz, long long count, int C, long long S, T eps)
//   squared_error_T(const T* x, const T* t, T* dx, T* loss, long long n, T inv_batch)  one block
//
// With share_c the target's weight on class c ((1-eps)[c == y] + eps/C, or
// (1-eps) p_c + eps/C), a row loses -sum_c w_c share_c log_softmax_c, and its
// gradient is a * softmax_c - w_c share_c with a = sum_c w_c share_c. The rows
// kernel keeps lse (the log-sum-exp, from the row maximum so that exp never
// overflows), a, the row's loss and its share of the mean's denominator
// (w_y for class ids, 1 for probabilities, 0 when ignored); ce_reduce sums
// the last two in double in a fixed tree (no atomics: the same bits every
// run) and leaves loss and the gradient's scale (1/denominator for the mean,
// else 1) on the device, where ce_grad reads it: a step never waits on the
// host. A class id that is neither ignore nor in [0, C) makes its row NaN
// rather than reading out of bounds (the functional API refuses it first).
#include "common.cuh"

#define LOSS_THREADS 256

// Sums of a and b over the block in double through part (2 * LOSS_THREADS), in
// a fixed tree; thread 0 gets the totals.
__device__ __forceinline__ void block_sum2(double* part, double& a, double& b) {
    const int t = threadIdx.x;
    part[t] = a;
    part[LOSS_THREADS + t] = b;
    __syncthreads();
    for (int s = LOSS_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) part[t] += part[t + s], part[LOSS_THREADS + t] += part[LOSS_THREADS + t + s];
        __syncthreads();
    }
    a = part[0];
    b = part[LOSS_THREADS];
}

template <typename T> __device__ __forceinline__ T nan_of() { return neg_inf<T>() - neg_inf<T>(); }

// Maximum and log-sum-exp of a row whose classes lie S apart.
template <typename T> __device__ __forceinline__ T row_lse(const T* __restrict__ z, int C, long long S) {
    T m = neg_inf<T>();
    for (int c = 0; c < C; ++c) {
        const T v = z[c * S];
        if (v > m || is_nan(v)) m = v;
    }
    T s = T(0);
    for (int c = 0; c < C; ++c) s += exp(z[c * S] - m);
    return m + log(s);
}

// Class-id targets: the row's share and weight terms from y, w and eps.
template <typename T> struct ClassTarget {
    const long long* y;
    long long ignore;
    __device__ __forceinline__ bool ignored(long long r) const { return y[r] == ignore; }
    __device__ __forceinline__ bool invalid(long long r, int C) const { return y[r] < 0 || y[r] >= C; }
    __device__ __forceinline__ T share(long long r, long long, int c, int C, T eps) const {
        return eps / T(C) + (c == y[r] ? T(1) - eps : T(0));
    }
    __device__ __forceinline__ T den(long long r, const T* w) const { return w[y[r]]; }
};

// Probability targets p (N, C, S): element e of z has its share at p[e].
template <typename T> struct ProbTarget {
    const T* p;
    __device__ __forceinline__ bool ignored(long long) const { return false; }
    __device__ __forceinline__ bool invalid(long long, int) const { return false; }
    __device__ __forceinline__ T share(long long, long long e, int, int C, T eps) const {
        return p[e] * (T(1) - eps) + eps / T(C);
    }
    __device__ __forceinline__ T den(long long, const T*) const { return T(1); }
};

template <typename T, typename Target>
__device__ void ce_rows(const T* __restrict__ z, Target tgt, const T* __restrict__ w, T* __restrict__ lse,
                        T* __restrict__ a, T* __restrict__ loss, T* __restrict__ den, long long R, int C,
                        long long S, T eps) {
    GRID_STRIDE_LOOP(r, R) {
        const long long base = (r / S) * C * S + r % S;  // z[base + c*S] is class c of row r
        if (tgt.ignored(r) || tgt.invalid(r, C)) {
            const T v = tgt.ignored(r) ? T(0) : nan_of<T>();
            lse[r] = v, a[r] = v, loss[r] = v, den[r] = v;
            continue;
        }
        const T l = row_lse(z + base, C, S);
        T sum_a = T(0), sum_loss = T(0);
        for (int c = 0; c < C; ++c) {
            const T ws = w[c] * tgt.share(r, base + c * S, c, C, eps);
            sum_a += ws;
            // A class the target does not weigh adds nothing, even where its
            // log-probability is -inf in T (0 * inf would make the row NaN).
            if (ws != T(0)) sum_loss -= ws * (z[base + c * S] - l);
        }
        lse[r] = l, a[r] = sum_a, loss[r] = sum_loss, den[r] = tgt.den(r, w);
    }
}

template <typename T, typename Target>
__device__ void ce_grad(const T* __restrict__ z, Target tgt, const T* __restrict__ w, const T* __restrict__ lse,
                        const T* __restrict__ a, const T* __restrict__ scale, T* __restrict__ dz, long long count,
                        int C, long long S, T eps) {
    const T k = scale[0];
    GRID_STRIDE_LOOP(e, count) {
        const int c = (int)((e / S) % C);
        const long long r = (e / (S * C)) * S + e % S;
        if (tgt.ignored(r)) {
            dz[e] = T(0);
        } else if (tgt.invalid(r, C)) {
            dz[e] = nan_of<T>();
        } else {
            dz[e] = k * (a[r] * exp(z[e] - lse[r]) - w[c] * tgt.share(r, e, c, C, eps));
        }
    }
}

template <typename T>
__device__ void ce_reduce(double* part, const T* __restrict__ loss, const T* __restrict__ den,
                          T* __restrict__ total, T* __restrict__ scale, long long R, int mean) {
    if (blockIdx.x != 0) return;  // one block; a bigger grid would only repeat it
    double sl = 0.0, sd = 0.0;
    for (long long r = threadIdx.x; r < R; r += LOSS_THREADS) sl += (double)loss[r], sd += (double)den[r];
    block_sum2(part, sl, sd);
    if (threadIdx.x == 0) {
        total[0] = (T)(mean ? sl / sd : sl);
        scale[0] = (T)(mean ? 1.0 / sd : 1.0);
    }
}

template <typename T>
__device__ void sq_error(double* part, const T* __restrict__ x, const T* __restrict__ t, T* __restrict__ dx,
                         T* __restrict__ loss, long long n, T inv_batch) {
    if (blockIdx.x != 0) return;  // one block: the sum's order is fixed by the thread count alone
    double acc = 0.0, unused = 0.0;
    for (long long i = threadIdx.x; i < n; i += LOSS_THREADS) {
        const T d = x[i] - t[i];
        dx[i] = T(2) * d * inv_batch;
        acc += (double)d * (double)d;
    }
    block_sum2(part, acc, unused);
    if (threadIdx.x == 0) loss[0] = (T)(acc * (double)inv_batch);
}

#define CE_ROWS_ARGS(T) T* __restrict__ lse, T* __restrict__ a, T* __restrict__ loss, T* __restrict__ den, \
                     long long R, int C, long long S
#define CE_GRAD_ARGS(T) const T* __restrict__ lse, const T* __restrict__ a, const T* __restrict__ scale, \
                     T* __restrict__ dz, long long count, int C, long long S

#define LOSS_KERNELS(T, SUF)                                                                                 \
    extern "C" __global__ void ce_rows_##SUF(const T* __restrict__ z, const long long* __restrict__ y,        \
                                             const T* __restrict__ w, CE_ROWS_ARGS(T), long long ignore, T eps) { \
        ce_rows(z, ClassTarget<T>{y, ignore}, w, lse, a, loss, den, R, C, S, eps);                            \
    }                                                                                                        \
    extern "C" __global__ void ce_rows_prob_##SUF(const T* __restrict__ z, const T* __restrict__ p,           \
                                                  const T* __restrict__ w, CE_ROWS_ARGS(T), T eps) {             \
        ce_rows(z, ProbTarget<T>{p}, w, lse, a, loss, den, R, C, S, eps);                                     \
    }                                                                                                        \
    extern "C" __global__ void ce_reduce_##SUF(const T* __restrict__ loss, const T* __restrict__ den,         \
                                               T* __restrict__ total, T* __restrict__ scale, long long R,     \
                                               int mean) {                                                    \
        __shared__ double part[2 * LOSS_THREADS];                                                            \
        ce_reduce(part, loss, den, total, scale, R, mean);                                                   \
    }                                                                                                        \
    extern "C" __global__ void ce_grad_##SUF(const T* __restrict__ z, const long long* __restrict__ y,        \
                                             const T* __restrict__ w, CE_GRAD_ARGS(T), long long ignore, T eps) { \
        ce_grad(z, ClassTarget<T>{y, ignore}, w, lse, a, scale, dz, count, C, S, eps);                       \
    }                                                                                                        \
    extern "C" __global__ void ce_grad_prob_##SUF(const T* __restrict__ z, const T* __restrict__ p,           \
                                                  const T* __restrict__ w, CE_GRAD_ARGS(T), T eps) {             \
        ce_grad(z, ProbTarget<T>{p}, w, lse, a, scale, dz, count, C, S, eps);                                \
    }                                                                                                        \
    extern "C" __global__ void squared_error_##SUF(const T* __restrict__ x, const T* __restrict__ t,          \
                                                   T* __restrict__ dx, T* __restrict__ loss, long long n,     \
                                                   T inv_batch) {                                             \
        __shared__ double part[2 * LOSS_THREADS];                                                            \
        sq_error(part, x, t, dx, loss, n, inv_batch);                                                        \
    }

LOSS_KERNELS(float, f32)
LOSS_KERNELS(double, f64)
