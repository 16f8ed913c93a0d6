/* larson.c — cross-thread free, after Larson and Krishnan's server test.
 *
 *   larson THREADS SLOTS ROUNDS OPS [MIN_SIZE MAX_SIZE]
 *   e.g.   larson 2 4000 20 200000 16 512
 *
 * THREADS tables of SLOTS blocks are filled by the main thread.  Then, for
 * ROUNDS rounds, THREADS fresh threads each take a table — table
 * (i + round) % THREADS, so each round a thread frees blocks that another
 * thread (of an earlier round) allocated — and do OPS operations on it:
 * free a random slot's block and put a new block of random size there.
 * A malloc-style workload: every backend frees explicitly (FREE: free,
 * tern_free, GC_FREE).  Prints ops_per_s (free+malloc pairs per second).
 * Each block carries its size at the front and its complement at the end;
 * both are checked before the block is freed.
 */
#include "backend.h"

static int nthreads;
static long nslots, ops, min_size, max_size;
static void ***tables; /* global: reachable for the GC backends */

struct job {
    int table;
    long bad;
    uint64_t seed;
};

static void *make_block(size_t sz)
{
    unsigned char *p = XALLOC(sz);
    uint32_t a = (uint32_t)sz, b = ~a;
    memcpy(p, &a, 4);
    memcpy(p + sz - 4, &b, 4);
    return p;
}

static int block_ok(const unsigned char *p)
{
    uint32_t a, b;
    memcpy(&a, p, 4);
    if (a < (uint32_t)min_size || a > (uint32_t)max_size)
        return 0;
    memcpy(&b, p + a - 4, 4);
    return b == ~a;
}

static void *worker(void *arg)
{
    struct job *j = arg;
    void **t = tables[j->table];
    uint64_t rng = j->seed;
    uint64_t span = (uint64_t)(max_size - min_size + 1);
    for (long i = 0; i < ops; i++) {
        uint64_t r = bk_rand(&rng);
        long s = (long)((r >> 8) % (uint64_t)nslots);
        size_t sz = (size_t)min_size + (size_t)((r >> 40) % span);
        if (!block_ok(t[s]))
            j->bad++;
        FREE(t[s]);
        t[s] = make_block(sz);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    BK_INIT();
    nthreads = (int)bk_arg(argc, argv, 1, 2);
    nslots = bk_arg(argc, argv, 2, 4000);
    long rounds = bk_arg(argc, argv, 3, 20);
    ops = bk_arg(argc, argv, 4, 200000);
    min_size = bk_arg(argc, argv, 5, 16);
    max_size = bk_arg(argc, argv, 6, 512);
    if (nthreads < 1 || nthreads > 256 || nslots < 1 || rounds < 1 ||
        ops < 1 || min_size < 8 || max_size < min_size) {
        fprintf(stderr, "usage: larson THREADS SLOTS ROUNDS OPS [MIN MAX]\n");
        return 2;
    }
    uint64_t t0 = bk_now_ns();
    uint64_t rng = 7;
    uint64_t span = (uint64_t)(max_size - min_size + 1);
    tables = XALLOC(sizeof(void **) * (size_t)nthreads);
    for (int i = 0; i < nthreads; i++) {
        tables[i] = XALLOC(sizeof(void *) * (size_t)nslots);
        for (long s = 0; s < nslots; s++)
            tables[i][s] = make_block((size_t)min_size +
                                      (size_t)(bk_rand(&rng) % span));
    }
    struct job jobs[256];
    pthread_t tids[256];
    long bad = 0;
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < nthreads; i++) {
            jobs[i].table = (int)((i + r) % nthreads);
            jobs[i].bad = 0;
            jobs[i].seed = bk_rand(&rng) | 1;
            bk_thread_start(&tids[i], worker, &jobs[i]);
        }
        for (int i = 0; i < nthreads; i++) {
            pthread_join(tids[i], NULL);
            bad += jobs[i].bad;
        }
    }
    for (int i = 0; i < nthreads; i++) {
        for (long s = 0; s < nslots; s++) {
            if (!block_ok(tables[i][s]))
                bad++;
            FREE(tables[i][s]);
        }
        FREE(tables[i]);
    }
    FREE(tables);
    uint64_t t1 = bk_now_ns();
    long total = rounds * ops * nthreads;
    int ok = bad == 0;
    printf("RESULT ok=%d work_ms=%.3f threads=%d ops=%ld ops_per_s=%.0f bad=%ld\n",
           ok, (t1 - t0) / 1e6, nthreads, total, total / ((t1 - t0) / 1e9), bad);
    bk_print_stats();
    if (!ok)
        fprintf(stderr, "larson: %ld corrupted blocks\n", bad);
    return ok ? 0 : 1;
}
