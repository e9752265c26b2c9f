// channel.cuh: per-channel maps and reductions over (N, C, HW) tensors, for
// the memory-bound kernels of batchnorm.cu and conv2d.cu's bias gradient.
//
// Reductions run on a 2-D grid of (channel, chunk) blocks: block z covers
// chunk j = z / C of channel c = z % C (blocks stride over C*chunks, so any
// grid works), with double accumulators. Level one is a fixed tree over the
// block into part[(c*chunks + j)*S + s]; level two (channel_total) adds a
// channel's chunks in chunk order, in the same launch: thread 0 of each
// (channel, chunk) block stores its sums and counts the chunk in on
// the channel's counter (an acquire-release atomicInc, which wraps to 0 at the
// last chunk: the counters are zero again for the next launch), and the one
// that counts the last chunk adds the channel's chunks (the PTX release and
// acquire; the emulator's race check follows them). The atomic only
// elects the block; the float sums' order is fixed, so the bits never depend
// on which block finishes last. One launch instead of two saves the second
// kernel's launch gap and its own ramp (LAUNCH_US ~2 us, model_consts) on a
// ~8 us read; the price is an acquire-release L2 atomic a block (thread 0,
// after the tree) and one channel's total (chunks x S L2 loads) in the last block.
// A counter a channel, not one a launch: the last block then totals one
// channel, not all C (C = 2048 channels of one chunk each would be 8 loads in
// a row for each of its threads; here none, as one chunk needs no count).
// A thread reads groups of G elements: G = 4 floats or 2 doubles (16 bytes)
// when HW is a multiple of that, else G = 1; a group is one 16-byte load
// when the term's pointers are aligned, else G loads in the same order, so
// the bits follow the shape alone. Each thread keeps U groups of each stream
// in flight: Little's law on the H200 needs ~22 KiB of reads in flight per SM
// (4.3 TB/s x 700 ns / 132); 4 blocks x 256 threads hold 64 KiB with U = 4
// and one stream (16 bytes a thread before: 4 scalar loads), 64-96 KiB with
// U = 2 and the backward sums' 2 or 3 (CH_BLOCKS' 64 registers hold no more).
// Group (img, off) of channel c is at (img*C + c)*(HW/G) + off; a thread walks
// it by a fixed stride with a compare and a carry, so no 64-bit division runs
// per group (one per thread, at its start).
#pragma once
// Included after common.cuh and mma.cuh (atomic_inc_acq_rel, cp_async), as batchnorm.cu and
// conv2d.cu do: the loader inlines each include where it stands, so headers do not include them.

#define CH_THREADS 256
#define CH_UNROLL 4      // U for one stream: the statistics, the bias gradient
#define CH_UNROLL_BWD 2  // U for the batch-norm backward sums' 2 or 3 streams
#define CH_BLOCKS 4  // resident blocks per SM the reductions are built for (__launch_bounds__; norm.py's waves)

// Channel c's group i (0 <= i < N*hw) and its index in the tensor's groups,
// (img*C + c)*hw + off (g), advanced by a fixed stride: the offset in 32 bits
// (off < hw: a plane fits in int, the launch code checks) and the index
// carried by the stride's constant 64-bit step and, where the offset wraps,
// the image carry's (C - 1)*hw (one wide multiply-add), rather than
// multiplied out at each group.
struct ChannelWalk {
    long long g, step;
    int off, soff, cm1;
    __device__ ChannelWalk(long long i, int stride, int hw, int c, int C)
        : step((long long)(stride / hw) * C * hw + stride % hw), soff(stride % hw), cm1(C - 1) {
        long long r;
        const long long img = div_rem(i, hw, r);
        off = (int)r;
        g = (img * C + c) * hw + off;
    }
    __device__ __forceinline__ void next(int hw) {
        g += step;
        off += soff;
        if (off >= hw) off -= hw, g += (long long)cm1 * hw;
    }
};

// v = the G elements of group g of p: one 16-byte load when Vec (G elements
// are 16 bytes and p is aligned), else G loads.
template <int G, bool Vec, typename T>
__device__ __forceinline__ void load_group(const T* __restrict__ p, long long g, T (&v)[G]) {
    if constexpr (Vec) {
        typedef typename Vec16<T>::type V;
        const V t = reinterpret_cast<const V*>(p)[g];
        const T* e = reinterpret_cast<const T*>(&t);
#pragma unroll
        for (int k = 0; k < G; ++k) v[k] = e[k];
    } else {
#pragma unroll
        for (int k = 0; k < G; ++k) v[k] = p[g * G + k];
    }
}

