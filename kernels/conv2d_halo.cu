// conv2d_halo.cu: the forward and backward-data of 3x3 convolutions at stride
// and dilation 1 (cifar-resnet, resnet-3x3, vgg) on tensor cores, in the math
// modes "tf32" and "3xtf32" (gpucnn/cuda/algo.py's "halo" family, and on sm_90 its
// warpgroup variant "halowg": the _wg_ kernels below).
//
// Kernels (float only):
//   conv2d_halo_weights_{tf32,3xtf32}_f32(const float* w, float* wt, int K, int C, int kblocks, int steps,
//                                          int flip)
//        w: (K,C,3,3) -> wt: (kblocks, steps, 9 taps, PARTS, 4 m16 tiles, 32 lanes, 4): each
//        tap's A fragments of HALO_BM filters x HALO_CK channels in mma.sync's register order,
//        rounded to TF32 (PARTS = 1), or split big + small (3xTF32: PARTS = 2); zeros past K and C.
//        flip: w is (C,K,3,3) and filter f's tap (r, s) of channel c is w[c, f, 2 - r, 2 - s]
//        (backward-data: dx is the forward of dy by the filters transposed and rotated, the
//        seed's reverse operator as a convolution, at padding 2 - pad: gpucnn/cuda/halo.py).
//   conv2d_halo_forward_{tf32,3xtf32}_f32(const float* x, const float* wt, const float* b, float* y,
//                                          GEOM, int th, int tw, int hws, int cs, int flags)
//        x: (N,C,H,W)  y: (N,K,P,Q); b read with EPI_BIAS, ReLU with EPI_RELU (common.cuh).
//        th x tw: the output tile (th * tw <= HALO_BN, tw a multiple of 4); hws, cs: a halo
//        row's and a channel's words in shared memory (gpucnn/cuda/halo.py's plan computes them
//        and the dynamic shared memory, HaloCfg::STAGES stages of halo_stage_words).
//   conv2d_halo_{weights,forward}_wg_{tf32,3xtf32}_f32: the same arguments, on wgmma (sm_90a;
//        elsewhere they trap): the weights kernel lays each tap's 64 filters x 8 channels out as
//        wgmma's B, K-major without swizzle (8-filter groups of two 128-byte core matrices, the
//        channels' halves), the same 512 words a tap and part; the forward kernel's warpgroup
//        takes the tile's 128 pixels as two m64 halves of D = pixels x filters, A (pixels x
//        channels) from registers loaded from the halo as the mma.sync kernel's B fragments are
//        (mma.sync's A layout is wgmma's), and per tap two m64n64k8 (six in 3xTF32) in one commit
//        group, the next tap's A loaded while they run (at most two taps in flight: the A
//        registers belong to the instruction until its wait). Same tasks, copies, stages, plan.
//        sm_90a SASS: a warp's step issues 440 instructions (the 16-byte copies' side) for 18
//        HGMMA: two blocks' steps 880 SM clocks of issue against 1152 of tensor work at the dense
//        TF32 rate (tensor-bound), where the mma.sync kernel's (532 for 144 HMMA) take ~2300 at
//        mma.sync's half of that rate.
//
// Why: the implicit GEMM (conv2d.cu) gathers φ(x) element by element, a 4-byte
// cp.async per tap and pixel, 9 per input value for a 3x3 filter (NCHW has no
// 16-byte runs along the taps). Here a block's task is (image, th x tw output
// pixels, HALO_BM filters); per step of HALO_CK channels it copies the input
// rows its window covers (th + 2 rows of tw + 8 columns, the halo) once, in
// 16-byte cp.async copies, and each tap (r, s) reads the same shared rows
// shifted by r rows and s columns: the B fragment of tap (r, s) for pixel
// (i, j) is halo[c][i + r][j + s + off]. A fragments come from wt, laid out
// by the weights kernel so that one 16-byte shared load gives a thread its
// four A registers. Per step a block does 64 x 128 x 72 MACs (576 m16n8k8
// MMAs; 3 x that in 3xTF32) from 9 (18) 16-byte weight copies and <= 8 input
// copies a thread; the wide GEMM tile (64 x 128 x 32 a k-step, 128 threads)
// gathers 72 4-byte elements and copies 9 16-byte runs a thread for as many.
//
// Cost, before any GPU run (sm_90 SASS, bench/results/static-sm90.md): the
// step loop a warp issues 532 instructions (373 common, 159 of the 16-byte
// copies' side; 668 before session 25's leaner copies) for 144 HMMA (432 in
// 3xTF32, of 1031 issued); at mma.sync's half of the TF32 peak a block's step
// is ~1150 SM clocks of MMAs against ~530 of issue: tensor-bound, as the GEMM
// tile was not (ncu: L1 70% busy).
// The emulator's L1 count (bench/results/static-traffic.md) puts resnet-3x3's
// launch at 18.3 us of L1 work (the wide tile's 28.7; it took 51.8): its
// shared loads are the bound after the MMAs, 1.5 wavefronts an MMA (a warp's
// 4 A fragments of 64 filters and 4 B fragments a tap: 16 + 8 for 16 MMAs).
// Expected on an H200 (cifar-resnet, 9.66 GFLOP, 1024 tasks of 8 steps, 2
// blocks an SM: 3.9 waves): 40 us of MMAs at half the peak, 60-75 us with
// the waves' tail and the epilogue, where the GEMM tile took 150 and cuDNN
// 108-127 in tf32; the warpgroup variant (below), at the full dense rate,
// 20 us of MMAs, 30-45 us in all.
//
// Warps: 4, each all 64 filters x 32 pixels (4 m16 x 4 n8 tiles, 64
// accumulators); per tap a warp loads 4 LDS.128 (A) and 8 LDS.32 (B) for 16
// MMAs. Banks: B loads of a warp read channels t = lane % 4 (+4) and 8
// neighbouring pixels g = lane / 4: channel stride cs = 8 or 24 mod 32 words
// puts the 32 lanes on 32 banks where a fragment's 8 pixels share a row (tw a
// multiple of 8). Pipeline: HaloCfg::STAGES stages, one barrier a step (as
// tc_gemm.cuh's tc_tile). Columns: the halo's first column is the 4-aligned
// one at or before q0 - pl, so every copy is a whole 16-byte group inside a
// row (W a multiple of 4) or outside it (zero fill from x's first element:
// the source is always an element of x). Reads only elements of x and wt,
// writes only y's (a pixel past P, Q or the tile, a filter past K: not
// stored). Deterministic: each output's 9 x C products are summed in a fixed
// order (channels by steps, taps in order, within an MMA as the hardware does).
#include "common.cuh"
#include "gemm.cuh"
#include "tc_gemm.cuh"
#include "conv.cuh"

