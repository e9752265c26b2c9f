// Test fixtures for the checks of checked builds (race_check, misalign,
// sanitize): each planted bug passes a plain launch and is reported by its
// check. Tests find lines by the BUG and OK markers.
#ifndef GPUCNN_INOUT
#define GPUCNN_INOUT
#endif

// Sums of right neighbours through one shared buffer reused for a second
// round: the barrier after the reads of round one is missing, so a thread
// overwrites a word its left neighbour may not have read yet. Threads resumed
// in forward order happen to read before their neighbour writes.
extern "C" __global__ void reuse_without_barrier(const float* __restrict__ x, float* __restrict__ y) {
    __shared__ float s[64];
    const int t = threadIdx.x;
    s[t] = x[t];
    __syncthreads();
    const float v = s[t] + (t < 63 ? s[t + 1] : 0.0f);  // OK: round-one read
    s[t] = 2.0f * v;  // BUG: no barrier between the neighbour's read and this write
    __syncthreads();
    y[t] = s[t] + (t < 63 ? s[t + 1] : 0.0f);
}

// Lanes of one warp exchange values through shared memory; the __syncwarp()
// between the write and the read is what makes it correct.
extern "C" __global__ void warp_exchange(const float* __restrict__ x, float* __restrict__ y, int sync) {
    __shared__ float s[32];
    const int t = threadIdx.x;
    s[t] = x[t];  // OK: warp write
    if (sync) __syncwarp();
    y[t] = s[31 - t];  // BUG: without the __syncwarp()
}

// Every block adds into out[0] with a plain read-modify-write: an inter-block race.
extern "C" __global__ void block_sum_plain(const float* __restrict__ x, float* GPUCNN_INOUT out) {
    if (threadIdx.x == 0) out[0] += x[blockIdx.x];  // BUG: plain += across blocks
}

// The same with an atomic: correct.
extern "C" __global__ void block_sum_atomic(const float* __restrict__ x, float* GPUCNN_INOUT out) {
    if (threadIdx.x == 0) atomicAdd(out, x[blockIdx.x]);
}

// Scatter where duplicate indices let one value win (as max unpooling's contract allows).
extern "C" __global__ void scatter(const float* __restrict__ v, const int* __restrict__ idx, float* GPUCNN_INOUT out,
                                   int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[idx[i]] = v[i];
}

// Block b writes y[b] and reads y[b - 1], which another block writes.
extern "C" __global__ void read_neighbour_block(float* __restrict__ y) {
    if (threadIdx.x != 0) return;
    y[blockIdx.x] = (float)blockIdx.x;  // OK: own element
    if (blockIdx.x > 0) y[blockIdx.x] += y[blockIdx.x - 1];  // BUG: another block's element
}

// out = 2 * in by 16-byte vectors when the pointers allow: the alignment test
// checks the input pointer but forgets the output pointer.
extern "C" __global__ void scale_vec(const float* __restrict__ in, float* __restrict__ out, long long n) {
    const bool vec = (reinterpret_cast<unsigned long long>(in) & 15) == 0;  // BUG: out is not checked
    const long long n4 = vec ? n / 4 : 0;
    for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += blockDim.x * gridDim.x) {
        float4 v = reinterpret_cast<const float4*>(in)[i];
        v.x *= 2.0f; v.y *= 2.0f; v.z *= 2.0f; v.w *= 2.0f;
        reinterpret_cast<float4*>(out)[i] = v;  // BUG: misaligned store
    }
    for (long long i = 4 * n4 + blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        out[i] = 2.0f * in[i];
}

// Element t of image img of a tensor of N*C*HW elements, read through an int
// offset: past 2^31 elements it wraps, and the modulo keeps the wrong index in
// bounds, so a plain launch silently reads the wrong element.
extern "C" __global__ void wrap_index(const float* __restrict__ x, float* __restrict__ y, int C, int HW, int img,
                                      int n) {
    const int t = threadIdx.x;
    const int off = img * C * HW + t;  // BUG: int offset
    y[t] = x[(unsigned)off % (unsigned)n];
}

