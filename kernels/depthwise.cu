// depthwise.cu: direct grouped convolution for small groups (depthwise,
// Kg and Cg of a few channels, and the backward-data of stems with C <= 4
// that conv2d_strip.cu does not take), where conv2d.cu's 64 x 64 GEMM tile
// would be mostly empty rows.
//
// Kernels (T = float as _f32, double as _f64; G = groups, Cg = C/G, Kg = K/G):
//   depthwise_forward_T        (const T* x, const T* w, const T* b, T* y, GEOM, int epi)  epi: common.cuh's EPI_*
//                                x: (N,C,H,W)  w: (K,Cg,kh,kw)  b: (K,)  y: (N,K,P,Q)
//   depthwise_forward_k3_T, depthwise_forward_k5_T: the same for stride and dilation 1 along
//                                rows and kw = 3 or 5 (a row's inputs in registers)
//   depthwise_backward_data_T  (const T* dy, const T* w, T* dx, GEOM)   (and _c1_T: groups of one channel)
//                                dy: (N,K,P,Q)  dx: (N,C,H,W)
//   depthwise_backward_data_window_T(const T* dy, const T* w, T* dx, GEOM, int strip)   (C = G only)
//                                dynamic shared memory: the bank, K*kh*sw*strip elements
//   depthwise_backward_filter_T(const T* dy, const T* x, T* out, GEOM, int chunk, int splits)
//                                out: (splits,K,Cg,kh,kw), partial sums over pixel chunks
//   depthwise_backward_filter_k3_T, _k5_T: the same for 3x3 and 5x5 filters of groups of one
//                                channel at stride and dilation 1 along rows; chunks of
//                                DW_OUT-output row units (gpucnn/cuda/algo.py's filter_rows)
// where GEOM = int N, C, H, W, K, P, Q, kh, kw, sh, sw, pt, pl, dh, dw, G (as conv2d.cu).
// Element counts fit in int (checked by gpucnn/cuda/conv.py); memory offsets are 64-bit.
//
// Cost per output element (forward): Cg*kh*kw FMAs; a thread computes DW_OUT
// outputs of a row, so each weight load serves DW_OUT FMAs and, at stride
// and dilation 1 with 3- or 5-wide filters, each input load up to kw; the
// loads are L1 hits but for the compulsory bytes (x, w and y once). backward-data gathers, for up to DW_CB channels of a
// group at once, the dy pixels whose windows covered the input pixel: each dy
// load feeds DW_CB FMAs, and the taps are walked so that a tap a stride skips
// costs one test rather than Kg FMAs. The window kernel (groups of one
// channel with many taps a stride phase) reuses each dy load: in float, per
// window and filter, 4 LDG.128, and 3 LDS per row feeding 40 FMAs, for up to
// 3 rows (120 FFMA in ~185 issued instructions on sm_90). backward-filter: a
// block per (filter, pixel chunk) reduces DW_TB taps at a time over its pixels, then a fixed
// tree over the block's threads; chunks are added in split order by
// conv2d_sum_splits, so the bits never depend on timing (no atomics).
#include "common.cuh"
#include "gemm.cuh"
#include "conv.cuh"

#define DW_THREADS 256
#define DW_OUT 4  // forward: consecutive outputs of a row a thread computes
#define DW_CB 4   // channels of one group a backward-data thread computes
#define DW_PIX 4  // pixels of one stride phase of a row a backward-data thread computes
#define DW_TB 8  // taps a backward-filter thread accumulates at once
#define DWW_PIX 4    // window kernel: pixels of a phase a lane owns (one 16-byte float vector: lanes 16 bytes apart)
#define DWW_TB 10    // taps a window covers: a + DWW_TB + 3 <= 16 for every offset a < 4, 4 LDG.128 in float
#define DWW_TBP 12   // a chunk's weights in the bank, padded to whole 16-byte vectors
#define DWW_ROWS 3   // rows (Lh apart) a lane owns: each dy window feeds up to 3 of them (4 spills on sm_75, sm_80)

// ------------------------------------------------------------------- forward

