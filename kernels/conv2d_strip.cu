// conv2d_strip.cu: the backward-data of convolutions with 1 to 4 channels a
// group (stems: C = 3), any stride, dilation, padding and groups, at several
// FMAs per issued instruction (gpucnn/cuda/algo.py's "strip" family).
//
// Kernels (T = float as _f32, double as _f64; G = groups, Cg = C/G = CB, Kg = K/G):
//   conv2d_strip_backward_data_c{CB}_T(const T* dy, const T* w, T* dx, GEOM, int strip, int groups)
//                                CB = 1 .. 4;  dy: (N,K,P,Q)  w: (K,Cg,kh,kw)  dx: (N,C,H,W)
//                                dynamic shared memory: the bank, (groups ? groups*Kg : K)*kh*sw*strip*CB
//                                elements (strip_fill_bank)
// GEOM as conv2d.cu (conv.cuh). Element counts fit in int (checked by
// gpucnn/cuda/strip.py); memory offsets are 64-bit.
//
// dx[n, c, h, w] = sum over filters f of c's group and taps (r, s) with
// h + pt - r*dh = p*sh and w + pl - s*dw = q*sw of w[f, c, r, s] dy[n, f, p, q].
// A thread owns STRIP_PIX pixels w0 + j*L (L = lcm(sw, dw)) of row h, all of
// one stride phase, for all CB channels of its group. Those pixels meet taps
// s = s0 + t*ss (ss = sw / gcd(sw, dw)) at q = qb + (j - t)*qs (qs = dw /
// gcd), so per filter and row tap, a chunk of STRIP_TB taps reads one run of
// STRIP_PIX + STRIP_TB - 1 dy values (loaded once, into registers) and the
// chunk's STRIP_TB*CB weights (CB broadcast 16-byte shared loads in float) for
// STRIP_PIX*STRIP_TB*CB FMAs: 8 x 4 x 3 = 96 FMAs from 11 dy values and 3
// LDS.128 for a 3-channel stem. Phases with fewer taps than whole chunks
// carry zero weights (cifar-stem's 3 taps a row: 3/4 of the FMAs useful,
// resnet-stem's 4 + 3 taps of 7x7 / 2: 7/8). The loop over the group's filters
// is innermost, so each chunk's dy bounds are tested once for all of them.
// Compulsory bytes: dy, w and dx once; the bank (the filters of the groups
// a block meets, strip_fill_bank) is read from w by every block.
#include "common.cuh"
#include "conv.cuh"

#define STRIP_THREADS 256
#define STRIP_PIX 8  // pixels of one stride phase a thread owns
#define STRIP_TB 4   // taps of a chunk: a chunk's weights are CB whole 16-byte vectors in float
#define STRIP_WIN (STRIP_PIX + STRIP_TB - 1)  // dy values a chunk reads
#define STRIP_SM90 (__CUDA_ARCH__ >= 900)

// acc[j][c] += w(c, tap t) * dy(qlo + (j - t + STRIP_TB - 1)*qs) over the
// group's filters: d and wr point at the first filter's dy run and bank chunk;
// bit m of ok: dy value m lies inside its row. UNIT: qs = 1, so the run's
// offsets are constants (one base address a filter).
template <typename T, int CB, bool UNIT>
__device__ __forceinline__ void strip_filters(T (&acc)[STRIP_PIX][CB], const T* __restrict__ d, const T* wr,
                                              int qs, unsigned ok, int Kg, long long dstep, int wstep) {
    typedef typename Vec16<T>::type V;
    enum { VN = Vec16<T>::n, NV = STRIP_TB * CB / VN };  // STRIP_TB*CB is a multiple of VN (4 or 2)
    // A value outside the row is outside it for every filter: zeroed once, never loaded.
    T v[STRIP_WIN];
#pragma unroll
    for (int m = 0; m < STRIP_WIN; ++m) v[m] = T(0);
// Two filters a trip in float with qs = 1 on sm_90: the ok tests serve both.
// For 3 channels, sm_90 SASS: one filter a trip with v zeroed each filter,
// 140 instructions a 96 FFMA (1.46 an FMA); two a trip, 260 a 192 (1.35);
// and v zeroed once, 244 a 192 (1.27). Not in double (it spills), nor with
// qs > 1 (dilated: rare, a 64-bit address per value), nor before sm_90,
// whose ptxas spills it at 128 registers (the emulator compiles as sm_80).
#pragma unroll(sizeof(T) == 4 && UNIT && STRIP_SM90 ? 2 : 1)
    for (int f = 0; f < Kg; ++f, d += dstep, wr += wstep) {
        T wk[STRIP_TB * CB];
#pragma unroll
        for (int m = 0; m < STRIP_WIN; ++m)
            if (ok >> m & 1) v[m] = d[UNIT ? m : m * qs];
#pragma unroll
        for (int e = 0; e < NV; ++e) {
            const V x = reinterpret_cast<const V*>(wr)[e];
            *reinterpret_cast<V*>(wk + e * VN) = x;
        }
#pragma unroll
        for (int t = 0; t < STRIP_TB; ++t)
#pragma unroll
            for (int j = 0; j < STRIP_PIX; ++j)
#pragma unroll
                for (int c = 0; c < CB; ++c) acc[j][c] += wk[t * CB + c] * v[j - t + STRIP_TB - 1];
    }
}

