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
 * backend.h).  SAMPLES_FILE gets one line per sample: "step NS START_NS"
 * (START_NS: when the step began, from the start of main) or "gc NS".
 * Table stores go through TERN_STORE (Tern's explicit write barrier; a
 * plain store on other backends and under Tern's other barrier kinds).
 *
 * Minimum mutator utilisation (RESULT mmu_<W>ms) comes from the mutator's
 * own timeline of the replacement phase: the time from one step's start to
 * the next one's is a slot of duration D; the slot did min(D, median D) of
 * useful work, spread evenly over it (anything longer than a typical step
 * was time the mutator was held up: a pause, an assist, a slow path, CPU
 * taken by markers).  Utilisation of a window = useful work inside it / W;
 * MMU(W) = its minimum over every window position (exact: the minimum of
 * a piecewise-linear function lies where a window edge meets a slot edge).
 * A uniform slowdown of every step does not lower the MMU; it shows in the
 * total time instead.
 */
#include "backend.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *sorted, long n, double p)
{
    if (n <= 0)
        return 0;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return sorted[i];
}

/* MMU over windows of w ns; slot i is [b[i], b[i+1]) with useful work
 * u[i] <= its length, spread evenly; cum[i] = sum of u before slot i.
 * Returns -1 when the timeline is shorter than w. */
static double useful_at(const uint64_t *b, const double *u, const double *cum, long n, double t)
{
    /* F(t): useful work from b[0] to t, for b[0] <= t <= b[n]. */
    long lo = 0, hi = n; /* find the slot i with b[i] <= t < b[i+1] */
    if (t >= (double)b[n])
        return cum[n];
    while (hi - lo > 1) {
        long mid = (lo + hi) / 2;
        if ((double)b[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    double d = (double)(b[lo + 1] - b[lo]);
    double f = d > 0 ? (t - (double)b[lo]) / d : 1.0;
    if (f < 0)
        f = 0;
    return cum[lo] + u[lo] * f;
}

static double mmu(const uint64_t *b, const double *u, const double *cum, long n, double w)
{
    double t0 = (double)b[0], tn = (double)b[n];
    if (n < 1 || tn - t0 < w)
        return -1;
    double best = 1.0;
    for (long i = 0; i <= n; i++) {
        double ts[2] = {(double)b[i], (double)b[i] - w}; /* window starts or ends at b[i] */
        for (int k = 0; k < 2; k++) {
            double t = ts[k];
            if (t < t0 || t + w > tn)
                continue;
            double x = (useful_at(b, u, cum, n, t + w) - useful_at(b, u, cum, n, t)) / w;
            if (x < best)
                best = x;
        }
    }
    return best < 0 ? 0 : best;
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
        TERN_STORE(&table[i], new_obj(bk_rand(&rng), &bytes));
    uint64_t t_built = bk_now_ns();
    bk_pause_poll();

    long steps = (nobj * replace_pct / 100 + batch - 1) / batch;
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)steps);
    uint64_t *start = malloc(sizeof(uint64_t) * (size_t)(steps + 1));
    double *useful = malloc(sizeof(double) * (size_t)(steps + 1));
    double *cum = malloc(sizeof(double) * (size_t)(steps + 1));
    if (!lat || !start || !useful || !cum) {
        fprintf(stderr, "pause: no memory for %ld samples\n", steps);
        return 3;
    }
    for (long s = 0; s < steps; s++) {
        uint64_t a = bk_now_ns();
        start[s] = a;
        for (long k = 0; k < batch; k++) {
            uint64_t r = bk_rand(&rng);
            long i = (long)((r >> 16) % (uint64_t)nobj);
            void *old = table[i];
            TERN_STORE(&table[i], new_obj(r, &bytes));
            DISCARD(old);
        }
        lat[s] = bk_now_ns() - a;
        bk_pause_poll();
    }
    uint64_t t1 = bk_now_ns();
    start[steps] = t1;

    /* Mutator utilisation (see the top of this file). */
    for (long s = 0; s < steps; s++)
        useful[s] = (double)(start[s + 1] - start[s]);
    memcpy(cum, useful, sizeof(double) * (size_t)steps);
    qsort(cum, (size_t)steps, sizeof(double), cmp_double);
    double typical = cum[(steps - 1) / 2];
    cum[0] = 0;
    for (long s = 0; s < steps; s++) {
        if (useful[s] > typical)
            useful[s] = typical;
        cum[s + 1] = cum[s] + useful[s];
    }
    static const int mmu_ms[] = {1, 2, 5, 10, 20, 50, 100, 200};
    double mmu_v[sizeof mmu_ms / sizeof mmu_ms[0]];
    for (unsigned k = 0; k < sizeof mmu_ms / sizeof mmu_ms[0]; k++)
        mmu_v[k] = mmu(start, useful, cum, steps, mmu_ms[k] * 1e6);

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
            fprintf(f, "step %llu %llu\n", (unsigned long long)lat[s],
                    (unsigned long long)(start[s] - t0));
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
    printf("RESULT replace_ms=%.3f typical_slot_us=%.3f utilisation=%.4f", (t1 - t_built) / 1e6,
           typical / 1e3, cum[steps] / (double)(t1 - start[0]));
    for (unsigned k = 0; k < sizeof mmu_ms / sizeof mmu_ms[0]; k++)
        if (mmu_v[k] >= 0)
            printf(" mmu_%dms=%.4f", mmu_ms[k], mmu_v[k]);
    printf("\n");
    bk_print_stats();
    free(lat);
    free(start);
    free(useful);
    free(cum);
#if !BK_IS_GC
    for (long i = 0; i < nobj; i++)
        FREE(table[i]);
    FREE(table);
#endif
    if (!ok)
        fprintf(stderr, "pause: live object corrupted\n");
    return ok ? 0 : 1;
}
