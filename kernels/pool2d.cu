// pool2d.cu: max and average pooling (seed §5), their backward passes (seed §6,
// the reverse operators) and max unpooling.
//
// Kernels (T = float as _f32, double as _f64). Planes are the N*C images of
// size HxW (input) or PxQ (pooled); the geometry comes from gpucnn/shapes.py:
//   max_pool2d_forward_T (const T* x, T* y, long long* idx, G)         x: (NC,H,W)  y, idx: (NC,P,Q)
//   max_pool2d_backward_T(const T* dy, const long long* idx, T* dx, G) dy, idx: (NC,P,Q)  dx: (NC,H,W)
//   avg_pool2d_forward_T (const T* x, T* y, G, int pb, int pr, int count_include_pad, int divisor_override)
//   avg_pool2d_backward_T(const T* dy, T* dx, G, int pb, int pr, int count_include_pad, int divisor_override)
//   max_pool2d_backward_s2_T, avg_pool2d_backward_s2_T: the backward kernels' arguments, for
//                          the pair kernels' windows (a thread 4 inputs of a row; see gather_fours)
//   max_pool2d_forward_s2_T, avg_pool2d_forward_s2_T: the forward kernels' arguments, then
//                          int rows (1 or 2), for stride-2 2x2 and 3x3 windows (a thread
//                          rows x 2 outputs; see scan_rows)
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
#define POOL_ARGS NC, H, W, P, Q, kh, kw, sh, sw, pt, pl, dh, dw

