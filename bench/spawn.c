/* spawn.c — run a program and report its resource usage from wait4.
 *
 *   spawn RUSAGE_FILE PROGRAM [ARGS...]
 *
 * Why: Linux carries a process's peak RSS across fork and exec, so a child
 * started by the (large) Python runner reports at least the runner's own RSS
 * as ru_maxrss.  This launcher is small: it forks and execs PROGRAM, waits
 * for it with wait4, and writes to RUSAGE_FILE one line
 *   "maxrss_kib=N utime_s=X stime_s=Y status=S"
 * (S as from wait: exit code, or -SIGNAL).  It exits as PROGRAM did.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: spawn RUSAGE_FILE PROGRAM [ARGS...]\n");
        return 127;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("spawn: fork");
        return 127;
    }
    if (pid == 0) {
        execv(argv[2], argv + 2);
        fprintf(stderr, "spawn: exec %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("spawn: wait4");
            return 127;
        }
    }
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? -WTERMSIG(st) : -1;
    FILE *f = fopen(argv[1], "w");
    if (f) {
        fprintf(f, "maxrss_kib=%ld utime_s=%ld.%06ld stime_s=%ld.%06ld status=%d\n",
                ru.ru_maxrss, (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
                (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec, code);
        fclose(f);
    }
    if (code < 0) {
        signal(-code, SIG_DFL);
        raise(-code); /* die the same way */
        return 128 - code;
    }
    return code;
}
