/* limit.c — a fixed live set churned, for Tern's memory limit (issue #6).
 *
 *   limit LIVE_MIB TOTAL_MIB [SAMPLES_FILE]
 *   e.g. limit 64 2048 rss.txt
 *
 * Builds a table of LIVE_MIB MiB of objects (16..1024 bytes, half of them
 * scanned, half atomic), then allocates TOTAL_MIB MiB more, each new object
 * replacing a random table slot (GC backends drop the old object, malloc
 * backends free it), so the live data stays at LIVE_MIB while the heap
 * churns and fragments.  The runner runs it on Tern with no limit and with
 * TERN_MEMLIMIT a little above the live data: the memory limit must hold
 * the heap down without any allocation failing.
 *
 * An allocation that returns NULL is counted (alloc_failures=) and the old
 * object is kept; the run goes on.  Every live object carries a tag at both
 * ends, checked when replaced and at the end (ok=0 if one is wrong).
 *
 * RESULT: run_ms (build + churn), build_ms, churn_ms, live_kib (requested
 * bytes of the table and its objects), peak_rss_kib (VmHWM), peak of the
 * sampled RSS and (Tern) committed heap bytes, memory_limit_kib (Tern's,
 * from tern_get_stats; 0 = none), alloc_failures.  SAMPLES_FILE gets
 * "T_MS RSS_KIB COMMITTED_KIB" lines, one per 4 MiB allocated.
 */
#include "backend.h"

struct sample {
    double t_ms;
    uint64_t rss, committed;
};

static struct sample samples[8192];
static int nsamples;
static uint64_t t_start, peak_rss_sampled, peak_committed;

static uint64_t committed_now(void)
{
#if defined(BK_TERN)
    struct tern_stats s;
    if (tern_get_stats(&s) == 0)
        return s.committed_bytes;
#endif
    return 0;
}

static void sample(void)
{
    uint64_t rss = bk_rss_bytes(), com = committed_now();
    if (rss > peak_rss_sampled)
        peak_rss_sampled = rss;
    if (com > peak_committed)
        peak_committed = com;
    if (nsamples < (int)(sizeof samples / sizeof samples[0])) {
        samples[nsamples].t_ms = (bk_now_ns() - t_start) / 1e6;
        samples[nsamples].rss = rss;
        samples[nsamples].committed = com;
        nsamples++;
    }
}

int main(int argc, char **argv)
{
    t_start = bk_now_ns();
    BK_INIT();
    long live_mib = bk_arg(argc, argv, 1, 64);
    long total_mib = bk_arg(argc, argv, 2, 2048);
    const char *out = argc > 3 ? argv[3] : NULL;
    if (live_mib < 1 || total_mib < 0) {
        fprintf(stderr, "usage: limit LIVE_MIB TOTAL_MIB [FILE]\n");
        return 2;
    }
    sample();
    long n = live_mib * 1024 * 1024 / 528; /* mean object 520 bytes + its slot */
    struct bk_live t;
    bk_live_init(&t, n);
    uint64_t rng = 11, failures = 0, since = 0;

    uint64_t b0 = bk_now_ns();
    for (long i = 0; i < n; i++) {
        if ((since += bk_live_set(&t, i, bk_rand(&rng), 1)) >= (4u << 20)) {
            since = 0;
            sample();
        }
    }
    uint64_t b1 = bk_now_ns();

    uint64_t target = (uint64_t)total_mib << 20, done = 0;
    long count = 0;
    while (done < target) {
        uint64_t r = bk_rand(&rng);
        size_t sz = bk_live_set(&t, (long)((r >> 8) % (uint64_t)n), r, 0);
        failures += sz == 0;
        done += sz ? sz : 16 + (size_t)(r % 1009);
        count++;
        if ((since += sz) >= (4u << 20)) {
            since = 0;
            sample();
        }
    }
    uint64_t c1 = bk_now_ns();
    sample();
    int ok = bk_live_check(&t);
    uint64_t live = t.bytes;

    uint64_t limit = 0;
#if defined(BK_TERN)
    {
        struct tern_stats s;
        if (tern_get_stats(&s) == 0)
            limit = s.memory_limit;
    }
#endif
    if (out) {
        FILE *f = fopen(out, "w");
        if (!f) {
            perror(out);
            return 3;
        }
        for (int i = 0; i < nsamples; i++)
            fprintf(f, "%.1f %llu %llu\n", samples[i].t_ms,
                    (unsigned long long)(samples[i].rss >> 10),
                    (unsigned long long)(samples[i].committed >> 10));
        fclose(f);
    }
    printf("RESULT ok=%d run_ms=%.3f build_ms=%.3f churn_ms=%.3f allocs=%ld live_kib=%llu "
           "peak_rss_kib=%llu peak_rss_sampled_kib=%llu peak_committed_kib=%llu "
           "memory_limit_kib=%llu alloc_failures=%llu samples=%d\n",
           ok, (c1 - b0) / 1e6, (b1 - b0) / 1e6, (c1 - b1) / 1e6, count,
           (unsigned long long)(live >> 10),
           (unsigned long long)(bk_peak_rss_bytes() >> 10),
           (unsigned long long)(peak_rss_sampled >> 10),
           (unsigned long long)(peak_committed >> 10), (unsigned long long)(limit >> 10),
           (unsigned long long)failures, nsamples);
    bk_print_stats();
    return ok ? 0 : 1;
}
