/* test_badinput.c — the bad-input catalogue of the core API
 * (docs/bad-input.md): every misuse there that concerns libtern has a test
 * here or names the test elsewhere that covers it.  Each misuse must give
 * a clear one-line report or an error code, and leave the heap consistent
 * (checked by heap_ok after each case). */
#include "common.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <pthread.h>

#include "capture.h"
#define HELPER_PATH HELPER_BIN
#include "helper_run.h"

TestSuite(badinput, .init = cr_redirect_stderr, .timeout = 60);

/* Live objects with known contents survive a collection and fresh
 * allocations, and fresh objects are zeroed and do not overlap them. */
static void heap_ok(void)
{
    enum { N = 500 };
    char **keep = tern_malloc(N * sizeof *keep);
    cr_assert_not_null(keep);
    for (int i = 0; i < N; i++) {
        size_t n = 16 + (size_t)i * 37 % 3000;
        keep[i] = tern_malloc(n);
        cr_assert_not_null(keep[i]);
        cr_assert(all_zero(keep[i], n), "fresh object not zeroed");
        fill(keep[i], n, (uint32_t)i);
    }
    churn(2 * MiB, 0);
    tern_collect();
    churn(2 * MiB, 0);
    for (int i = 0; i < N; i++)
        cr_assert(filled_ok(keep[i], 16 + (size_t)i * 37 % 3000, (uint32_t)i), "object %d damaged", i);
}

static void expect_report(const char *what)
{
    const char *out = take_stderr();
    cr_assert_eq(count_lines(out), 1, "want one report line, got:\n%s", out);
    cr_assert_eq(count_matching(out, what, 0), 1, "want a '%s' report, got:\n%s", what, out);
}

static void expect_silence(void)
{
    const char *out = take_stderr();
    cr_assert_str_empty(out, "want no report, got:\n%s", out);
}

/* ---- sizes --------------------------------------------------------------- */

static void *(*volatile p_malloc)(size_t) = tern_malloc;
static void *(*volatile p_malloc_atomic)(size_t) = tern_malloc_atomic;

Test(badinput, sizes_near_size_max)
{
    static const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, SIZE_MAX - 8192,
                                    SIZE_MAX / 2 + 1, SIZE_MAX / 2, (size_t)1 << 62, ((size_t)1 << 46) + 1 };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        errno = 0;
        cr_assert_null(p_malloc(sizes[i]), "tern_malloc(%zu)", sizes[i]);
        cr_assert_eq(errno, ENOMEM, "tern_malloc(%zu): errno %d", sizes[i], errno);
        errno = 0;
        cr_assert_null(p_malloc_atomic(sizes[i]), "tern_malloc_atomic(%zu)", sizes[i]);
        cr_assert_eq(errno, ENOMEM);
    }
    expect_silence();
    heap_ok();
}

Test(badinput, calloc_overflow)
{
    static const size_t pairs[][2] = { { SIZE_MAX, 2 }, { 2, SIZE_MAX }, { (size_t)1 << 33, (size_t)1 << 33 },
                                       { SIZE_MAX / 16 + 1, 16 }, { 1, SIZE_MAX } };
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        errno = 0;
        cr_assert_null(tern_calloc(pairs[i][0], pairs[i][1]), "tern_calloc(%zu, %zu)", pairs[i][0], pairs[i][1]);
        cr_assert_eq(errno, ENOMEM);
    }
    void *z = tern_calloc(0, SIZE_MAX); /* 0 bytes: no overflow */
    if (z)
        cr_assert_eq(tern_base(z), z);
    expect_silence();
    heap_ok();
}

Test(badinput, realloc_to_huge_size_keeps_the_object)
{
    char *p = tern_malloc(100);
    fill(p, 100, 5);
    errno = 0;
    cr_assert_null(tern_realloc(p, SIZE_MAX));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_null(tern_realloc(p, SIZE_MAX / 2));
    cr_assert(filled_ok(p, 100, 5));
    cr_assert_eq(tern_base(p), p, "the object is still live");
    expect_silence();
    heap_ok();
}

/* ---- free and realloc of what is not a live object's start ------------------ */

Test(badinput, realloc_of_freed_memory)
{
    for (size_t n = 64; n <= 1 << 20; n *= 32) {
        char *p = tern_malloc(n);
        tern_free(p);
        expect_silence();
        errno = 0;
        cr_assert_null(tern_realloc(p, n * 2), "realloc of freed %zu-byte object", n);
        cr_assert_eq(errno, EINVAL);
        expect_report("realloc of freed memory");
    }
    heap_ok();
}

