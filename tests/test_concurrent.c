/* test_concurrent.c — concurrent marking under every write-barrier kind.
 *
 * Each scenario runs once per barrier kind (TERN_BARRIER=uffd, softdirty,
 * mprotect, explicit, stw), with collections back to back (TERN_GC=10,
 * TERN_INITIAL_HEAP=1MiB, and a thread calling tern_collect in a loop),
 * while the program moves pointers in every way a barrier must notice:
 * plain stores, pointers held only in locals or static data for a while,
 * memcpy, read(2), tern_realloc, threads that come and go, fork.  Every
 * reachable object is checked (a header checksum over its id and length, a
 * fill pattern over its payload, and its id where the test knows which
 * object must be there), so an object freed under a live pointer shows up
 * as a dead, overwritten or different object; and the statistics must show
 * that the garbage made meanwhile was reclaimed.
 *
 * Tern reads its TERN_* variables once, at its first use in a process, and
 * Criterion's worker process already uses Tern before a test body runs (its
 * pthread_create goes through Tern's wrapper).  So each test runs this
 * program again, fresh, with the chosen variables and
 * TERN_CONC_SCENARIO=<scenario>: a constructor sees that variable, runs the
 * scenario and exits with its status (0 passed, 77 kind not available on
 * this kernel, anything else failed, with the details on stderr, which the
 * test shows).  To run one scenario by hand (e.g. under gdb):
 *
 *     TERN_CONC_SCENARIO=graph TERN_BARRIER=uffd TERN_GC=10 \
 *     TERN_INITIAL_HEAP=1MiB tests/test_concurrent
 *
 * (TERN_CONC_MS=N makes each scenario's busy phase N ms instead of 800.)
 *
 * A kind the kernel cannot give (softdirty needs CONFIG_MEM_SOFT_DIRTY;
 * uffd needs Linux >= 6.7) makes Tern fall back to another kind: those two
 * tests are then skipped, saying which kind Tern used.  Any other kind
 * that is not the one asked for is a failure.
 *
 * Every pointer store into a heap object goes through TERN_STORE (NULLs
 * too), and every memcpy, memmove, memset or read(2) that changes pointers
 * in heap memory is followed by tern_written, as TERN_BARRIER=explicit
 * requires; with the other kinds these are plain stores.  Writes of
 * non-pointer data (ids, payloads) need no barrier.
 */
#include "common.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

/* ==== the scenario side: runs in a fresh process ======================== */

static const char *kind = "?";      /* TERN_BARRIER of this run, for messages */
static const char *scenario = "?";
static uint64_t run_ms = 800;       /* each scenario's busy phase (TERN_CONC_MS) */
static uint64_t deadline_ms;
static long os_page;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline int time_up(void) { return now_ms() >= deadline_ms; }

/* ---- failure reports ---------------------------------------------------- */

static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

/* Prints up to n bytes at p as hex, reading them safely (p may be wild). */
static void dump_bytes(const void *p, size_t n)
{
    unsigned char buf[256];
    if (n > sizeof buf)
        n = sizeof buf;
    struct iovec local = { buf, n }, remote = { (void *)p, n };
    ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (got <= 0) {
        fprintf(stderr, "    (%p cannot be read)\n", p);
        return;
    }
    for (ssize_t i = 0; i < got; i += 32) {
        fprintf(stderr, "    +%03zd:", i);
        for (ssize_t j = i; j < got && j < i + 32; j++)
            fprintf(stderr, "%s%02x", (j % 8) ? "" : " ", buf[j]);
        fputc('\n', stderr);
    }
}

/* Reports a failure about the object at obj (may be NULL) and ends the
 * process with status 3; safe from any thread. */
static __attribute__((noreturn, format(printf, 2, 3)))
void fail_at(const void *obj, const char *fmt, ...)
{
    pthread_mutex_lock(&fail_lock); /* one report; never unlocked */
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAILED [scenario %s, TERN_BARRIER=%s]: ", scenario, kind);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (obj) {
        fprintf(stderr, "  object %p: tern_base %p, tern_size %zu; its first bytes:\n", obj,
                tern_base(obj), tern_size(obj));
        dump_bytes(obj, 128);
    }
    struct tern_stats st = get_stats();
    fprintf(stderr, "  stats: %llu cycles, %llu pauses, barrier %s, heap %llu, in use %llu, freed %llu bytes\n",
            (unsigned long long)st.cycles, (unsigned long long)st.pauses,
            tern_barrier_name((int)st.barrier), (unsigned long long)st.heap_bytes,
            (unsigned long long)st.in_use_bytes, (unsigned long long)st.freed_bytes);
    fflush(stderr);
    _exit(3);
}

/* CHECK(cond, fmt, ...): report and exit when cond is false. */
#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond))                                                         \
            fail_at(NULL, __VA_ARGS__);                                      \
    } while (0)

/* ---- nodes --------------------------------------------------------------- */

#define NKIDS 4

struct node {
    uint64_t id;          /* unique, from 1                                  */
    uint64_t check;       /* node_check(id, len)                              */
    uint32_t len;         /* payload bytes                                    */
    uint32_t spare;
    uint64_t seen;        /* traversal epoch (one thread at a time uses it)   */
    struct node *kid[NKIDS];
    unsigned char payload[]; /* fill(payload, len, node_seed(id))             */
};

static atomic_uint_fast64_t next_id = 1;

/* The checksum has its top byte set, so it never looks like a heap address. */
static inline uint64_t node_check(uint64_t id, uint32_t len)
{
    uint64_t x = (id + 0x51ED27u) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)len << 17);
    x ^= x >> 29;
    return x | 0xA500000000000000ull;
}

static inline uint32_t node_seed(uint64_t id) { return (uint32_t)(id * 2654435761u) ^ 0x3C3Cu; }

static struct node *node_new(uint32_t len)
{
    struct node *n = tern_malloc(sizeof *n + len);
    CHECK(n != NULL, "tern_malloc(%zu) failed", sizeof *n + len);
    uint64_t id = atomic_fetch_add(&next_id, 1);
    n->id = id;
    n->len = len;
    n->check = node_check(id, len);
    fill(n->payload, len, node_seed(id));
    return n;
}

static inline struct node *ld(struct node *const *slot)
{
    return __atomic_load_n(slot, __ATOMIC_RELAXED);
}

/* Checks that n is a live, intact node (and that its children are live
 * objects); reports what is wrong and exits otherwise. */
static void check_node(const char *ctx, const struct node *n)
{
    if (tern_base(n) != n)
        fail_at(n, "%s: node %p is not a live object (tern_base %p, tern_size %zu)", ctx,
                (const void *)n, tern_base(n), tern_size(n));
    uint64_t id = n->id;
    uint32_t len = n->len;
    uint64_t want = node_check(id, len);
    if (n->check != want)
        fail_at(n, "%s: node %p header corrupted: id %llu, len %u, checksum expected %016llx, found %016llx",
                ctx, (const void *)n, (unsigned long long)id, len, (unsigned long long)want,
                (unsigned long long)n->check);
    if (id == 0 || id >= atomic_load(&next_id))
        fail_at(n, "%s: node %p has id %llu, never handed out", ctx, (const void *)n,
                (unsigned long long)id);
    if (tern_size(n) < sizeof *n + len)
        fail_at(n, "%s: node %p (id %llu): tern_size %zu, smaller than %zu", ctx, (const void *)n,
                (unsigned long long)id, tern_size(n), sizeof *n + len);
    size_t bad = check_fill(n->payload, len, node_seed(id));
    if (bad != (size_t)-1)
        fail_at(n, "%s: node %p (id %llu, len %u): payload byte %zu expected 0x%02x, found 0x%02x", ctx,
                (const void *)n, (unsigned long long)id, len, bad, pat_byte(node_seed(id), bad),
                n->payload[bad]);
    for (int k = 0; k < NKIDS; k++) {
        const struct node *c = ld(&n->kid[k]);
        if (c && tern_base(c) != c)
            fail_at(c, "%s: node %p (id %llu): kid[%d] = %p is not a live object (tern_base %p)", ctx,
                    (const void *)n, (unsigned long long)id, k, (const void *)c, tern_base(c));
    }
}

/* Also checks the children themselves. */
static void check_node_deep(const char *ctx, const struct node *n)
{
    check_node(ctx, n);
    for (int k = 0; k < NKIDS; k++) {
        const struct node *c = ld(&n->kid[k]);
        if (c)
            check_node(ctx, c);
    }
}

static void check_id(const char *ctx, const struct node *n, uint64_t want)
{
    check_node_deep(ctx, n);
    if (n->id != want)
        fail_at(n, "%s: expected node id %llu at %p, found id %llu (a different object)", ctx,
                (unsigned long long)want, (const void *)n, (unsigned long long)n->id);
}

/* ---- collections in the background ----------------------------------- */

static atomic_int stop_collector;
static atomic_long explicit_collections;

static void *collector_main(void *arg)
{
    uint64_t rng = (uintptr_t)arg | 1;
    while (!atomic_load(&stop_collector)) {
        tern_collect();
        atomic_fetch_add(&explicit_collections, 1);
        /* a little room between cycles, so that the cycles the mutators'
         * allocations start get their turn too */
        if (rng_next(&rng) % 4 == 0)
            usleep((useconds_t)(rng_next(&rng) % 1000));
        else
            sched_yield();
    }
    return NULL;
}

static pthread_t collector;

