// conv2d_fold.cu: the backward-data of convolutions with few channels a group
// (stems: C = 3; deepspeech: C = 1) on tensor cores, in the math mode "tf32"
// (gpucnn/cuda/algo.py's "fold" family). Seed §4.7 (backward for the
// supervision signal) writes it as dX = φ⁻¹(dY Fᵀ): first the GEMM
// G = dY Fᵀ (a row per dy pixel, a column per (channel, tap)), then the
// reverse operator φ⁻¹ (col2im: every dx pixel sums the G entries of the taps
// whose windows held it). Here both run on chip: G is a tensor-core GEMM
// whose columns are the Cg*kh*kw taps in 8-wide MMA tiles (147 for a 3-channel
// 7x7 stem: 19 tiles, 97% live), and φ⁻¹ adds G into a window of dx rows held in
// shared memory. The implicit GEMMs instead put the Cg channels on the MMA's
// rows (3 of 16 live) and FFMA kernels (conv2d_strip.cu, depthwise.cu's
// window) cannot reach cuDNN's TF32 rate.
//
// Kernels (float only; the tensor cores round each operand to TF32 once):
//   conv2d_fold_backward_data_tf32_n{NT}_f32(const float* dy, const float* w, float* dx, GEOM,
//                                            int tw, int th, int bp, int wr, int sv, int rv)
//        dy: (N,K,P,Q)  w: (K,Cg,kh,kw)  dx: (N,C,H,W); NT: the taps' 8-wide MMA tiles it holds
//        (8, 16, 24: up to 64, 128, 192 taps). Dynamic shared memory: FoldSmem's total words
//        (gpucnn/cuda/fold.py's smem_bytes mirrors it).
//   conv2d_fold_backward_data_wgmma_n{NT}_f32(the same arguments)
//        The same on sm_90a with Hopper's warpgroup MMA (fold_wgmma: two warpgroups of 64 pixels,
//        wgmma m64nNk8 from shared memory) instead of mma.sync; 1024 more bytes of shared memory.
//
// A task is (image, group, segment of th dx rows, tile of tw dx columns); a
// block loops over tasks (any grid is correct). For its tile the task needs dy
// columns [qlo, qhi] (qw <= FOLD_PIX of them) and, for its segment, dy rows
// [plo, phi]: it walks them in bands of bp rows (bp * qw <= FOLD_PIX pixels):
//   1. G[pixel][tap] = sum over the group's filters k of dy[k][pixel] w[k][tap]:
//      8 warps, each 16 pixels (one m16 tile) x all tap tiles, k in chunks of
//      FOLD_KC through a 2-stage cp.async pipeline (the next chunk, or the next
//      band's first, is in flight during this one's MMAs and the fold); w is
//      resident in shared memory for the task, rounded to TF32 once. Two blocks
//      an SM where registers and shared memory allow (8 and 16 tap tiles on
//      sm_90): one's fold then runs beside the other's MMAs.
//   2. Fold: each dx pixel of the window rows the band reaches adds the G
//      entries of its taps (row offsets a band, column offsets a task, from
//      tables, in bytes), all Cg channels at once (taps are (r, s, c), channel
//      fastest), in a fixed order.
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

