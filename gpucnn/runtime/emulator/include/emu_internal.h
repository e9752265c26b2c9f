// emu_internal.h: state shared by the scheduler (emu_sched.cpp) and the launch
// and fault handling (emu_runtime.cpp). Not seen by kernel code.
#pragma once
#include "emu_runtime.h"

#include <csignal>

struct LaunchSpec {
    void (*shim)(void**);
    void** args;
    unsigned grid[3], block[3];
    uint64_t dyn_size;
    unsigned char* dyn_ptr;
    int owner, order;
    uint64_t seed;
};

enum Code { OK = 0, FAULT = 1, BARRIER = 2, ARITH = 3, TRAP = 4, ASSERTION = 5, INTERNAL = 6 };

struct Report {
    int code, sig, has_thread, is_write;
    unsigned block[3], thread[3];
    uint64_t addr, pc, pc_off;
    char obj[512];
    char msg[4096];
};

namespace gpucnn_emu::rt {
constexpr size_t kPage = 4096, kStack = 256 * 1024, kMaxThreads = 1024;
extern Fiber g_fib[kMaxThreads];
extern char* g_stacks;
extern const LaunchSpec* g_spec;
extern Report* g_rep;
extern unsigned g_n;
extern volatile sig_atomic_t g_in_fiber;
extern uint64_t g_rng;

bool ensure_stacks();
// Runs every thread of the current block to completion: OK or BARRIER (g_rep filled).
int run_block();
}  // namespace gpucnn_emu::rt
