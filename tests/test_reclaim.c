/* test_reclaim.c — unreachable objects are reclaimed; memory stays bounded. */
#include "common.h"

#include <criterion/criterion.h>
#include <sys/resource.h>

TestSuite(reclaim, .timeout = 30);

#define NOBJ 20000

static size_t obj_size(size_t i)
{
    if (i % 997 == 0)
        return 100000 + (i % 7) * 70000; /* a few large objects */
    static const size_t s[] = { 16, 32, 40, 64, 100, 128, 250, 512, 700, 1024, 3000, 8000 };
    return s[i % (sizeof s / sizeof s[0])];
}

/* Hidden addresses live in glibc memory, which Tern does not scan. */
static uintptr_t *hidden;
static void **keep; /* Tern memory, root in BSS: the objects to keep */

/* Makes NOBJ objects.  Every 10th is kept (stored in `keep`); the rest are
 * garbage, arranged as singletons, chains, 2-cycles and self-loops. */
static NOINLINE void make_population(void)
{
    void *prev = NULL;
    keep = tern_malloc((NOBJ / 10 + 1) * sizeof *keep);
    cr_assert_not_null(keep);
    for (size_t i = 0; i < NOBJ; i++) {
        size_t n = obj_size(i);
        void **p = tern_malloc(n);
        cr_assert_not_null(p);
        fill(p, n, (uint32_t)i);
        if (i % 10 == 0) {
            keep[i / 10] = p;
        } else {
            switch (i % 4) {
            case 1: /* chain: points to the previous garbage object */
                if (n >= 16)
                    p[1] = prev;
                break;
            case 2: /* 2-cycle with the previous garbage object */
                if (prev && n >= 16 && obj_size(i - 1) >= 16) {
                    p[1] = prev;
                    ((void **)prev)[1] = p;
                }
                break;
            case 3: /* self-loop */
                p[1] = p;
                break;
            default:
                break;
            }
            prev = p;
        }
        hidden[i] = hide(p);
    }
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* Collections run while the population is built (the heap goal is small),
 * so a slot freed early can be handed out again, sometimes to an object
 * that is kept.  Such an address is live again: it is counted apart, not
 * as a garbage object that survived. */
static NOINLINE size_t count_dead(size_t *kept_alive, size_t *reused)
{
    size_t dead = 0, alive_kept = 0, nkeep = NOBJ / 10;
    uintptr_t *kept = malloc(nkeep * sizeof *kept);
    cr_assert_not_null(kept);
    for (size_t j = 0; j < nkeep; j++)
        kept[j] = (uintptr_t)keep[j];
    qsort(kept, nkeep, sizeof *kept, cmp_ptr);
    *reused = 0;
    for (size_t i = 0; i < NOBJ; i++) {
        void *p = unhide(hidden[i]);
        void *b = tern_base(p);
        if (i % 10 == 0) {
            if (b == p)
                alive_kept++;
        } else if (b == NULL) {
            dead++;
            cr_assert_eq(tern_size(p), 0, "tern_size of an unreachable object must be 0");
        } else {
            uintptr_t key = (uintptr_t)b;
            if (bsearch(&key, kept, nkeep, sizeof *kept, cmp_ptr))
                (*reused)++;
        }
    }
    free(kept);
    *kept_alive = alive_kept;
    return dead;
}

Test(reclaim, unreachable_objects_are_reclaimed)
{
    hidden = malloc(NOBJ * sizeof *hidden);
    cr_assert_not_null(hidden);
    make_population();
    clobber_stack();
    tern_collect();
    size_t kept = 0, reused = 0;
    size_t dead = count_dead(&kept, &reused);
    size_t garbage = NOBJ - NOBJ / 10 - reused;
    cr_assert_eq(kept, NOBJ / 10, "only %zu of %d reachable objects survived", kept, NOBJ / 10);
    cr_assert_geq(dead * 100, garbage * 95,
                  "only %zu of %zu unreachable objects were found dead (want >= 95%%; %zu slots reused by kept objects)",
                  dead, garbage, reused);
    /* the kept ones are intact, even after garbage reuses the freed memory */
    churn_and_collect(2, 8 * MiB, 64);
    for (size_t i = 0; i < NOBJ; i += 10)
        cr_assert(filled_ok(keep[i / 10], obj_size(i), (uint32_t)i), "kept object %zu corrupted", i);
    free(hidden);
}

/* tern_malloc_atomic memory is never scanned: pointers stored only there
 * do not keep objects alive, while the same pointers in scanned memory do. */
#define NREF 4000
static void **atomic_buf;  /* root: an atomic object holding raw pointers */
static void **scanned_buf; /* root: a scanned object holding raw pointers */

static NOINLINE void make_referenced(void)
{
    atomic_buf = tern_malloc_atomic(NREF * sizeof(void *));
    scanned_buf = tern_malloc(NREF * sizeof(void *));
    cr_assert_not_null(atomic_buf);
    cr_assert_not_null(scanned_buf);
    for (size_t i = 0; i < NREF; i++) {
        size_t n = 16 + (i % 50) * 16;
        void *a = tern_malloc(n);
        void *s = tern_malloc(n);
        cr_assert_not_null(a);
        cr_assert_not_null(s);
        fill(a, n, (uint32_t)i);
        fill(s, n, (uint32_t)i + 1);
        atomic_buf[i] = a;
        scanned_buf[i] = s;
    }
}

static NOINLINE void check_referenced(void)
{
    size_t dead = 0;
    for (size_t i = 0; i < NREF; i++) {
        size_t n = 16 + (i % 50) * 16;
        /* reclaimed: dead now, or its slot was reclaimed earlier (by a
         * collection during make_referenced) and handed to another object,
         * which shows by a different content */
        void *a = atomic_buf[i];
        if (tern_base(a) != a || tern_size(a) < n || !filled_ok(a, n, (uint32_t)i))
            dead++;
        cr_assert_eq(tern_base(scanned_buf[i]), scanned_buf[i],
                     "object %zu referenced from scanned memory was reclaimed", i);
        cr_assert(filled_ok(scanned_buf[i], n, (uint32_t)i + 1));
    }
    cr_assert_geq(dead * 100, (size_t)NREF * 95,
                  "only %zu of %d objects referenced only from atomic memory were reclaimed", dead, NREF);
}

Test(reclaim, atomic_memory_is_not_scanned)
{
    make_referenced();
    clobber_stack();
    tern_collect();
    check_referenced();
    cr_assert_eq(tern_base(atomic_buf), atomic_buf, "the atomic object itself is reachable");
}

/* 10 GiB of small and medium objects through a ~1 MiB live window: the heap
 * must be recycled, not grown. */
#define WINDOW 1024

struct rec {
    uint64_t tag;
    uint64_t size;
    struct rec *link; /* points to another live record, to give marking work */
};

static NOINLINE size_t pick_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng);
    if ((r & 15) == 0)
        return 512 + (size_t)((r >> 8) % 16000); /* medium, ~6% */
    return 24 + (size_t)((r >> 8) % 600);        /* small */
}

