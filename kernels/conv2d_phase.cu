// conv2d_phase.cu: the stride-decomposed backward-data of a convolution, for
// strides above 1 (gpucnn/cuda/algo.py chooses it; conv2d.cu has the rest).
//
// Kernels (T = float as _f32, double as _f64; G = groups, Cg = C/G, Kg = K/G):
//   conv2d_backward_data_phase_T(const T* dy, const T* w, T* dx, GEOM)
//                                dy: (N,K,P,Q)  w: (K,Cg,kh,kw)  dx: (N,C,H,W)
// GEOM as conv2d.cu (conv.cuh). Element counts fit in int (checked by
// gpucnn/cuda/conv.py); memory offsets are 64-bit.
//
//   conv2d_backward_data_phase_{tf32,3xtf32}_{128,64,32,64w}: the same in float on tensor cores
// Cost: the FMAs of the dense backward-data, 2*N*C*H*W*Kg*kh*kw/(sh*sw)
// (conv2d.cu's DataOp multiplies the (sh*sw - 1)/(sh*sw) structural zeros
// too), in the same tiles (gemm.cuh's 64 x 64 x 16, or tc_gemm.cuh's) with
// the same hot loop.
#include "common.cuh"
#include "gemm.cuh"
#include "tc_gemm.cuh"
#include "conv.cuh"

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

// MASK: the padding test by tap masks (conv.cuh; a phase's taps jr, js as a filter's r, s), else by compares.
template <typename T, bool MASK = false> struct PhaseOp {
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
    enum { A_RUNS = 0, B_RUNS = 0, B_NONE = 1 };  // a phase's taps stride w by step: no 16-byte runs
    typedef int Row;  // w[g*Kg, c, 0, 0]
    struct Col {
        const T* base;  // dy[n, g*Kg, ph0, pq0] (may lie outside dy)
        int ph0, pq0;
        int back;       // base + back = dy[n, g*Kg, 0, 0], an element (a zero's address, GemmAt)
        unsigned miss;  // MASK: the taps jr, js whose window row or column is outside dy (conv_miss)
    };
    // k = (f, jr, js): {f*P*Q - ah*Q - aw, ah (MASK: conv_tap_bits(jr, js, axh.taps)), aw, a} with
    // a = f*Cg*kh*kw + (r0 + jr*step)*kw + s0 + js*step,
    // A's offset from its row (no division per element of A)
    typedef int4 KTab;
    __device__ PhaseOp(const T* dy_, const T* w_, GEOM, int g, int a, int b)
        : dy(dy_), w(w_), axh(a, H, pt, sh, kh, dh), axw(b, W, pl, sw, kw, dw), M(C / G),
          N(N * axh.count * axw.count), pix(max(1, axh.count * axw.count)), cols(max(1, axw.count)), taps(max(1, axh.taps * axw.taps)),
          tw(max(1, axw.taps)), P(P), Q(Q), kw(kw), khkw(kh * kw),
          wbase(g * (K / G) * (C / G) * kh * kw), CgKHKW((C / G) * kh * kw), dybase(g * (K / G) * P * Q),
          img_dy(K * P * Q) {}
    __device__ Row row(int c) const { return wbase + c * khkw; }
    __device__ const T* pa(Row r, int, const KTab& e) const { return w + (e.w + r); }
    __device__ T a(Row r, int k, const KTab& e) const { return *pa(r, k, e); }
    __device__ Col col(int n) const {
        int img, i;
        const int j = cols.divmod(pix.divmod(n, img), i);
        const int ph0 = i + axh.m, pq0 = j + axw.m;
        const unsigned miss = MASK ? CONV_MISS_NONE | conv_miss(ph0 - axh.a0, -axh.da, axh.taps, P, 0) |
                                         conv_miss(pq0 - axw.a0, -axw.da, axw.taps, Q, axh.taps)
                                   : 0;
        return Col{dy + (long long)img * img_dy + dybase + ph0 * Q + pq0, ph0, pq0, -(ph0 * Q + pq0), miss};
    }
    // A column past N and an entry past kend whose gathers are zeros at dy (B_NONE; ah >= 0, so ph0 = -1
    // meets no row; A's offset 0 is an element)
    __device__ Col col_none() const { return Col{dy + dybase, -1, 0, 0, ~0u}; }
    __device__ KTab ktab_none() const { return make_int4(0, MASK ? (int)CONV_MISS_NONE : CONV_FAR, 0, 0); }
    __device__ KTab ktab(int k) const {
        int f, jr;
        const int js = tw.divmod(taps.divmod(k, f), jr);
        const int ah = axh.a0 + jr * axh.da, aw = axw.a0 + js * axw.da;
        return make_int4(f * P * Q - ah * Q - aw, MASK ? (int)conv_tap_bits(jr, js, axh.taps) : ah, aw,
                         f * CgKHKW + (axh.r0 + jr * axh.step) * kw + axw.r0 + js * axw.step);
    }
    __device__ GemmAt<T> pb(const Col& cl, int, const KTab& e) const {  // not ok: the window is outside dy
        bool ok;
        if constexpr (MASK) ok = !(cl.miss & (unsigned)e.y);
        else ok = (unsigned)cl.ph0 - e.y < (unsigned)P && (unsigned)cl.pq0 - e.z < (unsigned)Q;
        return GemmAt<T>{cl.base + (ok ? e.x : cl.back), ok};
    }
    __device__ T b(const Col& cl, int k, const KTab& e) const { return gemm_deref(pb(cl, k, e)); }
};

