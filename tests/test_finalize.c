/* test_finalize.c — finalizers, weak links, ephemerons, uncollectable
 * objects and typed layouts (include/tern/finalize.h, include/tern/typed.h).
 *
 * Conservative scanning may keep an object alive by accident (a stale copy
 * of its address in a register or stack slot), so objects are made in
 * noinline helpers, their addresses kept hidden, the stack wiped before each
 * collection, and "it dies" is checked over a few collections.  The reverse
 * ("it stays alive", "it runs at most once", "a link never names a dead
 * object") is checked strictly.  tools/test runs this program as is (the
 * concurrent collector), under TERN_DEBUG=checkmark and with
 * TERN_BARRIER=stw; the *_threads tests run every feature from several
 * threads while another thread runs collections back to back. */
#include "common.h"

#include <criterion/criterion.h>
#include <time.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <tern/finalize.h>
#include <tern/typed.h>

TestSuite(finalize, .timeout = 120);

#define ROUNDS 12 /* collections a dead object gets to be found dead */

struct obj {
    uint32_t id, seed;
    struct obj *ref;   /* a pointer the object holds */
    void *ref2;
    unsigned char pay[40];
};

static NOINLINE struct obj *obj_new(uint32_t id)
{
    struct obj *o = tern_malloc(sizeof *o);
    cr_assert_not_null(o);
    o->id = id;
    o->seed = id * 7 + 1;
    fill(o->pay, sizeof o->pay, o->seed);
    return o;
}

static int obj_ok(const struct obj *o, uint32_t id)
{
    return o && tern_base(o) == o && o->id == id && filled_ok(o->pay, sizeof o->pay, o->seed);
}

static NOINLINE void collect_clean(void)
{
    clobber_stack();
    tern_collect();
}

static NOINLINE int is_null(void *const *link) { return *(volatile const uintptr_t *)link == 0; }

/* ---- finalizers ------------------------------------------------------------ */

#define NFIN 200
static atomic_int runs[NFIN];
static atomic_int bad_obj;

static void count_fin(void *p, void *data)
{
    struct obj *o = p;
    uintptr_t id = (uintptr_t)data;
    if (id >= NFIN || o->id != id || !filled_ok(o->pay, sizeof o->pay, o->seed))
        atomic_fetch_add(&bad_obj, 1);
    else
        atomic_fetch_add(&runs[id], 1);
}

static NOINLINE void make_finalizable(uint32_t lo, uint32_t hi)
{
    for (uint32_t i = lo; i < hi; i++) {
        struct obj *o = obj_new(i);
        cr_assert_eq(tern_register_finalizer(o, count_fin, (void *)(uintptr_t)i), TERN_OK);
    }
}

static int count_run(uint32_t lo, uint32_t hi, int *twice)
{
    int n = 0;
    *twice = 0;
    for (uint32_t i = lo; i < hi; i++) {
        int r = atomic_load(&runs[i]);
        n += r > 0;
        *twice += r > 1;
    }
    return n;
}

Test(finalize, runs_once_after_unreachable)
{
    tern_finalize_on_demand(1);
    make_finalizable(0, NFIN);
    int done = 0, twice = 0;
    for (int r = 0; r < ROUNDS && done < NFIN; r++) {
        collect_clean();
        tern_run_finalizers();
        done = count_run(0, NFIN, &twice);
    }
    cr_assert_geq(done, NFIN * 9 / 10, "only %d of %d finalizers ran", done, NFIN);
    for (int r = 0; r < 4; r++) {
        collect_clean();
        tern_run_finalizers();
    }
    count_run(0, NFIN, &twice);
    cr_assert_eq(twice, 0, "%d finalizers ran more than once", twice);
    cr_assert_eq(atomic_load(&bad_obj), 0, "a finalizer saw a damaged object");
    cr_assert_eq(tern_finalizers_pending(), 0);
}

Test(finalize, not_while_reachable_and_unregister)
{
    tern_finalize_on_demand(1);
    struct obj *keep = obj_new(1);
    cr_assert_eq(tern_register_finalizer(keep, count_fin, (void *)(uintptr_t)1), TERN_OK);
    struct obj *gone = obj_new(2);
    cr_assert_eq(tern_register_finalizer(gone, count_fin, (void *)(uintptr_t)2), TERN_OK);
    tern_finalizer ofn = NULL;
    void *od = NULL;
    cr_assert_eq(tern_register_finalizer_ex(gone, NULL, NULL, 0, &ofn, &od), TERN_OK);
    cr_assert_eq(ofn, count_fin);
    cr_assert_eq(od, (void *)(uintptr_t)2);
    cr_assert_eq(tern_unregister_finalizer(gone), TERN_ENOENT);
    gone = NULL;
    for (int r = 0; r < 6; r++) {
        collect_clean();
        tern_run_finalizers();
    }
    cr_assert_eq(atomic_load(&runs[1]), 0, "finalizer ran on a reachable object");
    cr_assert_eq(atomic_load(&runs[2]), 0, "an unregistered finalizer ran");
    cr_assert(obj_ok(keep, 1));
    /* bad arguments are errors, not crashes */
    int local;
    cr_assert_eq(tern_register_finalizer(&local, count_fin, NULL), TERN_EINVAL);
    cr_assert_eq(tern_register_finalizer((char *)keep + 8, count_fin, NULL), TERN_EINVAL);
    cr_assert_eq(tern_register_finalizer(NULL, count_fin, NULL), TERN_EINVAL);
    cr_assert_eq(tern_unregister_finalizer(keep), TERN_OK);
}

