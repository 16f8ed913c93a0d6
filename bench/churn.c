/* churn.c — allocation fast paths and sweeping.
 *
 *   churn window WINDOW COUNT
 *       One thread allocates COUNT small objects (16..255 bytes, random),
 *       each replacing the oldest of the last WINDOW objects (a sliding
 *       window), so almost everything dies young.
 *   churn rate THREADS COUNT
 *       Each of THREADS threads allocates COUNT 16-byte objects, keeping
 *       only the last 64 (a tiny window): allocation rate of 16-byte objects.
 *
 * Every object is written.  GC backends drop the object leaving the window;
 * malloc backends free it.  Prints allocs_per_s (all threads together).
 */
#include "backend.h"

static long rate_count;

static void *rate_worker(void *arg)
{
    long *sum = arg;
    void *ring[64] = {0};
    long s = 0;
    for (long i = 0; i < rate_count; i++) {
        uint64_t *p = XALLOC(16);
        p[0] = (uint64_t)i;
        p[1] = (uint64_t)i;
        unsigned k = (unsigned)i & 63;
        if (ring[k]) {
            s += (long)((uint64_t *)ring[k])[1];
            DISCARD(ring[k]);
        }
        ring[k] = p;
    }
    for (unsigned k = 0; k < 64; k++)
        if (ring[k])
            DISCARD(ring[k]);
    *sum = s;
    return NULL;
}

int main(int argc, char **argv)
{
    BK_INIT();
    const char *mode = argc > 1 ? argv[1] : "window";
    uint64_t t0, t1;
    long total;
    int ok = 1;

    if (!strcmp(mode, "window")) {
        long window = bk_arg(argc, argv, 2, 100000);
        total = bk_arg(argc, argv, 3, 50000000);
        if (window < 1 || total < 1)
            return 2;
        void **ring = XALLOC(sizeof(void *) * (size_t)window);
        memset(ring, 0, sizeof(void *) * (size_t)window);
        uint64_t rng = 42;
        t0 = bk_now_ns();
        long w = 0;
        for (long i = 0; i < total; i++) {
            uint64_t r = bk_rand(&rng);
            size_t sz = 16 + (size_t)(r % 240); /* 16..255 */
            unsigned char *p = XALLOC(sz);
            p[0] = (unsigned char)sz;
            p[sz - 1] = (unsigned char)sz;
            if (ring[w]) {
                unsigned char *q = ring[w];
                ok &= q[0] == q[q[0] - 1];
                DISCARD(q);
            }
            ring[w] = p;
            if (++w == window)
                w = 0;
        }
        t1 = bk_now_ns();
#if !BK_IS_GC
        for (long i = 0; i < window; i++)
            FREE(ring[i]);
        FREE(ring);
#endif
        printf("RESULT ok=%d work_ms=%.3f mode=window window=%ld allocs=%ld "
               "allocs_per_s=%.0f\n", ok, (t1 - t0) / 1e6, window, total,
               total / ((t1 - t0) / 1e9));
    } else if (!strcmp(mode, "rate")) {
        int threads = (int)bk_arg(argc, argv, 2, 1);
        rate_count = bk_arg(argc, argv, 3, 100000000);
        if (threads < 1 || threads > 256 || rate_count < 1)
            return 2;
        pthread_t tids[256];
        long sums[256];
        t0 = bk_now_ns();
        for (int i = 0; i < threads; i++)
            bk_thread_start(&tids[i], rate_worker, &sums[i]);
        for (int i = 0; i < threads; i++)
            pthread_join(tids[i], NULL);
        t1 = bk_now_ns();
        total = rate_count * threads;
        long expect = rate_count > 64 ? (rate_count - 64) * (rate_count - 65) / 2 : 0;
        for (int i = 0; i < threads; i++)
            ok &= sums[i] == expect;
        printf("RESULT ok=%d work_ms=%.3f mode=rate threads=%d allocs=%ld "
               "allocs_per_s=%.0f\n", ok, (t1 - t0) / 1e6, threads, total,
               total / ((t1 - t0) / 1e9));
    } else {
        fprintf(stderr, "usage: churn window WINDOW COUNT | churn rate THREADS COUNT\n");
        return 2;
    }
    bk_print_stats();
    if (!ok)
        fprintf(stderr, "churn: object corrupted\n");
    return ok ? 0 : 1;
}
