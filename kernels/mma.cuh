// mma.cuh: the warp-level tensor-core primitives of the TF32 GEMM (tc_gemm.cuh),
// each a tiny device function with two bodies: inline PTX under NVRTC, and
// under the emulator (GPUCNN_EMULATOR) a C++ body implementing the PTX ISA's
// semantics (gpucnn/runtime/emulator/include/emu_mma.cpp). Nothing above this
// header knows which body runs.
//
//   mma_tf32(d, a, b, c)       mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, D = A B + C
//                              lane = 4g + t: a = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]
//                                             b = B[t][g], B[t+4][g]
//                                             c, d = C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1]
//                              A register not converted by tf32_rna is read with its 13 low
//                              mantissa bits ignored (truncation to TF32).
//   tf32_rna(x)                cvt.rna.tf32.f32: round to nearest, ties away from zero
//   tf32_rn(x)                 cvt.rn.tf32.f32 (sm_90 and newer): round to nearest, ties to even.
//                              One F2FP.TF32 on sm_90, where ptxas emulates cvt.rna with two
//                              instructions (FSETP |x| < Inf, IADD 0x1000): 96 of the tf32 128
//                              tile's k-step (static-sm90.md). Before sm_90 (no cvt.rn.tf32) it
//                              is cvt.rna: the same bound, half a TF32 ulp, with ties away.
//   ldmatrix_x{1,2,4}[_trans]  ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16: lanes
//                              8i..8i+7 give the 16-byte-aligned rows of matrix i; lane l gets
//                              row l/4, b16 elements 2(l%4), 2(l%4)+1 (.trans: column l/4 of
//                              rows 2(l%4), 2(l%4)+1). On 32-bit data: row l/4, word l%4.
//   cp_async<BYTES>(dst, src, src_bytes)  cp.async of 4, 8 or 16 bytes global -> shared,
//                              aligned to BYTES; bytes past src_bytes are zero-filled (0: none read)
//   cp_async_commit()          cp.async.commit_group
//   cp_async_wait<N>()         cp.async.wait_group N: all but the N most recent groups landed
//   atomic_inc_acq_rel(p, v)   atom.acq_rel.gpu.global.inc.u32: atomicInc's wrap (old >= v ? 0 :
//                              old + 1, the old value returned), both a release of this thread's
//                              earlier accesses and an acquire of what the releases it reads from
//                              published. sm_90 SASS: MEMBAR.ALL.GPU, ATOMG.INC, CCTL.IVALL, where
//                              __threadfence(), atomicInc, __threadfence() takes MEMBAR.SC.GPU
//                              before and after (sequentially consistent fences: more than the
//                              pattern needs). The emulator: exactly those three, which its race
//                              check reads as the release and acquire patterns (emu_check.cpp).
//   keep_in_register(v)        v's value is opaque to the compiler from here (no instruction): it
//                              cannot recompute v from what v was made of, so a loop-invariant made
//                              once stays in its register (ptxas rematerialised the halo kernels'
//                              copy offsets, divisions included, at every step)
//   compiler_fence()           no load or store moves across it in the compiler (no instruction:
//                              a thread's shared-memory accesses issue in order), so a slot's
//                              read stays before the cp_async that refills it (the emulator runs
//                              each thread's statements in order: nothing to do)
//
// Hopper's warpgroup MMA (sm_90a: WGMMA_AVAILABLE; elsewhere the bodies trap), 4 warps together:
//   wgmma_tf32<N>(d, adesc, bdesc, scale_d)
//                              wgmma.mma_async.sync.aligned.m64nNk8.f32.tf32.tf32 (N = 8, 16, ..., 64;
//                              128, the wide tiles' one instruction a k-slice):
//                              D = A B + (scale_d ? D : 0), A (64 x 8) and B (N x 8) both K-major
//                              in shared memory, read through descriptors (wgmma_desc_sw128);
//                              warp w of the warpgroup, lane = 4g + t, holds
//                              d[4j + 2h + e] = D[16w + g + 8h][8j + 2t + e] (N / 2 registers).
//                              Asynchronous: d and the operands' shared memory belong to the
//                              tensor core from the instruction until the wgmma_wait covering it.
//   wgmma_tf32_rs<N>(d, a, bdesc, scale_d)
//                              the same with A from registers (N = 8, 16, 32, 64): warp w's lane 4g + t
//                              gives a = A[16w + g][t], A[16w + g + 8][t], A[16w + g][t + 4],
//                              A[16w + g + 8][t + 4] (mma_tf32's A fragment, a warp's 16 rows of
//                              the 64), read as TF32. Its registers belong to the instruction until
//                              the wait as d's do: a kernel leaves them alone (ptxas keeps them or
//                              serializes; the emulator takes their values at the issue).
//   wgmma_desc_kmajor(addr, lbo, sbo)
//                              the descriptor of a K-major operand without swizzle (mode 0): core
//                              matrices of 8 rows x 16 bytes (4 words of k), each 128 contiguous
//                              bytes; element (r, k) at addr + (r / 8) sbo + (k / 4) lbo + (r % 8) 16
//                              + (k % 4) 4 (the two k-halves of a k8 lbo apart; addr, lbo, sbo
//                              multiples of 16 bytes). Any 16-byte-aligned start: no swizzle phase.
//   wgmma_desc_sw128(tile)     the descriptor of a tile of rows of 128 bytes (32 words: tc_swz's
//                              layout), 16-byte chunk c of row r at chunk c ^ (r % 8), the tile
//                              1024-byte aligned in the shared window: the 128-byte swizzle,
//                              8-row groups 1024 bytes apart (SBO); +2 (32 bytes) a step of k8.
//                              wgmma_desc_sw128_at(addr): the same of a shared-window address.
//                              wgmma_align(p): the first 1024-byte boundary at or after p.
//   wgmma_fence()              wgmma.fence.sync.aligned: before the first wgmma, and after any
//                              other write of its accumulators
//   wgmma_commit()             wgmma.commit_group.sync.aligned
//   wgmma_wait<N>(d)           wgmma.wait_group.sync.aligned N: all but the N most recent groups
//                              done; d (the accumulators) fenced so no use moves above the wait
//   wgmma_wait_only<N>()       the same wait fencing no accumulators: where later groups still own
//                              theirs and the wait is for what the retired ones read (their A
//                              registers, their shared operands)
//   fence_proxy_async()        fence.proxy.async.shared::cta: this thread's shared-memory writes
//                              made visible to wgmma's reads (then a barrier for the others')
//   smem_addr(p)               the shared-window address of p (the emulator: its offset in the
//                              block's dynamic shared memory, where wgmma operands must lie)
#pragma once

