/* finalize.c — finalizers, weak links, ephemerons and uncollectable
 * objects (include/tern/finalize.h; the reference is docs/finalize.md).
 *
 * THE TABLES.  Registrations live in open-addressing hash tables mapped
 * with tern_os_map_meta, never in the heap and never from malloc (in the
 * malloc shim, malloc is Tern itself).  Every address in them is stored
 * hidden (bit-inverted), so that nothing that happens to scan them can
 * keep an object alive; what the tables must keep alive (finalizer data,
 * objects awaiting their finalizer, uncollectable objects) is marked
 * explicitly from tern_roots_scan (tern_finalize_scan_roots).  One lock,
 * fin_lock, guards them.  The collector takes it before it stops the world
 * (tern_roots_prepare) and gives it back after (tern_roots_done), so the
 * pauses read the tables without taking a lock a stopped thread may hold;
 * nothing here allocates from the heap or maps memory while a pause runs
 * (tables grow only when something is registered).
 *
 *   T_FIN   object -> finalizer, data, state (registered, ready, running)
 *   T_UNC   uncollectable object
 *   T_WEAK  link -> target base, container base (the Tern object holding
 *           the link, if any), short or long
 *   T_EPH   ephemeron object -> key base
 *   T_IDX   base -> link or ephemeron, for tern_free: weak targets, weak
 *           containers and ephemeron keys (several entries per base)
 *
 * THE PAUSE.  Tern keeps an incremental-update invariant (mark.c): when
 * the final drain is over, with the world stopped, marking is complete
 * and the mark bits say exactly what is reachable.  tern_finalize_pause
 * runs then, in the final pause of a concurrent cycle and in the one pause
 * of a stop-the-world cycle, before the checkmark re-mark:
 *
 *  1. ephemerons, to a fixpoint: the value of every marked ephemeron whose
 *     key is marked is marked, and the marker drained; repeated until a
 *     round marks nothing (keys reached only through values stay white);
 *  2. short weak links whose target is white are cleared;
 *  3. finalizers: the contents of every white finalizable object (ordered
 *     ones) are marked, drained, ephemerons re-run; the finalizable objects
 *     still white are ready: marked (with what they reach, ephemerons
 *     again) and queued by flipping their entry's state;
 *  4. long weak links whose target is white are cleared;
 *  5. ephemerons whose key is white read NULL from now on; registrations
 *     whose ephemeron, or whose link's container, is white end.
 *
 * The cost is a walk of every table plus the marking of what becomes
 * reachable again (values of ephemerons, what ready objects reference):
 * proportional to the registrations, with one more walk of the ephemeron
 * table for each link of the longest ephemeron chain.
 *
 * A mutator never sees a pointer to a reclaimed object through a link:
 * links are cleared with the world stopped, before any sweep; and a
 * pointer it read from a link while marking ran is in a root or the heap,
 * where the final pause finds it (roots are rescanned, heap writes are
 * recorded), so that object is marked and its link not cleared.
 *
 * CHECKMARK.  TERN_DEBUG=checkmark re-marks from the roots after this and
 * reports objects the re-mark reaches that were not marked before.  Objects
 * kept alive only by step 1 or 3 are marked before and not reached by the
 * re-mark: never a "miss"; the marks stay the union of both.
 *
 * FINALIZERS RUN outside the pauses and the collector's locks: on the
 * finalizer thread (started by the first registration, from the
 * registering thread; restarted lazily in a forked child), or in
 * tern_run_finalizers.  A running finalizer's entry stays in the table
 * (state running), so its object and data stay roots until it returns. */
#include "internal.h"
#include "tern/finalize.h"

#include <errno.h>
#include <semaphore.h>
#include <string.h>

#define HIDE(p) (~(uintptr_t)(p))
#define SHOW(h) ((void *)~(uintptr_t)(h))
#define EMPTY 0
#define TOMB 1

enum { T_FIN, T_UNC, T_WEAK, T_EPH, T_IDX, NTAB };
enum { FIN_REG, FIN_READY, FIN_RUNNING };
enum { WEAK_SHORT, WEAK_LONG };
enum { IDX_TARGET = 1, IDX_CONTAINER, IDX_KEY };

