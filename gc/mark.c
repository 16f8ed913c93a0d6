/* mark.c — the marker.
 *
 * ONE CYCLE, PHASE BY PHASE
 *
 * 1. Trigger.  The pacer (pacer.c) sees the bytes in use reach the goal —
 *    live data of the last cycle times (1 + TERN_GC/100) — or the program
 *    calls tern_collect().  The thread that noticed runs the cycle
 *    (collect.c); any other thread that notices meanwhile waits for it.
 *
 * 2. Finish sweeping.  Sweeping never races with marking: every span the
 *    last cycle left unswept is swept now, concurrently with the mutators,
 *    before anything is marked (sweep.c).  Mark bits are then all clear.
 *
 * 3. Gather roots.  The loaded objects' writable segments and TLS module
 *    sizes are read with dl_iterate_phdr — before the world stops, because
 *    it takes the loader's lock (roots.c).
 *
 * 4. Stop the world.  The collector takes the registry lock and every
 *    central lock (so no thread is stopped halfway through a span
 *    operation or a sweep), then signals every registered thread; each
 *    saves its registers and stack pointer and waits (thread.c).
 *
 * 5. Mark.  Roots are scanned conservatively: every aligned word that
 *    points into an allocated object (interior pointers count) marks that
 *    object in its span's side bitmap and, unless it is pointer-free,
 *    pushes it on the marker's stack.  TERN_MARKERS threads drain the
 *    stacks in parallel; a marker with surplus work hands packets to a
 *    shared pool that idle markers take from, and marking ends when every
 *    marker is idle and the pool is empty.  Marking is iterative, so a
 *    10-million-node list costs stack entries, not recursion; if a mark
 *    stack cannot grow, the object is marked, its span flagged, and the
 *    flagged spans are rescanned afterwards.  Large objects are scanned in
 *    128 KiB pieces so several markers can share one.
 *
 * 6. (Reserved) Finalizers, weak references and ephemerons will run here,
 *    between mark and sweep, while the world is still stopped.
 *
 * 7. Mark termination.  Each thread cache's handed-out slots enter the
 *    alloc bitmaps; the heap's sweep generation moves on by two, which
 *    makes every in-use span "needs sweeping" at once; the pacer sets the
 *    next goal from the marked bytes.  The world restarts, and only then —
 *    the central locks still held — are the central lists moved to the
 *    unswept lists.
 *
 * 8. Sweep, lazily.  Nothing is swept in the pause.  A span is swept when
 *    an allocator next needs a span of its class, when its owning cache
 *    moves on, or at the latest in step 2 of the next cycle.
 *
 * THE TRI-COLOR VIEW.  White objects are unmarked; grey ones are marked
 * and still on a mark stack; black ones are marked and scanned.  The cycle
 * keeps the strong invariant — no black object points to a white one —
 * trivially, because mutators do not run while the marker runs.  Objects
 * allocated while a cycle is marking are born black (tern_gc_black), which
 * is what the concurrent marker will rely on.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PACKET 512                /* entries (pointer, length) in a packet */
#define SCAN_PIECE (128u << 10)   /* large objects are scanned in pieces   */
#define MAX_MARKERS 64

struct mstack {
    uintptr_t *v; /* pairs: base, length */
    size_t n, cap;
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
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
          .start = PTHREAD_COND_INITIALIZER, .finished = PTHREAD_COND_INITIALIZER};

_Atomic uint64_t tern_marked_bytes;
static bool single_marker; /* one marker: mark bits need no atomic update */
static _Atomic int overflowed;

/* ---- mark stacks ---------------------------------------------------------- */

