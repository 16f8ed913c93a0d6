/* alloc.c — the allocator: per-thread caches, their refill, large objects,
 * and the public allocation calls.
 *
 * Fast path (small objects): the thread's cache entry for the span class
 * holds a 64-bit mask of free slots in one word of a span's alloc bitmap.
 * Take the lowest bit, clear it, return base + index * size.  No lock and
 * no atomic read-modify-write; about ten instructions.  Every 64 slots the
 * refill publishes the consumed slots with one atomic OR and loads the next
 * word; when the span is used up it goes back to its central pool and a new
 * one is taken (span.c). */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

_Atomic int tern_gc_black;
static __thread struct tcache *tls_tc;

/* An object handed out while marking runs is born marked.  The test of
 * tern_gc_black and the setting of the bit must not straddle a pause: a
 * thread stopped in between by the final pause would set the bit after the
 * cycle ended, and if a sweep had already cleared the span's marks the bit
 * would survive into the next cycle, which would then take the object for
 * scanned and never trace what the program stores in it before marking
 * starts (live objects freed; seen as runs of list nodes lost under the
 * explicit barrier).  So the thread is unstoppable for these few
 * instructions: the stop signal finds nostop set, leaves a note and
 * returns, and the thread takes the stop as soon as the bit is set. */
static inline void mark_slot(struct span *s, uintptr_t p) {
    size_t i = span_slot(s, p - s->base);
    atomic_fetch_or_explicit(&s->mark[i / 64], 1ull << (i % 64), memory_order_relaxed);
}

/* Set bits in mark word mw if marking runs, unstoppably (above). */
static void mark_if_black(struct tcache *tc, _Atomic uint64_t *mw, uint64_t bits) {
    atomic_store_explicit(&tc->nostop, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&tern_gc_black, memory_order_relaxed))
        atomic_fetch_or_explicit(mw, bits, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&tc->nostop, 0, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    if (unlikely(atomic_load_explicit(&tc->stop_deferred, memory_order_relaxed))) tern_thread_stop_deferred();
}

static __attribute__((noinline)) void *mark_black(struct tcache *tc, struct span *s, uintptr_t p) {
    size_t i = span_slot(s, p - s->base);
    mark_if_black(tc, &s->mark[i / 64], 1ull << (i % 64));
    return (void *)p;
}

/* Black allocation a word at a time.  A cache that loads a word of slots
 * while marking runs marks every free slot of it at once, before handing
 * any out: one atomic OR for up to 64 objects, where marking each object
 * as it left the cache (mark_black) took 8% of GCBench's CPU, most of it
 * the OR on a mark word the markers were writing too.  A marked slot not
 * yet handed out is a free slot for everyone (tern_mark_state and the
 * marker test the alloc bitmap and the cache's masks); its bit goes when
 * the span is swept, after the cycle.  A written page's rescan (mark.c,
 * dirty_range) also reads such slots: what it finds there is old data,
 * which at worst keeps garbage for one more cycle.
 *
 * tc_alloc clears a slot before the slot leaves bits, so a slot handed
 * out is never marked with the words of the dead object that had it: the
 * cycle never traces a marked object, but the checkmark, tracing afresh
 * from a register that holds a slot just handed out, would follow them
 * (span.c, the shared span, met this).
 *
 * The start pause sets markslow on every cache (tern_tcache_black_start):
 * the rest of a word loaded before marking began is marked slot by slot.
 * The test of tern_gc_black and the marking are one unstoppable step
 * (mark_if_black), as for a single object. */
static __attribute__((noinline)) void black_word(struct tcache *tc, struct tc_class *c, struct span *s, unsigned w,
                                                 uint64_t free) {
    /* cleared first: a start pause after this sets it again, and then
     * the word is marked whole below as well */
    __atomic_store_n(&c->markslow, 0, __ATOMIC_RELAXED);
    atomic_signal_fence(memory_order_seq_cst);
    mark_if_black(tc, &s->mark[w], free);
}

/* Start pause (world stopped): every cache marks the rest of its current
 * word slot by slot; the next word it loads is marked whole. */
void tern_tcache_black_start(void) {
    for (struct thread *t = tern_threads; t; t = t->next)
        for (unsigned sc = 2; sc < 2 * tern_nclasses; sc++) __atomic_store_n(&t->tc->c[sc].markslow, 1, __ATOMIC_RELAXED);
}

