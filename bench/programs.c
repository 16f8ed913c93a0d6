/* programs.c — real programs, unchanged, on whichever malloc is preloaded.
 *
 *   programs NAME SCALE
 *     python  python3: build a dict of SCALE entries, JSON round trip, sort
 *     sqlite  sqlite3 in memory: SCALE rows, an index, group by
 *     sortgz  awk makes SCALE lines; sort -n, gzip | gunzip, an awk tally
 *
 * Runs the program through /bin/sh in a fresh temporary directory, its
 * output into a file, and prints ok=1 when it exited 0 and wrote
 * something, work_ms (the program's wall time, from fork to exit) and a
 * hash of the output (the same for every malloc: the test suite checks
 * identical output, tests/malloc/test_malloc_programs.c).  The runner
 * measures glibc as is and mimalloc and the Tern drop-in through
 * LD_PRELOAD, which every process of the pipeline inherits; its peak RSS
 * is the largest of those processes (wait4 reports the children this
 * launcher waited for).  Issue #4's goal: at most 1.1× glibc's time and
 * 1.2× its peak RSS with TERN_FREE=honor (the default).
 */
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Each program's shell command; %ld is the scale. */
static const struct {
    const char *name, *fmt;
} programs[] = {
    {"python", "python3 -c 'import json\n"
               "d = {str(i): [i, str(i) * 3, {\"k\": i}] for i in range(%ld)}\n"
               "s = json.dumps(d)\n"
               "e = json.loads(s)\n"
               "print(len(s), sum(v[0] for v in e.values()), len(sorted(e, key=lambda k: -int(k))))'"},
    {"sqlite", "sqlite3 :memory: 'create table t(a integer, b text); "
               "with recursive c(x) as (select 1 union all select x + 1 from c where x < %ld) "
               "insert into t select x, cast(x * 7919 %% 100003 + 1000000 as text) from c; "
               "create index ti on t(b); "
               "select count(*), sum(a), max(b) from t; "
               "select a %% 7, count(*) from t group by 1 order by 1;'"},
    {"sortgz", "awk 'BEGIN { srand(7); for (i = 0; i < %ld; i++) print int(rand() * 1000000), i }' > in.txt && "
               "sort -n in.txt | md5sum && gzip -c in.txt | gunzip -c | md5sum && "
               "awk '{ c[$1 %% 1000]++; w[$2] = $1 } END { n = 0; for (k in c) n += c[k]; print n, length(w) }' "
               "in.txt"},
};

static int script(const char *name, long n, char *buf, size_t len)
{
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++)
        if (strcmp(name, programs[i].name) == 0)
            return snprintf(buf, len, programs[i].fmt, n);
    return -1;
}

int main(int argc, char **argv)
{
    BK_INIT();
    if (argc != 3) {
        fprintf(stderr, "usage: programs python|sqlite|sortgz SCALE\n");
        return 2;
    }
    long n = atol(argv[2]);
    char cmd[2048];
    int k = script(argv[1], n, cmd, sizeof cmd);
    if (k < 0 || (size_t)k >= sizeof cmd || n < 1) {
        fprintf(stderr, "programs: unknown program %s or bad scale\n", argv[1]);
        return 2;
    }
    char dir[] = "/tmp/tern-programs-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("programs: mkdtemp");
        return 1;
    }
    char out[sizeof dir + 16], in[sizeof dir + 16];
    snprintf(out, sizeof out, "%s/out.txt", dir);
    snprintf(in, sizeof in, "%s/in.txt", dir);
    uint64_t t0 = bk_now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        perror("programs: fork");
        return 1;
    }
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || chdir(dir) != 0 || dup2(fd, 1) < 0)
            _exit(126);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            perror("programs: waitpid");
            return 1;
        }
    uint64_t t1 = bk_now_ns();
    /* FNV-1a of the output */
    uint64_t h = 1469598103934665603ull;
    long bytes = 0;
    FILE *f = fopen(out, "r");
    if (f) {
        int c;
        while ((c = getc(f)) != EOF) {
            h = (h ^ (unsigned char)c) * 1099511628211ull;
            bytes++;
        }
        fclose(f);
    }
    unlink(out);
    unlink(in);
    rmdir(dir);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && bytes > 0;
    printf("RESULT ok=%d work_ms=%.3f program=%s scale=%ld out_bytes=%ld out_hash=%016llx\n", ok,
           (t1 - t0) / 1e6, argv[1], n, bytes, (unsigned long long)h);
    if (!ok)
        fprintf(stderr, "programs: %s exited with status %d, %ld bytes of output\n", argv[1],
                WIFEXITED(st) ? WEXITSTATUS(st) : -1, bytes);
    return ok ? 0 : 1;
}
