/* test_env.c — TERN_GC, TERN_MARKERS, TERN_TRACE and tern_init options,
 * checked in fresh processes of tests/tern_helper. */
#include "common.h"

#include <criterion/criterion.h>

#include "helper_run.h"

TestSuite(env, .timeout = 30);

static struct run defaults; /* a run with no TERN_* variable */

static void run_defaults(void)
{
    run_helper(&defaults, "stats", NULL);
}

Test(env, defaults)
{
    run_defaults();
    cr_assert_str_empty(defaults.err, "no variable set: stderr must be empty, got:\n%s", defaults.err);
    cr_assert_gt(val(&defaults, "cycles_alloc"), 0, "64 MiB of garbage ran no collection");
    /* tern_collect runs one cycle that starts after the call; a background
     * cycle still running when it was called may end first */
    cr_assert_geq(val(&defaults, "final_cycles"), val(&defaults, "cycles_alloc") + 1);
    cr_assert_leq(val(&defaults, "final_cycles"), val(&defaults, "cycles_alloc") + 2);
    cr_assert_gt(val(&defaults, "final_gc_percent"), 0);
    cr_assert_geq(val(&defaults, "final_markers"), 1);
}

Test(env, gc_bad_value_reported_once_and_default_used)
{
    run_defaults();
    static const char *const e[] = { "TERN_GC=abc", NULL };
    struct run r;
    run_helper(&r, "stats", e);
    cr_assert_eq(count_lines(r.err), 1, "want one report line, got:\n%s", r.err);
    cr_assert_eq(count_matching(r.err, "TERN_GC", 0), 1, "the report must name TERN_GC:\n%s", r.err);
    cr_assert_eq(val(&r, "final_gc_percent"), val(&defaults, "final_gc_percent"),
                 "a bad TERN_GC must leave the default");
    cr_assert_gt(val(&r, "cycles_alloc"), 0);
}

Test(env, gc_off_runs_no_cycles_on_allocation)
{
    static const char *const e[] = { "TERN_GC=off", NULL };
    struct run r;
    run_helper(&r, "stats", e);
    cr_assert_str_empty(r.err, "stderr:\n%s", r.err);
    cr_assert_eq(val(&r, "cycles_alloc"), 0, "TERN_GC=off: allocation ran collections");
    cr_assert_eq(val(&r, "final_cycles"), 1, "tern_collect must still run one cycle");
    cr_assert_eq(val(&r, "final_gc_percent"), 0, "gc_percent is 0 when off");
}

Test(env, gc_percent_values)
{
    static const char *const e50[] = { "TERN_GC=50", NULL };
    static const char *const e300[] = { "TERN_GC=300", NULL };
    struct run r;
    run_helper(&r, "stats", e50);
    cr_assert_str_empty(r.err, "stderr:\n%s", r.err);
    cr_assert_eq(val(&r, "final_gc_percent"), 50);
    cr_assert_gt(val(&r, "cycles_alloc"), 0);
    run_helper(&r, "stats", e300);
    cr_assert_str_empty(r.err, "stderr:\n%s", r.err);
    cr_assert_eq(val(&r, "final_gc_percent"), 300);
}

Test(env, trace_prints_one_line_per_cycle)
{
    static const char *const e[] = { "TERN_TRACE=1", NULL };
    struct run r;
    run_helper(&r, "stats", e);
    long long cycles = val(&r, "final_cycles");
    cr_assert_gt(cycles, 1);
    cr_assert_eq(count_matching(r.err, "tern: gc", 1), cycles,
                 "%lld cycles but %d 'tern: gc' lines:\n%.3000s", cycles,
                 count_matching(r.err, "tern: gc", 1), r.err);
    cr_assert_eq(count_lines(r.err), cycles, "unexpected extra output:\n%.3000s", r.err);
}

