/* roots_common.h — bookkeeping for "the only reference is in X" tests.
 *
 * A test makes NR objects with new_watched(), puts the real pointers only in
 * the root under test, and keeps hidden copies here.  survive_rounds()
 * collects 20 times with garbage of the same sizes in between and checks
 * after each collection that every object is still live and intact;
 * count_gone() counts those the last collection found unreachable.
 */
#ifndef TERN_TESTS_ROOTS_COMMON_H
#define TERN_TESTS_ROOTS_COMMON_H

#include "common.h"

#include <criterion/criterion.h>

#define NR 64
#define ROUNDS 20

static uintptr_t watched[NR];
static size_t watched_size[NR];

static size_t watched_size_for(int i)
{
    static const size_t s[] = { 16, 24, 48, 64, 100, 256, 512, 1000, 2048, 5000, 16384 };
    if (i == NR - 1)
        return 200000; /* one large object */
    return s[i % (int)(sizeof s / sizeof s[0])];
}

static inline uint32_t watched_seed(int i) { return 1000u + (uint32_t)i; }

/* Make object i; returns its real address (the caller must put it only in
 * the root under test, from a noinline function). */
static NOINLINE UNUSED void *new_watched(int i)
{
    size_t n = watched_size_for(i);
    void *p = tern_malloc(n);
    T_ASSERT(p != NULL, "tern_malloc(%zu) failed", n);
    fill(p, n, watched_seed(i));
    watched[i] = hide(p);
    watched_size[i] = n;
    return p;
}

static NOINLINE UNUSED void check_watched(const char *what, int round, int count)
{
    for (int i = 0; i < count; i++) {
        char *p = unhide(watched[i]);
        T_ASSERT(tern_base(p) == p, "%s: object %d (%zu bytes) was reclaimed in round %d",
                 what, i, watched_size[i], round);
        size_t bad = check_fill(p, watched_size[i], watched_seed(i));
        T_ASSERT(bad == (size_t)-1, "%s: object %d (%zu bytes) corrupted at offset %zu in round %d",
                 what, i, watched_size[i], bad, round);
    }
}

/* Allocation caches hand out slots from a word of a span's bitmap; make
 * this thread move past the words that hold the watched objects, so that
 * whatever a cache does with the slots it holds cannot keep them alive. */
static NOINLINE UNUSED void move_caches_on(int count)
{
    for (int i = 0; i < count && i < NR; i++) {
        size_t n = watched_size_for(i);
        if (n > 20000)
            continue;
        for (int k = 0; k < 130; k++) {
            char *g = tern_malloc(n);
            T_ASSERT(g != NULL, "tern_malloc(%zu) failed", n);
            g[0] = 1;
        }
    }
}

/* Make objects 0..count-1 here (the main thread), for another thread to
 * take by their hidden addresses.  The objects come from this thread's
 * allocation cache, which this thread then moves on, so the checks do not
 * depend on when another thread's cache is published (test_reclaim checks
 * that separately).  Until unpin_watched() they are also held in `pinned`
 * (garbage made meanwhile may run collections). */
static void *volatile pinned[NR]; /* volatile: stores to a never-read static would be dropped */

static NOINLINE UNUSED void make_watched_all(int count)
{
    for (int i = 0; i < count; i++)
        pinned[i] = new_watched(i);
    move_caches_on(count);
}

/* Call once the root under test holds the objects. */
static NOINLINE UNUSED void unpin_watched(void)
{
    for (int i = 0; i < NR; i++)
        pinned[i] = NULL;
}

/* Collect ROUNDS times with garbage in between, checking after each. */
static NOINLINE UNUSED void survive_rounds(const char *what, int count)
{
    move_caches_on(count);
    for (int r = 0; r < ROUNDS; r++) {
        churn(2 * MiB, watched_size_for(r % count));
        clobber_stack();
        tern_collect();
        check_watched(what, r, count);
    }
}

static NOINLINE UNUSED int count_gone(int count)
{
    int gone = 0;
    for (int i = 0; i < count; i++)
        if (tern_base(unhide(watched[i])) == NULL)
            gone++;
    return gone;
}

/* After the root under test was cleared: most objects must go away.
 * (Main thread only.) */
static NOINLINE UNUSED void expect_gone(const char *what, int count)
{
    clobber_stack();
    tern_collect();
    int gone = count_gone(count);
    cr_assert_geq(gone * 10, count * 9,
                  "%s: only %d of %d objects were reclaimed after the root was cleared",
                  what, gone, count);
}

#endif