// v[i] = row[w0 + i], zero outside [0, W) (padding): SPAN inputs of a row.
template <int SPAN, typename T>
__device__ __forceinline__ void dw_row_span(T (&v)[SPAN], const T* row, int w0, int W) {
    const T* in = row + w0;
    if (w0 >= 0 && w0 + SPAN <= W) {  // the whole span inside the row: no test per input
#pragma unroll
        for (int i = 0; i < SPAN; ++i) v[i] = in[i];
    } else {
#pragma unroll
        for (int i = 0; i < SPAN; ++i) v[i] = (unsigned)(w0 + i) < (unsigned)W ? in[i] : T(0);
    }
}

// acc[j] += one filter row's taps for the outputs w0 + j*sw, j < DW_OUT, of
// input row ``row``. KW > 0 (stride and dilation 1, kw == KW): the DW_OUT +
// KW - 1 inputs are loaded once each into registers and every FMA's operands
// are registers (a window's taps were one load each per output, 13 issued
// instructions an FMA on sm_90, bench/results/static-sm90.md); KW == 0, any
// stride, dilation and width: one load per tap and output. A padded input
// reads as zero (as the GEMM kernels' gathers: w * 0 is added).
template <int KW, typename T>
__device__ __forceinline__ void dw_forward_row(T (&acc)[DW_OUT], const T* row, const T* wr, int w0, int W, int kw,
                                               int sw, int dw) {
    if constexpr (KW > 0) {
        T v[DW_OUT + KW - 1];
        dw_row_span(v, row, w0, W);
#pragma unroll
        for (int s = 0; s < KW; ++s) {
            const T ws = wr[s];
#pragma unroll
            for (int j = 0; j < DW_OUT; ++j) acc[j] += ws * v[j + s];
        }
    } else {
#pragma unroll 1
        for (int s = 0; s < kw; ++s) {
            const T ws = wr[s];
#pragma unroll
            for (int j = 0; j < DW_OUT; ++j) {
                const int ww = w0 + j * sw + s * dw;
                acc[j] += ws * ((unsigned)ww < (unsigned)W ? row[ww] : T(0));
            }
        }
    }
}

// acc[j] = the window sums of outputs j < DW_OUT of one row: channels c of
// the group (xg: its channel 0), filter rows r, each row by dw_forward_row.
template <int KW, typename T>
__device__ __forceinline__ void dw_forward_out(T (&acc)[DW_OUT], const T* xg, const T* wk, int Cg, int H, int W,
                                               int kh, int kw, int h0, int w0, int sw, int dh, int dw) {
    for (int c = 0; c < Cg; ++c)
        for (int r = 0; r < kh; ++r) {
            const int h = h0 + r * dh;
            if ((unsigned)h >= (unsigned)H) continue;  // a padded row: its taps add nothing
            dw_forward_row<KW>(acc, xg + ((long long)c * H + h) * W, wk + (c * kh + r) * kw, w0, W, kw, sw, dw);
        }
}

// A thread per DW_OUT consecutive outputs of a row (the last of a row may
// hold fewer): the filter row's weights are loaded once for all of them and,
// for KW > 0 (the launch code's choice: stride and dilation 1, kw == KW),
// each input once (3x3: 6 loads for 12 FMAs a row).
template <int KW, typename T>
__device__ void dw_forward(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                           T* __restrict__ y, GEOM, int epi) {
    const int Kg = K / G, Cg = C / G, QB = (Q + DW_OUT - 1) / DW_OUT;
    const FastDiv fQB(QB), fP(P), fK(K), fKg(Kg);
    const bool bias = epi & EPI_BIAS;
    const int relu = epi & EPI_RELU;
    GRID_STRIDE_LOOP(i, (long long)N * K * P * QB) {  // i = ((n*K + k)*P + p)*QB + qb
        int nkp, nk, n;
        const int qb = fQB.divmod((int)i, nkp), p = fP.divmod(nkp, nk), k = fK.divmod(nk, n);
        const int q0 = qb * DW_OUT, h0 = p * sh - pt, w0 = q0 * sw - pl;
        const T* xg = x + ((long long)n * C + (long long)fKg.div(k) * Cg) * H * W;
        const T* wk = w + (long long)k * Cg * kh * kw;
        T acc[DW_OUT];
#pragma unroll
        for (int j = 0; j < DW_OUT; ++j) acc[j] = T(0);
        dw_forward_out<KW>(acc, xg, wk, Cg, H, W, kh, kw, h0, w0, sw, dh, dw);
        T* yr = y + ((long long)nk * P + p) * Q + q0;
        if (bias) {
            const T bk = b[k];
#pragma unroll
            for (int j = 0; j < DW_OUT; ++j) acc[j] += bk;
        }
#pragma unroll
        for (int j = 0; j < DW_OUT; ++j)
            if (q0 + j < Q) yr[j] = relu_if(acc[j], relu);
    }
}