Test(env, trace_bad_value_reported_once)
{
    static const char *const e[] = { "TERN_TRACE=abc", NULL };
    struct run r;
    run_helper(&r, "stats", e);
    cr_assert_eq(count_lines(r.err), 1, "want one report line, got:\n%s", r.err);
    cr_assert_eq(count_matching(r.err, "TERN_TRACE", 0), 1, "the report must name TERN_TRACE:\n%s", r.err);
    cr_assert_eq(count_matching(r.err, "tern: gc", 1), 0, "default trace is off");
}

Test(env, markers_value_and_bad_value)
{
    run_defaults();
    static const char *const one[] = { "TERN_MARKERS=1", NULL };
    static const char *const bad[] = { "TERN_MARKERS=xyz", NULL };
    struct run r;
    run_helper(&r, "stats", one);
    cr_assert_str_empty(r.err, "stderr:\n%s", r.err);
    cr_assert_eq(val(&r, "final_markers"), 1, "TERN_MARKERS=1: the last cycle used %lld markers",
                 val(&r, "final_markers"));
    run_helper(&r, "stats", bad);
    cr_assert_eq(count_lines(r.err), 1, "want one report line, got:\n%s", r.err);
    cr_assert_eq(count_matching(r.err, "TERN_MARKERS", 0), 1, "the report must name TERN_MARKERS:\n%s", r.err);
    cr_assert_eq(val(&r, "final_markers"), val(&defaults, "final_markers"));
}

Test(env, several_bad_values_each_reported_once)
{
    static const char *const e[] = { "TERN_GC=abc", "TERN_MARKERS=xyz", "TERN_TRACE=what", NULL };
    struct run r;
    run_helper(&r, "stats", e);
    cr_assert_eq(count_lines(r.err), 3, "want three report lines, got:\n%s", r.err);
    cr_assert_eq(count_matching(r.err, "TERN_GC", 0), 1, "%s", r.err);
    cr_assert_eq(count_matching(r.err, "TERN_MARKERS", 0), 1, "%s", r.err);
    cr_assert_eq(count_matching(r.err, "TERN_TRACE", 0), 1, "%s", r.err);
}

/* ---- tern_init -------------------------------------------------------------- */

Test(env, init_options_win_over_environment)
{
    static const char *const e[] = { "TERN_GC=off", "TERN_MARKERS=2", NULL };
    struct run r;
    run_helper(&r, "init", e);
    cr_assert_str_empty(r.err, "stderr:\n%s", r.err);
    cr_assert_eq(val(&r, "init1"), TERN_OK, "first tern_init must succeed");
    cr_assert_eq(val(&r, "init2"), TERN_EEXIST, "second tern_init must say TERN_EEXIST");
    cr_assert_eq(val(&r, "init3"), TERN_EEXIST, "tern_init(NULL) after init must say TERN_EEXIST");
    cr_assert_eq(val(&r, "final_gc_percent"), 37, "options.gc_percent must override TERN_GC");
    cr_assert_eq(val(&r, "final_markers"), 1, "options.markers must override TERN_MARKERS");
    cr_assert_gt(val(&r, "cycles_alloc"), 0, "gc_percent 37 must collect during 64 MiB of garbage");
}

Test(env, init_negative_gc_percent_is_off)
{
    struct run r;
    run_helper(&r, "init-off", NULL);
    cr_assert_str_empty(r.err, "stderr:\n%s", r.err);
    cr_assert_eq(val(&r, "init1"), TERN_OK);
    cr_assert_eq(val(&r, "cycles_alloc"), 0);
    cr_assert_eq(val(&r, "final_cycles"), 1);
    cr_assert_eq(val(&r, "final_gc_percent"), 0);
}

Test(env, init_initial_heap)
{
    struct run r;
    run_helper(&r, "init-heap", NULL);
    cr_assert_str_empty(r.err, "stderr:\n%s", r.err);
    cr_assert_eq(val(&r, "init1"), TERN_OK);
    cr_assert_eq(val(&r, "cycles_a"), 0, "a collection ran before initial_heap (64 MiB) was in use");
    cr_assert_gt(val(&r, "cycles_b"), 0, "no collection after 192 MiB of garbage");
}