Test(finalize, explicit_free_unregisters)
{
    tern_finalize_on_demand(1);
    struct obj *o = obj_new(3);
    cr_assert_eq(tern_register_finalizer(o, count_fin, (void *)(uintptr_t)3), TERN_OK);
    tern_free(o);
    o = NULL;
    for (int r = 0; r < 4; r++) {
        churn(256 * KiB, sizeof(struct obj));
        collect_clean();
        tern_run_finalizers();
    }
    cr_assert_eq(atomic_load(&runs[3]), 0, "the finalizer of a freed object ran");
}

/* What a finalizable object references stays alive until its finalizer
 * has run; the finalizer may allocate and collect. */
static atomic_int child_ok, child_bad;
static void check_child(void *p, void *data)
{
    (void)data;
    struct obj *o = p;
    if (obj_ok(o->ref, o->id + 1000))
        atomic_fetch_add(&child_ok, 1);
    else
        atomic_fetch_add(&child_bad, 1);
    void *q = tern_malloc(100); /* a finalizer may allocate ... */
    memset(q, 1, 100);
    if (o->id % 8 == 0)
        tern_collect(); /* ... and collect */
}

static NOINLINE void make_parents(int n)
{
    for (int i = 0; i < n; i++) {
        struct obj *o = obj_new((uint32_t)i);
        o->ref = obj_new((uint32_t)i + 1000);
        cr_assert_eq(tern_register_finalizer(o, check_child, NULL), TERN_OK);
    }
}

/* The finalizer thread runs the ready finalizers when it gets a core: on a
 * busy machine that can take a while, so wait (up to 5 s) rather than
 * yield a fixed number of times. */