#define HALO_THREADS 128
#define HALO_BM 64     // filters a block
#define HALO_BN 128    // output pixels a block: th * tw
#define HALO_CK 8      // channels a step: one k8 MMA a tap
#define HALO_KH 3
#define HALO_KW 3
#define HALO_TAPS (HALO_KH * HALO_KW)
#define HALO_XCOPY 8   // 16-byte input copies a thread a step, at most (halo.py's plan keeps to it)
#define HALO_WFRAG 512 // words of a tap's A fragments: 4 m16 tiles x 32 lanes x 4

template <int MODE> struct HaloCfg {
    enum {
        PARTS = MODE == TC_3XTF32 ? 2 : 1,  // big (and small) parts of the weights
        STAGES = MODE == TC_3XTF32 ? 2 : 3,  // 2 x 44.8 or 3 x 26.4 KB for cifar-resnet: 2 blocks an SM
        WW = HALO_TAPS * PARTS * HALO_WFRAG  // a stage's weight words (first in the stage)
    };
};

template <int MODE, bool WG>
__device__ void halo_weights(const float* __restrict__ w, float* __restrict__ wt, int K, int C, int kblocks,
                             int steps, int flip) {
    enum { PARTS = HaloCfg<MODE>::PARTS };
    const long long total = (long long)kblocks * steps * HALO_TAPS * PARTS * HALO_WFRAG;
    GRID_STRIDE_LOOP(e, total) {
        const int j = (int)(e & 3), lane = (int)(e >> 2) & 31, mi = (int)(e >> 7) & 3;
        // a0 (row g, k t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4); g = lane / 4, t = lane % 4.
        // WG: wgmma's B, K-major without swizzle: word e of 512 is filter (e >> 6) * 8 + (e >> 2) % 8,
        // channel (e >> 5) % 2 * 4 + e % 4 (8-filter groups 256 bytes apart, k-halves 128).
        const int fi = WG ? (int)(e >> 6 & 7) * 8 + (int)(e >> 2 & 7) : mi * 16 + lane / 4 + 8 * (j & 1);
        const int ci = WG ? (int)(e >> 5 & 1) * 4 + j : lane % 4 + 4 * (j >> 1);
        long long r = e >> 9;
        const int part = (int)(r % PARTS);
        r /= PARTS;
        const int tap = (int)(r % HALO_TAPS);
        r /= HALO_TAPS;
        const int step = (int)(r % steps), kb = (int)(r / steps);
        const int f = kb * HALO_BM + fi, c = step * HALO_CK + ci;
        const long long at = flip ? ((long long)c * K + f) * HALO_TAPS + HALO_TAPS - 1 - tap
                                  : ((long long)f * C + c) * HALO_TAPS + tap;
        const float v = f < K && c < C ? w[at] : 0.f;
        unsigned hi, lo = 0;
        tc_split<MODE>(__float_as_uint(v), hi, lo);
        wt[e] = __uint_as_float(part ? lo : hi);
    }
}

