/* alloctest.c — Pareto-distributed sizes up to 1 KiB, after alloc-test.
 *
 *   alloctest THREADS LIVE OPS
 *   e.g.      alloctest 2 100000 10000000
 *
 * Each thread keeps LIVE blocks and does OPS operations: free the block in
 * a random slot and put a new one there whose size follows a Pareto law
 * (minimum 8 bytes, shape 1.2: mostly small, a heavy tail) cut at 1024
 * bytes.  Sizes come from a table drawn up front so the loop does no
 * floating point.  Malloc-style: every backend frees explicitly.  Prints
 * ops_per_s (free+malloc pairs per second, all threads).
 */
#include "backend.h"
#include <math.h>

#define NSIZES 65536
static uint16_t sizes[NSIZES];
static long live, ops;
static void **slots_of[256]; /* global: reachable for the GC backends */

struct job {
    int id;
    long bad;
    long bytes;
};

static void *worker(void *arg)
{
    struct job *j = arg;
    uint64_t rng = 0xABCDEF12345ull * (uint64_t)(j->id + 1);
    void **slots = XALLOC(sizeof(void *) * (size_t)live);
    memset(slots, 0, sizeof(void *) * (size_t)live);
    slots_of[j->id] = slots;
    for (long i = 0; i < ops; i++) {
        uint64_t r = bk_rand(&rng);
        long s = (long)((r >> 16) % (uint64_t)live);
        size_t sz = sizes[r & (NSIZES - 1)];
        unsigned char *old = slots[s];
        if (old) {
            j->bad += old[0] != old[1];
            FREE(old);
        }
        unsigned char *p = XALLOC(sz);
        p[0] = p[1] = (unsigned char)r;
        p[sz - 1] = 1;
        slots[s] = p;
        j->bytes += (long)sz;
    }
    for (long s = 0; s < live; s++)
        if (slots[s])
            FREE(slots[s]);
    slots_of[j->id] = NULL;
    FREE(slots);
    return NULL;
}

int main(int argc, char **argv)
{
    BK_INIT();
    int threads = (int)bk_arg(argc, argv, 1, 2);
    live = bk_arg(argc, argv, 2, 100000);
    ops = bk_arg(argc, argv, 3, 10000000);
    if (threads < 1 || threads > 256 || live < 1 || ops < 1) {
        fprintf(stderr, "usage: alloctest THREADS LIVE OPS\n");
        return 2;
    }
    uint64_t rng = 99;
    for (int i = 0; i < NSIZES; i++) {
        double u = ((bk_rand(&rng) >> 11) + 1) * (1.0 / 9007199254740993.0);
        double s = 8.0 * pow(u, -1.0 / 1.2);
        sizes[i] = (uint16_t)(s > 1024.0 ? 1024 : s);
    }
    struct job jobs[256];
    pthread_t tids[256];
    memset(jobs, 0, sizeof jobs);
    uint64_t t0 = bk_now_ns();
    for (int i = 0; i < threads; i++) {
        jobs[i].id = i;
        bk_thread_start(&tids[i], worker, &jobs[i]);
    }
    long bad = 0, bytes = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        bad += jobs[i].bad;
        bytes += jobs[i].bytes;
    }
    uint64_t t1 = bk_now_ns();
    long total = ops * threads;
    int ok = bad == 0;
    printf("RESULT ok=%d work_ms=%.3f threads=%d ops=%ld ops_per_s=%.0f "
           "mean_size=%.1f bad=%ld\n", ok, (t1 - t0) / 1e6, threads, total,
           total / ((t1 - t0) / 1e9), (double)bytes / (double)total, bad);
    bk_print_stats();
    if (!ok)
        fprintf(stderr, "alloctest: %ld corrupted blocks\n", bad);
    return ok ? 0 : 1;
}