// ------------------------------------------------------------- backward data

// dx[n, c, h, w] = sum over filters f of c's group and taps (r, s) with
// h + pt - r*dh = p*sh (and likewise w) of w[f, c, r, s] dy[n, f, p, q].
// Thread i owns DW_PIX pixels of row h in one phase of the w stride,
// w_j = start + (wb*DW_PIX + j)*sw (j < DW_PIX), for channels c0 .. c0 + CB - 1
// of group g in image n: the pixels share every tap's validity and read
// consecutive dy values q0 + j, so each tap costs DW_PIX + CB loads for
// DW_PIX * CB FMAs. CB = DW_CB, or 1 for groups of one channel (stems with
// C = 1, depthwise), where DW_CB would issue 4 FMAs per useful one. Threads run phase-major within a row (i = (((n*G + g)*CB + cb)*H + h)*sw + b)*WB + wb).
template <typename T, int CB>
__device__ void dw_backward_data(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx, GEOM) {
    const int Kg = K / G, Cg = C / G, HW = H * W, PQ = P * Q, khkw = kh * kw;
    const int blocks = (Cg + CB - 1) / CB, WB = ((W + sw - 1) / sw + DW_PIX - 1) / DW_PIX;
    const int bias = (kw * dw + sw - 1) / sw;  // keeps w + pl - s*dw + bias*sw >= 0 for the division
    const FastDiv fWB(WB), fsw(sw), fH(H), fB(blocks), fG(G), fsh(sh);
    GRID_STRIDE_LOOP(i, (long long)N * G * blocks * H * sw * WB) {
        int rest, hrest, ngb, n, phase_row;
        const int wb = fWB.divmod((int)i, phase_row), b = fsw.divmod(phase_row, hrest);
        const int h = fH.divmod(hrest, rest), cb = fB.divmod(rest, ngb), g = fG.divmod(ngb, n);
        const int start = ((b - pl) % sw + sw) % sw, w0 = start + wb * DW_PIX * sw;  // (w0 + pl) % sw == b
        if (w0 >= W) continue;  // a phase with fewer pixels than the widest
        const int c0 = g * Cg + cb * CB, nc = min(CB, Cg - cb * CB);
        const int npix = min(DW_PIX, (W - 1 - w0) / sw + 1);
        T acc[DW_PIX][CB];
#pragma unroll
        for (int j = 0; j < DW_PIX; ++j)
#pragma unroll
            for (int k = 0; k < CB; ++k) acc[j][k] = T(0);
        const T* dyn = dy + ((long long)n * K + (long long)g * Kg) * PQ;
        const T* wc = w + ((long long)g * Kg * Cg + (c0 - g * Cg)) * khkw;
        for (int r = 0; r < kh; ++r) {
            const int th = h + pt - r * dh;
            if (th < 0) break;  // th falls with r
            int p;
            if (fsh.divmod(th, p) != 0 || p >= P) continue;  // a tap the stride skips
            for (int s = 0; s < kw; ++s) {
                int q0;
                if (fsw.divmod(w0 + pl - s * dw + bias * sw, q0) != 0) continue;  // the same for all DW_PIX pixels
                q0 -= bias;
                bool ok[DW_PIX];
#pragma unroll
                for (int j = 0; j < DW_PIX; ++j) ok[j] = j < npix && (unsigned)(q0 + j) < (unsigned)Q;
                const T* d = dyn + p * Q + q0;
                const T* wf = wc + r * kw + s;
// Unrolled 4 times only for one float channel: the one-channel double kernel
// spills on sm_86 and sm_89 when unrolled, and 4 channels gain nothing.
#pragma unroll(CB == 1 && sizeof(T) == 4 ? 4 : 1)
                for (int f = 0; f < Kg; ++f) {
                    T v[DW_PIX], wk[CB];
#pragma unroll
                    for (int j = 0; j < DW_PIX; ++j) v[j] = ok[j] ? d[(long long)f * PQ + j] : T(0);
#pragma unroll
                    for (int k = 0; k < CB; ++k) wk[k] = k < nc ? wf[(long long)f * Cg * khkw + k * khkw] : T(0);
#pragma unroll
                    for (int j = 0; j < DW_PIX; ++j)
#pragma unroll
                        for (int k = 0; k < CB; ++k) acc[j][k] += wk[k] * v[j];
                }
            }
        }
        T* out = dx + ((long long)n * C + c0) * HW + (long long)h * W + w0;
#pragma unroll
        for (int k = 0; k < CB; ++k)
#pragma unroll
            for (int j = 0; j < DW_PIX; ++j)
                if (k < nc && j < npix) out[(long long)k * HW + j * sw] = acc[j][k];
    }
}

