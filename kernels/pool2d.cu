// pool2d.cu: max and average pooling (seed §5), their backward passes (seed §6,
// the reverse operators) and max unpooling.
//
// Kernels (T = float as _f32, double as _f64). Planes are the N*C images of
// size HxW (input) or PxQ (pooled); the geometry comes from gpucnn/shapes.py:
//   max_pool2d_forward_T (const T* x, T* y, long long* idx, G)         x: (NC,H,W)  y, idx: (NC,P,Q)
//   max_pool2d_backward_T(const T* dy, const long long* idx, T* dx, G) dy, idx: (NC,P,Q)  dx: (NC,H,W)
//   avg_pool2d_forward_T (const T* x, T* y, G, int pb, int pr, int count_include_pad, int divisor_override)
//   avg_pool2d_backward_T(const T* dy, T* dx, G, int pb, int pr, int count_include_pad, int divisor_override)
//   max_unpool2d_T       (const T* y, const long long* idx, T* x, long long n, long long PQ, long long HoWo)
//                          y, idx: (NC,P,Q)  x: (NC,Ho,Wo), zeroed by the caller (GPUCNN_INOUT)
// where G = long long NC, int H, int W, int P, int Q, int kh, int kw, int sh, int sw,
//           int pt, int pl, int dh, int dw   (pt, pl: top and left padding).
// A nonzero divisor_override divides every window (torch's avg_pool2d option).
//
// Backward passes gather: one thread per input element sums the gradients of
// the windows that hold it, in a fixed order, so results are bitwise identical
// run to run with no atomics. Max pooling backward uses the stored argmax
// (idx), so ties and NaN follow the forward pass, which scans the window in
// raster order and takes a tap when it is greater than the running maximum or
// NaN (torch's rule: the first of equal maxima, the last NaN).
// Max unpooling scatters: with duplicate indices one value wins, as in torch.
#include "common.cuh"

#define POOL_GEOMETRY                                                                       \
    long long NC, int H, int W, int P, int Q, int kh, int kw, int sh, int sw, int pt, int pl, \
        int dh, int dw

// Grid-stride loop over the NC planes of rows x cols elements: it.i is the
// flat index, (it.plane, it.r, it.c) its coordinates, advanced by the stride
// with carries instead of three 64-bit divisions per element (they run once
// per thread, for the start and the stride).
struct PlaneWalk {
    long long i, plane, splane, stride;
    int r, c, sr, sc;
    __device__ PlaneWalk(int rows, int cols) {
        const long long rc = (long long)rows * cols;
        i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
        stride = (long long)blockDim.x * gridDim.x;
        plane = i / rc, splane = stride / rc;
        const int off = (int)(i - plane * rc), soff = (int)(stride - splane * rc);
        r = off / cols, c = off - r * cols, sr = soff / cols, sc = soff - sr * cols;
    }
    __device__ __forceinline__ void next(int rows, int cols) {
        i += stride;
        c += sc;
        r += sr + (c >= cols);
        if (c >= cols) c -= cols;
        plane += splane + (r >= rows);
        if (r >= rows) r -= rows;  // r < 2*rows: sr < rows, plus one carry
    }
};
#define PLANE_LOOP(it, rows, cols, n) for (PlaneWalk it(rows, cols); it.i < (n); it.next(rows, cols))

// Window positions p whose tap i lands on row h: h = p*s - pad + i*d.
// Returns -1 when no such p exists in [0, P).
__device__ __forceinline__ int window_of(int h, int i, int s, int pad, int d, int P) {
    const int num = h + pad - i * d;
    if (num < 0 || num % s != 0) return -1;
    const int p = num / s;
    return p < P ? p : -1;
}

