/* mark.c — the marker.
 *
 * ONE CYCLE, PHASE BY PHASE (the concurrent kinds; TERN_BARRIER=stw runs
 * steps 4-9 in one pause on the thread that triggered the cycle)
 *
 * 1. Trigger.  The pacer (pacer.c) sees the bytes in use reach the
 *    trigger, a point before the heap goal (live data of the last cycle
 *    plus TERN_GC% of it and of the roots) chosen so that marking ends
 *    near the goal; or
 *    the program calls tern_collect().  The collector thread (collect.c)
 *    wakes; the program keeps running.
 *
 * 2. Finish sweeping.  Every span the last cycle left unswept is swept now,
 *    concurrently with the program, so that mark bits are all clear and
 *    sweeping never overlaps marking (sweep.c).
 *
 * 3. Arm the barrier.  From now on every write to a heap page is recorded
 *    (barrier.c) — before any object is scanned, so that no write to a
 *    scanned object can go unseen.
 *
 * 4. Start pause.  The world stops (thread.c); allocation turns black (an
 *    object allocated from now on is born marked: a thread cache marks
 *    each word of free slots it loads as a whole, and a thread is never
 *    stopped between testing that and setting the bits, alloc.c); no mark
 *    bit is set yet (the checkmark mode checks); the roots — stacks,
 *    registers, static data, TLS, added ranges — are scanned, which only
 *    marks and queues the objects they point to.  The world restarts.
 *
 * 5. Concurrent mark.  Background markers (a quarter of the cores, at
 *    least one; TERN_MARKERS sets the count) drain the queues while the
 *    program runs.  A thread that allocates past the heap goal while the
 *    markers are behind assists: it marks in proportion to what it
 *    allocates, so the heap cannot outrun the marker.
 *
 * 6. Pre-clean.  The barrier reports the pages written since it was armed
 *    (or since the last round) and records afresh; every marked object on
 *    those pages is scanned again, and the queues drained.  Rounds repeat
 *    while they keep finding much, so that little is left for the pause.
 *    Rounds that do not shrink make every allocating thread assist, and
 *    an assist with nothing to do yet waits for work (bounded), so the
 *    program cannot write pages faster than the rounds clean them.
 *
 * 7. Final pause.  The world stops again.  The objects waiting on the
 *    threads' free lists are marked, not scanned (alloc.c: the program
 *    freed them, no sweep may).  The last written pages are
 *    rescanned, the roots are scanned again, and the queues are drained
 *    with every marker (the world is stopped, so all cores mark).  Nothing
 *    is grey any more: marking is complete.  TERN_DEBUG=checkmark now marks
 *    again from scratch with one marker and aborts on any object the
 *    concurrent mark missed.
 *
 * 8. Mark termination, still in the pause.  Each thread cache's handed-out
 *    slots enter the alloc bitmaps; the heap's sweep generation moves on by
 *    two, which makes every in-use span "needs sweeping" at once; the pacer
 *    sets the next goal and trigger.  The world restarts, then the barrier
 *    is disarmed and the central lists are moved to the unswept lists.
 *
 * 9. Sweep, lazily.  Nothing is swept in a pause.  A span is swept when an
 *    allocator next needs a span of its class, when its owning cache moves
 *    on, or at the latest in step 2 of the next cycle.
 *
 * THE TRI-COLOR INVARIANT.  White objects are unmarked; grey ones are
 * marked and queued; black ones are marked and scanned.  At the end of
 * marking no black object may point to a white one (the strong invariant),
 * or a live object would be swept.  While marking runs, the program breaks
 * it freely, and Tern keeps a weaker one instead, the incremental-update
 * form used by mostly-concurrent collectors:
 *
 *     a black object points to a white one only if a page or card holding
 *     the black object has been recorded as written since it was scanned,
 *     or the white object is also reachable from a grey one or a root.
 *
 * Every barrier kind keeps it the same way: it records, at page or card
 * granularity, every write made after it was armed, and arming precedes
 * the first scan.  A write into a black object dirties its page; the
 * pre-clean and final rescans of dirty pages make the object grey again.
 * Roots (stacks, registers, statics, TLS) are not barriered: the final
 * pause scans them all again, with the world stopped.  Objects allocated
 * during marking are black and never scanned — their pages were armed, so
 * whatever the program writes into them is rescanned in turn.  In the
 * final pause, the dirty pages and roots are the only places a black-to-
 * white edge can hide, and both are rescanned with the world stopped,
 * restoring the strong invariant before the sweep.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PACKET 512                /* entries (pointer, length) in a packet */
#define SCAN_PIECE (128u << 10)   /* large objects are scanned in pieces   */
#define MAX_MARKERS 64
#define ASSIST_FIRST 48           /* markers[48..63] belong to assists      */
#define MAX_HELPERS ASSIST_FIRST

#define MSTACK_RESERVE 64       /* entries used when no stack can be mapped */
struct mstack {
    uintptr_t *v; /* pairs: base, length */
    size_t n, cap;
    uintptr_t reserve[2 * MSTACK_RESERVE];
};

struct packet {
    struct packet *next;
    size_t n;
    uintptr_t v[2 * PACKET];
};

struct marker {
    struct mstack st;
    uint64_t marked;
    uint64_t cpu_ns;
    pthread_t thread;
    uint64_t seen; /* last round this marker took part in */
};

static struct marker markers[MAX_MARKERS];
static unsigned nhelpers; /* marker threads running besides the collector */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work;      /* packets arrived, or marking is done   */
    pthread_cond_t start;     /* a new marking round begins            */
    pthread_cond_t finished;  /* a helper left the round               */
    struct packet *full, *empty;
    _Atomic int waiting;      /* markers waiting for packets           */
    unsigned idle, active;
    bool done;
    uint64_t round;
    unsigned left;            /* helpers still inside the round        */
    void (*first)(struct marker *m, unsigned part, unsigned nparts); /* run before draining */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
          .start = PTHREAD_COND_INITIALIZER, .finished = PTHREAD_COND_INITIALIZER};

_Atomic uint64_t tern_marked_bytes;
static bool single_marker; /* one marker, world stopped: plain mark-bit updates */
static unsigned pause_n = 1; /* markers of the pause now running (finalize.c drains) */
static _Atomic int assist_hungry; /* an assist found the pool empty */
static _Atomic int overflowed;

/* ---- mark stacks ---------------------------------------------------------- */

static bool mstack_grow(struct mstack *st) {
    size_t ncap = st->cap > MSTACK_RESERVE ? st->cap * 2 : 1u << 16;
    uintptr_t *nv = tern_os_map_meta(ncap * 2 * sizeof(uintptr_t));
    if (!nv) {
        /* No memory even for a first stack: mark with the small reserve
         * (overflowed spans are rescanned), rather than not at all. */
        if (st->cap) return false;
        st->v = st->reserve;
        st->cap = MSTACK_RESERVE;
        return true;
    }
    if (st->v) {
        memcpy(nv, st->v, st->n * 2 * sizeof(uintptr_t));
        if (st->v != st->reserve) tern_os_unmap_meta(st->v, st->cap * 2 * sizeof(uintptr_t));
    }
    st->v = nv;
    st->cap = ncap;
    return true;
}

static inline void push(struct marker *m, struct span *s, uintptr_t base, uintptr_t len) {
    struct mstack *st = &m->st;
    if (unlikely(st->n == st->cap) && !mstack_grow(st)) {
        /* Out of memory for the mark stack: remember the span and rescan
         * its marked objects once the stacks are empty. */
        atomic_store(&s->rescan, 1);
        atomic_store(&overflowed, 1);
        return;
    }
    st->v[2 * st->n] = base;
    st->v[2 * st->n + 1] = len;
    st->n++;
}