// A step's weights and input halo into stage sm (cp.async, one commit group). ximg: x at the
// task's image, soff: the step's first channel's element in it (an int: an image's elements are,
// conv.py's _batches); dst[u]: copy u's word in the stage's halo, or -1 (none); go[u]: its element
// from the step's first channel (channel c of the step: c H W + ...), or -1 (outside the image, or
// a channel past C in a one-step reduction: zeros); lim: min(channels left, HALO_CK) x H x W, so
// one unsigned compare go[u] < lim tests both (the last step's channels past C are zeros). A copy
// that reads nothing reads from ximg (an element of x, 16-byte aligned with x). x16, w16: x and wt
// 16-byte aligned (always, but for views and the emulator's misalignment check). sm_90's SASS had
// 24-50 instructions a 16-byte copy while x at the step was a pointer built in each copy's branch,
// the channel decoded from a packed key and x reloaded for the zero fill's source.
template <int MODE>
__device__ __forceinline__ void halo_issue(float* sm, const float* ximg, int soff, const float* __restrict__ wsrc,
                                           unsigned lim, const int (&dst)[HALO_XCOPY], const int (&go)[HALO_XCOPY],
                                           bool x16, bool w16) {
    enum { WW = HaloCfg<MODE>::WW, WCOPY = WW / 4 / HALO_THREADS };
    static_assert(WW / 4 % HALO_THREADS == 0, "a stage's weights are whole rounds of 16-byte copies");
    const int t = threadIdx.x;
    // the thread's first word, then constant offsets (immediates in the copies, where an int index
    // a copy cost a sign-extended 64-bit address each: ~80 SASS instructions for the nine)
    const float* wp = wsrc + 4 * t;
    float* sp = sm + 4 * t;
    if (w16) {
#pragma unroll
        for (int u = 0; u < WCOPY; ++u) cp_async<16>(sp + u * 4 * HALO_THREADS, wp + u * 4 * HALO_THREADS, 16);
    } else {  // wt not 16-byte aligned (the emulator's misalignment check moves it): 4-byte copies
#pragma unroll
        for (int i = 0; i < 4 * WCOPY; ++i) cp_async<4>(sp + (i & 3) + i / 4 * 4 * HALO_THREADS, wp + (i & 3) + i / 4 * 4 * HALO_THREADS, 4);
    }
    float* xs = sm + WW;
    if (x16) {  // one uniform branch a step, outside the copies
#pragma unroll
        for (int u = 0; u < HALO_XCOPY; ++u) {
            if (dst[u] < 0) continue;
            const bool ok = (unsigned)go[u] < lim;
            cp_async<16>(xs + dst[u], ximg + (ok ? soff + go[u] : 0), ok ? 16 : 0);
        }
    } else {  // x not 16-byte aligned (a view): each group as four 4-byte copies
#pragma unroll
        for (int u = 0; u < HALO_XCOPY; ++u) {
            if (dst[u] < 0) continue;
            const bool ok = (unsigned)go[u] < lim;
            const float* src = ximg + (ok ? soff + go[u] : 0);
#pragma unroll
            for (int e = 0; e < 4; ++e) cp_async<4>(xs + dst[u] + e, src + e, ok ? 4 : 0);
        }
    }
    cp_async_commit();
}

