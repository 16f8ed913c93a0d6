/* pacer.c — when to collect.
 *
 * Like Go's GOGC: a cycle starts when the bytes in use (live data found by
 * the last mark plus everything allocated since) reach
 *     goal = live * (1 + TERN_GC / 100),
 * but never below the initial heap size (4 MiB by default), so small
 * programs do not collect constantly.  TERN_GC=off never starts a cycle on
 * its own; tern_collect() still works.  Threads publish what they allocate
 * in batches of 64 KiB, so the fast path never touches a shared counter.
 *
 * A concurrent cycle must start before the goal, so that the program's
 * allocation while the marker runs lands near it: the trigger is the goal
 * minus what the heap grew during the last marking (scaled by the growth
 * of live data, plus a fifth), kept
 * between 40% and 95% of the way from live data to the goal.  With the
 * stw barrier the trigger is the goal.  Past the goal while marking, an
 * allocating thread assists the marker (mark.c); far past it (half the
 * goal again), it waits for the cycle to end. */
#include "internal.h"

_Atomic uint64_t tern_in_use;
_Atomic uint64_t tern_next_gc;
_Atomic uint64_t tern_trigger;

static uint64_t goal_for(uint64_t live) {
    if (tern_cfg.gc_percent < 0) return UINT64_MAX;
    uint64_t g = live + live / 100 * (uint64_t)tern_cfg.gc_percent;
    return g < tern_cfg.initial_heap ? tern_cfg.initial_heap : g;
}

static uint64_t last_live; /* live data of the cycle before (collector only) */

/* grown: how much the heap grew while the last cycle marked, which scales
 * with the live data it had to mark. */
static uint64_t trigger_for(uint64_t live, uint64_t goal, uint64_t grown) {
    if (goal == UINT64_MAX) return UINT64_MAX;
    if (!tern_concurrent() || goal <= live) return goal;
    uint64_t room = goal - live, lo = live + room / 10 * 4, hi = live + room / 20 * 19;
    uint64_t expect = grown;
    if (grown && last_live && live > last_live) expect = (uint64_t)((double)grown * live / last_live);
    expect += expect / 5;
    uint64_t t = grown ? (goal > expect ? goal - expect : 0) : live + room / 10 * 7;
    return t < lo ? lo : t > hi ? hi : t;
}

void tern_pacer_init(void) {
    atomic_store(&tern_next_gc, goal_for(0));
    atomic_store(&tern_trigger, trigger_for(0, goal_for(0), 0));
}

/* bytes may be negative: a cache returns slots it counted but never
 * handed out.  In-use never drops below zero. */
void tern_pacer_note_alloc(int64_t bytes, int64_t objs, bool may_collect) {
    atomic_fetch_add_explicit(&tern_stats_g.allocated_bytes, (uint64_t)bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&tern_stats_g.allocated_objects, (uint64_t)objs, memory_order_relaxed);
    if (bytes < 0) {
        tern_pacer_note_free((uint64_t)-bytes);
        return;
    }
    uint64_t now = atomic_fetch_add_explicit(&tern_in_use, (uint64_t)bytes, memory_order_relaxed) + (uint64_t)bytes;
    if (may_collect && unlikely(now >= atomic_load_explicit(&tern_trigger, memory_order_relaxed))) {
        tern_gc("heap goal", false);
        tern_gc_assist((uint64_t)bytes);
    }
}

/* bytes left the heap (tern_free, or slots a cache counted but never
 * handed out). */
void tern_pacer_note_free(uint64_t bytes) {
    uint64_t cur = atomic_load_explicit(&tern_in_use, memory_order_relaxed);
    while (!atomic_compare_exchange_weak(&tern_in_use, &cur, cur > bytes ? cur - bytes : 0)) {}
}

/* Called at the end of a cycle, world stopped.  black: bytes allocated
 * (born marked) while marking; they are in use, but the goal grows from
 * the marked data alone, or a program allocating fast during a long mark
 * would see its heap goal inflated by objects already dead. */
void tern_pacer_cycle_done(uint64_t live, uint64_t black, uint64_t grown) {
    uint64_t goal = goal_for(live);
    atomic_store(&tern_in_use, live + black);
    atomic_store(&tern_next_gc, goal);
    atomic_store(&tern_trigger, trigger_for(live, goal, grown));
    last_live = live;
}