struct ent {
    uintptr_t key;    /* hidden address; EMPTY, TOMB                       */
    uintptr_t a;      /* weak: target base; eph: key base; idx: link / eph */
    uintptr_t b;      /* weak: container base or 0                         */
    tern_finalizer fn;
    void *data;       /* finalizer data (a root; not hidden)               */
    uint32_t kind;    /* fin: flags; weak: WEAK_*; idx: IDX_*             */
    uint32_t state;   /* fin: FIN_*                                        */
};
struct tab {
    struct ent *e;
    size_t cap, used, live; /* used counts tombstones too */
};

struct eph { void *key, *value; }; /* the ephemeron object (noscan) */

static struct tab tabs[NTAB];
static pthread_mutex_t fin_lock = PTHREAD_MUTEX_INITIALIZER;
_Atomic int tern_finalize_any;
static _Atomic int fin_used;      /* a finalizer was registered */
static _Atomic int ready_count;   /* entries in state FIN_READY */
static _Atomic int on_demand;
static _Atomic int fin_thread;    /* 0 none, 1 starting, 2 running */
static sem_t fin_sem;
static pthread_once_t sem_once = PTHREAD_ONCE_INIT;

/* ---- tables ------------------------------------------------------------ */

static inline size_t slot0(const struct tab *t, uintptr_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (t->cap - 1);
}
#define FOR_PROBE(T, KEY, E)                                                          \
    for (size_t h_ = (T)->cap ? slot0(T, KEY) : 0, n_ = (T)->cap; n_; h_ = (h_ + 1) & ((T)->cap - 1), n_--) \
        if (((E) = &(T)->e[h_])->key == EMPTY) break; else
#define FOR_EACH(T, E)                                                                \
    for (size_t i_ = 0; i_ < (T)->cap; i_++)                                          \
        if (((E) = &(T)->e[i_])->key > TOMB)

/* The entry of key (fin: in state st), or NULL. */
static struct ent *find(struct tab *t, uintptr_t key, int st) {
    struct ent *e;
    FOR_PROBE(t, key, e) if (e->key == key && (st < 0 || (int)e->state == st)) return e;
    return NULL;
}

static struct ent *find_idx(uintptr_t key, uintptr_t a, uint32_t kind) {
    struct ent *e;
    FOR_PROBE(&tabs[T_IDX], key, e) if (e->key == key && e->a == a && e->kind == kind) return e;
    return NULL;
}

static void put(struct tab *t, const struct ent *v) {
    struct ent *e;
    size_t h = slot0(t, v->key);
    while ((e = &t->e[h])->key > TOMB) h = (h + 1) & (t->cap - 1);
    if (e->key == EMPTY) t->used++;
    *e = *v;
    t->live++;
}

/* Room for n more entries (fin_lock held, world running): may rehash. */
static bool reserve(struct tab *t, size_t n) {
    if ((t->used + n) * 2 <= t->cap) return true;
    size_t ncap = 64;
    while (ncap < (t->live + n) * 4) ncap *= 2;
    struct ent *ne = tern_os_map_meta(ncap * sizeof *ne);
    if (!ne) return false;
    struct tab nt = {ne, ncap, 0, 0};
    struct ent *e;
    FOR_EACH(t, e) put(&nt, e);
    if (t->e) tern_os_unmap_meta(t->e, t->cap * sizeof *t->e);
    *t = nt;
    return true;
}

static void del(struct tab *t, struct ent *e) {
    e->key = TOMB;
    t->live--;
}

static void del_idx(uintptr_t key, uintptr_t a, uint32_t kind) {
    struct ent *e = key ? find_idx(key, a, kind) : NULL;
    if (e) del(&tabs[T_IDX], e);
}

static void weak_drop(struct ent *w) {
    del_idx(w->a, w->key, IDX_TARGET);
    del_idx(w->b, w->key, IDX_CONTAINER);
    del(&tabs[T_WEAK], w);
}

static void eph_drop(struct ent *x) {
    del_idx(x->a, x->key, IDX_KEY);
    del(&tabs[T_EPH], x);
}

void tern_finalize_lock(void) { pthread_mutex_lock(&fin_lock); }
void tern_finalize_unlock(void) { pthread_mutex_unlock(&fin_lock); }

static void note_registered(void) {
    if (!atomic_load_explicit(&tern_finalize_any, memory_order_relaxed)) atomic_store(&tern_finalize_any, 1);
}

/* ---- the pause ---------------------------------------------------------- */

/* -1 not a heap object, 0 white, 1 marked, 2 dead (freed or free slot). */
static inline int state_of(uintptr_t p) { return tern_mark_state(p); }
static inline bool dead(uintptr_t p) { int s = state_of(p); return s == 0 || s == 2; }

