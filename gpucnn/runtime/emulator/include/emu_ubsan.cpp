// emu_ubsan.cpp: the handlers that GCC's -fsanitize=alignment,
// signed-integer-overflow,shift instrumentation calls (recoverable variants,
// the data layouts of GCC's and LLVM's ubsan runtime). A misaligned access is
// reported when the launch checks alignment (misalign or sanitize), undefined
// arithmetic when it runs with sanitize; otherwise they return and the kernel
// goes on with the wrapped result, as a GPU would.
#include <cinttypes>
#include <cstdio>

#include "emu_internal.h"

using namespace gpucnn_emu::rt;

namespace {
struct SourceLocation { const char* file; uint32_t line, column; };
struct TypeDescriptor { uint16_t kind, info; char name[1]; };
struct TypeMismatchData { SourceLocation loc; const TypeDescriptor* type; unsigned char log_align, check_kind; };
struct OverflowData { SourceLocation loc; const TypeDescriptor* type; };
struct ShiftData { SourceLocation loc; const TypeDescriptor* lhs, *rhs; };

bool wanted(int bit) { return g_rep && g_in_fiber && (g_spec->checks & bit); }

// An integer operand as text: inline values of at most 64 bits (the only ones kernels use).
void int_text(const TypeDescriptor* t, uintptr_t v, char* out, size_t n) {
    unsigned bits = 1u << (t->info >> 1);
    if (bits > 64) { snprintf(out, n, "(%u-bit value)", bits); return; }
    if (t->info & 1) {
        int64_t s = bits == 64 ? (int64_t)v : (int64_t)(v << (64 - bits)) >> (64 - bits);
        snprintf(out, n, "%" PRId64, s);
    } else {
        uint64_t u = bits == 64 ? (uint64_t)v : (uint64_t)v & ((1ull << bits) - 1);
        snprintf(out, n, "%" PRIu64, u);
    }
}

[[noreturn]] void undefined(const SourceLocation& loc, int code) {
    snprintf(g_rep->site, sizeof g_rep->site, "%s:%u", loc.file, loc.line);
    g_rep->arg = -1;
    check_fail(code);
}

void overflow(const OverflowData* d, uintptr_t a, uintptr_t b, char op) {
    if (!wanted(CHECK_UB)) return;
    char x[32], y[32];
    int_text(d->type, a, x, sizeof x);
    int_text(d->type, b, y, sizeof y);
    snprintf(g_rep->msg, sizeof g_rep->msg, "signed integer overflow: %s %c %s cannot be represented in type %s",
             x, op, y, d->type->name);
    undefined(d->loc, UNDEFINED);
}
}  // namespace

extern "C" {
GPUCNN_HIDDEN void __ubsan_handle_add_overflow(OverflowData* d, uintptr_t a, uintptr_t b) { overflow(d, a, b, '+'); }
GPUCNN_HIDDEN void __ubsan_handle_sub_overflow(OverflowData* d, uintptr_t a, uintptr_t b) { overflow(d, a, b, '-'); }
GPUCNN_HIDDEN void __ubsan_handle_mul_overflow(OverflowData* d, uintptr_t a, uintptr_t b) { overflow(d, a, b, '*'); }
GPUCNN_HIDDEN void __ubsan_handle_divrem_overflow(OverflowData* d, uintptr_t a, uintptr_t b) { overflow(d, a, b, '/'); }

GPUCNN_HIDDEN void __ubsan_handle_negate_overflow(OverflowData* d, uintptr_t a) {
    if (!wanted(CHECK_UB)) return;
    char x[32];
    int_text(d->type, a, x, sizeof x);
    snprintf(g_rep->msg, sizeof g_rep->msg, "signed integer overflow: -(%s) cannot be represented in type %s",
             x, d->type->name);
    undefined(d->loc, UNDEFINED);
}

GPUCNN_HIDDEN void __ubsan_handle_shift_out_of_bounds(ShiftData* d, uintptr_t a, uintptr_t b) {
    if (!wanted(CHECK_UB)) return;
    char x[32], y[32];
    int_text(d->lhs, a, x, sizeof x);
    int_text(d->rhs, b, y, sizeof y);
    unsigned bits = 1u << (d->lhs->info >> 1);
    snprintf(g_rep->msg, sizeof g_rep->msg, "shift out of range: %s << or >> %s with a %u-bit left operand of type "
             "%s (the exponent must be in [0, %u), the result representable)", x, y, bits, d->lhs->name, bits);
    undefined(d->loc, UNDEFINED);
}

GPUCNN_HIDDEN void __ubsan_handle_type_mismatch_v1(TypeMismatchData* d, uintptr_t p) {
    if (!wanted(CHECK_ALIGN) || !p) return;
    static const char* kinds[] = {"load", "store", "reference binding", "member access", "member call",
                                  "constructor call", "downcast", "downcast", "upcast", "upcast", "assignment",
                                  "dynamic operation"};
    g_rep->addr = p;
    g_rep->align = 1ull << d->log_align;
    g_rep->is_write = d->check_kind == 1;
    snprintf(g_rep->msg, sizeof g_rep->msg, "misaligned %s of type %s",
             d->check_kind < 12 ? kinds[d->check_kind] : "access", d->type->name);
    undefined(d->loc, MISALIGNED);
}
}
