// gemm.cuh: the shared-memory tile loop of the implicit-GEMM kernel families
// (conv2d.cu, linear.cu), and the two deterministic reductions they share.
//
// One block computes a BM x BN tile (a GemmShape) of C = A B over the
// reduction range [kbeg, kend). Neither operand need exist in
// memory as a matrix: an Op gathers each element from the tensors on the fly
//   Op::Row op.row(m)               what A's row m needs, computed once per tile
//   Op::Col op.col(n)               what B's column n needs, computed once per tile
//   T op.a(const Row&, int k)       A[m, k], called only for m < op.M, k < kend
//   T op.b(const Col&, int k)       B[k, n], called only for n < op.N, k < kend
//   Op::A_ALONG_K, Op::B_ALONG_K    whether consecutive k are neighbours in memory
// and out-of-range elements are zeros, so no remainder needs a special case.
//
// Two shapes, one loop: GemmWide (64 x 64, 256 threads, 2 blocks per SM) and
// GemmNarrow (32 x 64, 128 threads, 4 blocks per SM; 3 in double) for GEMMs of
// at most 32 rows (a narrow layer's filters), which would leave half of every
// wide tile empty. Both give a thread the same 4 x 4 micro-tile, so the inner
// loop and its shared-memory traffic per FMA are the same, and 4 narrow blocks
// of 4 warps keep the 16 warps per SM of 2 wide ones. The narrow tile fetches
// 1.5x the operand elements per FMA (96 per 2048 instead of 128 per 4096): 12
// registers of fetched elements a thread instead of 8, and 1.5x the loads in
// flight per SM. (256 threads with 4 x 2 micro-tiles would keep 8 fetches a
// thread but load 3 vectors per 8 FMA of a thread instead of 2 per 16: at the
// wavefronts counted below, 3 clocks of shared memory per 2 of FMA, a loop
// bound by shared memory.)
//
// Global -> shared: each thread fetches BM * GEMM_BK / THREADS elements of A
// and BN * GEMM_BK / THREADS of B per step of GEMM_BK reduction indices. An
// operand laid out along k (A_ALONG_K) is read with 16 (wide) or 8 (narrow)
// consecutive threads on as many consecutive k of one row (GemmFetch),
// otherwise with BM (or BN) consecutive threads on as many consecutive rows of
// one k: neighbouring threads read neighbouring addresses either way. Both
// tiles are stored k-major, sm[k][m], so that the inner loop reads them along
// m and n.
//
// Register blocking: thread (ty, tx) (gemm_ty, gemm_tx) owns a 4 x 4 micro-tile
// made of 16-byte vectors, V = Vec16<T>::n elements each (one float4, or two
// double2): rows V*ty + v (v < V) of every band of BM / 4 vectors, and columns
// likewise with tx in bands of 16 vectors (gemm_micro). Each step of the inner
// loop is then one 128-bit shared load per vector of A and of B and 16 FMAs.
// A warp's lanes are 2 values of ty by 16 of tx, placed in float so that both
// loads are "uniform" in NVIDIA's sense: lanes l and l ^ 1 share tx (B's vector),
// l and l ^ 2 share ty (A's), and such a load returns its 32 lanes' 512 bytes
// in 2 wavefronts of 128 instead of 4 (a wavefront returns one register a
// lane; pairs of lanes alike share one: NVIDIA developer forum thread 77228).
// The shared-memory path returns one wavefront a clock an SM, where the SM
// issues 4 FFMA warp-instructions: so 4 wavefronts for a warp's 16 FFMA take
// as long as the FFMA; with (t / 16, t % 16), B's lanes l and l + 16 alike,
// they took 6 (bench/results/static-traffic.md, from the emulator's traffic
// counts: the loop was bound by shared memory at two thirds of the FFMA rate;
// the H200 run of 2026-11-30 found conv2d_forward_f32's L1 75% busy and its
// SMs 63%). One stage of software pipelining: a thread loads the next step's
// elements into registers while it multiplies the current step from shared
// memory (two barriers per step).
//
// bench/results/static-sm90.md records the resulting machine code (python -m
// gpucnn.runtime.sass_report --write; tests/test_sass.py keeps it current).
#pragma once

