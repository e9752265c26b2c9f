// tc_gemm.cuh: the tensor-core (TF32 mma.sync) block tile of the implicit-GEMM
// kernel families, on the same Ops as gemm.cuh's FFMA tile (gemm.cuh describes
// them) and the same epilogue: a kernel's store(m, n, v) receives each result.
//
// Layers (CUTLASS's, a tenth of the size): mma.cuh's primitives -> the warp
// tile (fragments and MMAs, tc_warp_step) -> the block tile (cp.async pipeline
// of TC_STAGES stages, shared-memory layout, tc_tile) -> the epilogue (tc_block).
//
// Block tile Tile::BM x Tile::BN, k-step TC_BK = 32, warps WARPS_M x WARPS_N,
// each owning a (BM / WARPS_M) x (BN / WARPS_N) warp tile of m16n8k8 MMAs.
// Both operands are stored k-contiguous, as[m][k] and bs[n][k], because
// ldmatrix without .trans then yields the TF32 A and B fragments directly: on
// 32-bit data an 8 x 8 b16 matrix is 8 rows of 4 words and lane l receives row
// l/4, word l%4, which is A[g][t] (and B[n=g][k=t]) for lane l = 4g + t.
// Rows are 128 bytes (8 chunks of 16 bytes); chunk c of row r is stored at
// c ^ (r % 8) (an XOR swizzle), so that
//   - ldmatrix (8 rows r..r+7 of one chunk per 8-lane phase) touches 8 distinct
//     chunks = 32 distinct banks;
//   - cp.async stores: an operand laid out along k is fetched one row of 32 k
//     per warp (32 consecutive words of one row), the other one 8 rows x 4 k
//     per warp (8 rows of one chunk: 8 distinct chunks): no bank conflicts.
// Global -> shared: 16-byte cp.async where an operand along k has aligned runs
// of 4 consecutive k (the filters, dy's rows, plain matrices: TcRuns, decided
// once per launch by the Op's a_runs()/b_runs()), else a 4-byte cp.async per
// element (tc_gather), with zero-fill (src-size 0, the copy's predicate) for
// padding, out-of-range rows and k past the end (the im2col view of x has no
// contiguous 16-byte runs along k in general). Every copy's source is an
// element of the tensor even when it copies nothing (GemmAt, the Ops' none
// handles, tc_tile's clamped k-table), so no address is ever tested.
//
// Pipeline, one barrier per step j: wait until this thread's copies of step j
// landed, barrier (everyone's landed, and everyone finished computing step
// j - 1), issue step j + STAGES - 1 into the stage step j - 1 used, compute
// step j, then write the k-table of step j + STAGES into the buffer step j's
// fetch used (read by the fetch issued after the next barrier).
// The warpgroup tiles (TcLargeWg, TcWideWg: wgmma on sm_90a) compute step j
// as: round its stage to TF32 in place (each thread 16-byte words of it),
// fence.proxy.async, a second barrier, issue the warpgroup's wgmma
// (tc_wg_issue), write the k-table, wait for the wgmma: so by the next
// step's first barrier every read of stage j is done, as above. In TF32 the
// wait moves to the next step, after its rounding, and the fetch after the
// second barrier: step j's wgmma runs while the threads wait for step j + 1's
// copies and round them (another stage), and the second barrier then also
// says every warpgroup's wgmma j is done, so stage j is free for the fetch
// (3xTF32 cannot: its one buffer of small parts is rewritten by the rounding).
//
// Math modes (the template parameter MODE): TC_TF32 rounds each fp32 operand to
// TF32 (cvt.rn, ties to even; cvt.rna before sm_90) and does one MMA per product;
// TC_3XTF32 splits x = big + small with big = rn(x), small = rn(x - big), and accumulates small*big, big*small
// and big*big (the small*small term, ~2^-22 relative, is dropped): fp32-level
// accuracy at a third of the tensor-core rate.
//
// Cost, written before any GPU run (bench/results/static-sm90.md has the
// counts). Per step of the 128 tile a block does 128 x 128 x 32 MACs = 512
// m16n8k8 MMAs (1536 in 3xTF32); an H100 SM retires about one per clock
// (TF32 dense ~495 TFLOP/s over 132 SMs at 1.83 GHz), so 512 (1536) tensor
// clocks. Its 8 warps issue per step about 24 ldmatrix, 64 (192) HMMA, 96
// (288) TF32 conversions (tf32_rn: one F2FP each on sm_90) and subtractions
// and the fetch: per thread 4 16-byte runs of A (~5 instructions each:
// IMAD.WIDE of the row pointer, the predicate, the copy) and 16 gathered
// elements of B (4 each for the convolutions: the padding test as one LOP3
// of tap masks, conv.cuh, the SEL of a zero's address, IMAD.WIDE, the copy;
// 7-9 with the test as compares, kept for filters with kh + kw > 31), with
// handle and k-table loads shared by 2 handles x 8 k. static-sm90.md: the
// forward's k-step went from 982 SASS instructions a warp (plus 3 more
// passes of a 184-instruction inner gather loop, ~1530 issued; cvt.rna as 2
// instructions each) to 597, then 499 (tap masks: 553; ldmatrix addresses
// as one XOR a slice, tc_warp_step: 499), both copy paths of A included
// (only one runs): 8 x 499 / 4 = 998 issue clocks against ~1100 of mma.sync
// at half the TF32 peak, so tf32 is at the tensor rate and 3xTF32
// tensor-bound. By region (gpucnn.runtime.sass_tc, 496 listed now) a warp
// issues 340 common + 33 (runs) or 89 (gathers) + 34 / 8 of warp 0's
// k-table: 377-433 a step, 754-867 issue clocks. The SEL stays: the PTX
// ISA says a cp.async with src-size 0 (or ignore-src) copies zeros and
// reads no data, but not that its source address may lie outside the
// allocation (its addressing rules still apply), so every source stays an
// element of the tensor (below).
// The warpgroup tile of the same shape (conv2d_forward_tf32_128g, sm_90a)
// issues 264 common + 34 or 109 + 34 / 8: 321-377 a step, 642-754 issue
// clocks (the stage's rounding, ~60 a warp, in place of ldmatrix, fragment
// conversions and HMMA), against ~615 tensor clocks for its 8 wgmma
// m64n64k8 (now 4 of m64n128k8) a warpgroup at 0.9 of the peak: issue-bound, by ~1.5x fewer
// clocks than mma.sync's tile at half the peak (model_consts). In 3xTF32
// (conv2d_forward_3xtf32_128g) 467 a warp (the split writes the small parts
// too), 933 issue clocks, against 1845 tensor clocks for its 24 wgmma:
// tensor-bound, as mma.sync's 3xTF32 tile (3324 at half the peak).
#pragma once
#include "mma.cuh"

