// Test fixtures: block-cooperative kernels using static shared memory.
#define TILE 32
#define ROWS 8

extern "C" __global__ void transpose(const float* __restrict__ in, float* __restrict__ out, int rows, int cols) {
    __shared__ float tile[TILE][TILE + 1];
    int x = blockIdx.x * TILE + threadIdx.x, y = blockIdx.y * TILE + threadIdx.y;
#pragma unroll
    for (int j = 0; j < TILE; j += ROWS)
        if (x < cols && y + j < rows) tile[threadIdx.y + j][threadIdx.x] = in[(long long)(y + j) * cols + x];
    __syncthreads();
    x = blockIdx.y * TILE + threadIdx.x;
    y = blockIdx.x * TILE + threadIdx.y;
    for (int j = 0; j < TILE; j += ROWS)
        if (x < rows && y + j < cols) out[(long long)(y + j) * rows + x] = tile[threadIdx.x][threadIdx.y + j];
}

// Planted bug: the same kernel without the barrier between the two phases.
extern "C" __global__ void transpose_nosync(const float* __restrict__ in, float* __restrict__ out, int rows, int cols) {
    __shared__ float tile[TILE][TILE + 1];
    int x = blockIdx.x * TILE + threadIdx.x, y = blockIdx.y * TILE + threadIdx.y;
    for (int j = 0; j < TILE; j += ROWS)
        if (x < cols && y + j < rows) tile[threadIdx.y + j][threadIdx.x] = in[(long long)(y + j) * cols + x];
    x = blockIdx.y * TILE + threadIdx.x;
    y = blockIdx.x * TILE + threadIdx.y;
    for (int j = 0; j < TILE; j += ROWS)
        if (x < rows && y + j < cols) out[(long long)(y + j) * rows + x] = tile[threadIdx.x][threadIdx.y + j];
}

// iters steps of a 3-point periodic smoothing of each 256-element block: two barriers per step.
template <int N> __device__ void smooth_steps(float* s, int t, int iters) {
    for (int k = 0; k < iters; ++k) {
        float v = 0.5f * s[t] + 0.25f * (s[(t + N - 1) % N] + s[(t + 1) % N]);
        __syncthreads();
        s[t] = v;
        __syncthreads();
    }
}

extern "C" __global__ void __launch_bounds__(256) smooth(const float* __restrict__ x, float* __restrict__ y, int iters) {
    __shared__ float s[256];
    int t = threadIdx.x;
    s[t] = x[blockIdx.x * 256 + t];
    __syncthreads();
    smooth_steps<256>(s, t, iters);
    y[blockIdx.x * 256 + t] = s[t];
}

// Shared memory declared in a device-function template: one array per instantiation.
template <typename T, int N> __device__ T block_total(T v) {
    __shared__ T part[N];
    part[threadIdx.x] = v;
    __syncthreads();
    for (int s = N / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    T r = part[0];
    __syncthreads();
    return r;
}

extern "C" __global__ void block_totals(const float* __restrict__ x, const double* __restrict__ d,
                                        float* __restrict__ fs, double* __restrict__ ds) {
    int i = blockIdx.x * 128 + threadIdx.x;
    float f = block_total<float, 128>(x[i]);
    double e = block_total<double, 128>(d[i]);
    if (threadIdx.x == 0) {
        fs[blockIdx.x] = f;
        ds[blockIdx.x] = e;
    }
}

extern "C" __global__ void count_positive(const float* __restrict__ x, int* __restrict__ out) {
    float v = x[blockIdx.x * blockDim.x + threadIdx.x];
    int c = __syncthreads_count(v > 0.0f);
    int a = __syncthreads_and(v > -100.0f);
    int o = __syncthreads_or(v > 100.0f);
    if (threadIdx.x == 0) {
        out[3 * blockIdx.x] = c;
        out[3 * blockIdx.x + 1] = a;
        out[3 * blockIdx.x + 2] = o;
    }
}