#ifdef GPUCNN_EMULATOR  // emu_mma.h, force-included with cuda_emu.h, declares the bodies

__device__ __forceinline__ void mma_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                         const float (&c)[4]) {
    gpucnn_emu::mma_tf32_m16n8k8(d, a, b, c);
}
__device__ __forceinline__ unsigned tf32_rna(float x) { return gpucnn_emu::cvt_rna_tf32(x); }
__device__ __forceinline__ unsigned tf32_rn(float x) { return gpucnn_emu::cvt_rn_tf32(x); }  // sm_90's
template <int COUNT, bool TRANS> __device__ __forceinline__ void ldmatrix(unsigned (&r)[COUNT], const void* row) {
    gpucnn_emu::ldmatrix(r, COUNT, TRANS, row);
}
template <int BYTES> __device__ __forceinline__ void cp_async(void* dst, const void* src, int src_bytes) {
    gpucnn_emu::cp_async(dst, src, BYTES, src_bytes);
}
__device__ __forceinline__ void cp_async_commit() { gpucnn_emu::cp_async_commit(); }
template <int N> __device__ __forceinline__ void cp_async_wait() { gpucnn_emu::cp_async_wait(N); }
__device__ __forceinline__ void keep_in_register(int&) {}
__device__ __forceinline__ void compiler_fence() {}
__device__ __forceinline__ unsigned atomic_inc_acq_rel(unsigned* p, unsigned v) {
    __threadfence();  // the release pattern's fence, then the atomic
    const unsigned old = atomicInc(p, v);
    __threadfence();  // the acquire pattern's
    return old;
}
#define WGMMA_AVAILABLE 1
__device__ __forceinline__ unsigned smem_addr(const void* p) { return gpucnn_emu::smem_offset(p); }
template <int N> __device__ __forceinline__ void wgmma_tf32(float (&d)[N / 2], unsigned long long adesc,
                                                            unsigned long long bdesc, int scale_d) {
    static_assert((N % 8 == 0 && N >= 8 && N <= 64) || N == 128, "wgmma_tf32: N is 8, 16, ..., 64 or 128");
    gpucnn_emu::wgmma_tf32(d, N, adesc, bdesc, scale_d);
}
template <int N> __device__ __forceinline__ void wgmma_tf32_rs(float (&d)[N / 2], const unsigned (&a)[4],
                                                               unsigned long long bdesc, int scale_d) {
    static_assert(N == 8 || N == 16 || N == 32 || N == 64, "wgmma_tf32_rs: N is 8, 16, 32 or 64");
    gpucnn_emu::wgmma_tf32_rs(d, N, a, bdesc, scale_d);
}
__device__ __forceinline__ void wgmma_fence() {}  // the emulator's accumulators are memory: nothing to order
__device__ __forceinline__ void wgmma_commit() { gpucnn_emu::wgmma_commit(); }
template <int N, int R> __device__ __forceinline__ void wgmma_wait(float (&)[R]) { gpucnn_emu::wgmma_wait(N); }
template <int N> __device__ __forceinline__ void wgmma_wait_only() { gpucnn_emu::wgmma_wait(N); }
__device__ __forceinline__ void fence_proxy_async() {}  // one proxy: the wait reads what is there