// Grid z over (phase, group) pairs; run(op, kbeg, kend, store) is the block
// tile, FFMA (GemmRun) or tensor-core (TcRun). FFMA column tiles past the
// phase's pixels return at once (BN: the tile's columns; 0 keeps them, as the
// tensor-core tile does: its columns past op.N gather zeros and store nothing).
template <int BN, bool MASK, typename T, typename Run>
__device__ __forceinline__ void phase_part(Run run, const T* __restrict__ dy, const T* __restrict__ w,
                                           T* __restrict__ dx, GEOM, int z) {
    const int Cg = C / G, HW = H * W, g = z % G, phase = z / G;
    const PhaseOp<T, MASK> op(dy, w, GEOM_ARGS, g, phase / sw, phase % sw);
    if (BN && blockIdx.x * BN >= op.N) return;  // uniform per block: no barrier is skipped by some
    run(op, 0, op.axh.taps * op.axw.taps * (K / G), [&](int c, int n, T v) {
        int img, i;
        const int j = op.cols.divmod(op.pix.divmod(n, img), i);
        const int h = op.axh.start + i * sh, x = op.axw.start + j * sw;
        dx[((long long)img * C + g * Cg + c) * HW + (long long)h * W + x] = v;
    });
}
// MASKS: the padding test by tap masks where they are exact (conv.cuh's conv_masked; the tensor-core kernels).
template <int BN, bool MASKS = false, typename T, typename Run>
__device__ void conv_backward_data_phase(Run run, const T* __restrict__ dy, const T* __restrict__ w,
                                         T* __restrict__ dx, GEOM) {
    for (int z = blockIdx.z; z < G * sh * sw; z += gridDim.z)
        if (MASKS && conv_masked(kh, kw)) phase_part<BN, MASKS>(run, dy, w, dx, GEOM_ARGS, z);
        else phase_part<BN, false>(run, dy, w, dx, GEOM_ARGS, z);
}

// ------------------------------------------------------------ entry points

#if TC_PART_BASE  // the kernels without tensor cores: one part on a GPU (tc_gemm.cuh)
GEMM_KERNEL conv2d_backward_data_phase_f32(const float* __restrict__ dy, const float* __restrict__ w,
                                           float* __restrict__ dx, GEOM) {
    __shared__ GemmSmem<float, int4> sm;
    conv_backward_data_phase<GemmWide::BN>(gemm_run<float>(sm), dy, w, dx, GEOM_ARGS);
}
GEMM_KERNEL conv2d_backward_data_phase_f64(const double* __restrict__ dy, const double* __restrict__ w,
                                           double* __restrict__ dx, GEOM) {
    __shared__ GemmSmem<double, int4> sm;
    conv_backward_data_phase<GemmWide::BN>(gemm_run<double>(sm), dy, w, dx, GEOM_ARGS);
}
#endif

// Tensor-core float kernels (tc_gemm.cuh's TC_VARIANTS and TC_NARROW_VARIANTS
// names): in the math modes "tf32" and "3xtf32" the phases' dense GEMMs run
// on tensor cores, as conv2d.cu's backward-data does, instead of FFMA, on
// the tile gpucnn.cuda.tc.tc_config picks for the largest phase.
#if TC_AVAILABLE
// Blocks per SM (TC_KERNEL): 2 in tf32, but 1 on the 128 warpgroup tile, which spills at 128 registers
// (16 bytes; the stage's rounding unrolled, tc_round_words).
#define CONV2D_PHASE_TC(SFX, MODE, TILE)                                                                        \
    TC_KERNEL(TILE, MODE == TC_TF32 && !(TILE::WG && TILE::THREADS == 256) ? 2 : 1)                            \
    conv2d_backward_data_phase_##SFX(                                                                           \
        const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, GEOM) {              \
        conv_backward_data_phase<0, true>(TcRun<MODE, TILE>{}, dy, w, dx, GEOM_ARGS);                           \
    }
TC_VARIANTS(CONV2D_PHASE_TC)
TC_NARROW_VARIANTS(CONV2D_PHASE_TC)
TC_WG_VARIANTS(CONV2D_PHASE_TC)
#endif
