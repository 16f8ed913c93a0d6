/* tern.h — the public interface of Tern, a conservative garbage-collected
 * allocator for C.  This is the whole core API; extras live in their own
 * headers under include/tern/.
 *
 * Errors are values: fallible calls return 0 or a negative TERN_E* code
 * (see tern_strerror); allocation failure returns NULL with errno = ENOMEM.
 * Tern never aborts on its own.  Every call is safe from any thread.
 */
#ifndef TERN_H
#define TERN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_VERSION "0.1.0"

/* Error codes (negative). */
enum {
    TERN_OK       = 0,
    TERN_EINVAL   = -1, /* bad argument                                   */
    TERN_ENOMEM   = -2, /* the operating system refused memory            */
    TERN_ENOENT   = -3, /* no such root range / thread not registered     */
    TERN_EEXIST   = -4, /* already registered / already initialised       */
    TERN_EAGAIN   = -5, /* resource temporarily unavailable (threads)     */
};

/* Write barrier kinds (TERN_BARRIER; tern_options.barrier).  The
 * collector marks concurrently with the program and needs to learn which
 * heap pages the program wrote meanwhile: the kernel tells it (uffd,
 * softdirty, mprotect), the program tells it (explicit: every pointer store
 * into the heap goes through TERN_STORE / tern_store), or the whole cycle
 * runs with the program stopped (stw). */
enum tern_barrier {
    TERN_BARRIER_AUTO = 0,  /* the first kind that works: uffd, softdirty, mprotect, stw */
    TERN_BARRIER_UFFD,      /* userfaultfd async write-protect + PAGEMAP_SCAN          */
    TERN_BARRIER_SOFTDIRTY, /* /proc/self/clear_refs + pagemap soft-dirty bits         */
    TERN_BARRIER_MPROTECT,  /* read-only pages + SIGSEGV                               */
    TERN_BARRIER_EXPLICIT,  /* the program calls TERN_STORE for heap pointer stores   */
    TERN_BARRIER_STW,       /* no barrier: every cycle marks with the world stopped    */
};

/* Options for tern_init.  Zero means "default" (or the TERN_* variable). */
struct tern_options {
    int gc_percent;       /* heap growth, % of live data + roots, before a cycle; <0 = off */
    int markers;          /* marker threads (default: see TERN_MARKERS)            */
    int trace;            /* 0, 1 or 2 (see TERN_TRACE)                           */
    size_t initial_heap;  /* bytes before the first collection (default 4 MiB)    */
    int barrier;          /* enum tern_barrier (default: TERN_BARRIER or auto)     */
    size_t memory_limit;  /* bytes (default: TERN_MEMLIMIT or none); tern/memory.h */
};

