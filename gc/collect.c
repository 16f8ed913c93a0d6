/* collect.c — running one cycle (the phases are described at the top of
 * mark.c), the statistics it leaves behind, and the TERN_TRACE line (the
 * log, exit summary and timeline themselves are in trace.c). */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <unistd.h>

pthread_mutex_t tern_gc_lock = PTHREAD_MUTEX_INITIALIZER;
struct tern_global_stats tern_stats_g;
uint64_t tern_start_ns;
static _Atomic int gc_running;

/* Markers for the concurrent phase (a quarter of the cores, at least one,
 * unless TERN_MARKERS says) and for pauses (every core). */
static unsigned background_markers(void) {
    if (tern_cfg.markers_set) return (unsigned)tern_cfg.markers;
    int n = tern_ncpus() / 4;
    return n < 1 ? 1 : (unsigned)n;
}
static unsigned pause_markers(void) {
    if (tern_cfg.markers_set) return (unsigned)tern_cfg.markers;
    unsigned n = (unsigned)tern_ncpus(), bg = background_markers();
    return n > bg ? n : bg;
}

static void goal_str(char *buf, size_t n) {
    uint64_t goal = atomic_load(&tern_next_gc);
    if (goal == UINT64_MAX) snprintf(buf, n, "off");
    else snprintf(buf, n, "%.1f MiB", goal / (1024.0 * 1024.0));
}

static void note_pause(uint64_t ns) {
    atomic_fetch_add(&tern_stats_g.pauses, 1);
    atomic_fetch_add(&tern_stats_g.total_pause_ns, ns);
    uint64_t m = atomic_load(&tern_stats_g.max_pause_ns);
    while (ns > m && !atomic_compare_exchange_weak(&tern_stats_g.max_pause_ns, &m, ns)) {}
    tern_trace_note_pause(ns);
}

/* TERN_TRACE=2: what the cycle did besides marking, since the last line. */
static void detail_extra(char *buf, size_t n) {
    static uint64_t last_roots[4], last_swept, last_freed;
    uint64_t r[4], swept = atomic_load(&tern_spans_swept), freed = atomic_load(&tern_stats_g.freed_bytes);
    for (int i = 0; i < 4; i++) r[i] = tern_root_bytes[i] - last_roots[i], last_roots[i] = tern_root_bytes[i];
    snprintf(buf, n, "; roots %.1f KiB stacks, %.1f KiB static+tls, %.1f KiB added, %.1f KiB mappings; "
             "sweep %llu spans, %.1f MiB freed",
             r[0] / 1024.0, r[1] / 1024.0, r[2] / 1024.0, r[3] / 1024.0,
             (unsigned long long)(swept - last_swept), (freed - last_freed) / (1024.0 * 1024.0));
    last_swept = swept, last_freed = freed;
}

/* ---- stop-the-world cycle (TERN_BARRIER=stw) ------------------------------- */

