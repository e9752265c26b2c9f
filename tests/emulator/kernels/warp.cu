// Test fixtures: warp shuffles and votes.
template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

extern "C" __global__ void block_sum(const float* __restrict__ x, long long n, float* __restrict__ out) {
    __shared__ float warp_sums[32];
    float v = 0.0f;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x)
        v += x[i];
    v = warp_sum(v);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) warp_sums[w] = v;
    __syncthreads();
    if (w == 0) {
        v = lane < (int)((blockDim.x + 31) / 32) ? warp_sums[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0) out[blockIdx.x] = v;
    }
}

extern "C" __global__ void warp_ops(const int* __restrict__ x, int* __restrict__ scan, int* __restrict__ bcast,
                                    unsigned* __restrict__ ballot, int* __restrict__ anyall,
                                    double* __restrict__ xsum, long long* __restrict__ rot) {
    int t = threadIdx.x, lane = t & 31;
    int v = x[t];
    int s = v;
    for (int o = 1; o < 32; o <<= 1) {
        int u = __shfl_up_sync(0xffffffffu, s, o);
        if (lane >= o) s += u;
    }
    scan[t] = s;
    bcast[t] = __shfl_sync(0xffffffffu, v, 3, 8);
    unsigned b = __ballot_sync(0xffffffffu, v > 0);
    if (lane == 0) ballot[t / 32] = b;
    int any = __any_sync(0xffffffffu, v > 5);
    int all = __all_sync(0xffffffffu, v >= 0);
    anyall[t] = any * 2 + all;
    double d = v;
    for (int m = 16; m; m >>= 1) d += __shfl_xor_sync(0xffffffffu, d, m);
    xsum[t] = d;
    rot[t] = __shfl_sync(__activemask(), (long long)v << 33, lane + 1);
    __syncwarp();
}

// Lanes 16..31 leave early; the collectives name only lanes 0..15 (correct) or all (bug).
extern "C" __global__ void half_warp(const float* __restrict__ x, float* __restrict__ y, unsigned mask) {
    float v = x[threadIdx.x];
    if (threadIdx.x >= 16) {
        y[threadIdx.x] = v;
        return;
    }
    v += __shfl_down_sync(mask, v, 8, 16);
    y[threadIdx.x] = v;
}
