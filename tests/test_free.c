/* test_free.c — tern_free: double and invalid frees are reported once on
 * stderr and otherwise ignored; the heap stays consistent. */
#include "common.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <fcntl.h>

#include "capture.h"

TestSuite(free, .init = cr_redirect_stderr, .timeout = 30);

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        if (*s == '\n')
            n++;
    return n;
}

static int count_matching_lines(const char *s, const char *needle)
{
    int n = 0;
    while (*s) {
        const char *eol = strchr(s, '\n');
        size_t len = eol ? (size_t)(eol - s) : strlen(s);
        char line[1024];
        if (len >= sizeof line)
            len = sizeof line - 1;
        memcpy(line, s, len);
        line[len] = '\0';
        if (strstr(line, needle))
            n++;
        if (!eol)
            break;
        s = eol + 1;
    }
    return n;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

/* Allocates `count` objects of n bytes, all live at once, and checks that
 * none overlaps another and that all keep their own contents. */
static void expect_consistent_heap(size_t n, size_t count)
{
    char **objs = tern_malloc(count * sizeof *objs);
    uintptr_t *addr = malloc(count * sizeof *addr);
    cr_assert_not_null(objs);
    cr_assert_not_null(addr);
    for (size_t i = 0; i < count; i++) {
        objs[i] = tern_malloc(n);
        cr_assert_not_null(objs[i]);
        cr_assert(all_zero(objs[i], n), "object %zu from tern_malloc(%zu) is not zeroed", i, n);
        fill(objs[i], n, (uint32_t)i);
        addr[i] = (uintptr_t)objs[i];
    }
    qsort(addr, count, sizeof *addr, cmp_ptr);
    for (size_t i = 1; i < count; i++)
        cr_assert_geq(addr[i], addr[i - 1] + n, "two live objects overlap: %#lx and %#lx",
                      (unsigned long)addr[i - 1], (unsigned long)addr[i]);
    tern_collect();
    for (size_t i = 0; i < count; i++)
        cr_assert(filled_ok(objs[i], n, (uint32_t)i), "object %zu corrupted", i);
    free(addr);
}

static void double_free_case(size_t n)
{
    char *p = tern_malloc(n);
    cr_assert_not_null(p);
    fill(p, n, 1);
    struct tern_stats before = get_stats();
    tern_free(p);
    cr_assert_str_empty(take_stderr(), "a valid free must print nothing");
    cr_assert_null(tern_base(p), "tern_base of a freed object must be NULL");
    cr_assert_eq(tern_size(p), 0, "tern_size of a freed object must be 0");
    tern_free(p);
    const char *out = take_stderr();
    cr_assert_eq(count_lines(out), 1, "double free must print exactly one line, got:\n%s", out);
    cr_assert_eq(count_matching_lines(out, "double free"), 1, "no 'double free' report in:\n%s", out);
    struct tern_stats after = get_stats();
    cr_assert_eq(after.explicit_frees, before.explicit_frees + 1,
                 "explicit_frees went from %llu to %llu; the double free must not count",
                 (unsigned long long)before.explicit_frees, (unsigned long long)after.explicit_frees);
    expect_consistent_heap(n, n >= 65536 ? 64 : 4000);
}

Test(free, double_free_small_is_reported)
{
    double_free_case(64);
}

Test(free, double_free_medium_is_reported)
{
    double_free_case(3000);
}

Test(free, double_free_large_is_reported)
{
    double_free_case(MiB + 5);
}

Test(free, many_double_frees_keep_heap_consistent)
{
    enum { N = 100 };
    char *objs[N];
    for (int i = 0; i < N; i++) {
        objs[i] = tern_malloc(48);
        cr_assert_not_null(objs[i]);
    }
    struct tern_stats before = get_stats();
    for (int i = 0; i < N; i++)
        tern_free(objs[i]);
    cr_assert_str_empty(take_stderr());
    for (int i = 0; i < N; i++)
        tern_free(objs[i]);
    for (int i = 0; i < N; i += 3)
        tern_free(objs[i]); /* some a third time */
    const char *out = take_stderr();
    int expected = N + (N + 2) / 3;
    cr_assert_eq(count_matching_lines(out, "double free"), expected,
                 "want %d 'double free' lines, got %d", expected, count_matching_lines(out, "double free"));
    cr_assert_eq(count_lines(out), expected, "unexpected extra output:\n%.2000s", out);
    struct tern_stats after = get_stats();
    cr_assert_eq(after.explicit_frees, before.explicit_frees + N);
    expect_consistent_heap(48, 20000);
}

Test(free, free_null_is_silent)
{
    struct tern_stats before = get_stats();
    tern_free(NULL);
    cr_assert_str_empty(take_stderr(), "tern_free(NULL) must print nothing");
    struct tern_stats after = get_stats();
    cr_assert_eq(after.explicit_frees, before.explicit_frees);
}

static void expect_one_invalid_free_report(const char *what)
{
    const char *out = take_stderr();
    cr_assert_eq(count_lines(out), 1, "%s: want exactly one line, got:\n%s", what, out);
    cr_assert_eq(count_matching_lines(out, "invalid free"), 1, "%s: no 'invalid free' report in:\n%s", what, out);
}

Test(free, invalid_free_of_stack_pointer)
{
    char buf[64];
    memset(buf, 7, sizeof buf);
    tern_malloc(16); /* Tern is running */
    struct tern_stats before = get_stats();
    tern_free(buf);
    expect_one_invalid_free_report("stack pointer");
    for (size_t i = 0; i < sizeof buf; i++)
        cr_assert_eq(buf[i], 7);
    cr_assert_eq(get_stats().explicit_frees, before.explicit_frees);
    expect_consistent_heap(64, 2000);
}

static char static_buf[256];

Test(free, invalid_free_of_static_and_glibc_pointers)
{
    tern_malloc(16);
    struct tern_stats before = get_stats();
    tern_free(static_buf);
    expect_one_invalid_free_report("static pointer");
    char *g = malloc(64);
    cr_assert_not_null(g);
    memset(g, 5, 64);
    tern_free(g);
    expect_one_invalid_free_report("glibc pointer");
    for (int i = 0; i < 64; i++)
        cr_assert_eq(g[i], 5, "tern_free must not touch a glibc block");
    free(g);
    cr_assert_eq(get_stats().explicit_frees, before.explicit_frees);
    expect_consistent_heap(64, 2000);
}

static void interior_case(size_t n)
{
    char *p = tern_malloc(n);
    cr_assert_not_null(p);
    fill(p, n, 21);
    struct tern_stats before = get_stats();
    tern_free(p + 16);
    expect_one_invalid_free_report("interior pointer (+16)");
    tern_free(p + n - 1);
    expect_one_invalid_free_report("interior pointer (last byte)");
    cr_assert_eq(get_stats().explicit_frees, before.explicit_frees, "an invalid free must not free");
    cr_assert_eq(tern_base(p), p, "the object must stay live");
    cr_assert(filled_ok(p, n, 21));
    churn_and_collect(2, 2 * MiB, n);
    cr_assert_eq(tern_base(p), p);
    cr_assert(filled_ok(p, n, 21), "the object was damaged by an invalid free");
    expect_consistent_heap(n, n >= 65536 ? 32 : 2000);
    cr_assert(filled_ok(p, n, 21));
}

Test(free, invalid_free_of_interior_pointer_small)
{
    interior_case(256);
}

Test(free, invalid_free_of_interior_pointer_large)
{
    interior_case(2 * MiB);
}

Test(free, freed_memory_is_reused_safely)
{
    /* free and reallocate in a loop; live neighbours stay intact */
    char *keep[32];
    for (int i = 0; i < 32; i++) {
        keep[i] = tern_malloc(128);
        fill(keep[i], 128, (uint32_t)i);
    }
    for (int round = 0; round < 2000; round++) {
        char *q = tern_malloc(128);
        cr_assert_not_null(q);
        cr_assert(all_zero(q, 128), "reused memory must be zeroed again");
        memset(q, 0xEE, 128);
        tern_free(q);
    }
    cr_assert_str_empty(take_stderr());
    for (int i = 0; i < 32; i++)
        cr_assert(filled_ok(keep[i], 128, (uint32_t)i));
}

/* ---- the thread-local free lists (gc/alloc.c) ------------------------------ */

Test(free, a_freed_small_object_comes_back_to_its_thread)
{
    char *p = tern_malloc(48);
    cr_assert_not_null(p);
    memset(p, 0xAB, 48);
    tern_free(p);
    char *q = tern_malloc(48);
    cr_assert_eq(q, p, "the next allocation of the class should take the object just freed (%p, got %p)",
                 (void *)p, (void *)q);
    cr_assert(all_zero(q, 48), "an object taken back from the free list must be zeroed by tern_malloc");
    cr_assert_str_empty(take_stderr());
}

/* Objects that wait on a free list while cycles run must not be freed by a
 * sweep: they would then be handed out twice, once from the list and once
 * from the span. */
static NOINLINE void allocate_and_free(int count, size_t size)
{
    char *a[64];
    for (int i = 0; i < count; i++)
        cr_assert_not_null(a[i] = tern_malloc(size));
    for (int i = 0; i < count; i++)
        tern_free(a[i]);
    explicit_bzero(a, sizeof a); /* no stale pointer keeps them marked */
}

Test(free, listed_objects_survive_collections_and_are_handed_out_once)
{
    enum { LISTED = 24, N = 96 };
    allocate_and_free(LISTED, N);
    clobber_stack();
    for (int c = 0; c < 3; c++)
        tern_collect();
    expect_consistent_heap(N, LISTED + 6000); /* would find an object handed out twice */
    cr_assert_str_empty(take_stderr());
}

static void *free_elsewhere(void *p)
{
    tern_free(p);
    return NULL;
}

Test(free, double_free_of_a_listed_object_on_another_thread_is_reported)
{
    char *p = tern_malloc(64);
    cr_assert_not_null(p);
    tern_free(p); /* on this thread's list */
    cr_assert_str_empty(take_stderr());
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, free_elsewhere, p), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    const char *out = take_stderr();
    cr_assert_eq(count_matching_lines(out, "double free"), 1, "no 'double free' report in:\n%s", out);
    char *q1 = tern_malloc(64), *q2 = tern_malloc(64);
    cr_assert_neq(q1, q2, "the object freed twice was handed out twice");
    cr_assert(q1 == p || q2 == p, "the listed object should come back once");
}

