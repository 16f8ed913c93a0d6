/* helper_run.h — running tests/tern_helper in a fresh process with chosen
 * TERN_* variables, and reading back what it printed (test_env, test_trace).
 * Include after common.h and criterion.h. */
#ifndef TERN_TESTS_HELPER_RUN_H
#define TERN_TESTS_HELPER_RUN_H

#include <sys/wait.h>

#ifndef HELPER_PATH
#error "HELPER_PATH must name tests/tern_helper"
#endif

extern char **environ;

struct run {
    int status;
    char out[8192];
    char err[64 * 1024];
};

static void slurp(FILE *f, char *buf, size_t cap)
{
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs the helper in `mode` with the environment of this process less any
 * TERN_* variable, plus `extra` (NULL-terminated "NAME=value" strings). */
static UNUSED void run_helper(struct run *r, const char *mode, const char *const *extra)
{
    const char *envp[512];
    size_t n = 0;
    for (char **e = environ; *e && n < 400; e++)
        if (strncmp(*e, "TERN_", 5) != 0)
            envp[n++] = *e;
    for (; extra && *extra; extra++)
        envp[n++] = *extra;
    envp[n] = NULL;

    FILE *out = tmpfile(), *err = tmpfile();
    cr_assert(out && err, "tmpfile failed");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork failed");
    if (pid == 0) {
        dup2(fileno(out), 1);
        dup2(fileno(err), 2);
        char *argv[] = { (char *)HELPER_PATH, (char *)mode, NULL };
        execve(HELPER_PATH, argv, (char *const *)envp);
        _exit(127);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    slurp(out, r->out, sizeof r->out);
    slurp(err, r->err, sizeof r->err);
    cr_assert(WIFEXITED(st), "helper (%s) killed by signal %d; stderr:\n%.2000s", mode,
              WIFSIGNALED(st) ? WTERMSIG(st) : 0, r->err);
    r->status = WEXITSTATUS(st);
    cr_assert_neq(r->status, 127, "could not exec %s", HELPER_PATH);
    cr_assert_eq(r->status, 0, "helper (%s) exited with %d; stderr:\n%.2000s", mode, r->status, r->err);
}

/* The integer after "key=" in the helper's output. */
static UNUSED long long val(const struct run *r, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%s=", key);
    const char *s = r->out;
    size_t kl = strlen(pat);
    while ((s = strstr(s, pat)) != NULL) {
        if (s == r->out || s[-1] == ' ' || s[-1] == '\n')
            return strtoll(s + kl, NULL, 10);
        s += kl;
    }
    cr_assert_fail("no %s in helper output:\n%s", key, r->out);
    return 0;
}

static UNUSED int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        if (*s == '\n')
            n++;
    return n;
}

/* Lines that contain `needle` (prefix_only: that start with it). */
static UNUSED int count_matching(const char *s, const char *needle, int prefix_only)
{
    int n = 0;
    size_t nl = strlen(needle);
    while (*s) {
        const char *eol = strchr(s, '\n');
        size_t len = eol ? (size_t)(eol - s) : strlen(s);
        if (prefix_only) {
            if (len >= nl && memcmp(s, needle, nl) == 0)
                n++;
        } else {
            for (size_t i = 0; i + nl <= len; i++)
                if (memcmp(s + i, needle, nl) == 0) {
                    n++;
                    break;
                }
        }
        if (!eol)
            break;
        s = eol + 1;
    }
    return n;
}

#endif /* TERN_TESTS_HELPER_RUN_H */