// acc += the stage's 9 taps x HALO_CK channels for this warp's 64 filters x 32 pixels;
// pix[ni]: word of pixel (warp*32 + ni*8 + lane/4) at tap (0, 0) in a channel's halo.
template <int MODE>
__device__ __forceinline__ void halo_step(const float* sm, int hws, int cs, const int (&pix)[4],
                                          float (&acc)[4][4][4]) {
    enum { PARTS = HaloCfg<MODE>::PARTS, WW = HaloCfg<MODE>::WW };
    const int lane = threadIdx.x & 31;
    const float* xs = sm + WW + (lane & 3) * cs;
#pragma unroll
    for (int tap = 0; tap < HALO_TAPS; ++tap) {
        const int toff = tap / HALO_KW * hws + tap % HALO_KW;
        unsigned ah[4][4], al[4][4], bh[4][2], bl[4][2];
#pragma unroll
        for (int mi = 0; mi < 4; ++mi) {
            const float4 v = *reinterpret_cast<const float4*>(sm + ((tap * PARTS) * 4 + mi) * 128 + lane * 4);
            ah[mi][0] = __float_as_uint(v.x), ah[mi][1] = __float_as_uint(v.y);
            ah[mi][2] = __float_as_uint(v.z), ah[mi][3] = __float_as_uint(v.w);
            if constexpr (PARTS == 2) {
                const float4 l = *reinterpret_cast<const float4*>(sm + ((tap * PARTS + 1) * 4 + mi) * 128 + lane * 4);
                al[mi][0] = __float_as_uint(l.x), al[mi][1] = __float_as_uint(l.y);
                al[mi][2] = __float_as_uint(l.z), al[mi][3] = __float_as_uint(l.w);
            }
        }
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {  // b0: channel t, b1: channel t + 4; pixel g
            const float* p = xs + pix[ni] + toff;
            tc_split<MODE>(__float_as_uint(p[0]), bh[ni][0], bl[ni][0]);
            tc_split<MODE>(__float_as_uint(p[4 * cs]), bh[ni][1], bl[ni][1]);
        }
#pragma unroll
        for (int mi = 0; mi < 4; ++mi)
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) {
                if constexpr (MODE == TC_3XTF32) {  // small terms first, then the big one (tc_warp_step's order)
                    mma_tf32(acc[mi][ni], al[mi], bh[ni], acc[mi][ni]);
                    mma_tf32(acc[mi][ni], ah[mi], bl[ni], acc[mi][ni]);
                }
                mma_tf32(acc[mi][ni], ah[mi], bh[ni], acc[mi][ni]);
            }
    }
}

// The warpgroup's (WG) accumulators, D = x-pixels x filters: acc[h][4 j + 2 u + e] is pixel
// 64 h + 16 warp + g + 8 u, filter 8 j + 2 t + e (mma.cuh's wgmma table, two m64 halves).
// acc += the stage's 9 taps x HALO_CK channels: A (pixels x channels) from registers, loaded
// from the halo as halo_step's B fragments are; B (channels x filters) the stage's weights through
// no-swizzle K-major descriptors. pix[2 h + u]: word of pixel 64 h + 16 warp + g + 8 u at tap
// (0, 0). A group a tap, at most two in flight (a tap's registers stay the instruction's until
// its wait: nine taps' 16 A registers of 3xTF32 in flight took ptxas past 255 and spilled); the
// caller waits for the last before the stage is refilled.
// The no-swizzle descriptor of a tap's weights (one part) at shared address addr: core matrices of
// 8 filters x 4 channels, the channels' halves 128 bytes apart, 8-filter groups 256.
__device__ __forceinline__ unsigned long long halo_wdesc(unsigned addr) { return wgmma_desc_kmajor(addr, 128, 256); }

