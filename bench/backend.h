/* backend.h — one allocator API for every benchmark workload.
 *
 * Each workload is one C file that includes this header and is compiled
 * once per backend, chosen by exactly one -D macro:
 *
 *   -DBK_TERN    Tern's own API (tern_malloc, ...), link -ltern
 *   -DBK_BDWGC   bdwgc (GC_MALLOC, ...), link -lgc; GC_THREADS is defined
 *                here so pthread_create is redirected to GC_pthread_create
 *   -DBK_MALLOC  plain malloc/free.  The same binary serves glibc (as is),
 *                mimalloc and the Tern drop-in (LD_PRELOAD of the library)
 *
 * Hooks a workload uses:
 *   BK_INIT()          once, first thing in main()
 *   ALLOC(n)           object that may hold pointers (GC: scanned)
 *   ALLOC_ATOMIC(n)    object that never holds pointers (GC: not scanned)
 *   FREE(p)            explicit release (tern_free, GC_FREE, free)
 *   DISCARD(p)         "this object is now garbage": frees on malloc
 *                      backends, does nothing on GC backends.  GC workloads
 *                      use it so malloc backends do the freeing work a
 *                      malloc program would have to do.
 *   COLLECT()          full collection (no-op on malloc backends)
 *   TERN_STORE(slot, v) store of a heap pointer into a heap object: Tern's
 *                      write barrier macro (needed under
 *                      TERN_BARRIER=explicit, a plain store plus one
 *                      predicted branch otherwise); a plain store on the
 *                      other backends
 *   tern_written(p, n) after memcpy of pointers into heap memory (Tern;
 *                      nothing on the other backends)
 *   BK_IS_GC           1 on GC backends, 0 on malloc backends
 *   BK_NAME            "tern", "bdwgc" or "malloc"
 *   bk_stats(&s)       collector figures (cycles, pauses, heap); has_pauses
 *                      says whether the backend reports pauses at all
 *   bk_pause_poll()    call between steps of a pause workload: picks up the
 *                      pauses of cycles finished since the last call
 *   bk_pause_samples() every stop-the-world pause seen so far, in ns
 *   bk_print_stats()   prints the standard "RESULT gc_..." fields (Tern
 *                      adds gc_pauses=, barrier=, the kind in use, and its
 *                      memory figures: tern_resident_kib= ... see below)
 *   bk_rss_bytes(), bk_peak_rss_bytes()  RSS now and peak (VmHWM)
 *
 * Pause accounting: Tern's comes from tern_get_stats (max_pause_ns,
 * total_pause_ns; single samples from last_pause_ns, read by
 * bk_pause_poll after each step).  bdwgc's comes from its collection event
 * callback: the time from GC_EVENT_PRE_STOP_WORLD to GC_EVENT_POST_START_WORLD
 * (the whole stopped mark phase; bdwgc sweeps lazily with the world running).
 * With concurrent marking a Tern cycle has several short pauses; the
 * runner takes every one of them from the TERN_TRACE=1 lines on stderr
 * (bench/run.py), and last_pause_ns is only a rough sample.
 */
#ifndef TERN_BENCH_BACKEND_H
#define TERN_BENCH_BACKEND_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

#if (defined(BK_TERN) + defined(BK_BDWGC) + defined(BK_MALLOC)) != 1
#error "define exactly one of BK_TERN, BK_BDWGC, BK_MALLOC"
#endif

static inline uint64_t bk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct bk_stats {
    int has_pauses;          /* backend reports stop-the-world pauses    */
    uint64_t cycles;         /* completed collections                    */
    uint64_t total_pause_ns; /* sum of stop-the-world pauses             */
    uint64_t max_pause_ns;   /* longest stop-the-world pause             */
    uint64_t heap_bytes;     /* collector heap size (0 when unknown)     */
    uint64_t pauses;         /* stop-the-world pauses (0 when unknown)   */
    const char *barrier;     /* Tern's write barrier kind, else NULL     */
};

