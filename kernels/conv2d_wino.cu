// conv2d_wino.cu: the forward and backward-data of 3x3 convolutions at stride
// and dilation 1 in the math mode "fp32" by Winograd's minimal filtering
// F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016; gpucnn/cuda/algo.py's "wino" family, gpucnn/cuda/wino.py).
//
// Kernels (float only):
//   conv2d_wino_weights_f32(const float* w, float* wt, int K, int C, int kblocks, int steps, int flip)
//        w: (K,C,3,3) -> wt: (kblocks, steps * WINO_CK channels, 16 points, WINO_BK filters):
//        U = G g G^T of each filter g (4 x 4, point xi = 4a + b), zeros past K and C.
//        flip: w is (C,K,3,3) and filter f's tap (r, s) of channel c is w[c, f, 2 - r, 2 - s]
//        (backward-data: dx is the forward of dy by the filters transposed and rotated, at
//        padding 2 - pad: gpucnn/cuda/wino.py, as the halo family's).
//   conv2d_wino_forward_f32(const float* x, const float* wt, const float* b, float* y, GEOM,
//                           int steps, int flags)
//        x: (N,C,H,W)  y: (N,K,P,Q); b read with EPI_BIAS, ReLU with EPI_RELU (common.cuh).
//        GEOM as conv2d.cu's (conv.cuh); only N, C, H, W, K, P, Q, pt and pl are read (a 3x3
//        window at stride and dilation 1, one group: wino.ok).
//
// The math (F(2x2, 3x3)): a 2x2 block of outputs of one filter is
// A^T [ sum_c (G g_c G^T) .* (B^T d_c B) ] A, d_c the 4x4 input patch of
// channel c under the block's windows, with
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// So the reduction over channels is 16 independent GEMMs, one a point xi:
// M[xi] (filters x blocks) = U[xi] (filters x channels) V[xi] (channels x
// blocks): 16 multiplies per 4 outputs a channel where the direct sum takes
// 36, 2.25x fewer. The transforms' constants are 0, +-1 and +-1/2 (exact
// scalings), so what changes against a direct sum is the order of the
// additions: the result stays within fp32's few-ulp error of the sums'
// magnitudes (tests/test_wino.py holds it to the fp32 tolerance against
// float64), as cuDNN's fp32 Winograd algorithms.
//
// A block's task: WINO_BK = 32 filters x WINO_BP = 32 output blocks (2x2
// each, flat over images and the ceil(P/2) x ceil(Q/2) blocks of each);
// per step of WINO_CK = 8 channels each thread
//   - copies (cp.async, no registers) one block's 4x4 input patch of one
//     channel into its own 16 words of shared memory (16 4-byte copies, zero
//     filled outside x and past C; lanes take consecutive blocks, so a warp's
//     copy of one patch element spans 64 columns of a row), and 16
//     consecutive words of the step's U (four 16-byte copies: wt is laid out
//     so a step is 4096 consecutive words) into the step's stage;
//   - multiplies: thread t owns point xi = t / 16 and an 8 x 8 sub-tile
//     (filters 4kq..4kq+3 and 16+4kq.., blocks 4pq.. and 16+4pq..), 64 FFMA
//     a channel from four 16-byte shared loads, from the stage the previous
//     step filled;
//   - then waits for its copies, reads its patch back and writes V = B^T d B
//     to the other stage (vs[channel][xi][block]: conflict-free), one barrier.
// Two stages of U and V, so one barrier a step: a stage is refilled a step
// after the barrier that ended its reads. At the end the accumulators go
// through shared memory (ms[filter][xi][block], the stages' 64 KiB), and each
// thread applies A^T . A to four (filter, block) pairs: 2x2 outputs, plus the
// bias and the ReLU, stored as two 8-byte pairs where Q is even (y 8-byte
// aligned). No division in the step loop or the epilogue; four a task (the
// block's image and place, made again after the loop: registers).
//
// Cost: 2.25x fewer FFMA than the implicit GEMM (cifar-resnet's forward:
// 16 x 64 x 64 x 32768 = 2.15e9 FMA where the GEMM's is 4.83e9). sm_90 SASS
// (bench/results/static-sm90.md): 127 registers, two blocks an SM; a step's
// loop issues 835 instructions for 512 FFMA (32 LDS.128, 32 LDGSTS, 19 LDS.32,
// 16 STS, 32 FADD, ~180 integer and moves for the copies' guarded addresses):
// 1.63 a FFMA, 0.72 per FMA of the direct sum, where the 64 x 64 GEMM tile's
// k-step issues 476 for 256 FFMA (1.86). Expected on an H200 (the static
// model, gpucnn.bench.model): cifar-resnet's forward 139 us (122-174) against
// the GEMM tile's 344 and cuDNN's fp32 245 measured (session 21). Reads only
// elements of x and wt, writes only y's (a block past the last, a row past P,
// a column past Q, a filter past K: not stored). Deterministic: each output's
// sum runs channels in order, then the fixed transform.
#include "common.cuh"
#include "conv.cuh"
#include "mma.cuh"