// Thread 0's v[s] = the sum of v[s] over the block, by a fixed tree (lanes by
// shuffles, then the 8 warps' sums: block_warp_sum, one barrier where the
// shared-memory tree of 256 took 9 on the kernel's tail); every thread must
// call it, and part may be reused after the caller's next barrier.
template <int S> __device__ __forceinline__ void channel_block_sum(double (*part)[CH_THREADS], double (&v)[S]) {
    block_warp_sum<S, CH_THREADS>(part, v);
}

// Level two: tot[s] = the chunks of channel c added in chunk order. __ldcg:
// other blocks wrote them during this launch (L2, never a stale L1 line).
// 8 doubles' loads in flight (8 chunks of the bias gradient, 4 of the
// two-sum reductions: 8 of theirs spilled at CH_BLOCKS' 64 registers): a
// one-wave launch's 8 chunks a channel (C = 64 on 132 SMs) in one or two L2
// round trips on the launch's tail.
template <int S> __device__ __forceinline__ void channel_total(const double* part, int c, int chunks,
                                                             double (&tot)[S]) {
    constexpr int B = 8 / S;
#pragma unroll
    for (int s = 0; s < S; ++s) tot[s] = 0.0;
    for (int j0 = 0; j0 < chunks; j0 += B) {
        double p[B][S];
#pragma unroll
        for (int b = 0; b < B; ++b)
#pragma unroll
            for (int s = 0; s < S; ++s)
                p[b][s] = j0 + b < chunks ? __ldcg(part + ((long long)c * chunks + j0 + b) * S + s) : 0.0;
#pragma unroll
        for (int b = 0; b < B; ++b)
            if (j0 + b < chunks)
#pragma unroll
                for (int s = 0; s < S; ++s) tot[s] += p[b][s];
    }
}

// Thread 0 of block (c, j), with the block's sums v: store them; if chunk j is
// the channel's last to finish (or its only one), finish the channel: fin(c)
// loads what the channel's results need and returns done, then done(tot)
// with the channel's totals (two steps, so fin's loads go out with the
// chunks' rather than after them). The count is one acquire-release atomic
// (mma.cuh's atomic_inc_acq_rel): its release makes this block's sums visible
// before the count says they are there, its acquire makes the last block's
// loads see every chunk the count has seen. On the launch's tail, where the
// last block of a channel waits on each step, that is one fence (MEMBAR.ALL)
// where __threadfence() around atomicInc took two sequentially consistent
// ones. A channel of one chunk adds its sums to +0.0 (channel_total's start:
// the same bits) without reading back its own store.
template <int S, typename Fin>
__device__ __forceinline__ void channel_done(const double (&v)[S], double* out, unsigned* count, int c, int j,
                                             int chunks, const Fin& fin) {
#pragma unroll
    for (int s = 0; s < S; ++s) out[((long long)c * chunks + j) * S + s] = v[s];
    if (chunks > 1 && atomic_inc_acq_rel(count + c, (unsigned)chunks - 1) != (unsigned)chunks - 1) return;
    const auto done = fin(c);
    double tot[S];
    if (chunks > 1) {
        channel_total<S>(out, c, chunks, tot);
    } else {
#pragma unroll
        for (int s = 0; s < S; ++s) tot[s] = 0.0 + v[s];
    }
    done(tot);
}

