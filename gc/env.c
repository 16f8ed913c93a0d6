/* env.c — reading the TERN_* environment variables.
 *
 * Each variable is read once, at start-up.  A value that does not parse
 * is reported once on stderr and the default is used; nothing aborts.
 * getenv does not allocate, so this is safe before the heap exists. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return false;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* "4194304", "4MiB", "512KiB", "1GiB" (also KB/MB/GB, K/M/G). */
static bool parse_size(const char *s, size_t *out) {
    /* digits first: strtoull would accept "-1" (as 2^64-1) and spaces */
    if (!s || *s < '0' || *s > '9') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno == ERANGE) return false;
    size_t mul = 1;
    if (*end) {
        static const struct { const char *suf; size_t mul; } sufs[] = {
            {"K", 1u << 10}, {"KB", 1u << 10}, {"KiB", 1u << 10}, {"M", 1u << 20}, {"MB", 1u << 20},
            {"MiB", 1u << 20}, {"G", 1u << 30}, {"GB", 1u << 30}, {"GiB", 1u << 30}};
        size_t i;
        for (i = 0; i < sizeof sufs / sizeof sufs[0]; i++)
            if (strcmp(end, sufs[i].suf) == 0) break;
        if (i == sizeof sufs / sizeof sufs[0]) return false;
        mul = sufs[i].mul;
    }
    if (v > SIZE_MAX / mul) return false;
    *out = (size_t)v * mul;
    return true;
}

void tern_env_bad(const char *name, const char *val, const char *expect) {
    /* at most 64 bytes of the value: a longer one used to overflow the log
     * line and lose its end (and the newline) */
    tern_log("tern: ignoring %s=%.64s%s (expected %s); using the default\n", name, val,
             strlen(val) > 64 ? "..." : "", expect);
}

void tern_env_load(struct tern_config *cfg) {
    const char *v;
    long n;
    if ((v = getenv("TERN_GC"))) {
        if (strcmp(v, "off") == 0) cfg->gc_percent = -1;
        else if (parse_int(v, 1, 1000000, &n)) cfg->gc_percent = (int)n;
        else tern_env_bad("TERN_GC", v, "a percentage >= 1, or off");
    }
    if ((v = getenv("TERN_MARKERS"))) {
        if (parse_int(v, 1, 64, &n)) cfg->markers = (int)n, cfg->markers_set = 1;
        else tern_env_bad("TERN_MARKERS", v, "1..64");
    }
    if ((v = getenv("TERN_TRACE"))) {
        if (parse_int(v, 0, 2, &n)) cfg->trace = (int)n;
        else tern_env_bad("TERN_TRACE", v, "0, 1 or 2");
    }
    if ((v = getenv("TERN_STATS"))) {
        if (parse_int(v, 0, 1, &n)) cfg->stats = (int)n;
        else tern_env_bad("TERN_STATS", v, "0 or 1");
    }
    if ((v = getenv("TERN_LOG_FILE"))) {
        if (*v) cfg->log_file = v;
        else tern_env_bad("TERN_LOG_FILE", v, "a file name");
    }
    if ((v = getenv("TERN_TRACE_FILE"))) {
        if (*v) cfg->trace_file = v;
        else tern_env_bad("TERN_TRACE_FILE", v, "a file name");
    }
    if ((v = getenv("TERN_DEBUG"))) {
        if (strcmp(v, "checkmark") == 0) cfg->checkmark = 1;
        else if (*v) tern_env_bad("TERN_DEBUG", v, "checkmark");
    }
    if ((v = getenv("TERN_BARRIER"))) {
        static const char *const kinds[] = {"auto", "uffd", "softdirty", "mprotect", "explicit", "stw"};
        unsigned k;
        for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
            if (strcmp(v, kinds[k]) == 0) break;
        if (k < sizeof kinds / sizeof kinds[0]) cfg->barrier = (int)k;
        else tern_env_bad("TERN_BARRIER", v, "auto, uffd, softdirty, mprotect, explicit or stw");
    }
    if ((v = getenv("TERN_MEMLIMIT"))) {
        size_t sz;
        if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0) cfg->memlimit = 0;
        else if (parse_size(v, &sz) && sz >= (1u << 20)) cfg->memlimit = sz;
        else tern_env_bad("TERN_MEMLIMIT", v, "a size >= 1MiB, e.g. 512MiB, or off");
    }
    if ((v = getenv("TERN_INITIAL_HEAP"))) {
        size_t sz;
        if (parse_size(v, &sz) && sz >= (256u << 10)) cfg->initial_heap = sz;
        else tern_env_bad("TERN_INITIAL_HEAP", v, "a size >= 256KiB, e.g. 4MiB");
    }
}