/* ---- the heart: is this word a pointer to an unmarked object? --------------- */

/* Mark the object of span s that w points into, if it is white.  True if
 * it was (callers in the hot loop ignore it). */
static inline __attribute__((always_inline)) bool mark_in_span(struct marker *m, struct span *s, uintptr_t w) {
    unsigned st = atomic_load_explicit(&s->state, memory_order_acquire);
    if (st == SPAN_FREE) return false;
    uintptr_t off = w - s->base;
    if (off >= s->limit) return false;
    size_t i = span_slot(s, off);
    uint64_t bit = 1ull << (i % 64);
    _Atomic uint64_t *mw = &s->mark[i / 64];
    if (atomic_load_explicit(mw, memory_order_relaxed) & bit) return false;
    if (atomic_load_explicit(&s->nfree_hint, memory_order_relaxed) &&
        (atomic_load_explicit(&s->freed[i / 64], memory_order_relaxed) & bit))
        return false;
    if (s->spanclass && !slot_allocated(s, i)) return false;
    if (single_marker) atomic_store_explicit(mw, atomic_load_explicit(mw, memory_order_relaxed) | bit, memory_order_relaxed);
    else if (atomic_fetch_or_explicit(mw, bit, memory_order_relaxed) & bit) return false;
    uintptr_t size = span_obj_size(s);
    m->marked += size;
    if (!s->noscan) push(m, s, (s->base + i * s->elemsize) | s->typed, size); /* tag: typed.c */
    return true;
}

static inline __attribute__((always_inline)) bool mark_word(struct marker *m, uintptr_t w, uintptr_t lo,
                                                           uintptr_t len) {
    struct span *s = span_lookup(w, lo, len);
    return s && mark_in_span(m, s, w);
}

/* Scanning a range, consecutive words mostly point into one span (a tree's
 * nodes, a list's cells, an array's elements were allocated side by side),
 * so scan_range remembers the last span found and the address range it
 * covered, and skips the chunk map and page map when the next word falls
 * in it (GCBench: mark CPU per cycle 6.15 -> 5.42 ms).  The span's fields are
 * read afresh for every word, as a lookup would: if the span was freed and
 * its pages reused meanwhile, the memory holds only objects allocated
 * during marking, which are born marked, and the fresh state, base and
 * limit reject the word or find its slot as a lookup would. */
struct last_span {
    uintptr_t lo, len;
    struct span *s;
};

static void scan_range(struct marker *m, uintptr_t lo, uintptr_t hi) {
    uintptr_t hlo = atomic_load_explicit(&tern_heap.lo, memory_order_relaxed);
    uintptr_t hspan = atomic_load_explicit(&tern_heap.hi, memory_order_relaxed) - hlo;
    struct last_span ls = {0, 0, NULL};
    lo = ALIGN_UP(lo, sizeof(uintptr_t));
    for (uintptr_t p = lo; p + sizeof(uintptr_t) <= hi; p += sizeof(uintptr_t)) {
        uintptr_t w = *(volatile uintptr_t *)p;
        if (w - ls.lo < ls.len) {
            mark_in_span(m, ls.s, w);
            continue;
        }
        struct span *s = span_lookup(w, hlo, hspan);
        if (!s) continue;
        ls.s = s;
        ls.lo = s->base;
        ls.len = s->limit;
        mark_in_span(m, s, w);
    }
}

/* A typed span (typed.c): scan only the words of [lo, lo + len) whose bit
 * is set in the span's layout.  The range may cover several objects. */
static __attribute__((noinline)) void scan_typed(struct marker *m, uintptr_t lo, uintptr_t len) {
    uintptr_t hlo = atomic_load_explicit(&tern_heap.lo, memory_order_relaxed);
    uintptr_t hspan = atomic_load_explicit(&tern_heap.hi, memory_order_relaxed) - hlo;
    struct span *s = span_lookup(lo, hlo, hspan);
    if (!s || !s->descr) return;
    const struct typed_descr *d = s->descr;
    uintptr_t hi = lo + len;
    for (uintptr_t p = ALIGN_UP(lo, sizeof(uintptr_t)); p + sizeof(uintptr_t) <= hi; p += sizeof(uintptr_t)) {
        uintptr_t off = p - s->base;
        size_t w = (off - span_slot(s, off) * s->elemsize) / sizeof(uintptr_t);
        if (w < d->nwords && ((d->bits[w / 64] >> (w % 64)) & 1))
            mark_word(m, *(volatile uintptr_t *)p, hlo, hspan);
    }
}

/* One mark-stack entry: (base, length), or one of two tagged kinds:
 *   base | ENTRY_TYPED    a range of a typed span (scan its descr's words);
 *   page | ENTRY_SHADOW   a written page of a large object to compare with
 *                         its shadow copy; the length word holds the copy's
 *                         address, | 1 when the copy is still to be made. */
#define ENTRY_TYPED 1u
#define ENTRY_SHADOW 2u
#define SHADOW_PAGE 4096u /* a shadowed page (shadows: below) */
static void rescan_page(struct marker *m, uintptr_t page, uintptr_t copy);

static inline void scan_entry(struct marker *m, uintptr_t b, uintptr_t l) {
    if (likely(!(b & (ENTRY_TYPED | ENTRY_SHADOW)))) scan_range(m, b, b + l);
    else if (b & ENTRY_TYPED) scan_typed(m, b & ~(uintptr_t)ENTRY_TYPED, l);
    else rescan_page(m, b & ~(uintptr_t)ENTRY_SHADOW, l);
}

/* The bytes an entry stands for (an assist's budget counts them). */
static inline uintptr_t entry_bytes(uintptr_t b, uintptr_t l) { return b & ENTRY_SHADOW ? SHADOW_PAGE : l; }

/* ---- work sharing ---------------------------------------------------------- */

static struct packet *packet_get_empty(void) {
    struct packet *p = pool.empty;
    if (p) pool.empty = p->next;
    else p = tern_os_map_meta(sizeof *p);
    return p;
}

/* Move the oldest half of m's stack (at most PACKET entries) to the
 * shared pool, where an idle marker takes it. */
static void donate(struct marker *m) {
    size_t k = m->st.n / 2 < PACKET ? m->st.n / 2 : PACKET;
    pthread_mutex_lock(&pool.lock);
    struct packet *p = packet_get_empty();
    if (p) {
        p->n = k;
        memcpy(p->v, m->st.v, sizeof(uintptr_t) * 2 * k);
        memmove(m->st.v, m->st.v + 2 * k, sizeof(uintptr_t) * 2 * (m->st.n - k));
        m->st.n -= k;
        p->next = pool.full;
        pool.full = p;
        pthread_cond_signal(&pool.work);
    }
    pthread_mutex_unlock(&pool.lock);
}

static void take(struct marker *m, struct packet *p) {
    while (m->st.cap - m->st.n < p->n)
        if (!mstack_grow(&m->st)) break;
    size_t k = p->n < m->st.cap - m->st.n ? p->n : m->st.cap - m->st.n;
    memcpy(m->st.v + 2 * m->st.n, p->v, sizeof(uintptr_t) * 2 * k);
    m->st.n += k;
    if (k < p->n) { /* could not grow: keep the rest for someone else */
        memmove(p->v, p->v + 2 * k, sizeof(uintptr_t) * 2 * (p->n - k));
        p->n -= k;
        p->next = pool.full;
        pool.full = p;
        return;
    }
    p->next = pool.empty;
    pool.empty = p;
}