/* ---- thread-local free lists ------------------------------------------------
 *
 * An explicit free of a small object puts it on its thread's list for the
 * object's span class, and the thread's next allocation of that class takes
 * it back: no atomic operation on either side, and the memory comes back
 * while it is still in the processor's cache, as with glibc's tcache.
 * Without this a freed slot waited for its span to pass through the central
 * pool again, every free made two atomic updates of the span's shared
 * words, and every allocation went to colder memory.
 *
 * For the collector a listed object is still allocated.  Each final pause
 * marks the listed objects without scanning them (tern_mark_free_lists), so
 * no sweep frees them and nothing they point to is kept; one taken back
 * while marking runs is born black like any other.  The list runs through
 * word 0 of each object, and word 1 holds free_key XOR the thread's id, so
 * a second free of a listed object is caught: by this thread, after a
 * search of its list; by another thread, from the tag alone.  The lists
 * are short (FL_CLASS_MAX objects and FL_CLASS_BYTES bytes per class, and
 * per thread FL_TOTAL_MAX shared out among the threads, between
 * FL_THREAD_MIN and FL_THREAD_MAX each) so that the pause that marks them
 * stays short and an idle thread holds little.  Not shorter, though: a
 * free that finds its list full goes the shared way (free_shared), and
 * the span it lands in must then pass through the class's central lists
 * before its slot is used again.  With 256 per thread, larson's two
 * threads sent 5% of their frees that way and took a span from the
 * central lists every 117 allocations, lock and list lines moving between
 * the cores each time; with 1024, 0.4% and one take per 1600, and 7-9%
 * less time (more where the host's cores are far apart).  Marking a listed
 * object in the pause costs a few nanoseconds: two threads whose lists
 * held 1024 objects each made the median pause 10 us longer than with 256
 * (178 -> 188 us, explicit barrier).  Typed objects are never listed: their
 * span's layout says where their pointers are, and a listed object could
 * come back as an untyped one.  A thread's lists are freed for real when
 * it exits (tern_tcache_flush).
 *
 * A thread that frees FL_RUN_MAX small objects in a row, allocating
 * nothing (taking a listed object or loading a word of slots ends a run;
 * the fast path itself does not count), is tearing something down, not
 * recycling: its lists go back the shared way at once, and the rest of
 * the run is not listed.  A thread that then sleeps would otherwise pin
 * the spans of up to 1024 listed objects: after the idle workload's burst (a 64 MiB ring freed,
 * then 2 s asleep: `idle 1024 64 2000 100`) the drop-in kept 13.5 MiB
 * resident, against 9.4 MiB with lists of 256, and 6.6 MiB with this
 * rule. */
#define FL_CLASS_MAX 64
#define FL_CLASS_BYTES (32u << 10)
#define FL_THREAD_MIN 256
#define FL_THREAD_MAX 1024
#define FL_TOTAL_MAX 8192
#define FL_RUN_MAX 4096
#define FL_ID_MAX ((1u << 20) - 1)

static uintptr_t free_key;
static _Atomic uint32_t next_fl_id;