/* Step 1: mark the values of live ephemerons with live keys, to a fixpoint. */
static void eph_fixpoint(void) {
    struct tab *t = &tabs[T_EPH];
    for (;;) {
        bool more = false;
        struct ent *e;
        FOR_EACH(t, e) {
            struct eph *x = SHOW(e->key);
            if (state_of((uintptr_t)x) != 1 || state_of((uintptr_t)SHOW(e->a)) != 1) continue;
            uintptr_t v = (uintptr_t)__atomic_load_n(&x->value, __ATOMIC_RELAXED);
            if (v && state_of(v) == 0) more |= tern_mark_value(v); /* only progress repeats the loop */
        }
        if (!more) return;
        tern_mark_drain_pause();
    }
}

static void clear_weak(uint32_t kind) {
    struct ent *w;
    FOR_EACH(&tabs[T_WEAK], w) {
        if (w->kind != kind) continue;
        int cst = w->b ? state_of((uintptr_t)SHOW(w->b)) : -1;
        if (cst == 2) { /* its container was freed: never write there */
            weak_drop(w);
            continue;
        }
        if (dead((uintptr_t)SHOW(w->a))) {
            __atomic_store_n((void **)SHOW(w->key), NULL, __ATOMIC_RELAXED);
            weak_drop(w);
        }
    }
}

/* Step 3. */
static void finalizers(void) {
    struct tab *t = &tabs[T_FIN];
    struct ent *e;
    bool any = false;
    FOR_EACH(t, e) {
        if (e->state != FIN_REG) continue;
        int st = state_of((uintptr_t)SHOW(e->key));
        if (st == 2 || st < 0) del(t, e); /* freed: cannot happen (tern_free unregisters) */
        else if (st == 0) {
            any = true;
            if (!(e->kind & TERN_FIN_UNORDERED)) tern_mark_contents((uintptr_t)SHOW(e->key));
        }
    }
    if (!any) return;
    tern_mark_drain_pause();
    eph_fixpoint();
    int ready = 0;
    FOR_EACH(t, e) {
        if (e->state != FIN_REG || state_of((uintptr_t)SHOW(e->key)) != 0) continue;
        e->state = FIN_READY;
        ready++;
        tern_mark_value((uintptr_t)SHOW(e->key));
    }
    if (!ready) return;
    atomic_fetch_add(&ready_count, ready);
    tern_mark_drain_pause();
    eph_fixpoint();
}

/* Step 5. */
static void end_dead(void) {
    struct ent *e;
    FOR_EACH(&tabs[T_EPH], e) {
        struct eph *x = SHOW(e->key);
        if (state_of((uintptr_t)x) != 1) eph_drop(e); /* the ephemeron itself dies */
        else if (dead((uintptr_t)SHOW(e->a))) {
            __atomic_store_n(&x->key, NULL, __ATOMIC_RELAXED);
            __atomic_store_n(&x->value, NULL, __ATOMIC_RELAXED);
            eph_drop(e);
        }
    }
    FOR_EACH(&tabs[T_WEAK], e)
        if (e->b && state_of((uintptr_t)SHOW(e->b)) != 1) weak_drop(e); /* the link's holder dies */
}

/* World stopped, marking complete, fin_lock held by the collector. */
void tern_finalize_pause(void) {
    if (!atomic_load(&tern_finalize_any)) return;
    eph_fixpoint();
    clear_weak(WEAK_SHORT);
    finalizers();
    clear_weak(WEAK_LONG);
    end_dead();
}

/* Roots (from tern_roots_scan, world stopped, fin_lock held): finalizer
 * data, objects awaiting or running their finalizer, uncollectable
 * objects. */
void tern_finalize_scan_roots(void (*scan)(uintptr_t lo, uintptr_t hi, void *), void *arg) {
    if (!atomic_load(&tern_finalize_any)) return;
    uintptr_t buf[64];
    size_t n = 0;
#define ROOT(v)                                                       \
    do {                                                              \
        buf[n++] = (uintptr_t)(v);                                    \
        if (n == 64) scan((uintptr_t)buf, (uintptr_t)(buf + n), arg), n = 0; \
    } while (0)
    struct ent *e;
    FOR_EACH(&tabs[T_FIN], e) {
        if (e->data) ROOT(e->data);
        if (e->state != FIN_REG) ROOT(SHOW(e->key));
    }
    FOR_EACH(&tabs[T_UNC], e) ROOT(SHOW(e->key));
    if (n) scan((uintptr_t)buf, (uintptr_t)(buf + n), arg);
#undef ROOT
}