template <typename T>
__device__ void max_fwd(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ idx,
                        POOL_GEOMETRY) {
    PLANE_LOOP(it, P, Q, NC * P * Q) {
        const long long o = it.i;
        const int q = it.c, p = it.r;
        const T* plane = x + it.plane * H * W;
        const int h0 = p * sh - pt, w0 = q * sw - pl;
        T best = neg_inf<T>();
        long long arg = -1;
        for (int i = 0; i < kh; ++i) {
            const int h = h0 + i * dh;
            if (h < 0 || h >= H) continue;
            for (int j = 0; j < kw; ++j) {
                const int w = w0 + j * dw;
                if (w < 0 || w >= W) continue;
                const T v = plane[h * W + w];
                if (arg < 0) arg = (long long)h * W + w;  // an all -inf window keeps its first tap
                if (v > best || is_nan(v)) best = v, arg = (long long)h * W + w;
            }
        }
        y[o] = best;
        idx[o] = arg;
    }
}

template <typename T>
__device__ void max_bwd(const T* __restrict__ dy, const long long* __restrict__ idx,
                        T* __restrict__ dx, POOL_GEOMETRY) {
    PLANE_LOOP(it, H, W, NC * H * W) {
        const long long e = it.i;
        const int w = it.c, h = it.r;
        const long long base = it.plane * P * Q;
        const long long self = (long long)h * W + w;
        T acc = T(0);
        for (int i = 0; i < kh; ++i) {
            const int p = window_of(h, i, sh, pt, dh, P);
            if (p < 0) continue;
            for (int j = 0; j < kw; ++j) {
                const int q = window_of(w, j, sw, pl, dw, Q);
                if (q < 0) continue;
                const long long o = base + (long long)p * Q + q;
                if (idx[o] == self) acc += dy[o];
            }
        }
        dx[e] = acc;
    }
}

// torch's divisor: with count_include_pad the window clipped to the padded
// extent, else the number of real input elements under it.
__device__ __forceinline__ int avg_divisor(int p, int q, int H, int W, int kh, int kw, int sh,
                                           int sw, int pt, int pl, int pb, int pr, int include_pad) {
    int hs = p * sh - pt, ws = q * sw - pl;
    int he = min(hs + kh, H + pb), we = min(ws + kw, W + pr);
    if (include_pad) return (he - hs) * (we - ws);
    hs = max(hs, 0), ws = max(ws, 0), he = min(he, H), we = min(we, W);
    return (he - hs) * (we - ws);
}

template <typename T>
__device__ void avg_fwd(const T* __restrict__ x, T* __restrict__ y, POOL_GEOMETRY, int pb, int pr,
                        int include_pad, int divisor) {
    PLANE_LOOP(it, P, Q, NC * P * Q) {
        const long long o = it.i;
        const int q = it.c, p = it.r;
        const T* plane = x + it.plane * H * W;
        const int h0 = p * sh - pt, w0 = q * sw - pl;
        T acc = T(0);
        for (int h = max(h0, 0); h < min(h0 + kh, H); ++h)
            for (int w = max(w0, 0); w < min(w0 + kw, W); ++w) acc += plane[h * W + w];
        y[o] = acc / T(divisor ? divisor
                               : avg_divisor(p, q, H, W, kh, kw, sh, sw, pt, pl, pb, pr, include_pad));
    }
}

template <typename T>
__device__ void avg_bwd(const T* __restrict__ dy, T* __restrict__ dx, POOL_GEOMETRY, int pb, int pr,
                        int include_pad, int divisor) {
    PLANE_LOOP(it, H, W, NC * H * W) {
        const long long e = it.i;
        const int w = it.c, h = it.r;
        const T* g = dy + it.plane * P * Q;
        T acc = T(0);
        for (int i = 0; i < kh; ++i) {
            const int p = window_of(h, i, sh, pt, 1, P);
            if (p < 0) continue;
            for (int j = 0; j < kw; ++j) {
                const int q = window_of(w, j, sw, pl, 1, Q);
                if (q < 0) continue;
                acc += g[p * Q + q] /
                       T(divisor ? divisor
                                 : avg_divisor(p, q, H, W, kh, kw, sh, sw, pt, pl, pb, pr, include_pad));
            }
        }
        dx[e] = acc;
    }
}