// ---------------------------------------------- backward data, dy windows

// Groups of one channel (C = G) with many taps per stride phase (wide, strided
// stems as deepspeech): lanes along pixels, the filter bank in shared memory
// and a sliding window of dy in registers. Pixels w = b + k*L of phase b
// (L = lcm(sw, dw)) meet taps s = s0 + t*ss at q = q(b, k) - t*qs (ss =
// sw/gcd, qs = dw/gcd), so pixels k..k+DWW_PIX-1 and taps t..t+DWW_TB-1 read
// one run of DWW_PIX + DWW_TB - 1 dy values: per filter, DWW_PIX*DWW_TB FMAs
// from that window (4 LDG.128 in float) and the chunk's weights (3 broadcast
// LDS). Rows h + i*Lh (i < ROWS, Lh = lcm(sh, dh)) meet the same dy row
// at taps r + i*rs (rs = sh/gcd), so one window feeds up to ROWS rows. A warp
// owns one (image, channel, row group, phase, tile of 32*DWW_PIX pixels):
// every branch but dww_load's edge test is uniform and every weight load a
// broadcast. Lanes are 16 bytes apart in float, so each window load of a warp
// is 512 contiguous bytes.
// bank: (K, kh, sw, strip), phase rho's taps of (f, r), t = chunk*DWW_TB + u at
// chunk*DWW_TBP + u, zero past the phase's taps; strip = chunks*DWW_TBP.
template <typename T> struct DwwWin {
    // NV vectors hold LEN values from any offset a < VN in the first
    enum { VN = Vec16<T>::n, LEN = DWW_PIX + DWW_TB - 1, NV = (LEN + 2 * (VN - 1)) / VN };
    T v[NV * VN];
};

__device__ __forceinline__ void unpack(const float4& x, float* o) { o[0] = x.x, o[1] = x.y, o[2] = x.z, o[3] = x.w; }
__device__ __forceinline__ void unpack(const double2& x, double* o) { o[0] = x.x, o[1] = x.y; }

// win.v[a + m] = dy row d at q = qw + m*qs (m < LEN), zero outside [0, Q);
// returns a: 16-byte vectors where the run is contiguous, aligned and inside
// the row (a = the run's offset in its first vector), else scalar loads (a = 0).
template <typename T> __device__ __forceinline__ int dww_load(DwwWin<T>& win, const T* d, int qw, int qs, int Q) {
    typedef typename Vec16<T>::type V;
    const int VN = DwwWin<T>::VN, NV = DwwWin<T>::NV;
    const unsigned long long at = reinterpret_cast<unsigned long long>(d + qw);
    const int a = (int)(at & 15) / (int)sizeof(T);
    if (qs == 1 && at % sizeof(T) == 0 && qw - a >= 0 && qw - a + NV * VN <= Q) {
        const V* src = reinterpret_cast<const V*>(d + qw - a);
#pragma unroll
        for (int i = 0; i < NV; ++i) unpack(src[i], win.v + i * VN);
        return a;
    }
#pragma unroll
    for (int m = 0; m < DwwWin<T>::LEN; ++m) {
        const int q = qw + m * qs;
        win.v[m] = (unsigned)q < (unsigned)Q ? d[q] : T(0);
    }
    return 0;
}

