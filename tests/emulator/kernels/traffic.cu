// Test fixtures of the traffic counts (gpucnn.runtime.emulator.traffic): access
// patterns whose sectors and bank conflicts are worked out by hand in
// tests/emulator/test_emu_traffic.py.

// y[i] = x[i * stride]: a warp reads 32 floats `stride` apart and writes 32 in a row.
extern "C" __global__ void strided_copy(const float* __restrict__ x, float* __restrict__ y, int stride) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    y[i] = x[(long long)i * stride];  // TRAFFIC-GLOBAL
}

// Each lane writes word lane * stride of a shared array, then reads word 0
// (a broadcast), then one float4 at lane * 4 (conflict-free, 4 quarter-warp
// phases), then y[lane] = the sum.
extern "C" __global__ void bank_pattern(float* __restrict__ y, int stride) {
    __shared__ float s[32 * 33];
    const int t = threadIdx.x;
    s[t * stride] = (float)t;  // TRAFFIC-STORE
    __syncthreads();
    const float b = s[0];  // TRAFFIC-BROADCAST
    const float4 v = reinterpret_cast<const float4*>(s)[t];  // TRAFFIC-VEC
    y[t] = b + v.x + v.y + v.z + v.w;  // TRAFFIC-SUM
}

// One float4 a lane from a shared array at byte offset f(lane): mode 0 16 * t (4 phases of 8
// lanes, no conflict), 1 16 * (t / 2) (lane pairs alike: 2), 2 16 * (t % 4) (neither pair rule
// holds: 4, the case of NVIDIA's forum thread 77228), 3 32 * t (each phase's 8 lanes fold onto 16
// banks twice: 2 a phase, 8).
extern "C" __global__ void vec_pattern(float* __restrict__ y, int mode) {
    __shared__ float s[32 * 8];
    const int t = threadIdx.x;
    for (int i = t; i < 32 * 8; i += 32) s[i] = (float)i;
    __syncthreads();
    const int off = mode == 0 ? 4 * t : mode == 1 ? 4 * (t / 2) : mode == 2 ? 4 * (t % 4) : 8 * t;
    const float4 v = *reinterpret_cast<const float4*>(s + off);  // TRAFFIC-PATTERN
    y[t] = v.x + v.y + v.z + v.w;
}

// A 24-byte struct a lane, 8-byte aligned, read from shared memory: a GPU reads it as three
// 8-byte loads (or 16 + 8), never one 24-byte access; lane l reads struct l.
struct Triple { long long a, b, c; };
extern "C" __global__ void wide_struct(long long* __restrict__ y) {
    __shared__ Triple s[32];
    const int t = threadIdx.x;
    s[t] = Triple{t, 2 * t, 3 * t};
    __syncthreads();
    const Triple v = s[t];  // TRAFFIC-STRUCT
    y[t] = v.a + v.b + v.c;
}