static bool mstack_grow(struct mstack *st) {
    size_t ncap = st->cap ? st->cap * 2 : 1u << 16;
    uintptr_t *nv = tern_os_map_meta(ncap * 2 * sizeof(uintptr_t));
    if (!nv) return false;
    if (st->v) {
        memcpy(nv, st->v, st->n * 2 * sizeof(uintptr_t));
        tern_os_unmap_meta(st->v, st->cap * 2 * sizeof(uintptr_t));
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

static inline __attribute__((always_inline)) void mark_word(struct marker *m, uintptr_t w, uintptr_t lo,
                                                           uintptr_t len) {
    struct span *s = span_lookup(w, lo, len);
    if (!s) return;
    unsigned st = atomic_load_explicit(&s->state, memory_order_acquire);
    if (st == SPAN_FREE) return;
    uintptr_t off = w - s->base;
    if (off >= s->limit) return;
    size_t i = span_slot(s, off);
    uint64_t bit = 1ull << (i % 64);
    _Atomic uint64_t *mw = &s->mark[i / 64];
    if (atomic_load_explicit(mw, memory_order_relaxed) & bit) return;
    if (atomic_load_explicit(&s->nfree_hint, memory_order_relaxed) &&
        (atomic_load_explicit(&s->freed[i / 64], memory_order_relaxed) & bit))
        return;
    if (s->spanclass && !slot_allocated(s, i)) return;
    if (single_marker) atomic_store_explicit(mw, atomic_load_explicit(mw, memory_order_relaxed) | bit, memory_order_relaxed);
    else if (atomic_fetch_or_explicit(mw, bit, memory_order_relaxed) & bit) return;
    uintptr_t size = s->spanclass ? s->elemsize : s->limit;
    m->marked += size;
    if (!s->noscan) push(m, s, s->base + i * s->elemsize, size);
}

static void scan_range(struct marker *m, uintptr_t lo, uintptr_t hi) {
    uintptr_t hlo = atomic_load_explicit(&tern_heap.lo, memory_order_relaxed);
    uintptr_t hspan = atomic_load_explicit(&tern_heap.hi, memory_order_relaxed) - hlo;
    lo = ALIGN_UP(lo, sizeof(uintptr_t));
    for (uintptr_t p = lo; p + sizeof(uintptr_t) <= hi; p += sizeof(uintptr_t))
        mark_word(m, *(volatile uintptr_t *)p, hlo, hspan);
}

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
    if (*len > SCAN_PIECE) {
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
            scan_range(m, b, b + l);
            if ((++tick & 15) == 0 && m->st.n > 64 && atomic_load_explicit(&pool.waiting, memory_order_relaxed))
                donate(m);
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

static void *marker_main(void *arg) {
    struct marker *m = arg;
    /* Marker threads are not registered and never stopped; they take no
     * signals at all (the stop signal included: the C library's own
     * pthread_sigmask, not Tern's filtering one). */
    sigset_t all;
    sigfillset(&all);
    int (*mask)(int, const sigset_t *, sigset_t *) = tern_real_sigmask();
    if (mask) mask(SIG_BLOCK, &all, NULL);
    for (;;) {
        pthread_mutex_lock(&pool.lock);
        while (pool.round == m->seen) pthread_cond_wait(&pool.start, &pool.lock);
        m->seen = pool.round;
        pthread_mutex_unlock(&pool.lock);
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
    if (want > MAX_MARKERS) want = MAX_MARKERS;
    while (nhelpers + 1 < want) {
        struct marker *m = &markers[nhelpers + 1];
        m->seen = pool.round; /* join from the next round on */
        if (tern_real_pthread_create(&m->thread, NULL, marker_main, m) != 0) break;
        nhelpers++;
    }
    return nhelpers + 1;
}

/* Run one parallel drain round with n markers (the caller is marker 0). */
static void parallel_drain(unsigned n) {
    pthread_mutex_lock(&pool.lock);
    pool.active = n;
    pool.idle = 0;
    pool.done = false;
    pool.left = n - 1;
    pool.round++;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.lock);
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
    pthread_mutex_unlock(&pool.lock);
}

static void scan_root(uintptr_t lo, uintptr_t hi, void *arg) { scan_range(arg, lo, hi); }

/* Rescan spans whose objects could not be pushed. */
static void rescan_overflowed(struct marker *m) {
    for (struct chunk *c = tern_heap.chunks; c; c = c->next) {
        struct span *s;
        for (size_t p = c->meta_pages; (s = chunk_next_span(c, &p));) {
            if (!atomic_exchange(&s->rescan, 0)) continue;
            for (size_t i = 0; i < s->nelems; i++)
                if (bit_test(s->mark, i)) {
                    uintptr_t size = s->spanclass ? s->elemsize : s->limit;
                    push(m, s, s->base + i * s->elemsize, size);
                }
        }
    }
}

/* Drain m's stack alone, without the shared pool (the checkmark re-mark). */
static void drain_alone(struct marker *m) {
    uintptr_t b, l;
    while (pop(m, &b, &l)) scan_range(m, b, b + l);
}

/* TERN_DEBUG=checkmark: after the parallel mark, mark again from scratch
 * with one marker, and fail loudly if that reaches an object the parallel
 * mark left unmarked.  The marks are then the union of both. */
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
    bool was_single = single_marker;
    single_marker = true;
    uint64_t marked = markers[0].marked;
    tern_roots_scan(scan_root, &markers[0]);
    drain_alone(&markers[0]);
    markers[0].marked = marked;
    single_marker = was_single;
    size_t missed = 0;
    k = 0;
    for (struct chunk *c = tern_heap.chunks; c; c = c->next) {
        struct span *s;
        for (size_t p = c->meta_pages; (s = chunk_next_span(c, &p));) {
            if (atomic_load(&s->state) == SPAN_FREE) continue;
            for (unsigned w = 0; w < s->nwords; w++, k++) {
                uint64_t now = atomic_load(&s->mark[w]), miss = now & ~saved[k];
                for (; miss; miss &= miss - 1) {
                    size_t i = w * 64 + (size_t)__builtin_ctzll(miss);
                    if (missed++ < 20)
                        tern_log("tern: checkmark: object %p (%zu bytes) is reachable but was not marked\n",
                                 (void *)(s->base + i * s->elemsize), (size_t)(s->spanclass ? s->elemsize : s->limit));
                }
                atomic_store(&s->mark[w], now | saved[k]);
            }
        }
    }
    tern_os_unmap_meta(saved, words * 8 + 8);
    if (missed) {
        tern_log("tern: checkmark: %zu reachable objects missed by the mark; aborting\n", missed);
        abort();
    }
}

/* World stopped: mark everything reachable from the roots.  Returns the
 * CPU time the helper markers spent. */
uint64_t tern_mark_roots_and_drain(unsigned want) {
    unsigned n = ensure_helpers(want);
    single_marker = n == 1;
    for (unsigned i = 0; i < n; i++) markers[i].marked = markers[i].cpu_ns = 0;
    uint64_t cpu0 = tern_thread_cpu_ns();
    tern_roots_scan(scan_root, &markers[0]);
    markers[0].cpu_ns += tern_thread_cpu_ns() - cpu0;
    parallel_drain(n);
    while (atomic_exchange(&overflowed, 0)) {
        rescan_overflowed(&markers[0]);
        parallel_drain(n);
    }
    if (tern_cfg.checkmark) checkmark();
    uint64_t marked = 0, cpu = 0;
    for (unsigned i = 0; i < n; i++) marked += markers[i].marked, cpu += markers[i].cpu_ns;
    atomic_store(&tern_marked_bytes, marked);
    atomic_fetch_add(&tern_stats_g.mark_cpu_ns, cpu);
    atomic_store(&tern_stats_g.markers, n);
    return cpu - markers[0].cpu_ns;
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