#define GEMM_BK 16
#define GEMM_THREADS 256  // GemmWide's block (and bias_grad's)
#define GEMM_TM 4  // micro-tile rows per thread
#define GEMM_TN 4  // micro-tile columns per thread

// A block tile of BM x BN outputs, a 4 x 4 micro-tile per thread, 16 threads
// along n; BLOCKS resident blocks per SM cap registers at 128 a thread
// (65536 / (BLOCKS * THREADS)).
template <int BM_, int BN_> struct GemmShape {
    enum { BM = BM_, BN = BN_, TX = BN / GEMM_TN, TY = BM / GEMM_TM, THREADS = TX * TY, BLOCKS = 512 / THREADS };
    static_assert(TX == 16, "gemm_ty and gemm_tx: 16 values of tx, 2 of ty a warp");
};

// Thread t's micro-tile (ty, tx): in float, lane l of warp w is (2 w + l % 2, l / 2) (the
// header's uniform loads); in double (t / 16, t % 16), as before: its loop is bound by DFMA (half
// the FFMA rate), and the float layout took conv2d_backward_filter_f64 past its 128 registers
// (28 spilled stores, ptxas on sm_90). The float kernels' registers moved by -2 to +3 (sm_90),
// their blocks an SM not at all.
// (t: the caller's thread index as it has it, int or threadIdx.x's unsigned: double's code must
// stay as it was, whose backward filter kernel sits at its 128 registers on sm_80 and spilled 16
// bytes when its epilogue's t % 16 became signed.)
template <typename T, typename I> __device__ __forceinline__ int gemm_ty(I t) {
    if constexpr (sizeof(T) == 4) return t / 32 * 2 + t % 2;
    else return t / 16;
}
template <typename T, typename I> __device__ __forceinline__ int gemm_tx(I t) {
    if constexpr (sizeof(T) == 4) return t % 32 / 2;
    else return t % 16;
}
typedef GemmShape<64, 64> GemmWide;
typedef GemmShape<32, 64> GemmNarrow;

// Resident blocks per SM a tile kernel of shape S on T asks for: the narrow
// tile's double kernels 3 (168 registers), since at 128 the filter gradient's
// 12 fetched doubles (and its handles) spill.
template <typename S, typename T> struct GemmBlocks {
    enum { n = S::BLOCKS > 2 && sizeof(T) == 8 ? 3 : S::BLOCKS };
};

// The wide float tile's kernels entered by GEMM_ENTRY_AB (conv2d's forward and backward data)
// ask for 3 blocks an SM on sm_90 and newer (sm_75 and sm_80's ptxas spills 8 bytes there, so
// older targets keep GemmBlocks): 79-80 registers without a spill (ptxas, sm_90), where 2 let
// them hold 101-115. On the H200 (bench/results/gpu-2026-11-30-s20, step 5e, where this was the A/B build)
// that took 0.86-0.92 of the 2-block time on cifar-resnet and resnet-3x3, 1.00-1.06 on
// cifar-resnet-s2 and resnet-7x7x512. The filter gradient's spilled 16 bytes at 3, so it keeps
// GEMM_ENTRY. GPUCNN_FFMA_BLOCKS (an A/B build, gpucnn/runtime/loader.py's BUILD) sets the count.
#ifndef GPUCNN_FFMA_BLOCKS
#define GPUCNN_FFMA_BLOCKS 3
#endif
template <typename S, typename T> struct GemmBlocksAB {
    enum { n = S::THREADS == 256 && sizeof(T) == 4 ? GPUCNN_FFMA_BLOCKS : GemmBlocks<S, T>::n };
};

// The entry points of tile kernels of shape S on T; GEMM_KERNEL: the wide tile's.
#define GEMM_ENTRY(S, T) extern "C" __global__ void __launch_bounds__(S::THREADS, (GemmBlocks<S, T>::n))
#define GEMM_ENTRY_AB(S, T) \
    extern "C" __global__ void __launch_bounds__(S::THREADS, __CUDA_ARCH__ >= 900 ? GemmBlocksAB<S, T>::n : GemmBlocks<S, T>::n)