static void wait_finalizer_thread(void)
{
    for (int k = 0; k < 5000 && tern_finalizers_pending(); k++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void keeps_children(int on_demand)
{
    tern_finalize_on_demand(on_demand);
    make_parents(64);
    for (int r = 0; r < 40 && atomic_load(&child_ok) + atomic_load(&child_bad) < 60; r++) {
        churn(512 * KiB, sizeof(struct obj)); /* reuse would overwrite a dead child */
        collect_clean();
        if (on_demand)
            tern_run_finalizers();
        else
            wait_finalizer_thread();
    }
    for (int k = 0; k < 5000 && atomic_load(&child_ok) + atomic_load(&child_bad) < 57; k++)
        nanosleep(&(struct timespec){0, 1000000}, NULL); /* the last batch may still be running */
    cr_assert_eq(atomic_load(&child_bad), 0, "%d children were reclaimed before their parent's finalizer",
                 atomic_load(&child_bad));
    cr_assert_geq(atomic_load(&child_ok), 57, "only %d of 64 finalizers ran", atomic_load(&child_ok));
}

Test(finalize, keeps_what_it_references_on_demand) { keeps_children(1); }
Test(finalize, keeps_what_it_references_on_thread) { keeps_children(0); }

/* Ordered: a -> b, both finalizable: a's finalizer runs first, b's later. */
static atomic_int order[2], order_n;
static void note_order(void *p, void *data)
{
    (void)p;
    atomic_store(&order[atomic_fetch_add(&order_n, 1) & 1], (int)(uintptr_t)data);
}

static NOINLINE void make_pair(void)
{
    struct obj *a = obj_new(10), *b = obj_new(11);
    a->ref = b;
    cr_assert_eq(tern_register_finalizer(a, note_order, (void *)(uintptr_t)10), TERN_OK);
    cr_assert_eq(tern_register_finalizer(b, note_order, (void *)(uintptr_t)11), TERN_OK);
}

Test(finalize, ordered)
{
    tern_finalize_on_demand(1);
    make_pair();
    for (int r = 0; r < 2 * ROUNDS && atomic_load(&order_n) < 2; r++) {
        collect_clean();
        int ran = tern_run_finalizers();
        cr_assert_leq(ran, 1, "a and b were finalized in the same cycle");
    }
    cr_assert_eq(atomic_load(&order_n), 2);
    cr_assert_eq(atomic_load(&order[0]), 10, "b was finalized before a, which references it");
    cr_assert_eq(atomic_load(&order[1]), 11);
}

/* Resurrection: the finalizer stores the object; it stays alive and its
 * finalizer does not run again unless registered again. */
static struct obj *resurrected; /* a root */
static atomic_int res_runs;
static void resurrect(void *p, void *data)
{
    (void)data;
    atomic_fetch_add(&res_runs, 1);
    resurrected = p;
}

static NOINLINE void make_resurrectable(void)
{
    struct obj *o = obj_new(20);
    o->ref = obj_new(21);
    cr_assert_eq(tern_register_finalizer(o, resurrect, NULL), TERN_OK);
}

static NOINLINE void register_again(void)
{
    cr_assert_eq(tern_register_finalizer(resurrected, resurrect, NULL), TERN_OK);
    resurrected = NULL;
}

Test(finalize, resurrection)
{
    tern_finalize_on_demand(1);
    make_resurrectable();
    for (int r = 0; r < ROUNDS && !resurrected; r++) {
        collect_clean();
        tern_run_finalizers();
    }
    cr_assert_not_null(resurrected);
    for (int r = 0; r < 4; r++) {
        churn(512 * KiB, sizeof(struct obj));
        collect_clean();
        tern_run_finalizers();
    }
    cr_assert(obj_ok(resurrected, 20), "a resurrected object was reclaimed");
    cr_assert(obj_ok(resurrected->ref, 21), "what a resurrected object references was reclaimed");
    cr_assert_eq(atomic_load(&res_runs), 1);
    /* registered again, it is finalized again when dropped again */
    register_again();
    for (int r = 0; r < ROUNDS && !resurrected; r++) {
        collect_clean();
        tern_run_finalizers();
    }
    cr_assert_eq(atomic_load(&res_runs), 2);
}

/* ---- weak links --------------------------------------------------------------- */

static void **links; /* tern_malloc_atomic: Tern does not scan it */

static NOINLINE void make_weak(int n, int long_links)
{
    for (int i = 0; i < n; i++) {
        struct obj *o = obj_new((uint32_t)i);
        links[i] = o;
        cr_assert_eq((long_links ? tern_register_weak_long : tern_register_weak)(&links[i], o), TERN_OK);
    }
}

/* Every non-NULL link names its live, intact object. */
static NOINLINE void check_links(int n)
{
    for (int i = 0; i < n; i++)
        if (!is_null(&links[i]))
            cr_assert(obj_ok(links[i], (uint32_t)i), "link %d names a dead object", i);
}

Test(finalize, weak_cleared_when_dead)
{
    links = tern_malloc_atomic(64 * sizeof *links);
    if (links) memset(links, 0, 64 * sizeof *links); /* atomic memory is not zeroed */
    cr_assert_not_null(links);
    make_weak(64, 0);
    /* keep the even ones */
    struct obj **keep = tern_malloc(32 * sizeof *keep);
    for (int i = 0; i < 32; i++)
        keep[i] = links[2 * i];
    int cleared = 0;
    for (int r = 0; r < ROUNDS && cleared < 32; r++) {
        churn(256 * KiB, sizeof(struct obj));
        collect_clean();
        check_links(64);
        cleared = 0;
        for (int i = 0; i < 64; i++) {
            if (i % 2 == 0)
                cr_assert(!is_null(&links[i]), "the link to live object %d was cleared", i);
            else
                cleared += is_null(&links[i]);
        }
    }
    cr_assert_geq(cleared, 29, "only %d of 32 links to dead objects were cleared", cleared);
    for (int i = 0; i < 32; i++)
        cr_assert(obj_ok(keep[i], (uint32_t)(2 * i)));
    /* errors */
    cr_assert_eq(tern_register_weak(&links[0], keep[0]), TERN_EEXIST);
    cr_assert_eq(tern_unregister_weak(&links[0]), TERN_OK);
    cr_assert_eq(tern_unregister_weak(&links[0]), TERN_ENOENT);
    int local;
    cr_assert_eq(tern_register_weak(&links[0], &local), TERN_EINVAL);
    cr_assert_eq(tern_register_weak(NULL, keep[0]), TERN_EINVAL);
}

/* A link in memory Tern scans is an ordinary pointer: it keeps its target. */
Test(finalize, weak_link_in_scanned_memory_keeps_target)
{
    void **scanned = tern_malloc(sizeof(void *));
    struct obj *o = obj_new(5);
    *scanned = o;
    cr_assert_eq(tern_register_weak(scanned, o), TERN_OK);
    o = NULL;
    for (int r = 0; r < 4; r++) {
        churn(256 * KiB, sizeof(struct obj));
        collect_clean();
    }
    cr_assert(!is_null(scanned));
    cr_assert(obj_ok(*scanned, 5));
}

Test(finalize, weak_free_clears)
{
    links = tern_malloc_atomic(2 * sizeof *links);
    if (links) memset(links, 0, 2 * sizeof *links); /* atomic memory is not zeroed */
    struct obj *o = obj_new(6);
    links[0] = o;
    cr_assert_eq(tern_register_weak(&links[0], o), TERN_OK);
    tern_free(o);
    cr_assert(is_null(&links[0]), "tern_free of the target must clear the link");
    /* freeing the object holding a link ends its registration */
    struct obj *t = obj_new(7);
    links[1] = t;
    cr_assert_eq(tern_register_weak(&links[1], t), TERN_OK);
    void **old = links;
    tern_free(links);
    links = NULL;
    cr_assert_eq(tern_unregister_weak(&old[1]), TERN_ENOENT);
    cr_assert(obj_ok(t, 7));
}

/* Short links are cleared when the finalizable object becomes unreachable
 * (before its finalizer runs); long links only once it is reclaimed. */
static atomic_int sl_fin;
static atomic_int short_at_fin = -1, long_at_fin = -1;
static void look_links(void *p, void *data)
{
    (void)p, (void)data;
    atomic_store(&short_at_fin, is_null(&links[0]));
    atomic_store(&long_at_fin, is_null(&links[1]));
    atomic_fetch_add(&sl_fin, 1);
}

static NOINLINE void make_short_long(void)
{
    struct obj *o = obj_new(8);
    links[0] = links[1] = o;
    cr_assert_eq(tern_register_weak(&links[0], o), TERN_OK);
    cr_assert_eq(tern_register_weak_long(&links[1], o), TERN_OK);
    cr_assert_eq(tern_register_finalizer(o, look_links, NULL), TERN_OK);
}

Test(finalize, weak_short_and_long)
{
    tern_finalize_on_demand(1);
    links = tern_malloc_atomic(2 * sizeof *links);
    if (links) memset(links, 0, 2 * sizeof *links); /* atomic memory is not zeroed */
    make_short_long();
    for (int r = 0; r < ROUNDS && !atomic_load(&sl_fin); r++) {
        collect_clean();
        tern_run_finalizers();
    }
    cr_assert_eq(atomic_load(&sl_fin), 1);
    cr_assert_eq(atomic_load(&short_at_fin), 1, "the short link must be clear when the finalizer runs");
    cr_assert_eq(atomic_load(&long_at_fin), 0, "the long link must survive until the object dies");
    for (int r = 0; r < ROUNDS && !is_null(&links[1]); r++)
        collect_clean();
    cr_assert(is_null(&links[1]), "the long link was not cleared once the object died");
}

/* ---- ephemerons: a weak table ----------------------------------------------------- */

#define NB 64
struct table { void *slot[NB]; }; /* ephemerons: key -> struct val */
struct val { struct obj *key_back; uint32_t id, seed; unsigned char pay[32]; };

static NOINLINE void table_fill(struct table *t, struct obj **keys)
{
    for (uint32_t i = 0; i < NB; i++) {
        struct obj *k = obj_new(i);
        struct val *v = tern_malloc(sizeof *v);
        v->id = i;
        v->seed = i + 99;
        fill(v->pay, sizeof v->pay, v->seed);
        v->key_back = (i % 4 == 1) ? k : NULL; /* key-in-value: must not keep k alive */
        t->slot[i] = tern_ephemeron_new(k, v);
        cr_assert_not_null(t->slot[i]);
        if (i % 2 == 0)
            keys[i] = k; /* only the even keys stay reachable */
    }
}

/* Drops the entries whose key died; returns the live ones, and in *bad the
 * entries that break the contract. */
static NOINLINE int table_sweep(struct table *t, int *bad)
{
    int n = 0;
    *bad = 0;
    for (int i = 0; i < NB; i++) {
        void *e = t->slot[i];
        if (!e)
            continue;
        struct obj *k = tern_ephemeron_key(e);
        struct val *v = tern_ephemeron_value(e);
        if (!k) {
            *bad += v != NULL || i % 2 == 0; /* a dead key's value is gone; even keys live */
            t->slot[i] = NULL;
            continue;
        }
        n++;
        if (!obj_ok(k, (uint32_t)i) || !v || v->id != (uint32_t)i || !filled_ok(v->pay, sizeof v->pay, v->seed) ||
            (v->key_back && v->key_back != k))
            (*bad)++;
    }
    return n;
}

Test(finalize, ephemeron_weak_table)
{
    struct table *t = tern_malloc(sizeof *t);
    struct obj **keys = tern_malloc(NB * sizeof *keys);
    table_fill(t, keys);
    int live = NB, bad = 0;
    for (int r = 0; r < ROUNDS && live > NB / 2; r++) {
        churn(256 * KiB, sizeof(struct val));
        collect_clean();
        live = table_sweep(t, &bad);
        cr_assert_eq(bad, 0, "an entry with a live key lost its value, or a dead one kept it");
    }
    cr_assert_leq(live, NB / 2 + 3, "entries whose keys died were not dropped (%d live)", live);
    cr_assert_geq(live, NB / 2, "entries with live keys were dropped (%d live)", live);
    int cyc = 0;
    for (int i = 1; i < NB; i += 4)
        cyc += t->slot[i] == NULL;
    cr_assert_geq(cyc, NB / 4 - 2, "keys referenced from their own values stayed alive");
    for (int i = 0; i < NB; i += 2)
        cr_assert(obj_ok(keys[i], (uint32_t)i));
}

/* A chain: e1 = (k1 -> k2), e2 = (k2 -> k3), e3 = (k3 -> v): k1 alone keeps
 * all; without k1 everything goes.  A cycle: e4 = (k4 -> k5), e5 = (k5 -> k4)
 * keeps nothing alive. */
static void **ephs; /* atomic: holds the ephemerons without scanning them */
static NOINLINE uintptr_t make_chain(void)
{
    struct obj *k1 = obj_new(31), *k2 = obj_new(32), *k3 = obj_new(33), *v = obj_new(34);
    ephs[0] = tern_ephemeron_new(k3, v);
    ephs[1] = tern_ephemeron_new(k2, k3);
    ephs[2] = tern_ephemeron_new(k1, k2);
    struct obj *k4 = obj_new(35), *k5 = obj_new(36);
    ephs[3] = tern_ephemeron_new(k4, k5);
    ephs[4] = tern_ephemeron_new(k5, k4);
    for (int i = 0; i < 5; i++) cr_assert_not_null(ephs[i]);
    return hide(k1);
}

static void **strong; /* keeps the ephemerons themselves */
static struct obj *k1_root;

static NOINLINE void chain_alive(void)
{
    struct obj *k2 = tern_ephemeron_value(strong[2]);
    cr_assert(obj_ok(k2, 32), "k2 lost while k1 lives");
    struct obj *k3 = tern_ephemeron_value(strong[1]);
    cr_assert(obj_ok(k3, 33), "k3 lost while k1 lives");
    cr_assert(obj_ok(tern_ephemeron_value(strong[0]), 34), "v lost while k1 lives");
    cr_assert_eq(tern_ephemeron_key(strong[2]), k1_root);
}

Test(finalize, ephemeron_chains_and_cycles)
{
    ephs = tern_malloc_atomic(8 * sizeof *ephs);
    if (ephs) memset(ephs, 0, 8 * sizeof *ephs); /* atomic memory is not zeroed */
    strong = tern_malloc(8 * sizeof *strong);
    uintptr_t hk1 = make_chain();
    for (int i = 0; i < 5; i++) strong[i] = ephs[i];
    k1_root = unhide(hk1);
    for (int r = 0; r < 3; r++) {
        churn(256 * KiB, sizeof(struct obj));
        collect_clean();
        chain_alive();
    }
    k1_root = NULL;
    int gone = 0;
    for (int r = 0; r < ROUNDS && gone < 5; r++) {
        collect_clean();
        gone = 0;
        for (int i = 0; i < 5; i++)
            gone += tern_ephemeron_key(strong[i]) == NULL && tern_ephemeron_value(strong[i]) == NULL;
    }
    cr_assert_eq(gone, 5, "a chain or cycle of ephemerons kept its keys alive (%d of 5 cleared)", gone);
    cr_assert_eq(tern_ephemeron_set_value(strong[0], strong), TERN_ENOENT);
    cr_assert_null(tern_ephemeron_new(NULL, NULL));
}

/* A long chain, made in a scrambled order: ephemeron i maps key i to key
 * i + 1, so keeping key 0 keeps all, whatever order the pause visits them. */
#define CHAIN 48
static void **chain_e;   /* scanned: keeps the ephemerons */
static struct obj *chain_head;

static NOINLINE void make_long_chain(void)
{
    struct obj **k = tern_malloc((CHAIN + 1) * sizeof *k); /* holds the keys while they are made */
    for (int i = 0; i <= CHAIN; i++) k[i] = obj_new(200 + (uint32_t)i);
    for (int j = 0; j < CHAIN; j++) {
        int i = (j * 17) % CHAIN; /* 17 is prime to 48: a permutation */
        chain_e[i] = tern_ephemeron_new(k[i], k[i + 1]);
        cr_assert_not_null(chain_e[i]);
    }
    chain_head = k[0];
    memset(k, 0, (CHAIN + 1) * sizeof *k);
}

static NOINLINE void long_chain_alive(void)
{
    for (int i = 0; i < CHAIN; i++) {
        struct obj *v = tern_ephemeron_value(chain_e[i]);
        cr_assert(obj_ok(v, 200 + (uint32_t)i + 1), "chain link %d lost while its head lives (key %p head %p value %p id %u)", i,
                  tern_ephemeron_key(chain_e[i]), (void *)chain_head, (void *)v, v ? v->id : 0);
    }
}

Test(finalize, ephemeron_long_chain)
{
    chain_e = tern_malloc(CHAIN * sizeof *chain_e);
    make_long_chain();
    for (int r = 0; r < 3; r++) {
        churn(256 * KiB, sizeof(struct obj));
        collect_clean();
        long_chain_alive();
    }
    chain_head = NULL;
    int gone = 0;
    for (int r = 0; r < ROUNDS && gone < CHAIN; r++) {
        collect_clean();
        gone = 0;
        for (int i = 0; i < CHAIN; i++) gone += tern_ephemeron_key(chain_e[i]) == NULL;
    }
    cr_assert_geq(gone, CHAIN - 2, "a dropped chain kept %d keys alive", CHAIN - gone);
}

/* ---- uncollectable ------------------------------------------------------------ */

static NOINLINE uintptr_t make_uncollectable(void)
{
    struct obj *u = tern_malloc_uncollectable(sizeof *u);
    cr_assert_not_null(u);
    u->id = 40;
    u->seed = 41;
    fill(u->pay, sizeof u->pay, u->seed);
    u->ref = obj_new(42); /* kept alive only through u */
    return hide(u);
}

static NOINLINE uintptr_t check_and_move(uintptr_t hu)
{
    struct obj *u = unhide(hu);
    cr_assert(obj_ok(u, 40) && obj_ok(u->ref, 42));
    struct obj *u2 = tern_realloc(u, 4 * sizeof *u); /* moves; keeps it uncollectable */
    cr_assert_not_null(u2);
    cr_assert(u2 != u);
    return hide(u2);
}

static NOINLINE void check_and_free(uintptr_t hu2)
{
    struct obj *u2 = unhide(hu2);
    cr_assert(tern_base(u2) == u2 && u2->id == 40 && obj_ok(u2->ref, 42), "a reallocated uncollectable object died");
    tern_free(u2);
}

static NOINLINE void link_uncollectable(uintptr_t hu)
{
    struct obj *u = unhide(hu);
    links[0] = u;
    links[1] = u->ref;
    cr_assert_eq(tern_register_weak(&links[0], u), TERN_OK);
    cr_assert_eq(tern_register_weak(&links[1], u->ref), TERN_OK);
}

Test(finalize, uncollectable)
{
    links = tern_malloc_atomic(2 * sizeof *links);
    if (links) memset(links, 0, 2 * sizeof *links); /* atomic memory is not zeroed */
    uintptr_t hu = make_uncollectable();
    link_uncollectable(hu);
    for (int r = 0; r < 5; r++) {
        churn(512 * KiB, sizeof(struct obj));
        collect_clean();
    }
    cr_assert(!is_null(&links[0]) && !is_null(&links[1]), "an uncollectable object or its referent died");
    uintptr_t hu2 = check_and_move(hu);
    cr_assert(is_null(&links[0]), "realloc freed the old object: its link must be clear");
    for (int r = 0; r < 3; r++) {
        churn(256 * KiB, sizeof(struct obj));
        collect_clean();
    }
    check_and_free(hu2);
    for (int r = 0; r < ROUNDS && !is_null(&links[1]); r++)
        collect_clean();
    cr_assert(is_null(&links[1]), "after tern_free, what it referenced must die");
}

/* ---- typed layouts --------------------------------------------------------------- */

struct typed { uintptr_t word0; uintptr_t word1; uintptr_t word2; uintptr_t word3; };

static tern_descr tdesc;
static NOINLINE uintptr_t make_typed(void)
{
    struct typed *t = tern_malloc_typed(sizeof *t, tdesc);
    cr_assert_not_null(t);
    cr_assert(all_zero(t, sizeof *t));
    struct obj *a = obj_new(50), *b = obj_new(51), *c = obj_new(52);
    t->word0 = (uintptr_t)a; /* pointer word */
    t->word1 = (uintptr_t)b; /* not a pointer word: keeps nothing */
    t->word2 = (uintptr_t)c; /* pointer word */
    t->word3 = (uintptr_t)b; /* past the descriptor */
    links[0] = a;
    links[1] = b;
    links[2] = c;
    cr_assert_eq(tern_register_weak(&links[0], a), TERN_OK);
    cr_assert_eq(tern_register_weak(&links[1], b), TERN_OK);
    cr_assert_eq(tern_register_weak(&links[2], c), TERN_OK);
    return (uintptr_t)t;
}

Test(finalize, typed_scans_only_pointer_words)
{
    uint64_t bm = (1u << 0) | (1u << 2);
    tdesc = tern_make_descriptor(&bm, 3);
    cr_assert_not_null(tdesc);
    cr_assert_eq(tern_make_descriptor(&bm, 3), tdesc, "the same layout gives the same descriptor");
    cr_assert_null(tern_make_descriptor(&bm, 0));
    cr_assert_null(tern_malloc_typed(16, NULL));
    links = tern_malloc_atomic(3 * sizeof *links);
    if (links) memset(links, 0, 3 * sizeof *links); /* atomic memory is not zeroed */
    struct typed *t = (struct typed *)make_typed();
    for (int r = 0; r < ROUNDS && !is_null(&links[1]); r++) {
        churn(256 * KiB, sizeof(struct obj));
        collect_clean();
        cr_assert(!is_null(&links[0]) && !is_null(&links[2]), "a pointer word did not keep its target");
    }
    cr_assert(is_null(&links[1]), "a non-pointer word kept its target alive");
    cr_assert(obj_ok((struct obj *)t->word0, 50) && obj_ok((struct obj *)t->word2, 52));
    cr_assert_eq(tern_size(t), 32);
    /* many typed objects in a list through a pointer word, with churn */
    uint64_t lbm = 1; /* word 0: next */
    tern_descr ld = tern_make_descriptor(&lbm, 4);
    uintptr_t *head = NULL;
    for (int i = 0; i < 20000; i++) {
        uintptr_t *n = tern_malloc_typed(32, ld);
        cr_assert_not_null(n);
        n[0] = (uintptr_t)head;
        n[1] = (uintptr_t)i;
        n[2] = (uintptr_t)i * 3;
        head = n;
        if (i % 4096 == 0)
            collect_clean();
    }
    collect_clean();
    int i = 19999;
    for (uintptr_t *n = head; n; n = (uintptr_t *)n[0], i--)
        cr_assert(n[1] == (uintptr_t)i && n[2] == (uintptr_t)i * 3, "typed list node %d damaged", i);
    cr_assert_eq(i, -1);
}

/* ---- everything at once, from several threads, cycles back to back ------------- */

#define NTHR 3
#define ITERS 1500
static atomic_int stop_collector;
static atomic_int thr_runs[NTHR][ITERS];
static atomic_int thr_bad;

static void *collector(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_collector)) {
        tern_collect();
        tern_run_finalizers();
    }
    return NULL;
}

