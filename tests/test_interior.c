/* test_interior.c — interior pointers keep whole objects alive. */
#include "common.h"

#include <criterion/criterion.h>

TestSuite(interior, .timeout = 30);

static const size_t sizes[] = {
    16, 24, 48, 100, 256, 1000, 4000, 9000, 33000, 70000, 300000, 3 * MiB + 17,
};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Roots in static data: only interior pointers are kept there. */
static char *mid_ptr[NSIZES];
static char *last_ptr[NSIZES];
static uintptr_t hidden_base[NSIZES][2];

static NOINLINE void make_objects(void)
{
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        char *a = tern_malloc(n);
        char *b = tern_malloc(n);
        cr_assert_not_null(a);
        cr_assert_not_null(b);
        fill(a, n, (uint32_t)(2 * i));
        fill(b, n, (uint32_t)(2 * i + 1));
        mid_ptr[i] = a + n / 2;
        last_ptr[i] = b + n - 1;
        hidden_base[i][0] = hide(a);
        hidden_base[i][1] = hide(b);
    }
}

static NOINLINE void verify_objects(int round)
{
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        char *a = unhide(hidden_base[i][0]);
        char *b = unhide(hidden_base[i][1]);
        cr_assert_eq(tern_base(mid_ptr[i]), a,
                     "round %d: tern_base(middle of %zu-byte object) = %p, want %p",
                     round, n, tern_base(mid_ptr[i]), (void *)a);
        cr_assert_eq(tern_base(last_ptr[i]), b,
                     "round %d: tern_base(last byte of %zu-byte object) = %p, want %p",
                     round, n, tern_base(last_ptr[i]), (void *)b);
        size_t bad = check_fill(a, n, (uint32_t)(2 * i));
        cr_assert_eq(bad, (size_t)-1,
                     "round %d: %zu-byte object held by a middle pointer corrupted at %zu", round, n, bad);
        bad = check_fill(b, n, (uint32_t)(2 * i + 1));
        cr_assert_eq(bad, (size_t)-1,
                     "round %d: %zu-byte object held by a last-byte pointer corrupted at %zu", round, n, bad);
    }
}

Test(interior, pointers_from_static_data_keep_objects_alive)
{
    make_objects();
    for (int round = 0; round < 8; round++) {
        clobber_stack();
        churn_and_collect(1, 3 * MiB, sizes[round % NSIZES]);
        verify_objects(round);
    }
}

/* Interior pointers stored in heap objects (and the holder reachable only by
 * an interior pointer too). */
struct holder {
    char *inner[NSIZES];
};

static char *holder_interior; /* points into the middle of a struct holder */

static NOINLINE void make_chain(void)
{
    struct holder *h = tern_malloc(sizeof *h);
    cr_assert_not_null(h);
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        char *o = tern_malloc(n);
        cr_assert_not_null(o);
        fill(o, n, (uint32_t)(100 + i));
        /* point at the byte 3/4 into the object, or the last one */
        h->inner[i] = (i & 1) ? o + n - 1 : o + (3 * n) / 4;
        hidden_base[i][0] = hide(o);
    }
    holder_interior = (char *)h + sizeof *h - 1;
    hidden_base[0][1] = hide(h);
}

static NOINLINE void verify_chain(int round)
{
    struct holder *h = unhide(hidden_base[0][1]);
    cr_assert_eq(tern_base(holder_interior), h, "round %d: holder lost", round);
    for (size_t i = 0; i < NSIZES; i++) {
        char *o = unhide(hidden_base[i][0]);
        cr_assert_eq(tern_base(h->inner[i]), o, "round %d: object %zu lost", round, i);
        cr_assert(filled_ok(o, sizes[i], (uint32_t)(100 + i)),
                  "round %d: %zu-byte object held by an interior heap pointer corrupted", round, sizes[i]);
    }
}

Test(interior, pointers_from_heap_objects_keep_objects_alive)
{
    make_chain();
    for (int round = 0; round < 6; round++) {
        clobber_stack();
        churn_and_collect(1, 3 * MiB, sizes[round % NSIZES]);
        verify_chain(round);
    }
}

/* Every offset of one object maps back to its base, and a pointer to any
 * page of a large object keeps it alive. */
static uintptr_t big_hidden;
static char *big_page_ptr;

static NOINLINE void make_big(size_t n)
{
    char *p = tern_malloc(n);
    cr_assert_not_null(p);
    for (size_t off = 0; off < n; off += 61)
        cr_assert_eq(tern_base(p + off), p, "tern_base(p + %zu) of %zu-byte object", off, n);
    cr_assert_eq(tern_base(p + n - 1), p);
    fill(p, n, 77);
    big_page_ptr = p + 5 * 4096 + 123; /* inside the 6th page */
    big_hidden = hide(p);
}

static NOINLINE void verify_big(int round, size_t n)
{
    char *p = unhide(big_hidden);
    cr_assert_eq(tern_base(big_page_ptr), p, "round %d: large object lost", round);
    cr_assert(filled_ok(p, n, 77), "round %d: large object corrupted", round);
}

Test(interior, pointer_into_later_page_of_large_object)
{
    size_t n = 2 * MiB + 4096 * 3 + 40;
    make_big(n);
    for (int round = 0; round < 5; round++) {
        clobber_stack();
        churn_and_collect(1, 4 * MiB, n);
        verify_big(round, n);
    }
}
