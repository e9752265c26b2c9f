// emu_mma.h: the emulator's bodies of kernels/mma.cuh's hardware primitives
// (mma.sync m16n8k8 TF32, ldmatrix, cp.async, cvt.rna.tf32.f32). Included by
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
// cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 mantissa bits.
uint32_t cvt_rna_tf32(float x);
// cvt.rn.tf32.f32: round to nearest, ties to even, to 10 mantissa bits (low 13 bits zero).
uint32_t cvt_rn_tf32(float x);
}  // namespace gpucnn_emu
