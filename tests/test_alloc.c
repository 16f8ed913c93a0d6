/* test_alloc.c — every size class, large sizes, calloc and realloc. */
#include "common.h"

#include <criterion/criterion.h>
#include <errno.h>

TestSuite(alloc, .timeout = 30);

struct obj {
    char  *p;
    size_t n;
};

static int cmp_obj(const void *a, const void *b)
{
    const struct obj *x = a, *y = b;
    return (x->p > y->p) - (x->p < y->p);
}

/* Check one fresh object of n bytes. */
static void check_fresh(char *p, size_t n, int atomic)
{
    cr_assert_not_null(p, "tern_malloc%s(%zu) returned NULL", atomic ? "_atomic" : "", n);
    cr_assert_eq((uintptr_t)p % 16, 0, "object of %zu bytes at %p is not 16-byte aligned", n, (void *)p);
    if (!atomic)
        cr_assert(all_zero(p, n), "tern_malloc(%zu) at %p is not zeroed", n, (void *)p);
    size_t us = tern_size(p);
    cr_assert_geq(us, n, "tern_size = %zu < requested %zu", us, n);
    cr_assert_eq(tern_base(p), p, "tern_base(first byte) of %zu-byte object", n);
    cr_assert_eq(tern_base(p + n / 2), p, "tern_base(middle byte) of %zu-byte object", n);
    cr_assert_eq(tern_base(p + n - 1), p, "tern_base(last requested byte) of %zu-byte object", n);
    cr_assert_eq(tern_base(p + us - 1), p, "tern_base(last usable byte) of %zu-byte object (usable %zu)", n, us);
}

/* Allocate `per` objects of each size in sizes[], keep them all live, check
 * each one, fill them, then check that no two overlap and that every fill
 * pattern is intact, before and after a collection with garbage in between. */
static void run_sizes(const size_t *sizes, size_t nsizes, int per, int atomic)
{
    size_t total = nsizes * (size_t)per;
    /* The object table lives in the Tern heap, reachable from this frame. */
    struct obj *objs = tern_malloc(total * sizeof *objs);
    cr_assert_not_null(objs);
    size_t k = 0;
    for (size_t i = 0; i < nsizes; i++) {
        for (int j = 0; j < per; j++, k++) {
            size_t n = sizes[i];
            char *p = atomic ? tern_malloc_atomic(n) : tern_malloc(n);
            check_fresh(p, n, atomic);
            fill(p, n, (uint32_t)k);
            objs[k].p = p;
            objs[k].n = n;
        }
    }
    /* No overlap between live objects (usable extents included). */
    struct obj *sorted = malloc(total * sizeof *sorted);
    cr_assert_not_null(sorted);
    memcpy(sorted, objs, total * sizeof *sorted);
    qsort(sorted, total, sizeof *sorted, cmp_obj);
    for (size_t i = 1; i < total; i++) {
        char *prev_end = sorted[i - 1].p + tern_size(sorted[i - 1].p);
        cr_assert_leq((uintptr_t)prev_end, (uintptr_t)sorted[i].p,
                      "objects overlap: %p (%zu bytes, usable %zu) and %p (%zu bytes)",
                      (void *)sorted[i - 1].p, sorted[i - 1].n, tern_size(sorted[i - 1].p),
                      (void *)sorted[i].p, sorted[i].n);
    }
    free(sorted);

    for (int round = 0; round < 2; round++) {
        for (k = 0; k < total; k++) {
            size_t bad = check_fill(objs[k].p, objs[k].n, (uint32_t)k);
            cr_assert_eq(bad, (size_t)-1,
                         "round %d: object %zu (%zu bytes at %p) corrupted at offset %zu",
                         round, k, objs[k].n, (void *)objs[k].p, bad);
            cr_assert_eq(tern_base(objs[k].p + objs[k].n - 1), objs[k].p);
            cr_assert_geq(tern_size(objs[k].p), objs[k].n);
        }
        if (round == 0)
            churn_and_collect(2, 4 * MiB, 0);
    }
}

Test(alloc, every_size_up_to_1024)
{
    static size_t sizes[1024];
    for (size_t i = 0; i < 1024; i++)
        sizes[i] = i + 1;
    run_sizes(sizes, 1024, 3, 0);
}