template <typename T>
__device__ void unpool(const T* __restrict__ y, const long long* __restrict__ idx, T* GPUCNN_INOUT __restrict__ x,
                       long long n, long long PQ, long long HoWo) {
    PLANE_LOOP(it, 1, (int)PQ, n) { x[it.plane * HoWo + idx[it.i]] = y[it.i]; }  // a plane fits in int
}

#define POOL_ARGS NC, H, W, P, Q, kh, kw, sh, sw, pt, pl, dh, dw

extern "C" __global__ void max_pool2d_forward_f32(const float* __restrict__ x, float* __restrict__ y,
                                                  long long* __restrict__ idx, POOL_GEOMETRY) {
    max_fwd(x, y, idx, POOL_ARGS);
}
extern "C" __global__ void max_pool2d_forward_f64(const double* __restrict__ x, double* __restrict__ y,
                                                  long long* __restrict__ idx, POOL_GEOMETRY) {
    max_fwd(x, y, idx, POOL_ARGS);
}
extern "C" __global__ void avg_pool2d_forward_f32(const float* __restrict__ x, float* __restrict__ y,
                                                  POOL_GEOMETRY, int pb, int pr, int include_pad,
                                                  int divisor_override) {
    avg_fwd(x, y, POOL_ARGS, pb, pr, include_pad, divisor_override);
}
extern "C" __global__ void avg_pool2d_forward_f64(const double* __restrict__ x, double* __restrict__ y,
                                                  POOL_GEOMETRY, int pb, int pr, int include_pad,
                                                  int divisor_override) {
    avg_fwd(x, y, POOL_ARGS, pb, pr, include_pad, divisor_override);
}
extern "C" __global__ void max_unpool2d_f32(const float* __restrict__ y, const long long* __restrict__ idx,
                                            float* GPUCNN_INOUT __restrict__ x, long long n, long long PQ,
                                            long long HoWo) {
    unpool(y, idx, x, n, PQ, HoWo);
}
extern "C" __global__ void max_unpool2d_f64(const double* __restrict__ y, const long long* __restrict__ idx,
                                            double* GPUCNN_INOUT __restrict__ x, long long n, long long PQ,
                                            long long HoWo) {
    unpool(y, idx, x, n, PQ, HoWo);
}

extern "C" __global__ void max_pool2d_backward_f32(const float* __restrict__ dy,
                                                   const long long* __restrict__ idx,
                                                   float* __restrict__ dx, POOL_GEOMETRY) {
    max_bwd(dy, idx, dx, POOL_ARGS);
}
extern "C" __global__ void max_pool2d_backward_f64(const double* __restrict__ dy,
                                                   const long long* __restrict__ idx,
                                                   double* __restrict__ dx, POOL_GEOMETRY) {
    max_bwd(dy, idx, dx, POOL_ARGS);
}
extern "C" __global__ void avg_pool2d_backward_f32(const float* __restrict__ dy, float* __restrict__ dx,
                                                   POOL_GEOMETRY, int pb, int pr, int include_pad,
                                                   int divisor_override) {
    avg_bwd(dy, dx, POOL_ARGS, pb, pr, include_pad, divisor_override);
}
extern "C" __global__ void avg_pool2d_backward_f64(const double* __restrict__ dy, double* __restrict__ dx,
                                                   POOL_GEOMETRY, int pb, int pr, int include_pad,
                                                   int divisor_override) {
    avg_bwd(dy, dx, POOL_ARGS, pb, pr, include_pad, divisor_override);
}

