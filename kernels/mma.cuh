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

#endif
