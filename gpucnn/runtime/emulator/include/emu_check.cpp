// emu_check.cpp: the runtime of checked builds. Kernel text compiled with
// -fsanitize=thread calls __tsan_readN/__tsan_writeN before each load and
// store; with -fsanitize=alignment,signed-integer-overflow,shift it calls the
// __ubsan_handle_* functions on a misaligned access or undefined arithmetic.
// Both sets are defined here (no sanitizer runtime is linked), so they see the
// emulator's notion of threads, blocks and barriers.
//
// Race detection keeps one shadow cell per granule (the element size) of every
// non-const argument and shared variable: the last writer and two readers, each
// as (block, barrier epoch, warp epoch, thread, code site). Two accesses to a
// granule, at least one a write, conflict when
//   * shared memory: same block, different threads, no __syncthreads() between
//     them (same epoch) and, for two lanes of one warp, no warp collective either;
//   * global memory: different blocks of the launch, or as in shared memory.
// Atomics conflict only with plain writes; GPUCNN_INOUT arguments allow
// write-write conflicts (a scatter where duplicate indices let one value win).
//
// Two blocks' accesses do not conflict when the PTX memory model orders them
// by a release and an acquire pattern (PTX ISA, "Memory Consistency Model"):
// thread T of block B runs a __threadfence() F and later an atomic on a word
// X (the release); thread T' of the running block B' runs an atomic on X
// after it (its read-modify-write reads the last value of X: every earlier
// atomic on X is in the release sequence it reads from, as blocks run one at
// a time) and later a __threadfence() F' (the acquire). F synchronizes with
// F', so an access of B before F (T's own, program order: a fence-time stamp
// below F's; any thread's before a __syncthreads() that T passed before F:
// an earlier barrier epoch) happens before an access of B' after F' (T''s own
// from F' on; any thread's after a __syncthreads() that follows F'). Without
// either fence, or with the atomic on another word, there is no order and the
// accesses race as before. Not modelled: chains (B -> B' -> B'' is not an
// order from B to B''; reported as a race), the atomics' scope (atomicAdd_block
// orders as atomicAdd does), and orders through __syncwarp alone.
#include <dlfcn.h>
#include <sys/mman.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "emu_internal.h"
#include "emu_race.h"

using namespace gpucnn_emu;
using namespace gpucnn_emu::rt;

