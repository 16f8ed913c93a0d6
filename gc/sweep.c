/* sweep.c — the sweeper: applies a cycle's marks to the alloc bitmaps.
 *
 * Sweeping a small span is word-parallel: dead = alloc & ~mark; those
 * slots become free (their memory is zeroed when handed out again), the
 * mark word is cleared for the next cycle, and explicit frees recorded in
 * the freed bitmap are applied too.  A large span is freed whole.
 *
 * Who sweeps: whoever first wins the span's sweepgen CAS — the allocator,
 * lazily, for the size class it needs (span.c) or for a span in its own
 * cache before it publishes new slots into it (alloc.c); and the start of
 * the next cycle, which finishes everything (tern_sweep_finish) so that
 * sweeping never overlaps marking.  Spans in a thread's cache are swept in
 * place: the slots the cache is handing out are not yet in the alloc
 * bitmap, so the sweeper cannot free them. */
#include "internal.h"


_Atomic uint32_t tern_sweepgen = 2;

/* A span needs sweeping when its generation is behind by two (never
 * more: a span takes the generation under its class lock, which no pause
 * can pass, span.c).  A span that took a stale generation would be swept
 * during the next marking, wiping the marks of objects allocated black. */
bool tern_sweep_claim(struct span *s) {
    uint32_t sg = atomic_load(&tern_sweepgen);
    uint32_t cur = atomic_load_explicit(&s->sweepgen, memory_order_relaxed);
    if (cur == sg || cur == sg - 1) return false;
    return atomic_compare_exchange_strong(&s->sweepgen, &cur, sg - 1);
}

/* Every sweep runs under the lock of the span's class (class 0 for large
 * spans), so a sweep is never half done when the world stops or the
 * process forks. */
void tern_sweep_ensure_locked(struct span *s) {
    if (tern_sweep_claim(s)) tern_sweep_span(s);
}

void tern_sweep_ensure(struct span *s) {
    if (atomic_load(&s->sweepgen) == atomic_load(&tern_sweepgen)) return;
    pthread_mutex_t *l = &tern_central[s->spanclass].lock;
    pthread_mutex_lock(l);
    tern_sweep_ensure_locked(s);
    pthread_mutex_unlock(l);
}

static size_t sweep_large(struct span *s, uint32_t sg) {
    bool marked = atomic_exchange(&s->mark[0], 0) & 1;
    bool freed = atomic_load(&s->freed[0]) & 1;
    size_t bytes = s->limit;
    atomic_store(&s->sweepgen, sg);
    if (marked && !freed) return 0;
    tern_span_release(s);
    if (freed) return 0; /* counted when it was freed */
    atomic_fetch_add(&tern_stats_g.freed_bytes, bytes);
    return bytes;
}

_Atomic uint64_t tern_spans_swept; /* counted only with TERN_TRACE=2 */

size_t tern_sweep_span(struct span *s) {
    uint32_t sg = atomic_load(&tern_sweepgen);
    if (unlikely(tern_cfg.trace >= 2)) atomic_fetch_add_explicit(&tern_spans_swept, 1, memory_order_relaxed);
    if (s->spanclass == 0) return sweep_large(s, sg);
    size_t dead_slots = 0;
    bool any = false, keep_freed = false;
    unsigned last = s->nelems / 64, r = s->nelems % 64;
    for (unsigned w = 0; w < s->nwords; w++) {
        uint64_t valid = (w < last) ? ~0ull : (w == last && r) ? (1ull << r) - 1 : 0;
        uint64_t a = atomic_load(&s->alloc[w]);
        uint64_t m = atomic_exchange(&s->mark[w], 0);
        uint64_t f = atomic_load(&s->freed[w]) ? atomic_exchange(&s->freed[w], 0) : 0;
        if (f & ~a) { /* freed slots a cache handed out but has not published */
            atomic_fetch_or(&s->freed[w], f & ~a);
            keep_freed = true;
        }
        uint64_t dead = a & ~m & ~f & valid, clear = (dead | (f & a)) & valid;
        if (clear) {
            if (!any) atomic_store_explicit(&s->needzero, 1, memory_order_release);
            any = true;
            atomic_fetch_and(&s->alloc[w], ~clear);
            dead_slots += (size_t)__builtin_popcountll(dead);
        }
    }
    atomic_store(&s->nfree_hint, keep_freed ? 1 : 0);
    size_t bytes = dead_slots * s->elemsize;
    if (bytes) atomic_fetch_add(&tern_stats_g.freed_bytes, bytes);
    atomic_store(&s->sweepgen, sg);
    return bytes;
}