// Every wgmma of the warpgroup done, both accumulator halves fenced (no use moves above the wait).
__device__ __forceinline__ void halo_wg_drain(float (&acc)[2][32]) {
    wgmma_wait<0>(acc[0]);
    wgmma_wait<0>(acc[1]);
}

template <int MODE>
__device__ __forceinline__ void halo_step_wg(const float* sm, int hws, int cs, const int (&pix)[4],
                                             float (&acc)[2][32]) {
    enum { PARTS = HaloCfg<MODE>::PARTS, WW = HaloCfg<MODE>::WW };
    const int lane = threadIdx.x & 31;
    const float* xs = sm + WW + (lane & 3) * cs;
    const unsigned wbase = smem_addr(sm);
#pragma unroll
    for (int tap = 0; tap < HALO_TAPS; ++tap) {
        const int toff = tap / HALO_KW * hws + tap % HALO_KW;
        unsigned ah[2][4], al[2][4];
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int j = 0; j < 4; ++j)  // a_j: pixel g + 8 (j & 1), channel t + 4 (j >> 1)
                tc_split<MODE>(__float_as_uint(xs[pix[2 * h + (j & 1)] + toff + (j >> 1) * 4 * cs]), ah[h][j], al[h][j]);
        const unsigned wtap = wbase + 4 * tap * PARTS * HALO_WFRAG;
        const unsigned long long big = halo_wdesc(wtap);
        wgmma_fence();  // this tap's A registers written before the wgmma that reads them
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            if constexpr (MODE == TC_3XTF32) {  // small terms first, then the big one (halo_step's order)
                wgmma_tf32_rs<64>(acc[h], al[h], big, 1);
                wgmma_tf32_rs<64>(acc[h], ah[h], halo_wdesc(wtap + 4 * HALO_WFRAG), 1);
            }
            wgmma_tf32_rs<64>(acc[h], ah[h], big, 1);
        }
        wgmma_commit();
        wgmma_wait_only<1>();  // the previous tap's done: its A registers free (ptxas keeps them till then)
    }
}

template <bool WG> struct HaloAcc { float v[4][4][4]; };  // mma.sync: [m16 tile][n8 tile][4]
template <> struct HaloAcc<true> { float v[2][32]; };     // wgmma: [m64 half][32]

