/* footprint.c — what the allocator costs in resident memory (issue #6).
 *
 *   footprint one [SMAPS_FILE]
 *       RSS first thing in main (before BK_INIT and any allocation), then
 *       after allocating and writing one 32-byte object.  rss_start_kib,
 *       rss_one_kib (the whole process), one_delta_kib (the growth).  The
 *       runner compares rss_one_kib with glibc's (goal: Tern ≤ glibc +
 *       512 KiB).  SMAPS_FILE gets "RSS_KIB NAME" per mapping name (summed
 *       from /proc/self/smaps, largest first): where the resident memory is.
 *
 *   footprint threads N SLEEP_MS
 *       The main thread allocates the per-thread pattern once (so global
 *       set-up is not counted), then starts N threads that first only wait
 *       (rss_bare: their stacks and the thread library's bookkeeping), then
 *       each allocate 16 small objects (2 each of 16, 32, 48, 64, 96, 128,
 *       256 and 512 bytes) and keep them in a global table, and wait again
 *       (rss_alloc), then sleep SLEEP_MS more (rss_idle: an idle thread's
 *       cache after the allocator had time to trim it).  Per-thread figures
 *       in KiB: bare_kib_per_thread, alloc_kib_per_thread (from allocating),
 *       thread_kib (bare + alloc), idle_kib_per_thread (total per thread
 *       after the sleep).  The runner compares thread_kib and
 *       idle_kib_per_thread with glibc's (goal: Tern ≤ glibc + 16 KiB).
 *
 *   footprint live LIVE_MIB GARBAGE STEADY_MIB
 *       Builds LIVE_MIB MiB of live objects (16..1024 bytes, in a table,
 *       half scanned, half atomic), allocating GARBAGE objects of garbage
 *       after each live one, then allocates STEADY_MIB MiB more of garbage
 *       with the live set fixed.  Peak RSS (VmHWM) over live_kib (the
 *       requested bytes of the table and its objects): peak_over_live (goal,
 *       run with TERN_GC=100: ≤ 1.6).  peak_minus_start_over_live leaves out
 *       the RSS the process had before it allocated; peak_build_over_live
 *       is the peak by the end of the build (the live set still growing, so
 *       the last cycle's live data lags behind the real one).
 *
 * GC backends drop garbage; malloc backends free it.  Every kept object is
 * tagged and checked at the end (ok=0 if one is wrong).
 */
#include "backend.h"

static uint64_t rss_start;

/* Sums Rss of /proc/self/smaps per mapping name into PATH, largest first
 * ("[anon]" for unnamed mappings). */
static void dump_smaps(const char *path)
{
    static struct {
        char name[128];
        unsigned long long kib;
    } m[512];
    int nm = 0;
    char line[512], cur[128] = "[anon]";
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kib;
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            /* a mapping header: "lo-hi perms offset dev inode [name]" */
            char *p = line;
            for (int k = 0; k < 5 && p; k++) {
                p = strchr(p, ' ');
                while (p && *p == ' ')
                    p++;
            }
            size_t len = p ? strcspn(p, "\n") : 0;
            snprintf(cur, sizeof cur, "%.*s", len ? (int)(len < 127 ? len : 127) : 6,
                     len ? p : "[anon]");
        } else if (sscanf(line, "Rss: %llu kB", &kib) == 1 && kib) {
            int i;
            for (i = 0; i < nm; i++)
                if (!strcmp(m[i].name, cur))
                    break;
            if (i == nm && nm < 512) {
                snprintf(m[nm].name, sizeof m[nm].name, "%s", cur);
                m[nm++].kib = 0;
            }
            if (i < nm)
                m[i].kib += kib;
        }
    }
    fclose(f);
    FILE *o = fopen(path, "w");
    if (!o)
        return;
    for (int done = 0; done < nm; done++) {
        int best = -1;
        for (int i = 0; i < nm; i++)
            if (m[i].kib != ~0ull && (best < 0 || m[i].kib > m[best].kib))
                best = i;
        fprintf(o, "%llu %s\n", m[best].kib, m[best].name);
        m[best].kib = ~0ull;
    }
    fclose(o);
}