/* Pause samples: filled by the bdwgc callback or by bk_pause_poll. */
#define BK_MAX_PAUSE_SAMPLES (1u << 16)
static uint64_t bk_pause_buf[BK_MAX_PAUSE_SAMPLES];
static volatile unsigned bk_pause_n;
static volatile uint64_t bk_pause_missed; /* cycles whose pause was not seen */

static inline void bk_pause_record(uint64_t ns)
{
    unsigned i = bk_pause_n;
    if (i < BK_MAX_PAUSE_SAMPLES) {
        bk_pause_buf[i] = ns;
        bk_pause_n = i + 1;
    } else {
        bk_pause_missed++;
    }
}

static inline const uint64_t *bk_pause_samples(unsigned *n, uint64_t *missed)
{
    *n = bk_pause_n;
    if (missed)
        *missed = bk_pause_missed;
    return bk_pause_buf;
}

/* ------------------------------------------------------------------ Tern */
#if defined(BK_TERN)
#include <tern.h>
#define BK_NAME "tern"
#define BK_IS_GC 1
#define ALLOC(n) tern_malloc(n)
#define ALLOC_ATOMIC(n) tern_malloc_atomic(n)
#define FREE(p) tern_free(p)
#define DISCARD(p) ((void)(p))
#define COLLECT() tern_collect()

static uint64_t bk_seen_cycles;

static inline void BK_INIT(void)
{
    struct tern_stats s;
    if (tern_get_stats(&s) == 0)
        bk_seen_cycles = s.cycles;
}

static inline void bk_stats(struct bk_stats *o)
{
    struct tern_stats s;
    memset(o, 0, sizeof *o);
    if (tern_get_stats(&s) != 0)
        return;
    o->has_pauses = 1;
    o->cycles = s.cycles;
    o->total_pause_ns = s.total_pause_ns;
    o->max_pause_ns = s.max_pause_ns;
    o->heap_bytes = s.heap_bytes;
    o->pauses = s.pauses;
    o->barrier = tern_barrier_name((int)s.barrier);
}

static inline void bk_pause_poll(void)
{
    struct tern_stats s;
    if (tern_get_stats(&s) != 0 || s.cycles == bk_seen_cycles)
        return;
    /* last_pause_ns is the last cycle's; if several cycles ended since the
     * previous poll only the last one's pause can be seen. */
    bk_pause_record(s.last_pause_ns);
    bk_pause_missed += s.cycles - bk_seen_cycles - 1;
    bk_seen_cycles = s.cycles;
}

/* ----------------------------------------------------------------- bdwgc */
#elif defined(BK_BDWGC)
#ifndef GC_THREADS
#define GC_THREADS 1
#endif
#include <gc/gc.h>
#define BK_NAME "bdwgc"
#define BK_IS_GC 1
#define ALLOC(n) GC_MALLOC(n)
#define ALLOC_ATOMIC(n) GC_MALLOC_ATOMIC(n)
#define FREE(p) GC_FREE(p)
#define DISCARD(p) ((void)(p))
#define COLLECT() GC_gcollect()

static uint64_t bk_stop_start_ns, bk_total_pause_ns, bk_max_pause_ns;
static uint64_t bk_pauses;

/* Called with the allocation lock held (world stopped or about to be):
 * no allocation, no locks, just timestamps. */
static void GC_CALLBACK bk_gc_event(GC_EventType e)
{
    if (e == GC_EVENT_PRE_STOP_WORLD) {
        bk_stop_start_ns = bk_now_ns();
    } else if (e == GC_EVENT_POST_START_WORLD && bk_stop_start_ns) {
        uint64_t d = bk_now_ns() - bk_stop_start_ns;
        bk_stop_start_ns = 0;
        bk_total_pause_ns += d;
        if (d > bk_max_pause_ns)
            bk_max_pause_ns = d;
        bk_pauses++;
        bk_pause_record(d);
    }
}