// Grid-stride loop over the NC planes of rows x cols elements: it.i is the
// flat index, (it.plane, it.r, it.c) its coordinates, advanced by the stride
// with carries instead of three divisions per element (they run once per
// thread, for the start and the stride).
struct PlaneWalk {
    long long i, plane, splane, stride;
    int r, c, sr, sc;
    __device__ PlaneWalk(int rows, int cols) {
        const long long rc = (long long)rows * cols;
        long long off, soff;
        i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
        stride = (long long)blockDim.x * gridDim.x;
        plane = div_rem(i, rc, off), splane = div_rem(stride, rc, soff);
        r = (int)off / cols, c = (int)off - r * cols, sr = (int)soff / cols, sc = (int)soff - sr * cols;
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

// The windows p (0 <= p < P) along an undilated axis whose taps hold input
// position h: p*s - pad <= h < p*s - pad + k, so lo = ceil((h + pad - k + 1) / s)
// and hi = floor((h + pad) / s), clipped (lo > hi: none). Two divisions an
// axis, where window_of divides for every tap it tests.
__device__ __forceinline__ void window_range(int h, int k, int s, int pad, int P, int& lo, int& hi) {
    const int top = h + pad, first = top - k + 1;  // top >= 0
    hi = min(P - 1, top / s);
    lo = first <= 0 ? 0 : (first + s - 1) / s;
}

// f(p, q) for every window (p, q) whose taps hold input (h, w), in the order
// of their taps' raster order (i, then j, rising: p, then q, falling), so a
// gather adds its terms in one fixed order whichever path runs. Undilated:
// the windows' ranges (window_range); dilated: each tap tested (window_of),
// as a dilated tap can fall between two windows' strides. The backward passes
// gather with it. On sm_90, max pooling's backward takes 20 instructions a
// window row and 19 a window where the tap tests took 513 a window row (the
// dilated path keeps them; bench/results/static-sm90.md reports that loop,
// the one with the most loads); average pooling's, 22 a window against 283.
// The window loop is not unrolled: a pass meets 1 to 4 windows an element
// (2x2/2, 3x3/2), and unrolled by 4 it held 54 registers (4 blocks an SM)
// where it now holds 40 (6).
template <typename F>
__device__ __forceinline__ void for_windows(int h, int w, int P, int Q, int kh, int kw, int sh, int sw, int pt,
                                            int pl, int dh, int dw, F f) {
    if (dh == 1 && dw == 1) {
        int p0, p1, q0, q1;
        window_range(h, kh, sh, pt, P, p0, p1);
        window_range(w, kw, sw, pl, Q, q0, q1);
        for (int p = p1; p >= p0; --p)
#pragma unroll 1
            for (int q = q1; q >= q0; --q) f(p, q);
        return;
    }
    for (int i = 0; i < kh; ++i) {
        const int p = window_of(h, i, sh, pt, dh, P);
        if (p < 0) continue;
        for (int j = 0; j < kw; ++j) {
            const int q = window_of(w, j, sw, pl, dw, Q);
            if (q >= 0) f(p, q);
        }
    }
}

// f(v, off) for the taps of the window at (h0, w0) that lie inside the
// input, in raster order (off: the tap's offset in its plane), R x S taps at a
// time: a group's loads all issue before f sees the first, so a 3x3 window
// has its 9 loads in flight together (a loop that compared each tap before
// loading the next had one, and a round trip to DRAM per window row).
// Groups of several rows (R > 1) need S >= kw, so that they stay in raster
// order. Inside: the window is R x S, undilated and inside the input (see
// inside()), so no tap is tested and a row's taps are one pointer plus
// constant offsets: the 3x3 max's group takes 49 instructions instead of 156
// (sm_90 SASS; about 130 an output with the set-up and the stores).
template <int R, int S, bool Inside, typename T, typename F>
__device__ __forceinline__ void scan_window(const T* __restrict__ plane, int h0, int w0, int H, int W, int kh,
                                            int kw, int dh, int dw, F f) {
    for (int i0 = 0; i0 < (Inside ? R : kh); i0 += R)
        for (int j0 = 0; j0 < (Inside ? S : kw); j0 += S) {
            T v[R][S];
            int off[R][S];
#pragma unroll
            for (int a = 0; a < R; ++a) {
                const int h = h0 + (i0 + a) * dh;
                const bool row = Inside || (i0 + a < kh && (unsigned)h < (unsigned)H);
#pragma unroll
                for (int b = 0; b < S; ++b) {
                    if constexpr (Inside) {
                        const int row_off = (h0 + a) * W + w0;
                        off[a][b] = row_off + b;
                        v[a][b] = (plane + row_off)[b];
                    } else {
                        const int w = w0 + (j0 + b) * dw;
                        const bool in = row && j0 + b < kw && (unsigned)w < (unsigned)W;
                        off[a][b] = in ? h * W + w : -1;
                        v[a][b] = in ? plane[h * W + w] : T(0);
                    }
                }
            }
#pragma unroll
            for (int a = 0; a < R; ++a)
#pragma unroll
                for (int b = 0; b < S; ++b)
                    if (Inside || off[a][b] >= 0) f(v[a][b], off[a][b]);
        }
}

// Whether the window at (h0, w0) lies inside the input, undilated: most of
// them (all but the border row and column of the 3x3/2 p1 case's 56 x 56).
__device__ __forceinline__ bool inside(int h0, int w0, int H, int W, int kh, int kw, int dh, int dw) {
    return dh == 1 && dw == 1 && h0 >= 0 && w0 >= 0 && h0 + kh <= H && w0 + kw <= W;
}

// The window in groups that fit it: 2x2 and 3x3 windows (and smaller) whole,
// larger ones by row segments of 4 taps.
template <typename T, typename F>
__device__ __forceinline__ void scan(const T* __restrict__ plane, int h0, int w0, int H, int W, int kh, int kw,
                                     int dh, int dw, F f) {
    const bool in = inside(h0, w0, H, W, kh, kw, dh, dw);
    if (in && kh == 3 && kw == 3)
        scan_window<3, 3, true>(plane, h0, w0, H, W, kh, kw, dh, dw, f);
    else if (in && kh == 2 && kw == 2)
        scan_window<2, 2, true>(plane, h0, w0, H, W, kh, kw, dh, dw, f);
    else if (kh <= 2 && kw <= 2)
        scan_window<2, 2, false>(plane, h0, w0, H, W, kh, kw, dh, dw, f);
    else if (kh <= 3 && kw <= 3)
        scan_window<3, 3, false>(plane, h0, w0, H, W, kh, kw, dh, dw, f);
    else
        scan_window<1, 4, false>(plane, h0, w0, H, W, kh, kw, dh, dw, f);
}

// Whether some window of the launch crosses the input's border (padding, or
// ceil_mode's last windows): the same answer in every thread.
__device__ __forceinline__ bool clipped(int H, int W, int P, int Q, int kh, int kw, int sh, int sw, int pt, int pl) {
    return pt > 0 || pl > 0 || (P - 1) * sh - pt + kh > H || (Q - 1) * sw - pl + kw > W;
}

// The K x K window at (h0, w0), undilated, with its taps clamped into the
// input: f(v, off) in raster order, v the clamped tap's value (Dup) or zero
// where the tap lies outside (!Dup), off the clamped tap's offset. One path
// for every window of a launch that has border windows, where scan's inside
// and border paths split a warp that holds both (3x3/2 p1's 56-wide rows: most
// warps hold a row's first window, and ran both: ~130 and ~240 instructions an
// output with the set-up and stores, sm_90). The 3x3 max takes ~125 from its
// branch to the stores (sm_90 SASS), every window alike. Clamped taps repeat
// taps of the same window (every window holds an input element), so a max and
// its first-of-equals or last-NaN argmax are unchanged; a sum adds zeros for
// them (exact: it starts from +0). Not timed yet (the H200 run of 2026-11-30
// had 3x3/2 p1 at 38% of the copy bandwidth, cuDNN at 41%).
// x clamped into [0, X); in: whether it lay there already (the clamped taps' rule).
__device__ __forceinline__ int clamp_tap(int x, int X, bool& in) {
    in = (unsigned)x < (unsigned)X;
    return min(max(x, 0), X - 1);
}

template <int K, bool Dup, typename T, typename F>
__device__ __forceinline__ void scan_clamped(const T* __restrict__ plane, int h0, int w0, int H, int W, F f) {
    int rows[K], cols[K];
    bool rin[K], cin[K];
#pragma unroll
    for (int a = 0; a < K; ++a) {
        rows[a] = clamp_tap(h0 + a, H, rin[a]) * W;
        cols[a] = clamp_tap(w0 + a, W, cin[a]);
    }
    T v[K][K];
#pragma unroll
    for (int a = 0; a < K; ++a)
#pragma unroll
        for (int b = 0; b < K; ++b) v[a][b] = plane[rows[a] + cols[b]];
#pragma unroll
    for (int a = 0; a < K; ++a)
#pragma unroll
        for (int b = 0; b < K; ++b) f(Dup || (rin[a] && cin[b]) ? v[a][b] : T(0), rows[a] + cols[b]);
}

// The window size that scan_clamped serves for a launch (2 or 3: square and
// undilated, with border windows), else 0 (scan).
__device__ __forceinline__ int clamped_size(POOL_GEOMETRY) {
    return dh == 1 && dw == 1 && kh == kw && (kh == 2 || kh == 3) && clipped(H, W, P, Q, kh, kw, sh, sw, pt, pl)
               ? kh : 0;
}

// The window at (h0, w0) through scan_clamped where clamped_size gave the
// launch K = 2 or 3 (Dup as there), else through scan: forward pooling's one
// dispatch.
template <bool Dup, typename T, typename F>
__device__ __forceinline__ void scan_any(int K, const T* __restrict__ plane, int h0, int w0, int H, int W, int kh,
                                         int kw, int dh, int dw, F f) {
    if (K == 3)
        scan_clamped<3, Dup>(plane, h0, w0, H, W, f);
    else if (K == 2)
        scan_clamped<2, Dup>(plane, h0, w0, H, W, f);
    else
        scan(plane, h0, w0, H, W, kh, kw, dh, dw, f);
}

// The first i < k with 0 <= x0 + i*d < X, or -1.
__device__ __forceinline__ int first_in(int x0, int d, int k, int X) {
    for (int i = 0; i < k; ++i)
        if ((unsigned)(x0 + i * d) < (unsigned)X) return i;
    return -1;
}

// The offset of the window's first tap inside the input (-1: none), which an
// all -inf window keeps.
__device__ __forceinline__ int first_tap(int h0, int w0, int H, int W, int kh, int kw, int dh, int dw) {
    if (inside(h0, w0, H, W, kh, kw, dh, dw)) return h0 * W + w0;
    const int i = first_in(h0, dh, kh, H), j = first_in(w0, dw, kw, W);
    return i < 0 || j < 0 ? -1 : (h0 + i * dh) * W + w0 + j * dw;
}

template <typename T>
__device__ void max_fwd(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ idx,
                        POOL_GEOMETRY) {
    const int K = clamped_size(NC, H, W, P, Q, kh, kw, sh, sw, pt, pl, dh, dw);
    PLANE_LOOP(it, P, Q, NC * P * Q) {
        const int h0 = it.r * sh - pt, w0 = it.c * sw - pl;
        // the first tap: clamped, first_tap's answer for an undilated window
        int arg = K ? max(h0, 0) * W + max(w0, 0) : first_tap(h0, w0, H, W, kh, kw, dh, dw);
        T best = neg_inf<T>();
        scan_any<true>(K, x + it.plane * H * W, h0, w0, H, W, kh, kw, dh, dw, [&](T v, int off) {
            if (v > best || is_nan(v)) best = v, arg = off;
        });
        y[it.i] = best;
        idx[it.i] = arg;
    }
}

// Max pooling's backward gather. Where an input lies in at most 2 x 2
// windows (undilated, kh <= 2 sh and kw <= 2 sw: 2x2/2, 3x3/2; uniform over a
// launch), their 4 argmax loads issue together, then the dy loads of those that
// chose this input, and the terms add in for_windows' order (p, then q,
// falling): the same bits as the loop, whose loads went one window at a time
// (the H200's ncu: 329 us for 3x3/2 on 32x64x112x112, 180 MB, 0.55 TB/s).
template <typename T>
__device__ void max_bwd(const T* __restrict__ dy, const long long* __restrict__ idx,
                        T* __restrict__ dx, POOL_GEOMETRY) {
    const bool two = dh == 1 && dw == 1 && kh <= 2 * sh && kw <= 2 * sw;
    PLANE_LOOP(it, H, W, NC * H * W) {
        const long long e = it.i;
        const int w = it.c, h = it.r;
        const long long base = it.plane * P * Q;
        const long long self = (long long)h * W + w;
        T acc = T(0);
        if (two) {
            int p0, p1, q0, q1;
            window_range(h, kh, sh, pt, P, p0, p1);
            window_range(w, kw, sw, pl, Q, q0, q1);
            long long o[4], id[4];
            bool in[4];
            T g[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const int p = p1 - k / 2, q = q1 - k % 2;
                in[k] = p >= p0 && q >= q0;
                o[k] = base + (long long)p * Q + q;
                id[k] = in[k] ? idx[o[k]] : -1;
            }
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                in[k] = in[k] && id[k] == self;
                g[k] = in[k] ? dy[o[k]] : T(0);
            }
#pragma unroll
            for (int k = 0; k < 4; ++k)
                if (in[k]) acc += g[k];
        } else {
            for_windows(h, w, P, Q, kh, kw, sh, sw, pt, pl, dh, dw, [&](int p, int q) {
                const long long o = base + (long long)p * Q + q;
                if (idx[o] == self) acc += dy[o];
            });
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
    const int K = clamped_size(NC, H, W, P, Q, kh, kw, sh, sw, pt, pl, 1, 1);
    PLANE_LOOP(it, P, Q, NC * P * Q) {
        const int q = it.c, p = it.r;
        T acc = T(0);
        scan_any<false>(K, x + it.plane * H * W, p * sh - pt, q * sw - pl, H, W, kh, kw, 1, 1,
                        [&](T v, int) { acc += v; });
        y[it.i] = acc / T(divisor ? divisor
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
        for_windows(h, w, P, Q, kh, kw, sh, sw, pt, pl, 1, 1, [&](int p, int q) {
            acc += g[p * Q + q] /
                   T(divisor ? divisor : avg_divisor(p, q, H, W, kh, kw, sh, sw, pt, pl, pb, pr, include_pad));
        });
        dx[e] = acc;
    }
}

// ---- stride-2 blocks: the forward kernels' fast path (max_pool2d_forward_s2,
// avg_pool2d_forward_s2; pool.py's pairs() picks them) for square K x K windows,
// K = 2 or 3, stride 2, undilated, each pad at most K / 2: the ResNet and VGG
// poolings. A thread takes R rows (the launch's `rows`: 1, or 2 where the
// launch is large, pool.PAIR_WAVES) of two outputs each, (p0 + r, 2m) and
// (p0 + r, 2m + 1) for r < R, p0 = R x its row block. Their windows span the
// K + 2 columns c0 .. c0 + K + 1 (c0 = 4m - pl) of A = 2(R - 1) + K rows from
// h0 = 2 p0 - pt: a 3x3's two output rows share one input row, so they take
// 5 rows where two pairs took 6. Columns 4m .. 4m + 3 come in one 16-byte load
// a row (two for double) where W % 4 == 0 and x is aligned. The one column
// left over (the side column: 4m - 1 with pl = 1, 4m + 4 for 3x3 with pl = 0)
// is the neighbour lane's vector's last or first element, passed by a warp
// shuffle, where that lane holds pair m - 1 or m + 1 of the same rows (the
// flat index i - 1 or i + 1: lanes hold consecutive pairs), else a scalar
// load issued with the vectors (lane 0 or 31, a row's first or last pair).
// So 3x3/2 p1's four outputs take 5 vector loads and 5 x ~2/32 scalar ones
// where two pairs took 6 and 6 (and the one-output kernel, scan, 36); the
// whole warp runs the loop's iterations together (for_rows) for the shuffles.
// The thread's set-up (PlaneWalk's divisions, ~120 instructions) and its
// stores (8- and 16-byte where Q is even) serve 2R outputs. Rows and columns
// are clamped as in scan_clamped (Dup: a clamped tap repeats one of the same
// window, so a max and its argmax are unchanged; !Dup: it counts zero), so the
// loads stay inside the input whatever the geometry, and each output's taps go
// to f in raster order, as scan's: the bits are the same. The H200 ran the
// pair kernels (R = 1, scalar side columns, two pairs a thread where large)
// at 82% (3x3/2 p1) and 93% (2x2/2) of the copy rate in a CUDA graph, L2 at
// 78-81% of its peak and the SMs' issue at 62-65% (ncu), where ReLU ran at
// 97% (bench/results/gpu-2026-11-30-s21); bench/ab_mem.py times R = 2 against
// R = 1 and the generic kernels side by side (gpu.sh's step 5d).

// v[0..3] = p[0..3], p 16-byte aligned: one float4 or two double2 loads.
template <typename T> __device__ __forceinline__ void load4(const T* __restrict__ p, T (&v)[4]) {
    typedef typename Vec16<T>::type V;
    constexpr int L = Vec16<T>::n;
#pragma unroll
    for (int g = 0; g < 4 / L; ++g) {
        const V t = reinterpret_cast<const V*>(p)[g];
        const T* e = reinterpret_cast<const T*>(&t);
#pragma unroll
        for (int k = 0; k < L; ++k) v[g * L + k] = e[k];
    }
}

// Whether a block's windows need a column outside its 16-byte vectors (all but the unpadded 2x2).
#define SIDE_COLUMN(K, PL) ((PL) == 1 || (K) == 3)

// f(r, o, v, tap, off) for output o = 0, 1 of row r < R of the block (input
// rows from h0, pair m of M a row), each output's K x K taps in raster order
// (v and off as scan_clamped's; tap = 8a + j, the tap's block row and column,
// a constant once unrolled, which tap_offset turns into off), where live (the
// lane holds a block). A 3x3 max carries the tap rather than its offset: it
// selects an immediate a tap, where carrying offsets kept the 25 sums of the
// A + J row and column offsets live (two rows: 78 registers, 3 blocks an SM,
// sm_90; with taps 70, and 64 with no spill built for 4 blocks,
// POOL_PAIR_BLOCKS, as the pair kernel's 54 ran). A 2x2 max of one row carries offsets:
// 150 instructions a pair's loop, 153 with taps (the pair kernel's: 126). Every lane of
// the warp calls it, live or not, when vec && shfl (the shuffles).
// vec: W % 4 == 0 and the plane 16-byte aligned; shfl: whole warps (blockDim
// a multiple of 32); both the same in every thread.
template <int K, int PL, int R, bool Dup, typename T, typename F>
__device__ __forceinline__ void scan_rows(const T* __restrict__ plane, bool live, int h0, int m, int M, int H, int W,
                                          bool vec, bool shfl, int lane, F f) {
    constexpr int J = K + 2, A = 2 * (R - 1) + K;  // the block's columns c0 + j and rows h0 + a
    constexpr bool SIDE = SIDE_COLUMN(K, PL);  // a column outside 4m .. 4m + 3: j = S
    constexpr int S = PL ? 0 : 4;
    const int c0 = 4 * m - PL;
    int rows[A], cols[J];
    bool rin[A], cin[J];
#pragma unroll
    for (int a = 0; a < A; ++a) rows[a] = clamp_tap(h0 + a, H, rin[a]) * W;
#pragma unroll
    for (int j = 0; j < J; ++j) cols[j] = clamp_tap(c0 + j, W, cin[j]);
    T v[A][J], edge[A];  // edge: the element of this lane's vector that the neighbour's side column is
    const bool vrow = vec && 4 * m + 4 <= W;  // columns 4m .. 4m + 3 inside the row
    // The side column from lane - 1 (pair m - 1, its vector's last) or lane + 1 (pair m + 1, its first).
    const bool nb = SIDE && shfl && vrow && (PL ? lane > 0 && m > 0 : lane < 31 && m + 1 < M && 4 * m + 8 <= W);
    if (live && vrow) {
#pragma unroll
        for (int a = 0; a < A; ++a) {
            T q[4];
            load4(plane + rows[a] + 4 * m, q);
#pragma unroll
            for (int j = 0; j < J; ++j)
                if (j - PL >= 0 && j - PL < 4) v[a][j] = q[j - PL];
            edge[a] = PL ? q[3] : q[0];
            if (SIDE && !nb) v[a][S] = plane[rows[a] + cols[S]];
        }
    } else {
#pragma unroll
        for (int a = 0; a < A; ++a) {
#pragma unroll
            for (int j = 0; j < J; ++j) v[a][j] = live ? plane[rows[a] + cols[j]] : T(0);
            edge[a] = T(0);
        }
    }
    if (SIDE && vec && shfl) {  // the same in the whole warp
#pragma unroll
        for (int a = 0; a < A; ++a) {
            const T s = PL ? __shfl_up_sync(0xffffffffu, edge[a], 1) : __shfl_down_sync(0xffffffffu, edge[a], 1);
            if (nb) v[a][S] = s;
        }
    }
    if (!live) return;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int o = 0; o < 2; ++o)
#pragma unroll
            for (int i = 0; i < K; ++i)
#pragma unroll
                for (int b = 0; b < K; ++b) {
                    const int a = 2 * r + i, j = 2 * o + b;
                    f(r, o, Dup || (rin[a] && cin[j]) ? v[a][j] : T(0), 8 * a + j, rows[a] + cols[j]);
                }
}

// The offset in its plane of scan_rows' tap (8a + j) of the block at (h0, c0 = 4m - pl): clamped, as its loads.
__device__ __forceinline__ int tap_offset(int tap, int h0, int c0, int H, int W) {
    bool in;
    return clamp_tap(h0 + (tap >> 3), H, in) * W + clamp_tap(c0 + (tap & 7), W, in);
}

// The block loop: g(live, plane, p0, m, M, lane) for every block of R rows
// from p0 = R x (its row block) and pair m of the M = ceil(Q/2) pairs of a row,
// NC planes of ceil(P/R) x M blocks. Warp: whole warps iterate together (lanes
// hold consecutive blocks, and while the warp's first lane has one), a lane
// past the end called with live = false (and plane 0), for scan_rows'
// shuffles; else a lane's own blocks, live (a constant: the 2x2 unpadded
// window has no side column, and its loop no live tests).
template <int R, bool Warp, typename G> __device__ __forceinline__ void for_rows(long long NC, int P, int Q, G g) {
    const int M = (Q + 1) / 2, B = (P + R - 1) / R;
    const long long n = NC * B * M;
    const int lane = threadIdx.x & 31;
    if constexpr (Warp) {
        for (PlaneWalk it(B, M); it.i - lane < n; it.next(B, M)) {
            const bool live = it.i < n;
            g(live, live ? it.plane : 0LL, R * it.r, it.c, M, lane);
        }
    } else {
        PLANE_LOOP(it, B, M, n) g(true, it.plane, R * it.r, it.c, M, lane);
    }
}

// Output row p0 + r's pair at (plane, 2m) gets (a, b) (b where 2m + 1 < Q; row p0 + r < P).
template <typename T>
__device__ __forceinline__ void store_row_pair(T* __restrict__ out, bool vec, long long plane, int p, int m, int P,
                                               int Q, T a, T b) {
    if (p < P) store_pair(out + (plane * P + p) * Q + 2 * m, vec, 2 * m + 1 < Q, a, b);
}

template <int K, int PL, int R, typename T>
__device__ void max_rows(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ idx, POOL_GEOMETRY) {
    const bool vin = (W & 3) == 0 && aligned16(x), vout = (Q & 1) == 0 && aligned16(y) && aligned16(idx);
    const bool shfl = (blockDim.x & 31) == 0;
    for_rows<R, SIDE_COLUMN(K, PL)>(NC, P, Q, [&](bool live, long long plane, int p0, int m, int M, int lane) {
        const int h0 = 2 * p0 - pt;
        T best[R][2];
        constexpr bool TAPS = K == 3 || R == 2;  // arg: the window's tap (TAPS) or its offset
        const int c0 = 4 * m - PL;
        int arg[R][2];  // the window's first tap, clamped, until one wins (an all -inf window keeps it)
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int o = 0; o < 2; ++o)
                best[r][o] = neg_inf<T>(), arg[r][o] = TAPS ? 8 * (2 * r) + 2 * o
                                                            : max(h0 + 2 * r, 0) * W + max(c0 + 2 * o, 0);
        scan_rows<K, PL, R, true>(x + plane * H * W, live, h0, m, M, H, W, vin, shfl, lane,
                                  [&](int r, int o, T v, int tap, int off) {
            if (v > best[r][o] || is_nan(v)) best[r][o] = v, arg[r][o] = TAPS ? tap : off;
        });
        if (!live) return;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            long long a[2];
#pragma unroll
            for (int o = 0; o < 2; ++o) a[o] = TAPS ? tap_offset(arg[r][o], h0, c0, H, W) : arg[r][o];
            store_row_pair(y, vout, plane, p0 + r, m, P, Q, best[r][0], best[r][1]);
            store_row_pair(idx, vout, plane, p0 + r, m, P, Q, a[0], a[1]);
        }
    });
}

template <int K, int PL, int R, typename T>
__device__ void avg_rows(const T* __restrict__ x, T* __restrict__ y, POOL_GEOMETRY, int pb, int pr,
                         int include_pad, int divisor) {
    const bool vin = (W & 3) == 0 && aligned16(x), vout = (Q & 1) == 0 && aligned16(y);
    const bool shfl = (blockDim.x & 31) == 0;
    for_rows<R, SIDE_COLUMN(K, PL)>(NC, P, Q, [&](bool live, long long plane, int p0, int m, int M, int lane) {
        T acc[R][2];
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = T(0);
        scan_rows<K, PL, R, false>(x + plane * H * W, live, 2 * p0 - pt, m, M, H, W, vin, shfl, lane,
                                   [&](int r, int o, T v, int, int) { acc[r][o] += v; });
        if (!live) return;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            T d[2];
#pragma unroll
            for (int o = 0; o < 2; ++o)
                d[o] = acc[r][o] / T(divisor ? divisor
                                             : avg_divisor(p0 + r, 2 * m + o, H, W, kh, kw, sh, sw, pt, pl, pb, pr,
                                                           include_pad));
            store_row_pair(y, vout, plane, p0 + r, m, P, Q, d[0], d[1]);
        }
    });
}

