// emu_mma.h: the emulator's bodies of kernels/mma.cuh's hardware primitives
// (mma.sync m16n8k8 TF32, ldmatrix, cp.async, cvt.rna.tf32.f32, wgmma m64nNk8 TF32). Included by
// mma.cuh when GPUCNN_EMULATOR is defined; implemented in emu_mma.cpp, which
// is linked into every module like the scheduler.
//
// The warp-wide instructions are warp collectives resolved by the scheduler
// (W_COLLECTIVE): every lane parks with its operands and the last arrival's
// resolution runs one function over the whole warp, so a lane that has exited
// or is at another instruction is reported as for a shuffle. Every memory
// access these bodies make goes through emu_access (emu_mma.cpp), one place to
// add race or alignment bookkeeping.
#pragma once
#include <cstdint>

namespace gpucnn_emu {
// D = A B + C for one m16n8k8 tile. Operands are the fragments of the PTX ISA
// (lane = 4 g + t): a[0..3] = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4];
// b[0..1] = B[t][g], B[t+4][g]; c, d[0..3] = C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1].
void mma_tf32_m16n8k8(float* d, const uint32_t* a, const uint32_t* b, const float* c,
                      const char* file = __builtin_FILE(), int line = __builtin_LINE());
// ldmatrix.sync.aligned.m8n8.x{count}[.trans].shared.b16: lanes 8i..8i+7 give
// the row addresses of matrix i; r[i] receives matrix i's fragment.
void ldmatrix(uint32_t* r, int count, bool trans, const void* row,
              const char* file = __builtin_FILE(), int line = __builtin_LINE());
// cp.async.{ca,cg}.shared.global [dst], [src], bytes, src_bytes: the first
// src_bytes bytes come from src and the rest are zeros; dst holds poison until
// the cp_async_wait that covers the group the copy was committed in.
void cp_async(void* dst, const void* src, int bytes, int src_bytes,
              const char* file = __builtin_FILE(), int line = __builtin_LINE());
void cp_async_commit();
// cp.async.wait_group n: every committed group but the n most recent has landed.
void cp_async_wait(int n);
// wgmma.mma_async.sync.aligned.m64n{n}k8.f32.tf32.tf32 d, adesc, bdesc, scale_d, 1, 1 for this
// lane's warp of its warpgroup (warp % 4: rows 16 (warp % 4) .. + 15 of D). Deferred to the
// wgmma_wait that covers it: d holds poison meanwhile, and the operands are read from shared
// memory then (an overwrite before the wait changes the result, as it races on a GPU). The K-major
// descriptors of mma.cuh are implemented: wgmma_desc_sw128's 128-byte swizzle (mode 1, base offset
// 0) and wgmma_desc_kmajor's no swizzle (mode 0).
void wgmma_tf32(float* d, int n, uint64_t adesc, uint64_t bdesc, int scale_d,
                const char* file = __builtin_FILE(), int line = __builtin_LINE());
// The same with A from registers (wgmma_tf32_rs): this lane's four A words (mma.sync m16n8k8's A
// fragment of its warp's 16 rows), their values taken at the issue. B's descriptor: the 128-byte
// swizzle, or no swizzle (mode 0, K-major: 8-row x 16-byte core matrices, lbo between k-halves).
void wgmma_tf32_rs(float* d, int n, const unsigned* a, uint64_t bdesc, int scale_d,
                   const char* file = __builtin_FILE(), int line = __builtin_LINE());
void wgmma_commit();
// wgmma.wait_group n: a warp collective that runs the lane's deferred wgmma of every group but
// the n most recent, in issue order.
void wgmma_wait(int n, const char* file = __builtin_FILE(), int line = __builtin_LINE());
// The emulated shared-window address of p: its offset in the block's dynamic shared memory
// (the base counts as 1024-byte aligned); anything else faults.
unsigned smem_offset(const void* p, const char* file = __builtin_FILE(), int line = __builtin_LINE());
// cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 mantissa bits.
uint32_t cvt_rna_tf32(float x);
// cvt.rn.tf32.f32: round to nearest, ties to even, to 10 mantissa bits (low 13 bits zero).
uint32_t cvt_rn_tf32(float x);
}  // namespace gpucnn_emu
