// emu_runtime.h: the contract between kernel code (through cuda_emu.h) and the
// scheduler in emu_runtime.cpp. Both are linked into each module's shared
// library; everything is hidden so that two modules loaded in one process never
// bind to each other's scheduler state.
#pragma once
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#ifdef GPUCNN_EMU_UCONTEXT
#include <ucontext.h>
#endif

#define GPUCNN_EXPORT __attribute__((visibility("default")))
#define GPUCNN_HIDDEN __attribute__((visibility("hidden")))

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

namespace gpucnn_emu {

enum State : int { RUNNABLE = 0, AT_SYNC = 1, AT_WARP = 2, EXITED = 3 };

// Block barriers (AT_SYNC) and warp collectives (AT_WARP). The scheduler, not
// the lanes, computes every collective's result from the operands parked here,
// so no lane can observe a slot that another lane has already reused.
enum Op : int {
    OP_SYNC, OP_SYNC_COUNT, OP_SYNC_AND, OP_SYNC_OR,
    W_SYNCWARP, W_SHFL, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_XOR, W_BALLOT, W_ANY, W_ALL,
    // A whole-warp instruction (mma.sync, ldmatrix: emu_mma.cpp): val points at the
    // lane's operands, arg at a CollectiveFn run once for the warp when all 32 lanes arrive.
    W_COLLECTIVE,
};
// lanes[j]: lane j's operands (val); name: the instruction, for error messages.
struct Collective {
    void (*run)(void* const* lanes);
    const char* name;
};

struct Fiber {
    uint3 tid;
    int state, op;
    const char* file;
    int line, width;
    unsigned mask;
    long long arg;
    uint64_t val, result;
    char* stack_top;
    bool started;
#ifdef GPUCNN_EMU_UCONTEXT
    ucontext_t uc;
#else
    jmp_buf jb;
#endif
};

}  // namespace gpucnn_emu

extern "C" {
GPUCNN_HIDDEN extern gpucnn_emu::Fiber* gpucnn_cur;
GPUCNN_HIDDEN extern uint3 gpucnn_block_idx;
GPUCNN_HIDDEN extern dim3 gpucnn_block_dim, gpucnn_grid_dim;
GPUCNN_HIDDEN extern unsigned char* gpucnn_dyn_smem;
// Parks the current fiber in `state` and returns when the scheduler resumes it.
// Deliberately out of line: the call is what stops the compiler from caching
// shared or global memory across a barrier.
GPUCNN_HIDDEN void gpucnn_wait(int state);
GPUCNN_HIDDEN unsigned gpucnn_activemask(void);
GPUCNN_HIDDEN int gpucnn_register_smem(void* p, size_t n, int owner);
// The same with the element size (the granule of race checks) and the variable's name.
GPUCNN_HIDDEN int gpucnn_register_smem_named(void* p, size_t n, int owner, unsigned elem, const char* name);
}