Test(alloc, strided_sizes_up_to_40000)
{
    static size_t sizes[1200];
    size_t n = 0;
    for (size_t s = 1025; s <= 40000; s += 61)
        sizes[n++] = s;
    /* and the edges around powers of two */
    for (size_t s = 2048; s <= 32768; s *= 2) {
        sizes[n++] = s - 1;
        sizes[n++] = s;
        sizes[n++] = s + 1;
    }
    sizes[n++] = 40000;
    run_sizes(sizes, n, 2, 0);
}

Test(alloc, large_sizes_up_to_64MiB)
{
    static const size_t sizes[] = {
        40001, 65535, 65536, 65537, 100000, 131072, 262143, 262144 + 16,
        MiB - 1, MiB, MiB + 1, 3 * MiB + 5, 4 * MiB, 8 * MiB + 1, 16 * MiB,
        33 * MiB + 3, 64 * MiB,
    };
    run_sizes(sizes, sizeof sizes / sizeof sizes[0], 1, 0);
}

Test(alloc, many_large_objects_same_size)
{
    static size_t sizes[1] = { 4 * MiB + 100 };
    run_sizes(sizes, 1, 12, 0);
}

Test(alloc, atomic_every_size_class)
{
    static size_t sizes[1400];
    size_t n = 0;
    for (size_t s = 1; s <= 1024; s++)
        sizes[n++] = s;
    for (size_t s = 1025; s <= 40000; s += 127)
        sizes[n++] = s;
    sizes[n++] = MiB + 3;
    sizes[n++] = 9 * MiB;
    run_sizes(sizes, n, 2, 1);
}

Test(alloc, calloc_zeroed_and_sized)
{
    static const size_t counts[] = { 1, 3, 10, 100, 1000, 70000 };
    static const size_t sizes[] = { 1, 8, 24, 100, 4096 };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
            size_t n = counts[i] * sizes[j];
            char *p = tern_calloc(counts[i], sizes[j]);
            check_fresh(p, n, 0);
            fill(p, n, 7);
        }
    }
}

Test(alloc, calloc_overflow_is_enomem)
{
    errno = 0;
    cr_assert_null(tern_calloc(SIZE_MAX / 2 + 1, 2), "calloc(SIZE_MAX/2+1, 2) must fail");
    cr_assert_eq(errno, ENOMEM, "errno = %d, want ENOMEM", errno);
    errno = 0;
    cr_assert_null(tern_calloc((size_t)1 << 33, (size_t)1 << 33));
    cr_assert_eq(errno, ENOMEM, "errno = %d, want ENOMEM", errno);
    errno = 0;
    cr_assert_null(tern_calloc(3, SIZE_MAX / 3 + 1));
    cr_assert_eq(errno, ENOMEM, "errno = %d, want ENOMEM", errno);
    /* still works afterwards */
    char *p = tern_calloc(4, 4);
    check_fresh(p, 16, 0);
}

Test(alloc, huge_requests_are_enomem)
{
    errno = 0;
    cr_assert_null(tern_malloc(SIZE_MAX));
    cr_assert_eq(errno, ENOMEM, "tern_malloc(SIZE_MAX): errno = %d, want ENOMEM", errno);
    errno = 0;
    cr_assert_null(tern_malloc(SIZE_MAX - 15));
    cr_assert_eq(errno, ENOMEM, "tern_malloc(SIZE_MAX-15): errno = %d, want ENOMEM", errno);
    errno = 0;
    cr_assert_null(tern_malloc_atomic(SIZE_MAX - 4095));
    cr_assert_eq(errno, ENOMEM, "tern_malloc_atomic(SIZE_MAX-4095): errno = %d, want ENOMEM", errno);
    char *p = tern_malloc(100);
    check_fresh(p, 100, 0);
}

/* ---- realloc ---------------------------------------------------------- */

Test(alloc, realloc_null_is_malloc)
{
    static const size_t sizes[] = { 1, 16, 100, 1024, 5000, 40000, 2 * MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *p = tern_realloc(NULL, sizes[i]);
        check_fresh(p, sizes[i], 0);
        fill(p, sizes[i], 3);
        cr_assert(filled_ok(p, sizes[i], 3));
    }
}