static void collector_start(void)
{
    atomic_store(&stop_collector, 0);
    CHECK(pthread_create(&collector, NULL, collector_main, (void *)(uintptr_t)0x1234567) == 0,
          "pthread_create (collector) failed");
}

static void collector_stop(void)
{
    atomic_store(&stop_collector, 1);
    CHECK(pthread_join(collector, NULL) == 0, "pthread_join (collector) failed");
}

static void start_threads(pthread_t *t, int n, void *(*fn)(void *))
{
    for (int i = 0; i < n; i++)
        CHECK(pthread_create(&t[i], NULL, fn, (void *)(uintptr_t)i) == 0, "pthread_create failed");
}

static void join_threads(pthread_t *t, int n)
{
    for (int i = 0; i < n; i++)
        CHECK(pthread_join(t[i], NULL) == 0, "pthread_join failed");
}

/* n workers running fn until the scenario's time is up, while the
 * collector thread collects back to back. */
static void run_workers(pthread_t *t, int n, void *(*fn)(void *))
{
    collector_start();
    start_threads(t, n, fn);
    join_threads(t, n);
    collector_stop();
}

/* ==== scenario 1: threads rewire a shared graph ======================== */

#define G_ROOTS   64
#define G_INIT    3000
#define G_THREADS 3
#define G_PARK    4
#define G_STACK   (1 << 16)

static struct node **g_roots;                        /* heap; this static is its only reference */
static struct node *g_parked[G_THREADS][G_PARK];     /* static data, a root: nodes parked here */
static uint64_t g_parked_id[G_THREADS][G_PARK];
static atomic_int g_too_big;                         /* the graph grew: drop more edges */
static uint64_t g_epoch;
static atomic_long g_ops, g_stashes;

static struct node *g_walk(uint64_t *rng)
{
    struct node *n = ld(&g_roots[rng_next(rng) % G_ROOTS]);
    unsigned depth = (unsigned)(rng_next(rng) % 6);
    for (unsigned d = 0; n && d < depth; d++) {
        check_node("graph walk", n);
        struct node *k = ld(&n->kid[rng_next(rng) % NKIDS]);
        if (!k)
            break;
        n = k;
    }
    if (n)
        check_node("graph walk", n);
    return n;
}

static void g_link(struct node *x, uint64_t *rng)
{
    struct node *b = g_walk(rng);
    if (b)
        TERN_STORE(&b->kid[rng_next(rng) % NKIDS], x);
    else
        TERN_STORE(&g_roots[rng_next(rng) % G_ROOTS], x);
}

/* Unlinks a child of a, keeps it only in a local while allocating (so
 * cycles start, mark and end meanwhile), checks it and links it back. */
static NOINLINE void g_stash(struct node *a, unsigned i, uint64_t *rng)
{
    struct node *x = ld(&a->kid[i]);
    if (!x)
        return;
    TERN_STORE(&a->kid[i], NULL);
    uint64_t id = x->id;
    churn(16 * KiB + rng_next(rng) % (96 * KiB), (rng_next(rng) & 1) ? sizeof *x + x->len : 0);
    sched_yield();
    check_id("node held only in a local variable", x, id);
    g_link(x, rng);
    atomic_fetch_add(&g_stashes, 1);
}

static void *g_worker(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (me + 7);
    long ops = 0;
    while (!time_up()) {
        unsigned op = (unsigned)(rng_next(&rng) % 100);
        int big = atomic_load(&g_too_big);
        struct node *a = g_walk(&rng);
        if (!a) {
            TERN_STORE(&g_roots[rng_next(&rng) % G_ROOTS], node_new((uint32_t)(rng_next(&rng) % 300)));
            continue;
        }
        unsigned i = (unsigned)(rng_next(&rng) % NKIDS);
        if (op < 25) { /* move a pointer from one node to another */
            struct node *b = g_walk(&rng);
            if (b) {
                TERN_STORE(&b->kid[rng_next(&rng) % NKIDS], ld(&a->kid[i]));
                TERN_STORE(&a->kid[i], big ? NULL : g_walk(&rng));
            }
        } else if (op < 37) { /* only a local refers to it for a while */
            g_stash(a, i, &rng);
        } else if (op < 47) { /* park in static data / bring back */
            unsigned s = (unsigned)(rng_next(&rng) % G_PARK);
            struct node *x = g_parked[me][s];
            if (x) {
                check_id("node parked in static data", x, g_parked_id[me][s]);
                TERN_STORE(&a->kid[i], x);
                g_parked[me][s] = NULL;
            } else if ((x = ld(&a->kid[i])) != NULL) {
                g_parked_id[me][s] = x->id;
                g_parked[me][s] = x;
                TERN_STORE(&a->kid[i], NULL);
            }
        } else if (op < 67) { /* a new node, pointing into the graph */
            struct node *x = node_new((uint32_t)(rng_next(&rng) % 300));
            for (int k = 0; k < NKIDS; k++)
                if (!big && rng_next(&rng) % 3 == 0)
                    TERN_STORE(&x->kid[k], g_walk(&rng));
            TERN_STORE(&a->kid[i], x);
            if (big)
                TERN_STORE(&a->kid[(i + 1) % NKIDS], NULL);
        } else if (op < 72) { /* replace a root */
            struct node *x = (rng_next(&rng) & 1) ? node_new((uint32_t)(rng_next(&rng) % 300)) : g_walk(&rng);
            if (x)
                TERN_STORE(&g_roots[rng_next(&rng) % G_ROOTS], x);
        } else if (op < 80) { /* copy a node's children wholesale */
            struct node *b = g_walk(&rng);
            if (b && b != a) {
                struct node *tmp[NKIDS];
                for (int k = 0; k < NKIDS; k++)
                    tmp[k] = ld(&a->kid[k]);
                memcpy(b->kid, tmp, sizeof tmp);
                tern_written(b->kid, sizeof tmp);
                if (big) {
                    memset(a->kid, 0, sizeof a->kid);
                    tern_written(a->kid, sizeof a->kid);
                }
            }
        } else { /* look deeper */
            check_node_deep("graph walk", a);
        }
        if ((++ops & 31) == 0)
            churn(32 * KiB, 0);
    }
    atomic_fetch_add(&g_ops, ops);
    return NULL;
}

/* Visits every node reachable from the roots (and the parked ones) and
 * checks it; returns how many there are. */
static NOINLINE size_t g_traverse(const char *ctx, int with_parked)
{
    struct node *stack[G_STACK]; /* on this thread's stack: a root */
    size_t sp = 0, count = 0;
    uint64_t ep = ++g_epoch;
    for (int r = 0; r < G_ROOTS; r++)
        if ((stack[sp] = ld(&g_roots[r])) != NULL)
            sp++;
    if (with_parked)
        for (int t = 0; t < G_THREADS; t++)
            for (int s = 0; s < G_PARK; s++)
                if ((stack[sp] = g_parked[t][s]) != NULL) {
                    check_id(ctx, stack[sp], g_parked_id[t][s]);
                    sp++;
                }
    while (sp) {
        struct node *n = stack[--sp];
        if (tern_base(n) != n)
            fail_at(n, "%s: reachable node %p is not a live object", ctx, (void *)n);
        if (n->seen == ep)
            continue;
        n->seen = ep;
        check_node(ctx, n);
        count++;
        for (int k = 0; k < NKIDS; k++) {
            struct node *c = ld(&n->kid[k]);
            if (c && c->seen != ep) {
                CHECK(sp < G_STACK, "%s: more than %d nodes to visit (test limit)", ctx, G_STACK);
                stack[sp++] = c;
            }
        }
    }
    return count;
}

static NOINLINE void g_build(void)
{
    uint64_t rng = 42;
    struct node **all = tern_malloc(G_INIT * sizeof *all);
    CHECK(all != NULL, "tern_malloc failed");
    for (int i = 0; i < G_INIT; i++)
        TERN_STORE(&all[i], node_new((uint32_t)(rng_next(&rng) % 300)));
    for (int i = 0; i < G_INIT; i++)
        for (int k = 0; k < NKIDS; k++)
            if (rng_next(&rng) % 4)
                TERN_STORE(&all[i]->kid[k], all[rng_next(&rng) % G_INIT]);
    g_roots = tern_malloc(G_ROOTS * sizeof *g_roots);
    CHECK(g_roots != NULL, "tern_malloc failed");
    for (int r = 0; r < G_ROOTS; r++)
        TERN_STORE(&g_roots[r], all[rng_next(&rng) % G_INIT]);
}

static void scenario_graph(void)
{
    g_build();
    size_t n0 = g_traverse("initial graph", 0);
    pthread_t t[G_THREADS];
    collector_start();
    start_threads(t, G_THREADS, g_worker);
    int checks = 0;
    while (!time_up()) {
        usleep(100 * 1000);
        size_t n = g_traverse("graph checked while threads rewire it", 0);
        atomic_store(&g_too_big, n > 2 * G_INIT);
        checks++;
    }
    join_threads(t, G_THREADS);
    collector_stop();
    size_t n1 = g_traverse("graph after the threads stopped", 1);
    churn(2 * MiB, 0);
    tern_collect();
    size_t n2 = g_traverse("graph after a collection", 1);
    CHECK(n1 == n2, "graph had %zu nodes before a collection and %zu after", n1, n2);
    CHECK(n2 > G_ROOTS / 4, "graph shrank to %zu nodes: the workload is broken", n2);
    CHECK(atomic_load(&g_stashes) > 10, "only %ld stash operations", atomic_load(&g_stashes));
    printf("graph: %zu nodes at start, %zu at end, %ld operations, %ld stashed, %d checks while running; ",
           n0, n2, atomic_load(&g_ops), atomic_load(&g_stashes), checks);
}

