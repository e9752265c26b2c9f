// emu_runtime.cpp: runs one launch block by block; the threads of a block are
// cooperative fibers on the calling OS thread. Faults inside a launch are
// caught with a temporary SIGSEGV/SIGBUS/SIGFPE/SIGILL handler and reported to
// launch.py, which maps addresses to arguments and PCs to source lines.
#include <dlfcn.h>
#include <pthread.h>

#include <cstdio>
#include <cstring>

#include "emu_internal.h"

using namespace gpucnn_emu;
using namespace gpucnn_emu::rt;

namespace gpucnn_emu::rt {
SmemEntry g_smem[4096];
int g_nsmem = 0;
}

extern "C" {
GPUCNN_HIDDEN Fiber* gpucnn_cur = nullptr;
GPUCNN_HIDDEN uint3 gpucnn_block_idx;
GPUCNN_HIDDEN dim3 gpucnn_block_dim, gpucnn_grid_dim;
GPUCNN_HIDDEN unsigned char* gpucnn_dyn_smem = nullptr;
}

namespace {
// NaN read as floats or as a double, and distinct from the output poison (0x7FA5A5A5),
// so a value copied from unwritten shared memory is a NaN, not an "unwritten" element.
constexpr uint64_t kSmemPoison = 0x7FF5B5B57FB5B5B5ull;

sigjmp_buf g_launch_jb;
pthread_t g_launch_thread;
const int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
struct sigaction g_old_act[4];
stack_t g_old_stack;
alignas(16) char g_altstack[64 * 1024];


void poison(void* p, size_t n) {
    auto* b = static_cast<unsigned char*>(p);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) std::memcpy(b + i, &kSmemPoison, 8);
    for (; i < n; ++i) b[i] = reinterpret_cast<const unsigned char*>(&kSmemPoison)[i % 8];
}

void on_signal(int sig, siginfo_t* si, void* ctx) {
    if (!pthread_equal(pthread_self(), g_launch_thread)) {
        // Not the launching thread: hand the fault back to whoever owned the signal.
        for (int i = 0; i < 4; ++i) if (kSignals[i] == sig) sigaction(sig, &g_old_act[i], nullptr);
        return;
    }
    auto* uc = static_cast<ucontext_t*>(ctx);
    g_rep->code = sig == SIGFPE ? ARITH : sig == SIGILL ? TRAP : FAULT;
    g_rep->sig = sig;
    g_rep->addr = (uint64_t)si->si_addr;
    g_rep->is_write = (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;
    g_rep->pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    if (!g_in_fiber) g_rep->code = INTERNAL;
    siglongjmp(g_launch_jb, 1);
}

void install_handlers() {
    g_launch_thread = pthread_self();
    stack_t ss{};
    ss.ss_sp = g_altstack;
    ss.ss_size = sizeof g_altstack;
    sigaltstack(&ss, &g_old_stack);
    struct sigaction sa{};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 4; ++i) sigaction(kSignals[i], &sa, &g_old_act[i]);
}

void restore_handlers() {
    for (int i = 0; i < 4; ++i) sigaction(kSignals[i], &g_old_act[i], nullptr);
    sigaltstack(&g_old_stack, nullptr);
}

void note_thread() {
    if (!g_in_fiber || !gpucnn_cur) return;
    g_rep->has_thread = 1;
    g_rep->thread[0] = gpucnn_cur->tid.x; g_rep->thread[1] = gpucnn_cur->tid.y; g_rep->thread[2] = gpucnn_cur->tid.z;
}
}  // namespace

namespace gpucnn_emu::rt {
[[noreturn]] void check_fail(int code) {
    g_rep->code = code;
    note_thread();
    siglongjmp(g_launch_jb, 1);
}
}  // namespace gpucnn_emu::rt