// The float block kernels are built for 4 resident blocks of 256 threads an
// SM (64 registers; launch.BLOCK): 80 bytes of loads in flight a thread, 80
// KiB an SM, where 3 blocks would leave 60 (the pair kernel's 4 x 60 bytes).
#define POOL_PAIR_BLOCKS 4

// The block kernels' bodies for the launch's rows (1 or 2).
template <int K, int PL, typename T>
__device__ void max_pairs(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ idx, POOL_GEOMETRY,
                          int rows) {
    if (rows == 2)
        max_rows<K, PL, 2>(x, y, idx, POOL_ARGS);
    else
        max_rows<K, PL, 1>(x, y, idx, POOL_ARGS);
}
template <int K, int PL, typename T>
__device__ void avg_pairs(const T* __restrict__ x, T* __restrict__ y, POOL_GEOMETRY, int pb, int pr,
                          int include_pad, int divisor, int rows) {
    if (rows == 2)
        avg_rows<K, PL, 2>(x, y, POOL_ARGS, pb, pr, include_pad, divisor);
    else
        avg_rows<K, PL, 1>(x, y, POOL_ARGS, pb, pr, include_pad, divisor);
}

// The pair windows' bodies for the launch's K and left pad (pool.py's pairs():
// kh == kw == K, 2 or 3, stride 2, undilated, pads at most K / 2).
#define POOL_WINDOWS(body, ...)                                                  \
    if (kh == 3)                                                                 \
        pl ? body<3, 1>(__VA_ARGS__) : body<3, 0>(__VA_ARGS__);                  \
    else                                                                         \
        pl ? body<2, 1>(__VA_ARGS__) : body<2, 0>(__VA_ARGS__)

