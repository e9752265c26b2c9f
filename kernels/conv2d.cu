// conv2d.cu: grouped 2-D convolution (seed §4.3-§4.8) as implicit GEMMs, and
// im2col / col2im (seed §6's φ and its reverse).
//
// Kernels (T = float as _f32, double as _f64; G = groups, Cg = C/G, Kg = K/G):
//   conv2d_forward_T        (const T* x, const T* w, const T* b, T* y, GEOM, int chunk, int splits, int relu)
//                             x: (N,C,H,W)  w: (K,Cg,kh,kw)  b: (K,)  y: (splits,N,K,P,Q)
//   conv2d_backward_data_T  (const T* dy, const T* w, T* dx, GEOM, int chunk, int splits)
//                             dy: (N,K,P,Q)  w: (K,Cg,kh,kw)  dx: (splits,N,C,H,W)
//   conv2d_backward_data_phase_T(const T* dy, const T* w, T* dx, GEOM)   the same, by stride phases
//   conv2d_backward_filter_T(const T* dy, const T* x, T* out, GEOM, int chunk, int splits)
//                             out: (splits,K,Cg,kh,kw), partial sums over pixel chunks
//   conv2d_sum_splits_T     (const T* part, T* dw, long long n, int splits)
//                             part: (splits,n)  dw: (n,)
//   conv2d_backward_bias_T  (const T* dy, T* db, int N, int K, int PQ)   db: (K,)
//   im2col_T                (const T* x, T* cols, long long NC, WIN)     cols: (N,C*kh*kw,P*Q)
//   col2im_T                (const T* cols, T* x, long long NC, WIN)     x: (N,C,H,W)
// where GEOM = int N, C, H, W, K, P, Q, kh, kw, sh, sw, pt, pl, dh, dw, G and
//       WIN  = int H, W, P, Q, kh, kw, sh, sw, pt, pl, dh, dw (pt, pl: top, left pad).
// Element counts fit in int (checked by gpucnn/cuda/conv.py); memory offsets are 64-bit.
//
// The three GEMMs, per group (gemm.cuh does the tiling; the Ops below gather):
//   forward      Y[k, (n,p,q)]   = sum over (c,r,s) of W[k, (c,r,s)] φ(x)[(c,r,s), (n,p,q)]
//   backward-data dX[c, (n,h,w)] = sum over (k,r,s) of W[k, (c,r,s)] dY[k, (n,p,q)]
//                 where h = p*sh - pt + r*dh (and likewise w): a tap contributes only
//                 when h + pt - r*dh is a multiple of sh, the reverse of φ written as a gather
//   backward-filter dW[k, (c,r,s)] = sum over (n,p,q) of dY[k, (n,p,q)] φ(x)[(c,r,s), (n,p,q)]
// Each GEMM's reduction may be split into chunks run by separate blocks (the
// filter gradient's over N*P*Q always can be; forward and backward-data when
// their tile grid is below a wave, gpucnn/cuda/algo.py decides): each writes
// its own partial tile and conv2d_sum_splits adds them in split order, so
// results are bitwise reproducible with no atomics.
#include "common.cuh"
#include "gemm.cuh"

#define GEOM                                                                                 \
    int N, int C, int H, int W, int K, int P, int Q, int kh, int kw, int sh, int sw, int pt, \
        int pl, int dh, int dw, int G
#define GEOM_ARGS N, C, H, W, K, P, Q, kh, kw, sh, sw, pt, pl, dh, dw, G
#define WIN int H, int W, int P, int Q, int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw
#define WIN_ARGS H, W, P, Q, kh, kw, sh, sw, pt, pl, dh, dw

// ------------------------------------------------------------------- forward