/* ------------------------------------------------------------------ one */

static int one(int argc, char **argv)
{
    BK_INIT();
    unsigned char *p = XALLOC(32);
    memset(p, 0x5a, 32);
    uint64_t rss_one = bk_rss_bytes();
    if (argc > 2)
        dump_smaps(argv[2]);
    int ok = p[31] == 0x5a;
    printf("RESULT ok=%d rss_start_kib=%llu rss_one_kib=%llu one_delta_kib=%lld\n", ok,
           (unsigned long long)(rss_start >> 10), (unsigned long long)(rss_one >> 10),
           (long long)(rss_one >> 10) - (long long)(rss_start >> 10));
    bk_print_stats();
    return ok ? 0 : 1;
}

/* -------------------------------------------------------------- threads */

#define PER_THREAD 16
static const size_t thread_sizes[PER_THREAD] = {16, 32, 48, 64, 96, 128, 256, 512,
                                                16, 32, 48, 64, 96, 128, 256, 512};
static unsigned char *(*kept)[PER_THREAD]; /* [N + 1][PER_THREAD], global root */
static pthread_barrier_t bar;

static void fill(long t)
{
    for (int k = 0; k < PER_THREAD; k++) {
        size_t sz = thread_sizes[k];
        unsigned char *p = (k & 1) ? XALLOC(sz) : XALLOC_ATOMIC(sz);
        memset(p, (int)(1 + (t + k) % 200), sz);
        kept[t][k] = p;
    }
}

static void *thread_main(void *arg)
{
    long t = (long)(intptr_t)arg;
    pthread_barrier_wait(&bar); /* 1: started, nothing allocated */
    pthread_barrier_wait(&bar); /* 2: main measured: allocate */
    fill(t);
    pthread_barrier_wait(&bar); /* 3: allocated */
    pthread_barrier_wait(&bar); /* 4: main measured and slept: exit */
    return NULL;
}

static int threads(int argc, char **argv)
{
    BK_INIT();
    long n = bk_arg(argc, argv, 2, 64);
    long sleep_ms = bk_arg(argc, argv, 3, 1000);
    if (n < 1 || n > 4096 || sleep_ms < 0) {
        fprintf(stderr, "usage: footprint threads N SLEEP_MS\n");
        return 2;
    }
    /* The table is plain static-lifetime memory (a root for the GCs):
     * calloc'd from the C library on every backend, outside the heap under
     * test, and registered with Tern and bdwgc as roots. */
    size_t tbytes = sizeof *kept * (size_t)(n + 1);
    kept = calloc(1, tbytes);
    if (!kept)
        return 3;
#if defined(BK_TERN)
    tern_add_roots(kept, (char *)kept + tbytes);
#elif defined(BK_BDWGC)
    GC_add_roots(kept, (char *)kept + tbytes);
#endif
    fill(n); /* the main thread's share: global set-up happens here */
    pthread_t *tid = calloc((size_t)n, sizeof *tid);
    if (!tid)
        return 3;
    pthread_barrier_init(&bar, NULL, (unsigned)n + 1);
    uint64_t r0 = bk_rss_bytes();
    for (long t = 0; t < n; t++)
        bk_thread_start(&tid[t], thread_main, (void *)(intptr_t)t);
    pthread_barrier_wait(&bar); /* 1 */
    uint64_t r1 = bk_rss_bytes();
    pthread_barrier_wait(&bar); /* 2 */
    pthread_barrier_wait(&bar); /* 3 */
    uint64_t r2 = bk_rss_bytes();
    struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    uint64_t r3 = bk_rss_bytes();
    int ok = 1;
    for (long t = 0; t <= n; t++)
        for (int k = 0; k < PER_THREAD; k++)
            ok &= kept[t][k][0] == (unsigned char)(1 + (t + k) % 200) &&
                  kept[t][k][thread_sizes[k] - 1] == kept[t][k][0];
    pthread_barrier_wait(&bar); /* 4 */
    for (long t = 0; t < n; t++)
        pthread_join(tid[t], NULL);
    double per = 1024.0 * (double)n;
    printf("RESULT ok=%d threads=%ld rss_before_kib=%llu rss_bare_kib=%llu rss_alloc_kib=%llu "
           "rss_idle_kib=%llu bare_kib_per_thread=%.2f alloc_kib_per_thread=%.2f "
           "thread_kib=%.2f idle_kib_per_thread=%.2f\n",
           ok, n, (unsigned long long)(r0 >> 10), (unsigned long long)(r1 >> 10),
           (unsigned long long)(r2 >> 10), (unsigned long long)(r3 >> 10),
           ((double)r1 - (double)r0) / per, ((double)r2 - (double)r1) / per,
           ((double)r2 - (double)r0) / per, ((double)r3 - (double)r0) / per);
    bk_print_stats();
    return ok ? 0 : 1;
}

