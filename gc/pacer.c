/* pacer.c — when to collect.
 *
 * Like Go's GOGC (since Go 1.18): a cycle starts when the bytes in use
 * (live data found by the last mark plus everything allocated after that
 * mark ended; see tern_pacer_cycle_done for what it allocated) reach
 *     goal = live + (live + roots) * TERN_GC / 100,
 * roots being the bytes the last cycle scanned as roots (stacks, static
 * data, TLS, added ranges and, in the drop-in, the program's own
 * mappings), but never below the initial heap size (4 MiB by default), so
 * small programs do not collect constantly.  Roots count because scanning
 * them is work every cycle does: a program whose roots dwarf its heap (a
 * Python interpreter under the drop-in keeps 200 MiB of its own arenas)
 * would otherwise spend its time rescanning them for a small heap.
 * When live data shrinks, the goal comes down over two seconds (below).
 * TERN_GC=off never starts a cycle on its own; tern_collect() still works.  Threads publish what they allocate
 * in batches of 64 KiB, so the fast path never touches a shared counter.
 *
 * A concurrent cycle must start before the goal, so that the program's
 * allocation while the marker runs lands near it: the trigger is the goal
 * minus what the heap grew during the last marking (scaled by the growth
 * of live data, plus a fifth), kept
 * between 40% and 95% of the way from live data to the goal.  With the
 * stw barrier the trigger is the goal.  Past the goal while marking, an
 * allocating thread assists the marker (mark.c); far past it (half the
 * goal again), it waits for the cycle's final pause to end. */
#include "internal.h"

#include <string.h>

_Atomic uint64_t tern_in_use;
_Atomic uint64_t tern_next_gc;
_Atomic uint64_t tern_trigger;

/* Under a memory limit (scavenge.c) the goal is capped so that the heap's
 * committed bytes stay under it: the limit less the chunk headers and a
 * sixteenth for free slots and pages.  It never drops below live data plus
 * a sixteenth (and 1 MiB): a program living just under the limit gets
 * cycles spaced by that much allocation, and if it outgrows the limit, its
 * allocations fail rather than the collector running without end.  The
 * limit applies even with TERN_GC=off. */
static uint64_t last_roots; /* root bytes of the cycle before (collector only) */

/* The goal TERN_GC asks for, before any memory limit. */
static uint64_t gogc_goal(uint64_t live) {
    if (tern_cfg.gc_percent < 0) return UINT64_MAX;
    uint64_t g = live + (live + last_roots) / 100 * (uint64_t)tern_cfg.gc_percent;
    return g < tern_cfg.initial_heap ? tern_cfg.initial_heap : g;
}

/* A goal g capped by the memory limit, if one is set. */
static uint64_t capped(uint64_t live, uint64_t g) {
    size_t limit = atomic_load_explicit(&tern_memlimit, memory_order_relaxed);
    if (limit) {
        size_t meta = atomic_load(&tern_heap.meta_bytes);
        uint64_t cap = limit > meta ? limit - meta : 0;
        cap -= cap / 16;
        uint64_t floor = live + (live / 16 > (1u << 20) ? live / 16 : (1u << 20));
        if (cap < floor) cap = floor;
        if (cap < g) g = cap;
    }
    return g;
}

static uint64_t goal_for(uint64_t live) { return capped(live, gogc_goal(live)); }

/* The goal comes down slowly.  When live data shrinks (a program drops
 * the big structure of one phase and goes on with a small one), the goal
 * TERN_GC asks for drops with it, and the program, still allocating as
 * fast, would collect as much more often as the goal fell, inside a heap
 * that the last phase had already made resident.  So a goal below the
 * highest recent one starts halfway between the two and comes down to the
 * plain goal linearly over HOLD_NS of wall time; a growing goal is taken
 * at once.  The heap in use never passes the high goal, which it reached
 * before.  A cycle the program asked for (tern_collect), one for lack of
 * memory and the idle cycle (scavenge.c) take the plain goal at once, and
 * a memory limit caps the goal as always.  GCBench (live data 15 MiB,
 * then 8): 58 cycles instead of 78, 0.27 s instead of 0.29 s, peak RSS
 * 35.6 MiB instead of 33.7 (medians of 7; holding the whole drop: 0.25 s,
 * 39.3 MiB).  V8's heap limit and the JVM's heap capacity come down
 * slowly the same way. */
#define HOLD_NS 2000000000ull
static uint64_t held_goal, held_at; /* collector only */

static uint64_t held_goal_for(uint64_t live, bool hold) {
    uint64_t g = gogc_goal(live), now = tern_now_ns();
    if (!hold || g == UINT64_MAX || g >= held_goal || now - held_at >= HOLD_NS) {
        held_goal = g;
        held_at = now;
        return capped(live, g);
    }
    double left = 1.0 - (double)(now - held_at) / (double)HOLD_NS;
    return capped(live, g + (uint64_t)((double)(held_goal - g) / 2 * left));
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

/* The memory limit changed: move the goal now, from the last live data. */
void tern_pacer_limit_changed(void) {
    pthread_mutex_lock(&tern_gc_lock);
    uint64_t goal = goal_for(last_live);
    atomic_store(&tern_next_gc, goal);
    atomic_store(&tern_trigger, trigger_for(last_live, goal, 0));
    pthread_mutex_unlock(&tern_gc_lock);
}

void tern_pacer_init(void) {
    atomic_store(&tern_memlimit, tern_cfg.memlimit);
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
    if (may_collect) tern_scavenger_poke();
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

/* Called at the end of a cycle, world stopped.  The bytes in use start
 * again from the marked data alone, as Go's heapLive does (resetLive): what
 * the program allocated while marking ran (born marked, `black`) is not
 * counted, nor does the goal grow from it.  Those objects survive this
 * cycle only because they were born during it, and in an allocating
 * program most are dead already; the next cycle finds the live ones.
 * Counting them (until 2026-11) put the heap right after a cycle next to
 * its goal, past the trigger: GCBench (live data 7.8 MiB, goal 18.3 MiB)
 * allocated 9.6 MiB during each 5 ms mark, so each cycle ended with 17.4
 * MiB in use, the next started at once, and the program reached the hard
 * limit (half the goal again) and waited for the end of nearly every
 * cycle: 60-120 ms of a 0.28 s run.  Not counting them: 0.23 s instead of
 * 0.27 s and 28 cycles instead of 45, binarytrees 1.99 s instead of 2.63 s;
 * the price is peak RSS (GCBench 44 MiB instead of 40, binarytrees 108
 * instead of 84, mtgcbench with 2 threads 166 instead of 130): the heap now
 * peaks near the goal plus what the last mark let be allocated.  Counting
 * half of them was in between on both (0.25 s, 96 MiB). */
void tern_pacer_cycle_done(uint64_t live, uint64_t grown, const char *why) {
    last_roots = tern_roots_last_bytes;
    uint64_t goal = held_goal_for(live, strcmp(why, "heap goal") == 0); /* see held_goal_for */
    atomic_store(&tern_in_use, live);
    atomic_store(&tern_next_gc, goal);
    atomic_store(&tern_trigger, trigger_for(live, goal, grown));
    last_live = live;
}