// The (channel, chunk) blocks, both levels: block z takes chunk j = z / C of
// channel c = z % C (blocks stride over C*chunks, so any grid works);
// walk(tc, c, beg, end, acc) adds the chunk's groups [beg, end) of the
// channel's n into U accumulators of S sums (tc: the channel's term); then
// (a0 + a1) (+ a2) + a3, the block's tree and the channel's election
// (channel_done). channel_walk and channel_walk_async walk it.
template <int S, int U, typename Term, typename Fin, typename Walk>
__device__ __forceinline__ void channel_blocks(double (*part)[CH_THREADS], double* out, unsigned* count, int C,
                                               long long n, long long cg, int chunks, const Term& term,
                                               const Fin& fin, const Walk& walk) {
    for (long long z = blockIdx.x; z < (long long)C * chunks; z += gridDim.x) {  // uniform per block
        long long zc;
        const int j = (int)div_rem(z, C, zc), c = (int)zc;
        const long long beg = j * cg, end = min(n, beg + cg);
        double acc[U][S];
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int s = 0; s < S; ++s) acc[u][s] = 0.0;
        walk(term.channel(c), c, beg, end, acc);
        double v[S];
#pragma unroll
        for (int s = 0; s < S; ++s) {
            v[s] = acc[0][s];
#pragma unroll
            for (int u = 1; u < U; ++u) v[s] += acc[u][s];
        }
        channel_block_sum<S>(part, v);
        if (threadIdx.x == 0) channel_done<S>(v, out, count, c, j, chunks, fin);
        __syncthreads();  // part is read before the next block's sums overwrite it
    }
}

// One (channel, chunk) block's walk over groups of G: thread t's accumulator
// u adds the groups t + 256u, t + 256u + 256U, ... of the chunk (of each
// plane's part of it when a plane holds a block step of 256U groups or more),
// each group's elements in order.
template <int S, int U, int G, bool Vec, typename Term, typename Fin>
__device__ void channel_walk(double (*part)[CH_THREADS], double* out, unsigned* count, int N, int C, long long HW,
                             long long chunk, int chunks, const Term& term, const Fin& fin) {
    const int t = threadIdx.x;
    const int hw = (int)(HW / G), step = CH_THREADS * U;
    const long long n = (long long)N * hw, cg = chunk / G;  // groups a channel, a chunk (chunk % G == 0)
    channel_blocks<S, U>(part, out, count, C, n, cg, chunks, term, fin,
                         [&](const Term& tc, int c, long long beg, long long end, double (&acc)[U][S]) {
        if (hw >= step) {  // planes of a block step or more: walk each image's part of the chunk
            for (int img = (int)(beg / hw); img < N && (long long)img * hw < end; ++img) {
                const long long first = (long long)img * hw;
                const int lo = (int)(max(beg, first) - first), hi = (int)(min(end, first + hw) - first);
                const long long at = ((long long)img * C + c) * hw;
                for (int o = lo + t; o < hi; o += step) {
#pragma unroll
                    for (int u = 0; u < U; ++u)  // independent loads: all in flight at once
                        if (o + u * CH_THREADS < hi) tc.template add<G, Vec>(at + o + u * CH_THREADS, acc[u]);
                }
            }
        } else if (beg + t < end) {  // small planes: one (img, off) walk by 256 groups, carried
            const int cnt = (int)((end - beg - t + CH_THREADS - 1) / CH_THREADS);  // this thread's groups
            ChannelWalk w(beg + t, CH_THREADS, hw, c, C);
            for (int k = 0; k < cnt; k += U) {
#pragma unroll
                for (int u = 0; u < U; ++u) {
                    if (k + u < cnt) tc.template add<G, Vec>(w.g, acc[u]);
                    w.next(hw);
                }
            }
        }
    });
}