static __attribute__((noinline)) void stw_cycle(struct thread *self, const char *why, bool full_sweep) {
    /* This thread is a mutator too: its callers' pointers may sit in
     * callee-saved registers.  Spill them all into this frame, which the
     * stack scan covers (it starts at tern_thread_save_self's frame, below
     * this one); otherwise a register tern_thread_save_self saves in its
     * own prologue and reuses before getcontext would be seen by nobody. */
    __builtin_unwind_init();
    uint64_t gc_cpu0 = tern_thread_cpu_ns(), live0 = atomic_load(&tern_stats_g.live_bytes);
    tern_sweep_finish();        /* phase 2 */
    tern_mark_prepare((unsigned)tern_cfg.markers);
    tern_roots_prepare();
    pthread_mutex_lock(&tern_threads_lock);
    tern_central_lock_all();

    uint64_t t0 = tern_now_ns();
    uint64_t before = atomic_load(&tern_in_use);
    tern_stop_world();
    if (self) tern_thread_save_self(self);
    tern_mark_free_lists();
    uint64_t mark_cpu0 = atomic_load(&tern_stats_g.mark_cpu_ns);
    uint64_t helper_cpu = tern_mark_roots_and_drain((unsigned)tern_cfg.markers);

    uint64_t live = atomic_load(&tern_marked_bytes);
    for (struct thread *t = tern_threads; t; t = t->next) tern_tcache_publish(t->tc);
    atomic_fetch_add(&tern_sweepgen, 2);
    uint64_t after = atomic_load(&tern_in_use);
    tern_pacer_cycle_done(live, 0, why);
    atomic_store(&tern_stats_g.live_bytes, live);
    if (self) atomic_store(&self->sp, 0);
    unsigned threads = tern_nthreads;

    tern_start_world();
    uint64_t pause = tern_now_ns() - t0;
    tern_central_unlock_all();
    tern_central_begin_sweep(); /* outside the pause, a class at a time */
    pthread_mutex_unlock(&tern_threads_lock);
    tern_roots_done();

    uint64_t cycle = atomic_fetch_add(&tern_stats_g.cycles, 1) + 1;
    note_pause(pause);
    atomic_store(&tern_stats_g.last_pause_ns, pause);
    uint64_t mark_cpu = atomic_load(&tern_stats_g.mark_cpu_ns) - mark_cpu0;
    if (full_sweep) tern_sweep_finish();
    atomic_fetch_add(&tern_stats_g.gc_cpu_ns, tern_thread_cpu_ns() - gc_cpu0 + helper_cpu);
    tern_trace_note_mapped();
    if (unlikely(tern_timeline_on)) {
        tern_tl_complete("pause (stw)", t0, pause);
        tern_tl_heap(t0, before, live0);
        tern_tl_heap(t0 + pause, after, live);
        tern_tl_gc_cpu(t0 + pause);
        tern_tl_flush();
    }
    if (tern_cfg.trace) {
        const double MiB = 1024.0 * 1024.0;
        char goalbuf[32];
        goal_str(goalbuf, sizeof goalbuf);
        tern_log("tern: gc %llu @%.3fs stw: pause %.3f ms, mark cpu %.3f ms, heap %.1f -> %.1f -> %.1f MiB, "
                 "goal %s, %u threads, %u markers (%s), gc cpu %.1f%%\n",
                 (unsigned long long)cycle, (t0 - tern_start_ns) / 1e9, pause / 1e6, mark_cpu / 1e6, before / MiB,
                 after / MiB, live / MiB, goalbuf, threads, atomic_load(&tern_stats_g.markers), why,
                 tern_gc_cpu_percent());
        if (tern_cfg.trace >= 2) {
            char extra[256];
            detail_extra(extra, sizeof extra);
            tern_log("tern: gc %llu detail: pause: %.3f ms%s\n", (unsigned long long)cycle, pause / 1e6, extra);
            tern_trace_memory(cycle);
        }
    }
}

/* ---- concurrent cycle, on the collector thread ------------------------------ */

#define MAX_PRECLEAN_ROUNDS 8
#define PRECLEAN_ENOUGH 64   /* pages: few enough to leave for the pause */
#define CLOSING_ROUNDS 4     /* at most, once the assists are closed       */
#define CLOSING_DRAIN_NS 500000 /* a drain this long: list again even if paced */

static void release_waiters(void);