namespace {
enum { ACC_WRITE = 1, ACC_ATOMIC = 2 };
struct Acc {
    uint32_t block, epoch, wepoch, site;  // block: linear index + 1 (0: no access yet)
    uint32_t time;                        // fences run so far in the launch (g_time)
    uint16_t tid, flags;
};
struct Cell { Acc w, r1, r2; };
struct Live {
    uintptr_t lo, size;
    unsigned shift, flags;
    int arg;
    const char* name;
    Cell* cells;
};
constexpr int kMaxLive = 256;
Live g_live[kMaxLive];
struct Span { uintptr_t lo, size; };
Span g_span[kMaxLive];  // g_live's ranges, densely: every instrumented access scans them
int g_nlive = 0;
int g_checks = 0;
void* g_arena = nullptr;
size_t g_arena_size = 0;
uintptr_t g_base = 0;  // load address of this module: sites are code offsets from it
uint32_t g_block = 0, g_epoch = 0, g_wepoch[kMaxThreads / 32], g_time = 0;

// A release: thread tid of block `block` fenced at (epoch, time) before an atomic.
// It covers that block's accesses of earlier epochs, and tid's before the fence.
struct Rel { uint32_t block, epoch, time, tid; };
// An acquire of the running block: thread tid fenced at (epoch, time) after
// atomics that read from the releases rels. It covers the block's accesses of
// later epochs, and tid's from the fence on.
struct Acq { uint32_t epoch, time, tid; std::vector<Rel> rels; };
struct ThreadSync {
    uint32_t block = 0;          // the block these belong to (stale when not the running one)
    uint32_t epoch = 0, time = 0;  // the thread's last fence (time 0: none yet in this block)
    std::vector<Rel> pending;    // releases read by its atomics since that fence
};
ThreadSync g_sync_thread[kMaxThreads];
std::unordered_map<uintptr_t, std::vector<Rel>> g_sync_word;  // an atomic word's release sequence
std::vector<Acq> g_acquired;                                  // the running block's acquires
struct Site { const char* file; int line; };
constexpr uint32_t kExplicit = 0x80000000u;
Site g_sites[4096];
uint32_t g_nsites = 0;

unsigned shift_of(unsigned granule) {
    unsigned s = 0;
    while ((1u << s) < granule && s < 3) ++s;
    return s;
}

void add_live(uintptr_t lo, uintptr_t size, unsigned granule, unsigned flags, int arg, const char* name) {
    if (g_nlive == kMaxLive || !size) return;
    g_span[g_nlive] = Span{lo, size};
    g_live[g_nlive++] = Live{lo, size, shift_of(granule), flags, arg, name, nullptr};
}

uint32_t site_of_pc(const void* pc) { return (uint32_t)((uintptr_t)pc - 1 - g_base); }

uint32_t site_of(const char* file, int line) {
    for (uint32_t i = 0; i < g_nsites; ++i)
        if (g_sites[i].line == line && g_sites[i].file == file) return kExplicit | i;
    if (g_nsites == sizeof g_sites / sizeof g_sites[0]) return 0;
    g_sites[g_nsites] = Site{file, line};
    return kExplicit | g_nsites++;
}

unsigned cur_tid() { return (unsigned)(gpucnn_cur - g_fib); }

// The site as text if it is an explicit file:line; code offsets go to launch.py.
void put_site(uint32_t site, char* out, size_t n, uint64_t* pc_off, int* has_pc) {
    if (site & kExplicit) {
        const Site& s = g_sites[site & ~kExplicit];
        snprintf(out, n, "%s:%d", s.file, s.line);
    } else if (site) {
        *pc_off = site;
        *has_pc = 1;
    }
}

// Whether a release and an acquire order prev (another block's) before cur (the running block's).
bool ordered(const Acc& prev, const Acc& cur) {
    for (const Acq& a : g_acquired) {
        if (!(cur.epoch > a.epoch || (cur.epoch == a.epoch && cur.tid == a.tid && cur.time >= a.time))) continue;
        for (const Rel& r : a.rels)
            if (r.block == prev.block &&
                (prev.epoch < r.epoch || (prev.epoch == r.epoch && prev.tid == r.tid && prev.time < r.time)))
                return true;
    }
    return false;
}

// Whether the earlier access prev and the current one cur race (see the top).
inline __attribute__((always_inline)) bool conflict(const Acc& prev, const Acc& cur, bool shared) {
    if (!prev.block) return false;
    // An atomic conflicts only with a plain write: a plain read of an atomically
    // updated word (a CAS loop's first guess) sees some value, whichever.
    if ((prev.flags | cur.flags) & ACC_ATOMIC) {
        if ((prev.flags & cur.flags & ACC_ATOMIC) || !(prev.flags & cur.flags & ACC_WRITE)) return false;
    }
    if (prev.block != cur.block) return !shared && !ordered(prev, cur);  // shared memory belongs to one block
    if (prev.epoch != cur.epoch || prev.tid == cur.tid) return false;
    return prev.tid / 32 != cur.tid / 32 || prev.wepoch == cur.wepoch;
}

inline __attribute__((always_inline)) bool live(const Acc& a, const Acc& cur, bool shared) {
    return a.block && (!shared || (a.block == cur.block && a.epoch == cur.epoch));
}

[[noreturn]] void race(const Live& r, uintptr_t addr, const Acc& prev, const Acc& cur, const void* pc) {
    Report* rep = g_rep;
    rep->addr = addr;
    rep->is_write = (cur.flags & ACC_WRITE) != 0;
    rep->is_write2 = (prev.flags & ACC_WRITE) != 0;
    rep->arg = r.arg;
    uint32_t b = prev.block - 1, gx = g_spec->grid[0], gy = g_spec->grid[1];
    rep->block2[0] = b % gx; rep->block2[1] = b / gx % gy; rep->block2[2] = b / (gx * gy);
    unsigned t = prev.tid, bx = g_spec->block[0], by = g_spec->block[1];
    rep->thread2[0] = t % bx; rep->thread2[1] = t / bx % by; rep->thread2[2] = t / (bx * by);
    put_site(prev.site, rep->site2, sizeof rep->site2, &rep->pc2_off, &rep->has_pc2);
    uint64_t dummy = 0;
    int has = 0;
    put_site(cur.site, rep->site, sizeof rep->site, &dummy, &has);
    if (has) rep->pc = (uint64_t)pc - 1;
    if (r.flags & REGION_SHARED)
        snprintf(rep->what, sizeof rep->what, "%s (byte offset %" PRIu64 ")", r.name, (uint64_t)(addr - r.lo));
    check_fail(RACE);
}

// Records an access of [a, a + n) to region i and reports its first race. Reads,
// by far the most frequent, write the shadow only until a cell holds two live readers.
__attribute__((noinline)) void access_in(int i, uintptr_t a, size_t n, unsigned flags, uint32_t site,
                                         const void* pc) {
    {
        Live& r = g_live[i];
        uintptr_t off = a - r.lo;
        const bool shared = (r.flags & REGION_SHARED) != 0, inout = (r.flags & REGION_INOUT) != 0;
        const unsigned tid = cur_tid();
        const Acc cur{g_block, g_epoch, g_wepoch[tid / 32], site, g_time, (uint16_t)tid, (uint16_t)flags};
        uintptr_t last = off + n - 1 < r.size ? off + n - 1 : r.size - 1;
        for (uintptr_t g = off >> r.shift; g <= last >> r.shift; ++g) {
            Cell& c = r.cells[g];
            const uintptr_t word = r.lo + (g << r.shift);
            if (conflict(c.w, cur, shared) && !(inout && (flags & ACC_WRITE) && (c.w.flags & ACC_WRITE)))
                race(r, word, c.w, cur, pc);
            if (flags & ACC_WRITE) {
                if (conflict(c.r1, cur, shared)) race(r, word, c.r1, cur, pc);
                if (conflict(c.r2, cur, shared)) race(r, word, c.r2, cur, pc);
                c.w = cur;
            } else if (!live(c.r1, cur, shared)) {
                c.r1 = cur;
            } else if (c.r1.block == cur.block && c.r1.tid == cur.tid) {
                c.r1.site = site;
            } else if (!live(c.r2, cur, shared) || (c.r2.block == c.r1.block && cur.block != c.r1.block)) {
                c.r2 = cur;  // keep a reader other than r1, from another block if there is one
            }
        }
    }
}

// The accesses that matter fall in a tracked region; most (locals, inputs) fall in none.
inline __attribute__((always_inline)) void access(uintptr_t a, size_t n, unsigned flags, uint32_t site,
                                                  const void* pc) {
    if (!g_in_fiber || !n) return;
    for (int i = 0; i < g_nlive; ++i)
        if (a - g_span[i].lo < g_span[i].size) return access_in(i, a, n, flags, site, pc);
}

inline __attribute__((always_inline)) void on_pc(const void* p, size_t n, bool write, const void* pc) {
    if (g_checks & CHECK_RACE) access((uintptr_t)p, n, write ? ACC_WRITE : 0, (uint32_t)((uintptr_t)pc - 1 - g_base), pc);
    if (g_checks & CHECK_TRAFFIC) traffic_note((uintptr_t)p, n, write, site_of_pc(pc));
}
}  // namespace