#define TC_BK 32
#define TC_STAGES 3
#define TC_TF32 1
#define TC_3XTF32 3

// An Op's row and column handles and k-table entries are at most this big:
// the launch code (gpucnn/cuda/tc.py) asks for Tile::SMEM bytes of dynamic
// shared memory without knowing the Op, and tc_smem checks the bound.
#define TC_HANDLE_BYTES 24
#define TC_KTAB_BYTES 24  // DataOp's KTab: 6 ints

// WG_ = TC_TF32 or TC_3XTF32: a warpgroup tile of that math mode (tc_wg_issue): warps of 16 rows x
// BN (WARPS_N 1), 4 to a warpgroup of 64 rows, whose accumulators are acc[0][NI][4] in the m16n8
// layout tc_block stores; its shared memory starts at a 1024-byte boundary (tc_smem: 1024 bytes
// more), wgmma's swizzle being of shared-window addresses; in 3xTF32 the current stage's small
// parts follow at the next 1024-byte boundary (tc_lo: LO bytes, and 1024 for the rounding up).
// STAGES_: the cp.async pipeline's stages (TC_STAGES but in an A/B build: TC_WIDE_STAGES).
template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int WG_ = 0, int STAGES_ = TC_STAGES> struct TcTile {
    enum {
        BM = BM_, BN = BN_, WARPS_M = WARPS_M_, WARPS_N = WARPS_N_, THREADS = 32 * WARPS_M_ * WARPS_N_, WG = WG_,
        STAGES = STAGES_,
        MI = BM_ / WARPS_M_ / 16,  // m16 tiles per warp
        NI = BN_ / WARPS_N_ / 8,   // n8 tiles per warp (even: B is loaded two tiles per ldmatrix.x4)
        LO = WG_ == TC_3XTF32 ? (BM_ + BN_) * TC_BK * 4 : 0,
        SMEM = STAGES_ * ((BM_ + BN_) * TC_BK * 4 + TC_BK * TC_KTAB_BYTES) + (BM_ + BN_) * TC_HANDLE_BYTES +
               (WG_ ? 1024 : 0) + (LO ? LO + 1024 : 0)
    };
    static_assert(!WG_ || (WARPS_M_ * 16 == BM_ && WARPS_N_ == 1 && BN_ % 64 == 0),
                  "a warpgroup tile: warps of 16 rows and every column, 64-column wgmma");
};
typedef TcTile<128, 128, 2, 4> TcLarge;  // 8 warps of 64 x 32
typedef TcTile<64, 64, 2, 2> TcSmall;    // 4 warps of 32 x 32, for grids that would not fill the GPU
// 4 warps of 32 x 32 side by side, for GEMMs of at most 32 rows (32 filters:
// deepspeech, mnist): TcSmall would leave its lower two warps' rows empty.
// A is one 8-row block per warp (TcGather HANDLES 1), B four.
typedef TcTile<32, 128, 1, 4> TcNarrow;
// 4 warps of 32 x 64, for GEMMs of 33 to 64 rows and many columns (64-filter
// layers): TcSmall's 32 x 32 warp tiles issue ~16 loop instructions per
// HMMA (ldmatrix, conversions and the fetch shared by 8 HMMA a k-slice),
// a 32 x 64 warp tile 16 HMMA a k-slice for half as many A fragments.
// In TF32 the wide tile runs 2 pipeline stages (55 KiB of shared memory where 3 took 79, so 4
// blocks fit sm_90's 228 KiB where 2 did) and TcBlocks asks ptxas for 3 blocks an SM (its tf32
// kernels 132-154 registers where 168-186, no spill): on the H200 (bench/results/
// gpu-2026-11-30-s20, step 5e, where this was the A/B build) resnet-3x3's forward and
// backward-data took 0.71 and 0.73 of the 3-stage tile's time, cifar-resnet's 1.00 and 0.93. In
// 3xTF32 (TcWide3) it keeps 3 stages and 2 blocks: at 3 its forward spills. GPUCNN_TC64W_STAGES
// (an A/B build, gpucnn/runtime/loader.py's BUILD) sets TF32's stages: 3, as before.
#ifdef GPUCNN_TC64W_STAGES
#define TC_WIDE_STAGES GPUCNN_TC64W_STAGES
#else
#define TC_WIDE_STAGES 2
#endif
typedef TcTile<64, 128, 2, 2, 0, TC_WIDE_STAGES> TcWide;
typedef TcTile<64, 128, 2, 2> TcWide3;
// Hopper's warpgroup MMA (wgmma, sm_90a) on the 128 and wide tiles' shapes: two warpgroups of
// 64 x 128, and one. A warp's k-step issues no ldmatrix, conversion of fragments or HMMA: 4
// wgmma m64n128k8 (a k-slice each; 12 in 3xTF32) read both operands from the
// stage, after the stage is rounded to TF32 in place (tc_round_stage; in 3xTF32 split, its
// small parts written beside it).
typedef TcTile<128, 128, 8, 1, TC_TF32> TcLargeWg;
typedef TcTile<64, 128, 4, 1, TC_TF32> TcWideWg;
typedef TcTile<128, 128, 8, 1, TC_3XTF32> TcLargeWg3;
typedef TcTile<64, 128, 4, 1, TC_3XTF32> TcWideWg3;

// A valid global address for the source of a zero-filling cp.async (src-size 0 reads nothing).
__device__ __align__(16) float tc_zero_src[4];

// The block's shared memory (dynamic: 3 stages of a 128 x 128 tile exceed the
// 48 KiB a static declaration may have). rows/cols: the Op's handles of the
// tile's rows and columns; ktab: the k-table entries of Tile::STAGES steps.
template <typename Tile, typename Op> struct TcSmem {
    typedef typename GemmKTabArg<typename GemmKTab<Op>::type>::type E;
    __align__(16) float a[Tile::STAGES][Tile::BM * TC_BK];
    __align__(16) float b[Tile::STAGES][Tile::BN * TC_BK];
    __align__(16) E ktab[Tile::STAGES][TC_BK];
    typename Op::Row rows[Tile::BM];
    typename Op::Col cols[Tile::BN];
};