// y = x over n elements, one thread per element, the index in int (BUG) or in 64 bits.
extern "C" __global__ void copy_int_index(const float* __restrict__ x, float* __restrict__ y, long long n) {
    const int i = (int)blockIdx.x * (int)blockDim.x + (int)threadIdx.x;  // BUG: int index
    if (i < n) y[i] = x[i];
}
extern "C" __global__ void copy_wide_index(const float* __restrict__ x, float* __restrict__ y, long long n) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i];
}

// 1 << s for a per-thread s: s = 32 is undefined (and 0 or 1 on a GPU, depending).
extern "C" __global__ void shift_left(const int* __restrict__ s, unsigned* __restrict__ y) {
    y[threadIdx.x] = 1u << s[threadIdx.x];  // BUG: shift by the width
}

// Copies 16 bytes out of the instrumentation's sight, as an emulated
// primitive may (its accesses are then noted explicitly).
__attribute__((noinline, no_sanitize("thread"))) static void copy16(void* d, const void* s) { memcpy(d, s, 16); }

// A deferred copy as cp.async's emulation does it: issued by thread t, it
// lands (and is noted as thread t's write) at the wait; reading it before the
// barrier that follows the wait is a race.
extern "C" __global__ void deferred_copy(const float* __restrict__ x, float* __restrict__ y, int wait_barrier) {
    __shared__ __align__(16) float s[64];
    const int t = threadIdx.x;
    gpucnn_emu::emu_check_align(&s[4 * (t % 16)], 16, __FILE__, __LINE__);  // OK: checked alignment
    __syncthreads();
    if (t < 16) {
        copy16(&s[4 * t], &x[4 * t]);  // the wait: the copy lands now
        gpucnn_emu::emu_note_write(&s[4 * t], 16, __FILE__, __LINE__);  // OK: cp.async lands
    }
    if (wait_barrier) __syncthreads();
    y[t] = s[63 - t];  // BUG: without the barrier after the wait
}

// emu_check_align on a pointer that is not a multiple of 16.
extern "C" __global__ void check_align_api(const float* __restrict__ x, float* __restrict__ y) {
    gpucnn_emu::emu_check_align(x + 1, 16, __FILE__, __LINE__);  // BUG: x + 1 is 4 bytes off
    y[threadIdx.x] = x[threadIdx.x];
}

// A last-block reduction (CUDA's threadFenceReduction): every thread of a block
// writes a partial, thread 0 counts the block in with an atomicInc (which wraps
// the count back to 0 for the next launch) and the block that sees the count at
// gridDim.x - 1 adds up every block's partials. mode 0 does it right: the
// partials before a barrier, thread 0's fence before its atomic (release), its
// fence after the atomic and a barrier before the reads (acquire). mode 1 drops
// the release fence, mode 2 the acquire fence, mode 3 writes the partials after
// the release fence (unordered), mode 4 reads before the acquire's barrier.
extern "C" __global__ void last_block_sum(const float* __restrict__ x, float* __restrict__ part,
                                          unsigned* GPUCNN_INOUT count, float* __restrict__ out, int mode) {
    __shared__ int last;
    const int t = threadIdx.x, n = blockDim.x;
    if (mode != 3) part[blockIdx.x * n + t] = x[blockIdx.x * n + t];  // OK: partial write
    __syncthreads();
    if (t == 0) {
        if (mode != 1) __threadfence();  // BUG: mode 1 has no release fence
        if (mode == 3)
            for (int k = 0; k < n; ++k) part[blockIdx.x * n + k] = x[blockIdx.x * n + k];  // BUG: after the fence
        last = atomicInc(count, gridDim.x - 1) == gridDim.x - 1;
        if (mode != 2) __threadfence();  // BUG: mode 2 has no acquire fence
    }
    float early = 0.0f;
    if (mode == 4 && t > 0 && blockIdx.x == gridDim.x - 1) early = part[t];  // BUG: before the barrier
    __syncthreads();
    if (last) {
        float s = early - early;
        for (unsigned b = 0; b < gridDim.x; ++b) s += part[b * n + t];  // OK: the last block's read
        out[t] = s;
    }
}
