/* tern/memory.h — memory limit, out-of-memory handler, returning memory
 * to the OS, and per-size-class figures.  See docs/memory.md.
 *
 * Tern returns free memory to the OS by itself (a background scavenger);
 * nothing here is needed for that.  These calls are for programs that want
 * a hard ceiling, their own reaction to running out, or to see where the
 * heap's memory is. */
#ifndef TERN_MEMORY_H
#define TERN_MEMORY_H

#include <tern.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The memory limit, in bytes (like Go's GOMEMLIMIT; TERN_MEMLIMIT sets it
 * at start-up).  It bounds the heap's committed memory: objects, the free
 * pages Tern still holds, and its per-chunk tables.  As the heap nears it,
 * collections come sooner and free pages go back to the OS sooner; an
 * allocation that cannot fit under it even after a full collection fails
 * (see tern_set_oom_handler).  0 means no limit.  Returns the previous
 * limit; TERN_LIMIT_QUERY changes nothing and returns the current one. */
#define TERN_LIMIT_QUERY ((size_t)-1)
size_t tern_set_memory_limit(size_t bytes);

/* Called, outside every collector lock and pause, when an allocation of
 * `bytes` cannot be satisfied after a full collection (the memory limit,
 * or the OS refused memory).  What it returns is what the allocation
 * returns: it may free memory and allocate again, raise the limit and
 * allocate again, or return NULL (then set errno itself if it cares).
 * Without a handler the allocation returns NULL with errno = ENOMEM.
 * Tern never aborts on its own.  Returns the previous handler; NULL
 * removes it. */
typedef void *(*tern_oom_handler)(size_t bytes);
tern_oom_handler tern_set_oom_handler(tern_oom_handler handler);

/* Finish sweeping and return every free page to the OS now (the
 * scavenger does this by itself when the program idles).  Returns the
 * bytes returned. */
size_t tern_release_memory(void);

/* Per size class: how the bytes of its spans are used.  Class 0 is the
 * large objects (one per span).  Used slots include objects that died
 * since the last cycle but are not swept yet. */
struct tern_class_stats {
    uint32_t size;        /* object size of the class (0: large)         */
    uint32_t spans;       /* spans of this class now                     */
    uint64_t span_bytes;  /* bytes of those spans                        */
    uint64_t used_bytes;  /* bytes in allocated slots                    */
    uint64_t free_bytes;  /* bytes in free slots (fragmentation)         */
};
/* Fill out[0..max) with the classes that have spans, in size order
 * (class 0 first).  Returns how many classes have spans (may be more
 * than max), or TERN_EINVAL if out is NULL and max > 0. */
int tern_get_class_stats(struct tern_class_stats *out, int max);

#ifdef __cplusplus
}
#endif
#endif /* TERN_MEMORY_H */
