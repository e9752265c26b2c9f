// conv2d.cu: grouped 2-D convolution (seed §4.3-§4.8) as implicit GEMMs, and
// im2col / col2im (seed §6's φ and its reverse).
//
// Kernels (T = float as _f32, double as _f64; G = groups, Cg = C/G, Kg = K/G):
//   conv2d_forward_T        (const T* x, const T* w, const T* b, T* y, GEOM, int chunk, int splits, int epi)
//                             x: (N,C,H,W)  w: (K,Cg,kh,kw)  b: (K,), read with EPI_BIAS (common.cuh)
//                             y: (splits,N,K,P,Q)
//   conv2d_backward_data_T  (const T* dy, const T* w, T* dx, GEOM, int chunk, int splits)
//                             dy: (N,K,P,Q)  w: (K,Cg,kh,kw)  dx: (splits,N,C,H,W)
//   conv2d_backward_filter_T(const T* dy, const T* x, T* out, GEOM, int chunk, int splits)
//                             out: (splits,K,Cg,kh,kw), partial sums over pixel chunks
//   conv2d_forward_m32_T, conv2d_backward_data_m32_T, conv2d_backward_filter_m32_T
//                           the same on gemm.cuh's 32 x 64 tile (GEMMs of at most 32 rows)
//   conv2d_backward_filter_t_m32_T
//                           the filter gradient's transposed GEMM (rows: taps, columns: filters) on
//                           the 32 x 64 tile, for few taps and many filters (stems); same arguments
//   conv2d_sum_splits_T     (const T* part, T* dw, long long n, int splits, int relu)
//                             part: (splits,n)  dw: (n,)
//   conv2d_bias_grad_T      (const T* dy, double* part, unsigned* GPUCNN_INOUT counters, T* db, int N, int K,
//                            long long PQ, long long chunk, int chunks)  part: (K,chunks)  counters: (K,)+  db: (K,)
//   conv2d_bias_grad_async_f32  conv2d_bias_grad_f32's arguments and results, its loads through shared
//                            memory (channel.cuh's channel_walk_async; bench/ab_mem.py's "async")
//   im2col_T                (const T* x, T* cols, long long NC, WIN)     cols: (N,C*kh*kw,P*Q)
//   col2im_T                (const T* cols, T* x, long long NC, WIN)     x: (N,C,H,W)
// where GEOM = int N, C, H, W, K, P, Q, kh, kw, sh, sw, pt, pl, dh, dw, G (conv.cuh) and
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
#include "tc_gemm.cuh"
#include "channel.cuh"
#include "conv.cuh"

#define WIN int H, int W, int P, int Q, int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw
#define WIN_ARGS H, W, P, Q, kh, kw, sh, sw, pt, pl, dh, dw

// ------------------------------------------------------------------- forward