#define GEMM_KERNEL extern "C" __global__ void __launch_bounds__(GemmWide::THREADS, GemmWide::BLOCKS)

// The block's tiles, declared __shared__ in each kernel's body and passed in:
// the emulator charges a __shared__ declared in a device function to every
// kernel of the module, which would put each kernel over the 48 KiB limit.
// E (when not void) is the Op's k-table entry (Op::KTab): two buffers of one
// entry per k of the step, see gemm_tile. S, the tile's shape, travels with it.
// Rows padded by one 16-byte vector: rows stay 16-byte aligned for the
// vector loads, and the 16 threads that store one k-column each (ALONG_K
// fetch) land on 16 different banks in pairs instead of all on one.
template <typename T, typename S> struct GemmTiles {
    typedef S Shape;
    enum { LDA = S::BM + Vec16<T>::n, LDB = S::BN + Vec16<T>::n };
    __align__(16) T a[GEMM_BK][LDA];
    __align__(16) T b[GEMM_BK][LDB];
};
template <typename T, typename E = void, typename S = GemmWide> struct GemmSmem : GemmTiles<T, S> {
    __align__(16) E ktab[2][GEMM_BK];
};
template <typename T, typename S> struct GemmSmem<T, void, S> : GemmTiles<T, S> {};

// An Op's gathers are written once as addresses, for both GEMMs: pa(row, k)
// and pb(col, k) (with the k-table entry when the Op has one) give the
// element's address, or for an operand with padding (only B may have any) a
// GemmAt: an address and whether the element exists, the address an element
// of the tensor even for a zero (padding), so that the tensor-core tile
// (tc_gemm.cuh) hands it to a zero-filling cp.async with no test of its own.
// a()/b() read them for this tile.
template <typename T> struct GemmAt {
    const T* p;
    bool ok;
};
template <typename T> __device__ __forceinline__ T gemm_deref(GemmAt<T> a) { return a.ok ? *a.p : T(0); }

// Whether Op gathers through a k-table: an Op may declare
//   typedef ... KTab;                   what every element of reduction index k needs
//   KTab op.ktab(int k)                 computed once per step for each of its GEMM_BK k
//   T op.a(const Row&, int k, const KTab&), T op.b(const Col&, int k, const KTab&)
// so that the k-dependent part of a gather (the decomposition of k into
// channel and tap, say) costs one division per k of the tile instead of one
// per fetched element.
template <typename X> struct GemmVoid { typedef void type; };
template <typename Op, typename = void> struct GemmKTab { typedef void type; enum { USED = 0 }; };
template <typename Op> struct GemmKTab<Op, typename GemmVoid<typename Op::KTab>::type> {
    typedef typename Op::KTab type;
    enum { USED = 1 };
};
template <typename E> struct GemmKTabArg { typedef E type; };
template <> struct GemmKTabArg<void> { typedef int type; };

// The transposed GEMM of Op, C^T = B^T A^T: its rows are Op's columns and its
// columns Op's rows, read through Op's own gathers and k-table (Op must have
// one). For a GEMM whose columns, not its rows, fit the narrow tile's 32: a
// stem's filter gradient, 64 filters x 27 taps, fills 42% of a 64 x 64 tile
// and 84% of a 32 x 64 one once the taps are its rows (gpucnn/cuda/algo.py).
template <typename T, typename Op> struct GemmTransposed {
    Op op;
    int M, N;  // op.N and op.M
    enum { A_ALONG_K = Op::B_ALONG_K, B_ALONG_K = Op::A_ALONG_K };
    typedef typename Op::Col Row;
    typedef typename Op::Row Col;
    typedef typename Op::KTab KTab;
    __device__ Row row(int m) const { return op.col(m); }
    __device__ Col col(int n) const { return op.row(n); }
    __device__ KTab ktab(int k) const { return op.ktab(k); }
    __device__ T a(const Row& r, int k, const KTab& e) const { return op.b(r, k, e); }
    __device__ T b(const Col& c, int k, const KTab& e) const { return op.a(c, k, e); }
};