template <typename T> struct FwdOp {
    const T* x;
    const T* w;
    int M, N;  // GEMM rows (filters of the group) and columns (output pixels)
    int C, H, W, Cg;
    FastDiv khkw, kw, PQ, Q;
    int sh, sw, pt, pl, dh, dw, g;
    enum { A_ALONG_K = 1, B_ALONG_K = 0 };  // w rows hold k; neighbouring pixels are neighbours in x
    typedef long long Row;  // offset of filter row g*Kg + m in w
    struct Col {
        const T* base;  // x[n, g*Cg, h0, w0] (channel 0 of the group; may lie outside x)
        int h0, w0;     // top-left tap of the window in x
    };
    typedef int4 KTab;  // tap k = (c, r, s): {c*H*W + r*dh*W + s*dw, r*dh, s*dw, unused}
    __device__ Row row(int m) const { return (long long)(g * M + m) * (Cg * khkw.d); }
    __device__ T a(Row r, int k, const KTab&) const { return w[r + k]; }
    __device__ Col col(int n) const {
        int img, p;
        const int pq = PQ.divmod(n, img), q = Q.divmod(pq, p);
        const int h0 = p * sh - pt, w0 = q * sw - pl;
        return Col{x + ((long long)img * C + (long long)g * Cg) * H * W + (long long)h0 * W + w0, h0, w0};
    }
    __device__ KTab ktab(int k) const {
        int c, r;
        const int rs = khkw.divmod(k, c), s = kw.divmod(rs, r);
        return make_int4(c * H * W + r * dh * W + s * dw, r * dh, s * dw, 0);
    }
    __device__ T b(const Col& cl, int, const KTab& e) const {
        const int h = cl.h0 + e.y, ww = cl.w0 + e.z;
        if ((unsigned)h >= (unsigned)H || (unsigned)ww >= (unsigned)W) return T(0);  // zero padding
        return cl.base[e.x];
    }
};

// Grid z runs over (split, group) pairs; split s reduces taps
// [s*chunk, min((s+1)*chunk, Cg*kh*kw)) and writes y + s*N*K*P*Q; split 0
// adds the bias, and relu applies only to an unsplit reduction (the launch
// code applies it after adding the parts).
template <typename T>
__device__ void conv_forward(GemmSmem<T, int4>& sm, const T* __restrict__ x, const T* __restrict__ w,
                             const T* __restrict__ b, T* __restrict__ y, GEOM, int chunk, int splits, int relu) {
    const int Kg = K / G, Cg = C / G, PQ = P * Q, red = Cg * kh * kw;
    const FastDiv fPQ(PQ);
    for (int z = blockIdx.z; z < G * splits; z += gridDim.z) {
        const int g = z % G, split = z / G, kbeg = split * chunk, kend = min(red, kbeg + chunk);
        const FwdOp<T> op{x, w, Kg, N * PQ, C, H, W, Cg, kh * kw, kw, PQ, Q,
                          sh, sw, pt, pl, dh, dw, g};
        T* out = y + (long long)split * N * K * PQ;
        gemm_block<T>(op, sm, kbeg, kend, [&](int m, int n, T v) {
            int img;
            const int pq = fPQ.divmod(n, img), k = g * Kg + m;
            out[((long long)img * K + k) * PQ + pq] = relu_if(split == 0 ? v + b[k] : v, relu);  // bias fused
        });
    }
}

// ------------------------------------------------------------- backward data

template <typename T> struct DataOp {
    const T* dy;
    const T* w;
    int M, N;  // GEMM rows (channels of the group) and columns (input pixels)
    int C, K, Cg, Kg;
    FastDiv HW, W;
    int P, Q;
    FastDiv khkw, kw, sh, sw;
    int pt, pl, dh, dw, g;
    enum { A_ALONG_K = 1, B_ALONG_K = 0 };  // a filter's taps are neighbours in w; pixels in dy
    typedef int Row;  // c * kh * kw: tap 0 of channel c within a filter
    // The pixel in padded coordinates, (hp, wp) = (ph0*sh + rh, pq0*sw + rw)
    // with rh < sh, rw < sw; the tap's offset likewise r*dh = ah*sh + bh,
    // s*dw = aw*sw + bw. Then hp - r*dh is a multiple of sh exactly when
    // rh = bh, and its quotient is ph0 - ah: no division per element.
    struct Col {
        const T* base;  // dy[n, g*Kg, ph0, pq0] (may lie outside dy)
        int ph0, pq0;
        int rhw;        // rh * sw + rw
    };
    typedef int4 KTab;  // k = (f, r, s): {f*P*Q - ah*Q - aw, ah, aw, bh * sw + bw}
    __device__ Row row(int c) const { return c * khkw.d; }
    __device__ T a(Row r, int k, const KTab&) const {  // W[g*Kg + k / khkw, c, tap k % khkw]
        int f;
        const int rs = khkw.divmod(k, f);
        return w[(g * Kg + f) * Cg * khkw.d + r + rs];  // w's element count fits in int
    }
    __device__ Col col(int n) const {
        int img, h, ph0, pq0;
        const int hw = HW.divmod(n, img), x = W.divmod(hw, h);
        const int rh = sh.divmod(h + pt, ph0), rw = sw.divmod(x + pl, pq0);
        return Col{dy + ((long long)img * K + (long long)g * Kg) * P * Q + (long long)ph0 * Q + pq0, ph0, pq0,
                   rh * sw.d + rw};
    }
    __device__ KTab ktab(int k) const {
        int f, r, ah, aw;
        const int rs = khkw.divmod(k, f), s = kw.divmod(rs, r);
        const int bh = sh.divmod(r * dh, ah), bw = sw.divmod(s * dw, aw);
        return make_int4(f * P * Q - ah * Q - aw, ah, aw, bh * sw.d + bw);
    }
    __device__ T b(const Col& cl, int, const KTab& e) const {  // dY[n, f, p, q] of the window whose tap (r, s) is here
        const int p = cl.ph0 - e.y, q = cl.pq0 - e.z;
        if (cl.rhw != e.w || (unsigned)p >= (unsigned)P || (unsigned)q >= (unsigned)Q) return T(0);
        return cl.base[e.x];
    }
};