/* ==== holders: arrays of pointers whose expected contents are known ==== */

#define H_SMALL       12
#define H_LARGE       2
#define H_COUNT       (H_SMALL + H_LARGE)
#define H_SMALL_SLOTS 256
#define H_LARGE_SLOTS 16384 /* 128 KiB: a large object over many pages */
#define H_MAXRUN      1024

struct htab {
    struct node ***h;         /* heap array of H_COUNT holders */
    uint64_t *ids[H_COUNT];   /* malloc: the id expected in each slot, 0 for NULL */
    size_t slots[H_COUNT];
    long ops;
};

static struct htab htabs[4]; /* static: the only references to the holder tables */

static inline struct node **ldh(struct node **const *slot)
{
    return __atomic_load_n(slot, __ATOMIC_RELAXED);
}

static struct node *h_node(uint64_t *rng);

/* Makes the holders; the first `filled` of them full of nodes (objects
 * that are old by the time the threads move them). */
static void htab_init(struct htab *t, int filled, uint64_t seed)
{
    t->h = tern_malloc(H_COUNT * sizeof *t->h);
    CHECK(t->h != NULL, "tern_malloc failed");
    for (int k = 0; k < H_COUNT; k++) {
        t->slots[k] = k < H_SMALL ? H_SMALL_SLOTS : H_LARGE_SLOTS;
        struct node **h = tern_malloc(t->slots[k] * sizeof *h);
        CHECK(h != NULL, "tern_malloc failed");
        TERN_STORE(&t->h[k], h);
        t->ids[k] = calloc(t->slots[k], sizeof(uint64_t));
        CHECK(t->ids[k] != NULL, "calloc failed");
        for (size_t i = 0; k < filled && i < t->slots[k]; i++) {
            struct node *n = h_node(&seed);
            t->ids[k][i] = n->id;
            TERN_STORE(&h[i], n);
        }
    }
}

/* A fresh node for a holder; now and then with a child of its own, which
 * only that node refers to. */
static struct node *h_node(uint64_t *rng)
{
    struct node *n = node_new((uint32_t)(rng_next(rng) % 200));
    if (rng_next(rng) % 4 == 0)
        TERN_STORE(&n->kid[0], node_new((uint32_t)(rng_next(rng) % 100)));
    return n;
}

/* Holder k of t, checked to be a live object before the test writes to it. */
static struct node **holder(struct htab *t, int k)
{
    struct node **h = ldh(&t->h[k]);
    if (tern_base(h) != h)
        fail_at(h, "holder %d at %p is not a live object (about to be written)", k, (void *)h);
    return h;
}

static void htab_check_range(const char *ctx, struct htab *t, int k, size_t off, size_t cnt)
{
    struct node **h = ldh(&t->h[k]);
    if (tern_base(h) != h)
        fail_at(h, "%s: holder %d at %p is not a live object", ctx, k, (void *)h);
    for (size_t i = off; i < off + cnt; i++) {
        struct node *n = ld(&h[i]);
        uint64_t want = t->ids[k][i];
        if (want == 0) {
            if (n)
                fail_at(n, "%s: holder %d slot %zu: expected NULL, found %p (id %llu if a node)", ctx, k, i,
                        (void *)n, tern_base(n) == n ? (unsigned long long)n->id : 0ull);
            continue;
        }
        if (!n)
            fail_at(h, "%s: holder %d slot %zu: expected node id %llu, found NULL", ctx, k, i,
                    (unsigned long long)want);
        char what[160];
        snprintf(what, sizeof what, "%s: holder %d (%p) slot %zu", ctx, k, (void *)h, i);
        check_id(what, n, want);
    }
}

static void htab_check_all(const char *ctx, struct htab *t)
{
    for (int k = 0; k < H_COUNT; k++)
        htab_check_range(ctx, t, k, 0, t->slots[k]);
}

/* A random run of slots in holder k; in a large holder it often straddles a
 * page boundary. */
static size_t h_pick(struct htab *t, int k, size_t cnt, uint64_t *rng)
{
    size_t slots = t->slots[k];
    if (cnt > slots)
        cnt = slots;
    size_t off;
    if (slots > H_SMALL_SLOTS && rng_next(rng) % 2) {
        size_t per_page = (size_t)os_page / sizeof(void *);
        size_t b = per_page * (1 + rng_next(rng) % (slots / per_page - 1));
        size_t back = cnt / 2 + (size_t)(rng_next(rng) % (cnt / 2 + 1)) / 2; /* < cnt */
        off = b > back ? b - back : 0;
    } else {
        off = (size_t)(rng_next(rng) % (slots - cnt + 1));
    }
    if (off + cnt > slots)
        off = slots - cnt;
    return off;
}

/* ==== scenario 2: memcpy of pointer arrays ============================= */

#define M_THREADS 2

static void *m_worker(void *arg)
{
    struct htab *t = &htabs[(uintptr_t)arg];
    uint64_t rng = 0xC0FFEEull * ((uintptr_t)arg + 3);
    while (!time_up()) {
        unsigned op = (unsigned)(rng_next(&rng) % 100);
        int k = (int)(rng_next(&rng) % H_COUNT);
        size_t cnt = 1 + rng_next(&rng) % (k < H_SMALL ? H_SMALL_SLOTS : H_MAXRUN);
        size_t off = h_pick(t, k, cnt, &rng);
        if (cnt > t->slots[k])
            cnt = t->slots[k];
        struct node **dst = holder(t, k);
        if (op < 45) {
            /* fresh source array; copy into an old holder, then empty the source */
            struct node **src = tern_malloc(cnt * sizeof *src);
            CHECK(src != NULL, "tern_malloc failed");
            for (size_t i = 0; i < cnt; i++)
                TERN_STORE(&src[i], h_node(&rng));
            if (rng_next(&rng) & 1)
                churn(rng_next(&rng) % (64 * KiB), 0);
            memcpy(&dst[off], src, cnt * sizeof *src);
            tern_written(&dst[off], cnt * sizeof *src);
            for (size_t i = 0; i < cnt; i++)
                t->ids[k][off + i] = src[i]->id;
            memset(src, 0, cnt * sizeof *src);
            tern_written(src, cnt * sizeof *src);
            htab_check_range("memcpy from a fresh array, just after", t, k, off, cnt);
        } else if (op < 65) {
            /* through the stack: heap -> local array, heap emptied, allocate
             * a while, local array -> another place in the heap */
            struct node *tmp[H_MAXRUN];
            uint64_t ids[H_MAXRUN];
            memcpy(tmp, &dst[off], cnt * sizeof *tmp);
            memcpy(ids, &t->ids[k][off], cnt * sizeof *ids);
            memset(&dst[off], 0, cnt * sizeof *dst);
            tern_written(&dst[off], cnt * sizeof *dst);
            memset(&t->ids[k][off], 0, cnt * sizeof *ids);
            churn(16 * KiB + rng_next(&rng) % (96 * KiB), 0);
            int k2 = (int)(rng_next(&rng) % H_COUNT);
            if (cnt > t->slots[k2])
                cnt = t->slots[k2];
            size_t off2 = h_pick(t, k2, cnt, &rng);
            struct node **dst2 = holder(t, k2);
            memcpy(&dst2[off2], tmp, cnt * sizeof *tmp);
            tern_written(&dst2[off2], cnt * sizeof *tmp);
            memcpy(&t->ids[k2][off2], ids, cnt * sizeof *ids);
            explicit_bzero(tmp, sizeof tmp);
            htab_check_range("memcpy from a local array, just after", t, k2, off2, cnt);
        } else if (op < 80) {
            /* memmove inside one holder (overlapping): the move overwrites
             * its source, so the explicit barrier hears of it before too */
            size_t off2 = h_pick(t, k, cnt, &rng);
            tern_written(&dst[off], cnt * sizeof *dst);
            memmove(&dst[off2], &dst[off], cnt * sizeof *dst);
            tern_written(&dst[off2], cnt * sizeof *dst);
            memmove(&t->ids[k][off2], &t->ids[k][off], cnt * sizeof(uint64_t));
            htab_check_range("memmove inside a holder, just after", t, k, off2, cnt);
        } else if (op < 92) {
            /* a new holder, a copy of the old one, replaces it */
            size_t bytes = t->slots[k] * sizeof *dst;
            struct node **nh = tern_malloc(bytes);
            CHECK(nh != NULL, "tern_malloc failed");
            if (tern_base(nh) != nh)
                fail_at(nh, "a new %zu-byte holder at %p is not a live object right after tern_malloc", bytes,
                        (void *)nh);
            memcpy(nh, dst, bytes);
            tern_written(nh, bytes);
            TERN_STORE(&t->h[k], nh);
            htab_check_range("holder copied into a new object, just after", t, k, 0, t->slots[k]);
        } else {
            htab_check_all("holders checked while copying", t);
        }
        churn(8 * KiB + rng_next(&rng) % (32 * KiB), 0);
        if (rng_next(&rng) % 8 == 0)
            htab_check_range("after more allocation", t, k, 0, t->slots[k]);
        t->ops++;
    }
    htab_check_all("holders at the end of the thread", t);
    return NULL;
}