// p[0..3] = v[0..3], p 16-byte aligned: one float4 or two double2 stores.
template <typename T> __device__ __forceinline__ void store4(T* __restrict__ p, const T (&v)[4]) {
    typedef typename Vec16<T>::type V;
    constexpr int L = Vec16<T>::n;
#pragma unroll
    for (int g = 0; g < 4 / L; ++g) {
        V t;
        T* e = reinterpret_cast<T*>(&t);
#pragma unroll
        for (int k = 0; k < L; ++k) e[k] = v[g * L + k];
        reinterpret_cast<V*>(p)[g] = t;
    }
}

// The backward gathers of the pair kernels' windows (pool.py's pairs():
// square K x K, K = 2 or 3, stride 2, undilated, pads at most K / 2): a thread
// takes 4 adjacent inputs of a row, w0 = 4j .. 4j + 3. The windows over them
// are at most NP = K - 1 rows (p falling from p1) by NQ columns (q falling
// from 2j + D + NQ - 1: 3, or 2 for an unpadded 2x2), window column c over
// inputs w0 + lo(c) .. w0 + lo(c) + K - 1, all known once unrolled, and the
// stride's halvings are shifts (window_range divides by the stride). Their
// terms' loads issue together (for 3x3/2, 6 where the one-input threads took
// 4 an input, 16 for the four), and each input adds the terms of the windows
// over it in for_windows' order (p, then q, falling): the bits of max_bwd and
// avg_bwd. dx goes out in one 16-byte store (two for double) where W % 4 == 0
// and dx is aligned, else in element stores (a row's last group clipped). ncu
// on the H200 had max_bwd issue-bound: the SMs' issue at 79%, DRAM at 10%,
// 329 us for 3x3/2 p1 on 32x64x112x112 (bench/results/gpu-2026-11-30-s21c).
template <int K, int PL> struct Fours {
    static constexpr int NP = K - 1, NQ = K == 2 && PL == 0 ? 2 : 3;
    static constexpr int D = K == 3 && PL == 0 ? -1 : 0;  // the first window's q less 2j
    __host__ __device__ static constexpr int lo(int c) { return 2 * (D + NQ - 1 - c) - PL; }
};

