/* roots.c — where marking starts: static data and BSS of the program and
 * of every loaded shared object (dlopen'ed ones included), the TLS blocks
 * of every thread (static and dynamic, found through each thread's DTV),
 * thread stacks and saved registers, arguments of threads still starting,
 * ranges added with tern_add_roots, and what finalize.c keeps (finalizer
 * data, objects awaiting finalization, uncollectable objects).
 *
 * dl_iterate_phdr takes the loader's lock, so the list of segments and TLS
 * modules is gathered before the world stops (tern_roots_prepare). */
#include "internal.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

static pthread_mutex_t roots_lock = PTHREAD_MUTEX_INITIALIZER;
static struct root_range *user_roots;
static size_t n_user, cap_user;

/* The segment and TLS tables start in static reserves: a cycle that runs
 * while the system refuses memory must still see every static root (a
 * segment left out would let its objects be swept while in use). */
#define STATICS_RESERVE 512
#define TLS_RESERVE 128
struct tls_mod { size_t modid, size; };
static struct root_range statics_reserve[STATICS_RESERVE];
static struct tls_mod tls_reserve[TLS_RESERVE];
static struct root_range *statics = statics_reserve;
static size_t n_statics, cap_statics = STATICS_RESERVE;
static struct tls_mod *tls_mods = tls_reserve;
static size_t n_tls, cap_tls = TLS_RESERVE;
static uintptr_t self_base;

static bool grow(void **arr, size_t *cap, size_t elem) {
    size_t ncap = *cap ? *cap * 2 : 256;
    void *n = tern_os_map_meta(ncap * elem);
    if (!n) {
        if (*arr != (void *)user_roots) tern_log("tern: out of memory for the root table (ignored)\n");
        return false;
    }
    if (*arr) {
        memcpy(n, *arr, *cap * elem);
        if (*arr != (void *)statics_reserve && *arr != (void *)tls_reserve) tern_os_unmap_meta(*arr, *cap * elem);
    }
    *arr = n;
    *cap = ncap;
    return true;
}

static int phdr_cb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size, (void)data;
    /* Our own data holds only collector metadata: skip it, unless we are
     * linked into the executable (whose name is empty). */
    bool self = self_base && info->dlpi_addr == self_base && info->dlpi_name && info->dlpi_name[0];
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_TLS && info->dlpi_tls_modid && ph->p_memsz) {
            if (n_tls == cap_tls && !grow((void **)&tls_mods, &cap_tls, sizeof *tls_mods)) continue;
            tls_mods[n_tls++] = (struct tls_mod){info->dlpi_tls_modid, ph->p_memsz};
        }
        if (self || ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
        if (n_statics == cap_statics && !grow((void **)&statics, &cap_statics, sizeof *statics)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        statics[n_statics++] = (struct root_range){lo, lo + ph->p_memsz};
    }
    return 0;
}

/* drop-in malloc support (libtern-malloc): defined at the end of this file */
static void roots_cycle_hook(int begin);
static void mappings_scan(void (*scan)(uintptr_t lo, uintptr_t hi, void *), void *arg);

void tern_roots_prepare(void) {
    roots_cycle_hook(1);
    n_statics = n_tls = 0;
    dl_iterate_phdr(phdr_cb, NULL);
    pthread_mutex_lock(&roots_lock); /* held until tern_roots_done */
    tern_finalize_lock(); /* finalize.c's tables are read in the pause */
}

void tern_roots_done(void) {
    tern_finalize_unlock();
    pthread_mutex_unlock(&roots_lock);
    roots_cycle_hook(0);
}

void tern_roots_init(void) {
    Dl_info di;
    if (dladdr((void *)tern_roots_init, &di) && di.dli_fbase) self_base = (uintptr_t)di.dli_fbase;
}

/* glibc's DTV on x86-64: tcb[1] points at dtv[0]; dtv[-1] holds the length;
 * dtv[m].val is module m's TLS block, or -1 while not yet allocated. */
struct dtv_slot { void *val; void *to_free; };

