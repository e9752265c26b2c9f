// Test fixtures for the emulator: working kernels (not library kernels).
#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)blockDim.x * gridDim.x)

extern "C" __global__ void vadd(const float* __restrict__ a, const float* __restrict__ b,
                                float* __restrict__ c, long long n) {
    GRID_STRIDE(i, n) c[i] = a[i] + b[i];
}

extern "C" __global__ void vec_types(const float4* __restrict__ x, const double2* __restrict__ d,
                                     float4* __restrict__ y, double2* __restrict__ e, int n4, int n2) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n4) {
        float4 v = x[i];
        y[i] = make_float4(v.w, v.z * 2.0f, v.y + 1.0f, v.x);
    }
    if (i < n2) {
        double2 v = __ldg(&d[i]);
        int2 k = make_int2(1, 2);
        e[i] = make_double2(v.y * k.y, v.x - k.x);
    }
}

// One block: thread 0 initialises the accumulators, then every thread adds in.
extern "C" __global__ void atomics(const int* __restrict__ v, int n, int* __restrict__ iout,
                                   unsigned* __restrict__ uout, long long* __restrict__ llout,
                                   float* __restrict__ fout, double* __restrict__ dout) {
    int t = threadIdx.x;
    if (t == 0) {
        iout[0] = 0; iout[1] = INT_MIN; iout[2] = INT_MAX; iout[3] = 0;
        uout[0] = 0; uout[1] = 0; llout[0] = 0; llout[1] = LLONG_MIN; fout[0] = 0.0f; dout[0] = 0.0; dout[1] = 0.0;
    }
    __syncthreads();
    for (int i = t; i < n; i += blockDim.x) {
        int x = v[i];
        atomicAdd(&iout[0], x);
        atomicMax(&iout[1], x);
        atomicMin(&iout[2], x);
        atomicSub(&iout[3], x);
        atomicAdd(&uout[0], 1u);
        atomicMax(&uout[1], (unsigned)i);
        atomicAdd(&llout[0], (long long)x * 1000000000LL);
        atomicMax(&llout[1], (long long)x * 3);
        atomicAdd(&fout[0], 0.5f * x);
        atomicAdd(&dout[0], 0.25 * x);
        unsigned long long* p = reinterpret_cast<unsigned long long*>(&dout[1]);
        unsigned long long old = *p, assumed;
        do {
            assumed = old;
            old = atomicCAS(p, assumed, (unsigned long long)__double_as_longlong(__longlong_as_double(assumed) + x));
        } while (assumed != old);
    }
}

extern "C" __global__ void hist16(const int* __restrict__ v, long long n, unsigned* __restrict__ out) {
    __shared__ unsigned h[16];
    if (threadIdx.x < 16) h[threadIdx.x] = 0;
    __syncthreads();
    GRID_STRIDE(i, n) atomicAdd(&h[v[i] & 15], 1u);
    __syncthreads();
    if (threadIdx.x < 16) out[blockIdx.x * 16 + threadIdx.x] = h[threadIdx.x];
}

// Accumulates into its output: launched with poison=False.
extern "C" __global__ void gsum(const float* __restrict__ x, long long n, float* acc) {
    GRID_STRIDE(i, n) atomicAdd(acc, x[i]);
}

template <typename T> __device__ __forceinline__ T* smem_as() {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    return reinterpret_cast<T*>(smem_raw);
}

// Reverses each block's slice through dynamic shared memory.
extern "C" __global__ void reverse_dyn(const float* __restrict__ x, float* __restrict__ y, int n) {
    extern __shared__ float buf[];
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    buf[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    if (i < n) y[i] = buf[blockDim.x - 1 - t];
}

extern "C" __global__ void reverse_dyn_f64(const double* __restrict__ x, double* __restrict__ y, int n) {
    double* buf = smem_as<double>();
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    buf[t] = i < n ? x[i] : 0.0;
    __syncthreads();
    if (i < n) y[i] = buf[blockDim.x - 1 - t];
}

extern "C" __global__ void math_ops(const float* __restrict__ x, float* __restrict__ y, const double* __restrict__ d,
                                    double* __restrict__ e, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    y[i] = fmaxf(fminf(__expf(v) + rsqrtf(fabsf(v) + 1.0f) + tanhf(v), 1e30f), -1e30f) +
           (isnan(v) ? 1.0f : 0.0f) + (float)max(i, 3) + (float)min((long long)i, 5LL);
    e[i] = fma(d[i], 2.0, 1.0) + exp(d[i]) + __longlong_as_double(__double_as_longlong(d[i]));
}

// An in-out parameter: the caller's values are read, so it is marked and not poisoned.
#ifndef GPUCNN_INOUT
#define GPUCNN_INOUT
#endif
extern "C" __global__ void scatter_add(const int* __restrict__ idx, const float* __restrict__ v,
                                       float* GPUCNN_INOUT __restrict__ out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[idx[i]] += v[i];
}
