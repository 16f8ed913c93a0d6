/* test_api.c — tern_get_stats, tern_strerror, tern_init, root and thread
 * registration errors, tern_base/tern_size on non-objects. */
#include "common.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <semaphore.h>

TestSuite(api, .timeout = 30);

Test(api, strerror_names_every_code)
{
    static const int codes[] = { TERN_OK, TERN_EINVAL, TERN_ENOMEM, TERN_ENOENT, TERN_EEXIST, TERN_EAGAIN };
    const char *msg[6];
    for (int i = 0; i < 6; i++) {
        msg[i] = tern_strerror(codes[i]);
        cr_assert_not_null(msg[i], "tern_strerror(%d) is NULL", codes[i]);
        cr_assert_str_not_empty(msg[i], "tern_strerror(%d) is empty", codes[i]);
    }
    for (int i = 0; i < 6; i++)
        for (int j = i + 1; j < 6; j++)
            cr_assert_str_neq(msg[i], msg[j], "codes %d and %d have the same message", codes[i], codes[j]);
    static const int unknown[] = { -6, -100, 1, 42, -2147483647 - 1 };
    for (int i = 0; i < 5; i++) {
        const char *m = tern_strerror(unknown[i]);
        cr_assert_not_null(m, "tern_strerror(%d) must not be NULL", unknown[i]);
        cr_assert_str_not_empty(m);
    }
}

Test(api, version_is_set)
{
    cr_assert_str_eq(TERN_VERSION, "0.1.0");
}

Test(api, get_stats_basics)
{
    cr_assert_eq(tern_get_stats(NULL), TERN_EINVAL, "tern_get_stats(NULL)");
    struct tern_stats a, b, c;
    cr_assert_eq(tern_get_stats(&a), TERN_OK);
    enum { N = 5000, SZ = 100, SLACK = 128 };
    void **keep = tern_malloc(N * sizeof *keep);
    cr_assert_not_null(keep);
    for (int i = 0; i < N; i++) {
        keep[i] = tern_malloc(SZ);
        cr_assert_not_null(keep[i]);
    }
    void *big = tern_malloc(4 * MiB); /* live through the collection below */
    cr_assert_not_null(big);
    cr_assert_eq(tern_get_stats(&b), TERN_OK);
    /* per-thread caches publish their counts in batches (a cache word of
     * up to 64 slots at a time), so allow that much slack */
    cr_assert_geq(b.allocated_objects - a.allocated_objects, N - SLACK,
                  "allocated_objects grew by %llu for %d objects",
                  (unsigned long long)(b.allocated_objects - a.allocated_objects), N + 2);
    cr_assert_geq(b.allocated_bytes - a.allocated_bytes, (uint64_t)(N - SLACK) * SZ + 4 * MiB,
                  "allocated_bytes grew by %llu",
                  (unsigned long long)(b.allocated_bytes - a.allocated_bytes));
    cr_assert_geq(b.in_use_bytes, (uint64_t)(N - SLACK) * SZ + 4 * MiB);
    cr_assert_geq(b.threads, 1, "the calling thread is registered");
    cr_assert_gt(b.gc_percent, 0, "the default gc_percent is on");

    tern_collect();
    cr_assert_eq(tern_get_stats(&c), TERN_OK);
    /* tern_collect runs one cycle that starts after the call; a cycle the
     * heap goal started just before may end first */
    cr_assert_geq(c.cycles, b.cycles + 1, "tern_collect ran a cycle");
    cr_assert_leq(c.cycles, b.cycles + 2, "one tern_collect, at most one cycle besides");
    cr_assert_geq(c.live_bytes, (uint64_t)N * SZ + 4 * MiB, "live_bytes %llu misses live data",
                  (unsigned long long)c.live_bytes);
    cr_assert_leq(c.in_use_bytes, c.heap_bytes, "in_use %llu > heap %llu",
                  (unsigned long long)c.in_use_bytes, (unsigned long long)c.heap_bytes);
    cr_assert_leq(c.heap_bytes, c.mapped_bytes, "heap %llu > mapped %llu",
                  (unsigned long long)c.heap_bytes, (unsigned long long)c.mapped_bytes);
    cr_assert_leq(c.live_bytes, c.heap_bytes);
    cr_assert_leq(c.last_pause_ns, c.max_pause_ns);
    cr_assert_leq(c.max_pause_ns, c.total_pause_ns);
    cr_assert_geq(c.markers, 1, "the cycle used at least one marker");
    cr_assert_geq(c.next_gc_bytes, c.live_bytes, "next_gc below live data");
    cr_assert_geq(c.allocated_bytes, c.freed_bytes);
    cr_assert_eq(tern_base(big), big);
    cr_assert_eq(tern_base(keep[N - 1]), keep[N - 1]);
}