/* A thread that exits gives its listed objects back for real: a new
 * thread can then be handed them, and nothing is lost or doubled. */
static void *alloc_and_free_many(void *arg)
{
    (void)arg;
    for (int round = 0; round < 50; round++) {
        void *p[64];
        for (int i = 0; i < 64; i++)
            p[i] = tern_malloc(32 + (size_t)(i % 8) * 16);
        for (int i = 0; i < 64; i++)
            tern_free(p[i]);
    }
    return NULL;
}

Test(free, exiting_threads_give_their_listed_objects_back)
{
    struct tern_stats s0 = get_stats();
    for (int k = 0; k < 8; k++) {
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, alloc_and_free_many, NULL), 0);
        cr_assert_eq(pthread_join(t, NULL), 0);
    }
    struct tern_stats s1 = get_stats();
    cr_assert_eq(s1.explicit_frees - s0.explicit_frees, 8u * 50 * 64, "frees counted: %llu",
                 (unsigned long long)(s1.explicit_frees - s0.explicit_frees));
    cr_assert_str_empty(take_stderr());
    expect_consistent_heap(64, 3000);
}

/* A long run of frees with no allocation between (a structure torn down)
 * gives the thread's listed objects back at once, so that a thread that
 * then sleeps pins no spans with them; a short run keeps them listed. */