static void scan_tls(struct thread *t, void (*scan)(uintptr_t, uintptr_t, void *), void *arg) {
#if defined(__x86_64__) && defined(__GLIBC__)
    if (!t->tp || !n_tls) return;
    struct dtv_slot *dtv = ((struct dtv_slot **)t->tp)[1];
    if (!dtv) return;
    size_t len = (size_t)dtv[-1].val;
    if (len > 1u << 20) return;
    for (size_t i = 0; i < n_tls; i++) {
        size_t m = tls_mods[i].modid;
        if (m > len) continue;
        uintptr_t b = (uintptr_t)dtv[m].val;
        if (!b || b == (uintptr_t)-1) continue;
        scan(b, b + tls_mods[i].size, arg);
    }
#else
    (void)t, (void)scan, (void)arg;
#endif
}

/* Bytes of roots scanned so far, by kind (TERN_TRACE=2): stacks and saved
 * registers, static data and TLS, ranges added with tern_add_roots, the
 * program's own mappings (drop-in).  Only the collector scans roots, one
 * scan at a time, so plain counters do. */
uint64_t tern_root_bytes[4];
uint64_t tern_roots_last_bytes; /* bytes the latest scan covered (pacer.c) */

struct root_count {
    void (*scan)(uintptr_t, uintptr_t, void *);
    void *arg;
    uint64_t *ctr;
};
static void scan_counted(uintptr_t lo, uintptr_t hi, void *arg) {
    struct root_count *rc = arg;
    if (hi > lo) *rc->ctr += hi - lo;
    rc->scan(lo, hi, rc->arg);
}

void tern_roots_scan(void (*scan)(uintptr_t lo, uintptr_t hi, void *), void *arg) {
    uint64_t *rb = tern_root_bytes, before = rb[0] + rb[1] + rb[2] + rb[3];
    for (size_t i = 0; i < n_statics; i++) scan(statics[i].lo, statics[i].hi, arg), rb[1] += statics[i].hi - statics[i].lo;
    for (size_t i = 0; i < n_user; i++) scan(user_roots[i].lo, user_roots[i].hi, arg), rb[2] += user_roots[i].hi - user_roots[i].lo;
    struct root_count rc = {scan, arg, &rb[0]};
    tern_threads_scan_pending(scan_counted, &rc);
    for (struct thread *t = tern_threads; t; t = t->next) {
        uintptr_t sp = atomic_load(&t->sp);
        if (sp && sp < t->stack_hi) scan(sp & ~(uintptr_t)7, t->stack_hi, arg), rb[0] += t->stack_hi - (sp & ~(uintptr_t)7);
        scan((uintptr_t)t->regs, (uintptr_t)(t->regs + 64), arg);
        rb[0] += sizeof t->regs;
        rc.ctr = &rb[1];
        scan_tls(t, scan_counted, &rc);
    }
    rc.ctr = &rb[2];
    tern_finalize_scan_roots(scan_counted, &rc); /* finalizer data, uncollectable objects */
    rc.ctr = &rb[3];
    mappings_scan(scan_counted, &rc);
    tern_roots_last_bytes = rb[0] + rb[1] + rb[2] + rb[3] - before;
}

TERN_API int tern_add_roots(void *lo, void *hi) {
    /* above 2^47 is not user space: scanning there would fault */
    if (!lo || (uintptr_t)lo > (uintptr_t)hi || (uintptr_t)hi > ((uintptr_t)1 << 47))
        return TERN_EINVAL;
    tern_ensure_init();
    pthread_mutex_lock(&roots_lock);
    int rc = TERN_OK;
    if (n_user == cap_user && !grow((void **)&user_roots, &cap_user, sizeof *user_roots)) rc = TERN_ENOMEM;
    else user_roots[n_user++] = (struct root_range){(uintptr_t)lo, (uintptr_t)hi};
    pthread_mutex_unlock(&roots_lock);
    return rc;
}