static void concurrent_cycle(const char *why) {
    pthread_mutex_lock(&tern_gc_lock);
    atomic_store(&gc_running, 1);
    uint64_t gc_cpu0 = tern_thread_cpu_ns(), mark_cpu0 = atomic_load(&tern_stats_g.mark_cpu_ns);
    uint64_t assist0 = atomic_load(&tern_assist_ns), marked0 = atomic_load(&tern_stats_g.live_bytes);
    unsigned nbg = background_markers(), nall = pause_markers();

    tern_sweep_finish();                                   /* 2 */
    tern_mark_prepare(nall);
    tern_barrier_arm();                                    /* 3 */

    tern_roots_prepare();                                  /* 4 */
    pthread_mutex_lock(&tern_threads_lock);
    tern_central_lock_all();
    uint64_t t0 = tern_now_ns();
    uint64_t before = atomic_load(&tern_in_use);
    tern_stop_world();
    uint64_t stop1 = tern_now_ns() - t0;
    tern_mark_start();
    tern_tcache_black_start(); /* alloc.c: black allocation, a word at a time */
    atomic_store(&tern_gc_black, 1);
    if (tern_barrier_kind == TERN_BARRIER_EXPLICIT) __atomic_store_n(&tern_marking_, 1, __ATOMIC_SEQ_CST);
    tern_start_world();
    uint64_t pause1 = tern_now_ns() - t0;
    tern_central_unlock_all();
    pthread_mutex_unlock(&tern_threads_lock);
    tern_roots_done();
    note_pause(pause1);

    uint64_t tm = tern_now_ns();
    tern_mark_concurrent(nbg);                             /* 5 */
    unsigned rounds = 0;                                   /* 6 */
    size_t precleaned = 0;
    /* Pre-cleaning converges when the program writes fewer pages during a
     * round than the round rescans.  Rounds that do not shrink enough make
     * allocating threads assist harder (pacing their writes), round after
     * round, as Go's assists pace allocation. */
    size_t last = SIZE_MAX;
    uint64_t tl = tern_timeline_on ? tern_now_ns() : 0;
    if (tl) tern_tl_complete("concurrent mark", tm, tl - tm);
    while (tern_barrier_can_preclean() && rounds < MAX_PRECLEAN_ROUNDS) {
        size_t pages = tern_mark_preclean(nbg);
        if (tl) {
            uint64_t now = tern_now_ns();
            tern_tl_complete("pre-clean", tl, now - tl);
            tl = now;
        }
        precleaned += pages;
        rounds++;
        if (pages <= PRECLEAN_ENOUGH) break;
        if (pages > last / 2 && atomic_load(&tern_assist_factor) < 64) {
            atomic_store(&tern_assist_factor, atomic_load(&tern_assist_factor) * 2);
            atomic_store(&tern_assist_hard, 1);
        }
        last = pages;
    }
    /* Close the assists (waiting for any in flight), drain what they
     * handed back, then list: a listing before that drain (it can take
     * 10 ms after an allocation-heavy mark) left the pause every page the
     * program wrote meanwhile (binarytrees: 1000-1600 pages, final-pause
     * marking p50 1.6 ms; now 0.13 ms).  Then clean until little is left,
     * so the pause finds little.  Except with uffd while the rounds were
     * still pacing the program: writes cost it next to nothing there, so
     * an unpaced round would leave the pause more than it cleans (pause
     * workload, longest pause 1.2-1.6 ms with closing rounds against
     * 0.5-0.9 ms without, three alternating runs); the assists were
     * waiting for work at the end of the last round, so the pages written
     * since are few, unless draining what the assists handed back took
     * long (CLOSING_DRAIN_NS): binarytrees' paced cycles then left the
     * pause 1000+ pages (final-pause marking p99 1.7 ms, now 0.19 ms).
     * (Under mprotect
     * each first write to a page is a signal, which paces the program by
     * itself, and the last round still helps a little: longest pauses of
     * 0.46, 0.84 and 1.59 ms with it against 0.92, 0.97 and 2.42 ms
     * without, three alternating runs of the pause workload.) */
    bool paced = atomic_load(&tern_assist_hard) && tern_barrier_kind == TERN_BARRIER_UFFD;
    atomic_store(&tern_assist_factor, 2);
    atomic_store(&tern_assist_hard, 0);
    tern_mark_close_assists();
    uint64_t td = tern_now_ns();
    tern_mark_concurrent(nbg); /* what the assists handed back, before listing */
    if (!paced || tern_now_ns() - td > CLOSING_DRAIN_NS) {
        /* Rounds while each at least halves the last. */
        size_t before = SIZE_MAX;
        for (int k = 0; k < CLOSING_ROUNDS; k++) {
            size_t pages = tern_mark_preclean(nbg);
            precleaned += pages;
            rounds++;
            if (pages <= PRECLEAN_ENOUGH || pages > before / 2) break;
            before = pages;
        }
    }
    uint64_t mark_wall = tern_now_ns() - tm;
    if (tl) tern_tl_complete("pre-clean (assists closed)", tl, tm + mark_wall - tl);

    tern_roots_prepare();                                  /* 7 */
    pthread_mutex_lock(&tern_threads_lock);
    tern_central_lock_all();
    pthread_mutex_lock(&tern_heap.lock);
    uint64_t t1 = tern_now_ns();
    tern_stop_world();
    uint64_t stop2 = tern_now_ns() - t1;
    uint64_t helper_cpu;
    tern_mark_free_lists();
    size_t final_pages = tern_mark_finish(nall, &helper_cpu);
    uint64_t fin2 = tern_now_ns() - t1;

    uint64_t marked = atomic_load(&tern_marked_bytes);     /* 8 */
    for (struct thread *t = tern_threads; t; t = t->next) tern_tcache_publish(t->tc);
    atomic_fetch_add(&tern_sweepgen, 2);
    atomic_store(&tern_gc_black, 0);
    __atomic_store_n(&tern_marking_, 0, __ATOMIC_SEQ_CST);
    uint64_t after = atomic_load(&tern_in_use);
    tern_pacer_cycle_done(marked, after > before ? after - before : 0, why);
    atomic_store(&tern_stats_g.live_bytes, marked);
    unsigned threads = tern_nthreads;
    tern_start_world();
    uint64_t pause2 = tern_now_ns() - t1;
    pthread_mutex_unlock(&tern_heap.lock);
    tern_central_unlock_all();
    tern_central_begin_sweep(); /* outside the pause, a class at a time */
    pthread_mutex_unlock(&tern_threads_lock);
    release_waiters(); /* before disarming, the cycle's slow tail */
    tern_roots_done();
    tern_mark_open_assists();
    tern_mark_cycle_end();
    tern_barrier_disarm();
    note_pause(pause2);

    uint64_t cycle = atomic_fetch_add(&tern_stats_g.cycles, 1) + 1;
    atomic_store(&tern_stats_g.last_pause_ns, pause1 > pause2 ? pause1 : pause2);
    uint64_t mark_cpu = atomic_load(&tern_stats_g.mark_cpu_ns) - mark_cpu0;
    atomic_fetch_add(&tern_stats_g.gc_cpu_ns, tern_thread_cpu_ns() - gc_cpu0 + helper_cpu);
    atomic_store(&gc_running, 0);
    pthread_mutex_unlock(&tern_gc_lock);
    tern_finalize_cycle_done(); /* finalize.c: wake the finalizer thread */
    tern_trace_note_mapped();
    if (unlikely(tern_timeline_on)) {
        tern_tl_complete("start pause", t0, pause1);
        tern_tl_complete("final pause", t1, pause2);
        tern_tl_heap(t0, before, marked0);
        tern_tl_heap(t1 + pause2, after, marked);
        tern_tl_gc_cpu(t1 + pause2);
        tern_tl_flush();
    }
    if (tern_cfg.trace) {
        const double MiB = 1024.0 * 1024.0;
        char goalbuf[32];
        goal_str(goalbuf, sizeof goalbuf);
        tern_log("tern: gc %llu @%.3fs %s: pause %.3f+%.3f ms, mark %.3f ms wall %.3f ms cpu, assist %.3f ms, "
                 "%u rounds, %zu+%zu dirty pages, heap %.1f -> %.1f -> %.1f MiB, goal %s, %u threads, "
                 "%u+%u markers (%s), gc cpu %.1f%%\n",
                 (unsigned long long)cycle, (t0 - tern_start_ns) / 1e9, tern_barrier_name(tern_barrier_kind),
                 pause1 / 1e6, pause2 / 1e6, mark_wall / 1e6, mark_cpu / 1e6,
                 (atomic_load(&tern_assist_ns) - assist0) / 1e6, rounds, precleaned, final_pages, before / MiB,
                 after / MiB, marked / MiB, goalbuf, threads, nbg, nall, why, tern_gc_cpu_percent());
        if (tern_cfg.trace >= 2) {
            char extra[256];
            detail_extra(extra, sizeof extra);
            tern_log("tern: gc %llu detail: start pause: stop %.3f ms; final pause: stop %.3f ms, mark %.3f ms%s\n",
                     (unsigned long long)cycle, stop1 / 1e6, stop2 / 1e6, (fin2 - stop2) / 1e6, extra);
            tern_trace_memory(cycle);
        }
    }
}