// Grid z over (split, group) pairs as in conv_forward; split s writes dx + s*N*C*H*W.
template <typename T>
__device__ void conv_backward_data(GemmSmem<T, int4>& sm, const T* __restrict__ dy, const T* __restrict__ w,
                                   T* __restrict__ dx, GEOM, int chunk, int splits) {
    const int Kg = K / G, Cg = C / G, HW = H * W, red = Kg * kh * kw;
    const FastDiv fHW(HW);
    for (int z = blockIdx.z; z < G * splits; z += gridDim.z) {
        const int g = z % G, split = z / G, kbeg = split * chunk, kend = min(red, kbeg + chunk);
        const DataOp<T> op{dy, w, Cg, N * HW, C, K, Cg, Kg, HW, W, P, Q, kh * kw, kw,
                           sh, sw, pt, pl, dh, dw, g};
        T* out = dx + (long long)split * N * C * HW;
        gemm_block<T>(op, sm, kbeg, kend, [&](int c, int n, T v) {
            int img;
            const int hw = fHW.divmod(n, img);
            out[((long long)img * C + g * Cg + c) * HW + hw] = v;
        });
    }
}

// ---------------------------------------------- backward data, stride phases

// The stride-decomposed backward-data: input pixels h with (h + pt) % sh == a
// (phase a) receive only taps r with r*dh % sh == a, which form the
// progression r0 + j*step, step = sh / gcd(sh, dh). Each phase pair (a, b) is
// a dense GEMM over only its valid taps, so no tap meets a structural zero:
// 1/(sh*sw) of DataOp's reduction. Along one axis (size, pad, stride s, taps
// k, dilation d), phase a holds pixels start + i*s for i < count, whose
// window row is ph0 = i + m, and a valid tap r = r0 + j*step lands at
// p = ph0 - (r*d - a)/s = ph0 - (a0 + j*da), since step*d = lcm(s, d) = da*s.
struct PhaseAxis {
    int start, count, m, r0, step, taps, a0, da;
    __device__ PhaseAxis(int a, int size, int pad, int s, int k, int d) {
        start = ((a - pad) % s + s) % s;
        count = start < size ? (size - start + s - 1) / s : 0;
        m = (start + pad - a) / s;
        int x = s, y = d;  // gcd(s, d)
        while (y) { const int t = x % y; x = y; y = t; }
        step = s / x;
        r0 = 0;
        while (r0 < step && r0 * d % s != a) ++r0;
        taps = r0 < min(step, k) ? (k - r0 + step - 1) / step : 0;
        a0 = (r0 * d - a) / s;
        da = step * d / s;
    }
};

