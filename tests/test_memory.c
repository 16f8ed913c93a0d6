/* test_memory.c — memory that comes back (issue #6): the scavenger, the
 * memory limit and the out-of-memory handler, per-class figures.
 *
 * Bounds on resident memory are generous (the test process, Criterion and
 * the kernel's own accounting add noise); what is checked is that memory
 * does come back, that a limit is never passed, and that a program under a
 * limit keeps working. */
#include "common.h"
#include "tern/memory.h"

#include <criterion/criterion.h>
#include "helper_run.h"
#include <errno.h>
#include <time.h>

static int count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    int n = 0, c;
    if (!f) return -1;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct tern_stats stats(void)
{
    struct tern_stats st;
    cr_assert_eq(tern_get_stats(&st), 0);
    return st;
}

/* total bytes of small objects, at most `window` bytes of them alive at a
 * time (a ring in a scanned object), then the ring is dropped. */
static NOINLINE void burst(size_t total, size_t window)
{
    size_t n = window / 256;
    void **ring = tern_malloc(n * sizeof *ring);
    cr_assert_not_null(ring);
    size_t done = 0, i = 0;
    uint64_t r = 88172645463325252ull;
    while (done < total) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        size_t sz = 16 + (size_t)(r % 480);
        char *p = tern_malloc(sz);
        cr_assert_not_null(p);
        p[0] = 1;
        ring[i] = p;
        if (++i == n) i = 0;
        done += sz;
    }
    memset(ring, 0, n * sizeof *ring);
}

Test(memory, comes_back_when_the_program_idles)
{
    tern_free(tern_malloc(16));
    size_t r0 = rss_now();
    burst(384 * MiB, 48 * MiB);
    clobber_stack();
    size_t peak = rss_now();
    /* Nothing is called: the scavenger notices the idle program, runs a
     * cycle, sweeps and returns the free pages. */
    size_t now = peak;
    for (int i = 0; i < 100 && now > r0 + 24 * MiB; i++) {
        sleep_ms(100);
        now = rss_now();
    }
    struct tern_stats st = stats();
    cr_assert_lt(now, r0 + 24 * MiB,
                 "RSS %zu KiB after 10 s idle (start %zu KiB, peak %zu KiB); cycles %llu, live %llu KiB, in use %llu KiB, "
                 "spans %llu KiB, free pages %llu KiB, returned %llu KiB",
                 now >> 10, r0 >> 10, peak >> 10, (unsigned long long)st.cycles, (unsigned long long)st.live_bytes >> 10,
                 (unsigned long long)st.in_use_bytes >> 10, (unsigned long long)st.heap_bytes >> 10,
                 (unsigned long long)st.free_bytes >> 10, (unsigned long long)st.scavenged_bytes >> 10);
    cr_assert_gt(st.scavenged_bytes, 32 * MiB, "returned only %llu bytes", (unsigned long long)st.scavenged_bytes);
}

Test(memory, release_memory_returns_every_free_page)
{
    burst(128 * MiB, 16 * MiB);
    clobber_stack();
    tern_collect();
    size_t before = rss_now();
    size_t got = tern_release_memory();
    struct tern_stats st = stats();
    cr_assert_gt(got, 8 * MiB, "released %zu", got);
    cr_assert_eq(st.free_bytes, 0, "free pages still held: %llu", (unsigned long long)st.free_bytes);
    cr_assert_gt(st.released_bytes, 8 * MiB);
    cr_assert_lt(rss_now() + got / 2, before + 1, "RSS did not fall: %zu -> %zu KiB", before >> 10, rss_now() >> 10);
}

Test(memory, mappings_stay_bounded)
{
    /* The heap's largest size first: mappings grow with the heap (one per
     * chunk at most), not with the rounds of allocating and returning. */
    burst(64 * MiB, 28 * MiB);
    clobber_stack();
    tern_collect();
    tern_release_memory();
    int m0 = count_mappings();
    for (int round = 0; round < 12; round++) {
        burst(48 * MiB, (size_t)(4 + round % 5 * 6) * MiB);
        clobber_stack();
        tern_collect();
        tern_release_memory();
    }
    int m1 = count_mappings();
    cr_assert_gt(m0, 0);
    cr_assert_leq(m1, m0 + 8, "mappings grew from %d to %d", m0, m1);
}