/* The collector thread sleeps until a cycle is requested.  It is not a
 * registered thread: it is never stopped, and its stack holds nothing the
 * program needs. */
static pthread_mutex_t req_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t req_wake = PTHREAD_COND_INITIALIZER, req_done = PTHREAD_COND_INITIALIZER;
static uint64_t requested, started, finished; /* cycle numbers, under req_lock */
/* The last cycle whose allocating waiters may go on: its final pause is
 * over, the goal is new and its spans wait for sweeping.  A thread that
 * allocated far past the goal waits for this, not for `finished`, so the
 * cycle's tail (disarming the barrier: 1.5 ms for GCBench's 34 MiB heap,
 * far more for big heaps; then its statistics) no longer holds it up.  Such
 * waits took 50 ms of a GCBench run (17 waits) and 510 ms of a 1.8 s
 * binarytrees run (44); GCBench 0.21 -> 0.19 s (9 alternating runs),
 * binarytrees, mtgcbench and the pause workload unchanged.  tern_collect
 * still waits for the whole cycle. */
static uint64_t released;
static const char *req_why = "heap goal";
static _Atomic int collector_state; /* 0 none, 1 starting, 2 running */

static void *collector_main(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV); /* the mprotect barrier's faults must reach their handler */
    sigdelset(&all, SIGBUS);
    tern_sigmask_fn mask = tern_real_sigmask();
    if (mask) mask(SIG_BLOCK, &all, NULL);
    tern_roots_collector_thread();
    tern_tl_thread_name("tern collector");
    for (;;) {
        pthread_mutex_lock(&req_lock);
        while (started == requested) pthread_cond_wait(&req_wake, &req_lock);
        started = requested;
        const char *why = req_why;
        pthread_mutex_unlock(&req_lock);
        concurrent_cycle(why);
        pthread_mutex_lock(&req_lock);
        finished = released = started;
        pthread_cond_broadcast(&req_done);
        pthread_mutex_unlock(&req_lock);
    }
    return NULL;
}