// Word offset of (row, k) in a swizzled k-contiguous tile.
__device__ __forceinline__ int tc_swz(int row, int k) { return row * TC_BK + (((k >> 2) ^ (row & 7)) << 2) + (k & 3); }

// The gathered copy (4 bytes an element, for operands with padding or without
// aligned 16-byte runs): thread t's 16 elements of a ROWS x TC_BK tile are
// HANDLES = ROWS / 8 / WARPS rows (8 rows apart by warp) times the 8 k
// 4 q + lane / 8, q < 8: a warp-instruction stores 8 rows of one 4-k chunk,
// 8 distinct swizzled chunks (no bank conflicts). A thread reads its HANDLES
// handles and 8 k-table entries from shared memory once per step and each
// entry serves all its handles, where the old layout (one row per element)
// re-read a handle and an entry per element; fully unrolled, so the k and
// swizzle arithmetic is constant per thread (static-sm90.md: the forward
// tile's B gather went from ~46 instructions an element, re-deriving the
// element's row and k in a 4-times-unrolled inner loop, to ~7; 4 with the
// convolutions' padding test by tap masks, conv.cuh).
// k-table entries a thread reads before issuing their copies: ptxas puts 3
// idle slots (@!PT LDS RZ) before the first cp.async after a shared load, so
// reading 2 entries, then copying their 4 elements, pays them 4 times a step
// instead of 8 (conv2d_forward_tf32_128: 633 -> 597 instructions a k-step;
// 4 entries, 591, spill the backward-data 128 tile at 128 registers). An Op
// may ask for more (enum GATHER_Q, TcGatherQ): the filter gradient's kernels,
// whose registers allow it, take 4.
#define TC_GATHER_Q 2
template <typename Op, typename = void> struct TcGatherQ { enum { Q = TC_GATHER_Q }; };
template <typename Op> struct TcGatherQ<Op, typename GemmVoid<decltype(Op::GATHER_Q)>::type> {
    enum { Q = Op::GATHER_Q };
};
template <int ROWS, int THREADS> struct TcGather {
    enum { WARPS = THREADS / 32, HANDLES = ROWS / 8 / WARPS };
    static_assert(HANDLES * WARPS * 8 == ROWS, "8-row blocks split evenly over the warps");
    static __device__ __forceinline__ int row(int j) { return (j * WARPS + threadIdx.x / 32) * 8 + threadIdx.x % 8; }
};

// An Op's gather as an address that is valid even for a zero (GemmAt): a
// plain pointer (an operand without padding) is always an element.
__device__ __forceinline__ GemmAt<float> tc_at(const float* p) { return GemmAt<float>{p, true}; }
__device__ __forceinline__ GemmAt<float> tc_at(GemmAt<float> a) { return a; }

// Issues one operand's gathered copies for the step at k0. get(handle, k,
// entry) is the Op's gather. NONE: rows past limit and k past kend have the
// Op's none handles and entries (tc_tile), whose gathers are zeros; else a
// row past limit has row 0's handle, a k past kend reads k0 with the entry
// tc_ktab_past gives, and both are tested here. Every address is an element
// and only the zero-fill (src-size 0) differs. Shared-memory addresses: a thread's
// elements of one q lie HANDLES * WARPS * 8 rows apart (immediate offsets)
// in chunk q ^ (lane % 8), one XOR per q. Q: the entries read before their copies (TcGatherQ).
template <int Q, bool NONE, int ROWS, int THREADS, typename H, typename E, typename Get>
__device__ __forceinline__ void tc_gather(float* s, const H* hs, const E* tab, int mn0, int limit, int k0, int kend,
                                          Get get) {
    typedef TcGather<ROWS, THREADS> L;
    const int lane = threadIdx.x % 32;
    H h[L::HANDLES];
    bool in[L::HANDLES];
#pragma unroll
    for (int j = 0; j < L::HANDLES; ++j) {
        h[j] = hs[L::row(j)];
        in[j] = NONE || mn0 + L::row(j) < limit;
    }
    const int base = tc_swz(L::row(0), lane / 8);  // word offset of (row 0, k = lane / 8): chunk lane % 8
#pragma unroll
    for (int q0 = 0; q0 < TC_BK / 4; q0 += Q) {
        E e[Q];
#pragma unroll
        for (int q = 0; q < Q; ++q) e[q] = tab[4 * (q0 + q) + lane / 8];
        GemmAt<float> a[Q][L::HANDLES];
#pragma unroll
        for (int q = 0; q < Q; ++q) {
            const int k = k0 + 4 * (q0 + q) + lane / 8;
            const bool kin = k < kend;
#pragma unroll
            for (int j = 0; j < L::HANDLES; ++j) {
                a[q][j] = tc_at(get(h[j], kin ? k : k0, e[q]));
                a[q][j].ok = a[q][j].ok && (NONE || (kin && in[j]));
            }
        }
#pragma unroll
        for (int q = 0; q < Q; ++q) {
            float* d = s + (base ^ ((q0 + q) << 2));  // chunk (q0 + q) ^ (row % 8) of the same row
#pragma unroll
            for (int j = 0; j < L::HANDLES; ++j) cp_async<4>(d + j * L::WARPS * 8 * TC_BK, a[q][j].p, a[q][j].ok ? 4 : 0);
        }
    }
}

// Whether an operand's gather may be copied in 16-byte runs: an Op declares
// A_RUNS (B_RUNS) = 1 when that operand lies along k and has no padding, and
// then a_runs() (b_runs()), uniform over the launch: every 4 consecutive k
// from a multiple of 4 are one 16-byte-aligned run of one row (e.g. a
// filter's Cg*kh*kw taps when that is a multiple of 4 and w is aligned).
template <typename Op, typename = void> struct TcRuns { enum { A = 0, B = 0 }; };
template <typename Op> struct TcRuns<Op, typename GemmVoid<decltype(Op::A_RUNS + Op::B_RUNS)>::type> {
    enum { A = Op::A_RUNS, B = Op::B_RUNS };
};