Test(memory, no_refault_storm_at_a_steady_state)
{
    /* A steady program: 24 MiB live, constant allocation rate.  Pages kept
     * for the heap goal are reused, not returned and faulted in again. */
    burst(64 * MiB, 24 * MiB); /* warm up to the steady heap */
    uint64_t s0 = stats().scavenged_bytes;
    burst(768 * MiB, 24 * MiB);
    struct tern_stats st = stats();
    uint64_t returned = st.scavenged_bytes - s0;
    cr_assert_gt(st.cycles, 4);
    cr_assert_lt(returned, 96 * MiB, "returned %llu MiB while allocating 768 MiB at a steady state",
                 (unsigned long long)(returned >> 20));
}

/* ---- the memory limit ------------------------------------------------------ */

/* Live data: 1 KiB objects in a table (a scanned object held by a static
 * root).  Not a linked list: a stale copy of one pointer left in a register
 * or on the stack must not keep all the others alive. */
#define NODE 1024
#define MAX_NODES (64 * 1024)
static void **table;
static size_t ntable;

/* Allocates 1 KiB objects into the table until NULL or `max` bytes. */
static NOINLINE size_t fill_until_null(size_t max, int *err)
{
    size_t got = 0;
    *err = 0;
    if (!table) {
        table = tern_malloc(MAX_NODES * sizeof *table);
        cr_assert_not_null(table);
    }
    while (got < max && ntable < MAX_NODES) {
        errno = 0;
        char *n = tern_malloc(NODE);
        if (!n) {
            *err = errno;
            break;
        }
        memset(n, 0x5a, NODE);
        table[ntable++] = n;
        got += NODE;
    }
    return got;
}

static void drop_table(void)
{
    memset(table, 0, MAX_NODES * sizeof *table);
    ntable = 0;
}

Test(limit, allocation_past_the_limit_returns_null_then_recovers)
{
    cr_assert_eq(tern_set_memory_limit(48 * MiB), 0);
    cr_assert_eq(tern_set_memory_limit(TERN_LIMIT_QUERY), 48 * MiB);
    int err;
    size_t got = fill_until_null(512 * MiB, &err);
    struct tern_stats st = stats();
    cr_assert_lt(got, 48 * MiB, "allocated %zu bytes under a 48 MiB limit", got);
    cr_assert_gt(got, 24 * MiB, "only %zu bytes before NULL", got);
    cr_assert_eq(err, ENOMEM);
    cr_assert_leq(st.committed_bytes, 48 * MiB, "committed %llu", (unsigned long long)st.committed_bytes);
    cr_assert_eq(st.memory_limit, 48 * MiB);
    cr_assert_gt(st.limit_failures, 0);
    /* a large object does not fit either */
    errno = 0;
    cr_assert_null(tern_malloc(8 * MiB));
    cr_assert_eq(errno, ENOMEM);
    /* the program drops its data: allocation works again */
    drop_table();
    clobber_stack();
    tern_collect();
    for (int i = 0; i < 4; i++) {
        void *p = tern_malloc(8 * MiB);
        cr_assert_not_null(p, "large allocation %d failed after freeing", i);
    }
    got = fill_until_null(16 * MiB, &err);
    cr_assert_eq(err, 0);
    cr_assert_eq(got, 16 * MiB);
}

static size_t oom_asked;
static char oom_spare[64];
static void *oom_handler(size_t n)
{
    oom_asked = n;
    return oom_spare;
}

Test(limit, oom_handler_decides_what_allocation_returns)
{
    tern_set_memory_limit(16 * MiB);
    cr_assert_null(tern_set_oom_handler(oom_handler));
    void *p = tern_malloc(64 * MiB);
    cr_assert_eq(p, oom_spare);
    cr_assert_geq(oom_asked, 64 * MiB);
    void *q = tern_malloc(1024);
    cr_assert_neq(q, oom_spare);
    cr_assert_not_null(q);
    cr_assert_eq(tern_set_oom_handler(NULL), oom_handler);
    errno = 0;
    cr_assert_null(tern_malloc(64 * MiB));
    cr_assert_eq(errno, ENOMEM);
}