static void thr_fin(void *p, void *data)
{
    struct obj *o = p;
    uintptr_t d = (uintptr_t)data;
    unsigned t = (unsigned)(d / ITERS), i = (unsigned)(d % ITERS);
    if (t >= NTHR || o->id != d || !filled_ok(o->pay, sizeof o->pay, o->seed) || !obj_ok(o->ref, (uint32_t)d + 1))
        atomic_fetch_add(&thr_bad, 1);
    else
        atomic_fetch_add(&thr_runs[t][i], 1);
}

static void *worker(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    void **wl = tern_malloc_atomic(64 * sizeof *wl);   /* weak links, unscanned */
    T_ASSERT(wl, "alloc");
    memset(wl, 0, 64 * sizeof *wl); /* atomic memory is not zeroed */
    struct obj **strong = tern_malloc(64 * sizeof *strong);
    void **eph = tern_malloc(64 * sizeof *eph);
    uint64_t bm = 1;
    tern_descr d = tern_make_descriptor(&bm, 2), ld = tern_make_descriptor(&bm, 3);
    uintptr_t *thead = NULL, tcount = 0;
    uint64_t rng = 0x1234567u + t;
    for (unsigned i = 0; i < ITERS; i++) {
        uint32_t id = t * ITERS + i;
        unsigned k = (unsigned)(rng_next(&rng) % 64);
        /* a finalizable object with a child */
        struct obj *o = tern_malloc(sizeof *o);
        T_ASSERT(o, "alloc");
        o->id = id;
        o->seed = id * 7 + 1;
        fill(o->pay, sizeof o->pay, o->seed);
        struct obj *c = tern_malloc(sizeof *c);
        T_ASSERT(c, "alloc");
        c->id = id + 1;
        c->seed = (id + 1) * 7 + 1;
        fill(c->pay, sizeof c->pay, c->seed);
        TERN_STORE(&o->ref, c);
        T_ASSERT(tern_register_finalizer(o, thr_fin, (void *)(uintptr_t)id) == TERN_OK, "register");
        /* a weak link, replacing the one in slot k; half of the targets are kept */
        struct obj *w = __atomic_load_n((struct obj **)&wl[k], __ATOMIC_RELAXED);
        if (w)
            T_ASSERT(tern_base(w) == w && filled_ok(w->pay, sizeof w->pay, w->seed), "a weak link named a dead object");
        tern_unregister_weak(&wl[k]);
        struct obj *x = tern_malloc(sizeof *x);
        x->id = id;
        x->seed = id + 5;
        fill(x->pay, sizeof x->pay, x->seed);
        wl[k] = x;
        T_ASSERT(tern_register_weak(&wl[k], x) == TERN_OK, "weak");
        TERN_STORE(&strong[k], (i & 1) ? x : NULL);
        /* an ephemeron keyed by x whose value points back at x */
        struct obj *v = tern_malloc(sizeof *v);
        v->id = id;
        v->seed = id + 9;
        fill(v->pay, sizeof v->pay, v->seed);
        TERN_STORE(&v->ref, x);
        void *e = tern_ephemeron_new(x, v);
        T_ASSERT(e, "ephemeron");
        TERN_STORE(&eph[k], e);
        /* typed and uncollectable objects */
        uintptr_t *ty = tern_malloc_typed(16, d);
        T_ASSERT(ty, "typed");
        TERN_STORE((void **)&ty[0], x);
        /* a list of typed nodes (word 0: next, word 1: count, not a pointer),
         * grown at the head and, every 4th time, by a node spliced in after
         * the head: a write into an old node that marking must rescan */
        uintptr_t *tn = tern_malloc_typed(24, ld);
        T_ASSERT(tn, "typed");
        tn[1] = ++tcount;
        if (thead && (i % 4 == 3)) {
            TERN_STORE((void **)&tn[0], (void *)thead[0]);
            TERN_STORE((void **)&thead[0], tn);
        } else {
            TERN_STORE((void **)&tn[0], thead);
            thead = tn;
        }
        if (i % 64 == 0) {
            void *u = tern_malloc_uncollectable(48);
            T_ASSERT(u, "uncollectable");
            tern_free(u);
        }
        /* every ephemeron whose key still lives has its value */
        for (unsigned j = 0; j < 64; j += 7) {
            void *ej = eph[j];
            if (!ej) continue;
            struct obj *kj = tern_ephemeron_key(ej), *vj = tern_ephemeron_value(ej);
            if (kj) {
                T_ASSERT(tern_base(kj) == kj && filled_ok(kj->pay, sizeof kj->pay, kj->seed), "dead key");
                T_ASSERT(vj && vj->ref == kj && filled_ok(vj->pay, sizeof vj->pay, vj->seed),
                         "an ephemeron with a live key lost its value (ephemeron %p, key %p id %u, value %p, "
                         "its base %p, ref %p, id %u, fill %s)",
                         ej, (void *)kj, kj->id, (void *)vj, vj ? tern_base(vj) : NULL, vj ? (void *)vj->ref : NULL,
                         vj ? vj->id : 0, vj && filled_ok(vj->pay, sizeof vj->pay, vj->seed) ? "ok" : "bad");
            }
        }
    }
    /* every typed node is still there, each count once */
    unsigned char *seen = calloc(tcount + 1, 1);
    uintptr_t n = 0;
    for (uintptr_t *p = thead; p; p = (uintptr_t *)p[0], n++) {
        T_ASSERT(tern_base(p) == p && p[1] >= 1 && p[1] <= tcount && !seen[p[1]], "typed list damaged at %lu",
                 (unsigned long)n);
        seen[p[1]] = 1;
    }
    T_ASSERT(n == tcount, "typed list has %lu of %lu nodes", (unsigned long)n, (unsigned long)tcount);
    free(seen);
    return NULL;
}