// Where thread t's fetched element i (i < LOADS) lies in the GEMM_BK x EXT
// tile of one operand (EXT: BM for A, BN for B) that THREADS threads fetch:
// its k, its row or column (mn), and which precomputed Row/Col handle it uses.
// Along k, a thread fetches KP = 256 / THREADS k of each of its rows (16 / KP
// threads per row): the narrow tile's B (8 elements a thread) keeps 4 handles
// instead of 8, which the filter gradient would spill, and both operands of a
// tile read the same KP k-table entries, one shared load each for the two.
template <bool ALONG_K, int EXT, int THREADS> struct GemmFetch;
template <int EXT, int THREADS> struct GemmFetch<true, EXT, THREADS> {
    enum { LOADS = EXT * GEMM_BK / THREADS, KP = GEMM_THREADS / THREADS, HANDLES = LOADS / KP,
           PER_ROW = GEMM_BK / KP };
    static_assert(HANDLES * KP == LOADS, "a thread fetches whole runs of KP k");
    static __device__ __forceinline__ int k(int t, int i) { return t % PER_ROW + PER_ROW * (i % KP); }
    static __device__ __forceinline__ int mn(int t, int i) { return t / PER_ROW + (THREADS / PER_ROW) * (i / KP); }
    static __device__ __forceinline__ int handle(int i) { return i / KP; }
};
template <int EXT, int THREADS> struct GemmFetch<false, EXT, THREADS> {  // EXT threads per k, one row each
    enum { LOADS = EXT * GEMM_BK / THREADS, KP = LOADS, HANDLES = 1 };
    static_assert(THREADS % EXT == 0, "a thread fetches one row or column of the tile");
    static __device__ __forceinline__ int k(int t, int i) { return t / EXT + (THREADS / EXT) * i; }
    static __device__ __forceinline__ int mn(int t, int) { return t % EXT; }
    static __device__ __forceinline__ int handle(int) { return 0; }
};

// Row (or column) of the tile that micro-tile index i of thread coordinate
// tc (ty or tx, of THREADS_ALONG threads) stands for: vectors of V
// neighbours, bands of THREADS_ALONG vectors.
template <typename T, int THREADS_ALONG> __device__ __forceinline__ int gemm_micro(int tc, int i) {
    const int V = Vec16<T>::n;
    return (i / V) * (THREADS_ALONG * V) + V * tc + i % V;
}

// One operand's handles: Row or Col structs for the rows it fetches, and
// whether each is inside the matrix.
template <typename H, int N> struct GemmHandles {
    H h[N];
    bool ok[N];
};

template <typename L, typename H, typename F>
__device__ __forceinline__ void gemm_handles(GemmHandles<H, L::HANDLES>& hs, int mn0, int limit, F make) {
#pragma unroll
    for (int i = 0; i < L::HANDLES; ++i) {
        const int m = mn0 + L::mn(threadIdx.x, i * L::KP);  // handle i serves elements i*KP .. i*KP + KP-1
        hs.ok[i] = m < limit;
        hs.h[i] = make(hs.ok[i] ? m : 0);
    }
}

// r[i] = the operand's element i for the step starting at k0 (zero outside);
// get(handle, k, e) with e = tab[k - k0], the k-table entry (tab: the step's
// buffer, or null for an Op without one). The entries are read unconditionally
// once per step for an operand laid out along k (KP k for all its elements),
// so that an entry is one 128-bit shared load for both operands.
template <bool ALONG_K, bool TAB, typename L, typename T, typename H, typename E, typename Get>
__device__ __forceinline__ void gemm_fetch(const GemmHandles<H, L::HANDLES>& hs, int k0, int kend, const E* tab,
                                           Get get, T (&r)[L::LOADS]) {
    E e[L::LOADS];
#pragma unroll
    for (int i = 0; i < L::LOADS; ++i)
        if constexpr (TAB && ALONG_K) e[i] = i >= L::KP ? e[i % L::KP] : tab[L::k(threadIdx.x, i)];
#pragma unroll
    for (int i = 0; i < L::LOADS; ++i) {
        const int k = k0 + L::k(threadIdx.x, i);
        if constexpr (TAB && !ALONG_K) e[i] = tab[L::k(threadIdx.x, i)];
        r[i] = (hs.ok[L::handle(i)] && k < kend) ? get(hs.h[L::handle(i)], k, e[i]) : T(0);
    }
}