// acc[i][j] += w(row i, tap u) * window(j - u + DWW_TB - 1) for the rows whose
// tap is in the filter (live bit i); A: the window's offset, compile-time so
// that v stays in registers.
template <typename T, int ROWS, int A>
__device__ __forceinline__ void dww_fma(T (&acc)[ROWS][DWW_PIX], const DwwWin<T>& win, const T* wrow, int wstep,
                                        int live) {
    typedef typename Vec16<T>::type V;
#pragma unroll
    for (int i = 0; i < ROWS; ++i) {
        if (!(live >> i & 1)) continue;
        T wk[DWW_TBP];
#pragma unroll
        for (int e = 0; e < DWW_TBP / Vec16<T>::n; ++e)
            unpack(reinterpret_cast<const V*>(wrow + i * wstep)[e], wk + e * Vec16<T>::n);
#pragma unroll
        for (int u = 0; u < DWW_TB; ++u)
#pragma unroll
            for (int j = 0; j < DWW_PIX; ++j) acc[i][j] += wk[u] * win.v[A + j - u + DWW_TB - 1];
    }
}

template <typename T, int ROWS>
__device__ void dw_backward_data_window(T* bank, const T* __restrict__ dy, const T* __restrict__ w,
                                        T* __restrict__ dx, GEOM, int strip) {
    const int gw = gcd(sw, dw), ss = sw / gw, qs = dw / gw, L = sw * qs;
    const int rs = sh / gcd(sh, dh), Lh = rs * dh, Kg = K / G;
    const FastDiv fS(strip), fsw(sw);
    for (int e = threadIdx.x; e < K * kh * sw * strip; e += blockDim.x) {
        int fr, rest;  // fr = f*kh + r
        const int slot = fS.divmod(e, rest), rho = fsw.divmod(rest, fr);
        const int u = slot % DWW_TBP, s0 = phase_first_tap(rho, ss, sw, dw);
        const int s = s0 + (slot / DWW_TBP * DWW_TB + u) * ss;
        bank[e] = s0 >= 0 && u < DWW_TB && s < kw ? w[fr * kw + s] : T(0);
    }
    __syncthreads();  // the bank is whole before any warp reads it
    const int rows = ((H + Lh - 1) / Lh + ROWS - 1) / ROWS;  // row groups of each of the Lh row phases
    const int tiles = ((W + L - 1) / L + 32 * DWW_PIX - 1) / (32 * DWW_PIX);  // warp tiles of each of the L phases
    const int lane = threadIdx.x % 32, warps = blockDim.x / 32 * gridDim.x;  // blockDim.x: a multiple of 32
    const FastDiv fT(tiles), fL(L), fR(rows), fLh(Lh);
    // A grid-stride loop over warps: each warp takes whole work items.
    for (int it = (blockIdx.x * blockDim.x + threadIdx.x) / 32; it < N * C * Lh * rows * L * tiles; it += warps) {
        int r1, r2, r3, nc;
        const int tile = fT.divmod(it, r1), b = fL.divmod(r1, r2), grp = fR.divmod(r2, r3), rh = fLh.divmod(r3, nc);
        const int rho = (b + pl) % sw, s0 = phase_first_tap(rho, ss, sw, dw);
        const int chunks = s0 < 0 ? 0 : ((kw - s0 + ss - 1) / ss + DWW_TB - 1) / DWW_TB;
        const int h0 = rh + grp * ROWS * Lh, w0 = b + (tile * 32 + lane) * DWW_PIX * L;
        const int qb = (w0 + pl - s0 * dw) / sw;  // exact: (w0 + pl - s0*dw) % sw == 0
        const int c = nc % C, n = nc / C;
        T acc[ROWS][DWW_PIX];
#pragma unroll
        for (int i = 0; i < ROWS; ++i)
#pragma unroll
            for (int j = 0; j < DWW_PIX; ++j) acc[i][j] = T(0);
        for (int r = -(ROWS - 1) * rs; r < kh && chunks; ++r) {  // row i meets dy row p at tap r + i*rs
            const int th = h0 + pt - r * dh;
            if (th < 0) break;  // th falls with r
            if (th % sh || th / sh >= P) continue;
            int live = 0;
#pragma unroll
            for (int i = 0; i < ROWS; ++i)
                live |= (r + i * rs >= 0 && r + i * rs < kh && h0 + i * Lh < H) << i;
            if (!live) continue;  // taps past both ends of the filter (rs > kh), or rows past H
            for (int f = c * Kg; f < (c + 1) * Kg; ++f) {
                const T* d = dy + ((long long)(n * K + f) * P + th / sh) * Q;
                const T* wrow = bank + ((f * kh + r) * sw + rho) * strip;  // row 0's strip; row i is i*rs*sw*strip on
                for (int ch = 0; ch < chunks; ++ch) {
                    DwwWin<T> win;
                    const int a = dww_load(win, d, qb - (ch * DWW_TB + DWW_TB - 1) * qs, qs, Q);
                    const T* wr = wrow + ch * DWW_TBP;
                    const int step = rs * sw * strip;
                    switch (a) {  // a < Vec16<T>::n; the cases past it never run for double
                    case 0: dww_fma<T, ROWS, 0>(acc, win, wr, step, live); break;
                    case 1: dww_fma<T, ROWS, 1>(acc, win, wr, step, live); break;
                    case 2: dww_fma<T, ROWS, 2 % DwwWin<T>::VN>(acc, win, wr, step, live); break;
                    default: dww_fma<T, ROWS, 3 % DwwWin<T>::VN>(acc, win, wr, step, live); break;
                    }
                }
            }
        }
        T* out = dx + (long long)nc * H * W;
#pragma unroll
        for (int i = 0; i < ROWS; ++i)
#pragma unroll
            for (int j = 0; j < DWW_PIX; ++j)
                if (h0 + i * Lh < H && w0 + j * L < W) out[(long long)(h0 + i * Lh) * W + w0 + j * L] = acc[i][j];
    }
}

