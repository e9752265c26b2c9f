// emu_mma.cpp: the emulator's bodies of kernels/mma.cuh's primitives (declared
// in emu_mma.h), following the PTX ISA: "Warp-level matrix fragment layouts"
// (mma.m16n8k8 with .tf32), ldmatrix, cp.async / commit_group / wait_group,
// cvt.rna.tf32.f32, and wgmma (m64nNk8 .tf32, shared-memory descriptors; "Asynchronous
// Warpgroup Level Matrix Multiply-Accumulate Instructions").
#include "emu_mma.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "emu_internal.h"
#include "emu_race.h"

extern "C" [[noreturn]] void __assert_fail(const char* expr, const char* file, unsigned line, const char* fn);

namespace gpucnn_emu {
namespace {

// Every byte these primitives read or write passes here, and the race detector
// (emu_race.h; a no-op unless the launch checks races) hears of the kernel
// memory it touches: a read of the source (cp.async's global bytes,
// ldmatrix's shared row) or a write of the destination (cp.async's landing, at
// the wait, attributed to the issuing thread and line). Copies into the
// primitives' own buffers, and the poison cp.async leaves until the wait, are
// not the kernel's accesses and are not noted.
enum Note { kQuiet, kReadsSource, kWritesDestination };
inline void emu_access(void* dst, const void* src, size_t n, const char* file, int line, Note note) {
    if (note == kReadsSource) gpucnn_emu::emu_note_read(src, n, file, line);
    std::memcpy(dst, src, n);
    if (note == kWritesDestination) gpucnn_emu::emu_note_write(dst, n, file, line);
}

[[noreturn]] void fail(const char* file, int line, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
[[noreturn]] void fail(const char* file, int line, const char* fmt, ...) {
    static char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    __assert_fail(msg, file, (unsigned)line, "a tensor-core primitive");  // reported as a kernel fault
}

void check_align(const void* p, unsigned n, const char* what, const char* file, int line) {
    if ((uintptr_t)p % n) fail(file, line, "%s: address %p is not %u-byte aligned", what, p, n);
}

int lane_id() { return (int)(gpucnn_cur - rt::g_fib) % 32; }

// Parks the lane at a whole-warp instruction; returns when the warp's
// collective has run (it wrote this lane's results into *ops).
void collective(const Collective& c, void* ops, const char* file, int line) {
    Fiber* f = gpucnn_cur;
    f->op = W_COLLECTIVE; f->mask = ~0u; f->val = (uint64_t)ops; f->arg = (long long)&c;
    f->width = 32; f->file = file; f->line = line;
    gpucnn_wait(AT_WARP);
}

// The TF32 value the tensor core reads from a 32-bit register: sign, exponent
// and the 10 leading mantissa bits; the 13 low bits are ignored (truncation),
// which is what an operand not passed through cvt.rna.tf32.f32 gets.
double tf32_operand(uint32_t bits) {
    float v;
    if ((bits & 0x7F800000u) == 0x7F800000u) return std::memcpy(&v, &bits, 4), (double)v;  // Inf, NaN as is
    bits &= 0xFFFFE000u;
    std::memcpy(&v, &bits, 4);
    return v;
}

struct MmaLane {
    uint32_t a[4], b[2];
    float c[4], d[4];
};

// Each product of two TF32 values is exact in double (11 x 11 significant bits)
// and the sum of 8 products and C is formed in double and rounded once to
// float. The PTX ISA leaves the tensor core's internal accumulation order and
// rounding unspecified; this model is within the fp32 bound of any of them, and
// exact (as the hardware is) when all partial sums are representable.
void run_mma(void* const* lanes) {
    double A[16][8], B[8][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
        const MmaLane& x = *static_cast<const MmaLane*>(lanes[l]);
        const int g = l / 4, t = l % 4;
        A[g][t] = tf32_operand(x.a[0]); A[g + 8][t] = tf32_operand(x.a[1]);
        A[g][t + 4] = tf32_operand(x.a[2]); A[g + 8][t + 4] = tf32_operand(x.a[3]);
        B[t][g] = tf32_operand(x.b[0]); B[t + 4][g] = tf32_operand(x.b[1]);
        C[g][2 * t] = x.c[0]; C[g][2 * t + 1] = x.c[1]; C[g + 8][2 * t] = x.c[2]; C[g + 8][2 * t + 1] = x.c[3];
    }
    for (int l = 0; l < 32; ++l) {
        MmaLane& x = *static_cast<MmaLane*>(lanes[l]);
        const int g = l / 4, t = l % 4;
        for (int i = 0; i < 4; ++i) {
            const int m = g + 8 * (i / 2), n = 2 * t + i % 2;
            double s = C[m][n];
            for (int k = 0; k < 8; ++k) s += A[m][k] * B[k][n];
            x.d[i] = (float)s;
        }
    }
}
const Collective kMma{run_mma, "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32"};

struct LdsmLane {
    uint16_t row[8];  // the 8 b16 elements of the row this lane addressed (if any)
    uint32_t r[4];
    int count;
    bool trans;
};

// Matrix i's row j comes from lane 8i + j. Without .trans, lane l receives
// elements 2(l%4), 2(l%4)+1 of row l/4; with .trans, elements l/4 of rows
// 2(l%4) and 2(l%4)+1 (the lower-numbered element in the low half).
void run_ldsm(void* const* lanes) {
    const LdsmLane& first = *static_cast<const LdsmLane*>(lanes[0]);
    for (int l = 0; l < 32; ++l) {
        LdsmLane& x = *static_cast<LdsmLane*>(lanes[l]);
        for (int i = 0; i < first.count; ++i) {
            uint16_t lo, hi;
            auto row = [&](int j) -> const uint16_t* { return static_cast<const LdsmLane*>(lanes[8 * i + j])->row; };
            if (!first.trans) {
                lo = row(l / 4)[2 * (l % 4)];
                hi = row(l / 4)[2 * (l % 4) + 1];
            } else {
                lo = row(2 * (l % 4))[l / 4];
                hi = row(2 * (l % 4) + 1)[l / 4];
            }
            x.r[i] = (uint32_t)lo | (uint32_t)hi << 16;
        }
    }
}
const Collective kLdsm[2][3] = {
    {{run_ldsm, "ldmatrix.sync.aligned.m8n8.x1.shared.b16"}, {run_ldsm, "ldmatrix.sync.aligned.m8n8.x2.shared.b16"},
     {run_ldsm, "ldmatrix.sync.aligned.m8n8.x4.shared.b16"}},
    {{run_ldsm, "ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16"},
     {run_ldsm, "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16"},
     {run_ldsm, "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16"}},
};

// cp.async: a thread's copies in issue order, each tagged with its group
// (the number of commits before it); the data was read at issue.
struct Copy {
    void* dst;
    unsigned char data[16];
    int bytes;
    long long group;
    const char* file;
    int line;
};
struct AsyncState {
    Copy copies[192];
    int n;
    long long committed;  // groups committed so far
    const void* block;    // the block (launch spec and index) the state belongs to
    uint3 idx;
};
AsyncState g_async[rt::kMaxThreads];

// A NaN pattern, distinct from shared memory's, that a premature read sees.
constexpr unsigned char kPending[4] = {0xC3, 0xC3, 0xC1, 0x7F};

AsyncState& my_async() {
    AsyncState& s = g_async[gpucnn_cur - rt::g_fib];
    const uint3 b = gpucnn_block_idx;
    if (s.block != rt::g_spec || s.idx.x != b.x || s.idx.y != b.y || s.idx.z != b.z) {
        s.n = 0;  // a new block (or launch): whatever an earlier thread left behind is gone
        s.committed = 0;
        s.block = rt::g_spec;
        s.idx = b;
    }
    return s;
}

void land(AsyncState& s, long long upto) {  // copies of groups < upto arrive, in issue order
    int keep = 0;
    for (int i = 0; i < s.n; ++i) {
        Copy& c = s.copies[i];
        if (c.group < upto) emu_access(c.dst, c.data, c.bytes, c.file, c.line, kWritesDestination);
        else s.copies[keep++] = c;
    }
    s.n = keep;
}
}  // namespace

void mma_tf32_m16n8k8(float* d, const uint32_t* a, const uint32_t* b, const float* c, const char* file, int line) {
    MmaLane x;
    std::memcpy(x.a, a, sizeof x.a);
    std::memcpy(x.b, b, sizeof x.b);
    std::memcpy(x.c, c, sizeof x.c);
    collective(kMma, &x, file, line);
    std::memcpy(d, x.d, sizeof x.d);
}

void ldmatrix(uint32_t* r, int count, bool trans, const void* row, const char* file, int line) {
    LdsmLane x{};
    x.count = count;
    x.trans = trans;
    if (lane_id() < 8 * count) {  // only these lanes' addresses are read
        check_align(row, 16, "ldmatrix row", file, line);
        emu_access(x.row, row, 16, file, line, kReadsSource);
    }
    collective(kLdsm[trans][count == 1 ? 0 : count == 2 ? 1 : 2], &x, file, line);
    std::memcpy(r, x.r, 4 * (size_t)count);
}

void cp_async(void* dst, const void* src, int bytes, int src_bytes, const char* file, int line) {
    if (bytes != 4 && bytes != 8 && bytes != 16) fail(file, line, "cp.async: cp-size %d is not 4, 8 or 16", bytes);
    if (src_bytes < 0 || src_bytes > bytes)
        fail(file, line, "cp.async: src-size %d is outside [0, cp-size %d]", src_bytes, bytes);
    check_align(dst, (unsigned)bytes, "cp.async destination (shared)", file, line);
    check_align(src, (unsigned)bytes, "cp.async source (global)", file, line);
    AsyncState& s = my_async();
    if (s.n == (int)(sizeof s.copies / sizeof s.copies[0]))
        fail(file, line, "cp.async: more than %d copies of one thread are in flight (the emulator's limit)", s.n);
    Copy& c = s.copies[s.n++];
    c = Copy{dst, {}, bytes, s.committed, file, line};
    if (src_bytes) emu_access(c.data, src, (size_t)src_bytes, file, line, kReadsSource);  // an out-of-range source faults here
    unsigned char pending[16];
    for (int i = 0; i < bytes; ++i) pending[i] = kPending[i % 4];
    emu_access(dst, pending, (size_t)bytes, file, line, kQuiet);  // what the destination holds until the wait
}

void cp_async_commit() { ++my_async().committed; }

void cp_async_wait(int n) {
    AsyncState& s = my_async();
    land(s, s.committed - n);
}

// ------------------------------------------------------------------ wgmma
namespace {

// A lane's wgmma, deferred to the wait that covers it: its accumulators (in the lane's frame,
// alive until that wait in a correct kernel), their value at issue (the C of D = A B + C; a
// wgmma on accumulators still in flight chains on its predecessor's result instead), and the
// group it was committed in.
constexpr int kMaxWgmma = 32, kMaxN = 128, kMaxAcc = kMaxN / 2;  // wgmma in flight a thread (~10 MB for 1024 threads); N / 2 accumulators
struct WgOp {
    float* d;
    float c[kMaxAcc];
    int n, scale_d;
    bool chained, rs;  // rs: A from registers (a), else from adesc
    uint32_t a[4];
    uint64_t adesc, bdesc;
    long long group;
    const char* file;
    int line;
};
struct WgState {
    WgOp ops[kMaxWgmma];
    int n;
    long long committed;
    const void* block;
    uint3 idx;
};
WgState g_wg[rt::kMaxThreads];

WgState& my_wg() {
    WgState& s = g_wg[gpucnn_cur - rt::g_fib];
    const uint3 b = gpucnn_block_idx;
    if (s.block != rt::g_spec || s.idx.x != b.x || s.idx.y != b.y || s.idx.z != b.z) {
        s.n = 0;
        s.committed = 0;
        s.block = rt::g_spec;
        s.idx = b;
    }
    return s;
}

// The shared-memory bytes of element k (0-7: 4 bytes each, TF32) of row r of a descriptor's
// matrix, in the canonical K-major layouts (PTX ISA, "Shared Memory Matrix Layout", "Strides"):
// mode 1, the 128-byte swizzle: rows of 128 bytes, 8-row groups SBO apart from the start address,
// and address bits 4-6 (the 16-byte chunk) XORed with bits 7-9 (the row in its group) of the
// resulting address; mode 0, no swizzle: core matrices of 8 rows x 16 bytes, 128 contiguous bytes
// each, the 8-row groups SBO apart and the two k-halves of the k8 LBO apart (the stride "from the
// first column to the second column of the 8x2 tile" of 16-byte elements).
const float* wg_element(uint64_t desc, int r, int k, const char* what, const char* file, int line) {
    const uint64_t start = (desc & 0x3FFF) << 4, lbo = ((desc >> 16) & 0x3FFF) << 4, sbo = ((desc >> 32) & 0x3FFF) << 4;
    const unsigned base = (unsigned)(desc >> 49) & 7, mode = (unsigned)(desc >> 62);
    if (mode > 1 || base != 0)
        fail(file, line, "wgmma %s descriptor: swizzle mode %u, base offset %u: the emulator implements the "
             "128-byte swizzle (mode 1) and no swizzle (mode 0), with base offset 0 only", what, mode, base);
    uint64_t a;
    if (mode == 1) {
        a = start + (uint64_t)(r / 8) * sbo + (uint64_t)(r % 8) * 128 + 4 * (uint64_t)k;
        a ^= ((a >> 7) & 7) << 4;
    } else {
        a = start + (uint64_t)(r / 8) * sbo + (uint64_t)(k / 4) * lbo + (uint64_t)(r % 8) * 16 + 4 * (uint64_t)(k % 4);
    }
    if (a + 4 > rt::g_spec->dyn_size)
        fail(file, line, "wgmma %s: row %d, k %d at shared byte %llu, past the %llu bytes of dynamic shared memory",
             what, r, k, (unsigned long long)a, (unsigned long long)rt::g_spec->dyn_size);
    return reinterpret_cast<const float*>(gpucnn_dyn_smem + a);
}

// A NaN pattern, distinct from cp.async's and shared memory's, in accumulators in flight.
constexpr uint32_t kWgPending = 0x7FC0C3C3u;

// The race checks' record of a wgmma's operand reads, noted at its issue by each lane of the warp
// (a 32nd of its rows 16 w .. 16 w + 15 of A and n rows of B each): the instruction reads them
// between its issue and its wait_group, and the collective that runs it (wg_run, at the wait) is
// outside every thread, where no access is noted. So a write to an operand by another thread
// between the barrier before the issue and the one after the wait (another warp rounding a stage,
// a fetch into it) is a RaceError, as a plain read's would be. The traffic counts leave them out
// (unmetered): the tensor core reads its operands from shared memory through its own path.
void wg_note_reads(const uint64_t* adesc, uint64_t bdesc, int n, const char* file, int line) {
    const int thread = (int)(gpucnn_cur - rt::g_fib), lane = thread % 32, w = thread / 32 % 4;
    for (int e = lane; adesc && e < 16 * 8; e += 32)
        emu_note_read_unmetered(wg_element(*adesc, 16 * w + e / 8, e % 8, "A", file, line), 4, file, line);
    for (int e = lane; e < n * 8; e += 32)
        emu_note_read_unmetered(wg_element(bdesc, e / 8, e % 8, "B", file, line), 4, file, line);
}

double wg_operand(const float* p) {
    uint32_t bits;
    std::memcpy(&bits, p, 4);
    return tf32_operand(bits);
}

struct WgWaitLane {
    WgState* s;
    long long upto;  // groups below it are done at this wait
    int thread;
    const char* file;  // the wait's, for a report
    int line;
};

// One deferred wgmma for the whole warp: rows 16 (warp % 4) + 0..15 of D = A B + C.
void wg_run(void* const* lanes, int i) {
    const WgWaitLane& first = *static_cast<const WgWaitLane*>(lanes[0]);
    const WgOp& op = first.s->ops[i];
    for (int l = 1; l < 32; ++l) {
        const WgOp& o = static_cast<const WgWaitLane*>(lanes[l])->s->ops[i];
        if (o.n != op.n || o.rs != op.rs || (!op.rs && o.adesc != op.adesc) || o.bdesc != op.bdesc ||
            o.scale_d != op.scale_d)
            fail(op.file, op.line, "wgmma: lane %d's operands differ from lane 0's (n, A's source and descriptor, B's "
                 "descriptor, scale-d must be the warpgroup's)", l);
    }
    const int w = first.thread / 32 % 4, n = op.n;
    double A[16][8], B[kMaxN][8];
    if (op.rs) {  // lane 4g + t: A[g][t], A[g + 8][t], A[g][t + 4], A[g + 8][t + 4]
        for (int l = 0; l < 32; ++l) {
            const WgOp& o = static_cast<const WgWaitLane*>(lanes[l])->s->ops[i];
            for (int j = 0; j < 4; ++j) A[l / 4 + 8 * (j & 1)][l % 4 + 4 * (j >> 1)] = tf32_operand(o.a[j]);
        }
    } else {
        for (int r = 0; r < 16; ++r)
            for (int k = 0; k < 8; ++k) A[r][k] = wg_operand(wg_element(op.adesc, 16 * w + r, k, "A", op.file, op.line));
    }
    for (int c = 0; c < n; ++c)
        for (int k = 0; k < 8; ++k) B[c][k] = wg_operand(wg_element(op.bdesc, c, k, "B", op.file, op.line));
    for (int l = 0; l < 32; ++l) {
        const WgOp& o = static_cast<const WgWaitLane*>(lanes[l])->s->ops[i];
        const int g = l / 4, t = l % 4;
        for (int v = 0; v < n / 2; ++v) {
            const int row = g + 8 * (v / 2 % 2), col = 8 * (v / 4) + 2 * t + v % 2;
            double acc = o.scale_d ? (o.chained ? o.d[v] : o.c[v]) : 0.0;
            for (int k = 0; k < 8; ++k) acc += A[row][k] * B[col][k];  // products exact; one rounding
            o.d[v] = (float)acc;
        }
    }
}

void run_wgmma_wait(void* const* lanes) {
    const WgWaitLane& first = *static_cast<const WgWaitLane*>(lanes[0]);
    int due = 0;
    while (due < first.s->n && first.s->ops[due].group < first.upto) ++due;
    for (int l = 1; l < 32; ++l) {
        const WgWaitLane& x = *static_cast<const WgWaitLane*>(lanes[l]);
        int mine = 0;
        while (mine < x.s->n && x.s->ops[mine].group < x.upto) ++mine;
        if (mine != due)
            fail(first.file, first.line, "wgmma.wait_group: lane %d has %d wgmma due, lane 0 %d", l, mine, due);
    }
    for (int i = 0; i < due; ++i) wg_run(lanes, i);
    for (int l = 0; l < 32; ++l) {
        WgState& s = *static_cast<const WgWaitLane*>(lanes[l])->s;
        std::memmove(s.ops, s.ops + due, sizeof(WgOp) * (size_t)(s.n - due));
        s.n -= due;
        // A wgmma still in flight that chained on one just run (a wait_group N > 0 between two
        // issues on the same accumulators) takes that result as its C now, and the accumulators
        // are pending again: a later issue on them poisons them, and they are the instruction's.
        for (int j = 0; j < s.n; ++j) {
            WgOp& o = s.ops[j];
            bool pred = false;
            for (int k = 0; k < j; ++k) pred |= s.ops[k].d == o.d;
            if (!o.chained || pred) continue;
            std::memcpy(o.c, o.d, sizeof(float) * (size_t)(o.n / 2));
            o.chained = false;
            for (int v = 0; v < o.n / 2; ++v) std::memcpy(o.d + v, &kWgPending, 4);
        }
    }
}
const Collective kWgmmaWait{run_wgmma_wait, "wgmma.wait_group.sync.aligned"};
}  // namespace

namespace {
void wg_issue(float* d, int n, const unsigned* a, uint64_t adesc, uint64_t bdesc, int scale_d, const char* file,
              int line) {
    if (n % 8 || n < 8 || (n > 64 && n != kMaxN)) fail(file, line, "wgmma: N = %d is not 8, 16, ..., 64 or 128", n);
    WgState& s = my_wg();
    if (s.n == kMaxWgmma) fail(file, line, "wgmma: more than %d of one thread in flight (the emulator's limit)", s.n);
    wg_note_reads(a ? nullptr : &adesc, bdesc, n, file, line);
    WgOp& op = s.ops[s.n];
    op = WgOp{d, {}, n, scale_d, false, a != nullptr, {}, adesc, bdesc, s.committed, file, line};
    if (a) std::memcpy(op.a, a, sizeof op.a);
    for (int i = 0; i < s.n; ++i) op.chained |= s.ops[i].d == d;  // accumulates on an earlier one's result
    if (!op.chained) std::memcpy(op.c, d, sizeof(float) * (size_t)(n / 2));
    ++s.n;
    for (int v = 0; v < n / 2; ++v) std::memcpy(d + v, &kWgPending, 4);
}
}  // namespace

void wgmma_tf32(float* d, int n, uint64_t adesc, uint64_t bdesc, int scale_d, const char* file, int line) {
    wg_issue(d, n, nullptr, adesc, bdesc, scale_d, file, line);
}

void wgmma_tf32_rs(float* d, int n, const unsigned* a, uint64_t bdesc, int scale_d, const char* file, int line) {
    wg_issue(d, n, a, 0, bdesc, scale_d, file, line);
}

void wgmma_commit() { ++my_wg().committed; }

void wgmma_wait(int n, const char* file, int line) {
    WgState& s = my_wg();
    WgWaitLane x{&s, s.committed - n, (int)(gpucnn_cur - rt::g_fib), file, line};
    collective(kWgmmaWait, &x, file, line);
}

unsigned smem_offset(const void* p, const char* file, int line) {
    const unsigned char* c = static_cast<const unsigned char*>(p);
    if (!rt::g_spec || c < gpucnn_dyn_smem || c >= gpucnn_dyn_smem + rt::g_spec->dyn_size)
        fail(file, line, "shared address of %p: the emulator gives one only inside the dynamic shared memory", p);
    return (unsigned)(c - gpucnn_dyn_smem);
}

// Round to nearest with ties away from zero at mantissa bit 13: adding half of
// the dropped unit carries into the kept bits exactly when the dropped part is
// at least half. NaN stays NaN; a value that rounds past the largest finite
// TF32 becomes Inf, as cvt.rna (without .satfinite) does.
uint32_t cvt_rna_tf32(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    if ((bits & 0x7F800000u) == 0x7F800000u) return (bits & 0x007FFFFFu) ? 0x7FFFFFFFu : bits;
    return (bits + 0x1000u) & 0xFFFFE000u;
}

// Round to nearest with ties to even at mantissa bit 13: adding one less than
// half the dropped unit, plus the kept last bit, carries exactly when the
// dropped part is above half, or half with an odd last kept bit. NaN, Inf and
// overflow as cvt_rna_tf32.
uint32_t cvt_rn_tf32(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    if ((bits & 0x7F800000u) == 0x7F800000u) return (bits & 0x007FFFFFu) ? 0x7FFFFFFFu : bits;
    return (bits + 0x0FFFu + ((bits >> 13) & 1u)) & 0xFFFFE000u;
}
}  // namespace gpucnn_emu