// MASK (every Op below): the padding test by tap masks (conv.cuh), for kh + kw <= 31; else by compares.
template <typename T, bool MASK = false> struct FwdOp {
    const T* x;
    const T* w;
    int M, N;  // GEMM rows (filters of the group) and columns (output pixels)
    int C, H, W, Cg;
    FastDiv khkw, kw, PQ, Q;
    int sh, sw, pt, pl, dh, dw, g, kh;
    enum { A_ALONG_K = 1, B_ALONG_K = 0 };  // w rows hold k; neighbouring pixels are neighbours in x
    enum { A_RUNS = 1, B_RUNS = 0, B_NONE = 1 };  // a filter's taps are contiguous (tc_gemm.cuh's TcRuns)
    typedef const T* Row;  // filter row g*Kg + m of w (a pointer: the tensor-core tile adds k with one IMAD.WIDE)
    struct Col {
        const T* base;  // x[n, g*Cg, h0, w0] (channel 0 of the group; may lie outside x)
        int h0, w0;     // top-left tap of the window in x
        int back;       // base + back = x[n, g*Cg, 0, 0], an element (a zero's address, GemmAt)
        unsigned miss;  // MASK: the tap rows and columns the window misses (conv_miss)
    };
    // tap k = (c, r, s): {c*H*W + r*dh*W + s*dw, r*dh (MASK: conv_tap_bits), s*dw, unused}
    typedef int4 KTab;
    __device__ Row row(int m) const { return w + (long long)(g * M + m) * (Cg * khkw.d); }
    __device__ const T* pa(Row r, int k, const KTab&) const { return r + k; }
    __device__ T a(Row r, int k, const KTab& e) const { return *pa(r, k, e); }
    __device__ Col col(int n) const {
        int img, p;
        const int pq = PQ.divmod(n, img), q = Q.divmod(pq, p);
        const int h0 = p * sh - pt, w0 = q * sw - pl;
        const unsigned miss = MASK ? CONV_MISS_NONE | conv_miss(h0, dh, kh, H, 0) | conv_miss(w0, dw, kw.d, W, kh) : 0;
        return Col{x + ((long long)img * C + (long long)g * Cg) * H * W + (long long)h0 * W + w0, h0, w0,
                   -(h0 * W + w0), miss};
    }
    // A column past N and an entry past kend whose gathers are zeros at x (tc_gemm.cuh's B_NONE)
    __device__ Col col_none() const { return Col{x, CONV_FAR, CONV_FAR, 0, ~0u}; }
    __device__ KTab ktab_none() const { return make_int4(0, MASK ? (int)CONV_MISS_NONE : CONV_FAR, 0, 0); }
    __device__ KTab ktab(int k) const {
        int c, r;
        const int rs = khkw.divmod(k, c), s = kw.divmod(rs, r);
        return make_int4(c * H * W + r * dh * W + s * dw, MASK ? (int)conv_tap_bits(r, s, kh) : r * dh, s * dw, 0);
    }
    __device__ GemmAt<T> pb(const Col& cl, int, const KTab& e) const {  // not ok: zero padding
        bool ok;
        if constexpr (MASK) ok = !(cl.miss & (unsigned)e.y);
        else ok = (unsigned)cl.h0 + e.y < (unsigned)H && (unsigned)cl.w0 + e.z < (unsigned)W;
        return GemmAt<T>{cl.base + (ok ? e.x : cl.back), ok};
    }
    __device__ bool a_runs() const { return Cg * khkw.d % 4 == 0 && aligned16(w); }
    __device__ T b(const Col& cl, int k, const KTab& e) const { return gemm_deref(pb(cl, k, e)); }
};

// Where a (split, group) part of a forward or backward-data GEMM goes: row m
// of group g is plane g*Mg + m of each image's Planes planes of PQ pixels,
// column n is pixel n % PQ of image n / PQ; with bias (EPI_BIAS: forward,
// split 0) and relu (EPI_RELU: forward, unsplit) applied on the way. vec and
// pair (an even PQ, out 8-byte aligned: columns n, n + 1 from an even n are
// one aligned pair) let the FFMA and tensor-core tiles store vectors.
template <typename T> struct PlaneEpi {
    T* out;
    const T* bias;  // read only with EPI_BIAS
    FastDiv PQ;
    int Planes, base, flags;  // base = g * Mg, the group's first plane; flags: common.cuh's EPI_*
    bool vec, pair;
    __device__ PlaneEpi(T* o, const T* b, int pq, int planes, int g0, int f)
        : out(o), bias(b), PQ(pq), Planes(planes), base(g0), flags(f),
          vec(pq % Vec16<T>::n == 0 && aligned16(o)), pair(pq % 2 == 0 && aligned8(o)) {}
    __device__ __forceinline__ long long at(int m, int n) const {
        int img;
        const int pq = PQ.divmod(n, img);
        return ((long long)img * Planes + base + m) * PQ.d + pq;
    }
    __device__ __forceinline__ T value(int m, int, T v) const {
        return relu_if((flags & EPI_BIAS) ? v + bias[base + m] : v, flags & EPI_RELU);
    }
    // As a store(m, n, v) callable (the tensor-core tile's epilogue): one element.
    __device__ __forceinline__ void operator()(int m, int n, T v) const { out[at(m, n)] = value(m, n, v); }
};