/* Is slot idx of s a live object?  In a span swept since the last cycle,
 * the bitmaps say (a slot is live if allocated and not freed).  In a span
 * not yet swept, an object in the alloc bitmap is live only if the last
 * cycle marked it; that is decided under the class lock, which every sweep
 * holds and which a cycle's end (the world stopped, all central locks
 * taken) cannot pass, so the bitmaps cannot move under the answer. */
static bool live_in(struct span *s, size_t idx, bool swept) {
    uint64_t bit = 1ull << (idx % 64);
    if (atomic_load(&s->freed[idx / 64]) & bit) return false;
    if (s->spanclass == 0 || (atomic_load(&s->alloc[idx / 64]) & bit))
        return swept || (atomic_load(&s->mark[idx / 64]) & bit);
    return slot_allocated(s, idx); /* handed out since the last cycle ended */
}

bool tern_object_live(struct span *s, size_t idx) {
    uint32_t g = atomic_load(&tern_sweepgen);
    if (atomic_load(&s->sweepgen) == g) {
        bool live = live_in(s, idx, true);
        /* no cycle ended meanwhile: the answer holds */
        if (atomic_load(&tern_sweepgen) == g && atomic_load(&s->sweepgen) == g) return live;
    }
    pthread_mutex_t *l = &tern_central[s->spanclass].lock;
    pthread_mutex_lock(l);
    bool live = atomic_load(&s->state) != SPAN_FREE &&
                live_in(s, idx, atomic_load(&s->sweepgen) == atomic_load(&tern_sweepgen));
    pthread_mutex_unlock(l);
    return live;
}

/* Sweep every span that still needs it; returns when none is left.  A
 * class's unswept spans are swept SWEEP_BATCH at a time, its lock released
 * between batches: swept under one hold, a class of 12,000 spans kept the
 * threads allocating from it waiting 10-20 ms (the pause workload's worst
 * steps, just before each start pause). */
#define SWEEP_BATCH 32
void tern_sweep_finish(void) {
    for (unsigned sc = 2; sc < 2 * tern_nclasses; sc++) {
        struct central *c = &tern_central[sc];
        while (__atomic_load_n(&c->unswept, __ATOMIC_RELAXED)) {
            struct span *empty = NULL;
            pthread_mutex_lock(&c->lock);
            for (int k = 0; k < SWEEP_BATCH && c->unswept; k++) {
                struct span *s = c->unswept;
                tern_list_remove(&c->unswept, s);
                tern_sweep_ensure_locked(s);
                if (tern_central_place_locked(c, s)) s->next = empty, empty = s;
            }
            pthread_mutex_unlock(&c->lock);
            tern_central_release_chain(empty);
        }
    }
    /* Spans in caches, large spans, and any span another sweeper holds. */
    uint32_t sg = atomic_load(&tern_sweepgen);
    for (struct chunk *c = __atomic_load_n(&tern_heap.chunks, __ATOMIC_ACQUIRE); c; c = c->next) {
        struct span *s;
        for (size_t p = c->meta_pages; (s = chunk_next_span(c, &p));) {
            if (atomic_load(&s->state) == SPAN_FREE || atomic_load(&s->sweepgen) == sg) continue;
            pthread_mutex_t *l = &tern_central[s->spanclass].lock;
            pthread_mutex_lock(l);
            if (atomic_load(&s->state) != SPAN_FREE) tern_sweep_ensure_locked(s);
            pthread_mutex_unlock(l);
        }
    }
}
