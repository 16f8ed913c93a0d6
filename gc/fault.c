/* fault.c — fault injection for the test suite (include/tern/debug.h).
 *
 * Compiled into every build but inert: the hooks in os.c (tern_os_map,
 * tern_os_decommit) and thread.c (tern_real_pthread_create) test one
 * atomic word and go on.  A test arms a kind with tern_debug_fault; the
 * hook then lets `skip` operations through and fails the next `count`.
 * Nothing here allocates or takes a lock, so the hooks are safe anywhere,
 * also with the world stopped. */
#include "internal.h"
#include "fault.h"

_Atomic unsigned tern_fault_armed;

#define NKINDS 3
static _Atomic long skip_left[NKINDS], fail_left[NKINDS];
static _Atomic unsigned long hits[NKINDS];

static int kind_index(unsigned kind) {
    switch (kind) {
    case TERN_FAULT_MMAP: return 0;
    case TERN_FAULT_MADVISE: return 1;
    case TERN_FAULT_THREAD: return 2;
    default: return -1;
    }
}

TERN_API void tern_debug_fault(unsigned kinds, long skip, long count) {
    for (unsigned k = 1; k <= TERN_FAULT_THREAD; k <<= 1) {
        int i = kind_index(k);
        if (!(kinds & k) || i < 0) continue;
        if (count == 0) {
            atomic_fetch_and(&tern_fault_armed, ~k);
            continue;
        }
        atomic_store(&skip_left[i], skip < 0 ? 0 : skip);
        atomic_store(&fail_left[i], count);
        atomic_fetch_or(&tern_fault_armed, k);
    }
}

TERN_API unsigned long tern_debug_fault_hits(unsigned kind) {
    int i = kind_index(kind);
    return i < 0 ? 0 : atomic_load(&hits[i]);
}

bool tern_fault_take(unsigned kind) {
    int i = kind_index(kind);
    if (i < 0) return false;
    long s = atomic_load(&skip_left[i]);
    while (s > 0)
        if (atomic_compare_exchange_weak(&skip_left[i], &s, s - 1)) return false;
    long f = atomic_load(&fail_left[i]);
    for (;;) {
        if (f == 0) {
            atomic_fetch_and(&tern_fault_armed, ~kind);
            return false;
        }
        if (f < 0 || atomic_compare_exchange_weak(&fail_left[i], &f, f - 1)) break;
    }
    atomic_fetch_add(&hits[i], 1);
    return true;
}
