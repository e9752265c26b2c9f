// cuda_emu.h: force-included (g++ -include) ahead of every translated kernel
// text. It maps CUDA's device-side vocabulary onto plain C++ and the
// cooperative-fiber scheduler declared in emu_runtime.h.
#pragma once
#include <bit>
#include <cassert>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <math.h>
#include <type_traits>
#include <utility>

#include "emu_race.h"
#include "emu_mma.h"  // the bodies of kernels/mma.cuh
#include "emu_runtime.h"

#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __gpucnn_inout__  // GPUCNN_INOUT, seen by translate.py before this definition applies
// build.py rewrites every __shared__ declaration it sees into a registered slot;
// this definition only catches ones produced after its pass.
#define __shared__ static

#define threadIdx (gpucnn_cur->tid)
#define blockIdx gpucnn_block_idx
#define blockDim gpucnn_block_dim
#define gridDim gpucnn_grid_dim
static constexpr int warpSize = 32;

namespace gpucnn_emu {
template <class T> struct vec_info { static constexpr int n = 0; };
}

#define GPUCNN_VEC_INFO(V, T, N) \
    namespace gpucnn_emu { template <> struct vec_info<V> { using elem = T; static constexpr int n = N; }; }
#define GPUCNN_VEC1(V, T, A) struct alignas(A) V { T x; }; \
    inline V make_##V(T x) { return V{x}; } GPUCNN_VEC_INFO(V, T, 1)
#define GPUCNN_VEC2(V, T, A) struct alignas(A) V { T x, y; }; \
    inline V make_##V(T x, T y) { return V{x, y}; } GPUCNN_VEC_INFO(V, T, 2)
#define GPUCNN_VEC3(V, T, A) struct alignas(A) V { T x, y, z; }; \
    inline V make_##V(T x, T y, T z) { return V{x, y, z}; } GPUCNN_VEC_INFO(V, T, 3)
#define GPUCNN_VEC4(V, T, A) struct alignas(A) V { T x, y, z, w; }; \
    inline V make_##V(T x, T y, T z, T w) { return V{x, y, z, w}; } GPUCNN_VEC_INFO(V, T, 4)
// Alignments are CUDA's (vector_types.h): they decide which reinterpret_casts are legal.
GPUCNN_VEC1(char1, signed char, 1) GPUCNN_VEC2(char2, signed char, 2) GPUCNN_VEC4(char4, signed char, 4)
GPUCNN_VEC1(uchar1, unsigned char, 1) GPUCNN_VEC2(uchar2, unsigned char, 2) GPUCNN_VEC4(uchar4, unsigned char, 4)
GPUCNN_VEC2(short2, short, 4) GPUCNN_VEC4(short4, short, 8)
GPUCNN_VEC2(ushort2, unsigned short, 4) GPUCNN_VEC4(ushort4, unsigned short, 8)
GPUCNN_VEC1(int1, int, 4) GPUCNN_VEC2(int2, int, 8) GPUCNN_VEC3(int3, int, 4) GPUCNN_VEC4(int4, int, 16)
GPUCNN_VEC1(uint1, unsigned, 4) GPUCNN_VEC2(uint2, unsigned, 8) GPUCNN_VEC4(uint4, unsigned, 16)
GPUCNN_VEC1(float1, float, 4) GPUCNN_VEC2(float2, float, 8) GPUCNN_VEC3(float3, float, 4) GPUCNN_VEC4(float4, float, 16)
GPUCNN_VEC1(double1, double, 8) GPUCNN_VEC2(double2, double, 16) GPUCNN_VEC3(double3, double, 8)
GPUCNN_VEC4(double4, double, 16)
GPUCNN_VEC1(longlong1, long long, 8) GPUCNN_VEC2(longlong2, long long, 16) GPUCNN_VEC4(longlong4, long long, 16)
GPUCNN_VEC1(ulonglong1, unsigned long long, 8) GPUCNN_VEC2(ulonglong2, unsigned long long, 16)
GPUCNN_VEC4(ulonglong4, unsigned long long, 16)
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
GPUCNN_VEC_INFO(uint3, unsigned, 3)