static inline void BK_INIT(void)
{
    GC_INIT();
    GC_allow_register_threads();
    GC_start_performance_measurement();
    GC_set_on_collection_event(bk_gc_event);
}

static inline void bk_stats(struct bk_stats *o)
{
    memset(o, 0, sizeof *o);
    o->has_pauses = 1;
    o->cycles = GC_get_gc_no();
    o->total_pause_ns = bk_total_pause_ns;
    o->max_pause_ns = bk_max_pause_ns;
    o->heap_bytes = GC_get_heap_size();
    o->pauses = bk_pauses;
}

static inline void bk_pause_poll(void) {}

/* ---------------------------------------------------------------- malloc */
#else
#define BK_NAME "malloc"
#define BK_IS_GC 0
#define ALLOC(n) malloc(n)
#define ALLOC_ATOMIC(n) malloc(n)
#define FREE(p) free(p)
#define DISCARD(p) free(p)
#define COLLECT() ((void)0)

static inline void BK_INIT(void) {}
static inline void bk_stats(struct bk_stats *o) { memset(o, 0, sizeof *o); }
static inline void bk_pause_poll(void) {}
#endif

/* ------------------------------------------------------------ shared bits */

#if !defined(BK_TERN)
/* Tern's write barrier hooks are plain stores everywhere else. */
#define TERN_STORE(slot, value)                                              \
    do {                                                                     \
        *(void **)(slot) = (void *)(value);                                  \
    } while (0)
#define tern_written(p, n) ((void)(p), (void)(n))
#endif

/* Prints the collector's own figures on one RESULT line. */
static inline void bk_print_stats(void)
{
    struct bk_stats s;
    bk_stats(&s);
    if (!s.has_pauses) {
        printf("RESULT backend=%s gc_cycles=0\n", BK_NAME);
        return;
    }
    printf("RESULT backend=%s gc_cycles=%llu gc_pauses=%llu gc_max_pause_ns=%llu "
           "gc_total_pause_ns=%llu gc_heap_bytes=%llu\n",
           BK_NAME, (unsigned long long)s.cycles, (unsigned long long)s.pauses,
           (unsigned long long)s.max_pause_ns,
           (unsigned long long)s.total_pause_ns,
           (unsigned long long)s.heap_bytes);
    if (s.barrier)
        printf("RESULT barrier=%s\n", s.barrier);
#if defined(BK_TERN)
    {
        /* Issue #6's memory figures (what the scavenger and the limit did). */
        struct tern_stats t;
        if (tern_get_stats(&t) == 0)
            printf("RESULT tern_resident_kib=%llu tern_committed_kib=%llu "
                   "tern_free_kib=%llu tern_released_kib=%llu tern_scavenged_kib=%llu "
                   "tern_memory_limit_kib=%llu tern_limit_failures=%llu "
                   "tern_scavenger_cpu_ms=%.3f tern_live_kib=%llu\n",
                   (unsigned long long)(t.resident_bytes >> 10),
                   (unsigned long long)(t.committed_bytes >> 10),
                   (unsigned long long)(t.free_bytes >> 10),
                   (unsigned long long)(t.released_bytes >> 10),
                   (unsigned long long)(t.scavenged_bytes >> 10),
                   (unsigned long long)(t.memory_limit >> 10),
                   (unsigned long long)t.limit_failures, t.scavenger_cpu_ns / 1e6,
                   (unsigned long long)(t.live_bytes >> 10));
    }
#endif
#if defined(BK_BDWGC)
    printf("RESULT bdwgc_full_gc_total_ms=%lu\n", GC_get_full_gc_total_time());
#endif
}

/* Allocation that must succeed: a NULL is a benchmark failure, reported. */
static inline void *bk_check(void *p, const char *what, size_t n)
{
    if (!p) {
        fprintf(stderr, "FATAL: %s(%zu) returned NULL\n", what, n);
        printf("RESULT ok=0 error=alloc_null\n");
        fflush(stdout);
        exit(3);
    }
    return p;
}
#define XALLOC(n) bk_check(ALLOC(n), "ALLOC", (size_t)(n))
#define XALLOC_ATOMIC(n) bk_check(ALLOC_ATOMIC(n), "ALLOC_ATOMIC", (size_t)(n))