// Grid z runs over (split, group) pairs; split s reduces taps
// [s*chunk, min((s+1)*chunk, Cg*kh*kw)) and writes y + s*N*K*P*Q; split 0
// adds the bias (with EPI_BIAS), and relu (EPI_RELU) applies only to an unsplit reduction
// (conv2d_sum_splits applies it after adding the parts). run(op, kbeg, kend,
// epi): the block tile, FFMA (GemmRun: by vectors through the epilogue object)
// or tensor-core (TcRun: element by element). MASK: FwdOp's.
template <bool MASK = false, typename T, typename Run>
__device__ void conv_forward(Run run, const T* __restrict__ x, const T* __restrict__ w,
                             const T* __restrict__ b, T* __restrict__ y, GEOM, int chunk, int splits, int flags) {
    const int Kg = K / G, Cg = C / G, PQ = P * Q, red = Cg * kh * kw;
    for (int z = blockIdx.z; z < G * splits; z += gridDim.z) {
        const int g = z % G, split = z / G, kbeg = split * chunk, kend = min(red, kbeg + chunk);
        const FwdOp<T, MASK> op{x, w, Kg, N * PQ, C, H, W, Cg, kh * kw, kw, PQ, Q,
                                sh, sw, pt, pl, dh, dw, g, kh};
        const PlaneEpi<T> epi(y + (long long)split * N * K * PQ, b, PQ, K, g * Kg,
                              split == 0 ? flags : flags & ~EPI_BIAS);
        run(op, kbeg, kend, epi);  // bias and relu fused
    }
}

// ------------------------------------------------------------- backward data

template <typename T, bool MASK = false> struct DataOp {
    const T* dy;
    const T* w;
    int M, N;  // GEMM rows (channels of the group) and columns (input pixels)
    int C, K, Cg, Kg;
    FastDiv HW, W;
    int P, Q;
    FastDiv khkw, kw, sh, sw;
    int pt, pl, dh, dw, g, kh;
    enum { A_ALONG_K = 1, B_ALONG_K = 0 };  // a filter's taps are neighbours in w; pixels in dy
    enum { A_RUNS = 1, B_RUNS = 0, B_NONE = 1 };  // runs when kh*kw % 4 == 0 (a_runs), as taps of one filter
    typedef int Row;  // c * kh * kw: tap 0 of channel c within a filter
    // The pixel in padded coordinates, (hp, wp) = (ph0*sh + rh, pq0*sw + rw)
    // with rh < sh, rw < sw; the tap's offset likewise r*dh = ah*sh + bh,
    // s*dw = aw*sw + bw. Then hp - r*dh is a multiple of sh exactly when
    // rh = bh, and its quotient is ph0 - ah: no division per element.
    struct Col {
        const T* base;  // dy[n, g*Kg, ph0, pq0] (may lie outside dy)
        int ph0, pq0;
        int rhw;        // rh * sw + rw; MASK: the taps no window holds (conv_miss_strided), as int
        int back;       // base + back = dy[n, g*Kg, 0, 0], an element (a zero's address, GemmAt)
    };
    // k = (f, r, s): x = f*P*Q - ah*Q - aw, ah, aw, bhw = bh * sw + bw, a = (g*Kg + f)*Cg*kh*kw + r*kw + s,
    // and bits = conv_tap_bits(r, s, kh) (MASK)
    // (W[g*Kg + f, c, r, s] is w + a + c*kh*kw: no division per element of A). 24 bytes, 8-aligned: three
    // 64-bit shared loads; a 16-aligned 32 would not fit the 64 x 64 tensor-core tile's TcTile::SMEM.
    struct __align__(8) KTab {
        int x, ah, aw, bhw, a;
        unsigned bits;
    };
    __device__ Row row(int c) const { return c * khkw.d; }
    // one int add, then one IMAD.WIDE (w's size fits in int); w + e.a + r added the ints to the pointer one by one
    __device__ const T* pa(Row r, int, const KTab& e) const { return w + (e.a + r); }
    __device__ T a(Row r, int k, const KTab& e) const { return *pa(r, k, e); }
    __device__ Col col(int n) const {
        int img, h, ph0, pq0;
        const int hw = HW.divmod(n, img), x = W.divmod(hw, h);
        const int rh = sh.divmod(h + pt, ph0), rw = sw.divmod(x + pl, pq0);
        const int key = MASK ? (int)(CONV_MISS_NONE | conv_miss_strided(h + pt, dh, kh, sh, P, 0) |
                                     conv_miss_strided(x + pl, dw, kw.d, sw, Q, kh))
                             : rh * sw.d + rw;
        return Col{dy + ((long long)img * K + (long long)g * Kg) * P * Q + (long long)ph0 * Q + pq0, ph0, pq0, key,
                   -(ph0 * Q + pq0)};
    }
    // A column past N and an entry past kend whose gathers are zeros at dy (B_NONE; A's offset 0 is an element)
    __device__ Col col_none() const { return Col{dy, -1, 0, MASK ? -1 : 0, 0}; }
    __device__ KTab ktab_none() const { return KTab{0, CONV_FAR, 0, 0, 0, CONV_MISS_NONE}; }
    __device__ KTab ktab(int k) const {
        int f, r, ah, aw;
        const int rs = khkw.divmod(k, f), s = kw.divmod(rs, r);
        const int bh = sh.divmod(r * dh, ah), bw = sw.divmod(s * dw, aw);
        return KTab{f * P * Q - ah * Q - aw, ah, aw, bh * sw.d + bw, (g * Kg + f) * Cg * khkw.d + rs,
                    MASK ? conv_tap_bits(r, s, kh) : 0u};
    }
    // dY[n, f, p, q] of the window whose tap (r, s) is here; not ok: no window has it
    __device__ GemmAt<T> pb(const Col& cl, int, const KTab& e) const {
        bool ok;
        if constexpr (MASK) ok = !((unsigned)cl.rhw & e.bits);
        else ok = cl.rhw == e.bhw && (unsigned)cl.ph0 - e.ah < (unsigned)P && (unsigned)cl.pq0 - e.aw < (unsigned)Q;
        return GemmAt<T>{cl.base + (ok ? e.x : cl.back), ok};
    }
    __device__ bool a_runs() const { return khkw.d % 4 == 0 && aligned16(w); }
    __device__ T b(const Col& cl, int k, const KTab& e) const { return gemm_deref(pb(cl, k, e)); }
};

