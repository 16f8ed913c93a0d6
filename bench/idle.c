/* idle.c — footprint after a burst of garbage.
 *
 *   idle BURST_MIB WINDOW_MIB IDLE_MS SAMPLE_MS [SAMPLES_FILE]
 *   e.g. idle 1024 64 5000 100 rss.txt
 *
 * Allocates BURST_MIB MiB in all (objects of 16..1024 bytes), keeping the
 * most recent WINDOW_MIB MiB or so alive in a ring and dropping (GC) or
 * freeing (malloc) the rest.  Then drops/frees the ring too and sleeps
 * IDLE_MS ms, sampling the resident set size every SAMPLE_MS ms.  No
 * explicit collection is requested: what the allocator gives back while the
 * program idles is what is measured.  RSS comes from /proc/self/statm.
 * SAMPLES_FILE gets "T_MS RSS_KIB PHASE" lines (phase: init, burst, idle).
 * The RESULT line also has rss_idle_Ns_kib for N = 1, 3, 5: the first idle
 * sample taken N s or more after the idle phase began (printed only for the
 * N that fit in IDLE_MS).
 */
#include "backend.h"

struct sample {
    double t_ms;
    uint64_t rss;
    const char *phase;
};

static struct sample samples[4096];
static int nsamples;
static uint64_t t_start;

static void sample(const char *phase)
{
    if (nsamples < (int)(sizeof samples / sizeof samples[0])) {
        samples[nsamples].t_ms = (bk_now_ns() - t_start) / 1e6;
        samples[nsamples].rss = bk_rss_bytes();
        samples[nsamples].phase = phase;
        nsamples++;
    }
}

int main(int argc, char **argv)
{
    t_start = bk_now_ns();
    BK_INIT();
    long burst_mib = bk_arg(argc, argv, 1, 1024);
    long window_mib = bk_arg(argc, argv, 2, 64);
    long idle_ms = bk_arg(argc, argv, 3, 5000);
    long sample_ms = bk_arg(argc, argv, 4, 100);
    const char *out = argc > 5 ? argv[5] : NULL;
    if (burst_mib < 1 || window_mib < 1 || idle_ms < 0 || sample_ms < 1) {
        fprintf(stderr, "usage: idle BURST_MIB WINDOW_MIB IDLE_MS SAMPLE_MS [FILE]\n");
        return 2;
    }
    sample("init");
    uint64_t rss_init = samples[0].rss;

    long window = window_mib * 1024 * 1024 / 520; /* mean size 520 */
    void **ring = XALLOC(sizeof(void *) * (size_t)window);
    memset(ring, 0, sizeof(void *) * (size_t)window);
    uint64_t rng = 5, target = (uint64_t)burst_mib << 20, done = 0;
    uint64_t next_sample = 16u << 20;
    long w = 0, count = 0;
    int ok = 1;
    uint64_t b0 = bk_now_ns();
    while (done < target) {
        uint64_t r = bk_rand(&rng);
        size_t sz = 16 + (size_t)(r % 1009);
        unsigned char *p = (r >> 33) & 1 ? XALLOC(sz) : XALLOC_ATOMIC(sz);
        p[0] = (unsigned char)(1 + (sz & 0x7f)); /* never 0 */
        p[sz - 1] = p[0];
        if (ring[w]) {
            unsigned char *q = ring[w];
            ok &= q[0] != 0;
            DISCARD(q);
        }
        ring[w] = p;
        if (++w == window)
            w = 0;
        done += sz;
        count++;
        if (done >= next_sample) {
            sample("burst");
            next_sample += 16u << 20;
        }
    }
    for (long i = 0; i < window; i++) {
        DISCARD(ring[i]);
        ring[i] = NULL;
    }
    DISCARD(ring);
    ring = NULL;
    uint64_t b1 = bk_now_ns();
    sample("burst");
    uint64_t rss_end = samples[nsamples - 1].rss;

    struct timespec ts = {sample_ms / 1000, (sample_ms % 1000) * 1000000L};
    uint64_t idle0 = bk_now_ns();
    double idle0_ms = (idle0 - t_start) / 1e6;
    while ((long)((bk_now_ns() - idle0) / 1000000) < idle_ms) {
        nanosleep(&ts, NULL);
        sample("idle");
    }
    uint64_t rss_peak = 0;
    for (int i = 0; i < nsamples; i++)
        if (samples[i].rss > rss_peak)
            rss_peak = samples[i].rss;
    uint64_t rss_final = samples[nsamples - 1].rss;
    if (out) {
        FILE *f = fopen(out, "w");
        if (!f) {
            perror(out);
            return 3;
        }
        for (int i = 0; i < nsamples; i++)
            fprintf(f, "%.1f %llu %s\n", samples[i].t_ms,
                    (unsigned long long)(samples[i].rss >> 10), samples[i].phase);
        fclose(f);
    }
    char at[160] = "";
    static const int secs[] = {1, 3, 5};
    for (size_t k = 0; k < sizeof secs / sizeof secs[0]; k++) {
        if (secs[k] * 1000L > idle_ms)
            break;
        for (int i = 0; i < nsamples; i++)
            if (strcmp(samples[i].phase, "idle") == 0 &&
                samples[i].t_ms - idle0_ms >= secs[k] * 1000.0) {
                size_t n = strlen(at);
                snprintf(at + n, sizeof at - n, " rss_idle_%ds_kib=%llu", secs[k],
                         (unsigned long long)(samples[i].rss >> 10));
                break;
            }
    }
    printf("RESULT ok=%d burst_ms=%.3f allocs=%ld burst_bytes=%llu "
           "rss_init_kib=%llu rss_peak_sampled_kib=%llu rss_end_burst_kib=%llu "
           "rss_idle_final_kib=%llu samples=%d%s\n", ok, (b1 - b0) / 1e6, count,
           (unsigned long long)done, (unsigned long long)(rss_init >> 10),
           (unsigned long long)(rss_peak >> 10),
           (unsigned long long)(rss_end >> 10),
           (unsigned long long)(rss_final >> 10), nsamples, at);
    bk_print_stats();
    return ok ? 0 : 1;
}