Test(api, stats_count_explicit_frees_and_freed_bytes)
{
    struct tern_stats a = get_stats();
    for (int i = 0; i < 10; i++) {
        void *p = tern_malloc(64);
        cr_assert_not_null(p);
        tern_free(p);
    }
    struct tern_stats b = get_stats();
    cr_assert_eq(b.explicit_frees, a.explicit_frees + 10);
    churn(8 * MiB, 0);
    clobber_stack();
    tern_collect();
    churn(8 * MiB, 0); /* sweeping may be lazy: allocation finishes it */
    tern_collect();
    struct tern_stats c = get_stats();
    cr_assert_geq(c.freed_bytes - a.freed_bytes, (uint64_t)4 * MiB,
                  "16 MiB of garbage and two collections freed only %llu bytes",
                  (unsigned long long)(c.freed_bytes - a.freed_bytes));
}

static sem_t t_in, t_out;

static void *waiting_thread(void *arg)
{
    (void)arg;
    sem_post(&t_in);
    while (sem_wait(&t_out) != 0)
        ;
    return NULL;
}

Test(api, stats_count_threads)
{
    tern_malloc(16);
    cr_assert_eq(sem_init(&t_in, 0, 0), 0);
    cr_assert_eq(sem_init(&t_out, 0, 0), 0);
    uint32_t before = get_stats().threads;
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, waiting_thread, NULL), 0);
    for (int i = 0; i < 3; i++)
        while (sem_wait(&t_in) != 0)
            ;
    cr_assert_eq(get_stats().threads, before + 3, "threads made by pthread_create are registered");
    for (int i = 0; i < 3; i++)
        sem_post(&t_out);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_join(t[i], NULL), 0);
    cr_assert_eq(get_stats().threads, before, "finished threads are unregistered");
}

Test(api, init_after_start_is_eexist)
{
    tern_malloc(16);
    cr_assert_eq(tern_init(NULL), TERN_EEXIST);
    struct tern_options o = { .gc_percent = 10 };
    uint32_t pct = get_stats().gc_percent;
    cr_assert_eq(tern_init(&o), TERN_EEXIST);
    cr_assert_eq(get_stats().gc_percent, pct, "a refused tern_init must change nothing");
}

/* ---- roots ------------------------------------------------------------------ */

Test(api, add_roots_errors)
{
    static char area[256];
    cr_assert_eq(tern_add_roots(area + 128, area), TERN_EINVAL, "lo > hi");
    cr_assert_eq(tern_remove_roots(area, area + 64), TERN_ENOENT, "never added");
    cr_assert_eq(tern_add_roots(area, area + 64), TERN_OK);
    cr_assert_eq(tern_remove_roots(area, area + 32), TERN_ENOENT, "not the range that was added");
    cr_assert_eq(tern_remove_roots(area, area + 64), TERN_OK);
    cr_assert_eq(tern_remove_roots(area, area + 64), TERN_ENOENT, "already removed");
}

