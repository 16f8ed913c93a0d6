/* test_threads.c — many threads allocate and share structures while
 * collections happen. */
#include "common.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>

TestSuite(threads, .timeout = 60);

#define NTHREADS 8
#define NSLOTS   512
#define ITERS    30000

struct rec {
    uint32_t owner, seq;
    uint32_t len;      /* bytes of inline payload */
    uint32_t blob_len; /* bytes in the atomic blob */
    struct rec *prev;  /* the record this one replaced, if any */
    unsigned char *blob;
    unsigned char data[];
};

static struct rec **shared;   /* Tern memory; this static is its only root */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int checked_foreign;

static inline uint32_t rec_seed(uint32_t owner, uint32_t seq) { return owner * 0x10000u + seq; }

/* Checks a record; returns NULL if fine, else what is wrong. */
static const char *rec_problem(const struct rec *r)
{
    if (tern_base(r) != r)
        return "record is not a live object";
    if (tern_size(r) < sizeof *r + r->len)
        return "record smaller than its length";
    if (r->owner >= NTHREADS)
        return "bad owner";
    uint32_t s = rec_seed(r->owner, r->seq);
    if (!filled_ok(r->data, r->len, s))
        return "inline payload corrupted";
    if (r->blob_len) {
        if (!r->blob || tern_base(r->blob) != r->blob)
            return "blob is not a live object";
        if (!filled_ok(r->blob, r->blob_len, s + 1))
            return "blob corrupted";
    } else if (r->blob) {
        return "unexpected blob";
    }
    return NULL;
}

static struct rec *rec_new(uint32_t owner, uint32_t seq, uint64_t *rng)
{
    uint32_t len = (uint32_t)(rng_next(rng) % 1500);
    uint32_t blob_len = (rng_next(rng) % 4 == 0) ? 0 : (uint32_t)(1 + rng_next(rng) % 4000);
    if (seq % 1000 == 999)
        blob_len = 70000; /* now and then a large blob */
    struct rec *r = tern_malloc(sizeof *r + len);
    T_ASSERT(r != NULL, "tern_malloc failed");
    r->owner = owner;
    r->seq = seq;
    r->len = len;
    fill(r->data, len, rec_seed(owner, seq));
    if (blob_len) {
        r->blob = tern_malloc_atomic(blob_len);
        T_ASSERT(r->blob != NULL, "tern_malloc_atomic failed");
        fill(r->blob, blob_len, rec_seed(owner, seq) + 1);
        r->blob_len = blob_len;
    }
    return r;
}

static void *worker(void *arg)
{
    uint32_t me = (uint32_t)(uintptr_t)arg;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (me + 1);
    /* my last few records, reachable from my stack only through this array */
    struct rec **mine = tern_malloc(64 * sizeof *mine);
    T_ASSERT(mine != NULL, "tern_malloc failed");
    for (uint32_t seq = 0; seq < ITERS; seq++) {
        struct rec *r = rec_new(me, seq, &rng);
        mine[seq % 64] = r;
        size_t idx = (size_t)(rng_next(&rng) % NSLOTS);
        pthread_mutex_lock(&mu);
        struct rec *old = shared[idx];
        if (old) {
            const char *why = rec_problem(old);
            T_ASSERT(why == NULL, "thread %u: slot %zu (owner %u seq %u): %s", me, idx, old->owner, old->seq, why);
            if (old->prev) {
                why = rec_problem(old->prev);
                T_ASSERT(why == NULL, "thread %u: previous record in slot %zu: %s", me, idx, why);
            }
            if (old->owner != me)
                atomic_fetch_add(&checked_foreign, 1);
            old->prev = NULL; /* keep chains one deep */
        }
        r->prev = old;
        shared[idx] = r;
        pthread_mutex_unlock(&mu);
        if (seq % 64 == 63) {
            for (int i = 0; i < 64; i++) {
                const char *why = rec_problem(mine[i]);
                T_ASSERT(why == NULL, "thread %u: own record %d: %s", me, i, why);
            }
        }
        if (seq % 1500 == 750)
            tern_collect();
    }
    return NULL;
}

Test(threads, eight_threads_share_structures)
{
    shared = tern_malloc(NSLOTS * sizeof *shared);
    cr_assert_not_null(shared);
    struct tern_stats before = get_stats();
    pthread_t t[NTHREADS];
    for (uintptr_t i = 0; i < NTHREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, worker, (void *)i), 0);
    for (int i = 0; i < NTHREADS; i++)
        cr_assert_eq(pthread_join(t[i], NULL), 0);
    struct tern_stats after = get_stats();
    cr_assert_gt(after.cycles, before.cycles);
    cr_assert_gt(atomic_load(&checked_foreign), 1000, "threads rarely saw each other's records");
    tern_collect();
    churn(16 * MiB, 0);
    for (int i = 0; i < NSLOTS; i++) {
        cr_assert_not_null(shared[i]);
        const char *why = rec_problem(shared[i]);
        cr_assert_null(why, "slot %d: %s", i, why);
        if (shared[i]->prev)
            cr_assert_null(rec_problem(shared[i]->prev), "slot %d prev: %s", i, rec_problem(shared[i]->prev));
    }
}

/* ---- threads that come and go while others collect ---------------------- */

static atomic_int stop_collecting;
static atomic_int threads_done;