template <typename Op> __device__ __forceinline__ bool tc_runs_a(const Op& op) {
    if constexpr (TcRuns<Op>::A) return op.a_runs();
    else return false;
}
template <typename Op> __device__ __forceinline__ bool tc_runs_b(const Op& op) {
    if constexpr (TcRuns<Op>::B) return op.b_runs();
    else return false;
}

// The 16-byte copy of a RUNS operand (kbeg and kend multiples of 4, tc_tile's
// runs): each thread copies one 4-k chunk of ROWS / (THREADS / 8) rows (8
// threads per row, so each quarter warp stores one row's 8 chunks: no bank
// conflicts); a chunk past kend or a row past limit copies nothing from row
// k0's (aligned) address: whole chunks, so the zero-fill is the predicate of
// the copy and not a size folded into the address.
template <int ROWS, int THREADS, typename H, typename E, typename Get>
__device__ __forceinline__ void tc_runs(float* s, const H* hs, const E* tab, int mn0, int limit, int k0, int kend,
                                        Get get) {
    const int t = threadIdx.x, kk = 4 * (t % 8);
    const bool kin = k0 + kk < kend;
    const E e = tab[kin ? kk : 0];
    enum { N = ROWS * TC_BK / 4 / THREADS };
    const float* p[N];  // all handles read before the first copy (see TC_GATHER_Q)
#pragma unroll
    for (int i = 0; i < N; ++i) p[i] = tc_at(get(hs[t / 8 + THREADS / 8 * i], kin ? k0 + kk : k0, e)).p;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const int r = t / 8 + THREADS / 8 * i;
        cp_async<16>(s + tc_swz(r, kk), p[i], kin && mn0 + r < limit ? 16 : 0);
    }
}

// One operand's copies for the step at k0: 16-byte runs where the Op has
// them (runs: uniform, see tc_tile), else gathered.
template <bool RUNS, int Q, bool NONE, int ROWS, int THREADS, typename H, typename E, typename Get>
__device__ __forceinline__ void tc_fetch(bool runs, float* s, const H* hs, const E* tab, int mn0, int limit, int k0,
                                         int kend, Get get) {
    if (RUNS && runs) tc_runs<ROWS, THREADS>(s, hs, tab, mn0, limit, k0, kend, get);
    else tc_gather<Q, NONE, ROWS, THREADS>(s, hs, tab, mn0, limit, k0, kend, get);
}

// Whether Op gives B columns past N a handle and k past kend a k-table entry
// whose every B gather is a zero (enum B_NONE = 1, Col op.col_none(), KTab
// op.ktab_none()): then B's gather needs neither a row nor a k test.
template <typename Op, typename = void> struct TcNone { enum { B = 0 }; };
template <typename Op> struct TcNone<Op, typename GemmVoid<decltype(Op::B_NONE)>::type> { enum { B = Op::B_NONE }; };
// Whether an Op's k-table is built by warp s % WARPS at step s (enum KTAB_ROTATE = 1) rather than by
// warp 0: for entries that cost many instructions (the filter gradient's, FilterOp::ktab). On warp 0 every
// step, conv2d_backward_filter_tf32_64 on resnet-stem issued 282 instructions a k-step on warps 1-3 and
// 461 on warp 0 (with conv_miss's loops), and the block waits for its slowest warp at each step's
// barrier; where warps share the SM's 4 sub-partitions by warp index, the resident blocks' warps 0 share
// one too. Rotating (with filter_miss and FilterOp's GATHER_Q), the warps issue 281, plus 91 for the
// step's builder: 304 each on average (bench/results/static-sm90.md's regions of the k-step, sass_tc:
// 245 common, 36 for dy's 16-byte runs or 85 gathered, 91 the builder's; the loop with every branch once,
// 457, charged each warp the k-table and both copies). The cheap entries stay on warp 0: the rotation's warp
// index, held through the loop, spills conv2d_backward_data_tf32_128 at its 128 registers (16 bytes).
template <typename Op, typename = void> struct TcRotate { enum { KTAB = 0 }; };
template <typename Op> struct TcRotate<Op, typename GemmVoid<decltype(Op::KTAB_ROTATE)>::type> {
    enum { KTAB = Op::KTAB_ROTATE };
};
// The k-table entry of a k past kend: the Op's none entry where it has one
// (its B gathers are zeros, its A gathers elements), else kend - 1's.
template <typename Op> __device__ __forceinline__ typename GemmKTab<Op>::type tc_ktab_past(const Op& op, int kend) {
    if constexpr (TcNone<Op>::B) return op.ktab_none();
    else return op.ktab(kend - 1);
}
template <typename Op> __device__ __forceinline__ typename Op::Col tc_col(const Op& op, int n) {
    if constexpr (TcNone<Op>::B)
        if (n >= op.N) return op.col_none();
    return op.col(n < op.N ? n : 0);
}

// The two TF32 parts the mode multiplies: hi = rn(x), lo = rn(x - hi) (3xTF32 only). Round to
// nearest (tf32_rn: one instruction on sm_90, half of cvt.rna's two), so |x - hi| <= 2^-11 |x|.
template <int MODE> __device__ __forceinline__ void tc_split(unsigned x, unsigned& hi, unsigned& lo) {
    const float v = __uint_as_float(x);
    hi = tf32_rn(v);
    if constexpr (MODE == TC_3XTF32) lo = tf32_rn(v - __uint_as_float(hi));
}

// Rounds WORDS words at p (a multiple of 4 THREADS, 16-byte aligned) to TF32 in place (tc_split's
// cvt.rn, as the mma.sync fragments are: wgmma reads an fp32 word with its 13 low bits dropped,
// truncation, twice the error bound); in 3xTF32 (MODE) each word's small part to the same word of
// lo. 16 bytes a thread at a time, loops of UNROLL vectors (the warpgroup tiles: all, 4 or 8, so
// the k-step holds no loop and its SASS count is what a warp issues; the fold: 1, whose
// accumulators leave no registers for more). wgmma reads them once the caller's
// fence.proxy.async and barrier have passed.
template <int MODE, int WORDS, int THREADS, int UNROLL>
__device__ __forceinline__ void tc_round_words(float* p, float* lo = nullptr) {
    enum { COUNT = WORDS / 4 / THREADS };
    static_assert(COUNT * 4 * THREADS == WORDS && COUNT % UNROLL == 0, "whole 16-byte words a thread");
    uint4* v = reinterpret_cast<uint4*>(p) + threadIdx.x;
    uint4* vl = reinterpret_cast<uint4*>(lo) + threadIdx.x;
#pragma unroll 1
    for (int i0 = 0; i0 < COUNT; i0 += UNROLL) {
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            uint4 x = v[(i0 + u) * THREADS], l;
            tc_split<MODE>(x.x, x.x, l.x), tc_split<MODE>(x.y, x.y, l.y);
            tc_split<MODE>(x.z, x.z, l.z), tc_split<MODE>(x.w, x.w, l.w);
            v[(i0 + u) * THREADS] = x;
            if constexpr (MODE == TC_3XTF32) vl[(i0 + u) * THREADS] = l;
        }
    }
}