static void scenario_memcpy(void)
{
    for (int i = 0; i < M_THREADS; i++)
        htab_init(&htabs[i], H_SMALL, 100 + (uint64_t)i);
    pthread_t t[M_THREADS];
    run_workers(t, M_THREADS, m_worker);
    churn(2 * MiB, 0);
    tern_collect();
    long ops = 0;
    for (int i = 0; i < M_THREADS; i++) {
        htab_check_all("holders after a final collection", &htabs[i]);
        ops += htabs[i].ops;
    }
    CHECK(ops > 50, "only %ld copy operations", ops);
    printf("memcpy: %ld operations; ", ops);
}

/* ==== scenario 3: read(2) of pointers into heap memory ================= */

#define R_THREADS 2

static atomic_long r_efault_retries;

/* Reads exactly n bytes from fd into heap memory at p. */
static void read_into_heap(int fd, void *p, size_t n)
{
    int is_mprotect = strcmp(kind, "mprotect") == 0;
    unsigned char *b = p;
    int efaults = 0;
    while (n) {
        if (is_mprotect) {
            /* TERN_BARRIER=mprotect write-protects heap pages while it marks,
             * and the kernel does not take the fault for a system call: it
             * fails with EFAULT (a documented limitation).  Touching each
             * page first makes it writable; if a new cycle protects it again
             * before read() runs, the read fails without consuming anything
             * from the pipe and is tried again. */
            uintptr_t pg = (uintptr_t)b & ~(uintptr_t)(os_page - 1);
            for (; pg < (uintptr_t)b + n; pg += (uintptr_t)os_page) {
                volatile unsigned char *q = (unsigned char *)(pg < (uintptr_t)b ? (uintptr_t)b : pg);
                *q = 0;
            }
        }
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EFAULT && is_mprotect && ++efaults < 10000) {
            atomic_fetch_add(&r_efault_retries, 1);
            continue;
        }
        CHECK(r > 0, "read(2) of %zu bytes into heap memory at %p (object %p) failed: %s", n, (void *)b,
              tern_base(b), r < 0 ? strerror(errno) : "end of file");
        b += r;
        n -= (size_t)r;
        efaults = 0;
    }
}

static void write_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n) {
        ssize_t r = write(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        CHECK(r > 0, "write(2) to a pipe failed: %s", strerror(errno));
        b += r;
        n -= (size_t)r;
    }
}

/* Checks cnt pointers at slots against the ids expected (0: NULL). */
static void check_slots(const char *ctx, const void *obj, struct node *const *slots, const uint64_t *ids, size_t cnt)
{
    for (size_t i = 0; i < cnt; i++) {
        struct node *n = ld(&slots[i]);
        if (!ids[i]) {
            if (n)
                fail_at(n, "%s: object %p slot %zu: expected NULL, found %p", ctx, obj, i, (void *)n);
            continue;
        }
        if (!n)
            fail_at(obj, "%s: object %p slot %zu: expected node id %llu, found NULL", ctx, obj, i,
                    (unsigned long long)ids[i]);
        char what[160];
        snprintf(what, sizeof what, "%s: object %p slot %zu", ctx, obj, i);
        check_id(what, n, ids[i]);
    }
}

static void *r_worker(void *arg)
{
    struct htab *t = &htabs[(uintptr_t)arg];
    uint64_t rng = 0xFEEDull * ((uintptr_t)arg + 5);
    int pfd[2];
    CHECK(pipe(pfd) == 0, "pipe failed: %s", strerror(errno));
    while (!time_up()) {
        /* a run of pointers leaves a holder: mostly old objects, which a
         * cycle may not have reached yet */
        int k1 = (int)(rng_next(&rng) % H_COUNT);
        size_t cnt = 1 + rng_next(&rng) % (k1 < H_SMALL ? H_SMALL_SLOTS : H_MAXRUN); /* <= 8 KiB: fits the pipe */
        size_t off1 = h_pick(t, k1, cnt, &rng);
        struct node **h1 = holder(t, k1);
        if (rng_next(&rng) % 2 == 0) /* fresh ones in the empty slots (moves empty them) */
            for (size_t i = off1; i < off1 + cnt; i++)
                if (!t->ids[k1][i]) {
                    struct node *n = h_node(&rng);
                    t->ids[k1][i] = n->id;
                    TERN_STORE(&h1[i], n);
                }
        uint64_t ids[H_MAXRUN];
        memcpy(ids, &t->ids[k1][off1], cnt * sizeof *ids);
        /* While the pointers are in the pipe the kernel holds them, which
         * keeps nothing alive (README: pointers in the kernel do not count),
         * so a copy stays on this stack meanwhile; it is wiped as soon as
         * read() has put the pointers into the heap again.  From then on the
         * heap buffer read() wrote is the only reference. */
        struct node *transit[H_MAXRUN];
        memcpy(transit, &h1[off1], cnt * sizeof *transit);
        memset(&h1[off1], 0, cnt * sizeof *h1);
        tern_written(&h1[off1], cnt * sizeof *h1);
        memset(&t->ids[k1][off1], 0, cnt * sizeof *ids);
        write_all(pfd[1], transit, cnt * sizeof *transit);
        churn(rng_next(&rng) % (64 * KiB), 0);
        if (rng_next(&rng) & 1) {
            /* into a fresh buffer (born during marking, often), at an offset */
            size_t pad = rng_next(&rng) % 700;
            struct node **buf = tern_malloc((cnt + pad) * sizeof *buf);
            CHECK(buf != NULL, "tern_malloc failed");
            read_into_heap(pfd[0], &buf[pad], cnt * sizeof *buf);
            tern_written(&buf[pad], cnt * sizeof *buf);
            explicit_bzero(transit, sizeof transit);
            churn(16 * KiB + rng_next(&rng) % (64 * KiB), 0);
            check_slots("read(2) into a fresh buffer", buf, &buf[pad], ids, cnt);
            /* and from the buffer into a holder */
            int k = (int)(rng_next(&rng) % H_COUNT);
            size_t n = cnt < t->slots[k] ? cnt : t->slots[k];
            size_t off = h_pick(t, k, n, &rng);
            struct node **h = holder(t, k);
            memcpy(&h[off], &buf[pad], n * sizeof *h);
            tern_written(&h[off], n * sizeof *h);
            memcpy(&t->ids[k][off], ids, n * sizeof *ids);
        } else {
            /* straight into an old holder, often across a page boundary */
            int k = (int)(rng_next(&rng) % H_COUNT);
            size_t n = cnt < t->slots[k] ? cnt : t->slots[k];
            size_t off = h_pick(t, k, n, &rng);
            struct node **h = holder(t, k);
            read_into_heap(pfd[0], &h[off], n * sizeof *h);
            tern_written(&h[off], n * sizeof *h);
            if (n < cnt) { /* the rest is dropped */
                struct node *rest[H_MAXRUN];
                read_into_heap(pfd[0], rest, (cnt - n) * sizeof *rest); /* (a stack buffer) */
                explicit_bzero(rest, sizeof rest);
            }
            explicit_bzero(transit, sizeof transit);
            memcpy(&t->ids[k][off], ids, n * sizeof *ids);
            churn(16 * KiB + rng_next(&rng) % (64 * KiB), 0);
            htab_check_range("read(2) into an old holder", t, k, off, n);
        }
        if (rng_next(&rng) % 16 == 0)
            htab_check_all("holders filled by read(2)", t);
        t->ops++;
    }
    close(pfd[0]);
    close(pfd[1]);
    htab_check_all("holders filled by read(2), at the end of the thread", t);
    return NULL;
}

static void scenario_read(void)
{
    for (int i = 0; i < R_THREADS; i++)
        htab_init(&htabs[i], H_SMALL + 1, 200 + (uint64_t)i);
    pthread_t t[R_THREADS];
    run_workers(t, R_THREADS, r_worker);
    churn(2 * MiB, 0);
    tern_collect();
    long ops = 0;
    for (int i = 0; i < R_THREADS; i++) {
        htab_check_all("holders filled by read(2), after a final collection", &htabs[i]);
        ops += htabs[i].ops;
    }
    size_t used = 0, slots = 0;
    for (int i = 0; i < R_THREADS; i++)
        for (int k = 0; k < H_COUNT; k++)
            for (size_t j = 0; j < htabs[i].slots[k]; j++, slots++)
                used += htabs[i].ids[k][j] != 0;
    CHECK(ops > 20, "only %ld read operations", ops);
    printf("read: %ld operations, %ld reads retried after EFAULT, %zu of %zu slots in use at the end; ", ops,
           atomic_load(&r_efault_retries), used, slots);
}

/* ==== scenario 4: tern_realloc of pointer arrays ======================= */

#define V_THREADS 2
#define V_COUNT   6
#define V_MAXCAP  8192 /* 64 KiB: from the smallest class up to a large object */
#define V_APPEND  1024 /* at most this many new items per growth */
#define V_MAGIC   0x7EC7AB1E5EC7AB1Eull

struct vec {
    uint64_t magic;
    uint32_t cap, len;
    struct node *item[];
};

struct vtab {
    struct vec **v;            /* heap array of V_COUNT vectors */
    uint64_t *ids[V_COUNT];    /* malloc: expected id of each item (V_MAXCAP each) */
    long grows, shrinks, moves;
};