// terms(o, in, p, q, self, g, m): window (r, c) at (p[r], q[c]) (in: inside
// the output; o: its offset in dy and idx) gives the term g[r][c] to the inputs
// t of the four whose bit m[r][c] >> t is set (self: the first one's offset
// in its plane).
template <int K, int PL, typename T, typename Terms>
__device__ __forceinline__ void gather_fours(T* __restrict__ dx, POOL_GEOMETRY, Terms terms) {
    typedef Fours<K, PL> F;
    constexpr int NP = F::NP, NQ = F::NQ;
    const int G = (W + 3) / 4;
    const bool vout = (W & 3) == 0 && aligned16(dx);
    PLANE_LOOP(it, H, G, NC * H * G) {
        const int h = it.r, w0 = 4 * it.c, top = h + pt;
        const int p1 = min(P - 1, top >> 1), p0 = max(0, top - K + 2) >> 1;  // the windows over row h
        const long long base = it.plane * P * Q, self = (long long)h * W + w0;
        int p[NP], q[NQ];
        long long o[NP][NQ];
        bool in[NP][NQ];
#pragma unroll
        for (int r = 0; r < NP; ++r) p[r] = p1 - r;
#pragma unroll
        for (int c = 0; c < NQ; ++c) q[c] = 2 * it.c + F::D + NQ - 1 - c;
#pragma unroll
        for (int r = 0; r < NP; ++r)
#pragma unroll
            for (int c = 0; c < NQ; ++c) {
                in[r][c] = p[r] >= p0 && q[c] >= 0 && q[c] < Q;
                o[r][c] = base + (long long)p[r] * Q + q[c];
            }
        T g[NP][NQ];
        unsigned m[NP][NQ];
        terms(o, in, p, q, self, g, m);
        T acc[4];
#pragma unroll
        for (int t = 0; t < 4; ++t) {
            acc[t] = T(0);
#pragma unroll
            for (int r = 0; r < NP; ++r)
#pragma unroll
                for (int c = 0; c < NQ; ++c)  // (lo(c) a constant: windows that cannot hold t drop out)
                    if (t >= F::lo(c) && t < F::lo(c) + K && (m[r][c] >> t & 1u)) acc[t] += g[r][c];
        }
        T* out = dx + it.plane * H * W + self;
        if (vout) {
            store4(out, acc);
        } else {
#pragma unroll
            for (int t = 0; t < 4; ++t)
                if (w0 + t < W) out[t] = acc[t];
        }
    }
}