static void *short_lived(void *arg)
{
    uint64_t rng = (uintptr_t)arg * 7919 + 1;
    struct rec *keep[16];
    for (int i = 0; i < 16; i++)
        keep[i] = rec_new(0, (uint32_t)i, &rng);
    churn(256 * KiB, 0);
    for (int i = 0; i < 16; i++) {
        const char *why = rec_problem(keep[i]);
        T_ASSERT(why == NULL, "short-lived thread: record %d: %s", i, why);
    }
    atomic_fetch_add(&threads_done, 1);
    return NULL;
}

static void *collector(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_collecting)) {
        churn(512 * KiB, 0);
        tern_collect();
    }
    return NULL;
}

Test(threads, threads_come_and_go_while_collecting)
{
    pthread_t c;
    cr_assert_eq(pthread_create(&c, NULL, collector, NULL), 0);
    int started = 0;
    for (int round = 0; round < 40; round++) {
        pthread_t t[8];
        for (int i = 0; i < 8; i++) {
            if (i == 7) { /* one detached thread per round */
                pthread_attr_t a;
                pthread_attr_init(&a);
                pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
                cr_assert_eq(pthread_create(&t[i], &a, short_lived, (void *)(uintptr_t)(round * 8 + i)), 0);
                pthread_attr_destroy(&a);
            } else {
                cr_assert_eq(pthread_create(&t[i], NULL, short_lived, (void *)(uintptr_t)(round * 8 + i)), 0);
            }
            started++;
        }
        for (int i = 0; i < 7; i++)
            cr_assert_eq(pthread_join(t[i], NULL), 0);
    }
    while (atomic_load(&threads_done) < started)
        usleep(1000);
    atomic_store(&stop_collecting, 1);
    cr_assert_eq(pthread_join(c, NULL), 0);
    tern_collect();
    struct tern_stats st = get_stats();
    cr_assert_gt(st.cycles, 0);
}

/* ---- threads with signals blocked ---------------------------------------
 * Libraries commonly start worker threads with every signal blocked
 * (nanomsg does, and so every Criterion test process has such a thread), and
 * programs commonly block all signals in threads that wait in sigwait().
 * Collections must still complete, and such a thread's stack is still a root. */

static sem_t blk_ready, blk_go;
static uintptr_t blk_hidden;
static void *volatile blk_pin;

static NOINLINE void blk_make(void)
{
    char *p = tern_malloc(4000);
    T_ASSERT(p != NULL, "tern_malloc failed");
    fill(p, 4000, 4242);
    blk_hidden = hide(p);
    blk_pin = p;
}

static NOINLINE void blk_take(void *volatile *slot)
{
    *slot = unhide(blk_hidden);
}

static void *blocked_holder(void *arg)
{
    int block_itself = arg != NULL;
    if (block_itself) {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
    }
    /* Tern keeps the stop signal and SIGSEGV (the mprotect barrier's
     * faults) out of any mask a thread asks for. */
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    int mask_ok = !sigismember(&cur, SIGPWR) && !sigismember(&cur, SIGSEGV) && sigismember(&cur, SIGUSR1);
    void *volatile slot;
    blk_take(&slot);
    clobber_stack();
    sem_post(&blk_ready);
    while (sem_wait(&blk_go) != 0)
        ;
    return (void *)(intptr_t)(mask_ok ? (hide(slot) == blk_hidden && filled_ok(slot, 4000, 4242)) : 2);
}

static NOINLINE void blk_check(int round)
{
    char *p = unhide(blk_hidden);
    cr_assert_eq(tern_base(p), p, "round %d: the object held by the signal-blocked thread was reclaimed", round);
    cr_assert(filled_ok(p, 4000, 4242), "round %d: the object held by the signal-blocked thread is corrupted", round);
}

static void run_blocked(int block_itself)
{
    cr_assert_eq(sem_init(&blk_ready, 0, 0), 0);
    cr_assert_eq(sem_init(&blk_go, 0, 0), 0);
    blk_make();
    sigset_t all, old;
    sigfillset(&all);
    pthread_t t;
    if (!block_itself) /* the new thread inherits a fully blocked mask */
        cr_assert_eq(pthread_sigmask(SIG_BLOCK, &all, &old), 0);
    int rc = pthread_create(&t, NULL, blocked_holder, block_itself ? (void *)1 : NULL);
    if (!block_itself)
        cr_assert_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    cr_assert_eq(rc, 0);
    while (sem_wait(&blk_ready) != 0)
        ;
    blk_pin = NULL;
    for (int round = 0; round < 10; round++) {
        churn(2 * MiB, 4000);
        clobber_stack();
        tern_collect(); /* hangs if the collector cannot stop the thread */
        blk_check(round);
    }
    sem_post(&blk_go);
    void *ok;
    cr_assert_eq(pthread_join(t, &ok), 0);
    cr_assert_neq((intptr_t)ok, 2, "the thread's mask blocks SIGPWR or SIGSEGV, or not SIGUSR1");
    cr_assert_eq((intptr_t)ok, 1, "the signal-blocked thread saw its object change");
}

Test(threads, thread_created_with_all_signals_blocked, .timeout = 30)
{
    run_blocked(0);
}

Test(threads, thread_that_blocks_all_signals_itself, .timeout = 30)
{
    run_blocked(1);
}
