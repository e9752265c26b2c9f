// conv2d_fold.cu: the backward-data of convolutions with few channels a group
// (stems: C = 3; deepspeech: C = 1) on tensor cores, in the math mode "tf32"
// (gpucnn/cuda/algo.py's "fold" family). Seed §4.7 (backward for the
// supervision signal) writes it as dX = φ⁻¹(dY Fᵀ): first the GEMM
// G = dY Fᵀ (a row per dy pixel, a column per (channel, tap)), then the
// reverse operator φ⁻¹ (col2im: every dx pixel sums the G entries of the taps
// whose windows held it). Here both run on chip: G is a tensor-core GEMM
// whose columns are the Cg*kh*kw taps (147 for a 3-channel 7x7 stem: 19 of
// 8-wide MMA tiles, 97% live), and φ⁻¹ adds G into a window of dx rows held in
// shared memory. The implicit GEMMs instead put the Cg channels on the MMA's
// rows (3 of 16 live) and FFMA kernels (conv2d_strip.cu, depthwise.cu's
// window) cannot reach cuDNN's TF32 rate.
//
// Kernels (float only; the tensor cores round each operand to TF32 once):
//   conv2d_fold_backward_data_tf32_n{NT}_f32(const float* dy, const float* w, float* dx, GEOM,
//                                            int tw, int th, int bp, int wr, int sv, int rv)
//        dy: (N,K,P,Q)  w: (K,Cg,kh,kw)  dx: (N,C,H,W); NT: the taps' 8-wide MMA tiles it holds
//        (8, 16, 24: up to 64, 128, 192 taps). Dynamic shared memory: fold_smem_floats words
//        (gpucnn/cuda/fold.py's smem_bytes mirrors it).
//
// A task is (image, group, segment of th dx rows, tile of tw dx columns); a
// block loops over tasks (any grid is correct). For its tile the task needs dy
// columns [qlo, qhi] (qw <= FOLD_PIX of them) and, for its segment, dy rows
// [plo, phi]: it walks them in bands of bp rows (bp * qw <= FOLD_PIX pixels):
//   1. G[pixel][tap] = sum over the group's filters k of dy[k][pixel] w[k][tap]:
//      8 warps, each 16 pixels (one m16 tile) x all tap tiles, k in chunks of
//      FOLD_KC through a 2-stage cp.async pipeline (the next chunk, or the next
//      band's first, is in flight during this one's MMAs and the fold); w is
//      resident in shared memory for the task, rounded to TF32 once.
//   2. Fold: each dx pixel of the window rows the band reaches adds the G
//      entries of its taps (row offsets a band, column offsets a task, from
//      tables), in a fixed order.
//   3. The rows no later band reaches are stored and their window rows zeroed.
// Redundant work: a tile's dy columns overlap its neighbours' by about
// (kw - 1) * dw / sw, and a segment's first rows likewise; nothing else is
// computed twice, and the window (Cg x wr x tw floats, rows h % wr) is about
// 1/12 of G's size (stride 2: four dx pixels a dy pixel, against Cg*kh*kw taps).
// Deterministic: fixed tasks (shapes and SM count decide them) and a fixed
// order of the sums. Reads only elements of dy and w (cp.async's zero fill for
// the rest), writes only dx elements of the task's rows and columns.
#include "common.cuh"
#include "gemm.cuh"
#include "tc_gemm.cuh"
#include "conv.cuh"

#define FOLD_THREADS 256
#define FOLD_PIX 128  // dy pixels of a band: 8 warps x one m16 tile
#define FOLD_KC 32    // k chunk: tc_swz's 32-word rows

// The shared-memory layout, in 4-byte words, from the launch's sizes (fold.py's smem_bytes mirrors it).
struct FoldSmem {
    int ws, ds, gs, win, coltab, rowtab, total;
    __device__ FoldSmem(int kch, int nr, int ldg, int Cg, int wr, int tw, int sv, int rv) {
        ws = 0;                                  // w: kch chunks x nr taps x FOLD_KC (tc_swz), TF32
        ds = ws + kch * nr * FOLD_KC;            // dy: 2 stages x FOLD_PIX pixels x FOLD_KC (tc_swz)
        gs = ds + 2 * FOLD_PIX * FOLD_KC;        // G: FOLD_PIX pixels x ldg
        win = gs + FOLD_PIX * ldg;               // window: Cg x wr rows x tw
        coltab = win + Cg * wr * tw;             // per column: count, then sv offsets (ints)
        rowtab = coltab + tw * (sv + 1);         // per window row of a band: count, then rv offsets
        total = rowtab + wr * (rv + 1);
    }
};