/* Pop the next piece of work: large objects are scanned SCAN_PIECE at a
 * time, the rest left on the stack where other markers can get it. */
static inline bool pop(struct marker *m, uintptr_t *base, uintptr_t *len) {
    if (!m->st.n) return false;
    m->st.n--;
    *base = m->st.v[2 * m->st.n];
    *len = m->st.v[2 * m->st.n + 1];
    if (*len > SCAN_PIECE && !(*base & ENTRY_SHADOW)) {
        m->st.v[2 * m->st.n] = *base + SCAN_PIECE;
        m->st.v[2 * m->st.n + 1] = *len - SCAN_PIECE;
        m->st.n++;
        *len = SCAN_PIECE;
    }
    return true;
}

/* Drain until every marker is idle and the pool is empty.  Objects popped
 * from the stack wait in a small FIFO after a prefetch, so that several
 * cache misses are in flight while one object is scanned. */
#define PREFETCH_DEPTH 8
static void drain(struct marker *m) {
    uint64_t cpu0 = tern_thread_cpu_ns();
    unsigned tick = 0;
    uintptr_t qb[PREFETCH_DEPTH], ql[PREFETCH_DEPTH];
    unsigned qh = 0, qn = 0;
    for (;;) {
        for (;;) {
            while (qn < PREFETCH_DEPTH) {
                uintptr_t b, l;
                if (!pop(m, &b, &l)) break;
                __builtin_prefetch((void *)b);
                unsigned t = (qh + qn++) % PREFETCH_DEPTH;
                qb[t] = b;
                ql[t] = l;
            }
            if (!qn) break;
            uintptr_t b = qb[qh], l = ql[qh];
            qh = (qh + 1) % PREFETCH_DEPTH;
            qn--;
            scan_entry(m, b, l);
            if ((++tick & 15) == 0 && m->st.n > 64 &&
                (atomic_load_explicit(&pool.waiting, memory_order_relaxed) ||
                 atomic_load_explicit(&assist_hungry, memory_order_relaxed))) {
                atomic_store_explicit(&assist_hungry, 0, memory_order_relaxed);
                donate(m);
            }
        }
        pthread_mutex_lock(&pool.lock);
        if (pool.full) {
            struct packet *p = pool.full;
            pool.full = p->next;
            take(m, p);
            pthread_mutex_unlock(&pool.lock);
            continue;
        }
        pool.idle++;
        if (pool.idle == pool.active) {
            pool.done = true;
            pthread_cond_broadcast(&pool.work);
        }
        atomic_fetch_add(&pool.waiting, 1);
        while (!pool.full && !pool.done) pthread_cond_wait(&pool.work, &pool.lock);
        atomic_fetch_sub(&pool.waiting, 1);
        if (pool.done) {
            pthread_mutex_unlock(&pool.lock);
            break;
        }
        pool.idle--;
        struct packet *p = pool.full;
        pool.full = p->next;
        take(m, p);
        pthread_mutex_unlock(&pool.lock);
    }
    m->cpu_ns += tern_thread_cpu_ns() - cpu0;
}

/* ---- marker threads ---------------------------------------------------------- */

/* A round's first job (pool.first), run by every marker of the round on its
 * own part before it drains. */
static void run_first(void (*first)(struct marker *, unsigned, unsigned), struct marker *m, unsigned part,
                      unsigned nparts) {
    uint64_t cpu0 = tern_thread_cpu_ns();
    first(m, part, nparts);
    m->cpu_ns += tern_thread_cpu_ns() - cpu0;
}

static void *marker_main(void *arg) {
    struct marker *m = arg;
    /* Marker threads are not registered and never stopped; they take no
     * signals at all (the stop signal included: the C library's own
     * pthread_sigmask, not Tern's filtering one). */
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV); /* faults must reach their handlers */
    sigdelset(&all, SIGBUS);
    int (*mask)(int, const sigset_t *, sigset_t *) = tern_real_sigmask();
    if (mask) mask(SIG_BLOCK, &all, NULL);
    tern_roots_collector_thread();
    for (;;) {
        pthread_mutex_lock(&pool.lock);
        while (pool.round == m->seen) pthread_cond_wait(&pool.start, &pool.lock);
        m->seen = pool.round;
        if ((size_t)(m - markers) >= pool.active) { /* not needed this round */
            pthread_mutex_unlock(&pool.lock);
            continue;
        }
        void (*first)(struct marker *, unsigned, unsigned) = pool.first;
        unsigned part = (unsigned)(m - markers), nparts = pool.active;
        pthread_mutex_unlock(&pool.lock);
        if (first) run_first(first, m, part, nparts);
        drain(m);
        pthread_mutex_lock(&pool.lock);
        pool.left--;
        pthread_cond_signal(&pool.finished);
        pthread_mutex_unlock(&pool.lock);
    }
    return NULL;
}

/* Start marker threads up to want-1 helpers; a thread that cannot start
 * means fewer markers, not an error. */
static unsigned ensure_helpers(unsigned want) {
    if (want > MAX_HELPERS) want = MAX_HELPERS;
    while (nhelpers + 1 < want) {
        struct marker *m = &markers[nhelpers + 1];
        m->seen = pool.round; /* join from the next round on */
        if (tern_real_pthread_create(&m->thread, NULL, marker_main, m) != 0) break;
        nhelpers++;
    }
    return nhelpers + 1;
}

/* Start marker threads, with the world running: creating a thread
 * allocates and takes C library locks that a stopped thread may hold. */
void tern_mark_prepare(unsigned want) { ensure_helpers(want); }

static unsigned usable_markers(unsigned want) {
    return want < nhelpers + 1 ? (want ? want : 1) : nhelpers + 1;
}

/* Run one parallel drain round with n markers (the caller is marker 0). */
static void parallel_drain(unsigned n) {
    pthread_mutex_lock(&pool.lock);
    pool.active = n;
    pool.idle = 0;
    pool.done = false;
    pool.left = n - 1;
    atomic_store(&pool.waiting, 0);
    pool.round++;
    void (*first)(struct marker *, unsigned, unsigned) = pool.first;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.lock);
    if (first) run_first(first, &markers[0], 0, n);
    /* Spread the root work: helpers start with empty stacks and take
     * packets donated here. */
    while (n > 1 && markers[0].st.n > 64) {
        donate(&markers[0]);
        pthread_mutex_lock(&pool.lock);
        unsigned packets = 0;
        for (struct packet *p = pool.full; p; p = p->next) packets++;
        pthread_mutex_unlock(&pool.lock);
        if (packets >= n - 1) break;
    }
    drain(&markers[0]);
    pthread_mutex_lock(&pool.lock);
    while (pool.left) pthread_cond_wait(&pool.finished, &pool.lock);
    pool.first = NULL; /* every helper of the round has read it */
    pthread_mutex_unlock(&pool.lock);
}

static void scan_root(uintptr_t lo, uintptr_t hi, void *arg) { scan_range(arg, lo, hi); }

/* Rescan spans whose objects could not be pushed. */
/* With a full stack, scan from it until there is room again: a stack that
 * cannot grow then still makes progress (each rescan scans every object it
 * pushes) instead of overflowing on the same objects for ever. */
static void rescan_overflowed(struct marker *m) {
    uintptr_t b, l;
    for (struct chunk *c = tern_heap.chunks; c; c = c->next) {
        struct span *s;
        for (size_t p = c->meta_pages; (s = chunk_next_span(c, &p));) {
            if (!atomic_exchange(&s->rescan, 0)) continue;
            for (size_t i = 0; i < s->nelems; i++)
                if (bit_test(s->mark, i)) {
                    uintptr_t size = span_obj_size(s);
                    while (m->st.n == m->st.cap && pop(m, &b, &l)) scan_entry(m, b, l);
                    push(m, s, (s->base + i * s->elemsize) | s->typed, size);
                }
        }
    }
}