/* ---- finalizers ------------------------------------------------------------ */

TERN_API int tern_register_finalizer_ex(void *obj, tern_finalizer fn, void *data, unsigned flags,
                                        tern_finalizer *old_fn, void **old_data) {
    if (old_fn) *old_fn = NULL;
    if (old_data) *old_data = NULL;
    if (!obj || (flags & ~TERN_FIN_UNORDERED)) return TERN_EINVAL;
    tern_ensure_init();
    if (tern_base(obj) != obj) return TERN_EINVAL;
    int rc = TERN_OK;
    pthread_mutex_lock(&fin_lock);
    struct ent *e = find(&tabs[T_FIN], HIDE(obj), FIN_REG);
    if (e) {
        if (old_fn) *old_fn = e->fn;
        if (old_data) *old_data = e->data;
        if (fn) e->fn = fn, e->data = data, e->kind = flags;
        else del(&tabs[T_FIN], e);
    } else if (fn) {
        if (!reserve(&tabs[T_FIN], 1)) rc = TERN_ENOMEM;
        else put(&tabs[T_FIN], &(struct ent){.key = HIDE(obj), .fn = fn, .data = data, .kind = flags});
    }
    pthread_mutex_unlock(&fin_lock);
    TERN_KEEP(obj); /* registered only hidden: seen by no pause until here */
    if (rc == TERN_OK && fn) {
        note_registered();
        atomic_store(&fin_used, 1);
        tern_finalize_kick();
    }
    return rc;
}

TERN_API int tern_register_finalizer(void *obj, tern_finalizer fn, void *data) {
    return tern_register_finalizer_ex(obj, fn, data, 0, NULL, NULL);
}

TERN_API int tern_unregister_finalizer(void *obj) {
    if (!obj) return TERN_EINVAL;
    pthread_mutex_lock(&fin_lock);
    struct ent *e = find(&tabs[T_FIN], HIDE(obj), FIN_REG);
    if (e) del(&tabs[T_FIN], e);
    pthread_mutex_unlock(&fin_lock);
    return e ? TERN_OK : TERN_ENOENT;
}

TERN_API int tern_finalizers_pending(void) { return atomic_load(&ready_count); }

#define BATCH 32
struct job { void *obj; tern_finalizer fn; void *data; };

static __attribute__((noinline)) void wipe(struct job *b) {
    memset(b, 0, sizeof(struct job) * BATCH);
    __asm__ volatile("" : : "r"(b) : "memory");
}

TERN_API int tern_run_finalizers(void) {
    if (!atomic_load(&ready_count)) return 0;
    tern_thread_ensure(); /* the batch below must be on a scanned stack */
    int total = 0;
    struct job batch[BATCH];
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&fin_lock);
        struct ent *e;
        if (atomic_load(&ready_count) > 0)
            FOR_EACH(&tabs[T_FIN], e) {
                if (e->state != FIN_READY) continue;
                e->state = FIN_RUNNING;
                atomic_fetch_sub(&ready_count, 1);
                batch[n++] = (struct job){SHOW(e->key), e->fn, e->data};
                if (n == BATCH) break;
            }
        pthread_mutex_unlock(&fin_lock);
        if (!n) break;
        for (size_t i = 0; i < n; i++) batch[i].fn(batch[i].obj, batch[i].data);
        total += (int)n;
        pthread_mutex_lock(&fin_lock);
        for (size_t i = 0; i < n; i++)
            if ((e = find(&tabs[T_FIN], HIDE(batch[i].obj), FIN_RUNNING))) del(&tabs[T_FIN], e);
        pthread_mutex_unlock(&fin_lock);
    }
    wipe(batch);
    return total;
}

static void sem_setup(void) { sem_init(&fin_sem, 0, 0); }

static void *fin_main(void *arg) {
    (void)arg;
    tern_thread_ensure();
    tern_tl_thread_name("tern finalizer");
    for (;;) {
        while (sem_wait(&fin_sem) != 0) {}
        if (!atomic_load(&on_demand)) tern_run_finalizers();
    }
    return NULL;
}

/* Start the finalizer thread if finalizers are in use and none runs (no
 * lock held: creating a thread allocates and takes C library locks). */