Test(api, many_root_ranges)
{
    enum { N = 500 };
    void **bufs = malloc(N * sizeof *bufs);
    cr_assert_not_null(bufs);
    for (int i = 0; i < N; i++) {
        bufs[i] = calloc(4, sizeof(void *));
        cr_assert_not_null(bufs[i]);
        cr_assert_eq(tern_add_roots(bufs[i], (void **)bufs[i] + 4), TERN_OK, "range %d", i);
    }
    for (int i = 0; i < N; i += 2)
        cr_assert_eq(tern_remove_roots(bufs[i], (void **)bufs[i] + 4), TERN_OK, "range %d", i);
    for (int i = 1; i < N; i += 2)
        cr_assert_eq(tern_remove_roots(bufs[i], (void **)bufs[i] + 4), TERN_OK, "range %d", i);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(tern_remove_roots(bufs[i], (void **)bufs[i] + 4), TERN_ENOENT);
        free(bufs[i]);
    }
    free(bufs);
}

/* ---- thread registration ----------------------------------------------- */

static void *registration_thread(void *arg)
{
    int *rc = arg;
    rc[0] = tern_register_thread();   /* made by pthread_create: EEXIST */
    rc[1] = tern_unregister_thread(); /* OK */
    rc[2] = tern_unregister_thread(); /* ENOENT */
    rc[3] = tern_register_thread();   /* OK again */
    rc[4] = tern_register_thread();   /* EEXIST */
    void *p = tern_malloc(100);       /* works while registered */
    rc[5] = p != NULL && tern_base(p) == p;
    return NULL;
}

Test(api, register_thread_errors)
{
    tern_malloc(16);
    cr_assert_eq(tern_register_thread(), TERN_EEXIST, "the main thread is registered");
    int rc[6] = { 99, 99, 99, 99, 99, 99 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, registration_thread, rc), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(rc[0], TERN_EEXIST, "register in a pthread_create thread: %d", rc[0]);
    cr_assert_eq(rc[1], TERN_OK, "unregister: %d", rc[1]);
    cr_assert_eq(rc[2], TERN_ENOENT, "unregister twice: %d", rc[2]);
    cr_assert_eq(rc[3], TERN_OK, "register again: %d", rc[3]);
    cr_assert_eq(rc[4], TERN_EEXIST, "register twice: %d", rc[4]);
    cr_assert_eq(rc[5], 1);
    /* the process still collects fine */
    churn_and_collect(1, MiB, 0);
}

/* A thread that unregistered itself and exits must not upset collections. */
static void *unregister_and_exit(void *arg)
{
    (void)arg;
    tern_malloc(64);
    return (void *)(intptr_t)tern_unregister_thread();
}

Test(api, unregistered_thread_exits_cleanly)
{
    for (int i = 0; i < 20; i++) {
        pthread_t t;
        void *rc;
        cr_assert_eq(pthread_create(&t, NULL, unregister_and_exit, NULL), 0);
        cr_assert_eq(pthread_join(t, &rc), 0);
        cr_assert_eq((intptr_t)rc, TERN_OK);
        churn_and_collect(1, 256 * KiB, 0);
    }
}

/* ---- tern_base / tern_size on things that are not objects -------------- */

static int static_int;

Test(api, base_and_size_of_non_objects)
{
    int local = 0;
    char *g = malloc(100);
    cr_assert_not_null(g);
    char *p = tern_malloc(100); /* Tern is running */
    cr_assert_not_null(p);
    cr_assert_null(tern_base(NULL));
    cr_assert_eq(tern_size(NULL), 0);
    cr_assert_null(tern_base(&local), "stack address");
    cr_assert_eq(tern_size(&local), 0);
    cr_assert_null(tern_base(&static_int), "static address");
    cr_assert_eq(tern_size(&static_int), 0);
    cr_assert_null(tern_base(g), "glibc address");
    cr_assert_eq(tern_size(g), 0);
    cr_assert_null(tern_base((void *)(uintptr_t)0x10), "low address");
    cr_assert_null(tern_base((void *)(uintptr_t)0xffffffffffff0000ull), "kernel address");
    cr_assert_eq(tern_base(p + 99), p);
    free(g);
}

Test(api, malloc_zero_is_consistent)
{
    /* tern_malloc(0) may return NULL or a unique object; either way it is
     * consistent with tern_base/tern_size and can be freed. */
    char *a = tern_malloc(0);
    char *b = tern_malloc(0);
    if (a) {
        cr_assert_eq(tern_base(a), a);
        cr_assert_neq(a, b, "two live tern_malloc(0) objects share an address");
    }
    tern_free(a);
    tern_free(b);
}