/* Drain m's stack alone, without the shared pool (the checkmark re-mark). */
static void drain_alone(struct marker *m) {
    uintptr_t b, l;
    while (pop(m, &b, &l)) scan_entry(m, b, l);
}

/* What the checkmark report names for each missed object: a root word or
 * a reachable object that points into it (found only when a check fails). */
#define CM_MISSED_MAX 20
static struct { uintptr_t lo, hi; unsigned found; } cm_missed[CM_MISSED_MAX];
static size_t cm_n;

/* The word w at address at points into a missed object?  parent: the
 * object holding it (size psize), or 0 for a root word. */
static void cm_report_word(uintptr_t at, uintptr_t w, uintptr_t parent, size_t psize) {
    for (size_t j = 0; j < cm_n; j++) {
        if (w < cm_missed[j].lo || w >= cm_missed[j].hi || cm_missed[j].found >= 3) continue;
        cm_missed[j].found++;
        if (parent)
            tern_log("tern: checkmark:   %p is referenced from offset %zu of object %p (%zu bytes)\n",
                     (void *)cm_missed[j].lo, (size_t)(at - parent), (void *)parent, psize);
        else
            tern_log("tern: checkmark:   %p is referenced from root word %p (a stack, register, static or TLS range)\n",
                     (void *)cm_missed[j].lo, (void *)at);
    }
}

static void cm_scan_root(uintptr_t lo, uintptr_t hi, void *arg) {
    (void)arg;
    for (uintptr_t p = ALIGN_UP(lo, sizeof(uintptr_t)); p + sizeof(uintptr_t) <= hi; p += sizeof(uintptr_t))
        cm_report_word(p, *(volatile uintptr_t *)p, 0, 0);
}

/* Name the roots and the reachable (marked) objects that point into each
 * missed object, up to three each. */
static void cm_find_referrers(void) {
    tern_roots_scan(cm_scan_root, NULL);
    for (struct chunk *c = tern_heap.chunks; c; c = c->next) {
        struct span *s;
        for (size_t p = c->meta_pages; (s = chunk_next_span(c, &p));) {
            if (atomic_load(&s->state) == SPAN_FREE || s->noscan) continue;
            size_t size = span_obj_size(s);
            for (size_t i = 0; i < s->nelems; i++) { /* a large span: one slot, elemsize 0 */
                if (!((atomic_load(&s->mark[i / 64]) >> (i % 64)) & 1)) continue;
                uintptr_t o = s->base + i * s->elemsize;
                for (uintptr_t q = o; q + sizeof(uintptr_t) <= o + size; q += sizeof(uintptr_t))
                    cm_report_word(q, *(uintptr_t *)q, o, size);
            }
        }
    }
}

/* TERN_DEBUG=checkmark: after the parallel mark, mark again from scratch
 * with one marker, and fail loudly if that reaches an object the parallel
 * mark left unmarked: its address and size, and the roots and reachable
 * objects that point into it.  The marks are then the union of both. */
static void checkmark(void) {
    size_t words = 0;
    for (struct chunk *c = tern_heap.chunks; c; c = c->next) {
        struct span *s;
        for (size_t p = c->meta_pages; (s = chunk_next_span(c, &p));)
            if (atomic_load(&s->state) != SPAN_FREE) words += s->nwords;
    }
    uint64_t *saved = tern_os_map_meta(words * 8 + 8);
    if (!saved) {
        tern_log("tern: checkmark: no memory for the check, skipped\n");
        return;
    }
    size_t k = 0;
    for (struct chunk *c = tern_heap.chunks; c; c = c->next) {
        struct span *s;
        for (size_t p = c->meta_pages; (s = chunk_next_span(c, &p));)
            if (atomic_load(&s->state) != SPAN_FREE)
                for (unsigned w = 0; w < s->nwords; w++) saved[k++] = atomic_exchange(&s->mark[w], 0);
    }
    /* Objects on the threads' free lists are freed as far as the program
     * knows: marked, never scanned, as in the cycle (alloc.c).  The check
     * would otherwise follow a stale pointer into one and trace what it
     * held before it was freed. */
    tern_mark_free_lists();
    bool was_single = single_marker;
    single_marker = true;
    uint64_t marked = markers[0].marked;
    tern_roots_scan(scan_root, &markers[0]);
    drain_alone(&markers[0]);
    markers[0].marked = marked;
    single_marker = was_single;
    size_t missed = 0;
    cm_n = 0;
    k = 0;
    for (struct chunk *c = tern_heap.chunks; c; c = c->next) {
        struct span *s;
        for (size_t p = c->meta_pages; (s = chunk_next_span(c, &p));) {
            if (atomic_load(&s->state) == SPAN_FREE) continue;
            for (unsigned w = 0; w < s->nwords; w++, k++) {
                uint64_t now = atomic_load(&s->mark[w]), miss = now & ~saved[k];
                for (; miss; miss &= miss - 1) {
                    size_t i = w * 64 + (size_t)__builtin_ctzll(miss);
                    uintptr_t o = s->base + i * s->elemsize;
                    size_t size = span_obj_size(s);
                    if (missed++ < CM_MISSED_MAX) {
                        tern_log("tern: checkmark: object %p (%zu bytes) is reachable but was not marked\n", (void *)o, size);
                        cm_missed[cm_n].lo = o, cm_missed[cm_n].hi = o + size, cm_missed[cm_n].found = 0;
                        cm_n++;
                    }
                }
                atomic_store(&s->mark[w], now | saved[k]);
            }
        }
    }
    tern_os_unmap_meta(saved, words * 8 + 8);
    if (missed) {
        cm_find_referrers();
        for (size_t j = 0; j < cm_n; j++)
            if (!cm_missed[j].found)
                tern_log("tern: checkmark:   %p: no root word or marked object points into it now\n", (void *)cm_missed[j].lo);
        tern_log("tern: checkmark: %zu reachable objects missed by the mark; aborting\n", missed);
        abort();
    }
}

/* TERN_DEBUG=checkmark, start pause: every span was swept, so no mark
 * bit may be set yet.  A bit set now would make the cycle take its
 * object for scanned and never trace what the object points to (a
 * black allocation landing after a sweep was such a bug, alloc.c). */
static void checkmark_clean_start(void) {
    size_t stale = 0;
    for (struct chunk *c = tern_heap.chunks; c; c = c->next) {
        struct span *s;
        for (size_t p = c->meta_pages; (s = chunk_next_span(c, &p));) {
            if (atomic_load(&s->state) == SPAN_FREE) continue;
            for (unsigned w = 0; w < s->nwords; w++)
                for (uint64_t m = atomic_load(&s->mark[w]); m; m &= m - 1) {
                    size_t i = w * 64 + (size_t)__builtin_ctzll(m);
                    if (stale++ < CM_MISSED_MAX)
                        tern_log("tern: checkmark: object %p (%zu bytes) is marked before marking began\n",
                                 (void *)(s->base + i * s->elemsize), span_obj_size(s));
                }
        }
    }
    if (stale) {
        tern_log("tern: checkmark: %zu stale mark bits at the start of a cycle; aborting\n", stale);
        abort();
    }
}

static void reset_markers(void) {
    for (unsigned i = 0; i < MAX_MARKERS; i++) markers[i].marked = markers[i].cpu_ns = 0;
}

