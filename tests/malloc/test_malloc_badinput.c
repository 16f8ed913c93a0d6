/* test_malloc_badinput.c — the drop-in malloc's part of the bad-input
 * catalogue (docs/bad-input.md).  Linked with libtern-malloc, like
 * test_malloc_contract: every allocation here is Tern's.  Each misuse gives
 * one report line (TERN_ABORT_ON_ERROR=0, the default) or an error value,
 * and the heap stays consistent. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common.h"
#include "../capture.h"

TestSuite(malloc_badinput, .init = cr_redirect_stderr, .timeout = 60);

static void *(*volatile p_malloc)(size_t) = malloc;
static void *(*volatile p_calloc)(size_t, size_t) = calloc;
static void *(*volatile p_realloc)(void *, size_t) = realloc;
static void (*volatile p_free)(void *) = free;
static void *(*volatile p_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*volatile p_memalign)(size_t, size_t) = memalign;
static void *(*volatile p_reallocarray)(void *, size_t, size_t) = reallocarray;

static int lines_with(const char *s, const char *needle)
{
    int n = 0;
    for (const char *q = s; (q = strstr(q, needle)); q++)
        n++;
    return n;
}

static void expect_report(const char *what)
{
    const char *out = take_stderr();
    int lines = 0;
    for (const char *q = out; *q; q++)
        lines += *q == '\n';
    cr_assert_eq(lines, 1, "want one report line, got:\n%s", out);
    cr_assert_eq(lines_with(out, what), 1, "want a '%s' report, got:\n%s", what, out);
}

static void expect_silence(void)
{
    const char *out = take_stderr();
    cr_assert_str_empty(out, "want no report, got:\n%s", out);
}

static void heap_ok(void)
{
    enum { N = 300 };
    char *keep[N];
    for (int i = 0; i < N; i++) {
        size_t n = 1 + (size_t)i * 53 % 5000;
        keep[i] = p_malloc(n);
        cr_assert_not_null(keep[i]);
        fill(keep[i], n, (uint32_t)i);
    }
    for (int i = 0; i < 2000; i++)
        p_free(p_malloc((size_t)i % 700 + 1));
    tern_collect();
    for (int i = 0; i < N; i++) {
        cr_assert(filled_ok(keep[i], 1 + (size_t)i * 53 % 5000, (uint32_t)i), "object %d damaged", i);
        p_free(keep[i]);
    }
    expect_silence();
}

Test(malloc_badinput, double_free)
{
    for (size_t n = 16; n <= (1u << 22); n *= 16) {
        char *p = p_malloc(n);
        p_free(p);
        expect_silence();
        p_free(p);
        expect_report("double free");
    }
    heap_ok();
}

Test(malloc_badinput, invalid_frees)
{
    int local;
    static int in_static;
    char *p = p_malloc(100), *big = p_malloc(100000);
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *bad[] = { &local, &in_static, m, p + 1, p + 16, big + 4096, (void *)(uintptr_t)0x1000 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p_free(bad[i]);
        expect_report("invalid free");
    }
    cr_assert_eq(malloc_usable_size(p) >= 100, 1, "p is still live");
    p_free(p);
    p_free(big);
    munmap(m, 4096);
    heap_ok();
}

Test(malloc_badinput, realloc_of_freed_interior_and_foreign)
{
    char *p = p_malloc(300);
    p_free(p);
    errno = 0;
    cr_assert_null(p_realloc(p, 600));
    expect_report("realloc of freed memory");
    char *q = p_malloc(300);
    memset(q, 7, 300);
    cr_assert_null(p_realloc(q + 8, 600));
    expect_report("invalid realloc");
    int local;
    cr_assert_null(p_realloc(&local, 600));
    expect_report("invalid realloc");
    cr_assert_eq(((unsigned char *)q)[299], 7);
    p_free(q);
    heap_ok();
}

Test(malloc_badinput, sizes_near_size_max)
{
    static const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 16, SIZE_MAX / 2 + 1, (size_t)1 << 62 };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        errno = 0;
        cr_assert_null(p_malloc(sizes[i]), "malloc(%zu)", sizes[i]);
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(valloc(sizes[i]), "valloc(%zu)", sizes[i]);
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(pvalloc(sizes[i]), "pvalloc(%zu)", sizes[i]);
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(p_aligned_alloc(64, sizes[i]), "aligned_alloc(64, %zu)", sizes[i]);
        cr_assert_eq(errno, ENOMEM);
        void *r = (void *)1;
        cr_assert_eq(posix_memalign(&r, 4096, sizes[i]), ENOMEM);
        cr_assert_eq(r, (void *)1);
    }
    char *p = p_malloc(10);
    strcpy(p, "keep");
    errno = 0;
    cr_assert_null(p_realloc(p, SIZE_MAX));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_str_eq(p, "keep");
    p_free(p);
    expect_silence();
    heap_ok();
}

Test(malloc_badinput, array_overflow)
{
    errno = 0;
    cr_assert_null(p_calloc(SIZE_MAX, 2));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(p_calloc((size_t)1 << 32, (size_t)1 << 32));
    cr_assert_eq(errno, ENOMEM);
    void *q = p_malloc(8);
    errno = 0;
    cr_assert_null(p_reallocarray(q, SIZE_MAX / 4, 8));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(malloc_usable_size(q) >= 8, 1, "q untouched");
    p_free(q);
    expect_silence();
    heap_ok();
}

Test(malloc_badinput, bad_alignments)
{
    void *r = (void *)1;
    static const size_t bad_pm[] = { 0, 1, 2, 3, 4, 12, 24, 48, 100, SIZE_MAX, (SIZE_MAX >> 1) + 2 };
    for (size_t i = 0; i < sizeof bad_pm / sizeof *bad_pm; i++) {
        cr_assert_eq(posix_memalign(&r, bad_pm[i], 16), EINVAL, "posix_memalign(%zu)", bad_pm[i]);
        cr_assert_eq(r, (void *)1, "*memptr untouched");
    }
    static const size_t bad_aa[] = { 0, 3, 24, 100, SIZE_MAX };
    for (size_t i = 0; i < sizeof bad_aa / sizeof *bad_aa; i++) {
        errno = 0;
        cr_assert_null(p_aligned_alloc(bad_aa[i], 16), "aligned_alloc(%zu)", bad_aa[i]);
        cr_assert_eq(errno, EINVAL);
    }
    /* memalign rounds a non-power-of-two up, as glibc; an impossible one fails */
    void *m = p_memalign(24, 10);
    cr_assert_not_null(m);
    cr_assert_eq((uintptr_t)m % 32, 0);
    p_free(m);
    errno = 0;
    cr_assert_null(p_memalign(SIZE_MAX, 1));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(p_memalign((size_t)1 << 62, 1));
    cr_assert_eq(errno, ENOMEM);
    expect_silence();
    heap_ok();
}

