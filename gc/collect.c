/* collect.c — running one cycle (the phases are described at the top of
 * mark.c), the statistics it leaves behind, and the TERN_TRACE line. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

pthread_mutex_t tern_gc_lock = PTHREAD_MUTEX_INITIALIZER;
struct tern_global_stats tern_stats_g;
uint64_t tern_start_ns;
static _Atomic int gc_running;

static void trace_line(uint64_t cycle, uint64_t t0, uint64_t pause, uint64_t mark_cpu, uint64_t before,
                       uint64_t after, uint64_t live, uint64_t goal, unsigned threads, unsigned markers,
                       const char *why) {
    const double MiB = 1024.0 * 1024.0;
    char goalbuf[32];
    if (goal == UINT64_MAX) snprintf(goalbuf, sizeof goalbuf, "off");
    else snprintf(goalbuf, sizeof goalbuf, "%.1f MiB", goal / MiB);
    tern_log("tern: gc %llu @%.3fs pause %.3f ms, mark cpu %.3f ms, heap %.1f -> %.1f -> %.1f MiB, goal %s, "
             "%u threads, %u markers (%s)\n",
             (unsigned long long)cycle, (t0 - tern_start_ns) / 1e9, pause / 1e6, mark_cpu / 1e6, before / MiB,
             after / MiB, live / MiB, goalbuf, threads, markers, why);
}

/* Run one cycle.  Only one runs at a time; a thread that asks while a
 * cycle triggered by the heap goal is running just waits for it. */
void tern_gc(const char *why, bool full_sweep) { tern_gc_for(why, full_sweep, 0); }

/* A cycle if in-use bytes plus `extra` (an allocation about to be made)
 * reach the goal, or always when full_sweep (explicit) is set. */
void tern_gc_for(const char *why, bool full_sweep, uint64_t extra) {
    tern_ensure_init();
    struct thread *self = tern_thread_ensure();
    if (!self) return;
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
    uint64_t gc_cpu0 = tern_thread_cpu_ns();

    tern_sweep_finish();        /* phase 2 */
    tern_roots_prepare();       /* phase 3 */
    pthread_mutex_lock(&tern_threads_lock);
    tern_central_lock_all();

    uint64_t t0 = tern_now_ns();
    uint64_t before = atomic_load(&tern_in_use);
    tern_stop_world();          /* phase 4 */
    tern_thread_save_self(self);
    uint64_t mark_cpu0 = atomic_load(&tern_stats_g.mark_cpu_ns);
    uint64_t helper_cpu = tern_mark_roots_and_drain((unsigned)tern_cfg.markers); /* phase 5 */

    /* phase 7: mark termination */
    uint64_t live = atomic_load(&tern_marked_bytes);
    for (struct thread *t = tern_threads; t; t = t->next) tern_tcache_publish(t->tc);
    atomic_fetch_add(&tern_sweepgen, 2);
    uint64_t after = atomic_load(&tern_in_use);
    tern_pacer_cycle_done(live);
    atomic_store(&tern_stats_g.live_bytes, live);
    atomic_store(&self->sp, 0);
    unsigned threads = tern_nthreads;

    tern_start_world();
    uint64_t pause = tern_now_ns() - t0;
    /* Still holding every central lock, so no list is seen half moved,
     * but no longer inside the pause. */
    tern_central_begin_sweep();
    tern_central_unlock_all();
    pthread_mutex_unlock(&tern_threads_lock);
    tern_roots_done();

    uint64_t cycle = atomic_fetch_add(&tern_stats_g.cycles, 1) + 1;
    atomic_fetch_add(&tern_stats_g.total_pause_ns, pause);
    atomic_store(&tern_stats_g.last_pause_ns, pause);
    if (pause > atomic_load(&tern_stats_g.max_pause_ns)) atomic_store(&tern_stats_g.max_pause_ns, pause);
    uint64_t mark_cpu = atomic_load(&tern_stats_g.mark_cpu_ns) - mark_cpu0;
    if (full_sweep) tern_sweep_finish();
    atomic_fetch_add(&tern_stats_g.gc_cpu_ns, tern_thread_cpu_ns() - gc_cpu0 + helper_cpu);
    atomic_store(&gc_running, 0);
    pthread_mutex_unlock(&tern_gc_lock);
    if (tern_cfg.trace)
        trace_line(cycle, t0, pause, mark_cpu, before, after, live, atomic_load(&tern_next_gc), threads,
                   atomic_load(&tern_stats_g.markers), why);
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
    out->explicit_frees = atomic_load(&tern_stats_g.explicit_frees);
    out->total_pause_ns = atomic_load(&tern_stats_g.total_pause_ns);
    out->max_pause_ns = atomic_load(&tern_stats_g.max_pause_ns);
    out->last_pause_ns = atomic_load(&tern_stats_g.last_pause_ns);
    out->mark_cpu_ns = atomic_load(&tern_stats_g.mark_cpu_ns);
    out->gc_cpu_ns = atomic_load(&tern_stats_g.gc_cpu_ns);
    out->threads = tern_nthreads;
    out->markers = atomic_load(&tern_stats_g.markers);
    out->gc_percent = tern_cfg.gc_percent < 0 ? 0 : (uint32_t)tern_cfg.gc_percent;
    return TERN_OK;
}
