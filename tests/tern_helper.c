/* tern_helper.c — a small program the env tests run in a fresh process, so
 * that TERN_* variables and tern_init take effect from the very start.
 *
 *   tern_helper stats      4 threads make 64 MiB of garbage, then collect
 *   tern_helper quick      8 MiB of garbage, collect (bad-input tests)
 *   tern_helper init       tern_init(gc_percent 37, markers 1) three times
 *   tern_helper init-off   tern_init(gc_percent -1), garbage, collect
 *   tern_helper init-heap  tern_init(initial_heap 64 MiB), garbage
 *   tern_helper trace      2 threads make 48 MiB of garbage, collect, print
 *                          every tern_get_stats figure, return from main
 *   tern_helper memlimit   one object; print the memory limit in force
 *   tern_helper init-limit tern_init(memory_limit 80 MiB), then as memlimit
 *   tern_helper free-idle  128 MiB allocated then freed, then idle: RSS
 *   tern_helper exit-thread  garbage, collect, then a second thread calls
 *                          exit(0) while main waits for it
 *
 * Results go to stdout as key=value words; Tern's own reports go to stderr.
 * The exit status is 0 unless the helper itself failed.
 */
#include "common.h"
#include "tern/memory.h"

#include <pthread.h>

static void print_stats(const char *prefix)
{
    struct tern_stats st;
    if (tern_get_stats(&st) != 0) {
        printf("stats_error=1\n");
        return;
    }
    printf("%scycles=%llu %sgc_percent=%u %smarkers=%u %sthreads=%u\n", prefix,
           (unsigned long long)st.cycles, prefix, st.gc_percent, prefix, st.markers, prefix, st.threads);
}

static void print_all_stats(void)
{
    struct tern_stats st;
    memset(&st, 0, sizeof st);
    if (tern_get_stats(&st) != 0) {
        printf("stats_error=1\n");
        return;
    }
#define P(f) printf(#f "=%llu\n", (unsigned long long)st.f)
    P(cycles); P(pauses); P(total_pause_ns); P(max_pause_ns); P(pause_p50_ns); P(pause_p95_ns);
    P(pause_p99_ns); P(mapped_bytes); P(peak_mapped_bytes); P(peak_rss_bytes); P(assist_ns);
    P(process_cpu_ns); P(gc_cpu_ns); P(allocated_bytes); P(freed_bytes); P(barrier);
#undef P
}

static void *exiter(void *arg)
{
    (void)arg;
    exit(0);
}

static unsigned long long cycles_now(void)
{
    struct tern_stats st;
    memset(&st, 0, sizeof st);
    tern_get_stats(&st);
    return (unsigned long long)st.cycles;
}

static void *churner(void *arg)
{
    churn((size_t)(uintptr_t)arg, 0);
    return NULL;
}

static int garbage_in_threads(size_t total, int nthreads)
{
    pthread_t t[16];
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&t[i], NULL, churner, (void *)(uintptr_t)(total / (size_t)nthreads)) != 0)
            return -1;
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "stats";
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(20); /* never outlive the test that runs us, even if Tern hangs */

    if (strcmp(mode, "stats") == 0) {
        if (garbage_in_threads(64 * MiB, 4) != 0)
            return 2;
        printf("cycles_alloc=%llu\n", cycles_now());
        tern_collect();
        print_stats("final_");
        return 0;
    }
    if (strcmp(mode, "memlimit") == 0 || strcmp(mode, "init-limit") == 0) {
        struct tern_stats st;
        if (mode[0] == 'i') {
            struct tern_options o;
            memset(&o, 0, sizeof o);
            o.memory_limit = 80 * MiB;
            printf("init=%d ", tern_init(&o));
        }
        tern_free(tern_malloc(16));
        tern_get_stats(&st);
        printf("memory_limit=%llu", (unsigned long long)st.memory_limit);
        if (mode[0] == 'i') printf(" query=%zu", tern_set_memory_limit(TERN_LIMIT_QUERY));
        printf("\n");
        return 0;
    }
    if (strcmp(mode, "free-idle") == 0) { /* malloc-style: free everything, then idle */
        tern_free(tern_malloc(16));
        size_t start = rss_now(), n = 128 * MiB / 512;
        void **t = tern_malloc(n * sizeof *t);
        if (!t) return 2;
        for (size_t i = 0; i < n; i++) {
            if (!(t[i] = tern_malloc(16 + i % 1000))) return 2;
            memset(t[i], 1, 16);
        }
        for (size_t i = 0; i < n; i++) tern_free(t[i]);
        tern_free(t);
        size_t peak = rss_now(), now = peak;
        for (int i = 0; i < 100 && now > start + 24 * MiB; i++) {
            usleep(100000);
            now = rss_now();
        }
        struct tern_stats st;
        tern_get_stats(&st);
        printf("free-idle start=%zu peak=%zu idle=%zu cycles=%llu\n", start >> 10, peak >> 10, now >> 10,
               (unsigned long long)st.cycles);
        return 0;
    }
    if (strcmp(mode, "quick") == 0) { /* start, a little garbage, one collection */
        churn(8 * MiB, 0);
        tern_collect();
        print_stats("final_");
        return 0;
    }
    if (strcmp(mode, "init") == 0) {
        struct tern_options o;
        memset(&o, 0, sizeof o);
        o.gc_percent = 37;
        o.markers = 1;
        int r1 = tern_init(&o);
        int r2 = tern_init(&o);
        int r3 = tern_init(NULL);
        printf("init1=%d init2=%d init3=%d\n", r1, r2, r3);
        churn(64 * MiB, 0);
        printf("cycles_alloc=%llu\n", cycles_now());
        tern_collect();
        print_stats("final_");
        return 0;
    }
    if (strcmp(mode, "init-off") == 0) {
        struct tern_options o;
        memset(&o, 0, sizeof o);
        o.gc_percent = -1;
        printf("init1=%d\n", tern_init(&o));
        churn(64 * MiB, 0);
        printf("cycles_alloc=%llu\n", cycles_now());
        tern_collect();
        print_stats("final_");
        return 0;
    }
    if (strcmp(mode, "init-heap") == 0) {
        struct tern_options o;
        memset(&o, 0, sizeof o);
        o.initial_heap = 64 * MiB;
        printf("init1=%d\n", tern_init(&o));
        churn(32 * MiB, 0);
        printf("cycles_a=%llu\n", cycles_now());
        churn(160 * MiB, 0);
        printf("cycles_b=%llu\n", cycles_now());
        return 0;
    }
    if (strcmp(mode, "trace") == 0 || strcmp(mode, "exit-thread") == 0) {
        if (garbage_in_threads(48 * MiB, 2) != 0)
            return 2;
        tern_collect();
        print_all_stats();
        if (strcmp(mode, "trace") == 0)
            return 0;
        pthread_t t;
        if (pthread_create(&t, NULL, exiter, NULL) != 0)
            return 2;
        pthread_join(t, NULL);
        return 4; /* not reached: the thread exits the process */
    }
    fprintf(stderr, "tern_helper: unknown mode %s\n", mode);
    return 2;
}