// A step's copies (U, and each thread's input patch) go to shared memory by cp.async (no
// registers: the accumulators and the multiplies' operands fill the 128 that two blocks an SM
// leave; the patch in registers took 168 with the next step's loads in flight): sm_80 and newer
// (wino.ok), elsewhere the kernel traps.
#define WINO_ASYNC (__CUDA_ARCH__ >= 800)
// Dynamic shared memory (gpucnn/cuda/wino.py's SMEM): two stages of U and V, and each thread's raw
// patch (16 words a thread); the epilogue reuses the stages' 64 KiB.
#define WINO_SMEM (4 * (4 * WINO_STEP_WORDS + 16 * WINO_THREADS))

#define WINO_THREADS 256
#define WINO_BK 32  // filters a block
#define WINO_BP 32  // 2x2 output blocks a block
#define WINO_CK 8   // channels a step
#define WINO_XI 16  // points of the 4x4 transformed tile
#define WINO_STEP_WORDS (WINO_CK * WINO_XI * WINO_BK)  // a step's U, and its V (WINO_BP == WINO_BK)

// The 4 values of v0 .. v3 = (g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2): G applied to three.
__device__ __forceinline__ void wino_g(float g0, float g1, float g2, float (&u)[4]) {
    u[0] = g0;
    u[1] = 0.5f * (g0 + g1 + g2);
    u[2] = 0.5f * (g0 - g1 + g2);
    u[3] = g2;
}

// B^T applied to four: (d0 - d2, d1 + d2, d2 - d1, d1 - d3).
__device__ __forceinline__ void wino_bt(float d0, float d1, float d2, float d3, float (&v)[4]) {
    v[0] = d0 - d2;
    v[1] = d1 + d2;
    v[2] = d2 - d1;
    v[3] = d1 - d3;
}

// A^T applied to four: (m0 + m1 + m2, m1 - m2 - m3).
__device__ __forceinline__ void wino_at(float m0, float m1, float m2, float m3, float& o0, float& o1) {
    o0 = m0 + m1 + m2;
    o1 = m1 - m2 - m3;
}

extern "C" __global__ void conv2d_wino_weights_f32(const float* __restrict__ w, float* __restrict__ wt, int K,
                                                   int C, int kblocks, int steps, int flip) {
    const int cs = steps * WINO_CK;  // channels of wt, zeros past C
    GRID_STRIDE_LOOP(i, (long long)kblocks * cs * WINO_BK) {
        const int kk = (int)(i % WINO_BK);
        const long long row = i / WINO_BK;  // kb * cs + c
        const int c = (int)(row % cs), f = (int)(row / cs) * WINO_BK + kk;
        float t[4][3];  // G g: rows a, columns s
#pragma unroll
        for (int s = 0; s < 3; ++s) {
            float g[3];
#pragma unroll
            for (int r = 0; r < 3; ++r)
                g[r] = f < K && c < C ? (flip ? w[((long long)c * K + f) * 9 + (2 - r) * 3 + (2 - s)]
                                              : w[((long long)f * C + c) * 9 + r * 3 + s])
                                      : 0.f;
            float u[4];
            wino_g(g[0], g[1], g[2], u);
#pragma unroll
            for (int a = 0; a < 4; ++a) t[a][s] = u[a];
        }
        float* out = wt + row * WINO_XI * WINO_BK + kk;
#pragma unroll
        for (int a = 0; a < 4; ++a) {
            float u[4];
            wino_g(t[a][0], t[a][1], t[a][2], u);
#pragma unroll
            for (int b = 0; b < 4; ++b) out[(4 * a + b) * WINO_BK] = u[b];
        }
    }
}

