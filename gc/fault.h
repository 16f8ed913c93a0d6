/* fault.h — the fault-injection hooks (gc/fault.c, include/tern/debug.h).
 * Inert unless a test arms them: one relaxed load and a branch. */
#ifndef TERN_FAULT_H
#define TERN_FAULT_H

#include <stdatomic.h>
#include <stdbool.h>

#include "../include/tern/debug.h"

extern _Atomic unsigned tern_fault_armed;
bool tern_fault_take(unsigned kind);
/* True when this operation of `kind` must fail. */
static inline bool tern_fault(unsigned kind) {
    return __builtin_expect(atomic_load_explicit(&tern_fault_armed, memory_order_relaxed) & kind, 0) &&
           tern_fault_take(kind);
}

#endif /* TERN_FAULT_H */
