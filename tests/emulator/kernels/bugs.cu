// Test fixtures: kernels with planted bugs. Tests find lines by the BUG markers.
#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)blockDim.x * gridDim.x)

extern "C" __global__ void off_by_one(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 2.0f * x[i < n ? i : 0];  // BUG: off-by-one
}

extern "C" __global__ void shift_left(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i - 1] + x[i];  // BUG: read at -1
}

extern "C" __global__ void evens_only(const float* __restrict__ x, float* __restrict__ y, long long n) {
    GRID_STRIDE(i, n) if (i % 2 == 0) y[i] = x[i];  // BUG: odd elements never written
}

extern "C" __global__ void scale_no_stride(const float* __restrict__ x, float* __restrict__ y, int n, float a) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
}

extern "C" __global__ void early_return(const float* __restrict__ x, float* __restrict__ y, int n) {
    __shared__ float s[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    s[threadIdx.x] = x[i];
    __syncthreads();  // BUG: not reached by the threads that returned
    y[i] = s[(threadIdx.x + 1) % blockDim.x];
}

extern "C" __global__ void split_sync(float* __restrict__ y) {
    __shared__ float s[64];
    int t = threadIdx.x;
    if (t < 32) {
        s[t] = t;
        __syncthreads();  // BUG: site A
    } else {
        s[t] = -t;
        __syncthreads();  // BUG: site B
    }
    y[t] = s[63 - t];
}

extern "C" __global__ void clobber_input(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = x[i];
        const_cast<float*>(x)[i] = 0.0f;  // BUG: write through const
    }
}

#define LB 128
extern "C" __global__ void __launch_bounds__(LB, 2) bounded(float* __restrict__ y) {
    y[blockIdx.x * blockDim.x + threadIdx.x] = 1.0f;
}

extern "C" __global__ void big_smem(float* __restrict__ y) {
    __shared__ float s[10000];
    s[threadIdx.x] = threadIdx.x;
    __syncthreads();
    y[threadIdx.x] = s[threadIdx.x];
}

extern "C" __global__ void divide(const int* __restrict__ x, int* __restrict__ y, int d) {
    y[threadIdx.x] = x[threadIdx.x] / d;  // BUG: division by zero
}

extern "C" __global__ void checked(const float* __restrict__ x, float* __restrict__ y) {
    assert(x[threadIdx.x] >= 0.0f);  // BUG: assert
    y[threadIdx.x] = sqrtf(x[threadIdx.x]);
}

extern "C" __global__ void dyn_overflow(float* __restrict__ y) {
    extern __shared__ float buf[];
    buf[threadIdx.x] = 1.0f;  // BUG: shared_mem too small
    y[threadIdx.x] = buf[threadIdx.x];
}