// Max pooling's: the windows' argmax loads together, then the dy loads of
// those that chose one of the four (one input each).
template <int K, int PL, typename T>
__device__ void max_bwd_fours(const T* __restrict__ dy, const long long* __restrict__ idx, T* __restrict__ dx,
                              POOL_GEOMETRY) {
    typedef Fours<K, PL> F;
    gather_fours<K, PL>(dx, POOL_ARGS, [&](const long long (&o)[F::NP][F::NQ], const bool (&in)[F::NP][F::NQ],
                                           const int (&)[F::NP], const int (&)[F::NQ], long long self,
                                           T (&g)[F::NP][F::NQ], unsigned (&m)[F::NP][F::NQ]) {
        long long id[F::NP][F::NQ];
#pragma unroll
        for (int r = 0; r < F::NP; ++r)
#pragma unroll
            for (int c = 0; c < F::NQ; ++c) id[r][c] = in[r][c] ? idx[o[r][c]] : -1;
#pragma unroll
        for (int r = 0; r < F::NP; ++r)
#pragma unroll
            for (int c = 0; c < F::NQ; ++c) {
                const int lo = F::lo(c);
                const long long t = id[r][c] - self;  // id -1 (no window) is below every self
                const bool mine = id[r][c] >= 0 && t >= (lo > 0 ? lo : 0) && t < (lo + K < 4 ? lo + K : 4);
                m[r][c] = mine ? 1u << (int)t : 0u;
                g[r][c] = mine ? dy[o[r][c]] : T(0);
            }
    });
}

