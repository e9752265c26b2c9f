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
    // Checked builds: the non-const pointer arguments (launch.py), what to check
    // (CHECK_* bits), and the linear indices of the blocks to run (all when null).
    const struct Region* regions;
    int nregions, checks;
    const uint64_t* blocks;
    uint64_t nblocks;
    // The fibers' stacks: one region that every module of the process shares
    // (gpucnn_map_fiber_stacks, by launch.py), since each mapping's guard pages
    // cost the kernel's map count (vm.max_map_count); null: the module maps its own.
    char* stacks;
};

// A global-memory range whose accesses are tracked: one shadow record per granule.
struct Region {
    uint64_t lo, size;
    uint32_t granule, flags;  // flags: REGION_*
    int32_t arg;
    uint32_t unused;
};
// REGION_CONST: a const input, passed only for the traffic counts (the race checks skip it).
enum { REGION_INOUT = 1, REGION_SHARED = 2, REGION_CONST = 4 };
enum { CHECK_RACE = 1, CHECK_ALIGN = 2, CHECK_UB = 4, CHECK_TRAFFIC = 8 };

enum Code { OK = 0, FAULT = 1, BARRIER = 2, ARITH = 3, TRAP = 4, ASSERTION = 5, INTERNAL = 6, RACE = 7,
            MISALIGNED = 8, UNDEFINED = 9 };

struct Report {
    int code, sig, has_thread, is_write;
    unsigned block[3], thread[3];
    uint64_t addr, pc, pc_off;
    char obj[512];
    char msg[4096];
    // RACE: the earlier access (block2, thread2, its code offset or site2);
    // MISALIGNED: align. site: file:line when known without addr2line.
    unsigned block2[3], thread2[3];
    int is_write2, has_pc2;
    uint64_t pc2_off, align;
    int arg;  // the argument holding addr, -1 for shared memory or none
    char site[256], site2[256], what[256];
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

// Static __shared__ variables (SmemSlot), registered at load time.
struct SmemEntry { void* p; size_t n; int owner; unsigned granule; const char* name; };
extern SmemEntry g_smem[4096];
extern int g_nsmem;

bool ensure_stacks();
char* map_stacks();  // a new region of kMaxThreads guarded stacks, or null
// emu_check.cpp: shadow state of a checked launch. check_begin maps the shadow
// (false if it cannot), check_block and check_barrier start a new epoch,
// check_warp_sync marks warp w's lanes as synchronized, check_end unmaps.
bool check_begin(const LaunchSpec* s);
void check_block(uint32_t linear_block);
void check_barrier();
void check_warp_sync(unsigned warp);
void check_end();
// emu_traffic.cpp: the traffic counts of a launch (CHECK_TRAFFIC). traffic_begin takes the
// launch's buffers (every pointer argument: launch.py) and shared variables, traffic_note an
// access of the running thread at a code site, traffic_block scores the block that ran.
void traffic_begin(const LaunchSpec* s);
void traffic_note(uintptr_t a, size_t n, bool write, uint32_t site);
void traffic_block();
// Fills the report for an error found by a check and leaves the launch.
[[noreturn]] void check_fail(int code);
// Runs every thread of the current block to completion: OK or BARRIER (g_rep filled).
int run_block();
}  // namespace gpucnn_emu::rt