// bank: (bank filters, kh, sw, strip, CB): phase rho's taps of filter row
// (f, r), tap t = chunk*STRIP_TB + u at slot t, zero past the phase's taps;
// strip is whole chunks (algo.strip_slots). With groups = 0 the bank holds all
// K filters, filter f at f; else it holds the Kg filters of each of ``groups``
// (< G) slots, slot j those of group (g0 + j) % G: a block's threads meet only
// the (image, group) pairs ng0 .. ng0 + groups - 1, g0 = ng0 % G
// (algo.strip_bank_groups), and a bank of every group's filters (depthwise:
// 256 groups, 12 KiB) would be read from L2 by every block to use one or two.
template <typename T, int CB>
__device__ void strip_fill_bank(T* bank, const T* __restrict__ w, int K, int kh, int kw, int sw, int dw,
                                int strip, int groups, int Kg, int G, int g0) {
    const int ss = sw / gcd(sw, dw), filters = groups ? groups * Kg : K;
    const FastDiv fS(strip), fsw(sw), fkh(kh), fKg(Kg);
    for (int e = threadIdx.x; e < filters * kh * sw * strip * CB; e += blockDim.x) {
        int rest, fr, f, j;
        const int c = e % CB, slot = fS.divmod(e / CB, rest), rho = fsw.divmod(rest, fr), r = fkh.divmod(fr, f);
        if (groups) {  // slot j's filter k of group (g0 + j) % G (j < groups < G): a filter of w
            const int k = fKg.divmod(f, j), g = g0 + j;
            f = (g < G ? g : g - G) * Kg + k;
        }
        const int s0 = phase_first_tap(rho, ss, sw, dw), s = s0 + slot * ss;
        bank[e] = s0 >= 0 && s < kw ? w[((f * CB + c) * kh + r) * kw + s] : T(0);
    }
}