// Grid z over (split, group) pairs as in conv_forward; split s writes dx + s*N*C*H*W.
template <bool MASK = false, typename T, typename Run>
__device__ void conv_backward_data(Run run, const T* __restrict__ dy, const T* __restrict__ w,
                                   T* __restrict__ dx, GEOM, int chunk, int splits) {
    const int Kg = K / G, Cg = C / G, HW = H * W, red = Kg * kh * kw;
    for (int z = blockIdx.z; z < G * splits; z += gridDim.z) {
        const int g = z % G, split = z / G, kbeg = split * chunk, kend = min(red, kbeg + chunk);
        const DataOp<T, MASK> op{dy, w, Cg, N * HW, C, K, Cg, Kg, HW, W, P, Q, kh * kw, kw,
                                 sh, sw, pt, pl, dh, dw, g, kh};
        const PlaneEpi<T> epi(dx + (long long)split * N * C * HW, nullptr, HW, C, g * Cg, 0);
        run(op, kbeg, kend, epi);
    }
}

// ----------------------------------------------------------- backward filter

// Bits i < k (at shift) of the taps whose coordinate lo + i*d lies outside [0, size): conv.cuh's conv_miss
// in closed form, for the filter gradient's k-table, which the tensor-core tile builds per pixel in its
// k-step loop. The taps inside are the run first..last, first = ceil(-lo / d) and last = floor((size - 1 -
// lo) / d) clamped to [0, k): two FastDiv divisions and the run's mask. In conv2d_backward_filter_tf32_64's
// sm_90 k-step the k-table's code was 77 instructions around conv_miss's two loops (8 and 9 a trip), so
// the warp building it issued 77 + 6*8 + 6*9 = 179 a step for resnet-stem's 7 x 7 filter and
// 77 + 4*8 + 19*9 = 280 for deepspeech's 5 x 20 (the static count, bench/results/static-sm90.md, has each
// loop once); in closed form it is 91 for any filter. k <= 30 (conv_masked), so no shift reaches 32.
__device__ __forceinline__ unsigned filter_miss(int lo, const FastDiv& d, int k, int size, int shift) {
    const int first = lo >= 0 ? 0 : min(k, d.div(d.d - 1 - lo));
    const int last = lo >= size ? -1 : min(k - 1, d.div(size - 1 - lo));
    const unsigned in = last >= first ? (2u << last) - (1u << first) : 0u;
    return (((1u << k) - 1) & ~in) << shift;
}