static struct vtab vtabs[V_THREADS]; /* static: the only references to the vector tables */

static size_t vsize(uint32_t cap) { return sizeof(struct vec) + (size_t)cap * sizeof(struct node *); }

static void v_check_header(const char *ctx, int k, const struct vec *v)
{
    if (tern_base(v) != v)
        fail_at(v, "%s: vector %d at %p is not a live object", ctx, k, (const void *)v);
    if (v->magic != V_MAGIC || v->len > v->cap || tern_size(v) < vsize(v->cap))
        fail_at(v, "%s: vector %d at %p: header corrupted (magic %016llx, cap %u, len %u, tern_size %zu)",
                ctx, k, (const void *)v, (unsigned long long)v->magic, v->cap, v->len, tern_size(v));
}

static void v_check(const char *ctx, struct vtab *t, int k, const struct vec *v)
{
    v_check_header(ctx, k, v);
    for (uint32_t i = 0; i < v->len; i++) {
        const struct node *n = ld(&v->item[i]);
        if (!n)
            fail_at(v, "%s: vector %d (%p) item %u: expected node id %llu, found NULL", ctx, k,
                    (const void *)v, i, (unsigned long long)t->ids[k][i]);
        char what[128];
        snprintf(what, sizeof what, "%s: vector %d (%p, len %u) item %u", ctx, k, (const void *)v, v->len, i);
        check_id(what, n, t->ids[k][i]);
    }
}

static NOINLINE struct vec *v_resize(struct vtab *t, int k, struct vec *v, uint32_t cap, const char *ctx)
{
    v_check_header("vector before tern_realloc", k, v);
    uint32_t len = v->len < cap ? v->len : cap;
    /* items that do not fit any more are dropped first */
    for (uint32_t i = len; i < v->len; i++)
        TERN_STORE(&v->item[i], NULL);
    v->len = len;
    struct vec *nv = tern_realloc(v, vsize(cap));
    CHECK(nv != NULL, "tern_realloc(%p, %zu) failed", (void *)v, vsize(cap));
    if (nv != v)
        t->moves++;
    nv->cap = cap;
    v_check(ctx, t, k, nv);
    return nv;
}

static void *v_worker(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    struct vtab *t = &vtabs[me];
    uint64_t rng = 0xABCDEFull * (me + 11);
    while (!time_up()) {
        int k = (int)(rng_next(&rng) % V_COUNT);
        struct vec *v = t->v[k]; /* only this thread changes its table */
        unsigned op = (unsigned)(rng_next(&rng) % 100);
        if (op < 50) { /* grow and fill */
            uint32_t cap = v->cap + 1 + (uint32_t)(rng_next(&rng) % (2u * v->cap + 64));
            if (cap > V_MAXCAP)
                cap = (uint32_t)(rng_next(&rng) % 64) + 1; /* too big: start small again */
            struct vec *nv = v_resize(t, k, v, cap, "vector just after tern_realloc");
            TERN_STORE(&t->v[k], nv);
            uint32_t room = nv->cap - nv->len < V_APPEND ? nv->cap - nv->len : V_APPEND;
            uint32_t len = nv->len + (uint32_t)(rng_next(&rng) % (room + 1));
            for (uint32_t i = nv->len; i < len; i++) {
                struct node *n = h_node(&rng);
                t->ids[k][i] = n->id;
                TERN_STORE(&nv->item[i], n);
            }
            nv->len = len;
            t->grows++;
        } else if (op < 80) { /* shrink */
            uint32_t cap = (uint32_t)(rng_next(&rng) % (v->len + 1)) + 1;
            struct vec *nv = v_resize(t, k, v, cap, "vector just after a shrinking tern_realloc");
            TERN_STORE(&t->v[k], nv);
            t->shrinks++;
        } else if (op < 95) {
            /* out of the table: only a local holds the vector while it is
             * reallocated and while cycles run */
            TERN_STORE(&t->v[k], NULL);
            uint32_t cap = 1 + (uint32_t)(rng_next(&rng) % V_MAXCAP);
            struct vec *nv = v_resize(t, k, v, cap, "vector held in a local, after tern_realloc");
            churn(32 * KiB + rng_next(&rng) % (96 * KiB), 0);
            v_check("vector held only in a local variable", t, k, nv);
            TERN_STORE(&t->v[k], nv);
        } else {
            for (int j = 0; j < V_COUNT; j++)
                v_check("vectors checked while reallocating", t, j, t->v[j]);
        }
        churn(8 * KiB + rng_next(&rng) % (24 * KiB), 0);
    }
    return NULL;
}

static void scenario_realloc(void)
{
    for (int m = 0; m < V_THREADS; m++) {
        struct vtab *t = &vtabs[m];
        t->v = tern_malloc(V_COUNT * sizeof *t->v);
        CHECK(t->v != NULL, "tern_malloc failed");
        for (int k = 0; k < V_COUNT; k++) {
            struct vec *v = tern_malloc(vsize(4));
            CHECK(v != NULL, "tern_malloc failed");
            v->magic = V_MAGIC;
            v->cap = 4;
            TERN_STORE(&t->v[k], v);
            t->ids[k] = calloc(V_MAXCAP, sizeof(uint64_t));
            CHECK(t->ids[k] != NULL, "calloc failed");
        }
    }
    pthread_t t[V_THREADS];
    run_workers(t, V_THREADS, v_worker);
    churn(2 * MiB, 0);
    tern_collect();
    long grows = 0, shrinks = 0, moves = 0;
    for (int m = 0; m < V_THREADS; m++) {
        for (int k = 0; k < V_COUNT; k++)
            v_check("vectors after a final collection", &vtabs[m], k, vtabs[m].v[k]);
        grows += vtabs[m].grows;
        shrinks += vtabs[m].shrinks;
        moves += vtabs[m].moves;
    }
    CHECK(grows > 20 && shrinks > 10 && moves > 10, "too little done: %ld grows, %ld shrinks, %ld moves", grows,
          shrinks, moves);
    printf("realloc: %ld grows, %ld shrinks, %ld moved; ", grows, shrinks, moves);
}

/* ==== scenario 5: threads that start and exit while marking runs ====== */

#define S_SLOTS     64
#define S_BATCH     4
#define S_TREE_MAX  200

static struct node **s_slots;           /* heap; this static is its only reference */
static uint32_t s_count[S_SLOTS];       /* nodes in the tree in each slot */
static uint64_t s_root_id[S_SLOTS];
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_long s_started, s_done;

/* A complete 4-ary tree of m nodes; each child's id is above its parent's. */
static NOINLINE struct node *s_build_tree(uint32_t m, uint64_t *rng)
{
    struct node *q[S_TREE_MAX]; /* on the stack: a root while the tree is built */
    for (uint32_t i = 0; i < m; i++) {
        q[i] = node_new((uint32_t)(rng_next(rng) % 250));
        if (i)
            TERN_STORE(&q[(i - 1) / NKIDS]->kid[(i - 1) % NKIDS], q[i]);
        if (i % 16 == 15)
            churn(4 * KiB, 0);
    }
    return q[0];
}

static void s_check_tree(const char *ctx, const struct node *root, uint32_t m, uint64_t root_id)
{
    const struct node *stack[S_TREE_MAX * NKIDS];
    size_t sp = 0;
    uint32_t count = 0;
    check_id(ctx, root, root_id);
    stack[sp++] = root;
    while (sp) {
        const struct node *n = stack[--sp];
        check_node(ctx, n);
        if (++count > m)
            fail_at(root, "%s: tree of root id %llu has more than %u nodes", ctx,
                    (unsigned long long)root_id, m);
        for (int k = 0; k < NKIDS; k++) {
            const struct node *c = ld(&n->kid[k]);
            if (!c)
                continue;
            if (c->id <= n->id)
                fail_at(c, "%s: node id %llu under node id %llu: not the tree that was built", ctx,
                        (unsigned long long)c->id, (unsigned long long)n->id);
            stack[sp++] = c;
        }
    }
    if (count != m)
        fail_at(root, "%s: tree of root id %llu has %u nodes, expected %u", ctx, (unsigned long long)root_id,
                count, m);
}

static void *s_thread(void *arg);

static void s_spawn(uintptr_t arg, int detached)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    atomic_fetch_add(&s_started, 1);
    int rc = pthread_create(&t, detached ? &a : NULL, s_thread, (void *)arg);
    CHECK(rc == 0, "pthread_create failed: %s", strerror(rc));
    pthread_attr_destroy(&a);
    if (!detached)
        CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
}

static void *s_thread(void *arg)
{
    uint64_t rng = 0x2545F4914F6CDD1Dull * ((uintptr_t)arg + 1);
    if (!((uintptr_t)arg & 8) && rng_next(&rng) % 6 == 0)
        s_spawn((uintptr_t)arg | 8, 1); /* a thread starts a thread (bit 3: no further) */
    uint32_t m = 20 + (uint32_t)(rng_next(&rng) % (S_TREE_MAX - 20));
    struct node *root = s_build_tree(m, &rng);
    uint64_t root_id = root->id;
    churn(16 * KiB + rng_next(&rng) % (64 * KiB), 0);
    s_check_tree("tree before its thread hands it over", root, m, root_id);
    unsigned slot = (unsigned)(rng_next(&rng) % S_SLOTS);
    pthread_mutex_lock(&s_lock);
    TERN_STORE(&s_slots[slot], root);
    s_count[slot] = m;
    s_root_id[slot] = root_id;
    pthread_mutex_unlock(&s_lock);
    if (rng_next(&rng) & 1)
        churn(16 * KiB, 0);
    atomic_fetch_add(&s_done, 1);
    return NULL;
}