template <typename T, int CB>
__device__ void strip_backward_data(T* bank, const T* __restrict__ dy, const T* __restrict__ w,
                                    T* __restrict__ dx, GEOM, int strip, int groups) {
    const int gw = gcd(sw, dw), ss = sw / gw, qs = dw / gw, L = sw * qs, Kg = K / G, HW = H * W, PQ = P * Q;
    const int WB = ((W + L - 1) / L + STRIP_PIX - 1) / STRIP_PIX;  // strips of the widest phase
    const int wstep = kh * sw * strip * CB;                        // one filter on in the bank
    const int n_threads = N * G * H * L * WB;  // fits int (gpucnn/cuda/strip.py)
    const FastDiv fWB(WB), fL(L), fH(H), fG(G), fsh(sh), fNG(H * L * WB);
    if (!groups) {  // every group's filters, once for all the block's passes
        strip_fill_bank<T, CB>(bank, w, K, kh, kw, sw, dw, strip, 0, Kg, G, 0);
        __syncthreads();  // the bank is whole before any thread reads it
    }
    // i = (((n*G + g)*H + h)*L + b)*WB + wb: neighbouring threads share h, so
    // they take the same row taps and read neighbouring dy runs. The loop runs
    // whole blocks (base: the block's first i), so that all its threads meet
    // the barriers around each pass's bank.
    for (long long base = (long long)blockIdx.x * blockDim.x; base < n_threads;
         base += (long long)blockDim.x * gridDim.x) {
        const int ng0 = fNG.div((int)base);  // the pass's first (image, group)
        if (groups) {
            int n0;
            __syncthreads();  // the previous pass is done with the bank
            strip_fill_bank<T, CB>(bank, w, K, kh, kw, sw, dw, strip, groups, Kg, G, fG.divmod(ng0, n0));
            __syncthreads();
        }
        const long long i = base + threadIdx.x;
        if (i >= n_threads) continue;
        int r1, r2, ng, n;
        const int wb = fWB.divmod((int)i, r1), b = fL.divmod(r1, r2), h = fH.divmod(r2, ng), g = fG.divmod(ng, n);
        const int w0 = b + wb * STRIP_PIX * L;
        if (w0 >= W) continue;  // a phase with fewer pixels than the widest
        const int slot = groups ? ng - ng0 : g;  // the group's filters in the bank
        const int rho = (b + pl) % sw, s0 = phase_first_tap(rho, ss, sw, dw);
        const int chunks = s0 < 0 ? 0 : ((kw - s0 + ss - 1) / ss + STRIP_TB - 1) / STRIP_TB;
        const int qb = (w0 + pl - s0 * dw) / sw;  // exact: (w0 + pl - s0*dw) % sw == 0
        T acc[STRIP_PIX][CB];
#pragma unroll
        for (int j = 0; j < STRIP_PIX; ++j)
#pragma unroll
            for (int c = 0; c < CB; ++c) acc[j][c] = T(0);
        const T* dyn = dy + (long long)(n * K + g * Kg) * PQ;
        for (int r = 0; r < kh && chunks; ++r) {
            const int th = h + pt - r * dh;
            if (th < 0) break;  // th falls with r
            int p;
            if (fsh.divmod(th, p) != 0 || p >= P) continue;  // a row tap the stride skips
            for (int ch = 0; ch < chunks; ++ch) {
                const int qlo = qb - (ch * STRIP_TB + STRIP_TB - 1) * qs;  // the run's first dy column
                unsigned ok = 0;
#pragma unroll
                for (int m = 0; m < STRIP_WIN; ++m) ok |= (unsigned)((unsigned)(qlo + m * qs) < (unsigned)Q) << m;
                const T* d = dyn + p * Q + qlo;  // dereferenced only at the ok bits
                const T* wr = bank + (((slot * Kg * kh + r) * sw + rho) * strip + ch * STRIP_TB) * CB;
                if (qs == 1)  // the same branch for the whole launch
                    strip_filters<T, CB, true>(acc, d, wr, 1, ok, Kg, PQ, wstep);
                else
                    strip_filters<T, CB, false>(acc, d, wr, qs, ok, Kg, PQ, wstep);
            }
        }
        T* out = dx + (long long)ng * CB * HW + (long long)h * W + w0;
#pragma unroll
        for (int c = 0; c < CB; ++c)
#pragma unroll
            for (int j = 0; j < STRIP_PIX; ++j)
                if (w0 + j * L < W) out[(long long)c * HW + j * L] = acc[j][c];
    }
}

// ------------------------------------------------------------ entry points

// BLOCKS: the blocks per SM to fit registers for on sm_90 (2: 128 registers,
// where the float kernels fit without spilling; double needs up to 172).
// Older architectures keep one: their ptxas spills at 128 registers.
#define STRIP_BACKWARD_DATA(T, SFX, CB, BLOCKS)                                                             \
    extern "C" __global__ void __launch_bounds__(STRIP_THREADS, STRIP_SM90 ? (BLOCKS) : 1)                \
    conv2d_strip_backward_data_c##CB##_##SFX(const T* __restrict__ dy, const T* __restrict__ w,           \
                                             T* __restrict__ dx, GEOM, int strip, int groups) {             \
        extern __shared__ __align__(16) unsigned char strip_bank[];                                        \
        strip_backward_data<T, CB>(reinterpret_cast<T*>(strip_bank), dy, w, dx, GEOM_ARGS, strip, groups); \
    }
STRIP_BACKWARD_DATA(float, f32, 1, 2)
STRIP_BACKWARD_DATA(float, f32, 2, 2)
STRIP_BACKWARD_DATA(float, f32, 3, 2)
STRIP_BACKWARD_DATA(float, f32, 4, 2)
STRIP_BACKWARD_DATA(double, f64, 1, 1)
STRIP_BACKWARD_DATA(double, f64, 2, 1)
STRIP_BACKWARD_DATA(double, f64, 3, 1)
STRIP_BACKWARD_DATA(double, f64, 4, 1)