template <int MODE, bool WG>
__device__ void halo_forward(float* sm, const float* __restrict__ x, const float* __restrict__ wt,
                             const float* __restrict__ b, float* __restrict__ y, GEOM, int th, int tw, int hws,
                             int cs, int flags) {
    enum { STAGES = HaloCfg<MODE>::STAGES, WW = HaloCfg<MODE>::WW };
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5, g8 = lane >> 2, t4 = lane & 3;
    const int hr = th + HALO_KH - 1, hwv = hws / 4, stage = WW + HALO_CK * cs;
    const int tiles_h = (P + th - 1) / th, tiles_w = (Q + tw - 1) / tw, kblocks = (K + HALO_BM - 1) / HALO_BM;
    const int steps = (C + HALO_CK - 1) / HALO_CK, tasks = N * tiles_h * tiles_w * kblocks, pixels = th * tw;
    const long long HW = (long long)H * W;
    const bool x16 = aligned16(x), w16 = aligned16(wt), pair = Q % 2 == 0 && aligned8(y);
    // step s's bound on a copy's element offset: its channels left (at most HALO_CK) x H x W
    const auto lim = [&](int s) { return (unsigned)min(C - s * HALO_CK, HALO_CK) * (unsigned)(H * W); };
    int pix[4];  // this thread's B (WG: A) pixels: word at tap (0, 0), as halo_step(_wg) reads them
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
        const int j = WG ? 64 * (ni >> 1) + 16 * warp + g8 + 8 * (ni & 1) : warp * 32 + ni * 8 + g8, i = j / tw;
        pix[ni] = j < pixels ? i * hws + (j - i * tw) : 0;  // + the tile's column offset, below
    }
    for (int task = blockIdx.x; task < tasks; task += gridDim.x) {
        int r = task;
        const int kb = r % kblocks;
        r /= kblocks;
        const int ct = r % tiles_w;
        r /= tiles_w;
        const int p0 = r % tiles_h * th, n = r / tiles_h, q0 = ct * tw;
        const int c0 = q0 - pl, off = c0 & 3, col0 = c0 - off;  // the halo's first column: 4-aligned
        int dst[HALO_XCOPY], go[HALO_XCOPY];
#pragma unroll
        for (int u = 0; u < HALO_XCOPY; ++u) {
            const int idx = t + u * HALO_THREADS, c = idx / (hr * hwv), rem = idx - c * (hr * hwv);
            const int i = rem / hwv, v = rem - i * hwv, h = p0 - pt + i, col = col0 + 4 * v;
            dst[u] = c < HALO_CK ? c * cs + i * hws + 4 * v : -1;
            // c * HW fits in int where c < C (an image's elements do, conv.py's _batches)
            go[u] = c < C && (unsigned)h < (unsigned)H && (unsigned)col < (unsigned)W ? c * H * W + h * W + col : -1;
            keep_in_register(dst[u]), keep_in_register(go[u]);  // made once a task, not at every step
        }
        HaloAcc<WG> acc;
        if constexpr (WG) {
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int e = 0; e < 32; ++e) acc.v[h][e] = 0.f;
        } else {
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni)
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc.v[mi][ni][e] = 0.f;
        }
        const long long img = (long long)n * C * HW;
        const float* wk = wt + (long long)kb * steps * WW;
        __syncthreads();  // the previous task's last step is done with every stage
        const float* ximg = x + img;
#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {
            if (s < steps) halo_issue<MODE>(sm + s * stage, ximg, s * HALO_CK * H * W, wk + (long long)s * WW,
                                            lim(s), dst, go, x16, w16);
            else cp_async_commit();
        }
        int poff[4];
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) poff[ni] = pix[ni] + off;
        for (int s = 0; s < steps; ++s) {
            cp_async_wait<STAGES - 2>();
            if constexpr (WG) {
                fence_proxy_async();  // the weights' copies visible to wgmma (the async proxy)
                if (s > 0) halo_wg_drain(acc.v);  // step s - 1's done with its stage
            }
            __syncthreads();  // step s landed for all; every warp is done with step s - 1's stage
            const int nx = s + STAGES - 1;
            if (nx < steps) halo_issue<MODE>(sm + nx % STAGES * stage, ximg, nx * HALO_CK * H * W,
                                             wk + (long long)nx * WW, lim(nx), dst, go, x16, w16);
            else cp_async_commit();
            if constexpr (WG) halo_step_wg<MODE>(sm + s % STAGES * stage, hws, cs, poff, acc.v);
            else halo_step<MODE>(sm + s % STAGES * stage, hws, cs, poff, acc.v);
        }
        if constexpr (WG) {  // acc[h][4 j + 2 u + e]: pixel 64 h + 16 warp + g + 8 u, filter 8 j + 2 t + e
            halo_wg_drain(acc.v);
#pragma unroll
            for (int pi = 0; pi < 4; ++pi) {
                const int h = pi >> 1, u = pi & 1, j = 64 * h + 16 * warp + g8 + 8 * u, i = j / tw;
                const int p = p0 + i, q = q0 + j - i * tw;
                if (j >= pixels || p >= P || q >= Q) continue;
                float* out = y + (long long)n * K * P * Q + (long long)p * Q + q;
#pragma unroll
                for (int jf = 0; jf < 8; ++jf)
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const int f = kb * HALO_BM + 8 * jf + 2 * t4 + e;
                        if (f >= K) continue;
                        float v = acc.v[h][4 * jf + 2 * u + e];
                        if (flags & EPI_BIAS) v += b[f];
                        out[(long long)f * P * Q] = relu_if(v, flags & EPI_RELU);
                    }
            }
        } else {
            // Epilogue: accumulator e of tile (mi, ni) is filter mi*16 + g8 + 8*(e / 2), pixel
            // warp*32 + ni*8 + 2*t4 + e % 2; a pair of pixels shares a row (tw even).
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) {
                const int j = warp * 32 + ni * 8 + 2 * t4, i = j / tw, jj = j - i * tw, p = p0 + i, q = q0 + jj;
                if (j >= pixels || p >= P || q >= Q) continue;
                const bool two = q + 1 < Q;
                float* out = y + (long long)n * K * P * Q + (long long)p * Q + q;
#pragma unroll
                for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const int f = kb * HALO_BM + mi * 16 + g8 + 8 * h;
                        if (f >= K) continue;
                        float v0 = acc.v[mi][ni][2 * h], v1 = acc.v[mi][ni][2 * h + 1];
                        if (flags & EPI_BIAS) v0 += b[f], v1 += b[f];
                        store_pair(out + (long long)f * P * Q, pair && two, two, relu_if(v0, flags & EPI_RELU),
                                   relu_if(v1, flags & EPI_RELU));
                    }
            }
        }
    }
}