/* The heap goal counts the roots a cycle scans (pacer.c, as Go's GOGC
 * since 1.18): with 64 MiB of added roots the goal grows by TERN_GC% of
 * them, so a program with large roots is not collected over and over for
 * a small heap. */
Test(api, heap_goal_counts_the_roots)
{
    struct tern_stats a = get_stats();
    uint64_t pct = a.gc_percent;
    if (!pct)
        cr_skip_test("TERN_GC=off: there is no heap goal");
    size_t n = 64 * MiB;
    char *roots = calloc(1, n); /* glibc memory: scanned only as an added range */
    cr_assert_not_null(roots);
    tern_collect();
    struct tern_stats b = get_stats();
    cr_assert_eq(tern_add_roots(roots, roots + n), TERN_OK);
    tern_collect();
    struct tern_stats c = get_stats();
    cr_assert_geq(c.next_gc_bytes, c.live_bytes + (uint64_t)n / 100 * pct,
                  "goal %llu MiB with live %llu MiB and 64 MiB of roots at TERN_GC=%llu",
                  (unsigned long long)(c.next_gc_bytes / MiB), (unsigned long long)(c.live_bytes / MiB),
                  (unsigned long long)pct);
    cr_assert_lt(b.next_gc_bytes, c.next_gc_bytes, "the goal did not grow with the roots");
    cr_assert_eq(tern_remove_roots(roots, roots + n), TERN_OK);
    tern_collect();
    struct tern_stats d = get_stats();
    cr_assert_lt(d.next_gc_bytes, c.next_gc_bytes, "the goal did not shrink when the roots went");
    free(roots);
}

/* When live data shrinks, the goal comes down over two seconds (pacer.c):
 * the first cycles the heap goal starts after 32 MiB of live data is
 * dropped keep at least a quarter of the old room; a tern_collect takes
 * the plain goal at once. */
static uint64_t churn_until_cycles(uint64_t cycles)
{
    for (int i = 0; i < 1000000 && get_stats().cycles < cycles; i++)
        for (int k = 0; k < 64; k++)
            cr_assert_not_null(tern_malloc(256));
    return get_stats().cycles;
}

Test(api, goal_comes_down_slowly_after_live_data_shrinks)
{
    struct tern_stats a = get_stats();
    if (!a.gc_percent)
        cr_skip_test("TERN_GC=off: there is no heap goal");
    if (a.memory_limit)
        cr_skip_test("a memory limit caps the goal");
    size_t n = 32 * 1024;
    void **live = tern_malloc(n * sizeof *live);
    cr_assert_not_null(live);
    for (size_t i = 0; i < n; i++)
        live[i] = tern_malloc(1024);
    uint64_t c = get_stats().cycles;
    churn_until_cycles(c + 2);
    struct tern_stats high = get_stats();
    cr_assert_geq(high.live_bytes, 32 * MiB, "the 32 MiB were not live");
    memset(live, 0, n * sizeof *live);
    churn_until_cycles(high.cycles + 2);
    struct tern_stats held = get_stats();
    cr_assert_lt(held.live_bytes, 8 * MiB, "the 32 MiB were not reclaimed");
    cr_assert_geq(held.next_gc_bytes, held.live_bytes + (high.next_gc_bytes - high.live_bytes) / 4,
                  "goal %llu MiB right after live data fell from %llu to %llu MiB (goal %llu MiB)",
                  (unsigned long long)(held.next_gc_bytes / MiB), (unsigned long long)(high.live_bytes / MiB),
                  (unsigned long long)(held.live_bytes / MiB), (unsigned long long)(high.next_gc_bytes / MiB));
    tern_collect();
    struct tern_stats plain = get_stats();
    cr_assert_lt(plain.next_gc_bytes, held.next_gc_bytes - 8 * MiB,
                 "tern_collect kept the goal at %llu MiB (live %llu MiB)",
                 (unsigned long long)(plain.next_gc_bytes / MiB), (unsigned long long)(plain.live_bytes / MiB));
    tern_free(live);
}