static NOINLINE void run_threads(void)
{
    pthread_t col, th[NTHR];
    cr_assert_eq(pthread_create(&col, NULL, collector, NULL), 0);
    for (uintptr_t t = 0; t < NTHR; t++) cr_assert_eq(pthread_create(&th[t], NULL, worker, (void *)t), 0);
    for (int t = 0; t < NTHR; t++) pthread_join(th[t], NULL);
    atomic_store(&stop_collector, 1);
    pthread_join(col, NULL);
}

Test(finalize, all_features_threads)
{
    run_threads();
    for (int r = 0; r < ROUNDS; r++) {
        collect_clean();
        tern_run_finalizers();
    }
    int done = 0, twice = 0;
    for (int t = 0; t < NTHR; t++)
        for (int i = 0; i < ITERS; i++) {
            int r = atomic_load(&thr_runs[t][i]);
            done += r > 0;
            twice += r > 1;
        }
    cr_assert_eq(atomic_load(&thr_bad), 0, "%d finalizers saw a damaged object or child", atomic_load(&thr_bad));
    cr_assert_eq(twice, 0, "%d finalizers ran twice", twice);
    cr_assert_geq(done, NTHR * ITERS * 9 / 10, "only %d of %d finalizers ran", done, NTHR * ITERS);
}