/* Figures a program can export.  All byte counts are bytes. */
struct tern_stats {
    uint64_t cycles;            /* completed collections                          */
    uint64_t heap_bytes;        /* bytes in spans holding objects (used + free)   */
    uint64_t mapped_bytes;      /* bytes mapped from the OS for the heap          */
    uint64_t live_bytes;        /* bytes marked live by the last cycle            */
    uint64_t in_use_bytes;      /* the pacer's count: live_bytes plus what was    *
                                 * allocated since the last cycle ended (objects  *
                                 * allocated while it marked are not counted)     */
    uint64_t next_gc_bytes;     /* in-use size at which the next cycle starts     */
    uint64_t allocated_bytes;   /* total bytes handed out since start             */
    uint64_t allocated_objects; /* total objects handed out since start           */
    uint64_t freed_bytes;       /* total bytes reclaimed by sweeping              */
    uint64_t explicit_frees;    /* tern_free calls that released an object        */
    uint64_t total_pause_ns;    /* sum of stop-the-world pauses                   */
    uint64_t max_pause_ns;      /* longest stop-the-world pause                   */
    uint64_t last_pause_ns;     /* pause of the last cycle                        */
    uint64_t mark_cpu_ns;       /* CPU time spent marking, all markers            */
    uint64_t gc_cpu_ns;         /* CPU time spent in the collector (mark+sweep)   */
    uint32_t threads;           /* registered mutator threads now                 */
    uint32_t markers;           /* marker threads used by the last cycle          */
    uint32_t gc_percent;        /* current TERN_GC value (0 when off)             */
    uint32_t barrier;           /* enum tern_barrier in use (never AUTO)         */
    uint64_t pauses;            /* stop-the-world pauses so far                   */
    /* since 0.1.0+trace: */
    uint64_t pause_p50_ns;      /* median pause (log-bucketed, within ~2%)        */
    uint64_t pause_p95_ns;      /* 95th percentile pause                          */
    uint64_t pause_p99_ns;      /* 99th percentile pause                          */
    uint64_t peak_mapped_bytes; /* largest mapped_bytes seen                      */
    uint64_t peak_rss_bytes;    /* peak resident set size of the process          */
    uint64_t assist_ns;         /* wall time allocating threads spent marking     */
    uint64_t process_cpu_ns;    /* CPU time of the whole process so far           */
    /* since 0.1.0+memory (see tern/memory.h): */
    uint64_t resident_bytes;    /* resident set size of the process now           */
    uint64_t free_bytes;        /* free heap pages still resident (held for reuse) */
    uint64_t released_bytes;    /* mapped heap pages not resident (returned/new)  */
    uint64_t committed_bytes;   /* spans + free_bytes + chunk headers (the limit) */
    uint64_t scavenged_bytes;   /* total bytes returned to the OS so far          */
    uint64_t memory_limit;      /* bytes, 0 = none                               */
    uint64_t limit_failures;    /* spans refused by the limit (then retried)      */
    uint64_t scavenger_cpu_ns;  /* CPU time spent returning memory                */
};

void  *tern_malloc(size_t n);            /* zeroed, may hold pointers, scanned */
void  *tern_malloc_atomic(size_t n);     /* holds no pointers, never scanned   */
void  *tern_calloc(size_t count, size_t size);
void  *tern_realloc(void *p, size_t n);  /* content preserved up to min size   */
void   tern_free(void *p);               /* optional early release             */
size_t tern_size(const void *p);         /* usable size of the object at p     */
void  *tern_base(const void *p);         /* start of the object holding p      */

void tern_collect(void);                 /* full collection, returns when done */

int tern_add_roots(void *lo, void *hi);      /* scan [lo, hi) as roots          */
int tern_remove_roots(void *lo, void *hi);   /* remove a range added before     */

int tern_register_thread(void);          /* for threads not made by pthread_create */
int tern_unregister_thread(void);

/* The explicit write barrier.  Under TERN_BARRIER=explicit the program
 * promises to store every pointer into a heap object this way; with any
 * other barrier kind it is a plain store.  The fast path, while no cycle is
 * marking, is a load, a branch and the store. */
void tern_store(void **slot, void *value);
extern int tern_marking_;                       /* internal: nonzero while marking */
void tern_store_slow_(void **slot, void *value); /* internal: shades the value     */
#define TERN_STORE(slot, value)                                              \
    do {                                                                     \
        void **tern_s_ = (void **)(slot);                                    \
        void *tern_v_ = (void *)(value);                                     \
        *tern_s_ = tern_v_;                                                  \
        if (__builtin_expect(__atomic_load_n(&tern_marking_, __ATOMIC_RELAXED), 0)) \
            tern_store_slow_(tern_s_, tern_v_);                              \
    } while (0)
/* After writing pointers into heap memory some other way (memcpy, read(2))
 * under the explicit barrier, tell the collector which bytes changed.  A
 * copy that overwrites its own source (memmove inside one object) calls
 * it on the source before the copy too (docs/barriers.md). */
void tern_written(void *p, size_t n);
const char *tern_barrier_name(int barrier);     /* "uffd", "stw", ...        */

int tern_get_stats(struct tern_stats *out);
int tern_init(const struct tern_options *opts);  /* optional */
const char *tern_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif /* TERN_H */