// A warpgroup tile's 3xTF32 small parts of the current stage: A's BM rows of TC_BK words, then B's
// BN, at the first 1024-byte boundary past the TcSmem (which starts at one: tc_smem).
template <typename Tile, typename Op> __device__ __forceinline__ float* tc_lo(TcSmem<Tile, Op>& sm) {
    return reinterpret_cast<float*>(reinterpret_cast<unsigned char*>(&sm) + (sizeof(sm) + 1023) / 1024 * 1024);
}

// The stage's operands rounded (split) for the warpgroup's wgmma: every word of A's and B's tiles.
template <int MODE, typename Tile> __device__ __forceinline__ void tc_round_stage(float* as, float* bs, float* lo) {
    enum { A = Tile::BM * TC_BK, B = Tile::BN * TC_BK };
    tc_round_words<MODE, A, Tile::THREADS, A / 4 / Tile::THREADS>(as, lo);
    tc_round_words<MODE, B, Tile::THREADS, B / 4 / Tile::THREADS>(bs, lo + A);
}

// One k-step of a warpgroup tile (Tile::WG): warpgroup g = warp / 4 multiplies A's rows 64 g ..
// 64 g + 63 by all BN columns of B, 4 k-slices x one wgmma m64n128k8 (BN = 128: A's 64 x 8 read
// once a slice, where two m64n64k8 over B's halves read it twice, 32 KiB of the stage a step
// against 24; another BN would take BN / 64 of m64n64k8), from the stage's tc_swz rows (the
// 128-byte swizzle's layout, each stage 1024-byte aligned: tc_smem), issued and committed as one group: the caller waits (wgmma_wait) before the
// accumulators or the stage are used again. In 3xTF32 (MODE) each is three, small terms first as
// tc_warp_step's: A's small parts by B, A by B's small parts (both from lo, tc_round_stage's),
// then A by B. Warp w's part of instruction h is acc[0][WN / 8 h ..] (mma.cuh's table: d[4 j + i] is
// the m16n8 tile j's c[i]), so tc_block stores it as the warp tiles'.
template <int MODE, typename Tile>
__device__ __forceinline__ void tc_wg_issue(const float* as, const float* bs, const float* lo,
                                            float (&acc)[1][Tile::NI][4]) {
    enum { WN = Tile::BN == 128 ? 128 : 64 };  // columns a wgmma: all of the tile's where one instruction has them
    const int row0 = threadIdx.x / 128 * 64 * TC_BK;  // the warpgroup's A rows
    const unsigned sa = smem_addr(as + row0), sb = smem_addr(bs);
    wgmma_fence();
#pragma unroll
    for (int k8 = 0; k8 < TC_BK / 8; ++k8)  // +2 a slice: 32 bytes, in the descriptors' address field
#pragma unroll
        for (int h = 0; h < Tile::BN / WN; ++h) {
            float(&d)[WN / 2] = *reinterpret_cast<float(*)[WN / 2]>(&acc[0][WN / 8 * h][0]);
            const unsigned bh = h * WN * TC_BK * 4;  // B's part h
            if constexpr (MODE == TC_3XTF32) {
                const unsigned la = smem_addr(lo + row0), lb = smem_addr(lo + Tile::BM * TC_BK);
                wgmma_tf32<WN>(d, wgmma_desc_sw128_at(la) + 2 * k8, wgmma_desc_sw128_at(sb + bh) + 2 * k8, 1);
                wgmma_tf32<WN>(d, wgmma_desc_sw128_at(sa) + 2 * k8, wgmma_desc_sw128_at(lb + bh) + 2 * k8, 1);
            }
            wgmma_tf32<WN>(d, wgmma_desc_sw128_at(sa) + 2 * k8, wgmma_desc_sw128_at(sb + bh) + 2 * k8, 1);
        }
    wgmma_commit();
}

// One k-step of the warp tile: 4 slices of k = 8, each MI x NI MMAs (x3 for 3xTF32).
template <int MODE, typename Tile>
__device__ __forceinline__ void tc_warp_step(const float* as, const float* bs, int wm0, int wn0,
                                             float (&acc)[Tile::MI][Tile::NI][4]) {
    const int lane = threadIdx.x % 32, q = lane / 8, r8 = lane % 8;
    // Byte offsets of this lane's ldmatrix rows in slice k8 = 0. Rows start at multiples of 8 (wm0, wn0 too),
    // so row % 8 = r8 and tc_swz(row, 8 k8 + 4 c) = (32 row + 4 (c ^ r8)) ^ 8 k8 words: slice k8 is the
    // offset XOR (k8 << 5), one LOP3 an ldmatrix, whose address is then [offset + stage] (was ~2, re-deriving
    // the swizzle: static-sm90.md).
    int oa[Tile::MI], ob[Tile::NI / 2];
#pragma unroll
    for (int mi = 0; mi < Tile::MI; ++mi) oa[mi] = 4 * tc_swz(wm0 + mi * 16 + (q % 2) * 8 + r8, (q / 2) * 4);
#pragma unroll
    for (int nj = 0; nj < Tile::NI / 2; ++nj) ob[nj] = 4 * tc_swz(wn0 + (2 * nj + q / 2) * 8 + r8, (q % 2) * 4);
    const char* const ab = reinterpret_cast<const char*>(as);
    const char* const bb = reinterpret_cast<const char*>(bs);
#pragma unroll
    for (int k8 = 0; k8 < TC_BK / 8; ++k8) {
        unsigned ah[Tile::MI][4], al[Tile::MI][4], bh[Tile::NI][2], bl[Tile::NI][2];
#pragma unroll
        for (int mi = 0; mi < Tile::MI; ++mi) {  // matrices: rows +0/+8 (q % 2), k +0/+4 (q / 2)
            unsigned r[4];
            ldmatrix<4, false>(r, ab + (oa[mi] ^ (k8 << 5)));
#pragma unroll
            for (int j = 0; j < 4; ++j) tc_split<MODE>(r[j], ah[mi][j], al[mi][j]);
        }
#pragma unroll
        for (int nj = 0; nj < Tile::NI / 2; ++nj) {  // matrices: n tile 2nj + q / 2, k +0/+4 (q % 2)
            unsigned r[4];
            ldmatrix<4, false>(r, bb + (ob[nj] ^ (k8 << 5)));
#pragma unroll
            for (int j = 0; j < 4; ++j) tc_split<MODE>(r[j], bh[2 * nj + j / 2][j % 2], bl[2 * nj + j / 2][j % 2]);
        }
#pragma unroll
        for (int mi = 0; mi < Tile::MI; ++mi)
#pragma unroll
            for (int ni = 0; ni < Tile::NI; ++ni) {
                if constexpr (MODE == TC_3XTF32) {  // small terms first, then the big one
                    mma_tf32(acc[mi][ni], al[mi], bh[ni], acc[mi][ni]);
                    mma_tf32(acc[mi][ni], ah[mi], bl[ni], acc[mi][ni]);
                }
                mma_tf32(acc[mi][ni], ah[mi], bh[ni], acc[mi][ni]);
            }
    }
}

