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