/* A table of live objects for workloads that keep a known live set (limit,
 * footprint): slot i holds one object of 16..1024 bytes (from a random r:
 * size 16 + r % 1009, scanned when bit 33 of r is set, else atomic), tagged
 * at both ends.  bytes counts the requested bytes of the table and its
 * objects (the live data). */
struct bk_live {
    unsigned char **obj;
    uint16_t *size;
    long n;
    uint64_t bytes;
    long bad; /* replaced or checked objects whose tags were wrong */
};

static inline unsigned char bk_tag(long i, size_t sz)
{
    return (unsigned char)(1 + ((unsigned long)i * 31u + sz) % 251u); /* never 0 */
}

static inline int bk_live_ok(const struct bk_live *t, long i)
{
    const unsigned char *q = t->obj[i];
    return q && q[0] == bk_tag(i, t->size[i]) && q[t->size[i] - 1] == q[0];
}

static inline void bk_live_init(struct bk_live *t, long n)
{
    t->obj = XALLOC(sizeof(void *) * (size_t)n);
    memset(t->obj, 0, sizeof(void *) * (size_t)n);
    t->size = XALLOC_ATOMIC(sizeof(uint16_t) * (size_t)n);
    t->n = n;
    t->bytes = (sizeof(void *) + sizeof(uint16_t)) * (uint64_t)n;
    t->bad = 0;
}

/* Puts a new object in slot i, checking and dropping (GC) or freeing
 * (malloc) the one it replaces.  Returns its size, or 0 when the
 * allocation returned NULL and !must (the old object stays); a NULL with
 * must is a benchmark failure, as XALLOC. */
static inline size_t bk_live_set(struct bk_live *t, long i, uint64_t r, int must)
{
    size_t sz = 16 + (size_t)(r % 1009);
    unsigned char *p = (r >> 33) & 1 ? ALLOC(sz) : ALLOC_ATOMIC(sz);
    if (!p) {
        if (must)
            bk_check(NULL, "ALLOC", sz);
        return 0;
    }
    p[0] = p[sz - 1] = bk_tag(i, sz);
    if (t->obj[i]) {
        t->bad += !bk_live_ok(t, i);
        t->bytes -= t->size[i];
        DISCARD(t->obj[i]);
    }
    TERN_STORE(&t->obj[i], p);
    t->size[i] = (uint16_t)sz;
    t->bytes += sz;
    return sz;
}

/* Checks every slot; returns 1 when all tags (and every replaced one) were right. */
static inline int bk_live_check(const struct bk_live *t)
{
    long bad = t->bad;
    for (long i = 0; i < t->n; i++)
        bad += !bk_live_ok(t, i);
    return bad == 0;
}

/* A small, fast, per-thread PRNG (xorshift64*). */
static inline uint64_t bk_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Resident set size now, in bytes (from /proc/self/statm). */
static inline uint64_t bk_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Peak resident set size so far, in bytes (VmHWM in /proc/self/status). */
static inline uint64_t bk_peak_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kib = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %llu kB", &kib) == 1)
            break;
    fclose(f);
    return (uint64_t)kib << 10;
}

static inline long bk_arg(int argc, char **argv, int i, long dflt)
{
    return i < argc ? strtol(argv[i], NULL, 0) : dflt;
}

/* Thread creation that reports failure instead of crashing later. */
static inline void bk_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int e = pthread_create(t, NULL, fn, arg);
    if (e) {
        fprintf(stderr, "FATAL: pthread_create: %s\n", strerror(e));
        printf("RESULT ok=0 error=pthread_create\n");
        fflush(stdout);
        exit(3);
    }
}

#endif /* TERN_BENCH_BACKEND_H */