// ------------------------------------------------------------ entry points

// Before sm_80 (no TF32 mma.sync) the entry points exist and trap: gpucnn.cuda.halo.ok never
// launches them there (compute capability < 80); the warpgroup ones (_wg_) likewise where wgmma
// is not built (sm_90a only: loader.ARCH_SPECIFIC). Two blocks an SM on sm_90 (the shared memory
// holds two of either mode's stages; 128 threads leave up to 255 registers).
#if TC_AVAILABLE
#define HALO_FWD_BODY(MODE, WG) halo_forward<MODE, WG>(reinterpret_cast<float*>(halo_smem), x, wt, b, y, GEOM_ARGS, th, tw, hws, cs, flags);
#define HALO_W_BODY(MODE, WG) halo_weights<MODE, WG>(w, wt, K, C, kblocks, steps, flip);
#else
#define HALO_FWD_BODY(MODE, WG) __trap();
#define HALO_W_BODY(MODE, WG) __trap();
#endif
#if TC_AVAILABLE && WGMMA_AVAILABLE
#define HALO_WG_AVAILABLE true
#else
#define HALO_WG_AVAILABLE false
#endif
#define CONV2D_HALO(NAME, MODE, WG)                                                                                  \
    extern "C" __global__ void __launch_bounds__(HALO_THREADS, __CUDA_ARCH__ >= 900 ? 2 : 1)                       \
    conv2d_halo_forward_##NAME##_f32(const float* __restrict__ x, const float* __restrict__ wt,                    \
                                     const float* __restrict__ b, float* __restrict__ y, GEOM, int th, int tw,    \
                                     int hws, int cs, int flags) {                                                 \
        extern __shared__ __align__(16) unsigned char halo_smem[];                                                 \
        if (WG && !HALO_WG_AVAILABLE) __trap();                                                                    \
        else HALO_FWD_BODY(MODE, WG && HALO_WG_AVAILABLE)                                                          \
    }                                                                                                              \
    extern "C" __global__ void conv2d_halo_weights_##NAME##_f32(const float* __restrict__ w, float* __restrict__ wt, \
                                                                int K, int C, int kblocks, int steps, int flip) {  \
        HALO_W_BODY(MODE, WG)                                                                                      \
    }
CONV2D_HALO(tf32, TC_TF32, false)
CONV2D_HALO(3xtf32, TC_3XTF32, false)
CONV2D_HALO(wg_tf32, TC_TF32, true)
CONV2D_HALO(wg_3xtf32, TC_3XTF32, true)