static void s_check_all(const char *ctx)
{
    pthread_mutex_lock(&s_lock);
    for (int i = 0; i < S_SLOTS; i++) {
        struct node *r = s_slots[i];
        if (r) {
            char what[128];
            snprintf(what, sizeof what, "%s: slot %d", ctx, i);
            s_check_tree(what, r, s_count[i], s_root_id[i]);
        }
    }
    pthread_mutex_unlock(&s_lock);
}

static void scenario_threads(void)
{
    s_slots = tern_malloc(S_SLOTS * sizeof *s_slots);
    CHECK(s_slots != NULL, "tern_malloc failed");
    collector_start();
    uintptr_t next = 1;
    int batches = 0;
    while (!time_up()) {
        pthread_t t[S_BATCH];
        for (int i = 0; i < S_BATCH; i++, next++) {
            if (i == 0) {
                s_spawn(next << 4, 1);
                continue;
            }
            atomic_fetch_add(&s_started, 1);
            CHECK(pthread_create(&t[i], NULL, s_thread, (void *)(next << 4 | (uintptr_t)i)) == 0,
                  "pthread_create failed");
        }
        churn(32 * KiB, 0);
        for (int i = 1; i < S_BATCH; i++)
            CHECK(pthread_join(t[i], NULL) == 0, "pthread_join failed");
        if (++batches % 4 == 0)
            s_check_all("trees handed over by exited threads");
    }
    uint64_t give_up = now_ms() + 20000;
    while (atomic_load(&s_done) < atomic_load(&s_started)) {
        CHECK(now_ms() < give_up, "%ld of %ld threads never finished", atomic_load(&s_started) - atomic_load(&s_done),
              atomic_load(&s_started));
        usleep(1000);
    }
    collector_stop();
    s_check_all("trees after every thread exited");
    churn(2 * MiB, 0);
    tern_collect();
    s_check_all("trees after a final collection");
    CHECK(atomic_load(&s_done) > 20, "only %ld threads ran", atomic_load(&s_done));
    printf("threads: %ld threads started and exited in %d batches; ", atomic_load(&s_done), batches);
}

/* ==== scenario 6: fork while marking runs ============================== */

#define F_THREADS 2
#define F_LISTS   4
#define F_LIVE    2000

struct list { struct node *head; uint64_t head_id; uint32_t n; }; /* in static data */

static struct list f_live;
static struct node **f_lists[F_THREADS];                /* heap arrays of F_LISTS lists */
static uint64_t f_list_id[F_THREADS][F_LISTS];          /* head id of each, 0 = none */
static uint32_t f_list_n[F_THREADS][F_LISTS];
static pthread_mutex_t f_lock[F_THREADS] = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER };
static atomic_int f_stop;
static atomic_long f_rounds;

/* A list through kid[0]; ids fall from the head. */
static NOINLINE struct node *f_build(uint32_t n, uint64_t *rng)
{
    struct node *head = NULL;
    for (uint32_t i = 0; i < n; i++) {
        struct node *x = node_new((uint32_t)(rng_next(rng) % 120));
        TERN_STORE(&x->kid[0], head);
        head = x;
    }
    return head;
}

/* Returns NULL when the list is intact, else what is wrong (and may
 * report through fail_at for a damaged node). */
static const char *f_check(const char *ctx, const struct node *head, uint64_t head_id, uint32_t n)
{
    if (!head)
        return "list head is NULL";
    check_id(ctx, head, head_id);
    const struct node *x = head;
    for (uint32_t i = 1; i < n; i++) {
        const struct node *next = ld(&x->kid[0]);
        if (!next)
            return "list too short";
        check_node(ctx, next);
        if (next->id >= x->id)
            return "list order broken: not the list that was built";
        x = next;
    }
    return ld(&x->kid[0]) ? "list too long" : NULL;
}

static void *f_worker(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    uint64_t rng = 0x5DEECE66Dull * (me + 1);
    while (!atomic_load(&f_stop)) {
        unsigned s = (unsigned)(rng_next(&rng) % F_LISTS);
        uint32_t n = 50 + (uint32_t)(rng_next(&rng) % 300);
        struct node *l = f_build(n, &rng);
        churn(rng_next(&rng) % (64 * KiB), 0);
        pthread_mutex_lock(&f_lock[me]);
        TERN_STORE(&f_lists[me][s], l);
        f_list_id[me][s] = l->id;
        f_list_n[me][s] = n;
        pthread_mutex_unlock(&f_lock[me]);
        for (unsigned j = 0; j < F_LISTS; j++) {
            pthread_mutex_lock(&f_lock[me]);
            const char *why = f_lists[me][j] ? f_check("worker's list", f_lists[me][j], f_list_id[me][j],
                                                       f_list_n[me][j])
                                             : NULL;
            pthread_mutex_unlock(&f_lock[me]);
            CHECK(why == NULL, "worker %u, list %u: %s", me, j, why);
        }
        atomic_fetch_add(&f_rounds, 1);
    }
    return NULL;
}

static struct node **f_cell; /* heap cell a thread in the child fills */
static uint64_t f_cell_id;

static void *f_child_thread(void *arg)
{
    (void)arg;
    uint64_t rng = 99;
    struct node *l = f_build(1000, &rng);
    f_cell_id = l->id;
    TERN_STORE(&f_cell[0], l);
    churn(1 * MiB, 0);
    tern_collect();
    return NULL;
}

/* Runs in a child; the exit status says what failed (details on stderr). */
static NOINLINE int f_child(void)
{
    alarm(20);
    const char *why;
    if ((why = f_check("pre-fork list in the child", f_live.head, f_live.head_id, f_live.n)))
        return fprintf(stderr, "child: pre-fork list: %s\n", why), 10;
    for (unsigned m = 0; m < F_THREADS; m++) /* the workers' lists (their threads are gone here) */
        for (unsigned j = 0; j < F_LISTS; j++)
            if (f_lists[m][j] && (why = f_check("worker's list in the child", f_lists[m][j], f_list_id[m][j],
                                                f_list_n[m][j])))
                return fprintf(stderr, "child: worker %u list %u: %s\n", m, j, why), 11;
    struct tern_stats st0 = get_stats();
    uint64_t rng = 7;
    struct node *fresh = f_build(3000, &rng);
    uint64_t fresh_id = fresh->id;
    churn(4 * MiB, sizeof(struct node) + 64);
    tern_collect();
    if ((why = f_check("pre-fork list in the child, after a collection", f_live.head, f_live.head_id, f_live.n)))
        return fprintf(stderr, "child: pre-fork list after a collection: %s\n", why), 12;
    if ((why = f_check("child's own list", fresh, fresh_id, 3000)))
        return fprintf(stderr, "child: its own list: %s\n", why), 13;
    f_cell = tern_malloc(sizeof *f_cell);
    if (!f_cell)
        return 14;
    pthread_t t;
    if (pthread_create(&t, NULL, f_child_thread, NULL) != 0 || pthread_join(t, NULL) != 0)
        return fprintf(stderr, "child: pthread_create/join failed\n"), 15;
    churn(2 * MiB, 0);
    tern_collect();
    if ((why = f_check("list made by a thread in the child", f_cell[0], f_cell_id, 1000)))
        return fprintf(stderr, "child: its thread's list: %s\n", why), 16;
    if ((why = f_check("pre-fork list at the child's end", f_live.head, f_live.head_id, f_live.n)) ||
        (why = f_check("child's own list at its end", fresh, fresh_id, 3000)))
        return fprintf(stderr, "child: at the end: %s\n", why), 17;
    struct tern_stats st1 = get_stats();
    if (st1.cycles < st0.cycles + 2)
        return fprintf(stderr, "child: only %llu cycles\n", (unsigned long long)(st1.cycles - st0.cycles)), 18;
    return 0;
}

/* Is a cycle marking right now, as far as can be told from outside?
 * TERN_STORE's flag says so under the explicit kind; for the other
 * concurrent kinds, a cycle has made its first pause and not yet its
 * final one when the pauses are odd in number (two per cycle).  Only used
 * to time the forks; nothing depends on it being right. */
static int marking_now(void)
{
    if (__atomic_load_n(&tern_marking_, __ATOMIC_RELAXED))
        return 1;
    if (strcmp(kind, "stw") == 0)
        return 0;
    struct tern_stats st = get_stats();
    return st.pauses == 2 * st.cycles + 1;
}

