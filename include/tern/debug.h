/* tern/debug.h — test-only hooks of Tern.  Not part of the API that
 * programs use and not installed: the test suite, the fuzz targets and the
 * soak program include it to make the operating system "fail" on demand.
 *
 * Fault injection.  While a kind is armed, the matching operations fail as
 * if the system refused them: mmap (every mapping Tern makes — heap chunks,
 * huge objects, its own tables, thread records) returns ENOMEM, madvise
 * (giving pages back) fails, and creating a thread (marker and collector
 * threads, and threads the program creates through Tern's pthread_create)
 * returns EAGAIN.  The first `skip` operations of the kind still succeed,
 * then `count` fail (count < 0: every one until disarmed).  Disarmed (the
 * default, or tern_debug_fault(kind, 0, 0)), the hooks cost one relaxed
 * load and a branch.
 *
 * What Tern promises meanwhile (tests/test_fault.c checks it): allocation
 * returns NULL with errno = ENOMEM, every object that existed keeps its
 * contents, a collection still completes, a marker thread that cannot
 * start means fewer markers, a collector thread that cannot start means
 * the cycle runs with the world stopped, and everything works again once
 * the kind is disarmed. */
#ifndef TERN_DEBUG_H
#define TERN_DEBUG_H

#ifdef __cplusplus
extern "C" {
#endif

enum tern_fault_kind {
    TERN_FAULT_MMAP    = 1, /* tern_os_map and everything built on it      */
    TERN_FAULT_MADVISE = 2, /* tern_os_decommit (MADV_DONTNEED)            */
    TERN_FAULT_THREAD  = 4, /* creating a thread (EAGAIN)                  */
};

/* Arm (or, with count 0, disarm) the kinds in the mask `kinds`. */
void tern_debug_fault(unsigned kinds, long skip, long count);
/* Failures injected so far for one kind (since the process started). */
unsigned long tern_debug_fault_hits(unsigned kind);

#ifdef __cplusplus
}
#endif
#endif /* TERN_DEBUG_H */