// ---- math and intrinsics (the CPU's IEEE results, not the GPU's approximations)
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __int_as_float(int v) { return std::bit_cast<float>(v); }
inline int __float_as_int(float v) { return std::bit_cast<int>(v); }
inline float __uint_as_float(unsigned v) { return std::bit_cast<float>(v); }
inline unsigned __float_as_uint(float v) { return std::bit_cast<unsigned>(v); }
inline double __longlong_as_double(long long v) { return std::bit_cast<double>(v); }
inline long long __double_as_longlong(double v) { return std::bit_cast<long long>(v); }
inline int __double2hiint(double v) { return (int)(std::bit_cast<unsigned long long>(v) >> 32); }
inline int __double2loint(double v) { return (int)std::bit_cast<unsigned long long>(v); }
inline double __hiloint2double(int hi, int lo) {
    return std::bit_cast<double>(((unsigned long long)(unsigned)hi << 32) | (unsigned)lo);
}
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline long long __float2ll_rn(float x) { return (long long)nearbyintf(x); }
inline int __double2int_rn(double x) { return (int)nearbyint(x); }
inline float __int2float_rn(int x) { return (float)x; }
inline float __ll2float_rn(long long x) { return (float)x; }
inline float __double2float_rn(double x) { return (float)x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i, x >>= 1) r = (r << 1) | (x & 1u);
    return r;
}
inline int __mul24(int a, int b) { return a * b; }
inline unsigned __umul24(unsigned a, unsigned b) { return a * b; }
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
// CUDA's min/max accept mixed integer types; common_type picks CUDA's result type
// for the usual cases without the ambiguity a fixed overload set would have.
template <class A, class B> requires std::is_arithmetic_v<A> && std::is_arithmetic_v<B>
inline std::common_type_t<A, B> min(A a, B b) { using C = std::common_type_t<A, B>; return (C)b < (C)a ? (C)b : (C)a; }
template <class A, class B> requires std::is_arithmetic_v<A> && std::is_arithmetic_v<B>
inline std::common_type_t<A, B> max(A a, B b) { using C = std::common_type_t<A, B>; return (C)a < (C)b ? (C)b : (C)a; }
inline unsigned umin(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned umax(unsigned a, unsigned b) { return a < b ? b : a; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a < b ? b : a; }
inline unsigned long long ullmin(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long ullmax(unsigned long long a, unsigned long long b) { return a < b ? b : a; }

#define CUDART_INF_F __builtin_huge_valf()
#define CUDART_NAN_F __builtin_nanf("")
#define CUDART_INF __builtin_huge_val()
#define CUDART_NAN __builtin_nan("")
#define CUDART_PI_F 3.141592654f
#define CUDART_PI 3.1415926535897931e+0
#define CUDART_ZERO_F 0.0f
#define CUDART_ONE_F 1.0f
#define CUDART_MAX_NORMAL_F FLT_MAX
#define CUDART_MIN_DENORM_F __int_as_float(0x00000001)
#define CUDART_SQRT_HALF_F 0.707106781f
#define CUDART_LN2_F 0.693147181f
#define CUDART_L2E_F 1.442695041f

template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
// Blocks run one at a time on one OS thread: fences only need to stop the
// compiler from moving memory accesses. Checked builds also note the device-
// and system-scope fences: with the atomics around them they are the PTX
// memory model's release and acquire patterns that order accesses of two
// blocks (emu_check.cpp). A block-scope fence orders nothing across blocks.
#ifdef GPUCNN_EMU_CHECKED
#define GPUCNN_FENCE_NOTE() gpucnn_note_fence()
#else
#define GPUCNN_FENCE_NOTE() (void)0
#endif
inline void __threadfence() { asm volatile("" ::: "memory"); GPUCNN_FENCE_NOTE(); }
inline void __threadfence_block() { asm volatile("" ::: "memory"); }
inline void __threadfence_system() { asm volatile("" ::: "memory"); GPUCNN_FENCE_NOTE(); }
inline long long clock64() { return (long long)__builtin_ia32_rdtsc(); }
inline void __nanosleep(unsigned) {}
#define __trap() __builtin_trap()

// ---- atomics: no preemption between fibers, so read-modify-write is atomic.
// Checked builds leave them out of the access instrumentation and note them
// as atomics instead, which race only with plain accesses.
#ifdef GPUCNN_EMU_CHECKED
#define GPUCNN_ATOMIC_FN inline __attribute__((noinline, no_sanitize("thread")))
#define GPUCNN_ATOMIC_NOTE(a) gpucnn_note_atomic((a), sizeof *(a), __builtin_return_address(0))
#else
#define GPUCNN_ATOMIC_FN inline
#define GPUCNN_ATOMIC_NOTE(a) (void)0
#endif
#define GPUCNN_ATOMIC_RW(T)                                                                                  \
    GPUCNN_ATOMIC_FN T atomicAdd(T* a, T v) { GPUCNN_ATOMIC_NOTE(a); T o = *a; *a = (T)(o + v); return o; }  \
    GPUCNN_ATOMIC_FN T atomicSub(T* a, T v) { GPUCNN_ATOMIC_NOTE(a); T o = *a; *a = (T)(o - v); return o; }  \
    GPUCNN_ATOMIC_FN T atomicExch(T* a, T v) { GPUCNN_ATOMIC_NOTE(a); T o = *a; *a = v; return o; }           \
    GPUCNN_ATOMIC_FN T atomicMax(T* a, T v) { GPUCNN_ATOMIC_NOTE(a); T o = *a; *a = o < v ? v : o; return o; } \
    GPUCNN_ATOMIC_FN T atomicMin(T* a, T v) { GPUCNN_ATOMIC_NOTE(a); T o = *a; *a = v < o ? v : o; return o; }
#define GPUCNN_ATOMIC_INT(T)                                                                                 \
    GPUCNN_ATOMIC_FN T atomicCAS(T* a, T c, T v) { GPUCNN_ATOMIC_NOTE(a); T o = *a; if (o == c) *a = v; return o; } \
    GPUCNN_ATOMIC_FN T atomicAnd(T* a, T v) { GPUCNN_ATOMIC_NOTE(a); T o = *a; *a = o & v; return o; }        \
    GPUCNN_ATOMIC_FN T atomicOr(T* a, T v) { GPUCNN_ATOMIC_NOTE(a); T o = *a; *a = o | v; return o; }         \
    GPUCNN_ATOMIC_FN T atomicXor(T* a, T v) { GPUCNN_ATOMIC_NOTE(a); T o = *a; *a = o ^ v; return o; }
GPUCNN_ATOMIC_RW(int) GPUCNN_ATOMIC_RW(unsigned) GPUCNN_ATOMIC_RW(long long)
GPUCNN_ATOMIC_RW(unsigned long long) GPUCNN_ATOMIC_RW(float) GPUCNN_ATOMIC_RW(double)
GPUCNN_ATOMIC_INT(int) GPUCNN_ATOMIC_INT(unsigned) GPUCNN_ATOMIC_INT(long long)
GPUCNN_ATOMIC_INT(unsigned long long)
GPUCNN_ATOMIC_FN unsigned short atomicCAS(unsigned short* a, unsigned short c, unsigned short v) {
    GPUCNN_ATOMIC_NOTE(a); unsigned short o = *a; if (o == c) *a = v; return o;
}
GPUCNN_ATOMIC_FN unsigned atomicInc(unsigned* a, unsigned v) {
    GPUCNN_ATOMIC_NOTE(a); unsigned o = *a; *a = o >= v ? 0u : o + 1u; return o;
}
GPUCNN_ATOMIC_FN unsigned atomicDec(unsigned* a, unsigned v) {
    GPUCNN_ATOMIC_NOTE(a); unsigned o = *a; *a = (o == 0u || o > v) ? v : o - 1u; return o;
}
#define atomicAdd_block atomicAdd
#define atomicAdd_system atomicAdd
#define atomicMax_block atomicMax
#define atomicMin_block atomicMin
#define atomicExch_block atomicExch
#define atomicCAS_block atomicCAS

// ---- barriers and warp collectives
namespace gpucnn_emu {
inline uint64_t park(int state, int op, unsigned mask, uint64_t val, long long arg, int width,
                     const char* file, int line) {
    Fiber* f = gpucnn_cur;
    f->op = op; f->mask = mask; f->val = val; f->arg = arg; f->width = width;
    f->file = file; f->line = line;
    gpucnn_wait(state);
    return gpucnn_cur->result;
}
template <class T> inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp shuffles move at most 8 bytes");
    uint64_t b = 0; std::memcpy(&b, &v, sizeof(T)); return b;
}
template <class T> inline T from_bits(uint64_t b) { T v; std::memcpy(&v, &b, sizeof(T)); return v; }
template <class T> inline T shfl(int op, const char* file, int line, unsigned mask, T var, long long arg,
                                 int width = 32) {
    return from_bits<T>(park(AT_WARP, op, mask, to_bits(var), arg, width, file, line));
}
inline unsigned vote(int op, const char* file, int line, unsigned mask, bool pred) {
    return (unsigned)park(AT_WARP, op, mask, pred ? 1 : 0, 0, 32, file, line);
}
inline void syncwarp(const char* file, int line, unsigned mask = 0xffffffffu) {
    park(AT_WARP, W_SYNCWARP, mask, 0, 0, 32, file, line);
}
inline int block_sync(int op, bool pred, const char* file, int line) {
    return (int)park(AT_SYNC, op, 0, pred ? 1 : 0, 0, 0, file, line);
}

// Static __shared__ storage: one slot per declaration (per template
// instantiation, through the local tag type), registered at load time so the
// scheduler can poison it before each block and size it for the 48 KiB check.
// The race checks keep one shadow cell per element: a scalar's size, or for a
// class type its alignment up to 4 bytes (a __half struct: 2).
template <class T> constexpr unsigned smem_granule() {
    using E = std::remove_all_extents_t<T>;
    if constexpr (std::is_arithmetic_v<E> || std::is_pointer_v<E>) return sizeof(E) < 8 ? sizeof(E) : 8;
    else return alignof(E) < 4 ? alignof(E) : 4;
}
template <class T, class Tag, int Owner> struct SmemSlot {
    alignas(alignof(T) > 16 ? alignof(T) : 16) static inline T storage;
    static inline int reg = gpucnn_register_smem_named((void*)&storage, sizeof(T), Owner, smem_granule<T>(),
                                                       Tag::name());
    static T& get() { (void)&reg; return storage; }
};
// File-scope `extern __shared__ T name[]`: the base moves with each launch.
template <class T> struct DynSmem {
    operator T*() const { return reinterpret_cast<T*>(gpucnn_dyn_smem); }
    template <class I> T& operator[](I i) const { return reinterpret_cast<T*>(gpucnn_dyn_smem)[i]; }
};

template <class T> constexpr uint32_t scalar_code() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_same_v<U, bool>) return ('b' << 8) | 1;
    else if constexpr (std::is_floating_point_v<U>) return ('f' << 8) | sizeof(U);
    else if constexpr (std::is_integral_v<U>) return ((std::is_signed_v<U> ? 'i' : 'u') << 8) | sizeof(U);
    else if constexpr (std::is_void_v<U>) return ('x' << 8);
    else if constexpr (vec_info<U>::n > 0) return (vec_info<U>::n << 16) | scalar_code<typename vec_info<U>::elem>();
    else return ('o' << 8) | (sizeof(U) & 0xff);
}
// Parameter type codes for launch.py: bit 31 pointer, bit 30 const pointee,
// bits 16-23 vector lanes, bits 8-15 kind letter, bits 0-7 element size.
template <class P> constexpr uint32_t param_code() {
    using Q = std::remove_cvref_t<P>;
    if constexpr (std::is_pointer_v<Q>) {
        using E = std::remove_pointer_t<Q>;
        return (1u << 31) | (std::is_const_v<E> ? (1u << 30) : 0u) | scalar_code<E>();
    } else {
        return scalar_code<Q>();
    }
}
template <class F> struct Sig;
template <class... P> struct Sig<void(P...)> {
    static constexpr uint32_t codes[] = {sizeof...(P), param_code<P>()...};
    template <size_t... I> static void call_i(void (*f)(P...), void** a, std::index_sequence<I...>) {
        f(*static_cast<std::remove_cvref_t<P>*>(a[I])...);
    }
    static void call(void (*f)(P...), void** a) { call_i(f, a, std::index_sequence_for<P...>{}); }
};
}  // namespace gpucnn_emu