static void *run_objs[5000]; /* static: a root, so no cycle sweeps them early */
static void *run_warm[20];

static NOINLINE char *free_run_then_allocate(int run)
{
    char *x[10];
    for (int i = 0; i < run; i++)
        cr_assert_not_null(run_objs[i] = tern_malloc(96));
    for (int i = 0; i < 10; i++)
        cr_assert_not_null(x[i] = tern_malloc(48));
    for (int i = 0; i < 10; i++)
        tern_free(x[i]); /* listed, x[9] on top */
    for (int i = 0; i < run; i++) {
        tern_free(run_objs[i]);
        run_objs[i] = NULL;
    }
    char *p = tern_malloc(48);
    cr_assert_not_null(p);
    for (int i = 0; i < 9; i++)
        cr_assert_neq(p, x[i], "the list's order changed: got x[%d] (run %d)", i, run);
    return p == x[9] ? p : NULL;
}

Test(free, a_long_run_of_frees_gives_the_lists_back)
{
    /* past a thread's first objects of the class, which come from a span
     * shared by all threads and reuse freed slots at once */
    for (int i = 0; i < 20; i++)
        cr_assert_not_null(run_warm[i] = tern_malloc(48));
    cr_assert_not_null(free_run_then_allocate(100), "after 110 frees the last object freed is no longer listed");
    cr_assert_null(free_run_then_allocate(5000), "after 5010 frees in a row the lists were not given back");
    cr_assert_str_empty(take_stderr());
}