/* ---- registering while the collector pauses ----------------------------------
 *
 * Each registration takes the lock a pause holds.  A thread waiting for it
 * must still show the collector what it registers: the ephemeron's value
 * lives only in the (unscanned) ephemeron until then, and an object being
 * given a finalizer may have no other reference at all.  Here a thread
 * registers fresh objects that nothing else references while another runs
 * collections back to back, so many registrations wait out a pause.  A
 * lost value (freed, its slot reused) or a finalizer that never runs, or
 * runs on a reused object, is the bug (found as 1 run in 100 of
 * all_features_threads under TERN_BARRIER=stw). */

#define REG_MIN 4000     /* registrations at least */
#define REG_CYCLES 100   /* ... and until this many cycles ran meanwhile */
#define REG_N 200000     /* at most */
#define REG_SLOTS 256
static atomic_int reg_runs[REG_N], reg_bad;

static uint64_t cycles_now(void)
{
    struct tern_stats st;
    tern_get_stats(&st);
    return st.cycles;
}

static void reg_fin(void *p, void *data)
{
    uintptr_t id = (uintptr_t)data;
    if (id >= REG_N || !obj_ok(p, (uint32_t)id)) atomic_fetch_add(&reg_bad, 1);
    else atomic_fetch_add(&reg_runs[id], 1);
}