// w of group g into ws[k / FOLD_KC][tap][k % FOLD_KC], zeros past the taps and Kg. Taps are
// (r, s, c), channel fastest: the fold reads a tap's Cg channels as neighbouring words.
__device__ __forceinline__ void fold_load_w(float* ws, const float* __restrict__ w, int g, int Kg, int kch, int Cg,
                                            int khkw, int nr) {
    const FastDiv by_nr(nr), by_cg(Cg);
    for (int e = threadIdx.x; e < kch * FOLD_KC * nr; e += FOLD_THREADS) {
        int k, rs;
        const int tap = by_nr.divmod(e, k), c = by_cg.divmod(tap, rs);
        const float v = tap < Cg * khkw && k < Kg ? w[(long long)(g * Kg + k) * Cg * khkw + c * khkw + rs] : 0.f;
        ws[(k / FOLD_KC) * nr * FOLD_KC + tc_swz(tap, k % FOLD_KC)] = __uint_as_float(tf32_rn(v));
    }
}

// One step's dy chunk (filters k0 .. k0 + FOLD_KC of the band's pixels) into ds, as cp.async:
// each copy instruction covers 8 pixels x 4 k of one 16-byte chunk (tc_gather's layout, no bank
// conflicts); pixels past npx and k past Kg are zero-filled from dyg, an element.
__device__ __forceinline__ void fold_fetch(float* ds, const float* __restrict__ dyg, long long PQ, int Q, int pb,
                                           int qlo, const FastDiv& qw, int npx, int k0, int Kg) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
    for (int j = 0; j < FOLD_PIX / 64; ++j) {
        const int px = (warp + 8 * j) * 8 + lane % 8;
        int pc = 0, pr = 0;
        if (px < npx) pc = qw.divmod(px, pr);
        const float* src = dyg + (long long)(pb + pr) * Q + qlo + pc;
#pragma unroll
        for (int quad = 0; quad < FOLD_KC / 4; ++quad) {
            const int k = 4 * quad + lane / 8;
            const bool ok = px < npx && k0 + k < Kg;
            cp_async<4>(ds + tc_swz(px, k), ok ? src + (k0 + k) * PQ : dyg, ok ? 4 : 0);
        }
    }
}

// acc[j] += dy's 16 pixels of this warp x w's tap tile j, over one chunk; tiles j < nt.
template <int NT>
__device__ __forceinline__ void fold_mma(const float* ds, const float* wsk, int nt, float (&acc)[NT][4]) {
    const int lane = threadIdx.x % 32, q = lane / 8, r8 = lane % 8;
    const int oa = 4 * tc_swz(threadIdx.x / 32 * 16 + (q % 2) * 8 + r8, (q / 2) * 4);  // as tc_warp_step
    const char* const ab = reinterpret_cast<const char*>(ds);
    const char* const bb = reinterpret_cast<const char*>(wsk);
#pragma unroll
    for (int k8 = 0; k8 < FOLD_KC / 8; ++k8) {
        unsigned a[4];
        ldmatrix<4, false>(a, ab + (oa ^ (k8 << 5)));
#pragma unroll
        for (int j = 0; j < 4; ++j) a[j] = tf32_rn(__uint_as_float(a[j]));
#pragma unroll
        for (int nj = 0; nj < NT / 2; ++nj) {
            if (2 * nj >= nt) break;  // uniform: nt is the launch's
            unsigned b[4];            // matrices: tap tile 2nj + q / 2, k +0/+4 (q % 2)
            ldmatrix<4, false>(b, bb + ((4 * tc_swz((2 * nj + q / 2) * 8 + r8, (q % 2) * 4)) ^ (k8 << 5)));
            const unsigned b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
            mma_tf32(acc[2 * nj], a, b0, acc[2 * nj]);
            if (2 * nj + 1 < nt) mma_tf32(acc[2 * nj + 1], a, b1, acc[2 * nj + 1]);
        }
    }
}

// Offsets into G of the valid taps of one coordinate x of dx along an axis: taps i < k with
// x + pad - i*d = j*s for j in [lo, hi]; entry (j - lo) * step + i * tapstep. Returns the count
// (at most max, the launch's bound for the geometry).
__device__ __forceinline__ int fold_taps(int* out, int x, int pad, int k, int d, int s, int lo, int hi, int step,
                                         int tapstep, int max) {
    int n = 0;
    for (int i = 0; i < k && n < max; ++i) {
        const int t = x + pad - i * d;
        if (t < 0 || t % s) continue;
        const int j = t / s;
        if (j >= lo && j <= hi) out[n++] = (j - lo) * step + i * tapstep;
    }
    return n;
}