Test(reclaim, ten_GiB_of_garbage_in_bounded_memory, .timeout = 120)
{
    const size_t total = 10 * GiB;
    const size_t limit = 256 * MiB;
    struct rec **win = tern_malloc(WINDOW * sizeof *win);
    cr_assert_not_null(win);
    struct tern_stats before = get_stats();
    uint64_t rng = 0x1234567;
    size_t allocated = 0, max_rss = 0, next_sample = 0;
    uint64_t count = 0;
    while (allocated < total) {
        size_t n = pick_size(&rng);
        struct rec *r = (count % 5 == 4) ? tern_malloc_atomic(n) : tern_malloc(n);
        cr_assert_not_null(r, "allocation failed after %zu bytes", allocated);
        r->tag = count * 0x9E3779B97F4A7C15ull;
        r->size = n;
        r->link = NULL;
        size_t slot = (size_t)(count % WINDOW);
        struct rec *old = win[slot];
        if (old) {
            cr_assert_eq(old->tag, (count - WINDOW) * 0x9E3779B97F4A7C15ull,
                         "live record corrupted after %zu bytes allocated", allocated);
            if (count % 64 == 0)
                cr_assert_geq(tern_size(old), old->size, "live record has shrunk");
            /* the record made WINDOW/2 ago links to `old`: cut that link, so
             * the live data is the window and no chain grows beyond it */
            struct rec *mid = win[(slot + WINDOW / 2) % WINDOW];
            if (mid && mid->link == old)
                mid->link = NULL;
        }
        if (count % 5 != 4)
            r->link = win[(slot + WINDOW / 2) % WINDOW];
        win[slot] = r;
        allocated += n;
        count++;
        if (allocated >= next_sample) {
            size_t rss = rss_now();
            if (rss > max_rss)
                max_rss = rss;
            cr_assert_lt(rss, limit, "RSS %zu MiB after %zu MiB allocated (limit %zu MiB)",
                         rss / MiB, allocated / MiB, limit / MiB);
            next_sample += 64 * MiB;
        }
    }
    struct tern_stats after = get_stats();
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_SELF, &ru), 0);
    cr_assert_lt((size_t)ru.ru_maxrss * 1024, limit, "peak RSS %ld KiB exceeds %zu MiB",
                 ru.ru_maxrss, limit / MiB);
    cr_assert_gt(after.cycles, before.cycles, "no collection ran during 10 GiB of allocation");
    cr_assert_geq(after.allocated_bytes - before.allocated_bytes, (uint64_t)total,
                  "allocated_bytes grew by only %llu",
                  (unsigned long long)(after.allocated_bytes - before.allocated_bytes));
    cr_assert_geq(after.allocated_objects - before.allocated_objects, count);
    cr_assert_geq(after.freed_bytes - before.freed_bytes, (uint64_t)(8 * GiB),
                  "freed_bytes grew by only %llu MiB",
                  (unsigned long long)((after.freed_bytes - before.freed_bytes) / MiB));
    cr_assert_lt(after.heap_bytes, (uint64_t)limit, "heap_bytes %llu MiB",
                 (unsigned long long)(after.heap_bytes / MiB));
    /* the window is still intact */
    for (size_t i = 0; i < WINDOW; i++) {
        cr_assert_not_null(win[i]);
        cr_assert_eq(tern_base(win[i]), win[i]);
        cr_assert_geq(tern_size(win[i]), win[i]->size);
    }
}