template <typename T> struct PhaseOp {
    const T* dy;
    const T* w;
    PhaseAxis axh, axw;
    int M, N;           // GEMM rows (channels of the group) and columns (pixels of the phase)
    FastDiv pix, cols;  // the phase's pixels per image and per row (at least 1)
    FastDiv taps, tw;   // its valid taps and those along w (at least 1)
    int P, Q, kw, khkw;
    int wbase, CgKHKW;  // w[g*Kg, 0, 0, 0] and the stride of w's filters
    int dybase, img_dy; // dy[0, g*Kg, 0, 0] and K*P*Q (one image of dy fits in int)
    enum { A_ALONG_K = 1, B_ALONG_K = 0 };  // as DataOp
    typedef int Row;  // w[g*Kg, c, 0, 0]
    struct Col {
        const T* base;  // dy[n, g*Kg, ph0, pq0] (may lie outside dy)
        int ph0, pq0;
    };
    // k = (f, jr, js): {f*P*Q - ah*Q - aw, ah, aw, unused}; A decomposes k itself (as
    // DataOp), since its k-table entry would be a 32-bit shared load of its own.
    typedef int4 KTab;
    __device__ PhaseOp(const T* dy_, const T* w_, GEOM, int g, int a, int b)
        : dy(dy_), w(w_), axh(a, H, pt, sh, kh, dh), axw(b, W, pl, sw, kw, dw), M(C / G),
          N(N * axh.count * axw.count), pix(max(1, axh.count * axw.count)), cols(max(1, axw.count)), taps(max(1, axh.taps * axw.taps)),
          tw(max(1, axw.taps)), P(P), Q(Q), kw(kw), khkw(kh * kw),
          wbase(g * (K / G) * (C / G) * kh * kw), CgKHKW((C / G) * kh * kw), dybase(g * (K / G) * P * Q),
          img_dy(K * P * Q) {}
    __device__ Row row(int c) const { return wbase + c * khkw; }
    __device__ T a(Row r, int k, const KTab&) const {  // w[g*Kg + f, c, r0 + jr*step, s0 + js*step]
        int f, jr;
        const int js = tw.divmod(taps.divmod(k, f), jr);
        return w[r + f * CgKHKW + (axh.r0 + jr * axh.step) * kw + axw.r0 + js * axw.step];
    }
    __device__ Col col(int n) const {
        int img, i;
        const int j = cols.divmod(pix.divmod(n, img), i);
        const int ph0 = i + axh.m, pq0 = j + axw.m;
        return Col{dy + (long long)img * img_dy + dybase + ph0 * Q + pq0, ph0, pq0};
    }
    __device__ KTab ktab(int k) const {
        int f, jr;
        const int js = tw.divmod(taps.divmod(k, f), jr);
        const int ah = axh.a0 + jr * axh.da, aw = axw.a0 + js * axw.da;
        return make_int4(f * P * Q - ah * Q - aw, ah, aw, 0);
    }
    __device__ T b(const Col& cl, int, const KTab& e) const {
        const int p = cl.ph0 - e.y, q = cl.pq0 - e.z;
        if ((unsigned)p >= (unsigned)P || (unsigned)q >= (unsigned)Q) return T(0);
        return cl.base[e.x];
    }
};

// Grid z over (phase, group) pairs; column tiles past the phase's pixels return at once.
template <typename T>
__device__ void conv_backward_data_phase(GemmSmem<T, int4>& sm, const T* __restrict__ dy,
                                         const T* __restrict__ w, T* __restrict__ dx, GEOM) {
    const int Cg = C / G, HW = H * W;
    for (int z = blockIdx.z; z < G * sh * sw; z += gridDim.z) {
        const int g = z % G, phase = z / G;
        const PhaseOp<T> op(dy, w, GEOM_ARGS, g, phase / sw, phase % sw);
        if (blockIdx.x * GEMM_BN >= op.N) continue;  // uniform per block: no barrier is skipped by some
        gemm_block<T>(op, sm, 0, op.axh.taps * op.axw.taps * (K / G), [&](int c, int n, T v) {
            int img, i;
            const int j = op.cols.divmod(op.pix.divmod(n, img), i);
            const int h = op.axh.start + i * sh, x = op.axw.start + j * sw;
            dx[((long long)img * C + g * Cg + c) * HW + (long long)h * W + x] = v;
        });
    }
}

// ----------------------------------------------------------- backward filter