// ----------------------------------------------------------- backward filter

// out[j] = the block's sum of its threads' v[j], j < n <= DW_TB, by a fixed
// tree (the same order every run); part: DW_TB x DW_THREADS of shared memory.
template <typename T>
__device__ __forceinline__ void dw_block_sum(T (*part)[DW_THREADS], const T* v, int n, T* __restrict__ out) {
    block_tree_sum<DW_TB, DW_THREADS>(part, v, n);
    const int t = threadIdx.x;
    if (t < n) out[t] = part[t][0];
    __syncthreads();  // part is read before the next sums overwrite it
}

// Block z (blocks stride over K*splits, so any grid works) reduces filter
// k = z % K over pixels [split*chunk, min((split+1)*chunk, N*P*Q)) of its
// group, split = z / K, and writes out[split, k, :].
template <typename T>
__device__ void dw_backward_filter(T (*part)[DW_THREADS], const T* __restrict__ dy, const T* __restrict__ x,
                                   T* __restrict__ out, GEOM, int chunk, int splits) {
    const int Kg = K / G, Cg = C / G, HW = H * W, PQ = P * Q, khkw = kh * kw, taps = Cg * khkw;
    const int t = threadIdx.x, npq = N * PQ;
    const FastDiv fPQ(PQ), fQ(Q), fkhkw(khkw), fkw(kw);
    for (int z = blockIdx.x; z < K * splits; z += gridDim.x) {  // uniform per block: barriers are safe
        const int k = z % K, split = z / K, g = k / Kg;
        const int beg = split * chunk, end = min(npq, beg + chunk);
        const T* dyk = dy + (long long)k * PQ;
        const T* xg = x + (long long)g * Cg * HW;
        for (int tb = 0; tb < taps; tb += DW_TB) {
            int off[DW_TB], rd[DW_TB], sd[DW_TB];  // tap j: its offset in x, r*dh, s*dw
#pragma unroll
            for (int j = 0; j < DW_TB; ++j) {
                int c, r;
                const int s = fkw.divmod(fkhkw.divmod(min(tb + j, taps - 1), c), r);
                off[j] = c * HW + r * dh * W + s * dw;
                rd[j] = tb + j < taps ? r * dh : -(1 << 30);  // a tap past the end never lands in x
                sd[j] = s * dw;
            }
            T acc[DW_TB];
#pragma unroll
            for (int j = 0; j < DW_TB; ++j) acc[j] = T(0);
            for (int e = beg + t; e < end; e += DW_THREADS) {
                int n, p;
                const int q = fQ.divmod(fPQ.divmod(e, n), p), pq = p * Q + q;
                const T d = dyk[(long long)n * K * PQ + pq];
                const int h0 = p * sh - pt, w0 = q * sw - pl;
                const long long base = (long long)n * C * HW + (long long)h0 * W + w0;
#pragma unroll
                for (int j = 0; j < DW_TB; ++j) {
                    const int h = h0 + rd[j], ww = w0 + sd[j];
                    if ((unsigned)h < (unsigned)H && (unsigned)ww < (unsigned)W) acc[j] += d * xg[base + off[j]];
                }
            }
            dw_block_sum(part, acc, min(DW_TB, taps - tb), out + ((long long)split * K + k) * taps + tb);
        }
    }
}