Test(malloc_badinput, usable_size_of_non_objects)
{
    int local;
    char *p = p_malloc(40);
    p_free(p);
    cr_assert_eq(malloc_usable_size(NULL), 0);
    cr_assert_eq(malloc_usable_size(&local), 0);
    cr_assert_eq(malloc_usable_size(p), 0, "freed");
    expect_silence();
}

/* The drop-in's own variables, malformed: one report naming it, default used. */
/* Run the helper program in `mode` with the environment prefix `envs`;
 * *err gets its stderr (a static buffer, valid until the next call).
 * Returns system()'s status. */
static int run_helper(const char *envs, const char *mode, const char **err)
{
    char cmd[1024], path[] = "/tmp/tern-helper.XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "env %s %s %s >/dev/null 2>%s", envs, MHELPER_PATH, mode, path);
    int st = system(cmd);
    FILE *f = fopen(path, "r");
    static char buf[65536];
    size_t k = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[k] = 0;
    if (f)
        fclose(f);
    unlink(path);
    *err = buf;
    return st;
}

Test(malloc_badinput, malformed_dropin_variables)
{
    static const char *const cases[][2] = {
        { "TERN_FREE", "" }, { "TERN_FREE", "yes" }, { "TERN_FREE", "IGNORE" },
        { "TERN_LEAKS", "on" }, { "TERN_LEAKS", "" }, { "TERN_ABORT_ON_ERROR", "2" },
        { "TERN_ABORT_ON_ERROR", "true" }, { "TERN_SCAN_MAPPINGS", "off" }, { "TERN_SCAN_MAPPINGS", "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char envs[256];
        snprintf(envs, sizeof envs, "%s='%s'", cases[i][0], cases[i][1]);
        const char *err;
        int st = run_helper(envs, "noleak", &err);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s=%s: exit %d\n%s", cases[i][0], cases[i][1], st, err);
        cr_assert_eq(lines_with(err, cases[i][0]), 1, "%s=%s: want one report, got:\n%s", cases[i][0],
                     cases[i][1], err);
        cr_assert_eq(lines_with(err, "using the default"), 1, "%s", err);
    }
}

/* TERN_BARRIER=explicit is a promise that every pointer store into the
 * heap goes through TERN_STORE; a program on the malloc shim cannot keep
 * it (its C library stores pointers with plain stores), so the shim
 * refuses it with one report and marks with the auto kind.  The threads
 * mode rewires pointer-bearing objects across threads while collecting. */
Test(malloc_badinput, explicit_barrier_refused_under_the_shim)
{
    const char *err;
    int st = run_helper("TERN_BARRIER=explicit TERN_STATS=1 TERN_GC=10", "threads", &err);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d\n%s", st, err);
    cr_assert_eq(lines_with(err, "TERN_BARRIER=explicit"), 1, "want one report, got:\n%s", err);
    cr_assert_eq(lines_with(err, "stats pid"), 1, "want the exit summary, got:\n%s", err);
    cr_assert_eq(lines_with(err, "barrier explicit"), 0, "the explicit kind ran:\n%s", err);
}