// The fold of one band for the thread's column: window rows ht0 + r (r = hg, hg + groups_h, ...),
// each of its CB channels adding G[row offset + column offset + c] over the row's and column's taps,
// column taps outer, in table order (fixed: the bits depend on the shapes only).
template <int CB>
__device__ __forceinline__ void fold_band(float* win, const float* gs, const int* ct, const int* rowtab, int rv,
                                          int ht0, int ht1, int hg, int groups_h, int wr, int tw, int wo) {
    const int ncol = ct[0];
    for (int r = hg; r <= ht1 - ht0; r += groups_h) {
        const int* rt = rowtab + r * (rv + 1);
        const int nrow = rt[0];
        float* cell = win + ((ht0 + r) & (wr - 1)) * tw + wo;
        float v[CB];
#pragma unroll
        for (int c = 0; c < CB; ++c) v[c] = cell[c * wr * tw];
        for (int j = 0; j < ncol; ++j) {
            const float* gc = gs + ct[1 + j];
            for (int i = 0; i < nrow; ++i)
#pragma unroll
                for (int c = 0; c < CB; ++c) v[c] += gc[rt[1 + i] + c];
        }
#pragma unroll
        for (int c = 0; c < CB; ++c) cell[c * wr * tw] = v[c];
    }
}

