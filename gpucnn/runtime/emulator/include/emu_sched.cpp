// emu_sched.cpp: the threads of a block as cooperative fibers on the calling OS
// thread, switched with _setjmp/_longjmp (or ucontext with GPUCNN_EMU_UCONTEXT),
// and the resolution of block barriers and warp collectives.
#include <sys/mman.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <utility>

#include "emu_internal.h"

using namespace gpucnn_emu;

namespace gpucnn_emu::rt {
Fiber g_fib[kMaxThreads];
char* g_stacks = nullptr;
const LaunchSpec* g_spec = nullptr;
Report* g_rep = nullptr;
unsigned g_n = 0;
volatile sig_atomic_t g_in_fiber = 0;
uint64_t g_rng = 1;

namespace {
unsigned g_order[kMaxThreads];
jmp_buf g_sched_jb;
#ifdef GPUCNN_EMU_UCONTEXT
ucontext_t g_sched_uc;
#endif

uint64_t rng_next() {  // xorshift64*: reproducible per seed, good enough for orders
    g_rng ^= g_rng >> 12; g_rng ^= g_rng << 25; g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}
}  // namespace

char* map_stacks() {
    size_t per = kStack + kPage, total = per * kMaxThreads;
    void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    char* stacks = static_cast<char*>(m);
    for (size_t i = 0; i < kMaxThreads; ++i) mprotect(stacks + i * per, kPage, PROT_NONE);  // overflow guard
    return stacks;
}

bool ensure_stacks() {
    if (g_spec && g_spec->stacks) g_stacks = g_spec->stacks;
    if (!g_stacks) g_stacks = map_stacks();
    return g_stacks != nullptr;
}

namespace {
[[noreturn]] __attribute__((noinline, used)) void fiber_entry() {
    g_spec->shim(g_spec->args);
    gpucnn_cur->state = EXITED;
#ifdef GPUCNN_EMU_UCONTEXT
    setcontext(&g_sched_uc);
#else
    _longjmp(g_sched_jb, 1);
#endif
    __builtin_unreachable();
}

#ifndef GPUCNN_EMU_UCONTEXT
// A fiber's first run: switch to its stack and call fiber_entry, which never
// returns (it leaves with _longjmp). Cheaper than makecontext per thread per block.
[[noreturn]] __attribute__((noinline)) void start_on(char* top) {
    asm volatile("mov %0, %%rsp\n\tcall *%1\n\tud2" : : "r"(top), "r"(&fiber_entry) : "memory");
    __builtin_unreachable();
}
#endif

void resume(Fiber* f) {
    gpucnn_cur = f;
    g_in_fiber = 1;
#ifdef GPUCNN_EMU_UCONTEXT
    if (!f->started) {
        f->started = true;
        getcontext(&f->uc);
        f->uc.uc_stack.ss_sp = f->stack_top - kStack;
        f->uc.uc_stack.ss_size = kStack;
        f->uc.uc_link = nullptr;
        makecontext(&f->uc, (void (*)())fiber_entry, 0);
    }
    swapcontext(&g_sched_uc, &f->uc);
#else
    if (!_setjmp(g_sched_jb)) {
        if (f->started) _longjmp(f->jb, 1);
        f->started = true;
        start_on(f->stack_top);
    }
#endif
    g_in_fiber = 0;
}

// ---- error text
struct Msg {
    char* p; size_t left;
    void add(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
        va_list ap; va_start(ap, fmt);
        int k = vsnprintf(p, left, fmt, ap);
        va_end(ap);
        if (k > 0) { size_t m = (size_t)k < left ? (size_t)k : (left ? left - 1 : 0); p += m; left -= m; }
    }
};

template <class Pred> unsigned add_threads(Msg& m, Pred pred) {
    unsigned count = 0;
    for (unsigned i = 0; i < g_n; ++i) {
        if (!pred(g_fib[i])) continue;
        if (count < 4) m.add("%s(%u,%u,%u)", count ? ", " : "", g_fib[i].tid.x, g_fib[i].tid.y, g_fib[i].tid.z);
        ++count;
    }
    if (count > 4) m.add(", ... (%u threads)", count);
    return count;
}

const char* op_name(int op) {
    static const char* names[] = {"__syncthreads()", "__syncthreads_count()", "__syncthreads_and()",
                                  "__syncthreads_or()", "__syncwarp()", "__shfl_sync()", "__shfl_up_sync()",
                                  "__shfl_down_sync()", "__shfl_xor_sync()", "__ballot_sync()",
                                  "__any_sync()", "__all_sync()"};
    return op >= 0 && op <= W_ALL ? names[op] : "?";
}
const char* fiber_op(const Fiber* f) {
    return f->op == W_COLLECTIVE ? reinterpret_cast<const Collective*>(f->arg)->name : op_name(f->op);
}

Msg barrier_msg(const Fiber* who) {
    g_rep->code = BARRIER;
    g_rep->has_thread = 1;
    g_rep->thread[0] = who->tid.x; g_rep->thread[1] = who->tid.y; g_rep->thread[2] = who->tid.z;
    Msg m{g_rep->msg, sizeof g_rep->msg};
    m.add("block (%u,%u,%u): ", gpucnn_block_idx.x, gpucnn_block_idx.y, gpucnn_block_idx.z);
    return m;
}

bool same_site(const Fiber* a, const Fiber* b) {
    return a->op == b->op && a->line == b->line && (a->file == b->file || std::strcmp(a->file, b->file) == 0);
}
bool same_collective(const Fiber* a, const Fiber* b) {
    if (a->op == W_COLLECTIVE && a->arg != b->arg) return false;  // two different instructions
    return a->op == b->op && (a->op == W_SYNCWARP || same_site(a, b));
}

int warp_error(const Fiber* f, unsigned lane, const Fiber* g) {
    Msg m = barrier_msg(f);
    m.add("thread (%u,%u,%u) (warp %u, lane %u) is at %s at %s:%d with mask 0x%08x, but lane %u = thread (%u,%u,%u) ",
          f->tid.x, f->tid.y, f->tid.z, (unsigned)((f - g_fib) / 32), (unsigned)((f - g_fib) % 32), fiber_op(f),
          f->file, f->line, f->mask, lane, g->tid.x, g->tid.y, g->tid.z);
    if (g->state == EXITED) m.add("has exited; a warp collective must not name an exited lane");
    else m.add("is at %s at %s:%d; the lanes named in the mask must meet at the same collective", fiber_op(g),
               g->file, g->line);
    return -1;
}

// A whole-warp instruction in a warp of fewer than 32 threads (the missing
// lanes do not exist, so the mask check cannot name one).
int partial_warp(const Fiber* f, unsigned nl) {
    Msg m = barrier_msg(f);
    m.add("thread (%u,%u,%u) is at %s at %s:%d in a warp of %u threads; the instruction needs all 32 lanes",
          f->tid.x, f->tid.y, f->tid.z, fiber_op(f), f->file, f->line, nl);
    return -1;
}

void run_collective(Fiber* f, unsigned base) {
    void* lanes[32];
    for (unsigned j = 0; j < 32; ++j) lanes[j] = reinterpret_cast<void*>(g_fib[base + j].val);
    reinterpret_cast<const Collective*>(f->arg)->run(lanes);
    for (unsigned j = 0; j < 32; ++j) g_fib[base + j].result = 0;
}

// Lanes of the warp at `base` parked at the same collective as f.
unsigned group_of(const Fiber* f, unsigned base, unsigned nl) {
    unsigned g = 0;
    for (unsigned j = 0; j < nl; ++j)
        if (g_fib[base + j].state == AT_WARP && same_collective(f, &g_fib[base + j])) g |= 1u << j;
    return g;
}

// A collective's result for lane `lane`; `grp` are the lanes taking part in it.
void compute(Fiber* f, unsigned base, unsigned lane, unsigned grp) {
    unsigned w = (f->width > 0 && f->width <= 32) ? (unsigned)f->width : 32u;
    long long src = lane, seg = lane / w * w;
    switch (f->op) {
        case W_SHFL: src = seg + (long long)((unsigned long long)f->arg % w); break;
        case W_SHFL_UP: src = (long long)(lane - seg) >= f->arg ? lane - f->arg : lane; break;
        case W_SHFL_DOWN: src = (long long)(lane - seg) + f->arg < (long long)w ? lane + f->arg : lane; break;
        case W_SHFL_XOR: src = lane ^ (unsigned)f->arg; if (src >= seg + (long long)w) src = lane; break;
        case W_BALLOT: case W_ANY: case W_ALL: {
            unsigned present = f->mask & grp, bits = 0;
            for (unsigned m = present; m; m &= m - 1) {
                unsigned j = (unsigned)__builtin_ctz(m);
                if (g_fib[base + j].val) bits |= 1u << j;
            }
            f->result = f->op == W_BALLOT ? bits : f->op == W_ANY ? (bits != 0) : (bits == present);
            return;
        }
        default: f->result = 0; return;
    }
    // A source lane outside the collective is undefined on a GPU: return our own value.
    bool ok = src >= 0 && src < 32 && (grp >> src & 1u);
    f->result = ok ? g_fib[base + src].val : f->val;
}

// Completes every warp collective whose named lanes have all arrived.
// Returns 1 if any fiber became runnable, 0 if none, -1 on a collective error.
int resolve_warps() {
    int progressed = 0;
    for (unsigned base = 0; base < g_n; base += 32) {
        unsigned nl = g_n - base < 32 ? g_n - base : 32;
        unsigned exist = nl == 32 ? ~0u : ((1u << nl) - 1u);
        unsigned at = 0, same = 0;
        const Fiber* first = nullptr;
        for (unsigned l = 0; l < nl; ++l) {
            const Fiber* f = &g_fib[base + l];
            if (f->state != AT_WARP) continue;
            at |= 1u << l;
            if (!first) first = f;
            if (same_collective(first, f)) same |= 1u << l;
        }
        if (!at) continue;
        unsigned grp[32];
        for (unsigned m = at; m; m &= m - 1) {
            unsigned l = (unsigned)__builtin_ctz(m);
            Fiber* f = &g_fib[base + l];
            grp[l] = (same >> l & 1u) ? same : group_of(f, base, nl);  // one collective per warp is the norm
            unsigned missing = f->mask & exist & ~grp[l];
            if (missing) {
                unsigned j = (unsigned)__builtin_ctz(missing);
                return warp_error(f, j, &g_fib[base + j]);
            }
        }
        for (unsigned m = at; m; m &= m - 1) {
            unsigned l = (unsigned)__builtin_ctz(m);
            Fiber* f = &g_fib[base + l];
            if (f->op != W_COLLECTIVE) compute(f, base, l, grp[l]);
            else if (grp[l] != ~0u) return partial_warp(f, nl);
            else if (l == (unsigned)__builtin_ctz(grp[l])) run_collective(f, base);
        }
        for (unsigned m = at; m; m &= m - 1) g_fib[base + __builtin_ctz(m)].state = RUNNABLE;
        check_warp_sync(base / 32);  // the lanes' earlier accesses happen before their later ones
        progressed = 1;
    }
    return progressed;
}

// Releases a __syncthreads() that every live thread has reached at one call
// site. Returns 1 if released, 0 if the block is done, -1 on a barrier error.
int resolve_block() {
    Fiber* first = nullptr;
    Fiber* other = nullptr;
    unsigned exited = 0;
    uint64_t count = 0;
    for (unsigned i = 0; i < g_n; ++i) {
        Fiber* f = &g_fib[i];
        if (f->state == EXITED) { ++exited; continue; }
        if (!first) first = f;
        else if (!other && !same_site(first, f)) other = f;
        count += f->val != 0;
    }
    if (!first) return 0;
    if (exited) {
        Msg m = barrier_msg(first);
        m.add("threads ");
        add_threads(m, [](const Fiber& f) { return f.state == AT_SYNC; });
        m.add(" wait at %s at %s:%d while threads ", op_name(first->op), first->file, first->line);
        add_threads(m, [](const Fiber& f) { return f.state == EXITED; });
        m.add(" have exited (e.g. an early return before the barrier); on a GPU this hangs or is undefined");
        return -1;
    }
    if (other) {
        Msg m = barrier_msg(first);
        m.add("threads wait at different barriers: %s at %s:%d (threads ", op_name(first->op), first->file, first->line);
        add_threads(m, [first](const Fiber& f) { return f.state == AT_SYNC && same_site(first, &f); });
        m.add(") and %s at %s:%d (threads ", op_name(other->op), other->file, other->line);
        add_threads(m, [first](const Fiber& f) { return f.state == AT_SYNC && !same_site(first, &f); });
        m.add("); every thread of a block must reach the same __syncthreads()");
        return -1;
    }
    uint64_t r = first->op == OP_SYNC_COUNT ? count : first->op == OP_SYNC_AND ? count == g_n
               : first->op == OP_SYNC_OR ? count != 0 : 0;
    for (unsigned i = 0; i < g_n; ++i) { g_fib[i].state = RUNNABLE; g_fib[i].result = r; }
    check_barrier();
    return 1;
}

void make_order() {
    for (unsigned i = 0; i < g_n; ++i) g_order[i] = g_spec->order == 1 ? g_n - 1 - i : i;
    if (g_spec->order == 2)
        for (unsigned i = g_n - 1; i > 0; --i) std::swap(g_order[i], g_order[rng_next() % (i + 1)]);
}

int run_block_() {
    for (;;) {
        make_order();
        for (unsigned k = 0; k < g_n; ++k)
            if (g_fib[g_order[k]].state == RUNNABLE) resume(&g_fib[g_order[k]]);
        int w = resolve_warps();
        if (w < 0) return BARRIER;
        if (w > 0) continue;
        int b = resolve_block();
        if (b < 0) return BARRIER;
        if (b == 0) return OK;
    }
}
}  // namespace

int run_block() { return run_block_(); }
}  // namespace gpucnn_emu::rt

using namespace gpucnn_emu::rt;

extern "C" {
GPUCNN_HIDDEN unsigned gpucnn_activemask(void) {
    unsigned lin = (unsigned)(gpucnn_cur - g_fib), base = lin / 32 * 32, m = 0;
    for (unsigned j = 0; j < 32 && base + j < g_n; ++j) if (g_fib[base + j].state != EXITED) m |= 1u << j;
    return m;
}

GPUCNN_HIDDEN void gpucnn_wait(int state) {
    Fiber* f = gpucnn_cur;
    f->state = state;
#ifdef GPUCNN_EMU_UCONTEXT
    swapcontext(&f->uc, &g_sched_uc);
#else
    if (!_setjmp(f->jb)) _longjmp(g_sched_jb, 1);
#endif
}
}