TERN_API int tern_remove_roots(void *lo, void *hi) {
    if ((uintptr_t)lo > (uintptr_t)hi) return TERN_EINVAL;
    int rc = TERN_ENOENT;
    pthread_mutex_lock(&roots_lock);
    for (size_t i = 0; i < n_user; i++)
        if (user_roots[i].lo == (uintptr_t)lo && user_roots[i].hi == (uintptr_t)hi) {
            user_roots[i] = user_roots[--n_user];
            rc = TERN_OK;
            break;
        }
    pthread_mutex_unlock(&roots_lock);
    return rc;
}

void tern_roots_lock(void) { pthread_mutex_lock(&roots_lock); }
void tern_roots_unlock(void) { pthread_mutex_unlock(&roots_lock); }

/* ---- drop-in malloc support (libtern-malloc) ------------------------------ *
 * A program that does not know about Tern keeps pointers in memory Tern did
 * not allocate: mmap'ed arenas of other allocators, hand-made thread stacks,
 * the C library's thread control blocks.  When enabled (the malloc shim
 * does, unless TERN_SCAN_MAPPINGS=0), every cycle reads /proc/self/maps
 * while the world is stopped (no mapping can change then) and scans every
 * anonymous, private, writable mapping as a root, minus: Tern's chunks,
 * Tern's own static data and tables (tern_os_map_meta), the static data
 * already scanned above, the live part of every registered stack (already
 * scanned) and thread records.
 * Pages that are neither resident nor swapped (per /proc/self/pagemap) read
 * as zeros and are skipped.  No allocation: static buffers only.
 * The cycle hook tells the shim which thread is collecting, so that mallocs
 * made by the C library on its behalf (a marker thread's DTV) do not
 * re-enter the heap. */
#include <fcntl.h>
#include <unistd.h>

static int scan_mappings;
static void (*cycle_hook)(int begin);
static struct root_range self_segs[16];
static size_t n_self_segs;
#define MAPS_EXCL_MAX 8192
static struct root_range maps_excl[MAPS_EXCL_MAX];
static size_t n_maps_excl;
static char maps_buf[65536];
/* the candidate mappings of one cycle */
#define MAPS_CAND_MAX 16384
static struct root_range maps_cand[MAPS_CAND_MAX];
static size_t n_cand;
static uint64_t pagemap_buf[512];
static int pagemap_fd = -1;

static int self_seg_cb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size, (void)data;
    if (!self_base || info->dlpi_addr != self_base || !info->dlpi_name || !info->dlpi_name[0]) return 0;
    for (int i = 0; i < info->dlpi_phnum && n_self_segs < 16; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        self_segs[n_self_segs++] = (struct root_range){lo & ~(uintptr_t)4095, ALIGN_UP(lo + ph->p_memsz, 4096)};
    }
    return 0;
}

void tern_roots_set_scan_mappings(int on) {
    if (on && !n_self_segs) dl_iterate_phdr(self_seg_cb, NULL);
    scan_mappings = on;
}

void tern_roots_set_cycle_hook(void (*fn)(int begin)) { cycle_hook = fn; }

/* The collector's own threads (collector, markers, scavenger): the hook
 * hears begin = 2 once, and their allocations (thread creation) never come
 * from the collected heap.  Their stacks are left out of the mapping scan:
 * they are anonymous mappings like any other, and the deep frames of a
 * marker keep the addresses of objects it marked cycles ago, which kept
 * garbage alive (the drop-in's leak report missed up to 11 of 100 planted
 * leaks in about 1 run in 15).  These threads never exit; a fork child
 * starts its own and forgets the parent's (tern_roots_atfork_child). */
#define OWN_STACKS_MAX 64
static struct root_range own_stacks[OWN_STACKS_MAX];
static _Atomic size_t n_own_stacks;
static pthread_mutex_t own_stacks_lock = PTHREAD_MUTEX_INITIALIZER;