/* Unreachable large objects give their memory back for reuse: allocating a
 * 32 MiB object 100 times, keeping one at a time, stays bounded. */
Test(reclaim, large_objects_are_recycled)
{
    for (int i = 0; i < 100; i++) {
        char *p = tern_malloc(32 * MiB);
        cr_assert_not_null(p, "round %d", i);
        p[0] = 1;
        p[32 * MiB - 1] = 2;
        for (size_t off = 0; off < 32 * MiB; off += 4096)
            p[off] = (char)off;
        if (i % 10 == 0) {
            size_t rss = rss_now();
            cr_assert_lt(rss, 512 * MiB, "RSS %zu MiB after %d large objects", rss / MiB, i + 1);
        }
    }
    struct tern_stats st = get_stats();
    cr_assert_gt(st.cycles, 0);
    cr_assert_lt(st.mapped_bytes, (uint64_t)(1024 * MiB), "mapped %llu MiB for 32 MiB of live data",
                 (unsigned long long)(st.mapped_bytes / MiB));
}

/* Objects a thread allocated and dropped are garbage even while that thread
 * sits idle (blocked) and still holds its allocation cache; likewise after
 * it exited. */
#include <pthread.h>
#include <semaphore.h>

#define NIDLE 256
static uintptr_t idle_hidden[NIDLE];
static sem_t idle_ready, idle_go;

static NOINLINE void idle_make_garbage(void)
{
    for (int i = 0; i < NIDLE; i++) {
        size_t n = 16 + (size_t)(i % 8) * 40;
        void *p = tern_malloc(n);
        T_ASSERT(p != NULL, "tern_malloc failed");
        fill(p, n, (uint32_t)i);
        idle_hidden[i] = hide(p);
    }
}

static void *idle_thread(void *arg)
{
    int wait = arg != NULL;
    idle_make_garbage();
    clobber_stack();
    if (wait) {
        sem_post(&idle_ready);
        while (sem_wait(&idle_go) != 0)
            ;
    }
    return NULL;
}

static NOINLINE int idle_gone(void)
{
    int gone = 0;
    for (int i = 0; i < NIDLE; i++)
        if (tern_base(unhide(idle_hidden[i])) == NULL)
            gone++;
    return gone;
}

Test(reclaim, garbage_of_idle_thread_is_reclaimed)
{
    cr_assert_eq(sem_init(&idle_ready, 0, 0), 0);
    cr_assert_eq(sem_init(&idle_go, 0, 0), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, idle_thread, (void *)1), 0);
    while (sem_wait(&idle_ready) != 0)
        ;
    churn_and_collect(2, 2 * MiB, 0);
    int gone = idle_gone();
    sem_post(&idle_go);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_geq(gone * 10, NIDLE * 9,
                  "only %d of %d objects dropped by a blocked thread were reclaimed", gone, NIDLE);
}

Test(reclaim, garbage_of_exited_thread_is_reclaimed)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, idle_thread, NULL), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    churn_and_collect(2, 2 * MiB, 0);
    int gone = idle_gone();
    cr_assert_geq(gone * 10, NIDLE * 9,
                  "only %d of %d objects dropped by an exited thread were reclaimed", gone, NIDLE);
}
