/* test_trace.c — TERN_TRACE lines, the TERN_STATS exit summary,
 * TERN_LOG_FILE and the TERN_TRACE_FILE timeline, checked in fresh
 * processes of tests/tern_helper against the figures tern_get_stats gives. */
#include "common.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <regex.h>
#include <sys/stat.h>

#include "helper_run.h"

#ifndef CHECK_TIMELINE
#error "CHECK_TIMELINE must name tests/check_timeline.py"
#endif

TestSuite(trace, .timeout = 60);

/* One trace line, concurrent ("pause A+B ms") or stw ("pause A ms"). */
#define LINE_RE                                                                       \
    "^tern: gc ([0-9]+) @([0-9]+\\.[0-9]{3})s ([a-z]+): pause ([0-9]+\\.[0-9]{3})"      \
    "(\\+([0-9]+\\.[0-9]{3}))? ms, .*heap [0-9.]+ -> [0-9.]+ -> [0-9.]+ MiB, goal [^,]+, " \
    "[0-9]+ threads, [0-9+]+ markers \\([a-z ]+\\), gc cpu ([0-9]+\\.[0-9])%$"

struct parsed {
    int lines;          /* lines starting "tern: gc " that are not detail, memory or class lines */
    int npause;
    double pause_ms_sum, pause_ms_max;
    char kind[16];
};

static double field(const char *line, const regmatch_t *m)
{
    return m->rm_so < 0 ? 0 : strtod(line + m->rm_so, NULL);
}

/* Parses every cycle line of `text`; fails the test on a line that does
 * not match LINE_RE or on cycle numbers out of order. */
static void parse_lines(const char *text, struct parsed *p)
{
    regex_t re;
    cr_assert_eq(regcomp(&re, LINE_RE, REG_EXTENDED), 0);
    memset(p, 0, sizeof *p);
    char line[1024];
    for (const char *s = text; *s;) {
        const char *eol = strchr(s, '\n');
        size_t len = eol ? (size_t)(eol - s) : strlen(s);
        if (len < sizeof line && strncmp(s, "tern: gc ", 9) == 0 && !memmem(s, len, " detail: ", 9) &&
            !memmem(s, len, " memory: ", 9) && !memmem(s, len, " classes (", 10)) {
            memcpy(line, s, len);
            line[len] = '\0';
            regmatch_t m[8];
            cr_assert_eq(regexec(&re, line, 8, m, 0), 0, "trace line does not parse:\n%s", line);
            p->lines++;
            cr_assert_eq(strtol(line + m[1].rm_so, NULL, 10), p->lines, "cycle numbers out of order:\n%s", line);
            double pct = field(line, &m[7]);
            cr_assert(pct >= 0 && pct <= 100, "gc cpu %% out of range:\n%s", line);
            snprintf(p->kind, sizeof p->kind, "%.*s", (int)(m[3].rm_eo - m[3].rm_so), line + m[3].rm_so);
            double a = field(line, &m[4]);
            p->npause++;
            p->pause_ms_sum += a;
            if (a > p->pause_ms_max) p->pause_ms_max = a;
            if (m[6].rm_so >= 0) {
                double b = field(line, &m[6]);
                p->npause++;
                p->pause_ms_sum += b;
                if (b > p->pause_ms_max) p->pause_ms_max = b;
            }
        }
        if (!eol) break;
        s = eol + 1;
    }
    regfree(&re);
}