void tern_alloc_init(void) {
    uintptr_t k = 0;
    if (getrandom(&k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k)
        k = (uintptr_t)tern_now_ns() * 0x9E3779B97F4A7C15ull ^ (uintptr_t)&k;
    free_key = k | ((uintptr_t)1 << 63) | 1; /* never a pointer, never a small id */
}

static inline void fl_set_head(uintptr_t *head, uintptr_t v) {
    atomic_signal_fence(memory_order_seq_cst);
    __atomic_store_n(head, v, __ATOMIC_RELAXED);
    atomic_signal_fence(memory_order_seq_cst);
}

/* Each thread's share of FL_TOTAL_MAX (tern_alloc_threads_changed).  A
 * thread whose lists are longer than a new, smaller share keeps them until
 * it takes objects back: the bound is on what a thread adds. */
static _Atomic uint32_t fl_thread_max = FL_THREAD_MAX;

void tern_alloc_threads_changed(unsigned nthreads) {
    uint32_t share = FL_TOTAL_MAX / (nthreads ? nthreads : 1);
    if (share > FL_THREAD_MAX) share = FL_THREAD_MAX;
    if (share < FL_THREAD_MIN) share = FL_THREAD_MIN;
    atomic_store_explicit(&fl_thread_max, share, memory_order_relaxed);
}

static bool fl_room(const struct tcache *tc, const struct tc_class *c, uint32_t size) {
    return c->fl_n < FL_CLASS_MAX && (c->fl_n + 1) * size <= FL_CLASS_BYTES &&
           tc->fl_total < atomic_load_explicit(&fl_thread_max, memory_order_relaxed);
}

/* Does the object at w carry a free-list tag (some thread listed it)? */
static inline bool fl_tagged(uintptr_t w) {
    uintptr_t tag = ((const uintptr_t *)w)[1] ^ free_key;
    return tag && tag <= FL_ID_MAX;
}

static __attribute__((noinline)) bool fl_listed(const struct tc_class *c, uintptr_t w) {
    for (uintptr_t x = c->fl_head; x; x = ((uintptr_t *)x)[0])
        if (x == w) return true;
    return false;
}

static void fl_drain(struct tcache *tc);

/* A free of w, a small, allocated, untyped object of span class sc. */
enum fl_result { FL_LISTED, FL_NOT_TAKEN, FL_DOUBLE };
static inline enum fl_result fl_put(struct tcache *tc, unsigned sc, uintptr_t w, uint32_t size) {
    uintptr_t *o = (uintptr_t *)w;
    if (unlikely(fl_tagged(w))) { /* listed by some thread, or a coincidence */
        if (!tc || (o[1] ^ free_key) != tc->fl_id) return FL_DOUBLE;
        if (fl_listed(&tc->c[sc], w)) return FL_DOUBLE;
    }
    if (!tc) return FL_NOT_TAKEN; /* tls_tc is set only once fl_id is (tcache_slow) */
    if (unlikely(++tc->free_run > FL_RUN_MAX)) {
        if (tc->free_run == FL_RUN_MAX + 1 && tc->fl_total) fl_drain(tc);
        return FL_NOT_TAKEN;
    }
    struct tc_class *c = &tc->c[sc];
    if (!fl_room(tc, c, size)) return FL_NOT_TAKEN;
    o[1] = free_key ^ tc->fl_id;
    o[0] = c->fl_head;
    fl_set_head(&c->fl_head, w); /* w is in a register until it is listed */
    c->fl_n++;
    tc->fl_total++;
    return FL_LISTED;
}

static void publish_counts(struct tcache *tc, bool may_collect);

/* Take the first object of c's list (not empty). */
static __attribute__((noinline)) void *fl_take(struct tcache *tc, struct tc_class *c, unsigned sc, bool zero) {
    uint32_t size = tern_classes[sc >> 1].size;
    tc->alloc_bytes += size;
    tc->alloc_objs++;
    tc->free_run = 0;
    if (unlikely(tc->alloc_bytes >= 64 * 1024)) publish_counts(tc, true); /* may run a cycle */
    uintptr_t p = c->fl_head;
    /* As in tc_alloc: p is in a register before it leaves the list, where
     * a stop of this thread sees it. */
    __asm__ volatile("" : "+r"(p));
    fl_set_head(&c->fl_head, ((uintptr_t *)p)[0]);
    __asm__ volatile("" : : "r"(p) : "memory");
    c->fl_n--;
    tc->fl_total--;
    if (zero) memset((void *)p, 0, size);
    else ((uintptr_t *)p)[0] = ((uintptr_t *)p)[1] = 0;
    if (unlikely(atomic_load_explicit(&tern_gc_black, memory_order_relaxed))) return mark_black(tc, span_of(p), p);
    return (void *)p;
}

/* World stopped, before the last marking of a cycle (and by the
 * checkmark): mark every object on every thread's lists, so that no sweep
 * frees it.  Before, not after: under the explicit barrier the list's
 * links are stores no barrier saw, and the checkmark, which may reach a
 * listed object through a stale pointer, would find the next one
 * unmarked.  Every head is read, whatever fl_total says: a thread stopped
 * between listing an object and counting it has a list its count misses. */
void tern_mark_free_lists(void) {
    for (struct thread *t = tern_threads; t; t = t->next)
        for (unsigned sc = 2; sc < 2 * tern_nclasses; sc++)
            for (uintptr_t x = t->tc->c[sc].fl_head; x; x = ((uintptr_t *)x)[0]) {
                struct span *s = span_of(x);
                if (s) mark_slot(s, x);
            }
}

/* Explicit frees are counted per thread too and published in batches, so
 * a free touches no shared counter (two threads freeing at once made
 * tern_in_use's cache line bounce). */
static void publish_frees(struct tcache *tc) {
    uint64_t b = atomic_load_explicit(&tc->free_bytes, memory_order_relaxed);
    uint64_t n = atomic_load_explicit(&tc->frees, memory_order_relaxed);
    if (!n) return;
    atomic_store_explicit(&tc->free_bytes, 0, memory_order_relaxed);
    atomic_fetch_add(&tern_stats_g.explicit_frees, n);
    atomic_store_explicit(&tc->frees, 0, memory_order_relaxed);
    tern_pacer_note_free(b);
}

static void publish_counts(struct tcache *tc, bool may_collect) {
    int64_t b = tc->alloc_bytes, o = tc->alloc_objs;
    tc->alloc_bytes = tc->alloc_objs = 0;
    publish_frees(tc);
    tern_pacer_note_alloc(b, o, may_collect);
}

/* The cache entry's masks as a collector sees them when it stops the
 * thread at any instruction (tern_tcache_publish): "loaded and no longer
 * in bits" must only ever name slots handed out from c->word.  So loaded
 * is 0 whenever word or bits change, and every store to these fields is a
 * relaxed atomic between compiler barriers, which the compiler may neither
 * drop nor reorder. */
static inline void entry_set(uint64_t *field, uint64_t v) {
    atomic_signal_fence(memory_order_seq_cst);
    __atomic_store_n(field, v, __ATOMIC_RELAXED);
    atomic_signal_fence(memory_order_seq_cst);
}

static void load_word(struct tcache *tc, struct tc_class *c, struct span *s, unsigned w, uint64_t free) {
    /* c->loaded is 0 here (refill and take clear it) */
    c->word = w;
    c->wordbase = s->base + (uintptr_t)w * 64 * c->size;
    c->needzero = atomic_load_explicit(&s->needzero, memory_order_acquire);
    /* bits before loaded: a thread stopped in between looks as if it had
     * handed out nothing from this word (loaded is still 0), which is true;
     * the other order would make tern_tcache_publish mark the whole word
     * allocated and forget it from loaded. */
    entry_set(&c->bits, free);
    entry_set(&c->loaded, free);
    atomic_store_explicit(&s->cache_word, w, memory_order_release);
    /* after bits: a start pause before this point set markslow, one after
     * it finds tern_gc_black set here */
    atomic_signal_fence(memory_order_seq_cst);
    if (unlikely(atomic_load_explicit(&tern_gc_black, memory_order_relaxed) ||
                 __atomic_load_n(&c->markslow, __ATOMIC_RELAXED)))
        black_word(tc, c, s, w, free);
    unsigned n = (unsigned)__builtin_popcountll(free);
    tc->alloc_bytes += (int64_t)n * c->size;
    tc->alloc_objs += n;
    tc->free_run = 0; /* allocating: here once a word, not on every slot */
}

/* Next word of c's span with free slots; false when the span is used up. */
static bool next_word(struct tcache *tc, struct tc_class *c, unsigned from) {
    struct span *s = c->span;
    for (unsigned w = from; w < s->nwords; w++) {
        uint64_t free = ~atomic_load_explicit(&s->alloc[w], memory_order_acquire);
        if (free) {
            load_word(tc, c, s, w, free);
            return true;
        }
    }
    return false;
}

/* Give the span of c back, publishing what the cache handed out. */
static void drop_span(struct tcache *tc, struct tc_class *c) {
    struct span *s = c->span;
    if (!s) return;
    tern_sweep_ensure(s); /* publish only into a swept span */
    uint64_t used = c->loaded & ~c->bits;
    if (used) atomic_fetch_or(&s->alloc[c->word], used);
    unsigned left = (unsigned)__builtin_popcountll(c->bits);
    tc->alloc_bytes -= (int64_t)left * c->size; /* counted at load, never handed out */
    tc->alloc_objs -= left;
    entry_set(&c->loaded, 0);
    entry_set(&c->bits, 0);
    c->span = NULL;
    atomic_store(&s->owner, NULL);
    tern_central_put(s);
}

static inline void *tc_alloc(struct tcache *tc, unsigned sc, bool zero);

static __attribute__((noinline)) void *refill(struct tcache *tc, unsigned sc, bool zero) {
    tern_ensure_init();
    struct tc_class *c = &tc->c[sc];
    struct span *s = c->span;
    if (!s && c->nshared < SHARED_OBJS && tern_classes[sc >> 1].size <= SHARED_MAX_SIZE) {
        /* a thread's first objects of a small class: the shared span */
        void *p = tern_central_shared_alloc(sc, zero);
        if (p) {
            c->nshared++;
            tc->free_run = 0;
            uint32_t size = tern_classes[sc >> 1].size;
            tc->alloc_bytes += size;
            tc->alloc_objs++;
            return p;
        }
    }
    if (s) {
        /* If a cycle ended since this span was swept, sweep it before the
         * slots handed out since then enter its alloc bitmap: they may be
         * younger than the marks. */
        tern_sweep_ensure(s);
        if (c->loaded) atomic_fetch_or(&s->alloc[c->word], c->loaded);
        entry_set(&c->loaded, 0);
        if (next_word(tc, c, c->word + 1)) goto done;
        drop_span(tc, c);
    }
    for (;;) {
        s = tern_central_take(sc);
        if (!s) {
            errno = ENOMEM;
            return NULL;
        }
        /* loaded and bits are 0: drop_span cleared them */
        c->span = s;
        c->size = tern_classes[sc >> 1].size;
        atomic_store(&s->owner, c);
        if (next_word(tc, c, 0)) break;
        drop_span(tc, c); /* raced with nothing free: try again */
    }
done:
    if (tc->alloc_bytes >= 64 * 1024) publish_counts(tc, true); /* may run a cycle */
    return tc_alloc(tc, sc, zero);
}

/* The slot at p, the lowest of b, leaves the cache.  It counts as handed
 * out once it leaves bits; from that store on, the pointer must exist in
 * a register, where a stop of this thread sees it and marks the object.
 * Otherwise a cycle ending between the store and the computation of p
 * would find the slot handed out but referenced by nothing, and free it. */
static inline __attribute__((always_inline)) void *hand_out(struct tcache *tc, struct tc_class *c, uint64_t b,
                                                            uintptr_t p) {
    __asm__ volatile("" : "+r"(p));
    entry_set(&c->bits, b & (b - 1));
    __asm__ volatile("" : : "r"(p) : "memory");
    if (unlikely(__atomic_load_n(&c->markslow, __ATOMIC_RELAXED))) return mark_black(tc, c->span, p);
    return (void *)p;
}

static __attribute__((noinline)) void *hand_out_cleared(struct tcache *tc, struct tc_class *c, uint64_t b, uintptr_t p) {
    memset((void *)p, 0, c->size);
    return hand_out(tc, c, b, p);
}

/* The fast path calls nothing: the slot is cleared inline up to 64 bytes
 * (every object is 16-byte aligned, every size a multiple of 16), and the
 * rarer paths are functions of their own.  With memset and the free list
 * inline here, every allocation saved and restored six registers. */
static inline void *tc_alloc(struct tcache *tc, unsigned sc, bool zero) {
    struct tc_class *c = &tc->c[sc];
    if (c->fl_head) return fl_take(tc, c, sc, zero);
    uint64_t b = c->bits;
    if (likely(b)) {
        uintptr_t p = c->wordbase + (uintptr_t)__builtin_ctzll(b) * c->size;
        /* cleared while still free (see black_word) */
        if (c->needzero && zero) {
            uint32_t size = c->size;
            if (size > 64) return hand_out_cleared(tc, c, b, p);
            typedef uint64_t v2 __attribute__((vector_size(16), may_alias));
            v2 *q = (v2 *)p, z = {0, 0};
            q[0] = z;
            if (size > 16) q[1] = z;
            if (size > 32) q[2] = z;
            if (size > 48) q[3] = z;
        }
        return hand_out(tc, c, b, p);
    }
    return refill(tc, sc, zero);
}

static struct tcache *tcache_slow(void) {
    tern_ensure_init();
    struct thread *t = tern_thread_ensure();
    if (!t) return NULL;
    if (!t->tc->fl_id) t->tc->fl_id = atomic_fetch_add(&next_fl_id, 1) % FL_ID_MAX + 1;
    tls_tc = t->tc;
    return t->tc;
}

void tern_tcache_attach(struct tcache *tc) { tls_tc = tc; }

/* World stopped, marking done: put every slot the cache has handed out
 * into its span's alloc bitmap, so that the sweeper can free the dead ones,
 * and forget them from the cache's loaded mask, so that "loaded and no
 * longer free" keeps meaning "handed out since the last cycle".  A thread
 * stopped inside refill may OR its old mask in once more; that keeps a
 * slot the sweeper freed allocated until the next cycle, never the
 * reverse. */
void tern_tcache_publish(struct tcache *tc) {
    for (unsigned sc = 2; sc < 2 * tern_nclasses; sc++) {
        struct tc_class *c = &tc->c[sc];
        uint64_t bits = __atomic_load_n(&c->bits, __ATOMIC_RELAXED);
        uint64_t used = c->loaded & ~bits;
        __atomic_store_n(&c->markslow, 0, __ATOMIC_RELAXED); /* the cycle is over (or never marked) */
        if (!c->span || !used) continue;
        atomic_fetch_or(&c->span->alloc[c->word], used);
        __atomic_store_n(&c->loaded, c->loaded & bits, __ATOMIC_RELAXED);
    }
}

void tern_tcache_flush(struct tcache *tc) {
    if (tls_tc == tc) tls_tc = NULL;
    fl_drain(tc);
    for (unsigned sc = 2; sc < 2 * tern_nclasses; sc++) drop_span(tc, &tc->c[sc]);
    publish_counts(tc, false);
}

static __attribute__((noinline)) void *large_alloc(size_t n, bool noscan, bool zero) {
    tern_ensure_init();
    if (n > tern_os_max_object()) {
        errno = ENOMEM;
        return NULL;
    }
    size_t np = (n + PAGE_SIZE - 1) / PAGE_SIZE;
    /* Collect, if this object would reach the goal, before it exists: a
     * cycle run after would find no pointer to it yet and free it. */
    if (atomic_load_explicit(&tern_in_use, memory_order_relaxed) + np * PAGE_SIZE >=
        atomic_load_explicit(&tern_next_gc, memory_order_relaxed))
        tern_gc_for("heap goal", false, np * PAGE_SIZE);
    bool nz;
    struct span *s = tern_span_alloc(np, &nz);
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    if (nz && zero) memset((void *)s->base, 0, (size_t)s->npages * PAGE_SIZE);
    /* As in tc_alloc: the pointer is in a register before the object
     * becomes visible to the marker, and stays there until returned. */
    uintptr_t p = s->base;
    __asm__ volatile("" : "+r"(p));
    /* The span's generation, its mark bit (black while marking) and its
     * publication happen under the class-0 lock, which every pause takes
     * first: no cycle can start or end between them.  Otherwise a cycle
     * ending in between leaves a live object "unswept and unmarked", and
     * the sweeper frees it. */
    pthread_mutex_lock(&tern_central[0].lock);
    tern_span_init_large(s, noscan);
    atomic_store(&s->state, SPAN_LARGE);
    pthread_mutex_unlock(&tern_central[0].lock);
    tern_pacer_note_alloc((int64_t)s->limit, 1, false);
    tern_scavenger_poke();
    __asm__ volatile("" : : "r"(p) : "memory");
    return (void *)p;
}

static void *alloc_once(size_t n, bool noscan, bool zero);

/* A thread's first allocation: set up its cache, then allocate. */
static __attribute__((noinline)) void *alloc_first(size_t n, bool noscan, bool zero) {
    if (!tcache_slow()) {
        errno = ENOMEM;
        return NULL;
    }
    return alloc_once(n, noscan, zero);
}

static void *alloc_once(size_t n, bool noscan, bool zero) {
    if (likely(n <= MAX_SMALL)) {
        struct tcache *tc = tls_tc;
        if (unlikely(!tc)) return alloc_first(n, noscan, zero);
        return tc_alloc(tc, size_class(n) * 2 + noscan, zero);
    }
    return large_alloc(n, noscan, zero);
}

/* The heap could not grow (the OS refused memory, or the memory limit):
 * return free pages to the OS and try again; then collect everything and
 * try again; then the out-of-memory handler decides (scavenge.c). */
static __attribute__((noinline)) void *alloc_retry(size_t n, bool noscan, bool zero) {
    if (n > tern_os_max_object()) return tern_out_of_memory(n);
    if (tern_scavenge_now()) {
        void *p = alloc_once(n, noscan, zero);
        if (p) return p;
    }
    tern_gc("out of memory", true);
    tern_scavenge_now();
    void *p = alloc_once(n, noscan, zero);
    return p ? p : tern_out_of_memory(n);
}

void *tern_alloc_internal(size_t n, bool noscan, bool zero) {
    void *p = alloc_once(n, noscan, zero);
    return likely(p != NULL) ? p : alloc_retry(n, noscan, zero);
}

TERN_API void *tern_malloc(size_t n) { return tern_alloc_internal(n, false, true); }
TERN_API void *tern_malloc_atomic(size_t n) { return tern_alloc_internal(n, true, false); }

TERN_API void *tern_calloc(size_t count, size_t size) {
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return tern_alloc_internal(n, false, true);
}

/* The span and slot of the live object containing p, or NULL.  A small
 * object on a thread's free list is allocated as far as the collector
 * knows, but freed as far as the program does: its tag says so. */
static struct span *object_at(const void *p, size_t *idx) {
    struct span *s = span_of((uintptr_t)p);
    if (!s || atomic_load_explicit(&s->state, memory_order_acquire) == SPAN_FREE) return NULL;
    uintptr_t off = (uintptr_t)p - s->base;
    if (off >= s->limit) return NULL;
    *idx = span_slot(s, off);
    if (!tern_object_live(s, *idx)) return NULL;
    if (s->spanclass && fl_tagged(s->base + *idx * s->elemsize)) return NULL;
    return s;
}

TERN_API size_t tern_size(const void *p) {
    size_t i;
    struct span *s = object_at(p, &i);
    return s ? span_obj_size(s) : 0;
}

TERN_API void *tern_base(const void *p) {
    size_t i;
    struct span *s = object_at(p, &i);
    return s ? (void *)(s->base + i * (s->spanclass ? s->elemsize : 0)) : NULL;
}

static void note_free(uint64_t bytes) {
    struct tcache *tc = tls_tc;
    if (unlikely(!tc)) {
        atomic_fetch_add(&tern_stats_g.explicit_frees, 1);
        tern_pacer_note_free(bytes);
        return;
    }
    /* relaxed load + store: only this thread writes them (tern_get_stats
     * reads them, and a thread's exit or publish zeroes them, on it) */
    uint64_t b = atomic_load_explicit(&tc->free_bytes, memory_order_relaxed) + bytes;
    atomic_store_explicit(&tc->free_bytes, b, memory_order_relaxed);
    atomic_store_explicit(&tc->frees, atomic_load_explicit(&tc->frees, memory_order_relaxed) + 1, memory_order_relaxed);
    if (b >= 64 * 1024) publish_frees(tc);
}

/* A small span counts its frees since it was last swept or merged.  A full
 * span goes back on its class's partial list only once an eighth of its
 * slots are free again: moving it at the first free took the class lock
 * for every full span a free touched, and a thread then took spans with
 * one free slot each (lock contention dominated malloc-style programs with
 * two threads).  Until then its freed slots wait for the next sweep or the
 * idle trim.
 *
 * Called before the slot's freed bit is set, while the object still holds
 * the span: once the bit is set, another thread may merge it, find the
 * span empty, release it, and the pages may become a span of another
 * class.  Counting after the bit once did exactly that: a free read the
 * old class and the new span's FULL state, and moved the span onto the
 * old class's partial list, whose caches then handed out slots of the
 * wrong size over live objects (tests/malloc: threads_free_elsewhere,
 * about 1 run in 300). */
static void counted_free(struct span *s) {
    uint32_t n = atomic_fetch_add_explicit(&s->nfree_hint, 1, memory_order_relaxed) + 1;
    if (n >= s->nelems / 8 + 1) tern_central_note_free(s);
}

/* An explicitly freed big object gives its pages back to the OS at once,
 * as glibc unmaps a chunk above its mmap threshold, and with glibc's
 * dynamic threshold: a freed size above it raises it to that size, so a
 * program that keeps freeing and allocating one size does not return and
 * fault its pages again each time, while a buffer grown by doubling (a
 * sorter, a string builder) returns each smaller copy.  Freed smaller,
 * the pages stay for reuse until the scavenger returns them.
 *
 * The old copy of a big object that realloc has just grown by half or
 * more goes back at once whatever its size (tern_free_moved): glibc grows
 * such a block in place, at the top of its heap or with mremap, and never
 * holds two copies' pages.  Kept for reuse, they were dead weight: sqlite3
 * grows two buffers by doubling to 2 MB, the second after the threshold
 * had risen to 2 MB, and its peak RSS was 24.7 MiB with them kept, 22.6 MiB
 * without (glibc 20.2, /usr/bin/time, medians of 3).  A smaller growth
 * keeps them: the copies of a buffer grown by less than the golden ratio
 * each time add up, side by side, to room for a later copy, while a
 * doubled one never fits where its predecessors were.  Python grows its
 * lists by an eighth; returning each old copy made its sys time 0.2 ->
 * 0.3 s in the json program of bench/programs.c. */
#define RETURN_THRESHOLD_MIN (128u << 10)
#define RETURN_THRESHOLD_MAX (32u << 20)
static _Atomic size_t return_threshold = RETURN_THRESHOLD_MIN;

static bool return_at_once(size_t bytes) {
    size_t t = atomic_load_explicit(&return_threshold, memory_order_relaxed);
    if (bytes <= t) return false;
    if (bytes <= RETURN_THRESHOLD_MAX) atomic_store_explicit(&return_threshold, bytes, memory_order_relaxed);
    return true;
}

/* Everything under the class-0 lock, which every sweep of a large span
 * holds: setting the freed bit and releasing the pages must be one step.
 * Before, a sweep could slip in between them, see the freed bit and
 * release the span, and this free then released it a second time — after
 * its pages had gone to a new object, whose pages were then handed out
 * again and whose page map entries were cleared (live objects "dead";
 * found by tests/test_concurrent, realloc scenario). */
static void free_large(struct span *s, bool now) {
    pthread_mutex_lock(&tern_central[0].lock);
    if (atomic_load(&s->state) != SPAN_LARGE || (atomic_fetch_or(&s->freed[0], 1) & 1)) {
        pthread_mutex_unlock(&tern_central[0].lock);
        tern_report_error("double free", (void *)s->base);
        return;
    }
    uint64_t bytes = s->limit;
    uint32_t sg = atomic_load(&tern_sweepgen);
    if (atomic_load(&s->sweepgen) == sg || tern_sweep_claim(s)) {
        atomic_store(&s->sweepgen, sg);
        atomic_store(&s->mark[0], 0);
        if (now || return_at_once(bytes)) tern_span_release_now(s);
        else tern_span_release(s);
    }
    pthread_mutex_unlock(&tern_central[0].lock);
    note_free(bytes);
}

enum free_result { FREE_DONE, FREE_INTERIOR, FREE_DOUBLE };

/* Free slot i of small span s, whose object is at obj, the shared way:
 * count it, then set its freed bit.  True when the bit was set already.
 * obj stays in a register until the bit is set: a thread stopped in
 * between, holding it nowhere, would let a cycle find the object
 * unreachable and sweep it; the bit set after would then outlive the
 * slot's next owner, and a later sweep free that one. */
static bool free_shared(struct span *s, size_t i, uintptr_t obj) {
    __asm__ volatile("" : "+r"(obj));
    counted_free(s); /* the last touch of s: see counted_free */
    uint64_t bit = 1ull << (i % 64);
    bool twice = atomic_fetch_or(&s->freed[i / 64], bit) & bit;
    __asm__ volatile("" : : "r"(obj) : "memory");
    return twice;
}

/* Free the object at offset off of small span s (in use), if off is the
 * start of an allocated slot. */
static enum free_result free_small(struct span *s, uintptr_t off) {
    size_t i = span_slot(s, off);
    if (off >= s->limit || i * s->elemsize != off) return FREE_INTERIOR;
    /* Allocated first, then claim the freed bit: the other order lets a
     * concurrent sweep or merge consume the bit and free the slot between
     * the two steps, and a valid free would be reported as a double one. */
    if (!slot_allocated(s, i)) return FREE_DOUBLE;
    uint32_t size = s->elemsize;
    enum fl_result r = s->typed ? FL_NOT_TAKEN : fl_put(tls_tc, s->spanclass, s->base + off, size);
    if (r == FL_DOUBLE || (r == FL_NOT_TAKEN && free_shared(s, i, s->base + off))) return FREE_DOUBLE;
    note_free(size);
    return FREE_DONE;
}

/* A thread's lists go back the shared way (it exits). */
static void fl_drain(struct tcache *tc) {
    for (unsigned sc = 2; sc < 2 * tern_nclasses; sc++) { /* every head: see tern_mark_free_lists */
        struct tc_class *c = &tc->c[sc];
        while (c->fl_head) {
            uintptr_t x = c->fl_head;
            __asm__ volatile("" : "+r"(x)); /* in a register before it leaves the list */
            fl_set_head(&c->fl_head, ((uintptr_t *)x)[0]);
            ((uintptr_t *)x)[0] = ((uintptr_t *)x)[1] = 0;
            struct span *s = span_of(x);
            free_shared(s, span_slot(s, x - s->base), x);
        }
        c->fl_n = 0;
    }
    tc->fl_total = 0;
}

/* Free p; grown_to: realloc has just copied p into an object of that many
 * bytes (0: a plain free, tern_free). */
void tern_free_moved(void *p, size_t grown_to) {
    if (!p) return;
    if (unlikely(atomic_load_explicit(&tern_finalize_any, memory_order_relaxed)))
        tern_finalize_note_free(p); /* finalize.c: its registrations end */
    struct span *s = span_of((uintptr_t)p);
    unsigned st = s ? atomic_load_explicit(&s->state, memory_order_acquire) : SPAN_FREE;
    if (!s || st == SPAN_FREE) {
        /* Inside a chunk but in no allocated span: freed before. */
        tern_report_error(s || chunk_of((uintptr_t)p) ? "double free" : "invalid free (not a Tern object)", p);
        return;
    }
    uintptr_t off = (uintptr_t)p - s->base;
    if (st == SPAN_LARGE) {
        if (off) tern_report_error("invalid free (interior pointer)", p);
        else free_large(s, grown_to >= s->limit + s->limit / 2);
        return;
    }
    switch (free_small(s, off)) {
    case FREE_INTERIOR: tern_report_error("invalid free (interior pointer)", p); break;
    case FREE_DOUBLE: tern_report_error("double free", p); break;
    case FREE_DONE: break;
    }
}

TERN_API void tern_free(void *p) { tern_free_moved(p, 0); }

/* The drop-in's free (malloc.c): free p if it is the start of an allocated
 * small object and say so; otherwise change nothing and return false, and
 * the caller works out what p is (an aligned block, a large object, an
 * error to report with its call site).  One lookup instead of two. */
bool tern_free_small_start(void *p) {
    struct span *s = span_of((uintptr_t)p);
    if (!s || !s->spanclass || atomic_load_explicit(&s->state, memory_order_acquire) == SPAN_FREE) return false;
    if (free_small(s, (uintptr_t)p - s->base) != FREE_DONE) return false;
    if (unlikely(atomic_load_explicit(&tern_finalize_any, memory_order_relaxed))) tern_finalize_note_free(p);
    return true;
}

/* Explicit frees counted by threads and not yet published (tern_get_stats). */
uint64_t tern_tcache_pending_frees(void) {
    uint64_t n = 0;
    pthread_mutex_lock(&tern_threads_lock);
    for (struct thread *t = tern_threads; t; t = t->next) n += atomic_load_explicit(&t->tcache.frees, memory_order_relaxed);
    pthread_mutex_unlock(&tern_threads_lock);
    return n;
}

TERN_API void *tern_realloc(void *p, size_t n) {
    if (!p) return tern_malloc(n);
    if (n == 0) {
        tern_free(p);
        return NULL;
    }
    size_t i;
    struct span *s = object_at(p, &i);
    if (!s || tern_base(p) != p) {
        tern_report_error(s ? "invalid realloc (interior pointer)"
                          : chunk_of((uintptr_t)p) ? "realloc of freed memory"
                                                   : "invalid realloc (not a Tern object)",
                          p);
        errno = EINVAL;
        return NULL;
    }
    size_t old = span_obj_size(s);
    if (n <= old && (n > old / 2 || old <= 16)) return p;
    void *q = tern_alloc_internal(n, s->noscan, true);
    if (!q) return NULL;
    if (unlikely(atomic_load_explicit(&tern_finalize_any, memory_order_relaxed)))
        tern_finalize_note_realloc(p, q); /* an uncollectable object stays so */
    memcpy(q, p, n < old ? n : old);
    tern_written(q, n < old ? n : old); /* the explicit barrier must see the copy */
    tern_free_moved(p, n);
    return q;
}
