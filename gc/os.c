/* os.c — everything Tern asks of the operating system: mappings, clocks,
 * resident size, core count.  Nothing here allocates from the heap. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

void *tern_os_map(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Map size bytes aligned to align (a power of two >= the OS page size):
 * over-map by align, then trim both ends. */
void *tern_os_map_aligned(size_t size, size_t align) {
    size_t total = size + align;
    char *p = tern_os_map(total);
    if (!p) return NULL;
    uintptr_t a = ALIGN_UP((uintptr_t)p, align);
    size_t head = a - (uintptr_t)p, tail = total - head - size;
    if (head) munmap(p, head);
    if (tail) munmap((char *)a + size, tail);
    return (void *)a;
}

void tern_os_unmap(void *p, size_t size) { munmap(p, size); }

void tern_os_decommit(void *p, size_t size) { madvise(p, size, MADV_DONTNEED); }

uint64_t tern_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t tern_thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Resident set size in bytes, from /proc/self/statm (no allocation). */
size_t tern_os_rss(void) {
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *s = buf;
    while (*s && *s != ' ') s++;
    size_t pages = 0;
    while (*s == ' ') s++;
    while (*s >= '0' && *s <= '9') pages = pages * 10 + (size_t)(*s++ - '0');
    return pages * (size_t)sysconf(_SC_PAGESIZE);
}

int tern_ncpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
