// channel.cuh: per-channel maps and reductions over (N, C, HW) tensors, for
// the memory-bound kernels of batchnorm.cu and conv2d.cu's bias gradient.
//
// Reductions run on a 2-D grid of (channel, chunk) blocks: block z covers
// chunk j = z / C of channel c = z % C (blocks stride over C*chunks, so any
// grid works), each thread keeping CH_UNROLL independent loads in flight
// (Little's law: one load per thread reaches a few percent of HBM bandwidth),
// with double accumulators. Level one is a fixed tree over the block into
// part[(c*chunks + j)*S + s]; level two (channel_total) adds a channel's
// chunks in chunk order. No atomics: the same bits on every run.
// Element (img, off) of channel c is at (img*C + c)*HW + off; a thread walks
// it by a fixed stride with a compare and a carry, so no 64-bit division runs
// per element (one per thread, at its start).
#pragma once

#define CH_THREADS 256
#define CH_UNROLL 4

// (img, off) of a channel's element i (0 <= i < N*HW), advanced by a fixed
// stride; 32-bit, since img < N and off < HW (a plane fits in int: the
// launch code checks), so a step costs a few integer instructions.
struct ChannelWalk {
    int img, off, simg, soff;
    __device__ ChannelWalk(long long i, int stride, int HW)
        : img((int)(i / HW)), off((int)(i % HW)), simg(stride / HW), soff(stride % HW) {}
    __device__ __forceinline__ void next(int HW) {
        img += simg;
        off += soff;
        if (off >= HW) off -= HW, ++img;
    }
    __device__ __forceinline__ long long at(int c, int C, int HW) const {
        return ((long long)img * C + c) * HW + off;
    }
};

// part[s][0] = the sum of v[s] over the block, by a fixed tree; every thread
// must call it (it has barriers), and part may be reused once it returns.
template <int S> __device__ __forceinline__ void channel_block_sum(double (*part)[CH_THREADS], const double (&v)[S]) {
    const int t = threadIdx.x;
#pragma unroll
    for (int s = 0; s < S; ++s) part[s][t] = v[s];
    __syncthreads();
#pragma unroll
    for (int h = CH_THREADS / 2; h > 0; h >>= 1) {
        if (t < h)
#pragma unroll
            for (int s = 0; s < S; ++s) part[s][t] += part[s][t + h];
        __syncthreads();
    }
}

// Level one: out[(c*chunks + j)*S + s] = sum over the chunk's elements e of
// channel c of term(e, c)[s], where e is the element's offset in the tensors
// and term adds its S values into acc. chunk is a multiple of CH_THREADS * CH_UNROLL.
template <int S, typename Term>
__device__ void channel_partials(double (*part)[CH_THREADS], double* __restrict__ out, int N, int C, long long HW,
                                 long long chunk, int chunks, Term term) {
    const int t = threadIdx.x;
    const long long n = (long long)N * HW;
    const int step = CH_THREADS * CH_UNROLL, hw = (int)HW;
    for (long long z = blockIdx.x; z < (long long)C * chunks; z += gridDim.x) {  // uniform per block
        const int c = (int)(z % C), j = (int)(z / C);
        const long long beg = j * chunk, end = min(n, beg + chunk);
        double acc[CH_UNROLL][S];
#pragma unroll
        for (int u = 0; u < CH_UNROLL; ++u)
#pragma unroll
            for (int s = 0; s < S; ++s) acc[u][s] = 0.0;
        if (hw >= step) {  // planes of a block step or more: walk each image's part of the chunk
            for (int img = (int)(beg / hw); img < N && (long long)img * hw < end; ++img) {
                const long long first = (long long)img * hw;
                const int lo = (int)(max(beg, first) - first), hi = (int)(min(end, first + hw) - first);
                const long long at = ((long long)img * C + c) * hw;
                for (int o = lo + t; o < hi; o += step) {
#pragma unroll
                    for (int u = 0; u < CH_UNROLL; ++u)  // independent loads: all in flight at once
                        if (o + u * CH_THREADS < hi) term(at + o + u * CH_THREADS, c, acc[u]);
                }
            }
        } else if (beg + t < end) {  // small planes: walk (img, off) with carries
            ChannelWalk w[CH_UNROLL] = {ChannelWalk(beg + t, step, hw), ChannelWalk(beg + t + CH_THREADS, step, hw),
                                        ChannelWalk(beg + t + 2 * CH_THREADS, step, hw),
                                        ChannelWalk(beg + t + 3 * CH_THREADS, step, hw)};
            for (long long i = beg + t; i < end; i += step) {
#pragma unroll
                for (int u = 0; u < CH_UNROLL; ++u) {
                    if (i + u * CH_THREADS < end) term(w[u].at(c, C, hw), c, acc[u]);
                    w[u].next(hw);
                }
            }
        }
        double v[S];
#pragma unroll
        for (int s = 0; s < S; ++s) v[s] = ((acc[0][s] + acc[1][s]) + acc[2][s]) + acc[3][s];
        channel_block_sum<S>(part, v);
        if (t < S) out[((long long)c * chunks + j) * S + t] = part[t][0];
        __syncthreads();  // part is read before the next block's sums overwrite it
    }
}

// Level two: tot[s] = the chunks of channel c added in chunk order.
template <int S> __device__ __forceinline__ void channel_total(const double* __restrict__ part, int c, int chunks,
                                                             double (&tot)[S]) {
#pragma unroll
    for (int s = 0; s < S; ++s) tot[s] = 0.0;
    for (int j = 0; j < chunks; ++j)
#pragma unroll
        for (int s = 0; s < S; ++s) tot[s] += part[((long long)c * chunks + j) * S + s];
}

// f(i, c) for every i < count of an (N, C, HW) layout, c the channel of i:
// a grid-stride loop that carries c along instead of dividing i per element
// (HW < 2^31, as ChannelWalk).
template <typename F> __device__ __forceinline__ void channel_map(long long count, int C, long long HW, F f) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long s = (long long)blockDim.x * gridDim.x;
    const int hw = (int)HW, soff = (int)(s % HW), sc = (int)((s / HW) % C);
    int off = (int)(i % HW), c = (int)((i / HW) % C);
    for (; i < count; i += s) {
        f(i, c);
        off += soff;
        c += sc;
        if (off >= hw) off -= hw, ++c;
        if (c >= C) c -= C;  // c < 2C: sc < C, plus one carry
    }
}
