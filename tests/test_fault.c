/* test_fault.c — fault injection (include/tern/debug.h): mmap, madvise
 * and thread creation fail on demand.  Allocation must then return NULL
 * with errno = ENOMEM, every existing object must keep its contents, a
 * collection must still complete, a marker or collector thread that
 * cannot start must mean fewer markers (or a stop-the-world cycle), and
 * everything must work again once memory "comes back".
 *
 * Scenarios that need TERN_* variables from the start run in a fresh
 * process of this program (TERN_FAULT_SCENARIO=<name>, see the
 * constructor at the end); the others run in the test body. */
#include "common.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>

#include "tern/debug.h"

#define HELPER_PATH "/proc/self/exe"
#include "helper_run.h"

TestSuite(fault, .timeout = 120);

/* ---- objects with a known content ---------------------------------------- */

#define MAXOBJ 200000
static void *objs[MAXOBJ];      /* static data: a root */
static size_t obj_len[MAXOBJ];
static size_t nobj;

static int keep(void *p, size_t n)
{
    if (!p || nobj == MAXOBJ)
        return 0;
    fill(p, n, (uint32_t)nobj);
    obj_len[nobj] = n;
    objs[nobj++] = p;
    return 1;
}

/* Index of the first damaged object, or -1. */
static long first_damaged(void)
{
    for (size_t i = 0; i < nobj; i++)
        if (objs[i] && (tern_base(objs[i]) != objs[i] || !filled_ok(objs[i], obj_len[i], (uint32_t)i)))
            return (long)i;
    return -1;
}

#define ASSERT_INTACT()                                                                          \
    do {                                                                                         \
        long bad_ = first_damaged();                                                             \
        cr_assert_eq(bad_, -1, "object %ld (%p, %zu bytes) lost or damaged", bad_,               \
                     bad_ >= 0 ? objs[bad_] : NULL, bad_ >= 0 ? obj_len[bad_] : 0);              \
    } while (0)

/* Allocate objects of size n (kept) until one fails; returns how many. */
static size_t fill_until_null(size_t n, size_t max)
{
    size_t k = 0;
    for (; k < max; k++) {
        errno = 0;
        void *p = tern_malloc(n);
        if (!p) {
            cr_assert_eq(errno, ENOMEM, "a failed tern_malloc(%zu) must set ENOMEM, errno %d", n, errno);
            return k;
        }
        cr_assert(keep(p, n), "object table full");
    }
    return k;
}

Test(fault, mmap_failure_gives_null_enomem_and_heap_survives)
{
    for (int i = 0; i < 2000; i++)
        cr_assert(keep(tern_malloc(100), 100));
    keep(tern_malloc(100000), 100000);
    tern_debug_fault(TERN_FAULT_MMAP, 0, -1);
    /* Small objects: the heap runs out of chunks and cannot map more. */
    size_t made = fill_until_null(1000, 150000);
    cr_assert_lt(made, 150000, "150 MB allocated while every mmap fails");
    cr_assert_gt(tern_debug_fault_hits(TERN_FAULT_MMAP), 0);
    /* Large objects: pages left in the chunks are used up, then NULL. */
    made = fill_until_null(1 << 20, 1000);
    cr_assert_lt(made, 1000, "1 GB allocated while every mmap fails");
    /* Huge objects and calloc fail the same way. */
    errno = 0;
    cr_assert_null(tern_malloc(64 << 20));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(tern_calloc(1 << 10, 1 << 12));
    cr_assert_eq(errno, ENOMEM);
    /* realloc that must move fails and leaves the old object alone. */
    errno = 0;
    cr_assert_null(tern_realloc(objs[0], 8 << 20));
    cr_assert_eq(errno, ENOMEM);
    ASSERT_INTACT();
    /* A collection still runs to completion. */
    uint64_t c0 = get_stats().cycles;
    tern_collect();
    cr_assert_gt(get_stats().cycles, c0);
    ASSERT_INTACT();
    /* Memory comes back: everything works again. */
    tern_debug_fault(TERN_FAULT_MMAP, 0, 0);
    for (size_t i = 2001; i < nobj; i += 2)
        objs[i] = NULL; /* garbage now */
    size_t more = fill_until_null(1000, 20000);
    cr_assert_eq(more, 20000, "allocation still fails after memory came back");
    void *big = tern_malloc(64 << 20);
    cr_assert_not_null(big, "a huge object after memory came back");
    cr_assert(keep(big, 64 << 20));
    void *r = tern_realloc(objs[0], 8 << 20);
    cr_assert_not_null(r);
    cr_assert(filled_ok(r, 100, 0), "realloc kept the contents");
    tern_collect();
    objs[0] = NULL;
    ASSERT_INTACT();
}