/* Sum the markers' figures into the cycle's; returns the CPU time of all
 * markers but the collecting thread's own. */
static uint64_t account(unsigned n) {
    uint64_t marked = 0, cpu = 0;
    for (unsigned i = 0; i < MAX_MARKERS; i++) marked += markers[i].marked, cpu += markers[i].cpu_ns;
    atomic_store(&tern_marked_bytes, marked);
    atomic_fetch_add(&tern_stats_g.mark_cpu_ns, cpu);
    atomic_store(&tern_stats_g.markers, n);
    return cpu - markers[0].cpu_ns;
}

/* Drain with n markers until no work is left anywhere, overflowed spans
 * included. */
static void drain_all(unsigned n) {
    for (;;) {
        parallel_drain(n);
        if (atomic_exchange(&overflowed, 0)) {
            rescan_overflowed(&markers[0]);
            continue;
        }
        pthread_mutex_lock(&pool.lock);
        bool more = pool.full != NULL;
        pthread_mutex_unlock(&pool.lock);
        if (!more && !markers[0].st.n) return;
    }
}

/* TERN_BARRIER=stw.  World stopped: mark everything reachable from the
 * roots.  Returns the CPU time the helper markers spent. */
uint64_t tern_mark_roots_and_drain(unsigned want) {
    unsigned n = usable_markers(want);
    single_marker = n == 1;
    reset_markers();
    uint64_t cpu0 = tern_thread_cpu_ns();
    tern_roots_scan(scan_root, &markers[0]);
    markers[0].cpu_ns += tern_thread_cpu_ns() - cpu0;
    drain_all(n);
    pause_n = n;
    tern_finalize_pause(); /* finalize.c: ephemerons, weak links, finalizers */
    if (tern_cfg.checkmark) checkmark();
    return account(n);
}

/* ---- for finalize.c, in the pause after the final drain ------------------------ */

int tern_mark_state(uintptr_t p) {
    struct span *s = span_of(p);
    if (!s || atomic_load(&s->state) == SPAN_FREE) return -1;
    uintptr_t off = p - s->base;
    if (off >= s->limit) return -1;
    size_t i = span_slot(s, off);
    /* Dead: freed and not yet swept, or a free slot.  mark_word never
     * marks either, so calling one white would make a caller that marks
     * until nothing white is left (the ephemeron fixpoint) loop for ever
     * inside the pause, as test_finalize's all_features_threads did under
     * TERN_BARRIER=stw (3 hangs in 40 runs, three loops at once). */
    if (bit_test(s->freed, i) || (s->spanclass && !slot_allocated(s, i))) return 2;
    return bit_test(s->mark, i);
}

bool tern_mark_value(uintptr_t v) {
    uintptr_t hlo = atomic_load(&tern_heap.lo), hspan = atomic_load(&tern_heap.hi) - hlo;
    return mark_word(&markers[0], v, hlo, hspan);
}

void tern_mark_contents(uintptr_t p) {
    struct span *s = span_of(p);
    if (!s || atomic_load(&s->state) == SPAN_FREE || s->noscan) return;
    uintptr_t off = p - s->base;
    if (off >= s->limit) return;
    size_t i = span_slot(s, off);
    push(&markers[0], s, (s->base + i * s->elemsize) | s->typed, span_obj_size(s));
}

void tern_mark_drain_pause(void) { drain_all(pause_n); }

/* ---- the explicit barrier: shading (TERN_BARRIER=explicit) -------------------

 * A store of a pointer to a white object records the pointer in the
 * storing thread's shade buffer; the collector marks what the buffers hold
 * in the pre-cleaning rounds and, for the buffers of stopped threads and
 * the value each thread is shading right now, in the final pause.  The
 * program never writes a mark bit: a thread stopped anywhere in the
 * barrier leaves at worst a value recorded twice, or recorded late in a
 * buffer the next cycle's start pause empties — and every recorded value
 * is checked by mark_word like any conservative root, so a stale one costs
 * nothing but a lookup. */
#define SHADE_CAP 1022
struct shade_buf {
    struct shade_buf *next;
    _Atomic size_t n;
    uintptr_t v[SHADE_CAP];
};
static struct shade_buf *_Atomic shade_full, *_Atomic shade_free;
static pthread_mutex_t shade_orphan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shade_buf *shade_orphan; /* for threads Tern does not know */

static void shade_list_push(struct shade_buf *_Atomic *list, struct shade_buf *b) {
    struct shade_buf *h = atomic_load(list);
    do b->next = h;
    while (!atomic_compare_exchange_weak(list, &h, b));
}

static struct shade_buf *shade_buf_get(void) {
    struct shade_buf *b = atomic_exchange(&shade_free, NULL);
    if (b) {
        for (struct shade_buf *r = b->next, *nx; r; r = nx) {
            nx = r->next;
            shade_list_push(&shade_free, r);
        }
    } else {
        b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED) return NULL;
    }
    b->next = NULL;
    atomic_store(&b->n, 0);
    return b;
}

/* Could w point to an object not marked yet? */
static inline bool maybe_white(uintptr_t w) {
    struct span *s = span_of(w);
    if (!s || atomic_load_explicit(&s->state, memory_order_acquire) == SPAN_FREE) return false;
    uintptr_t off = w - s->base;
    if (off >= s->limit) return false;
    size_t i = span_slot(s, off);
    return !((atomic_load_explicit(&s->mark[i / 64], memory_order_relaxed) >> (i % 64)) & 1);
}

static void shade_record(struct shade_buf *_Atomic *slot, uintptr_t w) {
    struct shade_buf *b = atomic_load_explicit(slot, memory_order_relaxed);
    if (!b || atomic_load_explicit(&b->n, memory_order_relaxed) == SHADE_CAP) {
        struct shade_buf *nb = shade_buf_get();
        if (!nb) { /* no memory: the span is rescanned instead */
            struct span *s = span_of(w);
            if (s) atomic_store(&s->rescan, 1);
            atomic_store(&overflowed, 1);
            return;
        }
        if (b) shade_list_push(&shade_full, b);
        atomic_store(slot, nb);
        b = nb;
    }
    size_t n = atomic_load_explicit(&b->n, memory_order_relaxed);
    b->v[n] = w;
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&b->n, n + 1, memory_order_relaxed);
}

static void shade_words(uintptr_t lo, uintptr_t hi) {
    struct thread *t = tern_thread_self();
    if (t) {
        for (uintptr_t p = ALIGN_UP(lo, sizeof(uintptr_t)); p + sizeof(uintptr_t) <= hi; p += sizeof(uintptr_t)) {
            uintptr_t w = *(volatile uintptr_t *)p;
            if (maybe_white(w)) shade_record(&t->shade, w);
        }
        return;
    }
    pthread_mutex_lock(&shade_orphan_lock);
    for (uintptr_t p = ALIGN_UP(lo, sizeof(uintptr_t)); p + sizeof(uintptr_t) <= hi; p += sizeof(uintptr_t)) {
        uintptr_t w = *(volatile uintptr_t *)p;
        if (maybe_white(w)) shade_record((struct shade_buf *_Atomic *)&shade_orphan, w);
    }
    pthread_mutex_unlock(&shade_orphan_lock);
}

void tern_mark_shade(void *value) {
    uintptr_t w = (uintptr_t)value;
    if (!maybe_white(w)) return;
    struct thread *t = tern_thread_self();
    if (!t) {
        shade_words((uintptr_t)&w, (uintptr_t)&w + sizeof w);
        return;
    }
    atomic_store_explicit(&t->shade_val, w, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    shade_record(&t->shade, w);
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&t->shade_val, 0, memory_order_relaxed);
}