template <typename T, bool MASK = false> struct FilterOp {
    const T* dy;
    const T* x;
    int M, N;  // GEMM rows (filters of the group) and columns (taps c, r, s)
    int C, K, H, W;
    FastDiv PQ, Q;
    int Cg;
    FastDiv khkw, kw;
    int sh, sw, pt, pl;
    FastDiv dh, dw;  // the dilations: filter_miss divides by them
    int g, kh;
    // k runs over pixels: contiguous in dy, stride sh in x, where the taps of
    // one pixel are scattered over channels and rows.
    enum { A_ALONG_K = 1, B_ALONG_K = 1 };
    // dy's pixels contiguous within an image, forward between images (runs when P*Q % 4 == 0); x padded
    enum { A_RUNS = 1, B_RUNS = 0, B_NONE = 1 };
    // 91 instructions a step's entries (two FastDiv divisions of the pixel, two filter_miss; a fifth of
    // the 64 tile's k-step): built by the warps in turn (tc_gemm.cuh's TcRotate)
    enum { KTAB_ROTATE = 1 };
    // 4 k-table entries read before their copies (tc_gemm.cuh's TcGatherQ): 3 idle issue slots after
    // the reads paid 4 times a step instead of 8, conv2d_backward_filter_tf32_64's k-step 470 -> 457
    // instructions (the 32 tile 495 -> 482, 128 550 -> 538, 64w 611 -> 602), no spills
    enum { GATHER_Q = 4 };
    typedef const T* Row;  // dy[0, g*Kg + m]
    struct Col {
        const T* base;   // x[0, g*Cg + c, roff, soff] (may lie outside x)
        int roff, soff;  // the tap's offset from the window's origin p*sh, q*sw
        unsigned bits;   // MASK: conv_tap_bits of the tap
        int back;        // MASK: base + back = x, an element (a zero's address, GemmAt)
    };
    // pixel k = (n, p, q): {n*C*H*W + p*sh*W + q*sw, p*sh (MASK: the taps the window misses, filter_miss),
    // q*sw, n*K*P*Q + p*Q + q}
    typedef int4 KTab;
    __device__ Row row(int m) const { return dy + (long long)(g * M + m) * PQ.d; }
    __device__ const T* pa(Row r, int, const KTab& e) const { return r + e.w; }
    __device__ T a(Row r, int k, const KTab& e) const { return *pa(r, k, e); }
    __device__ Col col(int n) const {
        int c, r;
        const int rs = khkw.divmod(n, c), s = kw.divmod(rs, r);
        const int roff = r * dh.d - pt, soff = s * dw.d - pl;
        const T* base = x + (long long)(g * Cg + c) * H * W + (long long)roff * W + soff;
        if constexpr (MASK)  // x's offset from base fits in int (x's per-image size does)
            return Col{base, roff, soff, conv_tap_bits(r, s, kh), (g * Cg + c) * -H * W - roff * W - soff};
        else
            return Col{base, roff, soff, 0u, 0};
    }
    // A tap past N and a pixel past kend whose gathers are zeros at x (B_NONE; A's offset 0 is an element)
    __device__ Col col_none() const { return Col{x, CONV_FAR, 0, CONV_MISS_NONE, 0}; }
    __device__ KTab ktab_none() const { return make_int4(0, MASK ? -1 : CONV_FAR, CONV_FAR, 0); }
    __device__ KTab ktab(int k) const {
        int img, p;
        const int pq = PQ.divmod(k, img), q = Q.divmod(pq, p);
        const int y = MASK ? (int)(CONV_MISS_NONE | filter_miss(p * sh - pt, dh, kh, H, 0) |
                                   filter_miss(q * sw - pl, dw, kw.d, W, kh))
                           : p * sh;
        return make_int4(img * C * H * W + p * sh * W + q * sw, y, q * sw, img * K * PQ.d + pq);
    }
    __device__ GemmAt<T> pb(const Col& cl, int, const KTab& e) const {  // not ok: zero padding
        if constexpr (MASK) {  // one SEL of the offset, as FwdOp: x as a zero's address costs 2 moves a copy
            const bool ok = !((unsigned)e.y & cl.bits);
            return GemmAt<T>{cl.base + (ok ? e.x : cl.back), ok};
        } else {  // x for a zero: back in the FFMA f64 filter kernel's registers spills it (16 bytes)
            const bool ok = (unsigned)e.y + cl.roff < (unsigned)H && (unsigned)e.z + cl.soff < (unsigned)W;
            return GemmAt<T>{ok ? cl.base + e.x : x, ok};
        }
    }
    __device__ bool a_runs() const { return PQ.d % 4 == 0 && aligned16(dy); }
    __device__ T b(const Col& cl, int k, const KTab& e) const { return gemm_deref(pb(cl, k, e)); }
};