void tern_finalize_kick(void) {
    if (likely(atomic_load_explicit(&fin_thread, memory_order_relaxed) == 2) || !atomic_load(&fin_used) ||
        atomic_load(&on_demand))
        return;
    int st = 0;
    if (!atomic_compare_exchange_strong(&fin_thread, &st, 1)) return;
    pthread_once(&sem_once, sem_setup);
    pthread_t th;
    if (pthread_create(&th, NULL, fin_main, NULL) != 0) { /* Tern's wrapper: a registered thread */
        atomic_store(&fin_thread, 0);
        return;
    }
    pthread_detach(th);
    atomic_store(&fin_thread, 2);
    if (atomic_load(&ready_count)) sem_post(&fin_sem);
}

/* After a cycle, the world running and no collector lock held. */
void tern_finalize_cycle_done(void) {
    if (atomic_load_explicit(&ready_count, memory_order_relaxed) && !atomic_load(&on_demand) &&
        atomic_load(&fin_thread) == 2)
        sem_post(&fin_sem);
}

TERN_API void tern_finalize_on_demand(int on) {
    atomic_store(&on_demand, on != 0);
    if (!on) {
        tern_finalize_kick();
        tern_finalize_cycle_done();
    }
}

/* In a forked child: the finalizer thread is gone; finalizers that were
 * running in the parent belong to the parent. */
void tern_finalize_atfork_child(void) {
    atomic_store(&fin_thread, 0);
    sem_init(&fin_sem, 0, 0);
    struct ent *e;
    FOR_EACH(&tabs[T_FIN], e) if (e->state == FIN_RUNNING) del(&tabs[T_FIN], e);
}

/* ---- weak links ---------------------------------------------------------- */

static int weak_register(void **link, void *obj, uint32_t kind) {
    if (!link || ((uintptr_t)link & (sizeof(void *) - 1)) || !obj) return TERN_EINVAL;
    tern_ensure_init();
    void *tb = tern_base(obj), *cb = tern_base(link);
    if (!tb) return TERN_EINVAL;
    int rc = TERN_OK;
    pthread_mutex_lock(&fin_lock);
    if (find(&tabs[T_WEAK], HIDE(link), -1)) rc = TERN_EEXIST;
    else if (!reserve(&tabs[T_WEAK], 1) || !reserve(&tabs[T_IDX], 2)) rc = TERN_ENOMEM;
    else {
        put(&tabs[T_WEAK], &(struct ent){.key = HIDE(link), .a = HIDE(tb), .b = cb ? HIDE(cb) : 0, .kind = kind});
        put(&tabs[T_IDX], &(struct ent){.key = HIDE(tb), .a = HIDE(link), .kind = IDX_TARGET});
        if (cb) put(&tabs[T_IDX], &(struct ent){.key = HIDE(cb), .a = HIDE(link), .kind = IDX_CONTAINER});
        note_registered();
    }
    pthread_mutex_unlock(&fin_lock);
    TERN_KEEP(link); TERN_KEEP(tb); TERN_KEEP(cb); /* hidden in the tables: keep them seen until registered */
    return rc;
}

TERN_API int tern_register_weak(void **link, void *obj) { return weak_register(link, obj, WEAK_SHORT); }
TERN_API int tern_register_weak_long(void **link, void *obj) { return weak_register(link, obj, WEAK_LONG); }

TERN_API int tern_unregister_weak(void **link) {
    if (!link) return TERN_EINVAL;
    pthread_mutex_lock(&fin_lock);
    struct ent *w = find(&tabs[T_WEAK], HIDE(link), -1);
    if (w) weak_drop(w);
    pthread_mutex_unlock(&fin_lock);
    return w ? TERN_OK : TERN_ENOENT;
}

/* ---- ephemerons ------------------------------------------------------------ */

TERN_API void *tern_ephemeron_new(void *key, void *value) {
    void *kb = key ? (tern_ensure_init(), tern_base(key)) : NULL;
    if (!kb) {
        errno = EINVAL;
        return NULL;
    }
    struct eph *x = tern_malloc_atomic(sizeof *x); /* never scanned: holds nothing strongly */
    if (!x) return NULL;
    x->key = key;
    x->value = value;
    bool ok = false;
    /* Until it is registered, x is an object the collector does not scan
     * and no table names: key and value must stay visible on this stack.
     * The lock below is one a pause holds; a thread waiting for it with
     * the value only in x let the pause free the value (test_finalize's
     * all_features_threads under TERN_BARRIER=stw: a live key, its value
     * freed, about 1 run in 100). */
    pthread_mutex_lock(&fin_lock);
    if (reserve(&tabs[T_EPH], 1) && reserve(&tabs[T_IDX], 1)) {
        put(&tabs[T_EPH], &(struct ent){.key = HIDE(x), .a = HIDE(kb)});
        put(&tabs[T_IDX], &(struct ent){.key = HIDE(kb), .a = HIDE(x), .kind = IDX_KEY});
        note_registered();
        ok = true;
    }
    pthread_mutex_unlock(&fin_lock);
    TERN_KEEP(x); TERN_KEEP(key); TERN_KEEP(value); TERN_KEEP(kb);
    if (!ok) {
        tern_free(x);
        errno = ENOMEM;
        return NULL;
    }
    return x;
}