// Average pooling's: each window's dy over its divisor, to every input it covers.
template <int K, int PL, typename T>
__device__ void avg_bwd_fours(const T* __restrict__ dy, T* __restrict__ dx, POOL_GEOMETRY, int pb, int pr,
                              int include_pad, int divisor) {
    typedef Fours<K, PL> F;
    gather_fours<K, PL>(dx, POOL_ARGS, [&](const long long (&o)[F::NP][F::NQ], const bool (&in)[F::NP][F::NQ],
                                           const int (&p)[F::NP], const int (&q)[F::NQ], long long,
                                           T (&g)[F::NP][F::NQ], unsigned (&m)[F::NP][F::NQ]) {
#pragma unroll
        for (int r = 0; r < F::NP; ++r)
#pragma unroll
            for (int c = 0; c < F::NQ; ++c) {
                g[r][c] = in[r][c] ? dy[o[r][c]] : T(0);
                m[r][c] = in[r][c] ? 15u : 0u;
            }
#pragma unroll
        for (int r = 0; r < F::NP; ++r)
#pragma unroll
            for (int c = 0; c < F::NQ; ++c)
                g[r][c] /= T(divisor ? divisor
                                     : avg_divisor(p[r], q[c], H, W, kh, kw, sh, sw, pt, pl, pb, pr, include_pad));
    });
}