void tern_mark_shade_range(uintptr_t lo, uintptr_t hi) {
    struct thread *t = tern_thread_self();
    if (t) {
        atomic_store_explicit(&t->shade_lo, lo, memory_order_relaxed);
        atomic_store_explicit(&t->shade_hi, hi, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst);
    }
    shade_words(lo, hi);
    if (t) {
        atomic_signal_fence(memory_order_seq_cst);
        atomic_store_explicit(&t->shade_hi, 0, memory_order_relaxed);
    }
}

static void mark_values(struct marker *m, const uintptr_t *v, size_t n) {
    uintptr_t hlo = atomic_load(&tern_heap.lo), hspan = atomic_load(&tern_heap.hi) - hlo;
    for (size_t i = 0; i < n; i++) mark_word(m, v[i], hlo, hspan);
}

/* Collector: mark what full shade buffers hold (world running or stopped). */
static size_t shade_take_full(struct marker *m) {
    size_t n = 0;
    for (struct shade_buf *b = atomic_exchange(&shade_full, NULL), *nx; b; b = nx) {
        nx = b->next;
        size_t k = atomic_load(&b->n);
        if (k > SHADE_CAP) k = SHADE_CAP;
        mark_values(m, b->v, k);
        n += k;
        atomic_store(&b->n, 0);
        shade_list_push(&shade_free, b);
    }
    return n;
}

/* World stopped: each thread's buffer and what it is shading right now. */
static size_t shade_take_threads(struct marker *m, bool reset) {
    size_t n = 0;
    for (struct thread *t = tern_threads; t; t = t->next) {
        struct shade_buf *b = atomic_load(&t->shade);
        if (!reset) {
            uintptr_t v = atomic_load(&t->shade_val);
            if (v) mark_values(m, &v, 1);
            uintptr_t lo = atomic_load(&t->shade_lo), hi = atomic_load(&t->shade_hi);
            if (hi > lo) scan_range(m, lo, hi);
            if (b) {
                size_t k = atomic_load(&b->n);
                mark_values(m, b->v, k > SHADE_CAP ? SHADE_CAP : k);
                n += k;
            }
        }
        if (b) atomic_store(&b->n, 0);
        atomic_store(&t->shade_val, 0);
        atomic_store(&t->shade_hi, 0);
    }
    if (shade_orphan) {
        if (!reset) mark_values(m, shade_orphan->v, atomic_load(&shade_orphan->n));
        atomic_store(&shade_orphan->n, 0);
    }
    return n;
}

/* A thread leaves: its buffer joins the full ones. */
void tern_mark_thread_exit(struct thread *t) {
    struct shade_buf *b = atomic_exchange(&t->shade, NULL);
    if (b) shade_list_push(&shade_full, b);
}

/* ---- the concurrent cycle (collect.c drives it) ------------------------------- */

/* Assists run only while marking is concurrent; the final pause takes the
 * write side, so no thread is ever stopped in the middle of an assist with
 * grey objects on a private stack. */
static pthread_rwlock_t assist_lock;
static pthread_once_t assist_once = PTHREAD_ONCE_INIT;
static _Atomic int assists_open;
static _Atomic uint8_t assist_busy[MAX_MARKERS - ASSIST_FIRST];
_Atomic uint64_t tern_assist_ns;
_Atomic unsigned tern_assist_factor = 2; /* scan work per byte allocated */
#define ASSIST_PARK_NS 1000000u     /* longest an assist waits for work */
#define ASSIST_PARK_STEP_NS 100000u

static void assist_init(void) {
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&assist_lock, &a);
}

/* Push m's whole stack to the shared pool. */
static void give_back(struct marker *m) {
    while (m->st.n) {
        size_t k = m->st.n < PACKET ? m->st.n : PACKET;
        pthread_mutex_lock(&pool.lock);
        struct packet *p = packet_get_empty();
        if (!p) { /* no memory for a packet: rescan the spans instead */
            pthread_mutex_unlock(&pool.lock);
            for (size_t i = 0; i < m->st.n; i++) {
                struct span *s = span_of(m->st.v[2 * i]);
                if (s) atomic_store(&s->rescan, 1);
            }
            atomic_store(&overflowed, 1);
            m->st.n = 0;
            return;
        }
        p->n = k;
        m->st.n -= k;
        memcpy(p->v, m->st.v + 2 * m->st.n, sizeof(uintptr_t) * 2 * k);
        p->next = pool.full;
        pool.full = p;
        pthread_cond_signal(&pool.work);
        pthread_mutex_unlock(&pool.lock);
    }
}

/* World stopped (start pause): scan the roots.  Marking stays concurrent
 * from here on: mark bits are set atomically. */
void tern_mark_start(void) {
    pthread_once(&assist_once, assist_init);
    single_marker = false;
    reset_markers();
    atomic_store(&overflowed, 0);
    uint64_t cpu0 = tern_thread_cpu_ns();
    if (tern_cfg.checkmark) checkmark_clean_start();
    tern_roots_scan(scan_root, &markers[0]);
    if (tern_barrier_kind == TERN_BARRIER_EXPLICIT) { /* values recorded late, after the last cycle */
        shade_take_threads(&markers[0], true);
        for (struct shade_buf *b = atomic_exchange(&shade_full, NULL), *nx; b; b = nx) {
            nx = b->next;
            atomic_store(&b->n, 0);
            shade_list_push(&shade_free, b);
        }
    }
    markers[0].cpu_ns += tern_thread_cpu_ns() - cpu0;
}

/* World running: drain with n background markers until no work is left,
 * then let assists in. */
void tern_mark_concurrent(unsigned want) {
    unsigned n = usable_markers(want);
    atomic_store(&assists_open, 1);
    drain_all(n);
}

static void dirty_range(uintptr_t lo, uintptr_t hi, void *arg);
static void shadows_drop(void);
static void shadows_freeze(void);

/* World running: one pre-cleaning round.  Returns the pages found written. */
size_t tern_mark_preclean(unsigned want) {
    uint64_t cpu0 = tern_thread_cpu_ns();
    size_t pages = tern_barrier_kind == TERN_BARRIER_EXPLICIT ? shade_take_full(&markers[0]) / 512
                                                              : tern_barrier_collect(dirty_range, &markers[0], false);
    markers[0].cpu_ns += tern_thread_cpu_ns() - cpu0;
    tern_mark_concurrent(want);
    return pages;
}

/* Before the final pause (world running): close the assists. */
void tern_mark_close_assists(void) {
    pthread_once(&assist_once, assist_init);
    atomic_store(&assists_open, 0);
    pthread_mutex_lock(&pool.lock); /* wake parked assists */
    pthread_cond_broadcast(&pool.work);
    pthread_mutex_unlock(&pool.lock);
    pthread_rwlock_wrlock(&assist_lock);
}

void tern_mark_open_assists(void) { pthread_rwlock_unlock(&assist_lock); }

/* The final pause's first job with uffd: each marker lists the written
 * pages of its slice of the heap (about 2.5 ns per 4 KiB page of heap:
 * 0.45 ms for 700 MiB on one thread).  The other kinds collect in one go. */
static _Atomic size_t final_pages;
static void collect_part(struct marker *m, unsigned part, unsigned nparts) {
    atomic_fetch_add(&final_pages, tern_barrier_collect_part(dirty_range, m, true, part, nparts));
}

/* World stopped (final pause): rescan what was written and the roots,
 * drain with every marker, check.  Returns the pages found written; *cpu
 * gets the helpers' CPU time. */