static void scenario_fork(void)
{
    uint64_t rng = 1;
    f_live.n = F_LIVE;
    f_live.head = f_build(F_LIVE, &rng);
    f_live.head_id = f_live.head->id;
    for (int m = 0; m < F_THREADS; m++) {
        f_lists[m] = tern_malloc(F_LISTS * sizeof *f_lists[m]);
        CHECK(f_lists[m] != NULL, "tern_malloc failed");
    }
    pthread_t t[F_THREADS];
    collector_start();
    start_threads(t, F_THREADS, f_worker);
    int forks = 0, while_marking = 0;
    uint64_t fork_every = run_ms / 6;
    while (forks < 6 && !(time_up() && forks >= 3)) {
        long r0 = atomic_load(&f_rounds);
        uint64_t wait_until = now_ms() + fork_every, give_up = wait_until + 2000;
        while (now_ms() < wait_until || (atomic_load(&f_rounds) < r0 + F_THREADS && now_ms() < give_up))
            usleep(1000);
        /* wait a little for a cycle to be marking (best effort) */
        for (int i = 0; i < 200 && !marking_now(); i++)
            usleep(100);
        while_marking += marking_now();
        fflush(stdout);
        fflush(stderr);
        /* the workers' list tables are consistent while their locks are held */
        for (int m = 0; m < F_THREADS; m++)
            pthread_mutex_lock(&f_lock[m]);
        pid_t pid = fork();
        for (int m = 0; m < F_THREADS; m++)
            pthread_mutex_unlock(&f_lock[m]);
        CHECK(pid != -1, "fork failed: %s", strerror(errno));
        if (pid == 0)
            _exit(f_child());
        int status;
        pid_t w;
        while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
            ;
        CHECK(w == pid, "waitpid failed: %s", strerror(errno));
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child %d of fork %d: %s %d (exit codes: 10 pre-fork list, 11 a worker's list, 12 pre-fork list "
              "after a collection, 13 the child's list, 14 allocation, 15 thread, 16 the thread's list, "
              "17 lists at the end, 18 no cycles; signal 14: hung)",
              (int)pid, forks, WIFEXITED(status) ? "exited with" : "killed by signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        forks++;
        const char *why = f_check("pre-fork list in the parent", f_live.head, f_live.head_id, f_live.n);
        CHECK(why == NULL, "parent after fork %d: %s", forks, why);
    }
    atomic_store(&f_stop, 1);
    join_threads(t, F_THREADS);
    collector_stop();
    churn(2 * MiB, 0);
    tern_collect();
    const char *why = f_check("pre-fork list at the end", f_live.head, f_live.head_id, f_live.n);
    CHECK(why == NULL, "parent at the end: %s", why);
    printf("fork: %d forks (%d while a cycle was marking, as far as the stats tell), %ld worker rounds; ", forks, while_marking,
           atomic_load(&f_rounds));
}

/* ==== scenario 7: random writes across a large pointer table ============ */

/* Two threads store fresh nodes at random slots of a 1 MiB table (a large
 * object over 256 pages), move old nodes from slot to slot and clear
 * slots, as fast as they can, reading random slots back, while cycles run
 * back to back.  Its pages are written again in every
 * pre-cleaning round: the shadow copies, their comparisons shared out
 * between markers and assists, assists that wait for work while the
 * rounds do not converge, and the final pause's markers listing written
 * pages in slices of the heap all run here. */
#define T_SLOTS   (128 * 1024)
#define T_THREADS 2

static struct node **t_table; /* static: the only reference to the table */
static atomic_long t_ops;

static void *t_worker(void *arg)
{
    uint64_t r = 0x9E3779B97F4A7C15ull * ((uintptr_t)arg + 1);
    while (!time_up()) {
        for (int k = 0; k < 256; k++) {
            struct node *n = node_new((uint32_t)(rng_next(&r) % 48));
            TERN_STORE(&t_table[rng_next(&r) % T_SLOTS], n);
            node_new(32); /* garbage at once: under the slow kinds (stw,
                           * mprotect, with checkmark) the table's turnover
                           * alone made too little for the runner's check
                           * that half of what was allocated came back */
            /* move an old node: after the clear, only the new slot (on a
             * page the marker may have scanned already) holds it */
            size_t from = rng_next(&r) % T_SLOTS;
            struct node *m = ld(&t_table[from]);
            if (m) {
                TERN_STORE(&t_table[rng_next(&r) % T_SLOTS], m);
                TERN_STORE(&t_table[from], NULL);
            }
            TERN_STORE(&t_table[rng_next(&r) % T_SLOTS], NULL);
            m = ld(&t_table[rng_next(&r) % T_SLOTS]);
            if (m)
                check_node("table slot read while threads write", m);
        }
        atomic_fetch_add(&t_ops, 256);
    }
    return NULL;
}

static size_t t_check(const char *ctx)
{
    size_t n = 0;
    for (size_t i = 0; i < T_SLOTS; i++) {
        struct node *m = ld(&t_table[i]);
        if (m) {
            check_node(ctx, m);
            n++;
        }
    }
    return n;
}

static void scenario_table(void)
{
    struct node **t = tern_malloc(T_SLOTS * sizeof *t);
    CHECK(t != NULL, "tern_malloc of the table failed");
    t_table = t;
    t = NULL;
    uint64_t r = 42;
    for (size_t i = 0; i < T_SLOTS; i += 4)
        TERN_STORE(&t_table[i], node_new((uint32_t)(rng_next(&r) % 48)));
    struct tern_stats st0 = get_stats();
    pthread_t th[T_THREADS];
    run_workers(th, T_THREADS, t_worker);
    size_t n1 = t_check("table after the threads stopped");
    tern_collect();
    size_t n2 = t_check("table after a collection");
    struct tern_stats st1 = get_stats();
    CHECK(n1 == n2 && n2 > 0, "table held %zu nodes, then %zu after a collection", n1, n2);
    CHECK(st1.cycles > st0.cycles + 2, "only %llu cycles ran", (unsigned long long)(st1.cycles - st0.cycles));
    CHECK(st1.freed_bytes > st0.freed_bytes, "the replaced nodes were never reclaimed");
    printf("table: %zu nodes, %ld stores, %llu cycles, %.1f MiB reclaimed; ", n2, atomic_load(&t_ops),
           (unsigned long long)(st1.cycles - st0.cycles), (double)(st1.freed_bytes - st0.freed_bytes) / MiB);
}

/* ---- 8. fresh: born-black holders in spans carved while marking ------ */

/* Two threads each own a set of nodes, referenced only from "holders"
 * (pointer arrays padded to a size class chosen anew at every step).  A
 * step moves every node into holders allocated just now, in batches big
 * enough to carve new spans from free pages, and clears the old holders:
 * for a while the only reference to an old node is in an object born
 * black on a page no scan has seen yet.  Under uffd such pages are not
 * write-protected while marking (barrier.c): they must be listed as
 * written, by a pre-cleaning round or by the final pause. */
#define H_THREADS 2
#define H_PER     8                  /* node pointers per holder */
#define H_HOLDERS 512                /* holders per thread       */

static struct node ***h_hold[H_THREADS];              /* heap arrays of holders */
static uint64_t h_ids[H_THREADS][H_HOLDERS * H_PER];  /* no pointers: not roots  */
static atomic_long h_moves;

static void h_check(const char *ctx, int t)
{
    for (size_t h = 0; h < H_HOLDERS; h++) {
        struct node **hold = (struct node **)ld((struct node *const *)&h_hold[t][h]);
        if (tern_base(hold) != hold)
            fail_at(hold, "%s: holder %zu of thread %d is not a live object", ctx, h, t);
        for (size_t i = 0; i < H_PER; i++)
            check_id(ctx, ld(&hold[i]), h_ids[t][h * H_PER + i]);
    }
}

static void *h_worker(void *arg)
{
    int t = (int)(uintptr_t)arg;
    uint64_t r = 0xF7E5Cull * ((uintptr_t)arg + 3);
    static const size_t pads[] = { 0, 64, 192, 448, 960, 1984 };
    while (!time_up()) {
        size_t sz = H_PER * sizeof(struct node *) + pads[rng_next(&r) % 6];
        for (size_t h = 0; h < H_HOLDERS; h++) {
            struct node **old = (struct node **)ld((struct node *const *)&h_hold[t][h]);
            struct node **fresh = tern_malloc(sz);
            CHECK(fresh != NULL, "tern_malloc(%zu) of a holder failed", sz);
            for (size_t i = 0; i < H_PER; i++) {
                struct node *n = ld(&old[i]);
                if (rng_next(&r) % 16 == 0) { /* now and then a new node */
                    n = node_new((uint32_t)(rng_next(&r) % 40));
                    h_ids[t][h * H_PER + i] = n->id;
                }
                TERN_STORE(&fresh[i], n);
                TERN_STORE(&old[i], NULL);
            }
            TERN_STORE((struct node **)&h_hold[t][h], (struct node *)fresh);
        }
        atomic_fetch_add(&h_moves, H_HOLDERS);
        if (rng_next(&r) % 8 == 0)
            h_check("nodes moved into fresh holders", t);
    }
    return NULL;
}

static void scenario_fresh(void)
{
    for (int t = 0; t < H_THREADS; t++) {
        h_hold[t] = tern_malloc(H_HOLDERS * sizeof *h_hold[t]);
        CHECK(h_hold[t] != NULL, "tern_malloc of a holder array failed");
        for (size_t h = 0; h < H_HOLDERS; h++) {
            struct node **hold = tern_malloc(H_PER * sizeof *hold);
            CHECK(hold != NULL, "tern_malloc of a holder failed");
            for (size_t i = 0; i < H_PER; i++) {
                struct node *n = node_new((uint32_t)(h % 40));
                h_ids[t][h * H_PER + i] = n->id;
                TERN_STORE(&hold[i], n);
            }
            TERN_STORE((struct node **)&h_hold[t][h], (struct node *)hold);
        }
    }
    struct tern_stats st0 = get_stats();
    pthread_t th[H_THREADS];
    run_workers(th, H_THREADS, h_worker);
    for (int t = 0; t < H_THREADS; t++)
        h_check("after the threads stopped", t);
    tern_collect();
    for (int t = 0; t < H_THREADS; t++)
        h_check("after a collection", t);
    struct tern_stats st1 = get_stats();
    CHECK(st1.cycles > st0.cycles + 2, "only %llu cycles ran", (unsigned long long)(st1.cycles - st0.cycles));
    printf("fresh: %ld holders moved, %llu cycles; ", atomic_load(&h_moves),
           (unsigned long long)(st1.cycles - st0.cycles));
}

/* ==== running a scenario =============================================== */

struct scenario {
    const char *name;
    void (*fn)(void);
};

static const struct scenario scenarios[] = {
    { "graph", scenario_graph },     { "memcpy", scenario_memcpy }, { "read", scenario_read },
    { "realloc", scenario_realloc }, { "threads", scenario_threads }, { "fork", scenario_fork },
    { "table", scenario_table },     { "fresh", scenario_fresh },
};

static const char *const kind_names[] = {
    [TERN_BARRIER_AUTO] = "auto",         [TERN_BARRIER_UFFD] = "uffd",
    [TERN_BARRIER_SOFTDIRTY] = "softdirty", [TERN_BARRIER_MPROTECT] = "mprotect",
    [TERN_BARRIER_EXPLICIT] = "explicit", [TERN_BARRIER_STW] = "stw",
};

static int kind_id(const char *name)
{
    for (int i = 0; i < (int)(sizeof kind_names / sizeof kind_names[0]); i++)
        if (strcmp(kind_names[i], name) == 0)
            return i;
    return -1;
}

static int run_scenario(const char *name)
{
    const struct scenario *s = NULL;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
        if (strcmp(scenarios[i].name, name) == 0)
            s = &scenarios[i];
    if (!s) {
        fprintf(stderr, "no scenario %s\n", name);
        return 2;
    }
    scenario = s->name;
    const char *k = getenv("TERN_BARRIER");
    kind = k ? k : "auto";
    const char *ms = getenv("TERN_CONC_MS");
    if (ms && atoi(ms) > 0)
        run_ms = (uint64_t)atoi(ms);
    os_page = sysconf(_SC_PAGESIZE);
    alarm((unsigned)(run_ms / 1000) + 40); /* a hang ends with SIGALRM */

    void *first = tern_malloc(16); /* Tern starts here, with this process's TERN_* */
    CHECK(first != NULL, "tern_malloc failed");
    struct tern_stats before = get_stats();
    int want = kind_id(kind);
    if (want > 0 && (int)before.barrier != want) {
        printf("TERN_BARRIER=%s is not available here: Tern uses %s\n", kind,
               tern_barrier_name((int)before.barrier));
        if (want == TERN_BARRIER_UFFD || want == TERN_BARRIER_SOFTDIRTY)
            return 77; /* depends on the kernel */
        fprintf(stderr, "FAILED: TERN_BARRIER=%s, but tern_get_stats reports barrier %u (%s)\n", kind,
                before.barrier, tern_barrier_name((int)before.barrier));
        return 4;
    }
    uint64_t t0 = now_ms();
    deadline_ms = t0 + run_ms;
    s->fn();
    tern_collect();
    tern_collect();
    struct tern_stats after = get_stats();
    uint64_t cycles = after.cycles - before.cycles;
    uint64_t alloc = after.allocated_bytes - before.allocated_bytes;
    uint64_t freed = after.freed_bytes - before.freed_bytes;
    printf("%llu cycles (%ld by tern_collect), %llu pauses, max pause %.2f ms, allocated %.1f MiB, freed %.1f MiB, "
           "%.2f s\n",
           (unsigned long long)cycles, atomic_load(&explicit_collections),
           (unsigned long long)(after.pauses - before.pauses), after.max_pause_ns / 1e6, alloc / (double)MiB,
           freed / (double)MiB, (now_ms() - t0) / 1000.0);
    fflush(stdout);
    CHECK(cycles >= 5, "only %llu collections ran", (unsigned long long)cycles);
    /* most of what was allocated was garbage: it must have been reclaimed */
    CHECK(freed >= alloc / 2, "garbage not reclaimed: %llu bytes allocated, only %llu freed (%llu in use)",
          (unsigned long long)alloc, (unsigned long long)freed, (unsigned long long)after.in_use_bytes);
    return 0;
}

__attribute__((constructor)) static void scenario_entry(void)
{
    const char *name = getenv("TERN_CONC_SCENARIO");
    if (!name)
        return; /* the Criterion program */
    int rc = run_scenario(name);
    fflush(stdout);
    fflush(stderr);
    _exit(rc);
}

/* ==== the Criterion side: one test per scenario and kind =============== */

TestSuite(concurrent, .timeout = 90);

static void slurp(FILE *f, char *buf, size_t cap)
{
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void run_fresh(const char *name, int kind_no)
{
    const char *kname = kind_names[kind_no];
    static char vars[4][64];
    snprintf(vars[0], sizeof vars[0], "TERN_CONC_SCENARIO=%s", name);
    snprintf(vars[1], sizeof vars[1], "TERN_BARRIER=%s", kname);
    snprintf(vars[2], sizeof vars[2], "TERN_GC=10");
    snprintf(vars[3], sizeof vars[3], "TERN_INITIAL_HEAP=1MiB");
    const char *envp[600];
    size_t n = 0;
    for (char **e = environ; *e && n < 590; e++)
        if (strncmp(*e, "TERN_CONC_SCENARIO=", 19) && strncmp(*e, "TERN_BARRIER=", 13) &&
            strncmp(*e, "TERN_GC=", 8) && strncmp(*e, "TERN_INITIAL_HEAP=", 18))
            envp[n++] = *e; /* TERN_DEBUG, TERN_MARKERS, ... pass through */
    for (int i = 0; i < 4; i++)
        envp[n++] = vars[i];
    envp[n] = NULL;

    FILE *out = tmpfile(), *err = tmpfile();
    cr_assert(out && err, "tmpfile failed");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork failed");
    if (pid == 0) {
        dup2(fileno(out), 1);
        dup2(fileno(err), 2);
        char *argv[] = { (char *)"test_concurrent", NULL };
        execve("/proc/self/exe", argv, (char *const *)envp);
        _exit(127);
    }
    int st;
    pid_t w;
    while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
        ;
    cr_assert_eq(w, pid, "waitpid failed");
    static char obuf[8192], ebuf[64 * 1024];
    slurp(out, obuf, sizeof obuf);
    slurp(err, ebuf, sizeof ebuf);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        cr_skip_test("%s under TERN_BARRIER=%s: %s", name, kname, obuf);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "---- stderr of scenario %s under TERN_BARRIER=%s:\n%s----\n", name, kname, ebuf);
        size_t len = strlen(ebuf);
        cr_assert_fail("scenario %s under TERN_BARRIER=%s %s %d%s\n%s%s\n"
                       "reproduce: TERN_CONC_SCENARIO=%s TERN_BARRIER=%s TERN_GC=10 TERN_INITIAL_HEAP=1MiB%s%s "
                       "tests/test_concurrent",
                       name, kname, WIFEXITED(st) ? "exited with" : "was killed by signal",
                       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                       WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? " (it hung)" : "",
                       len > 6000 ? "...\n" : "", len > 6000 ? ebuf + len - 6000 : ebuf, name, kname,
                       getenv("TERN_DEBUG") ? " TERN_DEBUG=" : "", getenv("TERN_DEBUG") ? getenv("TERN_DEBUG") : "");
    }
    if (ebuf[0])
        cr_log_warn("%s/%s wrote on stderr: %.2000s", name, kname, ebuf);
    cr_log_info("%s/%s: %s", name, kname, obuf);
}

