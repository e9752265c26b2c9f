// emu_race.h: the checks of a "checked" build (race_check, misalign, sanitize),
// for kernel-side C++ that moves memory without plain loads and stores the
// compiler can instrument (emulator bodies of cp.async, ldmatrix, mma.sync).
//
// Every plain load and store of kernel code is already reported by the
// compiler's instrumentation (-fsanitize=thread, callbacks in emu_check.cpp).
// Code that copies memory behind the compiler's back, or whose effect must be
// attributed to another moment, calls these instead; each is a no-op outside a
// checked launch, and an error ends the launch (the call does not return).
//   emu_note_read / emu_note_write: the current thread reads / writes bytes
//     [p, p + bytes) of shared or global memory now, at file:line. Ranges in no
//     argument buffer and no shared variable (locals, registers) are ignored.
//   emu_check_align: p must be a multiple of `align` bytes (a power of two).
#pragma once
#include <cstddef>

#include "emu_runtime.h"

extern "C" {
GPUCNN_HIDDEN void gpucnn_note_access(const void* p, size_t bytes, int is_write, const char* file, int line);
GPUCNN_HIDDEN void gpucnn_check_align(const void* p, size_t align, const char* file, int line);
// An atomic read-modify-write: exempt from races with other atomics, not with plain accesses.
GPUCNN_HIDDEN void gpucnn_note_atomic(const void* p, size_t bytes, const void* pc);
}

namespace gpucnn_emu {
inline void emu_note_read(const void* p, size_t bytes, const char* file, int line) {
    gpucnn_note_access(p, bytes, 0, file, line);
}
inline void emu_note_write(const void* p, size_t bytes, const char* file, int line) {
    gpucnn_note_access(p, bytes, 1, file, line);
}
inline void emu_check_align(const void* p, size_t align, const char* file, int line) {
    gpucnn_check_align(p, align, file, line);
}
}  // namespace gpucnn_emu
