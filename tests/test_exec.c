/* test_exec.c — exec while cycles run: the new program must not inherit a
 * pending stop signal (it has no handler for it and would die of it). */
#include "common.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sys/wait.h>

static volatile int stop;

static void *churn_thread(void *arg)
{
    (void)arg;
    while (!stop) {
        char *p = tern_malloc(256);
        if (p) p[0] = 1;
    }
    return NULL;
}

/* In a child: cycles back to back on another thread, then exec `true`
 * through one of the exec calls.  Returns the child's wait status. */
static int exec_under_cycles(int how, int delay_us)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        pthread_t th;
        if (pthread_create(&th, NULL, churn_thread, NULL) != 0) _exit(90);
        for (int i = 0; i < 200; i++) tern_malloc(4096); /* the main thread allocates too */
        usleep((useconds_t)delay_us);
        char *const argv[] = {(char *)"true", NULL};
        switch (how) {
        case 0: execv("/bin/true", argv); break;
        case 1: execvp("true", argv); break;
        case 2: execl("/bin/true", "true", (char *)NULL); break;
        case 3: execlp("true", "true", (char *)NULL); break;
        default: execve("/bin/true", argv, environ); break;
        }
        _exit(91);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return st;
}

Test(exec, exec_while_cycles_run_leaves_no_pending_stop_signal)
{
    tern_free(tern_malloc(16));
    for (int i = 0; i < 60; i++) {
        int st = exec_under_cycles(i % 5, (i * 137) % 3000);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec %d (kind %d): %s %d", i, i % 5,
                  WIFSIGNALED(st) ? "killed by signal" : "exit status",
                  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
}

Test(exec, a_failed_exec_returns_and_collection_goes_on)
{
    char *const argv[] = {(char *)"nonexistent", NULL};
    errno = 0;
    cr_assert_eq(execv("/nonexistent/program", argv), -1);
    cr_assert_eq(errno, ENOENT);
    cr_assert_eq(execlp("/nonexistent/program", "x", (char *)NULL), -1);
    struct tern_stats a, b;
    tern_get_stats(&a);
    tern_collect(); /* the collector lock was given back */
    tern_get_stats(&b);
    cr_assert_gt(b.cycles, a.cycles);
}