extern "C" {
GPUCNN_HIDDEN int gpucnn_register_smem_named(void* p, size_t n, int owner, unsigned elem, const char* name) {
    if (g_nsmem < (int)(sizeof g_smem / sizeof g_smem[0])) g_smem[g_nsmem++] = SmemEntry{p, n, owner, elem, name};
    return 0;
}
GPUCNN_HIDDEN int gpucnn_register_smem(void* p, size_t n, int owner) {
    return gpucnn_register_smem_named(p, n, owner, 4, "a __shared__ variable");
}

// glibc's assert() calls this; the hidden definition wins inside this library,
// so a failed device-side assert becomes a Python exception instead of abort().
[[noreturn]] GPUCNN_HIDDEN void __assert_fail(const char* expr, const char* file, unsigned line, const char* fn) {
    if (!g_rep) __builtin_trap();
    g_rep->code = ASSERTION;
    note_thread();
    snprintf(g_rep->msg, sizeof g_rep->msg, "assertion `%s` failed in %s at %s:%u", expr, fn, file, line);
    siglongjmp(g_launch_jb, 1);
}

GPUCNN_EXPORT uint64_t gpucnn_static_smem(int owner) {
    uint64_t total = 0;
    for (int i = 0; i < g_nsmem; ++i)
        if (g_smem[i].owner == 0 || g_smem[i].owner == owner) total += (g_smem[i].n + 15) / 16 * 16;
    return total;
}

// A region of fiber stacks for LaunchSpec.stacks, shared by the modules that launch on it.
GPUCNN_EXPORT char* gpucnn_map_fiber_stacks() { return map_stacks(); }

GPUCNN_EXPORT void gpucnn_stack_region(uint64_t* lo, uint64_t* hi) {
    *lo = (uint64_t)g_stacks;
    *hi = g_stacks ? (uint64_t)(g_stacks + (kStack + kPage) * kMaxThreads) : 0;
}

GPUCNN_EXPORT int gpucnn_launch(const LaunchSpec* s, Report* r) {
    std::memset(r, 0, sizeof *r);
    g_spec = s;
    g_rep = r;
    if (!ensure_stacks()) {
        r->code = INTERNAL;
        snprintf(r->msg, sizeof r->msg, "could not map fiber stacks");
        return r->code;
    }
    g_n = s->block[0] * s->block[1] * s->block[2];
    gpucnn_block_dim = dim3(s->block[0], s->block[1], s->block[2]);
    gpucnn_grid_dim = dim3(s->grid[0], s->grid[1], s->grid[2]);
    gpucnn_dyn_smem = s->dyn_ptr;
    g_rng = s->seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    for (unsigned i = 0; i < g_n; ++i) {
        Fiber& f = g_fib[i];
        f.tid = uint3{i % s->block[0], i / s->block[0] % s->block[1], i / (s->block[0] * s->block[1])};
        f.stack_top = g_stacks + (i + 1) * (kStack + kPage) - 64;
    }
    if (!check_begin(s)) {
        r->code = INTERNAL;
        snprintf(r->msg, sizeof r->msg, "could not map the shadow memory of the race checks");
        return r->code;
    }
    install_handlers();
    if (sigsetjmp(g_launch_jb, 1)) {
        restore_handlers();
        check_end();
        note_thread();
        g_in_fiber = 0;
        r->block[0] = gpucnn_block_idx.x; r->block[1] = gpucnn_block_idx.y; r->block[2] = gpucnn_block_idx.z;
        Dl_info info;
        if (r->pc && dladdr((void*)r->pc, &info) && info.dli_fname) {
            r->pc_off = r->pc - (uint64_t)info.dli_fbase;
            snprintf(r->obj, sizeof r->obj, "%s", info.dli_fname);
        }
        return r->code;
    }
    int rc = OK;
    const uint64_t total = (uint64_t)s->grid[0] * s->grid[1] * s->grid[2];
    const uint64_t count = s->blocks ? s->nblocks : total;
    for (uint64_t k = 0; k < count && rc == OK; ++k) {
        const uint64_t b = s->blocks ? s->blocks[k] : k;  // x fastest, as CUDA numbers blocks
        gpucnn_block_idx = uint3{(unsigned)(b % s->grid[0]), (unsigned)(b / s->grid[0] % s->grid[1]),
                                 (unsigned)(b / ((uint64_t)s->grid[0] * s->grid[1]))};
        check_block((uint32_t)b);
        for (int i = 0; i < g_nsmem; ++i)
            if (g_smem[i].owner == 0 || g_smem[i].owner == s->owner) poison(g_smem[i].p, g_smem[i].n);
        poison(s->dyn_ptr, s->dyn_size);
        for (unsigned i = 0; i < g_n; ++i) {
            g_fib[i].state = RUNNABLE;
            g_fib[i].started = false;
            g_fib[i].val = 0;
        }
        rc = run_block();
        if (rc != OK) {
            r->block[0] = gpucnn_block_idx.x; r->block[1] = gpucnn_block_idx.y; r->block[2] = gpucnn_block_idx.z;
        }
    }
    check_end();
    restore_handlers();
    return rc;
}
}