// The forward kernel's body; W16: wt 16-byte aligned (always, but for views and the emulator's
// misalignment check: then 4-byte copies), a branch of its own, as a uniform test in the copies
// spilled on sm_80-90.
template <bool W16>
__device__ __forceinline__ void wino_forward(float* wino_smem, const float* __restrict__ x,
                                             const float* __restrict__ wt, const float* __restrict__ b,
                                             float* __restrict__ y, GEOM, int steps, int flags) {
    const int t = threadIdx.x;
    const int bl = t & 31, cl = t >> 5;                    // loads: block bl, channel cl of a step
    const int xi = t >> 4, kq = (t >> 2) & 3, pq = t & 3;  // multiplies: point xi, sub-tile (kq, pq)
    const int TQ = (Q + 1) / 2;
    // blocks and tasks < 2^31 (wino.ok: N x T blocks, and every task holds 32 of them)
    const int T = (P + 1) / 2 * TQ, blocks = N * T, kblocks = (K + WINO_BK - 1) / WINO_BK;
    const int tasks = (blocks + WINO_BP - 1) / WINO_BP * kblocks;
    const long long HW = (long long)H * W, PQ = (long long)P * Q;
    const bool vec = (Q & 1) == 0 && aligned8(y);
    // Task task's output block of this thread: image n, first output row oy and column ox; live
    // where it exists. Made again after the reduction from an opaque copy of task (keep_in_register)
    // rather than kept through it: the step loop needs all 128 registers.
    struct Place {
        int n, oy, ox;
        bool live;
    };
    auto place = [&](int task) {
        const int gb = task / kblocks * WINO_BP + bl, live = gb < blocks, rem = live ? gb % T : 0;
        return Place{live ? gb / T : 0, 2 * (rem / TQ), 2 * (rem % TQ), live != 0};
    };
    for (int task = blockIdx.x; task < tasks; task += gridDim.x) {
        const int kb = task % kblocks;
        const Place at = place(task);
        const bool live = at.live;
        const long long n = at.n;  // 64-bit offsets from here
        const int h0 = at.oy - pt, w0 = at.ox - pl;
        unsigned in = 0;  // bit 4i + j: patch element (i, j) inside x
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
                in |= (live && h0 + i >= 0 && h0 + i < H && w0 + j >= 0 && w0 + j < W ? 1u : 0u) << (4 * i + j);
        const long long x0 = (n * C + cl) * HW + (long long)h0 * W + w0;  // patch (0, 0) of channel cl
        const float* wstep = wt + (long long)kb * steps * WINO_STEP_WORDS + 4 * t;
        // Step s's copies: 16 words of its U to stage s % 2, and this thread's patch (zeros outside x
        // and past C) to raw, its own 16 words: one commit group.
        float* raw = wino_smem + 4 * WINO_STEP_WORDS + t;
        auto issue = [&](int s) {
            float* dst = wino_smem + (s & 1) * 2 * WINO_STEP_WORDS + 4 * t;
            const float* q = wstep + (long long)s * WINO_STEP_WORDS;
            const unsigned m = s * WINO_CK + cl < C ? in : 0u;
            const long long xs = x0 + (long long)s * WINO_CK * HW;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                if constexpr (W16) {
                    cp_async<16>(dst + 4 * i * WINO_THREADS, q + 4 * i * WINO_THREADS, 16);
                } else {
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        cp_async<4>(dst + 4 * i * WINO_THREADS + e, q + 4 * i * WINO_THREADS + e, 4);
                }
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const bool ok = m >> (4 * i + j) & 1u;  // a copy outside x reads none of x[0]
                    cp_async<4>(raw + (4 * i + j) * WINO_THREADS, ok ? x + xs + i * W + j : x, ok ? 4 : 0);
                }
            }
            cp_async_commit();
        };
        auto stage = [&](int s) {  // V = B^T d B of the patch to stage s % 2 (then a barrier)
            cp_async_wait<0>();  // this thread's copies: its patch is its own to read now
            float d[16];
#pragma unroll
            for (int e = 0; e < 16; ++e) d[e] = raw[e * WINO_THREADS];
            float* vs = wino_smem + (s & 1) * 2 * WINO_STEP_WORDS + WINO_STEP_WORDS;
            float r[4][4];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                float v[4];
                wino_bt(d[j], d[4 + j], d[8 + j], d[12 + j], v);
#pragma unroll
                for (int i = 0; i < 4; ++i) r[i][j] = v[i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                float v[4];
                wino_bt(r[i][0], r[i][1], r[i][2], r[i][3], v);
#pragma unroll
                for (int j = 0; j < 4; ++j) vs[(cl * WINO_XI + 4 * i + j) * WINO_BP + bl] = v[j];
            }
        };
        float acc[8][8];
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
        issue(0);
        stage(0);
        __syncthreads();
        for (int s = 0; s < steps; ++s) {
            // stage s + 1's buffers were last read in step s - 1, before the barrier that ended it;
            // raw, by this thread in stage(s)
            if (s + 1 < steps) issue(s + 1);
            const float4* u4 = reinterpret_cast<const float4*>(wino_smem + (s & 1) * 2 * WINO_STEP_WORDS) +
                               xi * (WINO_BK / 4);
            const float4* v4 = u4 + WINO_STEP_WORDS / 4;
#pragma unroll
            for (int c = 0; c < WINO_CK; ++c) {
                const int o = c * WINO_XI * (WINO_BK / 4);
                const float4 a0 = u4[o + kq], a1 = u4[o + 4 + kq], b0 = v4[o + pq], b1 = v4[o + 4 + pq];
                const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
                const float e[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
                for (int i = 0; i < 8; ++i)
#pragma unroll
                    for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], e[j], acc[i][j]);
            }
            if (s + 1 < steps) stage(s + 1);
            __syncthreads();
        }
        // The outputs through ms[filter][xi][block] (all 32 filters: both stages' words), then A^T . A
        // of (filter cl + 8r, block bl), r < 4, by each thread.
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int e = 0; e < 2; ++e)
                reinterpret_cast<float4*>(wino_smem)[((16 * (i >> 2) + 4 * kq + (i & 3)) * WINO_XI + xi) *
                                                         (WINO_BP / 4) + 4 * e + pq] =
                    make_float4(acc[i][4 * e], acc[i][4 * e + 1], acc[i][4 * e + 2], acc[i][4 * e + 3]);
        __syncthreads();
        int again = task;
        keep_in_register(again);
        const Place to = place(again);
        float* out = y + (long long)to.n * K * PQ + (long long)to.oy * Q + to.ox;
        const bool row2 = to.oy + 1 < P, two = to.ox + 1 < Q;