Test(fault, every_nth_mmap_fails)
{
    /* Intermittent failure: allocation either succeeds with a usable
     * object or fails with ENOMEM; nothing in between. */
    unsigned long fails = 0;
    for (int round = 0; round < 40; round++) {
        tern_debug_fault(TERN_FAULT_MMAP, round % 3, 1);
        size_t n = (round % 4 == 0) ? (size_t)(5 << 20) : (round % 4 == 1) ? 40000 : 3000;
        for (int i = 0; i < 200; i++) {
            errno = 0;
            void *p = tern_malloc(n);
            if (!p) {
                cr_assert_eq(errno, ENOMEM);
                fails++;
                continue;
            }
            if (nobj < MAXOBJ && i % 8 == 0)
                keep(p, n);
            else
                memset(p, 0xEE, n);
            if (n > 1000000)
                break;
        }
        if (round % 10 == 9) {
            for (size_t i = 0; i < nobj; i += 3)
                objs[i] = NULL;
            tern_collect();
        }
    }
    tern_debug_fault(TERN_FAULT_MMAP, 0, 0);
    tern_collect();
    ASSERT_INTACT();
    cr_log_info("intermittent mmap failures: %lu injected, %lu allocations refused",
                tern_debug_fault_hits(TERN_FAULT_MMAP), fails);
}

/* Regression: a freed huge object's pages are given back with
 * MADV_DONTNEED and the chunk is reused without clearing; when madvise
 * failed, the next huge object came back holding the old contents. */
Test(fault, madvise_failure_still_gives_zeroed_memory)
{
    for (int round = 0; round < 4; round++) {
        size_t n = (size_t)(6 + round) << 20;
        unsigned char *p = tern_malloc(n);
        cr_assert_not_null(p);
        memset(p, 0xAB, n);
        tern_debug_fault(TERN_FAULT_MADVISE, 0, -1);
        tern_free(p);
        unsigned char *q = tern_malloc(n);
        tern_debug_fault(TERN_FAULT_MADVISE, 0, 0);
        cr_assert_not_null(q);
        cr_assert(all_zero(q, n), "tern_malloc(%zu) returned memory that is not zeroed (reused %s)", n,
                  q == p ? "the freed object's chunk" : "other memory");
    }
    cr_assert_gt(tern_debug_fault_hits(TERN_FAULT_MADVISE), 0, "the hook never ran");
}

static void *noop(void *arg) { return arg; }

Test(fault, pthread_create_fails_cleanly)
{
    pthread_t th;
    tern_debug_fault(TERN_FAULT_THREAD, 0, -1);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(pthread_create(&th, NULL, noop, NULL), EAGAIN);
    tern_debug_fault(TERN_FAULT_THREAD, 0, 0);
    tern_debug_fault(TERN_FAULT_MMAP, 0, -1); /* no memory for the start record */
    cr_assert_eq(pthread_create(&th, NULL, noop, NULL), EAGAIN);
    tern_debug_fault(TERN_FAULT_MMAP, 0, 0);
    cr_assert_eq(pthread_create(&th, NULL, noop, (void *)7), 0);
    void *ret;
    pthread_join(th, &ret);
    cr_assert_eq(ret, (void *)7);
    for (int i = 0; i < 50; i++)
        cr_assert(keep(tern_malloc(64), 64));
    tern_collect();
    ASSERT_INTACT();
}

/* ---- fresh-process scenarios ------------------------------------------------ */

static unsigned markers_now(void) { return get_stats().markers; }