// The float walk through shared memory (batchnorm_stats_async_f32,
// conv2d_bias_grad_async_f32; bench/ab_mem.py's "async" against channel_walk):
// each thread copies its 16-byte groups of src into its own CH_RING slots with
// cp.async, CH_RING - 1 ahead of the one it adds, so the loads stay in flight
// while it converts and adds (and hold no register: 7 groups, 112 bytes a
// thread, 112 KiB an SM at 4 blocks, against the walk's 64 bytes in a burst,
// then none while it adds). The H200 ran channel_walk's one wave of the
// statistics at 42% of DRAM's rate (ncu, 2026-11-30), and this walk 14.5 us
// where that took 16.5. Only its own thread reads a slot (after the
// cp_async_wait that covers it, and before compiler_fence and the next copy
// into the slot), so no barrier. The order: thread t's accumulator u adds the
// groups t + 256u + 256Uk of the chunk's flattened (image, offset) groups, for
// every plane size (channel_walk's small-plane order; its per-image order for
// planes of a block step or more differs, so those bits may too), a group's 4
// elements by term.add_values<4>. Groups of 4 floats (HW % 4 == 0): a 16-byte
// copy each where src is aligned (Vec), else four 4-byte copies (the same
// order and bits; channel_walk<4, false>'s 16 scalar loads a thread spilled
// beside the ring); HW % 4 != 0 takes channel_walk. sm_80 and newer (cp.async).
// A thread walks whole ring turns (CH_RING groups: each slot and accumulator a
// constant, no bound tests on the reads) and then the part turn left, its
// groups' addresses carried (ChannelWalk): 246 instructions for 4 groups of
// the statistics on sm_90 became 300 for 8.
#define CH_RING 8
// A kernel's ring for channel_walk_async: in shared memory from sm_80 on, else none (channel_walk).
#if __CUDA_ARCH__ >= 800
#define CH_RING_DECL(name) __shared__ float4 name[CH_RING][CH_THREADS]
#else
#define CH_RING_DECL(name) float4 (*name)[CH_THREADS] = nullptr
#endif
template <int S, int U, bool Vec, typename Term, typename Fin>
__device__ void channel_walk_async(float4 (*ring)[CH_THREADS], double (*part)[CH_THREADS], double* out,
                                   unsigned* count, const float* src, int N, int C, long long HW, long long chunk,
                                   int chunks, const Term& term, const Fin& fin) {
    const int t = threadIdx.x;
    const int hw = (int)(HW / 4);
    const auto copy = [&](int slot, long long g) {  // group g into the thread's slot: one copy, or 4 when unaligned
        if constexpr (Vec) {
            cp_async<16>(&ring[slot][t], reinterpret_cast<const float4*>(src) + g, 16);
        } else {
#pragma unroll
            for (int e = 0; e < 4; ++e) cp_async<4>(reinterpret_cast<float*>(&ring[slot][t]) + e, src + g * 4 + e, 4);
        }
    };
    channel_blocks<S, U>(part, out, count, C, (long long)N * hw, chunk / 4, chunks, term, fin,
                         [&](const Term& tc, int c, long long beg, long long end, double (&acc)[U][S]) {
        if (beg + t >= end) return;
        const int cnt = (int)((end - beg - t + CH_THREADS - 1) / CH_THREADS);  // this thread's groups
        ChannelWalk w(beg + t, CH_THREADS, hw, c, C);  // the copies' walk, CH_RING - 1 groups ahead
#pragma unroll
        for (int k = 0; k < CH_RING - 1; ++k) {
            if (k < cnt) copy(k, w.g);
            cp_async_commit();  // empty groups too: the wait below counts groups
            w.next(hw);
        }
        // Group k (in ring slot ``slot``): wait for it, read it (when ``in`` or k < cnt), copy
        // group k + CH_RING - 1 into the slot read one step ago, add it to accumulator a (k % U,
        // a constant where unrolled).
        const auto group = [&](int k, int slot, int a, bool in) {
            cp_async_wait<CH_RING - 2>();  // group k has landed
            in = in || k < cnt;
            float4 q = make_float4(0.f, 0.f, 0.f, 0.f);
            if (in) q = ring[slot][t];
            compiler_fence();  // the read stays before the next copy into the slot
            if (k + CH_RING - 1 < cnt) copy((slot + CH_RING - 1) % CH_RING, w.g);
            cp_async_commit();
            w.next(hw);
            const float v[4] = {q.x, q.y, q.z, q.w};
            if (in) tc.template add_values<4>(v, acc[a]);
        };
        static_assert(CH_RING % U == 0, "a ring turn is whole steps of the U accumulators");
        int k0 = 0;
        for (; k0 + CH_RING <= cnt; k0 += CH_RING) {  // whole turns: slots and accumulators fixed, reads in range
#pragma unroll
            for (int u = 0; u < CH_RING; ++u) group(k0 + u, u, u % U, true);
        }
        for (; k0 < cnt; k0 += U) {  // the last part turn
#pragma unroll
            for (int u = 0; u < U; ++u) group(k0 + u, (k0 + u) % CH_RING, u, false);
        }
        cp_async_wait<0>();  // none left in flight past the block's work
    });
}