// acc = the warp's part of op's GEMM over [kbeg, kend) for the tile at (m0, n0).
// Every thread of the block calls it with the same arguments (uniform barriers).
template <int MODE, typename Tile, typename Op>
__device__ void tc_tile(const Op& op, TcSmem<Tile, Op>& sm, int m0, int n0, int kbeg, int kend,
                        float (&acc)[Tile::MI][Tile::NI][4]) {
    typedef GemmKTab<Op> KT;
    typedef typename TcSmem<Tile, Op>::E E;
    const int t = threadIdx.x, warp = t / 32;
    const int wm0 = warp / Tile::WARPS_N * (Tile::BM / Tile::WARPS_M);
    const int wn0 = warp % Tile::WARPS_N * (Tile::BN / Tile::WARPS_N);
    const int steps = (kend - kbeg + TC_BK - 1) / TC_BK;
    const auto geta = [&](const typename Op::Row& h, int k, const E& e) {
        if constexpr (KT::USED) return op.pa(h, k, e);
        else return op.pa(h, k);
    };
    const auto getb = [&](const typename Op::Col& h, int k, const E& e) {
        if constexpr (KT::USED) return op.pb(h, k, e);
        else return op.pb(h, k);
    };
    // 16-byte runs need every 4-k chunk inside or outside [kbeg, kend) whole
    const bool whole = kbeg % 4 == 0 && kend % 4 == 0, runs_a = whole && tc_runs_a(op), runs_b = whole && tc_runs_b(op);
    // The k-table of step s into buffer s % Tile::STAGES, one entry a lane of warp 0, or of warp s % WARPS
    // where the Op's entries are costly (TcRotate).
    static_assert(TC_BK == 32, "a warp builds a step's k-table, one entry a lane");
    const auto ktab = [&](int s) {
        if constexpr (KT::USED) {
            const int i = TcRotate<Op>::KTAB ? t % 32 : t, k = kbeg + s * TC_BK + i;  // entry i of the step
            if ((TcRotate<Op>::KTAB ? warp == s % (Tile::THREADS / 32) : t < TC_BK) && s < steps)
                sm.ktab[s % Tile::STAGES][i] = k < kend ? op.ktab(k) : tc_ktab_past(op, kend);
        }
    };
    // a warpgroup tile's wait for its wgmma in flight (the accumulators fenced: wgmma_wait)
    const auto wg_wait = [&] { wgmma_wait<0>(*reinterpret_cast<float(*)[Tile::NI * 4]>(&acc[0][0][0])); };
    const auto fetch = [&](int s) {  // step s into stage s % Tile::STAGES, as one commit group
        if (s < steps) {
            const int k0 = kbeg + s * TC_BK, st = s % Tile::STAGES;
            tc_fetch<TcRuns<Op>::A, TcGatherQ<Op>::Q, false, Tile::BM, Tile::THREADS>(runs_a, sm.a[st], sm.rows, sm.ktab[st], m0, op.M, k0,
                                                             kend, geta);
            tc_fetch<TcRuns<Op>::B, TcGatherQ<Op>::Q, TcNone<Op>::B, Tile::BN, Tile::THREADS>(runs_b, sm.b[st], sm.cols, sm.ktab[st], n0, op.N, k0,
                                                             kend, getb);
        }
        cp_async_commit();  // possibly empty: wait_group counts groups
    };

#pragma unroll
    for (int mi = 0; mi < Tile::MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < Tile::NI; ++ni)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[mi][ni][j] = 0.0f;
    for (int r = t; r < Tile::BM; r += Tile::THREADS) sm.rows[r] = op.row(m0 + r < op.M ? m0 + r : 0);
    for (int c = t; c < Tile::BN; c += Tile::THREADS) sm.cols[c] = tc_col(op, n0 + c);
#pragma unroll
    for (int s = 0; s < Tile::STAGES; ++s) ktab(s);
    __syncthreads();  // handles and the first k-tables are complete
#pragma unroll
    for (int s = 0; s < Tile::STAGES - 1; ++s) fetch(s);
    for (int j = 0; j < steps; ++j) {
        cp_async_wait<Tile::STAGES - 2>();  // this thread's copies of step j have landed
        __syncthreads();  // everyone's have; everyone is done with step j - 1's stage
        if constexpr (Tile::WG == TC_TF32) {
            // step j's stage rounded while step j - 1's wgmma may still run (they touch different
            // stages), then waited for; the second barrier: every thread's words rounded and every
            // warpgroup's wgmma j - 1 done, so step j - 1's stage is free for the fetch. Step j's
            // wgmma then runs through the next k-table, the next step's copy wait, first barrier
            // and rounding, where the order below (3xTF32: its one buffer of small parts, which
            // the next rounding rewrites, must be read first) waits for it at once.
            static_assert(MODE == TC_TF32, "a warpgroup tile runs its own math mode");
            tc_round_stage<MODE, Tile>(sm.a[j % Tile::STAGES], sm.b[j % Tile::STAGES], tc_lo(sm));
            fence_proxy_async();  // the rounded words visible to wgmma (the async proxy)
            wg_wait();
            __syncthreads();
            fetch(j + Tile::STAGES - 1);
            tc_wg_issue<MODE, Tile>(sm.a[j % Tile::STAGES], sm.b[j % Tile::STAGES], tc_lo(sm), acc);
            ktab(j + Tile::STAGES);
            continue;
        }
        fetch(j + Tile::STAGES - 1);
        if constexpr (Tile::WG) {
            static_assert(MODE == Tile::WG, "a warpgroup tile runs its own math mode");
            // step j's stage rounded (a second barrier: every thread's words), its wgmma issued,
            // the next k-table written while they run, then waited for: the next step's barrier
            // frees the stage (and the small parts) for the fetch (and the rounding) that follow it
            tc_round_stage<MODE, Tile>(sm.a[j % Tile::STAGES], sm.b[j % Tile::STAGES], tc_lo(sm));
            fence_proxy_async();  // the rounded words visible to wgmma (the async proxy)
            __syncthreads();
            tc_wg_issue<MODE, Tile>(sm.a[j % Tile::STAGES], sm.b[j % Tile::STAGES], tc_lo(sm), acc);
            ktab(j + Tile::STAGES);
            wg_wait();
        } else {
            tc_warp_step<MODE, Tile>(sm.a[j % Tile::STAGES], sm.b[j % Tile::STAGES], wm0, wn0, acc);
            ktab(j + Tile::STAGES);
        }
    }
    if constexpr (Tile::WG == TC_TF32) wg_wait();
    __syncthreads();  // the shared memory is free for the caller's next tile
}