Test(finalize, registering_while_the_collector_pauses)
{
    struct obj **keys = tern_malloc(REG_SLOTS * sizeof *keys);
    void **ephs = tern_malloc(REG_SLOTS * sizeof *ephs);
    uint32_t *ids = calloc(REG_SLOTS, sizeof *ids); /* not Tern memory: plain numbers */
    cr_assert(keys && ephs && ids);
    for (uint32_t k = 0; k < REG_SLOTS; k++) keys[k] = obj_new(REG_N + k);
    pthread_t col;
    cr_assert_eq(pthread_create(&col, NULL, collector, NULL), 0); /* collections back to back */
    int lost = 0;
    uint32_t n = 0;
    uint64_t c0 = cycles_now();
    for (uint32_t i = 0; i < REG_N; i++, n++) {
        if (i >= REG_MIN && i % REG_SLOTS == 0 && cycles_now() - c0 >= REG_CYCLES) break;
        unsigned k = i % REG_SLOTS;
        /* the value and the finalizable object are referenced by nothing
         * but the registration from the moment they are passed in */
        void *e = tern_ephemeron_new(keys[k], obj_new(i));
        cr_assert_not_null(e);
        ephs[k] = e;
        ids[k] = i;
        cr_assert_eq(tern_register_finalizer(obj_new(i), reg_fin, (void *)(uintptr_t)i), TERN_OK);
        if (k == REG_SLOTS - 1)
            for (unsigned j = 0; j < REG_SLOTS; j++)
                lost += !obj_ok(tern_ephemeron_value(ephs[j]), ids[j]);
    }
    atomic_store(&stop_collector, 1);
    pthread_join(col, NULL);
    cr_assert_eq(lost, 0, "%d ephemeron values with a live key were lost", lost);
    int done = 0, twice = 0;
    for (int r = 0; r < ROUNDS * 2 && done < (int)n; r++) {
        collect_clean();
        tern_run_finalizers();
        done = 0;
        for (uint32_t i = 0; i < n; i++) done += atomic_load(&reg_runs[i]) > 0;
    }
    for (uint32_t i = 0; i < n; i++) twice += atomic_load(&reg_runs[i]) > 1;
    cr_assert_eq(atomic_load(&reg_bad), 0, "%d finalizers ran on a damaged or reused object", atomic_load(&reg_bad));
    cr_assert_eq(twice, 0, "%d finalizers ran twice", twice);
    cr_assert_geq(done, (int)n * 99 / 100, "only %d of %u finalizers ran", done, n);
    free(ids);
}

