// emu_race.h: the checks of a "checked" build (race_check, misalign, sanitize),
// for kernel-side C++ that moves memory without plain loads and stores the
// compiler can instrument (emulator bodies of cp.async, ldmatrix, mma.sync).
//
// Every plain load and store of kernel code is already reported by the
// compiler's instrumentation (-fsanitize=thread, callbacks in emu_check.cpp).
// Code that copies memory behind the compiler's back, or whose effect must be
// attributed to another moment, calls these instead; each is a no-op unless
// the launch runs its check (notes: race_check; alignment: misalign or
// sanitize), and an error ends the launch (the call does not return).
//   emu_note_read / emu_note_write: the current thread reads / writes bytes
//     [p, p + bytes) of shared or global memory now, at file:line. Ranges in no
//     argument buffer and no shared variable (locals, registers) are ignored.
//   emu_check_align: p must be a multiple of `align` bytes (a power of two).
//
// cp.async, for example: at the issue, emu_check_align(src, n) and
// emu_check_align(dst, n) with n the copy's size, and emu_note_read(src, n) (the
// source is read from then on); the copy itself is kept and done at
// cp.async.wait_group / wait_all by the issuing thread (the current fiber),
// through a function the instrumentation does not see (a plain memcpy of a
// constant size is inlined and instrumented, at the wait's line), followed by
// emu_note_write(dst, n, issue_file, issue_line). Another thread's read of dst
// before the barrier that follows the wait is then a RaceError naming both
// lines; filling dst with the shared-memory poison at the issue (unnoted) makes
// an early read by the issuing thread itself a NaN.
#pragma once
#include <cstddef>

#include "emu_runtime.h"

extern "C" {
GPUCNN_HIDDEN void gpucnn_note_access(const void* p, size_t bytes, int is_write, const char* file, int line);
// The same for the race checks only: an access the traffic counts leave out (wgmma's operand
// reads, noted by element where the tensor core reads the operands through its own path).
GPUCNN_HIDDEN void gpucnn_note_access_unmetered(const void* p, size_t bytes, int is_write, const char* file, int line);
GPUCNN_HIDDEN void gpucnn_check_align(const void* p, size_t align, const char* file, int line);
// An atomic read-modify-write: exempt from races with other atomics, not with plain accesses.
GPUCNN_HIDDEN void gpucnn_note_atomic(const void* p, size_t bytes, const void* pc);
// A device- or system-scope fence (__threadfence): with a later atomic of the same
// thread a release, with an earlier one an acquire (emu_check.cpp).
GPUCNN_HIDDEN void gpucnn_note_fence();
}

namespace gpucnn_emu {
inline void emu_note_read(const void* p, size_t bytes, const char* file, int line) {
    gpucnn_note_access(p, bytes, 0, file, line);
}
inline void emu_note_write(const void* p, size_t bytes, const char* file, int line) {
    gpucnn_note_access(p, bytes, 1, file, line);
}
inline void emu_note_read_unmetered(const void* p, size_t bytes, const char* file, int line) {
    gpucnn_note_access_unmetered(p, bytes, 0, file, line);
}
inline void emu_check_align(const void* p, size_t align, const char* file, int line) {
    gpucnn_check_align(p, align, file, line);
}
}  // namespace gpucnn_emu