template <typename T> struct FilterOp {
    const T* dy;
    const T* x;
    int M, N;  // GEMM rows (filters of the group) and columns (taps c, r, s)
    int C, K, H, W;
    FastDiv PQ, Q;
    int Cg;
    FastDiv khkw, kw;
    int sh, sw, pt, pl, dh, dw, g;
    // k runs over pixels: contiguous in dy, stride sh in x, where the taps of
    // one pixel are scattered over channels and rows.
    enum { A_ALONG_K = 1, B_ALONG_K = 1 };
    typedef const T* Row;  // dy[0, g*Kg + m]
    struct Col {
        const T* base;   // x[0, g*Cg + c, roff, soff] (may lie outside x)
        int roff, soff;  // the tap's offset from the window's origin p*sh, q*sw
    };
    // pixel k = (n, p, q): {n*C*H*W + p*sh*W + q*sw, p*sh, q*sw, n*K*P*Q + p*Q + q}
    typedef int4 KTab;
    __device__ Row row(int m) const { return dy + (long long)(g * M + m) * PQ.d; }
    __device__ T a(Row r, int, const KTab& e) const { return r[e.w]; }
    __device__ Col col(int n) const {
        int c, r;
        const int rs = khkw.divmod(n, c), s = kw.divmod(rs, r);
        const int roff = r * dh - pt, soff = s * dw - pl;
        return Col{x + (long long)(g * Cg + c) * H * W + (long long)roff * W + soff, roff, soff};
    }
    __device__ KTab ktab(int k) const {
        int img, p;
        const int pq = PQ.divmod(k, img), q = Q.divmod(pq, p);
        return make_int4(img * C * H * W + p * sh * W + q * sw, p * sh, q * sw, img * K * PQ.d + pq);
    }
    __device__ T b(const Col& cl, int, const KTab& e) const {
        const int h = e.y + cl.roff, ww = e.z + cl.soff;
        if ((unsigned)h >= (unsigned)H || (unsigned)ww >= (unsigned)W) return T(0);
        return cl.base[e.x];
    }
};

// Grid z runs over (split, group) pairs; split s reduces pixels
// [s*chunk, min((s+1)*chunk, N*P*Q)) and writes out[s].
template <typename T>
__device__ void conv_backward_filter(GemmSmem<T, int4>& sm, const T* __restrict__ dy, const T* __restrict__ x,
                                     T* __restrict__ out, GEOM, int chunk, int splits) {
    const int Kg = K / G, Cg = C / G, PQ = P * Q, taps = Cg * kh * kw, NPQ = N * PQ;
    for (int z = blockIdx.z; z < G * splits; z += gridDim.z) {
        const int g = z % G, split = z / G;
        const FilterOp<T> op{dy, x, Kg, taps, C, K, H, W, PQ, Q, Cg, kh * kw, kw,
                             sh, sw, pt, pl, dh, dw, g};
        const int kbeg = split * chunk, kend = min(NPQ, kbeg + chunk);
        T* part = out + (long long)split * K * taps;
        gemm_block<T>(op, sm, kbeg, kend, [&](int m, int n, T v) { part[(long long)(g * Kg + m) * taps + n] = v; });
    }
}

// ------------------------------------------------------------ im2col, col2im

template <typename T>
__device__ void im2col_k(const T* __restrict__ x, T* __restrict__ cols, long long NC, WIN) {
    const long long L = (long long)P * Q, per_plane = (long long)kh * kw * L;
    GRID_STRIDE_LOOP(o, NC * per_plane) {  // o = ((nc * kh + r) * kw + s) * L + (p * Q + q)
        const long long nc = o / per_plane;
        const int rest = (int)(o - nc * per_plane), rs = rest / (int)L, pq = rest - rs * (int)L;
        const int r = rs / kw, s = rs - r * kw, p = pq / Q, q = pq - p * Q;
        const int h = p * sh - pt + r * dh, w = q * sw - pl + s * dw;
        cols[o] = (h < 0 || h >= H || w < 0 || w >= W) ? T(0) : x[nc * H * W + (long long)h * W + w];
    }
}

// One thread per output pixel gathers the taps that copied it (no atomics).
template <typename T>
__device__ void col2im_k(const T* __restrict__ cols, T* __restrict__ x, long long NC, WIN) {
    const long long L = (long long)P * Q;
    GRID_STRIDE_LOOP(e, NC * H * W) {
        const long long nc = e / ((long long)H * W);
        const int hw = (int)(e - nc * H * W), h = hw / W, w = hw - h * W;
        const T* plane = cols + nc * kh * kw * L;
        T acc = T(0);
        for (int r = 0; r < kh; ++r) {
            const int ph = h + pt - r * dh;
            if (ph < 0 || ph % sh || ph / sh >= P) continue;
            for (int s = 0; s < kw; ++s) {
                const int qw = w + pl - s * dw;
                if (qw < 0 || qw % sw || qw / sw >= Q) continue;
                acc += plane[(long long)(r * kw + s) * L + (ph / sh) * Q + qw / sw];
            }
        }
        x[e] = acc;
    }
}

// ------------------------------------------------------------ entry points