void tern_roots_collector_thread(void) {
    if (cycle_hook) cycle_hook(2); /* first: pthread_getattr_np allocates */
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) != 0) return;
    void *addr;
    size_t size;
    /* Only the part below this frame, where the thread's later, deeper
     * frames go.  Above it are the thread's start frames, its static TLS
     * and its control block, whose DTV pointer is the only reference to a
     * DTV allocated from the heap by the thread that created this one. */
    uintptr_t below = (uintptr_t)__builtin_frame_address(0);
    if (pthread_attr_getstack(&a, &addr, &size) == 0 && (uintptr_t)addr < below && below <= (uintptr_t)addr + size) {
        pthread_mutex_lock(&own_stacks_lock);
        size_t n = atomic_load(&n_own_stacks);
        if (n < OWN_STACKS_MAX) {
            own_stacks[n] = (struct root_range){(uintptr_t)addr, below};
            atomic_store(&n_own_stacks, n + 1);
        }
        pthread_mutex_unlock(&own_stacks_lock);
    }
    pthread_attr_destroy(&a);
}

void tern_roots_atfork_child(void) {
    atomic_store(&n_own_stacks, 0);
    pthread_mutex_init(&own_stacks_lock, NULL);
}

static void roots_cycle_hook(int begin) {
    if (cycle_hook) cycle_hook(begin);
}

static void excl_add(uintptr_t lo, uintptr_t hi) {
    if (lo < hi && n_maps_excl < MAPS_EXCL_MAX) maps_excl[n_maps_excl++] = (struct root_range){lo, hi};
}

/* Scan [lo, hi) page by page, skipping pages never touched (zero). */
static void scan_resident(uintptr_t lo, uintptr_t hi, void (*scan)(uintptr_t, uintptr_t, void *), void *arg) {
    const uintptr_t pg = 4096;
    if (pagemap_fd < 0) {
        scan(lo, hi, arg);
        return;
    }
    uintptr_t a = lo;
    while (a < hi) {
        uintptr_t first = a / pg, last = (hi - 1) / pg;
        size_t n = last - first + 1;
        if (n > 512) n = 512;
        ssize_t got = pread(pagemap_fd, pagemap_buf, n * 8, (off_t)(first * 8));
        if (got < (ssize_t)(n * 8)) {
            scan(a, hi, arg);
            return;
        }
        uintptr_t run = 0; /* start of a run of pages to scan, 0 = none */
        for (size_t i = 0; i < n; i++) {
            uintptr_t plo = (first + i) * pg, phi = plo + pg;
            if (plo < a) plo = a;
            if (phi > hi) phi = hi;
            bool touched = (pagemap_buf[i] >> 62) & 3; /* present or swapped */
            if (touched && !run) run = plo;
            if (!touched && run) {
                scan(run, plo, arg);
                run = 0;
            }
            a = phi;
        }
        if (run) scan(run, a, arg);
    }
}

/* Scan [lo, hi) minus Tern's chunks. */
static void scan_piece(uintptr_t lo, uintptr_t hi, void (*scan)(uintptr_t, uintptr_t, void *), void *arg) {
    uintptr_t a = lo;
    while (a < hi) {
        struct chunk *c = chunk_of(a);
        if (c && a >= (uintptr_t)c && a < (uintptr_t)c + c->size) {
            a = (uintptr_t)c + c->size;
            continue;
        }
        uintptr_t next = (a & ~(uintptr_t)(CHUNK_SIZE - 1)) + CHUNK_SIZE;
        if (next > hi) next = hi;
        scan_resident(a, next, scan, arg);
        a = next;
    }
}

static void scan_mapping(uintptr_t lo, uintptr_t hi, void (*scan)(uintptr_t, uintptr_t, void *), void *arg) {
    uintptr_t cur = lo;
    for (size_t i = 0; i < n_maps_excl && cur < hi; i++) {
        const struct root_range *e = &maps_excl[i];
        if (e->hi <= cur) continue;
        if (e->lo >= hi) break;
        if (e->lo > cur) scan_piece(cur, e->lo, scan, arg);
        if (e->hi > cur) cur = e->hi;
    }
    if (cur < hi) scan_piece(cur, hi, scan, arg);
}