/* ---- fork: the finalizer thread does not survive; the child restarts it ----- */

static atomic_int fork_runs;
static void fork_fin(void *p, void *data)
{
    (void)p, (void)data;
    atomic_fetch_add(&fork_runs, 1);
}

static NOINLINE void make_fork_finalizable(int n)
{
    for (int i = 0; i < n; i++) {
        struct obj *o = obj_new((uint32_t)i);
        if (tern_register_finalizer(o, fork_fin, NULL) != TERN_OK)
            _exit(5);
    }
}

Test(finalize, fork_restarts_thread)
{
    make_fork_finalizable(10); /* starts the finalizer thread */
    for (int r = 0; r < ROUNDS && atomic_load(&fork_runs) < 9; r++) {
        collect_clean();
        wait_finalizer_thread();
    }
    for (int k = 0; k < 5000 && atomic_load(&fork_runs) < 9; k++)
        nanosleep(&(struct timespec){0, 1000000}, NULL); /* the last batch may still be running */
    cr_assert_geq(atomic_load(&fork_runs), 9);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        atomic_store(&fork_runs, 0);
        make_fork_finalizable(20);
        for (int r = 0; r < 40 && atomic_load(&fork_runs) < 18; r++) {
            collect_clean();
            wait_finalizer_thread();
        }
        for (int k = 0; k < 5000 && atomic_load(&fork_runs) < 18; k++)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        /* run by the restarted thread, never here (no tern_run_finalizers) */
        _exit(atomic_load(&fork_runs) >= 18 ? 0 : 4);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's finalizers did not run (status %d)", st);
}
