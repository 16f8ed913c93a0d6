/* scavenge.c — giving memory back: the background scavenger, the memory
 * limit and the out-of-memory handler.
 *
 * WHAT COMES BACK.  Sweeping turns dead objects into free slots, and
 * spans with no object left into free pages (heap.c).  Free pages stay
 * mapped and, once touched, resident: the scavenger returns them to the
 * OS with MADV_DONTNEED (heap.c: tern_heap_release).  It never unmaps a
 * chunk and never splits a mapping, so the number of mappings stays what
 * the heap's growth made it.
 *
 * HOW MUCH.  As in Go, the heap keeps what it will soon use again: free
 * pages up to 10% over the heap goal stay resident, since the program will
 * fill them before the next cycle; only the excess goes back.  A returned
 * page that is taken again costs a page fault and zeroing, so keeping the
 * goal's worth avoids a return-and-refault loop in a program at a steady
 * state.
 *
 * WHEN.  A background thread (started once the heap passes 8 MiB, so small
 * programs never have one) wakes every 100 ms.  It works only between
 * cycles (returning pages under a write barrier makes them all look
 * written).  Its work is paced to about 1% of one core: after each batch
 * it sleeps 99 times the CPU time the batch took (9 times, 10% of a core,
 * while the program idles: then nothing else wants the CPU, and a heap of
 * a gigabyte still comes back within seconds).
 *
 * IDLE.  When the program has allocated nothing for half a second and the
 * heap changed after the last cycle started (a burst that may have died:
 * what that cycle found live may have been dropped since), the scavenger
 * runs one cycle itself (backing off, up to a minute of quiet, while such
 * cycles find almost everything still live), sweeps everything, gives
 * back the spans that explicit frees emptied (a malloc-style program frees
 * rather than drops), and then returns every free page, and the span part
 * of the headers of chunks left empty — the program is idle, so none of it
 * is about to be reused.
 *
 * THE LIMIT (TERN_MEMLIMIT, tern_set_memory_limit; like Go's GOMEMLIMIT).
 * It applies to the heap's committed bytes: spans in use, free pages not
 * yet returned, and chunk headers (tern_heap_committed).  It acts three
 * ways: the pacer caps the heap goal below it, so cycles come sooner as
 * the heap nears it (pacer.c); the scavenger keeps committed bytes under
 * it; and a span that would pass it is refused (heap.c), after which the
 * allocating thread returns free pages, runs a full collection and tries
 * again (alloc.c).  Only then does the allocation fail: the handler set
 * with tern_set_oom_handler is called, or NULL is returned with errno =
 * ENOMEM.  The goal never drops below the live data plus a sixteenth, so a
 * program living just under the limit gets cycles spaced by that much
 * allocation, not one per allocation.
 */
#include "internal.h"
#include "tern/memory.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>

_Atomic size_t tern_memlimit;
static _Atomic tern_oom_handler oom_handler;

#define START_MAPPED (8u << 20) /* no scavenger below this much heap */
#define TICK_NS 100000000ull    /* 100 ms */
#define IDLE_TICKS 5            /* 0.5 s without allocation */
#define IDLE_MAX 600            /* at most a minute between idle cycles */
#define BATCH (4u << 20)        /* bytes returned per batch */
#define PACE 99                 /* sleep PACE times the batch's CPU time: 1% */
#define PACE_IDLE 9             /* ... while the program idles: 10% */

static pthread_mutex_t scav_lock = PTHREAD_MUTEX_INITIALIZER; /* one batch; fork */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static _Atomic int scav_state; /* 0 not started, 1 starting, 2 running, -1 could not start */
static _Atomic uint64_t scav_cpu_ns;

/* Bytes of free pages to return now (0 when none need to go). */
static size_t excess(bool idle) {
    size_t dirty = atomic_load(&tern_heap.dirty_free);
    if (!dirty) return 0;
    if (idle) return dirty;
    size_t committed = tern_heap_committed(), want = 0;
    uint64_t goal = atomic_load(&tern_next_gc);
    if (goal != UINT64_MAX) {
        uint64_t retain = goal + goal / 10 + atomic_load(&tern_heap.meta_bytes);
        if (committed > retain) want = committed - retain;
    }
    size_t limit = atomic_load(&tern_memlimit);
    if (limit) {
        size_t keep = limit - limit / 32;
        if (committed > keep && committed - keep > want) want = committed - keep;
    }
    return want < dirty ? want : dirty;
}

static void sleep_ns(uint64_t ns) {
    struct timespec ts; /* the condition variable's clock is CLOCK_REALTIME */
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec = (time_t)(t / 1000000000ull);
    ts.tv_nsec = (long)(t % 1000000000ull);
    pthread_mutex_lock(&wake_lock);
    pthread_cond_timedwait(&wake, &wake_lock, &ts);
    pthread_mutex_unlock(&wake_lock);
}

/* One batch; returns bytes returned, and in *cpu the CPU time it took. */
static size_t batch(size_t want, bool headers, uint64_t *cpu) {
    pthread_mutex_lock(&scav_lock);
    uint64_t c0 = tern_thread_cpu_ns();
    size_t got = tern_heap_release(want < BATCH ? want : BATCH, headers);
    *cpu = tern_thread_cpu_ns() - c0;
    atomic_fetch_add(&scav_cpu_ns, *cpu);
    pthread_mutex_unlock(&scav_lock);
    return got;
}