Test(badinput, realloc_of_interior_and_foreign_pointers)
{
    char *p = tern_malloc(200);
    fill(p, 200, 9);
    int local;
    static int in_static;
    char *g = malloc(64);
    void *bad[] = { p + 8, p + 1, &local, &in_static, g, (void *)(uintptr_t)0x1000,
                    (void *)(uintptr_t)0xffff800000000000ull };
    const char *why[] = { "interior", "interior", "not a Tern object", "not a Tern object", "not a Tern object",
                          "not a Tern object", "not a Tern object" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        errno = 0;
        cr_assert_null(tern_realloc(bad[i], 500), "case %zu", i);
        cr_assert_eq(errno, EINVAL);
        expect_report(why[i]);
    }
    cr_assert(filled_ok(p, 200, 9), "the object whose interior was passed is untouched");
    free(g);
    heap_ok();
}

Test(badinput, free_of_misaligned_and_wild_pointers)
{
    char *p = tern_malloc(64), *big = tern_malloc(1 << 20);
    fill(p, 64, 1);
    void *bad[] = { p + 1, p + 63, big + 8, big + (1 << 19), (void *)(uintptr_t)0x1000,
                    (void *)(uintptr_t)0xffff800000000000ull, (void *)(uintptr_t)-1 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tern_free(bad[i]);
        expect_report("free");
    }
    cr_assert(filled_ok(p, 64, 1));
    cr_assert_eq(tern_base(big + 8), big, "an interior free must not free the object");
    heap_ok();
}

/* Double free, free of stack/static/glibc pointers and of interior
 * pointers: tests/test_free.c (double_free_*, invalid_free_*). */

/* ---- roots ---------------------------------------------------------------- */

Test(badinput, root_ranges)
{
    static char area[256];
    cr_assert_eq(tern_add_roots(NULL, area), TERN_EINVAL, "lo NULL");
    cr_assert_eq(tern_add_roots(area + 1, area), TERN_EINVAL, "lo > hi");
    cr_assert_eq(tern_add_roots(area, (void *)(uintptr_t)-1), TERN_EINVAL, "beyond user space");
    cr_assert_eq(tern_remove_roots(area + 1, area), TERN_EINVAL, "lo > hi");
    cr_assert_eq(tern_remove_roots(area, area + 8), TERN_ENOENT, "never added");
    cr_assert_eq(tern_remove_roots(NULL, NULL), TERN_ENOENT, "never added");
    cr_assert_eq(tern_add_roots(area, area), TERN_OK, "an empty range is allowed");
    cr_assert_eq(tern_remove_roots(area, area), TERN_OK);
    expect_silence();
    heap_ok();
}

/* ---- threads ---------------------------------------------------------------- */

static void *unregister_twice(void *arg)
{
    int *rc = arg;
    rc[0] = tern_unregister_thread();
    rc[1] = tern_unregister_thread();
    rc[2] = tern_unregister_thread();
    return NULL;
}

Test(badinput, unregister_unknown_thread)
{
    int rc[3];
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, unregister_twice, rc), 0);
    pthread_join(t, NULL);
    cr_assert_eq(rc[0], TERN_OK);
    cr_assert_eq(rc[1], TERN_ENOENT, "a thread Tern does not know: ENOENT");
    cr_assert_eq(rc[2], TERN_ENOENT);
    expect_silence();
    heap_ok();
}

/* ---- options and odd arguments ------------------------------------------------ */

Test(badinput, init_with_bad_options)
{
    struct tern_options o;
    int (*volatile init)(const struct tern_options *) = tern_init;
    memset(&o, 0, sizeof o), o.markers = -1;
    cr_assert_eq(init(&o), TERN_EINVAL);
    memset(&o, 0, sizeof o), o.trace = 3;
    cr_assert_eq(init(&o), TERN_EINVAL);
    memset(&o, 0, sizeof o), o.trace = -1;
    cr_assert_eq(init(&o), TERN_EINVAL);
    memset(&o, 0, sizeof o), o.barrier = 99;
    cr_assert_eq(init(&o), TERN_EINVAL);
    memset(&o, 0, sizeof o), o.barrier = -1;
    cr_assert_eq(init(&o), TERN_EINVAL);
    cr_assert_eq(tern_get_stats(NULL), TERN_EINVAL);
    cr_assert_str_eq(tern_barrier_name(-1), "unknown");
    cr_assert_str_eq(tern_barrier_name(1000), "unknown");
    cr_assert_str_eq(tern_strerror(-1000), "unknown error");
    cr_assert_str_eq(tern_strerror(12345), "unknown error");
    /* the explicit barrier with odd arguments: plain stores, nothing read */
    tern_written(NULL, 100);
    static char area[64];
    tern_written(area, 0);
    tern_written(area, sizeof area); /* not heap memory: nothing to shade */
    void *slot = NULL;
    tern_store(&slot, (void *)(uintptr_t)0x1234); /* a non-heap slot and value */
    cr_assert_eq(slot, (void *)(uintptr_t)0x1234);
    expect_silence();
    heap_ok();
}