/* Start the collector thread, with no lock held (creating a thread
 * allocates, which may come back here).  Returns its state: 2 running,
 * 1 someone is starting it, 0 it cannot start. */
static int collector_start(void) {
    int st = atomic_load(&collector_state);
    if (st != 0) return st;
    if (!atomic_compare_exchange_strong(&collector_state, &st, 1)) return st;
    pthread_t th;
    if (tern_real_pthread_create(&th, NULL, collector_main, NULL) != 0) {
        atomic_store(&collector_state, 0);
        return 0;
    }
    pthread_detach(th);
    atomic_store(&collector_state, 2);
    return 2;
}

static void release_waiters(void) {
    pthread_mutex_lock(&req_lock);
    released = started;
    pthread_cond_broadcast(&req_done);
    pthread_mutex_unlock(&req_lock);
}

/* Ask for a cycle (req_lock held, collector running).  Returns the cycle
 * number to wait for. */
static uint64_t request_locked(const char *why, bool fresh) {
    uint64_t target;
    if (fresh) target = requested > started ? requested : requested + 1; /* starts after now */
    else target = requested > finished ? requested : requested + 1;     /* any cycle not yet over */
    if (target > requested) {
        requested = target;
        req_why = why;
        pthread_cond_signal(&req_wake);
    }
    return target;
}

/* Ask the collector thread for a cycle (starting the thread if need be)
 * and, if wait, wait for its end.  false: there is no collector thread. */