// A row-major part of a GEMM's result, row m at out + m*ld, as an epilogue
// object (gemm.cuh's gemm_block_epilogue, tc_gemm.cuh's tc_block): vectors
// and pairs of columns where ld and out align them.
template <typename T> struct RowEpi {
    T* out;
    long long ld;
    bool vec, pair;
    __device__ RowEpi(T* o, long long l)
        : out(o), ld(l), vec(l % Vec16<T>::n == 0 && aligned16(o)), pair(l % 2 == 0 && aligned8(o)) {}
    __device__ __forceinline__ long long at(int m, int n) const { return m * ld + n; }
    __device__ __forceinline__ T value(int, int, T v) const { return v; }
    __device__ __forceinline__ void operator()(int m, int n, T v) const { out[at(m, n)] = v; }
};

// Grid z runs over (split, group) pairs; split s reduces pixels
// [s*chunk, min((s+1)*chunk, N*P*Q)) and writes out[s]. SWAP: the transposed
// GEMM (rows are the taps, columns the filters; gemm.cuh's GemmTransposed).
template <bool SWAP = false, bool MASK = false, typename T, typename Run>
__device__ void conv_backward_filter(Run run, const T* __restrict__ dy, const T* __restrict__ x,
                                     T* __restrict__ out, GEOM, int chunk, int splits) {
    const int Kg = K / G, Cg = C / G, PQ = P * Q, taps = Cg * kh * kw, NPQ = N * PQ;
    for (int z = blockIdx.z; z < G * splits; z += gridDim.z) {
        const int g = z % G, split = z / G;
        const FilterOp<T, MASK> op{dy, x, Kg, taps, C, K, H, W, PQ, Q, Cg, kh * kw, kw,
                                   sh, sw, pt, pl, dh, dw, g, kh};
        const int kbeg = split * chunk, kend = min(NPQ, kbeg + chunk);
        T* part = out + (long long)split * K * taps;
        if constexpr (SWAP)
            run(GemmTransposed<T, FilterOp<T, MASK>>{op, taps, Kg}, kbeg, kend,
                [&](int m, int n, T v) { part[(long long)(g * Kg + n) * taps + m] = v; });
        else
            run(op, kbeg, kend, RowEpi<T>(part + (long long)g * Kg * taps, taps));
    }
}

// ------------------------------------------------------------ bias gradient

// db[k] = sum of dy[:, k]: channel.cuh's two-level reduction in one launch
// (channel x chunk blocks, then the chunks in order by the channel's last
// chunk to finish), accumulated in double. With a ring (conv2d_bias_grad_async_f32:
// float, sm_80 and newer), 16-byte groups walk through it (channel_walk_async),
// as batch norm's statistics do.
template <typename T> struct BiasTerm {
    typedef T type;
    const T* dy;
    __device__ BiasTerm channel(int) const { return *this; }
    __device__ bool aligned() const { return aligned16(dy); }
    template <int G, bool Vec> __device__ __forceinline__ void add(long long g, double (&acc)[1]) const {
        T v[G];
        load_group<G, Vec>(dy, g, v);
        add_values(v, acc);
    }
    template <int G> __device__ __forceinline__ void add_values(const T (&v)[G], double (&acc)[1]) const {
#pragma unroll
        for (int e = 0; e < G; ++e) acc[0] += (double)v[e];
    }
};