static void *scavenger_main(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    tern_sigmask_fn mask = tern_real_sigmask();
    if (mask) mask(SIG_BLOCK, &all, NULL);
    tern_roots_collector_thread();
    tern_tl_thread_name("tern scavenger");
    uint64_t last_alloc = atomic_load(&tern_stats_g.allocated_bytes);
    uint64_t idle_alloc = UINT64_MAX; /* allocated bytes when the last idle cycle ran */
    unsigned quiet = 0, cycle_after = IDLE_TICKS;
    bool idle_done = false, cycle_done = false;
    for (;;) {
        sleep_ns(TICK_NS);
        uint64_t alloc = atomic_load(&tern_stats_g.allocated_bytes);
        if (alloc != last_alloc) quiet = 0, idle_done = cycle_done = false, last_alloc = alloc;
        else if (quiet < UINT_MAX) quiet++;
        if (tern_gc_in_progress()) continue;
        bool idle = quiet >= IDLE_TICKS;
        if (quiet >= cycle_after && !cycle_done) {
            cycle_done = true;
            /* What the last cycle found live may have been dropped since
             * (dropping allocates nothing, so no count can tell): if the
             * program allocated since the last idle cycle, mark once more,
             * even when a cycle started after its last allocation: that
             * cycle may have marked what the program dropped just after
             * (test_memory's idle test, which fills a ring of objects and
             * then clears it, once ended with 31 MiB of them still marked
             * and resident, during a whole-suite run).  A
             * cycle that finds almost everything still live doubles the
             * quiet time the next idle cycle waits for (up to a minute),
             * so a program that idles often with a big live heap is not
             * marked over and over for nothing. */
            uint64_t in_use = atomic_load(&tern_in_use);
            if (tern_cfg.gc_percent >= 0 && alloc != idle_alloc && tern_heap_committed() >= (4u << 20)) {
                idle_alloc = alloc;
                tern_gc_background("idle");
                uint64_t live = atomic_load(&tern_stats_g.live_bytes);
                if (live > in_use - in_use / 8) cycle_after = cycle_after * 2 > IDLE_MAX ? IDLE_MAX : cycle_after * 2;
                else cycle_after = IDLE_TICKS;
            }
            idle_done = false; /* sweep what it found */
        }
        if (idle && !idle_done) {
            idle_done = true;
            tern_sweep_finish();
            tern_central_trim(); /* spans emptied by explicit frees (malloc-style programs) */
        }
        for (;;) {
            if (tern_gc_in_progress()) break;
            size_t want = excess(idle);
            uint64_t d;
            if (!want) {
                if (idle) batch(0, true, &d); /* empty chunks' headers */
                break;
            }
            if (!batch(want, idle, &d)) break;
            /* 1% of one core (10% while the program idles): the pacing
             * counts CPU time, so a machine busy with other work does not
             * slow it further. */
            uint64_t nap = d * (idle ? PACE_IDLE : PACE);
            sleep_ns(nap > 1000000 ? nap : 1000000);
        }
    }
    return NULL;
}

/* Start the scavenger once the heap is big enough to matter.  Called where
 * an allocating thread publishes its counts (no lock held). */
void tern_scavenger_poke(void) {
    int st = atomic_load_explicit(&scav_state, memory_order_relaxed);
    if (likely(st != 0)) return;
    if (atomic_load_explicit(&tern_heap.mapped, memory_order_relaxed) < START_MAPPED &&
        !atomic_load_explicit(&tern_memlimit, memory_order_relaxed))
        return;
    if (!atomic_compare_exchange_strong(&scav_state, &st, 1)) return;
    pthread_t th;
    if (tern_real_pthread_create(&th, NULL, scavenger_main, NULL) != 0) {
        atomic_store(&scav_state, -1); /* memory is kept, nothing else changes */
        return;
    }
    pthread_detach(th);
    atomic_store(&scav_state, 2);
}

/* An allocating thread was refused a span (the limit, or the OS): return
 * free pages now, whatever the pacing.  Returns bytes returned. */
size_t tern_scavenge_now(void) {
    pthread_mutex_lock(&scav_lock);
    size_t got = tern_heap_release(SIZE_MAX, false);
    pthread_mutex_unlock(&scav_lock);
    return got;
}

void *tern_out_of_memory(size_t n) {
    tern_oom_handler h = atomic_load(&oom_handler);
    if (h) return h(n);
    errno = ENOMEM;
    return NULL;
}

void tern_scavenger_atfork_prepare(void) { pthread_mutex_lock(&scav_lock); }
void tern_scavenger_atfork_parent(void) { pthread_mutex_unlock(&scav_lock); }
void tern_scavenger_atfork_child(void) {
    pthread_mutex_init(&scav_lock, NULL);
    pthread_mutex_init(&wake_lock, NULL);
    pthread_cond_init(&wake, NULL);
    if (atomic_load(&scav_state) == 2) atomic_store(&scav_state, 0); /* restarts when due */
}

/* ---- public API (include/tern/memory.h) ---------------------------------- */

TERN_API size_t tern_set_memory_limit(size_t bytes) {
    tern_ensure_init();
    if (bytes == TERN_LIMIT_QUERY) return atomic_load(&tern_memlimit);
    size_t old = atomic_exchange(&tern_memlimit, bytes);
    tern_pacer_limit_changed();
    pthread_mutex_lock(&wake_lock);
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&wake_lock);
    return old;
}

TERN_API tern_oom_handler tern_set_oom_handler(tern_oom_handler h) {
    return atomic_exchange(&oom_handler, h);
}

TERN_API size_t tern_release_memory(void) {
    tern_ensure_init();
    tern_sweep_finish();
    tern_central_trim();
    pthread_mutex_lock(&scav_lock);
    size_t got = tern_heap_release(SIZE_MAX, !tern_gc_in_progress());
    pthread_mutex_unlock(&scav_lock);
    return got;
}

uint64_t tern_scavenger_cpu_ns(void) { return atomic_load(&scav_cpu_ns); }