static uintptr_t parse_hex(const char **s) {
    uintptr_t v = 0;
    for (;; (*s)++) {
        char c = **s;
        if (c >= '0' && c <= '9') v = v * 16 + (uintptr_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v = v * 16 + (uintptr_t)(c - 'a' + 10);
        else return v;
    }
}

/* One line of /proc/self/maps: "lo-hi perms offset dev inode [path]". */
static void maps_line(const char *s, const char *end, void (*scan)(uintptr_t, uintptr_t, void *), void *arg) {
    uintptr_t lo = parse_hex(&s);
    if (*s++ != '-') return;
    uintptr_t hi = parse_hex(&s);
    if (end - s < 6 || s[0] != ' ' || s[1] != 'r' || s[2] != 'w' || s[4] != 'p') return;
    s += 6;
    for (int field = 0; field < 2; field++) { /* offset, dev */
        while (s < end && *s != ' ') s++;
        while (s < end && *s == ' ') s++;
    }
    if (s >= end || *s != '0' || (s + 1 < end && s[1] != ' ' && s[1] != '\n')) return; /* file-backed */
    if (n_cand < MAPS_CAND_MAX) maps_cand[n_cand++] = (struct root_range){lo, hi};
    else scan_mapping(lo, hi, scan, arg); /* too many to sort out: scan it all */
}

static void mappings_scan(void (*scan)(uintptr_t lo, uintptr_t hi, void *), void *arg) {
    if (!scan_mappings) return;
    /* what is scanned elsewhere, or is Tern's own */
    n_maps_excl = 0;
    for (size_t i = 0; i < n_self_segs; i++) excl_add(self_segs[i].lo, self_segs[i].hi);
    for (size_t i = 0; i < n_statics; i++) excl_add(statics[i].lo, statics[i].hi);
    for (size_t i = 0; i < n_user; i++) excl_add(user_roots[i].lo, user_roots[i].hi);
    /* Tern's own tables hold stale object addresses that would keep
     * garbage alive (os.c records them). */
    n_maps_excl += tern_os_meta_ranges(maps_excl + n_maps_excl, MAPS_EXCL_MAX - n_maps_excl);
    for (size_t i = 0, n = atomic_load(&n_own_stacks); i < n; i++) excl_add(own_stacks[i].lo, own_stacks[i].hi);
    for (struct thread *t = tern_threads; t; t = t->next) {
        uintptr_t sp = atomic_load(&t->sp);
        if (sp && sp < t->stack_hi) excl_add(sp & ~(uintptr_t)7, t->stack_hi);
        excl_add((uintptr_t)t, (uintptr_t)t + ALIGN_UP(sizeof(struct thread), 4096));
    }
    /* sort by lo (shell sort: no allocation) */
    for (size_t gap = n_maps_excl / 2; gap; gap /= 2)
        for (size_t i = gap; i < n_maps_excl; i++) {
            struct root_range v = maps_excl[i];
            size_t j = i;
            for (; j >= gap && maps_excl[j - gap].lo > v.lo; j -= gap) maps_excl[j] = maps_excl[j - gap];
            maps_excl[j] = v;
        }
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    n_cand = 0;
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, maps_buf + have, sizeof maps_buf - 1 - have);
        if (n <= 0) break;
        have += (size_t)n;
        char *line = maps_buf, *nl;
        while ((nl = memchr(line, '\n', have - (size_t)(line - maps_buf)))) {
            maps_line(line, nl, scan, arg);
            line = nl + 1;
        }
        have -= (size_t)(line - maps_buf);
        memmove(maps_buf, line, have);
        if (have == sizeof maps_buf - 1) have = 0; /* an absurdly long line: drop it */
    }
    close(fd);
    for (size_t i = 0; i < n_cand; i++) scan_mapping(maps_cand[i].lo, maps_cand[i].hi, scan, arg);
    if (pagemap_fd >= 0) close(pagemap_fd);
    pagemap_fd = -1;
}