Test(limit, a_program_just_under_the_limit_keeps_working)
{
    tern_set_memory_limit(64 * MiB);
    int err;
    size_t live = fill_until_null(40 * MiB, &err);
    cr_assert_eq(err, 0, "could not build 40 MiB live under a 64 MiB limit");
    cr_assert_geq(live, 40 * MiB);
    uint64_t c0 = stats().cycles;
    for (size_t done = 0; done < 512 * MiB; done += 256) {
        char *p = tern_malloc(256);
        cr_assert_not_null(p, "allocation failed after %zu MiB of garbage", done >> 20);
        p[0] = 1;
    }
    struct tern_stats st = stats();
    cr_assert_gt(st.cycles, c0 + 4);
    cr_assert_leq(st.committed_bytes, 64 * MiB);
    cr_assert_eq(ntable * NODE, live);
    for (size_t i = 0; i < ntable; i++) {
        const char *n = table[i];
        cr_assert(n[0] == 0x5a && n[NODE - 1] == 0x5a, "live object %zu damaged", i);
    }
}

/* TERN_MEMLIMIT and tern_options.memory_limit: the helper runs in a fresh
 * process, so that they take effect from the start. */
Test(limit, from_the_environment_and_options)
{
    struct run r;
    const char *env[] = {"TERN_MEMLIMIT=96MiB", NULL};
    run_helper(&r, "memlimit", env);
    cr_assert(strstr(r.out, "memory_limit=100663296\n"), "out:\n%s", r.out);
    cr_assert_str_empty(r.err, "stderr:\n%s", r.err);
    const char *bad[] = {"TERN_MEMLIMIT=lots", NULL};
    run_helper(&r, "memlimit", bad);
    cr_assert(strstr(r.out, "memory_limit=0\n"), "out:\n%s", r.out);
    cr_assert_str_eq(r.err, "tern: ignoring TERN_MEMLIMIT=lots (expected a size >= 1MiB, e.g. 512MiB, or off); "
                            "using the default\n");
    const char *off[] = {"TERN_MEMLIMIT=off", NULL};
    run_helper(&r, "memlimit", off);
    cr_assert(strstr(r.out, "memory_limit=0\n"), "out:\n%s", r.out);
    run_helper(&r, "init-limit", env); /* the option wins */
    cr_assert(strstr(r.out, "init=0 memory_limit=83886080 query=83886080\n"), "out:\n%s", r.out);
}

/* ---- visibility ------------------------------------------------------------ */

Test(memory, class_figures)
{
    static void *objs[1000];
    for (int i = 0; i < 1000; i++) objs[i] = tern_malloc(48);
    void *big = tern_malloc(100000);
    cr_assert_not_null(big);
    cr_assert_eq(tern_get_class_stats(NULL, 5), TERN_EINVAL);
    int n = tern_get_class_stats(NULL, 0);
    cr_assert_gt(n, 1);
    struct tern_class_stats cs[128];
    cr_assert_eq(tern_get_class_stats(cs, 128), n);
    bool found48 = false, found_large = false;
    for (int i = 0; i < n; i++) {
        cr_assert_eq(cs[i].used_bytes + cs[i].free_bytes <= cs[i].span_bytes, true);
        if (i) cr_assert_gt(cs[i].size, cs[i - 1].size);
        if (cs[i].size == 48) found48 = cs[i].used_bytes >= 40000 && cs[i].spans > 0; /* the slots a cache is handing out are counted later */
        if (cs[i].size == 0) found_large = cs[i].used_bytes >= 100000;
    }
    cr_assert(found48, "class 48 not reported with its 1000 objects");
    cr_assert(found_large, "large object not reported");
    struct tern_stats st = stats();
    cr_assert_geq(st.mapped_bytes, st.heap_bytes + st.free_bytes);
    cr_assert_gt(st.resident_bytes, 0);
    cr_assert_geq(st.committed_bytes, st.heap_bytes);
    cr_assert_not_null(objs[999]);
    objs[0] = big; /* keep big alive until here */
}

/* A request past physical memory plus swap fails at once (Tern maps with
 * MAP_NORESERVE: it would otherwise map terabytes), and leaves nothing in
 * the chunk table: fuzzing found a 2^45-aligned request that ran out of
 * table space half way and left entries that later sent pointers far past
 * a new chunk to it. */
Test(memory, giant_requests_fail_and_leave_the_chunk_table_clean)
{
    errno = 0;
    cr_assert_null(tern_malloc((size_t)1 << 45));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(tern_malloc_atomic(((size_t)1 << 46) - 4096));
    cr_assert_eq(errno, ENOMEM);
    char *q = tern_malloc(6 * MiB);
    cr_assert_not_null(q);
    cr_assert_eq(tern_base(q + 5 * MiB), q);
    cr_assert_null(tern_base(q + 64 * MiB));
    cr_assert_null(tern_base(q + ((size_t)1 << 40)));
    cr_assert_geq(tern_size(q), 6 * MiB);
}