Test(alloc, realloc_grow_and_shrink_across_classes)
{
    static const size_t steps[] = {
        1, 7, 16, 17, 63, 64, 100, 1000, 1024, 1025, 4096, 10000, 40000,
        65536, 100000, MiB, 5 * MiB + 3, 24 * MiB, 3 * MiB, 100000, 30000,
        2000, 100, 16, 1, 300, 70000, 40, 8 * MiB, 12,
    };
    size_t old = steps[0];
    char *p = tern_malloc(old);
    cr_assert_not_null(p);
    fill(p, old, 0);
    for (size_t i = 1; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = steps[i];
        char *q = tern_realloc(p, n);
        cr_assert_not_null(q, "realloc(%zu -> %zu) returned NULL", old, n);
        cr_assert_eq((uintptr_t)q % 16, 0);
        cr_assert_geq(tern_size(q), n, "realloc(%zu -> %zu): tern_size %zu", old, n, tern_size(q));
        cr_assert_eq(tern_base(q), q);
        cr_assert_eq(tern_base(q + n - 1), q);
        size_t keep = old < n ? old : n;
        size_t bad = check_fill(q, keep, (uint32_t)(i - 1));
        cr_assert_eq(bad, (size_t)-1, "realloc(%zu -> %zu) lost content at offset %zu", old, n, bad);
        fill(q, n, (uint32_t)i);
        if (i % 7 == 0)
            churn_and_collect(1, 2 * MiB, n);
        p = q;
        old = n;
    }
    churn_and_collect(2, 2 * MiB, old);
    cr_assert(filled_ok(p, old, (uint32_t)(sizeof steps / sizeof steps[0] - 1)));
}

Test(alloc, realloc_does_not_disturb_neighbours)
{
    enum { N = 64 };
    char **objs = tern_malloc(N * sizeof *objs);
    size_t *len = tern_malloc_atomic(N * sizeof *len);
    cr_assert_not_null(objs);
    cr_assert_not_null(len);
    for (int i = 0; i < N; i++) {
        len[i] = 24 + (size_t)i * 37;
        objs[i] = tern_malloc(len[i]);
        cr_assert_not_null(objs[i]);
        fill(objs[i], len[i], (uint32_t)i);
    }
    /* resize every other object, several times, in both directions */
    for (int round = 0; round < 6; round++) {
        for (int i = round & 1; i < N; i += 2) {
            size_t n = (round % 3 == 2) ? len[i] / 3 + 1 : len[i] * 2 + 5;
            if (round == 3)
                n = 300000 + (size_t)i; /* to large objects */
            char *q = tern_realloc(objs[i], n);
            cr_assert_not_null(q);
            size_t keep = len[i] < n ? len[i] : n;
            cr_assert(filled_ok(q, keep, (uint32_t)i), "object %d lost content in realloc", i);
            fill(q, n, (uint32_t)i);
            objs[i] = q;
            len[i] = n;
        }
        for (int i = 0; i < N; i++)
            cr_assert(filled_ok(objs[i], len[i], (uint32_t)i),
                      "round %d: object %d (%zu bytes) corrupted", round, i, len[i]);
    }
    churn_and_collect(2, 2 * MiB, 0);
    for (int i = 0; i < N; i++)
        cr_assert(filled_ok(objs[i], len[i], (uint32_t)i), "after collect: object %d corrupted", i);
}

Test(alloc, realloc_within_usable_size_keeps_content)
{
    char *p = tern_malloc(100);
    cr_assert_not_null(p);
    size_t us = tern_size(p);
    fill(p, us, 9);
    char *q = tern_realloc(p, us);
    cr_assert_not_null(q);
    cr_assert(filled_ok(q, us, 9));
    char *r = tern_realloc(q, 50);
    cr_assert_not_null(r);
    cr_assert(filled_ok(r, 50, 9));
}

Test(alloc, realloc_failure_keeps_original)
{
    char *p = tern_malloc(1000);
    cr_assert_not_null(p);
    fill(p, 1000, 11);
    errno = 0;
    char *q = tern_realloc(p, SIZE_MAX - 7);
    cr_assert_null(q, "realloc to SIZE_MAX-7 must fail");
    cr_assert_eq(errno, ENOMEM, "errno = %d, want ENOMEM", errno);
    cr_assert_eq(tern_base(p), p, "original object must stay valid after a failed realloc");
    cr_assert(filled_ok(p, 1000, 11), "original content must be intact after a failed realloc");
    churn_and_collect(1, MiB, 1000);
    cr_assert(filled_ok(p, 1000, 11));
}