template <typename T>
__device__ void bias_grad(double (*sm)[CH_THREADS], float4 (*ring)[CH_THREADS], const T* __restrict__ dy,
                          double* part, unsigned* counters, T* __restrict__ db, int N, int K, long long PQ,
                          long long chunk, int chunks) {
    const BiasTerm<T> term{dy};
    const auto fin = [&](int k) { return [=](const double (&s)[1]) { db[k] = (T)s[0]; }; };
    channel_reduce_ring<1, CH_UNROLL>(sm, ring, part, counters, dy, N, K, PQ, chunk, chunks, term, fin);
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

// The kernels without tensor cores: one part on a GPU (tc_gemm.cuh's TC_PART_BASE).
#if TC_PART_BASE
// The FFMA tile kernels of shape S (gemm.cuh): GemmWide as conv2d_*_T,
// GemmNarrow (at most 32 GEMM rows, gpucnn/cuda/algo.py) as conv2d_*_m32_T.
#define CONV2D_FFMA(S, T, SFX)                                                                                  \
    GEMM_ENTRY_AB(S, T) conv2d_forward_##SFX(const T* __restrict__ x, const T* __restrict__ w,                   \
                                             const T* __restrict__ b, T* __restrict__ y, GEOM, int chunk,       \
                                             int splits, int epi) {                                             \
        __shared__ GemmSmem<T, int4, S> sm;                                                                     \
        conv_forward(gemm_run<T>(sm), x, w, b, y, GEOM_ARGS, chunk, splits, epi);                               \
    }                                                                                                           \
    GEMM_ENTRY_AB(S, T) conv2d_backward_data_##SFX(const T* __restrict__ dy, const T* __restrict__ w,             \
                                                   T* __restrict__ dx, GEOM, int chunk, int splits) {           \
        __shared__ GemmSmem<T, typename DataOp<T>::KTab, S> sm;                                                 \
        conv_backward_data(gemm_run<T>(sm), dy, w, dx, GEOM_ARGS, chunk, splits);                               \
    }                                                                                                           \
    CONV2D_FILTER(S, T, conv2d_backward_filter_##SFX, false)
#define CONV2D_FILTER(S, T, NAME, SWAP)                                                                         \
    GEMM_ENTRY(S, T) NAME(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ out, GEOM,         \
                          int chunk, int splits) {                                                              \
        __shared__ GemmSmem<T, int4, S> sm;                                                                     \
        conv_backward_filter<SWAP>(gemm_run<T>(sm), dy, x, out, GEOM_ARGS, chunk, splits);                      \
    }
CONV2D_FFMA(GemmWide, float, f32)
CONV2D_FFMA(GemmWide, double, f64)
CONV2D_FFMA(GemmNarrow, float, m32_f32)
CONV2D_FFMA(GemmNarrow, double, m32_f64)
// The transposed filter gradient on the 32 x 64 tile (taps as rows; gpucnn/cuda/algo.py's swap).
CONV2D_FILTER(GemmNarrow, float, conv2d_backward_filter_t_m32_f32, true)
CONV2D_FILTER(GemmNarrow, double, conv2d_backward_filter_t_m32_f64, true)
extern "C" __global__ void conv2d_sum_splits_f32(const float* __restrict__ part, float* __restrict__ dw,
                                                 long long n, int splits, int relu) {
    sum_splits(part, dw, n, splits, relu);
}
extern "C" __global__ void conv2d_sum_splits_f64(const double* __restrict__ part, double* __restrict__ dw,
                                                 long long n, int splits, int relu) {
    sum_splits(part, dw, n, splits, relu);
}
// CH_BLOCKS = 4 blocks per SM, as norm.channel_chunks assumes (tests/test_reductions.py
// checks): without the minimum, ptxas gave the ring's kernel 112 registers on sm_86 (2 blocks).
// sass_report leaves these out of conv2d's GEMM tiles (the kernels with a minimum).
extern "C" __global__ void __launch_bounds__(CH_THREADS, CH_BLOCKS)
conv2d_bias_grad_f32(const float* __restrict__ dy, double* part, unsigned* GPUCNN_INOUT counters,
                     float* __restrict__ db, int N, int K, long long PQ, long long chunk, int chunks) {
    __shared__ double sm[1][CH_THREADS];
    bias_grad(sm, nullptr, dy, part, counters, db, N, K, PQ, chunk, chunks);
}
extern "C" __global__ void __launch_bounds__(CH_THREADS, CH_BLOCKS)
conv2d_bias_grad_f64(const double* __restrict__ dy, double* part, unsigned* GPUCNN_INOUT counters,
                     double* __restrict__ db, int N, int K, long long PQ, long long chunk, int chunks) {
    __shared__ double sm[1][CH_THREADS];
    bias_grad(sm, nullptr, dy, part, counters, db, N, K, PQ, chunk, chunks);
}
// Before sm_80 (no cp.async) and for groups that are not 16-byte ones, channel_walk.
extern "C" __global__ void __launch_bounds__(CH_THREADS, CH_BLOCKS)
conv2d_bias_grad_async_f32(const float* __restrict__ dy, double* part, unsigned* GPUCNN_INOUT counters,
                           float* __restrict__ db, int N, int K, long long PQ, long long chunk, int chunks) {
    __shared__ double sm[1][CH_THREADS];
    CH_RING_DECL(ring);
    bias_grad(sm, ring, dy, part, counters, db, N, K, PQ, chunk, chunks);
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
#endif

// Tensor-core float kernels: the same bodies on tc_gemm.cuh's tiles (see TC_VARIANTS and
// TC_NARROW_VARIANTS for the names).
#if TC_AVAILABLE
// The padding test by tap masks where kh + kw <= 31, else by compares (conv.cuh's conv_masked): a uniform
// branch at the entry, between two instantiations of the pass. Blocks per SM (TC_KERNEL): the filter
// gradient asks for 1 (its k-table builder's registers), but 2 on the warpgroup tile, which fits
// 120 registers (134 when asked for 1: one block an SM); 3xTF32's backward-data on the 64 tile asks
// for the 4 it had at 114 registers before the epilogue's pair stores took it to 136 (3 blocks),
// the occupancy tc._BLOCKS_SM90 and the H200's timings of it assume.
#define CONV2D_TC_DATA_BLOCKS(MODE, TILE) \
    (MODE == TC_TF32 ? 2 : TILE::BM == 64 && TILE::BN == 64 && !TILE::WG ? 4 : 1)
#define CONV2D_TC(SFX, MODE, TILE)                                                                              \
    TC_KERNEL(TILE, MODE == TC_TF32 ? 2 : 1) conv2d_forward_##SFX(const float* __restrict__ x, const float* __restrict__ w,             \
                                         const float* __restrict__ b, float* __restrict__ y, GEOM, int chunk,   \
                                         int splits, int epi) {                                                 \
        if (conv_masked(kh, kw)) conv_forward<true>(TcRun<MODE, TILE>{}, x, w, b, y, GEOM_ARGS, chunk, splits, epi); \
        else conv_forward<false>(TcRun<MODE, TILE>{}, x, w, b, y, GEOM_ARGS, chunk, splits, epi);               \
    }                                                                                                           \
    TC_KERNEL(TILE, CONV2D_TC_DATA_BLOCKS(MODE, TILE)) conv2d_backward_data_##SFX(const float* __restrict__ dy, const float* __restrict__ w,      \
                                               float* __restrict__ dx, GEOM, int chunk, int splits) {           \
        if (conv_masked(kh, kw)) conv_backward_data<true>(TcRun<MODE, TILE>{}, dy, w, dx, GEOM_ARGS, chunk, splits); \
        else conv_backward_data<false>(TcRun<MODE, TILE>{}, dy, w, dx, GEOM_ARGS, chunk, splits);               \
    }                                                                                                           \
    TC_KERNEL(TILE, TILE::WG ? 2 : 1) conv2d_backward_filter_##SFX(const float* __restrict__ dy, const float* __restrict__ x,    \
                                                 float* __restrict__ out, GEOM, int chunk, int splits) {        \
        if (conv_masked(kh, kw))                                                                                \
            conv_backward_filter<false, true>(TcRun<MODE, TILE>{}, dy, x, out, GEOM_ARGS, chunk, splits);       \
        else                                                                                                    \
            conv_backward_filter<false, false>(TcRun<MODE, TILE>{}, dy, x, out, GEOM_ARGS, chunk, splits);      \
    }
TC_VARIANTS(CONV2D_TC)
TC_NARROW_VARIANTS(CONV2D_TC)
TC_WG_VARIANTS(CONV2D_TC)
#endif