template <int NT>
__device__ void fold_backward_data(float* sm, const float* __restrict__ dy, const float* __restrict__ w,
                                   float* __restrict__ dx, GEOM, int tw, int th, int bp, int wr, int sv, int rv) {
    const int Cg = C / G, Kg = K / G, taps = Cg * kh * kw, khkw = kh * kw;  // taps: G's columns
    const int nt = (taps + 7) / 8, nr = (nt + 1) / 2 * 16, ldg = nt * 8 + 1;  // ldg odd: the fold's lanes spread
    const int kch = (Kg + FOLD_KC - 1) / FOLD_KC;
    const FoldSmem L(kch, nr, ldg, Cg, wr, tw, sv, rv);
    float *ws = sm + L.ws, *ds = sm + L.ds, *gs = sm + L.gs, *win = sm + L.win;
    int *coltab = reinterpret_cast<int*>(sm + L.coltab), *rowtab = reinterpret_cast<int*>(sm + L.rowtab);
    const int t = threadIdx.x, warp = t / 32, lane = t % 32;
    const int tiles_w = (W + tw - 1) / tw, segs = (H + th - 1) / th;
    const int groups_h = max(1, FOLD_THREADS / tw), wo = t % tw, hg = t / tw;  // the fold's and stores' threads
    const long long PQ = (long long)P * Q, HW = (long long)H * W;
    for (int task = blockIdx.x; task < N * G * segs * tiles_w; task += gridDim.x) {
        const int ct = task % tiles_w, seg = task / tiles_w % segs, g = task / tiles_w / segs % G,
                  n = task / tiles_w / segs / G;
        const int h0 = seg * th, h1 = min(H, h0 + th), w0 = ct * tw, w1 = min(W, w0 + tw), twe = w1 - w0;
        // dy rows and columns whose windows reach the task's dx rows and columns
        const int plo = max(0, (h0 + pt - (kh - 1) * dh + sh - 1 + sh * kh * dh) / sh - kh * dh);
        const int phi = min(P - 1, (h1 - 1 + pt) / sh);
        const int qlo = max(0, (w0 + pl - (kw - 1) * dw + sw - 1 + sw * kw * dw) / sw - kw * dw);
        const int qhi = min(Q - 1, (w1 - 1 + pl) / sw);
        const int qw = qhi - qlo + 1, bpt = qw > 0 ? min(bp, FOLD_PIX / qw) : 1;
        const int bands = qw > 0 && phi >= plo ? (phi - plo + bpt) / bpt : 0, steps = bands * kch;
        const FastDiv qdiv(max(qw, 1));
        const float* dyg = dy + ((long long)n * K + g * Kg) * PQ;
        float* dxg = dx + ((long long)n * C + g * Cg) * HW;
        __syncthreads();  // the previous task's last stores read win
        fold_load_w(ws, w, g, Kg, kch, Cg, khkw, nr);
        for (int e = t; e < Cg * wr * tw; e += FOLD_THREADS) win[e] = 0.f;
        for (int x = t; x < twe; x += FOLD_THREADS) {
            int* ct_ = coltab + x * (sv + 1);
            ct_[0] = fold_taps(ct_ + 1, w0 + x, pl, kw, dw, sw, qlo, qhi, ldg, Cg, sv);
        }
        if (steps > 0) {
            fold_fetch(ds, dyg, PQ, Q, plo, qlo, qdiv, min(bpt, phi - plo + 1) * qw, 0, Kg);
            cp_async_commit();
        }
        int hw = h0, tend = h0 - 1;  // next row to store; last row any band reached
        float acc[NT][4];
        for (int s = 0; s < steps; ++s) {
            const int band = s / kch, kc = s % kch, pb = plo + band * bpt, pe = min(phi + 1, pb + bpt);
            if (kc == 0)
#pragma unroll
                for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
            cp_async_wait<0>();
            __syncthreads();  // step s landed for all; step s - 1's MMAs and the last fold are done
            if (s + 1 < steps) {
                const int nb = (s + 1) / kch, pn = plo + nb * bpt;
                fold_fetch(ds + ((s + 1) % 2) * FOLD_PIX * FOLD_KC, dyg, PQ, Q, pn, qlo, qdiv,
                           (min(phi + 1, pn + bpt) - pn) * qw, (s + 1) % kch * FOLD_KC, Kg);
                cp_async_commit();
            }
            const int npx = (pe - pb) * qw;
            if (warp * 16 < npx) fold_mma<NT>(ds + (s % 2) * FOLD_PIX * FOLD_KC, ws + kc * nr * FOLD_KC, nt, acc);
            if (kc + 1 < kch) continue;
            // G: acc[j] = rows g, g + 8 of the warp's pixels, taps 8j + 2(lane % 4) + {0, 1}
            if (warp * 16 < npx) {
                float* gw = gs + (warp * 16 + lane / 4) * ldg + 2 * (lane % 4);
#pragma unroll
                for (int j = 0; j < NT; ++j)
                    if (j < nt) {
                        gw[8 * j] = acc[j][0];
                        gw[8 * j + 1] = acc[j][1];
                        gw[8 * j + 8 * ldg] = acc[j][2];
                        gw[8 * j + 8 * ldg + 1] = acc[j][3];
                    }
            }
            // the band's window rows (those the task owns) and their row taps
            const int ht0 = max(hw, pb * sh - pt), ht1 = min(h1 - 1, (pe - 1) * sh - pt + (kh - 1) * dh);
            for (int r = t; r <= ht1 - ht0; r += FOLD_THREADS) {
                int* rt_ = rowtab + r * (rv + 1);
                rt_[0] = fold_taps(rt_ + 1, ht0 + r, pt, kh, dh, sh, pb, pe - 1, qw * ldg, kw * Cg, rv);
            }
            __syncthreads();
            if (hg < groups_h && wo < twe) switch (Cg) {  // uniform
                case 1: fold_band<1>(win, gs, coltab + wo * (sv + 1), rowtab, rv, ht0, ht1, hg, groups_h, wr, tw, wo); break;
                case 2: fold_band<2>(win, gs, coltab + wo * (sv + 1), rowtab, rv, ht0, ht1, hg, groups_h, wr, tw, wo); break;
                case 3: fold_band<3>(win, gs, coltab + wo * (sv + 1), rowtab, rv, ht0, ht1, hg, groups_h, wr, tw, wo); break;
                default: fold_band<4>(win, gs, coltab + wo * (sv + 1), rowtab, rv, ht0, ht1, hg, groups_h, wr, tw, wo);
            }
            tend = max(tend, ht1);
            __syncthreads();
            // rows below pe*sh - pt are complete: no later band reaches them
            const int hnew = band + 1 == bands ? h1 : min(h1, max(hw, pe * sh - pt));
            if (hg < groups_h && wo < twe)
                for (int c = 0; c < Cg; ++c)
                    for (int h = hw + hg; h < hnew; h += groups_h) {
                        float* cell = win + (c * wr + (h & (wr - 1))) * tw + wo;
                        const bool held = h <= tend;
                        dxg[c * HW + (long long)h * W + w0 + wo] = held ? *cell : 0.f;
                        if (held) *cell = 0.f;
                    }
            hw = hnew;
        }
        if (steps == 0 && hg < groups_h && wo < twe)  // no dy pixel reaches the task: zeros
            for (int c = 0; c < Cg; ++c)
                for (int h = h0 + hg; h < h1; h += groups_h) dxg[c * HW + (long long)h * W + w0 + wo] = 0.f;
    }
}

// ------------------------------------------------------------ entry points

#if TC_AVAILABLE
#define CONV2D_FOLD(NT)                                                                                          \
    extern "C" __global__ void __launch_bounds__(FOLD_THREADS, 1) conv2d_fold_backward_data_tf32_n##NT##_f32(   \
        const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, GEOM, int tw, int th, \
        int bp, int wr, int sv, int rv) {                                                                        \
        extern __shared__ __align__(16) unsigned char fold_smem[];                                              \
        fold_backward_data<NT>(reinterpret_cast<float*>(fold_smem), dy, w, dx, GEOM_ARGS, tw, th, bp, wr, sv, rv); \
    }
CONV2D_FOLD(8)
CONV2D_FOLD(16)
CONV2D_FOLD(24)
#endif