// ---- adaptive average pooling (torch.nn.functional.adaptive_avg_pool2d)
//   adaptive_avg_pool2d_forward_T (const T* x, T* y, long long NC, int H, int W, int P, int Q)
//                                  x: (NC,H,W)  y: (NC,P,Q)
//   adaptive_avg_pool2d_backward_T(const T* dy, T* dx, long long NC, int H, int W, int P, int Q)
//                                  dy: (NC,P,Q)  dx: (NC,H,W)
// Output p of P over n inputs averages [floor(p*n/P), ceil((p+1)*n/P)).
// The backward gathers: input h lies in the windows p with
// floor(h*P/n) <= p <= ceil((h+1)*P/n) - 1 (from start_p <= h < end_p), each
// scanned in order and checked, so the sum is deterministic. Bounds are int
// arithmetic: the launch code keeps (n + 1) * P within the int range.
__device__ __forceinline__ int adaptive_start(int p, int n, int P) { return p * n / P; }
__device__ __forceinline__ int adaptive_end(int p, int n, int P) { return ((p + 1) * n + P - 1) / P; }

template <typename T>
__device__ void adaptive_avg_fwd(const T* __restrict__ x, T* __restrict__ y, long long NC, int H, int W,
                                 int P, int Q) {
    PLANE_LOOP(it, P, Q, NC * P * Q) {
        const int p = it.r, q = it.c;
        const T* plane = x + it.plane * H * W;
        const int h0 = adaptive_start(p, H, P), h1 = adaptive_end(p, H, P);
        const int w0 = adaptive_start(q, W, Q), w1 = adaptive_end(q, W, Q);
        T acc = T(0);
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w) acc += plane[(long long)h * W + w];
        y[it.i] = acc / T((h1 - h0) * (w1 - w0));  // a division, as torch's: the same rounding
    }
}

template <typename T>
__device__ void adaptive_avg_bwd(const T* __restrict__ dy, T* __restrict__ dx, long long NC, int H, int W,
                                 int P, int Q) {
    PLANE_LOOP(it, H, W, NC * H * W) {
        const int h = it.r, w = it.c;
        const T* g = dy + it.plane * P * Q;
        const int p_lo = h * P / H, p_hi = min(P, adaptive_end(h, P, H));
        const int q_lo = w * Q / W, q_hi = min(Q, adaptive_end(w, Q, W));
        T acc = T(0);
        for (int p = p_lo; p < p_hi; ++p) {
            const int h0 = adaptive_start(p, H, P), h1 = adaptive_end(p, H, P);
            if (h < h0 || h >= h1) continue;
            for (int q = q_lo; q < q_hi; ++q) {
                const int w0 = adaptive_start(q, W, Q), w1 = adaptive_end(q, W, Q);
                if (w < w0 || w >= w1) continue;
                acc += g[(long long)p * Q + q] / T((h1 - h0) * (w1 - w0));
            }
        }
        dx[it.i] = acc;
    }
}

extern "C" __global__ void adaptive_avg_pool2d_forward_f32(const float* __restrict__ x, float* __restrict__ y,
                                                           long long NC, int H, int W, int P, int Q) {
    adaptive_avg_fwd(x, y, NC, H, W, P, Q);
}
extern "C" __global__ void adaptive_avg_pool2d_forward_f64(const double* __restrict__ x, double* __restrict__ y,
                                                           long long NC, int H, int W, int P, int Q) {
    adaptive_avg_fwd(x, y, NC, H, W, P, Q);
}
extern "C" __global__ void adaptive_avg_pool2d_backward_f32(const float* __restrict__ dy, float* __restrict__ dx,
                                                            long long NC, int H, int W, int P, int Q) {
    adaptive_avg_bwd(dy, dx, NC, H, W, P, Q);
}
extern "C" __global__ void adaptive_avg_pool2d_backward_f64(const double* __restrict__ dy,
                                                            double* __restrict__ dx, long long NC, int H, int W,
                                                            int P, int Q) {
    adaptive_avg_bwd(dy, dx, NC, H, W, P, Q);
}