// Whether a store is an epilogue object (gemm.cuh's gemm_block_epilogue: out, at, value; PlaneEpi,
// RowEpi), whose pair says that columns n, n + 1 from an even n lie side by side, 8-byte aligned:
// tc_block then stores a thread's two neighbouring accumulators as one 8-byte store, and a
// warp-instruction writes 8 rows of 32 whole bytes, where 4-byte stores of the 2t and 2t + 1
// columns in turn each used half of every sector they wrote (ncu on conv2d_forward_tf32_64w,
// bench/results/gpu-2026-11-30-s21's 7b: 16.0 of 32 bytes a sector). Any other store (a lambda)
// gets its elements one by one, in the order it always had (the linear kernels' registers).
template <typename S> __device__ constexpr auto tc_is_epi(int) -> decltype(((const S*)nullptr)->at(0, 0), true) {
    return true;
}
template <typename S> __device__ constexpr bool tc_is_epi(long) { return false; }

// The block's tile of op's GEMM over [kbeg, kend), handed to store(m, n, v)
// for m < op.M, n < op.N, as gemm_block does (by pairs where an epilogue
// object allows them). Tiles run over grid x (columns) and y (rows).
template <int MODE, typename Tile, typename Op, typename Store>
__device__ __forceinline__ void tc_block(const Op& op, TcSmem<Tile, Op>& sm, int kbeg, int kend, Store store) {
    const int m0 = blockIdx.y * Tile::BM, n0 = blockIdx.x * Tile::BN;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm0 = m0 + warp / Tile::WARPS_N * (Tile::BM / Tile::WARPS_M) + lane / 4;
    const int wn0 = n0 + warp % Tile::WARPS_N * (Tile::BN / Tile::WARPS_N) + 2 * (lane % 4);  // even
    float acc[Tile::MI][Tile::NI][4];
    tc_tile<MODE, Tile>(op, sm, m0, n0, kbeg, kend, acc);
    if constexpr (tc_is_epi<Store>(0)) {
#pragma unroll
        for (int mi = 0; mi < Tile::MI; ++mi)
#pragma unroll
            for (int ni = 0; ni < Tile::NI; ++ni)
#pragma unroll
                for (int h = 0; h < 2; ++h) {  // c[2h + i] = C[g + 8h][2t + i]
                    const int m = wm0 + mi * 16 + 8 * h, n = wn0 + ni * 8;
                    const float a = acc[mi][ni][2 * h], b = acc[mi][ni][2 * h + 1];
                    if (m >= op.M) continue;
                    if (store.pair && n + 1 < op.N) {
                        store_pair(store.out + store.at(m, n), true, true, store.value(m, n, a), store.value(m, n + 1, b));
                    } else {
                        if (n < op.N) store(m, n, a);
                        if (n + 1 < op.N) store(m, n + 1, b);
                    }
                }
    } else {
#pragma unroll
        for (int mi = 0; mi < Tile::MI; ++mi)
#pragma unroll
            for (int ni = 0; ni < Tile::NI; ++ni)
#pragma unroll
                for (int j = 0; j < 4; ++j) {  // c[j] = C[g + 8 (j / 2)][2t + j % 2]
                    const int m = wm0 + mi * 16 + 8 * (j / 2), n = wn0 + ni * 8 + j % 2;
                    if (m < op.M && n < op.N) store(m, n, acc[mi][ni][j]);
                }
    }
}

// The kernels' shared memory: the dynamic buffer seen as TcSmem.
// A warpgroup tile's starts at the first 1024-byte boundary (TcTile: its SMEM counts the 1024).
template <typename Tile, typename Op> __device__ __forceinline__ TcSmem<Tile, Op>& tc_smem() {
    static_assert((Tile::LO ? (sizeof(TcSmem<Tile, Op>) + 1023) / 1024 * 1024 + Tile::LO : sizeof(TcSmem<Tile, Op>)) +
                      (Tile::WG ? 1024 : 0) <= Tile::SMEM,
                  "an Op's handles exceed TC_HANDLE_BYTES or TC_KTAB_BYTES");
    extern __shared__ __align__(16) unsigned char tc_dyn_smem[];
    return *reinterpret_cast<TcSmem<Tile, Op>*>(Tile::WG ? wgmma_align(tc_dyn_smem) : tc_dyn_smem);
}

