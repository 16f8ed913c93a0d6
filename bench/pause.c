/* pause.c — latency under a large live heap.
 *
 *   pause LIVE_MIB REPLACE_PCT BATCH [SAMPLES_FILE]
 *   e.g.  pause 256 200 1000 samples.txt
 *
 * Builds LIVE_MIB MiB (sum of requested sizes) of small objects (16..128
 * bytes, scanned) held in one table, then one mutator thread replaces them
 * at random: a step replaces BATCH objects (allocate, write, drop or free
 * the old one).  Steps run until REPLACE_PCT percent of the objects have
 * been replaced.  Each step's latency is measured here (CLOCK_MONOTONIC);
 * stop-the-world pauses come from the collector's own accounting (see
 * backend.h).  SAMPLES_FILE gets one line per sample: "step NS" or "gc NS".
 */
#include "backend.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *sorted, long n, double p)
{
    if (n <= 0)
        return 0;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return sorted[i];
}

static inline void *new_obj(uint64_t r, long *bytes)
{
    size_t sz = 16 + 8 * (size_t)(r % 15); /* 16..128, mean 72 */
    uint64_t *p = XALLOC(sz);
    p[0] = r;                     /* touch both ends */
    p[sz / 8 - 1] = sz;
    *bytes += (long)sz;
    return p;
}

int main(int argc, char **argv)
{
    BK_INIT();
    long live_mib = bk_arg(argc, argv, 1, 256);
    long replace_pct = bk_arg(argc, argv, 2, 200);
    long batch = bk_arg(argc, argv, 3, 1000);
    const char *out = argc > 4 ? argv[4] : NULL;
    if (live_mib < 1 || replace_pct < 1 || batch < 1) {
        fprintf(stderr, "usage: pause LIVE_MIB REPLACE_PCT BATCH [FILE]\n");
        return 2;
    }
    long nobj = live_mib * 1024 * 1024 / 72;
    uint64_t rng = 0x1234567ull;
    long bytes = 0;
    uint64_t t0 = bk_now_ns();

    void **table = XALLOC(sizeof(void *) * (size_t)nobj);
    for (long i = 0; i < nobj; i++)
        table[i] = new_obj(bk_rand(&rng), &bytes);
    uint64_t t_built = bk_now_ns();
    bk_pause_poll();

    long steps = (nobj * replace_pct / 100 + batch - 1) / batch;
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)steps);
    if (!lat) {
        fprintf(stderr, "pause: no memory for %ld samples\n", steps);
        return 3;
    }
    for (long s = 0; s < steps; s++) {
        uint64_t a = bk_now_ns();
        for (long k = 0; k < batch; k++) {
            uint64_t r = bk_rand(&rng);
            long i = (long)((r >> 16) % (uint64_t)nobj);
            void *old = table[i];
            table[i] = new_obj(r, &bytes);
            DISCARD(old);
        }
        lat[s] = bk_now_ns() - a;
        bk_pause_poll();
    }
    uint64_t t1 = bk_now_ns();

    /* Check the table still holds intact objects. */
    int ok = 1;
    for (long i = 0; i < nobj; i++) {
        uint64_t *p = table[i];
        size_t sz = 16 + 8 * (size_t)(p[0] % 15);
        if (p[sz / 8 - 1] != sz) {
            ok = 0;
            break;
        }
    }

    unsigned npause;
    uint64_t missed;
    const uint64_t *ps = bk_pause_samples(&npause, &missed);
    if (out) {
        FILE *f = fopen(out, "w");
        if (!f) {
            perror(out);
            return 3;
        }
        for (long s = 0; s < steps; s++)
            fprintf(f, "step %llu\n", (unsigned long long)lat[s]);
        for (unsigned i = 0; i < npause; i++)
            fprintf(f, "gc %llu\n", (unsigned long long)ps[i]);
        fclose(f);
    }
    qsort(lat, (size_t)steps, sizeof(uint64_t), cmp_u64);
    printf("RESULT ok=%d work_ms=%.3f build_ms=%.3f steps=%ld objects=%ld "
           "step_p50_us=%.3f step_p99_us=%.3f step_p999_us=%.3f "
           "step_max_us=%.3f pause_samples=%u pause_samples_missed=%llu\n",
           ok, (t1 - t0) / 1e6, (t_built - t0) / 1e6, steps, nobj,
           pct(lat, steps, 0.5) / 1e3, pct(lat, steps, 0.99) / 1e3,
           pct(lat, steps, 0.999) / 1e3, lat[steps - 1] / 1e3, npause,
           (unsigned long long)missed);
    bk_print_stats();
    free(lat);
#if !BK_IS_GC
    for (long i = 0; i < nobj; i++)
        FREE(table[i]);
    FREE(table);
#endif
    if (!ok)
        fprintf(stderr, "pause: live object corrupted\n");
    return ok ? 0 : 1;
}