// The rows kernel of the filter gradient (KS x KS filters of groups of one
// channel, stride and dilation 1 along rows: algo.filter_rows): block z
// reduces filter k = z % K over units [split*chunk, ...) of N*P*QB, a unit
// being DW_OUT consecutive outputs of a row (QB = ceil(Q / DW_OUT)); per
// unit and filter row, the DW_OUT dy values and the row's DW_OUT + KS - 1
// inputs are loaded once and feed KS * DW_OUT FMAs (the per-tap kernel above
// loads an input per FMA and re-derives the pixel per DW_TB taps: 125
// instructions per 8 FFMA on sm_90, and 3x3's 9 taps took two passes).
template <int KS, typename T>
__device__ void dw_backward_filter_rows(T (*part)[DW_THREADS], const T* __restrict__ dy, const T* __restrict__ x,
                                        T* __restrict__ out, GEOM, int chunk, int splits) {
    const int Kg = K / G, QB = (Q + DW_OUT - 1) / DW_OUT, units = N * P * QB, t = threadIdx.x;
    const FastDiv fQB(QB), fP(P);
    for (int z = blockIdx.x; z < K * splits; z += gridDim.x) {  // uniform per block: barriers are safe
        const int k = z % K, split = z / K, g = k / Kg;
        const int beg = split * chunk, end = min(units, beg + chunk);
        T acc[KS * KS];
#pragma unroll
        for (int j = 0; j < KS * KS; ++j) acc[j] = T(0);
        for (int e = beg + t; e < end; e += DW_THREADS) {
            int np, n;
            const int qb = fQB.divmod(e, np), p = fP.divmod(np, n), q0 = qb * DW_OUT;
            const T* dyr = dy + (((long long)n * K + k) * P + p) * Q + q0;
            const T* xc = x + ((long long)n * C + g) * H * W;
            // a row's last unit may hold fewer outputs: their dy are zeros and their inputs
            // are not multiplied (an input no output pairs with stays out, inf or not)
            const bool whole = q0 + DW_OUT <= Q;
            T d[DW_OUT];
#pragma unroll
            for (int j = 0; j < DW_OUT; ++j) d[j] = whole || q0 + j < Q ? dyr[j] : T(0);
#pragma unroll
            for (int r = 0; r < KS; ++r) {
                const int h = p * sh - pt + r * dh;
                if ((unsigned)h >= (unsigned)H) continue;  // a padded row: its taps add nothing
                T v[DW_OUT + KS - 1];
                dw_row_span(v, xc + (long long)h * W, q0 - pl, W);
#pragma unroll
                for (int s = 0; s < KS; ++s)
#pragma unroll
                    for (int j = 0; j < DW_OUT; ++j)
                        if (whole || q0 + j < Q) acc[r * KS + s] += d[j] * v[j + s];
            }
        }
#pragma unroll
        for (int j0 = 0; j0 < KS * KS; j0 += DW_TB)  // the block's sums DW_TB taps at a time
            dw_block_sum(part, acc + j0, min(DW_TB, KS * KS - j0), out + ((long long)split * K + k) * KS * KS + j0);
    }
}

