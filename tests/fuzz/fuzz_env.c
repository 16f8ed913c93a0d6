/* fuzz_env.c — libFuzzer target: parsing of every TERN_* variable of the
 * core (gc/env.c, compiled into this target).  The input is split at NUL
 * bytes into values for the variables in turn (an empty piece: unset).
 * Whatever the values, each variable must end up either at its default
 * or at a value in its documented range, a rejected value must be reported
 * exactly once, and nothing may crash.  (The drop-in's two-valued
 * variables are covered by tests/malloc/test_malloc_badinput.c.) */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gc/internal.h"

static int reports;
void tern_log(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n <= 0 || (size_t)n >= sizeof buf || buf[n - 1] != '\n')
        abort(); /* a report must be one whole line */
    reports++;
}

static const char *const vars[] = { "TERN_GC", "TERN_MARKERS", "TERN_TRACE", "TERN_STATS", "TERN_LOG_FILE",
                                    "TERN_TRACE_FILE", "TERN_DEBUG", "TERN_BARRIER", "TERN_INITIAL_HEAP" };
#define NV (sizeof vars / sizeof *vars)

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t len);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t len)
{
    char buf[4096];
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, d, len);
    buf[len] = 0;
    char *piece = buf, *end = buf + len;
    for (size_t v = 0; v < NV; v++) {
        if (piece <= end && *piece) {
            setenv(vars[v], piece, 1);
        } else {
            unsetenv(vars[v]);
        }
        piece += strlen(piece) + 1;
    }
    struct tern_config def = { .gc_percent = 100, .markers = 2, .initial_heap = 4u << 20 }, c = def;
    reports = 0;
    tern_env_load(&c);
    if (!(c.gc_percent == -1 || (c.gc_percent >= 1 && c.gc_percent <= 1000000)))
        abort();
    if (c.markers < 1 || c.markers > 64 || c.trace < 0 || c.trace > 2 || c.stats < 0 || c.stats > 1)
        abort();
    if (c.barrier < 0 || c.barrier > TERN_BARRIER_STW || c.checkmark < 0 || c.checkmark > 1)
        abort();
    if (c.initial_heap < (256u << 10))
        abort();
    if (c.log_file && !*c.log_file)
        abort();
    /* Each variable alone: rejected (one report, the default kept) or
     * taken (no report); together, the reports add up. */
    int all_reports = reports, sum = 0;
    static char copy[NV][4096];
    const char *val[NV];
    for (size_t v = 0; v < NV; v++) {
        const char *e = getenv(vars[v]);
        val[v] = e ? strcpy(copy[v], e) : NULL;
    }
    for (size_t v = 0; v < NV; v++)
        unsetenv(vars[v]);
    for (size_t v = 0; v < NV; v++) {
        if (!val[v])
            continue;
        setenv(vars[v], val[v], 1);
        struct tern_config one = def;
        reports = 0;
        tern_env_load(&one);
        unsetenv(vars[v]);
        if (reports > 1 || (reports == 1 && memcmp(&one, &def, sizeof one) != 0))
            abort();
        sum += reports;
    }
    if (sum != all_reports)
        abort();
    return 0;
}