TERN_API void *tern_ephemeron_key(const void *eph) {
    return eph ? __atomic_load_n(&((const struct eph *)eph)->key, __ATOMIC_RELAXED) : NULL;
}

/* NULL once the key died (a value stored by a set_value racing with the
 * key's death is never returned). */
TERN_API void *tern_ephemeron_value(const void *eph) {
    const struct eph *x = eph;
    if (!x || !__atomic_load_n(&x->key, __ATOMIC_RELAXED)) return NULL;
    void *v = __atomic_load_n(&x->value, __ATOMIC_RELAXED);
    return __atomic_load_n(&x->key, __ATOMIC_RELAXED) ? v : NULL;
}

TERN_API int tern_ephemeron_set_value(void *eph, void *value) {
    struct eph *x = eph;
    if (!x) return TERN_EINVAL;
    if (!__atomic_load_n(&x->key, __ATOMIC_RELAXED)) return TERN_ENOENT;
    __atomic_store_n(&x->value, value, __ATOMIC_RELAXED);
    return TERN_OK;
}

/* ---- uncollectable objects ------------------------------------------------------ */

static bool unc_add(void *p) {
    pthread_mutex_lock(&fin_lock);
    bool ok = reserve(&tabs[T_UNC], 1);
    if (ok) {
        put(&tabs[T_UNC], &(struct ent){.key = HIDE(p)});
        note_registered();
    }
    pthread_mutex_unlock(&fin_lock);
    TERN_KEEP(p);
    return ok;
}

TERN_API void *tern_malloc_uncollectable(size_t n) {
    void *p = tern_malloc(n);
    if (!p) return NULL;
    if (!unc_add(p)) {
        tern_free(p);
        errno = ENOMEM;
        return NULL;
    }
    return p;
}

/* tern_realloc moved old to moved (before it frees old). */
void tern_finalize_note_realloc(void *old, void *moved) {
    pthread_mutex_lock(&fin_lock);
    bool unc = find(&tabs[T_UNC], HIDE(old), -1) != NULL;
    pthread_mutex_unlock(&fin_lock);
    if (unc && !unc_add(moved)) tern_report_error("uncollectable realloc: no memory to keep", moved);
}

/* tern_free(p): every registration about p ends; links to p read NULL,
 * and so do ephemerons keyed by p. */
void tern_finalize_note_free(void *p) {
    uintptr_t k = HIDE(p);
    struct ent *e;
    pthread_mutex_lock(&fin_lock);
    FOR_PROBE(&tabs[T_FIN], k, e) if (e->key == k && e->state != FIN_RUNNING) {
        if (e->state == FIN_READY) atomic_fetch_sub(&ready_count, 1);
        del(&tabs[T_FIN], e);
    }
    if ((e = find(&tabs[T_UNC], k, -1))) del(&tabs[T_UNC], e);
    if ((e = find(&tabs[T_EPH], k, -1))) eph_drop(e);
    FOR_PROBE(&tabs[T_IDX], k, e) {
        if (e->key != k) continue;
        struct ent *r;
        if (e->kind == IDX_KEY) {
            if ((r = find(&tabs[T_EPH], e->a, -1))) {
                struct eph *x = SHOW(e->a);
                __atomic_store_n(&x->key, NULL, __ATOMIC_RELAXED);
                __atomic_store_n(&x->value, NULL, __ATOMIC_RELAXED);
                eph_drop(r);
            }
        } else if ((r = find(&tabs[T_WEAK], e->a, -1))) {
            if (e->kind == IDX_TARGET) __atomic_store_n((void **)SHOW(e->a), NULL, __ATOMIC_RELAXED);
            weak_drop(r);
        }
    }
    pthread_mutex_unlock(&fin_lock);
}