enum wait_for { WAIT_NO, WAIT_RELEASE, WAIT_END };
static bool ask_collector(const char *why, bool fresh, enum wait_for wait) {
    int st = collector_start();
    while (st == 1) st = (sched_yield(), atomic_load(&collector_state));
    if (st != 2) return false;
    pthread_mutex_lock(&req_lock);
    uint64_t target = request_locked(why, fresh);
    uint64_t *over = wait == WAIT_END ? &finished : &released;
    uint64_t w0 = wait && *over < target && unlikely(tern_timeline_on) ? tern_now_ns() : 0;
    while (wait && *over < target) pthread_cond_wait(&req_done, &req_lock);
    pthread_mutex_unlock(&req_lock);
    if (w0) tern_tl_complete("wait for cycle", w0, tern_now_ns() - w0);
    return true;
}

/* Run one cycle.  Only one runs at a time; a thread that asks while a
 * cycle triggered by the heap goal is running just waits for it. */
void tern_gc(const char *why, bool full_sweep) { tern_gc_for(why, full_sweep, 0); }

/* A cycle if in-use bytes plus `extra` (an allocation about to be made)
 * reach the trigger, or always when full_sweep (explicit) is set. */
void tern_gc_for(const char *why, bool full_sweep, uint64_t extra) {
    tern_ensure_init();
    struct thread *self = tern_thread_ensure();
    if (!self) return;
    tern_finalize_kick(); /* no lock held: (re)start the finalizer thread if needed */
    if (tern_concurrent()) {
        uint64_t now = atomic_load(&tern_in_use) + extra, goal = atomic_load(&tern_next_gc);
        if (!full_sweep && now < atomic_load(&tern_trigger)) return;
        if (!full_sweep && atomic_load(&collector_state) == 1) return; /* being started: the next allocation asks again */
        /* Wait for the end of the cycle: always for tern_collect; for an
         * allocation, only far past the goal, when assists could not keep
         * up (the heap must not outrun the marker). */
        uint64_t hard = goal + (goal / 2 > (4u << 20) ? goal / 2 : (4u << 20));
        enum wait_for w = full_sweep ? WAIT_END : goal != UINT64_MAX && now > hard ? WAIT_RELEASE : WAIT_NO;
        if (ask_collector(why, full_sweep, w)) {
            if (full_sweep) tern_sweep_finish();
            return;
        }
        /* no collector thread: collect with the world stopped, here */
    }
    if (!full_sweep && atomic_load(&gc_running)) {
        /* Someone is collecting: wait for that cycle rather than run another. */
        pthread_mutex_lock(&tern_gc_lock);
        pthread_mutex_unlock(&tern_gc_lock);
        return;
    }
    pthread_mutex_lock(&tern_gc_lock);
    if (!full_sweep && atomic_load(&tern_in_use) + extra < atomic_load(&tern_next_gc)) {
        pthread_mutex_unlock(&tern_gc_lock); /* another thread just collected */
        return;
    }
    atomic_store(&gc_running, 1);
    stw_cycle(self, why, full_sweep);
    atomic_store(&gc_running, 0);
    pthread_mutex_unlock(&tern_gc_lock);
    tern_finalize_cycle_done(); /* finalize.c: wake the finalizer thread */
}

/* A cycle asked for by a collector-side thread that is not a mutator (the
 * scavenger, when the program idles): it waits for the cycle and sweeps,
 * and it is never stopped or scanned. */
void tern_gc_background(const char *why) {
    if (tern_concurrent() && ask_collector(why, true, WAIT_END)) {
        tern_sweep_finish();
        return;
    }
    pthread_mutex_lock(&tern_gc_lock);
    atomic_store(&gc_running, 1);
    stw_cycle(NULL, why, true);
    atomic_store(&gc_running, 0);
    pthread_mutex_unlock(&tern_gc_lock);
}

bool tern_gc_in_progress(void) { return atomic_load(&gc_running) != 0; }

/* Allocation while marking: help the marker when past the goal, or
 * always while pre-cleaning fails to converge (tern_assist_hard). */
