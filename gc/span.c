/* span.c — spans and the central pools they wait in between thread caches.
 *
 * Every small span is in exactly one place: a thread cache (CACHED), or one
 * of its span class's central lists — partial (has free slots), full, or
 * unswept (the last cycle's marks have not been applied yet).  Each span
 * class has its own lock, so threads allocating different sizes never
 * contend.  Large spans are on no list: the sweeper finds them by walking
 * the chunks. */
#include "internal.h"

#include <string.h>

struct central tern_central[NSPANCLASS];

void tern_list_push(struct span **head, struct span *s) {
    s->prev = NULL;
    s->next = *head;
    if (*head) (*head)->prev = s;
    *head = s;
}

void tern_list_remove(struct span **head, struct span *s) {
    if (s->prev) s->prev->next = s->next;
    else *head = s->next;
    if (s->next) s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

static void set_tail_bits(struct span *s) {
    /* Slots past nelems in the last bitmap word stay "allocated" forever so
     * the cache never hands them out; the sweeper masks them. */
    unsigned last = s->nelems / 64, r = s->nelems % 64;
    if (r) atomic_store(&s->alloc[last], ~0ull << r);
    for (unsigned w = last + (r ? 1 : 0); w < s->nwords; w++) atomic_store(&s->alloc[w], ~0ull);
}

void tern_span_init_small(struct span *s, unsigned spanclass) {
    const struct sizeclass *k = &tern_classes[spanclass >> 1];
    s->elemsize = k->size;
    s->nelems = k->nelems;
    s->limit = (uintptr_t)k->nelems * k->size;
    s->divmagic = k->divmagic;
    s->spanclass = (uint16_t)spanclass;
    s->noscan = spanclass & 1;
    s->typed = 0, s->descr = NULL; /* typed.c sets them on spans it takes */
    s->nwords = (s->nelems + 63) / 64;
    set_tail_bits(s);
    atomic_store(&s->sweepgen, atomic_load(&tern_sweepgen));
}

void tern_span_init_large(struct span *s, bool noscan) {
    s->elemsize = 0; /* large: the size is limit, npages * PAGE_SIZE */
    s->nelems = 1;
    s->limit = (uintptr_t)s->npages * PAGE_SIZE;
    s->divmagic = 0; /* span_slot() == 0 */
    s->spanclass = 0;
    s->noscan = noscan;
    s->typed = 0, s->descr = NULL;
    s->nwords = 1;
    atomic_store(&s->alloc[0], 1);
    atomic_store(&s->mark[0], atomic_load(&tern_gc_black) ? 1 : 0);
    atomic_store(&s->freed[0], 0);
    atomic_store(&s->sweepgen, atomic_load(&tern_sweepgen));
}

/* Apply explicit frees recorded since the span was swept.  Every word is
 * looked at: a free counts itself in nfree_hint before it sets its bit
 * (alloc.c, counted_free), so a zero count does not mean no bit is set. */
static void merge_freed(struct span *s) {
    atomic_store_explicit(&s->nfree_hint, 0, memory_order_relaxed);
    bool any = false;
    for (unsigned w = 0; w < s->nwords; w++) {
        if (!atomic_load_explicit(&s->freed[w], memory_order_relaxed)) continue;
        uint64_t f = atomic_exchange(&s->freed[w], 0);
        if (f) atomic_fetch_and(&s->alloc[w], ~f), any = true;
    }
    if (any) atomic_store(&s->needzero, 1);
}

static bool has_free(struct span *s) {
    for (unsigned w = 0; w < s->nwords; w++)
        if (~atomic_load_explicit(&s->alloc[w], memory_order_relaxed)) return true;
    return false;
}

static bool is_empty(struct span *s) {
    unsigned last = s->nelems / 64, r = s->nelems % 64;
    for (unsigned w = 0; w < last; w++)
        if (atomic_load_explicit(&s->alloc[w], memory_order_relaxed)) return false;
    if (r && (atomic_load_explicit(&s->alloc[last], memory_order_relaxed) & ((1ull << r) - 1))) return false;
    return true;
}

/* A swept span with free slots, owned by the caller (state CACHED), or
 * NULL when the OS refuses memory. */
struct span *tern_central_take(unsigned sc) {
    struct central *c = &tern_central[sc];
    struct span *s;
    pthread_mutex_lock(&c->lock);
    if ((s = c->shared)) {
        /* A thread done with the shared span takes it as its own: a
         * single-threaded program then wastes none of it. */
        c->shared = NULL;
        tern_sweep_ensure_locked(s);
        merge_freed(s);
        if (has_free(s)) {
            pthread_mutex_unlock(&c->lock);
            return s; /* CACHED already */
        }
        atomic_store(&s->state, SPAN_FULL);
        tern_list_push(&c->full, s);
    }
    for (;;) {
        if ((s = c->partial)) {
            tern_list_remove(&c->partial, s);
            tern_sweep_ensure_locked(s);
            merge_freed(s);
            if (has_free(s)) break;
            atomic_store(&s->state, SPAN_FULL);
            tern_list_push(&c->full, s);
            continue;
        }
        if ((s = c->unswept)) {
            /* Lazy sweeping: the allocator sweeps the spans of the class it
             * needs before it asks for fresh pages. */
            tern_list_remove(&c->unswept, s);
            tern_sweep_ensure_locked(s);
            merge_freed(s);
            if (is_empty(s)) {
                tern_span_release(s);
                continue;
            }
            if (has_free(s)) break;
            atomic_store(&s->state, SPAN_FULL);
            tern_list_push(&c->full, s);
            continue;
        }
        pthread_mutex_unlock(&c->lock);
        bool needzero;
        s = tern_span_alloc(tern_classes[sc >> 1].npages, &needzero);
        if (!s) return NULL;
        /* The generation is read and the span made visible (CACHED) under
         * the class lock, which every pause takes first: a thread stopped
         * in between by a final pause would leave a span two generations
         * behind, and its first sweep, during the next cycle's marking,
         * would clear the marks of objects allocated black in it. */
        pthread_mutex_lock(&c->lock);
        tern_span_init_small(s, sc);
        atomic_store(&s->needzero, needzero);
        atomic_store(&s->state, SPAN_CACHED);
        pthread_mutex_unlock(&c->lock);
        return s;
    }
    atomic_store(&s->state, SPAN_CACHED);
    pthread_mutex_unlock(&c->lock);
    return s;
}

/* c's lock held: put swept span s (on no list) on c's partial or full
 * list.  True when it is empty instead: the caller releases it once the
 * lock is dropped (tern_central_release_chain). */
bool tern_central_place_locked(struct central *c, struct span *s) {
    merge_freed(s);
    if (is_empty(s)) return true;
    if (has_free(s)) {
        atomic_store(&s->state, SPAN_PARTIAL);
        tern_list_push(&c->partial, s);
    } else {
        atomic_store(&s->state, SPAN_FULL);
        tern_list_push(&c->full, s);
    }
    return false;
}

/* Give back to the heap every span of a chain linked through next (no
 * central lock held).  Returns how many. */
size_t tern_central_release_chain(struct span *s) {
    size_t n = 0;
    while (s) {
        struct span *next = s->next;
        tern_span_release(s);
        s = next;
        n++;
    }
    return n;
}

/* A cache gives a span back (it is exhausted, or the thread is leaving). */
void tern_central_put(struct span *s) {
    struct central *c = &tern_central[s->spanclass];
    pthread_mutex_lock(&c->lock);
    bool empty = tern_central_place_locked(c, s);
    pthread_mutex_unlock(&c->lock);
    if (empty) tern_span_release(s);
}

/* An object in s was freed explicitly: a full span becomes partial. */
void tern_central_note_free(struct span *s) {
    if (atomic_load_explicit(&s->state, memory_order_relaxed) != SPAN_FULL) return;
    struct central *c = &tern_central[s->spanclass];
    pthread_mutex_lock(&c->lock);
    if (atomic_load(&s->state) == SPAN_FULL) {
        tern_list_remove(&c->full, s);
        atomic_store(&s->state, SPAN_PARTIAL);
        tern_list_push(&c->partial, s);
    }
    pthread_mutex_unlock(&c->lock);
}

void tern_central_lock_all(void) {
    for (unsigned i = 0; i < 2 * tern_nclasses; i++) pthread_mutex_lock(&tern_central[i].lock);
}

void tern_central_unlock_all(void) {
    for (unsigned i = 0; i < 2 * tern_nclasses; i++) pthread_mutex_unlock(&tern_central[i].lock);
}

/* End of a cycle, world running: every listed span needs sweeping.  One
 * class at a time, under its own lock.  Under all of them at once, a
 * 760 MiB heap (95,000 spans, a cache miss each) kept every allocating
 * thread that needed a span waiting for about 10 ms after the final pause
 * (the pause workload's worst steps).  A thread that takes a span of a
 * class not moved yet is safe: tern_central_take sweeps every span it
 * takes (the sweep generation moved on in the pause), and a span swept
 * early and moved after is simply found swept. */
void tern_central_begin_sweep(void) {
    for (unsigned i = 2; i < 2 * tern_nclasses; i++) {
        struct central *c = &tern_central[i];
        pthread_mutex_lock(&c->lock);
        struct span **lists[2] = {&c->partial, &c->full};
        for (int l = 0; l < 2; l++)
            while (*lists[l]) {
                struct span *s = *lists[l];
                tern_list_remove(lists[l], s);
                atomic_store(&s->state, SPAN_UNSWEPT);
                tern_list_push(&c->unswept, s);
            }
        pthread_mutex_unlock(&c->lock);
    }
}

/* The program idles (scavenge.c): apply the explicit frees recorded in
 * every listed span and give the spans left empty back to the heap, whose
 * free pages the scavenger then returns.  Without this, a malloc-style
 * program that freed everything would keep every span it ever used: a
 * span goes back only when a cache takes it again.  Returns spans freed. */
size_t tern_central_trim(void) {
    size_t n = 0;
    for (unsigned sc = 2; sc < 2 * tern_nclasses; sc++) {
        struct central *c = &tern_central[sc];
        if (!__atomic_load_n(&c->partial, __ATOMIC_RELAXED) && !__atomic_load_n(&c->full, __ATOMIC_RELAXED)) continue;
        struct span *empty = NULL;
        pthread_mutex_lock(&c->lock);
        struct span **lists[2] = {&c->partial, &c->full};
        for (int l = 0; l < 2; l++)
            for (struct span *s = *lists[l], *next; s; s = next) {
                next = s->next;
                merge_freed(s);
                if (!is_empty(s)) {
                    if (l == 1 && has_free(s)) { /* full no more */
                        tern_list_remove(&c->full, s);
                        atomic_store(&s->state, SPAN_PARTIAL);
                        tern_list_push(&c->partial, s);
                    }
                    continue;
                }
                tern_list_remove(lists[l], s);
                s->next = empty;
                empty = s;
            }
        pthread_mutex_unlock(&c->lock);
        n += tern_central_release_chain(empty);
    }
    return n;
}

/* The shared span of a class (see internal.h): its slots are allocated one
 * at a time under the class lock, straight into the alloc bitmap (black
 * while marking).  No cycle can start or end while the lock is held (every
 * pause takes all class locks first), and the span is swept before any
 * slot is taken, so a slot is never younger than marks it has not seen.
 * The span is in state CACHED with no owner: on no list, like a cached
 * span, but with every allocated slot published; a full one goes to the
 * full list and another takes its place.
 *
 * The slot is cleared (zero) before it is marked, as every other path
 * does: marked first and cleared by the caller after the lock, a slot
 * could be black in a final pause that stopped its thread in between,
 * holding the words of the dead object that had it before.  The cycle
 * rightly never traces those, but the checkmark, tracing everything
 * reachable afresh, followed them from the thread's registers into
 * objects freed since, and aborted (tests/test_threads, threads that
 * come and go: about 1 run in 100 with three runs at once). */
void *tern_central_shared_alloc(unsigned sc, bool zero) {
    struct central *c = &tern_central[sc];
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&c->lock);
        struct span *s = c->shared;
        if (s) {
            tern_sweep_ensure_locked(s);
            merge_freed(s);
            for (unsigned w = 0; w < s->nwords; w++) {
                uint64_t free = ~atomic_load_explicit(&s->alloc[w], memory_order_relaxed);
                if (!free) continue;
                unsigned b = (unsigned)__builtin_ctzll(free);
                uintptr_t p = s->base + ((uintptr_t)w * 64 + b) * s->elemsize;
                if (zero && atomic_load(&s->needzero)) memset((void *)p, 0, s->elemsize);
                __asm__ volatile("" : "+r"(p)); /* in a register before it is allocated */
                atomic_fetch_or(&s->alloc[w], 1ull << b);
                if (atomic_load_explicit(&tern_gc_black, memory_order_relaxed))
                    atomic_fetch_or(&s->mark[w], 1ull << b);
                pthread_mutex_unlock(&c->lock);
                return (void *)p;
            }
            atomic_store(&s->state, SPAN_FULL); /* used up: retire it */
            tern_list_push(&c->full, s);
            c->shared = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        if (attempt) break;
        s = tern_central_take(sc); /* swept, with free slots, CACHED */
        if (!s) return NULL;
        pthread_mutex_lock(&c->lock);
        if (!c->shared) {
            c->shared = s;
            s = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        if (s) tern_central_put(s); /* another thread installed one meanwhile */
    }
    return NULL;
}