template <typename T>
__device__ void unpool(const T* __restrict__ y, const long long* __restrict__ idx, T* GPUCNN_INOUT __restrict__ x,
                       long long n, long long PQ, long long HoWo) {
    PLANE_LOOP(it, 1, (int)PQ, n) { x[it.plane * HoWo + idx[it.i]] = y[it.i]; }  // a plane fits in int
}

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
extern "C" __global__ void __launch_bounds__(256, POOL_PAIR_BLOCKS)
max_pool2d_forward_s2_f32(const float* __restrict__ x, float* __restrict__ y, long long* __restrict__ idx,
                          POOL_GEOMETRY, int rows) {
    POOL_WINDOWS(max_pairs, x, y, idx, POOL_ARGS, rows);
}
extern "C" __global__ void max_pool2d_forward_s2_f64(const double* __restrict__ x, double* __restrict__ y,
                                                     long long* __restrict__ idx, POOL_GEOMETRY, int rows) {
    POOL_WINDOWS(max_pairs, x, y, idx, POOL_ARGS, rows);
}
extern "C" __global__ void __launch_bounds__(256, POOL_PAIR_BLOCKS)
avg_pool2d_forward_s2_f32(const float* __restrict__ x, float* __restrict__ y, POOL_GEOMETRY, int pb, int pr,
                          int include_pad, int divisor_override, int rows) {
    POOL_WINDOWS(avg_pairs, x, y, POOL_ARGS, pb, pr, include_pad, divisor_override, rows);
}
extern "C" __global__ void avg_pool2d_forward_s2_f64(const double* __restrict__ x, double* __restrict__ y,
                                                     POOL_GEOMETRY, int pb, int pr, int include_pad,
                                                     int divisor_override, int rows) {
    POOL_WINDOWS(avg_pairs, x, y, POOL_ARGS, pb, pr, include_pad, divisor_override, rows);
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
extern "C" __global__ void max_pool2d_backward_s2_f32(const float* __restrict__ dy,
                                                      const long long* __restrict__ idx,
                                                      float* __restrict__ dx, POOL_GEOMETRY) {
    POOL_WINDOWS(max_bwd_fours, dy, idx, dx, POOL_ARGS);
}
extern "C" __global__ void max_pool2d_backward_s2_f64(const double* __restrict__ dy,
                                                      const long long* __restrict__ idx,
                                                      double* __restrict__ dx, POOL_GEOMETRY) {
    POOL_WINDOWS(max_bwd_fours, dy, idx, dx, POOL_ARGS);
}
extern "C" __global__ void avg_pool2d_backward_s2_f32(const float* __restrict__ dy, float* __restrict__ dx,
                                                      POOL_GEOMETRY, int pb, int pr, int include_pad,
                                                      int divisor_override) {
    POOL_WINDOWS(avg_bwd_fours, dy, dx, POOL_ARGS, pb, pr, include_pad, divisor_override);
}
extern "C" __global__ void avg_pool2d_backward_s2_f64(const double* __restrict__ dy, double* __restrict__ dx,
                                                      POOL_GEOMETRY, int pb, int pr, int include_pad,
                                                      int divisor_override) {
    POOL_WINDOWS(avg_bwd_fours, dy, dx, POOL_ARGS, pb, pr, include_pad, divisor_override);
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