#define KINDS_PARAMS(test)                                                                            \
    ParameterizedTestParameters(concurrent, test)                                                     \
    {                                                                                                 \
        static int kinds[] = { TERN_BARRIER_UFFD, TERN_BARRIER_SOFTDIRTY, TERN_BARRIER_MPROTECT,     \
                               TERN_BARRIER_EXPLICIT, TERN_BARRIER_STW };                            \
        return cr_make_param_array(int, kinds, sizeof kinds / sizeof kinds[0]);                       \
    }                                                                                                 \
    ParameterizedTest(int *kind_no, concurrent, test) { run_fresh(#test, *kind_no); }

/* 1. Threads rewire a shared graph: pointers moved between nodes, nodes
 *    held only in locals or static data for a while, then linked back. */
KINDS_PARAMS(graph)
/* 2. memcpy/memmove of pointer arrays between heap objects while the other
 *    reference is dropped (also through a local array, and into new copies). */
KINDS_PARAMS(memcpy)
/* 3. read(2) of pointers from a pipe into fresh and old heap buffers. */
KINDS_PARAMS(read)
/* 4. tern_realloc of pointer arrays, growing and shrinking. */
KINDS_PARAMS(realloc)
/* 5. Threads that start (some from other threads), build a tree, hand it
 *    to a shared table and exit, all while cycles run. */
KINDS_PARAMS(threads)
/* 6. fork while threads allocate and cycles mark; the children allocate,
 *    collect and check, with a thread of their own. */
KINDS_PARAMS(fork)
/* 7. Random stores of fresh nodes across a 1 MiB pointer table. */
KINDS_PARAMS(table)
/* 8. Nodes moved, step after step, into holders allocated just now (in
 *    spans carved while marking), the old holders cleared. */
KINDS_PARAMS(fresh)