// tc_block as a callable run(op, kbeg, kend, store), the counterpart of gemm.cuh's GemmRun.
template <int MODE, typename Tile> struct TcRun {
    template <typename Op, typename Store>
    __device__ __forceinline__ void operator()(const Op& op, int kbeg, int kend, Store store) const {
        if constexpr (Tile::WG && !WGMMA_AVAILABLE) __trap();  // built, never launched (TC_WG_VARIANTS)
        else tc_block<MODE, Tile>(op, tc_smem<Tile, Op>(), kbeg, kend, store);
    }
};

// The entry points of tensor-core kernels (sm_80 and newer: a family defines
// them under TC_AVAILABLE; the emulator compiles as sm_80): one block of
// Tile::THREADS threads per tile.
#define TC_AVAILABLE (__CUDA_ARCH__ >= 800)
// BLOCKS: the blocks per SM to fit registers for on sm_90 (2 caps them at 128:
// 16 warps of the 128 tile on an SM, where the kernel fits without spilling;
// 1 for those that would spill). Older architectures' ptxas spills at 128
// registers, so they keep one block per SM. GPUCNN_TC64_BLOCKS (an A/B build,
// gpucnn/runtime/loader.py's BUILD): the 64 tile's (TcSmall's) instead; 4 fit
// sm_90's 228 KiB of shared memory (54.5 KiB and 1 reserved a block) and held every
// kernel of the tile (conv2d, conv2d_phase, linear) at 110-128 registers without a spill,
// their k-step loops 2-7 instructions longer (ptxas and the SASS, session 19).
// The wide tile of 2 stages (TcWide in TF32): 3 blocks.
template <typename Tile, int BLOCKS> struct TcBlocks {
#ifdef GPUCNN_TC64_BLOCKS
    enum { b64 = Tile::BM == 64 && Tile::BN == 64 && !Tile::WG ? GPUCNN_TC64_BLOCKS : BLOCKS };
#else
    enum { b64 = BLOCKS };
#endif
    enum { n = Tile::BM == 64 && Tile::BN == 128 && !Tile::WG && Tile::STAGES == 2 ? 3 : b64 };
};
#define TC_KERNEL(Tile, BLOCKS) \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS, __CUDA_ARCH__ >= 900 ? TcBlocks<Tile, (BLOCKS)>::n : 1)
// A family's parts (gpucnn/runtime/loader.py's PARTED): on a GPU the loader compiles conv2d,
// conv2d_phase and linear a part at a time, each on its first use, so a user waits for the kernels
// that the shapes in use pick and no others (conv2d whole: 44 s of NVRTC and ptxas on the VM, 112 s
// on the H200's host; its kernels without tensor cores 3 s, a tile's 3 kernels about 3 s more). The loader
// defines GPUCNN_PART and GPUCNN_PART_base (the kernels without tensor cores, which such a family
// keeps under #if TC_PART_BASE) or GPUCNN_PART_<SUFFIX> (a tile's kernels, NAME_<SUFFIX>); with no
// GPUCNN_PART (the emulator, the compile checks), every kernel is built.
#if !defined(GPUCNN_PART) || defined(GPUCNN_PART_base)
#define TC_PART_BASE 1
#else
#define TC_PART_BASE 0
#endif
#define TC_CAT(a, b) TC_CAT_(a, b)
#define TC_CAT_(a, b) a##b
#define TC_SECOND(a, b, ...) b
#define TC_SECOND_OF(...) TC_SECOND(__VA_ARGS__)
#define TC_PROBE_1 ~, 1
// 1 where the macro M is defined as 1, else 0: TC_PROBE_1's comma moves the 1 into second place.
#define TC_IS_1(M) TC_SECOND_OF(TC_CAT(TC_PROBE_, M), 0, ~)
#define TC_DEFINE_IF_1(DEFINE, SFX, MODE, TILE) DEFINE(SFX, MODE, TILE)
#define TC_DEFINE_IF_0(DEFINE, SFX, MODE, TILE)
// DEFINE(SFX, MODE, TILE), unless a part without the tile is being built.
#ifdef GPUCNN_PART
#define TC_TILE(DEFINE, SFX, MODE, TILE) TC_CAT(TC_DEFINE_IF_, TC_IS_1(GPUCNN_PART_##SFX))(DEFINE, SFX, MODE, TILE)
#else
#define TC_TILE(DEFINE, SFX, MODE, TILE) DEFINE(SFX, MODE, TILE)
#endif
// DEFINE(SUFFIX, MODE, Tile) for each math mode and tile: a family's kernels
// NAME_tf32_128, NAME_tf32_64, NAME_3xtf32_128 and NAME_3xtf32_64.
#define TC_VARIANTS(DEFINE)                                                                         \
    TC_TILE(DEFINE, tf32_128, TC_TF32, TcLarge) TC_TILE(DEFINE, tf32_64, TC_TF32, TcSmall)           \
    TC_TILE(DEFINE, 3xtf32_128, TC_3XTF32, TcLarge) TC_TILE(DEFINE, 3xtf32_64, TC_3XTF32, TcSmall)
// The 32-row tile's kernels, NAME_tf32_32 and NAME_3xtf32_32, for the
// families whose GEMMs have few rows (gpucnn/cuda/tc.py's NARROW).
#define TC_NARROW_VARIANTS(DEFINE)                                                                  \
    TC_TILE(DEFINE, tf32_32, TC_TF32, TcNarrow) TC_TILE(DEFINE, 3xtf32_32, TC_3XTF32, TcNarrow)      \
    TC_TILE(DEFINE, tf32_64w, TC_TF32, TcWide) TC_TILE(DEFINE, 3xtf32_64w, TC_3XTF32, TcWide3)
// The warpgroup tiles' kernels, NAME_tf32_128g, NAME_tf32_64g, NAME_3xtf32_128g and
// NAME_3xtf32_64g, for the same families: the
// loader builds them for sm_90a on compute capability 9.0 (loader.ARCH_SPECIFIC), where
// gpucnn.cuda.tc may pick them; on any other target their bodies trap (TcRun).
#define TC_WG_VARIANTS(DEFINE)                                                                      \
    TC_TILE(DEFINE, tf32_128g, TC_TF32, TcLargeWg) TC_TILE(DEFINE, tf32_64g, TC_TF32, TcWideWg)      \
    TC_TILE(DEFINE, 3xtf32_128g, TC_3XTF32, TcLargeWg3) TC_TILE(DEFINE, 3xtf32_64g, TC_3XTF32, TcWideWg3)