// A task's place: image n, group g, dx rows [h0, h1) and columns [w0, w0 + twe), and the dy rows
// [plo, phi] and columns [qlo, qlo + qw) whose windows reach them, walked in bands of bpt rows;
// hw: its next row to store, tend: the last row a band reached. Thread 0 keeps it in shared
// memory, where the band's end reads it after a barrier: the fold and the stores then hold none
// of it in registers across the MMAs (conv2d_fold_backward_data_tf32_n16's 128 registers for two
// blocks an SM).
struct FoldTask {
    int n, g, h0, h1, w0, twe, plo, phi, qlo, qw, bpt, bands, hw, tend;
    __device__ FoldTask(int task, GEOM, int tw, int th, int bp) {
        const int tiles_w = (W + tw - 1) / tw, segs = (H + th - 1) / th, ct = task % tiles_w;
        const int seg = task / tiles_w % segs;
        g = task / tiles_w / segs % G;
        n = task / tiles_w / segs / G;
        h0 = seg * th, h1 = min(H, h0 + th), w0 = ct * tw, twe = min(W, w0 + tw) - w0;
        // dy rows and columns whose windows reach the task's dx rows and columns (ceilings of
        // possibly negative numerators made positive first)
        plo = max(0, (h0 + pt - (kh - 1) * dh + sh - 1 + sh * kh * dh) / sh - kh * dh);
        phi = min(P - 1, (h1 - 1 + pt) / sh);
        qlo = max(0, (w0 + pl - (kw - 1) * dw + sw - 1 + sw * kw * dw) / sw - kw * dw);
        qw = min(Q - 1, (w0 + twe - 1 + pl) / sw) - qlo + 1;
        bpt = qw > 0 ? min(bp, FOLD_PIX / qw) : 1;
        bands = qw > 0 && phi >= plo ? (phi - plo + bpt) / bpt : 0;
        hw = h0, tend = h0 - 1;
    }
};
#define FOLD_TASK_WORDS 16  // sizeof(FoldTask) / 4, rounded up