#define __syncthreads() gpucnn_emu::block_sync(gpucnn_emu::OP_SYNC, false, __FILE__, __LINE__)
#define __syncthreads_count(p) gpucnn_emu::block_sync(gpucnn_emu::OP_SYNC_COUNT, (p), __FILE__, __LINE__)
#define __syncthreads_and(p) gpucnn_emu::block_sync(gpucnn_emu::OP_SYNC_AND, (p), __FILE__, __LINE__)
#define __syncthreads_or(p) gpucnn_emu::block_sync(gpucnn_emu::OP_SYNC_OR, (p), __FILE__, __LINE__)
#define __syncwarp(...) gpucnn_emu::syncwarp(__FILE__, __LINE__ __VA_OPT__(, ) __VA_ARGS__)
#define __shfl_sync(...) gpucnn_emu::shfl(gpucnn_emu::W_SHFL, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) gpucnn_emu::shfl(gpucnn_emu::W_SHFL_UP, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) gpucnn_emu::shfl(gpucnn_emu::W_SHFL_DOWN, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) gpucnn_emu::shfl(gpucnn_emu::W_SHFL_XOR, __FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(m, p) gpucnn_emu::vote(gpucnn_emu::W_BALLOT, __FILE__, __LINE__, (m), (p))
#define __any_sync(m, p) ((int)gpucnn_emu::vote(gpucnn_emu::W_ANY, __FILE__, __LINE__, (m), (p)))
#define __all_sync(m, p) ((int)gpucnn_emu::vote(gpucnn_emu::W_ALL, __FILE__, __LINE__, (m), (p)))
#define __activemask() gpucnn_activemask()