static void check_against_stats(const struct run *r, const struct parsed *p)
{
    long long cycles = val(r, "cycles"), pauses = val(r, "pauses");
    cr_assert_gt(cycles, 0, "no cycle ran");
    cr_assert_eq(p->lines, cycles, "%d trace lines, %lld cycles:\n%.3000s", p->lines, cycles, r->err);
    cr_assert_eq(p->npause, pauses, "%d pauses in the lines, %lld in the stats", p->npause, pauses);
    double total = val(r, "total_pause_ns") / 1e6, max = val(r, "max_pause_ns") / 1e6;
    /* each figure is rounded to a microsecond */
    cr_assert(p->pause_ms_sum > total - 0.001 * pauses - 1e-9 && p->pause_ms_sum < total + 0.001 * pauses + 1e-9,
              "pauses add up to %.3f ms, stats say %.6f ms", p->pause_ms_sum, total);
    cr_assert(p->pause_ms_max > max - 0.001 && p->pause_ms_max < max + 0.001,
              "longest pause %.3f ms, stats say %.6f ms", p->pause_ms_max, max);
    long long p50 = val(r, "pause_p50_ns"), p95 = val(r, "pause_p95_ns"), p99 = val(r, "pause_p99_ns");
    cr_assert(p50 > 0 && p50 <= p95 && p95 <= p99 && p99 <= val(r, "max_pause_ns"),
              "percentiles out of order: %lld %lld %lld max %lld", p50, p95, p99, val(r, "max_pause_ns"));
    cr_assert_geq(val(r, "peak_mapped_bytes"), val(r, "mapped_bytes"));
    cr_assert_gt(val(r, "peak_rss_bytes"), 0);
    cr_assert_gt(val(r, "process_cpu_ns"), 0);
    cr_assert_geq(val(r, "process_cpu_ns"), val(r, "gc_cpu_ns") / 2, "gc cpu beyond the process's");
}

/* Runs the helper ("trace" mode) with env, parses its trace lines into *p
 * and checks them against its stats. */
static void run_traced(struct run *r, const char *const *env, struct parsed *p)
{
    run_helper(r, "trace", env);
    parse_lines(r->err, p);
    check_against_stats(r, p);
}

Test(trace, lines_parse_and_agree_with_stats)
{
    static struct run r;
    const char *env[] = { "TERN_TRACE=1", NULL };
    struct parsed p;
    run_traced(&r, env, &p);
    cr_assert_eq(count_lines(r.err), p.lines, "unexpected output besides the trace lines:\n%.3000s", r.err);
}

Test(trace, stw_lines_parse_and_agree_with_stats)
{
    static struct run r;
    const char *env[] = { "TERN_TRACE=1", "TERN_BARRIER=stw", NULL };
    struct parsed p;
    run_traced(&r, env, &p);
    cr_assert_str_eq(p.kind, "stw");
}

Test(trace, detail_lines)
{
    static struct run r;
    const char *env[] = { "TERN_TRACE=2", NULL };
    struct parsed p;
    run_traced(&r, env, &p);
    cr_assert_eq(count_matching(r.err, " detail: ", 0), p.lines, "one detail line per cycle:\n%.3000s", r.err);
    cr_assert_eq(count_matching(r.err, "KiB stacks, ", 0), p.lines, "roots in every detail line");
    cr_assert_eq(count_matching(r.err, " MiB freed", 0), p.lines, "sweep figures in every detail line");
    cr_assert_eq(count_matching(r.err, " memory: mapped ", 0), p.lines, "one memory line per cycle");
    cr_assert_eq(count_matching(r.err, " classes (size:used/free): ", 0), p.lines, "one class line per cycle");
}

static int summary_count(const char *s) { return count_matching(s, "tern: stats pid ", 1); }

Test(trace, summary_once_at_exit)
{
    static struct run r;
    const char *env[] = { "TERN_STATS=1", NULL };
    run_helper(&r, "trace", env);
    cr_assert_eq(summary_count(r.err), 1, "want one summary:\n%.3000s", r.err);
    cr_assert_eq(count_matching(r.err, "tern: stats pauses ", 1), 1);
    cr_assert_eq(count_matching(r.err, "tern: stats heap: peak mapped ", 1), 1);
    cr_assert_eq(count_matching(r.err, "tern: stats memory: resident ", 1), 1);
    cr_assert_eq(count_lines(r.err), 4, "the summary is four lines:\n%.3000s", r.err);
    char want[64];
    snprintf(want, sizeof want, ": %lld cycles, ", val(&r, "cycles"));
    cr_assert_eq(count_matching(r.err, want, 0), 1, "summary cycles differ from the stats (%s):\n%s", want, r.err);
}