// The shared-memory layout, in 4-byte words, from the launch's sizes (fold.py's smem_bytes mirrors it).
struct FoldSmem {
    int ws, ds, gs, win, coltab, rowtab, task, total;
    __device__ FoldSmem(int kch, int nr, int ldg, int Cg, int wr, int tw, int sv, int rv) {
        ws = 0;                                  // w: kch chunks x nr taps x FOLD_KC (tc_swz), TF32
        ds = ws + kch * nr * FOLD_KC;            // dy: 2 stages x FOLD_PIX pixels x FOLD_KC (tc_swz)
        gs = ds + 2 * FOLD_PIX * FOLD_KC;        // G: FOLD_PIX pixels x ldg
        win = gs + FOLD_PIX * ldg;               // window: Cg x wr rows x tw
        coltab = win + Cg * wr * tw;             // per column: count, then sv offsets (ints)
        rowtab = coltab + tw * (sv + 1);         // per window row of a band: count, then rv offsets
        task = rowtab + wr * (rv + 1);           // the task (FoldTask) and the stores' progress
        total = task + FOLD_TASK_WORDS;
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
// conflicts); pixels past npx and k past Kg are zero-filled from a valid element. A lane copies
// filters k0 + lane / 8 + 4 quad of two pixels: one source pointer each, stepped by 4 filters.
__device__ __forceinline__ void fold_fetch(float* ds, const float* __restrict__ dyg, int PQ, int Q, int pb,
                                           int qlo, const FastDiv& qw, int npx, int k0, int Kg) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, kq = lane / 8;
#pragma unroll
    for (int j = 0; j < FOLD_PIX / 64; ++j) {
        const int px = (warp + 8 * j) * 8 + lane % 8;
        int pc = 0, pr = 0;
        if (px < npx) pc = qw.divmod(px, pr);
        // quads below live copy: the pixel is in the band and the filter in the group
        const int live = px < npx ? min(FOLD_KC / 4, (Kg - k0 - kq + 3) / 4) : 0;
        const float* src = live > 0 ? dyg + (long long)(pb + pr) * Q + qlo + pc + (long long)(k0 + kq) * PQ : dyg;
        float* dst = ds + px * FOLD_KC + kq;  // tc_swz(px, 4 quad + kq): chunk quad ^ (px % 8)
        if (live == FOLD_KC / 4) {  // every copy live (Kg a multiple of FOLD_KC, the band's pixels)
#pragma unroll
            for (int quad = 0; quad < FOLD_KC / 4; ++quad, src += 4 * PQ) cp_async<4>(dst + ((quad ^ (px & 7)) << 2), src, 4);
        } else {
#pragma unroll
            for (int quad = 0; quad < FOLD_KC / 4; ++quad) {
                cp_async<4>(dst + ((quad ^ (px & 7)) << 2), src, quad < live ? 4 : 0);
                if (quad + 1 < live) src += 4 * PQ;  // stays an element: the last live copy's source
            }
        }
    }
}

// acc[j] += dy's 16 pixels of this warp x w's tap tile j, over one chunk, for the NP pairs of
// tiles j < 2 NP, the last pair's second tile left out when ODD (its ldmatrix.x2: lanes 0-15's
// addresses, matrices k +0/+4 of the pair's first tile, as the x4's first two).
template <int NP, bool ODD, int NT>
__device__ __forceinline__ void fold_mma_pairs(const float* ds, const float* wsk, float (&acc)[NT][4]) {
    if constexpr (NP <= NT / 2) {
        const int lane = threadIdx.x % 32, q = lane / 8, r8 = lane % 8;
        const int oa = 4 * tc_swz(threadIdx.x / 32 * 16 + (q % 2) * 8 + r8, (q / 2) * 4);  // as tc_warp_step
        const int ob = 4 * tc_swz(q / 2 * 8 + r8, (q % 2) * 4);
        const char* const ab = reinterpret_cast<const char*>(ds);
        const char* const bb = reinterpret_cast<const char*>(wsk);
#pragma unroll
        for (int k8 = 0; k8 < FOLD_KC / 8; ++k8) {
            unsigned a[4];
            ldmatrix<4, false>(a, ab + (oa ^ (k8 << 5)));
#pragma unroll
            for (int j = 0; j < 4; ++j) a[j] = tf32_rn(__uint_as_float(a[j]));
#pragma unroll
            for (int p = 0; p < NP; ++p) {  // pair p's rows lie 16 p further: bits above the swizzle's
                const char* row = bb + (ob ^ (k8 << 5)) + p * 16 * FOLD_KC * 4;
                if (ODD && p == NP - 1) {
                    unsigned b0[2];
                    ldmatrix<2, false>(b0, row);
                    mma_tf32(acc[2 * p], a, b0, acc[2 * p]);
                } else {
                    unsigned b[4];
                    ldmatrix<4, false>(b, row);
                    const unsigned b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
                    mma_tf32(acc[2 * p], a, b0, acc[2 * p]);
                    mma_tf32(acc[2 * p + 1], a, b1, acc[2 * p + 1]);
                }
            }
        }
    }
}

// The same for the launch's nt tiles, as one of NT unrolled loops chosen once a chunk: a test a
// pair and k-slice cost ~4 instructions (uniform compare, predicate, branch, alignment NOP: 128
// of the 16-tile kernel's 484 a step, sm_90), a switch a k-slice ~30 (a jump table's dispatch).
#define FOLD_TILES_CASE(NP)                                   \
    case 2 * NP: fold_mma_pairs<NP, false>(ds, wsk, acc); break; \
    case 2 * NP - 1: fold_mma_pairs<NP, true>(ds, wsk, acc); break;
template <int NT>
__device__ __forceinline__ void fold_mma(const float* ds, const float* wsk, int nt, float (&acc)[NT][4]) {
    switch (nt) {  // uniform: nt is the launch's
        FOLD_TILES_CASE(12) FOLD_TILES_CASE(11) FOLD_TILES_CASE(10) FOLD_TILES_CASE(9) FOLD_TILES_CASE(8)
        FOLD_TILES_CASE(7) FOLD_TILES_CASE(6) FOLD_TILES_CASE(5) FOLD_TILES_CASE(4) FOLD_TILES_CASE(3)
        FOLD_TILES_CASE(2) FOLD_TILES_CASE(1)
    }
}

// The same on Hopper's warpgroup MMA (sm_90a): warpgroup wg (warps 4 wg .. 4 wg + 3) takes the
// chunk's pixels 64 wg .. 64 wg + 63 against all nt tap tiles, in chunks of up to 8 tiles (one
// wgmma m64nNk8, N = 64 or the tail's 8 nt'), for each of the chunk's 4 k-slices; dy and w are read
// from shared memory through descriptors (their tc_swz rows are the 128-byte swizzle's layout, the
// stages and w's chunks 1024-byte aligned: FoldSmem on an aligned base). Warp w's accumulators of
// tile j are the same registers as fold_mma's acc[j] (mma.cuh's table: d[4j + i] of a chunk). The
// operands must be TF32 in shared memory (wgmma drops an fp32 value's 13 low bits): w is rounded
// at its load, dy by fold_round_stage. Waits for its own wgmma before returning.
template <int NT>
__device__ __forceinline__ void fold_wgmma(const float* ds, const float* wsk, int nt, float (&acc)[NT][4]) {
    // 32-bit shared addresses, a chunk's descriptors built from them (four 64-bit descriptors held
    // across the chunks cost the 16-tile kernel a spill at 128 registers; built at each wgmma, 14
    // instructions apiece)
    const unsigned sa = smem_addr(ds + threadIdx.x / 128 * 64 * FOLD_KC), sb = smem_addr(wsk);
    float(&flat)[NT * 4] = *reinterpret_cast<float(*)[NT * 4]>(&acc[0][0]);
    wgmma_fence();
#pragma unroll
    for (int c = 0; c < NT / 8; ++c) {
        float(&d)[32] = *reinterpret_cast<float(*)[32]>(&acc[8 * c][0]);
        // chunk c: 64 tap rows (8 KiB) further
        const unsigned long long da = wgmma_desc_sw128_at(sa), db = wgmma_desc_sw128_at(sb + c * 64 * FOLD_KC * 4);
        // its 4 k-slices (32 bytes into each row apiece) under one switch over its tile count
#define FOLD_WG(T)                                                                                      \
    case T:                                                                                             \
        for (int k8 = 0; k8 < FOLD_KC / 8; ++k8)  /* +2: 32 bytes, in the descriptors' address field */ \
            wgmma_tf32<8 * T>(*reinterpret_cast<float(*)[4 * T]>(&d[0]), da + 2 * k8, db + 2 * k8, 1);  \
        break;
        switch (min(8, nt - 8 * c)) {  // tiles left: uniform
            FOLD_WG(8) FOLD_WG(7) FOLD_WG(6) FOLD_WG(5) FOLD_WG(4) FOLD_WG(3) FOLD_WG(2) FOLD_WG(1)
            default: break;
        }
#undef FOLD_WG
    }
    wgmma_commit();
    wgmma_wait<0>(flat);
}

// dy's stage rounded to TF32 in place (tc_round_words), then made visible to the wgmma's reads
// (the caller's barrier follows).
__device__ __forceinline__ void fold_round_stage(float* ds) {
    tc_round_words<TC_TF32, FOLD_PIX * FOLD_KC, FOLD_THREADS, 1>(ds);  // a vector at a time: the band's accumulators are live
    fence_proxy_async();
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

// v[c] += G[row offset + column offset + c] over a cell's taps (the tables hold byte offsets: one
// add an address), column taps outer, in table order (fixed: the bits depend on the shapes only).
// RV row taps (1 to 4: stems and deepspeech meet at most 4 a band) run unrolled with their
// offsets in registers: a tap is an address add, then an LDS and an FADD a channel; more run the
// same sums in a loop.
template <int CB, int RV>
__device__ __forceinline__ void fold_taps_rv(float (&v)[CB], const char* gs, const int* ct, int ncol, const int* rt) {
    int ro[RV];
#pragma unroll
    for (int i = 0; i < RV; ++i) ro[i] = rt[i];
#pragma unroll 1  // a stem's 3 or 4 column taps: unrolled by 4, ptxas's remainder ladder cost more than the loop
    for (int j = 0; j < ncol; ++j) {
        const char* gc = gs + ct[j];
#pragma unroll
        for (int i = 0; i < RV; ++i)
#pragma unroll
            for (int c = 0; c < CB; ++c) v[c] += reinterpret_cast<const float*>(gc + ro[i])[c];
    }
}
template <int CB>
__device__ __forceinline__ void fold_cell(float (&v)[CB], const char* gs, const int* ct, int ncol, const int* rt,
                                          int nrow) {
    switch (nrow) {  // uniform in a warp whose lanes share a row (tw >= 32)
        case 0: return;
        case 1: fold_taps_rv<CB, 1>(v, gs, ct, ncol, rt); return;
        case 2: fold_taps_rv<CB, 2>(v, gs, ct, ncol, rt); return;
        case 3: fold_taps_rv<CB, 3>(v, gs, ct, ncol, rt); return;
        case 4: fold_taps_rv<CB, 4>(v, gs, ct, ncol, rt); return;
    }
    for (int j = 0; j < ncol; ++j) {
        const char* gc = gs + ct[j];
        for (int i = 0; i < nrow; ++i)
#pragma unroll
            for (int c = 0; c < CB; ++c) v[c] += reinterpret_cast<const float*>(gc + rt[i])[c];
    }
}

// The fold of one band for the thread's column: window rows ht0 + r (r = hg, hg + groups_h, ...),
// each of its CB channels (fold_cell).
template <int CB>
__device__ __forceinline__ void fold_band(float* win, const float* gs, const int* ct, const int* rowtab, int rv,
                                          int ht0, int ht1, int hg, int groups_h, int wr, int tw, int wo) {
    const int ncol = ct[0];
    for (int r = hg; r <= ht1 - ht0; r += groups_h) {
        const int* rt = rowtab + r * (rv + 1);
        float* cell = win + ((ht0 + r) & (wr - 1)) * tw + wo;
        float v[CB];
#pragma unroll
        for (int c = 0; c < CB; ++c) v[c] = cell[c * wr * tw];
        fold_cell<CB>(v, reinterpret_cast<const char*>(gs), ct + 1, ncol, rt + 1, rt[0]);
#pragma unroll
        for (int c = 0; c < CB; ++c) cell[c * wr * tw] = v[c];
    }
}

// The task's dx rows [from, to) in this thread's column (wo = t % tw, rows hg = t / tw apart by
// groups_h): the window's value for rows a band reached (h <= tend), zeroed after, zero for the rest.
__device__ __forceinline__ void fold_store_rows(float* __restrict__ dx, float* win, const FoldTask& T, int from,
                                                int to, int tend, GEOM, int tw, int wr) {
    const int Cg = C / G, wo = threadIdx.x % tw, hg = threadIdx.x / tw, groups_h = max(1, FOLD_THREADS / tw);
    if (hg >= groups_h || wo >= T.twe) return;
    float* dxg = dx + ((long long)T.n * C + T.g * Cg) * H * W + T.w0 + wo;
    for (int c = 0; c < Cg; ++c)
        for (int h = from + hg; h < to; h += groups_h) {
            float* cell = win + (c * wr + (h & (wr - 1))) * tw + wo;
            const bool held = h <= tend;
            dxg[(long long)c * H * W + (long long)h * W] = held ? *cell : 0.f;
            if (held) *cell = 0.f;
        }
}

// The end of band [pb, pe) of the task in shared memory: the band's window rows (those the task
// owns) and their row taps, then the fold (its Cg channels), then the rows no later band reaches
// stored and zeroed in the window. Every thread calls it (barriers).
__device__ __forceinline__ void fold_band_end(float* sm, const FoldSmem& L, float* __restrict__ dx, GEOM, int tw,
                                              int wr, int sv, int rv, int ldg, int pb, int pe) {
    FoldTask* ts = reinterpret_cast<FoldTask*>(sm + L.task);
    const FoldTask T = *ts;  // read before the barriers below, after which thread 0 updates it
    const int Cg = C / G, t = threadIdx.x, wo = t % tw, hg = t / tw, groups_h = max(1, FOLD_THREADS / tw);
    int* rowtab = reinterpret_cast<int*>(sm + L.rowtab);
    float* win = sm + L.win;
    const int ht0 = max(T.hw, pb * sh - pt), ht1 = min(T.h1 - 1, (pe - 1) * sh - pt + (kh - 1) * dh);
    for (int r = t; r <= ht1 - ht0; r += FOLD_THREADS) {
        int* rt_ = rowtab + r * (rv + 1);
        rt_[0] = fold_taps(rt_ + 1, ht0 + r, pt, kh, dh, sh, pb, pe - 1, 4 * T.qw * ldg, 4 * kw * Cg, rv);
    }
    __syncthreads();
    if (hg < groups_h && wo < T.twe) {
        const float* gs = sm + L.gs;
        const int* ct = reinterpret_cast<const int*>(sm + L.coltab) + wo * (sv + 1);
        switch (Cg) {  // uniform
            case 1: fold_band<1>(win, gs, ct, rowtab, rv, ht0, ht1, hg, groups_h, wr, tw, wo); break;
            case 2: fold_band<2>(win, gs, ct, rowtab, rv, ht0, ht1, hg, groups_h, wr, tw, wo); break;
            case 3: fold_band<3>(win, gs, ct, rowtab, rv, ht0, ht1, hg, groups_h, wr, tw, wo); break;
            default: fold_band<4>(win, gs, ct, rowtab, rv, ht0, ht1, hg, groups_h, wr, tw, wo);
        }
    }
    const int tend = max(T.tend, ht1);
    __syncthreads();
    // rows below pe*sh - pt are complete: no later band reaches them
    const bool last = pb + T.bpt > T.phi;  // the task's last band
    const int hnew = last ? T.h1 : min(T.h1, max(T.hw, pe * sh - pt));
    fold_store_rows(dx, win, T, T.hw, hnew, tend, GEOM_ARGS, tw, wr);
    if (t == 0) ts->hw = hnew, ts->tend = tend;  // read again after the next band's barriers
}

template <int NT, bool WG>
__device__ void fold_backward_data(float* sm, const float* __restrict__ dy, const float* __restrict__ w,
                                   float* __restrict__ dx, GEOM, int tw, int th, int bp, int wr, int sv, int rv) {
    const int Cg = C / G, Kg = K / G, taps = Cg * kh * kw;  // taps: G's columns
    const int nt = (taps + 7) / 8, nr = (nt + 1) / 2 * 16, ldg = nr + 1;  // w's rows: whole pairs; ldg odd: the fold's lanes spread
    const int kch = (Kg + FOLD_KC - 1) / FOLD_KC;
    const FoldSmem L(kch, nr, ldg, Cg, wr, tw, sv, rv);
    float *ws = sm + L.ws, *ds = sm + L.ds, *gs = sm + L.gs;
    const int t = threadIdx.x, warp = t / 32, lane = t % 32;
    const int PQ = P * Q;  // fits: conv.py checks element counts against int
    for (int task = blockIdx.x; task < N * G * ((H + th - 1) / th) * ((W + tw - 1) / tw); task += gridDim.x) {
        const FoldTask T(task, GEOM_ARGS, tw, th, bp);
        const int steps = T.bands * kch;
        const FastDiv qdiv(max(T.qw, 1));
        const float* dyg = dy + ((long long)T.n * K + T.g * Kg) * (long long)PQ;
        __syncthreads();  // the previous task's last stores read the window and the task
        if (t == 0) *reinterpret_cast<FoldTask*>(sm + L.task) = T;
        fold_load_w(ws, w, T.g, Kg, kch, Cg, kh * kw, nr);
        for (int e = t; e < Cg * wr * tw; e += FOLD_THREADS) sm[L.win + e] = 0.f;
        for (int x = t; x < T.twe; x += FOLD_THREADS) {
            int* ct = reinterpret_cast<int*>(sm + L.coltab) + x * (sv + 1);
            ct[0] = fold_taps(ct + 1, T.w0 + x, pl, kw, dw, sw, T.qlo, T.qlo + T.qw - 1, 4 * ldg, 4 * Cg, sv);  // bytes
        }
        if (steps > 0) {
            fold_fetch(ds, dyg, PQ, Q, T.plo, T.qlo, qdiv, min(T.bpt, T.phi - T.plo + 1) * T.qw, 0, Kg);
            cp_async_commit();
        }
        for (int band = 0; band < T.bands; ++band) {
            const int pb = T.plo + band * T.bpt, pe = min(T.phi + 1, pb + T.bpt), npx = (pe - pb) * T.qw;
            float acc[NT][4];  // scoped to the band: dead during the fold, whose registers it leaves free
#pragma unroll
            for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
            for (int kc = 0; kc < kch; ++kc) {
                const int s = band * kch + kc;
                cp_async_wait<0>();
                __syncthreads();  // step s landed for all; step s - 1's MMAs and the last band's end are done
                if (WG) {
                    fold_round_stage(ds + (s % 2) * FOLD_PIX * FOLD_KC);
                    __syncthreads();
                }
                if (s + 1 < steps) {  // the next step: this band's next chunk, or the next band's first
                    const int pn = kc + 1 < kch ? pb : pb + T.bpt;
                    fold_fetch(ds + ((s + 1) % 2) * FOLD_PIX * FOLD_KC, dyg, PQ, Q, pn, T.qlo, qdiv,
                               (min(T.phi + 1, pn + T.bpt) - pn) * T.qw, kc + 1 < kch ? (kc + 1) * FOLD_KC : 0, Kg);
                    cp_async_commit();
                }
                if (WG) {
                    if (warp / 4 * 64 < npx) fold_wgmma<NT>(ds + (s % 2) * FOLD_PIX * FOLD_KC, ws + kc * nr * FOLD_KC, nt, acc);
                } else if (warp * 16 < npx) {
                    fold_mma<NT>(ds + (s % 2) * FOLD_PIX * FOLD_KC, ws + kc * nr * FOLD_KC, nt, acc);
                }
            }
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
            fold_band_end(sm, L, dx, GEOM_ARGS, tw, wr, sv, rv, ldg, pb, pe);
        }
        if (steps == 0)  // no dy pixel reaches the task: zeros
            fold_store_rows(dx, sm + L.win, T, T.h0, T.h1, T.h0 - 1, GEOM_ARGS, tw, wr);
    }
}

// ------------------------------------------------------------ entry points

// Before sm_80 (no TF32 mma.sync) the entry points exist and trap: gpucnn.cuda.fold.ok never
// launches them there (compute capability < 80); the wgmma ones likewise everywhere but sm_90a
// (gpucnn.runtime.loader builds this family for sm_90a on compute capability 9.0, fold.plan takes
// them there). Their shared memory starts at the first 1024-byte boundary of the dynamic shared
// memory (wgmma's swizzle is of shared-window addresses; fold.py's smem_bytes adds the 1024).
#if TC_AVAILABLE
#define FOLD_BODY(NT) \
    fold_backward_data<NT, false>(reinterpret_cast<float*>(fold_smem), dy, w, dx, GEOM_ARGS, tw, th, bp, wr, sv, rv);
#else
#define FOLD_BODY(NT) __trap();
#endif
#if WGMMA_AVAILABLE
#define FOLD_WG_BODY(NT)                                                                                        \
    fold_backward_data<NT, true>(reinterpret_cast<float*>(wgmma_align(fold_smem)), dy, w, dx, GEOM_ARGS, tw, th, \
                                 bp, wr, sv, rv);
#else
#define FOLD_WG_BODY(NT) __trap();
#endif
#define CONV2D_FOLD(NAME, BODY, NT, BLOCKS)                                                                       \
    extern "C" __global__ void __launch_bounds__(FOLD_THREADS, __CUDA_ARCH__ >= 900 ? (BLOCKS) : 1)            \
    conv2d_fold_backward_data_##NAME##_n##NT##_f32(const float* __restrict__ dy, const float* __restrict__ w,   \
                                                   float* __restrict__ dx, GEOM, int tw, int th, int bp, int wr, \
                                                   int sv, int rv) {                                           \
        extern __shared__ __align__(16) unsigned char fold_smem[];                                              \
        BODY(NT)                                                                                                \
    }
// BLOCKS an SM to fit registers for on sm_90 (gpucnn/cuda/fold.py's REG_BLOCKS): two where the taps'
// accumulators (4 NT registers) leave room under 128 registers (16 tiles: 64, with no spill), so one
// block's MMAs run beside the other's fold where the shared memory holds both (deepspeech: 2 x 105
// KiB). sm_80's ptxas spills at 128 registers: one there, as tc_gemm.cuh's TC_KERNEL.
CONV2D_FOLD(tf32, FOLD_BODY, 8, 2)
CONV2D_FOLD(tf32, FOLD_BODY, 16, 2)
CONV2D_FOLD(tf32, FOLD_BODY, 24, 1)
CONV2D_FOLD(wgmma, FOLD_WG_BODY, 8, 2)
CONV2D_FOLD(wgmma, FOLD_WG_BODY, 16, 2)
CONV2D_FOLD(wgmma, FOLD_WG_BODY, 24, 1)