// ------------------------------------------------------------ entry points

#define DW_FORWARD(T, SFX, KW)                                                                               \
    extern "C" __global__ void __launch_bounds__(DW_THREADS)                                                 \
    depthwise_forward_##SFX(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,        \
                            T* __restrict__ y, GEOM, int epi) {                                              \
        dw_forward<KW>(x, w, b, y, GEOM_ARGS, epi);                                                          \
    }
DW_FORWARD(float, f32, 0)
DW_FORWARD(double, f64, 0)
DW_FORWARD(float, k3_f32, 3)
DW_FORWARD(double, k3_f64, 3)
DW_FORWARD(float, k5_f32, 5)
DW_FORWARD(double, k5_f64, 5)
#define DW_BACKWARD_DATA(T, SFX, CB)                                                                         \
    extern "C" __global__ void __launch_bounds__(DW_THREADS)                                                 \
    depthwise_backward_data_##SFX(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx, GEOM) { \
        dw_backward_data<T, CB>(dy, w, dx, GEOM_ARGS);                                                       \
    }
DW_BACKWARD_DATA(float, f32, DW_CB)
DW_BACKWARD_DATA(double, f64, DW_CB)
DW_BACKWARD_DATA(float, c1_f32, 1)
DW_BACKWARD_DATA(double, c1_f64, 1)
#define DW_BACKWARD_DATA_WINDOW(T, SFX)                                                                    \
    extern "C" __global__ void __launch_bounds__(DW_THREADS)                                              \
    depthwise_backward_data_window_##SFX(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx, \
                                         GEOM, int strip) {                                               \
        extern __shared__ __align__(16) unsigned char dww_bank[];                                         \
        dw_backward_data_window<T, DWW_ROWS>(reinterpret_cast<T*>(dww_bank), dy, w, dx, GEOM_ARGS, strip); \
    }
DW_BACKWARD_DATA_WINDOW(float, f32)
DW_BACKWARD_DATA_WINDOW(double, f64)
#define DW_BACKWARD_FILTER_ROWS(T, SFX, KS)                                                                  \
    extern "C" __global__ void __launch_bounds__(DW_THREADS)                                                 \
    depthwise_backward_filter_##SFX(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ out,  \
                                    GEOM, int chunk, int splits) {                                           \
        __shared__ T part[DW_TB][DW_THREADS];                                                                \
        dw_backward_filter_rows<KS>(part, dy, x, out, GEOM_ARGS, chunk, splits);                             \
    }
DW_BACKWARD_FILTER_ROWS(float, k3_f32, 3)
DW_BACKWARD_FILTER_ROWS(double, k3_f64, 3)
DW_BACKWARD_FILTER_ROWS(float, k5_f32, 5)
DW_BACKWARD_FILTER_ROWS(double, k5_f64, 5)
extern "C" __global__ void __launch_bounds__(DW_THREADS)
depthwise_backward_filter_f32(const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ out,
                              GEOM, int chunk, int splits) {
    __shared__ float part[DW_TB][DW_THREADS];
    dw_backward_filter(part, dy, x, out, GEOM_ARGS, chunk, splits);
}
extern "C" __global__ void __launch_bounds__(DW_THREADS)
depthwise_backward_filter_f64(const double* __restrict__ dy, const double* __restrict__ x,
                              double* __restrict__ out, GEOM, int chunk, int splits) {
    __shared__ double part[DW_TB][DW_THREADS];
    dw_backward_filter(part, dy, x, out, GEOM_ARGS, chunk, splits);
}