#else  // NVRTC: the instructions themselves (sm_80 and newer)

__device__ __forceinline__ void mma_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                         const float (&c)[4]) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
                   "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}
__device__ __forceinline__ unsigned tf32_rna(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ unsigned tf32_rn(float x) {
#if __CUDA_ARCH__ >= 900
    unsigned r;
    asm("cvt.rn.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
#else
    return tf32_rna(x);
#endif
}
__device__ __forceinline__ unsigned smem_addr(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

template <int COUNT, bool TRANS> struct Ldsm;
template <> struct Ldsm<1, false> {
    static __device__ __forceinline__ void run(unsigned (&r)[1], unsigned a) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
    }
};
template <> struct Ldsm<2, false> {
    static __device__ __forceinline__ void run(unsigned (&r)[2], unsigned a) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
    }
};
template <> struct Ldsm<4, false> {
    static __device__ __forceinline__ void run(unsigned (&r)[4], unsigned a) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
    }
};
template <> struct Ldsm<1, true> {
    static __device__ __forceinline__ void run(unsigned (&r)[1], unsigned a) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
    }
};
template <> struct Ldsm<2, true> {
    static __device__ __forceinline__ void run(unsigned (&r)[2], unsigned a) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                     : "=r"(r[0]), "=r"(r[1]) : "r"(a));
    }
};
template <> struct Ldsm<4, true> {
    static __device__ __forceinline__ void run(unsigned (&r)[4], unsigned a) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
    }
};
template <int COUNT, bool TRANS> __device__ __forceinline__ void ldmatrix(unsigned (&r)[COUNT], const void* row) {
    Ldsm<COUNT, TRANS>::run(r, smem_addr(row));
}

