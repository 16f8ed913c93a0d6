/* driver.c — a stand-in for libFuzzer where clang's -fsanitize=fuzzer is
 * not available: runs LLVMFuzzerTestOneInput on every file given (or in
 * the directories given), then on random inputs (a fixed seed) until
 * -max_total_time=N seconds have passed.  Prints libFuzzer's
 * "stat::number_of_executed_units:" line so tools/fuzz reads both alike. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
static unsigned long execs;

static void run_file(const char *path)
{
    static uint8_t buf[1 << 16];
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    execs++;
}

int main(int argc, char **argv)
{
    double budget = 10;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "-max_total_time=", 16)) {
            budget = atof(argv[i] + 16);
            continue;
        }
        if (argv[i][0] == '-')
            continue;
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            while (d && (e = readdir(d))) {
                char p[4096];
                if (e->d_name[0] == '.')
                    continue;
                snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
                run_file(p);
            }
            if (d)
                closedir(d);
        } else {
            run_file(argv[i]);
        }
    }
    uint64_t s = 0x9E3779B97F4A7C15ull;
    time_t end = time(NULL) + (time_t)budget;
    uint8_t buf[512];
    while (time(NULL) < end) {
        size_t n = (s >> 33) % sizeof buf;
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            buf[i] = (uint8_t)s;
        }
        LLVMFuzzerTestOneInput(buf, n);
        execs++;
    }
    printf("stat::number_of_executed_units: %lu\n", execs);
    return 0;
}