/* ---- malformed variables ------------------------------------------------------- *
 * Each value is given alone to a fresh process (tests/tern_helper quick):
 * one report line naming the variable, the default used, the run normal. */

struct badvar { const char *var, *val; };
static const struct badvar badvars[] = {
    { "TERN_GC", "" }, { "TERN_GC", "abc" }, { "TERN_GC", "0" }, { "TERN_GC", "-5" },
    { "TERN_GC", "12abc" }, { "TERN_GC", "99999999999999999999999" }, { "TERN_GC", "1000001" },
    { "TERN_GC", "OFF" },
    { "TERN_MARKERS", "0" }, { "TERN_MARKERS", "65" }, { "TERN_MARKERS", "-1" }, { "TERN_MARKERS", "two" },
    { "TERN_MARKERS", "" }, { "TERN_MARKERS", "9223372036854775808" },
    { "TERN_TRACE", "3" }, { "TERN_TRACE", "-1" }, { "TERN_TRACE", "yes" }, { "TERN_TRACE", "" },
    { "TERN_STATS", "2" }, { "TERN_STATS", "on" }, { "TERN_STATS", "" },
    { "TERN_LOG_FILE", "" }, { "TERN_TRACE_FILE", "" },
    { "TERN_DEBUG", "checkmarks" }, { "TERN_DEBUG", "1" },
    { "TERN_BARRIER", "" }, { "TERN_BARRIER", "UFFD" }, { "TERN_BARRIER", "fast" }, { "TERN_BARRIER", "uffd " },
    { "TERN_INITIAL_HEAP", "" }, { "TERN_INITIAL_HEAP", "-1" }, { "TERN_INITIAL_HEAP", "100" },
    { "TERN_INITIAL_HEAP", "4XB" }, { "TERN_INITIAL_HEAP", "18446744073709551616" },
    { "TERN_INITIAL_HEAP", "99999999999GiB" }, { "TERN_INITIAL_HEAP", " 4MiB" }, { "TERN_INITIAL_HEAP", "MiB" },
};

Test(badinput, malformed_variables, .timeout = 240)
{
    static char big[5000];
    for (size_t i = 0; i < sizeof badvars / sizeof *badvars + 1; i++) {
        char env[6000];
        const char *var;
        if (i < sizeof badvars / sizeof *badvars) {
            var = badvars[i].var;
            snprintf(env, sizeof env, "%s=%s", var, badvars[i].val);
        } else { /* a very long value */
            memset(big, '7', sizeof big - 1);
            var = "TERN_GC";
            snprintf(env, sizeof env, "TERN_GC=%s", big);
        }
        const char *e[] = { env, NULL };
        struct run r;
        run_helper(&r, "quick", e);
        cr_assert_eq(count_lines(r.err), 1, "%.80s: want one report line, got:\n%s", env, r.err);
        cr_assert_eq(count_matching(r.err, var, 0), 1, "%.80s: the report must name %s:\n%s", env, var, r.err);
        cr_assert_eq(count_matching(r.err, "using the default", 0), 1, "%.80s:\n%s", env, r.err);
        cr_assert_geq(val(&r, "final_cycles"), 1, "%.80s: no collection ran", env);
    }
}

Test(badinput, unopenable_log_and_trace_files)
{
    static const char *const e1[] = { "TERN_LOG_FILE=/nonexistent-dir/x.log", NULL };
    static const char *const e2[] = { "TERN_TRACE_FILE=/nonexistent-dir/x.json", NULL };
    struct run r;
    run_helper(&r, "quick", e1);
    cr_assert_eq(count_matching(r.err, "TERN_LOG_FILE", 0), 1, "got:\n%s", r.err);
    run_helper(&r, "quick", e2);
    cr_assert_eq(count_matching(r.err, "TERN_TRACE_FILE", 0), 1, "got:\n%s", r.err);
}