#pragma unroll
        for (int r = 0; r < WINO_BK / 8; ++r) {
            const int kk = cl + 8 * r, f = again % kblocks * WINO_BK + kk;
            float m[16];
#pragma unroll
            for (int p = 0; p < WINO_XI; ++p) m[p] = wino_smem[(kk * WINO_XI + p) * WINO_BP + bl];
            float s0[4], s1[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) wino_at(m[j], m[4 + j], m[8 + j], m[12 + j], s0[j], s1[j]);
            float y00, y01, y10, y11;
            wino_at(s0[0], s0[1], s0[2], s0[3], y00, y01);
            wino_at(s1[0], s1[1], s1[2], s1[3], y10, y11);
            if (to.live && f < K) {
                if (flags & EPI_BIAS) {
                    const float bf = b[f];
                    y00 += bf, y01 += bf, y10 += bf, y11 += bf;
                }
                const int relu = flags & EPI_RELU;
                float* o = out + f * PQ;
                store_pair(o, vec, two, relu_if(y00, relu), relu_if(y01, relu));
                if (row2) store_pair(o + Q, vec, two, relu_if(y10, relu), relu_if(y11, relu));
            }
        }
        __syncthreads();
    }
}

extern "C" __global__ void __launch_bounds__(WINO_THREADS, 2)
conv2d_wino_forward_f32(const float* __restrict__ x, const float* __restrict__ wt, const float* __restrict__ b,
                        float* __restrict__ y, GEOM, int steps, int flags) {
#if !WINO_ASYNC
    __trap();
#else
    extern __shared__ __align__(16) float wino_smem[];  // WINO_SMEM bytes: two stages of U then V; the outputs
    if (aligned16(wt))
        wino_forward<true>(wino_smem, x, wt, b, y, GEOM_ARGS, steps, flags);
    else
        wino_forward<false>(wino_smem, x, wt, b, y, GEOM_ARGS, steps, flags);
#endif
}