_Atomic int tern_assist_hard;
void tern_gc_assist(uint64_t bytes) {
    if (atomic_load_explicit(&tern_gc_black, memory_order_relaxed) &&
        (atomic_load_explicit(&tern_assist_hard, memory_order_relaxed) ||
         atomic_load_explicit(&tern_in_use, memory_order_relaxed) > atomic_load_explicit(&tern_next_gc, memory_order_relaxed)))
        tern_mark_assist(bytes);
}

/* In a forked child the collector thread is gone (a fork never happens
 * mid-cycle: it waits for tern_gc_lock). */
void tern_collect_atfork_child(void) {
    pthread_mutex_init(&req_lock, NULL);
    pthread_cond_init(&req_wake, NULL);
    pthread_cond_init(&req_done, NULL);
    requested = started = finished = released = 0;
    atomic_store(&collector_state, 0);
}

TERN_API void tern_collect(void) { tern_gc("explicit", true); }

TERN_API int tern_get_stats(struct tern_stats *out) {
    if (!out) return TERN_EINVAL;
    memset(out, 0, sizeof *out);
    out->cycles = atomic_load(&tern_stats_g.cycles);
    out->heap_bytes = atomic_load(&tern_heap.span_bytes);
    out->mapped_bytes = atomic_load(&tern_heap.mapped);
    out->live_bytes = atomic_load(&tern_stats_g.live_bytes);
    out->in_use_bytes = atomic_load(&tern_in_use);
    uint64_t ng = atomic_load(&tern_next_gc);
    out->next_gc_bytes = ng == UINT64_MAX ? 0 : ng;
    out->allocated_bytes = atomic_load(&tern_stats_g.allocated_bytes);
    out->allocated_objects = atomic_load(&tern_stats_g.allocated_objects);
    out->freed_bytes = atomic_load(&tern_stats_g.freed_bytes);
    out->explicit_frees = atomic_load(&tern_stats_g.explicit_frees) + tern_tcache_pending_frees();
    out->total_pause_ns = atomic_load(&tern_stats_g.total_pause_ns);
    out->max_pause_ns = atomic_load(&tern_stats_g.max_pause_ns);
    out->last_pause_ns = atomic_load(&tern_stats_g.last_pause_ns);
    out->mark_cpu_ns = atomic_load(&tern_stats_g.mark_cpu_ns);
    out->gc_cpu_ns = atomic_load(&tern_stats_g.gc_cpu_ns);
    out->threads = tern_nthreads;
    out->markers = atomic_load(&tern_stats_g.markers);
    out->gc_percent = tern_cfg.gc_percent < 0 ? 0 : (uint32_t)tern_cfg.gc_percent;
    out->barrier = (uint32_t)tern_barrier_kind;
    out->pauses = atomic_load(&tern_stats_g.pauses);
    out->pause_p50_ns = tern_pause_quantile(0.50);
    out->pause_p95_ns = tern_pause_quantile(0.95);
    out->pause_p99_ns = tern_pause_quantile(0.99);
    tern_trace_note_mapped();
    out->peak_mapped_bytes = atomic_load(&tern_peak_mapped);
    out->peak_rss_bytes = tern_peak_rss();
    out->assist_ns = atomic_load(&tern_assist_ns);
    out->process_cpu_ns = tern_process_cpu_ns();
    out->resident_bytes = tern_os_rss();
    out->free_bytes = atomic_load(&tern_heap.dirty_free);
    out->committed_bytes = tern_heap_committed();
    uint64_t used = out->heap_bytes + out->free_bytes + atomic_load(&tern_heap.meta_bytes);
    out->released_bytes = out->mapped_bytes > used ? out->mapped_bytes - used : 0;
    out->scavenged_bytes = atomic_load(&tern_heap.released);
    out->memory_limit = atomic_load(&tern_memlimit);
    out->limit_failures = atomic_load(&tern_heap.limit_failures);
    out->scavenger_cpu_ns = tern_scavenger_cpu_ns();
    return TERN_OK;
}