// 16-byte copies bypass L1 (.cg, the only form for 16 bytes); smaller ones go through it (.ca).
template <int BYTES> __device__ __forceinline__ void cp_async(void* dst, const void* src, int src_bytes) {
    if constexpr (BYTES == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(smem_addr(dst)), "l"(src), "n"(BYTES),
                     "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
__device__ __forceinline__ void keep_in_register(int& v) { asm volatile("" : "+r"(v)); }
__device__ __forceinline__ void compiler_fence() { asm volatile("" ::: "memory"); }
__device__ __forceinline__ unsigned atomic_inc_acq_rel(unsigned* p, unsigned v) {
    unsigned old;
    asm volatile("atom.acq_rel.gpu.global.inc.u32 %0, [%1], %2;\n" : "=r"(old) : "l"(p), "r"(v) : "memory");
    return old;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // sm_90a: the architecture-specific features, wgmma among them
#define WGMMA_AVAILABLE 1
#define WGMMA_F4(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define WGMMA_F8(i) WGMMA_F4(i), WGMMA_F4(i + 4)
#define WGMMA_F16(i) WGMMA_F8(i), WGMMA_F8(i + 8)
// scale-d as a predicate set from a register: D = A B where it is 0 (the first step of a sum)
#define WGMMA_TF32(N, REGS, A, B, S, ...)                                                               \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " S ", 0;\n"                                         \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k8.f32.tf32.tf32 " REGS ", " A ", " B ", p, 1, 1;\n}\n" \
                 : __VA_ARGS__ : "l"(adesc), "l"(bdesc), "r"(scale_d))
template <int N> struct Wgmma;  // N / 2 accumulators: one "+f" operand each, then the descriptors and scale-d
#define WGMMA_N(N, REGS, A, B, S, ...)                                                                   \
    template <> struct Wgmma<N> {                                                                        \
        static __device__ __forceinline__ void run(float (&d)[N / 2], unsigned long long adesc,          \
                                                   unsigned long long bdesc, int scale_d) {               \
            WGMMA_TF32(N, REGS, A, B, S, __VA_ARGS__);                                                   \
        }                                                                                                \
    };
WGMMA_N(8, "{%0, %1, %2, %3}", "%4", "%5", "%6", WGMMA_F4(0))
WGMMA_N(16, "{%0, %1, %2, %3, %4, %5, %6, %7}", "%8", "%9", "%10", WGMMA_F8(0))
WGMMA_N(24, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11}", "%12", "%13", "%14", WGMMA_F8(0), WGMMA_F4(8))
WGMMA_N(32, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}", "%16", "%17", "%18", WGMMA_F16(0))
WGMMA_N(40, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19}", "%20", "%21", "%22", WGMMA_F16(0), WGMMA_F4(16))
WGMMA_N(48, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23}", "%24", "%25", "%26", WGMMA_F16(0), WGMMA_F8(16))
WGMMA_N(56, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27}", "%28", "%29", "%30", WGMMA_F16(0), WGMMA_F8(16), WGMMA_F4(24))
WGMMA_N(64, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}", "%32", "%33", "%34", WGMMA_F16(0), WGMMA_F16(16))
WGMMA_N(128, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}", "%64", "%65", "%66", WGMMA_F16(0), WGMMA_F16(16), WGMMA_F16(32), WGMMA_F16(48))
template <int N> __device__ __forceinline__ void wgmma_tf32(float (&d)[N / 2], unsigned long long adesc,
                                                            unsigned long long bdesc, int scale_d) {
    Wgmma<N>::run(d, adesc, bdesc, scale_d);
}
// A from registers: the four A words after the accumulators, then the B descriptor and scale-d
#define WGMMA_RS_N(N, REGS, A, B, S, ...)                                                                \
    template <> struct WgmmaRs<N> {                                                                      \
        static __device__ __forceinline__ void run(float (&d)[N / 2], const unsigned (&a)[4],            \
                                                   unsigned long long bdesc, int scale_d) {               \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " S ", 0;\n"                                 \
                         "wgmma.mma_async.sync.aligned.m64n" #N "k8.f32.tf32.tf32 " REGS ", " A ", " B   \
                         ", p, 1, 1;\n}\n"                                                                \
                         : __VA_ARGS__ : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(bdesc), "r"(scale_d)); \
        }                                                                                                \
    };
template <int N> struct WgmmaRs;
WGMMA_RS_N(8, "{%0, %1, %2, %3}", "{%4, %5, %6, %7}", "%8", "%9", WGMMA_F4(0))
WGMMA_RS_N(16, "{%0, %1, %2, %3, %4, %5, %6, %7}", "{%8, %9, %10, %11}", "%12", "%13", WGMMA_F8(0))
WGMMA_RS_N(32, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}", "{%16, %17, %18, %19}", "%20", "%21", WGMMA_F16(0))
WGMMA_RS_N(64, "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}", "{%32, %33, %34, %35}", "%36", "%37", WGMMA_F16(0), WGMMA_F16(16))
template <int N> __device__ __forceinline__ void wgmma_tf32_rs(float (&d)[N / 2], const unsigned (&a)[4],
                                                               unsigned long long bdesc, int scale_d) {
    WgmmaRs<N>::run(d, a, bdesc, scale_d);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N, int R> __device__ __forceinline__ void wgmma_wait(float (&d)[R]) {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#pragma unroll
    for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");  // no use of d moves above the wait
}
template <int N> __device__ __forceinline__ void wgmma_wait_only() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#else  // no wgmma before sm_90a: kernels test WGMMA_AVAILABLE and never call these
#define WGMMA_AVAILABLE 0
template <int N> __device__ __forceinline__ void wgmma_tf32(float (&)[N / 2], unsigned long long, unsigned long long,
                                                            int) { __trap(); }
template <int N> __device__ __forceinline__ void wgmma_tf32_rs(float (&)[N / 2], const unsigned (&)[4],
                                                               unsigned long long, int) { __trap(); }
__device__ __forceinline__ void wgmma_fence() { __trap(); }
__device__ __forceinline__ void wgmma_commit() { __trap(); }
template <int N, int R> __device__ __forceinline__ void wgmma_wait(float (&)[R]) { __trap(); }
template <int N> __device__ __forceinline__ void wgmma_wait_only() { __trap(); }
__device__ __forceinline__ void fence_proxy_async() { __trap(); }
#endif

#endif

// The 128-byte-swizzle descriptor of a K-major tile (both bodies; layout in the table above): start
// address / 16 in bits 0-13, the leading offset (unused by this layout; 1 as CUTLASS sets it) in
// 16-29, the 8-row groups' stride / 16 (1024 bytes) in 32-45, base offset 0 (the tile 1024-aligned)
// in 49-51, swizzle mode 1 (128 bytes) in 62-63.
__device__ __forceinline__ unsigned long long wgmma_desc_sw128_at(unsigned addr) {  // addr: smem_addr's
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | 1ull << 16 | (1024ull >> 4) << 32 | 1ull << 62;
}
__device__ __forceinline__ unsigned long long wgmma_desc_sw128(const void* tile) {
    return wgmma_desc_sw128_at(smem_addr(tile));
}
// The no-swizzle K-major descriptor (both bodies; layout in the table above): start / 16 in bits
// 0-13, the k-halves' offset lbo / 16 in 16-29, the 8-row groups' sbo / 16 in 32-45, mode 0.
__device__ __forceinline__ unsigned long long wgmma_desc_kmajor(unsigned addr, unsigned lbo, unsigned sbo) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | (unsigned long long)((lbo & 0x3FFFF) >> 4) << 16 |
           (unsigned long long)((sbo & 0x3FFFF) >> 4) << 32;
}
// The first 1024-byte boundary of the shared window at or after p (a block's dynamic shared
// memory): where wgmma's swizzled tiles start, the swizzle being of shared-window addresses.
__device__ __forceinline__ unsigned char* wgmma_align(unsigned char* p) {
    return p + (1024 - smem_addr(p) % 1024) % 1024;
}