/* TERN_MARKERS=4: no thread can be created, then only the collector. */
static int scenario_threads(void)
{
    for (int i = 0; i < 5000; i++)
        if (!keep(tern_malloc(48), 48)) return 2;
    tern_debug_fault(TERN_FAULT_THREAD, 0, -1);
    tern_collect(); /* no collector thread: a stop-the-world cycle here, one marker */
    printf("cycles_a=%llu markers_a=%u\n", (unsigned long long)get_stats().cycles, markers_now());
    if (first_damaged() >= 0) return 3;
    tern_debug_fault(TERN_FAULT_THREAD, 1, -1); /* the collector starts, markers do not */
    tern_collect();
    printf("cycles_b=%llu markers_b=%u\n", (unsigned long long)get_stats().cycles, markers_now());
    tern_debug_fault(TERN_FAULT_THREAD, 0, 0);
    tern_collect();
    printf("cycles_c=%llu markers_c=%u\n", (unsigned long long)get_stats().cycles, markers_now());
    if (first_damaged() >= 0) return 3;
    printf("hits=%lu\n", tern_debug_fault_hits(TERN_FAULT_THREAD));
    return 0;
}

/* A wide object: 150000 pointers need more mark stack than the first
 * allocation of it; no mark stack can be mapped at all. */
static int scenario_markstack(void)
{
    size_t n = 150000;
    void **wide = tern_malloc(n * sizeof *wide);
    if (!wide) return 2;
    objs[0] = wide, obj_len[0] = 0, nobj = 1; /* not filled: holds pointers */
    for (size_t i = 0; i < n; i++) {
        void *p = tern_malloc(32);
        if (!p) return 2;
        fill(p, 32, (uint32_t)i);
        wide[i] = p;
    }
    tern_debug_fault(TERN_FAULT_MMAP, 0, -1);
    tern_collect();
    tern_collect();
    tern_debug_fault(TERN_FAULT_MMAP, 0, 0);
    for (size_t i = 0; i < n; i++)
        if (tern_base(wide[i]) != wide[i] || !filled_ok(wide[i], 32, (uint32_t)i)) {
            fprintf(stderr, "object %zu (%p) lost\n", i, wide[i]);
            return 3;
        }
    churn(8 << 20, 32);
    tern_collect();
    for (size_t i = 0; i < n; i++)
        if (!filled_ok(wide[i], 32, (uint32_t)i)) return 3;
    printf("cycles=%llu hits=%lu\n", (unsigned long long)get_stats().cycles,
           tern_debug_fault_hits(TERN_FAULT_MMAP));
    return 0;
}

__attribute__((constructor)) static void scenario_entry(void)
{
    const char *name = getenv("TERN_FAULT_SCENARIO");
    if (!name)
        return;
    alarm(60); /* a hang is a failure */
    int rc = !strcmp(name, "threads") ? scenario_threads() : !strcmp(name, "markstack") ? scenario_markstack() : 99;
    fflush(stdout);
    fflush(stderr);
    _exit(rc);
}

Test(fault, threads_that_cannot_start_mean_fewer_markers)
{
    static const char *const e[] = { "TERN_FAULT_SCENARIO=threads", "TERN_MARKERS=4", "TERN_GC=off", NULL };
    struct run r;
    run_helper(&r, "threads", e);
    cr_assert_eq(val(&r, "cycles_a"), 1);
    cr_assert_eq(val(&r, "markers_a"), 1, "no thread could start: the cycle marks alone");
    cr_assert_eq(val(&r, "cycles_b"), 2);
    cr_assert_eq(val(&r, "markers_b"), 1, "no marker thread could start");
    cr_assert_eq(val(&r, "cycles_c"), 3);
    cr_assert_gt(val(&r, "markers_c"), 1, "markers start once threads can be created again");
    cr_assert_geq(val(&r, "hits"), 3);
}

static void markstack(const char *barrier)
{
    const char *e[] = { "TERN_FAULT_SCENARIO=markstack", "TERN_GC=off", barrier, NULL };
    struct run r;
    run_helper(&r, "markstack", e);
    cr_assert_eq(val(&r, "cycles"), 3);
    cr_assert_gt(val(&r, "hits"), 0);
}

Test(fault, no_memory_for_the_mark_stack_stw) { markstack("TERN_BARRIER=stw"); }
Test(fault, no_memory_for_the_mark_stack_concurrent) { markstack("TERN_BARRIER=auto"); }