/* ----------------------------------------------------------------- live */

static int live(int argc, char **argv)
{
    BK_INIT();
    long live_mib = bk_arg(argc, argv, 2, 128);
    long garbage = bk_arg(argc, argv, 3, 3);
    long steady_mib = bk_arg(argc, argv, 4, 128);
    if (live_mib < 1 || garbage < 0 || steady_mib < 0) {
        fprintf(stderr, "usage: footprint live LIVE_MIB GARBAGE STEADY_MIB\n");
        return 2;
    }
    long n = live_mib * 1024 * 1024 / 528;
    struct bk_live t;
    bk_live_init(&t, n);
    uint64_t rng = 23, garbage_bytes = 0;
    uint64_t t0 = bk_now_ns();
    for (long i = 0; i < n; i++) {
        bk_live_set(&t, i, bk_rand(&rng), 1);
        for (long g = 0; g < garbage; g++) {
            size_t gs = 16 + (size_t)(bk_rand(&rng) % 1009);
            unsigned char *q = (g & 1) ? XALLOC(gs) : XALLOC_ATOMIC(gs);
            q[0] = q[gs - 1] = 1;
            garbage_bytes += gs;
            DISCARD(q);
        }
    }
    uint64_t t1 = bk_now_ns();
    uint64_t peak_build = bk_peak_rss_bytes();
    for (uint64_t done = 0, target = (uint64_t)steady_mib << 20; done < target;) {
        size_t gs = 16 + (size_t)(bk_rand(&rng) % 1009);
        unsigned char *q = (done & 1) ? XALLOC(gs) : XALLOC_ATOMIC(gs);
        q[0] = q[gs - 1] = 1;
        done += gs;
        garbage_bytes += gs;
        DISCARD(q);
    }
    uint64_t t2 = bk_now_ns();
    int ok = bk_live_check(&t);
    uint64_t livebytes = t.bytes;
    uint64_t peak = bk_peak_rss_bytes(), now = bk_rss_bytes();
    printf("RESULT ok=%d live_kib=%llu garbage_kib=%llu build_ms=%.3f steady_ms=%.3f "
           "rss_start_kib=%llu peak_build_kib=%llu peak_rss_kib=%llu rss_end_kib=%llu "
           "peak_over_live=%.4f peak_minus_start_over_live=%.4f peak_build_over_live=%.4f\n", ok,
           (unsigned long long)(livebytes >> 10), (unsigned long long)(garbage_bytes >> 10),
           (t1 - t0) / 1e6, (t2 - t1) / 1e6, (unsigned long long)(rss_start >> 10),
           (unsigned long long)(peak_build >> 10), (unsigned long long)(peak >> 10),
           (unsigned long long)(now >> 10), (double)peak / (double)livebytes,
           ((double)peak - (double)rss_start) / (double)livebytes,
           (double)peak_build / (double)livebytes);
    bk_print_stats();
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    rss_start = bk_rss_bytes(); /* before BK_INIT and any allocation */
    const char *mode = argc > 1 ? argv[1] : "one";
    if (!strcmp(mode, "one"))
        return one(argc, argv);
    if (!strcmp(mode, "threads"))
        return threads(argc, argv);
    if (!strcmp(mode, "live"))
        return live(argc, argv);
    fprintf(stderr, "usage: footprint one [FILE] | threads N SLEEP_MS | "
            "live LIVE_MIB GARBAGE STEADY_MIB\n");
    return 2;
}