Test(trace, summary_once_when_a_thread_calls_exit)
{
    static struct run r;
    const char *env[] = { "TERN_STATS=1", "TERN_TRACE=1", NULL };
    run_helper(&r, "exit-thread", env);
    cr_assert_eq(summary_count(r.err), 1, "want one summary:\n%.3000s", r.err);
    struct parsed p;
    parse_lines(r.err, &p);
    cr_assert_eq(p.lines, val(&r, "cycles"));
}

Test(trace, no_summary_by_default)
{
    static struct run r;
    run_helper(&r, "trace", NULL);
    cr_assert_str_empty(r.err, "nothing set: stderr must be empty, got:\n%s", r.err);
}

Test(trace, invalid_values_reported_once_and_ignored)
{
    static struct run r;
    const char *env[] = { "TERN_STATS=yes", "TERN_TRACE=7", "TERN_LOG_FILE=/nonexistent-dir/tern.log",
                          "TERN_TRACE_FILE=/nonexistent-dir/tern.json", NULL };
    run_helper(&r, "trace", env);
    cr_assert_eq(count_matching(r.err, "tern: ignoring TERN_STATS=yes", 1), 1, "%s", r.err);
    cr_assert_eq(count_matching(r.err, "tern: ignoring TERN_TRACE=7", 1), 1, "%s", r.err);
    cr_assert_eq(count_matching(r.err, "tern: ignoring TERN_LOG_FILE=/nonexistent-dir/tern.log", 1), 1, "%s", r.err);
    cr_assert_eq(count_matching(r.err, "tern: ignoring TERN_TRACE_FILE=/nonexistent-dir/tern.json", 1), 1, "%s",
                 r.err);
    cr_assert_eq(count_lines(r.err), 4, "only the four reports (defaults: no trace, no summary):\n%s", r.err);
}

static void temp_path(char *buf, size_t n, const char *suffix)
{
    snprintf(buf, n, "/tmp/tern-trace-test-XXXXXX");
    int fd = mkstemp(buf);
    cr_assert_geq(fd, 0);
    close(fd);
    unlink(buf);
    strncat(buf, suffix, n - strlen(buf) - 1);
}

static void read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot open %s", path);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

Test(trace, log_file_receives_lines_and_summary)
{
    static struct run r;
    static char path[256], envv[300], text[64 * 1024];
    temp_path(path, sizeof path, ".log");
    snprintf(envv, sizeof envv, "TERN_LOG_FILE=%s", path);
    const char *env[] = { "TERN_TRACE=1", "TERN_STATS=1", envv, NULL };
    run_helper(&r, "trace", env);
    read_file(path, text, sizeof text);
    unlink(path);
    cr_assert_str_empty(r.err, "with TERN_LOG_FILE nothing goes to stderr, got:\n%s", r.err);
    struct parsed p;
    parse_lines(text, &p);
    check_against_stats(&r, &p);
    cr_assert_eq(summary_count(text), 1, "%s", text);
    cr_assert_eq(count_lines(text), p.lines + 4, "lines and summary only:\n%.3000s", text);
}

static void timeline_case(const char *barrier)
{
    static struct run r;
    static char path[256], envv[300], benv[64], cmd[1024];
    temp_path(path, sizeof path, ".json");
    snprintf(envv, sizeof envv, "TERN_TRACE_FILE=%s", path);
    snprintf(benv, sizeof benv, "TERN_BARRIER=%s", barrier);
    const char *env[] = { envv, benv, NULL };
    run_helper(&r, "trace", env);
    cr_assert_str_empty(r.err, "stderr:\n%s", r.err);
    if (system("command -v python3 >/dev/null 2>&1") != 0) {
        unlink(path);
        cr_skip_test("python3 not installed");
    }
    snprintf(cmd, sizeof cmd, "python3 -m json.tool '%s' >/dev/null && python3 '%s' '%s' %lld %lld", path,
             CHECK_TIMELINE, path, val(&r, "pauses"), val(&r, "total_pause_ns"));
    int rc = system(cmd);
    if (rc == 0) unlink(path);
    cr_assert_eq(rc, 0, "timeline %s failed the check (kept for a look)", path);
}

Test(trace, timeline_is_valid_json) { timeline_case("auto"); }
Test(trace, timeline_is_valid_json_stw) { timeline_case("stw"); }