// The reduction, both levels in one launch: out[(c*chunks + j)*S + s] = the
// sum over chunk j of channel c of the term's S values, U groups of each
// stream in flight a thread, then fin(c)(tot) once a channel with its totals
// (channel_done; count: C counters, zero before the launch and after it).
// Term (of element type Term::type): channel(c) gives the channel's term (its
// per-channel constants read once), whose add<G, Vec>(g, acc) adds group g's
// elements, loading them with load_group<G, Vec>; aligned() says whether its
// pointers are all 16-byte aligned. chunk is a multiple of 4 (norm.py), so a
// chunk holds whole groups.
template <int S, int U, typename Term, typename Fin>
__device__ void channel_reduce(double (*part)[CH_THREADS], double* out, unsigned* count, int N, int C, long long HW,
                               long long chunk, int chunks, const Term& term, const Fin& fin) {
    constexpr int L = Vec16<typename Term::type>::n;
    if (HW % L != 0)
        channel_walk<S, U, 1, false>(part, out, count, N, C, HW, chunk, chunks, term, fin);
    else if (term.aligned())
        channel_walk<S, U, L, true>(part, out, count, N, C, HW, chunk, chunks, term, fin);
    else
        channel_walk<S, U, L, false>(part, out, count, N, C, HW, chunk, chunks, term, fin);
}

// channel_reduce of src's one stream, its float 16-byte groups through the
// ring where the kernel has one (CH_RING_DECL: sm_80 and newer) and src is
// aligned (channel_walk_async; the term's add_values<4> adds a group), else
// channel_reduce itself: batch norm's statistics, the bias gradient.
template <int S, int U, typename T, typename Term, typename Fin>
__device__ void channel_reduce_ring(double (*part)[CH_THREADS], float4 (*ring)[CH_THREADS], double* out,
                                    unsigned* count, const T* src, int N, int C, long long HW, long long chunk,
                                    int chunks, const Term& term, const Fin& fin) {
    if constexpr (sizeof(T) == 4) {
        // channel_reduce's walks but its two unaligned-vector ones, the 16-byte groups through the ring
        // (4-byte copies where src is unaligned): spelled out here, since channel_reduce's variants,
        // unreachable beside the ring, still spilled the kernel on sm_90 at 64 registers
        if (ring) {
            if (HW % 4 != 0)
                channel_walk<S, U, 1, false>(part, out, count, N, C, HW, chunk, chunks, term, fin);
            else if (aligned16(src))
                channel_walk_async<S, U, true>(ring, part, out, count, src, N, C, HW, chunk, chunks, term, fin);
            else
                channel_walk_async<S, U, false>(ring, part, out, count, src, N, C, HW, chunk, chunks, term, fin);
            return;
        }
    }
    channel_reduce<S, U>(part, out, count, N, C, HW, chunk, chunks, term, fin);
}

// Where item i of an (N, C, HW) layout lies: its channel c and its offset in
// its plane, carried along a walk by a fixed step rather than divided out at
// each item (HW < 2^31, as ChannelWalk): two divisions to start, two for the
// step, then a carry an item.
struct ChannelPos {
    int off, c;
    __device__ __forceinline__ ChannelPos(long long i, int C, long long HW) {
        long long r, rc;
        div_rem(div_rem(i, HW, r), C, rc);
        off = (int)r;
        c = (int)rc;
    }
    // On by step (a ChannelPos of the step itself): c < 2C before the wrap,
    // step.c < C plus one carry.
    __device__ __forceinline__ void advance(const ChannelPos& step, int C, int hw) {
        off += step.off;
        c += step.c;
        if (off >= hw) off -= hw, ++c;
        if (c >= C) c -= C;
    }
};

// f(i, c) for every i < count of an (N, C, HW) layout, c the channel of i:
// a grid-stride loop that carries c along (ChannelPos). The start's two
// divisions are paid once a thread, and the stride's two only in a thread
// that has a second item (four before: two fewer of ~25 instructions each on
// the 32-bit path that the compiler puts in front of a 64-bit division).
template <typename F> __device__ __forceinline__ void channel_map(long long count, int C, long long HW, F f) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    ChannelPos p(i, C, HW);
    f(i, p.c);
    const long long s = (long long)blockDim.x * gridDim.x;
    if (count - i <= s) return;
    const ChannelPos step(s, C, HW);
    for (i += s; i < count; i += s) {
        p.advance(step, C, (int)HW);
        f(i, p.c);
    }
}