GEMM_KERNEL conv2d_forward_f32(const float* __restrict__ x, const float* __restrict__ w,
                               const float* __restrict__ b, float* __restrict__ y, GEOM, int chunk,
                               int splits, int relu) {
    __shared__ GemmSmem<float, int4> sm;
    conv_forward(sm, x, w, b, y, GEOM_ARGS, chunk, splits, relu);
}
GEMM_KERNEL conv2d_forward_f64(const double* __restrict__ x, const double* __restrict__ w,
                               const double* __restrict__ b, double* __restrict__ y, GEOM, int chunk,
                               int splits, int relu) {
    __shared__ GemmSmem<double, int4> sm;
    conv_forward(sm, x, w, b, y, GEOM_ARGS, chunk, splits, relu);
}
GEMM_KERNEL conv2d_backward_data_f32(const float* __restrict__ dy, const float* __restrict__ w,
                                     float* __restrict__ dx, GEOM, int chunk, int splits) {
    __shared__ GemmSmem<float, int4> sm;
    conv_backward_data(sm, dy, w, dx, GEOM_ARGS, chunk, splits);
}
GEMM_KERNEL conv2d_backward_data_f64(const double* __restrict__ dy, const double* __restrict__ w,
                                     double* __restrict__ dx, GEOM, int chunk, int splits) {
    __shared__ GemmSmem<double, int4> sm;
    conv_backward_data(sm, dy, w, dx, GEOM_ARGS, chunk, splits);
}
GEMM_KERNEL conv2d_backward_data_phase_f32(const float* __restrict__ dy, const float* __restrict__ w,
                                           float* __restrict__ dx, GEOM) {
    __shared__ GemmSmem<float, int4> sm;
    conv_backward_data_phase(sm, dy, w, dx, GEOM_ARGS);
}
GEMM_KERNEL conv2d_backward_data_phase_f64(const double* __restrict__ dy, const double* __restrict__ w,
                                           double* __restrict__ dx, GEOM) {
    __shared__ GemmSmem<double, int4> sm;
    conv_backward_data_phase(sm, dy, w, dx, GEOM_ARGS);
}
GEMM_KERNEL conv2d_backward_filter_f32(const float* __restrict__ dy, const float* __restrict__ x,
                                       float* __restrict__ out, GEOM, int chunk, int splits) {
    __shared__ GemmSmem<float, int4> sm;
    conv_backward_filter(sm, dy, x, out, GEOM_ARGS, chunk, splits);
}
GEMM_KERNEL conv2d_backward_filter_f64(const double* __restrict__ dy, const double* __restrict__ x,
                                       double* __restrict__ out, GEOM, int chunk, int splits) {
    __shared__ GemmSmem<double, int4> sm;
    conv_backward_filter(sm, dy, x, out, GEOM_ARGS, chunk, splits);
}
extern "C" __global__ void conv2d_sum_splits_f32(const float* __restrict__ part, float* __restrict__ dw,
                                                 long long n, int splits) {
    sum_splits(part, dw, n, splits);
}
extern "C" __global__ void conv2d_sum_splits_f64(const double* __restrict__ part, double* __restrict__ dw,
                                                 long long n, int splits) {
    sum_splits(part, dw, n, splits);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
conv2d_backward_bias_f32(const float* __restrict__ dy, float* __restrict__ db, int N, int K, int PQ) {
    __shared__ float part[GEMM_THREADS];
    bias_grad(part, dy, db, N, K, PQ);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
conv2d_backward_bias_f64(const double* __restrict__ dy, double* __restrict__ db, int N, int K, int PQ) {
    __shared__ double part[GEMM_THREADS];
    bias_grad(part, dy, db, N, K, PQ);
}
extern "C" __global__ void im2col_f32(const float* __restrict__ x, float* __restrict__ cols,
                                      long long NC, WIN) {
    im2col_k(x, cols, NC, WIN_ARGS);
}
extern "C" __global__ void im2col_f64(const double* __restrict__ x, double* __restrict__ cols,
                                      long long NC, WIN) {
    im2col_k(x, cols, NC, WIN_ARGS);
}
extern "C" __global__ void col2im_f32(const float* __restrict__ cols, float* __restrict__ x,
                                      long long NC, WIN) {
    col2im_k(cols, x, NC, WIN_ARGS);
}
extern "C" __global__ void col2im_f64(const double* __restrict__ cols, double* __restrict__ x,
                                      long long NC, WIN) {
    col2im_k(cols, x, NC, WIN_ARGS);
}