/* A malloc-style program frees everything explicitly, and with TERN_GC=off
 * no collection ever runs (a helper process, so that the variable takes
 * effect): the spans its frees emptied still go back, and their pages to
 * the OS, when it idles. */
Test(memory, comes_back_after_explicit_frees_when_the_program_idles)
{
    struct run r;
    const char *env[] = {"TERN_GC=off", NULL};
    run_helper(&r, "free-idle", env);
    unsigned long start = 0, peak = 0, idle = 0, cycles = 1;
    const char *l = strstr(r.out, "free-idle ");
    cr_assert_not_null(l, "out:\n%s\nerr:\n%s", r.out, r.err);
    cr_assert_eq(sscanf(l, "free-idle start=%lu peak=%lu idle=%lu cycles=%lu", &start, &peak, &idle, &cycles), 4, "%s", l);
    cr_assert_eq(cycles, 0, "TERN_GC=off ran a collection");
    cr_assert_gt(peak, start + 96 * 1024, "the heap did not grow: %s", l);
    cr_assert_lt(idle, start + 24 * 1024, "RSS (KiB) did not come back within 10 s: %s", l);
}

/* A big object freed explicitly goes back to the OS at once, above a
 * threshold that rises to each size so returned (glibc's dynamic mmap
 * threshold): a buffer grown by doubling returns every smaller copy, and
 * one size freed and allocated again and again keeps its pages. */
/* A large pointer-free object of n bytes, every byte set to v. */
static char *filled(size_t n, int v)
{
    char *p = tern_malloc_atomic(n);
    cr_assert_not_null(p);
    memset(p, v, n);
    return p;
}

/* Free p; returns the bytes that went back to the OS meanwhile. */
static uint64_t free_returned(void *p)
{
    struct tern_stats a = stats();
    tern_free(p);
    return stats().scavenged_bytes - a.scavenged_bytes;
}

Test(memory, big_explicit_frees_come_back_at_once)
{
    size_t n = 1536 * 1024; /* a large object inside a normal chunk */
    char *p = filled(n, 1);
    size_t rss0 = rss_now();
    uint64_t back = free_returned(p);
    cr_assert_geq(back, n, "freed %zu bytes, %llu returned", n, (unsigned long long)back);
    cr_assert_lt(rss_now() + n / 2, rss0, "RSS did not fall: %zu -> %zu KiB", rss0 >> 10, rss_now() >> 10);
    /* the same size again: now at the threshold, so it stays for reuse */
    cr_assert_eq(free_returned(filled(n, 2)), 0, "a freed size at the threshold was returned");
}

/* realloc that grows a big object by half or more copies it, and the old
 * copy's pages go back at once even below the return threshold: glibc
 * would have grown it in place, so keeping them would only add the old
 * copy to the peak.  Grown by less, the old copy stays for reuse. */
Test(memory, realloc_returns_the_old_copy_at_once)
{
    size_t big = 2048 * 1024, n = 1024 * 1024;
    free_returned(filled(big, 1)); /* raises the threshold to 2 MiB */
    /* control: a plain free of 1 MiB, now below the threshold, is kept */
    cr_assert_eq(free_returned(filled(n, 2)), 0, "a free below the threshold was returned");
    /* the same size grown by realloc: the old copy is returned */
    char *p = filled(n, 0);
    for (size_t i = 0; i < n; i++) p[i] = (char)(i * 7);
    struct tern_stats c = stats();
    char *q = tern_realloc(p, n + n / 2);
    cr_assert_not_null(q);
    struct tern_stats d = stats();
    cr_assert_geq(d.scavenged_bytes - c.scavenged_bytes, n, "old copy of %zu bytes: %llu returned", n,
                  (unsigned long long)(d.scavenged_bytes - c.scavenged_bytes));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(q[i], (char)(i * 7), "byte %zu lost in the copy", i);
    /* shrinking keeps the object where it is */
    cr_assert_eq(tern_realloc(q, n + n / 4), q);
    /* grown by an eighth: the old copy is kept */
    c = stats();
    char *r = tern_realloc(q, n + n / 2 + n / 8);
    cr_assert_not_null(r);
    d = stats();
    cr_assert_eq(d.scavenged_bytes, c.scavenged_bytes, "old copy of a growth by an eighth was returned");
    cr_assert_eq(r[n - 1], (char)((n - 1) * 7));
    tern_free(r);
}
