/* os.c — everything Tern asks of the operating system: mappings, clocks,
 * resident size, core count.  Nothing here allocates from the heap. */
#include "internal.h"
#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

/* Every mapping Tern makes (aligned, meta, thread records) comes through
 * here, so this one fault hook covers them all. */
void *tern_os_map(size_t size) {
    if (tern_fault(TERN_FAULT_MMAP)) return errno = ENOMEM, NULL;
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

/* Tern's own tables (mark stacks and packets, root tables, the radix
 * table, the malloc shim's side tables) hold stale heap addresses.  They
 * are mapped here and recorded, so that a scan of the process's mappings
 * (drop-in mode) can leave them out.  A record is written lo first and
 * cleared hi first, so a reader in a stopped world never sees a range that
 * is not Tern's; a full table only means an extra range gets scanned. */
#define META_MAX 512
static struct {
    _Atomic uintptr_t lo, hi;
} meta[META_MAX];
static atomic_flag meta_lock = ATOMIC_FLAG_INIT;

void *tern_os_map_meta(size_t size) {
    void *p = tern_os_map(size);
    if (!p) return NULL;
    while (atomic_flag_test_and_set_explicit(&meta_lock, memory_order_acquire)) {}
    for (size_t i = 0; i < META_MAX; i++)
        if (!atomic_load_explicit(&meta[i].hi, memory_order_relaxed)) {
            atomic_store_explicit(&meta[i].lo, (uintptr_t)p, memory_order_relaxed);
            atomic_store_explicit(&meta[i].hi, (uintptr_t)p + size, memory_order_release);
            break;
        }
    atomic_flag_clear_explicit(&meta_lock, memory_order_release);
    return p;
}

void tern_os_unmap_meta(void *p, size_t size) {
    while (atomic_flag_test_and_set_explicit(&meta_lock, memory_order_acquire)) {}
    for (size_t i = 0; i < META_MAX; i++)
        if (atomic_load_explicit(&meta[i].lo, memory_order_relaxed) == (uintptr_t)p &&
            atomic_load_explicit(&meta[i].hi, memory_order_relaxed)) {
            atomic_store_explicit(&meta[i].hi, 0, memory_order_release);
            break;
        }
    atomic_flag_clear_explicit(&meta_lock, memory_order_release);
    munmap(p, size);
}

size_t tern_os_meta_ranges(struct root_range *out, size_t max) {
    size_t n = 0;
    for (size_t i = 0; i < META_MAX && n < max; i++) {
        uintptr_t hi = atomic_load_explicit(&meta[i].hi, memory_order_acquire);
        if (hi) out[n++] = (struct root_range){atomic_load_explicit(&meta[i].lo, memory_order_relaxed), hi};
    }
    return n;
}

/* The callers rely on the contents reading as zero afterwards (a freed
 * huge chunk is reused without clearing): if the kernel refuses, clear
 * them by hand. */
void tern_os_decommit(void *p, size_t size) {
    if (tern_fault(TERN_FAULT_MADVISE) || madvise(p, size, MADV_DONTNEED) != 0) memset(p, 0, size);
}

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

/* The largest object worth trying: physical memory plus swap (as glibc's
 * malloc under the kernel's default overcommit heuristic), at most 2^46.
 * Tern maps with MAP_NORESERVE, so without this a request for terabytes
 * would be mapped, and its address range entered in the chunk table. */
size_t tern_os_max_object(void) {
    static _Atomic size_t max;
    size_t m = atomic_load_explicit(&max, memory_order_relaxed);
    if (m) return m;
    struct sysinfo si;
    m = (size_t)1 << 46;
    if (sysinfo(&si) == 0 && si.mem_unit) {
        unsigned __int128 t = ((unsigned __int128)si.totalram + si.totalswap) * si.mem_unit;
        if (t && t < m) m = (size_t)t;
    }
    atomic_store_explicit(&max, m, memory_order_relaxed);
    return m;
}

int tern_ncpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