namespace gpucnn_emu::rt {
bool check_begin(const LaunchSpec* s) {
    g_checks = s->checks;
    g_nlive = 0;
    g_time = 0;
    g_sync_word.clear();
    g_acquired.clear();
    for (ThreadSync& t : g_sync_thread) t.block = 0, t.pending.clear();
    Dl_info info;
    g_base = dladdr((void*)&check_begin, &info) ? (uintptr_t)info.dli_fbase : 0;
    traffic_begin(s);
    if (!(g_checks & CHECK_RACE)) return true;
    for (int i = 0; i < s->nregions; ++i) {
        const Region& r = s->regions[i];
        if (!(r.flags & REGION_CONST)) add_live(r.lo, r.size, r.granule, r.flags & REGION_INOUT, r.arg, nullptr);
    }
    for (int i = 0; i < g_nsmem; ++i)
        if (g_smem[i].owner == 0 || g_smem[i].owner == s->owner)
            add_live((uintptr_t)g_smem[i].p, g_smem[i].n, g_smem[i].granule, REGION_SHARED, -1, g_smem[i].name);
    add_live((uintptr_t)s->dyn_ptr, s->dyn_size, 2, REGION_SHARED, -1, "dynamic shared memory");
    size_t cells = 0;
    for (int i = 0; i < g_nlive; ++i) cells += ((g_live[i].size - 1) >> g_live[i].shift) + 1;
    g_arena_size = cells * sizeof(Cell) + 1;
    g_arena = mmap(nullptr, g_arena_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (g_arena == MAP_FAILED) {
        g_arena = nullptr;
        g_checks = 0;
        return false;
    }
    Cell* next = static_cast<Cell*>(g_arena);
    for (int i = 0; i < g_nlive; ++i) {
        g_live[i].cells = next;
        next += ((g_live[i].size - 1) >> g_live[i].shift) + 1;
    }
    return true;
}

void check_block(uint32_t linear_block) {
    traffic_block();  // the block before this one
    g_block = linear_block + 1;
    ++g_epoch;
    g_acquired.clear();
}
void check_barrier() { ++g_epoch; }
void check_warp_sync(unsigned warp) { ++g_wepoch[warp]; }

void check_end() {
    traffic_block();
    g_sync_word.clear();
    g_acquired.clear();
    if (g_arena) munmap(g_arena, g_arena_size);
    g_arena = nullptr;
    g_checks = 0;
    g_nlive = 0;
}
}  // namespace gpucnn_emu::rt

// ---- explicit notes (emu_race.h)
extern "C" {
GPUCNN_HIDDEN void gpucnn_note_access_unmetered(const void* p, size_t bytes, int is_write, const char* file,
                                               int line) {
    if (g_checks & CHECK_RACE) access((uintptr_t)p, bytes, is_write ? ACC_WRITE : 0, site_of(file, line), nullptr);
}

GPUCNN_HIDDEN void gpucnn_note_access(const void* p, size_t bytes, int is_write, const char* file, int line) {
    gpucnn_note_access_unmetered(p, bytes, is_write, file, line);
    if (g_checks & CHECK_TRAFFIC) traffic_note((uintptr_t)p, bytes, is_write != 0, site_of(file, line));
}

// A code site of the traffic counts: file:line into out for an explicit one (a note's), else
// nothing and its code offset (launch.py asks addr2line).
GPUCNN_EXPORT uint64_t gpucnn_site_text(uint32_t site, char* out, int n) {
    uint64_t off = 0;
    int has = 0;
    out[0] = 0;
    put_site(site, out, (size_t)n, &off, &has);
    return has ? off : 0;
}

// The calling thread's sync record, emptied when it belongs to an earlier block.
static ThreadSync& sync_thread() {
    ThreadSync& t = g_sync_thread[cur_tid()];
    if (t.block != g_block) t.block = g_block, t.time = 0, t.pending.clear();
    return t;
}

// Adds r to a list of releases; r supersedes its thread's earlier one (it covers more).
static void add_release(std::vector<Rel>& rels, const Rel& r) {
    for (Rel& q : rels)
        if (q.block == r.block && q.tid == r.tid) {
            q = r;
            return;
        }
    rels.push_back(r);
}

GPUCNN_HIDDEN void gpucnn_note_atomic(const void* p, size_t bytes, const void* pc) {
    if (!(g_checks & CHECK_RACE) || !g_in_fiber) return;
    access((uintptr_t)p, bytes, ACC_WRITE | ACC_ATOMIC, site_of_pc(pc), pc);
    ThreadSync& t = sync_thread();
    std::vector<Rel>& seq = g_sync_word[(uintptr_t)p];
    for (const Rel& r : seq) add_release(t.pending, r);  // what an acquire fence after it will see
    if (t.time) add_release(seq, Rel{g_block, t.epoch, t.time, cur_tid()});  // a fence before it: a release
}

GPUCNN_HIDDEN void gpucnn_note_fence() {
    if (!(g_checks & CHECK_RACE) || !g_in_fiber) return;
    ThreadSync& t = sync_thread();
    t.epoch = g_epoch;
    t.time = ++g_time;  // the thread's accesses before it have a smaller time, after it this one
    if (!t.pending.empty()) {
        g_acquired.push_back(Acq{g_epoch, g_time, cur_tid(), std::move(t.pending)});
        t.pending.clear();
    }
}

GPUCNN_HIDDEN void gpucnn_check_align(const void* p, size_t align, const char* file, int line) {
    if (!(g_checks & CHECK_ALIGN) || !g_in_fiber || ((uintptr_t)p & (align - 1)) == 0) return;
    g_rep->addr = (uint64_t)p;
    g_rep->align = align;
    g_rep->arg = -1;
    snprintf(g_rep->site, sizeof g_rep->site, "%s:%d", file, line);
    snprintf(g_rep->msg, sizeof g_rep->msg, "misaligned access");
    check_fail(MISALIGNED);
}

// ---- ThreadSanitizer's instrumentation interface (only what GCC emits)
#define GPUCNN_TSAN(N)                                                                                  \
    GPUCNN_HIDDEN void __tsan_read##N(void* p) { on_pc(p, N, false, __builtin_return_address(0)); }     \
    GPUCNN_HIDDEN void __tsan_write##N(void* p) { on_pc(p, N, true, __builtin_return_address(0)); }     \
    GPUCNN_HIDDEN void __tsan_unaligned_read##N(void* p) { on_pc(p, N, false, __builtin_return_address(0)); } \
    GPUCNN_HIDDEN void __tsan_unaligned_write##N(void* p) { on_pc(p, N, true, __builtin_return_address(0)); }
GPUCNN_TSAN(1) GPUCNN_TSAN(2) GPUCNN_TSAN(4) GPUCNN_TSAN(8) GPUCNN_TSAN(16)
GPUCNN_HIDDEN void __tsan_read_range(void* p, size_t n) { on_pc(p, n, false, __builtin_return_address(0)); }
GPUCNN_HIDDEN void __tsan_write_range(void* p, size_t n) { on_pc(p, n, true, __builtin_return_address(0)); }
GPUCNN_HIDDEN void __tsan_init() {}
GPUCNN_HIDDEN void __tsan_func_entry(void*) {}
GPUCNN_HIDDEN void __tsan_func_exit() {}
GPUCNN_HIDDEN void __tsan_vptr_update(void*, void*) {}
GPUCNN_HIDDEN void __tsan_vptr_read(void*) {}
}
