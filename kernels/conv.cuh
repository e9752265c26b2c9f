// conv.cuh: the geometry arguments every convolution kernel takes (conv2d.cu,
// conv2d_phase.cu, depthwise.cu, conv2d_strip.cu), in the order
// gpucnn/cuda/conv.py's _geom passes them, the division their gathers use,
// and the stride phases' first taps (depthwise.cu's and conv2d_strip.cu's
// backward-data).
#pragma once

#define GEOM                                                                                 \
    int N, int C, int H, int W, int K, int P, int Q, int kh, int kw, int sh, int sw, int pt, \
        int pl, int dh, int dw, int G
#define GEOM_ARGS N, C, H, W, K, P, Q, kh, kw, sh, sw, pt, pl, dh, dw, G

// n / d for 0 <= n < 2^31 by a multiply-high and a shift (Granlund and
// Montgomery, "Division by invariant integers using multiplication", 1994):
// the Ops' gathers divide indices by run-time sizes on every step, and a GPU,
// having no integer divider, spends about 20 instructions on each division. With
// l = ceil(log2 d) and m = floor(2^32 (2^l - d) / d) + 1, floor(n / d) =
// (umulhi(n, m) + n) >> l, where the sum cannot overflow because n < 2^31.
struct FastDiv {
    int d;
    unsigned m;
    int l;
    __device__ FastDiv(int divisor) : d(divisor), l(32 - __clz(divisor - 1)) {  // d = 1: l = 0, m = 1
        m = (unsigned)((((1ULL << l) - (unsigned)divisor) << 32) / (unsigned)divisor + 1);
    }
    __device__ __forceinline__ int div(int n) const { return (int)((__umulhi((unsigned)n, m) + (unsigned)n) >> l); }
    // q = n / d and returns n - q * d
    __device__ __forceinline__ int divmod(int n, int& q) const {
        q = div(n);
        return n - q * d;
    }
};

__device__ __forceinline__ int gcd(int a, int b) {
    while (b) {
        const int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

// The first tap s (< ss = sw / gcd(sw, dw)) of stride phase rho, where
// s*dw = rho (mod sw); -1 if none (taps then repeat every ss).
__device__ __forceinline__ int phase_first_tap(int rho, int ss, int sw, int dw) {
    for (int s = 0; s < ss; ++s)
        if ((s * dw - rho) % sw == 0) return s;
    return -1;
}

// INT_MIN (NVRTC has no <climits>): the coordinate of a none column or k-table entry (tc_gemm.cuh's
// B_NONE), whose gathers are all zeros: added (as unsigned) to a real coordinate c in (-pad, H), it gives
// 2^31 + c >= H (pad + H fits in int, or no output size would). Two of them add up to 0, so a none
// column and a none entry put it in different coordinates: one stays far.
#define CONV_FAR (-2147483647 - 1)

// Tap masks: the padding test of a gather as one AND (the tensor-core tile's,
// tc_gemm.cuh: ~4 instructions an element before, two adds and two unsigned
// compares, against one LOP3 with a predicate out). A tap (r, s) of a filter
// of kh x kw is the bits r and kh + s of a word (conv_tap_bits); a window (the
// column of the forward or backward-data GEMM, or the pixel of the filter
// gradient's k) is the mask of the tap rows and columns it misses
// (conv_miss; the filter gradient's pixels by conv2d.cu's filter_miss), plus
// CONV_MISS_NONE. The tap lies outside the window exactly
// when the two share a bit, because a tap is inside when both its row and its
// column are (the padding is separable). CONV_MISS_NONE is in every window's
// mask and no tap's bits: an entry of only that bit misses every window, and a
// window of all bits every tap (the none columns and entries of tc_gemm.cuh's
// B_NONE). Exact for kh + kw <= 31 (conv_masked, decided once per launch);
// wider filters keep the compare-based test (the Ops' MASK = false).
#define CONV_MISS_NONE (1u << 31)
// The tensor-core kernels instantiate each pass twice, masks and compares, and branch uniformly on
// conv_masked: conv2d.cu's at the entry point, conv2d_phase.cu's per (phase, group). The other way round,
// the stride phases' 128 tile spills at its entry (128 registers, 216 bytes of stack; per part, none)
// and conv2d's forward 128 tile loses uniform registers per part (its k-step 553 -> 580 instructions).
__device__ __forceinline__ bool conv_masked(int kh, int kw) { return kh + kw <= 31; }
__device__ __forceinline__ unsigned conv_tap_bits(int r, int s, int kh) { return (1u << r) | (1u << (kh + s)); }
// Bits i < k of the taps whose coordinate lo + i*d lies outside [0, size), at bit shift: a loop of k trips,
// for the windows of the columns' handles (conv2d.cu's FwdOp::col, conv2d_phase.cu's), which a tile computes
// once before its k-step loop. Not unrolled: ptxas's unroll by 4 adds a remainder ladder for a filter's few
// taps (when the filter gradient's k-table called it per pixel in the k-step loop, the sm_90 k-step of
// conv2d_backward_filter_tf32_128 went 552 -> 641 instructions unrolled). That k-table now uses conv2d.cu's
// filter_miss, the same bits in closed form (91 instructions a step's entries for any filter, where these
// loops, 8 and 9 instructions a trip, cost its building warp 179 for a 7 x 7 filter and 280 for a 5 x 20).
__device__ __forceinline__ unsigned conv_miss(int lo, int d, int k, int size, int shift) {
    unsigned m = 0;
#pragma unroll 1
    for (int i = 0; i < k; ++i) m |= (unsigned)((unsigned)(lo + i * d) >= (unsigned)size) << (shift + i);
    return m;
}
// The same for the backward-data's windows: tap i reaches padded coordinate hp
// (= coordinate + pad) from window p = (hp - i*d) / s when that divides and
// 0 <= p < size; the bits (at shift) of the taps i < k that no window holds.
__device__ __forceinline__ unsigned conv_miss_strided(int hp, int d, int k, const FastDiv& s, int size, int shift) {
    unsigned m = 0;
#pragma unroll 1
    for (int i = 0; i < k; ++i) {
        const int t = hp - i * d;
        int p = -1;
        if (t >= 0 && s.divmod(t, p) != 0) p = -1;
        m |= (unsigned)((unsigned)p >= (unsigned)size) << (shift + i);
    }
    return m;
}