size_t tern_mark_finish(unsigned want, uint64_t *helper_cpu) {
    unsigned n = usable_markers(want);
    shadows_freeze(); /* no new copies (no mapping) inside the pause */
    uint64_t cpu0 = tern_thread_cpu_ns();
    atomic_store(&final_pages, 0);
    if (tern_barrier_kind == TERN_BARRIER_EXPLICIT)
        final_pages = (shade_take_full(&markers[0]) + shade_take_threads(&markers[0], false)) / 512;
    else if (tern_barrier_kind == TERN_BARRIER_UFFD && n > 1)
        pool.first = collect_part; /* in the first round of drain_all */
    else
        collect_part(&markers[0], 0, 1);
    tern_roots_scan(scan_root, &markers[0]);
    markers[0].cpu_ns += tern_thread_cpu_ns() - cpu0;
    single_marker = n == 1;
    drain_all(n);
    pause_n = n;
    tern_finalize_pause(); /* finalize.c: ephemerons, weak links, finalizers */
    if (tern_cfg.checkmark) checkmark();
    *helper_cpu = account(n);
    return atomic_load(&final_pages);
}

/* Pool lock held.  Pre-cleaning is not converging and the collector has
 * nothing to hand out yet (it is listing written pages): wait up to one
 * step for work, as Go parks an assist that has no credit, so the program
 * does not write faster than the collector cleans.  An assist waits at
 * most ASSIST_PARK_NS per call in all.  Returns the ns waited. */
static uint64_t assist_park(void) {
    atomic_store_explicit(&assist_hungry, 1, memory_order_relaxed);
    uint64_t w0 = tern_now_ns();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ASSIST_PARK_STEP_NS;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&pool.work, &pool.lock, &ts);
    return tern_now_ns() - w0;
}

/* Pool lock held: an assist takes ASSIST_TAKE entries of packet p (the
 * pool's first), not the whole packet.  An entry can stand for a large
 * subgraph, and an assist scans only its budget before giving the rest
 * back: holding a whole packet, the program's assists kept the bulk of the
 * marking to themselves between the background marker's drains, which
 * found the pool empty and ended (binarytrees: 5 of its 16 MiB of live
 * data marked concurrently, the other 10 MiB handed back when the assists
 * closed, 9-10 ms of marking by the collector alone every cycle while the
 * program, no longer assisting, ran into the hard limit). */
#define ASSIST_TAKE 4
static void take_few(struct marker *m, struct packet *p) {
    if (p->n <= ASSIST_TAKE || (m->st.cap - m->st.n < ASSIST_TAKE && !mstack_grow(&m->st))) {
        pool.full = p->next;
        take(m, p); /* keeps what does not fit in the pool */
        return;
    }
    p->n -= ASSIST_TAKE;
    memcpy(m->st.v + 2 * m->st.n, p->v + 2 * p->n, sizeof(uintptr_t) * 2 * ASSIST_TAKE);
    m->st.n += ASSIST_TAKE;
}

/* A mutator allocated `bytes` while marking runs and it must help: scan
 * tern_assist_factor times as much, taking work from the shared pool. */
void tern_mark_assist(uint64_t bytes) {
    if (!atomic_load_explicit(&assists_open, memory_order_relaxed)) return;
    if (pthread_rwlock_tryrdlock(&assist_lock) != 0) return;
    unsigned k;
    for (k = 0; k < MAX_MARKERS - ASSIST_FIRST; k++)
        if (!atomic_exchange(&assist_busy[k], 1)) break;
    if (k == MAX_MARKERS - ASSIST_FIRST || !atomic_load(&assists_open)) {
        if (k < MAX_MARKERS - ASSIST_FIRST) atomic_store(&assist_busy[k], 0);
        pthread_rwlock_unlock(&assist_lock);
        return;
    }
    struct marker *m = &markers[ASSIST_FIRST + k];
    uint64_t t0 = tern_now_ns(), cpu0 = tern_thread_cpu_ns(), done = 0;
    uint64_t budget = bytes * atomic_load_explicit(&tern_assist_factor, memory_order_relaxed), parked = 0;
    while (done < budget) {
        uintptr_t b, l;
        if (!pop(m, &b, &l)) {
            pthread_mutex_lock(&pool.lock);
            struct packet *p = pool.full;
            if (!p && parked < ASSIST_PARK_NS && atomic_load_explicit(&tern_assist_hard, memory_order_relaxed) &&
                atomic_load_explicit(&assists_open, memory_order_relaxed)) {
                parked += assist_park();
                pthread_mutex_unlock(&pool.lock);
                continue;
            }
            if (p) take_few(m, p);
            pthread_mutex_unlock(&pool.lock);
            if (!p) {
                atomic_store_explicit(&assist_hungry, 1, memory_order_relaxed);
                break;
            }
            continue;
        }
        scan_entry(m, b, l);
        done += entry_bytes(b, l);
    }
    give_back(m);
    m->cpu_ns += tern_thread_cpu_ns() - cpu0;
    uint64_t took = tern_now_ns() - t0;
    atomic_fetch_add(&tern_assist_ns, took);
    if (unlikely(tern_timeline_on)) tern_tl_complete("assist", t0, took);
    atomic_store(&assist_busy[k], 0);
    pthread_rwlock_unlock(&assist_lock);
}

/* ---- shadows: rescanning hot pages of large objects -------------------------
 *
 * A program that writes pointers at random across a large array (a hash
 * table, an object table) dirties its pages again during every
 * pre-cleaning round, and rescanning whole pages would never converge.  So
 * the first time a page of a large object is rescanned in a cycle, the
 * collector copies it and scans the copy; the next times, it compares the
 * page with the copy and marks only the words that changed.  Every value in
 * a copy was marked in this cycle, and marks only ever go from white to
 * black within a cycle, so skipping an unchanged word is always safe.
 * Only the collector thread touches the shadows; they are dropped at the
 * end of the cycle.  They are capped (a quarter of the heap, at most
 * 256 MiB); past the cap pages are rescanned whole. */
#define SHADOW_BLOCK (2048u * SHADOW_PAGE) /* 8 MiB: few mappings */
struct shadow_entry { uintptr_t page; uintptr_t *copy; };
static struct {
    struct shadow_entry *tab;
    size_t cap, n, max;
    char *block;          /* current block of copies              */
    size_t block_used;
    char *blocks[32];     /* every block, to unmap at cycle end   */
    size_t nblocks;
    bool frozen;          /* final pause: use copies, make none   */
} shadow;

static uintptr_t *shadow_find(uintptr_t page, bool *fresh) {
    if (!shadow.tab && shadow.frozen) return NULL;
    if (!shadow.tab) {
        size_t heap = atomic_load(&tern_heap.span_bytes);
        shadow.max = heap / 4 / SHADOW_PAGE;
        if (shadow.max > (256u << 20) / SHADOW_PAGE) shadow.max = (256u << 20) / SHADOW_PAGE;
        if (shadow.max > sizeof shadow.blocks / sizeof shadow.blocks[0] * (SHADOW_BLOCK / SHADOW_PAGE))
            shadow.max = sizeof shadow.blocks / sizeof shadow.blocks[0] * (SHADOW_BLOCK / SHADOW_PAGE);
        if (shadow.max < 64) return NULL;
        shadow.cap = 1;
        while (shadow.cap < 2 * shadow.max) shadow.cap <<= 1;
        shadow.tab = tern_os_map_meta(shadow.cap * sizeof *shadow.tab);
        if (!shadow.tab) return NULL;
    }
    size_t h = (size_t)((page / SHADOW_PAGE) * 0x9E3779B97F4A7C15ull) & (shadow.cap - 1);
    for (;; h = (h + 1) & (shadow.cap - 1)) {
        if (shadow.tab[h].page == page) {
            *fresh = false;
            return shadow.tab[h].copy;
        }
        if (!shadow.tab[h].page) break;
    }
    if (shadow.n >= shadow.max || shadow.frozen) return NULL;
    if (!shadow.block || shadow.block_used == SHADOW_BLOCK) {
        if (!(shadow.block = tern_os_map_meta(SHADOW_BLOCK))) return NULL;
        shadow.blocks[shadow.nblocks++] = shadow.block;
        shadow.block_used = 0;
    }
    uintptr_t *copy = (uintptr_t *)(shadow.block + shadow.block_used);
    shadow.block_used += SHADOW_PAGE;
    shadow.tab[h].page = page;
    shadow.tab[h].copy = copy;
    shadow.n++;
    *fresh = true;
    return copy;
}