template <typename L, typename T, int LD>
__device__ __forceinline__ void gemm_stash(T (*s)[LD], const T (&r)[L::LOADS]) {
#pragma unroll
    for (int i = 0; i < L::LOADS; ++i) s[L::k(threadIdx.x, i)][L::mn(threadIdx.x, i)] = r[i];
}

// out[i] = row[gemm_micro(tc, i)] by 16-byte vectors.
template <int THREADS_ALONG, typename T>
__device__ __forceinline__ void gemm_lds(const T* row, int tc, T (&out)[GEMM_TM]) {
    typedef typename Vec16<T>::type V;
    const int L = Vec16<T>::n;
#pragma unroll
    for (int v = 0; v < GEMM_TM / L; ++v) {
        const V x = *reinterpret_cast<const V*>(row + gemm_micro<T, THREADS_ALONG>(tc, v * L));
        const T* e = reinterpret_cast<const T*>(&x);
#pragma unroll
        for (int j = 0; j < L; ++j) out[v * L + j] = e[j];
    }
}

// acc[i][j] = sum over k in [kbeg, kend) of A[m0 + gemm_micro(ty, i), k] * B[k, n0 + gemm_micro(tx, j)].
// Every thread of the block must call it with the same arguments: its barriers
// are reached by all threads because the step count depends only on kbeg, kend.
// A k-table Op's entries for step j are written by threads 0..15 into buffer
// j % 2 before the barrier that precedes step j's fetch; the buffer was last
// read by step j - 2's fetch, which finished before step j - 2's second barrier.
template <typename T, typename Op, typename Sm>
__device__ void gemm_tile(const Op& op, Sm& sm, int m0, int n0, int kbeg, int kend,
                          T (&acc)[GEMM_TM][GEMM_TN]) {
    typedef typename Sm::Shape S;
    typedef GemmFetch<Op::A_ALONG_K, S::BM, S::THREADS> LA;
    typedef GemmFetch<Op::B_ALONG_K, S::BN, S::THREADS> LB;
    typedef GemmKTab<Op> KT;
    typedef typename KT::type E;
    const int t = threadIdx.x, tx = gemm_tx<T>(t), ty = gemm_ty<T>(t);
    typedef typename GemmKTabArg<E>::type EA;  // int (unused) for an Op without a k-table
    int buf = 0;
    const auto tab = [&]() -> const EA* {
        if constexpr (KT::USED) return sm.ktab[buf];
        else return nullptr;
    };
    const auto geta = [&](const typename Op::Row& r, int k, const EA& e) {
        if constexpr (KT::USED) return op.a(r, k, e);
        else return op.a(r, k);
    };
    const auto getb = [&](const typename Op::Col& c, int k, const EA& e) {
        if constexpr (KT::USED) return op.b(c, k, e);
        else return op.b(c, k);
    };
    GemmHandles<typename Op::Row, LA::HANDLES> rows;
    GemmHandles<typename Op::Col, LB::HANDLES> cols;
    gemm_handles<LA>(rows, m0, op.M, [&op](int m) { return op.row(m); });
    gemm_handles<LB>(cols, n0, op.N, [&op](int n) { return op.col(n); });

#pragma unroll
    for (int i = 0; i < GEMM_TM; ++i)
#pragma unroll
        for (int j = 0; j < GEMM_TN; ++j) acc[i][j] = T(0);

    if constexpr (KT::USED) {
        if (t < GEMM_BK && kbeg + t < kend) sm.ktab[0][t] = op.ktab(kbeg + t);
        __syncthreads();  // uniform: every thread reaches it
    }
    T ra[LA::LOADS], rb[LB::LOADS];
    gemm_fetch<Op::A_ALONG_K, KT::USED, LA>(rows, kbeg, kend, tab(), geta, ra);
    gemm_fetch<Op::B_ALONG_K, KT::USED, LB>(cols, kbeg, kend, tab(), getb, rb);
    for (int k0 = kbeg; k0 < kend; k0 += GEMM_BK) {
        gemm_stash<LA>(sm.a, ra);
        gemm_stash<LB>(sm.b, rb);
        if constexpr (KT::USED) {
            const int k = k0 + GEMM_BK + t;
            if (t < GEMM_BK && k < kend) sm.ktab[buf ^ 1][t] = op.ktab(k);
        }
        __syncthreads();  // the tile (and the next step's k-table) is complete before anyone reads it
        if (k0 + GEMM_BK < kend) {  // uniform: the same for every thread of the block
            buf ^= 1;
            gemm_fetch<Op::A_ALONG_K, KT::USED, LA>(rows, k0 + GEMM_BK, kend, tab(), geta, ra);
            gemm_fetch<Op::B_ALONG_K, KT::USED, LB>(cols, k0 + GEMM_BK, kend, tab(), getb, rb);
        }
#pragma unroll
        for (int kk = 0; kk < GEMM_BK; ++kk) {
            T a[GEMM_TM], b[GEMM_TN];
            gemm_lds<S::TY>(sm.a[kk], ty, a);
            gemm_lds<S::TX>(sm.b[kk], tx, b);
#pragma unroll
            for (int i = 0; i < GEMM_TM; ++i)
#pragma unroll
                for (int j = 0; j < GEMM_TN; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();  // everyone is done reading before the next tile overwrites it
    }
}

// The block's tile of op's GEMM over [kbeg, kend), handed to run(m, n, v)
// in runs of RUN columns (v: the RUN sums of columns n..n+RUN-1, some past
// op.N when the run crosses it) for m < op.M, n < op.N. A thread's micro-tile
// columns come in runs of Vec16<T>::n (gemm_micro), so RUN may be 1 or that.
// Tiles run over grid x (columns) and y (rows).
template <typename T, int RUN, typename Op, typename Sm, typename Run>
__device__ __forceinline__ void gemm_block_runs(const Op& op, Sm& sm, int kbeg, int kend, Run run) {
    typedef typename Sm::Shape S;
    const int m0 = blockIdx.y * S::BM, n0 = blockIdx.x * S::BN;
    const int tx = gemm_tx<T>(threadIdx.x), ty = gemm_ty<T>(threadIdx.x);
    T acc[GEMM_TM][GEMM_TN];
    gemm_tile<T>(op, sm, m0, n0, kbeg, kend, acc);
#pragma unroll
    for (int i = 0; i < GEMM_TM; ++i) {
        const int m = m0 + gemm_micro<T, S::TY>(ty, i);
        if (m >= op.M) continue;
#pragma unroll
        for (int j = 0; j < GEMM_TN; j += RUN) {
            const int n = n0 + gemm_micro<T, S::TX>(tx, j);
            if (n < op.N) run(m, n, &acc[i][j]);
        }
    }
}

// The tile handed element by element to store(m, n, value): the epilogue
// every GEMM kernel shares, so that a kernel says only where its results go.
template <typename T, typename Op, typename Sm, typename Store>
__device__ __forceinline__ void gemm_block(const Op& op, Sm& sm, int kbeg, int kend, Store store) {
    gemm_block_runs<T, 1>(op, sm, kbeg, kend, [&](int m, int n, const T* v) { store(m, n, v[0]); });
}

// The same tile stored through an epilogue object, by 16-byte vectors where the
// layout allows (conv2d's NCHW outputs whose planes hold whole vectors):
//   T* epi.out                    where results go
//   bool epi.vec                  every run of V = Vec16<T>::n columns starting at a multiple
//                                 of V lies contiguous and 16-byte aligned in out (then op.N % V == 0)
//   long long epi.at(m, n)        the offset of (m, n) in out
//   T epi.value(m, n, v)          what is stored for the sum v (bias, activation)
// Each run of V columns is one vector store and one offset computation (the
// index division) instead of V.
template <typename T, typename Op, typename Sm, typename Epi>
__device__ __forceinline__ void gemm_block_epilogue(const Op& op, Sm& sm, int kbeg, int kend, const Epi& epi) {
    typedef typename Vec16<T>::type V;
    const int L = Vec16<T>::n;
    gemm_block_runs<T, Vec16<T>::n>(op, sm, kbeg, kend, [&](int m, int n, const T* v) {
        if (epi.vec) {
            V r;
            T* e = reinterpret_cast<T*>(&r);
#pragma unroll
            for (int k = 0; k < L; ++k) e[k] = epi.value(m, n + k, v[k]);
            *reinterpret_cast<V*>(epi.out + epi.at(m, n)) = r;
        } else {
#pragma unroll
            for (int k = 0; k < L; ++k)
                if (n + k < op.N) epi.out[epi.at(m, n + k)] = epi.value(m, n + k, v[k]);
        }
    });
}

// gemm_block over the kernel's shared memory, as a callable run(op, kbeg,
// kend, store): the kernels' GEMM bodies take either this or tc_gemm.cuh's
// TcRun, so one body serves the FFMA and the tensor-core kernels. A store that
// is an epilogue object (with at() and value(), see gemm_block_epilogue) goes
// through the vector epilogue; a plain store(m, n, v) callable through gemm_block.
template <typename T, typename Sm> struct GemmRun {
    Sm& sm;
    template <typename Op, typename Epi>
    __device__ __forceinline__ auto pick(const Op& op, int kbeg, int kend, const Epi& epi, int) const
        -> decltype(epi.at(0, 0), void()) {
        gemm_block_epilogue<T>(op, sm, kbeg, kend, epi);
    }
    template <typename Op, typename Store>
    __device__ __forceinline__ void pick(const Op& op, int kbeg, int kend, const Store& store, long) const {
        gemm_block<T>(op, sm, kbeg, kend, store);
    }
    template <typename Op, typename Store>
    __device__ __forceinline__ void operator()(const Op& op, int kbeg, int kend, const Store& store) const {
        pick(op, kbeg, kend, store, 0);
    }
};
template <typename T, typename Sm> __device__ __forceinline__ GemmRun<T, Sm> gemm_run(Sm& sm) {
    return GemmRun<T, Sm>{sm};
}

// ------------------------------------------------- deterministic reductions

// dst[i] = part[0][i] + part[1][i] + ... in split order: a GEMM whose reduction
// was split over blocks adds its partial tiles here, and the fixed order makes
// the result the same bits on every run.
template <typename T>
__device__ void sum_splits(const T* __restrict__ part, T* __restrict__ dst, long long n, int splits, int relu = 0) {
    GRID_STRIDE_LOOP(i, n) {
        T acc = part[i];
        for (int s = 1; s < splits; ++s) acc += part[(long long)s * n + i];
        dst[i] = relu_if(acc, relu);  // a split GEMM's fused activation, after the whole sum
    }
}

// db[k] = sum of dy[:, k] for dy (N, K, PQ): one block per channel
// (block-stride over channels), then a fixed tree over the block's threads in
// part (GEMM_THREADS shared values), so the summation order never depends on timing.
template <typename T>
__device__ void bias_grad(T* part, const T* __restrict__ dy, T* __restrict__ db, int N, int K, int PQ) {
    const int t = threadIdx.x;
    const long long NPQ = (long long)N * PQ;
    for (int k = blockIdx.x; k < K; k += gridDim.x) {  // uniform per block: barriers are safe
        T acc = T(0);
        for (long long i = t; i < NPQ; i += GEMM_THREADS) {
            const long long img = i / PQ;
            acc += dy[(img * K + k) * PQ + (i - img * PQ)];
        }
        part[t] = acc;
        __syncthreads();
        for (int s = GEMM_THREADS / 2; s > 0; s >>= 1) {
            if (t < s) part[t] += part[t + s];
            __syncthreads();
        }
        if (t == 0) db[k] = part[0];
        __syncthreads();  // part[0] is read before the next channel overwrites it
    }
}