static void shadows_freeze(void) { shadow.frozen = true; }

/* After the final pause (unmapping takes the meta-mapping lock, which a
 * stopped thread may hold). */
void tern_mark_cycle_end(void) { shadows_drop(); }

static void shadows_drop(void) {
    for (size_t i = 0; i < shadow.nblocks; i++) tern_os_unmap_meta(shadow.blocks[i], SHADOW_BLOCK);
    if (shadow.tab) tern_os_unmap_meta(shadow.tab, shadow.cap * sizeof *shadow.tab);
    memset(&shadow, 0, sizeof shadow);
}

/* Rescan [a, b) of the marked large object s, page by page.  A whole page
 * with a shadow becomes one ENTRY_SHADOW entry: whichever marker or assist
 * pops it makes the copy or compares with it, so the comparisons of one
 * round (or of the final pause) are shared out like any other marking work.
 * Except in the pre-cleaning rounds of mprotect (not yet frozen), which
 * protects each range again just before reporting it: comparing at once
 * leaves the program less time to fault on the page again before it is
 * read (deferred, the pause workload's final pause grew from about 300 to
 * 6000 pages); uffd protects the whole heap in one call before reporting
 * anything, so deferring costs it nothing.
 * A page is listed at most once per round; an assist still holding a page
 * of the last round while the next one lists it again is harmless: a copy
 * word is written only by a scanner that then marks the value it wrote, and
 * every scanner has finished before the final pause ends. */
static void rescan_large(struct marker *m, struct span *s, uintptr_t a, uintptr_t b) {
    while (a < b) {
        uintptr_t page = a & ~(uintptr_t)(SHADOW_PAGE - 1), end = page + SHADOW_PAGE;
        bool fresh = false;
        uintptr_t *copy = a == page && end <= b ? shadow_find(page, &fresh) : NULL;
        if (copy && tern_barrier_kind == TERN_BARRIER_MPROTECT && !shadow.frozen) {
            rescan_page(m, page, (uintptr_t)copy | fresh);
        } else if (copy) {
            push(m, s, page | ENTRY_SHADOW, (uintptr_t)copy | fresh);
        } else {
            uintptr_t e = end < b ? end : b;
            push(m, s, a, e - a);
            end = e;
        }
        a = end;
    }
}

/* Pop side of ENTRY_SHADOW: make the copy (marking every word), or mark
 * only the words that differ from it.  The comparison goes a cache line at
 * a time; a line that differs is read again word by word, each word once. */
static void rescan_page(struct marker *m, uintptr_t page, uintptr_t l) {
    uintptr_t hlo = atomic_load_explicit(&tern_heap.lo, memory_order_relaxed);
    uintptr_t hspan = atomic_load_explicit(&tern_heap.hi, memory_order_relaxed) - hlo;
    uintptr_t *copy = (uintptr_t *)(l & ~(uintptr_t)1);
    volatile uintptr_t *w = (volatile uintptr_t *)page;
    const unsigned nw = SHADOW_PAGE / sizeof(uintptr_t);
    if (l & 1) {
        for (unsigned i = 0; i < nw; i++) copy[i] = w[i];
        for (unsigned i = 0; i < nw; i++) mark_word(m, copy[i], hlo, hspan);
        return;
    }
    const uintptr_t *pw = (const uintptr_t *)page;
    for (unsigned i = 0; i < nw; i += 8) {
        uintptr_t d = 0;
        for (unsigned j = 0; j < 8; j++) d |= pw[i + j] ^ copy[i + j];
        if (!d) continue;
        for (unsigned j = i; j < i + 8; j++) {
            uintptr_t v = w[j];
            if (v != copy[j]) {
                copy[j] = v;
                mark_word(m, v, hlo, hspan);
            }
        }
    }
}

/* A range the barrier reports written: every marked object overlapping it
 * is grey again (only the overlapping part is queued: nothing else of the
 * object changed). */
static void dirty_range(uintptr_t lo, uintptr_t hi, void *arg) {
    struct marker *m = arg;
    while (lo < hi) {
        struct chunk *c = chunk_of(lo);
        if (!c) {
            lo = ALIGN_UP(lo + 1, CHUNK_SIZE);
            continue;
        }
        uintptr_t cend = (uintptr_t)c + c->size, e = hi < cend ? hi : cend;
        size_t pg = (lo - (uintptr_t)c) >> PAGE_SHIFT;
        while (lo < e) {
            struct span *s = NULL;
            size_t first = pg, np = 1;
            if (c->huge) {
                if (pg >= c->meta_pages) s = &c->spans[0], first = c->meta_pages, np = (c->size >> PAGE_SHIFT) - first;
            } else {
                unsigned f = __atomic_load_n(&c->pagemap[pg], __ATOMIC_ACQUIRE);
                if (f) s = &c->spans[f - 1], first = f - 1, np = s->npages ? s->npages : 1;
            }
            uintptr_t send = (uintptr_t)c + ((first + np) << PAGE_SHIFT);
            if (send > cend) send = cend;
            unsigned st = s ? atomic_load_explicit(&s->state, memory_order_acquire) : SPAN_FREE;
            if (st != SPAN_FREE && !s->noscan) {
                uintptr_t base = s->base, lim = base + s->limit;
                uintptr_t a = lo > base ? lo : base, b = e < lim ? e : lim;
                if (a < b && !s->spanclass) {
                    if (atomic_load(&s->mark[0]) & 1) rescan_large(m, s, a, b);
                } else if (a < b && s->elemsize) {
                    /* runs of marked objects (objects allocated black lie
                     * side by side) are queued as one range */
                    size_t i0 = span_slot(s, a - base), i1 = span_slot(s, b - 1 - base);
                    for (size_t i = i0; i <= i1 && i < s->nelems; i++) {
                        if (!bit_test(s->mark, i)) continue;
                        size_t j = i + 1;
                        while (j <= i1 && j < s->nelems && bit_test(s->mark, j)) j++;
                        uintptr_t ob = base + i * s->elemsize, oe = base + j * s->elemsize;
                        uintptr_t x = ob > a ? ob : a, y = oe < b ? oe : b;
                        if (x < y) push(m, s, x | s->typed, y - x);
                        i = j;
                    }
                }
            }
            if (send <= lo) send = lo + PAGE_SIZE;
            lo = send;
            pg = (lo - (uintptr_t)c) >> PAGE_SHIFT;
        }
        lo = e;
    }
}

/* In a forked child the marker threads are gone. */
void tern_markers_atfork_child(void) {
    nhelpers = 0;
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.work, NULL);
    pthread_cond_init(&pool.start, NULL);
    pthread_cond_init(&pool.finished, NULL);
    pool.round = 0;
}
